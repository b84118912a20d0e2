//! A full disk during an install is a plain failure that names the OS error and the
//! file, from a local file and from a registry alike, never an invalid image; and the
//! store is left as it was. The store is a real 2 MiB tmpfs inside a private mount
//! namespace, and the registry is Debian's docker-registry.

use std::fs;
use std::process::Output;

use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{Registry, gzip_layer_layout, tar};
use kairos_extensions_tests::{bins, privileged, stderr};

const STORE: &str = "/var/lib/kairos/extensions";

fn kx(ns: &Namespace, config: &std::path::Path, args: &[&str]) -> Output {
    ns.command(bins::kairos_ext())
        .args(["--root", "/", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("kairos-ext")
}

/// Every path in the store with its size and link target, seen inside the namespace
/// (the tmpfs is mounted there only).
fn listing(ns: &Namespace) -> String {
    let out = ns.run("find", &[STORE, "-printf", "%P %y %s %l\n"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    lines.sort();
    lines.join("\n")
}

fn assert_full_disk_failure(out: &Output, what: &str) {
    assert!(!out.status.success(), "{what}: the install must fail");
    let said = stderr(out);
    assert!(said.contains("No space left on device"), "{what}: name the OS error: {said}");
    assert!(said.contains(&format!("{STORE}/.tmp/")), "{what}: name the file: {said}");
    assert!(!said.contains("invalid image"), "{what}: a full disk is not the image's fault: {said}");
}

#[test]
fn a_full_disk_is_a_failure_naming_the_os_error_and_the_file_from_every_source() {
    if !privileged("a_full_disk_is_a_failure_naming_the_os_error_and_the_file_from_every_source") {
        return;
    }
    let ns = Namespace::new();
    let out = ns.run("mount", &["-t", "tmpfs", "-o", "size=2m", "tmpfs", STORE]);
    assert!(out.status.success(), "tmpfs: {}", stderr(&out));
    let scratch = tempfile::Builder::new().prefix("kx-full-").tempdir().expect("scratch");
    let big = ImageBuilder::new("big").noise(4 << 20).build(scratch.path(), "big.raw");
    let registry = Registry::start();
    let layout = scratch.path().join("layout");
    gzip_layer_layout(&layout, "v1", &tar(&[("big.raw", &fs::read(&big).expect("image"))]));
    registry.push(&layout, "v1", "big", false);
    let config = scratch.path().join("extensions.toml");
    fs::write(&config, format!("insecure_registries = [\"{}\"]\n", registry.host())).expect("config");

    // The store's own directories, as any first start makes them.
    let out = ns.command(bins::kx_settle()).arg("/").output().expect("kx-settle runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let before = listing(&ns);
    let path = big.display().to_string();
    assert_full_disk_failure(&kx(&ns, &config, &["install", &path]), "a local file");
    assert_eq!(listing(&ns), before, "a local file: the store is as it was");
    let source = format!("oci://{}/big:v1", registry.host());
    assert_full_disk_failure(&kx(&ns, &config, &["install", &source]), "a registry");
    assert_eq!(listing(&ns), before, "a registry: the store is as it was");
}
