//! One node process: crash safety under SIGKILL, clean restarts, the directory lock.

use std::time::Duration;

use tinychain_node::chain::{self, ChainState};
use tinychain_node::store::Store;
use tinychain_node::store::memory::MemoryStore;
use tinychain_node::store::redb::RedbStore;
use tinychain_protocol::params::{Network, Params};
use tinychain_tests::{NodeProcess, REGTEST_ADDRESS, call, regtest_run_args};

const START: Duration = Duration::from_secs(30);

fn run_args(datadir: &str) -> Vec<&str> {
    regtest_run_args(
        datadir,
        &[
            "--mine",
            "--mine-address",
            REGTEST_ADDRESS,
            "--miner-threads",
            "1",
            "--mine-interval",
            "0",
        ],
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
        let hash = stored.hash_at(height).expect("reads").expect("active block");
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

#[test]
fn a_second_signal_during_shutdown_exits_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut node = NodeProcess::start(&run_args(datadir));
    node.wait_for_log("new tip", START);
    // Two signals back to back: the first starts the clean shutdown, the second
    // ends the process before it finishes.
    let pid = node.id().to_string();
    let sent = std::process::Command::new("sh")
        .args(["-c", "kill -INT \"$1\"; kill -TERM \"$1\"", "sh", &pid])
        .status()
        .expect("sh runs");
    assert!(sent.success());
    let (status, log) = node.wait_exit(START);
    assert!(log.contains("second signal: exiting at once"), "{log}");
    assert!(matches!(status.code(), Some(130 | 143)), "{status}: {log}");
    assert!(!log.contains("stopped height="), "{log}");
    // The store is consistent all the same (it is crash-safe), and the lock is free.
    let (height, ..) = inspect(datadir);
    assert!(height > 0);
}

#[test]
fn systemd_hears_ready_and_stopping_and_the_socket_and_lock_are_released() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("binds");
    notify.set_read_timeout(Some(START)).expect("timeout set");
    let receive = || {
        let mut buf = [0u8; 256];
        let n = notify.recv(&mut buf).expect("a notification before the deadline");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut command = std::process::Command::new(tinychain_tests::binary("tinychain-node"));
    command.args(regtest_run_args(datadir, &[])).env("NOTIFY_SOCKET", &notify_path);
    let mut node = NodeProcess::spawn(command);
    assert_eq!(receive(), "READY=1");
    // Ready means the RPC socket answers.
    let socket = dir.path().join("regtest").join("rpc.sock");
    assert!(socket.exists());
    node.wait_for_log("RPC listening", START);
    let status = node.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert_eq!(receive(), "STOPPING=1");
    assert!(!socket.exists(), "the socket is removed");
    // The lock is released: a new node takes the directory at once.
    let mut again = NodeProcess::start(&regtest_run_args(datadir, &[]));
    again.wait_for_log("node started", START);
    assert!(again.terminate(Duration::from_secs(10)).success());
}

#[test]
fn json_logs_carry_fields_and_a_bad_config_key_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut node = NodeProcess::start(&regtest_run_args(
        datadir,
        &[
            "--log-format",
            "json",
            "--mine",
            "--mine-address",
            REGTEST_ADDRESS,
            "--miner-threads",
            "1",
            "--mine-interval",
            "0",
        ],
    ));
    let line = node.wait_for_log("\"new tip\"", START);
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(event["message"], "new tip");
    assert!(event["height"].as_u64().is_some(), "{line}");
    assert_eq!(event["hash"].as_str().map(str::len), Some(64), "{line}");
    assert!(node.terminate(Duration::from_secs(10)).success());

    let config = dir.path().join("node.toml");
    std::fs::write(&config, "network = \"regtest\"\n[mining]\nthreds = 2\n").expect("writes");
    let config = config.to_str().expect("utf-8");
    let out = tinychain_tests::run_node(&["run", "--datadir", datadir, "--config", config]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(config) && stderr.contains("threds"), "{stderr}");
}

