//! `tinychain-node crawl`: the live network mapped from one address, like Nebula.
//!
//! A short-lived libp2p client — not a node: it keeps no chain, joins no gossip
//! topic, relays nothing, listens on nothing and does not advertise Kademlia, so
//! it enters nobody's routing table — visits the bootstrap peers and then every
//! peer they name: it dials each, reads its identify (agent, listen addresses),
//! asks its `Status` over the node's own sync protocol and codec
//! ([`crate::p2p::protocol`]), and reads its Kademlia routing table with one
//! FIND_NODE per bucket ([`keys`], [`findnode`]). The decisions are the pure
//! [`plan::Plan`]; this module only runs the swarm, within a deadline and at
//! most `--concurrency` visits at a time. [`report`] draws the result in the
//! formats of `tinychain-node topology`.

pub mod findnode;
pub mod keys;
pub mod plan;
pub mod report;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, multiaddr::Protocol, noise, ping, tcp, yamux};
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::pow::Work;

use crate::p2p::protocol::{self, Request, Response, Status, WireRequest};
use crate::topology::Format;
use crate::topology::time::Time;
use plan::{Action, Plan};
pub use report::Report;

/// The flags of `tinychain-node crawl`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The network.
    #[arg(long, default_value = "main", env = "TINYCHAIN_NETWORK")]
    pub network: Network,
    /// A peer to start from, with its peer id (/ip4/…/tcp/…/p2p/12D3KooW…); repeatable.
    #[arg(long = "bootstrap", required = true, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Seconds the whole crawl may take; peers not visited by then are reported as such.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Peers visited at a time.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Routing-table buckets asked of each peer (1 to 16).
    #[arg(long, default_value_t = keys::MAX_BUCKETS)]
    pub buckets: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// An error starting the crawl.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bootstrap address without the peer id.
    #[error(
        "bootstrap address {0} has no /p2p/<peer id>: give the full address a node logs (listening address=…/p2p/…)"
    )]
    NoPeerId(Multiaddr),
    /// libp2p refused a setting.
    #[error("crawler setup: {0}")]
    Setup(String),
}

/// The crawler's behaviours: identify, ping (so peers' pings are answered), the sync
/// protocol (Status only) and FIND_NODE.
#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    sync: request_response::Behaviour<protocol::Codec>,
    findnode: request_response::Behaviour<findnode::Codec>,
}

fn setup(e: impl std::fmt::Display) -> Error {
    Error::Setup(e.to_string())
}

