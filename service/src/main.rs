//! `kairos-extensionsd`: parses arguments, sets up logging and the runtime, and hands
//! over to the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kairos_extensionsd::engine::{Config, Engine};

/// The org.kairos.Extensions1 system service: manages systemd system extensions on
/// behalf of busctl, kairos-ext, Cockpit and other services, with polkit deciding who may
/// change what.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Args {
    /// Manage the system at this root instead of /.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Configuration file (default: ROOT/etc/kairos/extensions.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check the configuration and the store, print the effective settings, and exit.
    #[arg(long)]
    check_config: bool,
    /// Run a one-off task instead of the service.
    #[command(subcommand)]
    task: Option<Task>,
}

/// One-off tasks.
#[derive(Debug, Subcommand)]
enum Task {
    /// Link the extensions enabled for this boot (its Kairos boot state, plus common)
    /// into the runtime directory, skipping any image that cannot be used, and write
    /// ROOT/run/kairos-extensions/boot.json. Exits 0 unless the store is unreadable.
    BootActivate,
    /// Run as a systemd generator: on systemd 254 and later, pass the configured image
    /// policy to systemd-sysext.service through a drop-in in NORMAL_DIR.
    Generate {
        /// The generator's normal output directory.
        normal_dir: PathBuf,
        /// The early output directory (unused).
        early_dir: Option<PathBuf>,
        /// The late output directory (unused).
        late_dir: Option<PathBuf>,
    },
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
    if let Some(Task::Generate { normal_dir, .. }) = &args.task {
        generate(&args, normal_dir);
        return Ok(());
    }
    let config = Config::load(&args.root, args.config.as_deref()).context("loading the configuration")?;
    if let Some(Task::BootActivate) = args.task {
        let refresher = Engine::exec_refresher(&args.root, &config);
        let engine = Engine::open(&args.root, config, refresher).context("opening the extension store")?;
        let report = engine.boot_activate().context("activating extensions for this boot")?;
        tracing::info!(
            boot_state = report.boot_state,
            activated = report.activated.len(),
            skipped = report.skipped.len(),
            "boot activation finished"
        );
        return Ok(());
    }
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

/// A generator must not fail the boot: every problem is logged and it exits 0.
fn generate(args: &Args, normal_dir: &std::path::Path) {
    let config = match Config::load(&args.root, args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("not passing an image policy to systemd-sysext: {e:#}");
            return;
        }
    };
    let version = kairos_extensionsd::engine::sysext::host_systemd_version();
    match kairos_extensionsd::engine::generator::generate(normal_dir, &config.image_policy, version) {
        Ok(true) => {
            tracing::info!(policy = %config.image_policy, "systemd-sysext.service will enforce the image policy")
        }
        Ok(false) => tracing::info!(
            policy = %config.image_policy,
            systemd = ?version,
            "nothing to pass to systemd-sysext (permissive policy, or systemd older than 254: enforced at install and activation only)"
        ),
        Err(e) => tracing::error!("cannot write the systemd-sysext drop-in: {e}"),
    }
}
