//! Installing: every source ends in staged images, which are verified, then committed
//! to the store together, then enabled.
//!
//! An install is all or nothing. A registry image may carry several extension images:
//! each is verified (digest pin, release, compatibility, trust policy) before any is
//! committed, the names are checked for clashes with each other and with the store,
//! and all are committed under one hold of the store lock. One bad image among good
//! ones leaves the store as it was.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use kairos_extensions_dbus::{BootState, ExtensionName};

use super::catalogs::CatalogOrigin;
use super::digest::Sha256Digest;
use super::image::{ImageError, Releases};
use super::intent::Change;
use super::meta::{Provenance, Validators};
use super::progress::{Phase, Progress};
use super::release::{self, Host, ReleaseFields};
use super::store::{self, FileKey, Place, Staged};
use super::{Engine, Error, Extension, Result, boot, sources, trust};

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
    /// This install is an update of the installed extension of that name: the image it
    /// replaces is kept as its previous version (for a rollback), and with `now` the new
    /// image is merged if the old one is merged now.
    pub update: bool,
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

/// The name an install will have, when it is known before anything is downloaded: the
/// one asked for, or else that of a file called `NAME.raw`, the name systemd-sysext gives
/// such a file.
pub fn early_name(file_name: Option<&str>, request: &InstallRequest) -> Option<ExtensionName> {
    request.name.clone().or_else(|| file_name?.strip_suffix(".raw")?.parse().ok())
}

/// The file name at the end of a local path or a download URL; for a catalog entry,
/// the file its image is stored as (the entry's name is the extension's).
pub fn source_file_name(source: &sources::Source) -> Option<String> {
    match source {
        sources::Source::File(path) => path.file_name()?.to_str().map(str::to_owned),
        sources::Source::Http { url, .. } => url.path_segments()?.next_back().map(str::to_owned),
        sources::Source::Catalog { name, .. } => Some(format!("{name}.raw")),
        sources::Source::Oci { .. } => None,
    }
}

/// Whether the installed `existing` stops an install of its name: unless replacing was
/// asked for, except when its image is gone, which is reinstalled in place.
pub fn refuses(existing: &Extension, request: &InstallRequest) -> bool {
    !request.replace && existing.status != kairos_extensions_dbus::ExtensionStatus::ImageMissing
}

/// A staged image that passed every check and may be committed.
struct Verified {
    staged: Staged,
    name: ExtensionName,
    release: ReleaseFields,
    digest: Sha256Digest,
}

/// Where the images of one install came from, for their provenance records.
struct Origin<'a> {
    source: &'a str,
    /// The registry digest a tag resolved to.
    resolved_digest: Option<String>,
    /// The catalog entry it was installed from.
    catalog: Option<CatalogOrigin>,
    /// What an HTTP server said identifies the version downloaded.
    validators: Option<Validators>,
}

