//! Today's node decisions, driven as `node/src/node.rs` drives them: [`Core`]
//! and [`Sync`] behind the simulator's [`Machine`] interface.
//!
//! Owns one node's core, downloader and the few things the event loop keeps
//! beside them (held compact blocks, the miner's pay-to). Each method mirrors
//! the event-loop handler of the same input, decision for decision, so the
//! simulation runs the code paths of gossip, compact blocks, headers-first
//! sync and orphan fetching. It stands in until the node's own sans-I/O
//! machine (`tinychain_node::machine`) exists; then that machine runs instead.

use std::collections::HashMap;
use std::time::Instant;

use tinychain_node::chain::HeadersOutcome;
use tinychain_node::core::{self, BlockOutcome, CompactOutcome, Core, Source};
use tinychain_node::p2p::protocol::{
    MAX_BLOCKS_PER_RESPONSE, MAX_HEADERS_PER_RESPONSE, MAX_RESPONSE_SIZE, Request, Response, Status,
};
use tinychain_node::store::{Store, StoreError};
use tinychain_node::sync::{self, Action, Sync};
use tinychain_protocol::params::Params;
use tinychain_protocol::validation::{Coin, block_subsidy};
use tinychain_protocol::{Block, BlockHash, CompactBlock, OutPoint, PubkeyHash};

use crate::machine::{Acceptance, Gossip, Input, Machine, MessageId, Now, Output, Peer, Snapshot};
use crate::store::SharedStore;

/// Orphan blocks beyond which missing parents are left to headers-first sync (node.rs).
const MAX_ORPHAN_FETCH: usize = 8;
/// Incomplete compact blocks held for the whole block, at most (node.rs).
const MAX_INCOMPLETE: usize = 8;
/// Ticks between status refreshes of every peer (node.rs's peer maintenance, 10 s).
const MAINTENANCE_TICKS: u64 = 10;
/// Ticks between template refreshes (node.rs's `TEMPLATE_REFRESH`, 5 s).
const REFRESH_TICKS: u64 = 5;

/// One honest node: today's core and downloader with the event loop's glue.
#[derive(Debug)]
pub struct Glue {
    core: Core<SharedStore, Peer>,
    sync: Sync<Peer>,
    pay_to: Option<PubkeyHash>,
    /// Held compact blocks: whose whole block was asked of whom.
    incomplete: HashMap<BlockHash, Peer>,
    peers: Vec<Peer>,
    ticks: u64,
    /// What `mono` times count from.
    epoch: Instant,
}

impl Glue {
    /// Opens a node on `store` (a fresh one, or the store of a crashed node).
    ///
    /// # Errors
    ///
    /// The store is inconsistent.
    pub fn open(
        store: SharedStore,
        params: Params,
        pay_to: Option<PubkeyHash>,
        epoch: Instant,
        now: Now,
    ) -> Result<Glue, tinychain_node::chain::OpenError> {
        let core = Core::open(store, params, core::Config::default(), now.unix)?;
        Ok(Glue {
            core,
            sync: Sync::new(sync::Config::default()),
            pay_to,
            incomplete: HashMap::new(),
            peers: Vec::new(),
            ticks: 0,
            epoch,
        })
    }

    fn instant(&self, now: Now) -> Instant {
        self.epoch + now.mono
    }

    fn status(&self) -> Status {
        let chain = self.core.chain();
        Status {
            genesis: chain.params().genesis_hash(),
            tip: chain.tip(),
            height: chain.height(),
            chainwork: chain.tip_entry().chainwork,
        }
    }

    fn is_syncing(&self) -> bool {
        let chain = self.core.chain();
        let ours = chain.tip_entry().chainwork;
        chain.index().best_header().is_some_and(|(_, e)| e.chainwork > ours)
            || self.sync.best_unknown_claim().is_some_and(|w| w > ours)
    }

    fn job(&self, now: Now, out: &mut Vec<Output>) {
        let Some(pay_to) = self.pay_to else { return };
        if self.core.mining_blocked_until(now.unix).is_none() {
            out.push(Output::Job(self.core.block_template(pay_to, now.unix).block));
        }
    }

    fn publish(&self, hash: &BlockHash, out: &mut Vec<Output>) -> Result<(), StoreError> {
        if let Some(compact) =
            self.core.chain().block(hash)?.as_ref().and_then(CompactBlock::from_block)
        {
            out.push(Output::Publish(Gossip::Block(compact)));
        }
        Ok(())
    }

