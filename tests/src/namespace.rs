//! A private mount namespace with fresh `/run` and `/var/lib`, as TESTING.md describes:
//! systemd-sysext merges onto this namespace's own `/usr` exactly as in production, and
//! the host never sees it. `/run` and `/var/lib` are bind mounts of temp dirs, so tests
//! can inspect the store and `/run/extensions` from outside.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A namespace kept alive by a holder process; commands enter it with `nsenter`.
pub struct Namespace {
    holder: Child,
    run: tempfile::TempDir,
    varlib: tempfile::TempDir,
}

impl Namespace {
    /// Creates the namespace and waits until its mounts are in place.
    pub fn new() -> Self {
        let run = tempfile::Builder::new().prefix("kx-run-").tempdir().expect("temp /run");
        let varlib = tempfile::Builder::new().prefix("kx-varlib-").tempdir().expect("temp /var/lib");
        let script = format!(
            "mount --make-rshared / && \
             mount --bind '{run}' /run && mount --make-rshared /run && \
             mount --bind '{varlib}' /var/lib && \
             mkdir -p /run/extensions /var/lib/kairos/extensions && \
             echo ready && exec sleep infinity",
            run = run.path().display(),
            varlib = varlib.path().display()
        );
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare runs (Debian package util-linux)");
        let stdout = holder.stdout.take().expect("holder stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("holder reports readiness");
        assert_eq!(line.trim(), "ready", "the namespace could not be set up");
        Self { holder, run, varlib }
    }

    /// The pid whose mount namespace this is.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command.arg("-t").arg(self.pid().to_string()).args(["-m", "--"]).arg(program);
        command
    }

    /// Runs `program args...` inside the namespace and collects its output.
    pub fn run(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        self.command(program).args(args).output().expect("nsenter runs (Debian package util-linux)")
    }

    /// Where a path of the namespace's `/run` or `/var/lib` is seen from outside.
    pub fn host_path(&self, system_path: &str) -> PathBuf {
        if let Some(rest) = system_path.strip_prefix("/run/") {
            return self.run.path().join(rest);
        }
        if let Some(rest) = system_path.strip_prefix("/var/lib/") {
            return self.varlib.path().join(rest);
        }
        panic!("{system_path} is not under /run or /var/lib of the namespace");
    }

    /// The store directory, seen from outside.
    pub fn store(&self) -> PathBuf {
        self.host_path("/var/lib/kairos/extensions/")
    }

    /// Marks the boot as a Kairos boot of `state` (`active`, `passive`, `recovery`).
    pub fn set_boot_state(&self, state: &str) {
        let dir = self.host_path("/run/cos/");
        std::fs::create_dir_all(&dir).expect("create /run/cos");
        std::fs::write(dir.join(format!("{state}_mode")), "").expect("boot marker");
    }

    /// Whether `path` exists inside the namespace.
    pub fn exists(&self, path: &str) -> bool {
        self.run("test", &["-e", path]).status.success()
    }

    /// Every path under the namespace's `system_dir` (under /run or /var/lib) with what
    /// it holds; see [`snapshot_of`].
    pub fn snapshot(&self, system_dir: &str) -> BTreeMap<PathBuf, String> {
        snapshot_of(&self.host_path(system_dir))
    }

    /// The names systemd-sysext reports as merged in this namespace.
    pub fn merged(&self) -> Vec<String> {
        let out = self.run("cat", &["/usr/.systemd-sysext/extensions"]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Unmerge first so no overlay keeps the temp dirs busy, then end the namespace.
        let _ = self.command("systemd-sysext").arg("unmerge").output();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Every path under `root`, relative to it, with what it holds: a file's SHA-256, a
/// link's target, or "dir". Two snapshots are equal exactly when nothing there changed.
pub fn snapshot_of(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, root: &Path, into: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            let what = if kind.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default())
            } else if kind.is_dir() {
                walk(&path, root, into);
                "dir".to_owned()
            } else {
                std::fs::read(&path).map(|bytes| crate::registry::digest(&bytes)).unwrap_or_default()
            };
            into.insert(path.strip_prefix(root).unwrap_or(&path).to_path_buf(), what);
        }
    }
    let mut snapshot = BTreeMap::new();
    walk(root, root, &mut snapshot);
    snapshot
}

/// Whether a path exists on the host (outside every namespace).
pub fn on_host(path: &str) -> bool {
    Path::new(path).exists()
}
