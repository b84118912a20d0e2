//! The JSON that `Describe` returns, as a type of the contract.
//!
//! It is its own type, not the serde form of a service struct, so that renaming a field
//! inside the service cannot change what clients read.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::properties::ExtensionProperties;
use crate::{BootState, ExtensionStatus, UpdateCheck};

/// The format of [`ExtensionDescription`] this crate writes and reads.
///
/// Fields may be added within a format (readers ignore fields they do not know); a
/// change that would make an old reader misread a description (a field renamed, removed
/// or given another meaning) takes the next number.
pub const DESCRIPTION_FORMAT: u32 = 1;

/// Everything known about one extension: the JSON object `Describe` returns, and each
/// element of `kairos-ext list --json`.
///
/// Format 1, one JSON object:
///
/// | field | JSON | meaning |
/// |---|---|---|
/// | `format` | number | `1` |
/// | `name` | string | the name in its extension-release file |
/// | `version` | string | `SYSEXT_VERSION_ID` or `VERSION_ID`, or empty |
/// | `enabled` | array of strings | boot states it is enabled for (`active`, `passive`, `recovery`, `common`) |
/// | `merged` | bool | merged into the running system now |
/// | `source` | string | where it was installed from, without credentials; empty if someone else put it there |
/// | `digest` | string | `sha256:<hex>` of the stored image; empty for a directory |
/// | `size` | number | bytes of the stored image |
/// | `installed_time` | number | µs since the epoch (the file's time for images others put there) |
/// | `compatible` | bool | its extension-release fits this system |
/// | `incompatible_reason` | string | why not; empty when compatible |
/// | `status` | string | `ok`, `incompatible`, `invalid`, `refused`, `image-missing`, `masked` or `shadowed` |
/// | `status_reason` | string | one sentence for a person; empty when `ok` |
/// | `resolved_digest` | string, optional | the manifest digest a registry tag resolved to; empty for other sources |
/// | `file` | string, optional | its file (or directory) name in the store |
/// | `kind` | string, optional | `image` or `directory` |
/// | `release` | object | the whole extension-release, `KEY: value` |
/// | `protection` | string, optional | `unprotected`, `verity` or `signed by <subject>`, once the image was verified |
/// | `updates` | object, optional | the Extension object's update properties ([`UpdateDescription`]) |
///
/// `Describe` fills every field, verifying the image to say `protection`. A listing
/// built from the extension objects' properties ([`ExtensionProperties`]) has no
/// `resolved_digest`, `file`, `kind` or `protection`, since no property carries them:
/// an optional field that is unknown is left out rather than guessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionDescription {
    /// [`DESCRIPTION_FORMAT`]; reading any other number fails, naming it.
    #[serde(deserialize_with = "known_format")]
    pub format: u32,
    /// The name in its extension-release file.
    pub name: String,
    /// `SYSEXT_VERSION_ID` or `VERSION_ID`, or empty.
    pub version: String,
    /// The boot states it is enabled for.
    pub enabled: Vec<BootState>,
    /// Whether it is merged into the running system now.
    pub merged: bool,
    /// Where it was installed from; empty when someone else put it in the store.
    pub source: String,
    /// `sha256:…` of the stored image; empty for directories.
    pub digest: String,
    /// Size of the stored image in bytes.
    pub size: u64,
    /// Install time (file time for foreign files), µs since the epoch.
    pub installed_time: u64,
    /// Whether its extension-release fits this system.
    pub compatible: bool,
    /// Why not, when it does not.
    pub incompatible_reason: String,
    /// What stops it from merging, if anything.
    pub status: ExtensionStatus,
    /// Why, in one sentence; empty when `ok`.
    #[serde(default)]
    pub status_reason: String,
    /// For a registry install, the digest its tag resolved to (empty otherwise); `None`
    /// when not known to whoever built this description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_digest: Option<String>,
    /// Its file or directory name in the store; `None` when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Image or directory; `None` when not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ExtensionKind>,
    /// The whole extension-release.
    pub release: BTreeMap<String, String>,
    /// How the image is protected, once it was verified (`Describe` verifies it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<String>,
    /// What is known about its updates; `None` when not known to whoever built this
    /// description (a reader of an older service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<UpdateDescription>,
}

/// The update properties of an extension, as the `updates` object of a description:
///
/// | field | JSON | property |
/// |---|---|---|
/// | `update_available` | bool | `UpdateAvailable` |
/// | `available_version` | string | `AvailableVersion` |
/// | `available_source` | string | `AvailableSource` |
/// | `checked_time` | number | `CheckedTime`, µs since the epoch, 0 when never checked |
/// | `update_check` | string | `UpdateCheck`: `""`, `ok`, `pinned`, `local`, `cannot-check` or the error |
/// | `previous_version` | string | `PreviousVersion`, what `rollback` restores; empty when none |
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateDescription {
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

impl ExtensionDescription {
    /// Reads a description; fields it does not know are ignored, a format it does not
    /// know is an error.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The JSON that `Describe` returns.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl From<ExtensionProperties> for ExtensionDescription {
    /// What the properties of an extension object say; the fields no property carries
    /// stay unknown (`None`).
    fn from(p: ExtensionProperties) -> Self {
        Self {
            format: DESCRIPTION_FORMAT,
            name: p.name,
            version: p.version,
            enabled: p.enabled_boot_states,
            merged: p.merged,
            source: p.source,
            digest: p.digest,
            size: p.size,
            installed_time: p.installed_time,
            compatible: p.compatible,
            incompatible_reason: p.incompatible_reason,
            status: p.status,
            status_reason: p.status_reason,
            resolved_digest: None,
            file: None,
            kind: None,
            release: p.release,
            protection: None,
            updates: Some(UpdateDescription {
                update_available: p.update_available,
                available_version: p.available_version,
                available_source: p.available_source,
                checked_time: p.checked_time,
                update_check: p.update_check,
                previous_version: p.previous_version,
            }),
        }
    }
}

fn known_format<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let format = u32::deserialize(deserializer)?;
    if format == DESCRIPTION_FORMAT {
        Ok(format)
    } else {
        Err(serde::de::Error::custom(format!(
            "the description is in format {format}, and this reader knows format {DESCRIPTION_FORMAT} only"
        )))
    }
}

