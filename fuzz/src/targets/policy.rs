//! The image-policy parser (`ImagePolicy::from_str`), for the configuration file's
//! `image_policy`, in systemd's grammar (`systemd.image-policy(7)`).
//!
//! Beyond "no panic": an accepted policy prints as a string that parses back to it and
//! that systemd's grammar reads the same way (only known partitions and flags, each
//! partition once); and whether it admits a partition with a given protection agrees
//! with systemd's rules for the flags, read independently here.

use kairos_extensionsd::engine::policy::{Designator, ImagePolicy, ParsedPolicy, Protection};

const DESIGNATORS: [&str; 13] = [
    "root",
    "usr",
    "home",
    "srv",
    "esp",
    "xbootldr",
    "swap",
    "root-verity",
    "root-verity-sig",
    "usr-verity",
    "usr-verity-sig",
    "tmp",
    "var",
];

/// systemd's meaning of a partition's flags: alternatives, `open` meaning any.
fn flags_admit(flags: &[String], protection: Protection) -> bool {
    flags.iter().any(|flag| match flag.as_str() {
        "open" => true,
        "unprotected" => true,
        "verity" => matches!(protection, Protection::Verity | Protection::Signed),
        "signed" => protection == Protection::Signed,
        _ => false,
    })
}

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else { return };
    let Ok(policy) = text.parse::<ImagePolicy>() else { return };
    let shown = policy.to_string();
    assert_eq!(shown.parse::<ImagePolicy>().as_ref(), Ok(&policy), "{text:?} shown as {shown:?}");
    let rules = match policy.systemd_string() {
        None => {
            assert_eq!(policy, ImagePolicy::Permissive);
            None
        }
        Some(systemd) => {
            let parsed = systemd.parse::<ParsedPolicy>().expect("the string handed to systemd parses");
            for (designator, flags) in &parsed.rules {
                assert!(designator == "=" || DESIGNATORS.contains(&designator.as_str()), "{designator:?}");
                assert!(!flags.iter().any(String::is_empty), "{flags:?}");
            }
            let whole = matches!(systemd, "*" | "-" | "~" | "allow" | "deny" | "ignore");
            Some((systemd.to_owned(), whole, parsed.rules))
        }
    };
    for designator in [Designator::Root, Designator::Usr] {
        for protection in [Protection::Unprotected, Protection::Verity, Protection::Signed] {
            let admitted = policy.admits(designator, protection);
            let expected = match &rules {
                None => true,
                Some((systemd, true, _)) => matches!(systemd.as_str(), "*" | "allow"),
                Some((_, false, rules)) => match rules.get(designator.as_str()).or_else(|| rules.get("=")) {
                    None => true,
                    Some(flags) => flags_admit(flags, protection),
                },
            };
            assert_eq!(admitted.is_ok(), expected, "{shown:?} for {designator}={protection:?}: {admitted:?}");
            if let Err(why) = admitted {
                assert!(why.contains(&shown), "the refusal names the policy: {why}");
            }
        }
    }
}
