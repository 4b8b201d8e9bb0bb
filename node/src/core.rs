//! The node's core: the pure state machine every input goes through.
//!
//! Owns the chain state, the mempool, the fee estimator and the orphan block pool, and decides what
//! a block or transaction from a peer (or from this node's miner or RPC) leads
//! to: store it, move the tip, update the mempool, relay it, ask a peer for a
//! missing parent, or penalise the peer that sent invalid data. It returns those
//! decisions as [`Output`]s for the event loop to carry out.
//!
//! Pure, like the chain state: the time comes in as an argument, and nothing here
//! touches a socket, the clock or a thread. One owner (the event loop) holds it.

use std::cell::RefCell;

use tinychain_protocol::params::Params;
use tinychain_protocol::pow::HeaderHasher;
use tinychain_protocol::validation::{Coin, Kind, UtxoView, check_block_header};
use tinychain_protocol::{
    Block, BlockHash, BlockHeader, CompactBlock, OutPoint, PubkeyHash, Transaction, Txid,
};

use crate::chain::orphans::{self, OrphanBlocks};
use crate::chain::{self, AcceptError, Accepted, ChainState, HeadersOutcome, OpenError, TipChange};
use crate::fees::{self, Estimator};
use crate::mempool::{self, Mempool, RejectReason, TipContext};
use crate::store::{Batch, Op, Store, StoreError};
use crate::template::{BlockTemplate, TemplateContext, create_block_template};

/// Configuration of the core's parts.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The chain state.
    pub chain: chain::Config,
    /// The mempool.
    pub mempool: mempool::Config,
    /// The orphan block pool.
    pub orphan_blocks: orphans::Config,
}

/// Something the event loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Tell peers about a new valid block.
    RelayBlock(BlockHash),
    /// Tell peers about a transaction accepted into the mempool.
    RelayTx(Txid),
    /// Ask `peer` for the block `hash` (the missing parent of an orphan).
    RequestBlock {
        /// Who to ask (the peer that sent the orphan).
        peer: P,
        /// The block wanted.
        hash: BlockHash,
    },
    /// `peer` sent consensus-invalid data.
    Penalize {
        /// The peer.
        peer: P,
        /// What it sent.
        reason: String,
    },
    /// The active tip moved (refresh the miner, log it).
    TipChanged {
        /// New tip.
        hash: BlockHash,
        /// Its height.
        height: u32,
        /// Blocks disconnected on the way (0 unless a reorg).
        disconnected: usize,
        /// Blocks connected on the way.
        connected: usize,
        /// Their input signatures not checked again (checked in the mempool).
        signatures_cached: usize,
    },
}

/// What became of a block handed to the core (a gossip validation verdict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOutcome {
    /// New and valid as far as checked: forward it.
    Accepted,
    /// Already known: forward nothing, punish nobody.
    Duplicate,
    /// Parent unknown: kept as an orphan, parent requested.
    Orphan,
    /// Not valid yet (time too far ahead): ignored.
    Premature(String),
    /// Consensus-invalid: forward nothing, penalise the sender.
    Invalid(String),
}

impl std::fmt::Display for BlockOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockOutcome::Accepted => f.write_str("accepted"),
            BlockOutcome::Duplicate => f.write_str("already known"),
            BlockOutcome::Orphan => f.write_str("its parent is unknown (kept as an orphan)"),
            BlockOutcome::Premature(reason) => write!(f, "not valid yet: {reason}"),
            BlockOutcome::Invalid(reason) => write!(f, "invalid: {reason}"),
        }
    }
}

/// What became of a compact block handed to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompactOutcome {
    /// Rebuilt from the mempool (or known already) and handled as a block.
    Block(BlockOutcome),
    /// Transactions are missing from the mempool, and the header carries valid
    /// proof of work: fetch the whole block from the sender.
    Incomplete {
        /// How many transactions are missing.
        missing: usize,
    },
}

