//! The state we report is the state that is: each extension's status (an image deleted
//! behind the service's back, a mask, an image systemd-sysext finds first, a refusal),
//! checked against what real systemd-sysext then does; the boot state of an automatic
//! reset; reading that leaves no trace, on a bare root and on a read-only /var/lib; and
//! the registry digest a tag resolved to.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::{Monitor, eventually};
use kairos_extensions_tests::namespace::{Namespace, snapshot_of};
use kairos_extensions_tests::registry::{Registry, gzip_layer_layout, tar};
use kairos_extensions_tests::system::{Polkit, Rig, Service, SystemBus};
use kairos_extensions_tests::{bins, privileged, stderr, stdout};
use serde_json::Value;

const QUICK: &str = "idle_exit_sec = 0\n";
const HELLO: &str = "/org/kairos/Extensions1/extension/hello";

/// Bus, polkitd, a namespace prepared by `prepare`, then the service: for tests that
/// must change the namespace before the service starts in it.
fn rig_after(prepare: impl FnOnce(&Namespace), config: &str) -> Rig {
    let bus = SystemBus::start();
    let polkit = Polkit::start(&bus, &[]);
    let ns = Namespace::new();
    prepare(&ns);
    let service = Service::start(&bus, &ns, config);
    let scratch = tempfile::Builder::new().prefix("kx-status-").tempdir().expect("scratch");
    fs::set_permissions(&scratch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("scratch mode");
    Rig { service, polkit, ns, bus, scratch }
}

/// An Extension property of `hello`, read with busctl.
fn property(rig: &Rig, name: &str) -> Value {
    let out = rig
        .bus
        .command("busctl")
        .args(["--system", "--json=short", "get-property", "org.kairos.Extensions1", HELLO])
        .args(["org.kairos.Extensions1.Extension", name])
        .output()
        .expect("busctl runs");
    assert!(out.status.success(), "get-property {name}: {}", stderr(&out));
    let reply: Value = serde_json::from_slice(&out.stdout).expect("busctl prints JSON");
    reply["data"].clone()
}

fn hello(dir: &Path, says: &str) -> PathBuf {
    ImageBuilder::new("hello").command("hello-kx", says).build(dir, &format!("hello-{}.raw", says.replace(' ', "-")))
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn succeeded(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}{}", stdout(&out), stderr(&out));
    out
}

/// `kairos-ext --root / args...` inside the namespace: offline mode on the live system.
fn offline(ns: &Namespace, args: &[&str]) -> Output {
    ns.command(bins::kairos_ext()).args(["--root", "/"]).args(args).output().expect("kairos-ext runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn an_image_deleted_behind_the_services_back_stays_listed_with_its_links() {
    if !privileged("an_image_deleted_behind_the_services_back_stays_listed_with_its_links") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let image = hello(rig.scratch.path(), "hello");
    succeeded(rig.kairos_ext(&["install", utf8(&image), "--enable", "passive"]), "install");
    let monitor = Monitor::start(&rig);

    fs::remove_file(rig.ns.store().join("hello.raw")).expect("delete the image by hand");
    let changed = monitor
        .wait_for_change(HELLO, "Status", |s| s == "image-missing")
        .unwrap_or_else(|| panic!("no Status change: {:?}", monitor.signals()));
    let reason = changed["StatusReason"].as_str().unwrap_or_default();
    assert!(reason.contains("/var/lib/kairos/extensions/hello.raw") && reason.contains("passive link"), "{reason}");
    assert!(!monitor.saw("ExtensionRemoved", &[Value::from("hello")]), "it must stay listed");
    assert_eq!(property(&rig, "EnabledBootStates"), serde_json::json!(["passive"]));
    assert_eq!(property(&rig, "Status"), "image-missing");
    let listed = json(&succeeded(rig.kairos_ext(&["list", "--json"]), "list"));
    assert_eq!(listed[0]["name"], "hello");
    assert_eq!(listed[0]["status"], "image-missing");
    assert_eq!(listed[0]["enabled"], serde_json::json!(["passive"]));
    let text = stdout(&succeeded(rig.kairos_ext(&["list"]), "list"));
    assert!(text.contains("image-missing: its image"), "{text}");
    let refused = rig.kairos_ext(&["enable", "hello", "--common"]);
    assert!(!refused.status.success() && stderr(&refused).contains("is gone"), "{}", stderr(&refused));

    // The same image again needs no --replace: there is nothing to replace, and its
    // enablement, still on disk, applies to it at once.
    succeeded(rig.kairos_ext(&["install", utf8(&image)]), "reinstall");
    assert!(monitor.wait_for_change(HELLO, "Status", |s| s == "ok").is_some(), "{:?}", monitor.signals());
    assert_eq!(property(&rig, "EnabledBootStates"), serde_json::json!(["passive"]));

    // Remove clears what is left once the image is gone again.
    fs::remove_file(rig.ns.store().join("hello.raw")).expect("delete the image by hand");
    assert!(eventually(Duration::from_secs(10), || property(&rig, "Status") == "image-missing"));
    succeeded(rig.kairos_ext(&["remove", "hello"]), "remove");
    assert!(
        eventually(Duration::from_secs(10), || monitor.saw("ExtensionRemoved", &[Value::from("hello")])),
        "{:?}",
        monitor.signals()
    );
    assert!(rig.store_snapshot().iter().all(|p| !p.contains("hello")), "{:?}", rig.store_snapshot());
}

/// Mounts a writable overlay over the namespace's /etc, so the test can mask and shadow
/// in /etc/extensions without touching the host's /etc.
fn private_etc(ns: &Namespace, scratch: &Path) {
    let (upper, work) = (scratch.join("etc-upper"), scratch.join("etc-work"));
    fs::create_dir_all(&upper).expect("overlay upper dir");
    fs::create_dir_all(&work).expect("overlay work dir");
    let options = format!("lowerdir=/etc,upperdir={},workdir={}", upper.display(), work.display());
    let out = ns.run("mount", &["-t", "overlay", "overlay", "-o", &options, "/etc"]);
    assert!(out.status.success(), "overlay over /etc: {}", stderr(&out));
}

#[test]
fn a_mask_and_an_image_found_first_show_up_live_and_are_what_systemd_does() {
    if !privileged("a_mask_and_an_image_found_first_show_up_live_and_are_what_systemd_does") {
        return;
    }
    let etc = tempfile::Builder::new().prefix("kx-etc-").tempdir().expect("overlay dirs");
    let rig = rig_after(|ns| private_etc(ns, etc.path()), QUICK);
    let ours = hello(rig.scratch.path(), "ours");
    let theirs = hello(rig.scratch.path(), "theirs");
    succeeded(rig.kairos_ext(&["install", utf8(&ours), "--enable", "common", "--now"]), "install");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "ours");
    assert_eq!(property(&rig, "Status"), "ok");
    let monitor = Monitor::start(&rig);

    // systemd-sysext(8): an empty directory named like the extension in /etc/extensions.
    succeeded(rig.ns.run("mkdir", &["-p", "/etc/extensions/hello"]), "mask");
    let changed = monitor
        .wait_for_change(HELLO, "Status", |s| s == "masked")
        .unwrap_or_else(|| panic!("no Status change: {:?}", monitor.signals()));
    assert_eq!(changed["StatusReason"], "masked by the empty directory /etc/extensions/hello");
    succeeded(rig.ns.run("systemd-sysext", &["refresh"]), "refresh");
    assert!(!rig.ns.merged().contains(&"hello".to_owned()), "masked means not merged: {:?}", rig.ns.merged());

    succeeded(rig.ns.run("rmdir", &["/etc/extensions/hello"]), "unmask");
    succeeded(rig.ns.run("cp", &[utf8(&theirs), "/etc/extensions/hello.raw"]), "shadow");
    let changed = monitor
        .wait_for_change(HELLO, "Status", |s| s == "shadowed")
        .unwrap_or_else(|| panic!("no Status change: {:?}", monitor.signals()));
    let reason = changed["StatusReason"].as_str().unwrap_or_default();
    assert!(reason.contains("/etc/extensions/hello.raw"), "{reason}");
    succeeded(rig.ns.run("systemd-sysext", &["refresh"]), "refresh");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "theirs", "shadowed means the other image is merged");

    let seen = monitor.signals().len();
    succeeded(rig.ns.run("rm", &["/etc/extensions/hello.raw"]), "unshadow");
    assert!(
        eventually(Duration::from_secs(10), || monitor.signals()[seen..]
            .iter()
            .any(|s| s["path"] == HELLO && s["args"][1]["Status"] == "ok" && s["args"][1]["StatusReason"] == "")),
        "{:?}",
        monitor.signals()
    );
    succeeded(rig.ns.run("systemd-sysext", &["refresh"]), "refresh");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "ours");
    assert!(!Path::new("/etc/extensions/hello").exists(), "the host's /etc is untouched");
}

