//! Pairing the two ends' accounts of each connection into links.
//!
//! Owns [`Side`] (one node's account of one connection: opened, closed, why)
//! and [`pair`]: a dialer's outbound side and the listener's inbound side of
//! the same connection are matched by their opening times — after allowing for
//! a clock offset between the two machines, which is then reported as skew —
//! and a pair's connections become one [`Link`] with its up and down changes.
//! `connection_id`s are per process, so they tell a node's own connections apart
//! (two connections of one pair), not the two ends. Pure.

use std::collections::BTreeMap;

use super::model::{Change, Close, Connection, Link, LinkChange, Skew};
use super::parse::Conn;
use super::time::{Time, human_seconds};

/// Two ends' opening times closer than this (after the clock offset) are one connection.
const MATCH_TOLERANCE_MICROS: i64 = 5_000_000;
/// An offset between two ends' clocks above this is reported.
const SKEW_REPORTED_MICROS: i64 = 1_000_000;

/// One node's account of one connection.
#[derive(Clone, Debug)]
pub struct Side {
    /// The node whose log it is.
    pub node: String,
    /// The other end.
    pub peer: String,
    /// Its `connection_id`.
    pub id: Option<u64>,
    /// The node dialed.
    pub outbound: bool,
    /// The remote address.
    pub address: Option<String>,
    /// The peer is one of the node's bootstrap peers.
    pub bootstrap: bool,
    /// When it opened (none: before the logs begin).
    pub opened: Option<Time>,
    /// When it closed, why, and whether that is inferred rather than logged.
    pub closed: Option<(Time, String, bool)>,
}

impl Side {
    /// A connection as `node` logged it opening at `t`.
    pub fn opened(node: &str, t: Time, conn: &Conn, bootstrap: bool) -> Side {
        Side {
            node: node.to_owned(),
            peer: conn.peer.clone(),
            id: conn.connection_id,
            outbound: conn.outbound,
            address: conn.address.clone(),
            bootstrap,
            opened: Some(t),
            closed: None,
        }
    }

    /// Records the close (the first one counts).
    pub fn close(&mut self, t: Time, reason: &str, inferred: bool) {
        self.closed.get_or_insert_with(|| (t, reason.to_owned(), inferred));
    }
}

/// Finds which of a node's open sides (`open`: indices into `sides`) a close names:
/// by connection id when the log has them, else by peer, direction and address.
pub fn find_open(sides: &[Side], open: &[usize], conn: &Conn) -> Option<usize> {
    let same_peer = |s: &Side| s.peer == conn.peer;
    let by =
        |f: &dyn Fn(&Side) -> bool| open.iter().position(|&i| same_peer(&sides[i]) && f(&sides[i]));
    match conn.connection_id {
        Some(id) => by(&|s| s.id == Some(id)),
        None => by(&|s| s.outbound == conn.outbound && s.address == conn.address)
            .or_else(|| by(&|s| s.outbound == conn.outbound)),
    }
}

/// Links, their changes for the timeline, and the skew their two ends reveal.
#[derive(Debug, Default)]
pub struct Linked {
    /// Links by pair.
    pub links: Vec<Link>,
    /// Up and down changes.
    pub changes: Vec<Change>,
    /// Clock offsets seen between two ends.
    pub skew: Vec<Skew>,
}