/// What an extension is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionKind {
    /// A disk image (`*.raw`).
    Image,
    /// A directory tree with `usr/lib/extension-release.d`.
    Directory,
}

impl ExtensionKind {
    /// The spelling in a description.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Directory => "directory",
        }
    }
}

impl fmt::Display for ExtensionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn described() -> ExtensionDescription {
        ExtensionDescription {
            format: DESCRIPTION_FORMAT,
            name: "k3s".into(),
            version: "1.32".into(),
            enabled: vec![BootState::Active, BootState::Common],
            merged: true,
            source: "oci://registry.example/k3s:v1".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 4096,
            installed_time: 1_700_000_000_000_000,
            compatible: true,
            incompatible_reason: String::new(),
            status: ExtensionStatus::Ok,
            status_reason: String::new(),
            resolved_digest: Some(format!("sha256:{}", "b".repeat(64))),
            file: Some("k3s.raw".into()),
            kind: Some(ExtensionKind::Image),
            release: BTreeMap::from([("ID".to_owned(), "_any".to_owned())]),
            protection: Some("signed by CN=test".into()),
            updates: Some(UpdateDescription {
                update_available: true,
                available_version: String::new(),
                available_source: "oci://registry.example/k3s:v1@sha256:cc".into(),
                checked_time: 1_700_000_000_000_001,
                update_check: UpdateCheck::Ok,
                previous_version: "1.31".into(),
            }),
        }
    }

    #[test]
    fn the_json_keeps_the_field_names_clients_read_and_says_its_format() {
        let value: Value = serde_json::from_str(&described().to_json().expect("JSON")).expect("an object");
        let keys: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
        let mut expected = vec![
            "format",
            "name",
            "version",
            "enabled",
            "merged",
            "source",
            "digest",
            "size",
            "installed_time",
            "compatible",
            "incompatible_reason",
            "status",
            "status_reason",
            "resolved_digest",
            "file",
            "kind",
            "release",
            "protection",
            "updates",
        ];
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys_sorted, expected);
        assert_eq!(value["format"], 1);
        assert_eq!(value["enabled"], json!(["active", "common"]));
        assert_eq!((value["status"].as_str(), value["kind"].as_str()), (Some("ok"), Some("image")));
        assert_eq!(value["release"], json!({ "ID": "_any" }));
        assert_eq!(
            value["updates"],
            json!({
                "update_available": true,
                "available_version": "",
                "available_source": "oci://registry.example/k3s:v1@sha256:cc",
                "checked_time": 1_700_000_000_000_001u64,
                "update_check": "ok",
                "previous_version": "1.31",
            })
        );
    }

    #[test]
    fn reads_back_what_it_writes_and_ignores_fields_it_does_not_know() {
        let original = described();
        assert_eq!(ExtensionDescription::from_json(&original.to_json().expect("JSON")).expect("reads"), original);
        let mut value = serde_json::to_value(&original).expect("value");
        value["added_in_a_later_release"] = json!({ "anything": [1, 2] });
        assert_eq!(ExtensionDescription::from_json(&value.to_string()).expect("reads"), original);
    }

    #[test]
    fn unknown_optional_fields_are_left_out_not_guessed() {
        let listed = ExtensionDescription {
            resolved_digest: None,
            file: None,
            kind: None,
            protection: None,
            updates: None,
            ..described()
        };
        let value = serde_json::to_value(&listed).expect("value");
        for absent in ["resolved_digest", "file", "kind", "protection", "updates"] {
            assert!(value.get(absent).is_none(), "{absent} in {value}");
        }
        assert_eq!(ExtensionDescription::from_json(&value.to_string()).expect("reads"), listed);
    }

    #[test]
    fn another_format_or_a_bad_value_is_an_error_that_says_so() {
        let mut value = serde_json::to_value(described()).expect("value");
        value["format"] = json!(2);
        let error = ExtensionDescription::from_json(&value.to_string()).expect_err("format 2 is refused");
        assert!(error.to_string().contains("format 2"), "{error}");
        value["format"] = json!(1);
        value["status"] = json!("broken");
        assert!(ExtensionDescription::from_json(&value.to_string()).is_err(), "an unknown status is refused");
        let mut missing = serde_json::to_value(described()).expect("value");
        missing.as_object_mut().expect("object").remove("format");
        assert!(ExtensionDescription::from_json(&missing.to_string()).is_err(), "a description says its format");
    }
}
