//! How results look on a terminal. Both modes render the contract's description, so the
//! service and `--root` print the same thing for the same store.

use kairos_extensions_dbus::{BootState, ExtensionDescription, ExtensionKind};

/// A table of extensions, one per line.
pub fn table(extensions: &[ExtensionDescription]) -> String {
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
pub fn details(e: &ExtensionDescription) -> String {
    let or_dash = |s: &str| if s.is_empty() { "-".to_owned() } else { s.to_owned() };
    let file = match (&e.file, e.kind) {
        (Some(file), Some(kind)) => format!("{file} ({}, {} bytes)", kind_word(kind), e.size),
        (Some(file), None) => format!("{file} ({} bytes)", e.size),
        (None, _) => format!("- ({} bytes)", e.size),
    };
    let mut out = format!(
        "Name:       {}\nVersion:    {}\nStatus:     {}\nEnabled:    {}\nMerged:     {}\nCompatible: {}\nFile:       {file}\nDigest:     {}\nSource:     {}\nInstalled:  {}\n",
        e.name,
        or_dash(&e.version),
        status(e),
        states(&e.enabled),
        if e.merged { "yes" } else { "no" },
        if e.compatible { "yes".to_owned() } else { format!("no: {}", e.incompatible_reason) },
        or_dash(&e.digest),
        or_dash(&e.source),
        e.installed_time,
    );
    if let Some(resolved) = e.resolved_digest.as_deref().filter(|d| !d.is_empty()) {
        out.push_str(&format!("Resolved:   {resolved}\n"));
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

fn states(states: &[BootState]) -> String {
    if states.is_empty() { "-".to_owned() } else { states.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",") }
}

#[cfg(test)]
mod tests {
    use kairos_extensions_dbus::{DESCRIPTION_FORMAT, ExtensionStatus};

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
            installed_time: 5,
            compatible: true,
            incompatible_reason: String::new(),
            status: ExtensionStatus::Ok,
            status_reason: String::new(),
            resolved_digest: Some(String::new()),
            file: Some("hello.raw".into()),
            kind: Some(ExtensionKind::Image),
            release: [("ID".to_owned(), "_any".to_owned())].into(),
            protection: None,
        }
    }

    #[test]
    fn the_table_pads_columns_and_shows_the_status_with_its_reason() {
        let masked = ExtensionDescription {
            name: "tools".into(),
            version: "2".into(),
            enabled: vec![],
            merged: false,
            status: ExtensionStatus::Masked,
            status_reason: "masked by /etc/extensions/tools".into(),
            ..hello()
        };
        assert_eq!(
            table(&[hello(), masked]),
            "NAME   VERSION  ENABLED        MERGED  STATUS\n\
             hello  -        active,common  yes     ok\n\
             tools  2        -              no      masked: masked by /etc/extensions/tools\n"
        );
        assert_eq!(table(&[]), "No extensions installed.\n");
    }

    #[test]
    fn details_read_as_before_and_say_what_is_not_known() {
        assert_eq!(
            details(&hello()),
            "Name:       hello\nVersion:    -\nStatus:     ok\nEnabled:    active,common\nMerged:     yes\n\
             Compatible: yes\nFile:       hello.raw (Image, 4096 bytes)\nDigest:     sha256:ab\nSource:     -\n\
             Installed:  5\nRelease:\n  ID=_any\n"
        );
        let verified = ExtensionDescription {
            resolved_digest: Some("sha256:cd".into()),
            protection: Some("signed by CN=test".into()),
            ..hello()
        };
        let text = details(&verified);
        assert!(text.contains("Resolved:   sha256:cd\nProtection: signed by CN=test\nRelease:\n"), "{text}");
        let unknown = ExtensionDescription { file: None, kind: None, ..hello() };
        assert!(details(&unknown).contains("File:       - (4096 bytes)\n"), "{}", details(&unknown));
    }
}
