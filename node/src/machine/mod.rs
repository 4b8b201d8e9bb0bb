//! The node as one pure state machine: every protocol decision, and nothing else.
//!
//! Owns the [`Core`] (chain, mempool, orphans), the headers-first downloader
//! ([`Sync`]), what is known of each peer (its chain status, its score, its
//! request budget), the relay rules (which gossip to forward, which blocks to
//! publish), the compact blocks waiting for their whole form, the miner's
//! state and the RPC dispatch. It takes an [`Input`] and the [`Time`] and
//! returns [`Output`]s; it reads no clock, touches no socket, spawns nothing
//! and knows no libp2p handle, so a test of a decision needs no network and a
//! simulator can run many machines in one process (`docs/architecture.md`).
//!
//! The event loop (`crate::node`) turns the swarm, the RPC socket, the miner
//! threads and the timers into inputs, and carries out every output the same
//! way whatever input produced it.

mod gossip;
mod mining;
mod peers;
mod requests;
mod rpc;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use serde_json::Value;
use tinychain_protocol::{Block, BlockHash, PubkeyHash};

pub use gossip::{MAX_INCOMPLETE, MAX_ORPHAN_FETCH};
pub use libp2p::PeerId;
pub use peers::{BAN_SCORE, INVALID_PENALTY, MAX_REMEMBERED_SCORES, SCORE_DECAY};

use crate::core::{self, Core};
use crate::metrics::GossipTopic;
use crate::p2p::protocol::{Request, Response, Status, WireRequest};
use crate::p2p::ratelimit::{self, RateLimiter};
use crate::rpc::RpcError;
use crate::rpc::table::Command;
use crate::store::{Store, StoreError};
use crate::sync::{self, Sync};
use crate::template::BlockTemplate;

/// How often the miner's template is rebuilt to pick up new transactions.
pub const TEMPLATE_REFRESH: Duration = Duration::from_secs(5);
/// How often scores fade, peers' statuses are refreshed and sync progress is logged.
pub const PEER_MAINTENANCE: Duration = Duration::from_secs(10);

/// The time, as the event loop (or a simulator) reads it: the machine reads no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// Unix time in seconds (block times, mempool expiry, bans).
    pub unix: u64,
    /// A monotonic instant (request timeouts, rate limits, rests).
    pub instant: Instant,
}

impl Time {
    /// Makes a time from both clocks.
    pub fn new(unix: u64, instant: Instant) -> Time {
        Time { unix, instant }
    }

    /// The time `by` later on both clocks.
    pub fn after(self, by: Duration) -> Time {
        Time { unix: self.unix + by.as_secs(), instant: self.instant + by }
    }
}

/// Identifies one inbound sync request until it is answered ([`Output::Respond`]).
pub type InboundId = u64;
/// Identifies one RPC call until it is answered ([`Output::Reply`]).
pub type RpcId = u64;

/// What the event loop learnt from the swarm or the host, in the machine's terms.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Each connected peer's connection facts (`getpeerinfo`), without chain
    /// status, score or sync figures, which the machine adds.
    pub peers: Vec<(PeerId, Value)>,
    /// The node's network facts (`getnetworkinfo`).
    pub network: Value,
    /// Hashes the miner threads tried so far.
    pub hashes: u64,
}

/// Something that happened, for the machine to decide on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Input {
    /// Time passed: expiry, sync timeouts, periodic status refreshes, the
    /// miner's rest. The event loop sends one at least every second and at
    /// [`Node::next_wake`].
    Tick,
    /// A peer's first connection opened.
    PeerConnected(PeerId),
    /// A peer's last connection closed.
    PeerDisconnected(PeerId),
    /// A peer said which protocol it speaks (libp2p identify).
    PeerIdentified {
        /// The peer.
        peer: PeerId,
        /// Its identify protocol version.
        protocol_version: String,
    },
    /// A peer misbehaved in a way only the transport sees (a response that
    /// does not decode or is oversized).
    Misbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
    /// A gossip message arrived, as bytes; answer with [`Output::GossipVerdict`].
    Gossip {
        /// The peer that forwarded it.
        from: PeerId,
        /// The gossip message id.
        id: MessageId,
        /// Its topic.
        topic: GossipTopic,
        /// Its payload.
        data: Vec<u8>,
    },
    /// A peer asks something; the machine always answers with one [`Output::Respond`].
    Request {
        /// The peer.
        peer: PeerId,
        /// Pairs the answer with the request.
        id: InboundId,
        /// What it asks, as read from the wire.
        request: WireRequest,
    },
    /// A peer answered a request the machine sent.
    Response {
        /// The peer.
        peer: PeerId,
        /// What was asked.
        request: Request,
        /// The answer.
        response: Response,
    },
    /// A request the machine sent failed (timeout, disconnect, refused stream).
    RequestFailed {
        /// The peer.
        peer: PeerId,
        /// What was asked.
        request: Request,
    },
    /// An RPC call; answered with one [`Output::Reply`].
    Rpc {
        /// Pairs the answer with the call.
        id: RpcId,
        /// The call, parsed.
        command: Command,
        /// The swarm's and the miner's facts the answer shows ([`Command::reads_host`]).
        host: Host,
    },
    /// The miner found a block.
    FoundBlock(Block),
    /// The rest asked for with [`Output::RestMiner`] is over.
    MinerRested,
}

