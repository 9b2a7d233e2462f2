//! `autotag-bench`: model-only, decode-vs-Pillow and report benchmarks (docs/benchmarks.md).
//! The end-to-end benchmark is `cargo bench -p autotag-bench --bench e2e`.

use std::path::PathBuf;

use anyhow::Context as _;
use autotag_bench::BenchCommand;
use clap::Parser;

/// autotag's benchmarks (not part of the product).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML) of the worker whose model and limits are measured.
    #[arg(long, short, global = true, env = "AUTOTAG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: BenchCommand,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag_infra::telemetry::init_logging();
    let cfg = autotag_infra::config::load(cli.config.as_deref()).context("loading configuration")?;
    autotag_bench::run(&cfg, cli.command)
}
