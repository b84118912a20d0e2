//! Bringing the model up to date with the store, and announcing what changed.
//!
//! After one of our own changes and after the watcher saw someone else's, the engine
//! lists the store once, the model says what differs, and [`announce`] tells clients.
//! Our changes and others' therefore produce exactly the same signals, and a change that
//! changed nothing produces none. Reads never come here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use zbus::Connection;

use super::announce;
use super::error::{BusError, BusResult};
use super::state::Shared;
use crate::engine::Extension;

/// Re-reads the store into the model and announces the difference.
pub async fn resync(shared: &Arc<Shared>, connection: &Connection) -> BusResult<()> {
    let _serial = shared.updating.lock().await;
    let (listed, merged, previous) = read_store(shared).await?;
    let (diff, news) = shared.update_model(|model| {
        let diff = model.replace(listed, merged);
        model.set_previous_versions(&previous);
        (diff, model.take_news())
    });
    if !diff.is_empty() {
        announce::publish(connection, exporter(shared)?, &diff).await?;
    }
    announce::publish_news(connection, &news).await?;
    Ok(())
}

/// Fills the model for the first time and exports an object for every extension, at
/// startup, before the service takes its name. None of our signals is sent: nothing was
/// installed or enabled, the service only learned what is there, and no client can
/// address it by name yet (zbus itself still sends `InterfacesAdded` for each object).
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
