//! Noticing changes made by others: files copied into the store, kairos-agent editing
//! links, a mask put in `/etc/extensions`, `systemd-sysext` run by hand.
//!
//! inotify reports changes to the store, the activation directory and the directories
//! systemd-sysext reads before it; the kernel flags `/proc/self/mountinfo` whenever the
//! mount table changes, which is what a merge or an unmerge does. Either wakes the
//! reconciler after a short pause, so a burst of changes (a copy, then a rename) is
//! handled once. A directory that does not exist yet (`/etc/extensions` usually) is
//! watched for through its parent, and watched itself once it appears.

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use zbus::Connection;

use super::resync::resync;
use super::state::Shared;

/// How long to wait for a burst of changes to settle.
const SETTLE: Duration = Duration::from_millis(150);

/// What a watched directory reports: every change to its entries, and its own end.
const CHANGES: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);

/// What the parent of a missing directory reports: entries appearing. Added to what
/// the parent already reports, which may be more: it can be a watched directory too.
const APPEARING: WatchFlags = WatchFlags::CREATE.union(WatchFlags::MOVED_TO).union(WatchFlags::MASK_ADD);

/// Watches `dirs` and the mount table until the connection goes away.
pub async fn run(shared: Arc<Shared>, connection: Connection, dirs: Vec<PathBuf>) {
    let inotify = match open_inotify() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the store; changes made by others show up only on the next call");
            return;
        }
    };
    let mut warned = HashSet::new();
    watch_dirs(&inotify, &dirs, &mut warned);
    let mounts = match open_mountinfo() {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::debug!(error = %e, "cannot watch the mount table");
            None
        }
    };
    loop {
        let woke = match &mounts {
            Some(mounts) => tokio::select! {
                r = inotify.readable() => r.map(|mut guard| guard.clear_ready()),
                r = mounts.ready(Interest::PRIORITY) => r.map(|mut guard| guard.clear_ready()),
            },
            None => inotify.readable().await.map(|mut guard| guard.clear_ready()),
        };
        if let Err(e) = woke {
            tracing::warn!(error = %e, "watching the store failed; giving up");
            return;
        }
        tokio::time::sleep(SETTLE).await;
        drain(&inotify);
        // Before reading: a directory created since is watched from now on, so no
        // change in it can fall between this reading and the next wake.
        watch_dirs(&inotify, &dirs, &mut warned);
        if let Some(mounts) = &mounts {
            rearm_mountinfo(mounts);
        }
        let _busy = shared.activity.busy();
        if let Err(e) = resync(&shared, &connection).await {
            tracing::warn!(error = %e, "updating objects after an outside change failed");
        }
    }
}

fn open_inotify() -> io::Result<AsyncFd<OwnedFd>> {
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    register(fd, Interest::READABLE)
}

/// Watches each of `dirs`, or the parent of one that does not exist. Watching a
/// directory again is harmless, so this runs after every wake; each failure other than
/// a missing directory is logged once.
fn watch_dirs(inotify: &AsyncFd<OwnedFd>, dirs: &[PathBuf], warned: &mut HashSet<PathBuf>) {
    for dir in dirs {
        let (watched, error) = match inotify::add_watch(inotify.get_ref(), dir, CHANGES) {
            Ok(_) => continue,
            Err(rustix::io::Errno::NOENT) => match dir.parent().filter(|p| *p != Path::new("")) {
                Some(parent) => (parent, inotify::add_watch(inotify.get_ref(), parent, APPEARING).err()),
                None => continue,
            },
            Err(e) => (dir.as_path(), Some(e)),
        };
        if let Some(e) = error
            && warned.insert(dir.clone())
        {
            tracing::warn!(dir = %watched.display(), error = %e, "cannot watch directory");
        }
    }
}

/// Reads and discards pending events: which file changed does not matter, the
/// reconciler re-reads everything.
fn drain(inotify: &AsyncFd<OwnedFd>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = rustix::io::read(inotify.get_ref(), &mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn open_mountinfo() -> io::Result<AsyncFd<OwnedFd>> {
    let fd = rustix::fs::open(
        "/proc/self/mountinfo",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    )?;
    let fd = register(fd, Interest::PRIORITY)?;
    rearm_mountinfo(&fd);
    Ok(fd)
}

/// Hands `fd` to the tokio reactor.
#[allow(unsafe_code)]
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor stays open
    // and names the same file description until the AsyncFd drops it; nothing else has
    // the number, so nobody can close or replace it behind the reactor's back.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

/// The kernel reports the next mount-table change only after the file is read again.
fn rearm_mountinfo(fd: &AsyncFd<OwnedFd>) {
    let _ = rustix::fs::seek(fd.get_ref(), rustix::fs::SeekFrom::Start(0));
    let mut buf = [0u8; 65536];
    while let Ok(n) = rustix::io::read(fd.get_ref(), &mut buf) {
        if n == 0 {
            break;
        }
    }
}
