//! Proving a disk image's verity data natively, before anything reads its file system.
//!
//! Where device-mapper is missing (containers, image builders, this project's test
//! machine) systemd cannot open a verity image at all ("Failed to decrypt image"). So the
//! hash tree is recomputed here over every byte of the data partition and checked against
//! the root hash the partition UUIDs carry, and against the signed root hash when there
//! is a signature. Once that holds, the data partition holds exactly the bytes dm-verity
//! would serve, and its file system may be read directly. Whether the signer is trusted
//! is a separate question ([`Proof::protection`]): the proof itself needs no trust store.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{TrustError, TrustStore, gpt, hashtree, signature};
use crate::engine::policy::Designator;

/// The largest signature partition content read.
const MAX_SIGNATURE: u64 = 1 << 20;

/// Partition type GUIDs (Discoverable Partitions Specification) checked against a real
/// systemd-repart image. Other architectures fail closed until theirs are verified.
struct Types {
    designator: Designator,
    data: &'static str,
    verity: &'static str,
    signature: &'static str,
}

const X86_64: [Types; 2] = [
    Types {
        designator: Designator::Root,
        data: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        verity: "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
        signature: "41092b05-9fc8-4523-994f-2def0408b176",
    },
    Types {
        designator: Designator::Usr,
        data: "8484680c-9521-48c6-9c11-b0720656f69e",
        verity: "77ff5f63-e7b6-4633-acf4-1565b864c0e6",
        signature: "e7bb33fb-06cf-4e81-8273-e543b413e2e2",
    },
];

/// A root hash and the detached PKCS#7 signature over it, as the signature partition
/// carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRootHash {
    /// The root hash, in hex.
    pub root_hash: String,
    /// The signature, base64 DER.
    pub signature: String,
}

/// What native verification established about an image's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Nothing to prove: a plain file-system image, or a disk image without verity. Its
    /// file system is read as it is.
    Unprotected {
        /// The partition a policy judges.
        designator: Designator,
    },
    /// A disk image this build cannot check; the text says why. It is read as it is
    /// (where device-mapper exists, systemd checks it), and no policy beyond
    /// `permissive` admits it.
    Unchecked(&'static str),
    /// The data partition hashes to the root hash its partition UUIDs carry, and to the
    /// signed root hash when there is a signature, so its bytes are the verified ones.
    Verity {
        /// The partition a policy judges.
        designator: Designator,
        /// The signature, not yet checked against any certificate.
        signature: Option<SignedRootHash>,
    },
}

impl Proof {
    /// Whether the data partition was proven, so that its file system may be read without
    /// dm-verity.
    pub fn is_verity(&self) -> bool {
        matches!(self, Self::Verity { .. })
    }

    /// The partition a policy judges.
    pub fn designator(&self) -> Designator {
        match self {
            Self::Unprotected { designator } | Self::Verity { designator, .. } => *designator,
            Self::Unchecked(_) => Designator::Root,
        }
    }

    /// How the image is protected, given the certificates in `trust`: a signature must
    /// verify and come from one of them.
    pub fn protection(&self, trust: &TrustStore) -> Result<super::Protection, TrustError> {
        match self {
            Self::Unprotected { .. } => Ok(super::Protection::Unprotected),
            Self::Unchecked(why) => Err(TrustError::Malformed(why)),
            Self::Verity { signature: None, .. } => Ok(super::Protection::Verity),
            Self::Verity { signature: Some(signed), .. } => {
                let subject = signature::verify(&signed.root_hash, &signed.signature, trust)?;
                Ok(super::Protection::Signed { subject })
            }
        }
    }
}

