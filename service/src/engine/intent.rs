//! The intent record: every change to the store is all or nothing, across crashes too.
//!
//! A change writes what it is about to do to `<store>/.intent` before it does it: one
//! line of JSON per step, each flushed to disk before the step touches anything. A step
//! carries what undoing it takes (the link target it had, the record text it had, the
//! staging entry that keeps the image it had). Once every step is done, a `committed`
//! line follows; then the kept entries are deleted and the record goes.
//!
//! Whoever next takes the store lock (the service, the CLI, the boot activator) finds a
//! record left by a process that died and settles it before changing anything else:
//! without `committed` every step is undone, newest first; with it, the cleanup is
//! finished. Undoing a step is idempotent and right whether or not the step itself got
//! done, because each line is on disk before its step starts. So after a crash at any
//! instruction the store is exactly as before the change, or exactly as after it.
//!
//! The merge is state as well: a change that asked systemd-sysext to merge records a
//! `merge` step first, and settling such a record merges again what is there then.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use kairos_extensions_dbus::ExtensionName;
use serde::{Deserialize, Serialize};

use super::durable;
use super::failpoint;
use super::layout;
use super::meta::{self, Provenance};
use super::store::{Entry, IoContext, Place, Staged, Store, StoreError};
use super::updates::previous;

/// The record's file name inside the store.
pub const INTENT_FILE: &str = ".intent";
/// A record larger than this was not written by us.
const MAX_RECORD: u64 = 16 << 20;

/// One line of the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Line {
    /// The first line: what the change is, for the operator reading the log.
    Begin {
        /// A description such as `enable k3s for common`.
        operation: String,
        /// The process that made the change.
        pid: u32,
    },
    /// The entry `name` in `place` is about to change; it pointed at `before`, or was
    /// absent.
    Link {
        /// The directory.
        place: Place,
        /// The link's name.
        name: String,
        /// Its target as written, if it existed.
        before: Option<PathBuf>,
    },
    /// The store entry `file` is about to be placed, replaced or taken away. Its previous
    /// content is kept in staging as `kept`; without `kept` there was none, and undoing
    /// deletes the file.
    File {
        /// The entry's name in the store.
        file: String,
        /// The staging entry with the previous content.
        kept: Option<String>,
    },
    /// The provenance record of `name` is about to be written or removed; `before` is the
    /// text it had, if it existed.
    Record {
        /// The extension.
        name: ExtensionName,
        /// The previous record, verbatim.
        before: Option<String>,
    },
    /// The previous version of `name` (`.previous/<NAME>.raw`) is about to be set. Its
    /// image before is kept in staging as `kept`; without `kept` there was none, and
    /// undoing deletes it.
    Previous {
        /// The extension.
        name: ExtensionName,
        /// The staging entry with the previous image it had.
        kept: Option<String>,
    },
    /// The record of the previous version of `name` is about to be written or removed;
    /// `before` is the text it had, if it existed.
    PreviousRecord {
        /// The extension.
        name: ExtensionName,
        /// The previous text, verbatim.
        before: Option<String>,
    },
    /// systemd-sysext is about to be asked to merge.
    Merge,
    /// Every step is done: from here on the change is finished, never undone.
    Committed,
}

/// A record found at startup, left by a process that did not finish its change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// What the change was.
    pub operation: String,
    /// The steps it had begun, in order.
    pub steps: Vec<Line>,
    /// Whether it had committed.
    pub committed: bool,
}

impl Pending {
    /// Whether settling the change must merge again.
    pub fn merged(&self) -> bool {
        self.steps.contains(&Line::Merge)
    }
}

/// The record cannot be read or settled.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// The record is there but is not one we wrote.
    #[error("the intent record {path} is damaged ({reason}); the store is left as it is until someone looks at it")]
    Damaged {
        /// The record.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading, writing or settling failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn record_path(store: &Store) -> PathBuf {
    store.layout().store().join(INTENT_FILE)
}

