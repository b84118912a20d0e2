//! `kairos-ext`: the command-line client of kairos-extensionsd.
#![allow(clippy::print_stdout, reason = "a command-line tool prints its results")]

mod agent;
mod args;
mod client;
mod local;
mod monitor;
mod offline;
mod outcome;
mod render;
mod update;

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    kairos_extensionsd::logging::init(level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kairos-ext: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
    if let Some(root) = &cli.root {
        if cli.command.needs_service() {
            bail!("this command talks to the running service; it has no offline form (drop --root)");
        }
        return offline::run(root, cli.config.as_deref(), cli.command);
    }
    if cli.config.is_some() {
        bail!("--config applies to offline mode (--root); the service reads its own configuration");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(client::run(cli.command, cli.no_ask_password))
}