fn build_swarm(network_id: &str) -> Result<Swarm<Behaviour>, Error> {
    let sync_protocol = protocol::sync_protocol(network_id);
    let kad_protocol = protocol::kad_protocol(network_id);
    let identify_version = protocol::identify_protocol(network_id);
    let builder = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(setup)?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    Ok(builder
        .with_dns()
        .map_err(setup)?
        .with_behaviour(|key| Behaviour {
            identify: identify::Behaviour::new(
                identify::Config::new(identify_version, key.public())
                    .with_agent_version(format!("tinychain-crawl/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            sync: request_response::Behaviour::with_codec(
                protocol::Codec,
                [(sync_protocol, ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(plan::VISIT_TIME),
            ),
            // Outbound only: the crawler does not claim to speak Kademlia.
            findnode: request_response::Behaviour::with_codec(
                findnode::Codec,
                [(kad_protocol, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(plan::VISIT_TIME),
            ),
        })
        .map_err(setup)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(plan::VISIT_TIME))
        .build())
}

/// The running crawl: the swarm, the plan, and the requests in flight.
struct Crawler {
    swarm: Swarm<Behaviour>,
    plan: Plan,
    keys: keys::PrefixTable,
    buckets: u32,
    status: Status,
    /// Status requests in flight (each behaviour numbers its own requests).
    statuses: HashMap<OutboundRequestId, PeerId>,
    /// FIND_NODE requests in flight.
    finds: HashMap<OutboundRequestId, PeerId>,
    /// FIND_NODE keys not yet sent, per peer.
    keys_left: HashMap<PeerId, Vec<Vec<u8>>>,
}

/// FIND_NODE requests in flight per peer: a few at a time, so that a visit opens
/// few streams on the peer's connection at once (Kademlia allows 32 per connection).
const FIND_NODE_IN_FLIGHT: usize = 4;

/// Crawls the network from the bootstrap addresses.
///
/// # Errors
///
/// A bootstrap address without a peer id, or a transport that cannot be set up.
pub async fn crawl(args: &Args) -> Result<Report, Error> {
    let params = Params::new(args.network);
    let genesis = params.genesis_hash();
    let network_id = protocol::network_id(&genesis);
    let mut seeds = Vec::new();
    for addr in &args.bootstrap {
        match addr.iter().last() {
            Some(Protocol::P2p(peer)) => seeds.push((peer, addr.clone())),
            _ => return Err(Error::NoPeerId(addr.clone())),
        }
    }
    let buckets = args.buckets.clamp(1, keys::MAX_BUCKETS);
    let work = params.genesis_block().header.bits.to_target().map_or(Work::ZERO, |t| t.to_work());
    let started = Time::from_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
    );
    let clock = Instant::now();
    let mut crawler = Crawler {
        swarm: build_swarm(&network_id)?,
        plan: Plan::new(args.concurrency, buckets + 1),
        keys: tokio::task::spawn_blocking(keys::PrefixTable::build).await.map_err(setup)?,
        buckets,
        status: Status { genesis, tip: genesis, height: 0, chainwork: work },
        statuses: HashMap::new(),
        finds: HashMap::new(),
        keys_left: HashMap::new(),
    };
    for (peer, addr) in seeds {
        crawler.plan.learn(peer, [addr]);
    }
    let deadline = clock + Duration::from_secs(args.timeout);
    let finished = crawler.run(deadline).await;
    Ok(Report {
        network: args.network.to_string(),
        network_id,
        started,
        seconds: clock.elapsed().as_secs_f64(),
        finished,
        bootstrap: args.bootstrap.iter().map(ToString::to_string).collect(),
        peers: crawler.plan.report(),
    })
}

impl Crawler {
    /// Runs until every peer found was visited (true) or the deadline (false).
    async fn run(&mut self, deadline: Instant) -> bool {
        let actions = self.plan.next(Instant::now());
        self.carry_out(actions);
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        let deadline = tokio::time::Instant::from_std(deadline);
        while !self.plan.is_finished() {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                _ = ticks.tick() => {
                    let actions = self.plan.tick(Instant::now());
                    self.carry_out(actions);
                }
                () = tokio::time::sleep_until(deadline) => return false,
            }
            let actions = self.plan.next(Instant::now());
            self.carry_out(actions);
        }
        true
    }

    fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Dial(peer, addresses) => {
                    let opts = DialOpts::peer_id(peer).addresses(addresses).build();
                    if let Err(e) = self.swarm.dial(opts) {
                        let more = self.plan.unreachable(peer, e.to_string());
                        self.carry_out(more);
                    }
                }
                Action::Query(peer) => {
                    let b = self.swarm.behaviour_mut();
                    let id = b
                        .sync
                        .send_request(&peer, WireRequest::Request(Request::Status(self.status)));
                    self.statuses.insert(id, peer);
                    let mut keys = self.keys.keys_for(&peer, self.buckets);
                    keys.reverse();
                    self.keys_left.insert(peer, keys);
                    for _ in 0..FIND_NODE_IN_FLIGHT {
                        self.send_find_node(peer);
                    }
                }
                Action::Disconnect(peer) => {
                    self.keys_left.remove(&peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
        }
    }

    /// Sends the peer's next FIND_NODE, if any is left.
    fn send_find_node(&mut self, peer: PeerId) {
        if let Some(key) = self.keys_left.get_mut(&peer).and_then(Vec::pop) {
            let id = self.swarm.behaviour_mut().findnode.send_request(&peer, key);
            self.finds.insert(id, peer);
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        let actions = match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => self.plan.connected(peer_id),
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                self.plan.unreachable(peer, error.to_string())
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => self.plan.identified(
                peer_id,
                info.agent_version,
                info.protocol_version,
                info.listen_addrs,
            ),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync(event),
            SwarmEvent::Behaviour(BehaviourEvent::Findnode(event)) => self.on_findnode(event),
            _ => Vec::new(),
        };
        self.carry_out(actions);
    }

    fn on_sync(&mut self, event: request_response::Event<WireRequest, Response>) -> Vec<Action> {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    // A peer asks our status when we connect: the genesis block.
                    let answer = match request {
                        WireRequest::Request(Request::Status(_)) => Response::Status(self.status),
                        _ => Response::Refused("a crawler has no blocks".into()),
                    };
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, answer);
                    Vec::new()
                }
                request_response::Message::Response { request_id, response } => {
                    let Some(peer) = self.statuses.remove(&request_id) else { return Vec::new() };
                    let status = match response {
                        Response::Status(s) => Some(s),
                        _ => None,
                    };
                    self.plan.status(peer, status)
                }
            },
            request_response::Event::OutboundFailure { request_id, peer, error, .. } => {
                tracing::debug!(%peer, %error, "status request failed");
                match self.statuses.remove(&request_id) {
                    Some(peer) => self.plan.status(peer, None),
                    None => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    fn on_findnode(
        &mut self,
        event: request_response::Event<Vec<u8>, Vec<findnode::Found>>,
    ) -> Vec<Action> {
        let me = *self.swarm.local_peer_id();
        let (request_id, answer) = match event {
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            } => (request_id, Some(response.into_iter().filter(|f| f.peer != me).collect())),
            request_response::Event::OutboundFailure { request_id, peer, error, .. } => {
                tracing::debug!(%peer, %error, "FIND_NODE failed");
                (request_id, None)
            }
            _ => return Vec::new(),
        };
        match self.finds.remove(&request_id) {
            Some(peer) => {
                self.send_find_node(peer);
                self.plan.found(peer, answer)
            }
            None => Vec::new(),
        }
    }
}
