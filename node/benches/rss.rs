//! Resident memory of the node's chain state as the chain grows.
//!
//! Connects empty regtest blocks (coinbase only, one minute apart) through
//! [`ChainState`] into a [`RedbStore`] under the node's UTXO cache (budget
//! `TINYCHAIN_BENCH_COINS_CACHE_MB`, default the node's), headers first as in a
//! sync, in a temporary directory, and prints the process's RSS (`VmRSS` in
//! `/proc/self/status`), what the UTXO cache holds and the RSS outside it, the
//! redb file size, the
//! block index entries held in memory and the connect rate at 1,000, 10,000,
//! 50,000 and 100,000 blocks. The block count is `TINYCHAIN_BENCH_BLOCKS`
//! (default 100,000), so it can also run short; redb's page cache is
//! `TINYCHAIN_BENCH_CACHE_MB` (default: the node's, `store.cache_mb`). RSS
//! includes that cache, which fills up to its size as the file grows (the
//! default, 1 MiB, is about full at 1,000 blocks): flat means flat once the
//! cache is full, whatever the chain's length.
//!
//! Then it starts itself again on the finished store and, in that fresh process,
//! reports RSS before and after [`ChainState::open`] (which scans the index once
//! and walks the active chain) and how long opening took: the block index and
//! the active chain stay in the store, so the difference must not grow with the
//! chain beyond what redb caches.
//!
//! Run with `cargo bench -p tinychain-node --bench rss`; without `--bench` (as
//! `cargo test --benches` runs it) it connects a few hundred blocks as a smoke test.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Instant;

use tinychain_node::chain::{ChainState, Config};
use tinychain_node::store::Store;
use tinychain_node::store::cache::{CoinsCache, DEFAULT_BUDGET_MB};
use tinychain_node::store::redb::{DEFAULT_CACHE_BYTES, RedbStore};
use tinychain_node::template::coinbase;
use tinychain_protocol::PubkeyHash;
use tinychain_protocol::block::{Block, BlockHeader};
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::validation::block_subsidy;

/// How many blocks to connect.
const BLOCKS_VAR: &str = "TINYCHAIN_BENCH_BLOCKS";
/// redb's page cache in MiB.
const CACHE_VAR: &str = "TINYCHAIN_BENCH_CACHE_MB";
/// The UTXO cache's budget in MiB.
const COINS_VAR: &str = "TINYCHAIN_BENCH_COINS_CACHE_MB";
/// Set (to a store path) in the child process that only reopens the store.
const REOPEN_VAR: &str = "TINYCHAIN_BENCH_REOPEN";
const DEFAULT_BLOCKS: u32 = 100_000;
/// Where RSS is reported (those up to the block count, and the count itself).
const CHECKPOINTS: [u32; 4] = [1_000, 10_000, 50_000, 100_000];
/// A time far enough ahead that no block is "too new".
const NOW: u32 = u32::MAX - 1;

fn config() -> Config {
    Config {
        script_threads: NonZeroUsize::MIN,
        verify_utxo_on_start: false,
        activate_on_start: true,
    }
}

/// Returns a `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux has /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("/proc/self/status has no {field} in kB"))
}

/// Returns the redb page cache to run with, in bytes.
fn cache_bytes() -> usize {
    match std::env::var(CACHE_VAR) {
        Ok(mb) => {
            let mb: usize =
                mb.parse().unwrap_or_else(|_| panic!("{CACHE_VAR} must be MiB, got {mb}"));
            mb * 1024 * 1024
        }
        Err(_) => DEFAULT_CACHE_BYTES,
    }
}

/// Returns the UTXO cache's budget to run with, in bytes (default: the node's).
fn coins_cache_bytes() -> usize {
    let mb = match std::env::var(COINS_VAR) {
        Ok(mb) => mb.parse().unwrap_or_else(|_| panic!("{COINS_VAR} must be MiB, got {mb}")),
        Err(_) => DEFAULT_BUDGET_MB,
    };
    tinychain_node::config::mib(mb)
}

/// Bytes this process wrote to storage (`write_bytes` of /proc/self/io).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines().find_map(|l| l.strip_prefix("write_bytes: ").and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn rss_mib() -> f64 {
    status_kib("VmRSS") as f64 / 1024.0
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// Builds and mines `count` empty blocks on the tip, each one minute after the
/// one before (regtest does not retarget: the tip's required bits hold throughout).
fn build_blocks<S: Store>(chain: &ChainState<S>, count: u32) -> Vec<Block> {
    let ctx = chain.tip_context(NOW);
    let (mut prev, mut time) = (chain.tip(), chain.tip_entry().header.time);
    (0..count)
        .map(|i| {
            let height = ctx.height + i;
            let reward = block_subsidy(height, chain.params());
            let txdata = vec![coinbase(height, 0, PubkeyHash::from_byte_array([7; 20]), reward)];
            time = (time + 60).max(ctx.median_time_past + 1);
            let mut block = Block {
                header: BlockHeader {
                    version: 1,
                    prev_blockhash: prev,
                    merkle_root: block_merkle_root(&txdata).root,
                    time,
                    bits: ctx.required_bits,
                    nonce: 0,
                },
                txdata,
            };
            let target = block.header.bits.to_target().expect("regtest bits decode");
            while !target.is_met_by(block.header.block_hash()) {
                block.header.nonce += 1;
            }
            prev = block.block_hash();
            block
        })
        .collect()
}

