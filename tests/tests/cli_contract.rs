//! The typed contract against real components: the proxies of `kairos-extensions-dbus`
//! send every member of `org.kairos.Extensions1.xml` with its signature through a real
//! dbus-daemon carrying our bus policy, and read replies of the XML's types; and
//! `kairos-ext` through the service lists what `kairos-ext --root /` lists, with one
//! bus call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::process::Output;
use std::time::Duration;

use kairos_extensions_dbus::proxies::{
    ExtensionDisabled, ExtensionEnabled, ExtensionInstalled, ExtensionProxy, ExtensionRemoved, ExtensionUpdated,
    JobNew, JobProxy, JobRemoved, ManagerProxy, Refreshed,
};
use kairos_extensions_dbus::{BUS_NAME, BootState, INTERFACE_XML, MANAGER_INTERFACE, MANAGER_PATH};
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::monitor::eventually;
use kairos_extensions_tests::system::{Rig, SystemBus};
use kairos_extensions_tests::{bins, contract, privileged, stderr, stdout};
use serde_json::Value;
use tokio::sync::mpsc;
use zbus::message::{Flags, Type};
use zbus::proxy::CacheProperties;
use zbus::{Connection, Message, MessageStream, OwnedObjectPath, Variant};

const QUICK: &str = "idle_exit_sec = 0\n";
const EXTENSION_PATH: &str = "/org/kairos/Extensions1/extension/hello";
const JOB_PATH: &str = "/org/kairos/Extensions1/job/1";

/// What the XML says of each member: `Iface.method.Name` → `(in, out)` signatures,
/// `Iface.property.Name` → `(type, "")`, `Iface.signal.Name` → `(args, "")`.
fn xml_members() -> BTreeMap<String, (String, String)> {
    contract::members(INTERFACE_XML)
        .into_iter()
        .filter_map(|member| {
            if let Some((key, signature)) = member.split_once('(') {
                let signature = signature.strip_suffix(')').unwrap_or(signature);
                let (ins, outs) = signature.split_once(")->(").unwrap_or((signature, ""));
                return Some((key.to_owned(), (ins.to_owned(), outs.to_owned())));
            }
            let (key, rest) = member.split_once(':')?;
            let (ty, _access) = rest.split_once(':')?;
            Some((key.to_owned(), (ty.to_owned(), String::new())))
        })
        .collect()
}

/// The next message of `stream` (what `StreamExt::next` does, without that crate).
async fn next(stream: &mut MessageStream) -> Option<zbus::Result<Message>> {
    use zbus::export::futures_core::Stream;
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

fn path(text: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(text).expect("a valid object path")
}

/// A reply of the XML's out signature, with values the contract's types accept.
fn reply(call: &Message, out: &str) -> zbus::Result<Message> {
    let builder = Message::method_return(&call.header());
    let extension = path(EXTENSION_PATH);
    let job = path(JOB_PATH);
    match out {
        "" => builder.build(&()),
        "s" => builder.build(&("{}",)),
        "o" => builder.build(&(extension,)),
        "as" => builder.build(&(vec!["hello"],)),
        "to" => builder.build(&(1u64, job)),
        "a(ssasbo)" => builder.build(&(vec![("hello", "1", vec!["common"], true, extension)],)),
        "a(tsso)" => builder.build(&(vec![(1u64, "install", "running", job)],)),
        "a(ssssas)" => builder.build(&(vec![("hello", "Hello", "Says hello", "1.0.0", vec!["1.0.0"])],)),
        other => panic!("teach this test a reply of signature {other}"),
    }
}

/// A property value of the XML's type, one the contract's types accept.
fn property_value(name: &str, ty: &str) -> Variant<'static> {
    match (name, ty) {
        ("Status", "s") => Variant::from("ok"),
        ("State", "s") => Variant::from("running"),
        ("Type", "s") => Variant::from("install"),
        (_, "s") => Variant::from("text"),
        // `common` reads as a boot state and as a name alike.
        (_, "as") => Variant::from(vec!["common"]),
        (_, "t") => Variant::from(1u64),
        (_, "u") => Variant::from(1u32),
        (_, "b") => Variant::from(true),
        (_, "a{ss}") => Variant::from(HashMap::from([("ID".to_owned(), "_any".to_owned())])),
        (name, other) => panic!("teach this test a property {name} of type {other}"),
    }
}

