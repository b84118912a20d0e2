//! `kairos-ext monitor`: every signal of the service, as a readable line or as JSON.

use anyhow::Result;
use futures_util::StreamExt;
use kairos_extensions_dbus::BUS_NAME;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream, Structure, Variant};

use crate::human;
use crate::output::Output;

/// Prints signals until interrupted, each with the time it arrived: local time in text,
/// `timestamp` (µs since the epoch) in JSON.
pub async fn run(connection: &Connection, out: Output) -> Result<()> {
    let rule = MatchRule::builder().msg_type(Type::Signal).sender(BUS_NAME).build()?;
    let mut stream = MessageStream::for_match_rule(rule, connection, None).await?;
    out.hint(&format!("Monitoring {BUS_NAME}; press Ctrl-C to stop."));
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(message) = message else { return Ok(()) };
        let Ok(message) = message else { continue };
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let header = message.header();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let path = header.path().map(|p| p.to_string()).unwrap_or_default();
        let args: Vec<serde_json::Value> = match message.body().deserialize::<Structure<'_>>() {
            Ok(body) => body.fields().iter().map(to_json).collect(),
            Err(_) => Vec::new(),
        };
        let rendered: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let text = format!("{} {member} {path} {}", human::now(), rendered.join(" "));
        let record = serde_json::json!({ "timestamp": timestamp, "signal": member, "path": path, "args": args });
        out.record(&record, text.trim_end())?;
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
