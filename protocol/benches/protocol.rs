//! Benchmarks of the consensus library's hot paths: header hashing with the
//! midstate next to raw SHA-256 compressions, signature verification next to raw
//! k256, and the UTXO and signature checks of a block with 2,000 signed inputs on
//! one thread and on every core.
//!
//! Run with `cargo bench -p tinychain-protocol`. After criterion's groups a short
//! interleaved measurement prints the ratios the performance targets are stated in
//! (midstate hashes/s against compressions/s ÷ 2, our verifies/s against k256's).
//! Fixtures are built once, outside the timed loops, and nothing here reads files.

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group};
use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{Signature, VerifyingKey};
use tinychain_protocol::block::{Block, BlockHeader};
use tinychain_protocol::keys::PrivateKey;
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::pow::{self, HeaderHasher};
use tinychain_protocol::sighash::{self, SighashCache};
use tinychain_protocol::transaction::COINBASE_MESSAGE_LEN;
use tinychain_protocol::validation::{
    self, Coin, block_subsidy, check_block_inputs, check_block_signatures,
};
use tinychain_protocol::{Amount, BlockHash, Hash256, OutPoint, PubkeyHash, Transaction};
use tinychain_protocol::{TxOut, Txid};

/// Transactions in the big block, after its coinbase.
const BLOCK_TXS: usize = 20;
/// Inputs of each of those transactions: 20 × 100 = 2,000 signatures per block.
const INPUTS_PER_TX: usize = 100;
/// Height of the big block: past regtest's first halvings, nothing special.
const HEIGHT: u32 = 201;
/// Header time of the big block.
const TIME: u32 = 1_800_000_000;

fn key() -> PrivateKey {
    PrivateKey::from_bytes(&[7; 32]).expect("a small repeated byte is a valid scalar")
}

/// A header shaped like a real one (its fields do not matter to the hash rate).
fn sample_header() -> BlockHeader {
    BlockHeader {
        version: 1,
        prev_blockhash: BlockHash::from_byte_array([0x11; 32]),
        merkle_root: Hash256::from_byte_array([0x22; 32]),
        time: TIME,
        bits: Params::new(Network::Main).pow_limit.to_compact(),
        nonce: 0,
    }
}

/// A signed transaction spending `from` (all owned by `owner`) into one output
/// worth their sum; no fee.
fn spend_all(from: &[(OutPoint, TxOut)], owner: &PrivateKey) -> Transaction {
    let total = Amount::checked_sum(from.iter().map(|(_, out)| out.value))
        .expect("the fixture's coins sum to a valid amount");
    let outputs = vec![TxOut { value: total, pubkey_hash: owner.public_key().pubkey_hash() }];
    let mut tx = Transaction::spending(from.iter().map(|(op, _)| *op), outputs);
    let spent: Vec<TxOut> = from.iter().map(|(_, out)| *out).collect();
    sighash::sign_all(&mut tx, &spent, owner).expect("the owner signs its own coins");
    tx
}

/// One signed input: the 1-input transaction, the output it spends, and the same
/// signature taken apart for k256 (key, signature, signature hash).
struct SignedInput {
    tx: Transaction,
    spent: TxOut,
    key: VerifyingKey,
    signature: Signature,
    prehash: Hash256,
}

impl SignedInput {
    fn new() -> SignedInput {
        let owner = key();
        let spent =
            TxOut { value: Amount::ONE_COIN, pubkey_hash: owner.public_key().pubkey_hash() };
        let prev_out = OutPoint { txid: Txid::from_byte_array([0x33; 32]), vout: 0 };
        let tx = spend_all(&[(prev_out, spent)], &owner);
        let input = &tx.inputs[0];
        let key = VerifyingKey::from_sec1_bytes(&input.pubkey).expect("a signed input's key");
        let signature = Signature::from_slice(&input.signature).expect("a signed input's sig");
        let prehash = sighash::signature_hash(&tx, 0, &spent).expect("input 0 exists");
        SignedInput { tx, spent, key, signature, prehash }
    }

    fn verify_ours(&self) {
        sighash::verify_input(black_box(&self.tx), 0, black_box(&self.spent))
            .expect("the fixture's signature is valid");
    }

    fn verify_raw(&self) {
        self.key
            .verify_prehash(black_box(self.prehash.as_bytes()), black_box(&self.signature))
            .expect("the fixture's signature is valid");
    }
}

