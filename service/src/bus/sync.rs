//! Keeping the exported objects in step with the store.
//!
//! Signals and property changes are derived from the difference between what was
//! exported and what the engine lists now. Our own calls and changes made by others (a
//! file copied into the store, kairos-agent editing links) therefore produce exactly the
//! same signals, and an idempotent call that changed nothing produces none.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use kairos_extensions_dbus::paths::extension_path;
use kairos_extensions_dbus::{BootState, MANAGER_PATH};
use zbus::fdo::Properties;
use zbus::object_server::{Interface, SignalEmitter};
use zbus::{Connection, Variant};

use super::error::{BusError, BusResult};
use super::extension::ExtensionObject;
use super::manager::Manager;
use super::state::Shared;
use crate::engine::Extension;

/// Re-reads the store and updates objects, properties and signals to match.
pub async fn reconcile(shared: &Arc<Shared>, connection: &Connection) -> BusResult<()> {
    let _serial = shared.reconciling.lock().await;
    let engine = shared.engine.clone();
    let (listed, merged) =
        tokio::task::spawn_blocking(move || Ok::<_, crate::engine::Error>((engine.list()?, engine.merged()?)))
            .await
            .map_err(|e| BusError::failed(format!("listing extensions failed: {e}")))??;
    let current: BTreeMap<String, Extension> = listed.into_iter().map(|e| (e.name.clone(), e)).collect();
    let previous: BTreeMap<String, Arc<RwLock<Extension>>> =
        shared.exported.read().map(|m| m.clone()).unwrap_or_default();
    let emitter = SignalEmitter::new(connection, MANAGER_PATH)?;
    let server = connection.object_server();

    for (name, cell) in &previous {
        if current.contains_key(name) {
            continue;
        }
        let old = cell.read().map(|e| e.clone()).map_err(|_| BusError::failed("snapshot lock poisoned"))?;
        let path = extension_path(name);
        for state in &old.enabled {
            Manager::extension_disabled(&emitter, name, state.as_str()).await?;
        }
        server.remove::<ExtensionObject, _>(&path).await?;
        if let Ok(mut exported) = shared.exported.write() {
            exported.remove(name);
        }
        tracing::info!(extension = %name, "extension is gone");
        Manager::extension_removed(&emitter, name, path.as_ref()).await?;
    }

    for (name, ext) in current {
        let path = extension_path(&name);
        match previous.get(&name) {
            None => {
                let enabled = ext.enabled.clone();
                let cell = Arc::new(RwLock::new(ext));
                server.at(&path, ExtensionObject::new(shared.clone(), name.clone(), cell.clone())).await?;
                if let Ok(mut exported) = shared.exported.write() {
                    exported.insert(name.clone(), cell);
                }
                tracing::info!(extension = %name, "extension appeared");
                Manager::extension_installed(&emitter, &name, path.as_ref()).await?;
                for state in enabled {
                    Manager::extension_enabled(&emitter, &name, state.as_str()).await?;
                }
            }
            Some(cell) => {
                let old = cell.read().map(|e| e.clone()).map_err(|_| BusError::failed("snapshot lock poisoned"))?;
                if old == ext {
                    continue;
                }
                if let Ok(mut slot) = cell.write() {
                    *slot = ext.clone();
                }
                announce_changes(connection, &name, &old, &ext).await?;
                for state in BootState::ALL {
                    match (old.enabled.contains(&state), ext.enabled.contains(&state)) {
                        (false, true) => Manager::extension_enabled(&emitter, &name, state.as_str()).await?,
                        (true, false) => Manager::extension_disabled(&emitter, &name, state.as_str()).await?,
                        _ => {}
                    }
                }
            }
        }
    }

    let merged: Vec<String> = merged.into_iter().collect();
    let merged_changed = shared.merged.read().map(|m| *m != merged).unwrap_or(true);
    if merged_changed {
        if let Ok(mut slot) = shared.merged.write() {
            *slot = merged;
        }
        let manager = server.interface::<_, Manager>(MANAGER_PATH).await?;
        manager.get().await.merged_changed(manager.signal_emitter()).await?;
    }
    Ok(())
}

/// Emits one PropertiesChanged carrying every property of one extension that differs.
async fn announce_changes(connection: &Connection, name: &str, old: &Extension, new: &Extension) -> BusResult<()> {
    let states = |e: &Extension| e.enabled.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>();
    let release = |e: &Extension| e.release.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>();
    let mut changed: HashMap<&str, Variant<'_>> = HashMap::new();
    if old.enabled != new.enabled {
        changed.insert("EnabledBootStates", Variant::from(states(new)));
    }
    if old.merged != new.merged {
        changed.insert("Merged", Variant::from(new.merged));
    }
    if old.version != new.version {
        changed.insert("Version", Variant::from(new.version.clone()));
    }
    if old.source != new.source {
        changed.insert("Source", Variant::from(new.source.clone()));
    }
    if old.digest != new.digest {
        changed.insert("Digest", Variant::from(new.digest.clone()));
    }
    if old.size != new.size {
        changed.insert("Size", Variant::from(new.size));
    }
    if old.installed_time != new.installed_time {
        changed.insert("InstalledTime", Variant::from(new.installed_time));
    }
    if old.compatible != new.compatible {
        changed.insert("Compatible", Variant::from(new.compatible));
    }
    if old.incompatible_reason != new.incompatible_reason {
        changed.insert("IncompatibleReason", Variant::from(new.incompatible_reason.clone()));
    }
    if old.status != new.status {
        changed.insert("Status", Variant::from(new.status.as_str().to_owned()));
    }
    if old.status_reason != new.status_reason {
        changed.insert("StatusReason", Variant::from(new.status_reason.clone()));
    }
    if old.release != new.release {
        changed.insert("Release", Variant::from(release(new)));
    }
    if changed.is_empty() {
        return Ok(());
    }
    let emitter = SignalEmitter::new(connection, extension_path(name))?;
    Properties::properties_changed(&emitter, <ExtensionObject as Interface>::name(), changed, Cow::Borrowed(&[]))
        .await?;
    Ok(())
}