/// One call the stand-in service received.
#[derive(Debug)]
struct Call {
    /// `Iface.method.Name` or, for `Properties.Get`, `Iface.property.Name`.
    member: String,
    /// The signature of its arguments.
    signature: String,
    /// Whether it allowed interactive authorization.
    interactive: bool,
}

/// Owns `org.kairos.Extensions1` on `server`, records every call and answers it as the
/// XML says; an unknown member gets an error, so the caller's call fails.
///
/// `stream` must be made before any client can call: a connection drops the messages
/// that arrive while no stream of it is open, and the caller would wait forever.
async fn stand_in(server: Connection, mut stream: MessageStream, calls: mpsc::UnboundedSender<Call>) {
    let members = xml_members();
    while let Some(item) = next(&mut stream).await {
        // A message the stream could not read must not end the stand-in: every call
        // after it would wait for an answer forever.
        let Ok(message) = item else { continue };
        let header = message.header();
        if header.message_type() != Type::MethodCall {
            continue;
        }
        let interface = header.interface().map(|i| i.to_string()).unwrap_or_default();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let interactive = header.primary().flags().contains(Flags::ALLOW_INTERACTIVE_AUTH);
        let answer = if interface == "org.freedesktop.DBus.Properties" && member == "Get" {
            let (of, name): (String, String) = message.body().deserialize().expect("Get(ss)");
            let key = format!("{of}.property.{name}");
            let known = members.get(&key).cloned();
            let _ = calls.send(Call { member: key, signature: "ss".into(), interactive });
            match known {
                Some((ty, _)) => Message::method_return(&header).build(&(property_value(&name, &ty),)),
                None => {
                    Message::error(&header, "org.freedesktop.DBus.Error.UnknownProperty").build(&("not in the XML",))
                }
            }
        } else {
            let key = format!("{interface}.method.{member}");
            let signature = message.body().signature().to_string_no_parens();
            let known = members.get(&key).cloned();
            let _ = calls.send(Call { member: key, signature, interactive });
            match known {
                Some((_, out)) => reply(&message, &out),
                None => Message::error(&header, "org.freedesktop.DBus.Error.UnknownMethod").build(&("not in the XML",)),
            }
        };
        if let Ok(answer) = answer {
            let _ = server.send(&answer).await;
        }
    }
}

/// Makes each proxy call in turn and returns what the stand-in saw of it; a call that
/// failed, or never reached the stand-in, fails the test.
struct Caller {
    calls: mpsc::UnboundedReceiver<Call>,
    seen: Vec<Call>,
}

impl Caller {
    fn check<T: std::fmt::Debug>(&mut self, what: &str, result: zbus::Result<T>, interactive: bool) {
        // The stand-in records a call before it answers it: once the answer is here,
        // so is the record.
        let call = self.calls.try_recv().unwrap_or_else(|_| panic!("{what} never reached the service: {result:?}"));
        assert!(result.is_ok(), "{what} ({}) failed: {result:?}", call.member);
        assert_eq!(call.interactive, interactive, "{what}: {call:?}");
        self.seen.push(call);
    }
}

