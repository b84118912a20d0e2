//! Object paths of extensions and jobs.

use zbus::OwnedObjectPath;

use crate::MANAGER_PATH;

/// Escapes `label` the way `sd_bus_path_encode()` does: ASCII letters and digits stay,
/// every other byte becomes `_XX` in lower-case hex, and the empty string becomes `_`.
pub fn encode_label(label: &str) -> String {
    if label.is_empty() {
        return "_".to_owned();
    }
    let mut out = String::with_capacity(label.len() * 3);
    for byte in label.bytes() {
        if byte.is_ascii_alphanumeric() {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

/// Reverses [`encode_label`]; `None` for a label it could not have produced.
pub fn decode_label(label: &str) -> Option<String> {
    if label == "_" {
        return Some(String::new());
    }
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = label.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if bytes[i].is_ascii_alphanumeric() {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The object path of the extension called `name`.
pub fn extension_path(name: &str) -> OwnedObjectPath {
    object_path(format!("{MANAGER_PATH}/extension/{}", encode_label(name)))
}

/// The object path of job `id`.
pub fn job_path(id: u64) -> OwnedObjectPath {
    object_path(format!("{MANAGER_PATH}/job/{id}"))
}

fn object_path(text: String) -> OwnedObjectPath {
    // Encoded labels contain only [A-Za-z0-9_], so the path is always valid; the
    // fallback exists only to avoid a panic path.
    OwnedObjectPath::try_from(text)
        .unwrap_or_else(|_| OwnedObjectPath::from(zbus::ObjectPath::from_static_str_unchecked(MANAGER_PATH)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_sd_bus_path_encode() {
        assert_eq!(encode_label("k3s"), "k3s");
        assert_eq!(encode_label("k3s-1.30+k3s1"), "k3s_2d1_2e30_2bk3s1");
        assert_eq!(encode_label("a_b"), "a_5fb");
        assert_eq!(encode_label(""), "_");
        assert_eq!(extension_path("my.ext").as_str(), "/org/kairos/Extensions1/extension/my_2eext");
        assert_eq!(job_path(7).as_str(), "/org/kairos/Extensions1/job/7");
    }

    #[test]
    fn decodes_what_it_encodes() {
        for name in ["k3s", "a_b", "x.y+z-1", ""] {
            assert_eq!(decode_label(&encode_label(name)).as_deref(), Some(name));
        }
        assert_eq!(decode_label("_zz"), None);
        assert_eq!(decode_label("a-b"), None);
    }
}
