//! The model directory's manifest: `model.json` (name, version, sha256 of `model.pt`, input
//! and output shapes, the scoring data's file and sha256) and the tag vocabulary, checked before
//! the weights are loaded.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::ModelError;
use crate::scoring::{Scoring, ScoringRules};

/// `model.json`, written by `tools/export_model.py`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelManifest {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    /// The scoring data ([`crate::scoring::Scoring`]); absent in exports before issue 14, which
    /// then score with [`crate::scoring::Scoring::default`].
    #[serde(default)]
    pub scoring: Option<ScoringFile>,
}

/// `model.json`'s `scoring`: where the scoring data is and its sha256. The model version covers
/// it (`tools/export_model.py` hashes `model.pt` and this file together).
#[derive(Debug, Clone, Deserialize)]
pub struct ScoringFile {
    pub file: String,
    pub sha256: String,
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

/// A model directory's manifest, vocabulary and scoring, checked.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub manifest: ModelManifest,
    /// Normalised ([`autotag_contract::normalize_tag`]).
    pub tags: Vec<String>,
    pub scoring: ScoringRules,
}

/// Read and check `model.json`, the tag vocabulary and the scoring data (with `verify_sha256`,
/// `model.pt`'s and the scoring file's sha256 too).
///
/// # Errors
/// [`ModelError::Model`] naming the file and what is wrong with it.
pub fn read_model_files(dir: &Path, verify_sha256: bool) -> Result<ModelFiles, ModelError> {
    let err = |message: String| ModelError::Model { path: dir.display().to_string(), message };
    let (manifest, tags) = read_manifest(dir, verify_sha256)?;
    let scoring = match &manifest.scoring {
        None => Scoring::default(),
        Some(f) => {
            let path = dir.join(&f.file);
            if verify_sha256 {
                let actual = sha256_file(&path).map_err(|e| err(format!("{}: {e}", f.file)))?;
                if !actual.eq_ignore_ascii_case(&f.sha256) {
                    return Err(err(format!("{} sha256 {actual} does not match model.json {}", f.file, f.sha256)));
                }
            }
            let text = std::fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", f.file)))?;
            serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", f.file)))?
        }
    };
    let scoring = ScoringRules::new(scoring, &tags).map_err(|e| err(format!("scoring: {e}")))?;
    Ok(ModelFiles { manifest, tags, scoring })
}

/// Read and check `model.json` and the tag vocabulary (returned normalised:
/// [`autotag_contract::normalize_tag`]).
fn read_manifest(dir: &Path, verify_sha256: bool) -> Result<(ModelManifest, Vec<String>), ModelError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_support::model_dir;

    /// A copy of the exported model directory under the temp dir.
    fn copy_model(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("autotag-manifest-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["model.json", "model.pt", "tags.json", "scoring.json"] {
            std::fs::copy(model_dir().join(f), dir.join(f)).unwrap();
        }
        dir
    }

    #[test]
    fn the_exported_scoring_is_read_and_checked() {
        let files = read_model_files(&model_dir(), true).unwrap();
        let s = &files.scoring.scoring;
        assert!(s.blank_luma_std > 0.0 && s.threshold > 0.0, "the calibrated data, not the default: {s:?}");
        let sha = &files.manifest.scoring.as_ref().expect("model.json names its scoring").sha256;
        assert!(files.manifest.version.ends_with(&sha[..8]), "the version covers the scoring data");
    }

    #[test]
    fn a_changed_or_bad_scoring_file_is_refused() {
        let dir = copy_model("changed");
        let path = dir.join("scoring.json");
        let text = std::fs::read_to_string(&path).unwrap().replacen("\"threshold\": 0.", "\"threshold\": 0.0", 1);
        std::fs::write(&path, &text).unwrap();
        let e = read_model_files(&dir, true).unwrap_err().to_string();
        assert!(e.contains("scoring.json sha256"), "{e}");
        // Without the checksum check the content is still validated.
        let text = text.replacen("\"max_tags\": 10", "\"max_tags\": 0", 1);
        std::fs::write(&path, text).unwrap();
        let e = read_model_files(&dir, false).unwrap_err().to_string();
        assert!(e.contains("max_tags"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_model_without_scoring_data_scores_as_before() {
        let dir = copy_model("legacy");
        let mut m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
        m.as_object_mut().unwrap().remove("scoring");
        std::fs::write(dir.join("model.json"), m.to_string()).unwrap();
        std::fs::remove_file(dir.join("scoring.json")).unwrap();
        let files = read_model_files(&dir, true).unwrap();
        assert_eq!(files.scoring.scoring, Scoring::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
