//! Noticing dead connections, naming why connections end, and re-dialing.
//!
//! Owns the rules, as a machine that is given the time and answers with what
//! to do (it touches no socket):
//!
//! - **inactivity**: a connection on which nothing arrived for `peer_timeout`
//!   (Bitcoin Core's `-peertimeout`) is closed. Pings every quarter of it, both
//!   ways, keep a live connection from ever being that quiet. A node whose own
//!   loop was held up (more than [`STALL`] between checks) gives every
//!   connection a fresh `peer_timeout` instead, since its connections may not
//!   have read their sockets meanwhile either.
//! - **ping timeout**: a connection whose pings go unanswered is closed: when
//!   no answer came for `peer_timeout` since a ping was due, or when libp2p
//!   reports a failed ping (it reports only the second failure in a row).
//!   This catches a link dead in one direction only, where bytes still arrive.
//!   A peer without the ping protocol is left to the inactivity rule.
//! - a connection the node closes on its own is cut if it has not ended
//!   [`CLOSE_GRACE`] later (a graceful close waits on a link that may be dead,
//!   and for the peer to close its side); one closed for inactivity or a ping
//!   timeout is cut at once.
//! - the **reason** a connection ended ([`close_reason`]): the node's own
//!   reason if it closed it, `peer closed` if the peer said goodbye (a yamux
//!   GoAway), else `io error: …`.
//! - **re-dialing** configured bootstrap peers that are not connected, with a
//!   backoff from [`REDIAL_MIN`] doubling to [`REDIAL_MAX`], reset once
//!   connected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionError, ConnectionId};
use libp2p::{Multiaddr, PeerId};

use super::transport::Counters;

/// The reason logged for a connection closed because its pings failed.
pub(super) const PING_TIMEOUT: &str = "ping timeout";
/// The reason logged for a connection closed because nothing arrived on it.
pub(super) const INACTIVITY: &str = "inactivity";
/// The reason logged when the peer said goodbye.
pub(super) const PEER_CLOSED: &str = "peer closed";
/// A gap between two checks longer than this means the node's loop was held up.
pub(super) const STALL: Duration = Duration::from_secs(3);
/// How long a connection the node closes may take to end before it is cut.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Reported ping failures that close a connection (each is two failed pings).
const MAX_PING_FAILURES: u32 = 1;
/// The first wait before re-dialing a bootstrap peer.
pub(super) const REDIAL_MIN: Duration = Duration::from_secs(1);
/// The longest wait before re-dialing a bootstrap peer.
pub(super) const REDIAL_MAX: Duration = Duration::from_secs(10);

/// The liveness settings, all from one bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Config {
    /// Nothing received for this long closes a connection.
    pub(super) peer_timeout: Duration,
}

impl Config {
    /// How often each side pings.
    pub(super) fn ping_interval(&self) -> Duration {
        self.peer_timeout / 4
    }

    /// How long a ping may wait for its answer.
    pub(super) fn ping_timeout(&self) -> Duration {
        self.peer_timeout / 2
    }
}

/// One connection, as the rules see it.
#[derive(Debug)]
pub(super) struct Link {
    /// The peer.
    pub(super) peer: PeerId,
    /// Its remote address.
    pub(super) address: Multiaddr,
    /// We dialed it.
    pub(super) outbound: bool,
    since: Instant,
    /// Its meter (none for a transport without one, such as QUIC).
    pub(super) counters: Option<Arc<Counters>>,
    ping_failures: u32,
    /// When its last ping was answered.
    last_pong: Option<Instant>,
    /// The peer does not speak the ping protocol.
    no_ping: bool,
    /// Why and since when the node is closing it, and whether it was cut.
    closing: Option<(String, Instant, bool)>,
}

/// What a check found to do.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// Connections to close, with the reason.
    pub(super) close: Vec<(ConnectionId, &'static str)>,
    /// Connections to cut now: closing too long.
    pub(super) cut: Vec<Arc<Counters>>,
}

