//! Keeping extensions current: checking the source each was installed from for
//! something newer, updating from it, and rolling back to the version before.
//!
//! An update is an install from the recorded source with replace, through the same
//! download, verification and validation, and the same crash-safe commit. What it adds
//! is one step inside that commit: the image it replaces, with its provenance record,
//! becomes the extension's previous version ([`previous`]). A rollback swaps the two in
//! one change. Either is recorded in the intent record step by step, so a crash leaves
//! the old state or the new one, and never loses the previous version.

pub mod check;
pub mod checks;
pub mod previous;

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kairos_extensions_dbus::{ExtensionName, UpdateCheck};
use serde::Serialize;

use super::catalogs::CatalogSet;
use super::intent::Change;
use super::progress::{Phase, Progress};
use super::release;
use super::sources::Source;
use super::{Engine, Error, Extension, InstallRequest, Result, meta, sysext};
use check::Origin;

/// What checking one extension found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CheckOutcome {
    /// The extension.
    pub name: String,
    /// Its version now.
    pub installed_version: String,
    /// Where it was installed from.
    pub source: String,
    /// Whether the source could be asked, and if not why.
    pub check: UpdateCheck,
    /// Whether the source has another image than the installed one.
    pub update_available: bool,
    /// The version an update would install, when the source says it without a download
    /// (registries and HTTP servers do not; catalogs do).
    pub available_version: String,
    /// What an update would install from: for a registry, the tag with the digest it
    /// resolves to now.
    pub available_source: String,
    /// When it was checked, µs since the epoch.
    pub checked_time_us: u64,
}

/// What updating one extension did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Updated {
    /// The extension.
    pub name: String,
    /// Its version before.
    pub old_version: String,
    /// Its version now; the same as before when nothing was updated.
    pub new_version: String,
    /// Whether a new image was installed.
    pub updated: bool,
    /// Why not, when it was not: up to date, pinned, a local file, cannot be checked.
    pub note: String,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rolled {
    /// The extension.
    pub name: String,
    /// The version it had before the rollback (now the previous version).
    pub old_version: String,
    /// The version it has now.
    pub new_version: String,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0)
}

impl Engine {
    /// The extensions `names` asks for (every extension when empty), each exactly once.
    fn targets(&self, names: &[ExtensionName]) -> Result<Vec<Extension>> {
        let listed = self.list()?;
        if names.is_empty() {
            return Ok(listed);
        }
        let mut targets: Vec<Extension> = Vec::with_capacity(names.len());
        for name in names {
            let ext =
                listed.iter().find(|e| e.name == name.as_str()).ok_or_else(|| Error::NotFound(name.to_string()))?;
            if !targets.iter().any(|t| t.name == ext.name) {
                targets.push(ext.clone());
            }
        }
        Ok(targets)
    }

    /// Asks the source of each extension in `names` (every extension when empty)
    /// whether it has something newer. Reads only; nothing in the store changes. A
    /// source that cannot be asked is a result, not an error: the others are still
    /// checked.
    pub fn check_updates(&self, names: &[ExtensionName], progress: &dyn Progress) -> Result<Vec<CheckOutcome>> {
        progress.phase(Phase::Resolving);
        let targets = self.targets(names)?;
        let total = targets.len() as u64;
        let mut outcomes = Vec::with_capacity(targets.len());
        // Read once for the whole check, and only when a catalog install asks.
        let catalogs = OnceCell::new();
        for (done, ext) in targets.iter().enumerate() {
            progress.bytes(done as u64, Some(total));
            if progress.canceled() {
                return Err(Error::Canceled);
            }
            outcomes.push(self.check_one(ext, &catalogs, progress));
        }
        progress.bytes(total, Some(total));
        let remembered = targets
            .iter()
            .zip(&outcomes)
            .map(|(ext, outcome)| checks::Remembered { digest: ext.digest.clone(), outcome: outcome.clone() });
        if let Err(e) = checks::remember(&self.store, remembered) {
            tracing::warn!(error = %e, "cannot keep the results of the check; they last until the service stops");
        }
        Ok(outcomes)
    }

    /// What the last checks found about the images `installed` now (name and digest):
    /// a result about another image than the one installed now is no longer true.
    pub fn remembered_checks(&self, installed: &[(String, String)]) -> Vec<CheckOutcome> {
        let mut remembered = checks::load(&self.store);
        installed
            .iter()
            .filter_map(|(name, digest)| remembered.remove(name).filter(|r| r.digest == *digest && !digest.is_empty()))
            .map(|r| r.outcome)
            .collect()
    }