#[test]
fn a_resting_miner_waits_its_interval_between_blocks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut command = std::process::Command::new(tinychain_tests::binary("tinychain-node"));
    command
        .args(regtest_run_args(
            datadir,
            &["--mine", "--mine-address", REGTEST_ADDRESS, "--miner-threads", "1"],
        ))
        .env("TINYCHAIN_MINING_MIN_INTERVAL_MS", "700");
    let mut node = NodeProcess::spawn(command);
    node.wait_for_log("new tip", START);
    let first = std::time::Instant::now();
    node.wait_for_new_log("new tip", START);
    node.wait_for_new_log("new tip", START);
    // Two rests at least between the first block and the third; a loaded
    // machine only makes it longer. (Unrested, regtest mines hundreds a second.)
    assert!(first.elapsed() >= Duration::from_millis(1400), "{:?}", first.elapsed());
    assert!(node.terminate(Duration::from_secs(10)).success());
}

#[test]
fn the_metrics_flag_serves_prometheus_text_on_the_address_it_logs() {
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut node = NodeProcess::start(&regtest_run_args(
        datadir,
        &["--log-format", "json", "--metrics", "127.0.0.1:0"],
    ));
    let line = node.wait_for_log("\"metrics listening\"", START);
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    let address = event["address"].as_str().expect("the bound address").to_owned();
    let info = tinychain_tests::wait_until("getnetworkinfo", START, || {
        tinychain_tests::call(datadir, "getnetworkinfo", &[]).ok()
    });
    assert_eq!(info["metrics"].as_str(), Some(address.as_str()));

    let addr: std::net::SocketAddr = address.parse().expect("a socket address");
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(START)).expect("a timeout");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("sends");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("\ntinychain_chain_height 0\n"), "{response}");
    assert!(response.ends_with("# EOF\n"), "{response}");
    assert!(node.terminate(Duration::from_secs(10)).success());
    assert!(std::net::TcpStream::connect(addr).is_err(), "the endpoint outlived its node");
}

#[test]
fn a_closed_log_pipe_never_stops_the_node() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut child = std::process::Command::new(tinychain_tests::binary("tinychain-node"))
        .args(regtest_run_args(datadir, &[]))
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tinychain-node starts");
    let mut log = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut line = String::new();
    while !line.contains("RPC listening") {
        line.clear();
        assert!(log.read_line(&mut line).expect("reads the log") > 0, "the log ended early");
    }
    // `| head` exits: the node's stderr is a pipe with no reader from now on.
    drop(log);
    // Every call and every new block logs lines into the closed pipe.
    let hashes = tinychain_tests::call(datadir, "generatetoaddress", &["5", REGTEST_ADDRESS])
        .expect("the node answers after its log closed");
    assert_eq!(hashes.as_array().map(Vec::len), Some(5));
    let info = tinychain_tests::call(datadir, "getblockchaininfo", &[]).expect("answers");
    assert_eq!(info["blocks"], 5);
    assert!(child.try_wait().expect("wait works").is_none(), "the node exited");
    tinychain_tests::call(datadir, "stop", &[]).expect("stops");
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            break status;
        }
        assert!(std::time::Instant::now() < end, "the node did not stop");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    // The store is consistent, at the height it reached.
    assert_eq!(inspect(datadir).0, 5);
}

