//! Authorization of mutating calls.
//!
//! The service asks an [`Authority`]: [`Polkit`] in production, a double in the tests
//! that run without root. With polkit, the subject is always the caller's unique bus name
//! (never a pid, which can be recycled, and never our own process), and anything short
//! of a clear "yes" is a denial: an unreachable polkit, an error, a timeout or an odd
//! reply all deny.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use zbus::Connection;
use zbus::message::{Flags, Header};
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

use super::error::{BusError, BusResult};

/// The polkit actions of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Install an extension (and cancel someone else's job).
    Install,
    /// Enable, disable, refresh.
    Manage,
    /// Remove an extension.
    Remove,
    /// Ask the sources of installed extensions for updates.
    Check,
    /// Update an extension, or roll it back.
    Update,
}

impl Action {
    /// The polkit action id.
    pub fn id(self) -> &'static str {
        match self {
            Self::Install => "org.kairos.extensions1.install",
            Self::Manage => "org.kairos.extensions1.manage",
            Self::Remove => "org.kairos.extensions1.remove",
            Self::Check => "org.kairos.extensions1.check",
            Self::Update => "org.kairos.extensions1.update",
        }
    }
}

/// A non-interactive check answers at once; one that may prompt waits for a person.
const CHECK_TIMEOUT: Duration = Duration::from_secs(25);
const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Who decides whether a caller may act, and who the caller is.
pub trait Authority: Send + Sync {
    /// Whether the caller of `header` may perform `action`; `interactive` when the
    /// caller allows a password prompt. Anything but `Ok` refuses the call.
    fn check<'a>(
        &'a self,
        connection: &'a Connection,
        header: &'a Header<'a>,
        action: Action,
        details: &'a [(&'a str, &'a str)],
        interactive: bool,
    ) -> BoxFuture<'a, BusResult<()>>;

    /// The Unix user id of the caller of `header`.
    fn caller_uid<'a>(&'a self, connection: &'a Connection, header: &'a Header<'a>) -> BoxFuture<'a, BusResult<u32>>;
}

/// polkit on the system bus, and the bus daemon for the caller's uid.
pub struct Polkit;

impl Authority for Polkit {
    fn check<'a>(
        &'a self,
        connection: &'a Connection,
        header: &'a Header<'a>,
        action: Action,
        details: &'a [(&'a str, &'a str)],
        interactive: bool,
    ) -> BoxFuture<'a, BusResult<()>> {
        Box::pin(check(connection, header, action, details, interactive))
    }

    fn caller_uid<'a>(&'a self, connection: &'a Connection, header: &'a Header<'a>) -> BoxFuture<'a, BusResult<u32>> {
        Box::pin(bus_caller_uid(connection, header))
    }
}

/// Asks `authority` whether the sender of `header` may perform `action`, with the
/// interaction the caller allowed, and logs the verdict.
pub async fn authorize(
    authority: &dyn Authority,
    connection: &Connection,
    header: &Header<'_>,
    action: Action,
    details: &[(&str, &str)],
) -> BusResult<()> {
    let interactive = header.primary().flags().contains(Flags::ALLOW_INTERACTIVE_AUTH);
    let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
    let outcome = authority.check(connection, header, action, details, interactive).await;
    match &outcome {
        Ok(()) => tracing::debug!(action = action.id(), sender, "authorized"),
        Err(e) => tracing::info!(action = action.id(), sender, error = %e, "not authorized"),
    }
    outcome
}

async fn check(
    connection: &Connection,
    header: &Header<'_>,
    action: Action,
    details: &[(&str, &str)],
    interactive: bool,
) -> BusResult<()> {
    let subject = Subject::new_for_message_header(header)
        .map_err(|e| BusError::access_denied(format!("cannot identify the caller: {e}")))?;
    let authority = AuthorityProxy::new(connection)
        .await
        .map_err(|e| BusError::access_denied(format!("polkit is not reachable: {e}")))?;
    let details: HashMap<&str, &str> = details.iter().copied().collect();
    let flags =
        if interactive { CheckAuthorizationFlags::ALLOW_USER_INTERACTION } else { CheckAuthorizationFlags::empty() };
    let deadline = if interactive { INTERACTIVE_TIMEOUT } else { CHECK_TIMEOUT };
    let reply =
        tokio::time::timeout(deadline, authority.check_authorization(&subject, action.id(), &details, flags, ""))
            .await
            .map_err(|_| BusError::access_denied("polkit did not answer in time"))?
            .map_err(|e| BusError::access_denied(format!("polkit check failed: {e}")))?;
    if reply.is_authorized {
        return Ok(());
    }
    if reply.is_challenge && !interactive {
        return Err(BusError::interactive_required(format!(
            "{} needs authentication; call again with interactive authorization allowed",
            action.id()
        )));
    }
    Err(BusError::access_denied(format!("not authorized for {}", action.id())))
}

/// The Unix user id of the sender of `header`, as the bus daemon knows it.
async fn bus_caller_uid(connection: &Connection, header: &Header<'_>) -> BusResult<u32> {
    let sender = header.sender().ok_or_else(|| BusError::access_denied("the call has no sender"))?;
    let dbus = zbus::fdo::DBusProxy::new(connection).await?;
    dbus.get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|e| BusError::access_denied(format!("cannot identify the caller: {e}")))
}
