//! A hostile client of org.kairos.Extensions1: finds every method of every interface by
//! introspection, then calls them with random and boundary arguments, wrong signatures
//! included, and prints a JSON summary of what came back.
//!
//! Messages are built from dynamic values (`Structure` of `Variant`s), so a body can carry
//! any signature, not only the one the proxies know. File descriptors come from a pool of
//! things that are no image: a directory, a FIFO, sockets, `/dev/zero`, an `O_PATH`
//! handle, a write-only file. The same seed makes the same calls: the test prints it, and
//! `kx-fuzz --seed N` replays a run.
//!
//! Usage: `kx-fuzz --seed N --calls N [--name NAME]... [--image PATH] [--only IFACE.MEMBER]`
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the fuzz client reports on stdout")]

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use zbus::message::{Flags, Type as MessageType};
use zbus::{Array, Connection, Dict, Fd, Message, MessageStream, ObjectPath, Signature, Structure, Variant};

const DEST: &str = "org.kairos.Extensions1";
const ROOT_PATH: &str = "/org/kairos/Extensions1";
/// dbus-daemon's default `max_message_size` is 32 MiB; it drops a client that sends a
/// larger message, which would end the run, so those stay here. Huge strings and long
/// arrays up to that size are sent.
const MAX_MESSAGE: usize = 32 << 20;
/// How long one call may take before it counts as a hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// xorshift64*: small, seedable, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A D-Bus type, parsed from a signature or drawn at random.
#[derive(Debug, Clone)]
enum Ty {
    Byte,
    Bool,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F64,
    Str,
    Path,
    Sig,
    Fd,
    Var,
    Array(Box<Ty>),
    Dict(Box<Ty>, Box<Ty>),
    Struct(Vec<Ty>),
}

impl Ty {
    fn sig(&self) -> String {
        match self {
            Ty::Byte => "y".into(),
            Ty::Bool => "b".into(),
            Ty::I16 => "n".into(),
            Ty::U16 => "q".into(),
            Ty::I32 => "i".into(),
            Ty::U32 => "u".into(),
            Ty::I64 => "x".into(),
            Ty::U64 => "t".into(),
            Ty::F64 => "d".into(),
            Ty::Str => "s".into(),
            Ty::Path => "o".into(),
            Ty::Sig => "g".into(),
            Ty::Fd => "h".into(),
            Ty::Var => "v".into(),
            Ty::Array(t) => format!("a{}", t.sig()),
            Ty::Dict(k, v) => format!("a{{{}{}}}", k.sig(), v.sig()),
            Ty::Struct(f) => format!("({})", f.iter().map(Ty::sig).collect::<String>()),
        }
    }

    /// Parses a complete signature into its types, or `None` when it is not one.
    fn parse_all(sig: &str) -> Option<Vec<Ty>> {
        let mut chars = sig.chars().peekable();
        let mut out = Vec::new();
        while chars.peek().is_some() {
            out.push(Self::parse(&mut chars)?);
        }
        Some(out)
    }

