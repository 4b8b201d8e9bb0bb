//! Several node processes on 127.0.0.1: gossip along a line, catch-up sync, wrong networks.

use std::time::Duration;

use tinychain_tests::{NodeProcess, REGTEST_ADDRESS, inspect, regtest_run_args};

const DEADLINE: Duration = Duration::from_secs(60);

/// Starts a regtest node on an ephemeral port and returns it with its full listen multiaddr.
fn start(datadir: &str, extra: &[&str]) -> (NodeProcess, String) {
    let args = regtest_run_args(datadir, extra);
    let mut node = NodeProcess::start(&args);
    let line = node.wait_for_log("listening address=", DEADLINE);
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("address="))
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_string();
    (node, addr)
}

/// Starts a regtest node with JSON logs; returns it with its full listen multiaddr.
fn start_json(datadir: &str, extra: &[&str]) -> (NodeProcess, String) {
    let mut args = vec!["--log-format", "json"];
    args.extend_from_slice(extra);
    let mut node = NodeProcess::start(&regtest_run_args(datadir, &args));
    let listening = node.wait_for_event("listening", DEADLINE, |_| true);
    let addr = listening["address"].as_str().expect("an address").to_string();
    (node, addr)
}

/// The peer id at the end of a `/p2p/` multiaddr.
fn peer_of(addr: &str) -> String {
    addr.rsplit('/').next().expect("a /p2p/ suffix").to_string()
}

fn inspect_tip(datadir: &str) -> (u32, String) {
    let inspected = inspect(datadir);
    (inspected.height, inspected.tip)
}

#[test]
fn blocks_mined_at_one_end_of_a_line_reach_the_other_and_a_late_node_catches_up() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let path = |i: usize| dirs[i].path().to_str().expect("utf-8").to_string();
    let (a_dir, b_dir, c_dir, d_dir) = (path(0), path(1), path(2), path(3));

    // A line: miner A — B — C. Each knows only its neighbour.
    let (mut a, a_addr) = start(
        &a_dir,
        &[
            "--mine",
            "--mine-address",
            REGTEST_ADDRESS,
            "--miner-threads",
            "1",
            "--mine-interval",
            "0",
        ],
    );
    let (mut b, b_addr) = start(&b_dir, &["--bootstrap", &a_addr]);
    let (mut c, _) = start(&c_dir, &["--bootstrap", &b_addr]);
    b.wait_for_log("connection established", DEADLINE);
    c.wait_for_log("connection established", DEADLINE);
    // Let A mine a while, then stop it and look at its final tip.
    for _ in 0..30 {
        a.wait_for_new_log("new tip", DEADLINE);
    }
    assert!(a.terminate(Duration::from_secs(10)).success());
    let (a_height, a_tip) = inspect_tip(&a_dir);
    // A comes back, not mining, at the same address: B re-dials it, and blocks
    // still in flight when A stopped are synced.
    let a_listen = a_addr.split("/p2p/").next().expect("a multiaddr").to_string();
    let (_a, _) = start(&a_dir, &["--listen", &a_listen]);
    // B and C reach A's last block (through gossip or sync).
    b.wait_for_log(&format!("hash={a_tip}"), DEADLINE);
    c.wait_for_log(&format!("hash={a_tip}"), DEADLINE);

    // A late node D, knowing only C, downloads the whole chain.
    let (mut d, _) = start(&d_dir, &["--bootstrap", &c.listen_address()]);
    d.wait_for_log(&format!("hash={a_tip}"), DEADLINE);
    for node in [b, c, d] {
        assert!(node.terminate(Duration::from_secs(10)).success());
    }
    for dir in [&b_dir, &c_dir, &d_dir] {
        assert_eq!(inspect_tip(dir), (a_height, a_tip.clone()));
    }
}

#[test]
fn a_node_of_another_network_is_refused() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let (a_dir, b_dir) = (
        dirs[0].path().to_str().expect("utf-8").to_string(),
        dirs[1].path().to_str().expect("utf-8").to_string(),
    );
    let (mut a, a_addr) = start(&a_dir, &[]);
    let args = [
        "run",
        "--datadir",
        &b_dir,
        "--network",
        "test",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        &a_addr,
    ];
    let mut b = NodeProcess::start(&args);
    // Whichever side reads the other's identify first bans (or, for a bootstrap
    // peer, drops) the other; the other may then never hear back.
    let end = std::time::Instant::now() + DEADLINE;
    let refused = loop {
        let step = Duration::from_millis(100);
        if let Some(line) = a.poll_log("another network", step) {
            break line;
        }
        if let Some(line) = b.poll_log("another network", step) {
            break line;
        }
        assert!(
            std::time::Instant::now() < end,
            "neither node refused the other:\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
    };
    // B bans A, or A (B's bootstrap peer, never banned) is dropped by B.
    assert!(
        refused.contains("peer banned") || refused.contains("bootstrap peer disconnected"),
        "{refused}"
    );
}

