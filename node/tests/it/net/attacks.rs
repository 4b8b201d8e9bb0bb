//! Hostile peers pay for what they send: malformed sync requests, floods of
//! them, oversized gossip, bursts of orphan blocks, a foreign identify
//! version; and a banned peer is not handed out by Kademlia.

use serde_json::json;
use tinychain_node::p2p::protocol::{
    MAX_BLOCKS_PER_RESPONSE, MAX_LOCATOR, MAX_REQUEST_SIZE, Request, Response, Status,
};
use tinychain_node::p2p::ratelimit;
use tinychain_protocol::encode;
use tinychain_protocol::params::Network;
use tinychain_protocol::pow::Work;
use tinychain_protocol::{Block, BlockHash};

use libp2p::kad::Mode;

use super::hostile::{Hostile, Options, Seen};
use super::tests::compact;
use super::{TestNode, capture_log, runtime};
use crate::harness::{mine, new_core, pkh, regtest};

fn status_bytes() -> Vec<u8> {
    encode::serialize(&Request::Status(Status {
        genesis: regtest().genesis_hash(),
        tip: regtest().genesis_hash(),
        height: 0,
        chainwork: Work::ZERO,
    }))
}

/// Every kind of malformed request issue 17 found unpunished, by name.
fn malformed_requests() -> Vec<(&'static str, Vec<u8>)> {
    let status = status_bytes();
    let mut trailing = status.clone();
    trailing.push(0);
    let mut unknown = status.clone();
    unknown[0] = 7;
    let mut huge_count = vec![2, 0, 0, 0];
    huge_count.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut oversized_prefix = vec![1, 0, 0, 0];
    oversized_prefix.extend_from_slice(&(1u64 << 40).to_le_bytes());
    oversized_prefix.extend_from_slice(&[0; 64]);
    vec![
        ("empty", Vec::new()),
        ("oversized", vec![0; 2 * MAX_REQUEST_SIZE as usize]),
        ("truncated", status[..status.len() - 3].to_vec()),
        ("trailing bytes", trailing),
        ("unknown variant", unknown),
        ("huge element count", huge_count),
        ("oversized length prefix", oversized_prefix),
        (
            "GetBlocks of 10,000 hashes",
            encode::serialize(&Request::GetBlocks(vec![BlockHash::ZERO; 10_000])),
        ),
        (
            "GetBlocks over the limit",
            encode::serialize(&Request::GetBlocks(vec![
                BlockHash::ZERO;
                MAX_BLOCKS_PER_RESPONSE + 1
            ])),
        ),
        (
            "locator over the limit",
            encode::serialize(&Request::GetHeaders {
                locator: vec![BlockHash::ZERO; MAX_LOCATOR + 1],
            }),
        ),
        ("garbage", vec![0xde, 0xad, 0xbe, 0xef]),
    ]
}

/// Returns the score the node gives `peer`, if connected.
fn score(node: &TestNode, peer: &libp2p::PeerId) -> Option<i64> {
    let id = peer.to_string();
    node.peers().iter().find(|p| p["id"] == id.as_str()).and_then(|p| p["score"].as_i64())
}

fn refusal(seen: &Seen) -> Option<String> {
    let Seen::Response(bytes) = seen else { return None };
    match encode::deserialize::<Response>(bytes, u64::MAX) {
        Ok(Response::Refused(reason)) => Some(reason),
        other => panic!("a refusal was expected, not {other:?}"),
    }
}

#[test]
fn each_kind_of_malformed_request_is_refused_and_costs_50() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let target = node.peer_id.parse().expect("peer id");
    for (kind, bytes) in malformed_requests() {
        let evil = Hostile::start(&rt, regtest().genesis_hash());
        evil.connect(&node.addr);
        evil.request(target, bytes.clone());
        let answer = evil.expect(kind, |s| matches!(s, Seen::Response(_) | Seen::Failed));
        // A request larger than the stream's flow-control window cannot even
        // be sent whole: the node stops reading at its limit and answers, and
        // the sender's write stalls until its own timeout.
        if let Some(reason) = refusal(&answer) {
            assert!(reason.starts_with("malformed request: "), "{kind}: {reason}");
        } else {
            assert!(bytes.len() as u64 > MAX_REQUEST_SIZE, "{kind}: {answer:?}");
        }
        // -50, less what has faded since (1 point per 10 s).
        node.wait_for(&format!("the penalty for {kind}"), |n| {
            score(n, &evil.peer_id()).filter(|s| (-50..-40).contains(s)).map(|_| ())
        });
    }
    assert_eq!(node.call("getnetworkinfo", json!([]))["banned"], 0, "one offence each");
}