    fn parse(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Ty> {
        Some(match chars.next()? {
            'y' => Ty::Byte,
            'b' => Ty::Bool,
            'n' => Ty::I16,
            'q' => Ty::U16,
            'i' => Ty::I32,
            'u' => Ty::U32,
            'x' => Ty::I64,
            't' => Ty::U64,
            'd' => Ty::F64,
            's' => Ty::Str,
            'o' => Ty::Path,
            'g' => Ty::Sig,
            'h' => Ty::Fd,
            'v' => Ty::Var,
            'a' if chars.peek() == Some(&'{') => {
                chars.next();
                let key = Self::parse(chars)?;
                let value = Self::parse(chars)?;
                (chars.next()? == '}').then_some(Ty::Dict(Box::new(key), Box::new(value)))?
            }
            'a' => Ty::Array(Box::new(Self::parse(chars)?)),
            '(' => {
                let mut fields = Vec::new();
                while chars.peek() != Some(&')') {
                    fields.push(Self::parse(chars)?);
                }
                chars.next();
                Ty::Struct(fields)
            }
            _ => return None,
        })
    }

    /// A random type, `depth` levels of containers at most.
    fn random(rng: &mut Rng, depth: usize) -> Ty {
        const BASIC: [Ty; 14] = [
            Ty::Byte,
            Ty::Bool,
            Ty::I16,
            Ty::U16,
            Ty::I32,
            Ty::U32,
            Ty::I64,
            Ty::U64,
            Ty::F64,
            Ty::Str,
            Ty::Path,
            Ty::Sig,
            Ty::Fd,
            Ty::Var,
        ];
        if depth == 0 || rng.chance(55) {
            return rng.pick(&BASIC).clone();
        }
        match rng.below(3) {
            0 => Ty::Array(Box::new(Ty::random(rng, depth - 1))),
            1 => Ty::Dict(Box::new(rng.pick(&BASIC[..12]).clone()), Box::new(Ty::random(rng, depth - 1))),
            _ => Ty::Struct((0..1 + rng.below(3)).map(|_| Ty::random(rng, depth - 1)).collect()),
        }
    }
}

/// Things that are not an image, and one that is, to pass as file descriptors.
struct FdPool {
    files: Vec<(&'static str, File)>,
    _listener: UnixListener,
    _peer: UnixStream,
    _dir: tempfile::TempDir,
}

impl FdPool {
    fn new(image: Option<&str>) -> std::io::Result<Self> {
        const O_PATH: i32 = 0o10000000;
        const O_NONBLOCK: i32 = 0o4000;
        let dir = tempfile::Builder::new().prefix("kx-fuzz-").tempdir()?;
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        if !made.success() {
            return Err(std::io::Error::other("mkfifo failed"));
        }
        let listener = UnixListener::bind(dir.path().join("socket"))?;
        let (mine, peer) = UnixStream::pair()?;
        let written = dir.path().join("write-only");
        std::fs::write(&written, b"not an image")?;
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"")?;
        let mut files = vec![
            ("directory", File::open(dir.path())?),
            ("fifo", File::options().read(true).custom_flags(O_NONBLOCK).open(&fifo)?),
            ("listening socket", File::from(std::os::fd::OwnedFd::from(listener.try_clone()?))),
            ("connected socket", File::from(std::os::fd::OwnedFd::from(mine))),
            ("/dev/zero", File::open("/dev/zero")?),
            ("/dev/null", File::open("/dev/null")?),
            ("O_PATH", File::options().read(true).custom_flags(O_PATH).open(&written)?),
            ("write-only", File::options().write(true).open(&written)?),
            ("empty regular file", File::open(&empty)?),
        ];
        if let Some(image) = image {
            files.push(("image", File::open(image)?));
        }
        Ok(Self { files, _listener: listener, _peer: peer, _dir: dir })
    }

    fn draw(&self, rng: &mut Rng) -> Variant<'static> {
        let (_, file) = rng.pick(&self.files);
        match file.try_clone() {
            Ok(copy) => Variant::Fd(Fd::from(std::os::fd::OwnedFd::from(copy))),
            Err(_) => Variant::U32(0),
        }
    }
}

/// What the generator draws strings from.
struct Pools {
    names: Vec<String>,
    image: Option<String>,
}

impl Pools {
    fn string(&self, rng: &mut Rng) -> String {
        const FIXED: &[&str] = &[
            "",
            "a",
            ".",
            "..",
            "-a",
            "a/b",
            "../../etc/passwd",
            "name\twith\ttabs",
            "\u{202e}evil",
            "é",
            "active",
            "passive",
            "recovery",
            "common",
            "none",
            "ACTIVE",
            "oci://",
            "oci://127.0.0.1:1/x:latest",
            "docker://127.0.0.1:1/a@sha256:zz",
            "container://127.0.0.1:1/UPPER/case",
            "oci://127.0.0.1:1/x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "http://127.0.0.1:1/x.raw",
            "https://user:secret@127.0.0.1:1/x.raw?X-Amz-Signature=1#sha256=zz",
            "http://[::1",
            "file:///etc/passwd",
            "file:///dev/zero",
            "file:///proc/self/fd/0",
            "file://relative/path",
            "file:///nonexistent/x.raw",
            "catalog:x",
            "ftp://127.0.0.1/x",
            "sha256:",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "name",
            "enable",
            "now",
            "replace",
            "digest",
        ];
        match rng.below(10) {
            0 => self.names.get(rng.below(self.names.len().max(1))).cloned().unwrap_or_default(),
            1 => "x".repeat(*rng.pick(&[127, 128, 129, 255, 256, 4096, 65536])),
            2 if rng.chance(5) => "y".repeat(1 << 20),
            3 => {
                let len = rng.below(40);
                (0..len).map(|_| char::from(32 + rng.below(95) as u8)).collect()
            }
            4 => match &self.image {
                Some(image) if rng.chance(50) => format!("file://{image}"),
                _ => (*rng.pick(FIXED)).to_owned(),
            },
            _ => (*rng.pick(FIXED)).to_owned(),
        }
    }

