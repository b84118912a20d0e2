//! The engine's error, and the one place that classifies it into the contract's kinds.

use kairos_extensions_dbus::{ErrorKind, InvalidName, UnknownBootState};

use super::config::ConfigError;
use super::image::ImageError;
use super::layout::NotAbsolute;
use super::release::{Incompatible, NoOsRelease};
use super::sources::file::FileSourceError;
use super::sources::http::HttpError;
use super::sources::layer::LayerError;
use super::sources::oci::OciError;
use super::store::StoreError;
use super::sysext::SysextError;

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
    Verity(#[source] super::trust::TrustError),
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
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_) | Self::Store(StoreError::Exists(_) | StoreError::Foreign { .. }) => {
                ErrorKind::AlreadyExists
            }
            Self::InvalidName(_) => ErrorKind::InvalidName,
            Self::InvalidBootState(_) => ErrorKind::InvalidBootState,
            Self::InvalidSource { .. } => ErrorKind::InvalidSource,
            Self::InvalidImage(ImageError::Command(_) | ImageError::Io(_)) => ErrorKind::Failed,
            Self::InvalidImage(_) => ErrorKind::InvalidImage,
            Self::Incompatible { .. } | Self::Unusable { .. } | Self::Oci(OciError::Platform { .. }) => {
                ErrorKind::Incompatible
            }
            Self::FileSource(_) => ErrorKind::InvalidSource,
            Self::PolicyRefused(_) => ErrorKind::InvalidImage,
            Self::Verity(super::trust::TrustError::Io(_)) => ErrorKind::Failed,
            Self::Verity(_) => ErrorKind::InvalidImage,
            Self::Http(HttpError::Store(StoreError::TooLarge { .. })) => ErrorKind::TooLarge,
            Self::Http(HttpError::Store(StoreError::Canceled)) => ErrorKind::Canceled,
            Self::Http(_) => ErrorKind::Failed,
            Self::Oci(OciError::DigestMismatch { .. } | OciError::BlobMismatch { .. }) => ErrorKind::DigestMismatch,
            Self::Oci(
                OciError::Store(StoreError::TooLarge { .. })
                | OciError::Layer(LayerError::Store(StoreError::TooLarge { .. })),
            ) => ErrorKind::TooLarge,
            Self::Oci(
                OciError::Store(StoreError::Canceled) | OciError::Layer(LayerError::Store(StoreError::Canceled)),
            ) => ErrorKind::Canceled,
            Self::Oci(OciError::Layer(_) | OciError::Unusable(_)) => ErrorKind::InvalidImage,
            Self::Oci(_) => ErrorKind::Failed,
            Self::DigestMismatch { .. } => ErrorKind::DigestMismatch,
            Self::Store(StoreError::TooLarge { .. }) => ErrorKind::TooLarge,
            Self::Canceled | Self::Store(StoreError::Canceled) => ErrorKind::Canceled,
            Self::NowNeedsLiveRoot { .. }
            | Self::NotMerged { .. }
            | Self::Unmerged(_)
            | Self::Host(_)
            | Self::Config(_)
            | Self::Layout(_)
            | Self::Store(_)
            | Self::Sysext(_) => ErrorKind::Failed,
        }
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
    fn an_index_without_this_platform_is_incompatible() {
        let missing = OciError::Platform { wanted: "linux/amd64".into(), available: "linux/arm64".into() };
        assert_eq!(Error::Oci(missing).kind(), ErrorKind::Incompatible);
    }
}
