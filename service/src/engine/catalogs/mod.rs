//! Kairos catalogs: `releases.json` indexes that map an extension name and version to
//! a digest-pinned OCI image for each architecture, so `catalog:k3s@^1.32` installs
//! what `kairos-agent sysext install --catalog URL k3s --version '^1.32'` would.
//!
//! (Not to be confused with [`super::catalog`], the listing of the store.)
//!
//! Catalogs are searched in the configured order and the first one that has a name
//! answers for it, so a site can list its own index ahead of a public one and decide
//! what a name means. A catalog that cannot be read is skipped with a warning.
//!
//! The service keeps the catalogs it read in memory ([`Catalogs`]). Installing from a
//! catalog always reads them again (an install must not act on a stale index), while
//! `ListCatalog` reuses what is at most [`LIST_MAX_AGE`] old: it is open to every
//! caller, so it must not let anyone make the service download on every call, and a
//! listing a few minutes old is still useful.

pub mod constraint;
pub mod fetch;
pub mod format;
mod install;
pub mod resolve;
pub mod version;

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kairos_extensions_dbus::ExtensionName;
use serde::{Deserialize, Serialize};

use self::fetch::{FetchError, Location};
use self::format::{Catalog, Layer};
use self::resolve::ResolveError;

/// How old a cached read of the catalogs may be for `ListCatalog`.
pub const LIST_MAX_AGE: Duration = Duration::from_secs(300);

/// This machine's architecture as catalogs spell it (Go's `GOARCH`): the key under a
/// tag's `sysext` whose reference this machine installs.
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// What an install from a catalog asked for, recorded so updates follow the same rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "text", rename_all = "kebab-case")]
pub enum Request {
    /// A bare name: whatever the catalog calls the latest.
    Latest,
    /// One version (`1.32.1`, or a tag such as `stable`): a pin.
    Exact(String),
    /// A constraint (`^1.32`, `~1.32`, `>=1.30, <2`, `1.32`): the newest match.
    Constraint(String),
}

impl Request {
    /// The request `NAME@TEXT` makes, or `NAME` when `text` is `None`.
    pub fn from_text(text: Option<&str>) -> Result<Self, String> {
        let Some(text) = text else { return Ok(Self::Latest) };
        if text.is_empty() {
            return Err("the version after '@' is empty".into());
        }
        if text.len() > version::MAX_VERSION_TEXT || text.chars().any(char::is_control) {
            return Err(format!("a version is at most {} printable bytes", version::MAX_VERSION_TEXT));
        }
        if text.contains('@') {
            return Err("a version cannot contain '@'".into());
        }
        if constraint::is_complete_version(text) {
            return Ok(Self::Exact(text.to_owned()));
        }
        match constraint::Constraint::parse(text) {
            Ok(_) => Ok(Self::Constraint(text.to_owned())),
            Err(_) if constraint::is_plain(text) => Ok(Self::Exact(text.to_owned())),
            Err(e) => Err(format!("{text:?} is neither a version nor a constraint: {e}")),
        }
    }

    /// The version text, if any.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Latest => None,
            Self::Exact(text) | Self::Constraint(text) => Some(text),
        }
    }
}

impl fmt::Display for Request {
    /// `@TEXT`, or nothing for the latest: what follows the name in a source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => write!(f, "@{text}"),
            None => Ok(()),
        }
    }
}

/// Where a catalog install came from, kept in its provenance record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogOrigin {
    /// The catalog that answered (URL or path, without credentials).
    pub catalog: String,
    /// The entry's name.
    pub name: String,
    /// What was asked for.
    pub request: Request,
    /// The version installed.
    pub version: String,
    /// The digest-pinned reference installed.
    pub reference: String,
}

/// One image a catalog offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Available {
    /// Its version.
    pub version: String,
    /// Its digest-pinned OCI reference (without a scheme).
    pub reference: String,
}

/// One catalog that was read.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Where it was read from, as shown.
    pub location: String,
    /// What it says.
    pub catalog: Catalog,
}

