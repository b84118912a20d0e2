//! The contract's description of an extension, made from the engine's.
//!
//! The engine's [`Extension`] is free to change shape; what clients read is
//! [`ExtensionDescription`], and this conversion is the one place the two meet. The CLI's
//! offline mode uses it too, so both modes print the same JSON.

use std::collections::BTreeMap;

use kairos_extensions_dbus::{DESCRIPTION_FORMAT, ExtensionDescription, ExtensionKind, UpdateDescription};

use super::model::UpdateInfo;
use crate::engine::store::EntryKind;
use crate::engine::{Engine, Extension};

impl From<&Extension> for ExtensionDescription {
    fn from(ext: &Extension) -> Self {
        Self {
            format: DESCRIPTION_FORMAT,
            name: ext.name.clone(),
            version: ext.version.clone(),
            enabled: ext.enabled.clone(),
            merged: ext.merged,
            source: ext.source.clone(),
            digest: ext.digest.clone(),
            size: ext.size,
            installed_time: ext.installed_time,
            compatible: ext.compatible,
            incompatible_reason: ext.incompatible_reason.clone(),
            status: ext.status,
            status_reason: ext.status_reason.clone(),
            resolved_digest: Some(ext.resolved_digest.clone()),
            file: Some(ext.file.clone()),
            kind: Some(kind(ext.kind)),
            release: ext.release.clone(),
            protection: ext.protection.clone(),
            updates: None,
        }
    }
}

impl From<&UpdateInfo> for UpdateDescription {
    fn from(info: &UpdateInfo) -> Self {
        Self {
            update_available: info.update_available,
            available_version: info.available_version.clone(),
            available_source: info.available_source.clone(),
            checked_time: info.checked_time,
            update_check: info.check.clone(),
            previous_version: info.previous_version.clone(),
        }
    }
}

/// The `updates` of each of `exts` from what outlives the service (the last check of the
/// image installed now, and the previous version kept for rollback): what the service
/// reports when it starts, and so what offline mode prints, so that both modes describe
/// an extension alike.
pub fn remembered_updates(
    engine: &Engine,
    exts: &[Extension],
) -> crate::engine::Result<BTreeMap<String, UpdateDescription>> {
    let installed: Vec<(String, String)> = exts.iter().map(|e| (e.name.clone(), e.digest.clone())).collect();
    let mut previous: BTreeMap<String, String> = engine.previous_versions()?.into_iter().collect();
    let mut updates: BTreeMap<String, UpdateInfo> = exts
        .iter()
        .map(|ext| {
            let previous_version = previous.remove(&ext.name).unwrap_or_default();
            (ext.name.clone(), UpdateInfo { previous_version, ..UpdateInfo::default() })
        })
        .collect();
    for outcome in engine.remembered_checks(&installed) {
        if let Some(info) = updates.get_mut(&outcome.name) {
            info.take_check(&outcome);
        }
    }
    Ok(updates.into_iter().map(|(name, info)| (name, UpdateDescription::from(&info))).collect())
}

fn kind(kind: EntryKind) -> ExtensionKind {
    match kind {
        EntryKind::Image => ExtensionKind::Image,
        EntryKind::Directory => ExtensionKind::Directory,
    }
}

#[cfg(test)]
mod tests {
    use kairos_extensions_dbus::{BootState, ExtensionStatus};

    use super::*;

    #[test]
    fn every_field_is_carried_and_the_json_reads_as_it_did() {
        let ext = Extension {
            name: "tools".into(),
            version: "2".into(),
            enabled: vec![BootState::Passive],
            merged: false,
            source: "https://example.org/tools.raw".into(),
            digest: String::new(),
            size: 0,
            installed_time: 17,
            compatible: false,
            incompatible_reason: "ID=fedora does not match".into(),
            status: ExtensionStatus::Incompatible,
            status_reason: "ID=fedora does not match".into(),
            resolved_digest: String::new(),
            file: "tools".into(),
            kind: EntryKind::Directory,
            release: [("ID".to_owned(), "fedora".to_owned())].into(),
            protection: None,
        };
        let described = ExtensionDescription::from(&ext);
        let engine_json = serde_json::to_value(&ext).expect("engine JSON");
        let mut contract_json = serde_json::to_value(&described).expect("contract JSON");
        assert_eq!(contract_json["format"], 1);
        contract_json.as_object_mut().expect("object").remove("format");
        assert_eq!(contract_json, engine_json, "the same fields with the same values as before the contract type");
    }
}
