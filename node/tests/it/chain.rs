//! Chain selection, reorgs and invalid branches: tinychain's scenarios on Bitcoin's rules.

use tinychain_node::core::{BlockOutcome, Output};
use tinychain_node::store::BlockStatus;
use tinychain_protocol::params::Params;
use tinychain_protocol::{Amount, BlockHash};

use crate::harness::*;

fn tip(core: &TestCore) -> BlockHash {
    core.chain().tip()
}

#[test]
fn a_side_branch_with_equal_work_does_not_reorg_but_more_work_does() {
    let mut core = new_core(regtest());
    let fork = tip(&core);
    let main = branch(&mut core, fork, 3, 1, None);
    let main_tip = main[2].block_hash();
    assert_eq!(tip(&core), main_tip);

    let side = branch(&mut core, fork, 3, 2, None);
    assert_eq!(tip(&core), main_tip, "equal work: the first seen stays");
    assert!(entry(&core, &side[2].block_hash()).is_some(), "side branch kept");

    let more = branch(&mut core, side[2].block_hash(), 1, 2, None);
    assert_eq!(tip(&core), more[0].block_hash(), "more work wins");
    assert_eq!(core.chain().height(), 4);
}

#[test]
fn a_shorter_branch_with_more_work_wins() {
    // Retargeting on, with regtest's easy limit: fast blocks raise the difficulty.
    let mut params = regtest();
    params.pow_no_retargeting = false;
    let mut core = new_core(params);
    let genesis = tip(&core);
    // A prefix of fast blocks lowers the target below the limit.
    let prefix = branch(&mut core, genesis, 60, 1, Some(1));
    let fork = prefix.last().expect("prefix").block_hash();
    // Slow blocks make the target easier (after the median-time lag), fast ones harder.
    let slow = branch(&mut core, fork, 9, 2, Some(3_600));
    let slow_tip = slow.last().expect("slow").block_hash();
    assert_eq!(tip(&core), slow_tip);
    let fast = branch(&mut core, fork, 8, 3, Some(1));
    let (slow_work, fast_work) = (
        entry(&core, &slow_tip).expect("indexed").chainwork,
        entry(&core, &fast.last().expect("fast").block_hash()).expect("indexed").chainwork,
    );
    assert!(
        fast_work > slow_work,
        "precondition: the 8 fast blocks carry more work than the 9 slow"
    );
    assert_eq!(tip(&core), fast.last().expect("fast").block_hash(), "most work, not most blocks");
    assert_eq!(core.chain().height(), 68);
    // The active chain by height is the new branch, and ends at the new tip.
    let chain = core.chain();
    for (height, block) in (61..).zip(&fast) {
        assert_eq!(chain.hash_at(height).expect("reads"), Some(block.block_hash()), "{height}");
    }
    assert_eq!(chain.hash_at(69).expect("reads"), None, "the old tip's height is gone");
    assert!(!chain.is_active(&slow_tip).expect("reads"));
    // And so it is for a chain state reopened on the same store.
    let reopened = new_core_on(core.chain().store().clone(), core.chain().params().clone());
    assert_eq!(reopened.chain().tip(), tip(&core));
    assert_eq!(reopened.chain().hash_at(68).expect("reads"), Some(tip(&core)));
    assert_eq!(reopened.chain().hash_at(69).expect("reads"), None);
}

