//! Image layers as Kairos builds them: a tar whose entries are `.raw` images at the root
//! (`FROM scratch` + `COPY k3s.raw /`).
//!
//! A layer comes from a registry and is not trusted. Only regular files named `*.raw`
//! at the root are taken (and a directory entry for the root itself); anything else
//! refuses the whole layer with a reason that names the entry: parent references,
//! absolute paths, links of either kind, devices, FIFOs, a name twice, a size that the
//! ustar header and a PAX record disagree on, control characters. Each image streams
//! straight into its own staging file, so nothing is unpacked onto the filesystem.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::Read;
use std::rc::Rc;

use tar::EntryType;

use super::super::progress::Progress;
use super::super::store::{Staged, StoreError};

/// Why a layer was refused.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// An entry that may not be in an extension layer.
    #[error("layer entry {entry:?}: {reason}")]
    Entry {
        /// The entry's name as found (lossily decoded).
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The archive itself is broken.
    #[error("the layer is not a readable tar archive: {0}")]
    Archive(String),
    /// Writing an image to staging failed (size limit, disk, cancellation).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An image taken out of a layer.
pub struct Extracted {
    /// Its file name in the layer (`k3s.raw`).
    pub file_name: String,
    /// The staged bytes.
    pub staged: Staged,
}

/// The longest file name Linux file systems hold, and systemd's `filename_is_valid()`
/// allows: no image was ever copied into a layer under a longer one.
const NAME_MAX: usize = 255;

/// Checks one entry's name: a single component ending in `.raw`, printable, not hidden.
/// Returns the file name, or `None` for the root directory entry.
pub fn entry_name(raw: &[u8], is_dir: bool) -> Result<Option<String>, &'static str> {
    let Ok(text) = std::str::from_utf8(raw) else { return Err("the name is not UTF-8") };
    if text.chars().any(char::is_control) {
        return Err("the name contains control characters");
    }
    if is_dir && matches!(text, "/" | "." | "./") {
        return Ok(None);
    }
    if text.starts_with('/') {
        return Err("absolute paths are not allowed");
    }
    let name = text.strip_prefix("./").unwrap_or(text);
    if is_dir {
        return Err("only .raw images at the layer's root are allowed, not directories");
    }
    if name.split('/').any(|part| part == "..") {
        return Err("parent directory references are not allowed");
    }
    if name.contains('/') {
        return Err("only .raw images at the layer's root are allowed");
    }
    if !name.ends_with(".raw") || name.len() <= ".raw".len() {
        return Err("only files named *.raw are allowed");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err("hidden or option-like names are not allowed");
    }
    if name.len() > NAME_MAX {
        return Err("the name is longer than any file name may be (255 bytes)");
    }
    Ok(Some(name.to_owned()))
}

/// Streams every `.raw` image of the tar in `reader` into a staging file from `stage`.
///
/// `max_total` bounds the bytes read out of the archive as a whole, so a decompression
/// bomb stops at the limit even when it hides in entries that would be refused.
/// `max_images` bounds the images taken: each holds a staging file (and its lock) open
/// until the install ends, so a layer of many empty `.raw` entries would otherwise use
/// up the service's descriptors.
pub fn extract(
    reader: impl Read,
    max_total: u64,
    max_images: usize,
    mut stage: impl FnMut() -> Result<Staged, StoreError>,
    progress: &dyn Progress,
) -> Result<Vec<Extracted>, LayerError> {
    let headers = Rc::new(HeaderBudget::default());
    let limited = LimitedReader { inner: reader, left: max_total, limit: max_total, headers: headers.clone() };
    let mut archive = tar::Archive::new(limited);
    let mut seen = BTreeSet::new();
    let mut images = Vec::new();
    let mut entries = archive.entries().map_err(|e| archive_error(&e))?;
    loop {
        headers.open();
        let next = entries.next();
        headers.close();
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|e| if headers.exceeded() { headers_too_large() } else { archive_error(&e) })?;
        let raw_name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        let refuse = |reason| LayerError::Entry { entry: shown.clone(), reason };
        let kind = entry.header().entry_type();
        let name = match kind {
            EntryType::Directory => entry_name(&raw_name, true).map_err(refuse)?,
            EntryType::Regular | EntryType::Continuous => entry_name(&raw_name, false).map_err(refuse)?,
            EntryType::Symlink => return Err(refuse("symbolic links are not allowed")),
            EntryType::Link => return Err(refuse("hard links are not allowed")),
            EntryType::Char | EntryType::Block => return Err(refuse("device nodes are not allowed")),
            EntryType::Fifo => return Err(refuse("FIFOs are not allowed")),
            _ => return Err(refuse("only regular files are allowed")),
        };
        let Some(name) = name else { continue };
        let ustar_size = entry.header().size().map_err(|_| refuse("the size field is not readable"))?;
        if ustar_size != entry.size() && !pax_overrides_legitimately(ustar_size, entry.size()) {
            return Err(refuse("the ustar header and the PAX record disagree on the size"));
        }
        if !seen.insert(name.clone()) {
            return Err(refuse("the same name appears twice"));
        }
        if images.len() >= max_images {
            return Err(refuse("more extension images than one install takes"));
        }
        let size = entry.size();
        let mut staged = stage()?;
        staged.copy_from(&mut entry, Some(size), progress).map_err(over_budget)?;
        if staged.size() != size {
            return Err(refuse("the entry ended before its size"));
        }
        images.push(Extracted { file_name: name, staged });
    }
    Ok(images)
}

