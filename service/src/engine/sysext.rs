//! Refreshing the merge, and finding out what really got merged.
//!
//! systemd-sysext 252 exits 0 even when it skipped an image (an incompatible release,
//! a verity image without device-mapper), so the exit code is never the verdict: after
//! every refresh we read back what is merged and compare it with what was asked for.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use super::command::{self, CommandError};

/// The systemd-sysext binary; a fixed path, never looked up in `PATH`.
pub const SYSEXT: &str = "/usr/bin/systemd-sysext";
/// A merge mounts a handful of images; minutes means something hangs.
const REFRESH_DEADLINE: Duration = Duration::from_secs(300);
/// The first systemd version whose systemd-sysext takes `--image-policy`.
use super::generator::IMAGE_POLICY_SINCE;

/// A refresh could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SysextError {
    /// The backend could not run.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// systemd-sysext failed and nothing more specific is known.
    #[error("systemd-sysext refresh failed: {0}")]
    Failed(String),
    /// The merge state could not be read back.
    #[error("cannot read what is merged ({path})")]
    ReadBack {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The configured backend cannot work here.
    #[error("{0}")]
    Unavailable(String),
}

/// What a backend run reported.
#[derive(Debug, Clone, Default)]
pub struct RefreshRun {
    /// Whether the backend reported success.
    pub success: bool,
    /// What it printed, for finding the reason an image was skipped.
    pub log: String,
}

/// A way to make systemd-sysext re-read the activated images.
pub trait Refresher: Send + Sync {
    /// Runs one refresh.
    fn refresh(&self) -> Result<RefreshRun, SysextError>;
}

/// Runs `systemd-sysext refresh` directly.
#[derive(Debug, Clone)]
pub struct ExecRefresher {
    root: PathBuf,
    image_policy: Option<String>,
}

impl ExecRefresher {
    /// A refresher for the system at `root`, passing `image_policy` when the host's
    /// systemd-sysext understands it.
    pub fn new(root: &Path, image_policy: Option<&str>) -> Self {
        Self { root: root.to_path_buf(), image_policy: image_policy.map(str::to_owned) }
    }

    fn argv(&self) -> Vec<std::ffi::OsString> {
        let mut argv = vec!["refresh".into()];
        // systemd-sysext 252 ignores symlinked images under any --root, even --root=/,
        // so the flag is only passed for a root that really is another tree.
        if self.root != Path::new("/") {
            let mut flag = std::ffi::OsString::from("--root=");
            flag.push(&self.root);
            argv.push(flag);
        }
        if let Some(policy) = &self.image_policy {
            if host_systemd_version().is_some_and(|v| v >= IMAGE_POLICY_SINCE) {
                argv.push(format!("--image-policy={policy}").into());
            } else {
                tracing::debug!(
                    "systemd-sysext is older than v{IMAGE_POLICY_SINCE}; the image policy is enforced at install only"
                );
            }
        }
        argv
    }
}

impl Refresher for ExecRefresher {
    fn refresh(&self) -> Result<RefreshRun, SysextError> {
        let argv = self.argv();
        let args: Vec<&OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
        tracing::info!(args = ?argv, "running systemd-sysext");
        let out = command::run(SYSEXT, &args, REFRESH_DEADLINE)?;
        let log = format!("{}{}", out.stdout, out.stderr);
        if !out.status.success() {
            tracing::warn!(status = %out.status, output = %log.trim(), "systemd-sysext refresh failed");
        }
        Ok(RefreshRun { success: out.status.success(), log })
    }
}

/// The systemd version on this host, from `systemd-sysext --version`.
pub fn host_systemd_version() -> Option<u32> {
    static VERSION: OnceLock<Option<u32>> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let out = command::run(SYSEXT, &[OsStr::new("--version")], Duration::from_secs(10)).ok()?;
        out.stdout.split_whitespace().nth(1)?.parse().ok()
    })
}

/// The names of the extensions merged now on the system at `root`.
///
/// systemd-sysext records them in `.systemd-sysext/extensions` of each hierarchy it
/// merged (`/usr`, `/opt`), one name per line.
pub fn merged(root: &Path) -> Result<BTreeSet<String>, SysextError> {
    let mut names = BTreeSet::new();
    for hierarchy in ["usr", "opt"] {
        let path = root.join(hierarchy).join(".systemd-sysext/extensions");
        match fs::read_to_string(&path) {
            Ok(text) => names.extend(text.split_whitespace().map(str::to_owned)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(SysextError::ReadBack { path, source }),
        }
    }
    Ok(names)
}

/// The most telling line systemd-sysext printed about `name`.
pub fn reason_for(name: &str, run: &RefreshRun) -> String {
    let quoted = [format!("'{name}'"), format!("image {name}:"), format!("{name}.raw")];
    let line = run.log.lines().find(|line| quoted.iter().any(|q| line.contains(q.as_str())));
    match line {
        Some(line) => format!("systemd-sysext: {}", line.trim()),
        None if !run.success => match run.log.lines().rfind(|l| !l.trim().is_empty()) {
            Some(last) => format!("systemd-sysext failed: {}", last.trim()),
            None => "systemd-sysext failed without saying why".to_owned(),
        },
        None => "systemd-sysext skipped it without saying why (an image it cannot use, such as a verity image on a kernel without device-mapper)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_omits_root_for_the_live_system() {
        assert_eq!(ExecRefresher::new(Path::new("/"), None).argv(), vec![std::ffi::OsString::from("refresh")]);
        let other = ExecRefresher::new(Path::new("/img"), None).argv();
        assert_eq!(other, vec![std::ffi::OsString::from("refresh"), "--root=/img".into()]);
    }

    #[test]
    fn reads_merged_names_from_both_hierarchies() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        fs::create_dir_all(root.path().join("usr/.systemd-sysext"))?;
        fs::create_dir_all(root.path().join("opt/.systemd-sysext"))?;
        fs::write(root.path().join("usr/.systemd-sysext/extensions"), "k3s\nhello\n")?;
        fs::write(root.path().join("opt/.systemd-sysext/extensions"), "tools\n")?;
        let names = merged(root.path()).map_err(io::Error::other)?;
        assert_eq!(names.into_iter().collect::<Vec<_>>(), ["hello", "k3s", "tools"]);
        assert!(merged(Path::new("/nonexistent")).map_err(io::Error::other)?.is_empty());
        Ok(())
    }

    #[test]
    fn reasons_quote_systemd_sysext() {
        let failed = RefreshRun {
            success: false,
            log: "Using extensions 'a'.\nFailed to read metadata for image bad: No medium found\n".into(),
        };
        assert_eq!(
            reason_for("bad", &failed),
            "systemd-sysext: Failed to read metadata for image bad: No medium found"
        );
        let silent = RefreshRun { success: true, log: String::new() };
        assert!(reason_for("x", &silent).contains("skipped it"));
    }
}
