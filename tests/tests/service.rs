//! org.kairos.Extensions1 end to end: a real dbus-daemon carrying our bus policy, real
//! polkitd with our actions, and kairos-extensionsd in a private mount namespace where
//! systemd-sysext really merges.

use std::fs;
use std::os::unix::fs::symlink;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kairos_extensions_tests::images::{ImageBuilder, junk};
use kairos_extensions_tests::monitor::{Monitor, eventually};
use kairos_extensions_tests::system::{ALLOW_NOBODY, Rig};
use kairos_extensions_tests::{contract, namespace, privileged, stderr, stdout};
use serde_json::Value;

const NOBODY: u32 = 65534;
const QUICK: &str = "idle_exit_sec = 0\n";

fn error_name(verdict: &Value) -> &str {
    verdict["error"]["name"].as_str().unwrap_or("")
}

fn hello(rig: &Rig) -> std::path::PathBuf {
    ImageBuilder::new("hello").command("hello-kx", "hello from the extension").build(rig.scratch.path(), "hello.raw")
}

#[test]
fn root_installs_merges_and_removes_with_every_signal_seen() {
    if !privileged("root_installs_merges_and_removes_with_every_signal_seen") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let monitor = Monitor::start(&rig);
    let image = hello(&rig);

    let out = rig.kairos_ext(&["install", image.to_str().expect("utf-8 path"), "--enable", "common", "--now"]);
    assert!(out.status.success(), "install failed: {}", stderr(&out));
    assert!(stdout(&out).contains("Installed hello"), "{}", stdout(&out));

    let ran = rig.ns.run("hello-kx", &[]);
    assert_eq!(stdout(&ran).trim(), "hello from the extension", "the merged binary must run inside the namespace");
    assert!(!namespace::on_host("/usr/bin/hello-kx"), "the host must not see the merge");
    assert_eq!(rig.ns.merged(), ["hello"]);

    let path = Value::from("/org/kairos/Extensions1/extension/hello");
    assert!(monitor.wait_for("JobNew", &[Value::from(1)]), "JobNew: {:?}", monitor.signals());
    assert!(monitor.wait_for("ExtensionInstalled", &[Value::from("hello"), path.clone()]));
    assert!(monitor.wait_for("ExtensionEnabled", &[Value::from("hello"), Value::from("common")]));
    assert!(monitor.wait_for("Refreshed", &[Value::from(vec!["hello"])]));
    assert!(
        monitor.wait_for(
            "JobRemoved",
            &[Value::from(1), Value::from("/org/kairos/Extensions1/job/1"), Value::from("done")]
        )
    );
    assert!(monitor.signals().iter().any(|s| s["signal"] == "PropertiesChanged"
        && s["path"] == "/org/kairos/Extensions1"
        && s["args"][1]["Merged"] == Value::from(vec!["hello"])));

    let merged = rig
        .bus
        .command("busctl")
        .args([
            "--system",
            "get-property",
            "org.kairos.Extensions1",
            "/org/kairos/Extensions1",
            "org.kairos.Extensions1.Manager",
            "Merged",
        ])
        .output()
        .expect("busctl");
    assert_eq!(stdout(&merged).trim(), "as 1 \"hello\"");

    let out = rig.kairos_ext(&["disable", "hello", "--common", "--now"]);
    assert!(out.status.success(), "disable failed: {}", stderr(&out));
    assert!(!rig.ns.exists("/usr/bin/hello-kx"), "disable --now must unmerge");
    assert!(monitor.wait_for("ExtensionDisabled", &[Value::from("hello"), Value::from("common")]));

    let out = rig.kairos_ext(&["remove", "hello"]);
    assert!(out.status.success(), "remove failed: {}", stderr(&out));
    assert!(monitor.wait_for("ExtensionRemoved", &[Value::from("hello"), path]));
    assert!(!rig.ns.store().join("hello.raw").exists());
    assert!(!rig.ns.store().join(".meta/hello.json").exists());
}

