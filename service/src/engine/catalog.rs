//! Turning store entries into extensions: a name, a release, a digest, a verdict and a
//! status.
//!
//! Images the service installed have a provenance record that answers all of this
//! cheaply. Anything else (a file copied in by hand, a kairos-agent image) is opened
//! with systemd-dissect and hashed once; the answer is cached under the file's identity
//! ([`FileKey`]) so that repeated listings stay cheap and a replaced file is re-read.
//!
//! The status is what stands between an extension and the merge, found with a few
//! `stat` calls per extension: an image that is gone while its links or its record
//! remain (it stays listed, so that it can be seen and removed), a mask or another image
//! that systemd-sysext finds first ([`discovery`]), or the image's own verdict. Whether
//! the image policy refuses an image is only known once the image has been verified,
//! which reads all of it: [`verify`] does that for `describe`, never for a listing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use kairos_extensions_dbus::{BootState, ExtensionName, ExtensionStatus};
use serde::{Deserialize, Serialize};

use super::digest::Sha256Digest;
use super::discovery::{self, Obstruction};
use super::image::{self, Releases};
use super::layout::{self, Layout};
use super::meta::{self, Provenance};
use super::policy::ImagePolicy;
use super::release::{self, Host, ReleaseFields};
use super::store::{Entry, EntryKind, FileKey, Link, Store, StoreError};
use super::trust;

/// Everything known about one extension; also its JSON form (`list --json`, `Describe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// The name from its extension-release file.
    pub name: String,
    /// `SYSEXT_VERSION_ID` or `VERSION_ID`, or empty.
    pub version: String,
    /// Boot states it is enabled for.
    pub enabled: Vec<BootState>,
    /// Whether it is merged into the running system now.
    pub merged: bool,
    /// Where it was installed from; empty when someone else put it in the store.
    pub source: String,
    /// `sha256:…` of the stored image; empty for directories.
    pub digest: String,
    /// Size of the stored image in bytes.
    pub size: u64,
    /// Install time (or file time for foreign files), µs since the epoch.
    pub installed_time: u64,
    /// Whether it can merge on this system.
    pub compatible: bool,
    /// Why not, when it cannot.
    pub incompatible_reason: String,
    /// What stops it from merging, if anything.
    pub status: ExtensionStatus,
    /// Why, in one sentence; empty when `ok`.
    #[serde(default)]
    pub status_reason: String,
    /// For a registry install, the digest its tag resolved to; empty otherwise.
    #[serde(default)]
    pub resolved_digest: String,
    /// The file (or directory) name in the store.
    pub file: String,
    /// Image or directory.
    pub kind: EntryKind,
    /// The full extension-release.
    pub release: ReleaseFields,
    /// How the image is protected (`unprotected`, `verity`, `signed by ...`), when it
    /// was verified; listing does not verify, describing does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<String>,
}

/// What was learned by opening a file, cached by its identity.
#[derive(Debug, Clone)]
pub struct Probe {
    releases: Result<Releases, String>,
    digest: Option<String>,
}

/// What was learned by reading files, by their identity, shared by all listings of one
/// engine: probes, and the image policy's verdicts [`verify`] reached, so that a listing
/// can tell `refused` once an image was verified, without reading it again.
#[derive(Debug, Default)]
pub struct ProbeCache {
    probes: Mutex<HashMap<FileKey, Probe>>,
    /// By file identity and the policy the verdict was reached under.
    verdicts: Mutex<HashMap<(FileKey, String), Verdict>>,
}

/// What verifying an image found: how it is protected, and why the policy refuses it.
#[derive(Debug, Clone)]
struct Verdict {
    protection: String,
    refusal: Option<String>,
}

impl ProbeCache {
    fn get_or_probe(&self, store: &Store, entry: &Entry) -> Probe {
        let key = FileKey::of(&entry.meta);
        if let Some(hit) = self.probes.lock().ok().and_then(|cache| cache.get(&key).cloned()) {
            return hit;
        }
        let probe = probe(store, entry);
        if let Ok(mut cache) = self.probes.lock() {
            cache.insert(key, probe.clone());
        }
        probe
    }

