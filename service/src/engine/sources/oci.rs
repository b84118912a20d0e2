//! OCI registry sources: image manifests and indexes, Kairos-shaped layers and
//! single-blob artifacts.
//!
//! A dedicated network thread owns the registry client and its runtime; it resolves the
//! reference and streams blobs as chunks over a bounded channel. The calling (blocking)
//! thread reads them through decompression and the layer filter straight into staging.
//! Memory stays bounded by the channel, whatever the image size, and dropping the
//! receiving end (cancel, error) stops the transfer. Layer digests are verified by the
//! client as the bytes stream, and a layer counts only once its stream has ended with
//! that check passed and exactly the size its descriptor gives; the manifest digest is
//! checked against any pin.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, current_platform_resolver};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::ImageIndexEntry;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
// The client's resolver matches these; the error must name the platform in the same terms.
use oci_spec::image::{Arch, Os};

use super::super::full_message;
use super::super::progress::{Phase, Progress};
use super::super::store::{Staged, StoreError};
use super::decompress;
use super::layer::{self, Extracted, LayerError};
use super::reference::ImageReference;
use super::registry_auth::{self, AuthFileError};

/// The media type of a bare extension image pushed as an artifact.
pub const ARTIFACT_MEDIA_TYPE: &str = "application/vnd.kairos.sysext.raw";
const TITLE: &str = "org.opencontainers.image.title";
/// Chunks in flight between the network thread and the reader.
const CHANNEL_DEPTH: usize = 4;
/// How often a waiting reader checks for cancellation.
const CANCEL_CHECK: Duration = Duration::from_millis(250);