#[test]
fn root_installs_from_an_fd_and_the_job_can_be_canceled() {
    if !privileged("root_installs_from_an_fd_and_the_job_can_be_canceled") {
        return;
    }
    let rig = Rig::start(&[], "idle_exit_sec = 0\nmax_image_size = \"4G\"\n");
    let image = hello(&rig);
    let verdict = rig.probe(0, &["install-fd", image.to_str().expect("utf-8"), "read"]);
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert!(eventually(Duration::from_secs(10), || stdout(&rig.kairos_ext(&["list"])).contains("hello")));
    let described = rig.kairos_ext(&["inspect", "hello", "--json"]);
    let described: Value = serde_json::from_slice(&described.stdout).expect("inspect --json is JSON");
    assert_eq!(described["source"], format!("fd:{}", image.display()));
    assert_eq!(described["protection"], "unprotected", "Describe verifies the image");

    // A large sparse file keeps the job busy long enough to cancel it.
    let big = rig.scratch.path().join("big.raw");
    fs::File::create(&big).and_then(|f| f.set_len(3 << 30)).expect("sparse file");
    let monitor = Monitor::start(&rig);
    let started = rig.probe(0, &["install-fd", big.to_str().expect("utf-8"), "read"]);
    let job = started["value"][1].as_str().expect("job path").to_owned();
    let id = started["value"][0].as_u64().expect("job id");
    let cancel = rig.kairos_ext(&["cancel", &id.to_string()]);
    assert!(cancel.status.success(), "cancel: {}", stderr(&cancel));
    assert!(
        monitor.wait_for("JobRemoved", &[Value::from(id), Value::from(job.as_str()), Value::from("canceled")]),
        "{:?}",
        monitor.signals()
    );
    assert!(
        eventually(Duration::from_secs(5), || fs::read_dir(rig.ns.store().join(".tmp"))
            .map(|d| d.count() == 0)
            .unwrap_or(false)),
        "a canceled job must leave staging empty"
    );
}