/// What is known of a peer's connections together (for `getpeerinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PeerStats {
    /// Its connections.
    pub(super) connections: usize,
    /// Bytes received and sent on the metered ones (none if none is metered).
    pub(super) bytes: Option<(u64, u64)>,
    /// When the last byte arrived, and went out, on any of them.
    pub(super) last_recv: Option<Instant>,
    /// When the last byte went out.
    pub(super) last_send: Option<Instant>,
    /// How long the oldest unanswered ping has waited, if one is out.
    pub(super) ping_wait: Option<Duration>,
}

/// Every connection, and the rules over them.
#[derive(Debug)]
pub(super) struct Links {
    config: Config,
    links: BTreeMap<ConnectionId, Link>,
    last_check: Option<Instant>,
    /// When the node's loop last came back from being held up.
    resumed: Option<Instant>,
}

impl Links {
    /// Returns the rules with no connection yet.
    pub(super) fn new(config: Config) -> Links {
        Links { config, links: BTreeMap::new(), last_check: None, resumed: None }
    }

    /// Adds a connection.
    pub(super) fn established(
        &mut self,
        id: ConnectionId,
        (peer, address, outbound): (PeerId, Multiaddr, bool),
        counters: Option<Arc<Counters>>,
        now: Instant,
    ) {
        let link = Link {
            peer,
            address,
            outbound,
            since: now,
            counters,
            ping_failures: 0,
            last_pong: None,
            no_ping: false,
            closing: None,
        };
        self.links.insert(id, link);
    }

    /// Removes a connection that ended.
    pub(super) fn closed(&mut self, id: ConnectionId) -> Option<Link> {
        self.links.remove(&id)
    }

    /// Tells whether no connection is left.
    pub(super) fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Returns every connection.
    pub(super) fn ids(&self) -> Vec<ConnectionId> {
        self.links.keys().copied().collect()
    }

    /// Returns the connections to `peer`.
    pub(super) fn of_peer(&self, peer: &PeerId) -> Vec<ConnectionId> {
        self.links.iter().filter(|(_, l)| l.peer == *peer).map(|(id, _)| *id).collect()
    }

    /// Returns `peer`'s oldest connection.
    pub(super) fn first_of(&self, peer: &PeerId) -> Option<&Link> {
        self.links.values().find(|l| l.peer == *peer)
    }

    /// Returns a connection.
    #[cfg(test)]
    fn get(&self, id: ConnectionId) -> Option<&Link> {
        self.links.get(&id)
    }

    /// Records an answered ping.
    pub(super) fn ping_ok(&mut self, id: ConnectionId, now: Instant) {
        if let Some(link) = self.links.get_mut(&id) {
            link.ping_failures = 0;
            link.last_pong = Some(now);
        }
    }

