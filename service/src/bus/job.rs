//! Job objects: long operations that outlive the method call that started them.
//!
//! A job is exported at `/org/kairos/Extensions1/job/<id>` before the starting call
//! returns, announced with `JobNew`, updated through properties (at most four
//! PropertiesChanged a second), and removed right after `JobRemoved`. Jobs beyond
//! `max_jobs` wait their turn in `queued` ([`table`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kairos_extensions_dbus::{ErrorKind, JobResult, JobState, JobType};
use zbus::fdo::Properties;
use zbus::message::Header;
use zbus::object_server::Interface;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedObjectPath, Variant, interface};

use super::authz::{self, Action};
use super::error::{BusResult, Result};
use super::job_cells::{JobCells, JobStatus};
use super::model::Finding;
use super::queue::{Admission, Turn};
use super::read_only::ReadOnly;
use super::resync;
use super::signals::{self, PropertyValues};
use super::state::Shared;
use crate::engine::progress::Progress;
use crate::engine::{self, Installed, full_message};

/// The interface of job objects.
pub const JOB_INTERFACE: &str = "org.kairos.Extensions1.Job";

/// How often progress properties may be announced.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// What makes two install requests the same work: the source exactly as given and
/// every option, hashed.
pub fn work_key(source: &str, request: &engine::InstallRequest) -> String {
    use sha2::Digest as _;
    let hasher = sha2::Sha256::new_with_prefix(format!("{source}\n{request:?}"));
    engine::digest::Sha256Digest::from_hasher(hasher).to_string()
}

/// The work of a job, run on a blocking thread: what it installed, and in `findings`
/// what it learned that the store does not hold (checks, updates), kept even when it
/// fails later. Both reach the model after the work, on the announcing path.
pub type JobWork = Box<dyn FnOnce(&dyn Progress, &mut Vec<Finding>) -> engine::Result<Vec<Installed>> + Send>;

/// Starts an install job, or queues it when `max_jobs` run already, and returns once it
/// is exported and announced. When the same work (`key`) is already queued or running,
/// that job is returned instead: both callers follow one download.
pub async fn start_install(
    shared: &Arc<Shared>,
    connection: &Connection,
    source: String,
    key: Option<String>,
    owner_uid: u32,
    refreshes: bool,
    work: JobWork,
) -> BusResult<(u64, OwnedObjectPath)> {
    start(shared, connection, JobType::Install, source, key, owner_uid, refreshes, work).await
}

/// Starts a job of `kind` as [`start_install`] does; `check` and `update` jobs run
/// their work the same way, in the same queue.
#[allow(clippy::too_many_arguments, reason = "the parts of a job, each needed once")]
pub async fn start(
    shared: &Arc<Shared>,
    connection: &Connection,
    kind: JobType,
    source: String,
    key: Option<String>,
    owner_uid: u32,
    refreshes: bool,
    work: JobWork,
) -> BusResult<(u64, OwnedObjectPath)> {
    let cells = JobCells::new();
    let (id, path, turn) = match shared.jobs.admit(kind, key, cells.clone())? {
        Admission::New(id, path, turn) => (id, path, turn),
        Admission::Shared(id, path) => {
            tracing::info!(
                job = id,
                source,
                kind = kind.as_str(),
                "the same work is already queued or running; sharing its job"
            );
            return Ok((id, path));
        }
    };
    // What clients are told first (InterfacesAdded, or a Get right after JobNew); every
    // later change is announced against it. Taken before exporting: the queue may move
    // meanwhile, and a change announced twice is harmless where one lost is not.
    let exported = cells.status();
    let object =
        JobObject { id, kind, source: source.clone(), owner_uid, cells: cells.clone(), shared: shared.clone() };
    let properties = match export(connection, &path, object).await {
        Ok(properties) => properties,
        Err(e) => {
            shared.jobs.forget(id);
            return Err(e);
        }
    };
    signals::interfaces_added(connection, &path, JOB_INTERFACE, &properties).await?;
    signals::job_new(connection, id, &path).await?;
    match exported.queue_position {
        0 => tracing::info!(job = id, source, kind = kind.as_str(), "job started"),
        ahead => tracing::info!(job = id, source, kind = kind.as_str(), ahead, "job queued"),
    }
    let job = JobRun { id, kind, path: path.clone(), cells, shared: shared.clone(), connection: connection.clone() };
    tokio::spawn(job.run(turn, exported, refreshes, work));
    Ok((id, path))
}