/// The largest size a ustar header's octal field holds (8 GiB - 1).
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// A PAX size legitimately replaces a ustar size field only when the value does not fit
/// in it; writers then leave 0 (Go's archive/tar) or the maximum in the field. Any
/// other disagreement lets two tar readers see two different files.
fn pax_overrides_legitimately(ustar_size: u64, pax_size: u64) -> bool {
    pax_size > USTAR_MAX_SIZE && (ustar_size == 0 || ustar_size == USTAR_MAX_SIZE)
}

/// A read error that is really the archive's byte budget running out, as a size error.
fn over_budget(error: StoreError) -> LayerError {
    match error {
        StoreError::Io { source, .. } if source.get_ref().is_some_and(|e| e.is::<LimitExceeded>()) => {
            archive_error(&source)
        }
        other => LayerError::Store(other),
    }
}

fn archive_error(error: &std::io::Error) -> LayerError {
    match error.get_ref().and_then(|e| e.downcast_ref::<LimitExceeded>()) {
        Some(limit) => LayerError::Store(StoreError::TooLarge { limit: limit.0 }),
        None => LayerError::Archive(error.to_string()),
    }
}

/// The most bytes the tar reader may take between two entries: padding, the next
/// header and its extension records (PAX, GNU long names). The tar crate reads those
/// records whole into memory before it hands out the entry, so without this bound a
/// layer of a few compressed MiB could make the service allocate gigabytes.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

fn headers_too_large() -> LayerError {
    LayerError::Archive(format!(
        "more than {} KiB of headers before one entry; PAX records or long names that large are not an extension image's",
        MAX_HEADER_BYTES / 1024
    ))
}

/// What the tar reader may still read while it looks for the next entry, shared
/// between [`extract`] (which opens and closes the window) and the reader the archive
/// owns.
#[derive(Default)]
struct HeaderBudget {
    left: Cell<Option<u64>>,
    exceeded: Cell<bool>,
}

impl HeaderBudget {
    fn open(&self) {
        self.left.set(Some(MAX_HEADER_BYTES));
    }

    fn close(&self) {
        self.left.set(None);
    }

    fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    /// How much of `want` may be read now, or `None` once the window is used up.
    fn allow(&self, want: usize) -> Option<usize> {
        match self.left.get() {
            None => Some(want),
            Some(0) => {
                self.exceeded.set(true);
                None
            }
            Some(left) => Some(want.min(usize::try_from(left).unwrap_or(usize::MAX))),
        }
    }

    fn consumed(&self, n: usize) {
        if let Some(left) = self.left.get() {
            self.left.set(Some(left.saturating_sub(n as u64)));
        }
    }
}

/// Reading past the archive's byte budget.
#[derive(Debug, thiserror::Error)]
#[error("the layer unpacks to more than {0} bytes")]
struct LimitExceeded(u64);

