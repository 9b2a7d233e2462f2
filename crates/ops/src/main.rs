//! `autotag-ops`: the operator tools without libtorch (upload, watch, config).

use std::time::Duration;

use anyhow::Context as _;
use autotag_infra::config::ConfigArgs;
use autotag_ops::{OpsCommand, OpsConfig};
use clap::{Parser, Subcommand};

/// autotag's operator tools (no model, no libtorch).
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
    #[command(flatten)]
    Ops(OpsCommand),
    /// Print the effective configuration of the sections these tools read (kafka, s3) as TOML.
    Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag_infra::telemetry::init_logging();
    let cfg: OpsConfig = cli.config.load().context("loading configuration")?;
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
