//! `CheckUpdates`, `Update` and `Rollback`, for the Manager: arguments checked, the
//! caller authorized, then one engine call (in a job for the first two). What the engine
//! finds is returned as [`Finding`]s, which [`super::resync`] takes into the model with
//! the store's own changes and announces, before the job's `JobRemoved`.

use std::collections::HashMap;
use std::sync::Arc;

use kairos_extensions_dbus::{ErrorKind, ExtensionName, JobType};
use zbus::message::Header;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};

use super::authz::{self, Action};
use super::error::{BusError, BusResult};
use super::job;
use super::model::Finding;
use super::ops::{blocking, settle};
use super::resync::Touched;
use super::state::Shared;
use crate::engine;

/// What `Update` was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// Merge again what is merged now.
    pub now: bool,
    /// The catalog version to move to.
    pub version: Option<String>,
}

/// The `a{sv}` options of `Update`.
pub fn update_options(options: HashMap<String, OwnedVariant>) -> BusResult<UpdateOptions> {
    let mut parsed = UpdateOptions::default();
    for (key, value) in options {
        let wrong_type = |expected: &str| BusError::invalid_args(format!("option {key:?} must be of type {expected}"));
        match key.as_str() {
            "now" => parsed.now = bool::try_from(value).map_err(|_| wrong_type("b"))?,
            "version" => parsed.version = Some(String::try_from(value).map_err(|_| wrong_type("s"))?),
            other => return Err(BusError::invalid_args(format!("unknown option {other:?} (known: now, version)"))),
        }
    }
    Ok(parsed)
}

/// Validated names, each of an extension the service knows.
fn known_names(shared: &Shared, names: &[String]) -> BusResult<Vec<ExtensionName>> {
    let mut valid = Vec::with_capacity(names.len());
    for text in names {
        let name = super::args::name(text)?;
        if shared.snapshot(name.as_str()).is_none() {
            return Err(engine::Error::NotFound(name.to_string()).into());
        }
        if !valid.contains(&name) {
            valid.push(name);
        }
    }
    Ok(valid)
}

/// The polkit details of a call about `names`: the names, and their sources.
fn details(shared: &Shared, names: &[ExtensionName]) -> (String, String) {
    let sources: Vec<String> =
        names.iter().filter_map(|n| shared.snapshot(n.as_str())).map(|e| e.source.clone()).collect();
    let names: Vec<&str> = names.iter().map(ExtensionName::as_str).collect();
    (names.join(", "), sources.join(", "))
}

/// Starts a check job for `names` (every extension when empty).
pub async fn check(
    shared: &Arc<Shared>,
    connection: &Connection,
    header: &Header<'_>,
    names: Vec<String>,
    flags: u64,
) -> BusResult<(u64, OwnedObjectPath)> {
    let _busy = shared.activity.busy();
    let names = known_names(shared, &names)?;
    if flags != 0 {
        return Err(BusError::invalid_args(format!("unknown flag bits 0x{flags:x} (CheckUpdates knows none)")));
    }
    let (shown, sources) = details(shared, &names);
    let details = [("name", shown.as_str()), ("source", sources.as_str())];
    authz::authorize(shared.authority.as_ref(), connection, header, Action::Check, &details).await?;
    let uid = shared.authority.caller_uid(connection, header).await?;
    let engine = shared.engine.clone();
    let work: job::JobWork = Box::new(move |progress, findings| {
        findings.extend(engine.check_updates(&names, progress)?.into_iter().map(Finding::Checked));
        Ok(Vec::new())
    });
    let key = format!("check {shown}");
    job::start(shared, connection, JobType::Check, shown, Some(key), uid, false, work).await
}