/// One catalog that could not be read.
#[derive(Debug)]
pub struct Skipped {
    /// Where it was to be read from, as shown.
    pub location: String,
    /// Why it was skipped.
    pub error: FetchError,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "catalog {} skipped: {}", self.location, crate::engine::full_message(&self.error))
    }
}

/// One entry of the listing: what `ListCatalog` and `kairos-ext search` show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The extension's name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// The version a bare-name install picks on this machine; empty when none can be
    /// installed here.
    pub latest: String,
    /// Every version this machine can install, in the catalog's order.
    pub versions: Vec<String>,
    /// The catalog that answers for the name.
    pub catalog: String,
}

/// The catalogs as read at one moment, in the configured order.
#[derive(Debug, Default)]
pub struct CatalogSet {
    /// Those that were read.
    pub catalogs: Vec<Fetched>,
    /// Those that could not be.
    pub skipped: Vec<Skipped>,
}

impl CatalogSet {
    /// Reads every catalog at `locations` (shown as their first element), logging each
    /// one skipped and each entry of a catalog that was skipped.
    pub fn fetch(locations: &[(String, Location)]) -> Self {
        let mut set = Self::default();
        for (shown, location) in locations {
            match fetch::fetch(location) {
                Ok(catalog) => {
                    for warning in &catalog.warnings {
                        tracing::warn!(catalog = %shown, "{warning}");
                    }
                    set.catalogs.push(Fetched { location: shown.clone(), catalog });
                }
                Err(error) => {
                    let skipped = Skipped { location: shown.clone(), error };
                    tracing::warn!("{skipped}");
                    set.skipped.push(skipped);
                }
            }
        }
        set
    }

    /// The first catalog that has `name`, and its entry.
    pub fn find(&self, name: &str) -> Option<(&Fetched, &Layer)> {
        self.catalogs.iter().find_map(|f| f.catalog.layers.iter().find(|l| l.name.as_str() == name).map(|l| (f, l)))
    }

    /// `name` in the catalog at `location` if that was read and has it, else in the
    /// first that has it.
    fn find_preferring(&self, location: &str, name: &str) -> Option<(&Fetched, &Layer)> {
        self.catalogs
            .iter()
            .filter(|f| f.location == location)
            .find_map(|f| f.catalog.layers.iter().find(|l| l.name.as_str() == name).map(|l| (f, l)))
            .or_else(|| self.find(name))
    }

    /// The image `request` selects for `name` on this machine, and the catalog that
    /// answered.
    pub fn resolve(&self, name: &ExtensionName, request: &Request) -> Result<(String, Available), CatalogError> {
        let Some((fetched, layer)) = self.find(name.as_str()) else { return Err(self.not_published(name.as_str())) };
        resolve::resolve(layer, request, goarch())
            .map(|available| (fetched.location.clone(), available))
            .map_err(|reason| CatalogError::Resolve { catalog: fetched.location.clone(), reason: Box::new(reason) })
    }

    fn not_published(&self, name: &str) -> CatalogError {
        if self.catalogs.is_empty() && self.skipped.is_empty() {
            return CatalogError::NoneConfigured;
        }
        CatalogError::NotPublished {
            name: name.to_owned(),
            searched: self.catalogs.iter().map(|f| f.location.clone()).collect(),
            skipped: self.skipped.iter().map(ToString::to_string).collect(),
            first_skipped_kind: self.skipped.first().map(|s| fetch_kind(&s.error)),
        }
    }

    /// Every name the catalogs offer, each from the first catalog that has it, in
    /// catalog order.
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = Vec::new();
        for fetched in &self.catalogs {
            for layer in &fetched.catalog.layers {
                if entries.iter().any(|e| e.name == layer.name.as_str()) {
                    continue;
                }
                let arch = goarch();
                entries.push(Entry {
                    name: layer.name.to_string(),
                    title: layer.title.clone(),
                    description: layer.description.clone(),
                    latest: resolve::newest(layer, arch).map(|a| a.version).unwrap_or_default(),
                    versions: layer
                        .tags
                        .iter()
                        .filter(|t| t.artifacts.contains_key(arch))
                        .map(|t| t.version.clone())
                        .collect(),
                    catalog: fetched.location.clone(),
                });
            }
        }
        entries
    }
}

