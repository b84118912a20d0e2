//! The D-Bus adapter: exports `org.kairos.Extensions1` over the engine.
//!
//! Each method validates its arguments, asks polkit, makes one engine call on a
//! blocking thread and lets [`sync`] announce what changed. Nothing here touches files.

pub mod announce;
pub mod args;
pub mod authz;
pub mod describe;
pub mod error;
pub mod extension;
pub mod job;
pub mod job_cells;
pub mod manager;
pub mod model;
pub mod object_manager;
pub mod ops;
pub mod queue;
pub mod read_only;
pub mod resync;
pub mod signals;
pub mod state;
pub mod systemd_unit;
pub mod updates;
pub mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kairos_extensions_dbus::{BUS_NAME, BootState, MANAGER_PATH};
use zbus::Connection;
use zbus::fdo::{RequestNameFlags, RequestNameReply};

use self::read_only::ReadOnly;
use crate::engine::config::RefreshMode;
use crate::engine::sysext::Refresher;
use crate::engine::{self, Config, Engine};

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The engine could not be opened.
    #[error("cannot open the extension store")]
    Engine(#[from] engine::Error),
    /// The bus connection failed.
    #[error("D-Bus")]
    Bus(#[from] zbus::Error),
    /// Another process owns the name.
    #[error("{BUS_NAME} is already owned by another process")]
    NameTaken,
    /// The first listing failed.
    #[error("cannot list extensions: {0}")]
    Startup(String),
}

/// The refresher the configuration asks for.
pub fn refresher(root: &Path, config: &Config) -> Box<dyn Refresher> {
    let systemd_runs_system = root == Path::new("/") && Path::new("/run/systemd/system").is_dir();
    match config.refresh {
        RefreshMode::SystemdUnit => {
            Box::new(systemd_unit::SystemdUnitRefresher::new(tokio::runtime::Handle::current()))
        }
        RefreshMode::Auto if systemd_runs_system => {
            Box::new(systemd_unit::SystemdUnitRefresher::new(tokio::runtime::Handle::current()))
        }
        RefreshMode::Auto | RefreshMode::Exec => Engine::exec_refresher(root, config),
    }
}

/// Runs the service until it is idle for `idle_exit_sec`, or is told to stop.
pub async fn serve(root: &Path, config: Config) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    let idle_exit = config.idle_exit_sec;
    let refresher = refresher(root, &config);
    let reader = self::refresher(root, &config);
    let root_owned = root.to_path_buf();
    let engine = tokio::task::spawn_blocking(move || open_engine(&root_owned, config, refresher, reader))
        .await
        .map_err(|e| ServeError::Startup(e.to_string()))??;
    let engine = Arc::new(engine);
    let shared = state::Shared::new(engine.clone(), Box::new(authz::Polkit));
    // Export the extensions before taking the name, so the first caller sees them all.
    let connection = attach(zbus::connection::Builder::system(), &shared).await?;
    let extensions = shared.model().extensions().count();
    match connection.request_name_with_flags(BUS_NAME, RequestNameFlags::DO_NOT_QUEUE).await? {
        RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => {}
        RequestNameReply::Exists | RequestNameReply::InQueue => return Err(ServeError::NameTaken),
    }
    let layout = engine.layout();
    tracing::info!(
        extensions,
        startup_ms = started.elapsed().as_millis(),
        store = %layout.store().display(),
        boot_state = engine::boot::describe(engine.boot_state()),
        policy = %engine.config().image_policy,
        "serving {BUS_NAME}"
    );

    use watch::Watched;
    let mut watched = vec![
        (Watched::Store, layout.store()),
        (Watched::Records, layout.meta_dir()),
        (Watched::Runtime, layout.runtime()),
    ];
    watched.extend(BootState::ALL.iter().map(|s| (Watched::State, layout.state_dir(*s))));
    watched.extend(engine::discovery::read_before_ours(layout).into_iter().map(|dir| (Watched::SearchedFirst, dir)));
    if let Err(e) = std::fs::create_dir_all(layout.runtime()) {
        tracing::warn!(error = %e, "cannot create the runtime activation directory");
    }
    tokio::spawn(watch::run(shared.clone(), connection.clone(), watched));
    tokio::spawn(crate::memory::release_after_bursts());

    let why = wait_until_done(&shared, idle_exit).await;
    finish_jobs(&shared, why).await;
    // Then release the name, so bus activation starts a fresh instance for the next
    // caller instead of queueing it on one that is leaving. Not before: the jobs' last
    // signals must still come from the name clients listen to.
    let _ = connection.release_name(BUS_NAME).await;
    tracing::info!("stopped");
    Ok(())
}

/// Builds the service's connection from `builder` (the system bus, or one end of a
/// peer-to-peer socket in tests), with the Manager and the ObjectManager at the root and
/// an object for every extension the store holds.
pub async fn attach(
    builder: zbus::connection::Builder<'_>,
    shared: &Arc<state::Shared>,
) -> Result<Connection, ServeError> {
    shared.set_exporter(Box::new(extension::ExtensionExporter::new(shared)));
    let connection = builder
        .serve_at(MANAGER_PATH, ReadOnly(manager::Manager::new(shared.clone())))
        .serve_at(MANAGER_PATH, object_manager::ObjectManager::new(shared.clone()))
        .build()
        .await?;
    resync::load(shared, &connection).await.map_err(|e| ServeError::Startup(e.to_string()))?;
    Ok(connection)
}

