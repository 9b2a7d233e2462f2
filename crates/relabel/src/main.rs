//! `autotag-relabel`: the relabel job without libtorch (the same code as `autotag relabel`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use autotag_relabel::{RelabelConfig, RelabelTool};
use clap::{Parser, Subcommand};

/// autotag's relabel job: uploads, suggestions and feedback joined per GIF into training
/// labels (no model, no libtorch).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by an environment variable
    /// AUTOTAG__SECTION__KEY.
    #[arg(long, short, global = true, env = "AUTOTAG_CONFIG")]
    config: Option<PathBuf>,
    /// Without a command: run the job.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the job (the default).
    Run,
    #[command(flatten)]
    Tool(RelabelTool),
    /// Print the effective configuration of the sections this service reads as TOML.
    Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag_infra::telemetry::init_logging();
    let cfg: RelabelConfig = autotag_infra::config::load(cli.config.as_deref()).context("loading configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => rt.block_on(autotag_relabel::run(cfg, autotag_infra::shutdown::signal()))?,
        Command::Tool(tool) => rt.block_on(autotag_relabel::run_tool(&cfg, tool))?,
        Command::Config => print!("{}", toml::to_string_pretty(&cfg)?),
    }
    rt.shutdown_timeout(Duration::from_millis(500));
    Ok(())
}
