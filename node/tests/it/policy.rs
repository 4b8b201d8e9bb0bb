//! Mempool policy through the core: ancestor limit, byte cap and eviction, expiry,
//! orphan transactions, conflicts with blocks, and template selection.

use std::collections::HashSet;

use tinychain_node::core::{self, Core};
use tinychain_node::mempool::{self, PolicyError, RejectReason};
use tinychain_node::store::memory::MemoryStore;
use tinychain_node::template::select_transactions;
use tinychain_protocol::validation::block_subsidy;
use tinychain_protocol::{Amount, OutPoint, Transaction, TxOut, Txid};

use crate::harness::*;

/// Opens a regtest core with `mempool` as its mempool configuration.
fn core_with(mempool: mempool::Config) -> TestCore {
    let config = core::Config { mempool, ..Default::default() };
    Core::open(MemoryStore::new(), regtest(), config, NOW).expect("opens")
}

/// Mines 20 blocks paying key 1: the first 10 coinbases are mature at height 21.
fn funded(core: &mut TestCore) -> Vec<(OutPoint, TxOut)> {
    mine(core, 20, pkh(1)).iter().take(10).map(coinbase_out).collect()
}

/// Spends `from` (owned by `owner`) into one output to key `to`, paying
/// `rate` belushis per byte of the transaction.
fn at_rate(from: (OutPoint, TxOut), rate: u64, owner: u8, to: u8) -> Transaction {
    // Values do not change the size (fixed-width encoding): measure a draft.
    let size = spend(&[from], vec![pay(to, from.1.value)], &key(owner)).size();
    let fee = Amount::from_belushis(rate * size);
    let value = from.1.value.checked_sub(fee).expect("the fee fits in the coin");
    let tx = spend(&[from], vec![pay(to, value)], &key(owner));
    assert_eq!(tx.size(), size);
    tx
}

/// The size of every transaction [`at_rate`] builds (one input, one output).
fn one_in_one_out_size() -> u64 {
    let coin = (OutPoint { txid: Txid::ZERO, vout: 0 }, pay(1, coins(50)));
    spend(&[coin], vec![pay(2, coins(49))], &key(1)).size()
}

fn accept_at(
    core: &mut TestCore,
    tx: &Transaction,
    now: u64,
) -> Result<mempool::Accepted, RejectReason> {
    core.handle_tx(tx.clone(), Some(7), now).expect("store").0
}

fn accept(core: &mut TestCore, tx: &Transaction) -> Result<mempool::Accepted, RejectReason> {
    accept_at(core, tx, NOW)
}

fn accepted(core: &mut TestCore, tx: &Transaction) {
    let result = accept(core, tx);
    assert!(matches!(result, Ok(mempool::Accepted::New { .. })), "{result:?}");
}

/// The mempool's txids, as a set.
fn pool(core: &TestCore) -> HashSet<Txid> {
    core.mempool().entries().map(|(t, _)| *t).collect()
}

fn txids<'a>(txs: impl IntoIterator<Item = &'a Transaction>) -> HashSet<Txid> {
    txs.into_iter().map(Transaction::txid).collect()
}

fn fee_of(core: &TestCore, tx: &Transaction) -> Amount {
    core.mempool().get(&tx.txid()).expect("in the mempool").fee
}

fn sum(amounts: impl IntoIterator<Item = Amount>) -> Amount {
    Amount::checked_sum(amounts).expect("in range")
}

// Ancestor limit.

