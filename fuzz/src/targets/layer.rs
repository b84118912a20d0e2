//! The layer-entry filter (`sources::layer::extract`): a tar layer from a registry,
//! streamed into staging.
//!
//! Beyond "no panic, no huge allocation": every image taken is a plain `*.raw` name
//! (no `/`, no `..`, not hidden, not absolute), named once, staged inside the store's
//! staging directory with exactly the bytes a second tar reader finds for that entry;
//! a layer holding a link, a device, a FIFO or anything but regular files is refused;
//! and a refusal leaves nothing in staging.

use std::collections::BTreeSet;
use std::io::Read;

use kairos_extensionsd::engine::progress::Silent;
use kairos_extensionsd::engine::sources::layer;
use tar::EntryType;

use super::name::systemd_image_name_is_valid;

/// The budget for the whole archive, as the service passes its image size limit.
const MAX_TOTAL: u64 = 1 << 20;
/// Images one layer may yield (the service allows 16 per pull).
const MAX_IMAGES: usize = 16;

/// An entry as a second tar reader finds it: type, name and bytes.
type Found = (EntryType, Vec<u8>, Vec<u8>);

/// What a second reading of the archive finds, up to the first error, and whether it
/// read to the end.
fn second_reading(data: &[u8]) -> (Vec<Found>, bool) {
    let mut archive = tar::Archive::new(data);
    let mut found = Vec::new();
    let Ok(entries) = archive.entries() else { return (found, false) };
    for entry in entries {
        let Ok(mut entry) = entry else { return (found, false) };
        let kind = entry.header().entry_type();
        let name = entry.path_bytes().into_owned();
        let mut bytes = Vec::new();
        if entry.read_to_end(&mut bytes).is_err() {
            return (found, false);
        }
        found.push((kind, name, bytes));
    }
    (found, true)
}

fn staging_is_empty() -> bool {
    let tmp = crate::scratch::store().layout().tmp_dir();
    std::fs::read_dir(&tmp).map(|d| d.count() == 0).unwrap_or(true)
}

pub fn run(data: &[u8]) {
    let store = crate::scratch::store();
    let result = layer::extract(data, MAX_TOTAL, MAX_IMAGES, || store.stage(MAX_TOTAL), &Silent);
    let images = match result {
        Ok(images) => images,
        Err(_) => {
            assert!(staging_is_empty(), "a refused layer left files in staging");
            return;
        }
    };
    let (entries, complete) = second_reading(data);
    assert!(complete, "accepted a layer another tar reader cannot read through");
    for (kind, name, _) in &entries {
        assert!(
            matches!(kind, EntryType::Regular | EntryType::Continuous | EntryType::Directory),
            "accepted a layer with a {kind:?} entry {:?}",
            String::from_utf8_lossy(name)
        );
    }
    let mut names = BTreeSet::new();
    let tmp = store.layout().tmp_dir();
    for image in &images {
        let name = &image.file_name;
        assert!(names.insert(name.clone()), "{name:?} taken twice");
        assert!(!name.contains('/') && !name.contains("..") && !name.starts_with(['.', '-']), "{name:?}");
        assert!(name.ends_with(".raw") && name.len() > 4 && systemd_image_name_is_valid(name), "{name:?}");
        assert_eq!(image.staged.path().parent(), Some(tmp.as_path()), "staged outside staging");
        let staged = std::fs::read(image.staged.path()).expect("reading a staged image");
        assert_eq!(staged.len() as u64, image.staged.size());
        let theirs = entries.iter().find(|(kind, entry, _)| {
            *kind != EntryType::Directory && entry.strip_prefix(b"./").unwrap_or(entry) == name.as_bytes()
        });
        let Some((_, _, bytes)) = theirs else { panic!("{name:?} is not an entry of the layer") };
        assert!(staged == *bytes, "{name:?} staged with other bytes than the layer holds");
    }
    let regular = entries.iter().filter(|(kind, _, _)| *kind != EntryType::Directory).count();
    assert_eq!(regular, images.len(), "every regular entry is taken or the layer refused");
    drop(images);
    assert!(staging_is_empty(), "staged images outlived their owner");
}