/// Calls every method and reads every property through the proxies, plain and
/// interactive forms alike.
async fn call_everything(client: &Connection, caller: &mut Caller) {
    let manager =
        ManagerProxy::builder(client).cache_properties(CacheProperties::No).build().await.expect("manager proxy");
    let extension = ExtensionProxy::builder(client)
        .path(EXTENSION_PATH)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .expect("extension proxy");
    let job = JobProxy::builder(client)
        .path(JOB_PATH)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .expect("job proxy");
    let image = tempfile::tempfile().expect("a file to pass");
    let fd = || zbus::Fd::from(&image);
    let common = BootState::Common;

    let listed = manager.list_extensions().await;
    assert_eq!(listed.as_ref().map(|rows| rows[0].2.clone()).ok(), Some(vec![common]), "typed rows: {listed:?}");
    caller.check("ListExtensions", listed, false);
    caller.check("GetExtension", manager.get_extension("hello").await, false);
    caller.check("Describe", manager.describe("hello").await, false);
    caller.check("ListJobs", manager.list_jobs().await, false);
    caller.check("ListCatalog", manager.list_catalog().await, false);
    caller.check("Install", manager.install("oci://r/x", HashMap::new()).await, false);
    caller.check("Install", manager.install_interactive("oci://r/x", HashMap::new()).await, true);
    caller.check("InstallFromFd", manager.install_from_fd(fd(), "x.raw", HashMap::new()).await, false);
    caller.check("InstallFromFd", manager.install_from_fd_interactive(fd(), "x.raw", HashMap::new()).await, true);
    caller.check("Enable", manager.enable("hello", common, 1).await, false);
    caller.check("Enable", manager.enable_interactive("hello", common, 1).await, true);
    caller.check("Disable", manager.disable("hello", common, 0).await, false);
    caller.check("Disable", manager.disable_interactive("hello", common, 0).await, true);
    caller.check("Remove", manager.remove("hello", 0).await, false);
    caller.check("Remove", manager.remove_interactive("hello", 0).await, true);
    caller.check("Refresh", manager.refresh(0).await, false);
    caller.check("Refresh", manager.refresh_interactive(0).await, true);
    caller.check("CheckUpdates", manager.check_updates(&["hello"], 0).await, false);
    caller.check("CheckUpdates", manager.check_updates_interactive(&[], 0).await, true);
    caller.check("Update", manager.update(&["hello"], HashMap::new()).await, false);
    caller.check("Update", manager.update_interactive(&[], HashMap::new()).await, true);
    caller.check("Rollback", manager.rollback("hello", 1).await, false);
    caller.check("Rollback", manager.rollback_interactive("hello", 0).await, true);
    caller.check("Manager.Version", manager.version().await, false);
    caller.check("Manager.BootState", manager.boot_state().await, false);
    caller.check("Manager.BootStates", manager.boot_states().await, false);
    caller.check("Manager.Catalogs", manager.catalogs().await, false);
    caller.check("Manager.Merged", manager.merged().await, false);
    caller.check("Manager.ImagePolicy", manager.image_policy().await, false);
    caller.check("Manager.StoreDirectory", manager.store_directory().await, false);

    caller.check("Extension.Describe", extension.describe().await, false);
    caller.check("Extension.Enable", extension.enable(common, 0).await, false);
    caller.check("Extension.Enable", extension.enable_interactive(common, 0).await, true);
    caller.check("Extension.Disable", extension.disable(common, 0).await, false);
    caller.check("Extension.Disable", extension.disable_interactive(common, 0).await, true);
    caller.check("Extension.Remove", extension.remove(0).await, false);
    caller.check("Extension.Remove", extension.remove_interactive(0).await, true);
    caller.check("Extension.Name", extension.name().await, false);
    caller.check("Extension.Version", extension.version().await, false);
    caller.check("Extension.Source", extension.source().await, false);
    caller.check("Extension.Digest", extension.digest().await, false);
    caller.check("Extension.Size", extension.size().await, false);
    caller.check("Extension.InstalledTime", extension.installed_time().await, false);
    caller.check("Extension.EnabledBootStates", extension.enabled_boot_states().await, false);
    caller.check("Extension.Merged", extension.merged().await, false);
    caller.check("Extension.Compatible", extension.compatible().await, false);
    caller.check("Extension.IncompatibleReason", extension.incompatible_reason().await, false);
    caller.check("Extension.Status", extension.status().await, false);
    caller.check("Extension.StatusReason", extension.status_reason().await, false);
    caller.check("Extension.Release", extension.release().await, false);
    caller.check("Extension.UpdateAvailable", extension.update_available().await, false);
    caller.check("Extension.AvailableVersion", extension.available_version().await, false);
    caller.check("Extension.AvailableSource", extension.available_source().await, false);
    caller.check("Extension.CheckedTime", extension.checked_time().await, false);
    caller.check("Extension.UpdateCheck", extension.update_check().await, false);
    caller.check("Extension.PreviousVersion", extension.previous_version().await, false);

    caller.check("Job.Cancel", job.cancel().await, false);
    caller.check("Job.Cancel", job.cancel_interactive().await, true);
    caller.check("Job.Id", job.id().await, false);
    caller.check("Job.Type", job.kind().await, false);
    caller.check("Job.Source", job.source().await, false);
    caller.check("Job.Name", job.name().await, false);
    caller.check("Job.State", job.state().await, false);
    caller.check("Job.Phase", job.phase().await, false);
    caller.check("Job.Progress", job.progress().await, false);
    caller.check("Job.BytesDone", job.bytes_done().await, false);
    caller.check("Job.BytesTotal", job.bytes_total().await, false);
    caller.check("Job.Error", job.error().await, false);
    caller.check("Job.QueuePosition", job.queue_position().await, false);
}

