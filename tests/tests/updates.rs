//! Keeping extensions current, end to end with real components: a registry tag that
//! moves, checked, updated with `--now` (the new binary answers) and rolled back (the
//! old one answers again), with the signals and property changes a client sees; a
//! digest-pinned install that never updates; HTTP sources checked by ETag, by
//! Last-Modified, and not at all without either; and updates whose new image is
//! incompatible or does not verify, which change nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Output;

use kairos_extensions_tests::http::{ChangingServer, Validator};
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::Monitor;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{Registry, gzip, gzip_layer_layout, tar};
use kairos_extensions_tests::system::Rig;
use kairos_extensions_tests::{bins, privileged, stderr, stdout};
use serde_json::{Value, json};

const EXTENSION: &str = "/org/kairos/Extensions1/extension/hello";

/// A squashfs `hello` of `version` whose `/usr/bin/hello-kx` prints `v<version>`.
fn hello(dir: &std::path::Path, version: &str, release: Option<&str>) -> Vec<u8> {
    let release = release.map(str::to_owned).unwrap_or_else(|| format!("ID=_any\nSYSEXT_VERSION_ID={version}\n"));
    let image = ImageBuilder::new("hello")
        .release(&release)
        .command("hello-kx", &format!("v{version}"))
        .build(dir, &format!("hello-{version}.img"));
    fs::read(image).expect("image bytes")
}

