//! The metrics endpoint of nodes in one process: scraped over plain TCP as Prometheus would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tinychain_node::template::coinbase;
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::validation::block_subsidy;
use tinychain_protocol::{Amount, Block, BlockHeader};

use super::hostile::Hostile;
use super::tests::publish_invalid_blocks_until_disconnected;
use super::{DEADLINE, TestNode, one_key, runtime};
use crate::harness::{coinbase_out, coins, pay, regtest, solve, spend};

/// Scrapes `GET /metrics` and returns the body, checking the status and the format's end.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connects to the metrics endpoint");
    stream.set_read_timeout(Some(DEADLINE)).expect("a timeout");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("sends");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads the response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: application/openmetrics-text; version=1.0.0"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body.to_owned()
}

/// Returns the sum of the samples of `name` (a metric name, or one series
/// with its labels), or `None` if there is no sample.
fn value(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let sample = match rest.strip_prefix('{') {
                Some(labels) if !name.ends_with('}') => labels.split_once("} ")?.1,
                _ => rest.strip_prefix(' ')?,
            };
            sample.split(' ').next()?.parse().ok()
        })
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// Scrapes `node` until `series` has the value `want`; panics after [`DEADLINE`].
fn wait_for_value(node: &TestNode, series: &str, want: f64) -> String {
    let addr = node.metrics_addr().expect("the node serves metrics");
    node.wait_for(&format!("{series} = {want}"), |_| {
        let text = scrape(addr);
        (value(&text, series) == Some(want)).then_some(text)
    })
}

#[test]
fn metrics_show_chain_mempool_peers_gossip_and_libp2p() {
    let rt = runtime();
    let a = TestNode::start_with_metrics(&rt, &[]);
    let b = TestNode::start_with_metrics(&rt, &[&a]);
    wait_for_value(&a, "tinychain_peers{direction=\"inbound\"}", 1.0);
    let text = wait_for_value(&b, "tinychain_peers{direction=\"outbound\"}", 1.0);
    assert_eq!(value(&text, "tinychain_peers{direction=\"inbound\"}"), Some(0.0));
    let a_text = scrape(a.metrics_addr().expect("serves"));
    assert!(value(&a_text, "libp2p_swarm_connections_incoming_total") >= Some(1.0), "{a_text}");
    assert!(value(&text, "libp2p_swarm_connections_established_total") >= Some(1.0), "{text}");

    // Blocks mined at one node reach the other by gossip, once it is meshed.
    b.wait_for("a gossip mesh with the miner", |n| {
        n.peers().first().and_then(|p| p["mesh"]["blocks"].as_bool()).filter(|m| *m)
    });
    let hashes = a.generate(11);
    b.wait_for_tip(&hashes[10]);
    for node in [&a, &b] {
        let text = wait_for_value(node, "tinychain_chain_height", 11.0);
        assert_eq!(value(&text, "tinychain_best_header_height"), Some(11.0), "{text}");
        assert_eq!(value(&text, "tinychain_syncing"), Some(0.0), "{text}");
        assert_eq!(value(&text, "tinychain_mempool_transactions"), Some(0.0), "{text}");
        assert!(value(&text, "tinychain_chainwork") > Some(0.0), "{text}");
    }
    let accepted = "tinychain_gossip_messages_total{topic=\"block\",verdict=\"accepted\"}";
    let text = scrape(b.metrics_addr().expect("serves"));
    assert!(value(&text, accepted) >= Some(1.0), "{text}");
    assert_eq!(value(&text, "tinychain_blocks_connected_total"), Some(11.0), "{text}");
    assert!(value(&text, "libp2p_gossipsub_messages_total") >= Some(1.0), "{text}");

    // A transaction sent to one node is in both mempools.
    let funding = coinbase_out(&a.block(&hashes[0]));
    let fee = Amount::from_belushis(10_000);
    let change = funding.1.value.checked_sub(coins(10)).and_then(|v| v.checked_sub(fee));
    let change = pay(3, change.expect("funds"));
    let tx = spend(&[funding], vec![pay(2, coins(10)), change], &one_key());
    a.call("sendrawtransaction", json!([hex::encode(tx.encode())]));
    let size = tx.encode().len() as f64;
    for node in [&a, &b] {
        let text = wait_for_value(node, "tinychain_mempool_transactions", 1.0);
        assert_eq!(value(&text, "tinychain_mempool_bytes"), Some(size), "{text}");
    }
    wait_for_value(&b, "tinychain_gossip_messages_total{topic=\"tx\",verdict=\"accepted\"}", 1.0);

    // The endpoint closes with its node.
    let addr = b.metrics_addr().expect("serves");
    drop(b);
    let start = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(start.elapsed() < DEADLINE, "the endpoint outlived its node");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_are_not_served_unless_enabled() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    assert_eq!(node.metrics_addr(), None);
    assert_eq!(node.call("getnetworkinfo", json!([]))["metrics"], Value::Null);
}

