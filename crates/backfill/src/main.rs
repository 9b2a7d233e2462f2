//! `autotag-backfill`: enqueue historical GIFs for tagging, without libtorch (the same code as
//! `autotag backfill`).

use std::path::PathBuf;

use anyhow::Context as _;
use autotag_backfill::{BackfillConfig, RunArgs};
use clap::Parser;

/// Enqueue the historical catalogue (an S3 prefix or a manifest) for tagging on the backfill
/// topic: resumable, rate-limited, one event id per object per run.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by an environment variable
    /// AUTOTAG__SECTION__KEY.
    #[arg(long, short, env = "AUTOTAG_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag_infra::telemetry::init_logging();
    let cfg: BackfillConfig = autotag_infra::config::load(cli.config.as_deref()).context("loading configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let summary = rt.block_on(autotag_backfill::run(&cfg, &cli.run, autotag_infra::shutdown::signal()))?;
    println!("{summary}");
    Ok(())
}
