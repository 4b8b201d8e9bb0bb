//! The active chain: its tip in memory, every other height in the store.
//!
//! Owns the [`ChainState`] reads that place blocks on the active chain (the
//! block at a height, whether a block is active, ancestors, forks) and the
//! context a new block is checked in (median time past, required bits). The tip
//! is kept with the times and bits of the blocks ending at it, so a block on the
//! tip, almost every block, is checked without reading the store. Other heights
//! come from the store's active-chain table, which connecting and disconnecting
//! write in the same batch as the new tip, so it never lags [`ChainState::tip`].

use std::collections::VecDeque;

use tinychain_protocol::BlockHash;
use tinychain_protocol::difficulty::{
    MEDIAN_TIME_SPAN, ancestors_needed, get_next_work_required, median_time_past,
};
use tinychain_protocol::params::Params;
use tinychain_protocol::pow::CompactTarget;
use tinychain_protocol::validation::BlockContext;

use super::ChainState;
use super::index::BlockIndex;
use crate::store::{IndexEntry, Store, StoreError};

/// The tip of the active chain and the recent history a block on it needs.
#[derive(Debug)]
pub(super) struct ActiveTip {
    pub(super) hash: BlockHash,
    pub(super) entry: IndexEntry,
    /// (time, bits) of the last blocks up to the tip, oldest first: as many as
    /// the difficulty rule and median time past read, fewer near genesis.
    history: VecDeque<(u32, CompactTarget)>,
}

/// Blocks of history the difficulty rule and median time past read.
fn history_len(params: &Params) -> usize {
    ancestors_needed(params).max(MEDIAN_TIME_SPAN)
}

impl ActiveTip {
    /// Loads the tip `hash` and its history from the index.
    pub(super) fn load<S: Store>(
        store: &S,
        index: &BlockIndex,
        params: &Params,
        hash: BlockHash,
        entry: IndexEntry,
    ) -> Result<ActiveTip, StoreError> {
        let history = index.recent_headers(store, &hash, history_len(params))?.into();
        Ok(ActiveTip { hash, entry, history })
    }

    fn context(&self, params: &Params, now: u32) -> BlockContext {
        let history = self.history.as_slices();
        let history = [history.0, history.1].concat();
        let times: Vec<u32> = history.iter().map(|(time, _)| *time).collect();
        BlockContext {
            prev_blockhash: self.hash,
            height: self.entry.height + 1,
            median_time_past: median_time_past(&times),
            required_bits: get_next_work_required(&history, params),
            now,
        }
    }
}

impl<S: Store> ChainState<S> {
    /// Returns the tip's hash.
    pub fn tip(&self) -> BlockHash {
        self.tip.hash
    }

    /// Returns the tip's height.
    pub fn height(&self) -> u32 {
        self.tip.entry.height
    }

    /// Returns the tip's index entry.
    pub fn tip_entry(&self) -> IndexEntry {
        self.tip.entry
    }

