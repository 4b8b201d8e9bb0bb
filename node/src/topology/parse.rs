//! One JSON log line into one typed event.
//!
//! Owns the reading of the node's JSON log lines (`--log-format json`: one
//! object per line, the event's fields at the top level) into [`Record`]s: the
//! time, the writing node when the line says it (`node`, `node_name`), and the
//! [`Event`] for the messages of docs/p2p.md's event table. Lines of other
//! messages are [`Event::Other`]; lines that are not JSON, or JSON of the wrong
//! shape, are reported as [`Skip`] for the caller to count. Tolerant of older
//! logs: `listen` as one string, numbers as strings, no `node` or
//! `connection_id`. Pure: no I/O.

use std::borrow::Cow;

use serde::Deserialize;

use super::time::Time;

/// A log line that was understood.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// When it was written.
    pub time: Time,
    /// The writing node's peer id, when the line names it.
    pub node: Option<String>,
    /// The writing node's name (`--log-name`), when the line carries it.
    pub node_name: Option<String>,
    /// What happened.
    pub event: Event,
}

/// How a connection event names its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conn {
    /// The remote peer.
    pub peer: String,
    /// The connection's number, unique within one run of the writing node.
    pub connection_id: Option<u64>,
    /// The remote address.
    pub address: Option<String>,
    /// True if the writing node dialed.
    pub outbound: bool,
}

/// The events the topology is rebuilt from (docs/p2p.md, "Observing the topology").
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Event {
    /// `node started`: a (re)start of the writing node.
    NodeStarted { peer_id: String, height: Option<u64>, tip: Option<String> },
    /// `stopped`: a clean stop.
    Stopped { height: Option<u64>, tip: Option<String> },
    /// `listening` (address with `/p2p/`).
    Listening { address: String },
    /// libp2p's `local_peer_id` line at start (names the writing node).
    LocalPeerId { peer_id: String },
    /// `connection established`.
    Established { conn: Conn, bootstrap: bool },
    /// `connection closed`.
    Closed { conn: Conn, reason: String, connections_left: Option<u64> },
    /// `identify received`.
    Identify { peer: String, agent: Option<String>, listen: Vec<String> },
    /// `mesh join` / `mesh leave`.
    Mesh { peer: String, topic: String, joined: bool },
    /// `peer penalised`.
    Penalised { peer: String, score: i64, reason: String },
    /// `peer banned`.
    Banned { peer: String, reason: String, until: Option<i64> },
    /// `new tip`.
    NewTip { hash: String, height: u64, disconnected: u64 },
    /// `block mined`: the writing node made this block (the origin of its propagation).
    BlockMined { hash: String, height: u64 },
    /// `sync start`.
    SyncStart { height: u64, best_header: Option<u64> },
    /// `sync progress`.
    SyncProgress { height: u64, blocks_per_s: Option<f64> },
    /// `sync end`.
    SyncEnd { height: u64, hash: Option<String> },
    /// `peer status`: a peer's claimed height and tip.
    PeerStatus { peer: String, height: u64, tip: Option<String> },
    /// A message the topology does not use.
    Other,
}

/// Why a line gave no record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Empty or only whitespace.
    Blank,
    /// Not a JSON object.
    NotJson,
    /// JSON, but without a readable `timestamp`, or an event of the table with a
    /// field missing or of the wrong type; holds the message if there was one.
    Malformed(Option<String>),
}

/// A number that older logs wrote as a string (`blocks_per_s="118.4"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Number<'a> {
    Float(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

impl Number<'_> {
    fn value(&self) -> Option<f64> {
        match self {
            Number::Float(f) => Some(*f),
            Number::Text(t) => t.parse().ok(),
        }
    }
}

