//! Version constraints in the dialect kairos-agent accepts (Masterminds/semver v3), so
//! that `kairos-ext install k3s@^1.32` and `kairos-agent sysext install k3s --version
//! '^1.32'` pick the same version.
//!
//! - `||` separates alternatives; within one, comparators are separated by commas or
//!   spaces and must all hold: `>= 1.30, < 2`.
//! - Operators: `=`, `!=`, `>`, `>=` (`=>`), `<`, `<=` (`=<`), `~` (`~>`), `^`, none (`=`).
//! - A partial version stands for a range: `1.2` and `1.2.x` are `>= 1.2.0, < 1.3.0`;
//!   `> 1.2` is `>= 1.3.0`; `<= 1.2` is `< 1.3.0`; `*` is anything.
//! - `~1.2.3` is `>= 1.2.3, < 1.3.0`, `~1` is `>= 1.0.0, < 2.0.0`; `^1.2.3` is
//!   `>= 1.2.3, < 2.0.0`, `^0.2.3` is `< 0.3.0`, `^0.0.3` is `< 0.0.4`.
//! - `1.2 - 1.4.5` is `>= 1.2, <= 1.4.5`.
//! - A pre-release version satisfies a comparator only if that comparator names a
//!   pre-release itself, so `^1.32` never installs `1.33.0-rc.1`.

use super::version::Version;

/// The longest constraint text accepted.
const MAX_CONSTRAINT_TEXT: usize = 256;

/// A parsed constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Alternatives (`||`); each is a list of comparators that must all hold.
    alternatives: Vec<Vec<Comparator>>,
}

/// Why a text is not a constraint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConstraintError(String);

/// One comparator, reduced to bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    check: Check,
    /// Whether the comparator names a pre-release (and so may match pre-releases).
    allows_prerelease: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    Any,
    Nothing,
    Range { lower: Option<Bound>, upper: Option<Bound> },
    Outside { lower: Option<Bound>, upper: Option<Bound> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Bound {
    version: Version,
    inclusive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Tilde,
    Caret,
}

/// A version with some numbers left out or wildcarded.
struct Partial {
    /// The version with the missing numbers as 0.
    base: Version,
    /// How many numbers were given before the first missing or wildcard one (0..=3).
    given: usize,
}

impl Constraint {
    /// Parses constraint text.
    pub fn parse(text: &str) -> Result<Self, ConstraintError> {
        if text.len() > MAX_CONSTRAINT_TEXT {
            return Err(ConstraintError(format!("a constraint is at most {MAX_CONSTRAINT_TEXT} bytes")));
        }
        if text.trim().is_empty() {
            return Err(ConstraintError("the constraint is empty".into()));
        }
        let alternatives =
            text.split("||").map(parse_alternative).collect::<Result<Vec<_>, _>>().map_err(ConstraintError)?;
        Ok(Self { alternatives })
    }

    /// Whether `version` satisfies the constraint.
    pub fn matches(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|all| all.iter().all(|c| c.matches(version)))
    }
}

fn parse_alternative(text: &str) -> Result<Vec<Comparator>, String> {
    // Tokens: operators may stand apart from their version (`>= 1.2`), and a lone `-`
    // between two versions makes a range.
    let mut words: Vec<String> = Vec::new();
    for word in text.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
        match words.last_mut() {
            Some(last) if is_operator(last) => last.push_str(word),
            _ => words.push(word.to_owned()),
        }
    }
    if words.is_empty() {
        return Err(format!("{:?} has an empty alternative", text.trim()));
    }
    let mut comparators = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words.get(i + 1).map(String::as_str) == Some("-") {
            let upper = words.get(i + 2).ok_or_else(|| format!("the range {:?} has no upper end", words[i]))?;
            comparators.push(comparator(Op::Ge, &words[i])?);
            comparators.push(comparator(Op::Le, upper)?);
            i += 3;
            continue;
        }
        let (op, version) = split_operator(&words[i]);
        comparators.push(comparator(op, version)?);
        i += 1;
    }
    Ok(comparators)
}

fn is_operator(word: &str) -> bool {
    matches!(word, "=" | "!=" | ">" | ">=" | "=>" | "<" | "<=" | "=<" | "~" | "~>" | "^")
}

fn split_operator(word: &str) -> (Op, &str) {
    for (prefix, op) in [
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("=>", Op::Ge),
        ("<=", Op::Le),
        ("=<", Op::Le),
        ("~>", Op::Tilde),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("~", Op::Tilde),
        ("^", Op::Caret),
        ("=", Op::Eq),
    ] {
        if let Some(rest) = word.strip_prefix(prefix) {
            return (op, rest);
        }
    }
    (Op::Eq, word)
}

