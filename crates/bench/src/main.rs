//! `autotag-bench`: model-only, decode-vs-Pillow and report benchmarks (docs/benchmarks.md).
//! The end-to-end benchmark is `cargo bench -p autotag-bench --bench e2e`.

use anyhow::Context as _;
use autotag_bench::BenchCommand;
use autotag_infra::config::ConfigArgs;
use clap::Parser;

/// autotag's benchmarks (not part of the product).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The worker's configuration: its model and limits are measured.
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: BenchCommand,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag_infra::telemetry::init_logging();
    let cfg = cli.config.load().context("loading configuration")?;
    autotag_bench::run(&cfg, cli.command)
}
