//! The `autotag` command line: one front for every service and tool, and the root package of
//! the workspace (its system tests are in the repository's `tests/`). It holds no logic of its
//! own; each command lives in its service's crate under `crates/`. Torch-free tools also ship as
//! their own binaries (`autotag-ops`, `autotag-feedback`, `autotag-relabel`, `autotag-backfill`),
//! which need no libtorch.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use autotag_backfill::BackfillConfig;
use autotag_eval::EvalConfig;
use autotag_feedback::{FeedbackConfig, FeedbackTool};
use autotag_infra::config::{self, ConfigArgs, ConfigError};
use autotag_ops::{OpsCommand, OpsConfig};
use autotag_relabel::{RelabelConfig, RelabelTool};
use autotag_worker::WorkerConfig;
use clap::{Parser, Subcommand};

/// Streaming GIF auto-tagging.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume upload events, tag their GIFs, publish suggestions.
    Worker,
    /// Serve the feedback API (POST /v1/feedback); also the `autotag-feedback` binary.
    FeedbackApi,
    /// Feedback tools (bulk import).
    Feedback {
        #[command(subcommand)]
        tool: FeedbackTool,
    },
    /// Run the relabel job (uploads, suggestions and feedback → training labels), or one of its
    /// tools (export); also the `autotag-relabel` binary.
    Relabel {
        #[command(subcommand)]
        tool: Option<RelabelTool>,
    },
    /// Enqueue the historical catalogue (an S3 prefix or a manifest) for tagging on the backfill
    /// topic: resumable, rate-limited, one event id per object per run; also the
    /// `autotag-backfill` binary.
    Backfill(autotag_backfill::RunArgs),
    /// Tag local GIFs or s3:// objects with the worker's decoder, model and scoring, without
    /// Kafka: a table, or with --json one JSON line per input.
    Tag {
        /// Print one JSON line per input instead of a table.
        #[arg(long)]
        json: bool,
        /// GIF files or s3://bucket/key objects.
        #[arg(required = true)]
        inputs: Vec<String>,
    },
    /// Evaluate tag quality on a labelled set (one {"gif","tags"[,"scenes","groups"]} a line):
    /// the seed's metrics, precision, recall, scene recall, overall and per group.
    Eval {
        /// The labels file (JSON lines); relative GIF paths are resolved against its folder.
        #[arg(long)]
        labels: std::path::PathBuf,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Cosine distance under which a GIF counts as semantically right.
        #[arg(long, default_value_t = 0.3)]
        semantic_threshold: f64,
        /// Also write every GIF's per-frame scores as JSON lines (for tools/calibrate_scoring.py;
        /// use with --full-work).
        #[arg(long)]
        dump_frames: Option<std::path::PathBuf>,
        /// Infer every sampled frame instead of skipping blank and near-duplicate frames: the
        /// full-work baseline of the quality guard (docs/quality.md).
        #[arg(long)]
        full_work: bool,
        /// Tag embeddings for the semantic metric (tools/embed_tags.py); default
        /// tools/tag_embeddings.json when it exists.
        #[arg(long)]
        embeddings: Option<std::path::PathBuf>,
    },
    #[command(flatten)]
    Ops(OpsCommand),
    /// Print the effective configuration of every section (file + environment) as TOML.
    Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag_infra::telemetry::init_logging();
    let path = cli.config.config.as_deref();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = match cli.command {
        Command::Worker => {
            let cfg: WorkerConfig = config::load(path).context("loading configuration")?;
            rt.block_on(autotag_worker::run(cfg, autotag_infra::shutdown::signal()))
        }
        Command::FeedbackApi => {
            let cfg: FeedbackConfig = config::load(path).context("loading configuration")?;
            rt.block_on(autotag_feedback::run(cfg, autotag_infra::shutdown::signal())).map_err(anyhow::Error::from)
        }
        Command::Feedback { tool } => {
            let cfg: FeedbackConfig = config::load(path).context("loading configuration")?;
            match rt.block_on(autotag_feedback::run_tool(&cfg, tool)) {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(e) => Err(e.into()),
            }
        }
        Command::Relabel { tool } => {
            let cfg: RelabelConfig = config::load(path).context("loading configuration")?;
            match tool {
                None => rt.block_on(autotag_relabel::run(cfg, autotag_infra::shutdown::signal())),
                Some(tool) => rt.block_on(autotag_relabel::run_tool(&cfg, tool)),
            }
        }
        Command::Backfill(args) => {
            let cfg: BackfillConfig = config::load(path).context("loading configuration")?;
            rt.block_on(autotag_backfill::run(&cfg, &args, autotag_infra::shutdown::signal())).map(|s| println!("{s}"))
        }
        Command::Tag { json, inputs } => {
            let cfg: EvalConfig = config::load(path).context("loading configuration")?;
            rt.block_on(autotag_eval::tag::run(&cfg, &inputs, json)).map(|_| ())
        }
        Command::Eval { labels, json, semantic_threshold, dump_frames, full_work, embeddings } => {
            let cfg: EvalConfig = config::load(path).context("loading configuration")?;
            let embeddings = autotag_eval::embeddings::TagEmbeddings::load_or_default(embeddings.as_deref())?;
            let opts = autotag_eval::runner::RunOptions { semantic_threshold, dump_frames, full_work, embeddings };
            rt.block_on(async {
                let out = autotag_eval::runner::run(&cfg, &labels, &opts).await?;
                print!("{}", autotag_eval::runner::table(&out));
                match json {
                    Some(path) => autotag_eval::runner::write_json(&out, &path),
                    None => Ok(()),
                }
            })
        }
        Command::Ops(cmd) => {
            let cfg: OpsConfig = config::load(path).context("loading configuration")?;
            match rt.block_on(autotag_ops::run(&cfg, cmd)) {
                Ok(true) => Ok(()),
                Ok(false) => std::process::exit(1),
                Err(e) => Err(e),
            }
        }
        Command::Config => {
            print!("{}", toml::to_string_pretty(&effective_config(path)?)?);
            Ok(())
        }
    };
    // Don't wait for abandoned blocking work (a decode past the shutdown
    // deadline): its records were not committed and will be redone.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