    fn execute(&self, actions: Vec<Action<Peer>>, out: &mut Vec<Output>) {
        for action in actions {
            out.push(match action {
                Action::GetHeaders { peer, locator } => {
                    Output::Request { to: peer, request: Request::GetHeaders { locator } }
                }
                Action::GetBlocks { peer, hashes } => {
                    Output::Request { to: peer, request: Request::GetBlocks(hashes) }
                }
                Action::GetStatus { peer } => {
                    Output::Request { to: peer, request: Request::Status(self.status()) }
                }
                Action::Drop { peer, .. } => Output::Disconnect { peer },
            });
        }
    }

    fn run_sync(&mut self, now: Now, out: &mut Vec<Output>) -> Result<(), StoreError> {
        let actions = self.sync.schedule(self.core.chain(), self.instant(now))?;
        self.execute(actions, out);
        Ok(())
    }

    /// node.rs's `carry_out` (`own`: `carry_out_own`, blocks published even while syncing).
    fn carry_out(
        &mut self,
        outputs: Vec<core::Output<Peer>>,
        own: bool,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        for output in outputs {
            match output {
                core::Output::TipChanged { .. } => self.job(now, out),
                core::Output::Penalize { peer, reason } => {
                    out.push(Output::Penalize { peer, reason })
                }
                core::Output::RequestBlock { peer, hash } => {
                    let fetch =
                        !self.is_syncing() && self.core.orphan_block_count() <= MAX_ORPHAN_FETCH;
                    let at = self.instant(now);
                    let actions = self.sync.orphan_parent(peer, hash, fetch, at);
                    self.execute(actions, out);
                }
                core::Output::RelayTx(txid) => {
                    if let Some(entry) = self.core.mempool().get(&txid) {
                        out.push(Output::Publish(Gossip::Tx(entry.tx.clone())));
                    }
                }
                core::Output::RelayBlock(hash) => {
                    if own || !self.is_syncing() {
                        self.publish(&hash, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn on_gossip(
        &mut self,
        from: Peer,
        id: MessageId,
        message: Gossip,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        match message {
            Gossip::Block(compact) => {
                let hash = compact.block_hash();
                let (outcome, outputs) =
                    match self.core.handle_compact_block(&compact, Some(from), now.unix)? {
                        (CompactOutcome::Block(outcome), outputs) => (outcome, outputs),
                        (CompactOutcome::Incomplete { .. }, _) => {
                            if self.incomplete.len() >= MAX_INCOMPLETE
                                || self.incomplete.contains_key(&hash)
                            {
                                out.push(Output::Verdict { id, acceptance: Acceptance::Ignore });
                            } else {
                                self.incomplete.insert(hash, from);
                                let request = Request::GetBlocks(vec![hash]);
                                out.push(Output::Request { to: from, request });
                            }
                            return Ok(());
                        }
                    };
                if matches!(outcome, BlockOutcome::Accepted | BlockOutcome::Duplicate) {
                    self.sync.peer_has(&from, hash, self.core.chain())?;
                }
                let relay = outputs.contains(&core::Output::RelayBlock(hash));
                let outputs: Vec<_> =
                    outputs.into_iter().filter(|o| *o != core::Output::RelayBlock(hash)).collect();
                let acceptance = match outcome {
                    BlockOutcome::Invalid(_) => Acceptance::Reject,
                    _ if relay => Acceptance::Accept,
                    _ => Acceptance::Ignore,
                };
                out.push(Output::Verdict { id, acceptance });
                self.carry_out(outputs, false, now, out)
            }
            Gossip::Tx(tx) => {
                let txid = tx.txid();
                let (result, outputs) = self.core.handle_tx(tx, Some(from), now.unix)?;
                let acceptance = match &result {
                    Ok(tinychain_node::mempool::Accepted::New { .. }) => Acceptance::Accept,
                    Err(tinychain_node::mempool::RejectReason::Invalid(_)) => Acceptance::Reject,
                    _ => Acceptance::Ignore,
                };
                out.push(Output::Verdict { id, acceptance });
                let outputs =
                    outputs.into_iter().filter(|o| *o != core::Output::RelayTx(txid)).collect();
                self.carry_out(outputs, false, now, out)
            }
            // The transport refuses what does not decode, before the node sees it.
            Gossip::Junk(_) => {
                out.push(Output::Verdict { id, acceptance: Acceptance::Reject });
                out.push(Output::Penalize { peer: from, reason: "undecodable gossip".to_owned() });
                Ok(())
            }
        }
    }

    fn on_status(
        &mut self,
        peer: Peer,
        status: Status,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        if status.genesis != self.core.chain().params().genesis_hash() {
            out.push(Output::Disconnect { peer });
            return Ok(());
        }
        self.sync.set_status(peer, status, self.core.chain())?;
        self.run_sync(now, out)
    }

    fn answer(
        &mut self,
        peer: Peer,
        request: Request,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<Response, StoreError> {
        Ok(match request {
            Request::Status(status) => {
                self.on_status(peer, status, now, out)?;
                Response::Status(self.status())
            }
            Request::GetHeaders { locator } => Response::Headers(
                self.core.chain().headers_after(&locator, MAX_HEADERS_PER_RESPONSE)?,
            ),
            Request::GetBlocks(hashes) => Response::Blocks(self.core.blocks(
                &hashes,
                MAX_BLOCKS_PER_RESPONSE,
                MAX_RESPONSE_SIZE - 1024,
            )?),
        })
    }

    fn settle_incomplete(
        &mut self,
        hash: &BlockHash,
        acceptance: Acceptance,
        out: &mut Vec<Output>,
    ) {
        if self.incomplete.remove(hash).is_some() {
            out.push(Output::Verdict { id: MessageId::Block(*hash), acceptance });
        }
    }

    fn on_blocks(
        &mut self,
        peer: Peer,
        requested: Vec<BlockHash>,
        blocks: Vec<Block>,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        let delivered: Vec<_> = blocks.iter().map(Block::block_hash).collect();
        if delivered.iter().any(|h| !requested.contains(h)) {
            out.push(Output::Penalize { peer, reason: "blocks nobody asked for".to_owned() });
        }
        for (block, hash) in blocks.into_iter().zip(&delivered) {
            if !requested.contains(hash) {
                continue;
            }
            let source = if self.sync.is_in_flight(&peer, hash) {
                Source::Requested(peer)
            } else {
                Source::Unrequested(peer)
            };
            let (outcome, mut outputs) = self.core.handle_block(block, source, now.unix)?;
            if self.incomplete.contains_key(hash) {
                outputs.retain(|o| *o != core::Output::RelayBlock(*hash));
            }
            self.carry_out(outputs, false, now, out)?;
            let acceptance = match outcome {
                BlockOutcome::Invalid(_) => Acceptance::Reject,
                _ if self.core.is_valid(hash)? => Acceptance::Accept,
                _ => Acceptance::Ignore,
            };
            self.settle_incomplete(hash, acceptance, out);
            if matches!(outcome, BlockOutcome::Invalid(_)) {
                break;
            }
        }
        for hash in &requested {
            self.settle_incomplete(hash, Acceptance::Ignore, out);
        }
        self.sync.blocks_received(&peer, &requested, &delivered);
        Ok(())
    }

    fn on_response(
        &mut self,
        peer: Peer,
        request: Request,
        response: Response,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        match (request, response) {
            (Request::Status(_), Response::Status(status)) => {
                self.sync.status_answered(&peer);
                self.on_status(peer, status, now, out)?;
            }
            (Request::GetHeaders { .. }, Response::Headers(headers)) => {
                let count = headers.len();
                let outcome = if count > MAX_HEADERS_PER_RESPONSE {
                    HeadersOutcome::default()
                } else {
                    self.core.handle_headers(&headers, now.unix)?
                };
                if let Some(m) =
                    self.sync.headers_received(&peer, count, &outcome, self.core.chain())?
                {
                    out.push(Output::Penalize { peer, reason: m.reason });
                }
            }
            (Request::GetBlocks(requested), Response::Blocks(blocks)) => {
                self.on_blocks(peer, requested, blocks, now, out)?;
            }
            (request, Response::Refused(_)) => self.request_failed(peer, &request, out),
            (request, _) => {
                out.push(Output::Penalize {
                    peer,
                    reason: "an answer that does not fit".to_owned(),
                });
                self.request_failed(peer, &request, out);
            }
        }
        self.run_sync(now, out)
    }

    fn request_failed(&mut self, peer: Peer, request: &Request, out: &mut Vec<Output>) {
        match request {
            Request::GetBlocks(hashes) => {
                for hash in hashes {
                    self.settle_incomplete(hash, Acceptance::Ignore, out);
                }
                self.sync.request_failed(&peer, hashes);
            }
            Request::GetHeaders { .. } => self.sync.request_failed(&peer, &[]),
            Request::Status(_) => self.sync.status_answered(&peer),
        }
    }

    fn on_tick(&mut self, now: Now, out: &mut Vec<Output>) -> Result<(), StoreError> {
        self.ticks += 1;
        self.core.tick(now.unix);
        self.run_sync(now, out)?;
        if self.ticks.is_multiple_of(REFRESH_TICKS) {
            self.job(now, out);
        }
        if self.ticks.is_multiple_of(MAINTENANCE_TICKS) {
            let at = self.instant(now);
            for peer in self.peers.clone() {
                let ask = self.sync.ask_status(peer, at);
                self.execute(ask.into_iter().collect(), out);
            }
        }
        Ok(())
    }

    fn try_handle(
        &mut self,
        input: Input,
        now: Now,
        out: &mut Vec<Output>,
    ) -> Result<(), StoreError> {
        match input {
            Input::Connected(peer) => {
                self.peers.push(peer);
                let ask = self.sync.ask_status(peer, self.instant(now));
                self.execute(ask.into_iter().collect(), out);
                if self.ticks == 0 {
                    self.job(now, out);
                }
            }
            Input::Disconnected(peer) => {
                self.peers.retain(|p| *p != peer);
                self.sync.remove_peer(&peer);
                self.run_sync(now, out)?;
            }
            Input::Gossip { from, id, message } => self.on_gossip(from, id, message, now, out)?,
            Input::Request { from, id, request } => {
                let response = self.answer(from, request, now, out)?;
                out.push(Output::Respond { to: from, id, response });
            }
            Input::Response { from, request, response } => {
                self.on_response(from, request, response, now, out)?;
            }
            Input::RequestFailed { peer, request } => {
                self.request_failed(peer, &request, out);
                self.run_sync(now, out)?;
            }
            Input::Found(block) => {
                let (_, outputs) = self.core.handle_block(block, Source::Local, now.unix)?;
                self.carry_out(outputs, true, now, out)?;
            }
            Input::SubmitTx(tx) => {
                let (_, outputs) = self.core.handle_tx(tx, None, now.unix)?;
                self.carry_out(outputs, false, now, out)?;
            }
            Input::Tick => self.on_tick(now, out)?,
        }
        Ok(())
    }
}

impl Machine for Glue {
    fn handle(&mut self, input: Input, now: Now) -> Vec<Output> {
        let mut out = Vec::new();
        // A memory store does not fail.
        self.try_handle(input, now, &mut out).expect("the memory store does not fail");
        out
    }

    fn snapshot(&self) -> Snapshot {
        snapshot(&self.core)
    }

    fn block(&self, hash: &BlockHash) -> Option<Block> {
        self.core.chain().block(hash).ok().flatten()
    }

    fn tip(&self) -> (BlockHash, u32) {
        (self.core.chain().tip(), self.core.chain().height())
    }

    fn coins(&self, pay_to: &PubkeyHash, limit: usize) -> Vec<(OutPoint, Coin)> {
        self.core.chain().store().address_coins(pay_to, None, limit).unwrap_or_default()
    }
}

/// Reads what the invariants need from a core.
pub fn snapshot<S: Store, P: Clone>(core: &Core<S, P>) -> Snapshot {
    let chain = core.chain();
    let mut coin_value = 0u64;
    let _ = chain.store().for_each_coin(&mut |_, coin| {
        coin_value = coin_value.saturating_add(coin.output.value.to_belushis());
    });
    let subsidies =
        (1..=chain.height()).map(|h| block_subsidy(h, chain.params()).to_belushis()).sum();
    Snapshot {
        tip: chain.tip(),
        height: chain.height(),
        utxo_digest: chain.utxo_digest().to_string(),
        coin_value,
        subsidies,
        mempool: core.mempool().len(),
        mempool_error: mempool_error(core).err(),
    }
}

/// Checks the mempool against the tip: every transaction unconfirmed, every
/// input a coin of the tip or an output of an earlier mempool transaction, no
/// outpoint spent twice.
fn mempool_error<S: Store, P: Clone>(core: &Core<S, P>) -> Result<(), String> {
    let chain = core.chain();
    let mut spent = std::collections::HashSet::new();
    let mut created = std::collections::HashSet::new();
    for (tx, _) in core.mempool().transactions_in_order() {
        let txid = tx.txid();
        if chain.store().tx_location(&txid).map_err(|e| e.to_string())?.is_some() {
            return Err(format!("mempool transaction {txid} is confirmed"));
        }
        for input in &tx.inputs {
            let op = input.prev_out;
            let coin = chain.coin(&op).map_err(|e| e.to_string())?;
            if coin.is_none() && !created.contains(&op) {
                return Err(format!(
                    "mempool transaction {txid} spends {op:?}, which is not there"
                ));
            }
            if !spent.insert(op) {
                return Err(format!("{op:?} is spent twice in the mempool"));
            }
        }
        for vout in 0..tx.outputs.len() as u32 {
            created.insert(OutPoint { txid, vout });
        }
    }
    Ok(())
}
