//! The redb store: restarts keep everything, damage and misuse are refused clearly.

use tinychain_node::chain::{self, ChainState, OpenError};
use tinychain_node::core::Core;
use tinychain_node::store::redb::RedbStore;
use tinychain_node::store::{Batch, Op, Store, StoreError};
use tinychain_protocol::OutPoint;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::validation::Coin;

use crate::harness::*;

fn open(path: &std::path::Path) -> Core<RedbStore, u32> {
    let params = regtest();
    let store = RedbStore::open(path, params.genesis_hash()).expect("store opens");
    Core::open(store, params, Default::default(), NOW).expect("core opens")
}

#[test]
fn a_restart_keeps_the_tip_the_utxo_set_and_the_mempool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let alice = key(1);
    let (tip, digest, txid, history) = {
        let mut core = open(&path);
        let mut blocks = Vec::new();
        for _ in 0..12 {
            let mut block = core.block_template(pkh(1), 0).block;
            solve(&mut block);
            core.handle_block(block.clone(), None, NOW).expect("store");
            blocks.push(block);
        }
        let tx = spend(&[coinbase_out(&blocks[0])], vec![pay(2, coins(49))], &alice);
        // It entered the mempool a while before the restart.
        core.handle_tx(tx.clone(), None, NOW - 100).expect("store").0.expect("accepted");
        core.save_mempool().expect("saved");
        let history = core.chain().store().address_history(&pkh(1), 100).expect("reads");
        (core.chain().tip(), core.chain().utxo_digest(), tx.txid(), history)
    };
    let core = open(&path);
    assert_eq!(core.chain().tip(), tip);
    assert_eq!(core.chain().height(), 12);
    assert_eq!(core.chain().utxo_digest(), digest);
    let entry = core.mempool().get(&txid).expect("mempool restored");
    assert_eq!(entry.time, NOW - 100, "the entry keeps its time, so expiry is not postponed");
    let coins_of_alice = core.chain().store().address_coins(&pkh(1), 100).expect("reads");
    assert_eq!(coins_of_alice.len(), 12, "one coinbase per block");
    assert_eq!(core.chain().store().address_history(&pkh(1), 100).expect("reads"), history);
    assert_eq!(history.len(), 12);
}

#[test]
fn a_utxo_set_that_disagrees_with_the_tip_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    {
        let mut core = open(&path);
        mine_into(&mut core, 3);
    }
    // Damage: a coin appears that no block created.
    {
        let mut store = RedbStore::open(&path, regtest().genesis_hash()).expect("opens");
        let stray = store.coin(&OutPoint::NULL).expect("reads");
        assert!(stray.is_none());
        let mut batch = Batch::default();
        let coin = Coin { output: pay(9, coins(1)), height: 1, is_coinbase: false };
        batch.push(Op::AddCoin(OutPoint::NULL, coin));
        store.write(batch).expect("writes");
    }
    let store = RedbStore::open(&path, regtest().genesis_hash()).expect("opens");
    let err = ChainState::open(store, regtest(), chain::Config::default()).expect_err("refused");
    assert!(matches!(err, OpenError::Inconsistent(_)), "{err}");
    assert!(err.to_string().contains("UTXO set digest"), "{err}");
}

#[test]
fn another_networks_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    drop(open(&path));
    let main = Params::new(Network::Main);
    let err = RedbStore::open(&path, main.genesis_hash()).expect_err("refused");
    assert!(matches!(err, StoreError::WrongNetwork { .. }), "{err}");
}

fn mine_into(core: &mut Core<RedbStore, u32>, n: usize) {
    for _ in 0..n {
        let mut block = core.block_template(pkh(1), 0).block;
        solve(&mut block);
        core.handle_block(block, None, NOW).expect("store");
    }
}

#[test]
fn a_block_stored_but_not_connected_before_a_crash_is_connected_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let params = regtest();
    let block = {
        let mut core = open(&path);
        mine_into(&mut core, 2);
        let mut block = core.block_template(pkh(1), 0).block;
        solve(&mut block);
        block
    };
    // Simulate the crash window: accepted (stored) but never activated.
    {
        let store = RedbStore::open(&path, params.genesis_hash()).expect("opens");
        let config = chain::Config { activate_on_start: false, ..Default::default() };
        let mut chain = ChainState::open(store, params.clone(), config).expect("opens");
        chain.accept_block(&block, u32::MAX).expect("accepted");
        // Accepting keeps the block for the commit that connects it; on its
        // own (a side branch, or as here) it is stored by a flush.
        chain.flush().expect("stored");
        assert_eq!(chain.height(), 2, "stored, not connected");
    }
    let core = open(&path);
    assert_eq!(core.chain().tip(), block.block_hash(), "connected on start");
    assert_eq!(core.chain().height(), 3);
}

/// A block that becomes the tip is stored and connected in one commit: block,
/// index entry, coins, undo data and the new tip together. A side-branch block
/// is one commit too, and is readable as soon as it is accepted.
#[test]
fn a_new_tip_costs_one_commit_with_its_block() {
    let mut core = new_core(regtest());
    let genesis = core.chain().tip();
    let writes = |core: &TestCore| core.chain().store().writes;

    let before = writes(&core);
    let main = block_on(&core, genesis, vec![], pkh(1), None, 1);
    let (outcome, _) = submit(&mut core, main.clone());
    assert_eq!(outcome, tinychain_node::core::BlockOutcome::Accepted);
    assert_eq!(core.chain().tip(), main.block_hash());
    assert_eq!(writes(&core) - before, 1, "one commit holds the block and its connection");
    let stored = core.chain().store().block(&main.block_hash()).expect("reads");
    assert_eq!(stored.as_ref(), Some(&main), "the block is in the store");

    let before = writes(&core);
    let side = block_on(&core, genesis, vec![], pkh(2), None, 2);
    submit(&mut core, side.clone());
    assert_eq!(core.chain().tip(), main.block_hash(), "equal work: the first stays");
    assert_eq!(writes(&core) - before, 1, "a side block is stored on its own");
    let stored = core.chain().store().block(&side.block_hash()).expect("reads");
    assert_eq!(stored.as_ref(), Some(&side), "the side block is in the store");
}