    /// Why the image policy refuses the file with `key`, if it was verified and refused.
    /// Why the image policy refuses the file with `key`, if a verification under any
    /// policy found a refusal (an engine has one policy; tests switch).
    fn refusal(&self, key: &FileKey) -> Option<String> {
        let verdicts = self.verdicts.lock().ok()?;
        verdicts.iter().find(|((k, _), v)| k == key && v.refusal.is_some()).and_then(|(_, v)| v.refusal.clone())
    }

    fn verdict(&self, key: &FileKey, policy: &ImagePolicy) -> Option<Verdict> {
        self.verdicts.lock().ok().and_then(|verdicts| verdicts.get(&(*key, policy.to_string())).cloned())
    }

    fn remember_verdict(&self, key: FileKey, policy: &ImagePolicy, verdict: Verdict) {
        if let Ok(mut verdicts) = self.verdicts.lock() {
            verdicts.insert((key, policy.to_string()), verdict);
        }
    }
}

fn probe(store: &Store, entry: &Entry) -> Probe {
    let path = store.path_of(&entry.file_name);
    match entry.kind {
        EntryKind::Image => {
            let releases = trust::read_releases(&path).map(|(releases, _)| releases).map_err(|e| e.to_string());
            let digest = store
                .open_file(&entry.file_name)
                .ok()
                .and_then(|file| Sha256Digest::of_reader(file).ok())
                .map(|d| d.to_string());
            Probe { releases, digest }
        }
        EntryKind::Directory => {
            Probe { releases: image::read_directory(&path).map_err(|e| e.to_string()), digest: None }
        }
    }
}

/// Lists every extension in the store, and those whose image is gone while their
/// links or their record remain.
pub fn list(store: &Store, host: &Result<Host, String>, probes: &ProbeCache) -> Result<Vec<Extension>, super::Error> {
    let entries = entries_if_any(store)?;
    let enablement = store.enablement()?;
    let runtime = store.runtime_links()?;
    let merged = super::sysext::merged(store.layout().root())?;
    let described = in_parallel(&entries, |entry| {
        let mut ext = describe(store, entry, host, &enablement, &merged, probes)?;
        if let Some(reason) = probes.refusal(&FileKey::of(&entry.meta)) {
            raise(&mut ext, ExtensionStatus::Refused, reason);
        }
        Some(ext)
    });
    let mut by_name: BTreeMap<String, Extension> = BTreeMap::new();
    for ext in described.into_iter().flatten() {
        match by_name.get(&ext.name) {
            // The file the service itself would write for this name wins over any
            // other file that carries the same release (say, a kairos-agent copy).
            Some(existing) if existing.file == format!("{}.raw", existing.name) => {
                tracing::warn!(name = %ext.name, kept = %existing.file, ignored = %ext.file, "two store files carry the same extension");
            }
            _ => {
                by_name.insert(ext.name.clone(), ext);
            }
        }
    }
    let present: BTreeSet<&str> = entries.iter().map(|e| e.file_name.as_str()).collect();
    for ext in missing_images(store, &present, &by_name, &enablement, &runtime, &merged)? {
        if by_name.contains_key(&ext.name) {
            tracing::debug!(name = %ext.name, file = %ext.file, "links to a missing file, but the name is installed");
            continue;
        }
        by_name.insert(ext.name.clone(), ext);
    }
    let searched_first = any_searched_first(store.layout());
    for ext in by_name.values_mut() {
        obstruct(store.layout(), &runtime, ext, searched_first);
    }
    Ok(by_name.into_values().collect())
}

/// The extension called `name`, found without walking the store, when its image is
/// `NAME.raw` and carries that name: the file [`list`] prefers over any other carrying
/// the name, so the answer is the one `list` would give. `None` when the shortcut does
/// not apply (no such image, a directory, an image carrying another name): then only
/// a listing can tell, and the caller lists. A change to one extension of a store of
/// ten thousand costs a few `stat` calls this way instead of ten thousand.
pub fn one(
    store: &Store,
    host: &Result<Host, String>,
    probes: &ProbeCache,
    name: &ExtensionName,
) -> Result<Option<Extension>, super::Error> {
    let Some(entry) = store.entry(&format!("{name}.raw"))? else { return Ok(None) };
    if entry.kind != EntryKind::Image {
        return Ok(None);
    }
    let enablement = store.enablement()?;
    let merged = super::sysext::merged(store.layout().root())?;
    let Some(mut ext) = describe(store, &entry, host, &enablement, &merged, probes) else { return Ok(None) };
    if ext.name != name.as_str() {
        return Ok(None);
    }
    if let Some(reason) = probes.refusal(&FileKey::of(&entry.meta)) {
        raise(&mut ext, ExtensionStatus::Refused, reason);
    }
    let runtime = store.runtime_links()?;
    obstruct(store.layout(), &runtime, &mut ext, any_searched_first(store.layout()));
    Ok(Some(ext))
}

