//! The layer-entry name check (`sources::layer::entry_name`) on its own, so the fuzzer
//! spends its time on names rather than on tar framing.
//!
//! Beyond "no panic": an accepted name is one plain `*.raw` component that systemd
//! accepts as an image name, the entry's own name less a leading `./`; only a directory
//! entry for the root itself is skipped.

use kairos_extensionsd::engine::sources::layer::entry_name;

use super::name::systemd_image_name_is_valid;

pub fn run(data: &[u8]) {
    for is_dir in [false, true] {
        match entry_name(data, is_dir) {
            Ok(Some(name)) => {
                assert!(!is_dir, "a directory {name:?} was taken");
                assert!(!name.contains('/') && name != ".." && !name.starts_with(['.', '-']), "{name:?}");
                assert!(name.ends_with(".raw") && name.len() > 4, "{name:?}");
                assert!(!name.chars().any(char::is_control), "{name:?}");
                assert!(systemd_image_name_is_valid(&name), "{name:?}");
                assert_eq!(data.strip_prefix(b"./").unwrap_or(data), name.as_bytes());
            }
            Ok(None) => assert!(is_dir && matches!(data, b"/" | b"." | b"./"), "{data:?} skipped"),
            Err(reason) => assert!(!reason.is_empty()),
        }
    }
}
