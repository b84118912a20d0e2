//! How results look on a terminal.

use kairos_extensionsd::engine::Extension;

/// A table of extensions, one per line.
pub fn table(extensions: &[Extension]) -> String {
    if extensions.is_empty() {
        return "No extensions installed.\n".to_owned();
    }
    let rows: Vec<[String; 5]> = extensions
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                if e.version.is_empty() { "-".into() } else { e.version.clone() },
                states(&e.enabled),
                if e.merged { "yes".into() } else { "no".into() },
                status(e),
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "ENABLED", "MERGED", "STATUS"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    out
}

/// Every field of one extension, then its extension-release.
pub fn details(e: &Extension) -> String {
    let or_dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    let mut out = format!(
        "Name:       {}\nVersion:    {}\nStatus:     {}\nEnabled:    {}\nMerged:     {}\nCompatible: {}\nFile:       {} ({:?}, {} bytes)\nDigest:     {}\nSource:     {}\nInstalled:  {}\n",
        e.name,
        or_dash(&e.version),
        status(e),
        states(&e.enabled),
        if e.merged { "yes" } else { "no" },
        if e.compatible { "yes".to_owned() } else { format!("no: {}", e.incompatible_reason) },
        e.file,
        e.kind,
        e.size,
        or_dash(&e.digest),
        or_dash(&e.source),
        e.installed_time,
    );
    if !e.resolved_digest.is_empty() {
        out.push_str(&format!("Resolved:   {}\n", e.resolved_digest));
    }
    if let Some(protection) = &e.protection {
        out.push_str(&format!("Protection: {protection}\n"));
    }
    out.push_str("Release:\n");
    for (key, value) in &e.release {
        out.push_str(&format!("  {key}={value}\n"));
    }
    out
}

/// `ok`, or the status and its reason: `masked: masked by the empty directory ...`.
fn status(e: &Extension) -> String {
    if e.status_reason.is_empty() { e.status.to_string() } else { format!("{}: {}", e.status, e.status_reason) }
}

fn states(states: &[kairos_extensions_dbus::BootState]) -> String {
    if states.is_empty() { "-".to_owned() } else { states.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",") }
}