/// In the child process: opens the finished store and reports what opening the
/// chain state costs in memory and time.
fn reopen(path: &Path) {
    let params = Params::new(Network::Regtest);
    let before = rss_mib();
    let store = RedbStore::open_with_cache(path, params.genesis_hash(), cache_bytes())
        .expect("the finished store opens");
    let opened = rss_mib();
    let started = Instant::now();
    let chain = ChainState::open(store, params, config()).expect("the finished chain opens");
    let took = started.elapsed();
    let loaded = rss_mib();
    let blocks = chain.index().len();
    let resident = chain.index().resident_len();
    eprintln!("fresh process, reopening the store of {blocks} blocks:");
    eprintln!("  RSS before opening                 {before:>8.1} MiB");
    eprintln!("  after RedbStore::open              {opened:>8.1} MiB");
    eprintln!(
        "  after ChainState::open             {loaded:>8.1} MiB  (+{:.1} MiB in {:.2} s; \
         {resident} index entries in memory)",
        loaded - opened,
        took.as_secs_f64()
    );
    drop(chain);
}

fn main() {
    if let Some(path) = std::env::var_os(REOPEN_VAR) {
        reopen(Path::new(&path));
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    if !measuring {
        eprintln!("smoke run (no --bench): the numbers below are not measurements");
    }
    let blocks: u32 = match std::env::var(BLOCKS_VAR) {
        Ok(n) => {
            n.parse().unwrap_or_else(|_| panic!("{BLOCKS_VAR} must be a block count, got {n:?}"))
        }
        Err(_) if measuring => DEFAULT_BLOCKS,
        Err(_) => 300,
    };
    let mut checkpoints: Vec<u32> = CHECKPOINTS.into_iter().filter(|c| *c < blocks).collect();
    checkpoints.push(blocks);

    let params = Params::new(Network::Regtest);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("chain.redb");
    let start_rss = rss_mib();
    let cache = cache_bytes();
    let store = RedbStore::open_with_cache(&path, params.genesis_hash(), cache)
        .expect("a new redb store opens");
    let coins_budget = coins_cache_bytes();
    let store = CoinsCache::new(store, coins_budget);
    let mut chain = ChainState::open(store, params, config()).expect("a new store opens");
    // As in a sync: every header first, so the chain is far behind its best
    // header and the UTXO cache holds the chain state between flushes.
    let built = build_blocks(&chain, blocks);
    for run in built.chunks(2000) {
        let headers: Vec<_> = run.iter().map(|b| b.header).collect();
        chain.accept_headers(&headers, NOW).expect("the bench's headers are valid");
    }

    eprintln!("connecting {blocks} empty regtest blocks into redb ({BLOCKS_VAR} to change)");
    eprintln!("  redb page cache: {} MiB ({CACHE_VAR} to change)", cache / (1024 * 1024));
    eprintln!(
        "  RSS at start: {start_rss:.1} MiB; after opening the new store: {:.1} MiB",
        rss_mib()
    );
    eprintln!(
        "  {:>8} {:>9} {:>13} {:>9} {:>9} {:>13} {:>9} {:>14} {:>10} {:>9}",
        "blocks",
        "RSS MiB",
        "vs 1st row",
        "cache MiB",
        "outside",
        "vs 1st row",
        "redb MiB",
        "blocks/s (seg)",
        "blocks/s",
        "resident"
    );
    eprintln!("  UTXO cache budget: {} MiB ({COINS_VAR} to change)", coins_budget / (1024 * 1024));
    let (started, mut segment_start, mut segment_from) = (Instant::now(), Instant::now(), 0u32);
    let mut first_rss = None;
    let mut first_outside = None;
    for (block, height) in built.iter().zip(1..) {
        chain.accept_block(block, NOW).expect("the bench's blocks are valid");
        let change = chain.activate_best_chain().expect("the store works");
        assert_eq!(change.connected.len(), 1, "block {height} connects");
        if checkpoints.contains(&height) {
            let rss = rss_mib();
            let baseline = *first_rss.get_or_insert(rss);
            let segment = f64::from(height - segment_from) / segment_start.elapsed().as_secs_f64();
            let overall = f64::from(height) / started.elapsed().as_secs_f64();
            let held = chain.store().bytes() as f64 / (1024.0 * 1024.0);
            let outside = rss - held;
            let outside_base = *first_outside.get_or_insert(outside);
            eprintln!(
                "  {height:>8} {rss:>9.1} {:>12.1}% {held:>9.1} {outside:>9.1} {:>12.1}% {:>9.1} \
                 {segment:>14.0} {overall:>10.0} {:>9}",
                100.0 * (rss - baseline) / baseline,
                100.0 * (outside - outside_base) / outside_base,
                file_mib(&path),
                chain.index().resident_len()
            );
            (segment_start, segment_from) = (Instant::now(), height);
        }
    }
    drop(chain);
    eprintln!("  (resident: block index entries held in memory)");
    eprintln!(
        "  {blocks} blocks in {:.1} s; peak RSS {:.1} MiB; {:.1} MiB written (/proc/self/io)",
        started.elapsed().as_secs_f64(),
        status_kib("VmHWM") as f64 / 1024.0,
        written_bytes() as f64 / (1024.0 * 1024.0)
    );
    eprintln!();

    let exe = std::env::current_exe().expect("the bench knows its own path");
    let status = std::process::Command::new(exe)
        .env(REOPEN_VAR, &path)
        .env(CACHE_VAR, (cache / (1024 * 1024)).to_string())
        .status()
        .expect("the bench starts itself again");
    assert!(status.success(), "the reopen process failed: {status}");
}
