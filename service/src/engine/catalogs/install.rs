//! `catalog:NAME[@VERSION]`: the catalogs pick a digest-pinned image, and from there
//! the install is exactly an `oci://` install of it (the same pull, checks and commit),
//! with the catalog entry added to the provenance record.

use std::sync::Arc;
use std::time::Duration;

use kairos_extensions_dbus::ExtensionName;

use super::fetch::Location;
use super::{CatalogError, CatalogOrigin, CatalogSet, Catalogs, Request};
use crate::engine::progress::{Phase, Progress};
use crate::engine::sources::Source;
use crate::engine::sources::reference::ImageReference;
use crate::engine::{Engine, InstallRequest, Installed, Result};

impl Engine {
    /// The catalogs this engine reads, each with how it is shown: those chosen on the
    /// command line, else the configured ones, whose paths are system paths (under the
    /// root, as every configured path is).
    pub fn catalog_locations(&self) -> Vec<(String, Location)> {
        if let Some(chosen) = self.catalogs.chosen() {
            return chosen.to_vec();
        }
        self.config
            .catalogs
            .iter()
            .filter_map(|text| match Location::parse(text) {
                Ok(Location::Path(path)) => {
                    Some((path.display().to_string(), Location::Path(self.layout().host(&path))))
                }
                Ok(url) => Some((url.display(), url)),
                Err(reason) => {
                    // The configuration is validated when loaded; this is a last guard.
                    tracing::warn!(reason, "ignoring an unusable catalog location");
                    None
                }
            })
            .collect()
    }

    /// The catalog state of this engine.
    pub fn catalogs(&self) -> &Catalogs {
        &self.catalogs
    }

    /// The catalogs as read at most `max_age` ago (read now if need be).
    pub fn read_catalogs(&self, max_age: Duration) -> Arc<CatalogSet> {
        self.catalogs.read(&self.catalog_locations(), max_age)
    }

    /// Installs the image the catalogs name for `name` and `wanted`.
    pub(in crate::engine) fn install_catalog(
        &self,
        source: &Source,
        name: &ExtensionName,
        wanted: &Request,
        request: &InstallRequest,
        progress: &dyn Progress,
    ) -> Result<Vec<Installed>> {
        let shown = source.display();
        if let Some(asked) = request.name.as_ref().filter(|asked| *asked != name) {
            return Err(CatalogError::NameMismatch {
                source_text: shown,
                name: name.to_string(),
                asked: asked.to_string(),
            }
            .into());
        }
        self.check_now(request.now && !request.enable.is_empty())?;
        progress.phase(Phase::Resolving);
        // An install acts on the catalogs as they are now, never on an old read.
        let catalogs = self.read_catalogs(Duration::ZERO);
        let (catalog, found) = catalogs.resolve(name, wanted)?;
        let reference = ImageReference::parse(&found.reference).map_err(|e| CatalogError::BadReference {
            catalog: catalog.clone(),
            reference: found.reference.clone(),
            reason: e.to_string(),
        })?;
        tracing::info!(
            extension = %name,
            catalog = %catalog,
            version = %found.version,
            reference = %found.reference,
            "the catalog names an image"
        );
        let origin = CatalogOrigin {
            catalog,
            name: name.to_string(),
            request: wanted.clone(),
            version: found.version,
            reference: found.reference,
        };
        // The image must carry the extension the catalog calls it, and only that one.
        let request = InstallRequest { name: Some(name.clone()), ..request.clone() };
        self.install_oci(&shown, &reference, &request, Some(origin), progress)
    }
}
