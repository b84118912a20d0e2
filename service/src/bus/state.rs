//! What the bus objects share: the engine, the jobs, the model, activity.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};
use std::time::Instant;

use super::announce::Exporter;
use super::authz::Authority;
use super::model::Model;
use super::queue::JobTable;
use crate::engine::{Engine, Extension};

/// State shared by every object the service exports.
pub struct Shared {
    /// The engine doing the work.
    pub engine: Arc<Engine>,
    /// Who may do what.
    pub authority: Box<dyn Authority>,
    /// Running jobs.
    pub jobs: JobTable,
    /// When the service was last busy, for idle exit.
    pub activity: Activity,
    /// What the service knows of the store; every read is served from it.
    model: RwLock<Model>,
    /// Serialises model updates, so that announcements come out in order.
    pub updating: tokio::sync::Mutex<()>,
    /// Puts extension objects on the bus; set once when the service starts.
    exporter: OnceLock<Box<dyn Exporter>>,
}

impl Shared {
    /// Shared state around `engine`, asking `authority`.
    pub fn new(engine: Arc<Engine>, authority: Box<dyn Authority>) -> Arc<Self> {
        let max_jobs = engine.config().max_jobs as usize;
        Arc::new(Self {
            engine,
            authority,
            jobs: JobTable::new(max_jobs),
            activity: Activity::default(),
            model: RwLock::default(),
            updating: tokio::sync::Mutex::new(()),
            exporter: OnceLock::new(),
        })
    }

    /// The model, for reading. Held briefly and never across an await.
    pub fn model(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the model; only [`super::resync`] does, with [`Shared::updating`] held.
    pub fn update_model<T>(&self, change: impl FnOnce(&mut Model) -> T) -> T {
        let mut model = self.model.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut model)
    }

    /// The extension called `name`, as the model has it.
    pub fn snapshot(&self, name: &str) -> Option<Arc<Extension>> {
        self.model().get(name)
    }

    /// The merged names, as the model has them.
    pub fn merged_names(&self) -> Vec<String> {
        self.model().merged().to_vec()
    }

    /// Sets the exporter of extension objects (once, at startup).
    pub fn set_exporter(&self, exporter: Box<dyn Exporter>) {
        if self.exporter.set(exporter).is_err() {
            tracing::warn!("the exporter of extension objects was set twice; keeping the first");
        }
    }

    /// The exporter of extension objects.
    pub fn exporter(&self) -> Option<&dyn Exporter> {
        self.exporter.get().map(|e| e.as_ref())
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