/// A signal of the Manager with arguments of signature `args`, as the service sends it.
fn manager_signal(member: &str, args: &str) -> Message {
    let builder = Message::signal(MANAGER_PATH, MANAGER_INTERFACE, member);
    let object = path(EXTENSION_PATH);
    match args {
        "so" => builder.build(&("hello", object)),
        "ss" => builder.build(&("hello", "common")),
        "as" => builder.build(&(vec!["hello"],)),
        "to" => builder.build(&(1u64, object)),
        "tos" => builder.build(&(1u64, object, "done")),
        "sss" => builder.build(&("hello", "1", "2")),
        other => panic!("teach this test a signal of signature {other}"),
    }
    .expect("signal body")
}

/// Whether the proxies' signal type for `member` reads `message`; `None` when the
/// proxies have no such signal.
fn proxy_reads(member: &str, message: Message) -> Option<bool> {
    let read = match member {
        "ExtensionInstalled" => ExtensionInstalled::from_message(message)?.args().is_ok(),
        "ExtensionRemoved" => ExtensionRemoved::from_message(message)?.args().is_ok(),
        "ExtensionEnabled" => ExtensionEnabled::from_message(message)?.args().is_ok(),
        "ExtensionDisabled" => ExtensionDisabled::from_message(message)?.args().is_ok(),
        "Refreshed" => Refreshed::from_message(message)?.args().is_ok(),
        "ExtensionUpdated" => ExtensionUpdated::from_message(message)?.args().is_ok(),
        "JobNew" => JobNew::from_message(message)?.args().is_ok(),
        "JobRemoved" => JobRemoved::from_message(message)?.args().is_ok(),
        _ => return None,
    };
    Some(read)
}

#[test]
fn the_proxies_cover_every_member_of_the_xml_with_its_signature() {
    if !privileged("the_proxies_cover_every_member_of_the_xml_with_its_signature") {
        return;
    }
    let members = xml_members();
    let bus = SystemBus::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let seen = runtime.block_on(async {
        let server = bus.connect().await;
        server.request_name(BUS_NAME).await.expect("root may own the name (our bus policy)");
        let (sender, calls) = mpsc::unbounded_channel();
        let stream = MessageStream::from(&server);
        let stand_in = tokio::spawn(stand_in(server, stream, sender));
        let client = bus.connect().await;
        let mut caller = Caller { calls, seen: Vec::new() };
        // Nothing here should take more than a second; a call left unanswered fails
        // the test and names the last call that was answered.
        let finished = tokio::time::timeout(Duration::from_secs(120), call_everything(&client, &mut caller)).await;
        stand_in.abort();
        assert!(finished.is_ok(), "a call after {:?} was never answered", caller.seen.last());
        caller.seen
    });

    let mut covered = BTreeSet::new();
    for call in &seen {
        let (ins, _) = members.get(&call.member).unwrap_or_else(|| panic!("{call:?} is not in the XML"));
        if call.member.contains(".method.") {
            assert_eq!(&call.signature, ins, "{}: the proxy's arguments differ from the XML", call.member);
        }
        covered.insert(call.member.clone());
    }
    // Every mutating method was sent both ways; read methods never ask for interaction.
    for call in seen.iter().filter(|c| c.interactive) {
        assert!(
            seen.iter().any(|c| c.member == call.member && !c.interactive),
            "{} has only an interactive form",
            call.member
        );
    }

    let mut signals = BTreeSet::new();
    for (key, (args, _)) in members.iter().filter(|(key, _)| key.contains(".signal.")) {
        let member = key.rsplit('.').next().expect("a member name");
        let read = proxy_reads(member, manager_signal(member, args));
        assert_eq!(read, Some(true), "the proxies do not read the signal {key}({args})");
        signals.insert(key.clone());
    }
    let callable: BTreeSet<String> = members.keys().filter(|k| !k.contains(".signal.")).cloned().collect();
    let missing: Vec<&String> = callable.difference(&covered).collect();
    assert!(missing.is_empty(), "no proxy call for {missing:?}");
    assert!(!signals.is_empty() && covered.len() > 40, "the XML was read: {covered:?}");
}

fn succeeded(output: Output, what: &str) -> Output {
    assert!(output.status.success(), "{what} failed: {}", stderr(&output));
    output
}

fn json_array(output: &Output) -> Vec<Value> {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not a JSON array ({e}): {}", stdout(output)))
}

