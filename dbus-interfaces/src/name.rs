use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest name accepted: the first character plus 127 more.
pub const MAX_NAME_LEN: usize = 128;

/// A validated extension name.
///
/// The name is the `<NAME>` of the image's `extension-release.<NAME>` file. It becomes a
/// file name in the store and in every boot-state directory, so validation is what keeps
/// a caller from naming a path outside them: the grammar
/// `^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$` admits no `/`, no NUL and no leading dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ExtensionName(String);

/// Why a string is not a valid extension name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The string is empty.
    #[error("an extension name cannot be empty")]
    Empty,
    /// The string is longer than [`MAX_NAME_LEN`].
    #[error("extension name is {0} bytes long; at most {MAX_NAME_LEN} are allowed")]
    TooLong(usize),
    /// The first character is not an ASCII letter or digit.
    #[error("extension name {0:?} must start with a letter or a digit")]
    BadStart(String),
    /// A character outside `[A-Za-z0-9._+-]`.
    #[error("extension name {name:?} contains {ch:?}; only letters, digits and . _ + - are allowed")]
    BadChar {
        /// The offending name.
        name: String,
        /// The first character that is not allowed.
        ch: char,
    },
}

impl ExtensionName {
    /// Validates `name` against the grammar of the contract.
    pub fn new(name: &str) -> Result<Self, InvalidName> {
        let first = name.chars().next().ok_or(InvalidName::Empty)?;
        if name.len() > MAX_NAME_LEN {
            return Err(InvalidName::TooLong(name.len()));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(InvalidName::BadStart(name.to_owned()));
        }
        if let Some(ch) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))) {
            return Err(InvalidName::BadChar { name: name.to_owned(), ch });
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file name the service stores this extension's image under.
    pub fn image_file_name(&self) -> String {
        format!("{}.raw", self.0)
    }
}

impl fmt::Display for ExtensionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ExtensionName {
    type Err = InvalidName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for ExtensionName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ExtensionName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        let max = format!("a{}", "b".repeat(127));
        for good in ["k3s", "K3s-1.30+k3s1", "a", "0", "a.b_c+d-e", "x..y", max.as_str()] {
            assert_eq!(ExtensionName::new(good).map(|n| n.to_string()), Ok(good.to_owned()));
        }
    }

    #[test]
    fn refuses_invalid_names() {
        let too_long = "a".repeat(129);
        let cases: &[(&str, InvalidName)] = &[
            ("", InvalidName::Empty),
            (".", InvalidName::BadStart(".".into())),
            ("..", InvalidName::BadStart("..".into())),
            ("../x", InvalidName::BadStart("../x".into())),
            (".hidden", InvalidName::BadStart(".hidden".into())),
            ("-x", InvalidName::BadStart("-x".into())),
            ("a/b", InvalidName::BadChar { name: "a/b".into(), ch: '/' }),
            ("a\0b", InvalidName::BadChar { name: "a\0b".into(), ch: '\0' }),
            ("a b", InvalidName::BadChar { name: "a b".into(), ch: ' ' }),
            ("a*", InvalidName::BadChar { name: "a*".into(), ch: '*' }),
            ("k3s\n", InvalidName::BadChar { name: "k3s\n".into(), ch: '\n' }),
            ("é", InvalidName::BadStart("é".into())),
            (too_long.as_str(), InvalidName::TooLong(129)),
        ];
        for (input, expected) in cases {
            assert_eq!(ExtensionName::new(input).as_ref(), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn image_file_name_appends_raw() {
        let name = ExtensionName::new("k3s").expect("valid");
        assert_eq!(name.image_file_name(), "k3s.raw");
    }
}
