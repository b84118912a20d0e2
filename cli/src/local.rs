//! Local images named on the command line, as plain paths or `file://` URLs.
//!
//! Through the service every local image, root's too, is handed over as an open file:
//! the service runs sandboxed and may not see the caller's /root, /home or /tmp. A
//! `file://` URL therefore means the same file to kairos-ext as to the service and to
//! offline mode, so it is decoded here by the service's rules: an absolute path, `%XX`
//! escapes of UTF-8 without NUL, no control characters, no `..`.

use std::path::{Component, PathBuf};

use anyhow::{Context, Result, bail};

/// The local image `source` names, if it names one, as an absolute path: `file://` URLs
/// are decoded, plain paths resolved (`..`, symlinks), since a `file://` source refuses
/// `..`.
pub fn local_file(source: &str) -> Result<Option<PathBuf>> {
    if let Some(rest) = source.strip_prefix("file://") {
        return decode_file_url(rest).map(Some).with_context(|| format!("invalid source {source:?}"));
    }
    if source.contains("://") {
        return Ok(None);
    }
    Ok(Some(std::fs::canonicalize(source).with_context(|| format!("cannot open {source}"))?))
}

/// The path of `file://<rest>`.
fn decode_file_url(rest: &str) -> Result<PathBuf> {
    if rest.chars().any(char::is_control) {
        bail!("control characters are not allowed");
    }
    if !rest.starts_with('/') {
        bail!("file:// URLs need an absolute path (file:///path/to/image.raw)");
    }
    let path =
        PathBuf::from(kairos_extensionsd::engine::sources::percent_decode(rest).context("bad %-escape in the path")?);
    if path.components().any(|c| c == Component::ParentDir) {
        bail!("'..' is not allowed in the path");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use kairos_extensionsd::engine::sources::Source;

    use super::*;

    #[test]
    fn file_urls_are_refused_exactly_where_the_service_refuses_them() {
        for bad in [
            "file://relative",
            "file:///tmp/%zz",
            "file:///tmp/%4",
            "file:///tmp/%00x",
            "file:///tmp/%ff.raw",
            "file:///tmp/../etc/shadow",
            "file:///tmp/a\nb",
        ] {
            assert!(Source::parse(bad).is_err(), "the service takes {bad:?}");
            assert!(local_file(bad).is_err(), "kairos-ext takes {bad:?}");
        }
        for good in ["file:///tmp/a%20b.raw", "file:///tmp/..x/y.raw", "file:///tmp/./k3s.raw"] {
            let Ok(Source::File(expected)) = Source::parse(good) else { panic!("the service refuses {good:?}") };
            assert_eq!(local_file(good).expect("decodes"), Some(expected), "{good}");
        }
    }

    #[test]
    fn local_files_resolve_parent_references_and_decode_urls() {
        let dir = tempfile::tempdir().expect("dir");
        let image = dir.path().join("k3s%41.raw");
        std::fs::write(&image, "image").expect("image");
        let nested = dir.path().join("sub");
        std::fs::create_dir(&nested).expect("sub");
        let through_parent = format!("{}/../k3s%41.raw", nested.display());
        let resolved = local_file(&through_parent).expect("resolves").expect("a local file");
        assert_eq!(resolved, std::fs::canonicalize(&image).expect("canonical"));
        let url = format!("file://{}/k3s%2541.raw", dir.path().display());
        assert_eq!(local_file(&url).expect("parses"), Some(image.clone()), "%25 is a percent sign");
        assert_eq!(local_file("oci://registry.example/k3s:v1").expect("not local"), None);
    }
}
