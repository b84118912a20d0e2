//! The engine's error, and the one place that classifies it into the contract's kinds.

use kairos_extensions_dbus::{ErrorKind, InvalidName, UnknownBootState};

use super::catalogs::CatalogError;
use super::config::ConfigError;
use super::image::ImageError;
use super::intent::IntentError;
use super::layout::NotAbsolute;
use super::release::{Incompatible, NoOsRelease};
use super::sources::file::FileSourceError;
use super::sources::http::HttpError;
use super::sources::layer::LayerError;
use super::sources::oci::OciError;
use super::store::StoreError;
use super::sysext::SysextError;
use super::trust::TrustError;

/// Anything an engine operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No extension of that name is installed.
    #[error("no extension named {0:?} is installed")]
    NotFound(String),
    /// An extension of that name is installed and replacing was not asked for.
    #[error("extension {0:?} is already installed; pass replace to overwrite it")]
    AlreadyExists(String),
    /// A name that breaks the grammar.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A boot state that does not exist.
    #[error(transparent)]
    InvalidBootState(#[from] UnknownBootState),
    /// A source that cannot be used.
    #[error("invalid source {source_text:?}: {reason}")]
    InvalidSource {
        /// The source as given (redacted).
        source_text: String,
        /// Why.
        reason: String,
    },
    /// A catalog source that the catalogs cannot satisfy.
    #[error(transparent)]
    Catalog(Box<CatalogError>),
    /// The image is not a usable extension.
    #[error("invalid image")]
    InvalidImage(#[from] ImageError),
    /// Pulling from a registry failed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// Downloading failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The image policy refuses the image.
    #[error("refused by the image policy: {0}")]
    PolicyRefused(String),
    /// The image has verity, and it does not hold; nothing read its file system.
    #[error("the image's verity data does not verify")]
    Verity(#[source] TrustError),
    /// A local file or descriptor that is not a readable regular file.
    #[error(transparent)]
    FileSource(#[from] FileSourceError),
    /// The extension exists but cannot be used on this system.
    #[error("extension {name:?} cannot be enabled: {reason}")]
    Unusable {
        /// The extension.
        name: String,
        /// Why (incompatible release, unreadable image).
        reason: String,
    },
    /// The extension does not fit this system.
    #[error("extension {name:?} is not compatible with this system: {reason}")]
    Incompatible {
        /// The extension.
        name: String,
        /// The field that decided it.
        reason: Incompatible,
    },
    /// The content does not match the pinned digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What the caller pinned.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// The change needs the running system, but the root is another tree.
    #[error(
        "'now' acts on the running system, so it needs the root to be /; {root} is prepared for a later boot, not merged"
    )]
    NowNeedsLiveRoot {
        /// The root in use.
        root: String,
    },
    /// An extension that was asked for did not merge.
    #[error("extension {name:?} did not merge: {reason}")]
    NotMerged {
        /// The extension.
        name: String,
        /// What systemd-sysext said.
        reason: String,
    },
    /// A refresh that left asked-for extensions unmerged.
    #[error("{}", describe_unmerged(.0))]
    Unmerged(Vec<(String, String)>),
    /// An extension has no previous version to roll back to.
    #[error("{0} has no previous version to roll back to")]
    NoPreviousVersion(String),
    /// Asking the source of an extension for an update failed.
    #[error("cannot check {name} for updates: {reason}")]
    UpdateCheck {
        /// The extension.
        name: String,
        /// What the source or the network said.
        reason: String,
    },
    /// The operation was canceled.
    #[error("canceled")]
    Canceled,
    /// The host's os-release is missing.
    #[error(transparent)]
    Host(#[from] NoOsRelease),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configured path is unusable.
    #[error(transparent)]
    Layout(#[from] NotAbsolute),
    /// File work in the store failed.
    #[error(transparent)]
    Store(StoreError),
    /// Refreshing the merge failed.
    #[error(transparent)]
    Sysext(#[from] SysextError),
    /// A change that a process left unfinished could not be settled.
    #[error(transparent)]
    Intent(IntentError),
}

impl From<CatalogError> for Error {
    fn from(e: CatalogError) -> Self {
        Self::Catalog(Box::new(e))
    }
}

impl From<IntentError> for Error {
    fn from(e: IntentError) -> Self {
        match e {
            IntentError::Store(store) => Self::from(store),
            damaged @ IntentError::Damaged { .. } => Self::Intent(damaged),
        }
    }
}

fn describe_unmerged(items: &[(String, String)]) -> String {
    let parts: Vec<String> = items.iter().map(|(name, why)| format!("{name:?} ({why})")).collect();
    format!("not merged after refresh: {}", parts.join("; "))
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Canceled => Self::Canceled,
            other => Self::Store(other),
        }
    }
}

impl Error {
    /// The contract's category for this error.
    ///
    /// Every match below names each variant, with no catch-all arm: a new error kind
    /// does not compile until someone decides what the bus calls it. Errors that wrap
    /// others take the kind of what they wrap, so a cancel or a full disk is the same
    /// kind however deep it was raised.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) | Self::NoPreviousVersion(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Self::InvalidName(_) => ErrorKind::InvalidName,
            Self::InvalidBootState(_) => ErrorKind::InvalidBootState,
            Self::InvalidSource { .. } | Self::FileSource(_) => ErrorKind::InvalidSource,
            Self::Catalog(e) => catalog_kind(e),
            Self::InvalidImage(e) => image_kind(e),
            Self::PolicyRefused(_) => ErrorKind::InvalidImage,
            Self::Incompatible { .. } | Self::Unusable { .. } => ErrorKind::Incompatible,
            Self::Verity(e) => trust_kind(e),
            Self::DigestMismatch { .. } => ErrorKind::DigestMismatch,
            Self::Oci(e) => oci_kind(e),
            Self::Http(e) => http_kind(e),
            Self::Store(e) => store_kind(e),
            Self::Canceled => ErrorKind::Canceled,
            Self::NowNeedsLiveRoot { .. }
            | Self::NotMerged { .. }
            | Self::Unmerged(_)
            | Self::Host(_)
            | Self::Config(_)
            | Self::Layout(_)
            | Self::Sysext(_)
            | Self::UpdateCheck { .. }
            | Self::Intent(_) => ErrorKind::Failed,
        }
    }
}

