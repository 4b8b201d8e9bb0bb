//! The block index: every known header, and the tree they form.
//!
//! Owns the in-memory map from block hash to [`IndexEntry`] (Bitcoin Core's
//! `BlockIndex`), the parent→children links, and the set of candidate tips: blocks
//! whose data, and all of whose ancestors' data, is stored and none of which is
//! known invalid. The chain state picks the most-work candidate as the tip to
//! aim for. Headers are small (≈150 bytes each here), so they live in memory, as in
//! Bitcoin Core; block data stays in the store.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};

use tinychain_protocol::BlockHash;
use tinychain_protocol::pow::{CompactTarget, Work};

use crate::store::{BlockStatus, IndexEntry};

/// Candidate order: most work first, then first seen.
type CandidateKey = (Reverse<Work>, u64, BlockHash);

/// Every known header, with its place in the tree.
#[derive(Debug, Default)]
pub struct BlockIndex {
    entries: HashMap<BlockHash, IndexEntry>,
    children: HashMap<BlockHash, Vec<BlockHash>>,
    /// Blocks whose data and every ancestor's data is stored (Core's `nChainTx != 0`).
    linked: HashSet<BlockHash>,
    candidates: BTreeSet<CandidateKey>,
    /// The most-work header not known invalid (Core's `pindexBestHeader`).
    best_header: Option<BlockHash>,
    next_sequence: u64,
}

impl BlockIndex {
    /// Makes an empty index.
    pub fn new() -> BlockIndex {
        BlockIndex::default()
    }

    /// Returns the number of known headers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tells whether no header is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the entry of `hash`.
    pub fn get(&self, hash: &BlockHash) -> Option<&IndexEntry> {
        self.entries.get(hash)
    }

