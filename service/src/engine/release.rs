//! `os-release` and `extension-release` files, and the compatibility rules
//! systemd-sysext applies between them.
//!
//! The rules follow systemd's `extension_release_validate()` (v252, unchanged in spirit
//! since): scope, architecture, `ID` (or `_any`), then `SYSEXT_LEVEL` when both sides
//! have one, else `VERSION_ID`. Checking at install time means a user learns at once that
//! an image will never merge, instead of finding it silently skipped at the next boot.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

/// Parsed `KEY=VALUE` pairs of a release file, in key order.
pub type ReleaseFields = BTreeMap<String, String>;

/// The largest release file we read; real ones are a few hundred bytes.
pub const MAX_RELEASE_FILE: u64 = 64 * 1024;

/// Parses os-release syntax: `KEY=VALUE` lines, `#` comments, values optionally in single
/// or double quotes with backslash escapes inside double quotes. Malformed lines are
/// skipped, as systemd does.
pub fn parse(text: &str) -> ReleaseFields {
    let mut fields = ReleaseFields::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else { continue };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        fields.insert(key.to_owned(), unquote(raw.trim()));
    }
    fields
}

fn unquote(raw: &str) -> String {
    let bytes = raw.as_bytes();
    if bytes.len() >= 2 && bytes[0] == b'\'' && bytes[bytes.len() - 1] == b'\'' {
        return raw[1..raw.len() - 1].to_owned();
    }
    if bytes.len() >= 2 && bytes[0] == b'"' && bytes[bytes.len() - 1] == b'"' {
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw[1..raw.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    raw.to_owned()
}

/// Reads a release file, refusing anything implausibly large.
pub fn read_file(path: &Path) -> io::Result<ReleaseFields> {
    let meta = fs::metadata(path)?;
    if meta.len() > MAX_RELEASE_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {} bytes, larger than any release file should be", path.display(), meta.len()),
        ));
    }
    let bytes = fs::read(path)?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

/// The target system an extension must be compatible with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `os-release` of the target root.
    pub os_release: ReleaseFields,
    /// The machine architecture in systemd's spelling (`x86-64`, `arm64`, ...).
    pub architecture: String,
}

/// The target root has no readable `os-release`.
#[derive(Debug, thiserror::Error)]
#[error("cannot read os-release of {root} (tried etc/os-release and usr/lib/os-release)")]
pub struct NoOsRelease {
    /// The root that was searched.
    pub root: String,
    /// The last error seen.
    #[source]
    pub source: io::Error,
}

impl Host {
    /// Loads `os-release` of `root` the way systemd does: `/etc/os-release` first, then
    /// `/usr/lib/os-release`.
    pub fn load(root: &Path) -> Result<Self, NoOsRelease> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no os-release");
        for candidate in ["etc/os-release", "usr/lib/os-release"] {
            match read_file(&root.join(candidate)) {
                Ok(os_release) => {
                    return Ok(Self { os_release, architecture: native_architecture().to_owned() });
                }
                Err(e) => last = e,
            }
        }
        Err(NoOsRelease { root: root.display().to_string(), source: last })
    }
}

/// The architecture this binary runs on, spelled as systemd spells it.
pub fn native_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64-le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

