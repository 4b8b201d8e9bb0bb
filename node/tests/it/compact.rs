//! Compact blocks in the core: rebuilt from the mempool, reported incomplete
//! when transactions are missing, and a wrong one blames its sender, not the
//! block. Transactions the mempool held skip their signature checks.

use tinychain_node::core::{BlockOutcome, CompactOutcome, Output};
use tinychain_protocol::{CompactBlock, Transaction};

use crate::harness::*;

fn handle(core: &mut TestCore, compact: &CompactBlock) -> (CompactOutcome, Vec<Output<u32>>) {
    core.handle_compact_block(compact, Some(1), NOW).expect("store works")
}

fn compact(block: &tinychain_protocol::Block) -> CompactBlock {
    CompactBlock::from_block(block).expect("a block has a coinbase")
}

/// A core with 12 blocks, and two transactions spending the first two coinbases
/// (mature), which `in_mempool` of them are accepted into the mempool.
fn setup(in_mempool: usize) -> (TestCore, Vec<Transaction>) {
    let mut core = new_core(regtest());
    let blocks = mine(&mut core, 12, pkh(1));
    let txs: Vec<_> = blocks[..2]
        .iter()
        .map(|b| spend(&[coinbase_out(b)], vec![pay(2, coins(49))], &key(1)))
        .collect();
    for tx in &txs[..in_mempool] {
        core.handle_tx(tx.clone(), Some(7), NOW).expect("store").0.expect("accepted");
    }
    (core, txs)
}

#[test]
fn a_compact_block_is_rebuilt_from_the_mempool_and_connected() {
    let (mut core, txs) = setup(2);
    let block = block_on(&core, core.chain().tip(), txs, pkh(1), None, 0);
    let (outcome, outputs) = handle(&mut core, &compact(&block));
    assert_eq!(outcome, CompactOutcome::Block(BlockOutcome::Accepted));
    assert!(outputs.contains(&Output::RelayBlock(block.block_hash())));
    // Both transactions' signatures were checked when they entered the mempool.
    assert!(
        outputs.iter().any(|o| matches!(o, Output::TipChanged { signatures_cached: 2, .. })),
        "{outputs:?}"
    );
    assert_eq!(core.chain().tip(), block.block_hash());
    assert!(core.mempool().is_empty());
    // Known now: a duplicate, although the mempool no longer has its transactions.
    assert_eq!(
        handle(&mut core, &compact(&block)).0,
        CompactOutcome::Block(BlockOutcome::Duplicate)
    );
}

#[test]
fn a_compact_block_with_unknown_transactions_is_incomplete_until_the_block_comes() {
    let (mut core, txs) = setup(1);
    let tip = core.chain().tip();
    let block = block_on(&core, tip, txs, pkh(1), None, 0);
    let (outcome, outputs) = handle(&mut core, &compact(&block));
    assert_eq!(outcome, CompactOutcome::Incomplete { missing: 1 });
    assert!(outputs.is_empty());
    assert_eq!(core.chain().tip(), tip);
    // Without valid proof of work nothing is worth fetching: the sender is at fault.
    let mut forged = compact(&block);
    let target = forged.header.bits.to_target().expect("valid bits");
    while target.is_met_by(forged.header.block_hash()) {
        forged.header.nonce = forged.header.nonce.wrapping_add(1);
    }
    let (outcome, outputs) = handle(&mut core, &forged);
    assert!(matches!(outcome, CompactOutcome::Block(BlockOutcome::Invalid(_))), "{outcome:?}");
    assert!(matches!(outputs[..], [Output::Penalize { peer: 1, .. }]), "{outputs:?}");
    // The whole block, fetched, connects; only the mempool's transaction
    // skips its signature check.
    let (outcome, outputs) = submit(&mut core, block.clone());
    assert_eq!(outcome, BlockOutcome::Accepted);
    assert!(
        outputs.iter().any(|o| matches!(o, Output::TipChanged { signatures_cached: 1, .. })),
        "{outputs:?}"
    );
    assert_eq!(core.chain().tip(), block.block_hash());
}

#[test]
fn a_compact_block_listing_the_wrong_transactions_blames_the_sender_not_the_block() {
    let (mut core, txs) = setup(2);
    let block = block_on(&core, core.chain().tip(), vec![txs[0].clone()], pkh(1), None, 0);
    let mut lying = compact(&block);
    lying.txids = vec![txs[1].txid()];
    let (outcome, outputs) = handle(&mut core, &lying);
    assert!(matches!(outcome, CompactOutcome::Block(BlockOutcome::Invalid(_))), "{outcome:?}");
    assert!(matches!(outputs[..], [Output::Penalize { peer: 1, .. }]), "{outputs:?}");
    // The same header with its true transactions is still welcome.
    assert_eq!(
        handle(&mut core, &compact(&block)).0,
        CompactOutcome::Block(BlockOutcome::Accepted)
    );
    assert_eq!(core.chain().tip(), block.block_hash());
}

/// A compact block with less work than the tip is not worth fetching: it
/// would not be stored (the unrequested-block rule), so it is ignored at once.
#[test]
fn a_compact_block_with_less_work_than_the_tip_is_not_fetched() {
    let (mut core, txs) = setup(0);
    let fork = core.chain().hash_at(10).expect("reads").expect("active");
    let stale = block_on(&core, fork, txs, pkh(1), None, 5);
    let (outcome, outputs) = handle(&mut core, &compact(&stale));
    assert!(
        matches!(&outcome, CompactOutcome::Block(BlockOutcome::Ignored(r)) if r.contains("less work")),
        "{outcome:?}"
    );
    assert!(outputs.is_empty());
    assert!(entry(&core, &stale.block_hash()).is_none());
}
