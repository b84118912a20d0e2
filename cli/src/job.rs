//! Following a job of the service to its end, for every verb that starts one (install,
//! check, update): its progress shown, Ctrl-C to cancel it, and its end, or the
//! service's.

use anyhow::{Result, anyhow, bail};
use futures_util::StreamExt;
use kairos_extensions_dbus::properties::JobProperties;
use kairos_extensions_dbus::proxies::{JobProxy, JobRemoved};
use kairos_extensions_dbus::{BUS_NAME, ErrorKind, JobResult, JobState};
use zbus::fdo::PropertiesChanged;
use zbus::message::Type;
use zbus::names::InterfaceName;
use zbus::proxy::CacheProperties;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedObjectPath};

use crate::client::explain;
use crate::exit::{Exit, Failure};
use crate::render;

/// What a client hears of the service while it waits for a job: every signal, in
/// order, and the service's name changing hands. Subscribed before the job starts, so
/// that the job's last PropertiesChanged is always seen before its JobRemoved and not
/// even a fast job's end slips past.
pub(crate) struct JobWatch {
    signals: MessageStream,
    owner_changes: zbus::fdo::NameOwnerChangedStream,
}

impl JobWatch {
    /// Starts listening on `connection`.
    pub(crate) async fn subscribe(connection: &Connection) -> Result<Self> {
        let rule = MatchRule::builder().msg_type(Type::Signal).sender(BUS_NAME).build()?;
        let signals = MessageStream::for_match_rule(rule, connection, std::num::NonZeroUsize::new(1024)).await?;
        let bus = zbus::fdo::DBusProxy::new(connection).await?;
        // The service going away (stopped, crashed) ends the job without a JobRemoved.
        let owner_changes = bus.receive_name_owner_changed_with_args(&[(0, BUS_NAME)]).await?;
        Ok(Self { signals, owner_changes })
    }

    /// Follows job `id` at `path` to its end, showing it in `view`, and returns how it
    /// ended. Ctrl-C asks the service to cancel it (with a password prompt when
    /// `interactive`), a second Ctrl-C stops waiting; the service stopping ends the wait
    /// with an error. `also` sees every other signal of the service once the job has
    /// left the queue.
    pub(crate) async fn follow(
        &mut self,
        connection: &Connection,
        interactive: bool,
        id: u64,
        path: &OwnedObjectPath,
        view: &mut JobView,
        mut also: impl FnMut(&Message),
    ) -> Result<JobResult> {
        let job =
            JobProxy::builder(connection).path(path.clone()).cache_properties(CacheProperties::No).build().await?;
        // Signals carry changes only: where the job stands (in line, or its phase) comes
        // from asking once. Signals already on their way may be older; the next one puts
        // that right.
        if let Ok(now) = crate::client::all_properties(connection, path.clone()).await?.job().await {
            view.apply(now);
        }
        let mut cancel_sent = false;
        let result = loop {
            tokio::select! {
                message = self.signals.next() => {
                    let Some(message) = message else { break Err(anyhow!("lost the connection to the service while job {id} was running")) };
                    let Ok(message) = message else { continue };
                    match job_signal(message.clone(), id, path) {
                        Some(JobSignal::Changed(changed)) => view.apply(changed),
                        Some(JobSignal::Ended(result)) => break result,
                        // While it waits in line, what the service announces is other jobs' doing.
                        None if view.has_left_the_queue() => also(&message),
                        None => {}
                    }
                }
                Some(change) = self.owner_changes.next() => {
                    if change.args().is_ok_and(|a| a.new_owner().is_none()) {
                        break Err(anyhow!("the service stopped while job {id} was running; whether it finished is unknown (see `kairos-ext list`)"));
                    }
                }
                // The handler stays for the whole wait, so a second Ctrl-C would do nothing
                // unless it is answered here: it stops waiting, the service goes on canceling.
                _ = tokio::signal::ctrl_c(), if cancel_sent => {
                    break Err(anyhow!("stopped waiting; job {id} is still being canceled by the service"));
                }
                _ = tokio::signal::ctrl_c(), if !cancel_sent => {
                    eprintln!("\nCanceling job {id}… (Ctrl-C again to stop waiting)");
                    cancel_sent = true;
                    tracing::info!(interactive, "calling cancel");
                    let sent = if interactive { job.cancel_interactive().await } else { job.cancel().await };
                    if let Err(e) = sent {
                        eprintln!("kairos-ext: {}", crate::exit::describe(&explain(e, interactive)).1);
                    }
                }
            }
        };
        view.finish();
        result
    }
}

/// Ends with the failure of job `id`, which did `what`, unless it is done.
pub(crate) fn outcome(what: &str, id: u64, result: JobResult, error: &str) -> Result<()> {
    match result {
        JobResult::Done => Ok(()),
        JobResult::Canceled => bail!("{what} canceled"),
        JobResult::Failed if error.is_empty() => bail!("{what} failed (job {id})"),
        JobResult::Failed => Err(anyhow::Error::from(failure(error)).context(format!("{what} failed"))),
    }
}

