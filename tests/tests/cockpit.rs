//! The Cockpit page in a real browser, against real components (TESTING.md, "The Cockpit
//! page in a real browser"): Debian's cockpit-ws and cockpit-bridge serve the built page
//! (`make cockpit`), Debian's Chromium runs it, driven by playwright-core from the page's
//! lock file (`cockpit/test/page.mjs`, run with `node --test`). Behind it: a private system
//! bus with our policy, real polkitd, kairos-extensionsd merging for real in a private
//! mount namespace, a local docker-registry and a slow HTTP server. The registry also
//! holds `greeter:latest`, which the page sees move from v1 to v2 (the test pushes v2
//! while it runs, with the command in `KX_PUSH_UPDATE`), updates and rolls back.
//!
//! cockpit-ws runs inside the service's mount namespace, so what Cockpit reads (the boot
//! report in /run) is the sandboxed system's, as it would be on a real machine. A second
//! cockpit-ws runs as `nobody`: its bridge has no administrative access, so that session
//! must see the page read-only.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kairos_extensions_tests::http::{Behaviour, FileServer};
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{Registry, gzip_layer_layout, tar};
use kairos_extensions_tests::system::{Polkit, Service, SystemBus};
use kairos_extensions_tests::{bins, privileged, require, stderr, stdout};

