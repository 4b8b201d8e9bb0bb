//! Connect-block throughput of the real chain code, on both stores.
//!
//! Builds a regtest chain once: blocks 1 to 11, then block 12 whose transaction
//! fans the first coinbase out to 2,000 outputs of a test key, then block 13
//! whose 20 transactions spend all 2,000 (one signature each). Each run opens a
//! fresh [`ChainState`] at height 12 (a clone of the [`MemoryStore`], or a copy of
//! the redb file in a temporary directory) and times `accept_block` and
//! `activate_best_chain` of block 13, with `script_threads` 1 and 2. Runs of every
//! configuration are interleaved, so load from elsewhere on the machine hits all of
//! them alike. It prints blocks/s and inputs/s, the 2-thread speedup, and how close
//! the node comes to raw k256 verification × cores, next to the ceiling of that
//! ratio: the node's whole check of one input (which must also decompress the
//! key, hash it and hash the transaction) over raw verification, both on one
//! thread. It also times a wide
//! alternative block 13 on redb — 12 transactions creating 2,950 outputs each,
//! about 1 MB, the blocks the propagation benchmark relays — since that is what
//! every node pays before it forwards such a block. And it times block 13 once
//! more as a node that relayed its transactions sees it: their signatures were
//! checked when they entered the mempool and are not checked again.
//!
//! Run with `cargo bench -p tinychain-node --bench connect_block`; without
//! `--bench` (as `cargo test --benches` runs it) it does one quick round as a smoke test.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration, Instant};

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{Signature, VerifyingKey};
use tinychain_node::chain::{ChainState, Config};
use tinychain_node::store::Store;
use tinychain_node::store::memory::MemoryStore;
use tinychain_node::store::redb::RedbStore;
use tinychain_node::template::coinbase;
use tinychain_protocol::block::{Block, BlockHeader};
use tinychain_protocol::keys::PrivateKey;
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::sighash::{self, SighashCache};
use tinychain_protocol::validation::block_subsidy;
use tinychain_protocol::{Amount, Hash256, OutPoint, Transaction, TxOut};

/// Coins fanned out, and so signatures in the measured block.
const INPUTS: usize = 2_000;
/// Transactions the measured block splits them into.
const SPEND_TXS: usize = 20;
/// The wide block: transactions, each creating this many outputs (0.99 MB,
/// just under the 1 MB block limit).
const WIDE_TXS: usize = 12;
const WIDE_OUTPUTS: usize = 2_950;
/// A time far enough ahead that no block is "too new".
const NOW: u32 = u32::MAX - 1;

fn owner() -> PrivateKey {
    PrivateKey::from_bytes(&[9; 32]).expect("a small repeated byte is a valid scalar")
}

fn config(threads: usize) -> Config {
    Config {
        script_threads: NonZeroUsize::new(threads).expect("at least one thread"),
        verify_utxo_on_start: false,
        activate_on_start: true,
    }
}

/// Builds and mines the next block on the tip of `chain`, paying the subsidy to
/// the test key, one minute after the tip.
fn next_block<S: Store>(chain: &ChainState<S>, txs: Vec<Transaction>) -> Block {
    let tip = chain.tip();
    let ctx = chain.tip_context(NOW);
    let reward = block_subsidy(ctx.height, chain.params());
    let mut txdata = vec![coinbase(ctx.height, 0, owner().public_key().pubkey_hash(), reward)];
    txdata.extend(txs);
    let parent_time = chain.tip_entry().header.time;
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_blockhash: tip,
            merkle_root: block_merkle_root(&txdata).root,
            time: (parent_time + 60).max(ctx.median_time_past + 1),
            bits: ctx.required_bits,
            nonce: 0,
        },
        txdata,
    };
    let target = block.header.bits.to_target().expect("regtest bits decode");
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce += 1;
    }
    block
}

