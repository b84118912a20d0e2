//! The Kairos-compatible store on disk.
//!
//! ```text
//! <store>/<file>.raw                       images, replaced only by rename
//! <store>/{active,passive,recovery,common}/<NAME>.raw -> ../<file>.raw
//! <store>/.meta/<NAME>.json                provenance records
//! <store>/.tmp/                            staging, same filesystem
//! <runtime>/<NAME>.raw -> <store>/<file>.raw   activation for the running system
//! ```
//!
//! This module knows the layout and does the file work; it does not decide what an
//! extension is called or whether it fits the system (that is the engine's job).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kairos_extensions_dbus::BootState;
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::digest::Sha256Digest;
use super::layout::{self, LOCK_FILE, Layout, META_DIR, TMP_DIR};
use super::progress::Progress;
use super::{durable, failpoint};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem call failed; `context` says which.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The image is larger than `max_image_size`.
    #[error("image exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// A non-replacing commit found the file already there.
    #[error("{0} already exists in the store")]
    Exists(String),
    /// Staging was stopped on request.
    #[error("canceled")]
    Canceled,
    /// A boot-state or runtime entry exists that is not a link into the store.
    #[error("{path} exists and is not a link into the extension store; not touching it")]
    Foreign {
        /// The entry in the way.
        path: PathBuf,
    },
}

/// Adds a description of the operation to an `io::Error`.
pub trait IoContext<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io { context: context(), source })
    }
}

/// What kind of extension a store entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A disk image (`*.raw`).
    Image,
    /// A directory tree with `usr/lib/extension-release.d`.
    Directory,
}

/// An extension found at the top of the store.
#[derive(Debug, Clone)]
pub struct Entry {
    /// File name inside the store.
    pub file_name: String,
    /// Image or directory.
    pub kind: EntryKind,
    /// Its metadata (not following symlinks).
    pub meta: fs::Metadata,
}

impl Entry {
    /// The file name without `.raw`: what systemd would call it.
    pub fn stem(&self) -> &str {
        self.file_name.strip_suffix(".raw").unwrap_or(&self.file_name)
    }
}

/// An image being written into `.tmp/`, hashed and size-checked on the way.
///
/// Dropping it deletes the file, so an error or a cancellation at any step leaves
/// nothing behind. The file is `flock`ed while it lives, which is how a starting service
/// tells a crashed writer's leftovers from a download another process still runs.
pub struct Staged {
    temp: NamedTempFile,
    hasher: Sha256,
    written: u64,
    limit: u64,
}

impl Staged {
    /// Appends bytes, refusing to grow past the size limit.
    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let total = self.written.saturating_add(chunk.len() as u64);
        if total > self.limit {
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        if let Err(source) = self.temp.as_file_mut().write_all(chunk) {
            return Err(StoreError::Io { context: format!("writing {}", self.temp.path().display()), source });
        }
        self.hasher.update(chunk);
        self.written = total;
        Ok(())
    }

    /// Puts the staged bytes on the disk before anything reads them back. Verifying
    /// reads the image through a loop device, past the page cache: unflushed, a disk
    /// that cannot take the bytes (EIO, a thin pool out of space) would look like a
    /// broken image instead of the disk error it is.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.temp.as_file().sync_all().context(|| format!("flushing {}", self.temp.path().display()))
    }

    /// Copies everything from `reader`, reporting bytes and checking for cancellation
    /// between chunks.
    pub fn copy_from(
        &mut self,
        mut reader: impl Read,
        total: Option<u64>,
        progress: &dyn Progress,
    ) -> Result<(), StoreError> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            progress.bytes(self.written, total);
            if progress.canceled() {
                return Err(StoreError::Canceled);
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(StoreError::Io { context: "reading the source image".into(), source }),
            };
            self.write_chunk(&buf[..n])?;
        }
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.written
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> Sha256Digest {
        Sha256Digest::from_hasher(self.hasher.clone())
    }

    /// Where the staged file is, for reading it before commit.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }
}

/// Removes the entry `name` of `dir` durably; whether there was one.
fn remove_named(dir: &Path, name: &str) -> Result<bool, StoreError> {
    let removed = durable::remove_if_exists(&layout::join_file_name(dir, name))
        .context(|| format!("removing {name} from {}", dir.display()))?;
    if removed {
        durable::sync_dir(dir).context(|| format!("flushing {}", dir.display()))?;
    }
    Ok(removed)
}

