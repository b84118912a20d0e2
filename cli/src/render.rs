//! How results look as text. Both modes render the same data (the contract's
//! description, a job's properties, the manager's), so the service and `--root` print
//! the same thing for the same store. Colour comes from the [`Style`]; `legend` turns
//! headers and empty-result notes on or off (`--no-legend`).

use kairos_extensions_dbus::{
    BootState, ExtensionDescription, ExtensionKind, ExtensionStatus, JobState, UpdateCheck, UpdateDescription,
};
use serde::Serialize;

use crate::human;
use crate::style::{Paint, Style};

/// Columns of text under a header: widths are measured on the plain text, so colour
/// never shifts a column.
struct Table {
    header: &'static [&'static str],
    rows: Vec<Vec<(String, Paint)>>,
}

impl Table {
    fn render(&self, style: Style, legend: bool) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| if legend { h.len() } else { 0 }).collect();
        for row in &self.rows {
            for (width, (cell, _)) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<(&str, Paint)>| {
            let last = cells.len().saturating_sub(1);
            let mut out = String::new();
            for (i, ((cell, paint), width)) in cells.into_iter().zip(&widths).enumerate() {
                out.push_str(&style.paint(paint, cell));
                if i < last {
                    out.push_str(&" ".repeat(width.saturating_sub(cell.chars().count()) + 2));
                }
            }
            out.trim_end().to_owned() + "\n"
        };
        let mut out = String::new();
        if legend {
            out.push_str(&line(self.header.iter().map(|h| (*h, Paint::Heading)).collect()));
        }
        for row in &self.rows {
            out.push_str(&line(row.iter().map(|(cell, paint)| (cell.as_str(), *paint)).collect()));
        }
        out
    }
}

/// A table of extensions, one per line; `filter` is the state `list` was narrowed to.
pub fn table(extensions: &[ExtensionDescription], filter: Option<BootState>, style: Style, legend: bool) -> String {
    if extensions.is_empty() {
        return match (legend, filter) {
            (false, _) => String::new(),
            (true, None) => "No extensions installed.\n".to_owned(),
            (true, Some(state)) => format!("No extensions enabled for {state}.\n"),
        };
    }
    let rows = extensions
        .iter()
        .map(|e| {
            vec![
                (e.name.clone(), Paint::Plain),
                (or_dash(&e.version), Paint::Plain),
                (states(&e.enabled), Paint::Plain),
                (yes_no(e.merged).to_owned(), Paint::Plain),
                (status(e), status_paint(e.status)),
            ]
        })
        .collect();
    Table { header: &["NAME", "VERSION", "ENABLED", "MERGED", "STATUS"], rows }.render(style, legend)
}

/// Every field of one extension, then its extension-release.
pub fn details(e: &ExtensionDescription, style: Style) -> String {
    let size = human::size(e.size);
    let file = match (&e.file, e.kind) {
        (Some(file), Some(kind)) => format!("{file} ({}, {size})", kind_word(kind)),
        (Some(file), None) => format!("{file} ({size})"),
        (None, _) => format!("- ({size})"),
    };
    let mut out = format!(
        "Name:       {}\nVersion:    {}\nStatus:     {}\nEnabled:    {}\nMerged:     {}\nCompatible: {}\nFile:       {file}\nDigest:     {}\nSource:     {}\nInstalled:  {}\n",
        e.name,
        or_dash(&e.version),
        style.paint(status_paint(e.status), &status(e)),
        states(&e.enabled),
        yes_no(e.merged),
        if e.compatible {
            "yes".to_owned()
        } else {
            style.paint(Paint::Bad, &format!("no: {}", e.incompatible_reason))
        },
        or_dash(&e.digest),
        or_dash(&e.source),
        human::time(e.installed_time),
    );
    if let Some(resolved) = e.resolved_digest.as_deref().filter(|d| !d.is_empty()) {
        out.push_str(&format!("Resolved:   {resolved}\n"));
    }
    if let Some(protection) = &e.protection {
        out.push_str(&format!("Protection: {protection}\n"));
    }
    if let Some(updates) = &e.updates {
        out.push_str(&format!("Update:     {}\n", update_said(updates)));
        if !updates.previous_version.is_empty() {
            out.push_str(&format!("Previous:   {} (kairos-ext rollback restores it)\n", updates.previous_version));
        }
    }
    out.push_str("Release:\n");
    for (key, value) in &e.release {
        out.push_str(&format!("  {key}={value}\n"));
    }
    out
}

/// What the last check found, and when.
fn update_said(u: &UpdateDescription) -> String {
    let found = match &u.update_check {
        UpdateCheck::Ok if u.update_available && u.available_version.is_empty() => {
            format!("a newer image: {}", u.available_source)
        }
        UpdateCheck::Ok if u.update_available => format!("{} available: {}", u.available_version, u.available_source),
        UpdateCheck::Ok => "up to date".to_owned(),
        UpdateCheck::Pinned => "pinned (never updates)".to_owned(),
        UpdateCheck::Local => "installed from a local file (nothing to check)".to_owned(),
        UpdateCheck::CannotCheck => "its source cannot tell a newer version".to_owned(),
        UpdateCheck::NotChecked => return "not checked (kairos-ext check)".to_owned(),
        UpdateCheck::Failed(error) => format!("check failed: {error}"),
    };
    if u.checked_time == 0 { found } else { format!("{found} (checked {})", human::time(u.checked_time)) }
}

