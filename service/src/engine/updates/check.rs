//! Asking the source an extension was installed from whether it has something newer,
//! without downloading it: a registry tag is resolved to its digest now (a manifest
//! HEAD), an HTTP(S) URL answers a HEAD with its validators.

use std::time::Duration;

use kairos_extensions_dbus::UpdateCheck;
use oci_client::client::{ClientConfig, ClientProtocol};
use reqwest::Url;

use super::super::catalogs::{self, CatalogOrigin, CatalogSet, Request};
use super::super::config::Config;
use super::super::layout::Layout;
use super::super::meta::{Provenance, Validators};
use super::super::progress::Progress;
use super::super::sources::reference::ImageReference;
use super::super::sources::{self, Source, http, registry_auth};
use super::super::{full_message, meta};

/// Where updates of an extension come from, as its provenance record tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A registry tag: newer when the tag resolves to another digest than recorded.
    Registry {
        /// The tag's reference, as installed.
        reference: ImageReference,
        /// The digest it resolved to at install time.
        resolved: Option<String>,
    },
    /// An HTTP(S) download: newer when the server's validators changed.
    Download {
        /// The URL, as recorded (credentials were never recorded).
        url: Url,
        /// What the server said at install time.
        validators: Validators,
    },
    /// A catalog entry: newer when the catalogs offer another version under the
    /// recorded request; an exact version is a pin, which reports newer versions
    /// without updating to them.
    Catalog(CatalogOrigin),
    /// Content pinned by digest: never updates.
    Pinned,
    /// A local file or file descriptor: nothing to ask.
    Local,
    /// No usable source: installed by someone else, or recorded in a form that cannot
    /// be asked again (a signed URL, whose query is never recorded).
    Unknown(String),
}

/// The origin of an extension with the provenance `record` (none for images put in
/// the store by someone else).
pub fn origin(record: Option<&Provenance>) -> Origin {
    let Some(record) = record else { return Origin::Unknown("it has no provenance record".into()) };
    let source = record.source.as_str();
    if source.starts_with("fd:") {
        return Origin::Local;
    }
    match Source::parse(source) {
        Ok(Source::File(_)) => Origin::Local,
        Ok(Source::Catalog { .. }) => match &record.catalog {
            Some(catalog) => Origin::Catalog(catalog.clone()),
            None => Origin::Unknown("its record does not say which catalog entry it came from".into()),
        },
        Ok(Source::Oci { reference }) if reference.digest().is_some() => Origin::Pinned,
        Ok(Source::Oci { reference }) => Origin::Registry { reference, resolved: record.resolved_digest.clone() },
        Ok(Source::Http { pinned: Some(_), .. }) => Origin::Pinned,
        Ok(Source::Http { url, .. }) if url.query().is_some() => {
            Origin::Unknown("its URL was recorded without its query, which may hold credentials".into())
        }
        Ok(Source::Http { url, .. }) => {
            Origin::Download { url, validators: record.validators.clone().unwrap_or_default() }
        }
        Err(e) => Origin::Unknown(full_message(&e)),
    }
}

/// What asking the source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Whether the question could be answered, and if not why.
    pub check: UpdateCheck,
    /// Whether the source has another image than the installed one.
    pub newer: bool,
    /// What an update would install: the recorded source, for a registry with the
    /// digest the tag resolves to now, for a catalog the reference it names.
    pub available_source: String,
    /// The version an update would install, when the source says it before a
    /// download (catalogs do; registries and HTTP servers do not).
    pub available_version: String,
}

impl Answer {
    fn unchanged(check: UpdateCheck) -> Self {
        Self { check, newer: false, available_source: String::new(), available_version: String::new() }
    }
}

/// Asks the catalogs `read` what they offer for the catalog install `origin`: under a
/// constraint or the latest, the newest match that is not what is installed; under an
/// exact version, a pin, the newest version anywhere, reported but not installed.
pub fn ask_catalog(origin: &CatalogOrigin, read: &CatalogSet) -> Answer {
    let pinned = matches!(origin.request, Request::Exact(_));
    let offered = if pinned { catalogs::newest(origin, read) } else { catalogs::available(origin, read) };
    match offered {
        Ok(Some(found)) => Answer {
            check: if pinned { UpdateCheck::Pinned } else { UpdateCheck::Ok },
            newer: !pinned,
            available_source: format!("oci://{}", found.reference),
            available_version: found.version,
        },
        Ok(None) => Answer::unchanged(if pinned { UpdateCheck::Pinned } else { UpdateCheck::Ok }),
        Err(e) => Answer::unchanged(UpdateCheck::Failed(full_message(&e))),
    }
}

