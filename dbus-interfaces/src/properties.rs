//! The properties of the contract's objects as typed dictionaries (`a{sv}`), for the
//! places where a client gets many at once: `GetManagedObjects`, `GetAll` and
//! `PropertiesChanged`.
//!
//! The dictionary keys are the property names of `org.kairos.Extensions1.xml`, derived
//! from the field names (`installed_time` is `InstalledTime`), so a client reads them
//! without spelling a property name itself.

use std::collections::BTreeMap;

use zbus::{DeserializeDict, SerializeDict, Type};

use crate::{BootState, ExtensionStatus, JobState, JobType, UpdateCheck};

/// Every property of an `org.kairos.Extensions1.Extension` object. Each is required:
/// a dictionary that lacks one does not decode.
#[derive(Debug, Clone, PartialEq, Eq, DeserializeDict, SerializeDict, Type)]
#[zbus(signature = "a{sv}", rename_all = "PascalCase")]
pub struct ExtensionProperties {
    /// `Name`.
    pub name: String,
    /// `Version`.
    pub version: String,
    /// `Source`.
    pub source: String,
    /// `Digest`.
    pub digest: String,
    /// `Size`.
    pub size: u64,
    /// `InstalledTime`.
    pub installed_time: u64,
    /// `EnabledBootStates`.
    pub enabled_boot_states: Vec<BootState>,
    /// `Merged`.
    pub merged: bool,
    /// `Compatible`.
    pub compatible: bool,
    /// `IncompatibleReason`.
    pub incompatible_reason: String,
    /// `Status`.
    pub status: ExtensionStatus,
    /// `StatusReason`.
    pub status_reason: String,
    /// `Release`.
    pub release: BTreeMap<String, String>,
    /// `UpdateAvailable`.
    pub update_available: bool,
    /// `AvailableVersion`.
    pub available_version: String,
    /// `AvailableSource`.
    pub available_source: String,
    /// `CheckedTime`.
    pub checked_time: u64,
    /// `UpdateCheck`.
    pub update_check: UpdateCheck,
    /// `PreviousVersion`.
    pub previous_version: String,
}

/// Every property of the `org.kairos.Extensions1.Manager` object, as `GetAll` gives
/// them: one reply, so they are all of the same moment.
#[derive(Debug, Clone, PartialEq, Eq, DeserializeDict, SerializeDict, Type)]
#[zbus(signature = "a{sv}", rename_all = "PascalCase")]
pub struct ManagerProperties {
    /// `Version`.
    pub version: String,
    /// `BootState`: `active`, `passive`, `recovery`, or `none`.
    pub boot_state: String,
    /// `BootStates`.
    pub boot_states: Vec<BootState>,
    /// `Catalogs`.
    pub catalogs: Vec<String>,
    /// `Merged`.
    pub merged: Vec<String>,
    /// `ImagePolicy`.
    pub image_policy: String,
    /// `StoreDirectory`.
    pub store_directory: String,
}

/// Any subset of the properties of an `org.kairos.Extensions1.Job` object: all of them
/// from `GetAll`, the changed ones from `PropertiesChanged`.
#[derive(Debug, Clone, Default, PartialEq, Eq, DeserializeDict, SerializeDict, Type)]
#[zbus(signature = "a{sv}", rename_all = "PascalCase")]
pub struct JobProperties {
    /// `Id`.
    pub id: Option<u64>,
    /// `Type`.
    #[zbus(rename = "Type")]
    pub kind: Option<JobType>,
    /// `Source`.
    pub source: Option<String>,
    /// `Name`.
    pub name: Option<String>,
    /// `State`.
    pub state: Option<JobState>,
    /// `Phase`.
    pub phase: Option<String>,
    /// `Progress`.
    pub progress: Option<u32>,
    /// `BytesDone`.
    pub bytes_done: Option<u64>,
    /// `BytesTotal`.
    pub bytes_total: Option<u64>,
    /// `Error`.
    pub error: Option<String>,
    /// `QueuePosition`.
    pub queue_position: Option<u32>,
}

/// The interfaces of one object in a `GetManagedObjects` reply that a listing reads:
/// an extension's properties, or `None` for any other object (the manager's jobs).
/// Every other interface is skipped unread.
#[derive(Debug, Clone, Default, PartialEq, Eq, DeserializeDict, SerializeDict, Type)]
#[zbus(signature = "a{sa{sv}}")]
pub struct ObjectInterfaces {
    /// The object is an extension.
    #[zbus(rename = "org.kairos.Extensions1.Extension")]
    pub extension: Option<ExtensionProperties>,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use zbus::Variant;
    use zbus::wire::serialized::Context;
    use zbus::wire::{LE, to_bytes};

