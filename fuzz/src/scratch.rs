//! Scratch space for the targets whose parser reads a file.
//!
//! libFuzzer runs millions of inputs in one process, so each target creates its
//! directory once and rewrites one file per input. The directory lives under `TMPDIR`,
//! which `make fuzz` points at a directory it deletes afterwards (libFuzzer leaves by
//! `exit`, so no destructor runs).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kairos_extensionsd::engine::layout::Layout;
use kairos_extensionsd::engine::store::Store;

/// A directory for this process, created on first use.
pub fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("kairos-fuzz-").tempdir().expect("a scratch directory");
        dir.keep()
    })
}

/// Writes `data` to `name` in the scratch directory, replacing what was there.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let path = dir().join(name);
    std::fs::write(&path, data).expect("writing a scratch file");
    path
}

/// A store in its own root under the scratch directory, created on first use.
pub fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let root = dir().join("root");
        let layout = Layout::new(&root, Path::new("/var/lib/kairos/extensions"), Path::new("/run/extensions"))
            .expect("a valid layout");
        Store::open(layout).expect("a store in the scratch root")
    })
}