    fn path(&self, rng: &mut Rng) -> ObjectPath<'static> {
        let text = match rng.below(6) {
            0 => "/".to_owned(),
            1 => format!("{ROOT_PATH}/extension/_zz"),
            2 => format!("{ROOT_PATH}/job/{}", rng.next()),
            3 => format!("{ROOT_PATH}/extension/{}", "a".repeat(rng.below(300))),
            _ => ROOT_PATH.to_owned(),
        };
        ObjectPath::try_from(text).unwrap_or_default()
    }
}

struct Gen<'a> {
    rng: Rng,
    pools: Pools,
    fds: &'a FdPool,
    /// File descriptors the message being built may still carry: the kernel passes at
    /// most 253 in one message, and a failed send would end the connection.
    fds_left: usize,
}

/// File descriptors per message, far below what the kernel and the bus allow.
const FDS_PER_MESSAGE: usize = 16;

impl Gen<'_> {
    fn value(&mut self, ty: &Ty) -> Option<Variant<'static>> {
        let rng = &mut self.rng;
        Some(match ty {
            Ty::Byte => Variant::U8(rng.next() as u8),
            Ty::Bool => Variant::Bool(rng.chance(50)),
            Ty::I16 => Variant::I16(*rng.pick(&[0, 1, -1, i16::MIN, i16::MAX])),
            Ty::U16 => Variant::U16(*rng.pick(&[0, 1, u16::MAX])),
            Ty::I32 => Variant::I32(*rng.pick(&[0, 1, -1, i32::MIN, i32::MAX])),
            Ty::U32 => Variant::U32(*rng.pick(&[0, 1, 2, u32::MAX])),
            Ty::I64 => Variant::I64(*rng.pick(&[0, 1, -1, i64::MIN, i64::MAX])),
            Ty::U64 => {
                let random = rng.next();
                Variant::U64(*rng.pick(&[0, 1, 2, 3, 1 << 63, u64::MAX, random]))
            }
            Ty::F64 => Variant::F64(*rng.pick(&[0.0, -0.0, f64::NAN, f64::INFINITY, f64::MIN, 1e308])),
            Ty::Str => Variant::from(self.pools.string(rng)),
            Ty::Path => Variant::ObjectPath(self.pools.path(rng)),
            Ty::Sig => {
                Variant::Signature(Signature::try_from(rng.pick(&["", "s", "a{sv}", "aaaai", "(h)"]).to_owned()).ok()?)
            }
            Ty::Fd => {
                self.fds_left = self.fds_left.checked_sub(1)?;
                self.fds.draw(rng)
            }
            Ty::Var => {
                let inner = Ty::random(rng, 3);
                Variant::Variant(Box::new(self.value(&inner)?))
            }
            Ty::Array(element) => {
                let len = match self.rng.below(10) {
                    0 => 10_000,
                    1 => 0,
                    _ => self.rng.below(6),
                };
                // Long arrays only of cheap elements.
                let len = if matches!(**element, Ty::Byte | Ty::Bool | Ty::U32 | Ty::U64) { len } else { len.min(300) };
                let mut array = Array::new(&Signature::try_from(element.sig().as_str()).ok()?);
                for _ in 0..len {
                    array.append(self.value(element)?).ok()?;
                }
                Variant::Array(array)
            }
            Ty::Dict(key, value) => {
                let key_sig = Signature::try_from(key.sig().as_str()).ok()?;
                let value_sig = Signature::try_from(value.sig().as_str()).ok()?;
                let mut dict = Dict::new(&key_sig, &value_sig);
                for _ in 0..self.rng.below(6) {
                    let k = self.value(key)?;
                    let v = self.value(value)?;
                    let _ = dict.append(k, v);
                }
                Variant::Dict(dict)
            }
            Ty::Struct(fields) => {
                let mut builder = Structure::builder();
                for field in fields {
                    builder = builder.append_field(self.value(field)?);
                }
                Variant::Structure(builder.build().ok()?)
            }
        })
    }

    /// Install options: every known key, with the right type or a wrong one, and unknown keys.
    fn options(&mut self) -> Option<Variant<'static>> {
        let mut dict = Dict::new(&Signature::Str, &Signature::Variant);
        for _ in 0..self.rng.below(5) {
            let key =
                (*self.rng.pick(&["name", "enable", "now", "replace", "digest", "", "Name", "unknown"])).to_owned();
            let ty = if self.rng.chance(50) {
                match key.as_str() {
                    "enable" => Ty::Array(Box::new(Ty::Str)),
                    "now" | "replace" => Ty::Bool,
                    _ => Ty::Str,
                }
            } else {
                Ty::random(&mut self.rng, 2)
            };
            let value = self.value(&ty)?;
            let _ = dict.append(Variant::from(key), Variant::Variant(Box::new(value)));
        }
        Some(Variant::Dict(dict))
    }

    /// An array nested `depth` times around a string.
    fn deep(&mut self, depth: usize) -> Option<Variant<'static>> {
        let mut ty = Ty::Str;
        let mut value = Variant::from("deep".to_owned());
        for _ in 0..depth {
            let mut array = Array::new(&Signature::try_from(ty.sig().as_str()).ok()?);
            array.append(value).ok()?;
            value = Variant::Array(array);
            ty = Ty::Array(Box::new(ty));
        }
        Some(value)
    }

    /// The arguments of one call of a method whose input signature is `sig`.
    fn arguments(&mut self, sig: &[Ty]) -> Option<Vec<Variant<'static>>> {
        self.fds_left = FDS_PER_MESSAGE;
        let types: Vec<Ty> = match self.rng.below(10) {
            // Right signature, boundary values.
            0..=4 => sig.to_vec(),
            // One argument of a wrong type.
            5 | 6 if !sig.is_empty() => {
                let mut types = sig.to_vec();
                let at = self.rng.below(types.len());
                types[at] = Ty::random(&mut self.rng, 2);
                types
            }
            // Deeply nested arrays, up to the limit and one past it.
            7 => {
                let depth = *self.rng.pick(&[8, 31, 32, 33, 64]);
                return Some(vec![self.deep(depth)?]);
            }
            // Too few or too many arguments.
            8 => {
                let mut types = sig.to_vec();
                if self.rng.chance(50) && !types.is_empty() {
                    types.pop();
                } else {
                    types.push(Ty::random(&mut self.rng, 1));
                }
                types
            }
            // Anything.
            _ => (0..self.rng.below(5)).map(|_| Ty::random(&mut self.rng, 3)).collect(),
        };
        types
            .iter()
            .map(|ty| {
                if matches!(ty, Ty::Dict(k, v) if matches!(**k, Ty::Str) && matches!(**v, Ty::Var)) {
                    self.options()
                } else {
                    self.value(ty)
                }
            })
            .collect()
    }
}