/// Why blocks could not be generated on demand.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// Only regtest mines on demand.
    #[error("blocks are generated on demand only on regtest")]
    NotRegtest,
    /// The node refused its own block.
    #[error("the generated block was not accepted: {0}")]
    Rejected(String),
    /// The next block's time would be too far ahead of the clock (see
    /// [`Core::mining_blocked_until`]).
    #[error(
        "the next block cannot be valid before {until} (its time must be after the median \
         time past, and at most {limit} s ahead of the clock, now {now}): generate fewer \
         blocks, or wait"
    )]
    TooFarAhead {
        /// The unix time from which it can be mined.
        until: u64,
        /// The future limit, seconds.
        limit: u32,
        /// The clock.
        now: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What became of a transaction handed to the core.
pub type TxOutcome = Result<mempool::Accepted, RejectReason>;

/// Reads coins from the store for the mempool, remembering store errors.
struct ChainCoins<'a, S: Store> {
    store: &'a S,
    error: RefCell<Option<StoreError>>,
}

impl<S: Store> UtxoView for ChainCoins<'_, S> {
    fn get_coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.store.coin(outpoint).unwrap_or_else(|e| {
            self.error.borrow_mut().get_or_insert(e);
            None
        })
    }
}

/// The node's core.
#[derive(Debug)]
pub struct Core<S: Store, P> {
    chain: ChainState<S>,
    mempool: Mempool,
    fees: Estimator,
    orphans: OrphanBlocks,
    _peer: std::marker::PhantomData<P>,
}

impl<S: Store, P: Clone> Core<S, P> {
    /// Opens the core on `store`, restoring the mempool saved at the last clean stop.
    ///
    /// # Errors
    ///
    /// The store fails or is inconsistent.
    pub fn open(
        store: S,
        params: Params,
        config: Config,
        now: u64,
    ) -> Result<Core<S, P>, OpenError> {
        let chain = ChainState::open(store, params, config.chain)?;
        let saved = chain.store().mempool()?;
        // Statistics that do not decode or fit (another layout) are dropped: it relearns.
        let fees = chain.store().fee_estimates().ok().flatten().and_then(Estimator::from_saved);
        let mut core = Core {
            chain,
            mempool: Mempool::new(config.mempool),
            fees: fees.unwrap_or_default(),
            orphans: OrphanBlocks::new(config.orphan_blocks),
            _peer: std::marker::PhantomData,
        };
        // Each keeps the time it first entered, so restarts do not postpone expiry;
        // what expired while the node was down goes at the first tick.
        for (tx, entered) in saved {
            core.with_tip(|mempool, tip| {
                let _ = mempool.accept(tx, tip, entered.min(now));
            })?;
        }
        Ok(core)
    }

    /// Returns the chain state.
    pub fn chain(&self) -> &ChainState<S> {
        &self.chain
    }

    /// Returns the mempool.
    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Estimates the fee rate that confirms within `target` blocks (see [`fees`]).
    pub fn estimate_fee(&self, target: u32) -> fees::Estimate {
        self.fees.estimate(target)
    }

    /// Returns the number of orphan blocks held.
    pub fn orphan_block_count(&self) -> usize {
        self.orphans.len()
    }

