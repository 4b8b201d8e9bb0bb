//! Connections: what the log says of each, the liveness rules put to work,
//! re-dialing, and closing connections on purpose.
//!
//! Owns the network's side of every connection: logging it established and
//! closed (with its connection id, direction and why it ended, the lines from
//! which an operator draws the topology), feeding the [`super::liveness`]
//! rules (pings, the clock, each connection's meter) and carrying out what
//! they decide (close, cut), re-dialing bootstrap peers, closing connections
//! deliberately (a ban, a stalling peer, the node stopping) so the log says
//! why, and the per-peer connection facts `getpeerinfo` shows.

use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionError, ConnectionId};
use libp2p::{PeerId, ping};
use serde_json::{Map, Value, json};
use tracing::{debug, info};

use super::liveness::{self, Links};
use super::peers::PeerMeta;
use super::{NetEvent, Network, unix_now};
use crate::machine::Input;

/// The target of the connection events, as docs/p2p.md lists them.
const TARGET: &str = "tinychain_node::p2p";

/// How often the liveness rules run and bootstrap peers are considered for a dial.
pub(super) const LIVENESS_CHECK: Duration = Duration::from_secs(1);

fn direction(outbound: bool) -> &'static str {
    if outbound { "outbound" } else { "inbound" }
}

/// A connection id as the integer the log shows (unique within one process run).
fn number(id: ConnectionId) -> u64 {
    id.to_string().parse().unwrap_or_default()
}

