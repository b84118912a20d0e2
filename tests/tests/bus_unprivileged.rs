//! The bus layer without root: the Manager served over a peer-to-peer connection, on an
//! engine rooted in a temporary directory, with test doubles where the real components
//! need root or a system bus. The real-polkitd, real-sysext suite (service.rs and the
//! rest) stays; this one runs anywhere, `KAIROS_TESTS_SKIP_PRIVILEGED=1` included.
//!
//! The doubles, and why they are doubles:
//! - [`Scripted`] answers for polkit (yes, no, challenge, or an error) and names the
//!   caller's uid: a peer-to-peer connection has no bus daemon to ask, and real polkitd
//!   needs a system bus.
//! - [`FakeSysext`] stands in for systemd-sysext, which merges only as root: it "merges"
//!   what is activated by writing the names where systemd-sysext records them.
//! - Extensions are placed as the service itself leaves them (an image file and its
//!   provenance record), so that listing them opens no image: reading one needs
//!   systemd-dissect, which needs root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use kairos_extensions_dbus::JobType;
use kairos_extensions_dbus::proxies::AllPropertiesProxy;
use kairos_extensions_tests::namespace::snapshot_of;
use kairos_extensionsd::bus::authz::{Action, Authority};
use kairos_extensionsd::bus::error::{BusError, BusResult};
use kairos_extensionsd::bus::{attach, state::Shared};
use kairos_extensionsd::engine::meta::{self, Provenance};
use kairos_extensionsd::engine::release::ReleaseFields;
use kairos_extensionsd::engine::store::FileKey;
use kairos_extensionsd::engine::sysext::{RefreshRun, Refresher, SysextError};
use kairos_extensionsd::engine::{Config, Engine};
use zbus::message::{Header, Type};
use zbus::{Connection, MessageStream};

const DEST: &str = "org.kairos.Extensions1";
const MANAGER: &str = "/org/kairos/Extensions1";
const MANAGER_IFACE: &str = "org.kairos.Extensions1.Manager";

/// What the double says to every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Yes,
    No,
    /// Yes once the caller allows interaction; without it, interaction is required.
    Challenge,
    /// polkit fails (unreachable, timed out): a denial.
    Error,
}

/// One question the authority was asked: the action, its details, whether interactive.
type Asked = (Action, Vec<(String, String)>, bool);

/// An authority that answers as scripted and records what it was asked.
struct Scripted {
    verdict: Mutex<Verdict>,
    uid: u32,
    asked: Mutex<Vec<Asked>>,
}

impl Scripted {
    fn new(verdict: Verdict, uid: u32) -> Arc<Self> {
        Arc::new(Self { verdict: Mutex::new(verdict), uid, asked: Mutex::new(Vec::new()) })
    }

    fn set(&self, verdict: Verdict) {
        *self.verdict.lock().expect("verdict") = verdict;
    }
}

/// The service owns its authority; the test keeps a handle to script it.
struct Handle(Arc<Scripted>);

impl Authority for Handle {
    fn check<'a>(
        &'a self,
        _connection: &'a Connection,
        _header: &'a Header<'a>,
        action: Action,
        details: &'a [(&'a str, &'a str)],
        interactive: bool,
    ) -> BoxFuture<'a, BusResult<()>> {
        let details = details.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.0.asked.lock().expect("asked").push((action, details, interactive));
        let verdict = *self.0.verdict.lock().expect("verdict");
        Box::pin(async move {
            match verdict {
                Verdict::Yes => Ok(()),
                Verdict::Challenge if interactive => Ok(()),
                Verdict::Challenge => Err(BusError::interactive_required("authentication is required")),
                Verdict::No => Err(BusError::access_denied("not authorized")),
                Verdict::Error => Err(BusError::access_denied("polkit is not reachable")),
            }
        })
    }

    fn caller_uid<'a>(&'a self, _: &'a Connection, _: &'a Header<'a>) -> BoxFuture<'a, BusResult<u32>> {
        let uid = self.0.uid;
        Box::pin(async move { Ok(uid) })
    }
}

/// Merges what is activated: writes the names of the runtime links where systemd-sysext
/// records what it merged.
struct FakeSysext {
    root: PathBuf,
}

