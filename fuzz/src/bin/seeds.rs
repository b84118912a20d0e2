//! Writes the seed corpus: `cargo run --bin seeds -- fuzz/corpus` (from the repository,
//! or `make fuzz-seeds`). Each seed is a valid-looking input, built here by hand, for
//! libFuzzer to mutate: hand-written text for the text parsers, and for the binary ones
//! real structures (a GPT image with a verity hash tree that holds and a signature by
//! `testdata/signer.key`, tar layers as registries serve them). Seed files are named by
//! what they are, so rewriting the corpus gives the same files.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use kairos_extensionsd::engine::trust::gpt::{self, Partition};
use kairos_extensionsd::engine::trust::hashtree;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::PKey;
use openssl::stack::Stack;
use openssl::x509::X509;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

type Seeds = Vec<(String, Vec<u8>)>;

fn texts(items: &[(&str, &str)]) -> Seeds {
    items.iter().map(|(name, text)| (name.to_string(), text.as_bytes().to_vec())).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: seeds CORPUS_DIR")?);
    let all: Vec<(&str, Seeds)> = vec![
        ("name", name()),
        ("source", source()),
        ("reference", reference()),
        ("release", release()),
        ("policy", policy()),
        ("config", config()?),
        ("gpt", gpt()?),
        ("signature", signature()?),
        ("layer", layer()?),
        ("layer_entry", layer_entry()),
        ("meta", meta()),
        ("intent", intent()),
    ];
    for (target, seeds) in all {
        let dir = out.join(target);
        fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
    }
    Ok(())
}

fn name() -> Seeds {
    let longest = format!("a{}", "b".repeat(127));
    texts(&[
        ("plain", "k3s"),
        ("versioned", "K3s-1.30+k3s1"),
        ("punctuation", "a.b_c+d-e"),
        ("longest", &longest),
        ("hidden", ".hidden"),
        ("slash", "a/b"),
        ("unicode", "é"),
        ("dotdot", ".."),
    ])
}

fn source() -> Seeds {
    let mut seeds = texts(&[
        ("file-url", "\0file:///tmp/k3s.raw"),
        ("file-escaped", "\0file:///tmp/a%20b.raw"),
        ("path", "\0/var/tmp/k3s.raw"),
        ("https-pinned", &format!("\0https://example.com/k3s.raw#sha256={HEX}")),
        ("https-query", "\0https://user:pw@example.com/k3s.raw?X-Amz-Signature=abc&token=t"),
        ("http-port", "\0http://127.0.0.1:8080/a/b.raw"),
        ("oci-tag", "\0oci://registry.example.com/kairos/k3s:v1.30"),
        ("docker-digest", &format!("\0docker://127.0.0.1:5000/x@sha256:{HEX}")),
        ("container-short", "\0container://alpine"),
        ("oci-credentials", "\0oci://user:pw@registry.example.com/k3s:v1"),
    ]);
    // Odd mode bytes: user, host and path around a planted password and token.
    for (mode, scheme) in [(1u8, "https"), (3, "http"), (5, "oci"), (13, "file")] {
        let mut bytes = vec![mode];
        bytes.extend_from_slice(b"kx\x01registry.example.com:5000\x01k3s.raw");
        seeds.push((format!("credentials-{scheme}"), bytes));
    }
    seeds
}

fn reference() -> Seeds {
    texts(&[
        ("short", "alpine"),
        ("hub-user", "kairos/k3s"),
        ("legacy-hub", "index.docker.io/alpine:3"),
        ("localhost", "localhost/x"),
        ("port-tag", "127.0.0.1:5000/hello:v1"),
        ("tag-digest", &format!("quay.io/kairos/k3s:v1.30@sha256:{HEX}")),
        ("deep-digest", &format!("registry.example.com:443/a/b/c@sha256:{HEX}")),
        ("separators", "a.b-c/x_y__z---w.v"),
        ("bad-digest", "r.io/a@sha256:00"),
    ])
}