/// Pushes `image` as `hello:tag`; returns the manifest digest and the layer digest.
fn push(registry: &Registry, dir: &std::path::Path, tag: &str, image: &[u8]) -> (String, String) {
    let layout = tempfile::tempdir_in(dir).expect("layout dir");
    let digests = gzip_layer_layout(layout.path(), tag, &tar(&[("hello.raw", image)]));
    registry.push(layout.path(), tag, "hello", false);
    digests
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// An Extension property read fresh over the bus, as busctl prints it (`b true`).
fn property(rig: &Rig, name: &str) -> String {
    let out = rig
        .bus
        .command("busctl")
        .args([
            "--system",
            "get-property",
            "org.kairos.Extensions1",
            EXTENSION,
            "org.kairos.Extensions1.Extension",
            name,
        ])
        .output()
        .expect("busctl");
    ok(out, name).trim().to_owned()
}

/// Stops the service as systemd would and starts it again, as bus activation would.
fn restart(rig: &mut Rig) {
    rig.service.terminate();
    assert_eq!(rig.service.wait_exit(std::time::Duration::from_secs(20)), Some(0), "the service stops");
    rig.service.spawn(&rig.bus, &rig.ns);
}

fn updated_signal(monitor: &Monitor, old: &str, new: &str) -> bool {
    monitor.wait_for("ExtensionUpdated", &[json!("hello"), json!(old), json!(new)])
}

#[test]
fn a_moved_tag_is_checked_updated_now_and_rolled_back_with_signals() {
    if !privileged("a_moved_tag_is_checked_updated_now_and_rolled_back_with_signals") {
        return;
    }
    let registry = Registry::start();
    let mut rig = Rig::start(&[], &format!("idle_exit_sec = 0\ninsecure_registries = [\"{}\"]\n", registry.host()));
    let scratch = tempfile::Builder::new().prefix("kx-updates-").tempdir().expect("scratch");
    let dir = scratch.path();
    push(&registry, dir, "latest", &hello(dir, "1", None));
    let source = format!("oci://{}/hello:latest", registry.host());
    ok(rig.kairos_ext(&["install", &source, "--enable", "common", "--now"]), "install");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "v1");

    // Nothing newer yet.
    let said = ok(rig.kairos_ext(&["check"]), "check");
    assert!(said.contains("hello") && said.contains("up to date"), "{said}");
    assert_eq!(property(&rig, "UpdateAvailable"), "b false");
    assert_eq!(property(&rig, "UpdateCheck"), "s \"ok\"");
    assert_ne!(property(&rig, "CheckedTime"), "t 0", "the check time is kept");

    let monitor = Monitor::start(&rig);
    let (v2_manifest, _) = push(&registry, dir, "latest", &hello(dir, "2", None));
    let said = ok(rig.kairos_ext(&["check", "hello"]), "check hello");
    assert!(said.contains("newer image"), "{said}");
    let changed = monitor.wait_for_change(EXTENSION, "UpdateAvailable", |v| *v == json!(true));
    let changed = changed.expect("UpdateAvailable announced with PropertiesChanged");
    assert_eq!(changed["AvailableSource"], json!(format!("{source}@{v2_manifest}")));
    assert_eq!(property(&rig, "UpdateAvailable"), "b true");
    assert!(
        monitor.removed().iter().any(|(_, result)| result == "done"),
        "the check is a job: {:?}",
        monitor.removed()
    );
    let listed = ok(rig.kairos_ext(&["list"]), "list");
    assert!(listed.contains("Updates available: hello"), "{listed}");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "v1", "a check changes nothing");

    // Describe carries the update properties, and inspect says them.
    let described: Value =
        serde_json::from_str(&ok(rig.kairos_ext(&["inspect", "hello", "--json"]), "inspect")).expect("inspect --json");
    assert_eq!(described["updates"]["update_available"], json!(true), "{described}");
    assert_eq!(described["updates"]["available_source"], json!(format!("{source}@{v2_manifest}")));
    let said = ok(rig.kairos_ext(&["inspect", "hello"]), "inspect");
    assert!(said.contains(&format!("Update:     a newer image: {source}@{v2_manifest} (checked ")), "{said}");

    // What the check found outlives the service, which exits when idle.
    restart(&mut rig);
    assert_eq!(property(&rig, "UpdateAvailable"), "b true", "the check is remembered across a restart");
    let offline = rig.ns.command(bins::kairos_ext()).args(["--root", "/", "inspect", "hello", "--json"]).output();
    let offline: Value = serde_json::from_slice(&offline.expect("runs").stdout).expect("offline inspect --json");
    assert_eq!(offline["updates"], described["updates"], "offline mode reads the same remembered check");
    assert!(ok(rig.kairos_ext(&["list"]), "list").contains("Updates available: hello"));

    // A version is for catalog installs only: refused at once, and nothing changes.
    let out = rig.kairos_ext(&["update", "hello@2"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("not a catalog install"), "{}", stderr(&out));
    assert_eq!(property(&rig, "Version"), "s \"1\"");

    // Update --now: the new binary answers, the old image is the previous version.
    let said = ok(rig.kairos_ext(&["update", "hello", "--now"]), "update");
    assert!(said.contains("Updated hello from 1 to 2"), "{said}");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "v2");
    assert!(updated_signal(&monitor, "1", "2"), "ExtensionUpdated(hello, 1, 2): {:?}", monitor.signals());
    assert!(monitor.wait_for_change(EXTENSION, "PreviousVersion", |v| *v == json!("1")).is_some());
    assert!(monitor.wait_for("Refreshed", &[]), "an update --now refreshes");
    assert_eq!(property(&rig, "UpdateAvailable"), "b false");
    assert_eq!(property(&rig, "Version"), "s \"2\"");
    assert_eq!(property(&rig, "EnabledBootStates"), "as 1 \"common\"", "enabled states are kept");
    restart(&mut rig);
    assert_eq!(property(&rig, "UpdateAvailable"), "b false", "a check of the image replaced is no longer true");
    assert_eq!(property(&rig, "PreviousVersion"), "s \"1\"");
    let monitor = Monitor::start(&rig);

    // The previous version is invisible to the store listing, kairos-agent and systemd.
    let store = rig.ns.store();
    assert!(store.join(".previous/hello.raw").is_file() && store.join(".previous/hello.json").is_file());
    let top: Vec<String> = fs::read_dir(&store)
        .expect("store")
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|f| f.ends_with(".raw"))
        .collect();
    assert_eq!(top, ["hello.raw"], "kairos-agent reads *.raw at the top of the store");
    let listed = ok(rig.kairos_ext(&["list", "--json"]), "list --json");
    let listed: Vec<Value> = serde_json::from_str(&listed).expect("json");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(rig.ns.merged(), ["hello"], "systemd-sysext merges hello once");
    let status = stdout(&rig.ns.run("systemd-sysext", &["list"]));
    assert!(!status.contains(".previous"), "{status}");

    // Rollback --now: the old binary answers again, and the new one is the previous.
    let said = ok(rig.kairos_ext(&["rollback", "hello", "--now"]), "rollback");
    assert!(said.contains("Rolled back hello from 2 to 1"), "{said}");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "v1");
    assert!(updated_signal(&monitor, "2", "1"), "ExtensionUpdated(hello, 2, 1): {:?}", monitor.signals());
    assert!(monitor.wait_for_change(EXTENSION, "PreviousVersion", |v| *v == json!("2")).is_some());
    assert_eq!(property(&rig, "Version"), "s \"1\"");

    // The tag still points at v2: a check says so again; a second rollback swaps back.
    let said = ok(rig.kairos_ext(&["check"]), "check after rollback");
    assert!(said.contains("newer image"), "{said}");
    let quiet = rig.kairos_ext(&["-q", "rollback", "hello", "--now"]);
    assert_eq!(ok(quiet, "second rollback, -q"), "", "-q leaves out the confirmation");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "v2");
    // Nothing newer than v2: -q says nothing, neither progress nor "not updated".
    let quiet = rig.kairos_ext(&["-q", "update", "hello"]);
    assert_eq!((stdout(&quiet).as_str(), stderr(&quiet).as_str()), ("", ""), "update -q");
    assert!(quiet.status.success());

    // What the timer runs: with no configuration, auto_update is "check".
    let said = ok(rig.kairos_ext(&["check", "--auto", "--no-ask-password"]), "check --auto");
    assert_eq!(said.trim(), "hello 2: up to date", "one line per extension for the journal");

    // Removing the extension removes its previous version too.
    ok(rig.kairos_ext(&["remove", "hello", "--now"]), "remove");
    assert!(!store.join(".previous/hello.raw").exists() && !store.join(".previous/hello.json").exists());
    let out = rig.kairos_ext(&["rollback", "hello"]);
    assert!(!out.status.success(), "nothing to roll back once removed");
}

