//! The node's Prometheus metrics: their names, types and labels, in one registry with libp2p's.
//!
//! Owns the definitions of every `tinychain_*` metric and the [`Registry`] they
//! share with libp2p's own metrics (`libp2p_*`, registered by the network). It
//! reads no state and starts nothing: the event loop, the single owner of the
//! core, hands in a [`Snapshot`] when a scrape asks for one and counts events
//! as they happen; the [`server`] only encodes the registry. Metric handles are
//! `Arc`-shared atomics, so encoding on another task needs no lock on the core.

pub mod server;

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use libp2p::gossipsub::MessageAcceptance;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Metric;
pub use prometheus_client::registry::Registry;

/// The prefix of the node's own metrics.
pub const PREFIX: &str = "tinychain";

/// The node's state as the gauges show it, taken by the event loop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Height of the active chain's tip.
    pub chain_height: u32,
    /// Height of the best valid header known (ahead of the tip while syncing).
    pub best_header_height: u32,
    /// The tip's cumulative work (approximate: a float).
    pub chainwork: f64,
    /// Peers that connected to us.
    pub peers_inbound: usize,
    /// Peers we connected to.
    pub peers_outbound: usize,
    /// Peers banned now.
    pub banned_peers: usize,
    /// Transactions in the mempool.
    pub mempool_transactions: usize,
    /// Their serialized size.
    pub mempool_bytes: u64,
    /// Transactions waiting for a missing parent.
    pub orphan_transactions: usize,
    /// Blocks waiting for a missing parent.
    pub orphan_blocks: usize,
    /// Whether the node knows of a chain with more work than its tip.
    pub syncing: bool,
    /// Blocks requested from peers and not yet delivered.
    pub blocks_in_flight: usize,
    /// The highest tip a connected peer claims.
    pub best_peer_height: u32,
    /// Mining threads running (0: not mining).
    pub miner_threads: usize,
}

/// A gossipsub topic, as a label.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum GossipTopic {
    /// New blocks.
    Block,
    /// New transactions.
    Tx,
}

/// What the node made of a gossip message, as a label.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Verdict {
    /// Valid and new: forwarded.
    Accepted,
    /// A duplicate, an orphan, or declined by policy: dropped.
    Ignored,
    /// Invalid: dropped, and the sender penalised.
    Rejected,
}

/// Encodes each enum as a label value: its variants' names in lower case.
macro_rules! label_values {
    ($($enum:ident { $($variant:ident => $name:literal),+ })+) => {$(
        impl EncodeLabelValue for $enum {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
                let name = match self { $($enum::$variant => $name),+ };
                EncodeLabelValue::encode(&name, encoder)
            }
        }
    )+};
}

