//! Helpers shared by the core tests: keys, block building and mining on regtest.

use tinychain_node::core::{BlockOutcome, Core, Output, Source};
use tinychain_node::store::memory::MemoryStore;
use tinychain_node::store::{IndexEntry, Store};
use tinychain_node::template::coinbase;
use tinychain_protocol::block::{Block, BlockHeader};
use tinychain_protocol::keys::PrivateKey;
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::sighash::sign_all;
use tinychain_protocol::validation::block_subsidy;
use tinychain_protocol::{Amount, BlockHash, OutPoint, PubkeyHash, Transaction, TxOut};

/// A time far enough ahead that no test block is "too new".
pub(crate) const NOW: u64 = 1_900_000_000;

pub(crate) type TestCore = Core<MemoryStore, u32>;

pub(crate) fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes(&[seed; 32]).expect("valid scalar")
}

pub(crate) fn pkh(seed: u8) -> PubkeyHash {
    key(seed).public_key().pubkey_hash()
}

pub(crate) fn coins(n: u64) -> Amount {
    Amount::from_coins(n).expect("small")
}

pub(crate) fn regtest() -> Params {
    Params::new(Network::Regtest)
}

pub(crate) fn new_core(params: Params) -> TestCore {
    new_core_on(MemoryStore::new(), params)
}

/// Opens a core on `store` (a copy of another core's, to test a restart).
pub(crate) fn new_core_on(store: MemoryStore, params: Params) -> TestCore {
    Core::open(store, params, Default::default(), NOW).expect("opens")
}

/// Finds a nonce meeting the block's bits.
/// Returns the index entry of `hash`, if it is known (a store failure fails the test).
pub(crate) fn entry<S: Store>(core: &Core<S, u32>, hash: &BlockHash) -> Option<IndexEntry> {
    core.chain().index_entry(hash).expect("the store reads")
}

pub(crate) fn solve(block: &mut Block) {
    let target = block.header.bits.to_target().expect("valid bits");
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce += 1;
    }
}

/// Builds and mines a block on `parent` with `txs`, paying the subsidy to `miner`,
/// at `time` (or one second after the parent's median time past).
pub(crate) fn block_on<S: Store>(
    core: &Core<S, u32>,
    parent: BlockHash,
    txs: Vec<Transaction>,
    miner: PubkeyHash,
    time: Option<u32>,
    extra_nonce: u64,
) -> Block {
    let chain = core.chain();
    let parent_entry = chain.index_entry(&parent).expect("store").expect("parent indexed");
    let height = parent_entry.height + 1;
    let ctx = chain.context_after(&parent, u32::MAX).expect("store").expect("parent indexed");
    let reward = block_subsidy(height, chain.params());
    let mut txdata = vec![coinbase(height, extra_nonce, miner, reward)];
    txdata.extend(txs);
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_blockhash: parent,
            merkle_root: block_merkle_root(&txdata).root,
            time: time.unwrap_or(ctx.median_time_past + 1).max(ctx.median_time_past + 1),
            bits: ctx.required_bits,
            nonce: 0,
        },
        txdata,
    };
    solve(&mut block);
    block
}

/// Submits a block as if from peer 1 and returns the outcome.
pub(crate) fn submit<S: Store>(
    core: &mut Core<S, u32>,
    block: Block,
) -> (BlockOutcome, Vec<Output<u32>>) {
    core.handle_block(block, Source::Requested(1), NOW).expect("store works")
}

/// Mines `n` blocks on the tip paying `miner`, returning them.
pub(crate) fn mine<S: Store>(core: &mut Core<S, u32>, n: usize, miner: PubkeyHash) -> Vec<Block> {
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        let block = core.block_template(miner, 0).block;
        let mut block = block;
        block.header.time = block.header.time.max(1);
        solve(&mut block);
        let (outcome, _) = submit(core, block.clone());
        assert_eq!(outcome, BlockOutcome::Accepted);
        blocks.push(block);
    }
    blocks
}

/// A transaction spending `from` (owned by `owner`) into `outputs`, signed.
pub(crate) fn spend(
    from: &[(OutPoint, TxOut)],
    outputs: Vec<TxOut>,
    owner: &PrivateKey,
) -> Transaction {
    let mut tx = Transaction::spending(from.iter().map(|(op, _)| *op), outputs);
    let spent: Vec<TxOut> = from.iter().map(|(_, out)| *out).collect();
    sign_all(&mut tx, &spent, owner).expect("owner signs");
    tx
}

/// The coinbase output of `block` as a spendable (outpoint, output).
pub(crate) fn coinbase_out(block: &Block) -> (OutPoint, TxOut) {
    let tx = &block.txdata[0];
    (OutPoint { txid: tx.txid(), vout: 0 }, tx.outputs[0])
}

/// Output `vout` of `tx`.
pub(crate) fn out(tx: &Transaction, vout: u32) -> (OutPoint, TxOut) {
    (OutPoint { txid: tx.txid(), vout }, tx.outputs[vout as usize])
}

pub(crate) fn pay(to: u8, value: Amount) -> TxOut {
    TxOut { value, pubkey_hash: pkh(to) }
}

/// Mines `n` blocks on `parent`, each accepted, returning them.
pub(crate) fn branch<S: Store>(
    core: &mut Core<S, u32>,
    parent: BlockHash,
    n: usize,
    miner: u8,
    step: Option<u32>,
) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut parent = parent;
    for i in 0..n {
        let time = step.map(|s| {
            let p = entry(core, &parent).expect("indexed").header.time;
            p + s
        });
        let block = block_on(core, parent, vec![], pkh(miner), time, 100 + i as u64);
        parent = block.block_hash();
        let (outcome, _) = submit(core, block.clone());
        assert_eq!(outcome, BlockOutcome::Accepted, "block {i} of the branch");
        blocks.push(block);
    }
    blocks
}
