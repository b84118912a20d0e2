//! Read-path benchmark of kairos-extensionsd (`make bench`, driven by
//! `scripts/bench-reads.sh`): for each store size N it fills a store, starts the service
//! on a private system bus next to real polkitd, and measures, in one run and on the
//! same bus, what the issue "One-way bus layer over an in-memory model" sets targets
//! for. Prints a table with one column per N and writes every figure as JSON.
//!
//! Written in Rust on zbus rather than python-dbus: the client's own cost per call is
//! then small next to what it measures, it shares nothing with the service but the wire,
//! and it needs no package beyond what the suite already builds.
//!
//! Timed calls are timed up to the moment the whole reply has been read; the reply is
//! decoded (and its size checked) after the clock stops. The service runs with the
//! environment its systemd unit sets (`--unit`), so memory settings made there are what
//! is measured.
#![allow(clippy::print_stdout, reason = "the benchmark reports on stdout")]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kairos_extensions_dbus::proxies::ExtensionRow;
use kairos_extensions_dbus::{BUS_NAME, MANAGER_PATH};
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::system::{Polkit, SystemBus};
use kairos_extensionsd::engine::meta::Provenance;
use kairos_extensionsd::engine::release::ReleaseFields;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zbus::export::futures_core::Stream;
use zbus::{Connection, Message, OwnedObjectPath, OwnedVariant};

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

const MANAGER: &str = "org.kairos.Extensions1.Manager";
/// The extension whose image is a signed verity image; every other one is a stub.
const SIGNED: &str = "bench-signed";
/// What a stub image holds: no partition table, so verifying it finds it unprotected.
const STUB_LEN: usize = 4096;
/// Calls in the burst, and how many are in flight at once.
const BURST_CALLS: usize = 1000;
const BURST_IN_FLIGHT: usize = 100;
/// How long after the burst its memory is looked at: the service returns freed memory
/// once its memory stops changing, which it checks every second.
const AFTER_BURST: Duration = Duration::from_secs(5);
/// And again once the threads the burst started are gone (tokio ends an idle blocking
/// thread after 10 s).
const THREADS_GONE: Duration = Duration::from_secs(15);

struct Args {
    sizes: Vec<usize>,
    daemon: PathBuf,
    cli: PathBuf,
    signed: PathBuf,
    trust: PathBuf,
    unit: PathBuf,
    json: Option<PathBuf>,
    logs: PathBuf,
}

fn parse_args() -> Fallible<Args> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(key) = args.next() {
        let key = key.strip_prefix("--").ok_or_else(|| format!("unexpected argument {key}"))?.to_owned();
        let value = args.next().ok_or_else(|| format!("--{key} needs a value"))?;
        map.insert(key, value);
    }
    let mut take = |key: &str| map.remove(key).ok_or_else(|| format!("--{key} is required"));
    let sizes = take("sizes")?.split(',').map(|n| n.trim().parse::<usize>()).collect::<Result<Vec<_>, _>>()?;
    Ok(Args {
        sizes,
        daemon: take("daemon")?.into(),
        cli: take("cli")?.into(),
        signed: take("signed")?.into(),
        trust: take("trust")?.into(),
        unit: take("unit")?.into(),
        logs: take("logs")?.into(),
        json: map.remove("json").map(PathBuf::from),
    })
}