/// The method calls `run` makes to the service, seen by a monitor on the bus:
/// `Interface.Member`, in order.
fn calls_to_the_service(rig: &Rig, run: impl FnOnce() -> Output) -> (Output, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (mut stream, sentinel, service) = runtime.block_on(async {
        let monitor = rig.bus.connect().await;
        let stream = MessageStream::from(&monitor);
        zbus::fdo::MonitoringProxy::new(&monitor)
            .await
            .expect("monitoring proxy")
            .become_monitor(&[], 0)
            .await
            .expect("root may monitor the bus");
        let sentinel = rig.bus.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&sentinel).await.expect("bus proxy");
        let service = dbus.get_name_owner(BUS_NAME.try_into().expect("bus name")).await.expect("the service runs");
        (stream, sentinel, service.to_string())
    });
    let output = run();
    runtime.block_on(async {
        // A call of our own after the command ended: once the monitor sees it, it has
        // seen everything the command sent.
        let ping = zbus::fdo::PeerProxy::builder(&sentinel)
            .destination(BUS_NAME)
            .path(MANAGER_PATH)
            .build()
            .await
            .expect("peer proxy");
        ping.ping().await.expect("the service answers a ping");
        let ours = sentinel.unique_name().map(|n| n.to_string()).unwrap_or_default();
        let mut calls = Vec::new();
        while let Some(Ok(message)) = next(&mut stream).await {
            let header = message.header();
            if header.message_type() != Type::MethodCall {
                continue;
            }
            let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
            let destination = header.destination().map(|d| d.to_string()).unwrap_or_default();
            if sender == ours && header.member().is_some_and(|m| m == "Ping") {
                break;
            }
            if destination == BUS_NAME || destination == service {
                let interface = header.interface().map(|i| i.to_string()).unwrap_or_default();
                let member = header.member().map(|m| m.to_string()).unwrap_or_default();
                calls.push(format!("{interface}.{member}"));
            }
        }
        (output, calls)
    })
}

#[test]
fn list_through_the_service_is_one_call_and_says_what_offline_list_says() {
    if !privileged("list_through_the_service_is_one_call_and_says_what_offline_list_says") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let hello = ImageBuilder::new("hello").command("hello-kx", "hi").build(rig.scratch.path(), "hello.raw");
    let tools = ImageBuilder::new("tools").release("ID=_any\nVERSION_ID=2.1\n").build(rig.scratch.path(), "tools.raw");
    let alien = ImageBuilder::new("alien").release("ID=no-such-os\n").build(rig.scratch.path(), "alien.raw");
    succeeded(rig.kairos_ext(&["install", hello.to_str().expect("utf-8"), "--enable", "common", "--now"]), "install");
    succeeded(rig.kairos_ext(&["install", tools.to_str().expect("utf-8"), "--enable", "passive"]), "install");
    // One the service did not install: no provenance, and it does not fit this system.
    fs::copy(&alien, rig.ns.store().join("alien.raw")).expect("copy into the store");
    assert!(
        eventually(Duration::from_secs(10), || stdout(&rig.kairos_ext(&["list"])).contains("alien")),
        "the service sees the copied image"
    );

    let (listed, calls) = calls_to_the_service(&rig, || rig.kairos_ext(&["list", "--json"]));
    let listed = json_array(&succeeded(listed, "list --json"));
    assert_eq!(calls, ["org.freedesktop.DBus.ObjectManager.GetManagedObjects"], "list is one call");

    let offline = rig.ns.command(bins::kairos_ext()).args(["--root", "/", "list", "--json"]).output().expect("runs");
    let offline = json_array(&succeeded(offline, "--root / list --json"));
    let names: Vec<&str> = offline.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["alien", "hello", "tools"]);
    assert_eq!(offline[0]["status"], "incompatible");
    assert_eq!(
        (offline[1]["merged"].as_bool(), offline[1]["enabled"].clone()),
        (Some(true), serde_json::json!(["common"]))
    );
    assert_eq!(offline[2]["version"], "2.1");
    // No property carries these, so the service's listing leaves them out rather than guess.
    let not_on_the_bus = ["resolved_digest", "file", "kind", "protection"];
    for ext in &listed {
        for field in not_on_the_bus {
            assert!(ext.get(field).is_none(), "{field} in {ext}");
        }
    }
    let without = |mut ext: Value| {
        for field in not_on_the_bus {
            ext.as_object_mut().expect("an object").remove(field);
        }
        ext
    };
    let offline: Vec<Value> = offline.into_iter().map(without).collect();
    assert_eq!(listed, offline, "the service and --root / describe the same store alike");
    assert!(listed.iter().all(|e| e["format"] == 1));

    let table = succeeded(rig.kairos_ext(&["list"]), "list");
    let offline_table = rig.ns.command(bins::kairos_ext()).args(["--root", "/", "list"]).output().expect("runs");
    assert_eq!(stdout(&table), stdout(&succeeded(offline_table, "--root / list")));
    let alien_row = stdout(&table).lines().find(|l| l.starts_with("alien ")).map(str::to_owned).unwrap_or_default();
    assert_eq!(alien_row.split_whitespace().take(5).collect::<Vec<_>>(), ["alien", "-", "-", "no", "incompatible:"]);
}

