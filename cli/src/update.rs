//! `check`, `update` and `rollback`, through the service and offline (`--root`), in the
//! same words either way.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;

use anyhow::Result;
use kairos_extensions_dbus::properties::ExtensionProperties;
use kairos_extensions_dbus::proxies::{ExtensionUpdated, ObjectManagerProxy};
use kairos_extensions_dbus::{ExtensionDescription, ExtensionName, FLAG_NOW, JobResult, UpdateCheck};
use kairos_extensionsd::engine::config::AutoUpdate;
use kairos_extensionsd::engine::progress::Silent;
use kairos_extensionsd::engine::{CheckOutcome, Config, Engine, Updated};
use serde::Serialize;
use zbus::{Connection, OwnedObjectPath, OwnedVariant, Variant};

use crate::args::update_args::Target;
use crate::args::{CheckArgs, RollbackArgs, UpdateArgs};
use crate::client::{Client, authorized, explain, option};
use crate::exit::{Exit, Failure};
use crate::job::{self, JobView, JobWatch};
use crate::output::Output;

/// What `check` shows of one extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The extension.
    pub name: String,
    /// Its version now.
    pub installed_version: String,
    /// What an update would bring, when known.
    pub available_version: String,
    /// Where it was installed from.
    pub source: String,
    /// What the check could say.
    pub check: String,
    /// Whether the source has something newer.
    pub update_available: bool,
    /// What an update would install.
    pub available_source: String,
}

impl From<&CheckOutcome> for Row {
    fn from(o: &CheckOutcome) -> Self {
        Self {
            name: o.name.clone(),
            installed_version: o.installed_version.clone(),
            available_version: o.available_version.clone(),
            source: o.source.clone(),
            check: o.check.as_str().to_owned(),
            update_available: o.update_available,
            available_source: o.available_source.clone(),
        }
    }
}

impl Row {
    /// The AVAILABLE column: the newer version, or what the check found instead.
    fn available(&self) -> String {
        match UpdateCheck::from(self.check.clone()) {
            UpdateCheck::Ok if self.update_available && self.available_version.is_empty() => "newer image".into(),
            UpdateCheck::Ok if self.update_available => self.available_version.clone(),
            UpdateCheck::Ok => "up to date".into(),
            UpdateCheck::Pinned => "pinned".into(),
            UpdateCheck::Local => "local file".into(),
            UpdateCheck::CannotCheck => "cannot check".into(),
            UpdateCheck::NotChecked => "not checked".into(),
            UpdateCheck::Failed(_) => "check failed".into(),
        }
    }

    /// One line for the journal: what was found, with the error when the check failed.
    fn line(&self) -> String {
        let version = if self.installed_version.is_empty() { "-" } else { self.installed_version.as_str() };
        match UpdateCheck::from(self.check.clone()) {
            UpdateCheck::Failed(error) => format!("{} {version}: check failed: {error}", self.name),
            UpdateCheck::Ok if self.update_available => {
                format!("{} {version}: update available ({})", self.name, self.available_source)
            }
            _ => format!("{} {version}: {}", self.name, self.available()),
        }
    }
}

/// The `check` table: NAME, INSTALLED, AVAILABLE, SOURCE; failures explained below it.
pub fn table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "No extensions installed.\n".to_owned();
    }
    let or_dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| [r.name.clone(), or_dash(&r.installed_version), r.available(), or_dash(&r.source)])
        .collect();
    let header = ["NAME", "INSTALLED", "AVAILABLE", "SOURCE"];
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |row: [&str; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
        .trim_end()
        .to_owned()
            + "\n"
    };
    let mut out = line(header);
    for row in &cells {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
    }
    for row in rows {
        if let UpdateCheck::Failed(error) = UpdateCheck::from(row.check.clone()) {
            out.push_str(&format!("{}: {error}\n", row.name));
        }
    }
    out
}

