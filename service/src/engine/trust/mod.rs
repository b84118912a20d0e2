//! Trust: how an image is protected, and whether the image policy admits it.
//!
//! systemd 252 cannot validate verity signatures in userspace (`systemd-dissect
//! --validate` needs v254), so images are checked natively: the GPT is read, the data
//! partition's root hash is recomputed from every byte and compared with the partition
//! UUIDs systemd-repart derives from it and with the signed root hash, and the PKCS#7
//! signature is verified against the certificates in the `verity.d` directories.
//!
//! A signature that is present but does not verify is always a refusal under any policy
//! but `permissive`: it means tampering, or a trust configuration that does not match,
//! and treating such an image as merely unsigned would hide what the policy is for.

pub mod gpt;
pub mod hashtree;
pub mod signature;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::layout::Layout;
use super::policy::{Designator, ImagePolicy, Protection as Level};
pub use signature::TrustStore;

/// Where systemd looks for verity signing certificates, relative to the root.
pub const VERITY_DIRS: [&str; 4] = ["etc/verity.d", "run/verity.d", "usr/local/lib/verity.d", "usr/lib/verity.d"];

/// The largest signature partition content read.
const MAX_SIGNATURE: u64 = 1 << 20;

/// How an image is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// A plain file system image, or a partition without verity.
    Unprotected,
    /// dm-verity whose hash tree matches, without a signature.
    Verity,
    /// dm-verity with a root-hash signature by a trusted certificate.
    Signed {
        /// The signing certificate's subject.
        subject: String,
    },
}

impl Protection {
    /// How users see it: `unprotected`, `verity`, `signed by <subject>`.
    pub fn describe(&self) -> String {
        match self {
            Self::Unprotected => "unprotected".to_owned(),
            Self::Verity => "verity".to_owned(),
            Self::Signed { subject } => format!("signed by {subject}"),
        }
    }
}