#[test]
fn the_miner_waits_for_the_clock_instead_of_mining_blocks_too_far_ahead() {
    use tinychain_protocol::block::{Block, BlockHeader};
    use tinychain_protocol::merkle::block_merkle_root;
    use tinychain_protocol::validation::block_subsidy;

    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut node = NodeProcess::start(&regtest_run_args(datadir, &[]));
    node.wait_for_log("RPC listening", START);
    // A block at the future limit puts the median time past there (with genesis).
    let params = Params::new(Network::Regtest);
    let genesis = params.genesis_block();
    let now = u32::try_from(tinychain_node::node::unix_now()).expect("fits");
    let pay_to = "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r"
        .parse::<tinychain_protocol::keys::Address>()
        .expect("an address")
        .pubkey_hash();
    let txdata = vec![tinychain_node::template::coinbase(1, 0, pay_to, block_subsidy(1, &params))];
    let mut block = Block {
        header: BlockHeader {
            version: 1,
            prev_blockhash: genesis.block_hash(),
            merkle_root: block_merkle_root(&txdata).root,
            time: now + params.max_future_block_time,
            bits: genesis.header.bits,
            nonce: 0,
        },
        txdata,
    };
    let target = block.header.bits.to_target().expect("valid bits");
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce += 1;
    }
    let hex: String = block.encode().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(tinychain_tests::call(datadir, "submitblock", &[&hex]), Ok(serde_json::Value::Null));
    tinychain_tests::call(datadir, "setmining", &["true", REGTEST_ADDRESS]).expect("mines");
    let waits = node.wait_for_log("mining waits", START);
    assert!(waits.contains("limit_s=7200"), "{waits}");
    // The real clock, not the limit (nor a time ahead of it) is called now.
    let logged_now: u64 = waits
        .split_whitespace()
        .find_map(|w| w.strip_prefix("now="))
        .and_then(|n| n.parse().ok())
        .expect("now is logged");
    assert!(logged_now.abs_diff(u64::from(now)) < 60, "{waits}");
    // It resumes once the clock allows, and its block is accepted.
    node.wait_for_new_log("mining resumes", START);
    node.wait_for_new_log("new tip", START);
    assert!(!node.log_text().contains("own block not accepted"), "{}", node.log_text());
    assert_eq!(node.log_text().matches("mining waits").count(), 1, "said once");
    assert!(node.terminate(Duration::from_secs(10)).success());
}

#[test]
fn the_log_file_gets_every_line_and_each_line_names_its_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let file = dir.path().join("node.log");
    let file_arg = file.to_str().expect("utf-8");
    let json = ["--log-format", "json", "--log-file", file_arg, "--log-name", "alpha"];
    let mut node = NodeProcess::start(&regtest_run_args(datadir, &json));
    let started = node.wait_for_event("node started", START, |_| true);
    let id = started["peer_id"].as_str().expect("a peer id").to_string();
    node.wait_for_event("listening", START, |_| true);
    let (status, stderr) = node.terminate_with_log(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let written = std::fs::read_to_string(&file).expect("the log file");
    assert_eq!(written.lines().collect::<Vec<_>>(), stderr.lines().collect::<Vec<_>>());
    for line in written.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(
            (event["node"].as_str(), event["node_name"].as_str()),
            (Some(&*id), Some("alpha"))
        );
        let timestamp = event["timestamp"].as_str().expect("a timestamp");
        assert!(timestamp.ends_with('Z'), "{line}");
    }
    let listening = written.lines().find(|l| l.contains("\"listening\"")).expect("listening");
    let listening: serde_json::Value = serde_json::from_str(listening).expect("JSON");
    assert!(listening["address"].as_str().is_some_and(|a| a.ends_with(&format!("/p2p/{id}"))));

    // A second run, in text, appends to the file; its lines name the node too.
    let mut node = NodeProcess::start(&regtest_run_args(datadir, &["--log-file", file_arg]));
    node.wait_for_log("node started", START);
    assert!(node.terminate(Duration::from_secs(10)).success());
    let again = std::fs::read_to_string(&file).expect("the log file");
    assert!(again.starts_with(&written), "appended, the first run's lines kept");
    let text = &again[written.len()..];
    assert!(
        text.lines().count() > 2 && text.lines().all(|l| l.ends_with(&format!("node={id}"))),
        "{text}"
    );
}

/// A regtest node serving `blocks` generated blocks, and its (height, tip).
fn serving_seed(datadir: &str, blocks: &str) -> (NodeProcess, u64, String) {
    let mut seed = NodeProcess::start(&regtest_run_args(datadir, &[]));
    seed.wait_for_log("node started", START);
    call(datadir, "generatetoaddress", &[blocks, REGTEST_ADDRESS]).expect("mines");
    let height = call(datadir, "getblockcount", &[]).expect("height").as_u64().expect("a number");
    let tip = call(datadir, "getbestblockhash", &[]).expect("tip");
    (seed, height, tip.as_str().expect("a hash").to_owned())
}

