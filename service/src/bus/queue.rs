//! Admission: at most `max_jobs` jobs run, up to [`MAX_QUEUED`] more wait in line and
//! start in the order they came as running ones end, and only a request beyond that is
//! refused with `Busy`.
//!
//! A waiting job holds the receiving end of a one-shot channel; the table starts it by
//! sending, and withdraws it (cancel, stop) by dropping the sender. Nothing polls.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kairos_extensions_dbus::paths::job_path;
use kairos_extensions_dbus::{ErrorKind, JobType};
use tokio::sync::oneshot;
use zbus::OwnedObjectPath;

use super::job_cells::JobCells;
use crate::bus::error::{BusError, BusResult};
use crate::engine::progress::Progress as _;

/// How many jobs may wait for a place before requests are refused with `Busy`.
pub const MAX_QUEUED: usize = 64;

/// Where a job stands with respect to the running places.
enum Place {
    /// Holds one of the `max_jobs` places until it is forgotten.
    Running,
    /// In line; sending starts it, dropping the sender withdraws it.
    Waiting(oneshot::Sender<()>),
    /// Left the line without ever running (canceled while queued).
    Withdrawn,
}

struct Entry {
    kind: JobType,
    path: OwnedObjectPath,
    cells: JobCells,
    /// What makes two requests the same job; `None` for work that is never shared.
    key: Option<String>,
    place: Place,
}

#[derive(Default)]
struct Jobs {
    entries: BTreeMap<u64, Entry>,
    /// Ids of the waiting jobs, first to start first.
    line: VecDeque<u64>,
    running: usize,
    /// Set when the service stops: no new job is admitted.
    closed: bool,
}

impl Jobs {
    /// Hands free places to the first in line, then tells everyone still waiting where
    /// they stand.
    fn start_waiting(&mut self, max: usize) {
        while self.running < max {
            let Some(id) = self.line.pop_front() else { break };
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            if let Place::Waiting(start) = std::mem::replace(&mut entry.place, Place::Running) {
                self.running += 1;
                entry.cells.update(|s| s.queue_position = 0);
                // A job whose task is gone cannot take the place; it frees it when forgotten.
                let _ = start.send(());
            }
        }
        self.renumber();
    }

    /// Gives every waiting job its position: the jobs that must end before it starts.
    fn renumber(&self) {
        for (ahead, id) in self.line.iter().enumerate() {
            if let Some(entry) = self.entries.get(id) {
                let position = u32::try_from(ahead + 1).unwrap_or(u32::MAX);
                entry.cells.update(|s| s.queue_position = position);
            }
        }
    }

    /// Takes `id` out of the line, if it is waiting; dropping its sender tells its task.
    fn withdraw(&mut self, id: u64) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else { return false };
        if !matches!(entry.place, Place::Waiting(_)) {
            return false;
        }
        entry.place = Place::Withdrawn;
        entry.cells.update(|s| s.queue_position = 0);
        self.line.retain(|waiting| *waiting != id);
        self.renumber();
        true
    }
}

/// What [`JobTable::admit`] decided.
pub enum Admission {
    /// A new job; it runs once its [`Turn`] comes.
    New(u64, OwnedObjectPath, Turn),
    /// The same work already exists as this job, queued or running.
    Shared(u64, OwnedObjectPath),
}

/// A new job's wait for a place to run.
pub struct Turn(oneshot::Receiver<()>);

impl Turn {
    /// Resolves when the job may run (`true`), or when it left the line without
    /// running (`false`).
    pub async fn wait(self) -> bool {
        self.0.await.is_ok()
    }
}

/// The jobs that exist right now, running and queued.
pub struct JobTable {
    next_id: AtomicU64,
    max: usize,
    jobs: Mutex<Jobs>,
}

impl JobTable {
    /// A table that runs at most `max` jobs at once.
    pub fn new(max: usize) -> Self {
        Self { next_id: AtomicU64::new(1), max: max.max(1), jobs: Mutex::new(Jobs::default()) }
    }

    /// `(id, type, state, path)` of every job.
    pub fn list(&self) -> Vec<(u64, String, String, OwnedObjectPath)> {
        let Ok(jobs) = self.jobs.lock() else { return Vec::new() };
        jobs.entries
            .iter()
            .map(|(id, job)| {
                (*id, job.kind.as_str().to_owned(), job.cells.status().state.as_str().to_owned(), job.path.clone())
            })
            .collect()
    }

    /// How many jobs exist.
    pub fn len(&self) -> usize {
        self.jobs.lock().map(|j| j.entries.len()).unwrap_or(0)
    }