#[test]
fn inspect_through_the_service_is_one_describe_with_every_field() {
    if !privileged("inspect_through_the_service_is_one_describe_with_every_field") {
        return;
    }
    let rig = Rig::start(&[], QUICK);
    let hello = ImageBuilder::new("hello").command("hello-kx", "hi").build(rig.scratch.path(), "hello.raw");
    succeeded(rig.kairos_ext(&["install", hello.to_str().expect("utf-8"), "--enable", "common"]), "install");

    let (inspected, calls) = calls_to_the_service(&rig, || rig.kairos_ext(&["inspect", "hello", "--json"]));
    let inspected: Value = serde_json::from_slice(&succeeded(inspected, "inspect --json").stdout).expect("JSON");
    assert_eq!(calls, ["org.kairos.Extensions1.Manager.Describe"]);
    assert_eq!(inspected["format"], 1);
    assert_eq!((inspected["file"].as_str(), inspected["kind"].as_str()), (Some("hello.raw"), Some("image")));
    assert_eq!(inspected["protection"], "unprotected");

    let offline = rig.ns.command(bins::kairos_ext()).args(["--root", "/", "inspect", "hello", "--json"]).output();
    let offline: Value =
        serde_json::from_slice(&succeeded(offline.expect("runs"), "--root / inspect").stdout).expect("JSON");
    assert_eq!(inspected, offline, "Describe and offline inspect give the same description");
    let text = stdout(&succeeded(rig.kairos_ext(&["inspect", "hello"]), "inspect"));
    assert!(text.contains("File:       hello.raw (Image, ") && text.contains("Protection: unprotected"), "{text}");
}

/// `(interface, property) -> EmitsChangedSignal` as the XML contract documents it, from
/// the members [`contract::members`] reads.
fn documented() -> BTreeMap<(String, String), String> {
    contract::members(INTERFACE_XML)
        .into_iter()
        .filter_map(|member| {
            let (key, rest) = member.split_once(':')?;
            let (interface, name) = key.split_once(".property.")?;
            let emits = rest.rsplit(':').next()?;
            Some(((interface.to_owned(), name.to_owned()), emits.to_owned()))
        })
        .collect()
}

/// `(interface, property) -> EmitsChangedSignal` as the proxies of
/// `kairos-extensions-dbus` declare it in their `#[zbus(property ...)]` attributes:
/// a property without `emits_changed_signal` is `true`, as for zbus.
fn declared() -> BTreeMap<(String, String), String> {
    let source = include_str!("../../dbus-interfaces/src/proxies.rs");
    let mut found = BTreeMap::new();
    let (mut interface, mut pending) = (String::new(), None::<(String, Option<String>)>);
    for line in source.lines().map(str::trim) {
        if line.starts_with("interface = ") || line.starts_with("#[proxy(interface = ") {
            interface = line.split('"').nth(1).unwrap_or_default().to_owned();
        }
        if line.starts_with("#[zbus(property") {
            let emits = line.split("emits_changed_signal = \"").nth(1).and_then(|v| v.split('"').next());
            let name = line.split("name = \"").nth(1).and_then(|v| v.split('"').next());
            pending = Some((emits.unwrap_or("true").to_owned(), name.map(str::to_owned)));
        } else if let Some(rest) = line.strip_prefix("fn ")
            && let Some((emits, name)) = pending.take()
        {
            let ident = rest.split('(').next().unwrap_or_default();
            let camel = |word: &str| {
                let mut chars = word.chars();
                chars.next().map(|first| first.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
            };
            let name = name.unwrap_or_else(|| ident.split('_').map(camel).collect());
            found.insert((interface.clone(), name), emits);
        }
    }
    found
}

#[test]
fn every_proxy_property_carries_the_xmls_emits_changed_signal() {
    let (documented, declared) = (documented(), declared());
    assert!(documented.len() > 30, "the XML was not read: {documented:?}");
    for (key, value) in &documented {
        assert_eq!(declared.get(key), Some(value), "{key:?}: the XML says {value:?}");
    }
    for key in declared.keys() {
        assert!(documented.contains_key(key), "{key:?} is not in the XML");
    }
}
