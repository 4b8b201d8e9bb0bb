//! A hostile peer: a bare libp2p swarm speaking the node's topics and sync
//! protocol name, that sends whatever bytes a test gives it, answers the
//! node's requests as the test says, and (optionally) runs identify with a
//! protocol version of the test's choice and Kademlia, to see what the node
//! hands out.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, kad, noise, tcp, yamux};
use tinychain_node::p2p::protocol::{self, Request, Response, Status};
use tinychain_protocol::pow::Work;
use tinychain_protocol::{BlockHash, encode};
use tokio::sync::mpsc;

use super::DEADLINE;

/// Bytes in, bytes out: no checks, so a test can send anything.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(64 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res).await?;
        io.close().await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
    identify: Toggle<identify::Behaviour>,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
}

/// What the hostile peer saw.
#[derive(Debug)]
pub(crate) enum Seen {
    Connected,
    Disconnected,
    Subscribed,
    Response(Vec<u8>),
    Failed,
    DialFailed,
    Listening(Multiaddr),
    /// The node asked something (the bytes of its request).
    Request(Vec<u8>),
    /// A Kademlia walk for the closest peers ended with these.
    Closest(Vec<PeerId>),
}

/// Answers the node's requests: the response's bytes, or `None` to let the
/// request time out.
pub(crate) type Responder = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + Send>;

/// How a hostile peer presents itself.
#[derive(Default)]
pub(crate) struct Options {
    /// Run identify announcing this protocol version (none: no identify).
    pub(crate) identify: Option<String>,
    /// Run Kademlia in this mode on the network's protocol (none: no Kademlia).
    pub(crate) kad: Option<kad::Mode>,
    /// Answers the node's requests (none: a `Status` request gets the genesis
    /// status, so the node holds nothing against the peer; others no answer).
    pub(crate) responder: Option<Responder>,
}

/// Answers `Status` requests with a status at `genesis`.
fn genesis_status(genesis: BlockHash) -> Responder {
    Box::new(move |request| match encode::deserialize::<Request>(request, u64::MAX) {
        Ok(Request::Status(_)) => Some(encode::serialize(&Response::Status(Status {
            genesis,
            tip: genesis,
            height: 0,
            chainwork: Work::ZERO,
        }))),
        _ => None,
    })
}

enum Command {
    Dial(Multiaddr),
    Publish(IdentTopic, Vec<u8>),
    Request(PeerId, Vec<u8>),
    /// Add the peer at this address to Kademlia and walk for the peers closest to the id.
    FindClosest(PeerId, Multiaddr, PeerId),
}

/// A hostile peer running on the test runtime.
pub(crate) struct Hostile {
    commands: mpsc::UnboundedSender<Command>,
    seen: std_mpsc::Receiver<Seen>,
    blocks_topic: IdentTopic,
    txs_topic: IdentTopic,
    addr: Option<Multiaddr>,
}

impl Hostile {
    /// Starts a hostile peer for the network of `genesis`.
    pub(crate) fn start(rt: &tokio::runtime::Runtime, genesis: BlockHash) -> Hostile {
        Hostile::start_with(rt, genesis, Options::default())
    }