/// What the service says of itself (`status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    /// The bus name.
    pub service: String,
    /// The service's version.
    pub version: String,
    /// The running boot's state (`active`, ..., `none`).
    pub boot_state: String,
    /// The names merged now.
    pub merged: Vec<String>,
    /// The image policy in force.
    pub image_policy: String,
    /// The store.
    pub store_directory: String,
}

/// `status` as text.
pub fn status_text(s: &ServiceStatus) -> String {
    format!(
        "Service:      {} {}\nBoot state:   {}\nMerged:       {}\nImage policy: {}\nStore:        {}\n",
        s.service,
        s.version,
        s.boot_state,
        if s.merged.is_empty() { "-".to_owned() } else { s.merged.join(", ") },
        s.image_policy,
        s.store_directory,
    )
}

/// One job as `jobs` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    /// Its id.
    pub id: u64,
    /// `install`, `check` or `update`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its state.
    pub state: JobState,
    /// Its phase; empty while queued.
    pub phase: String,
    /// How many jobs are ahead of it while queued; 0 otherwise.
    pub queue_position: u32,
    /// 0 to 100.
    pub progress: u32,
    /// Bytes moved so far.
    pub bytes_done: u64,
    /// Bytes to move; 0 when unknown.
    pub bytes_total: u64,
    /// The extension, once known.
    pub name: String,
    /// What it installs from.
    pub source: String,
}

/// A table of jobs under a header.
pub fn jobs(rows: &[JobRow], style: Style, legend: bool) -> String {
    if rows.is_empty() {
        return if legend { "No jobs running.\n".to_owned() } else { String::new() };
    }
    let cells = rows
        .iter()
        .map(|job| {
            // A queued job has no phase yet, only its place in line.
            let phase =
                if job.state == JobState::Queued { jobs_ahead(job.queue_position) } else { or_dash(&job.phase) };
            let paint = match job.state {
                JobState::Failed => Paint::Bad,
                JobState::Done => Paint::Good,
                _ => Paint::Plain,
            };
            vec![
                (job.id.to_string(), Paint::Plain),
                (job.kind.clone(), Paint::Plain),
                (job.state.as_str().to_owned(), paint),
                (phase, Paint::Plain),
                (format!("{}%", job.progress), Paint::Plain),
                (job.source.clone(), Paint::Plain),
            ]
        })
        .collect();
    Table { header: &["ID", "TYPE", "STATE", "PHASE", "PROGRESS", "SOURCE"], rows: cells }.render(style, legend)
}

/// What `refresh` merged: a sentence, or without the legend one name per line.
pub fn merged(names: &[String], legend: bool) -> String {
    match (legend, names.is_empty()) {
        (false, _) => names.iter().map(|n| format!("{n}\n")).collect(),
        (true, true) => "No extensions merged.\n".to_owned(),
        (true, false) => format!("Merged: {}\n", names.join(", ")),
    }
}

/// `1 job ahead`, `2 jobs ahead`.
pub fn jobs_ahead(count: u32) -> String {
    format!("{count} job{} ahead", if count == 1 { "" } else { "s" })
}

/// How `inspect` has always named the kind.
fn kind_word(kind: ExtensionKind) -> &'static str {
    match kind {
        ExtensionKind::Image => "Image",
        ExtensionKind::Directory => "Directory",
    }
}

/// `ok`, or the status and its reason: `masked: masked by the empty directory ...`.
fn status(e: &ExtensionDescription) -> String {
    if e.status_reason.is_empty() { e.status.to_string() } else { format!("{}: {}", e.status, e.status_reason) }
}

fn status_paint(status: ExtensionStatus) -> Paint {
    if status == ExtensionStatus::Ok { Paint::Good } else { Paint::Bad }
}

