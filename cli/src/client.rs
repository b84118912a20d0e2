//! Bus mode: every verb as a call to kairos-extensionsd, through the contract's proxies.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kairos_extensions_dbus::proxies::{AllPropertiesProxy, ExtensionProxy, JobProxy, ManagerProxy};
use kairos_extensions_dbus::{
    BUS_NAME, BootState, ErrorKind, ExtensionDescription, ExtensionStatus, FLAG_NOW, JobResult, MANAGER_PATH,
};
use zbus::{Connection, OwnedObjectPath, OwnedVariant, Variant};

use crate::agent::{self, Agent};
use crate::args::{Command, InstallArgs};
use crate::exit::{Exit, Failure};
use crate::job::{self, JobView, JobWatch};
use crate::local::local_file;
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
pub(crate) use authorized;

/// A connection to the service, with the interaction policy of this invocation.
pub struct Client {
    pub(crate) connection: Connection,
    pub(crate) manager: ManagerProxy<'static>,
    /// Whether polkit may ask this invocation for a password.
    pub(crate) interactive: bool,
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
    pub(crate) async fn extension(&self, name: &str) -> Result<ExtensionProxy<'static>> {
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

    /// Every property of the object at `path` in one `GetAll` reply.
    pub(crate) async fn all_properties<P>(&self, path: P) -> Result<AllPropertiesProxy<'static>>
    where
        P: TryInto<zbus::ObjectPath<'static>>,
        P::Error: Into<zbus::Error>,
    {
        all_properties(&self.connection, path).await
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

/// A typed `GetAll` of the object at `path` on `connection`, read fresh each time.
pub(crate) async fn all_properties<P>(connection: &Connection, path: P) -> Result<AllPropertiesProxy<'static>>
where
    P: TryInto<zbus::ObjectPath<'static>>,
    P::Error: Into<zbus::Error>,
{
    Ok(AllPropertiesProxy::builder(connection)
        .path(path)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
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
                // A job may end between the listing and this read: the listing's row stays.
                let job = client.all_properties(path).await?.job().await.unwrap_or_default();
                rows.push(JobRow {
                    id,
                    kind: kind.as_str().to_owned(),
                    state,
                    phase: job.phase.unwrap_or_default(),
                    queue_position: job.queue_position.unwrap_or(0),
                    progress: job.progress.unwrap_or(0),
                    bytes_done: job.bytes_done.unwrap_or(0),
                    bytes_total: job.bytes_total.unwrap_or(0),
                    name: job.name.unwrap_or_default(),
                    source: job.source.unwrap_or_default(),
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
            let all = client.all_properties(MANAGER_PATH).await?.manager().await.map_err(|e| explain(e, false))?;
            let status = ServiceStatus {
                service: BUS_NAME.to_owned(),
                version: all.version,
                boot_state: all.boot_state,
                merged: all.merged,
                image_policy: all.image_policy,
                store_directory: all.store_directory,
            };
            out.data(&status, |_, _| render::status_text(&status))?;
        }
        Command::Monitor { .. } => {
            // Reading a property starts the service when the bus can, and says so once
            // when it cannot, instead of waiting for signals that never come.
            manager.version().await.map_err(|e| explain(e, false))?;
            monitor::run(&client.connection, out).await?
        }
        Command::Check(args) => crate::update::check(&client, &args, &out).await?,
        Command::Update(args) => crate::update::update(&client, &args, &out).await?,
        Command::Rollback(args) => crate::update::rollback(&client, &args, &out).await?,
    }
    Ok(())
}

/// One value of an `a{sv}` options argument.
pub(crate) fn option(value: Variant<'static>) -> Result<OwnedVariant> {
    OwnedVariant::try_from(value).map_err(|e| anyhow!("cannot encode an option: {e}"))
}

/// A job that is not there: the service answers an unknown object path with
/// `UnknownObject`, which people know as "no job N".
fn no_such_job(error: anyhow::Error, id: u64) -> anyhow::Error {
    match error.downcast_ref::<Failure>() {
        Some(failure) if failure.exit == Exit::NotFound => Failure::new(Exit::NotFound, format!("no job {id}")).into(),
        _ => error,
    }
}

/// Installs through a job and follows it to the end; Ctrl-C cancels the job.
async fn install(client: &Client, args: InstallArgs, out: Output) -> Result<()> {
    let manager = &client.manager;
    let mut options: HashMap<&str, OwnedVariant> = HashMap::new();
    if let Some(name) = &args.name {
        options.insert("name", option(Variant::from(name.to_string()))?);
    }
    if !args.enable.is_empty() {
        let states: Vec<String> = args.enable.iter().map(|s| s.as_str().to_owned()).collect();
        options.insert("enable", option(Variant::from(states))?);
    }
    if args.now {
        options.insert("now", option(Variant::from(true))?);
    }
    if args.replace {
        options.insert("replace", option(Variant::from(true))?);
    }
    if let Some(digest) = &args.digest {
        options.insert("digest", option(Variant::from(digest.clone()))?);
    }

    let mut watch = JobWatch::subscribe(&client.connection).await?;

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
    // Every local file goes over as an open file, root's too: the service's sandbox
    // (ProtectHome=, PrivateTmp=) hides /root, /home and /tmp from it, so a path it
    // would open itself may not be there for it.
    let started = match local {
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
    let result = watch.follow(&client.connection, client.interactive, id, &path, &mut view, |_| {}).await?;
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
                job::failure(&view.error)
            };
            Err(anyhow::Error::from(failure).context(cannot()))
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
    use zbus::Message;

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
}
