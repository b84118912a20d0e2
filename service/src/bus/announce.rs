//! The one place that tells clients what changed: it turns a [`Diff`] of the model into
//! exported or removed extension objects, the Manager's signals, and PropertiesChanged.
//!
//! Nothing else emits for extensions, so every change is announced once and in one
//! order: extensions that went (their states disabled, `InterfacesRemoved`, then
//! `ExtensionRemoved`), then extensions that came (`InterfacesAdded`,
//! `ExtensionInstalled`, then their states enabled) and changed (their properties, then
//! enabled and disabled states), then the Manager's `Merged`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use kairos_extensions_dbus::paths::extension_path;
use kairos_extensions_dbus::{BootState, MANAGER_PATH};
use zbus::fdo::Properties;
use zbus::names::InterfaceName;
use zbus::object_server::{ObjectServer, SignalEmitter};
use zbus::{Connection, Variant};

use super::model::{Diff, UpdateInfo, UpdateNews, newly_enabled};
use super::signals::{self, MANAGER_INTERFACE, PropertyValues};
use crate::engine::Extension;

/// The interface of extension objects.
pub const EXTENSION_INTERFACE: &str = "org.kairos.Extensions1.Extension";

/// Puts extension objects on the bus and takes them off; implemented where the object
/// type lives, so that this module does not depend on it.
pub trait Exporter: Send + Sync {
    /// Exports the object of the extension `name`.
    fn export<'a>(&'a self, server: &'a ObjectServer, name: &'a str) -> BoxFuture<'a, zbus::Result<bool>>;
    /// Removes the object of the extension `name`.
    fn unexport<'a>(&'a self, server: &'a ObjectServer, name: &'a str) -> BoxFuture<'a, zbus::Result<bool>>;
    /// Every property of the object of the extension `name`, as the model holds it now;
    /// `None` when the model does not hold it.
    fn properties<'a>(
        &'a self,
        server: &'a ObjectServer,
        connection: &'a Connection,
        name: &'a str,
    ) -> BoxFuture<'a, zbus::Result<Option<PropertyValues>>>;
}

/// Exports the objects of `added` without announcing them: for the service's first
/// picture of the store, which is news to nobody (the name is not taken yet, so no
/// client could tell these objects from ones that were always there).
pub async fn export(connection: &Connection, exporter: &dyn Exporter, added: &[Arc<Extension>]) -> zbus::Result<()> {
    let server = connection.object_server();
    for ext in added {
        exporter.export(server, &ext.name).await?;
    }
    Ok(())
}

/// Announces `diff`.
pub async fn publish(connection: &Connection, exporter: &dyn Exporter, diff: &Diff) -> zbus::Result<()> {
    let server = connection.object_server();
    for gone in &diff.removed {
        for state in &gone.enabled {
            signals::extension_disabled(connection, &gone.name, state.as_str()).await?;
        }
        let path = extension_path(&gone.name);
        exporter.unexport(server, &gone.name).await?;
        signals::interfaces_removed(connection, &path, EXTENSION_INTERFACE).await?;
        tracing::info!(extension = %gone.name, "extension is gone");
        signals::extension_removed(connection, &gone.name, &path).await?;
    }
    for new in &diff.added {
        let path = extension_path(&new.name);
        if exporter.export(server, &new.name).await?
            && let Some(properties) = exporter.properties(server, connection, &new.name).await?
        {
            signals::interfaces_added(connection, &path, EXTENSION_INTERFACE, &properties).await?;
        }
        tracing::info!(extension = %new.name, "extension appeared");
        signals::extension_installed(connection, &new.name, &path).await?;
        for state in &new.enabled {
            signals::extension_enabled(connection, &new.name, state.as_str()).await?;
        }
    }
    for (before, now) in &diff.changed {
        properties_changed(connection, &extension_path(&now.name), EXTENSION_INTERFACE, extension_changes(before, now))
            .await?;
        for state in newly_enabled(before, now) {
            signals::extension_enabled(connection, &now.name, state.as_str()).await?;
        }
        for state in newly_enabled(now, before) {
            signals::extension_disabled(connection, &now.name, state.as_str()).await?;
        }
    }
    if let Some(merged) = &diff.merged {
        let changed = HashMap::from([("Merged", Variant::from(merged.clone()))]);
        properties_changed(connection, &MANAGER_PATH.try_into()?, MANAGER_INTERFACE, changed).await?;
    }
    Ok(())
}