/// Proves `image`'s verity data, reading (and hashing) the whole data partition when
/// there is verity. An image whose verity does not hold is an error: nothing may read
/// its file system.
pub fn prove(image: &Path) -> Result<Proof, TrustError> {
    let mut file = File::open(image)?;
    let partitions = match gpt::partitions(&mut file) {
        Ok(partitions) => partitions,
        Err(gpt::GptError::Absent) => return Ok(Proof::Unprotected { designator: Designator::Root }),
        Err(gpt::GptError::Malformed(why)) => return Err(TrustError::Malformed(why)),
        Err(gpt::GptError::Io(e)) => return Err(e.into()),
    };
    if std::env::consts::ARCH != "x86_64" {
        return Ok(Proof::Unchecked("verity checks of disk images are supported on x86-64 only so far"));
    }
    let of_type = |guid: &'static str| partitions.iter().filter(move |p| p.type_guid == guid);
    let data: Vec<(&Types, &gpt::Partition)> =
        X86_64.iter().flat_map(|types| of_type(types.data).map(move |p| (types, p))).collect();
    let Some(&(types, partition)) = data.first() else {
        return Ok(Proof::Unchecked("the disk image has no root or usr partition for this architecture"));
    };
    let has_verity = X86_64.iter().any(|types| of_type(types.verity).next().is_some());
    if !has_verity {
        return Ok(Proof::Unprotected { designator: types.designator });
    }
    // systemd mounts every partition it recognises (another architecture's among them)
    // and would read the release file through them; only the proven one may be there.
    if data.len() > 1 {
        return Err(TrustError::Malformed("the disk image has more than one root or usr partition"));
    }
    let Some(verity) = of_type(types.verity).next() else {
        return Err(TrustError::Malformed("the disk image's verity partition is not for its data partition"));
    };
    let ours = [types.data, types.verity, types.signature];
    if partitions.iter().any(|p| !ours.contains(&p.type_guid.as_str())) {
        return Err(TrustError::Malformed(
            "the disk image has partitions besides its data partition and that partition's verity and signature",
        ));
    }

    let superblock = hashtree::superblock(&mut file, verity)?;
    let computed = hex(&hashtree::root_hash(&mut file, partition, &superblock)?);
    let signature = match of_type(types.signature).next() {
        Some(partition) => Some(read_signature(&mut file, partition)?),
        None => None,
    };
    if let Some(signed) = &signature
        && !signed.root_hash.eq_ignore_ascii_case(&computed)
    {
        return Err(TrustError::RootHashMismatch("the data does not hash to its signed root hash".into()));
    }
    let bound = format!("{}{}", partition.uuid.replace('-', ""), verity.uuid.replace('-', ""));
    if bound != computed {
        return Err(TrustError::RootHashMismatch(
            "the data does not hash to the root hash its partition UUIDs carry".into(),
        ));
    }
    Ok(Proof::Verity { designator: types.designator, signature })
}

