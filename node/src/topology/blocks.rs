//! Block propagation from the logs: when each node first had each block.
//!
//! Owns turning the nodes' tip lines into [`BlockSpread`]s. A block's origin is
//! the node that logged `block mined` for it (else the first node to have it);
//! a node has a block from its first `new tip` naming it, or naming a
//! descendant: parents are learnt from consecutive tips (a node whose tip goes
//! from X at height h to Y at h + 1 with nothing disconnected says X is Y's
//! parent), so a node that got two blocks in one step is counted for both.
//! Blocks connected while a node was syncing are not logged at info level and
//! are not counted: this measures gossip, not initial download. A node that
//! "had" a block before it was mined reveals clock skew, reported as such.
//! Pure.

use std::collections::{BTreeMap, HashMap};

use super::model::{BlockSpread, Propagation, Seen, Skew};
use super::time::{Time, Window, human_seconds};

/// A node's tip seen earlier than its origin by more than this is reported as skew.
const SKEW_REPORTED_MS: f64 = 100.0;
/// Ancestors credited to a node in one step at most (a longer jump is a sync or a reorg).
const MAX_DESCENDANT_WALK: usize = 1_000;

/// What a tip line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TipKind {
    /// `new tip`.
    NewTip {
        /// Blocks disconnected to get there (a reorg).
        disconnected: u64,
    },
    /// `block mined`.
    Mined,
    /// A tip named at a start, a stop or the end of a sync (not a first sighting).
    Observed,
}

/// One tip line.
#[derive(Clone, Debug)]
pub struct TipEvent {
    /// The node that logged it.
    pub node: String,
    /// When.
    pub time: Time,
    /// The block.
    pub hash: String,
    /// Its height.
    pub height: u64,
    /// Which line.
    pub kind: TipKind,
}

/// Blocks, propagation over the window, and skew.
#[derive(Debug, Default)]
pub struct Spread {
    /// Each block seen, in the order it appeared.
    pub blocks: Vec<BlockSpread>,
    /// Over the window.
    pub propagation: Propagation,
    /// Nodes that had blocks before they were mined.
    pub skew: Vec<Skew>,
}

#[derive(Default)]
struct BlockFacts {
    height: u64,
    mined: Option<(String, Time)>,
    /// Per node: first time, and whether through a descendant.
    seen: BTreeMap<String, (Time, bool)>,
}

/// Measures each block's spread; `events` in time order, `range` the logs' first and last times.
pub fn spread(events: Vec<TipEvent>, window: Window, range: (Time, Time)) -> Spread {
    let mut by_node: BTreeMap<&str, Vec<&TipEvent>> = BTreeMap::new();
    for e in &events {
        by_node.entry(&e.node).or_default().push(e);
    }
    let parents = parents(&by_node);
    let mut facts: HashMap<&str, BlockFacts> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for e in events.iter().filter(|e| e.kind != TipKind::Observed) {
        let f = facts.entry(&e.hash).or_insert_with(|| {
            order.push(&e.hash);
            BlockFacts::default()
        });
        f.height = e.height;
        f.seen.entry(e.node.clone()).or_insert((e.time, false));
        if e.kind == TipKind::Mined {
            f.mined.get_or_insert((e.node.clone(), e.time));
        }
    }
    for (node, events) in &by_node {
        for pair in events.windows(2) {
            if let TipKind::NewTip { disconnected } = pair[1].kind {
                let fork = pair[0].height.saturating_sub(disconnected);
                credit_ancestors(&mut facts, &parents, node, pair[1], fork);
            }
        }
    }
    let mut blocks: Vec<BlockSpread> = order.iter().map(|h| block(h, &facts[h])).collect();
    blocks.sort_by_key(|b| (b.origin_time, b.height));
    let propagation = over_window(&blocks, window, range);
    let skew = skew(&blocks);
    Spread { blocks, propagation, skew }
}

/// Parent links from each node's consecutive tips one height apart.
fn parents<'a>(by_node: &BTreeMap<&str, Vec<&'a TipEvent>>) -> HashMap<&'a str, &'a str> {
    let mut parents = HashMap::new();
    for events in by_node.values() {
        for pair in events.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let reorg = matches!(after.kind, TipKind::NewTip { disconnected } if disconnected > 0);
            if after.height == before.height + 1 && !reorg && before.hash != after.hash {
                parents.entry(after.hash.as_str()).or_insert(before.hash.as_str());
            }
        }
    }
    parents
}