/// Accepts `block` and moves the tip to it.
fn connect<S: Store>(chain: &mut ChainState<S>, block: &Block) {
    chain.accept_block(block, NOW).expect("the bench's blocks are valid");
    let change = chain.activate_best_chain().expect("the store works");
    assert!(change.invalid.is_empty(), "invalid block: {:?}", change.invalid);
    assert_eq!(chain.tip(), block.block_hash(), "the block became the tip");
}

/// A signed transaction spending `from` (owned by the test key) into `outputs`.
fn spend(from: &[(OutPoint, TxOut)], outputs: Vec<TxOut>) -> Transaction {
    let key = owner();
    let mut tx = Transaction::spending(from.iter().map(|(op, _)| *op), outputs);
    let spent: Vec<TxOut> = from.iter().map(|(_, out)| *out).collect();
    sighash::sign_all(&mut tx, &spent, &key).expect("the test key owns its coins");
    tx
}

/// Mines blocks 1 to 12 on `chain` and returns block 13, which spends the
/// 2,000 outputs block 12 created, and the output each of its inputs spends.
fn build_chain<S: Store>(chain: &mut ChainState<S>) -> (Block, TxOut, Block) {
    let params = chain.params().clone();
    let first = next_block(chain, vec![]);
    connect(chain, &first);
    // Coinbase outputs mature after `coinbase_maturity` blocks.
    while chain.height() < params.coinbase_maturity + 1 {
        let block = next_block(chain, vec![]);
        connect(chain, &block);
    }
    let funding = &first.txdata[0];
    let funding_out = (OutPoint { txid: funding.txid(), vout: 0 }, funding.outputs[0]);
    let share = funding_out.1.value.to_belushis() / INPUTS as u64;
    let piece = TxOut {
        value: Amount::from_belushis(share),
        pubkey_hash: owner().public_key().pubkey_hash(),
    };
    let fan_out = spend(&[funding_out], vec![piece; INPUTS]);
    let fan_out_txid = fan_out.txid();
    let block = next_block(chain, vec![fan_out]);
    connect(chain, &block);

    let pieces: Vec<(OutPoint, TxOut)> =
        (0..INPUTS as u32).map(|vout| (OutPoint { txid: fan_out_txid, vout }, piece)).collect();
    let per_tx = INPUTS / SPEND_TXS;
    let total = Amount::from_belushis(share * per_tx as u64);
    let txs = pieces
        .chunks(per_tx)
        .map(|from| {
            let out = TxOut { value: total, pubkey_hash: owner().public_key().pubkey_hash() };
            spend(from, vec![out])
        })
        .collect();
    // The wide alternative to block 13: about 1 MB of new coins, the shape the
    // propagation benchmark relays.
    let wide_txs = pieces[..WIDE_TXS]
        .iter()
        .map(|from| {
            let each = Amount::from_belushis(share / WIDE_OUTPUTS as u64);
            let out = TxOut { value: each, pubkey_hash: owner().public_key().pubkey_hash() };
            spend(std::slice::from_ref(from), vec![out; WIDE_OUTPUTS])
        })
        .collect();
    let wide = next_block(chain, wide_txs);
    (next_block(chain, txs), piece, wide)
}

/// Time to accept and to connect one block.
#[derive(Clone, Copy)]
struct Sample {
    accept: Duration,
    activate: Duration,
}

impl Sample {
    fn total(&self) -> Duration {
        self.accept + self.activate
    }
}

/// Accepts and connects `block`, timing both. `cached`: its transactions count
/// as checked already (relayed through the mempool), so their signatures are
/// not checked again.
fn measure<S: Store>(mut chain: ChainState<S>, block: &Block, cached: bool) -> Sample {
    let start = Instant::now();
    chain.accept_block(black_box(block), NOW).expect("block 13 is valid");
    let accepted = Instant::now();
    let change = chain.activate_best_chain_with(&|_| cached).expect("the store works");
    let activate = accepted.elapsed();
    assert_eq!(change.connected.len(), 1, "block 13 connected: {:?}", change.invalid);
    Sample { accept: accepted - start, activate }
}

