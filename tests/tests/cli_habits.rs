//! `kairos-ext` with systemctl's habits, against real components: `--json=MODE`,
//! `--no-legend`, `--no-pager` and a pager on a terminal, `-q`, `list --boot STATE`,
//! colour on a terminal only, local times and binary sizes, exit statuses with meaning,
//! and messages in the command line's words, the same offline and through the service.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kairos_extensions_tests::http::{Behaviour, FileServer};
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::eventually;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::system::{Rig, SystemBus};
use kairos_extensions_tests::{bins, privileged, stderr, stdout};
use serde_json::Value;

const QUICK: &str = "idle_exit_sec = 0\n";

fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

fn succeeded(output: Output, what: &str) -> Output {
    assert!(output.status.success(), "{what} failed: {} {}", stdout(&output), stderr(&output));
    output
}

/// `kairos-ext --root / args...` inside the service's namespace: the same store, no bus.
fn offline(ns: &Namespace, args: &[&str]) -> Output {
    ns.command(bins::kairos_ext()).args(["--root", "/"]).args(args).stdin(Stdio::null()).output().expect("runs")
}

/// A URL on a loopback port where nothing listens.
fn dead_url(file: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/{file}")
}

/// The one error kairos-ext printed on standard error, without its prefix; progress
/// lines (an install's phases) may come before it.
fn said(output: &Output) -> String {
    let text = stderr(output);
    let errors: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("kairos-ext: ")).collect();
    assert_eq!(errors.len(), 1, "one error, said once: {text:?}");
    assert!(text.trim_end().ends_with(errors[0]), "the error is the last word: {text:?}");
    let line = errors[0];
    for raw in ["org.freedesktop.DBus.Error", "org.kairos.Extensions1.Error", "pass replace", "'now'"] {
        assert!(!line.contains(raw), "no bus words for people: {line:?}");
    }
    line.to_owned()
}

#[test]
fn failures_read_and_exit_the_same_offline_and_through_the_service() {
    if !privileged("failures_read_and_exit_the_same_offline_and_through_the_service") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let hello = ImageBuilder::new("hello").build(rig.scratch.path(), "hello.raw");
    let hello = hello.to_str().expect("utf-8").to_owned();
    succeeded(rig.kairos_ext(&["install", &hello]), "install");
    let copy = rig.scratch.path().join("copy");
    fs::create_dir(&copy).expect("dir");
    // Named otherwise: only its extension-release says it is hello.
    let renamed = copy.join("renamed.raw");
    fs::copy(&hello, &renamed).expect("copy");
    let renamed = renamed.to_str().expect("utf-8").to_owned();
    let taken_url = dead_url("hello.raw");
    let dead = dead_url("hello.raw");
    let missing = format!("{}/missing.raw", rig.scratch.path().display());
    let before = rig.store_snapshot();

    let exists = "extension \"hello\" is already installed; pass --replace to overwrite it";
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (vec!["inspect", "nope"], 3, "no extension named \"nope\" is installed".into()),
        (vec!["enable", "nope", "--common"], 3, "no extension named \"nope\" is installed".into()),
        (vec!["remove", "nope"], 3, "no extension named \"nope\" is installed".into()),
        (vec!["install", &hello], 1, format!("cannot install {hello}: {exists}")),
        (vec!["install", &renamed], 1, format!("cannot install {renamed}: {exists}")),
        // Nothing listens there: a download would fail otherwise.
        (vec!["install", &taken_url], 1, format!("cannot install {taken_url}: {exists}")),
        (vec!["install", &dead, "--name", "hello"], 1, format!("cannot install {dead}: {exists}")),
        (vec!["install", &missing], 1, format!("cannot install {missing}: cannot open {missing}: ")),
    ];
    for (args, status, expected) in &cases {
        let through = rig.kairos_ext(args);
        let local = offline(&rig.ns, args);
        assert_eq!((code(&through), code(&local)), (Some(*status), Some(*status)), "{args:?}: {}", stderr(&through));
        let (through, local) = (said(&through), said(&local));
        assert_eq!(through, local, "{args:?}: the same words offline and through the service");
        assert!(through.starts_with(expected.as_str()), "{args:?}: {through:?}");
    }
    assert_eq!(rig.store_snapshot(), before, "no failure changed the store");

    // An unreachable URL is named once, and so is the reason.
    let args = ["install", dead.as_str(), "--replace"];
    let (through, local) = (rig.kairos_ext(&args), offline(&rig.ns, &args));
    assert_eq!((code(&through), code(&local)), (Some(1), Some(1)));
    let line = said(&through);
    assert_eq!(line, said(&local));
    assert_eq!(line.matches(dead.as_str()).count(), 1, "{line}");
    assert_eq!(line.matches("Connection refused").count(), 1, "{line}");

    // Jobs exist only in the service.
    let cancel = rig.kairos_ext(&["cancel", "99"]);
    assert_eq!((code(&cancel), said(&cancel)), (Some(3), "no job 99".to_owned()));
    for args in [["--root", "/", "jobs"], ["--root", "/", "status"]] {
        let out = rig.ns.command(bins::kairos_ext()).args(args).output().expect("runs");
        assert_eq!(code(&out), Some(2), "{args:?}");
        assert!(said(&out).contains("has no offline form; drop --root"), "{}", stderr(&out));
    }
    for args in [
        vec!["jobs", "--root", "/"],
        vec!["install", "x.raw", "--digest", "md5:00"],
        vec!["frobnicate"],
        vec!["update", "../x"],
        vec!["update", "k3s@"],
        vec!["update", "k3s@1", "nginx"],
    ] {
        assert_eq!(code(&rig.kairos_ext(&args)), Some(2), "{args:?} is a usage error");
    }
}

