//! The machine's decisions, each tested without a socket, a clock or a thread.

use std::time::{Duration, Instant};

use libp2p::gossipsub::{MessageAcceptance, MessageId};
use serde_json::json;
use tinychain_protocol::keys::{Address, PrivateKey};
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::sighash::sign_all;
use tinychain_protocol::{Amount, Block, OutPoint, Transaction, TxOut};

use super::*;
use crate::p2p::protocol::Request;
use crate::store::memory::MemoryStore;

/// A time far enough ahead that no test block is "too new".
const NOW: u64 = 1_900_000_000;

type TestNode = Node<MemoryStore>;

fn t0() -> Time {
    // One instant for the whole test: only differences matter to the machine.
    thread_local!(static BASE: Instant = Instant::now());
    Time::new(NOW, BASE.with(|b| *b))
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes(&[seed; 32]).expect("valid scalar")
}

fn address(seed: u8) -> Address {
    Address::new(Network::Regtest, key(seed).public_key().pubkey_hash())
}

fn node_with(config: Config) -> TestNode {
    Node::open(MemoryStore::new(), Params::new(Network::Regtest), config, t0()).expect("opens")
}

fn node() -> TestNode {
    node_with(Config::default())
}

fn peer(n: u8) -> PeerId {
    let key = libp2p::identity::Keypair::ed25519_from_bytes([n; 32]).expect("32 bytes");
    key.public().to_peer_id()
}

fn rpc(node: &mut TestNode, method: &str, params: serde_json::Value) -> Vec<Output> {
    let params = params.as_array().cloned().unwrap_or_default();
    let command = Command::parse(method, params).expect("a method");
    node.handle(t0(), Input::Rpc { id: 7, command, host: Host::default() }).expect("store")
}

fn reply(outputs: &[Output]) -> &Result<serde_json::Value, RpcError> {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Reply { id: 7, result } => Some(result),
            _ => None,
        })
        .expect("one reply")
}

fn published(outputs: &[Output], topic: GossipTopic) -> Vec<&Vec<u8>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Publish { topic: t, data } if *t == topic => Some(data),
            _ => None,
        })
        .collect()
}

fn job(outputs: &[Output]) -> Option<&BlockTemplate> {
    outputs.iter().find_map(|o| match o {
        Output::MiningJob(t) => Some(t),
        _ => None,
    })
}

fn jobs(outputs: &[Output]) -> usize {
    outputs.iter().filter(|o| matches!(o, Output::MiningJob(_))).count()
}

/// Mines `n` regtest blocks to `seed`'s address over RPC.
fn generate(node: &mut TestNode, n: u32, seed: u8) -> Vec<Output> {
    let outputs = rpc(node, "generatetoaddress", json!([n, address(seed).to_string()]));
    assert!(reply(&outputs).is_ok(), "{:?}", reply(&outputs));
    outputs
}

/// A signed transaction spending `from` (paying `seed`'s key) to `to`.
fn spend(from: (OutPoint, TxOut), seed: u8, to: u8, fee: u64) -> Transaction {
    let value = from.1.value.checked_sub(Amount::from_belushis(fee)).expect("in range");
    let output = TxOut { value, pubkey_hash: key(to).public_key().pubkey_hash() };
    let mut tx = Transaction::spending([from.0], vec![output]);
    sign_all(&mut tx, &[from.1], &key(seed)).expect("owner signs");
    tx
}

/// The coinbase of the block at `height` on `node`'s chain.
fn coinbase_at(node: &TestNode, height: u32) -> (OutPoint, TxOut) {
    let chain = node.core().chain();
    let hash = chain.hash_at(height).expect("store").expect("active");
    let block: Block = chain.block(&hash).expect("store").expect("stored");
    let tx = &block.txdata[0];
    (OutPoint { txid: tx.txid(), vout: 0 }, tx.outputs[0])
}

