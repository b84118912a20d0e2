//! Bus mode: every verb as a call to kairos-extensionsd, through the contract's proxies.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use kairos_extensions_dbus::properties::JobProperties;
use kairos_extensions_dbus::proxies::{ExtensionProxy, JobProxy, JobRemoved, ManagerProxy};
use kairos_extensions_dbus::{
    BUS_NAME, BootState, ErrorKind, ExtensionDescription, ExtensionStatus, FLAG_NOW, JobResult, JobState,
};
use zbus::fdo::PropertiesChanged;
use zbus::message::Type;
use zbus::names::InterfaceName;
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedObjectPath, OwnedVariant, Variant};

use crate::agent::{self, Agent};
use crate::args::{Command, InstallArgs};
use crate::exit::{Exit, Failure};
use crate::local::{file_uri, local_file};
use crate::outcome::{self, After};
use crate::output::Output;
use crate::render::{JobRow, ServiceStatus};
use crate::{monitor, render};

/// Calls a mutating proxy method, in its `_interactive` form (which lets polkit ask for
/// a password) when this invocation may ask, and explains a failure for people:
/// `authorized!(client, proxy.method / method_interactive(args...))`.
macro_rules! authorized {
    ($client:expr, $proxy:ident . $plain:ident / $interactive:ident ( $($arg:expr),* $(,)? )) => {{
        let client: &Client = $client;
        tracing::info!(interactive = client.interactive, "calling {}", stringify!($plain));
        let reply =
            if client.interactive { $proxy.$interactive($($arg),*).await } else { $proxy.$plain($($arg),*).await };
        reply.map_err(|e| explain(e, client.interactive))
    }};
}

/// A connection to the service, with the interaction policy of this invocation.
pub struct Client {
    connection: Connection,
    manager: ManagerProxy<'static>,
    interactive: bool,
    _agent: Option<Agent>,
}

impl Client {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set).
    pub async fn connect(no_ask_password: bool) -> Result<Self> {
        let interactive = agent::interactive(no_ask_password);
        // A password prompt can take minutes; without one, a minute is plenty.
        let timeout = if interactive { Duration::from_secs(600) } else { Duration::from_secs(120) };
        let connection = zbus::connection::Builder::system().method_timeout(timeout).build().await.map_err(|e| {
            Failure::new(
                Exit::Unavailable,
                format!("the kairos-extensionsd service is not available: cannot connect to the system bus ({e})"),
            )
        })?;
        let manager = ManagerProxy::new(&connection).await?;
        let agent = if interactive { agent::start() } else { None };
        Ok(Self { connection, manager, interactive, _agent: agent })
    }

    /// The running boot and one extension's enablement and merge, read fresh after a
    /// change: `(boot, enabled states, merged)`.
    async fn live(&self, name: &str) -> Result<(Option<BootState>, Vec<BootState>, bool)> {
        let boot = self.manager.boot_state().await.map_err(|e| explain(e, false))?;
        let ext = self.extension(name).await?;
        let enabled = ext.enabled_boot_states().await.map_err(|e| explain(e, false))?;
        Ok((boot.parse().ok(), enabled, ext.merged().await.map_err(|e| explain(e, false))?))
    }

    /// A proxy for the extension `name`, reading its properties fresh.
    async fn extension(&self, name: &str) -> Result<ExtensionProxy<'static>> {
        let path = self.manager.get_extension(name).await.map_err(|e| explain(e, false))?;
        Ok(ExtensionProxy::builder(&self.connection)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?)
    }

    /// What a change of `name` did, in the words of [`outcome`].
    async fn after<T>(&self, name: &str, line: impl FnOnce(&After<'_>) -> T) -> Result<T> {
        let (boot, enabled, merged) = self.live(name).await?;
        Ok(line(&After { name, boot, enabled: &enabled, merged }))
    }

    /// `Describe`: everything known about `name`, the image verified.
    async fn describe(&self, name: &str) -> Result<ExtensionDescription> {
        tracing::info!(name, "calling Describe");
        let json = self.manager.describe(name).await.map_err(|e| explain(e, false))?;
        ExtensionDescription::from_json(&json)
            .context("the service described the extension in a form this kairos-ext does not understand")
    }

    /// A proxy for the job at `path`, reading its properties fresh.
    async fn job(&self, path: OwnedObjectPath) -> Result<JobProxy<'static>> {
        Ok(JobProxy::builder(&self.connection)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?)
    }
}