fn release() -> Seeds {
    texts(&[
        ("any", "ID=_any\n"),
        ("debian", "ID=debian\nVERSION_ID=\"12\"\nSYSEXT_SCOPE=\"system portable\"\nARCHITECTURE=x86-64\n"),
        ("level", "ID=kairos\nSYSEXT_LEVEL=1.0\n\0ID=kairos\nVERSION_ID=3\nSYSEXT_LEVEL=1.0\n"),
        ("quoted", "# comment\nID=debian\nNAME=\"Debian GNU/Linux\"\nPRETTY='x y'\nESC=\"a\\\"b\"\n\nBROKEN\n=x\n"),
        ("version", "ID=debian\nVERSION_ID=11\nSYSEXT_VERSION_ID=1.30\n\0ID=debian\nVERSION_ID=12\n"),
    ])
}

fn policy() -> Seeds {
    texts(&[
        ("strict", "strict"),
        ("verity", "verity"),
        ("permissive", " permissive "),
        ("strict-spelled", "root=signed+absent:usr=signed+absent"),
        ("default", "root=verity+signed:usr=absent:=unused+absent"),
        ("allow", "*"),
        ("deny", "deny"),
        ("unnamed", "home=absent"),
        ("open", "root=open:usr=unprotected"),
    ])
}

fn config() -> Result<Seeds, Box<dyn std::error::Error>> {
    let example =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/extensions.toml.example"))?;
    let mut seeds = texts(&[
        (
            "every-key",
            "store_dir = \"/srv/ext\"\nruntime_dir = \"/run/ext\"\nimage_policy = \"strict\"\nrefresh = \"exec\"\ninsecure_registries = [\"127.0.0.1:5000\"]\nregistry_auth = \"/etc/containers/auth.json\"\nmax_image_size = \"512M\"\nmax_jobs = 2\nidle_exit_sec = 0\ntrusted_certificates = [\"/etc/kairos/verity.d\"]\n",
        ),
        ("size-number", "max_image_size = 4096\n"),
        ("typo", "stor_dir = \"/x\"\n"),
        ("wrong-type", "max_jobs = \"two\"\n"),
        ("size", "512MiB"),
    ]);
    seeds.push(("example".into(), example.into_bytes()));
    Ok(seeds)
}

fn layer_entry() -> Seeds {
    texts(&[
        ("plain", "k3s.raw"),
        ("dotted", "./k3s.raw"),
        ("root", "./"),
        ("nested", "usr/k3s.raw"),
        ("parent", "../k3s.raw"),
        ("absolute", "/k3s.raw"),
        ("hidden", ".k3s.raw"),
    ])
}

fn meta() -> Seeds {
    let record = serde_json::json!({
        "name": "k3s",
        "file": "k3s.raw",
        "source": "oci://registry.example.com/kairos/k3s:v1.30",
        "resolved_digest": format!("sha256:{HEX}"),
        "digest": format!("sha256:{HEX}"),
        "size": 4096,
        "mtime_ns": 1_700_000_000_000_000_000i128,
        "installed_time_us": 1_700_000_000_000_000u64,
        "release": {"ID": "_any", "SYSEXT_VERSION_ID": "1.30"},
    });
    let pretty = serde_json::to_vec_pretty(&record).unwrap_or_default();
    vec![("record".into(), pretty), ("not-json".into(), b"{not json".to_vec())]
}

fn intent() -> Seeds {
    texts(&[
        (
            "committed",
            "{\"kind\":\"begin\",\"operation\":\"install k3s\",\"pid\":42}\n{\"kind\":\"file\",\"file\":\"k3s.raw\",\"kept\":\"kept-k3s.raw\"}\n{\"kind\":\"record\",\"name\":\"k3s\",\"before\":\"{}\"}\n{\"kind\":\"link\",\"place\":{\"state\":\"active\"},\"name\":\"k3s.raw\",\"before\":\"../k3s.raw\"}\n{\"kind\":\"link\",\"place\":\"runtime\",\"name\":\"k3s.raw\",\"before\":null}\n{\"kind\":\"merge\"}\n{\"kind\":\"committed\"}\n",
        ),
        ("torn", "{\"kind\":\"begin\",\"operation\":\"x\",\"pid\":1}\n{\"kind\":\"merge\"}\n{\"kind\":\"fi"),
        ("damaged", "{\"kind\":\"begin\",\"operation\":\"x\",\"pid\":1}\ngarbage\n{\"kind\":\"merge\"}\n"),
        ("empty", ""),
    ])
}

