//! The node's persistent state, behind one narrow interface.
//!
//! Owns the [`Store`] trait and the vocabulary of what is stored: the block index
//! (entries, each block's children, the active chain by height), block data, undo
//! data, the UTXO set with its address index, the transaction locations, the
//! active tip with a digest of the UTXO set, the mempool snapshot and the fee estimator's statistics. Every change is a [`Batch`] applied atomically, so after a
//! crash the store holds exactly the state after some whole batch: the tip, the
//! UTXO set and the indexes always agree.
//!
//! The chain code is written against the trait; tests use [`memory::MemoryStore`]
//! and the node runs [`redb::RedbStore`]. Neither knows any consensus rule.

pub mod cache;
pub mod coin_group;
pub mod memory;
pub mod redb;

use serde::{Deserialize, Serialize};
use tinychain_protocol::pow::Work;
use tinychain_protocol::validation::Coin;
use tinychain_protocol::{Block, BlockHash, BlockHeader, OutPoint, PubkeyHash, Transaction, Txid};

use crate::utxo_digest::UtxoDigest;

/// What the node knows about a block (Bitcoin Core's `BlockStatus`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum BlockStatus {
    /// Only the header is known; the block data has not arrived.
    HeaderOnly,
    /// The block data is stored and passed the checks that need no UTXO set.
    DataStored,
    /// The block was connected once: it is valid (on the active chain or a side branch).
    Valid,
    /// The block breaks a consensus rule. It is never retried.
    Invalid,
    /// An ancestor of the block is invalid, so the block can never be valid.
    InvalidChild,
}

impl BlockStatus {
    /// Tells whether the block is known to be invalid (itself or an ancestor).
    pub fn is_invalid(self) -> bool {
        matches!(self, BlockStatus::Invalid | BlockStatus::InvalidChild)
    }

    /// Tells whether the block data is stored.
    pub fn has_data(self) -> bool {
        matches!(self, BlockStatus::DataStored | BlockStatus::Valid)
    }
}

/// One entry of the block index: a header and what follows from it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The header.
    pub header: BlockHeader,
    /// Height above genesis.
    pub height: u32,
    /// Work of the chain up to and including this block.
    pub chainwork: Work,
    /// What is known of the block.
    pub status: BlockStatus,
    /// Order of arrival: for a linked block, when it became linked (its data
    /// and all its ancestors' stored: Bitcoin Core's `nSequenceId`), before
    /// that when its header arrived. On equal chainwork the lower one wins.
    pub sequence: u64,
    /// The data of this block and of all its ancestors is stored, and none is
    /// known invalid (Bitcoin Core's `nChainTx != 0`): it can become the tip.
    pub linked: bool,
    /// An ancestor further back than the parent, to find ancestors in
    /// logarithmically many reads (Bitcoin Core's `pskip`); zero for genesis.
    pub skip: BlockHash,
}

/// Undo data of a connected block: the coins it spent, to restore on disconnect.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct BlockUndo {
    /// The spent outputs, in the order the block spent them.
    pub spent: Vec<(OutPoint, Coin)>,
}

/// Where a confirmed transaction is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TxLocation {
    /// The block that confirmed it.
    pub block: BlockHash,
    /// Its position in the block.
    pub index: u32,
}

/// The active tip as stored, with the digest of the UTXO set at that tip.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StoredTip {
    /// The tip's hash.
    pub hash: BlockHash,
    /// The tip's height.
    pub height: u32,
    /// The digest of the UTXO set after connecting the tip.
    pub utxo_digest: UtxoDigest,
}