impl Refresher for FakeSysext {
    fn refresh(&self) -> Result<RefreshRun, SysextError> {
        let mut names: Vec<String> = fs::read_dir(self.root.join("run/extensions"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".raw")).map(str::to_owned))
            .collect();
        names.sort();
        let dir = self.root.join("usr/.systemd-sysext");
        fs::create_dir_all(&dir).map_err(|e| SysextError::Failed(e.to_string()))?;
        fs::write(dir.join("extensions"), names.join("\n")).map_err(|e| SysextError::Failed(e.to_string()))?;
        Ok(RefreshRun { success: true, log: String::new() })
    }
}

/// The service on one end of a socket pair, a client on the other.
struct Rig {
    root: tempfile::TempDir,
    authority: Arc<Scripted>,
    client: Connection,
    server: Connection,
    shared: Arc<Shared>,
}

impl Rig {
    async fn start(verdict: Verdict, extensions: &[&str], config: Config) -> Self {
        let root = tempfile::Builder::new().prefix("kx-p2p-").tempdir().expect("root");
        fs::create_dir_all(root.path().join("etc")).expect("etc");
        fs::write(root.path().join("etc/os-release"), "ID=debian\nVERSION_ID=12\n").expect("os-release");
        let refresher = Box::new(FakeSysext { root: root.path().to_path_buf() });
        let engine = Engine::open(root.path(), config, refresher).expect("an engine on a temporary root");
        for name in extensions {
            place(engine.layout().store().as_path(), name);
        }
        let authority = Scripted::new(verdict, 0);
        let shared = Shared::new(Arc::new(engine), Box::new(Handle(authority.clone())));
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        let guid = zbus::Guid::from_static_str("d9c3b5e0a4f14a6c8e2b7f1d0c9a8b7e").expect("a GUID");
        let server = zbus::connection::Builder::unix_stream(a).server(guid).p2p();
        let client = zbus::connection::Builder::unix_stream(b).p2p().build();
        let (server, client) = tokio::join!(attach(server, &shared), client);
        Self { root, authority, client: client.expect("client"), server: server.expect("the service attaches"), shared }
    }

    /// Calls a Manager method; nothing, or the error's name and message.
    async fn call<B>(&self, method: &str, body: &B, interactive: bool) -> Result<(), (String, String)>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let mut flags = zbus::proxy::MethodFlags::empty();
        if interactive {
            flags |= zbus::proxy::MethodFlags::ALLOW_INTERACTIVE_AUTH;
        }
        let proxy = zbus::Proxy::new(&self.client, DEST, MANAGER, MANAGER_IFACE).await.expect("proxy");
        // Any reply body will do; only success or the error matters here. (A call with
        // flags needs the reply's type: only Enable, whose reply is empty, uses them.)
        let reply = if interactive {
            proxy.call_with_flags::<_, B, ()>(method, flags, body).await.map(drop)
        } else {
            proxy.call_method(method, body).await.map(drop)
        };
        match reply {
            Ok(_) => Ok(()),
            Err(zbus::Error::MethodError(name, message, _)) => Err((name.to_string(), message.unwrap_or_default())),
            Err(zbus::Error::FDO(fdo)) => {
                let text = fdo.to_string();
                let (name, message) = text.split_once(": ").unwrap_or((text.as_str(), ""));
                Err((name.to_owned(), message.to_owned()))
            }
            Err(other) => Err(("unexpected".into(), other.to_string())),
        }
    }

    fn store(&self) -> PathBuf {
        self.root.path().join("var/lib/kairos/extensions")
    }

    /// Every path under the store with what it holds, to prove "nothing changed".
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        snapshot_of(&self.store())
    }
}

/// Places `name` as an install leaves it: the image file and a record that matches it.
fn place(store: &Path, name: &str) {
    let file = format!("{name}.raw");
    let path = store.join(&file);
    fs::write(&path, format!("image of {name}")).expect("image");
    let meta = fs::symlink_metadata(&path).expect("stat");
    let record = Provenance {
        name: name.to_owned(),
        file,
        source: format!("file:///images/{name}.raw"),
        resolved_digest: None,
        catalog: None,
        validators: None,
        digest: format!("sha256:{}", "0".repeat(64)),
        size: meta.len(),
        mtime_ns: FileKey::of(&meta).mtime_ns(),
        installed_time_us: 1,
        release: ReleaseFields::from([("ID".to_owned(), "_any".to_owned()), ("VERSION_ID".to_owned(), "1".to_owned())]),
    };
    meta::write(&store.join(".meta"), &record).expect("record");
}