    /// Records a reported ping failure; returns the reason to close the
    /// connection if it should be.
    pub(super) fn ping_failed(&mut self, id: ConnectionId) -> Option<&'static str> {
        let link = self.links.get_mut(&id)?;
        link.ping_failures += 1;
        (link.ping_failures >= MAX_PING_FAILURES && link.closing.is_none()).then_some(PING_TIMEOUT)
    }

    /// Records that a connection's peer does not speak the ping protocol.
    pub(super) fn ping_unsupported(&mut self, id: ConnectionId) {
        if let Some(link) = self.links.get_mut(&id) {
            link.no_ping = true;
        }
    }

    /// Records that the node closes a connection, and why (the reason logged
    /// when it ends). Returns false if it is unknown or closing already.
    pub(super) fn closing(&mut self, id: ConnectionId, why: String, now: Instant) -> bool {
        match self.links.get_mut(&id) {
            Some(link) if link.closing.is_none() => {
                link.closing = Some((why, now, false));
                true
            }
            _ => false,
        }
    }

    /// Marks a closing connection cut; returns its meter to cut, if it has one
    /// and was not cut already.
    pub(super) fn cut(&mut self, id: ConnectionId) -> Option<Arc<Counters>> {
        let link = self.links.get_mut(&id)?;
        match &mut link.closing {
            Some((_, _, cut @ false)) => {
                *cut = true;
                link.counters.clone()
            }
            _ => None,
        }
    }

    /// Finds the connections that fell silent and those closing too long.
    pub(super) fn check(&mut self, now: Instant) -> Checked {
        if self.last_check.is_some_and(|last| now.saturating_duration_since(last) > STALL) {
            self.resumed = Some(now);
        }
        self.last_check = Some(now);
        let mut checked = Checked::default();
        for (id, link) in &mut self.links {
            match &mut link.closing {
                Some((_, since, cut @ false))
                    if now.saturating_duration_since(*since) >= CLOSE_GRACE =>
                {
                    *cut = true;
                    checked.cut.extend(link.counters.clone());
                }
                Some(_) => {}
                None => {
                    // Closed by libp2p itself (say, idle), and waiting on the peer too long.
                    let lingering = link.counters.as_ref().and_then(|c| c.lingering());
                    if lingering.is_some_and(|t| now.saturating_duration_since(t) >= CLOSE_GRACE) {
                        link.closing = Some(("we closed".to_owned(), now, true));
                        checked.cut.extend(link.counters.clone());
                    } else if let Some(reason) = verdict(&self.config, self.resumed, link, now) {
                        checked.close.push((*id, reason));
                    }
                }
            }
        }
        checked
    }

    /// Returns what is known of `peer`'s connections together.
    pub(super) fn peer_stats(&self, peer: &PeerId, now: Instant) -> PeerStats {
        let links: Vec<&Link> = self.links.values().filter(|l| l.peer == *peer).collect();
        let metered: Vec<&Counters> = links.iter().filter_map(|l| l.counters.as_deref()).collect();
        PeerStats {
            connections: links.len(),
            bytes: (!metered.is_empty()).then(|| {
                (
                    metered.iter().map(|c| c.bytes_recv()).sum(),
                    metered.iter().map(|c| c.bytes_sent()).sum(),
                )
            }),
            last_recv: metered.iter().filter_map(|c| c.last_recv()).max(),
            last_send: metered.iter().filter_map(|c| c.last_send()).max(),
            ping_wait: links.iter().filter_map(|l| ping_wait(&self.config, l, now)).max(),
        }
    }
}

/// Tells whether a live connection is dead, and why: nothing received for
/// `peer_timeout`, or no ping answer for `peer_timeout` since one was due.
/// Both count from the connection's start at the earliest, and from when the
/// node's loop came back (`resumed`) after being held up.
fn verdict(
    config: &Config,
    resumed: Option<Instant>,
    link: &Link,
    now: Instant,
) -> Option<&'static str> {
    let after = |t: Instant| [Some(t), Some(link.since), resumed].into_iter().flatten().max();
    let silent_since =
        |t: Instant| after(t).map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
    if let Some(counters) = &link.counters
        && silent_since(counters.last_recv().unwrap_or(link.since)) >= config.peer_timeout
    {
        return Some(INACTIVITY);
    }
    let due = link.last_pong.map_or(link.since, |t| t + config.ping_interval());
    (!link.no_ping && silent_since(due) >= config.peer_timeout).then_some(PING_TIMEOUT)
}

/// Returns how long a connection's oldest unanswered ping has waited, if one
/// is out: a ping goes out `ping_interval` after the last answer (the first at
/// once), and is out until answered (libp2p tries again after a failure).
fn ping_wait(config: &Config, link: &Link, now: Instant) -> Option<Duration> {
    let due = link.last_pong.map_or(link.since, |t| t + config.ping_interval());
    now.checked_duration_since(due).filter(|d| !d.is_zero())
}

