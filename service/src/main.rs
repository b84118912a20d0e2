//! `kairos-extensionsd`: parses arguments, sets up logging and the runtime, and hands
//! over to the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kairos_extensionsd::engine::{Config, Engine};

/// The org.kairos.Extensions1 system service: manages systemd system extensions on
/// behalf of busctl, kairos-ext, Cockpit and other services, with polkit deciding who may
/// change what.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Manage the system at this root instead of /.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Configuration file (default: ROOT/etc/kairos/extensions.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the configuration and the store, print the effective settings, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    kairos_extensionsd::logging::init("info");
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if std::env::var_os("JOURNAL_STREAM").is_some() {
                eprintln!("kairos-extensionsd: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.root, args.config.as_deref()).context("loading the configuration")?;
    if args.check_config {
        let refresher = Engine::exec_refresher(&args.root, &config);
        let engine = Engine::open(&args.root, config, refresher).context("opening the extension store")?;
        let layout = engine.layout();
        eprintln!(
            "store: {}\nruntime: {}\nimage policy: {}",
            layout.store().display(),
            layout.runtime().display(),
            engine.config().image_policy
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(kairos_extensionsd::bus::serve(&args.root, config))?;
    Ok(())
}
