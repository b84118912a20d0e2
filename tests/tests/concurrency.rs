//! Concurrency: many clients at once enable, disable, remove, reinstall and refresh the
//! same extension and different ones, every change with `NOW`, so each one refreshes the
//! merge. Afterwards the boot-state links in the store are exactly what
//! `ListExtensions` reports, and what systemd-sysext has merged is exactly the activated
//! images (the links in `/run/extensions` whose image exists), as `ListExtensions`, the
//! `Merged` property and the namespace's `/usr` all say. Real dbus-daemon, polkitd,
//! service, and real systemd-sysext merges in a private mount namespace booted as
//! Kairos `active`.
//!
//! Seeded: `KX_CONCURRENCY_SEED=N` replays a run; `KAIROS_STRESS_SCALE=N` (`make
//! stress`) makes N times as many changes per client.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kairos_extensions_dbus::BootState;
use kairos_extensions_dbus::proxies::ManagerProxy;
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::eventually;
use kairos_extensions_tests::stress::{self, rig_prepared};
use kairos_extensions_tests::{privileged, stderr};
use zbus::OwnedVariant;

const CLIENTS: usize = 8;
const CHANGES: usize = 12;
const NAMES: [&str; 4] = ["c0", "c1", "c2", "c3"];
const NOW: u64 = 1;

/// xorshift64*, one per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// The error name of a failed call, or "ok".
fn outcome<T>(result: zbus::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        Err(zbus::Error::FDO(e)) => e.to_string().split(':').next().unwrap_or_default().to_owned(),
        Err(other) => format!("client: {other}"),
    }
}

/// One client: `changes` random changes, half of them on `c0`, the extension everyone
/// fights over. Returns what each call answered.
async fn client(address: String, seed: u64, changes: usize, images: HashMap<String, String>) -> Vec<(String, String)> {
    let connection = zbus::connection::Builder::address(address.as_str()).build().await.expect("connect");
    let manager = ManagerProxy::new(&connection).await.expect("proxy");
    let mut rng = Rng(seed.max(1));
    let mut answers = Vec::new();
    for _ in 0..changes {
        let name = if rng.below(2) == 0 { NAMES[0] } else { NAMES[rng.below(NAMES.len())] };
        let state = BootState::ALL[rng.below(BootState::ALL.len())];
        let (what, answer) = match rng.below(9) {
            0..=2 => ("enable", outcome(manager.enable(name, state, NOW).await)),
            3..=4 => ("disable", outcome(manager.disable(name, state, NOW).await)),
            5 => ("remove", outcome(manager.remove(name, NOW).await)),
            6 => ("refresh", outcome(manager.refresh(0).await)),
            _ => {
                let mut options: HashMap<&str, OwnedVariant> = HashMap::new();
                if let Ok(states) = OwnedVariant::try_from(zbus::Variant::from(vec!["common".to_owned()])) {
                    options.insert("enable", states);
                }
                if let Ok(now) = OwnedVariant::try_from(zbus::Variant::from(true)) {
                    options.insert("now", now);
                }
                ("install", outcome(manager.install(&images[name], options).await))
            }
        };
        answers.push((format!("{what} {name} {state}"), answer));
    }
    answers
}

