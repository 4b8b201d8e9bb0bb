//! Replace-by-fee through the core (BIP125): what replaces what, every refusal with its
//! reason, inherited signalling, the eviction limit, and the fee estimator fed by it all.

use std::collections::HashSet;

use tinychain_node::core::Output;
use tinychain_node::fees::Estimate;
use tinychain_node::mempool::rbf::{MAX_REPLACED, MAX_SIGNALLING_SEQUENCE, ReplacementError};
use tinychain_node::mempool::{self, PolicyError, RejectReason};
use tinychain_protocol::keys::PrivateKey;
use tinychain_protocol::sighash::sign_all;
use tinychain_protocol::transaction::SEQUENCE_FINAL;
use tinychain_protocol::{Amount, OutPoint, Transaction, TxOut, Txid};

use crate::harness::*;

/// A transaction spending `from` (owned by `owner`) into `outputs`, every input with `sequence`.
fn spend_with(
    from: &[(OutPoint, TxOut)],
    outputs: Vec<TxOut>,
    owner: &PrivateKey,
    sequence: u32,
) -> Transaction {
    let mut tx = Transaction::spending(from.iter().map(|(op, _)| *op), outputs);
    for input in &mut tx.inputs {
        input.sequence = sequence;
    }
    let spent: Vec<TxOut> = from.iter().map(|(_, out)| *out).collect();
    sign_all(&mut tx, &spent, owner).expect("owner signs");
    tx
}

/// Spends `from` to key `to` in one output, paying `fee` belushis.
fn paying(from: (OutPoint, TxOut), fee: u64, owner: u8, to: u8, sequence: u32) -> Transaction {
    let value = from.1.value.checked_sub(Amount::from_belushis(fee)).expect("the fee fits");
    spend_with(&[from], vec![pay(to, value)], &key(owner), sequence)
}

const RBF: u32 = MAX_SIGNALLING_SEQUENCE;

/// A regtest core with 10 mature coins of key 1.
fn funded() -> (TestCore, Vec<(OutPoint, TxOut)>) {
    let mut core = new_core(regtest());
    let coins = mine(&mut core, 20, pkh(1)).iter().take(10).map(coinbase_out).collect();
    (core, coins)
}

fn accept(core: &mut TestCore, tx: &Transaction) -> Result<mempool::Accepted, RejectReason> {
    core.handle_tx(tx.clone(), Some(7), NOW).expect("store").0
}

/// Accepts `tx` and returns what it replaced.
fn replaces(core: &mut TestCore, tx: &Transaction) -> Vec<Txid> {
    match accept(core, tx) {
        Ok(mempool::Accepted::New { replaced, .. }) => replaced,
        other => panic!("not accepted: {other:?}"),
    }
}

fn refused(core: &mut TestCore, tx: &Transaction) -> ReplacementError {
    match accept(core, tx) {
        Err(RejectReason::Policy(PolicyError::Replacement(e))) => e,
        other => panic!("not refused as a replacement: {other:?}"),
    }
}

fn pool(core: &TestCore) -> HashSet<Txid> {
    core.mempool().entries().map(|(t, _)| *t).collect()
}

fn set(txs: &[&Transaction]) -> HashSet<Txid> {
    txs.iter().map(|t| t.txid()).collect()
}

#[test]
fn a_signalling_transaction_and_its_child_are_replaced_by_one_paying_more_and_it_is_mined() {
    let (mut core, coins) = funded();
    let original = paying(coins[0], 200, 1, 2, RBF);
    let child = paying(out(&original, 0), 200, 2, 3, SEQUENCE_FINAL);
    assert!(replaces(&mut core, &original).is_empty());
    assert!(replaces(&mut core, &child).is_empty());
    // 200 + 200 belushis evicted; 189 bytes at the incremental rate of 1 need 189 more.
    let bump = paying(coins[0], 589, 1, 4, RBF);
    let (result, outputs) = core.handle_tx(bump.clone(), Some(7), NOW).expect("store");
    let Ok(mempool::Accepted::New { replaced, .. }) = result else { panic!("{result:?}") };
    assert_eq!(replaced.iter().copied().collect::<HashSet<_>>(), set(&[&original, &child]));
    assert!(outputs.contains(&Output::RelayTx(bump.txid())), "relayed like any transaction");
    assert_eq!(pool(&core), set(&[&bump]));
    assert_eq!(core.mempool().spender(&coins[0].0), Some(bump.txid()));
    assert_eq!(core.mempool().spender(&out(&original, 0).0), None);
    let block = mine(&mut core, 1, pkh(9)).remove(0);
    assert_eq!(block.txdata[1].txid(), bump.txid());
    assert!(core.mempool().is_empty());
}

