//! `autotag-ops`: the operator tools without libtorch (upload, watch, config).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use autotag_ops::{OpsCommand, OpsConfig};
use clap::{Parser, Subcommand};

/// autotag's operator tools (no model, no libtorch).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by an environment variable
    /// AUTOTAG__SECTION__KEY.
    #[arg(long, short, global = true, env = "AUTOTAG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Ops(OpsCommand),
    /// Print the effective configuration of the sections these tools read (kafka, s3) as TOML.
    Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag_infra::telemetry::init_logging();
    let cfg: OpsConfig = autotag_infra::config::load(cli.config.as_deref()).context("loading configuration")?;
    let ok = match cli.command {
        Command::Config => {
            print!("{}", toml::to_string_pretty(&cfg)?);
            true
        }
        Command::Ops(cmd) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let ok = rt.block_on(autotag_ops::run(&cfg, cmd))?;
            rt.shutdown_timeout(Duration::from_millis(500));
            ok
        }
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
