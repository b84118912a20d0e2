//! The extension engine: everything the service does, without D-Bus.
//!
//! The daemon's bus layer, the CLI's offline `--root` mode and the boot activator all
//! call this same code, so an image builder gets exactly the behaviour of the service.
//! Operations are blocking; async callers run them on a blocking thread. Every mutating
//! operation holds the store's cross-process lock for its whole duration.

pub mod activation;
pub mod boot;
pub mod catalog;
pub mod command;
pub mod config;
pub mod digest;
pub mod discovery;
pub mod durable;
mod error;
pub mod generator;
pub mod image;
mod install;
pub mod layout;
pub mod meta;
pub mod policy;
pub mod progress;
pub mod release;
pub mod sources;
pub mod store;
pub mod sysext;
pub mod trust;

use std::collections::BTreeSet;
use std::path::Path;

use kairos_extensions_dbus::{BootState, ExtensionName};

pub use catalog::Extension;
pub use config::Config;
pub use error::{Error, Result, full_message};
pub use install::{InstallRequest, Installed};

use catalog::ProbeCache;
use layout::Layout;
use release::Host;
use store::Store;
use sysext::{RefreshRun, Refresher};

/// The outcome of a refresh.
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    /// Extensions merged afterwards.
    pub merged: BTreeSet<String>,
    /// Extensions activated for this boot that did not merge, with the reason.
    pub not_merged: Vec<(String, String)>,
}

impl RefreshReport {
    /// An error naming every extension that did not merge, if any did not.
    pub fn into_result(self) -> Result<BTreeSet<String>> {
        if self.not_merged.is_empty() { Ok(self.merged) } else { Err(Error::Unmerged(self.not_merged)) }
    }
}

/// The engine for one root.
pub struct Engine {
    store: Store,
    config: Config,
    refresher: Box<dyn Refresher>,
    probes: ProbeCache,
}

impl Engine {
    /// Opens the store of the system at `root` with `config`, refreshing merges with
    /// `refresher`, and removes what crashed installs left in staging.
    pub fn open(root: &Path, config: Config, refresher: Box<dyn Refresher>) -> Result<Self> {
        let layout = Layout::new(root, &config.store_dir, &config.runtime_dir)?;
        let store = Store::open(layout)?;
        let cleaned = store.clean_staging()?;
        if cleaned > 0 {
            tracing::info!(count = cleaned, "removed leftovers of interrupted installs from staging");
        }
        Ok(Self { store, config, refresher, probes: ProbeCache::default() })
    }

    /// Opens the store of the system at `root` for reading only: nothing is created or
    /// cleaned up, so listing and describing work on a bare root and on a read-only
    /// store, and change nothing there. A change made through it fails at its first
    /// write, naming the path.
    pub fn open_read_only(root: &Path, config: Config, refresher: Box<dyn Refresher>) -> Result<Self> {
        let layout = Layout::new(root, &config.store_dir, &config.runtime_dir)?;
        Ok(Self { store: Store::existing(layout), config, refresher, probes: ProbeCache::default() })
    }

