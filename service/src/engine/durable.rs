//! Crash-safe file operations: nothing becomes visible half-written.
//!
//! Every change follows the same recipe: write a temporary file (or link) in the target
//! directory, fsync it, rename it over its final name, then fsync the directory so the
//! rename itself survives a power cut.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::failpoint;

/// Prefix of the temporary files [`write_file`] renames into place.
const WRITE_PREFIX: &str = ".write-";

/// Flushes a directory's entries to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `dir/file_name` with `contents`, readable by everyone (0644):
/// what the service writes this way (provenance records, the boot report) is what any
/// caller may read over the bus anyway.
pub fn write_file(dir: &Path, file_name: &str, contents: &[u8]) -> io::Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(WRITE_PREFIX)
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    failpoint::point("file written, not yet renamed");
    temp.persist(dir.join(file_name)).map_err(|e| e.error)?;
    failpoint::point("file renamed into place");
    sync_dir(dir)
}

/// Atomically creates or replaces the symlink `dir/link_name` pointing at `target`.
///
/// The link is made under a temporary name and renamed into place, so a reader sees
/// either the old entry or the new link, never neither.
pub fn replace_symlink(target: &Path, dir: &Path, link_name: &str) -> io::Result<()> {
    let temp_name = format!(".{link_name}.{}.tmp", std::process::id());
    let temp_path = dir.join(&temp_name);
    // A stale temp link from a crashed run would make symlink() fail; it is ours to drop.
    match fs::remove_file(&temp_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    symlink(target, &temp_path)?;
    failpoint::point("link made, not yet renamed");
    if let Err(e) = fs::rename(&temp_path, dir.join(link_name)) {
        let _ = fs::remove_file(&temp_path);
        return Err(e);
    }
    failpoint::point("link renamed into place");
    sync_dir(dir)
}

/// Whether `name` is a temporary name of [`write_file`] or [`replace_symlink`]: what a
/// process that died half-way through one of them leaves behind.
pub fn is_temporary_name(name: &str) -> bool {
    if name.starts_with(WRITE_PREFIX) {
        return true;
    }
    let link_and_pid = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")).and_then(|n| n.rsplit_once('.'));
    link_and_pid
        .is_some_and(|(link, pid)| !link.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes `path` if it exists; reports whether it did.
pub fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            failpoint::point("file removed");
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its parents with mode 0755 if missing.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_atomically() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        write_file(dir.path(), "a.json", b"one")?;
        write_file(dir.path(), "a.json", b"two")?;
        assert_eq!(fs::read(dir.path().join("a.json"))?, b"two");
        let mode = fs::metadata(dir.path().join("a.json"))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "everyone may read what the bus tells everyone anyway");
        let names: Vec<_> = fs::read_dir(dir.path())?.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")], "temp files left behind");
        Ok(())
    }

    #[test]
    fn temporary_names_are_only_ours() {
        for ours in [".write-a1B2c3", ".k3s.raw.1234.tmp", ".x.1.tmp"] {
            assert!(is_temporary_name(ours), "{ours}");
        }
        for theirs in ["k3s.raw", ".k3s.raw", ".k3s.raw.tmp", ".k3s.raw.12a.tmp", "..1.tmp", "write-x", ".lock"] {
            assert!(!is_temporary_name(theirs), "{theirs}");
        }
    }

    #[test]
    fn replace_symlink_overwrites_existing_link() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        replace_symlink(Path::new("../one.raw"), dir.path(), "x.raw")?;
        replace_symlink(Path::new("../two.raw"), dir.path(), "x.raw")?;
        assert_eq!(fs::read_link(dir.path().join("x.raw"))?, Path::new("../two.raw"));
        assert_eq!(fs::read_dir(dir.path())?.count(), 1);
        Ok(())
    }
}
