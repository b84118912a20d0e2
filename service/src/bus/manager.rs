//! `org.kairos.Extensions1.Manager` at `/org/kairos/Extensions1`.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use kairos_extensions_dbus::paths::extension_path;
use kairos_extensions_dbus::{BootState, ErrorKind};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, ObjectPath, OwnedFd, OwnedObjectPath, OwnedVariant, interface};

use super::authz::{self, Action};
use super::error::{BusError, Result};
use super::state::Shared;
use super::{args, job, ops, updates};
use crate::engine::boot;
use crate::engine::catalogs::{LIST_MAX_AGE, fetch_kind};
use crate::engine::sources::{self, Source};

/// The manager object.
pub struct Manager {
    shared: Arc<Shared>,
}

impl Manager {
    /// The manager over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl Manager {
    /// Asks whether the caller may install `source` (as displayed), with the details
    /// polkit rules see.
    async fn authorize_install(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        source: &str,
        request: &crate::engine::InstallRequest,
    ) -> Result<()> {
        let name = request.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        let details = [("source", source), ("name", name.as_str())];
        authz::authorize(self.shared.authority.as_ref(), connection, header, Action::Install, &details).await
    }
}

impl Manager {
    /// An authorized install whose name is known before anything is read (the `name`
    /// option, or a file called `NAME.raw`) fails here, before a job downloads what the
    /// commit would refuse. The engine checks again when it commits.
    fn refuse_known_installed(&self, file_name: Option<&str>, request: &crate::engine::InstallRequest) -> Result<()> {
        let Some(name) = crate::engine::early_name(file_name, request) else { return Ok(()) };
        match self.shared.snapshot(name.as_str()) {
            Some(existing) if crate::engine::refuses(&existing, request) => {
                Err(crate::engine::Error::AlreadyExists(name.to_string()).into())
            }
            _ => Ok(()),
        }
    }
}

/// The longest file name `InstallFromFd` accepts for display.
const MAX_FILENAME: usize = 4096;

#[interface(name = "org.kairos.Extensions1.Manager")]
impl Manager {
    /// Every installed extension: name, version, enabled boot states, merged now, object
    /// path.
    #[zbus(out_args("extensions"))]
    fn list_extensions(&self) -> Vec<(String, String, Vec<String>, bool, OwnedObjectPath)> {
        let _busy = self.shared.activity.busy();
        self.shared
            .model()
            .extensions()
            .map(|e| {
                let enabled = e.enabled.iter().map(|s| s.as_str().to_owned()).collect();
                (e.name.clone(), e.version.clone(), enabled, e.merged, extension_path(&e.name))
            })
            .collect()
    }

    /// The object path of the extension called `name`.
    #[zbus(out_args("path"))]
    fn get_extension(&self, name: &str) -> Result<OwnedObjectPath> {
        let _busy = self.shared.activity.busy();
        let name = args::name(name)?;
        match self.shared.snapshot(name.as_str()) {
            Some(_) => Ok(extension_path(name.as_str())),
            None => Err(crate::engine::Error::NotFound(name.to_string()).into()),
        }
    }

    /// A JSON object with every known field of the extension, and its extension-release.
    #[zbus(out_args("json"))]
    async fn describe(&self, name: &str, #[zbus(connection)] connection: &Connection) -> Result<String> {
        ops::describe(&self.shared, connection, name).await
    }