/// Whether any directory systemd-sysext reads before ours exists. With none there (the
/// usual case: no /etc/extensions), nothing can stand in front of any extension, and
/// looking for each name there would cost two failed lookups per extension.
fn any_searched_first(layout: &Layout) -> bool {
    discovery::read_before_ours(layout)
        .iter()
        .any(|dir| !matches!(std::fs::metadata(dir), Err(e) if e.kind() == io::ErrorKind::NotFound))
}

/// Stores smaller than this are described on the calling thread alone.
const PARALLEL_FROM: usize = 256;
/// At most this many threads describe one store.
const MAX_THREADS: usize = 4;

/// `describe` of every item, in order. A large store is split among a few threads:
/// describing is mostly waiting for `stat` and reading provenance records, and the
/// service lists the whole store before it takes its name.
fn in_parallel<T: Sync, R: Send>(items: &[T], describe: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS);
    if threads < 2 || items.len() < PARALLEL_FROM {
        return items.iter().map(&describe).collect();
    }
    let describe = &describe;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|chunk| scope.spawn(move || chunk.iter().map(describe).collect::<Vec<R>>()))
            .collect();
        // A panic in a thread goes on in the caller, as it would have without threads.
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

/// The store's entries; none when the store does not exist (a bare root is read, not
/// prepared).
fn entries_if_any(store: &Store) -> Result<Vec<Entry>, StoreError> {
    let dir = store.layout().store();
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        _ => store.entries(),
    }
}

/// Makes `status` the extension's status, with `reason`, if it outranks the current one.
fn raise(ext: &mut Extension, status: ExtensionStatus, reason: String) {
    if status != ext.status && ext.status.prevailing(status) == status {
        ext.status = status;
        ext.status_reason = reason;
    }
}

/// Records what systemd-sysext finds before this extension's activation link, or in
/// its place; `searched_first` says whether any directory it reads first exists.
fn obstruct(layout: &Layout, runtime: &[Link], ext: &mut Extension, searched_first: bool) {
    if let Some(found) = searched_first.then(|| discovery::obstruction(layout, &ext.name)).flatten() {
        let status = match found {
            Obstruction::Masked { .. } => ExtensionStatus::Masked,
            Obstruction::Shadowed { .. } => ExtensionStatus::Shadowed,
        };
        raise(ext, status, found.reason());
        return;
    }
    let link = format!("{}.raw", ext.name);
    let foreign = runtime.iter().any(|l| l.name == link && l.store_file.is_none());
    if foreign && discovery::is_image_file(layout, &layout.runtime_system().join(&link)) {
        let path = layout::join_file_name(&layout.runtime(), &link);
        let reason =
            format!("systemd-sysext merges {} in its place, which is not an image in the store", path.display());
        raise(ext, ExtensionStatus::Shadowed, reason);
    }
}

/// What still names a store file that is gone.
#[derive(Debug, Default)]
struct Leftovers {
    states: BTreeSet<BootState>,
    link_names: BTreeSet<String>,
    activated: bool,
    record: Option<Provenance>,
}