#[test]
fn a_chain_longer_than_the_ancestor_limit_is_refused_and_the_rest_stays() {
    let mut core = core_with(mempool::Config { max_ancestors: 3, ..Default::default() });
    let utxos = funded(&mut core);
    let a = at_rate(utxos[0], 2, 1, 2);
    let b = at_rate(out(&a, 0), 2, 2, 3);
    let c = at_rate(out(&b, 0), 2, 3, 4);
    let d = at_rate(out(&c, 0), 2, 4, 5);
    for tx in [&a, &b, &c] {
        accepted(&mut core, tx);
    }
    assert_eq!(
        accept(&mut core, &d),
        Err(RejectReason::Policy(PolicyError::TooManyAncestors { count: 4, limit: 3 }))
    );
    assert_eq!(pool(&core), txids([&a, &b, &c]), "the first three stay");
    assert_eq!(core.mempool().orphan_count(), 0, "not an orphan either");
    assert_eq!(core.mempool().spender(&out(&c, 0).0), None);

    // Ancestors are counted across every input: two parents plus itself is the limit.
    let (p1, p2) = (at_rate(utxos[1], 2, 1, 6), at_rate(utxos[2], 2, 1, 6));
    accepted(&mut core, &p1);
    accepted(&mut core, &p2);
    let both = sum([p1.outputs[0].value, p2.outputs[0].value]);
    let join = spend(
        &[out(&p1, 0), out(&p2, 0)],
        vec![pay(7, both.checked_sub(Amount::from_belushis(10_000)).expect("small"))],
        &key(6),
    );
    accepted(&mut core, &join);
    let next = at_rate(out(&join, 0), 2, 7, 8);
    assert!(matches!(
        accept(&mut core, &next),
        Err(RejectReason::Policy(PolicyError::TooManyAncestors { count: 4, limit: 3 }))
    ));

    // Once the chain is mined, its tail has no unconfirmed ancestors left.
    mine(&mut core, 1, pkh(1));
    assert!(core.mempool().is_empty());
    accepted(&mut core, &d);
    accepted(&mut core, &next);
}

// Byte cap and eviction.

#[test]
fn a_full_mempool_evicts_the_lowest_fee_rate_with_its_descendants() {
    let size = one_in_one_out_size();
    let cap = 3 * size;
    let mut core = core_with(mempool::Config { max_bytes: cap, ..Default::default() });
    let utxos = funded(&mut core);

    let low = at_rate(utxos[0], 2, 1, 2);
    // Its child pays well, but it goes with its parent.
    let child = at_rate(out(&low, 0), 10, 2, 3);
    let mid = at_rate(utxos[1], 5, 1, 2);
    for tx in [&low, &child, &mid] {
        accepted(&mut core, tx);
    }
    assert_eq!(core.mempool().total_bytes(), cap, "precondition: exactly full");

    let high = at_rate(utxos[2], 20, 1, 2);
    accepted(&mut core, &high);
    assert_eq!(pool(&core), txids([&mid, &high]), "the lowest rate and its child went");
    assert_eq!(core.mempool().total_bytes(), 2 * size);
    assert_eq!(core.mempool().spender(&utxos[0].0), None, "its input is free again");

    let mid2 = at_rate(utxos[3], 4, 1, 2);
    accepted(&mut core, &mid2);
    assert_eq!(core.mempool().total_bytes(), cap);

    // Lower than everything held: refused, and nothing else goes.
    let cheap = at_rate(utxos[4], 3, 1, 2);
    assert_eq!(accept(&mut core, &cheap), Err(RejectReason::Policy(PolicyError::MempoolFull)));
    assert_eq!(pool(&core), txids([&mid, &high, &mid2]));
    assert_eq!(core.mempool().total_bytes(), cap);
    assert_eq!(core.mempool().spender(&utxos[4].0), None, "the refused one left no trace");
    assert!(!core.mempool().contains(&cheap.txid()));

    // The evicted transaction can come back once it outbids the lowest held.
    let low_again = at_rate(utxos[0], 6, 1, 2);
    accepted(&mut core, &low_again);
    assert_eq!(pool(&core), txids([&mid, &high, &low_again]), "mid2 (4/byte) went");
    assert!(core.mempool().total_bytes() <= cap);
}

// Expiry.

