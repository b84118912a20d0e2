//! The system around the service: a private system bus with our bus policy, real
//! polkitd with our actions, and kairos-extensionsd in a private mount namespace.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bins;
use crate::namespace::Namespace;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// Waits until `name` has an owner on the bus at `address`.
pub fn wait_for_name(address: &str, name: &str, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        let owned = Command::new("busctl")
            .args(["--system", "status", name])
            .env("DBUS_SYSTEM_BUS_ADDRESS", address)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if owned {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

const SYSTEMD1_STANDIN_POLICY: &str = r#"<busconfig>
  <policy user="root"><allow own="org.freedesktop.systemd1"/></policy>
  <policy context="default"><allow send_destination="org.freedesktop.systemd1"/></policy>
</busconfig>
"#;

/// A private `dbus-daemon` of type system. Its default policy denies method calls, so
/// only what our policy file allows gets through: every test is a test of that file too.
pub struct SystemBus {
    dir: tempfile::TempDir,
    daemon: Child,
    address: String,
}

impl SystemBus {
    /// Starts the bus with our policy and polkit's.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("kx-bus-").tempdir().expect("bus dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("bus dir mode");
        let policy_dir = dir.path().join("system.d");
        fs::create_dir(&policy_dir).expect("system.d");
        fs::copy(repo_file("systemd/org.kairos.Extensions1.conf"), policy_dir.join("org.kairos.Extensions1.conf"))
            .expect("our bus policy");
        fs::copy("/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf", policy_dir.join("polkit.conf"))
            .expect("polkit's bus policy (Debian package polkitd)");
        // Lets the systemd1 stand-in (see bus-probe's sibling systemd1-standin) take its name.
        fs::write(policy_dir.join("systemd1-standin.conf"), SYSTEMD1_STANDIN_POLICY).expect("stand-in policy");
        let socket = dir.path().join("bus.sock");
        let config = include_str!("../data/private-system-bus.conf.in")
            .replace("@SOCKET@", &socket.display().to_string())
            .replace("@POLICY_DIR@", &policy_dir.display().to_string());
        let config_path = dir.path().join("bus.conf");
        fs::write(&config_path, config).expect("bus config");
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon runs (Debian package dbus)");
        let started = Instant::now();
        while !socket.exists() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(socket.exists(), "dbus-daemon did not create its socket");
        Self { address: format!("unix:path={}", socket.display()), dir, daemon }
    }

    /// The address for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A command with `DBUS_SYSTEM_BUS_ADDRESS` pointing at this bus.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("DBUS_SYSTEM_BUS_ADDRESS", &self.address);
        command
    }

    /// A zbus connection to this bus, as the test process (root).
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str()).build().await.expect("connect to the private bus")
    }

    /// The directory this bus keeps its files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Real polkitd on a [`SystemBus`], reading our actions and the test's rules from
/// copies, inside a private mount namespace so the host's polkit is untouched.
pub struct Polkit {
    dir: tempfile::TempDir,
    child: Child,
}

/// A rule that lets `nobody` do everything this service offers.
pub const ALLOW_NOBODY: &str = r#"polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.kairos.extensions1.") == 0 && subject.user == "nobody") {
        return polkit.Result.YES;
    }
});"#;

impl Polkit {
    /// Starts polkitd with our actions and `rules` (JavaScript rule files' contents).
    pub fn start(bus: &SystemBus, rules: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("kx-polkit-").tempdir().expect("polkit dir");
        let actions = dir.path().join("actions");
        let rules_dir = dir.path().join("rules");
        fs::create_dir(&actions).expect("actions dir");
        fs::create_dir(&rules_dir).expect("rules dir");
        for entry in fs::read_dir("/usr/share/polkit-1/actions").expect("system polkit actions").flatten() {
            let _ = fs::copy(entry.path(), actions.join(entry.file_name()));
        }
        fs::copy(repo_file("polkit/org.kairos.Extensions1.policy"), actions.join("org.kairos.Extensions1.policy"))
            .expect("our polkit policy");
        for (i, rule) in rules.iter().enumerate() {
            fs::write(rules_dir.join(format!("{:02}-test.rules", 10 + i)), rule).expect("rule file");
        }
        // polkitd drops to its own user: everything it reads must be world-readable.
        for path in [dir.path(), actions.as_path(), rules_dir.as_path()] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("polkit dir mode");
        }
        for entry in fs::read_dir(&actions).into_iter().chain(fs::read_dir(&rules_dir)).flatten().flatten() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644));
        }
        let script = format!(
            "mount --bind '{}' /usr/share/polkit-1/actions && mount --bind '{}' /etc/polkit-1/rules.d && exec /usr/lib/polkit-1/polkitd --no-debug",
            actions.display(),
            rules_dir.display()
        );
        let child = bus
            .command("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("polkitd starts (Debian package polkitd)");
        assert!(
            wait_for_name(bus.address(), "org.freedesktop.PolicyKit1", Duration::from_secs(15)),
            "polkitd did not register on the bus"
        );
        Self { dir, child }
    }

    /// Where the rules live (writing a file here reloads polkitd within a second).
    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }
}