/// Root's local files go to the service as open files, like everyone else's: under the
/// shipped unit (PrivateTmp=, ProtectHome=) the service cannot see /tmp, /home or /root,
/// so a path it had to open itself would not be there. Here the service sees an empty
/// tmpfs where the image is, as PrivateTmp= would show it.
#[test]
fn root_installs_local_files_the_service_cannot_see() {
    if !privileged("root_installs_local_files_the_service_cannot_see") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let hidden = rig.scratch.path().join("hidden");
    fs::create_dir(&hidden).expect("dir");
    let image = ImageBuilder::new("hello").build(&hidden, "hello.raw");
    let (dir, path) = (hidden.to_str().expect("utf-8"), image.to_str().expect("utf-8"));
    let out = rig.ns.run("mount", &["-t", "tmpfs", "tmpfs", dir]);
    assert!(out.status.success(), "mount: {}", stderr(&out));
    assert!(!rig.ns.run("test", &["-e", path]).status.success(), "the service must not see {path}");

    let url = format!("file://{path}");
    for (source, what) in [(path, "a path"), (url.as_str(), "a file:// URL")] {
        let out = succeeded(rig.kairos_ext(&["install", source, "--replace", "--enable", "common"]), what);
        assert!(stdout(&out).contains("Installed hello"), "{what}: {}", stdout(&out));
        let listed = json(&succeeded(rig.kairos_ext(&["list", "--json"]), "list"));
        let hello = listed.as_array().and_then(|l| l.iter().find(|e| e["name"] == "hello")).expect("hello is listed");
        assert_eq!(hello["source"], format!("fd:{path}"), "{what}: handed over as an open file");
        assert_eq!(hello["enabled"], serde_json::json!(["common"]), "{what}: {hello}");
    }
}