struct LimitedReader<R> {
    inner: R,
    left: u64,
    limit: u64,
    headers: Rc<HeaderBudget>,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more tells a stream that ends exactly at the limit from one that goes on.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(LimitExceeded(self.limit))),
            };
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let Some(want) = self.headers.allow(want) else {
            return Err(std::io::Error::other("the headers before one entry are too large"));
        };
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        self.headers.consumed(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::progress::Silent;
    use crate::engine::store::Store;

    use crate::engine::store::temp_store as store;

    /// A tar entry header written byte by byte, so hostile names and types survive.
    fn header(name: &[u8], kind: EntryType, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        let bytes = header.as_old_mut();
        bytes.name[..name.len()].copy_from_slice(name);
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        header
    }

    fn archive(entries: &[(&[u8], EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let header = header(name, *kind, data.len() as u64);
            builder.append(&header, *data).expect("append");
        }
        builder.into_inner().expect("finish")
    }

    fn run(tar: &[u8], store: &Store, max_total: u64) -> Result<Vec<Extracted>, LayerError> {
        extract(tar, max_total, 16, || store.stage(1 << 20), &Silent)
    }

    #[test]
    fn takes_no_more_images_than_it_may() {
        let (_root, store) = store();
        let names: Vec<Vec<u8>> = (0..17).map(|i| format!("e{i}.raw").into_bytes()).collect();
        let entries: Vec<(&[u8], EntryType, &[u8])> =
            names.iter().map(|n| (n.as_slice(), EntryType::Regular, &b""[..])).collect();
        let tar = archive(&entries);
        assert!(extract(tar.as_slice(), 1 << 20, 17, || store.stage(1 << 20), &Silent).is_ok_and(|i| i.len() == 17));
        let refused = run(&tar, &store, 1 << 20);
        assert!(
            matches!(&refused, Err(LayerError::Entry { entry, reason }) if entry == "e16.raw" && reason.contains("more extension images")),
            "{:?}",
            refused.as_ref().err()
        );
    }

    #[test]
    fn takes_raw_images_at_the_root() {
        let (_root, store) = store();
        let tar = archive(&[
            (b"./", EntryType::Directory, b""),
            (b"k3s.raw", EntryType::Regular, b"first image"),
            (b"./tools.raw", EntryType::Regular, b"second"),
        ]);
        let images = run(&tar, &store, 1 << 20).expect("accepted");
        let names: Vec<_> = images.iter().map(|i| (i.file_name.as_str(), i.staged.size())).collect();
        assert_eq!(names, [("k3s.raw", 11), ("tools.raw", 6)]);
    }

    #[test]
    fn refuses_every_hostile_entry_naming_it() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (archive(&[(b"../x.raw", EntryType::Regular, b"x")]), "parent directory"),
            (archive(&[(b"/x.raw", EntryType::Regular, b"x")]), "absolute"),
            (archive(&[(b"usr/x.raw", EntryType::Regular, b"x")]), "at the layer's root"),
            (archive(&[(b"etc", EntryType::Directory, b"")]), "not directories"),
            (archive(&[(b"x.sh", EntryType::Regular, b"x")]), "*.raw"),
            (archive(&[(b".x.raw", EntryType::Regular, b"x")]), "hidden"),
            (archive(&[(b"x\n.raw", EntryType::Regular, b"x")]), "control characters"),
            (archive(&[(b"x.raw", EntryType::Symlink, b"")]), "symbolic links"),
            (archive(&[(b"x.raw", EntryType::Link, b"")]), "hard links"),
            (archive(&[(b"x.raw", EntryType::Char, b"")]), "device"),
            (archive(&[(b"x.raw", EntryType::Block, b"")]), "device"),
            (archive(&[(b"x.raw", EntryType::Fifo, b"")]), "FIFO"),
            (archive(&[(b"x.raw", EntryType::Regular, b"a"), (b"./x.raw", EntryType::Regular, b"b")]), "twice"),
        ];
        for (tar, expected) in cases {
            let (_root, store) = store();
            match run(&tar, &store, 1 << 20) {
                Err(LayerError::Entry { reason, .. }) => {
                    assert!(reason.contains(expected), "{reason:?} lacks {expected:?}")
                }
                Err(other) => panic!("expected an entry refusal containing {expected:?}, got {other}"),
                Ok(_) => panic!("accepted a layer with {expected:?}"),
            }
            assert_eq!(
                std::fs::read_dir(store.layout().tmp_dir()).map(|d| d.count()).unwrap_or(0),
                0,
                "staging must be empty after a refusal"
            );
        }
    }

    #[test]
    fn a_pax_size_that_contradicts_the_header_is_refused() {
        let (_root, store) = store();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append_pax_extensions([("size", b"3".as_slice())]).expect("pax");
        let header = header(b"x.raw", EntryType::Regular, 5);
        builder.append(&header, b"12345".as_slice()).expect("append");
        let tar = builder.into_inner().expect("finish");
        assert!(
            matches!(run(&tar, &store, 1 << 20), Err(LayerError::Entry { reason, .. }) if reason.contains("disagree"))
        );
    }

    #[test]
    fn the_total_budget_stops_a_bomb() {
        let (_root, store) = store();
        let tar = archive(&[(b"big.raw", EntryType::Regular, &vec![0u8; 64 * 1024])]);
        let result = run(&tar, &store, 16 * 1024);
        assert!(matches!(result, Err(LayerError::Store(StoreError::TooLarge { .. }))), "{:?}", result.err());
    }

    #[test]
    fn entry_names_are_single_raw_components() {
        for good in ["k3s.raw", "./k3s.raw", "a-1.2+x.raw"] {
            assert!(matches!(entry_name(good.as_bytes(), false), Ok(Some(_))), "{good}");
        }
        for bad in ["", ".raw", "a/b.raw", "a\0.raw", "..", "../a.raw", "a/../b.raw", "-x.raw", "\u{7f}.raw"] {
            assert!(entry_name(bad.as_bytes(), false).is_err(), "{bad:?} accepted");
        }
        // Found by the layer_entry fuzz target: a name no file system holds was taken.
        let longest = format!("{}.raw", "k".repeat(NAME_MAX - 4));
        assert!(matches!(entry_name(longest.as_bytes(), false), Ok(Some(_))));
        let too_long = format!("k{longest}");
        assert_eq!(
            entry_name(too_long.as_bytes(), false),
            Err("the name is longer than any file name may be (255 bytes)")
        );
    }

    #[test]
    fn a_root_directory_entry_is_taken_in_every_spelling() {
        for root in [b"/".as_slice(), b".", b"./"] {
            let (_root, store) = store();
            let tar = archive(&[(root, EntryType::Directory, b""), (b"k3s.raw", EntryType::Regular, b"image")]);
            let images = run(&tar, &store, 1 << 20).expect("accepted");
            assert_eq!(images.len(), 1, "{:?}", String::from_utf8_lossy(root));
        }
    }

    /// `x.raw` with `ustar` in its header's size field, `pax` in a PAX record before
    /// it, and `data` after it: written by hand, as no writer would.
    fn pax_sized(ustar: u64, pax: u64, data: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.append_pax_extensions([("size", pax.to_string().as_bytes())]).expect("pax");
        let mut bytes = builder.into_inner().expect("finish");
        bytes.truncate(bytes.len() - 1024); // the end-of-archive blocks
        bytes.extend_from_slice(header(b"x.raw", EntryType::Regular, ustar).as_bytes());
        let mut data = data.to_vec();
        data.resize(data.len().div_ceil(512) * 512, 0);
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&[0; 1024]);
        bytes
    }

    #[test]
    fn a_pax_size_over_an_empty_size_field_is_refused_when_the_field_could_hold_it() {
        let (_root, store) = store();
        let tar = pax_sized(0, 5, b"hello");
        let refused =
            matches!(run(&tar, &store, 1 << 20), Err(LayerError::Entry { reason, .. }) if reason.contains("disagree"));
        assert!(refused, "a reader that ignores PAX sees other files in this layer");
        assert!(pax_overrides_legitimately(0, USTAR_MAX_SIZE + 1));
        assert!(pax_overrides_legitimately(USTAR_MAX_SIZE, 10 << 30));
        assert!(!pax_overrides_legitimately(USTAR_MAX_SIZE, 5));
        assert!(!pax_overrides_legitimately(7, 10 << 30));
    }

    #[test]
    fn huge_extension_headers_are_refused_before_they_are_read_into_memory() {
        let (_root, store) = store();
        // A 1 GiB PAX record, never materialised: the reader must stop long before.
        let pax = header(b"PaxHeaders/x.raw", EntryType::XHeader, 1 << 30);
        let body = std::io::repeat(b'A').take(1 << 30);
        let reader = std::io::Cursor::new(pax.as_bytes().to_vec()).chain(body);
        let result = extract(reader, 8 << 30, 16, || store.stage(1 << 20), &Silent);
        match result {
            Err(LayerError::Archive(message)) => assert!(message.contains("headers before one entry"), "{message}"),
            Err(other) => panic!("expected the header bound, got {other}"),
            Ok(_) => panic!("accepted a layer that is one giant PAX record"),
        }
        // A GNU long name the same way.
        let long = header(b"././@LongLink", EntryType::GNULongName, 1 << 30);
        let reader = std::io::Cursor::new(long.as_bytes().to_vec()).chain(std::io::repeat(b'a').take(1 << 30));
        assert!(matches!(extract(reader, 8 << 30, 16, || store.stage(1 << 20), &Silent), Err(LayerError::Archive(_))));
    }

    #[test]
    fn ordinary_pax_records_and_long_names_still_work() {
        let (_root, store) = store();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append_pax_extensions([("mtime", b"1700000000.5".as_slice())]).expect("pax");
        builder.append(&header(b"k3s.raw", EntryType::Regular, 5), b"image".as_slice()).expect("append");
        let long = format!("{}.raw", "k".repeat(150));
        let mut gnu = tar::Header::new_gnu();
        gnu.set_size(4);
        gnu.set_mode(0o644);
        builder.append_data(&mut gnu, &long, b"long".as_slice()).expect("long name");
        let tar = builder.into_inner().expect("finish");
        let images = run(&tar, &store, 1 << 20).expect("accepted");
        let names: Vec<_> = images.iter().map(|i| i.file_name.len()).collect();
        assert_eq!(names, [7, long.len()]);
    }
}
