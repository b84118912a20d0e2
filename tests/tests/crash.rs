//! All or nothing across crashes: every change is aborted at each of its crash points in
//! turn (`KAIROS_FAILPOINT=N`, which stops the process as `kill -9` would), the store is
//! opened again as the next start would, and then it must be exactly as before the
//! change or exactly as after it: images, digests, provenance records, boot-state links,
//! `/run/extensions` and what systemd-sysext has merged, with nothing left in staging,
//! no intent record and no dangling link. The same command then succeeds.
//!
//! Everything here is real: `kairos-ext --root /` in a private mount namespace, where
//! systemd-sysext merges onto the namespace's own `/usr`, and a real registry for the
//! install of several images.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{Registry, gzip_layer_layout, tar};
use kairos_extensions_tests::{bins, privileged, stderr};

const STORE: &str = "/var/lib/kairos/extensions/";
const RUNTIME: &str = "/run/extensions/";
/// SIGABRT: how a process stopped at a crash point ends.
const ABORTED: i32 = 6;

/// One change to crash, and the state it starts from.
struct Scenario<'a> {
    /// kairos-ext arguments that build the state before the change, in order.
    setup: Vec<Vec<String>>,
    /// Shell commands run in the namespace after the setup.
    setup_shell: &'a [&'a str],
    /// The change.
    command: Vec<String>,
    /// Whether running the change again on its own result succeeds (enable, disable,
    /// refresh), as opposed to install and remove, whose retry only makes sense when
    /// the crash left the old state.
    idempotent: bool,
    /// An extra configuration file.
    config: Option<PathBuf>,
    /// Called before setup step `i`, and with the number of steps after the last: to
    /// change what a registry serves between steps.
    prepare: Option<&'a dyn Fn(usize)>,
}

struct Rig {
    ns: Namespace,
    scratch: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        let scratch = tempfile::Builder::new().prefix("kx-crash-").tempdir().expect("scratch");
        Self { ns: Namespace::new(), scratch }
    }

    /// A squashfs extension called `name` that ships `/usr/bin/<name>-kx`, printing `says`.
    fn image(&self, name: &str, says: &str, file: &str) -> String {
        ImageBuilder::new(name)
            .release(&format!("ID=_any\nSYSEXT_VERSION_ID={says}\n"))
            .command(&format!("{name}-kx"), says)
            .build(self.scratch.path(), file)
            .display()
            .to_string()
    }

    fn kx(&self, scenario: &Scenario<'_>, args: &[String], failpoint: Option<usize>) -> Output {
        let mut command = self.ns.command(bins::kairos_ext());
        command.args(["--root", "/"]);
        if let Some(config) = &scenario.config {
            command.arg("--config").arg(config);
        }
        if let Some(n) = failpoint {
            command.env("KAIROS_FAILPOINT", n.to_string());
        }
        command.args(args).output().expect("kairos-ext runs")
    }

    /// Puts the namespace back to the scenario's starting state.
    fn reset(&self, scenario: &Scenario<'_>) {
        let out = self.ns.run("systemd-sysext", &["unmerge"]);
        assert!(out.status.success(), "unmerge: {}", stderr(&out));
        for dir in [STORE, RUNTIME] {
            let host = self.ns.host_path(dir);
            fs::remove_dir_all(&host).expect("clear");
            fs::create_dir_all(&host).expect("recreate");
        }
        // The store's own directories, as any first start makes them.
        self.settle();
        for (step, args) in scenario.setup.iter().enumerate() {
            if let Some(prepare) = scenario.prepare {
                prepare(step);
            }
            let out = self.kx(scenario, args, None);
            assert!(out.status.success(), "setup {args:?}: {}", stderr(&out));
        }
        if let Some(prepare) = scenario.prepare {
            prepare(scenario.setup.len());
        }
        for line in scenario.setup_shell {
            let out = self.ns.run("sh", &["-c", line]);
            assert!(out.status.success(), "setup {line}: {}", stderr(&out));
        }
    }

    /// Everything the change may touch, as text: each path under the store and
    /// `/run/extensions` with its content hash or link target (records without the
    /// times that differ from one run to the next), and what is merged.
    fn state(&self) -> BTreeMap<String, String> {
        let mut state = BTreeMap::new();
        for dir in [STORE, RUNTIME] {
            for (path, what) in self.ns.snapshot(dir) {
                let key = format!("{dir}{}", path.display());
                if key.ends_with("/.lock") {
                    continue;
                }
                let record = path.starts_with(".meta") || path.starts_with(".previous") && key.ends_with(".json");
                let what = if record && what != "dir" { normalized_record(&self.ns.host_path(&key)) } else { what };
                state.insert(key, what);
            }
        }
        state.insert("merged".into(), self.ns.merged().join(","));
        state
    }

    /// Opens the store as the next start would, settling the interrupted change.
    fn settle(&self) {
        let out = self.ns.command(bins::kx_settle()).arg("/").output().expect("kx-settle runs");
        assert!(out.status.success(), "settling: {}", stderr(&out));
    }
}