/// Exports the job's `object` at `path` and returns its properties as `GetAll` answers
/// them, read before it is exported, for `InterfacesAdded`.
async fn export(connection: &Connection, path: &OwnedObjectPath, object: JobObject) -> BusResult<PropertyValues> {
    let server = connection.object_server();
    let emitter = SignalEmitter::new(connection, path.as_ref())?;
    let properties = object.get_all(server, connection, None, &emitter).await.map_err(zbus::Error::from)?;
    server.at(path, ReadOnly(object)).await?;
    Ok(properties)
}

/// The life of one job after it is announced: its wait in line, its work, its end.
struct JobRun {
    id: u64,
    kind: JobType,
    path: OwnedObjectPath,
    cells: JobCells,
    shared: Arc<Shared>,
    connection: Connection,
}

impl JobRun {
    async fn run(self, turn: Turn, exported: JobStatus, refreshes: bool, work: JobWork) {
        let _busy = self.shared.activity.busy();
        let (stop_announcer, announcer_stopped) = tokio::sync::oneshot::channel();
        let announcer = tokio::spawn(announce_progress(
            self.connection.clone(),
            self.path.clone(),
            self.cells.clone(),
            exported,
            announcer_stopped,
        ));
        // A job canceled in line, or just as its turn came, never runs.
        let outcome = if turn.wait().await && !self.cells.canceled() {
            self.cells.update(|s| s.state = JobState::Running);
            let worker_cells = self.cells.clone();
            Some(
                tokio::task::spawn_blocking(move || {
                    let mut findings = Vec::new();
                    let result = work(&worker_cells, &mut findings);
                    (result, findings)
                })
                .await
                .unwrap_or_else(|e| {
                    let died = format!("the job's worker died: {e}");
                    (Err(engine::Error::Sysext(crate::engine::sysext::SysextError::Unavailable(died))), Vec::new())
                }),
            )
        } else {
            None
        };
        let _ = stop_announcer.send(());
        let (announced, last_sent) = announcer.await.unwrap_or_else(|_| (self.cells.status(), None));
        let (outcome, findings) = match outcome {
            Some((result, findings)) => (Some(result), findings),
            None => (None, Vec::new()),
        };
        let result = self.settle(outcome.as_ref());
        // The last announcement keeps the same spacing as the others, so that no second
        // ever carries more than four.
        if let Some(sent) = last_sent {
            tokio::time::sleep_until(sent + PROGRESS_INTERVAL).await;
        }
        announce_changes(&self.connection, &self.path, &announced, &self.cells.status()).await;
        // The documented order of a job's last announcements: its final properties
        // (above), the model's changes, Refreshed, JobRemoved, and the object goes.
        let updated = match &outcome {
            // What an install that succeeded touched are the extensions it installed, and
            // a check touched no file; an update reads the store whole, and so does any
            // failure, as the undo may have touched more. What the work found goes into
            // the model with it.
            Some(Ok(installed)) if self.kind != JobType::Update => {
                let names = installed.iter().map(|i| i.name.clone()).collect();
                let touched = resync::Touched { names, findings, ..Default::default() };
                resync::resync_touched(&self.shared, &self.connection, touched).await
            }
            Some(_) => resync::resync_with(&self.shared, &self.connection, findings).await,
            None => Ok(()),
        };
        if let Err(e) = updated {
            tracing::warn!(error = %e, "updating objects after the job failed");
        }
        if refreshes && matches!(outcome, Some(Ok(_))) {
            let merged = self.shared.merged_names();
            if let Err(e) = signals::refreshed(&self.connection, &merged).await {
                tracing::debug!(error = %e, "could not announce the refresh");
            }
        }
        if let Err(e) = signals::job_removed(&self.connection, self.id, &self.path, result).await {
            tracing::debug!(error = %e, "could not announce the job's end");
        }
        match self.connection.object_server().remove::<ReadOnly<JobObject>, _>(&self.path).await {
            Ok(_) => {
                if let Err(e) = signals::interfaces_removed(&self.connection, &self.path, JOB_INTERFACE).await {
                    tracing::debug!(error = %e, "could not announce that the job's object is gone");
                }
            }
            Err(e) => tracing::warn!(job = self.id, error = %e, "could not remove the job's object"),
        }
        self.shared.jobs.forget(self.id);
    }