#[test]
fn nobody_may_read_but_every_change_is_denied_and_changes_nothing() {
    if !privileged("nobody_may_read_but_every_change_is_denied_and_changes_nothing") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let image = hello(&rig);
    let out = rig.kairos_ext(&["install", image.to_str().expect("utf-8"), "--enable", "common", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = rig.store_snapshot();

    assert_eq!(rig.probe(NOBODY, &["list"])["value"], 1);
    assert_eq!(rig.probe(NOBODY, &["describe", "hello"])["ok"], true);
    let listed = rig.kairos_ext_as_nobody(&["list"]);
    assert!(listed.status.success() && stdout(&listed).contains("hello"), "{}", stderr(&listed));

    let interactive = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired";
    for call in [
        vec!["enable", "hello", "active", "0"],
        vec!["disable", "hello", "common", "1"],
        vec!["remove", "hello", "1"],
        vec!["refresh", "0"],
        vec!["install-fd", image.to_str().expect("utf-8"), "read"],
    ] {
        let verdict = rig.probe(NOBODY, &call);
        assert_eq!(error_name(&verdict), interactive, "{call:?}: {verdict}");
    }
    let file = rig.probe(NOBODY, &["install", &format!("file://{}", image.display())]);
    assert_eq!(error_name(&file), "org.freedesktop.DBus.Error.AccessDenied", "{file}");
    assert!(file["error"]["message"].as_str().unwrap_or("").contains("InstallFromFd"), "{file}");

    let cli = rig.kairos_ext_as_nobody(&["disable", "hello", "--common", "--now"]);
    assert!(!cli.status.success());
    assert!(stderr(&cli).contains("authentication is required"), "{}", stderr(&cli));

    assert_eq!(rig.store_snapshot(), before, "denied calls must not change the store");
    assert_eq!(rig.ns.merged(), ["hello"]);
}

#[test]
fn a_polkit_rule_lets_nobody_change_things() {
    if !privileged("a_polkit_rule_lets_nobody_change_things") {
        return;
    }
    let rig = Rig::start(&[ALLOW_NOBODY], QUICK);
    let image = hello(&rig);
    let out = rig.kairos_ext_as_nobody(&["install", image.to_str().expect("utf-8"), "--enable", "common", "--now"]);
    assert!(out.status.success(), "nobody install with the rule: {}", stderr(&out));
    assert_eq!(rig.ns.merged(), ["hello"]);
    assert_eq!(rig.probe(NOBODY, &["disable", "hello", "common", "1"])["ok"], true);
    assert!(rig.ns.merged().is_empty());
    let file = rig.probe(NOBODY, &["install", &format!("file://{}", image.display())]);
    assert_eq!(error_name(&file), "org.freedesktop.DBus.Error.AccessDenied", "file:// stays root-only: {file}");
    assert_eq!(rig.probe(NOBODY, &["remove", "hello", "0"])["ok"], true);
    assert!(!rig.ns.store().join("hello.raw").exists());
}

#[test]
fn bad_input_gets_precise_errors_and_changes_nothing() {
    if !privileged("bad_input_gets_precise_errors_and_changes_nothing") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let image = hello(&rig);
    let out = rig.kairos_ext(&["install", image.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = rig.store_snapshot();
    let long = "a".repeat(129);
    let fifo = rig.scratch.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()));
    let dir = rig.scratch.path().to_str().expect("utf-8").to_owned();
    let prefix = "org.kairos.Extensions1.Error.";
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["enable", "../x", "active", "0"], format!("{prefix}InvalidName")),
        (vec!["enable", "a/b", "active", "0"], format!("{prefix}InvalidName")),
        (vec!["enable", ".", "active", "0"], format!("{prefix}InvalidName")),
        (vec!["enable", &long, "active", "0"], format!("{prefix}InvalidName")),
        (vec!["enable", "hello", "bogus", "0"], format!("{prefix}InvalidBootState")),
        (vec!["enable", "hello", "active", "2"], "org.freedesktop.DBus.Error.InvalidArgs".into()),
        (vec!["remove", "hello", "4"], "org.freedesktop.DBus.Error.InvalidArgs".into()),
        (vec!["refresh", "8"], "org.freedesktop.DBus.Error.InvalidArgs".into()),
        (vec!["enable", "absent", "active", "0"], format!("{prefix}NotFound")),
        (vec!["describe", "absent"], format!("{prefix}NotFound")),
        (vec!["install", "ftp://example/x.raw"], format!("{prefix}InvalidSource")),
        (vec!["install", "file://relative.raw"], format!("{prefix}InvalidSource")),
        (vec!["install", "oci://registry.example.com/Not-Lower-Case"], format!("{prefix}InvalidSource")),
        (vec!["install", "file:///tmp/../etc/shadow"], format!("{prefix}InvalidSource")),
        (vec!["install-fd", &dir, "read"], format!("{prefix}InvalidSource")),
        (vec!["install-fd", "/dev/null", "read"], format!("{prefix}InvalidSource")),
        (vec!["install-fd", fifo.to_str().expect("utf-8"), "nonblock"], format!("{prefix}InvalidSource")),
        (vec!["install-fd", image.to_str().expect("utf-8"), "write"], format!("{prefix}InvalidSource")),
        (vec!["install-fd", image.to_str().expect("utf-8"), "path"], format!("{prefix}InvalidSource")),
    ];
    for (call, expected) in &cases {
        let verdict = rig.probe(0, call);
        assert_eq!(error_name(&verdict), expected, "{call:?}: {verdict}");
        assert!(!verdict["error"]["message"].as_str().unwrap_or("").is_empty(), "{call:?} needs a message");
    }
    // Options are a{sv}, which only busctl spells easily.
    let install_with_option = |key: &str, signature: &str, value: &str| {
        let manager = ["org.kairos.Extensions1", "/org/kairos/Extensions1", "org.kairos.Extensions1.Manager"];
        let out = rig
            .bus
            .command("busctl")
            .args(["--system", "call"])
            .args(manager)
            .args(["Install", "sa{sv}", "file:///x.raw", "1", key, signature, value])
            .output()
            .expect("busctl");
        stderr(&out)
    };
    let unknown = install_with_option("colour", "s", "blue");
    assert!(unknown.contains("unknown option \"colour\""), "{unknown}");
    let mistyped = install_with_option("now", "s", "yes");
    assert!(mistyped.contains("option \"now\" must be of type b"), "{mistyped}");
    // A malformed option value is a bad argument, as the contract says, whatever the source.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let digest = runtime.block_on(async {
        let options = std::collections::HashMap::from([("digest", zbus::Variant::from("md5:abc"))]);
        let manager = ("org.kairos.Extensions1", "/org/kairos/Extensions1", "org.kairos.Extensions1.Manager");
        rig.bus
            .connect()
            .await
            .call_method(Some(manager.0), manager.1, Some(manager.2), "Install", &("oci://r.example/x:v1", options))
            .await
    });
    // zbus turns the freedesktop error names it knows into `FDO` errors.
    match digest {
        Err(zbus::Error::FDO(error)) if matches!(*error, zbus::fdo::Error::InvalidArgs(_)) => {
            let message = error.to_string();
            assert!(message.contains("option \"digest\" must be sha256:<64 hex digits>"), "{message}");
        }
        other => panic!("a malformed digest is not InvalidArgs: {other:?}"),
    }

    // A junk image is a failed job, not a changed store.
    let bad = junk(rig.scratch.path(), "junk.raw", 100_000);
    let out = rig.kairos_ext(&["install", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(": invalid image: "), "{}", stderr(&out));

    assert_eq!(rig.store_snapshot(), before, "bad input must not change the store");
    assert_eq!(rig.probe(0, &["list"])["value"], 1, "the service must still be up");
}