/// Invalid gossip is counted as rejected, and the ban it earns shows up.
#[test]
fn rejected_gossip_and_bans_are_counted() {
    let rt = runtime();
    let node = TestNode::start_with_metrics(&rt, &[]);
    let addr = node.metrics_addr().expect("the node serves metrics");
    let rejected = "tinychain_gossip_messages_total{topic=\"block\",verdict=\"rejected\"}";
    assert_eq!(value(&scrape(addr), rejected).unwrap_or(0.0), 0.0);
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    evil.connect(&node.addr);
    node.wait_for("the hostile peer", |n| (n.peers().len() == 1).then_some(()));
    publish_invalid_blocks_until_disconnected(&evil);
    let text = wait_for_value(&node, "tinychain_banned_peers", 1.0);
    // At least one invalid block reached the core before the ban (the raw
    // hostile peer's unanswered status requests cost it points too).
    assert!(value(&text, rejected) >= Some(1.0), "{text}");
    assert_eq!(value(&text, "tinychain_chain_height"), Some(0.0), "{text}");
}

/// A block whose transaction no mempool has seen reaches the far end by
/// gossip: each node fetches the whole block from its sender, then forwards
/// the compact block it held (counted as accepted gossip, not ignored).
#[test]
fn a_block_of_unrelayed_transactions_is_fetched_whole_then_forwarded() {
    let rt = runtime();
    let a = TestNode::start_with_metrics(&rt, &[]);
    let b = TestNode::start_with_metrics(&rt, &[&a]);
    let c = TestNode::start_with_metrics(&rt, &[&b]);
    for (node, peer) in [(&b, &a), (&c, &b)] {
        node.wait_for("a blocks mesh", |n| {
            n.peers()
                .iter()
                .any(|p| p["id"] == peer.peer_id.as_str() && p["mesh"]["blocks"] == true)
                .then_some(())
        });
    }
    let hashes = a.generate(11);
    // Once a node has the last block, later copies of these 11 can only be
    // duplicates (ignored), so its count of accepted gossip is final: read
    // before that (c may have had the blocks from a directly, found through
    // Kademlia, while b was still at work), a late acceptance made the count
    // jump past the one expected below.
    for node in [&b, &c] {
        node.wait_for_tip(&hashes[10]);
    }
    let accepted = "tinychain_gossip_messages_total{topic=\"block\",verdict=\"accepted\"}";
    let before: Vec<f64> = [&b, &c]
        .iter()
        .map(|n| value(&scrape(n.metrics_addr().expect("serves")), accepted).unwrap_or(0.0))
        .collect();

    // Submitted to `a` directly: its transaction was never relayed.
    let parent = a.block(&hashes[10]);
    let funding = coinbase_out(&a.block(&hashes[0]));
    let fee = coins(1);
    let tx = spend(
        &[funding],
        vec![pay(2, funding.1.value.checked_sub(fee).expect("funds"))],
        &one_key(),
    );
    let reward = block_subsidy(12, &regtest()).checked_add(fee).expect("small");
    let txdata = vec![coinbase(12, 0, one_key().public_key().pubkey_hash(), reward), tx];
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_blockhash: parent.block_hash(),
            merkle_root: block_merkle_root(&txdata).root,
            time: parent.header.time + 1,
            bits: parent.header.bits,
            nonce: 0,
        },
        txdata,
    };
    solve(&mut block);
    assert_eq!(a.call("submitblock", json!([hex::encode(block.encode())])), Value::Null);
    c.wait_for_tip(&block.block_hash().to_string());
    for (node, before) in [(&b, before[0]), (&c, before[1])] {
        wait_for_value(node, accepted, before + 1.0);
    }
}
