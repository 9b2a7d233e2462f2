//! The relabel job's metrics: every name it emits, once. Served on `relabel.metrics_listen`
//! by `autotag_infra::telemetry`.

/// Input records folded, by `stream` (`uploads`, `backfill`, `suggestions`, `feedback`) and
/// `outcome` (`changed`: the GIF's state changed; `unchanged`: a duplicate or an older record).
pub const INPUTS: &str = "autotag_relabel_inputs_total";
/// Input records that cannot be an input of the rule, by `reason` (`input::InputError::reason`,
/// or `misplaced`: the record's `gif_id` belongs in another partition, see `partitioner`).
pub const SKIPPED: &str = "autotag_relabel_inputs_skipped_total";
/// `gif-training-labels` records produced (a GIF's labels changed).
pub const EMITTED: &str = "autotag_relabel_labels_emitted_total";
/// State transactions committed (each with its input offsets).
pub const COMMITS: &str = "autotag_relabel_commits_total";
/// Flushes that did not complete, by `reason` (`produce`, `state_db`, …); retried.
pub const FLUSH_FAILURES: &str = "autotag_relabel_flush_failures_total";
/// Time of one flush: labels, changelog, transaction.
pub const COMMIT_SECONDS: &str = "autotag_relabel_commit_duration_seconds";
/// Time to bring the partitions of one assignment up to their changelog's end.
pub const RESTORE_SECONDS: &str = "autotag_relabel_restore_duration_seconds";
/// Changelog records read while restoring.
pub const RESTORED_RECORDS: &str = "autotag_relabel_restored_records_total";

/// A readiness condition: the job passed its start-up checks and consumes.
pub const RUNNING: &str = "running";

/// Describe the job's metrics to the installed recorder.
pub fn describe() {
    metrics::describe_counter!(INPUTS, "Input records folded, by stream and outcome (changed, unchanged)");
    metrics::describe_counter!(SKIPPED, "Input records that are not inputs of the rule, by reason");
    metrics::describe_counter!(EMITTED, "Training-labels records produced");
    metrics::describe_counter!(COMMITS, "State transactions committed with their input offsets");
    metrics::describe_counter!(FLUSH_FAILURES, "Flushes that did not complete, by reason");
    metrics::describe_histogram!(COMMIT_SECONDS, "One flush: labels, changelog, state transaction");
    metrics::describe_histogram!(RESTORE_SECONDS, "The assigned partitions' state brought up to their changelog's end");
    metrics::describe_counter!(RESTORED_RECORDS, "Changelog records read while restoring");
}