/// One change to the store. A [`Batch`] of them is applied atomically.
#[derive(Clone, Debug)]
pub enum Op {
    /// Store a block's data.
    PutBlock(Block),
    /// Insert or replace a block index entry (and list it among its parent's children).
    PutIndex(BlockHash, IndexEntry),
    /// Record the block of the active chain at a height.
    PutActive(u32, BlockHash),
    /// Forget the active block at a height (it was disconnected).
    DeleteActive(u32),
    /// Store a connected block's undo data.
    PutUndo(BlockHash, BlockUndo),
    /// Drop a disconnected block's undo data.
    DeleteUndo(BlockHash),
    /// Add unspent outputs (a block's new coins, moved in whole: a block can
    /// create tens of thousands).
    AddCoins(Vec<(OutPoint, Coin)>),
    /// Remove spent outputs.
    SpendCoins(Vec<OutPoint>),
    /// Record that a transaction touching an address was confirmed at a height,
    /// with the outputs it pays to the address (none if it only spends from it).
    /// This is the address index: an address's unspent coins are those outputs
    /// still in the UTXO set, so creating or spending a coin touches one table.
    AddHistory(PubkeyHash, u32, Txid, Vec<u32>),
    /// Remove such a record (the block was disconnected).
    DeleteHistory(PubkeyHash, u32, Txid),
    /// Record where a transaction was confirmed.
    PutTxLocation(Txid, TxLocation),
    /// Forget where a transaction was confirmed (its block was disconnected).
    DeleteTxLocation(Txid),
    /// Set the active tip.
    SetTip(StoredTip),
    /// Replace the mempool snapshot kept across restarts: each transaction with
    /// the time it entered, parents first.
    SetMempool(Vec<(Transaction, u64)>),
    /// Replace the fee estimator's statistics kept across restarts.
    SetFeeEstimates(crate::fees::Saved),
}

/// Changes applied in one atomic write.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The changes, applied in order.
    pub ops: Vec<Op>,
    /// Whether the write must be on disk when it returns. A batch that is not
    /// durable is still atomic and ordered: a crash loses it together with
    /// every later batch, back to the last durable one, never half of one.
    pub durable: bool,
    /// Whether a [`cache::CoinsCache`] above the store must write everything
    /// it holds together with this batch (true near the tip: a new tip is on
    /// disk when the write returns). Stores without a cache ignore it.
    pub flush_cache: bool,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch { ops: Vec::new(), durable: true, flush_cache: true }
    }
}

impl Batch {
    /// An empty batch that need not reach the disk before the next durable one
    /// (for blocks during initial sync: a crash costs a re-download, not consistency).
    pub fn lazy() -> Batch {
        Batch { ops: Vec::new(), durable: false, flush_cache: false }
    }

    /// An empty batch that must reach the disk, but may leave the coins cache
    /// held (initial sync's periodic writes: the blocks are safe, the chain
    /// state follows at the cache's next flush).
    pub fn durable_blocks() -> Batch {
        Batch { ops: Vec::new(), durable: true, flush_cache: false }
    }

    /// Adds a change.
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Puts the changes of `earlier` before this batch's own, keeping both
    /// orders; the result is durable if either was.
    pub fn prepend(&mut self, earlier: Batch) {
        self.ops.splice(0..0, earlier.ops);
        self.durable |= earlier.durable;
        self.flush_cache |= earlier.flush_cache;
    }

    /// Tells whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// An error of the storage backend. The node cannot go on without its store,
/// so these are reported and end the node; they are never a peer's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(String),
    /// Stored bytes do not decode: the data directory is damaged.
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// The decoding error.
        detail: String,
    },
    /// The data directory was written by an incompatible version.
    #[error(
        "store schema version {found} is not the supported {expected}: the data directory \
         was written by another version of tinychain; move it aside and sync afresh"
    )]
    Schema {
        /// The version found.
        found: u32,
        /// The version this node writes.
        expected: u32,
    },
    /// The data directory belongs to another network.
    #[error("the data directory holds the chain with genesis {found}, not {expected}")]
    WrongNetwork {
        /// Genesis hash found.
        found: BlockHash,
        /// Genesis hash expected.
        expected: BlockHash,
    },
}

/// The node's persistent state.
pub trait Store {
    /// Returns a block index entry.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError>;