#[test]
fn describe_finds_an_image_the_policy_refuses_and_the_object_then_says_so() {
    if !privileged("describe_finds_an_image_the_policy_refuses_and_the_object_then_says_so") {
        return;
    }
    let rig = Rig::start(&[], &format!("{QUICK}image_policy = \"strict\"\n"));
    let monitor = Monitor::start(&rig);
    // Installing an unsigned image is refused under strict; a copy by hand is not.
    let image = hello(rig.scratch.path(), "unsigned");
    fs::copy(&image, rig.ns.store().join("hello.raw")).expect("copy into the store");
    assert!(eventually(Duration::from_secs(10), || monitor.saw("ExtensionInstalled", &[Value::from("hello")])));
    assert_eq!(property(&rig, "Status"), "ok", "a listing reads no image");

    let described = rig.probe(0, &["describe", "hello"]);
    let described: Value = serde_json::from_str(described["value"].as_str().expect("Describe answers")).expect("JSON");
    assert_eq!(described["status"], "refused");
    assert!(described["status_reason"].as_str().is_some_and(|r| r.contains("strict")), "{described}");
    assert!(monitor.wait_for_change(HELLO, "Status", |s| s == "refused").is_some(), "{:?}", monitor.signals());
    assert_eq!(property(&rig, "StatusReason"), described["status_reason"]);
}

