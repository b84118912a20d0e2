//! Shared pieces of the stress tests (faults, bus fuzzing, load, concurrency, polkit
//! faults): how hard to push, where the service process is and how much memory it holds,
//! and a rig whose namespace can be prepared before the service starts.
//!
//! `make test` runs every stress test at scale 1; `make stress` sets
//! [`SCALE_VAR`] and runs them longer and harder.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::namespace::Namespace;
use crate::system::{Polkit, Rig, Service, SystemBus};

/// Multiplies the number of calls, rounds and clients of the stress tests.
pub const SCALE_VAR: &str = "KAIROS_STRESS_SCALE";

/// How many times the default amount of work to do (1 unless [`SCALE_VAR`] says more).
pub fn scale() -> usize {
    std::env::var(SCALE_VAR).ok().and_then(|v| v.parse().ok()).filter(|n| *n >= 1).unwrap_or(1)
}

/// The seed of a randomized test: `var` when set (to replay a run), else one drawn from
/// the clock. Printed either way, with how to replay it.
pub fn seed(var: &str) -> u64 {
    let seed = std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("seed {seed} (replay with {var}={seed})");
    seed
}

/// Bus, polkitd with `rules` and a namespace; `prepare` runs in the namespace before the
/// service starts (to mount a small or read-only store under it, say).
pub fn rig_prepared(rules: &[&str], config: &str, prepare: impl FnOnce(&Namespace)) -> Rig {
    let bus = SystemBus::start();
    let polkit = Polkit::start(&bus, rules);
    let ns = Namespace::new();
    prepare(&ns);
    let service = Service::start(&bus, &ns, config);
    let scratch = tempfile::Builder::new().prefix("kx-images-").tempdir().expect("scratch");
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).expect("scratch mode");
    Rig { service, polkit, ns, bus, scratch }
}

/// The pid of the process that owns `name` on `bus`, as the bus daemon knows it.
pub fn owner_pid(bus: &SystemBus, name: &str) -> Option<u32> {
    let out = bus
        .command("busctl")
        .args(["--system", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus"])
        .args(["GetConnectionUnixProcessID", "s", name])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().strip_prefix("u ")?.parse().ok()
}

/// The resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`, ...) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Whether `pid` is still alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// The `p`th percentile (0–100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let at = (samples.len() * p).div_ceil(100).clamp(1, samples.len()) - 1;
    samples[at]
}

/// The names of the `.raw` images directly in `dir` (the store, seen from outside),
/// without the suffix, sorted.
pub fn raw_images(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".raw")).map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_sample_at_or_above_the_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut samples, 99), Duration::from_millis(99));
        assert_eq!(percentile(&mut samples, 50), Duration::from_millis(50));
        assert_eq!(percentile(&mut samples, 100), Duration::from_millis(100));
        assert_eq!(percentile(&mut [Duration::from_millis(7)], 99), Duration::from_millis(7));
        assert_eq!(percentile(&mut [], 99), Duration::ZERO);
    }
}
