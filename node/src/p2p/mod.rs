//! The peer-to-peer network on libp2p: gossip, block sync, discovery, peer discipline.
//!
//! Owns the libp2p swarm and everything about peers: the persistent identity,
//! listening and dialing (configured bootstrap multiaddrs, then Kademlia
//! discovery fed by identify), gossipsub topics for blocks and transactions with
//! validation held until the core has judged a message, the request-response
//! sync protocol ([`protocol`]), the ban list, and the metrics of all of it
//! (libp2p's own and the gossip verdicts). It makes no protocol decision: it
//! hands what peers send to the event loop as [`NetEvent`]s (gossip as bytes,
//! requests as read from the wire) and carries out the node state machine's
//! outputs (`crate::machine`), which owns scores, rate limits and verdicts. Connections are watched for liveness
//! (`liveness`, carried out in `connections`) and metered (`transport`).

pub mod bans;
mod connections;
mod liveness;
mod peers;
pub mod protocol;
pub mod ratelimit;
mod transport;

pub use peers::BAN_DURATION;
use peers::PeerMeta;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, PublishError};
use libp2p::metrics::Recorder;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, allow_block_list, connection_limits, identify, identity, kad,
    multiaddr::Protocol, ping,
};
use tinychain_protocol::BlockHash;
use tracing::{debug, info, warn};

use crate::machine::Input;
use crate::metrics::{GossipCounter, GossipTopic, Registry};
use protocol::{Codec, MAX_GOSSIP_DATA, MAX_GOSSIP_READ, Request, Response, WireRequest};

/// Settings of the network: the config file's `[p2p]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Addresses to listen on (the node fills in the network's port if empty).
    #[serde(with = "crate::serde_util::multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start and to keep re-dialing (never banned),
    /// each with `/p2p/<peer id>`.
    #[serde(with = "crate::serde_util::multiaddrs")]
    pub bootstrap: Vec<Multiaddr>,
    /// Connections kept at most.
    pub max_connections: u32,
    /// Where bans are kept across restarts (none: in memory only); the node
    /// sets it to its data directory's `banlist.json`.
    #[serde(skip)]
    pub ban_file: Option<PathBuf>,
    /// Peers the node tries to keep: below this it looks for more.
    pub target_peers: usize,
    /// Discover peers on the local network with mDNS (needs the `mdns` build feature).
    pub mdns: bool,
    /// A connection that received nothing for this long is closed; pings run
    /// every quarter of it (docs/p2p.md, "Liveness"). Bitcoin Core's `-peertimeout`.
    #[serde(rename = "peer_timeout_secs", with = "crate::serde_util::secs")]
    pub peer_timeout: Duration,
    /// The node's identity key (libp2p protobuf encoding), created if missing
    /// (none: `identity.key` in the network's data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// The per-peer limit on incoming sync requests.
    pub rate_limit: ratelimit::Config,
}

/// The default [`Config::peer_timeout`]: a dead link is closed within 21 s of
/// its last byte (the check runs every second).
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            max_connections: 50,
            ban_file: None,
            target_peers: 8,
            mdns: false,
            peer_timeout: DEFAULT_PEER_TIMEOUT,
            identity_file: None,
            rate_limit: ratelimit::Config::default(),
        }
    }
}

/// mDNS when built with it; otherwise a behaviour that never does anything.
#[cfg(feature = "mdns")]
type Mdns = libp2p::mdns::tokio::Behaviour;
#[cfg(not(feature = "mdns"))]
type Mdns = libp2p::swarm::dummy::Behaviour;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The libp2p behaviours of a node. Those that can deny connections come first.
#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<Codec>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: libp2p::swarm::behaviour::toggle::Toggle<Mdns>,
}

/// What the network hands to the event loop: an input for the node's state
/// machine, or a request whose answer channel the event loop keeps.
#[derive(Debug)]
pub enum NetEvent {
    /// Anything but a request: handed to the machine as it is.
    Input(Input),
    /// A peer asks something; answer with [`Network::respond`].
    Request {
        /// The peer.
        peer: PeerId,
        /// What it asks, as read from the wire.
        request: WireRequest,
        /// Where the answer goes.
        channel: ResponseChannel<Response>,
    },
}

