//! Boot activation: link what is enabled for this boot into the runtime directory.
//!
//! systemd-sysext gives up on the whole merge when one image is bad, so one broken
//! download would take every extension down with it. The activator checks each image
//! first (name, extension-release compatibility, what else the image holds, image
//! policy) and links only the good ones; each skipped image is logged with its reason and
//! listed in the report, and the others still activate.
//!
//! An image's provenance record says what was checked when it was installed, by the
//! version of the service that installed it; the properties that stop a merge (see
//! [`super::blockers`]) are therefore looked up in every enabled image again, which costs
//! two `systemd-dissect` lookups per image and nothing that grows with its size.

use std::collections::BTreeSet;
use std::path::PathBuf;

use kairos_extensions_dbus::BootState;
use serde::Serialize;

use super::catalog::Extension;
use super::image::{Access, ImageError};
use super::store::EntryKind;
use super::{Engine, Error, Result, blockers, boot, durable, trust};

/// Where the report of the last activation is written, relative to the root.
pub const REPORT: &str = "run/kairos-extensions/boot.json";

/// What one activation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootReport {
    /// The boot state activated for (`active`, `passive`, `recovery` or `none`).
    pub boot_state: String,
    /// Extensions linked into the runtime directory.
    pub activated: Vec<Activated>,
    /// Extensions enabled for this boot that were not linked, and why.
    pub skipped: Vec<Skipped>,
}

/// An extension that was activated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activated {
    /// Its name.
    pub name: String,
    /// The store file linked.
    pub file: String,
    /// The enabled states that made it count for this boot.
    pub states: Vec<BootState>,
}

/// An extension that was enabled for this boot but not activated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Its name, or the link's name when the image could not be named.
    pub name: String,
    /// Why it was skipped.
    pub reason: String,
}

impl Engine {
    /// Links every usable extension enabled for the current boot state and `common`
    /// into the runtime directory, removes activation links into the store that are no
    /// longer wanted, and writes the report. Fails only when the store cannot be read.
    pub fn boot_activate(&self) -> Result<BootReport> {
        let _lock = self.lock_for_change()?;
        let current = self.boot_state();
        let wanted: Vec<BootState> = BootState::ALL.into_iter().filter(|s| boot::concerns(*s, current)).collect();
        let mut report = BootReport { boot_state: boot::describe(current).to_owned(), ..BootReport::default() };
        let listed = self.list()?;

        // Links in the wanted state directories that lead nowhere in the store.
        let files: BTreeSet<&str> = listed.iter().map(|e| e.file.as_str()).collect();
        for state in &wanted {
            for link in self.store.state_links(*state)? {
                let dangling = match &link.store_file {
                    Some(file) => !files.contains(file.as_str()),
                    None => true,
                };
                if dangling {
                    let reason = format!("{state}/{} does not point at an image in the store", link.name);
                    tracing::warn!(link = %link.name, boot_state = %state, "{reason}; skipping it");
                    report.skipped.push(Skipped { name: link.name.trim_end_matches(".raw").to_owned(), reason });
                }
            }
        }

        let mut keep: BTreeSet<String> = BTreeSet::new();
        for ext in &listed {
            let states: Vec<BootState> = ext.enabled.iter().copied().filter(|s| wanted.contains(s)).collect();
            if states.is_empty() {
                continue;
            }
            if states.len() > 1 {
                tracing::warn!(extension = %ext.name, states = ?states, "enabled for this boot in more than one state; activating it once");
            }
            let verdict = if ext.compatible {
                let image = self.store.path_of(&ext.file);
                merges(ext, &image)
                    .and_then(|()| trust::admit(&self.config.image_policy, &image, &self.certificate_dirs()).map(drop))
            } else {
                Err(ext.incompatible_reason.clone())
            };
            if let Err(reason) = verdict {
                tracing::warn!(extension = %ext.name, reason, "skipping extension at boot");
                report.skipped.push(Skipped { name: ext.name.clone(), reason });
                continue;
            }
            let link = format!("{}.raw", ext.name);
            // Something of someone else's where the link goes (a file an operator put in
            // /run/extensions) keeps this one extension out, not the rest of the boot.
            if let Err(e) = self.store.link_runtime(&link, &ext.file) {
                let reason = e.to_string();
                tracing::warn!(extension = %ext.name, reason, "skipping extension at boot");
                report.skipped.push(Skipped { name: ext.name.clone(), reason });
                continue;
            }
            keep.insert(link);
            tracing::info!(extension = %ext.name, file = %ext.file, "activated extension for this boot");
            report.activated.push(Activated { name: ext.name.clone(), file: ext.file.clone(), states });
        }

        for link in self.store.runtime_links()? {
            if link.store_file.is_some() && !keep.contains(&link.name) {
                tracing::info!(link = %link.name, "removing an activation that is no longer enabled for this boot");
                self.store.unlink_runtime_name(&link.name)?;
            }
        }
        self.write_report(&report)?;
        Ok(report)
    }

    fn write_report(&self, report: &BootReport) -> Result<()> {
        let path = self.layout().root().join(REPORT);
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other);
        json.and_then(|json| {
            durable::ensure_dir(&dir)?;
            durable::write_file(&dir, "boot.json", &json)
        })
        .map_err(|source| {
            Error::Store(super::store::StoreError::Io { context: format!("writing {}", path.display()), source })
        })
    }
}

/// Whether an image whose release fits would also get past systemd-sysext's mount and
/// merge. A lookup that cannot run says nothing about the image, so it does not keep the
/// extension from this boot; it is logged.
fn merges(ext: &Extension, image: &std::path::Path) -> std::result::Result<(), String> {
    if ext.kind != EntryKind::Image {
        return Ok(());
    }
    let checked = tempfile::Builder::new()
        .prefix("kairos-ext-boot-")
        .tempdir()
        .map_err(ImageError::from)
        .and_then(|scratch| blockers::check(image, scratch.path(), Access::AsSysext));
    match checked {
        Ok(()) => Ok(()),
        Err(e @ (ImageError::Command(_) | ImageError::Io(_))) => {
            tracing::warn!(extension = %ext.name, error = %super::full_message(&e), "cannot look inside the image; activating it unchecked");
            Ok(())
        }
        Err(refused) => Err(refused.to_string()),
    }
}