/// Reads the record a dead process left, if there is one.
pub fn pending(store: &Store) -> Result<Option<Pending>, IntentError> {
    let path = record_path(store);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::Io { context: format!("opening {}", path.display()), source }.into()),
    };
    let damaged = |reason: String| IntentError::Damaged { path: path.clone(), reason };
    let size = file.metadata().context(|| format!("inspecting {}", path.display()))?.len();
    if size > MAX_RECORD {
        return Err(damaged(format!("{size} bytes")));
    }
    let mut lines = Vec::new();
    let mut torn = false;
    for raw in BufReader::new(file).split(b'\n') {
        let raw = raw.context(|| format!("reading {}", path.display()))?;
        if torn {
            return Err(damaged("a line that cannot be read is followed by more".into()));
        }
        match serde_json::from_slice::<Line>(&raw) {
            Ok(line) => lines.push(line),
            // Only the last line can be cut short by a crash; its step never started.
            Err(_) => torn = true,
        }
    }
    let mut lines = lines.into_iter();
    let operation = match lines.next() {
        Some(Line::Begin { operation, .. }) => operation,
        // Dying while the first line was written: nothing was changed yet.
        None => String::from("an unnamed change"),
        Some(other) => return Err(damaged(format!("it starts with {other:?}"))),
    };
    let mut steps = Vec::new();
    let mut committed = false;
    for line in lines {
        match line {
            Line::Begin { .. } => return Err(damaged("two beginnings".into())),
            Line::Committed => committed = true,
            step => steps.push(step),
        }
    }
    Ok(Some(Pending { operation, steps, committed }))
}

/// Settles a record left by a dead process: undoes its steps or finishes its cleanup.
/// Returns the settled change; the caller merges again when [`Pending::merged`] says so.
/// The record is removed only once every step is settled, so a failure here leaves it
/// for the next attempt.
pub fn settle(store: &Store) -> Result<Option<Pending>, IntentError> {
    let Some(pending) = pending(store)? else { return Ok(None) };
    if pending.committed {
        tracing::info!(operation = %pending.operation, "finishing a change that was interrupted after it was committed");
        discard_kept(store, &pending.steps)?;
    } else {
        tracing::warn!(operation = %pending.operation, steps = pending.steps.len(), "undoing a change that was interrupted");
        for step in pending.steps.iter().rev() {
            undo(store, step)?;
        }
    }
    remove_record(store)?;
    Ok(Some(pending))
}

/// Undoes one step. Right whether or not the step had been carried out.
fn undo(store: &Store, step: &Line) -> Result<(), StoreError> {
    match step {
        Line::Link { place, name, before } => store.set_link_target(*place, name, before.as_deref()),
        Line::File { file, kept: Some(kept) } => store.put_back(kept, file),
        Line::File { file, kept: None } => store.remove_file(file),
        Line::Record { name, before } => {
            let dir = store.layout().meta_dir();
            let file_name = format!("{name}.json");
            match before {
                Some(text) => durable::write_file(&dir, &file_name, text.as_bytes()),
                None => durable::remove_if_exists(&layout::join_file_name(&dir, &file_name)).map(drop),
            }
            .context(|| format!("restoring the provenance record of {name}"))
        }
        Line::Previous { name, kept: Some(kept) } => previous::put_back(store, kept, name),
        Line::Previous { name, kept: None } => previous::remove_image(store, name),
        Line::PreviousRecord { name, before } => previous::set_record_text(store, name, before.as_deref()),
        Line::Merge | Line::Begin { .. } | Line::Committed => Ok(()),
    }
}

fn discard_kept(store: &Store, steps: &[Line]) -> Result<(), StoreError> {
    for step in steps {
        if let Line::File { kept: Some(kept), .. } | Line::Previous { kept: Some(kept), .. } = step {
            store.discard_kept(kept)?;
        }
    }
    Ok(())
}

fn remove_record(store: &Store) -> Result<(), StoreError> {
    let path = record_path(store);
    if durable::remove_if_exists(&path).context(|| format!("removing {}", path.display()))? {
        let dir = store.layout().store();
        durable::sync_dir(&dir).context(|| format!("flushing {}", dir.display()))?;
    }
    Ok(())
}

/// A change in progress: each of its operations is written to the record before it is
/// carried out. Must be used with the store lock held, and ended with
/// [`Change::commit`] then [`Change::finish`], or with [`Change::roll_back`].
pub struct Change<'a> {
    store: &'a Store,
    operation: String,
    /// The open record; created at the first step, so a change that changes nothing
    /// writes nothing.
    record: Option<File>,
    steps: Vec<Line>,
    committed: bool,
}

impl<'a> Change<'a> {
    /// Starts a change described as `operation`.
    pub fn begin(store: &'a Store, operation: impl Into<String>) -> Self {
        Self { store, operation: operation.into(), record: None, steps: Vec::new(), committed: false }
    }