impl From<Input> for NetEvent {
    fn from(input: Input) -> NetEvent {
        NetEvent::Input(input)
    }
}

/// The running network.
pub struct Network {
    swarm: Swarm<Behaviour>,
    blocks_topic: IdentTopic,
    txs_topic: IdentTopic,
    /// Gossip waiting for a peer to subscribe before it can be published.
    unpublished: Vec<(IdentTopic, Vec<u8>)>,
    bootstrap_peers: HashSet<PeerId>,
    /// Our requests in flight, kept to pair each answer with its question.
    pending: HashMap<OutboundRequestId, (PeerId, Request)>,
    network_id: String,
    /// Events decided with another (a malformed response fails its request too).
    queued: std::collections::VecDeque<NetEvent>,
    peers: HashMap<PeerId, PeerMeta>,
    target_peers: usize,
    /// Gossip mesh members per topic at the last look, to log joins and leaves.
    mesh: HashMap<String, BTreeSet<PeerId>>,
    bans: bans::BanList,
    /// libp2p's own metrics, recorded from swarm and behaviour events.
    metrics: libp2p::metrics::Metrics,
    /// Gossip messages by topic and verdict.
    gossip_verdicts: GossipCounter,
    /// Every connection, watched for liveness.
    links: liveness::Links,
    /// New connections' meters, until their connection is named.
    meters: transport::Pending,
    /// When each bootstrap address may be dialed next.
    redial: liveness::Redial,
    /// Runs the liveness rules.
    liveness_check: tokio::time::Interval,
    /// The node is stopping: no dials, and new connections are closed.
    stopping: bool,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("peer_id", self.swarm.local_peer_id()).finish()
    }
}

/// An error setting up the network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The identity file cannot be read or written.
    #[error("node identity {path}: {detail}")]
    Identity {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// libp2p refused a setting or a listen address.
    #[error("network setup: {0}")]
    Setup(String),
}

#[cfg(feature = "mdns")]
fn mdns_behaviour(peer_id: PeerId) -> Result<Mdns, Box<dyn std::error::Error + Send + Sync>> {
    Ok(libp2p::mdns::tokio::Behaviour::new(libp2p::mdns::Config::default(), peer_id)?)
}

#[cfg(not(feature = "mdns"))]
fn mdns_behaviour(_: PeerId) -> Result<Mdns, Box<dyn std::error::Error + Send + Sync>> {
    Err("this build has no mDNS: build tinychain-node with `--features mdns`".into())
}

fn setup(e: impl std::fmt::Display) -> NetError {
    NetError::Setup(e.to_string())
}