/// Starts an update job for `names` (every extension with an update available when
/// empty).
pub async fn update(
    shared: &Arc<Shared>,
    connection: &Connection,
    header: &Header<'_>,
    names: Vec<String>,
    options: HashMap<String, OwnedVariant>,
) -> BusResult<(u64, OwnedObjectPath)> {
    let _busy = shared.activity.busy();
    let options = update_options(options)?;
    let mut names = known_names(shared, &names)?;
    if let Some(version) = &options.version {
        let [name] = names.as_slice() else {
            return Err(BusError::invalid_args("the version option names a version of one extension"));
        };
        let source = shared.snapshot(name.as_str()).map(|e| e.source.clone()).unwrap_or_default();
        if !source.starts_with("catalog:") {
            return Err(BusError::kind(
                ErrorKind::InvalidSource,
                format!(
                    "{name} is not a catalog install (its source is {source:?}), so there is no version {version:?} to choose"
                ),
            ));
        }
    }
    if names.is_empty() {
        let model = shared.model();
        names = model
            .extensions()
            .filter(|e| model.update_info(&e.name).update_available)
            .filter_map(|e| ExtensionName::new(&e.name).ok())
            .collect();
    }
    let (shown, sources) = details(shared, &names);
    let details = [("name", shown.as_str()), ("source", sources.as_str())];
    authz::authorize(shared.authority.as_ref(), connection, header, Action::Update, &details).await?;
    let uid = shared.authority.caller_uid(connection, header).await?;
    let key = format!("update {shown} now={} version={:?}", options.now, options.version);
    let (engine, now) = (shared.engine.clone(), options.now);
    let work: job::JobWork = Box::new(move |progress, findings| {
        if names.is_empty() {
            tracing::info!("no extension has an update available; nothing to update");
            return Ok(Vec::new());
        }
        // Each update that went through is kept, even when a later one fails.
        let mut record = |step: &engine::Updated| {
            if step.updated {
                findings.push(Finding::Updated {
                    name: step.name.to_string(),
                    old_version: step.old_version.clone(),
                    new_version: step.new_version.clone(),
                });
            } else {
                tracing::info!(extension = %step.name, reason = %step.note, "not updated");
            }
        };
        engine.update(&names, now, options.version.as_deref(), progress, &mut record)?;
        Ok(Vec::new())
    });
    job::start(shared, connection, JobType::Update, shown, Some(key), uid, now, work).await
}

/// Puts the previous version of `name` back.
pub async fn rollback(
    shared: &Arc<Shared>,
    connection: &Connection,
    header: &Header<'_>,
    name: &str,
    flags: u64,
) -> BusResult<()> {
    let _busy = shared.activity.busy();
    let name = super::args::name(name)?;
    let now = super::args::flags(flags)?;
    let names = known_names(shared, &[name.to_string()])?;
    let (shown, sources) = details(shared, &names);
    let details = [("name", shown.as_str()), ("source", sources.as_str())];
    authz::authorize(shared.authority.as_ref(), connection, header, Action::Update, &details).await?;
    // A rollback touched one extension: read it back, not the whole store.
    let mut touched = Touched { names: [name.clone()].into(), ..Touched::default() };
    let result = blocking(shared, move |engine| engine.rollback(&name, now)).await;
    if let Ok(rolled) = &result {
        touched.findings.push(Finding::Updated {
            name: rolled.name.to_string(),
            old_version: rolled.old_version.clone(),
            new_version: rolled.new_version.clone(),
        });
    }
    settle(shared, connection, result.is_ok().then_some(touched), now && result.is_ok()).await?;
    result.map(drop)
}

#[cfg(test)]
mod tests {
    use zbus::Variant;

    use super::*;

    fn opts(items: Vec<(&str, Variant<'static>)>) -> HashMap<String, OwnedVariant> {
        items.into_iter().filter_map(|(k, v)| OwnedVariant::try_from(v).ok().map(|v| (k.to_owned(), v))).collect()
    }

    #[test]
    fn update_options_are_now_and_version_and_nothing_else() {
        let parsed = update_options(opts(vec![("now", Variant::from(true)), ("version", Variant::from("1.32.1"))]));
        assert_eq!(parsed.ok(), Some(UpdateOptions { now: true, version: Some("1.32.1".into()) }));
        let unknown = update_options(opts(vec![("replace", Variant::from(true))]));
        assert!(unknown.is_err_and(|e| e.error_name().ends_with("InvalidArgs") && e.message().contains("replace")));
        let wrong = update_options(opts(vec![("now", Variant::from("yes"))]));
        assert!(wrong.is_err_and(|e| e.error_name().ends_with("InvalidArgs")));
    }
}
