//! Deterministic event ids.
//!
//! Outputs carry a uuid v5 derived from what they answer, so that a re-emission after a crash
//! (at-least-once delivery) has the same `event_id` as the first emission and consumers can
//! drop it (RFC 9562, section 5.5: name-based uuids).

/// Namespace of autotag's uuid v5 ids. Never change it: ids already published depend on it.
pub const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a7f_1c2e_8d3b_4e5f_9a0b_1c2d_3e4f_5a6b);

/// The uuid v5 of `name` in autotag's namespace, as a hyphenated lower-case string.
pub fn deterministic_id(name: &str) -> String {
    uuid::Uuid::new_v5(&ID_NAMESPACE, name.as_bytes()).to_string()
}

/// The `event_id` of the backfill event of the object `s3_uri` in the run `run_id`: the same run
/// enqueues an object under one id however often it is resumed or repeated, so the worker (and
/// anyone) can drop a repeat; another run gives the object a new id (issue 15).
pub fn backfill_event_id(run_id: &str, s3_uri: &str) -> String {
    deterministic_id(&format!("backfill:{run_id}:{s3_uri}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_name_same_id_and_stable_across_builds() {
        assert_eq!(super::deterministic_id("a"), super::deterministic_id("a"));
        assert_ne!(super::deterministic_id("a"), super::deterministic_id("b"));
        // Pinned: a change here would re-key every published output.
        assert_eq!(super::deterministic_id("suggestion:e1:m:1"), "f72285d3-70f5-592b-a87f-8d35ebeb885c");
    }

    #[test]
    fn a_backfill_id_is_one_per_run_and_object() {
        let id = super::backfill_event_id("run-1", "s3://gifs/a.gif");
        assert_eq!(id, super::backfill_event_id("run-1", "s3://gifs/a.gif"), "a resumed run, the same id");
        assert_ne!(id, super::backfill_event_id("run-2", "s3://gifs/a.gif"), "another run, another id");
        assert_ne!(id, super::backfill_event_id("run-1", "s3://gifs/b.gif"));
        // Pinned: a change here would enqueue every object of a resumed run twice.
        assert_eq!(id, super::deterministic_id("backfill:run-1:s3://gifs/a.gif"));
    }
}
