//! What inside an image, beyond its extension-release, makes systemd-sysext refuse it,
//! and whether that refusal takes the other extensions down with it.
//!
//! systemd-sysext validates in two passes, and where an image fails decides how much
//! is lost (checked with the real binaries, tests/tests/verdicts.rs):
//!
//! - Reading each image's metadata, before anything is mounted. An image that is no
//!   file system, or has no `extension-release.<NAME>` for the name it is deployed
//!   under, fails the whole command (exit status 1) in 252 and 254 alike.
//!   [`super::image::read_image`] refuses those already.
//! - Mounting and merging, in a child process. There, 252 gives up on the whole merge,
//!   printing why but exiting 0, for an image that ships `/usr/lib/os-release`; 254
//!   skips just that image. A hierarchy (`/opt`) that is in the image but is no
//!   directory stops the merge in both. Those are the properties found here.
//!
//! Incompatible release fields (ID, VERSION_ID, ...) only ever skip the one image, and
//! silently; [`super::release`] judges them.
//!
//! Each property is looked up with one `systemd-dissect --copy-from` of one path, which
//! resolves symlinks inside the image the way systemd-sysext does: a `/usr/lib/os-release`
//! symlink that dangles inside the image does not count, one that resolves does.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use super::command;
use super::image::{Access, DISSECT, ImageError};

/// The systemd version from which systemd-sysext skips an image that ships
/// `/usr/lib/os-release` instead of refusing the whole merge. 252 refuses the merge and
/// 254 skips; 253 was not checked and is assumed to behave like 252, the safer guess.
pub const OS_RELEASE_SKIPPED_SINCE: u32 = 254;
/// An extension must not replace the host's os-release; `/etc/os-release` is not merged
/// and so is allowed.
const OS_RELEASE: &str = "/usr/lib/os-release";
/// The hierarchies systemd-sysext merges besides `/usr`. `/usr` itself is a directory in
/// every image that has a release file, since that file lives under it.
const HIERARCHIES: [&str; 1] = ["/opt"];
/// A name nobody ships: asking for it below a hierarchy tells a directory ("No such
/// file") from anything else ("Not a directory") without copying the hierarchy.
const PROBE_CHILD: &str = ".kairos-ext-probe";
/// Mounting an image and looking up one path takes milliseconds.
const PROBE_DEADLINE: Duration = Duration::from_secs(60);

/// A property of an image that makes systemd-sysext refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// It ships `/usr/lib/os-release`.
    OsRelease,
    /// A hierarchy systemd-sysext merges exists in the image but is not a directory.
    NotADirectory(&'static str),
}

impl Blocker {
    /// Whether systemd `version` (the host's, `None` when unknown) refuses the whole merge
    /// for it, rather than skipping this image alone.
    pub fn blocks_whole_merge(self, version: Option<u32>) -> bool {
        match self {
            Self::OsRelease => version.is_none_or(|v| v < OS_RELEASE_SKIPPED_SINCE),
            Self::NotADirectory(_) => true,
        }
    }

    /// The refusal, worded for systemd `version`.
    pub fn into_error(self, version: Option<u32>) -> ImageError {
        let whole_merge = self.blocks_whole_merge(version);
        match self {
            Self::OsRelease => ImageError::OsRelease { whole_merge },
            Self::NotADirectory(hierarchy) => ImageError::NotADirectory { hierarchy, whole_merge },
        }
    }
}

/// The first blocker of the image file `image`, in the order systemd-sysext checks them.
///
/// `scratch` is an empty directory the caller owns, for the copies `systemd-dissect`
/// makes. A lookup whose answer is not clear (the image cannot be mounted here, say a
/// verity image on a kernel without device-mapper) decides nothing: whether the image
/// can be opened at all is [`super::image::read_image`]'s question.
pub fn find(image: &Path, scratch: &Path, access: Access) -> Result<Option<Blocker>, ImageError> {
    if lookup(image, OS_RELEASE, &scratch.join("os-release"), access)? == Lookup::Found {
        return Ok(Some(Blocker::OsRelease));
    }
    for hierarchy in HIERARCHIES {
        let probe = format!("{hierarchy}/{PROBE_CHILD}");
        if lookup(image, &probe, &scratch.join(PROBE_CHILD), access)? == Lookup::NotADirectory {
            return Ok(Some(Blocker::NotADirectory(hierarchy)));
        }
    }
    Ok(None)
}