/// Pairs the sides into connections and links. `logged`: nodes whose own logs were
/// read (a side towards any other node has no other end to find); `range`: the
/// logs' first and last times.
pub fn pair(sides: Vec<Side>, logged: &[&str], range: (Time, Time)) -> Linked {
    // Per dialer → listener: the dialer's sides, the listener's sides.
    let mut ways: BTreeMap<(String, String), (Vec<Side>, Vec<Side>)> = BTreeMap::new();
    for side in sides {
        let (dialer, listener) = if side.outbound {
            (side.node.clone(), side.peer.clone())
        } else {
            (side.peer.clone(), side.node.clone())
        };
        let way = ways.entry((dialer, listener)).or_default();
        if side.outbound { way.0.push(side) } else { way.1.push(side) }
    }
    let mut out = Linked::default();
    let mut pairs: BTreeMap<(String, String), Vec<Connection>> = BTreeMap::new();
    for ((dialer, listener), (dials, listens)) in ways {
        let both_logged = logged.contains(&dialer.as_str()) && logged.contains(&listener.as_str());
        let (connections, offset) = match_sides(&dialer, &listener, dials, listens, both_logged);
        if let Some((micros, n)) = offset.filter(|(m, _)| m.abs() > SKEW_REPORTED_MICROS) {
            out.skew.push(connection_skew(&dialer, &listener, micros, n));
        }
        let key = if dialer <= listener { (dialer, listener) } else { (listener, dialer) };
        pairs.entry(key).or_default().extend(connections);
    }
    for ((a, b), mut connections) in pairs {
        connections.sort_by_key(|c| c.opened);
        let (link, changes) = link(a, b, connections, range);
        out.links.push(link);
        out.changes.extend(changes);
    }
    out
}

fn connection_skew(dialer: &str, listener: &str, micros: i64, n: usize) -> Skew {
    let (ahead, behind) = if micros > 0 { (listener, dialer) } else { (dialer, listener) };
    let seconds = micros.abs() as f64 / 1e6;
    Skew {
        ahead: ahead.to_owned(),
        behind: behind.to_owned(),
        seconds,
        evidence: format!(
            "{n} connection(s) {dialer} dialed to {listener}: the listener logged them established {} {} the dialer",
            human_seconds(seconds),
            if micros > 0 { "after" } else { "before" }
        ),
    }
}

/// Matches a dialer's outbound sides with the listener's inbound sides. Returns the
/// connections and, when some were matched, the listener's clock offset (median) and
/// how many matched.
fn match_sides(
    dialer: &str,
    listener: &str,
    mut dials: Vec<Side>,
    mut listens: Vec<Side>,
    both_logged: bool,
) -> (Vec<Connection>, Option<(i64, usize)>) {
    dials.sort_by_key(|s| s.opened);
    listens.sort_by_key(|s| s.opened);
    let pairs = if both_logged { best_matching(&dials, &listens) } else { Vec::new() };
    let offsets: Vec<i64> = pairs
        .iter()
        .filter_map(|&(d, l)| Some(listens[l].opened?.micros() - dials[d].opened?.micros()))
        .collect();
    let offset = median(offsets).map(|m| (m, pairs.len()));
    let mut dials: Vec<Option<Side>> = dials.into_iter().map(Some).collect();
    let mut listens: Vec<Option<Side>> = listens.into_iter().map(Some).collect();
    let mut connections: Vec<Connection> = pairs
        .iter()
        .map(|&(d, l)| connection(dialer, listener, dials[d].take(), listens[l].take()))
        .collect();
    connections
        .extend(dials.into_iter().flatten().map(|d| connection(dialer, listener, Some(d), None)));
    connections
        .extend(listens.into_iter().flatten().map(|l| connection(dialer, listener, None, Some(l))));
    (connections, offset)
}

/// The matching (dialer index, listener index) with the most pairs, trying the
/// clocks as they are and shifted by the offset that aligning the k-th with the
/// k-th suggests.
fn best_matching(dials: &[Side], listens: &[Side]) -> Vec<(usize, usize)> {
    let aligned: Vec<i64> = dials
        .iter()
        .zip(listens)
        .filter_map(|(d, l)| Some(l.opened?.micros() - d.opened?.micros()))
        .collect();
    let mut best = greedy(dials, listens, 0);
    if let Some(offset) = median(aligned) {
        let shifted = greedy(dials, listens, offset);
        if shifted.len() > best.len() {
            best = shifted;
        }
    }
    best
}

