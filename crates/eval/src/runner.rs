//! `autotag eval --labels FILE.jsonl [--json OUT]`: tags every GIF of a labelled set as the
//! worker does ([`crate::tagger`]) and reports the metrics ([`crate::metrics`]) overall and per
//! group.
//!
//! **Labels file**: one JSON object a line, `{"gif":"<path or s3 uri>","tags":["…"]}`, optionally
//! `"scenes":[["…"],["…"]]` (the true tags of each scene; `tags` is then their union) and
//! `"groups":["multi3","low_res",…]` (subsets the report has a row for). Relative `gif` paths are
//! resolved against the labels file's folder. Tags pass the contract's normaliser. A line that
//! does not parse is an error naming its number.
//!
//! A GIF that cannot be read or decoded counts as a GIF with no suggestion (that is what the
//! system would give it) and is listed under `errors` by reason.
//!
//! The semantic metric needs tag embeddings ([`crate::embeddings`], `--embeddings FILE`, by
//! default `tools/tag_embeddings.json` when it exists): without them `semantic.gifs` is 0; tags
//! without a vector are listed under `unembedded_tags`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use autotag_contract::normalize_tag;
use serde::{Deserialize, Serialize};

use crate::config::EvalConfig;
use crate::embeddings::TagEmbeddings;
use crate::metrics::{GifResult, Report, semantic_distance};
use crate::tag::{read_input, tagger};

/// One line of a labels file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelLine {
    pub gif: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub scenes: Vec<Vec<String>>,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The result of a run (`--json OUT`).
#[derive(Debug, Clone, Serialize)]
pub struct EvalOutput {
    pub model: String,
    pub labels: String,
    /// The embedding model of `semantic`, if tag embeddings were given.
    pub embeddings: Option<String>,
    /// True or suggested tags without an embedding (the GIFs that need them are left out of
    /// `semantic`).
    pub unembedded_tags: Vec<String>,
    pub overall: Report,
    pub groups: BTreeMap<String, Report>,
    /// GIFs that could not be read or decoded, by reason.
    pub errors: BTreeMap<String, u64>,
    /// Model work of the tagged GIFs: frames sampled and frames inferred, in all (issue 16).
    pub frames: FrameWork,
}

/// Frames sampled and inferred over a run's tagged GIFs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FrameWork {
    pub gifs: u64,
    pub sampled: u64,
    pub inferred: u64,
}

/// Read a labels file.
///
/// # Errors
/// The file cannot be read, or a line is not a labels line (named by its number).
pub fn read_labels(path: &Path) -> anyhow::Result<Vec<LabelLine>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: LabelLine = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not a labels line", path.display(), i + 1))?;
        if l.gif.trim().is_empty() {
            bail!("{} line {}: `gif` is empty", path.display(), i + 1);
        }
        out.push(l);
    }
    Ok(out)
}

/// Where a labels line's GIF is: an `s3://` URI as it is, a relative path under `base`.
pub fn resolve(gif: &str, base: &Path) -> String {
    if gif.starts_with("s3://") || Path::new(gif).is_absolute() {
        gif.to_owned()
    } else {
        base.join(gif).display().to_string()
    }
}

