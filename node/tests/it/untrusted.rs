//! What the core must not take on trust from peers: unrequested blocks with
//! less work than the tip (Bitcoin Core's `AcceptBlock` rule), blocks whose
//! ancestor is invalid, and equal-work ties that withholding a parent could
//! flip.

use tinychain_node::core::{BlockOutcome, MAX_UNREQUESTED_AHEAD, Output, Source};
use tinychain_node::store::BlockStatus;
use tinychain_protocol::{Amount, Block, BlockHash};

use crate::harness::*;

fn unrequested(core: &mut TestCore, block: &Block, peer: u32) -> (BlockOutcome, Vec<Output<u32>>) {
    core.handle_block(block.clone(), Source::Unrequested(peer), NOW).expect("store works")
}

/// `n` blocks on `parent`, built on `donor` (which accepts them) so that
/// another core can be handed them in any order.
fn chain_on(donor: &mut TestCore, parent: BlockHash, n: usize, miner: u8) -> Vec<Block> {
    branch(donor, parent, n, miner, None)
}

/// What a core's store holds, roughly: its write count and index size.
fn footprint(core: &TestCore) -> (u64, usize) {
    (core.chain().store().writes, core.chain().index().len())
}

#[test]
fn an_unrequested_block_with_less_work_than_the_tip_is_not_stored_nor_relayed() {
    let mut core = new_core(regtest());
    let genesis = core.chain().tip();
    mine(&mut core, 3, pkh(1));
    let mut donor = new_core(regtest());
    let side = chain_on(&mut donor, genesis, 2, 2);

    let before = footprint(&core);
    let (outcome, outputs) = unrequested(&mut core, &side[0], 7);
    assert!(matches!(&outcome, BlockOutcome::Ignored(r) if r.contains("less work")), "{outcome:?}");
    assert!(outputs.is_empty(), "nothing relayed, nobody punished: {outputs:?}");
    assert_eq!(footprint(&core), before, "the store is unchanged");
    assert!(entry(&core, &side[0].block_hash()).is_none());
    assert!(core.chain().block(&side[0].block_hash()).expect("reads").is_none());

    // The same block asked for by sync is stored.
    let (outcome, outputs) =
        core.handle_block(side[0].clone(), Source::Requested(7), NOW).expect("store");
    assert_eq!(outcome, BlockOutcome::Accepted);
    assert!(entry(&core, &side[0].block_hash()).is_some_and(|e| e.status.has_data()));
    assert!(!outputs.iter().any(|o| matches!(o, Output::RelayBlock(_))), "stored, not connected");
}

#[test]
fn an_unrequested_block_of_equal_work_is_stored_but_relayed_only_once_connected() {
    let mut core = new_core(regtest());
    let genesis = core.chain().tip();
    let main = mine(&mut core, 2, pkh(1));
    let mut donor = new_core(regtest());
    let side = chain_on(&mut donor, genesis, 3, 2);
    assert_eq!(
        unrequested(&mut core, &side[0], 7).0,
        BlockOutcome::Ignored(format!(
            "unrequested block {} has less work than the tip",
            side[0].block_hash()
        ))
    );
    // Requested, the first side block is stored; the second has equal work:
    // stored as a candidate for a tie, not connected, not relayed.
    core.handle_block(side[0].clone(), Source::Requested(7), NOW).expect("store");
    let (outcome, outputs) = unrequested(&mut core, &side[1], 7);
    assert_eq!(outcome, BlockOutcome::Accepted);
    assert!(outputs.is_empty(), "{outputs:?}");
    assert_eq!(core.chain().tip(), main[1].block_hash(), "first seen stays");
    // The third has more work: connected, and the side branch is relayed.
    let (outcome, outputs) = unrequested(&mut core, &side[2], 7);
    assert_eq!(outcome, BlockOutcome::Accepted);
    assert_eq!(core.chain().tip(), side[2].block_hash());
    assert!(outputs.contains(&Output::RelayBlock(side[2].block_hash())), "{outputs:?}");
}

#[test]
fn the_parent_of_orphans_is_stored_when_the_orphan_chain_has_the_work() {
    let mut core = new_core(regtest());
    let genesis = core.chain().tip();
    mine(&mut core, 4, pkh(1));
    let mut donor = new_core(regtest());
    let side = chain_on(&mut donor, genesis, 5, 2);

    // Orphans arrive first, newest first; each asks its sender for the missing parent.
    for block in side[1..].iter().rev() {
        let (outcome, outputs) = unrequested(&mut core, block, 7);
        assert_eq!(outcome, BlockOutcome::Orphan);
        assert_eq!(
            outputs,
            vec![Output::RequestBlock { peer: 7, hash: block.header.prev_blockhash }]
        );
    }
    // The parent asked for has less work than the tip on its own, but the
    // orphans waiting on it carry more: it is what we asked for.
    let (outcome, outputs) = unrequested(&mut core, &side[0], 7);
    assert_eq!(outcome, BlockOutcome::Accepted);
    assert_eq!(core.chain().tip(), side[4].block_hash(), "the orphan chain connected");
    assert_eq!(core.orphan_block_count(), 0);
    let relayed = outputs.iter().filter(|o| matches!(o, Output::RelayBlock(_))).count();
    assert_eq!(relayed, 5, "{outputs:?}");
}

#[test]
fn the_parent_of_orphans_that_do_not_reach_the_tip_is_not_stored() {
    let mut core = new_core(regtest());
    let genesis = core.chain().tip();
    mine(&mut core, 4, pkh(1));
    let mut donor = new_core(regtest());
    let side = chain_on(&mut donor, genesis, 3, 2);
    for block in side[1..].iter().rev() {
        assert_eq!(unrequested(&mut core, block, 7).0, BlockOutcome::Orphan);
    }
    let before = footprint(&core);
    let (outcome, outputs) = unrequested(&mut core, &side[0], 7);
    assert!(matches!(outcome, BlockOutcome::Ignored(_)), "{outcome:?}");
    assert!(outputs.is_empty());
    assert_eq!(footprint(&core), before, "three blocks of less work than four: nothing stored");
}

