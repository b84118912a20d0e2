//! `sha256:<hex>` digests: parsing what callers pin and hashing what we store.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest in the OCI spelling `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

/// A digest string that is not `sha256:` followed by 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
pub struct InvalidDigest(pub String);

impl Sha256Digest {
    /// Parses bare hex (as in an `#sha256=` URL fragment), either case.
    pub fn from_hex(hex: &str) -> Result<Self, InvalidDigest> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(InvalidDigest(hex.to_owned()));
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = hex_value(pair[0]).ok_or_else(|| InvalidDigest(hex.to_owned()))?;
            let lo = hex_value(pair[1]).ok_or_else(|| InvalidDigest(hex.to_owned()))?;
            *slot = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// Hashes everything `reader` yields.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Self> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Self::from_hasher(hasher))
    }

    /// Finishes a running hash.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl FromStr for Sha256Digest {
    type Err = InvalidDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| InvalidDigest(s.to_owned()))?;
        Self::from_hex(hex).map_err(|_| InvalidDigest(s.to_owned()))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_and_formats() -> io::Result<()> {
        assert_eq!(Sha256Digest::of_reader(&b""[..])?.to_string(), EMPTY);
        Ok(())
    }

    #[test]
    fn parses_round_trip_and_uppercase_hex() {
        assert_eq!(EMPTY.parse::<Sha256Digest>().map(|d| d.to_string()), Ok(EMPTY.to_owned()));
        let upper = EMPTY.trim_start_matches("sha256:").to_uppercase();
        assert_eq!(Sha256Digest::from_hex(&upper).map(|d| d.to_string()), Ok(EMPTY.to_owned()));
    }

    #[test]
    fn refuses_malformed_digests() {
        for bad in ["", "sha256:", "sha512:00", "e3b0c442", &EMPTY.replace('e', "g"), &format!("{EMPTY}0")] {
            assert!(bad.parse::<Sha256Digest>().is_err(), "{bad:?} accepted");
        }
    }
}