/// Where each store's runs start from.
struct Bases {
    params: Params,
    memory: MemoryStore,
    /// A redb file holding the chain at height 12 (not open).
    redb_file: std::path::PathBuf,
    dir: tempfile::TempDir,
    /// Block 13.
    block: Block,
    /// The wide block 13.
    wide: Block,
    /// The output each input of block 13 spends.
    piece: TxOut,
}

impl Bases {
    fn new() -> Bases {
        let params = Params::new(Network::Regtest);
        let mut chain = ChainState::open(MemoryStore::new(), params.clone(), config(1))
            .expect("a new memory store opens");
        let (block, piece, wide) = build_chain(&mut chain);
        let memory = chain.store().clone();

        let dir = tempfile::tempdir().expect("a temporary directory");
        let redb_file = dir.path().join("base.redb");
        {
            let store = RedbStore::open(&redb_file, params.genesis_hash()).expect("redb opens");
            let mut chain =
                ChainState::open(store, params.clone(), config(1)).expect("a new store opens");
            let (same, ..) = build_chain(&mut chain);
            assert_eq!(same.block_hash(), block.block_hash(), "both stores build one chain");
        }
        Bases { params, memory, redb_file, dir, block, piece, wide }
    }

    fn run_memory(&self, threads: usize, block: &Block) -> Sample {
        let chain = ChainState::open(self.memory.clone(), self.params.clone(), config(threads))
            .expect("the base store opens");
        measure(chain, block, false)
    }

    fn run_redb(&self, threads: usize, run: usize, block: &Block) -> Sample {
        self.run_redb_cached(threads, run, block, false)
    }

    fn run_redb_cached(&self, threads: usize, run: usize, block: &Block, cached: bool) -> Sample {
        let path = self.dir.path().join(format!("run-{run}.redb"));
        std::fs::copy(&self.redb_file, &path).expect("the base file copies");
        let sample = {
            let store = RedbStore::open(&path, self.params.genesis_hash()).expect("the copy opens");
            let chain = ChainState::open(store, self.params.clone(), config(threads))
                .expect("the base store opens");
            measure(chain, block, cached)
        };
        remove(&path);
        sample
    }
}

fn remove(path: &Path) {
    std::fs::remove_file(path).expect("the run's copy is removable");
}

/// The block's signatures taken apart for k256: key, signature, signature hash.
fn raw_checks(block: &Block, spent: &TxOut) -> Vec<(VerifyingKey, Signature, Hash256)> {
    block.txdata[1..]
        .iter()
        .flat_map(|tx| {
            (0..tx.inputs.len()).map(move |i| {
                let input = &tx.inputs[i];
                let key = VerifyingKey::from_sec1_bytes(&input.pubkey).expect("a signed key");
                let sig = Signature::from_slice(&input.signature).expect("a signed signature");
                let hash = sighash::signature_hash(tx, i, spent).expect("the input exists");
                (key, sig, hash)
            })
        })
        .collect()
}

/// The block's signatures as they travel: compressed key bytes, signature
/// bytes, signature hash. Verifying these includes what any verifier of wire data
/// must do besides the curve arithmetic: decompress the key, parse the signature.
fn wire_checks(block: &Block, spent: &TxOut) -> Vec<([u8; 33], [u8; 64], Hash256)> {
    block.txdata[1..]
        .iter()
        .flat_map(|tx| {
            (0..tx.inputs.len()).map(move |i| {
                let input = &tx.inputs[i];
                let hash = sighash::signature_hash(tx, i, spent).expect("the input exists");
                (input.pubkey, input.signature, hash)
            })
        })
        .collect()
}

/// Parses and verifies every wire check with k256 on one thread; returns verifies/s.
fn wire_rate(checks: &[([u8; 33], [u8; 64], Hash256)]) -> f64 {
    let start = Instant::now();
    for (key, sig, hash) in checks {
        let key = VerifyingKey::from_sec1_bytes(black_box(key)).expect("a signed key");
        let sig = Signature::from_slice(black_box(sig)).expect("a signed signature");
        key.verify_prehash(black_box(hash.as_bytes()), &sig)
            .expect("the block's signatures are valid");
    }
    checks.len() as f64 / start.elapsed().as_secs_f64()
}

