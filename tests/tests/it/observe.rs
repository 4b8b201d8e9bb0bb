//! Seeing a network spread over hosts (network namespaces, see
//! `tinychain_tests::netns`): `tinychain-node crawl` from one seed's address,
//! and `tinychain-node topology` over the log files of five hosts through a cut
//! cable, a restart and mining. Tests start with `multihost_`, like those of
//! multihost.rs, and need root the same way.

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
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
    // Who knows whom: the seed knows everyone, and the others know each other too.
    let knows = |id: &str| peers.iter().find(|p| p["id"] == id).expect("a peer")["knows"].clone();
    let seed_knows = knows(&ids[0]);
    assert!(ids[1..].iter().all(|id| seed_knows.get(id.as_str()).is_some()), "{seed_knows}");
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
