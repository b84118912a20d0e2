//! `kairos-extensionsd boot-activate`: what a boot activates, in the TESTING.md
//! namespace (fresh `/run` and `/var/lib`, `/run/cos/active_mode`), followed by a real
//! `systemd-sysext merge` of what it activated.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use kairos_extensions_tests::images::{ImageBuilder, junk};
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::{bins, privileged, stderr, stdout};
use serde_json::Value;

/// Puts `image` into the store and enables it for `states`, the way kairos-agent or an
/// image build would, without our install checks (some of these images are bad on purpose).
fn place(ns: &Namespace, image: &Path, file: &str, states: &[&str]) {
    let store = ns.store();
    fs::copy(image, store.join(file)).expect("copy into the store");
    for state in states {
        fs::create_dir_all(store.join(state)).expect("state dir");
        let name = file.trim_end_matches(".raw");
        symlink(format!("../{file}"), store.join(state).join(format!("{name}.raw"))).expect("enable link");
    }
}

fn activate(ns: &Namespace, config: Option<&Path>) -> std::process::Output {
    let mut command = ns.command(bins::kairos_extensionsd());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.arg("boot-activate").output().expect("boot-activate runs")
}

fn activated(ns: &Namespace) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(ns.host_path("/run/extensions/"))
        .expect("runtime dir")
        .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn report(ns: &Namespace) -> Value {
    let text = fs::read_to_string(ns.host_path("/run/kairos-extensions/boot.json")).expect("boot.json written");
    serde_json::from_str(&text).expect("boot.json is JSON")
}

fn skipped_reason<'a>(report: &'a Value, name: &str) -> &'a str {
    report["skipped"]
        .as_array()
        .and_then(|s| s.iter().find(|e| e["name"] == name))
        .and_then(|e| e["reason"].as_str())
        .unwrap_or("")
}

#[test]
fn one_bad_image_does_not_block_the_others() {
    if !privileged("one_bad_image_does_not_block_the_others") {
        return;
    }
    let ns = Namespace::new();
    ns.set_boot_state("active");
    let dir = tempfile::tempdir().expect("scratch");
    let build = |name: &str, release: &str| {
        ImageBuilder::new(name)
            .release(release)
            .command(&format!("{name}-cmd"), name)
            .build(dir.path(), &format!("{name}.img"))
    };
    place(&ns, &build("act", "ID=_any\n"), "act.raw", &["active"]);
    place(&ns, &build("pas", "ID=_any\n"), "pas.raw", &["passive"]);
    place(&ns, &build("com", "ID=_any\n"), "com.raw", &["common"]);
    place(&ns, &build("both", "ID=_any\n"), "both.raw", &["active", "common"]);
    place(&ns, &build("fed", "ID=fedora\nVERSION_ID=40\n"), "fed.raw", &["common"]);
    place(&ns, &junk(dir.path(), "corrupt.img", 200_000), "corrupt.raw", &["active"]);

    let out = activate(&ns, None);
    assert!(out.status.success(), "boot-activate must exit 0 despite bad images: {}", stderr(&out));
    assert_eq!(activated(&ns), ["act.raw", "both.raw", "com.raw"], "exactly the good images of this boot");
    let report = report(&ns);
    assert_eq!(report["boot_state"], "active");
    assert!(skipped_reason(&report, "fed").contains("ID=\"fedora\""), "{report}");
    assert!(skipped_reason(&report, "corrupt").contains("not a readable system extension image"), "{report}");
    assert!(skipped_reason(&report, "pas").is_empty(), "passive is not this boot, so it is not a skip: {report}");
    assert!(stderr(&out).contains("more than one state"), "the duplicate is warned about: {}", stderr(&out));

    let merge = ns.run("systemd-sysext", &["merge"]);
    assert!(merge.status.success(), "systemd-sysext merge: {}", stderr(&merge));
    assert_eq!(ns.merged(), ["act", "both", "com"]);
    assert_eq!(stdout(&ns.run("act-cmd", &[])).trim(), "act");
    assert!(!ns.exists("/usr/bin/pas-cmd"));
}

