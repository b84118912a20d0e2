//! Provenance records: where an installed image came from.
//!
//! `.meta/<NAME>.json` keeps what the image itself cannot tell: the source it was
//! installed from, when, and the digest and release read at install time, so listing
//! does not have to hash or open every image again. Other tools ignore the directory.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::catalogs::CatalogOrigin;
use super::durable;
use super::release::ReleaseFields;

/// Records larger than this are not ours.
const MAX_RECORD: u64 = 1 << 20;

/// What the store remembers about an installed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The extension's name.
    pub name: String,
    /// The file in the store.
    pub file: String,
    /// Where it came from, with credentials removed.
    pub source: String,
    /// For registries: the manifest digest the tag resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_digest: Option<String>,
    /// For catalog installs: the catalog, the entry, what was asked for and the version
    /// installed, so updates follow the same request. Absent in records written before
    /// catalogs existed, which still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogOrigin>,
    /// For HTTP(S) downloads: the validators the server gave, which an update check
    /// compares with a HEAD request. Older records have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validators: Option<Validators>,
    /// `sha256:…` of the stored file.
    pub digest: String,
    /// Size of the stored file in bytes.
    pub size: u64,
    /// The stored file's mtime in nanoseconds, to notice a file replaced by hand.
    pub mtime_ns: i128,
    /// Install time, µs since the epoch.
    pub installed_time_us: u64,
    /// The extension-release read at install time.
    pub release: ReleaseFields,
}

/// What an HTTP server said identifies the version of a file (RFC 9110 validators).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// The `ETag` header, verbatim (weak tags keep their `W/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The `Last-Modified` header, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Validators {
    /// Whether the server gave neither, so nothing can tell a new version from the old.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// Reads a record; a missing, oversized or unparsable record is `None` (and logged):
/// the image is still listed, just without provenance.
pub fn read(path: &Path) -> Option<Provenance> {
    // One open and one read: a listing reads every record in the store.
    let mut bytes = Vec::with_capacity(4096);
    match fs::File::open(path).and_then(|file| file.take(MAX_RECORD + 1).read_to_end(&mut bytes)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read provenance record");
            return None;
        }
    }
    if bytes.len() as u64 > MAX_RECORD {
        tracing::warn!(path = %path.display(), "ignoring oversized provenance record");
        return None;
    }
    let parsed = serde_json::from_slice(&bytes).map_err(|e| e.to_string());
    match parsed {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable provenance record");
            None
        }
    }
}

/// The names of the records in `dir` (`<NAME>.json`); none when there is no such
/// directory. Names are not checked here: a record is only as good as its content.
pub fn names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let file_name = entry?.file_name();
        let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(".json")) else { continue };
        if !name.is_empty() && !name.starts_with('.') {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes a record atomically.
/// The record's name is checked here too, though every caller checked it before: it
/// becomes a file name, and a name with a `/` would write outside `dir`.
pub fn write(dir: &Path, record: &Provenance) -> io::Result<()> {
    let name = kairos_extensions_dbus::ExtensionName::new(&record.name).map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("provenance record for {:?}: {e}", record.name))
    })?;
    let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    durable::write_file(dir, &format!("{name}.json"), &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_garbage() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let record = Provenance {
            name: "k3s".into(),
            file: "k3s.raw".into(),
            source: "file:///tmp/k3s.raw".into(),
            resolved_digest: None,
            catalog: None,
            validators: Some(Validators { etag: Some("\"v1\"".into()), last_modified: None }),
            digest: "sha256:00".into(),
            size: 4096,
            mtime_ns: 1,
            installed_time_us: 2,
            release: ReleaseFields::from([("ID".to_owned(), "_any".to_owned())]),
        };
        write(dir.path(), &record)?;
        assert_eq!(read(&dir.path().join("k3s.json")), Some(record.clone()));
        fs::write(dir.path().join("bad.json"), "{not json")?;
        assert_eq!(read(&dir.path().join("bad.json")), None);
        let mut padded = serde_json::to_vec(&record).map_err(io::Error::other)?;
        padded.resize(usize::try_from(MAX_RECORD).map_err(io::Error::other)? + 1, b' ');
        fs::write(dir.path().join("big.json"), &padded)?;
        assert_eq!(read(&dir.path().join("big.json")), None, "valid JSON, but more than a record may be");
        padded.truncate(padded.len() - 1);
        fs::write(dir.path().join("big.json"), &padded)?;
        assert_eq!(read(&dir.path().join("big.json")), Some(record.clone()), "at the limit it is read");
        assert_eq!(read(&dir.path().join("absent.json")), None);
        let escaping = Provenance { name: "../escape".into(), ..record.clone() };
        assert_eq!(write(dir.path(), &escaping).map_err(|e| e.kind()), Err(io::ErrorKind::InvalidInput));
        assert!(!dir.path().join("../escape.json").exists(), "nothing written outside the directory");
        fs::write(dir.path().join(".write-x1.json"), "{}")?;
        fs::write(dir.path().join("notes.txt"), "")?;
        assert_eq!(names(dir.path())?, ["bad", "big", "k3s"]);
        assert!(names(&dir.path().join("absent"))?.is_empty());
        Ok(())
    }

    #[test]
    fn records_keep_their_catalog_origin_and_old_records_still_read() -> io::Result<()> {
        use crate::engine::catalogs::Request;
        let dir = tempfile::tempdir()?;
        let old = r#"{"name":"k3s","file":"k3s.raw","source":"oci://r/k3s:v1","digest":"sha256:00","size":1,
            "mtime_ns":1,"installed_time_us":2,"release":{}}"#;
        fs::write(dir.path().join("k3s.json"), old)?;
        let record = read(&dir.path().join("k3s.json")).expect("a record without the catalog field reads");
        assert_eq!(record.catalog, None);
        let origin = CatalogOrigin {
            catalog: "https://example.com/releases.json".into(),
            name: "k3s".into(),
            request: Request::Constraint("^1.32".into()),
            version: "1.32.1".into(),
            reference: format!("r/k3s@sha256:{}", "a".repeat(64)),
        };
        let with_origin = Provenance { catalog: Some(origin), ..record };
        write(dir.path(), &with_origin)?;
        assert_eq!(read(&dir.path().join("k3s.json")), Some(with_origin));
        Ok(())
    }

    #[test]
    fn a_record_written_before_validators_existed_still_reads() {
        let old = r#"{"name":"k3s","file":"k3s.raw","source":"https://h/k3s.raw","digest":"sha256:00",
            "size":1,"mtime_ns":1,"installed_time_us":2,"release":{}}"#;
        let record: Provenance = serde_json::from_str(old).expect("an old record reads");
        assert_eq!(record.validators, None);
    }
}
