//! The `autotag` command line. Everything else lives in the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use autotag::config::Config;
use clap::{Parser, Subcommand};

/// Streaming GIF auto-tagging.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by an
    /// environment variable AUTOTAG__SECTION__KEY.
    #[arg(long, short, global = true, env = "AUTOTAG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume upload events, tag their GIFs, publish suggestions.
    Worker,
    /// Upload GIF files to S3 and produce an upload event for each.
    Upload {
        /// Target bucket.
        #[arg(long)]
        bucket: String,
        /// Key prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Create the bucket first if it does not exist.
        #[arg(long)]
        create_bucket: bool,
        /// GIF files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print suggestions and dead letters until N uploads were answered.
    Watch {
        /// Number of distinct upload events to wait for.
        #[arg(long)]
        expect: usize,
        /// Give up after this many seconds (exit code 1).
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Print the effective configuration (file + environment) as TOML.
    Config,
    /// Benchmarks: model-only, decode vs Pillow, report (see docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        what: autotag::bench::BenchCommand,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    autotag::telemetry::init_logging();
    let cfg = Config::load(cli.config.as_deref()).context("loading configuration")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(async move {
        match cli.command {
            Command::Worker => autotag::worker::run(cfg, shutdown_signal()).await,
            Command::Upload { bucket, prefix, create_bucket, files } => {
                let events = autotag::ops::upload(&cfg, &bucket, &prefix, &files, create_bucket).await?;
                for e in events {
                    println!("{}", serde_json::to_string(&e)?);
                }
                Ok(())
            }
            Command::Watch { expect, timeout_secs } => {
                if autotag::ops::watch(&cfg, expect, Duration::from_secs(timeout_secs)).await? {
                    Ok(())
                } else {
                    std::process::exit(1)
                }
            }
            Command::Config => {
                print!("{}", toml::to_string_pretty(&cfg)?);
                Ok(())
            }
            Command::Bench { what } => autotag::bench::run(&cfg, what),
        }
    });
    // Don't wait for abandoned blocking work (a decode past the shutdown
    // deadline): its records were not committed and will be redone.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