/// A syncing node on `seed`, logging each new tip and each flush of its UTXO cache.
fn syncer(datadir: &str, seed: &str) -> NodeProcess {
    let args = regtest_run_args(datadir, &["--bootstrap", seed]);
    let mut command = std::process::Command::new(tinychain_tests::binary("tinychain-node"));
    command
        .args(args)
        .env("RUST_LOG", "info,tinychain_node::node=debug,tinychain_node::store=debug");
    NodeProcess::spawn(command)
}

/// Waits for the node's next "new tip" at `height` or above.
fn wait_for_height(node: &mut NodeProcess, height: u32) {
    loop {
        let line = node.wait_for_new_log("new tip", START);
        let at = line.split_whitespace().find_map(|w| w.strip_prefix("height="));
        if at.and_then(|h| h.parse::<u32>().ok()).is_some_and(|h| h >= height) {
            return;
        }
    }
}

/// Initial sync holds the chain state in the UTXO cache between flushes and
/// flushes it in one write as it nears the tip, and at a clean stop. Kills land
/// at random heights during the sync (between flushes: the blocks stored since
/// the last flush are connected again at the restart), as the flush near the
/// tip begins, and as the flush of a clean stop begins (SIGTERM, then SIGKILL
/// once the flush is under way). Each time the stored tip and UTXO digest agree
/// (`inspect` checks the digest) and the stored tip never goes back; the sync
/// then finishes on the seed's tip.
#[test]
fn sigkill_during_initial_sync_and_its_flushes_never_leaves_an_inconsistent_store() {
    let seed_dir = tempfile::tempdir().expect("temp dir");
    let seed_datadir = seed_dir.path().to_str().expect("utf-8 temp path");
    let (mut seed, seed_height, seed_tip) = serving_seed(seed_datadir, "1200");
    seed.wait_for_log("listening address=", START);
    let seed_addr = seed.listen_address();
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8 temp path");
    let mut rng = 0xf1a5_u64;
    let mut last_height = 0;
    let check = |i: usize, last_height: &mut u32| {
        let inspected = tinychain_tests::inspect(datadir);
        assert!(
            inspected.height >= *last_height,
            "kill {i}: the stored tip went back from {last_height} to {}",
            inspected.height
        );
        *last_height = inspected.height;
    };
    // Between flushes, at random heights of the sync.
    for i in 0..5 {
        let mut node = syncer(datadir, &seed_addr);
        wait_for_height(&mut node, 1 + (next(&mut rng) % 1100) as u32);
        node.kill();
        check(i, &mut last_height);
    }
    // As the flush of a clean stop begins, in the middle of the sync.
    let mut node = syncer(datadir, &seed_addr);
    if last_height < 1100 {
        wait_for_height(&mut node, 1100);
    } else {
        node.wait_for_log("node started", START);
    }
    let pid = node.id().to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(status.expect("kill runs").success());
    node.wait_for_new_log("flushing the coins cache", START);
    node.kill();
    check(5, &mut last_height);
    // As the flush near the tip begins (if the sync has not got there yet).
    if u64::from(last_height) + 16 < seed_height {
        let mut node = syncer(datadir, &seed_addr);
        wait_for_height(&mut node, u32::try_from(seed_height).expect("small") - 16);
        node.wait_for_new_log("flushing the coins cache", START);
        node.kill();
        check(6, &mut last_height);
    }
    eprintln!("kills done; stored height {last_height}");
    let node = syncer(datadir, &seed_addr);
    tinychain_tests::wait_until("the sync to reach the seed's tip", START, || {
        let tip = call(datadir, "getbestblockhash", &[]).ok()?;
        (tip.as_str() == Some(seed_tip.as_str())).then_some(())
    });
    assert!(node.terminate(Duration::from_secs(10)).success());
    let synced = tinychain_tests::inspect(datadir);
    assert_eq!((u64::from(synced.height), synced.tip), (seed_height, seed_tip));
    seed.kill();
}
