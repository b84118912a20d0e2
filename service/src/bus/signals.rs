//! The signals of the Manager's path, sent by whoever has something to announce: the
//! Manager's own, and the ObjectManager's `InterfacesAdded` and `InterfacesRemoved`.
//!
//! The signals are declared on [`super::manager::Manager`] and
//! [`super::object_manager::ObjectManager`] for introspection, and sent from here by
//! name, so that the modules that announce (the announcer, jobs) do not depend on the
//! objects, which depend on them.

use std::collections::HashMap;

use kairos_extensions_dbus::{JobResult, MANAGER_PATH};
use zbus::{Connection, ObjectPath, OwnedVariant, Result};

/// The interface the Manager's signals belong to.
pub const MANAGER_INTERFACE: &str = "org.kairos.Extensions1.Manager";

/// The interface `InterfacesAdded` and `InterfacesRemoved` belong to.
pub const OBJECT_MANAGER_INTERFACE: &str = "org.freedesktop.DBus.ObjectManager";

/// Every property of one interface of an object, as `GetAll` answers them.
pub type PropertyValues = HashMap<String, OwnedVariant>;

async fn send<B>(connection: &Connection, member: &'static str, body: &B) -> Result<()>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    send_on(connection, MANAGER_INTERFACE, member, body).await
}

async fn send_on<B>(connection: &Connection, interface: &'static str, member: &'static str, body: &B) -> Result<()>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let emitter = zbus::object_server::SignalEmitter::new(connection, MANAGER_PATH)?;
    emitter.emit(interface, member, body).await
}

/// `InterfacesAdded(o path, a{sa{sv}} interfaces_and_properties)`, for an object with one
/// interface, `interface`, whose properties are `properties`.
pub async fn interfaces_added(
    connection: &Connection,
    path: &ObjectPath<'_>,
    interface: &str,
    properties: &PropertyValues,
) -> Result<()> {
    let interfaces = HashMap::from([(interface, properties)]);
    send_on(connection, OBJECT_MANAGER_INTERFACE, "InterfacesAdded", &(path, interfaces)).await
}

/// `InterfacesRemoved(o path, as interfaces)`, for an object whose one interface,
/// `interface`, went with it.
pub async fn interfaces_removed(connection: &Connection, path: &ObjectPath<'_>, interface: &str) -> Result<()> {
    send_on(connection, OBJECT_MANAGER_INTERFACE, "InterfacesRemoved", &(path, &[interface][..])).await
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
