//! Network benchmarks on loopback, with real nodes in one process.
//!
//! 1. Initial block download: a regtest chain of `IBD_BLOCKS` blocks with
//!    `TXS_PER_BLOCK` signed transactions each is built into a store, copied to
//!    three serving nodes, and a fresh fourth node downloads it from them. Its
//!    blocks/s and transactions/s are set beside the rate at which the same
//!    blocks connect into a fresh store with no network in between, one block
//!    per activation, and with every block stored first and then connected in
//!    one activation (runs of blocks whose signatures are checked together).
//! 2. Block propagation: 10 nodes (node i bootstraps from nodes i-1 and
//!    (i-1)/2, then discovery adds more links); node 0 mines blocks of about
//!    1 MB (12 transactions of ~2,700 outputs each, relayed to every mempool
//!    first) and the time until each other node has the block as its tip is
//!    recorded, counted from when node 0 has it as its tip (when it announces
//!    it) and, for reference, from when node 0 was asked to mine it (adding
//!    node 0's own connect); p50/p99 over all rounds and nodes. Empty blocks too.
//!
//! Run with `cargo bench -p tinychain-node --bench p2p`; `cargo bench ... -- quick`
//! runs small sizes, and `-- ibd` or `-- propagation` only one of the two;
//! `-- ibd-full` syncs 400 blocks of 500 one-input transactions, `-- ibd-empty`
//! 10,000 coinbase-only blocks, `-- ibd-long=N` N blocks of 10 transactions.
//! Each IBD run first measures raw k256 verification on every core (the bound)
//! and libsecp256k1's for comparison, and reports the bytes the process wrote
//! (/proc/self/io) and its peak RSS. `TINYCHAIN_BENCH_COINS_CACHE_MB` sets the
//! syncing node's UTXO cache budget (0: none, as before the cache).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tinychain_node::chain::ChainState;
use tinychain_node::core::{BlockOutcome, Core, Source};
use tinychain_node::datadir::DataDir;
use tinychain_node::store::cache::CoinsCache;
use tinychain_node::store::redb::RedbStore;
use tinychain_node::testnet::{LocalNode, local_config};
use tinychain_protocol::keys::PrivateKey;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::sighash::sign_all;
use tinychain_protocol::{Amount, Block, OutPoint, Transaction, TxOut};

const DEADLINE: Duration = Duration::from_secs(600);

fn key() -> PrivateKey {
    let mut bytes = [0; 32];
    bytes[31] = 1;
    PrivateKey::from_bytes(&bytes).expect("a valid scalar")
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

type BenchCore = Core<RedbStore, u32>;

fn open_core(base: &Path) -> (DataDir, BenchCore) {
    let params = Params::new(Network::Regtest);
    let datadir = DataDir::open(base, Network::Regtest).expect("data dir");
    let store = RedbStore::open(&datadir.store_path(), params.genesis_hash()).expect("store");
    let core = Core::open(store, params, Default::default(), unix_now()).expect("core");
    (datadir, core)
}

/// The syncing node's UTXO cache budget: `TINYCHAIN_BENCH_COINS_CACHE_MB`
/// (0: no cache, every batch written as before the cache), else the node's default.
fn coins_cache_bytes() -> usize {
    let mb = std::env::var("TINYCHAIN_BENCH_COINS_CACHE_MB").ok().and_then(|v| v.parse().ok());
    tinychain_node::config::mib(mb.unwrap_or(tinychain_node::store::cache::DEFAULT_BUDGET_MB))
}

/// A chain state on the node's store stack (redb under the UTXO cache, default budget).
fn open_chain(base: &Path) -> (DataDir, ChainState<CoinsCache<RedbStore>>) {
    let params = Params::new(Network::Regtest);
    let datadir = DataDir::open(base, Network::Regtest).expect("data dir");
    let store = RedbStore::open(&datadir.store_path(), params.genesis_hash()).expect("store");
    let chain =
        ChainState::open(CoinsCache::new(store, coins_cache_bytes()), params, Default::default())
            .expect("chain");
    (datadir, chain)
}

fn solve(block: &mut Block) {
    let target = block.header.bits.to_target().expect("valid bits");
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce += 1;
    }
}