/// A provenance record without its install time and file time.
fn normalized_record(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(mut record)) => {
            record.remove("installed_time_us");
            record.remove("mtime_ns");
            serde_json::Value::Object(record).to_string()
        }
        _ => format!("unreadable record: {text}"),
    }
}

/// What must hold after every crash, whichever state it left.
fn assert_clean(state: &BTreeMap<String, String>, context: &str) {
    let leftovers: Vec<&String> = state.keys().filter(|k| is_leftover(k)).collect();
    assert!(leftovers.is_empty(), "{context}: leftovers {leftovers:?}");
    for (path, what) in state {
        let Some(target) = what.strip_prefix("-> ") else { continue };
        let file = Path::new(target).file_name().and_then(|f| f.to_str()).unwrap_or_default();
        assert!(state.contains_key(&format!("{STORE}{file}")), "{context}: {path} -> {target} dangles");
    }
}

/// Whether `key` is something a finished change leaves behind: anything in staging, the
/// intent record, a temporary link or record.
fn is_leftover(key: &str) -> bool {
    let Some(relative) = key.strip_prefix(STORE).or_else(|| key.strip_prefix(RUNTIME)) else { return false };
    let parts: Vec<&str> = relative.split('/').collect();
    match parts.as_slice() {
        [".meta"] | [".tmp"] | [".previous"] => false,
        [".meta", record] | [".previous", record] => record.starts_with('.'),
        _ => parts.iter().any(|part| part.starts_with('.')),
    }
}

