//! Installing from a real OCI registry (Debian's docker-registry on loopback), with
//! images pushed by skopeo from layouts the harness writes.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Output;

use base64::Engine as _;
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{
    GZIP_LAYER, Layout, Registry, TarEntry, gzip, gzip_layer_layout, host_arch, push_artifact, tar, tar_of, zstd,
};
use kairos_extensions_tests::token_server::TokenServer;
use kairos_extensions_tests::{bins, privileged, stderr, stdout};

const GZIP: &str = GZIP_LAYER;

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
        Self::with_registry(Registry::start(), extra_config)
    }

    fn with_registry(registry: Registry, extra_config: &str) -> Self {
        let ns = Namespace::new();
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
        self.push_as(name, tag, entries, None)
    }

    /// Pushes like [`Setup::push`], logging in as `user:password` when given.
    fn push_as(&self, name: &str, tag: &str, entries: &[(&str, &[u8])], login: Option<&str>) -> (String, String) {
        self.push_layer(name, tag, &tar(entries), login)
    }

    /// Pushes one image whose single layer is `plain`, gzipped.
    fn push_layer(&self, name: &str, tag: &str, plain: &[u8], login: Option<&str>) -> (String, String) {
        let dir = self.scratch.path().join(format!("layout-{name}-{tag}"));
        let digests = gzip_layer_layout(&dir, tag, plain);
        self.registry.push_as(&dir, tag, name, false, login);
        digests
    }

    /// Writes `/run/auth.json` in the namespace (registry_auth is a system path, so it
    /// is read from the namespace's /run) with `user:password` for `host`.
    fn write_auth(&self, host: &str, user_password: &str) {
        let auth = base64::engine::general_purpose::STANDARD.encode(user_password);
        fs::write(self.ns.host_path("/run/auth.json"), format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#))
            .expect("auth.json");
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

    fn store_snapshot(&self) -> BTreeMap<PathBuf, String> {
        self.ns.snapshot("/var/lib/kairos/extensions/")
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
fn installs_zstd_uncompressed_and_chunked_layers() {
    if !privileged("installs_zstd_uncompressed_and_chunked_layers") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    let plain = tar(&[("hello.raw", &hello)]);
    // Chunked layers (eStargz, zstd:chunked) are several gzip members or zstd frames,
    // split anywhere, here in the middle of the image.
    let (head, rest) = plain.split_at(plain.len() / 2);
    let zstd_media = "application/vnd.oci.image.layer.v1.tar+zstd";
    for (tag, layer, media_type) in [
        ("zstd", zstd(&plain), zstd_media),
        ("plain", plain.clone(), "application/vnd.oci.image.layer.v1.tar"),
        ("gzip-members", [gzip(head), gzip(rest)].concat(), GZIP),
        ("zstd-frames", [zstd(head), zstd(rest)].concat(), zstd_media),
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
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Symlink};
    let setup = Setup::new("");
    let hello = setup.hello();
    setup.push("hello", "good", &[("hello.raw", &hello)]);
    let out = setup.kx(&["install", &setup.oci("hello", "good"), "--enable", "common"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The sentinel is named like an image, so only the filter stands between an entry
    // aimed at it and the file. Its path is the same inside the namespace.
    let sentinel = setup.scratch.path().join("sentinel.raw");
    fs::write(&sentinel, "untouched").expect("sentinel");
    let absolute = sentinel.to_str().expect("UTF-8 scratch path");
    let climbing = format!("{}{}", "../".repeat(12), absolute.trim_start_matches('/'));
    let overwrite = b"overwritten through the entry";
    let pax = |entry: TarEntry<'static>, size| TarEntry { pax_size: Some(size), ..entry };
    let cases: Vec<(&str, Vec<TarEntry>, &str)> = vec![
        ("parent", vec![TarEntry::file(climbing.as_bytes(), overwrite)], "parent directory"),
        ("absolute", vec![TarEntry::file(absolute.as_bytes(), overwrite)], "absolute paths"),
        ("nested", vec![TarEntry::file(b"usr/bin/evil.raw", overwrite)], "at the layer's root"),
        ("directory", vec![TarEntry::special(b"etc/", Directory)], "not directories"),
        ("other", vec![TarEntry::file(b"evil.raw", &hello), TarEntry::file(b"notes.txt", b"x")], "*.raw"),
        (
            "symlink",
            vec![TarEntry::link(b"evil.raw", Symlink, absolute.as_bytes()), TarEntry::file(b"evil.raw", overwrite)],
            "symbolic links",
        ),
        (
            "hardlink",
            vec![TarEntry::link(b"evil.raw", Link, absolute.as_bytes()), TarEntry::file(b"evil.raw", overwrite)],
            "hard links",
        ),
        ("chardev", vec![TarEntry::special(b"evil.raw", Char)], "device nodes"),
        ("blockdev", vec![TarEntry::special(b"evil.raw", Block)], "device nodes"),
        ("fifo", vec![TarEntry::special(b"evil.raw", Fifo)], "FIFOs"),
        ("twice", vec![TarEntry::file(b"evil.raw", &hello), TarEntry::file(b"./evil.raw", overwrite)], "twice"),
        ("pax", vec![pax(TarEntry::file(b"evil.raw", overwrite), 4)], "disagree on the size"),
        ("control", vec![TarEntry::file(b"evil\x1b[2J.raw", overwrite)], "control characters"),
    ];
    let before = setup.store_snapshot();
    for (tag, entries, reason) in cases {
        setup.push_layer("hostile", tag, &tar_of(&entries), None);
        let out = setup.kx(&["install", &setup.oci("hostile", tag), "--enable", "common"]);
        assert!(!out.status.success(), "{tag} was accepted");
        let message = stderr(&out);
        assert!(message.contains(reason) && message.contains("layer entry"), "{tag}: {message}");
        assert!(!message.contains('\x1b'), "{tag}: a control character reached the terminal: {message:?}");
        assert_eq!(setup.store_snapshot(), before, "{tag} changed the store");
        assert_eq!(fs::read_to_string(&sentinel).expect("sentinel"), "untouched", "{tag} reached the sentinel");
    }
}

#[test]
fn an_image_with_several_extensions_installs_all_of_them_or_the_one_named() {
    if !privileged("an_image_with_several_extensions_installs_all_of_them_or_the_one_named") {
        return;
    }
    let setup = Setup::new("");
    let image = |name: &str| {
        let path = ImageBuilder::new(name).build(setup.scratch.path(), &format!("{name}.img"));
        fs::read(path).expect("image bytes")
    };
    let (k3s, tools) = (image("k3s"), image("tools"));
    setup.push("bundle", "v1", &[("k3s.raw", &k3s), ("tools.raw", &tools)]);
    let installed = || {
        let mut names: Vec<_> = fs::read_dir(setup.ns.store())
            .expect("store")
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".raw")).map(str::to_owned))
            .collect();
        names.sort();
        names
    };

    let out = setup.kx(&["install", &setup.oci("bundle", "v1"), "--name", "tools"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(installed(), ["tools"], "--name installs only the one it names");

    let out = setup.kx(&["install", &setup.oci("bundle", "v1"), "--name", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("k3s") && stderr(&out).contains("tools"), "say what exists: {}", stderr(&out));

    let out = setup.kx(&["install", &setup.oci("bundle", "v1"), "--replace", "--enable", "common", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Installed k3s") && stdout(&out).contains("Installed tools"), "{}", stdout(&out));
    assert_eq!(installed(), ["k3s", "tools"]);
    assert_eq!(setup.ns.merged(), ["k3s", "tools"], "--now activates every image of the pull");
}

#[test]
fn an_image_with_several_extensions_installs_none_when_one_is_bad() {
    if !privileged("an_image_with_several_extensions_installs_none_when_one_is_bad") {
        return;
    }
    let setup = Setup::new("");
    let hello = setup.hello();
    let other = fs::read(ImageBuilder::new("other").build(setup.scratch.path(), "other.img")).expect("image bytes");
    let incompatible =
        ImageBuilder::new("old").release("ID=nothing-like-this-host\n").build(setup.scratch.path(), "old.img");
    let incompatible = fs::read(incompatible).expect("image bytes");
    setup.push("taken", "v1", &[("other.raw", &other)]);
    let out = setup.kx(&["install", &setup.oci("taken", "v1")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = setup.store_snapshot();

    for (tag, entries, reason) in [
        (
            "junk",
            vec![("hello.raw", hello.as_slice()), ("zjunk.raw", b"no filesystem at all".as_slice())],
            "invalid image",
        ),
        ("incompatible", vec![("hello.raw", hello.as_slice()), ("old.raw", incompatible.as_slice())], "not compatible"),
        ("taken", vec![("hello.raw", hello.as_slice()), ("other.raw", other.as_slice())], "already installed"),
        ("twice", vec![("hello.raw", hello.as_slice()), ("hello2.raw", hello.as_slice())], "twice"),
    ] {
        setup.push("mixed", tag, &entries);
        let out = setup.kx(&["install", &setup.oci("mixed", tag)]);
        assert!(!out.status.success(), "{tag}: one bad image must fail the whole install");
        assert!(stderr(&out).contains(reason), "{tag}: {}", stderr(&out));
        assert_eq!(setup.store_snapshot(), before, "{tag}: the good image was installed anyway");
    }
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
    assert!(
        stderr(&out).contains(&format!("layer {layer}: the registry served bytes whose digest is")),
        "{}",
        stderr(&out)
    );
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
    assert!(message.contains(&format!("no manifest for linux/{}", host_arch())), "in the index's terms: {message}");
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

/// The registry_auth line every credentials test configures.
const REGISTRY_AUTH: &str = "registry_auth = \"/run/auth.json\"\n";

#[test]
fn credentials_come_from_registry_auth_and_only_for_their_registry() {
    if !privileged("credentials_come_from_registry_auth_and_only_for_their_registry") {
        return;
    }
    let setup = Setup::with_registry(Registry::start_with_credentials("kx", "s3cret-pw"), REGISTRY_AUTH);
    setup.push_as("hello", "v1", &[("hello.raw", &setup.hello())], Some("kx:s3cret-pw"));
    let install = || setup.kx(&["install", &setup.oci("hello", "v1"), "--replace"]);

    let out = install();
    assert!(!out.status.success(), "no auth.json: anonymous must be refused");
    assert!(stderr(&out).contains("Not authorized"), "{}", stderr(&out));

    setup.write_auth("registry.example.com", "kx:s3cret-pw");
    let out = install();
    assert!(!out.status.success(), "credentials of another registry must not be sent");

    setup.write_auth(&setup.registry.host(), "kx:s3cret-pw");
    let out = install();
    assert!(out.status.success(), "the registry's own credentials work: {}", stderr(&out));
}

#[test]
fn bearer_tokens_are_fetched_with_the_registrys_own_credentials() {
    if !privileged("bearer_tokens_are_fetched_with_the_registrys_own_credentials") {
        return;
    }
    // A registry that wants bearer tokens, from a token server written in the test code.
    let signer = tempfile::Builder::new().prefix("kx-token-").tempdir().expect("signer dir");
    let cert = signer.path().join("signer.pem");
    let tokens = TokenServer::start("kx", "t0ken-pw", &cert);
    let setup = Setup::with_registry(Registry::start_with_token_auth(&tokens, &cert), REGISTRY_AUTH);
    // skopeo does the same token flow for its push.
    setup.push_as("hello", "v1", &[("hello.raw", &setup.hello())], Some("kx:t0ken-pw"));
    let pushed = tokens.seen().issued.len();
    assert!(pushed > 0, "skopeo's push must have gone through the token server");
    let install = || setup.kx(&["install", &setup.oci("hello", "v1"), "--replace"]);
    let stored = || setup.ns.store().join("hello.raw").exists();
    let password = base64::engine::general_purpose::STANDARD.encode("kx:t0ken-pw");

    let out = install();
    assert!(!out.status.success(), "without auth.json the registry must refuse");
    assert!(!stored());
    assert_eq!(tokens.seen().issued.len(), pushed, "no token for an anonymous pull");

    let before = tokens.seen().authorizations.len();
    setup.write_auth("registry.example.com", "kx:t0ken-pw");
    let out = install();
    assert!(!out.status.success(), "another registry's credentials must not be used");
    assert!(!stored());
    assert!(
        !tokens.seen().authorizations[before..].iter().any(|a| a.starts_with("Basic ")),
        "no credentials may reach the token server for another host's entry"
    );

    setup.write_auth(&setup.registry.host(), "kx:wrong");
    let out = install();
    assert!(!out.status.success(), "a wrong password must fail");
    assert!(stderr(&out).to_lowercase().contains("auth"), "the failure names authentication: {}", stderr(&out));
    assert!(!stored());

    setup.write_auth(&setup.registry.host(), "kx:t0ken-pw");
    let out = install();
    assert!(out.status.success(), "the registry's own credentials work: {}", stderr(&out));
    assert!(stored(), "the image is installed");
    assert!(tokens.seen().authorizations.iter().any(|a| a.contains(&password)));
    let seen = tokens.seen();
    assert!(
        seen.issued[pushed..].iter().any(|(user, scope)| user == "kx" && scope == "repository:hello:pull"),
        "a pull token for the repository was issued: {:?}",
        seen.issued
    );
}