/// Extensions whose image was deleted behind the service's back while boot-state links,
/// an activation link or a provenance record still name it. Listing them keeps them in
/// sight, and `remove` clears what is left.
fn missing_images(
    store: &Store,
    present: &BTreeSet<&str>,
    listed: &BTreeMap<String, Extension>,
    enablement: &BTreeMap<String, BTreeSet<BootState>>,
    runtime: &[Link],
    merged: &BTreeSet<String>,
) -> Result<Vec<Extension>, StoreError> {
    let layout = store.layout();
    let mut leftovers: BTreeMap<String, Leftovers> = BTreeMap::new();
    for (file, states) in enablement.iter().filter(|(file, _)| !present.contains(file.as_str())) {
        leftovers.entry(file.clone()).or_default().states = states.clone();
    }
    if !leftovers.is_empty() {
        for state in BootState::ALL {
            for link in store.state_links(state)? {
                if let Some(found) = link.store_file.as_ref().and_then(|file| leftovers.get_mut(file)) {
                    found.link_names.insert(link.name);
                }
            }
        }
    }
    for link in runtime {
        if let Some(file) = link.store_file.as_ref().filter(|file| !present.contains(file.as_str())) {
            let found = leftovers.entry(file.clone()).or_default();
            found.activated = true;
            found.link_names.insert(link.name.clone());
        }
    }
    let meta_dir = layout.meta_dir();
    let names = meta::names(&meta_dir)
        .map_err(|source| StoreError::Io { context: format!("reading {}", meta_dir.display()), source })?;
    for name in names.into_iter().filter(|name| !listed.contains_key(name)) {
        let Ok(valid) = ExtensionName::new(&name) else { continue };
        let Some(record) = meta::read(&layout.meta_file(&valid)) else { continue };
        if record.name == name && !present.contains(record.file.as_str()) {
            let file = record.file.clone();
            leftovers.entry(file).or_default().record = Some(record);
        }
    }
    Ok(leftovers.into_iter().filter_map(|(file, left)| missing(layout, file, left, merged)).collect())
}