fn read_signature(file: &mut File, partition: &gpt::Partition) -> Result<SignedRootHash, TrustError> {
    let length = partition.length.min(MAX_SIGNATURE);
    let mut raw = vec![0u8; usize::try_from(length).map_err(|_| TrustError::Malformed("signature partition"))?];
    file.seek(SeekFrom::Start(partition.offset))?;
    file.read_exact(&mut raw)?;
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let json: serde_json::Value = serde_json::from_slice(&raw[..end])
        .map_err(|_| TrustError::Malformed("the signature partition is not JSON"))?;
    let root = json["rootHash"].as_str().ok_or(TrustError::Malformed("the signature has no rootHash"))?;
    let signature = json["signature"].as_str().ok_or(TrustError::Malformed("the signature has no signature"))?;
    Ok(SignedRootHash { root_hash: root.to_owned(), signature: signature.to_owned() })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const ROOT: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
    const ROOT_VERITY: &str = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5";
    const USR: &str = "8484680c-9521-48c6-9c11-b0720656f69e";
    const HOME: &str = "933ac7e1-2eb4-4f13-b844-0e14e2aef915";
    const GENERIC: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";

    /// The on-disk (mixed-endian) bytes of a GUID string; the inverse of [`gpt::guid`].
    fn guid_bytes(text: &str) -> [u8; 16] {
        let hex: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&text.replace('-', "")[i * 2..i * 2 + 2], 16).expect("hex"))
            .take(16)
            .collect();
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&[hex[3], hex[2], hex[1], hex[0]]);
        out[4..6].copy_from_slice(&[hex[5], hex[4]]);
        out[6..8].copy_from_slice(&[hex[7], hex[6]]);
        out[8..].copy_from_slice(&hex[8..]);
        out
    }

    /// A GPT image of 4096 sectors (blkid looks for no table on less than 1.44 MiB)
    /// whose partitions are `(type, first sector, last sector)`; `fill` then writes into
    /// the image.
    fn image(parts: &[(&str, u64, u64)], fill: impl FnOnce(&mut [u8])) -> tempfile::NamedTempFile {
        let mut bytes = vec![0u8; 4096 * 512];
        let mut entries = vec![0u8; 4 * 128];
        for (i, (kind, first, last)) in parts.iter().enumerate() {
            let entry = &mut entries[i * 128..(i + 1) * 128];
            entry[..16].copy_from_slice(&guid_bytes(kind));
            entry[16] = u8::try_from(i + 1).expect("few partitions");
            entry[32..40].copy_from_slice(&first.to_le_bytes());
            entry[40..48].copy_from_slice(&last.to_le_bytes());
        }
        gpt::seal(&mut bytes, 512, &entries, &entries);
        fill(&mut bytes);
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(&bytes).expect("write image");
        file
    }

    /// A verity superblock at sector `at` claiming `blocks` data blocks of 512 bytes.
    fn superblock(at: usize, blocks: u64) -> impl FnOnce(&mut [u8]) {
        move |bytes: &mut [u8]| {
            let sb = &mut bytes[at * 512..(at + 1) * 512];
            sb[..8].copy_from_slice(b"verity\0\0");
            sb[8..12].copy_from_slice(&1u32.to_le_bytes());
            sb[12..16].copy_from_slice(&1u32.to_le_bytes());
            sb[32..38].copy_from_slice(b"sha256");
            sb[64..68].copy_from_slice(&512u32.to_le_bytes());
            sb[68..72].copy_from_slice(&512u32.to_le_bytes());
            sb[72..80].copy_from_slice(&blocks.to_le_bytes());
        }
    }

    /// Off x86-64 no disk image is checked, so every test here asserts that instead.
    fn fails_closed_elsewhere() -> bool {
        if std::env::consts::ARCH == "x86_64" {
            return false;
        }
        let proof = prove_image(&[(ROOT, 34, 41), (ROOT_VERITY, 42, 49)], superblock(42, 8));
        assert!(matches!(proof, Ok(Proof::Unchecked(_))), "{proof:?}");
        true
    }

    fn prove_image(parts: &[(&str, u64, u64)], fill: impl FnOnce(&mut [u8])) -> Result<Proof, TrustError> {
        prove(image(parts, fill).path())
    }

    #[test]
    fn images_without_verity_are_read_as_they_are() {
        if fails_closed_elsewhere() {
            return;
        }
        let mut plain = tempfile::NamedTempFile::new().expect("temp");
        plain.write_all(&[0u8; 8192]).expect("write");
        assert_eq!(prove(plain.path()).ok(), Some(Proof::Unprotected { designator: Designator::Root }));
        let root = prove_image(&[(ROOT, 34, 41)], |_| {});
        assert_eq!(root.ok(), Some(Proof::Unprotected { designator: Designator::Root }));
        let usr = prove_image(&[(USR, 34, 41), (HOME, 42, 49)], |_| {});
        assert_eq!(usr.ok(), Some(Proof::Unprotected { designator: Designator::Usr }));
        let generic = prove_image(&[(GENERIC, 34, 41)], |_| {});
        assert!(matches!(generic, Ok(Proof::Unchecked(_))), "{generic:?}");
        let protection = generic.map(|p| p.protection(&TrustStore::load(&[]).expect("no certificates")));
        assert!(matches!(protection, Ok(Err(TrustError::Malformed(_)))), "no policy can admit what was not checked");
    }

    #[test]
    fn only_the_proven_partitions_may_be_there() {
        if fails_closed_elsewhere() {
            return;
        }
        let extra = prove_image(&[(ROOT, 34, 41), (ROOT_VERITY, 42, 49), (HOME, 50, 57)], superblock(42, 8));
        assert!(matches!(&extra, Err(TrustError::Malformed(why)) if why.contains("partitions besides")), "{extra:?}");
        let two = prove_image(&[(ROOT, 34, 41), (USR, 42, 49), (ROOT_VERITY, 50, 57)], superblock(50, 8));
        assert!(matches!(&two, Err(TrustError::Malformed(why)) if why.contains("more than one")), "{two:?}");
        let twice = prove_image(&[(ROOT, 34, 41), (ROOT, 42, 49), (ROOT_VERITY, 50, 57)], superblock(50, 8));
        assert!(matches!(&twice, Err(TrustError::Malformed(why)) if why.contains("more than one")), "{twice:?}");
        let foreign = prove_image(&[(USR, 34, 41), (ROOT_VERITY, 42, 49)], superblock(42, 8));
        assert!(matches!(&foreign, Err(TrustError::Malformed(why)) if why.contains("not for its data")), "{foreign:?}");
    }

    #[test]
    fn the_hash_tree_must_cover_the_whole_data_partition_and_match() {
        if fails_closed_elsewhere() {
            return;
        }
        let short = prove_image(&[(ROOT, 34, 41), (ROOT_VERITY, 42, 49)], superblock(42, 4));
        assert!(matches!(&short, Err(TrustError::Malformed(why)) if why.contains("cover")), "{short:?}");
        // The tree covers everything, but the partition UUIDs do not carry its root hash.
        let unbound = prove_image(&[(ROOT, 34, 41), (ROOT_VERITY, 42, 49)], superblock(42, 8));
        assert!(matches!(&unbound, Err(TrustError::RootHashMismatch(why)) if why.contains("UUIDs")), "{unbound:?}");
    }
}
