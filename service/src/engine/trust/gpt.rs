//! Reading a GPT partition table from an untrusted image file, exactly as the table
//! systemd will use is found.
//!
//! What we prove about an image must be about the partitions systemd-dissect mounts,
//! and it sees them through libblkid and the kernel, which both take a GPT only behind
//! a protective MBR, check the header's and the entry array's CRC32, its own LBA and
//! its usable range, and fall back to the backup header at the last LBA when the
//! primary fails any of that. A parser that trusted the primary as it is would prove
//! one table while systemd mounted another (a primary with a bad CRC listing signed
//! partitions, a backup listing others). So this one finds the table the same way,
//! and a table blkid would not see is no table here either.
//!
//! Every size and offset comes from the file, so each is checked against the file's
//! length and against fixed maxima before anything is read or allocated.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Most partition entries read (the specification's usual array has 128); a larger
/// table is refused rather than read.
const MAX_ENTRIES: u32 = 256;
/// The only entry size libblkid accepts.
const ENTRY_SIZE: u32 = 128;
/// The GPT header's fixed part.
const HEADER_LEN: usize = 92;
/// libblkid looks for no partition table on anything this small (floppies).
const MIN_TABLE_DEVICE: u64 = 1024 * 1440;
/// An MBR partition of this type marks the MBR as protecting a GPT.
const PROTECTIVE_MBR_TYPE: u8 = 0xee;

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
    /// The file has no GPT that systemd would see (a plain file system image, or a
    /// table without a protective MBR or whose headers both fail their checks).
    #[error("no GPT partition table")]
    Absent,
    /// The GPT is there and valid, but says something we refuse to act on.
    #[error("malformed GPT: {0}")]
    Malformed(&'static str),
    /// Reading failed.
    #[error("reading the partition table failed")]
    Io(#[from] io::Error),
}

/// The partitions of `file`, for 512- or 4096-byte sectors, from the primary table or,
/// when it is not valid, the backup.
pub fn partitions(file: &mut File) -> Result<Vec<Partition>, GptError> {
    let length = file.metadata()?.len();
    if length <= MIN_TABLE_DEVICE || !has_protective_mbr(file)? {
        return Err(GptError::Absent);
    }
    for sector in [512u64, 4096] {
        let last_lba = length / sector - 1;
        for lba in [1, last_lba] {
            if let Some(table) = valid_table(file, lba, sector, last_lba)? {
                return table.partitions(sector);
            }
        }
    }
    Err(GptError::Absent)
}

/// Whether sector 0 is an MBR with a partition of the protective type.
fn has_protective_mbr(file: &mut File) -> io::Result<bool> {
    let mut mbr = [0u8; 512];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut mbr)?;
    let signed = mbr[510..512] == [0x55, 0xaa];
    Ok(signed && (0..4).any(|i| mbr[446 + 16 * i + 4] == PROTECTIVE_MBR_TYPE))
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

/// A header that passed every check, with its entry array.
struct Table {
    first_usable: u64,
    last_usable: u64,
    entries: Vec<u8>,
}

/// The table whose header is at `lba`, when the header and its entry array pass the
/// checks libblkid makes; `None` when they do not (blkid then sees no table there).
fn valid_table(file: &mut File, lba: u64, sector: u64, last_lba: u64) -> Result<Option<Table>, GptError> {
    let sector_len = usize::try_from(sector).map_err(|_| GptError::Malformed("sector size"))?;
    let mut header = vec![0u8; sector_len];
    file.seek(SeekFrom::Start(lba * sector))?;
    file.read_exact(&mut header)?;
    if &header[..8] != b"EFI PART" {
        return Ok(None);
    }
    let header_len = le_u32(&header, 12) as usize;
    if !(HEADER_LEN..=sector_len).contains(&header_len) {
        return Ok(None);
    }
    let stored_crc = le_u32(&header, 16);
    header[16..20].fill(0);
    if crc32fast::hash(&header[..header_len]) != stored_crc || le_u64(&header, 24) != lba {
        return Ok(None);
    }
    let (first_usable, last_usable) = (le_u64(&header, 40), le_u64(&header, 48));
    if last_usable < first_usable || last_usable > last_lba || (first_usable < lba && lba < last_usable) {
        return Ok(None);
    }
    let (entries_lba, count, entry_size) = (le_u64(&header, 72), le_u32(&header, 80), le_u32(&header, 84));
    if count == 0 || entry_size != ENTRY_SIZE {
        return Ok(None);
    }
    if count > MAX_ENTRIES {
        return Err(GptError::Malformed("too many partition entries"));
    }
    let table_len = u64::from(count) * u64::from(entry_size);
    let table_offset = entries_lba.checked_mul(sector);
    if table_offset.and_then(|offset| offset.checked_add(table_len)).is_none_or(|end| end > (last_lba + 1) * sector) {
        return Ok(None);
    }
    let mut entries = vec![0u8; usize::try_from(table_len).map_err(|_| GptError::Malformed("entry table size"))?];
    file.seek(SeekFrom::Start(entries_lba * sector))?;
    file.read_exact(&mut entries)?;
    if crc32fast::hash(&entries) != le_u32(&header, 88) {
        return Ok(None);
    }
    Ok(Some(Table { first_usable, last_usable, entries }))
}

impl Table {
    /// The used entries, as blkid lists them: an entry outside the usable range is
    /// skipped, as blkid skips it.
    fn partitions(&self, sector: u64) -> Result<Vec<Partition>, GptError> {
        let mut partitions = Vec::new();
        for entry in self.entries.chunks_exact(ENTRY_SIZE as usize) {
            if entry[..16].iter().all(|b| *b == 0) {
                continue;
            }
            let (first, last) = (le_u64(entry, 32), le_u64(entry, 40));
            if last < first {
                // blkid would list it with a wrapped-around size; nothing sane to prove.
                return Err(GptError::Malformed("a partition ends before it starts"));
            }
            if first < self.first_usable || last > self.last_usable {
                continue;
            }
            // Both are at most the last LBA, which came from the file's length.
            partitions.push(Partition {
                type_guid: guid(&entry[..16]),
                uuid: guid(&entry[16..32]),
                offset: first * sector,
                length: (last - first + 1) * sector,
            });
        }
        Ok(partitions)
    }
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

/// Makes `bytes` (whole sectors of `sector` bytes, more than 1.44 MiB) a disk that
/// libblkid, and so [`partitions`], reads as GPT: a protective MBR, a primary table of
/// the four 128-byte entries `primary` at LBA 2 and a backup table of `backup` at the
/// end, each with correct CRCs, LBAs 34 to the last but 33 usable. For building test
/// images and fuzz seeds; it panics on a disk smaller than 68 sectors or entries that
/// are not 512 bytes.
pub fn seal(bytes: &mut [u8], sector: usize, primary: &[u8], backup: &[u8]) {
    let last = (bytes.len() / sector - 1) as u64;
    let header = |lba: u64, entries_lba: u64, entries: &[u8]| {
        let mut h = vec![0u8; HEADER_LEN];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h[24..32].copy_from_slice(&lba.to_le_bytes());
        h[32..40].copy_from_slice(&(if lba == 1 { last } else { 1 }).to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(last - 33).to_le_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&4u32.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(entries).to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let at = |lba: u64| lba as usize * sector;
    bytes[446 + 4] = PROTECTIVE_MBR_TYPE;
    bytes[510..512].copy_from_slice(&[0x55, 0xaa]);
    bytes[at(1)..at(1) + HEADER_LEN].copy_from_slice(&header(1, 2, primary));
    bytes[at(2)..at(2) + 512].copy_from_slice(primary);
    bytes[at(last)..at(last) + HEADER_LEN].copy_from_slice(&header(last, last - 1, backup));
    bytes[at(last - 1)..at(last - 1) + 512].copy_from_slice(backup);
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// 4 MiB of 512-byte sectors: the last LBA. `seal` makes LBAs 34 to
    /// `LAST - 33` usable.
    const LAST: u64 = 8191;

    fn entry(type_byte: u8, first: u64, last: u64) -> Vec<u8> {
        let mut e = vec![0u8; 128];
        e[0] = type_byte;
        e[16] = 0xaa;
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        e
    }

    /// Four entries from `used`, zero-padded.
    fn entries(used: &[Vec<u8>]) -> Vec<u8> {
        let mut all = used.concat();
        all.resize(4 * 128, 0);
        all
    }

    /// A disk with a protective MBR, a primary table listing `primary` and a backup
    /// listing `backup`; `spoil` then changes any byte of it.
    fn disk(primary: &[Vec<u8>], backup: &[Vec<u8>], spoil: impl FnOnce(&mut Vec<u8>)) -> tempfile::NamedTempFile {
        let mut bytes = vec![0u8; usize::try_from((LAST + 1) * 512).expect("size")];
        seal(&mut bytes, 512, &entries(primary), &entries(backup));
        spoil(&mut bytes);
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(&bytes).expect("write image");
        file
    }

    fn read(file: &tempfile::NamedTempFile) -> Result<Vec<Partition>, GptError> {
        partitions(&mut file.reopen().expect("reopen"))
    }

    fn ranges(parts: &[Partition]) -> Vec<(u8, u64, u64)> {
        parts.iter().map(|p| (u8::from_str_radix(&p.type_guid[6..8], 16).unwrap_or(0), p.offset, p.length)).collect()
    }

    #[test]
    fn reads_the_primary_table() {
        let table = [entry(1, 40, 47), entry(2, 48, 48)];
        let parts = read(&disk(&table, &table, |_| {})).expect("a table");
        assert_eq!(ranges(&parts), [(1, 40 * 512, 8 * 512), (2, 48 * 512, 512)]);
        assert_eq!(parts[0].type_guid, "00000001-0000-0000-0000-000000000000");
    }

    #[test]
    fn a_primary_that_fails_its_checks_gives_way_to_the_backup_as_in_blkid() {
        let (primary, backup) = ([entry(1, 40, 47)], [entry(2, 100, 199)]);
        // A byte of the primary's entries changed: its CRC no longer matches.
        let entries_spoilt = disk(&primary, &backup, |b| b[2 * 512 + 60] ^= 1);
        assert_eq!(ranges(&read(&entries_spoilt).expect("the backup")), [(2, 100 * 512, 100 * 512)]);
        // The primary header's own CRC, or its LBA.
        let header_spoilt = disk(&primary, &backup, |b| b[512 + 60] ^= 1);
        assert_eq!(ranges(&read(&header_spoilt).expect("the backup")), [(2, 100 * 512, 100 * 512)]);
        // Both spoilt: blkid sees no table, nor do we.
        let both = disk(&primary, &backup, |b| {
            b[2 * 512 + 60] ^= 1;
            b[(LAST as usize - 1) * 512 + 60] ^= 1;
        });
        assert!(matches!(read(&both), Err(GptError::Absent)));
    }

    #[test]
    fn no_protective_mbr_or_a_floppy_sized_file_is_no_table() {
        let table = [entry(1, 40, 47)];
        let unprotected = disk(&table, &table, |b| b[446 + 4] = 0x83);
        assert!(matches!(read(&unprotected), Err(GptError::Absent)));
        let unsigned = disk(&table, &table, |b| b[510] = 0);
        assert!(matches!(read(&unsigned), Err(GptError::Absent)));
        let small = disk(&table, &table, |b| b.truncate(1024 * 1440));
        assert!(matches!(read(&small), Err(GptError::Absent)));
        let mut plain = tempfile::NamedTempFile::new().expect("temp");
        plain.write_all(&vec![0u8; 2 << 20]).expect("write");
        assert!(matches!(read(&plain), Err(GptError::Absent)));
    }

    #[test]
    fn entries_outside_the_usable_range_are_skipped_and_backwards_ones_refused() {
        let table = [entry(1, 2, 47), entry(2, 40, LAST), entry(3, 40, 41)];
        assert_eq!(ranges(&read(&disk(&table, &table, |_| {})).expect("a table")), [(3, 40 * 512, 1024)]);
        let backwards = [entry(1, 47, 40)];
        assert!(matches!(read(&disk(&backwards, &backwards, |_| {})), Err(GptError::Malformed(_))));
        // Every sector there is: the sector count overflowed once (a panic where
        // overflow is checked), found while writing the gpt fuzz target.
        let everything = [entry(1, 0, u64::MAX)];
        assert!(read(&disk(&everything, &everything, |_| {})).is_ok_and(|p| p.is_empty()));
    }
}
