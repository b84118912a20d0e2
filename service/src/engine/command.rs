//! Running the system tools the engine relies on (`systemd-dissect`, `systemd-sysext`).
//!
//! The service runs as root and its callers are not trusted, so a helper gets a fixed
//! argv, an environment with nothing but a fixed `PATH`, no stdin, none of our file
//! descriptors, and a deadline after which it is killed.

use std::io::{self, Read};
use std::os::fd::BorrowedFd;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::io::FdFlags;

/// What a finished helper left behind.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output, lossily decoded.
    pub stdout: String,
    /// Its standard error, lossily decoded.
    pub stderr: String,
}

/// Why a helper could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The program ran past its deadline and was killed.
    #[error("{program} did not finish within {seconds} s and was stopped")]
    Timeout {
        /// The program.
        program: String,
        /// The deadline.
        seconds: u64,
    },
    /// Waiting for or reading from the program failed.
    #[error("lost track of {program}")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Most output kept from a helper; the rest is drained and dropped.
const MAX_OUTPUT: u64 = 1 << 20;

/// Runs `program` with `args` under the rules above and collects its output.
pub fn run(program: &str, args: &[&std::ffi::OsStr], deadline: Duration) -> Result<Output, CommandError> {
    run_with_env(program, args, &[], deadline)
}

/// As [`run`], with the fixed variables `env` added to the helper's environment.
pub fn run_with_env(
    program: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    deadline: Duration,
) -> Result<Output, CommandError> {
    mark_inherited_fds_cloexec();
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn { program: program.to_owned(), source })?;

    let stdout = child.stdout.take().map(|s| thread::spawn(move || drain(s)));
    let stderr = child.stderr.take().map(|s| thread::spawn(move || drain(s)));
    let wait_error = |source| CommandError::Wait { program: program.to_owned(), source };

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(wait_error)? {
            break status;
        }
        if started.elapsed() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CommandError::Timeout { program: program.to_owned(), seconds: deadline.as_secs() });
        }
        thread::sleep(Duration::from_millis(10));
    };
    let join = |handle: Option<thread::JoinHandle<String>>| handle.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Output { status, stdout: join(stdout), stderr: join(stderr) })
}

fn drain(stream: impl Read) -> String {
    let mut kept = Vec::new();
    let mut limited = stream.take(MAX_OUTPUT);
    let _ = limited.read_to_end(&mut kept);
    let _ = io::copy(&mut limited.into_inner(), &mut io::sink());
    String::from_utf8_lossy(&kept).into_owned()
}

/// Marks every descriptor above stderr close-on-exec.
///
/// Rust opens its own descriptors with `O_CLOEXEC`, but a service started by systemd or
/// by a test harness can inherit descriptors without it (a listening socket, a journal
/// stream). Marking them here keeps helpers from inheriting them, without running code
/// between fork and exec.
#[allow(unsafe_code)]
fn mark_inherited_fds_cloexec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
    let fds: Vec<i32> =
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|fd| *fd > 2).collect();
    for raw in fds {
        // SAFETY: `raw` was listed in /proc/self/fd, so it names a descriptor of this
        // process, and the borrow lives only for the two fcntl calls below. Should another
        // thread close it in between, fcntl fails with EBADF; should the number be reused,
        // the new descriptor merely gains CLOEXEC, which every descriptor Rust opens has
        // anyway. Neither reads or writes memory, so no outcome is unsound.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        if let Ok(flags) = rustix::io::fcntl_getfd(fd) {
            let _ = rustix::io::fcntl_setfd(fd, flags | FdFlags::CLOEXEC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn collects_output_and_status() -> Result<(), CommandError> {
        let out =
            run("/bin/sh", &[OsStr::new("-c"), OsStr::new("echo out; echo err >&2; exit 3")], Duration::from_secs(10))?;
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        Ok(())
    }

    #[test]
    fn clears_the_environment() -> Result<(), CommandError> {
        let out = run("/usr/bin/env", &[], Duration::from_secs(10))?;
        let mut keys: Vec<&str> = out.stdout.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["PATH", "SYSTEMD_COLORS", "SYSTEMD_PAGER"]);
        Ok(())
    }

    #[test]
    fn kills_helpers_past_their_deadline() {
        let started = Instant::now();
        let result = run("/bin/sleep", &[OsStr::new("30")], Duration::from_millis(200));
        assert!(matches!(result, Err(CommandError::Timeout { .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