    /// Returns the index entry of `hash`, if it is known (Core's `LookupBlockIndex`).
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        if *hash == self.tip.hash {
            return Ok(Some(self.tip.entry));
        }
        self.index.get(&self.store, hash)
    }

    /// Returns the index entry of `hash`, which the chain's own state says is indexed.
    pub(super) fn indexed(&self, hash: &BlockHash) -> Result<IndexEntry, StoreError> {
        self.index_entry(hash)?.ok_or_else(|| StoreError::Corrupt {
            what: "block index",
            detail: format!("{hash} is referred to but not indexed"),
        })
    }

    /// Returns the hash of the active block at `height`.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn hash_at(&self, height: u32) -> Result<Option<BlockHash>, StoreError> {
        if height >= self.height() {
            return Ok((height == self.height()).then_some(self.tip.hash));
        }
        self.store.active_hash(height)
    }

    /// Tells whether `hash` is on the active chain.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn is_active(&self, hash: &BlockHash) -> Result<bool, StoreError> {
        match self.index_entry(hash)? {
            Some(entry) => Ok(self.hash_at(entry.height)? == Some(*hash)),
            None => Ok(false),
        }
    }

    /// Returns the ancestor of `hash` at `height`: one read of the active-chain
    /// table for an active block, else a walk along skip pointers.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn ancestor(&self, hash: &BlockHash, height: u32) -> Result<Option<BlockHash>, StoreError> {
        let Some(entry) = self.index_entry(hash)? else { return Ok(None) };
        if height > entry.height {
            return Ok(None);
        }
        if self.hash_at(entry.height)? == Some(*hash) {
            return self.hash_at(height);
        }
        Ok(self.index.ancestor(&self.store, hash, height)?.map(|(hash, _)| hash))
    }

    /// Returns the height of the last common ancestor of `a` and `b`, if both are known.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn fork_height(&self, a: &BlockHash, b: &BlockHash) -> Result<Option<u32>, StoreError> {
        self.index.fork_height(&self.store, a, b)
    }

    /// Returns the height of the first hash of `locator` on the active chain (0 if none).
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn find_fork(&self, locator: &[BlockHash]) -> Result<u32, StoreError> {
        for hash in locator {
            if let Some(entry) = self.index_entry(hash)?
                && self.hash_at(entry.height)? == Some(*hash)
            {
                return Ok(entry.height);
            }
        }
        Ok(0)
    }

    /// Returns the median time past of the tip.
    pub fn median_time_past(&self) -> u32 {
        self.tip.context(&self.params, 0).median_time_past
    }

    /// Returns the validation context of a block on the tip.
    pub fn tip_context(&self, now: u32) -> BlockContext {
        self.tip.context(&self.params, now)
    }

    /// Returns the validation context of a block whose parent is `parent`, if
    /// `parent` is known.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn context_after(
        &self,
        parent: &BlockHash,
        now: u32,
    ) -> Result<Option<BlockContext>, StoreError> {
        if *parent == self.tip.hash {
            return Ok(Some(self.tip_context(now)));
        }
        let Some(entry) = self.index_entry(parent)? else { return Ok(None) };
        let history = self.index.recent_headers(&self.store, parent, history_len(&self.params))?;
        let times: Vec<u32> = history.iter().map(|(time, _)| *time).collect();
        Ok(Some(BlockContext {
            prev_blockhash: *parent,
            height: entry.height + 1,
            median_time_past: median_time_past(&times),
            required_bits: get_next_work_required(&history, &self.params),
            now,
        }))
    }

    /// Makes the just-connected block `hash`, the tip's child, the tip.
    pub(super) fn tip_connected(&mut self, hash: BlockHash, entry: IndexEntry) {
        let tip = &mut self.tip;
        tip.history.push_back((entry.header.time, entry.header.bits));
        if tip.history.len() > history_len(&self.params) {
            tip.history.pop_front();
        }
        (tip.hash, tip.entry) = (hash, entry);
    }

    /// Makes the tip's parent the tip, the old tip being disconnected.
    pub(super) fn tip_disconnected(&mut self) -> Result<(), StoreError> {
        let parent = self.tip.entry.header.prev_blockhash;
        let entry = self.indexed(&parent)?;
        self.tip.history.pop_back();
        // Refill the history at its old end, if the chain reaches back that far.
        let kept = self.tip.history.len() as u32;
        if kept < entry.height + 1 && (kept as usize) < history_len(&self.params) {
            let height = entry.height - kept;
            let hash = self.store.active_hash(height)?.ok_or_else(|| StoreError::Corrupt {
                what: "active chain",
                detail: format!("no block at height {height} below the tip"),
            })?;
            let oldest = self.indexed(&hash)?;
            self.tip.history.push_front((oldest.header.time, oldest.header.bits));
        }
        (self.tip.hash, self.tip.entry) = (parent, entry);
        Ok(())
    }
}
