//! Where the binaries under test are.
//!
//! Integration tests in this crate cannot use `CARGO_BIN_EXE_*` for another package's
//! binaries, so they are found next to the test executable (`target/<profile>/`). `make
//! test` builds them first.

use std::path::PathBuf;

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("test executable lives in target/<profile>/deps")
}

/// A binary of this workspace by name.
pub fn find(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

/// `kairos-ext`.
pub fn kairos_ext() -> PathBuf {
    find("kairos-ext")
}

/// `kairos-extensionsd`.
pub fn kairos_extensionsd() -> PathBuf {
    find("kairos-extensionsd")
}

/// The `bus-probe` helper of this crate.
pub fn bus_probe() -> PathBuf {
    find("bus-probe")
}

/// The `kx-settle` helper of this crate: opens the store as the next start would.
pub fn kx_settle() -> PathBuf {
    find("kx-settle")
}
