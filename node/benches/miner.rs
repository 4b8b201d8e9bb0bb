//! The miner's hash rate per thread, next to the raw SHA-256 compression rate.
//!
//! A midstate header hash costs two compressions, so the fair yardstick is
//! compressions/s ÷ 2. Three things are measured in interleaved rounds (best
//! round kept, so a burst of load from elsewhere does not skew the ratios):
//! the real [`Miner`] on one thread working on a template whose target no hash
//! meets (its own hash counter gives the rate), the same inner loop driven here
//! (`HeaderHasher::find_nonce` over 2,048-nonce chunks),
//! and `compress_block` alone. The real miner on every core is reported too.
//!
//! Run with `cargo bench -p tinychain-node --bench miner`; without `--bench` (as
//! `cargo test --benches` runs it) it does one short round as a smoke test.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tinychain_node::miner::Miner;
use tinychain_node::template::{BlockTemplate, coinbase};
use tinychain_protocol::block::{Block, BlockHeader};
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::pow::{self, CompactTarget, HeaderHasher, Target};
use tinychain_protocol::{Amount, BlockHash, PubkeyHash};

/// Nonces per chunk, as the miner checks for a new job.
const CHUNK: u32 = 2048;

/// The hardest target compact bits can state: 1. No hash meets it, so the miner
/// never stops to hand in a block.
fn hard_bits() -> CompactTarget {
    CompactTarget::from_consensus(0x0300_0001)
}

fn template() -> BlockTemplate {
    let txdata = vec![coinbase(1, 0, PubkeyHash::default(), Amount::ONE_COIN)];
    let header = BlockHeader {
        version: 1,
        prev_blockhash: BlockHash::from_byte_array([0x44; 32]),
        merkle_root: block_merkle_root(&txdata).root,
        time: 1_800_000_000,
        bits: hard_bits(),
        nonce: 0,
    };
    BlockTemplate { block: Block { header, txdata }, height: 1, fees: Amount::ZERO }
}

/// Runs the real miner with `threads` threads for `duration`; returns hashes/s.
fn miner_rate(threads: usize, duration: Duration) -> f64 {
    let found = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&found);
    let miner =
        Miner::start(threads, Arc::new(move |_| _ = counter.fetch_add(1, Ordering::SeqCst)))
            .expect("the OS starts the mining threads");
    miner.set_job(template());
    // Let every thread pick up the job before the clock starts.
    let warm_up = Instant::now();
    while miner.hashes() == 0 && warm_up.elapsed() < Duration::from_secs(5) {
        std::thread::yield_now();
    }
    std::thread::sleep(duration / 10);
    let (start, before) = (Instant::now(), miner.hashes());
    std::thread::sleep(duration);
    let (elapsed, after) = (start.elapsed(), miner.hashes());
    miner.shutdown();
    assert_eq!(found.load(Ordering::SeqCst), 0, "no hash meets a target of 1");
    (after - before) as f64 / elapsed.as_secs_f64()
}

/// Runs the miner's inner loop here for about `duration`; returns hashes/s. With
/// `check_target` false the hashes are only computed, which shows what the target
/// comparison costs.
fn inner_loop_rate(duration: Duration, check_target: bool) -> f64 {
    let template = template();
    let header = template.block.header;
    let target: Target = header.bits.to_target().expect("the hard bits decode");
    let hasher = HeaderHasher::new(&header);
    // The miner adds to a shared counter and reads the job generation once a chunk.
    let (hashes, generation) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    let mut first = 0u32;
    while start.elapsed() < duration {
        if check_target {
            let found = hasher.find_nonce(header.time, black_box(first..first + CHUNK), &target);
            assert!(found.is_none(), "no hash meets a target of 1");
        } else {
            for nonce in first..first + CHUNK {
                black_box(hasher.hash_with(header.time, black_box(nonce)));
            }
        }
        hashes.fetch_add(u64::from(CHUNK), Ordering::Relaxed);
        black_box(generation.load(Ordering::Relaxed));
        first = first.checked_add(CHUNK).filter(|f| *f <= u32::MAX - CHUNK).unwrap_or(0);
    }
    hashes.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Runs `compress_block` for about `duration`; returns compressions/s.
fn compress_rate(duration: Duration) -> f64 {
    let block = [0x5a; 64];
    let mut state = [0u32; 8];
    let mut done = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        for _ in 0..CHUNK {
            pow::compress_block(&mut state, black_box(&block));
        }
        done += u64::from(CHUNK);
    }
    black_box(state);
    done as f64 / start.elapsed().as_secs_f64()
}

/// Runs `compress_block` on a fresh state and a block that changes every time (as
/// a miner's do) for about `duration`; returns compressions/s. A reference only:
/// unlike the chained loop it cannot overlap one block's message schedule with the
/// previous block's rounds.
fn fresh_compress_rate(duration: Duration) -> f64 {
    let mut block = [0x5a; 64];
    let mut done = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        for i in 0..CHUNK {
            block[..4].copy_from_slice(&i.to_le_bytes());
            let mut state = [0x6a09_e667u32; 8];
            pow::compress_block(&mut state, black_box(&block));
            black_box(state);
        }
        done += u64::from(CHUNK);
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let (rounds, round) =
        if measuring { (5, Duration::from_millis(1000)) } else { (1, Duration::from_millis(50)) };
    if !measuring {
        eprintln!("smoke run (no --bench): the numbers below are not measurements");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let (mut miner_one, mut inner, mut compress, mut miner_all) = (0f64, 0f64, 0f64, 0f64);
    let (mut hash_only, mut fresh) = (0f64, 0f64);
    for _ in 0..rounds {
        miner_one = miner_one.max(miner_rate(1, round));
        inner = inner.max(inner_loop_rate(round, true));
        hash_only = hash_only.max(inner_loop_rate(round, false));
        compress = compress.max(compress_rate(round));
        fresh = fresh.max(fresh_compress_rate(round));
        if cores > 1 {
            miner_all = miner_all.max(miner_rate(cores, round));
        }
    }
    let per_pair = compress / 2.0;
    eprintln!("miner hash rate (best of {rounds} interleaved rounds of {round:?}):");
    eprintln!("  SHA-256 compressions/s, 1 thread        {compress:>14.0}");
    eprintln!("  ÷ 2 (one header hash's worth)           {per_pair:>14.0}");
    eprintln!(
        "  Miner, 1 thread: hashes/s               {miner_one:>14.0}  = {:.1} % (target ≥ 85 %)",
        100.0 * miner_one / per_pair
    );
    eprintln!(
        "  inner loop here, 1 thread: hashes/s     {inner:>14.0}  = {:.1} %",
        100.0 * inner / per_pair
    );
    eprintln!(
        "  hash_with alone, 1 thread: hashes/s     {hash_only:>14.0}  = {:.1} %",
        100.0 * hash_only / per_pair
    );
    eprintln!(
        "  reference: compressions/s of changing blocks {fresh:>9.0}; Miner = {:.1} % of its ÷ 2",
        100.0 * miner_one / (fresh / 2.0)
    );
    if cores > 1 {
        eprintln!(
            "  Miner, {cores} threads: hashes/s              {miner_all:>14.0}  = {:.0} per thread, \
             {:.1} % of {cores} × 1 thread",
            miner_all / cores as f64,
            100.0 * miner_all / (miner_one * cores as f64)
        );
    }
}