    /// Whether no job exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks every job to stop at its next safe point, takes the waiting ones out of line
    /// (they end without running) and admits no more; returns how many jobs there are.
    pub fn cancel_all(&self) -> usize {
        let Ok(mut jobs) = self.jobs.lock() else { return 0 };
        jobs.closed = true;
        let ids: Vec<u64> = jobs.entries.keys().copied().collect();
        for id in ids {
            if let Some(entry) = jobs.entries.get(&id) {
                entry.cells.cancel();
            }
            jobs.withdraw(id);
        }
        jobs.entries.len()
    }

    /// Takes a canceled job out of line, if it is waiting, so that it ends at once and
    /// the jobs behind it move up. A running job stops by its cancel flag instead.
    pub fn withdraw(&self, id: u64) -> bool {
        self.jobs.lock().map(|mut jobs| jobs.withdraw(id)).unwrap_or(false)
    }

    /// Admits a job for `key`: the existing job for the same work if there is one, else
    /// a new one that runs now or waits in line.
    pub(super) fn admit(&self, kind: JobType, key: Option<String>, cells: JobCells) -> BusResult<Admission> {
        let mut jobs = self.jobs.lock().map_err(|_| BusError::failed("job table lock poisoned"))?;
        // A job asked to cancel is winding down: joining it would fail the new caller too.
        // One that has ended stays in the table while it announces its end: joining it
        // would hand the caller its result (an old failure, for a retry) and a
        // JobRemoved the caller may already have missed.
        let joinable = |job: &&Entry| !job.cells.canceled() && !job.cells.status().state.is_final();
        let same = jobs.entries.iter().find(|(_, job)| key.is_some() && job.key == key && joinable(job));
        if let Some((id, job)) = same {
            return Ok(Admission::Shared(*id, job.path.clone()));
        }
        if jobs.closed {
            return Err(BusError::kind(ErrorKind::Busy, "the service is stopping; try again in a moment"));
        }
        if jobs.running >= self.max && jobs.line.len() >= MAX_QUEUED {
            return Err(BusError::kind(
                ErrorKind::Busy,
                format!(
                    "{} jobs are running (max_jobs) and {MAX_QUEUED} are waiting, the most that may; try again when one finishes",
                    jobs.running
                ),
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let path = job_path(id);
        let (start, turn) = oneshot::channel();
        jobs.entries.insert(id, Entry { kind, path: path.clone(), cells, key, place: Place::Waiting(start) });
        jobs.line.push_back(id);
        jobs.start_waiting(self.max);
        Ok(Admission::New(id, path, Turn(turn)))
    }

    /// Drops a job that has ended; the place it held goes to the first in line.
    pub(super) fn forget(&self, id: u64) {
        let Ok(mut jobs) = self.jobs.lock() else { return };
        jobs.withdraw(id);
        if let Some(entry) = jobs.entries.remove(&id)
            && matches!(entry.place, Place::Running)
        {
            jobs.running = jobs.running.saturating_sub(1);
            jobs.start_waiting(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use kairos_extensions_dbus::JobState;
    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;

    fn key(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    /// Admits a new job, failing the test otherwise.
    fn new_job(table: &JobTable, key: Option<String>) -> (u64, JobCells, Turn) {
        let cells = JobCells::new();
        match table.admit(JobType::Install, key, cells.clone()) {
            Ok(Admission::New(id, _, turn)) => (id, cells, turn),
            Ok(Admission::Shared(id, _)) => panic!("expected a new job, got the existing job {id}"),
            Err(e) => panic!("expected a new job, got {}", e.message()),
        }
    }

    /// `Some(true)` once started, `Some(false)` once withdrawn, `None` while waiting.
    fn started(turn: &mut Turn) -> Option<bool> {
        match turn.0.try_recv() {
            Ok(()) => Some(true),
            Err(TryRecvError::Closed) => Some(false),
            Err(TryRecvError::Empty) => None,
        }
    }

    fn position(cells: &JobCells) -> u32 {
        cells.status().queue_position
    }

    #[test]
    fn jobs_beyond_max_jobs_wait_in_line_and_start_in_order() {
        let table = JobTable::new(2);
        let (a, _, mut turn_a) = new_job(&table, key("a"));
        let (b, _, mut turn_b) = new_job(&table, key("b"));
        let (c, cells_c, mut turn_c) = new_job(&table, key("c"));
        let (_, cells_d, mut turn_d) = new_job(&table, None);
        assert_eq!((started(&mut turn_a), started(&mut turn_b)), (Some(true), Some(true)));
        assert_eq!((started(&mut turn_c), started(&mut turn_d)), (None, None));
        assert_eq!((position(&cells_c), position(&cells_d)), (1, 2));
        assert_eq!(cells_c.status().state, JobState::Queued, "the task, not the table, starts a job");

        table.forget(b);
        assert_eq!(started(&mut turn_c), Some(true), "the first in line takes the freed place");
        assert_eq!((position(&cells_c), position(&cells_d)), (0, 1));
        assert_eq!(started(&mut turn_d), None);
        table.forget(a);
        assert_eq!(started(&mut turn_d), Some(true));
        assert_eq!(position(&cells_d), 0);
        table.forget(c);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_withdrawn_job_never_starts_and_those_behind_it_move_up() {
        let table = JobTable::new(1);
        let (running, _, _turn) = new_job(&table, key("a"));
        let (first, _, mut turn_first) = new_job(&table, key("b"));
        let (second, cells_second, mut turn_second) = new_job(&table, key("c"));
        let (_, cells_third, mut turn_third) = new_job(&table, key("d"));
        assert_eq!((position(&cells_second), position(&cells_third)), (2, 3));

        cells_second.cancel();
        assert!(table.withdraw(second));
        assert_eq!(started(&mut turn_second), Some(false), "a withdrawn job is told at once");
        assert_eq!((position(&cells_second), position(&cells_third)), (0, 2));
        assert!(!table.withdraw(running), "a running job is not in line");

        table.forget(running);
        assert_eq!(started(&mut turn_first), Some(true));
        table.forget(second);
        assert_eq!(started(&mut turn_third), None, "forgetting a withdrawn job frees no place");
        table.forget(first);
        assert_eq!(started(&mut turn_third), Some(true));
    }

    #[test]
    fn only_a_full_line_refuses_with_busy() {
        let table = JobTable::new(1);
        let _running = new_job(&table, None);
        let waiting: Vec<_> = (0..MAX_QUEUED).map(|_| new_job(&table, None)).collect();
        assert_eq!(waiting.last().map(|(_, cells, _)| position(cells)), Some(64));
        match table.admit(JobType::Install, None, JobCells::new()) {
            Err(e) => {
                assert_eq!(e.error_name(), ErrorKind::Busy.dbus_name());
                assert!(e.message().contains("64 are waiting"), "{}", e.message());
            }
            Ok(_) => panic!("the 65th waiting job must be refused"),
        }
        assert!(
            table.admit(JobType::Install, key("x"), JobCells::new()).is_err(),
            "new work is refused whatever its key"
        );
        table.forget(waiting[0].0);
        assert!(matches!(table.admit(JobType::Install, None, JobCells::new()), Ok(Admission::New(..))), "room again");
    }

    #[test]
    fn the_same_work_joins_its_job_queued_or_running_and_other_work_does_not() {
        let table = JobTable::new(1);
        let (running, _, _) = new_job(&table, key("a"));
        let (queued, _, _) = new_job(&table, key("b"));
        assert!(
            matches!(table.admit(JobType::Install, key("a"), JobCells::new()), Ok(Admission::Shared(id, _)) if id == running)
        );
        assert!(
            matches!(table.admit(JobType::Install, key("b"), JobCells::new()), Ok(Admission::Shared(id, _)) if id == queued)
        );
        assert!(matches!(table.admit(JobType::Install, None, JobCells::new()), Ok(Admission::New(..))));
        assert!(matches!(table.admit(JobType::Install, None, JobCells::new()), Ok(Admission::New(..))), "never shared");
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn a_job_being_canceled_is_not_joined() {
        let table = JobTable::new(1);
        let (running, running_cells, _) = new_job(&table, key("a"));
        let (queued, queued_cells, _) = new_job(&table, key("b"));
        running_cells.cancel();
        queued_cells.cancel();
        table.withdraw(queued);
        let (again_running, _, _) = new_job(&table, key("a"));
        let (again_queued, _, _) = new_job(&table, key("b"));
        assert!(again_running != running && again_queued != queued);
    }

    #[test]
    fn a_job_that_has_ended_is_not_joined_while_it_announces_its_end() {
        let table = JobTable::new(1);
        let (failed, failed_cells, _) = new_job(&table, key("a"));
        failed_cells.update(|s| s.state = JobState::Failed);
        let (retry, _, _) = new_job(&table, key("a"));
        assert_ne!(retry, failed, "a retry is a new job");
    }

    #[test]
    fn a_stopping_table_withdraws_every_waiting_job_and_admits_no_more() {
        let table = JobTable::new(1);
        let (_, running_cells, mut running_turn) = new_job(&table, key("a"));
        let (_, queued_cells, mut queued_turn) = new_job(&table, key("b"));
        assert_eq!(table.cancel_all(), 2);
        assert!(running_cells.canceled() && queued_cells.canceled());
        assert_eq!(started(&mut running_turn), Some(true), "a running job stops by its flag");
        assert_eq!(started(&mut queued_turn), Some(false), "a waiting job ends without running");
        match table.admit(JobType::Install, key("c"), JobCells::new()) {
            Err(e) => assert_eq!(e.error_name(), ErrorKind::Busy.dbus_name()),
            Ok(_) => panic!("a stopping service admits no new job"),
        }
    }
}