impl Drop for Polkit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The malloc tunables the unit gives the service, so that its memory behaves here as
/// in production.
fn unit_glibc_tunables() -> String {
    let unit = fs::read_to_string(repo_file("systemd/kairos-extensionsd.service.in")).expect("the unit template");
    unit.lines().find_map(|l| l.strip_prefix("Environment=GLIBC_TUNABLES=")).unwrap_or_default().to_owned()
}

/// kairos-extensionsd running inside a [`Namespace`] on a [`SystemBus`].
pub struct Service {
    child: Option<Child>,
    config: PathBuf,
    _config_dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service with `config` (TOML) and waits until it owns its name.
    pub fn start(bus: &SystemBus, ns: &Namespace, config: &str) -> Self {
        let config_dir = tempfile::Builder::new().prefix("kx-config-").tempdir().expect("config dir");
        let config_path = config_dir.path().join("extensions.toml");
        fs::write(&config_path, config).expect("service config");
        let mut service = Self { child: None, config: config_path, _config_dir: config_dir };
        service.spawn(bus, ns);
        service
    }

    /// Starts the binary again, as bus activation would after an idle exit.
    pub fn spawn(&mut self, bus: &SystemBus, ns: &Namespace) {
        let child = ns
            .command(bins::kairos_extensionsd())
            .arg("--config")
            .arg(&self.config)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .env("RUST_LOG", "warn")
            .env("GLIBC_TUNABLES", unit_glibc_tunables())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kairos-extensionsd starts");
        self.child = Some(child);
        assert!(
            wait_for_name(bus.address(), "org.kairos.Extensions1", Duration::from_secs(20)),
            "kairos-extensionsd did not take its name"
        );
    }

    /// Waits up to `within` for the service to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Sends SIGTERM, as `systemctl stop` does.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
            assert!(status.success(), "SIGTERM could not be sent");
        }
    }

    /// Kills the service the way a crash or the OOM killer would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The stand-in for systemd's manager; see `src/bin/systemd1-standin.rs`.
pub struct Systemd1Standin {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Systemd1Standin {
    /// Starts it; a unit restart runs `systemd-sysext refresh` inside `ns`.
    pub fn start(bus: &SystemBus, ns: &Namespace) -> Self {
        let log = tempfile::NamedTempFile::new().expect("stand-in log");
        let child = bus
            .command(bins::find("systemd1-standin"))
            .args(["nsenter", "-t", &ns.pid().to_string(), "-m", "--", "systemd-sysext", "refresh"])
            .stdout(log.reopen().expect("log handle"))
            .spawn()
            .expect("the systemd1 stand-in starts");
        assert!(
            wait_for_name(bus.address(), "org.freedesktop.systemd1", Duration::from_secs(10)),
            "the systemd1 stand-in did not take its name"
        );
        Self { child, log }
    }

    /// The calls it received, as JSON lines.
    pub fn calls(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.log.path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("call").is_some())
            .collect()
    }
}

impl Drop for Systemd1Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything a service test needs, in the order it must be torn down.
pub struct Rig {
    /// The service.
    pub service: Service,
    /// polkitd.
    pub polkit: Polkit,
    /// The namespace the service works in.
    pub ns: Namespace,
    /// The bus.
    pub bus: SystemBus,
    /// Scratch space for images.
    pub scratch: tempfile::TempDir,
}

impl Rig {
    /// Bus, polkitd with `rules`, namespace and service with `config`.
    pub fn start(rules: &[&str], config: &str) -> Self {
        let bus = SystemBus::start();
        let polkit = Polkit::start(&bus, rules);
        let ns = Namespace::new();
        let service = Service::start(&bus, &ns, config);
        let scratch = tempfile::Builder::new().prefix("kx-images-").tempdir().expect("scratch");
        fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).expect("scratch mode");
        Self { service, polkit, ns, bus, scratch }
    }

    /// Runs `kairos-ext args...` against the service as root, without a terminal.
    pub fn kairos_ext(&self, args: &[&str]) -> std::process::Output {
        self.bus.command(bins::kairos_ext()).args(args).stdin(Stdio::null()).output().expect("kairos-ext runs")
    }

    /// Runs `kairos-ext args...` as the user `nobody`.
    pub fn kairos_ext_as_nobody(&self, args: &[&str]) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        self.bus
            .command(bins::kairos_ext())
            .args(args)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .output()
            .expect("kairos-ext runs as nobody")
    }

    /// Makes one call through `bus-probe` as `uid`; returns its JSON verdict.
    pub fn probe(&self, uid: u32, args: &[&str]) -> serde_json::Value {
        use std::os::unix::process::CommandExt;
        let out = self
            .bus
            .command(bins::bus_probe())
            .args(args)
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .output()
            .expect("bus-probe runs");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "bus-probe said {:?} / {:?}: {e}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// A listing of the store directory (recursive, names only), to prove "nothing changed".
    pub fn store_snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.ns.store(), &self.ns.store(), &mut out);
        out.sort();
        out
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let relative = path.strip_prefix(base).map(|p| p.display().to_string()).unwrap_or_default();
        if relative == ".lock" {
            continue;
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let target = fs::read_link(&path).map(|t| format!(" -> {}", t.display())).unwrap_or_default();
        let size = if is_dir {
            String::new()
        } else {
            fs::metadata(&path).map(|m| format!(" ({})", m.len())).unwrap_or_default()
        };
        out.push(format!("{relative}{target}{size}"));
        if is_dir {
            walk(base, &path, out);
        }
    }
}
