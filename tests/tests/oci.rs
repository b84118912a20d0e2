//! Installing from a real OCI registry (Debian's docker-registry on loopback), with
//! images pushed by skopeo from layouts the harness writes.

use std::fs;

use std::process::Output;

use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{Layout, Registry, gzip, push_artifact, tar, zstd};
use kairos_extensions_tests::{bins, privileged, stderr, stdout};

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// This machine's architecture as OCI spells it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn other_arch() -> &'static str {
    if host_arch() == "amd64" { "arm64" } else { "amd64" }
}

struct Setup {
    ns: Namespace,
    registry: Registry,
    scratch: tempfile::TempDir,
    config: std::path::PathBuf,
}

impl Setup {
    fn new(extra_config: &str) -> Self {
        let ns = Namespace::new();
        let registry = Registry::start();
        let scratch = tempfile::Builder::new().prefix("kx-oci-").tempdir().expect("scratch");
        let config = scratch.path().join("extensions.toml");
        fs::write(&config, format!("insecure_registries = [\"{}\"]\n{extra_config}", registry.host())).expect("config");
        Self { ns, registry, scratch, config }
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

    /// Pushes one image whose single gzip layer holds `entries`; returns the manifest digest.
    fn push(&self, name: &str, tag: &str, entries: &[(&str, &[u8])]) -> (String, String) {
        let dir = self.scratch.path().join(format!("layout-{name}-{tag}"));
        let mut layout = Layout::new(&dir);
        let plain = tar(entries);
        let digests = layout.image(host_arch(), &gzip(&plain), GZIP, &plain);
        layout.finish(tag);
        self.registry.push(&dir, tag, name, false);
        digests
    }

    fn hello(&self) -> Vec<u8> {
        let image =
            ImageBuilder::new("hello").command("hello-kx", "from the registry").build(self.scratch.path(), "hello.img");
        fs::read(image).expect("image bytes")
    }

    fn oci(&self, name: &str, tag: &str) -> String {
        format!("oci://{}/{name}:{tag}", self.registry.host())
    }

    fn store_is_empty(&self) -> bool {
        let store = self.ns.store();
        let images = fs::read_dir(&store)
            .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "raw")).count())
            .unwrap_or(0);
        let staging = fs::read_dir(store.join(".tmp")).map(|d| d.count()).unwrap_or(0);
        images == 0 && staging == 0
    }
}

#[test]
fn installs_a_kairos_shaped_image_and_merges_it() {
    if !privileged("installs_a_kairos_shaped_image_and_merges_it") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    let (manifest, _) = setup.push("hello", "v1", &[("hello.raw", &hello)]);
    let out = setup.kx(&["install", &setup.oci("hello", "v1"), "--enable", "common", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&setup.ns.run("hello-kx", &[])).trim(), "from the registry");
    let record = fs::read_to_string(setup.ns.store().join(".meta/hello.json")).expect("provenance");
    assert!(record.contains(&manifest), "the tag's resolved digest is recorded: {record}");
}

