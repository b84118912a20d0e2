//! Filesystem faults under the running service: a full store (from a local file, a
//! caller's fd, HTTP and a registry), a store that turns read-only, a store directory
//! replaced by a symlink to elsewhere, and a disk that fails writes with EIO. Each is a
//! `Failed` that names the OS error and the path; nothing is left in `.tmp/` or the
//! store; the service stays up; and the next install works once the fault is gone.
//!
//! Real components throughout: dbus-daemon, polkitd, the service in a private mount
//! namespace, Debian's docker-registry, and real file systems mounted over the store in
//! that namespace: a 2 MiB tmpfs; a tmpfs remounted read-only; and, for EIO, an ext4 on
//! a loop device whose backing file is cut short under it (`losetup -c`), so that
//! writeback past the end fails in the block layer (there is no device-mapper here,
//! hence no dm-error; this needs no FUSE either).

use std::fs;
use std::path::Path;
use std::process::Command;

use kairos_extensions_tests::http::FileServer;
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::Monitor;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{Registry, gzip_layer_layout, tar};
use kairos_extensions_tests::stress::rig_prepared;
use kairos_extensions_tests::system::Rig;
use kairos_extensions_tests::{privileged, stderr, stdout};
use serde_json::Value;

const STORE: &str = "/var/lib/kairos/extensions";
const CONFIG: &str = "idle_exit_sec = 0\n";