/// `listen`: an array (the contract), or older logs' one string `"[/ip4/…, /ip4/…]"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Listen<'a> {
    List(Vec<Cow<'a, str>>),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

impl Listen<'_> {
    fn addresses(self) -> Vec<String> {
        match self {
            Listen::List(v) => v.into_iter().map(Cow::into_owned).collect(),
            Listen::Text(t) => t
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|a| a.trim().trim_matches('"').to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
        }
    }
}

/// The fields of the event table, all optional; others are ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    node: Option<Cow<'a, str>>,
    #[serde(borrow)]
    node_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    span: Option<SpanFields<'a>>,
    #[serde(borrow)]
    local_peer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    peer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    peer: Option<Cow<'a, str>>,
    connection_id: Option<u64>,
    #[serde(borrow)]
    address: Option<Cow<'a, str>>,
    #[serde(borrow)]
    direction: Option<Cow<'a, str>>,
    bootstrap: Option<bool>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
    connections_left: Option<u64>,
    #[serde(borrow)]
    agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    listen: Option<Listen<'a>>,
    #[serde(borrow)]
    topic: Option<Cow<'a, str>>,
    score: Option<i64>,
    until: Option<i64>,
    height: Option<u64>,
    best_header: Option<u64>,
    #[serde(borrow)]
    blocks_per_s: Option<Number<'a>>,
    #[serde(borrow)]
    tip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hash: Option<Cow<'a, str>>,
    disconnected: Option<u64>,
}

/// The node field when a subscriber puts it in the current span instead.
#[derive(Deserialize, Default)]
#[serde(default)]
struct SpanFields<'a> {
    #[serde(borrow)]
    node: Option<Cow<'a, str>>,
    #[serde(borrow)]
    node_name: Option<Cow<'a, str>>,
}

fn owned(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned)
}

/// Reads one log line.
///
/// # Errors
///
/// [`Skip`] says why the line holds no record.
pub fn parse_line(line: &str) -> Result<Record, Skip> {
    let line = line.trim();
    if line.is_empty() {
        return Err(Skip::Blank);
    }
    if !line.starts_with('{') {
        return Err(Skip::NotJson);
    }
    let raw: Raw<'_> = match serde_json::from_str(line) {
        Ok(raw) => raw,
        Err(_) => return Err(malformed_or_not_json(line)),
    };
    let message = owned(raw.message.clone());
    let Some(time) = raw.timestamp.as_deref().and_then(Time::parse) else {
        return Err(Skip::Malformed(message));
    };
    let (span_node, span_name) = raw.span.as_ref().map_or((None, None), |s| {
        (s.node.as_deref().map(str::to_owned), s.node_name.as_deref().map(str::to_owned))
    });
    let node = raw.node.as_deref().map(str::to_owned).or(span_node);
    let node_name = raw.node_name.as_deref().map(str::to_owned).or(span_name);
    let event = event(raw).ok_or_else(|| Skip::Malformed(message.clone()))?;
    Ok(Record { time, node, node_name, event })
}

/// A line that serde refused: JSON of another shape, or not JSON at all.
fn malformed_or_not_json(line: &str) -> Skip {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(value) => Skip::Malformed(value["message"].as_str().map(str::to_owned)),
        Err(_) => Skip::NotJson,
    }
}

fn conn(raw: &mut Raw<'_>) -> Option<Conn> {
    Some(Conn {
        peer: owned(raw.peer.take())?,
        connection_id: raw.connection_id,
        address: owned(raw.address.take()),
        outbound: raw.direction.as_deref()? == "outbound",
    })
}

