//! Looking inside an extension without merging it.
//!
//! For an image file we ask `systemd-dissect --copy-from` for its
//! `/usr/lib/extension-release.d`: it understands every format systemd-sysext does
//! (squashfs, erofs, GPT disk images), mounts in a private namespace of its own, and so
//! leaves the caller's namespace untouched. Directory extensions are read in place.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use kairos_extensions_dbus::ExtensionName;

use super::blockers;
use super::command::{self, CommandError};
use super::release::{self, ReleaseFields};

/// Where systemd-dissect lives on every distribution that has it.
pub const DISSECT: &str = "/usr/bin/systemd-dissect";
const RELEASE_DIR: &str = "usr/lib/extension-release.d";
const RELEASE_PREFIX: &str = "extension-release.";
/// Reading a release file from a healthy image takes milliseconds.
const DISSECT_DEADLINE: Duration = Duration::from_secs(60);
/// More release files than any real extension carries; a directory with more is hostile.
const MAX_RELEASE_FILES: usize = 64;
/// How systemd-dissect says that an image holds nothing it can mount.
const NO_FILE_SYSTEM: &str = "Couldn't identify a suitable partition table or file system";

/// Why an image's release data cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// systemd-dissect could not open the image.
    #[error("not a readable system extension image: {0}")]
    Unreadable(String),
    /// Neither a partition table nor a file system systemd can mount: systemd-sysext
    /// fails reading its metadata and so merges nothing.
    #[error(
        "not a readable system extension image: no partition table or file system systemd can mount \
         (systemd-sysext would merge nothing at all)"
    )]
    NotAFileSystem,
    /// The image ships `/usr/lib/os-release`, which systemd-sysext refuses.
    #[error("the image ships /usr/lib/os-release, which systemd-sysext refuses ({})", cost(*.whole_merge))]
    OsRelease {
        /// Whether the host's systemd refuses the whole merge for it (252) or skips it (254).
        whole_merge: bool,
    },
    /// A hierarchy systemd-sysext merges is in the image but is not a directory.
    #[error("the image's {hierarchy} is not a directory, which systemd-sysext cannot merge ({})", cost(*.whole_merge))]
    NotADirectory {
        /// The hierarchy (`/opt`).
        hierarchy: &'static str,
        /// Whether the host's systemd refuses the whole merge for it.
        whole_merge: bool,
    },
    /// The image has no `extension-release.<NAME>` file.
    #[error("no /usr/lib/extension-release.d/extension-release.<NAME> file in the image")]
    NoRelease,
    /// Several release files and nothing to choose between them.
    #[error("the image carries several extension releases ({}); choose one with the name option", .0.join(", "))]
    Ambiguous(Vec<String>),
    /// The requested name is not among the image's release files.
    #[error("the image has no extension-release.{wanted} (it has: {})", .available.join(", "))]
    NameNotInImage {
        /// The name asked for.
        wanted: String,
        /// The names the image does carry.
        available: Vec<String>,
    },
    /// Two images of one install are the same extension.
    #[error("the image carries extension {name:?} twice, in {} and {}", .files[0], .files[1])]
    Twice {
        /// The extension's name.
        name: String,
        /// The two files that carry it.
        files: [String; 2],
    },
    /// A helper failed to run.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// Reading the copied release files failed.
    #[error("reading the extension-release files failed")]
    Io(#[from] io::Error),
}

/// What an image's refusal costs, for the reasons above.
fn cost(whole_merge: bool) -> &'static str {
    if whole_merge { "it would merge nothing at all, the other extensions included" } else { "it skips this image" }
}

/// The release data an extension carries, keyed by the name in each file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Releases(pub Vec<(ExtensionName, ReleaseFields)>);

