//! `kairos-ext monitor`: every signal of the service, as a readable line or as JSON.

use anyhow::Result;
use futures_util::StreamExt;
use kairos_extensions_dbus::BUS_NAME;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream, Structure, Variant};

/// Prints signals until interrupted.
pub async fn run(connection: &Connection, json: bool) -> Result<()> {
    let rule = MatchRule::builder().msg_type(Type::Signal).sender(BUS_NAME).build()?;
    let mut stream = MessageStream::for_match_rule(rule, connection, None).await?;
    if !json {
        eprintln!("Monitoring {BUS_NAME}; press Ctrl-C to stop.");
    }
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(message) = message else { return Ok(()) };
        let Ok(message) = message else { continue };
        let header = message.header();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let path = header.path().map(|p| p.to_string()).unwrap_or_default();
        let args: Vec<serde_json::Value> = match message.body().deserialize::<Structure<'_>>() {
            Ok(body) => body.fields().iter().map(to_json).collect(),
            Err(_) => Vec::new(),
        };
        if json {
            let line = serde_json::json!({ "signal": member, "path": path, "args": args });
            println!("{line}");
        } else {
            let rendered: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            println!("{member} {path} {}", rendered.join(" "));
        }
    }
}

/// Converts a D-Bus value to JSON: dictionaries become objects, structs and arrays
/// become arrays.
fn to_json(value: &Variant<'_>) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Variant::U8(v) => J::from(*v),
        Variant::Bool(v) => J::from(*v),
        Variant::I16(v) => J::from(*v),
        Variant::U16(v) => J::from(*v),
        Variant::I32(v) => J::from(*v),
        Variant::U32(v) => J::from(*v),
        Variant::I64(v) => J::from(*v),
        Variant::U64(v) => J::from(*v),
        Variant::F64(v) => J::from(*v),
        Variant::Str(v) => J::from(v.as_str()),
        Variant::Signature(v) => J::from(v.to_string()),
        Variant::ObjectPath(v) => J::from(v.as_str()),
        Variant::Variant(inner) => to_json(inner),
        Variant::Array(array) => J::Array(array.inner().iter().map(to_json).collect()),
        Variant::Dict(dict) => {
            let mut map = serde_json::Map::new();
            for (key, value) in dict.iter() {
                let key = match key {
                    Variant::Str(s) => s.as_str().to_owned(),
                    other => to_json(other).to_string(),
                };
                map.insert(key, to_json(value));
            }
            J::Object(map)
        }
        Variant::Structure(fields) => J::Array(fields.fields().iter().map(to_json).collect()),
        #[allow(unreachable_patterns)]
        _ => J::Null,
    }
}