    /// What the source of `origin` answers; the catalogs are read (once, into
    /// `catalogs`) when the origin is a catalog entry.
    fn ask(
        &self,
        origin: &Origin,
        record: Option<&meta::Provenance>,
        catalogs: &OnceCell<Arc<CatalogSet>>,
        progress: &dyn Progress,
    ) -> check::Answer {
        match origin {
            Origin::Catalog(catalog) => {
                let read = catalogs.get_or_init(|| self.read_catalogs(Duration::ZERO));
                for skipped in &read.skipped {
                    tracing::warn!(catalog = %skipped, "skipping a catalog that cannot be read");
                }
                check::ask_catalog(catalog, read)
            }
            _ => check::ask(origin, record, &self.config, self.layout(), progress),
        }
    }

    fn check_one(
        &self,
        ext: &Extension,
        catalogs: &OnceCell<Arc<CatalogSet>>,
        progress: &dyn Progress,
    ) -> CheckOutcome {
        let record = ExtensionName::new(&ext.name).ok().and_then(|name| check::record(self.layout(), &name));
        let origin = check::origin(record.as_ref());
        let answer = self.ask(&origin, record.as_ref(), catalogs, progress);
        match &answer.check {
            UpdateCheck::Failed(error) => {
                tracing::warn!(extension = %ext.name, source = %ext.source, error, "update check failed")
            }
            check => tracing::info!(
                extension = %ext.name,
                source = %ext.source,
                check = check.as_str(),
                update_available = answer.newer,
                "checked for updates"
            ),
        }
        CheckOutcome {
            name: ext.name.clone(),
            installed_version: ext.version.clone(),
            source: ext.source.clone(),
            check: answer.check,
            update_available: answer.newer,
            available_version: answer.available_version,
            available_source: answer.available_source,
            checked_time_us: now_us(),
        }
    }

    /// Updates each extension in `names` (every extension with an update when empty)
    /// from the source it was installed from: downloaded, verified and validated as an
    /// install, replacing the image atomically and keeping the one it replaces as the
    /// previous version. Enabled states stay as they are; with `now`, an extension
    /// merged now is merged again with its new image. `version` is for catalog installs
    /// only. Each update is its own change: `on_updated` hears of each as it is done,
    /// and the first that fails stops the rest with its error.
    pub fn update(
        &self,
        names: &[ExtensionName],
        now: bool,
        version: Option<&str>,
        progress: &dyn Progress,
        on_updated: &mut dyn FnMut(&Updated),
    ) -> Result<Vec<Updated>> {
        self.check_now(now)?;
        let targets = self.targets(names)?;
        let mut done = Vec::with_capacity(targets.len());
        for ext in &targets {
            if progress.canceled() {
                return Err(Error::Canceled);
            }
            progress.named(&ext.name);
            let step = self.update_one(ext, now, version, progress)?;
            if step.updated || !names.is_empty() {
                on_updated(&step);
                done.push(step);
            }
        }
        Ok(done)
    }