#[test]
fn concurrent_changes_leave_links_listing_and_merge_in_agreement() {
    if !privileged("concurrent_changes_leave_links_listing_and_merge_in_agreement") {
        return;
    }
    let rig = rig_prepared(&[], "idle_exit_sec = 0\n", |ns| ns.set_boot_state("active"));
    let mut images = HashMap::new();
    for name in NAMES {
        let path = ImageBuilder::new(name)
            .command(&format!("{name}-kx"), name)
            .build(rig.scratch.path(), &format!("{name}.raw"));
        let out = rig.kairos_ext(&["install", path.to_str().expect("utf-8"), "--enable", "common", "--now"]);
        assert!(out.status.success(), "install {name}: {}", stderr(&out));
        images.insert(name.to_owned(), format!("file://{}", path.display()));
    }

    let seed = stress::seed("KX_CONCURRENCY_SEED");
    let changes = CHANGES * stress::scale();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let address = rig.bus.address().to_owned();
    let answers: Vec<(String, String)> = runtime.block_on(async {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| tokio::spawn(client(address.clone(), seed.wrapping_add(i as u64), changes, images.clone())))
            .collect();
        let mut all = Vec::new();
        for c in clients {
            all.extend(c.await.expect("client task"));
        }
        all
    });
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, answer) in &answers {
        *tally.entry(answer.as_str()).or_default() += 1;
    }
    eprintln!("concurrency: {} changes from {CLIENTS} clients, seed {seed}: {tally:?}", answers.len());
    // A change may find the extension gone or already there (an install whose file is
    // NAME.raw fails at the call when NAME is installed); nothing else may go wrong.
    let expected = ["ok", "org.kairos.Extensions1.Error.NotFound", "org.kairos.Extensions1.Error.AlreadyExists"];
    let unexpected: Vec<&(String, String)> = answers.iter().filter(|(_, a)| !expected.contains(&a.as_str())).collect();
    assert!(unexpected.is_empty(), "unexpected answers (seed {seed}): {unexpected:?}");
    assert!(tally.get("ok").is_some_and(|n| *n > answers.len() / 3), "most changes must go through: {tally:?}");

    // Installs run as jobs: wait for them to end.
    assert!(eventually(Duration::from_secs(120), || list_jobs_empty(&rig)), "jobs did not end");

    let listed = list(&rig);
    let store = rig.ns.store();
    let mut linked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for state in BootState::ALL {
        for entry in std::fs::read_dir(store.join(state.as_str())).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().trim_end_matches(".raw").to_owned();
            linked.entry(name).or_default().insert(state.as_str().to_owned());
        }
    }
    let reported: BTreeMap<String, BTreeSet<String>> = listed
        .iter()
        .filter(|(_, states, _)| !states.is_empty())
        .map(|(name, states, _)| (name.clone(), states.clone()))
        .collect();
    assert_eq!(linked, reported, "the boot-state links and ListExtensions disagree (seed {seed})");

    let runtime_dir = rig.ns.host_path("/run/extensions/");
    let activated: BTreeSet<String> = std::fs::read_dir(&runtime_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            // Link targets are system paths: see where they lead inside the namespace.
            std::fs::read_link(e.path()).is_ok_and(|target| match target.to_str() {
                Some(system) if system.starts_with('/') => rig.ns.host_path(system).exists(),
                _ => runtime_dir.join(&target).exists(),
            })
        })
        .map(|e| e.file_name().to_string_lossy().trim_end_matches(".raw").to_owned())
        .collect();
    let merged: BTreeSet<String> = rig.ns.merged().into_iter().collect();
    assert_eq!(merged, activated, "systemd-sysext merged something else than what is activated (seed {seed})");
    let reported_merged: BTreeSet<String> = listed.iter().filter(|(_, _, m)| *m).map(|(n, _, _)| n.clone()).collect();
    assert_eq!(reported_merged, merged, "ListExtensions reports another merge than systemd-sysext's (seed {seed})");
    for name in &merged {
        let ran = rig.ns.run(format!("{name}-kx"), &[]);
        assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), name, "{name} is merged, so its command runs");
    }
    eprintln!("concurrency: finally linked {linked:?}, merged {merged:?}");
}

/// `(name, enabled states, merged)` of every extension, from `kairos-ext list --json`.
fn list(rig: &kairos_extensions_tests::system::Rig) -> Vec<(String, BTreeSet<String>, bool)> {
    let out = rig.kairos_ext(&["list", "--json"]);
    assert!(out.status.success(), "list: {}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list --json");
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let states = r["enabled"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned));
            (r["name"].as_str().unwrap_or_default().to_owned(), states.collect(), r["merged"] == true)
        })
        .collect()
}

fn list_jobs_empty(rig: &kairos_extensions_tests::system::Rig) -> bool {
    let out = rig
        .bus
        .command("busctl")
        .args(["--system", "call", "org.kairos.Extensions1", "/org/kairos/Extensions1"])
        .args(["org.kairos.Extensions1.Manager", "ListJobs"])
        .output()
        .expect("busctl");
    String::from_utf8_lossy(&out.stdout).trim() == "a(tsso) 0"
}
