//! The redb store: restarts keep everything, damage and misuse are refused clearly.

use tinychain_node::chain::{self, ChainState, OpenError};
use tinychain_node::core::{BlockOutcome, Core};
use tinychain_node::store::redb::{RedbStore, SCHEMA_VERSION};
use tinychain_node::store::{Batch, BlockStatus, Op, Store, StoreError};
use tinychain_node::template::coinbase;
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::validation::{Coin, block_subsidy};
use tinychain_protocol::{BlockHash, OutPoint};

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
        let history = core.chain().store().address_history(&pkh(1), None, 100).expect("reads");
        (core.chain().tip(), core.chain().utxo_digest(), tx.txid(), history)
    };
    let core = open(&path);
    assert_eq!(core.chain().tip(), tip);
    assert_eq!(core.chain().height(), 12);
    assert_eq!(core.chain().utxo_digest(), digest);
    let entry = core.mempool().get(&txid).expect("mempool restored");
    assert_eq!(entry.time, NOW - 100, "the entry keeps its time, so expiry is not postponed");
    let coins_of_alice = core.chain().store().address_coins(&pkh(1), None, 100).expect("reads");
    assert_eq!(coins_of_alice.len(), 12, "one coinbase per block");
    assert_eq!(core.chain().store().address_history(&pkh(1), None, 100).expect("reads"), history);
    assert_eq!(history.len(), 12);
}

#[test]
fn a_utxo_set_that_disagrees_with_the_tip_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    // Damage: a coin appears that no block created.
    let coin = Coin { output: pay(9, coins(1)), height: 1, is_coinbase: false };
    let err = damaged(&path, 3, Op::AddCoins(vec![(OutPoint::NULL, coin)]));
    assert!(err.to_string().contains("UTXO set digest"), "{err}");
}

/// Mines `blocks` into a new store at `path`, applies `damage` behind the
/// chain's back, and returns why the chain then refuses to open.
fn damaged(path: &std::path::Path, blocks: usize, damage: Op) -> OpenError {
    mine_into(&mut open(path), blocks);
    let mut store = RedbStore::open(path, regtest().genesis_hash()).expect("opens");
    let mut batch = Batch::default();
    batch.push(damage);
    store.write(batch).expect("writes");
    let err = ChainState::open(store, regtest(), chain::Config::default()).expect_err("refused");
    assert!(matches!(err, OpenError::Inconsistent(_)), "{err}");
    err
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

/// The block index lives in the store: a reopened chain holds a couple of
/// entries in memory, not one per block, and still finds every block by hash
/// and by height.
#[test]
fn a_reopened_chain_reads_its_index_from_the_store_and_keeps_little_in_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let blocks = {
        let mut core = open(&path);
        let blocks = mine(&mut core, 300, pkh(1));
        assert!(core.chain().index().resident_len() <= 2, "the tip and the best header");
        blocks
    };
    let core = open(&path);
    let chain = core.chain();
    assert_eq!(chain.index().len(), 301, "genesis and 300 blocks are known");
    let resident = chain.index().resident_len();
    assert!(resident <= 2, "{resident} index entries in memory after reopening 301 blocks");
    for (height, block) in (1..).zip(&blocks) {
        let hash = block.block_hash();
        let stored = chain.index_entry(&hash).expect("reads").expect("indexed");
        assert_eq!(stored.height, height);
        assert!(stored.linked && stored.status == BlockStatus::Valid, "{height}");
        assert_eq!(chain.hash_at(height).expect("reads"), Some(hash));
        assert!(chain.is_active(&hash).expect("reads"));
    }
    assert_eq!(chain.hash_at(301).expect("reads"), None);
    // Far ancestors come from skip pointers and the active-chain table alike.
    let tip = chain.tip();
    assert_eq!(chain.ancestor(&tip, 7).expect("reads"), Some(blocks[6].block_hash()));
    let locator = chain.locator().expect("reads");
    assert_eq!(locator.first(), Some(&tip));
    assert_eq!(locator.last(), Some(&regtest().genesis_hash()));
}

