//! The crawl's decisions: whom to visit next, when a visit is over, what was found.
//!
//! Owns the crawl's state as a pure machine ([`Plan`]): peers queued, being
//! visited and done; at most `concurrency` visits at a time; each visit (dial,
//! identify, Status, one FIND_NODE per bucket) ends when every answer is in or
//! after [`VISIT_TIME`]; peers named in answers are queued in turn. Inputs carry
//! the time; outputs are [`Action`]s the event loop carries out. What it learnt
//! is [`Plan::report`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use super::findnode::Found;
use crate::p2p::protocol::Status;

/// Longest visit of one peer.
pub const VISIT_TIME: Duration = Duration::from_secs(10);

/// What the event loop should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Dial this peer at these addresses.
    Dial(PeerId, Vec<Multiaddr>),
    /// The peer is connected: ask its Status and its buckets.
    Query(PeerId),
    /// The visit is over: close the connection.
    Disconnect(PeerId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    Queued,
    Visiting { since: Instant, connected: bool },
    Done,
}

/// What the crawl learnt of one peer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Peer {
    /// Peer id.
    pub id: String,
    /// Dialed, identified and answered at least something.
    pub reachable: bool,
    /// Why not, or what was missing.
    pub error: Option<String>,
    /// Addresses it was known by (from the bootstrap list and other peers' answers).
    pub addresses: Vec<String>,
    /// Its identify agent.
    pub agent: Option<String>,
    /// Its identify protocol version.
    pub protocol_version: Option<String>,
    /// The addresses it listens on (identify).
    pub listen: Vec<String>,
    /// Its height (Status).
    pub height: Option<u32>,
    /// Its tip (Status).
    pub tip: Option<String>,
    /// The peers in its routing table, and whether it said it is connected to each.
    pub knows: BTreeMap<String, bool>,
    /// FIND_NODE requests it answered.
    pub buckets_answered: u32,
}

#[derive(Debug)]
struct Entry {
    stage: Stage,
    addresses: BTreeSet<Multiaddr>,
    pending: u32,
    identified: bool,
    found: Peer,
}

/// The crawl.
#[derive(Debug)]
pub struct Plan {
    peers: BTreeMap<PeerId, Entry>,
    queue: VecDeque<PeerId>,
    visiting: usize,
    concurrency: usize,
    requests_per_visit: u32,
}

impl Plan {
    /// A crawl of at most `concurrency` visits at a time, each sending
    /// `requests_per_visit` requests (Status and the FIND_NODEs).
    pub fn new(concurrency: usize, requests_per_visit: u32) -> Plan {
        Plan {
            peers: BTreeMap::new(),
            queue: VecDeque::new(),
            visiting: 0,
            concurrency: concurrency.max(1),
            requests_per_visit,
        }
    }

