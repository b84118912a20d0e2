//! Watching the service's signals the way a client does: `kairos-ext monitor --json`
//! on its own connection, every signal one JSON line in a log the test reads.

use std::fs;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bins;
use crate::system::Rig;

/// Polls `check` until it holds or `within` passes.
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// `kairos-ext monitor --json`, collecting every signal until dropped.
pub struct Monitor {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Monitor {
    /// Starts watching the bus of `rig`.
    pub fn start(rig: &Rig) -> Self {
        let log = tempfile::NamedTempFile::new().expect("monitor log");
        let child = rig
            .bus
            .command(bins::kairos_ext())
            .args(["monitor", "--json"])
            .stdout(log.reopen().expect("log handle"))
            .stderr(Stdio::null())
            .spawn()
            .expect("kairos-ext monitor runs");
        // Give the match rule time to be registered before anything happens.
        std::thread::sleep(Duration::from_millis(700));
        Self { child, log }
    }

    /// Every signal seen so far, in order.
    pub fn signals(&self) -> Vec<Value> {
        fs::read_to_string(self.log.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Whether a signal `name` with exactly these leading `args` was seen.
    pub fn saw(&self, name: &str, args: &[Value]) -> bool {
        self.signals().iter().any(|s| {
            s["signal"] == name
                && s["args"].as_array().is_some_and(|a| a.len() >= args.len() && a[..args.len()] == *args)
        })
    }

    /// Waits up to `within` for what [`Monitor::saw`] looks for.
    pub fn wait_for_within(&self, within: Duration, name: &str, args: &[Value]) -> bool {
        eventually(within, || self.saw(name, args))
    }

    /// Waits up to ten seconds for what [`Monitor::saw`] looks for.
    pub fn wait_for(&self, name: &str, args: &[Value]) -> bool {
        self.wait_for_within(Duration::from_secs(10), name, args)
    }

    /// The result (`done`, `failed`, `canceled`) the first JobRemoved seen gave.
    pub fn job_result(&self) -> String {
        let ended = self.signals().into_iter().find(|s| s["signal"] == "JobRemoved").expect("a JobRemoved was seen");
        ended["args"][2].as_str().unwrap_or_default().to_owned()
    }

    /// `(id, result)` of every JobRemoved, in the order they came.
    pub fn removed(&self) -> Vec<(u64, String)> {
        self.signals()
            .iter()
            .filter(|s| s["signal"] == "JobRemoved")
            .map(|s| (s["args"][0].as_u64().unwrap_or(0), s["args"][2].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// Whether a PropertiesChanged of job `id` carried `property` = `value`.
    pub fn announced(&self, id: u64, property: &str, value: Value) -> bool {
        let path = format!("/org/kairos/Extensions1/job/{id}");
        self.signals().iter().any(|s| {
            s["signal"] == "PropertiesChanged" && s["path"] == path.as_str() && s["args"][1][property] == value
        })
    }

    /// Waits for a PropertiesChanged of `path` that sets `property` to what `accept`
    /// accepts; returns the changed properties of the first such signal.
    pub fn wait_for_change(&self, path: &str, property: &str, accept: impl Fn(&Value) -> bool) -> Option<Value> {
        let found = || {
            self.signals()
                .into_iter()
                .find(|s| s["signal"] == "PropertiesChanged" && s["path"] == path && accept(&s["args"][1][property]))
        };
        eventually(Duration::from_secs(10), || found().is_some());
        found().map(|s| s["args"][1].clone())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