/// Runs one command against the service.
pub async fn run(command: Command, no_ask_password: bool, out: Output) -> Result<()> {
    let client = Client::connect(no_ask_password).await?;
    let manager = &client.manager;
    match command {
        Command::List { filter, .. } => {
            let state = filter.state();
            let (mut list, updates) = crate::update::list(&client.connection).await?;
            list.retain(|e| state.is_none_or(|s| e.enabled.contains(&s)));
            // Which extensions have an update is part of the legend, as systemctl's
            // closing lines are.
            out.data(&list, |style, legend| {
                let table = render::table(&list, state, style, legend);
                if legend { table + &crate::update::updates_footer(&updates) } else { table }
            })?;
        }
        Command::Inspect { name, .. } => {
            let ext = client.describe(name.as_str()).await?;
            out.data(&ext, |style, _| render::details(&ext, style))?;
        }
        Command::Install(args) => install(&client, args, out).await?,
        Command::Enable(args) => {
            let state = args.state();
            let flags = if args.now { FLAG_NOW } else { 0 };
            let (_, before, _) = client.live(args.name.as_str()).await?;
            authorized!(&client, manager.enable / enable_interactive(args.name.as_str(), state, flags))?;
            let changed = !before.contains(&state);
            out.said(&client.after(args.name.as_str(), |a| outcome::enabled(a, state, changed, args.now)).await?)?;
        }
        Command::Disable(args) => {
            let state = args.state();
            let flags = if args.now { FLAG_NOW } else { 0 };
            let (_, before, _) = client.live(args.name.as_str()).await?;
            authorized!(&client, manager.disable / disable_interactive(args.name.as_str(), state, flags))?;
            let changed = before.contains(&state);
            out.said(&client.after(args.name.as_str(), |a| outcome::disabled(a, state, changed, args.now)).await?)?;
        }
        Command::Remove { name, now, .. } => {
            let flags = if now { FLAG_NOW } else { 0 };
            let (_, _, merged_before) = client.live(name.as_str()).await?;
            authorized!(&client, manager.remove / remove_interactive(name.as_str(), flags))?;
            let merged_after =
                manager.merged().await.map_err(|e| explain(e, false))?.iter().any(|m| m == name.as_str());
            out.said(&outcome::removed(name.as_str(), merged_before, merged_after))?;
        }
        Command::Refresh { .. } => {
            let merged = authorized!(&client, manager.refresh / refresh_interactive(0))?;
            out.data(&serde_json::json!({ "merged": merged }), |_, legend| render::merged(&merged, legend))?;
        }
        Command::Search { text, .. } => {
            crate::search::through_service(
                manager,
                &crate::update::list(&client.connection).await?.0,
                text.as_deref(),
                &out,
            )
            .await?;
        }
        Command::Jobs { .. } => {
            tracing::info!("calling ListJobs");
            let jobs = manager.list_jobs().await.map_err(|e| explain(e, false))?;
            let mut rows = Vec::with_capacity(jobs.len());
            for (id, kind, state, path) in jobs {
                // A job may end between the listing and these reads: what it said last stays.
                let job = client.job(path).await?;
                rows.push(JobRow {
                    id,
                    kind: kind.as_str().to_owned(),
                    state,
                    phase: job.phase().await.unwrap_or_default(),
                    queue_position: job.queue_position().await.unwrap_or(0),
                    progress: job.progress().await.unwrap_or(0),
                    bytes_done: job.bytes_done().await.unwrap_or(0),
                    bytes_total: job.bytes_total().await.unwrap_or(0),
                    name: job.name().await.unwrap_or_default(),
                    source: job.source().await.unwrap_or_default(),
                });
            }
            out.data(&rows, |style, legend| render::jobs(&rows, style, legend))?;
        }
        Command::Cancel { id } => {
            let job = client.job(kairos_extensions_dbus::paths::job_path(id)).await?;
            authorized!(&client, job.cancel / cancel_interactive()).map_err(|e| no_such_job(e, id))?;
            out.said(&format!("Cancel requested for job {id}"))?;
        }
        Command::Status { .. } => {
            tracing::info!("reading the manager's properties");
            let read = |e| explain(e, false);
            let status = ServiceStatus {
                service: BUS_NAME.to_owned(),
                version: manager.version().await.map_err(read)?,
                boot_state: manager.boot_state().await.map_err(read)?,
                merged: manager.merged().await.map_err(read)?,
                image_policy: manager.image_policy().await.map_err(read)?,
                store_directory: manager.store_directory().await.map_err(read)?,
            };
            out.data(&status, |_, _| render::status_text(&status))?;
        }
        Command::Monitor { .. } => {
            // Reading a property starts the service when the bus can, and says so once
            // when it cannot, instead of waiting for signals that never come.
            manager.version().await.map_err(|e| explain(e, false))?;
            monitor::run(&client.connection, out).await?
        }
        Command::Check(args) => {
            crate::update::check(&client.connection, manager, client.interactive, &args, &out).await?
        }
        Command::Update(args) => crate::update::update(&client.connection, manager, client.interactive, &args).await?,
        Command::Rollback(args) => {
            crate::update::rollback(&client.connection, manager, client.interactive, &args).await?
        }
    }
    Ok(())
}

