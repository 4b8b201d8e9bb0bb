//! Peer discipline: who is connected, scores that misbehaviour lowers and
//! time restores, when a score earns a ban, and another network's peers.
//!
//! Owns the decisions; the ban list itself (persisted, lifted when it ends,
//! never for configured bootstrap peers) is the network's, which carries out
//! [`Output::Ban`].

use super::{Node, Output, PeerId, Time};
use crate::store::Store;

/// Score at or below which a peer is banned.
pub const BAN_SCORE: i32 = -100;
/// Score lost for sending consensus-invalid or malformed data.
pub const INVALID_PENALTY: i32 = -50;
/// Score regained per peer maintenance (every 10 s: a -50 fades in ~8 min).
pub const SCORE_DECAY: i32 = 1;
/// Scores of departed peers remembered at most (the map stays bounded).
pub const MAX_REMEMBERED_SCORES: usize = 1024;

impl<S: Store> Node<S> {
    /// A peer connected: ask for its status.
    pub(super) fn on_connected(&mut self, peer: PeerId, now: Time, out: &mut Vec<Output>) {
        self.peers.entry(peer).or_default();
        let ask = self.sync.ask_status(peer, now.instant);
        self.execute(ask.into_iter().collect(), out);
    }

    /// A peer left: its status, budget and download go; its score stays if it misbehaved.
    pub(super) fn on_disconnected(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        self.limiter.remove(&peer);
        self.sync.remove_peer(&peer);
        self.forget_score(peer);
    }

    /// A peer of another network (its identify protocol version differs) is banned.
    pub(super) fn on_identified(&mut self, peer: PeerId, version: &str, out: &mut Vec<Output>) {
        if version != self.identify_protocol {
            let reason = format!("another network (identify protocol version {version:?})");
            out.push(Output::Ban { peer, reason });
        }
    }

    /// Lowers a peer's score for misbehaviour; bans it at [`BAN_SCORE`] or below.
    pub(super) fn penalise(&mut self, peer: PeerId, reason: &str, out: &mut Vec<Output>) {
        let score = self.scores.entry(peer).or_insert(0);
        *score += INVALID_PENALTY;
        let score = *score;
        out.push(Output::Penalise { peer, score, reason: reason.to_owned() });
        if score <= BAN_SCORE {
            out.push(Output::Ban { peer, reason: format!("score {score} after: {reason}") });
        }
    }

    /// Regains a little score for every peer (misbehaviour fades).
    pub(super) fn decay_scores(&mut self) {
        for score in self.scores.values_mut() {
            *score = (*score + SCORE_DECAY).min(0);
        }
        let peers = &self.peers;
        self.scores.retain(|peer, score| *score < 0 || peers.contains_key(peer));
    }

    /// Forgets a departed peer's score unless it misbehaved; keeps at most
    /// [`MAX_REMEMBERED_SCORES`] scores of departed misbehaving peers.
    fn forget_score(&mut self, peer: PeerId) {
        if self.scores.get(&peer).is_some_and(|s| *s == 0) {
            self.scores.remove(&peer);
        }
        if self.scores.len() > MAX_REMEMBERED_SCORES {
            let excess = self.scores.len() - MAX_REMEMBERED_SCORES;
            let departed: Vec<PeerId> = self
                .scores
                .keys()
                .filter(|p| !self.peers.contains_key(p))
                .take(excess)
                .copied()
                .collect();
            for p in departed {
                self.scores.remove(&p);
            }
        }
    }

    /// Tells whether `peer` may have a request of `cost` tokens answered now.
    pub(super) fn within_budget(&mut self, peer: PeerId, cost: u32, now: Time) -> bool {
        let allowed = self.limiter.allow_cost(peer, now.instant, cost);
        if !allowed {
            tracing::debug!(%peer, "request rate limited");
        }
        allowed
    }
}