#[test]
fn changes_made_by_others_show_up_with_the_same_signals() {
    if !privileged("changes_made_by_others_show_up_with_the_same_signals") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let monitor = Monitor::start(&rig);
    // What kairos-agent does: copy an image in under its own file name, link it absolutely.
    let image = ImageBuilder::new("k3s").build(rig.scratch.path(), "k3s.sysext.raw");
    let store = rig.ns.store();
    fs::copy(&image, store.join("k3s.sysext.raw")).expect("copy into the store");
    assert!(monitor.wait_for("ExtensionInstalled", &[Value::from("k3s")]), "{:?}", monitor.signals());
    symlink("/var/lib/kairos/extensions/k3s.sysext.raw", store.join("active/k3s.sysext.raw")).expect("link");
    assert!(
        monitor.wait_for("ExtensionEnabled", &[Value::from("k3s"), Value::from("active")]),
        "{:?}",
        monitor.signals()
    );
    let listed = stdout(&rig.kairos_ext(&["list"]));
    assert!(listed.contains("k3s") && listed.contains("active"), "{listed}");
    fs::remove_file(store.join("active/k3s.sysext.raw")).expect("unlink");
    assert!(monitor.wait_for("ExtensionDisabled", &[Value::from("k3s"), Value::from("active")]));
    fs::remove_file(store.join("k3s.sysext.raw")).expect("remove");
    assert!(monitor.wait_for("ExtensionRemoved", &[Value::from("k3s")]));
}

