//! `autotag-ops upload|watch`: an unknown librdkafka pass-through key fails them naming it (see
//! `tests/passthrough.rs` at the repository root for the same check of `autotag`). Needs no server.

#[test]
fn an_unknown_passthrough_key_fails_upload_and_watch_naming_it() {
    autotag_test_support::assert_unknown_passthrough_keys_are_refused(env!("CARGO_BIN_EXE_autotag-ops").as_ref());
}
