//! The downloader's decisions: headers first, a parallel block window, stalling
//! peers dropped, lying peers caught.

use std::time::{Duration, Instant};

use tinychain_node::core::Source;
use tinychain_node::p2p::protocol::{MAX_HEADERS_PER_RESPONSE, Status};
use tinychain_node::sync::{Action, Config, Sync};
use tinychain_protocol::{Block, BlockHash, BlockHeader};

use crate::harness::{NOW, TestCore, entry, mine, new_core, pkh, regtest};

fn status(core: &TestCore) -> Status {
    let chain = core.chain();
    Status {
        genesis: chain.params().genesis_hash(),
        tip: chain.tip(),
        height: chain.height(),
        chainwork: chain.tip_entry().chainwork,
    }
}

/// A source chain of `n` blocks and a fresh node that knows nothing of it.
fn source(n: usize) -> (TestCore, Vec<Block>) {
    let mut core = new_core(regtest());
    let blocks = mine(&mut core, n, pkh(1));
    (core, blocks)
}

fn headers(blocks: &[Block]) -> Vec<BlockHeader> {
    blocks.iter().map(|b| b.header).collect()
}

fn requested_blocks(actions: &[Action<u32>]) -> Vec<(u32, Vec<BlockHash>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::GetBlocks { peer, hashes } => Some((*peer, hashes.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn headers_come_first_from_the_peer_with_most_work_then_blocks_from_all() {
    let (src, blocks) = source(120);
    let mut node = new_core(regtest());
    let mut sync = Sync::new(Config::default());
    let t0 = Instant::now();
    sync.set_status(1, status(&src), node.chain()).expect("store");
    sync.set_status(2, status(&src), node.chain()).expect("store");
    let actions = sync.schedule(node.chain(), t0).expect("store");
    // One headers request, with a locator from our tip (genesis), and no blocks yet.
    let [Action::GetHeaders { peer, locator }] = actions.as_slice() else {
        panic!("expected one headers request, got {actions:?}")
    };
    assert_eq!(locator, &vec![node.chain().tip()]);
    let peer = *peer;
    assert!(
        sync.schedule(node.chain(), t0).expect("store").is_empty(),
        "one headers request at a time"
    );

    let outcome = node.handle_headers(&headers(&blocks), NOW).expect("store");
    assert_eq!(outcome.new, 120);
    assert!(sync.headers_received(&peer, 120, &outcome, node.chain()).expect("store").is_none());
    assert_eq!(node.chain().index().best_header_height(), 120);

    // Blocks: two requests of 16 per peer, lowest heights first, both peers used.
    let actions = sync.schedule(node.chain(), t0).expect("store");
    let requests = requested_blocks(&actions);
    assert_eq!(requests.len(), 4, "{actions:?}");
    assert!(requests.iter().any(|(p, _)| *p == 1) && requests.iter().any(|(p, _)| *p == 2));
    let mut asked: Vec<BlockHash> = requests.iter().flat_map(|(_, h)| h.clone()).collect();
    let first_64: Vec<BlockHash> = blocks[..64].iter().map(Block::block_hash).collect();
    asked.sort();
    let mut expected = first_64.clone();
    expected.sort();
    assert_eq!(asked, expected);
    assert_eq!(sync.blocks_in_flight(), 64);
    // Nothing more until answers come: every slot is taken.
    assert!(requested_blocks(&sync.schedule(node.chain(), t0).expect("store")).is_empty());

    // Answers arrive in any order; the chain connects strictly in order.
    for (peer, hashes) in requests.iter().rev() {
        for hash in hashes {
            let block = blocks.iter().find(|b| b.block_hash() == *hash).expect("ours").clone();
            node.handle_block(block, Source::Requested(*peer), NOW).expect("store");
        }
        sync.blocks_received(peer, hashes, hashes);
    }
    assert_eq!(node.chain().height(), 64);
    // The window moves on: the rest is asked for.
    let rest: usize = requested_blocks(&sync.schedule(node.chain(), t0).expect("store"))
        .iter()
        .map(|(_, h)| h.len())
        .sum();
    assert_eq!(rest, 56);
}

#[test]
fn a_full_headers_reply_is_followed_by_another_request_to_the_same_peer() {
    let n = MAX_HEADERS_PER_RESPONSE + 5;
    let (src, blocks) = source(n);
    let mut node = new_core(regtest());
    let mut sync = Sync::new(Config::default());
    let t0 = Instant::now();
    sync.set_status(7, status(&src), node.chain()).expect("store");
    assert!(matches!(
        sync.schedule(node.chain(), t0).expect("store").as_slice(),
        [Action::GetHeaders { .. }]
    ));
    let first = headers(&blocks[..MAX_HEADERS_PER_RESPONSE]);
    let outcome = node.handle_headers(&first, NOW).expect("store");
    assert!(
        sync.headers_received(&7, first.len(), &outcome, node.chain()).expect("store").is_none()
    );
    let actions = sync.schedule(node.chain(), t0).expect("store");
    let Some(Action::GetHeaders { peer: 7, locator }) = actions.first() else {
        panic!("expected a second headers request first, got {actions:?}")
    };
    assert_eq!(locator[0], blocks[MAX_HEADERS_PER_RESPONSE - 1].block_hash());
    assert!(locator.len() <= 101);
}

#[test]
fn a_peer_that_lets_a_request_time_out_is_dropped_and_its_blocks_go_to_others() {
    let (src, blocks) = source(40);
    let mut node = new_core(regtest());
    let config = Config { requests_per_peer: 1, ..Config::default() };
    let timeout = config.timeout;
    let mut sync = Sync::new(config);
    let t0 = Instant::now();
    // The headers are known already, so both peers are asked for blocks at once.
    node.handle_headers(&headers(&blocks), NOW).expect("store");
    sync.set_status(1, status(&src), node.chain()).expect("store");
    sync.set_status(2, status(&src), node.chain()).expect("store");
    let requests = requested_blocks(&sync.schedule(node.chain(), t0).expect("store"));
    assert_eq!(requests.len(), 2);
    // Peer 2 answers; peer 1 never does.
    let (_, answered) = requests.iter().find(|(p, _)| *p == 2).expect("peer 2 asked").clone();
    let (_, silent) = requests.iter().find(|(p, _)| *p == 1).expect("peer 1 asked").clone();
    sync.blocks_received(&2, &answered, &answered);
    let later = t0 + timeout + Duration::from_secs(1);
    let actions = sync.schedule(node.chain(), later).expect("store");
    assert!(actions.contains(&Action::Drop { peer: 1, reason: "sync request unanswered".into() }));
    assert!(!sync.has_peer(&1));
    let reassigned: Vec<BlockHash> = requested_blocks(&actions)
        .into_iter()
        .flat_map(|(p, h)| {
            assert_eq!(p, 2);
            h
        })
        .collect();
    assert!(silent.iter().all(|h| reassigned.contains(h)), "peer 1's blocks asked of peer 2");
}

#[test]
fn blocks_are_asked_only_of_peers_that_have_them() {
    let (src, blocks) = source(60);
    let mut node = new_core(regtest());
    let mut sync = Sync::new(Config::default());
    let t0 = Instant::now();
    let outcome = node.handle_headers(&headers(&blocks), NOW).expect("store");
    assert_eq!(outcome.new, 60);
    // Peer 1 has the whole chain; peer 2 only the first 10 blocks.
    sync.set_status(1, status(&src), node.chain()).expect("store");
    let mut short = status(&src);
    short.tip = blocks[9].block_hash();
    short.height = 10;
    short.chainwork = entry(&node, &short.tip).expect("indexed").chainwork;
    sync.set_status(2, short, node.chain()).expect("store");
    for (peer, hashes) in requested_blocks(&sync.schedule(node.chain(), t0).expect("store")) {
        if peer == 2 {
            for hash in hashes {
                let height = entry(&node, &hash).expect("indexed").height;
                assert!(height <= 10, "peer 2 asked for block {height} it does not have");
            }
        }
    }
}

#[test]
fn a_status_the_headers_do_not_back_up_is_misbehaviour() {
    let (src, blocks) = source(30);
    let mut node = new_core(regtest());
    let mut sync = Sync::new(Config::default());
    let t0 = Instant::now();
    sync.set_status(3, status(&src), node.chain()).expect("store");
    let [Action::GetHeaders { .. }] = sync.schedule(node.chain(), t0).expect("store").as_slice()
    else {
        panic!("headers first")
    };
    // It claimed 30 blocks but sends only 10 headers.
    let outcome = node.handle_headers(&headers(&blocks[..10]), NOW).expect("store");
    let misbehaviour = sync.headers_received(&3, 10, &outcome, node.chain()).expect("store");
    assert!(misbehaviour.is_some_and(|m| m.reason.contains("claimed height 30")));
    // Its claim is spent: it is not asked again until it sends a new status.
    assert!(
        !sync
            .schedule(node.chain(), t0)
            .expect("store")
            .iter()
            .any(|a| matches!(a, Action::GetHeaders { .. }))
    );
}

#[test]
fn invalid_or_unasked_headers_are_misbehaviour() {
    let (src, blocks) = source(5);
    let mut node = new_core(regtest());
    let mut sync = Sync::new(Config::default());
    let t0 = Instant::now();
    sync.set_status(4, status(&src), node.chain()).expect("store");
    // Unasked.
    let outcome = node.handle_headers(&headers(&blocks), NOW).expect("store");
    assert!(sync.headers_received(&4, 5, &outcome, node.chain()).expect("store").is_some());

    let (src, blocks) = source(5);
    let mut node = new_core(regtest());
    let mut sync = Sync::new(Config::default());
    sync.set_status(4, status(&src), node.chain()).expect("store");
    let _ = sync.schedule(node.chain(), t0).expect("store");
    // A header with bits other than the chain requires.
    let mut bad = headers(&blocks);
    bad[2].bits = tinychain_protocol::pow::CompactTarget::from_consensus(0x1d00_ffff);
    let outcome = node.handle_headers(&bad, NOW).expect("store");
    assert_eq!(outcome.new, 2, "the headers before the bad one are kept");
    let misbehaviour = sync.headers_received(&4, 5, &outcome, node.chain()).expect("store");
    assert!(misbehaviour.is_some_and(|m| m.reason.contains("invalid header")), "{outcome:?}");

    // Headers that skip one are not continuous.
    let mut node = new_core(regtest());
    let skipping = vec![blocks[0].header, blocks[2].header];
    let outcome = node.handle_headers(&skipping, NOW).expect("store");
    assert_eq!(outcome.new, 1);
    assert!(outcome.error.is_some_and(|e| e.to_string().contains("does not follow")));
}

#[test]
fn headers_are_served_from_the_active_chain_after_the_locator() {
    let (src, blocks) = source(50);
    let chain = src.chain();
    let all = chain.headers_after(&[chain.params().genesis_hash()], 2000).expect("store");
    assert_eq!(all, headers(&blocks));
    let after_20 = chain
        .headers_after(&chain.locator_from(&blocks[19].block_hash()).expect("store"), 2000)
        .expect("store");
    assert_eq!(after_20, headers(&blocks[20..]));
    assert_eq!(chain.headers_after(&[], 7).expect("store").len(), 7);
    // An unknown locator starts after genesis.
    assert_eq!(chain.headers_after(&[BlockHash::ZERO], 3).expect("store"), headers(&blocks[..3]));
}

#[test]
fn answers_to_requests_the_downloader_did_not_make_change_nothing() {
    let (src, blocks) = source(40);
    let mut node = new_core(regtest());
    node.handle_headers(&headers(&blocks), NOW).expect("store");
    let mut sync = Sync::new(Config { requests_per_peer: 1, ..Config::default() });
    let t0 = Instant::now();
    sync.set_status(1, status(&src), node.chain()).expect("store");
    let asked = requested_blocks(&sync.schedule(node.chain(), t0).expect("store"));
    assert_eq!(asked.len(), 1);
    // An orphan's parent fetched by hash, answered with nothing, then failed.
    let other = [blocks[39].block_hash()];
    sync.blocks_received(&1, &other, &[]);
    sync.request_failed(&1, &other);
    assert_eq!(sync.peer_stats(&1), Some((0, 16)), "the real request is still in flight");
    // The real answer frees the slot: the next blocks are asked of the same peer.
    sync.blocks_received(&1, &asked[0].1, &asked[0].1);
    assert_eq!(requested_blocks(&sync.schedule(node.chain(), t0).expect("store")).len(), 1);
}

#[test]
fn a_refused_peer_rests_a_second_and_is_then_asked_again() {
    let (src, blocks) = source(40);
    let mut node = new_core(regtest());
    node.handle_headers(&headers(&blocks), NOW).expect("store");
    let mut sync = Sync::new(Config { requests_per_peer: 1, ..Config::default() });
    let t0 = Instant::now();
    sync.set_status(1, status(&src), node.chain()).expect("store");
    let asked = requested_blocks(&sync.schedule(node.chain(), t0).expect("store"));
    assert_eq!(asked.len(), 1);
    sync.request_refused(&1, &asked[0].1, t0);
    assert!(
        requested_blocks(&sync.schedule(node.chain(), t0).expect("store")).is_empty(),
        "it rests"
    );
    let later = t0 + Duration::from_millis(1500);
    let again = requested_blocks(&sync.schedule(node.chain(), later).expect("store"));
    assert_eq!(again, asked, "the same blocks, of the same peer, after the rest");
}

/// Orphans arriving in a burst ask for their missing parent once and for the
/// sender's status at most once a second, never while one is unanswered.
#[test]
fn orphan_bursts_ask_for_the_parent_once_and_the_status_sparingly() {
    let mut sync: Sync<u32> = Sync::new(Config::default());
    let t0 = Instant::now();
    let parent = BlockHash::from_byte_array([7; 32]);
    let mut actions = Vec::new();
    for _ in 0..50 {
        actions.extend(sync.orphan_parent(1, parent, true, t0));
    }
    assert_eq!(
        actions,
        vec![Action::GetBlocks { peer: 1, hashes: vec![parent] }, Action::GetStatus { peer: 1 }]
    );
    // Unanswered, nothing more; answered, one more after a second.
    let later = t0 + Duration::from_millis(500);
    assert!(sync.orphan_parent(1, parent, true, later).is_empty());
    sync.status_answered(&1);
    assert!(sync.ask_status(1, later).is_none(), "within a second of the last");
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(sync.orphan_parent(1, parent, true, t1), vec![Action::GetStatus { peer: 1 }]);
    // Another peer's status is its own; a parent is not fetched while syncing.
    let other = BlockHash::from_byte_array([8; 32]);
    assert_eq!(sync.orphan_parent(2, other, false, t1), vec![Action::GetStatus { peer: 2 }]);
    // An unanswered request that timed out may be sent again.
    let t2 = t1 + Config::default().timeout;
    assert_eq!(sync.ask_status(1, t2), Some(Action::GetStatus { peer: 1 }));
}
