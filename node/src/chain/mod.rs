//! Chain state: the block index, the active chain and the UTXO set on top of a store.
//!
//! Owns Bitcoin Core's `ChainstateManager` logic in small form: accepting headers
//! and blocks ([`ChainState::accept_headers`], [`ChainState::accept_block`]),
//! choosing the valid chain with the most chainwork (on a tie, the one whose
//! blocks were all stored first wins),
//! and moving to it ([`ChainState::activate_best_chain`]) by disconnecting blocks
//! with their undo data and connecting the new branch. A block that fails while
//! connecting is marked invalid with all its descendants and never retried; the
//! node then settles on the most-work chain that is still valid.
//!
//! The block index and the active chain live in the store (see [`index`] and
//! `active.rs`); memory holds only what does not grow with the chain.
//!
//! Pure: no clock, threads of its own, or I/O other than the [`Store`] it is given.
//! Each connected or disconnected block is one atomic store batch.

mod active;
mod headers;
pub mod index;
pub mod orphans;

pub use headers::HeadersOutcome;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;

use tinychain_protocol::params::Params;
use tinychain_protocol::pow::Work;
use tinychain_protocol::validation::{
    BlockError, BlockSpends, Coin, Kind, check_block, check_block_inputs,
    check_blocks_signatures_except, contextual_check_block, contextual_check_block_header,
};
use tinychain_protocol::{Block, BlockHash, BlockHeader, OutPoint, PubkeyHash, Transaction, Txid};

use crate::store::{
    Batch, BlockStatus, BlockUndo, IndexEntry, Op, Store, StoreError, StoredTip, TxLocation,
};
use crate::utxo_digest::UtxoDigest;
use active::ActiveTip;
use index::{BlockIndex, skip_height};

/// Blocks behind the best header from which the node counts as syncing, and
/// writes blocks without waiting for the disk (see [`ChainState::batch_at`]).
const SYNC_DISTANCE: u32 = 16;
/// While syncing, every block at a multiple of this height is written durably.
const DURABLE_EVERY: u32 = 500;
/// Most blocks connected as one run (see [`ChainState::connect_run`]).
const RUN_BLOCKS: usize = 64;
/// A run takes no more blocks once its inputs reach this many: enough
/// signatures to keep every script thread busy to the end.
const RUN_SIGNATURES: usize = 1024;

/// Why a header or block was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The parent is not known: ask for it (the block may go to the orphan pool).
    #[error("parent {0} is unknown")]
    MissingParent(BlockHash),
    /// The block or an ancestor was already found invalid.
    #[error("block {0} is known to be invalid")]
    KnownInvalid(BlockHash),
    /// The block breaks a rule (or is not valid yet: see [`BlockError::kind`]).
    #[error(
        "block {hash} {}: {error}",
        if error.kind() == Kind::Premature { "is not valid yet" } else { "is invalid" }
    )]
    Invalid {
        /// The block's hash.
        hash: BlockHash,
        /// The rule broken.
        error: Box<BlockError>,
    },
    /// A run of headers where one is not the child of the one before.
    #[error("header {0} does not follow the header before it")]
    NotContinuous(BlockHash),
    /// The store failed; the node cannot continue.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AcceptError {
    /// Says how the peer that sent the data should be treated.
    pub fn kind(&self) -> Kind {
        match self {
            AcceptError::MissingParent(_) => Kind::Missing,
            AcceptError::KnownInvalid(_) | AcceptError::NotContinuous(_) => Kind::Invalid,
            AcceptError::Invalid { error, .. } => error.kind(),
            // Not the peer's fault: nothing to punish.
            AcceptError::Store(_) => Kind::Premature,
        }
    }
}

/// What accepting a block or header did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// New and stored.
    New,
    /// Already known; nothing changed.
    Duplicate,
}

/// How the active chain moved in one activation.
#[derive(Debug, Default, Clone)]
pub struct TipChange {
    /// Blocks disconnected, tip first.
    pub disconnected: Vec<Block>,
    /// Blocks connected, in order.
    pub connected: Vec<Block>,
    /// Blocks found invalid while connecting.
    pub invalid: Vec<(BlockHash, BlockError)>,
    /// Input signatures of connected blocks not checked again because the
    /// caller had checked their transactions before (see
    /// [`ChainState::activate_best_chain_with`]).
    pub signatures_cached: usize,
}

