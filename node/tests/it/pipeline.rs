//! Connecting a run of blocks at once (their signatures checked together on
//! the script threads) ends where connecting them one at a time does, with the
//! same error for the first invalid block and the blocks before it connected.

use std::num::NonZeroUsize;

use tinychain_node::chain::{self, ChainState, TipChange};
use tinychain_node::store::memory::MemoryStore;
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::validation::BlockError;
use tinychain_protocol::{Block, BlockHash, OutPoint};

use crate::cache::source_chain;
use crate::harness::*;

fn open() -> ChainState<MemoryStore> {
    // More threads than cores: the claims interleave whatever the machine.
    let threads = NonZeroUsize::new(3).expect("non-zero");
    let config = chain::Config { script_threads: threads, ..Default::default() };
    ChainState::open(MemoryStore::new(), regtest(), config).expect("opens")
}

/// Connects `blocks` one at a time, stopping at the first invalid one: the
/// tip, the UTXO digest and the error.
fn one_at_a_time(blocks: &[Block]) -> (BlockHash, String, Option<(BlockHash, BlockError)>) {
    let mut chain = open();
    for block in blocks {
        chain.accept_block(block, u32::MAX).expect("acceptable");
        let change = chain.activate_best_chain().expect("store");
        assert!(change.connected.len() <= 1, "one block at a time");
        if let Some(invalid) = change.invalid.into_iter().next() {
            return (chain.tip(), chain.utxo_digest().to_string(), Some(invalid));
        }
    }
    (chain.tip(), chain.utxo_digest().to_string(), None)
}

/// Stores all of `blocks`, then connects them in one activation (runs).
fn all_at_once(blocks: &[Block]) -> (ChainState<MemoryStore>, TipChange) {
    let mut chain = open();
    for block in blocks {
        chain.accept_block(block, u32::MAX).expect("acceptable");
    }
    let change = chain.activate_best_chain().expect("store");
    (chain, change)
}

/// Whether some block of `blocks` spends an output created by the block before it.
fn spends_the_block_before(blocks: &[Block]) -> bool {
    blocks.windows(2).any(|pair| {
        let created: Vec<OutPoint> = (pair[0].txdata.iter())
            .flat_map(|tx| {
                (0..tx.outputs.len() as u32).map(|vout| OutPoint { txid: tx.txid(), vout })
            })
            .collect();
        (pair[1].txdata.iter().skip(1))
            .any(|tx| tx.inputs.iter().any(|i| created.contains(&i.prev_out)))
    })
}

/// Breaks the first input signature of the last transaction of each block at
/// `bad` and re-mines the chain from the first of them on.
fn with_bad_signatures(blocks: &[Block], bad: &[usize]) -> Vec<Block> {
    let mut blocks = blocks.to_vec();
    let first = bad.iter().copied().min().expect("some block");
    for &at in bad {
        let block = &mut blocks[at];
        let tx = block.txdata.last_mut().expect("a transaction");
        assert!(!tx.inputs.is_empty() && block.txdata.len() > 1, "block {at} spends");
        let tx = block.txdata.last_mut().expect("a transaction");
        tx.inputs[0].signature[10] ^= 1;
        block.header.merkle_root = block_merkle_root(&block.txdata).root;
    }
    for at in first..blocks.len() {
        blocks[at].header.prev_blockhash = blocks[at - 1].block_hash();
        solve(&mut blocks[at]);
    }
    blocks
}

#[test]
fn a_run_of_valid_blocks_connects_to_the_same_tip_and_utxo_set() {
    // Blocks 31.. each spend an output of the block before: within one run.
    let blocks = source_chain();
    assert!(spends_the_block_before(&blocks));
    let (tip, digest, error) = one_at_a_time(&blocks);
    assert!(error.is_none());
    let (chain, change) = all_at_once(&blocks);
    assert!(change.invalid.is_empty(), "{:?}", change.invalid);
    assert_eq!(change.connected.len(), blocks.len());
    assert_eq!((chain.tip(), chain.utxo_digest().to_string()), (tip, digest));
}

#[test]
fn the_first_bad_signature_of_a_run_is_the_one_connecting_one_at_a_time_reports() {
    let valid = source_chain();
    // In the first run, in a later one, and a second bad block after the first.
    for bad in [vec![31], vec![50, 52], vec![66]] {
        let blocks = with_bad_signatures(&valid, &bad);
        let k = bad[0];
        let (tip, digest, error) = one_at_a_time(&blocks);
        let error = error.expect("an invalid block");
        assert_eq!(error.0, blocks[k].block_hash());
        assert!(matches!(error.1, BlockError::Transaction { .. }), "{:?}", error.1);
        assert_eq!(tip, blocks[k - 1].block_hash());

        let (chain, change) = all_at_once(&blocks);
        assert_eq!(change.invalid, vec![error], "bad blocks {bad:?}");
        assert_eq!(change.connected.len(), k, "the blocks before block {k} connect");
        assert_eq!((chain.tip(), chain.utxo_digest().to_string()), (tip, digest));
        for block in &blocks[k..] {
            let entry = chain.index_entry(&block.block_hash()).expect("store").expect("indexed");
            assert!(entry.status.is_invalid(), "block {k} and its descendants are invalid");
        }
    }
}
