//! The extension engine: everything the service does, without D-Bus.
//!
//! The daemon's bus layer, the CLI's offline `--root` mode and the boot activator all
//! call this same code, so an image builder gets exactly the behaviour of the service.
//! Operations are blocking; async callers run them on a blocking thread. Every mutating
//! operation holds the store's cross-process lock for its whole duration.

pub mod activation;
pub mod blockers;
pub mod boot;
pub mod catalog;
pub mod catalogs;
pub mod command;
pub mod config;
pub mod digest;
pub mod discovery;
pub mod durable;
mod error;
pub mod failpoint;
pub mod generator;
pub mod image;
mod install;
pub mod intent;
pub mod layout;
pub mod meta;
pub mod policy;
pub mod progress;
pub mod release;
pub mod sources;
pub mod store;
pub mod sysext;
pub mod trust;
pub mod updates;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kairos_extensions_dbus::{BootState, ExtensionName};

pub use catalog::Extension;
pub use config::Config;
pub use error::{Error, Result, full_message};
pub use install::{InstallRequest, Installed, early_name, refuses, source_file_name};
pub use updates::{CheckOutcome, Rolled, Updated};

use catalog::ProbeCache;
use intent::Change;
use layout::Layout;
use release::Host;
use store::{Place, Store, StoreLock};
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

/// Commits `change` if `outcome` succeeded; a commit that fails turns the outcome into
/// that failure.
fn commit_if_ok<T>(change: &mut Change<'_>, outcome: Result<T>) -> Result<T> {
    outcome.and_then(|value| change.commit().map(|()| value).map_err(Error::from))
}

/// The engine for one root.
pub struct Engine {
    store: Store,
    config: Config,
    refresher: Box<dyn Refresher>,
    probes: ProbeCache,
    catalogs: catalogs::Catalogs,
}

impl Engine {
    /// Opens the store of the system at `root` with `config`, refreshing merges with
    /// `refresher`, and removes what crashed installs left in staging.
    pub fn open(root: &Path, config: Config, refresher: Box<dyn Refresher>) -> Result<Self> {
        let layout = Layout::new(root, &config.store_dir, &config.runtime_dir)?;
        let store = Store::open(layout)?;
        let engine = Self { store, config, refresher, probes: ProbeCache::default(), catalogs: Default::default() };
        let _lock = engine.lock_for_change()?;
        let cleaned = engine.store.clean_staging()? + engine.store.clean_leftovers()?;
        if cleaned > 0 {
            tracing::info!(count = cleaned, "removed leftovers of interrupted changes");
        }
        Ok(engine)
    }

    /// Takes the store lock for a change. A change that a process left unfinished when
    /// it died is settled first (undone, or finished if it had committed), so every
    /// change starts from a state that is exactly one of the states the last change
    /// promised.
    fn lock_for_change(&self) -> Result<StoreLock> {
        let lock = self.store.lock()?;
        if let Some(settled) = intent::settle(&self.store)? {
            tracing::info!(
                operation = %settled.operation,
                outcome = if settled.committed { "finished" } else { "undone" },
                "settled a change that was interrupted"
            );
            if settled.merged() && self.layout().is_live() {
                self.refresh_locked()?;
            }
        }
        Ok(lock)
    }

    /// Ends `change` as `outcome` says: committed when it succeeded; undone, with the
    /// merge restored, when it failed.
    fn conclude<T>(&self, mut change: Change<'_>, outcome: Result<T>) -> Result<T> {
        match commit_if_ok(&mut change, outcome) {
            Ok(value) => {
                change.finish();
                Ok(value)
            }
            Err(e) => Err(self.undo(change, e)),
        }
    }

    /// Undoes a change that failed with `error`, merging again if it had merged, and
    /// hands the error back.
    fn undo(&self, change: Change<'_>, error: Error) -> Error {
        tracing::warn!(error = %full_message(&error), "the change failed; putting everything back as it was");
        if change.roll_back()
            && let Err(refresh) = self.refresh_locked()
        {
            tracing::warn!(error = %full_message(&refresh), "merging again after undoing the change failed");
        }
        error
    }

    /// Opens the store of the system at `root` for reading only: nothing is created or
    /// cleaned up, so listing and describing work on a bare root and on a read-only
    /// store, and change nothing there. A change made through it fails at its first
    /// write, naming the path.
    pub fn open_read_only(root: &Path, config: Config, refresher: Box<dyn Refresher>) -> Result<Self> {
        let layout = Layout::new(root, &config.store_dir, &config.runtime_dir)?;
        Ok(Self {
            store: Store::existing(layout),
            config,
            refresher,
            probes: ProbeCache::default(),
            catalogs: Default::default(),
        })
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
        Ok(self.verified(self.get(name)?))
    }