/// A failed job's `Error`, `Kind: message`, as the status of its kind and the message.
fn job_failure(error: &str) -> Failure {
    let kind = error.split_once(": ").and_then(|(name, message)| {
        ErrorKind::ALL.into_iter().find(|k| k.short_name() == name).map(|kind| (kind, message))
    });
    match kind {
        Some((kind, message)) => Failure::new(Exit::of_kind(kind), message),
        None => Failure::new(Exit::Failure, error),
    }
}

/// A job that is not there: the service answers an unknown object path with
/// `UnknownObject`, which people know as "no job N".
fn no_such_job(error: anyhow::Error, id: u64) -> anyhow::Error {
    match error.downcast_ref::<Failure>() {
        Some(failure) if failure.exit == Exit::NotFound => Failure::new(Exit::NotFound, format!("no job {id}")).into(),
        _ => error,
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

/// Installs through a job and follows it to the end; Ctrl-C cancels the job.
async fn install(client: &Client, args: InstallArgs, out: Output) -> Result<()> {
    let manager = &client.manager;
    let mut options: HashMap<&str, OwnedVariant> = HashMap::new();
    let variant = |v: Variant<'static>| OwnedVariant::try_from(v).map_err(|e| anyhow!("cannot encode an option: {e}"));
    if let Some(name) = &args.name {
        options.insert("name", variant(Variant::from(name.to_string()))?);
    }
    if !args.enable.is_empty() {
        let states: Vec<String> = args.enable.iter().map(|s| s.as_str().to_owned()).collect();
        options.insert("enable", variant(Variant::from(states))?);
    }
    if args.now {
        options.insert("now", variant(Variant::from(true))?);
    }
    if args.replace {
        options.insert("replace", variant(Variant::from(true))?);
    }
    if let Some(digest) = &args.digest {
        options.insert("digest", variant(Variant::from(digest.clone()))?);
    }

    // One ordered stream of every signal of the service, subscribed before the job
    // starts: the job's last PropertiesChanged is then always seen before its
    // JobRemoved, and not even a fast job's end slips past.
    let rule = MatchRule::builder().msg_type(Type::Signal).sender(BUS_NAME).build()?;
    let mut signals =
        MessageStream::for_match_rule(rule, &client.connection, std::num::NonZeroUsize::new(1024)).await?;

    // The service going away (stopped, crashed) ends the job without a JobRemoved.
    let bus = zbus::fdo::DBusProxy::new(&client.connection).await?;
    let mut owner_changes = bus.receive_name_owner_changed_with_args(&[(0, BUS_NAME)]).await?;

    // Whether an extension of the name that gets installed was there before: the job
    // does not say whether it replaced one.
    let before: Vec<String> = if args.replace {
        crate::update::list(&client.connection)
            .await?
            .0
            .into_iter()
            .filter(|e| e.status != ExtensionStatus::ImageMissing)
            .map(|e| e.name)
            .collect()
    } else {
        Vec::new()
    };
    // Failures of the install itself name what was being installed, as offline mode does.
    let shown = kairos_extensionsd::engine::sources::redact(&args.source);
    let cannot = || format!("cannot install {shown}");
    // A bare name is a catalog entry unless a local file of that name exists.
    let catalog = crate::search::catalog_source(&args.source);
    let local = if catalog.is_some() { None } else { local_file(&args.source).with_context(cannot)? };
    let source = catalog.unwrap_or_else(|| args.source.clone());
    let started = match local {
        Some(path) if rustix::process::geteuid().is_root() => {
            let uri = file_uri(&path);
            authorized!(client, manager.install / install_interactive(uri.as_str(), options))
        }
        Some(path) => {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))
                .with_context(cannot)?;
            let shown = path.display().to_string();
            authorized!(
                client,
                manager.install_from_fd / install_from_fd_interactive(zbus::Fd::from(&file), shown.as_str(), options)
            )
        }
        None => authorized!(client, manager.install / install_interactive(source.as_str(), options)),
    };
    let (id, path) = started.with_context(cannot)?;

    tracing::info!(job = id, path = %path, "the install runs as job {id}");
    let mut view = JobView::new(!out.quiet(), std::io::stderr().is_terminal());
    // Signals carry changes only: where the job stands (in line, or its phase) comes
    // from asking once. Signals already on their way may be older; the next one puts
    // that right.
    if let Ok(job) = client.job(path.clone()).await
        && let (Ok(state), Ok(position), Ok(phase)) = (job.state().await, job.queue_position().await, job.phase().await)
    {
        view.apply(JobProperties {
            state: Some(state),
            queue_position: Some(position),
            phase: Some(phase),
            ..JobProperties::default()
        });
    }
    let mut cancel_sent = false;
    let result = loop {
        tokio::select! {
            message = signals.next() => {
                let Some(message) = message else { bail!("lost the connection to the service while job {id} was running") };
                let Ok(message) = message else { continue };
                match job_signal(message, id, &path) {
                    Some(JobSignal::Changed(changed)) => view.apply(changed),
                    Some(JobSignal::Ended(result)) => break result,
                    None => {}
                }
            }
            Some(change) = owner_changes.next() => {
                if change.args().is_ok_and(|a| a.new_owner().is_none()) {
                    view.finish();
                    bail!("the service stopped while job {id} was running; whether it finished is unknown (see `kairos-ext list`)");
                }
            }
            // The handler stays for the whole wait, so a second Ctrl-C would do nothing
            // unless it is answered here: it stops waiting, the service goes on canceling.
            _ = tokio::signal::ctrl_c(), if cancel_sent => {
                view.finish();
                bail!("stopped waiting; job {id} is still being canceled by the service");
            }
            _ = tokio::signal::ctrl_c(), if !cancel_sent => {
                eprintln!("\nCanceling job {id}… (Ctrl-C again to stop waiting)");
                cancel_sent = true;
                let job = client.job(path.clone()).await?;
                if let Err(e) = authorized!(client, job.cancel / cancel_interactive()) {
                    eprintln!("kairos-ext: {}", crate::exit::describe(&e).1);
                }
            }
        }
    };
    view.finish();
    let result = result?;
    tracing::info!(
        job = id,
        "job {id} ended: {}{}",
        result.as_str(),
        if view.error.is_empty() { String::new() } else { format!(" ({})", view.error) }
    );
    match result {
        JobResult::Done => {
            // A pull of several images names them all: `k3s, tools`.
            let names: Vec<&str> = view.name.split(", ").filter(|n| !n.is_empty()).collect();
            if names.is_empty() {
                return out.said(&format!("Installed {}", args.source));
            }
            for name in names {
                let ext = client.extension(name).await?;
                let read = |e| explain(e, false);
                let (digest, size) = (ext.digest().await.map_err(read)?, ext.size().await.map_err(read)?);
                out.said(&outcome::installed(name, &digest, size, before.iter().any(|b| b == name)))?;
                let lines = client
                    .after(name, |a| {
                        args.enable.iter().map(|state| outcome::enabled(a, *state, true, args.now)).collect::<Vec<_>>()
                    })
                    .await?;
                for line in lines {
                    out.said(&line)?;
                }
            }
            Ok(())
        }
        JobResult::Canceled => bail!("install canceled"),
        JobResult::Failed => {
            let failure = if view.error.is_empty() {
                Failure::new(Exit::Failure, format!("job {id} failed"))
            } else {
                job_failure(&view.error)
            };
            Err(anyhow::Error::from(failure).context(cannot()))
        }
    }
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
    name: String,
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

/// Turns a D-Bus failure into a sentence for people and its exit status: never a raw
/// D-Bus error name. The contract's errors carry the engine's own message, which
/// offline mode prints too.
pub fn explain(error: zbus::Error, interactive: bool) -> anyhow::Error {
    let (name, message) = match &error {
        zbus::Error::MethodError(name, message, _) => (name.to_string(), message.clone().unwrap_or_default()),
        zbus::Error::FDO(fdo) => {
            let text = fdo.to_string();
            match text.split_once(": ") {
                Some((name, message)) => (name.to_owned(), message.to_owned()),
                None => (String::new(), text),
            }
        }
        zbus::Error::InputOutput(e) => {
            return Failure::new(Exit::Unavailable, format!("the connection to the system bus failed ({e})")).into();
        }
        other => return Failure::new(Exit::Failure, format!("talking to the service failed: {other}")).into(),
    };
    let short = name.rsplit('.').next().unwrap_or(&name);
    let (exit, text) = match short {
        "ServiceUnknown" | "NameHasNoOwner" => {
            (Exit::Unavailable, "the kairos-extensionsd service is not running and the bus cannot start it".to_owned())
        }
        _ if name.contains(".Spawn.") => {
            (Exit::Unavailable, format!("the kairos-extensionsd service could not be started ({message})"))
        }
        "AccessDenied" if !interactive => (
            Exit::NotAuthorized,
            format!(
                "{message} (run it as root, on a terminal to authenticate, or ask for the org.kairos.extensions1.* polkit rights)"
            ),
        ),
        "AccessDenied" => (Exit::NotAuthorized, message),
        "InteractiveAuthorizationRequired" => (
            Exit::NotAuthorized,
            format!(
                "authentication is required ({message}); run kairos-ext on a terminal without --no-ask-password, run it as root, or ask for the org.kairos.extensions1.* polkit rights"
            ),
        ),
        "UnknownObject" => (Exit::NotFound, "the service has no such object".to_owned()),
        "NoReply" | "Timeout" | "TimedOut" => (Exit::Failure, "the service did not answer in time".to_owned()),
        "InvalidArgs" => (Exit::Failure, message),
        _ => match ErrorKind::from_dbus_name(&name) {
            Some(kind) => (Exit::of_kind(kind), message),
            None => (Exit::Failure, format!("the service failed: {message}")),
        },
    };
    Failure::new(exit, text).into()
}

#[cfg(test)]
mod tests {
    use kairos_extensions_dbus::properties::JobProperties;

    use super::*;

    fn reply(name: &str, message: &str) -> zbus::Error {
        let name = zbus::names::OwnedErrorName::try_from(name).expect("an error name");
        let call = Message::method_call("/", "Ping").build(&()).expect("call");
        let error = Message::error(&call.header(), name.clone()).build(&(message,)).expect("error");
        zbus::Error::MethodError(name, Some(message.to_owned()), error)
    }

    fn explained(name: &str, message: &str, interactive: bool) -> (Exit, String) {
        crate::exit::describe(&explain(reply(name, message), interactive))
    }

    #[test]
    fn bus_errors_become_sentences_with_their_status_and_no_bus_names() {
        let cases = [
            ("org.kairos.Extensions1.Error.NotFound", "no extension named \"x\" is installed", Exit::NotFound),
            (
                "org.kairos.Extensions1.Error.AlreadyExists",
                "extension \"x\" is already installed; pass replace to overwrite it",
                Exit::Failure,
            ),
            (
                "org.freedesktop.DBus.Error.ServiceUnknown",
                "The name was not provided by any .service files",
                Exit::Unavailable,
            ),
            ("org.freedesktop.DBus.Error.Spawn.ChildExited", "Process exited with status 1", Exit::Unavailable),
            ("org.freedesktop.DBus.Error.AccessDenied", "not authorized", Exit::NotAuthorized),
            ("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", "needs a password", Exit::NotAuthorized),
            (
                "org.freedesktop.DBus.Error.UnknownObject",
                "Unknown object '/org/kairos/Extensions1/job/9'",
                Exit::NotFound,
            ),
            ("com.example.Weird", "odd", Exit::Failure),
        ];
        for (name, message, exit) in cases {
            let (got, text) = explained(name, message, false);
            assert_eq!(got, exit, "{name}");
            for raw in ["org.freedesktop", "Extensions1.Error", "com.example", "Unknown object", ".service files"] {
                assert!(!text.contains(raw), "{name}: {text}");
            }
        }
        assert!(explained(cases[1].0, cases[1].1, false).1.ends_with("pass --replace to overwrite it"));
        assert!(explained(cases[4].0, "not authorized", false).1.contains("polkit rights"));
    }

    #[test]
    fn a_failed_jobs_error_gives_its_kind_and_message() {
        let failure = job_failure("AlreadyExists: extension \"k3s\" is already installed");
        assert_eq!((failure.exit, failure.message.as_str()), (Exit::Failure, "extension \"k3s\" is already installed"));
        assert_eq!(job_failure("NotFound: gone").exit, Exit::NotFound);
        assert_eq!(job_failure("Weird: thing").message, "Weird: thing");
    }

    #[test]
    fn a_queued_job_shows_how_many_are_ahead_until_it_runs() {
        let mut view = JobView::new(true, false);
        let queued = |position| JobProperties {
            state: Some(JobState::Queued),
            queue_position: Some(position),
            ..JobProperties::default()
        };
        view.apply(queued(2));
        assert_eq!(view.waiting_for(), Some(2));
        view.apply(JobProperties { queue_position: Some(1), ..JobProperties::default() });
        assert_eq!(view.waiting_for(), Some(1));
        view.apply(JobProperties {
            state: Some(JobState::Running),
            queue_position: Some(0),
            name: Some("k3s".into()),
            ..JobProperties::default()
        });
        assert_eq!(view.waiting_for(), None);
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
