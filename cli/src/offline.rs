//! Offline mode: the engine, called directly on a root directory.

use std::path::Path;

use anyhow::{Context, Result};
use kairos_extensions_dbus::{ExtensionDescription, ExtensionName};
use kairos_extensionsd::bus::describe::remembered_updates;
use kairos_extensionsd::engine::digest::Sha256Digest;
use kairos_extensionsd::engine::progress::Silent;
use kairos_extensionsd::engine::sources::{self, Source};
use kairos_extensionsd::engine::{Config, Engine, InstallRequest};

use crate::args::{Command, InstallArgs};
use crate::exit::{Exit, Failure};
use crate::local::local_file;
use crate::outcome::{self, After};
use crate::output::Output;
use crate::render;

/// Runs one command against the system at `root`.
pub fn run(root: &Path, config_file: Option<&Path>, command: Command, out: Output) -> Result<()> {
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
    if !command.catalogs().is_empty() {
        engine.catalogs().choose(crate::search::locations(command.catalogs())?);
    }
    match command {
        Command::List { filter, .. } => {
            let state = filter.state();
            let listed = engine.list()?;
            let mut updates = remembered_updates(&engine, &listed)?;
            let list: Vec<ExtensionDescription> = listed
                .iter()
                .map(|ext| ExtensionDescription {
                    updates: updates.remove(&ext.name),
                    ..ExtensionDescription::from(ext)
                })
                .filter(|e| state.is_none_or(|s| e.enabled.contains(&s)))
                .collect();
            out.data(&list, |style, legend| render::table(&list, state, style, legend))?;
        }
        Command::Inspect { name, .. } => {
            let described = engine.describe(&name)?;
            let updates = remembered_updates(&engine, std::slice::from_ref(&described))?.remove(&described.name);
            let ext = ExtensionDescription { updates, ..ExtensionDescription::from(&described) };
            out.data(&ext, |style, _| render::details(&ext, style))?;
        }
        Command::Install(args) => {
            // Failures name what was being installed, as they do through the service.
            let cannot = || format!("cannot install {}", sources::redact(&args.source));
            let source = parse_source(&args).with_context(cannot)?;
            let request = InstallRequest {
                name: args.name,
                enable: args.enable,
                now: args.now,
                replace: args.replace,
                digest: args.digest.as_deref().map(str::parse::<Sha256Digest>).transpose()?,
                update: false,
            };
            let boot = engine.boot_state();
            for installed in engine.install_source(&source, &request, &Silent).with_context(cannot)? {
                out.said(&outcome::installed(
                    installed.name.as_str(),
                    &installed.digest,
                    installed.size,
                    installed.replaced,
                ))?;
                let ext = engine.get(&installed.name)?;
                let after = After { name: installed.name.as_str(), boot, enabled: &ext.enabled, merged: ext.merged };
                for state in &request.enable {
                    out.said(&outcome::enabled(&after, *state, installed.enabled.contains(state), request.now))?;
                }
            }
        }
        Command::Enable(args) => {
            let state = args.state();
            let changed = engine.enable(&args.name, state, args.now)?;
            out.said(&after(&engine, &args.name, |a| outcome::enabled(a, state, changed, args.now))?)?;
        }
        Command::Disable(args) => {
            let state = args.state();
            let changed = engine.disable(&args.name, state, args.now)?;
            out.said(&after(&engine, &args.name, |a| outcome::disabled(a, state, changed, args.now))?)?;
        }
        Command::Remove { name, now, .. } => {
            let removed = engine.remove(&name, now)?;
            let merged_after = engine.merged()?.contains(name.as_str());
            out.said(&outcome::removed(&removed.name, removed.merged, merged_after))?;
        }
        Command::Jobs { .. } | Command::Cancel { .. } | Command::Status { .. } | Command::Monitor { .. } => {
            return Err(
                Failure::new(Exit::Usage, "this command talks to the running service; it has no offline form").into()
            );
        }
        Command::Search { text, .. } => crate::search::offline(&engine, text.as_deref(), &out)?,
        Command::Check(args) => crate::update::offline_check(&engine, &args, &out)?,
        Command::Update(args) => crate::update::offline_update(&engine, &args, &out)?,
        Command::Rollback(args) => crate::update::offline_rollback(&engine, &args, &out)?,
        Command::Refresh { .. } => {
            let merged: Vec<String> = engine.refresh()?.into_result()?.into_iter().collect();
            out.data(&serde_json::json!({ "merged": merged }), |_, legend| render::merged(&merged, legend))?;
        }
    }
    Ok(())
}

/// What a change of `name` did, in the words of [`outcome`], read from the store after it.
fn after(engine: &Engine, name: &ExtensionName, line: impl FnOnce(&After<'_>) -> String) -> Result<String> {
    let ext = engine.get(name)?;
    Ok(line(&After { name: name.as_str(), boot: engine.boot_state(), enabled: &ext.enabled, merged: ext.merged }))
}

/// The install source: a local image as the path the service would open (the same
/// checks, the same words when it is missing), anything else as the service parses it.
fn parse_source(args: &InstallArgs) -> Result<Source> {
    // A bare name is a catalog entry unless a local file of that name exists.
    if let Some(catalog) = crate::search::catalog_source(&args.source) {
        return Ok(Source::parse(&catalog)?);
    }
    match local_file(&args.source)? {
        Some(path) => Ok(Source::File(path)),
        None => Ok(Source::parse(&args.source)?),
    }
}
