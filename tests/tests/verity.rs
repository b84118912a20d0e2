//! Image trust with signed verity images built by systemd-repart and throwaway
//! certificates (TESTING.md): native verification, the named policies, and installs of
//! verity images offline and through the service.
//!
//! This machine has no device-mapper, which is the point: systemd-dissect cannot open a
//! verity image here, so an install must read the release file from the data partition
//! that native verification has just proven. For the same reason these images cannot be
//! merged here (systemd-sysext needs dm-verity for them): these tests install, list,
//! inspect and refuse verity images, and never merge one.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::system::Rig;
use kairos_extensions_tests::{bins, privileged, stderr, stdout};
use kairos_extensionsd::engine::policy::ImagePolicy;
use kairos_extensionsd::engine::trust::{self, Proof, Protection, ReadError, TrustError, TrustStore};
use serde_json::Value;

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
    /// `signer` when given. Its extension is called `name`, version 1.0.
    fn image(&self, name: &str, signer: Option<&str>) -> PathBuf {
        let tree = self.dir.path().join(format!("tree-{name}"));
        fs::create_dir_all(tree.join("usr/lib/extension-release.d")).expect("tree");
        fs::write(
            tree.join(format!("usr/lib/extension-release.d/extension-release.{name}")),
            "ID=_any\nSYSEXT_VERSION_ID=1.0\n",
        )
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

    /// A signed image with one byte of its file system changed.
    fn tampered(&self, name: &str) -> PathBuf {
        let image = self.image(name, Some("trusted"));
        patch_partition(&image, ROOT, |bytes| bytes[4096] ^= 0xff);
        image
    }

    /// A plain squashfs extension.
    fn plain(&self, name: &str) -> PathBuf {
        ImageBuilder::new(name).build(self.dir.path(), &format!("{name}.raw"))
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

/// Whether `test` can run: privileged, and on x86-64, the one architecture whose
/// partition types the native checks know so far.
fn x86_64(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIPPED: {test} builds x86-64 verity images; this is {}", std::env::consts::ARCH);
        return false;
    }
    true
}

#[test]
fn a_trusted_signature_is_signed_and_its_release_is_read_without_device_mapper() {
    if !x86_64("a_trusted_signature_is_signed_and_its_release_is_read_without_device_mapper") {
        return;
    }
    let signing = Signing::new();
    let image = signing.image("good", Some("trusted"));
    let trusted = signing.trust_dir("trusted");
    let verdict = inspect(&image, &trusted).expect("verifies");
    assert_eq!(verdict, Protection::Signed { subject: "CN=trusted".into() });

    // systemd-dissect alone cannot open it here: that is what the native proof is for.
    let (releases, proof) = trust::read_releases(&image).expect("the release is read from the proven partition");
    assert!(proof.is_verity(), "{proof:?}");
    let (name, release) = releases.pick(None, None).expect("one release");
    assert_eq!((name.as_str(), release.get("SYSEXT_VERSION_ID").map(String::as_str)), ("good", Some("1.0")));
    assert!(trust::admit_proven(&ImagePolicy::Strict, &proof, &image, std::slice::from_ref(&trusted)).is_ok());
    assert!(trust::admit(&ImagePolicy::Strict, &image, &[trusted]).is_ok());

    // A plain image still goes through systemd-dissect as it is.
    let (releases, proof) = trust::read_releases(&signing.plain("plain")).expect("plain image");
    assert!(matches!(proof, Proof::Unprotected { .. }), "{proof:?}");
    assert_eq!(releases.pick(None, None).map(|(n, _)| n.to_string()).ok().as_deref(), Some("plain"));
}

#[test]
fn tampering_is_refused_with_distinct_reasons() {
    if !x86_64("tampering_is_refused_with_distinct_reasons") {
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

    let image = signing.tampered("baddata");
    let refused = inspect(&image, &trusted);
    assert!(
        matches!(&refused, Err(TrustError::RootHashMismatch(why)) if why.contains("signed root hash")),
        "tampered data: {refused:?}"
    );
    // Nothing reads the file system of an image whose verity does not hold.
    assert!(matches!(trust::read_releases(&image), Err(ReadError::Verity(TrustError::RootHashMismatch(_)))));

    for (image, expected) in [
        ("stranger", "signed by a certificate that is not in any verity.d directory"),
        ("badsig", "the root hash signature does not verify"),
        ("badroot", "signed root hash"),
    ] {
        let path = signing.dir.path().join(format!("{image}.raw"));
        let refused = trust::admit(&ImagePolicy::Strict, &path, std::slice::from_ref(&trusted));
        assert!(refused.as_ref().is_err_and(|e| e.contains(expected)), "{image}: {refused:?}");
    }
}

#[test]
fn each_named_policy_admits_what_its_name_says() {
    if !x86_64("each_named_policy_admits_what_its_name_says") {
        return;
    }
    let signing = Signing::new();
    let trusted = signing.trust_dir("trusted");
    let plain = signing.plain("plain");
    let verity = signing.image("verityonly", None);
    let signed = signing.image("signed", Some("trusted"));
    let stranger = signing.image("stranger", Some("stranger"));
    assert_eq!(inspect(&plain, &trusted).expect("plain"), Protection::Unprotected);
    assert_eq!(inspect(&verity, &trusted).expect("verity"), Protection::Verity);

    let admit = |policy: &ImagePolicy, image: &Path| trust::admit(policy, image, std::slice::from_ref(&trusted));
    let strict = ImagePolicy::Strict;
    assert!(admit(&strict, &signed).is_ok());
    let refused = admit(&strict, &verity);
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("root=signed+absent") && e.contains("verity without a signature")),
        "{refused:?}"
    );
    let refused = admit(&strict, &plain);
    assert!(refused.as_ref().is_err_and(|e| e.contains("unprotected")), "{refused:?}");
    assert!(admit(&strict, &stranger).is_err_and(|e| e.contains("not in any verity.d")));

    let verity_policy = ImagePolicy::Verity;
    assert!(admit(&verity_policy, &verity).is_ok() && admit(&verity_policy, &signed).is_ok());
    let refused = admit(&verity_policy, &plain);
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("root=verity+signed+absent") && e.contains("unprotected")),
        "{refused:?}"
    );
    // A signature is judged whenever one is there, under verity as under strict.
    assert!(admit(&verity_policy, &stranger).is_err_and(|e| e.contains("not in any verity.d")));

    // permissive admits every image whose verity holds, and does not judge the signer:
    // the kernel may trust keys no verity.d directory holds.
    for image in [&plain, &verity, &signed, &stranger] {
        let (_, proof) = trust::read_releases(image).expect("readable");
        assert!(trust::admit_proven(&ImagePolicy::Permissive, &proof, image, &[]).is_ok(), "{}", image.display());
    }
}