#[test]
fn without_the_service_every_verb_says_so_once_and_names_the_offline_form() {
    if !privileged("without_the_service_every_verb_says_so_once_and_names_the_offline_form") {
        return;
    }
    let bus = SystemBus::start();
    let scratch = tempfile::tempdir().expect("scratch");
    let image = scratch.path().join("x.raw");
    fs::write(&image, "not even an image").expect("file");
    let image = image.to_str().expect("utf-8");
    let verbs: [&[&str]; 15] = [
        &["list"],
        &["inspect", "k3s"],
        &["install", image],
        &["enable", "k3s", "--common"],
        &["disable", "k3s", "--common"],
        &["remove", "k3s"],
        &["refresh"],
        &["check"],
        &["update", "--all"],
        &["rollback", "k3s"],
        &["search"],
        &["jobs"],
        &["cancel", "1"],
        &["status"],
        &["monitor"],
    ];
    for args in verbs {
        let out = bus.command(bins::kairos_ext()).args(args).stdin(Stdio::null()).output().expect("runs");
        assert_eq!(code(&out), Some(5), "{args:?}: {}", stderr(&out));
        let line = said(&out);
        assert!(line.contains("kairos-extensionsd service is not running"), "{args:?}: {line}");
        let offline_verb = !["jobs", "cancel", "status", "monitor"].contains(&args[0]);
        if offline_verb {
            assert!(line.contains(&format!("`kairos-ext --root / {} ...` works without it", args[0])), "{line}");
        } else {
            assert!(line.contains(&format!("{} needs it", args[0])) && line.contains("--root /"), "{line}");
        }
    }
    let out = Command::new(bins::kairos_ext())
        .arg("list")
        .env("DBUS_SYSTEM_BUS_ADDRESS", format!("unix:path={}/no-bus", scratch.path().display()))
        .output()
        .expect("runs");
    assert_eq!(code(&out), Some(5));
    assert!(said(&out).contains("cannot connect to the system bus"), "{}", stderr(&out));
}

#[test]
fn not_authorized_is_status_4_through_polkit_and_through_the_file_system() {
    if !privileged("not_authorized_is_status_4_through_polkit_and_through_the_file_system") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let hello = ImageBuilder::new("hello").build(rig.scratch.path(), "hello.raw");
    let hello = hello.to_str().expect("utf-8");
    succeeded(rig.kairos_ext(&["install", hello]), "install");
    for args in [vec!["enable", "hello", "--common"], vec!["remove", "hello"], vec!["refresh"]] {
        let out = rig.kairos_ext_as_nobody(&args);
        assert_eq!(code(&out), Some(4), "{args:?}: {}", stderr(&out));
        assert!(said(&out).contains("polkit"), "{}", stderr(&out));
    }
    // Offline, the store's directory is root's.
    use std::os::unix::process::CommandExt;
    let root = tempfile::Builder::new().prefix("kx-root-").tempdir().expect("root");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("mode");
    let out = Command::new(bins::kairos_ext())
        .arg("--root")
        .arg(root.path())
        .args(["install", hello])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("runs");
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));
    assert!(said(&out).contains("Permission denied"), "{}", stderr(&out));
}

/// Reads lines of a running `kairos-ext monitor` as they come.
struct Watch {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(rig: &Rig, args: &[&str]) -> Self {
        let mut child = rig
            .bus
            .command(bins::kairos_ext())
            .arg("monitor")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("monitor runs");
        let out = child.stdout.take().expect("piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Self { child, lines }
    }

    fn next(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(30)).expect("a signal line")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("JSON: {e}: {}", stdout(output)))
}

