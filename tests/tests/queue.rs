//! Jobs beyond `max_jobs` wait in line instead of being refused: real dbus-daemon,
//! polkitd and kairos-extensionsd, installing over HTTP from a server that holds every
//! download until the test opens its gate, so what runs and what waits is decided by
//! the test, not by timing.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kairos_extensions_dbus::proxies::ManagerProxy;
use kairos_extensions_tests::http::read_request;
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::{Monitor, eventually};
use kairos_extensions_tests::system::Rig;
use kairos_extensions_tests::{bins, privileged, stdout};
use serde_json::Value;

/// One job at a time: everything after the first waits in line.
const ONE_AT_A_TIME: &str = "idle_exit_sec = 0\nmax_jobs = 1\n";

/// What the gate guards: whether it is open, and which paths were asked for, in order.
#[derive(Default)]
struct Gate {
    open: bool,
    requested: Vec<String>,
}

/// A loopback HTTP server with one file per path. It notes every request as it
/// arrives and answers none until [`GatedServer::open`]: a job that asked is running,
/// one that did not never started downloading.
struct GatedServer {
    port: u16,
    gate: Arc<(Mutex<Gate>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl GatedServer {
    fn start(files: HashMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let gate = Arc::new((Mutex::new(Gate::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (files, shared_gate, flag) = (Arc::new(files), gate.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (files, gate) = (files.clone(), shared_gate.clone());
                std::thread::spawn(move || respond(stream, &files, &gate));
            }
        });
        Self { port, gate, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The paths asked for so far, in the order the requests came.
    fn requested(&self) -> Vec<String> {
        self.gate.0.lock().map(|g| g.requested.clone()).unwrap_or_default()
    }

    /// Lets every held and every later request through.
    fn open(&self) {
        if let Ok(mut gate) = self.gate.0.lock() {
            gate.open = true;
        }
        self.gate.1.notify_all();
    }

    /// Waits until exactly `paths` were asked for.
    fn wait_for_requests(&self, paths: &[&str]) {
        assert!(
            eventually(Duration::from_secs(20), || self.requested() == paths),
            "expected requests for {paths:?}, saw {:?}",
            self.requested()
        );
    }
}

fn respond(mut stream: TcpStream, files: &HashMap<String, Vec<u8>>, gate: &(Mutex<Gate>, Condvar)) {
    let Some(request) = read_request(&stream) else { return };
    let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
    let Ok(mut state) = gate.0.lock() else { return };
    state.requested.push(path.clone());
    // Bounded, so that a test that never opens the gate leaves no thread behind for long.
    let Ok((state, _)) = gate.1.wait_timeout_while(state, Duration::from_secs(120), |g| !g.open) else { return };
    drop(state);
    match files.get(&path) {
        Some(body) => {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(body);
        }
        None => {
            let _ = write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
}

impl Drop for GatedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.open();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A server with one small extension image per name, each at `<name>.raw`.
fn serve_images(rig: &Rig, names: &[&str]) -> GatedServer {
    let files = names
        .iter()
        .map(|name| {
            let image = ImageBuilder::new(name).build(rig.scratch.path(), &format!("{name}.img"));
            (format!("{name}.raw"), fs::read(image).expect("image bytes"))
        })
        .collect();
    GatedServer::start(files)
}

/// A job's property as busctl prints it: `u 2`, `s "queued"`.
fn job_property(rig: &Rig, id: u64, property: &str) -> String {
    let out = rig
        .bus
        .command("busctl")
        .args(["--system", "get-property", "org.kairos.Extensions1"])
        .arg(format!("/org/kairos/Extensions1/job/{id}"))
        .args(["org.kairos.Extensions1.Job", property])
        .output()
        .expect("busctl runs");
    stdout(&out).trim().to_owned()
}

/// Starts an install through bus-probe, which returns once the job is admitted.
fn start(rig: &Rig, source: &str) -> u64 {
    let verdict = rig.probe(0, &["install", source]);
    verdict["value"][0].as_u64().unwrap_or_else(|| panic!("install was not admitted: {verdict}"))
}

/// `kairos-ext install source` in the background, without a terminal; its stderr goes
/// to a file the test can read while it runs.
struct Install {
    child: Child,
    stdout: tempfile::NamedTempFile,
    stderr: tempfile::NamedTempFile,
}

impl Install {
    fn spawn(rig: &Rig, source: &str) -> Self {
        let (out, err) =
            (tempfile::NamedTempFile::new().expect("stdout"), tempfile::NamedTempFile::new().expect("err"));
        let child = rig
            .bus
            .command(bins::kairos_ext())
            .args(["install", source])
            .stdin(Stdio::null())
            .stdout(out.reopen().expect("stdout handle"))
            .stderr(err.reopen().expect("stderr handle"))
            .spawn()
            .expect("kairos-ext runs");
        Self { child, stdout: out, stderr: err }
    }

    /// The same on a pseudo-terminal made by script(1); what it draws goes to stdout.
    fn spawn_on_terminal(rig: &Rig, source: &str) -> Self {
        let (out, err) =
            (tempfile::NamedTempFile::new().expect("stdout"), tempfile::NamedTempFile::new().expect("err"));
        let line = format!("{} install {source}", bins::kairos_ext().display());
        let child = rig
            .bus
            .command("script")
            .args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .env("COLUMNS", "120")
            .stdin(Stdio::null())
            .stdout(out.reopen().expect("stdout handle"))
            .stderr(err.reopen().expect("stderr handle"))
            .spawn()
            .expect("script runs (Debian package bsdutils)");
        Self { child, stdout: out, stderr: err }
    }

    fn stdout(&self) -> String {
        fs::read_to_string(self.stdout.path()).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    fn wait_for_stdout(&self, text: &str) {
        assert!(
            eventually(Duration::from_secs(20), || self.stdout().contains(text)),
            "no {text:?} in {:?}",
            self.stdout()
        );
    }

    fn wait_for_stderr(&self, text: &str) {
        assert!(
            eventually(Duration::from_secs(20), || self.stderr().contains(text)),
            "no {text:?} in {:?}",
            self.stderr()
        );
    }

    fn interrupt(&self) {
        let sent = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(sent.success());
    }

    /// Waits for the end; whether it succeeded.
    fn finish(mut self) -> (bool, Self) {
        let mut status = None;
        let ended = eventually(Duration::from_secs(60), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if !ended {
            let _ = self.child.kill();
            panic!("kairos-ext did not end: {} / {}", self.stdout(), self.stderr());
        }
        (status.is_some_and(|s| s.success()), self)
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn jobs_beyond_max_jobs_wait_in_line_run_in_order_and_leave_the_line_when_canceled() {
    if !privileged("jobs_beyond_max_jobs_wait_in_line_run_in_order_and_leave_the_line_when_canceled") {
        return;
    }
    let rig = Rig::start(&[], ONE_AT_A_TIME);
    let server = serve_images(&rig, &["q1", "q2", "q3", "q4"]);
    let monitor = Monitor::start(&rig);

    let first = start(&rig, &server.url("q1.raw"));
    server.wait_for_requests(&["q1.raw"]);
    let queued: Vec<u64> =
        ["q2", "q3", "q4"].iter().map(|name| start(&rig, &server.url(&format!("{name}.raw")))).collect();
    for (ahead, id) in (1..).zip(&queued) {
        assert!(
            monitor.wait_for_within(Duration::from_secs(30), "JobNew", &[Value::from(*id)]),
            "a queued job is announced: {:?}",
            monitor.signals()
        );
        assert_eq!(job_property(&rig, *id, "State"), "s \"queued\"");
        assert_eq!(job_property(&rig, *id, "QueuePosition"), format!("u {ahead}"));
    }
    assert_eq!(job_property(&rig, first, "State"), "s \"running\"");
    assert_eq!(job_property(&rig, first, "QueuePosition"), "u 0");
    assert_eq!(start(&rig, &server.url("q3.raw")), queued[1], "the same install shares the queued job");

    let jobs = stdout(&rig.kairos_ext(&["jobs"]));
    for (id, ahead) in [(queued[0], "1 job ahead"), (queued[1], "2 jobs ahead"), (queued[2], "3 jobs ahead")] {
        assert!(
            jobs.lines()
                .any(|l| l.trim_start().starts_with(&format!("{id} ")) && l.contains("queued") && l.contains(ahead)),
            "job {id} is listed as queued, {ahead}: {jobs}"
        );
    }

    // Canceling the second in line ends it at once; the one behind it moves up.
    let canceled = queued[1];
    assert!(rig.kairos_ext(&["cancel", &canceled.to_string()]).status.success());
    assert!(
        monitor.wait_for_within(Duration::from_secs(30), "JobRemoved", &[Value::from(canceled)]),
        "{:?}",
        monitor.signals()
    );
    assert_eq!(monitor.removed(), [(canceled, "canceled".to_owned())], "only the canceled job ended");
    assert!(
        eventually(Duration::from_secs(10), || monitor.announced(queued[2], "QueuePosition", Value::from(2))),
        "the move up is announced: {:?}",
        monitor.signals()
    );
    assert_eq!(job_property(&rig, queued[2], "QueuePosition"), "u 2");
    assert_eq!(job_property(&rig, queued[0], "QueuePosition"), "u 1");

    server.open();
    for id in [first, queued[0], queued[2]] {
        assert!(
            monitor.wait_for_within(Duration::from_secs(30), "JobRemoved", &[Value::from(id)]),
            "{:?}",
            monitor.signals()
        );
    }
    let done = |id: u64| (id, "done".to_owned());
    assert_eq!(monitor.removed(), [(canceled, "canceled".to_owned()), done(first), done(queued[0]), done(queued[2])]);
    assert_eq!(server.requested(), ["q1.raw", "q2.raw", "q4.raw"], "in order, and the canceled job never ran");
    // Leaving the line is announced; `running` may be folded into `done` by the rate limit.
    assert!(monitor.announced(queued[0], "QueuePosition", Value::from(0)), "{:?}", monitor.signals());
    assert!(monitor.announced(queued[0], "State", Value::from("done")), "{:?}", monitor.signals());
    let store = rig.ns.store();
    for name in ["q1", "q2", "q4"] {
        assert!(store.join(format!("{name}.raw")).is_file(), "{name} is installed");
    }
    assert!(!store.join("q3.raw").exists(), "the canceled job installed nothing");
}

#[test]
fn a_full_line_refuses_with_busy_and_a_stop_cancels_every_job() {
    if !privileged("a_full_line_refuses_with_busy_and_a_stop_cancels_every_job") {
        return;
    }
    let mut rig = Rig::start(&[], ONE_AT_A_TIME);
    let server = serve_images(&rig, &["held"]);
    let monitor = Monitor::start(&rig);
    let before = rig.store_snapshot();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (admitted, refused) = runtime.block_on(async {
        let connection = rig.bus.connect().await;
        let manager = ManagerProxy::new(&connection).await.expect("manager proxy");
        let mut admitted = Vec::new();
        // Every source differs (any path on the server), so no two requests share a job.
        for n in 0..=64 {
            let (id, _) =
                manager.install(&server.url(&format!("held.raw?{n}")), HashMap::new()).await.expect("admitted");
            admitted.push(id);
        }
        let refused = manager.install(&server.url("held.raw?65"), HashMap::new()).await;
        (admitted, refused)
    });
    match refused {
        Err(zbus::Error::MethodError(name, message, _)) => {
            assert_eq!(name.as_str(), "org.kairos.Extensions1.Error.Busy");
            assert!(message.as_deref().unwrap_or("").contains("64 are waiting"), "{message:?}");
        }
        other => panic!("the 65th job in line must be refused with Busy: {other:?}"),
    }
    assert_eq!(job_property(&rig, admitted[64], "QueuePosition"), "u 64");
    assert_eq!(stdout(&rig.kairos_ext(&["jobs"])).lines().filter(|l| l.contains("queued")).count(), 64);

    server.wait_for_requests(&["held.raw?0"]);
    rig.service.terminate();
    assert!(rig.service.wait_exit(Duration::from_secs(60)).is_some(), "the service stops");
    assert!(
        eventually(Duration::from_secs(10), || monitor.removed().len() == 65),
        "every job's end is announced: {:?}",
        monitor.removed()
    );
    let removed = monitor.removed();
    assert!(removed.iter().all(|(_, result)| result == "canceled"), "{removed:?}");
    assert_eq!(server.requested(), ["held.raw?0"], "no queued job ran during the stop");
    assert_eq!(rig.store_snapshot(), before, "jobs canceled by a stop change nothing");
}

#[test]
fn kairos_ext_says_how_many_jobs_are_ahead_and_ctrl_c_takes_it_out_of_line() {
    if !privileged("kairos_ext_says_how_many_jobs_are_ahead_and_ctrl_c_takes_it_out_of_line") {
        return;
    }
    let rig = Rig::start(&[], ONE_AT_A_TIME);
    let server = serve_images(&rig, &["c1", "c2", "c3", "c4"]);
    let monitor = Monitor::start(&rig);
    start(&rig, &server.url("c1.raw"));
    server.wait_for_requests(&["c1.raw"]);

    let second = Install::spawn(&rig, &server.url("c2.raw"));
    second.wait_for_stderr("waiting for 1 job ahead");
    let third = Install::spawn(&rig, &server.url("c3.raw"));
    third.wait_for_stderr("waiting for 2 jobs ahead");
    let fourth = Install::spawn_on_terminal(&rig, &server.url("c4.raw"));
    fourth.wait_for_stdout("waiting for 3 jobs ahead");

    third.interrupt();
    let (ok, third) = third.finish();
    assert!(!ok, "an install canceled in line fails");
    assert!(third.stderr().contains("install canceled"), "{}", third.stderr());
    assert!(monitor.saw("JobRemoved", &[Value::from(3)]), "{:?}", monitor.signals());
    assert_eq!(monitor.removed(), [(3, "canceled".to_owned())]);
    fourth.wait_for_stdout("waiting for 2 jobs ahead");

    server.open();
    let (ok, second) = second.finish();
    assert!(ok, "{}", second.stderr());
    assert!(second.stdout().contains("Installed c2"), "{}", second.stdout());
    assert_eq!(
        second.stderr().lines().filter(|l| l.starts_with("waiting for")).collect::<Vec<_>>(),
        ["waiting for 1 job ahead"],
        "a line only when the count changes"
    );
    let (ok, fourth) = fourth.finish();
    assert!(ok, "{}", fourth.stdout());
    assert!(fourth.stdout().contains("Installed c4"), "{}", fourth.stdout());
    assert_eq!(server.requested(), ["c1.raw", "c2.raw", "c4.raw"], "the interrupted install never ran");
}

#[test]
fn ten_parallel_installs_of_different_images_all_succeed() {
    if !privileged("ten_parallel_installs_of_different_images_all_succeed") {
        return;
    }
    // The default max_jobs (4): six of the ten wait.
    let rig = Rig::start(&[], "idle_exit_sec = 0\n");
    let names: Vec<String> = (0..10).map(|n| format!("par{n}")).collect();
    let server = serve_images(&rig, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let installs: Vec<Install> =
        names.iter().map(|name| Install::spawn(&rig, &server.url(&format!("{name}.raw")))).collect();
    let states = || -> Vec<String> {
        stdout(&rig.kairos_ext(&["jobs", "--no-legend"]))
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .collect()
    };
    assert!(eventually(Duration::from_secs(30), || states().len() == 10), "all ten are admitted: {:?}", states());
    let mut seen = states();
    seen.sort();
    assert_eq!(seen.iter().filter(|s| *s == "queued").count(), 6, "{seen:?}");
    assert_eq!(seen.iter().filter(|s| *s == "running").count(), 4, "{seen:?}");

    server.open();
    for install in installs {
        let (ok, install) = install.finish();
        assert!(ok, "every install succeeds: {}", install.stderr());
    }
    let listed = stdout(&rig.kairos_ext(&["list"]));
    for name in &names {
        assert!(listed.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} is installed: {listed}");
    }
}