impl TipChange {
    /// Tells whether the tip moved.
    pub fn moved(&self) -> bool {
        !self.connected.is_empty() || !self.disconnected.is_empty()
    }
}

/// Knobs of the chain state: the config file's `[chain]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Threads for checking a block's signatures.
    pub script_threads: NonZeroUsize,
    /// Check the stored UTXO digest against the stored coins at start-up.
    pub verify_utxo_on_start: bool,
    /// Connect stored blocks with more work than the stored tip at start-up (a
    /// crash between storing a block and connecting it leaves such blocks).
    /// Set by the node (`inspect` only looks), not by the file.
    #[serde(skip)]
    pub activate_on_start: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            script_threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            verify_utxo_on_start: true,
            activate_on_start: true,
        }
    }
}

/// The chain: index, active chain, UTXO set, on a store.
#[derive(Debug)]
pub struct ChainState<S: Store> {
    params: Params,
    config: Config,
    store: S,
    /// The block index's in-memory part; its entries are in `store`.
    index: BlockIndex,
    /// The active chain's tip; the blocks below it are in `store`.
    tip: ActiveTip,
    utxo_digest: UtxoDigest,
    /// The block accepted last, not yet written: its batch goes into the next
    /// write, normally the one connecting it, so a new tip costs one commit.
    unwritten: Option<Unwritten>,
}

/// A block accepted but not yet in the store.
#[derive(Debug)]
struct Unwritten {
    hash: BlockHash,
    block: Block,
    batch: Batch,
}

/// An error opening the chain state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's contents do not agree with each other.
    #[error("the store is inconsistent: {0}; restore the data directory or start it afresh")]
    Inconsistent(String),
}

impl<S: Store> ChainState<S> {
    /// Opens the chain state on `store`, writing the genesis block into a new store
    /// and checking an existing one: the tip is in the index with its data, and
    /// (if configured) the UTXO set matches the digest stored with the tip.
    ///
    /// # Errors
    ///
    /// The store fails or is inconsistent.
    pub fn open(mut store: S, params: Params, config: Config) -> Result<ChainState<S>, OpenError> {
        let genesis = params.genesis_block();
        let genesis_hash = genesis.block_hash();
        let tip = match store.tip()? {
            Some(tip) => tip,
            None => {
                let entry = IndexEntry {
                    header: genesis.header,
                    height: 0,
                    chainwork: work_of(&genesis.header)?,
                    status: BlockStatus::Valid,
                    sequence: 0,
                    linked: true,
                    skip: BlockHash::ZERO,
                };
                let tip =
                    StoredTip { hash: genesis_hash, height: 0, utxo_digest: UtxoDigest::EMPTY };
                let mut batch = Batch::default();
                batch.push(Op::PutBlock(genesis));
                batch.push(Op::PutIndex(genesis_hash, entry));
                batch.push(Op::PutActive(0, genesis_hash));
                batch.push(Op::SetTip(tip));
                store.write(batch)?;
                tip
            }
        };
        let inconsistent = |m: String| OpenError::Inconsistent(m);
        if store.active_hash(0)? != Some(genesis_hash) {
            return Err(inconsistent(format!("the active chain does not start at {genesis_hash}")));
        }
        let tip_entry = store
            .index_entry(&tip.hash)?
            .ok_or_else(|| inconsistent(format!("tip {} is not in the index", tip.hash)))?;
        if tip_entry.height != tip.height || tip_entry.status != BlockStatus::Valid {
            return Err(inconsistent(format!("tip {} has a wrong height or status", tip.hash)));
        }
        check_active_chain(&store, &tip)?;
        let index = BlockIndex::load(&store, tip_entry.chainwork)?;
        let tip_record = ActiveTip::load(&store, &index, &params, tip.hash, tip_entry)?;
        if config.verify_utxo_on_start {
            let mut digest = UtxoDigest::EMPTY;
            store.for_each_coin(&mut |op, coin| digest = digest.add(op, coin))?;
            if digest != tip.utxo_digest {
                return Err(inconsistent(format!(
                    "the UTXO set digest {digest} differs from the one stored with tip {} ({})",
                    tip.hash, tip.utxo_digest
                )));
            }
        }
        let mut chain = ChainState {
            params,
            config,
            store,
            index,
            tip: tip_record,
            utxo_digest: tip.utxo_digest,
            unwritten: None,
        };
        if chain.config.activate_on_start {
            chain.activate_best_chain()?;
        } else {
            let tip_work = chain.tip_entry().chainwork;
            chain.index.prune_candidates_below(tip_work);
        }
        Ok(chain)
    }