#[test]
fn tick_expires_old_transactions_with_their_descendants_and_keeps_young_ones() {
    let expiry = 1_000;
    let mut core = core_with(mempool::Config { expiry_secs: expiry, ..Default::default() });
    let utxos = funded(&mut core);
    let old = at_rate(utxos[0], 2, 1, 2);
    let young_child = at_rate(out(&old, 0), 2, 2, 3);
    let young = at_rate(utxos[1], 2, 1, 2);
    accept_at(&mut core, &old, NOW).expect("accepted");
    accept_at(&mut core, &young_child, NOW + 500).expect("accepted");
    accept_at(&mut core, &young, NOW + 600).expect("accepted");

    core.tick(NOW + expiry);
    assert_eq!(pool(&core).len(), 3, "exactly expiry_secs old: still kept");

    core.tick(NOW + expiry + 1);
    assert_eq!(pool(&core), txids([&young]), "the old one went, with its young child");
    assert_eq!(core.mempool().total_bytes(), young.size());
    // Its input is free: another spend of the same coin is no longer a conflict.
    let again = at_rate(utxos[0], 3, 1, 4);
    accept_at(&mut core, &again, NOW + expiry + 1).expect("no conflict left");

    core.tick(NOW + 600 + expiry + 1);
    assert_eq!(pool(&core), txids([&again]));
}

// Orphan transactions.

/// A parent spending `coin` that is never sent, and an orphan spending it.
fn orphan_pair(coin: (OutPoint, TxOut), to: u8) -> (Transaction, Transaction) {
    let parent = at_rate(coin, 2, 1, to);
    let orphan = at_rate(out(&parent, 0), 2, to, 9);
    (parent, orphan)
}

fn orphans_config(max_count: usize, max_tx_size: u64, ttl_secs: u64) -> mempool::Config {
    mempool::Config {
        orphans: mempool::orphans::Config { max_count, max_tx_size, ttl_secs },
        ..Default::default()
    }
}

fn missing(core: &mut TestCore, orphan: &Transaction, parent: &Transaction) {
    assert_eq!(accept(core, orphan), Err(RejectReason::MissingInputs(vec![parent.txid()])));
}

fn unorphaned_by(core: &mut TestCore, parent: &Transaction) -> Vec<Txid> {
    match accept(core, parent) {
        Ok(mempool::Accepted::New { unorphaned, .. }) => unorphaned,
        other => panic!("parent not accepted: {other:?}"),
    }
}

#[test]
fn the_orphan_pool_is_bounded_and_evicts_the_oldest() {
    let mut core = core_with(orphans_config(2, 100_000, 600));
    let utxos = funded(&mut core);
    let pairs: Vec<_> = (0..3).map(|i| orphan_pair(utxos[i], 2 + i as u8)).collect();
    for (parent, orphan) in &pairs {
        missing(&mut core, orphan, parent);
    }
    assert_eq!(core.mempool().orphan_count(), 2);
    assert!(!core.mempool().contains(&pairs[0].1.txid()), "the oldest orphan went");
    assert!(core.mempool().contains(&pairs[1].1.txid()));
    assert!(core.mempool().contains(&pairs[2].1.txid()));

    // The evicted orphan's parent brings nothing in; the kept ones' parents do.
    assert_eq!(unorphaned_by(&mut core, &pairs[0].0), Vec::<Txid>::new());
    assert_eq!(unorphaned_by(&mut core, &pairs[2].0), vec![pairs[2].1.txid()]);
    assert_eq!(core.mempool().orphan_count(), 1);
    assert_eq!(pool(&core), txids([&pairs[0].0, &pairs[2].0, &pairs[2].1]));
}

#[test]
fn an_orphan_larger_than_the_limit_is_not_kept() {
    let mut core = core_with(orphans_config(10, one_in_one_out_size(), 600));
    let utxos = funded(&mut core);
    let (parent, small) = orphan_pair(utxos[0], 2);
    // Two outputs: bigger than a one-output orphan.
    let big = spend(&[out(&parent, 0)], vec![pay(3, coins(20)), pay(4, coins(20))], &key(2));
    assert!(big.size() > small.size(), "precondition");
    assert_eq!(small.size(), one_in_one_out_size());
    missing(&mut core, &big, &parent);
    assert_eq!(core.mempool().orphan_count(), 0, "too big to keep");
    assert!(!core.mempool().contains(&big.txid()));
    missing(&mut core, &small, &parent);
    assert_eq!(core.mempool().orphan_count(), 1, "at the limit: kept");
    assert_eq!(unorphaned_by(&mut core, &parent), vec![small.txid()]);
}