fn greedy(dials: &[Side], listens: &[Side], offset: i64) -> Vec<(usize, usize)> {
    let mut taken = vec![false; listens.len()];
    let mut pairs = Vec::new();
    for (d, dial) in dials.iter().enumerate() {
        let Some(t) = dial.opened else { continue };
        let best = listens
            .iter()
            .enumerate()
            .filter(|(l, _)| !taken[*l])
            .filter_map(|(l, s)| Some((l, (s.opened?.micros() - offset - t.micros()).abs())))
            .filter(|(_, gap)| *gap <= MATCH_TOLERANCE_MICROS)
            .min_by_key(|(_, gap)| *gap);
        if let Some((l, _)) = best {
            taken[l] = true;
            pairs.push((d, l));
        }
    }
    pairs
}

fn median(mut values: Vec<i64>) -> Option<i64> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

fn connection(dialer: &str, listener: &str, d: Option<Side>, l: Option<Side>) -> Connection {
    let seen_by = match (&d, &l) {
        (Some(_), Some(_)) => "both",
        (Some(_), None) => "dialer",
        _ => "listener",
    };
    let sides: Vec<Side> = d.iter().chain(l.iter()).cloned().collect();
    let mut closes: Vec<Close> = sides
        .iter()
        .filter_map(|s| {
            let (time, reason, inferred) = s.closed.clone()?;
            Some(Close { node: s.node.clone(), time, reason, inferred })
        })
        .collect();
    closes.sort_by_key(|c| (c.inferred, c.time));
    Connection {
        dialer: dialer.to_owned(),
        listener: listener.to_owned(),
        dialer_id: d.as_ref().and_then(|s| s.id),
        listener_id: l.as_ref().and_then(|s| s.id),
        address: d.as_ref().and_then(|s| s.address.clone()),
        bootstrap: sides.iter().any(|s| s.bootstrap),
        opened: sides.iter().filter_map(|s| s.opened).min(),
        // A close an end logged beats one inferred from a restart's last line.
        closed: closes
            .iter()
            .filter(|c| !c.inferred)
            .map(|c| c.time)
            .min()
            .or_else(|| closes.iter().map(|c| c.time).min()),
        closes,
        seen_by,
    }
}

/// A pair's link: its connections' union over time, as changes up and down.
fn link(
    a: String,
    b: String,
    connections: Vec<Connection>,
    range: (Time, Time),
) -> (Link, Vec<Change>) {
    // +1 at an open, -1 at a close; opens first at equal times (a reconnect is no gap).
    let mut steps: Vec<(Time, i32, usize)> = Vec::new();
    for (i, c) in connections.iter().enumerate() {
        let opened = c.opened.unwrap_or(range.0);
        steps.push((opened, 1, i));
        if let Some(closed) = c.closed {
            steps.push((closed.max(opened), -1, i));
        }
    }
    steps.sort_by_key(|&(t, step, _)| (t, -step));
    let (mut up, mut since, mut up_micros) = (0, range.0, 0i64);
    let (mut changes, mut timeline) = (Vec::new(), Vec::new());
    for (t, step, i) in steps {
        let c = &connections[i];
        if step == 1 && up == 0 {
            since = t;
            changes.push(LinkChange { time: t, up: true, reason: None });
            let (dialer, bootstrap) = (c.dialer.clone(), c.bootstrap);
            timeline.push(Change::LinkUp {
                time: t,
                a: a.clone(),
                b: b.clone(),
                dialer,
                bootstrap,
            });
        }
        up += step;
        if step == -1 && up == 0 {
            up_micros += t.micros() - since.micros();
            let reason = close_reasons(c);
            changes.push(LinkChange { time: t, up: false, reason: Some(reason.clone()) });
            timeline.push(Change::LinkDown { time: t, a: a.clone(), b: b.clone(), reason });
        }
    }
    if up > 0 {
        up_micros += range.1.micros() - since.micros();
    }
    let dialed_a = connections.iter().any(|c| c.dialer == a);
    let dialed_b = connections.iter().any(|c| c.dialer == b);
    let link = Link {
        dialed_by: match (dialed_a, dialed_b) {
            (true, true) => "both",
            (true, false) => "a",
            _ => "b",
        },
        bootstrap: connections.iter().any(|c| c.bootstrap),
        up_seconds: up_micros as f64 / 1e6,
        a,
        b,
        connections,
        changes,
    };
    (link, timeline)
}

