//! Turning store entries into extensions: a name, a release, a digest and a verdict.
//!
//! Images the service installed have a provenance record that answers all of this
//! cheaply. Anything else (a file copied in by hand, a kairos-agent image) is opened
//! with systemd-dissect and hashed once; the answer is cached under the file's identity
//! ([`FileKey`]) so that repeated listings stay cheap and a replaced file is re-read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use kairos_extensions_dbus::{BootState, ExtensionName};
use serde::{Deserialize, Serialize};

use super::digest::Sha256Digest;
use super::image::{self, Releases};
use super::meta::{self, Provenance};
use super::release::{self, Host, ReleaseFields};
use super::store::{Entry, EntryKind, FileKey, Store};
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

/// Cache of probes, shared by all listings of one engine.
#[derive(Debug, Default)]
pub struct ProbeCache(Mutex<HashMap<FileKey, Probe>>);

impl ProbeCache {
    fn get_or_probe(&self, store: &Store, entry: &Entry) -> Probe {
        let key = FileKey::of(&entry.meta);
        if let Some(hit) = self.0.lock().ok().and_then(|cache| cache.get(&key).cloned()) {
            return hit;
        }
        let probe = probe(store, entry);
        if let Ok(mut cache) = self.0.lock() {
            cache.insert(key, probe.clone());
        }
        probe
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

/// Lists every extension in the store.
pub fn list(store: &Store, host: &Result<Host, String>, probes: &ProbeCache) -> Result<Vec<Extension>, super::Error> {
    let entries = store.entries()?;
    let enablement = store.enablement()?;
    let merged = super::sysext::merged(store.layout().root())?;
    let mut by_name: BTreeMap<String, Extension> = BTreeMap::new();
    for entry in &entries {
        let Some(ext) = describe(store, entry, host, &enablement, &merged, probes) else { continue };
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
    Ok(by_name.into_values().collect())
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
    let verdict = match (problem, host) {
        (Some(problem), _) => Err(problem),
        (None, Err(host_problem)) => Err(host_problem.clone()),
        (None, Ok(host)) => release::check_compatible(&release, host).map_err(|e| e.to_string()),
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
        incompatible_reason: verdict.err().unwrap_or_default(),
        file: entry.file_name.clone(),
        kind: entry.kind,
        name,
        digest,
        release,
        protection: None,
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
