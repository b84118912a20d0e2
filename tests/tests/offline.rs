//! `kairos-ext --root DIR`: the engine without a bus, on a live system (`--root /` in a
//! private mount namespace, where systemd-sysext really merges) and on an image root.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Output;

use kairos_extensions_tests::bins;
use kairos_extensions_tests::images::{ImageBuilder, junk};
use kairos_extensions_tests::namespace::{Namespace, on_host};
use kairos_extensions_tests::{privileged, stderr, stdout};
use serde_json::Value;

/// Runs `kairos-ext --root / args...` inside the namespace.
fn live(ns: &Namespace, args: &[&str]) -> Output {
    ns.command(bins::kairos_ext()).args(["--root", "/"]).args(args).output().expect("kairos-ext runs")
}

/// Runs `kairos-ext --root <root> args...` on the host.
fn offline(root: &Path, args: &[&str]) -> Output {
    std::process::Command::new(bins::kairos_ext()).arg("--root").arg(root).args(args).output().expect("kairos-ext runs")
}

fn list_json(output: &Output) -> Vec<Value> {
    assert!(output.status.success(), "list failed: {}", stderr(output));
    serde_json::from_slice::<Vec<Value>>(&output.stdout).expect("list --json prints a JSON array")
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(dir).map(|p| p.display().to_string()).unwrap_or_default();
            if rel == ".lock" {
                continue;
            }
            let link = fs::read_link(&path).map(|t| format!(" -> {}", t.display())).unwrap_or_default();
            out.push(format!("{rel}{link}"));
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("kx-offline-").tempdir().expect("scratch dir")
}

fn hello(dir: &Path) -> String {
    ImageBuilder::new("hello")
        .release("ID=_any\nSYSEXT_VERSION_ID=1.0\n")
        .command("hello-kx", "merged for real")
        .build(dir, "hello.raw")
        .display()
        .to_string()
}

#[test]
fn live_cycle_install_enable_now_disable_remove() {
    if !privileged("live_cycle_install_enable_now_disable_remove") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = hello(dir.path());

    let out = live(&ns, &["install", &image, "--enable", "common", "--now"]);
    assert!(out.status.success(), "install: {}", stderr(&out));
    assert_eq!(stdout(&ns.run("hello-kx", &[])).trim(), "merged for real");
    assert!(!on_host("/usr/bin/hello-kx"), "the host must not see the merge");
    let listed = list_json(&live(&ns, &["list", "--json"]));
    assert_eq!(listed.len(), 1);
    let ext = &listed[0];
    assert_eq!(ext["name"], "hello");
    assert_eq!(ext["version"], "1.0");
    assert_eq!(ext["enabled"], serde_json::json!(["common"]));
    assert_eq!(ext["merged"], true);
    assert_eq!(ext["source"], format!("file://{image}"));
    assert!(ext["digest"].as_str().is_some_and(|d| d.starts_with("sha256:") && d.len() == 71));
    assert_eq!(ext["size"], fs::metadata(&image).expect("image").len());
    assert_eq!(fs::read_link(ns.store().join("common/hello.raw")).expect("enablement link"), Path::new("../hello.raw"));

    let again = live(&ns, &["enable", "hello", "--common", "--now"]);
    assert!(again.status.success() && stdout(&again).contains("Already enabled"), "{}", stdout(&again));

    let out = live(&ns, &["disable", "hello", "--common", "--now"]);
    assert!(out.status.success(), "disable: {}", stderr(&out));
    assert!(!ns.exists("/usr/bin/hello-kx"));
    assert!(ns.merged().is_empty());

    let out = live(&ns, &["remove", "hello"]);
    assert!(out.status.success(), "remove: {}", stderr(&out));
    assert!(list_json(&live(&ns, &["list", "--json"])).is_empty());
    assert!(!ns.store().join("hello.raw").exists());
    assert!(!ns.store().join(".meta/hello.json").exists());
}