    /// Writes `line` to the record and flushes it, before the step it announces.
    fn log(&mut self, line: Line) -> Result<(), StoreError> {
        let path = record_path(self.store);
        if self.record.is_none() {
            let mut file = File::options()
                .create_new(true)
                .append(true)
                .open(&path)
                .context(|| format!("creating {}", path.display()))?;
            let begin = Line::Begin { operation: self.operation.clone(), pid: std::process::id() };
            append(&mut file, &begin).context(|| format!("writing {}", path.display()))?;
            let dir = self.store.layout().store();
            durable::sync_dir(&dir).context(|| format!("flushing {}", dir.display()))?;
            failpoint::point("intent record created");
            self.record = Some(file);
        }
        let file = self.record.as_mut().ok_or_else(|| StoreError::Io {
            context: format!("writing {}", path.display()),
            source: io::Error::other("the intent record is not open"),
        })?;
        append(file, &line).context(|| format!("writing {}", path.display()))?;
        failpoint::point("intent step recorded");
        if line != Line::Committed {
            self.steps.push(line);
        }
        Ok(())
    }

    /// Links `link_name` in `place` to the store file `file`; whether anything changed.
    pub fn link(&mut self, place: Place, link_name: &str, file: &str) -> Result<bool, StoreError> {
        self.store.check_slot(place, link_name)?;
        let before = self.store.link_target(place, link_name)?;
        if before.as_deref().and_then(|target| self.store.store_file_at(place, target)).as_deref() == Some(file) {
            return Ok(false);
        }
        self.log(Line::Link { place, name: link_name.to_owned(), before })?;
        self.store.link(place, link_name, file)?;
        Ok(true)
    }

    /// Removes every link in `place` that points at the store file `file`; the names of
    /// the links removed.
    pub fn unlink(&mut self, place: Place, file: &str) -> Result<Vec<String>, StoreError> {
        let mut removed = Vec::new();
        for link in self.store.links(place)? {
            if link.store_file.as_deref() == Some(file) && self.unlink_name(place, &link.name)? {
                removed.push(link.name);
            }
        }
        Ok(removed)
    }

    /// Removes the link `link_name` from `place`, whatever it points at; whether there
    /// was one.
    pub fn unlink_name(&mut self, place: Place, link_name: &str) -> Result<bool, StoreError> {
        let Some(before) = self.store.link_target(place, link_name)? else { return Ok(false) };
        self.log(Line::Link { place, name: link_name.to_owned(), before: Some(before) })?;
        self.store.unlink_name(place, link_name)
    }

    /// Makes `staged` the store file `file`. With `replace`, an existing file of that name
    /// is replaced, and kept until the change is over.
    ///
    /// Without `replace`, a file already there is refused before anything is logged: the
    /// record would say the file was new, and taking the change back would delete it.
    pub fn place(&mut self, staged: Staged, file: &str, replace: bool) -> Result<(), StoreError> {
        let exists = fs::symlink_metadata(self.store.path_of(file)).is_ok();
        if exists && !replace {
            return Err(StoreError::Exists(file.to_owned()));
        }
        let kept = if exists { Some(self.store.keep_copy(file)?) } else { None };
        self.log(Line::File { file: file.to_owned(), kept })?;
        self.store.commit(staged, file, replace)
    }

    /// Makes the existing file `from` (in the store's file system) the store file `file`,
    /// as a hard link: an installed image is kept until the change is over.
    pub fn place_link(&mut self, from: &Path, file: &str) -> Result<(), StoreError> {
        let exists = fs::symlink_metadata(self.store.path_of(file)).is_ok();
        let kept = if exists { Some(self.store.keep_copy(file)?) } else { None };
        self.log(Line::File { file: file.to_owned(), kept })?;
        previous::link_into_store(self.store, from, file)
    }

    /// Makes the store file `file` the previous version of `name`. The previous image it
    /// had is kept in staging until the change is over, under the name returned.
    pub fn set_previous(&mut self, name: &ExtensionName, file: &str) -> Result<Option<String>, StoreError> {
        let kept = if previous::exists(self.store, name) { Some(previous::keep_copy(self.store, name)?) } else { None };
        self.log(Line::Previous { name: name.clone(), kept: kept.clone() })?;
        previous::set_image(self.store, name, &self.store.path_of(file))?;
        Ok(kept)
    }

    /// Writes the record of the previous version of `name`, or removes it (`None`).
    pub fn set_previous_record(&mut self, name: &ExtensionName, record: Option<&Provenance>) -> Result<(), StoreError> {
        let before = previous::record_text(self.store, name)?;
        self.log(Line::PreviousRecord { name: name.clone(), before })?;
        let text = record.map(serde_json::to_string_pretty).transpose().map_err(|e| StoreError::Io {
            context: "writing a provenance record".into(),
            source: io::Error::other(e),
        })?;
        previous::set_record_text(self.store, name, text.as_deref())
    }

