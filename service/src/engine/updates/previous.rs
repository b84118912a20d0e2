//! The previous version of each extension: `<store>/.previous/<NAME>.raw` and its
//! provenance record `<NAME>.json`, one per name.
//!
//! An update keeps the image it replaces here, so that a rollback restores it in one
//! step. The directory starts with a dot: the store listing, kairos-agent (which reads
//! `*.raw` at the top of the store) and systemd-sysext (which never reads the store
//! itself, only the links into it) all pass it by. Images move in and out as hard
//! links within the store's file system, so nothing is copied and a rename is atomic;
//! the intent record ([`super::super::intent`]) makes each move all or nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kairos_extensions_dbus::ExtensionName;

use super::super::durable;
use super::super::failpoint;
use super::super::layout;
use super::super::meta::{self, Provenance};
use super::super::release;
use super::super::store::{IoContext, Store, StoreError, read_text_if_exists};

/// The directory inside the store that keeps previous versions.
pub const PREVIOUS_DIR: &str = ".previous";

/// The directory of previous versions.
pub fn dir(store: &Store) -> PathBuf {
    store.layout().store().join(PREVIOUS_DIR)
}

/// Where the previous image of `name` lives.
pub fn image_path(store: &Store, name: &ExtensionName) -> PathBuf {
    layout::join_file_name(&dir(store), &name.image_file_name())
}

fn record_file_name(name: &ExtensionName) -> String {
    format!("{name}.json")
}

/// The staging name that keeps the previous image of `name` while a change is under
/// way. Store files never start with a dot, so this never meets the kept copy of one.
pub fn kept_name(name: &ExtensionName) -> String {
    format!("kept-{PREVIOUS_DIR}-{}", name.image_file_name())
}

/// Whether `name` has a previous image.
pub fn exists(store: &Store, name: &ExtensionName) -> bool {
    fs::symlink_metadata(image_path(store, name)).is_ok_and(|m| m.is_file())
}

/// The record of the previous version of `name`, if there is one and it reads.
pub fn record(store: &Store, name: &ExtensionName) -> Option<Provenance> {
    meta::read(&layout::join_file_name(&dir(store), &record_file_name(name)))
}

/// The record's text, verbatim, for undoing a change of it.
pub fn record_text(store: &Store, name: &ExtensionName) -> Result<Option<String>, StoreError> {
    read_text_if_exists(&layout::join_file_name(&dir(store), &record_file_name(name)))
}

/// Writes the record's text, or removes the record when there is none.
pub fn set_record_text(store: &Store, name: &ExtensionName, text: Option<&str>) -> Result<(), StoreError> {
    let dir = dir(store);
    durable::ensure_dir(&dir).context(|| format!("creating {}", dir.display()))?;
    let file_name = record_file_name(name);
    match text {
        Some(text) => durable::write_file(&dir, &file_name, text.as_bytes()),
        None => durable::remove_if_exists(&layout::join_file_name(&dir, &file_name))
            .and_then(|removed| if removed { durable::sync_dir(&dir) } else { Ok(()) }),
    }
    .context(|| format!("writing the record of the previous version of {name}"))
}

/// The version of every previous image the store keeps, by name (empty when its record
/// says none): what the bus shows as `PreviousVersion`.
pub fn versions(store: &Store) -> Result<Vec<(String, String)>, StoreError> {
    let dir = dir(store);
    let mut found = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(source) => return Err(StoreError::Io { context: format!("reading {}", dir.display()), source }),
    };
    for entry in entries {
        let entry = entry.context(|| format!("reading {}", dir.display()))?;
        let Some(stem) = entry.file_name().to_str().and_then(|f| f.strip_suffix(".raw")).map(str::to_owned) else {
            continue;
        };
        let Ok(name) = ExtensionName::new(&stem) else { continue };
        let version = record(store, &name)
            .and_then(|r| release::display_version(&r.release).map(str::to_owned))
            .unwrap_or_default();
        found.push((stem, version));
    }
    found.sort();
    Ok(found)
}

/// Keeps the previous image of `name` in staging as a second hard link, so that
/// replacing it can be undone; returns the kept entry's name.
pub fn keep_copy(store: &Store, name: &ExtensionName) -> Result<String, StoreError> {
    let kept = kept_name(name);
    let tmp = store.layout().tmp_dir();
    let kept_path = layout::join_file_name(&tmp, &kept);
    durable::remove_if_exists(&kept_path).context(|| format!("clearing {}", kept_path.display()))?;
    fs::hard_link(image_path(store, name), &kept_path)
        .context(|| format!("keeping the previous version of {name} aside"))?;
    failpoint::point("previous version kept aside");
    durable::sync_dir(&tmp).context(|| "flushing the staging directory".into())?;
    Ok(kept)
}

/// Makes `from` (a path inside the store's file system) the previous image of `name`,
/// atomically: a hard link made in staging, renamed over the old one.
pub fn set_image(store: &Store, name: &ExtensionName, from: &Path) -> Result<(), StoreError> {
    let dir = dir(store);
    durable::ensure_dir(&dir).context(|| format!("creating {}", dir.display()))?;
    link_over(store, from, &image_path(store, name))?;
    failpoint::point("previous version set");
    durable::sync_dir(&dir).context(|| format!("flushing {}", dir.display()))
}