/// What the catalogs offer for `origin` now under its recorded request: the newest
/// version that still matches it (for a pin, the pinned version itself), or `None` when
/// that is exactly what is installed. Looked up in the catalog it came from when that
/// one was read, else in the first that has the name.
pub fn available(origin: &CatalogOrigin, catalogs: &CatalogSet) -> Result<Option<Available>, CatalogError> {
    offer(origin, catalogs, &origin.request)
}

/// The newest version the catalogs publish for `origin`'s name on this machine,
/// whatever it was installed with (so a pinned install can say a newer one exists), or
/// `None` when that is what is installed.
pub fn newest(origin: &CatalogOrigin, catalogs: &CatalogSet) -> Result<Option<Available>, CatalogError> {
    offer(origin, catalogs, &Request::Latest)
}

fn offer(origin: &CatalogOrigin, catalogs: &CatalogSet, request: &Request) -> Result<Option<Available>, CatalogError> {
    let Some((fetched, layer)) = catalogs.find_preferring(&origin.catalog, &origin.name) else {
        return Err(catalogs.not_published(&origin.name));
    };
    let found = resolve::resolve(layer, request, goarch())
        .map_err(|reason| CatalogError::Resolve { catalog: fetched.location.clone(), reason: Box::new(reason) })?;
    let installed = found.version == origin.version && found.reference == origin.reference;
    Ok((!installed).then_some(found))
}