    /// Removes the previous version of `name` and its record, if there is one.
    pub fn remove_previous(&mut self, name: &ExtensionName) -> Result<(), StoreError> {
        if previous::exists(self.store, name) {
            let kept = previous::keep_copy(self.store, name)?;
            self.log(Line::Previous { name: name.clone(), kept: Some(kept) })?;
            previous::remove_image(self.store, name)?;
        }
        if previous::record_text(self.store, name)?.is_some() {
            self.set_previous_record(name, None)?;
        }
        Ok(())
    }

    /// Takes the store entry away (into staging, until the change is over).
    pub fn take_away(&mut self, entry: &Entry) -> Result<(), StoreError> {
        let kept = Store::kept_name(&entry.file_name);
        self.log(Line::File { file: entry.file_name.clone(), kept: Some(kept) })?;
        self.store.move_aside(&entry.file_name).map(drop)
    }

    /// Writes the provenance record.
    pub fn write_record(&mut self, record: &Provenance) -> Result<(), StoreError> {
        let name = ExtensionName::new(&record.name).map_err(|e| StoreError::Io {
            context: "writing the provenance record".into(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        let before = self.record_text(&name)?;
        self.log(Line::Record { name, before })?;
        meta::write(&self.store.layout().meta_dir(), record).context(|| "writing the provenance record".into())
    }

    /// Removes the provenance record of `name`, if there is one.
    pub fn remove_record(&mut self, name: &ExtensionName) -> Result<bool, StoreError> {
        let Some(before) = self.record_text(name)? else { return Ok(false) };
        self.log(Line::Record { name: name.clone(), before: Some(before) })?;
        let path = self.store.layout().meta_file(name);
        durable::remove_if_exists(&path).context(|| format!("removing {}", path.display()))?;
        let dir = self.store.layout().meta_dir();
        durable::sync_dir(&dir).context(|| format!("flushing {}", dir.display()))?;
        Ok(true)
    }

    fn record_text(&self, name: &ExtensionName) -> Result<Option<String>, StoreError> {
        super::store::read_text_if_exists(&self.store.layout().meta_file(name))
    }

    /// Announces a merge: settling this change after a crash merges again.
    pub fn merging(&mut self) -> Result<(), StoreError> {
        self.log(Line::Merge)
    }

    /// Whether a merge was announced: undoing the change then takes a merge as well.
    pub fn has_merged(&self) -> bool {
        self.steps.contains(&Line::Merge)
    }

    /// Marks every step as done: from now on the change is finished, never undone.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.record.is_some() {
            self.log(Line::Committed)?;
        }
        self.committed = true;
        Ok(())
    }

    /// Ends a committed change: deletes what it kept and the record. A failure is
    /// logged and left for the next process to settle; the change itself stands.
    pub fn finish(mut self) {
        debug_assert!(self.committed, "only a committed change is finished");
        let outcome = discard_kept(self.store, &self.steps).and_then(|()| self.close());
        if let Err(e) = outcome {
            tracing::warn!(operation = %self.operation, error = %e, "the change is done, but its cleanup is left for later");
        }
    }

    /// Undoes every step, newest first. Returns whether a merge had been announced, in
    /// which case the caller must merge what is there now. A step that cannot be undone
    /// keeps the record, so the next process tries again.
    pub fn roll_back(mut self) -> bool {
        let merged = self.has_merged();
        if self.record.is_none() {
            return merged;
        }
        let mut complete = true;
        for step in self.steps.iter().rev() {
            if let Err(e) = undo(self.store, step) {
                complete = false;
                tracing::error!(operation = %self.operation, step = ?step, error = %e, "could not undo a step");
            }
        }
        if complete && let Err(e) = self.close() {
            tracing::warn!(operation = %self.operation, error = %e, "undone, but the intent record stays");
        }
        merged
    }

    fn close(&mut self) -> Result<(), StoreError> {
        if self.record.take().is_some() {
            remove_record(self.store)?;
        }
        Ok(())
    }
}

fn append(file: &mut File, line: &Line) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
    bytes.push(b'\n');
    file.write_all(&bytes)?;
    file.sync_data()
}

/// Whether a record is waiting to be settled, without reading it.
pub fn is_pending(store: &Store) -> bool {
    Path::new(&record_path(store)).exists()
}

#[cfg(test)]
mod tests {
    use kairos_extensions_dbus::BootState;

    use super::*;
    use crate::engine::progress::Silent;
    use crate::engine::store::temp_store;

