//! systemd image policies: which partitions an image may have, and how they must be
//! protected. The grammar is systemd's (`systemd.image-policy(7)`), so the same string
//! can be handed to `systemd-sysext --image-policy` where the host supports it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The policy `strict` stands for: an extension's root or usr must be verity-protected
/// with a signature by a trusted certificate, or absent. This is the policy an operator
/// reads in the word, and the one Kairos' trusted-boot discussion settles on.
pub const STRICT: &str = "root=signed+absent:usr=signed+absent";

/// The policy `verity` stands for: an extension's root or usr must be verity-protected,
/// signed or not, or absent. The flags are alternatives, as everywhere in systemd's
/// grammar, so a signed image passes too.
pub const VERITY: &str = "root=verity+signed+absent:usr=verity+signed+absent";

/// The partition of an extension image a policy judges: `root` for a plain file-system
/// image or a disk image's root partition, `usr` for a disk image's usr partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Designator {
    /// The root partition (or the whole file system of a plain image).
    Root,
    /// The usr partition.
    Usr,
}

impl Designator {
    /// The name systemd's grammar uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Usr => "usr",
        }
    }
}

impl fmt::Display for Designator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

const FLAGS: [&str; 12] = [
    "verity",
    "signed",
    "encrypted",
    "unprotected",
    "unused",
    "absent",
    "open",
    "ignore",
    "read-only-on",
    "read-only-off",
    "growfs-on",
    "growfs-off",
];

/// The configured image policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ImagePolicy {
    /// Any valid image is accepted (systemd's default for sysext without a policy).
    #[default]
    Permissive,
    /// Only verity images signed by a trusted certificate; see [`STRICT`].
    Strict,
    /// Verity images, signed or not; see [`VERITY`].
    Verity,
    /// An explicit policy string, validated.
    Explicit(ParsedPolicy),
}

/// A validated explicit policy: partition designator (or `=` for the default) to flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPolicy {
    text: String,
    /// Flags per designator; the key `=` holds the default for unlisted partitions.
    pub rules: BTreeMap<String, Vec<String>>,
}

/// Why an image-policy string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The string is empty.
    #[error("image policy is empty")]
    Empty,
    /// A `designator=flags` item lacks the `=`.
    #[error("image policy item {0:?} is not of the form partition=flags")]
    Item(String),
    /// An unknown partition designator.
    #[error("unknown partition {0:?} in image policy (known: {known})", known = DESIGNATORS.join(", "))]
    Designator(String),
    /// A designator given twice.
    #[error("partition {0:?} appears twice in image policy")]
    Duplicate(String),
    /// An unknown flag.
    #[error("unknown flag {flag:?} for partition {designator:?} in image policy")]
    Flag {
        /// The partition.
        designator: String,
        /// The flag.
        flag: String,
    },
}

/// How an image's root (or usr) file system is protected, as far as policies care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// A plain file system, or a partition without verity.
    Unprotected,
    /// dm-verity, without a signature we trust.
    Verity,
    /// dm-verity with a root-hash signature by a trusted certificate.
    Signed,
}

impl Protection {
    fn flag(self) -> &'static str {
        match self {
            Self::Unprotected => "unprotected",
            Self::Verity => "verity",
            Self::Signed => "signed",
        }
    }

    /// How a refusal describes it to a person.
    fn phrase(self) -> &'static str {
        match self {
            Self::Unprotected => "unprotected (no verity)",
            Self::Verity => "verity without a signature",
            Self::Signed => "verity with a trusted signature",
        }
    }
}

