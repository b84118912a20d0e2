//! The source parser (`Source::parse`): the text a caller hands `Install`.
//!
//! Beyond "no panic": a refusal is always `InvalidSource`; what is shown for a local
//! file, a registry reference or a plain URL parses back to the same source; and no
//! credential reaches what is stored, logged or shown. For the last, the first input
//! byte picks a mode: in one the input is the source itself, in the other its bytes
//! fill the parts of a URL around a password and a signed-URL token planted where
//! credentials go, and neither may appear in anything shown, accepted or refused.

use kairos_extensionsd::engine::Error;
use kairos_extensionsd::engine::sources::Source;
use kairos_extensionsd::engine::sources::reference::ImageReference;

/// Planted in the password's place.
const SECRET: &str = "Sekr3tPassw0rdXq";
/// Planted as a signed URL's signature.
const TOKEN: &str = "T0kenS1gnatureZk";

/// Everything a caller or a log sees of `text`: the source shown, or the refusal.
fn shown(text: &str) -> (Result<Source, ()>, String) {
    match Source::parse(text) {
        Ok(source) => {
            let shown = source.display();
            (Ok(source), shown)
        }
        Err(Error::InvalidSource { source_text, reason }) => (Err(()), format!("{source_text} {reason}")),
        Err(other) => panic!("{text:?} refused with {other:?}, not InvalidSource"),
    }
}

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else { return };
    let Some(text) = crate::text(rest) else { return };
    if mode % 2 == 0 { as_written(text) } else { with_credentials(*mode, text) }
}

fn as_written(text: &str) {
    let (parsed, shown) = shown(text);
    let Ok(source) = parsed else { return };
    match &source {
        Source::File(path) => {
            assert!(path.is_absolute(), "{path:?}");
            assert!(!path.components().any(|c| c == std::path::Component::ParentDir), "{path:?}");
            assert_eq!(Source::parse(&shown).ok().as_ref(), Some(&source), "{text:?} shown as {shown:?}");
        }
        Source::Oci { reference } => {
            assert_eq!(shown, format!("oci://{reference}"));
            assert_eq!(Source::parse(&shown).ok().as_ref(), Some(&source), "{text:?} shown as {shown:?}");
            assert_eq!(ImageReference::parse(&reference.to_string()).as_ref(), Ok(reference));
        }
        Source::Catalog { name, request } => {
            assert_eq!(shown, format!("catalog:{name}{request}"));
            assert_eq!(Source::parse(&shown).ok().as_ref(), Some(&source), "{text:?} shown as {shown:?}");
        }
        Source::Http { url, pinned } => {
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
            assert!(url.fragment().is_none(), "the fragment is the pin, not part of the URL: {url}");
            // Shown without userinfo, and with any query redacted.
            let again = reqwest::Url::parse(&shown).expect("what is shown is a URL");
            assert!(again.username().is_empty() && again.password().is_none(), "{shown}");
            assert!(again.query().is_none_or(|q| q == "%3Credacted%3E"), "{shown}");
            if url.username().is_empty() && url.password().is_none() && url.query().is_none() {
                assert_eq!(Source::parse(&shown).ok().as_ref(), Some(&source), "{text:?} shown as {shown:?}");
            }
            if let Some(pin) = pinned {
                let hex = pin.to_string();
                assert!(shown.ends_with(&format!("#sha256={}", hex.trim_start_matches("sha256:"))), "{shown}");
            }
        }
    }
}

/// `text` with `%XX` escapes decoded as far as they decode, tabs and line breaks dropped
/// (as URL parsers drop them), lower-cased: how a URL reader may come to see it.
fn decoded_lowercase(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out.retain(|b| !matches!(b, b'\t' | b'\n' | b'\r'));
    String::from_utf8_lossy(&out).to_lowercase()
}

fn with_credentials(mode: u8, text: &str) {
    // Parts that spell the planted values themselves would show them for their own sake.
    let spelled = decoded_lowercase(text);
    if [SECRET, TOKEN].iter().any(|planted| spelled.contains(&planted.to_lowercase())) {
        return;
    }
    let scheme = ["https", "http", "oci", "docker", "container", "ftp", "file"][usize::from(mode / 2) % 7];
    let mut parts = text.splitn(3, '\u{1}');
    let (user, host, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let source = format!("{scheme}://{user}:{SECRET}@{host}/{path}?X-Amz-Signature={TOKEN}");
    let (parsed, shown) = shown(&source);
    // file:///... is a path, whatever it holds: the caller named that file.
    if matches!(parsed, Ok(Source::File(_))) {
        return;
    }
    assert!(!shown.contains(TOKEN), "{source:?} shows the signature: {shown:?}");
    // The password is a credential as long as the user and host are plain enough that
    // no reader could take it for part of the path.
    let plain = |part: &str| !part.contains(['/', '\\', '?', '#', '@', '%']) && !part.chars().any(char::is_control);
    if plain(user) && plain(host) {
        assert!(!shown.contains(SECRET), "{source:?} shows the password: {shown:?}");
    }
}
