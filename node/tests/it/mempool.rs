//! The mempool: chains of unconfirmed spends, conflicts, fees, orphans, maturity after reorgs.

use tinychain_node::mempool::{self, PolicyError, RejectReason};

use crate::harness::*;

fn accept(
    core: &mut TestCore,
    tx: &tinychain_protocol::Transaction,
) -> Result<mempool::Accepted, RejectReason> {
    core.handle_tx(tx.clone(), Some(7), NOW).expect("store").0
}

#[test]
fn a_child_of_an_unconfirmed_parent_is_mined_with_it_in_order() {
    let mut core = new_core(regtest());
    let alice = key(1);
    let bob = key(2);
    let blocks = mine(&mut core, 11, pkh(1));
    let parent = spend(&[coinbase_out(&blocks[0])], vec![pay(2, coins(49))], &alice);
    let child = spend(&[out(&parent, 0)], vec![pay(3, coins(48))], &bob);
    assert!(matches!(accept(&mut core, &parent), Ok(mempool::Accepted::New { .. })));
    assert!(matches!(accept(&mut core, &child), Ok(mempool::Accepted::New { .. })));
    let mined = mine(&mut core, 1, pkh(1));
    let txids: Vec<_> = mined[0].txdata.iter().map(|t| t.txid()).collect();
    assert_eq!(txids[1..], [parent.txid(), child.txid()], "parent before child");
    assert!(core.mempool().is_empty());
    // The coinbase collected both fees.
    let subsidy = tinychain_protocol::validation::block_subsidy(12, core.chain().params());
    assert_eq!(mined[0].txdata[0].outputs[0].value, subsidy.checked_add(coins(2)).expect("small"));
}

#[test]
fn a_double_spend_of_a_mempool_input_is_refused() {
    let mut core = new_core(regtest());
    let alice = key(1);
    let blocks = mine(&mut core, 11, pkh(1));
    let first = spend(&[coinbase_out(&blocks[0])], vec![pay(2, coins(49))], &alice);
    let second = spend(&[coinbase_out(&blocks[0])], vec![pay(3, coins(49))], &alice);
    accept(&mut core, &first).expect("first accepted");
    let err = accept(&mut core, &second).expect_err("conflict");
    assert!(matches!(err, RejectReason::Policy(PolicyError::Conflict { .. })), "{err:?}");
    assert_eq!(core.mempool().len(), 1);
}

#[test]
fn policy_invalid_and_missing_are_told_apart() {
    let mut core = new_core(regtest());
    let alice = key(1);
    let blocks = mine(&mut core, 13, pkh(1));
    // No fee at all: below the minimum relay fee rate (policy).
    let free = spend(&[coinbase_out(&blocks[0])], vec![pay(2, coins(50))], &alice);
    assert!(matches!(
        accept(&mut core, &free),
        Err(RejectReason::Policy(PolicyError::FeeTooLow { .. }))
    ));
    // Immature coinbase (the last block's): not valid yet, policy.
    let early = spend(&[coinbase_out(&blocks[12])], vec![pay(2, coins(49))], &alice);
    assert!(matches!(
        accept(&mut core, &early),
        Err(RejectReason::Policy(PolicyError::Premature(_)))
    ));
    // Signed by the wrong key: invalid, and the sender is penalised.
    let (outpoint, real) = coinbase_out(&blocks[1]);
    let claimed = tinychain_protocol::TxOut { pubkey_hash: pkh(9), ..real };
    let stolen = spend(&[(outpoint, claimed)], vec![pay(2, coins(49))], &key(9));
    let (result, outputs) = core.handle_tx(stolen, Some(7), NOW).expect("store");
    assert!(matches!(result, Err(RejectReason::Invalid(_))));
    assert!(
        outputs.iter().any(|o| matches!(o, tinychain_node::core::Output::Penalize { peer: 7, .. }))
    );
    // Spending an unknown transaction: missing inputs, kept as an orphan.
    let parent = spend(&[coinbase_out(&blocks[2])], vec![pay(2, coins(49))], &alice);
    let child = spend(&[out(&parent, 0)], vec![pay(3, coins(48))], &key(2));
    assert!(
        matches!(accept(&mut core, &child), Err(RejectReason::MissingInputs(p)) if p == vec![parent.txid()])
    );
    assert_eq!(core.mempool().orphan_count(), 1);
    // The parent arrives: the orphan follows it in.
    match accept(&mut core, &parent) {
        Ok(mempool::Accepted::New { unorphaned, .. }) => assert_eq!(unorphaned, vec![child.txid()]),
        other => panic!("{other:?}"),
    }
    assert_eq!(core.mempool().len(), 2);
    assert_eq!(core.mempool().orphan_count(), 0);
}