    /// Returns the network parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Returns the store (for reads).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Returns the store for writes that are not chain state (the mempool snapshot).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Returns the block index's in-memory part (best header, candidates,
    /// counts); entries are read with [`ChainState::index_entry`].
    pub fn index(&self) -> &BlockIndex {
        &self.index
    }

    /// Returns the digest of the UTXO set at the tip.
    pub fn utxo_digest(&self) -> UtxoDigest {
        self.utxo_digest
    }

    /// Reads a stored block.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        match &self.unwritten {
            Some(unwritten) if unwritten.hash == *hash => Ok(Some(unwritten.block.clone())),
            _ => self.store.block(hash),
        }
    }

    /// Writes `batch` atomically, after the unwritten block's changes and with
    /// every index entry changed since the last write (all in one commit,
    /// durable if either batch asks for it). The index entries go last: they
    /// are each entry's newest state.
    fn write(&mut self, mut batch: Batch) -> Result<(), StoreError> {
        if let Some(unwritten) = self.unwritten.take() {
            batch.prepend(unwritten.batch);
        }
        batch.ops.extend(self.index.unwritten().map(|(hash, entry)| Op::PutIndex(hash, entry)));
        self.store.write(batch)?;
        self.index.written();
        Ok(())
    }

    /// Writes the block accepted last, if it is not written yet.
    /// [`ChainState::activate_best_chain`] always does this before it returns.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.unwritten.is_some() || self.index.unwritten().next().is_some() {
            self.write(Batch::lazy())?;
        }
        Ok(())
    }

    /// Reads an unspent output at the tip.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StoreError> {
        self.store.coin(outpoint)
    }

    /// Makes the index entry of a header on `parent`, without storing it.
    fn new_entry(
        &mut self,
        hash: BlockHash,
        header: &BlockHeader,
        parent: &IndexEntry,
        status: BlockStatus,
    ) -> Result<IndexEntry, AcceptError> {
        let chainwork = parent
            .chainwork
            .checked_add(work_of(header)?)
            .ok_or(AcceptError::KnownInvalid(hash))?;
        let height = parent.height + 1;
        let skip = self.ancestor(&header.prev_blockhash, skip_height(height))?;
        Ok(IndexEntry {
            header: *header,
            height,
            chainwork,
            status,
            sequence: self.index.next_sequence(),
            linked: false,
            skip: skip.ok_or(AcceptError::MissingParent(header.prev_blockhash))?,
        })
    }

    fn add_entry(
        &mut self,
        hash: BlockHash,
        header: &BlockHeader,
        parent: &IndexEntry,
        status: BlockStatus,
    ) -> Result<IndexEntry, AcceptError> {
        let entry = self.new_entry(hash, header, parent, status)?;
        self.index.insert(&self.store, hash, entry)?;
        self.write(Batch::default())?;
        Ok(entry)
    }

    /// Accepts a block: checks it on its own and against its parent, and keeps it
    /// to be stored with the next write. Call [`ChainState::activate_best_chain`]
    /// afterwards to move the tip (connecting the block in the same commit that
    /// stores it) or [`ChainState::flush`] to store it on its own.
    ///
    /// # Errors
    ///
    /// Missing parent (put the block aside and ask for the parent), known-invalid
    /// ancestry, broken rules, or the store.
    pub fn accept_block(&mut self, block: &Block, now: u32) -> Result<Accepted, AcceptError> {
        let hash = block.block_hash();
        let known = self.index_entry(&hash)?;
        if let Some(entry) = known {
            if entry.status.is_invalid() {
                return Err(AcceptError::KnownInvalid(hash));
            }
            if entry.status.has_data() {
                return Ok(Accepted::Duplicate);
            }
        }
        // Context-free checks first. A failure here is not recorded against the
        // hash: a block with a bad merkle root may share its header (and hash)
        // with a valid block (CVE-2012-2459), so only the sender is at fault.
        check_block(block, &self.params)
            .map_err(|error| AcceptError::Invalid { hash, error: Box::new(error) })?;
        let missing_parent = AcceptError::MissingParent(block.header.prev_blockhash);
        let parent = self.index_entry(&block.header.prev_blockhash)?.ok_or(missing_parent)?;
        let entry = match known {
            Some(entry) => entry,
            None => {
                if parent.status.is_invalid() {
                    self.add_entry(hash, &block.header, &parent, BlockStatus::InvalidChild)?;
                    return Err(AcceptError::KnownInvalid(hash));
                }
                let ctx = self
                    .context_after(&block.header.prev_blockhash, now)?
                    .ok_or(AcceptError::MissingParent(block.header.prev_blockhash))?;
                if let Err(error) = contextual_check_block_header(&block.header, &ctx, &self.params)
                {
                    if error.kind() == Kind::Invalid {
                        self.add_entry(hash, &block.header, &parent, BlockStatus::Invalid)?;
                    }
                    return Err(AcceptError::Invalid { hash, error: Box::new(error) });
                }
                // Stored below together with the block: one commit, not two.
                self.new_entry(hash, &block.header, &parent, BlockStatus::HeaderOnly)?
            }
        };
        let ctx = self
            .context_after(&block.header.prev_blockhash, now)?
            .ok_or(AcceptError::MissingParent(block.header.prev_blockhash))?;
        if let Err(error) = contextual_check_block(block, &ctx, &self.params) {
            if error.kind() == Kind::Invalid {
                if self.index_entry(&hash)?.is_none() {
                    self.add_entry(hash, &block.header, &parent, BlockStatus::HeaderOnly)?;
                }
                self.mark_invalid(hash)?;
            }
            return Err(AcceptError::Invalid { hash, error: Box::new(error) });
        }
        // The arrival order that breaks chainwork ties is given when the block
        // and all its ancestors have their data (the index does it as it links
        // them), as in Bitcoin Core: withholding a parent cannot win a tie.
        let stored = IndexEntry { status: BlockStatus::DataStored, ..entry };
        let mut batch = self.batch_at(stored.height);
        batch.push(Op::PutBlock(block.clone()));
        self.flush()?;
        self.unwritten = Some(Unwritten { hash, block: block.clone(), batch });
        // Its entry rides with the block, in the index's changes for the next write.
        self.index.insert(&self.store, hash, stored)?;
        Ok(Accepted::New)
    }

    /// Returns the batch for storing or connecting a block at `height`: lazy
    /// while far behind the best header (initial sync: one fsync per
    /// [`DURABLE_EVERY`] blocks instead of two per block, and a coins cache
    /// above the store keeps the chain state until its own flush), durable and
    /// flushing near the tip.
    fn batch_at(&self, height: u32) -> Batch {
        let far_behind = self.index.best_header_height() > height.saturating_add(SYNC_DISTANCE);
        match (far_behind, height.is_multiple_of(DURABLE_EVERY)) {
            (false, _) => Batch::default(),
            (true, true) => Batch::durable_blocks(),
            (true, false) => Batch::lazy(),
        }
    }

    fn mark_invalid(&mut self, hash: BlockHash) -> Result<(), StoreError> {
        self.index.mark_invalid(&self.store, hash)?;
        self.write(Batch::default())
    }

    /// Moves the active chain to the most-work valid chain whose blocks are all
    /// stored, disconnecting and connecting blocks as needed (Core's
    /// `ActivateBestChain`). A block that fails to connect is marked invalid with
    /// its descendants, and the search goes on among the remaining candidates.
    ///
    /// # Errors
    ///
    /// Only store failures; invalid blocks are reported in the result.
    pub fn activate_best_chain(&mut self) -> Result<TipChange, StoreError> {
        self.activate_best_chain_with(&|_| false)
    }

    /// [`ChainState::activate_best_chain`], skipping the signature checks of
    /// the transactions `verified` names: those whose signatures the caller
    /// checked before, the mempool's (Bitcoin Core's script execution cache;
    /// see [`check_block_signatures_except`] for why that is safe). A block
    /// relayed after its transactions then costs no signature checks.
    ///
    /// [`check_block_signatures_except`]: tinychain_protocol::validation::check_block_signatures_except
    ///
    /// # Errors
    ///
    /// Only store failures; invalid blocks are reported in the result.
    pub fn activate_best_chain_with(
        &mut self,
        verified: &dyn Fn(&Txid) -> bool,
    ) -> Result<TipChange, StoreError> {
        let mut change = TipChange::default();
        loop {
            // The best candidate by (chainwork, first seen). The tip is a candidate
            // too, so the loop ends when it is the best; after an invalid block it
            // can be an equal-work block seen earlier, which then wins back.
            let tip_work = self.tip_entry().chainwork;
            let Some((best, best_work)) = self.index.best_candidate() else { break };
            if best == self.tip() || best_work < tip_work {
                break;
            }
            // Walk back from the candidate to the active chain.
            let mut branch = Vec::new();
            let mut current = best;
            while !self.is_active(&current)? {
                branch.push(current);
                current = self.indexed(&current)?.header.prev_blockhash;
            }
            let fork_height = self.indexed(&current)?.height;
            while self.height() > fork_height {
                change.disconnected.push(self.disconnect_tip()?);
            }
            branch.reverse();
            let mut next = 0;
            while next < branch.len() {
                match self.connect_run(&branch[next..], verified, &mut change)? {
                    Ok(connected) => next += connected,
                    Err((hash, error)) => {
                        self.mark_invalid(hash)?;
                        change.invalid.push((hash, error));
                        // The old chain may be the best again: its tip is still a
                        // candidate (candidates are pruned only after this loop).
                        break;
                    }
                }
            }
        }
        let tip_work = self.tip_entry().chainwork;
        self.index.prune_candidates_below(tip_work);
        self.flush()?;
        Ok(change)
    }

    /// Connects a run of stored blocks from the start of `branch` (each the
    /// child of the one before, the first the child of the tip), pushing each
    /// connected block into `change`: the outer error is the store's, the inner
    /// one names the first invalid block, those before it being connected.
    ///
    /// The run's spends are worked out block by block, each against the UTXO
    /// set the blocks before it leave (the store under an overlay of what they
    /// create and spend); then the signatures of the whole run are checked
    /// together on the script threads, so small blocks keep every thread busy;
    /// then the blocks are connected in order, one store batch each. The result
    /// is the one connecting the blocks one at a time gives: a block is
    /// connected only once all its checks passed, and the error reported is the
    /// first in block order.
    fn connect_run(
        &mut self,
        branch: &[BlockHash],
        verified: &dyn Fn(&Txid) -> bool,
        change: &mut TipChange,
    ) -> Result<Result<usize, (BlockHash, BlockError)>, StoreError> {
        let mut run: Vec<(BlockHash, Block, IndexEntry, BlockSpends)> = Vec::new();
        // Coins created (`Some`) or spent (`None`) by the run's blocks so far.
        let mut overlay: HashMap<OutPoint, Option<Coin>> = HashMap::new();
        let mut inputs_failure = None;
        let mut signatures = 0;
        for hash in branch.iter().take(RUN_BLOCKS) {
            if signatures >= RUN_SIGNATURES {
                break;
            }
            let block = self.block(hash)?.ok_or_else(|| StoreError::Corrupt {
                what: "block",
                detail: format!("{hash} is indexed with data but missing"),
            })?;
            let entry = self.indexed(hash)?;
            // The coins the block spends, in one store read for those the run
            // has not touched. The outputs it creates are not looked up: every
            // coinbase commits to its height, so no transaction can repeat an
            // earlier txid short of a SHA-256 collision, and an output can never
            // overwrite an unspent one (why Bitcoin Core skips its BIP 30
            // lookups once BIP 34 holds).
            let spent: Vec<OutPoint> = (block.txdata.iter().skip(1))
                .flat_map(|tx| tx.inputs.iter().map(|i| i.prev_out))
                .collect();
            let untouched: Vec<OutPoint> =
                spent.iter().filter(|op| !overlay.contains_key(op)).copied().collect();
            let mut view: HashMap<OutPoint, Coin> =
                self.store.coins(&untouched)?.into_iter().collect();
            view.extend(spent.iter().filter_map(|op| Some((*op, overlay.get(op).copied()??))));
            match check_block_inputs(&block, entry.height, &view, &self.params) {
                Ok(spends) => {
                    overlay.extend(spends.spent.iter().map(|(op, _)| (*op, None)));
                    overlay.extend(spends.created.iter().map(|(op, coin)| (*op, Some(*coin))));
                    signatures += spent.len();
                    run.push((*hash, block, entry, spends));
                }
                Err(error) => {
                    inputs_failure = Some((*hash, error));
                    break;
                }
            }
        }
        let blocks: Vec<(&Block, &BlockSpends)> =
            run.iter().map(|(_, block, _, spends)| (block, spends)).collect();
        let threads = self.config.script_threads;
        let signature_failure = check_blocks_signatures_except(&blocks, threads, verified)
            .err()
            .map(|(at, error)| (at, (run[at].0, error)));
        let good = signature_failure.as_ref().map_or(run.len(), |(at, _)| *at);
        for (hash, block, entry, spends) in run.into_iter().take(good) {
            // Preparing the store changes takes under a millisecond; doing it
            // on a third thread during the signature checks was measured slower.
            change.signatures_cached += (block.txdata.iter().zip(&spends.txids).skip(1))
                .filter(|(_, txid)| verified(txid))
                .map(|(tx, _)| tx.inputs.len())
                .sum::<usize>();
            self.apply_block(&hash, &block, &entry, spends)?;
            change.connected.push(block);
        }
        match signature_failure.map(|(_, failure)| failure).or(inputs_failure) {
            Some(failure) => Ok(Err(failure)),
            None => Ok(Ok(good)),
        }
    }

    /// Connects `block`, whose inputs and signatures passed, on top of the tip.
    fn apply_block(
        &mut self,
        hash: &BlockHash,
        block: &Block,
        entry: &IndexEntry,
        spends: BlockSpends,
    ) -> Result<(), StoreError> {
        let mut batch = self.batch_at(entry.height);
        let mut digest = self.utxo_digest;
        for (op, coin) in &spends.spent {
            digest = digest.remove(op, coin);
        }
        for (op, coin) in &spends.created {
            digest = digest.add(op, coin);
        }
        batch.push(Op::SpendCoins(spends.spent.iter().map(|(op, _)| *op).collect()));
        batch.push(Op::AddCoins(spends.created));
        for (index, (tx, coins)) in block.txdata.iter().zip(&spends.coins).enumerate() {
            let txid = spends.txids[index];
            for (pkh, paid) in touched_addresses(tx, coins) {
                batch.push(Op::AddHistory(pkh, entry.height, txid, paid));
            }
            batch.push(Op::PutTxLocation(txid, TxLocation { block: *hash, index: index as u32 }));
        }
        batch.push(Op::PutUndo(*hash, BlockUndo { spent: spends.spent }));
        batch.push(Op::PutActive(entry.height, *hash));
        batch.push(Op::SetTip(StoredTip {
            hash: *hash,
            height: entry.height,
            utxo_digest: digest,
        }));
        let connected = self.index.set_status(&self.store, hash, BlockStatus::Valid)?;
        self.write(batch)?;
        self.tip_connected(*hash, connected);
        self.utxo_digest = digest;
        Ok(())
    }

    /// Disconnects the tip using its undo data, returning the block.
    fn disconnect_tip(&mut self) -> Result<Block, StoreError> {
        let hash = self.tip();
        let corrupt = |what: &'static str| StoreError::Corrupt {
            what,
            detail: format!("missing for active block {hash}"),
        };
        let block = self.block(&hash)?.ok_or_else(|| corrupt("block"))?;
        let undo = self.store.undo(&hash)?.ok_or_else(|| corrupt("undo data"))?;
        let height = self.height();
        let mut batch = Batch::default();
        let mut digest = self.utxo_digest;
        // Remove what the block created and is still unspent (outputs spent within
        // the block were never added).
        let created: Vec<OutPoint> = (block.txdata.iter())
            .flat_map(|tx| {
                let txid = tx.txid();
                (0..tx.outputs.len() as u32).map(move |vout| OutPoint { txid, vout })
            })
            .collect();
        let unspent = self.store.coins(&created)?;
        for (op, coin) in &unspent {
            digest = digest.remove(op, coin);
        }
        for (op, coin) in &undo.spent {
            digest = digest.add(op, coin);
        }
        // Rebuild which coins each transaction spent, to drop the right history.
        let spent_by_outpoint: HashMap<OutPoint, Coin> = undo.spent.iter().copied().collect();
        batch.push(Op::SpendCoins(unspent.into_iter().map(|(op, _)| op).collect()));
        batch.push(Op::AddCoins(undo.spent));
        let mut created_here: HashMap<OutPoint, Coin> = HashMap::new();
        for (i, tx) in block.txdata.iter().enumerate() {
            let txid = tx.txid();
            let coins: Vec<Coin> = if i == 0 {
                Vec::new()
            } else {
                tx.inputs
                    .iter()
                    .filter_map(|input| {
                        spent_by_outpoint
                            .get(&input.prev_out)
                            .or_else(|| created_here.get(&input.prev_out))
                            .copied()
                    })
                    .collect()
            };
            for (pkh, _) in touched_addresses(tx, &coins) {
                batch.push(Op::DeleteHistory(pkh, height, txid));
            }
            for (vout, output) in tx.outputs.iter().enumerate() {
                let coin = Coin { output: *output, height, is_coinbase: i == 0 };
                created_here.insert(OutPoint { txid, vout: vout as u32 }, coin);
            }
            batch.push(Op::DeleteTxLocation(txid));
        }
        batch.push(Op::DeleteUndo(hash));
        batch.push(Op::DeleteActive(height));
        let parent = block.header.prev_blockhash;
        batch.push(Op::SetTip(StoredTip { hash: parent, height: height - 1, utxo_digest: digest }));
        self.write(batch)?;
        self.tip_disconnected()?;
        self.utxo_digest = digest;
        Ok(block)
    }

    /// Returns a block locator for the tip: hashes going back exponentially, at most 101.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn locator(&self) -> Result<Vec<BlockHash>, StoreError> {
        self.locator_from(&self.tip())
    }
}