impl Releases {
    /// Chooses the release that names the extension.
    ///
    /// `wanted` wins when given and must be present. Otherwise a single release is used,
    /// or, among several, the one whose name matches `file_stem` (the way systemd-sysext
    /// picks by image file name).
    pub fn pick(
        &self,
        wanted: Option<&ExtensionName>,
        file_stem: Option<&str>,
    ) -> Result<(ExtensionName, ReleaseFields), ImageError> {
        let names = || self.0.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        if let Some(wanted) = wanted {
            return self
                .0
                .iter()
                .find(|(n, _)| n == wanted)
                .cloned()
                .ok_or_else(|| ImageError::NameNotInImage { wanted: wanted.to_string(), available: names() });
        }
        match self.0.as_slice() {
            [] => Err(ImageError::NoRelease),
            [only] => Ok(only.clone()),
            several => several
                .iter()
                .find(|(n, _)| Some(n.as_str()) == file_stem)
                .cloned()
                .ok_or_else(|| ImageError::Ambiguous(names())),
        }
    }
}

/// How systemd-dissect is to open an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// As systemd-sysext opens it: with dm-verity where the image has verity.
    AsSysext,
    /// The data partition directly, ignoring the embedded and sidecar verity data, so
    /// that no device-mapper is needed. Only for an image whose data partition was just
    /// proven against its root hash (`trust::read_releases`): then what is read is what
    /// was proven.
    ProvenData,
}

impl Access {
    /// systemd-dissect's switches for this access (dissect-image.c reads them).
    pub fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::AsSysext => &[],
            Self::ProvenData => &[("SYSTEMD_DISSECT_VERITY_EMBEDDED", "0"), ("SYSTEMD_DISSECT_VERITY_SIDECAR", "0")],
        }
    }
}

/// Reads the release files of an image file as systemd-sysext would, and refuses an
/// image that systemd-sysext would refuse ([`blockers`]).
pub fn read_image(image: &Path) -> Result<Releases, ImageError> {
    read_image_with(image, Access::AsSysext)
}

/// Reads the release files of a disk image with verity from its proven data partition,
/// without dm-verity; see [`Access::ProvenData`].
pub fn read_verified_image(image: &Path) -> Result<Releases, ImageError> {
    read_image_with(image, Access::ProvenData)
}

fn read_image_with(image: &Path, access: Access) -> Result<Releases, ImageError> {
    let scratch = tempfile::Builder::new().prefix("kairos-ext-release-").tempdir()?;
    let target = scratch.path().join("release.d");
    let out = command::run_with_env(
        DISSECT,
        &[OsStr::new("--copy-from"), image.as_os_str(), OsStr::new("/usr/lib/extension-release.d"), target.as_os_str()],
        access.env(),
        DISSECT_DEADLINE,
    )?;
    if !out.status.success() {
        let reason = out.stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("systemd-dissect failed");
        if reason.contains("No such file or directory") && reason.contains("extension-release.d") {
            return Err(ImageError::NoRelease);
        }
        if reason.contains(NO_FILE_SYSTEM) {
            return Err(ImageError::NotAFileSystem);
        }
        return Err(ImageError::Unreadable(strip_path(reason, image)));
    }
    let releases = read_release_dir(&target)?;
    blockers::check(image, scratch.path(), access)?;
    Ok(releases)
}

/// Reads the release files of a directory extension (`<dir>/usr/lib/extension-release.d`).
pub fn read_directory(tree: &Path) -> Result<Releases, ImageError> {
    let dir = tree.join(RELEASE_DIR);
    match fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => read_release_dir(&dir),
        Ok(_) => Err(ImageError::NoRelease),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::NoRelease),
        Err(e) => Err(e.into()),
    }
}

