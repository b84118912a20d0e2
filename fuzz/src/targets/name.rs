//! The extension-name parser (`ExtensionName::new`), which stands between every D-Bus
//! caller and the file names of the store.
//!
//! Beyond "no panic": it accepts exactly the contract's grammar (checked by a second,
//! independent reading of it), everything it accepts is a name systemd accepts too
//! (`image_name_is_valid()`, so for the image file as well), each refusal names what is
//! wrong truly, and Display and serde give back the same name.

use kairos_extensions_dbus::{ExtensionName, InvalidName};

/// The contract's longest name.
const MAX_NAME_LEN: usize = 128;

/// `^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`, read byte by byte.
fn grammar(text: &str) -> bool {
    let bytes = text.as_bytes();
    (1..=MAX_NAME_LEN).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b".+_-".contains(b))
}

/// systemd's `image_name_is_valid()` (src/basic/os-util.c): `filename_is_valid()` (not
/// empty, not `.` or `..`, no `/`, at most NAME_MAX bytes), no control characters, valid
/// UTF-8 (a `&str` is), and not a `.#` temporary file.
pub fn systemd_image_name_is_valid(name: &str) -> bool {
    const NAME_MAX: usize = 255;
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= NAME_MAX
        && !name.bytes().any(|b| b < b' ' || b == 0x7f)
        && !name.starts_with(".#")
}

fn allowed(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '+' | '-')
}

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else { return };
    let parsed = ExtensionName::new(text);
    assert_eq!(parsed.is_ok(), grammar(text), "{text:?}: {parsed:?}");
    match parsed {
        Ok(name) => {
            assert_eq!(name.as_str(), text);
            assert!(systemd_image_name_is_valid(name.as_str()), "systemd refuses {text:?}");
            assert!(systemd_image_name_is_valid(&name.image_file_name()), "systemd refuses {text:?}.raw");
            assert_eq!(name.to_string().parse::<ExtensionName>().as_ref(), Ok(&name));
            let json = serde_json::to_string(&name).expect("a name serialises");
            assert_eq!(serde_json::from_str::<ExtensionName>(&json).ok().as_ref(), Some(&name));
        }
        Err(InvalidName::Empty) => assert!(text.is_empty()),
        Err(InvalidName::TooLong(len)) => assert!(len == text.len() && len > MAX_NAME_LEN),
        Err(InvalidName::BadStart(shown)) => {
            assert_eq!(shown, text);
            assert!(text.chars().next().is_some_and(|c| !c.is_ascii_alphanumeric()));
        }
        Err(InvalidName::BadChar { name, ch }) => {
            assert_eq!(name, text);
            assert!(text.contains(ch) && !allowed(ch), "{ch:?} in {text:?}");
            assert_eq!(text.chars().find(|c| !allowed(*c)), Some(ch), "the first bad character is named");
        }
    }
    // A name that arrives in JSON (a provenance record, an intent step) is held to the
    // same grammar.
    let json = serde_json::to_string(text).expect("a string serialises");
    assert_eq!(serde_json::from_str::<ExtensionName>(&json).is_ok(), grammar(text), "{text:?} from JSON");
}