    fn staged(store: &Store, bytes: &[u8]) -> Staged {
        let mut staged = store.stage(1 << 20).expect("staging");
        staged.copy_from(bytes, None, &Silent).expect("stage bytes");
        staged
    }

    fn leftovers(store: &Store) -> usize {
        fs::read_dir(store.layout().tmp_dir()).map(|d| d.count()).unwrap_or(0)
    }

    #[test]
    fn a_change_that_changes_nothing_writes_nothing() {
        let (_root, store) = temp_store();
        let mut change = Change::begin(&store, "nothing");
        change.commit().expect("commit");
        change.finish();
        assert!(!is_pending(&store));
    }

    #[test]
    fn roll_back_puts_back_links_files_and_records() {
        let (_root, store) = temp_store();
        fs::write(store.path_of("a.raw"), b"old").expect("old image");
        store.link(Place::State(BootState::Active), "a.raw", "a.raw").expect("old link");
        let mut change = Change::begin(&store, "replace a");
        change.place(staged(&store, b"new"), "a.raw", true).expect("place");
        change.place(staged(&store, b"b"), "b.raw", false).expect("place b");
        change.link(Place::State(BootState::Common), "b.raw", "b.raw").expect("link");
        change.unlink(Place::State(BootState::Active), "a.raw").expect("unlink");
        assert!(is_pending(&store));
        assert!(!change.roll_back());
        assert_eq!(fs::read(store.path_of("a.raw")).expect("a"), b"old");
        assert!(!store.path_of("b.raw").exists());
        assert_eq!(store.links(Place::State(BootState::Common)).expect("links"), vec![]);
        assert_eq!(store.links(Place::State(BootState::Active)).expect("links").len(), 1);
        assert!(!is_pending(&store));
        assert_eq!(leftovers(&store), 0);
    }

    #[test]
    fn settling_an_uncommitted_record_undoes_it_and_a_committed_one_finishes_it() {
        let (_root, store) = temp_store();
        fs::write(store.path_of("a.raw"), b"old").expect("old image");
        let mut change = Change::begin(&store, "replace a");
        change.place(staged(&store, b"new"), "a.raw", true).expect("place");
        // The process dies here: the change is neither committed nor rolled back.
        std::mem::forget(change);
        let settled = settle(&store).expect("settle").expect("a pending change");
        assert!(!settled.committed);
        assert_eq!(fs::read(store.path_of("a.raw")).expect("a"), b"old");
        assert!(!is_pending(&store));

        let mut change = Change::begin(&store, "replace a");
        change.place(staged(&store, b"new"), "a.raw", true).expect("place");
        change.commit().expect("commit");
        std::mem::forget(change);
        let settled = settle(&store).expect("settle").expect("a pending change");
        assert!(settled.committed);
        assert_eq!(fs::read(store.path_of("a.raw")).expect("a"), b"new");
        assert_eq!(leftovers(&store), 0, "the kept image is deleted");
    }

    #[test]
    fn a_torn_last_line_is_a_step_that_never_started() {
        let (_root, store) = temp_store();
        let path = store.layout().store().join(INTENT_FILE);
        fs::write(&path, "{\"kind\":\"begin\",\"operation\":\"x\",\"pid\":1}\n{\"kind\":\"merge\"}\n{\"kind\":\"fi")
            .expect("record");
        let pending = pending(&store).expect("readable").expect("pending");
        assert_eq!(pending.steps, vec![Line::Merge]);
        fs::write(&path, "{\"kind\":\"begin\",\"operation\":\"x\",\"pid\":1}\ngarbage\n{\"kind\":\"merge\"}\n")
            .expect("record");
        assert!(matches!(super::pending(&store), Err(IntentError::Damaged { .. })));
    }

    #[test]
    fn removed_entries_and_records_come_back() {
        let (_root, store) = temp_store();
        fs::write(store.path_of("a.raw"), b"img").expect("image");
        let name = ExtensionName::new("a").expect("name");
        fs::write(store.layout().meta_file(&name), b"{\"record\":1}").expect("record");
        let entry = store.entries().expect("entries").into_iter().next().expect("one entry");
        let mut change = Change::begin(&store, "remove a");
        change.take_away(&entry).expect("take away");
        assert!(change.remove_record(&name).expect("remove record"));
        assert!(!store.path_of("a.raw").exists());
        change.roll_back();
        assert_eq!(fs::read(store.path_of("a.raw")).expect("a"), b"img");
        assert_eq!(fs::read(store.layout().meta_file(&name)).expect("record"), b"{\"record\":1}");
    }
}