/// The event a line's message and fields describe; `None` if a needed field is missing.
fn event(mut raw: Raw<'_>) -> Option<Event> {
    let Some(message) = raw.message.take().filter(|m| !m.is_empty()) else {
        // libp2p's swarm logs the local peer id, with no (or an empty) message, at start.
        return Some(match owned(raw.local_peer_id) {
            Some(peer_id) => Event::LocalPeerId { peer_id },
            None => Event::Other,
        });
    };
    Some(match &*message {
        "node started" => Event::NodeStarted {
            peer_id: owned(raw.peer_id)?,
            height: raw.height,
            tip: owned(raw.tip),
        },
        "stopped" => Event::Stopped { height: raw.height, tip: owned(raw.tip) },
        "listening" if raw.target_is_p2p() => Event::Listening { address: owned(raw.address)? },
        "connection established" => {
            Event::Established { conn: conn(&mut raw)?, bootstrap: raw.bootstrap.unwrap_or(false) }
        }
        "connection closed" => Event::Closed {
            conn: conn(&mut raw)?,
            reason: owned(raw.reason).unwrap_or_else(|| "unknown".into()),
            connections_left: raw.connections_left,
        },
        "identify received" => Event::Identify {
            peer: owned(raw.peer)?,
            agent: owned(raw.agent),
            listen: raw.listen.map(Listen::addresses).unwrap_or_default(),
        },
        "mesh join" | "mesh leave" => Event::Mesh {
            peer: owned(raw.peer)?,
            topic: owned(raw.topic)?,
            joined: message == "mesh join",
        },
        "peer penalised" => Event::Penalised {
            peer: owned(raw.peer)?,
            score: raw.score?,
            reason: owned(raw.reason).unwrap_or_default(),
        },
        "peer banned" => Event::Banned {
            peer: owned(raw.peer)?,
            reason: owned(raw.reason).unwrap_or_default(),
            until: raw.until,
        },
        "new tip" => Event::NewTip {
            hash: owned(raw.hash)?,
            height: raw.height?,
            disconnected: raw.disconnected.unwrap_or(0),
        },
        "block mined" => Event::BlockMined { hash: owned(raw.hash)?, height: raw.height? },
        "sync start" => Event::SyncStart { height: raw.height?, best_header: raw.best_header },
        "sync progress" => Event::SyncProgress {
            height: raw.height?,
            blocks_per_s: raw.blocks_per_s.as_ref().and_then(Number::value),
        },
        "sync end" => Event::SyncEnd { height: raw.height?, hash: owned(raw.hash) },
        "peer status" => {
            Event::PeerStatus { peer: owned(raw.peer)?, height: raw.height?, tip: owned(raw.tip) }
        }
        _ => Event::Other,
    })
}

