//! `org.kairos.Extensions1.Extension`: one object per installed extension.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use kairos_extensions_dbus::paths::extension_path;
use zbus::message::Header;
use zbus::object_server::{Interface, ObjectServer, SignalEmitter};
use zbus::{Connection, OwnedObjectPath, interface};

use super::announce::Exporter;
use super::error::Result;
use super::model::UpdateInfo;
use super::ops;
use super::read_only::ReadOnly;
use super::signals::PropertyValues;
use super::state::Shared;
use crate::engine::Extension;

/// The object of one extension. Its properties are read from the model; its methods act
/// by name, so they always work on what the store holds now.
pub struct ExtensionObject {
    shared: Arc<Shared>,
    name: String,
    /// What a transient object made by [`properties`] reads instead of the model: the
    /// extension and its update properties as the model held them when it was made, so
    /// that all its properties come from one picture and a read of all of them looks
    /// the model up once, not once per property.
    pinned: Option<(Arc<Extension>, UpdateInfo)>,
}

impl ExtensionObject {
    /// Reads a field of this extension from the model; a default once it is gone (a call
    /// that raced with its removal).
    fn read<T: Default>(&self, field: impl FnOnce(&Extension) -> T) -> T {
        match &self.pinned {
            Some((ext, _)) => field(ext),
            None => self.shared.snapshot(&self.name).map(|ext| field(&ext)).unwrap_or_default(),
        }
    }

    /// The update properties of this extension, from the model.
    fn updates(&self) -> UpdateInfo {
        match &self.pinned {
            Some((_, updates)) => updates.clone(),
            None => self.shared.model().update_info(&self.name),
        }
    }
}

/// Every property of the object of `ext` (at `path`), whose update properties are
/// `updates`, as `GetAll` answers them: what `InterfacesAdded` and `GetManagedObjects`
/// carry. Read through the object's own getters, so that the three can never disagree.
pub async fn properties(
    shared: &Arc<Shared>,
    server: &ObjectServer,
    connection: &Connection,
    path: &OwnedObjectPath,
    ext: Arc<Extension>,
    updates: UpdateInfo,
) -> zbus::fdo::Result<PropertyValues> {
    let object = ExtensionObject { shared: shared.clone(), name: ext.name.clone(), pinned: Some((ext, updates)) };
    let emitter = SignalEmitter::new(connection, path.as_ref())?;
    object.get_all(server, connection, None, &emitter).await
}

/// Exports and removes [`ExtensionObject`]s for the announcer.
pub struct ExtensionExporter(Weak<Shared>);

impl ExtensionExporter {
    /// An exporter whose objects share `shared`. Weak, because `shared` keeps the
    /// exporter.
    pub fn new(shared: &Arc<Shared>) -> Self {
        Self(Arc::downgrade(shared))
    }
}

impl Exporter for ExtensionExporter {
    fn export<'a>(&'a self, server: &'a ObjectServer, name: &'a str) -> BoxFuture<'a, zbus::Result<bool>> {
        Box::pin(async move {
            let Some(shared) = self.0.upgrade() else { return Ok(false) };
            let object = ExtensionObject { shared, name: name.to_owned(), pinned: None };
            Ok(server.at(extension_path(name), ReadOnly(object)).await?.is_none())
        })
    }

    fn unexport<'a>(&'a self, server: &'a ObjectServer, name: &'a str) -> BoxFuture<'a, zbus::Result<bool>> {
        Box::pin(server.remove::<ReadOnly<ExtensionObject>, _>(extension_path(name)))
    }

    fn properties<'a>(
        &'a self,
        server: &'a ObjectServer,
        connection: &'a Connection,
        name: &'a str,
    ) -> BoxFuture<'a, zbus::Result<Option<PropertyValues>>> {
        Box::pin(async move {
            let Some(shared) = self.0.upgrade() else { return Ok(None) };
            let (ext, updates) = {
                let model = shared.model();
                let Some(ext) = model.get(name) else { return Ok(None) };
                (ext, model.update_info(name))
            };
            Ok(Some(properties(&shared, server, connection, &extension_path(name), ext, updates).await?))
        })
    }
}