    /// Starts a hostile peer that presents itself as `options` say.
    pub(crate) fn start_with(
        rt: &tokio::runtime::Runtime,
        genesis: BlockHash,
        options: Options,
    ) -> Hostile {
        let Options { identify: identify_version, kad: kad_mode, responder } = options;
        let mut responder = responder.unwrap_or_else(|| genesis_status(genesis));
        let id = protocol::network_id(&genesis);
        let kad_protocol =
            StreamProtocol::try_from_owned(format!("/tinychain/{id}/kad/1")).expect("a name");
        let sync_protocol = protocol::sync_protocol(&id);
        let _guard = rt.enter();
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp")
            .with_behaviour(|key| {
                let config = gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .message_id_fn(|m| {
                        gossipsub::MessageId::from(
                            tinychain_protocol::hash::sha256(&m.data).to_vec(),
                        )
                    })
                    // Larger than the node's limit, so oversized messages can be sent.
                    .max_transmit_size(4 << 20)
                    .heartbeat_interval(Duration::from_millis(200))
                    .build()
                    .expect("gossip config");
                let peer_id = key.public().to_peer_id();
                let identify = identify_version.map(|version| {
                    identify::Behaviour::new(
                        identify::Config::new(version, key.public())
                            .with_agent_version("hostile".into()),
                    )
                });
                let kad = kad_mode.map(|mode| {
                    let mut kad = kad::Behaviour::with_config(
                        peer_id,
                        kad::store::MemoryStore::new(peer_id),
                        kad::Config::new(kad_protocol),
                    );
                    kad.set_mode(Some(mode));
                    kad
                });
                Behaviour {
                    identify: identify.into(),
                    kad: kad.into(),
                    gossipsub: gossipsub::Behaviour::new(
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        config,
                    )
                    .expect("gossipsub"),
                    sync: request_response::Behaviour::with_codec(
                        RawCodec,
                        [(sync_protocol, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(Duration::from_secs(10))
                            .with_max_concurrent_streams(1000),
                    ),
                }
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let peer_id = *swarm.local_peer_id();
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")).expect("listens");
        let blocks_topic = IdentTopic::new(protocol::blocks_topic(&id));
        let txs_topic = IdentTopic::new(protocol::txs_topic(&id));
        swarm.behaviour_mut().gossipsub.subscribe(&blocks_topic).expect("subscribe");
        swarm.behaviour_mut().gossipsub.subscribe(&txs_topic).expect("subscribe");
        let (commands, mut rx) = mpsc::unbounded_channel();
        let (seen_tx, seen) = std_mpsc::channel();
        rt.spawn(async move {
            loop {
                tokio::select! {
                    command = rx.recv() => match command {
                        None => break,
                        Some(Command::Dial(addr)) => {
                            if swarm.dial(addr).is_err() {
                                let _ = seen_tx.send(Seen::DialFailed);
                            }
                        }
                        Some(Command::Publish(topic, data)) => {
                            let _ = swarm.behaviour_mut().gossipsub.publish(topic, data);
                        }
                        Some(Command::Request(peer, data)) => {
                            swarm.behaviour_mut().sync.send_request(&peer, data);
                        }
                        Some(Command::FindClosest(peer, addr, target)) => {
                            if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
                                kad.add_address(&peer, addr);
                                kad.get_closest_peers(target);
                            }
                        }
                    },
                    event = swarm.select_next_some() => {
                        let seen = match event {
                            SwarmEvent::ConnectionEstablished { .. } => Seen::Connected,
                            SwarmEvent::ConnectionClosed { .. } => Seen::Disconnected,
                            SwarmEvent::OutgoingConnectionError { .. } => Seen::DialFailed,
                            SwarmEvent::NewListenAddr { address, .. } => {
                                Seen::Listening(address.with(libp2p::multiaddr::Protocol::P2p(peer_id)))
                            }
                            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(
                                gossipsub::Event::Subscribed { .. },
                            )) => Seen::Subscribed,
                            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                                request_response::Event::Message {
                                    message: request_response::Message::Response { response, .. },
                                    ..
                                },
                            )) => Seen::Response(response),
                            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                                request_response::Event::OutboundFailure { .. },
                            )) => Seen::Failed,
                            SwarmEvent::Behaviour(BehaviourEvent::Sync(
                                request_response::Event::Message {
                                    message: request_response::Message::Request { request, channel, .. },
                                    ..
                                },
                            )) => {
                                if let Some(answer) = responder(&request) {
                                    let _ = swarm.behaviour_mut().sync.send_response(channel, answer);
                                }
                                Seen::Request(request)
                            }
                            SwarmEvent::Behaviour(BehaviourEvent::Kad(
                                kad::Event::OutboundQueryProgressed {
                                    result: kad::QueryResult::GetClosestPeers(result),
                                    step,
                                    ..
                                },
                            )) if step.last => {
                                let peers = match result {
                                    Ok(ok) => ok.peers,
                                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                                };
                                Seen::Closest(peers.into_iter().map(|p| p.peer_id).collect())
                            }
                            _ => continue,
                        };
                        let _ = seen_tx.send(seen);
                    }
                }
            }
        });
        let hostile = Hostile { commands, seen, blocks_topic, txs_topic, addr: None };
        let Seen::Listening(addr) =
            hostile.expect("a listen address", |s| matches!(s, Seen::Listening(_)))
        else {
            unreachable!("matched above")
        };
        Hostile { addr: Some(addr), ..hostile }
    }

    /// Its full listen address, with `/p2p/<peer id>`.
    pub(crate) fn addr(&self) -> Multiaddr {
        self.addr.clone().expect("set at start")
    }

    /// Dials `addr` and waits until the node has subscribed to both topics.
    pub(crate) fn connect(&self, addr: &Multiaddr) {
        let _ = self.commands.send(Command::Dial(addr.clone()));
        let mut topics = 0;
        self.expect("subscriptions", |seen| {
            if let Seen::Subscribed = seen {
                topics += 1;
            }
            topics == 2
        });
    }

    /// Dials `addr` and tells whether a connection was established and stayed
    /// (`false`: refused or closed at once).
    pub(crate) fn try_connect(&self, addr: &Multiaddr) -> bool {
        let _ = self.commands.send(Command::Dial(addr.clone()));
        let mut connected = false;
        let outcome = self.next_matching(Duration::from_secs(10), |seen| match seen {
            Seen::Connected => {
                connected = true;
                false
            }
            Seen::Subscribed => connected,
            Seen::Disconnected | Seen::DialFailed => true,
            _ => false,
        });
        matches!(outcome, Some(Seen::Subscribed))
    }

    pub(crate) fn publish_block_bytes(&self, data: Vec<u8>) {
        let _ = self.commands.send(Command::Publish(self.blocks_topic.clone(), data));
    }

    pub(crate) fn publish_tx_bytes(&self, data: Vec<u8>) {
        let _ = self.commands.send(Command::Publish(self.txs_topic.clone(), data));
    }

    pub(crate) fn request(&self, peer: PeerId, data: Vec<u8>) {
        let _ = self.commands.send(Command::Request(peer, data));
    }

    /// Asks `peer` (at `addr`) over Kademlia for the peers closest to
    /// `target`, and returns what the walk found.
    pub(crate) fn find_closest(
        &self,
        peer: PeerId,
        addr: &Multiaddr,
        target: PeerId,
    ) -> Vec<PeerId> {
        let _ = self.commands.send(Command::FindClosest(peer, addr.clone(), target));
        match self.expect("the end of a Kademlia walk", |s| matches!(s, Seen::Closest(_))) {
            Seen::Closest(peers) => peers,
            _ => unreachable!("matched above"),
        }
    }

    /// Its peer id.
    pub(crate) fn peer_id(&self) -> PeerId {
        match self.addr().iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(peer)) => peer,
            _ => unreachable!("the address ends with /p2p/"),
        }
    }

    /// Waits for an event `matches` accepts; panics naming `what` after the deadline.
    pub(crate) fn expect(&self, what: &str, matches: impl FnMut(&Seen) -> bool) -> Seen {
        self.next_matching(DEADLINE, matches)
            .unwrap_or_else(|| panic!("hostile peer never saw {what}"))
    }

    /// Returns the next event `matches` accepts within `limit`.
    pub(crate) fn next_matching(
        &self,
        limit: Duration,
        mut matches: impl FnMut(&Seen) -> bool,
    ) -> Option<Seen> {
        let start = Instant::now();
        loop {
            let left = limit.checked_sub(start.elapsed())?;
            let seen = self.seen.recv_timeout(left).ok()?;
            if matches(&seen) {
                return Some(seen);
            }
        }
    }
}
