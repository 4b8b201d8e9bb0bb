//! Rebuilding the [`Model`] from the merged records, in one pass in time order.
//!
//! Owns each node's state while the records go by: its runs (a second `node
//! started` is a restart; what a run left open — connections, mesh entries, a
//! sync — is closed at its last line, and marked as inferred), its tip over
//! time, its listen addresses and agent, the mesh spans, penalties, bans and
//! sync sessions. Connections are collected as one-sided accounts
//! ([`Side`]s) and paired into links by [`super::links`]; tips go to
//! [`super::blocks`] for propagation. Pure.

use std::collections::{BTreeMap, HashMap};

use super::blocks::{self, TipEvent, TipKind};
use super::input::{Entry, InputStats};
use super::links::{self, Side};
use super::model::{Ban, Change, MeshSpan, Model, Node, Penalty, Run, SyncSession, TipAt};
use super::parse::{Conn, Event};
use super::time::{Time, Window};

/// Rebuilds the model from records in time order.
pub fn build(
    entries: &[Entry],
    names: &[(String, String)],
    input: InputStats,
    window: Window,
) -> Model {
    let mut b = Builder::default();
    for entry in entries {
        b.take(entry);
    }
    b.finish(names, input, window)
}

#[derive(Default)]
struct Builder {
    nodes: BTreeMap<String, Node>,
    states: HashMap<String, State>,
    identify_listen: HashMap<String, Vec<String>>,
    sides: Vec<Side>,
    mesh: Vec<MeshSpan>,
    penalties: Vec<Penalty>,
    bans: Vec<Ban>,
    syncs: Vec<SyncSession>,
    tips: Vec<TipEvent>,
    timeline: Vec<Change>,
    start: Option<Time>,
    end: Option<Time>,
}

/// What a logged node has open.
#[derive(Default)]
struct State {
    last: Time,
    running: bool,
    /// The running run was opened by a line of another message, not `node started`,
    /// and nothing but such lines came since: a start line then is the same run's.
    tentative: bool,
    sides: Vec<usize>,
    mesh: HashMap<(String, String), usize>,
    sync: Option<usize>,
}

impl Builder {
    fn node(&mut self, id: &str) -> &mut Node {
        self.nodes
            .entry(id.to_owned())
            .or_insert_with(|| Node { id: id.to_owned(), ..Node::default() })
    }

    /// Notes that a peer was named at `t`.
    fn seen_peer(&mut self, id: &str, t: Time) {
        let node = self.node(id);
        node.first_seen.get_or_insert(t);
        node.last_seen = Some(t);
    }

    fn take(&mut self, entry: &Entry) {
        let (n, t) = (&*entry.node, entry.time);
        self.start.get_or_insert(t);
        self.end = Some(t);
        self.seen_peer(n, t);
        self.node(n).logged = true;
        let pre_start =
            matches!(entry.event, Event::LocalPeerId { .. } | Event::NodeStarted { .. });
        if !pre_start && !self.states.get(n).is_some_and(|s| s.running) {
            // The log starts in the middle of a run (rotated, or cut).
            self.open_run(n, t, None, false);
            self.states.entry(n.to_owned()).or_default().tentative = true;
        }
        if !matches!(
            entry.event,
            Event::Other | Event::LocalPeerId { .. } | Event::NodeStarted { .. }
        ) {
            self.states.entry(n.to_owned()).or_default().tentative = false;
        }
        self.event(n, t, &entry.event);
        // libp2p's identity line opens the next run: the last run ended before it.
        if !matches!(entry.event, Event::LocalPeerId { .. }) {
            self.states.entry(n.to_owned()).or_default().last = t;
        }
    }

