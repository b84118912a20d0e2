//! polkit faults: whatever goes wrong with polkit, a change is refused and nothing
//! changes. polkitd absent from the bus, killed while it decides, frozen (SIGSTOP) until
//! the service gives up on it, and a caller that hangs up between its call and polkit's
//! decision. Real dbus-daemon, real polkitd (stopped and killed for real), the real
//! service; the caller is `nobody` with a rule that grants it everything, so that each
//! refusal is the fault's doing and not the rule's, which a control call proves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::eventually;
use kairos_extensions_tests::stress::{alive, owner_pid, signal};
use kairos_extensions_tests::system::{ALLOW_NOBODY, Rig, wait_for_name};
use kairos_extensions_tests::{bins, privileged, stderr};
use serde_json::Value;

const NOBODY: u32 = 65534;
const CONFIG: &str = "idle_exit_sec = 0\n";
const POLKIT: &str = "org.freedesktop.PolicyKit1";
const SERVICE: &str = "org.kairos.Extensions1";

/// A rig where `nobody` may do everything, with `hello` installed and enabled for `common`.
fn rig() -> Rig {
    let rig = Rig::start(&[ALLOW_NOBODY], CONFIG);
    let image = ImageBuilder::new("hello").build(rig.scratch.path(), "hello.raw");
    let out = rig.kairos_ext(&["install", image.to_str().expect("utf-8"), "--enable", "common"]);
    assert!(out.status.success(), "install: {}", stderr(&out));
    rig
}

/// The store and `/run/extensions`.
fn state(rig: &Rig) -> BTreeMap<PathBuf, String> {
    let mut state = rig.ns.snapshot("/var/lib/kairos/extensions/");
    state.retain(|path, _| !path.starts_with(".lock"));
    for (path, what) in rig.ns.snapshot("/run/extensions/") {
        state.insert(PathBuf::from("/run/extensions").join(path), what);
    }
    state
}

fn polkitd(rig: &Rig) -> u32 {
    owner_pid(&rig.bus, POLKIT).expect("polkitd's pid")
}

/// Every change `nobody` can ask for, as bus-probe arguments.
const CHANGES: &[&[&str]] = &[
    &["enable", "hello", "passive", "0"],
    &["disable", "hello", "common", "0"],
    &["remove", "hello", "0"],
    &["refresh", "0"],
    &["install", "http://127.0.0.1:1/x.raw"],
];

/// Starts bus-probe as `nobody` in the background.
fn spawn_probe(rig: &Rig, args: &[&str]) -> Child {
    use std::os::unix::process::CommandExt;
    rig.bus
        .command(bins::bus_probe())
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bus-probe runs")
}

fn verdict(child: Child) -> Value {
    let out = child.wait_with_output().expect("bus-probe ends");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bus-probe: {e}: {}", stderr(&out)))
}

/// A refusal: an error, and one that says it is about authorization.
fn assert_refused(verdict: &Value, what: &str) {
    assert_eq!(verdict["ok"], false, "{what}: must be refused: {verdict}");
    let name = verdict["error"]["name"].as_str().unwrap_or_default();
    assert!(
        name == "org.freedesktop.DBus.Error.AccessDenied" || name == "org.freedesktop.DBus.Error.NoReply",
        "{what}: refused as an authorization failure: {verdict}"
    );
}

/// The control: with polkit working, the same rule lets `nobody` change things.
fn assert_granted_when_polkit_works(rig: &Rig) {
    let verdict = rig.probe(NOBODY, &["enable", "hello", "recovery", "0"]);
    assert_eq!(verdict["ok"], true, "with polkit up, the rule grants nobody: {verdict}");
    assert!(rig.ns.store().join("recovery/hello.raw").exists());
}

#[test]
fn without_polkitd_every_change_is_refused_and_nothing_changes() {
    if !privileged("without_polkitd_every_change_is_refused_and_nothing_changes") {
        return;
    }
    let rig = rig();
    let pid = polkitd(&rig);
    signal(pid, "KILL");
    assert!(
        eventually(Duration::from_secs(10), || owner_pid(&rig.bus, POLKIT).is_none()),
        "polkitd still owns its name"
    );
    let before = state(&rig);
    for change in CHANGES {
        assert_refused(&rig.probe(NOBODY, change), &format!("nobody {change:?} without polkitd"));
        assert_refused(&rig.probe(0, change), &format!("root {change:?} without polkitd"));
    }
    let out = rig.kairos_ext(&["enable", "hello", "--passive"]);
    assert!(!out.status.success(), "kairos-ext enable must fail without polkitd");
    assert_eq!(state(&rig), before, "a change got through without polkit");
    assert_eq!(rig.probe(NOBODY, &["list"])["value"], 1, "reads still work");
}

