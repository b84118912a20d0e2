//! What the last checks found, kept in `<store>/.checks.json` so that it outlives the
//! service: the service exits when idle and the update timer checks once a day, so
//! results held only in memory would be gone before anyone looked. Each result names
//! the image it was about; one about another image (updated, rolled back, replaced)
//! says nothing and is dropped when read.

use std::collections::BTreeMap;
use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

use super::super::durable;
use super::super::store::Store;
use super::CheckOutcome;

/// The file inside the store.
pub const CHECKS_FILE: &str = ".checks.json";
/// A file larger than this was not written by us.
const MAX_FILE: u64 = 16 << 20;

/// One remembered check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// `sha256:…` of the image that was checked.
    pub digest: String,
    /// What the check found.
    pub outcome: CheckOutcome,
}

/// Every remembered check, by extension name; nothing when there is no file or it does
/// not read (it is a cache: the next check writes it again).
pub fn load(store: &Store) -> BTreeMap<String, Remembered> {
    let path = store.layout().store().join(CHECKS_FILE);
    let bytes = match fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_FILE => {
            tracing::warn!(path = %path.display(), "ignoring an oversized record of update checks");
            return BTreeMap::new();
        }
        Ok(_) => fs::read(&path),
        Err(e) => Err(e),
    };
    match bytes {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable record of update checks");
            BTreeMap::new()
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the record of update checks");
            BTreeMap::new()
        }
    }
}

/// Adds `checked` (each with the digest of the image checked) to what is remembered.
pub fn remember(store: &Store, checked: impl IntoIterator<Item = Remembered>) -> io::Result<()> {
    let mut all = load(store);
    for item in checked {
        all.insert(item.outcome.name.clone(), item);
    }
    let json = serde_json::to_vec_pretty(&all).map_err(io::Error::other)?;
    durable::write_file(&store.layout().store(), CHECKS_FILE, &json)
}

#[cfg(test)]
mod tests {
    use kairos_extensions_dbus::UpdateCheck;

    use super::*;
    use crate::engine::store::temp_store;

    fn checked(name: &str, digest: &str, available: bool) -> Remembered {
        Remembered {
            digest: digest.into(),
            outcome: CheckOutcome {
                name: name.into(),
                installed_version: "1".into(),
                source: "oci://r/x:v".into(),
                check: UpdateCheck::Ok,
                update_available: available,
                available_version: String::new(),
                available_source: String::new(),
                checked_time_us: 1,
            },
        }
    }

    #[test]
    fn checks_are_remembered_by_name_and_the_newest_wins() {
        let (_root, store) = temp_store();
        assert!(load(&store).is_empty());
        remember(&store, [checked("a", "sha256:1", true), checked("b", "sha256:2", false)]).expect("remember");
        remember(&store, [checked("a", "sha256:1", false)]).expect("remember again");
        let all = load(&store);
        assert_eq!(all.len(), 2);
        assert!(!all["a"].outcome.update_available, "the newer check of a replaced the older");
        fs::write(store.layout().store().join(CHECKS_FILE), "{garbage").expect("garbage");
        assert!(load(&store).is_empty(), "a damaged cache is no cache");
        let listed: Vec<String> = store.entries().expect("entries").into_iter().map(|e| e.file_name).collect();
        assert!(listed.is_empty(), "the file is no extension: {listed:?}");
    }
}
