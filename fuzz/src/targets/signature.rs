//! The root-hash signature check (`trust::signature::verify`): a detached PKCS#7 from an
//! image's signature partition, against the certificates in `verity.d`.
//!
//! The input is the root hash as text, a newline, then the DER signature. The trusted
//! certificate is `testdata/signer.crt`; the seeds are real signatures by its key.
//! Beyond "no panic": a signature passes only as signed by that certificate, and never
//! for text other than what was signed (each seed signs the root hash written before it).

use std::path::PathBuf;
use std::sync::OnceLock;

use kairos_extensionsd::engine::trust::signature::{self, TrustStore};

/// The subject of `testdata/signer.crt`.
pub const SUBJECT: &str = "CN=kairos-extensions fuzz signer";

fn trust() -> &'static TrustStore {
    static TRUST: OnceLock<TrustStore> = OnceLock::new();
    TRUST.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let trust = TrustStore::load(&[dir]).expect("the test certificate loads");
        assert!(!trust.is_empty(), "testdata/signer.crt is missing");
        trust
    })
}

pub fn run(data: &[u8]) {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (root, der) = (String::from_utf8_lossy(&data[..split]), data.get(split + 1..).unwrap_or_default());
    let encoded = openssl::base64::encode_block(der);
    if let Ok(subject) = signature::verify(&root, &encoded, trust()) {
        assert_eq!(subject, SUBJECT);
        // The same signature over other text must fail.
        let other = format!("{root}0");
        assert!(signature::verify(&other, &encoded, trust()).is_err(), "{root:?} and {other:?} both verify");
    }
    // The signature as the partition's JSON carries it, not necessarily valid base64.
    let _ = signature::verify(&root, &String::from_utf8_lossy(der), trust());
}
