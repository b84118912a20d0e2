//! Bringing the model up to date with the store, and announcing what changed.
//!
//! After one of our own changes and after the watcher saw someone else's, the engine
//! lists the store once, the model says what differs, and [`announce`] tells clients.
//! Our changes and others' therefore produce exactly the same signals, and a change that
//! changed nothing produces none. Reads never come here.

use std::sync::Arc;

use zbus::Connection;

use super::announce;
use super::error::{BusError, BusResult};
use super::state::Shared;

/// Re-reads the store into the model and announces the difference.
pub async fn resync(shared: &Arc<Shared>, connection: &Connection) -> BusResult<()> {
    let _serial = shared.updating.lock().await;
    let engine = shared.engine.clone();
    let (listed, merged) =
        tokio::task::spawn_blocking(move || Ok::<_, crate::engine::Error>((engine.list()?, engine.merged()?)))
            .await
            .map_err(|e| BusError::failed(format!("listing extensions failed: {e}")))??;
    let diff = shared.update_model(|model| model.replace(listed, merged));
    if diff.is_empty() {
        return Ok(());
    }
    let exporter = shared.exporter().ok_or_else(|| BusError::failed("extension objects cannot be exported yet"))?;
    announce::publish(connection, exporter, &diff).await?;
    Ok(())
}