/// `kairos-ext --root /` in a private namespace, with a configuration.
struct Offline {
    ns: Namespace,
    scratch: tempfile::TempDir,
    config: PathBuf,
}

impl Offline {
    fn new(config: &str) -> Self {
        let scratch = tempfile::Builder::new().prefix("kx-updates-").tempdir().expect("scratch");
        let path = scratch.path().join("extensions.toml");
        fs::write(&path, config).expect("config");
        Self { ns: Namespace::new(), scratch, config: path }
    }

    fn kx(&self, args: &[&str]) -> Output {
        self.ns
            .command(bins::kairos_ext())
            .args(["--root", "/", "--config"])
            .arg(&self.config)
            .args(args)
            .output()
            .expect("kairos-ext runs")
    }

    fn store(&self) -> BTreeMap<PathBuf, String> {
        self.ns.snapshot("/var/lib/kairos/extensions/")
    }
}

#[test]
fn a_digest_pinned_install_reports_pinned_and_never_updates() {
    if !privileged("a_digest_pinned_install_reports_pinned_and_never_updates") {
        return;
    }
    let registry = Registry::start();
    let offline = Offline::new(&format!("insecure_registries = [\"{}\"]\n", registry.host()));
    let dir = offline.scratch.path();
    let (v1, _) = push(&registry, dir, "latest", &hello(dir, "1", None));
    let pinned = format!("oci://{}/hello:latest@{v1}", registry.host());
    ok(offline.kx(&["install", &pinned, "--enable", "common", "--now"]), "install pinned");
    push(&registry, dir, "latest", &hello(dir, "2", None));
    let said = ok(offline.kx(&["check", "--json"]), "check");
    let rows: Vec<Value> = serde_json::from_str(&said).expect("json");
    assert_eq!(rows[0]["check"], "pinned", "{said}");
    assert_eq!(rows[0]["update_available"], false, "{said}");
    let before = offline.store();
    let out = offline.kx(&["update", "hello@2"]);
    assert!(!out.status.success() && stderr(&out).contains("not a catalog install"), "{}", stderr(&out));
    let said = ok(offline.kx(&["update", "hello", "--now"]), "update pinned");
    assert!(said.contains("hello: not updated: pinned"), "{said}");
    assert_eq!(ok(offline.kx(&["-q", "update", "hello"]), "update -q"), "", "-q says nothing offline too");
    assert_eq!(offline.store(), before, "nothing changes");
    assert_eq!(stdout(&offline.ns.run("hello-kx", &[])).trim(), "v1");
    let out = offline.kx(&["rollback", "hello"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("hello has no previous version to roll back to"), "{}", stderr(&out));
    assert_eq!(offline.store(), before, "nothing changes");
}

#[test]
fn http_sources_are_checked_by_etag_or_last_modified_and_said_to_be_uncheckable_without() {
    if !privileged("http_sources_are_checked_by_etag_or_last_modified_and_said_to_be_uncheckable_without") {
        return;
    }
    for validator in [Validator::ETag, Validator::LastModified, Validator::Neither] {
        let offline = Offline::new("");
        let dir = offline.scratch.path();
        let server = ChangingServer::start(hello(dir, "1", None), validator);
        let url = server.url("hello.raw");
        ok(offline.kx(&["install", &url, "--enable", "common"]), "install over http");
        let record = fs::read_to_string(offline.ns.store().join(".meta/hello.json")).expect("record");
        let context = format!("{validator:?}");
        match validator {
            Validator::ETag => assert!(record.contains("\"etag\": \"\\\"v1\\\"\""), "{context}: {record}"),
            Validator::LastModified => assert!(record.contains("\"last_modified\""), "{context}: {record}"),
            Validator::Neither => assert!(!record.contains("validators"), "{context}: {record}"),
        }
        let said = ok(offline.kx(&["check"]), "check");
        let expected = if validator == Validator::Neither { "cannot check" } else { "up to date" };
        assert!(said.contains(expected), "{context}: {said}");

        server.replace(hello(dir, "2", None));
        let said = ok(offline.kx(&["check"]), "check after the change");
        let expected = if validator == Validator::Neither { "cannot check" } else { "newer image" };
        assert!(said.contains(expected), "{context}: {said}");
        let said = ok(offline.kx(&["update", "--all"]), "update --all");
        if validator == Validator::Neither {
            assert!(said.contains("No updates to apply"), "{context}: {said}");
            let said = ok(offline.kx(&["update", "hello"]), "update hello");
            assert!(said.contains("hello: not updated: cannot tell"), "{context}: {said}");
            assert!(!offline.ns.store().join(".previous/hello.raw").exists());
        } else {
            assert!(said.contains("Updated hello from 1 to 2"), "{context}: {said}");
            let said = ok(offline.kx(&["check"]), "check after the update");
            assert!(said.contains("up to date"), "{context}: the new validator is recorded: {said}");
        }
    }
}

#[test]
fn an_update_whose_image_is_incompatible_or_does_not_verify_changes_nothing() {
    if !privileged("an_update_whose_image_is_incompatible_or_does_not_verify_changes_nothing") {
        return;
    }
    let registry = Registry::start();
    let offline = Offline::new(&format!("insecure_registries = [\"{}\"]\n", registry.host()));
    let dir = offline.scratch.path();
    push(&registry, dir, "latest", &hello(dir, "1", None));
    let source = format!("oci://{}/hello:latest", registry.host());
    ok(offline.kx(&["install", &source, "--enable", "common", "--now"]), "install");
    let before = offline.store();

    // v2 for another operating system.
    push(&registry, dir, "latest", &hello(dir, "2", Some("ID=no-such-os\nSYSEXT_VERSION_ID=2\n")));
    let out = offline.kx(&["update", "hello", "--now"]);
    assert!(!out.status.success(), "an incompatible update must fail: {}", stdout(&out));
    assert!(stderr(&out).contains("not compatible"), "{}", stderr(&out));
    assert_eq!(offline.store(), before, "an incompatible update changes nothing");
    assert_eq!(stdout(&offline.ns.run("hello-kx", &[])).trim(), "v1");

    // v3, whose layer the registry then serves replaced by a well-formed layer of
    // other content: only the layer's digest can tell.
    let (_, layer) = push(&registry, dir, "latest", &hello(dir, "3", None));
    let other = gzip(&tar(&[("hello.raw", &hello(dir, "4", None))]));
    fs::write(registry.blob_path(&layer), other).expect("tamper");
    let out = offline.kx(&["update", "hello", "--now"]);
    assert!(!out.status.success(), "an update that does not verify must fail: {}", stdout(&out));
    assert!(stderr(&out).contains(&format!("layer {layer}: ")), "{}", stderr(&out));
    assert_eq!(offline.store(), before, "an update that does not verify changes nothing");
    assert_eq!(stdout(&offline.ns.run("hello-kx", &[])).trim(), "v1");
    assert!(!offline.ns.store().join(".previous").join("hello.raw").exists());
}

#[test]
fn check_auto_does_what_auto_update_says() {
    if !privileged("check_auto_does_what_auto_update_says") {
        return;
    }
    let registry = Registry::start();
    let insecure = format!("insecure_registries = [\"{}\"]\n", registry.host());
    let offline = Offline::new(&format!("{insecure}auto_update = \"off\"\n"));
    let dir = offline.scratch.path();
    push(&registry, dir, "latest", &hello(dir, "1", None));
    let source = format!("oci://{}/hello:latest", registry.host());
    ok(offline.kx(&["install", &source, "--enable", "common", "--now"]), "install");
    push(&registry, dir, "latest", &hello(dir, "2", None));

    let said = ok(offline.kx(&["check", "--auto"]), "check --auto, off");
    assert_eq!(said.trim(), "auto_update is off: nothing to do");

    fs::write(&offline.config, format!("{insecure}auto_update = \"check\"\n")).expect("config");
    let said = ok(offline.kx(&["check", "--auto"]), "check --auto, check");
    assert!(said.starts_with("hello 1: update available (oci://"), "{said}");
    assert!(!said.contains("Updated"), "check only checks: {said}");
    assert_eq!(stdout(&offline.ns.run("hello-kx", &[])).trim(), "v1");

    fs::write(&offline.config, format!("{insecure}auto_update = \"apply\"\nauto_update_now = true\n")).expect("config");
    let said = ok(offline.kx(&["check", "--auto"]), "check --auto, apply");
    assert!(said.contains("Updated hello from 1 to 2"), "{said}");
    assert_eq!(stdout(&offline.ns.run("hello-kx", &[])).trim(), "v2", "auto_update_now merges it");
    let said = ok(offline.kx(&["check", "--auto"]), "check --auto, nothing new");
    assert!(said.contains("hello 2: up to date") && said.contains("No updates to apply."), "{said}");
}

/// polkit fills each `$(key)` of an action's message from the details the service passes,
/// with nothing for an empty or absent one. The prompt must read as a sentence then too:
/// an install that does not pick the name, a check of every extension, an update of none.
#[test]
fn polkit_prompts_read_as_sentences_with_empty_details() {
    let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../polkit/org.kairos.Extensions1.policy");
    let policy = fs::read_to_string(policy).expect("the policy");
    let (source, sources) = ("oci://registry.example/k3s:v1", "oci://registry.example/k3s:v1, fd:/root/tools.raw");
    // (name, source) as each action gets them.
    let details: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::from([
        ("install", vec![("", source), ("k3s", source), ("", "fd:/root/k3s.raw")]),
        ("manage", vec![("k3s", "")]),
        ("remove", vec![("k3s", "")]),
        ("check", vec![("", ""), ("k3s", source), ("k3s, tools", sources)]),
        ("update", vec![("", ""), ("k3s", source), ("k3s, tools", sources)]),
    ]);
    let mut seen = 0;
    for action in policy.split("<action id=\"org.kairos.extensions1.").skip(1) {
        let id = action.split('"').next().unwrap_or_default();
        let message = action.split("<message>").nth(1).and_then(|m| m.split("</message>").next()).expect("a message");
        for (name, source) in details.get(id).unwrap_or_else(|| panic!("an action the test does not know: {id}")) {
            let filled = message.replace("$(name)", name).replace("$(source)", source).replace("$(job)", "");
            let words = filled.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(!words.contains("$("), "{id}: a detail the service never passes: {message}");
            for flaw in ["()", "( ", " )", " ,", " .", "from or"] {
                assert!(!words.contains(flaw), "{id} with name {name:?}, source {source:?} reads {words:?}");
            }
        }
        seen += 1;
    }
    assert_eq!(seen, details.len(), "every action has a message");
}

/// polkit decides check and update apart, and sees the extension's name and source.
#[test]
fn check_and_update_are_separate_polkit_actions_with_name_and_source() {
    if !privileged("check_and_update_are_separate_polkit_actions_with_name_and_source") {
        return;
    }
    let rule = r#"polkit.addRule(function(action, subject) {
    if (subject.user == "nobody" && action.id == "org.kairos.extensions1.check" &&
        action.lookup("name") == "hello" && action.lookup("source").indexOf("fd:") == 0) {
        return polkit.Result.YES;
    }
});"#;
    let rig = Rig::start(&[rule], "idle_exit_sec = 0\n");
    let image = rig.scratch.path().join("hello.raw");
    fs::write(&image, hello(rig.scratch.path(), "1", None)).expect("image");
    fs::set_permissions(&image, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("mode");
    ok(rig.kairos_ext(&["install", image.to_str().expect("utf-8")]), "install");

    let said = ok(rig.kairos_ext_as_nobody(&["check", "hello", "--no-ask-password"]), "check hello as nobody");
    assert!(said.contains("local file"), "{said}");
    assert_eq!(property(&rig, "UpdateCheck"), "s \"local\"");
    // Without a name the details name none, and the rule does not answer.
    let out = rig.kairos_ext_as_nobody(&["check", "--no-ask-password"]);
    assert!(!out.status.success(), "check of everything as nobody: {}", stdout(&out));
    for args in [&["update", "hello", "--no-ask-password"][..], &["rollback", "hello", "--no-ask-password"]] {
        let out = rig.kairos_ext_as_nobody(args);
        assert!(!out.status.success(), "{args:?} as nobody: {}", stdout(&out));
        assert!(stderr(&out).contains("org.kairos.extensions1.update"), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(property(&rig, "Version"), "s \"1\"");
}
