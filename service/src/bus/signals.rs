//! The Manager's signals, sent by whoever has something to announce.
//!
//! The signals are declared on [`super::manager::Manager`] for introspection, and sent
//! from here by name, so that the modules that announce (the announcer, jobs) do not
//! depend on the Manager object, which depends on them.

use kairos_extensions_dbus::{JobResult, MANAGER_PATH};
use zbus::ObjectPath;
use zbus::{Connection, Result};

/// The interface the signals belong to.
pub const MANAGER_INTERFACE: &str = "org.kairos.Extensions1.Manager";

async fn send<B>(connection: &Connection, member: &'static str, body: &B) -> Result<()>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let emitter = zbus::object_server::SignalEmitter::new(connection, MANAGER_PATH)?;
    emitter.emit(MANAGER_INTERFACE, member, body).await
}

/// `ExtensionInstalled(s name, o path)`.
pub async fn extension_installed(connection: &Connection, name: &str, path: &ObjectPath<'_>) -> Result<()> {
    send(connection, "ExtensionInstalled", &(name, path)).await
}

/// `ExtensionRemoved(s name, o path)`.
pub async fn extension_removed(connection: &Connection, name: &str, path: &ObjectPath<'_>) -> Result<()> {
    send(connection, "ExtensionRemoved", &(name, path)).await
}

/// `ExtensionEnabled(s name, s boot_state)`.
pub async fn extension_enabled(connection: &Connection, name: &str, boot_state: &str) -> Result<()> {
    send(connection, "ExtensionEnabled", &(name, boot_state)).await
}

/// `ExtensionDisabled(s name, s boot_state)`.
pub async fn extension_disabled(connection: &Connection, name: &str, boot_state: &str) -> Result<()> {
    send(connection, "ExtensionDisabled", &(name, boot_state)).await
}

/// `ExtensionUpdated(s name, s old_version, s new_version)`.
pub async fn extension_updated(
    connection: &Connection,
    name: &str,
    old_version: &str,
    new_version: &str,
) -> Result<()> {
    send(connection, "ExtensionUpdated", &(name, old_version, new_version)).await
}

/// `Refreshed(as merged)`.
pub async fn refreshed(connection: &Connection, merged: &[String]) -> Result<()> {
    send(connection, "Refreshed", &(merged,)).await
}

/// `JobNew(t id, o path)`.
pub async fn job_new(connection: &Connection, id: u64, path: &ObjectPath<'_>) -> Result<()> {
    send(connection, "JobNew", &(id, path)).await
}

/// `JobRemoved(t id, o path, s result)`.
pub async fn job_removed(connection: &Connection, id: u64, path: &ObjectPath<'_>, result: JobResult) -> Result<()> {
    send(connection, "JobRemoved", &(id, path, result.as_str())).await
}
