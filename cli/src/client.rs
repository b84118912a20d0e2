//! Bus mode: every verb as a call to kairos-extensionsd.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use kairos_extensions_dbus::paths::job_path;
use kairos_extensions_dbus::proxies::{ExtensionProxy, JobProxy, ManagerProxy};
use kairos_extensions_dbus::{BUS_NAME, BootState, ErrorKind, FLAG_NOW, JobState};
use kairos_extensionsd::engine::Extension;
use kairos_extensionsd::engine::sources::Source;
use zbus::message::Type;
use zbus::proxy::MethodFlags;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath, OwnedVariant, Variant};

use crate::agent::{self, Agent};
use crate::args::{Command, InstallArgs};
use crate::outcome::{self, After};
use crate::{monitor, render};

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
        let connection = zbus::connection::Builder::system()
            .method_timeout(timeout)
            .build()
            .await
            .context("cannot connect to the system bus")?;
        let manager = ManagerProxy::new(&connection).await?;
        let agent = if interactive { agent::start() } else { None };
        Ok(Self { connection, manager, interactive, _agent: agent })
    }

    fn flags(&self) -> MethodFlags {
        if self.interactive { MethodFlags::ALLOW_INTERACTIVE_AUTH } else { MethodFlags::empty() }
    }

    /// Calls a mutating manager method, allowing interactive authorization when this
    /// invocation may ask for a password.
    async fn call<B, R>(&self, method: &'static str, body: &B) -> Result<R>
    where
        B: serde::Serialize + zbus::DynamicType,
        R: for<'d> zbus::wire::DynamicDeserialize<'d>,
    {
        self.manager
            .inner()
            .call_with_flags(method, self.flags(), body)
            .await
            .map_err(|e| explain(e, self.interactive))?
            .ok_or_else(|| anyhow!("{method} returned no reply"))
    }

    /// The running boot and one extension's enablement and merge, read fresh after a
    /// change: `(boot, enabled states, merged)`.
    async fn live(&self, name: &str) -> Result<(Option<BootState>, Vec<BootState>, bool)> {
        let boot = self.manager.boot_state().await.map_err(|e| explain(e, false))?;
        let path = self.manager.get_extension(name).await.map_err(|e| explain(e, false))?;
        let ext = ExtensionProxy::builder(&self.connection)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let enabled = ext.enabled_boot_states().await?.iter().filter_map(|s| s.parse().ok()).collect();
        Ok((boot.parse().ok(), enabled, ext.merged().await?))
    }

    /// What a change of `name` did, in the words of [`outcome`].
    async fn after<T>(&self, name: &str, line: impl FnOnce(&After<'_>) -> T) -> Result<T> {
        let (boot, enabled, merged) = self.live(name).await?;
        Ok(line(&After { name, boot, enabled: &enabled, merged }))
    }

    async fn describe(&self, name: &str) -> Result<Extension> {
        let json = self.manager.describe(name).await.map_err(|e| explain(e, self.interactive))?;
        serde_json::from_str(&json)
            .context("the service described the extension in a form this kairos-ext does not understand")
    }
}

/// Runs one command against the service.
pub async fn run(command: Command, no_ask_password: bool) -> Result<()> {
    let client = Client::connect(no_ask_password).await?;
    match command {
        Command::List { json } => {
            let rows = client.manager.list_extensions().await.map_err(|e| explain(e, false))?;
            let mut list = Vec::with_capacity(rows.len());
            for (name, ..) in rows {
                list.push(client.describe(&name).await?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render::table(&list));
            }
        }
        Command::Inspect { name, json } => {
            let ext = client.describe(name.as_str()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ext)?);
            } else {
                print!("{}", render::details(&ext));
            }
        }
        Command::Install(args) => install(&client, args).await?,
        Command::Enable(args) => {
            let state = args.state();
            let flags = if args.now { FLAG_NOW } else { 0 };
            let (_, before, _) = client.live(args.name.as_str()).await?;
            client.call::<_, ()>("Enable", &(args.name.as_str(), state.as_str(), flags)).await?;
            let changed = !before.contains(&state);
            println!("{}", client.after(args.name.as_str(), |a| outcome::enabled(a, state, changed, args.now)).await?);
        }
        Command::Disable(args) => {
            let state = args.state();
            let flags = if args.now { FLAG_NOW } else { 0 };
            let (_, before, _) = client.live(args.name.as_str()).await?;
            client.call::<_, ()>("Disable", &(args.name.as_str(), state.as_str(), flags)).await?;
            let changed = before.contains(&state);
            println!("{}", client.after(args.name.as_str(), |a| outcome::disabled(a, state, changed, args.now)).await?);
        }
        Command::Remove { name, now } => {
            let flags = if now { FLAG_NOW } else { 0 };
            let (_, _, merged_before) = client.live(name.as_str()).await?;
            client.call::<_, ()>("Remove", &(name.as_str(), flags)).await?;
            let merged_after =
                client.manager.merged().await.map_err(|e| explain(e, false))?.iter().any(|m| m == name.as_str());
            println!("{}", outcome::removed(name.as_str(), merged_before, merged_after));
        }
        Command::Refresh => {
            let merged: Vec<String> = client.call("Refresh", &(0u64,)).await?;
            if merged.is_empty() {
                println!("No extensions merged.");
            } else {
                println!("Merged: {}", merged.join(", "));
            }
        }
        Command::Jobs => {
            let jobs = client.manager.list_jobs().await.map_err(|e| explain(e, false))?;
            if jobs.is_empty() {
                println!("No jobs running.");
            }
            for (id, kind, state, _) in jobs {
                let job = JobProxy::builder(&client.connection).path(job_path(id)).build().await?;
                let source = job.inner().get_property::<String>("Source").await.unwrap_or_default();
                // A queued job has no phase yet, only its place in line.
                let phase = if state == JobState::Queued.as_str() {
                    jobs_ahead(job.queue_position().await.unwrap_or(0))
                } else {
                    job.phase().await.unwrap_or_default()
                };
                let progress = job.progress().await.unwrap_or(0);
                println!("{id:>4}  {kind:<8} {state:<9} {phase:<12} {progress:>3}%  {source}");
            }
        }
        Command::Cancel { id } => {
            let job = JobProxy::builder(&client.connection).path(job_path(id)).build().await?;
            job.inner()
                .call_with_flags::<_, _, ()>("Cancel", client.flags(), &())
                .await
                .map_err(|e| explain(e, client.interactive))?;
            println!("Cancel requested for job {id}");
        }
        Command::Status => {
            let m = &client.manager;
            let merged = m.merged().await?;
            println!("Service:      {BUS_NAME} {}", m.version().await?);
            println!("Boot state:   {}", m.boot_state().await?);
            println!("Merged:       {}", if merged.is_empty() { "-".to_owned() } else { merged.join(", ") });
            println!("Image policy: {}", m.image_policy().await?);
            println!("Store:        {}", m.store_directory().await?);
        }
        Command::Monitor { json } => monitor::run(&client.connection, json).await?,
    }
    Ok(())
}

