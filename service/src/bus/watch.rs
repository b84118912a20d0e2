//! Noticing changes made by others: files copied into the store, kairos-agent editing
//! links, `systemd-sysext` run by hand.
//!
//! inotify reports changes to the store and the activation directories; the kernel
//! flags `/proc/self/mountinfo` whenever the mount table changes, which is what a merge
//! or an unmerge does. Either wakes the reconciler after a short pause, so a burst of
//! changes (a copy, then a rename) is handled once.

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use zbus::Connection;

use super::state::Shared;
use super::sync;

/// How long to wait for a burst of changes to settle.
const SETTLE: Duration = Duration::from_millis(150);

/// Watches `dirs` and the mount table until the connection goes away.
pub async fn run(shared: Arc<Shared>, connection: Connection, dirs: Vec<PathBuf>) {
    let inotify = match watch_dirs(&dirs) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the store; changes made by others show up only on the next call");
            return;
        }
    };
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
        if let Some(mounts) = &mounts {
            rearm_mountinfo(mounts);
        }
        let _busy = shared.activity.busy();
        if let Err(e) = sync::reconcile(&shared, &connection).await {
            tracing::warn!(error = %e, "updating objects after an outside change failed");
        }
    }
}

fn watch_dirs(dirs: &[PathBuf]) -> io::Result<AsyncFd<OwnedFd>> {
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    let mask = WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::ATTRIB
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF;
    for dir in dirs {
        if let Err(e) = inotify::add_watch(&fd, dir, mask) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory");
        }
    }
    register(fd, Interest::READABLE)
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
