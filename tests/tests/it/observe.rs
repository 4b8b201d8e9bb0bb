//! Seeing a network spread over hosts (network namespaces, see
//! `tinychain_tests::netns`): `tinychain-node crawl` from one seed's address,
//! and `tinychain-node topology` over the log files of five hosts through a cut
//! cable, a restart and mining. Tests start with `multihost_`, like those of
//! multihost.rs, and need root the same way.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;
use tinychain_node::topology::time::Time;
use tinychain_tests::netns::Lab;
use tinychain_tests::{NodeProcess, REGTEST_ADDRESS, binary, call, wait_until};

const DEADLINE: Duration = Duration::from_secs(120);
const PORT: u16 = 19444;

fn path(dir: &TempDir) -> String {
    dir.path().to_str().expect("UTF-8 temp path").to_owned()
}

/// Starts a regtest node on host `i` listening on its LAN address; returns once
/// its RPC socket answers.
fn start(lab: &Lab, dir: &TempDir, i: usize, extra: &[&str]) -> NodeProcess {
    let mut command = lab.command(i, &binary("tinychain-node"));
    let listen = format!("/ip4/{}/tcp/{PORT}", lab.ip(i));
    command.args(["run", "--datadir", &path(dir), "--network", "regtest", "--listen", &listen]);
    command.args(extra);
    let mut node = NodeProcess::spawn(command);
    node.wait_for_log("listening address=", DEADLINE);
    node.wait_for_log("RPC listening", DEADLINE);
    node
}

fn tip(dir: &TempDir) -> Option<(u64, String)> {
    let info = call(&path(dir), "getblockchaininfo", &[]).ok()?;
    Some((info["blocks"].as_u64()?, info["bestblockhash"].as_str()?.to_owned()))
}

fn peer_id(dir: &TempDir) -> String {
    let net = call(&path(dir), "getnetworkinfo", &[]).expect("network info");
    net["peer_id"].as_str().expect("a peer id").to_owned()
}