    /// Learns of a peer at `addresses`; queues it if it is new.
    pub fn learn(&mut self, peer: PeerId, addresses: impl IntoIterator<Item = Multiaddr>) {
        let entry = self.peers.entry(peer).or_insert_with(|| Entry {
            stage: Stage::Queued,
            addresses: BTreeSet::new(),
            pending: 0,
            identified: false,
            found: Peer { id: peer.to_string(), ..Peer::default() },
        });
        let fresh = entry.addresses.is_empty() && entry.stage == Stage::Queued;
        // Keep what dials: drop a trailing /p2p/ (the peer id is given separately).
        entry.addresses.extend(addresses.into_iter().map(|mut a| {
            if matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
                a.pop();
            }
            a
        }));
        if fresh && !entry.addresses.is_empty() {
            self.queue.push_back(peer);
        }
    }

    /// The visits to start now (up to the concurrency).
    pub fn next(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        while self.visiting < self.concurrency {
            let Some(peer) = self.queue.pop_front() else { break };
            let Some(entry) = self.peers.get_mut(&peer) else { continue };
            entry.stage = Stage::Visiting { since: now, connected: false };
            self.visiting += 1;
            actions.push(Action::Dial(peer, entry.addresses.iter().cloned().collect()));
        }
        actions
    }

    /// The peer connected (for a visit or because it dialed us).
    pub fn connected(&mut self, peer: PeerId) -> Vec<Action> {
        let Some(entry) = self.peers.get_mut(&peer) else { return Vec::new() };
        match entry.stage {
            Stage::Visiting { since, connected: false } => {
                entry.stage = Stage::Visiting { since, connected: true };
                entry.pending = self.requests_per_visit;
                entry.found.reachable = true;
                vec![Action::Query(peer)]
            }
            _ => Vec::new(),
        }
    }

    /// A dial failed.
    pub fn unreachable(&mut self, peer: PeerId, error: String) -> Vec<Action> {
        if let Some(entry) = self.peers.get_mut(&peer)
            && matches!(entry.stage, Stage::Visiting { connected: false, .. })
        {
            entry.found.error = Some(error);
            return self.finish(peer);
        }
        Vec::new()
    }

    /// The peer identified itself.
    pub fn identified(
        &mut self,
        peer: PeerId,
        agent: String,
        protocol: String,
        listen: Vec<Multiaddr>,
    ) -> Vec<Action> {
        let Some(entry) = self.peers.get_mut(&peer) else { return Vec::new() };
        entry.identified = true;
        entry.found.agent = Some(agent);
        entry.found.protocol_version = Some(protocol);
        entry.found.listen = listen.iter().map(ToString::to_string).collect();
        self.maybe_done(peer)
    }

    /// The peer answered Status (or the request failed: `None`).
    pub fn status(&mut self, peer: PeerId, status: Option<Status>) -> Vec<Action> {
        if let (Some(entry), Some(status)) = (self.peers.get_mut(&peer), status) {
            entry.found.height = Some(status.height);
            entry.found.tip = Some(status.tip.to_string());
        }
        self.answered(peer)
    }

    /// The peer answered a FIND_NODE (or it failed: `None`); the peers it named are queued.
    pub fn found(&mut self, peer: PeerId, answer: Option<Vec<Found>>) -> Vec<Action> {
        for f in answer.iter().flatten() {
            self.learn(f.peer, f.addresses.clone());
        }
        if let (Some(entry), Some(answer)) = (self.peers.get_mut(&peer), answer) {
            entry.found.buckets_answered += 1;
            for f in answer {
                let connected = entry.found.knows.entry(f.peer.to_string()).or_insert(false);
                *connected |= f.connected;
            }
        }
        self.answered(peer)
    }

    fn answered(&mut self, peer: PeerId) -> Vec<Action> {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.pending = entry.pending.saturating_sub(1);
        }
        self.maybe_done(peer)
    }

    fn maybe_done(&mut self, peer: PeerId) -> Vec<Action> {
        match self.peers.get(&peer) {
            Some(e)
                if matches!(e.stage, Stage::Visiting { connected: true, .. })
                    && e.pending == 0
                    && e.identified =>
            {
                self.finish(peer)
            }
            _ => Vec::new(),
        }
    }

    /// Ends visits that took too long.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let late: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, e)| matches!(e.stage, Stage::Visiting { since, .. } if now.duration_since(since) >= VISIT_TIME))
            .map(|(p, _)| *p)
            .collect();
        let mut actions = Vec::new();
        for peer in late {
            if let Some(entry) = self.peers.get_mut(&peer) {
                let what = if entry.found.reachable { "answers missing" } else { "no connection" };
                entry
                    .found
                    .error
                    .get_or_insert_with(|| format!("{what} after {} s", VISIT_TIME.as_secs()));
            }
            actions.extend(self.finish(peer));
        }
        actions
    }

    fn finish(&mut self, peer: PeerId) -> Vec<Action> {
        let Some(entry) = self.peers.get_mut(&peer) else { return Vec::new() };
        if !matches!(entry.stage, Stage::Visiting { .. }) {
            return Vec::new();
        }
        entry.stage = Stage::Done;
        self.visiting -= 1;
        vec![Action::Disconnect(peer)]
    }

    /// Whether nothing is queued or being visited.
    pub fn is_finished(&self) -> bool {
        self.queue.is_empty() && self.visiting == 0
    }

    /// What was found; peers not visited before the deadline say so.
    pub fn report(&self) -> Vec<Peer> {
        self.peers
            .values()
            .map(|e| {
                let mut p = e.found.clone();
                p.addresses = e.addresses.iter().map(ToString::to_string).collect();
                if e.stage != Stage::Done && p.error.is_none() {
                    p.error = Some("not visited before the deadline".into());
                }
                p
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> Multiaddr {
        format!("/ip4/10.0.0.{i}/tcp/19444").parse().expect("an address")
    }

    #[test]
    fn a_visit_asks_everything_and_the_peers_named_are_visited_next() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut plan = Plan::new(1, 2);
        plan.learn(a, [addr(1).with(libp2p::multiaddr::Protocol::P2p(a))]);
        assert_eq!(plan.next(now), [Action::Dial(a, vec![addr(1)])]);
        assert_eq!(plan.connected(a), [Action::Query(a)]);
        let answer = vec![
            Found { peer: b, addresses: vec![addr(2)], connected: true },
            Found { peer: c, addresses: vec![addr(3)], connected: false },
        ];
        assert!(plan.found(a, Some(answer)).is_empty());
        assert!(plan.next(now).is_empty(), "one visit at a time");
        let status = Status {
            genesis: tinychain_protocol::BlockHash::ZERO,
            tip: tinychain_protocol::BlockHash::ZERO,
            height: 7,
            chainwork: tinychain_protocol::pow::Work::ZERO,
        };
        assert!(plan.status(a, Some(status)).is_empty(), "identify still missing");
        assert_eq!(
            plan.identified(a, "tinychain-node/0.1.0".into(), "tinychain/x".into(), vec![addr(1)]),
            [Action::Disconnect(a)]
        );
        assert_eq!(plan.next(now), [Action::Dial(b, vec![addr(2)])]);
        assert_eq!(plan.unreachable(b, "refused".into()), [Action::Disconnect(b)]);
        assert_eq!(plan.next(now), [Action::Dial(c, vec![addr(3)])]);
        assert!(!plan.is_finished());
        let report = plan.report();
        let first = report.iter().find(|p| p.id == a.to_string()).expect("a");
        assert_eq!((first.height, first.reachable, first.buckets_answered), (Some(7), true, 1));
        assert_eq!(first.knows.get(&b.to_string()), Some(&true));
        assert_eq!(first.knows.get(&c.to_string()), Some(&false));
        let second = report.iter().find(|p| p.id == b.to_string()).expect("b");
        assert_eq!((second.reachable, second.error.as_deref()), (false, Some("refused")));
    }

    #[test]
    fn a_silent_peer_is_given_up_after_the_visit_time() {
        let a = PeerId::random();
        let now = Instant::now();
        let mut plan = Plan::new(4, 3);
        plan.learn(a, [addr(1)]);
        plan.next(now);
        plan.connected(a);
        assert!(plan.tick(now + Duration::from_secs(1)).is_empty());
        assert_eq!(plan.tick(now + VISIT_TIME), [Action::Disconnect(a)]);
        assert!(plan.is_finished());
        assert_eq!(plan.report()[0].error.as_deref(), Some("answers missing after 10 s"));
        // Late answers change nothing and start nothing.
        assert!(plan.found(a, None).is_empty());
        assert!(plan.connected(a).is_empty());
    }

    #[test]
    fn a_peer_known_twice_is_queued_once() {
        let a = PeerId::random();
        let mut plan = Plan::new(4, 1);
        plan.learn(a, [addr(1)]);
        plan.learn(a, [addr(2)]);
        assert_eq!(plan.next(Instant::now()), [Action::Dial(a, vec![addr(1), addr(2)])]);
        assert!(plan.next(Instant::now()).is_empty());
    }
}