#[test]
fn a_polkitd_killed_while_deciding_refuses_and_changes_nothing() {
    if !privileged("a_polkitd_killed_while_deciding_refuses_and_changes_nothing") {
        return;
    }
    let rig = rig();
    let before = state(&rig);
    let pid = polkitd(&rig);
    // Frozen first, so that the checks are surely waiting on it when it dies.
    signal(pid, "STOP");
    let probes: Vec<Child> = CHANGES.iter().map(|change| spawn_probe(&rig, change)).collect();
    std::thread::sleep(Duration::from_secs(1));
    signal(pid, "KILL");
    signal(pid, "CONT");
    for (change, probe) in CHANGES.iter().zip(probes) {
        assert_refused(&verdict(probe), &format!("{change:?} while polkitd died"));
    }
    assert_eq!(state(&rig), before, "a change got through while polkitd died");
    assert!(wait_for_name(rig.bus.address(), SERVICE, Duration::from_secs(1)), "the service left the bus");
}

#[test]
fn a_frozen_polkitd_refuses_after_the_check_times_out_and_changes_nothing() {
    if !privileged("a_frozen_polkitd_refuses_after_the_check_times_out_and_changes_nothing") {
        return;
    }
    let rig = rig();
    let before = state(&rig);
    let pid = polkitd(&rig);
    signal(pid, "STOP");
    let probes: Vec<Child> = CHANGES.iter().map(|change| spawn_probe(&rig, change)).collect();
    for (change, probe) in CHANGES.iter().zip(probes) {
        let verdict = verdict(probe);
        assert_refused(&verdict, &format!("{change:?} while polkitd is frozen"));
        eprintln!("frozen polkitd: {change:?} -> {}", verdict["error"]);
    }
    assert_eq!(state(&rig), before, "a change got through while polkitd was frozen");
    assert_eq!(rig.probe(NOBODY, &["list"])["value"], 1, "reads work while polkitd is frozen");
    signal(pid, "CONT");
    // polkitd now answers the checks the service gave up on; those answers must not
    // act on anything either.
    let status =
        rig.bus.command("pkcheck").args(["--action-id", "org.kairos.extensions1.manage", "--process", "1"]).status();
    assert!(status.is_ok(), "pkcheck runs (Debian package polkitd)");
    assert_eq!(state(&rig), before, "a late answer of polkit changed the store");
    assert_granted_when_polkit_works(&rig);
}

#[test]
fn a_caller_that_leaves_before_polkit_decides_changes_nothing() {
    if !privileged("a_caller_that_leaves_before_polkit_decides_changes_nothing") {
        return;
    }
    let rig = rig();
    let before = state(&rig);
    let pid = polkitd(&rig);
    signal(pid, "STOP");
    let mut probes: Vec<Child> = CHANGES.iter().map(|change| spawn_probe(&rig, change)).collect();
    std::thread::sleep(Duration::from_secs(1));
    for probe in &mut probes {
        let _ = probe.kill();
        let _ = probe.wait();
    }
    signal(pid, "CONT");
    // polkit answers in order: once it has answered this later question, it has
    // answered the earlier ones, and the service has had them.
    let out = Command::new("pkcheck")
        .env("DBUS_SYSTEM_BUS_ADDRESS", rig.bus.address())
        .args(["--action-id", "org.kairos.extensions1.manage", "--process", &std::process::id().to_string()])
        .output()
        .expect("pkcheck runs (Debian package polkitd)");
    assert!(out.status.success(), "root is authorized: {}", stderr(&out));
    // The service handles the late answers on its own time: give it the time a check takes.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&rig), before, "a caller that hung up still changed the store");
    assert!(alive(pid), "polkitd survived");
    assert_granted_when_polkit_works(&rig);
}