/// A mined regtest block whose transactions spend 2,000 coins, and the UTXO set
/// of its parent.
struct BigBlock {
    params: Params,
    block: Block,
    view: HashMap<OutPoint, Coin>,
}

impl BigBlock {
    fn new() -> BigBlock {
        let params = Params::new(Network::Regtest);
        let owner = key();
        let owner_hash = owner.public_key().pubkey_hash();
        let mut view = HashMap::new();
        let mut txdata = Vec::with_capacity(BLOCK_TXS + 1);
        txdata.push(Transaction::coinbase(
            HEIGHT,
            0,
            &[0; COINBASE_MESSAGE_LEN],
            vec![TxOut {
                value: block_subsidy(HEIGHT, &params),
                pubkey_hash: PubkeyHash::default(),
            }],
        ));
        for t in 0..BLOCK_TXS {
            let from: Vec<(OutPoint, TxOut)> = (0..INPUTS_PER_TX)
                .map(|i| {
                    let mut txid = [0u8; 32];
                    txid[..8].copy_from_slice(&((t * INPUTS_PER_TX + i) as u64).to_le_bytes());
                    let outpoint = OutPoint { txid: Txid::from_byte_array(txid), vout: 0 };
                    let output = TxOut { value: Amount::ONE_COIN, pubkey_hash: owner_hash };
                    view.insert(outpoint, Coin { output, height: 100, is_coinbase: false });
                    (outpoint, output)
                })
                .collect();
            txdata.push(spend_all(&from, &owner));
        }
        let header = BlockHeader {
            version: 1,
            prev_blockhash: BlockHash::from_byte_array([0xaa; 32]),
            merkle_root: block_merkle_root(&txdata).root,
            time: TIME,
            bits: params.pow_limit.to_compact(),
            nonce: 0,
        };
        let mut block = Block { header, txdata };
        let target = block.header.bits.to_target().expect("regtest bits decode");
        while !target.is_met_by(block.header.block_hash()) {
            block.header.nonce += 1;
        }
        validation::check_block(&block, &params).expect("the fixture block is valid");
        BigBlock { params, block, view }
    }

    fn inputs(&self) -> usize {
        BLOCK_TXS * INPUTS_PER_TX
    }

    /// Runs what connecting the block checks: coins, amounts, then signatures.
    fn check(&self, threads: NonZeroUsize) {
        let spends = check_block_inputs(black_box(&self.block), HEIGHT, &self.view, &self.params)
            .expect("the fixture's inputs are valid");
        check_block_signatures(&self.block, &spends, threads)
            .expect("the fixture's signatures are valid");
    }
}

fn cores() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

fn header_hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("pow");
    group.throughput(Throughput::Elements(1));
    group.bench_function("compress_block", |b| {
        let block = [0x5a; 64];
        let mut state = [0u32; 8];
        b.iter(|| pow::compress_block(&mut state, black_box(&block)));
        black_box(state);
    });
    group.bench_function("header_hasher_hash_with", |b| {
        let hasher = HeaderHasher::new(&sample_header());
        let mut nonce = 0u32;
        b.iter(|| {
            nonce = nonce.wrapping_add(1);
            hasher.hash_with(TIME, black_box(nonce))
        });
    });
    group.finish();
}

fn signatures(c: &mut Criterion) {
    let input = SignedInput::new();
    let cache = SighashCache::new(&input.tx);
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sighash_verify_input", |b| b.iter(|| input.verify_ours()));
    group.bench_function("sighash_cache_verify_input", |b| {
        b.iter(|| cache.verify_input(0, black_box(&input.spent)))
    });
    group.bench_function("k256_verify_prehash", |b| b.iter(|| input.verify_raw()));
    // Part of the difference between ours and raw: every check parses (decompresses)
    // the input's public key.
    let pubkey = input.tx.inputs[0].pubkey;
    group.bench_function("k256_parse_compressed_pubkey", |b| {
        b.iter(|| VerifyingKey::from_sec1_bytes(black_box(&pubkey)).expect("a signed input's key"))
    });
    group.finish();
}