/// Opens the engine; on a store that a read-only file system holds, opens it for
/// reading, so that the service still lists and describes, and every change fails
/// naming the path and the read-only file system.
fn open_engine(
    root: &Path,
    config: Config,
    refresher: Box<dyn Refresher>,
    reader: Box<dyn Refresher>,
) -> Result<Engine, engine::Error> {
    match Engine::open(root, config.clone(), refresher) {
        Err(e) if on_read_only_fs(&e) => {
            tracing::warn!(error = %engine::full_message(&e), "the store is on a read-only file system; serving reads only");
            Engine::open_read_only(root, config, reader)
        }
        opened => opened,
    }
}

fn on_read_only_fs(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ReadOnlyFilesystem) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Why the service is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaving {
    /// Nothing happened for `idle_exit_sec`.
    Idle,
    /// SIGTERM or Ctrl-C.
    Told,
}

/// How long jobs canceled by a stop may take to clean up; systemd's default stop
/// timeout is 90 s.
const JOB_STOP_GRACE: Duration = Duration::from_secs(30);

/// Lets the jobs still there end properly: each with its cleanup, its last
/// PropertiesChanged and its JobRemoved, instead of being cut off mid-step. Told to
/// stop, the service cancels them first and waits at most [`JOB_STOP_GRACE`]; leaving
/// because idle, it lets a job that arrived meanwhile finish.
async fn finish_jobs(shared: &Arc<state::Shared>, why: Leaving) {
    if shared.jobs.is_empty() {
        return;
    }
    if why == Leaving::Told {
        let count = shared.jobs.cancel_all();
        tracing::info!(jobs = count, "canceling every job, queued ones included, before stopping");
    }
    let started = tokio::time::Instant::now();
    while !shared.jobs.is_empty() {
        if why == Leaving::Told && started.elapsed() > JOB_STOP_GRACE {
            tracing::warn!(jobs = shared.jobs.len(), "jobs did not end in time; stopping anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_until_done(shared: &Arc<state::Shared>, idle_exit_sec: u64) -> Leaving {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            None
        }
    };
    let idle = async {
        if idle_exit_sec == 0 {
            return std::future::pending::<()>().await;
        }
        let limit = Duration::from_secs(idle_exit_sec);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if shared.jobs.is_empty() && shared.activity.idle_for(limit) {
                tracing::info!(seconds = idle_exit_sec, "idle; exiting");
                return;
            }
        }
    };
    tokio::select! {
        () = idle => Leaving::Idle,
        _ = async { match terminate.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
            tracing::info!("SIGTERM received; exiting");
            Leaving::Told
        }
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; exiting");
            Leaving::Told
        }
    }
}

/// The modules of this adapter depend on each other in one direction only: the objects
/// (manager, extension, job) on the operations, the operations on the model and the
/// announcer, never back. This test reads the sources and fails on any import circle.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};

    const SOURCES: &[(&str, &str)] = &[
        ("announce", include_str!("announce.rs")),
        ("args", include_str!("args.rs")),
        ("describe", include_str!("describe.rs")),
        ("authz", include_str!("authz.rs")),
        ("error", include_str!("error.rs")),
        ("extension", include_str!("extension.rs")),
        ("job", include_str!("job.rs")),
        ("job_cells", include_str!("job_cells.rs")),
        ("manager", include_str!("manager.rs")),
        ("model", include_str!("model.rs")),
        ("object_manager", include_str!("object_manager.rs")),
        ("ops", include_str!("ops.rs")),
        ("queue", include_str!("queue.rs")),
        ("read_only", include_str!("read_only.rs")),
        ("resync", include_str!("resync.rs")),
        ("signals", include_str!("signals.rs")),
        ("state", include_str!("state.rs")),
        ("systemd_unit", include_str!("systemd_unit.rs")),
        ("updates", include_str!("updates.rs")),
        ("watch", include_str!("watch.rs")),
    ];

    /// The sibling modules `source` names, as `super::x`, `crate::bus::x` or in a
    /// `use super::{x, y}` list.
    fn imports(source: &str) -> BTreeSet<&'static str> {
        let code: String = source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let mut found = BTreeSet::new();
        for (name, _) in SOURCES {
            let direct = [format!("super::{name}::"), format!("super::{name};"), format!("crate::bus::{name}")];
            let listed = code.match_indices("super::{").any(|(at, _)| {
                let list = &code[at + 8..code[at..].find('}').map_or(code.len(), |end| at + end)];
                list.split(',').any(|item| item.trim().split("::").next() == Some(name))
            });
            if listed || direct.iter().any(|d| code.contains(d.as_str())) {
                found.insert(*name);
            }
        }
        found
    }

    #[test]
    fn every_module_of_the_bus_adapter_is_checked() {
        let declared: BTreeSet<&str> = include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod ").and_then(|rest| rest.strip_suffix(';')))
            .collect();
        let checked: BTreeSet<&str> = SOURCES.iter().map(|(name, _)| *name).collect();
        assert_eq!(declared, checked, "SOURCES must list every module of bus/");
    }

    #[test]
    fn no_module_of_the_bus_adapter_imports_one_that_imports_it() {
        let graph: BTreeMap<&str, BTreeSet<&str>> =
            SOURCES.iter().map(|(name, source)| (*name, imports(source))).collect();
        assert!(graph["ops"].contains("resync") && graph["manager"].contains("ops"), "the parser sees imports");
        // Depth-first search; a module met again on the current path closes a circle.
        fn visit<'a>(
            node: &'a str,
            graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) {
            if let Some(at) = path.iter().position(|n| *n == node) {
                panic!("import circle: {} -> {node}", path[at..].join(" -> "));
            }
            if done.contains(node) {
                return;
            }
            path.push(node);
            for next in graph.get(node).into_iter().flatten() {
                if *next != node {
                    visit(next, graph, path, done);
                }
            }
            path.pop();
            done.insert(node);
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            visit(node, &graph, &mut Vec::new(), &mut done);
        }
    }
}