/// A method found by introspection.
#[derive(Debug, Clone)]
struct Method {
    path: String,
    interface: String,
    member: String,
    inputs: Vec<Ty>,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// Every method of every interface at `path` and below.
async fn discover(connection: &Connection, path: &str, into: &mut Vec<Method>) -> zbus::Result<()> {
    let reply = connection
        .call_method(Some(DEST), path, Some("org.freedesktop.DBus.Introspectable"), "Introspect", &())
        .await?;
    let xml: String = reply.body().deserialize()?;
    let mut children = Vec::new();
    let (mut interface, mut method): (Option<String>, Option<Method>) = (None, None);
    // zbus nests the whole subtree; only the nodes right under this one are children.
    let mut depth = 0usize;
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<node") {
            if depth == 1
                && let Some(child) = attr(line, "name")
            {
                children.push(format!("{}/{child}", path.trim_end_matches('/')));
            }
            if !line.ends_with("/>") {
                depth += 1;
            }
        } else if line.starts_with("</node") {
            depth = depth.saturating_sub(1);
        } else if depth != 1 {
            // A descendant's interfaces: found when that node is introspected.
        } else if line.starts_with("<interface ") {
            interface = attr(line, "name").map(str::to_owned);
        } else if line.starts_with("<method ") {
            let found = Method {
                path: path.to_owned(),
                interface: interface.clone().unwrap_or_default(),
                member: attr(line, "name").unwrap_or_default().to_owned(),
                inputs: Vec::new(),
            };
            if line.ends_with("/>") {
                into.push(found);
            } else {
                method = Some(found);
            }
        } else if line.starts_with("<arg ") && attr(line, "direction") != Some("out") {
            if let (Some(m), Some(ty)) = (method.as_mut(), attr(line, "type").and_then(Ty::parse_all)) {
                m.inputs.extend(ty);
            }
        } else if line.starts_with("</method")
            && let Some(m) = method.take()
        {
            into.push(m);
        }
    }
    for child in children {
        Box::pin(discover(connection, &child, into)).await?;
    }
    Ok(())
}