/// Asks `origin` whether it has something newer than what `record` installed.
pub fn ask(
    origin: &Origin,
    record: Option<&Provenance>,
    config: &Config,
    layout: &Layout,
    progress: &dyn Progress,
) -> Answer {
    let source = record.map(|r| r.source.clone()).unwrap_or_default();
    match origin {
        Origin::Pinned => Answer::unchanged(UpdateCheck::Pinned),
        Origin::Local => Answer::unchanged(UpdateCheck::Local),
        Origin::Unknown(_) => Answer::unchanged(UpdateCheck::CannotCheck),
        // The engine asks the catalogs it has read ([`ask_catalog`]); without them, nothing
        // can be told.
        Origin::Catalog(_) => Answer::unchanged(UpdateCheck::CannotCheck),
        Origin::Registry { reference, resolved } => match resolve(reference, config, layout) {
            Ok(now) => {
                let newer = resolved.as_deref() != Some(now.as_str());
                Answer {
                    check: UpdateCheck::Ok,
                    newer,
                    available_source: format!("oci://{reference}@{now}"),
                    available_version: String::new(),
                }
            }
            Err(message) => Answer::unchanged(UpdateCheck::Failed(message)),
        },
        Origin::Download { url, validators } => {
            if validators.is_empty() {
                return Answer::unchanged(UpdateCheck::CannotCheck);
            }
            match http::head(url, progress) {
                Ok(now) => match changed(validators, &now) {
                    Some(newer) => Answer {
                        check: UpdateCheck::Ok,
                        newer,
                        available_source: source,
                        available_version: String::new(),
                    },
                    None => Answer::unchanged(UpdateCheck::CannotCheck),
                },
                Err(e) => Answer::unchanged(UpdateCheck::Failed(sources::redact_in_text(&full_message(&e)))),
            }
        }
    }
}

/// Whether the server's validators say the file changed: the entity tag when both sides
/// have one, else the modification time; `None` when they share neither.
pub fn changed(recorded: &Validators, now: &Validators) -> Option<bool> {
    if let (Some(before), Some(after)) = (&recorded.etag, &now.etag) {
        return Some(before != after);
    }
    match (&recorded.last_modified, &now.last_modified) {
        (Some(before), Some(after)) => Some(before != after),
        _ => None,
    }
}

/// The digest a registry tag resolves to now, asked the way installs ask (the same
/// credentials and insecure registries), with a manifest HEAD (a GET when the registry
/// does not say the digest on a HEAD).
fn resolve(reference: &ImageReference, config: &Config, layout: &Layout) -> Result<String, String> {
    let auth_file = config.registry_auth.as_ref().map(|p| layout.host(p));
    let auth = registry_auth::lookup(auth_file.as_deref(), reference.registry(), reference.repository())
        .map_err(|e| full_message(&e))?;
    let client = oci_client::Client::new(ClientConfig {
        protocol: if config.insecure_registries.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(config.insecure_registries.clone())
        },
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(60)),
        ..ClientConfig::default()
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime
        .block_on(client.fetch_manifest_digest(&reference.to_oci(), &auth))
        .map_err(|e| format!("registry: {}", sources::redact_in_text(&full_message(&e))))
}

/// The provenance record of `name` in `layout`'s store.
pub fn record(layout: &Layout, name: &kairos_extensions_dbus::ExtensionName) -> Option<Provenance> {
    meta::read(&layout.meta_file(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::release::ReleaseFields;

    fn record(source: &str) -> Provenance {
        Provenance {
            name: "k3s".into(),
            file: "k3s.raw".into(),
            source: source.into(),
            resolved_digest: Some(format!("sha256:{}", "ab".repeat(32))),
            validators: None,
            catalog: None,
            digest: "sha256:00".into(),
            size: 1,
            mtime_ns: 0,
            installed_time_us: 0,
            release: ReleaseFields::new(),
        }
    }

    #[test]
    fn the_record_says_where_updates_come_from() {
        let hex = "cd".repeat(32);
        assert!(matches!(origin(Some(&record("oci://r.example/k3s:v1"))), Origin::Registry { .. }));
        assert_eq!(origin(Some(&record(&format!("oci://r.example/k3s@sha256:{hex}")))), Origin::Pinned);
        assert_eq!(origin(Some(&record(&format!("oci://r.example/k3s:v1@sha256:{hex}")))), Origin::Pinned);
        assert_eq!(origin(Some(&record(&format!("https://h.example/k3s.raw#sha256={hex}")))), Origin::Pinned);
        assert!(matches!(origin(Some(&record("https://h.example/k3s.raw"))), Origin::Download { .. }));
        assert!(matches!(origin(Some(&record("https://h.example/k3s.raw?%3Credacted%3E"))), Origin::Unknown(_)));
        assert_eq!(origin(Some(&record("file:///srv/k3s.raw"))), Origin::Local);
        assert_eq!(origin(Some(&record("fd:k3s.raw"))), Origin::Local);
        assert!(
            matches!(origin(Some(&record("catalog:k3s"))), Origin::Unknown(_)),
            "a catalog install names its entry"
        );
        assert!(matches!(origin(None), Origin::Unknown(_)));
    }

    #[test]
    fn the_entity_tag_decides_before_the_time_and_neither_is_no_answer() {
        let v = |etag: Option<&str>, time: Option<&str>| Validators {
            etag: etag.map(str::to_owned),
            last_modified: time.map(str::to_owned),
        };
        assert_eq!(changed(&v(Some("\"1\""), Some("a")), &v(Some("\"2\""), Some("a"))), Some(true));
        assert_eq!(changed(&v(Some("\"1\""), Some("a")), &v(Some("\"1\""), Some("b"))), Some(false));
        assert_eq!(changed(&v(None, Some("a")), &v(Some("\"1\""), Some("b"))), Some(true));
        assert_eq!(changed(&v(Some("\"1\""), None), &v(None, Some("b"))), None);
        assert_eq!(changed(&v(None, None), &v(None, None)), None);
    }
}