impl Engine {
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
        self.install_staged(staged, source, request, progress)
    }

    /// Installs a local image file named by `path`.
    pub fn install_file(&self, path: &Path, request: &InstallRequest, progress: &dyn Progress) -> Result<Installed> {
        // The release names the extension exactly: an installed one fails the install
        // before the copy. An image that cannot be read here fails later, checked in full.
        if !request.replace
            && let Ok((releases, _)) = trust::read_releases(path)
            && let Ok((name, _)) = releases.pick(request.name.as_ref(), None)
        {
            self.refuse_installed(&name, request)?;
        }
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
        if let Some(name) = early_name(source_file_name(source).as_deref(), request) {
            self.refuse_installed(&name, request)?;
        }
        match source {
            sources::Source::File(path) => Ok(vec![self.install_file(path, request, progress)?]),
            sources::Source::Http { url, pinned } => {
                self.check_now(request.now && !request.enable.is_empty())?;
                let request = with_pinned_digest(request, pinned.as_ref(), source)?;
                let mut staged = self.store.stage(self.config.max_image_size)?;
                progress.phase(Phase::Downloading);
                let validators = sources::http::download(url, &mut staged, progress)?;
                let validators = Some(validators).filter(|v| !v.is_empty());
                let origin = Origin { source: &source.display(), resolved_digest: None, catalog: None, validators };
                Ok(vec![self.install_staged_from(staged, &origin, &request, progress)?])
            }
            sources::Source::Oci { reference } => {
                self.install_oci(&source.display(), reference, request, None, progress)
            }
            sources::Source::Catalog { name, request: wanted } => {
                self.install_catalog(source, name, wanted, request, progress)
            }
        }
    }

    /// Installs from a registry; `shown` is the source as recorded, `catalog` the
    /// catalog entry that named `reference`, if one did.
    pub(super) fn install_oci(
        &self,
        shown: &str,
        reference: &sources::reference::ImageReference,
        request: &InstallRequest,
        catalog: Option<CatalogOrigin>,
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
        let mut verified = Vec::new();
        let mut available = Vec::new();
        let mut file_of: BTreeMap<ExtensionName, String> = BTreeMap::new();
        for image in pulled.images {
            check_pin(&image.staged, &request, progress)?;
            image.staged.flush()?;
            let (releases, proof) = trust::read_releases(image.staged.path())?;
            available.extend(releases.0.iter().map(|(name, _)| name.to_string()));
            if let Some(wanted) = &request.name
                && !releases.0.iter().any(|(name, _)| name == wanted)
            {
                tracing::info!(file = %image.file_name, wanted = %wanted, "skipping an image of the pull that is not the one asked for");
                continue;
            }
            let stem = image.file_name.trim_end_matches(".raw");
            let checked = self.verify(image.staged, &releases, &proof, &request, Some(stem), progress)?;
            if let Some(first) = file_of.insert(checked.name.clone(), image.file_name.clone()) {
                return Err(Error::InvalidImage(ImageError::Twice {
                    name: checked.name.to_string(),
                    files: [first, image.file_name],
                }));
            }
            verified.push(checked);
        }
        if verified.is_empty() {
            let wanted = request.name.as_ref().map(ToString::to_string).unwrap_or_default();
            return Err(Error::InvalidImage(ImageError::NameNotInImage { wanted, available }));
        }
        let resolved_digest = Some(pulled.index_digest.unwrap_or(pulled.manifest_digest));
        self.commit(verified, &Origin { source: shown, resolved_digest, catalog, validators: None }, &request, progress)
    }

    /// Fails with `AlreadyExists` when `name` is installed and replacing was not asked
    /// for, as the commit would; for installs that know their name before they read a byte.
    pub fn refuse_installed(&self, name: &ExtensionName, request: &InstallRequest) -> Result<()> {
        match self.find(name)? {
            Some(existing) if refuses(&existing, request) => Err(Error::AlreadyExists(name.to_string())),
            _ => Ok(()),
        }
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
        request: &InstallRequest,
        progress: &dyn Progress,
    ) -> Result<Installed> {
        self.install_staged_from(
            staged,
            &Origin { source, resolved_digest: None, catalog: None, validators: None },
            request,
            progress,
        )
    }

    fn install_staged_from(
        &self,
        staged: Staged,
        origin: &Origin<'_>,
        request: &InstallRequest,
        progress: &dyn Progress,
    ) -> Result<Installed> {
        self.check_now(request.now && !request.enable.is_empty())?;
        check_pin(&staged, request, progress)?;
        staged.flush()?;
        let (releases, proof) = trust::read_releases(staged.path())?;
        let verified = self.verify(staged, &releases, &proof, request, None, progress)?;
        let installed = self.commit(vec![verified], origin, request, progress)?;
        Ok(installed.into_iter().next().expect("commit reports one outcome per image it was given"))
    }

    /// Every check an image must pass before it may enter the store. `file_stem` picks
    /// among several releases the way systemd-sysext does, by the image's file name.
    fn verify(
        &self,
        staged: Staged,
        releases: &Releases,
        proof: &trust::Proof,
        request: &InstallRequest,
        file_stem: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Verified> {
        let digest = staged.digest();
        let (name, release) = releases.pick(request.name.as_ref(), file_stem)?;
        progress.named(name.as_str());
        let host = Host::load(self.layout().root())?;
        release::check_compatible(&release, &host)
            .map_err(|reason| Error::Incompatible { name: name.to_string(), reason })?;
        trust::admit_proven(&self.config.image_policy, proof, staged.path(), &self.certificate_dirs())
            .map_err(Error::PolicyRefused)?;
        Ok(Verified { staged, name, release, digest })
    }

    /// Commits verified images under one hold of the store lock, then enables them.
    /// Every clash is found before the first file moves, and every change is recorded
    /// as it is made: should a later step fail (the disk, a link, a merge that does not
    /// take), the store is put back as it was, replaced images included.
    fn commit(
        &self,
        verified: Vec<Verified>,
        origin: &Origin<'_>,
        request: &InstallRequest,
        progress: &dyn Progress,
    ) -> Result<Vec<Installed>> {
        if progress.canceled() {
            return Err(Error::Canceled);
        }
        progress.phase(Phase::Installing);
        let _lock = self.lock_for_change()?;
        let planned = self.plan_locked(verified, request)?;
        let names: Vec<&str> = planned.iter().map(|(image, _)| image.name.as_str()).collect();
        let mut change = Change::begin(&self.store, format!("install {}", names.join(", ")));
        let outcome = self.apply_locked(planned, origin, request, progress, &mut change);
        self.conclude(change, outcome)
    }

    /// Everything that would stop the commit half-way and can be known before it
    /// starts: a name already installed, something foreign where a link must go.
    fn plan_locked(
        &self,
        verified: Vec<Verified>,
        request: &InstallRequest,
    ) -> Result<Vec<(Verified, Option<Extension>)>> {
        let installed = self.list()?;
        let mut planned = Vec::with_capacity(verified.len());
        for image in verified {
            // An extension whose image is gone is reinstalled in place: nothing to replace.
            let existing = installed
                .iter()
                .find(|e| {
                    e.name == image.name.as_str() && e.status != kairos_extensions_dbus::ExtensionStatus::ImageMissing
                })
                .cloned();
            if existing.is_some() && !request.replace {
                return Err(Error::AlreadyExists(image.name.to_string()));
            }
            let link = image.name.image_file_name();
            // NAME.raw may hold another extension (its release names another) or be
            // something else entirely: that file is not this install's to replace.
            let ours = existing.as_ref().is_some_and(|e| e.file == link);
            if !ours && std::fs::symlink_metadata(self.store.path_of(&link)).is_ok() {
                return Err(store::StoreError::Exists(link).into());
            }
            for state in &request.enable {
                self.store.check_slot(Place::State(*state), &link)?;
            }
            if request.now {
                self.store.check_slot(Place::Runtime, &link)?;
            }
            planned.push((image, existing));
        }
        Ok(planned)
    }

    fn apply_locked(
        &self,
        planned: Vec<(Verified, Option<Extension>)>,
        origin: &Origin<'_>,
        request: &InstallRequest,
        progress: &dyn Progress,
        change: &mut Change<'_>,
    ) -> Result<Vec<Installed>> {
        let mut installed = Vec::with_capacity(planned.len());
        for (image, existing) in planned {
            if request.update
                && let Some(old) = &existing
            {
                self.keep_previous_locked(&image.name, &old.file, change)?;
            }
            installed.push(self.store_locked(image, existing, origin, change)?);
        }
        self.enable_installed_locked(&mut installed, request, progress, change)?;
        Ok(installed)
    }

    /// Moves one verified image into the store and writes its provenance record. A file
    /// it replaces is kept until the install is over.
    fn store_locked(
        &self,
        image: Verified,
        existing: Option<Extension>,
        origin: &Origin<'_>,
        change: &mut Change<'_>,
    ) -> Result<Installed> {
        let Verified { staged, name, release, digest } = image;
        let file = name.image_file_name();
        let size = staged.size();
        let replaced = existing.is_some();
        let same_file = existing.as_ref().is_some_and(|old| old.file == file);
        change.place(staged, &file, same_file)?;
        if let Some(old) = existing.filter(|old| old.file != file) {
            self.migrate_locked(&old, &name, &file, change)?;
        }
        let mtime_ns = std::fs::symlink_metadata(self.store.path_of(&file))
            .map(|m| FileKey::of(&m).mtime_ns())
            .map_err(|source| store::StoreError::Io { context: format!("inspecting {file}"), source })?;
        change.write_record(&Provenance {
            name: name.to_string(),
            file: file.clone(),
            source: origin.source.to_owned(),
            resolved_digest: origin.resolved_digest.clone(),
            catalog: origin.catalog.clone(),
            validators: origin.validators.clone(),
            digest: digest.to_string(),
            size,
            mtime_ns,
            installed_time_us: now_us(),
            release,
        })?;
        tracing::info!(extension = %name, source = origin.source, digest = %digest, size, replaced, "installed extension");
        Ok(Installed { name, file, digest: digest.to_string(), size, replaced, enabled: Vec::new() })
    }

    /// Enables every installed image for the requested boot states and, with `now`,
    /// activates them all with one refresh.
    fn enable_installed_locked(
        &self,
        installed: &mut [Installed],
        request: &InstallRequest,
        progress: &dyn Progress,
        change: &mut Change<'_>,
    ) -> Result<()> {
        let merge_again = request.update && request.now;
        if request.enable.is_empty() && !merge_again {
            return Ok(());
        }
        progress.phase(Phase::Enabling);
        let current = self.boot_state();
        let mut activate = false;
        let mut exts = Vec::with_capacity(installed.len());
        for done in installed.iter_mut() {
            // Read once: each read lists the whole store.
            let mut ext = self.get(&done.name)?;
            for state in &request.enable {
                if self.enable_in(change, &ext, *state)? {
                    done.enabled.push(*state);
                    ext.enabled.push(*state);
                }
                activate |= request.now && boot::concerns(*state, current);
            }
            // Merged now under this name: the old image until the refresh.
            activate |= merge_again && ext.merged;
            exts.push(ext);
        }
        if activate {
            progress.phase(Phase::Refreshing);
            let replaced: Vec<&str> = installed.iter().filter(|i| i.replaced).map(|i| i.name.as_str()).collect();
            self.activate_in(change, &exts, &replaced)?;
        }
        Ok(())
    }

    /// Moves the enablement of a replaced file that had another name (a kairos-agent
    /// `k3s.sysext.raw`, say) to the new `<NAME>.raw`, and takes the old file away.
    fn migrate_locked(&self, old: &Extension, name: &ExtensionName, file: &str, change: &mut Change<'_>) -> Result<()> {
        let link = name.image_file_name();
        for state in &old.enabled {
            change.link(Place::State(*state), &link, file)?;
            change.unlink(Place::State(*state), &old.file)?;
        }
        if !change.unlink(Place::Runtime, &old.file)?.is_empty() {
            change.link(Place::Runtime, &link, file)?;
        }
        if let Some(entry) = self.store.entries()?.into_iter().find(|e| e.file_name == old.file) {
            change.take_away(&entry)?;
        }
        Ok(())
    }
}

