//! Image trust with signed verity images built by systemd-repart and throwaway
//! certificates (TESTING.md). Merging verity images cannot be tested here: the kernel has
//! no device-mapper, and systemd-dissect cannot even read their release files, so these
//! tests verify images and decide policy, and never merge them.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::privileged;
use kairos_extensionsd::engine::policy::ImagePolicy;
use kairos_extensionsd::engine::trust::{self, Protection, TrustError, TrustStore};

struct Signing {
    dir: tempfile::TempDir,
}

impl Signing {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("kx-verity-").tempdir().expect("scratch");
        for who in ["trusted", "stranger"] {
            let out = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "3650",
                    "-subj",
                    &format!("/CN={who}"),
                ])
                .arg("-keyout")
                .arg(dir.path().join(format!("{who}.key")))
                .arg("-out")
                .arg(dir.path().join(format!("{who}.crt")))
                .output()
                .expect("openssl runs (Debian package openssl)");
            assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
        }
        Self { dir }
    }

    /// A trust directory holding only `who`'s certificate.
    fn trust_dir(&self, who: &str) -> PathBuf {
        let dir = self.dir.path().join(format!("verity.d-{who}"));
        fs::create_dir_all(&dir).expect("trust dir");
        fs::copy(self.dir.path().join(format!("{who}.crt")), dir.join(format!("{who}.crt"))).expect("cert");
        dir
    }

    /// A DDI made by systemd-repart: root (squashfs) + root-verity, plus a signature by
    /// `signer` when given.
    fn image(&self, name: &str, signer: Option<&str>) -> PathBuf {
        let tree = self.dir.path().join(format!("tree-{name}"));
        fs::create_dir_all(tree.join("usr/lib/extension-release.d")).expect("tree");
        fs::write(tree.join(format!("usr/lib/extension-release.d/extension-release.{name}")), "ID=_any\n")
            .expect("release");
        fs::create_dir_all(tree.join("usr/share")).expect("share");
        fs::write(tree.join("usr/share/payload"), vec![7u8; 300_000]).expect("payload");
        let defs = self.dir.path().join(format!("defs-{name}"));
        fs::create_dir_all(&defs).expect("defs");
        fs::write(defs.join("10-root.conf"), "[Partition]\nType=root\nFormat=squashfs\nCopyFiles=/usr:/usr\nVerity=data\nVerityMatchKey=root\nMinimize=best\n").expect("def");
        fs::write(
            defs.join("20-verity.conf"),
            "[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\nMinimize=best\n",
        )
        .expect("def");
        let out_path = self.dir.path().join(format!("{name}.raw"));
        let mut command = Command::new("systemd-repart");
        command
            .args(["--empty=create", "--size=auto", "--dry-run=no"])
            .arg(format!("--definitions={}", defs.display()));
        command.arg(format!("--root={}", tree.display()));
        if let Some(signer) = signer {
            fs::write(
                defs.join("30-sig.conf"),
                "[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n",
            )
            .expect("def");
            command.arg(format!("--private-key={}", self.dir.path().join(format!("{signer}.key")).display()));
            command.arg(format!("--certificate={}", self.dir.path().join(format!("{signer}.crt")).display()));
        }
        let out = command.arg(&out_path).output().expect("systemd-repart runs (Debian package systemd)");
        assert!(out.status.success(), "systemd-repart: {}", String::from_utf8_lossy(&out.stderr));
        out_path
    }
}

fn inspect(image: &Path, trust_dir: &Path) -> Result<Protection, TrustError> {
    let store = TrustStore::load(&[trust_dir.to_path_buf()]).expect("trust store");
    trust::inspect(image, &store)
}

/// Rewrites bytes of the partition of type `type_guid` in place.
fn patch_partition(image: &Path, type_guid: &str, patch: impl FnOnce(&mut Vec<u8>)) {
    let mut file = fs::File::options().read(true).write(true).open(image).expect("open image");
    let parts = trust::gpt::partitions(&mut file).expect("a GPT");
    let part = parts.iter().find(|p| p.type_guid == type_guid).expect("the partition");
    let mut bytes = vec![0u8; usize::try_from(part.length).expect("fits")];
    file.seek(SeekFrom::Start(part.offset)).expect("seek");
    file.read_exact(&mut bytes).expect("read");
    patch(&mut bytes);
    file.seek(SeekFrom::Start(part.offset)).expect("seek");
    file.write_all(&bytes).expect("write");
}

