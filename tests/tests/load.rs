//! Load: 100 clients subscribed to every signal of the service while 20 installs run,
//! plus one subscriber that is frozen (SIGSTOP) and so never reads its socket. Every
//! install finishes, every live subscriber sees every `JobRemoved`, and
//! `ListExtensions` keeps answering; its latency during the load is printed (p50, p99,
//! max), never asserted. Real dbus-daemon, polkitd and service, installing real squashfs
//! images through `systemd-dissect`.
//!
//! `KAIROS_STRESS_SCALE=N` (`make stress`) runs N times as many installs, up to 60 (the
//! queue refuses more than 64 waiting jobs with `Busy`, as the contract says).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kairos_extensions_dbus::proxies::ManagerProxy;
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::stress::{self, alive, owner_pid, percentile, signal};
use kairos_extensions_tests::system::Rig;
use kairos_extensions_tests::{bins, privileged, stdout};
use tokio::sync::oneshot;
use zbus::message::Type;
use zbus::{MatchRule, MessageStream, OwnedObjectPath};

const SUBSCRIBERS: usize = 100;
const INSTALLS: usize = 20;
const SERVICE: &str = "org.kairos.Extensions1";
/// A bound on the whole run, so that a lost signal fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(300);

/// What one subscriber saw: job id → result.
type Seen = BTreeMap<u64, String>;

/// Subscribes to every signal the service sends, says so on `ready` (the bus daemon
/// has then acknowledged the match rule), and collects the JobRemoved ones until
/// `wanted` jobs ended.
async fn subscriber(address: String, wanted: usize, ready: oneshot::Sender<()>) -> zbus::Result<Seen> {
    let connection = zbus::connection::Builder::address(address.as_str()).build().await?;
    let rule = MatchRule::builder().msg_type(Type::Signal).sender(SERVICE).build()?;
    // Room for every signal of the run, so that this client never drops one itself.
    let mut stream = MessageStream::for_match_rule(rule, &connection, NonZeroUsize::new(100_000)).await?;
    let _ = ready.send(());
    let mut seen = Seen::new();
    while seen.len() < wanted {
        let Some(message) = stream.next().await else { break };
        let message = message?;
        if message.header().member().is_some_and(|m| m.as_str() == "JobRemoved") {
            let (id, _path, result): (u64, OwnedObjectPath, String) = message.body().deserialize()?;
            seen.insert(id, result);
        }
    }
    Ok(seen)
}

#[test]
fn a_hundred_subscribers_see_every_job_end_while_installs_run_and_reads_keep_answering() {
    if !privileged("a_hundred_subscribers_see_every_job_end_while_installs_run_and_reads_keep_answering") {
        return;
    }
    let installs = (INSTALLS * stress::scale()).min(60);
    let rig = Rig::start(&[], "idle_exit_sec = 0\n");
    let images: Vec<String> = (0..installs)
        .map(|i| {
            let name = format!("load{i:02}");
            let path = ImageBuilder::new(&name).noise(256 << 10).build(rig.scratch.path(), &format!("{name}.raw"));
            format!("file://{}", path.display())
        })
        .collect();
    let pid = owner_pid(&rig.bus, SERVICE).expect("the service's pid");

    // The subscriber that never reads: kairos-ext monitor, frozen once subscribed.
    let mut frozen = rig
        .bus
        .command(bins::kairos_ext())
        .args(["monitor", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kairos-ext monitor runs");
    std::thread::sleep(Duration::from_millis(700));
    signal(frozen.id(), "STOP");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let address = rig.bus.address().to_owned();
    let (seen, latencies, ids) = runtime.block_on(async {
        let mut subscribers = Vec::new();
        let mut readiness = Vec::new();
        for _ in 0..SUBSCRIBERS {
            let (ready, subscribed) = oneshot::channel();
            subscribers.push(tokio::spawn(subscriber(address.clone(), installs, ready)));
            readiness.push(subscribed);
        }
        // No job starts before every subscriber's match rule is in place.
        for subscribed in readiness {
            subscribed.await.expect("a subscriber could not subscribe");
        }

        let reader = zbus::connection::Builder::address(address.as_str()).build().await.expect("bus");
        let done = Arc::new(AtomicBool::new(false));
        let reads = {
            let (reader, done) = (reader.clone(), done.clone());
            tokio::spawn(async move {
                let manager = ManagerProxy::new(&reader).await.expect("proxy");
                let mut latencies = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    manager.list_extensions().await.expect("ListExtensions answers under load");
                    latencies.push(started.elapsed());
                }
                latencies
            })
        };

        let installer = zbus::connection::Builder::address(address.as_str()).build().await.expect("bus");
        let manager = ManagerProxy::new(&installer).await.expect("proxy");
        let calls = images.iter().map(|source| manager.install(source, Default::default()));
        let ids: BTreeSet<u64> = futures_util::future::join_all(calls)
            .await
            .into_iter()
            .map(|started| started.expect("Install starts a job").0)
            .collect();

        let mut seen = Vec::new();
        for subscriber in subscribers {
            let collected = tokio::time::timeout(PATIENCE, subscriber)
                .await
                .expect("a subscriber waited too long for its JobRemoved signals")
                .expect("subscriber task")
                .expect("subscriber");
            seen.push(collected);
        }
        done.store(true, Ordering::SeqCst);
        (seen, reads.await.expect("reader task"), ids)
    });

    assert_eq!(ids.len(), installs, "each install got its own job");
    for (i, collected) in seen.iter().enumerate() {
        assert_eq!(collected.keys().copied().collect::<BTreeSet<_>>(), ids, "subscriber {i} missed a JobRemoved");
        assert!(collected.values().all(|r| r == "done"), "subscriber {i}: every install must finish: {collected:?}");
    }
    let listed = stdout(&rig.kairos_ext(&["list"]));
    for i in 0..installs {
        assert!(listed.contains(&format!("load{i:02}")), "load{i:02} is installed: {listed}");
    }
    let mut latencies = latencies;
    assert!(!latencies.is_empty(), "ListExtensions was called during the load");
    let count = latencies.len();
    let (p50, p99, max) =
        (percentile(&mut latencies, 50), percentile(&mut latencies, 99), percentile(&mut latencies, 100));
    eprintln!(
        "load: {SUBSCRIBERS} subscribers + 1 frozen, {installs} installs; ListExtensions answered {count} times, \
         p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );

    assert!(alive(pid) && owner_pid(&rig.bus, SERVICE) == Some(pid), "the service is up, the same process");
    signal(frozen.id(), "CONT");
    let _ = frozen.kill();
    let _ = frozen.wait();
}