/// Names why a connection ended, from what the node knows of it (`link`) and
/// what libp2p says (`cause`: none for a close the node asked for).
pub(super) fn close_reason(link: Option<&Link>, cause: Option<&ConnectionError>) -> String {
    if let Some((why, ..)) = link.and_then(|l| l.closing.as_ref()) {
        return why.clone();
    }
    let counters = link.and_then(|l| l.counters.as_deref());
    match cause {
        // An active close the node did not name (a libp2p behaviour's).
        None => "we closed".to_owned(),
        Some(ConnectionError::KeepAliveTimeout) => "we closed: idle".to_owned(),
        Some(ConnectionError::IO(_)) if counters.is_some_and(Counters::goodbye) => {
            PEER_CLOSED.to_owned()
        }
        Some(ConnectionError::IO(_)) if counters.is_some_and(Counters::ended) => {
            "io error: connection ended without a goodbye".to_owned()
        }
        Some(ConnectionError::IO(e)) => format!("io error: {e}"),
    }
}

/// Configured bootstrap addresses and when each may be dialed next.
#[derive(Debug)]
pub(super) struct Redial {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    address: Multiaddr,
    /// The peer, if the address ends in `/p2p/<peer id>`.
    peer: Option<PeerId>,
    next: Instant,
    backoff: Duration,
}

impl Redial {
    /// Returns the addresses, all due at `now`.
    pub(super) fn new(addresses: &[Multiaddr], now: Instant) -> Redial {
        let entries = addresses
            .iter()
            .map(|address| Entry {
                address: address.clone(),
                peer: match address.iter().last() {
                    Some(Protocol::P2p(peer)) => Some(peer),
                    _ => None,
                },
                next: now,
                backoff: REDIAL_MIN,
            })
            .collect();
        Redial { entries }
    }

