//! One node process: crash safety under SIGKILL, clean restarts, the directory lock.

use std::time::Duration;

use tinychain_node::chain::{self, ChainState};
use tinychain_node::store::Store;
use tinychain_node::store::memory::MemoryStore;
use tinychain_node::store::redb::RedbStore;
use tinychain_protocol::params::{Network, Params};
use tinychain_tests::{NodeProcess, REGTEST_ADDRESS, regtest_run_args};

const START: Duration = Duration::from_secs(30);

fn run_args(datadir: &str) -> Vec<&str> {
    regtest_run_args(
        datadir,
        &["--mine", "--mine-address", REGTEST_ADDRESS, "--miner-threads", "1"],
    )
}

/// (height, tip, UTXO digest) of a stopped node's data directory.
fn inspect(datadir: &str) -> (u32, String, String) {
    let inspected = tinychain_tests::inspect(datadir);
    (inspected.height, inspected.tip, inspected.utxo_digest)
}

/// xorshift64*, so the kill points replay exactly for a seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn sigkill_at_random_points_never_leaves_an_inconsistent_store() {
    let iterations: usize =
        std::env::var("CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut rng = 0x5eed_u64;
    let mut last_height = 0;
    for i in 0..iterations {
        let mut node = NodeProcess::start(&run_args(datadir));
        // Let it connect a random number of blocks, then kill it while it mines and
        // writes the next ones: the kill lands at a random point of a write.
        let blocks = 1 + next(&mut rng) % 20;
        for _ in 0..blocks {
            node.wait_for_new_log("new tip", START);
        }
        node.kill();
        let (height, tip, _) = inspect(datadir);
        assert!(
            height >= last_height,
            "iteration {i}: height went back from {last_height} to {height}"
        );
        assert_eq!(tip.len(), 64);
        last_height = height;
    }
    assert!(last_height > 0, "the node mined nothing in {iterations} runs");
    eprintln!("{iterations} kills; final height {last_height}");

    // Replay the stored active chain into a fresh in-memory chain: same tip, same UTXO set.
    let params = Params::new(Network::Regtest);
    let store_path = dir.path().join("regtest").join("chain.redb");
    let store = RedbStore::open(&store_path, params.genesis_hash()).expect("store opens");
    let config = chain::Config { verify_utxo_on_start: true, ..Default::default() };
    let stored = ChainState::open(store, params.clone(), config.clone()).expect("consistent");
    let mut replay = ChainState::open(MemoryStore::new(), params, config).expect("opens");
    for height in 1..=stored.height() {
        let hash = stored.hash_at(height).expect("active block");
        let block = stored.store().block(&hash).expect("reads").expect("stored");
        replay.accept_block(&block, u32::MAX).expect("valid");
        replay.activate_best_chain().expect("connects");
    }
    assert_eq!(replay.tip(), stored.tip());
    assert_eq!(replay.utxo_digest(), stored.utxo_digest());
}

#[test]
fn a_second_node_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut first = NodeProcess::start(&run_args(datadir));
    first.wait_for_log("node started", START);
    let second = NodeProcess::start(&run_args(datadir));
    let (status, log) = second.wait_exit(START);
    assert!(!status.success());
    assert!(log.contains("in use by another tinychain-node"), "{log}");
    first.kill();
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_continues_from_the_same_tip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut node = NodeProcess::start(&run_args(datadir));
    node.wait_for_log("new tip", START);
    let status = node.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let (height, tip, digest) = inspect(datadir);
    assert!(height > 0);
    // A restart without mining starts exactly there.
    let mut node = NodeProcess::start(&regtest_run_args(datadir, &[]));
    let started = node.wait_for_log("node started", START);
    assert!(
        started.contains(&format!("height={height}")),
        "expected height {height} in: {started}"
    );
    assert!(started.contains(&tip), "expected tip {tip} in: {started}");
    assert!(node.terminate(Duration::from_secs(10)).success());
    assert_eq!(inspect(datadir), (height, tip, digest));
}