/// A tar of `(name, type, bytes)` entries, headers written byte by byte so hostile
/// names and types survive.
fn tar(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data)?;
    }
    Ok(builder.into_inner()?)
}

fn layer() -> Result<Seeds, Box<dyn std::error::Error>> {
    use tar::EntryType::{Directory, Regular, Symlink};
    let mut seeds = vec![
        (
            "two-images".to_owned(),
            tar(&[
                (b"./", Directory, b""),
                (b"k3s.raw", Regular, b"first image"),
                (b"./tools.raw", Regular, b"second"),
            ])?,
        ),
        ("symlink".to_owned(), tar(&[(b"x.raw", Symlink, b"")])?),
        ("parent".to_owned(), tar(&[(b"../x.raw", Regular, b"x")])?),
        ("twice".to_owned(), tar(&[(b"x.raw", Regular, b"a"), (b"./x.raw", Regular, b"b")])?),
    ];
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_pax_extensions([("mtime", b"1700000000.5".as_slice())])?;
    let mut header = tar::Header::new_ustar();
    header.set_size(5);
    header.set_mode(0o644);
    builder.append_data(&mut header, "k3s.raw", b"image".as_slice())?;
    let mut gnu = tar::Header::new_gnu();
    gnu.set_size(4);
    gnu.set_mode(0o644);
    builder.append_data(&mut gnu, format!("{}.raw", "k".repeat(150)), b"long".as_slice())?;
    seeds.push(("pax-and-long-name".to_owned(), builder.into_inner()?));
    Ok(seeds)
}

/// The on-disk (mixed-endian) bytes of a GUID given as 32 hex digits.
fn guid_bytes(hex: &str) -> Result<[u8; 16], Box<dyn std::error::Error>> {
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2).ok_or("short GUID")?, 16)?;
    }
    let mut out = b;
    out[..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
    out[4..6].copy_from_slice(&[b[5], b[4]]);
    out[6..8].copy_from_slice(&[b[7], b[6]]);
    Ok(out)
}

const ROOT: &str = "4f68bce3e8cd4db196e7fbcaf984b709";
const ROOT_VERITY: &str = "2c7357edebd246d9aec123d437ec2bf5";
const ROOT_SIGNATURE: &str = "41092b059fc84523994f2def0408b176";