fn trust_kind(error: &TrustError) -> ErrorKind {
    match error {
        TrustError::Malformed(_)
        | TrustError::RootHashMismatch(_)
        | TrustError::UnknownCertificate
        | TrustError::BadSignature(_)
        | TrustError::Certificate { .. } => ErrorKind::InvalidImage,
        TrustError::Io(_) => ErrorKind::Failed,
    }
}

fn store_kind(error: &StoreError) -> ErrorKind {
    match error {
        StoreError::Io { .. } => ErrorKind::Failed,
        StoreError::TooLarge { .. } => ErrorKind::TooLarge,
        StoreError::Exists(_) | StoreError::Foreign { .. } => ErrorKind::AlreadyExists,
        StoreError::Canceled => ErrorKind::Canceled,
    }
}

fn image_kind(error: &ImageError) -> ErrorKind {
    match error {
        ImageError::Unreadable(_)
        | ImageError::NoRelease
        | ImageError::Ambiguous(_)
        | ImageError::NameNotInImage { .. }
        | ImageError::Twice { .. }
        | ImageError::NotAFileSystem
        | ImageError::OsRelease { .. }
        | ImageError::NotADirectory { .. } => ErrorKind::InvalidImage,
        // Our own tools or disk failed, not the image.
        ImageError::Command(_) | ImageError::Io(_) => ErrorKind::Failed,
    }
}

fn catalog_kind(error: &CatalogError) -> ErrorKind {
    match error {
        CatalogError::NoneConfigured
        | CatalogError::Resolve { .. }
        | CatalogError::BadReference { .. }
        | CatalogError::NameMismatch { .. } => ErrorKind::InvalidSource,
        // An unreadable catalog may be the one that has the name: the failure to read it
        // is the answer, not "no such entry".
        CatalogError::NotPublished { first_skipped_kind, .. } => first_skipped_kind.unwrap_or(ErrorKind::InvalidSource),
    }
}