/// Heights follow the tip through a reorg to a shorter chain with more work
/// (the heights above the new tip are deleted), and survive a restart.
#[test]
fn the_active_chain_by_height_follows_a_reorg_and_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let mut params = regtest();
    params.pow_no_retargeting = false;
    let open_retargeting = || {
        let store = RedbStore::open(&path, params.genesis_hash()).expect("store opens");
        Core::<_, u32>::open(store, params.clone(), Default::default(), NOW).expect("core opens")
    };
    let (slow, fast, prefix) = {
        let mut core = open_retargeting();
        let genesis = core.chain().tip();
        // As in the chain tests: fast blocks raise the difficulty, slow ones lower it.
        let prefix = branch(&mut core, genesis, 60, 1, Some(1));
        let fork = prefix.last().expect("prefix").block_hash();
        let slow = branch(&mut core, fork, 9, 2, Some(3_600));
        let fast = branch(&mut core, fork, 8, 3, Some(1));
        assert_eq!(core.chain().tip(), fast[7].block_hash(), "the shorter branch wins");
        (slow, fast, prefix)
    };
    let core = open_retargeting();
    let chain = core.chain();
    assert_eq!(chain.tip(), fast[7].block_hash());
    for (height, block) in (1..).zip(prefix.iter().chain(&fast)) {
        assert_eq!(chain.hash_at(height).expect("reads"), Some(block.block_hash()), "{height}");
    }
    assert_eq!(chain.hash_at(69).expect("reads"), None, "the old tip's height is gone");
    assert!(slow.iter().all(|b| !chain.is_active(&b.block_hash()).expect("reads")));
    assert_eq!(chain.fork_height(&slow[8].block_hash(), &chain.tip()).expect("reads"), Some(60));
}

/// An old data directory is refused with a message that says what to do.
#[test]
fn a_store_of_another_schema_version_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    {
        // What schema 1 (the index loaded whole into memory) left behind.
        let db = redb::Database::create(&path).expect("creates");
        let txn = db.begin_write().expect("writes");
        {
            let meta: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(meta).expect("opens");
            meta.insert(b"schema_version".as_slice(), 1u32.to_be_bytes().as_slice())
                .expect("inserts");
        }
        txn.commit().expect("commits");
    }
    let err = RedbStore::open(&path, regtest().genesis_hash()).expect_err("refused");
    assert!(matches!(err, StoreError::Schema { found: 1, expected: SCHEMA_VERSION }), "{err:?}");
    assert!(err.to_string().contains("sync afresh"), "{err}");
}

/// A block found invalid after a restart marks the headers stored on it
/// invalid (found through the store's children table), and the best header
/// falls back to the valid chain, across another restart too.
#[test]
fn an_invalid_block_after_a_restart_invalidates_the_headers_stored_on_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("chain.redb");
    let (bad, descendants, good_tip) = {
        let mut core = open(&path);
        mine_into(&mut core, 2);
        let good_tip = core.chain().tip();
        // A good header on a bad body: the coinbase claims the wrong height.
        let mut bad = block_on(&core, good_tip, vec![], pkh(2), None, 7);
        let reward = block_subsidy(3, core.chain().params());
        bad.txdata[0] = coinbase(4, 7, pkh(2), reward);
        bad.header.merkle_root = block_merkle_root(&bad.txdata).root;
        solve(&mut bad);
        assert_eq!(core.handle_headers(&[bad.header], NOW).expect("store").new, 1);
        let mut descendants = Vec::new();
        let mut parent = bad.block_hash();
        for i in 0..3 {
            let block = block_on(&core, parent, vec![], pkh(2), None, i);
            assert_eq!(core.handle_headers(&[block.header], NOW).expect("store").new, 1);
            parent = block.block_hash();
            descendants.push(parent);
        }
        (bad, descendants, good_tip)
    };
    let best_header = |core: &Core<RedbStore, u32>| core.chain().index().best_header().map(|b| b.0);
    let mut core = open(&path);
    assert_eq!(best_header(&core), descendants.last().copied(), "rebuilt at start-up");
    let (outcome, _) = submit(&mut core, bad.clone());
    assert!(matches!(outcome, BlockOutcome::Invalid(_)), "{outcome:?}");
    let status =
        |core: &Core<RedbStore, u32>, hash: &BlockHash| entry(core, hash).expect("indexed").status;
    assert_eq!(status(&core, &bad.block_hash()), BlockStatus::Invalid);
    for hash in &descendants {
        assert_eq!(status(&core, hash), BlockStatus::InvalidChild);
    }
    assert_eq!(best_header(&core), Some(good_tip));
    drop(core);
    let core = open(&path);
    assert_eq!(best_header(&core), Some(good_tip), "the statuses were stored");
    assert!(descendants.iter().all(|h| status(&core, h) == BlockStatus::InvalidChild));
}

/// A hole in the stored active chain is found at start-up, not when a peer
/// first asks for that height.
#[test]
fn an_active_chain_with_a_hole_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = damaged(&dir.path().join("chain.redb"), 5, Op::DeleteActive(3));
    assert!(err.to_string().contains("at height 3"), "{err}");
}