#[test]
fn a_spend_of_a_coinbase_that_is_immature_again_after_a_reorg_is_dropped() {
    // Retargeting on, so a shorter branch can carry more work and lower the tip height.
    let mut params = regtest();
    params.pow_no_retargeting = false;
    let mut core = new_core(params);
    let alice = key(1);
    let genesis = core.chain().tip();
    let prefix = branch(&mut core, genesis, 60, 1, Some(1));
    let fork = prefix[59].block_hash();
    branch(&mut core, fork, 9, 2, Some(3_600));
    assert_eq!(core.chain().height(), 69);
    // prefix[59] is at height 60: at spend height 70 its coinbase has depth 10, mature.
    let tx = spend(&[coinbase_out(&prefix[59])], vec![pay(2, coins(49))], &alice);
    accept(&mut core, &tx).expect("mature on the slow branch");
    // A shorter branch with more work: tip 68, spend height 69, depth 9.
    branch(&mut core, fork, 8, 3, Some(1));
    assert_eq!(core.chain().height(), 68, "the shorter, heavier branch won");
    assert!(core.mempool().get(&tx.txid()).is_none(), "immature again: dropped");
    // It comes back once the coinbase matures again.
    mine(&mut core, 1, pkh(3));
    assert!(accept(&mut core, &tx).is_ok());
}

/// Policy matches what can be mined: a transaction over Bitcoin Core's standard
/// size (100 kB) is refused by the mempool with the limit named, though it is
/// valid in a block.
#[test]
fn a_transaction_over_the_standard_size_is_refused_by_policy_but_valid_in_a_block() {
    let mut core = new_core(regtest());
    let alice = key(1);
    let blocks = mine(&mut core, 12, pkh(1));
    let limit = mempool::MAX_STANDARD_TX_SIZE;
    let wide = |coin, n: u64| {
        let each = tinychain_protocol::Amount::from_belushis(1_000);
        spend(&[coin], (0..n).map(|_| pay(2, each)).collect(), &alice)
    };
    // Each output is 28 bytes: the most outputs that stay within the limit.
    let base = wide(coinbase_out(&blocks[0]), 1).size() - 28;
    let largest = wide(coinbase_out(&blocks[0]), (limit - base) / 28);
    assert!(largest.size() <= limit && largest.size() > limit - 28, "{}", largest.size());
    assert!(matches!(accept(&mut core, &largest), Ok(mempool::Accepted::New { .. })));

    let over = wide(coinbase_out(&blocks[1]), (limit / 28) + 2);
    assert!(over.size() > limit);
    let err = accept(&mut core, &over).expect_err("over the standard size");
    assert!(
        matches!(err, RejectReason::Policy(PolicyError::TooLarge { size, limit: l }) if size == over.size() && l == limit),
        "{err:?}"
    );
    assert!(err.to_string().contains("100000"), "{err}");
    // A block may carry it all the same: size is policy, not consensus.
    let block = block_on(&core, core.chain().tip(), vec![over.clone()], pkh(1), None, 1);
    let (outcome, _) = core.handle_block(block, Some(1), NOW).expect("store works");
    assert_eq!(outcome, tinychain_node::core::BlockOutcome::Accepted);
}
