//! Nodes in one process on loopback: relay, sync, convergence, and peer discipline.

use serde_json::json;
use tinychain_node::p2p::protocol::{MAX_LOCATOR, Request, Response, Status};
use tinychain_node::template::coinbase;
use tinychain_protocol::encode;
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::pow::Work;
use tinychain_protocol::sighash::sign_all;
use tinychain_protocol::{Amount, Block, BlockHash, BlockHeader, CompactBlock, Transaction, TxOut};

use super::hostile::{Hostile, Seen};
use super::{TestNode, one_key, runtime};
use crate::harness::solve;

fn regtest() -> Params {
    Params::new(Network::Regtest)
}

/// A block on genesis whose coinbase pays more than the subsidy: well formed,
/// with valid proof of work, and invalid.
fn overpaying_block(extra_nonce: u64) -> Block {
    let params = regtest();
    let genesis = params.genesis_block();
    let pay_to = one_key().public_key().pubkey_hash();
    let txdata = vec![coinbase(1, extra_nonce, pay_to, Amount::from_coins(1000).expect("small"))];
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_blockhash: genesis.block_hash(),
            merkle_root: block_merkle_root(&txdata).root,
            time: genesis.header.time + 1,
            bits: genesis.header.bits,
            nonce: 0,
        },
        txdata,
    };
    solve(&mut block);
    block
}

#[test]
fn a_block_mined_at_one_end_of_a_line_of_five_reaches_the_other_and_transactions_spread() {
    let rt = runtime();
    let mut line: Vec<TestNode> = Vec::new();
    for i in 0..5 {
        let bootstrap: Vec<&TestNode> = line.last().into_iter().collect();
        let node = TestNode::start(&rt, &bootstrap);
        if i > 0 {
            node.wait_for("a peer", |n| (!n.peers().is_empty()).then_some(()));
        }
        line.push(node);
    }
    let (first, last) = (&line[0], &line[4]);
    // Maturity is 10 blocks on regtest: 11 make block 1's coinbase spendable.
    let hashes = first.generate(11);
    last.wait_for_tip(&hashes[10]);

    let funding = first.block(&hashes[0]);
    let spent = funding.txdata[0].outputs[0];
    let key = one_key();
    let to =
        TxOut { value: Amount::from_coins(10).expect("small"), pubkey_hash: spent.pubkey_hash };
    let change = TxOut {
        value: spent
            .value
            .checked_sub(to.value)
            .and_then(|v| v.checked_sub(Amount::from_belushis(10_000)))
            .expect("funds"),
        pubkey_hash: spent.pubkey_hash,
    };
    let mut tx = Transaction::spending(
        [tinychain_protocol::OutPoint { txid: funding.txdata[0].txid(), vout: 0 }],
        vec![to, change],
    );
    sign_all(&mut tx, &[spent], &key).expect("signs");
    let txid = last.call("sendrawtransaction", json!([hex::encode(tx.encode())]));
    first.wait_for("the transaction in the far mempool", |n| {
        let pool = n.call("getrawmempool", json!([]));
        pool.as_array()?.contains(&txid).then_some(())
    });
    // Mined at the first node, confirmed at the last.
    let mined = first.generate(1);
    last.wait_for_tip(&mined[0]);
    assert!(last.block(&mined[0]).txdata.iter().any(|t| t.txid().to_string() == txid));
}

#[test]
fn a_late_node_syncs_over_2000_blocks_from_several_peers() {
    let rt = runtime();
    let seed = TestNode::start(&rt, &[]);
    for _ in 0..5 {
        seed.generate(410);
    }
    let tip = seed.tip();
    assert_eq!(seed.height(), 2050);
    let a = TestNode::start(&rt, &[&seed]);
    let b = TestNode::start(&rt, &[&seed]);
    a.wait_for_tip(&tip);
    b.wait_for_tip(&tip);
    let late = TestNode::start(&rt, &[&seed, &a, &b]);
    late.wait_for_tip(&tip);
    let served: Vec<u64> = late
        .peers()
        .iter()
        .filter_map(|p| p["sync"]["blocks_delivered"].as_u64())
        .filter(|n| *n > 0)
        .collect();
    assert!(served.len() >= 2, "blocks came from {} peers: {served:?}", served.len());
    // No block was fetched twice, and most came through the download window
    // (some may come by gossip instead: peers that finished their own sync
    // relay their last blocks, and a gossiped tip's parents are fetched by hash).
    let fetched = served.iter().sum::<u64>();
    assert!((1500..=2050).contains(&fetched), "{fetched} blocks fetched");
    let info = late.call("getblockchaininfo", json!([]));
    assert_eq!(info["utxo_digest"], seed.call("getblockchaininfo", json!([]))["utxo_digest"]);
    assert_eq!(info["initialblockdownload"], false);
}

