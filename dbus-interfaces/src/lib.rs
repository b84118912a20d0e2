//! The `org.kairos.Extensions1` contract shared by the service and its clients.
//!
//! Types here are the vocabulary of the API: the service, the `kairos-ext` CLI and any
//! other Rust client agree on them, so a boot state or an error name is spelled in
//! exactly one place.

mod boot_state;
mod description;
pub mod errors;
mod job_result;
mod job_state;
mod job_type;

pub use errors::ErrorKind;
mod name;
pub mod paths;
pub mod properties;
pub mod proxies;
mod status;
mod update_check;

/// The interface contract, as installed to `/usr/share/dbus-1/interfaces/`.
pub const INTERFACE_XML: &str = include_str!("../org.kairos.Extensions1.xml");

pub use boot_state::{BootState, UnknownBootState};
pub use description::{DESCRIPTION_FORMAT, ExtensionDescription, ExtensionKind, UpdateDescription};
pub use job_result::{JobResult, NotFinal, UnknownJobResult};
pub use job_state::{JobState, UnknownJobState};
pub use job_type::{JobType, UnknownJobType};
pub use name::{ExtensionName, InvalidName};
pub use status::{ExtensionStatus, UnknownStatus};
pub use update_check::UpdateCheck;

/// Well-known bus name of the service.
pub const BUS_NAME: &str = "org.kairos.Extensions1";
/// Object path of the manager object.
pub const MANAGER_PATH: &str = "/org/kairos/Extensions1";
/// Interface of the manager object.
pub const MANAGER_INTERFACE: &str = "org.kairos.Extensions1.Manager";
/// Interface of each extension object.
pub const EXTENSION_INTERFACE: &str = "org.kairos.Extensions1.Extension";
/// Interface of each job object.
pub const JOB_INTERFACE: &str = "org.kairos.Extensions1.Job";

/// Flag bit: apply the change to the running system as well.
pub const FLAG_NOW: u64 = 1;
/// Every flag bit this version understands; any other bit is rejected.
pub const FLAGS_KNOWN: u64 = FLAG_NOW;