/// A failed job's `Error`, `Kind: message`, as the status of its kind and the message.
pub(crate) fn failure(error: &str) -> Failure {
    let kind = error.split_once(": ").and_then(|(name, message)| {
        ErrorKind::ALL.into_iter().find(|k| k.short_name() == name).map(|kind| (kind, message))
    });
    match kind {
        Some((kind, message)) => Failure::new(Exit::of_kind(kind), message),
        None => Failure::new(Exit::Failure, error),
    }
}

/// What one signal of the service says about the job being followed.
enum JobSignal {
    /// Some of its properties changed.
    Changed(JobProperties),
    /// It ended.
    Ended(Result<JobResult>),
}

/// Reads `message` as news of the job `id` at `path`; `None` when it is about anything else.
fn job_signal(message: Message, id: u64, path: &OwnedObjectPath) -> Option<JobSignal> {
    if let Some(removed) = JobRemoved::from_message(message.clone()) {
        return match removed.args() {
            Ok(args) => (args.id == id).then_some(JobSignal::Ended(Ok(args.result))),
            // A result this kairos-ext does not know still ends the job it names.
            Err(e) => match removed.message().body().deserialize::<(u64, OwnedObjectPath, String)>() {
                Ok((ended, _, result)) if ended == id => {
                    Some(JobSignal::Ended(Err(anyhow!("job {id} ended with the unknown result {result:?}: {e}"))))
                }
                _ => None,
            },
        };
    }
    let changed = PropertiesChanged::from_message(message)?;
    if changed.message().header().path().map(|p| p.as_str()) != Some(path.as_str()) {
        return None;
    }
    let (_, properties, _) =
        changed.message().body().deserialize::<(InterfaceName<'_>, JobProperties, Vec<String>)>().ok()?;
    Some(JobSignal::Changed(properties))
}

/// The bar of a running job: phase, bytes, rate and ETA.
fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{msg:<12} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// What we know of a job from its PropertiesChanged signals, and how it is shown: a
/// progress bar with bytes, rate and ETA on a terminal, one line per phase otherwise;
/// while the job is queued, how many jobs are ahead of it, as the bar's text or as a
/// line whenever that changes.
pub(crate) struct JobView {
    state: Option<JobState>,
    queue_position: u32,
    phase: String,
    pub(crate) name: String,
    pub(crate) error: String,
    bytes_done: u64,
    bytes_total: u64,
    bar: Option<indicatif::ProgressBar>,
    shown: bool,
}

impl JobView {
    /// A view that shows progress when `shown` (not with `-q`), as a bar on a terminal.
    pub(crate) fn new(shown: bool, tty: bool) -> Self {
        let bar = (shown && tty).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
            bar.set_style(progress_style());
            bar
        });
        Self {
            state: None,
            queue_position: 0,
            phase: String::new(),
            name: String::new(),
            error: String::new(),
            bytes_done: 0,
            bytes_total: 0,
            bar,
            shown,
        }
    }

    /// Whether the job is known to run, or to have ended.
    fn has_left_the_queue(&self) -> bool {
        self.state.is_some_and(|state| state != JobState::Queued)
    }

    /// How many jobs are ahead, while the job waits in line.
    fn waiting_for(&self) -> Option<u32> {
        (self.state == Some(JobState::Queued) && self.queue_position > 0).then_some(self.queue_position)
    }

    pub(crate) fn apply(&mut self, changed: JobProperties) {
        let waited = self.waiting_for();
        self.state = changed.state.or(self.state);
        self.queue_position = changed.queue_position.unwrap_or(self.queue_position);
        let mut phase_changed = false;
        if let Some(phase) = changed.phase {
            phase_changed = phase != self.phase;
            self.phase = phase;
        }
        self.name = changed.name.unwrap_or(std::mem::take(&mut self.name));
        self.error = changed.error.unwrap_or(std::mem::take(&mut self.error));
        self.bytes_done = changed.bytes_done.unwrap_or(self.bytes_done);
        self.bytes_total = changed.bytes_total.unwrap_or(self.bytes_total);
        let waiting = self.waiting_for();
        match (&self.bar, waiting) {
            (Some(bar), Some(ahead)) => {
                if waited.is_none() {
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{msg}").unwrap_or_else(|_| progress_style()),
                    );
                }
                bar.set_message(format!("waiting for {}", render::jobs_ahead(ahead)));
            }
            (None, Some(ahead)) if waited != waiting && self.shown => {
                eprintln!("waiting for {}", render::jobs_ahead(ahead))
            }
            (None, Some(_)) => {}
            (Some(bar), None) => {
                bar.set_message(self.phase.clone());
                if waited.is_some() {
                    bar.set_style(progress_style());
                }
                if self.bytes_total > 0 {
                    bar.set_length(self.bytes_total);
                }
                bar.set_position(self.bytes_done);
            }
            (None, None) if phase_changed && self.shown => eprintln!("{}", self.phase),
            (None, None) => {}
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use zbus::Variant;

    use super::*;

    #[test]
    fn a_failed_jobs_error_gives_its_kind_and_message() {
        let exists = failure("AlreadyExists: extension \"k3s\" is already installed");
        assert_eq!((exists.exit, exists.message.as_str()), (Exit::Failure, "extension \"k3s\" is already installed"));
        assert_eq!(failure("NotFound: gone").exit, Exit::NotFound);
        assert_eq!(failure("Weird: thing").message, "Weird: thing");
    }

    #[test]
    fn a_failed_job_ends_with_its_kind_and_what_it_did() {
        let failed =
            outcome("update", 5, JobResult::Failed, "NotFound: k3s has no previous version").expect_err("failed");
        assert_eq!(
            crate::exit::describe(&failed),
            (Exit::NotFound, "update failed: k3s has no previous version".into())
        );
        let silent = outcome("update", 5, JobResult::Failed, "").expect_err("failed");
        assert_eq!(crate::exit::describe(&silent), (Exit::Failure, "update failed (job 5)".into()));
        assert!(outcome("check", 5, JobResult::Canceled, "").is_err());
        assert!(outcome("check", 5, JobResult::Done, "").is_ok());
    }

    #[test]
    fn a_queued_job_shows_how_many_are_ahead_until_it_runs() {
        let mut view = JobView::new(true, false);
        let queued = |position| JobProperties {
            state: Some(JobState::Queued),
            queue_position: Some(position),
            ..JobProperties::default()
        };
        assert!(!view.has_left_the_queue(), "nothing known yet");
        view.apply(queued(2));
        assert_eq!(view.waiting_for(), Some(2));
        assert!(!view.has_left_the_queue());
        view.apply(JobProperties { queue_position: Some(1), ..JobProperties::default() });
        assert_eq!(view.waiting_for(), Some(1));
        view.apply(JobProperties {
            state: Some(JobState::Running),
            queue_position: Some(0),
            name: Some("k3s".into()),
            ..JobProperties::default()
        });
        assert_eq!(view.waiting_for(), None);
        assert!(view.has_left_the_queue());
        view.apply(JobProperties { phase: Some("downloading".into()), ..JobProperties::default() });
        assert_eq!(
            (view.state, view.name.as_str()),
            (Some(JobState::Running), "k3s"),
            "what a change leaves out stays"
        );
    }

    fn signal(path: &str, member: &str, body: &(impl serde::Serialize + zbus::Type)) -> Message {
        let interface = if member == "PropertiesChanged" {
            "org.freedesktop.DBus.Properties"
        } else {
            kairos_extensions_dbus::MANAGER_INTERFACE
        };
        Message::signal(path, interface, member).build(body).expect("signal")
    }

    #[test]
    fn only_the_followed_jobs_changes_and_end_are_news() {
        let ours = OwnedObjectPath::try_from("/org/kairos/Extensions1/job/7").expect("path");
        let theirs = OwnedObjectPath::try_from("/org/kairos/Extensions1/job/8").expect("path");
        let changed =
            JobProperties { state: Some(JobState::Running), bytes_done: Some(10), ..JobProperties::default() };
        let change = (kairos_extensions_dbus::JOB_INTERFACE, &changed, Vec::<String>::new());
        match job_signal(signal(ours.as_str(), "PropertiesChanged", &change), 7, &ours) {
            Some(JobSignal::Changed(got)) => assert_eq!(got, changed),
            _ => panic!("a change of our job is news"),
        }
        assert!(job_signal(signal(theirs.as_str(), "PropertiesChanged", &change), 7, &ours).is_none());

        let ended = |id: u64, path: &OwnedObjectPath, result: &str| {
            signal("/org/kairos/Extensions1", "JobRemoved", &(id, path.clone(), result.to_owned()))
        };
        assert!(matches!(
            job_signal(ended(7, &ours, "canceled"), 7, &ours),
            Some(JobSignal::Ended(Ok(JobResult::Canceled)))
        ));
        assert!(job_signal(ended(8, &theirs, "done"), 7, &ours).is_none());
        match job_signal(ended(7, &ours, "exploded"), 7, &ours) {
            Some(JobSignal::Ended(Err(e))) => assert!(e.to_string().contains("\"exploded\""), "{e}"),
            _ => panic!("an unknown result still ends the job"),
        }
        assert!(job_signal(ended(8, &theirs, "exploded"), 7, &ours).is_none());
        let refreshed = signal("/org/kairos/Extensions1", "Refreshed", &(vec!["k3s".to_owned()],));
        assert!(job_signal(refreshed, 7, &ours).is_none());
    }

    #[test]
    fn a_change_with_a_state_this_client_does_not_know_is_not_applied() {
        let path = OwnedObjectPath::try_from("/org/kairos/Extensions1/job/7").expect("path");
        let mut raw: HashMap<&str, Variant<'_>> = HashMap::new();
        raw.insert("State", Variant::from("bogus"));
        let body = (kairos_extensions_dbus::JOB_INTERFACE, raw, Vec::<String>::new());
        assert!(job_signal(signal(path.as_str(), "PropertiesChanged", &body), 7, &path).is_none());
    }
}