/// Collects `extension-release.<NAME>` regular files. Oddly named and oversized files are
/// ignored, and so are symlinks, unless they lead to a regular file in the same directory
/// (systemd-sysext follows them): they come from the image, which is not trusted.
fn read_release_dir(dir: &Path) -> Result<Releases, ImageError> {
    let mut found = Vec::new();
    for (seen, entry) in fs::read_dir(dir)?.enumerate() {
        if seen >= MAX_RELEASE_FILES {
            break;
        }
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|f| f.strip_prefix(RELEASE_PREFIX)) else { continue };
        let Ok(name) = ExtensionName::new(name) else { continue };
        let kind = entry.file_type()?;
        let path = if kind.is_file() {
            entry.path()
        } else if kind.is_symlink()
            && let Some(target) = sibling_target(dir, &entry.path())?
        {
            target
        } else {
            continue;
        };
        match release::read_file(&path) {
            Ok(fields) => found.push((name, fields)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(e) => return Err(e.into()),
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Releases(found))
}

/// Where a release file symlink leads, if that is a regular file in the release
/// directory itself: a bare file name, or the same name under the image's absolute
/// `/usr/lib/extension-release.d/`. Anything else could lead out of the copied directory.
fn sibling_target(dir: &Path, link: &Path) -> io::Result<Option<PathBuf>> {
    let target = fs::read_link(link)?;
    let absolute = Path::new("/").join(RELEASE_DIR);
    let mut parts = target.strip_prefix(&absolute).unwrap_or(&target).components();
    let (Some(Component::Normal(only)), None) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let path = dir.join(only);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(Some(path)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// systemd-dissect names the image path in its messages; for a staged download that is
/// a meaningless temp name, so we drop it and let the caller say which image it was.
fn strip_path(message: &str, image: &Path) -> String {
    let path = image.display().to_string();
    message.replace(&format!("{path}: "), "").replace(&path, "image").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ExtensionName {
        ExtensionName::new(s).expect("valid test name")
    }

    fn releases(names: &[&str]) -> Releases {
        Releases(names.iter().map(|n| (name(n), ReleaseFields::new())).collect())
    }

    #[test]
    fn picks_the_only_release() {
        assert!(matches!(releases(&["k3s"]).pick(None, Some("other")), Ok((n, _)) if n == name("k3s")));
    }

    #[test]
    fn picks_by_wanted_name_or_file_stem() {
        let two = releases(&["a", "b"]);
        assert!(matches!(two.pick(Some(&name("b")), None), Ok((n, _)) if n == name("b")));
        assert!(matches!(two.pick(None, Some("a")), Ok((n, _)) if n == name("a")));
        assert!(matches!(two.pick(None, None), Err(ImageError::Ambiguous(v)) if v == ["a", "b"]));
        assert!(matches!(two.pick(Some(&name("c")), None), Err(ImageError::NameNotInImage { .. })));
        assert!(matches!(releases(&[]).pick(None, None), Err(ImageError::NoRelease)));
    }

    #[test]
    fn reads_only_plain_release_files() -> Result<(), ImageError> {
        let tree = tempfile::tempdir()?;
        let dir = tree.path().join(RELEASE_DIR);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("extension-release.good"), "ID=_any\n")?;
        fs::write(dir.join("extension-release..hidden"), "ID=_any\n")?;
        fs::write(dir.join("README"), "x")?;
        fs::write(dir.join("extension-release.big"), vec![b'#'; 70 * 1024])?;
        std::os::unix::fs::symlink("/etc/os-release", dir.join("extension-release.link"))?;
        let found = read_directory(tree.path())?;
        assert_eq!(found.0.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["good"]);
        Ok(())
    }

    #[test]
    fn follows_release_symlinks_only_within_the_release_directory() -> Result<(), ImageError> {
        let tree = tempfile::tempdir()?;
        let dir = tree.path().join(RELEASE_DIR);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("real"), "ID=_any\nVERSION_ID=7\n")?;
        std::os::unix::fs::symlink("real", dir.join("extension-release.relative"))?;
        std::os::unix::fs::symlink("/usr/lib/extension-release.d/real", dir.join("extension-release.absolute"))?;
        std::os::unix::fs::symlink("../extension-release.d/real", dir.join("extension-release.dotdot"))?;
        std::os::unix::fs::symlink("missing", dir.join("extension-release.dangling"))?;
        std::os::unix::fs::symlink("extension-release.relative", dir.join("extension-release.chain"))?;
        let found = read_directory(tree.path())?;
        let names: Vec<&str> = found.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["absolute", "relative"], "only links to a regular file beside them count");
        assert!(found.0.iter().all(|(_, f)| f.get("VERSION_ID").map(String::as_str) == Some("7")));
        Ok(())
    }
}
