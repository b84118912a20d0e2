//! Checking method arguments before anything else happens.
//!
//! Every argument is validated before authorization is asked for, so a malformed call is
//! answered at once with a precise error and never prompts anyone for a password.

use std::collections::HashMap;

use kairos_extensions_dbus::{BootState, ExtensionName, FLAG_NOW, FLAGS_KNOWN};
use zbus::OwnedVariant;

use super::error::{BusError, BusResult};
use crate::engine::InstallRequest;
use crate::engine::digest::Sha256Digest;

/// A validated extension name.
pub fn name(text: &str) -> BusResult<ExtensionName> {
    Ok(ExtensionName::new(text)?)
}

/// A validated boot state.
pub fn boot_state(text: &str) -> BusResult<BootState> {
    Ok(text.parse::<BootState>()?)
}

/// Validated flags; returns whether `NOW` is set.
pub fn flags(flags: u64) -> BusResult<bool> {
    let unknown = flags & !FLAGS_KNOWN;
    if unknown != 0 {
        return Err(BusError::invalid_args(format!(
            "unknown flag bits 0x{unknown:x} (known: 0x{FLAGS_KNOWN:x} = NOW)"
        )));
    }
    Ok(flags & FLAG_NOW != 0)
}

/// The `a{sv}` options of `Install` and `InstallFromFd`.
pub fn install_options(options: HashMap<String, OwnedVariant>) -> BusResult<InstallRequest> {
    let mut request = InstallRequest::default();
    for (key, value) in options {
        let wrong_type = |expected: &str| BusError::invalid_args(format!("option {key:?} must be of type {expected}"));
        match key.as_str() {
            "name" => {
                let text = String::try_from(value).map_err(|_| wrong_type("s"))?;
                request.name = Some(name(&text)?);
            }
            "enable" => {
                let states = Vec::<String>::try_from(value).map_err(|_| wrong_type("as"))?;
                for state in states {
                    let state = boot_state(&state)?;
                    if !request.enable.contains(&state) {
                        request.enable.push(state);
                    }
                }
            }
            "now" => request.now = bool::try_from(value).map_err(|_| wrong_type("b"))?,
            "replace" => request.replace = bool::try_from(value).map_err(|_| wrong_type("b"))?,
            "digest" => {
                let text = String::try_from(value).map_err(|_| wrong_type("s"))?;
                let digest = text.parse::<Sha256Digest>().map_err(|_| {
                    BusError::invalid_args(format!("option {key:?} must be sha256:<64 hex digits>, not {text:?}"))
                })?;
                request.digest = Some(digest);
            }
            other => {
                return Err(BusError::invalid_args(format!(
                    "unknown option {other:?} (known: name, enable, now, replace, digest)"
                )));
            }
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::Variant;

    fn opts(items: Vec<(&str, Variant<'static>)>) -> HashMap<String, OwnedVariant> {
        items.into_iter().filter_map(|(k, v)| OwnedVariant::try_from(v).ok().map(|v| (k.to_owned(), v))).collect()
    }

    #[test]
    fn parses_every_option() -> BusResult<()> {
        let request = install_options(opts(vec![
            ("name", Variant::from("k3s")),
            ("enable", Variant::from(vec!["active", "common", "active"])),
            ("now", Variant::from(true)),
            ("replace", Variant::from(true)),
            ("digest", Variant::from(format!("sha256:{}", "a".repeat(64)))),
        ]))?;
        assert_eq!(request.name.map(|n| n.to_string()).as_deref(), Some("k3s"));
        assert_eq!(request.enable, [BootState::Active, BootState::Common]);
        assert!(request.now && request.replace && request.digest.is_some());
        Ok(())
    }

    #[test]
    fn refuses_unknown_keys_and_wrong_types() {
        let unknown = install_options(opts(vec![("colour", Variant::from("blue"))]));
        assert!(unknown.is_err_and(|e| e.error_name().ends_with("InvalidArgs") && e.message().contains("colour")));
        let wrong = install_options(opts(vec![("now", Variant::from("yes"))]));
        assert!(wrong.is_err_and(|e| e.error_name().ends_with("InvalidArgs") && e.message().contains("now")));
        let state = install_options(opts(vec![("enable", Variant::from(vec!["sometimes"]))]));
        assert!(state.is_err_and(|e| e.error_name().ends_with("InvalidBootState")));
        let name = install_options(opts(vec![("name", Variant::from("../x"))]));
        assert!(name.is_err_and(|e| e.error_name().ends_with("InvalidName")));
        for bad in ["md5:abc", "sha256:abc", "a".repeat(64).as_str()] {
            let digest = install_options(opts(vec![("digest", Variant::from(bad.to_owned()))]));
            assert!(
                digest.as_ref().is_err_and(|e| e.error_name() == "org.freedesktop.DBus.Error.InvalidArgs"
                    && e.message().contains("option \"digest\" must be sha256:<64 hex digits>")),
                "{bad}: {:?}",
                digest.err()
            );
        }
    }

    #[test]
    fn flags_reject_unknown_bits() {
        assert_eq!(flags(0).ok(), Some(false));
        assert_eq!(flags(1).ok(), Some(true));
        assert!(flags(2).is_err_and(|e| e.error_name().ends_with("InvalidArgs")));
        assert!(flags(u64::MAX).is_err());
    }
}