#[test]
fn submitblock_publishes_the_block_and_refreshes_the_miner() {
    let mut donor = node();
    generate(&mut donor, 1, 1);
    let tip = donor.core().chain().tip();
    let block = donor.core().chain().block(&tip).expect("store").expect("stored");

    let config = Config { mine: true, pay_to: Some(address(2).pubkey_hash()), ..Config::default() };
    let mut node = node_with(config);
    let started = node.handle(t0(), Input::Tick).expect("store");
    assert!(started.contains(&Output::StartMiner { threads: 1 }), "{started:?}");
    assert_eq!(jobs(&started), 1);

    let outputs = rpc(&mut node, "submitblock", json!([hex::encode(block.encode())]));
    assert_eq!(reply(&outputs), &Ok(serde_json::Value::Null));
    assert_eq!(node.core().chain().tip(), tip);
    assert_eq!(published(&outputs, GossipTopic::Block).len(), 1, "{outputs:?}");
    let prev = job(&outputs).map(|t| t.block.header.prev_blockhash);
    assert_eq!(prev, Some(tip), "the miner moves on");
}

#[test]
fn sendrawtransaction_relays_the_transaction_and_the_orphans_it_releases() {
    let mut node = node();
    generate(&mut node, 101, 1);
    let parent = spend(coinbase_at(&node, 1), 1, 2, 1_000);
    let child = spend((OutPoint { txid: parent.txid(), vout: 0 }, parent.outputs[0]), 2, 3, 1_000);

    // The child first, by gossip: an orphan, neither relayed nor penalised.
    let id = MessageId::new(b"child");
    let gossip = Input::Gossip { from: peer(1), id, topic: GossipTopic::Tx, data: child.encode() };
    let outputs = node.handle(t0(), gossip).expect("store");
    assert!(published(&outputs, GossipTopic::Tx).is_empty(), "{outputs:?}");
    assert_eq!(node.core().mempool().orphan_count(), 1);

    let outputs = rpc(&mut node, "sendrawtransaction", json!([hex::encode(parent.encode())]));
    assert_eq!(reply(&outputs), &Ok(json!(parent.txid().to_string())));
    let relayed = published(&outputs, GossipTopic::Tx);
    assert!(relayed.contains(&&parent.encode()), "the submitted transaction is relayed");
    assert!(relayed.contains(&&child.encode()), "so is the orphan it released");
}

#[test]
fn a_gossip_message_that_does_not_decode_is_rejected_and_its_sender_penalised() {
    let mut node = node();
    let from = peer(1);
    let id = MessageId::new(b"junk");
    let input = Input::Gossip { from, id: id.clone(), topic: GossipTopic::Block, data: vec![1, 2] };
    let outputs = node.handle(t0(), input).expect("store");
    let acceptance = MessageAcceptance::Reject;
    assert_eq!(
        outputs[0],
        Output::GossipVerdict { topic: GossipTopic::Block, id, from, acceptance }
    );
    assert!(matches!(&outputs[1], Output::Penalise { peer, score: -50, .. } if *peer == from));
    assert_eq!(node.score(&from), -50);
}

#[test]
fn penalties_ban_at_the_threshold_and_time_restores_the_score() {
    let mut node = node();
    let from = peer(1);
    node.handle(t0(), Input::PeerConnected(from)).expect("store");
    let misbehave = || Input::Misbehaved { peer: from, reason: "junk".into() };
    let first = node.handle(t0(), misbehave()).expect("store");
    assert!(!first.iter().any(|o| matches!(o, Output::Ban { .. })), "{first:?}");
    // Maintenance (the first tick runs it) restores one point.
    node.handle(t0(), Input::Tick).expect("store");
    assert_eq!(node.score(&from), -49);
    let second = node.handle(t0(), misbehave()).expect("store");
    assert!(!second.iter().any(|o| matches!(o, Output::Ban { .. })), "-99: {second:?}");
    let third = node.handle(t0(), misbehave()).expect("store");
    assert!(
        third.iter().any(|o| matches!(o, Output::Ban { peer, .. } if *peer == from)),
        "{third:?}"
    );
}

#[test]
fn a_malformed_request_is_refused_before_its_sender_is_penalised() {
    let mut node = node();
    let from = peer(1);
    let input =
        Input::Request { peer: from, id: 3, request: WireRequest::Malformed("truncated".into()) };
    let outputs = node.handle(t0(), input).expect("store");
    assert!(
        matches!(&outputs[0], Output::Respond { id: 3, response: Response::Refused(r) } if r.contains("truncated"))
    );
    assert!(matches!(&outputs[1], Output::Penalise { .. }), "{outputs:?}");
}