fn states(states: &[BootState]) -> String {
    if states.is_empty() { "-".to_owned() } else { states.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",") }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".to_owned() } else { s.to_owned() }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use kairos_extensions_dbus::DESCRIPTION_FORMAT;

    use super::*;

    fn hello() -> ExtensionDescription {
        ExtensionDescription {
            format: DESCRIPTION_FORMAT,
            name: "hello".into(),
            version: String::new(),
            enabled: vec![BootState::Active, BootState::Common],
            merged: true,
            source: String::new(),
            digest: "sha256:ab".into(),
            size: 4096,
            installed_time: 0,
            compatible: true,
            incompatible_reason: String::new(),
            status: ExtensionStatus::Ok,
            status_reason: String::new(),
            resolved_digest: Some(String::new()),
            file: Some("hello.raw".into()),
            kind: Some(ExtensionKind::Image),
            release: [("ID".to_owned(), "_any".to_owned())].into(),
            protection: None,
            updates: None,
        }
    }

    #[test]
    fn details_say_what_the_last_check_found() {
        let plain = details(&hello(), Style::PLAIN);
        assert!(!plain.contains("Update:"), "nothing known, nothing said: {plain}");
        let never = ExtensionDescription { updates: Some(UpdateDescription::default()), ..hello() };
        assert!(details(&never, Style::PLAIN).contains("Update:     not checked (kairos-ext check)\n"));
        let newer = UpdateDescription {
            update_available: true,
            available_source: "oci://r/hello:v1@sha256:cd".into(),
            update_check: UpdateCheck::Ok,
            checked_time: 1,
            previous_version: "0.9".into(),
            ..UpdateDescription::default()
        };
        let text = details(&ExtensionDescription { updates: Some(newer), ..hello() }, Style::PLAIN);
        assert!(text.contains("Update:     a newer image: oci://r/hello:v1@sha256:cd (checked "), "{text}");
        assert!(text.contains("Previous:   0.9 (kairos-ext rollback restores it)\n"), "{text}");
    }

    fn masked() -> ExtensionDescription {
        ExtensionDescription {
            name: "tools".into(),
            version: "2".into(),
            enabled: vec![],
            merged: false,
            status: ExtensionStatus::Masked,
            status_reason: "masked by /etc/extensions/tools".into(),
            ..hello()
        }
    }

    #[test]
    fn the_table_pads_columns_and_shows_the_status_with_its_reason() {
        assert_eq!(
            table(&[hello(), masked()], None, Style::PLAIN, true),
            "NAME   VERSION  ENABLED        MERGED  STATUS\n\
             hello  -        active,common  yes     ok\n\
             tools  2        -              no      masked: masked by /etc/extensions/tools\n"
        );
        assert_eq!(table(&[], None, Style::PLAIN, true), "No extensions installed.\n");
        assert_eq!(table(&[], Some(BootState::Active), Style::PLAIN, true), "No extensions enabled for active.\n");
    }

    #[test]
    fn without_the_legend_there_is_no_header_and_no_note() {
        assert_eq!(
            table(&[hello(), masked()], None, Style::PLAIN, false),
            "hello  -  active,common  yes  ok\n\
             tools  2  -              no   masked: masked by /etc/extensions/tools\n"
        );
        assert_eq!(table(&[], None, Style::PLAIN, false), "");
        assert_eq!(jobs(&[], Style::PLAIN, false), "");
        assert_eq!(merged(&["a".into(), "b".into()], false), "a\nb\n");
        assert_eq!(merged(&["a".into(), "b".into()], true), "Merged: a, b\n");
    }

    #[test]
    fn colour_does_not_move_the_columns() {
        let colour = Style::decide(true, |_| None);
        let text = table(&[hello(), masked()], None, colour, true);
        let plain: String = strip(&text);
        assert_eq!(plain, table(&[hello(), masked()], None, Style::PLAIN, true));
        assert!(text.starts_with("\x1b[1mNAME\x1b[0m"), "{text:?}");
        assert!(text.contains("\x1b[32mok\x1b[0m") && text.contains("\x1b[31mmasked: "), "{text:?}");
    }

    fn strip(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn details_show_sizes_in_binary_units_and_say_what_is_not_known() {
        assert_eq!(
            details(&hello(), Style::PLAIN),
            "Name:       hello\nVersion:    -\nStatus:     ok\nEnabled:    active,common\nMerged:     yes\n\
             Compatible: yes\nFile:       hello.raw (Image, 4.0 KiB)\nDigest:     sha256:ab\nSource:     -\n\
             Installed:  -\nRelease:\n  ID=_any\n"
        );
        let verified = ExtensionDescription {
            resolved_digest: Some("sha256:cd".into()),
            protection: Some("signed by CN=test".into()),
            ..hello()
        };
        let text = details(&verified, Style::PLAIN);
        assert!(text.contains("Resolved:   sha256:cd\nProtection: signed by CN=test\nRelease:\n"), "{text}");
        let unknown = ExtensionDescription { file: None, kind: None, size: 3 << 20, ..hello() };
        let text = details(&unknown, Style::PLAIN);
        assert!(text.contains("File:       - (3.0 MiB)\n"), "{text}");
    }

    #[test]
    fn jobs_have_a_header_and_a_queued_job_shows_its_place() {
        let row = |id, state, phase: &str, position| JobRow {
            id,
            kind: "install".into(),
            state,
            phase: phase.into(),
            queue_position: position,
            progress: 40,
            bytes_done: 4,
            bytes_total: 10,
            name: String::new(),
            source: "oci://r/x:1".into(),
        };
        assert_eq!(
            jobs(&[row(7, JobState::Running, "downloading", 0), row(12, JobState::Queued, "", 2)], Style::PLAIN, true),
            "ID  TYPE     STATE    PHASE         PROGRESS  SOURCE\n\
             7   install  running  downloading   40%       oci://r/x:1\n\
             12  install  queued   2 jobs ahead  40%       oci://r/x:1\n"
        );
        assert_eq!(jobs_ahead(1), "1 job ahead");
    }
}
