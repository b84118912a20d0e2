//! Enable, disable, remove, refresh and describe, as both the Manager and the Extension
//! objects offer them. One direction: validate the arguments, authorize, run the engine
//! on a blocking thread, bring the model up to date and announce, then reply.

use std::sync::Arc;

use kairos_extensions_dbus::{BootState, ExtensionName};
use zbus::Connection;
use zbus::message::Header;

use super::authz::{self, Action};
use super::error::{BusError, BusResult};
use super::resync::{Touched, resync, resync_touched};
use super::signals;
use super::state::Shared;
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
/// `touched` is what a change that succeeded concerned; after a failure the store is
/// read whole, as the undo may have touched more than the change meant to.
pub(super) async fn settle(
    shared: &Arc<Shared>,
    connection: &Connection,
    touched: Option<Touched>,
    refreshed: bool,
) -> BusResult<()> {
    let read_back = match touched {
        Some(touched) => resync_touched(shared, connection, touched).await,
        None => resync(shared, connection).await,
    };
    // The change is made: failing to read it back is no failure of this call. Read the
    // whole store once more; should that fail too, the watcher reads it again on the
    // next change it sees. (Files that other changes remove while the store is read are
    // not failures at all: the store's readers leave them out.)
    if let Err(e) = read_back {
        tracing::warn!(error = %e, "reading back a change failed; reading the whole store again");
        if let Err(e) = resync(shared, connection).await {
            tracing::warn!(error = %e, "reading the store after a change failed; the listing may lag until the next change");
        }
    }
    if refreshed {
        signals::refreshed(connection, &shared.merged_names()).await?;
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
    authz::authorize(
        shared.authority.as_ref(),
        connection,
        header,
        Action::Manage,
        &[("name", name.as_str()), ("boot_state", state.as_str())],
    )
    .await?;
    let touched = Touched { names: [name.clone()].into(), ..Touched::default() };
    let result =
        blocking(
            shared,
            move |engine| {
                if enable { engine.enable(&name, state, now) } else { engine.disable(&name, state, now) }
            },
        )
        .await;
    // A failed --now may still have changed the merge; show the truth either way.
    settle(shared, connection, result.is_ok().then_some(touched), now).await?;
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
    authz::authorize(shared.authority.as_ref(), connection, header, Action::Remove, &[("name", name.as_str())]).await?;
    let touched = Touched { removed: [name.clone()].into(), ..Touched::default() };
    let result = blocking(shared, move |engine| engine.remove(&name, now)).await;
    settle(shared, connection, result.is_ok().then_some(touched), now && refresh_ran(&result)).await?;
    result.map(drop)
}

/// Merges the activated extensions again; the names merged afterwards, or an error
/// naming the activated extensions that did not merge.
pub async fn refresh(
    shared: &Arc<Shared>,
    connection: &Connection,
    header: &Header<'_>,
    flags: u64,
) -> BusResult<Vec<String>> {
    let _busy = shared.activity.busy();
    super::args::flags(flags)?;
    authz::authorize(shared.authority.as_ref(), connection, header, Action::Manage, &[]).await?;
    let report = blocking(shared, |engine| engine.refresh()).await?;
    // A refresh changes no link: of the model only what is merged can change.
    settle(shared, connection, Some(Touched::default()), true).await?;
    Ok(report.into_result()?.into_iter().collect())
}

/// The JSON description of `name`: every field plus the full extension-release, from
/// the model, with how the image is protected (read once per image identity).
pub async fn describe(shared: &Arc<Shared>, connection: &Connection, name: &str) -> BusResult<String> {
    let _busy = shared.activity.busy();
    let name = super::args::name(name)?;
    let listed = shared.snapshot(name.as_str()).ok_or_else(|| engine::Error::NotFound(name.to_string()))?;
    let snapshot = (*listed).clone();
    let described = blocking(shared, move |engine| Ok(engine.verified(snapshot))).await?;
    if described.status != listed.status {
        // Verifying found what listing cannot see (the policy refuses the image): the
        // model learns it after this reply, and clients with it.
        let (shared, connection) = (shared.clone(), connection.clone());
        tokio::spawn(async move {
            if let Err(e) = resync(&shared, &connection).await {
                tracing::warn!(error = %e, "updating objects after a description failed");
            }
        });
    }
    let mut description = kairos_extensions_dbus::ExtensionDescription::from(&described);
    description.updates = Some((&shared.model().update_info(name.as_str())).into());
    description.to_json().map_err(|e| BusError::failed(format!("cannot describe {name}: {e}")))
}
