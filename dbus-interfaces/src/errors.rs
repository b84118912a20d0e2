//! Error categories of `org.kairos.Extensions1` and their D-Bus names.
//!
//! The engine classifies every failure into one [`ErrorKind`]; the bus layer turns that
//! into a D-Bus error name here, and clients match on the same names. Keeping the table
//! in this crate means the service and its clients cannot drift apart.

/// Prefix shared by every error the service defines.
pub const PREFIX: &str = "org.kairos.Extensions1.Error.";

/// The error categories of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such extension (or job).
    NotFound,
    /// An extension of that name exists, or a boot-state entry is in the way.
    AlreadyExists,
    /// The name does not follow the grammar.
    InvalidName,
    /// The boot state is not one of the four.
    InvalidBootState,
    /// The source cannot be used.
    InvalidSource,
    /// The image is not a usable system extension; the message says why.
    InvalidImage,
    /// The image does not fit this system.
    Incompatible,
    /// The content does not match the pinned digest.
    DigestMismatch,
    /// The image exceeds `max_image_size`.
    TooLarge,
    /// Too many jobs, or the resource is in use.
    Busy,
    /// The job was canceled.
    Canceled,
    /// Anything else; the message says what.
    Failed,
}

impl ErrorKind {
    /// Every kind, in the order of the contract.
    pub const ALL: [ErrorKind; 12] = [
        Self::NotFound,
        Self::AlreadyExists,
        Self::InvalidName,
        Self::InvalidBootState,
        Self::InvalidSource,
        Self::InvalidImage,
        Self::Incompatible,
        Self::DigestMismatch,
        Self::TooLarge,
        Self::Busy,
        Self::Canceled,
        Self::Failed,
    ];

    /// The name without [`PREFIX`].
    pub fn short_name(self) -> &'static str {
        match self {
            Self::NotFound => "NotFound",
            Self::AlreadyExists => "AlreadyExists",
            Self::InvalidName => "InvalidName",
            Self::InvalidBootState => "InvalidBootState",
            Self::InvalidSource => "InvalidSource",
            Self::InvalidImage => "InvalidImage",
            Self::Incompatible => "Incompatible",
            Self::DigestMismatch => "DigestMismatch",
            Self::TooLarge => "TooLarge",
            Self::Busy => "Busy",
            Self::Canceled => "Canceled",
            Self::Failed => "Failed",
        }
    }

    /// The full D-Bus error name.
    pub fn dbus_name(self) -> String {
        format!("{PREFIX}{}", self.short_name())
    }

    /// The kind a D-Bus error name stands for, if it is one of ours.
    pub fn from_dbus_name(name: &str) -> Option<Self> {
        let short = name.strip_prefix(PREFIX)?;
        Self::ALL.into_iter().find(|k| k.short_name() == short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_dbus_name(&kind.dbus_name()), Some(kind));
        }
        assert_eq!(ErrorKind::from_dbus_name("org.freedesktop.DBus.Error.Failed"), None);
    }
}