    /// Runs `f` with the mempool and a view of the tip.
    fn with_tip<T>(
        &mut self,
        f: impl FnOnce(&mut Mempool, &TipContext<'_, ChainCoins<'_, S>>) -> T,
    ) -> Result<T, StoreError> {
        let coins = ChainCoins { store: self.chain.store(), error: RefCell::new(None) };
        let tip = TipContext {
            coins: &coins,
            height: self.chain.height(),
            median_time_past: self.chain.median_time_past(),
            params: self.chain.params(),
        };
        let out = f(&mut self.mempool, &tip);
        match coins.error.into_inner() {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Handles a block from `from` (a peer, or `None` for this node's miner or RPC).
    ///
    /// # Errors
    ///
    /// Only store failures, which the node cannot survive.
    pub fn handle_block(
        &mut self,
        block: Block,
        from: Option<P>,
        now: u64,
    ) -> Result<(BlockOutcome, Vec<Output<P>>), StoreError> {
        let mut out = Vec::new();
        let hash = block.block_hash();
        let now32 = clamp_time(now);
        let outcome = match self.chain.accept_block(&block, now32) {
            Ok(Accepted::Duplicate) => return Ok((BlockOutcome::Duplicate, out)),
            Ok(Accepted::New) => BlockOutcome::Accepted,
            Err(AcceptError::Store(e)) => return Err(e),
            Err(AcceptError::MissingParent(_)) => {
                if self.orphans.contains(&hash) {
                    return Ok((BlockOutcome::Duplicate, out));
                }
                self.orphans.insert(block, now);
                if let Some(peer) = from {
                    let root = self.orphans.root_of(&hash);
                    let missing = self.orphans.parent_of(&root).unwrap_or(hash);
                    out.push(Output::RequestBlock { peer, hash: missing });
                }
                return Ok((BlockOutcome::Orphan, out));
            }
            Err(e) => {
                let reason = e.to_string();
                return Ok(match e.kind() {
                    Kind::Invalid => {
                        if let Some(peer) = from {
                            out.push(Output::Penalize { peer, reason: reason.clone() });
                        }
                        (BlockOutcome::Invalid(reason), out)
                    }
                    _ => (BlockOutcome::Premature(reason), out),
                });
            }
        };
        // Blocks that were waiting for this one can be accepted now.
        let mut accepted = vec![hash];
        let mut parents = vec![hash];
        while let Some(parent) = parents.pop() {
            for child in self.orphans.take_children(&parent) {
                let child_hash = child.block_hash();
                match self.chain.accept_block(&child, now32) {
                    Ok(_) => {
                        accepted.push(child_hash);
                        parents.push(child_hash);
                    }
                    Err(AcceptError::Store(e)) => return Err(e),
                    Err(_) => {}
                }
            }
        }
        // The mempool's transactions had their signatures checked on entry.
        let mempool = &self.mempool;
        let change = self.chain.activate_best_chain_with(&|txid| mempool.get(txid).is_some())?;
        self.apply_tip_change(&change, now, &mut out)?;
        let invalid: Vec<&BlockHash> = change.invalid.iter().map(|(h, _)| h).collect();
        if let Some((_, error)) = change.invalid.iter().find(|(h, _)| *h == hash) {
            let reason = error.to_string();
            if let Some(peer) = from {
                out.push(Output::Penalize { peer, reason: reason.clone() });
            }
            return Ok((BlockOutcome::Invalid(reason), out));
        }
        for h in accepted {
            if !invalid.contains(&&h) {
                out.push(Output::RelayBlock(h));
            }
        }
        Ok((outcome, out))
    }

    /// Handles a compact block from `from`: rebuilds the block from the mempool
    /// and handles it as [`Core::handle_block`] does, or, when transactions are
    /// missing, answers [`CompactOutcome::Incomplete`] once the header's proof
    /// of work holds (so nobody makes the node fetch blocks for free).
    ///
    /// # Errors
    ///
    /// Only store failures, which the node cannot survive.
    pub fn handle_compact_block(
        &mut self,
        compact: &CompactBlock,
        from: Option<P>,
        now: u64,
    ) -> Result<(CompactOutcome, Vec<Output<P>>), StoreError> {
        let hash = compact.block_hash();
        let known = self.chain.index_entry(&hash)?;
        if self.orphans.contains(&hash) || known.is_some_and(|e| e.status.has_data()) {
            return Ok((CompactOutcome::Block(BlockOutcome::Duplicate), Vec::new()));
        }
        let missing = match compact.reconstruct(|txid| self.mempool.get(txid).map(|e| e.tx.clone()))
        {
            Ok(block) => {
                let (outcome, out) = self.handle_block(block, from, now)?;
                return Ok((CompactOutcome::Block(outcome), out));
            }
            Err(missing) => missing,
        };
        let invalid = if known.is_some_and(|e| e.status.is_invalid()) {
            Some(format!("block {hash} is known to be invalid"))
        } else {
            check_block_header(&compact.header, self.chain.params()).err().map(|e| e.to_string())
        };
        let mut out = Vec::new();
        Ok(match invalid {
            Some(reason) => {
                if let Some(peer) = from {
                    out.push(Output::Penalize { peer, reason: reason.clone() });
                }
                (CompactOutcome::Block(BlockOutcome::Invalid(reason)), out)
            }
            None => (CompactOutcome::Incomplete { missing: missing.count }, out),
        })
    }

    fn apply_tip_change(
        &mut self,
        change: &TipChange,
        now: u64,
        out: &mut Vec<Output<P>>,
    ) -> Result<(), StoreError> {
        if !change.moved() {
            return Ok(());
        }
        if !change.disconnected.is_empty() {
            let disconnected = &change.disconnected;
            self.with_tip(|mempool, tip| mempool.reorganized(disconnected, tip, now))?;
        }
        // Transactions of the (new) branch are confirmed now.
        for block in &change.connected {
            self.with_tip(|mempool, tip| mempool.block_connected(block, tip, now))?;
            // A connected block's coinbase commits to its height (BIP34).
            let Some(height) = block.txdata.first().and_then(Transaction::coinbase_height) else {
                continue;
            };
            // A block over an hour old is initial sync: how long its transactions
            // waited says nothing about fees.
            let old = u64::from(block.header.time) + 3600 < now;
            let txids: Vec<Txid> = block.txdata.iter().map(Transaction::txid).collect();
            let mempool = &self.mempool;
            self.fees.block_connected(height, &txids, |t| mempool.get(t).is_some(), old);
        }
        out.push(Output::TipChanged {
            hash: self.chain.tip(),
            height: self.chain.height(),
            disconnected: change.disconnected.len(),
            connected: change.connected.len(),
            signatures_cached: change.signatures_cached,
        });
        Ok(())
    }

    /// Handles a transaction from `from` (a peer, or `None` for this node's RPC).
    ///
    /// # Errors
    ///
    /// Only store failures.
    pub fn handle_tx(
        &mut self,
        tx: Transaction,
        from: Option<P>,
        now: u64,
    ) -> Result<(TxOutcome, Vec<Output<P>>), StoreError> {
        let txid = tx.txid();
        let result = self.with_tip(|mempool, tip| mempool.accept(tx, tip, now))?;
        let mut out = Vec::new();
        match &result {
            Ok(mempool::Accepted::New { unorphaned, .. }) => {
                let height = self.chain.height();
                for t in std::iter::once(&txid).chain(unorphaned) {
                    if let Some(entry) = self.mempool.get(t) {
                        self.fees.track(*t, entry.rate_key(), height);
                    }
                    out.push(Output::RelayTx(*t));
                }
            }
            Err(RejectReason::Invalid(e)) => {
                if let Some(peer) = from {
                    out.push(Output::Penalize { peer, reason: format!("transaction {txid}: {e}") });
                }
            }
            _ => {}
        }
        Ok((result, out))
    }

    /// Handles the passing of time: expires old mempool entries and orphans.
    pub fn tick(&mut self, now: u64) {
        self.mempool.expire(now);
        self.orphans.expire(now);
    }

    /// Builds a block template on the tip paying `pay_to`.
    pub fn block_template(&self, pay_to: PubkeyHash, now: u64) -> BlockTemplate {
        let tip = self.chain.tip_context(clamp_time(now));
        let ctx = TemplateContext {
            prev_blockhash: tip.prev_blockhash,
            height: tip.height,
            median_time_past: tip.median_time_past,
            bits: tip.required_bits,
            now: tip.now,
        };
        create_block_template(&ctx, &self.mempool, pay_to, self.chain.params())
    }

    /// The unix time from which a block on the tip can be mined, if it cannot
    /// be now. A block's time must be later than the tip's median time past and
    /// at most `max_future_block_time` ahead of the clock; regtest blocks mined
    /// many a second push the first past the second, and a block mined then
    /// would only be refused.
    pub fn mining_blocked_until(&self, now: u64) -> Option<u64> {
        let earliest = u64::from(self.chain.tip_context(clamp_time(now)).median_time_past) + 1;
        let limit = u64::from(self.chain.params().max_future_block_time);
        (earliest > now.saturating_add(limit)).then(|| earliest - limit)
    }

    /// Handles a run of headers from a peer (headers-first sync): see
    /// [`ChainState::accept_headers`].
    ///
    /// # Errors
    ///
    /// Only store failures.
    pub fn handle_headers(
        &mut self,
        headers: &[BlockHeader],
        now: u64,
    ) -> Result<HeadersOutcome, StoreError> {
        self.chain.accept_headers(headers, clamp_time(now))
    }

    /// Returns the stored blocks among `hashes`, in order, at most `max_count`
    /// and (except for the first) at most `max_bytes` in total.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn blocks(
        &self,
        hashes: &[BlockHash],
        max_count: usize,
        max_bytes: u64,
    ) -> Result<Vec<Block>, StoreError> {
        let mut blocks = Vec::new();
        let mut bytes = 0;
        for hash in hashes.iter().take(max_count) {
            let Some(block) = self.chain.block(hash)? else { continue };
            bytes += block.size();
            if bytes > max_bytes && !blocks.is_empty() {
                break;
            }
            blocks.push(block);
        }
        Ok(blocks)
    }

    /// Mines `count` blocks on the tip paying `pay_to`, here and now (Bitcoin's
    /// `generatetoaddress`). Only on networks with minimum difficulty and no
    /// retargeting (regtest), where a block takes a handful of hashes.
    ///
    /// # Errors
    ///
    /// [`GenerateError::NotRegtest`] elsewhere; store failures.
    pub fn generate(
        &mut self,
        count: u32,
        pay_to: PubkeyHash,
        now: u64,
    ) -> Result<(Vec<BlockHash>, Vec<Output<P>>), GenerateError> {
        if !self.chain.params().pow_no_retargeting {
            return Err(GenerateError::NotRegtest);
        }
        let mut hashes = Vec::with_capacity(count as usize);
        let mut outputs = Vec::new();
        for _ in 0..count {
            if let Some(until) = self.mining_blocked_until(now) {
                let limit = self.chain.params().max_future_block_time;
                return Err(GenerateError::TooFarAhead { until, limit, now });
            }
            let mut block = self.block_template(pay_to, now).block;
            let target = block.header.bits.to_target().map_err(|_| GenerateError::NotRegtest)?;
            let hasher = HeaderHasher::new(&block.header);
            let nonce = hasher
                .find_nonce(block.header.time, 0..u32::MAX, &target)
                .ok_or(GenerateError::NotRegtest)?;
            block.header.nonce = nonce;
            let hash = block.block_hash();
            let (outcome, out) = self.handle_block(block, None, now)?;
            outputs.extend(out);
            if outcome != BlockOutcome::Accepted {
                return Err(GenerateError::Rejected(outcome.to_string()));
            }
            hashes.push(hash);
        }
        Ok((hashes, outputs))
    }

    /// Saves the mempool and the fee estimator's statistics so the next start restores them.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn save_mempool(&mut self) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.push(Op::SetMempool(self.mempool.transactions_in_order()));
        batch.push(Op::SetFeeEstimates(self.fees.saved().clone()));
        self.chain.store_mut().write(batch)
    }
}

/// Block times are u32 seconds; clocks past 2106 are clamped rather than wrapped.
fn clamp_time(now: u64) -> u32 {
    u32::try_from(now).unwrap_or(u32::MAX)
}