impl Raw<'_> {
    /// `listening` is also what the RPC and metrics servers say; only p2p's names a multiaddr.
    fn target_is_p2p(&self) -> bool {
        self.address.as_deref().is_some_and(|a| a.starts_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWQRmzGBFnnW1NN74rg3vFLZqFAwqnzfDP3sb74MsCza3o";

    #[test]
    fn todays_lines_parse_without_node_or_connection_id() {
        let line = format!(
            r#"{{"timestamp":"2026-12-03T14:02:40.253427Z","level":"INFO","message":"connection established","peer":"{PEER}","address":"/ip4/127.0.0.1/tcp/19545","direction":"inbound","target":"tinychain_node::p2p"}}"#
        );
        let r = parse_line(&line).expect("parses");
        assert_eq!(r.node, None);
        let Event::Established { conn, bootstrap } = r.event else { panic!("{:?}", r.event) };
        assert_eq!(
            (conn.peer.as_str(), conn.outbound, conn.connection_id, bootstrap),
            (PEER, false, None, false)
        );
        let identify = format!(
            r#"{{"timestamp":"2026-12-03T14:02:40.259361Z","message":"identify received","peer":"{PEER}","agent":"tinychain-node/0.1.0","listen":"[/ip4/127.0.0.1/tcp/19545, /ip4/10.0.0.2/tcp/19545]"}}"#
        );
        let Event::Identify { listen, .. } = parse_line(&identify).expect("parses").event else {
            panic!()
        };
        assert_eq!(listen, ["/ip4/127.0.0.1/tcp/19545", "/ip4/10.0.0.2/tcp/19545"]);
        let progress = r#"{"timestamp":"2026-12-03T14:02:40Z","message":"sync progress","height":10,"blocks_per_s":"118.4"}"#;
        assert_eq!(
            parse_line(progress).expect("parses").event,
            Event::SyncProgress { height: 10, blocks_per_s: Some(118.4) }
        );
    }

    #[test]
    fn contract_lines_carry_the_node_and_json_types() {
        let line = format!(
            r#"{{"timestamp":"2026-12-03T14:02:45Z","level":"INFO","target":"tinychain_node::p2p","message":"connection closed","node":"A","node_name":"seed1","peer":"{PEER}","connection_id":7,"address":"/ip4/10.0.0.2/tcp/19444","direction":"outbound","reason":"ping timeout","connections_left":0}}"#
        );
        let r = parse_line(&line).expect("parses");
        assert_eq!((r.node.as_deref(), r.node_name.as_deref()), (Some("A"), Some("seed1")));
        let Event::Closed { conn, reason, connections_left } = r.event else { panic!() };
        assert_eq!((conn.connection_id, conn.outbound), (Some(7), true));
        assert_eq!((reason.as_str(), connections_left), ("ping timeout", Some(0)));
        let identify = r#"{"timestamp":"2026-12-03T14:02:45Z","message":"identify received","peer":"P","listen":["/ip4/1.2.3.4/tcp/1"]}"#;
        let Event::Identify { listen, .. } = parse_line(identify).expect("parses").event else {
            panic!()
        };
        assert_eq!(listen, ["/ip4/1.2.3.4/tcp/1"]);
        let swarm = r#"{"timestamp":"2026-12-03T14:02:45Z","target":"libp2p_swarm","message":"","node":"B","local_peer_id":"B"}"#;
        assert_eq!(
            parse_line(swarm).expect("parses").event,
            Event::LocalPeerId { peer_id: "B".into() }
        );
        let in_span = r#"{"timestamp":"2026-12-03T14:02:45Z","message":"x","span":{"node":"B"}}"#;
        assert_eq!(parse_line(in_span).expect("parses").node.as_deref(), Some("B"));
    }

    #[test]
    fn bad_lines_are_told_apart() {
        assert_eq!(parse_line("   "), Err(Skip::Blank));
        assert_eq!(parse_line("error: the node failed"), Err(Skip::NotJson));
        assert_eq!(parse_line("{\"timestamp\": \"2026-12-03T14:02:45Z\", "), Err(Skip::NotJson));
        let no_time = r#"{"message":"new tip","hash":"h","height":1}"#;
        assert_eq!(parse_line(no_time), Err(Skip::Malformed(Some("new tip".into()))));
        let no_height = r#"{"timestamp":"2026-12-03T14:02:45Z","message":"new tip","hash":"h"}"#;
        assert_eq!(parse_line(no_height), Err(Skip::Malformed(Some("new tip".into()))));
        let wrong_type =
            r#"{"timestamp":"2026-12-03T14:02:45Z","message":"new tip","hash":"h","height":"x"}"#;
        assert_eq!(parse_line(wrong_type), Err(Skip::Malformed(Some("new tip".into()))));
        let other = r#"{"timestamp":"2026-12-03T14:02:45Z","message":"mining","hash_rate":5}"#;
        assert_eq!(parse_line(other).expect("parses").event, Event::Other);
        let rpc = r#"{"timestamp":"2026-12-03T14:02:45Z","message":"listening","address":"127.0.0.1:9898"}"#;
        assert_eq!(parse_line(rpc).expect("parses").event, Event::Other);
    }

    #[test]
    fn lines_with_escapes_still_parse() {
        let line = r#"{"timestamp":"2026-12-03T14:02:45Z","message":"peer penalised","peer":"P","score":-50,"reason":"malformed \"block\": \u00e9"}"#;
        let Event::Penalised { reason, score, .. } = parse_line(line).expect("parses").event else {
            panic!()
        };
        assert_eq!((reason.as_str(), score), ("malformed \"block\": é", -50));
    }
}
