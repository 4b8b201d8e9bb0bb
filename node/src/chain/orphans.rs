//! Orphan blocks: blocks whose parent is not known yet.
//!
//! Owns a bounded pool (count, total bytes, expiry) indexed by the missing
//! parent's hash. When a block is accepted, its waiting children are taken out
//! and accepted in turn. Eviction is oldest first.

use std::collections::{BTreeMap, HashMap};

use tinychain_protocol::{Block, BlockHash};

/// Limits of the orphan block pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Orphan blocks kept at most.
    pub max_count: usize,
    /// Total bytes of orphan blocks kept at most.
    pub max_bytes: u64,
    /// Seconds an orphan block is kept.
    pub ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config { max_count: 256, max_bytes: 32 * 1024 * 1024, ttl_secs: 10 * 60 }
    }
}

#[derive(Debug)]
struct Orphan {
    block: Block,
    size: u64,
    expires: u64,
    sequence: u64,
}

/// The orphan block pool.
#[derive(Debug, Default)]
pub struct OrphanBlocks {
    config: Config,
    blocks: HashMap<BlockHash, Orphan>,
    by_parent: HashMap<BlockHash, Vec<BlockHash>>,
    by_age: BTreeMap<u64, BlockHash>,
    bytes: u64,
    next_sequence: u64,
}

impl OrphanBlocks {
    /// Makes an empty pool.
    pub fn new(config: Config) -> OrphanBlocks {
        OrphanBlocks { config, ..OrphanBlocks::default() }
    }

    /// Returns the number of orphan blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Tells whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Tells whether `hash` is held.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// Returns the oldest ancestor in the pool of `hash`'s chain: the block whose
    /// parent is the one to ask for.
    pub fn root_of(&self, hash: &BlockHash) -> BlockHash {
        let mut current = *hash;
        let mut steps = 0;
        while let Some(o) = self.blocks.get(&current) {
            let parent = o.block.header.prev_blockhash;
            if !self.blocks.contains_key(&parent) || steps > self.blocks.len() {
                break;
            }
            current = parent;
            steps += 1;
        }
        current
    }

    /// Returns the parent hash of the orphan `hash`.
    pub fn parent_of(&self, hash: &BlockHash) -> Option<BlockHash> {
        self.blocks.get(hash).map(|o| o.block.header.prev_blockhash)
    }

    /// Adds an orphan block; returns whether it was kept.
    pub fn insert(&mut self, block: Block, now: u64) -> bool {
        let hash = block.block_hash();
        let size = block.size();
        if self.blocks.contains_key(&hash) || size > self.config.max_bytes {
            return false;
        }
        while !self.blocks.is_empty()
            && (self.blocks.len() >= self.config.max_count
                || self.bytes + size > self.config.max_bytes)
        {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            self.remove(&oldest);
        }
        if self.config.max_count == 0 {
            return false;
        }
        self.next_sequence += 1;
        let parent = block.header.prev_blockhash;
        self.by_parent.entry(parent).or_default().push(hash);
        self.by_age.insert(self.next_sequence, hash);
        self.bytes += size;
        let expires = now.saturating_add(self.config.ttl_secs);
        self.blocks.insert(hash, Orphan { block, size, expires, sequence: self.next_sequence });
        true
    }

    fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        let orphan = self.blocks.remove(hash)?;
        self.by_age.remove(&orphan.sequence);
        self.bytes -= orphan.size;
        let parent = orphan.block.header.prev_blockhash;
        if let Some(children) = self.by_parent.get_mut(&parent) {
            children.retain(|c| c != hash);
            if children.is_empty() {
                self.by_parent.remove(&parent);
            }
        }
        Some(orphan.block)
    }

    /// Takes out the orphans whose parent is `parent`.
    pub fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
        let children = self.by_parent.get(parent).cloned().unwrap_or_default();
        children.iter().filter_map(|c| self.remove(c)).collect()
    }

    /// Drops orphans whose time is up.
    pub fn expire(&mut self, now: u64) {
        let expired: Vec<BlockHash> =
            self.blocks.iter().filter(|(_, o)| o.expires <= now).map(|(h, _)| *h).collect();
        for hash in expired {
            self.remove(&hash);
        }
    }
}