/// Credits `node` with the ancestors of its new tip above the fork point it had.
fn credit_ancestors<'a>(
    facts: &mut HashMap<&'a str, BlockFacts>,
    parents: &HashMap<&'a str, &'a str>,
    node: &str,
    tip: &TipEvent,
    fork: u64,
) {
    let mut at = parents.get(tip.hash.as_str()).copied();
    let mut height = tip.height;
    for _ in 0..MAX_DESCENDANT_WALK {
        let Some(hash) = at else { break };
        height = height.saturating_sub(1);
        if height <= fork {
            break;
        }
        if let Some(f) = facts.get_mut(hash) {
            let credit = (tip.time, true);
            f.seen.entry(node.to_owned()).and_modify(|v| *v = (*v).min(credit)).or_insert(credit);
        }
        at = parents.get(hash).copied();
    }
}

fn block(hash: &str, f: &BlockFacts) -> BlockSpread {
    let first = f.seen.iter().min_by_key(|(_, (t, _))| *t);
    let (origin, origin_time) = match (&f.mined, first) {
        (Some((node, t)), _) => (node.clone(), *t),
        (None, Some((node, (t, _)))) => (node.clone(), *t),
        (None, None) => (String::new(), Time::default()),
    };
    let seen: Vec<Seen> = f
        .seen
        .iter()
        .filter(|(node, _)| **node != origin)
        .map(|(node, (time, via))| Seen {
            node: node.clone(),
            time: *time,
            delay_ms: time.seconds_since(origin_time) * 1000.0,
            via_descendant: *via,
        })
        .collect();
    let delays: Vec<f64> = seen.iter().map(|s| s.delay_ms).collect();
    let (p50_ms, p90_ms, max_ms) = quantiles(delays);
    BlockSpread {
        hash: hash.to_owned(),
        height: f.height,
        origin,
        mined: f.mined.is_some(),
        origin_time,
        seen,
        p50_ms,
        p90_ms,
        max_ms,
    }
}

/// p50, p90 and max (nearest rank).
pub fn quantiles(mut values: Vec<f64>) -> (Option<f64>, Option<f64>, Option<f64>) {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let n = values.len();
        (n > 0).then(|| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
    };
    (rank(0.5), rank(0.9), values.last().copied())
}

fn over_window(blocks: &[BlockSpread], window: Window, range: (Time, Time)) -> Propagation {
    let (from, to) = (window.from.resolve(range.0, range.1), window.to.resolve(range.0, range.1));
    let inside: Vec<&BlockSpread> =
        blocks.iter().filter(|b| b.origin_time >= from && b.origin_time <= to).collect();
    let delays: Vec<f64> = inside.iter().flat_map(|b| b.seen.iter().map(|s| s.delay_ms)).collect();
    let count = delays.len();
    let (p50_ms, p90_ms, max_ms) = quantiles(delays);
    Propagation {
        from: Some(from),
        to: Some(to),
        blocks: inside.len(),
        measured: inside.iter().filter(|b| !b.seen.is_empty()).count(),
        delays: count,
        p50_ms,
        p90_ms,
        max_ms,
    }
}

