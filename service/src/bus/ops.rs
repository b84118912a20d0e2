//! Enable, disable, remove and refresh, as both the Manager and the Extension objects
//! offer them: validate, authorize, run the engine on a blocking thread, then let the
//! reconciler announce what changed.

use std::sync::Arc;

use kairos_extensions_dbus::{BootState, ExtensionName, MANAGER_PATH};
use zbus::Connection;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use super::authz::{self, Action};
use super::error::{BusError, BusResult};
use super::manager::Manager;
use super::state::Shared;
use super::sync;
use crate::engine::{self, Engine};

/// Runs an engine call on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    shared: &Arc<Shared>,
    work: impl FnOnce(&Engine) -> engine::Result<T> + Send + 'static,
) -> BusResult<T> {
    let engine = shared.engine.clone();
    tokio::task::spawn_blocking(move || work(&engine))
        .await
        .map_err(|e| BusError::failed(format!("worker thread failed: {e}")))?
        .map_err(BusError::from)
}

/// After a mutation: update objects and signals; announce the refresh when there was one.
async fn settle(shared: &Arc<Shared>, connection: &Connection, refreshed: bool) -> BusResult<()> {
    sync::reconcile(shared, connection).await?;
    if refreshed {
        let emitter = SignalEmitter::new(connection, MANAGER_PATH)?;
        Manager::refreshed(&emitter, shared.merged_names()).await?;
    }
    Ok(())
}

/// Whether a refresh may have run: on success, or on a failure of the merge itself (a
/// `--now` that did not merge is rolled back, which refreshes too). Errors found before
/// any refresh (a missing extension, an incompatible one) leave the merge untouched.
fn refresh_ran<T>(result: &BusResult<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => e.error_name() == kairos_extensions_dbus::ErrorKind::Failed.dbus_name(),
    }
}

/// Enables or disables `name` for `state`.
pub async fn set_enabled(
    shared: &Arc<Shared>,
    connection: &Connection,
    header: &Header<'_>,
    name: &str,
    state: &str,
    flags: u64,
    enable: bool,
) -> BusResult<()> {
    let _busy = shared.activity.busy();
    let name = super::args::name(name)?;
    let state: BootState = super::args::boot_state(state)?;
    let now = super::args::flags(flags)?;
    authz::authorize(connection, header, Action::Manage, &[("name", name.as_str()), ("boot_state", state.as_str())])
        .await?;
    let result =
        blocking(
            shared,
            move |engine| {
                if enable { engine.enable(&name, state, now) } else { engine.disable(&name, state, now) }
            },
        )
        .await;
    // A failed --now may still have changed the merge; show the truth either way.
    settle(shared, connection, now).await?;
    result.map(drop)
}

/// Removes `name`.
pub async fn remove(
    shared: &Arc<Shared>,
    connection: &Connection,
    header: &Header<'_>,
    name: &str,
    flags: u64,
) -> BusResult<()> {
    let _busy = shared.activity.busy();
    let name: ExtensionName = super::args::name(name)?;
    let now = super::args::flags(flags)?;
    authz::authorize(connection, header, Action::Remove, &[("name", name.as_str())]).await?;
    let result = blocking(shared, move |engine| engine.remove(&name, now)).await;
    settle(shared, connection, now && refresh_ran(&result)).await?;
    result.map(drop)
}

/// The JSON description of `name`: every field plus the full extension-release.
pub async fn describe(shared: &Arc<Shared>, connection: &Connection, name: &str) -> BusResult<String> {
    let _busy = shared.activity.busy();
    let name = super::args::name(name)?;
    sync::reconcile(shared, connection).await?;
    let wanted = name.clone();
    let ext = blocking(shared, move |engine| engine.describe(&wanted)).await?;
    // Verifying may have found the image refused: the object says so from now on.
    sync::reconcile(shared, connection).await?;
    kairos_extensions_dbus::ExtensionDescription::from(&ext)
        .to_json()
        .map_err(|e| BusError::failed(format!("cannot describe {name}: {e}")))
}
