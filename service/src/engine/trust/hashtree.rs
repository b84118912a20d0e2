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
    // Level 0: one digest per data block, read in large pieces, each folded into the
    // tree at once.
    let mut tree = Tree::new(sb)?;
    file.seek(SeekFrom::Start(data.offset))?;
    let per_read = (1u64 << 20).max(block) / block * block;
    let mut buffer = vec![0u8; usize::try_from(per_read).map_err(|_| TrustError::Malformed("block size"))?];
    let mut left = covered;
    while left > 0 {
        let take = usize::try_from(left.min(per_read)).map_err(|_| TrustError::Malformed("block size"))?;
        file.read_exact(&mut buffer[..take])?;
        for data_block in buffer[..take].chunks_exact(block as usize) {
            tree.push(0, salted(&sb.salt, data_block));
        }
        left -= take as u64;
    }
    tree.root()
}

/// The hash tree built as the data streams by: one partly filled hash block per level,
/// so that verifying an image takes memory in the tree's height, not in its size (an
/// 8 GiB image of 512-byte blocks would otherwise hold 512 MiB of digests).
struct Tree<'a> {
    salt: &'a [u8],
    /// Per level, the hash block being filled and how many digests it holds.
    levels: Vec<(Vec<u8>, usize)>,
    per_block: usize,
    root: Option<[u8; 32]>,
}

impl<'a> Tree<'a> {
    /// A tree over `sb.data_blocks` blocks: as many levels as it takes to reach one
    /// hash block (at least one, as veritysetup builds it).
    fn new(sb: &'a Superblock) -> Result<Self, TrustError> {
        let per_block = sb.hash_block_size as usize / 32;
        let per = u64::try_from(per_block).map_err(|_| TrustError::Malformed("block size"))?;
        let mut height = 1;
        let mut count = sb.data_blocks.div_ceil(per);
        while count > 1 {
            count = count.div_ceil(per);
            height += 1;
        }
        let levels = (0..height).map(|_| (vec![0u8; sb.hash_block_size as usize], 0)).collect();
        Ok(Self { salt: &sb.salt, levels, per_block, root: None })
    }

    /// Adds the next digest of `level`; a full hash block goes one level up.
    fn push(&mut self, level: usize, digest: [u8; 32]) {
        let (block, filled) = &mut self.levels[level];
        block[*filled * 32..(*filled + 1) * 32].copy_from_slice(&digest);
        *filled += 1;
        if *filled == self.per_block {
            self.close(level);
        }
    }

    /// Hashes the block of `level` (zero-padded) into the level above, or the root.
    fn close(&mut self, level: usize) {
        let (block, filled) = &mut self.levels[level];
        let digest = salted(self.salt, block);
        block.fill(0);
        *filled = 0;
        if level + 1 < self.levels.len() {
            self.push(level + 1, digest);
        } else {
            self.root = Some(digest);
        }
    }

    /// Closes the partly filled blocks, bottom up, and returns the root.
    fn root(mut self) -> Result<[u8; 32], TrustError> {
        for level in 0..self.levels.len() {
            if self.levels[level].1 > 0 {
                self.close(level);
            }
        }
        self.root.ok_or(TrustError::Malformed("no verity data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree as the format describes it, level by level in memory.
    fn whole_tree_root(data: &[u8], sb: &Superblock) -> [u8; 32] {
        let mut digests: Vec<[u8; 32]> =
            data.chunks_exact(sb.data_block_size as usize).map(|b| salted(&sb.salt, b)).collect();
        let per_block = sb.hash_block_size as usize / 32;
        loop {
            let next: Vec<[u8; 32]> = digests
                .chunks(per_block)
                .map(|group| {
                    let mut block = vec![0u8; sb.hash_block_size as usize];
                    for (slot, digest) in block.chunks_exact_mut(32).zip(group) {
                        slot.copy_from_slice(digest);
                    }
                    salted(&sb.salt, &block)
                })
                .collect();
            if next.len() <= 1 {
                return next[0];
            }
            digests = next;
        }
    }

    #[test]
    fn the_streamed_tree_has_the_root_of_the_whole_tree() {
        // 512-byte hash blocks hold 16 digests: 1, 16, 17, 256 and 257 blocks cross
        // every boundary between one, two and three levels.
        for blocks in [1u64, 2, 15, 16, 17, 255, 256, 257, 300] {
            for hash_block_size in [512u32, 4096] {
                let sb = Superblock { data_block_size: 512, hash_block_size, data_blocks: blocks, salt: vec![7; 32] };
                let data: Vec<u8> = (0..blocks * 512).map(|i| (i % 251) as u8).collect();
                let mut tree = Tree::new(&sb).expect("tree");
                for block in data.chunks_exact(512) {
                    tree.push(0, salted(&sb.salt, block));
                }
                let root = tree.root().expect("root");
                assert_eq!(root, whole_tree_root(&data, &sb), "{blocks} blocks, {hash_block_size}-byte hash blocks");
            }
        }
    }
}