fn print_rows(rows: &[Row], out: &Output, auto: bool) -> Result<()> {
    if auto && !out.is_json() {
        // One line per extension, for the journal.
        for row in rows {
            out.said(&row.line())?;
        }
        return Ok(());
    }
    out.data(&rows, |_, legend| {
        let text = table(rows);
        if legend || rows.is_empty() {
            text
        } else {
            text.split_once('\n').map_or(String::new(), |(_, r)| r.to_owned())
        }
    })
}

/// The names of `targets`, and the version when one was given: a version pins a single
/// catalog install, so it cannot come with other names.
pub fn parse_targets(targets: &[Target]) -> Result<(Vec<ExtensionName>, Option<String>)> {
    let version = targets.iter().find_map(|t| t.version.clone());
    if version.is_some() && targets.len() != 1 {
        return Err(Failure::new(Exit::Usage, "NAME@VERSION updates one extension at a time").into());
    }
    Ok((targets.iter().map(|t| t.name.clone()).collect(), version))
}

fn updated_line(step: &Updated) -> String {
    if step.updated {
        let or_dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
        format!("Updated {} from {} to {}", step.name, or_dash(&step.old_version), or_dash(&step.new_version))
    } else {
        format!("{}: not updated: {}", step.name, step.note)
    }
}

// ---------------------------------------------------------------------------------------
// Offline.

/// `check` on the engine.
pub fn offline_check(engine: &Engine, args: &CheckArgs, out: &Output) -> Result<()> {
    if args.auto {
        return offline_auto(engine, out);
    }
    let outcomes = engine.check_updates(&args.names, &Silent)?;
    print_rows(&outcomes.iter().map(Row::from).collect::<Vec<_>>(), out, false)
}

fn offline_auto(engine: &Engine, out: &Output) -> Result<()> {
    let config = engine.config();
    if config.auto_update == AutoUpdate::Off {
        return out.said("auto_update is off: nothing to do");
    }
    let outcomes = engine.check_updates(&[], &Silent)?;
    print_rows(&outcomes.iter().map(Row::from).collect::<Vec<_>>(), out, true)?;
    if config.auto_update == AutoUpdate::Apply {
        let names: Vec<ExtensionName> =
            outcomes.iter().filter(|o| o.update_available).filter_map(|o| ExtensionName::new(&o.name).ok()).collect();
        if names.is_empty() {
            return out.said("No updates to apply.");
        }
        let now = config.auto_update_now && engine.layout().is_live();
        let mut printed = Ok(());
        engine.update(&names, now, None, &Silent, &mut |step| {
            if printed.is_ok() {
                printed = out.said(&updated_line(step));
            }
        })?;
        printed?;
    }
    Ok(())
}

/// `update` on the engine.
pub fn offline_update(engine: &Engine, args: &UpdateArgs, out: &Output) -> Result<()> {
    let (names, version) = parse_targets(&args.names)?;
    let mut any = false;
    let mut printed = Ok(());
    engine.update(&names, args.now, version.as_deref(), &Silent, &mut |step| {
        any = true;
        if printed.is_ok() {
            printed = out.said(&updated_line(step));
        }
    })?;
    printed?;
    if !any {
        out.said("No updates to apply.")?;
    }
    Ok(())
}

/// `rollback` on the engine.
pub fn offline_rollback(engine: &Engine, args: &RollbackArgs, out: &Output) -> Result<()> {
    let rolled = engine.rollback(&args.name, args.now)?;
    out.said(&rolled_line(&rolled.name, &rolled.old_version, &rolled.new_version))
}

fn rolled_line(name: &str, old: &str, new: &str) -> String {
    let or_dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    format!("Rolled back {name} from {} to {}", or_dash(old), or_dash(new))
}

// ---------------------------------------------------------------------------------------
// Through the service.