fn main() -> std::process::ExitCode {
    let result = parse_args().and_then(|args| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(run(&args))
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kx-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Fallible<()> {
    if !kairos_extensions_tests::privileged("kx-bench") {
        return Err("the benchmark needs root and the packages `make deps` installs".into());
    }
    let environment = unit_environment(&args.unit)?;
    let bus = SystemBus::start();
    let _polkit = Polkit::start(&bus, &[]);
    let mut results = Vec::new();
    for &n in &args.sizes {
        eprintln!("== N = {n}");
        let figures = measure(args, &bus, &environment, n).await?;
        eprintln!("{figures}");
        results.push(figures);
    }
    let report = json!({
        "date": date(),
        "service_environment": environment.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "results": results,
    });
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    print_table(&results);
    Ok(())
}

/// `Environment=` settings of the unit, which the service gets in production.
fn unit_environment(unit: &Path) -> Fallible<Vec<(String, String)>> {
    let text = fs::read_to_string(unit).map_err(|e| format!("reading {}: {e}", unit.display()))?;
    let mut settings = Vec::new();
    for line in text.lines() {
        let Some(value) = line.trim().strip_prefix("Environment=") else { continue };
        for word in value.split_whitespace() {
            let word = word.trim_matches('"');
            if let Some((key, value)) = word.split_once('=') {
                settings.push((key.to_owned(), value.to_owned()));
            }
        }
    }
    Ok(settings)
}

fn date() -> String {
    Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Fills `store` with `n` extensions the service lists from their provenance records
/// alone: `n - 1` stub images and the signed verity image.
fn fill(store: &Path, n: usize, signed: &Path) -> Fallible<()> {
    let meta_dir = store.join(".meta");
    fs::create_dir_all(&meta_dir)?;
    let release =
        ReleaseFields::from([("ID".to_owned(), "_any".to_owned()), ("SYSEXT_VERSION_ID".to_owned(), "1.0".to_owned())]);
    let installed_time_us = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros())?;
    let stub = vec![0u8; STUB_LEN];
    let stub_digest = format!("sha256:{:x}", Sha256::digest(&stub));
    let record = |name: &str, digest: String| -> Fallible<()> {
        let file = format!("{name}.raw");
        let meta = fs::metadata(store.join(&file))?;
        let mtime_ns = i128::from(std::os::unix::fs::MetadataExt::mtime(&meta)) * 1_000_000_000
            + i128::from(std::os::unix::fs::MetadataExt::mtime_nsec(&meta));
        let provenance = Provenance {
            name: name.to_owned(),
            file: file.clone(),
            source: format!("file:///bench/{file}"),
            resolved_digest: None,
            catalog: None,
            validators: None,
            digest,
            size: meta.len(),
            mtime_ns,
            installed_time_us,
            release: release.clone(),
        };
        fs::write(meta_dir.join(format!("{name}.json")), serde_json::to_vec_pretty(&provenance)?)?;
        Ok(())
    };
    fs::copy(signed, store.join(format!("{SIGNED}.raw")))?;
    record(SIGNED, format!("sha256:{:x}", Sha256::digest(fs::read(signed)?)))?;
    for i in 1..n {
        let name = stub_name(i);
        fs::write(store.join(format!("{name}.raw")), &stub)?;
        record(&name, stub_digest.clone())?;
    }
    Ok(())
}

fn stub_name(i: usize) -> String {
    format!("bench-{i:05}")
}

/// The first stub, or the signed image when it is alone.
fn stub_or_signed(n: usize) -> String {
    if n > 1 { stub_name(1) } else { SIGNED.to_owned() }
}

/// The service under measurement.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn spawn(
        args: &Args,
        ns: &Namespace,
        bus: &SystemBus,
        config: &Path,
        env: &[(String, String)],
        n: usize,
    ) -> Fallible<Self> {
        let log = fs::File::options().create(true).append(true).open(args.logs.join(format!("service-{n}.log")))?;
        let mut command = ns.command(&args.daemon);
        command
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log);
        Ok(Self { child: command.spawn()? })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it as `systemctl stop` would, and waits for it.
    fn stop(mut self) -> Fallible<()> {
        Command::new("kill").args(["-TERM", &self.pid().to_string()]).status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn call<B>(
    connection: &Connection,
    dest: &str,
    path: &str,
    iface: &str,
    method: &str,
    body: &B,
) -> zbus::Result<Message>
where
    B: zbus::export::serde::Serialize + zbus::zvariant::DynamicType,
{
    connection.call_method(Some(dest), path, Some(iface), method, body).await
}

async fn list(connection: &Connection) -> zbus::Result<Message> {
    call(connection, BUS_NAME, MANAGER_PATH, MANAGER, "ListExtensions", &()).await
}

async fn polkit_get(connection: &Connection) -> zbus::Result<Message> {
    call(
        connection,
        "org.freedesktop.PolicyKit1",
        "/org/freedesktop/PolicyKit1/Authority",
        "org.freedesktop.DBus.Properties",
        "Get",
        &("org.freedesktop.PolicyKit1.Authority", "BackendName"),
    )
    .await
}

async fn managed_objects(connection: &Connection) -> zbus::Result<Message> {
    call(connection, BUS_NAME, MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", &()).await
}

async fn describe(connection: &Connection, name: &str) -> zbus::Result<Message> {
    call(connection, BUS_NAME, MANAGER_PATH, MANAGER, "Describe", &(name,)).await
}

fn rows(reply: &Message) -> zbus::Result<usize> {
    Ok(reply.body().deserialize::<Vec<ExtensionRow>>()?.len())
}

type ManagedObjects = HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedVariant>>>;

/// Waits until `name` gets an owner, from a stream of NameOwnerChanged opened before.
async fn owner_appears<S>(changes: &mut S, name: &str) -> Fallible<()>
where
    S: Stream<Item = zbus::fdo::NameOwnerChanged> + Unpin,
{
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut *changes).poll_next(cx));
        let Some(change) = tokio::time::timeout(Duration::from_secs(300), next).await? else {
            return Err("the bus closed the NameOwnerChanged stream".into());
        };
        let args = change.args()?;
        if args.name().as_str() == name && args.new_owner().is_some() {
            return Ok(());
        }
    }
}

