//! One job's state, shared between its worker thread, its bus object, the queue and
//! the task that announces its progress.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kairos_extensions_dbus::JobState;
use tokio::sync::Notify;

use crate::engine::progress::{Phase, Progress};

/// The externally visible state of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// Where the job is in its life.
    pub state: JobState,
    /// While queued, how many jobs must end before this one starts; 0 otherwise.
    pub queue_position: u32,
    /// The current phase.
    pub phase: Phase,
    /// The extension's name once known.
    pub name: String,
    /// Bytes through.
    pub bytes_done: u64,
    /// Bytes expected, 0 when unknown.
    pub bytes_total: u64,
    /// The error message of a failed job.
    pub error: String,
}

impl JobStatus {
    /// Percent done, 0–100.
    pub fn progress_percent(&self) -> u32 {
        match self.state {
            JobState::Done => 100,
            _ if self.bytes_total == 0 => 0,
            _ => u32::try_from(self.bytes_done.min(self.bytes_total) * 100 / self.bytes_total).unwrap_or(100),
        }
    }
}

/// One job's shared cells.
#[derive(Clone)]
pub struct JobCells {
    status: Arc<Mutex<JobStatus>>,
    cancel: Arc<AtomicBool>,
    /// Set by every change not yet announced.
    pub dirty: Arc<AtomicBool>,
    /// Wakes the announcer after a change, from any thread.
    pub changed: Arc<Notify>,
}

impl JobCells {
    /// A queued job that has not started.
    pub fn new() -> Self {
        Self {
            status: Arc::new(Mutex::new(JobStatus {
                state: JobState::Queued,
                queue_position: 0,
                phase: Phase::Resolving,
                name: String::new(),
                bytes_done: 0,
                bytes_total: 0,
                error: String::new(),
            })),
            cancel: Arc::new(AtomicBool::new(false)),
            dirty: Arc::new(AtomicBool::new(false)),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Asks the job to stop at its next safe point.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// A copy of the status now.
    pub fn status(&self) -> JobStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Changes the status; a real change wakes the announcer.
    pub fn update(&self, change: impl FnOnce(&mut JobStatus)) {
        if let Ok(mut status) = self.status.lock() {
            let before = status.clone();
            change(&mut status);
            if *status != before {
                self.dirty.store(true, Ordering::SeqCst);
                self.changed.notify_one();
            }
        }
    }
}

impl Default for JobCells {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for JobCells {
    fn phase(&self, phase: Phase) {
        self.update(|s| s.phase = phase);
    }

    fn bytes(&self, done: u64, total: Option<u64>) {
        self.update(|s| {
            s.bytes_done = done;
            s.bytes_total = total.unwrap_or(0);
        });
    }

    fn named(&self, name: &str) {
        self.update(|s| s.name = name.to_owned());
    }

    fn canceled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}