fn error_name(kind: &str) -> String {
    format!("org.kairos.Extensions1.Error.{kind}")
}

/// Collects the signals the client receives until `quiet` passes without one.
async fn signals_until_quiet(stream: &mut MessageStream, quiet: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, stream.next()).await {
        if message.message_type() != Type::Signal {
            continue;
        }
        let header = message.header();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        if member == "PropertiesChanged" {
            let body: (String, std::collections::HashMap<String, zbus::OwnedVariant>, Vec<String>) =
                message.body().deserialize().expect("PropertiesChanged body");
            let mut names: Vec<&String> = body.1.keys().collect();
            names.sort();
            let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
            seen.push(format!("PropertiesChanged({})", names.join(",")));
        } else {
            seen.push(member);
        }
    }
    seen
}

#[tokio::test]
async fn bad_arguments_get_precise_errors_before_anyone_is_asked() {
    let rig = Rig::start(Verdict::Yes, &["k3s"], Config::default()).await;
    let before = rig.snapshot();
    type Case = (&'static str, Result<(), (String, String)>, String);
    let cases: Vec<Case> = vec![
        ("bad name", rig.call("Enable", &("../etc", "common", 0u64), false).await, error_name("InvalidName")),
        ("bad state", rig.call("Enable", &("k3s", "sometimes", 0u64), false).await, error_name("InvalidBootState")),
        (
            "unknown flag",
            rig.call("Enable", &("k3s", "common", 2u64), false).await,
            "org.freedesktop.DBus.Error.InvalidArgs".into(),
        ),
        ("not installed", rig.call("Enable", &("nginx", "common", 0u64), false).await, error_name("NotFound")),
        ("bad source", rig.call("Install", &("ftp://x/y.raw", opts()), false).await, error_name("InvalidSource")),
        (
            "unknown option",
            rig.call("Install", &("https://h/k3s.raw", opt("colour", "blue")), false).await,
            "org.freedesktop.DBus.Error.InvalidArgs".into(),
        ),
        ("bad get", rig.call("GetExtension", &("nginx",), false).await, error_name("NotFound")),
    ];
    for (what, outcome, expected) in cases {
        match outcome {
            Err((name, message)) => {
                assert_eq!(name, expected, "{what}: {message}");
                assert!(!message.is_empty(), "{what}: the message says why");
            }
            Ok(_) => panic!("{what}: accepted"),
        }
    }
    let asked = rig.authority.asked.lock().expect("asked").clone();
    assert_eq!(asked.len(), 1, "exactly the well-formed call reached polkit: {asked:?}");
    assert!(
        asked.iter().all(|(_, details, _)| details.iter().any(|(k, v)| k == "name" && v == "nginx")),
        "arguments are checked before polkit is asked; only the well-formed call reached it: {asked:?}"
    );
    assert_eq!(rig.snapshot(), before, "nothing changed");
}

fn opts() -> std::collections::HashMap<&'static str, zbus::Variant<'static>> {
    std::collections::HashMap::new()
}

fn opt(key: &'static str, value: &'static str) -> std::collections::HashMap<&'static str, zbus::Variant<'static>> {
    std::collections::HashMap::from([(key, zbus::Variant::from(value))])
}

#[tokio::test]
async fn a_denial_or_a_failing_authority_changes_nothing_and_says_so() {
    let rig = Rig::start(Verdict::No, &["k3s"], Config::default()).await;
    let before = rig.snapshot();
    // A directory is no image, but an unauthorized caller's descriptor is not even
    // looked at: it could be on a file system that never answers.
    let directory = fs::File::open(rig.store()).expect("a directory");
    for verdict in [Verdict::No, Verdict::Error] {
        rig.authority.set(verdict);
        let fd = zbus::Fd::from(&directory);
        for (method, outcome) in [
            ("InstallFromFd", rig.call("InstallFromFd", &(fd, "k3s.raw", opts()), false).await),
            ("Enable", rig.call("Enable", &("k3s", "common", 0u64), false).await),
            ("Disable", rig.call("Disable", &("k3s", "common", 0u64), false).await),
            ("Remove", rig.call("Remove", &("k3s", 0u64), false).await),
            ("Refresh", rig.call("Refresh", &(0u64,), false).await),
            ("Install", rig.call("Install", &("https://h/k3s.raw", opts()), false).await),
        ] {
            let (name, _) = outcome.expect_err(method);
            assert_eq!(name, "org.freedesktop.DBus.Error.AccessDenied", "{verdict:?} {method}");
        }
    }
    assert_eq!(rig.snapshot(), before, "a denial changes nothing");
    let asked = rig.authority.asked.lock().expect("asked").clone();
    let enable = asked.iter().find(|(action, _, _)| *action == Action::Manage).expect("Enable asked");
    assert!(
        enable.1.contains(&("name".into(), "k3s".into())) && enable.1.contains(&("boot_state".into(), "common".into()))
    );
}

#[tokio::test]
async fn a_challenge_needs_the_interaction_flag() {
    let rig = Rig::start(Verdict::Challenge, &["k3s"], Config::default()).await;
    let (name, message) = rig.call("Enable", &("k3s", "common", 0u64), false).await.expect_err("no interaction");
    assert_eq!(name, "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", "{message}");
    assert!(!rig.store().join("common/k3s.raw").exists());
    rig.call("Enable", &("k3s", "common", 0u64), true).await.expect("allowed with interaction");
    assert!(rig.store().join("common/k3s.raw").is_symlink());
}

#[tokio::test]
async fn changes_are_announced_once_in_order_and_reads_announce_nothing() {
    let rig = Rig::start(Verdict::Yes, &["k3s"], Config::default()).await;
    let mut stream = MessageStream::from(&rig.client);
    let _ = signals_until_quiet(&mut stream, Duration::from_millis(100)).await;

    rig.call("Enable", &("k3s", "common", 0u64), false).await.expect("enable");
    assert_eq!(
        signals_until_quiet(&mut stream, Duration::from_millis(300)).await,
        ["PropertiesChanged(EnabledBootStates)", "ExtensionEnabled"]
    );
    rig.call("Enable", &("k3s", "common", 0u64), false).await.expect("enable again");
    assert!(signals_until_quiet(&mut stream, Duration::from_millis(300)).await.is_empty(), "idempotent: silent");

    // Activate by hand, then merge: the merge is announced as what it did.
    fs::create_dir_all(rig.root.path().join("run/extensions")).expect("runtime directory");
    std::os::unix::fs::symlink("/var/lib/kairos/extensions/k3s.raw", rig.root.path().join("run/extensions/k3s.raw"))
        .expect("activation link");
    rig.call("Refresh", &(0u64,), false).await.expect("refresh");
    assert_eq!(
        signals_until_quiet(&mut stream, Duration::from_millis(300)).await,
        ["PropertiesChanged(Merged)", "PropertiesChanged(Merged)", "Refreshed"],
        "the extension's Merged, the Manager's Merged, then Refreshed"
    );

    for (method, body) in [("ListExtensions", None), ("GetExtension", Some("k3s")), ("ListJobs", None)] {
        let proxy = zbus::Proxy::new(&rig.client, DEST, MANAGER, MANAGER_IFACE).await.expect("proxy");
        match body {
            Some(name) => drop(proxy.call_method(method, &(name,)).await.expect(method)),
            None => drop(proxy.call_method(method, &()).await.expect(method)),
        }
    }
    assert!(signals_until_quiet(&mut stream, Duration::from_millis(300)).await.is_empty(), "reads are silent");

    rig.call("Remove", &("k3s", 0u64), false).await.expect("remove");
    assert_eq!(
        signals_until_quiet(&mut stream, Duration::from_millis(300)).await,
        ["ExtensionDisabled", "InterfacesRemoved", "ExtensionRemoved"],
        "disabled, the object goes, removed; without NOW it stays merged, so Merged does not change"
    );
}

#[tokio::test]
async fn jobs_queue_beyond_max_jobs_and_end_with_their_result() {
    let server = kairos_extensions_tests::http::FileServer::start_with(
        vec![0u8; 4 << 20],
        kairos_extensions_tests::http::Behaviour::Stall,
    );
    let config = Config { max_jobs: 1, ..Config::default() };
    let rig = Rig::start(Verdict::Yes, &[], config).await;
    let mut stream = MessageStream::from(&rig.client);
    let proxy = zbus::Proxy::new(&rig.client, DEST, MANAGER, MANAGER_IFACE).await.expect("proxy");
    let mut jobs = Vec::new();
    for n in 0..3 {
        let reply = proxy.call_method("Install", &(server.url(&format!("x{n}.raw")), opts())).await.expect("install");
        let (id, path): (u64, zbus::OwnedObjectPath) = reply.body().deserialize().expect("job");
        jobs.push((id, path));
    }
    let position = |path: &zbus::OwnedObjectPath| {
        let client = rig.client.clone();
        let path = path.clone();
        async move {
            let job = zbus::Proxy::new(&client, DEST, path, "org.kairos.Extensions1.Job").await.expect("job proxy");
            let state: String = job.get_property("State").await.expect("State");
            let position: u32 = job.get_property("QueuePosition").await.expect("QueuePosition");
            (state, position)
        }
    };
    assert_eq!(position(&jobs[0].1).await, ("running".to_owned(), 0));
    assert_eq!(position(&jobs[1].1).await, ("queued".to_owned(), 1));
    assert_eq!(position(&jobs[2].1).await, ("queued".to_owned(), 2));

    // Cancel the last in line, then the running one: the middle one runs and stalls too.
    for (id, path) in [&jobs[2], &jobs[0], &jobs[1]] {
        let job = zbus::Proxy::new(&rig.client, DEST, path.clone(), "org.kairos.Extensions1.Job").await.expect("job");
        job.call_method("Cancel", &()).await.expect("cancel");
        let _ = id;
    }
    let mut removed = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while removed.len() < 3 && tokio::time::Instant::now() < deadline {
        let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await else { continue };
        let header = message.header();
        if header.member().is_some_and(|m| m.as_str() == "JobRemoved") {
            let (id, _, result): (u64, zbus::OwnedObjectPath, String) =
                message.body().deserialize().expect("JobRemoved body");
            removed.insert(id, result);
        }
    }
    let expected: BTreeMap<u64, String> = jobs.iter().map(|(id, _)| (*id, "canceled".to_owned())).collect();
    assert_eq!(removed, expected, "every job ends, canceled, with its JobRemoved");
    assert_eq!(fs::read_dir(rig.store().join(".tmp")).map(|d| d.count()).unwrap_or(0), 0, "nothing staged is left");

    // A job that runs and fails ends `failed`: junk is no extension image.
    let junk = rig.root.path().join("junk.raw");
    fs::write(&junk, b"no file system at all").expect("junk");
    let reply = proxy.call_method("Install", &(format!("file://{}", junk.display()), opts())).await.expect("install");
    let (id, _): (u64, zbus::OwnedObjectPath) = reply.body().deserialize().expect("job");
    let result = loop {
        let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await else {
            panic!("no JobRemoved for the failing job")
        };
        if message.header().member().is_some_and(|m| m.as_str() == "JobRemoved") {
            let (removed_id, _, result): (u64, zbus::OwnedObjectPath, String) =
                message.body().deserialize().expect("JobRemoved body");
            if removed_id == id {
                break result;
            }
        }
    };
    assert_eq!(result, "failed");
}

type Managed = BTreeMap<String, BTreeMap<String, std::collections::HashMap<String, zbus::OwnedVariant>>>;

/// What `GetManagedObjects` answers, ordered.
async fn managed_objects(client: &Connection) -> Managed {
    let proxy =
        zbus::Proxy::new(client, DEST, MANAGER, "org.freedesktop.DBus.ObjectManager").await.expect("ObjectManager");
    let reply = proxy.call_method("GetManagedObjects", &()).await.expect("GetManagedObjects");
    let objects: std::collections::HashMap<
        zbus::OwnedObjectPath,
        std::collections::HashMap<String, std::collections::HashMap<String, zbus::OwnedVariant>>,
    > = reply.body().deserialize().expect("a{oa{sa{sv}}}");
    objects.into_iter().map(|(path, interfaces)| (path.to_string(), interfaces.into_iter().collect())).collect()
}

/// What `Properties.GetAll` answers for `interface` of the object at `path`.
async fn get_all(
    client: &Connection,
    path: &str,
    interface: &str,
) -> std::collections::HashMap<String, zbus::OwnedVariant> {
    let proxy =
        zbus::Proxy::new(client, DEST, path.to_owned(), "org.freedesktop.DBus.Properties").await.expect("proxy");
    proxy.call("GetAll", &(interface,)).await.expect("GetAll")
}

/// The contract's typed `GetAll` of the object at `path`.
async fn all_properties(client: &Connection, path: &str) -> AllPropertiesProxy<'static> {
    AllPropertiesProxy::builder(client)
        .path(path.to_owned())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("proxy")
}

