//! Registry credentials from a containers-style `auth.json`.
//!
//! Only the entry for the registry being pulled from is used, so credentials are never
//! sent to another host. A missing or unreadable file means anonymous access.

use std::path::Path;

use oci_client::secrets::RegistryAuth;

/// Credentials for `registry` in `auth_file`, or anonymous.
pub fn lookup(auth_file: Option<&Path>, registry: &str) -> RegistryAuth {
    let Some(path) = auth_file else { return RegistryAuth::Anonymous };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read registry_auth; pulling anonymously");
            return RegistryAuth::Anonymous;
        }
    };
    let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        tracing::warn!(file = %path.display(), "registry_auth is not JSON; pulling anonymously");
        return RegistryAuth::Anonymous;
    };
    let entry = &parsed["auths"][registry];
    if let Some(token) = entry["registrytoken"].as_str().or_else(|| entry["identitytoken"].as_str()) {
        return RegistryAuth::Bearer(token.to_owned());
    }
    let decoded = entry["auth"].as_str().and_then(decode_base64);
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, password)) => RegistryAuth::Basic(user.to_owned(), password.to_owned()),
        None => RegistryAuth::Anonymous,
    }
}

fn decode_base64(text: &str) -> Option<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_only_go_to_their_registry() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("auth.json");
        // "user:secret"
        std::fs::write(&file, r#"{"auths": {"registry.example.com": {"auth": "dXNlcjpzZWNyZXQ="}}}"#)?;
        assert!(
            matches!(lookup(Some(&file), "registry.example.com"), RegistryAuth::Basic(u, p) if u == "user" && p == "secret")
        );
        assert!(matches!(lookup(Some(&file), "other.example.com"), RegistryAuth::Anonymous));
        assert!(matches!(lookup(None, "registry.example.com"), RegistryAuth::Anonymous));
        Ok(())
    }
}
