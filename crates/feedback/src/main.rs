//! `autotag-feedback`: the feedback API and the importer without libtorch (the same code as
//! `autotag feedback-api` and `autotag feedback import`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use autotag_feedback::{FeedbackConfig, FeedbackTool};
use clap::{Parser, Subcommand};

/// autotag's feedback ingestion API (no model, no libtorch).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by an environment variable
    /// AUTOTAG__SECTION__KEY.
    #[arg(long, short, global = true, env = "AUTOTAG_CONFIG")]
    config: Option<PathBuf>,
    /// Without a command: serve the API.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve POST /v1/feedback (the default).
    Serve,
    #[command(flatten)]
    Tool(FeedbackTool),
    /// Print the effective configuration of the sections this service reads as TOML.
    Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag_infra::telemetry::init_logging();
    let cfg: FeedbackConfig = autotag_infra::config::load(cli.config.as_deref()).context("loading configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let ok = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            rt.block_on(autotag_feedback::run(cfg, autotag_infra::shutdown::signal()))?;
            true
        }
        Command::Tool(tool) => rt.block_on(autotag_feedback::run_tool(&cfg, tool))?,
        Command::Config => {
            print!("{}", toml::to_string_pretty(&cfg)?);
            true
        }
    };
    rt.shutdown_timeout(Duration::from_millis(500));
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