/// The signals the client receives until `quiet` passes without one, whole.
async fn signal_messages(stream: &mut MessageStream, quiet: Duration) -> Vec<zbus::Message> {
    let mut seen = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, stream.next()).await {
        if message.message_type() == Type::Signal {
            seen.push(message);
        }
    }
    seen
}

fn member(message: &zbus::Message) -> String {
    message.header().member().map(|m| m.to_string()).unwrap_or_default()
}

#[tokio::test]
async fn the_object_manager_tells_what_getall_tells_and_announces_objects_as_they_come_and_go() {
    const EXTENSION: &str = "org.kairos.Extensions1.Extension";
    const JOB: &str = "org.kairos.Extensions1.Job";
    let rig = Rig::start(Verdict::Yes, &["k3s", "nginx"], Config::default()).await;
    let mut stream = MessageStream::from(&rig.client);
    let k3s = "/org/kairos/Extensions1/extension/k3s";

    let managed = managed_objects(&rig.client).await;
    assert_eq!(managed.keys().collect::<Vec<_>>(), [k3s, "/org/kairos/Extensions1/extension/nginx"]);
    for (path, interfaces) in &managed {
        assert_eq!(interfaces.keys().collect::<Vec<_>>(), [EXTENSION], "{path}: only our interface");
        let all = get_all(&rig.client, path, EXTENSION).await;
        for property in ["Name", "Version", "EnabledBootStates", "Status", "Release", "UpdateCheck", "PreviousVersion"]
        {
            assert!(all.contains_key(property), "{path}: {property} is there, with every other: {all:?}");
        }
        assert_eq!(interfaces[EXTENSION], all, "{path}: GetManagedObjects and GetAll agree");
    }
    // What kairos-ext status reads: the manager's GetAll decodes into the contract's type.
    let typed = all_properties(&rig.client, MANAGER).await.manager().await.expect("the manager's GetAll decodes");
    let raw = get_all(&rig.client, MANAGER, MANAGER_IFACE).await;
    assert_eq!(raw.len(), 7, "ManagerProperties has a field for each property: {raw:?}");
    let store: String = raw["StoreDirectory"].clone().try_into().expect("StoreDirectory is a string");
    let version: String = raw["Version"].clone().try_into().expect("Version is a string");
    assert_eq!((&typed.store_directory, &typed.version), (&store, &version));
    assert_eq!(typed.boot_states.len(), 4, "{typed:?}");

    // An extension copied into the store, as the watcher would see it.
    place(&rig.store(), "zfs");
    kairos_extensionsd::bus::resync::resync(&rig.shared, &rig.server).await.expect("resync");
    let seen = signal_messages(&mut stream, Duration::from_millis(300)).await;
    assert_eq!(seen.iter().map(member).collect::<Vec<_>>(), ["InterfacesAdded", "ExtensionInstalled"]);
    let (path, added): (
        zbus::OwnedObjectPath,
        std::collections::HashMap<String, std::collections::HashMap<String, zbus::OwnedVariant>>,
    ) = seen[0].body().deserialize().expect("InterfacesAdded body");
    assert_eq!(path.as_str(), "/org/kairos/Extensions1/extension/zfs");
    assert_eq!(added.keys().collect::<Vec<_>>(), [EXTENSION]);
    assert_eq!(added[EXTENSION], get_all(&rig.client, path.as_str(), EXTENSION).await, "announced as GetAll tells it");
    assert!(managed_objects(&rig.client).await.contains_key(path.as_str()));

    rig.call("Remove", &("zfs", 0u64), false).await.expect("remove");
    let seen = signal_messages(&mut stream, Duration::from_millis(300)).await;
    assert_eq!(seen.iter().map(member).collect::<Vec<_>>(), ["InterfacesRemoved", "ExtensionRemoved"]);
    let removed: (zbus::OwnedObjectPath, Vec<String>) = seen[0].body().deserialize().expect("InterfacesRemoved body");
    assert_eq!((removed.0.as_str(), removed.1), ("/org/kairos/Extensions1/extension/zfs", vec![EXTENSION.to_owned()]));
    assert!(!managed_objects(&rig.client).await.contains_key("/org/kairos/Extensions1/extension/zfs"));

    // A job: announced before JobNew, listed while it lives, gone after JobRemoved.
    let server = kairos_extensions_tests::http::FileServer::start_with(
        vec![0u8; 4 << 20],
        kairos_extensions_tests::http::Behaviour::Stall,
    );
    let proxy = zbus::Proxy::new(&rig.client, DEST, MANAGER, MANAGER_IFACE).await.expect("proxy");
    let reply = proxy.call_method("Install", &(server.url("stalls.raw"), opts())).await.expect("install");
    let (id, job): (u64, zbus::OwnedObjectPath) = reply.body().deserialize().expect("job");
    let seen = signal_messages(&mut stream, Duration::from_millis(300)).await;
    let members: Vec<String> = seen.iter().map(member).filter(|m| m != "PropertiesChanged").collect();
    assert_eq!(members, ["InterfacesAdded", "JobNew"]);
    let (path, added): (
        zbus::OwnedObjectPath,
        std::collections::HashMap<String, std::collections::HashMap<String, zbus::OwnedVariant>>,
    ) = seen
        .iter()
        .find(|m| member(m) == "InterfacesAdded")
        .expect("InterfacesAdded")
        .body()
        .deserialize()
        .expect("body");
    assert_eq!(path, job);
    let id_announced: u64 = added[JOB]["Id"].clone().try_into().expect("Id is a u64");
    let kind: String = added[JOB]["Type"].clone().try_into().expect("Type is a string");
    assert_eq!((id_announced, kind.as_str()), (id, "install"));
    let managed = managed_objects(&rig.client).await;
    assert_eq!(managed[job.as_str()].keys().collect::<Vec<_>>(), [JOB]);
    assert_eq!(managed[job.as_str()][JOB]["Id"], added[JOB]["Id"]);
    // What kairos-ext reads when it follows a job and in `jobs`: one typed GetAll.
    let typed = all_properties(&rig.client, job.as_str()).await.job().await.expect("the job's GetAll decodes");
    assert_eq!((typed.id, typed.kind), (Some(id), Some(JobType::Install)), "{typed:?}");
    assert!(typed.state.is_some() && typed.source.is_some() && typed.queue_position.is_some(), "{typed:?}");

    let job_proxy = zbus::Proxy::new(&rig.client, DEST, job.clone(), JOB).await.expect("job proxy");
    job_proxy.call_method("Cancel", &()).await.expect("cancel");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut members = Vec::new();
    while !members.iter().any(|m| m == "InterfacesRemoved") && tokio::time::Instant::now() < deadline {
        members.extend(signal_messages(&mut stream, Duration::from_millis(500)).await.iter().map(member));
    }
    members.retain(|m| m != "PropertiesChanged");
    assert_eq!(members, ["JobRemoved", "InterfacesRemoved"], "the job ends, then its object goes");
    assert!(!managed_objects(&rig.client).await.contains_key(job.as_str()));
}

