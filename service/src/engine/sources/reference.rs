//! OCI image references: `[registry/]repository[:tag][@sha256:<hex>]`.
//!
//! The grammar is the distribution project's, ASCII only, parsed by hand. Two reasons
//! not to use oci-spec's `Reference::from_str`: a bad reference is refused when the call
//! is made, with the part that is wrong named; and that parser compiles a Unicode-aware
//! regex on first use (about 15 MiB of automaton, kept for the life of the process),
//! which would be most of the service's memory during a pull.

use std::fmt;

use super::super::digest::Sha256Digest;

/// Docker Hub, where references without a registry point.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy name, which means the same registry.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The longest repository path distribution accepts.
const REPOSITORY_MAX: usize = 255;
/// The longest tag distribution accepts.
const TAG_MAX: usize = 128;

/// Why a reference is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("the reference is empty")]
    Empty,
    /// `user:password@` in front of the registry: it would be stored and shown.
    #[error("credentials do not belong in the reference; use registry_auth")]
    Credentials,
    /// The registry part is not `host[:port]`.
    #[error("registry {0:?} is not host[:port] (letters, digits, '-' and '.', and a port number)")]
    Registry(String),
    /// A path component of the repository is not allowed.
    #[error("repository component {0:?} is not lower-case letters and digits joined by '.', '_', '__' or '-'")]
    Component(String),
    /// The repository path is too long.
    #[error("the repository path is longer than {REPOSITORY_MAX} characters")]
    RepositoryTooLong,
    /// The tag is not allowed.
    #[error("tag {0:?} is not 1 to {TAG_MAX} letters, digits, '_', '.' and '-', starting with a letter, digit or '_'")]
    Tag(String),
    /// The digest is not `sha256:<64 hex digits>`.
    #[error("digest {0:?} is not sha256:<64 hex digits>")]
    Digest(String),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Sha256Digest>,
}

impl ImageReference {
    /// Parses a reference as `docker pull` takes it: no registry means Docker Hub (and
    /// `library/` for one-component names), neither tag nor digest means `:latest`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // '@' only introduces a digest, after the repository; one before the first '/'
        // is userinfo.
        if text.split_once('/').is_some_and(|(first, _)| first.contains('@')) {
            return Err(ReferenceError::Credentials);
        }
        let (name_and_tag, digest) = match text.split_once('@') {
            Some((name, digest)) => (name, Some(parse_digest(digest)?)),
            None => (text, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a port.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => {
                let (name, tag) = name_and_tag.split_at(last_slash + colon);
                (name, Some(parse_tag(&tag[1..])?))
            }
            None => (name_and_tag, None),
        };
        let (registry, path) = split_registry(name);
        let registry = parse_registry(registry)?;
        for component in path.split('/') {
            if !is_path_component(component) {
                return Err(ReferenceError::Component(component.to_owned()));
            }
        }
        let repository =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_owned() };
        if repository.len() > REPOSITORY_MAX {
            return Err(ReferenceError::RepositoryTooLong);
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_owned()) } else { tag };
        Ok(Self { registry, repository, tag, digest })
    }

    /// `host[:port]` of the registry.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The digest the reference pins, if any.
    pub fn digest(&self) -> Option<&Sha256Digest> {
        self.digest.as_ref()
    }

    /// The same reference for oci-client, built from its parts so that its own parser
    /// never runs.
    pub fn to_oci(&self) -> oci_client::Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => {
                oci_client::Reference::with_tag_and_digest(registry, repository, tag.clone(), digest.to_string())
            }
            (None, Some(digest)) => oci_client::Reference::with_digest(registry, repository, digest.to_string()),
            (tag, None) => oci_client::Reference::with_tag(
                registry,
                repository,
                tag.clone().unwrap_or_else(|| "latest".to_owned()),
            ),
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits off the registry: the first component is one when it has a '.' or a ':', or
/// is `localhost`, and something follows it (as distribution decides).
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => (DOCKER_HUB, name),
    }
}

fn parse_registry(text: &str) -> Result<String, ReferenceError> {
    let bad = || ReferenceError::Registry(text.to_owned());
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    let host_ok = host.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
    });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok());
    if !host_ok || !port_ok {
        return Err(bad());
    }
    Ok(if host == DOCKER_HUB_LEGACY && port.is_none() { DOCKER_HUB.to_owned() } else { text.to_owned() })
}

/// `[a-z0-9]+` runs joined by exactly one separator: `.`, `_`, `__`, or any run of `-`.
fn is_path_component(text: &str) -> bool {
    let bytes = text.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut separator = String::new();
    for b in bytes {
        if alnum(b) {
            let ok = matches!(separator.as_str(), "" | "." | "_" | "__") || separator.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(char::from(*b));
        } else {
            return false;
        }
    }
    true
}

fn parse_tag(text: &str) -> Result<String, ReferenceError> {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = text.as_bytes();
    let ok = bytes.len() <= TAG_MAX
        && bytes.first().is_some_and(word)
        && bytes.iter().all(|b| word(b) || *b == b'.' || *b == b'-');
    if ok { Ok(text.to_owned()) } else { Err(ReferenceError::Tag(text.to_owned())) }
}