/// Something for the event loop to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Publish on a gossip topic.
    Publish {
        /// The topic.
        topic: GossipTopic,
        /// The payload (a compact block or a transaction, encoded).
        data: Vec<u8>,
    },
    /// The verdict on a gossip message: forward it, drop it, or drop it and
    /// hold it against its sender in gossipsub's own score.
    GossipVerdict {
        /// The topic.
        topic: GossipTopic,
        /// The message.
        id: MessageId,
        /// The peer that forwarded it.
        from: PeerId,
        /// The verdict.
        acceptance: MessageAcceptance,
    },
    /// Send a sync request to a peer; its answer comes back as [`Input::Response`].
    SendRequest {
        /// The peer.
        peer: PeerId,
        /// The request.
        request: Request,
    },
    /// Answer an inbound request.
    Respond {
        /// The request ([`Input::Request`]'s id).
        id: InboundId,
        /// The answer.
        response: Response,
    },
    /// Close the connections to a peer (it may come back).
    Disconnect {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// A peer's score fell (log it; a [`Output::Ban`] follows when it fell too far).
    Penalise {
        /// The peer.
        peer: PeerId,
        /// Its score now.
        score: i32,
        /// What it did.
        reason: String,
    },
    /// Ban a peer (disconnect it and refuse it for `p2p::BAN_DURATION`).
    Ban {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The answer to an RPC call.
    Reply {
        /// The call ([`Input::Rpc`]'s id).
        id: RpcId,
        /// The answer.
        result: Result<Value, RpcError>,
    },
    /// Start the miner threads (they then wait for a [`Output::MiningJob`]).
    StartMiner {
        /// How many.
        threads: usize,
    },
    /// Stop the miner threads.
    StopMiner,
    /// Give the miner a new template.
    MiningJob(BlockTemplate),
    /// Pause the miner (it waits for the clock).
    PauseMiner,
    /// Pause the miner for this long after the block it found connected,
    /// then send [`Input::MinerRested`] (the rest counts from when the event
    /// loop carries this out, after the connect, so blocks on the tip are at
    /// least this far apart).
    RestMiner(Duration),
    /// The active tip moved (for the metrics).
    TipChanged {
        /// Blocks connected on the way.
        connected: usize,
        /// Blocks disconnected on the way.
        disconnected: usize,
        /// Input signatures not checked again.
        signatures_cached: usize,
    },
    /// The `stop` RPC: end the event loop.
    Stop,
}

/// Settings of the machine.
#[derive(Debug, Clone)]
pub struct Config {
    /// The core's parts.
    pub core: core::Config,
    /// The downloader.
    pub sync: sync::Config,
    /// The per-peer limit on incoming sync requests.
    pub rate_limit: ratelimit::Config,
    /// Mine from the start.
    pub mine: bool,
    /// Who the coinbase pays.
    pub pay_to: Option<PubkeyHash>,
    /// Miner threads to start.
    pub threads: usize,
    /// After finding a block the miner rests this long (zero: never).
    pub miner_rest: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            core: core::Config::default(),
            sync: sync::Config::default(),
            rate_limit: ratelimit::Config::default(),
            mine: false,
            pay_to: None,
            threads: 1,
            miner_rest: Duration::ZERO,
        }
    }
}

/// A machine failure the node cannot survive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the machine knows of a connected peer.
#[derive(Debug, Clone, Default)]
struct Peer {
    /// The chain it last claimed.
    status: Option<Status>,
    /// Requests of ours it has not answered yet.
    waiting: usize,
}