fn partial(text: &str) -> Result<Partial, String> {
    let refuse = || format!("{text:?} is not a version");
    if text.is_empty() {
        return Err("an operator without a version".into());
    }
    if matches!(text, "*" | "x" | "X") {
        return Ok(Partial { base: Version::release(0, 0, 0), given: 0 });
    }
    let unprefixed = text.strip_prefix(['v', 'V']).unwrap_or(text);
    // Wildcards end what is given: `1.x` and `1.x.x` alike mean "any 1".
    let mut kept: Vec<&str> = Vec::new();
    let (core, suffix) = match unprefixed.find(['-', '+']) {
        Some(at) => unprefixed.split_at(at),
        None => (unprefixed, ""),
    };
    for part in core.split('.') {
        if matches!(part, "*" | "x" | "X") {
            break;
        }
        kept.push(part);
    }
    if kept.len() < core.split('.').count() && !suffix.is_empty() {
        return Err(refuse());
    }
    let rebuilt = format!("{}{suffix}", kept.join("."));
    let (base, given) = if kept.is_empty() {
        (Version::release(0, 0, 0), 0)
    } else {
        Version::parse_parts(&rebuilt).ok_or_else(refuse)?
    };
    Ok(Partial { base, given })
}

fn bound(version: Version, inclusive: bool) -> Option<Bound> {
    Some(Bound { version, inclusive })
}

/// The first version past every version that `p` stands for, when there is one.
fn past(p: &Partial) -> Option<Version> {
    let b = &p.base;
    match p.given {
        1 => Some(Version::release(b.major.checked_add(1)?, 0, 0)),
        2 => Some(Version::release(b.major, b.minor.checked_add(1)?, 0)),
        _ => None,
    }
}

fn comparator(op: Op, text: &str) -> Result<Comparator, String> {
    let p = partial(text)?;
    let allows_prerelease = p.base.is_prerelease();
    let base = p.base.clone();
    let overflow = || format!("{text:?} is too large a version");
    let check = match op {
        Op::Eq | Op::Ne => {
            let (lower, upper) = match p.given {
                0 => (None, None),
                3 => (bound(base.clone(), true), bound(base, true)),
                _ => (bound(base, true), bound(past(&p).ok_or_else(overflow)?, false)),
            };
            match (op, lower.is_none()) {
                (Op::Eq, true) => Check::Any,
                (Op::Eq, false) => Check::Range { lower, upper },
                (_, true) => Check::Nothing,
                _ => Check::Outside { lower, upper },
            }
        }
        Op::Gt => match p.given {
            0 => Check::Nothing,
            3 => Check::Range { lower: bound(base, false), upper: None },
            _ => Check::Range { lower: bound(past(&p).ok_or_else(overflow)?, true), upper: None },
        },
        Op::Ge => Check::Range { lower: bound(base, true), upper: None },
        Op::Lt => match p.given {
            0 => Check::Nothing,
            _ => Check::Range { lower: None, upper: bound(base, false) },
        },
        Op::Le => match p.given {
            0 => Check::Any,
            3 => Check::Range { lower: None, upper: bound(base, true) },
            _ => Check::Range { lower: None, upper: bound(past(&p).ok_or_else(overflow)?, false) },
        },
        Op::Tilde => match p.given {
            0 => Check::Any,
            1 => Check::Range { lower: bound(base, true), upper: bound(past(&p).ok_or_else(overflow)?, false) },
            _ => {
                let upper = Version::release(base.major, base.minor.checked_add(1).ok_or_else(overflow)?, 0);
                Check::Range { lower: bound(base, true), upper: bound(upper, false) }
            }
        },
        Op::Caret => {
            let upper = match (p.given, base.major, base.minor) {
                (0, ..) => None,
                (1, ..) => Some(Version::release(base.major.checked_add(1).ok_or_else(overflow)?, 0, 0)),
                (_, major, _) if major > 0 => Some(Version::release(major.checked_add(1).ok_or_else(overflow)?, 0, 0)),
                (2, _, minor) => Some(Version::release(0, minor.checked_add(1).ok_or_else(overflow)?, 0)),
                (_, _, minor) if minor > 0 => Some(Version::release(0, minor.checked_add(1).ok_or_else(overflow)?, 0)),
                _ => Some(Version::release(0, 0, base.patch.checked_add(1).ok_or_else(overflow)?)),
            };
            match upper {
                None => Check::Any,
                Some(upper) => Check::Range { lower: bound(base, true), upper: bound(upper, false) },
            }
        }
    };
    Ok(Comparator { check, allows_prerelease })
}