#[test]
fn requests_over_a_peers_budget_are_refused_until_it_refills() {
    let rate_limit = ratelimit::Config { capacity: 2, per_second: 1 };
    let mut node = node_with(Config { rate_limit, ..Config::default() });
    let from = peer(1);
    node.handle(t0(), Input::PeerConnected(from)).expect("store");
    let ask = |id| Input::Request {
        peer: from,
        id,
        request: WireRequest::Request(Request::GetBlocks(Vec::new())),
    };
    let refused = |outputs: &[Output]| matches!(&outputs[0], Output::Respond { response: Response::Refused(r), .. } if r == "rate limited");
    assert!(!refused(&node.handle(t0(), ask(1)).expect("store")));
    assert!(!refused(&node.handle(t0(), ask(2)).expect("store")));
    assert!(refused(&node.handle(t0(), ask(3)).expect("store")));
    let later = t0().after(Duration::from_secs(1));
    assert!(!refused(&node.handle(later, ask(4)).expect("store")));
}

#[test]
fn a_peer_of_another_network_is_banned() {
    let mut node = node();
    let from = peer(1);
    let input = Input::PeerIdentified { peer: from, protocol_version: "/other/1".into() };
    let outputs = node.handle(t0(), input).expect("store");
    assert!(matches!(&outputs[..], [Output::Ban { peer, .. }] if *peer == from), "{outputs:?}");
    let ours = node.identify_protocol.clone();
    let input = Input::PeerIdentified { peer: from, protocol_version: ours };
    assert!(node.handle(t0(), input).expect("store").is_empty());
}

#[test]
fn a_connected_peer_is_asked_for_its_status() {
    let mut node = node();
    let outputs = node.handle(t0(), Input::PeerConnected(peer(1))).expect("store");
    assert!(
        matches!(&outputs[..], [Output::SendRequest { request: Request::Status(_), .. }]),
        "{outputs:?}"
    );
}

#[test]
fn the_stop_rpc_stops_and_unknown_methods_do_not_parse() {
    let mut node = node();
    let outputs = rpc(&mut node, "stop", json!([]));
    assert!(outputs.contains(&Output::Stop));
    assert!(Command::parse("getblockcout", Vec::new()).is_err());
}

/// The blocks of `donor`'s active chain after genesis, in order.
fn active_blocks(donor: &TestNode) -> Vec<Block> {
    let chain = donor.core().chain();
    (1..=chain.height())
        .map(|h| {
            let hash = chain.hash_at(h).expect("store").expect("active");
            chain.block(&hash).expect("store").expect("stored")
        })
        .collect()
}

fn compact(block: &Block) -> Vec<u8> {
    tinychain_protocol::CompactBlock::from_block(block).expect("has a coinbase").encode()
}

fn verdicts(outputs: &[Output]) -> Vec<MessageAcceptance> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::GossipVerdict { acceptance, .. } => Some(*acceptance),
            _ => None,
        })
        .collect()
}

/// A fresh node with `peer(1)` connected, and a block on its genesis mined elsewhere.
fn one_block_from_a_peer() -> (TestNode, PeerId, Block) {
    let mut donor = node();
    generate(&mut donor, 1, 1);
    let block = active_blocks(&donor).remove(0);
    let mut node = node();
    let from = peer(1);
    node.handle(t0(), Input::PeerConnected(from)).expect("store");
    (node, from, block)
}

