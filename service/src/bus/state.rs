//! What the bus objects share: the engine, the jobs, the exported snapshot, activity.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::engine::{Engine, Extension};

use super::job::JobTable;

/// State shared by every object the service exports.
pub struct Shared {
    /// The engine doing the work.
    pub engine: Arc<Engine>,
    /// Running jobs.
    pub jobs: JobTable,
    /// When the service was last busy, for idle exit.
    pub activity: Activity,
    /// The extensions as last exported, by name.
    pub exported: RwLock<BTreeMap<String, Arc<RwLock<Extension>>>>,
    /// Names merged at the last look.
    pub merged: RwLock<Vec<String>>,
    /// Serialises reconciliation so signals come out in order.
    pub reconciling: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Shared state around `engine`.
    pub fn new(engine: Arc<Engine>) -> Arc<Self> {
        let max_jobs = engine.config().max_jobs as usize;
        Arc::new(Self {
            engine,
            jobs: JobTable::new(max_jobs),
            activity: Activity::default(),
            exported: RwLock::default(),
            merged: RwLock::default(),
            reconciling: tokio::sync::Mutex::new(()),
        })
    }

    /// A copy of the snapshot of `name`, if it is exported.
    pub fn snapshot(&self, name: &str) -> Option<Extension> {
        let exported = self.exported.read().ok()?;
        let cell = exported.get(name)?;
        cell.read().ok().map(|e| e.clone())
    }

    /// Copies of every exported snapshot, by name.
    pub fn snapshots(&self) -> Vec<Extension> {
        let Ok(exported) = self.exported.read() else { return Vec::new() };
        exported.values().filter_map(|cell| cell.read().ok().map(|e| e.clone())).collect()
    }

    /// The merged names as last seen.
    pub fn merged_names(&self) -> Vec<String> {
        self.merged.read().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Tracks whether the service is doing anything, so it can exit when idle.
pub struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { in_flight: AtomicUsize::new(0), last: Mutex::new(Instant::now()) }
    }
}

impl Activity {
    /// Marks work in progress until the guard drops.
    pub fn busy(&self) -> BusyGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        BusyGuard(self)
    }

    /// Records that something just happened.
    pub fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }

    /// Whether nothing is in flight and nothing happened for `idle`.
    pub fn idle_for(&self, idle: std::time::Duration) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
            && self.last.lock().map(|last| last.elapsed() >= idle).unwrap_or(false)
    }
}

/// Work in progress; see [`Activity::busy`].
pub struct BusyGuard<'a>(&'a Activity);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}