/// The extension a missing store file was, from what still names it.
fn missing(layout: &Layout, file: String, left: Leftovers, merged: &BTreeSet<String>) -> Option<Extension> {
    let stem = |n: &str| n.strip_suffix(".raw").unwrap_or(n).to_owned();
    let name = match (&left.record, left.link_names.iter().next()) {
        (Some(record), _) => record.name.clone(),
        (None, Some(link)) => stem(link),
        (None, None) => stem(&file),
    };
    if ExtensionName::new(&name).is_err() {
        tracing::debug!(file = %file, "links to a missing file carry no usable extension name; ignoring them");
        return None;
    }
    let mut remains = Vec::new();
    let mut plural = false;
    if !left.states.is_empty() {
        let states: Vec<String> = left.states.iter().map(|s| s.as_str().to_owned()).collect();
        plural = states.len() > 1;
        remains.push(format!("its {} link{}", and_list(&states), if plural { "s" } else { "" }));
    }
    if left.activated {
        remains.push(format!("its activation link in {}", layout.runtime().display()));
    }
    if left.record.is_some() {
        remains.push("its provenance record".to_owned());
    }
    plural |= remains.len() > 1;
    let reason = format!(
        "its image {} is gone, but {} still {}",
        layout::join_file_name(&layout.store(), &file).display(),
        and_list(&remains),
        if plural { "remain" } else { "remains" }
    );
    let record = left.record;
    let release = record.as_ref().map(|r| r.release.clone()).unwrap_or_default();
    Some(Extension {
        version: release::display_version(&release).unwrap_or("").to_owned(),
        enabled: left.states.into_iter().collect(),
        merged: merged.contains(&name),
        source: record.as_ref().map(|r| r.source.clone()).unwrap_or_default(),
        digest: record.as_ref().map(|r| r.digest.clone()).unwrap_or_default(),
        size: record.as_ref().map(|r| r.size).unwrap_or(0),
        installed_time: record.as_ref().map(|r| r.installed_time_us).unwrap_or(0),
        compatible: false,
        incompatible_reason: reason.clone(),
        status: ExtensionStatus::ImageMissing,
        status_reason: reason,
        resolved_digest: record.as_ref().and_then(|r| r.resolved_digest.clone()).unwrap_or_default(),
        kind: if file.ends_with(".raw") { EntryKind::Image } else { EntryKind::Directory },
        file,
        name,
        release,
        protection: None,
    })
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn describe(
    store: &Store,
    entry: &Entry,
    host: &Result<Host, String>,
    enablement: &BTreeMap<String, BTreeSet<BootState>>,
    merged: &BTreeSet<String>,
    probes: &ProbeCache,
) -> Option<Extension> {
    let key = FileKey::of(&entry.meta);
    let (name, release, digest, provenance) = match provenance_for(store, entry, key) {
        Some(p) => (p.name.clone(), p.release.clone(), p.digest.clone(), Some(p)),
        None => {
            let probe = probes.get_or_probe(store, entry);
            let (name, release) = match &probe.releases {
                Ok(releases) => match releases.pick(None, Some(entry.stem())) {
                    Ok((name, release)) => (name.to_string(), Ok(release)),
                    Err(e) => (entry.stem().to_owned(), Err(e.to_string())),
                },
                Err(e) => (entry.stem().to_owned(), Err(e.clone())),
            };
            if ExtensionName::new(&name).is_err() {
                tracing::warn!(file = %entry.file_name, "store file has no usable extension name; ignoring it");
                return None;
            }
            let (release, problem) = match release {
                Ok(release) => (release, None),
                Err(problem) => (ReleaseFields::new(), Some(problem)),
            };
            return Some(assemble(
                entry,
                name,
                release,
                probe.digest.unwrap_or_default(),
                None,
                problem,
                host,
                enablement,
                merged,
            ));
        }
    };
    Some(assemble(entry, name, release, digest, provenance, None, host, enablement, merged))
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    entry: &Entry,
    name: String,
    release: ReleaseFields,
    digest: String,
    provenance: Option<Provenance>,
    problem: Option<String>,
    host: &Result<Host, String>,
    enablement: &BTreeMap<String, BTreeSet<BootState>>,
    merged: &BTreeSet<String>,
) -> Extension {
    // An image that cannot be read, or whose release file is missing or misnamed, is
    // invalid whatever the host; only a readable release is compared with the host.
    let verdict = match (problem, host) {
        (Some(problem), _) => Err((ExtensionStatus::Invalid, problem)),
        (None, Err(host_problem)) => Err((ExtensionStatus::Incompatible, host_problem.clone())),
        (None, Ok(host)) => {
            release::check_compatible(&release, host).map_err(|e| (ExtensionStatus::Incompatible, e.to_string()))
        }
    };
    let (status, reason) = match &verdict {
        Ok(()) => (ExtensionStatus::Ok, String::new()),
        Err((status, reason)) => (*status, reason.clone()),
    };
    let file_time_us = entry
        .meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Extension {
        version: release::display_version(&release).unwrap_or("").to_owned(),
        enabled: enablement.get(&entry.file_name).map(|s| s.iter().copied().collect()).unwrap_or_default(),
        merged: merged.contains(&name),
        source: provenance.as_ref().map(|p| p.source.clone()).unwrap_or_default(),
        size: if entry.kind == EntryKind::Image { entry.meta.len() } else { 0 },
        installed_time: provenance.as_ref().map(|p| p.installed_time_us).unwrap_or(file_time_us),
        compatible: verdict.is_ok(),
        incompatible_reason: reason.clone(),
        status,
        status_reason: reason,
        resolved_digest: provenance.as_ref().and_then(|p| p.resolved_digest.clone()).unwrap_or_default(),
        file: entry.file_name.clone(),
        kind: entry.kind,
        name,
        digest,
        release,
        protection: None,
    }
}

/// Verifies the image of `ext` (reading all of it) to say how it is protected, and
/// marks it `refused` when `policy` would not admit it: the verdict install and boot
/// activation reach with [`trust::admit`], short of systemd's own second opinion. The
/// verdict is remembered for this file's identity ([`FileKey`]), so later listings say
/// `refused` too, and a second description reads nothing.
pub fn verify(
    ext: &mut Extension,
    image: &Path,
    policy: &ImagePolicy,
    certificate_dirs: &[PathBuf],
    probes: &ProbeCache,
) {
    if ext.kind != EntryKind::Image || ext.status == ExtensionStatus::ImageMissing {
        return;
    }
    let key = std::fs::symlink_metadata(image).ok().map(|meta| FileKey::of(&meta));
    let verdict = match key.and_then(|key| probes.verdict(&key, policy)) {
        Some(known) => known,
        None => {
            let verdict = verdict_of(image, policy, certificate_dirs);
            if let Some(key) = key {
                probes.remember_verdict(key, policy, verdict.clone());
            }
            verdict
        }
    };
    ext.protection = Some(verdict.protection);
    if let Some(reason) = verdict.refusal {
        raise(ext, ExtensionStatus::Refused, reason);
    }
}

/// Reads the whole image once: one proof serves both the description and the verdict.
fn verdict_of(image: &Path, policy: &ImagePolicy, certificate_dirs: &[PathBuf]) -> Verdict {
    match trust::prove(image) {
        Ok(proof) => {
            let described = trust::TrustStore::load(certificate_dirs).and_then(|store| proof.protection(&store));
            let refusal = trust::admit_proven(policy, &proof, image, certificate_dirs).err();
            let protection = match described {
                Ok(protection) => protection.describe(),
                Err(e) => format!("refused: {}", super::full_message(&e)),
            };
            Verdict { protection, refusal }
        }
        // Install refuses an image whose verity does not hold under every policy.
        Err(e) => {
            let reason = super::full_message(&e);
            Verdict {
                protection: format!("refused: {reason}"),
                refusal: Some(format!("its verity data does not verify: {reason}")),
            }
        }
    }
}

/// The provenance record of an entry, if it has one that still describes this file.
fn provenance_for(store: &Store, entry: &Entry, key: FileKey) -> Option<Provenance> {
    let name = ExtensionName::new(entry.stem()).ok()?;
    let record = meta::read(&store.layout().meta_file(&name))?;
    let fresh = record.file == entry.file_name && record.size == entry.meta.len() && record.mtime_ns == key.mtime_ns();
    if !fresh {
        tracing::debug!(file = %entry.file_name, "provenance record is stale; reading the image itself");
    }
    fresh.then_some(record)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::engine::store::temp_store;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn host() -> Result<Host, String> {
        let os_release = ReleaseFields::from([("ID".into(), "debian".into()), ("VERSION_ID".into(), "12".into())]);
        Ok(Host { os_release, architecture: release::native_architecture().to_owned() })
    }

    /// A directory extension `name` in the store; without `release` it has the release
    /// directory but no release file.
    fn tree(store: &Store, name: &str, release: Option<&str>) -> io::Result<()> {
        let dir = store.path_of(name).join("usr/lib/extension-release.d");
        fs::create_dir_all(&dir)?;
        match release {
            Some(text) => fs::write(dir.join(format!("extension-release.{name}")), text),
            None => Ok(()),
        }
    }

    /// An image file `name`.raw with a provenance record that describes it, so listing
    /// it never opens it.
    fn recorded_image(store: &Store, name: &str) -> io::Result<()> {
        let file = format!("{name}.raw");
        fs::write(store.path_of(&file), b"not a file system, and never read by a listing")?;
        let meta = fs::symlink_metadata(store.path_of(&file))?;
        let record = Provenance {
            name: name.to_owned(),
            file,
            source: format!("oci://registry.example/{name}:v1"),
            resolved_digest: Some(format!("sha256:{}", "ab".repeat(32))),
            catalog: None,
            validators: None,
            digest: format!("sha256:{}", "cd".repeat(32)),
            size: meta.len(),
            mtime_ns: FileKey::of(&meta).mtime_ns(),
            installed_time_us: 7,
            release: ReleaseFields::from([("ID".into(), "_any".into()), ("SYSEXT_VERSION_ID".into(), "1.2".into())]),
        };
        meta::write(&store.layout().meta_dir(), &record)
    }

    fn by_name(list: Vec<Extension>) -> BTreeMap<String, Extension> {
        list.into_iter().map(|e| (e.name.clone(), e)).collect()
    }

    #[test]
    fn an_unreadable_release_is_invalid_and_a_foreign_one_incompatible() -> TestResult {
        let (_root, store) = temp_store();
        tree(&store, "good", Some("ID=_any\n"))?;
        tree(&store, "other", Some("ID=fedora\n"))?;
        tree(&store, "broken", None)?;
        let listed = by_name(list(&store, &host(), &ProbeCache::default())?);
        assert_eq!((listed["good"].status, listed["good"].status_reason.as_str()), (ExtensionStatus::Ok, ""));
        assert_eq!(listed["other"].status, ExtensionStatus::Incompatible);
        assert!(listed["other"].status_reason.contains("ID=\"fedora\""), "{:?}", listed["other"]);
        assert_eq!(listed["broken"].status, ExtensionStatus::Invalid);
        assert!(listed["broken"].status_reason.contains("extension-release"), "{:?}", listed["broken"]);
        assert!(!listed["broken"].compatible && !listed["other"].compatible && listed["good"].compatible);
        let json = serde_json::to_value(&listed["broken"])?;
        assert_eq!(json["status"], "invalid");
        Ok(())
    }

    #[test]
    fn a_mask_or_an_image_found_first_outranks_the_images_own_verdict() -> TestResult {
        let (root, store) = temp_store();
        tree(&store, "good", Some("ID=_any\n"))?;
        tree(&store, "other", Some("ID=fedora\n"))?;
        tree(&store, "third", Some("ID=_any\n"))?;
        let etc = root.path().join("etc/extensions");
        fs::create_dir_all(etc.join("good"))?;
        fs::write(etc.join("other.raw"), "someone else's image")?;
        fs::create_dir_all(root.path().join("run/extensions"))?;
        fs::write(root.path().join("run/extensions/third.raw"), "not a link into the store")?;
        let listed = by_name(list(&store, &host(), &ProbeCache::default())?);
        assert_eq!(listed["good"].status, ExtensionStatus::Masked);
        assert!(listed["good"].status_reason.contains(&etc.join("good").display().to_string()));
        assert_eq!(listed["other"].status, ExtensionStatus::Shadowed);
        assert!(listed["other"].status_reason.contains(&etc.join("other.raw").display().to_string()));
        assert!(!listed["other"].compatible, "the image's own verdict is still told");
        assert_eq!(listed["third"].status, ExtensionStatus::Shadowed);
        assert!(listed["third"].status_reason.contains("run/extensions/third.raw"), "{:?}", listed["third"]);
        Ok(())
    }

    #[test]
    fn one_extension_is_what_the_listing_says_or_left_to_it() -> TestResult {
        let (root, store) = temp_store();
        recorded_image(&store, "k3s")?;
        recorded_image(&store, "tools")?;
        store.link_state(BootState::Common, "k3s.raw", "k3s.raw")?;
        // A record naming another file: the shortcut reads the image, whose bytes are no
        // file system, so it is listed as invalid under its file's name, both ways.
        recorded_image(&store, "stale")?;
        fs::write(store.path_of("stale.raw"), b"rewritten by hand")?;
        tree(&store, "tree", Some("ID=_any\n"))?;
        let masks = root.path().join("etc/extensions");
        fs::create_dir_all(masks.join("tools"))?;
        let probes = ProbeCache::default();
        let listed = by_name(list(&store, &host(), &probes)?);
        for name in ["k3s", "tools", "stale"] {
            let found = one(&store, &host(), &probes, &ExtensionName::new(name)?)?;
            assert_eq!(found.as_ref(), Some(&listed[name]), "{name}");
        }
        assert_eq!(listed["tools"].status, ExtensionStatus::Masked, "the mask is seen by both");
        assert_eq!(listed["k3s"].enabled, [BootState::Common]);
        assert_eq!(one(&store, &host(), &probes, &ExtensionName::new("tree")?)?, None, "a directory is listed");
        assert_eq!(one(&store, &host(), &probes, &ExtensionName::new("absent")?)?, None);
        Ok(())
    }

    #[test]
    fn an_image_deleted_behind_our_back_stays_listed_with_its_links() -> TestResult {
        let (_root, store) = temp_store();
        recorded_image(&store, "k3s")?;
        store.link_state(BootState::Active, "k3s.raw", "k3s.raw")?;
        store.link_state(BootState::Common, "k3s.raw", "k3s.raw")?;
        // kairos-agent's way: a link named after a file that is not there, no record.
        store.link_state(BootState::Passive, "tools.sysext.raw", "tools.sysext.raw")?;
        let listed = by_name(list(&store, &host(), &ProbeCache::default())?);
        assert_eq!(listed["k3s"].status, ExtensionStatus::Ok);
        assert_eq!(listed["k3s"].resolved_digest, format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(listed["tools.sysext"].status, ExtensionStatus::ImageMissing);
        assert_eq!(listed["tools.sysext"].enabled, [BootState::Passive]);

        fs::remove_file(store.path_of("k3s.raw"))?;
        let listed = by_name(list(&store, &host(), &ProbeCache::default())?);
        let k3s = &listed["k3s"];
        assert_eq!(k3s.status, ExtensionStatus::ImageMissing);
        assert_eq!(k3s.enabled, [BootState::Active, BootState::Common]);
        assert_eq!((k3s.version.as_str(), k3s.file.as_str(), k3s.compatible), ("1.2", "k3s.raw", false));
        assert!(k3s.resolved_digest.starts_with("sha256:ab"), "the record is still told: {k3s:?}");
        let reason = &k3s.status_reason;
        assert!(reason.contains(&store.path_of("k3s.raw").display().to_string()), "{reason}");
        assert!(reason.contains("active and common links and its provenance record still remain"), "{reason}");

        for state in [BootState::Active, BootState::Common] {
            store.unlink_state(state, "k3s.raw")?;
        }
        let listed = by_name(list(&store, &host(), &ProbeCache::default())?);
        assert_eq!(listed["k3s"].status, ExtensionStatus::ImageMissing, "the record alone keeps it listed");
        assert!(listed["k3s"].status_reason.ends_with("its provenance record still remains"));
        fs::remove_file(store.layout().meta_dir().join("k3s.json"))?;
        assert!(!by_name(list(&store, &host(), &ProbeCache::default())?).contains_key("k3s"));
        Ok(())
    }

    #[test]
    fn verifying_finds_a_refusal_that_later_listings_remember() -> TestResult {
        let (_root, store) = temp_store();
        recorded_image(&store, "k3s")?;
        let probes = ProbeCache::default();
        let mut ext = by_name(list(&store, &host(), &probes)?).remove("k3s").ok_or("k3s is listed")?;
        assert_eq!(ext.status, ExtensionStatus::Ok, "listing does not verify");

        let mut permissive = ext.clone();
        verify(&mut permissive, &store.path_of("k3s.raw"), &ImagePolicy::Permissive, &[], &probes);
        assert_eq!((permissive.status, permissive.protection.as_deref()), (ExtensionStatus::Ok, Some("unprotected")));
        assert_eq!(by_name(list(&store, &host(), &probes)?)["k3s"].status, ExtensionStatus::Ok);

        verify(&mut ext, &store.path_of("k3s.raw"), &ImagePolicy::Strict, &[], &probes);
        assert_eq!(ext.status, ExtensionStatus::Refused);
        assert!(ext.status_reason.contains("strict") && ext.status_reason.contains("unprotected"), "{ext:?}");
        let listed = by_name(list(&store, &host(), &probes)?);
        assert_eq!(
            (listed["k3s"].status, &listed["k3s"].status_reason),
            (ExtensionStatus::Refused, &ext.status_reason)
        );

        // A new file is a new image: the verdict does not carry over.
        recorded_image(&store, "k3s")?;
        fs::write(store.path_of("k3s.raw"), b"another image of another size")?;
        let listed = by_name(list(&store, &host(), &probes)?);
        assert_ne!(listed["k3s"].status, ExtensionStatus::Refused);
        Ok(())
    }

    #[test]
    fn a_large_store_is_listed_whole_and_in_order() -> TestResult {
        let (root, store) = temp_store();
        let names: Vec<String> = (0..PARALLEL_FROM + 45).map(|i| format!("ext{i:04}")).collect();
        for name in &names {
            recorded_image(&store, name)?;
        }
        store.link_state(BootState::Common, "ext0300.raw", "ext0300.raw")?;
        let listed = list(&store, &host(), &ProbeCache::default())?;
        assert_eq!(listed.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), names);
        assert!(listed.iter().all(|e| e.status == ExtensionStatus::Ok && e.version == "1.2"), "{:?}", listed[0]);
        let enabled: Vec<&str> = listed.iter().filter(|e| !e.enabled.is_empty()).map(|e| e.name.as_str()).collect();
        assert_eq!(enabled, ["ext0300"]);

        // A mask is still found once the directory systemd-sysext reads first exists.
        fs::create_dir_all(root.path().join("etc/extensions/ext0007"))?;
        let listed = by_name(list(&store, &host(), &ProbeCache::default())?);
        assert_eq!(listed["ext0007"].status, ExtensionStatus::Masked);
        assert_eq!(listed["ext0008"].status, ExtensionStatus::Ok);
        Ok(())
    }

    #[test]
    fn a_bare_root_is_read_without_creating_anything() -> TestResult {
        let root = tempfile::tempdir()?;
        let config = crate::engine::Config::default();
        let refresher = crate::engine::Engine::exec_refresher(root.path(), &config);
        let engine = crate::engine::Engine::open_read_only(root.path(), config, refresher)?;
        assert!(engine.list()?.is_empty());
        let name = ExtensionName::new("k3s")?;
        assert!(matches!(engine.describe(&name), Err(crate::engine::Error::NotFound(_))));
        assert_eq!(fs::read_dir(root.path())?.count(), 0, "nothing may be created under the root");
        Ok(())
    }
}