/// Builds `blocks` blocks with `txs_per_block` transactions each (every one
/// splits a coin of the key in two).
fn build_chain(core: &mut BenchCore, blocks: u32, txs_per_block: usize) -> Vec<Block> {
    let key = key();
    let pkh = key.public_key().pubkey_hash();
    let maturity = core.chain().params().coinbase_maturity;
    // Regtest does not retarget: one second apart from genesis keeps every
    // block in the past.
    let start_time = u64::from(core.chain().params().genesis_block().header.time);
    let mut coins: std::collections::VecDeque<(OutPoint, TxOut)> = Default::default();
    let mut chain = Vec::with_capacity(blocks as usize);
    for height in 1..=blocks {
        let now = start_time + u64::from(height);
        for _ in 0..txs_per_block {
            let Some((outpoint, spent)) = coins.pop_front() else { break };
            let half = Amount::from_belushis((spent.value.to_belushis() - 400) / 2);
            let outputs = vec![TxOut { value: half, pubkey_hash: pkh }; 2];
            let mut tx = Transaction::spending([outpoint], outputs);
            sign_all(&mut tx, &[spent], &key).expect("signs");
            let txid = tx.txid();
            let (result, _) = core.handle_tx(tx.clone(), None, now).expect("store");
            assert!(result.is_ok(), "{result:?}");
            for vout in 0..2 {
                coins.push_back((OutPoint { txid, vout }, tx.outputs[vout as usize]));
            }
        }
        let mut block = core.block_template(pkh, now).block;
        solve(&mut block);
        let (outcome, _) = core.handle_block(block.clone(), Source::Local, now).expect("store");
        assert_eq!(outcome, BlockOutcome::Accepted);
        if height > maturity {
            let matured: &Block = &chain[(height - maturity - 1) as usize];
            let coinbase = &matured.txdata[0];
            coins.push_back((OutPoint { txid: coinbase.txid(), vout: 0 }, coinbase.outputs[0]));
        }
        chain.push(block);
    }
    chain
}

/// Verifies one k256 signature `n` times on each of `threads` threads; returns verifies/s.
fn k256_rate(threads: usize, n: usize) -> f64 {
    use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
    use k256::ecdsa::{Signature, SigningKey};
    let signing = SigningKey::from_slice(&[7; 32]).expect("a valid scalar");
    let hash = [0x5a; 32];
    let sig: Signature = signing.sign_prehash(&hash).expect("signs");
    let key = *signing.verifying_key();
    let t = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..n {
                    key.verify_prehash(std::hint::black_box(&hash), &sig).expect("valid");
                }
            });
        }
    });
    (threads * n) as f64 / t.elapsed().as_secs_f64()
}

/// The same with libsecp256k1 (the `secp256k1` crate; measured, not used by the node).
fn libsecp_rate(threads: usize, n: usize) -> f64 {
    use secp256k1::{Message, PublicKey, SecretKey, ecdsa};
    let secret = SecretKey::from_secret_bytes([7; 32]).expect("a valid scalar");
    let key = PublicKey::from_secret_key(&secret);
    let msg = Message::from_digest([0x5a; 32]);
    let sig = ecdsa::sign(msg, &secret);
    let t = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                for _ in 0..n {
                    ecdsa::verify(&sig, std::hint::black_box(msg), &key).expect("valid");
                }
            });
        }
    });
    (threads * n) as f64 / t.elapsed().as_secs_f64()
}