/// Why an extension does not fit the target system. Each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatible {
    /// The image carries no release data at all.
    #[error("extension-release is empty")]
    Empty,
    /// `SYSEXT_SCOPE` does not include `system`.
    #[error("SYSEXT_SCOPE={0:?} does not include \"system\"")]
    Scope(String),
    /// `ARCHITECTURE` names another machine.
    #[error("ARCHITECTURE={image:?} does not match this machine ({host:?})")]
    Architecture {
        /// What the image says.
        image: String,
        /// What this machine is.
        host: String,
    },
    /// `ID` is missing.
    #[error("ID is missing; it must be the host's ID ({0:?}) or \"_any\"")]
    MissingId(String),
    /// `ID` names another OS.
    #[error("ID={image:?} does not match the host's ID={host:?}")]
    Id {
        /// What the image says.
        image: String,
        /// What the host says.
        host: String,
    },
    /// `SYSEXT_LEVEL` differs from the host's.
    #[error("SYSEXT_LEVEL={image:?} does not match the host's SYSEXT_LEVEL={host:?}")]
    SysextLevel {
        /// What the image says.
        image: String,
        /// What the host says.
        host: String,
    },
    /// `VERSION_ID` is missing while the host has one and no level decides.
    #[error("VERSION_ID is missing; the host has VERSION_ID={0:?} and no SYSEXT_LEVEL to compare")]
    MissingVersionId(String),
    /// `VERSION_ID` differs from the host's.
    #[error("VERSION_ID={image:?} does not match the host's VERSION_ID={host:?}")]
    VersionId {
        /// What the image says.
        image: String,
        /// What the host says.
        host: String,
    },
}

fn non_empty<'a>(fields: &'a ReleaseFields, key: &str) -> Option<&'a str> {
    fields.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// Decides whether an extension with `release` merges on `host`.
pub fn check_compatible(release: &ReleaseFields, host: &Host) -> Result<(), Incompatible> {
    if release.is_empty() {
        return Err(Incompatible::Empty);
    }
    if let Some(scope) = non_empty(release, "SYSEXT_SCOPE")
        && !scope.split_whitespace().any(|s| s == "system")
    {
        return Err(Incompatible::Scope(scope.to_owned()));
    }
    if let Some(arch) = non_empty(release, "ARCHITECTURE")
        && arch != "_any"
        && arch != host.architecture
    {
        return Err(Incompatible::Architecture { image: arch.to_owned(), host: host.architecture.clone() });
    }
    let host_id = non_empty(&host.os_release, "ID").unwrap_or("linux");
    let Some(id) = non_empty(release, "ID") else {
        return Err(Incompatible::MissingId(host_id.to_owned()));
    };
    if id == "_any" {
        return Ok(());
    }
    if id != host_id {
        return Err(Incompatible::Id { image: id.to_owned(), host: host_id.to_owned() });
    }
    let host_level = non_empty(&host.os_release, "SYSEXT_LEVEL");
    let host_version = non_empty(&host.os_release, "VERSION_ID");
    if let (Some(host_level), Some(level)) = (host_level, non_empty(release, "SYSEXT_LEVEL")) {
        if host_level != level {
            return Err(Incompatible::SysextLevel { image: level.to_owned(), host: host_level.to_owned() });
        }
        return Ok(());
    }
    if let Some(host_version) = host_version {
        let Some(version) = non_empty(release, "VERSION_ID") else {
            return Err(Incompatible::MissingVersionId(host_version.to_owned()));
        };
        if version != host_version {
            return Err(Incompatible::VersionId { image: version.to_owned(), host: host_version.to_owned() });
        }
    }
    Ok(())
}

