//! Registry credentials from a containers-style `auth.json`.
//!
//! Credentials are looked up for the exact registry host being pulled from (the most
//! specific `host/namespace/...` key wins, as podman and skopeo do), so they are never
//! handed to the client for another host. Keys are compared after the normalisations
//! those tools apply when they write the file: a `https://` prefix and docker's legacy
//! `/v1/` suffix are dropped, and Docker Hub's three host names are one registry.
//!
//! A missing file means anonymous access: the operator may configure the path before any
//! registry needs it. A file that exists but cannot be read or parsed is an error, so a
//! typo in it shows up as itself instead of as "not authorized" from the registry.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oci_client::secrets::RegistryAuth;

/// Docker Hub's canonical name; `index.docker.io` and `registry-1.docker.io` are aliases.
const DOCKER_HUB: &str = "docker.io";

/// The configured `registry_auth` file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// The file exists but cannot be read.
    #[error("cannot read registry_auth {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a containers-style `auth.json`.
    #[error("registry_auth {path} is not a containers auth.json: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the credentials themselves).
        reason: String,
    },
}

/// Credentials for `repository` (`path/in/registry`) on `registry` (`host[:port]`) from
/// `auth_file`, or anonymous when there is no file or no entry for that registry.
pub fn lookup(auth_file: Option<&Path>, registry: &str, repository: &str) -> Result<RegistryAuth, AuthFileError> {
    let Some(path) = auth_file else { return Ok(RegistryAuth::Anonymous) };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(file = %path.display(), "registry_auth does not exist; pulling anonymously");
            return Ok(RegistryAuth::Anonymous);
        }
        Err(source) => return Err(AuthFileError::Read { path: path.to_owned(), source }),
    };
    let malformed = |reason: String| AuthFileError::Malformed { path: path.to_owned(), reason };
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| malformed(format!("not JSON: {e}")))?;
    let Some(auths) = parsed.get("auths") else { return Ok(RegistryAuth::Anonymous) };
    let auths = auths.as_object().ok_or_else(|| malformed("\"auths\" is not an object".into()))?;
    let wanted = format!("{}/{repository}", canonical_host(registry));
    let best = auths
        .iter()
        .filter_map(|(key, entry)| normalise_key(key).map(|key| (key, entry)))
        .filter(|(key, _)| covers(key, &wanted))
        .max_by_key(|(key, _)| key.len());
    let Some((key, entry)) = best else { return Ok(RegistryAuth::Anonymous) };
    credentials(entry).map_err(|reason| malformed(format!("entry {key:?}: {reason}")))
}

/// The credentials one entry holds.
fn credentials(entry: &serde_json::Value) -> Result<RegistryAuth, String> {
    if let Some(token) = entry.get("registrytoken").and_then(|t| t.as_str()).filter(|t| !t.is_empty()) {
        return Ok(RegistryAuth::Bearer(token.to_owned()));
    }
    if let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| "\"auth\" is not base64".to_owned())?;
        let decoded = String::from_utf8(decoded).map_err(|_| "\"auth\" is not UTF-8".to_owned())?;
        let (user, password) = decoded.split_once(':').ok_or("\"auth\" is not base64 of user:password")?;
        return Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()));
    }
    if entry.get("identitytoken").is_some() {
        // An identity token is an OAuth2 refresh token, to be exchanged at the registry's
        // token realm; sending it as a bearer token would leak it and fail anyway.
        return Err("identity tokens (OAuth2 refresh tokens) are not supported; use \"auth\"".into());
    }
    Ok(RegistryAuth::Anonymous)
}

/// A key as a `host/path` prefix, or `None` for a key that names no registry.
fn normalise_key(key: &str) -> Option<String> {
    let (without_scheme, legacy) = match key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")) {
        Some(rest) => (rest, true),
        None => (key, false),
    };
    let (host, path) = without_scheme.split_once('/').unwrap_or((without_scheme, ""));
    if host.is_empty() {
        return None;
    }
    // A key with a scheme is docker's legacy form, whose path (`/v1/`) is an API
    // version, never a namespace.
    let path = if legacy { "" } else { path.trim_end_matches('/') };
    Some(if path.is_empty() { canonical_host(host).to_owned() } else { format!("{}/{path}", canonical_host(host)) })
}

fn canonical_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    }
}