/// Checks that the stored active chain runs from `tip` back to genesis: each
/// height's block is indexed at that height, valid, and the child of the block
/// below. O(height) reads, holding one entry at a time.
fn check_active_chain<S: Store>(store: &S, tip: &StoredTip) -> Result<(), OpenError> {
    let inconsistent = |m: String| OpenError::Inconsistent(m);
    let mut expected = tip.hash;
    for height in (0..=tip.height).rev() {
        let hash = store.active_hash(height)?;
        if hash != Some(expected) {
            return Err(inconsistent(format!(
                "the active chain has {hash:?} at height {height}, not {expected}"
            )));
        }
        let entry = store
            .index_entry(&expected)?
            .ok_or_else(|| inconsistent(format!("active block {expected} is not indexed")))?;
        if entry.height != height || entry.status != BlockStatus::Valid || !entry.linked {
            return Err(inconsistent(format!("active block {expected} has a wrong entry")));
        }
        expected = entry.header.prev_blockhash;
    }
    if store.active_hash(tip.height + 1)?.is_some() {
        return Err(inconsistent(format!("the active chain goes on past tip {}", tip.hash)));
    }
    Ok(())
}

/// Returns the pubkey hashes a transaction pays or spends from, each once, with
/// the outputs it pays to each (none for one it only spends from).
fn touched_addresses(tx: &Transaction, spent: &[Coin]) -> Vec<(PubkeyHash, Vec<u32>)> {
    let mut touched: BTreeMap<PubkeyHash, Vec<u32>> = BTreeMap::new();
    for (vout, output) in tx.outputs.iter().enumerate() {
        touched.entry(output.pubkey_hash).or_default().push(vout as u32);
    }
    for coin in spent {
        touched.entry(coin.output.pubkey_hash).or_default();
    }
    touched.into_iter().collect()
}

fn work_of(header: &BlockHeader) -> Result<Work, StoreError> {
    header
        .bits
        .to_target()
        .map(|t| t.to_work())
        .map_err(|e| StoreError::Corrupt { what: "header bits", detail: e.to_string() })
}