    /// Records how the job ended (`None`: it never ran) and returns its final state.
    fn settle(&self, outcome: Option<&engine::Result<Vec<Installed>>>) -> JobResult {
        let id = self.id;
        let kind = self.kind.as_str();
        let result = match outcome {
            Some(Ok(installed)) => {
                let names: Vec<String> = installed.iter().map(|i| i.name.to_string()).collect();
                tracing::info!(job = id, kind, extensions = %names.join(", "), "job done");
                if !names.is_empty() {
                    self.cells.update(|s| s.name = names.join(", "));
                }
                JobResult::Done
            }
            None => {
                tracing::info!(job = id, kind, "job canceled before it ran");
                JobResult::Canceled
            }
            Some(Err(e)) if e.kind() == ErrorKind::Canceled => {
                tracing::info!(job = id, kind, "job canceled");
                JobResult::Canceled
            }
            Some(Err(e)) => {
                let message = full_message(e);
                tracing::warn!(job = id, kind, error = %message, "job failed");
                self.cells.update(|s| s.error = format!("{}: {message}", e.kind().short_name()));
                JobResult::Failed
            }
        };
        self.cells.update(|s| {
            s.state = JobState::from(result);
            s.queue_position = 0;
            if result == JobResult::Canceled {
                s.error = "canceled".into();
            }
        });
        result
    }
}

/// Announces changes as they come, at most one announcement every
/// [`PROGRESS_INTERVAL`], until told to stop; returns the status it announced last and
/// when, so the final announcement carries everything since and keeps its distance.
///
/// `announced` is what clients were last told (the exported status). It must not be
/// read when this task starts: the queue and the worker run concurrently and may
/// already have moved on, and those changes would then never be announced.
async fn announce_progress(
    connection: Connection,
    path: OwnedObjectPath,
    cells: JobCells,
    mut announced: JobStatus,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> (JobStatus, Option<tokio::time::Instant>) {
    let mut last_sent: Option<tokio::time::Instant> = None;
    loop {
        // A change made while the last announcement was going out left a permit, so
        // none is missed; a spurious wake finds nothing dirty.
        tokio::select! {
            () = cells.changed.notified() => {}
            _ = &mut stop => return (announced, last_sent),
        }
        if let Some(sent) = last_sent {
            tokio::select! {
                () = tokio::time::sleep_until(sent + PROGRESS_INTERVAL) => {}
                _ = &mut stop => return (announced, last_sent),
            }
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
        changed.insert("State", Variant::from(now.state.as_str()));
    }
    if before.queue_position != now.queue_position {
        changed.insert("QueuePosition", Variant::from(now.queue_position));
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
    kind: JobType,
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
        let uid = self.shared.authority.caller_uid(connection, &header).await?;
        if uid != self.owner_uid {
            let id = self.id.to_string();
            authz::authorize(
                self.shared.authority.as_ref(),
                connection,
                &header,
                Action::Install,
                &[("source", &self.source), ("job", &id)],
            )
            .await?;
        }
        tracing::info!(job = self.id, uid, "cancel requested");
        self.cells.cancel();
        // A job still in line ends at once, and those behind it move up.
        self.shared.jobs.withdraw(self.id);
        Ok(())
    }

    /// The job id.
    #[zbus(property(emits_changed_signal = "const"))]
    fn id(&self) -> u64 {
        self.id
    }

    /// What the job does: `install`, `check` or `update`.
    #[zbus(property(emits_changed_signal = "const"))]
    fn r#type(&self) -> &str {
        self.kind.as_str()
    }

    /// The source being installed, without credentials.
    #[zbus(property(emits_changed_signal = "const"))]
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
    fn state(&self) -> &'static str {
        self.cells.status().state.as_str()
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

    /// While queued, how many jobs must end before this one starts (1 for the next to
    /// start); 0 otherwise.
    #[zbus(property)]
    fn queue_position(&self) -> u32 {
        self.cells.status().queue_position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