    /// `ext` as listed, with how its image is protected and whether the image policy
    /// refuses it. The image is read once per identity; later calls read nothing.
    pub fn verified(&self, mut ext: Extension) -> Extension {
        let image = self.store.path_of(&ext.file);
        catalog::verify(&mut ext, &image, &self.config.image_policy, &self.certificate_dirs(), &self.probes);
        ext
    }

    /// One extension by exact name.
    pub fn get(&self, name: &ExtensionName) -> Result<Extension> {
        self.find(name)?.ok_or_else(|| Error::NotFound(name.to_string()))
    }

    fn find(&self, name: &ExtensionName) -> Result<Option<Extension>> {
        if let Some(ext) = self.quick_get(name)? {
            return Ok(Some(ext));
        }
        Ok(self.list()?.into_iter().find(|e| e.name == name.as_str()))
    }

    /// `name` as [`Engine::list`] would have it, when that can be told without listing
    /// the store (its image is `NAME.raw` and carries that name); `None` when only a
    /// listing can tell.
    pub fn quick_get(&self, name: &ExtensionName) -> Result<Option<Extension>> {
        let host = Host::load(self.layout().root()).map_err(|e| e.to_string());
        catalog::one(&self.store, &host, &self.probes, name)
    }

    /// Whether the store holds an entry `NAME.raw` for `name`, of any kind. A change that
    /// removed `name` asks before it tells the model the extension is gone: another
    /// change may have installed it again in the meantime.
    pub fn has_entry_for(&self, name: &ExtensionName) -> Result<bool> {
        Ok(self.store.entry(&format!("{name}.raw"))?.is_some())
    }

    /// For every store file, the boot states it is enabled in: what a change to links
    /// made by someone else can have changed, for a few `readlink` calls.
    pub fn enablement(&self) -> Result<BTreeMap<String, BTreeSet<BootState>>> {
        Ok(self.store.enablement()?)
    }

    /// Enables `name` for `state`; with `now`, also for the running system when `state`
    /// concerns this boot. Returns whether anything changed on disk. All or nothing: if
    /// the extension does not merge, it is not enabled either.
    pub fn enable(&self, name: &ExtensionName, state: BootState, now: bool) -> Result<bool> {
        self.check_now(now)?;
        let _lock = self.lock_for_change()?;
        let ext = self.get(name)?;
        let mut change = Change::begin(&self.store, format!("enable {name} for {state}"));
        let outcome = self.enable_in(&mut change, &ext, state).and_then(|changed| {
            if now && boot::concerns(state, self.boot_state()) {
                self.activate_in(&mut change, std::slice::from_ref(&ext), &[])?;
            }
            Ok(changed)
        });
        self.conclude(change, outcome)
    }

    fn enable_in(&self, change: &mut Change<'_>, ext: &Extension, state: BootState) -> Result<bool> {
        if !ext.compatible {
            return Err(Error::Unusable { name: ext.name.clone(), reason: ext.incompatible_reason.clone() });
        }
        if ext.enabled.contains(&state) {
            return Ok(false);
        }
        change.link(Place::State(state), &format!("{}.raw", ext.name), &ext.file)?;
        tracing::info!(extension = %ext.name, boot_state = %state, "enabled extension");
        Ok(true)
    }

    /// Links `exts` into the runtime directory and merges once; an extension that does
    /// not merge fails the change, which then undoes itself and merges again.
    ///
    /// `new_images` names those of `exts` whose image this change replaced: their name
    /// being merged proves nothing ([`sysext::stale_merge`]).
    fn activate_in(&self, change: &mut Change<'_>, exts: &[Extension], new_images: &[&str]) -> Result<()> {
        for ext in exts {
            change.link(Place::Runtime, &format!("{}.raw", ext.name), &ext.file)?;
        }
        change.merging()?;
        let (report, run) = self.refresh_locked()?;
        let not_merged = |ext: &Extension| {
            if !report.merged.contains(&ext.name) {
                return Some(sysext::reason_for(&ext.name, &run));
            }
            if !new_images.contains(&ext.name.as_str()) {
                return None;
            }
            sysext::stale_merge(self.layout().root(), &ext.name, &ext.release, &run)
        };
        if let Some((failed, reason)) = exts.iter().find_map(|ext| not_merged(ext).map(|reason| (ext, reason))) {
            tracing::warn!(extension = %failed.name, reason, "extension did not merge; undoing the change");
            return Err(Error::NotMerged { name: failed.name.clone(), reason });
        }
        for ext in exts {
            tracing::info!(extension = %ext.name, "extension is merged");
        }
        Ok(())
    }

