//! Noticing changes made by others: files copied into the store, kairos-agent editing
//! links, a mask put in `/etc/extensions`, `systemd-sysext` run by hand.
//!
//! inotify reports changes to the store, the activation directory and the directories
//! systemd-sysext reads before it; the kernel flags `/proc/self/mountinfo` whenever the
//! mount table changes, which is what a merge or an unmerge does. Either wakes the
//! reconciler after a short pause, so a burst of changes (a copy, then a rename) is
//! handled once. A directory that does not exist yet (`/etc/extensions` usually) is
//! watched for through its parent, and watched itself once it appears.
//!
//! The events say which files changed, and so which extensions: only those are read
//! again ([`resync_touched`]), so that a change to one extension in a store of ten
//! thousand, ours included (we see our own changes too), costs a few `stat` calls. Files
//! that name no extension on their own (a store directory appearing, an overflowing
//! event queue) make it read the whole store.

use std::collections::{HashMap, HashSet};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kairos_extensions_dbus::{BootState, ExtensionName};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use zbus::Connection;

use super::resync::{Touched, resync, resync_touched};
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

/// What a watched directory is to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// The store: images, directories, and our own dot files.
    Store,
    /// The provenance records.
    Records,
    /// The runtime activation directory.
    Runtime,
    /// A boot-state directory of links.
    State,
    /// A directory systemd-sysext reads before ours.
    SearchedFirst,
    /// The parent of a missing directory, watched for it to appear.
    Parent,
}

/// What a batch of events asks to read again.
#[derive(Debug)]
enum Wanted {
    /// These extensions (and the merged set, always read again).
    Touched(Touched),
    /// The whole store.
    Everything,
}

impl Wanted {
    fn everything(&mut self) {
        *self = Self::Everything;
    }

    fn name(&mut self, name: &str) {
        let stem = name.strip_suffix(".raw").unwrap_or(name);
        match (&mut *self, ExtensionName::new(stem)) {
            (Self::Touched(touched), Ok(name)) => {
                touched.names.insert(name);
            }
            (Self::Touched(_), Err(_)) => self.everything(),
            (Self::Everything, _) => {}
        }
    }

    fn links(&mut self) {
        if let Self::Touched(touched) = self {
            touched.links = true;
        }
    }
}

/// Records what one event in a directory of `kind` asks to read again. Dot files are
/// ours (the intent record, the lock, staging, links being written) or hidden, which
/// systemd-sysext and the listing skip alike.
fn note(wanted: &mut Wanted, kind: Watched, flags: ReadFlags, file_name: Option<&str>) {
    let lost = ReadFlags::QUEUE_OVERFLOW | ReadFlags::IGNORED | ReadFlags::UNMOUNT;
    let gone = ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF;
    if flags.intersects(lost | gone) || kind == Watched::Parent {
        return wanted.everything();
    }
    let Some(name) = file_name else { return };
    if name.starts_with('.') {
        // The records directory appearing or going takes every record with it.
        if kind == Watched::Store && name == crate::engine::layout::META_DIR {
            wanted.everything();
        }
        return;
    }
    match kind {
        // A boot-state directory appearing whole may bring links with it.
        Watched::Store if BootState::ALL.iter().any(|s| s.as_str() == name) => wanted.everything(),
        Watched::Store | Watched::Runtime | Watched::SearchedFirst => wanted.name(name),
        Watched::Records => {
            if let Some(stem) = name.strip_suffix(".json") {
                wanted.name(stem);
            }
        }
        Watched::State => {
            wanted.links();
            wanted.name(name);
        }
        Watched::Parent => wanted.everything(),
    }
}

/// Watches `dirs` and the mount table until the connection goes away.
pub async fn run(shared: Arc<Shared>, connection: Connection, dirs: Vec<(Watched, PathBuf)>) {
    let inotify = match open_inotify() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the store; changes made by others show up only on the next call");
            return;
        }
    };
    let mut warned = HashSet::new();
    let mut kinds = HashMap::new();
    watch_dirs(&inotify, &dirs, &mut kinds, &mut warned);
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
        let wanted = drain(&inotify, &kinds);
        // Before reading: a directory created since is watched from now on, so no
        // change in it can fall between this reading and the next wake.
        watch_dirs(&inotify, &dirs, &mut kinds, &mut warned);
        if let Some(mounts) = &mounts {
            rearm_mountinfo(mounts);
        }
        let _busy = shared.activity.busy();
        let updated = match wanted {
            Wanted::Touched(touched) => resync_touched(&shared, &connection, touched).await,
            Wanted::Everything => resync(&shared, &connection).await,
        };
        if let Err(e) = updated {
            tracing::warn!(error = %e, "updating objects after an outside change failed");
        }
    }
}

fn open_inotify() -> io::Result<AsyncFd<OwnedFd>> {
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
    register(fd, Interest::READABLE)
}

