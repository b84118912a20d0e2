//! The os-release / extension-release parser (`release::parse`) and the compatibility
//! check fed by it. Release files come out of images, which are untrusted.
//!
//! The input is an extension-release, then optionally a NUL and the host's os-release.
//! Beyond "no panic": every key is a plain `[A-Za-z0-9_]+` name and no value spans
//! lines; writing the fields back out in os-release syntax reads back the same fields;
//! and the compatibility verdict agrees with the rules read independently here.

use kairos_extensionsd::engine::release::{self, Host, Incompatible, ReleaseFields};

/// The fields in os-release syntax, every value double-quoted and escaped.
fn write(fields: &ReleaseFields) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str(&format!("{key}=\"{escaped}\"\n"));
    }
    out
}

fn get<'a>(fields: &'a ReleaseFields, key: &str) -> Option<&'a str> {
    fields.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (release_text, host_text) = text.split_once('\0').unwrap_or((&text, "ID=debian\nVERSION_ID=12\n"));
    let fields = release::parse(release_text);
    for (key, value) in &fields {
        assert!(!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{key:?}");
        assert!(!value.contains('\n'), "{key}={value:?}");
    }
    assert_eq!(release::parse(&write(&fields)), fields, "written back as {:?}", write(&fields));

    let host = Host { os_release: release::parse(host_text), architecture: "x86-64".into() };
    let verdict = release::check_compatible(&fields, &host);
    let host_id = get(&host.os_release, "ID").unwrap_or("linux");
    match &verdict {
        Ok(()) => {
            assert!(!fields.is_empty());
            let id = get(&fields, "ID");
            assert!(id == Some("_any") || id == Some(host_id), "{fields:?} on {host}");
            if let Some(scope) = get(&fields, "SYSEXT_SCOPE") {
                assert!(scope.split_whitespace().any(|s| s == "system"), "{scope:?}");
            }
            if let Some(arch) = get(&fields, "ARCHITECTURE") {
                assert!(arch == "_any" || arch == "x86-64", "{arch:?}");
            }
        }
        Err(Incompatible::Empty) => assert!(fields.is_empty()),
        Err(Incompatible::Id { image, host }) => {
            assert_eq!((Some(image.as_str()), host.as_str()), (get(&fields, "ID"), host_id));
            assert_ne!(image, host);
        }
        Err(Incompatible::MissingId(id)) => assert_eq!((get(&fields, "ID"), id.as_str()), (None, host_id)),
        Err(Incompatible::VersionId { image, host: wanted }) => {
            assert_eq!(get(&fields, "VERSION_ID"), Some(image.as_str()));
            assert_eq!(get(&host.os_release, "VERSION_ID"), Some(wanted.as_str()));
            assert_ne!(image, wanted);
        }
        Err(Incompatible::SysextLevel { image, host: wanted }) => {
            assert_eq!(get(&fields, "SYSEXT_LEVEL"), Some(image.as_str()));
            assert_eq!(get(&host.os_release, "SYSEXT_LEVEL"), Some(wanted.as_str()));
            assert_ne!(image, wanted);
        }
        Err(_) => {}
    }
    if let Some(version) = release::display_version(&fields) {
        assert!(fields.values().any(|v| v == version));
    }
}
