//! The block index: every known header and the tree they form, kept in the store.
//!
//! Owns Bitcoin Core's `BlockIndex` logic on top of the [`Store`]: the entries
//! live in the store's index table, which also lists each block's children, and
//! each entry carries a skip pointer so that an ancestor is found in a logarithmic
//! number of reads. Memory holds only what is small and does not grow with the
//! chain:
//!
//! - the entries changed since the chain state's last write (`unwritten`), read
//!   before the store. Every change lands here, and the chain state's next batch
//!   writes them all ([`BlockIndex::unwritten`], then [`BlockIndex::written`]):
//!   at most one batch's worth, since every write empties it;
//! - the candidate tips: linked blocks (their data and all their ancestors' data
//!   stored, none known invalid) with at least the tip's chainwork;
//! - the best header, the next arrival number and the header count.
//!
//! Whether a block is linked (Core's `nChainTx != 0`) is stored in its entry: a
//! block's data arriving can link a whole subtree of stored descendants, found
//! through the store's children table.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};

use tinychain_protocol::BlockHash;
use tinychain_protocol::pow::{CompactTarget, Work};

use crate::store::{BlockStatus, IndexEntry, Store, StoreError};

/// Candidate order: most work first, then first linked.
type CandidateKey = (Reverse<Work>, u64, BlockHash);

fn candidate_key(hash: &BlockHash, entry: &IndexEntry) -> CandidateKey {
    (Reverse(entry.chainwork), entry.sequence, *hash)
}

/// Tells whether `entry` beats `best` as the best header: more work, then first seen.
fn better_header(entry: &IndexEntry, best: Option<&(BlockHash, IndexEntry)>) -> bool {
    !entry.status.is_invalid()
        && best.is_none_or(|(_, best)| {
            (Reverse(entry.chainwork), entry.sequence) < (Reverse(best.chainwork), best.sequence)
        })
}

/// Returns the height the skip pointer of a block at `height` points to (Core's
/// `GetSkipHeight`): the height with its lowest set bit cleared, tweaked for odd
/// heights so that walks mixing skips and parent steps stay logarithmic.
pub fn skip_height(height: u32) -> u32 {
    let clear_lowest_one = |n: u32| n & n.wrapping_sub(1);
    match height {
        0 | 1 => 0,
        h if h % 2 == 1 => clear_lowest_one(clear_lowest_one(h - 1)) + 1,
        h => clear_lowest_one(h),
    }
}

fn missing(hash: &BlockHash, of: &BlockHash) -> StoreError {
    StoreError::Corrupt {
        what: "block index",
        detail: format!("{hash}, an ancestor of indexed block {of}, is not indexed"),
    }
}

/// The in-memory part of the block index; every read takes the store holding the rest.
#[derive(Debug, Default)]
pub struct BlockIndex {
    /// Entries changed since the last write, in their newest state.
    unwritten: HashMap<BlockHash, IndexEntry>,
    candidates: BTreeSet<CandidateKey>,
    /// The most-work header not known invalid (Core's `pindexBestHeader`).
    best_header: Option<(BlockHash, IndexEntry)>,
    next_sequence: u64,
    /// Known headers.
    len: usize,
}

impl BlockIndex {
    /// Makes an empty index.
    pub fn new() -> BlockIndex {
        BlockIndex::default()
    }

