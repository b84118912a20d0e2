//! Job objects: long operations that outlive the method call that started them.
//!
//! A job is exported at `/org/kairos/Extensions1/job/<id>` before the starting call
//! returns, announced with `JobNew`, updated through properties (at most four
//! PropertiesChanged a second), and removed right after `JobRemoved`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos_extensions_dbus::paths::job_path;
use kairos_extensions_dbus::{ErrorKind, MANAGER_PATH};
use zbus::fdo::Properties;
use zbus::message::Header;
use zbus::object_server::Interface;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedObjectPath, Variant, interface};

use super::authz::{self, Action};
use super::error::{BusError, BusResult, Result};
use super::manager::Manager;
use super::state::Shared;
use super::sync;
use crate::engine::progress::{Phase, Progress};
use crate::engine::{self, Installed, full_message};

/// How often progress properties may be announced.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// The externally visible state of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// `queued`, `running`, `done`, `failed` or `canceled`.
    pub state: &'static str,
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
    fn progress_percent(&self) -> u32 {
        match self.state {
            "done" => 100,
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
    dirty: Arc<AtomicBool>,
}

impl JobCells {
    fn new() -> Self {
        Self {
            status: Arc::new(Mutex::new(JobStatus {
                state: "queued",
                phase: Phase::Resolving,
                name: String::new(),
                bytes_done: 0,
                bytes_total: 0,
                error: String::new(),
            })),
            cancel: Arc::new(AtomicBool::new(false)),
            dirty: Arc::new(AtomicBool::new(false)),
        }
    }

    fn status(&self) -> JobStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn update(&self, change: impl FnOnce(&mut JobStatus)) {
        if let Ok(mut status) = self.status.lock() {
            let before = status.clone();
            change(&mut status);
            if *status != before {
                self.dirty.store(true, Ordering::SeqCst);
            }
        }
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

struct JobEntry {
    kind: &'static str,
    path: OwnedObjectPath,
    cells: JobCells,
    /// What makes two requests the same job; `None` for work that is never shared.
    key: Option<String>,
}

/// What [`JobTable::admit`] decided.
enum Admission {
    /// A new job.
    New(u64, OwnedObjectPath),
    /// The same work is already running as this job.
    Running(u64, OwnedObjectPath),
}

/// The jobs that exist right now.
pub struct JobTable {
    next_id: AtomicU64,
    max: usize,
    jobs: Mutex<BTreeMap<u64, JobEntry>>,
}

impl JobTable {
    /// A table that admits at most `max` jobs at once.
    pub fn new(max: usize) -> Self {
        Self { next_id: AtomicU64::new(1), max, jobs: Mutex::new(BTreeMap::new()) }
    }

    /// `(id, type, state, path)` of every job.
    pub fn list(&self) -> Vec<(u64, String, String, OwnedObjectPath)> {
        let Ok(jobs) = self.jobs.lock() else { return Vec::new() };
        jobs.iter()
            .map(|(id, job)| (*id, job.kind.to_owned(), job.cells.status().state.to_owned(), job.path.clone()))
            .collect()
    }

    /// How many jobs exist.
    pub fn len(&self) -> usize {
        self.jobs.lock().map(|j| j.len()).unwrap_or(0)
    }

    /// Whether no job exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every job to stop at its next safe point; returns how many there are.
    pub fn cancel_all(&self) -> usize {
        let Ok(jobs) = self.jobs.lock() else { return 0 };
        for job in jobs.values() {
            job.cells.cancel.store(true, Ordering::SeqCst);
        }
        jobs.len()
    }

    fn admit(&self, kind: &'static str, key: Option<String>, cells: JobCells) -> BusResult<Admission> {
        let mut jobs = self.jobs.lock().map_err(|_| BusError::failed("job table lock poisoned"))?;
        // A job asked to cancel is winding down: joining it would fail the new caller too.
        let running = jobs.iter().find(|(_, job)| key.is_some() && job.key == key && !job.cells.canceled());
        if let Some((id, job)) = running {
            return Ok(Admission::Running(*id, job.path.clone()));
        }
        if jobs.len() >= self.max {
            return Err(BusError::kind(
                ErrorKind::Busy,
                format!("{} jobs are running already (max_jobs); try again when one finishes", jobs.len()),
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let path = job_path(id);
        jobs.insert(id, JobEntry { kind, path: path.clone(), cells, key });
        Ok(Admission::New(id, path))
    }

    fn forget(&self, id: u64) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(&id);
        }
    }
}

/// What makes two install requests the same work: the source exactly as given and
/// every option, hashed.
pub fn work_key(source: &str, request: &engine::InstallRequest) -> String {
    use sha2::Digest as _;
    let hasher = sha2::Sha256::new_with_prefix(format!("{source}\n{request:?}"));
    engine::digest::Sha256Digest::from_hasher(hasher).to_string()
}

/// The work of an install job, run on a blocking thread.
pub type InstallWork = Box<dyn FnOnce(&dyn Progress) -> engine::Result<Vec<Installed>> + Send>;

/// Starts an install job and returns once it is exported and announced. When the same
/// work (`key`) is already running, that job is returned instead: both callers follow
/// one download.
pub async fn start_install(
    shared: &Arc<Shared>,
    connection: &Connection,
    source: String,
    key: Option<String>,
    owner_uid: u32,
    refreshes: bool,
    work: InstallWork,
) -> BusResult<(u64, OwnedObjectPath)> {
    let cells = JobCells::new();
    let (id, path) = match shared.jobs.admit("install", key, cells.clone())? {
        Admission::New(id, path) => (id, path),
        Admission::Running(id, path) => {
            tracing::info!(job = id, source, "the same install is already running; sharing its job");
            return Ok((id, path));
        }
    };
    let object = JobObject { id, source: source.clone(), owner_uid, cells: cells.clone(), shared: shared.clone() };
    if let Err(e) = connection.object_server().at(&path, object).await {
        shared.jobs.forget(id);
        return Err(e.into());
    }
    let emitter = SignalEmitter::new(connection, MANAGER_PATH)?;
    Manager::job_new(&emitter, id, path.as_ref()).await?;
    tracing::info!(job = id, source, "install job started");

    // What InterfacesAdded told clients; every later change is announced against it.
    let exported = cells.status();
    let (shared, connection, job_path) = (shared.clone(), connection.clone(), path.clone());
    tokio::spawn(async move {
        let _busy = shared.activity.busy();
        cells.update(|s| s.state = "running");
        let (stop_ticker, ticker_stopped) = tokio::sync::oneshot::channel();
        let ticker = tokio::spawn(announce_progress(
            connection.clone(),
            job_path.clone(),
            cells.clone(),
            exported,
            ticker_stopped,
        ));
        let worker_cells = cells.clone();
        let outcome = tokio::task::spawn_blocking(move || work(&worker_cells)).await.unwrap_or_else(|e| {
            Err(engine::Error::Sysext(crate::engine::sysext::SysextError::Unavailable(format!(
                "the job's worker died: {e}"
            ))))
        });
        let _ = stop_ticker.send(());
        let (announced, last_sent) = ticker.await.unwrap_or_else(|_| (cells.status(), None));
        let result = match &outcome {
            Ok(installed) => {
                let names: Vec<String> = installed.iter().map(|i| i.name.to_string()).collect();
                tracing::info!(job = id, extensions = %names.join(", "), "install job done");
                cells.update(|s| s.name = names.join(", "));
                cells.update(|s| s.state = "done");
                "done"
            }
            Err(e) if e.kind() == ErrorKind::Canceled => {
                tracing::info!(job = id, "install job canceled");
                cells.update(|s| {
                    s.state = "canceled";
                    s.error = "canceled".into();
                });
                "canceled"
            }
            Err(e) => {
                let message = full_message(e);
                tracing::warn!(job = id, error = %message, "install job failed");
                cells.update(|s| {
                    s.state = "failed";
                    s.error = format!("{}: {message}", e.kind().short_name());
                });
                "failed"
            }
        };
        // The last announcement keeps the same spacing as the others, so that no second
        // ever carries more than four.
        if let Some(sent) = last_sent {
            tokio::time::sleep_until(sent + PROGRESS_INTERVAL).await;
        }
        announce_changes(&connection, &job_path, &announced, &cells.status()).await;
        if let Err(e) = sync::reconcile(&shared, &connection).await {
            tracing::warn!(error = %e, "updating objects after the job failed");
        }
        if refreshes
            && outcome.is_ok()
            && let Ok(emitter) = SignalEmitter::new(&connection, MANAGER_PATH)
        {
            let _ = Manager::refreshed(&emitter, shared.merged_names()).await;
        }
        if let Ok(emitter) = SignalEmitter::new(&connection, MANAGER_PATH) {
            let _ = Manager::job_removed(&emitter, id, job_path.as_ref(), result).await;
        }
        let _ = connection.object_server().remove::<JobObject, _>(&job_path).await;
        shared.jobs.forget(id);
    });
    Ok((id, path))
}

/// Announces progress at most every [`PROGRESS_INTERVAL`] until told to stop; returns
/// the status it announced last and when, so the final announcement carries everything
/// since and keeps its distance.
///
/// `announced` is what clients were last told (the exported status). It must not be
/// read when this task starts: the worker runs concurrently and may already have moved
/// on, and those changes would then never be announced.
async fn announce_progress(
    connection: Connection,
    path: OwnedObjectPath,
    cells: JobCells,
    mut announced: JobStatus,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> (JobStatus, Option<tokio::time::Instant>) {
    // The first tick one interval from now, not at once, and a slow send delays the
    // next tick instead of bunching up the ones it missed.
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sent = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = &mut stop => return (announced, last_sent),
        }
        if cells.dirty.swap(false, Ordering::SeqCst) {
            announced = announce_changes(&connection, &path, &announced, &cells.status()).await;
            last_sent = Some(tokio::time::Instant::now());
        }
    }
}

async fn announce_changes(
    connection: &Connection,
    path: &OwnedObjectPath,
    before: &JobStatus,
    now: &JobStatus,
) -> JobStatus {
    let mut changed: HashMap<&str, Variant<'_>> = HashMap::new();
    if before.state != now.state {
        changed.insert("State", Variant::from(now.state));
    }
    if before.phase != now.phase {
        changed.insert("Phase", Variant::from(now.phase.as_str()));
    }
    if before.progress_percent() != now.progress_percent() {
        changed.insert("Progress", Variant::from(now.progress_percent()));
    }
    if before.bytes_done != now.bytes_done {
        changed.insert("BytesDone", Variant::from(now.bytes_done));
    }
    if before.bytes_total != now.bytes_total {
        changed.insert("BytesTotal", Variant::from(now.bytes_total));
    }
    if before.name != now.name {
        changed.insert("Name", Variant::from(now.name.as_str()));
    }
    if before.error != now.error {
        changed.insert("Error", Variant::from(now.error.as_str()));
    }
    if !changed.is_empty() {
        let sent = match SignalEmitter::new(connection, path.as_ref()) {
            Ok(emitter) => {
                Properties::properties_changed(&emitter, <JobObject as Interface>::name(), changed, Cow::Borrowed(&[]))
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "could not announce job progress");
        }
    }
    now.clone()
}

/// `org.kairos.Extensions1.Job`.
pub struct JobObject {
    id: u64,
    source: String,
    owner_uid: u32,
    cells: JobCells,
    shared: Arc<Shared>,
}

#[interface(name = "org.kairos.Extensions1.Job")]
impl JobObject {
    /// Stops the job at the next safe point. The uid that started it may cancel it
    /// without authentication; anyone else needs the install action.
    async fn cancel(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<()> {
        let _busy = self.shared.activity.busy();
        let uid = authz::caller_uid(connection, &header).await?;
        if uid != self.owner_uid {
            let id = self.id.to_string();
            authz::authorize(connection, &header, Action::Install, &[("source", &self.source), ("job", &id)]).await?;
        }
        tracing::info!(job = self.id, uid, "cancel requested");
        self.cells.cancel.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The job id.
    #[zbus(property)]
    fn id(&self) -> u64 {
        self.id
    }

    /// What the job does: `install`.
    #[zbus(property)]
    fn r#type(&self) -> &str {
        "install"
    }

    /// The source being installed, without credentials.
    #[zbus(property)]
    fn source(&self) -> &str {
        &self.source
    }

    /// The extension's name, empty until known.
    #[zbus(property)]
    fn name(&self) -> String {
        self.cells.status().name
    }

    /// `queued`, `running`, `done`, `failed` or `canceled`.
    #[zbus(property)]
    fn state(&self) -> String {
        self.cells.status().state.to_owned()
    }

    /// `resolving`, `downloading`, `verifying`, `installing`, `enabling` or `refreshing`.
    #[zbus(property)]
    fn phase(&self) -> String {
        self.cells.status().phase.as_str().to_owned()
    }

    /// Percent done, 0–100.
    #[zbus(property)]
    fn progress(&self) -> u32 {
        self.cells.status().progress_percent()
    }

    /// Bytes transferred so far.
    #[zbus(property)]
    fn bytes_done(&self) -> u64 {
        self.cells.status().bytes_done
    }

    /// Bytes expected in total, 0 if unknown.
    #[zbus(property)]
    fn bytes_total(&self) -> u64 {
        self.cells.status().bytes_total
    }

    /// Why the job failed (error name, then message), empty otherwise.
    #[zbus(property)]
    fn error(&self) -> String {
        self.cells.status().error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn the_same_work_joins_the_running_job_and_other_work_does_not() {
        let table = JobTable::new(4);
        let Ok(Admission::New(first, _)) = table.admit("install", key("a"), JobCells::new()) else {
            panic!("the first request starts a job")
        };
        assert!(
            matches!(table.admit("install", key("a"), JobCells::new()), Ok(Admission::Running(id, _)) if id == first)
        );
        assert!(matches!(table.admit("install", key("b"), JobCells::new()), Ok(Admission::New(..))));
        assert!(matches!(table.admit("install", None, JobCells::new()), Ok(Admission::New(..))));
        assert!(matches!(table.admit("install", None, JobCells::new()), Ok(Admission::New(..))));
        assert!(table.admit("install", key("c"), JobCells::new()).is_err(), "max_jobs");
    }

    #[test]
    fn sources_that_display_alike_are_different_work() {
        let request = engine::InstallRequest::default();
        let k3s = work_key("https://h/get?f=k3s.raw", &request);
        assert_ne!(k3s, work_key("https://h/get?f=nginx.raw", &request));
        assert_eq!(k3s, work_key("https://h/get?f=k3s.raw", &request));
        let replacing = engine::InstallRequest { replace: true, ..Default::default() };
        assert_ne!(k3s, work_key("https://h/get?f=k3s.raw", &replacing));
        assert!(!k3s.contains("k3s"), "the key keeps nothing of the source");
    }

    #[test]
    fn a_job_being_canceled_is_not_joined() {
        let table = JobTable::new(4);
        let cells = JobCells::new();
        let Ok(Admission::New(first, _)) = table.admit("install", key("a"), cells.clone()) else {
            panic!("the first request starts a job")
        };
        cells.cancel.store(true, Ordering::SeqCst);
        match table.admit("install", key("a"), JobCells::new()) {
            Ok(Admission::New(second, _)) => assert_ne!(second, first),
            _ => panic!("a request for the same work must get a job of its own"),
        }
    }
}
