//! Client proxies for `org.kairos.Extensions1`: every method, property and signal of
//! `org.kairos.Extensions1.xml` (a test in the integration suite calls each one against
//! the XML), with the contract's types where the XML has a string of fixed spellings.
//!
//! Interactive authorization: polkit may need to ask the user for a password before a
//! mutating call goes through, and only the caller knows whether someone is there to
//! answer. So each mutating method comes twice: `enable` sends the call without the
//! `ALLOW_INTERACTIVE_AUTHORIZATION` flag (an answer that needs a person gets
//! `InteractiveAuthorizationRequired`), and `enable_interactive` sends it with the flag,
//! for a caller that runs a polkit agent and will wait for the person.
//!
//! Each property carries the XML's `EmitsChangedSignal` annotation (`tests/tests/cli_contract.rs` holds
//! them together): `"const"` values never change on an object and `"false"` ones are
//! read fresh each time, while the others are cached by a caching proxy and kept
//! current by `PropertiesChanged`.
#![allow(missing_docs, reason = "the proxy macro generates items from the documented XML contract")]

use std::collections::{BTreeMap, HashMap};

use zbus::{OwnedObjectPath, OwnedVariant, proxy};

use crate::properties::{JobProperties, ManagerProperties, ObjectInterfaces};
use crate::{BootState, ExtensionStatus, JobResult, JobState, JobType, UpdateCheck};

/// One row of `ListExtensions`: name, version, enabled states, merged, object path.
pub type ExtensionRow = (String, String, Vec<BootState>, bool, OwnedObjectPath);
/// One row of `ListJobs`: id, type, state, object path.
pub type JobRow = (u64, JobType, JobState, OwnedObjectPath);
/// One row of `ListCatalog`: name, title, description, latest version, every version.
pub type CatalogRow = (String, String, String, String, Vec<String>);

