//! What systemd-sysext finds before our activation link: masks and other images of the
//! same name.
//!
//! systemd-sysext reads its search path in order and keeps the first image of each name
//! (`image_discover()` in `src/shared/discover-image.c`; checked against v252 here). A
//! regular `NAME.raw` file, a `NAME` directory or a `NAME` block device, found through
//! symlinks, is an image called `NAME`; anything else, a symlink to `/dev/null`
//! included, is skipped and hides nothing. Our image takes part through its link in the
//! runtime directory, so only the directories read before that one can stand in front
//! of it. An empty directory found first is merged as nothing: that is the masking
//! systemd-sysext(8) documents, "an empty directory named like the extension (no .raw)
//! in /etc/extensions/". Any other image found first is merged instead of ours.
//!
//! Checking costs a few `stat` calls per extension and never opens an image.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::layout::{self, Layout};

/// systemd-sysext's search path for system extensions, in the order it reads them.
pub const SEARCH_PATH: [&str; 5] =
    ["/etc/extensions", "/run/extensions", "/var/lib/extensions", "/usr/local/lib/extensions", "/usr/lib/extensions"];

/// How many symlinks are followed before an entry is taken for a loop.
const MAX_LINKS: usize = 16;

/// Something systemd-sysext finds before our image, under the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obstruction {
    /// An empty directory: nothing of that name is merged.
    Masked {
        /// The directory, as this process sees it.
        path: PathBuf,
    },
    /// Another image or directory, merged in place of ours.
    Shadowed {
        /// The image, as this process sees it.
        path: PathBuf,
    },
}

impl Obstruction {
    /// One sentence for a person, naming the path.
    pub fn reason(&self) -> String {
        match self {
            Self::Masked { path } => format!("masked by the empty directory {}", path.display()),
            Self::Shadowed { path } => {
                format!("systemd-sysext finds {} first and merges it instead", path.display())
            }
        }
    }
}

/// The directories systemd-sysext reads before our runtime directory, as this process
/// sees them (to watch them). If the runtime directory is not on the search path at
/// all, every directory of it comes first. The store itself is never one of them: its
/// files are ours.
pub fn read_before_ours(layout: &Layout) -> Vec<PathBuf> {
    before_ours(layout).into_iter().map(|dir| layout.host(dir)).collect()
}

fn before_ours(layout: &Layout) -> Vec<&'static Path> {
    let ours = layout.runtime_system();
    let position = SEARCH_PATH.iter().position(|dir| Path::new(dir) == ours).unwrap_or(SEARCH_PATH.len());
    SEARCH_PATH[..position].iter().map(Path::new).filter(|dir| *dir != layout.store_system()).collect()
}

/// What, if anything, systemd-sysext finds under `name` before our activation link.
pub fn obstruction(layout: &Layout, name: &str) -> Option<Obstruction> {
    before_ours(layout).into_iter().find_map(|dir| found_in(layout, dir, name))
}

/// What systemd-sysext takes for the image `name` in the system directory `dir`.
fn found_in(layout: &Layout, dir: &Path, name: &str) -> Option<Obstruction> {
    let tree = layout::join_file_name(dir, name);
    if let Some(meta) = resolve(layout, &tree) {
        let path = layout.host(&tree);
        if meta.is_dir() {
            return Some(if is_empty(&path) { Obstruction::Masked { path } } else { Obstruction::Shadowed { path } });
        }
        if is_block_device(&meta) {
            return Some(Obstruction::Shadowed { path });
        }
    }
    let image = layout::join_file_name(dir, &format!("{name}.raw"));
    match resolve(layout, &image) {
        Some(meta) if meta.is_file() => Some(Obstruction::Shadowed { path: layout.host(&image) }),
        _ => None,
    }
}

/// Whether systemd-sysext takes the system path `path` for an image file: a regular
/// file, directly or through symlinks.
pub fn is_image_file(layout: &Layout, path: &Path) -> bool {
    resolve(layout, path).is_some_and(|meta| meta.is_file())
}

