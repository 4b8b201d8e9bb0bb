//! What the network knows of its peers, and how it disciplines them.
//!
//! Owns the per-peer connection facts shown by `getpeerinfo` (address,
//! direction, time connected, ping, agent, mesh membership; the node state
//! machine adds chain status, score and sync figures), bans (temporary,
//! persisted, never for configured bootstrap peers; the machine decides
//! them), the top-up towards the target peer count, and the log lines from
//! which an operator draws the topology.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use tracing::{debug, info, warn};

use super::{Network, unix_now};

/// How long a ban lasts (Bitcoin Core's default `-bantime`).
pub const BAN_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// What is known of a connected peer besides its chain.
#[derive(Debug, Clone)]
pub(super) struct PeerMeta {
    pub(super) address: Multiaddr,
    pub(super) outbound: bool,
    pub(super) since: u64,
    pub(super) ping: Option<Duration>,
    pub(super) agent: Option<String>,
}

impl Network {
    /// Returns what is known of each connected peer (for `getpeerinfo`).
    pub fn peer_info(&self) -> Vec<(PeerId, serde_json::Value)> {
        let gossip = &self.swarm.behaviour().gossipsub;
        let blocks_mesh: HashSet<&PeerId> = gossip.mesh_peers(&self.blocks_topic.hash()).collect();
        let txs_mesh: HashSet<&PeerId> = gossip.mesh_peers(&self.txs_topic.hash()).collect();
        let mut peers: Vec<&PeerId> = self.swarm.connected_peers().collect();
        peers.sort();
        peers
            .into_iter()
            .map(|peer| {
                let meta = self.peers.get(peer);
                let mut info = serde_json::json!({
                    "id": peer.to_string(),
                    "address": meta.map(|m| m.address.to_string()),
                    "direction": meta.map(|m| if m.outbound { "outbound" } else { "inbound" }),
                    "connected_since": meta.map(|m| m.since),
                    "ping_ms": meta.and_then(|m| m.ping).map(|d| d.as_secs_f64() * 1000.0),
                    "agent": meta.and_then(|m| m.agent.clone()),
                    "mesh": {
                        "blocks": blocks_mesh.contains(peer),
                        "txs": txs_mesh.contains(peer),
                    },
                    "bootstrap": self.bootstrap_peers.contains(peer),
                });
                if let Some(fields) = info.as_object_mut() {
                    fields.extend(self.link_info(peer));
                }
                (*peer, info)
            })
            .collect()
    }

    /// Returns the node's own network facts (for `getnetworkinfo`).
    pub fn network_info(&self) -> serde_json::Value {
        let id = self.local_peer_id();
        let (inbound, outbound) = self.peer_directions();
        serde_json::json!({
            "peer_id": id.to_string(),
            "network_id": self.network_id,
            "connections": self.peer_count(),
            "inbound": inbound,
            "outbound": outbound,
            "banned": self.banned_count(),
            "listen": self
                .swarm
                .listeners()
                .map(|a| a.clone().with(Protocol::P2p(id)).to_string())
                .collect::<Vec<_>>(),
        })
    }

    /// Returns the number of connected peers that connected to us, and that we connected to.
    pub fn peer_directions(&self) -> (usize, usize) {
        let outbound = self.peers.values().filter(|m| m.outbound).count();
        (self.peers.len() - outbound, outbound)
    }

    /// Returns the number of peers banned now.
    pub fn banned_count(&self) -> usize {
        self.bans.iter().count()
    }

    /// Tops up the peers and lifts bans that ended. Called periodically.
    pub fn maintain(&mut self) {
        self.top_up();
        match self.bans.expire(unix_now()) {
            Ok(ended) => {
                for peer in ended {
                    info!(%peer, "ban ended");
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                }
            }
            Err(e) => warn!(error = %e, "saving the ban list"),
        }
    }

    /// Below the target peer count: dials peers Kademlia knows and asks it to
    /// look for more.
    fn top_up(&mut self) {
        let missing = self.target_peers.saturating_sub(self.peer_count());
        if missing == 0 {
            return;
        }
        let mut known: Vec<PeerId> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            known.extend(bucket.iter().map(|e| *e.node.key.preimage()));
        }
        let candidates: Vec<PeerId> = known
            .into_iter()
            .filter(|p| !self.swarm.is_connected(p) && !self.bans.contains(p))
            .take(missing)
            .collect();
        for peer in candidates {
            debug!(%peer, "dialing to reach the target peer count");
            let _ = self.swarm.dial(peer);
        }
        self.swarm.behaviour_mut().kad.get_closest_peers(PeerId::random());
    }

    /// Logs peers joining and leaving each topic's gossip mesh (gossipsub has
    /// no event for it). Called periodically.
    pub fn log_mesh_changes(&mut self) {
        for topic in [self.blocks_topic.clone(), self.txs_topic.clone()] {
            let now: BTreeSet<PeerId> =
                self.swarm.behaviour().gossipsub.mesh_peers(&topic.hash()).copied().collect();
            let before = self.mesh.entry(topic.to_string()).or_default();
            for peer in now.difference(before) {
                info!(%peer, topic = %topic, "mesh join");
            }
            for peer in before.difference(&now) {
                info!(%peer, topic = %topic, "mesh leave");
            }
            *before = now;
        }
    }

    /// Disconnects a peer (it may come back; nothing is held against it).
    pub fn disconnect(&mut self, peer: PeerId, reason: &str) {
        info!(%peer, reason, "disconnecting peer");
        self.close_peer(&peer, reason);
    }

    /// Disconnects and bans a peer for [`BAN_DURATION`], across restarts.
    /// Configured bootstrap peers are only disconnected, never banned.
    pub fn ban(&mut self, peer: PeerId, reason: &str) {
        if self.bootstrap_peers.contains(&peer) {
            warn!(%peer, reason, "bootstrap peer disconnected (never banned)");
            self.close_peer(&peer, reason);
            return;
        }
        let until = unix_now() + BAN_DURATION.as_secs();
        warn!(%peer, reason, until, "peer banned");
        self.closing_peer(&peer, &format!("banned: {reason}"));
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        // Kademlia keeps what it learnt and would hand the peer out to others.
        self.swarm.behaviour_mut().kad.remove_peer(&peer);
        if let Err(e) = self.bans.ban(peer, until) {
            warn!(error = %e, "saving the ban list");
        }
    }

    /// Tells whether `peer` is banned.
    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans.contains(peer)
    }
}
