//! From a request (`k3s`, `k3s@1.32.1`, `k3s@^1.32`) to one digest-pinned image, by
//! the rules kairos-agent resolves with (kairos-io/kairos `sdk/extensions`):
//!
//! - A version that is a published tag selects that tag, and only that tag: if it
//!   publishes nothing for this machine, that is the error, never another version.
//! - Otherwise the text is a constraint, and the newest version that satisfies it
//!   *and publishes for this architecture* wins.
//! - A bare name takes the layer's `latest` when that publishes for this architecture,
//!   else the newest version that does (by semver; by index order when no tag is
//!   semver), because indexes list image tags before their extension images exist.
//! - The reference chosen must be pinned by digest (`...@sha256:<64 hex>`). One that is
//!   not is refused, not skipped in favour of an older version: an index that names a
//!   mutable tag is not one to trust.

use super::constraint::Constraint;
use super::format::{Layer, Tag};
use super::version::Version;
use super::{Available, Request};

/// Why a layer has no image for a request on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Neither a published tag nor a constraint.
    #[error("{name} has no version {version:?} (published: {published})")]
    NoSuchVersion {
        /// The layer.
        name: String,
        /// What was asked for.
        version: String,
        /// The versions there are.
        published: String,
    },
    /// The version exists but was built for no architecture at all.
    #[error("{name} {version} publishes no system extension for any architecture")]
    NothingForVersion {
        /// The layer.
        name: String,
        /// The version.
        version: String,
    },
    /// The version exists, for other architectures.
    #[error("{name} {version} has no system extension for {arch} (only for {available})")]
    NotForArch {
        /// The layer.
        name: String,
        /// The version.
        version: String,
        /// This machine's architecture.
        arch: String,
        /// The architectures it has.
        available: String,
    },
    /// No version satisfies the constraint.
    #[error("no version of {name} satisfies {constraint:?} (published: {published})")]
    NoMatch {
        /// The layer.
        name: String,
        /// The constraint.
        constraint: String,
        /// The versions there are.
        published: String,
    },
    /// Versions satisfy it, but none for this architecture.
    #[error("the versions of {name} that satisfy {constraint:?} have no system extension for {arch}")]
    NoMatchForArch {
        /// The layer.
        name: String,
        /// The constraint.
        constraint: String,
        /// This machine's architecture.
        arch: String,
    },
    /// No version of the layer was ever built as an extension.
    #[error("{name} publishes no system extension for any architecture")]
    NothingPublished {
        /// The layer.
        name: String,
    },
    /// Versions were built, never for this architecture.
    #[error("{name} publishes no system extension for {arch} (only for {available})")]
    ArchNeverPublished {
        /// The layer.
        name: String,
        /// This machine's architecture.
        arch: String,
        /// The architectures it has.
        available: String,
    },
    /// The chosen reference can change under us.
    #[error(
        "{name} {version} for {arch} points at {reference:?}, which is not pinned by digest (it must end in @sha256: and 64 hex digits), so it could change after it was checked"
    )]
    NotPinned {
        /// The layer.
        name: String,
        /// The version.
        version: String,
        /// This machine's architecture.
        arch: String,
        /// The reference as published.
        reference: String,
    },
}

/// The one image `request` selects from `layer` for `arch`.
pub fn resolve(layer: &Layer, request: &Request, arch: &str) -> Result<Available, ResolveError> {
    let tag = match request.text() {
        Some(text) => match layer.tags.iter().find(|t| t.version == text) {
            Some(tag) => exact(layer, tag, arch)?,
            None => by_constraint(layer, text, arch)?,
        },
        None => latest(layer, arch)?,
    };
    pinned(layer, tag, arch)
}

/// The newest version published for `arch`, whatever was asked for.
pub fn newest(layer: &Layer, arch: &str) -> Result<Available, ResolveError> {
    resolve(layer, &Request::Latest, arch)
}

fn exact<'a>(layer: &Layer, tag: &'a Tag, arch: &str) -> Result<&'a Tag, ResolveError> {
    if tag.artifacts.contains_key(arch) {
        return Ok(tag);
    }
    if tag.artifacts.is_empty() {
        return Err(ResolveError::NothingForVersion { name: layer.name.to_string(), version: tag.version.clone() });
    }
    Err(ResolveError::NotForArch {
        name: layer.name.to_string(),
        version: tag.version.clone(),
        arch: arch.to_owned(),
        available: tag.artifacts.keys().cloned().collect::<Vec<_>>().join(", "),
    })
}