    /// Tells whether `hash` is known.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.entries.contains_key(hash)
    }

    /// Returns a fresh arrival sequence number.
    pub fn next_sequence(&mut self) -> u64 {
        self.next_sequence += 1;
        self.next_sequence
    }

    /// Inserts or replaces an entry, keeping the links and candidates right.
    /// The genesis block (no parent in the index) must come first.
    pub fn insert(&mut self, hash: BlockHash, entry: IndexEntry) {
        self.next_sequence = self.next_sequence.max(entry.sequence);
        let parent = entry.header.prev_blockhash;
        let is_new = self.entries.insert(hash, entry).is_none();
        if is_new && parent != BlockHash::ZERO {
            self.children.entry(parent).or_default().push(hash);
        }
        self.consider_best_header(hash);
        self.refresh_links(hash);
    }

    /// Makes `hash` the best header if it has more work than the current one
    /// (first seen wins ties, as for tips).
    fn consider_best_header(&mut self, hash: BlockHash) {
        let Some(entry) = self.entries.get(&hash) else { return };
        if entry.status.is_invalid() {
            if self.best_header == Some(hash) {
                self.recompute_best_header();
            }
            return;
        }
        let better = match self.best_header.and_then(|b| self.entries.get(&b)) {
            None => true,
            Some(best) => entry.chainwork > best.chainwork,
        };
        if better {
            self.best_header = Some(hash);
        }
    }

    fn recompute_best_header(&mut self) {
        self.best_header = self
            .entries
            .iter()
            .filter(|(_, e)| !e.status.is_invalid())
            .min_by_key(|(_, e)| (Reverse(e.chainwork), e.sequence))
            .map(|(h, _)| *h);
    }

    /// Changes the status of `hash`, keeping candidates right.
    pub fn set_status(&mut self, hash: &BlockHash, status: BlockStatus) {
        if let Some(entry) = self.entries.get_mut(hash) {
            entry.status = status;
            self.consider_best_header(*hash);
            self.refresh_links(*hash);
        }
    }

    /// Re-derives whether `hash` and its descendants are linked candidates.
    fn refresh_links(&mut self, hash: BlockHash) {
        let mut stack = vec![hash];
        while let Some(hash) = stack.pop() {
            let Some(entry) = self.entries.get(&hash).copied() else { continue };
            let parent = entry.header.prev_blockhash;
            let parent_linked = parent == BlockHash::ZERO || self.linked.contains(&parent);
            let linked = parent_linked && entry.status.has_data() && !entry.status.is_invalid();
            let key = (Reverse(entry.chainwork), entry.sequence, hash);
            let changed = if linked {
                self.candidates.insert(key);
                self.linked.insert(hash)
            } else {
                self.candidates.remove(&key);
                self.linked.remove(&hash)
            };
            if changed {
                stack.extend(self.children.get(&hash).into_iter().flatten().copied());
            }
        }
    }

    /// Returns the best candidate: the most-work linked valid block, first seen on ties.
    pub fn best_candidate(&self) -> Option<(BlockHash, Work)> {
        self.candidates.first().map(|(Reverse(work), _, hash)| (*hash, *work))
    }

    /// Drops candidates with less work than `work` (they can never become the tip
    /// while the tip has that much; a reorg re-adds blocks through `insert`).
    pub fn prune_candidates_below(&mut self, work: Work) {
        while let Some(last) = self.candidates.last() {
            if last.0.0 < work {
                self.candidates.pop_last();
            } else {
                break;
            }
        }
    }

    /// Re-adds every linked block with at least `work` to the candidates (after
    /// the tip moved back in a reorg).
    pub fn restore_candidates(&mut self, work: Work) {
        for hash in &self.linked {
            if let Some(e) = self.entries.get(hash)
                && e.chainwork >= work
            {
                self.candidates.insert((Reverse(e.chainwork), e.sequence, *hash));
            }
        }
    }

    /// Marks `hash` invalid and every descendant invalid-child; returns the changed entries.
    pub fn mark_invalid(&mut self, hash: BlockHash) -> Vec<(BlockHash, IndexEntry)> {
        let mut changed = Vec::new();
        let mut stack = vec![(hash, BlockStatus::Invalid)];
        while let Some((h, status)) = stack.pop() {
            let Some(entry) = self.entries.get_mut(&h) else { continue };
            if entry.status == status
                || (status == BlockStatus::InvalidChild && entry.status.is_invalid())
            {
                continue;
            }
            entry.status = status;
            changed.push((h, *entry));
            let key = (Reverse(entry.chainwork), entry.sequence, h);
            self.candidates.remove(&key);
            self.linked.remove(&h);
            stack.extend(
                self.children
                    .get(&h)
                    .into_iter()
                    .flatten()
                    .map(|c| (*c, BlockStatus::InvalidChild)),
            );
        }
        if self.best_header.is_some_and(|b| changed.iter().any(|(h, _)| *h == b)) {
            self.recompute_best_header();
        }
        changed
    }

    /// Returns the ancestor of `hash` at `height` (walking parents).
    pub fn ancestor(&self, hash: &BlockHash, height: u32) -> Option<BlockHash> {
        let mut current = *hash;
        loop {
            let entry = self.entries.get(&current)?;
            if entry.height == height {
                return Some(current);
            }
            if entry.height < height {
                return None;
            }
            current = entry.header.prev_blockhash;
        }
    }

    /// Returns (time, bits) of up to `count` blocks ending at `hash`, oldest first.
    pub fn recent_headers(&self, hash: &BlockHash, count: usize) -> Vec<(u32, CompactTarget)> {
        let mut out = Vec::with_capacity(count);
        let mut current = self.entries.get(hash);
        while let Some(entry) = current {
            if out.len() == count {
                break;
            }
            out.push((entry.header.time, entry.header.bits));
            current = self.entries.get(&entry.header.prev_blockhash);
        }
        out.reverse();
        out
    }

    /// Returns the most-work header not known invalid (first seen on ties).
    pub fn best_header(&self) -> Option<(BlockHash, &IndexEntry)> {
        let hash = self.best_header?;
        self.entries.get(&hash).map(|e| (hash, e))
    }

    /// Returns the height of the best header.
    pub fn best_header_height(&self) -> u32 {
        self.best_header().map_or(0, |(_, e)| e.height)
    }

    /// Returns the height of the last common ancestor of `a` and `b`, if both are known.
    pub fn fork_height(&self, a: &BlockHash, b: &BlockHash) -> Option<u32> {
        let (mut a, mut b) = (*a, *b);
        let (mut ea, mut eb) = (self.entries.get(&a)?, self.entries.get(&b)?);
        while a != b {
            if ea.height >= eb.height {
                a = ea.header.prev_blockhash;
                ea = self.entries.get(&a)?;
            } else {
                b = eb.header.prev_blockhash;
                eb = self.entries.get(&b)?;
            }
        }
        Some(ea.height)
    }

    /// Returns the children of `hash`.
    pub fn children(&self, hash: &BlockHash) -> &[BlockHash] {
        self.children.get(hash).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Tells whether `hash` and all its ancestors have data.
    pub fn is_linked(&self, hash: &BlockHash) -> bool {
        self.linked.contains(hash)
    }
}
