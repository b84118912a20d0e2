//! Trust: how an image is protected, and whether the image policy admits it.
//!
//! systemd 252 cannot validate verity signatures in userspace (`systemd-dissect
//! --validate` needs v254), so images are checked natively: the GPT is read, the data
//! partition's root hash is recomputed from every byte and compared with the partition
//! UUIDs systemd-repart derives from it and with the signed root hash, and the PKCS#7
//! signature is verified against the certificates in the `verity.d` directories.
//!
//! The same proof lets an image with verity be read where device-mapper is absent
//! ([`read_releases`]): its release file is read from the data partition only after that
//! partition hashed to the root hash the image claims. This holds under every policy,
//! `permissive` included: an image whose verity does not hold is never read.
//!
//! A signature that is present but does not verify is always a refusal under any policy
//! but `permissive`: it means tampering, or a trust configuration that does not match,
//! and treating such an image as merely unsigned would hide what the policy is for.

pub mod gpt;
pub mod hashtree;
pub mod proof;
pub mod signature;

use std::path::{Path, PathBuf};

use super::image::{ImageError, Releases};
use super::layout::Layout;
use super::policy::{ImagePolicy, Protection as Level};
pub use proof::{Proof, prove};
pub use signature::TrustStore;

/// Where systemd looks for verity signing certificates, relative to the root.
pub const VERITY_DIRS: [&str; 4] = ["etc/verity.d", "run/verity.d", "usr/local/lib/verity.d", "usr/lib/verity.d"];

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

/// The certificate directories for the system at `layout`'s root: systemd's, then the
/// configured extra ones, all under the root.
pub fn certificate_dirs(layout: &Layout, extra: &[PathBuf]) -> Vec<PathBuf> {
    VERITY_DIRS.iter().map(|d| layout.root().join(d)).chain(extra.iter().map(|p| layout.host(p))).collect()
}

/// Establishes how `image` is protected, hashing its data when it has verity.
pub fn inspect(image: &Path, trust: &TrustStore) -> Result<Protection, TrustError> {
    prove(image)?.protection(trust)
}

/// Why an image's release files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The image has verity, and it does not hold: its file system was not read.
    #[error("the image's verity data does not verify: {0}")]
    Verity(#[source] TrustError),
    /// The file system could not be read, or holds no usable release.
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl From<ReadError> for super::Error {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Verity(e) => Self::Verity(e),
            ReadError::Image(e) => Self::InvalidImage(e),
        }
    }
}

/// Reads the release files of `image`, proving its verity data first when it has any.
///
/// A verity image is read from its data partition directly, after the hash tree over
/// that partition was recomputed and matched: systemd would need device-mapper to open
/// it, which containers, image builders and this machine lack, and the bytes read are
/// the ones just proven (a staged file sits in the store's private staging directory and
/// nothing changes it in between). Everything else goes through systemd-dissect as it
/// is. The proof comes back so that admission need not hash the image again.
pub fn read_releases(image: &Path) -> Result<(Releases, Proof), ReadError> {
    let proof = prove(image).map_err(ReadError::Verity)?;
    let releases =
        if proof.is_verity() { super::image::read_verified_image(image)? } else { super::image::read_image(image)? };
    Ok((releases, proof))
}

/// Decides whether `policy` admits `image`. `permissive` admits everything without
/// reading the image; anything else verifies it. Returns the verdict when one was made.
pub fn admit(policy: &ImagePolicy, image: &Path, dirs: &[PathBuf]) -> Result<Option<Protection>, String> {
    if *policy == ImagePolicy::Permissive {
        return Ok(None);
    }
    let proof = prove(image).map_err(|e| format!("image policy {policy}: {}", super::full_message(&e)))?;
    admit_proven(policy, &proof, image, dirs)
}

/// Decides whether `policy` admits `image`, whose data [`prove`] (or [`read_releases`])
/// has already established as `proof`. `permissive` admits every image whose verity
/// holds, without judging its signer: the kernel may trust certificates that no
/// `verity.d` directory holds. Anything else needs the signer to be trusted.
pub fn admit_proven(
    policy: &ImagePolicy,
    proof: &Proof,
    image: &Path,
    dirs: &[PathBuf],
) -> Result<Option<Protection>, String> {
    if *policy == ImagePolicy::Permissive {
        return Ok(None);
    }
    let verdict = TrustStore::load(dirs).and_then(|trust| proof.protection(&trust));
    let protection = verdict.map_err(|e| format!("image policy {policy}: {}", super::full_message(&e)))?;
    let level = match protection {
        Protection::Unprotected => Level::Unprotected,
        Protection::Verity => Level::Verity,
        Protection::Signed { .. } => Level::Signed,
    };
    policy.admits(proof.designator(), level)?;
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