/// A directory of activation links: a boot state's, or the running system's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// `<store>/<state>/`: enabled for that boot state.
    State(BootState),
    /// The runtime directory (`/run/extensions`): activated on the running system.
    Runtime,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::State(state) => write!(f, "{state}"),
            Self::Runtime => f.write_str("the runtime directory"),
        }
    }
}

/// Prefix of the staging entries that keep a store file's previous content while a
/// change is under way.
const KEPT_PREFIX: &str = "kept-";

/// Exclusive hold on the store for one mutating operation, across processes.
pub struct StoreLock(#[allow(dead_code)] File);

/// The on-disk store of one root.
#[derive(Debug, Clone)]
pub struct Store {
    layout: Layout,
}

impl Store {
    /// Opens the store described by `layout`, creating its directories when missing.
    pub fn open(layout: Layout) -> Result<Self, StoreError> {
        let store = Self { layout };
        let root = store.layout.store();
        let previous = super::updates::previous::dir(&store);
        for dir in [root.clone(), root.join(META_DIR), root.join(TMP_DIR), previous]
            .into_iter()
            .chain(BootState::ALL.iter().map(|s| store.layout.state_dir(*s)))
        {
            durable::ensure_dir(&dir).context(|| format!("creating {}", dir.display()))?;
        }
        fs::set_permissions(root.join(TMP_DIR), Permissions::from_mode(0o700))
            .context(|| "restricting the staging directory".into())?;
        Ok(store)
    }

    /// The store described by `layout` as it is, creating nothing: for readers, which
    /// must work on a bare root and on a read-only one.
    pub fn existing(layout: Layout) -> Self {
        Self { layout }
    }

    /// The layout this store lives in.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Refuses a store directory that has been replaced by a symlink: every change
    /// would land wherever it points, out of the service's sight. The kernel says why
    /// (`O_DIRECTORY | O_NOFOLLOW` gives `ENOTDIR`), and the message names the path.
    fn check_not_symlink(&self) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let root = self.layout.store();
        File::options()
            .read(true)
            .custom_flags((rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW).bits() as i32)
            .open(&root)
            .map(drop)
            .context(|| format!("opening the store {} (it must be a directory, not a symlink)", root.display()))
    }

    /// Takes the store's writer lock, waiting for another writer to finish.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        self.check_not_symlink()?;
        let path = self.layout.store().join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        file.lock().context(|| format!("locking {}", path.display()))?;
        Ok(StoreLock(file))
    }

    /// Removes what crashed writers left in `.tmp/`; returns how many entries went.
    ///
    /// Files still locked by a live writer are left alone.
    pub fn clean_staging(&self) -> Result<usize, StoreError> {
        let tmp = self.layout.tmp_dir();
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).context(|| format!("reading {}", tmp.display()))? {
            let entry = entry.context(|| format!("reading {}", tmp.display()))?;
            let path = entry.path();
            let file_type = entry.file_type().context(|| format!("inspecting {}", path.display()))?;
            if file_type.is_dir() {
                fs::remove_dir_all(&path).context(|| format!("removing {}", path.display()))?;
                removed += 1;
                continue;
            }
            if file_type.is_file() {
                let Ok(file) = File::open(&path) else { continue };
                if file.try_lock().is_err() {
                    continue;
                }
            }
            if durable::remove_if_exists(&path).context(|| format!("removing {}", path.display()))? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes the temporary entries that an interrupted writer left next to the links
    /// and records (`.<link>.<pid>.tmp` links, `.write-*` files); returns how many went.
    ///
    /// Only with the store lock held: every writer of these directories holds it, so
    /// whatever temporary entry is there now belongs to a process that died.
    pub fn clean_leftovers(&self) -> Result<usize, StoreError> {
        let mut dirs: Vec<PathBuf> = BootState::ALL.iter().map(|s| self.layout.state_dir(*s)).collect();
        dirs.push(self.layout.runtime());
        dirs.push(self.layout.meta_dir());
        dirs.push(super::updates::previous::dir(self));
        let mut removed = 0;
        for dir in dirs {
            let read = match fs::read_dir(&dir) {
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::Io { context: format!("reading {}", dir.display()), source }),
            };
            for dirent in read {
                let dirent = dirent.context(|| format!("reading {}", dir.display()))?;
                let Some(name) = dirent.file_name().to_str().map(str::to_owned) else { continue };
                if !durable::is_temporary_name(&name) {
                    continue;
                }
                let path = dirent.path();
                if durable::remove_if_exists(&path).context(|| format!("removing {}", path.display()))? {
                    tracing::info!(path = %path.display(), "removed the leftover of an interrupted change");
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Starts a staged image of at most `limit` bytes.
    pub fn stage(&self, limit: u64) -> Result<Staged, StoreError> {
        self.check_not_symlink()?;
        let tmp = self.layout.tmp_dir();
        let temp = tempfile::Builder::new()
            .prefix("stage-")
            .tempfile_in(&tmp)
            .context(|| format!("creating a file in {}", tmp.display()))?;
        temp.as_file().try_lock().map_err(|e| StoreError::Io {
            context: "locking the staged file".into(),
            source: io::Error::other(e.to_string()),
        })?;
        Ok(Staged { temp, hasher: Sha256::new(), written: 0, limit })
    }

    /// Makes a staged image visible as `file_name`, durably.
    ///
    /// Without `replace` an existing file is never overwritten, even by a racing writer.
    pub fn commit(&self, staged: Staged, file_name: &str, replace: bool) -> Result<(), StoreError> {
        let store = self.layout.store();
        let file = staged.temp.as_file();
        let staged_path = || staged.temp.path().display().to_string();
        file.set_permissions(Permissions::from_mode(0o644))
            .context(|| format!("setting the mode of {}", staged_path()))?;
        file.sync_all().context(|| format!("flushing {}", staged_path()))?;
        let target = layout::join_file_name(&store, file_name);
        let persisted = if replace { staged.temp.persist(&target) } else { staged.temp.persist_noclobber(&target) };
        if persisted.is_ok() {
            failpoint::point("image renamed into the store");
        }
        if let Err(e) = persisted {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                return Err(StoreError::Exists(file_name.to_owned()));
            }
            return Err(StoreError::Io {
                context: format!("moving the image to {}", target.display()),
                source: e.error,
            });
        }
        durable::sync_dir(&store).context(|| format!("flushing {}", store.display()))?;
        durable::sync_dir(&self.layout.tmp_dir()).context(|| "flushing the staging directory".into())
    }

    /// Lists the extensions at the top of the store. A file removed between reading the
    /// directory and looking at the file is left out, as a listing a moment later would
    /// leave it: the service reads the store without the lock that changes hold.
    pub fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        let store = self.layout.store();
        let mut entries = Vec::new();
        for dirent in fs::read_dir(&store).context(|| format!("reading {}", store.display()))? {
            let dirent = dirent.context(|| format!("reading {}", store.display()))?;
            let Some(file_name) = dirent.file_name().to_str().map(str::to_owned) else { continue };
            if file_name.starts_with('.') || BootState::ALL.iter().any(|s| s.as_str() == file_name) {
                continue;
            }
            let meta = match dirent.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StoreError::Io { context: format!("inspecting {file_name}"), source }),
            };
            if let Some(kind) = entry_kind(&dirent.path(), &file_name, &meta) {
                entries.push(Entry { file_name, kind, meta });
            }
        }
        entries.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        Ok(entries)
    }

    /// The store entry called `file_name`, as [`Store::entries`] would list it; `None`
    /// when there is no such file or it is not an extension. One `lstat` instead of a
    /// walk of the store, for the changes that concern one extension.
    pub fn entry(&self, file_name: &str) -> Result<Option<Entry>, StoreError> {
        if file_name.starts_with('.') || BootState::ALL.iter().any(|s| s.as_str() == file_name) {
            return Ok(None);
        }
        let path = self.path_of(file_name);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { context: format!("inspecting {file_name}"), source }),
        };
        Ok(entry_kind(&path, file_name, &meta).map(|kind| Entry { file_name: file_name.to_owned(), kind, meta }))
    }

    /// For every store file, the boot states it is enabled in.
    pub fn enablement(&self) -> Result<BTreeMap<String, BTreeSet<BootState>>, StoreError> {
        let mut map: BTreeMap<String, BTreeSet<BootState>> = BTreeMap::new();
        for state in BootState::ALL {
            for link in self.links_in(&self.layout.state_dir(state), &self.state_dir_system(state))? {
                if let Some(file) = link.store_file {
                    map.entry(file).or_default().insert(state);
                }
            }
        }
        Ok(map)
    }

    /// The activation links in the runtime directory.
    pub fn runtime_links(&self) -> Result<Vec<Link>, StoreError> {
        self.links_in(&self.layout.runtime(), self.layout.runtime_system())
    }

    /// The links in a boot-state directory.
    pub fn state_links(&self, state: BootState) -> Result<Vec<Link>, StoreError> {
        self.links_in(&self.layout.state_dir(state), &self.state_dir_system(state))
    }

    fn state_dir_system(&self, state: BootState) -> PathBuf {
        self.layout.store_system().join(state.as_str())
    }

    /// The links in `dir`; one removed between reading the directory and reading the
    /// link is left out, as in [`Store::entries`].
    fn links_in(&self, dir: &Path, dir_system: &Path) -> Result<Vec<Link>, StoreError> {
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { context: format!("reading {}", dir.display()), source }),
        };
        let mut links = Vec::new();
        for dirent in read {
            let dirent = dirent.context(|| format!("reading {}", dir.display()))?;
            let Some(name) = dirent.file_name().to_str().map(str::to_owned) else { continue };
            if name.starts_with('.') {
                continue;
            }
            let path = dirent.path();
            let target = match fs::read_link(&path) {
                Ok(target) => target,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    links.push(Link { name, store_file: None, is_symlink: false });
                    continue;
                }
                Err(source) => {
                    return Err(StoreError::Io { context: format!("reading link {}", path.display()), source });
                }
            };
            let store_file = self.store_file_of(dir_system, &target);
            links.push(Link { name, store_file, is_symlink: true });
        }
        links.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(links)
    }

    /// The store file a link target points at, if it points into the store.
    ///
    /// Absolute targets are system paths (kairos-agent writes those); relative ones are
    /// taken from the link's own directory. Both are resolved lexically. A target that is
    /// a boot-state link is followed one step, as systemd would: immucore activates an
    /// extension with `/run/extensions/x.raw -> <store>/common/x.raw`.
    fn store_file_of(&self, link_dir_system: &Path, target: &Path) -> Option<String> {
        let resolved = layout::normalize(&link_dir_system.join(target));
        let parent = resolved.parent()?;
        if parent == self.layout.store_system() {
            let name = resolved.file_name()?.to_str()?;
            return (!name.starts_with('.')).then(|| name.to_owned());
        }
        let through_state = parent.parent() == Some(self.layout.store_system())
            && BootState::ALL.iter().any(|s| parent.file_name() == Some(std::ffi::OsStr::new(s.as_str())));
        if !through_state {
            return None;
        }
        let inner = fs::read_link(self.layout.host(&resolved)).ok()?;
        let resolved = layout::normalize(&parent.join(inner));
        if resolved.parent() != Some(self.layout.store_system()) {
            return None;
        }
        let name = resolved.file_name()?.to_str()?;
        (!name.starts_with('.')).then(|| name.to_owned())
    }

    /// Links `link_name` in `state`'s directory to the store file `file_name`.
    ///
    /// A link that already resolves into the store is replaced; anything else in the
    /// way (a regular file, a link elsewhere) is left alone and reported.
    pub fn link_state(&self, state: BootState, link_name: &str, file_name: &str) -> Result<(), StoreError> {
        let dir = self.layout.state_dir(state);
        self.refuse_foreign_entry(&dir, &self.state_dir_system(state), link_name)?;
        let target = Path::new("..").join(file_name);
        durable::replace_symlink(&target, &dir, link_name)
            .context(|| format!("enabling {link_name} in {}", dir.display()))
    }

    /// Links `link_name` in the runtime directory to the store file `file_name`.
    pub fn link_runtime(&self, link_name: &str, file_name: &str) -> Result<(), StoreError> {
        let dir = self.layout.runtime();
        durable::ensure_dir(&dir).context(|| format!("creating {}", dir.display()))?;
        self.refuse_foreign_entry(&dir, self.layout.runtime_system(), link_name)?;
        let target = self.layout.store_system().join(file_name);
        durable::replace_symlink(&target, &dir, link_name)
            .context(|| format!("activating {link_name} in {}", dir.display()))
    }

    fn refuse_foreign_entry(&self, dir: &Path, dir_system: &Path, link_name: &str) -> Result<(), StoreError> {
        let path = layout::join_file_name(dir, link_name);
        match fs::read_link(&path) {
            Ok(target) if self.store_file_of(dir_system, &target).is_some() => Ok(()),
            Ok(_) => Err(StoreError::Foreign { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(StoreError::Foreign { path }),
            Err(source) => Err(StoreError::Io { context: format!("inspecting {}", path.display()), source }),
        }
    }

    /// Removes every link in `state`'s directory that points at `file_name`.
    pub fn unlink_state(&self, state: BootState, file_name: &str) -> Result<bool, StoreError> {
        let dir = self.layout.state_dir(state);
        let links = self.state_links(state)?;
        self.unlink_matching(&dir, &links, file_name)
    }

    /// Removes every runtime activation link that points at `file_name`.
    pub fn unlink_runtime(&self, file_name: &str) -> Result<bool, StoreError> {
        let links = self.runtime_links()?;
        self.unlink_matching(&self.layout.runtime(), &links, file_name)
    }

    /// Removes the runtime activation link called `link_name`, whatever it points at.
    pub fn unlink_runtime_name(&self, link_name: &str) -> Result<bool, StoreError> {
        remove_named(&self.layout.runtime(), link_name)
    }

    fn unlink_matching(&self, dir: &Path, links: &[Link], file_name: &str) -> Result<bool, StoreError> {
        let mut removed = false;
        for link in links.iter().filter(|l| l.store_file.as_deref() == Some(file_name)) {
            let path = layout::join_file_name(dir, &link.name);
            removed |= durable::remove_if_exists(&path).context(|| format!("removing {}", path.display()))?;
        }
        if removed {
            durable::sync_dir(dir).context(|| format!("flushing {}", dir.display()))?;
        }
        Ok(removed)
    }

    /// The directory of `place`, in this process's view and as the system sees it.
    fn place_dirs(&self, place: Place) -> (PathBuf, PathBuf) {
        match place {
            Place::State(state) => (self.layout.state_dir(state), self.state_dir_system(state)),
            Place::Runtime => (self.layout.runtime(), self.layout.runtime_system().to_path_buf()),
        }
    }

    /// The links in `place`.
    pub fn links(&self, place: Place) -> Result<Vec<Link>, StoreError> {
        let (dir, dir_system) = self.place_dirs(place);
        self.links_in(&dir, &dir_system)
    }

    /// The store file that a link in `place` with `target` points at, if any.
    pub fn store_file_at(&self, place: Place, target: &Path) -> Option<String> {
        self.store_file_of(&self.place_dirs(place).1, target)
    }

    /// Links `link_name` in `place` to the store file `file_name`.
    pub fn link(&self, place: Place, link_name: &str, file_name: &str) -> Result<(), StoreError> {
        match place {
            Place::State(state) => self.link_state(state, link_name, file_name),
            Place::Runtime => self.link_runtime(link_name, file_name),
        }
    }

    /// Where the link `link_name` in `place` points, exactly as written; `None` when
    /// there is no such entry. Anything but a symlink there is foreign.
    pub fn link_target(&self, place: Place, link_name: &str) -> Result<Option<PathBuf>, StoreError> {
        let path = layout::join_file_name(&self.place_dirs(place).0, link_name);
        match fs::read_link(&path) {
            Ok(target) => Ok(Some(target)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Err(StoreError::Foreign { path }),
            Err(source) => Err(StoreError::Io { context: format!("reading link {}", path.display()), source }),
        }
    }

    /// Puts the link `link_name` in `place` back to `target` exactly as it was written,
    /// or removes it when `target` is `None`. Undoing a change uses this.
    pub fn set_link_target(&self, place: Place, link_name: &str, target: Option<&Path>) -> Result<(), StoreError> {
        let dir = self.place_dirs(place).0;
        match target {
            Some(target) => durable::replace_symlink(target, &dir, link_name)
                .context(|| format!("restoring {link_name} in {}", dir.display())),
            None => remove_named(&dir, link_name).map(drop),
        }
    }

    /// Removes the entry `link_name` from `place`, whatever it points at; whether there
    /// was one.
    pub fn unlink_name(&self, place: Place, link_name: &str) -> Result<bool, StoreError> {
        remove_named(&self.place_dirs(place).0, link_name)
    }

    /// Fails as [`Store::link`] would when something foreign sits where the link would
    /// go, without changing anything.
    pub fn check_slot(&self, place: Place, link_name: &str) -> Result<(), StoreError> {
        let (dir, dir_system) = self.place_dirs(place);
        self.refuse_foreign_entry(&dir, &dir_system, link_name)
    }

    /// The staging name that keeps the previous content of the store file `file_name`
    /// while a change is under way.
    pub fn kept_name(file_name: &str) -> String {
        format!("{KEPT_PREFIX}{file_name}")
    }

    /// Keeps the current content of the store file `file_name` in staging as a second
    /// hard link (nothing is copied), so that replacing the file can be undone. Returns
    /// the kept entry's name.
    pub fn keep_copy(&self, file_name: &str) -> Result<String, StoreError> {
        let kept = Self::kept_name(file_name);
        let tmp = self.layout.tmp_dir();
        let kept_path = layout::join_file_name(&tmp, &kept);
        durable::remove_if_exists(&kept_path).context(|| format!("clearing {}", kept_path.display()))?;
        fs::hard_link(self.path_of(file_name), &kept_path).context(|| format!("keeping {file_name} aside"))?;
        failpoint::point("previous image kept aside");
        durable::sync_dir(&tmp).context(|| "flushing the staging directory".into())?;
        Ok(kept)
    }

    /// Moves the store entry `file_name` (image or directory) into staging, so that
    /// removing it can be undone until the change is committed. Returns whether there
    /// was one.
    pub fn move_aside(&self, file_name: &str) -> Result<bool, StoreError> {
        let kept_path = layout::join_file_name(&self.layout.tmp_dir(), &Self::kept_name(file_name));
        match fs::rename(self.path_of(file_name), &kept_path) {
            Ok(()) => failpoint::point("store entry moved aside"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(StoreError::Io { context: format!("moving {file_name} aside"), source }),
        }
        self.sync_store_and_staging()?;
        Ok(true)
    }

    /// Puts the entry kept as `kept` back as the store file `file_name`, over whatever
    /// is there now. Nothing to do when nothing is kept under that name (the change
    /// never got to move it, or it was already put back).
    pub fn put_back(&self, kept: &str, file_name: &str) -> Result<(), StoreError> {
        let kept_path = layout::join_file_name(&self.layout.tmp_dir(), kept);
        match fs::rename(&kept_path, self.path_of(file_name)) {
            Ok(()) => failpoint::point("kept entry put back"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StoreError::Io { context: format!("putting {file_name} back"), source }),
        }
        self.sync_store_and_staging()
    }

    /// Deletes the entry kept as `kept` (file or directory), once the change that kept
    /// it is committed.
    pub fn discard_kept(&self, kept: &str) -> Result<(), StoreError> {
        let path = layout::join_file_name(&self.layout.tmp_dir(), kept);
        let removed = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path).map(|()| true),
            Ok(_) => durable::remove_if_exists(&path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
        .context(|| format!("removing {}", path.display()))?;
        if removed {
            failpoint::point("kept entry discarded");
        }
        Ok(())
    }

    /// Removes the image file `file_name`, if it is there.
    pub fn remove_file(&self, file_name: &str) -> Result<(), StoreError> {
        remove_named(&self.layout.store(), file_name).map(drop)
    }

    fn sync_store_and_staging(&self) -> Result<(), StoreError> {
        let store = self.layout.store();
        durable::sync_dir(&store).context(|| format!("flushing {}", store.display()))?;
        durable::sync_dir(&self.layout.tmp_dir()).context(|| "flushing the staging directory".into())
    }

    /// Fails as [`Store::link_state`] would when something foreign sits where the link
    /// would go, without changing anything.
    pub fn check_state_slot(&self, state: BootState, link_name: &str) -> Result<(), StoreError> {
        self.refuse_foreign_entry(&self.layout.state_dir(state), &self.state_dir_system(state), link_name)
    }

    /// Fails as [`Store::link_runtime`] would when something foreign sits where the
    /// link would go, without changing anything.
    pub fn check_runtime_slot(&self, link_name: &str) -> Result<(), StoreError> {
        self.refuse_foreign_entry(&self.layout.runtime(), self.layout.runtime_system(), link_name)
    }

    /// Opens a store file for reading.
    pub fn open_file(&self, file_name: &str) -> Result<File, StoreError> {
        let path = layout::join_file_name(&self.layout.store(), file_name);
        File::open(&path).context(|| format!("opening {}", path.display()))
    }

    /// The host path of a store file.
    pub fn path_of(&self, file_name: &str) -> PathBuf {
        layout::join_file_name(&self.layout.store(), file_name)
    }
}

/// The text of the file at `path`, kept verbatim to undo a change of it; `None` when
/// there is no such file.
pub fn read_text_if_exists(path: &Path) -> Result<Option<String>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| StoreError::Io {
            context: format!("reading {}", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io { context: format!("reading {}", path.display()), source }),
    }
}

/// What the store entry at `path` is, from its own metadata (not following symlinks).
fn entry_kind(path: &Path, file_name: &str, meta: &fs::Metadata) -> Option<EntryKind> {
    if meta.is_file() && file_name.ends_with(".raw") {
        Some(EntryKind::Image)
    } else if meta.is_dir() && path.join("usr/lib/extension-release.d").is_dir() {
        Some(EntryKind::Directory)
    } else {
        tracing::debug!(file = %file_name, "ignoring store entry that is not an extension");
        None
    }
}

/// An entry in a boot-state or runtime directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The entry's own name (what systemd names the image after).
    pub name: String,
    /// The store file it points at, if it is a link into the store.
    pub store_file: Option<String>,
    /// Whether the entry is a symlink at all.
    pub is_symlink: bool,
}

/// A cheap identity for a file's content, to know when cached facts about it go stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileKey {
    /// The key of a file as `meta` describes it.
    pub fn of(meta: &fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The modification time in nanoseconds since the epoch.
    pub fn mtime_ns(&self) -> i128 {
        self.mtime_ns
    }
}

/// A store in a fresh temporary root, for tests across the engine.
#[cfg(test)]
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let root = tempfile::tempdir().expect("temporary root");
    let layout = Layout::new(root.path(), Path::new("/var/lib/kairos/extensions"), Path::new("/run/extensions"))
        .expect("a valid layout");
    let store = Store::open(layout).expect("a store in the temporary root");
    (root, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> io::Result<(tempfile::TempDir, Store)> {
        let root = tempfile::tempdir()?;
        let layout = Layout::new(root.path(), Path::new("/var/lib/kairos/extensions"), Path::new("/run/extensions"))
            .map_err(io::Error::other)?;
        let store = Store::open(layout).map_err(io::Error::other)?;
        Ok((root, store))
    }

    #[test]
    fn staging_enforces_the_limit_and_cleans_up() -> Result<(), Box<dyn std::error::Error>> {
        let (_root, store) = store()?;
        let mut staged = store.stage(10)?;
        staged.write_chunk(b"0123456789")?;
        assert!(matches!(staged.write_chunk(b"x"), Err(StoreError::TooLarge { limit: 10 })));
        drop(staged);
        assert_eq!(fs::read_dir(store.layout().tmp_dir())?.count(), 0);
        Ok(())
    }

    #[test]
    fn a_store_replaced_by_a_symlink_is_refused_naming_it() -> Result<(), Box<dyn std::error::Error>> {
        let (root, store) = store()?;
        let path = store.layout().store();
        let elsewhere = root.path().join("elsewhere");
        fs::rename(&path, &elsewhere)?;
        std::os::unix::fs::symlink(&elsewhere, &path)?;
        for refused in [store.lock().map(drop), store.stage(10).map(drop)] {
            let Err(StoreError::Io { context, source }) = refused else { panic!("a symlinked store must be refused") };
            assert_eq!(source.raw_os_error(), Some(20), "ENOTDIR, from O_DIRECTORY | O_NOFOLLOW: {source}");
            assert!(context.contains(&path.display().to_string()), "{context}");
        }
        assert_eq!(fs::read_dir(elsewhere.join(TMP_DIR))?.count(), 0, "nothing staged where the link points");
        Ok(())
    }

    #[test]
    fn commit_never_clobbers_without_replace() -> Result<(), Box<dyn std::error::Error>> {
        let (_root, store) = store()?;
        let mut staged = store.stage(100)?;
        staged.write_chunk(b"one")?;
        store.commit(staged, "a.raw", false)?;
        let mut staged = store.stage(100)?;
        staged.write_chunk(b"two")?;
        assert!(matches!(store.commit(staged, "a.raw", false), Err(StoreError::Exists(_))));
        assert_eq!(fs::read(store.path_of("a.raw"))?, b"one");
        let mut staged = store.stage(100)?;
        staged.write_chunk(b"three")?;
        store.commit(staged, "a.raw", true)?;
        assert_eq!(fs::read(store.path_of("a.raw"))?, b"three");
        assert_eq!(fs::read_dir(store.layout().tmp_dir())?.count(), 0);
        Ok(())
    }

    #[test]
    fn clean_staging_spares_files_a_live_writer_holds() -> Result<(), Box<dyn std::error::Error>> {
        let (_root, store) = store()?;
        let live = store.stage(100)?;
        fs::write(store.layout().tmp_dir().join("stage-crashed"), b"partial")?;
        assert_eq!(store.clean_staging()?, 1);
        assert!(live.path().exists());
        Ok(())
    }

    #[test]
    fn understands_kairos_agent_links() -> Result<(), Box<dyn std::error::Error>> {
        let (_root, store) = store()?;
        let dir = store.layout().state_dir(BootState::Active);
        fs::write(store.path_of("k3s.sysext.raw"), b"img")?;
        // kairos-agent writes absolute system paths; we write relative ones.
        std::os::unix::fs::symlink("/var/lib/kairos/extensions/k3s.sysext.raw", dir.join("k3s.sysext.raw"))?;
        store.link_state(BootState::Common, "k3s.raw", "k3s.sysext.raw")?;
        std::os::unix::fs::symlink("/etc/passwd", dir.join("stray.raw"))?;
        let map = store.enablement()?;
        let states: Vec<_> = map.get("k3s.sysext.raw").into_iter().flatten().copied().collect();
        assert_eq!(states, [BootState::Active, BootState::Common]);
        assert_eq!(map.len(), 1, "the stray link must not count: {map:?}");
        Ok(())
    }

    #[test]
    fn understands_immucore_activation_through_a_boot_state_link() -> Result<(), Box<dyn std::error::Error>> {
        let (_root, store) = store()?;
        fs::write(store.path_of("k3s.raw"), b"img")?;
        store.link_state(BootState::Common, "k3s.raw", "k3s.raw")?;
        let runtime = store.layout().runtime();
        fs::create_dir_all(&runtime)?;
        std::os::unix::fs::symlink("/var/lib/kairos/extensions/common/k3s.raw", runtime.join("k3s.raw"))?;
        std::os::unix::fs::symlink("/var/lib/kairos/extensions/common/absent.raw", runtime.join("absent.raw"))?;
        let links = store.runtime_links()?;
        let k3s = links.iter().find(|l| l.name == "k3s.raw").map(|l| l.store_file.clone());
        assert_eq!(k3s, Some(Some("k3s.raw".to_owned())));
        let absent = links.iter().find(|l| l.name == "absent.raw").map(|l| l.store_file.clone());
        assert_eq!(absent, Some(None), "a link to a missing boot-state link leads nowhere");
        Ok(())
    }

    #[test]
    fn never_replaces_foreign_entries() -> Result<(), Box<dyn std::error::Error>> {
        let (_root, store) = store()?;
        let dir = store.layout().state_dir(BootState::Common);
        fs::write(dir.join("x.raw"), b"a regular file someone put here")?;
        assert!(matches!(store.link_state(BootState::Common, "x.raw", "x.raw"), Err(StoreError::Foreign { .. })));
        assert_eq!(fs::read(dir.join("x.raw"))?, b"a regular file someone put here");
        Ok(())
    }
}