#[test]
fn ten_good_images_merge_next_to_a_bad_one() {
    if !privileged("ten_good_images_merge_next_to_a_bad_one") {
        return;
    }
    let ns = Namespace::new();
    let dir = tempfile::tempdir().expect("scratch");
    let mut expected = Vec::new();
    for i in 0..10 {
        let name = format!("good{i}");
        let image = ImageBuilder::new(&name).command(&name, &name).build(dir.path(), &format!("{name}.img"));
        place(&ns, &image, &format!("{name}.raw"), &["common"]);
        expected.push(name);
    }
    place(&ns, &junk(dir.path(), "bad.img", 100_000), "bad.raw", &["common"]);
    let out = activate(&ns, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!activated(&ns).contains(&"bad.raw".to_owned()));
    let merge = ns.run("systemd-sysext", &["merge"]);
    assert!(merge.status.success(), "{}", stderr(&merge));
    assert_eq!(ns.merged(), expected, "all ten good images merge; the bad one does not take them down");
}

#[test]
fn without_a_kairos_boot_mode_only_common_applies() {
    if !privileged("without_a_kairos_boot_mode_only_common_applies") {
        return;
    }
    let ns = Namespace::new();
    let dir = tempfile::tempdir().expect("scratch");
    place(&ns, &ImageBuilder::new("act").build(dir.path(), "act.img"), "act.raw", &["active"]);
    place(&ns, &ImageBuilder::new("com").build(dir.path(), "com.img"), "com.raw", &["common"]);
    let out = activate(&ns, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(activated(&ns), ["com.raw"]);
    assert_eq!(report(&ns)["boot_state"], "none");
}

#[test]
fn a_file_of_someone_elses_in_the_runtime_directory_skips_only_its_extension() {
    if !privileged("a_file_of_someone_elses_in_the_runtime_directory_skips_only_its_extension") {
        return;
    }
    let ns = Namespace::new();
    let dir = tempfile::tempdir().expect("scratch");
    place(&ns, &ImageBuilder::new("aaa").build(dir.path(), "aaa.img"), "aaa.raw", &["common"]);
    place(&ns, &ImageBuilder::new("zzz").build(dir.path(), "zzz.img"), "zzz.raw", &["common"]);
    fs::create_dir_all(ns.host_path("/run/extensions")).expect("runtime dir");
    fs::write(ns.host_path("/run/extensions/aaa.raw"), "an operator's file").expect("foreign file");
    let out = activate(&ns, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(activated(&ns), ["aaa.raw", "zzz.raw"]);
    assert_eq!(fs::read_to_string(ns.host_path("/run/extensions/aaa.raw")).ok().as_deref(), Some("an operator's file"));
    assert!(ns.host_path("/run/extensions/zzz.raw").is_symlink(), "the extension after it is activated");
    let report = report(&ns);
    assert!(skipped_reason(&report, "aaa").contains("not a link into the extension store"), "{report}");
}

#[test]
fn rerunning_removes_activations_no_longer_enabled() {
    if !privileged("rerunning_removes_activations_no_longer_enabled") {
        return;
    }
    let ns = Namespace::new();
    let dir = tempfile::tempdir().expect("scratch");
    place(&ns, &ImageBuilder::new("com").build(dir.path(), "com.img"), "com.raw", &["common"]);
    assert!(activate(&ns, None).status.success());
    assert_eq!(activated(&ns), ["com.raw"]);
    fs::remove_file(ns.store().join("common/com.raw")).expect("disable by hand");
    assert!(activate(&ns, None).status.success());
    assert!(activated(&ns).is_empty(), "a stale activation must go");
}

#[test]
fn an_unsigned_image_is_skipped_under_a_strict_policy() {
    if !privileged("an_unsigned_image_is_skipped_under_a_strict_policy") {
        return;
    }
    let ns = Namespace::new();
    let dir = tempfile::tempdir().expect("scratch");
    place(&ns, &ImageBuilder::new("plain").build(dir.path(), "plain.img"), "plain.raw", &["common"]);
    let config = dir.path().join("strict.toml");
    fs::write(&config, "image_policy = \"strict\"\n").expect("config");
    let out = activate(&ns, Some(&config));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(activated(&ns).is_empty());
    assert!(skipped_reason(&report(&ns), "plain").contains("strict"), "{}", report(&ns));
}