/// Starts a job with `start` and follows it to its end, showing its progress; returns
/// how it ended, its error, and every `ExtensionUpdated` heard once it left the queue.
async fn run_job<F>(client: &Client, out: &Output, start: F) -> Result<(u64, JobResult, String, Vec<Updated>)>
where
    F: std::future::Future<Output = Result<(u64, OwnedObjectPath)>>,
{
    let mut watch = JobWatch::subscribe(&client.connection).await?;
    let (id, path) = start.await?;
    let mut view = JobView::new(!out.quiet(), std::io::stderr().is_terminal());
    let mut updated = Vec::new();
    let result = watch
        .follow(&client.connection, client.interactive, id, &path, &mut view, |message| {
            let Some(signal) = ExtensionUpdated::from_message(message.clone()) else { return };
            if let Ok(args) = signal.args() {
                updated.push(Updated {
                    name: args.name.clone(),
                    old_version: args.old_version.clone(),
                    new_version: args.new_version.clone(),
                    updated: true,
                    note: String::new(),
                });
            }
        })
        .await?;
    Ok((id, result, view.error.clone(), updated))
}

impl From<ExtensionProperties> for Row {
    fn from(p: ExtensionProperties) -> Self {
        Self {
            name: p.name,
            installed_version: p.version,
            available_version: p.available_version,
            source: p.source,
            check: p.update_check.as_str().to_owned(),
            update_available: p.update_available,
            available_source: p.available_source,
        }
    }
}

/// What the service says about updates of `names` now (every extension, by name, when
/// `names` is empty): one `GetManagedObjects`, so every row is of the same moment.
async fn rows(client: &Client, names: &[String]) -> Result<Vec<Row>> {
    let objects = ObjectManagerProxy::new(&client.connection)
        .await?
        .get_managed_objects()
        .await
        .map_err(|e| explain(e, false))?;
    let mut by_name: BTreeMap<String, ExtensionProperties> =
        objects.into_values().filter_map(|object| object.extension).map(|p| (p.name.clone(), p)).collect();
    if names.is_empty() {
        return Ok(by_name.into_values().map(Row::from).collect());
    }
    names
        .iter()
        .map(|name| match by_name.remove(name) {
            Some(properties) => Ok(Row::from(properties)),
            None => {
                Err(Failure::new(Exit::NotFound, kairos_extensionsd::engine::Error::NotFound(name.clone()).to_string())
                    .into())
            }
        })
        .collect()
}

/// `check` through the service.
pub async fn check(client: &Client, args: &CheckArgs, out: &Output) -> Result<()> {
    let auto = if args.auto { Some(Config::load(std::path::Path::new("/"), None)?) } else { None };
    if auto.as_ref().is_some_and(|c| c.auto_update == AutoUpdate::Off) {
        return out.said("auto_update is off: nothing to do");
    }
    let names: Vec<String> = args.names.iter().map(ToString::to_string).collect();
    let asked: Vec<&str> = names.iter().map(String::as_str).collect();
    let manager = &client.manager;
    let started = async { authorized!(client, manager.check_updates / check_updates_interactive(&asked, 0)) };
    let (id, result, error, _) = run_job(client, out, started).await?;
    job::outcome("check", id, result, &error)?;
    let rows = rows(client, &names).await?;
    print_rows(&rows, out, args.auto)?;
    if let Some(config) = auto.filter(|c| c.auto_update == AutoUpdate::Apply) {
        if !rows.iter().any(|r| r.update_available) {
            return out.said("No updates to apply.");
        }
        update_through(client, out, &[], None, config.auto_update_now).await?;
    }
    Ok(())
}

/// `update` through the service.
pub async fn update(client: &Client, args: &UpdateArgs, out: &Output) -> Result<()> {
    let (names, version) = parse_targets(&args.names)?;
    update_through(client, out, &names, version, args.now).await
}