/// Every service's effective configuration, merged into one tree (shared sections once).
fn effective_config(path: Option<&Path>) -> Result<toml::Table, ConfigError> {
    let mut all = config::to_table(&config::load::<WorkerConfig>(path)?)?;
    for (section, value) in config::to_table(&config::load::<OpsConfig>(path)?)? {
        all.entry(section).or_insert(value);
    }
    for (section, value) in config::to_table(&config::load::<FeedbackConfig>(path)?)? {
        all.entry(section).or_insert(value);
    }
    for (section, value) in config::to_table(&config::load::<EvalConfig>(path)?)? {
        all.entry(section).or_insert(value);
    }
    for (section, value) in config::to_table(&config::load::<RelabelConfig>(path)?)? {
        all.entry(section).or_insert(value);
    }
    for (section, value) in config::to_table(&config::load::<BackfillConfig>(path)?)? {
        all.entry(section).or_insert(value);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The repository root: this package's own directory.
    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// Every key `autotag config` prints has a row in the README's configuration table: a row
    /// whose first column is the key's section and whose second column names the key (rows may
    /// group keys as `a / b`; `*any librdkafka key*` covers a pass-through map).
    #[test]
    fn readme_configuration_table_lists_every_key() {
        let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
        let rows: Vec<(Vec<String>, Vec<String>)> = readme
            .lines()
            .filter(|l| l.starts_with("| ") && l.matches('|').count() >= 4)
            .map(|l| {
                let cols: Vec<&str> = l.split('|').map(str::trim).collect();
                let sections = cols[1].split(',').map(|s| s.trim().to_owned()).collect();
                let keys = cols[2].split('/').map(|k| k.trim().to_owned()).collect();
                (sections, keys)
            })
            .collect();
        let cfg = effective_config(Some(&repo().join("config/default.toml"))).expect("config loads");
        let mut missing = Vec::new();
        let mut keys = Vec::new();
        flatten("", &cfg, &mut keys);
        for (section, key) in keys {
            let found = rows.iter().any(|(sections, ks)| {
                sections.contains(&section) && (ks.contains(&key) || ks.iter().any(|k| k == "*any librdkafka key*"))
            });
            if !found {
                missing.push(format!("{section}.{key}"));
            }
        }
        assert!(missing.is_empty(), "keys printed by `autotag config` but not in the README table: {missing:?}");
    }

    /// (section path, key) of every leaf.
    fn flatten(prefix: &str, t: &toml::Table, out: &mut Vec<(String, String)>) {
        for (k, v) in t {
            match v {
                toml::Value::Table(sub) => {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    flatten(&p, sub, out);
                }
                _ => out.push((prefix.to_owned(), k.clone())),
            }
        }
    }
}