#[test]
fn orphans_expire_on_tick_after_their_time_to_live() {
    let mut core = core_with(orphans_config(10, 100_000, 100));
    let utxos = funded(&mut core);
    let (parent, orphan) = orphan_pair(utxos[0], 2);
    let (later_parent, later) = orphan_pair(utxos[1], 3);
    assert!(accept_at(&mut core, &orphan, NOW).is_err());
    assert!(accept_at(&mut core, &later, NOW + 50).is_err());
    core.tick(NOW + 99);
    assert_eq!(core.mempool().orphan_count(), 2);
    core.tick(NOW + 100);
    assert_eq!(core.mempool().orphan_count(), 1);
    assert!(!core.mempool().contains(&orphan.txid()), "its time was up");
    assert!(core.mempool().contains(&later.txid()));
    assert_eq!(unorphaned_by(&mut core, &parent), Vec::<Txid>::new());
    assert_eq!(unorphaned_by(&mut core, &later_parent), vec![later.txid()]);
}

#[test]
fn a_block_that_confirms_an_orphan_drops_it() {
    let mut core = core_with(mempool::Config::default());
    let utxos = funded(&mut core);
    let (parent, orphan) = orphan_pair(utxos[0], 2);
    missing(&mut core, &orphan, &parent);
    let tip = core.chain().tip();
    let block = block_on(&core, tip, vec![parent, orphan.clone()], pkh(1), None, 1);
    assert_eq!(submit(&mut core, block).0, core::BlockOutcome::Accepted);
    assert_eq!(core.mempool().orphan_count(), 0);
    assert!(!core.mempool().contains(&orphan.txid()));
    assert!(core.mempool().is_empty());
}

#[test]
fn a_block_that_spends_an_orphans_input_drops_it() {
    let mut core = core_with(mempool::Config::default());
    let utxos = funded(&mut core);
    // The orphan spends a confirmed coin and an output of an unknown parent.
    let (parent, _) = orphan_pair(utxos[0], 1);
    let orphan = spend(&[utxos[1], out(&parent, 0)], vec![pay(9, coins(90))], &key(1));
    missing(&mut core, &orphan, &parent);
    // The block spends the confirmed coin elsewhere; the parent never shows up.
    let rival = at_rate(utxos[1], 2, 1, 3);
    let tip = core.chain().tip();
    let block = block_on(&core, tip, vec![rival], pkh(1), None, 1);
    assert_eq!(submit(&mut core, block).0, core::BlockOutcome::Accepted);
    assert_eq!(core.mempool().orphan_count(), 0, "it can never be valid now");
    assert!(!core.mempool().contains(&orphan.txid()));
    // Its parent alone brings nothing back.
    assert_eq!(unorphaned_by(&mut core, &parent), Vec::<Txid>::new());
}

#[test]
fn a_block_that_confirms_an_orphans_parent_lets_it_in() {
    let mut core = core_with(mempool::Config::default());
    let utxos = funded(&mut core);
    let (parent, orphan) = orphan_pair(utxos[0], 2);
    missing(&mut core, &orphan, &parent);
    let tip = core.chain().tip();
    let block = block_on(&core, tip, vec![parent], pkh(1), None, 1);
    assert_eq!(submit(&mut core, block).0, core::BlockOutcome::Accepted);
    assert_eq!(core.mempool().orphan_count(), 0);
    assert_eq!(pool(&core), txids([&orphan]));
}

// Conflicts with a connected block.

#[test]
fn a_block_conflicting_with_a_mempool_transaction_removes_it_and_its_descendants() {
    let mut core = core_with(mempool::Config::default());
    let utxos = funded(&mut core);
    let spent = at_rate(utxos[0], 2, 1, 2);
    let child = at_rate(out(&spent, 0), 2, 2, 3);
    let grandchild = at_rate(out(&child, 0), 2, 3, 4);
    let unrelated = at_rate(utxos[1], 2, 1, 5);
    for tx in [&spent, &child, &grandchild, &unrelated] {
        accepted(&mut core, tx);
    }
    let rival = at_rate(utxos[0], 3, 1, 6);
    let tip = core.chain().tip();
    let block = block_on(&core, tip, vec![rival], pkh(1), None, 1);
    assert_eq!(submit(&mut core, block).0, core::BlockOutcome::Accepted);
    assert_eq!(pool(&core), txids([&unrelated]));
    assert_eq!(core.mempool().total_bytes(), unrelated.size());
    for tx in [&spent, &child, &grandchild] {
        assert_eq!(core.mempool().spender(&tx.inputs[0].prev_out), None);
    }
}

