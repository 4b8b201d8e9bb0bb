//! The network's history as rebuilt from its logs: the types `--format json` prints.
//!
//! Owns the data model shared by the builder ([`super::build`]) and the
//! renderers: nodes and their runs, links made of connections seen from one or
//! both ends, gossip mesh spans, penalties, bans, sync sessions, block spread
//! and the clock skew the logs give away. Plain data, serialisable; no logic
//! beyond small queries on it.

use serde::Serialize;

use super::input::InputStats;
use super::time::Time;

/// Everything the logs tell about the network.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Model {
    /// The first line's time.
    pub start: Option<Time>,
    /// The last line's time.
    pub end: Option<Time>,
    /// What was read.
    pub input: InputStats,
    /// Every node that wrote a log or was named as a peer, by peer id.
    pub nodes: Vec<Node>,
    /// Every pair of nodes that was ever connected.
    pub links: Vec<Link>,
    /// Gossip mesh membership: who had whom in its mesh, per topic, when.
    pub mesh: Vec<MeshSpan>,
    /// Peers penalised.
    pub penalties: Vec<Penalty>,
    /// Peers banned.
    pub bans: Vec<Ban>,
    /// Initial block download and catch-up sessions.
    pub syncs: Vec<SyncSession>,
    /// Each block: when each node first had it.
    pub blocks: Vec<BlockSpread>,
    /// Block propagation over the window (`--window`).
    pub propagation: Propagation,
    /// Clock differences the logs reveal (events seen before their cause).
    pub skew: Vec<Skew>,
    /// Link changes and node starts and stops, in time order.
    pub timeline: Vec<Change>,
}

/// A node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Node {
    /// Peer id.
    pub id: String,
    /// The name it logs under (`--log-name`), if any.
    pub name: Option<String>,
    /// Whether any of its own log lines were read (otherwise it is known only as a peer).
    pub logged: bool,
    /// Its listen addresses (its own `listening` lines, or what it told peers by identify).
    pub listen: Vec<String>,
    /// Its agent version (from peers' identify).
    pub agent: Option<String>,
    /// Its first line, or the first time a peer named it.
    pub first_seen: Option<Time>,
    /// Its last line, or the last time a peer named it.
    pub last_seen: Option<Time>,
    /// Its runs, from each `node started` to its stop (or its last line before the next start).
    pub runs: Vec<Run>,
    /// Starts after the first.
    pub restarts: usize,
    /// Its height and tip at the end.
    pub height: Option<u64>,
    /// Its tip hash at the end (unknown when its last height came from sync progress).
    pub tip: Option<String>,
    /// Its tip over time.
    pub tips: Vec<TipAt>,
}

/// One run of a node's process.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// When it started (`node started`, or its first line).
    pub start: Time,
    /// When it ended: its `stopped` line, or its last line before the next start.
    pub end: Option<Time>,
    /// `stopped` (clean), `vanished` (no stop line: killed, crashed, or the log was cut),
    /// or `running` (at the end of the logs).
    pub ended: &'static str,
}

/// A node's tip from some moment on.
#[derive(Clone, Debug, Serialize)]
pub struct TipAt {
    /// From when.
    pub time: Time,
    /// Height.
    pub height: u64,
    /// Hash (unknown while syncing: progress lines carry heights only).
    pub tip: Option<String>,
}

/// A pair of nodes and every connection between them.
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    /// One end (the smaller peer id).
    pub a: String,
    /// The other end.
    pub b: String,
    /// Who dialed: `a`, `b` or `both`.
    pub dialed_by: &'static str,
    /// Whether either end counts the other as a bootstrap peer.
    pub bootstrap: bool,
    /// Seconds with at least one connection up.
    pub up_seconds: f64,
    /// The connections, in the order they opened.
    pub connections: Vec<Connection>,
    /// The link going up and down.
    pub changes: Vec<LinkChange>,
}

/// One connection, as its two ends logged it.
#[derive(Clone, Debug, Serialize)]
pub struct Connection {
    /// The node that dialed.
    pub dialer: String,
    /// The node that was dialed.
    pub listener: String,
    /// The dialer's `connection_id` for it.
    pub dialer_id: Option<u64>,
    /// The listener's `connection_id` for it.
    pub listener_id: Option<u64>,
    /// The address dialed.
    pub address: Option<String>,
    /// A bootstrap connection (either end says so).
    pub bootstrap: bool,
    /// When it opened (the earlier end's time), if the logs go back that far.
    pub opened: Option<Time>,
    /// When it closed (the earlier end's time); none if still open at the end.
    pub closed: Option<Time>,
    /// Each end's account of the close.
    pub closes: Vec<Close>,
    /// `both`, `dialer` or `listener`: whose logs mention it.
    pub seen_by: &'static str,
}

/// One end's account of a close.
#[derive(Clone, Debug, Serialize)]
pub struct Close {
    /// The node whose log says it.
    pub node: String,
    /// When.
    pub time: Time,
    /// Why (`peer closed`, `ping timeout`, ...).
    pub reason: String,
    /// Not logged but inferred (the node restarted or stopped without logging it).
    pub inferred: bool,
}

/// A link going up or down.
#[derive(Clone, Debug, Serialize)]
pub struct LinkChange {
    /// When.
    pub time: Time,
    /// Up (a first connection opened) or down (the last one closed).
    pub up: bool,
    /// For a change down, the reasons given by each end.
    pub reason: Option<String>,
}

