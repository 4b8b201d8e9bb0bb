//! Gossip: the verdict on every block and transaction message, what the core's
//! decisions become (relay, fetch, penalise), and compact blocks that wait for
//! their whole form.
//!
//! Owns the relay rules: a gossiped message is forwarded by gossipsub itself
//! when its verdict is `Accept` (a block only once connected, so fully
//! validated; a transaction once new in the mempool), and never published a
//! second time; blocks that did not come by gossip are published, unless the
//! node is syncing. Must not decide consensus (the core does).

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use tracing::{debug, info};

use super::{Error, Node, Output, PeerId, Time};
use crate::core::{self, BlockOutcome, CompactOutcome};
use crate::mempool::{Accepted, RejectReason};
use crate::metrics::GossipTopic;
use crate::p2p::protocol::{Request, decode_gossip_block, decode_gossip_tx};
use crate::store::Store;

/// Orphan blocks beyond which missing parents are left to headers-first sync.
pub const MAX_ORPHAN_FETCH: usize = 8;
/// Incomplete compact blocks whose gossip verdict waits for the whole block, at most.
pub const MAX_INCOMPLETE: usize = 8;

impl<S: Store> Node<S> {
    /// A gossip message: decoded (a message that is oversized or does not
    /// decode is rejected and its sender penalised), then judged.
    pub(super) fn on_gossip(
        &mut self,
        from: PeerId,
        id: MessageId,
        topic: GossipTopic,
        data: &[u8],
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        let decoded = match topic {
            GossipTopic::Block => decode_gossip_block(data)
                .map(|block| self.on_gossip_block(&block, from, &id, now, out)),
            GossipTopic::Tx => {
                decode_gossip_tx(data).map(|tx| self.on_gossip_tx(tx, from, &id, now, out))
            }
        };
        match decoded {
            Ok(result) => result,
            Err(reason) => {
                let acceptance = MessageAcceptance::Reject;
                out.push(Output::GossipVerdict { topic, id, from, acceptance });
                self.penalise(from, &reason, out);
                Ok(())
            }
        }
    }

    fn on_gossip_block(
        &mut self,
        block: &tinychain_protocol::CompactBlock,
        from: PeerId,
        id: &MessageId,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        let hash = block.block_hash();
        let (outcome, outputs) =
            match self.core.handle_compact_block(block, Some(from), now.unix)? {
                (CompactOutcome::Block(outcome), outputs) => (outcome, outputs),
                (CompactOutcome::Incomplete { missing }, _) => {
                    self.fetch_incomplete(hash, id.clone(), from, missing, out);
                    return Ok(());
                }
            };
        if matches!(outcome, BlockOutcome::Accepted | BlockOutcome::Duplicate) {
            self.sync.peer_has(&from, hash, self.core.chain())?;
        }
        // Forwarded by gossipsub itself when the core would relay it
        // (connected, so fully validated), never when merely stored.
        let relay = outputs.contains(&core::Output::RelayBlock(hash));
        let outputs: Vec<_> =
            outputs.into_iter().filter(|o| *o != core::Output::RelayBlock(hash)).collect();
        let acceptance = match outcome {
            BlockOutcome::Invalid(_) => MessageAcceptance::Reject,
            _ if relay => MessageAcceptance::Accept,
            _ => MessageAcceptance::Ignore,
        };
        out.push(Output::GossipVerdict {
            topic: GossipTopic::Block,
            id: id.clone(),
            from,
            acceptance,
        });
        self.carry_out(outputs, now, out)
    }