const ROOT: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
const SIGNATURE: &str = "41092b05-9fc8-4523-994f-2def0408b176";

#[test]
fn a_trusted_signature_is_signed_and_strict_admits_it() {
    if !privileged("a_trusted_signature_is_signed_and_strict_admits_it") || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let signing = Signing::new();
    let image = signing.image("good", Some("trusted"));
    let trusted = signing.trust_dir("trusted");
    let verdict = inspect(&image, &trusted).expect("verifies");
    assert_eq!(verdict, Protection::Signed { subject: "CN=trusted".into() });
    assert!(trust::admit(&ImagePolicy::Strict, &image, &[trusted]).is_ok());
}

#[test]
fn tampering_is_refused_with_distinct_reasons() {
    if !privileged("tampering_is_refused_with_distinct_reasons") || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let signing = Signing::new();
    let trusted = signing.trust_dir("trusted");

    let image = signing.image("stranger", Some("stranger"));
    assert!(matches!(inspect(&image, &trusted), Err(TrustError::UnknownCertificate)), "unknown certificate");

    let image = signing.image("badsig", Some("trusted"));
    // The signature value is at the end of the DER; a byte changed in the embedded
    // certificate would not matter, since signers come from verity.d only.
    patch_partition(&image, SIGNATURE, |bytes| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let field = text.find("\"signature\":\"").expect("signature field") + 13;
        let end = field + text[field..].find('"').expect("end of the signature field");
        let at = end - 40;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    });
    assert!(matches!(inspect(&image, &trusted), Err(TrustError::BadSignature(_))), "tampered signature");

    let image = signing.image("badroot", Some("trusted"));
    patch_partition(&image, SIGNATURE, |bytes| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let at = text.find("\"rootHash\":\"").expect("rootHash field") + 12;
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    });
    assert!(matches!(inspect(&image, &trusted), Err(TrustError::RootHashMismatch(_))), "tampered root hash");

    let image = signing.image("baddata", Some("trusted"));
    patch_partition(&image, ROOT, |bytes| bytes[4096] ^= 0xff);
    assert!(matches!(inspect(&image, &trusted), Err(TrustError::RootHashMismatch(_))), "tampered data");

    for (image, expected) in [("stranger", "not in any verity.d"), ("badroot", "root hash mismatch")] {
        let path = signing.dir.path().join(format!("{image}.raw"));
        let refused = trust::admit(&ImagePolicy::Strict, &path, std::slice::from_ref(&trusted));
        assert!(refused.as_ref().is_err_and(|e| e.contains(expected)), "{image}: {refused:?}");
    }
}

#[test]
fn unsigned_images_follow_the_policy() {
    if !privileged("unsigned_images_follow_the_policy") || std::env::consts::ARCH != "x86_64" {
        return;
    }
    let signing = Signing::new();
    let trusted = signing.trust_dir("trusted");
    let plain = ImageBuilder::new("plain").build(signing.dir.path(), "plain.raw");
    assert_eq!(inspect(&plain, &trusted).expect("plain"), Protection::Unprotected);
    assert!(
        trust::admit(&ImagePolicy::Strict, &plain, std::slice::from_ref(&trusted))
            .is_err_and(|e| e.contains("unprotected"))
    );
    assert!(trust::admit(&ImagePolicy::Permissive, &plain, std::slice::from_ref(&trusted)).is_ok());

    let verity = signing.image("verityonly", None);
    assert_eq!(inspect(&verity, &trusted).expect("verity"), Protection::Verity);
    // verity admits verity, signed or not; strict admits signed images only.
    assert!(trust::admit(&ImagePolicy::Verity, &verity, std::slice::from_ref(&trusted)).is_ok());
    assert!(
        trust::admit(&ImagePolicy::Verity, &plain, std::slice::from_ref(&trusted))
            .is_err_and(|e| e.contains("unprotected"))
    );
    let refused = trust::admit(&ImagePolicy::Strict, &verity, &[trusted]);
    assert!(refused.as_ref().is_err_and(|e| e.contains("verity without a signature")), "{refused:?}");
}