/// The unix time (seconds) of `then`, an instant before `now`.
fn unix_secs(now: Instant, then: Instant) -> u64 {
    let ago = now.saturating_duration_since(then);
    SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

impl Network {
    /// Logs a new connection and starts watching it; a peer's first
    /// connection is news for the event loop.
    pub(super) fn on_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: &ConnectedPoint,
        num_established: NonZeroU32,
    ) -> Option<NetEvent> {
        let outbound = endpoint.is_dialer();
        let address = endpoint.get_remote_address().clone();
        let counters = self.meters.claim(peer, outbound);
        self.links.established(id, (peer, address.clone(), outbound), counters, Instant::now());
        info!(
            target: TARGET,
            peer = %peer,
            connection_id = number(id),
            %address,
            direction = direction(outbound),
            bootstrap = self.bootstrap_peers.contains(&peer),
            "connection established"
        );
        if self.stopping {
            self.close_connection(id, "we closed: shutting down".to_owned());
        }
        if num_established.get() != 1 {
            return None;
        }
        let meta = PeerMeta { address, outbound, since: unix_now(), ping: None, agent: None };
        self.peers.insert(peer, meta);
        Some(Input::PeerConnected(peer).into())
    }

    /// Logs a connection that ended, and why; a peer's last one is news for
    /// the event loop, and what was kept about the peer goes.
    pub(super) fn on_closed(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: &ConnectedPoint,
        num_established: u32,
        cause: Option<&ConnectionError>,
    ) -> Option<NetEvent> {
        let link = self.links.closed(id);
        let reason = liveness::close_reason(link.as_ref(), cause);
        info!(
            target: TARGET,
            peer = %peer,
            connection_id = number(id),
            address = %endpoint.get_remote_address(),
            direction = direction(endpoint.is_dialer()),
            reason,
            connections_left = num_established,
            "connection closed"
        );
        if num_established > 0 {
            // getpeerinfo describes a connection that is still there.
            if let (Some(meta), Some(left)) =
                (self.peers.get_mut(&peer), self.links.first_of(&peer))
                && meta.address == *endpoint.get_remote_address()
            {
                meta.address = left.address.clone();
                meta.outbound = left.outbound;
            }
            return None;
        }
        self.peers.remove(&peer);
        Some(Input::PeerDisconnected(peer).into())
    }

    /// Keeps a ping's round trip; closes a connection whose pings fail.
    pub(super) fn on_ping(&mut self, event: ping::Event) {
        let now = Instant::now();
        match event.result {
            Ok(rtt) => {
                self.links.ping_ok(event.connection, now);
                if let Some(meta) = self.peers.get_mut(&event.peer) {
                    meta.ping = Some(rtt);
                }
            }
            // Another implementation without ping: its silence is judged by inactivity.
            Err(ping::Failure::Unsupported) => self.links.ping_unsupported(event.connection),
            Err(error) => {
                let connection_id = number(event.connection);
                debug!(peer = %event.peer, connection_id, %error, "ping failed");
                if let Some(reason) = self.links.ping_failed(event.connection) {
                    self.close_dead(event.connection, reason);
                }
            }
        }
    }

    /// Runs the liveness rules and re-dials bootstrap peers (every [`LIVENESS_CHECK`]).
    pub(super) fn check_liveness(&mut self) {
        let now = Instant::now();
        let checked = self.links.check(now);
        for (id, reason) in checked.close {
            self.close_dead(id, reason);
        }
        for counters in checked.cut {
            counters.abort();
        }
        self.meters.prune();
        self.redial(now);
    }

    /// Closes a connection found dead. No goodbye would cross it, and a
    /// graceful close could wait on it for minutes: it is cut at once.
    fn close_dead(&mut self, id: ConnectionId, reason: &'static str) {
        if self.links.closing(id, reason.to_owned(), Instant::now()) {
            if let Some(counters) = self.links.cut(id) {
                counters.abort();
            }
            self.swarm.close_connection(id);
        }
    }

    /// Closes a connection on purpose, saying goodbye; logged with `why` when
    /// it ends, and cut if that takes longer than [`liveness::CLOSE_GRACE`].
    fn close_connection(&mut self, id: ConnectionId, why: String) {
        if self.links.closing(id, why, Instant::now()) {
            self.swarm.close_connection(id);
        }
    }

    /// Closes every connection to `peer`, each logged `we closed: <why>`.
    pub(super) fn close_peer(&mut self, peer: &PeerId, why: &str) {
        for id in self.links.of_peer(peer) {
            self.close_connection(id, format!("we closed: {why}"));
        }
    }

    /// Records why the node is about to close every connection to `peer`
    /// some other way (a ban blocks it, which closes them).
    pub(super) fn closing_peer(&mut self, peer: &PeerId, why: &str) {
        for id in self.links.of_peer(peer) {
            self.links.closing(id, format!("we closed: {why}"), Instant::now());
        }
    }

    /// Dials the configured bootstrap peers that are due (see [`liveness::Redial`]).
    pub(super) fn redial(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        let due = self.redial.due(now, |peer| self.swarm.is_connected(peer));
        for (address, peer) in due {
            let opts = match peer {
                // One dial at a time: a dial into a cut cable ends only at its timeout.
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![address.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(address.clone()).build(),
            };
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%address, error = %e, "bootstrap dial not started");
            }
        }
    }

    /// Closes every connection on purpose, each logged `we closed: <why>`,
    /// and drives the swarm until they have ended (cutting those that take
    /// too long), at most `limit`. For a node that stops: its peers read
    /// `peer closed`, not an error. Nothing else is handled meanwhile.
    pub async fn close_all(&mut self, why: &str, limit: Duration) {
        self.stopping = true;
        let why = format!("we closed: {why}");
        for id in self.links.ids() {
            self.close_connection(id, why.clone());
        }
        let deadline = tokio::time::Instant::now() + limit;
        let mut checks = tokio::time::interval(Duration::from_millis(100));
        while !self.links.is_empty() {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    let _ = self.handle_swarm_event(event);
                }
                _ = checks.tick() => {
                    for counters in self.links.check(Instant::now()).cut {
                        counters.abort();
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    /// Returns what `getpeerinfo` shows of a peer's connections together.
    pub(super) fn link_info(&self, peer: &PeerId) -> Map<String, Value> {
        let now = Instant::now();
        let stats = self.links.peer_stats(peer, now);
        let info = json!({
            "connections": stats.connections,
            "bytes_recv": stats.bytes.map(|(recv, _)| recv),
            "bytes_sent": stats.bytes.map(|(_, sent)| sent),
            "last_recv": stats.last_recv.map(|t| unix_secs(now, t)),
            "last_send": stats.last_send.map(|t| unix_secs(now, t)),
            "ping_wait_ms": stats.ping_wait.map(|d| d.as_secs_f64() * 1000.0),
        });
        match info {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// Returns the liveness rules for a network whose peers time out after `peer_timeout`.
pub(super) fn links(peer_timeout: Duration) -> Links {
    Links::new(liveness::Config { peer_timeout })
}
