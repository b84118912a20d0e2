//! What an install has changed so far, so that a failure at any later step can put
//! the store back as it was.

use std::path::PathBuf;

use kairos_extensions_dbus::BootState;

use super::super::durable;
use super::super::store::{Backup, Entry, Store, StoreError};

/// One change, and what undoing it takes.
enum Step {
    /// An image file was placed; `backup` holds the file it replaced, if any.
    Placed { file: String, backup: Option<Backup> },
    /// A provenance record was written over `previous` (or over nothing).
    Recorded { path: PathBuf, previous: Option<Vec<u8>> },
    /// A boot-state link was made.
    StateLinked { state: BootState, link: String },
    /// A boot-state link to `file` was taken away (to move it to a new name).
    StateUnlinked { state: BootState, link: String, file: String },
    /// A runtime link was made.
    RuntimeLinked { link: String },
    /// A runtime link to `file` was taken away.
    RuntimeUnlinked { link: String, file: String },
}

/// The changes of one install, in order.
pub struct Undo<'a> {
    store: &'a Store,
    steps: Vec<Step>,
    /// Files that go only once the install has succeeded (a replaced file of another
    /// name).
    delete_on_success: Vec<Entry>,
    /// Whether systemd-sysext was asked to merge what the install changed.
    merge_attempted: bool,
}

impl<'a> Undo<'a> {
    pub fn new(store: &'a Store) -> Self {
        Self { store, steps: Vec::new(), delete_on_success: Vec::new(), merge_attempted: false }
    }

    pub fn placed(&mut self, file: &str, backup: Option<Backup>) {
        self.steps.push(Step::Placed { file: file.to_owned(), backup });
    }

    pub fn recorded(&mut self, path: PathBuf, previous: Option<Vec<u8>>) {
        self.steps.push(Step::Recorded { path, previous });
    }

    pub fn state_linked(&mut self, state: BootState, link: &str) {
        self.steps.push(Step::StateLinked { state, link: link.to_owned() });
    }

    pub fn state_unlinked(&mut self, state: BootState, link: &str, file: &str) {
        self.steps.push(Step::StateUnlinked { state, link: link.to_owned(), file: file.to_owned() });
    }

    pub fn runtime_linked(&mut self, link: &str) {
        self.steps.push(Step::RuntimeLinked { link: link.to_owned() });
    }

    pub fn runtime_unlinked(&mut self, link: &str, file: &str) {
        self.steps.push(Step::RuntimeUnlinked { link: link.to_owned(), file: file.to_owned() });
    }

    /// The install is about to merge its images; undoing it then takes a merge too.
    pub fn merge_attempted(&mut self) {
        self.merge_attempted = true;
    }

    pub fn delete_on_success(&mut self, entry: Entry) {
        self.delete_on_success.push(entry);
    }

    /// The install succeeded: files kept aside go, and so do the files it replaced
    /// under another name.
    pub fn finish(self) -> Result<(), StoreError> {
        for entry in &self.delete_on_success {
            self.store.delete(entry)?;
        }
        Ok(())
    }

    /// Undoes every change, newest first. Each step is tried even when an earlier one
    /// fails; what could not be undone is logged for the operator. Returns whether a
    /// merge had been attempted, in which case the caller must merge what is there now.
    pub fn roll_back(mut self) -> bool {
        while let Some(step) = self.steps.pop() {
            let (what, outcome) = self.undo(step);
            match outcome {
                Ok(()) => tracing::info!(change = what, "undid a change of the failed install"),
                Err(e) => tracing::error!(change = what, error = %e, "could not undo a change of the failed install"),
            }
        }
        self.merge_attempted
    }

    fn undo(&self, step: Step) -> (String, Result<(), StoreError>) {
        match step {
            Step::Placed { file, backup: Some(backup) } => (format!("replaced {file}"), self.store.restore(backup)),
            Step::Placed { file, backup: None } => (format!("added {file}"), self.store.remove_image(&file)),
            Step::Recorded { path, previous } => {
                let what = format!("wrote {}", path.display());
                let outcome = match (&previous, path.parent(), path.file_name().and_then(|n| n.to_str())) {
                    (Some(bytes), Some(dir), Some(name)) => durable::write_file(dir, name, bytes),
                    _ => durable::remove_if_exists(&path).map(drop),
                };
                (
                    what,
                    outcome
                        .map_err(|source| StoreError::Io { context: "restoring a provenance record".into(), source }),
                )
            }
            Step::StateLinked { state, link } => {
                (format!("linked {link} in {state}"), self.store.unlink_state_name(state, &link).map(drop))
            }
            Step::StateUnlinked { state, link, file } => {
                (format!("unlinked {link} in {state}"), self.store.link_state(state, &link, &file))
            }
            Step::RuntimeLinked { link } => {
                (format!("activated {link}"), self.store.unlink_runtime_name(&link).map(drop))
            }
            Step::RuntimeUnlinked { link, file } => {
                (format!("deactivated {link}"), self.store.link_runtime(&link, &file))
            }
        }
    }
}