/// Installs through a job and follows it to the end; Ctrl-C cancels the job.
async fn install(client: &Client, args: InstallArgs) -> Result<()> {
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

    let (id, path): (u64, OwnedObjectPath) = match local_file(&args.source)? {
        Some(path) if rustix::process::geteuid().is_root() => {
            let uri = file_uri(&path);
            client.call("Install", &(uri.as_str(), &options)).await?
        }
        Some(path) => {
            let file = std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let fd = zbus::Fd::from(&file);
            let shown = path.display().to_string();
            client.call("InstallFromFd", &(fd, shown.as_str(), &options)).await?
        }
        None => client.call("Install", &(args.source.as_str(), &options)).await?,
    };

    let mut view = JobView::new(std::io::stderr().is_terminal());
    // Signals carry changes only: where the job stands (in line, or its phase) comes
    // from asking once. Signals already on their way may be older; the next one puts
    // that right.
    if let Ok(job) = JobProxy::builder(&client.connection)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        && let (Ok(state), Ok(position), Ok(phase)) = (job.state().await, job.queue_position().await, job.phase().await)
    {
        let mut current = HashMap::new();
        current.insert("State".to_owned(), OwnedVariant::from(zbus::Str::from(state)));
        current.insert("QueuePosition".to_owned(), OwnedVariant::from(position));
        current.insert("Phase".to_owned(), OwnedVariant::from(zbus::Str::from(phase)));
        view.apply(current);
    }
    let mut cancel_sent = false;
    let result = loop {
        tokio::select! {
            message = signals.next() => {
                let Some(message) = message else { bail!("lost the connection to the service while job {id} was running") };
                let Ok(message) = message else { continue };
                let header = message.header();
                match header.member().map(|m| m.as_str()) {
                    Some("JobRemoved") => {
                        if let Ok((ended, _, result)) = message.body().deserialize::<(u64, OwnedObjectPath, String)>()
                            && ended == id {
                                break result;
                            }
                    }
                    Some("PropertiesChanged") if header.path().map(|p| p.as_str()) == Some(path.as_str()) => {
                        if let Ok((_, changed, _)) = message.body().deserialize::<(String, HashMap<String, OwnedVariant>, Vec<String>)>() {
                            view.apply(changed);
                        }
                    }
                    _ => {}
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
                let job = JobProxy::builder(&client.connection).path(path.clone()).build().await?;
                if let Err(e) = job.inner().call_with_flags::<_, _, ()>("Cancel", client.flags(), &()).await {
                    eprintln!("kairos-ext: {}", explain(e, client.interactive));
                }
            }
        }
    };
    view.finish();
    match result.as_str() {
        "done" => {
            println!("Installed {}", if view.name.is_empty() { args.source.as_str() } else { view.name.as_str() });
            if !args.enable.is_empty() && !view.name.is_empty() {
                let lines = client
                    .after(&view.name, |a| {
                        args.enable.iter().map(|state| outcome::enabled(a, *state, true, args.now)).collect::<Vec<_>>()
                    })
                    .await?;
                for line in lines {
                    println!("{line}");
                }
            }
            Ok(())
        }
        "canceled" => bail!("install canceled"),
        _ => {
            let error = if view.error.is_empty() { format!("job {id} failed") } else { view.error.clone() };
            bail!("install failed: {error}")
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

/// `1 job ahead`, `2 jobs ahead`.
fn jobs_ahead(count: u32) -> String {
    format!("{count} job{} ahead", if count == 1 { "" } else { "s" })
}

/// What we know of a job from its PropertiesChanged signals, and how it is shown: a
/// progress bar with bytes, rate and ETA on a terminal, one line per phase otherwise;
/// while the job is queued, how many jobs are ahead of it, as the bar's text or as a
/// line whenever that changes.
struct JobView {
    state: Option<JobState>,
    queue_position: u32,
    phase: String,
    name: String,
    error: String,
    bytes_done: u64,
    bytes_total: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl JobView {
    fn new(tty: bool) -> Self {
        let bar = tty.then(|| {
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
        }
    }

    /// How many jobs are ahead, while the job waits in line.
    fn waiting_for(&self) -> Option<u32> {
        (self.state == Some(JobState::Queued) && self.queue_position > 0).then_some(self.queue_position)
    }

    fn apply(&mut self, changed: HashMap<String, OwnedVariant>) {
        let mut phase_changed = false;
        let waited = self.waiting_for();
        for (key, value) in changed {
            match key.as_str() {
                "State" => {
                    self.state = String::try_from(value).ok().and_then(|s| s.parse().ok()).or(self.state);
                }
                "QueuePosition" => self.queue_position = u32::try_from(value).unwrap_or(self.queue_position),
                "Phase" => {
                    if let Ok(phase) = String::try_from(value) {
                        phase_changed = phase != self.phase;
                        self.phase = phase;
                    }
                }
                "Name" => self.name = String::try_from(value).unwrap_or_default(),
                "Error" => self.error = String::try_from(value).unwrap_or_default(),
                "BytesDone" => self.bytes_done = u64::try_from(value).unwrap_or(self.bytes_done),
                "BytesTotal" => self.bytes_total = u64::try_from(value).unwrap_or(self.bytes_total),
                _ => {}
            }
        }
        let waiting = self.waiting_for();
        match (&self.bar, waiting) {
            (Some(bar), Some(ahead)) => {
                if waited.is_none() {
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{msg}").unwrap_or_else(|_| progress_style()),
                    );
                }
                bar.set_message(format!("waiting for {}", jobs_ahead(ahead)));
            }
            (None, Some(ahead)) if waited != waiting => eprintln!("waiting for {}", jobs_ahead(ahead)),
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
            (None, None) if phase_changed => eprintln!("{}", self.phase),
            (None, None) => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The local file an install source names, if it names one.
/// The local image a source names, if it names one, as the absolute path the service
/// will open: `file://` URLs are decoded exactly as the service decodes them, and plain
/// paths are resolved (`..`, symlinks), since the service refuses `..`.
fn local_file(source: &str) -> Result<Option<PathBuf>> {
    if source.starts_with("file://") {
        return match Source::parse(source) {
            Ok(Source::File(path)) => Ok(Some(path)),
            Ok(_) => Ok(None),
            Err(e) => Err(anyhow!("{e}")),
        };
    }
    if source.contains("://") {
        return Ok(None);
    }
    Ok(Some(std::fs::canonicalize(source).with_context(|| format!("cannot open {source}"))?))
}

/// A `file://` URL the service decodes back to exactly `path`: every byte but the
/// plainest is percent-escaped, `%` itself included.
fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut uri = String::from("file://");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~+,=@:".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

/// Turns a D-Bus failure into a sentence for people.
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
        other => return anyhow!("{other}"),
    };
    let short = name.rsplit('.').next().unwrap_or(&name);
    match short {
        "ServiceUnknown" | "NameHasNoOwner" => {
            anyhow!("the kairos-extensionsd service is not running and could not be started ({message})")
        }
        "AccessDenied" if !interactive => anyhow!(
            "{message} (run it as root, on a terminal to authenticate, or ask for the org.kairos.extensions1.* polkit rights)"
        ),
        "InteractiveAuthorizationRequired" => anyhow!(
            "authentication is required ({message}); run kairos-ext on a terminal without --no-ask-password, run it as root, or ask for the org.kairos.extensions1.* polkit rights"
        ),
        _ if ErrorKind::from_dbus_name(&name).is_some() || short == "InvalidArgs" || short == "AccessDenied" => {
            anyhow!("{message}")
        }
        _ => anyhow!("{name}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_ahead_are_counted_in_words() {
        assert_eq!(jobs_ahead(1), "1 job ahead");
        assert_eq!(jobs_ahead(2), "2 jobs ahead");
        assert_eq!(jobs_ahead(64), "64 jobs ahead");
    }

    #[test]
    fn a_queued_job_shows_how_many_are_ahead_until_it_runs() {
        let mut view = JobView::new(false);
        let change = |pairs: &[(&str, OwnedVariant)]| -> HashMap<String, OwnedVariant> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), v.try_clone().expect("clone"))).collect()
        };
        let text = |s: &str| OwnedVariant::from(zbus::Str::from(s));
        view.apply(change(&[("State", text("queued")), ("QueuePosition", OwnedVariant::from(2u32))]));
        assert_eq!(view.waiting_for(), Some(2));
        view.apply(change(&[("QueuePosition", OwnedVariant::from(1u32))]));
        assert_eq!(view.waiting_for(), Some(1));
        view.apply(change(&[("State", text("running")), ("QueuePosition", OwnedVariant::from(0u32))]));
        assert_eq!(view.waiting_for(), None);
        view.apply(change(&[("State", text("bogus"))]));
        assert_eq!(view.state, Some(JobState::Running), "an unknown state changes nothing");
    }

    #[test]
    fn file_uris_name_exactly_the_path_the_service_will_open() {
        for path in ["/tmp/k3s.raw", "/tmp/k3s%41.raw", "/tmp/a b#c?d.raw", "/tmp/ünïcode.raw"] {
            let uri = file_uri(Path::new(path));
            match Source::parse(&uri) {
                Ok(Source::File(parsed)) => assert_eq!(parsed, Path::new(path), "{uri}"),
                other => panic!("{uri} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn local_files_resolve_parent_references_and_decode_urls() {
        let dir = tempfile::tempdir().expect("dir");
        let image = dir.path().join("k3s%41.raw");
        std::fs::write(&image, "image").expect("image");
        let nested = dir.path().join("sub");
        std::fs::create_dir(&nested).expect("sub");
        let through_parent = format!("{}/../k3s%41.raw", nested.display());
        let resolved = local_file(&through_parent).expect("resolves").expect("a local file");
        assert_eq!(resolved, std::fs::canonicalize(&image).expect("canonical"));
        let url = format!("file://{}/k3s%2541.raw", dir.path().display());
        assert_eq!(local_file(&url).expect("parses"), Some(image.clone()), "%25 is a percent sign");
        assert_eq!(local_file("oci://registry.example/k3s:v1").expect("not local"), None);
    }
}
