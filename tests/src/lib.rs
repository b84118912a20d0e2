//! Harness for the integration suite: real components, started per test.
//!
//! - [`namespace::Namespace`]: a private mount namespace with fresh `/run` and
//!   `/var/lib` (bind-mounted from temp dirs, so tests can look in from outside), where
//!   systemd-sysext merges for real without touching the host.
//! - [`images::ImageBuilder`]: squashfs system extensions made with `mksquashfs`.
//! - [`system::SystemBus`], [`system::Polkit`], [`system::Service`]: a private system
//!   bus carrying our bus policy, real polkitd with our actions and test rules, and
//!   kairos-extensionsd running inside a [`namespace::Namespace`].
//!
//! These need root, loop devices and the Debian packages `make test` installs. A
//! missing prerequisite fails the test and names the package. To skip such tests on
//! purpose (say, in an unprivileged container), set `KAIROS_TESTS_SKIP_PRIVILEGED=1`:
//! each affected test then prints `SKIPPED: <reason>` and passes.

pub mod bins;
pub mod contract;
pub mod http;
pub mod images;
pub mod monitor;
pub mod namespace;
pub mod registry;
pub mod stress;
pub mod system;
pub mod systemd254;
pub mod token_server;

use std::path::Path;
use std::process::Output;

/// The environment variable that turns missing privileges into explicit skips.
pub const SKIP_VAR: &str = "KAIROS_TESTS_SKIP_PRIVILEGED";

/// Tools the privileged tests need, with the Debian package that provides each.
const TOOLS: [(&str, &str); 9] = [
    ("/usr/bin/mksquashfs", "squashfs-tools"),
    ("/usr/bin/unshare", "util-linux"),
    ("/usr/bin/nsenter", "util-linux"),
    ("/usr/bin/systemd-sysext", "systemd"),
    ("/usr/bin/systemd-dissect", "systemd-container"),
    ("/usr/bin/dbus-daemon", "dbus"),
    ("/usr/lib/polkit-1/polkitd", "polkitd"),
    ("/usr/bin/busctl", "systemd"),
    ("/usr/bin/setpriv", "util-linux"),
];

/// Checks that this test can use real components. Returns `false` (after printing
/// `SKIPPED:`) only when [`SKIP_VAR`] is set; otherwise a missing prerequisite panics
/// with what to install.
pub fn privileged(test: &str) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root privileges".to_owned());
    }
    for (tool, package) in TOOLS {
        if !Path::new(tool).exists() {
            missing.push(format!("{tool} (Debian package {package})"));
        }
    }
    require(test, &missing)
}

/// `true` when nothing is `missing`. Otherwise `false` after printing `SKIPPED:` when
/// [`SKIP_VAR`] is set, and a panic naming what is missing when it is not.
pub fn require(test: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return true;
    }
    let reason = format!("{test} needs {}", missing.join(", "));
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: {reason} ({SKIP_VAR}=1)");
        return false;
    }
    panic!("{reason}; run `make test` (it installs and builds them) or set {SKIP_VAR}=1 to skip on purpose");
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Standard output of a finished command, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error of a finished command, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
