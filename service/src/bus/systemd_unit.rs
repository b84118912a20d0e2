//! The `systemd-unit` refresh backend: restart `systemd-sysext.service` and wait for
//! the job, so the unit's drop-ins (the image policy among them) apply, as on Kairos.

use std::time::Duration;

use futures_util::StreamExt;
use zbus::{Connection, OwnedObjectPath, proxy};

use crate::engine::sysext::{RefreshRun, Refresher, SysextError};

/// The unit that merges extensions at boot.
const UNIT: &str = "systemd-sysext.service";
const DEADLINE: Duration = Duration::from_secs(300);

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Systemd1 {
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    fn subscribe(&self) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_removed(&self, id: u32, job: OwnedObjectPath, unit: String, result: String) -> zbus::Result<()>;
}

/// Restarts `systemd-sysext.service` through systemd on the system bus.
pub struct SystemdUnitRefresher {
    runtime: tokio::runtime::Handle,
}

impl SystemdUnitRefresher {
    /// A refresher that runs its bus calls on `runtime`.
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        Self { runtime }
    }

    async fn restart() -> Result<RefreshRun, SysextError> {
        let unavailable =
            |e: zbus::Error| SysextError::Unavailable(format!("cannot ask systemd to restart {UNIT}: {e}"));
        let connection = Connection::system().await.map_err(unavailable)?;
        let systemd = Systemd1Proxy::new(&connection).await.map_err(unavailable)?;
        // Subscribing first means the JobRemoved of our job cannot slip past.
        let mut removed = systemd.receive_job_removed().await.map_err(unavailable)?;
        systemd.subscribe().await.map_err(unavailable)?;
        let job = systemd.restart_unit(UNIT, "replace").await.map_err(unavailable)?;
        tracing::info!(job = %job.as_str(), "restarting {UNIT}");
        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job == job {
                    return Some(args.result);
                }
            }
            None
        };
        match tokio::time::timeout(DEADLINE, wait).await {
            Ok(Some(result)) if result == "done" => Ok(RefreshRun { success: true, log: String::new() }),
            Ok(Some(result)) => {
                Ok(RefreshRun { success: false, log: format!("{UNIT} restart finished with result '{result}'") })
            }
            Ok(None) => Err(SysextError::Unavailable("lost the connection to systemd while waiting".into())),
            Err(_) => Err(SysextError::Unavailable(format!("{UNIT} did not restart within {} s", DEADLINE.as_secs()))),
        }
    }
}

impl Refresher for SystemdUnitRefresher {
    fn refresh(&self) -> Result<RefreshRun, SysextError> {
        // Called on a blocking thread (the engine is synchronous), where blocking on
        // the runtime is allowed.
        self.runtime.block_on(Self::restart())
    }
}