/// The node's state machine.
#[derive(Debug)]
pub struct Node<S: Store> {
    core: Core<S, PeerId>,
    sync: Sync<PeerId>,
    /// Connected peers.
    peers: BTreeMap<PeerId, Peer>,
    /// Scores lowered by misbehaviour (see `peers`).
    scores: HashMap<PeerId, i32>,
    /// Each peer's budget of inbound requests.
    limiter: RateLimiter<PeerId>,
    /// The identify protocol version peers of this network speak.
    identify_protocol: String,
    /// Gossiped compact blocks held for their verdict while the whole block is
    /// fetched from their sender (at most `gossip::MAX_INCOMPLETE`).
    incomplete: HashMap<BlockHash, (MessageId, PeerId)>,
    mining: mining::Mining,
    /// Sync progress for the log: when and at what height it was last reported.
    progress: Option<(Instant, u32)>,
    /// When the next periodic work is due.
    next_maintenance: Option<Instant>,
    next_refresh: Option<Instant>,
}

impl<S: Store> Node<S> {
    /// Makes the machine around an opened core. Emits nothing: the first
    /// [`Input::Tick`] starts the miner if `config.mine`.
    pub fn new(core: Core<S, PeerId>, config: Config) -> Node<S> {
        let identify_protocol = crate::p2p::protocol::identify_protocol(
            &crate::p2p::protocol::network_id(&core.chain().params().genesis_hash()),
        );
        Node {
            core,
            sync: Sync::new(config.sync.clone()),
            peers: BTreeMap::new(),
            scores: HashMap::new(),
            limiter: RateLimiter::new(config.rate_limit),
            identify_protocol,
            incomplete: HashMap::new(),
            mining: mining::Mining::new(&config),
            progress: None,
            next_maintenance: None,
            next_refresh: None,
        }
    }

    /// Opens the core on `store` and makes the machine around it.
    ///
    /// # Errors
    ///
    /// The store fails or is inconsistent.
    pub fn open(
        store: S,
        params: tinychain_protocol::params::Params,
        config: Config,
        now: Time,
    ) -> Result<Node<S>, crate::chain::OpenError> {
        let core = Core::open(store, params, config.core.clone(), now.unix)?;
        Ok(Node::new(core, config))
    }

    /// Handles one input at `now`; returns what to do, in order.
    ///
    /// # Errors
    ///
    /// Only store failures, which the node cannot survive.
    pub fn handle(&mut self, now: Time, input: Input) -> Result<Vec<Output>, Error> {
        let mut out = Vec::new();
        match input {
            Input::Tick => self.on_tick(now, &mut out)?,
            Input::PeerConnected(peer) => self.on_connected(peer, now, &mut out),
            Input::PeerDisconnected(peer) => {
                self.on_disconnected(peer);
                self.run_sync(now, &mut out)?;
            }
            Input::PeerIdentified { peer, protocol_version } => {
                self.on_identified(peer, &protocol_version, &mut out);
            }
            Input::Misbehaved { peer, reason } => self.penalise(peer, &reason, &mut out),
            Input::Gossip { from, id, topic, data } => {
                self.on_gossip(from, id, topic, &data, now, &mut out)?;
            }
            Input::Request { peer, id, request } => {
                self.on_request(peer, id, request, now, &mut out)?
            }
            Input::Response { peer, request, response } => {
                self.answered(&peer);
                self.on_response(peer, request, response, now, &mut out)?;
                self.run_sync(now, &mut out)?;
            }
            Input::RequestFailed { peer, request } => {
                self.answered(&peer);
                self.request_failed(peer, &request, now, &mut out);
                self.run_sync(now, &mut out)?;
            }
            Input::Rpc { id, command, host } => {
                let result = self.on_rpc(&command, &host, now, &mut out);
                out.push(Output::Reply { id, result });
            }
            Input::FoundBlock(block) => self.on_found_block(block, now, &mut out)?,
            Input::MinerRested => {
                self.mining.resting = false;
                self.refresh_miner(now, &mut out);
            }
        }
        Ok(out)
    }

    /// The next instant the machine wants an [`Input::Tick`] at, besides the
    /// every-second one (when the miner may go on after waiting for the clock).
    pub fn next_wake(&self) -> Option<Instant> {
        self.mining.rests_until
    }

    /// Returns the core (chain, mempool) for reading.
    pub fn core(&self) -> &Core<S, PeerId> {
        &self.core
    }