/// Why a pull failed. Messages never carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The registry could not be asked (network, TLS, authentication, missing image).
    #[error("registry: {0}")]
    Registry(String),
    /// No manifest for this machine's platform in an index.
    #[error("the image has no manifest for {wanted}; it has: {available}")]
    Platform {
        /// What this machine is.
        wanted: String,
        /// What the index offers.
        available: String,
    },
    /// The manifest does not match the pinned digest.
    #[error("the manifest is {actual}, but {expected} was pinned")]
    DigestMismatch {
        /// The pin.
        expected: String,
        /// What the registry served.
        actual: String,
    },
    /// A blob's bytes do not match the descriptor that named them, in digest or size.
    #[error("layer {digest}: {problem}")]
    BlobMismatch {
        /// The digest the manifest gives.
        digest: String,
        /// What does not match.
        problem: String,
    },
    /// A layer or artifact that is not an extension.
    #[error("{0}")]
    Unusable(String),
    /// A layer's content was refused.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Staging failed (size limit, disk, cancellation).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured credentials file cannot be used.
    #[error(transparent)]
    Auth(#[from] AuthFileError),
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host:port`) that may be reached over plain HTTP.
    pub insecure: Vec<String>,
    /// A containers-style `auth.json` with credentials, per registry host.
    pub auth_file: Option<PathBuf>,
    /// The largest image, also the budget for a layer's unpacked bytes.
    pub max_image_size: u64,
}

/// What a pull produced.
pub struct Pulled {
    /// The images found, staged.
    pub images: Vec<Extracted>,
    /// The digest of the image manifest that was used.
    pub manifest_digest: String,
    /// The digest of the index the reference pointed to, when it pointed to one.
    pub index_digest: Option<String>,
}

enum Message {
    Resolved { manifest_digest: String, index_digest: Option<String>, layers: Vec<OciDescriptor> },
    Chunk(bytes::Bytes),
    LayerEnd,
    Failed(OciError),
}

/// Pulls `reference` and stages its extension images; a digest in the reference pins
/// the manifest or the index.
pub fn pull(
    reference: &ImageReference,
    options: &RegistryOptions,
    mut stage: impl FnMut() -> Result<Staged, StoreError>,
    progress: &dyn Progress,
) -> Result<Pulled, OciError> {
    let auth = registry_auth::lookup(options.auth_file.as_deref(), reference.registry(), reference.repository())?;
    let pinned = reference.digest().map(ToString::to_string);
    let reference = reference.to_oci();
    let (tx, rx) = sync_channel(CHANNEL_DEPTH);
    let stop = Arc::new(tokio::sync::Notify::new());
    let fetcher = {
        let (reference, options, stop) = (reference.clone(), options.clone(), stop.clone());
        std::thread::spawn(move || fetch(reference, options, auth, tx, &stop))
    };
    progress.phase(Phase::Resolving);
    let outcome = consume(&rx, pinned.as_deref(), options.max_image_size, &mut stage, progress);
    // Whatever broke after a cancel (a read, the archive), the cause was the cancel.
    let outcome = match outcome {
        Err(_) if progress.canceled() => Err(OciError::Store(StoreError::Canceled)),
        other => other,
    };
    // The fetcher may be waiting on the network (a stalled registry holds it until the
    // read timeout): told to stop, it drops the transfer at once. Dropping the receiver
    // stops it should it be blocked sending instead.
    stop.notify_one();
    drop(rx);
    let _ = fetcher.join();
    outcome
}

fn consume(
    rx: &Receiver<Message>,
    pinned: Option<&str>,
    max_image_size: u64,
    stage: &mut impl FnMut() -> Result<Staged, StoreError>,
    progress: &dyn Progress,
) -> Result<Pulled, OciError> {
    let (manifest_digest, index_digest, layers) = match receive(rx, progress)? {
        Some(Message::Resolved { manifest_digest, index_digest, layers }) => (manifest_digest, index_digest, layers),
        Some(Message::Failed(e)) => return Err(e),
        _ => return Err(OciError::Registry("the registry connection ended unexpectedly".into())),
    };
    if let Some(pinned) = pinned {
        let matches = pinned == manifest_digest || index_digest.as_deref() == Some(pinned);
        if !matches {
            return Err(OciError::DigestMismatch {
                expected: pinned.to_owned(),
                actual: index_digest.unwrap_or(manifest_digest),
            });
        }
    }
    if layers.len() > MAX_LAYERS {
        return Err(OciError::Unusable(format!(
            "the image has {} layers; an extension image has at most {MAX_LAYERS}",
            layers.len()
        )));
    }
    let total: u64 = layers.iter().map(|l| u64::try_from(l.size).unwrap_or(0)).sum();
    progress.phase(Phase::Downloading);
    let counted = Counted { progress, total, done: Mutex::new(0) };
    let mut images = Vec::new();
    for descriptor in &layers {
        let shape = shape(descriptor)?;
        let room = MAX_IMAGES.saturating_sub(images.len());
        if room == 0 {
            return Err(OciError::Unusable(format!("the image carries more than {MAX_IMAGES} extension images")));
        }
        let mut reader = ChannelReader::new(rx, &counted, descriptor);
        let unpacked = unpack(shape, &mut reader, max_image_size, room, stage, &counted);
        images.extend(reader.settle(unpacked)?);
    }
    if images.is_empty() {
        return Err(OciError::Unusable("the image carries no .raw extension image".into()));
    }
    Ok(Pulled { images, manifest_digest, index_digest })
}

/// The fetcher's next message (`None` once it is gone), waiting in short slices so
/// that a cancel is noticed while a registry takes its time; the only error is the
/// cancel.
fn receive(rx: &Receiver<Message>, progress: &dyn Progress) -> Result<Option<Message>, OciError> {
    loop {
        match rx.recv_timeout(CANCEL_CHECK) {
            Ok(message) => return Ok(Some(message)),
            Err(RecvTimeoutError::Timeout) if progress.canceled() => return Err(OciError::Store(StoreError::Canceled)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}

/// Streams one layer through its decoder and the entry filter into staging.
fn unpack(
    shape: Shape,
    reader: &mut ChannelReader<'_>,
    max_image_size: u64,
    max_images: usize,
    stage: &mut impl FnMut() -> Result<Staged, StoreError>,
    counted: &Counted<'_>,
) -> Result<Vec<Extracted>, OciError> {
    let budget = layer_budget(max_image_size);
    let images = match shape {
        Shape::Artifact(file_name) => {
            let mut staged = stage()?;
            let size = reader.expected;
            staged.copy_from(reader, Some(size), counted)?;
            vec![Extracted { file_name, staged }]
        }
        Shape::Tar => layer::extract(reader, budget, max_images, stage, counted)?,
        Shape::TarGzip => layer::extract(decompress::gzip(reader), budget, max_images, stage, counted)?,
        Shape::TarZstd => {
            // A hostile frame may ask for any window; zstd's own decoder default caps it here.
            let decoder = decompress::ZstdFrames::new(reader, ZSTD_MAX_WINDOW)
                .map_err(|e| LayerError::Archive(format!("zstd: {e}")))?;
            layer::extract(decoder, budget, max_images, stage, counted)?
        }
    };
    Ok(images)
}

/// The unpacked bytes a layer may yield: one image at the limit plus tar's own headers.
fn layer_budget(max_image_size: u64) -> u64 {
    max_image_size.saturating_add(1 << 20)
}

enum Shape {
    Artifact(String),
    Tar,
    TarGzip,
    TarZstd,
}

/// The most layers an extension image may have; each is a download of its own.
const MAX_LAYERS: usize = 16;
/// The most extension images one pull takes (a bundle of several); each is staged until
/// the install ends, and may be `max_image_size` large.
const MAX_IMAGES: usize = 16;

/// The largest zstd window accepted (128 MiB, the zstd decoder's own default limit).
const ZSTD_MAX_WINDOW: u64 = 1 << 27;

fn shape(descriptor: &OciDescriptor) -> Result<Shape, OciError> {
    let title = descriptor.annotations.as_ref().and_then(|a: &BTreeMap<String, String>| a.get(TITLE)).cloned();
    match descriptor.media_type.as_str() {
        ARTIFACT_MEDIA_TYPE => Ok(Shape::Artifact(artifact_name(title)?)),
        "application/octet-stream" if title.as_deref().is_some_and(|t| t.ends_with(".raw")) => {
            Ok(Shape::Artifact(artifact_name(title)?))
        }
        "application/vnd.oci.image.layer.v1.tar" | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Shape::Tar),
        "application/vnd.oci.image.layer.v1.tar+gzip" | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Ok(Shape::TarGzip)
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => Ok(Shape::TarZstd),
        other => Err(OciError::Unusable(format!("a layer of media type {other:?} is not an extension layer"))),
    }
}

/// The file name an artifact is staged under; its title is as untrusted as a tar entry.
fn artifact_name(title: Option<String>) -> Result<String, OciError> {
    let title = title.unwrap_or_else(|| "extension.raw".to_owned());
    match layer::entry_name(title.as_bytes(), false) {
        Ok(Some(name)) => Ok(name),
        Ok(None) | Err(_) => {
            Err(OciError::Unusable(format!("artifact title {title:?} is not a plain *.raw file name")))
        }
    }
}

/// Reports bytes across all layers.
struct Counted<'a> {
    progress: &'a dyn Progress,
    total: u64,
    done: Mutex<u64>,
}

impl Counted<'_> {
    fn add(&self, n: u64) {
        if let Ok(mut done) = self.done.lock() {
            *done += n;
            self.progress.bytes(*done, Some(self.total).filter(|t| *t > 0));
        }
    }
}

impl Progress for Counted<'_> {
    fn phase(&self, phase: Phase) {
        self.progress.phase(phase);
    }

    fn named(&self, name: &str) {
        self.progress.named(name);
    }

    fn canceled(&self) -> bool {
        self.progress.canceled()
    }
}

/// One layer's bytes, read from the channel.
///
/// The fetcher verifies a layer's digest only when its stream ends, so a layer counts
/// only once this reader has seen that end. Every error it returns is also kept, typed,
/// in `failure`: the unpacker above sees only an I/O error, and the cause must not be
/// lost in it.
struct ChannelReader<'a> {
    rx: &'a Receiver<Message>,
    counted: &'a Counted<'a>,
    pending: bytes::Bytes,
    ended: bool,
    /// The digest the manifest gives, for messages.
    digest: &'a str,
    /// The size the manifest gives; a registry sending more is cut off there.
    expected: u64,
    received: u64,
    failure: Option<OciError>,
}

impl<'a> ChannelReader<'a> {
    fn new(rx: &'a Receiver<Message>, counted: &'a Counted<'a>, descriptor: &'a OciDescriptor) -> Self {
        Self {
            rx,
            counted,
            pending: bytes::Bytes::new(),
            ended: false,
            digest: &descriptor.digest,
            // A negative size admits no bytes at all.
            expected: u64::try_from(descriptor.size).unwrap_or(0),
            received: 0,
            failure: None,
        }
    }

    /// The layer's verdict, given what unpacking it gave.
    ///
    /// What the unpacker left unread (tar padding after the end-of-archive blocks, a
    /// compressed stream's trailer) is read and dropped, both to reach the digest check
    /// and so that it is not taken for the next layer. An archive the unpacker could not
    /// read may be damaged in transit, so it is read to the end too, to report a digest
    /// mismatch as what it is. A failure of the transfer explains anything the unpacker
    /// saw, so it wins.
    fn settle(mut self, unpacked: Result<Vec<Extracted>, OciError>) -> Result<Vec<Extracted>, OciError> {
        let unreadable = matches!(unpacked, Err(OciError::Layer(LayerError::Archive(_))));
        if unpacked.is_ok() || unreadable {
            // Any error is recorded in `failure`.
            let _ = std::io::copy(&mut self, &mut std::io::sink());
        }
        match self.failure.take() {
            Some(failure) => Err(failure),
            None => unpacked,
        }
    }

    /// Records why reading stopped, and hands the unpacker an I/O error saying so.
    fn fail(&mut self, failure: OciError) -> std::io::Error {
        let error = std::io::Error::other(failure.to_string());
        self.failure = Some(failure);
        error
    }

    fn mismatch(&self, problem: String) -> OciError {
        OciError::BlobMismatch { digest: self.digest.to_owned(), problem }
    }
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(failure) = &self.failure {
            return Err(std::io::Error::other(failure.to_string()));
        }
        while self.pending.is_empty() && !self.ended {
            let message = match receive(self.rx, self.counted) {
                Ok(message) => message,
                Err(canceled) => return Err(self.fail(canceled)),
            };
            match message {
                Some(Message::Chunk(chunk)) => {
                    self.received = self.received.saturating_add(chunk.len() as u64);
                    if self.received > self.expected {
                        let problem =
                            format!("the registry sent more than the {} bytes the manifest gives", self.expected);
                        return Err(self.fail(self.mismatch(problem)));
                    }
                    self.counted.add(chunk.len() as u64);
                    self.pending = chunk;
                }
                Some(Message::LayerEnd) if self.received < self.expected => {
                    let problem = format!(
                        "the registry sent {} of the {} bytes the manifest gives",
                        self.received, self.expected
                    );
                    return Err(self.fail(self.mismatch(problem)));
                }
                Some(Message::LayerEnd) => self.ended = true,
                Some(Message::Failed(e)) => return Err(self.fail(e)),
                Some(Message::Resolved { .. }) | None => {
                    let failure = OciError::Registry("the registry connection ended in the middle of a layer".into());
                    return Err(self.fail(failure));
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending = self.pending.slice(n..);
        Ok(n)
    }
}

/// The network side: resolves, then streams every layer. Stops when told to, or when
/// the reader goes.
fn fetch(
    reference: Reference,
    options: RegistryOptions,
    auth: RegistryAuth,
    tx: SyncSender<Message>,
    stop: &tokio::sync::Notify,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = tx.send(Message::Failed(OciError::Registry(e.to_string())));
            return;
        }
    };
    runtime.block_on(async move {
        tokio::select! {
            fetched = fetch_async(&reference, &options, &auth, &tx) => {
                if let Err(e) = fetched {
                    let _ = tx.send(Message::Failed(e));
                }
            }
            () = stop.notified() => {}
        }
    });
}

async fn fetch_async(
    reference: &Reference,
    options: &RegistryOptions,
    auth: &RegistryAuth,
    tx: &SyncSender<Message>,
) -> Result<(), OciError> {
    let resolution: Arc<Mutex<Option<Resolution>>> = Arc::default();
    let recorder = resolution.clone();
    let config = ClientConfig {
        protocol: if options.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(options.insecure.clone())
        },
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(60)),
        platform_resolver: Some(Box::new(move |entries: &[ImageIndexEntry]| {
            let chosen = current_platform_resolver(entries);
            if let Ok(mut resolution) = recorder.lock() {
                let available = entries
                    .iter()
                    .filter_map(|e| e.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect();
                *resolution = Some(Resolution { available, matched: chosen.is_some() });
            }
            chosen
        })),
        ..ClientConfig::default()
    };
    let client = Client::new(config);
    let (manifest, manifest_digest, index_digest) =
        client.pull_image_manifest_and_list_digest(reference, auth).await.map_err(|e| {
            let resolution = resolution.lock().ok().and_then(|mut r| r.take());
            manifest_error(&e, resolution)
        })?;
    let layers = manifest.layers.clone();
    if tx.send(Message::Resolved { manifest_digest, index_digest, layers: layers.clone() }).is_err() {
        return Ok(());
    }
    for layer in &layers {
        // Foreign layer URLs point elsewhere than the registry we trust; never followed.
        let mut descriptor = layer.clone();
        descriptor.urls = None;
        let mut stream = client.pull_blob_stream(reference, &descriptor).await.map_err(|e| registry_failure(&e))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| stream_error(&descriptor.digest, &e))?;
            if tx.send(Message::Chunk(chunk)).is_err() {
                return Ok(());
            }
        }
        if tx.send(Message::LayerEnd).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// A registry failure in words, without the signed URLs registries redirect blob
/// downloads to: the client's messages name the URL, query and all.
fn registry_failure(error: &dyn std::error::Error) -> OciError {
    OciError::Registry(super::redact_in_text(&full_message(error)))
}

/// What the platform resolver saw in an index, and whether this machine was among it.
struct Resolution {
    available: Vec<String>,
    matched: bool,
}

/// A failed manifest pull, typed. Only an index without this machine's platform is a
/// platform error: once one matched, later failures (the child manifest, the network)
/// are what they are. A manifest that does not hash to the digest it was asked by is
/// a digest mismatch, whether the client or this code noticed.
fn manifest_error(error: &OciDistributionError, resolution: Option<Resolution>) -> OciError {
    match (error, resolution) {
        (_, Some(Resolution { available, matched: false })) => OciError::Platform {
            wanted: format!("{}/{}", Os::default(), Arch::default()),
            available: available.join(", "),
        },
        (OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }), _) => {
            OciError::DigestMismatch { expected: expected.clone(), actual: actual.clone() }
        }
        (error, _) => registry_failure(error),
    }
}

/// A blob stream's error, typed: the client's digest verdict is a mismatch, not a
/// transfer failure.
fn stream_error(digest: &str, error: &std::io::Error) -> OciError {
    match error.get_ref().and_then(|e| e.downcast_ref::<DigestError>()) {
        Some(DigestError::VerificationError { actual, .. }) => OciError::BlobMismatch {
            digest: digest.to_owned(),
            problem: format!("the registry served bytes whose digest is {actual}"),
        },
        _ => registry_failure(error),
    }
}

#[cfg(test)]
mod cancel_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::progress::Silent;
    use crate::engine::store::temp_store;

    /// A one-file tar layer followed by `padding` zero bytes, as writers pad to their
    /// record size after the end-of-archive blocks.
    fn tar_layer(name: &str, data: &[u8], padding: usize) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_path(name).expect("name");
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).expect("append");
        let mut bytes = builder.into_inner().expect("finish");
        bytes.resize(bytes.len() + padding, 0);
        bytes
    }

    fn descriptor(size: usize) -> OciDescriptor {
        OciDescriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".to_owned(),
            digest: "sha256:layer".to_owned(),
            size: i64::try_from(size).expect("small"),
            ..OciDescriptor::default()
        }
    }

    /// What the network thread sends for `layers`, in 512-byte chunks; each layer's
    /// descriptor claims `claimed(len)` bytes.
    fn stream(layers: &[Vec<u8>], claimed: impl Fn(usize) -> usize) -> Vec<Message> {
        let mut messages = vec![Message::Resolved {
            manifest_digest: "sha256:manifest".into(),
            index_digest: None,
            layers: layers.iter().map(|l| descriptor(claimed(l.len()))).collect(),
        }];
        for layer in layers {
            messages.extend(layer.chunks(512).map(|c| Message::Chunk(bytes::Bytes::copy_from_slice(c))));
            messages.push(Message::LayerEnd);
        }
        messages
    }

    /// Sends `messages` from another thread, the way the fetcher does (a `Failed`
    /// comes late, as a stream's digest verdict does), and consumes them.
    fn consume_stream(messages: Vec<Message>) -> (tempfile::TempDir, Result<Pulled, OciError>) {
        let (root, store) = temp_store();
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        let feeder = std::thread::spawn(move || {
            for message in messages {
                if matches!(message, Message::Failed(_)) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if tx.send(message).is_err() {
                    return;
                }
            }
        });
        let outcome = consume(&rx, None, 1 << 20, &mut || store.stage(1 << 20), &Silent);
        drop(rx);
        let _ = feeder.join();
        let staged = std::fs::read_dir(store.layout().tmp_dir()).map(|d| d.count()).unwrap_or(0);
        assert!(outcome.is_ok() || staged == 0, "a failed pull left {staged} staging files");
        (root, outcome)
    }

    fn mismatch(outcome: Result<Pulled, OciError>) -> String {
        match outcome {
            Err(OciError::BlobMismatch { problem, .. }) => problem,
            Err(other) => panic!("expected a blob mismatch, got {other}"),
            Ok(_) => panic!("a layer that does not match its descriptor was accepted"),
        }
    }

    #[test]
    fn padding_after_a_tar_is_not_read_as_the_next_layer() {
        let layers = [tar_layer("a.raw", b"first", 10 * 1024), tar_layer("b.raw", b"second", 0)];
        let (_root, outcome) = consume_stream(stream(&layers, |len| len));
        let pulled = outcome.expect("both layers are read");
        let names: Vec<_> = pulled.images.iter().map(|i| i.file_name.as_str()).collect();
        assert_eq!(names, ["a.raw", "b.raw"]);
    }

    #[test]
    fn more_layers_or_images_than_an_extension_has_are_refused_before_staging_them() {
        let layers: Vec<Vec<u8>> = (0..17).map(|i| tar_layer(&format!("e{i}.raw"), b"x", 0)).collect();
        let (_root, outcome) = consume_stream(stream(&layers, |len| len));
        assert!(matches!(&outcome, Err(OciError::Unusable(why)) if why.contains("17 layers")), "{:?}", outcome.err());
        // Sixteen layers of one image each fill the pull; a seventeenth image in the last
        // layer is one too many.
        let mut layers: Vec<Vec<u8>> = (0..15).map(|i| tar_layer(&format!("e{i}.raw"), b"x", 0)).collect();
        let mut builder = tar::Builder::new(Vec::new());
        for name in ["y.raw", "z.raw"] {
            let mut header = tar::Header::new_ustar();
            header.set_path(name).expect("name");
            header.set_size(1);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, &b"x"[..]).expect("append");
        }
        layers.push(builder.into_inner().expect("finish"));
        let (_root, outcome) = consume_stream(stream(&layers, |len| len));
        let refused = matches!(&outcome, Err(OciError::Layer(LayerError::Entry { entry, .. })) if entry == "z.raw");
        assert!(refused, "{:?}", outcome.err());
    }

    /// `messages` with the end of its last layer replaced by the client's digest
    /// verdict: the bytes do not match.
    fn ending_in_a_digest_verdict(mut messages: Vec<Message>) -> Vec<Message> {
        messages.pop();
        messages.push(Message::Failed(OciError::BlobMismatch {
            digest: "sha256:layer".into(),
            problem: "the registry served different bytes".into(),
        }));
        messages
    }

    #[test]
    fn a_layer_counts_only_once_the_fetcher_has_verified_all_of_it() {
        let layers = [tar_layer("a.raw", b"image", 10 * 1024)];
        let (_root, outcome) = consume_stream(ending_in_a_digest_verdict(stream(&layers, |len| len)));
        assert_eq!(mismatch(outcome), "the registry served different bytes");
    }

    #[test]
    fn a_layer_longer_than_its_descriptor_is_refused() {
        let layers = [tar_layer("a.raw", b"image", 10 * 1024)];
        let (_root, outcome) = consume_stream(stream(&layers, |len| len - 512));
        assert!(mismatch(outcome).contains("more than"));
    }

    #[test]
    fn a_layer_damaged_in_transit_is_reported_as_a_digest_mismatch() {
        let mut layer = tar_layer("a.raw", b"image", 0);
        layer[0] ^= 0xff; // the header checksum no longer holds: the tar reader gives up
        let (_root, outcome) = consume_stream(ending_in_a_digest_verdict(stream(&[layer], |len| len)));
        assert_eq!(mismatch(outcome), "the registry served different bytes");
    }

    #[test]
    fn a_layer_shorter_than_its_descriptor_is_refused() {
        let layers = [tar_layer("a.raw", b"image", 0)];
        let (_root, outcome) = consume_stream(stream(&layers, |len| len + 1));
        assert!(mismatch(outcome).contains("of the"));
    }

    #[test]
    fn the_clients_digest_verdict_becomes_a_mismatch() {
        let verdict = DigestError::VerificationError { expected: "sha256:aa".into(), actual: "sha256:bb".into() };
        match stream_error("sha256:aa", &std::io::Error::other(verdict)) {
            OciError::BlobMismatch { digest, problem } => {
                assert_eq!(digest, "sha256:aa");
                assert!(problem.contains("sha256:bb"), "{problem}");
            }
            other => panic!("expected a blob mismatch, got {other}"),
        }
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(stream_error("sha256:aa", &reset), OciError::Registry(_)));
    }

    #[test]
    fn only_an_index_without_this_platform_is_a_platform_error() {
        let missing = Resolution { available: vec!["linux/s390x".into()], matched: false };
        let unreachable = OciDistributionError::GenericError(Some("connection reset".into()));
        assert!(
            matches!(manifest_error(&unreachable, Some(missing)), OciError::Platform { available, .. } if available == "linux/s390x")
        );
        let found = Resolution { available: vec!["linux/amd64".into()], matched: true };
        assert!(matches!(manifest_error(&unreachable, Some(found)), OciError::Registry(_)));
        assert!(matches!(manifest_error(&unreachable, None), OciError::Registry(_)));
    }

    #[test]
    fn a_manifest_that_does_not_hash_to_its_pin_is_a_digest_mismatch() {
        let verdict = DigestError::VerificationError { expected: "sha256:aa".into(), actual: "sha256:bb".into() };
        match manifest_error(&OciDistributionError::DigestError(verdict), None) {
            OciError::DigestMismatch { expected, actual } => {
                assert_eq!((expected.as_str(), actual.as_str()), ("sha256:aa", "sha256:bb"))
            }
            other => panic!("expected a digest mismatch, got {other}"),
        }
    }
}