#[test]
fn groups_that_mined_apart_converge_on_the_most_work_chain_when_joined() {
    let rt = runtime();
    let a = TestNode::start(&rt, &[]);
    let b = TestNode::start(&rt, &[]);
    a.generate(5);
    let heavier = b.generate(8);
    let bridge = TestNode::start(&rt, &[&a, &b]);
    for node in [&a, &b, &bridge] {
        node.wait_for_tip(&heavier[7]);
    }
    // A's five blocks are a side branch there now; mining goes on from the winner.
    let next = a.generate(1);
    b.wait_for_tip(&next[0]);
}

#[test]
fn a_peer_sending_invalid_blocks_is_penalised_then_banned_and_stays_banned() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    evil.connect(&node.addr);
    node.wait_for("the hostile peer", |n| (n.peers().len() == 1).then_some(()));
    // Distinct invalid blocks until the ban's disconnect (gossip may drop one
    // on a loaded machine; each that arrives costs the sender 50 points).
    publish_invalid_blocks_until_disconnected(&evil);
    node.wait_for("the banned peer gone", |n| n.peers().is_empty().then_some(()));
    assert!(!evil.try_connect(&node.addr), "a banned peer cannot come back");
    // The node is fine and at genesis.
    assert_eq!(node.height(), 0);
    assert_eq!(node.call("getnetworkinfo", json!([]))["banned"], 1);
}

#[test]
fn a_misbehaving_bootstrap_peer_is_disconnected_but_never_banned() {
    let rt = runtime();
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    let node = TestNode::start_on(&rt, Network::Regtest, vec![evil.addr()]);
    evil.expect("the node's subscriptions", |s| matches!(s, Seen::Subscribed));
    publish_invalid_blocks_until_disconnected(&evil);
    // The node dials its bootstrap peer again (every 10 s), and holds no ban.
    evil.expect("the re-dial", |s| matches!(s, Seen::Connected));
    assert_eq!(node.call("getnetworkinfo", json!([]))["banned"], 0);
}

#[test]
fn a_peer_of_another_genesis_is_refused() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    evil.connect(&node.addr);
    let peer = node.peer_id.parse().expect("peer id");
    let other = Params::new(Network::Test);
    let status = Status {
        genesis: other.genesis_hash(),
        tip: other.genesis_hash(),
        height: 0,
        chainwork: Work::ZERO,
    };
    evil.request(peer, encode::serialize(&Request::Status(status)));
    evil.expect("the disconnect", |s| matches!(s, Seen::Disconnected));
    assert!(!evil.try_connect(&node.addr));

    // And a node of the test network does not stay either: its connection may
    // show for the moment before identify or Status tell the networks apart.
    let foreign = TestNode::start_on(&rt, Network::Test, vec![node.addr.clone()]);
    let honest = TestNode::start(&rt, &[&node]);
    node.wait_for("the honest peer in, the foreign one out", |n| {
        let peers = n.peers();
        let ids: Vec<&str> = peers.iter().filter_map(|p| p["id"].as_str()).collect();
        (ids.contains(&honest.peer_id.as_str()) && !ids.contains(&foreign.peer_id.as_str()))
            .then_some(())
    });
    foreign.wait_for("the foreign node alone", |n| n.peers().is_empty().then_some(()));
}

#[test]
fn hostile_input_leaves_the_node_up_and_serving_honest_peers() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let tip = node.generate(30).pop().expect("blocks");
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    evil.connect(&node.addr);
    let peer = node.peer_id.parse().expect("peer id");

    // Garbage, truncated and oversized gossip.
    evil.publish_block_bytes(vec![0xff; 300]);
    evil.publish_tx_bytes(vec![1, 2, 3]);
    let block = compact(&node.block(&tip));
    evil.publish_block_bytes(block[..block.len() - 1].to_vec());
    evil.publish_block_bytes(vec![0; 2 << 20]);
    // Garbage, truncated, oversized and over-limit sync requests.
    evil.request(peer, vec![0xde, 0xad, 0xbe, 0xef]);
    let status = encode::serialize(&Request::Status(Status {
        genesis: regtest().genesis_hash(),
        tip: BlockHash::ZERO,
        height: 0,
        chainwork: Work::ZERO,
    }));
    evil.request(peer, status[..status.len() - 3].to_vec());
    evil.request(peer, vec![0; 200 * 1024]);
    evil.request(
        peer,
        encode::serialize(&Request::GetHeaders { locator: vec![BlockHash::ZERO; MAX_LOCATOR + 1] }),
    );

    // The node is up, and an honest newcomer still syncs from it.
    let honest = TestNode::start(&rt, &[&node]);
    honest.wait_for_tip(&tip);
    assert_eq!(node.height(), 30);
    // The sender paid for it: penalised (or banned and gone).
    let evil_score = node
        .peers()
        .iter()
        .filter(|p| p["id"] != honest.peer_id.as_str())
        .filter_map(|p| p["score"].as_i64())
        .min();
    assert!(evil_score.is_none_or(|s| s < 0), "score {evil_score:?}");
    assert!(node.peers().iter().any(|p| p["id"] == honest.peer_id.as_str() && p["score"] == 0));
}