/// "A: ping timeout; B: peer closed" (inferred ones marked).
fn close_reasons(c: &Connection) -> String {
    let reasons: Vec<String> = c
        .closes
        .iter()
        .map(|close| {
            let mark = if close.inferred { " (inferred)" } else { "" };
            format!("{}: {}{mark}", close.node, close.reason)
        })
        .collect();
    if reasons.is_empty() { "unknown".to_owned() } else { reasons.join("; ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(
        node: &str,
        peer: &str,
        outbound: bool,
        opened: i64,
        closed: Option<(i64, &str)>,
    ) -> Side {
        Side {
            node: node.into(),
            peer: peer.into(),
            id: None,
            outbound,
            address: None,
            bootstrap: false,
            opened: Some(Time::from_unix(opened)),
            closed: closed.map(|(t, r)| (Time::from_unix(t), r.to_owned(), false)),
        }
    }

    #[test]
    fn both_ends_of_a_connection_become_one_and_two_connections_stay_two() {
        let sides = vec![
            side("A", "B", true, 100, Some((200, "ping timeout"))),
            side("B", "A", false, 100, Some((201, "io error: reset"))),
            // A second, simultaneous connection of the pair, dialed by B.
            side("B", "A", true, 101, Some((150, "we closed: duplicate"))),
            side("A", "B", false, 101, Some((150, "peer closed"))),
        ];
        let out = pair(sides, &["A", "B"], (Time::from_unix(0), Time::from_unix(300)));
        assert_eq!(out.links.len(), 1);
        let link = &out.links[0];
        assert_eq!(link.connections.len(), 2);
        assert!(link.connections.iter().all(|c| c.seen_by == "both"));
        assert_eq!(link.dialed_by, "both");
        assert_eq!(link.up_seconds, 100.0);
        let down = link.changes.iter().find(|c| !c.up).expect("a change down");
        assert_eq!(down.time, Time::from_unix(200));
        assert_eq!(down.reason.as_deref(), Some("A: ping timeout; B: io error: reset"));
        assert!(out.skew.is_empty());
    }

    #[test]
    fn a_clock_offset_is_matched_through_and_reported() {
        // B's clock runs 30 s ahead: its accounts are 30 s "later".
        let sides = vec![
            side("A", "B", true, 100, Some((160, "peer closed"))),
            side("B", "A", false, 130, Some((190, "we closed: stopping"))),
            side("A", "B", true, 400, None),
            side("B", "A", false, 430, None),
        ];
        let out = pair(sides, &["A", "B"], (Time::from_unix(0), Time::from_unix(500)));
        assert_eq!(out.links[0].connections.len(), 2, "matched despite the offset");
        let skew = out.skew.first().expect("reported");
        assert_eq!((skew.ahead.as_str(), skew.behind.as_str(), skew.seconds), ("B", "A", 30.0));
    }

    #[test]
    fn a_peer_without_logs_gives_one_sided_connections_still_up_at_the_end() {
        let out = pair(
            vec![side("A", "Z", true, 10, None)],
            &["A"],
            (Time::from_unix(0), Time::from_unix(70)),
        );
        let link = &out.links[0];
        assert_eq!((link.a.as_str(), link.b.as_str(), link.dialed_by), ("A", "Z", "a"));
        assert_eq!(link.connections[0].seen_by, "dialer");
        assert_eq!(link.up_seconds, 60.0);
        assert_eq!(link.changes.len(), 1);
    }

    #[test]
    fn closes_find_their_connection_by_id_or_by_address() {
        let mut a = side("A", "B", true, 1, None);
        a.id = Some(1);
        let mut b = side("A", "B", true, 2, None);
        b.id = Some(2);
        let sides = vec![a, b];
        let conn = |id| Conn { peer: "B".into(), connection_id: id, address: None, outbound: true };
        assert_eq!(find_open(&sides, &[0, 1], &conn(Some(2))), Some(1));
        assert_eq!(find_open(&sides, &[0, 1], &conn(None)), Some(0), "the oldest");
        assert_eq!(find_open(&sides, &[0, 1], &conn(Some(9))), None);
    }
}
