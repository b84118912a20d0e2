//! `kairos-ext search`, and installing by catalog name (`kairos-ext install k3s@^1.32`).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use kairos_extensions_dbus::proxies::ManagerProxy;
use kairos_extensions_dbus::{ExtensionDescription, ExtensionName};
use kairos_extensionsd::engine::Engine;
use kairos_extensionsd::engine::catalogs::CatalogError;
use kairos_extensionsd::engine::catalogs::fetch::Location;
use serde::Serialize;

use crate::output::Output;

/// One line of `search`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The extension's name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// The version `install NAME` picks on this machine; empty when none can be.
    pub latest: String,
    /// Every version this machine can install.
    pub versions: Vec<String>,
    /// The version installed now; empty when it is not installed.
    pub installed: String,
}

/// The catalog source an install argument stands for: `catalog:...` as written, or
/// `NAME` / `NAME@VERSION` when no local file of that name exists (a local file wins).
pub fn catalog_source(text: &str) -> Option<String> {
    catalog_source_in(text, std::path::Path::new("."))
}

/// [`catalog_source`] with relative paths taken from `dir`.
fn catalog_source_in(text: &str, dir: &std::path::Path) -> Option<String> {
    if text.starts_with("catalog:") {
        return Some(text.to_owned());
    }
    if text.contains("://") || text.contains('/') || text.starts_with('.') || dir.join(text).exists() {
        return None;
    }
    let name = text.split_once('@').map_or(text, |(name, _)| name);
    // `k3s.raw` that is not there is a missing file, not a catalog entry.
    (ExtensionName::new(name).is_ok() && !name.ends_with(".raw")).then(|| format!("catalog:{text}"))
}

/// `--catalog` values as catalog locations; relative paths are taken from the current
/// directory.
pub fn locations(given: &[String]) -> Result<Vec<(String, Location)>> {
    given
        .iter()
        .map(|text| {
            let absolute = if text.contains("://") || text.starts_with('/') {
                text.clone()
            } else {
                std::path::absolute(text).with_context(|| format!("resolving --catalog {text}"))?.display().to_string()
            };
            let location =
                Location::parse(&absolute).map_err(|reason| anyhow::anyhow!("--catalog {text}: {reason}"))?;
            Ok((location.display(), location))
        })
        .collect()
}

/// The entries whose name, title or description contains `text` (any case), each with
/// the version installed now.
fn matching(
    entries: impl IntoIterator<Item = (String, String, String, String, Vec<String>)>,
    installed: &[ExtensionDescription],
    text: Option<&str>,
) -> Vec<Found> {
    let versions: BTreeMap<&str, &str> = installed.iter().map(|e| (e.name.as_str(), e.version.as_str())).collect();
    let wanted = text.map(str::to_lowercase);
    entries
        .into_iter()
        .filter(|(name, title, description, ..)| {
            wanted.as_deref().is_none_or(|w| [name, title, description].iter().any(|f| f.to_lowercase().contains(w)))
        })
        .map(|(name, title, description, latest, all)| Found {
            installed: match versions.get(name.as_str()) {
                Some(&"") => "yes".into(),
                Some(version) => (*version).to_owned(),
                None => String::new(),
            },
            name,
            title,
            description,
            latest,
            versions: all,
        })
        .collect()
}