/// Figures of `/proc/PID/status` and `/proc/PID/io`, in KiB and bytes.
fn proc_field(pid: u32, file: &str, field: &str) -> Fallible<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}"))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|rest| rest.strip_prefix(':')))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/{file}"))?;
    Ok(line.split_whitespace().next().ok_or("empty field")?.parse()?)
}

fn rss_kib(pid: u32) -> Fallible<Value> {
    Ok(json!({
        "rss": proc_field(pid, "status", "VmRSS")?,
        "anon": proc_field(pid, "status", "RssAnon")?,
        "file": proc_field(pid, "status", "RssFile")?,
        "threads": proc_field(pid, "status", "Threads")?,
    }))
}

/// Resident memory by mapping (`/proc/PID/smaps`), in KiB, largest first: what the
/// file-backed and anonymous figures are made of.
fn mappings_kib(pid: u32) -> Fallible<Value> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut by_mapping: HashMap<String, u64> = HashMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Rss:"), Some(kib)) => *by_mapping.entry(current.clone()).or_default() += kib.parse::<u64>()?,
            (Some(first), Some(_)) if first.contains('-') && !first.ends_with(':') => {
                let path = line.split_whitespace().nth(5).unwrap_or("[anon]");
                current = path.rsplit('/').next().unwrap_or(path).to_owned();
            }
            _ => {}
        }
    }
    let mut sorted: Vec<(String, u64)> = by_mapping.into_iter().filter(|(_, kib)| *kib >= 64).collect();
    sorted.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    Ok(json!(sorted))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank `p`th percentile, in ms.
fn percentile(samples: &mut [Duration], p: usize) -> f64 {
    samples.sort();
    let rank = (samples.len() * p).div_ceil(100).max(1);
    samples.get(rank - 1).map(|d| ms(*d)).unwrap_or(f64::NAN)
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    percentile(samples, 50)
}