#[test]
fn a_flooding_peer_is_rate_limited_while_honest_peers_are_served() {
    let rt = runtime();
    let node = TestNode::start(&rt, &[]);
    let tip = node.generate(50).pop().expect("blocks");
    let evil = Hostile::start(&rt, regtest().genesis_hash());
    evil.connect(&node.addr);
    let peer = node.peer_id.parse().expect("peer id");
    let request =
        encode::serialize(&Request::GetHeaders { locator: vec![regtest().genesis_hash()] });
    let honest = TestNode::start(&rt, &[&node]);
    // Waves of 16 requests (under the node's stream limit), as fast as answered.
    let (mut refused, mut served) = (0, 0);
    for _ in 0..20 {
        for _ in 0..16 {
            evil.request(peer, request.clone());
        }
        for _ in 0..16 {
            let answer =
                evil.expect("an answer", |s| matches!(s, Seen::Response(_) | Seen::Failed));
            if let Seen::Response(bytes) = answer {
                match encode::deserialize::<Response>(&bytes, u64::MAX) {
                    Ok(Response::Refused(reason)) if reason == "rate limited" => refused += 1,
                    Ok(Response::Headers(_)) => served += 1,
                    other => panic!("unexpected answer {other:?}"),
                }
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no request was rate limited ({served} served)");
    // A headers request takes 10 tokens of the 100: ten are served at once,
    // not a hundred (a flood of them at one token each took half a core).
    assert!((10..50).contains(&served), "the burst allowance was served ({served})");
    honest.wait_for_tip(&tip);
    // Flooding is not misbehaviour: it is answered, not punished.
    assert!(node.peers().len() == 2);
}

/// The gossip form of `block`: compact.
pub(crate) fn compact(block: &Block) -> Vec<u8> {
    CompactBlock::from_block(block).expect("a block has a coinbase").encode()
}

/// Publishes distinct invalid blocks, one a second, until the node drops the sender.
pub(crate) fn publish_invalid_blocks_until_disconnected(evil: &Hostile) {
    for extra_nonce in 1..=30 {
        evil.publish_block_bytes(compact(&overpaying_block(extra_nonce)));
        let seen = evil
            .next_matching(std::time::Duration::from_secs(1), |s| matches!(s, Seen::Disconnected));
        if seen.is_some() {
            return;
        }
    }
    panic!("the node never dropped a peer sending invalid blocks");
}

/// With the `quic` build feature, nodes that listen only on QUIC find each
/// other from a `/udp/…/quic-v1` bootstrap address and relay blocks over it.
#[cfg(feature = "quic")]
#[test]
fn nodes_listening_only_on_quic_connect_and_relay_blocks() {
    let rt = runtime();
    let quic_only = |config: &mut tinychain_node::node::Config| {
        config.p2p.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("a literal")];
    };
    let a = TestNode::start_with(&rt, Network::Regtest, Vec::new(), quic_only);
    assert!(a.addr.to_string().contains("/udp/") && a.addr.to_string().contains("/quic-v1/"));
    let b = TestNode::start_with(&rt, Network::Regtest, vec![a.addr.clone()], quic_only);
    let tip = a.generate(3).pop().expect("blocks");
    b.wait_for_tip(&tip);
    let peers = b.peers();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert!(peers[0]["address"].as_str().is_some_and(|a| a.contains("/quic-v1")), "{peers:?}");
}

/// A build without the `quic` feature refuses a QUIC listen address at start,
/// saying how to get one, instead of failing with a bare "not supported".
#[cfg(not(feature = "quic"))]
#[test]
fn a_build_without_quic_refuses_a_quic_listen_address_clearly() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config =
        tinychain_node::testnet::local_config(dir.path(), Network::Regtest, Vec::new());
    config.p2p.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("a literal")];
    let started = tinychain_node::testnet::LocalNode::start(rt.handle(), config, super::DEADLINE);
    let Err(error) = started else { panic!("the node started with a QUIC listen address") };
    assert!(
        error.contains("this build has no QUIC") && error.contains("--features quic"),
        "{error}"
    );
}
