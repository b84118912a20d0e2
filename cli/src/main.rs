//! `kairos-ext`: the command-line client of kairos-extensionsd.
#![allow(clippy::print_stdout, reason = "a command-line tool prints its results")]

mod args;
mod offline;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    kairos_extensionsd::logging::init(level);
    let result = match &cli.root {
        Some(root) => offline::run(root, cli.config.as_deref(), cli.command),
        None => Err(anyhow::anyhow!(
            "talking to the kairos-extensionsd service is not part of this build yet; use --root / to manage the running system offline"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kairos-ext: {e:#}");
            ExitCode::FAILURE
        }
    }
}