fn layer_kind(error: &LayerError) -> ErrorKind {
    match error {
        LayerError::Entry { .. } | LayerError::Archive(_) => ErrorKind::InvalidImage,
        LayerError::Store(e) => store_kind(e),
    }
}

fn oci_kind(error: &OciError) -> ErrorKind {
    match error {
        OciError::Platform { .. } => ErrorKind::Incompatible,
        OciError::DigestMismatch { .. } | OciError::BlobMismatch { .. } => ErrorKind::DigestMismatch,
        OciError::Unusable(_) => ErrorKind::InvalidImage,
        OciError::Layer(e) => layer_kind(e),
        OciError::Store(e) => store_kind(e),
        OciError::Registry(_) | OciError::Auth(_) => ErrorKind::Failed,
    }
}

fn http_kind(error: &HttpError) -> ErrorKind {
    match error {
        HttpError::Store(e) => store_kind(e),
        HttpError::Client(_)
        | HttpError::Transfer(_)
        | HttpError::Redirect(_)
        | HttpError::Status(_)
        | HttpError::LengthMismatch { .. }
        | HttpError::Stalled(_) => ErrorKind::Failed,
    }
}

/// Results of engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error and all its causes on one line (`outer: cause: root cause`), for replies
/// that carry a single message string, such as D-Bus errors.
pub fn full_message(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_message_walks_the_chain_once() {
        let error = Error::InvalidImage(ImageError::NoRelease);
        assert_eq!(
            full_message(&error),
            "invalid image: no /usr/lib/extension-release.d/extension-release.<NAME> file in the image"
        );
    }

    #[test]
    fn every_variant_has_a_kind() {
        assert_eq!(Error::NotFound("x".into()).kind(), ErrorKind::NotFound);
        assert_eq!(Error::Canceled.kind(), ErrorKind::Canceled);
        assert_eq!(Error::from(StoreError::TooLarge { limit: 1 }).kind(), ErrorKind::TooLarge);
        assert_eq!(Error::from(StoreError::Canceled).kind(), ErrorKind::Canceled);
    }

    #[test]
    fn a_refused_layer_is_an_invalid_image_unless_it_hit_the_limit_or_was_canceled() {
        let entry = LayerError::Entry { entry: "evil.raw".into(), reason: "symbolic links are not allowed" };
        assert_eq!(Error::Oci(OciError::Layer(entry)).kind(), ErrorKind::InvalidImage);
        assert_eq!(Error::Oci(OciError::Layer(LayerError::Archive("short".into()))).kind(), ErrorKind::InvalidImage);
        let limit = LayerError::Store(StoreError::TooLarge { limit: 1 });
        assert_eq!(Error::Oci(OciError::Layer(limit)).kind(), ErrorKind::TooLarge);
        assert_eq!(Error::Oci(OciError::Layer(LayerError::Store(StoreError::Canceled))).kind(), ErrorKind::Canceled);
    }

    #[test]
    fn a_disk_error_is_failed_from_every_source_and_a_cancel_is_canceled_at_any_depth() {
        let full = || StoreError::Io {
            context: "writing /var/lib/kairos/extensions/.tmp/stage-x".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        for error in [
            Error::from(full()),
            Error::Http(HttpError::Store(full())),
            Error::Oci(OciError::Store(full())),
            Error::Oci(OciError::Layer(LayerError::Store(full()))),
        ] {
            assert_eq!(error.kind(), ErrorKind::Failed, "{error:?}");
            let message = full_message(&error);
            assert!(message.contains("No space left on device") && message.contains(".tmp/stage-x"), "{message}");
        }
        for error in [
            Error::from(StoreError::Canceled),
            Error::Http(HttpError::Store(StoreError::Canceled)),
            Error::Oci(OciError::Store(StoreError::Canceled)),
            Error::Oci(OciError::Layer(LayerError::Store(StoreError::Canceled))),
        ] {
            assert_eq!(error.kind(), ErrorKind::Canceled, "{error:?}");
        }
    }

    #[test]
    fn an_index_without_this_platform_is_incompatible() {
        let missing = OciError::Platform { wanted: "linux/amd64".into(), available: "linux/arm64".into() };
        assert_eq!(Error::Oci(missing).kind(), ErrorKind::Incompatible);
    }
}
