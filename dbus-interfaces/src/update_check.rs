use std::fmt;

use serde::{Deserialize, Serialize};

/// What the last update check of an extension found out about where updates come from:
/// the `UpdateCheck` property of `org.kairos.Extensions1.Extension`.
///
/// Whether an update is available is told apart (`UpdateAvailable`): this says whether
/// the question could be answered at all, and if not, why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, zbus::Type)]
#[serde(from = "String", into = "String")]
#[zbus(signature = "s")]
pub enum UpdateCheck {
    /// Never checked since the service started (the empty string).
    #[default]
    NotChecked,
    /// The source was asked; `UpdateAvailable` has the answer.
    Ok,
    /// Installed from a digest-pinned reference (`@sha256:` or `#sha256=`), or an exact
    /// catalog version: the content never changes, so it never updates.
    Pinned,
    /// Installed from a local file: nothing to ask.
    Local,
    /// The source cannot tell a new version from the old one: an HTTP server that gave
    /// neither `ETag` nor `Last-Modified`, or an image without a recorded source.
    CannotCheck,
    /// Asking the source failed; the message says why.
    Failed(String),
}

impl UpdateCheck {
    /// The spelling of the contract: `""`, `ok`, `pinned`, `local`, `cannot-check`, or
    /// the error message.
    pub fn as_str(&self) -> &str {
        match self {
            Self::NotChecked => "",
            Self::Ok => "ok",
            Self::Pinned => "pinned",
            Self::Local => "local",
            Self::CannotCheck => "cannot-check",
            Self::Failed(message) => message,
        }
    }
}

impl From<String> for UpdateCheck {
    fn from(text: String) -> Self {
        match text.as_str() {
            "" => Self::NotChecked,
            "ok" => Self::Ok,
            "pinned" => Self::Pinned,
            "local" => Self::Local,
            "cannot-check" => Self::CannotCheck,
            _ => Self::Failed(text),
        }
    }
}

impl From<UpdateCheck> for String {
    fn from(check: UpdateCheck) -> Self {
        check.as_str().to_owned()
    }
}

impl fmt::Display for UpdateCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips_and_anything_else_is_a_failure_message() {
        for check in [
            UpdateCheck::NotChecked,
            UpdateCheck::Ok,
            UpdateCheck::Pinned,
            UpdateCheck::Local,
            UpdateCheck::CannotCheck,
        ] {
            assert_eq!(UpdateCheck::from(check.as_str().to_owned()), check);
        }
        let failed = UpdateCheck::from("registry: connection refused".to_owned());
        assert_eq!(failed, UpdateCheck::Failed("registry: connection refused".into()));
        assert_eq!(String::from(failed), "registry: connection refused");
    }
}
