//! `releases.json`, the catalog format Kairos publishes and kairos-agent reads
//! (kairos-io/kairos `sdk/extensions/catalog.go`):
//!
//! ```json
//! {"repo": "kairos-io/hadron-layers",
//!  "layers": [{"name": "k3s", "title": "k3s", "description": "...", "latest": "1.32.1",
//!              "tags": [{"tag": "1.32.1",
//!                        "sysext": {"amd64": {"oci": "ghcr.io/...@sha256:<64 hex>"}}}]}]}
//! ```
//!
//! A catalog is fetched from someone else's server, so it is read defensively: fields
//! this reader does not know are ignored (the published index carries `generated`,
//! `image`, `digest`, `created`, ...), and one malformed layer or tag is skipped with a
//! warning naming it instead of making the whole catalog unusable. Only a document
//! that is not a JSON object with a `layers` list is refused as a whole.

use std::collections::BTreeMap;

use kairos_extensions_dbus::ExtensionName;
use serde::Deserialize;
use serde_json::Value;

use super::version::MAX_VERSION_TEXT;

/// The largest catalog read. The published index is a few hundred kilobytes; this
/// leaves room to grow while bounding what a hostile server can make us hold.
pub const MAX_CATALOG_BYTES: u64 = 8 << 20;
/// Titles longer than this are cut.
const MAX_TITLE: usize = 256;
/// Descriptions longer than this are cut.
const MAX_DESCRIPTION: usize = 4096;

/// A parsed catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The repository the index was built from (`repo`), if it says.
    pub repository: Option<String>,
    /// Its layers, each name once, in the catalog's order.
    pub layers: Vec<Layer>,
    /// What was skipped, one sentence each.
    pub warnings: Vec<String>,
}

/// One extension of a catalog and its published versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The extension's name.
    pub name: ExtensionName,
    /// A short title (may be empty).
    pub title: String,
    /// A description (may be empty).
    pub description: String,
    /// The version the publisher calls the latest (may be empty).
    pub latest: String,
    /// Published versions, newest first as published indexes list them.
    pub tags: Vec<Tag>,
}

/// One published version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The version text (`tag`).
    pub version: String,
    /// Architecture (Go's GOARCH: `amd64`, `arm64`, ...) to OCI reference.
    pub artifacts: BTreeMap<String, String>,
}

/// A catalog that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// JSON, but not an object with a list of layers.
    #[error("not a catalog: {0}")]
    Shape(&'static str),
}