async fn update_through(
    client: &Client,
    out: &Output,
    names: &[ExtensionName],
    version: Option<String>,
    now: bool,
) -> Result<()> {
    let mut options: HashMap<&str, OwnedVariant> = HashMap::new();
    if now {
        options.insert("now", option(Variant::from(true))?);
    }
    if let Some(version) = version {
        options.insert("version", option(Variant::from(version))?);
    }
    let asked: Vec<&str> = names.iter().map(ExtensionName::as_str).collect();
    let manager = &client.manager;
    let started = async { authorized!(client, manager.update / update_interactive(&asked, options)) };
    let (id, result, error, updated) = run_job(client, out, started).await?;
    for step in &updated {
        out.said(&updated_line(step))?;
    }
    job::outcome("update", id, result, &error)?;
    for name in names.iter().filter(|n| !updated.iter().any(|u| u.name == n.as_str())) {
        out.said(&format!(
            "{name}: not updated (up to date, pinned, or its source cannot tell; see `kairos-ext check {name}`)"
        ))?;
    }
    if names.is_empty() && updated.is_empty() {
        out.said("No updates to apply.")?;
    }
    Ok(())
}

/// `rollback` through the service.
pub async fn rollback(client: &Client, args: &RollbackArgs, out: &Output) -> Result<()> {
    let ext = client.extension(args.name.as_str()).await?;
    let before = ext.version().await.map_err(|e| explain(e, false))?;
    let flags = if args.now { FLAG_NOW } else { 0 };
    let manager = &client.manager;
    authorized!(client, manager.rollback / rollback_interactive(args.name.as_str(), flags))?;
    let after = ext.version().await.map_err(|e| explain(e, false))?;
    out.said(&rolled_line(args.name.as_str(), &before, &after))
}

/// `list` through the service: every extension from one `GetManagedObjects`, and the
/// names of those a check found an update for.
pub async fn list(connection: &Connection) -> Result<(Vec<ExtensionDescription>, Vec<String>)> {
    let objects =
        ObjectManagerProxy::new(connection).await?.get_managed_objects().await.map_err(|e| explain(e, false))?;
    let mut updates = Vec::new();
    let mut list = Vec::new();
    for properties in objects.into_values().filter_map(|object| object.extension) {
        if properties.update_available {
            updates.push(properties.name.clone());
        }
        list.push(ExtensionDescription::from(properties));
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    updates.sort();
    Ok((list, updates))
}

/// The line under `list` that names the extensions with an update available.
pub fn updates_footer(updates: &[String]) -> String {
    if updates.is_empty() {
        return String::new();
    }
    format!("Updates available: {} (kairos-ext update NAME, or --all)\n", updates.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_carry_one_version() {
        let targets = |w: &[&str]| w.iter().map(|s| s.parse::<Target>()).collect::<Result<Vec<_>, _>>();
        let (names, version) = parse_targets(&targets(&["k3s@1.32.1"]).expect("words")).expect("one pinned name");
        assert_eq!((names[0].as_str(), version.as_deref()), ("k3s", Some("1.32.1")));
        let two = parse_targets(&targets(&["k3s@1", "nginx"]).expect("words")).expect_err("a version names one");
        let usage = two.downcast_ref::<Failure>().map(|f| f.exit);
        assert_eq!(usage, Some(Exit::Usage), "{two}");
        assert_eq!(targets(&["k3s@"]), Err("a version must follow the @".to_owned()));
        assert!(targets(&["../x"]).is_err_and(|e| e.contains("must start with a letter or a digit")));
    }

    #[test]
    fn the_table_says_what_each_check_found() {
        let row = |name: &str, check: &str, available: bool| Row {
            name: name.into(),
            installed_version: "1".into(),
            available_version: String::new(),
            source: format!("oci://r/{name}:v1"),
            check: check.into(),
            update_available: available,
            available_source: String::new(),
        };
        let text = table(&[
            row("a", "ok", true),
            row("b", "ok", false),
            row("c", "pinned", false),
            row("d", "registry: down", false),
        ]);
        assert!(text.starts_with("NAME"), "{text}");
        for expected in ["newer image", "up to date", "pinned", "check failed", "d: registry: down"] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        assert_eq!(row("a", "ok", true).line(), "a 1: update available ()");
    }
}