/// Runs the node's whole check of each of the block's inputs on one thread, as
/// a connect does (parse key and signature, HASH160 of the key, signature hash,
/// verify), without spreading them over threads; returns inputs/s. This over
/// the raw rate is the most a connect can reach of raw × cores.
fn input_rate(block: &Block, spent: &TxOut) -> f64 {
    let caches: Vec<SighashCache<'_>> = block.txdata[1..].iter().map(SighashCache::new).collect();
    let start = Instant::now();
    let mut inputs = 0;
    for (tx, cache) in block.txdata[1..].iter().zip(&caches) {
        for i in 0..tx.inputs.len() {
            cache.verify_input(black_box(i), spent).expect("the block's signatures are valid");
            inputs += 1;
        }
    }
    inputs as f64 / start.elapsed().as_secs_f64()
}

/// Verifies every check with k256 on `threads` threads; returns verifies/s.
fn raw_rate(checks: &[(VerifyingKey, Signature, Hash256)], threads: usize) -> f64 {
    let verify = |chunk: &[(VerifyingKey, Signature, Hash256)]| {
        for (key, sig, hash) in chunk {
            key.verify_prehash(black_box(hash.as_bytes()), black_box(sig))
                .expect("the block's signatures are valid");
        }
    };
    let start = Instant::now();
    std::thread::scope(|scope| {
        for chunk in checks.chunks(checks.len().div_ceil(threads)) {
            scope.spawn(move || verify(chunk));
        }
    });
    checks.len() as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let rounds = if measuring { 15 } else { 1 };
    if !measuring {
        eprintln!("smoke run (no --bench): the numbers below are not measurements");
    }
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);

    eprintln!("building the chain (12 blocks, then a block spending {INPUTS} outputs)...");
    let bases = Bases::new();
    let checks = raw_checks(&bases.block, &bases.piece);
    assert_eq!(checks.len(), INPUTS);
    let wire = wire_checks(&bases.block, &bases.piece);

    let configs: [(&str, usize); 4] = [("memory", 1), ("memory", 2), ("redb", 1), ("redb", 2)];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
    // Each yardstick rate once per round, next to the connects it is compared with.
    let (mut raw_ones, mut raw_alls, mut wire_ones) = (Vec::new(), Vec::new(), Vec::new());
    let mut input_ones = Vec::new();
    let mut wide = Vec::new();
    let mut cached = Vec::new();
    for round in 0..rounds {
        for (i, (store, threads)) in configs.iter().enumerate() {
            let sample = match *store {
                "memory" => bases.run_memory(*threads, &bases.block),
                _ => bases.run_redb(*threads, round, &bases.block),
            };
            samples[i].push(sample);
        }
        wide.push(bases.run_redb(1, round, &bases.wide));
        cached.push(bases.run_redb_cached(1, round, &bases.block, true));
        raw_ones.push(raw_rate(&checks, 1));
        raw_alls.push(raw_rate(&checks, cores));
        wire_ones.push(wire_rate(&wire));
        input_ones.push(input_rate(&bases.block, &bases.piece));
    }

    eprintln!();
    eprintln!(
        "connect one block of {INPUTS} signed inputs ({SPEND_TXS} txs), median of {rounds} runs:"
    );
    eprintln!(
        "  {:<8} {:>7} {:>10} {:>11} {:>9} {:>10} {:>11} {:>9}",
        "store",
        "threads",
        "accept ms",
        "connect ms",
        "total ms",
        "blocks/s",
        "inputs/s",
        "best ms"
    );
    let mut rates = Vec::new();
    let mut best_rates = Vec::new();
    for ((store, threads), runs) in configs.iter().zip(&samples) {
        let accept = median(runs.iter().map(|s| s.accept).collect());
        let activate = median(runs.iter().map(|s| s.activate).collect());
        let total = median(runs.iter().map(Sample::total).collect());
        let best = runs.iter().map(Sample::total).min().unwrap_or_default();
        let blocks = 1.0 / total.as_secs_f64();
        rates.push(blocks * INPUTS as f64);
        best_rates.push(INPUTS as f64 / best.as_secs_f64());
        eprintln!(
            "  {store:<8} {threads:>7} {:>10.1} {:>11.1} {:>9.1} {blocks:>10.2} {:>11.0} {:>9.1}",
            ms(accept),
            ms(activate),
            ms(total),
            blocks * INPUTS as f64,
            ms(best),
        );
    }
    let wide_total = median(wide.iter().map(Sample::total).collect());
    eprintln!(
        "  redb, a wide block ({} B: {WIDE_TXS} txs × {WIDE_OUTPUTS} outputs): {:.1} ms \
         (accept {:.1}, connect {:.1}), best {:.1}",
        bases.wide.size(),
        ms(wide_total),
        ms(median(wide.iter().map(|s| s.accept).collect())),
        ms(median(wide.iter().map(|s| s.activate).collect())),
        ms(wide.iter().map(Sample::total).min().unwrap_or_default()),
    );
    eprintln!(
        "  redb, 1 thread, the {INPUTS}-input block with its transactions from the mempool \
         (signatures checked on entry, not again): {:.1} ms (connect {:.1}), best {:.1}",
        ms(median(cached.iter().map(Sample::total).collect())),
        ms(median(cached.iter().map(|s| s.activate).collect())),
        ms(cached.iter().map(Sample::total).min().unwrap_or_default()),
    );
    // The connects are medians, so the yardsticks are too (a best-of-15 rate
    // against a median connect would count the machine's noise as overhead).
    let (raw_one, raw_all, wire_one, input_one) = (
        median_rate(&raw_ones),
        median_rate(&raw_alls),
        median_rate(&wire_ones),
        median_rate(&input_ones),
    );
    eprintln!();
    eprintln!("  medians of {rounds} rounds, as the connects above:");
    eprintln!("  raw k256 verify_prehash/s, 1 thread:            {raw_one:>10.0}");
    eprintln!("  raw k256 verify_prehash/s, {cores} threads:            {raw_all:>10.0}");
    eprintln!(
        "  raw 1-thread rate × {cores} cores:                  {:>10.0}",
        raw_one * cores as f64
    );
    eprintln!(
        "  k256 parse key + signature and verify/s, 1 thread: {wire_one:>10.0} ({:.1} % of raw)",
        100.0 * wire_one / raw_one
    );
    eprintln!(
        "  the node's check of an input (parse, HASH160 of the key, signature hash, verify)/s, \
         1 thread: {input_one:>6.0} ({:.1} % of raw): the ceiling of a connect against raw × \
         cores, with perfect scaling and nothing else to do",
        100.0 * input_one / raw_one
    );
    for (store, one, two) in [("memory", rates[0], rates[1]), ("redb", rates[2], rates[3])] {
        eprintln!(
            "  {store:<6}: speedup 2 threads ÷ 1 = {:.2}× (target ≥ 1.7×); 2 threads = {:.1} % of \
             raw × {cores} cores (target ≥ 90 %), {:.1} % of raw on {cores} threads; 1 thread = \
             {:.1} % of raw 1-thread",
            two / one,
            100.0 * two / (raw_one * cores as f64),
            100.0 * two / raw_all,
            100.0 * one / raw_one,
        );
        eprintln!(
            "          with parsing in the yardstick: 2 threads = {:.1} % of parse+verify × {cores} \
             cores; 1 thread = {:.1} %",
            100.0 * two / (wire_one * cores as f64),
            100.0 * one / wire_one,
        );
    }
    let best = |rates: &[f64]| rates.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "  best of {rounds} (fastest connect against fastest raw verify): raw 1 thread {:.0}/s; \
         memory 2 threads = {:.1} %, redb 2 threads = {:.1} % of raw × {cores} cores",
        best(&raw_ones),
        100.0 * best_rates[1] / (best(&raw_ones) * cores as f64),
        100.0 * best_rates[3] / (best(&raw_ones) * cores as f64),
    );
}

fn median_rate(rates: &[f64]) -> f64 {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