#[test]
fn an_unrequested_block_too_far_past_the_tip_is_not_stored_but_a_requested_one_is() {
    let mut donor = new_core(regtest());
    let ahead = MAX_UNREQUESTED_AHEAD as usize + 2;
    let blocks = mine(&mut donor, ahead, pkh(1));
    let mut core = new_core(regtest());
    let headers: Vec<_> = blocks.iter().map(|b| b.header).collect();
    assert_eq!(core.handle_headers(&headers, NOW).expect("store").new, ahead);
    let far = blocks.last().expect("blocks");
    let before = footprint(&core);
    let (outcome, _) = unrequested(&mut core, far, 7);
    assert!(matches!(&outcome, BlockOutcome::Ignored(r) if r.contains("too far")), "{outcome:?}");
    assert_eq!(footprint(&core), before);
    // Within reach of the tip, gossip is stored (it has the work of its header chain).
    let near = &blocks[MAX_UNREQUESTED_AHEAD as usize - 1];
    assert_eq!(unrequested(&mut core, near, 7).0, BlockOutcome::Accepted);
    let (outcome, _) = core.handle_block(far.clone(), Source::Requested(7), NOW).expect("store");
    assert_eq!(outcome, BlockOutcome::Accepted);
}

/// Issue 17's reproduction: S3 on height 2 overpays its coinbase (stored, as
/// it ties with the tip, so not yet found out); S4 on S3 is then invalid too.
#[test]
fn a_block_on_an_invalid_ancestor_is_invalid_not_relayed_and_its_sender_penalised() {
    let mut core = new_core(regtest());
    let main = mine(&mut core, 3, pkh(1));
    let mut s3 = block_on(&core, main[1].block_hash(), vec![], pkh(2), None, 9);
    s3.txdata[0].outputs[0].value =
        s3.txdata[0].outputs[0].value.checked_add(Amount::from_belushis(1)).expect("small");
    s3.header.merkle_root = tinychain_protocol::merkle::block_merkle_root(&s3.txdata).root;
    solve(&mut s3);
    let (outcome, outputs) = unrequested(&mut core, &s3, 5);
    assert_eq!(outcome, BlockOutcome::Accepted, "equal work: stored, not connected");
    assert!(outputs.is_empty(), "a block not connected is not relayed: {outputs:?}");

    let s4 = block_on(&core, s3.block_hash(), vec![], pkh(2), None, 10);
    let (outcome, outputs) = unrequested(&mut core, &s4, 6);
    let BlockOutcome::Invalid(reason) = &outcome else { panic!("{outcome:?}") };
    assert!(reason.contains(&s3.block_hash().to_string()), "names the invalid ancestor: {reason}");
    assert!(
        outputs.iter().any(|o| matches!(o, Output::Penalize { peer: 6, .. })),
        "the sender of S4 pays: {outputs:?}"
    );
    assert!(!outputs.iter().any(|o| matches!(o, Output::RelayBlock(_))), "{outputs:?}");
    assert_eq!(core.chain().tip(), main[2].block_hash());
    assert_eq!(entry(&core, &s3.block_hash()).expect("indexed").status, BlockStatus::Invalid);
    assert_eq!(entry(&core, &s4.block_hash()).expect("indexed").status, BlockStatus::InvalidChild);
}

/// Issue 17's sequence: headers of branch B, the data of B2, then A1 and A2
/// (the tip), then B1. B2 ties with A2; it was linked last, so A2 stays (as in
/// Bitcoin Core, whose `nSequenceId` is set once a block's chain of data is
/// complete). Numbering at data arrival made the node move to B2.
#[test]
fn withholding_a_parent_cannot_flip_a_tie() {
    let mut core = new_core(regtest());
    let genesis = core.chain().tip();
    let mut donor = new_core(regtest());
    let a = chain_on(&mut donor, genesis, 2, 1);
    let b = chain_on(&mut donor, genesis, 2, 2);
    let headers: Vec<_> = b.iter().map(|blk| blk.header).collect();
    core.handle_headers(&headers, NOW).expect("store");
    let requested = |core: &mut TestCore, block: &Block| {
        core.handle_block(block.clone(), Source::Requested(3), NOW).expect("store").0
    };
    assert_eq!(requested(&mut core, &b[1]), BlockOutcome::Accepted);
    assert_eq!(requested(&mut core, &a[0]), BlockOutcome::Accepted);
    assert_eq!(requested(&mut core, &a[1]), BlockOutcome::Accepted);
    assert_eq!(core.chain().tip(), a[1].block_hash());
    assert_eq!(requested(&mut core, &b[0]), BlockOutcome::Accepted);
    assert_eq!(core.chain().tip(), a[1].block_hash(), "the chain complete first keeps the tie");
    let (a2, b2) = (entry(&core, &a[1].block_hash()), entry(&core, &b[1].block_hash()));
    let (a2, b2) = (a2.expect("indexed"), b2.expect("indexed"));
    assert_eq!(a2.chainwork, b2.chainwork, "precondition: a tie");
    assert!(b2.linked && a2.sequence < b2.sequence, "{a2:?} {b2:?}");
    // And so after a restart: the numbers are stored with the entries.
    let reopened = new_core_on(core.chain().store().clone(), regtest());
    assert_eq!(reopened.chain().tip(), a[1].block_hash());
}