fn block_validation(c: &mut Criterion) {
    let fixture = BigBlock::new();
    let mut group = c.benchmark_group("block_2000_inputs");
    group.throughput(Throughput::Elements(fixture.inputs() as u64));
    // One iteration verifies 2,000 signatures (about 0.1 s): flat sampling keeps
    // the sample count without running for minutes.
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.bench_function("check_block_inputs", |b| {
        b.iter(|| {
            check_block_inputs(black_box(&fixture.block), HEIGHT, &fixture.view, &fixture.params)
                .expect("the fixture's inputs are valid")
        })
    });
    let mut thread_counts = vec![NonZeroUsize::MIN];
    if cores() > NonZeroUsize::MIN {
        thread_counts.push(cores());
    }
    for threads in thread_counts {
        group.bench_with_input(
            BenchmarkId::new("inputs_and_signatures", format!("{threads}_threads")),
            &threads,
            |b, &threads| b.iter(|| fixture.check(threads)),
        );
    }
    group.finish();
}

/// The canonical encoder on the paths that run per transaction and per coin:
/// txids, a whole block's bytes, and the bytes of a UTXO entry.
fn encoding(c: &mut Criterion) {
    let fixture = BigBlock::new();
    let tx = &fixture.block.txdata[1];
    let (outpoint, coin) = fixture.view.iter().next().expect("the view has coins");
    let mut group = c.benchmark_group("encode");
    group.bench_function("txid_100_inputs", |b| b.iter(|| black_box(tx).txid()));
    group.bench_function("block_2000_inputs", |b| b.iter(|| black_box(&fixture.block).encode()));
    group.bench_function("utxo_entry_bytes", |b| {
        b.iter(|| (black_box(outpoint).to_bytes(), black_box(coin).to_bytes()))
    });
    group.finish();
}

/// Returns how many times per second `work(n)` can do `n` operations, over about
/// `duration`, after calibrating `n` so the clock is read rarely.
fn ops_per_sec(duration: Duration, mut work: impl FnMut(u64)) -> f64 {
    let mut batch = 1u64;
    loop {
        let start = Instant::now();
        work(batch);
        if start.elapsed() >= Duration::from_millis(5) || batch >= 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        work(batch);
        done += batch;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Measures `a` and `b` in alternating rounds and keeps each one's best round, so a
/// burst of load from elsewhere on the machine does not skew the ratio.
fn best_of_interleaved(
    rounds: usize,
    round: Duration,
    mut a: impl FnMut(u64),
    mut b: impl FnMut(u64),
) -> (f64, f64) {
    let (mut best_a, mut best_b) = (0f64, 0f64);
    for _ in 0..rounds {
        best_a = best_a.max(ops_per_sec(round, &mut a));
        best_b = best_b.max(ops_per_sec(round, &mut b));
    }
    (best_a, best_b)
}

/// Prints the ratios the performance targets are stated in.
fn summary() {
    // `cargo test --benches` runs bench binaries without `--bench`: then just smoke-test.
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let (rounds, round) =
        if measuring { (5, Duration::from_millis(400)) } else { (1, Duration::from_millis(10)) };
    if !measuring {
        eprintln!("smoke run (no --bench): the numbers below are not measurements");
    }

    let hasher = HeaderHasher::new(&sample_header());
    let mut nonce = 0u32;
    let mut state = [0u32; 8];
    let block = [0x5a; 64];
    let (hashes, compressions) = best_of_interleaved(
        rounds,
        round,
        |n| {
            for _ in 0..n {
                nonce = nonce.wrapping_add(1);
                black_box(hasher.hash_with(TIME, black_box(nonce)));
            }
        },
        |n| {
            for _ in 0..n {
                pow::compress_block(&mut state, black_box(&block));
            }
            black_box(&state);
        },
    );
    let input = SignedInput::new();
    let (ours, raw) = best_of_interleaved(
        rounds,
        round,
        |n| (0..n).for_each(|_| input.verify_ours()),
        |n| (0..n).for_each(|_| input.verify_raw()),
    );

    eprintln!();
    eprintln!("summary (best of {rounds} interleaved rounds of {round:?}, one thread):");
    eprintln!("  SHA-256 compressions/s          {compressions:>14.0}");
    eprintln!("  midstate header hashes/s        {hashes:>14.0}");
    eprintln!(
        "  hashes/s ÷ (compressions/s ÷ 2) {:>13.1} %  (target ≥ 85 %)",
        100.0 * hashes / (compressions / 2.0)
    );
    eprintln!("  k256 verify_prehash/s           {raw:>14.0}");
    eprintln!("  sighash::verify_input/s         {ours:>14.0}");
    eprintln!("  ours ÷ raw                      {:>13.1} %", 100.0 * ours / raw);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = header_hashing, signatures, block_validation, encoding
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