/// The identity key's file name in the network's data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Loads the node's ed25519 identity from `path`, creating it (mode 0600) if missing,
/// so the peer id survives restarts.
///
/// # Errors
///
/// The file cannot be read, written, or decoded.
pub fn load_or_create_identity(path: &Path) -> Result<identity::Keypair, NetError> {
    let err = |detail: String| NetError::Identity { path: path.display().to_string(), detail };
    match std::fs::read(path) {
        Ok(bytes) => identity::Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| err(format!("not a valid key file: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = identity::Keypair::generate_ed25519();
            let bytes = keypair.to_protobuf_encoding().map_err(|e| err(e.to_string()))?;
            match write_private(path, &bytes) {
                Ok(()) => Ok(keypair),
                // Another process made it meanwhile: that one is the identity.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_identity(path)
                }
                Err(e) => Err(err(e.to_string())),
            }
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn message_id(message: &gossipsub::Message) -> MessageId {
    MessageId::from(tinychain_protocol::hash::sha256(&message.data).to_vec())
}

impl Network {
    /// Builds the swarm, subscribes to the topics, listens and dials the bootstrap peers.
    /// The network's metrics (libp2p's: `libp2p_*`, and the gossip verdicts) go in `registry`.
    ///
    /// # Errors
    ///
    /// A bad setting or listen address.
    pub fn start(
        keypair: identity::Keypair,
        config: &Config,
        genesis: BlockHash,
        registry: &mut Registry,
    ) -> Result<Network, NetError> {
        let id = protocol::network_id(&genesis);
        let gossip_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .message_id_fn(message_id)
            .max_transmit_size(MAX_GOSSIP_READ)
            .mesh_n(4)
            .mesh_n_low(2)
            .mesh_n_high(8)
            .mesh_outbound_min(1)
            .heartbeat_interval(Duration::from_secs(1))
            .build()
            .map_err(setup)?;
        let sync_protocol = protocol::sync_protocol(&id);
        let liveness = liveness::Config { peer_timeout: config.peer_timeout };
        let kad_protocol = protocol::kad_protocol(&id);
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            .with_max_established_per_peer(Some(2))
            .with_max_pending_incoming(Some(config.max_connections));
        let meters = transport::Pending::default();
        let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
        // QUIC (opt-in at build time) beside TCP: it serves the `/udp/…/quic-v1`
        // addresses, listened on only when configured. DNS wraps both. TCP is
        // built here, with a meter on each connection (see `transport`).
        #[cfg(feature = "quic")]
        let builder = builder.with_quic();
        let tcp_meters = meters.clone();
        let mut swarm = builder
            .with_other_transport(|key| {
                transport::tcp(key, tcp_meters)
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            })
            .map_err(setup)?
            .with_dns()
            .map_err(setup)?
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key| {
                let peer_id = key.public().to_peer_id();
                let gossipsub = gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?
                .with_metrics(
                    registry
                        .sub_registry_with_prefix("libp2p")
                        .sub_registry_with_prefix("gossipsub"),
                    gossipsub::MetricsConfig::default(),
                );
                let sync = request_response::Behaviour::with_codec(
                    Codec,
                    [(sync_protocol, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30))
                        .with_max_concurrent_streams(32),
                );
                let mut kad = kad::Behaviour::with_config(
                    peer_id,
                    kad::store::MemoryStore::new(peer_id),
                    kad::Config::new(kad_protocol),
                );
                kad.set_mode(Some(kad::Mode::Server));
                let identify = identify::Behaviour::new(
                    identify::Config::new(protocol::identify_protocol(&id), key.public())
                        .with_agent_version(format!(
                            "tinychain-node/{}",
                            env!("CARGO_PKG_VERSION")
                        )),
                );
                let mdns = if config.mdns { Some(mdns_behaviour(peer_id)?) } else { None };
                Ok(Behaviour {
                    mdns: mdns.into(),
                    limits: connection_limits::Behaviour::new(limits),
                    blocked: Default::default(),
                    gossipsub,
                    sync,
                    kad,
                    identify,
                    ping: ping::Behaviour::new(
                        ping::Config::new()
                            .with_interval(liveness.ping_interval())
                            .with_timeout(liveness.ping_timeout()),
                    ),
                })
            })
            .map_err(setup)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let blocks_topic = IdentTopic::new(protocol::blocks_topic(&id));
        let txs_topic = IdentTopic::new(protocol::txs_topic(&id));
        swarm.behaviour_mut().gossipsub.subscribe(&blocks_topic).map_err(setup)?;
        swarm.behaviour_mut().gossipsub.subscribe(&txs_topic).map_err(setup)?;
        for addr in &config.listen {
            let quic = addr.iter().any(|p| matches!(p, Protocol::QuicV1));
            if quic && cfg!(not(feature = "quic")) {
                return Err(setup(format!(
                    "listen address {addr}: this build has no QUIC: build tinychain-node \
                     with `--features quic`"
                )));
            }
            swarm
                .listen_on(addr.clone())
                .map_err(|e| setup(format!("listen address {addr}: {e}")))?;
        }
        let mut network = Network {
            swarm,
            blocks_topic,
            txs_topic,
            unpublished: Vec::new(),
            bootstrap_peers: HashSet::new(),
            pending: HashMap::new(),
            network_id: id,
            queued: std::collections::VecDeque::new(),
            peers: HashMap::new(),
            target_peers: config.target_peers,
            mesh: HashMap::new(),
            bans: match &config.ban_file {
                Some(path) => bans::BanList::load(path, unix_now()).unwrap_or_else(|e| {
                    warn!(error = %e, "starting with an empty ban list");
                    bans::BanList::empty(Some(path))
                }),
                None => bans::BanList::empty(None),
            },
            metrics: libp2p::metrics::Metrics::new(registry),
            gossip_verdicts: GossipCounter::register(registry),
            links: connections::links(config.peer_timeout),
            meters,
            redial: liveness::Redial::new(&config.bootstrap, Instant::now()),
            liveness_check: {
                let mut check = tokio::time::interval(connections::LIVENESS_CHECK);
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                check
            },
            stopping: false,
        };
        let banned: Vec<PeerId> = network.bans.iter().map(|(p, _)| *p).collect();
        for peer in banned {
            network.swarm.behaviour_mut().blocked.block_peer(peer);
            network.swarm.behaviour_mut().kad.remove_peer(&peer);
        }
        for addr in &config.bootstrap {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                network.bootstrap_peers.insert(peer);
                network.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
        }
        network.redial(Instant::now());
        let _ = network.swarm.behaviour_mut().kad.bootstrap();
        Ok(network)
    }

    /// Returns this node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Returns the connected peers.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.swarm.connected_peers().copied().collect()
    }

    /// Returns the number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.swarm.connected_peers().count()
    }

    /// Publishes on a topic (a compact block or a transaction, encoded).
    pub fn publish(&mut self, topic: GossipTopic, data: Vec<u8>) {
        let topic = match topic {
            GossipTopic::Block => self.blocks_topic.clone(),
            GossipTopic::Tx => self.txs_topic.clone(),
        };
        self.publish_on(topic, data);
    }

    fn publish_on(&mut self, topic: IdentTopic, data: Vec<u8>) {
        // gossipsub would send up to MAX_GOSSIP_READ; peers read no more than
        // MAX_GOSSIP_SIZE, and judge no payload over MAX_GOSSIP_DATA valid.
        if data.len() > MAX_GOSSIP_DATA {
            warn!(bytes = data.len(), %topic, "not publishing a message over the gossip limit");
            return;
        }
        match self.swarm.behaviour_mut().gossipsub.publish(topic.clone(), data.clone()) {
            Ok(_) | Err(PublishError::Duplicate) => {}
            Err(PublishError::NoPeersSubscribedToTopic) => {
                // Kept until a peer subscribes; bounded so a long isolation cannot grow it.
                if self.unpublished.len() >= 64 {
                    self.unpublished.remove(0);
                }
                self.unpublished.push((topic, data));
            }
            Err(e) => warn!(error = %e, "gossip publish failed"),
        }
    }

    /// Reports the core's verdict on a gossip message on `topic`: forward, drop,
    /// or drop and penalise.
    pub fn report(
        &mut self,
        topic: GossipTopic,
        id: &MessageId,
        from: &PeerId,
        acceptance: MessageAcceptance,
    ) {
        self.gossip_verdicts.count(topic, &acceptance);
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(id, from, acceptance);
    }

    /// Sends a request to a peer.
    pub fn request(&mut self, peer: PeerId, request: Request) {
        let sync = &mut self.swarm.behaviour_mut().sync;
        let id = sync.send_request(&peer, WireRequest::Request(request.clone()));
        self.pending.insert(id, (peer, request));
    }

    /// Answers a peer's request.
    pub fn respond(&mut self, channel: ResponseChannel<Response>, response: Response) {
        // The peer may have gone or timed out: nothing to do then.
        let _ = self.swarm.behaviour_mut().sync.send_response(channel, response);
    }

    /// Drives the swarm, and the liveness checks, until something for the
    /// event loop happens.
    pub async fn next_event(&mut self) -> NetEvent {
        if let Some(event) = self.queued.pop_front() {
            return event;
        }
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    if let Some(event) = self.handle_swarm_event(event) {
                        return event;
                    }
                }
                _ = self.liveness_check.tick() => self.check_liveness(),
            }
        }
    }

    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Option<NetEvent> {
        self.metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with(Protocol::P2p(self.local_peer_id()));
                info!(address = %full, "listening");
                None
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_established(peer_id, connection_id, &endpoint, num_established),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                cause,
            } => self.on_closed(peer_id, connection_id, &endpoint, num_established, cause.as_ref()),
            SwarmEvent::Behaviour(event) => self.handle_behaviour_event(event),
            _ => None,
        }
    }

    fn handle_behaviour_event(&mut self, event: BehaviourEvent) -> Option<NetEvent> {
        match &event {
            BehaviourEvent::Gossipsub(e) => self.metrics.record(e),
            BehaviourEvent::Identify(e) => self.metrics.record(e),
            BehaviourEvent::Kad(e) => self.metrics.record(e),
            BehaviourEvent::Ping(e) => self.metrics.record(e),
            _ => {}
        }
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, &message),
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                info!(peer = %peer_id, %topic, "peer subscribed");
                let waiting = std::mem::take(&mut self.unpublished);
                for (topic, data) in waiting {
                    self.publish_on(topic, data);
                }
                None
            }
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request { request, channel, .. } => {
                        Some(NetEvent::Request { peer, request, channel })
                    }
                    request_response::Message::Response { request_id, response } => {
                        let (_, request) = self.pending.remove(&request_id)?;
                        Some(Input::Response { peer, request, response }.into())
                    }
                }
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                peer,
                error,
                request_id,
                ..
            }) => {
                debug!(%peer, %error, "sync request failed");
                let failed = self
                    .pending
                    .remove(&request_id)
                    .map(|(_, request)| Input::RequestFailed { peer, request }.into());
                if let request_response::OutboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    let reason = format!("malformed or oversized response: {e}");
                    self.queued.extend(failed);
                    return Some(Input::Misbehaved { peer, reason }.into());
                }
                failed
            }
            BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer, error, ..
            }) => {
                // Bad bytes arrive as `WireRequest::Malformed`; this is the
                // stream failing (closed, timed out, over the stream limit).
                debug!(%peer, %error, "sync request from peer failed");
                None
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let listen: Vec<String> =
                    info.listen_addrs.iter().map(ToString::to_string).collect();
                info!(peer = %peer_id, agent = %info.agent_version, protocol = %info.protocol_version, listen = ?listen, "identify received");
                if let Some(meta) = self.peers.get_mut(&peer_id) {
                    meta.agent = Some(info.agent_version.clone());
                }
                // Another network's addresses are not learnt (the machine bans it).
                if info.protocol_version == protocol::identify_protocol(&self.network_id) {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                }
                let protocol_version = info.protocol_version;
                Some(Input::PeerIdentified { peer: peer_id, protocol_version }.into())
            }
            BehaviourEvent::Ping(event) => {
                self.on_ping(event);
                None
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                if self.bans.contains(&peer) {
                    // Learnt again (mDNS, say): never handed out in FIND_NODE answers.
                    self.swarm.behaviour_mut().kad.remove_peer(&peer);
                } else if !self.swarm.is_connected(&peer) && self.peer_count() < self.target_peers {
                    let _ = self.swarm.dial(peer);
                }
                None
            }
            #[cfg(feature = "mdns")]
            BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    info!(%peer, %addr, "found on the local network (mDNS)");
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
                None
            }
            _ => None,
        }
    }
}

impl Network {
    /// Hands a gossip message from `from` (the peer that forwarded it) to the
    /// event loop, undecoded; a topic not ours is ignored here.
    fn on_gossip(
        &mut self,
        from: PeerId,
        id: MessageId,
        message: &gossipsub::Message,
    ) -> Option<NetEvent> {
        let topic = if message.topic == self.blocks_topic.hash() {
            GossipTopic::Block
        } else if message.topic == self.txs_topic.hash() {
            GossipTopic::Tx
        } else {
            // Not a topic of ours (we subscribe to none other): not counted.
            let gossip = &mut self.swarm.behaviour_mut().gossipsub;
            gossip.report_message_validation_result(&id, &from, MessageAcceptance::Ignore);
            return None;
        };
        Some(Input::Gossip { from, id, topic, data: message.data.clone() }.into())
    }
}
