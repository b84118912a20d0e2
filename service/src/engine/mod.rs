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
pub mod durable;
mod error;
pub mod generator;
pub mod image;
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
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use kairos_extensions_dbus::{BootState, ExtensionName};

pub use catalog::Extension;
pub use config::Config;
pub use error::{Error, Result, full_message};

use catalog::ProbeCache;
use digest::Sha256Digest;
use layout::Layout;
use meta::Provenance;
use progress::{Phase, Progress};
use release::Host;
use store::{FileKey, Staged, Store};
use sysext::{RefreshRun, Refresher};

/// What an install should do besides storing the image.
#[derive(Debug, Clone, Default)]
pub struct InstallRequest {
    /// Which of the image's extension releases to install (by name).
    pub name: Option<ExtensionName>,
    /// Boot states to enable once stored.
    pub enable: Vec<BootState>,
    /// Apply the enablement to the running system too.
    pub now: bool,
    /// Replace an installed extension of the same name.
    pub replace: bool,
    /// The digest the image must have.
    pub digest: Option<Sha256Digest>,
}

/// The outcome of an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The extension's name.
    pub name: ExtensionName,
    /// The file in the store.
    pub file: String,
    /// Digest of the stored image.
    pub digest: String,
    /// Size of the stored image.
    pub size: u64,
    /// Whether an installed extension was replaced.
    pub replaced: bool,
    /// Boot states newly enabled.
    pub enabled: Vec<BootState>,
}

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

    /// One extension with everything known, including how its image is protected
    /// (verified now, which reads the whole image).
    pub fn describe(&self, name: &ExtensionName) -> Result<Extension> {
        let mut ext = self.get(name)?;
        if ext.kind == store::EntryKind::Image {
            let verdict = trust::TrustStore::load(&self.certificate_dirs())
                .and_then(|store| trust::inspect(&self.store.path_of(&ext.file), &store));
            ext.protection = Some(match verdict {
                Ok(protection) => protection.describe(),
                Err(e) => format!("refused: {}", full_message(&e)),
            });
        }
        Ok(ext)
    }

    /// One extension by exact name.
    pub fn get(&self, name: &ExtensionName) -> Result<Extension> {
        self.find(name)?.ok_or_else(|| Error::NotFound(name.to_string()))
    }

    fn find(&self, name: &ExtensionName) -> Result<Option<Extension>> {
        Ok(self.list()?.into_iter().find(|e| e.name == name.as_str()))
    }

    /// Installs an image read from `reader` (a local file or an fd).
    pub fn install_from_reader(
        &self,
        source: &str,
        reader: impl Read,
        total: Option<u64>,
        request: &InstallRequest,
        progress: &dyn Progress,
    ) -> Result<Installed> {
        self.check_now(request.now && !request.enable.is_empty())?;
        let mut staged = self.store.stage(self.config.max_image_size)?;
        progress.phase(Phase::Downloading);
        staged.copy_from(reader, total, progress)?;
        self.install_staged(staged, source, None, request, progress)
    }

    /// Installs a local image file named by `path`.
    pub fn install_file(&self, path: &Path, request: &InstallRequest, progress: &dyn Progress) -> Result<Installed> {
        let file = sources::file::open_path(path)?;
        let total = file.metadata().ok().map(|m| m.len());
        let source = sources::Source::File(path.to_path_buf()).display();
        self.install_from_reader(&source, file, total, request, progress)
    }

    /// Installs from any parsed source. A registry image may carry several extension
    /// images: all are installed, or only the one `request.name` picks.
    pub fn install_source(
        &self,
        source: &sources::Source,
        request: &InstallRequest,
        progress: &dyn Progress,
    ) -> Result<Vec<Installed>> {
        match source {
            sources::Source::File(path) => Ok(vec![self.install_file(path, request, progress)?]),
            sources::Source::Http { url, pinned } => {
                self.check_now(request.now && !request.enable.is_empty())?;
                let request = with_pinned_digest(request, pinned.as_ref(), source)?;
                let mut staged = self.store.stage(self.config.max_image_size)?;
                progress.phase(Phase::Downloading);
                sources::http::download(url, &mut staged, progress)?;
                Ok(vec![self.install_staged(staged, &source.display(), None, &request, progress)?])
            }
            sources::Source::Oci { reference } => self.install_oci(source, reference, request, progress),
        }
    }

    fn install_oci(
        &self,
        source: &sources::Source,
        reference: &sources::reference::ImageReference,
        request: &InstallRequest,
        progress: &dyn Progress,
    ) -> Result<Vec<Installed>> {
        self.check_now(request.now && !request.enable.is_empty())?;
        let options = sources::oci::RegistryOptions {
            insecure: self.config.insecure_registries.clone(),
            auth_file: self.config.registry_auth.as_ref().map(|p| self.layout().host(p)),
            max_image_size: self.config.max_image_size,
        };
        let pulled =
            sources::oci::pull(reference, &options, || self.store.stage(self.config.max_image_size), progress)?;
        // The digest option pins the manifest (or index), or else the image file.
        let mut request = request.clone();
        if let Some(digest) = &request.digest {
            let text = digest.to_string();
            if text == pulled.manifest_digest || pulled.index_digest.as_deref() == Some(text.as_str()) {
                request.digest = None;
            }
        }
        let resolved = Some(pulled.index_digest.clone().unwrap_or_else(|| pulled.manifest_digest.clone()));
        let display = source.display();
        let mut installed = Vec::new();
        for image in pulled.images {
            if let Some(wanted) = &request.name {
                let releases = image::read_image(image.staged.path())?;
                if !releases.0.iter().any(|(name, _)| name == wanted) {
                    tracing::info!(file = %image.file_name, wanted = %wanted, "skipping an image of the pull that is not the one asked for");
                    continue;
                }
            }
            let stem = image.file_name.trim_end_matches(".raw").to_owned();
            let mut per_image = request.clone();
            if per_image.name.is_none() {
                per_image.name =
                    image::read_image(image.staged.path())?.pick(None, Some(&stem)).ok().map(|(name, _)| name);
            }
            installed.push(self.install_staged(image.staged, &display, resolved.clone(), &per_image, progress)?);
        }
        if installed.is_empty() {
            let wanted = request.name.map(|n| n.to_string()).unwrap_or_default();
            return Err(Error::InvalidImage(image::ImageError::NameNotInImage { wanted, available: Vec::new() }));
        }
        Ok(installed)
    }

    /// Opens a staging file for a source that writes the bytes itself.
    pub fn stage(&self) -> Result<Staged> {
        Ok(self.store.stage(self.config.max_image_size)?)
    }

    /// Validates a fully staged image and, if it passes, makes it an installed
    /// extension. Nothing is visible in the store until every check passed; on any error
    /// the staged file is deleted and the store is as it was.
    pub fn install_staged(
        &self,
        staged: Staged,
        source: &str,
        resolved_digest: Option<String>,
        request: &InstallRequest,
        progress: &dyn Progress,
    ) -> Result<Installed> {
        self.check_now(request.now && !request.enable.is_empty())?;
        progress.phase(Phase::Verifying);
        let digest = staged.digest();
        if let Some(expected) = &request.digest
            && *expected != digest
        {
            return Err(Error::DigestMismatch { expected: expected.to_string(), actual: digest.to_string() });
        }
        let (name, release) = image::read_image(staged.path())?.pick(request.name.as_ref(), None)?;
        let host = Host::load(self.layout().root())?;
        progress.named(name.as_str());
        release::check_compatible(&release, &host)
            .map_err(|reason| Error::Incompatible { name: name.to_string(), reason })?;
        trust::admit(&self.config.image_policy, staged.path(), &self.certificate_dirs())
            .map_err(Error::PolicyRefused)?;
        if progress.canceled() {
            return Err(Error::Canceled);
        }
        progress.phase(Phase::Installing);

        let _lock = self.store.lock()?;
        let existing = self.find(&name)?;
        if existing.is_some() && !request.replace {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        let file = name.image_file_name();
        let size = staged.size();
        self.store.commit(staged, &file, existing.is_some())?;
        if let Some(old) = existing.as_ref().filter(|old| old.file != file) {
            self.migrate(old, &name, &file)?;
        }
        let mtime_ns = std::fs::symlink_metadata(self.store.path_of(&file))
            .map(|m| FileKey::of(&m).mtime_ns())
            .map_err(|source| store::StoreError::Io { context: format!("inspecting {file}"), source })?;
        let record = Provenance {
            name: name.to_string(),
            file: file.clone(),
            source: source.to_owned(),
            resolved_digest,
            digest: digest.to_string(),
            size,
            mtime_ns,
            installed_time_us: now_us(),
            release,
        };
        meta::write(&self.layout().meta_dir(), &record)
            .map_err(|source| store::StoreError::Io { context: "writing the provenance record".into(), source })?;
        tracing::info!(extension = %name, source, digest = %digest, size, replaced = existing.is_some(), "installed extension");

        if !request.enable.is_empty() {
            progress.phase(Phase::Enabling);
        }
        let mut enabled = Vec::new();
        let current = self.boot_state();
        let mut activate = false;
        for state in &request.enable {
            let ext = self.get(&name)?;
            if self.enable_locked(&ext, *state)? {
                enabled.push(*state);
            }
            activate |= request.now && boot::concerns(*state, current);
        }
        if activate {
            progress.phase(Phase::Refreshing);
            let ext = self.get(&name)?;
            self.activate_locked(&ext, &[])?;
        }
        Ok(Installed { name, file, digest: digest.to_string(), size, replaced: existing.is_some(), enabled })
    }

    /// Moves the enablement of a replaced file that had another name (a kairos-agent
    /// `k3s.sysext.raw`, say) to the new `<NAME>.raw`, then deletes the old file.
    fn migrate(&self, old: &Extension, name: &ExtensionName, file: &str) -> Result<()> {
        let link = name.image_file_name();
        for state in &old.enabled {
            self.store.link_state(*state, &link, file)?;
            self.store.unlink_state(*state, &old.file)?;
        }
        if self.store.unlink_runtime(&old.file)? {
            self.store.link_runtime(&link, file)?;
        }
        let entry = self.store.entries()?.into_iter().find(|e| e.file_name == old.file);
        if let Some(entry) = entry {
            self.store.delete(&entry)?;
        }
        Ok(())
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
            self.activate_locked(&self.get(name)?, rollback)?;
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

    /// Links `ext` into the runtime directory and refreshes; if it does not merge, the
    /// link (and the boot-state links in `rollback`) are taken back and the merge is
    /// restored, so a failed `--now` changes nothing.
    fn activate_locked(&self, ext: &Extension, rollback: &[BootState]) -> Result<()> {
        let link = format!("{}.raw", ext.name);
        let already_linked =
            self.store.runtime_links()?.iter().any(|l| l.name == link && l.store_file.as_deref() == Some(&ext.file));
        self.store.link_runtime(&link, &ext.file)?;
        let (report, run) = self.refresh_locked()?;
        if report.merged.contains(&ext.name) {
            tracing::info!(extension = %ext.name, "extension is merged");
            return Ok(());
        }
        let reason = sysext::reason_for(&ext.name, &run);
        tracing::warn!(extension = %ext.name, reason, "extension did not merge; undoing the activation");
        if !already_linked {
            self.store.unlink_runtime_name(&link)?;
        }
        for state in rollback {
            self.store.unlink_state(*state, &ext.file)?;
        }
        if let Err(e) = self.refresh_locked() {
            tracing::warn!(error = %e, "refresh after undoing the activation failed");
        }
        Err(Error::NotMerged { name: ext.name.clone(), reason })
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

/// Merges a digest pinned in the source (`#sha256=`) with the `digest` option; two
/// different pins are a contradiction the caller must resolve.
fn with_pinned_digest(
    request: &InstallRequest,
    pinned: Option<&Sha256Digest>,
    source: &sources::Source,
) -> Result<InstallRequest> {
    let mut request = request.clone();
    match (pinned, &request.digest) {
        (Some(pinned), Some(option)) if pinned != option => {
            return Err(Error::InvalidSource {
                source_text: source.display(),
                reason: format!("the URL pins {pinned} but the digest option says {option}"),
            });
        }
        (Some(pinned), None) => request.digest = Some(pinned.clone()),
        _ => {}
    }
    Ok(request)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0)
}
