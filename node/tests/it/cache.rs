//! The UTXO cache over the redb store: initial sync through it gives the same
//! chain state as without it, and a crash between flushes restarts on the last
//! flushed tip and reconnects the stored blocks.

use std::time::Duration;

use tinychain_node::chain::{self, ChainState};
use tinychain_node::store::Store;
use tinychain_node::store::cache::CoinsCache;
use tinychain_node::store::memory::MemoryStore;
use tinychain_node::store::redb::RedbStore;
use tinychain_protocol::Block;

use crate::harness::*;

/// A chain of 30 blocks to pkh(1), then 40 blocks each spending a matured
/// coinbase into two outputs and one of the previous block's outputs on
/// (coins created and spent a block apart: within one flush).
pub(crate) fn source_chain() -> Vec<Block> {
    let mut core = new_core(regtest());
    let alice = key(1);
    let mut blocks = mine(&mut core, 30, pkh(1));
    let mut change = None;
    for i in 0..40 {
        let matured = coinbase_out(&blocks[i]);
        let value = matured.1.value.checked_sub(coins(1)).expect("large enough");
        let half = tinychain_protocol::Amount::from_belushis(value.to_belushis() / 2);
        let split = spend(&[matured], vec![pay(1, half), pay(1, half)], &alice);
        core.handle_tx(split.clone(), None, NOW).expect("store").0.expect("accepted");
        if let Some(prev) = change.take() {
            let on = spend(&[prev], vec![pay(1, coins(1))], &alice);
            core.handle_tx(on, None, NOW).expect("store").0.expect("accepted");
        }
        change = Some(out(&split, 1));
        blocks.extend(mine(&mut core, 1, pkh(1)));
    }
    blocks
}

fn config() -> chain::Config {
    chain::Config { verify_utxo_on_start: true, ..Default::default() }
}

/// The tip and digest after connecting `blocks` into a plain in-memory chain.
fn reference(blocks: &[Block]) -> (tinychain_protocol::BlockHash, String) {
    let mut chain = ChainState::open(MemoryStore::new(), regtest(), config()).expect("opens");
    for block in blocks {
        chain.accept_block(block, u32::MAX).expect("valid");
        chain.activate_best_chain().expect("connects");
    }
    (chain.tip(), chain.utxo_digest().to_string())
}

/// Syncs `blocks` (headers first, so the chain counts as far behind) into a
/// small cache over redb at `path`, stopping after `connect` blocks.
fn sync_into(
    path: &std::path::Path,
    blocks: &[Block],
    connect: usize,
) -> ChainState<CoinsCache<RedbStore>> {
    let store = RedbStore::open(path, regtest().genesis_hash()).expect("store opens");
    let cache = CoinsCache::new(store, 16 * 1024).with_interval(Duration::MAX);
    let mut chain = ChainState::open(cache, regtest(), config()).expect("opens");
    let headers: Vec<_> = blocks.iter().map(|b| b.header).collect();
    chain.accept_headers(&headers, u32::MAX).expect("headers");
    for block in &blocks[..connect] {
        chain.accept_block(block, u32::MAX).expect("valid");
        let change = chain.activate_best_chain().expect("connects");
        assert_eq!(change.connected.len(), 1);
    }
    chain
}

#[test]
fn initial_sync_through_a_small_cache_ends_on_the_same_tip_and_utxo_set() {
    let blocks = source_chain();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let chain = sync_into(&path, &blocks, blocks.len());
    let flushes = chain.store().flushes();
    assert!(flushes > 2, "the budget forced flushes during the sync: {flushes}");
    let (tip, digest) = reference(&blocks);
    assert_eq!((chain.tip(), chain.utxo_digest().to_string()), (tip, digest.clone()));
    // The last blocks are near the best header: each flushed, the disk is at the tip.
    let stored = chain.store().inner().tip().expect("reads").expect("a tip");
    assert_eq!(stored.hash, tip);
    drop(chain);
    let store = RedbStore::open(&path, regtest().genesis_hash()).expect("store opens");
    let reopened = ChainState::open(store, regtest(), config()).expect("consistent");
    assert_eq!((reopened.tip(), reopened.utxo_digest().to_string()), (tip, digest));
}

#[test]
fn a_crash_between_flushes_restarts_on_the_flushed_tip_and_reconnects_stored_blocks() {
    let blocks = source_chain();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let connected = 45;
    let chain = sync_into(&path, &blocks, connected);
    let flushed = chain.store().inner().tip().expect("reads").expect("a tip");
    assert!(
        (flushed.height as usize) < connected,
        "the cache held the last blocks' chain state ({} on disk)",
        flushed.height
    );
    // The crash: the cache is dropped without its flush.
    drop(chain);
    let store = RedbStore::open(&path, regtest().genesis_hash()).expect("store opens");
    let only_look = chain::Config { activate_on_start: false, ..config() };
    let on_disk = ChainState::open(store, regtest(), only_look).expect("consistent");
    assert_eq!(on_disk.tip(), flushed.hash, "restarts on the flushed tip, UTXO digest checked");
    drop(on_disk);
    // Opening for real connects the stored blocks above it again, from the disk.
    let store = RedbStore::open(&path, regtest().genesis_hash()).expect("store opens");
    let restarted = ChainState::open(store, regtest(), config()).expect("consistent");
    let (tip, digest) = reference(&blocks[..connected]);
    assert_eq!((restarted.tip(), restarted.utxo_digest().to_string()), (tip, digest));
}