#[interface(name = "org.kairos.Extensions1.Extension")]
impl ExtensionObject {
    /// Same as Manager.Enable for this extension.
    async fn enable(
        &self,
        boot_state: &str,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<()> {
        ops::set_enabled(&self.shared, connection, &header, &self.name, boot_state, flags, true).await
    }

    /// Same as Manager.Disable for this extension.
    async fn disable(
        &self,
        boot_state: &str,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<()> {
        ops::set_enabled(&self.shared, connection, &header, &self.name, boot_state, flags, false).await
    }

    /// Same as Manager.Remove for this extension.
    async fn remove(
        &self,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<()> {
        ops::remove(&self.shared, connection, &header, &self.name, flags).await
    }

    /// Same as Manager.Describe for this extension.
    #[zbus(out_args("json"))]
    async fn describe(&self, #[zbus(connection)] connection: &Connection) -> Result<String> {
        ops::describe(&self.shared, connection, &self.name).await
    }

    /// The name from the image's extension-release file.
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }

    /// `SYSEXT_VERSION_ID` or `VERSION_ID`, or empty.
    #[zbus(property)]
    fn version(&self) -> String {
        self.read(|e| e.version.clone())
    }

    /// Where it was installed from, without credentials; empty if unknown.
    #[zbus(property)]
    fn source(&self) -> String {
        self.read(|e| e.source.clone())
    }

    /// `sha256:…` of the stored image.
    #[zbus(property)]
    fn digest(&self) -> String {
        self.read(|e| e.digest.clone())
    }

    /// Size of the stored image in bytes.
    #[zbus(property)]
    fn size(&self) -> u64 {
        self.read(|e| e.size)
    }

    /// Install time, µs since the epoch.
    #[zbus(property)]
    fn installed_time(&self) -> u64 {
        self.read(|e| e.installed_time)
    }

    /// Boot states it is enabled for.
    #[zbus(property)]
    fn enabled_boot_states(&self) -> Vec<String> {
        self.read(|e| e.enabled.iter().map(|s| s.as_str().to_owned()).collect())
    }

    /// Whether it is merged into the running system.
    #[zbus(property)]
    fn merged(&self) -> bool {
        self.read(|e| e.merged)
    }

    /// Whether it can merge on this system.
    #[zbus(property)]
    fn compatible(&self) -> bool {
        self.read(|e| e.compatible)
    }

    /// Why it cannot, when it cannot.
    #[zbus(property)]
    fn incompatible_reason(&self) -> String {
        self.read(|e| e.incompatible_reason.clone())
    }

    /// `ok`, `incompatible`, `invalid`, `refused`, `image-missing`, `masked` or
    /// `shadowed`: what stops it from merging.
    #[zbus(property)]
    fn status(&self) -> String {
        self.read(|e| e.status.as_str().to_owned())
    }

    /// Why, in one sentence; empty when `ok`.
    #[zbus(property)]
    fn status_reason(&self) -> String {
        self.read(|e| e.status_reason.clone())
    }

    /// The full extension-release.
    #[zbus(property)]
    fn release(&self) -> HashMap<String, String> {
        self.read(|e| e.release.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Whether the last check found something newer at the source.
    #[zbus(property)]
    fn update_available(&self) -> bool {
        self.updates().update_available
    }

    /// The version an update would install, when the source tells it; else empty.
    #[zbus(property)]
    fn available_version(&self) -> String {
        self.updates().available_version
    }

    /// What an update would install.
    #[zbus(property)]
    fn available_source(&self) -> String {
        self.updates().available_source
    }

    /// When it was last checked, µs since the epoch; 0 if never.
    #[zbus(property)]
    fn checked_time(&self) -> u64 {
        self.updates().checked_time
    }

    /// `ok`, `pinned`, `local`, `cannot-check`, or the error of the last check; empty if
    /// never checked.
    #[zbus(property)]
    fn update_check(&self) -> String {
        self.updates().check.as_str().to_owned()
    }

    /// The version a rollback would restore; empty when there is none.
    #[zbus(property)]
    fn previous_version(&self) -> String {
        self.updates().previous_version
    }
}
