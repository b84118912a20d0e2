//! Bringing the model up to date with the store, and announcing what changed.
//!
//! After one of our own changes and after the watcher saw someone else's, the engine
//! reads what the change touched (the store once, or the few extensions concerned),
//! the model says what differs, and [`announce`] tells clients.
//! Our changes and others' therefore produce exactly the same signals, and a change that
//! changed nothing produces none. Reads never come here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kairos_extensions_dbus::ExtensionName;
use zbus::Connection;

use super::announce;
use super::error::{BusError, BusResult};
use super::model::{Diff, Finding, Model};
use super::state::Shared;
use crate::engine::Extension;

/// Re-reads the store into the model and announces the difference.
pub async fn resync(shared: &Arc<Shared>, connection: &Connection) -> BusResult<()> {
    resync_with(shared, connection, Vec::new()).await
}

/// Re-reads the store into the model, takes in what a change found, and announces the
/// difference.
pub async fn resync_with(shared: &Arc<Shared>, connection: &Connection, findings: Vec<Finding>) -> BusResult<()> {
    let _serial = shared.updating.lock().await;
    let (listed, merged, previous) = read_store(shared).await?;
    apply(shared, connection, &previous, &findings, |model| model.replace(listed, merged)).await
}

/// Changes the model with `change`, takes the versions kept for rollback and what the
/// change found, and announces what changed and any update news. The caller holds
/// [`Shared::updating`].
async fn apply(
    shared: &Arc<Shared>,
    connection: &Connection,
    previous: &BTreeMap<String, String>,
    findings: &[Finding],
    change: impl FnOnce(&mut Model) -> Diff,
) -> BusResult<()> {
    let (diff, news) = shared.update_model(|model| {
        let diff = change(model);
        model.set_previous_versions(previous);
        findings.iter().for_each(|finding| model.take_in(finding));
        (diff, model.take_news())
    });
    if !diff.is_empty() {
        announce::publish(connection, exporter(shared)?, &diff).await?;
    }
    announce::publish_news(connection, &news).await?;
    Ok(())
}

/// Which extensions a change concerned, as far as the one who saw it can tell.
#[derive(Debug, Default)]
pub struct Touched {
    /// Extensions that may have changed.
    pub names: BTreeSet<ExtensionName>,
    /// Extensions our own change removed.
    pub removed: BTreeSet<ExtensionName>,
    /// Whether the links of any boot state changed: then every extension whose enabled
    /// states are not what the model holds is read again, whatever its name.
    pub links: bool,
    /// What the change found that the store does not hold.
    pub findings: Vec<Finding>,
}

/// Brings the model up to date for the extensions `touched` names and the merged set,
/// without listing the store, and announces the difference. When a name cannot be told
/// on its own (its image is not `NAME.raw`, or it is gone while something still names
/// it), or a link names a file the model does not know, it lists the store after all:
/// the answer is always the one [`resync`] would give.
pub async fn resync_touched(shared: &Arc<Shared>, connection: &Connection, mut touched: Touched) -> BusResult<()> {
    let serial = shared.updating.lock().await;
    let findings = std::mem::take(&mut touched.findings);
    let reading = shared.clone();
    let read = tokio::task::spawn_blocking(move || read_touched(&reading, touched))
        .await
        .map_err(|e| BusError::failed(format!("reading extensions failed: {e}")))??;
    let Some((found, merged, previous)) = read else {
        drop(serial);
        return resync_with(shared, connection, findings).await;
    };
    apply(shared, connection, &previous, &findings, |model| model.update(found, merged)).await
}

/// What the engine says of a few extensions, the names merged, and the versions kept for
/// rollback.
type TouchedRead = (Vec<(String, Option<Extension>)>, BTreeSet<String>, BTreeMap<String, String>);

/// What the engine says now of the touched extensions, the merged names and the
/// versions kept for rollback (few: one per extension updated); `None` when only a
/// listing can tell.
fn read_touched(shared: &Shared, mut touched: Touched) -> Result<Option<TouchedRead>, crate::engine::Error> {
    let engine = &shared.engine;
    if touched.links {
        let enablement = engine.enablement()?;
        let model = shared.model();
        let mut files = BTreeSet::new();
        for ext in model.extensions() {
            files.insert(ext.file.as_str());
            let now: Vec<_> = enablement.get(&ext.file).map(|s| s.iter().copied().collect()).unwrap_or_default();
            if now != ext.enabled
                && let Ok(name) = ExtensionName::new(&ext.name)
            {
                touched.names.insert(name);
            }
        }
        if enablement.keys().any(|file| !files.contains(file.as_str())) {
            return Ok(None);
        }
    }
    let mut found = Vec::new();
    let mut names: BTreeSet<ExtensionName> = touched.names.difference(&touched.removed).cloned().collect();
    for name in &touched.removed {
        // Another change (an install of the same name) may have put it back since ours
        // removed it: then it is read like any other.
        if engine.has_entry_for(name)? {
            names.insert(name.clone());
        } else {
            found.push((name.to_string(), None));
        }
    }
    for name in &names {
        match engine.quick_get(name)? {
            Some(ext) => found.push((name.to_string(), Some(ext))),
            None => return Ok(None),
        }
    }
    Ok(Some((found, engine.merged()?, engine.previous_versions()?.into_iter().collect())))
}

/// Fills the model for the first time and exports an object for every extension, at
/// startup, before the service takes its name. None of our signals is sent: nothing was
/// installed or enabled, the service only learned what is there, and no client can
/// address it by name yet; nor is `InterfacesAdded` (see [`super::object_manager`]).
/// Returns how many extensions there are.
pub async fn load(shared: &Arc<Shared>, connection: &Connection) -> BusResult<usize> {
    let _serial = shared.updating.lock().await;
    let (listed, merged, previous) = read_store(shared).await?;
    // What the last checks found outlives the service, which exits when idle.
    let installed: Vec<(String, String)> = listed.iter().map(|e| (e.name.clone(), e.digest.clone())).collect();
    let engine = shared.engine.clone();
    let checked = tokio::task::spawn_blocking(move || engine.remembered_checks(&installed)).await.unwrap_or_default();
    let diff = shared.update_model(|model| {
        let diff = model.replace(listed, merged);
        model.set_previous_versions(&previous);
        checked.iter().for_each(|outcome| model.record_check(outcome));
        // What is there at startup is nobody's news.
        model.take_news();
        diff
    });
    announce::export(connection, exporter(shared)?, &diff.added).await?;
    Ok(diff.added.len())
}

/// What the engine lists now, the names merged now, and the versions kept for rollback.
async fn read_store(shared: &Arc<Shared>) -> BusResult<(Vec<Extension>, BTreeSet<String>, BTreeMap<String, String>)> {
    let engine = shared.engine.clone();
    let read = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::engine::Error>((
            engine.list()?,
            engine.merged()?,
            engine.previous_versions()?.into_iter().collect(),
        ))
    })
    .await
    .map_err(|e| BusError::failed(format!("listing extensions failed: {e}")))??;
    Ok(read)
}

fn exporter(shared: &Shared) -> BusResult<&dyn announce::Exporter> {
    shared.exporter().ok_or_else(|| BusError::failed("extension objects cannot be exported yet"))
}