/// One note per pair where a node had an origin's mined blocks before they were
/// mined: the origin's clock is ahead (or the other's behind).
fn skew(blocks: &[BlockSpread]) -> Vec<Skew> {
    let mut worst: BTreeMap<(&str, &str), (f64, usize, &str)> = BTreeMap::new();
    for b in blocks.iter().filter(|b| b.mined) {
        for s in b.seen.iter().filter(|s| s.delay_ms < -SKEW_REPORTED_MS) {
            let w = worst.entry((&b.origin, &s.node)).or_insert((0.0, 0, &b.hash));
            w.1 += 1;
            if s.delay_ms < w.0 {
                (w.0, w.2) = (s.delay_ms, &b.hash);
            }
        }
    }
    worst
        .into_iter()
        .map(|((ahead, behind), (ms, n, hash))| Skew {
            ahead: ahead.to_owned(),
            behind: behind.to_owned(),
            seconds: -ms / 1000.0,
            evidence: format!(
                "{n} block(s) {ahead} mined were logged by {behind} before they were mined, \
                 by up to {} (block {hash})",
                human_seconds(-ms / 1000.0)
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::time::Moment;

    fn ev(node: &str, ms: i64, hash: &str, height: u64, kind: TipKind) -> TipEvent {
        TipEvent {
            node: node.into(),
            time: Time::from_micros(ms * 1000),
            hash: hash.into(),
            height,
            kind,
        }
    }

    const TIP: TipKind = TipKind::NewTip { disconnected: 0 };

    fn all() -> Window {
        Window { from: Moment::Start, to: Moment::End }
    }

    #[test]
    fn delays_count_from_the_mined_line_and_a_jump_credits_the_ancestor() {
        let events = vec![
            ev("M", 0, "g", 0, TipKind::Observed),
            ev("B", 0, "g", 0, TipKind::Observed),
            ev("C", 0, "g", 0, TipKind::Observed),
            ev("M", 1000, "b1", 1, TipKind::Mined),
            ev("M", 1001, "b1", 1, TIP),
            ev("B", 1040, "b1", 1, TIP),
            ev("M", 2000, "b2", 2, TipKind::Mined),
            ev("M", 2001, "b2", 2, TIP),
            ev("B", 2030, "b2", 2, TIP),
            // C missed b1's gossip and connected both when b2 came.
            ev("C", 2100, "b2", 2, TIP),
        ];
        let s = spread(events, all(), (Time::from_micros(0), Time::from_micros(3_000_000)));
        assert_eq!(s.blocks.len(), 2);
        let b1 = &s.blocks[0];
        assert_eq!((b1.hash.as_str(), b1.origin.as_str(), b1.mined), ("b1", "M", true));
        let c = b1.seen.iter().find(|x| x.node == "C").expect("C credited with b1");
        assert!(c.via_descendant);
        assert_eq!(c.delay_ms, 1100.0);
        assert_eq!((b1.p50_ms, b1.max_ms), (Some(40.0), Some(1100.0)));
        assert_eq!((s.propagation.blocks, s.propagation.measured, s.propagation.delays), (2, 2, 4));
        assert!(s.skew.is_empty());
    }

    #[test]
    fn a_block_seen_before_it_was_mined_is_skew_not_hidden() {
        let events = vec![ev("B", 500, "b1", 1, TIP), ev("M", 1000, "b1", 1, TipKind::Mined)];
        let s = spread(events, all(), (Time::from_micros(0), Time::from_micros(2_000_000)));
        assert_eq!(s.blocks[0].seen[0].delay_ms, -500.0);
        let skew = &s.skew[0];
        assert_eq!((skew.ahead.as_str(), skew.behind.as_str(), skew.seconds), ("M", "B", 0.5));
    }

    #[test]
    fn without_a_mined_line_the_first_to_have_it_is_the_origin() {
        let events = vec![ev("A", 10, "x", 5, TIP), ev("B", 30, "x", 5, TIP)];
        let s = spread(events, all(), (Time::from_micros(0), Time::from_micros(1_000_000)));
        let b = &s.blocks[0];
        assert_eq!((b.origin.as_str(), b.mined, b.max_ms), ("A", false, Some(20.0)));
    }

    #[test]
    fn the_window_keeps_blocks_that_originated_in_it() {
        let events = vec![
            ev("M", 1000, "b1", 1, TipKind::Mined),
            ev("B", 1010, "b1", 1, TIP),
            ev("M", 9000, "b2", 2, TipKind::Mined),
            ev("B", 9500, "b2", 2, TIP),
        ];
        let window = Window::parse("+5s..").expect("a window");
        let s = spread(events, window, (Time::from_micros(0), Time::from_micros(10_000_000)));
        assert_eq!((s.propagation.blocks, s.propagation.max_ms), (1, Some(500.0)));
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quantiles(v), (Some(5.0), Some(9.0), Some(10.0)));
        assert_eq!(quantiles(vec![]), (None, None, None));
        assert_eq!(quantiles(vec![7.0]), (Some(7.0), Some(7.0), Some(7.0)));
    }
}
