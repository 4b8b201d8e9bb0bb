//! A hostile peer: a bare libp2p swarm speaking the node's topics and sync
//! protocol name, that sends whatever bytes a test gives it.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, noise, tcp, yamux};
use tinychain_node::p2p::protocol;
use tinychain_protocol::BlockHash;
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
}

enum Command {
    Dial(Multiaddr),
    Publish(IdentTopic, Vec<u8>),
    Request(PeerId, Vec<u8>),
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
        let id = protocol::network_id(&genesis);
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
                Behaviour {
                    gossipsub: gossipsub::Behaviour::new(
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        config,
                    )
                    .expect("gossipsub"),
                    sync: request_response::Behaviour::with_codec(
                        RawCodec,
                        [(sync_protocol, ProtocolSupport::Full)],
                        request_response::Config::default()
                            .with_request_timeout(Duration::from_secs(20))
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