    /// Returns the addresses to dial now (due, and not of a connected peer),
    /// each with its peer if known, and schedules their next attempt.
    pub(super) fn due(
        &mut self,
        now: Instant,
        connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<(Multiaddr, Option<PeerId>)> {
        let mut dial = Vec::new();
        for entry in &mut self.entries {
            if entry.peer.as_ref().is_some_and(&connected) {
                entry.backoff = REDIAL_MIN;
                entry.next = now;
            } else if entry.next <= now {
                dial.push((entry.address.clone(), entry.peer));
                entry.next = now + entry.backoff;
                entry.backoff = (entry.backoff * 2).min(REDIAL_MAX);
            }
        }
        dial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(20);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn addr() -> Multiaddr {
        "/ip4/127.0.0.1/tcp/1".parse().expect("a multiaddr")
    }

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    /// Rules with one metered connection established at `start`.
    fn one(start: Instant) -> (Links, Arc<Counters>, PeerId) {
        let mut links = Links::new(Config { peer_timeout: TIMEOUT });
        let counters = Arc::new(Counters::new(start));
        let peer = PeerId::random();
        links.established(id(1), (peer, addr(), true), Some(counters.clone()), start);
        (links, counters, peer)
    }

    #[test]
    fn a_connection_that_falls_silent_is_closed_after_the_timeout_and_not_before() {
        let t0 = Instant::now();
        let (mut links, counters, _) = one(t0);
        for s in 1..=60 {
            // Bytes (pongs among them) every 5 s for the first 30 s, then nothing.
            if s <= 30 && s % 5 == 0 {
                counters.received(40, t0 + secs(s));
                links.ping_ok(id(1), t0 + secs(s));
            }
            let checked = links.check(t0 + secs(s));
            if s < 30 + 20 {
                assert!(checked.close.is_empty(), "closed at {s} s");
            } else {
                assert_eq!(checked.close, vec![(id(1), INACTIVITY)], "at {s} s");
                return;
            }
        }
    }

    #[test]
    fn a_connection_that_never_hears_anything_is_closed_a_timeout_after_it_opened() {
        let t0 = Instant::now();
        let (mut links, _, _) = one(t0);
        assert!(links.check(t0 + secs(19)).close.is_empty());
        assert_eq!(links.check(t0 + secs(20)).close.len(), 1);
        let mut quic = Links::new(Config { peer_timeout: TIMEOUT });
        quic.established(id(2), (PeerId::random(), addr(), false), None, t0);
        for s in 1..60 {
            quic.ping_ok(id(2), t0 + secs(s));
            assert!(quic.check(t0 + secs(s)).close.is_empty(), "no meter: only pings count");
        }
        // The last answer at 59 s, the next ping due at 64 s, none comes.
        for s in 60..84 {
            assert!(quic.check(t0 + secs(s)).close.is_empty(), "closed at {s} s");
        }
        assert_eq!(quic.check(t0 + secs(84)).close, vec![(id(2), PING_TIMEOUT)]);
    }

    #[test]
    fn a_held_up_loop_gives_every_connection_a_fresh_timeout() {
        let t0 = Instant::now();
        let (mut links, _, _) = one(t0);
        assert!(links.check(t0 + secs(1)).close.is_empty());
        // The loop comes back 30 s later: its connections may not have read meanwhile.
        for s in 31..51 {
            assert!(links.check(t0 + secs(s)).close.is_empty(), "closed at {s} s");
        }
        assert_eq!(links.check(t0 + secs(51)).close.len(), 1);
    }

    #[test]
    fn a_reported_ping_failure_closes_and_an_answer_resets_the_count() {
        let t0 = Instant::now();
        let (mut links, _, _) = one(t0);
        links.ping_ok(id(1), t0);
        assert_eq!(links.ping_failed(id(1)), Some(PING_TIMEOUT));
        assert!(links.closing(id(1), PING_TIMEOUT.to_owned(), t0 + secs(1)));
        assert_eq!(links.ping_failed(id(1)), None, "closing already");
        assert_eq!(links.ping_failed(id(9)), None, "unknown connection");
    }

    #[test]
    fn pings_unanswered_for_the_timeout_close_even_while_bytes_arrive() {
        let t0 = Instant::now();
        let (mut links, counters, _) = one(t0);
        links.ping_ok(id(1), t0);
        // The next ping is due at 5 s; no answer comes, but bytes do.
        for s in 1..25 {
            counters.received(40, t0 + secs(s));
            assert!(links.check(t0 + secs(s)).close.is_empty(), "closed at {s} s");
        }
        counters.received(40, t0 + secs(25));
        assert_eq!(links.check(t0 + secs(25)).close, vec![(id(1), PING_TIMEOUT)]);
        // A peer without ping is judged by its silence only.
        let (mut links, counters, _) = one(t0);
        links.ping_unsupported(id(1));
        for s in 1..60 {
            counters.received(40, t0 + secs(s));
            assert!(links.check(t0 + secs(s)).close.is_empty(), "closed at {s} s");
        }
    }

    #[test]
    fn a_closing_connection_is_cut_after_the_grace_once() {
        let t0 = Instant::now();
        let (mut links, _, _) = one(t0);
        assert!(links.closing(id(1), "we closed: banned".into(), t0));
        assert!(!links.closing(id(1), "again".into(), t0), "the first reason stays");
        assert!(links.check(t0 + secs(1)).cut.is_empty());
        assert_eq!(links.check(t0 + CLOSE_GRACE).cut.len(), 1);
        assert!(links.check(t0 + secs(10)).cut.is_empty(), "cut once");
        assert!(links.check(t0 + secs(60)).close.is_empty(), "closing: no second close");
        let (mut links, _, _) = one(t0);
        links.closing(id(1), INACTIVITY.into(), t0);
        assert!(links.cut(id(1)).is_some());
        assert!(links.cut(id(1)).is_none());
    }

    #[test]
    fn ping_wait_counts_from_when_the_next_ping_was_due() {
        let t0 = Instant::now();
        let (mut links, _, peer) = one(t0);
        let wait = |links: &Links, s: u64| links.peer_stats(&peer, t0 + secs(s)).ping_wait;
        assert_eq!(wait(&links, 2), Some(secs(2)), "the first ping goes out at once");
        links.ping_ok(id(1), t0 + secs(2));
        assert_eq!(wait(&links, 6), None, "the next is due 5 s after");
        assert_eq!(wait(&links, 9), Some(secs(2)));
    }

    #[test]
    fn peer_stats_add_up_its_connections() {
        let t0 = Instant::now();
        let (mut links, a, peer) = one(t0);
        let b = Arc::new(Counters::new(t0));
        links.established(id(2), (peer, addr(), false), Some(b.clone()), t0);
        links.established(id(3), (PeerId::random(), addr(), false), None, t0);
        a.received(100, t0 + secs(1));
        a.sent(7, t0 + secs(4));
        b.received(1, t0 + secs(3));
        let stats = links.peer_stats(&peer, t0 + secs(5));
        assert_eq!(stats.connections, 2);
        assert_eq!(stats.bytes, Some((101, 7)));
        assert_eq!((stats.last_recv, stats.last_send), (Some(t0 + secs(3)), Some(t0 + secs(4))));
        assert_eq!(links.of_peer(&peer), vec![id(1), id(2)]);
        assert!(links.first_of(&peer).is_some_and(|l| l.outbound));
        links.closed(id(1));
        assert_eq!(links.peer_stats(&peer, t0).connections, 1);
        assert!(links.first_of(&peer).is_some_and(|l| !l.outbound), "the one left");
    }

    #[test]
    fn reasons_tell_our_close_a_goodbye_an_end_and_an_error_apart() {
        let t0 = Instant::now();
        let (mut links, counters, _) = one(t0);
        let io = |kind| ConnectionError::IO(std::io::Error::new(kind, "connection reset by peer"));
        let reset = io(std::io::ErrorKind::ConnectionReset);
        fn reason(links: &Links, cause: Option<&ConnectionError>) -> String {
            close_reason(links.get(id(1)), cause)
        }
        assert_eq!(reason(&links, Some(&reset)), "io error: connection reset by peer");
        assert_eq!(reason(&links, None), "we closed");
        assert_eq!(reason(&links, Some(&ConnectionError::KeepAliveTimeout)), "we closed: idle");
        counters.saw_end();
        assert_eq!(reason(&links, Some(&reset)), "io error: connection ended without a goodbye");
        counters.saw_goodbye();
        assert_eq!(reason(&links, Some(&reset)), PEER_CLOSED);
        links.closing(id(1), "we closed: shutting down".into(), t0);
        assert_eq!(reason(&links, Some(&reset)), "we closed: shutting down", "ours wins");
        assert_eq!(close_reason(None, Some(&reset)), "io error: connection reset by peer");
    }

    #[test]
    fn bootstrap_peers_are_redialed_with_a_doubling_backoff_reset_once_connected() {
        let t0 = Instant::now();
        let peer = PeerId::random();
        let with_id: Multiaddr =
            format!("/ip4/10.0.0.1/tcp/1/p2p/{peer}").parse().expect("a multiaddr");
        let without: Multiaddr = "/ip4/10.0.0.2/tcp/1".parse().expect("a multiaddr");
        let mut redial = Redial::new(&[with_id.clone(), without], t0);
        let mut dialed_at = Vec::new();
        for ms in (0..40_000).step_by(100) {
            let now = t0 + Duration::from_millis(ms);
            for (address, p) in redial.due(now, |_| false) {
                if address == with_id {
                    assert_eq!(p, Some(peer));
                    dialed_at.push(ms / 1000);
                }
            }
        }
        assert_eq!(dialed_at, vec![0, 1, 3, 7, 15, 25, 35], "1, 2, 4, 8 then every 10 s");
        // Connected: not dialed, and the backoff starts over for the next loss.
        let now = t0 + secs(40);
        assert!(redial.due(now, |p| *p == peer).iter().all(|(a, _)| *a != with_id));
        let again = redial.due(now + secs(1), |_| false);
        assert!(again.iter().any(|(a, _)| *a == with_id), "dialed as soon as it is lost");
        let soon = redial.due(now + secs(2), |_| false);
        assert!(soon.iter().any(|(a, _)| *a == with_id), "then after 1 s");
    }
}