#[test]
fn an_automatic_reset_boot_is_a_recovery_boot() {
    if !privileged("an_automatic_reset_boot_is_a_recovery_boot") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let boot_state = || {
        let out = rig
            .bus
            .command("busctl")
            .args(["--system", "get-property", "org.kairos.Extensions1", "/org/kairos/Extensions1"])
            .args(["org.kairos.Extensions1.Manager", "BootState"])
            .output()
            .expect("busctl runs");
        stdout(&out).trim().to_owned()
    };
    assert_eq!(boot_state(), "s \"none\"");
    rig.ns.set_boot_state("autoreset");
    assert_eq!(boot_state(), "s \"recovery\"");
    // And it acts like one: enabling for recovery with --now merges for this boot.
    let image = hello(rig.scratch.path(), "in recovery");
    succeeded(rig.kairos_ext(&["install", utf8(&image), "--enable", "recovery", "--now"]), "install");
    assert_eq!(rig.ns.merged(), ["hello"]);
}

#[test]
fn reading_a_bare_root_creates_nothing() {
    let root = tempfile::Builder::new().prefix("kx-bare-").tempdir().expect("bare root");
    let before = snapshot_of(root.path());
    let offline = |args: &[&str]| {
        std::process::Command::new(bins::kairos_ext())
            .arg("--root")
            .arg(root.path())
            .args(args)
            .output()
            .expect("kairos-ext runs")
    };
    assert_eq!(stdout(&succeeded(offline(&["list"]), "list")), "No extensions installed.\n");
    assert_eq!(json(&succeeded(offline(&["list", "--json"]), "list --json")), serde_json::json!([]));
    let missing = offline(&["inspect", "hello"]);
    assert!(!missing.status.success() && stderr(&missing).contains("no extension named \"hello\""), "{missing:?}");
    assert_eq!(snapshot_of(root.path()), before, "reading must not create anything under the root");
}

/// Makes the namespace's /var/lib read-only.
fn read_only_var_lib(ns: &Namespace) {
    let out = ns.run("mount", &["-o", "remount,bind,ro", "/var/lib"]);
    assert!(out.status.success(), "remount /var/lib read-only: {}", stderr(&out));
    assert!(!ns.run("touch", &["/var/lib/kairos/extensions/.probe"]).status.success(), "/var/lib is still writable");
}