    fn event(&mut self, n: &str, t: Time, event: &Event) {
        match event {
            Event::NodeStarted { height, tip, .. } => {
                self.forget_tentative_run(n, t);
                self.end_run(n, None, "node restarted without logging this close");
                let restart = !self.node(n).runs.is_empty();
                self.open_run(n, t, *height, restart);
                if let Some(h) = height {
                    self.tip(n, t, *h, tip.clone(), TipKind::Observed);
                }
            }
            Event::Stopped { height, tip } => {
                if let Some(h) = height {
                    self.tip(n, t, *h, tip.clone(), TipKind::Observed);
                }
                self.end_run(n, Some(t), "the node stopped (its close was not logged)");
            }
            Event::Listening { address } => {
                let node = self.node(n);
                if !node.listen.contains(address) {
                    node.listen.push(address.clone());
                }
            }
            Event::LocalPeerId { .. } | Event::Other => {}
            Event::Established { conn, bootstrap } => self.established(n, t, conn, *bootstrap),
            Event::Closed { conn, reason, .. } => self.closed(n, t, conn, reason),
            Event::Identify { peer, agent, listen } => {
                self.seen_peer(peer, t);
                if agent.is_some() {
                    self.node(peer).agent.clone_from(agent);
                }
                self.identify_listen.insert(peer.clone(), listen.clone());
            }
            Event::Mesh { peer, topic, joined } => self.mesh(n, t, peer, topic, *joined),
            Event::Penalised { peer, score, reason } => {
                self.seen_peer(peer, t);
                let (node, peer, reason) = (n.to_owned(), peer.clone(), reason.clone());
                self.penalties.push(Penalty { time: t, node, peer, score: *score, reason });
            }
            Event::Banned { peer, reason, until } => {
                self.seen_peer(peer, t);
                let (node, peer, reason) = (n.to_owned(), peer.clone(), reason.clone());
                self.timeline.push(Change::Banned {
                    time: t,
                    node: node.clone(),
                    peer: peer.clone(),
                    reason: reason.clone(),
                });
                self.bans.push(Ban { time: t, node, peer, reason, until: *until });
            }
            Event::NewTip { hash, height, disconnected } => {
                let kind = TipKind::NewTip { disconnected: *disconnected };
                self.tip(n, t, *height, Some(hash.clone()), kind);
            }
            Event::BlockMined { hash, height } => {
                let node = n.to_owned();
                let (hash, height) = (hash.clone(), *height);
                self.tips.push(TipEvent { node, time: t, hash, height, kind: TipKind::Mined });
            }
            Event::SyncStart { height, .. } => self.sync_start(n, t, *height),
            Event::SyncProgress { height, .. } => {
                self.sync_height(n, *height);
                self.node(n).tips.push(TipAt { time: t, height: *height, tip: None });
            }
            Event::SyncEnd { height, hash } => {
                self.sync_height(n, *height);
                if let Some(i) = self.states.get_mut(n).and_then(|s| s.sync.take()) {
                    let s = &mut self.syncs[i];
                    s.end = Some(t);
                    let seconds = t.seconds_since(s.start);
                    s.blocks_per_s = (seconds > 0.0)
                        .then(|| (s.to_height.saturating_sub(s.from_height)) as f64 / seconds);
                }
                self.tip(n, t, *height, hash.clone(), TipKind::Observed);
            }
            Event::PeerStatus { peer, height, tip } => {
                self.seen_peer(peer, t);
                let node = self.node(peer);
                // Only for nodes without logs of their own (see `finish`); only changes kept.
                if !node.logged && node.tips.last().is_none_or(|last| last.tip != *tip) {
                    node.tips.push(TipAt { time: t, height: *height, tip: tip.clone() });
                }
            }
        }
    }

    fn tip(&mut self, n: &str, t: Time, height: u64, hash: Option<String>, kind: TipKind) {
        self.node(n).tips.push(TipAt { time: t, height, tip: hash.clone() });
        if let Some(hash) = hash {
            self.tips.push(TipEvent { node: n.to_owned(), time: t, hash, height, kind });
        }
    }

    /// Drops a run opened only by lines of other messages in the seconds before a
    /// start line at `t` (a process's first lines may come before `node started`).
    fn forget_tentative_run(&mut self, n: &str, t: Time) {
        let recent = self.node(n).runs.last().is_some_and(|r| t.seconds_since(r.start) < 10.0);
        let Some(state) = self.states.get_mut(n).filter(|s| s.running && s.tentative && recent)
        else {
            return;
        };
        state.running = false;
        state.tentative = false;
        self.node(n).runs.pop();
        if let Some(i) = self
            .timeline
            .iter()
            .rposition(|c| matches!(c, Change::NodeStarted { node, .. } if node == n))
        {
            self.timeline.remove(i);
        }
    }

    fn open_run(&mut self, n: &str, t: Time, height: Option<u64>, restart: bool) {
        self.node(n).runs.push(Run { start: t, end: None, ended: "running" });
        if restart {
            self.node(n).restarts += 1;
        }
        self.states.entry(n.to_owned()).or_default().running = true;
        self.timeline.push(Change::NodeStarted { time: t, node: n.to_owned(), restart, height });
    }

