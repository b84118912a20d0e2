//! Bus abuse: `kx-fuzz` finds every method of every interface the service exports by
//! introspection (Manager, Extension, Job, and the standard ones) and calls them with
//! random and boundary arguments: huge strings, deep and long arrays, install options of
//! every wrong type, object paths that name nothing, wrong signatures, too many and too
//! few arguments, and file descriptors of directories, FIFOs, sockets, `/dev/zero`,
//! `O_PATH` handles and write-only files. Real dbus-daemon with our bus policy, real
//! polkitd, the real service.
//!
//! As root, as `nobody`, and as `nobody` with a polkit rule granting everything: the
//! service stays up (the same process answers afterwards), nothing `nobody` sends without
//! the rule changes the store or `/run/extensions`, with the rule or as root the store
//! stays consistent (every image listed, nothing left in staging), and the service's
//! resident memory comes back near where it started.
//!
//! The seed is printed; `KX_FUZZ_SEED=N` replays a run. `KAIROS_STRESS_SCALE=N` makes N
//! times as many calls (`make stress` does).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kairos_extensions_tests::http::{Behaviour, FileServer};
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::eventually;
use kairos_extensions_tests::stress::{self, owner_pid, raw_images, rss_kib};
use kairos_extensions_tests::system::{ALLOW_NOBODY, Rig};
use kairos_extensions_tests::{bins, privileged, stderr};
use serde_json::Value;

const NOBODY: u32 = 65534;
const CONFIG: &str = "idle_exit_sec = 0\n";
/// Calls per caller at scale 1.
const CALLS: usize = 2000;

/// What one fuzz run proved, for the figures.
struct Run {
    calls: u64,
    rss_before: u64,
    rss_after: u64,
}

