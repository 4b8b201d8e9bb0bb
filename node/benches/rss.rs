//! Resident memory of the node's chain state as the chain grows.
//!
//! Connects empty regtest blocks (coinbase only, one minute apart) through
//! [`ChainState`] into a [`RedbStore`] in a temporary directory, and prints the
//! process's RSS (`VmRSS` in `/proc/self/status`), the redb file size and the
//! connect rate at 1,000, 10,000, 50,000 and 100,000 blocks. The block count is
//! `TINYCHAIN_BENCH_BLOCKS` (default 100,000), so it can also run short.
//!
//! Then it starts itself again on the finished store and, in that fresh process,
//! reports RSS before and after [`ChainState::open`]: the difference is the block
//! index and active chain the node keeps in memory (every header, by design, as
//! Bitcoin Core does), which it sets against an estimate from the types' sizes.
//!
//! Run with `cargo bench -p tinychain-node --bench rss`; without `--bench` (as
//! `cargo test --benches` runs it) it connects a few hundred blocks as a smoke test.

use std::mem::size_of;
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Instant;

use tinychain_node::chain::{ChainState, Config};
use tinychain_node::store::redb::RedbStore;
use tinychain_node::store::{IndexEntry, Store};
use tinychain_node::template::coinbase;
use tinychain_protocol::block::{Block, BlockHeader};
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::validation::block_subsidy;
use tinychain_protocol::{BlockHash, PubkeyHash};

/// How many blocks to connect.
const BLOCKS_VAR: &str = "TINYCHAIN_BENCH_BLOCKS";
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

fn rss_mib() -> f64 {
    status_kib("VmRSS") as f64 / 1024.0
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// Builds and mines an empty block on the tip, one minute after it.
fn next_block<S: Store>(chain: &ChainState<S>) -> Block {
    let tip = chain.tip();
    let ctx = chain.context_after(&tip, NOW).expect("the tip is indexed");
    let reward = block_subsidy(ctx.height, chain.params());
    let txdata = vec![coinbase(ctx.height, 0, PubkeyHash::from_byte_array([7; 20]), reward)];
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_blockhash: tip,
            merkle_root: block_merkle_root(&txdata).root,
            time: (chain.tip_entry().header.time + 60).max(ctx.median_time_past + 1),
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

/// Estimates the bytes the block index and active chain hold per block, from the
/// types' sizes: each map's (key, value) slot plus hashbrown's control byte, the
/// heap buffer of each parent's children list (a first push allocates room for
/// 4 hashes) with malloc's 16-byte header, and the active chain's 32-byte entry.
/// Hash tables at a load factor between 7/16 and 7/8 cost up to 2× this.
fn index_bytes_per_block() -> (usize, [(&'static str, usize); 4]) {
    let hash = size_of::<BlockHash>();
    let parts = [
        ("entries: HashMap<BlockHash, IndexEntry>", hash + size_of::<IndexEntry>() + 1),
        (
            "children: HashMap<BlockHash, Vec<BlockHash>>",
            hash + size_of::<Vec<BlockHash>>() + 1 + 4 * hash + 16,
        ),
        ("linked: HashSet<BlockHash>", hash + 1),
        ("active: Vec<BlockHash>", hash),
    ];
    (parts.iter().map(|(_, b)| b).sum(), parts)
}

/// In the child process: opens the finished store and reports what each step of
/// opening the chain state costs. Reading the index table first, on its own, puts
/// its pages in redb's cache, so the last step shows the in-memory index alone.
fn reopen(path: &Path) {
    let params = Params::new(Network::Regtest);
    let before = rss_mib();
    let store = RedbStore::open(path, params.genesis_hash()).expect("the finished store opens");
    let opened = rss_mib();
    let entries = store.load_index().expect("the index table reads");
    let blocks = entries.len();
    let listed = rss_mib();
    drop(entries);
    let cached = rss_mib();
    let chain = ChainState::open(store, params, config()).expect("the finished chain opens");
    let loaded = rss_mib();
    let per_block = (loaded - cached) * 1024.0 * 1024.0 / blocks as f64;
    eprintln!("fresh process, reopening the store of {blocks} blocks:");
    eprintln!("  RSS before opening                          {before:>8.1} MiB");
    eprintln!("  after RedbStore::open                       {opened:>8.1} MiB");
    eprintln!("  with Store::load_index's entry list         {listed:>8.1} MiB");
    eprintln!("  list dropped (index pages in redb's cache)  {cached:>8.1} MiB");
    eprintln!(
        "  after ChainState::open                      {loaded:>8.1} MiB  (+{:.1} MiB, {per_block:.0} B/block)",
        loaded - cached
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
    let store = RedbStore::open(&path, params.genesis_hash()).expect("a new redb store opens");
    let mut chain = ChainState::open(store, params, config()).expect("a new store opens");

    eprintln!("connecting {blocks} empty regtest blocks into redb ({BLOCKS_VAR} to change)");
    eprintln!(
        "  RSS at start: {start_rss:.1} MiB; after opening the new store: {:.1} MiB",
        rss_mib()
    );
    eprintln!(
        "  {:>8} {:>9} {:>13} {:>9} {:>14} {:>10}",
        "blocks", "RSS MiB", "vs 1st row", "redb MiB", "blocks/s (seg)", "blocks/s"
    );
    let (started, mut segment_start, mut segment_from) = (Instant::now(), Instant::now(), 0u32);
    let mut first_rss = None;
    for height in 1..=blocks {
        let block = next_block(&chain);
        chain.accept_block(&block, NOW).expect("the bench's blocks are valid");
        let change = chain.activate_best_chain().expect("the store works");
        assert_eq!(change.connected.len(), 1, "block {height} connects");
        if checkpoints.contains(&height) {
            let rss = rss_mib();
            let baseline = *first_rss.get_or_insert(rss);
            let segment = f64::from(height - segment_from) / segment_start.elapsed().as_secs_f64();
            let overall = f64::from(height) / started.elapsed().as_secs_f64();
            eprintln!(
                "  {height:>8} {rss:>9.1} {:>12.1}% {:>9.1} {segment:>14.0} {overall:>10.0}",
                100.0 * (rss - baseline) / baseline,
                file_mib(&path)
            );
            (segment_start, segment_from) = (Instant::now(), height);
        }
    }
    drop(chain);

    let (per_block, parts) = index_bytes_per_block();
    eprintln!();
    eprintln!("estimated block index + active chain, per block (from type sizes):");
    for (name, bytes) in parts {
        eprintln!("  {name:<46} {bytes:>5} B");
    }
    eprintln!(
        "  total {per_block} B/block (up to 2× with hash-table slack): {:.1} to {:.1} MiB at {blocks} blocks",
        f64::from(blocks) * per_block as f64 / (1024.0 * 1024.0),
        f64::from(blocks) * 2.0 * per_block as f64 / (1024.0 * 1024.0),
    );
    eprintln!();

    let exe = std::env::current_exe().expect("the bench knows its own path");
    let status = std::process::Command::new(exe)
        .env(REOPEN_VAR, &path)
        .status()
        .expect("the bench starts itself again");
    assert!(status.success(), "the reopen process failed: {status}");
}
