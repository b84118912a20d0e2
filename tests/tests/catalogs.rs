//! Kairos catalogs end to end: a `releases.json` served over loopback HTTP by this test,
//! naming images pushed to a real registry (docker-registry, filled by skopeo), installed
//! offline and through the service, listed by `ListCatalog` and `kairos-ext search`.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};

use kairos_extensions_tests::http::read_request;
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{Registry, gzip_layer_layout, host_arch, tar};
use kairos_extensions_tests::system::Rig;
use kairos_extensions_tests::{bins, privileged, stderr, stdout};
use serde_json::{Value, json};

/// Serves documents by path on loopback; any other path is a 404.
struct CatalogServer {
    port: u16,
    documents: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl CatalogServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let documents: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let served = documents.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let served = served.clone();
                std::thread::spawn(move || answer(stream, &served));
            }
        });
        Self { port, documents }
    }

    fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> String {
        self.documents.lock().expect("documents").insert(format!("/{path}"), body.into());
        self.url(path)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

fn answer(mut stream: TcpStream, documents: &Mutex<HashMap<String, Vec<u8>>>) {
    let Some(request) = read_request(&stream) else { return };
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let body = documents.lock().ok().and_then(|d| d.get(&path).cloned());
    let _ = match body {
        Some(body) => write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .and_then(|()| stream.write_all(&body)),
        None => write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
}

/// Two versions of `hello` in a registry, and a catalog that names both.
struct Published {
    registry: Registry,
    server: CatalogServer,
    scratch: tempfile::TempDir,
    /// `releases.json` on the server.
    catalog: String,
    /// The digest-pinned references of 1.0.0 and 1.1.0.
    references: [String; 2],
}

impl Published {
    fn new() -> Self {
        let registry = Registry::start();
        let server = CatalogServer::start();
        let scratch = tempfile::Builder::new().prefix("kx-catalogs-").tempdir().expect("scratch");
        let references = ["1.0.0", "1.1.0"].map(|version| {
            let image = ImageBuilder::new("hello")
                .release(&format!("ID=_any\nSYSEXT_VERSION_ID={version}\n"))
                .command("hello-kx", &format!("hello {version}"))
                .build(scratch.path(), &format!("hello-{version}.img"));
            let dir = scratch.path().join(format!("layout-{version}"));
            let bytes = fs::read(image).expect("image bytes");
            let (manifest, _) = gzip_layer_layout(&dir, version, &tar(&[("hello.raw", &bytes)]));
            registry.push(&dir, version, "hello", false);
            format!("{}/hello@{manifest}", registry.host())
        });
        let catalog = server.put("releases.json", document(&references[0], &references[1]).to_string());
        Self { registry, server, scratch, catalog, references }
    }

    /// Configuration text for this registry, with `catalogs` when given.
    fn config(&self, catalogs: &[&str]) -> String {
        format!(
            "idle_exit_sec = 0\ninsecure_registries = [\"{}\"]\ncatalogs = {}\n",
            self.registry.host(),
            json!(catalogs)
        )
    }
}

/// A catalog in the published shape, with unknown fields as the real index has them.
fn document(v1: &str, v2: &str) -> Value {
    let arch = host_arch();
    json!({
        "generated": "2026-11-28T06:00:00Z",
        "repo": "test/layers",
        "layers": [{
            "name": "hello",
            "title": "Hello",
            "description": "Says which version it is",
            "image": "example/hello",
            "latest": "1.1.0",
            "tags": [
                {"tag": "1.1.0", "created": "2026-11-28T06:00:00Z", "sysext": {arch: {"oci": v2}}},
                {"tag": "1.0.0", "sysext": {arch: {"oci": v1}}}
            ]
        }]
    })
}

/// `kairos-ext --root / --config <config>` in `ns`.
fn offline(ns: &Namespace, config: &std::path::Path, args: &[&str]) -> Output {
    ns.command(bins::kairos_ext())
        .args(["--root", "/", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("kairos-ext")
}

fn succeeded(output: Output, what: &str) -> Output {
    assert!(output.status.success(), "{what} failed: {}\n{}", stderr(&output), stdout(&output));
    output
}

/// The installed `hello` as `list --json` shows it, and its provenance record.
fn installed(list: &Output, store: PathBuf) -> (Value, Value) {
    let listed: Value = serde_json::from_slice(&list.stdout).expect("list --json");
    let hello = listed.as_array().and_then(|a| a.iter().find(|e| e["name"] == "hello")).cloned().unwrap_or_default();
    let record = fs::read(store.join(".meta/hello.json")).expect("provenance record");
    (hello, serde_json::from_slice(&record).expect("record JSON"))
}

#[test]
fn installs_by_name_exact_version_and_constraint_offline() {
    if !privileged("installs_by_name_exact_version_and_constraint_offline") {
        return;
    }
    let published = Published::new();
    let ns = Namespace::new();
    let config = published.scratch.path().join("extensions.toml");
    fs::write(&config, published.config(&[])).expect("config");
    let kx = |args: &[&str]| {
        // --catalog belongs to the verbs that read catalogs.
        let mut all = args.to_vec();
        if matches!(args.first(), Some(&"install" | &"search")) {
            all.extend_from_slice(&["--catalog", published.catalog.as_str()]);
        }
        offline(&ns, &config, &all)
    };

    for (argument, version, request, reference) in [
        ("hello", "1.1.0", json!({"kind": "latest"}), &published.references[1]),
        ("hello@1.0.0", "1.0.0", json!({"kind": "exact", "text": "1.0.0"}), &published.references[0]),
        ("hello@^1.0", "1.1.0", json!({"kind": "constraint", "text": "^1.0"}), &published.references[1]),
        ("hello@~1.0", "1.0.0", json!({"kind": "constraint", "text": "~1.0"}), &published.references[0]),
        ("hello@>=1.0, <1.1", "1.0.0", json!({"kind": "constraint", "text": ">=1.0, <1.1"}), &published.references[0]),
    ] {
        succeeded(kx(&["install", argument, "--replace", "--enable", "common", "--now"]), argument);
        let ran = ns.run("hello-kx", &[]);
        assert_eq!(stdout(&ran).trim(), format!("hello {version}"), "{argument}: the merged image is {version}");
        let (hello, record) = installed(&succeeded(kx(&["list", "--json"]), "list"), ns.store());
        assert_eq!(hello["version"], version, "{argument}: {hello}");
        assert_eq!(hello["source"], format!("catalog:{argument}"), "{argument}: {hello}");
        let origin = &record["catalog"];
        assert_eq!(origin["catalog"], published.catalog.as_str(), "{record}");
        assert_eq!((&origin["name"], &origin["version"]), (&json!("hello"), &json!(version)), "{record}");
        assert_eq!(origin["request"], request, "{argument}: {record}");
        assert_eq!(origin["reference"], reference.as_str(), "{record}");
        assert!(reference.ends_with(record["resolved_digest"].as_str().unwrap_or("none")), "{record}");
    }

    // A local file of that name wins over the catalogs.
    let local = ImageBuilder::new("hello")
        .release("ID=_any\nSYSEXT_VERSION_ID=0.0.1\n")
        .build(published.scratch.path(), "hello");
    // Entering the namespace resets the working directory; a shell sets it again.
    let out = ns
        .command("sh")
        .args(["-c", "cd \"$0\" && exec \"$@\""])
        .arg(published.scratch.path())
        .arg(bins::kairos_ext())
        .args(["--root", "/", "--config"])
        .arg(&config)
        .args(["install", "hello", "--replace", "--catalog", &published.catalog])
        .output()
        .expect("kairos-ext");
    succeeded(out, "install of a local file");
    let (hello, _) = installed(&succeeded(kx(&["list", "--json"]), "list"), ns.store());
    assert_eq!(hello["version"], "0.0.1", "{hello}");
    assert!(local.exists());

    let found = succeeded(kx(&["search"]), "search");
    let text = stdout(&found);
    assert!(text.starts_with("NAME   TITLE  LATEST  INSTALLED\n"), "{text}");
    assert!(text.contains("hello  Hello  1.1.0   0.0.1"), "{text}");
    let found = succeeded(kx(&["search", "VERSION", "--json"]), "search --json");
    let entries: Value = serde_json::from_slice(&found.stdout).expect("search --json");
    assert_eq!(
        entries,
        json!([{"name": "hello", "title": "Hello", "description": "Says which version it is", "latest": "1.1.0",
                "versions": ["1.1.0", "1.0.0"], "installed": "0.0.1"}])
    );
    let none = succeeded(kx(&["search", "nothing-like-it"]), "search");
    assert_eq!(stdout(&none), "No catalog entries found.\n");
}

#[test]
fn installs_through_the_service_and_lists_the_catalog_on_the_bus() {
    if !privileged("installs_through_the_service_and_lists_the_catalog_on_the_bus") {
        return;
    }
    let published = Published::new();
    let rig = Rig::start(&[], &published.config(&[&published.catalog]));

    succeeded(rig.kairos_ext(&["install", "hello@~1.0", "--enable", "common", "--now"]), "install hello@~1.0");
    assert_eq!(stdout(&rig.ns.run("hello-kx", &[])).trim(), "hello 1.0.0");
    let (hello, record) = installed(&succeeded(rig.kairos_ext(&["list", "--json"]), "list"), rig.ns.store());
    assert_eq!((&hello["version"], &hello["source"]), (&json!("1.0.0"), &json!("catalog:hello@~1.0")), "{hello}");
    assert_eq!(record["catalog"]["request"], json!({"kind": "constraint", "text": "~1.0"}), "{record}");

    succeeded(rig.kairos_ext(&["install", "catalog:hello", "--replace"]), "install catalog:hello");
    let (hello, _) = installed(&succeeded(rig.kairos_ext(&["list", "--json"]), "list"), rig.ns.store());
    assert_eq!(hello["version"], "1.1.0", "{hello}");

    let manager = ["org.kairos.Extensions1", "/org/kairos/Extensions1", "org.kairos.Extensions1.Manager"];
    let listed = rig
        .bus
        .command("busctl")
        .args(["--system", "--json=short", "call"])
        .args(manager)
        .arg("ListCatalog")
        .output()
        .expect("busctl");
    let listed: Value = serde_json::from_slice(&succeeded(listed, "ListCatalog").stdout).expect("busctl JSON");
    assert_eq!(listed["type"], "a(ssssas)");
    assert_eq!(listed["data"][0], json!([["hello", "Hello", "Says which version it is", "1.1.0", ["1.1.0", "1.0.0"]]]));
    let property = rig
        .bus
        .command("busctl")
        .args(["--system", "--json=short", "get-property"])
        .args(manager)
        .arg("Catalogs")
        .output()
        .expect("busctl");
    let property: Value = serde_json::from_slice(&succeeded(property, "Catalogs").stdout).expect("busctl JSON");
    assert_eq!(property["data"], json!([published.catalog]));

    let found = succeeded(rig.kairos_ext(&["search", "hello"]), "search");
    assert!(stdout(&found).contains("hello  Hello  1.1.0   1.1.0"), "{}", stdout(&found));
    let refused = rig.kairos_ext(&["search", "--catalog", &published.catalog]);
    assert!(!refused.status.success() && stderr(&refused).contains("offline mode"), "{}", stderr(&refused));
}

/// With no catalog configured, `search` fails through the service as it does offline
/// (and as `install NAME` does), instead of finding nothing.
#[test]
fn search_without_a_catalog_fails_alike_offline_and_through_the_service() {
    if !privileged("search_without_a_catalog_fails_alike_offline_and_through_the_service") {
        return;
    }
    let rig = Rig::start(&[], "idle_exit_sec = 0\n");
    let config = rig.scratch.path().join("extensions.toml");
    fs::write(&config, "").expect("config");
    let through = rig.kairos_ext(&["search", "hello"]);
    let without = offline(&rig.ns, &config, &["search", "hello"]);
    for (out, how) in [(&through, "through the service"), (&without, "offline")] {
        assert_eq!(out.status.code(), Some(1), "{how}: {}", stderr(out));
        assert_eq!(stdout(out), "", "{how}");
        assert!(stderr(out).contains("kairos-ext: no catalog is configured"), "{how}: {}", stderr(out));
    }
    assert_eq!(stderr(&through), stderr(&without), "the same words both ways");
}

#[test]
fn an_unreadable_catalog_is_skipped_with_a_warning_while_the_next_answers() {
    if !privileged("an_unreadable_catalog_is_skipped_with_a_warning_while_the_next_answers") {
        return;
    }
    let published = Published::new();
    let missing = published.server.url("missing.json");
    let garbage = published.server.put("garbage.json", &b"\x00\xffnot json at all"[..]);
    let ns = Namespace::new();
    let config = published.scratch.path().join("extensions.toml");
    fs::write(&config, published.config(&[&missing, &garbage, &published.catalog])).expect("config");

    let out = succeeded(offline(&ns, &config, &["install", "hello@1.0.0"]), "install past two bad catalogs");
    let warnings = stderr(&out);
    assert!(warnings.contains(&format!("catalog {missing} skipped: the server answered 404 Not Found")), "{warnings}");
    assert!(warnings.contains(&format!("catalog {garbage} skipped: not JSON")), "{warnings}");
    let (hello, record) = installed(&succeeded(offline(&ns, &config, &["list", "--json"]), "list"), ns.store());
    assert_eq!(hello["version"], "1.0.0");
    assert_eq!(record["catalog"]["catalog"], published.catalog.as_str(), "the third catalog answered: {record}");

    // Through the service the same: the job succeeds, the journal says what was skipped.
    let rig = Rig::start(&[], &published.config(&[&missing, &published.catalog]));
    succeeded(rig.kairos_ext(&["install", "hello"]), "install through the service");
    let (hello, _) = installed(&succeeded(rig.kairos_ext(&["list", "--json"]), "list"), rig.ns.store());
    assert_eq!(hello["version"], "1.1.0");
}

#[test]
fn an_entry_not_pinned_by_digest_is_refused_and_nothing_changes() {
    if !privileged("an_entry_not_pinned_by_digest_is_refused_and_nothing_changes") {
        return;
    }
    let published = Published::new();
    let by_tag = format!("{}/hello:1.1.0", published.registry.host());
    let unpinned = published.server.put("unpinned.json", document(&published.references[0], &by_tag).to_string());
    let ns = Namespace::new();
    let config = published.scratch.path().join("extensions.toml");
    fs::write(&config, published.config(&[&unpinned])).expect("config");
    succeeded(offline(&ns, &config, &["install", "hello@1.0.0"]), "the pinned version installs");
    let before = ns.snapshot("/var/lib/kairos/extensions/");

    for argument in ["hello", "hello@1.1.0", "hello@^1.1"] {
        let out = offline(&ns, &config, &["install", argument, "--replace"]);
        assert!(!out.status.success(), "{argument} was installed from a mutable tag");
        let message = stderr(&out);
        assert!(
            message.contains(&format!("catalog {unpinned}: hello 1.1.0 for {}", host_arch()))
                && message.contains(&format!("points at \"{by_tag}\", which is not pinned by digest")),
            "{argument}: {message}"
        );
        assert_eq!(ns.snapshot("/var/lib/kairos/extensions/"), before, "{argument}: the store changed");
    }

    let rig = Rig::start(&[], &published.config(&[&unpinned]));
    let out = rig.kairos_ext(&["install", "hello"]);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not pinned by digest"), "{}", stderr(&out));
    assert!(rig.store_snapshot().iter().all(|entry| !entry.starts_with("hello")), "{:?}", rig.store_snapshot());
}

#[test]
fn hostile_catalogs_give_precise_errors() {
    if !privileged("hostile_catalogs_give_precise_errors") {
        return;
    }
    let published = Published::new();
    let huge = published.server.put("huge.json", vec![b' '; 9 << 20]);
    let garbage = published.server.put("garbage.json", &b"{\"layers\": [1, 2"[..]);
    let not_a_catalog = published.server.put("list.json", &b"[\"hello\"]"[..]);
    let bad_names = published.server.put(
        "names.json",
        json!({"layers": [
            {"name": "../evil", "tags": []},
            {"name": "Hello World", "tags": []},
            {"name": "x".repeat(200), "tags": []},
            {"name": "hello", "tags": [{"tag": "1.0.0", "sysext": {host_arch(): {"oci": published.references[0]}}},
                                       {"tag": "bad\nversion"}]}
        ]})
        .to_string(),
    );
    let ns = Namespace::new();
    let config = published.scratch.path().join("extensions.toml");
    fs::write(&config, published.config(&[])).expect("config");
    let kx = |catalog: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--catalog", catalog]);
        offline(&ns, &config, &all)
    };

    for (catalog, expected) in [
        (&huge, "larger than the 8388608 bytes a catalog may be".to_owned()),
        (&garbage, "not JSON: EOF while parsing a list".to_owned()),
        (&not_a_catalog, "not a catalog: the document is not a JSON object".to_owned()),
    ] {
        let out = kx(catalog, &["install", "hello"]);
        assert!(!out.status.success(), "{catalog}");
        let message = stderr(&out);
        assert!(
            message.contains(&format!("no catalog has an extension named \"hello\" (searched: none could be read); catalog {catalog} skipped: {expected}")),
            "{catalog}: {message}"
        );
        assert!(!ns.store().join("hello.raw").exists());
    }

    let out = succeeded(kx(&bad_names, &["install", "hello"]), "install from a catalog with bad entries");
    let warnings = stderr(&out);
    for expected in [
        "layer 1 (\"../evil\") skipped: extension name \"../evil\" must start with a letter or a digit",
        "layer 2 (\"Hello World\") skipped: extension name \"Hello World\" contains ' '",
        "layer 3 (\"xxxx",
        "layer 4 (\"hello\"), tag 2 skipped: the version \"bad version\"",
    ] {
        assert!(warnings.contains(expected), "no {expected:?} in {warnings}");
    }
    let listed = succeeded(kx(&bad_names, &["search", "--json"]), "search");
    let names: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(names.as_array().map(Vec::len), Some(1), "only the good entry is listed: {names}");

    // Over the bus, ListCatalog says what kind of failure it was.
    let rig = Rig::start(&[], &published.config(&[&huge]));
    let verdict = rig.probe(0, &["call", "/org/kairos/Extensions1", "org.kairos.Extensions1.Manager", "ListCatalog"]);
    assert_eq!(verdict["error"]["name"], "org.kairos.Extensions1.Error.TooLarge", "{verdict}");
    assert!(verdict["error"]["message"].as_str().unwrap_or("").contains(&huge), "{verdict}");
}

/// The catalog `document` makes, offering 1.0.0 alone (as it was before 1.1.0 came out).
fn first_release_only(published: &Published) -> Value {
    let mut doc = document(&published.references[0], &published.references[1]);
    doc["layers"][0]["latest"] = json!("1.0.0");
    if let Some(tags) = doc["layers"][0]["tags"].as_array_mut() {
        tags.remove(0);
    }
    doc
}

/// The `check --json` row of `hello`.
fn checked(out: &Output) -> Value {
    let rows: Value = serde_json::from_slice(&out.stdout).expect("check --json prints JSON");
    rows.as_array().and_then(|rows| rows.iter().find(|r| r["name"] == "hello")).cloned().unwrap_or(Value::Null)
}

#[test]
fn check_and_update_follow_a_newer_version_and_an_exact_version_is_a_pin() {
    if !privileged("check_and_update_follow_a_newer_version_and_an_exact_version_is_a_pin") {
        return;
    }
    let published = Published::new();
    let moving = published.server.put("moving.json", first_release_only(&published).to_string());
    let ns = Namespace::new();
    let config = published.scratch.path().join("extensions.toml");
    fs::write(&config, published.config(&[&moving])).expect("config");
    let kx = |args: &[&str]| offline(&ns, &config, args);
    let version = |what: &str| {
        let (hello, _) = installed(&succeeded(kx(&["list", "--json"]), what), ns.store());
        hello["version"].as_str().unwrap_or_default().to_owned()
    };

    // A constraint follows the newest match once the catalog offers it.
    succeeded(kx(&["install", "hello@^1.0"]), "install hello@^1.0");
    assert_eq!(version("list"), "1.0.0");
    let row = checked(&succeeded(kx(&["check", "--json"]), "check"));
    assert_eq!((&row["check"], &row["update_available"]), (&json!("ok"), &json!(false)), "{row}");
    published.server.put("moving.json", document(&published.references[0], &published.references[1]).to_string());
    let row = checked(&succeeded(kx(&["check", "--json"]), "check"));
    assert_eq!((&row["check"], &row["update_available"]), (&json!("ok"), &json!(true)), "{row}");
    assert_eq!(row["available_version"], "1.1.0", "{row}");
    assert_eq!(row["available_source"], format!("oci://{}", published.references[1]), "{row}");
    let updated = succeeded(kx(&["update", "hello"]), "update");
    assert!(stdout(&updated).contains("Updated hello from 1.0.0 to 1.1.0"), "{}", stdout(&updated));
    assert_eq!(version("list"), "1.1.0");
    let row = checked(&succeeded(kx(&["check", "--json"]), "check"));
    assert_eq!(row["update_available"], false, "1.1.0 is the newest match: {row}");
    succeeded(kx(&["rollback", "hello"]), "rollback");
    assert_eq!(version("list"), "1.0.0");

    // An exact version is a pin: a newer version is reported, not installed, until
    // NAME@VERSION moves the pin.
    succeeded(kx(&["install", "hello@1.0.0", "--replace"]), "install hello@1.0.0");
    let row = checked(&succeeded(kx(&["check", "--json"]), "check"));
    assert_eq!((&row["check"], &row["update_available"]), (&json!("pinned"), &json!(false)), "{row}");
    assert_eq!(row["available_version"], "1.1.0", "the newer version is still told: {row}");
    let skipped = succeeded(kx(&["update", "hello"]), "update of a pin");
    assert!(stdout(&skipped).contains("pinned to version 1.0.0"), "{}", stdout(&skipped));
    assert_eq!(version("list"), "1.0.0");
    succeeded(kx(&["update", "hello@1.1.0"]), "update hello@1.1.0");
    let (hello, record) = installed(&succeeded(kx(&["list", "--json"]), "list"), ns.store());
    assert_eq!(hello["version"], "1.1.0", "{hello}");
    assert_eq!(record["catalog"]["request"], json!({"kind": "exact", "text": "1.1.0"}), "the new pin: {record}");
    let refused = kx(&["update", "hello@9.9.9"]);
    assert!(!refused.status.success(), "a version the catalog does not have");
    assert_eq!(version("list"), "1.1.0", "a failed update changes nothing");

    // Through the service, the check job reads the catalog and the update follows it.
    let service_published = published;
    service_published.server.put("moving.json", first_release_only(&service_published).to_string());
    let rig = Rig::start(&[], &service_published.config(&[&moving]));
    succeeded(rig.kairos_ext(&["install", "hello@^1.0"]), "install through the service");
    service_published
        .server
        .put("moving.json", document(&service_published.references[0], &service_published.references[1]).to_string());
    let row = checked(&succeeded(rig.kairos_ext(&["check", "--json"]), "check through the service"));
    assert_eq!((&row["update_available"], &row["available_version"]), (&json!(true), &json!("1.1.0")), "{row}");
    succeeded(rig.kairos_ext(&["update", "hello"]), "update through the service");
    let listed: Value =
        serde_json::from_slice(&succeeded(rig.kairos_ext(&["list", "--json"]), "list").stdout).expect("list --json");
    let hello = listed.as_array().and_then(|all| all.iter().find(|e| e["name"] == "hello")).cloned();
    assert_eq!(hello.map(|h| h["version"].clone()), Some(json!("1.1.0")));
}