/// Every path in the store with its type, size and link target, seen inside the
/// namespace (where the fault's file system is mounted).
fn listing(ns: &Namespace) -> String {
    let out = ns.run("find", &[STORE, "-printf", "%P %y %s %l\n"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut lines: Vec<String> = stdout(&out).lines().filter(|l| !l.starts_with(".lock ")).map(str::to_owned).collect();
    lines.sort();
    lines.join("\n")
}

fn staging(ns: &Namespace) -> String {
    stdout(&ns.run("find", &[&format!("{STORE}/.tmp"), "-mindepth", "1"]))
}

/// Installs with kairos-ext as root; the job's error as kairos-ext prints it.
fn failed_install(rig: &Rig, source: &str) -> String {
    let out = rig.kairos_ext(&["install", source]);
    assert!(!out.status.success(), "installing {source} must fail");
    stderr(&out)
}

/// Installs `path` through InstallFromFd as root; the Error property the job ends with.
fn failed_fd_install(rig: &Rig, monitor: &Monitor, path: &Path) -> String {
    let started = rig.probe(0, &["install-fd", path.to_str().expect("utf-8"), "read"]);
    let job =
        started["value"][1].as_str().unwrap_or_else(|| panic!("InstallFromFd starts a job: {started}")).to_owned();
    let changed = monitor
        .wait_for_change(&job, "Error", |v| v.as_str().is_some_and(|s| !s.is_empty()))
        .unwrap_or_else(|| panic!("the fd install never failed: {:?}", monitor.signals()));
    changed["Error"].as_str().unwrap_or_default().to_owned()
}

/// The error is `Failed`, and says what the OS said and where.
fn assert_precise(said: &str, os_error: &str, path: &str, what: &str) {
    // Through the bus the job's Error carries the kind; kairos-ext words it for people.
    assert!(said.contains("Failed: ") || said.contains("kairos-ext: cannot"), "{what}: a Failed error: {said}");
    assert!(said.contains(os_error), "{what}: name the OS error ({os_error}): {said}");
    assert!(said.contains(path), "{what}: name the path ({path}): {said}");
    assert!(!said.to_lowercase().contains("invalid image"), "{what}: not the image's fault: {said}");
}

fn assert_unharmed(rig: &mut Rig, before: &str, what: &str) {
    assert_eq!(listing(&rig.ns), before, "{what}: the store is as it was");
    assert_eq!(staging(&rig.ns), "", "{what}: nothing is left in staging");
    assert!(rig.service.running(), "{what}: the service is up");
    let listed = rig.probe(65534, &["list"]);
    assert_eq!(listed["ok"], true, "{what}: the service answers: {listed}");
}

fn mount_in(ns: &Namespace, args: &[&str]) {
    let out = ns.run("mount", args);
    assert!(out.status.success(), "mount {args:?}: {}", stderr(&out));
}

#[test]
fn a_full_store_fails_each_install_precisely_and_the_next_works_once_space_is_back() {
    if !privileged("a_full_store_fails_each_install_precisely_and_the_next_works_once_space_is_back") {
        return;
    }
    let registry = Registry::start();
    let config = format!("{CONFIG}insecure_registries = [\"{}\"]\n", registry.host());
    let mut rig = rig_prepared(&[], &config, |ns| mount_in(ns, &["-t", "tmpfs", "-o", "size=2m", "tmpfs", STORE]));
    let big = ImageBuilder::new("big").noise(4 << 20).build(rig.scratch.path(), "big.raw");
    let bytes = fs::read(&big).expect("image");
    let layout = rig.scratch.path().join("layout");
    gzip_layer_layout(&layout, "v1", &tar(&[("big.raw", &bytes)]));
    registry.push(&layout, "v1", "big", false);
    let server = FileServer::start(bytes);
    let monitor = Monitor::start(&rig);
    let before = listing(&rig.ns);
    let tmp = format!("{STORE}/.tmp/");

    let said = failed_install(&rig, big.to_str().expect("utf-8"));
    assert_precise(&said, "No space left on device", &tmp, "a local file");
    assert_unharmed(&mut rig, &before, "a local file");
    let said = failed_fd_install(&rig, &monitor, &big);
    assert_precise(&said, "No space left on device", &tmp, "a caller's fd");
    assert_unharmed(&mut rig, &before, "a caller's fd");
    let said = failed_install(&rig, &server.url("big.raw"));
    assert_precise(&said, "No space left on device", &tmp, "HTTP");
    assert_unharmed(&mut rig, &before, "HTTP");
    let said = failed_install(&rig, &format!("oci://{}/big:v1", registry.host()));
    assert_precise(&said, "No space left on device", &tmp, "a registry");
    assert_unharmed(&mut rig, &before, "a registry");
    let failed = monitor.removed().iter().filter(|(_, result)| result == "failed").count();
    assert_eq!(failed, 4, "each install ended with JobRemoved \"failed\": {:?}", monitor.removed());

    mount_in(&rig.ns, &["-o", "remount,size=64m", STORE]);
    let out = rig.kairos_ext(&["install", &format!("oci://{}/big:v1", registry.host())]);
    assert!(out.status.success(), "with space back, the install works: {}", stderr(&out));
    assert!(stdout(&rig.kairos_ext(&["list"])).contains("big"));
}

#[test]
fn a_store_gone_read_only_fails_each_change_precisely_and_recovers() {
    if !privileged("a_store_gone_read_only_fails_each_change_precisely_and_recovers") {
        return;
    }
    let mut rig = rig_prepared(&[], CONFIG, |ns| mount_in(ns, &["-t", "tmpfs", "-o", "size=64m", "tmpfs", STORE]));
    let tools = ImageBuilder::new("tools").build(rig.scratch.path(), "tools.raw");
    let hello = ImageBuilder::new("hello").build(rig.scratch.path(), "hello.raw");
    let out = rig.kairos_ext(&["install", tools.to_str().expect("utf-8"), "--enable", "common"]);
    assert!(out.status.success(), "install tools: {}", stderr(&out));

    mount_in(&rig.ns, &["-o", "remount,ro", STORE]);
    let before = listing(&rig.ns);
    let said = failed_install(&rig, hello.to_str().expect("utf-8"));
    assert_precise(&said, "Read-only file system", STORE, "install");
    assert_unharmed(&mut rig, &before, "install");
    for change in [
        ["enable", "tools", "passive", "0"].as_slice(),
        &["disable", "tools", "common", "0"],
        &["remove", "tools", "0"],
    ] {
        let verdict: Value = rig.probe(0, change);
        assert_eq!(verdict["error"]["name"], "org.kairos.Extensions1.Error.Failed", "{change:?}: {verdict}");
        let message = verdict["error"]["message"].as_str().unwrap_or_default();
        assert_precise(&format!("Failed: {message}"), "Read-only file system", STORE, change[0]);
        assert_unharmed(&mut rig, &before, change[0]);
    }

    mount_in(&rig.ns, &["-o", "remount,rw", STORE]);
    let out = rig.kairos_ext(&["install", hello.to_str().expect("utf-8")]);
    assert!(out.status.success(), "writable again, the install works: {}", stderr(&out));
    let out = rig.kairos_ext(&["remove", "tools"]);
    assert!(out.status.success(), "and so does remove: {}", stderr(&out));
}

#[test]
fn a_store_replaced_by_a_symlink_is_refused_and_nothing_lands_where_it_points() {
    if !privileged("a_store_replaced_by_a_symlink_is_refused_and_nothing_lands_where_it_points") {
        return;
    }
    let mut rig = Rig::start(&[], CONFIG);
    let aaa = ImageBuilder::new("aaa").build(rig.scratch.path(), "aaa.raw");
    let bbb = ImageBuilder::new("bbb").build(rig.scratch.path(), "bbb.raw");
    let out = rig.kairos_ext(&["install", aaa.to_str().expect("utf-8")]);
    assert!(out.status.success(), "install aaa: {}", stderr(&out));

    // Elsewhere looks like a store, so that writing through the link would "work".
    let store = rig.ns.store();
    let store = store.as_path().to_str().expect("utf-8").trim_end_matches('/').to_owned();
    let moved = format!("{store}.moved");
    let elsewhere = rig.scratch.path().join("elsewhere");
    for dir in [".tmp", ".meta", "active", "passive", "recovery", "common"] {
        fs::create_dir_all(elsewhere.join(dir)).expect("a store-like directory");
    }
    fs::rename(&store, &moved).expect("move the store away");
    std::os::unix::fs::symlink(&elsewhere, &store).expect("the store becomes a symlink");
    let elsewhere_before = kairos_extensions_tests::namespace::snapshot_of(&elsewhere);

    let said = failed_install(&rig, bbb.to_str().expect("utf-8"));
    assert_precise(&said, "Not a directory", STORE, "install through a symlinked store");
    let verdict = rig.probe(0, &["enable", "aaa", "passive", "0"]);
    assert_eq!(verdict["error"]["name"], "org.kairos.Extensions1.Error.Failed", "{verdict}");
    assert_eq!(
        kairos_extensions_tests::namespace::snapshot_of(&elsewhere),
        elsewhere_before,
        "something landed where the symlink points"
    );
    assert!(rig.service.running(), "the service is up");

    fs::remove_file(&store).expect("remove the symlink");
    fs::rename(&moved, &store).expect("put the store back");
    let out = rig.kairos_ext(&["install", bbb.to_str().expect("utf-8")]);
    assert!(out.status.success(), "with the store back, the install works: {}", stderr(&out));
    let listed = stdout(&rig.kairos_ext(&["list"]));
    assert!(listed.contains("aaa") && listed.contains("bbb"), "{listed}");
}

/// The loop device behind `backing`.
fn loop_device(backing: &Path) -> String {
    let out = Command::new("losetup").args(["-n", "-O", "NAME", "-j"]).arg(backing).output().expect("losetup runs");
    let device = stdout(&out).trim().to_owned();
    assert!(device.starts_with("/dev/loop"), "no loop device for {}: {}", backing.display(), stderr(&out));
    device
}

/// Sets the size of `backing` and makes its loop device see it.
fn resize_backing(backing: &Path, device: &str, size: u64) {
    fs::File::options().write(true).open(backing).and_then(|f| f.set_len(size)).expect("resize the backing file");
    let out = Command::new("losetup").args(["-c", device]).output().expect("losetup runs");
    assert!(out.status.success(), "losetup -c: {}", stderr(&out));
}

#[test]
fn a_disk_failing_writes_with_eio_fails_the_install_precisely_and_recovers() {
    if !privileged("a_disk_failing_writes_with_eio_fails_the_install_precisely_and_recovers") {
        return;
    }
    let disk = tempfile::Builder::new().prefix("kx-eio-").tempdir().expect("disk dir");
    let backing = disk.path().join("backing");
    fs::File::create(&backing).and_then(|f| f.set_len(64 << 20)).expect("sparse backing file");
    // flex_bg keeps every bitmap and inode table at the start, so with few inodes all
    // metadata lives in the first MiB and only data blocks fall past the cut.
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-N", "64", "-b", "1024"])
        .arg(&backing)
        .output()
        .expect("mkfs.ext4 runs (Debian package e2fsprogs)");
    assert!(out.status.success(), "mkfs.ext4: {}", stderr(&out));
    let backing_arg = backing.to_str().expect("utf-8").to_owned();
    // `-o loop` sets autoclear: the device goes when the namespace ends.
    let mut rig = rig_prepared(&[], CONFIG, |ns| mount_in(ns, &["-o", "loop,errors=continue", &backing_arg, STORE]));
    let device = loop_device(&backing);
    let big = ImageBuilder::new("big").noise(4 << 20).build(rig.scratch.path(), "big.raw");
    assert!(rig.ns.run("sync", &[]).status.success());
    let before = listing(&rig.ns);

    resize_backing(&backing, &device, 1 << 20);
    let said = failed_install(&rig, big.to_str().expect("utf-8"));
    assert_precise(&said, "Input/output error", &format!("{STORE}/.tmp/"), "writeback fails");
    assert_unharmed(&mut rig, &before, "writeback fails");

    resize_backing(&backing, &device, 64 << 20);
    let out = rig.kairos_ext(&["install", big.to_str().expect("utf-8")]);
    assert!(out.status.success(), "with the disk whole again, the install works: {}", stderr(&out));
}
