//! dm-verity: the superblock at the start of a hash partition, and the root hash of a
//! data partition computed from its bytes (format 1, as veritysetup and systemd-repart
//! write it: every block hashed as `sha256(salt || block)`, digests packed into
//! zero-padded hash blocks, level by level, up to a single block whose hash is the root).
//!
//! The root is recomputed from every data byte rather than read from the hash partition,
//! so a changed byte anywhere in the data shows as a root-hash mismatch. The tree must
//! cover the whole data partition: its file system is read without dm-verity where
//! device-mapper is absent, and then no byte outside the tree may be reachable.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use sha2::{Digest, Sha256};

use super::TrustError;
use super::gpt::Partition;

/// The fields of a verity superblock that the computation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Size of a data block.
    pub data_block_size: u32,
    /// Size of a hash block.
    pub hash_block_size: u32,
    /// Number of data blocks covered.
    pub data_blocks: u64,
    /// The salt.
    pub salt: Vec<u8>,
}

const MAGIC: &[u8; 8] = b"verity\0\0";

/// Reads and checks the superblock at the start of `hash`.
pub fn superblock(file: &mut File, hash: &Partition) -> Result<Superblock, TrustError> {
    let malformed = TrustError::Malformed;
    if hash.length < 512 {
        return Err(malformed("the verity partition is too small for a superblock"));
    }
    let mut raw = [0u8; 512];
    file.seek(SeekFrom::Start(hash.offset))?;
    file.read_exact(&mut raw)?;
    if &raw[..8] != MAGIC {
        return Err(malformed("no verity superblock in the verity partition"));
    }
    let u32_at = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
    if u32_at(8) != 1 || u32_at(12) != 1 {
        return Err(malformed("unsupported verity superblock version or hash type"));
    }
    let algorithm = raw[32..64].split(|b| *b == 0).next().unwrap_or_default();
    if algorithm != b"sha256" {
        return Err(malformed("the verity hash algorithm is not sha256"));
    }
    let data_block_size = u32_at(64);
    let hash_block_size = u32_at(68);
    let valid_size = |size: u32| size.is_power_of_two() && (512..=65536).contains(&size);
    if !valid_size(data_block_size) || !valid_size(hash_block_size) {
        return Err(malformed("bad verity block size"));
    }
    let mut blocks = [0u8; 8];
    blocks.copy_from_slice(&raw[72..80]);
    let data_blocks = u64::from_le_bytes(blocks);
    let salt_size = usize::from(u16::from_le_bytes([raw[80], raw[81]]));
    if salt_size > 256 || data_blocks == 0 {
        return Err(malformed("bad verity salt size or block count"));
    }
    Ok(Superblock { data_block_size, hash_block_size, data_blocks, salt: raw[88..88 + salt_size].to_vec() })
}

fn salted(salt: &[u8], block: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(block);
    hasher.finalize().into()
}

/// The root hash of `data` as described by `sb`.
pub fn root_hash(file: &mut File, data: &Partition, sb: &Superblock) -> Result<[u8; 32], TrustError> {
    let block = u64::from(sb.data_block_size);
    let covered = sb.data_blocks.checked_mul(block).ok_or(TrustError::Malformed("verity block count out of range"))?;
    if covered > data.length {
        return Err(TrustError::Malformed("the verity data extends beyond the data partition"));
    }
    // Without dm-verity the whole partition is read, so every byte of it must be covered.
    if covered < data.length {
        return Err(TrustError::Malformed("the verity hash tree does not cover the whole data partition"));
    }
    // Level 0: one digest per data block, read in large pieces.
    let mut digests: Vec<[u8; 32]> = Vec::new();
    file.seek(SeekFrom::Start(data.offset))?;
    let per_read = (1u64 << 20).max(block) / block * block;
    let mut buffer = vec![0u8; usize::try_from(per_read).map_err(|_| TrustError::Malformed("block size"))?];
    let mut left = covered;
    while left > 0 {
        let take = usize::try_from(left.min(per_read)).map_err(|_| TrustError::Malformed("block size"))?;
        file.read_exact(&mut buffer[..take])?;
        digests.extend(buffer[..take].chunks_exact(block as usize).map(|b| salted(&sb.salt, b)));
        left -= take as u64;
    }
    // Upper levels, until one hash block remains.
    let per_block = sb.hash_block_size as usize / 32;
    let mut hash_block = vec![0u8; sb.hash_block_size as usize];
    loop {
        let next: Vec<[u8; 32]> = digests
            .chunks(per_block)
            .map(|group| {
                hash_block.fill(0);
                for (slot, digest) in hash_block.chunks_exact_mut(32).zip(group) {
                    slot.copy_from_slice(digest);
                }
                salted(&sb.salt, &hash_block)
            })
            .collect();
        if next.len() <= 1 {
            return next.first().copied().ok_or(TrustError::Malformed("no verity data"));
        }
        digests = next;
    }
}
