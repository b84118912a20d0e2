//! Where an image comes from, as a caller writes it.
//!
//! Parsing is strict and happens before any work starts, so a bad source is refused
//! with `InvalidSource` at once instead of failing halfway through a job.

pub mod file;

use std::path::{Component, PathBuf};

use super::Error;

/// A parsed install source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file, by absolute path.
    File(PathBuf),
}

impl Source {
    /// Parses `file:///abs/path` or a bare absolute path.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidSource { source_text: text.to_owned(), reason: reason.to_owned() };
        if text.contains('\0') || text.chars().any(char::is_control) {
            return Err(invalid("control characters are not allowed"));
        }
        let path = if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid("file:// URLs need an absolute path (file:///path/to/image.raw)"));
            }
            percent_decode(rest).ok_or_else(|| invalid("bad %-escape in the path"))?
        } else if text.starts_with('/') {
            text.to_owned()
        } else if let Some((scheme, _)) = text.split_once("://") {
            return Err(match scheme {
                "oci" | "docker" | "container" | "http" | "https" => {
                    invalid("installing from registries and web servers is not supported by this build yet")
                }
                _ => invalid("unknown scheme; use oci://, docker://, https://, http:// or file://"),
            });
        } else {
            return Err(invalid("use an absolute path or file:///path"));
        };
        let path = PathBuf::from(path);
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(invalid("'..' is not allowed in the path"));
        }
        Ok(Self::File(path))
    }

    /// The source as stored in provenance and shown to users.
    pub fn display(&self) -> String {
        match self {
            Self::File(path) => format!("file://{}", path.display()),
        }
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    (!decoded.contains('\0')).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_sources() {
        assert_eq!(Source::parse("file:///tmp/a.raw").ok(), Some(Source::File("/tmp/a.raw".into())));
        assert_eq!(Source::parse("/tmp/a.raw").ok(), Some(Source::File("/tmp/a.raw".into())));
        assert_eq!(Source::parse("file:///tmp/a%20b.raw").ok(), Some(Source::File("/tmp/a b.raw".into())));
    }

    #[test]
    fn refuses_bad_sources() {
        for bad in [
            "",
            "relative.raw",
            "file://relative",
            "file:///tmp/%zz",
            "file:///tmp/%00x",
            "file:///tmp/../etc/shadow",
            "/tmp/a\nb",
            "ftp://x/y",
            "oci://registry/x",
        ] {
            assert!(matches!(Source::parse(bad), Err(Error::InvalidSource { .. })), "{bad:?} accepted");
        }
    }
}