label_values! {
    GossipTopic { Block => "block", Tx => "tx" }
    Verdict { Accepted => "accepted", Ignored => "ignored", Rejected => "rejected" }
    Direction { Inbound => "inbound", Outbound => "outbound" }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GossipLabels {
    topic: GossipTopic,
    verdict: Verdict,
}

/// A peer's connection direction, as a label.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

/// Gossip messages by topic and verdict: `tinychain_gossip_messages_total`.
/// Held by the network, which reports every verdict to gossipsub.
#[derive(Debug, Clone, Default)]
pub struct GossipCounter(Family<GossipLabels, Counter>);

impl GossipCounter {
    /// Makes the counter and registers it under [`PREFIX`].
    pub fn register(registry: &mut Registry) -> GossipCounter {
        GossipCounter(registered(
            registry.sub_registry_with_prefix(PREFIX),
            "gossip_messages",
            "Gossip messages received, by topic and verdict (accepted: forwarded; \
             ignored: duplicate, orphan or policy; rejected: invalid, the sender penalised)",
        ))
    }

    /// Counts one message on `topic` judged `acceptance`.
    pub fn count(&self, topic: GossipTopic, acceptance: &MessageAcceptance) {
        let verdict = match acceptance {
            MessageAcceptance::Accept => Verdict::Accepted,
            MessageAcceptance::Ignore => Verdict::Ignored,
            MessageAcceptance::Reject => Verdict::Rejected,
        };
        self.0.get_or_create(&GossipLabels { topic, verdict }).inc();
    }
}

/// The node's own metrics (all but gossip verdicts, which the network counts).
#[derive(Debug)]
pub struct Metrics {
    chain_height: Gauge,
    best_header_height: Gauge,
    chainwork: Gauge<f64, AtomicU64>,
    peers: Family<DirectionLabels, Gauge>,
    banned_peers: Gauge,
    mempool_transactions: Gauge,
    mempool_bytes: Gauge,
    orphan_transactions: Gauge,
    orphan_blocks: Gauge,
    syncing: Gauge,
    blocks_in_flight: Gauge,
    best_peer_height: Gauge,
    blocks_connected: Counter,
    blocks_disconnected: Counter,
    reorgs: Counter,
    signatures_cached: Counter,
    miner_threads: Gauge,
    miner_hashes: Counter,
    miner_hash_rate: Gauge<f64, AtomicU64>,
    /// The running miner's hash count when last read (a new miner starts at 0).
    miner_hashes_seen: u64,
    /// [`Metrics::miner_hashes`] and the time at the last hash-rate update.
    rate_base: Option<(u64, Instant)>,
}

impl Metrics {
    /// Makes the metrics and registers them under [`PREFIX`].
    pub fn register(registry: &mut Registry) -> Metrics {
        let r = registry.sub_registry_with_prefix(PREFIX);
        Metrics {
            chain_height: registered(r, "chain_height", "Height of the active chain's tip"),
            best_header_height: registered(
                r,
                "best_header_height",
                "Height of the best valid header known (ahead of the tip while syncing)",
            ),
            chainwork: registered(r, "chainwork", "Cumulative work of the tip (a float)"),
            peers: registered(r, "peers", "Connected peers, by direction"),
            banned_peers: registered(r, "banned_peers", "Peers banned now"),
            mempool_transactions: registered(
                r,
                "mempool_transactions",
                "Transactions in the mempool",
            ),
            mempool_bytes: registered(
                r,
                "mempool_bytes",
                "Serialized size of the mempool's transactions",
            ),
            orphan_transactions: registered(
                r,
                "orphan_transactions",
                "Transactions waiting for a missing parent",
            ),
            orphan_blocks: registered(r, "orphan_blocks", "Blocks waiting for a missing parent"),
            syncing: registered(
                r,
                "syncing",
                "1 while the node knows of a chain with more work than its tip, else 0",
            ),
            blocks_in_flight: registered(
                r,
                "blocks_in_flight",
                "Blocks requested from peers and not yet delivered",
            ),
            best_peer_height: registered(
                r,
                "best_peer_height",
                "The highest tip a connected peer claims",
            ),
            blocks_connected: registered(
                r,
                "blocks_connected",
                "Blocks connected to the active chain",
            ),
            blocks_disconnected: registered(
                r,
                "blocks_disconnected",
                "Blocks disconnected from the active chain by reorganisations",
            ),
            reorgs: registered(r, "reorgs", "Reorganisations of the active chain"),
            signatures_cached: registered(
                r,
                "signatures_cached",
                "Input signatures of connected blocks not checked again: checked when their transaction entered the mempool",
            ),
            miner_threads: registered(r, "miner_threads", "Mining threads running"),
            miner_hashes: registered(r, "miner_hashes", "Block header hashes computed"),
            miner_hash_rate: registered(
                r,
                "miner_hash_rate",
                "Hashes per second, over the last few seconds",
            ),
            miner_hashes_seen: 0,
            rate_base: None,
        }
    }

    /// Sets the gauges that mirror the node's state.
    pub fn observe(&self, s: &Snapshot) {
        self.chain_height.set(s.chain_height.into());
        self.best_header_height.set(s.best_header_height.into());
        self.chainwork.set(s.chainwork);
        self.peers
            .get_or_create(&DirectionLabels { direction: Direction::Inbound })
            .set(gauge(s.peers_inbound));
        self.peers
            .get_or_create(&DirectionLabels { direction: Direction::Outbound })
            .set(gauge(s.peers_outbound));
        self.banned_peers.set(gauge(s.banned_peers));
        self.mempool_transactions.set(gauge(s.mempool_transactions));
        self.mempool_bytes.set(i64::try_from(s.mempool_bytes).unwrap_or(i64::MAX));
        self.orphan_transactions.set(gauge(s.orphan_transactions));
        self.orphan_blocks.set(gauge(s.orphan_blocks));
        self.syncing.set(s.syncing.into());
        self.blocks_in_flight.set(gauge(s.blocks_in_flight));
        self.best_peer_height.set(s.best_peer_height.into());
        self.miner_threads.set(gauge(s.miner_threads));
    }

    /// Counts a tip change: `connected` blocks connected after `disconnected`
    /// were disconnected (a reorganisation when that is not zero), sparing
    /// `signatures_cached` signature checks.
    pub fn tip_changed(&self, connected: usize, disconnected: usize, signatures_cached: usize) {
        self.blocks_connected.inc_by(connected as u64);
        self.signatures_cached.inc_by(signatures_cached as u64);
        if disconnected > 0 {
            self.blocks_disconnected.inc_by(disconnected as u64);
            self.reorgs.inc();
        }
    }

    /// Adds the hashes the running miner computed since the last call;
    /// `total` is its own count so far (`None`: no miner). Call it before a
    /// miner stops, so its last hashes are counted.
    pub fn count_hashes(&mut self, total: Option<u64>) {
        let total = total.unwrap_or(0);
        // A smaller count than last time is a new miner, counting from zero.
        let new = total.checked_sub(self.miner_hashes_seen).unwrap_or(total);
        self.miner_hashes.inc_by(new);
        self.miner_hashes_seen = total;
    }

    /// Updates the hash rate from the hashes counted since the last update, and returns it.
    pub fn update_hash_rate(&mut self, now: Instant) -> f64 {
        let hashes = self.miner_hashes.get();
        let rate = match self.rate_base {
            Some((before, then)) if now > then => {
                hashes.saturating_sub(before) as f64 / now.duration_since(then).as_secs_f64()
            }
            _ => 0.0,
        };
        self.rate_base = Some((hashes, now));
        self.miner_hash_rate.set(rate);
        rate
    }
}

/// Makes a metric and registers it in `registry`.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

/// A count as a gauge value (counts of things in memory always fit).
fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn encoded(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
        text
    }

    #[test]
    fn gauges_show_the_snapshot_and_counters_count() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let gossip = GossipCounter::register(&mut registry);
        metrics.observe(&Snapshot {
            chain_height: 12,
            peers_inbound: 2,
            mempool_bytes: 345,
            syncing: true,
            ..Snapshot::default()
        });
        metrics.tip_changed(3, 0, 0);
        metrics.tip_changed(2, 1, 7);
        gossip.count(GossipTopic::Block, &MessageAcceptance::Accept);
        gossip.count(GossipTopic::Tx, &MessageAcceptance::Reject);
        gossip.count(GossipTopic::Tx, &MessageAcceptance::Reject);
        let text = encoded(&registry);
        for line in [
            "tinychain_chain_height 12",
            "tinychain_peers{direction=\"inbound\"} 2",
            "tinychain_peers{direction=\"outbound\"} 0",
            "tinychain_mempool_bytes 345",
            "tinychain_syncing 1",
            "tinychain_blocks_connected_total 5",
            "tinychain_blocks_disconnected_total 1",
            "tinychain_reorgs_total 1",
            "tinychain_signatures_cached_total 7",
            "tinychain_gossip_messages_total{topic=\"block\",verdict=\"accepted\"} 1",
            "tinychain_gossip_messages_total{topic=\"tx\",verdict=\"rejected\"} 2",
            "# TYPE tinychain_chainwork gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn hashes_are_counted_across_miner_restarts_and_rated() {
        let mut registry = Registry::default();
        let mut metrics = Metrics::register(&mut registry);
        let start = Instant::now();
        assert_eq!(metrics.update_hash_rate(start), 0.0, "no base yet");
        metrics.count_hashes(Some(1000));
        metrics.count_hashes(Some(3000));
        // Stopped, and a new miner started: its count begins again.
        metrics.count_hashes(None);
        metrics.count_hashes(Some(500));
        // Replaced by one that counted less: a new miner too.
        metrics.count_hashes(Some(500));
        metrics.count_hashes(Some(100));
        assert_eq!(metrics.miner_hashes.get(), 3600);
        let rate = metrics.update_hash_rate(start + Duration::from_secs(2));
        assert!((rate - 1800.0).abs() < 1e-9, "{rate}");
        assert_eq!(metrics.update_hash_rate(start + Duration::from_secs(3)), 0.0);
    }
}
