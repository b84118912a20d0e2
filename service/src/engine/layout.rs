//! Where everything lives, relative to an optional root directory.
//!
//! Paths come in two coordinates: *system* paths as the target system sees them
//! (`/var/lib/kairos/extensions`), and *host* paths where this process finds them
//! (`<root>/var/lib/kairos/extensions`). Symlink targets are written and read in system
//! coordinates so that they resolve the same on a live system and under `--root`.

use std::path::{Component, Path, PathBuf};

use kairos_extensions_dbus::{BootState, ExtensionName};

/// Name of the directory inside the store that holds provenance records.
pub const META_DIR: &str = ".meta";
/// Name of the directory inside the store that holds downloads in progress.
pub const TMP_DIR: &str = ".tmp";
/// Name of the lock file inside the store that serialises writers across processes.
pub const LOCK_FILE: &str = ".lock";

/// A path that is not usable as a system path.
#[derive(Debug, thiserror::Error)]
#[error("{path:?} must be an absolute path without '..' components")]
pub struct NotAbsolute {
    /// The offending path.
    pub path: PathBuf,
}

/// The directories the engine works in.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    store: PathBuf,
    runtime: PathBuf,
}

impl Layout {
    /// Builds the layout for `root` with the store and runtime directories given as
    /// system paths.
    pub fn new(root: &Path, store: &Path, runtime: &Path) -> Result<Self, NotAbsolute> {
        Ok(Self {
            root: root.to_path_buf(),
            store: checked_system_path(store)?,
            runtime: checked_system_path(runtime)?,
        })
    }

    /// The root every system path is relative to (`/` on a live system).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the root is the running system's own `/`.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Maps a system path into this process's view.
    pub fn host(&self, system_path: &Path) -> PathBuf {
        match system_path.strip_prefix("/") {
            Ok(relative) => self.root.join(relative),
            Err(_) => self.root.join(system_path),
        }
    }

    /// The store as a system path.
    pub fn store_system(&self) -> &Path {
        &self.store
    }

    /// The runtime activation directory as a system path.
    pub fn runtime_system(&self) -> &Path {
        &self.runtime
    }

    /// The store in this process's view.
    pub fn store(&self) -> PathBuf {
        self.host(&self.store)
    }

    /// The runtime activation directory (`/run/extensions`) in this process's view.
    pub fn runtime(&self) -> PathBuf {
        self.host(&self.runtime)
    }

    /// The directory of enablement links for `state`.
    pub fn state_dir(&self, state: BootState) -> PathBuf {
        self.store().join(state.as_str())
    }

    /// The provenance record directory.
    pub fn meta_dir(&self) -> PathBuf {
        self.store().join(META_DIR)
    }

    /// The staging directory for downloads and copies in progress.
    pub fn tmp_dir(&self) -> PathBuf {
        self.store().join(TMP_DIR)
    }

    /// The provenance record of `name`.
    pub fn meta_file(&self, name: &ExtensionName) -> PathBuf {
        join_file_name(&self.meta_dir(), &format!("{name}.json"))
    }
}

/// Joins a single file-name component onto `base`.
///
/// This is the one place where a name that came from input becomes a path. It refuses
/// anything but one normal component, so the result can never leave `base`. Callers hand
/// it names that were already validated; a refusal here is a bug, so it is reported as
/// a path that does not exist rather than a panic.
pub fn join_file_name(base: &Path, file_name: &str) -> PathBuf {
    let mut components = Path::new(file_name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(part)), None) => base.join(part),
        _ => base.join(".refused-path-component"),
    }
}

/// Resolves `.` and `..` lexically, without touching the filesystem.
///
/// Symlink targets are compared against the store this way: the store is root-owned and
/// its link targets are plain paths, so lexical resolution is exact for the links this
/// service and kairos-agent write, and it never follows anything on the host.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn checked_system_path(path: &Path) -> Result<PathBuf, NotAbsolute> {
    let ok = path.is_absolute() && !path.components().any(|c| matches!(c, Component::ParentDir));
    if ok { Ok(normalize(path)) } else { Err(NotAbsolute { path: path.to_path_buf() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(root: &str) -> Layout {
        Layout::new(Path::new(root), Path::new("/var/lib/kairos/extensions"), Path::new("/run/extensions"))
            .expect("valid layout")
    }

    #[test]
    fn maps_system_paths_under_the_root() {
        assert_eq!(layout("/").store(), Path::new("/var/lib/kairos/extensions"));
        assert_eq!(layout("/img").store(), Path::new("/img/var/lib/kairos/extensions"));
        assert_eq!(layout("/img").runtime(), Path::new("/img/run/extensions"));
        assert!(layout("/").is_live());
        assert!(!layout("/img").is_live());
    }

    #[test]
    fn join_file_name_never_leaves_its_base() {
        let base = Path::new("/s");
        assert_eq!(join_file_name(base, "k3s.raw"), Path::new("/s/k3s.raw"));
        for hostile in ["../x", "a/b", "/etc/passwd", "..", ".", ""] {
            let joined = join_file_name(base, hostile);
            assert_eq!(joined.parent(), Some(base), "{hostile:?} escaped to {joined:?}");
            assert_eq!(joined, Path::new("/s/.refused-path-component"));
        }
    }

    #[test]
    fn refuses_relative_or_dotted_system_paths() {
        for bad in ["var/lib", "/var/../etc", ""] {
            assert!(Layout::new(Path::new("/"), Path::new(bad), Path::new("/run/extensions")).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(
            normalize(Path::new("/var/lib/kairos/extensions/active/../k3s.raw")),
            Path::new("/var/lib/kairos/extensions/k3s.raw")
        );
        assert_eq!(normalize(Path::new("/../../x")), Path::new("/x"));
    }
}