/// Announces update news: changed update properties, and `ExtensionUpdated`. After
/// [`publish`], so that an extension's new version is told before the signal that it was
/// updated.
pub async fn publish_news(connection: &Connection, news: &[UpdateNews]) -> zbus::Result<()> {
    for item in news {
        match item {
            UpdateNews::Changed { name, before, now } => {
                properties_changed(connection, &extension_path(name), EXTENSION_INTERFACE, update_changes(before, now))
                    .await?;
            }
            UpdateNews::Updated { name, old_version, new_version } => {
                tracing::info!(extension = %name, old_version, new_version, "extension updated");
                signals::extension_updated(connection, name, old_version, new_version).await?;
            }
        }
    }
    Ok(())
}

/// Every update property that differs between `before` and `now`.
fn update_changes<'a>(before: &UpdateInfo, now: &'a UpdateInfo) -> HashMap<&'static str, Variant<'a>> {
    let mut changed = HashMap::new();
    let mut note = |property: &'static str, differs: bool, value: Variant<'a>| {
        if differs {
            changed.insert(property, value);
        }
    };
    note("UpdateAvailable", before.update_available != now.update_available, Variant::from(now.update_available));
    note(
        "AvailableVersion",
        before.available_version != now.available_version,
        Variant::from(now.available_version.as_str()),
    );
    note(
        "AvailableSource",
        before.available_source != now.available_source,
        Variant::from(now.available_source.as_str()),
    );
    note("CheckedTime", before.checked_time != now.checked_time, Variant::from(now.checked_time));
    note("UpdateCheck", before.check != now.check, Variant::from(now.check.as_str()));
    note(
        "PreviousVersion",
        before.previous_version != now.previous_version,
        Variant::from(now.previous_version.as_str()),
    );
    changed
}

/// Every property of an extension object that differs between `before` and `now`.
fn extension_changes<'a>(before: &Extension, now: &'a Extension) -> HashMap<&'static str, Variant<'a>> {
    let mut changed = HashMap::new();
    let mut note = |property: &'static str, differs: bool, value: Variant<'a>| {
        if differs {
            changed.insert(property, value);
        }
    };
    let states = |e: &Extension| e.enabled.iter().map(|s: &BootState| s.as_str().to_owned()).collect::<Vec<_>>();
    note("Version", before.version != now.version, Variant::from(now.version.as_str()));
    note("Source", before.source != now.source, Variant::from(now.source.as_str()));
    note("Digest", before.digest != now.digest, Variant::from(now.digest.as_str()));
    note("Size", before.size != now.size, Variant::from(now.size));
    note("InstalledTime", before.installed_time != now.installed_time, Variant::from(now.installed_time));
    note("EnabledBootStates", before.enabled != now.enabled, Variant::from(states(now)));
    note("Merged", before.merged != now.merged, Variant::from(now.merged));
    note("Compatible", before.compatible != now.compatible, Variant::from(now.compatible));
    note(
        "IncompatibleReason",
        before.incompatible_reason != now.incompatible_reason,
        Variant::from(now.incompatible_reason.as_str()),
    );
    note("Status", before.status != now.status, Variant::from(now.status.as_str()));
    note("StatusReason", before.status_reason != now.status_reason, Variant::from(now.status_reason.as_str()));
    let release: HashMap<&str, &str> = now.release.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    note("Release", before.release != now.release, Variant::from(release));
    changed
}

async fn properties_changed(
    connection: &Connection,
    path: &zbus::ObjectPath<'_>,
    interface: &'static str,
    changed: HashMap<&str, Variant<'_>>,
) -> zbus::Result<()> {
    if changed.is_empty() {
        return Ok(());
    }
    let emitter = SignalEmitter::new(connection, path.clone())?;
    Properties::properties_changed(
        &emitter,
        InterfaceName::from_static_str_unchecked(interface),
        changed,
        Cow::Borrowed(&[]),
    )
    .await
}
