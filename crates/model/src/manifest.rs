//! The model directory's manifest: `model.json` (name, version, sha256 of `model.pt`, input
//! and output shapes) and the tag vocabulary, checked before the weights are loaded.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::ModelError;

/// `model.json`, written by `tools/export_model.py`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelManifest {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub input: InputSpec,
    pub output: OutputSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputSpec {
    pub height: u32,
    pub width: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutputSpec {
    pub tags_file: String,
    pub num_tags: usize,
}

/// Read and check `model.json` and the tag vocabulary (returned normalised:
/// [`autotag_contract::normalize_tag`]).
pub fn read_manifest(dir: &Path, verify_sha256: bool) -> Result<(ModelManifest, Vec<String>), ModelError> {
    let err = |message: String| ModelError::Model { path: dir.display().to_string(), message };
    let text = std::fs::read_to_string(dir.join("model.json")).map_err(|e| err(format!("model.json: {e}")))?;
    let m: ModelManifest = serde_json::from_str(&text).map_err(|e| err(format!("model.json: {e}")))?;
    if m.input.height != m.input.width || m.input.height == 0 {
        return Err(err(format!("input must be square, got {}x{}", m.input.width, m.input.height)));
    }
    let tags_text = std::fs::read_to_string(dir.join(&m.output.tags_file))
        .map_err(|e| err(format!("{}: {e}", m.output.tags_file)))?;
    let tags: Vec<String> =
        serde_json::from_str(&tags_text).map_err(|e| err(format!("{}: {e}", m.output.tags_file)))?;
    // The vocabulary in the contract's canonical form, once: suggestions publish these names, and
    // `scoring::existing_tag_scores` compares uploaders' (normalised) tags with them as they are.
    let tags: Vec<String> = tags.iter().map(|t| autotag_contract::normalize_tag(t)).collect();
    if tags.len() != m.output.num_tags {
        return Err(err(format!(
            "{} tags in {}, model.json says {}",
            tags.len(),
            m.output.tags_file,
            m.output.num_tags
        )));
    }
    if verify_sha256 {
        let actual = sha256_file(&dir.join("model.pt")).map_err(|e| err(format!("model.pt: {e}")))?;
        if !actual.eq_ignore_ascii_case(&m.sha256) {
            return Err(err(format!("model.pt sha256 {actual} does not match model.json {}", m.sha256)));
        }
    }
    Ok((m, tags))
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