/// Puts the entry kept as `kept` back as the previous image of `name`; nothing to do
/// when it is not there (never kept, or already put back).
pub fn put_back(store: &Store, kept: &str, name: &ExtensionName) -> Result<(), StoreError> {
    let kept_path = layout::join_file_name(&store.layout().tmp_dir(), kept);
    match fs::rename(&kept_path, image_path(store, name)) {
        Ok(()) => failpoint::point("previous version put back"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Io { context: format!("putting the previous version of {name} back"), source });
        }
    }
    durable::sync_dir(&dir(store)).context(|| "flushing the previous versions".into())?;
    durable::sync_dir(&store.layout().tmp_dir()).context(|| "flushing the staging directory".into())
}

/// Removes the previous image of `name`, if there is one.
pub fn remove_image(store: &Store, name: &ExtensionName) -> Result<(), StoreError> {
    let dir = dir(store);
    if durable::remove_if_exists(&image_path(store, name)).context(|| format!("removing {}", dir.display()))? {
        durable::sync_dir(&dir).context(|| format!("flushing {}", dir.display()))?;
    }
    Ok(())
}

/// Makes `from` the store file `file_name`, atomically: a hard link made in staging,
/// renamed over whatever is there.
pub fn link_into_store(store: &Store, from: &Path, file_name: &str) -> Result<(), StoreError> {
    link_over(store, from, &store.path_of(file_name))?;
    failpoint::point("image linked into the store");
    let root = store.layout().store();
    durable::sync_dir(&root).context(|| format!("flushing {}", root.display()))
}

/// Hard-links `from` to a fresh staging name, then renames that over `to`. Staging is
/// cleaned at every start, so a crash between the two leaves nothing behind.
fn link_over(store: &Store, from: &Path, to: &Path) -> Result<(), StoreError> {
    let tmp = store.layout().tmp_dir();
    let temp = tempfile::Builder::new()
        .prefix("link-")
        .make_in(&tmp, |path| fs::hard_link(from, path))
        .context(|| format!("linking {} into staging", from.display()))?;
    temp.persist(to)
        .map_err(|e| StoreError::Io { context: format!("moving {} into place", to.display()), source: e.error })?;
    durable::sync_dir(&tmp).context(|| "flushing the staging directory".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::store::temp_store;

    fn name(text: &str) -> ExtensionName {
        ExtensionName::new(text).expect("a valid name")
    }

    #[test]
    fn the_previous_version_is_a_hard_link_the_store_listing_never_sees() {
        let (_root, store) = temp_store();
        fs::write(store.path_of("a.raw"), b"one").expect("image");
        assert!(!exists(&store, &name("a")));
        set_image(&store, &name("a"), &store.path_of("a.raw")).expect("set");
        assert!(exists(&store, &name("a")));
        assert_eq!(fs::read(image_path(&store, &name("a"))).expect("previous"), b"one");
        let listed: Vec<String> = store.entries().expect("entries").into_iter().map(|e| e.file_name).collect();
        assert_eq!(listed, ["a.raw"], "the previous image is no extension of the store");

        let kept = keep_copy(&store, &name("a")).expect("keep");
        fs::write(store.path_of("b.raw"), b"two").expect("another");
        set_image(&store, &name("a"), &store.path_of("b.raw")).expect("replace");
        assert_eq!(fs::read(image_path(&store, &name("a"))).expect("previous"), b"two");
        put_back(&store, &kept, &name("a")).expect("put back");
        assert_eq!(fs::read(image_path(&store, &name("a"))).expect("previous"), b"one");
        put_back(&store, &kept, &name("a")).expect("putting back twice is nothing");
        remove_image(&store, &name("a")).expect("remove");
        assert!(!exists(&store, &name("a")));
        assert_eq!(fs::read_dir(store.layout().tmp_dir()).map(|d| d.count()).unwrap_or(0), 0, "staging is clean");
    }

    #[test]
    fn versions_come_from_the_previous_records() {
        let (_root, store) = temp_store();
        fs::write(store.path_of("a.raw"), b"one").expect("image");
        set_image(&store, &name("a"), &store.path_of("a.raw")).expect("set");
        assert_eq!(versions(&store).expect("versions"), [("a".to_owned(), String::new())]);
        let record = Provenance {
            name: "a".into(),
            file: "a.raw".into(),
            source: "oci://r/a:1".into(),
            resolved_digest: None,
            validators: None,
            catalog: None,
            digest: "sha256:00".into(),
            size: 3,
            mtime_ns: 0,
            installed_time_us: 0,
            release: [("SYSEXT_VERSION_ID".to_owned(), "1.2".to_owned())].into(),
        };
        let text = serde_json::to_string(&record).expect("json");
        set_record_text(&store, &name("a"), Some(&text)).expect("record");
        assert_eq!(versions(&store).expect("versions"), [("a".to_owned(), "1.2".to_owned())]);
        assert_eq!(record_text(&store, &name("a")).expect("text").as_deref(), Some(text.as_str()));
        set_record_text(&store, &name("a"), None).expect("remove record");
        assert_eq!(record_text(&store, &name("a")).expect("text"), None);
    }
}