    fn on_gossip_tx(
        &mut self,
        tx: tinychain_protocol::Transaction,
        from: PeerId,
        id: &MessageId,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        let txid = tx.txid();
        let (result, outputs) = self.core.handle_tx(tx, Some(from), now.unix)?;
        let acceptance = match &result {
            Ok(Accepted::New { .. }) => MessageAcceptance::Accept,
            Err(RejectReason::Invalid(_)) => MessageAcceptance::Reject,
            _ => MessageAcceptance::Ignore,
        };
        out.push(Output::GossipVerdict {
            topic: GossipTopic::Tx,
            id: id.clone(),
            from,
            acceptance,
        });
        // The gossiped transaction is forwarded by gossipsub itself.
        let outputs = outputs.into_iter().filter(|o| *o != core::Output::RelayTx(txid)).collect();
        self.carry_out(outputs, now, out)
    }

    /// Holds a gossiped compact block's verdict and asks its sender for the
    /// whole block (Bitcoin's `getblocktxn`, simplified); over
    /// [`MAX_INCOMPLETE`] held, or a second message for the same block, it is
    /// ignored instead.
    fn fetch_incomplete(
        &mut self,
        hash: tinychain_protocol::BlockHash,
        id: MessageId,
        from: PeerId,
        missing: usize,
        out: &mut Vec<Output>,
    ) {
        if self.incomplete.len() >= MAX_INCOMPLETE || self.incomplete.contains_key(&hash) {
            let acceptance = MessageAcceptance::Ignore;
            out.push(Output::GossipVerdict { topic: GossipTopic::Block, id, from, acceptance });
            return;
        }
        debug!(%hash, peer = %from, missing, "compact block incomplete: fetching the block");
        self.incomplete.insert(hash, (id, from));
        self.send(from, Request::GetBlocks(vec![hash]), out);
    }

    /// Reports the verdict on a held compact block, if `hash` is one.
    pub(super) fn settle_incomplete(
        &mut self,
        hash: &tinychain_protocol::BlockHash,
        acceptance: MessageAcceptance,
        out: &mut Vec<Output>,
    ) {
        if let Some((id, from)) = self.incomplete.remove(hash) {
            out.push(Output::GossipVerdict { topic: GossipTopic::Block, id, from, acceptance });
        }
    }

    /// Tells whether `hash` is a held compact block.
    pub(super) fn is_incomplete(&self, hash: &tinychain_protocol::BlockHash) -> bool {
        self.incomplete.contains_key(hash)
    }

    /// Carries out the core's decisions, whatever input led to them.
    pub(super) fn carry_out(
        &mut self,
        outputs: Vec<core::Output<PeerId>>,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        for output in outputs {
            match output {
                core::Output::TipChanged {
                    hash,
                    height,
                    disconnected,
                    connected,
                    signatures_cached,
                } => {
                    out.push(Output::TipChanged { connected, disconnected, signatures_cached });
                    if self.progress.is_some() {
                        debug!(%hash, height, disconnected, "new tip");
                    } else {
                        info!(%hash, height, disconnected, "new tip");
                    }
                    self.refresh_miner(now, out);
                }
                core::Output::Penalize { peer, reason } => self.penalise(peer, &reason, out),
                core::Output::RequestBlock { peer, hash } => {
                    // A gossiped block's parent is missing. A short gap is fetched by
                    // hash; the peer's status tells whether it is ahead by more, and
                    // then headers-first sync takes over.
                    let fetch =
                        !self.is_syncing() && self.core.orphan_block_count() <= MAX_ORPHAN_FETCH;
                    let actions = self.sync.orphan_parent(peer, hash, fetch, now.instant);
                    self.execute(actions, out);
                }
                core::Output::RelayTx(txid) => {
                    if let Some(entry) = self.core.mempool().get(&txid) {
                        out.push(Output::Publish {
                            topic: GossipTopic::Tx,
                            data: entry.tx.encode(),
                        });
                    }
                }
                // New blocks that did not arrive by gossip (fetched, or connected out
                // of the orphan pool) are published; while syncing, nobody needs them.
                // Publishing a block peers have is a no-op (content-addressed ids).
                core::Output::RelayBlock(hash) => {
                    if !self.is_syncing() {
                        self.publish_block(&hash, out)?;
                    }
                }
            }
        }
        Ok(())
    }
}