/// A table: name, title, latest, installed.
fn table(found: &[Found]) -> String {
    if found.is_empty() {
        return "No catalog entries found.\n".to_owned();
    }
    let dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    let rows: Vec<[String; 4]> =
        found.iter().map(|f| [f.name.clone(), dash(&f.title), dash(&f.latest), dash(&f.installed)]).collect();
    let header = ["NAME", "TITLE", "LATEST", "INSTALLED"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let text: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        text.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    out
}

fn print(found: &[Found], out: &Output) -> Result<()> {
    out.data(&found, |_, legend| {
        let text = table(found);
        match (legend, found.is_empty()) {
            (true, _) => text,
            (false, true) => String::new(),
            // Without the legend: the rows alone, for scripts.
            (false, false) => text.split_once('\n').map_or(String::new(), |(_, rows)| rows.to_owned()),
        }
    })
}

/// `search` through the service: `ListCatalog` and the installed extensions. With no
/// catalog configured the listing is empty for want of catalogs, not of matches, so it
/// fails as offline mode does.
pub async fn through_service(
    manager: &ManagerProxy<'_>,
    installed: &[ExtensionDescription],
    text: Option<&str>,
    out: &Output,
) -> Result<()> {
    let entries = manager.list_catalog().await.map_err(|e| crate::client::explain(e, false))?;
    // Only an empty listing raises the question, so only then is it asked.
    if entries.is_empty() && manager.catalogs().await.map_err(|e| crate::client::explain(e, false))?.is_empty() {
        return Err(CatalogError::NoneConfigured.into());
    }
    print(&matching(entries, installed, text), out)
}

/// `search` offline: the catalogs read now, each one skipped said on stderr.
pub fn offline(engine: &Engine, text: Option<&str>, out: &Output) -> Result<()> {
    if engine.catalog_locations().is_empty() {
        return Err(CatalogError::NoneConfigured.into());
    }
    let catalogs = engine.read_catalogs(std::time::Duration::ZERO);
    for skipped in &catalogs.skipped {
        eprintln!("kairos-ext: warning: {skipped}");
    }
    for fetched in &catalogs.catalogs {
        for warning in &fetched.catalog.warnings {
            eprintln!("kairos-ext: warning: catalog {}: {warning}", fetched.location);
        }
    }
    if catalogs.catalogs.is_empty() {
        anyhow::bail!("no catalog could be read");
    }
    let installed: Vec<ExtensionDescription> = engine.list()?.iter().map(ExtensionDescription::from).collect();
    let entries = catalogs.entries().into_iter().map(|e| (e.name, e.title, e.description, e.latest, e.versions));
    print(&matching(entries, &installed, text), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_goes_to_the_catalogs_unless_a_file_is_there() -> std::io::Result<()> {
        assert_eq!(catalog_source("k3s").as_deref(), Some("catalog:k3s"));
        assert_eq!(catalog_source("k3s@1.32.1").as_deref(), Some("catalog:k3s@1.32.1"));
        assert_eq!(catalog_source("k3s@^1.32").as_deref(), Some("catalog:k3s@^1.32"));
        assert_eq!(catalog_source("catalog:k3s").as_deref(), Some("catalog:k3s"));
        for local in ["./k3s", "/tmp/k3s.raw", "k3s.raw", "dir/k3s", "oci://r/k3s", "../k3s", "bad name"] {
            assert_eq!(catalog_source(local), None, "{local}");
        }
        let dir = tempfile::tempdir()?;
        assert_eq!(catalog_source_in("k3s", dir.path()).as_deref(), Some("catalog:k3s"));
        std::fs::write(dir.path().join("k3s"), "a local file")?;
        assert_eq!(catalog_source_in("k3s", dir.path()), None, "a local file of that name wins");
        Ok(())
    }

    #[test]
    fn search_matches_any_field_and_shows_what_is_installed() {
        let entry = |name: &str, title: &str, description: &str| {
            (name.to_owned(), title.to_owned(), description.to_owned(), "1.0.0".to_owned(), vec!["1.0.0".to_owned()])
        };
        let entries = vec![entry("k3s", "K3s", "Lightweight Kubernetes"), entry("git", "git", "Version control")];
        let all = matching(entries.clone(), &[], None);
        assert_eq!(all.len(), 2);
        assert_eq!(matching(entries.clone(), &[], Some("kubernetes")).len(), 1);
        assert_eq!(matching(entries.clone(), &[], Some("GIT")).len(), 1);
        assert!(matching(entries, &[], Some("nothing")).is_empty());
        let rendered = table(&all);
        assert!(rendered.starts_with("NAME  TITLE  LATEST  INSTALLED\n"), "{rendered}");
        assert!(rendered.contains("k3s   K3s    1.0.0   -"), "{rendered}");
    }
}