#[test]
fn a_transaction_that_does_not_signal_is_not_replaced_and_the_reason_says_so() {
    let (mut core, coins) = funded();
    let original = paying(coins[0], 200, 1, 2, SEQUENCE_FINAL);
    replaces(&mut core, &original);
    let bump = paying(coins[0], 10_000, 1, 3, RBF);
    let err = accept(&mut core, &bump).expect_err("no opt-in");
    assert!(
        matches!(err, RejectReason::Policy(PolicyError::Conflict { by, .. }) if by == original.txid())
    );
    assert!(err.to_string().contains("does not signal replaceability (BIP125)"), "{err}");
    // 0xfffffffe does not signal either.
    let other = paying(coins[1], 200, 1, 2, 0xffff_fffe);
    replaces(&mut core, &other);
    assert!(accept(&mut core, &paying(coins[1], 10_000, 1, 3, RBF)).is_err());
    assert_eq!(pool(&core), set(&[&original, &other]));
}

#[test]
fn a_child_of_a_signalling_parent_inherits_replaceability() {
    let (mut core, coins) = funded();
    let parent = paying(coins[0], 200, 1, 2, RBF);
    let child = paying(out(&parent, 0), 200, 2, 3, SEQUENCE_FINAL);
    replaces(&mut core, &parent);
    replaces(&mut core, &child);
    // The child signals nothing, but its unconfirmed parent does (BIP125).
    let other = paying(out(&parent, 0), 500, 2, 4, SEQUENCE_FINAL);
    assert_eq!(replaces(&mut core, &other), vec![child.txid()]);
    assert_eq!(pool(&core), set(&[&parent, &other]));
}

#[test]
fn an_underpaying_replacement_is_refused_with_the_rule_it_breaks() {
    let (mut core, coins) = funded();
    let original = paying(coins[0], 400, 1, 2, RBF);
    let child = paying(out(&original, 0), 1_000, 2, 3, RBF);
    replaces(&mut core, &original);
    replaces(&mut core, &child);
    let size = original.size();

    // The same fee rate: not higher.
    let same = paying(coins[0], 400, 1, 4, RBF);
    assert!(matches!(refused(&mut core, &same), ReplacementError::FeeRateNotHigher { .. }));
    // A higher rate, but less than the 1,400 the original and its child pay (rule 3).
    let err = refused(&mut core, &paying(coins[0], 1_399, 1, 4, RBF));
    assert!(
        err.to_string().contains("less than the 0.00001400 the 2 transactions it replaces pay"),
        "{err}"
    );
    // More than both, but not by its own size at 1 belushi per byte (rule 4).
    let err = refused(&mut core, &paying(coins[0], 1_400 + size - 1, 1, 4, RBF));
    assert!(matches!(err, ReplacementError::IncrementalFee { .. }), "{err:?}");
    assert!(err.to_string().contains("rule 4"), "{err}");
    assert_eq!(pool(&core), set(&[&original, &child]), "every refusal left the originals");
    let enough = paying(coins[0], 1_400 + size, 1, 4, RBF);
    assert_eq!(replaces(&mut core, &enough).len(), 2);
}