fn by_constraint<'a>(layer: &'a Layer, text: &str, arch: &str) -> Result<&'a Tag, ResolveError> {
    let published = || published(layer);
    let Ok(constraint) = Constraint::parse(text) else {
        return Err(ResolveError::NoSuchVersion {
            name: layer.name.to_string(),
            version: text.to_owned(),
            published: published(),
        });
    };
    let satisfying: Vec<(Version, &Tag)> = layer
        .tags
        .iter()
        .filter_map(|t| Version::parse(&t.version).map(|v| (v, t)))
        .filter(|(v, _)| constraint.matches(v))
        .collect();
    if satisfying.is_empty() {
        return Err(ResolveError::NoMatch {
            name: layer.name.to_string(),
            constraint: text.to_owned(),
            published: published(),
        });
    }
    satisfying
        .into_iter()
        .filter(|(_, t)| t.artifacts.contains_key(arch))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, t)| t)
        .ok_or_else(|| ResolveError::NoMatchForArch {
            name: layer.name.to_string(),
            constraint: text.to_owned(),
            arch: arch.to_owned(),
        })
}

fn latest<'a>(layer: &'a Layer, arch: &str) -> Result<&'a Tag, ResolveError> {
    if let Some(tag) = layer.tags.iter().find(|t| t.version == layer.latest && t.artifacts.contains_key(arch)) {
        return Ok(tag);
    }
    let for_arch: Vec<&Tag> = layer.tags.iter().filter(|t| t.artifacts.contains_key(arch)).collect();
    let newest_semver =
        for_arch.iter().filter_map(|t| Version::parse(&t.version).map(|v| (v, *t))).max_by(|a, b| a.0.cmp(&b.0));
    if let Some((_, tag)) = newest_semver {
        return Ok(tag);
    }
    if let Some(first) = for_arch.first() {
        return Ok(first);
    }
    let mut archs: Vec<&str> = layer.tags.iter().flat_map(|t| t.artifacts.keys().map(String::as_str)).collect();
    archs.sort_unstable();
    archs.dedup();
    if archs.is_empty() {
        return Err(ResolveError::NothingPublished { name: layer.name.to_string() });
    }
    Err(ResolveError::ArchNeverPublished {
        name: layer.name.to_string(),
        arch: arch.to_owned(),
        available: archs.join(", "),
    })
}