/// Refuses the image file `image` if it has a blocker, worded for the host's systemd.
pub fn check(image: &Path, scratch: &Path, access: Access) -> Result<(), ImageError> {
    match find(image, scratch, access)? {
        Some(blocker) => Err(blocker.into_error(super::sysext::host_systemd_version())),
        None => Ok(()),
    }
}

/// What looking up one path inside an image found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// The path resolves (it was copied out).
    Found,
    /// Nothing is there.
    Missing,
    /// A component on the way is not a directory.
    NotADirectory,
    /// systemd-dissect failed for another reason.
    Unknown,
}

fn lookup(image: &Path, path: &str, target: &Path, access: Access) -> Result<Lookup, ImageError> {
    let out = command::run_with_env(
        DISSECT,
        &[OsStr::new("--copy-from"), image.as_os_str(), OsStr::new(path), target.as_os_str()],
        access.env(),
        PROBE_DEADLINE,
    )?;
    let found = classify(out.status.success(), &out.stderr);
    if found == Lookup::Unknown {
        tracing::debug!(image = %image.display(), path, stderr = %out.stderr.trim(), "cannot tell whether the image has this path");
    }
    Ok(found)
}

/// Reads systemd-dissect's verdict. Helpers run with a cleared environment, so its
/// messages are the C locale's.
fn classify(success: bool, stderr: &str) -> Lookup {
    if success {
        return Lookup::Found;
    }
    let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim_end();
    if last.ends_with(": No such file or directory") {
        Lookup::Missing
    } else if last.ends_with(": Not a directory") {
        Lookup::NotADirectory
    } else {
        Lookup::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_systemd_dissect_answers() {
        assert_eq!(classify(true, ""), Lookup::Found);
        let missing = "Failed to open source path '/usr/lib/os-release' in image 'x.raw': No such file or directory\n";
        assert_eq!(classify(false, missing), Lookup::Missing);
        let file = "Failed to open source path '/opt/.kairos-ext-probe' in image 'x.raw': Not a directory\n";
        assert_eq!(classify(false, file), Lookup::NotADirectory);
        let verity = "Failed to set up verity: Operation not supported\n";
        assert_eq!(classify(false, verity), Lookup::Unknown);
    }

    #[test]
    fn os_release_blocks_the_whole_merge_before_254_only() {
        assert!(Blocker::OsRelease.blocks_whole_merge(Some(252)));
        assert!(Blocker::OsRelease.blocks_whole_merge(Some(253)));
        assert!(Blocker::OsRelease.blocks_whole_merge(None), "an unknown systemd gets the strict rule");
        assert!(!Blocker::OsRelease.blocks_whole_merge(Some(254)));
        assert!(Blocker::NotADirectory("/opt").blocks_whole_merge(Some(254)));
    }

    #[test]
    fn reasons_name_the_cause_and_what_it_costs() {
        let old = Blocker::OsRelease.into_error(Some(252)).to_string();
        assert!(old.contains("/usr/lib/os-release") && old.contains("merge nothing at all"), "{old}");
        let new = Blocker::OsRelease.into_error(Some(254)).to_string();
        assert!(new.contains("/usr/lib/os-release") && new.contains("skips"), "{new}");
        let opt = Blocker::NotADirectory("/opt").into_error(Some(254)).to_string();
        assert!(opt.contains("/opt is not a directory") && opt.contains("merge nothing at all"), "{opt}");
    }
}