impl ImagePolicy {
    /// Whether the policy admits an extension whose `designator` partition has
    /// `protection`.
    ///
    /// As in systemd, the flags of a partition are alternatives: `signed` admits only
    /// signed verity, `verity` admits verity with or without a signature, `unprotected`
    /// admits anything readable, and `open` is all three. A partition the policy does not name falls back to the `=` default, and
    /// without one, to systemd's default of allowing it.
    pub fn admits(&self, designator: Designator, protection: Protection) -> Result<(), String> {
        let rules = match self {
            Self::Permissive => return Ok(()),
            Self::Strict | Self::Verity => {
                let Some(Ok(parsed)) = self.systemd_string().map(str::parse::<ParsedPolicy>) else {
                    return Err(format!("the built-in {self} policy failed to parse"));
                };
                parsed.rules
            }
            Self::Explicit(parsed) => match parsed.text.as_str() {
                "*" | "allow" => return Ok(()),
                "-" | "deny" | "~" | "ignore" => return Err(format!("image policy {self} refuses every image")),
                _ => parsed.rules.clone(),
            },
        };
        let Some(flags) = rules.get(designator.as_str()).or_else(|| rules.get("=")) else { return Ok(()) };
        let wanted = protection.flag();
        let admitted = flags.iter().any(|flag| {
            flag == wanted
                || flag == "open"
                || (flag == "verity" && protection == Protection::Signed)
                || (flag == "unprotected" && protection != Protection::Unprotected)
        });
        if admitted {
            Ok(())
        } else {
            Err(format!(
                "image policy {self} needs {designator}={} but the image's {designator} is {}",
                flags.join("+"),
                protection.phrase()
            ))
        }
    }

    /// The policy as a systemd image-policy string, or `None` for permissive (nothing to
    /// pass on).
    pub fn systemd_string(&self) -> Option<&str> {
        match self {
            Self::Permissive => None,
            Self::Strict => Some(STRICT),
            Self::Verity => Some(VERITY),
            Self::Explicit(parsed) => Some(&parsed.text),
        }
    }
}

impl fmt::Display for ImagePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Permissive => f.write_str("permissive"),
            Self::Strict => f.write_str("strict"),
            Self::Verity => f.write_str("verity"),
            Self::Explicit(parsed) => f.write_str(&parsed.text),
        }
    }
}

impl FromStr for ImagePolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "permissive" => Ok(Self::Permissive),
            "strict" => Ok(Self::Strict),
            "verity" => Ok(Self::Verity),
            other => other.parse().map(Self::Explicit),
        }
    }
}