/// A peer in a node's gossip mesh for a while.
#[derive(Clone, Debug, Serialize)]
pub struct MeshSpan {
    /// The node whose mesh it is.
    pub node: String,
    /// The peer in it.
    pub peer: String,
    /// The topic.
    pub topic: String,
    /// From when.
    pub from: Time,
    /// Until when (none: still at the end).
    pub to: Option<Time>,
}

/// A penalty.
#[derive(Clone, Debug, Serialize)]
pub struct Penalty {
    /// When.
    pub time: Time,
    /// Who penalised.
    pub node: String,
    /// Whom.
    pub peer: String,
    /// The peer's score after it.
    pub score: i64,
    /// Why.
    pub reason: String,
}

/// A ban.
#[derive(Clone, Debug, Serialize)]
pub struct Ban {
    /// When.
    pub time: Time,
    /// Who banned.
    pub node: String,
    /// Whom.
    pub peer: String,
    /// Why.
    pub reason: String,
    /// Until (unix time).
    pub until: Option<i64>,
}

/// A sync session of one node.
#[derive(Clone, Debug, Serialize)]
pub struct SyncSession {
    /// The node.
    pub node: String,
    /// When it started.
    pub start: Time,
    /// When it ended (none: still syncing, or interrupted by a stop).
    pub end: Option<Time>,
    /// Height at the start.
    pub from_height: u64,
    /// Height at the end (or at the last progress line).
    pub to_height: u64,
    /// Blocks connected per second over the session.
    pub blocks_per_s: Option<f64>,
}

/// When each node first had a block.
#[derive(Clone, Debug, Serialize)]
pub struct BlockSpread {
    /// The block.
    pub hash: String,
    /// Its height.
    pub height: u64,
    /// The node it came from: the one that logged mining it, else the first to have it.
    pub origin: String,
    /// Whether the origin logged `block mined` (otherwise it is only the first seen).
    pub mined: bool,
    /// When it was mined (or first seen).
    pub origin_time: Time,
    /// Each other node's first time with it as its tip.
    pub seen: Vec<Seen>,
    /// Median delay after the origin, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile delay, ms.
    pub p90_ms: Option<f64>,
    /// Largest delay, ms.
    pub max_ms: Option<f64>,
}

/// A node's first time with a block.
#[derive(Clone, Debug, Serialize)]
pub struct Seen {
    /// The node.
    pub node: String,
    /// When its tip became this block or a descendant of it.
    pub time: Time,
    /// Milliseconds after the origin (negative: the clocks disagree).
    pub delay_ms: f64,
    /// The node's tip jumped past it (a descendant arrived in the same step).
    pub via_descendant: bool,
}

/// Propagation over a window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Propagation {
    /// Window start.
    pub from: Option<Time>,
    /// Window end.
    pub to: Option<Time>,
    /// Blocks that originated in it.
    pub blocks: usize,
    /// Of them, blocks that reached at least one other node in the logs.
    pub measured: usize,
    /// Delays counted (one per block and node that had it).
    pub delays: usize,
    /// Median delay, ms.
    pub p50_ms: Option<f64>,
    /// 90th percentile, ms.
    pub p90_ms: Option<f64>,
    /// Largest, ms.
    pub max_ms: Option<f64>,
}

/// A clock difference the logs reveal.
#[derive(Clone, Debug, Serialize)]
pub struct Skew {
    /// The node whose clock seems ahead.
    pub ahead: String,
    /// The node it is compared with.
    pub behind: String,
    /// By at least this many seconds.
    pub seconds: f64,
    /// What shows it.
    pub evidence: String,
}

/// One entry of the timeline.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Change {
    /// A node (re)started.
    NodeStarted { time: Time, node: String, restart: bool, height: Option<u64> },
    /// A node stopped cleanly, or its log went quiet before a restart.
    NodeStopped { time: Time, node: String, clean: bool },
    /// A link came up.
    LinkUp { time: Time, a: String, b: String, dialer: String, bootstrap: bool },
    /// A link went down.
    LinkDown { time: Time, a: String, b: String, reason: String },
    /// A node banned a peer.
    Banned { time: Time, node: String, peer: String, reason: String },
}

impl Change {
    /// When it happened.
    pub fn time(&self) -> Time {
        match self {
            Change::NodeStarted { time, .. }
            | Change::NodeStopped { time, .. }
            | Change::LinkUp { time, .. }
            | Change::LinkDown { time, .. }
            | Change::Banned { time, .. } => *time,
        }
    }
}

impl Node {
    /// Returns the listen address to show people: the first not on loopback.
    pub fn shown_listen(&self) -> Option<&str> {
        let loopback = |a: &&String| a.starts_with("/ip4/127.") || a.starts_with("/ip6/::1/");
        self.listen.iter().find(|a| !loopback(a)).or(self.listen.first()).map(String::as_str)
    }
}

impl Model {
    /// Returns the node with this peer id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Returns a node's display name: its log name, else the end of its peer id.
    pub fn name_of(&self, id: &str) -> String {
        self.node(id).and_then(|n| n.name.clone()).unwrap_or_else(|| short_id(id))
    }

    /// Returns the link between two nodes.
    pub fn link(&self, x: &str, y: &str) -> Option<&Link> {
        let (a, b) = if x <= y { (x, y) } else { (y, x) };
        self.links.iter().find(|l| l.a == a && l.b == b)
    }
}

/// The last 8 characters of a peer id, as people tell peers apart at a glance.
pub fn short_id(id: &str) -> String {
    match id.len().checked_sub(8).and_then(|start| id.get(start..)) {
        Some(tail) if id.len() > 8 => format!("…{tail}"),
        _ => id.to_owned(),
    }
}