/// Sends one call and waits for its reply; the outcome's name.
async fn call(
    connection: &Connection,
    replies: &mut MessageStream,
    method: &Method,
    path: &str,
    args: Vec<Variant<'static>>,
    flags: Flags,
) -> String {
    let mut builder = Message::method_call(path, method.member.as_str()).destination(DEST).with_flags(flags);
    if !method.interface.is_empty() {
        builder = builder.interface(method.interface.as_str());
    }
    if let Some(sender) = connection.unique_name() {
        builder = builder.sender(sender.as_str());
    }
    let message = if args.is_empty() {
        builder.build(&())
    } else {
        let mut fields = Structure::builder();
        for arg in args {
            fields = fields.append_field(arg);
        }
        match fields.build() {
            Ok(body) => builder.build(&body),
            Err(e) => Err(e),
        }
    };
    let message = match message {
        Ok(message) => message,
        Err(e) => return format!("refused by the client library: {}", kind_of(&e)),
    };
    if message.data().len() > MAX_MESSAGE {
        return "larger than the bus accepts, not sent".into();
    }
    let serial = message.primary_header().serial_num();
    if let Err(e) = connection.send(&message).await {
        return format!("not sent: {e}");
    }
    if flags.contains(Flags::NO_REPLY_EXPECTED) {
        return "no reply expected".into();
    }
    let wait = async {
        while let Some(Ok(reply)) = replies.next().await {
            let header = reply.header();
            if header.reply_serial() != Some(serial) {
                continue;
            }
            return match reply.message_type() {
                MessageType::Error => header.error_name().map(|n| n.to_string()).unwrap_or_default(),
                _ => "ok".to_owned(),
            };
        }
        "connection closed".to_owned()
    };
    tokio::time::timeout(CALL_TIMEOUT, wait).await.unwrap_or_else(|_| "TIMEOUT".to_owned())
}

fn kind_of(error: &zbus::Error) -> String {
    let text = error.to_string();
    text.split(':').next().unwrap_or_default().chars().take(60).collect()
}

struct Options {
    seed: u64,
    calls: usize,
    names: Vec<String>,
    image: Option<String>,
    /// Only methods whose `Interface.Member` contains this (to narrow down a finding).
    only: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options { seed: 1, calls: 100, names: Vec::new(), image: None, only: None };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--seed" => options.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--calls" => options.calls = value()?.parse().map_err(|e| format!("--calls: {e}"))?,
            "--name" => options.names.push(value()?),
            "--image" => options.image = Some(value()?),
            "--only" => options.only = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

async fn run(options: Options) -> Result<serde_json::Value, String> {
    let connection = Connection::system().await.map_err(|e| format!("connect: {e}"))?;
    let mut replies = MessageStream::from(&connection);
    let mut methods = Vec::new();
    discover(&connection, "/", &mut methods).await.map_err(|e| format!("introspect: {e}"))?;
    if let Some(only) = &options.only {
        methods.retain(|m| format!("{}.{}", m.interface, m.member).contains(only.as_str()));
    }
    if methods.is_empty() {
        return Err("no method to call".into());
    }
    let fds = FdPool::new(options.image.as_deref()).map_err(|e| format!("fd pool: {e}"))?;
    let mut names = options.names.clone();
    names.push("does-not-exist".into());
    let mut generator = Gen {
        rng: Rng::new(options.seed),
        pools: Pools { names, image: options.image.clone() },
        fds: &fds,
        fds_left: 0,
    };
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..options.calls {
        let method = generator.rng.pick(&methods).clone();
        let path = if generator.rng.chance(10) {
            generator.pools.path(&mut generator.rng).to_string()
        } else {
            method.path.clone()
        };
        let mut flags = Flags::empty();
        if generator.rng.chance(20) {
            flags |= Flags::ALLOW_INTERACTIVE_AUTH;
        }
        if generator.rng.chance(5) {
            flags |= Flags::NO_REPLY_EXPECTED;
        }
        let Some(args) = generator.arguments(&method.inputs) else {
            *outcomes.entry("not generated".into()).or_default() += 1;
            continue;
        };
        let outcome = call(&connection, &mut replies, &method, &path, args, flags).await;
        *outcomes.entry(outcome).or_default() += 1;
    }
    let interfaces: std::collections::BTreeSet<&str> = methods.iter().map(|m| m.interface.as_str()).collect();
    Ok(json!({
        "seed": options.seed,
        "calls": options.calls,
        "methods": methods.iter().map(|m| format!("{} {}.{}({})", m.path, m.interface, m.member, m.inputs.iter().map(Ty::sig).collect::<String>())).collect::<Vec<_>>(),
        "interfaces": interfaces,
        "outcomes": outcomes,
    }))
}

fn main() -> std::process::ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("kx-fuzz: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kx-fuzz: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kx-fuzz: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