/// The metadata of what the system path `path` leads to, following symlinks without
/// ever leaving the root (as systemd's chase does); `None` for nothing, a dangling link
/// or a loop.
fn resolve(layout: &Layout, path: &Path) -> Option<fs::Metadata> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let host = layout.host(&current);
        let meta = match fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!(path = %host.display(), error = %e, "cannot inspect a search path entry");
                return None;
            }
        };
        if !meta.file_type().is_symlink() {
            return Some(meta);
        }
        let target = fs::read_link(&host).ok()?;
        let joined = match current.parent() {
            Some(parent) if target.is_relative() => parent.join(&target),
            _ => target,
        };
        current = layout::normalize(&Path::new("/").join(joined));
    }
    None
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).map(|mut entries| entries.next().is_none()).unwrap_or(false)
}

fn is_block_device(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_block_device()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn layout(root: &Path, runtime: &str) -> Layout {
        Layout::new(root, Path::new("/var/lib/kairos/extensions"), Path::new(runtime)).expect("a valid layout")
    }

    #[test]
    fn only_etc_comes_before_run() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        assert_eq!(read_before_ours(&layout(root.path(), "/run/extensions")), [root.path().join("etc/extensions")]);
        assert_eq!(
            read_before_ours(&layout(root.path(), "/var/lib/extensions")),
            [root.path().join("etc/extensions"), root.path().join("run/extensions")]
        );
        assert_eq!(read_before_ours(&layout(root.path(), "/srv/ext")).len(), SEARCH_PATH.len());
        Ok(())
    }

    #[test]
    fn an_empty_directory_masks_and_anything_else_of_the_name_shadows() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let layout = layout(root.path(), "/run/extensions");
        let etc = root.path().join("etc/extensions");
        assert_eq!(obstruction(&layout, "k3s"), None, "no /etc/extensions at all");
        fs::create_dir_all(etc.join("k3s"))?;
        assert_eq!(obstruction(&layout, "k3s"), Some(Obstruction::Masked { path: etc.join("k3s") }));
        fs::write(etc.join("k3s/README"), "not empty")?;
        assert_eq!(obstruction(&layout, "k3s"), Some(Obstruction::Shadowed { path: etc.join("k3s") }));
        fs::write(etc.join("tools.raw"), "an image")?;
        assert_eq!(obstruction(&layout, "tools"), Some(Obstruction::Shadowed { path: etc.join("tools.raw") }));
        assert_eq!(obstruction(&layout, "k3s.raw"), None, "names are exact");
        Ok(())
    }

    #[test]
    fn links_are_followed_inside_the_root_and_dev_null_hides_nothing() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let layout = layout(root.path(), "/run/extensions");
        let etc = root.path().join("etc/extensions");
        fs::create_dir_all(&etc)?;
        fs::create_dir_all(root.path().join("srv/images"))?;
        fs::write(root.path().join("srv/images/k3s.img"), "an image")?;
        // Absolute targets are system paths: they resolve under the root.
        symlink("/srv/images/k3s.img", etc.join("k3s.raw"))?;
        assert_eq!(obstruction(&layout, "k3s"), Some(Obstruction::Shadowed { path: etc.join("k3s.raw") }));
        // systemd-sysext 252 merges an image past a /dev/null link (checked here).
        symlink("/dev/null", etc.join("tools.raw"))?;
        symlink("/dev/null", etc.join("tools"))?;
        assert_eq!(obstruction(&layout, "tools"), None);
        // Up far enough to reach the host's /etc/os-release if it were not clamped at the root.
        symlink("../../../../../../../../../../etc/os-release", etc.join("escape.raw"))?;
        assert_eq!(obstruction(&layout, "escape"), None, "a relative link cannot leave the root");
        symlink("/nowhere", etc.join("gone.raw"))?;
        symlink("loop.raw", etc.join("loop.raw"))?;
        assert_eq!(obstruction(&layout, "gone"), None);
        assert_eq!(obstruction(&layout, "loop"), None);
        // A directory named like an image file is another name to systemd.
        fs::create_dir_all(etc.join("dir.raw"))?;
        assert_eq!(obstruction(&layout, "dir"), None);
        Ok(())
    }

    #[test]
    fn the_reason_names_the_path() {
        let masked = Obstruction::Masked { path: PathBuf::from("/etc/extensions/k3s") };
        assert_eq!(masked.reason(), "masked by the empty directory /etc/extensions/k3s");
        let shadowed = Obstruction::Shadowed { path: PathBuf::from("/etc/extensions/k3s.raw") };
        assert!(shadowed.reason().contains("/etc/extensions/k3s.raw"));
    }
}