#[test]
fn output_options_shape_every_verb_that_prints_data() {
    if !privileged("output_options_shape_every_verb_that_prints_data") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let hello = ImageBuilder::new("hello").noise(5000).build(rig.scratch.path(), "hello.raw");
    let tools = ImageBuilder::new("tools").build(rig.scratch.path(), "tools.raw");
    let (hello, tools) = (hello.to_str().expect("utf-8"), tools.to_str().expect("utf-8"));
    let quiet = succeeded(rig.kairos_ext(&["-q", "install", hello, "--enable", "active"]), "install -q");
    assert_eq!(stdout(&quiet), "", "-q leaves out the confirmation");
    let loud = succeeded(rig.kairos_ext(&["-v", "install", tools, "--enable", "common", "--now"]), "install -v");
    let log = stderr(&loud);
    for step in ["calling install", "the install runs as job 2", "job 2 ended: done"] {
        assert!(log.contains(step), "-v says {step:?}: {log}");
    }
    let size = fs::metadata(tools).expect("image").len();
    assert!(stdout(&loud).starts_with("Installed tools (sha256:"), "{}", stdout(&loud));
    assert!(stdout(&loud).contains(&format!(", {:.1} KiB)", size as f64 / 1024.0)), "{}", stdout(&loud));

    // list: JSON in both forms, text with and without the legend, and the filter.
    let short = succeeded(rig.kairos_ext(&["list", "--json"]), "list --json");
    assert_eq!(stdout(&short).lines().count(), 1, "a bare --json is short: one line");
    let pretty = succeeded(rig.kairos_ext(&["list", "--json=pretty"]), "list --json=pretty");
    assert!(stdout(&pretty).lines().count() > 10);
    assert_eq!(json(&short), json(&pretty));
    assert_eq!(json(&short).as_array().map(Vec::len), Some(2));
    let text = stdout(&succeeded(rig.kairos_ext(&["list", "--json=off"]), "list --json=off"));
    assert!(text.starts_with("NAME ") && text.lines().count() == 3, "{text}");
    let bare = stdout(&succeeded(rig.kairos_ext(&["list", "--no-legend"]), "list --no-legend"));
    assert_eq!(bare.lines().map(|l| l.split_whitespace().next()).collect::<Vec<_>>(), [Some("hello"), Some("tools")]);
    for (filter, names) in
        [(vec!["--active"], vec!["hello"]), (vec!["--boot", "common"], vec!["tools"]), (vec!["--passive"], vec![])]
    {
        let args: Vec<&str> = ["list", "--json"].into_iter().chain(filter.iter().copied()).collect();
        let listed = json(&succeeded(rig.kairos_ext(&args), "list filtered"));
        let listed: Vec<&str> = listed.as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(listed, names, "{filter:?}");
        let text = ["list"].into_iter().chain(filter.iter().copied()).collect::<Vec<_>>();
        assert_eq!(stdout(&rig.kairos_ext(&text)), stdout(&offline(&rig.ns, &text)), "{filter:?} offline too");
    }
    let none = stdout(&rig.kairos_ext(&["list", "--recovery"]));
    assert_eq!(none, "No extensions enabled for recovery.\n");
    assert_eq!(stdout(&rig.kairos_ext(&["list", "--recovery", "--no-legend"])), "");

    // inspect: sizes in binary units and local time in text, exact numbers in JSON.
    let described = json(&succeeded(rig.kairos_ext(&["inspect", "hello", "--json"]), "inspect --json"));
    let bytes = described["size"].as_u64().expect("size in bytes");
    assert_eq!(bytes, fs::metadata(hello).expect("image").len());
    let micros = described["installed_time"].as_u64().expect("µs");
    let at = |tz: &str| {
        let out = rig.bus.command(bins::kairos_ext()).args(["inspect", "hello"]).env("TZ", tz).output();
        let text = stdout(&succeeded(out.expect("runs"), "inspect"));
        assert!(text.contains(&format!("(Image, {:.1} KiB)", bytes as f64 / 1024.0)), "{text}");
        text.lines().find_map(|l| l.strip_prefix("Installed:  ")).map(str::to_owned).expect("an Installed line")
    };
    let (utc, tokyo) = (at("UTC"), at("Asia/Tokyo"));
    assert!(utc.ends_with(" +00:00") && tokyo.ends_with(" +09:00"), "{utc} / {tokyo}");
    let hour = |t: &str| t.split_whitespace().nth(2).and_then(|h| h[..2].parse::<u64>().ok()).expect("HH:MM:SS");
    assert_eq!(hour(&utc), (micros / 3_600_000_000) % 24, "{utc}");
    assert_eq!(hour(&tokyo), (hour(&utc) + 9) % 24, "{tokyo}");

    // status, jobs, refresh.
    let status = json(&succeeded(rig.kairos_ext(&["status", "--json"]), "status --json"));
    assert_eq!(status["service"], "org.kairos.Extensions1");
    assert!(status["merged"].is_array() && status["image_policy"].is_string(), "{status}");
    assert!(stdout(&rig.kairos_ext(&["status"])).starts_with("Service:      org.kairos.Extensions1 "));
    assert_eq!(stdout(&rig.kairos_ext(&["jobs"])), "No jobs running.\n");
    assert_eq!(stdout(&rig.kairos_ext(&["jobs", "--no-legend"])), "");
    assert_eq!(json(&rig.kairos_ext(&["jobs", "--json"])), serde_json::json!([]));
    let refreshed = json(&succeeded(rig.kairos_ext(&["refresh", "--json"]), "refresh --json"));
    assert_eq!(refreshed, serde_json::json!({ "merged": ["tools"] }));
    assert_eq!(stdout(&rig.kairos_ext(&["refresh", "--no-legend"])), "tools\n");
    assert_eq!(stdout(&offline(&rig.ns, &["refresh", "--json=pretty"])), "{\n  \"merged\": [\n    \"tools\"\n  ]\n}\n");

    // monitor: every line carries the time it arrived.
    let text_watch = Watch::start(&rig, &["--no-legend"]);
    let json_watch = Watch::start(&rig, &["--json"]);
    std::thread::sleep(Duration::from_millis(500));
    succeeded(rig.kairos_ext(&["enable", "hello", "--passive"]), "enable");
    let line = text_watch.next();
    let date = line.split_whitespace().next().unwrap_or_default();
    assert!(date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-', "{line}");
    let record: Value = serde_json::from_str(&json_watch.next()).expect("one JSON object per line");
    assert!(record["timestamp"].as_u64().is_some_and(|t| t > micros), "{record}");
    assert!(record["signal"].is_string() && record["args"].is_array(), "{record}");

    // jobs has a header, and cancel names its job.
    let slow = ImageBuilder::new("slow").noise(3 << 20).build(rig.scratch.path(), "slow.raw");
    let server = FileServer::start_with(fs::read(slow).expect("image"), Behaviour::Trickle);
    let install = rig
        .bus
        .command(bins::kairos_ext())
        .args(["install", &server.url("slow.raw")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("install runs");
    let mut id = None;
    assert!(
        eventually(Duration::from_secs(20), || {
            id = json(&rig.kairos_ext(&["jobs", "--json"]))[0]["id"].as_u64();
            id.is_some()
        }),
        "the install shows in jobs"
    );
    let id = id.expect("an id").to_string();
    let jobs = stdout(&rig.kairos_ext(&["jobs"]));
    let mut lines = jobs.lines();
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["ID", "TYPE", "STATE", "PHASE", "PROGRESS", "SOURCE"])
    );
    assert!(lines.next().is_some_and(|l| l.starts_with(&format!("{id} ")) && l.contains("install")), "{jobs}");
    let cancel = succeeded(rig.kairos_ext(&["cancel", &id]), "cancel");
    assert_eq!(stdout(&cancel), format!("Cancel requested for job {id}\n"));
    let ended = install.wait_with_output().expect("install ends");
    assert_eq!(code(&ended), Some(1));
    assert!(stderr(&ended).contains("install canceled"), "{}", stderr(&ended));
}

/// Runs `kairos-ext args...` on a pseudo-terminal (through `script`) with `env`; returns
/// what the terminal showed.
fn on_terminal(args: &[&str], env: &[(&str, &str)]) -> String {
    let line = std::iter::once(bins::kairos_ext().display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .map(|word| format!("'{word}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("script");
    command.args(["-qec", &line, "/dev/null"]).env_remove("NO_COLOR").env("TERM", "xterm").stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("script runs (Debian package util-linux)");
    assert!(out.status.success(), "{line}: {}", stdout(&out));
    stdout(&out).replace("\r\n", "\n")
}

/// An image root with one extension installed, prepared offline.
fn image_root() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new().prefix("kx-habits-").tempdir().expect("root");
    fs::create_dir_all(root.path().join("etc")).expect("etc");
    fs::copy("/etc/os-release", root.path().join("etc/os-release")).expect("os-release");
    let image = ImageBuilder::new("hello").build(root.path(), "hello.raw");
    let out = Command::new(bins::kairos_ext()).arg("--root").arg(root.path()).arg("install").arg(&image).output();
    succeeded(out.expect("runs"), "offline install");
    let path = root.path().to_path_buf();
    (root, path)
}

#[test]
fn colour_and_the_pager_only_on_a_terminal() {
    if !privileged("colour_and_the_pager_only_on_a_terminal") {
        return;
    }
    let (_keep, root) = image_root();
    let root = root.to_str().expect("utf-8");
    let list = ["--root", root, "list", "--no-pager"];
    let coloured = on_terminal(&list, &[]);
    assert!(coloured.starts_with("\x1b[1mNAME\x1b[0m"), "a bold header: {coloured:?}");
    assert!(coloured.contains("\x1b[32mok\x1b[0m"), "a green status: {coloured:?}");
    for env in [[("NO_COLOR", "1")], [("TERM", "dumb")]] {
        let plain = on_terminal(&list, &env);
        assert!(!plain.contains('\x1b') && plain.starts_with("NAME "), "{env:?}: {plain:?}");
    }
    let piped = Command::new(bins::kairos_ext()).args(&list[..3]).output().expect("runs");
    assert!(!stdout(&piped).contains('\x1b') && stdout(&piped).starts_with("NAME "), "{}", stdout(&piped));

    // The pager: on a terminal only, not with --no-pager, and `cat` means none.
    let pager = [("PAGER", "sed s/^/paged:/"), ("NO_COLOR", "1")];
    let paged = on_terminal(&["--root", root, "inspect", "hello"], &pager);
    assert!(paged.lines().all(|l| l.starts_with("paged:")) && paged.contains("paged:Name:       hello"), "{paged}");
    let unpaged = on_terminal(&["--root", root, "inspect", "hello", "--no-pager"], &pager);
    assert!(unpaged.starts_with("Name:       hello"), "{unpaged}");
    let systemd_first = on_terminal(&["--root", root, "list"], &[("SYSTEMD_PAGER", "cat"), pager[0], pager[1]]);
    assert!(systemd_first.starts_with("NAME "), "SYSTEMD_PAGER wins over PAGER: {systemd_first}");
    let piped = Command::new(bins::kairos_ext())
        .args(["--root", root, "inspect", "hello"])
        .env("PAGER", pager[0].1)
        .output()
        .expect("runs");
    assert!(stdout(&piped).starts_with("Name:"), "no pager into a pipe");
}

fn help(args: &[&str]) -> String {
    let out = Command::new(bins::kairos_ext()).args(args).arg("--help").output().expect("runs");
    stdout(&succeeded(out, "--help"))
}

#[test]
fn help_man_page_and_verbs_agree_on_the_options() {
    for verb in ["list", "inspect", "status", "jobs", "refresh", "monitor", "check", "search"] {
        let text = help(&[verb]);
        for option in ["--json[=<MODE>]", "--no-pager", "--no-legend", "--quiet"] {
            assert!(text.contains(option), "{verb} --help lacks {option}:\n{text}");
        }
    }
    for verb in ["jobs", "cancel", "status", "monitor"] {
        let text = help(&[verb]);
        assert!(!text.contains("--root") && !text.contains("--config"), "{verb} offers offline mode:\n{text}");
    }
    for verb in [
        "list", "inspect", "install", "enable", "disable", "remove", "refresh", "check", "update", "rollback", "search",
    ] {
        assert!(help(&[verb]).contains("--root <DIR>"), "{verb} lacks --root");
    }
    assert!(help(&["list"]).contains("--active"), "list filters like kairos-agent");

    let out = tempfile::tempdir().expect("dir");
    let status = Command::new(bins::find("kairos-extensions-gendoc")).arg(out.path()).status().expect("gendoc runs");
    assert!(status.success());
    let page = fs::read_to_string(out.path().join("man/kairos-ext.1")).expect("page");
    let exit_status = page.split(".SH \"EXIT STATUS\"").nth(1).expect("EXIT STATUS").split(".SH ").next().unwrap_or("");
    for (code, meaning) in [
        ("0", "succeeded"),
        ("1", "failed"),
        ("2", "command line"),
        ("3", "no such"),
        ("4", "polkit"),
        ("5", "service"),
    ] {
        assert!(exit_status.contains(&format!(".B {code}\n")), "exit status {code} is documented");
        assert!(exit_status.to_lowercase().contains(meaning), "{code}: {meaning}");
    }
    for variable in
        ["NO_COLOR", "SYSTEMD_COLORS", "SYSTEMD_PAGER", "PAGER", "SYSTEMD_LESS", "SYSTEMD_PAGERSECURE", "TZ"]
    {
        assert!(page.contains(&format!(".B {variable}\n")), "kairos-ext(1) documents {variable}");
    }
}
