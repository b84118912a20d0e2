use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whether an extension can take part in the merge, and if not, what stops it: the
/// `Status` property of `org.kairos.Extensions1.Extension`.
///
/// When several apply, the first in this order is reported: with its image gone nothing
/// else can be said; a mask or an image that shadows ours means systemd never looks at
/// our image at all, so what is wrong with that image comes after them. `Compatible` and
/// `IncompatibleReason` still tell the image's own verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, zbus::Type)]
#[serde(rename_all = "kebab-case")]
#[zbus(signature = "s")]
pub enum ExtensionStatus {
    /// Nothing stops it.
    Ok,
    /// Its boot-state links or its provenance record exist, its image does not.
    ImageMissing,
    /// An empty directory of its name in `/etc/extensions` masks it.
    Masked,
    /// Another image or directory of its name is found first by systemd-sysext.
    Shadowed,
    /// systemd would refuse it: no or misnamed release file, not an image it can read.
    Invalid,
    /// The image policy or the signature check refuses it.
    Refused,
    /// Its extension-release does not fit the host (ID, VERSION_ID, SYSEXT_LEVEL,
    /// ARCHITECTURE, SYSEXT_SCOPE).
    Incompatible,
}

impl ExtensionStatus {
    /// Every status, in the order of precedence.
    pub const ALL: [ExtensionStatus; 7] =
        [Self::ImageMissing, Self::Masked, Self::Shadowed, Self::Invalid, Self::Refused, Self::Incompatible, Self::Ok];

    /// The spelling of the contract (`ok`, `image-missing`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ImageMissing => "image-missing",
            Self::Masked => "masked",
            Self::Shadowed => "shadowed",
            Self::Invalid => "invalid",
            Self::Refused => "refused",
            Self::Incompatible => "incompatible",
        }
    }

    /// Of two statuses that both apply, the one to report.
    pub fn prevailing(self, other: Self) -> Self {
        let rank = |s: Self| Self::ALL.iter().position(|x| *x == s).unwrap_or(Self::ALL.len());
        if rank(other) < rank(self) { other } else { self }
    }
}

impl fmt::Display for ExtensionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no extension status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown extension status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for ExtensionStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_nothing_else_parses() {
        for status in ExtensionStatus::ALL {
            assert_eq!(status.as_str().parse::<ExtensionStatus>(), Ok(status));
        }
        assert_eq!(ExtensionStatus::ImageMissing.as_str(), "image-missing");
        for bad in ["Masked", "image_missing", "", "ok "] {
            assert!(bad.parse::<ExtensionStatus>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_image_going_missing_outranks_everything_and_ok_nothing() {
        use ExtensionStatus::*;
        assert_eq!(Ok.prevailing(Incompatible), Incompatible);
        assert_eq!(Incompatible.prevailing(Masked), Masked);
        assert_eq!(Masked.prevailing(Shadowed), Masked);
        assert_eq!(Invalid.prevailing(ImageMissing), ImageMissing);
        assert_eq!(Refused.prevailing(Incompatible), Refused);
    }
}
