//! systemd 254 beside the host's systemd 252, for tests that compare what the two do.
//!
//! `scripts/systemd254.sh` (run by `make test`) unpacks Debian's bookworm-backports
//! packages into `<target>/systemd254/root` without installing anything; the binaries run
//! from there with `LD_LIBRARY_PATH` pointing at their private library directory. The
//! host's systemd is never replaced.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::namespace::Namespace;

/// The unpacked systemd 254.
pub struct Systemd254 {
    root: PathBuf,
}

/// `<target>/systemd254`, where the script puts it: beside `debug/` or `release/`.
fn default_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("systemd254"))
        .expect("test executable lives in target/<profile>/deps")
}

impl Systemd254 {
    /// The unpacked tree, if the script has prepared it and it reports version 254.
    pub fn find() -> Option<Self> {
        let found = Self { root: default_dir().join("root") };
        found.sysext().exists().then_some(found).filter(|s| s.version() == Some(254))
    }

    /// The unpacked tree for `test`. Missing, it fails the test with how to prepare it,
    /// unless [`crate::SKIP_VAR`] is set: then it prints `SKIPPED:` and returns `None`.
    pub fn require(test: &str) -> Option<Self> {
        if let Some(found) = Self::find() {
            return Some(found);
        }
        let reason = format!(
            "{test} needs systemd 254 unpacked in {} (scripts/systemd254.sh, which `make test` runs, downloads it)",
            default_dir().display()
        );
        if std::env::var_os(crate::SKIP_VAR).is_some_and(|v| v == "1") {
            eprintln!("SKIPPED: {reason} ({}=1)", crate::SKIP_VAR);
            return None;
        }
        panic!("{reason}; or set {}=1 to skip on purpose", crate::SKIP_VAR);
    }

    /// Its `systemd-sysext`.
    pub fn sysext(&self) -> PathBuf {
        self.root.join("usr/bin/systemd-sysext")
    }

    /// Its `systemd-dissect`.
    pub fn dissect(&self) -> PathBuf {
        self.root.join("usr/bin/systemd-dissect")
    }

    fn library_path(&self) -> PathBuf {
        self.root.join("usr/lib/x86_64-linux-gnu/systemd")
    }

    /// A command running its `tool` (a path from [`Self::sysext`] or [`Self::dissect`]).
    pub fn command(&self, tool: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(tool);
        command.env("LD_LIBRARY_PATH", self.library_path());
        command
    }

    /// A command running its `tool` inside `ns`.
    pub fn command_in(&self, ns: &Namespace, tool: impl AsRef<OsStr>) -> Command {
        let mut command = ns.command(tool);
        command.env("LD_LIBRARY_PATH", self.library_path());
        command
    }

    /// The version its `systemd-sysext --version` reports.
    pub fn version(&self) -> Option<u32> {
        let out = self.command(self.sysext()).arg("--version").output().ok()?;
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1)?.parse().ok()
    }

    /// Where it is unpacked.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
