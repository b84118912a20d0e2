//! Root-hash signatures: a detached PKCS#7 over the hex root hash, checked against
//! certificates the administrator trusts (`verity.d` directories), as systemd does.

use std::path::{Path, PathBuf};

use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;

use super::TrustError;

/// Certificates trusted to sign verity root hashes.
pub struct TrustStore {
    certificates: Vec<X509>,
}

impl TrustStore {
    /// Loads every certificate in `dirs`: PEM (`*.crt`, `*.pem`, possibly several per
    /// file) and DER (`*.der`). Missing directories are skipped; unreadable
    /// certificates are an error, because a trust configuration that silently loses a
    /// certificate refuses images nobody can explain.
    pub fn load(dirs: &[PathBuf]) -> Result<Self, TrustError> {
        let mut certificates = Vec::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                certificates.extend(load_file(&path)?);
            }
        }
        Ok(Self { certificates })
    }

    /// Whether no certificate is trusted.
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }
}

fn load_file(path: &Path) -> Result<Vec<X509>, TrustError> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !matches!(extension, "crt" | "pem" | "der") || !path.is_file() {
        return Ok(Vec::new());
    }
    let bytes = std::fs::read(path)?;
    let parsed =
        if extension == "der" { X509::from_der(&bytes).map(|c| vec![c]) } else { X509::stack_from_pem(&bytes) };
    parsed.map_err(|e| TrustError::Certificate { path: path.to_path_buf(), reason: e.to_string() })
}

/// Verifies `signature` (base64 DER PKCS#7) over `root_hash_hex` and returns the
/// signer's subject. The signer must be one of the trusted certificates themselves:
/// certificates embedded in the signature are ignored, and no chain is built, so a
/// certificate issued by a trusted one is not trusted by that alone.
pub fn verify(root_hash_hex: &str, signature: &str, trust: &TrustStore) -> Result<String, TrustError> {
    let der = openssl::base64::decode_block(signature).map_err(|_| TrustError::BadSignature("not base64".into()))?;
    let pkcs7 = Pkcs7::from_der(&der).map_err(|e| TrustError::BadSignature(format!("not a PKCS#7 signature: {e}")))?;
    let mut trusted = Stack::<X509>::new().map_err(|e| TrustError::BadSignature(e.to_string()))?;
    for certificate in &trust.certificates {
        trusted.push(certificate.clone()).map_err(|e| TrustError::BadSignature(e.to_string()))?;
    }
    let flags = Pkcs7Flags::NOINTERN | Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY | Pkcs7Flags::DETACHED;
    let signers = pkcs7.signers(&trusted, flags).map_err(|_| TrustError::UnknownCertificate)?;
    let Some(signer) = signers.iter().next() else { return Err(TrustError::UnknownCertificate) };
    let subject = subject_of(signer);
    let store = X509StoreBuilder::new().map_err(|e| TrustError::BadSignature(e.to_string()))?.build();
    pkcs7
        .verify(&trusted, &store, Some(root_hash_hex.as_bytes()), None, flags)
        .map_err(|e| TrustError::BadSignature(e.to_string()))?;
    Ok(subject)
}

fn subject_of(certificate: &openssl::x509::X509Ref) -> String {
    let parts: Vec<String> = certificate
        .subject_name()
        .entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect();
    parts.join(", ")
}