/// The service reads again only the extensions a change names; a link whose name is
/// another extension's still reaches the image it points at.
#[test]
fn a_link_named_after_one_extension_but_pointing_at_another_enables_the_other() {
    if !privileged("a_link_named_after_one_extension_but_pointing_at_another_enables_the_other") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let monitor = Monitor::start(&rig);
    let store = rig.ns.store();
    for name in ["hello", "world"] {
        let image = ImageBuilder::new(name).build(rig.scratch.path(), &format!("{name}.raw"));
        fs::copy(&image, store.join(format!("{name}.raw"))).expect("copy into the store");
        assert!(monitor.wait_for("ExtensionInstalled", &[Value::from(name)]), "{:?}", monitor.signals());
    }
    symlink("../world.raw", store.join("recovery/hello.raw")).expect("link");
    assert!(
        monitor.wait_for("ExtensionEnabled", &[Value::from("world"), Value::from("recovery")]),
        "{:?}",
        monitor.signals()
    );
    let listed = rig.kairos_ext(&["list", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("list --json");
    let enabled = |name: &str| {
        listed.as_array().and_then(|all| all.iter().find(|e| e["name"] == name)).map(|e| e["enabled"].clone())
    };
    assert_eq!(enabled("world"), Some(serde_json::json!(["recovery"])), "{listed}");
    assert_eq!(enabled("hello"), Some(serde_json::json!([])), "{listed}");
    assert!(!monitor.saw("ExtensionEnabled", &[Value::from("hello")]), "{:?}", monitor.signals());
}

#[test]
fn the_service_exits_when_idle_and_comes_back_with_its_state() {
    if !privileged("the_service_exits_when_idle_and_comes_back_with_its_state") {
        return;
    }
    let mut rig = Rig::start(&[], "idle_exit_sec = 2\n");
    let image = hello(&rig);
    let out = rig.kairos_ext(&["install", image.to_str().expect("utf-8"), "--enable", "passive"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.service.wait_exit(Duration::from_secs(20)), Some(0), "the service must exit by itself when idle");
    let gone = rig.kairos_ext(&["status"]);
    assert!(!gone.status.success(), "nothing answers while it is gone");
    // Bus activation starts the binary again; here the test starts it the same way.
    let restarted = kairos_extensions_tests::system::Service::start(&rig.bus, &rig.ns, "idle_exit_sec = 0\n");
    rig.service = restarted;
    let listed = stdout(&rig.kairos_ext(&["list"]));
    assert!(listed.contains("hello") && listed.contains("passive"), "state survives a restart: {listed}");
}

#[test]
fn introspection_matches_the_xml_contract() {
    if !privileged("introspection_matches_the_xml_contract") {
        return;
    }
    let rig = Rig::start(&[], "idle_exit_sec = 0\nmax_image_size = \"4G\"\n");
    let image = hello(&rig);
    assert!(rig.kairos_ext(&["install", image.to_str().expect("utf-8")]).status.success());
    let big = rig.scratch.path().join("big.raw");
    fs::File::create(&big).and_then(|f| f.set_len(3 << 30)).expect("sparse file");
    let started = rig.probe(0, &["install-fd", big.to_str().expect("utf-8"), "read"]);
    let job = started["value"][1].as_str().expect("a job path").to_owned();

    let mut live = std::collections::BTreeSet::new();
    for path in ["/org/kairos/Extensions1", "/org/kairos/Extensions1/extension/hello", job.as_str()] {
        let out = rig
            .bus
            .command("busctl")
            .args(["--system", "--xml-interface", "introspect", "org.kairos.Extensions1", path])
            .output()
            .expect("busctl");
        assert!(out.status.success(), "introspecting {path}: {}", stderr(&out));
        live.extend(contract::members(&stdout(&out)));
    }
    let documented = contract::members(kairos_extensions_dbus::INTERFACE_XML);
    assert!(documented.len() > 40, "the contract parser found too little: {documented:?}");
    let missing: Vec<_> = documented.difference(&live).collect();
    let undocumented: Vec<_> = live.difference(&documented).collect();
    assert!(
        missing.is_empty() && undocumented.is_empty(),
        "documented but not exported: {missing:#?}\nexported but not documented: {undocumented:#?}"
    );
    let _ = rig.kairos_ext(&["cancel", &started["value"][0].to_string()]);
}

#[test]
fn the_bus_policy_lets_through_exactly_what_it_should() {
    if !privileged("the_bus_policy_lets_through_exactly_what_it_should") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let image = hello(&rig);
    assert!(rig.kairos_ext(&["install", image.to_str().expect("utf-8")]).status.success());
    let blocked_by_bus = |verdict: &Value| {
        error_name(verdict) == "org.freedesktop.DBus.Error.AccessDenied"
            && verdict["error"]["message"].as_str().unwrap_or("").contains("Rejected send message")
    };
    let manager = "/org/kairos/Extensions1";
    let extension = "/org/kairos/Extensions1/extension/hello";
    let mut reached = 0;
    for (interface, member) in contract::methods(kairos_extensions_dbus::INTERFACE_XML) {
        let path = match interface.as_str() {
            "org.kairos.Extensions1.Manager" => manager,
            "org.kairos.Extensions1.Extension" => extension,
            // Job objects come and go; the policy line is checked on a path with none.
            _ => "/org/kairos/Extensions1/job/999",
        };
        let verdict = rig.probe(NOBODY, &["call", path, &interface, &member]);
        assert!(!blocked_by_bus(&verdict), "the bus policy blocks {interface}.{member}: {verdict}");
        reached += 1;
    }
    assert!(reached >= 15, "only {reached} methods checked");
    for (interface, member) in [
        ("org.freedesktop.DBus.Introspectable", "Introspect"),
        ("org.freedesktop.DBus.Peer", "Ping"),
        ("org.freedesktop.DBus.Properties", "GetAll"),
        ("org.freedesktop.DBus.ObjectManager", "GetManagedObjects"),
    ] {
        let verdict = rig.probe(NOBODY, &["call", manager, interface, member]);
        assert!(!blocked_by_bus(&verdict), "{interface}.{member} must be open: {verdict}");
    }
    // Set reaches the service, which says every property is read-only.
    let verdict = rig.probe(NOBODY, &["set", manager, "org.kairos.Extensions1.Manager", "Version"]);
    assert_eq!(error_name(&verdict), "org.freedesktop.DBus.Error.PropertyReadOnly", "{verdict}");
    let verdict = rig.probe(NOBODY, &["set", manager, "org.kairos.Extensions1.Manager", "Colour"]);
    assert_eq!(error_name(&verdict), "org.freedesktop.DBus.Error.UnknownProperty", "{verdict}");
    // Nothing unknown passes the bus.
    let verdict = rig.probe(NOBODY, &["call", manager, "org.kairos.Extensions1.Manager", "Reboot"]);
    assert!(blocked_by_bus(&verdict), "an unknown method must be denied by the bus: {verdict}");
    let own = rig.probe(NOBODY, &["own"]);
    assert_eq!(error_name(&own), "org.freedesktop.DBus.Error.AccessDenied", "only root may own the name: {own}");
}

/// systemd cannot run as PID 1 here, so the `systemd-unit` backend is tested against a
/// stand-in for org.freedesktop.systemd1 on the private bus (src/bin/systemd1-standin.rs).
/// The stand-in does what systemd-sysext.service would: a real `systemd-sysext refresh`
/// in the service's namespace.
#[test]
fn the_systemd_unit_backend_restarts_systemd_sysext_service() {
    if !privileged("the_systemd_unit_backend_restarts_systemd_sysext_service") {
        return;
    }
    let bus = kairos_extensions_tests::system::SystemBus::start();
    let _polkit = kairos_extensions_tests::system::Polkit::start(&bus, &[]);
    let ns = kairos_extensions_tests::namespace::Namespace::new();
    let standin = kairos_extensions_tests::system::Systemd1Standin::start(&bus, &ns);
    let _service =
        kairos_extensions_tests::system::Service::start(&bus, &ns, "idle_exit_sec = 0\nrefresh = \"systemd-unit\"\n");
    let dir = tempfile::Builder::new().prefix("kx-unit-").tempdir().expect("scratch");
    let image = ImageBuilder::new("hello").command("hello-kx", "via the unit").build(dir.path(), "hello.raw");
    let out = bus
        .command(kairos_extensions_tests::bins::kairos_ext())
        .args(["install", image.to_str().expect("utf-8"), "--enable", "common", "--now"])
        .stdin(Stdio::null())
        .output()
        .expect("kairos-ext");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        standin
            .calls()
            .iter()
            .any(|c| c["call"] == "RestartUnit" && c["name"] == "systemd-sysext.service" && c["mode"] == "replace"),
        "{:?}",
        standin.calls()
    );
    assert_eq!(stdout(&ns.run("hello-kx", &[])).trim(), "via the unit");
}

#[test]
fn identical_installs_share_a_job_and_max_jobs_is_enforced() {
    if !privileged("identical_installs_share_a_job_and_max_jobs_is_enforced") {
        return;
    }
    let rig = Rig::start(&[], "idle_exit_sec = 0\nmax_jobs = 1\nmax_image_size = \"8G\"\n");
    // Large sparse files keep jobs busy long enough to overlap.
    let big = rig.scratch.path().join("big.raw");
    fs::File::create(&big).and_then(|f| f.set_len(6 << 30)).expect("sparse file");
    let source = format!("file://{}", big.display());
    let first = rig.probe(0, &["install", &source]);
    let second = rig.probe(0, &["install", &source]);
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(second["value"], first["value"], "the same install must share the running job");
    let other = rig.probe(0, &["install-fd", big.to_str().expect("utf-8"), "read"]);
    assert_eq!(other["ok"], true, "max_jobs = 1 queues other work (tests/queue.rs): {other}");
    assert_ne!(other["value"], first["value"], "other work is a job of its own");
    let id = first["value"][0].to_string();
    assert!(rig.kairos_ext(&["cancel", &id]).status.success());
}

/// A service whose configuration lets it pull from a fresh plain-HTTP registry.
fn rig_with_registry() -> (kairos_extensions_tests::registry::Registry, Rig) {
    let registry = kairos_extensions_tests::registry::Registry::start();
    let rig = Rig::start(&[], &format!("{QUICK}insecure_registries = [\"{}\"]\n", registry.host()));
    (registry, rig)
}

#[test]
fn a_registry_pull_can_be_canceled_mid_download() {
    if !privileged("a_registry_pull_can_be_canceled_mid_download") {
        return;
    }
    use kairos_extensions_tests::registry::{Layout, host_arch, tar};
    let (registry, rig) = rig_with_registry();
    // 96 MiB of noise in an uncompressed layer: long enough to be caught mid-way.
    let noise = kairos_extensions_tests::images::noise(96 << 20);
    let layer = tar(&[("big.raw", &noise)]);
    let dir = rig.scratch.path().join("layout");
    let mut layout = Layout::new(&dir);
    layout.image(host_arch(), &layer, "application/vnd.oci.image.layer.v1.tar", &layer);
    layout.finish("big");
    registry.push(&dir, "big", "big", false);

    let monitor = Monitor::start(&rig);
    let started = rig.probe(0, &["install", &format!("oci://{}/big:big", registry.host())]);
    let id = started["value"][0].as_u64().expect("job id");
    wait_until_downloading(&monitor);
    let asked = Instant::now();
    assert!(rig.kairos_ext(&["cancel", &id.to_string()]).status.success());
    assert!(monitor.wait_for("JobRemoved", &[Value::from(id)]), "{:?}", monitor.signals());
    assert_eq!(monitor.job_result(), "canceled", "{:?}", monitor.signals());
    eprintln!("canceled {:?} after the request", asked.elapsed());
    assert!(fs::read_dir(rig.ns.store().join(".tmp")).map(|d| d.count() == 0).unwrap_or(false), "staging is cleaned");
}

#[test]
fn a_pull_of_several_images_is_one_job_that_names_them_all() {
    if !privileged("a_pull_of_several_images_is_one_job_that_names_them_all") {
        return;
    }
    use kairos_extensions_tests::registry::{gzip_layer_layout, tar};
    let (registry, rig) = rig_with_registry();
    let image = |name: &str| fs::read(ImageBuilder::new(name).build(rig.scratch.path(), &format!("{name}.img")));
    let (k3s, tools) = (image("k3s").expect("k3s image"), image("tools").expect("tools image"));
    let dir = rig.scratch.path().join("layout");
    gzip_layer_layout(&dir, "v1", &tar(&[("k3s.raw", &k3s), ("tools.raw", &tools)]));
    registry.push(&dir, "v1", "bundle", false);

    let monitor = Monitor::start(&rig);
    let out = rig.kairos_ext(&["install", &format!("oci://{}/bundle:v1", registry.host())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Installed k3s (") && stdout(&out).contains("Installed tools ("), "{}", stdout(&out));
    for name in ["k3s", "tools"] {
        let path = Value::from(format!("/org/kairos/Extensions1/extension/{name}"));
        assert!(monitor.wait_for("ExtensionInstalled", &[Value::from(name), path]), "{:?}", monitor.signals());
    }
    assert_eq!(monitor.signals().iter().filter(|s| s["signal"] == "JobNew").count(), 1, "one pull, one job");
}

/// `kairos-ext install source` running in the background, its output collected.
fn spawn_install(rig: &Rig, source: &str) -> Child {
    rig.bus
        .command(kairos_extensions_tests::bins::kairos_ext())
        .args(["install", source])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kairos-ext runs")
}

/// Waits until the monitor has seen a job reach its download.
fn wait_until_downloading(monitor: &Monitor) {
    assert!(
        eventually(Duration::from_secs(20), || monitor
            .signals()
            .iter()
            .any(|s| s["signal"] == "PropertiesChanged" && s["args"][1]["Phase"] == "downloading")),
        "the job never started downloading: {:?}",
        monitor.signals()
    );
}

/// A registry-sized image served slowly over HTTP: the install takes seconds.
fn slow_install(rig: &Rig) -> kairos_extensions_tests::http::FileServer {
    use kairos_extensions_tests::http::{Behaviour, FileServer};
    let image = ImageBuilder::new("slow").noise(2 << 20).build(rig.scratch.path(), "slow.raw");
    FileServer::start_with(fs::read(image).expect("image bytes"), Behaviour::Trickle)
}

#[test]
fn a_job_outlives_the_client_that_started_it() {
    if !privileged("a_job_outlives_the_client_that_started_it") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let server = slow_install(&rig);
    let monitor = Monitor::start(&rig);
    // bus-probe returns once Install has replied: by then its connection is gone.
    let started = rig.probe(0, &["install", &server.url("slow.raw")]);
    let id = started["value"][0].as_u64().expect("job id");
    let jobs = rig.kairos_ext(&["jobs"]);
    assert!(
        stdout(&jobs).lines().any(|l| l.trim_start().starts_with(&format!("{id} ")) && l.contains("running")),
        "the job must still run after its client left: {}",
        stdout(&jobs)
    );
    assert!(
        eventually(Duration::from_secs(30), || monitor.saw("JobRemoved", &[Value::from(id)])),
        "the job never ended: {:?}",
        monitor.signals()
    );
    assert_eq!(monitor.job_result(), "done", "{:?}", monitor.signals());
    assert!(rig.ns.store().join("slow.raw").is_file(), "the image is installed");
}

#[test]
fn ctrl_c_in_kairos_ext_cancels_its_job() {
    if !privileged("ctrl_c_in_kairos_ext_cancels_its_job") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let server = slow_install(&rig);
    let monitor = Monitor::start(&rig);
    let before = rig.store_snapshot();
    let child = spawn_install(&rig, &server.url("slow.raw"));
    wait_until_downloading(&monitor);
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(interrupted.success());
    let out = child.wait_with_output().expect("kairos-ext ends");
    assert!(!out.status.success(), "a canceled install is a failure: {}", stdout(&out));
    assert!(stderr(&out).contains("canceled"), "{}", stderr(&out));
    assert!(monitor.wait_for("JobRemoved", &[]), "{:?}", monitor.signals());
    assert_eq!(monitor.job_result(), "canceled", "{:?}", monitor.signals());
    assert_eq!(rig.store_snapshot(), before, "a canceled install changes nothing");
}

#[test]
fn a_stopped_service_cancels_its_jobs_and_announces_their_end() {
    if !privileged("a_stopped_service_cancels_its_jobs_and_announces_their_end") {
        return;
    }
    let mut rig = Rig::start(&[], QUICK);
    let server = slow_install(&rig);
    let monitor = Monitor::start(&rig);
    let before = rig.store_snapshot();
    let started = rig.probe(0, &["install", &server.url("slow.raw")]);
    let id = started["value"][0].as_u64().expect("job id");
    wait_until_downloading(&monitor);
    rig.service.terminate();
    assert!(rig.service.wait_exit(Duration::from_secs(40)).is_some(), "the service must stop");
    assert!(monitor.wait_for("JobRemoved", &[Value::from(id)]), "the job's end is announced: {:?}", monitor.signals());
    assert_eq!(monitor.job_result(), "canceled", "{:?}", monitor.signals());
    assert_eq!(rig.store_snapshot(), before, "a job canceled by a stop changes nothing");
}

#[test]
fn kairos_ext_stops_waiting_when_the_service_dies_under_its_job() {
    if !privileged("kairos_ext_stops_waiting_when_the_service_dies_under_its_job") {
        return;
    }
    let mut rig = Rig::start(&[], QUICK);
    let server = slow_install(&rig);
    let monitor = Monitor::start(&rig);
    let mut child = spawn_install(&rig, &server.url("slow.raw"));
    wait_until_downloading(&monitor);
    rig.service.kill();
    // Bounded only so that a hang fails the test instead of the whole suite.
    if !eventually(Duration::from_secs(30), || matches!(child.try_wait(), Ok(Some(_)))) {
        let _ = child.kill();
        panic!("kairos-ext kept waiting for a job whose service is gone");
    }
    let out = child.wait_with_output().expect("kairos-ext ends");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("the service stopped while job"), "{}", stderr(&out));
}

#[test]
fn job_progress_is_announced_at_most_four_times_a_second() {
    if !privileged("job_progress_is_announced_at_most_four_times_a_second") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let server = slow_install(&rig);
    let monitor = Monitor::start(&rig);
    let started_at = Instant::now();
    let started = rig.probe(0, &["install", &server.url("slow.raw")]);
    let id = started["value"][0].as_u64().expect("job id");
    let path = started["value"][1].as_str().expect("job path").to_owned();
    assert!(
        eventually(Duration::from_secs(30), || monitor.saw("JobRemoved", &[Value::from(id)])),
        "the job never ended"
    );
    // The wall time from before the call to after the end is longer than the job ran,
    // so the allowance errs on the side of the service.
    let seconds = started_at.elapsed().as_secs_f64();
    let announced = monitor
        .signals()
        .iter()
        .filter(|s| s["signal"] == "PropertiesChanged" && s["path"] == path.as_str())
        .filter(|s| !s["args"][1]["BytesDone"].is_null())
        .count();
    // The service may announce once when the ticker starts, once per 250 ms after, and
    // once when the job ends. 2 MiB arrive in 32 pieces of 64 KiB or more reads:
    // unthrottled, that is one announcement each, above the allowance.
    let allowed = (seconds * 4.0).ceil() as usize + 2;
    // Rate limiting coalesces changes but must not lose them: the state and phase the
    // worker set before the ticker's first tick are announced too.
    for (property, value) in [("State", "running"), ("Phase", "downloading")] {
        assert!(
            monitor.signals().iter().any(|s| s["signal"] == "PropertiesChanged"
                && s["path"] == path.as_str()
                && s["args"][1][property] == value),
            "{property} {value} was never announced: {:?}",
            monitor.signals()
        );
    }
    assert!(announced >= 2, "progress must be announced while downloading: {announced}");
    assert!(announced <= allowed, "{announced} progress announcements in {seconds:.1} s (allowed {allowed})");
    eprintln!("{announced} progress announcements in {seconds:.1} s");
}

#[test]
fn install_draws_a_progress_bar_on_a_terminal_and_phase_lines_otherwise() {
    if !privileged("install_draws_a_progress_bar_on_a_terminal_and_phase_lines_otherwise") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let server = slow_install(&rig);
    // script(1) gives kairos-ext a real pseudo-terminal and copies what it draws.
    let kx = kairos_extensions_tests::bins::kairos_ext();
    let line = format!("{} install {} --replace", kx.display(), server.url("slow.raw"));
    let out = rig
        .bus
        .command("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("COLUMNS", "120")
        .stdin(Stdio::null())
        .output()
        .expect("script runs (Debian package bsdutils)");
    let drawn = stdout(&out);
    assert!(out.status.success(), "install on a terminal failed: {drawn}");
    for part in ["downloading", "ETA", "/s", "MiB"] {
        assert!(drawn.contains(part), "the bar shows no {part:?}: {drawn:?}");
    }
    assert!(drawn.contains("\r\u{1b}[2K"), "a bar redraws in place: {drawn:?}");
    assert!(!drawn.contains("\u{1b}[1A"), "the bar fits the terminal's width, so it never wraps: {drawn:?}");

    let out = rig.kairos_ext(&["install", &server.url("slow.raw"), "--replace"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stderr(&out);
    assert!(lines.lines().any(|l| l == "downloading"), "one plain line per phase: {lines:?}");
    assert!(!lines.contains('\r') && !lines.contains('\u{1b}'), "no drawing without a terminal: {lines:?}");
}