    /// Returns the hashes of the indexed blocks whose parent is `parent`, a
    /// block at `height` (children are listed by height first, so that the
    /// blocks of a growing chain append to the list instead of landing all
    /// over it).
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn children(&self, parent: &BlockHash, height: u32) -> Result<Vec<BlockHash>, StoreError>;

    /// Returns the hash of the active block at `height`, if the chain reaches it.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn active_hash(&self, height: u32) -> Result<Option<BlockHash>, StoreError>;

    /// Calls `f` with every block index entry, in no particular order, holding
    /// only one in memory at a time (for rebuilding the index's summary at start-up).
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn for_each_index_entry(
        &self,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry),
    ) -> Result<(), StoreError>;

    /// Returns the active tip, or `None` for a new store.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn tip(&self) -> Result<Option<StoredTip>, StoreError>;

    /// Returns a block's data.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError>;

    /// Returns a connected block's undo data.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn undo(&self, hash: &BlockHash) -> Result<Option<BlockUndo>, StoreError>;

    /// Returns an unspent output.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StoreError>;

    /// Returns those of `outpoints` that are unspent, in one read (a block's worth).
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn coins(&self, outpoints: &[OutPoint]) -> Result<Vec<(OutPoint, Coin)>, StoreError> {
        let mut found = Vec::with_capacity(outpoints.len());
        for op in outpoints {
            if let Some(coin) = self.coin(op)? {
                found.push((*op, coin));
            }
        }
        Ok(found)
    }

    /// Returns up to `limit` unspent outputs paying `pubkey_hash`, oldest first
    /// (by height, txid, output index): the outputs its history records as paid
    /// to it that are still unspent. With `after` (a coin's height and
    /// outpoint), only those after it: the next page.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn address_coins(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, OutPoint)>,
        limit: usize,
    ) -> Result<Vec<(OutPoint, Coin)>, StoreError> {
        // The outputs paid to the address, a page at a time, each looked up.
        let page = limit.clamp(64, 4096);
        let mut out = Vec::new();
        let mut from = after;
        while out.len() < limit {
            let paid = self.address_paid(pubkey_hash, from, page)?;
            for &(height, outpoint) in &paid {
                if out.len() == limit {
                    break;
                }
                if let Some(coin) = self.coin(&outpoint)? {
                    out.push((outpoint, coin));
                }
                from = Some((height, outpoint));
            }
            if paid.len() < page {
                break;
            }
        }
        Ok(out)
    }

    /// Returns up to `limit` outputs the address index records as paid to
    /// `pubkey_hash`, spent or not, with their heights, oldest first (by
    /// height, txid, output index); with `after`, only those after it.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn address_paid(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, OutPoint)>,
        limit: usize,
    ) -> Result<Vec<(u32, OutPoint)>, StoreError>;

    /// Returns up to `limit` (height, txid) records of confirmed transactions
    /// paying or spending `pubkey_hash`, oldest first (by height, then txid);
    /// with `after`, only those after that record: the next page.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn address_history(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, Txid)>,
        limit: usize,
    ) -> Result<Vec<(u32, Txid)>, StoreError>;

    /// Returns where a confirmed transaction is.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>, StoreError>;

    /// Returns the mempool snapshot.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn mempool(&self) -> Result<Vec<(Transaction, u64)>, StoreError>;

    /// Returns the fee estimator's saved statistics, if any.
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn fee_estimates(&self) -> Result<Option<crate::fees::Saved>, StoreError>;

    /// Returns every unspent output (for checking the UTXO digest at start-up).
    ///
    /// # Errors
    ///
    /// Backend or decoding failures.
    fn for_each_coin(&self, f: &mut dyn FnMut(&OutPoint, &Coin)) -> Result<(), StoreError>;

    /// Applies `batch` atomically: all of it or, after a crash, none of it.
    ///
    /// # Errors
    ///
    /// Backend failures; then nothing was applied.
    fn write(&mut self, batch: Batch) -> Result<(), StoreError>;
}
