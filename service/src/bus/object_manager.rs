//! `org.freedesktop.DBus.ObjectManager` at the Manager's path, served from the model and
//! the job table.
//!
//! zbus can serve this interface itself, but then every object it exports is announced
//! with `InterfacesAdded` at once, carrying all its properties: at startup that is one
//! signal per extension before the name is even taken, and its `GetManagedObjects` asks
//! every object for its properties one lock at a time. Here the objects of the first
//! picture are exported quietly, [`super::announce`] and [`super::job`] send
//! `InterfacesAdded` and `InterfacesRemoved` where they announce the rest, and
//! `GetManagedObjects` reads the model once.

use std::collections::HashMap;
use std::sync::Arc;

use kairos_extensions_dbus::paths::extension_path;
use zbus::fdo::{self, ManagedObjects};
use zbus::names::{InterfaceName, OwnedInterfaceName};
use zbus::object_server::{Interface, ObjectServer, SignalEmitter};
use zbus::{Connection, ObjectPath, OwnedVariant, Variant, interface};

use super::announce::EXTENSION_INTERFACE;
use super::extension;
use super::job::{JOB_INTERFACE, JobObject};
use super::read_only::ReadOnly;
use super::state::Shared;

/// How many extension objects `GetManagedObjects` reads between two yields.
const YIELD_EVERY: usize = 256;

/// The ObjectManager of the service's objects: extensions and jobs.
pub struct ObjectManager {
    shared: Arc<Shared>,
}

impl ObjectManager {
    /// The ObjectManager of the objects `shared` knows.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[interface(name = "org.freedesktop.DBus.ObjectManager")]
impl ObjectManager {
    /// Every extension and job object with its properties, as GetAll answers them.
    async fn get_managed_objects(
        &self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(connection)] connection: &Connection,
    ) -> fdo::Result<ManagedObjects> {
        let _busy = self.shared.activity.busy();
        let extensions: Vec<_> = {
            let model = self.shared.model();
            model.extensions().map(|ext| (ext.clone(), model.update_info(&ext.name))).collect()
        };
        let jobs = self.shared.jobs.list();
        let mut objects = ManagedObjects::with_capacity(extensions.len() + jobs.len());
        for (done, (ext, updates)) in extensions.into_iter().enumerate() {
            // Ten thousand extensions take a quarter of a second to read: let the other
            // calls this worker thread serves through now and then.
            if done % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
            let path = extension_path(&ext.name);
            let properties = extension::properties(&self.shared, server, connection, &path, ext, updates).await?;
            objects.insert(path, one_interface(EXTENSION_INTERFACE, properties));
        }
        for (_, _, _, path) in jobs {
            // A job that ended since the table was read is left out, as it would be a
            // moment later.
            let Ok(job) = server.interface::<_, ReadOnly<JobObject>>(&path).await else { continue };
            let properties = job.get().await.get_all(server, connection, None, job.signal_emitter()).await?;
            objects.insert(path, one_interface(JOB_INTERFACE, properties));
        }
        Ok(objects)
    }

    /// An object appeared, or gained interfaces (sent by [`super::signals`]).
    #[zbus(signal)]
    async fn interfaces_added(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces_and_properties: HashMap<&str, HashMap<&str, Variant<'_>>>,
    ) -> zbus::Result<()>;

    /// An object went, or lost interfaces (sent by [`super::signals`]).
    #[zbus(signal)]
    async fn interfaces_removed(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces: Vec<&str>,
    ) -> zbus::Result<()>;
}

fn one_interface(
    interface: &'static str,
    properties: HashMap<String, OwnedVariant>,
) -> HashMap<OwnedInterfaceName, HashMap<String, OwnedVariant>> {
    HashMap::from([(InterfaceName::from_static_str_unchecked(interface).into(), properties)])
}