#[test]
fn reinstall_needs_replace_and_replace_keeps_enablement() {
    if !privileged("reinstall_needs_replace_and_replace_keeps_enablement") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = hello(dir.path());
    assert!(live(&ns, &["install", &image, "--enable", "passive"]).status.success());
    let out = live(&ns, &["install", &image]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already installed"), "{}", stderr(&out));
    let newer = ImageBuilder::new("hello").release("ID=_any\nSYSEXT_VERSION_ID=2.0\n").build(dir.path(), "hello2.raw");
    let out = live(&ns, &["install", newer.to_str().expect("utf-8"), "--replace"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ext = &list_json(&live(&ns, &["list", "--json"]))[0];
    assert_eq!(ext["version"], "2.0");
    assert_eq!(ext["enabled"], serde_json::json!(["passive"]));
}

#[test]
fn an_incompatible_image_is_refused_naming_the_field() {
    if !privileged("an_incompatible_image_is_refused_naming_the_field") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    assert!(live(&ns, &["refresh"]).status.success(), "the first writing start lays out the store");
    let before = tree(&ns.store());
    let image = ImageBuilder::new("fed").release("ID=fedora\nVERSION_ID=40\n").build(dir.path(), "fed.raw");
    let out = live(&ns, &["install", image.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ID=\"fedora\" does not match the host's ID="), "{}", stderr(&out));
    assert_eq!(tree(&ns.store()), before, "a refused image must leave the store as it was");
    assert!(tree(&ns.store().join(".tmp")).is_empty());
}

#[test]
fn a_merge_that_fails_is_reported_and_rolled_back() {
    if !privileged("a_merge_that_fails_is_reported_and_rolled_back") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = hello(dir.path());
    assert!(live(&ns, &["install", &image]).status.success());
    // Someone else drops a broken image into /run/extensions; systemd-sysext 252 then
    // fails the whole refresh.
    junk(&ns.host_path("/run/extensions/"), "junk.raw", 100_000);
    let out = live(&ns, &["enable", "hello", "--common", "--now"]);
    assert!(!out.status.success(), "a failed merge must not look like success");
    let message = stderr(&out);
    assert!(message.contains("\"hello\" did not merge"), "{message}");
    assert!(message.contains("junk"), "the reason should quote systemd-sysext: {message}");
    assert!(!ns.host_path("/run/extensions/hello.raw").exists(), "the activation must be rolled back");
    assert!(!ns.store().join("common/hello.raw").exists(), "the enablement must be rolled back");

    let out = live(&ns, &["refresh"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"junk\""), "refresh must name what did not merge: {}", stderr(&out));
}

#[test]
fn an_install_whose_merge_fails_changes_nothing() {
    if !privileged("an_install_whose_merge_fails_changes_nothing") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    assert!(live(&ns, &["install", &hello(dir.path()), "--enable", "common"]).status.success());
    let newer = ImageBuilder::new("hello")
        .release("ID=_any\nSYSEXT_VERSION_ID=2.0\n")
        .command("hello-kx", "the newer one")
        .build(dir.path(), "hello-2.raw");
    let other = ImageBuilder::new("other").build(dir.path(), "other.raw");
    // A broken image in /run/extensions makes systemd-sysext 252 fail every refresh.
    junk(&ns.host_path("/run/extensions/"), "junk.raw", 100_000);
    let (store, runtime) = ("/var/lib/kairos/extensions/", "/run/extensions/");
    let before = (ns.snapshot(store), ns.snapshot(runtime));
    for (what, image) in [("a replacement", &newer), ("a new image", &other)] {
        let image = image.to_str().expect("utf-8 path");
        let out = live(&ns, &["install", image, "--replace", "--enable", "common", "--enable", "active", "--now"]);
        assert!(!out.status.success(), "{what}: a failed merge must fail the install");
        assert!(stderr(&out).contains("did not merge"), "{what}: {}", stderr(&out));
        assert_eq!((ns.snapshot(store), ns.snapshot(runtime)), before, "{what} changed the store");
    }
}

#[test]
fn leftovers_of_a_crashed_install_are_invisible_and_cleaned() {
    if !privileged("leftovers_of_a_crashed_install_are_invisible_and_cleaned") {
        return;
    }
    let ns = Namespace::new();
    assert!(live(&ns, &["refresh"]).status.success());
    let staged = ns.store().join(".tmp/stage-crashed");
    fs::write(&staged, b"half an image").expect("leftover");
    let listed = list_json(&live(&ns, &["list", "--json"]));
    assert!(listed.is_empty(), "a staged file is never an extension: {listed:?}");
    assert!(staged.exists(), "reading writes nothing, so it leaves staging alone");
    assert!(live(&ns, &["refresh"]).status.success());
    assert!(!staged.exists(), "the next writing start must remove the leftover");
}

#[test]
fn an_image_root_is_prepared_with_relative_links_and_never_merged() {
    if !privileged("an_image_root_is_prepared_with_relative_links_and_never_merged") {
        return;
    }
    let root = scratch();
    fs::create_dir_all(root.path().join("etc")).expect("etc");
    fs::copy("/etc/os-release", root.path().join("etc/os-release")).expect("os-release");
    let dir = scratch();
    let image = hello(dir.path());
    let out = offline(root.path(), &["install", &image, "--enable", "active"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let store = root.path().join("var/lib/kairos/extensions");
    assert!(store.join("hello.raw").is_file());
    assert_eq!(fs::read_link(store.join("active/hello.raw")).expect("link"), Path::new("../hello.raw"));
    let listed = list_json(&offline(root.path(), &["list", "--json"]));
    assert_eq!(listed[0]["enabled"], serde_json::json!(["active"]));
    assert_eq!(listed[0]["merged"], false);

    let before = tree(&store);
    let out = offline(root.path(), &["enable", "hello", "--common", "--now"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--now acts on the running system"), "{}", stderr(&out));
    assert_eq!(tree(&store), before, "a refused --now changes nothing");
    assert!(!root.path().join("run/extensions/hello.raw").exists());
}

#[test]
fn kairos_agent_files_are_understood() {
    if !privileged("kairos_agent_files_are_understood") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = ImageBuilder::new("k3s").build(dir.path(), "k3s.sysext.raw");
    let store = ns.store();
    fs::copy(&image, store.join("k3s.sysext.raw")).expect("copy");
    fs::create_dir_all(store.join("active")).expect("active dir");
    symlink("/var/lib/kairos/extensions/k3s.sysext.raw", store.join("active/k3s.sysext.raw")).expect("link");
    let listed = list_json(&live(&ns, &["list", "--json"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "k3s", "listed under its release name");
    assert_eq!(listed[0]["file"], "k3s.sysext.raw");
    assert_eq!(listed[0]["enabled"], serde_json::json!(["active"]));
    let out = live(&ns, &["enable", "k3s", "--common", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ns.merged(), ["k3s"], "linked as k3s.raw, systemd 252 merges it");
    assert!(fs::read_link(store.join("active/k3s.sysext.raw")).is_ok(), "kairos-agent's link is left alone");
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    if !privileged("bad_input_is_refused_and_changes_nothing") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = hello(dir.path());
    assert!(live(&ns, &["install", &image]).status.success());
    let before = tree(&ns.store());
    let long = "a".repeat(129);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let dir_path = dir.path().to_str().expect("utf-8").to_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["enable", "../x", "--common"], "must start with a letter or a digit"),
        (vec!["enable", "a/b", "--common"], "contains '/'"),
        (vec!["enable", ".", "--common"], "must start with a letter or a digit"),
        (vec!["enable", &long, "--common"], "at most 128"),
        (vec!["enable", "hello", "--boot", "bogus"], "possible values: active, passive, recovery, common"),
        (vec!["enable", "absent", "--common"], "no extension named \"absent\""),
        (vec!["install", "/nonexistent/x.raw"], "cannot open /nonexistent/x.raw"),
        (vec!["install", &dir_path], "is a directory, not a regular file"),
        (vec!["install", "/dev/null"], "character device"),
        (vec!["install", &image, "--replace", "--digest", &wrong], "digest mismatch"),
        (vec!["install", &image, "--digest", "nothex"], "invalid digest"),
        (vec!["install", "ftp://example/x.raw"], "unknown scheme"),
    ];
    for (args, expected) in cases {
        let out = live(&ns, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(expected), "{args:?}: {:?} lacks {expected:?}", stderr(&out));
    }
    assert_eq!(tree(&ns.store()), before, "bad input must not change the store");
}

#[test]
fn a_config_with_an_unknown_key_is_refused_naming_it() {
    let dir = scratch();
    let config = dir.path().join("extensions.toml");
    fs::write(&config, "max_jobz = 3\n").expect("config");
    let out = offline(dir.path(), &["--config", config.to_str().expect("utf-8"), "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("max_jobz"), "{}", stderr(&out));
}

#[test]
fn installs_over_http_without_keeping_credentials() {
    if !privileged("installs_over_http_without_keeping_credentials") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = hello(dir.path());
    let bytes = fs::read(&image).expect("image bytes");
    let server = kairos_extensions_tests::http::FileServer::start(bytes);
    let url = server.url("hello.raw").replace("http://", "http://user:secret@") + "?token=hunter2";

    let wrong = format!("{url}#sha256={}", "0".repeat(64));
    let out = live(&ns, &["install", &wrong]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("digest mismatch"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("secret") && !stderr(&out).contains("hunter2"), "{}", stderr(&out));
    assert!(!ns.store().join("hello.raw").exists(), "a download that does not match its pin is never stored");
    assert!(tree(&ns.store().join(".tmp")).is_empty(), "nor left in staging");

    let out = live(&ns, &["install", &url, "--enable", "common", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&ns.run("hello-kx", &[])).trim(), "merged for real");
    let ext = &list_json(&live(&ns, &["list", "--json"]))[0];
    let source = ext["source"].as_str().unwrap_or("");
    assert!(source.starts_with("http://127.0.0.1:") && source.ends_with("/hello.raw?%3Credacted%3E"), "{source}");
    let record = fs::read_to_string(ns.store().join(".meta/hello.json")).expect("provenance");
    assert!(!record.contains("secret") && !record.contains("hunter2"), "credentials leaked into {record}");
}

#[test]
fn the_image_policy_gates_install_and_inspect_shows_the_verdict() {
    if !privileged("the_image_policy_gates_install_and_inspect_shows_the_verdict") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = hello(dir.path());
    let strict = dir.path().join("strict.toml");
    fs::write(&strict, "image_policy = \"strict\"\n").expect("config");
    let out = ns
        .command(bins::kairos_ext())
        .args(["--root", "/", "--config"])
        .arg(&strict)
        .args(["install", &image])
        .output()
        .expect("kairos-ext");
    assert!(!out.status.success(), "strict must refuse an unsigned image");
    assert!(
        stderr(&out).contains("refused by the image policy") && stderr(&out).contains("unprotected"),
        "{}",
        stderr(&out)
    );
    assert!(!ns.store().join("hello.raw").exists());

    assert!(live(&ns, &["install", &image]).status.success());
    let described: Value = serde_json::from_slice(&live(&ns, &["inspect", "hello", "--json"]).stdout).expect("JSON");
    assert_eq!(described["protection"], "unprotected");
    assert!(stdout(&live(&ns, &["inspect", "hello"])).contains("Protection: unprotected"));
}

#[test]
fn lying_web_servers_change_nothing() {
    if !privileged("lying_web_servers_change_nothing") {
        return;
    }
    use kairos_extensions_tests::http::{Behaviour, FileServer};
    let ns = Namespace::new();
    let dir = scratch();
    let image = fs::read(hello(dir.path())).expect("image bytes");
    let sentinel = dir.path().join("sentinel");
    fs::write(&sentinel, "untouched").expect("sentinel");
    assert!(live(&ns, &["refresh"]).status.success());
    let before = tree(&ns.store());
    for (behaviour, expected) in
        [(Behaviour::ShortBody, "download failed"), (Behaviour::RedirectToFile, "refusing a redirect to a file: URL")]
    {
        let server = FileServer::start_with(image.clone(), behaviour);
        let out = live(&ns, &["install", &server.url("hello.raw")]);
        assert!(!out.status.success(), "{behaviour:?} was accepted");
        assert!(stderr(&out).contains(expected), "{behaviour:?}: {}", stderr(&out));
        assert_eq!(tree(&ns.store()), before, "{behaviour:?} changed the store");
    }
    // A stall is given up after a minute; through the service a client cancels sooner.
    // Here the command is stopped, as Ctrl-C would, and leaves nothing behind either.
    let server = FileServer::start_with(image, Behaviour::Stall);
    let mut child = ns
        .command(bins::kairos_ext())
        .args(["--root", "/", "install", &server.url("hello.raw")])
        .spawn()
        .expect("kairos-ext");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    assert!(live(&ns, &["refresh"]).status.success(), "the next writing start cleans staging");
    assert_eq!(tree(&ns.store()), before, "an interrupted download leaves nothing");
    assert_eq!(fs::read_to_string(&sentinel).expect("sentinel"), "untouched");
}
