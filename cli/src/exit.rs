//! How kairos-ext ends: one exit status per kind of failure, and one sentence for it,
//! the same whether the failure came from the engine offline or from the service.
//!
//! The statuses follow systemd's LSB-derived ones where they have a meaning here
//! (`EXIT_INVALIDARGUMENT` 2, `EXIT_NOPERMISSION` 4, `EXIT_NOTINSTALLED` 5); 3 is ours.

use std::process::ExitCode;

use kairos_extensions_dbus::ErrorKind;
use kairos_extensionsd::engine;

/// The exit statuses, as kairos-ext(1) documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Anything that failed and is none of the below.
    Failure = 1,
    /// The command line is wrong.
    Usage = 2,
    /// No such extension or job.
    NotFound = 3,
    /// polkit (or the file system, offline) does not allow it.
    NotAuthorized = 4,
    /// The service is not running and cannot be started, or the bus is unreachable.
    Unavailable = 5,
}

impl Exit {
    /// The status of an error of the contract's `kind`, offline and through the service.
    pub fn of_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NotFound => Self::NotFound,
            _ => Self::Failure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// A failure already put in words, with its exit status.
#[derive(Debug)]
pub struct Failure {
    /// How kairos-ext exits.
    pub exit: Exit,
    /// What it says.
    pub message: String,
}

impl Failure {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit status and the sentence for `error`: the status of the first [`Failure`] or
/// engine error in its chain; the text of the whole chain, each cause once, in the words
/// of the command line.
pub fn describe(error: &anyhow::Error) -> (Exit, String) {
    let mut exit = None;
    let mut message = String::new();
    for cause in error.chain() {
        let text = if let Some(failure) = cause.downcast_ref::<Failure>() {
            exit = exit.or(Some(failure.exit));
            failure.message.clone()
        } else if let Some(engine_error) = cause.downcast_ref::<engine::Error>() {
            exit = exit.or(Some(engine_exit(engine_error)));
            // The service sends exactly this text: the engine's chain, each cause once.
            append(&mut message, &engine::full_message(engine_error));
            break;
        } else {
            cause.to_string()
        };
        append(&mut message, &text);
        if cause.downcast_ref::<Failure>().is_some() {
            break;
        }
    }
    (exit.unwrap_or(Exit::Failure), in_cli_words(&message))
}

/// `message: text`, unless `message` says it already.
fn append(message: &mut String, text: &str) {
    if text.is_empty() || message.ends_with(text) {
        return;
    }
    if !message.is_empty() {
        message.push_str(": ");
    }
    message.push_str(text);
}

/// The status of an engine error: its kind's, except that a refusal by the file system
/// (offline, as a user who may not write the store) is a matter of authorization.
fn engine_exit(error: &engine::Error) -> Exit {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = cause {
        if inner.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
            return Exit::NotAuthorized;
        }
        cause = inner.source();
    }
    Exit::of_kind(error.kind())
}

/// The engine and the service name their options as the bus does (`replace`, `name`,
/// `now`); a person at the command line knows them as flags.
const FLAG_WORDS: [(&str, &str); 4] = [
    ("pass replace to overwrite it", "pass --replace to overwrite it"),
    ("choose one with the name option", "choose one with --name"),
    ("'now' acts on the running system", "--now acts on the running system"),
    ("but the digest option says", "but --digest says"),
];

/// `message` with the bus's option names replaced by the command line's flags.
pub fn in_cli_words(message: &str) -> String {
    FLAG_WORDS.iter().fold(message.to_owned(), |text, (bus, cli)| text.replace(bus, cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_messages_name_flags_not_bus_options() {
        let exists = engine::Error::AlreadyExists("k3s".into());
        let (exit, text) = describe(&anyhow::Error::from(exists));
        assert_eq!(exit, Exit::Failure);
        assert_eq!(text, "extension \"k3s\" is already installed; pass --replace to overwrite it");
        let now = engine::Error::NowNeedsLiveRoot { root: "/mnt".into() };
        assert!(describe(&now.into()).1.starts_with("--now acts on the running system"));
        let ambiguous = engine::Error::InvalidImage(engine::image::ImageError::Ambiguous(vec!["a".into(), "b".into()]));
        assert!(describe(&ambiguous.into()).1.ends_with("choose one with --name"));
    }

    #[test]
    fn every_failure_kind_has_its_status() {
        let missing = anyhow::Error::from(engine::Error::NotFound("k3s".into()));
        assert_eq!(describe(&missing), (Exit::NotFound, "no extension named \"k3s\" is installed".to_owned()));
        let failure = anyhow::Error::from(Failure::new(Exit::Unavailable, "no service")).context("listing");
        assert_eq!(describe(&failure), (Exit::Unavailable, "listing: no service".to_owned()));
        assert_eq!(describe(&anyhow::anyhow!("plain")), (Exit::Failure, "plain".to_owned()));
    }

    #[test]
    fn a_refusal_of_the_file_system_offline_is_not_authorized() {
        let denied = engine::store::StoreError::Io {
            context: "creating /var/lib/kairos/extensions/.tmp".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(describe(&engine::Error::from(denied).into()).0, Exit::NotAuthorized);
    }
}
