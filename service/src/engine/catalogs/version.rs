//! Versions as Kairos reads catalog tags: semantic versions in the loose form of
//! Masterminds/semver (the Go library kairos-agent resolves constraints with), so that
//! `v1.2`, `1.2` and `1.2.0` are one version and `2.55.0` sorts after `2.9.0`.

use std::cmp::Ordering;
use std::fmt;

/// One dot-separated identifier of a pre-release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Identifier {
    /// Digits only: compared as a number, and lower than any alphanumeric identifier.
    Numeric(u64),
    /// Anything else: compared as ASCII text.
    Alphanumeric(String),
}

/// A semantic version. Build metadata is kept for display but plays no part in
/// ordering or equality, as semver 2.0 says.
#[derive(Debug, Clone)]
pub struct Version {
    /// Major.
    pub major: u64,
    /// Minor (0 when the text left it out).
    pub minor: u64,
    /// Patch (0 when the text left it out).
    pub patch: u64,
    /// Pre-release identifiers; empty for a release.
    pub pre: Vec<Identifier>,
    /// Build metadata after `+`, ignored when comparing.
    pub build: String,
}

/// The longest version text worth reading; catalog tags are short.
pub const MAX_VERSION_TEXT: usize = 128;

impl Version {
    /// Reads `v?MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`; `None` for anything else, which
    /// is then a tag that only an exact match selects (Kairos' `stable`, `nightly`).
    pub fn parse(text: &str) -> Option<Self> {
        let (version, parts) = Self::parse_parts(text)?;
        (parts > 0).then_some(version)
    }

    /// Like [`Version::parse`], and also how many of the three numbers the text gave.
    pub(super) fn parse_parts(text: &str) -> Option<(Self, usize)> {
        if text.is_empty() || text.len() > MAX_VERSION_TEXT {
            return None;
        }
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, identifiers_valid(build).then_some(build)?),
            None => (text, ""),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, parse_pre(pre)?),
            None => (rest, Vec::new()),
        };
        let numbers: Vec<&str> = core.split('.').collect();
        if numbers.len() > 3 {
            return None;
        }
        let mut parsed = [0u64; 3];
        for (slot, number) in parsed.iter_mut().zip(&numbers) {
            *slot = parse_number(number)?;
        }
        let [major, minor, patch] = parsed;
        Some((Self { major, minor, patch, pre, build: build.to_owned() }, numbers.len()))
    }

    /// `major.minor.patch` with nothing else.
    pub fn release(major: u64, minor: u64, patch: u64) -> Self {
        Self { major, minor, patch, pre: Vec::new(), build: String::new() }
    }

    /// Whether this is a pre-release.
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn identifiers_valid(text: &str) -> bool {
    text.split('.').all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn parse_pre(text: &str) -> Option<Vec<Identifier>> {
    if !identifiers_valid(text) {
        return None;
    }
    Some(
        text.split('.')
            .map(|id| match parse_number(id) {
                Some(n) => Identifier::Numeric(n),
                None => Identifier::Alphanumeric(id.to_owned()),
            })
            .collect(),
    )
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A release is newer than any of its pre-releases.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                Identifier::Numeric(n) => write!(f, "{n}")?,
                Identifier::Alphanumeric(s) => f.write_str(s)?,
            }
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} is a version"))
    }

    #[test]
    fn reads_the_loose_forms() {
        assert_eq!(v("1.32.1"), Version::release(1, 32, 1));
        assert_eq!(v("v1.32"), Version::release(1, 32, 0));
        assert_eq!(v("2"), Version::release(2, 0, 0));
        assert_eq!(v("1.0.0+build.7"), v("1.0.0"), "build metadata does not count");
        assert_eq!(v("1.0.0-rc.1").to_string(), "1.0.0-rc.1");
        for bad in ["", "stable", "1.2.3.4", "1..2", "1.2.x", "01a", "1.2.3-", "1.2.3-a..b", "1.2.3+", " 1.2.3", "-1"] {
            assert!(Version::parse(bad).is_none(), "{bad:?} read as a version");
        }
    }

    #[test]
    fn orders_as_semver_says() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2.0",
            "1.10.0",
            "2.9.0",
            "2.55.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    proptest! {
        #[test]
        fn display_reads_back_as_the_same_version(
            major in 0u64..1000, minor in 0u64..1000, patch in 0u64..1000,
            pre in proptest::collection::vec("[0-9]{1,3}|[a-z][a-z0-9-]{0,5}", 0..3),
        ) {
            let text = if pre.is_empty() {
                format!("{major}.{minor}.{patch}")
            } else {
                format!("{major}.{minor}.{patch}-{}", pre.join("."))
            };
            let parsed = Version::parse(&text).expect("generated versions are valid");
            prop_assert_eq!(Version::parse(&parsed.to_string()), Some(parsed));
        }

        #[test]
        fn ordering_is_the_numeric_ordering_of_releases(
            a in (0u64..50, 0u64..50, 0u64..50), b in (0u64..50, 0u64..50, 0u64..50),
        ) {
            let (x, y) = (Version::release(a.0, a.1, a.2), Version::release(b.0, b.1, b.2));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }

        #[test]
        fn any_text_is_read_or_refused_without_panicking(text in "\\PC{0,40}") {
            let _ = Version::parse(&text);
        }
    }
}