impl FromStr for ParsedPolicy {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(PolicyError::Empty);
        }
        // systemd's shorthands for whole-image policies.
        if matches!(text, "*" | "-" | "~" | "allow" | "deny" | "ignore") {
            return Ok(Self { text: text.to_owned(), rules: BTreeMap::new() });
        }
        let mut rules = BTreeMap::new();
        for item in text.split(':').filter(|i| !i.is_empty()) {
            let (designator, flags) = item.split_once('=').ok_or_else(|| PolicyError::Item(item.to_owned()))?;
            let key = if designator.is_empty() { "=" } else { designator };
            if key != "=" && !DESIGNATORS.contains(&key) {
                return Err(PolicyError::Designator(key.to_owned()));
            }
            let flags: Vec<String> = flags.split('+').filter(|f| !f.is_empty()).map(str::to_owned).collect();
            if let Some(bad) = flags.iter().find(|f| !FLAGS.contains(&f.as_str())) {
                return Err(PolicyError::Flag { designator: key.to_owned(), flag: bad.clone() });
            }
            if rules.insert(key.to_owned(), flags).is_some() {
                return Err(PolicyError::Duplicate(key.to_owned()));
            }
        }
        if rules.is_empty() {
            return Err(PolicyError::Empty);
        }
        Ok(Self { text: text.to_owned(), rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_policies() {
        assert_eq!("permissive".parse(), Ok(ImagePolicy::Permissive));
        let systemd = |name: &str| name.parse::<ImagePolicy>().map(|p| p.systemd_string().map(str::to_owned));
        assert_eq!(systemd("strict"), Ok(Some("root=signed+absent:usr=signed+absent".to_owned())));
        assert_eq!(systemd("verity"), Ok(Some("root=verity+signed+absent:usr=verity+signed+absent".to_owned())));
        assert_eq!(systemd("permissive"), Ok(None));
        for name in ["permissive", "strict", "verity"] {
            assert_eq!(name.parse::<ImagePolicy>().map(|p| p.to_string()), Ok(name.to_owned()));
        }
        assert!(STRICT.parse::<ParsedPolicy>().is_ok() && VERITY.parse::<ParsedPolicy>().is_ok());
    }

    #[test]
    fn explicit_policies_parse() {
        let parsed: ImagePolicy = "root=verity+signed:usr=absent:=unused+absent".parse().expect("valid policy");
        let ImagePolicy::Explicit(p) = parsed else { panic!("expected explicit") };
        assert_eq!(p.rules.get("root"), Some(&vec!["verity".to_owned(), "signed".to_owned()]));
        assert_eq!(p.rules.get("="), Some(&vec!["unused".to_owned(), "absent".to_owned()]));
        assert!("*".parse::<ParsedPolicy>().is_ok());
    }

    #[test]
    fn strict_admits_only_signed_images() {
        use Designator::*;
        use Protection::*;
        let strict = ImagePolicy::Strict;
        assert!(strict.admits(Root, Signed).is_ok() && strict.admits(Usr, Signed).is_ok());
        for (designator, protection) in [(Root, Verity), (Usr, Verity), (Root, Unprotected)] {
            let refused = strict.admits(designator, protection);
            let needs = format!("image policy strict needs {designator}=signed+absent");
            assert!(refused.as_ref().is_err_and(|e| e.contains(&needs)), "{refused:?}");
        }
        assert!(strict.admits(Root, Verity).is_err_and(|e| e.contains("verity without a signature")));
    }

    #[test]
    fn verity_admits_verity_signed_or_not() {
        use Designator::*;
        use Protection::*;
        let verity = ImagePolicy::Verity;
        assert!(verity.admits(Root, Verity).is_ok() && verity.admits(Usr, Signed).is_ok());
        let refused = verity.admits(Root, Unprotected);
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("root=verity+signed+absent") && e.contains("unprotected")),
            "{refused:?}"
        );
        assert!(ImagePolicy::Permissive.admits(Root, Unprotected).is_ok());
    }

    #[test]
    fn explicit_admission_follows_systemd_flags() {
        use Designator::*;
        use Protection::*;
        let mixed: ImagePolicy = "root=verity:usr=signed".parse().expect("valid");
        assert!(mixed.admits(Root, Verity).is_ok() && mixed.admits(Root, Signed).is_ok());
        assert!(mixed.admits(Root, Unprotected).is_err());
        assert!(mixed.admits(Usr, Verity).is_err());
        let open: ImagePolicy = "root=open".parse().expect("valid");
        assert!(open.admits(Root, Unprotected).is_ok());
        let unprotected: ImagePolicy = "root=unprotected".parse().expect("valid");
        assert!(unprotected.admits(Root, Signed).is_ok());
        let default: ImagePolicy = "=signed".parse().expect("valid");
        assert!(default.admits(Usr, Unprotected).is_err());
        let unnamed: ImagePolicy = "home=absent".parse().expect("valid");
        assert!(unnamed.admits(Usr, Unprotected).is_ok(), "an unnamed partition falls back to systemd's allow");
        let deny: ImagePolicy = "deny".parse().expect("valid");
        assert!(deny.admits(Root, Signed).is_err());
    }

    #[test]
    fn bad_policies_are_named() {
        assert_eq!("".parse::<ParsedPolicy>(), Err(PolicyError::Empty));
        assert_eq!("rot=verity".parse::<ImagePolicy>(), Err(PolicyError::Designator("rot".into())));
        assert_eq!("root".parse::<ImagePolicy>(), Err(PolicyError::Item("root".into())));
        assert_eq!(
            "root=verity+sined".parse::<ImagePolicy>(),
            Err(PolicyError::Flag { designator: "root".into(), flag: "sined".into() })
        );
        assert_eq!("root=verity:root=signed".parse::<ImagePolicy>(), Err(PolicyError::Duplicate("root".into())));
    }
}
