//! The published contract and the code agree: the dead-letter schema's `reason` and `stage`
//! enums list exactly [`Reason::ALL`] and [`Stage::ALL`], and so does the README's reason list.
//! Needs no server and no model.

use std::path::PathBuf;

use autotag_contract::{Reason, Stage};
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
    for name in ["upload-event.schema.json", "suggestion.schema.json", "dead-letter.schema.json"] {
        jsonschema::validator_for(&schema(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