/// Blocks whose parent's data is missing are stored but not linked; when the
/// missing block arrives, the whole stored subtree below it (found through the
/// store's children table) becomes linked and connects.
#[test]
fn a_missing_block_links_its_stored_descendants_and_they_connect() {
    let mut donor = new_core(regtest());
    let blocks = mine(&mut donor, 5, pkh(1));
    let mut core = new_core(regtest());
    let headers: Vec<_> = blocks.iter().map(|b| b.header).collect();
    let outcome = core.handle_headers(&headers, NOW).expect("store");
    assert_eq!(outcome.new, 5);
    for block in blocks[1..].iter().rev() {
        let (outcome, _) = submit(&mut core, block.clone());
        assert_eq!(outcome, BlockOutcome::Accepted, "stored on a known header");
        let stored = entry(&core, &block.block_hash()).expect("indexed");
        assert!(stored.status.has_data() && !stored.linked, "its parent's data is missing");
    }
    assert_eq!(core.chain().height(), 0);
    submit(&mut core, blocks[0].clone());
    assert_eq!(tip(&core), blocks[4].block_hash(), "the subtree linked and connected");
    for block in &blocks {
        let connected = entry(&core, &block.block_hash()).expect("indexed");
        assert!(connected.linked && connected.status == BlockStatus::Valid);
    }
    assert!(core.chain().index().resident_len() <= 2, "only the tip and best header stay");
}

#[test]
fn an_invalid_block_on_a_longer_branch_is_refused_and_the_utxo_set_stays() {
    let mut core = new_core(regtest());
    let fork = tip(&core);
    branch(&mut core, fork, 2, 1, None);
    let good_tip = tip(&core);
    let digest = core.chain().utxo_digest();

    // A longer branch whose second block pays its miner too much: found invalid
    // only when connected (it needs the UTXO set to know the fees).
    let side = branch(&mut core, fork, 2, 2, None);
    let mut bad = block_on(&core, side[1].block_hash(), vec![], pkh(2), None, 9);
    bad.txdata[0].outputs[0].value =
        bad.txdata[0].outputs[0].value.checked_add(Amount::from_belushis(1)).expect("small");
    bad.header.merkle_root = tinychain_protocol::merkle::block_merkle_root(&bad.txdata).root;
    solve(&mut bad);
    let bad_hash = bad.block_hash();
    let (outcome, outputs) = submit(&mut core, bad.clone());
    assert!(matches!(outcome, BlockOutcome::Invalid(_)), "{outcome:?}");
    assert!(outputs.iter().any(|o| matches!(o, Output::Penalize { peer: 1, .. })));
    assert_eq!(tip(&core), good_tip, "back on the valid chain");
    assert_eq!(core.chain().utxo_digest(), digest, "UTXO set unchanged");

    // Its descendants are refused without being connected, and it is never retried.
    let child = block_on(&core, bad_hash, vec![], pkh(2), None, 10);
    let (outcome, _) = submit(&mut core, child);
    assert!(matches!(outcome, BlockOutcome::Invalid(_)), "{outcome:?}");
    let (outcome, _) = submit(&mut core, bad);
    assert!(matches!(outcome, BlockOutcome::Invalid(_)), "{outcome:?}");
    assert_eq!(tip(&core), good_tip);
}

#[test]
fn orphan_blocks_wait_for_their_parent_and_the_parent_is_requested() {
    let mut donor = new_core(regtest());
    let blocks = mine(&mut donor, 3, pkh(1));
    let mut core = new_core(regtest());
    let (outcome, outputs) = submit(&mut core, blocks[2].clone());
    assert_eq!(outcome, BlockOutcome::Orphan);
    assert_eq!(outputs, vec![Output::RequestBlock { peer: 1, hash: blocks[1].block_hash() }]);
    let (outcome, outputs) = submit(&mut core, blocks[1].clone());
    assert_eq!(outcome, BlockOutcome::Orphan);
    assert_eq!(outputs, vec![Output::RequestBlock { peer: 1, hash: blocks[0].block_hash() }]);
    let (outcome, _) = submit(&mut core, blocks[0].clone());
    assert_eq!(outcome, BlockOutcome::Accepted);
    assert_eq!(tip(&core), blocks[2].block_hash(), "the orphans connected after their parent");
    assert_eq!(core.orphan_block_count(), 0);
}

