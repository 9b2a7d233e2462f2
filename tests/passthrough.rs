//! The operator's librdkafka pass-through keys reach every Kafka client `autotag upload` and
//! `autotag watch` make: a key librdkafka does not know fails them with an error naming it,
//! before anything is sent. (Tansu cannot show that SASL/TLS keys are honoured;
//! `autotag_infra::kafka`'s unit tests assert each built client's config holds them.) The same
//! check of `autotag-ops` is in `crates/ops/tests/passthrough.rs`. Needs no server.

#[test]
fn an_unknown_passthrough_key_fails_upload_and_watch_naming_it() {
    autotag_test_support::assert_unknown_passthrough_keys_are_refused(env!("CARGO_BIN_EXE_autotag").as_ref());
}