#[test]
fn a_node_that_knows_only_the_seed_discovers_the_others() {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let path = |i: usize| dirs[i].path().to_str().expect("utf-8").to_string();
    let (seed, seed_addr) = start(&path(0), &[]);
    let mut others = Vec::new();
    for i in 1..4 {
        others.push(start(&path(i), &["--bootstrap", &seed_addr]));
    }
    let (mut e, _) = start(&path(4), &["--bootstrap", &seed_addr]);
    // E learns B, C and D from the seed (identify → Kademlia) and connects to them.
    for (_, addr) in &others {
        let peer_id = addr.rsplit('/').next().expect("a /p2p/ suffix");
        e.wait_for_log(&format!("connection established peer={peer_id}"), DEADLINE);
    }
    drop(seed);
}

#[test]
fn mdns_is_opt_in_and_a_build_without_it_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8");
    let out = tinychain_tests::run_node(&regtest_run_args(datadir, &["--mdns"]));
    assert!(!out.status.success(), "a build without the mdns feature refuses --mdns");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--features mdns"), "{stderr}");
}

#[test]
fn a_clean_stop_and_a_crash_read_differently_in_both_logs() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let path = |i: usize| dirs[i].path().to_str().expect("utf-8").to_string();
    let (mut a, a_addr) = start_json(&path(0), &[]);
    let (mut b, b_addr) = start_json(&path(1), &["--bootstrap", &a_addr]);
    let (a_id, b_id) = (peer_of(&a_addr), peer_of(&b_addr));
    let first = a.wait_for_event("connection established", DEADLINE, |e| e["peer"] == b_id);
    b.wait_for_event("connection established", DEADLINE, |e| e["peer"] == a_id);

    // B stops cleanly: it logs closing its connection before it stops, and A
    // reads a goodbye.
    let (status, log) = b.terminate_with_log(DEADLINE);
    assert!(status.success(), "{status}");
    let events: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    assert!(events.iter().all(|e| e["node"] == b_id), "every line of B names B:\n{log}");
    let position = |what: &dyn Fn(&serde_json::Value) -> bool| {
        events.iter().position(what).unwrap_or_else(|| panic!("not in B's log:\n{log}"))
    };
    let closed = position(&|e| {
        e["message"] == "connection closed"
            && e["peer"] == a_id
            && e["reason"] == "we closed: shutting down"
    });
    assert!(closed < position(&|e| e["message"] == "stopped"), "{log}");
    let read = a.wait_for_event("connection closed", DEADLINE, |e| {
        e["connection_id"] == first["connection_id"]
    });
    assert_eq!((&read["reason"], &read["connections_left"]), (&"peer closed".into(), &0.into()));

    // B again, killed this time: A reads an error, not a goodbye.
    let (b, _) = start_json(&path(1), &["--bootstrap", &a_addr]);
    let second = a.wait_for_event("connection established", DEADLINE, |e| {
        e["peer"] == b_id && e["connection_id"] != first["connection_id"]
    });
    b.kill();
    let crashed = a.wait_for_event("connection closed", DEADLINE, |e| {
        e["connection_id"] == second["connection_id"]
    });
    let reason = crashed["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("io error: "), "{crashed}");
    assert!(a.events().iter().all(|e| e["node"] == a_id), "every line of A names A");
}

/// What an operator reads while a miner and a follower run: no warnings (a
/// standalone start, blocks published once, nothing refused), and a peer's
/// status logged once, not once a block.
#[test]
fn a_miner_and_a_follower_log_no_warnings_and_one_status_line_per_peer() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let path = |i: usize| dirs[i].path().to_str().expect("utf-8").to_string();
    let (a_dir, b_dir) = (path(0), path(1));
    let (mut a, a_addr) = start(
        &a_dir,
        &[
            "--mine",
            "--mine-address",
            REGTEST_ADDRESS,
            "--miner-threads",
            "1",
            "--mine-interval",
            "100",
        ],
    );
    let (mut b, _) = start(&b_dir, &["--bootstrap", &a_addr]);
    b.wait_for_log("peer status", DEADLINE);
    // Blocks mined while B is connected reach it by gossip.
    let mut tip = String::new();
    for _ in 0..10 {
        let line = a.wait_for_new_log("new tip", DEADLINE);
        tip = line.split_whitespace().find_map(|w| w.strip_prefix("hash=")).expect("a hash").into();
    }
    b.wait_for_log(&format!("hash={tip}"), DEADLINE);
    // Let both run through a maintenance round (Status to every peer every 10 s).
    a.wait_for_new_log("mining hash_rate", DEADLINE);
    b.wait_for_log(&format!("hash={tip}"), DEADLINE);
    for (name, node) in [("miner", &a), ("follower", &b)] {
        let log = node.log_text();
        let warnings: Vec<&str> =
            log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
        assert!(warnings.is_empty(), "the {name} warned:\n{}", warnings.join("\n"));
        let statuses = log.lines().filter(|l| l.contains("peer status")).count();
        assert!(statuses <= 1, "the {name} logged {statuses} status lines:\n{log}");
    }
    assert!(a.terminate(Duration::from_secs(10)).success());
    assert!(b.terminate(Duration::from_secs(10)).success());
}