    use super::*;
    use crate::{EXTENSION_INTERFACE, JOB_INTERFACE};

    type Interfaces<'a> = HashMap<&'a str, HashMap<&'a str, Variant<'a>>>;

    fn extension_properties() -> HashMap<&'static str, Variant<'static>> {
        HashMap::from([
            ("Name", Variant::from("k3s")),
            ("Version", Variant::from("1.32")),
            ("Source", Variant::from("")),
            ("Digest", Variant::from("sha256:ab")),
            ("Size", Variant::from(4096u64)),
            ("InstalledTime", Variant::from(7u64)),
            ("EnabledBootStates", Variant::from(vec!["passive", "common"])),
            ("Merged", Variant::from(true)),
            ("Compatible", Variant::from(true)),
            ("IncompatibleReason", Variant::from("")),
            ("Status", Variant::from("shadowed")),
            ("StatusReason", Variant::from("/etc/extensions/k3s.raw comes first")),
            ("Release", Variant::from(HashMap::from([("ID", "_any")]))),
            ("UpdateAvailable", Variant::from(true)),
            ("AvailableVersion", Variant::from("")),
            ("AvailableSource", Variant::from("oci://r/k3s:v1@sha256:ab")),
            ("CheckedTime", Variant::from(9u64)),
            ("UpdateCheck", Variant::from("ok")),
            ("PreviousVersion", Variant::from("1.31")),
            // A property added by a later service is skipped.
            ("NotYetInvented", Variant::from(false)),
        ])
    }

    fn decode<'a, T: serde::Deserialize<'a> + Type>(
        bytes: &'a zbus::wire::serialized::Data<'a, 'a>,
    ) -> zbus::Result<T> {
        Ok(bytes.deserialize::<T>()?.0)
    }

    #[test]
    fn a_managed_object_reads_as_typed_properties_whatever_else_it_carries() {
        let interfaces: Interfaces<'_> = HashMap::from([
            (EXTENSION_INTERFACE, extension_properties()),
            ("org.freedesktop.DBus.Properties", HashMap::new()),
            ("org.freedesktop.DBus.Peer", HashMap::new()),
        ]);
        let bytes = to_bytes(Context::new(LE, 0), &interfaces).expect("encodes");
        let object: ObjectInterfaces = decode(&bytes).expect("decodes");
        let ext = object.extension.expect("an extension");
        assert_eq!(ext.name, "k3s");
        assert_eq!(ext.enabled_boot_states, [BootState::Passive, BootState::Common]);
        assert_eq!((ext.size, ext.installed_time), (4096, 7));
        assert_eq!(ext.status, ExtensionStatus::Shadowed);
        assert_eq!(ext.release, BTreeMap::from([("ID".to_owned(), "_any".to_owned())]));
        assert!(ext.update_available && ext.update_check == UpdateCheck::Ok);
        assert_eq!((ext.checked_time, ext.previous_version.as_str()), (9, "1.31"));

        let job: Interfaces<'_> = HashMap::from([(JOB_INTERFACE, HashMap::from([("Id", Variant::from(3u64))]))]);
        let bytes = to_bytes(Context::new(LE, 0), &job).expect("encodes");
        assert_eq!(decode::<ObjectInterfaces>(&bytes).expect("decodes").extension, None, "a job is no extension");
    }

    #[test]
    fn an_extension_missing_a_property_or_with_an_unknown_status_does_not_read() {
        let mut properties = extension_properties();
        properties.remove("Merged");
        let bytes = to_bytes(Context::new(LE, 0), &properties).expect("encodes");
        let error = decode::<ExtensionProperties>(&bytes).expect_err("Merged is required");
        assert!(error.to_string().contains("Merged"), "{error}");

        let mut properties = extension_properties();
        properties.insert("Status", Variant::from("sleepy"));
        let bytes = to_bytes(Context::new(LE, 0), &properties).expect("encodes");
        assert!(decode::<ExtensionProperties>(&bytes).is_err(), "an unknown status is an error, not a guess");
    }

    #[test]
    fn job_changes_read_whichever_properties_they_carry() {
        let changed = HashMap::from([
            ("State", Variant::from("queued")),
            ("QueuePosition", Variant::from(2u32)),
            ("Type", Variant::from("install")),
        ]);
        let bytes = to_bytes(Context::new(LE, 0), &changed).expect("encodes");
        let job: JobProperties = decode(&bytes).expect("decodes");
        assert_eq!(
            job,
            JobProperties {
                state: Some(JobState::Queued),
                queue_position: Some(2),
                kind: Some(JobType::Install),
                ..JobProperties::default()
            }
        );
    }
}