    /// The refresher that runs `systemd-sysext refresh` itself.
    pub fn exec_refresher(root: &Path, config: &Config) -> Box<dyn Refresher> {
        Box::new(sysext::ExecRefresher::new(root, config.image_policy.systemd_string()))
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where things live.
    pub fn layout(&self) -> &Layout {
        self.store.layout()
    }

    /// The Kairos boot mode of the running boot, if any.
    pub fn boot_state(&self) -> Option<BootState> {
        boot::current(self.layout().root())
    }

    /// The extensions merged right now.
    pub fn merged(&self) -> Result<BTreeSet<String>> {
        Ok(sysext::merged(self.layout().root())?)
    }

    /// Every extension in the store, by name.
    pub fn list(&self) -> Result<Vec<Extension>> {
        let host = Host::load(self.layout().root()).map_err(|e| e.to_string());
        catalog::list(&self.store, &host, &self.probes)
    }

    /// The directories whose certificates are trusted to sign verity root hashes.
    pub fn certificate_dirs(&self) -> Vec<std::path::PathBuf> {
        trust::certificate_dirs(self.layout(), &self.config.trusted_certificates)
    }

    /// One extension with everything known, including how its image is protected and
    /// whether the image policy refuses it (verified now, which reads the whole image).
    pub fn describe(&self, name: &ExtensionName) -> Result<Extension> {
        let mut ext = self.get(name)?;
        let image = self.store.path_of(&ext.file);
        catalog::verify(&mut ext, &image, &self.config.image_policy, &self.certificate_dirs(), &self.probes);
        Ok(ext)
    }

    /// One extension by exact name.
    pub fn get(&self, name: &ExtensionName) -> Result<Extension> {
        self.find(name)?.ok_or_else(|| Error::NotFound(name.to_string()))
    }

    fn find(&self, name: &ExtensionName) -> Result<Option<Extension>> {
        Ok(self.list()?.into_iter().find(|e| e.name == name.as_str()))
    }

    /// Enables `name` for `state`; with `now`, also for the running system when `state`
    /// concerns this boot. Returns whether anything changed on disk.
    pub fn enable(&self, name: &ExtensionName, state: BootState, now: bool) -> Result<bool> {
        self.check_now(now)?;
        let _lock = self.store.lock()?;
        let ext = self.get(name)?;
        let changed = self.enable_locked(&ext, state)?;
        if now && boot::concerns(state, self.boot_state()) {
            let rollback: &[BootState] = if changed { &[state] } else { &[] };
            self.activate_locked(&[self.get(name)?], rollback)?;
        }
        Ok(changed)
    }

    fn enable_locked(&self, ext: &Extension, state: BootState) -> Result<bool> {
        if !ext.compatible {
            return Err(Error::Unusable { name: ext.name.clone(), reason: ext.incompatible_reason.clone() });
        }
        if ext.enabled.contains(&state) {
            return Ok(false);
        }
        self.store.link_state(state, &format!("{}.raw", ext.name), &ext.file)?;
        tracing::info!(extension = %ext.name, boot_state = %state, "enabled extension");
        Ok(true)
    }

    /// Links `exts` into the runtime directory and refreshes once; if any does not
    /// merge, the links this added (and the boot-state links in `rollback`) are taken
    /// back and the merge is restored, so a failed `--now` changes nothing.
    fn activate_locked(&self, exts: &[Extension], rollback: &[BootState]) -> Result<()> {
        let linked_before = self.store.runtime_links()?;
        let mut added = Vec::new();
        for ext in exts {
            let link = format!("{}.raw", ext.name);
            if !linked_before.iter().any(|l| l.name == link && l.store_file.as_deref() == Some(&ext.file)) {
                added.push(link.clone());
            }
            self.store.link_runtime(&link, &ext.file)?;
        }
        let (report, run) = self.refresh_locked()?;
        let Some(failed) = exts.iter().find(|ext| !report.merged.contains(&ext.name)) else {
            for ext in exts {
                tracing::info!(extension = %ext.name, "extension is merged");
            }
            return Ok(());
        };
        let reason = sysext::reason_for(&failed.name, &run);
        tracing::warn!(extension = %failed.name, reason, "extension did not merge; undoing the activation");
        for link in &added {
            self.store.unlink_runtime_name(link)?;
        }
        for ext in exts {
            for state in rollback {
                self.store.unlink_state(*state, &ext.file)?;
            }
        }
        if let Err(e) = self.refresh_locked() {
            tracing::warn!(error = %e, "refresh after undoing the activation failed");
        }
        Err(Error::NotMerged { name: failed.name.clone(), reason })
    }

    /// Disables `name` for `state`; with `now`, also takes it out of the running system
    /// when no other enabled state still wants it for this boot. Returns whether anything
    /// changed on disk.
    pub fn disable(&self, name: &ExtensionName, state: BootState, now: bool) -> Result<bool> {
        self.check_now(now)?;
        let _lock = self.store.lock()?;
        let ext = self.get(name)?;
        let changed = self.store.unlink_state(state, &ext.file)?;
        if changed {
            tracing::info!(extension = %ext.name, boot_state = %state, "disabled extension");
        }
        let current = self.boot_state();
        if now && boot::concerns(state, current) {
            let still_wanted = ext.enabled.iter().any(|s| *s != state && boot::concerns(*s, current));
            if still_wanted {
                tracing::info!(extension = %ext.name, "still enabled for this boot through another state; keeping it merged");
            } else {
                self.deactivate_locked(&ext)?;
            }
        }
        Ok(changed)
    }

    fn deactivate_locked(&self, ext: &Extension) -> Result<()> {
        self.store.unlink_runtime(&ext.file)?;
        let (report, run) = self.refresh_locked()?;
        if report.merged.contains(&ext.name) {
            return Err(Error::NotMerged {
                name: ext.name.clone(),
                reason: format!("it is still merged after the refresh ({})", sysext::reason_for(&ext.name, &run)),
            });
        }
        Ok(())
    }

    /// Removes `name`: disables it everywhere, takes it out of the runtime directory
    /// (a dangling activation link would break every later refresh), then deletes the
    /// image and its record. With `now` the merge is refreshed as well.
    pub fn remove(&self, name: &ExtensionName, now: bool) -> Result<Extension> {
        self.check_now(now)?;
        let _lock = self.store.lock()?;
        let ext = self.get(name)?;
        for state in &ext.enabled {
            self.store.unlink_state(*state, &ext.file)?;
        }
        let was_active = self.store.unlink_runtime(&ext.file)?;
        let entry = self.store.entries()?.into_iter().find(|e| e.file_name == ext.file);
        if let Some(entry) = entry {
            self.store.delete(&entry)?;
        }
        let meta_file = self.layout().meta_file(name);
        durable::remove_if_exists(&meta_file)
            .map_err(|source| store::StoreError::Io { context: format!("removing {}", meta_file.display()), source })?;
        tracing::info!(extension = %ext.name, file = %ext.file, "removed extension");
        if now && (was_active || ext.merged) {
            let (report, run) = self.refresh_locked()?;
            if report.merged.contains(&ext.name) {
                return Err(Error::NotMerged {
                    name: ext.name.clone(),
                    reason: format!(
                        "removed, but still merged after the refresh ({})",
                        sysext::reason_for(&ext.name, &run)
                    ),
                });
            }
        }
        Ok(ext)
    }

    /// Refreshes the merge and reports what merged and what did not.
    pub fn refresh(&self) -> Result<RefreshReport> {
        let _lock = self.store.lock()?;
        Ok(self.refresh_locked()?.0)
    }

    fn refresh_locked(&self) -> Result<(RefreshReport, RefreshRun)> {
        let run = self.refresher.refresh()?;
        let merged = self.merged()?;
        let not_merged = self
            .store
            .runtime_links()?
            .into_iter()
            .filter_map(|link| link.name.strip_suffix(".raw").map(str::to_owned).or(Some(link.name)))
            .filter(|name| !merged.contains(name))
            .map(|name| {
                let reason = sysext::reason_for(&name, &run);
                (name, reason)
            })
            .collect();
        if !run.success && merged.is_empty() {
            let last = run.log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no output");
            tracing::warn!(output = last, "systemd-sysext refresh failed");
        }
        Ok((RefreshReport { merged, not_merged }, run))
    }

    fn check_now(&self, now: bool) -> Result<()> {
        if now && !self.layout().is_live() {
            return Err(Error::NowNeedsLiveRoot { root: self.layout().root().display().to_string() });
        }
        Ok(())
    }
}
