use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a job does: the `Type` property of a job and the type column of `ListJobs`.
///
/// On the bus it is a string (signature `s`), so a proxy can hand it out typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, zbus::Type)]
#[serde(rename_all = "lowercase")]
#[zbus(signature = "s")]
pub enum JobType {
    /// Installs an extension from a source (`Install`, `InstallFromFd`).
    Install,
    /// Looks for newer versions of installed extensions (`CheckUpdates`).
    Check,
    /// Replaces extensions with newer versions (`Update`).
    Update,
}

impl JobType {
    /// Every type, in the order of the contract.
    pub const ALL: [JobType; 3] = [Self::Install, Self::Check, Self::Update];

    /// The spelling on the bus.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Check => "check",
            Self::Update => "update",
        }
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no job type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job type {0:?} (expected one of: install, check, update)")]
pub struct UnknownJobType(pub String);

impl FromStr for JobType {
    type Err = UnknownJobType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == s).ok_or_else(|| UnknownJobType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type_and_refuses_other_spellings() {
        for kind in JobType::ALL {
            assert_eq!(kind.as_str().parse::<JobType>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        for bad in ["", "Install", "installs", "check "] {
            assert_eq!(bad.parse::<JobType>(), Err(UnknownJobType(bad.to_owned())));
        }
    }
}
