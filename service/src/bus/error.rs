//! The one place that turns failures into D-Bus errors.
//!
//! Engine errors carry their contract category ([`ErrorKind`]); authorization and
//! argument problems use the freedesktop names clients already know.

use kairos_extensions_dbus::ErrorKind;
use zbus::message::Header;
use zbus::names::ErrorName;
use zbus::{DBusError, Message};

use crate::engine::{self, full_message};

/// A D-Bus error reply: a name and a human-readable message.
#[derive(Debug, Clone)]
pub struct BusError {
    name: ErrorName<'static>,
    message: String,
}

const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
const INTERACTIVE_REQUIRED: &str = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired";
const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";

impl BusError {
    fn named(name: &str, message: impl Into<String>) -> Self {
        let name = ErrorName::try_from(name.to_owned())
            .unwrap_or_else(|_| ErrorName::from_static_str_unchecked("org.freedesktop.DBus.Error.Failed"));
        Self { name, message: message.into() }
    }

    /// An error of one of the contract's kinds.
    pub fn kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::named(&kind.dbus_name(), message)
    }

    /// `org.freedesktop.DBus.Error.AccessDenied`.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::named(ACCESS_DENIED, message)
    }

    /// `org.freedesktop.DBus.Error.InteractiveAuthorizationRequired`.
    pub fn interactive_required(message: impl Into<String>) -> Self {
        Self::named(INTERACTIVE_REQUIRED, message)
    }

    /// `org.freedesktop.DBus.Error.InvalidArgs`.
    pub fn invalid_args(message: impl Into<String>) -> Self {
        Self::named(INVALID_ARGS, message)
    }

    /// An internal failure that has no better name.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::kind(ErrorKind::Failed, message)
    }

    /// The message sent to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The D-Bus error name.
    pub fn error_name(&self) -> &str {
        self.name.as_str()
    }
}

impl From<engine::Error> for BusError {
    fn from(error: engine::Error) -> Self {
        Self::kind(error.kind(), full_message(&error))
    }
}

impl From<zbus::Error> for BusError {
    fn from(error: zbus::Error) -> Self {
        Self::failed(error.to_string())
    }
}

impl From<kairos_extensions_dbus::InvalidName> for BusError {
    fn from(error: kairos_extensions_dbus::InvalidName) -> Self {
        Self::kind(ErrorKind::InvalidName, error.to_string())
    }
}

impl From<kairos_extensions_dbus::UnknownBootState> for BusError {
    fn from(error: kairos_extensions_dbus::UnknownBootState) -> Self {
        Self::kind(ErrorKind::InvalidBootState, error.to_string())
    }
}

impl DBusError for BusError {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        Message::error(call, self.name.as_ref()).build(&(self.message.as_str(),))
    }

    fn name(&self) -> ErrorName<'_> {
        self.name.as_ref()
    }

    fn description(&self) -> Option<&str> {
        Some(&self.message)
    }
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for BusError {}

/// Results of bus methods. Named `Result` because the `#[interface]` macro recognises
/// fallible methods by that name.
pub type Result<T, E = BusError> = std::result::Result<T, E>;

/// Results of bus helpers (same as [`Result`]).
pub type BusResult<T> = Result<T>;