fn normalized(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags.iter().map(|t| normalize_tag(t)) {
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// How to run an evaluation.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Cosine distance under which a GIF counts as semantically right (`semantic.share_under`).
    pub semantic_threshold: f64,
    /// Also write every GIF's per-frame scores here (JSON lines `{"gif","truth","scenes",
    /// "groups","vocab"?,"frames":[{"luma_std","shown","distances","scores","inferred"}]}`,
    /// `vocab` on the first line only): the input of `tools/calibrate_scoring.py`. Use with
    /// `full_work`, so that every frame has its own scores.
    pub dump_frames: Option<PathBuf>,
    /// Infer every sampled frame (the full-work baseline of issue 16's quality guard).
    pub full_work: bool,
    /// Tag embeddings for the semantic metric; `None`: not computed.
    pub embeddings: Option<TagEmbeddings>,
}

/// Run the evaluation of `labels` (module docs).
///
/// # Errors
/// The labels file, the model, the dump file.
pub async fn run(cfg: &EvalConfig, labels: &Path, opts: &RunOptions) -> anyhow::Result<EvalOutput> {
    use std::io::Write as _;
    let semantic_threshold = opts.semantic_threshold;
    let mut dump = match &opts.dump_frames {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let lines = read_labels(labels)?;
    let base: PathBuf = labels.parent().map(Path::to_path_buf).unwrap_or_default();
    let tagger = tagger(cfg, opts.full_work)?;
    let client = if lines.iter().any(|l| l.gif.starts_with("s3://")) {
        Some(autotag_infra::s3::create_client(&cfg.s3).await)
    } else {
        None
    };
    let mut results: Vec<(GifResult, Vec<String>)> = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut unembedded: Vec<String> = Vec::new();
    let mut work = FrameWork::default();
    for l in &lines {
        let input = resolve(&l.gif, &base);
        let scenes: Vec<Vec<String>> = l.scenes.iter().map(|s| normalized(s)).collect();
        let mut truth = normalized(&l.tags);
        for t in scenes.iter().flatten() {
            if !truth.contains(t) {
                truth.push(t.clone());
            }
        }
        let tagged = match read_input(&input, client.as_ref(), cfg.s3.max_object_bytes).await {
            Ok(bytes) => tagger.tag(&bytes),
            Err(e) => Err(e),
        };
        if let Some(w) = dump.as_mut() {
            let frames = tagged.as_ref().map(|t| t.frames.as_slice()).unwrap_or_default();
            let mut line = serde_json::json!({"gif": l.gif, "truth": truth, "scenes": scenes, "groups": l.groups, "frames": frames});
            if results.is_empty() {
                line["vocab"] = serde_json::json!(tagger.info.tags);
            }
            serde_json::to_writer(&mut *w, &line)?;
            w.write_all(b"\n")?;
        }
        let (ranked, suggested) = match tagged {
            Ok(t) => {
                work.gifs += 1;
                work.sampled += t.frames_sampled as u64;
                work.inferred += t.frames_inferred as u64;
                let mut order: Vec<usize> = (0..t.scores.len().min(tagger.info.tags.len())).collect();
                order.sort_by(|&a, &b| t.scores[b].total_cmp(&t.scores[a]).then(a.cmp(&b)));
                let ranked = order.into_iter().map(|i| tagger.info.tags[i].clone()).collect();
                (ranked, t.tags.into_iter().map(|s| s.tag).collect())
            }
            Err(e) => {
                *errors.entry(e.reason.clone()).or_default() += 1;
                tracing::warn!(input, reason = %e.reason, error = %e.message, "not tagged");
                (Vec::new(), Vec::new())
            }
        };
        let semantic = opts.embeddings.as_ref().and_then(|e| {
            for t in truth.iter().chain(&suggested) {
                if e.get(t).is_none() && !unembedded.contains(t) {
                    unembedded.push(t.clone());
                }
            }
            semantic_distance(&truth, &suggested, |t| e.get(t))
        });
        results.push((GifResult { truth, scenes, ranked, suggested, semantic }, l.groups.clone()));
    }
    if let Some(mut w) = dump {
        w.flush()?;
    }
    let all: Vec<GifResult> = results.iter().map(|(g, _)| g.clone()).collect();
    let mut by_group: BTreeMap<String, Vec<GifResult>> = BTreeMap::new();
    for (g, groups) in &results {
        for name in groups {
            by_group.entry(name.clone()).or_default().push(g.clone());
        }
    }
    Ok(EvalOutput {
        model: format!("{}@{}", tagger.info.model.name, tagger.info.model.version),
        labels: labels.display().to_string(),
        embeddings: opts.embeddings.as_ref().map(|e| e.model.clone()),
        unembedded_tags: {
            unembedded.sort();
            unembedded
        },
        overall: Report::new(&all, semantic_threshold, 20),
        groups: by_group.into_iter().map(|(k, v)| (k, Report::new(&v, semantic_threshold, 20))).collect(),
        errors,
        frames: work,
    })
}

/// Write `o` as pretty JSON to `path` (`--json OUT`).
///
/// # Errors
/// The file cannot be written.
pub fn write_json(o: &EvalOutput, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(o)?).with_context(|| format!("writing {}", path.display()))
}

/// The readable table of a run.
pub fn table(o: &EvalOutput) -> String {
    let mut s = format!("model {}  labels {}\n\n", o.model, o.labels);
    s += &format!(
        "{:<12} {:>5} {:>6} {:>7} {:>8} {:>8} {:>9} {:>6} {:>8} {:>9} {:>5}\n",
        "subset",
        "gifs",
        "iou",
        "jaccard",
        "at_least",
        "all_corr",
        "precision",
        "recall",
        "scene_r",
        "tags/gif",
        "none"
    );
    let row = |name: &str, r: &Report| {
        format!(
            "{:<12} {:>5} {:>6.3} {:>7.3} {:>8.3} {:>8.3} {:>9.3} {:>6.3} {:>8.3} {:>9.2} {:>5}\n",
            name,
            r.gifs,
            r.iou,
            r.jaccard,
            r.at_least_one,
            r.all_correct,
            r.precision,
            r.recall,
            r.scene_recall,
            r.tags_per_gif,
            r.no_suggestion
        )
    };
    s += &row("overall", &o.overall);
    for (name, r) in &o.groups {
        s += &row(name, r);
    }
    if o.overall.gifs_without_truth > 0 {
        s += &format!("\n{} GIFs without a true tag left out\n", o.overall.gifs_without_truth);
    }
    if !o.errors.is_empty() {
        s += &format!("\nnot tagged (counted as no suggestion): {:?}\n", o.errors);
    }
    let per_gif = |n: u64| n as f64 / o.frames.gifs.max(1) as f64;
    s += &format!(
        "\nmodel work: {:.2} frames sampled, {:.2} inferred per GIF ({} GIFs)\n",
        per_gif(o.frames.sampled),
        per_gif(o.frames.inferred),
        o.frames.gifs
    );
    match &o.embeddings {
        None => s += "\nsemantic: not computed (no tag embeddings: --embeddings FILE, tools/embed_tags.py)\n",
        Some(model) => {
            let sem = &o.overall.semantic;
            s += &format!(
                "\nsemantic ({model}): mean distance {:.3}, {:.3} of {} GIFs under {}\n",
                sem.mean, sem.share_under, sem.gifs, sem.threshold
            );
            if !o.unembedded_tags.is_empty() {
                s += &format!("tags without an embedding (their GIFs left out): {:?}\n", o.unembedded_tags);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_lines_paths_and_tags() {
        let dir = std::env::temp_dir().join(format!("autotag-eval-labels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("labels.jsonl");
        std::fs::write(&f, "{\"gif\":\"a.gif\",\"tags\":[\" Cat\",\"cat\"],\"groups\":[\"single\"]}\n\n{\"gif\":\"s3://b/k.gif\",\"scenes\":[[\"dog\"],[\"cat\"]]}\n").unwrap();
        let lines = read_labels(&f).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(normalized(&lines[0].tags), ["cat"]);
        assert_eq!(resolve(&lines[0].gif, &dir), dir.join("a.gif").display().to_string());
        assert_eq!(resolve(&lines[1].gif, &dir), "s3://b/k.gif");
        std::fs::write(&f, "{\"gif\":\"a.gif\"}\n{\"gif\":1}\n").unwrap();
        let e = read_labels(&f).unwrap_err();
        assert!(format!("{e:#}").contains("line 2"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