fn published(layer: &Layer) -> String {
    if layer.tags.is_empty() {
        return "none".into();
    }
    let shown: Vec<&str> = layer.tags.iter().take(10).map(|t| t.version.as_str()).collect();
    let more = layer.tags.len().saturating_sub(shown.len());
    if more > 0 { format!("{}, and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

fn pinned(layer: &Layer, tag: &Tag, arch: &str) -> Result<Available, ResolveError> {
    let reference = tag.artifacts.get(arch).map(String::as_str).unwrap_or_default();
    match digest_pinned(reference) {
        Some(reference) => Ok(Available { version: tag.version.clone(), reference }),
        None => Err(ResolveError::NotPinned {
            name: layer.name.to_string(),
            version: tag.version.clone(),
            arch: arch.to_owned(),
            reference: reference.chars().take(300).collect(),
        }),
    }
}

/// `NAME@sha256:<64 hex>` with one `@` and no whitespace, the digest in lower case
/// (registries name blobs in lower case); `None` for anything else.
fn digest_pinned(reference: &str) -> Option<String> {
    let (name, hex) = reference.split_once("@sha256:")?;
    let valid = !name.is_empty()
        && !name.contains('@')
        && !name.chars().any(char::is_whitespace)
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| format!("{name}@sha256:{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::super::format::parse;
    use super::*;

    const OLD: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const CURRENT: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
    const ARM: &str = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789";

    fn layer(document: &str, name: &str) -> Layer {
        let catalog = parse(document.as_bytes()).expect("parses");
        catalog.layers.into_iter().find(|l| l.name.as_str() == name).expect("the layer is there")
    }

    fn request(text: &str) -> Request {
        Request::from_text(Some(text)).expect("a valid request")
    }

    /// The cases of kairos-io/kairos `catalog_artifacts_test.go`, where indexes list
    /// versions before (or without) their extension images.
    fn artifactless() -> String {
        format!(
            r#"{{"repo": "kairos-io/hadron-layers", "layers": [
            {{"name": "fwupd", "latest": "2.1.7", "tags": [
              {{"tag": "2.1.7", "sysext": {{}}}},
              {{"tag": "2.1.6", "sysext": {{"amd64": {{"oci": "ghcr.io/h/sysext/fwupd@sha256:{OLD}"}}}}}},
              {{"tag": "2.1.5", "sysext": {{"amd64": {{"oci": "ghcr.io/h/sysext/fwupd@sha256:{CURRENT}"}}}}}}]}},
            {{"name": "drbd", "latest": "9.3.3", "tags": [
              {{"tag": "9.3.3", "sysext": {{"arm64": {{"oci": "ghcr.io/h/sysext/drbd@sha256:{ARM}"}}}}}},
              {{"tag": "9.3.2", "sysext": {{"amd64": {{"oci": "ghcr.io/h/sysext/drbd@sha256:{OLD}"}}}}}}]}},
            {{"name": "git", "latest": "2.55.0", "tags": [{{"tag": "2.55.0", "sysext": {{}}}}]}},
            {{"name": "vendor-tool", "latest": "nightly", "tags": [
              {{"tag": "nightly", "sysext": {{}}}},
              {{"tag": "stable", "sysext": {{"amd64": {{"oci": "ghcr.io/h/sysext/vendor-tool@sha256:{CURRENT}"}}}}}}]}}
            ]}}"#
        )
    }

    fn semver_layers() -> String {
        format!(
            r#"{{"layers": [
            {{"name": "git", "latest": "2.55.0", "tags": [
              {{"tag": "2.55.0", "sysext": {{"amd64": {{"oci": "ghcr.io/h/sysext/git@sha256:{CURRENT}"}}}}}},
              {{"tag": "2.54.1", "sysext": {{"amd64": {{"oci": "ghcr.io/h/sysext/git@sha256:{OLD}"}}}}}},
              {{"tag": "2.50.0", "sysext": {{"amd64": {{"oci": "ghcr.io/h/sysext/git@sha256:{OLD}"}}}}}}]}}]}}"#
        )
    }

    #[test]
    fn the_published_index_resolves_to_a_pinned_image() {
        let catalog = parse(super::super::format::tests::PUBLISHED.as_bytes()).expect("parses");
        let fwupd = &catalog.layers[0];
        let got = resolve(fwupd, &Request::Latest, "amd64").expect("resolves");
        assert_eq!(got.version, "2.1.7");
        assert!(got.reference.ends_with("@sha256:41767043b6016c222174722e70d84ea8b2402a50464543851b74b3e6c2941a05"));
        assert!(resolve(fwupd, &Request::Latest, "arm64").is_ok());
        let git = &catalog.layers[1];
        let err = resolve(git, &Request::Latest, "amd64").expect_err("git publishes no extension");
        assert!(err.to_string().contains("any architecture"), "{err}");
        let err = resolve(fwupd, &request("2.1.6"), "amd64").expect_err("2.1.6 publishes nothing");
        assert_eq!(err, ResolveError::NothingForVersion { name: "fwupd".into(), version: "2.1.6".into() });
    }

    #[test]
    fn constraints_pick_the_newest_match() {
        let git = layer(&semver_layers(), "git");
        for (text, want) in [
            ("2.54.1", "2.54.1"),
            (">= 2.50, < 2.55", "2.54.1"),
            ("^2.50", "2.55.0"),
            ("~2.54.0", "2.54.1"),
            ("< 2.54", "2.50.0"),
        ] {
            assert_eq!(resolve(&git, &request(text), "amd64").map(|a| a.version), Ok(want.to_owned()), "{text}");
        }
        let err = resolve(&git, &request(">= 4.0"), "amd64").expect_err("nothing that new");
        assert!(matches!(&err, ResolveError::NoMatch { constraint, .. } if constraint == ">= 4.0"), "{err}");
        let err = resolve(&git, &request("9.9.9"), "amd64").expect_err("no such version");
        assert!(err.to_string().contains("9.9.9") && err.to_string().contains("2.55.0"), "{err}");
    }

    #[test]
    fn a_bare_name_falls_back_to_the_newest_version_built_for_this_machine() {
        let doc = artifactless();
        assert_eq!(resolve(&layer(&doc, "fwupd"), &Request::Latest, "amd64").map(|a| a.version), Ok("2.1.6".into()));
        let drbd = layer(&doc, "drbd");
        assert_eq!(resolve(&drbd, &Request::Latest, "amd64").map(|a| a.version), Ok("9.3.2".into()));
        let arm = resolve(&drbd, &Request::Latest, "arm64").expect("arm64 has 9.3.3");
        assert_eq!(arm.reference, format!("ghcr.io/h/sysext/drbd@sha256:{}", ARM.to_ascii_lowercase()));
        let vendor = layer(&doc, "vendor-tool");
        assert_eq!(resolve(&vendor, &Request::Latest, "amd64").map(|a| a.version), Ok("stable".into()));
        assert_eq!(resolve(&vendor, &request("stable"), "amd64").map(|a| a.version), Ok("stable".into()));
        assert!(resolve(&vendor, &request("weekly"), "amd64").is_err());
        assert_eq!(
            resolve(&layer(&doc, "fwupd"), &request(">= 2.1"), "amd64").map(|a| a.version),
            Ok("2.1.6".into()),
            "a constraint skips versions that publish nothing"
        );
    }

    #[test]
    fn errors_say_what_is_published() {
        let doc = artifactless();
        let err = resolve(&layer(&doc, "fwupd"), &request("2.1.7"), "amd64").expect_err("an explicit pin is strict");
        assert!(err.to_string().contains("any architecture") && !err.to_string().contains("\"amd64\""), "{err}");
        let err = resolve(&layer(&doc, "drbd"), &request("9.3.3"), "amd64").expect_err("arm64 only");
        assert!(err.to_string().contains("arm64") && err.to_string().contains("amd64"), "{err}");
        let err = resolve(&layer(&doc, "git"), &Request::Latest, "amd64").expect_err("nothing at all");
        assert!(err.to_string().contains("any architecture") && !err.to_string().contains("amd64"), "{err}");
        let err = resolve(&layer(&doc, "fwupd"), &request("> 2.1.6"), "amd64").expect_err("only 2.1.7, unbuilt");
        assert!(err.to_string().contains("> 2.1.6") && err.to_string().contains("amd64"), "{err}");
        let err = resolve(&layer(&doc, "fwupd"), &Request::Latest, "riscv64").expect_err("never for riscv64");
        assert!(err.to_string().contains("riscv64") && err.to_string().contains("amd64"), "{err}");
    }

    #[test]
    fn references_must_be_pinned_by_digest() {
        let long = "a".repeat(64);
        for bad in [
            String::new(),
            "ghcr.io/example/git:1.0.0".into(),
            "ghcr.io/example/git@sha256:".into(),
            "ghcr.io/example/git@sha256:0123456789abcdef".into(),
            format!("ghcr.io/example/git@sha256:{}", "g".repeat(64)),
            format!("ghcr.io/example/git@sha256:{long}extra"),
            format!("ghcr.io/example/git@sha256:{long}@sha256:{long}"),
            format!("ghcr.io/example/git@@sha256:{long}"),
            format!("ghcr.io/ex ample/git@sha256:{long}"),
        ] {
            let doc = format!(
                r#"{{"layers":[{{"name":"git","latest":"1.0.0","tags":[{{"tag":"1.0.0","sysext":{{"amd64":{{"oci":{}}}}}}}]}}]}}"#,
                serde_json::Value::String(bad.clone())
            );
            let err = resolve(&layer(&doc, "git"), &Request::Latest, "amd64").expect_err("refused");
            assert!(matches!(err, ResolveError::NotPinned { .. }), "{bad:?}: {err}");
            let text = err.to_string();
            assert!(text.contains("git") && text.contains("1.0.0") && text.contains("amd64"), "{text}");
        }
    }

    #[test]
    fn a_broken_reference_is_reported_not_skipped() {
        let doc = format!(
            r#"{{"layers":[{{"name":"fwupd","latest":"2.1.7","tags":[
              {{"tag":"2.1.7","sysext":{{"amd64":{{"oci":"ghcr.io/h/sysext/fwupd:2.1.7"}}}}}},
              {{"tag":"2.1.6","sysext":{{"amd64":{{"oci":"ghcr.io/h/sysext/fwupd@sha256:{OLD}"}}}}}}]}}]}}"#
        );
        let err = resolve(&layer(&doc, "fwupd"), &Request::Latest, "amd64").expect_err("2.1.7 is not pinned");
        assert!(matches!(&err, ResolveError::NotPinned { version, .. } if version == "2.1.7"), "{err}");
    }
}