fn fuzz(rig: &Rig, uid: u32, seed: u64, calls: usize, image: &std::path::Path) -> Value {
    use std::os::unix::process::CommandExt;
    let out = rig
        .bus
        .command(bins::find("kx-fuzz"))
        .args(["--seed", &seed.to_string(), "--calls", &calls.to_string(), "--name", "hello"])
        .arg("--image")
        .arg(image)
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .output()
        .expect("kx-fuzz runs");
    assert!(out.status.success(), "kx-fuzz (uid {uid}, seed {seed}) failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("kx-fuzz prints JSON")
}

/// Everything under the store except staging, and `/run/extensions`: what a caller
/// could change.
fn state(rig: &Rig) -> BTreeMap<PathBuf, String> {
    let mut state = rig.ns.snapshot("/var/lib/kairos/extensions/");
    state.retain(|path, _| !path.starts_with(".tmp") && !path.starts_with(".lock"));
    for (path, what) in rig.ns.snapshot("/run/extensions/") {
        state.insert(PathBuf::from("/run/extensions").join(path), what);
    }
    state
}

fn staging_is_empty(rig: &Rig) -> bool {
    std::fs::read_dir(rig.ns.store().join(".tmp")).map(|d| d.count() == 0).unwrap_or(true)
}

fn listed(rig: &Rig) -> Vec<String> {
    let out = rig.kairos_ext(&["list", "--json"]);
    assert!(out.status.success(), "list: {}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("list --json");
    let mut names: Vec<String> =
        rows.as_array().into_iter().flatten().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect();
    names.sort();
    names
}

fn run(test: &str, uid: u32, rules: &[&str]) -> Run {
    let rig = Rig::start(rules, CONFIG);
    let image = ImageBuilder::new("hello").command("hello-kx", "hi").build(rig.scratch.path(), "hello.raw");
    let other = ImageBuilder::new("other").build(rig.scratch.path(), "other.raw");
    let out = rig.kairos_ext(&["install", image.to_str().expect("utf-8"), "--enable", "common", "--now"]);
    assert!(out.status.success(), "install: {}", stderr(&out));
    let pid = owner_pid(&rig.bus, "org.kairos.Extensions1").expect("the service's pid");
    let calls = CALLS * stress::scale();
    let seed = stress::seed("KX_FUZZ_SEED");
    // A first round warms the service up (allocator arenas, caches); memory is measured
    // from there.
    fuzz(&rig, uid, seed ^ 0x5eed, 100, &other);
    if !listed(&rig).contains(&"hello".to_owned()) {
        let out = rig.kairos_ext(&["install", image.to_str().expect("utf-8"), "--enable", "common", "--now"]);
        assert!(out.status.success(), "install again after the warm-up: {}", stderr(&out));
    }
    // A job that stays until canceled, so that the fuzz finds a Job object too.
    let stalled = FileServer::start_with(vec![0; 1 << 20], Behaviour::Stall);
    let started = rig.probe(0, &["install", &stalled.url("stall.raw")]);
    let stalled_job = started["value"][0].as_u64().unwrap_or_else(|| panic!("the stalled install starts: {started}"));
    let rss_before = rss_kib(pid).expect("the service's RSS");
    let before = state(&rig);
    let summary = fuzz(&rig, uid, seed, calls, &other);
    eprintln!("{test}: {}", serde_json::to_string_pretty(&summary["outcomes"]).unwrap_or_default());

    let interfaces: Vec<&str> =
        summary["interfaces"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for expected in [
        "org.kairos.Extensions1.Manager",
        "org.kairos.Extensions1.Extension",
        "org.kairos.Extensions1.Job",
        "org.freedesktop.DBus.ObjectManager",
        "org.freedesktop.DBus.Properties",
        "org.freedesktop.DBus.Introspectable",
        "org.freedesktop.DBus.Peer",
    ] {
        assert!(interfaces.contains(&expected), "{test}: the fuzz did not find {expected}: {interfaces:?}");
    }
    let outcomes = &summary["outcomes"];
    assert!(outcomes.get("TIMEOUT").is_none(), "{test}: calls hung (seed {seed}): {outcomes}");
    let lost =
        outcomes.as_object().into_iter().flatten().any(|(k, _)| k == "connection closed" || k.starts_with("not sent"));
    assert!(!lost, "{test}: the fuzz client lost its connection (seed {seed}): {outcomes}");
    assert!(
        outcomes.get("org.freedesktop.DBus.Error.InvalidArgs").is_some(),
        "{test}: wrong arguments must reach the service and be refused there: {outcomes}"
    );

    // Up: the same process still owns the name and answers.
    assert!(stress::alive(pid), "{test}: the service died (seed {seed})");
    assert_eq!(owner_pid(&rig.bus, "org.kairos.Extensions1"), Some(pid), "{test}: the service was replaced");
    let probe = rig.probe(NOBODY, &["list"]);
    assert_eq!(probe["ok"], true, "{test}: ListExtensions after the fuzz: {probe}");

    if uid == NOBODY && rules.is_empty() {
        assert_eq!(state(&rig), before, "{test}: an unprivileged caller changed the store (seed {seed})");
    }
    // The stalled job may have been canceled by the fuzz already; either way it ends.
    let _ = rig.kairos_ext(&["cancel", &stalled_job.to_string()]);
    assert!(eventually(Duration::from_secs(20), || staging_is_empty(&rig)), "{test}: staging is not empty");
    assert_eq!(listed(&rig), raw_images(&rig.ns.store()), "{test}: the list and the store disagree");

    // Memory: freed memory goes back after a burst; wait for it.
    let limit = rss_before + rss_before / 2 + 8 * 1024;
    let mut rss_after = rss_kib(pid).unwrap_or(u64::MAX);
    eventually(Duration::from_secs(30), || {
        rss_after = rss_kib(pid).unwrap_or(u64::MAX);
        rss_after <= limit
    });
    eprintln!("{test}: {calls} calls, seed {seed}, service RSS {rss_before} KiB before, {rss_after} KiB after");
    assert!(rss_after <= limit, "{test}: RSS {rss_after} KiB stays far above {rss_before} KiB (seed {seed})");
    Run { calls: calls as u64, rss_before, rss_after }
}

#[test]
fn root_fuzzing_every_method_leaves_the_service_up_and_consistent() {
    if !privileged("root_fuzzing_every_method_leaves_the_service_up_and_consistent") {
        return;
    }
    let run = run("root", 0, &[]);
    assert!(run.calls > 0 && run.rss_after > 0 && run.rss_before > 0);
}

#[test]
fn unprivileged_fuzzing_changes_nothing() {
    if !privileged("unprivileged_fuzzing_changes_nothing") {
        return;
    }
    let run = run("nobody", NOBODY, &[]);
    assert!(run.calls > 0 && run.rss_after > 0 && run.rss_before > 0);
}

#[test]
fn unprivileged_fuzzing_with_a_granting_rule_leaves_the_service_up_and_consistent() {
    if !privileged("unprivileged_fuzzing_with_a_granting_rule_leaves_the_service_up_and_consistent") {
        return;
    }
    let run = run("nobody with a rule", NOBODY, &[ALLOW_NOBODY]);
    assert!(run.calls > 0 && run.rss_after > 0 && run.rss_before > 0);
}