#[test]
fn a_flood_of_malformed_requests_bans_the_sender_while_an_honest_peer_syncs() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let tip = node.generate(200).pop().expect("blocks");
    let target = node.peer_id.parse().expect("peer id");
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    evil.connect(&node.addr);
    let honest = TestNode::start(&rt, &[&node]);
    let kinds = malformed_requests();
    let mut sent = 0;
    let banned = 'flood: loop {
        for _ in 0..16 {
            evil.request(target, kinds[sent % kinds.len()].1.clone());
            sent += 1;
        }
        while let Some(seen) = evil.next_matching(std::time::Duration::from_secs(2), |s| {
            matches!(s, Seen::Response(_) | Seen::Failed | Seen::Disconnected)
        }) {
            if matches!(seen, Seen::Disconnected) {
                break 'flood true;
            }
        }
        if sent >= 500 {
            break false;
        }
    };
    assert!(banned, "{sent} malformed requests and no ban");
    assert!(sent <= 64, "banned only after {sent} requests");
    assert!(!evil.try_connect(&node.addr), "a banned peer cannot come back");
    honest.wait_for_tip(&tip);
    assert_eq!(node.call("getnetworkinfo", json!([]))["banned"], 1);
    assert!(node.peers().iter().all(|p| p["score"] == 0), "the honest peer is clean");
}

/// Malformed requests pass the rate limit like any other: out of tokens, one
/// is refused as rate limited, unpunished, before anything else is done with
/// it. (A bucket of 3 that never refills makes this deterministic.)
#[test]
fn malformed_requests_are_rate_limited_too() {
    let rt = runtime();
    let node = TestNode::start_with(&rt, Network::Regtest, Vec::new(), |config| {
        config.p2p.rate_limit = ratelimit::Config { capacity: 3, per_second: 0 };
    });
    let target = node.peer_id.parse().expect("peer id");
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    evil.connect(&node.addr);
    // The node's own status request on connecting costs the evil peer nothing;
    // its first malformed request costs 50 and a token.
    evil.request(target, vec![0xde, 0xad]);
    let answer = evil.expect("an answer", |s| matches!(s, Seen::Response(_)));
    assert!(refusal(&answer).is_some_and(|r| r.starts_with("malformed request")));
    for _ in 0..2 {
        evil.request(target, status_bytes());
        evil.expect("an answer", |s| matches!(s, Seen::Response(_)));
    }
    // No token left: refused as a flood, not judged, not punished again.
    for _ in 0..3 {
        evil.request(target, vec![0xde, 0xad]);
        let answer = evil.expect("an answer", |s| matches!(s, Seen::Response(_)));
        assert_eq!(refusal(&answer).as_deref(), Some("rate limited"));
    }
    assert_eq!(score(&node, &evil.peer_id()), Some(-50));
}

#[test]
fn oversized_gossip_is_noticed_and_its_sender_penalised() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    evil.connect(&node.addr);
    node.wait_for("the hostile peer", |n| (n.peers().len() == 1).then_some(()));
    // Over what a block may be, under what gossipsub reads: seen and judged.
    evil.publish_block_bytes(vec![7; 1_500_000]);
    node.wait_for("the penalty", |n| (score(n, &evil.peer_id()) == Some(-50)).then_some(()));
    evil.publish_tx_bytes(vec![8; 2_000_000]);
    evil.expect("the ban's disconnect", |s| matches!(s, Seen::Disconnected));
    assert_eq!(node.call("getnetworkinfo", json!([]))["banned"], 1);
}