#[test]
fn a_block_confirming_a_parent_keeps_its_child_in_the_mempool() {
    let mut core = core_with(mempool::Config::default());
    let utxos = funded(&mut core);
    let parent = at_rate(utxos[0], 2, 1, 2);
    let child = at_rate(out(&parent, 0), 2, 2, 3);
    accepted(&mut core, &parent);
    accepted(&mut core, &child);
    let tip = core.chain().tip();
    let block = block_on(&core, tip, vec![parent.clone()], pkh(1), None, 1);
    assert_eq!(submit(&mut core, block).0, core::BlockOutcome::Accepted);
    assert_eq!(pool(&core), txids([&child]), "the child is still valid");
    assert_eq!(core.mempool().total_bytes(), child.size());
    assert_eq!(core.mempool().spender(&out(&parent, 0).0), Some(child.txid()));
}

// Template selection.

/// Checks that every transaction's in-mempool parents come before it in `txs`.
fn assert_parents_first(core: &TestCore, txs: &[Transaction]) {
    let mut seen = HashSet::new();
    for tx in txs {
        for input in &tx.inputs {
            let parent = input.prev_out.txid;
            if core.mempool().get(&parent).is_some() {
                assert!(seen.contains(&parent), "{} before its parent {parent}", tx.txid());
            }
        }
        seen.insert(tx.txid());
    }
}

/// A mempool of three parent-child pairs and a lone transaction, all of one size:
/// - `poor` (1/byte) with child `rich` (20/byte): ancestor rate 10.5 for `rich`;
/// - `high` (8/byte) with child `low` (1/byte): ancestor rate 4.5 for `low`;
/// - `base` (1/byte) with child `topping` (6/byte): ancestor rate 3.5 for `topping`,
///   though `topping` alone pays more than `mid`;
/// - `mid` (5/byte).
struct Scene {
    core: TestCore,
    size: u64,
    poor: Transaction,
    rich: Transaction,
    high: Transaction,
    low: Transaction,
    base: Transaction,
    topping: Transaction,
    mid: Transaction,
}

impl Scene {
    /// Every transaction, in arrival order.
    fn all(&self) -> [&Transaction; 7] {
        [&self.mid, &self.poor, &self.high, &self.low, &self.base, &self.topping, &self.rich]
    }
}

fn scene() -> Scene {
    let mut core = core_with(mempool::Config::default());
    let utxos = funded(&mut core);
    let poor = at_rate(utxos[0], 1, 1, 2);
    let rich = at_rate(out(&poor, 0), 20, 2, 3);
    let high = at_rate(utxos[1], 8, 1, 4);
    let low = at_rate(out(&high, 0), 1, 4, 5);
    let base = at_rate(utxos[3], 1, 1, 7);
    let topping = at_rate(out(&base, 0), 6, 7, 8);
    let mid = at_rate(utxos[2], 5, 1, 6);
    let size = poor.size();
    let mut s = Scene { core, size, poor, rich, high, low, base, topping, mid };
    for tx in s.all().map(Clone::clone) {
        accepted(&mut s.core, &tx);
    }
    assert!(s.all().iter().all(|t| t.size() == size), "precondition: one size");
    s
}

#[test]
fn the_template_orders_by_ancestor_fee_rate_with_parents_first() {
    let s = scene();
    let template = s.core.block_template(pkh(9), NOW);
    let body = &template.block.txdata[1..];
    assert_eq!(
        body,
        [&s.poor, &s.rich, &s.high, &s.mid, &s.low, &s.base, &s.topping].map(Clone::clone),
        "rich pulls poor in ahead of mid; topping, richer than mid alone, is not as a package"
    );
    assert_parents_first(&s.core, body);
    let fees = sum(body.iter().map(|t| fee_of(&s.core, t)));
    assert_eq!(template.fees, fees);
    assert_eq!(fees, Amount::from_belushis((1 + 20 + 8 + 5 + 1 + 1 + 6) * s.size));
}