#[tokio::test]
async fn set_says_which_properties_are_read_only_and_which_do_not_exist() {
    let rig = Rig::start(Verdict::Yes, &["k3s"], Config::default()).await;
    let set = |path: &'static str, interface: &'static str, property: &'static str| {
        let client = rig.client.clone();
        async move {
            let proxy = zbus::Proxy::new(&client, DEST, path, "org.freedesktop.DBus.Properties").await.expect("proxy");
            match proxy.call_method("Set", &(interface, property, zbus::Variant::from("x"))).await {
                Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
                Err(zbus::Error::FDO(fdo)) => zbus::DBusError::name(fdo.as_ref()).to_string(),
                other => panic!("Set {interface}.{property} must fail: {other:?}"),
            }
        }
    };
    let k3s = "/org/kairos/Extensions1/extension/k3s";
    for (path, interface, property) in [
        (MANAGER, MANAGER_IFACE, "Version"),
        (MANAGER, MANAGER_IFACE, "Merged"),
        (k3s, "org.kairos.Extensions1.Extension", "Name"),
        (k3s, "org.kairos.Extensions1.Extension", "EnabledBootStates"),
    ] {
        assert_eq!(set(path, interface, property).await, "org.freedesktop.DBus.Error.PropertyReadOnly", "{property}");
    }
    assert_eq!(
        set(k3s, "org.kairos.Extensions1.Extension", "Colour").await,
        "org.freedesktop.DBus.Error.UnknownProperty"
    );
    assert_eq!(set(k3s, "org.kairos.Extensions1.Nothing", "Name").await, "org.freedesktop.DBus.Error.UnknownInterface");
    let version: String = zbus::Proxy::new(&rig.client, DEST, MANAGER, MANAGER_IFACE)
        .await
        .expect("proxy")
        .get_property("Version")
        .await
        .expect("Version");
    assert_eq!(version, env!("CARGO_PKG_VERSION"), "Set changed nothing");
}

