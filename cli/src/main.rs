//! `kairos-ext`: the command-line client of kairos-extensionsd.
#![allow(clippy::print_stdout, reason = "a command-line tool prints its results")]

mod agent;
mod args;
mod client;
mod exit;
mod human;
mod job;
mod local;
mod monitor;
mod offline;
mod outcome;
mod output;
mod pager;
mod render;
mod search;
mod style;
mod update;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::exit::{Exit, Failure};
use crate::output::Output;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    kairos_extensionsd::logging::init(level);
    let (verb, needs_service) = (cli.command.verb(), cli.command.needs_service());
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (exit, mut message) = exit::describe(&e);
            if exit == Exit::Unavailable {
                message.push_str(&without_service(verb, needs_service));
            }
            eprintln!("kairos-ext: {message}");
            exit.into()
        }
    }
}

fn run(cli: args::Cli) -> anyhow::Result<()> {
    let offline = cli.offline().map_err(|message| Failure::new(Exit::Usage, message))?;
    let output = Output::new(cli.quiet, cli.command.output());
    if let Some((root, config)) = offline {
        return offline::run(&root, config.as_deref(), cli.command, output);
    }
    if !cli.command.catalogs().is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "--catalog applies to offline mode (--root); the service reads the catalogs it is configured with",
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(client::run(cli.command, cli.no_ask_password, output))
}

/// What to do when the service cannot be reached: the offline form, where the verb has one.
fn without_service(verb: &str, needs_service: bool) -> String {
    if needs_service {
        format!(
            "; {verb} needs it (list, inspect, install, enable, disable, remove, refresh, search, check, update \
             and rollback work without it, as root, with --root /)"
        )
    } else {
        format!("; as root, `kairos-ext --root / {verb} ...` works without it")
    }
}