#[test]
fn a_hundred_block_reorg_matches_a_node_that_saw_only_the_winner() {
    let params: Params = regtest();
    let mut core = new_core(params.clone());
    let alice = key(1);
    // Common prefix with mature coins for alice.
    let prefix = mine(&mut core, 20, pkh(1));
    let fork = tip(&core);

    // The losing branch: 100 blocks, with alice paying bob in one of them.
    let payment =
        spend(&[coinbase_out(&prefix[0])], vec![pay(2, coins(20)), pay(1, coins(29))], &alice);
    core.handle_tx(payment.clone(), None, NOW).expect("store").0.expect("accepted");
    let losing = mine(&mut core, 100, pkh(3));
    assert!(losing[0].txdata.contains(&payment), "the payment is mined on the losing branch");
    assert_eq!(core.mempool().len(), 0);

    // The winning branch: 101 blocks from the fork, without the payment.
    let mut winning = Vec::new();
    let mut parent = fork;
    for i in 0..101 {
        let block = block_on(&core, parent, vec![], pkh(4), None, 1_000 + i);
        parent = block.block_hash();
        winning.push(block.clone());
        if i < 100 {
            submit(&mut core, block);
        }
    }
    assert_eq!(tip(&core), losing[99].block_hash(), "equal work: no reorg yet");
    let (_, outputs) = submit(&mut core, winning[100].clone());
    assert!(outputs.iter().any(|o| matches!(o, Output::TipChanged { disconnected: 100, .. })));
    assert_eq!(tip(&core), winning[100].block_hash());
    assert!(core.mempool().get(&payment.txid()).is_some(), "the payment is back in the mempool");

    let mut fresh = new_core(params);
    for block in prefix.iter().chain(&winning) {
        submit(&mut fresh, block.clone());
    }
    assert_eq!(fresh.chain().tip(), tip(&core));
    assert_eq!(fresh.chain().utxo_digest(), core.chain().utxo_digest(), "same UTXO set");
}

#[test]
fn generate_mines_on_demand_on_regtest_only() {
    let mut core = new_core(regtest());
    let (hashes, outputs) = core.generate(5, pkh(1), NOW).expect("regtest generates");
    assert_eq!(hashes.len(), 5);
    assert_eq!(core.chain().tip(), hashes[4]);
    assert_eq!(core.chain().height(), 5);
    assert_eq!(outputs.iter().filter(|o| matches!(o, Output::RelayBlock(_))).count(), 5);
    let mut main = new_core(tinychain_protocol::params::Params::new(
        tinychain_protocol::params::Network::Main,
    ));
    assert!(matches!(
        main.generate(1, pkh(1), NOW),
        Err(tinychain_node::core::GenerateError::NotRegtest)
    ));
}

/// Blocks with times at the future limit push the median time past there: a
/// block on the tip cannot be valid until the clock catches up, so the miner
/// is told to wait (and `generate` refuses, saying until when) instead of
/// building blocks that would only be refused.
#[test]
fn mining_waits_while_a_block_on_the_tip_would_be_too_far_ahead_of_the_clock() {
    let mut core = new_core(regtest());
    let limit = core.chain().params().max_future_block_time;
    let now = NOW;
    assert_eq!(core.mining_blocked_until(now), None);
    let ahead = u32::try_from(now).expect("fits") + limit;
    // With genesis and this block, the median time past (the upper middle of
    // the times) is at the limit: the next block's time must be past it.
    let block = block_on(&core, core.chain().tip(), vec![], pkh(1), Some(ahead), 0);
    assert_eq!(block.header.time, ahead);
    let (outcome, _) = core.handle_block(block, Some(1), now).expect("store works");
    assert_eq!(outcome, BlockOutcome::Accepted, "a block at the limit, not past it");
    assert_eq!(core.mining_blocked_until(now), Some(now + 1));
    let err = core.generate(1, pkh(1), now).expect_err("it would be refused");
    assert!(
        matches!(err, tinychain_node::core::GenerateError::TooFarAhead { until, .. } if until == now + 1),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("now {now}")), "{err}");
    assert_eq!(core.chain().height(), 1, "nothing was added");
    // A second later the next block fits under the limit again.
    assert_eq!(core.mining_blocked_until(now + 1), None);
    let (hashes, _) = core.generate(1, pkh(1), now + 1).expect("mines");
    assert_eq!(core.chain().tip(), hashes[0]);
}
