//! The miner's state as the machine sees it: running or not, whom it pays,
//! resting after a find, waiting for the clock; and blocks it finds.
//!
//! Owns the decisions about the miner threads (start, stop, pause, a new job);
//! the threads themselves are the event loop's. Must not hash or spawn.

use std::time::{Duration, Instant};

use tinychain_protocol::keys::Address;
use tinychain_protocol::{Block, BlockHash, PubkeyHash};
use tracing::{info, warn};

use super::{Config, Error, Node, Output, Time};
use crate::core::{BlockOutcome, Source};
use crate::metrics::GossipTopic;
use crate::store::Store;

/// The miner's state.
#[derive(Debug)]
pub(super) struct Mining {
    /// Threads and payee of the running miner, if it runs.
    pub(super) running: Option<(usize, PubkeyHash)>,
    /// Start it at the first tick (`--mine`).
    start: bool,
    /// Threads to start.
    threads: usize,
    /// The address to pay when none is given (`--mine-address` or the last `setmining`).
    pub(super) pay_to: Option<PubkeyHash>,
    /// The miner waits for the clock until then.
    pub(super) rests_until: Option<Instant>,
    /// The miner rests after a found block ([`Output::RestMiner`]).
    pub(super) resting: bool,
    /// How long it rests.
    rest: Duration,
    /// The miner waits for the clock; logged once per wait.
    waits: bool,
}

impl Mining {
    pub(super) fn new(config: &Config) -> Mining {
        Mining {
            running: None,
            start: config.mine && config.pay_to.is_some(),
            threads: config.threads.max(1),
            pay_to: config.pay_to,
            rests_until: None,
            resting: false,
            rest: config.miner_rest,
            waits: false,
        }
    }

    /// Starts the miner configured to run from the start, once.
    pub(super) fn start_if_configured(&mut self, out: &mut Vec<Output>) {
        if let (true, Some(pay_to)) = (std::mem::take(&mut self.start), self.pay_to) {
            info!(threads = self.threads, "mining");
            out.push(Output::StartMiner { threads: self.threads });
            self.running = Some((self.threads, pay_to));
        }
    }
}

impl<S: Store> Node<S> {
    /// Gives the miner a fresh template on the tip, unless it is resting. When
    /// a block on the tip could not be valid yet (its time would be too far
    /// ahead of the clock: see [`crate::core::Core::mining_blocked_until`]),
    /// the miner waits until it can be, and says so once.
    pub(super) fn refresh_miner(&mut self, now: Time, out: &mut Vec<Output>) {
        let Some((_, pay_to)) = self.mining.running else { return };
        if self.mining.rests_until.is_some() || self.mining.resting {
            return;
        }
        if let Some(until) = self.core.mining_blocked_until(now.unix) {
            out.push(Output::PauseMiner);
            if !self.mining.waits {
                info!(
                    limit_s = self.core.chain().params().max_future_block_time,
                    now = now.unix,
                    resumes_at = until,
                    "mining waits: the next block's time (after the median time past) \
                     would be too far ahead of the clock"
                );
                self.mining.waits = true;
            }
            self.mining.rests_until =
                Some(now.instant + Duration::from_secs(until.saturating_sub(now.unix)));
            return;
        }
        if std::mem::take(&mut self.mining.waits) {
            info!("mining resumes");
        }
        out.push(Output::MiningJob(self.core.block_template(pay_to, now.unix)));
    }

    /// A block from this node's miner: connected, published, and the miner rests.
    pub(super) fn on_found_block(
        &mut self,
        block: Block,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        let hash = block.block_hash();
        let (outcome, outputs) = self.core.handle_block(block, Source::Local, now.unix)?;
        if outcome == BlockOutcome::Accepted {
            if !self.mining.rest.is_zero() && self.mining.running.is_some() {
                out.push(Output::RestMiner(self.mining.rest));
                self.mining.resting = true;
            }
        } else {
            warn!(%hash, %outcome, "own block not accepted");
        }
        self.carry_out_own(outputs, now, out)
    }

    /// Carries out the outputs of handing the core a block of our own (mined,
    /// generated or submitted over RPC): its blocks are published once, even
    /// while syncing, since no peer can have them yet.
    pub(super) fn carry_out_own(
        &mut self,
        outputs: Vec<crate::core::Output<super::PeerId>>,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        let (relay, rest): (Vec<_>, Vec<_>) =
            outputs.into_iter().partition(|o| matches!(o, crate::core::Output::RelayBlock(_)));
        self.carry_out(rest, now, out)?;
        for output in relay {
            if let crate::core::Output::RelayBlock(hash) = output {
                if let Some(entry) = self.core.chain().index_entry(&hash)? {
                    // The origin of the block's propagation, for `tinychain-node topology`.
                    info!(%hash, height = entry.height, "block mined");
                }
                self.publish_block(&hash, out)?;
            }
        }
        Ok(())
    }

    /// Publishes a stored block, in compact form.
    pub(super) fn publish_block(
        &mut self,
        hash: &BlockHash,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        if let Some(block) = self.core.chain().block(hash)?
            && let Some(compact) = tinychain_protocol::CompactBlock::from_block(&block)
        {
            out.push(Output::Publish { topic: GossipTopic::Block, data: compact.encode() });
        }
        Ok(())
    }

    /// The address the miner pays (running or not), if one is known.
    pub(super) fn mining_address(&self) -> Option<Address> {
        let network = self.core.chain().params().network;
        self.mining
            .running
            .map(|(_, pay_to)| pay_to)
            .or(self.mining.pay_to)
            .map(|hash| Address::new(network, hash))
    }

    /// `setmining`: starts, re-targets or stops the miner.
    pub(super) fn set_mining(
        &mut self,
        on: bool,
        address: Option<Address>,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), crate::rpc::RpcError> {
        if let Some(address) = address {
            self.mining.pay_to = Some(address.pubkey_hash());
        }
        match (on, self.mining.running.take()) {
            (false, Some(_)) => {
                out.push(Output::StopMiner);
                info!("mining stopped (setmining)");
            }
            (false, None) => {}
            (true, Some((threads, running))) => {
                let pay_to = self.mining.pay_to.unwrap_or(running);
                self.mining.running = Some((threads, pay_to));
                self.refresh_miner(now, out);
            }
            (true, None) => {
                let pay_to = self.mining.pay_to.ok_or_else(|| {
                    crate::rpc::RpcError::invalid_params(
                        "the node has no mining address: give one (setmining true <address>)",
                    )
                })?;
                info!(threads = self.mining.threads, "mining (setmining)");
                out.push(Output::StartMiner { threads: self.mining.threads });
                self.mining.running = Some((self.mining.threads, pay_to));
                self.refresh_miner(now, out);
            }
        }
        Ok(())
    }
}
