//! Makes one call to org.kairos.Extensions1 and prints the outcome as JSON.
//!
//! The suite runs as root; to call as another user it starts this probe with a
//! different uid (`Command::uid`), which a test process cannot do for itself. The JSON
//! carries the exact D-Bus error name and message, which busctl does not show for
//! AccessDenied.
#![allow(clippy::print_stdout, reason = "the probe reports on stdout")]

use std::collections::HashMap;

use kairos_extensions_dbus::proxies::ManagerProxy;
use serde_json::json;
use zbus::proxy::MethodFlags;
use zbus::{OwnedObjectPath, OwnedVariant};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("{}", json!({ "ok": false, "error": { "name": "probe", "message": e.to_string() } }));
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(call(&args));
    let line = match outcome {
        Ok(value) => json!({ "ok": true, "value": value }),
        Err(zbus::Error::MethodError(name, message, _)) => {
            json!({ "ok": false, "error": { "name": name.as_str(), "message": message.unwrap_or_default() } })
        }
        Err(zbus::Error::FDO(fdo)) => {
            let text = fdo.to_string();
            let (name, message) = text.split_once(": ").unwrap_or((text.as_str(), ""));
            json!({ "ok": false, "error": { "name": name, "message": message } })
        }
        Err(other) => json!({ "ok": false, "error": { "name": "zbus", "message": other.to_string() } }),
    };
    println!("{line}");
    std::process::ExitCode::SUCCESS
}

async fn call(args: &[String]) -> zbus::Result<serde_json::Value> {
    let connection = zbus::Connection::system().await?;
    let manager = ManagerProxy::new(&connection).await?;
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let number = |i: usize| arg(i).parse::<u64>().unwrap_or(0);
    let flags = MethodFlags::empty();
    let manager = manager.inner();
    let no_options: HashMap<&str, OwnedVariant> = HashMap::new();
    Ok(match arg(0) {
        "list" => json!(
            manager
                .call::<_, _, Vec<(String, String, Vec<String>, bool, OwnedObjectPath)>>("ListExtensions", &())
                .await?
                .len()
        ),
        "describe" => json!(manager.call::<_, _, String>("Describe", &(arg(1),)).await?),
        "enable" => json!(manager.call_with_flags::<_, _, ()>("Enable", flags, &(arg(1), arg(2), number(3))).await?),
        "disable" => json!(manager.call_with_flags::<_, _, ()>("Disable", flags, &(arg(1), arg(2), number(3))).await?),
        "remove" => json!(manager.call_with_flags::<_, _, ()>("Remove", flags, &(arg(1), number(2))).await?),
        "refresh" => json!(manager.call_with_flags::<_, _, Vec<String>>("Refresh", flags, &(number(1),)).await?),
        "install" => {
            let reply = manager
                .call_with_flags::<_, _, (u64, OwnedObjectPath)>("Install", flags, &(arg(1), &no_options))
                .await?;
            json!(reply.map(|(id, path)| json!([id, path.as_str()])))
        }
        "install-fd" => {
            let file = open_as(arg(1), arg(2)).map_err(|e| zbus::Error::Failure(e.to_string()))?;
            let fd = zbus::Fd::from(&file);
            let reply = manager
                .call_with_flags::<_, _, (u64, OwnedObjectPath)>("InstallFromFd", flags, &(fd, arg(1), &no_options))
                .await?;
            json!(reply.map(|(id, path)| json!([id, path.as_str()])))
        }
        // A call with an empty body: whatever the service answers, the bus let it through.
        "call" => {
            let proxy =
                zbus::Proxy::new(&connection, "org.kairos.Extensions1", arg(1).to_owned(), arg(2).to_owned()).await?;
            proxy.call_method(arg(3), &()).await?;
            json!(null)
        }
        // Properties.Set of `arg(3)` of interface `arg(2)` on `arg(1)`, to a string.
        "set" => {
            let proxy = zbus::Proxy::new(
                &connection,
                "org.kairos.Extensions1",
                arg(1).to_owned(),
                "org.freedesktop.DBus.Properties",
            )
            .await?;
            proxy.call_method("Set", &(arg(2), arg(3), zbus::Variant::from("x"))).await?;
            json!(null)
        }
        "own" => json!(connection.request_name("org.kairos.Extensions1").await.map(|_| ())?),
        other => return Err(zbus::Error::Failure(format!("unknown probe verb {other:?}"))),
    })
}

/// Opens `path` the way a careless or hostile caller might: for reading, for writing
/// only, as an `O_PATH` handle, or non-blocking (the only way to open a FIFO at once).
fn open_as(path: &str, mode: &str) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    const O_NONBLOCK: i32 = 0o4000;
    const O_PATH: i32 = 0o10000000;
    let mut options = std::fs::File::options();
    match mode {
        "write" => options.write(true),
        "path" => options.read(true).custom_flags(O_PATH),
        "nonblock" => options.read(true).custom_flags(O_NONBLOCK),
        _ => options.read(true),
    };
    options.open(path)
}