    /// Returns the downloader for reading.
    pub fn sync(&self) -> &Sync<PeerId> {
        &self.sync
    }

    /// Saves the mempool (at a clean stop).
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn save_mempool(&mut self) -> Result<(), StoreError> {
        self.core.save_mempool()
    }

    /// Returns the connected peers, in order.
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    /// Returns the last status `peer` sent, if it is connected and sent one.
    pub fn peer_status(&self, peer: &PeerId) -> Option<&Status> {
        self.peers.get(peer).and_then(|p| p.status.as_ref())
    }

    /// Returns `peer`'s score (0: nothing held against it).
    pub fn score(&self, peer: &PeerId) -> i32 {
        self.scores.get(peer).copied().unwrap_or(0)
    }

    /// Returns the greatest height a connected peer claims (0: none).
    pub fn best_peer_height(&self) -> u32 {
        self.peers.values().filter_map(|p| p.status.map(|s| s.height)).max().unwrap_or(0)
    }

    /// Tells whether the miner runs (and how many threads it has).
    pub fn miner_threads(&self) -> Option<usize> {
        self.mining.running.map(|(threads, _)| threads)
    }

    /// Tells whether the node knows of a chain with more work than its tip
    /// (from headers or peers' claims): initial block download or catch-up.
    pub fn is_syncing(&self) -> bool {
        let chain = self.core.chain();
        let ours = chain.tip_entry().chainwork;
        chain.index().best_header().is_some_and(|(_, e)| e.chainwork > ours)
            || self.sync.best_unknown_claim().is_some_and(|w| w > ours)
    }

    /// This node's status, as sent to peers.
    fn status(&self) -> Status {
        let chain = self.core.chain();
        Status {
            genesis: chain.params().genesis_hash(),
            tip: chain.tip(),
            height: chain.height(),
            chainwork: chain.tip_entry().chainwork,
        }
    }

    /// Handles the passing of time: the core's expiry and the downloader's
    /// timeouts every tick; scores, statuses and the miner's template when due.
    fn on_tick(&mut self, now: Time, out: &mut Vec<Output>) -> Result<(), Error> {
        self.core.tick(now.unix);
        if self.mining.rests_until.is_some_and(|until| until <= now.instant) {
            self.mining.rests_until = None;
            self.refresh_miner(now, out);
        }
        self.run_sync(now, out)?;
        if self.next_refresh.is_none_or(|at| at <= now.instant) {
            self.next_refresh = Some(now.instant + TEMPLATE_REFRESH);
            self.mining.start_if_configured(out);
            self.refresh_miner(now, out);
        }
        if self.next_maintenance.is_none_or(|at| at <= now.instant) {
            self.next_maintenance = Some(now.instant + PEER_MAINTENANCE);
            self.decay_scores();
            // Refresh every peer's status: a peer that got ahead (after a
            // partition, or while we were busy) is noticed and synced from.
            let idle: Vec<PeerId> =
                self.peers.iter().filter(|(_, p)| p.waiting == 0).map(|(id, _)| *id).collect();
            for peer in idle {
                let ask = self.sync.ask_status(peer, now.instant);
                self.execute(ask.into_iter().collect(), out);
            }
            self.report_progress(now);
        }
        Ok(())
    }

    /// Carries out the downloader's decisions.
    fn execute(&mut self, actions: Vec<sync::Action<PeerId>>, out: &mut Vec<Output>) {
        for action in actions {
            match action {
                sync::Action::GetHeaders { peer, locator } => {
                    tracing::debug!(%peer, "requesting headers");
                    self.send(peer, Request::GetHeaders { locator }, out);
                }
                sync::Action::GetBlocks { peer, hashes } => {
                    self.send(peer, Request::GetBlocks(hashes), out);
                }
                sync::Action::GetStatus { peer } => {
                    let status = self.status();
                    self.send(peer, Request::Status(status), out);
                }
                sync::Action::Drop { peer, reason } => {
                    out.push(Output::Disconnect { peer, reason })
                }
            }
        }
    }

    /// Sends a request, counting it as unanswered.
    fn send(&mut self, peer: PeerId, request: Request, out: &mut Vec<Output>) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.waiting += 1;
        }
        out.push(Output::SendRequest { peer, request });
    }

    /// A request to `peer` was answered or failed.
    fn answered(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.waiting = p.waiting.saturating_sub(1);
        }
    }
}