/// The first check of a staged image, before anything reads inside it: the bytes are
/// the ones the caller pinned, if it pinned any.
fn check_pin(staged: &Staged, request: &InstallRequest, progress: &dyn Progress) -> Result<()> {
    progress.phase(Phase::Verifying);
    let digest = staged.digest();
    match &request.digest {
        Some(expected) if *expected != digest => {
            Err(Error::DigestMismatch { expected: expected.to_string(), actual: digest.to_string() })
        }
        _ => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::Config;
    use crate::engine::progress::Silent;
    use crate::engine::sysext::{RefreshRun, Refresher, SysextError};

    #[test]
    fn the_name_is_known_early_from_the_name_option_or_a_file_called_name_raw() {
        let parse = |text: &str| sources::Source::parse(text).expect("a source");
        let plain = InstallRequest::default();
        let named = InstallRequest { name: Some("k3s".parse().expect("name")), ..InstallRequest::default() };
        let early = |text: &str, request: &InstallRequest| {
            early_name(source_file_name(&parse(text)).as_deref(), request).map(|n| n.to_string())
        };
        assert_eq!(early("https://example.com/dl/k3s.raw?sig=1", &plain).as_deref(), Some("k3s"));
        assert_eq!(early("/srv/images/tools.raw", &plain).as_deref(), Some("tools"));
        assert_eq!(early("catalog:k3s@^1.32", &plain).as_deref(), Some("k3s"), "a catalog entry names it");
        assert_eq!(early("https://example.com/dl/k3s.img", &plain), None);
        assert_eq!(early("https://example.com/", &plain), None);
        assert_eq!(early("oci://registry.example/k3s:v1", &plain), None);
        assert_eq!(early("oci://registry.example/bundle:v1", &named).as_deref(), Some("k3s"));
        assert_eq!(early("https://example.com/other.raw", &named).as_deref(), Some("k3s"), "--name wins");
        assert_eq!(early_name(Some("..raw"), &plain), None, "not a valid name");
    }

    /// Committing never refreshes unless asked to; this says so loudly if it does.
    struct NoRefresh;

    impl Refresher for NoRefresh {
        fn refresh(&self) -> Result<RefreshRun, SysextError> {
            panic!("no test here asks for a refresh")
        }
    }

    /// An engine on an empty temporary root.
    fn engine() -> (tempfile::TempDir, Engine) {
        let root = tempfile::tempdir().expect("root");
        let engine = Engine::open(root.path(), Config::default(), Box::new(NoRefresh)).expect("engine");
        (root, engine)
    }

    fn verified(engine: &Engine, name: &str) -> Verified {
        let mut staged = engine.stage().expect("staging");
        staged.copy_from(name.as_bytes(), None, &Silent).expect("stage bytes");
        let digest = staged.digest();
        let name = ExtensionName::new(name).expect("a valid name");
        Verified { staged, name, release: ReleaseFields::new(), digest }
    }

    #[test]
    fn a_failed_commit_takes_back_the_images_the_install_added() {
        let (_root, engine) = engine();
        let store = engine.layout().store();
        // The second image's record cannot be written: the install fails after the first
        // image was placed.
        std::fs::create_dir_all(engine.layout().meta_file(&ExtensionName::new("second").expect("name")))
            .expect("obstacle");
        let images = vec![verified(&engine, "first"), verified(&engine, "second")];
        let origin = Origin { source: "test", resolved_digest: None, catalog: None, validators: None };
        let outcome = engine.commit(images, &origin, &InstallRequest::default(), &Silent);
        assert!(outcome.is_err(), "the second commit must fail");
        assert!(!store.join("first.raw").exists(), "the first image must be taken out again");
        assert!(!store.join("second.raw").exists(), "and the second");
        assert!(!engine.layout().meta_file(&ExtensionName::new("first").expect("name")).exists());
        let staging = std::fs::read_dir(engine.layout().tmp_dir()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(staging, 0, "nothing is left staged");
        assert!(!store.join(super::super::intent::INTENT_FILE).exists(), "the change is over");
    }

    #[test]
    fn a_store_file_that_holds_something_else_is_never_replaced_or_deleted() {
        for replace in [false, true] {
            let (_root, engine) = engine();
            let store = engine.layout().store();
            let origin = Origin { source: "test", resolved_digest: None, catalog: None, validators: None };
            // other.raw holds the extension "first" (as after a rename by hand, its record
            // moved along), and second.raw is a directory: neither file is an install
            // of the name it carries.
            engine
                .commit(vec![verified(&engine, "first")], &origin, &InstallRequest::default(), &Silent)
                .expect("first install");
            let record_of = |name: &str| engine.layout().meta_file(&ExtensionName::new(name).expect("name"));
            let mut record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(record_of("first")).expect("record")).expect("json");
            record["file"] = "other.raw".into();
            std::fs::write(record_of("other"), record.to_string()).expect("moved record");
            std::fs::remove_file(record_of("first")).expect("old record");
            std::fs::rename(store.join("first.raw"), store.join("other.raw")).expect("rename");
            let listed = engine.list().expect("list");
            assert_eq!(
                listed.iter().map(|e| (e.name.as_str(), e.file.as_str())).collect::<Vec<_>>(),
                [("first", "other.raw")]
            );
            std::fs::create_dir(store.join("second.raw")).expect("obstacle");
            let held = std::fs::read(store.join("other.raw")).expect("image");
            let request = InstallRequest { replace, ..InstallRequest::default() };
            for (name, file) in [("other", "other.raw"), ("second", "second.raw")] {
                let outcome = engine.commit(vec![verified(&engine, name)], &origin, &request, &Silent);
                assert!(
                    matches!(&outcome, Err(Error::Store(store::StoreError::Exists(f))) if f == file),
                    "replace={replace}: {:?}",
                    outcome.err()
                );
            }
            assert_eq!(std::fs::read(store.join("other.raw")).ok(), Some(held), "replace={replace}");
            assert!(store.join("second.raw").is_dir(), "replace={replace}");
            assert!(!store.join(super::super::intent::INTENT_FILE).exists(), "replace={replace}");
        }
    }

    #[test]
    fn a_failure_after_a_replacement_puts_the_old_image_and_record_back() {
        let (_root, engine) = engine();
        let origin = Origin { source: "test", resolved_digest: None, catalog: None, validators: None };
        let request = InstallRequest { replace: true, ..InstallRequest::default() };
        engine.commit(vec![verified(&engine, "first")], &origin, &request, &Silent).expect("first install");
        let store = engine.layout().store();
        let record = engine.layout().meta_file(&ExtensionName::new("first").expect("name"));
        let (image_before, record_before) = (std::fs::read(store.join("first.raw")), std::fs::read(&record));

        // The second image's record cannot be written: the install fails after the
        // first image was already replaced.
        std::fs::create_dir_all(engine.layout().meta_file(&ExtensionName::new("second").expect("name")))
            .expect("obstacle");
        let mut replacement = verified(&engine, "first");
        replacement.staged.write_chunk(b" and newer").expect("different bytes");
        let outcome = engine.commit(vec![replacement, verified(&engine, "second")], &origin, &request, &Silent);
        assert!(outcome.is_err(), "the second record must fail");
        assert_eq!(std::fs::read(store.join("first.raw")).ok(), image_before.ok(), "the old image is back");
        assert_eq!(std::fs::read(&record).ok(), record_before.ok(), "the old record is back");
        assert!(!store.join("second.raw").exists());
        let staging = std::fs::read_dir(engine.layout().tmp_dir()).map(|d| d.count()).unwrap_or(0);
        assert_eq!(staging, 0, "nothing is left staged or kept aside");
    }

    #[test]
    fn something_foreign_where_a_link_goes_stops_the_install_before_it_starts() {
        let (_root, engine) = engine();
        let store = engine.layout().store();
        std::fs::write(store.join("common/first.raw"), "someone's file").expect("obstacle");
        let request = InstallRequest { enable: vec![BootState::Common], ..InstallRequest::default() };
        let origin = Origin { source: "test", resolved_digest: None, catalog: None, validators: None };
        let outcome = engine.commit(vec![verified(&engine, "first")], &origin, &request, &Silent);
        assert!(matches!(outcome, Err(Error::Store(store::StoreError::Foreign { .. }))), "{:?}", outcome.err());
        assert!(!store.join("first.raw").exists(), "nothing is placed");
    }
}