/// Alice pays Bob twice and herself change in one transaction. Bob's coins and
/// Alice's follow the spend, honour the limit, and go back when a reorg
/// disconnects the block — on both stores.
#[test]
fn the_address_index_follows_spends_and_reorgs() {
    fn check<S: Store>(mut core: Core<S, u32>) {
        let alice = key(1);
        let mined = mine(&mut core, 101, pkh(1));
        let fork = core.chain().tip();
        let coins_of = |core: &Core<S, u32>, who: u8, limit: usize| {
            let mut found =
                core.chain().store().address_coins(&pkh(who), None, limit).expect("reads");
            found.sort_by_key(|(op, _)| *op);
            found
        };
        assert_eq!(coins_of(&core, 1, 1_000).len(), 101);
        assert_eq!(coins_of(&core, 1, 7).len(), 7, "the limit holds");

        let paid = spend(
            &[coinbase_out(&mined[0])],
            vec![pay(2, coins(10)), pay(1, coins(20)), pay(2, coins(19))],
            &alice,
        );
        let block = block_on(&core, fork, vec![paid.clone()], pkh(3), None, 1);
        assert_eq!(submit(&mut core, block).0, BlockOutcome::Accepted);
        let bob: Vec<OutPoint> = coins_of(&core, 2, 1_000).into_iter().map(|(op, _)| op).collect();
        // Pages of any size, each after the last coin of the one before, add up
        // to the whole list in order: within a transaction's outputs too.
        for who in [1, 2] {
            let store = core.chain().store();
            let whole = store.address_coins(&pkh(who), None, 1_000).expect("reads");
            for size in [1, 2, 3, 50] {
                let (mut paged, mut after) = (Vec::new(), None);
                loop {
                    let page = store.address_coins(&pkh(who), after, size).expect("reads");
                    assert!(page.len() <= size);
                    let Some((op, coin)) = page.last() else { break };
                    after = Some((coin.height, *op));
                    paged.extend(page);
                }
                assert_eq!(paged, whole, "coins of {who} in pages of {size}");
            }
            let history = store.address_history(&pkh(who), None, 1_000).expect("reads");
            let (mut paged, mut after) = (Vec::new(), None);
            loop {
                let page = store.address_history(&pkh(who), after, 2).expect("reads");
                let Some(last) = page.last() else { break };
                after = Some(*last);
                paged.extend(page);
            }
            assert_eq!(paged, history, "history of {who} in pages of 2");
        }
        let mut expected = vec![out(&paid, 0).0, out(&paid, 2).0];
        expected.sort();
        assert_eq!(bob, expected, "both outputs paying Bob");
        let alice_now = coins_of(&core, 1, 1_000);
        assert_eq!(alice_now.len(), 101, "one coinbase spent, the change added");
        assert!(alice_now.iter().all(|(op, _)| *op != coinbase_out(&mined[0]).0));
        assert!(alice_now.iter().any(|(op, _)| *op == out(&paid, 1).0));
        assert_eq!(
            core.chain().store().address_history(&pkh(2), None, 10).expect("reads").len(),
            1
        );

        // Two empty blocks on the fork outweigh the one with the payment.
        branch(&mut core, fork, 2, 4, None);
        assert!(coins_of(&core, 2, 1_000).is_empty(), "Bob's coins went with the block");
        assert!(core.chain().store().address_history(&pkh(2), None, 10).expect("reads").is_empty());
        let alice_after = coins_of(&core, 1, 1_000);
        assert!(alice_after.iter().any(|(op, _)| *op == coinbase_out(&mined[0]).0), "restored");
        assert!(alice_after.iter().all(|(op, _)| *op != out(&paid, 1).0), "change gone");
    }
    check(new_core(regtest()));
    let dir = tempfile::tempdir().expect("temp dir");
    check(open(&dir.path().join("chain.redb")));
}

/// The redb store's coin rows (64 outputs of a transaction per row) hold
/// exactly what the memory store's one-entry-per-output map holds, whatever
/// the order of creations and spends, within a batch or across batches.
#[test]
fn the_grouped_utxo_table_agrees_with_one_entry_per_output() {
    use proptest::prelude::*;
    use tinychain_node::store::memory::MemoryStore;
    use tinychain_protocol::{Amount, PubkeyHash, TxOut, Txid};

    let outpoint = |tx: u8, vout: u32| OutPoint { txid: Txid::from_byte_array([tx; 32]), vout };
    let coin = |n: u64| Coin {
        output: TxOut {
            value: Amount::from_belushis(n),
            pubkey_hash: PubkeyHash::from_byte_array([n as u8; 20]),
        },
        height: n as u32,
        is_coinbase: n.is_multiple_of(3),
    };
    let batches = prop::collection::vec(
        prop::collection::vec((0u8..3, 0u32..200, any::<bool>()), 0..80),
        1..6,
    );
    proptest!(ProptestConfig::with_cases(32), |(batches in batches)| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut redb = RedbStore::open(&dir.path().join("chain.redb"), regtest().genesis_hash())
            .expect("opens");
        let mut memory = MemoryStore::new();
        for (b, changes) in batches.iter().enumerate() {
            let mut batch = Batch::default();
            for (i, &(tx, vout, add)) in changes.iter().enumerate() {
                let value = coin((b * 1_000 + i) as u64 + 1);
                batch.push(if add {
                    Op::AddCoins(vec![(outpoint(tx, vout), value)])
                } else {
                    Op::SpendCoins(vec![outpoint(tx, vout)])
                });
            }
            redb.write(batch.clone()).expect("writes");
            memory.write(batch).expect("writes");
        }
        let all = |store: &dyn Store| {
            let mut found = Vec::new();
            store.for_each_coin(&mut |op, c| found.push((*op, *c))).expect("reads");
            found.sort_by_key(|(op, _)| *op);
            found
        };
        prop_assert_eq!(all(&redb), all(&memory));
        let every: Vec<OutPoint> =
            (0..3).flat_map(|tx| (0..200).map(move |v| outpoint(tx, v))).collect();
        prop_assert_eq!(redb.coins(&every).expect("reads"), memory.coins(&every).expect("reads"));
        for op in &every {
            prop_assert_eq!(redb.coin(op).expect("reads"), memory.coin(op).expect("reads"));
        }
    });
}