const NOBODY: u32 = 65534;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the browser test needs beyond the other privileged tests; like
/// [`privileged`], a missing piece fails the test unless `KAIROS_TESTS_SKIP_PRIVILEGED=1`.
fn browser_prerequisites(test: &str) -> bool {
    let cockpit = repo().join("cockpit");
    let node_found = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let checks = [
        (Path::new("/usr/lib/cockpit/cockpit-ws").exists(), "/usr/lib/cockpit/cockpit-ws (Debian package cockpit-ws)"),
        (Path::new("/usr/bin/cockpit-bridge").exists(), "/usr/bin/cockpit-bridge (Debian package cockpit-bridge)"),
        (Path::new("/usr/bin/chromium").exists(), "/usr/bin/chromium (Debian package chromium)"),
        (node_found, "node 20 or later"),
        (cockpit.join("dist/index.js.gz").exists(), "the built page cockpit/dist (run `make cockpit`)"),
        (
            cockpit.join("node_modules/playwright-core").exists(),
            "playwright-core in cockpit/node_modules (run `make cockpit`)",
        ),
    ];
    let missing: Vec<String> = checks.iter().filter(|(ok, _)| !ok).map(|(_, what)| (*what).to_owned()).collect();
    require(test, &missing)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes this test started, killed when it ends (the bridge leaves with cockpit-ws).
#[derive(Default)]
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `program` run as `uid` through setpriv, as TESTING.md does (uid 0 stays root).
fn as_user(mut command: Command, uid: u32, program: &str) -> Command {
    command.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".to_owned(), program.to_owned()]);
    command
}

/// One Cockpit session: its own session bus (so the bridge starts none it would orphan),
/// no ssh-agent, and cockpit-ws with a local bridge inside the service's namespace.
fn start_cockpit(children: &mut Children, bus: &SystemBus, ns: &Namespace, xdg: &Path, dir: &Path, uid: u32) -> u16 {
    fs::create_dir_all(dir).expect("session dir");
    if uid != 0 {
        std::os::unix::fs::chown(dir, Some(uid), Some(uid)).expect("session dir owner");
    }
    let session_socket = dir.join("session.sock");
    let session_bus = as_user(Command::new("setpriv"), uid, "dbus-daemon")
        .arg("--session")
        .arg(format!("--address=unix:path={}", session_socket.display()))
        .args(["--nofork", "--nopidfile"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a session bus starts (Debian package dbus)");
    children.0.push(session_bus);
    let started = Instant::now();
    while !session_socket.exists() {
        assert!(started.elapsed() < Duration::from_secs(10), "the session bus did not create its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = free_port();
    let child = as_user(ns.command("setpriv"), uid, "/usr/lib/cockpit/cockpit-ws")
        .args(["--no-tls", "--address", "127.0.0.1", "--port", &port.to_string(), "--local-session=cockpit-bridge"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("DBUS_SESSION_BUS_ADDRESS", format!("unix:path={}", session_socket.display()))
        .env("SSH_AUTH_SOCK", dir.join("no-ssh-agent"))
        .env("XDG_DATA_DIRS", format!("{}:/usr/share", xdg.display()))
        .env("XDG_RUNTIME_DIR", dir)
        .env("HOME", dir)
        .env("LANG", "C.UTF-8")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cockpit-ws starts (Debian package cockpit-ws)");
    children.0.push(child);
    wait_for_port(port, "cockpit-ws");
    port
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("page dir");
    for entry in fs::read_dir(from).expect("cockpit/dist").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy a page file");
        }
    }
}

/// Runs `kairos-ext --root / args...` inside `ns`, offline, as an image builder would.
fn offline(ns: &Namespace, config: &Path, args: &[&str]) {
    let out = ns.command(bins::kairos_ext()).args(["--root", "/", "--config"]).arg(config).args(args).output();
    let out = out.expect("kairos-ext runs");
    assert!(out.status.success(), "kairos-ext {args:?}: {}", stderr(&out));
}

#[test]
fn the_cockpit_page_in_a_real_browser() {
    if !privileged("the_cockpit_page_in_a_real_browser") {
        return;
    }
    if !browser_prerequisites("the_cockpit_page_in_a_real_browser") {
        return;
    }
    let scratch = tempfile::Builder::new().prefix("kx-cockpit-").tempdir().expect("scratch");
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).expect("scratch mode");
    let dir = scratch.path();
    let registry = Registry::start();
    let config = dir.join("extensions.toml");
    fs::write(&config, format!("idle_exit_sec = 0\nmax_jobs = 1\ninsecure_registries = [\"{}\"]\n", registry.host()))
        .expect("config");

    // A Kairos active boot that already happened: hello enabled for active and activated
    // by boot-activate, then merged as systemd-sysext.service would; alien (built for
    // another OS, copied into the store by hand and enabled for common) skipped.
    let ns = Namespace::new();
    ns.set_boot_state("active");
    let hello =
        ImageBuilder::new("hello").release("ID=_any\nVERSION_ID=1.0\n").command("hello", "hi").build(dir, "hello.raw");
    offline(&ns, &config, &["install", &format!("file://{}", hello.display()), "--enable", "active"]);
    let alien = ImageBuilder::new("alien").release("ID=nonexistent-os\nVERSION_ID=7\n").build(dir, "alien.raw");
    fs::copy(alien, ns.store().join("alien.raw")).expect("copy alien into the store");
    fs::create_dir_all(ns.store().join("common")).expect("common dir");
    std::os::unix::fs::symlink("../alien.raw", ns.store().join("common/alien.raw")).expect("enable alien");
    let activate = ns.command(bins::kairos_extensionsd()).args(["--config"]).arg(&config).arg("boot-activate").output();
    let activate = activate.expect("boot-activate runs");
    assert!(activate.status.success(), "boot-activate: {}", stderr(&activate));
    let merge = ns.run("systemd-sysext", &["refresh"]);
    assert!(merge.status.success(), "systemd-sysext refresh: {}", stderr(&merge));
    assert_eq!(ns.merged(), ["hello"], "the boot merged hello");

    // What the page installs: tools from the registry, and two slow downloads to cancel
    // (one at a time, max_jobs = 1: the second waits in line).
    let tools = ImageBuilder::new("tools")
        .release("ID=_any\nVERSION_ID=2.0\n")
        .command("kx-tools", "tools")
        .build(dir, "tools.raw");
    let layout = dir.join("layout-tools");
    gzip_layer_layout(&layout, "2.0", &tar(&[("tools.raw", &fs::read(&tools).expect("tools image"))]));
    registry.push(&layout, "2.0", "tools", false);
    let slow = |name: &str| {
        let image = ImageBuilder::new(name).noise(16 << 20).build(dir, &format!("{name}.raw"));
        FileServer::start_with(fs::read(image).expect("slow image"), Behaviour::Trickle)
    };
    let (slow_one, slow_two) = (slow("bigone"), slow("bigtwo"));
    let copied = ImageBuilder::new("copied").release("ID=_any\nVERSION_ID=3\n").build(dir, "copied.raw");

    // What the page updates and rolls back: greeter v1 under the tag `latest` now, and
    // v2 ready to be pushed under the same tag while the page looks on.
    let greeter_layout = |version: &str| {
        let image = ImageBuilder::new("greeter")
            .release(&format!("ID=_any\nSYSEXT_VERSION_ID={version}\n"))
            .command("kx-greeter", &format!("v{version}"))
            .build(dir, &format!("greeter-{version}.img"));
        let layout = dir.join(format!("layout-greeter-{version}"));
        gzip_layer_layout(&layout, "latest", &tar(&[("greeter.raw", &fs::read(&image).expect("greeter image"))]));
        layout
    };
    registry.push(&greeter_layout("1"), "latest", "greeter", false);
    let push_update = serde_json::json!([
        "skopeo",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        format!("oci:{}:latest", greeter_layout("2").display()),
        format!("docker://{}/greeter:latest", registry.host()),
    ])
    .to_string();

    let bus = SystemBus::start();
    let _polkit = Polkit::start(&bus, &[]);
    let _service = Service::start(&bus, &ns, &fs::read_to_string(&config).expect("config"));

    let xdg = dir.join("xdg");
    copy_dir(&repo().join("cockpit/dist"), &xdg.join("cockpit/kairos-extensions"));
    let mut children = Children::default();
    let admin_port = start_cockpit(&mut children, &bus, &ns, &xdg, &dir.join("admin"), 0);
    let reader_port = start_cockpit(&mut children, &bus, &ns, &xdg, &dir.join("reader"), NOBODY);

    // The page must follow the service through an idle exit and a restart; the test
    // stops it and starts it again with this command.
    let daemon = bins::kairos_extensionsd();
    let restart =
        serde_json::json!(["nsenter", "-t", ns.pid().to_string(), "-m", "--", daemon, "--config", config]).to_string();
    let screenshots =
        std::env::var_os("KAIROS_COCKPIT_SCREENSHOTS").map(PathBuf::from).unwrap_or_else(|| dir.join("shots"));
    let page = |port: u16| format!("http://127.0.0.1:{port}/cockpit/@localhost/kairos-extensions/index.html");
    let out = Command::new("node")
        .args(["--test", "--test-reporter=spec", "--test-timeout=150000", "test/page.mjs"])
        .current_dir(repo().join("cockpit"))
        .env("KX_ADMIN_URL", page(admin_port))
        .env("KX_READER_URL", page(reader_port))
        .env("KX_REGISTRY", registry.host())
        .env("KX_SLOW_ONE", slow_one.url("bigone.raw"))
        .env("KX_SLOW_TWO", slow_two.url("bigtwo.raw"))
        .env("KX_NS_PID", ns.pid().to_string())
        .env("KX_STORE", ns.store())
        .env("KX_COPIED_IMAGE", &copied)
        .env("KX_PUSH_UPDATE", push_update)
        .env("KX_KAIROS_EXT", bins::kairos_ext())
        .env("KX_SERVICE_COMMAND", restart)
        .env("KX_SCREENSHOTS", &screenshots)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .stdin(Stdio::null())
        .output()
        .expect("node runs");
    let (report, errors) = (stdout(&out), stderr(&out));
    eprintln!("{report}{errors}");
    assert!(out.status.success(), "the browser test failed (its report is above)");
    assert!(report.contains("ℹ fail 0") && !report.contains("ℹ pass 0"), "node's summary: {report}");
}