    fn update_one(
        &self,
        ext: &Extension,
        now: bool,
        version: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Updated> {
        let name = ExtensionName::new(&ext.name)?;
        let record = check::record(self.layout(), &name);
        let origin = check::origin(record.as_ref());
        if let Some(version) = version {
            let Origin::Catalog(catalog) = &origin else {
                return Err(Error::InvalidSource {
                    source_text: ext.source.clone(),
                    reason: format!("not a catalog install, so there is no version {version:?} to choose"),
                });
            };
            // NAME@VERSION names what to install, and becomes the new request (a new pin).
            return self.update_from(ext, &format!("catalog:{}@{version}", catalog.name), now, progress);
        }
        let skipped = |note: String| Updated {
            name: ext.name.clone(),
            old_version: ext.version.clone(),
            new_version: ext.version.clone(),
            updated: false,
            note,
        };
        progress.phase(Phase::Resolving);
        let answer = self.ask(&origin, record.as_ref(), &OnceCell::new(), progress);
        match (&answer.check, answer.newer) {
            (UpdateCheck::Ok, true) => {}
            (UpdateCheck::Ok, false) => return Ok(skipped("already up to date".into())),
            (UpdateCheck::Failed(error), _) => {
                return Err(Error::UpdateCheck { name: ext.name.clone(), reason: error.clone() });
            }
            (UpdateCheck::Pinned, _) => {
                let note = match &origin {
                    Origin::Catalog(catalog) => format!(
                        "pinned to version {} (pass {}@VERSION to choose another)",
                        catalog.version, catalog.name
                    ),
                    _ => "pinned by digest; it never updates".into(),
                };
                return Ok(skipped(note));
            }
            (UpdateCheck::Local, _) => {
                return Ok(skipped("installed from a local file; nothing to update from".into()));
            }
            (UpdateCheck::CannotCheck | UpdateCheck::NotChecked, _) => {
                let why = match &origin {
                    Origin::Unknown(why) => why.clone(),
                    _ => "the server gives neither ETag nor Last-Modified".into(),
                };
                return Ok(skipped(format!("cannot tell whether there is a newer image: {why}")));
            }
        }
        self.update_from(ext, &ext.source, now, progress)
    }

    /// Installs `source` over `ext`, keeping its enabled states and its image as the
    /// previous version.
    fn update_from(&self, ext: &Extension, source: &str, now: bool, progress: &dyn Progress) -> Result<Updated> {
        let name = ExtensionName::new(&ext.name)?;
        let source = Source::parse(source)?;
        let request = InstallRequest {
            name: Some(name.clone()),
            enable: Vec::new(),
            now,
            replace: true,
            digest: None,
            update: true,
        };
        self.install_source(&source, &request, progress)?;
        let new_version = self.get(&name)?.version;
        tracing::info!(extension = %name, old = %ext.version, new = %new_version, "updated extension");
        Ok(Updated {
            name: ext.name.clone(),
            old_version: ext.version.clone(),
            new_version,
            updated: true,
            note: String::new(),
        })
    }

    /// Inside an update's commit: the image `old_file` that is about to be replaced,
    /// with its record, becomes the previous version of `name`.
    pub(in crate::engine) fn keep_previous_locked(
        &self,
        name: &ExtensionName,
        old_file: &str,
        change: &mut Change<'_>,
    ) -> Result<()> {
        let record = meta::read(&self.layout().meta_file(name));
        change.set_previous(name, old_file)?;
        change.set_previous_record(name, record.as_ref())?;
        Ok(())
    }

    /// The version of the previous image of every extension that has one.
    pub fn previous_versions(&self) -> Result<Vec<(String, String)>> {
        Ok(previous::versions(&self.store)?)
    }

    /// Puts the previous version of `name` back in one step; the image it replaces
    /// becomes the previous version, so a second rollback undoes the first. Enabled
    /// states stay; with `now`, an extension merged now is merged again.
    pub fn rollback(&self, name: &ExtensionName, now: bool) -> Result<Rolled> {
        self.check_now(now)?;
        let _lock = self.lock_for_change()?;
        let ext = self.get(name)?;
        let no_previous = || Error::NoPreviousVersion(name.to_string());
        if !previous::exists(&self.store, name) {
            return Err(no_previous());
        }
        let mut restored = previous::record(&self.store, name).ok_or_else(no_previous)?;
        let current = meta::read(&self.layout().meta_file(name));
        let file = name.image_file_name();
        if ext.file != file {
            return Err(Error::Unusable {
                name: name.to_string(),
                reason: format!("its image is {}, not one this service installed as {file}", ext.file),
            });
        }
        let mut change = Change::begin(&self.store, format!("roll back {name}"));
        let outcome = (|| {
            let kept = change.set_previous(name, &ext.file)?;
            change.set_previous_record(name, current.as_ref())?;
            // The image that was the previous one now waits in staging as `kept`.
            let from =
                kept.map(|k| super::layout::join_file_name(&self.layout().tmp_dir(), &k)).ok_or_else(no_previous)?;
            change.place_link(&from, &file)?;
            restored.file = file.clone();
            change.write_record(&restored)?;
            if now && ext.merged {
                change.merging()?;
                let (report, run) = self.refresh_locked()?;
                if !report.merged.contains(&ext.name) {
                    let reason = sysext::reason_for(&ext.name, &run);
                    return Err(Error::NotMerged { name: ext.name.clone(), reason });
                }
                if let Some(reason) = sysext::stale_merge(self.layout().root(), &ext.name, &restored.release, &run) {
                    return Err(Error::NotMerged { name: ext.name.clone(), reason });
                }
            }
            Ok(())
        })();
        self.conclude(change, outcome)?;
        let new_version = release::display_version(&restored.release).unwrap_or("").to_owned();
        tracing::info!(extension = %name, old = %ext.version, new = %new_version, "rolled back to the previous version");
        Ok(Rolled { name: name.to_string(), old_version: ext.version, new_version })
    }
}