/// Why an install from a catalog cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// There is nowhere to look.
    #[error(
        "no catalog is configured: list releases.json URLs or paths under `catalogs` in /etc/kairos/extensions.toml (offline: --catalog)"
    )]
    NoneConfigured,
    /// No catalog that was read has the name.
    #[error("no catalog has an extension named {name:?} (searched: {}){}", list(.searched), skipped_text(.skipped))]
    NotPublished {
        /// The name.
        name: String,
        /// The catalogs read.
        searched: Vec<String>,
        /// The catalogs skipped, each with why.
        skipped: Vec<String>,
        /// What kind of failure skipped the first unreadable catalog: an unreadable
        /// catalog may be the one that has the name.
        first_skipped_kind: Option<kairos_extensions_dbus::ErrorKind>,
    },
    /// The catalog has the name, but not an image for the request.
    #[error("catalog {catalog}: {reason}")]
    Resolve {
        /// The catalog that answered.
        catalog: String,
        /// Why.
        reason: Box<ResolveError>,
    },
    /// The pinned reference is not one the registry client can use.
    #[error("catalog {catalog}: {reference:?} is not an image reference: {reason}")]
    BadReference {
        /// The catalog that answered.
        catalog: String,
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The `name` option names another extension.
    #[error("{source_text} installs the extension {name:?}, but the name option asks for {asked:?}")]
    NameMismatch {
        /// The source as shown.
        source_text: String,
        /// The catalog entry.
        name: String,
        /// The option.
        asked: String,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none could be read".into() } else { items.join(", ") }
}

fn skipped_text(skipped: &[String]) -> String {
    if skipped.is_empty() { String::new() } else { format!("; {}", skipped.join("; ")) }
}

/// The contract's kind for a catalog that could not be read.
pub fn fetch_kind(error: &FetchError) -> kairos_extensions_dbus::ErrorKind {
    use kairos_extensions_dbus::ErrorKind;
    match error {
        FetchError::TooLarge { .. } => ErrorKind::TooLarge,
        FetchError::Format(_) | FetchError::NotAFile => ErrorKind::InvalidSource,
        FetchError::Read(_) | FetchError::Http(_) => ErrorKind::Failed,
    }
}

/// The catalogs a service or a command reads, and the last read of them.
#[derive(Default)]
pub struct Catalogs {
    /// Locations given on the command line, used instead of the configured ones.
    chosen: OnceLock<Vec<(String, Location)>>,
    /// The last read, and when it was made.
    last: Mutex<Option<(Instant, Arc<CatalogSet>)>>,
    /// Held while reading, so that callers arriving meanwhile share one read.
    reading: Mutex<()>,
}

impl Catalogs {
    /// Uses `locations` instead of the configured catalogs (`kairos-ext --catalog`).
    pub fn choose(&self, locations: Vec<(String, Location)>) {
        if self.chosen.set(locations).is_err() {
            tracing::warn!("catalogs were chosen twice; keeping the first choice");
        }
    }

    /// The locations chosen on the command line, if any.
    pub fn chosen(&self) -> Option<&[(String, Location)]> {
        self.chosen.get().map(Vec::as_slice)
    }

    /// The catalogs at `locations` as read at most `max_age` ago, reading them now if
    /// the last read is older.
    pub fn read(&self, locations: &[(String, Location)], max_age: Duration) -> Arc<CatalogSet> {
        let recent = |last: &Option<(Instant, Arc<CatalogSet>)>| {
            last.as_ref().filter(|(at, _)| at.elapsed() < max_age).map(|(_, set)| set.clone())
        };
        if let Some(set) = recent(&self.lock_last()) {
            return set;
        }
        let started = Instant::now();
        let _reading = self.reading.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Whoever held the lock meanwhile has just read them.
        let shared = self.lock_last().as_ref().filter(|(at, _)| *at >= started).map(|(_, set)| set.clone());
        if let Some(set) = shared {
            return set;
        }
        let set = Arc::new(CatalogSet::fetch(locations));
        *self.lock_last() = Some((Instant::now(), set.clone()));
        set
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<CatalogSet>)>> {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_told_apart() {
        assert_eq!(Request::from_text(None), Ok(Request::Latest));
        assert_eq!(Request::from_text(Some("1.32.1")), Ok(Request::Exact("1.32.1".into())));
        assert_eq!(Request::from_text(Some("v1.32.1+k3s1")), Ok(Request::Exact("v1.32.1+k3s1".into())));
        assert_eq!(Request::from_text(Some("stable")), Ok(Request::Exact("stable".into())));
        for constraint in ["^1.32", "~1.32", ">=1.30, <2", "1.32", "1.x", "*"] {
            assert_eq!(Request::from_text(Some(constraint)), Ok(Request::Constraint(constraint.into())));
        }
        for bad in ["", ">=", "^y", "a\nb", "1@2", &"1".repeat(200)] {
            assert!(Request::from_text(Some(bad)).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn requests_are_recorded_as_typed_json() -> serde_json::Result<()> {
        let json = serde_json::to_string(&Request::Constraint("^1.32".into()))?;
        assert_eq!(json, r#"{"kind":"constraint","text":"^1.32"}"#);
        assert_eq!(serde_json::from_str::<Request>(r#"{"kind":"latest"}"#)?, Request::Latest);
        Ok(())
    }

    fn set(documents: &[(&str, &str)]) -> CatalogSet {
        CatalogSet {
            catalogs: documents
                .iter()
                .map(|(location, doc)| Fetched {
                    location: (*location).to_owned(),
                    catalog: format::parse(doc.as_bytes()).expect("parses"),
                })
                .collect(),
            skipped: Vec::new(),
        }
    }

    fn doc(name: &str, versions: &[(&str, char)]) -> String {
        let arch = goarch();
        let tags: Vec<String> = versions
            .iter()
            .map(|(v, d)| {
                format!(
                    r#"{{"tag":"{v}","sysext":{{"{arch}":{{"oci":"r.example/{name}@sha256:{}"}}}}}}"#,
                    d.to_string().repeat(64)
                )
            })
            .collect();
        format!(r#"{{"layers":[{{"name":"{name}","latest":"{}","tags":[{}]}}]}}"#, versions[0].0, tags.join(","))
    }

    #[test]
    fn the_first_catalog_with_the_name_answers() {
        let private = doc("git", &[("3.0.0", 'c')]);
        let public = doc("git", &[("2.55.0", 'a'), ("2.54.1", 'b')]);
        let catalogs = set(&[("private", &private), ("public", &public)]);
        let git = ExtensionName::new("git").expect("name");
        let (catalog, found) = catalogs.resolve(&git, &Request::Latest).expect("resolves");
        assert_eq!((catalog.as_str(), found.version.as_str()), ("private", "3.0.0"));
        let err = catalogs.resolve(&git, &Request::Exact("2.54.1".into())).expect_err("the private catalog decides");
        assert!(err.to_string().contains("private") && err.to_string().contains("2.54.1"), "{err}");
        let err =
            catalogs.resolve(&ExtensionName::new("nowhere").expect("name"), &Request::Latest).expect_err("absent");
        assert!(err.to_string().contains("private, public"), "{err}");
        assert!(matches!(CatalogSet::default().resolve(&git, &Request::Latest), Err(CatalogError::NoneConfigured)));
    }

    #[test]
    fn updates_follow_the_recorded_request() {
        let older = doc("k3s", &[("1.32.1", 'a'), ("1.31.0", 'b')]);
        let newer = doc("k3s", &[("1.33.0", 'c'), ("1.32.2", 'd'), ("1.32.1", 'a'), ("1.31.0", 'b')]);
        let origin = |request: Request, version: &str, digit: char| CatalogOrigin {
            catalog: "c".into(),
            name: "k3s".into(),
            request,
            version: version.into(),
            reference: format!("r.example/k3s@sha256:{}", digit.to_string().repeat(64)),
        };
        let before = set(&[("c", &older)]);
        let after = set(&[("c", &newer)]);
        let latest = origin(Request::Latest, "1.32.1", 'a');
        assert_eq!(available(&latest, &before).ok(), Some(None), "nothing newer yet");
        assert_eq!(available(&latest, &after).ok().flatten().map(|a| a.version), Some("1.33.0".into()));
        let ranged = origin(Request::Constraint("~1.32".into()), "1.32.1", 'a');
        assert_eq!(available(&ranged, &after).ok().flatten().map(|a| a.version), Some("1.32.2".into()));
        let pinned = origin(Request::Exact("1.32.1".into()), "1.32.1", 'a');
        assert_eq!(available(&pinned, &after).ok(), Some(None), "a pin stays");
        assert_eq!(newest(&pinned, &after).ok().flatten().map(|a| a.version), Some("1.33.0".into()), "but says");
        assert!(available(&origin(Request::Latest, "1", 'a'), &set(&[])).is_err());
    }

    #[test]
    fn entries_show_what_this_machine_can_install() {
        let first = doc("k3s", &[("1.33.0", 'a'), ("1.32.1", 'b')]);
        let second = doc("k3s", &[("9.9.9", 'c')]);
        let catalogs = set(&[("one", &first), ("two", &second)]);
        let entries = catalogs.entries();
        assert_eq!(entries.len(), 1, "one entry per name: {entries:?}");
        assert_eq!(entries[0].latest, "1.33.0");
        assert_eq!(entries[0].versions, ["1.33.0", "1.32.1"]);
        assert_eq!(entries[0].catalog, "one");
    }

    #[test]
    fn readers_share_a_recent_read() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("releases.json");
        std::fs::write(&path, doc("k3s", &[("1.0.0", 'a')]))?;
        let locations = vec![(path.display().to_string(), Location::Path(path.clone()))];
        let catalogs = Catalogs::default();
        let first = catalogs.read(&locations, LIST_MAX_AGE);
        std::fs::write(&path, doc("k3s", &[("2.0.0", 'b')]))?;
        let cached = catalogs.read(&locations, LIST_MAX_AGE);
        assert!(Arc::ptr_eq(&first, &cached), "a recent read is reused");
        let fresh = catalogs.read(&locations, Duration::ZERO);
        assert_eq!(fresh.entries()[0].latest, "2.0.0", "an install reads again");
        Ok(())
    }
}