impl Bound {
    fn below(&self, v: &Version) -> bool {
        if self.inclusive { self.version <= *v } else { self.version < *v }
    }

    fn above(&self, v: &Version) -> bool {
        if self.inclusive { *v <= self.version } else { *v < self.version }
    }
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        if v.is_prerelease() && !self.allows_prerelease {
            return false;
        }
        let within = |lower: &Option<Bound>, upper: &Option<Bound>| {
            lower.as_ref().is_none_or(|b| b.below(v)) && upper.as_ref().is_none_or(|b| b.above(v))
        };
        match &self.check {
            Check::Any => true,
            Check::Nothing => false,
            Check::Range { lower, upper } => within(lower, upper),
            Check::Outside { lower, upper } => !within(lower, upper),
        }
    }
}

/// Whether `text` reads as one complete version and nothing else (`1.32.1`,
/// `v1.32.1-rc.1`): such a request is a pin, not a range.
pub fn is_complete_version(text: &str) -> bool {
    Version::parse_parts(text).is_some_and(|(_, given)| given == 3)
}

/// Whether `text` is free of constraint syntax: no operator, range, list or wildcard.
pub fn is_plain(text: &str) -> bool {
    !text.contains(['<', '>', '=', '~', '^', '*', ',', ' ', '|', '!'])
        && !text.split(['.', '-', '+']).any(|part| matches!(part, "x" | "X"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn c(text: &str) -> Constraint {
        Constraint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} is a version"))
    }

    fn holds(constraint: &str, version: &str) -> bool {
        c(constraint).matches(&v(version))
    }

    #[test]
    fn the_examples_kairos_resolves() {
        // The constraints of kairos-io/kairos sdk/extensions catalogs_test.go, over the
        // published versions 2.55.0, 2.54.1 and 2.50.0.
        let published = ["2.55.0", "2.54.1", "2.50.0"];
        for (constraint, want) in
            [(">= 2.50, < 2.55", "2.54.1"), ("^2.50", "2.55.0"), ("~2.54.0", "2.54.1"), ("< 2.54", "2.50.0")]
        {
            let best = published.iter().map(|t| v(t)).filter(|x| c(constraint).matches(x)).max();
            assert_eq!(best, Some(v(want)), "{constraint}");
        }
        assert!(!published.iter().any(|t| holds(">= 4.0", t)));
    }

    #[test]
    fn caret_and_tilde() {
        for (constraint, yes, no) in [
            ("^1.32", &["1.32.0", "1.32.9", "1.99.0"][..], &["1.31.9", "2.0.0"][..]),
            ("^1.2.3", &["1.2.3", "1.9.0"], &["1.2.2", "2.0.0"]),
            ("^0.2.3", &["0.2.3", "0.2.9"], &["0.3.0", "0.2.2"]),
            ("^0.0.3", &["0.0.3"], &["0.0.4", "0.0.2"]),
            ("^0.0", &["0.0.0", "0.0.9"], &["0.1.0"]),
            ("^0", &["0.0.0", "0.9.9"], &["1.0.0"]),
            ("~1.32", &["1.32.0", "1.32.7"], &["1.33.0", "1.31.0"]),
            ("~1.2.3", &["1.2.3", "1.2.9"], &["1.3.0", "1.2.2"]),
            ("~1", &["1.0.0", "1.9.9"], &["2.0.0", "0.9.0"]),
            ("~>1.2", &["1.2.5"], &["1.3.0"]),
        ] {
            for version in yes {
                assert!(holds(constraint, version), "{constraint} should take {version}");
            }
            for version in no {
                assert!(!holds(constraint, version), "{constraint} should refuse {version}");
            }
        }
    }

    #[test]
    fn partial_versions_wildcards_ranges_and_alternatives() {
        assert!(holds("1.2", "1.2.7") && !holds("1.2", "1.3.0"));
        assert!(holds("1.2.x", "1.2.7") && !holds("1.2.x", "1.3.0"));
        assert!(holds("> 1.2", "1.3.0") && !holds("> 1.2", "1.2.9"));
        assert!(holds("<= 1.2", "1.2.9") && !holds("<= 1.2", "1.3.0"));
        assert!(holds("<= 2.x", "2.9.9") && !holds("<= 2.x", "3.0.0"));
        assert!(holds(">= 1.2.x", "1.2.0"));
        assert!(holds("*", "9.9.9") && holds("x", "0.0.1"));
        assert!(holds("1.2 - 1.4.5", "1.4.5") && !holds("1.2 - 1.4.5", "1.4.6") && !holds("1.2 - 1.4.5", "1.1.9"));
        assert!(holds("2.3.4 - 4.5", "4.5.9") && !holds("2.3.4 - 4.5", "4.6.0"));
        assert!(holds("< 1 || >= 3", "0.5.0") && holds("< 1 || >= 3", "3.1.0") && !holds("< 1 || >= 3", "2.0.0"));
        assert!(holds(">=1.30 <2", "1.31.0") && !holds(">=1.30 <2", "2.0.0"));
        assert!(holds("!= 1.2.3", "1.2.4") && !holds("!= 1.2.3", "1.2.3"));
        assert!(holds("!= 1.2", "1.3.0") && !holds("!= 1.2", "1.2.5"));
        assert!(holds("=v1.2.3", "1.2.3") && holds("1.2.3", "v1.2.3"));
    }

    #[test]
    fn prereleases_only_when_asked_for() {
        assert!(!holds("^1.32", "1.33.0-rc.1"));
        assert!(!holds(">= 1.0", "1.5.0-beta"));
        assert!(holds(">= 1.33.0-rc.0", "1.33.0-rc.1"));
        assert!(holds("1.33.0-rc.1", "1.33.0-rc.1"));
    }

    #[test]
    fn refuses_what_is_not_a_constraint() {
        for bad in ["", " ", "stable", ">=", "1.2 -", "1.2.3.4", "^a", "||", ">= 1 ||", "1.x-rc"] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?} was taken");
        }
        assert!(Constraint::parse(&"1".repeat(300)).is_err());
        assert!(Constraint::parse("^18446744073709551615").is_err(), "no overflow");
    }

    #[test]
    fn tells_pins_from_ranges() {
        assert!(is_complete_version("1.32.1") && is_complete_version("v1.32.1-rc.1"));
        assert!(!is_complete_version("1.32") && !is_complete_version("^1.32.1"));
        assert!(is_plain("stable") && is_plain("1.32") && !is_plain("1.x") && !is_plain(">=1"));
    }

    fn release() -> impl Strategy<Value = (u64, u64, u64)> {
        (0u64..6, 0u64..6, 0u64..6)
    }

    proptest! {
        /// Each operator against its meaning, spelled out on release triples.
        #[test]
        fn operators_mean_what_they_say(a in release(), b in release()) {
            let (x, y) = (Version::release(a.0, a.1, a.2), Version::release(b.0, b.1, b.2));
            let bs = format!("{}.{}.{}", b.0, b.1, b.2);
            prop_assert_eq!(c(&format!(">={bs}")).matches(&x), x >= y);
            prop_assert_eq!(c(&format!(">{bs}")).matches(&x), x > y);
            prop_assert_eq!(c(&format!("<{bs}")).matches(&x), x < y);
            prop_assert_eq!(c(&format!("<={bs}")).matches(&x), x <= y);
            prop_assert_eq!(c(&bs).matches(&x), x == y);
            prop_assert_eq!(c(&format!("!={bs}")).matches(&x), x != y);
            let tilde = x >= y && (a.0, a.1) == (b.0, b.1);
            prop_assert_eq!(c(&format!("~{bs}")).matches(&x), tilde);
            let caret = x >= y && match (b.0, b.1) {
                (0, 0) => a == b,
                (0, minor) => a.0 == 0 && a.1 == minor,
                (major, _) => a.0 == major,
            };
            prop_assert_eq!(c(&format!("^{bs}")).matches(&x), caret);
        }

        /// `A, B` is both; `A || B` is either.
        #[test]
        fn lists_and_alternatives_combine(a in release(), b in release(), d in release()) {
            let x = Version::release(a.0, a.1, a.2);
            let (bs, ds) = (format!("{}.{}.{}", b.0, b.1, b.2), format!("{}.{}.{}", d.0, d.1, d.2));
            let (p, q) = (c(&format!(">={bs}")).matches(&x), c(&format!("<{ds}")).matches(&x));
            prop_assert_eq!(c(&format!(">={bs}, <{ds}")).matches(&x), p && q);
            prop_assert_eq!(c(&format!(">= {bs} < {ds}")).matches(&x), p && q);
            prop_assert_eq!(c(&format!(">={bs} || <{ds}")).matches(&x), p || q);
        }

        #[test]
        fn any_text_is_read_or_refused_without_panicking(text in "[-0-9a-z.<>=~^*|!, ]{0,40}") {
            if let Ok(constraint) = Constraint::parse(&text) {
                let _ = constraint.matches(&Version::release(1, 2, 3));
            }
        }
    }
}