    /// Installs from `oci://`, `http(s)://`, `catalog:NAME[@VERSION]` or (root only)
    /// `file://`. Returns once the
    /// source is parsed and the caller authorized; the work runs in the returned job.
    #[zbus(out_args("job_id", "job_path"))]
    async fn install(
        &self,
        source: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(u64, OwnedObjectPath)> {
        let _busy = self.shared.activity.busy();
        let request = args::install_options(options)?;
        let parsed = Source::parse(source)?;
        // A catalog entry names its extension: polkit rules see that name.
        let request = match &parsed {
            Source::Catalog { name, .. } if request.name.is_none() => {
                crate::engine::InstallRequest { name: Some(name.clone()), ..request }
            }
            _ => request,
        };
        let display = parsed.display();
        let uid = self.shared.authority.caller_uid(connection, &header).await?;
        match &parsed {
            Source::File(_) if uid != 0 => {
                return Err(BusError::access_denied(
                    "file:// sources are accepted from root only; other callers pass the file with InstallFromFd",
                ));
            }
            _ => {}
        }
        self.authorize_install(connection, &header, &display, &request).await?;
        self.refuse_known_installed(crate::engine::source_file_name(&parsed).as_deref(), &request)?;
        let engine = self.shared.engine.clone();
        let refreshes = request.now && !request.enable.is_empty();
        // The same source with the same options is the same work, whoever asks. The
        // source as given, not as displayed: redaction makes different URLs look alike
        // (a query is all that tells two signed downloads apart). Hashed, so the table
        // keeps no credentials.
        let key = Some(job::work_key(source, &request));
        job::start_install(
            &self.shared,
            connection,
            display,
            key,
            uid,
            refreshes,
            Box::new(move |progress, _| engine.install_source(&parsed, &request, progress)),
        )
        .await
    }

    /// Installs the image behind `fd`, a regular file opened for reading. `filename`
    /// is only for display. This is how callers other than root install local files.
    #[zbus(out_args("job_id", "job_path"))]
    async fn install_from_fd(
        &self,
        fd: OwnedFd,
        filename: &str,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(u64, OwnedObjectPath)> {
        let _busy = self.shared.activity.busy();
        let request = args::install_options(options)?;
        if filename.len() > MAX_FILENAME || filename.chars().any(char::is_control) {
            return Err(BusError::invalid_args("filename must be printable and at most 4096 bytes"));
        }
        let display = if filename.is_empty() { "fd:".to_owned() } else { format!("fd:{filename}") };
        let uid = self.shared.authority.caller_uid(connection, &header).await?;
        self.authorize_install(connection, &header, &display, &request).await?;
        // The caller's file may be on a file system that never answers (a FUSE daemon
        // that hangs): it is looked at only once the caller is authorized, and off the
        // dispatcher, so a hanging fstat holds one blocking thread, not the service.
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(fd));
        let (file, total) = tokio::task::spawn_blocking(move || open_for_install(file))
            .await
            .map_err(|_| BusError::failed("checking the file descriptor stopped"))??;
        self.refuse_known_installed(std::path::Path::new(filename).file_name().and_then(|n| n.to_str()), &request)?;
        let engine = self.shared.engine.clone();
        let refreshes = request.now && !request.enable.is_empty();
        let source = display.clone();
        // Two descriptors are two files, whatever their names: never shared.
        job::start_install(
            &self.shared,
            connection,
            display,
            None,
            uid,
            refreshes,
            Box::new(move |progress, _| {
                engine.install_from_reader(&source, file, total, &request, progress).map(|i| vec![i])
            }),
        )
        .await
    }

    /// Enables `name` for `boot_state` (idempotent). Flag 1 (`NOW`) also merges it now
    /// when the state concerns this boot.
    async fn enable(
        &self,
        name: &str,
        boot_state: &str,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<()> {
        ops::set_enabled(&self.shared, connection, &header, name, boot_state, flags, true).await
    }

    /// Disables `name` for `boot_state` (idempotent). Flag 1 (`NOW`) also unmerges it
    /// when no other enabled state still wants it for this boot.
    async fn disable(
        &self,
        name: &str,
        boot_state: &str,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<()> {
        ops::set_enabled(&self.shared, connection, &header, name, boot_state, flags, false).await
    }

    /// Disables `name` everywhere and deletes it. Flag 1 (`NOW`) refreshes the merge.
    async fn remove(
        &self,
        name: &str,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<()> {
        ops::remove(&self.shared, connection, &header, name, flags).await
    }

    /// Merges the activated extensions again; returns the names merged afterwards. Fails,
    /// naming them, when activated extensions did not merge.
    #[zbus(out_args("merged"))]
    async fn refresh(
        &self,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<Vec<String>> {
        ops::refresh(&self.shared, connection, &header, flags).await
    }

    /// Starts a check job: asks the source of each extension in `names` (every one when
    /// empty) whether it has something newer.
    #[zbus(out_args("job_id", "job_path"))]
    async fn check_updates(
        &self,
        names: Vec<String>,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(u64, OwnedObjectPath)> {
        updates::check(&self.shared, connection, &header, names, flags).await
    }

    /// Starts an update job for `names` (every extension with an update available when
    /// empty). Options: `now` (b), `version` (s, catalog installs only).
    #[zbus(out_args("job_id", "job_path"))]
    async fn update(
        &self,
        names: Vec<String>,
        options: HashMap<String, OwnedVariant>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<(u64, OwnedObjectPath)> {
        updates::update(&self.shared, connection, &header, names, options).await
    }

    /// Puts the previous version of `name` back. Flag 1 (`NOW`) merges it again when it
    /// is merged now.
    async fn rollback(
        &self,
        name: &str,
        flags: u64,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
    ) -> Result<()> {
        updates::rollback(&self.shared, connection, &header, name, flags).await
    }

    /// Every job: id, type, state, object path.
    #[zbus(out_args("jobs"))]
    fn list_jobs(&self) -> Vec<(u64, String, String, OwnedObjectPath)> {
        self.shared.jobs.list()
    }

    /// Every entry of the catalogs: name, title, description, the version a bare-name
    /// install picks here, every version this machine can install. From a read at most
    /// [`LIST_MAX_AGE`] old, so callers (everyone may call) cannot make the service
    /// download on every call. Fails only when no configured catalog could be read.
    #[zbus(out_args("entries"))]
    async fn list_catalog(&self) -> Result<Vec<(String, String, String, String, Vec<String>)>> {
        let _busy = self.shared.activity.busy();
        let catalogs = ops::blocking(&self.shared, |engine| Ok(engine.read_catalogs(LIST_MAX_AGE))).await?;
        if catalogs.catalogs.is_empty()
            && let Some(first) = catalogs.skipped.first()
        {
            let all: Vec<String> = catalogs.skipped.iter().map(ToString::to_string).collect();
            return Err(BusError::kind(
                fetch_kind(&first.error),
                format!("no catalog could be read: {}", all.join("; ")),
            ));
        }
        Ok(catalogs.entries().into_iter().map(|e| (e.name, e.title, e.description, e.latest, e.versions)).collect())
    }

    /// The configured catalogs, in the order they are searched.
    #[zbus(property(emits_changed_signal = "const"))]
    fn catalogs(&self) -> Vec<String> {
        self.shared.engine.catalog_locations().into_iter().map(|(shown, _)| shown).collect()
    }

    /// The service version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    /// The current boot: `active`, `passive`, `recovery` or `none`.
    #[zbus(property(emits_changed_signal = "false"))]
    fn boot_state(&self) -> &str {
        boot::describe(self.shared.engine.boot_state())
    }

    /// The boot states extensions can be enabled for.
    #[zbus(property(emits_changed_signal = "const"))]
    fn boot_states(&self) -> Vec<String> {
        BootState::ALL.iter().map(|s| s.as_str().to_owned()).collect()
    }

    /// The extensions merged right now.
    #[zbus(property)]
    fn merged(&self) -> Vec<String> {
        self.shared.merged_names()
    }

    /// The image policy in force (`permissive`, `verity`, `strict` or a policy string).
    #[zbus(property(emits_changed_signal = "const"))]
    fn image_policy(&self) -> String {
        self.shared.engine.config().image_policy.to_string()
    }

    /// Where images are stored.
    #[zbus(property(emits_changed_signal = "const"))]
    fn store_directory(&self) -> String {
        self.shared.engine.layout().store_system().display().to_string()
    }

    /// An extension was installed.
    #[zbus(signal)]
    pub async fn extension_installed(emitter: &SignalEmitter<'_>, name: &str, path: ObjectPath<'_>)
    -> zbus::Result<()>;

    /// An extension was removed.
    #[zbus(signal)]
    pub async fn extension_removed(emitter: &SignalEmitter<'_>, name: &str, path: ObjectPath<'_>) -> zbus::Result<()>;

    /// An extension was enabled for a boot state.
    #[zbus(signal)]
    pub async fn extension_enabled(emitter: &SignalEmitter<'_>, name: &str, boot_state: &str) -> zbus::Result<()>;

    /// An extension was disabled for a boot state.
    #[zbus(signal)]
    pub async fn extension_disabled(emitter: &SignalEmitter<'_>, name: &str, boot_state: &str) -> zbus::Result<()>;

    /// An update or a rollback replaced the image of an extension.
    #[zbus(signal)]
    pub async fn extension_updated(
        emitter: &SignalEmitter<'_>,
        name: &str,
        old_version: &str,
        new_version: &str,
    ) -> zbus::Result<()>;

    /// The merge was refreshed; these are merged now.
    #[zbus(signal)]
    pub async fn refreshed(emitter: &SignalEmitter<'_>, merged: Vec<String>) -> zbus::Result<()>;

    /// A job was created.
    #[zbus(signal)]
    pub async fn job_new(emitter: &SignalEmitter<'_>, id: u64, path: ObjectPath<'_>) -> zbus::Result<()>;

    /// A job finished: `done`, `failed` or `canceled`. Its object goes away right after.
    #[zbus(signal)]
    pub async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u64,
        path: ObjectPath<'_>,
        result: &str,
    ) -> zbus::Result<()>;
}

/// `file` checked as an image to install (a regular file open for reading), at its
/// start, with its size when it has one.
fn open_for_install(mut file: std::fs::File) -> Result<(std::fs::File, Option<u64>)> {
    sources::file::check_fd(&file).map_err(crate::engine::Error::from)?;
    file.seek(SeekFrom::Start(0)).map_err(|e| {
        BusError::kind(ErrorKind::InvalidSource, format!("the file descriptor cannot be read from the start: {e}"))
    })?;
    let total = file.metadata().ok().map(|m| m.len());
    Ok((file, total))
}