#[test]
fn a_gossiped_block_that_connects_is_forwarded_by_gossip_and_not_published_again() {
    let (mut node, from, block) = one_block_from_a_peer();
    let id = MessageId::new(b"block");
    let input = Input::Gossip { from, id, topic: GossipTopic::Block, data: compact(&block) };
    let outputs = node.handle(t0(), input).expect("store");
    assert_eq!(verdicts(&outputs), [MessageAcceptance::Accept]);
    assert!(published(&outputs, GossipTopic::Block).is_empty(), "{outputs:?}");
    assert_eq!(node.core().chain().tip(), block.block_hash());

    // The same block again: known, so neither forwarded nor held against anyone.
    let id = MessageId::new(b"again");
    let input = Input::Gossip { from, id, topic: GossipTopic::Block, data: compact(&block) };
    let outputs = node.handle(t0(), input).expect("store");
    assert_eq!(verdicts(&outputs), [MessageAcceptance::Ignore]);
    assert_eq!(node.score(&from), 0);
}

#[test]
fn an_incomplete_compact_block_waits_for_the_whole_block_from_its_sender() {
    let mut donor = node();
    generate(&mut donor, 101, 1);
    let tx = spend(coinbase_at(&donor, 1), 1, 2, 1_000);
    let sent = rpc(&mut donor, "sendrawtransaction", json!([hex::encode(tx.encode())]));
    assert!(reply(&sent).is_ok(), "{:?}", reply(&sent));
    generate(&mut donor, 1, 1);
    let mut blocks = active_blocks(&donor);
    let last = blocks.pop().expect("102 blocks");
    assert_eq!(last.txdata.len(), 2, "the block carries the transaction");

    let mut node = node();
    for block in blocks {
        let outputs = rpc(&mut node, "submitblock", json!([hex::encode(block.encode())]));
        assert_eq!(reply(&outputs), &Ok(serde_json::Value::Null));
    }
    let from = peer(1);
    node.handle(t0(), Input::PeerConnected(from)).expect("store");
    let id = MessageId::new(b"block");
    let gossip =
        Input::Gossip { from, id: id.clone(), topic: GossipTopic::Block, data: compact(&last) };
    let outputs = node.handle(t0(), gossip).expect("store");
    let hash = last.block_hash();
    assert!(verdicts(&outputs).is_empty(), "the verdict waits: {outputs:?}");
    let wanted = Request::GetBlocks(vec![hash]);
    assert!(outputs.contains(&Output::SendRequest { peer: from, request: wanted.clone() }));

    let response = Response::Blocks(vec![last]);
    let input = Input::Response { peer: from, request: wanted, response };
    let outputs = node.handle(t0(), input).expect("store");
    let acceptance = MessageAcceptance::Accept;
    let verdict = Output::GossipVerdict { topic: GossipTopic::Block, id, from, acceptance };
    assert!(outputs.contains(&verdict), "{outputs:?}");
    assert!(published(&outputs, GossipTopic::Block).is_empty(), "forwarded by gossip only");
    assert_eq!(node.core().chain().tip(), hash);
}

#[test]
fn blocks_nobody_asked_for_are_penalised_and_not_stored() {
    let (mut node, from, block) = one_block_from_a_peer();
    let request = Request::GetBlocks(Vec::new());
    let input = Input::Response { peer: from, request, response: Response::Blocks(vec![block]) };
    let outputs = node.handle(t0(), input).expect("store");
    assert!(outputs.iter().any(
        |o| matches!(o, Output::Penalise { reason, .. } if reason == "blocks nobody asked for")
    ));
    assert_eq!(node.core().chain().height(), 0);
}

#[test]
fn a_found_block_is_published_and_the_miner_rests_before_its_next_job() {
    let pay_to = Some(address(2).pubkey_hash());
    let config =
        Config { mine: true, pay_to, miner_rest: Duration::from_millis(700), ..Config::default() };
    let mut node = node_with(config);
    let started = node.handle(t0(), Input::Tick).expect("store");
    let mut block = job(&started).expect("a job").block.clone();
    let target = block.header.bits.to_target().expect("valid bits");
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce += 1;
    }
    let outputs = node.handle(t0(), Input::FoundBlock(block.clone())).expect("store");
    assert!(outputs.contains(&Output::RestMiner(Duration::from_millis(700))), "{outputs:?}");
    assert_eq!(jobs(&outputs), 0, "no job while resting");
    assert_eq!(published(&outputs, GossipTopic::Block), [&compact(&block)]);
    let rested = node.handle(t0(), Input::MinerRested).expect("store");
    assert_eq!(jobs(&rested), 1);
}