fn describe_difference(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("  {k}: {:?} vs {:?}", a.get(k), b.get(k)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Crashes `scenario`'s change at every crash point it passes; returns how many.
fn crash_everywhere(rig: &Rig, scenario: &Scenario<'_>) -> usize {
    rig.reset(scenario);
    let before = rig.state();
    let out = rig.kx(scenario, &scenario.command, None);
    assert!(out.status.success(), "the change itself fails: {}", stderr(&out));
    let after = rig.state();
    assert_ne!(before, after, "the change must change something");
    assert_clean(&after, "after the change");

    let mut point = 1;
    loop {
        rig.reset(scenario);
        assert_eq!(rig.state(), before, "the setup is not repeatable");
        let out = rig.kx(scenario, &scenario.command, Some(point));
        if out.status.success() {
            return point - 1;
        }
        assert_eq!(
            out.status.signal(),
            Some(ABORTED),
            "crash point {point}: expected an abort, got {:?}: {}",
            out.status,
            stderr(&out)
        );
        rig.settle();
        let settled = rig.state();
        let context = format!("{:?} crashed at point {point} ({})", scenario.command, stderr(&out).trim());
        let old = settled == before;
        assert!(
            old || settled == after,
            "{context}: neither the old state nor the new one\nagainst the old:\n{}\nagainst the new:\n{}",
            describe_difference(&settled, &before),
            describe_difference(&settled, &after)
        );
        assert_clean(&settled, &context);
        if old || scenario.idempotent {
            let out = rig.kx(scenario, &scenario.command, None);
            assert!(out.status.success(), "{context}: the retry fails: {}", stderr(&out));
            assert_eq!(rig.state(), after, "{context}: the retry does not reach the new state");
        }
        point += 1;
    }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn run(test: &str, build: impl FnOnce(&Rig) -> Scenario<'static>) {
    let rig = Rig::new();
    let scenario = build(&rig);
    let points = crash_everywhere(&rig, &scenario);
    assert!(points > 0, "{test}: the change passed no crash point");
    eprintln!("{test}: crash points exercised: {points}");
}

#[test]
fn install_enable_now_is_all_or_nothing_across_crashes() {
    if !privileged("install_enable_now_is_all_or_nothing_across_crashes") {
        return;
    }
    run("install --enable common --now", |rig| {
        let image = rig.image("hello", "1", "hello.raw");
        Scenario {
            setup: vec![],
            setup_shell: &[],
            command: args(&["install", &image, "--enable", "common", "--now"]),
            idempotent: false,
            config: None,
            prepare: None,
        }
    });
}

#[test]
fn install_replace_now_is_all_or_nothing_across_crashes() {
    if !privileged("install_replace_now_is_all_or_nothing_across_crashes") {
        return;
    }
    run("install --replace --now", |rig| {
        let old = rig.image("hello", "1", "hello-1.raw");
        let new = rig.image("hello", "2", "hello-2.raw");
        Scenario {
            setup: vec![args(&["install", &old, "--enable", "common", "--now"])],
            setup_shell: &[],
            command: args(&["install", &new, "--replace", "--enable", "common", "--now"]),
            idempotent: true,
            config: None,
            prepare: None,
        }
    });
}

#[test]
fn an_install_of_several_images_is_all_or_nothing_across_crashes() {
    if !privileged("an_install_of_several_images_is_all_or_nothing_across_crashes") {
        return;
    }
    let registry = Registry::start();
    run("install of several images --replace --now", |rig| {
        let k3s_old = rig.image("k3s", "1", "k3s-1.raw");
        let bytes =
            |name: &str, says: &str| fs::read(rig.image(name, says, &format!("{name}-{says}.img"))).expect("image");
        let (k3s, tools) = (bytes("k3s", "2"), bytes("tools", "2"));
        let layout = rig.scratch.path().join("layout");
        gzip_layer_layout(&layout, "v2", &tar(&[("k3s.raw", &k3s), ("tools.raw", &tools)]));
        registry.push(&layout, "v2", "bundle", false);
        let config = rig.scratch.path().join("extensions.toml");
        fs::write(&config, format!("insecure_registries = [\"{}\"]\n", registry.host())).expect("config");
        let source = format!("oci://{}/bundle:v2", registry.host());
        Scenario {
            setup: vec![args(&["install", &k3s_old, "--enable", "common", "--now"])],
            setup_shell: &[],
            command: args(&["install", &source, "--replace", "--enable", "common", "--now"]),
            idempotent: true,
            config: Some(config),
            prepare: None,
        }
    });
}

#[test]
fn enable_now_is_all_or_nothing_across_crashes() {
    if !privileged("enable_now_is_all_or_nothing_across_crashes") {
        return;
    }
    run("enable --now", |rig| {
        let image = rig.image("hello", "1", "hello.raw");
        Scenario {
            setup: vec![args(&["install", &image])],
            setup_shell: &[],
            command: args(&["enable", "hello", "--boot", "common", "--now"]),
            idempotent: true,
            config: None,
            prepare: None,
        }
    });
}

#[test]
fn disable_now_is_all_or_nothing_across_crashes() {
    if !privileged("disable_now_is_all_or_nothing_across_crashes") {
        return;
    }
    run("disable --now", |rig| {
        let image = rig.image("hello", "1", "hello.raw");
        let other = rig.image("other", "1", "other.raw");
        Scenario {
            setup: vec![
                args(&["install", &image, "--enable", "common", "--now"]),
                args(&["install", &other, "--enable", "common", "--now"]),
            ],
            setup_shell: &[],
            command: args(&["disable", "hello", "--boot", "common", "--now"]),
            idempotent: true,
            config: None,
            prepare: None,
        }
    });
}

#[test]
fn remove_now_is_all_or_nothing_across_crashes() {
    if !privileged("remove_now_is_all_or_nothing_across_crashes") {
        return;
    }
    run("remove --now", |rig| {
        let image = rig.image("hello", "1", "hello.raw");
        let other = rig.image("other", "1", "other.raw");
        Scenario {
            setup: vec![
                args(&["install", &image, "--enable", "common", "--now"]),
                args(&["install", &other, "--enable", "common", "--now"]),
            ],
            setup_shell: &[],
            command: args(&["remove", "hello", "--now"]),
            idempotent: false,
            config: None,
            prepare: None,
        }
    });
}

#[test]
fn refresh_settles_to_the_activated_set_across_crashes() {
    if !privileged("refresh_settles_to_the_activated_set_across_crashes") {
        return;
    }
    run("refresh", |rig| {
        let image = rig.image("hello", "1", "hello.raw");
        Scenario {
            setup: vec![args(&["install", &image, "--enable", "common", "--now"])],
            // Merged, but no longer activated: the refresh takes it out.
            setup_shell: &["rm /run/extensions/hello.raw"],
            command: args(&["refresh"]),
            idempotent: true,
            config: None,
            prepare: None,
        }
    });
}

/// A registry whose `hello:latest` the scenario moves from v1 to v2 between setup steps,
/// and the configuration that reaches it.
struct Moving {
    registry: Registry,
    layouts: [PathBuf; 2],
    config: PathBuf,
}

impl Moving {
    fn new(rig: &Rig) -> Self {
        let registry = Registry::start();
        let layouts = ["1", "2"].map(|version| {
            let image = fs::read(rig.image("hello", version, &format!("hello-{version}.img"))).expect("image");
            let layout = rig.scratch.path().join(format!("layout-{version}"));
            gzip_layer_layout(&layout, "latest", &tar(&[("hello.raw", &image)]));
            layout
        });
        let config = rig.scratch.path().join("extensions.toml");
        fs::write(&config, format!("insecure_registries = [\"{}\"]\n", registry.host())).expect("config");
        Self { registry, layouts, config }
    }

    fn source(&self) -> String {
        format!("oci://{}/hello:latest", self.registry.host())
    }

    /// Serves v1 before the first setup step and v2 before the second.
    fn prepare(&self, step: usize) {
        if let Some(layout) = self.layouts.get(step) {
            self.registry.push(layout, "latest", "hello", false);
        }
    }
}

#[test]
fn update_now_is_old_or_new_across_crashes() {
    if !privileged("update_now_is_old_or_new_across_crashes") {
        return;
    }
    let rig = Rig::new();
    let moving = Moving::new(&rig);
    let prepare = |step: usize| moving.prepare(step);
    let scenario = Scenario {
        setup: vec![args(&["install", &moving.source(), "--enable", "common", "--now"])],
        setup_shell: &[],
        command: args(&["update", "hello", "--now"]),
        // Once updated, another update finds nothing newer and changes nothing.
        idempotent: true,
        config: Some(moving.config.clone()),
        prepare: Some(&prepare),
    };
    let points = crash_everywhere(&rig, &scenario);
    assert!(points > 0, "the update passed no crash point");
    eprintln!("update --now: crash points exercised: {points}");
}

#[test]
fn rollback_now_is_old_or_new_across_crashes() {
    if !privileged("rollback_now_is_old_or_new_across_crashes") {
        return;
    }
    let rig = Rig::new();
    let moving = Moving::new(&rig);
    let prepare = |step: usize| moving.prepare(step);
    let scenario = Scenario {
        setup: vec![
            args(&["install", &moving.source(), "--enable", "common", "--now"]),
            args(&["update", "hello", "--now"]),
        ],
        setup_shell: &[],
        command: args(&["rollback", "hello", "--now"]),
        // A second rollback swaps back: it is retried only from the old state.
        idempotent: false,
        config: Some(moving.config.clone()),
        prepare: Some(&prepare),
    };
    let points = crash_everywhere(&rig, &scenario);
    assert!(points > 0, "the rollback passed no crash point");
    eprintln!("rollback --now: crash points exercised: {points}");
}
