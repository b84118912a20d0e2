//! `kairos-extensionsd`: parses arguments and hands over to the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use kairos_extensionsd::engine::{Config, Engine};

/// The org.kairos.Extensions1 system service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Manage the system at this root instead of /.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Configuration file (default: <root>/etc/kairos/extensions.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load and check the configuration and the store, print the effective settings, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> std::process::ExitCode {
    kairos_extensionsd::logging::init("info");
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("kairos-extensionsd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.root, args.config.as_deref()).context("loading the configuration")?;
    let refresher = Engine::exec_refresher(&args.root, &config);
    let engine = Engine::open(&args.root, config, refresher).context("opening the extension store")?;
    if args.check_config {
        let layout = engine.layout();
        eprintln!(
            "store: {}\nruntime: {}\nimage policy: {}",
            layout.store().display(),
            layout.runtime().display(),
            engine.config().image_policy
        );
        return Ok(());
    }
    anyhow::bail!("the D-Bus service is not part of this build yet; use kairos-ext --root for offline management")
}