/// Whether the key `host[/path]` covers `host/repository`, on whole path components.
fn covers(key: &str, wanted: &str) -> bool {
    wanted.strip_prefix(key).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        STANDARD.encode(format!("{user}:{password}"))
    }

    fn lookup_in(json: &str, registry: &str, repository: &str) -> Result<RegistryAuth, AuthFileError> {
        let dir = tempfile::tempdir().map_err(|source| AuthFileError::Read { path: "tempdir".into(), source })?;
        let file = dir.path().join("auth.json");
        std::fs::write(&file, json).map_err(|source| AuthFileError::Read { path: file.clone(), source })?;
        lookup(Some(&file), registry, repository)
    }

    fn user_of(auth: &Result<RegistryAuth, AuthFileError>) -> Option<&str> {
        match auth {
            Ok(RegistryAuth::Basic(user, _)) => Some(user),
            _ => None,
        }
    }

    #[test]
    fn credentials_only_go_to_their_registry() {
        let json = format!(r#"{{"auths": {{"registry.example.com": {{"auth": "{}"}}}}}}"#, basic("user", "secret"));
        assert!(
            matches!(lookup_in(&json, "registry.example.com", "k3s"), Ok(RegistryAuth::Basic(u, p)) if u == "user" && p == "secret")
        );
        assert!(matches!(lookup_in(&json, "other.example.com", "k3s"), Ok(RegistryAuth::Anonymous)));
        assert!(
            matches!(lookup_in(&json, "registry.example.com:5000", "k3s"), Ok(RegistryAuth::Anonymous)),
            "another port is another registry"
        );
        assert!(
            matches!(lookup_in(&json, "registry.example.co", "m/k3s"), Ok(RegistryAuth::Anonymous)),
            "a key matches whole host names only"
        );
        assert!(matches!(lookup(None, "registry.example.com", "k3s"), Ok(RegistryAuth::Anonymous)));
    }

    #[test]
    fn the_most_specific_key_wins() {
        let json = format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "quay.io/kairos": {{"auth": "{}"}}, "quay.io/kairos/k3s/": {{"auth": "{}"}}}}}}"#,
            basic("host", "p"),
            basic("namespace", "p"),
            basic("repository", "p")
        );
        assert_eq!(user_of(&lookup_in(&json, "quay.io", "kairos/k3s")), Some("repository"));
        assert_eq!(user_of(&lookup_in(&json, "quay.io", "kairos/k3s-extra")), Some("namespace"));
        assert_eq!(user_of(&lookup_in(&json, "quay.io", "kairos/sub/x")), Some("namespace"));
        assert_eq!(user_of(&lookup_in(&json, "quay.io", "kairosx/y")), Some("host"));
    }

    #[test]
    fn docker_style_keys_are_understood() {
        let json = format!(r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#, basic("hub", "p"));
        assert_eq!(user_of(&lookup_in(&json, "index.docker.io", "library/alpine")), Some("hub"));
        assert_eq!(user_of(&lookup_in(&json, "docker.io", "library/alpine")), Some("hub"));
        let json = format!(r#"{{"auths": {{"https://registry.example.com": {{"auth": "{}"}}}}}}"#, basic("u", "p"));
        assert_eq!(user_of(&lookup_in(&json, "registry.example.com", "k3s")), Some("u"));
    }

    #[test]
    fn tokens_and_broken_entries() {
        let json = r#"{"auths": {"r.example.com": {"registrytoken": "tok"}}}"#;
        assert!(matches!(lookup_in(json, "r.example.com", "x"), Ok(RegistryAuth::Bearer(t)) if t == "tok"));
        for (json, why) in [
            (r#"{"auths": {"r.example.com": {"identitytoken": "refresh"}}}"#, "identity tokens"),
            (r#"{"auths": {"r.example.com": {"auth": "%%%"}}}"#, "not base64"),
            (r#"{"auths": {"r.example.com": {"auth": "bm9jb2xvbg=="}}}"#, "user:password"),
            (r#"{"auths": []}"#, "not an object"),
            ("not json", "not JSON"),
        ] {
            match lookup_in(json, "r.example.com", "x") {
                Err(e @ AuthFileError::Malformed { .. }) => assert!(e.to_string().contains(why), "{e} lacks {why:?}"),
                other => panic!("{json}: expected a malformed-file error, got {other:?}"),
            }
        }
        assert!(
            matches!(
                lookup_in(r#"{"auths": {"r.example.com": {"identitytoken": "x"}}}"#, "other.example.com", "x"),
                Ok(RegistryAuth::Anonymous)
            ),
            "a broken entry for another registry does not matter"
        );
    }

    #[test]
    fn a_missing_file_is_anonymous_but_an_unreadable_one_is_an_error() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(matches!(lookup(Some(&dir.path().join("absent.json")), "r", "x"), Ok(RegistryAuth::Anonymous)));
        assert!(matches!(lookup(Some(dir.path()), "r", "x"), Err(AuthFileError::Read { .. })), "a directory");
        Ok(())
    }
}