#[proxy(
    interface = "org.kairos.Extensions1.Manager",
    default_service = "org.kairos.Extensions1",
    default_path = "/org/kairos/Extensions1"
)]
pub trait Manager {
    fn list_extensions(&self) -> zbus::Result<Vec<ExtensionRow>>;
    fn get_extension(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn describe(&self, name: &str) -> zbus::Result<String>;
    fn list_jobs(&self) -> zbus::Result<Vec<JobRow>>;
    fn list_catalog(&self) -> zbus::Result<Vec<CatalogRow>>;

    fn install(&self, source: &str, options: HashMap<&str, OwnedVariant>) -> zbus::Result<(u64, OwnedObjectPath)>;
    #[zbus(name = "Install", allow_interactive_auth)]
    fn install_interactive(
        &self,
        source: &str,
        options: HashMap<&str, OwnedVariant>,
    ) -> zbus::Result<(u64, OwnedObjectPath)>;
    fn install_from_fd(
        &self,
        fd: zbus::Fd<'_>,
        filename: &str,
        options: HashMap<&str, OwnedVariant>,
    ) -> zbus::Result<(u64, OwnedObjectPath)>;
    #[zbus(name = "InstallFromFd", allow_interactive_auth)]
    fn install_from_fd_interactive(
        &self,
        fd: zbus::Fd<'_>,
        filename: &str,
        options: HashMap<&str, OwnedVariant>,
    ) -> zbus::Result<(u64, OwnedObjectPath)>;
    fn enable(&self, name: &str, boot_state: BootState, flags: u64) -> zbus::Result<()>;
    #[zbus(name = "Enable", allow_interactive_auth)]
    fn enable_interactive(&self, name: &str, boot_state: BootState, flags: u64) -> zbus::Result<()>;
    fn disable(&self, name: &str, boot_state: BootState, flags: u64) -> zbus::Result<()>;
    #[zbus(name = "Disable", allow_interactive_auth)]
    fn disable_interactive(&self, name: &str, boot_state: BootState, flags: u64) -> zbus::Result<()>;
    fn remove(&self, name: &str, flags: u64) -> zbus::Result<()>;
    #[zbus(name = "Remove", allow_interactive_auth)]
    fn remove_interactive(&self, name: &str, flags: u64) -> zbus::Result<()>;
    fn refresh(&self, flags: u64) -> zbus::Result<Vec<String>>;
    #[zbus(name = "Refresh", allow_interactive_auth)]
    fn refresh_interactive(&self, flags: u64) -> zbus::Result<Vec<String>>;
    fn check_updates(&self, names: &[&str], flags: u64) -> zbus::Result<(u64, OwnedObjectPath)>;
    #[zbus(name = "CheckUpdates", allow_interactive_auth)]
    fn check_updates_interactive(&self, names: &[&str], flags: u64) -> zbus::Result<(u64, OwnedObjectPath)>;
    fn update(&self, names: &[&str], options: HashMap<&str, OwnedVariant>) -> zbus::Result<(u64, OwnedObjectPath)>;
    #[zbus(name = "Update", allow_interactive_auth)]
    fn update_interactive(
        &self,
        names: &[&str],
        options: HashMap<&str, OwnedVariant>,
    ) -> zbus::Result<(u64, OwnedObjectPath)>;
    fn rollback(&self, name: &str, flags: u64) -> zbus::Result<()>;
    #[zbus(name = "Rollback", allow_interactive_auth)]
    fn rollback_interactive(&self, name: &str, flags: u64) -> zbus::Result<()>;

    #[zbus(signal)]
    fn extension_installed(&self, name: String, path: OwnedObjectPath) -> zbus::Result<()>;
    #[zbus(signal)]
    fn extension_removed(&self, name: String, path: OwnedObjectPath) -> zbus::Result<()>;
    #[zbus(signal)]
    fn extension_enabled(&self, name: String, boot_state: BootState) -> zbus::Result<()>;
    #[zbus(signal)]
    fn extension_disabled(&self, name: String, boot_state: BootState) -> zbus::Result<()>;
    #[zbus(signal)]
    fn extension_updated(&self, name: String, old_version: String, new_version: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn refreshed(&self, merged: Vec<String>) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_new(&self, id: u64, path: OwnedObjectPath) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(&self, id: u64, path: OwnedObjectPath, result: JobResult) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> zbus::Result<String>;
    /// `active`, `passive`, `recovery`, or `none` on a system not booted by Kairos.
    #[zbus(property(emits_changed_signal = "false"))]
    fn boot_state(&self) -> zbus::Result<String>;
    #[zbus(property(emits_changed_signal = "const"))]
    fn boot_states(&self) -> zbus::Result<Vec<BootState>>;
    #[zbus(property(emits_changed_signal = "const"))]
    fn catalogs(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn merged(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property(emits_changed_signal = "const"))]
    fn image_policy(&self) -> zbus::Result<String>;
    #[zbus(property(emits_changed_signal = "const"))]
    fn store_directory(&self) -> zbus::Result<String>;
}

#[proxy(interface = "org.kairos.Extensions1.Extension", default_service = "org.kairos.Extensions1")]
pub trait Extension {
    fn describe(&self) -> zbus::Result<String>;
    fn enable(&self, boot_state: BootState, flags: u64) -> zbus::Result<()>;
    #[zbus(name = "Enable", allow_interactive_auth)]
    fn enable_interactive(&self, boot_state: BootState, flags: u64) -> zbus::Result<()>;
    fn disable(&self, boot_state: BootState, flags: u64) -> zbus::Result<()>;
    #[zbus(name = "Disable", allow_interactive_auth)]
    fn disable_interactive(&self, boot_state: BootState, flags: u64) -> zbus::Result<()>;
    fn remove(&self, flags: u64) -> zbus::Result<()>;
    #[zbus(name = "Remove", allow_interactive_auth)]
    fn remove_interactive(&self, flags: u64) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn source(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn digest(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn size(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn installed_time(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn enabled_boot_states(&self) -> zbus::Result<Vec<BootState>>;
    #[zbus(property)]
    fn merged(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn compatible(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn incompatible_reason(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn status(&self) -> zbus::Result<ExtensionStatus>;
    #[zbus(property)]
    fn status_reason(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn release(&self) -> zbus::Result<BTreeMap<String, String>>;
    #[zbus(property)]
    fn update_available(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn available_version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn available_source(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn checked_time(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn update_check(&self) -> zbus::Result<UpdateCheck>;
    #[zbus(property)]
    fn previous_version(&self) -> zbus::Result<String>;
}

#[proxy(interface = "org.kairos.Extensions1.Job", default_service = "org.kairos.Extensions1")]
pub trait Job {
    fn cancel(&self) -> zbus::Result<()>;
    #[zbus(name = "Cancel", allow_interactive_auth)]
    fn cancel_interactive(&self) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> zbus::Result<u64>;
    #[zbus(property(emits_changed_signal = "const"), name = "Type")]
    fn kind(&self) -> zbus::Result<JobType>;
    #[zbus(property(emits_changed_signal = "const"))]
    fn source(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<JobState>;
    #[zbus(property)]
    fn phase(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn queue_position(&self) -> zbus::Result<u32>;
}

/// `org.freedesktop.DBus.ObjectManager` of the manager object, with its reply decoded
/// straight into this contract's types: one call gives every property of every
/// extension and job.
#[proxy(
    interface = "org.freedesktop.DBus.ObjectManager",
    default_service = "org.kairos.Extensions1",
    default_path = "/org/kairos/Extensions1"
)]
pub trait ObjectManager {
    fn get_managed_objects(&self) -> zbus::Result<HashMap<OwnedObjectPath, ObjectInterfaces>>;
}

/// `org.freedesktop.DBus.Properties.GetAll` of one of the service's objects, decoded
/// into this contract's types: every property in one reply, all of the same moment.
/// [`AllPropertiesProxy::manager`] and [`AllPropertiesProxy::job`] name the interface;
/// a job that has gone answers `UnknownObject`.
#[proxy(interface = "org.freedesktop.DBus.Properties", default_service = "org.kairos.Extensions1")]
pub trait AllProperties {
    #[zbus(name = "GetAll")]
    fn manager_properties(&self, interface: &str) -> zbus::Result<ManagerProperties>;
    #[zbus(name = "GetAll")]
    fn job_properties(&self, interface: &str) -> zbus::Result<JobProperties>;
}

impl AllPropertiesProxy<'_> {
    /// Every property of the Manager (the proxy's path is the manager's).
    pub async fn manager(&self) -> zbus::Result<ManagerProperties> {
        self.manager_properties(crate::MANAGER_INTERFACE).await
    }

    /// Every property of the job at the proxy's path.
    pub async fn job(&self) -> zbus::Result<JobProperties> {
        self.job_properties(crate::JOB_INTERFACE).await
    }
}