    /// Rebuilds the in-memory part from the store in one pass that holds one
    /// entry at a time: the header count, the next arrival number, the best
    /// header and the candidates with at least `tip_work`.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn load<S: Store>(store: &S, tip_work: Work) -> Result<BlockIndex, StoreError> {
        let mut index = BlockIndex::new();
        store.for_each_index_entry(&mut |hash, entry| {
            index.len += 1;
            index.next_sequence = index.next_sequence.max(entry.sequence);
            if entry.linked && !entry.status.is_invalid() && entry.chainwork >= tip_work {
                index.candidates.insert(candidate_key(hash, entry));
            }
            if better_header(entry, index.best_header.as_ref()) {
                index.best_header = Some((*hash, *entry));
            }
        })?;
        Ok(index)
    }

    /// Returns the number of known headers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Tells whether no header is known.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns how many entries the index holds in memory (changed and not yet
    /// written, candidates, the best header): bounded, whatever the chain's length.
    pub fn resident_len(&self) -> usize {
        self.unwritten.len() + self.candidates.len() + usize::from(self.best_header.is_some())
    }

    /// Returns the entry of `hash`.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn get<S: Store>(
        &self,
        store: &S,
        hash: &BlockHash,
    ) -> Result<Option<IndexEntry>, StoreError> {
        match self.unwritten.get(hash) {
            Some(entry) => Ok(Some(*entry)),
            None => store.index_entry(hash),
        }
    }

    /// Returns the entries changed since the last write: the chain state puts
    /// them in its next batch and calls [`BlockIndex::written`] once it is stored.
    pub fn unwritten(&self) -> impl Iterator<Item = (BlockHash, IndexEntry)> + '_ {
        self.unwritten.iter().map(|(h, e)| (*h, *e))
    }

    /// Forgets the changed entries: the store holds them now.
    pub fn written(&mut self) {
        self.unwritten.clear();
    }

    /// Returns a fresh arrival sequence number.
    pub fn next_sequence(&mut self) -> u64 {
        self.next_sequence += 1;
        self.next_sequence
    }

    /// Records a changed entry, keeping the best header's copy current.
    fn put(&mut self, hash: BlockHash, entry: IndexEntry) {
        if let Some((best, best_entry)) = &mut self.best_header
            && *best == hash
        {
            *best_entry = entry;
        }
        self.unwritten.insert(hash, entry);
    }

    /// Inserts or replaces the entry of `hash` (its parent must be indexed,
    /// unless it is genesis) and keeps the links, candidates and best header
    /// right. Whether it is linked is derived here: the caller's flag is ignored.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn insert<S: Store>(
        &mut self,
        store: &S,
        hash: BlockHash,
        mut entry: IndexEntry,
    ) -> Result<(), StoreError> {
        let old = self.get(store, &hash)?;
        match old {
            Some(old) => {
                self.candidates.remove(&candidate_key(&hash, &old));
                entry.linked = old.linked;
            }
            None => {
                self.len += 1;
                entry.linked = false;
            }
        }
        self.next_sequence = self.next_sequence.max(entry.sequence);
        self.put(hash, entry);
        self.consider_best_header(store, hash, entry)?;
        self.refresh_links(store, hash, old.is_none())
    }

    /// Changes the status of `hash`, keeping the links and candidates right,
    /// and returns its entry as it is now.
    ///
    /// # Errors
    ///
    /// The store fails, or `hash` is not indexed.
    pub fn set_status<S: Store>(
        &mut self,
        store: &S,
        hash: &BlockHash,
        status: BlockStatus,
    ) -> Result<IndexEntry, StoreError> {
        let mut entry = self.get(store, hash)?.ok_or_else(|| StoreError::Corrupt {
            what: "block index",
            detail: format!("{hash} changes status but is not indexed"),
        })?;
        entry.status = status;
        self.put(*hash, entry);
        self.consider_best_header(store, *hash, entry)?;
        self.refresh_links(store, *hash, false)?;
        Ok(self.get(store, hash)?.unwrap_or(entry))
    }

    /// Makes `hash` the best header if it has more work than the current one
    /// (first seen wins ties, as for tips).
    fn consider_best_header<S: Store>(
        &mut self,
        store: &S,
        hash: BlockHash,
        entry: IndexEntry,
    ) -> Result<(), StoreError> {
        if entry.status.is_invalid() {
            if self.best_header.is_some_and(|(best, _)| best == hash) {
                self.recompute_best_header(store)?;
            }
            return Ok(());
        }
        if self.best_header.is_none_or(|(_, best)| entry.chainwork > best.chainwork) {
            self.best_header = Some((hash, entry));
        }
        Ok(())
    }

    /// Finds the best header again with a scan of the whole index: O(headers)
    /// time, but only when the best header turns out invalid.
    fn recompute_best_header<S: Store>(&mut self, store: &S) -> Result<(), StoreError> {
        let mut best = None;
        let unwritten = &self.unwritten;
        store.for_each_index_entry(&mut |hash, entry| {
            if !unwritten.contains_key(hash) && better_header(entry, best.as_ref()) {
                best = Some((*hash, *entry));
            }
        })?;
        for (hash, entry) in unwritten {
            if better_header(entry, best.as_ref()) {
                best = Some((*hash, *entry));
            }
        }
        self.best_header = best;
        Ok(())
    }

    /// Returns the children of `hash`, a block at `height`: stored ones and new
    /// ones not yet written.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn children<S: Store>(
        &self,
        store: &S,
        hash: &BlockHash,
        height: u32,
    ) -> Result<Vec<BlockHash>, StoreError> {
        let mut children = store.children(hash, height)?;
        for child in self.unwritten_children(hash) {
            if !children.contains(&child) {
                children.push(child);
            }
        }
        Ok(children)
    }

    /// Returns the children of `hash` among the unwritten entries.
    fn unwritten_children(&self, hash: &BlockHash) -> Vec<BlockHash> {
        let children = self.unwritten.iter().filter(|(_, e)| e.header.prev_blockhash == *hash);
        children.map(|(child, _)| *child).collect()
    }

    /// Re-derives whether `root` and its descendants are linked candidates,
    /// walking down only as far as the flag changes. A root `new` to the index
    /// has no children in the store yet.
    ///
    /// A block becoming linked gets its arrival number then (Bitcoin Core's
    /// `nSequenceId`, set in `ReceivedBlockTransactions`), parents before
    /// children: on equal work, the chain whose blocks were all stored first
    /// wins, so withholding a block's parent cannot win a tie.
    fn refresh_links<S: Store>(
        &mut self,
        store: &S,
        root: BlockHash,
        new: bool,
    ) -> Result<(), StoreError> {
        let mut queue = VecDeque::from([root]);
        while let Some(hash) = queue.pop_front() {
            let Some(mut entry) = self.get(store, &hash)? else { continue };
            let parent = entry.header.prev_blockhash;
            let parent_linked =
                parent == BlockHash::ZERO || self.get(store, &parent)?.is_some_and(|p| p.linked);
            let linked = parent_linked && entry.status.has_data() && !entry.status.is_invalid();
            if linked && !entry.linked {
                entry.sequence = self.next_sequence();
            }
            let key = candidate_key(&hash, &entry);
            if linked {
                self.candidates.insert(key);
            } else {
                self.candidates.remove(&key);
            }
            if linked != entry.linked {
                entry.linked = linked;
                self.put(hash, entry);
                if new && hash == root {
                    queue.extend(self.unwritten_children(&hash));
                } else {
                    queue.extend(self.children(store, &hash, entry.height)?);
                }
            }
        }
        Ok(())
    }

    /// Returns the best candidate: the most-work linked valid block, first linked on ties.
    pub fn best_candidate(&self) -> Option<(BlockHash, Work)> {
        self.candidates.first().map(|(Reverse(work), _, hash)| (*hash, *work))
    }

    /// Drops candidates with less work than `work` (they can never become the
    /// tip while the tip has that much). Keeps the set small: normally the tip alone.
    pub fn prune_candidates_below(&mut self, work: Work) {
        while let Some(last) = self.candidates.last() {
            if last.0.0 < work {
                self.candidates.pop_last();
            } else {
                break;
            }
        }
    }

    /// Marks `hash` invalid and every descendant invalid-child.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn mark_invalid<S: Store>(&mut self, store: &S, hash: BlockHash) -> Result<(), StoreError> {
        let mut lost_best_header = false;
        let mut stack = vec![(hash, BlockStatus::Invalid)];
        while let Some((h, status)) = stack.pop() {
            let Some(mut entry) = self.get(store, &h)? else { continue };
            if entry.status == status
                || (status == BlockStatus::InvalidChild && entry.status.is_invalid())
            {
                continue;
            }
            self.candidates.remove(&candidate_key(&h, &entry));
            entry.status = status;
            entry.linked = false;
            self.put(h, entry);
            lost_best_header |= self.best_header.is_some_and(|(best, _)| best == h);
            let children = self.children(store, &h, entry.height)?;
            stack.extend(children.into_iter().map(|c| (c, BlockStatus::InvalidChild)));
        }
        if lost_best_header {
            self.recompute_best_header(store)?;
        }
        Ok(())
    }

    /// Returns the ancestor of `hash` at `height` with its entry, in logarithmically
    /// many reads: a walk along skip pointers and parents (Core's `GetAncestor`).
    ///
    /// # Errors
    ///
    /// The store fails, or an ancestor of an indexed block is missing.
    pub fn ancestor<S: Store>(
        &self,
        store: &S,
        hash: &BlockHash,
        height: u32,
    ) -> Result<Option<(BlockHash, IndexEntry)>, StoreError> {
        let Some(mut entry) = self.get(store, hash)? else { return Ok(None) };
        if height > entry.height {
            return Ok(None);
        }
        let mut current = *hash;
        while entry.height > height {
            // Skip, unless the skip overshoots, or stepping to the parent first
            // gives a skip that lands closer (still above `height`).
            let skip = i64::from(skip_height(entry.height));
            let parent_skip = i64::from(skip_height(entry.height - 1));
            let target = i64::from(height);
            let use_skip = entry.skip != BlockHash::ZERO
                && (skip == target
                    || (skip > target && !(parent_skip < skip - 2 && parent_skip >= target)));
            let next = if use_skip { entry.skip } else { entry.header.prev_blockhash };
            entry = self.get(store, &next)?.ok_or_else(|| missing(&next, hash))?;
            current = next;
        }
        Ok(Some((current, entry)))
    }

    /// Returns (time, bits) of up to `count` blocks ending at `hash`, oldest first.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn recent_headers<S: Store>(
        &self,
        store: &S,
        hash: &BlockHash,
        count: usize,
    ) -> Result<Vec<(u32, CompactTarget)>, StoreError> {
        let mut out = Vec::with_capacity(count);
        let mut current = self.get(store, hash)?;
        while let Some(entry) = current {
            if out.len() == count {
                break;
            }
            out.push((entry.header.time, entry.header.bits));
            current = self.get(store, &entry.header.prev_blockhash)?;
        }
        out.reverse();
        Ok(out)
    }

    /// Returns the most-work header not known invalid (first seen on ties).
    pub fn best_header(&self) -> Option<(BlockHash, IndexEntry)> {
        self.best_header
    }

    /// Returns the height of the best header.
    pub fn best_header_height(&self) -> u32 {
        self.best_header.map_or(0, |(_, e)| e.height)
    }

    /// Returns the height of the last common ancestor of `a` and `b`, if both are known.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn fork_height<S: Store>(
        &self,
        store: &S,
        a: &BlockHash,
        b: &BlockHash,
    ) -> Result<Option<u32>, StoreError> {
        let (Some(ea), Some(eb)) = (self.get(store, a)?, self.get(store, b)?) else {
            return Ok(None);
        };
        let height = ea.height.min(eb.height);
        let (Some((mut a, mut ea)), Some((mut b, mut eb))) =
            (self.ancestor(store, a, height)?, self.ancestor(store, b, height)?)
        else {
            return Ok(None);
        };
        while a != b {
            let (pa, pb) = (ea.header.prev_blockhash, eb.header.prev_blockhash);
            ea = self.get(store, &pa)?.ok_or_else(|| missing(&pa, &a))?;
            eb = self.get(store, &pb)?.ok_or_else(|| missing(&pb, &b))?;
            (a, b) = (pa, pb);
        }
        Ok(Some(ea.height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walking from `height` to any lower height along skips and parents takes
    /// few steps (the property `ancestor` relies on).
    #[test]
    fn skip_heights_point_back_and_keep_walks_short() {
        for height in 0..5_000u32 {
            assert!(skip_height(height) < height.max(1), "{height}");
        }
        let steps = |from: u32, to: u32| {
            let (mut h, mut n) = (from, 0);
            while h > to {
                let (skip, parent_skip) = (skip_height(h), skip_height(h - 1));
                let use_skip = h >= 2
                    && (skip == to
                        || (skip > to && !(parent_skip + 2 < skip && parent_skip >= to)));
                h = if use_skip { skip } else { h - 1 };
                n += 1;
            }
            n
        };
        for (from, to) in [(100_000, 0), (100_000, 1), (99_999, 50_000), (65_537, 3), (1_000, 999)]
        {
            assert!(steps(from, to) <= 120, "{from} → {to}: {} steps", steps(from, to));
        }
    }
}