/// A 2 MiB GPT image (512-byte sectors unless `sector` says otherwise) that libblkid
/// reads as one (a protective MBR, primary and backup tables with their CRCs, more than
/// the 1.44 MiB below which it looks for none): a root partition of 8 blocks, its verity
/// partition, and, with `sign`, a signature partition; partition UUIDs carry the root
/// hash, as systemd-repart writes them.
fn verity_image(sector: usize, sign: bool) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let sectors = (2 << 20) / sector;
    let mut bytes = vec![0u8; sectors * sector];
    let (data, hash, sig) = ((34u64, 41u64), (42u64, 49u64), (50u64, 57u64));
    // Data blocks with content, and the verity superblock at the start of its partition.
    for (i, b) in bytes[34 * sector..42 * sector].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let sb = &mut bytes[42 * sector..42 * sector + 512];
    sb[..8].copy_from_slice(b"verity\0\0");
    sb[8..12].copy_from_slice(&1u32.to_le_bytes());
    sb[12..16].copy_from_slice(&1u32.to_le_bytes());
    sb[32..38].copy_from_slice(b"sha256");
    sb[64..68].copy_from_slice(&(sector as u32).to_le_bytes());
    sb[68..72].copy_from_slice(&(sector as u32).to_le_bytes());
    sb[72..80].copy_from_slice(&8u64.to_le_bytes());
    sb[80..82].copy_from_slice(&4u16.to_le_bytes());
    sb[88..92].copy_from_slice(b"salt");

    let temp = tempfile::NamedTempFile::new()?;
    fs::write(temp.path(), &bytes)?;
    let mut file = File::open(temp.path())?;
    let at = |(first, last): (u64, u64)| Partition {
        type_guid: String::new(),
        uuid: String::new(),
        offset: first * sector as u64,
        length: (last - first + 1) * sector as u64,
    };
    let superblock = hashtree::superblock(&mut file, &at(hash))?;
    let root: String =
        hashtree::root_hash(&mut file, &at(data), &superblock)?.iter().map(|b| format!("{b:02x}")).collect();

    let mut parts = vec![(ROOT, root[..32].to_owned(), data), (ROOT_VERITY, root[32..].to_owned(), hash)];
    if sign {
        let signature = sign_root(&root)?;
        let json = serde_json::json!({ "rootHash": root, "signature": openssl::base64::encode_block(&signature) });
        let json = serde_json::to_vec(&json)?;
        let start = sig.0 as usize * sector;
        bytes[start..start + json.len()].copy_from_slice(&json);
        parts.push((ROOT_SIGNATURE, "0".repeat(31) + "1", sig));
    }
    let mut entries = vec![0u8; 4 * 128];
    for (i, (kind, uuid, (first, last))) in parts.iter().enumerate() {
        let entry = &mut entries[i * 128..(i + 1) * 128];
        entry[..16].copy_from_slice(&guid_bytes(kind)?);
        entry[16..32].copy_from_slice(&guid_bytes(uuid)?);
        entry[32..40].copy_from_slice(&first.to_le_bytes());
        entry[40..48].copy_from_slice(&last.to_le_bytes());
    }
    gpt::seal(&mut bytes, sector, &entries, &entries);
    Ok(bytes)
}

fn gpt() -> Result<Seeds, Box<dyn std::error::Error>> {
    let mut plain = vec![0u8; 8192];
    plain[1024..1030].copy_from_slice(b"hsqs\x04\0");
    let signed = verity_image(512, true)?;
    let mut tampered = signed.clone();
    tampered[34 * 512 + 7] ^= 1;
    Ok(vec![
        ("plain".into(), plain),
        ("verity".into(), verity_image(512, false)?),
        ("verity-signed".into(), signed),
        ("verity-tampered".into(), tampered),
        ("verity-4k".into(), verity_image(4096, false)?),
    ])
}

/// A detached PKCS#7 signature over `text` by the test key, as systemd-repart makes it.
fn sign_root(text: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let certificate = X509::from_pem(&fs::read(testdata.join("signer.crt"))?)?;
    let key = PKey::private_key_from_pem(&fs::read(testdata.join("signer.key"))?)?;
    let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOATTR;
    let extra: Stack<X509> = Stack::new()?;
    let signed = Pkcs7::sign(&certificate, &key, &extra, text.as_bytes(), flags)?;
    Ok(signed.to_der()?)
}

fn signature() -> Result<Seeds, Box<dyn std::error::Error>> {
    let mut seeds = Seeds::new();
    for (name, root) in [("root-hash", HEX), ("short-text", "abc")] {
        let mut bytes = root.as_bytes().to_vec();
        bytes.push(b'\n');
        bytes.extend(sign_root(root)?);
        seeds.push((name.into(), bytes));
    }
    let mut other = b"0000\n".to_vec();
    other.extend(sign_root(HEX)?);
    seeds.push(("signed-other-text".into(), other));
    seeds.push(("not-pkcs7".into(), b"abc\n\x30\x03\x02\x01\x01".to_vec()));
    Ok(seeds)
}