#[test]
fn selection_skips_packages_that_do_not_fit() {
    let s = scene();
    let mempool = s.core.mempool();
    let cases: [(u64, Vec<&Transaction>); 8] = [
        (0, vec![]),
        // The rich package (two transactions) does not fit: the next best lone one does.
        (s.size, vec![&s.high]),
        (2 * s.size - 1, vec![&s.high]),
        (2 * s.size, vec![&s.poor, &s.rich]),
        (4 * s.size, vec![&s.poor, &s.rich, &s.high, &s.mid]),
        (5 * s.size, vec![&s.poor, &s.rich, &s.high, &s.mid, &s.low]),
        // The topping package does not fit in the last slot; its parent alone does.
        (6 * s.size, vec![&s.poor, &s.rich, &s.high, &s.mid, &s.low, &s.base]),
        (100 * s.size, vec![&s.poor, &s.rich, &s.high, &s.mid, &s.low, &s.base, &s.topping]),
    ];
    for (max_bytes, expected) in cases {
        let (txs, fees) = select_transactions(mempool, max_bytes);
        let expected: Vec<Transaction> = expected.into_iter().cloned().collect();
        assert_eq!(txs, expected, "limit of {max_bytes} bytes");
        let bytes: u64 = txs.iter().map(Transaction::size).sum();
        assert!(bytes <= max_bytes);
        assert_eq!(fees, sum(txs.iter().map(|t| fee_of(&s.core, t))));
        assert_parents_first(&s.core, &txs);
    }
}

#[test]
fn a_child_is_never_selected_without_its_parent() {
    let mut core = core_with(mempool::Config::default());
    let utxos = funded(&mut core);
    let parent = at_rate(utxos[0], 1, 1, 2);
    let child = at_rate(out(&parent, 0), 50, 2, 3);
    accepted(&mut core, &parent);
    accepted(&mut core, &child);
    // Room for one: the child's package is too big; the parent alone fits.
    let (txs, fees) = select_transactions(core.mempool(), parent.size());
    assert_eq!(txs, vec![parent.clone()]);
    assert_eq!(fees, fee_of(&core, &parent));
}

#[test]
fn the_mined_coinbase_pays_exactly_subsidy_plus_fees() {
    let mut s = scene();
    let fees = sum(s.all().map(|t| fee_of(&s.core, t)));
    let height = s.core.chain().height() + 1;
    let mined = mine(&mut s.core, 1, pkh(9));
    let coinbase = &mined[0].txdata[0];
    let subsidy = block_subsidy(height, s.core.chain().params());
    assert_eq!(coinbase.outputs, vec![pay(9, subsidy.checked_add(fees).expect("small"))]);
    assert_eq!(mined[0].txdata.len(), 8);
    assert!(s.core.mempool().is_empty(), "all mined");
}

// Orphan blocks through the core.

#[test]
fn orphan_blocks_expire_on_tick() {
    let mut donor = new_core(regtest());
    let blocks = mine(&mut donor, 2, pkh(1));
    let config = core::Config {
        orphan_blocks: tinychain_node::chain::orphans::Config {
            ttl_secs: 60,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut core: TestCore = Core::open(MemoryStore::new(), regtest(), config, NOW).expect("opens");
    assert_eq!(submit(&mut core, blocks[1].clone()).0, core::BlockOutcome::Orphan);
    core.tick(NOW + 59);
    assert_eq!(core.orphan_block_count(), 1);
    core.tick(NOW + 60);
    assert_eq!(core.orphan_block_count(), 0);
    // The parent alone arrives: the expired child does not connect.
    assert_eq!(submit(&mut core, blocks[0].clone()).0, core::BlockOutcome::Accepted);
    assert_eq!(core.chain().tip(), blocks[0].block_hash());
}