/// Why an image's protection could not be established. Each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The image's structures are not what they claim; the text says which.
    #[error("{0}")]
    Malformed(&'static str),
    /// The data does not hash to the root hash its partitions or signature claim.
    #[error("root hash mismatch: {0}")]
    RootHashMismatch(String),
    /// The signature was made by a certificate that is not trusted.
    #[error("signed by a certificate that is not in any verity.d directory")]
    UnknownCertificate,
    /// The signature does not verify.
    #[error("the root hash signature does not verify: {0}")]
    BadSignature(String),
    /// A certificate in a trust directory cannot be read.
    #[error("cannot read the trusted certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading the image failed.
    #[error("reading the image failed")]
    Io(#[from] std::io::Error),
}

/// Partition type GUIDs (Discoverable Partitions Specification) checked against a real
/// systemd-repart image. Other architectures fail closed until theirs are verified.
struct Types {
    data: &'static str,
    verity: &'static str,
    signature: &'static str,
}

const X86_64: [Types; 2] = [
    Types {
        data: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        verity: "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
        signature: "41092b05-9fc8-4523-994f-2def0408b176",
    },
    Types {
        data: "8484680c-9521-48c6-9c11-b0720656f69e",
        verity: "77ff5f63-e7b6-4633-acf4-1565b864c0e6",
        signature: "e7bb33fb-06cf-4e81-8273-e543b413e2e2",
    },
];

/// The certificate directories for the system at `layout`'s root: systemd's, then the
/// configured extra ones, all under the root.
pub fn certificate_dirs(layout: &Layout, extra: &[PathBuf]) -> Vec<PathBuf> {
    VERITY_DIRS.iter().map(|d| layout.root().join(d)).chain(extra.iter().map(|p| layout.host(p))).collect()
}

/// Establishes how `image` is protected.
pub fn inspect(image: &Path, trust: &TrustStore) -> Result<Protection, TrustError> {
    let mut file = File::open(image)?;
    let partitions = match gpt::partitions(&mut file) {
        Ok(partitions) => partitions,
        Err(gpt::GptError::Absent) => return Ok(Protection::Unprotected),
        Err(gpt::GptError::Malformed(why)) => return Err(TrustError::Malformed(why)),
        Err(gpt::GptError::Io(e)) => return Err(e.into()),
    };
    if std::env::consts::ARCH != "x86_64" {
        return Err(TrustError::Malformed("verity checks of disk images are supported on x86-64 only so far"));
    }
    let find = |guid: &str| partitions.iter().find(|p| p.type_guid == guid);
    let Some((types, data)) = X86_64.iter().find_map(|t| find(t.data).map(|p| (t, p))) else {
        return Err(TrustError::Malformed("the disk image has no root or usr partition for this architecture"));
    };
    let Some(verity) = find(types.verity) else { return Ok(Protection::Unprotected) };

    let superblock = hashtree::superblock(&mut file, verity)?;
    let computed = hex(&hashtree::root_hash(&mut file, data, &superblock)?);
    let bound = format!("{}{}", data.uuid.replace('-', ""), verity.uuid.replace('-', ""));
    if bound != computed {
        return Err(TrustError::RootHashMismatch(
            "the data does not hash to the root hash its partition UUIDs carry".into(),
        ));
    }
    let Some(signature) = find(types.signature) else { return Ok(Protection::Verity) };
    let (claimed, signed) = read_signature(&mut file, signature)?;
    if !claimed.eq_ignore_ascii_case(&computed) {
        return Err(TrustError::RootHashMismatch("the signed root hash is not the data's".into()));
    }
    let subject = signature::verify(&claimed, &signed, trust)?;
    Ok(Protection::Signed { subject })
}

fn read_signature(file: &mut File, partition: &gpt::Partition) -> Result<(String, String), TrustError> {
    let length = partition.length.min(MAX_SIGNATURE);
    let mut raw = vec![0u8; usize::try_from(length).map_err(|_| TrustError::Malformed("signature partition"))?];
    file.seek(SeekFrom::Start(partition.offset))?;
    file.read_exact(&mut raw)?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let json: serde_json::Value = serde_json::from_slice(&raw[..end])
        .map_err(|_| TrustError::Malformed("the signature partition is not JSON"))?;
    let root = json["rootHash"].as_str().ok_or(TrustError::Malformed("the signature has no rootHash"))?;
    let signature = json["signature"].as_str().ok_or(TrustError::Malformed("the signature has no signature"))?;
    Ok((root.to_owned(), signature.to_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decides whether `policy` admits `image`. `permissive` admits everything without
/// reading the image; anything else verifies it. Returns the verdict when one was made.
pub fn admit(policy: &ImagePolicy, image: &Path, dirs: &[PathBuf]) -> Result<Option<Protection>, String> {
    if *policy == ImagePolicy::Permissive {
        return Ok(None);
    }
    let verdict = TrustStore::load(dirs).and_then(|trust| inspect(image, &trust));
    let protection = verdict.map_err(|e| format!("image policy {policy}: {}", super::full_message(&e)))?;
    let level = match protection {
        Protection::Unprotected => Level::Unprotected,
        Protection::Verity => Level::Verity,
        Protection::Signed { .. } => Level::Signed,
    };
    policy.admits(Designator::Root, level)?;
    if let Some(argv) = systemd_validation(policy, image, super::sysext::host_systemd_version()) {
        let args: Vec<&std::ffi::OsStr> = argv.iter().map(|a| a.as_os_str()).collect();
        let out = super::command::run(super::image::DISSECT, &args, std::time::Duration::from_secs(600))
            .map_err(|e| format!("image policy {policy}: {}", super::full_message(&e)))?;
        if !out.status.success() {
            let said = out.stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no reason given");
            return Err(format!("image policy {policy}: systemd-dissect --validate refused the image: {said}"));
        }
    }
    Ok(Some(protection))
}

/// The first systemd whose systemd-dissect validates against an image policy.
const VALIDATE_SINCE: u32 = 254;

/// The `systemd-dissect --validate` call that gives systemd's own verdict as a second
/// opinion, where the host's systemd can (v254 and later); `None` elsewhere.
fn systemd_validation(policy: &ImagePolicy, image: &Path, version: Option<u32>) -> Option<Vec<std::ffi::OsString>> {
    let text = policy.systemd_string()?;
    if version? < VALIDATE_SINCE {
        return None;
    }
    Some(vec!["--validate".into(), format!("--image-policy={text}").into(), image.as_os_str().to_owned()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_validates_only_where_it_can() {
        let image = Path::new("/var/lib/kairos/extensions/.tmp/stage-x");
        assert_eq!(systemd_validation(&ImagePolicy::Strict, image, Some(252)), None);
        assert_eq!(systemd_validation(&ImagePolicy::Strict, image, None), None);
        assert_eq!(systemd_validation(&ImagePolicy::Permissive, image, Some(256)), None);
        let argv = systemd_validation(&ImagePolicy::Strict, image, Some(254)).unwrap_or_default();
        assert_eq!(
            argv,
            [
                std::ffi::OsString::from("--validate"),
                "--image-policy=root=signed+absent:usr=signed+absent".into(),
                image.as_os_str().to_owned(),
            ]
        );
        let argv = systemd_validation(&ImagePolicy::Verity, image, Some(255)).unwrap_or_default();
        assert_eq!(argv[1], "--image-policy=root=verity+signed+absent:usr=verity+signed+absent");
    }
}
