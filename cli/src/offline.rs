//! Offline mode: the engine, called directly on a root directory.

use std::path::Path;

use anyhow::{Context, Result};
use kairos_extensions_dbus::{ExtensionDescription, ExtensionName};
use kairos_extensionsd::engine::digest::Sha256Digest;
use kairos_extensionsd::engine::progress::Silent;
use kairos_extensionsd::engine::sources::Source;
use kairos_extensionsd::engine::{Config, Engine, InstallRequest};

use crate::args::{Command, InstallArgs};
use crate::outcome::{self, After};
use crate::render;

/// Runs one command against the system at `root`.
pub fn run(root: &Path, config_file: Option<&Path>, command: Command) -> Result<()> {
    let root = std::path::absolute(root).with_context(|| format!("resolving --root {}", root.display()))?;
    if !root.is_dir() {
        anyhow::bail!("--root {}: not a directory", root.display());
    }
    let config = Config::load(&root, config_file)?;
    let refresher = Engine::exec_refresher(&root, &config);
    // Reading verbs open the store as it is: they must work on a bare or read-only root
    // and leave no trace there.
    let engine = if matches!(command, Command::List { .. } | Command::Inspect { .. }) {
        Engine::open_read_only(&root, config, refresher)?
    } else {
        Engine::open(&root, config, refresher)?
    };
    match command {
        Command::List { json } => {
            let list: Vec<ExtensionDescription> = engine.list()?.iter().map(ExtensionDescription::from).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render::table(&list));
            }
        }
        Command::Inspect { name, json } => {
            let ext = ExtensionDescription::from(&engine.describe(&name)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&ext)?);
            } else {
                print!("{}", render::details(&ext));
            }
        }
        Command::Install(args) => {
            let source = parse_source(&args)?;
            let request = InstallRequest {
                name: args.name,
                enable: args.enable,
                now: args.now,
                replace: args.replace,
                digest: args.digest.as_deref().map(str::parse::<Sha256Digest>).transpose()?,
                update: false,
            };
            let boot = engine.boot_state();
            for installed in engine.install_source(&source, &request, &Silent)? {
                println!(
                    "Installed {} ({}, {} bytes){}",
                    installed.name,
                    installed.digest,
                    installed.size,
                    if installed.replaced { ", replacing the previous image" } else { "" }
                );
                let ext = engine.get(&installed.name)?;
                let after = After { name: installed.name.as_str(), boot, enabled: &ext.enabled, merged: ext.merged };
                for state in &request.enable {
                    println!("{}", outcome::enabled(&after, *state, installed.enabled.contains(state), request.now));
                }
            }
        }
        Command::Enable(args) => {
            let state = args.state();
            let changed = engine.enable(&args.name, state, args.now)?;
            println!("{}", after(&engine, &args.name, |a| outcome::enabled(a, state, changed, args.now))?);
        }
        Command::Disable(args) => {
            let state = args.state();
            let changed = engine.disable(&args.name, state, args.now)?;
            println!("{}", after(&engine, &args.name, |a| outcome::disabled(a, state, changed, args.now))?);
        }
        Command::Remove { name, now } => {
            let removed = engine.remove(&name, now)?;
            let merged_after = engine.merged()?.contains(name.as_str());
            println!("{}", outcome::removed(&removed.name, removed.merged, merged_after));
        }
        Command::Jobs | Command::Cancel { .. } | Command::Status | Command::Monitor { .. } => {
            anyhow::bail!("this command talks to the running service; it has no offline form")
        }
        Command::Check(args) => crate::update::offline_check(&engine, &args)?,
        Command::Update(args) => crate::update::offline_update(&engine, &args)?,
        Command::Rollback(args) => crate::update::offline_rollback(&engine, &args)?,
        Command::Refresh => {
            let merged = engine.refresh()?.into_result()?;
            if merged.is_empty() {
                println!("No extensions merged.");
            } else {
                println!("Merged: {}", merged.into_iter().collect::<Vec<_>>().join(", "));
            }
        }
    }
    Ok(())
}

/// What a change of `name` did, in the words of [`outcome`], read from the store after it.
fn after(engine: &Engine, name: &ExtensionName, line: impl FnOnce(&After<'_>) -> String) -> Result<String> {
    let ext = engine.get(name)?;
    Ok(line(&After { name: name.as_str(), boot: engine.boot_state(), enabled: &ext.enabled, merged: ext.merged }))
}

/// The install source; a relative path is taken from the current directory, as users
/// expect from a command line.
fn parse_source(args: &InstallArgs) -> Result<Source> {
    let text = if args.source.contains("://") || args.source.starts_with('/') {
        args.source.clone()
    } else {
        std::path::absolute(&args.source).with_context(|| format!("resolving {}", args.source))?.display().to_string()
    };
    Ok(Source::parse(&text)?)
}