/// The version users see: `SYSEXT_VERSION_ID` when the image sets it, else `VERSION_ID`.
pub fn display_version(release: &ReleaseFields) -> Option<&str> {
    non_empty(release, "SYSEXT_VERSION_ID").or_else(|| non_empty(release, "VERSION_ID"))
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let get = |k: &str| self.os_release.get(k).map(String::as_str).unwrap_or("");
        write!(f, "ID={} VERSION_ID={} ({})", get("ID"), get("VERSION_ID"), self.architecture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> ReleaseFields {
        parse(text)
    }

    fn debian12() -> Host {
        Host { os_release: fields("ID=debian\nVERSION_ID=\"12\"\n"), architecture: "x86-64".into() }
    }

    #[test]
    fn parses_quotes_comments_and_escapes() {
        let parsed = fields(
            "# comment\nID=debian\nNAME=\"Debian GNU/Linux\"\nPRETTY='x y'\nESC=\"a\\\"b\"\n\nBROKEN\n=novalue\nBAD KEY=1\n",
        );
        assert_eq!(parsed.get("ID").map(String::as_str), Some("debian"));
        assert_eq!(parsed.get("NAME").map(String::as_str), Some("Debian GNU/Linux"));
        assert_eq!(parsed.get("PRETTY").map(String::as_str), Some("x y"));
        assert_eq!(parsed.get("ESC").map(String::as_str), Some("a\"b"));
        assert_eq!(parsed.len(), 4, "malformed lines must be skipped: {parsed:?}");
    }

    #[test]
    fn compatibility_table() {
        let host = debian12();
        let leveled =
            Host { os_release: fields("ID=kairos\nVERSION_ID=3\nSYSEXT_LEVEL=1.0\n"), architecture: "arm64".into() };
        let rolling = Host { os_release: fields("ID=arch\n"), architecture: "x86-64".into() };
        type Case<'a> = (&'a str, &'a Host, Result<(), Incompatible>);
        let cases: Vec<Case> = vec![
            ("ID=_any\n", &host, Ok(())),
            ("ID=_any\nVERSION_ID=99\n", &host, Ok(())),
            ("ID=debian\nVERSION_ID=12\n", &host, Ok(())),
            (
                "ID=debian\nVERSION_ID=11\n",
                &host,
                Err(Incompatible::VersionId { image: "11".into(), host: "12".into() }),
            ),
            ("ID=debian\n", &host, Err(Incompatible::MissingVersionId("12".into()))),
            (
                "ID=fedora\nVERSION_ID=12\n",
                &host,
                Err(Incompatible::Id { image: "fedora".into(), host: "debian".into() }),
            ),
            ("VERSION_ID=12\n", &host, Err(Incompatible::MissingId("debian".into()))),
            ("", &host, Err(Incompatible::Empty)),
            ("ID=_any\nSYSEXT_SCOPE=initrd portable\n", &host, Err(Incompatible::Scope("initrd portable".into()))),
            ("ID=_any\nSYSEXT_SCOPE=initrd system\n", &host, Ok(())),
            (
                "ID=_any\nARCHITECTURE=arm64\n",
                &host,
                Err(Incompatible::Architecture { image: "arm64".into(), host: "x86-64".into() }),
            ),
            ("ID=_any\nARCHITECTURE=_any\n", &host, Ok(())),
            ("ID=_any\nARCHITECTURE=x86-64\n", &host, Ok(())),
            // SYSEXT_LEVEL decides when both sides carry one, whatever VERSION_ID says.
            ("ID=kairos\nSYSEXT_LEVEL=1.0\nVERSION_ID=1\n", &leveled, Ok(())),
            (
                "ID=kairos\nSYSEXT_LEVEL=2.0\n",
                &leveled,
                Err(Incompatible::SysextLevel { image: "2.0".into(), host: "1.0".into() }),
            ),
            // Without a level in the image, VERSION_ID is compared.
            ("ID=kairos\nVERSION_ID=3\n", &leveled, Ok(())),
            (
                "ID=kairos\nVERSION_ID=4\n",
                &leveled,
                Err(Incompatible::VersionId { image: "4".into(), host: "3".into() }),
            ),
            // A rolling host without VERSION_ID or SYSEXT_LEVEL matches on ID alone.
            ("ID=arch\n", &rolling, Ok(())),
        ];
        for (release, host, expected) in cases {
            assert_eq!(check_compatible(&fields(release), host), expected, "release {release:?} on {host}");
        }
    }

    #[test]
    fn reasons_name_the_field() {
        let err = check_compatible(&fields("ID=fedora\nVERSION_ID=40\n"), &debian12());
        assert!(err.map_err(|e| e.to_string()).is_err_and(|m| m.starts_with("ID=")));
    }

    #[test]
    fn display_version_prefers_sysext_version() {
        assert_eq!(display_version(&fields("VERSION_ID=12\nSYSEXT_VERSION_ID=1.30\n")), Some("1.30"));
        assert_eq!(display_version(&fields("VERSION_ID=12\n")), Some("12"));
        assert_eq!(display_version(&fields("ID=_any\n")), None);
    }
}