/// Rewrites the UTXO table of the closed store at `path` the way schema 3 kept
/// it (one row per output, keyed by txid ‖ output index), holding `coins`.
fn rewrite_as_schema_3(path: &std::path::Path, coins: &[(OutPoint, Coin)]) {
    type Table = redb::TableDefinition<'static, &'static [u8], &'static [u8]>;
    let db = redb::Database::create(path).expect("opens");
    let txn = db.begin_write().expect("writes");
    {
        let mut old = txn.open_table(Table::new("coins")).expect("opens");
        for (op, coin) in coins {
            let mut key = [0u8; 36];
            key[..32].copy_from_slice(op.txid.as_bytes());
            key[32..].copy_from_slice(&op.vout.to_be_bytes());
            old.insert(key.as_slice(), coin.to_bytes().as_slice()).expect("inserts");
        }
        let mut meta = txn.open_table(Table::new("meta")).expect("opens");
        meta.insert(b"schema_version".as_slice(), 3u32.to_be_bytes().as_slice()).expect("sets");
    }
    txn.delete_table(Table::new("coin_groups")).expect("drops the grouped table");
    txn.commit().expect("commits");
}

fn all_coins(store: &dyn Store) -> Vec<(OutPoint, Coin)> {
    let mut coins = Vec::new();
    store.for_each_coin(&mut |op, coin| coins.push((*op, *coin))).expect("reads");
    coins.sort_by_key(|(op, _)| *op);
    coins
}

/// A store of schema 3 (one UTXO row per output) is upgraded when opened: the
/// same coins, now grouped, and schema 4 from then on; a node on it starts on
/// the same tip, its UTXO digest check passing.
#[test]
fn a_schema_3_store_is_upgraded_in_place() {
    use tinychain_protocol::{Amount, PubkeyHash, TxOut, Txid};

    let dir = tempfile::tempdir().expect("temp dir");
    // The store level: coins across several groups of several transactions, with gaps.
    let path = dir.path().join("coins.redb");
    drop(RedbStore::open(&path, regtest().genesis_hash()).expect("creates"));
    let coins: Vec<(OutPoint, Coin)> = (0..3u8)
        .flat_map(|tx| (0..300u32).filter(move |v| v % 7 != 3).map(move |vout| (tx, vout)))
        .map(|(tx, vout)| {
            let op = OutPoint { txid: Txid::from_byte_array([tx + 1; 32]), vout };
            let output = TxOut {
                value: Amount::from_belushis(u64::from(vout) + 1),
                pubkey_hash: PubkeyHash::from_byte_array([tx; 20]),
            };
            (op, Coin { output, height: vout, is_coinbase: tx == 0 })
        })
        .collect();
    rewrite_as_schema_3(&path, &coins);
    let store = RedbStore::open(&path, regtest().genesis_hash()).expect("upgrades");
    assert_eq!(all_coins(&store), coins);
    assert_eq!(store.coin(&coins[100].0).expect("reads"), Some(coins[100].1));
    drop(store);
    let store = RedbStore::open(&path, regtest().genesis_hash()).expect("opens as schema 4");
    assert_eq!(all_coins(&store), coins, "upgraded once, kept");
    drop(store);

    // A node's store: same tip, and the UTXO digest stored with it still adds up.
    let path = dir.path().join("chain.redb");
    let (tip, coins) = {
        let mut core = open(&path);
        mine_into(&mut core, 12);
        (core.chain().tip(), all_coins(core.chain().store()))
    };
    rewrite_as_schema_3(&path, &coins);
    let core = open(&path);
    assert_eq!(core.chain().tip(), tip);
    assert_eq!(all_coins(core.chain().store()), coins);
}