async fn measure(args: &Args, bus: &SystemBus, env: &[(String, String)], n: usize) -> Fallible<Value> {
    let ns = Namespace::new();
    fill(&ns.store(), n, &args.signed)?;
    let config_dir = tempfile::Builder::new().prefix("kx-bench-config-").tempdir()?;
    let config = config_dir.path().join("extensions.toml");
    fs::write(&config, format!("idle_exit_sec = 0\ntrusted_certificates = [\"{}\"]\n", args.trust.display()))?;
    let connection = bus.connect().await;
    let dbus = zbus::fdo::DBusProxy::new(&connection).await?;

    // Cold starts: from spawning the process to its name on the bus, and to the first
    // complete ListExtensions reply. The last one stays up for the rest.
    let cold_runs = if n >= 10_000 { 3 } else { 5 };
    let (mut to_name, mut to_list) = (Vec::new(), Vec::new());
    let mut daemon = None;
    let mut changes = dbus.receive_name_owner_changed_with_args(&[(0, BUS_NAME)]).await?;
    for run in 0..cold_runs {
        let started = Instant::now();
        let spawned = Daemon::spawn(args, &ns, bus, &config, env, n)?;
        owner_appears(&mut changes, BUS_NAME).await?;
        to_name.push(started.elapsed());
        let reply = list(&connection).await?;
        to_list.push(started.elapsed());
        let listed = rows(&reply)?;
        if listed != n {
            return Err(format!("the first ListExtensions listed {listed} extensions, not {n}").into());
        }
        if run + 1 < cold_runs {
            spawned.stop()?;
        } else {
            daemon = Some(spawned);
        }
    }
    let daemon = daemon.ok_or("no service running")?;
    let pid = daemon.pid();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid)?;
    let idle_mappings = mappings_kib(pid)?;

    // Describe of the signed verity image, twice; what the service read in between.
    let mut describes = Vec::new();
    let mut protection = String::new();
    for _ in 0..2 {
        let (rchar, read_bytes) = (proc_field(pid, "io", "rchar")?, proc_field(pid, "io", "read_bytes")?);
        let started = Instant::now();
        let reply = describe(&connection, SIGNED).await?;
        let took = started.elapsed();
        let (rchar_after, read_bytes_after) = (proc_field(pid, "io", "rchar")?, proc_field(pid, "io", "read_bytes")?);
        let described: Value = serde_json::from_str(&reply.body().deserialize::<String>()?)?;
        protection = described["protection"].as_str().unwrap_or_default().to_owned();
        describes.push(json!({
            "ms": ms(took),
            "rchar": rchar_after - rchar,
            "read_bytes": read_bytes_after - read_bytes,
        }));
    }
    let image_size = fs::metadata(&args.signed)?.len();

    // A burst of calls, then the memory it left behind.
    let before_burst = rss_kib(pid)?;
    let burst = burst(&connection, n).await?;
    let right_after_burst = rss_kib(pid)?;
    tokio::time::sleep(AFTER_BURST).await;
    let after_burst = rss_kib(pid)?;
    tokio::time::sleep(THREADS_GONE - AFTER_BURST).await;
    let settled_after_burst = rss_kib(pid)?;
    let after_burst_mappings = mappings_kib(pid)?;

    // ListExtensions next to polkitd's property Get, interleaved.
    let iterations = if n >= 10_000 { 200 } else { 1000 };
    for _ in 0..50 {
        list(&connection).await?;
        polkit_get(&connection).await?;
    }
    let (mut lists, mut gets) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..iterations {
        let started = Instant::now();
        let reply = list(&connection).await?;
        lists.push(started.elapsed());
        last = Some(reply);
        let started = Instant::now();
        polkit_get(&connection).await?;
        gets.push(started.elapsed());
    }
    if let Some(reply) = last
        && rows(&reply)? != n
    {
        return Err("ListExtensions lost extensions".into());
    }

    // Describe of an image verified before: model, verdict cache, JSON.
    describe(&connection, &stub_or_signed(n)).await?;
    let mut descriptions = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        describe(&connection, &stub_or_signed(n)).await?;
        descriptions.push(started.elapsed());
    }

    let gmo_runs = match n {
        0..=100 => 200,
        101..=1000 => 50,
        _ => 10,
    };
    let mut gmos = Vec::new();
    for _ in 0..gmo_runs {
        let started = Instant::now();
        let reply = managed_objects(&connection).await?;
        gmos.push(started.elapsed());
        let objects = reply.body().deserialize::<ManagedObjects>()?;
        if objects.len() < n {
            return Err(format!("GetManagedObjects returned {} objects for {n} extensions", objects.len()).into());
        }
    }

    let cli_runs = if n >= 10_000 { 1 } else { 3 };
    let mut clis = Vec::new();
    for _ in 0..cli_runs {
        let started = Instant::now();
        let status = Command::new(&args.cli)
            .args(["--no-ask-password", "list"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
            .stdout(Stdio::null())
            .status()?;
        clis.push(started.elapsed());
        if !status.success() {
            return Err(format!("kairos-ext list failed: {status}").into());
        }
    }

    // Enable + Disable without NOW: no refresh, only the store's links and the model.
    let pairs = if n >= 10_000 { 20 } else { 50 };
    let target = stub_or_signed(n);
    let mut round_trips = Vec::new();
    for _ in 0..pairs {
        let started = Instant::now();
        call(&connection, BUS_NAME, MANAGER_PATH, MANAGER, "Enable", &(target.as_str(), "common", 0u64)).await?;
        call(&connection, BUS_NAME, MANAGER_PATH, MANAGER, "Disable", &(target.as_str(), "common", 0u64)).await?;
        round_trips.push(started.elapsed());
    }
    tokio::time::sleep(AFTER_BURST).await;
    let after_all = rss_kib(pid)?;
    daemon.stop()?;

    Ok(json!({
        "n": n,
        "cold_start": {
            "name_ms_each": to_name.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "first_list_ms_each": to_list.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "name_ms": median_ms(&mut to_name),
            "first_list_ms": median_ms(&mut to_list),
            "runs": cold_runs,
        },
        "rss_kib": {
            "idle": idle,
            "before_burst": before_burst,
            "right_after_burst": right_after_burst,
            "after_burst": after_burst,
            "settled_after_burst": settled_after_burst,
            "after_all": after_all,
        },
        "mappings_kib": { "idle": idle_mappings, "after_burst": after_burst_mappings },
        "burst": burst,
        "describe_signed": { "image_bytes": image_size, "protection": protection, "calls": describes },
        "list_extensions": { "p50_ms": percentile(&mut lists.clone(), 50), "p99_ms": percentile(&mut lists, 99), "calls": iterations },
        "polkit_get": { "p50_ms": percentile(&mut gets.clone(), 50), "p99_ms": percentile(&mut gets, 99), "calls": iterations },
        "describe_verified": { "p50_ms": median_ms(&mut descriptions), "calls": 200 },
        "get_managed_objects": { "p50_ms": median_ms(&mut gmos), "calls": gmo_runs },
        "cli_list": { "median_ms": median_ms(&mut clis), "runs": cli_runs },
        "enable_disable": { "p50_ms": median_ms(&mut round_trips), "pairs": pairs },
    }))
}

/// [`BURST_CALLS`] calls, [`BURST_IN_FLIGHT`] at a time: listings, descriptions of
/// every kind of extension, descriptions of names that are not valid, and every
/// property of an extension object.
async fn burst(connection: &Connection, n: usize) -> Fallible<Value> {
    let gate = Arc::new(tokio::sync::Semaphore::new(BURST_IN_FLIGHT));
    let mut calls = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..BURST_CALLS {
        let connection = connection.clone();
        let gate = gate.clone();
        let name = if n > 1 { stub_name(1 + i % (n - 1)) } else { SIGNED.to_owned() };
        calls.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let outcome = match i % 4 {
                0 => list(&connection).await,
                1 => describe(&connection, &name).await,
                2 => describe(&connection, &format!("../{name}")).await,
                _ => {
                    let path = kairos_extensions_dbus::paths::extension_path(&name);
                    call(
                        &connection,
                        BUS_NAME,
                        path.as_str(),
                        "org.freedesktop.DBus.Properties",
                        "GetAll",
                        &("org.kairos.Extensions1.Extension",),
                    )
                    .await
                }
            };
            outcome.is_ok()
        });
    }
    let (mut ok, mut failed) = (0usize, 0usize);
    while let Some(done) = calls.join_next().await {
        if done? {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    // Every fourth call names an invalid extension and must fail; nothing else may.
    if failed != BURST_CALLS / 4 {
        return Err(format!("{failed} of the burst's calls failed; expected {}", BURST_CALLS / 4).into());
    }
    Ok(
        json!({ "calls": BURST_CALLS, "in_flight": BURST_IN_FLIGHT, "ok": ok, "errors": failed, "ms": ms(started.elapsed()) }),
    )
}

fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

fn print_table(results: &[Value]) {
    type Row = (&'static str, fn(&Value) -> String);
    let rows: Vec<Row> = vec![
        ("ListExtensions p50 (ms)", |r| format!("{:.3}", f(&r["list_extensions"]["p50_ms"]))),
        ("ListExtensions p99 (ms)", |r| format!("{:.3}", f(&r["list_extensions"]["p99_ms"]))),
        ("polkitd Get p50 (ms)", |r| format!("{:.3}", f(&r["polkit_get"]["p50_ms"]))),
        ("ListExtensions / polkitd Get", |r| {
            format!("{:.2}", f(&r["list_extensions"]["p50_ms"]) / f(&r["polkit_get"]["p50_ms"]))
        }),
        ("Describe p50, verified (ms)", |r| format!("{:.3}", f(&r["describe_verified"]["p50_ms"]))),
        ("GetManagedObjects p50 (ms)", |r| format!("{:.2}", f(&r["get_managed_objects"]["p50_ms"]))),
        ("  per extension (µs)", |r| format!("{:.1}", f(&r["get_managed_objects"]["p50_ms"]) * 1000.0 / f(&r["n"]))),
        ("kairos-ext list wall (ms)", |r| format!("{:.0}", f(&r["cli_list"]["median_ms"]))),
        ("  per extension (µs)", |r| format!("{:.1}", f(&r["cli_list"]["median_ms"]) * 1000.0 / f(&r["n"]))),
        ("Describe signed, 1st (ms)", |r| format!("{:.2}", f(&r["describe_signed"]["calls"][0]["ms"]))),
        ("  bytes read (rchar)", |r| format!("{}", r["describe_signed"]["calls"][0]["rchar"])),
        ("Describe signed, 2nd (ms)", |r| format!("{:.3}", f(&r["describe_signed"]["calls"][1]["ms"]))),
        ("  bytes read (rchar)", |r| format!("{}", r["describe_signed"]["calls"][1]["rchar"])),
        ("cold start: name (ms)", |r| format!("{:.1}", f(&r["cold_start"]["name_ms"]))),
        ("cold start: 1st List (ms)", |r| format!("{:.1}", f(&r["cold_start"]["first_list_ms"]))),
        ("RSS idle (MiB)", |r| format!("{:.1}", f(&r["rss_kib"]["idle"]["rss"]) / 1024.0)),
        ("RSS at end of 1000 calls (MiB)", |r| format!("{:.1}", f(&r["rss_kib"]["right_after_burst"]["rss"]) / 1024.0)),
        ("RSS 5 s after them (MiB)", |r| format!("{:.1}", f(&r["rss_kib"]["after_burst"]["rss"]) / 1024.0)),
        ("RSS 15 s after them (MiB)", |r| format!("{:.1}", f(&r["rss_kib"]["settled_after_burst"]["rss"]) / 1024.0)),
        ("  over idle (MiB)", |r| {
            let kib = |k: &str| f(&r["rss_kib"]["settled_after_burst"][k]) - f(&r["rss_kib"]["idle"][k]);
            format!("{:+.1}", kib("rss") / 1024.0)
        }),
        ("    of it anonymous (MiB)", |r| {
            let kib = |k: &str| f(&r["rss_kib"]["settled_after_burst"][k]) - f(&r["rss_kib"]["idle"][k]);
            format!("{:+.1}", kib("anon") / 1024.0)
        }),
        ("RSS after everything (MiB)", |r| format!("{:.1}", f(&r["rss_kib"]["after_all"]["rss"]) / 1024.0)),
        ("Enable+Disable p50 (ms)", |r| format!("{:.2}", f(&r["enable_disable"]["p50_ms"]))),
    ];
    print!("{:<30}", "N");
    for r in results {
        print!("{:>12}", r["n"].to_string());
    }
    println!();
    for (label, cell) in rows {
        print!("{label:<30}");
        for r in results {
            print!("{:>12}", cell(r));
        }
        println!();
    }
    if let Some(first) = results.first() {
        println!(
            "Describe: signed image of {} bytes, protection \"{}\"",
            first["describe_signed"]["image_bytes"],
            first["describe_signed"]["protection"].as_str().unwrap_or("")
        );
    }
}