/// Bytes this process wrote to storage so far (`write_bytes` of /proc/self/io).
fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines().find_map(|l| l.strip_prefix("write_bytes: ").and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Peak resident memory of this process, in MiB (`VmHWM` of /proc/self/status).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn height(node: &LocalNode) -> u64 {
    node.call("getblockcount", json!([])).ok().and_then(|v| v.as_u64()).unwrap_or(0)
}

fn ibd(rt: &tokio::runtime::Runtime, blocks: u32, txs_per_block: usize) {
    let source = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    let (datadir, mut core) = open_core(source.path());
    let chain = build_chain(&mut core, blocks, txs_per_block);
    let txs: usize = chain.iter().map(|b| b.txdata.len() - 1).sum();
    drop(core);
    drop(datadir);
    eprintln!("ibd: built {blocks} blocks with {txs} transactions in {:.1?}", t.elapsed());

    // The bound: raw k256 verification on every core, measured in this run.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let raw = k256_rate(cores, 20_000);
    let libsecp = libsecp_rate(cores, 20_000);
    eprintln!(
        "ibd: raw verify x {cores} cores: k256 {raw:.0}/s, libsecp256k1 {libsecp:.0}/s \
         ({:.2}x k256)",
        libsecp / raw
    );

    // Baseline: the same blocks connected into a fresh store, no network, the
    // headers first (as a sync has them), through the node's UTXO cache.
    let fresh = tempfile::tempdir().expect("tempdir");
    let (_dir, mut chain_state) = open_chain(fresh.path());
    let headers: Vec<_> = chain.iter().map(|b| b.header).collect();
    let t = Instant::now();
    for run in headers.chunks(2000) {
        chain_state.accept_headers(run, u32::MAX).expect("headers");
    }
    for block in &chain {
        chain_state.accept_block(block, u32::MAX).expect("valid");
        let change = chain_state.activate_best_chain().expect("store");
        assert_eq!(change.connected.len(), 1);
    }
    let local = t.elapsed().as_secs_f64();
    drop(chain_state);
    let local_rate = f64::from(blocks) / local;
    eprintln!(
        "ibd: connect without network: {local:.1} s = {local_rate:.0} blocks/s, {:.0} tx/s",
        txs as f64 / local
    );

    // The same with every block stored first and then connected in one
    // activation: runs of blocks whose signatures are checked together.
    let fresh = tempfile::tempdir().expect("tempdir");
    let (_dir, mut chain_state) = open_chain(fresh.path());
    let t = Instant::now();
    for run in headers.chunks(2000) {
        chain_state.accept_headers(run, u32::MAX).expect("headers");
    }
    for block in &chain {
        chain_state.accept_block(block, u32::MAX).expect("valid");
    }
    let stored = t.elapsed().as_secs_f64();
    let change = chain_state.activate_best_chain().expect("store");
    assert_eq!(change.connected.len(), chain.len());
    let runs = t.elapsed().as_secs_f64();
    drop(chain_state);
    eprintln!(
        "ibd: store all, then connect in runs, no network: {runs:.1} s ({stored:.1} s storing) = \
         {:.0} blocks/s, {:.0} signatures/s = {:.0} % of raw k256 x cores",
        f64::from(blocks) / runs,
        txs as f64 / runs,
        100.0 * txs as f64 / runs / raw
    );

    // Three serving nodes with copies of the chain, and a fresh one syncing.
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let to = dir.path().join("regtest");
        std::fs::create_dir_all(&to).expect("mkdir");
        std::fs::copy(source.path().join("regtest/chain.redb"), to.join("chain.redb"))
            .expect("copy the chain");
        let bootstrap = servers.iter().map(|s: &LocalNode| s.addr.clone()).collect();
        let node = LocalNode::start(
            rt.handle(),
            local_config(dir.path(), Network::Regtest, bootstrap),
            DEADLINE,
        )
        .expect("a server starts");
        servers.push(node);
        dirs.push(dir);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bootstrap = servers.iter().map(|s| s.addr.clone()).collect();
    let written = bytes_written();
    let t = Instant::now();
    let mut config = local_config(dir.path(), Network::Regtest, bootstrap);
    config.coins_cache_bytes = coins_cache_bytes();
    let fresh = LocalNode::start(rt.handle(), config, DEADLINE).expect("the syncing node starts");
    wait_until("initial block download", || height(&fresh) == u64::from(blocks));
    let synced = t.elapsed().as_secs_f64();
    let rate = f64::from(blocks) / synced;
    let peers: Vec<u64> = fresh
        .call("getpeerinfo", json!([]))
        .ok()
        .and_then(|v| serde_json::from_value::<Vec<Value>>(v).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["sync"]["blocks_delivered"].as_u64())
        .collect();
    let written = bytes_written() - written;
    let sigs = txs as f64 / synced;
    eprintln!(
        "ibd: {blocks} blocks from 3 peers in {synced:.1} s = {rate:.0} blocks/s, {sigs:.0} \
         signatures/s = {:.0} % of raw k256 x cores, {:.0} % of connect without network; \
         blocks per peer {peers:?}; {:.0} MiB written (all 4 nodes' process), peak RSS \
         {:.0} MiB (process)",
        100.0 * sigs / raw,
        100.0 * rate / local_rate,
        written as f64 / 1048576.0,
        peak_rss_mib()
    );
    for node in servers.iter().chain([&fresh]) {
        node.stop();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn propagation(rt: &tokio::runtime::Runtime, rounds: usize) {
    let mut nodes: Vec<LocalNode> = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..10usize {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bootstrap = Vec::new();
        if i > 0 {
            bootstrap.push(nodes[i - 1].addr.clone());
            bootstrap.push(nodes[(i - 1) / 2].addr.clone());
        }
        let node = LocalNode::start(
            rt.handle(),
            local_config(dir.path(), Network::Regtest, bootstrap),
            DEADLINE,
        )
        .expect("a node starts");
        nodes.push(node);
        dirs.push(dir);
    }
    // The address of `key()` on regtest.
    let address = "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r".to_owned();
    let txs_per_block = 12;
    let mined: Vec<String> = serde_json::from_value(
        nodes[0]
            .call("generatetoaddress", json!([rounds * txs_per_block + 11, address]))
            .expect("generates"),
    )
    .expect("hashes");
    let tip = mined.last().cloned().expect("blocks");
    for node in &nodes {
        wait_until("the first blocks everywhere", || {
            node.call("getbestblockhash", json!([]))
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                == Some(tip.clone())
        });
    }
    let mut full = Arrivals::default();
    let mut empty = Arrivals::default();
    let mut size = 0;
    for round in 0..rounds {
        // Twelve fat transactions into every mempool, then one block with them.
        for t in 0..txs_per_block {
            let funding = &mined[round * txs_per_block + t];
            let hex = nodes[0].call("getblock", json!([funding, 0])).expect("block");
            let block = Block::decode(&hex::decode(hex.as_str().expect("hex")).expect("hex"))
                .expect("block");
            let coinbase = &block.txdata[0];
            let spent = coinbase.outputs[0];
            let outputs = 2_950u64;
            let fee = 2 * 80_000;
            let each = Amount::from_belushis((spent.value.to_belushis() - fee) / outputs);
            let out = TxOut { value: each, pubkey_hash: spent.pubkey_hash };
            let mut tx = Transaction::spending(
                [OutPoint { txid: coinbase.txid(), vout: 0 }],
                vec![out; outputs as usize],
            );
            sign_all(&mut tx, &[spent], &key()).expect("signs");
            nodes[0]
                .call("sendrawtransaction", json!([hex::encode(tx.encode())]))
                .expect("accepted");
        }
        for node in &nodes {
            wait_until("the transactions everywhere", || {
                node.call("getmempoolinfo", json!([])).ok().and_then(|v| v["size"].as_u64())
                    == Some(txs_per_block as u64)
            });
        }
        time_block(&nodes, &address, &mut full);
        let last = nodes[0].call("getbestblockhash", json!([])).expect("tip");
        size = nodes[0]
            .call("getblock", json!([last, 1]))
            .ok()
            .and_then(|b| b["size"].as_u64())
            .unwrap_or(0);
        time_block(&nodes, &address, &mut empty);
    }
    eprintln!("propagation: the full blocks were {size} B");
    for (name, arrivals) in [("full", &mut full), ("empty", &mut empty)] {
        for (from, samples) in [
            ("node 0 has it as its tip (announces it)", &mut arrivals.from_origin),
            ("node 0 is asked to mine it", &mut arrivals.from_mining),
        ] {
            samples.sort_by(f64::total_cmp);
            eprintln!(
                "propagation of {name} blocks over 10 nodes, from when {from}: {} samples, \
                 p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                samples.len(),
                percentile(samples, 0.5),
                percentile(samples, 0.99),
                samples.last().copied().unwrap_or(0.0)
            );
        }
    }
    for node in &nodes {
        node.stop();
    }
}

/// Milliseconds until each other node had a block as its tip, counted from
/// when node 0 was asked to mine it and from when node 0 had it as its tip
/// (the moment it announces it: propagation proper).
#[derive(Default)]
struct Arrivals {
    from_mining: Vec<f64>,
    from_origin: Vec<f64>,
}

/// Mines one block on node 0 and records when every other node has it as its tip.
fn time_block(nodes: &[LocalNode], address: &str, into: &mut Arrivals) {
    let t = Instant::now();
    let hashes = nodes[0].call("generatetoaddress", json!([1, address])).expect("mined");
    let origin_ms = t.elapsed().as_secs_f64() * 1000.0;
    let hash = hashes[0].as_str().expect("hash").to_owned();
    // One watcher per node: a node busy connecting the block answers its
    // watcher late, but never delays what the others' watchers see. Each keeps
    // one connection open, so watching costs the nodes little CPU.
    let arrived: Vec<f64> = std::thread::scope(|scope| {
        let watchers: Vec<_> = nodes[1..]
            .iter()
            .map(|node| {
                let hash = &hash;
                scope.spawn(move || {
                    let mut client = node.connect().expect("the node's socket");
                    wait_until("the block everywhere", || {
                        client.call::<String>("getbestblockhash", Vec::new()).ok().as_ref()
                            == Some(hash)
                    });
                    t.elapsed().as_secs_f64() * 1000.0
                })
            })
            .collect();
        watchers.into_iter().map(|w| w.join().expect("a watcher")).collect()
    });
    for ms in arrived {
        into.from_mining.push(ms);
        into.from_origin.push((ms - origin_ms).max(0.0));
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick") || !std::env::args().any(|a| a == "--bench");
    // `RUST_LOG=tinychain_node=debug` shows what the nodes do (off by default).
    if let Ok(filter) = std::env::var("RUST_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // `ibd` or `propagation` among the arguments runs only that one.
    let only = |name: &str| {
        let named = |n: &str| std::env::args().any(|a| a == n);
        let any = std::env::args().any(|a| a.starts_with("ibd") || a == "propagation");
        named(name) || !any
    };
    if only("ibd") {
        if quick {
            ibd(&rt, 300, 5);
        } else {
            // The bench chain of issue 19: 10 one-input transactions a block.
            ibd(&rt, 10_000, 10);
        }
    }
    // Fuller blocks (500 one-input transactions) and coinbase-only blocks.
    if std::env::args().any(|a| a == "ibd-full") {
        ibd(&rt, if quick { 20 } else { 400 }, 500);
    }
    if std::env::args().any(|a| a == "ibd-empty") {
        ibd(&rt, if quick { 300 } else { 10_000 }, 0);
    }
    if let Some(n) = std::env::args().find_map(|a| a.strip_prefix("ibd-long=")?.parse().ok()) {
        ibd(&rt, n, 10);
    }
    if only("propagation") {
        propagation(&rt, if quick { 2 } else { 20 });
    }
}