/// Our Remove and someone's install of the same name can cross: by the time the
/// removal reaches the model, the store holds the extension again. The model must
/// follow the store, not the removal.
#[tokio::test]
async fn a_removal_that_another_change_undid_leaves_the_extension_listed() {
    use kairos_extensionsd::bus::resync::{Touched, resync_touched};
    let rig = Rig::start(Verdict::Yes, &["k3s"], Config::default()).await;
    let mut stream = MessageStream::from(&rig.client);
    let removed = kairos_extensions_dbus::ExtensionName::new("k3s").expect("a name");
    let touched = Touched { removed: [removed].into(), ..Touched::default() };
    resync_touched(&rig.shared, &rig.server, touched).await.expect("resync");
    let proxy = zbus::Proxy::new(&rig.client, DEST, MANAGER, MANAGER_IFACE).await.expect("proxy");
    let listed: Vec<(String, String, Vec<String>, bool, zbus::OwnedObjectPath)> =
        proxy.call("ListExtensions", &()).await.expect("ListExtensions");
    assert_eq!(listed.iter().map(|row| row.0.as_str()).collect::<Vec<_>>(), ["k3s"], "the store holds it");
    assert!(
        signals_until_quiet(&mut stream, Duration::from_millis(300)).await.is_empty(),
        "nothing changed, so nothing is announced"
    );
}

/// Runs this file's other tests again as the user `nobody`, to prove they need no root.
/// Only as root (who can switch users); as anyone else the tests above already ran
/// unprivileged.
#[test]
fn the_other_tests_pass_as_nobody() {
    const CHILD: &str = "KAIROS_TESTS_AS_NOBODY";
    if std::env::var_os(CHILD).is_some() || !kairos_extensions_tests::is_root() {
        return;
    }
    // A copy that nobody can reach: the build directory may sit below one that is private.
    let dir = tempfile::Builder::new().prefix("kx-nobody-").tempdir().expect("scratch");
    let exe = dir.path().join("bus_unprivileged");
    fs::copy(std::env::current_exe().expect("own path"), &exe).expect("copy of the test binary");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("mode");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["--skip", "the_other_tests_pass_as_nobody", "--test-threads=2"])
        .env(CHILD, "1")
        .env("TMPDIR", "/tmp")
        .current_dir("/tmp")
        .output()
        .expect("setpriv runs (Debian package util-linux)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "as nobody:\n{said}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("test result: ok. 8 passed"), "every other test ran as nobody:\n{said}");
}