#[test]
fn a_replacement_may_not_spend_what_it_evicts_nor_add_unconfirmed_inputs() {
    let (mut core, coins) = funded();
    let original = paying(coins[0], 400, 1, 1, RBF);
    let unrelated = paying(coins[1], 400, 1, 1, RBF);
    replaces(&mut core, &original);
    replaces(&mut core, &unrelated);
    let both = |second: (OutPoint, TxOut)| {
        let value = coins[0].1.value.checked_add(second.1.value).expect("small");
        let value = value.checked_sub(Amount::from_belushis(50_000)).expect("small");
        spend_with(&[coins[0], second], vec![pay(5, value)], &key(1), RBF)
    };
    assert_eq!(
        refused(&mut core, &both(out(&original, 0))),
        ReplacementError::SpendsConflicting(original.txid())
    );
    let err = refused(&mut core, &both(out(&unrelated, 0)));
    assert_eq!(err, ReplacementError::NewUnconfirmedInput(unrelated.txid()));
    // A confirmed second input is fine.
    assert_eq!(replaces(&mut core, &both(coins[2])), vec![original.txid()]);
}

#[test]
fn a_replacement_evicts_at_most_100_transactions() {
    let (mut core, coins) = funded();
    let fan_out = |coin: (OutPoint, TxOut), children: u32| {
        let each =
            Amount::from_belushis((coin.1.value.to_belushis() - 10_000) / u64::from(children));
        let parent = spend_with(&[coin], vec![pay(2, each); children as usize], &key(1), RBF);
        let kids: Vec<Transaction> =
            (0..children).map(|i| paying(out(&parent, i), 1_000, 2, 3, RBF)).collect();
        (parent, kids)
    };
    for (coin, children, allowed) in
        [(coins[0], MAX_REPLACED as u32 - 1, true), (coins[1], 100, false)]
    {
        let (parent, kids) = fan_out(coin, children);
        replaces(&mut core, &parent);
        for kid in &kids {
            replaces(&mut core, kid);
        }
        let bump = paying(coin, 5_000_000, 1, 4, RBF);
        if allowed {
            assert_eq!(replaces(&mut core, &bump).len(), MAX_REPLACED);
        } else {
            let err = refused(&mut core, &bump);
            assert!(matches!(err, ReplacementError::TooManyReplaced { .. }), "{err:?}");
            assert!(core.mempool().get(&parent.txid()).is_some());
        }
    }
}

/// Fills the mempool with `count` transactions at `rate` belushis per byte.
fn at_rate(core: &mut TestCore, coins: &mut Vec<(OutPoint, TxOut)>, count: usize, rate: u64) {
    for _ in 0..count {
        let coin = coins.pop().expect("enough coins");
        let size = paying(coin, 0, 1, 1, RBF).size();
        let tx = paying(coin, rate * size, 1, 1, RBF);
        replaces(core, &tx);
    }
}

#[test]
fn the_fee_estimator_learns_from_blocks_and_survives_a_restart() {
    let mut core = new_core(regtest());
    let mined = mine(&mut core, 60, pkh(1));
    let mut coins: Vec<_> = mined.iter().take(50).map(coinbase_out).collect();
    let Estimate::NoAnswer(why) = core.estimate_fee(2) else { panic!("an answer from nothing") };
    assert!(why.contains("not enough data"), "{why}");
    // Five blocks each confirming three transactions at 7 belushis per byte; the
    // harness's blocks are dated in the past (initial sync), so these are mined now.
    for _ in 0..5 {
        at_rate(&mut core, &mut coins, 3, 7);
        core.generate(1, pkh(9), NOW).expect("regtest mines");
        assert!(core.mempool().is_empty());
    }
    let Estimate::Rate { milli_rate, success, .. } = core.estimate_fee(2) else {
        panic!("no estimate")
    };
    assert!((7_000..=7_100).contains(&milli_rate), "{milli_rate}");
    assert!(success > 0.99);
    core.save_mempool().expect("saved");
    let reopened = new_core_on(core.chain().store().clone(), core.chain().params().clone());
    assert_eq!(reopened.estimate_fee(2), core.estimate_fee(2));
}
