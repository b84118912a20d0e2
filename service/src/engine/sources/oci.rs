//! OCI registry sources: image manifests and indexes, Kairos-shaped layers and
//! single-blob artifacts.
//!
//! A dedicated network thread owns the registry client and its runtime; it resolves the
//! reference and streams blobs as chunks over a bounded channel. The calling (blocking)
//! thread reads them through decompression and the layer filter straight into staging.
//! Memory stays bounded by the channel, whatever the image size, and dropping the
//! receiving end (cancel, error) stops the transfer. Layer digests are verified by the
//! client as the bytes stream; the manifest digest is checked against any pin.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, current_platform_resolver};
use oci_client::manifest::ImageIndexEntry;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::super::full_message;
use super::super::progress::{Phase, Progress};
use super::super::store::{Staged, StoreError};
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
    let fetcher = {
        let (reference, options) = (reference.clone(), options.clone());
        std::thread::spawn(move || fetch(reference, options, auth, tx))
    };
    progress.phase(Phase::Resolving);
    let outcome = consume(&rx, pinned.as_deref(), options.max_image_size, &mut stage, progress);
    // Whatever broke after a cancel (a read, the archive), the cause was the cancel.
    let outcome = match outcome {
        Err(_) if progress.canceled() => Err(OciError::Store(StoreError::Canceled)),
        other => other,
    };
    // Dropping the receiver makes a still-running fetcher stop at its next send.
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
    let (manifest_digest, index_digest, layers) = match rx.recv() {
        Ok(Message::Resolved { manifest_digest, index_digest, layers }) => (manifest_digest, index_digest, layers),
        Ok(Message::Failed(e)) => return Err(e),
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
    let total: u64 = layers.iter().map(|l| u64::try_from(l.size).unwrap_or(0)).sum();
    progress.phase(Phase::Downloading);
    let counted = Counted { progress, total, done: Mutex::new(0) };
    let mut images = Vec::new();
    for descriptor in &layers {
        let reader = ChannelReader { rx, pending: bytes::Bytes::new(), ended: false, counted: &counted };
        match shape(descriptor)? {
            Shape::Artifact(file_name) => {
                let mut staged = stage()?;
                staged.copy_from(reader, Some(u64::try_from(descriptor.size).unwrap_or(0)), &counted)?;
                images.push(Extracted { file_name, staged });
            }
            Shape::Tar => images.extend(layer::extract(reader, layer_budget(max_image_size), &mut *stage, &counted)?),
            Shape::TarGzip => {
                let decoder = flate2::read::GzDecoder::new(reader);
                images.extend(layer::extract(decoder, layer_budget(max_image_size), &mut *stage, &counted)?);
            }
            Shape::TarZstd => {
                // A hostile frame may ask for any window; zstd's own decoder default caps it here.
                let decoder = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(reader, ZSTD_MAX_WINDOW)
                    .map_err(|e| OciError::Unusable(format!("the zstd layer cannot be read: {e}")))?;
                images.extend(layer::extract(decoder, layer_budget(max_image_size), &mut *stage, &counted)?);
            }
        }
        if let Some(error) = counted.failure(rx) {
            return Err(error);
        }
    }
    if images.is_empty() {
        return Err(OciError::Unusable("the image carries no .raw extension image".into()));
    }
    Ok(Pulled { images, manifest_digest, index_digest })
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

/// Reports bytes across all layers, and remembers a failure the fetcher sent.
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

    fn failure(&self, rx: &Receiver<Message>) -> Option<OciError> {
        match rx.try_recv() {
            Ok(Message::Failed(e)) => Some(e),
            _ => None,
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
struct ChannelReader<'a> {
    rx: &'a Receiver<Message>,
    pending: bytes::Bytes,
    ended: bool,
    counted: &'a Counted<'a>,
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() && !self.ended {
            // Wait in short slices so a cancel is noticed even while the registry is silent.
            let message = match self.rx.recv_timeout(CANCEL_CHECK) {
                Err(RecvTimeoutError::Timeout) if self.counted.canceled() => {
                    return Err(std::io::Error::other("canceled"));
                }
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => Err(()),
                Ok(message) => Ok(message),
            };
            match message {
                Ok(Message::Chunk(chunk)) => {
                    self.counted.add(chunk.len() as u64);
                    self.pending = chunk;
                }
                Ok(Message::LayerEnd) => self.ended = true,
                Ok(Message::Failed(e)) => return Err(std::io::Error::other(e.to_string())),
                Ok(Message::Resolved { .. }) | Err(()) => {
                    return Err(std::io::Error::other("the registry connection ended in the middle of a layer"));
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending = self.pending.slice(n..);
        Ok(n)
    }
}

/// The network side: resolves, then streams every layer. Stops when the reader goes.
fn fetch(reference: Reference, options: RegistryOptions, auth: RegistryAuth, tx: SyncSender<Message>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = tx.send(Message::Failed(OciError::Registry(e.to_string())));
            return;
        }
    };
    runtime.block_on(async move {
        if let Err(e) = fetch_async(&reference, &options, &auth, &tx).await {
            let _ = tx.send(Message::Failed(e));
        }
    });
}

async fn fetch_async(
    reference: &Reference,
    options: &RegistryOptions,
    auth: &RegistryAuth,
    tx: &SyncSender<Message>,
) -> Result<(), OciError> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = seen.clone();
    let config = ClientConfig {
        protocol: if options.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(options.insecure.clone())
        },
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(60)),
        platform_resolver: Some(Box::new(move |entries: &[ImageIndexEntry]| {
            if let Ok(mut seen) = recorder.lock() {
                *seen = entries
                    .iter()
                    .filter_map(|e| e.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect();
            }
            current_platform_resolver(entries)
        })),
        ..ClientConfig::default()
    };
    let client = Client::new(config);
    let (manifest, manifest_digest, index_digest) =
        client.pull_image_manifest_and_list_digest(reference, auth).await.map_err(|e| {
            let available = seen.lock().map(|s| s.join(", ")).unwrap_or_default();
            if available.is_empty() {
                OciError::Registry(full_message(&e))
            } else {
                OciError::Platform { wanted: format!("linux/{}", std::env::consts::ARCH), available }
            }
        })?;
    let layers = manifest.layers.clone();
    if tx.send(Message::Resolved { manifest_digest, index_digest, layers: layers.clone() }).is_err() {
        return Ok(());
    }
    for layer in &layers {
        // Foreign layer URLs point elsewhere than the registry we trust; never followed.
        let mut descriptor = layer.clone();
        descriptor.urls = None;
        let mut stream =
            client.pull_blob_stream(reference, &descriptor).await.map_err(|e| OciError::Registry(full_message(&e)))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| OciError::Registry(full_message(&e)))?;
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