    /// Ends the running run of `n`: at `stop` (its `stopped` line), or at its last line.
    fn end_run(&mut self, n: &str, stop: Option<Time>, reason: &str) {
        let Some(state) = self.states.get_mut(n).filter(|s| s.running) else { return };
        state.running = false;
        let t = stop.unwrap_or(state.last);
        let sides = std::mem::take(&mut state.sides);
        let mesh: Vec<usize> = state.mesh.drain().map(|(_, i)| i).collect();
        state.sync = None;
        for i in sides {
            self.sides[i].close(t, reason, true);
        }
        for i in mesh {
            self.mesh[i].to = Some(t);
        }
        if let Some(run) = self.node(n).runs.last_mut() {
            run.end = Some(t);
            run.ended = if stop.is_some() { "stopped" } else { "vanished" };
        }
        let clean = stop.is_some();
        self.timeline.push(Change::NodeStopped { time: t, node: n.to_owned(), clean });
    }

    fn established(&mut self, n: &str, t: Time, conn: &Conn, bootstrap: bool) {
        self.seen_peer(&conn.peer, t);
        self.sides.push(Side::opened(n, t, conn, bootstrap));
        let i = self.sides.len() - 1;
        self.states.entry(n.to_owned()).or_default().sides.push(i);
    }

    fn closed(&mut self, n: &str, t: Time, conn: &Conn, reason: &str) {
        self.seen_peer(&conn.peer, t);
        let state = self.states.entry(n.to_owned()).or_default();
        let found = links::find_open(&self.sides, &state.sides, conn);
        match found {
            Some(pos) => {
                let i = state.sides.remove(pos);
                self.sides[i].close(t, reason, false);
            }
            None => {
                // Opened before the logs begin.
                let mut side = Side::opened(n, t, conn, false);
                side.opened = None;
                side.close(t, reason, false);
                self.sides.push(side);
            }
        }
    }

    fn mesh(&mut self, n: &str, t: Time, peer: &str, topic: &str, joined: bool) {
        self.seen_peer(peer, t);
        let state = self.states.entry(n.to_owned()).or_default();
        let key = (peer.to_owned(), topic.to_owned());
        if joined {
            if let std::collections::hash_map::Entry::Vacant(slot) = state.mesh.entry(key) {
                slot.insert(self.mesh.len());
                let (node, peer, topic) = (n.to_owned(), peer.to_owned(), topic.to_owned());
                self.mesh.push(MeshSpan { node, peer, topic, from: t, to: None });
            }
        } else if let Some(i) = state.mesh.remove(&key) {
            self.mesh[i].to = Some(t);
        }
    }

    fn sync_start(&mut self, n: &str, t: Time, height: u64) {
        let i = self.syncs.len();
        self.syncs.push(SyncSession {
            node: n.to_owned(),
            start: t,
            end: None,
            from_height: height,
            to_height: height,
            blocks_per_s: None,
        });
        self.states.entry(n.to_owned()).or_default().sync = Some(i);
    }

    fn sync_height(&mut self, n: &str, height: u64) {
        if let Some(i) = self.states.get(n).and_then(|s| s.sync) {
            self.syncs[i].to_height = height;
        }
    }

    fn finish(mut self, names: &[(String, String)], input: InputStats, window: Window) -> Model {
        for (id, name) in names {
            self.node(id).name = Some(name.clone());
        }
        for (id, listen) in std::mem::take(&mut self.identify_listen) {
            let node = self.node(&id);
            if node.listen.is_empty() {
                node.listen = listen;
            }
        }
        for node in self.nodes.values_mut() {
            if !node.logged {
                node.runs.clear();
            }
            if let Some(last) = node.tips.last() {
                node.height = Some(last.height);
                node.tip.clone_from(&last.tip);
            }
        }
        let logged: Vec<&str> =
            self.nodes.values().filter(|n| n.logged).map(|n| n.id.as_str()).collect();
        let range = (self.start.unwrap_or_default(), self.end.unwrap_or_default());
        let linked = links::pair(self.sides, &logged, range);
        self.timeline.extend(linked.changes);
        self.timeline.sort_by_key(Change::time);
        let spread = blocks::spread(self.tips, window, range);
        let mut skew = linked.skew;
        skew.extend(spread.skew);
        Model {
            start: self.start,
            end: self.end,
            input,
            nodes: self.nodes.into_values().collect(),
            links: linked.links,
            mesh: self.mesh,
            penalties: self.penalties,
            bans: self.bans,
            syncs: self.syncs,
            blocks: spread.blocks,
            propagation: spread.propagation,
            skew,
            timeline: self.timeline,
        }
    }
}
