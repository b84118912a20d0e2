//! Local image files, by path or by a caller's file descriptor.
//!
//! A path or fd is hostile until proven a regular, readable file: a FIFO would block
//! the reader forever, a device could be endless, a directory is not an image. Paths
//! are opened non-blocking so that even a FIFO cannot stall the check itself.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FileType, OFlags};

/// Why a local source cannot be read as an image.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    /// The path cannot be opened.
    #[error("cannot open {path}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Not a regular file.
    #[error("{what} is a {kind}, not a regular file")]
    NotRegular {
        /// The path or "the file descriptor".
        what: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// The descriptor was not opened for reading (or is an `O_PATH` handle).
    #[error("the file descriptor is not open for reading")]
    NotReadable,
    /// Inspecting the file failed.
    #[error("cannot inspect {what}")]
    Stat {
        /// The path or "the file descriptor".
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Opens `path` for reading, refusing anything but a regular file.
pub fn open_path(path: &Path) -> Result<File, FileSourceError> {
    let shown = path.display().to_string();
    let file = File::options()
        .read(true)
        .custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(path)
        .map_err(|source| FileSourceError::Open { path: shown.clone(), source })?;
    require_regular(&file, &shown)?;
    // Regular files ignore O_NONBLOCK, so the descriptor reads normally from here on.
    Ok(file)
}

/// Checks a caller-supplied descriptor: a regular file, open for reading, not `O_PATH`.
pub fn check_fd(fd: impl AsFd) -> Result<(), FileSourceError> {
    let what = "the file descriptor";
    let flags =
        rustix::fs::fcntl_getfl(&fd).map_err(|e| FileSourceError::Stat { what: what.into(), source: e.into() })?;
    if flags.contains(OFlags::PATH) {
        return Err(FileSourceError::NotReadable);
    }
    let access = flags & OFlags::RWMODE;
    if access != OFlags::RDONLY && access != OFlags::RDWR {
        return Err(FileSourceError::NotReadable);
    }
    let stat = rustix::fs::fstat(&fd).map_err(|e| FileSourceError::Stat { what: what.into(), source: e.into() })?;
    kind_check(FileType::from_raw_mode(stat.st_mode), what)
}

fn require_regular(file: &File, what: &str) -> Result<(), FileSourceError> {
    let stat = rustix::fs::fstat(file).map_err(|e| FileSourceError::Stat { what: what.into(), source: e.into() })?;
    kind_check(FileType::from_raw_mode(stat.st_mode), what)
}

fn kind_check(kind: FileType, what: &str) -> Result<(), FileSourceError> {
    let name = match kind {
        FileType::RegularFile => return Ok(()),
        FileType::Directory => "directory",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Symlink => "symbolic link",
        FileType::Unknown => "file of unknown type",
    };
    Err(FileSourceError::NotRegular { what: what.into(), kind: name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_regular_files_only() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("a.raw");
        std::fs::write(&file, b"x")?;
        assert!(open_path(&file).is_ok());
        assert!(matches!(open_path(dir.path()), Err(FileSourceError::NotRegular { kind: "directory", .. })));
        assert!(matches!(
            open_path(Path::new("/dev/null")),
            Err(FileSourceError::NotRegular { kind: "character device", .. })
        ));
        assert!(matches!(open_path(&dir.path().join("missing")), Err(FileSourceError::Open { .. })));
        Ok(())
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0)?;
        assert!(matches!(open_path(&fifo), Err(FileSourceError::NotRegular { kind: "FIFO", .. })));
        Ok(())
    }

    #[test]
    fn checks_descriptors() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.raw");
        std::fs::write(&path, b"x")?;
        assert!(check_fd(File::open(&path)?).is_ok());
        let write_only = File::options().write(true).open(&path)?;
        assert!(matches!(check_fd(&write_only), Err(FileSourceError::NotReadable)));
        let o_path = File::options().read(true).custom_flags(OFlags::PATH.bits() as i32).open(&path)?;
        assert!(matches!(check_fd(&o_path), Err(FileSourceError::NotReadable)));
        assert!(matches!(check_fd(File::open(dir.path())?), Err(FileSourceError::NotRegular { .. })));
        Ok(())
    }
}
