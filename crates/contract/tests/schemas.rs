//! The published contract and the code agree: the dead-letter schema's `reason` and `stage`
//! enums list exactly [`Reason::ALL`] and [`Stage::ALL`], and so does the README's reason list;
//! the feedback schemas list exactly [`FeedbackAction::ALL`], the record schema is the request
//! schema plus `client` and `received_at`, and the code's records validate under it; the
//! training-labels schema lists exactly [`Provenance::ALL`] and the code's records validate.
//! Needs no server and no model.

use std::path::PathBuf;

use autotag_contract::{
    FeedbackAction, FeedbackEvent, FeedbackRecord, Label, LabelInputs, Provenance, Reason, Stage, TrainingLabels,
    normalize_tag, now_rfc3339,
};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("schemas").join(name)).expect(name);
    serde_json::from_str(&text).expect(name)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("an enum array").iter().map(|s| s.as_str().expect("a string").to_owned()).collect()
}

#[test]
fn dead_letter_schema_lists_exactly_the_reason_and_stage_codes() {
    let s = schema("dead-letter.schema.json");
    let reasons = strings(&s["properties"]["reason"]["enum"]);
    let code: Vec<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(reasons, code, "schemas/dead-letter.schema.json `reason` enum vs contract::Reason::ALL");
    let stages = strings(&s["properties"]["stage"]["enum"]);
    let code: Vec<String> = Stage::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(stages, code, "schemas/dead-letter.schema.json `stage` enum vs contract::Stage::ALL");
}

#[test]
fn readme_lists_exactly_the_reason_codes() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let line = readme.lines().find(|l| l.starts_with("Reasons: ")).expect("a `Reasons: ` line in README.md");
    let listed: Vec<String> = line
        .trim_start_matches("Reasons: ")
        .trim_end_matches('.')
        .split(", ")
        .map(|c| c.trim_matches('`').to_owned())
        .collect();
    let code: Vec<String> = Reason::ALL.iter().map(|r| r.as_str().to_owned()).collect();
    assert_eq!(listed, code, "README `Reasons:` line vs contract::Reason::ALL");
}

#[test]
fn schemas_are_valid_json_schemas() {
    for name in [
        "upload-event.schema.json",
        "suggestion.schema.json",
        "dead-letter.schema.json",
        "feedback-event.schema.json",
        "feedback-record.schema.json",
        "training-labels.schema.json",
    ] {
        jsonschema::validator_for(&schema(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn feedback_schemas_list_exactly_the_actions_and_the_record_extends_the_event() {
    let event = schema("feedback-event.schema.json");
    let record = schema("feedback-record.schema.json");
    let code: Vec<String> = FeedbackAction::ALL.iter().map(|a| a.as_str().to_owned()).collect();
    assert_eq!(strings(&event["properties"]["action"]["enum"]), code);
    assert_eq!(strings(&record["properties"]["action"]["enum"]), code);
    // Every field of the request event is a field of the record, and the record adds exactly
    // `client` and `received_at`.
    let props = |s: &Value| -> Vec<String> {
        let mut v: Vec<String> = s["properties"].as_object().unwrap().keys().cloned().collect();
        v.sort();
        v
    };
    let mut expected = props(&event);
    expected.extend(["client".to_owned(), "received_at".to_owned()]);
    expected.sort();
    assert_eq!(props(&record), expected);
    let mut required = strings(&event["required"]);
    required.extend(["client".to_owned(), "received_at".to_owned()]);
    assert_eq!(strings(&record["required"]), required);
}

#[test]
fn a_feedback_record_of_the_code_is_valid_under_the_record_schema() {
    let event = FeedbackEvent {
        schema_version: 1,
        event_id: "e1".into(),
        gif_id: "g1".into(),
        tag: normalize_tag(" Cat "),
        action: FeedbackAction::Reject,
        user_id: "u1".into(),
        occurred_at: "2026-11-29T10:00:00+01:00".into(),
        suggestion_event_id: Some("s1".into()),
        model_version: None,
    };
    let request = serde_json::to_value(&event).unwrap();
    let v = jsonschema::validator_for(&schema("feedback-event.schema.json")).unwrap();
    assert!(v.is_valid(&request), "{request}");
    let mut with_client = request.clone();
    with_client["client"] = "web".into();
    assert!(!v.is_valid(&with_client), "a request carrying `client` is refused by the schema");
    let record = FeedbackRecord { event, client: "web".into(), received_at: now_rfc3339() };
    let value = serde_json::to_value(&record).unwrap();
    let v = jsonschema::validator_for(&schema("feedback-record.schema.json")).unwrap();
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{value}");
}

#[test]
fn training_labels_of_the_code_are_valid_and_the_schema_lists_exactly_the_provenances() {
    let s = schema("training-labels.schema.json");
    let listed = strings(&s["properties"]["labels"]["items"]["properties"]["provenance"]["enum"]);
    let code: Vec<String> = Provenance::ALL.iter().map(|p| p.as_str().to_owned()).collect();
    assert_eq!(listed, code, "schemas/training-labels.schema.json `provenance` enum vs contract::Provenance::ALL");
    let record = TrainingLabels {
        schema_version: 1,
        gif_id: "g1".into(),
        s3_uri: "s3://gifs/g1.gif".into(),
        labels: Provenance::ALL
            .iter()
            .zip([1.0, 0.5, 0.83, 1.0, 0.0])
            .map(|(p, score)| Label { tag: format!("tag-{}", p.as_str()), score, provenance: *p })
            .collect(),
        model_version: "efficientnet-lite0@1".into(),
        inputs: LabelInputs { upload_event_id: "u1".into(), suggestion_event_id: "s1".into(), feedback_events: 3 },
        updated_at: now_rfc3339(),
    };
    let value = serde_json::to_value(&record).unwrap();
    let v = jsonschema::validator_for(&s).unwrap();
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{value}");
    let mut bad = value.clone();
    bad["labels"][0]["score"] = 1.5.into();
    assert!(!v.is_valid(&bad), "a score above 1 is refused");
}

/// A backfill event of the code is a valid upload event; `source: backfill` without its run id
/// is not; a live event needs neither field.
#[test]
fn backfill_events_of_the_code_are_valid_upload_events() {
    use autotag_contract::{Source, UploadEvent, ids::backfill_event_id};
    let v = jsonschema::validator_for(&schema("upload-event.schema.json")).unwrap();
    let uri = "s3://gifs/catalogue/a.gif";
    let ev = UploadEvent {
        schema_version: 1,
        event_id: backfill_event_id("run-7", uri),
        gif_id: "a".into(),
        s3_uri: uri.into(),
        uploaded_at: now_rfc3339(),
        existing_tags: Some(vec!["cat".into()]),
        source: Some(Source::Backfill),
        backfill_run_id: Some("run-7".into()),
    };
    let mut json = serde_json::to_value(&ev).unwrap();
    assert!(v.is_valid(&json), "{json}");
    assert_eq!(json["source"], "backfill");
    json.as_object_mut().unwrap().remove("backfill_run_id");
    assert!(!v.is_valid(&json), "source backfill needs its run id");
    let live = UploadEvent { source: None, backfill_run_id: None, ..ev };
    let json = serde_json::to_value(&live).unwrap();
    assert!(v.is_valid(&json) && json.get("source").is_none(), "{json}");
}