/// A banned peer leaves the routing table: a newcomer asking the node for the
/// peers closest to it is not told of it. (Kademlia keeps what it learnt.)
#[test]
fn a_banned_peer_is_not_handed_out_by_kademlia() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let target: libp2p::PeerId = node.peer_id.parse().expect("peer id");
    let id = tinychain_node::p2p::protocol::network_id(&regtest().genesis_hash());
    let dht = |mode| Options {
        identify: Some(format!("tinychain/{id}")),
        kad: Some(mode),
        responder: None,
    };
    // The evil peer serves Kademlia, so the node adds it to its table; the
    // observers are clients, so what they find is what the node told them.
    let evil = Hostile::start_with(&rt, regtest().genesis_hash(), dht(Mode::Server));
    evil.connect(&node.addr);
    let before = Hostile::start_with(&rt, regtest().genesis_hash(), dht(Mode::Client));
    let found = before.find_closest(target, &node.addr, evil.peer_id());
    assert!(found.contains(&evil.peer_id()), "precondition: the node knows it ({found:?})");

    for _ in 0..2 {
        evil.request(target, Vec::new());
    }
    evil.expect("the ban", |s| matches!(s, Seen::Disconnected));
    let after = Hostile::start_with(&rt, regtest().genesis_hash(), dht(Mode::Client));
    let found = after.find_closest(target, &node.addr, evil.peer_id());
    assert!(!found.contains(&evil.peer_id()), "the banned peer was handed out: {found:?}");
    assert!(found.contains(&target), "the walk reached the node: {found:?}");
}

/// A fast-mining peer's blocks reach a node that lacks their parent: each is
/// an orphan, but together they cost a `Status` request or two and one fetch
/// of the missing parent, not a request of each per block.
#[test]
fn a_burst_of_orphans_costs_a_request_or_two_not_one_each() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let mut donor = new_core(regtest());
    let blocks: Vec<Block> = mine(&mut donor, 20, pkh(1));
    let genesis = regtest().genesis_hash();
    // It claims nothing (so the node does not start headers-first sync) and
    // has none of the blocks it is asked for, so every block stays an orphan.
    let responder = move |request: &[u8]| {
        let answer = match encode::deserialize::<Request>(request, u64::MAX).ok()? {
            Request::Status(_) => {
                Response::Status(Status { genesis, tip: genesis, height: 0, chainwork: Work::ZERO })
            }
            Request::GetBlocks(_) => Response::Blocks(Vec::new()),
            Request::GetHeaders { .. } => Response::Headers(Vec::new()),
        };
        Some(encode::serialize(&answer))
    };
    let options = Options { responder: Some(Box::new(responder)), ..Options::default() };
    let evil = Hostile::start_with(&rt, genesis, options);
    evil.connect(&node.addr);
    node.wait_for("the peer", |n| (n.peers().len() == 1).then_some(()));
    evil.expect("the status request on connecting", |s| matches!(s, Seen::Request(_)));
    for block in &blocks[1..] {
        evil.publish_block_bytes(compact(block));
    }
    // Gossip from one peer arrives in order: when the first block comes last
    // and the chain connects, every orphan was handled.
    evil.publish_block_bytes(compact(&blocks[0]));
    node.wait_for_tip(&blocks[19].block_hash().to_string());
    let (mut statuses, mut fetches) = (0, 0);
    while let Some(Seen::Request(bytes)) =
        evil.next_matching(std::time::Duration::from_secs(1), |s| matches!(s, Seen::Request(_)))
    {
        match encode::deserialize::<Request>(&bytes, u64::MAX) {
            Ok(Request::Status(_)) => statuses += 1,
            Ok(Request::GetBlocks(_)) => fetches += 1,
            _ => {}
        }
    }
    assert!(statuses <= 3, "{statuses} status requests for 19 orphans");
    assert_eq!(fetches, 1, "the missing parent is asked for once");
}

/// The ban for a foreign identify protocol version names the version sent.
#[test]
fn the_ban_for_a_foreign_identify_version_names_it() {
    let log = capture_log();
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let options = Options { identify: Some("ipfs/0.1.0".into()), ..Options::default() };
    let evil = Hostile::start_with(&rt, regtest().genesis_hash(), options);
    let _ = evil.try_connect(&node.addr);
    node.wait_for("the ban", |n| {
        (n.call("getnetworkinfo", json!([]))["banned"] == 1).then_some(())
    });
    let line = log.wait_for_line("peer banned");
    assert!(line.contains("ipfs/0.1.0"), "{line}");
    assert!(line.contains(&evil.peer_id().to_string()), "{line}");
}
