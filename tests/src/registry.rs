//! A real OCI registry (Debian's `docker-registry`) on loopback, and images pushed to it
//! with `skopeo` from OCI layouts this module writes by hand.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A running `docker-registry serve`.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    /// Starts a registry with filesystem storage on a free loopback port.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a registry that admits only `user` with `password` (htpasswd, bcrypt).
    pub fn start_with_credentials(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    /// Starts a registry that wants bearer tokens from `token_server`, as Docker Hub
    /// and most hosted registries do.
    pub fn start_with_token_auth(token_server: &crate::token_server::TokenServer, cert_pem: &Path) -> Self {
        use crate::token_server::{ISSUER, SERVICE};
        let auth = format!(
            "auth: {{token: {{realm: \"{}\", service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {}}}}}\n",
            token_server.realm(),
            cert_pem.display()
        );
        Self::start_with_auth(None, &auth)
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Self {
        Self::start_with_auth(credentials, "")
    }

    fn start_with_auth(credentials: Option<(&str, &str)>, auth: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("kx-registry-").tempdir().expect("registry dir");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port");
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = credentials {
            let hash = bcrypt::hash(password, 6).expect("bcrypt");
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("htpasswd");
            text.push_str(&format!("auth: {{htpasswd: {{realm: test, path: {}}}}}\n", htpasswd.display()));
        }
        text.push_str(auth);
        fs::write(&config, text).expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (Debian package docker-registry)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(15), "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, dir, port }
    }

    /// `host:port` of the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI layout directory's `tag` as `name:tag` with skopeo.
    pub fn push(&self, layout: &Path, tag: &str, name: &str, all: bool) {
        self.push_as(layout, tag, name, all, None);
    }

    /// Pushes like [`Registry::push`], logging in as `user:password` when given.
    pub fn push_as(&self, layout: &Path, tag: &str, name: &str, all: bool, credentials: Option<&str>) {
        let mut command = Command::new("skopeo");
        command.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(credentials) = credentials {
            command.arg(format!("--dest-creds={credentials}"));
        }
        if all {
            command.arg("--all");
        }
        let out = command
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{name}:{tag}", self.host()))
            .output()
            .expect("skopeo runs (Debian package skopeo)");
        assert!(out.status.success(), "skopeo copy failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Where the registry keeps the blob `digest` (`sha256:<hex>`), to tamper with it.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.path().join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pushes `image` as a single-blob artifact `name:tag` with oci-client's push API, the
/// way ORAS-style tools publish extensions: one layer of `media_type`, titled `title`.
pub fn push_artifact(registry: &Registry, name: &str, tag: &str, image: Vec<u8>, media_type: &str, title: &str) {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    let reference: oci_client::Reference =
        format!("{}/{name}:{tag}", registry.host()).parse().expect("a valid reference");
    let annotations =
        std::collections::BTreeMap::from([("org.opencontainers.image.title".to_owned(), title.to_owned())]);
    let layer = ImageLayer::new(image, media_type.to_owned(), Some(annotations));
    let config = Config::new(b"{}".to_vec(), "application/vnd.oci.empty.v1+json".to_owned(), None);
    let client = oci_client::Client::new(ClientConfig { protocol: ClientProtocol::Http, ..ClientConfig::default() });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime
        .block_on(client.push(&reference, &[layer], config, &oci_client::secrets::RegistryAuth::Anonymous, None))
        .expect("push the artifact");
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A tar archive of regular files `entries` (name, bytes), as an image layer.
pub fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<_> = entries.iter().map(|(name, data)| TarEntry::file(name.as_bytes(), data)).collect();
    tar_of(&entries)
}

/// One entry of a hand-made layer. Every field is written into the header byte by
/// byte, so hostile names, kinds and sizes survive: the point is to test the reader.
#[derive(Clone, Copy)]
pub struct TarEntry<'a> {
    /// The name, as raw bytes (control characters, `..` and absolute paths included).
    pub name: &'a [u8],
    /// The entry type.
    pub kind: tar::EntryType,
    /// The contents.
    pub data: &'a [u8],
    /// The link target, for symbolic and hard links.
    pub link: &'a [u8],
    /// A PAX `size` record put in front of the entry, to disagree with its header.
    pub pax_size: Option<u64>,
}

impl<'a> TarEntry<'a> {
    /// A regular file.
    pub fn file(name: &'a [u8], data: &'a [u8]) -> Self {
        Self { name, kind: tar::EntryType::Regular, data, link: b"", pax_size: None }
    }

    /// An entry of `kind` with no contents (directories, devices, FIFOs).
    pub fn special(name: &'a [u8], kind: tar::EntryType) -> Self {
        Self { name, kind, data: b"", link: b"", pax_size: None }
    }

    /// A symbolic or hard link (`kind`) to `target`.
    pub fn link(name: &'a [u8], kind: tar::EntryType, target: &'a [u8]) -> Self {
        Self { name, kind, data: b"", link: target, pax_size: None }
    }
}

/// A tar archive of `entries`.
pub fn tar_of(entries: &[TarEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        if let Some(size) = entry.pax_size {
            builder.append_pax_extensions([("size", size.to_string().as_bytes())]).expect("pax record");
        }
        let mut header = tar::Header::new_ustar();
        let old = header.as_old_mut();
        assert!(entry.name.len() < old.name.len(), "test names fit a ustar header");
        assert!(entry.link.len() < old.linkname.len(), "test link targets fit a ustar header");
        old.name[..entry.name.len()].copy_from_slice(entry.name);
        old.linkname[..entry.link.len()].copy_from_slice(entry.link);
        header.set_size(entry.data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(entry.kind);
        header.set_cksum();
        builder.append(&header, entry.data).expect("append");
    }
    builder.into_inner().expect("finish tar")
}

/// gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip finish")
}

/// zstd of `bytes`.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

/// This machine's architecture as OCI spells it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The media type of a gzip-compressed tar layer.
pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Writes a layout in `dir` holding one image for this machine with the single tar
/// layer `plain`, gzipped, tagged `tag`; returns the manifest's digest and the layer's.
pub fn gzip_layer_layout(dir: &Path, tag: &str, plain: &[u8]) -> (String, String) {
    let mut layout = Layout::new(dir);
    let digests = layout.image(host_arch(), &gzip(plain), GZIP_LAYER, plain);
    layout.finish(tag);
    digests
}

/// An OCI layout being written.
pub struct Layout {
    dir: PathBuf,
    manifests: Vec<String>,
}

impl Layout {
    /// A new layout in `dir`.
    pub fn new(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dirs");
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
        Self { dir: dir.to_path_buf(), manifests: Vec::new() }
    }

    fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let digest = digest(bytes);
        fs::write(self.dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:")), bytes).expect("blob");
        (digest, bytes.len())
    }

    /// Adds an image manifest for `arch` with one layer of `media_type`; returns the
    /// manifest's digest and the layer's.
    pub fn image(&mut self, arch: &str, layer: &[u8], media_type: &str, uncompressed: &[u8]) -> (String, String) {
        let (layer_digest, layer_size) = self.blob(layer);
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
            digest(uncompressed)
        );
        let (config_digest, config_size) = self.blob(config.as_bytes());
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{config_size}}},"layers":[{{"mediaType":"{media_type}","digest":"{layer_digest}","size":{layer_size}}}]}}"#
        );
        let (manifest_digest, manifest_size) = self.blob(manifest.as_bytes());
        self.manifests.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{manifest_size},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#
        ));
        (manifest_digest, layer_digest)
    }

    /// Writes `index.json` tagging the single image (or, with several, a nested image
    /// index of all of them) as `tag`.
    pub fn finish(&self, tag: &str) {
        let entry = if self.manifests.len() == 1 {
            self.manifests[0].replacen(
                '{',
                &format!(r#"{{"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}},"#),
                1,
            )
        } else {
            let nested = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
                self.manifests.join(",")
            );
            let (digest, size) = self.blob(nested.as_bytes());
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{digest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}"#
            )
        };
        fs::write(self.dir.join("index.json"), format!(r#"{{"schemaVersion":2,"manifests":[{entry}]}}"#))
            .expect("index.json");
    }
}