/// Runs `kairos-ext --root ROOT --config CONFIG args...` on the host.
fn offline(root: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(bins::kairos_ext())
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("kairos-ext runs")
}

/// An image root for offline installs: an os-release, `config` as its configuration and
/// the trusted certificate in its `/etc/verity.d`.
fn image_root(signing: &Signing, policy: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::Builder::new().prefix("kx-verity-root-").tempdir().expect("root");
    fs::create_dir_all(root.path().join("etc/verity.d")).expect("etc");
    fs::copy("/etc/os-release", root.path().join("etc/os-release")).expect("os-release");
    fs::copy(signing.dir.path().join("trusted.crt"), root.path().join("etc/verity.d/trusted.crt")).expect("cert");
    let config = root.path().join("etc/extensions.toml");
    fs::write(&config, format!("image_policy = \"{policy}\"\n")).expect("config");
    (root, config)
}

fn store_files(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join("var/lib/kairos/extensions"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".raw"))
        .collect();
    names.sort();
    names
}

#[test]
fn strict_installs_a_trusted_signed_image_offline_and_refuses_the_rest() {
    if !x86_64("strict_installs_a_trusted_signed_image_offline_and_refuses_the_rest") {
        return;
    }
    let signing = Signing::new();
    let (root, config) = image_root(&signing, "strict");

    let good = signing.image("good", Some("trusted"));
    let out = offline(root.path(), &config, &["install", good.to_str().expect("utf-8"), "--enable", "common"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = offline(root.path(), &config, &["list", "--json"]);
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((listed[0]["name"].as_str(), listed[0]["version"].as_str()), (Some("good"), Some("1.0")));
    assert_eq!(listed[0]["enabled"], serde_json::json!(["common"]));
    let out = offline(root.path(), &config, &["inspect", "good", "--json"]);
    let described: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(described["protection"], "signed by CN=trusted");

    let refusals = [
        (signing.tampered("tampered"), "signed root hash"),
        (signing.image("stranger", Some("stranger")), "signed by a certificate that is not in any verity.d directory"),
        (
            signing.image("unsigned", None),
            "needs root=signed+absent but the image's root is verity without a signature",
        ),
        (signing.plain("plain"), "the image's root is unprotected"),
    ];
    for (image, reason) in &refusals {
        let out = offline(root.path(), &config, &["install", image.to_str().expect("utf-8")]);
        assert!(!out.status.success(), "{} must be refused", image.display());
        assert!(stderr(&out).contains(reason), "{}: {}", image.display(), stderr(&out));
    }
    assert_eq!(store_files(root.path()), ["good.raw"], "a refused image never reaches the store");
    let staging = fs::read_dir(root.path().join("var/lib/kairos/extensions/.tmp")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(staging, 0, "nor stays in staging");
}

#[test]
fn verity_and_permissive_policies_install_offline_what_they_admit() {
    if !x86_64("verity_and_permissive_policies_install_offline_what_they_admit") {
        return;
    }
    let signing = Signing::new();
    let unsigned = signing.image("unsigned", None);
    let plain = signing.plain("plain");
    let stranger = signing.image("stranger", Some("stranger"));

    let (root, config) = image_root(&signing, "verity");
    let out = offline(root.path(), &config, &["install", unsigned.to_str().expect("utf-8")]);
    assert!(out.status.success(), "verity admits unsigned verity: {}", stderr(&out));
    let out = offline(root.path(), &config, &["install", plain.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "verity refuses a plain squashfs");
    assert!(stderr(&out).contains("needs root=verity+signed+absent"), "{}", stderr(&out));
    assert_eq!(store_files(root.path()), ["unsigned.raw"]);

    let (root, config) = image_root(&signing, "permissive");
    for image in [&unsigned, &plain, &stranger] {
        let out = offline(root.path(), &config, &["install", image.to_str().expect("utf-8")]);
        assert!(out.status.success(), "permissive admits {}: {}", image.display(), stderr(&out));
    }
    // Even permissive never reads an image whose verity does not hold.
    let out = offline(root.path(), &config, &["install", signing.tampered("tampered").to_str().expect("utf-8")]);
    assert!(!out.status.success(), "a tampered image is refused under permissive too");
    assert!(stderr(&out).contains("the image's verity data does not verify"), "{}", stderr(&out));
    assert_eq!(store_files(root.path()), ["plain.raw", "stranger.raw", "unsigned.raw"]);
}

#[test]
fn a_verity_image_copied_into_the_store_is_listed() {
    if !x86_64("a_verity_image_copied_into_the_store_is_listed") {
        return;
    }
    let signing = Signing::new();
    let (root, config) = image_root(&signing, "strict");
    let store = root.path().join("var/lib/kairos/extensions");
    fs::create_dir_all(&store).expect("store");
    // What kairos-agent does: a file in the store and no provenance record.
    fs::copy(signing.image("good", Some("trusted")), store.join("good.sysext.raw")).expect("copy");
    fs::copy(signing.tampered("tampered"), store.join("tampered.raw")).expect("copy");
    let out = offline(root.path(), &config, &["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let good = listed.iter().find(|e| e["file"] == "good.sysext.raw").expect("listed");
    assert_eq!((good["name"].as_str(), good["version"].as_str()), (Some("good"), Some("1.0")), "{good}");
    assert_eq!(good["compatible"], true, "{good}");
    let tampered = listed.iter().find(|e| e["file"] == "tampered.raw").expect("listed");
    assert_eq!(tampered["compatible"], false);
    let reason = tampered["incompatible_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("verity data does not verify"), "{tampered}");
}

#[test]
fn the_service_installs_a_trusted_signed_image_under_strict_and_refuses_a_stranger() {
    if !x86_64("the_service_installs_a_trusted_signed_image_under_strict_and_refuses_a_stranger") {
        return;
    }
    let signing = Signing::new();
    let trusted = signing.trust_dir("trusted");
    let config = format!("idle_exit_sec = 0\nimage_policy = \"strict\"\ntrusted_certificates = [{:?}]\n", trusted);
    let rig = Rig::start(&[], &config);
    let good = signing.image("good", Some("trusted"));
    let out = rig.kairos_ext(&["install", good.to_str().expect("utf-8"), "--enable", "common"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = rig.kairos_ext(&["inspect", "good"]);
    assert!(stdout(&out).contains("signed by CN=trusted"), "{}", stdout(&out));

    let before = rig.store_snapshot();
    for (image, reason) in [
        (signing.image("stranger", Some("stranger")), "signed by a certificate that is not in any verity.d directory"),
        (signing.tampered("tampered"), "signed root hash"),
        (signing.image("unsigned", None), "verity without a signature"),
    ] {
        let out = rig.kairos_ext(&["install", image.to_str().expect("utf-8")]);
        assert!(!out.status.success(), "{} must be refused", image.display());
        let refused = format!("kairos-ext: cannot install {}: ", image.display());
        assert!(stderr(&out).contains(&refused) && stderr(&out).contains(reason), "{}", stderr(&out));
    }
    assert_eq!(rig.store_snapshot(), before, "refusals change nothing");
}

/// On systemd 252 without device-mapper a verity image cannot be mounted, and a refresh
/// that fails leaves the merge that was in place (and exits 0): replacing a merged plain
/// image with one must not be reported as merged while the old image is what runs.
#[test]
fn a_replacement_that_cannot_merge_is_not_reported_merged_and_is_undone() {
    if !x86_64("a_replacement_that_cannot_merge_is_not_reported_merged_and_is_undone") {
        return;
    }
    let signing = Signing::new();
    let rig = Rig::start(&[], "idle_exit_sec = 0\n");
    let scratch = tempfile::tempdir().expect("scratch");
    let plain = ImageBuilder::new("good").build(scratch.path(), "good.raw");
    let out = rig.kairos_ext(&["install", plain.to_str().expect("utf-8"), "--enable", "common", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.ns.merged(), ["good"]);
    let before = rig.store_snapshot();

    let verity = signing.image("good", Some("trusted"));
    let out = rig.kairos_ext(&["install", verity.to_str().expect("utf-8"), "--replace", "--enable", "common", "--now"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    // Only the verity image has /usr/share/payload. Where device-mapper works it may
    // really merge; here (TESTING.md: no device-mapper) it cannot. Either way, success
    // must mean it runs.
    let runs_new = rig.ns.run("test", &["-e", "/usr/share/payload"]).status.success();
    assert_eq!(out.status.success(), runs_new, "reported as it is: {said}");
    if !runs_new {
        assert!(said.contains("did not merge"), "{said}");
        assert_eq!(rig.store_snapshot(), before, "the replacement is undone");
        assert_eq!(rig.ns.merged(), ["good"], "the plain image stays merged");
    }
}