#[test]
fn multihost_crawl_from_one_seed_finds_all_six_nodes_with_their_heights() {
    // Hosts 0 to 5 run nodes; host 6 runs the crawler, which knows only the seed.
    let Some(lab) = Lab::new(7) else { return };
    let dirs: Vec<TempDir> = (0..6).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let seed = start(&lab, &dirs[0], 0, &[]);
    let seed_addr = seed.listen_address();
    let _others: Vec<NodeProcess> =
        (1..6).map(|i| start(&lab, &dirs[i], i, &["--bootstrap", &seed_addr])).collect();
    let made = call(&path(&dirs[1]), "generatetoaddress", &["5", REGTEST_ADDRESS]).expect("mines");
    let best = made[4].as_str().expect("a hash").to_owned();
    wait_until("every node to have the blocks", DEADLINE, || {
        dirs.iter().all(|d| tip(d).is_some_and(|(_, t)| t == best)).then_some(())
    });
    let ids: Vec<String> = dirs.iter().map(peer_id).collect();
    // Discovery done: the seed has identified all five (so they are in its routing
    // table) and each of them has found another peer besides the seed.
    wait_until("the nodes to find each other", DEADLINE, || {
        let peers = |d: &TempDir| call(&path(d), "getpeerinfo", &[]).ok()?.as_array().cloned();
        let seed_peers = peers(&dirs[0])?;
        let identified = ids[1..]
            .iter()
            .all(|id| seed_peers.iter().any(|p| p["id"] == id.as_str() && p["agent"].is_string()));
        let found = dirs[1..].iter().all(|d| peers(d).is_some_and(|p| p.len() >= 2));
        (identified && found).then_some(())
    });

    let out = lab
        .command(6, &binary("tinychain-node"))
        .args(["crawl", "--network", "regtest", "--bootstrap", &seed_addr, "--timeout", "60"])
        .args(["--format", "json"])
        .output()
        .expect("the crawler runs");
    assert!(out.status.success(), "crawl failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    eprintln!("crawl: {report}");
    assert_eq!(report["finished"], true, "every peer found was visited in time");
    let peers = report["peers"].as_array().expect("peers");
    let mut found: Vec<&str> = peers.iter().filter_map(|p| p["id"].as_str()).collect();
    found.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(found, expected, "all six nodes, and nothing else");
    for p in peers {
        assert_eq!(p["reachable"], true, "{p}");
        assert_eq!(
            (p["height"].as_u64(), p["tip"].as_str()),
            (Some(5), Some(best.as_str())),
            "{p}"
        );
        assert!(p["agent"].as_str().is_some_and(|a| a.starts_with("tinychain-node/")), "{p}");
        let listen = format!(
            "/ip4/{}/tcp/{PORT}",
            lab.ip(ids.iter().position(|i| p["id"] == i.as_str()).expect("a host"))
        );
        assert!(
            p["listen"].as_array().expect("listen").iter().any(|a| a == listen.as_str()),
            "{p}"
        );
    }
    // Who knows whom: every node is in someone's routing table, and the nodes
    // found each other, not only the seed.
    let knows = |id: &str| peers.iter().find(|p| p["id"] == id).expect("a peer")["knows"].clone();
    for id in &ids {
        assert!(ids.iter().any(|k| knows(k).get(id.as_str()).is_some()), "nobody knows {id}");
    }
    assert!(
        ids[1..].iter().any(|id| ids[1..]
            .iter()
            .any(|other| other != id && knows(id).get(other.as_str()).is_some())),
        "the nodes found each other through the seed"
    );
    // The same crawl as text.
    let out = lab
        .command(6, &binary("tinychain-node"))
        .args(["crawl", "--network", "regtest", "--bootstrap", &seed_addr, "--timeout", "60"])
        .output()
        .expect("the crawler runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("6 peers found, 6 reachable"), "{text}");
}

/// The liveness bound the five nodes run with (`--peer-timeout`).
const PEER_TIMEOUT_S: i64 = 5;

fn now() -> Time {
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    Time::from_micros(i64::try_from(micros).expect("a sane clock"))
}

/// Starts node `i` logging JSON to stderr and to `log` (appending), named `n<i>`.
fn start_logged(lab: &Lab, dir: &TempDir, i: usize, log: &Path, extra: &[&str]) -> NodeProcess {
    let mut command = lab.command(i, &binary("tinychain-node"));
    let listen = format!("/ip4/{}/tcp/{PORT}", lab.ip(i));
    command.args(["run", "--datadir", &path(dir), "--network", "regtest", "--listen", &listen]);
    command.args(["--log-format", "json", "--log-name", &format!("n{i}")]);
    command.arg("--log-file").arg(log);
    command.args(["--peer-timeout", &PEER_TIMEOUT_S.to_string()]).args(extra);
    let mut node = NodeProcess::spawn(command);
    node.wait_for_event("listening", DEADLINE, |_| true);
    node.wait_for_event("RPC listening", DEADLINE, |_| true);
    node
}

fn event_time(event: &Value) -> Time {
    event["timestamp"].as_str().and_then(Time::parse).expect("a timestamp")
}

fn wait_all_on(dirs: &[TempDir], best: &str) {
    wait_until("every node to have the blocks", DEADLINE, || {
        dirs.iter().all(|d| tip(d).is_some_and(|(_, t)| t == best)).then_some(())
    });
}

fn mine(dir: &TempDir, n: usize) -> String {
    let made =
        call(&path(dir), "generatetoaddress", &[&n.to_string(), REGTEST_ADDRESS]).expect("mines");
    made[n - 1].as_str().expect("a hash").to_owned()
}

#[test]
fn multihost_topology_of_five_logs_shows_a_cut_link_a_restart_and_every_blocks_spread() {
    let Some(lab) = Lab::new(5) else { return };
    let dirs: Vec<TempDir> = (0..5).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let logs = tempfile::tempdir().expect("temp dir");
    let log = |i: usize| logs.path().join(format!("n{i}.log"));
    let mut nodes = vec![start_logged(&lab, &dirs[0], 0, &log(0), &[])];
    let seed = nodes[0].listen_address();
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        nodes.push(start_logged(&lab, dir, i, &log(i), &["--bootstrap", &seed]));
    }
    let ids: Vec<String> = dirs.iter().map(peer_id).collect();
    wait_until("node 4 to be connected to the seed", DEADLINE, || {
        let peers = call(&path(&dirs[4]), "getpeerinfo", &[]).ok()?;
        peers.as_array()?.iter().any(|p| p["id"] == ids[0].as_str()).then_some(())
    });
    wait_all_on(&dirs, &mine(&dirs[1], 3));

    // Cut the link between the seed and node 4; both ends close it within the bound.
    let cut = now();
    lab.cut(0, 4);
    let closed = [
        nodes[0].wait_for_event("connection closed", DEADLINE, |e| e["peer"] == ids[4].as_str()),
        nodes[4].wait_for_event("connection closed", DEADLINE, |e| e["peer"] == ids[0].as_str()),
    ];
    let first_close = closed.iter().map(event_time).min().expect("two closes");
    // Blocks mined meanwhile still reach both, through the others.
    wait_all_on(&dirs, &mine(&dirs[1], 2));
    let restored = now();
    lab.restore(0, 4);
    nodes[4].wait_for_event("connection established", DEADLINE, |e| {
        e["peer"] == ids[0].as_str() && event_time(e) >= restored
    });
    // Node 2 restarts (a clean stop), then everyone follows three more blocks.
    let node2 = nodes.remove(2);
    assert!(node2.terminate(DEADLINE).success());
    nodes.insert(2, start_logged(&lab, &dirs[2], 2, &log(2), &["--bootstrap", &seed]));
    wait_until("node 2 to have peers again", DEADLINE, || {
        let peers = call(&path(&dirs[2]), "getpeerinfo", &[]).ok()?;
        (peers.as_array()?.len() >= 2).then_some(())
    });
    wait_all_on(&dirs, &mine(&dirs[3], 3));
    let before_stop = now();
    for node in nodes.into_iter().rev() {
        assert!(node.terminate(DEADLINE).success());
    }

    // Everything below comes from the five log files alone.
    let files: Vec<String> = (0..5).map(|i| log(i).to_str().expect("UTF-8").to_owned()).collect();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(binary("tinychain-node"))
            .arg("topology")
            .args(args)
            .args(&files)
            .output()
            .expect("topology runs");
        assert!(out.status.success(), "topology: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let text = run(&[]);
    eprintln!("{text}");
    let model: Value = serde_json::from_str(&run(&["--format", "json"])).expect("JSON");
    let node = |i: usize| {
        model["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == ids[i].as_str()))
            .expect("a node")
            .clone()
    };
    for i in 0..5 {
        assert_eq!(node(i)["name"], format!("n{i}"), "named by --log-name");
    }
    // The restart.
    let n2 = node(2);
    assert_eq!(
        (n2["restarts"].as_u64(), n2["runs"].as_array().map(Vec::len)),
        (Some(1), Some(2)),
        "{n2}"
    );
    assert_eq!(n2["runs"][0]["ended"], "stopped", "a clean stop: {n2}");
    // The cut link's down and up times.
    let (a, b) = if ids[0] < ids[4] { (&ids[0], &ids[4]) } else { (&ids[4], &ids[0]) };
    let link = model["links"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["a"] == a.as_str() && l["b"] == b.as_str()))
        .expect("the seed–node 4 link")
        .clone();
    let changes = link["changes"].as_array().expect("changes");
    let down = changes
        .iter()
        .find(|c| {
            c["up"] == false && c["time"].as_str().and_then(Time::parse).is_some_and(|t| t >= cut)
        })
        .expect("the link went down after the cut");
    let down_at = down["time"].as_str().and_then(Time::parse).expect("a time");
    let after = down_at.seconds_since(cut);
    eprintln!("the cut link went down {after:.1} s after the cut: {down}");
    assert_eq!(down_at, first_close, "the model's down time is the first end's close");
    assert!(
        after >= 0.0 && after <= (3 * PEER_TIMEOUT_S) as f64,
        "within the liveness bound: {after:.1} s"
    );
    let reason = down["reason"].as_str().expect("a reason");
    assert!(reason.contains("ping timeout") || reason.contains("inactivity"), "{reason}");
    let up_again = changes.iter().any(|c| {
        c["up"] == true
            && c["time"]
                .as_str()
                .and_then(Time::parse)
                .is_some_and(|t| t >= restored && t > down_at)
    });
    assert!(up_again, "the link came back after the restore: {changes:?}");
    // Every block's propagation was measured: mined by its origin, had by others.
    let blocks = model["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 8, "{text}");
    for block in blocks {
        assert_eq!(block["mined"], true, "{block}");
        assert!(block["max_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{block}");
    }
    assert_eq!(model["propagation"]["measured"], 8);
    // The graph just before the end: five nodes up, the restored link among the links.
    let dot = run(&["--format", "dot", "--at", &before_stop.to_string()]);
    assert!(!dot.contains("#dddddd"), "every node up:\n{dot}");
    let edge = |x: &str, y: &str| format!("\"{x}\" -> \"{y}\"");
    assert!(
        dot.contains(&edge(&ids[0], &ids[4])) || dot.contains(&edge(&ids[4], &ids[0])),
        "{dot}"
    );
    for i in 0..5 {
        assert!(dot.contains(&format!("label=\"n{i}\\n")), "n{i} in the graph:\n{dot}");
    }
}