#[test]
fn kairos_ext_reads_a_read_only_store_and_shows_each_status() {
    if !privileged("kairos_ext_reads_a_read_only_store_and_shows_each_status") {
        return;
    }
    let ns = Namespace::new();
    let scratch = tempfile::Builder::new().prefix("kx-status-").tempdir().expect("scratch");
    let image = hello(scratch.path(), "hello");
    let tools = ImageBuilder::new("tools").build(scratch.path(), "tools.raw");
    succeeded(offline(&ns, &["install", utf8(&image), "--enable", "common"]), "install hello");
    succeeded(offline(&ns, &["install", utf8(&tools), "--enable", "passive"]), "install tools");
    fs::remove_file(ns.store().join("tools.raw")).expect("delete the image by hand");

    read_only_var_lib(&ns);
    let before = ns.snapshot("/var/lib/");
    let listed = json(&succeeded(offline(&ns, &["list", "--json"]), "list --json"));
    assert_eq!((listed[0]["name"].as_str(), listed[0]["status"].as_str()), (Some("hello"), Some("ok")));
    assert_eq!(listed[0]["status_reason"], "");
    assert_eq!((listed[1]["name"].as_str(), listed[1]["status"].as_str()), (Some("tools"), Some("image-missing")));
    assert_eq!(listed[1]["enabled"], serde_json::json!(["passive"]));
    let text = stdout(&succeeded(offline(&ns, &["list"]), "list"));
    assert!(text.contains("image-missing: its image /var/lib/kairos/extensions/tools.raw is gone"), "{text}");
    let inspected = json(&succeeded(offline(&ns, &["inspect", "hello", "--json"]), "inspect --json"));
    assert_eq!((inspected["status"].as_str(), inspected["protection"].as_str()), (Some("ok"), Some("unprotected")));
    let text = stdout(&succeeded(offline(&ns, &["inspect", "tools"]), "inspect"));
    assert!(text.contains("Status:     image-missing: "), "{text}");
    assert_eq!(ns.snapshot("/var/lib/"), before, "reading changed the store");

    let refused = offline(&ns, &["enable", "hello", "--passive"]);
    assert!(!refused.status.success(), "a change cannot succeed on a read-only store");
    assert!(stderr(&refused).contains("Read-only file system"), "{}", stderr(&refused));
}

#[test]
fn the_service_serves_a_read_only_store_and_each_change_says_why_it_fails() {
    if !privileged("the_service_serves_a_read_only_store_and_each_change_says_why_it_fails") {
        return;
    }
    let scratch = tempfile::Builder::new().prefix("kx-status-").tempdir().expect("scratch");
    let image = hello(scratch.path(), "hello");
    let rig = rig_after(
        |ns| {
            succeeded(offline(ns, &["install", utf8(&image), "--enable", "common"]), "install");
            read_only_var_lib(ns);
        },
        QUICK,
    );
    let out = rig
        .bus
        .command("busctl")
        .args(["--system", "--json=short", "call", "org.kairos.Extensions1", "/org/kairos/Extensions1"])
        .args(["org.kairos.Extensions1.Manager", "ListExtensions"])
        .output()
        .expect("busctl runs");
    let listed: Value = serde_json::from_slice(&succeeded(out, "ListExtensions").stdout).expect("busctl prints JSON");
    let rows = &listed["data"][0];
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!((&rows[0][0], &rows[0][2]), (&Value::from("hello"), &serde_json::json!(["common"])), "{listed}");
    assert_eq!(property(&rig, "Status"), "ok");
    let before = rig.ns.snapshot("/var/lib/");
    let refused = rig.probe(0, &["enable", "hello", "passive", "0"]);
    assert_eq!(refused["error"]["name"], "org.kairos.Extensions1.Error.Failed", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("/var/lib/kairos/extensions") && message.contains("Read-only file system"), "{message}");
    assert_eq!(rig.ns.snapshot("/var/lib/"), before);
}

#[test]
fn describe_carries_the_digest_a_registry_tag_resolved_to() {
    if !privileged("describe_carries_the_digest_a_registry_tag_resolved_to") {
        return;
    }
    let registry = Registry::start();
    let rig = Rig::start(&[], &format!("{QUICK}insecure_registries = [\"{}\"]\n", registry.host()));
    let image = fs::read(hello(rig.scratch.path(), "from a registry")).expect("image bytes");
    let layout = rig.scratch.path().join("layout");
    let (manifest, _) = gzip_layer_layout(&layout, "v1", &tar(&[("hello.raw", &image)]));
    registry.push(&layout, "v1", "hello", false);
    succeeded(rig.kairos_ext(&["install", &format!("oci://{}/hello:v1", registry.host())]), "install");

    let described = rig.probe(0, &["describe", "hello"]);
    let described: Value = serde_json::from_str(described["value"].as_str().expect("Describe answers")).expect("JSON");
    assert_eq!(described["resolved_digest"], manifest.as_str(), "{described}");
    assert_eq!(described["source"], format!("oci://{}/hello:v1", registry.host()));
    let inspected = json(&succeeded(rig.kairos_ext(&["inspect", "hello", "--json"]), "inspect --json"));
    assert_eq!(inspected["resolved_digest"], manifest.as_str());
    let text = stdout(&succeeded(rig.kairos_ext(&["inspect", "hello"]), "inspect"));
    assert!(text.contains(&format!("Resolved:   {manifest}")), "{text}");
}