#[test]
fn installs_zstd_and_uncompressed_layers() {
    if !privileged("installs_zstd_and_uncompressed_layers") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    let plain = tar(&[("hello.raw", &hello)]);
    for (tag, layer, media_type) in [
        ("zstd", zstd(&plain), "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("plain", plain.clone(), "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let dir = setup.scratch.path().join(format!("layout-{tag}"));
        let mut layout = Layout::new(&dir);
        layout.image(host_arch(), &layer, media_type, &plain);
        layout.finish(tag);
        setup.registry.push(&dir, tag, "hello", false);
        let out = setup.kx(&["install", &setup.oci("hello", tag), "--replace"]);
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
        assert!(stdout(&out).contains("Installed hello"), "{tag}: {}", stdout(&out));
    }
}

#[test]
fn installs_artifacts_pushed_by_oci_client() {
    if !privileged("installs_artifacts_pushed_by_oci_client") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    push_artifact(&setup.registry, "art", "kairos", hello.clone(), "application/vnd.kairos.sysext.raw", "hello.raw");
    let out = setup.kx(&["install", &setup.oci("art", "kairos"), "--enable", "common", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&setup.ns.run("hello-kx", &[])).trim(), "from the registry");

    push_artifact(&setup.registry, "art", "octet", hello.clone(), "application/octet-stream", "hello.raw");
    let out = setup.kx(&["install", &setup.oci("art", "octet"), "--replace"]);
    assert!(out.status.success(), "octet-stream with a .raw title: {}", stderr(&out));

    push_artifact(&setup.registry, "art", "hostile", hello, "application/vnd.kairos.sysext.raw", "../../etc/evil.raw");
    let out = setup.kx(&["install", &setup.oci("art", "hostile"), "--replace"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a plain *.raw file name"), "{}", stderr(&out));
}

#[test]
fn pins_refuse_anything_else_and_store_nothing() {
    if !privileged("pins_refuse_anything_else_and_store_nothing") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    let (manifest, _) = setup.push("hello", "v1", &[("hello.raw", &hello)]);
    let wrong = format!("sha256:{}", "1".repeat(64));
    let by_reference = format!("oci://{}/hello@{wrong}", setup.registry.host());
    let out = setup.kx(&["install", &by_reference]);
    assert!(!out.status.success());
    let out = setup.kx(&["install", &setup.oci("hello", "v1"), "--digest", &wrong]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("digest mismatch"), "{}", stderr(&out));
    assert!(setup.store_is_empty());
    let out = setup.kx(&["install", &setup.oci("hello", "v1"), "--digest", &manifest]);
    assert!(out.status.success(), "pinning the right manifest works: {}", stderr(&out));
}

#[test]
fn hostile_layer_entries_are_refused_by_name() {
    if !privileged("hostile_layer_entries_are_refused_by_name") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    let sentinel = setup.scratch.path().join("sentinel");
    fs::write(&sentinel, "untouched").expect("sentinel");
    for (tag, entries, reason) in [
        ("parent", vec![("../escape.raw", hello.as_slice())], "parent directory"),
        ("nested", vec![("usr/bin/x.raw", hello.as_slice())], "at the layer's root"),
        ("other", vec![("hello.raw", hello.as_slice()), ("notes.txt", b"x".as_slice())], "*.raw"),
    ] {
        setup.push("hostile", tag, &entries);
        let out = setup.kx(&["install", &setup.oci("hostile", tag)]);
        assert!(!out.status.success(), "{tag} was accepted");
        assert!(stderr(&out).contains(reason), "{tag}: {}", stderr(&out));
        assert!(setup.store_is_empty(), "{tag} left something in the store");
    }
    assert_eq!(fs::read_to_string(&sentinel).expect("sentinel"), "untouched");
}

#[test]
fn a_blob_tampered_with_in_the_registry_is_refused() {
    if !privileged("a_blob_tampered_with_in_the_registry_is_refused") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    let (_, layer) = setup.push("hello", "v1", &[("hello.raw", &hello)]);
    let path = setup.registry.blob_path(&layer);
    let mut bytes = fs::read(&path).expect("stored blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&path, bytes).expect("tamper");
    let out = setup.kx(&["install", &setup.oci("hello", "v1")]);
    assert!(!out.status.success(), "a tampered blob must not install");
    assert!(setup.store_is_empty());
}

#[test]
fn a_multi_arch_index_gives_this_machine_its_image() {
    if !privileged("a_multi_arch_index_gives_this_machine_its_image") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    let dir = setup.scratch.path().join("multi");
    let mut layout = Layout::new(&dir);
    let ours = tar(&[("hello.raw", &hello)]);
    let theirs = tar(&[("hello.raw", b"not for this machine")]);
    layout.image(other_arch(), &gzip(&theirs), GZIP, &theirs);
    layout.image(host_arch(), &gzip(&ours), GZIP, &ours);
    layout.finish("multi");
    setup.registry.push(&dir, "multi", "hello", true);
    let out = setup.kx(&["install", &setup.oci("hello", "multi")]);
    assert!(out.status.success(), "{}", stderr(&out));

    let dir = setup.scratch.path().join("foreign");
    let mut layout = Layout::new(&dir);
    layout.image(other_arch(), &gzip(&theirs), GZIP, &theirs);
    layout.image("s390x", &gzip(&theirs), GZIP, &theirs);
    layout.finish("foreign");
    setup.registry.push(&dir, "foreign", "other", true);
    let out = setup.kx(&["install", &setup.oci("other", "foreign")]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains(other_arch()) && message.contains("s390x"), "the error lists what exists: {message}");
}

#[test]
fn a_gzip_bomb_stops_at_the_size_limit() {
    if !privileged("a_gzip_bomb_stops_at_the_size_limit") {
        return;
    }
    let setup = Setup::new("max_image_size = \"1M\"\n");
    let zeros = vec![0u8; 64 << 20];
    setup.push("bomb", "v1", &[("bomb.raw", &zeros)]);
    let out = setup.kx(&["install", &setup.oci("bomb", "v1")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("limit") || stderr(&out).contains("more than"), "{}", stderr(&out));
    assert!(setup.store_is_empty());
}

#[test]
fn a_registry_not_listed_as_insecure_is_only_spoken_to_over_tls() {
    if !privileged("a_registry_not_listed_as_insecure_is_only_spoken_to_over_tls") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    setup.push("hello", "v1", &[("hello.raw", &hello)]);
    // Same registry, but a configuration that does not list it: HTTPS only, which this
    // plain-HTTP registry cannot answer.
    fs::write(&setup.config, "").expect("config without insecure_registries");
    let out = setup.kx(&["install", &setup.oci("hello", "v1")]);
    assert!(!out.status.success(), "a plain-HTTP registry must not be used unless listed");
    assert!(stderr(&out).contains("https://"), "it must have been asked over TLS: {}", stderr(&out));
    assert!(setup.store_is_empty());
}

#[test]
fn credentials_come_from_registry_auth_and_only_for_their_registry() {
    if !privileged("credentials_come_from_registry_auth_and_only_for_their_registry") {
        return;
    }
    let ns = Namespace::new();
    let registry = Registry::start_with_credentials("kx", "s3cret-pw");
    let scratch = tempfile::Builder::new().prefix("kx-auth-").tempdir().expect("scratch");
    let image = ImageBuilder::new("hello").build(scratch.path(), "hello.img");
    let plain = tar(&[("hello.raw", &fs::read(image).expect("image"))]);
    let layout_dir = scratch.path().join("layout");
    let mut layout = Layout::new(&layout_dir);
    layout.image(host_arch(), &gzip(&plain), GZIP, &plain);
    layout.finish("v1");
    registry.push_as(&layout_dir, "v1", "hello", false, Some("kx:s3cret-pw"));

    // registry_auth is a system path: inside the namespace it is read from its /run.
    let write_auth = |host: &str| {
        let auth = format!(r#"{{"auths": {{"{host}": {{"auth": "a3g6czNjcmV0LXB3"}}}}}}"#);
        fs::write(ns.host_path("/run/auth.json"), auth).expect("auth.json");
    };
    let config = scratch.path().join("extensions.toml");
    fs::write(
        &config,
        format!("insecure_registries = [\"{}\"]\nregistry_auth = \"/run/auth.json\"\n", registry.host()),
    )
    .expect("config");
    let install = || {
        ns.command(bins::kairos_ext())
            .args(["--root", "/", "--config"])
            .arg(&config)
            .args(["install", &format!("oci://{}/hello:v1", registry.host()), "--replace"])
            .output()
            .expect("kairos-ext")
    };

    let out = install();
    assert!(!out.status.success(), "no auth.json: anonymous must be refused");
    assert!(stderr(&out).contains("Not authorized"), "{}", stderr(&out));

    write_auth("registry.example.com");
    let out = install();
    assert!(!out.status.success(), "credentials of another registry must not be sent");

    write_auth(&registry.host());
    let out = install();
    assert!(out.status.success(), "the registry's own credentials work: {}", stderr(&out));
}
