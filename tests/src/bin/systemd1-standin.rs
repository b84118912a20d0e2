//! A stand-in for systemd's manager object, for testing the `systemd-unit` refresh
//! backend where systemd cannot run as PID 1.
//!
//! It owns `org.freedesktop.systemd1` on the test bus and implements just what the
//! backend uses: `Subscribe`, `RestartUnit` and the `JobRemoved` signal. A restart runs
//! the command given on our command line (the test passes `nsenter ... systemd-sysext
//! refresh`, which is what systemd-sysext.service does), then announces the job's end.
//! Each call is printed as a JSON line so the test can check what was asked.
#![allow(clippy::print_stdout, reason = "the stand-in reports calls on stdout")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedObjectPath, interface};

struct Manager {
    restart_command: Arc<Vec<String>>,
    next_job: AtomicU32,
}

#[interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn subscribe(&self) {
        println!("{}", serde_json::json!({ "call": "Subscribe" }));
    }

    async fn restart_unit(
        &self,
        name: &str,
        mode: &str,
        #[zbus(connection)] connection: &Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let id = self.next_job.fetch_add(1, Ordering::SeqCst);
        let job = OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}"))
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        println!("{}", serde_json::json!({ "call": "RestartUnit", "name": name, "mode": mode }));
        let (connection, command, unit, path) =
            (connection.clone(), self.restart_command.clone(), name.to_owned(), job.clone());
        tokio::spawn(async move {
            let ok = match command.split_first() {
                Some((program, args)) => {
                    tokio::process::Command::new(program).args(args).status().await.is_ok_and(|s| s.success())
                }
                None => true,
            };
            let result = if ok { "done" } else { "failed" };
            if let Ok(emitter) = SignalEmitter::new(&connection, "/org/freedesktop/systemd1") {
                let _ = Manager::job_removed(&emitter, id, path.as_ref(), &unit, result).await;
            }
        });
        Ok(job)
    }

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: zbus::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> zbus::Result<()> {
    let restart_command: Vec<String> = std::env::args().skip(1).collect();
    let manager = Manager { restart_command: Arc::new(restart_command), next_job: AtomicU32::new(1) };
    let _connection = zbus::connection::Builder::system()
        .name("org.freedesktop.systemd1")
        .serve_at("/org/freedesktop/systemd1", manager)
        .build()
        .await?;
    println!("{}", serde_json::json!({ "ready": true }));
    std::future::pending::<()>().await;
    Ok(())
}