#[derive(Deserialize)]
struct RawLayer {
    name: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    latest: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct RawTag {
    tag: String,
    #[serde(default)]
    sysext: Option<BTreeMap<String, RawArtifact>>,
}

#[derive(Deserialize)]
struct RawArtifact {
    oci: String,
}

/// Parses catalog bytes (the caller has already bounded their size).
pub fn parse(bytes: &[u8]) -> Result<Catalog, FormatError> {
    let document: Value = serde_json::from_slice(bytes).map_err(|e| FormatError::Json(e.to_string()))?;
    let Value::Object(mut top) = document else { return Err(FormatError::Shape("the document is not a JSON object")) };
    let repository = match top.remove("repo") {
        Some(Value::String(repo)) => Some(clean_text(&repo, MAX_TITLE)),
        _ => None,
    };
    let layers = match top.remove("layers") {
        Some(Value::Array(layers)) => layers,
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(FormatError::Shape("\"layers\" is not a list")),
    };
    let mut catalog = Catalog { repository, layers: Vec::with_capacity(layers.len()), warnings: Vec::new() };
    for (index, raw) in layers.into_iter().enumerate() {
        let label = layer_label(index, &raw);
        match layer(raw, &label, &mut catalog.warnings) {
            Ok(layer) if catalog.layers.iter().any(|l| l.name == layer.name) => {
                catalog.warnings.push(format!("{label} skipped: the name is listed more than once; the first counts"));
            }
            Ok(layer) => catalog.layers.push(layer),
            Err(reason) => catalog.warnings.push(format!("{label} skipped: {reason}")),
        }
    }
    Ok(catalog)
}

/// `layer 3 ("k3s")`, or `layer 3` when it has no readable name.
fn layer_label(index: usize, raw: &Value) -> String {
    match raw.get("name").and_then(Value::as_str) {
        Some(name) => format!("layer {} ({:?})", index + 1, clean_text(name, 64)),
        None => format!("layer {}", index + 1),
    }
}

fn layer(raw: Value, label: &str, warnings: &mut Vec<String>) -> Result<Layer, String> {
    let raw: RawLayer = serde_json::from_value(raw).map_err(|e| e.to_string())?;
    let name = ExtensionName::new(&raw.name).map_err(|e| e.to_string())?;
    let mut tags: Vec<Tag> = Vec::new();
    for (index, raw_tag) in raw.tags.unwrap_or_default().into_iter().enumerate() {
        match tag(raw_tag) {
            Ok(tag) if tags.iter().any(|t| t.version == tag.version) => {
                warnings.push(format!("{label}, tag {} ({:?}) skipped: listed more than once", index + 1, tag.version))
            }
            Ok(tag) => tags.push(tag),
            Err(reason) => warnings.push(format!("{label}, tag {} skipped: {reason}", index + 1)),
        }
    }
    let latest = raw.latest.unwrap_or_default();
    Ok(Layer {
        name,
        title: clean_text(&raw.title.unwrap_or_default(), MAX_TITLE),
        description: clean_text(&raw.description.unwrap_or_default(), MAX_DESCRIPTION),
        latest: if version_text_ok(&latest) { latest } else { String::new() },
        tags,
    })
}

fn tag(raw: Value) -> Result<Tag, String> {
    let raw: RawTag = serde_json::from_value(raw).map_err(|e| e.to_string())?;
    if !version_text_ok(&raw.tag) {
        return Err(format!(
            "the version {:?} is empty, longer than {MAX_VERSION_TEXT} bytes, or has spaces or control characters",
            clean_text(&raw.tag, 64)
        ));
    }
    let artifacts = raw.sysext.unwrap_or_default().into_iter().map(|(arch, artifact)| (arch, artifact.oci)).collect();
    Ok(Tag { version: raw.tag, artifacts })
}

/// Version texts travel in sources (`catalog:k3s@1.32.1`) and on the bus: short,
/// printable, without spaces.
fn version_text_ok(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_VERSION_TEXT && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Text shown to people and sent over D-Bus: no control characters (a NUL is not even
/// a valid D-Bus string), and bounded.
fn clean_text(text: &str, max_chars: usize) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(max_chars).collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// kairos-io/kairos `sdk/extensions/testdata/releases.json` (Apache-2.0): an excerpt
    /// of the index hadron-layers publishes, kept verbatim as the shape to stay
    /// compatible with.
    pub(in crate::engine::catalogs) const PUBLISHED: &str = include_str!("testdata/releases.json");

    #[test]
    fn reads_the_index_kairos_publishes() {
        let catalog = parse(PUBLISHED.as_bytes()).expect("the published index parses");
        assert_eq!(catalog.repository.as_deref(), Some("kairos-io/hadron-layers"));
        assert!(catalog.warnings.is_empty(), "{:?}", catalog.warnings);
        let names: Vec<&str> = catalog.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["fwupd", "git"]);
        let fwupd = &catalog.layers[0];
        assert_eq!((fwupd.title.as_str(), fwupd.description.as_str()), ("fwupd", "Firmware update daemon"));
        assert_eq!(fwupd.latest, "2.1.7");
        assert_eq!(fwupd.tags.len(), 2);
        assert_eq!(
            fwupd.tags[0].artifacts.get("amd64").map(String::as_str),
            Some(
                "ghcr.io/kairos-io/hadron-layers/sysext/fwupd@sha256:41767043b6016c222174722e70d84ea8b2402a50464543851b74b3e6c2941a05"
            )
        );
        assert!(fwupd.tags[1].artifacts.is_empty(), "a tag without a sysext build");
    }

    #[test]
    fn malformed_entries_are_skipped_and_named() {
        let document = r#"{"layers": [
            {"name": "good", "latest": "1.0.0", "tags": [
                {"tag": "1.0.0", "sysext": {"amd64": {"oci": "r/good@sha256:00"}}},
                {"tag": 5},
                {"tag": "1.0.0"},
                {"tag": "has space"},
                {"tag": "0.9.0", "sysext": {"amd64": {"oci": 7}}}
            ]},
            {"name": "../etc", "tags": []},
            {"title": "no name"},
            "a string",
            {"name": "good", "tags": []},
            {"name": "nul", "title": "a\u0000b", "description": 3}
        ], "extra": {"ignored": true}}"#;
        let catalog = parse(document.as_bytes()).expect("the document is still a catalog");
        let names: Vec<&str> = catalog.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        assert_eq!(catalog.layers[0].tags.len(), 1);
        let warnings = catalog.warnings.join("\n");
        for expected in [
            "layer 1 (\"good\"), tag 2 skipped",
            "layer 1 (\"good\"), tag 3 (\"1.0.0\") skipped: listed more than once",
            "layer 1 (\"good\"), tag 4 skipped: the version \"has space\"",
            "layer 1 (\"good\"), tag 5 skipped",
            "layer 2 (\"../etc\") skipped",
            "layer 3 skipped: missing field `name`",
            "layer 4 skipped",
            "layer 5 (\"good\") skipped: the name is listed more than once",
            "layer 6 (\"nul\") skipped",
        ] {
            assert!(warnings.contains(expected), "no warning {expected:?} in:\n{warnings}");
        }
        assert_eq!(catalog.warnings.len(), 9, "{warnings}");
    }

    #[test]
    fn control_characters_never_reach_the_bus() {
        let catalog = parse(r#"{"layers":[{"name":"x","title":"a\u0000b\nc","description":"d\u001be"}]}"#.as_bytes())
            .expect("parses");
        assert_eq!(catalog.layers[0].title, "a b c");
        assert_eq!(catalog.layers[0].description, "d e");
    }

    #[test]
    fn refuses_what_is_no_catalog() {
        assert!(matches!(parse(b"{"), Err(FormatError::Json(_))));
        assert!(matches!(parse(b"\x00\xff garbage"), Err(FormatError::Json(_))));
        assert!(matches!(parse(b"[1, 2]"), Err(FormatError::Shape(_))));
        assert!(matches!(parse(br#"{"layers": {"k3s": {}}}"#), Err(FormatError::Shape(_))));
        let deep = "[".repeat(10_000);
        assert!(matches!(parse(deep.as_bytes()), Err(FormatError::Json(_))), "deep nesting is refused, not a crash");
        assert_eq!(parse(br#"{"repo": "x"}"#).map(|c| c.layers.len()), Ok(0), "no layers: an empty catalog");
    }
}
