//! Reading a GPT partition table from an untrusted image file.
//!
//! Every size and offset comes from the file, so each is checked against the file's
//! length and against fixed maxima before anything is read or allocated.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Most partition entries read (the specification's usual array has 128).
const MAX_ENTRIES: u32 = 256;
/// Largest entry size accepted (the specification's is 128).
const MAX_ENTRY_SIZE: u32 = 1024;

/// One partition: its type and own GUIDs (lower-case strings) and byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The partition type GUID.
    pub type_guid: String,
    /// The partition's own GUID.
    pub uuid: String,
    /// Byte offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

/// Why the table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// The file has no GPT at all (a plain file system image).
    #[error("no GPT partition table")]
    Absent,
    /// The GPT is there but malformed; the text says how.
    #[error("malformed GPT: {0}")]
    Malformed(&'static str),
    /// Reading failed.
    #[error("reading the partition table failed")]
    Io(#[from] io::Error),
}

/// The partitions of `file`, for 512- or 4096-byte sectors.
pub fn partitions(file: &mut File) -> Result<Vec<Partition>, GptError> {
    let length = file.metadata()?.len();
    for sector in [512u64, 4096] {
        if length < sector * 2 {
            continue;
        }
        let mut header = [0u8; 92];
        file.seek(SeekFrom::Start(sector))?;
        file.read_exact(&mut header)?;
        if &header[..8] == b"EFI PART" {
            return read_entries(file, &header, sector, length);
        }
    }
    Err(GptError::Absent)
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn read_entries(file: &mut File, header: &[u8; 92], sector: u64, length: u64) -> Result<Vec<Partition>, GptError> {
    let entries_lba = le_u64(header, 72);
    let count = le_u32(header, 80);
    let entry_size = le_u32(header, 84);
    if count > MAX_ENTRIES {
        return Err(GptError::Malformed("too many partition entries"));
    }
    if !(128..=MAX_ENTRY_SIZE).contains(&entry_size) || !entry_size.is_multiple_of(8) {
        return Err(GptError::Malformed("bad partition entry size"));
    }
    let table_offset = entries_lba.checked_mul(sector).ok_or(GptError::Malformed("entry table out of range"))?;
    let table_len = u64::from(count) * u64::from(entry_size);
    if table_offset.checked_add(table_len).is_none_or(|end| end > length) {
        return Err(GptError::Malformed("entry table beyond the end of the image"));
    }
    let mut table = vec![0u8; usize::try_from(table_len).map_err(|_| GptError::Malformed("entry table too large"))?];
    file.seek(SeekFrom::Start(table_offset))?;
    file.read_exact(&mut table)?;
    let mut partitions = Vec::new();
    for entry in table.chunks_exact(entry_size as usize) {
        if entry[..16].iter().all(|b| *b == 0) {
            continue;
        }
        let first = le_u64(entry, 32);
        let last = le_u64(entry, 40);
        if last < first {
            return Err(GptError::Malformed("a partition ends before it starts"));
        }
        let offset = first.checked_mul(sector).ok_or(GptError::Malformed("partition out of range"))?;
        let length_bytes = (last - first)
            .checked_add(1)
            .and_then(|sectors| sectors.checked_mul(sector))
            .ok_or(GptError::Malformed("partition out of range"))?;
        if offset.checked_add(length_bytes).is_none_or(|end| end > length) {
            return Err(GptError::Malformed("a partition extends beyond the end of the image"));
        }
        partitions.push(Partition {
            type_guid: guid(&entry[..16]),
            uuid: guid(&entry[16..32]),
            offset,
            length: length_bytes,
        });
    }
    Ok(partitions)
}

/// A GUID in its mixed-endian on-disk form, as the usual lower-case string.
pub fn guid(bytes: &[u8]) -> String {
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        bytes[3],
        bytes[2],
        bytes[1],
        bytes[0],
        bytes[5],
        bytes[4],
        bytes[7],
        bytes[6],
        bytes[8],
        bytes[9],
        bytes[10],
        bytes[11],
        bytes[12],
        bytes[13],
        bytes[14],
        bytes[15]
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn image(header: impl FnOnce(&mut [u8]), entries: &[u8], size: usize) -> tempfile::NamedTempFile {
        let mut bytes = vec![0u8; size];
        let h = &mut bytes[512..512 + 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&1u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        header(h);
        bytes[1024..1024 + entries.len()].copy_from_slice(entries);
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(&bytes).expect("write image");
        file
    }

    fn entry(type_byte: u8, first: u64, last: u64) -> Vec<u8> {
        let mut e = vec![0u8; 128];
        e[0] = type_byte;
        e[16] = 0xaa;
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        e
    }

    #[test]
    fn reads_a_partition() {
        let file = image(|_| {}, &entry(1, 4, 7), 8 * 512);
        let parts = partitions(&mut file.reopen().expect("reopen")).expect("a table");
        assert_eq!(parts.len(), 1);
        assert_eq!((parts[0].offset, parts[0].length), (2048, 2048));
        assert_eq!(parts[0].type_guid, "00000001-0000-0000-0000-000000000000");
    }

    #[test]
    fn refuses_hostile_tables() {
        let beyond = image(|_| {}, &entry(1, 4, 1_000_000), 8 * 512);
        assert!(matches!(partitions(&mut beyond.reopen().expect("reopen")), Err(GptError::Malformed(_))));
        let backwards = image(|_| {}, &entry(1, 7, 4), 8 * 512);
        assert!(matches!(partitions(&mut backwards.reopen().expect("reopen")), Err(GptError::Malformed(_))));
        let many = image(|h| h[80..84].copy_from_slice(&u32::MAX.to_le_bytes()), &[], 8 * 512);
        assert!(matches!(partitions(&mut many.reopen().expect("reopen")), Err(GptError::Malformed(_))));
        let odd = image(|h| h[84..88].copy_from_slice(&100u32.to_le_bytes()), &[], 8 * 512);
        assert!(matches!(partitions(&mut odd.reopen().expect("reopen")), Err(GptError::Malformed(_))));
        // Every sector there is: the sector count overflowed (a panic where overflow is
        // checked), found while writing the gpt fuzz target.
        let everything = image(|_| {}, &entry(1, 0, u64::MAX), 8 * 512);
        assert!(matches!(partitions(&mut everything.reopen().expect("reopen")), Err(GptError::Malformed(_))));
        let far = image(|h| h[72..80].copy_from_slice(&u64::MAX.to_le_bytes()), &[], 8 * 512);
        assert!(matches!(partitions(&mut far.reopen().expect("reopen")), Err(GptError::Malformed(_))));
        let mut plain = tempfile::NamedTempFile::new().expect("temp");
        plain.write_all(&[0u8; 4096]).expect("write");
        assert!(matches!(partitions(&mut plain.reopen().expect("reopen")), Err(GptError::Absent)));
    }
}