    /// Disables `name` for `state`; with `now`, also takes it out of the running system
    /// when no other enabled state still wants it for this boot. Returns whether anything
    /// changed on disk. All or nothing: if it stays merged, it stays enabled too.
    pub fn disable(&self, name: &ExtensionName, state: BootState, now: bool) -> Result<bool> {
        self.check_now(now)?;
        let _lock = self.lock_for_change()?;
        let ext = self.get(name)?;
        let mut change = Change::begin(&self.store, format!("disable {name} for {state}"));
        let outcome = self.disable_in(&mut change, &ext, state, now);
        self.conclude(change, outcome)
    }

    fn disable_in(&self, change: &mut Change<'_>, ext: &Extension, state: BootState, now: bool) -> Result<bool> {
        let changed = !change.unlink(Place::State(state), &ext.file)?.is_empty();
        if changed {
            tracing::info!(extension = %ext.name, boot_state = %state, "disabled extension");
        }
        let current = self.boot_state();
        if now && boot::concerns(state, current) {
            let still_wanted = ext.enabled.iter().any(|s| *s != state && boot::concerns(*s, current));
            if still_wanted {
                tracing::info!(extension = %ext.name, "still enabled for this boot through another state; keeping it merged");
            } else {
                change.unlink(Place::Runtime, &ext.file)?;
                change.merging()?;
                let (report, run) = self.refresh_locked()?;
                if report.merged.contains(&ext.name) {
                    return Err(Error::NotMerged {
                        name: ext.name.clone(),
                        reason: format!(
                            "it is still merged after the refresh ({})",
                            sysext::reason_for(&ext.name, &run)
                        ),
                    });
                }
            }
        }
        Ok(changed)
    }

    /// Removes `name`: disables it everywhere, takes it out of the runtime directory
    /// (a dangling activation link would break every later refresh), then deletes the
    /// image and its record. With `now` the merge is refreshed as well, once the removal
    /// is committed: it is not undone because the merge still holds the old image.
    pub fn remove(&self, name: &ExtensionName, now: bool) -> Result<Extension> {
        self.check_now(now)?;
        let _lock = self.lock_for_change()?;
        let ext = self.get(name)?;
        let mut change = Change::begin(&self.store, format!("remove {name}"));
        let outcome = self.remove_in(&mut change, &ext, name).and_then(|was_active| {
            let merge = now && (was_active || ext.merged);
            // Announced before the commit: a crash after it must still merge.
            if merge {
                change.merging()?;
            }
            Ok(merge)
        });
        let merge = match commit_if_ok(&mut change, outcome) {
            Ok(merge) => merge,
            Err(e) => return Err(self.undo(change, e)),
        };
        let outcome = if merge { self.merge_after_removal(&ext) } else { Ok(()) };
        change.finish();
        outcome.map(|()| ext)
    }

    fn remove_in(&self, change: &mut Change<'_>, ext: &Extension, name: &ExtensionName) -> Result<bool> {
        for state in &ext.enabled {
            change.unlink(Place::State(*state), &ext.file)?;
        }
        let was_active = !change.unlink(Place::Runtime, &ext.file)?.is_empty();
        if let Some(entry) = self.store.entries()?.into_iter().find(|e| e.file_name == ext.file) {
            change.take_away(&entry)?;
        }
        change.remove_record(name)?;
        change.remove_previous(name)?;
        tracing::info!(extension = %ext.name, file = %ext.file, "removed extension");
        Ok(was_active)
    }

    fn merge_after_removal(&self, ext: &Extension) -> Result<()> {
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
        Ok(())
    }

    /// Refreshes the merge and reports what merged and what did not.
    pub fn refresh(&self) -> Result<RefreshReport> {
        let _lock = self.lock_for_change()?;
        let mut change = Change::begin(&self.store, "refresh");
        // Nothing to undo: a refresh interrupted by a crash is simply run again.
        change.merging()?;
        change.commit()?;
        let report = self.refresh_locked().map(|(report, _)| report);
        change.finish();
        report
    }

    fn refresh_locked(&self) -> Result<(RefreshReport, RefreshRun)> {
        failpoint::point("about to merge");
        let run = self.refresher.refresh()?;
        failpoint::point("merged");
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
