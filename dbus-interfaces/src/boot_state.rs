use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A boot state an extension can be enabled for.
///
/// `common` applies to every boot; the other three are the Kairos boot modes that
/// immucore announces through `/run/cos/<state>_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, zbus::Type)]
#[serde(rename_all = "lowercase")]
#[zbus(signature = "s")]
pub enum BootState {
    /// The normal boot of the active system image.
    Active,
    /// The fallback boot of the passive system image.
    Passive,
    /// The recovery system.
    Recovery,
    /// Every boot, whatever the mode.
    Common,
}

impl BootState {
    /// All states, in the order they are shown to users.
    pub const ALL: [BootState; 4] = [Self::Active, Self::Passive, Self::Recovery, Self::Common];

    /// The lowercase spelling used on disk, on the bus and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Passive => "passive",
            Self::Recovery => "recovery",
            Self::Common => "common",
        }
    }

    /// Whether enabling for this state affects the boot that is running now: `common`
    /// always does, a Kairos mode only during a boot of that mode (`current`, `None` on
    /// a system that is not booted by Kairos).
    pub fn concerns(self, current: Option<BootState>) -> bool {
        self == Self::Common || Some(self) == current
    }
}

impl fmt::Display for BootState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no boot state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown boot state {0:?} (expected one of: active, passive, recovery, common)")]
pub struct UnknownBootState(pub String);

impl FromStr for BootState {
    type Err = UnknownBootState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| UnknownBootState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_state() {
        for state in BootState::ALL {
            assert_eq!(state.as_str().parse::<BootState>(), Ok(state));
        }
    }

    #[test]
    fn refuses_other_spellings() {
        for bad in ["", "Active", "none", "active ", "common\0"] {
            assert!(bad.parse::<BootState>().is_err(), "{bad:?} was accepted");
        }
    }
}