fn parse_digest(text: &str) -> Result<Sha256Digest, ReferenceError> {
    text.strip_prefix("sha256:")
        .and_then(|hex| Sha256Digest::from_hex(hex).ok())
        .ok_or_else(|| ReferenceError::Digest(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parsed(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageReference::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        (r.registry, r.repository, r.tag, r.digest.map(|d| d.to_string()))
    }

    #[test]
    fn normalises_as_docker_pull_does() {
        let latest = Some("latest".to_owned());
        assert_eq!(parsed("alpine"), ("docker.io".into(), "library/alpine".into(), latest.clone(), None));
        assert_eq!(parsed("kairos/k3s"), ("docker.io".into(), "kairos/k3s".into(), latest.clone(), None));
        assert_eq!(
            parsed("index.docker.io/alpine:3"),
            ("docker.io".into(), "library/alpine".into(), Some("3".into()), None)
        );
        assert_eq!(parsed("localhost/x"), ("localhost".into(), "x".into(), latest.clone(), None));
        assert_eq!(
            parsed("127.0.0.1:5000/hello:v1"),
            ("127.0.0.1:5000".into(), "hello".into(), Some("v1".into()), None)
        );
        assert_eq!(
            parsed(&format!("quay.io/kairos/k3s:v1.30@sha256:{}", HEX.to_uppercase())),
            ("quay.io".into(), "kairos/k3s".into(), Some("v1.30".into()), Some(format!("sha256:{HEX}")))
        );
        assert_eq!(
            parsed(&format!("registry.example.com:443/a/b/c@sha256:{HEX}")),
            ("registry.example.com:443".into(), "a/b/c".into(), None, Some(format!("sha256:{HEX}")))
        );
        assert_eq!(parsed("a.b-c/x_y__z---w.v"), ("a.b-c".into(), "x_y__z---w.v".into(), latest, None));
    }

    #[test]
    fn displays_what_it_pulls() {
        let shown = |t: &str| ImageReference::parse(t).map(|r| r.to_string()).unwrap_or_default();
        assert_eq!(shown("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(shown(&format!("r.io/x@sha256:{HEX}")), format!("r.io/x@sha256:{HEX}"));
        let oci = ImageReference::parse(&format!("r.io/x:v1@sha256:{HEX}")).map(|r| r.to_oci());
        assert_eq!(oci.map(|r| r.whole()).ok(), Some(format!("r.io/x:v1@sha256:{HEX}")));
    }

    #[test]
    fn names_the_part_that_is_wrong() {
        let error = |t: &str| ImageReference::parse(t).err();
        assert_eq!(error(""), Some(ReferenceError::Empty));
        assert_eq!(error("user:pw@r.io/a"), Some(ReferenceError::Credentials));
        assert_eq!(error("UPPER"), Some(ReferenceError::Component("UPPER".into())));
        assert_eq!(error("r.io/a..b"), Some(ReferenceError::Component("a..b".into())));
        assert_eq!(error("r.io/a._b"), Some(ReferenceError::Component("a._b".into())));
        assert_eq!(error("r.io/a___b"), Some(ReferenceError::Component("a___b".into())));
        assert_eq!(error("r.io/-a"), Some(ReferenceError::Component("-a".into())));
        assert_eq!(error("r.io//a"), Some(ReferenceError::Component(String::new())));
        assert_eq!(error("r.io/a/"), Some(ReferenceError::Component(String::new())));
        assert_eq!(error("r.io:99999/a"), Some(ReferenceError::Registry("r.io:99999".into())));
        assert_eq!(error("r.io:/a"), Some(ReferenceError::Registry("r.io:".into())));
        assert_eq!(error("-r.io/a"), Some(ReferenceError::Registry("-r.io".into())));
        assert_eq!(error("[::1]:5000/a"), Some(ReferenceError::Registry("[::1]:5000".into())));
        assert_eq!(error("r.io/a:"), Some(ReferenceError::Tag(String::new())));
        assert_eq!(error("r.io/a:.v1"), Some(ReferenceError::Tag(".v1".into())));
        assert_eq!(error("r.io/a:vé"), Some(ReferenceError::Tag("vé".into())), "tags are ASCII");
        assert_eq!(error(&format!("r.io/a:{}", "t".repeat(129))), Some(ReferenceError::Tag("t".repeat(129))));
        assert_eq!(error("r.io/a@sha256:00"), Some(ReferenceError::Digest("sha256:00".into())));
        assert_eq!(error(&format!("r.io/a@sha512:{HEX}")), Some(ReferenceError::Digest(format!("sha512:{HEX}"))));
        assert_eq!(
            error(&format!("r.io/a@sha256:{HEX}@sha256:{HEX}")),
            Some(ReferenceError::Digest(format!("sha256:{HEX}@sha256:{HEX}")))
        );
        assert_eq!(error(&format!("r.io/{}", "a".repeat(256))), Some(ReferenceError::RepositoryTooLong));
    }
}