/// Watches each of `dirs`, or the parent of one that does not exist, and remembers
/// what each watch is in `kinds`. Watching a directory again is harmless (the kernel
/// answers with the same watch), so this runs after every wake; each failure other than
/// a missing directory is logged once.
fn watch_dirs(
    inotify: &AsyncFd<OwnedFd>,
    dirs: &[(Watched, PathBuf)],
    kinds: &mut HashMap<i32, Watched>,
    warned: &mut HashSet<PathBuf>,
) {
    for (kind, dir) in dirs {
        let (watched, error) = match inotify::add_watch(inotify.get_ref(), dir, CHANGES) {
            Ok(wd) => {
                kinds.insert(wd, *kind);
                continue;
            }
            Err(rustix::io::Errno::NOENT) => match dir.parent().filter(|p| *p != Path::new("")) {
                Some(parent) => match inotify::add_watch(inotify.get_ref(), parent, APPEARING) {
                    Ok(wd) => {
                        // A parent that is itself watched keeps its own meaning.
                        kinds.entry(wd).or_insert(Watched::Parent);
                        continue;
                    }
                    Err(e) => (parent, Some(e)),
                },
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

/// Reads every pending event and says what they ask to read again.
fn drain(inotify: &AsyncFd<OwnedFd>, kinds: &HashMap<i32, Watched>) -> Wanted {
    let mut wanted = Wanted::Touched(Touched::default());
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut events = inotify::Reader::new(inotify.get_ref(), &mut buf);
    loop {
        match events.next() {
            Ok(event) => {
                // A watch we do not know (removed and replaced since) could be anything.
                let kind = kinds.get(&event.wd()).copied().unwrap_or(Watched::Parent);
                match event.file_name().map(|name| name.to_str()) {
                    Some(Err(_)) => wanted.everything(),
                    Some(Ok(name)) => note(&mut wanted, kind, event.events(), Some(name)),
                    None => note(&mut wanted, kind, event.events(), None),
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return wanted,
            Err(e) => {
                tracing::debug!(error = %e, "reading the store's events failed; reading the whole store");
                return Wanted::Everything;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn after(events: &[(Watched, ReadFlags, Option<&str>)]) -> Wanted {
        let mut wanted = Wanted::Touched(Touched::default());
        for (kind, flags, name) in events {
            note(&mut wanted, *kind, *flags, *name);
        }
        wanted
    }

    fn names(wanted: &Wanted) -> Option<(Vec<String>, bool)> {
        match wanted {
            Wanted::Touched(t) => Some((t.names.iter().map(|n| n.to_string()).collect(), t.links)),
            Wanted::Everything => None,
        }
    }

    #[test]
    fn our_own_enable_touches_one_extension() {
        // What `enable k3s --now` does: the intent record, a link written under a dot
        // name and renamed into place, an activation link, the merge.
        let wanted = after(&[
            (Watched::Store, ReadFlags::CREATE, Some(".intent")),
            (Watched::State, ReadFlags::CREATE, Some(".k3s.raw.42.tmp")),
            (Watched::State, ReadFlags::MOVED_FROM, Some(".k3s.raw.42.tmp")),
            (Watched::State, ReadFlags::MOVED_TO, Some("k3s.raw")),
            (Watched::Runtime, ReadFlags::MOVED_TO, Some("k3s.raw")),
            (Watched::Store, ReadFlags::DELETE, Some(".intent")),
        ]);
        assert_eq!(names(&wanted), Some((vec!["k3s".to_owned()], true)));
    }

    #[test]
    fn records_images_and_masks_name_their_extension() {
        let wanted = after(&[
            (Watched::Records, ReadFlags::MOVED_TO, Some("a.json")),
            (Watched::Records, ReadFlags::CREATE, Some(".write-1.json")),
            (Watched::Store, ReadFlags::CLOSE_WRITE, Some("b.raw")),
            (Watched::SearchedFirst, ReadFlags::CREATE, Some("c")),
        ]);
        assert_eq!(names(&wanted), Some((vec!["a".to_owned(), "b".to_owned(), "c".to_owned()], false)));
        assert_eq!(names(&after(&[])), Some((vec![], false)), "a merge alone reads the merged set");
    }

    #[test]
    fn what_names_no_extension_reads_everything() {
        for event in [
            (Watched::Store, ReadFlags::QUEUE_OVERFLOW, None),
            (Watched::Store, ReadFlags::CREATE | ReadFlags::ISDIR, Some("common")),
            (Watched::Store, ReadFlags::CREATE | ReadFlags::ISDIR, Some(".meta")),
            (Watched::Store, ReadFlags::CREATE, Some("not a name.raw")),
            (Watched::Runtime, ReadFlags::DELETE_SELF, None),
            (Watched::State, ReadFlags::IGNORED, None),
            (Watched::Parent, ReadFlags::CREATE | ReadFlags::ISDIR, Some("extensions")),
        ] {
            assert!(
                matches!(after(&[(Watched::Store, ReadFlags::CREATE, Some("a.raw")), event]), Wanted::Everything),
                "{event:?}"
            );
        }
    }
}
