//! A hostile peer as a process of its own (`hostile-peer`, an independent
//! libp2p client speaking the wire protocol from docs/p2p.md) against a real
//! `tinychain-node` process, while an honest node syncs from it.

use std::time::Duration;

use tinychain_tests::{HostilePeer, NodeProcess, REGTEST_ADDRESS, call, regtest_run_args, summary};

const DEADLINE: Duration = Duration::from_secs(120);

fn start(datadir: &str, extra: &[&str]) -> (NodeProcess, String) {
    let mut node = NodeProcess::start(&regtest_run_args(datadir, extra));
    node.wait_for_log("listening address=", DEADLINE);
    let addr = node.listen_address();
    (node, addr)
}

#[test]
fn a_hostile_process_is_penalised_rate_limited_and_banned_while_an_honest_node_syncs() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let path = |i: usize| dirs[i].path().to_str().expect("utf-8").to_string();
    let (a_dir, b_dir) = (path(0), path(1));
    let (mut a, a_addr) = start(&a_dir, &[]);
    let hashes = call(&a_dir, "generatetoaddress", &["1000", REGTEST_ADDRESS]).expect("mines");
    let tip = hashes.as_array().and_then(|h| h.last()).and_then(|h| h.as_str()).expect("a tip");

    // Every kind of malformed request, from one identity after another, and a
    // flood of valid requests, while an honest node syncs the 1,000 blocks.
    let malformed = HostilePeer::start(&[
        "--connect",
        &a_addr,
        "--attack",
        "malformed",
        "--duration",
        "6",
        "--reconnect",
    ]);
    let flood = HostilePeer::start(&[
        "--connect",
        &a_addr,
        "--attack",
        "flood",
        "--flood-request",
        "block",
        "--duration",
        "4",
    ]);
    let (mut b, _) = start(&b_dir, &["--bootstrap", &a_addr]);
    b.wait_for_log(&format!("sync end height=1000 hash={tip}"), DEADLINE);

    let malformed = malformed.report();
    let flooded = flood.report();
    let m = summary(&malformed);
    assert!(m["dropped"].as_u64() >= Some(2), "banned again and again: {m}");
    let refusals = m["answers"].as_object().expect("answers");
    assert!(
        refusals.keys().any(|k| k.starts_with("refused: malformed request: ")),
        "the requester is told what was wrong: {m}"
    );
    // Two offences ban a peer; the rest of each wave was in flight.
    for per in m["inputs_per_identity"].as_array().expect("a list") {
        assert!(per.as_u64() <= Some(40), "{m}");
    }
    let f = summary(&flooded);
    assert_eq!(f["dropped"], 0, "a flood is not an offence: {f}");
    assert!(f["answers"]["refused: rate limited"].as_u64() > Some(0), "{f}");
    assert!(f["answers"]["blocks"].as_u64() >= Some(100), "the burst is served: {f}");

    let log = a.wait_for_log("peer banned", DEADLINE);
    assert!(log.contains("malformed request"), "{log}");
    // Penalised per kind, with what was wrong.
    a.wait_for_log("reason=\"malformed request: empty request\"", DEADLINE);
    a.wait_for_log("reason=\"malformed request: request over the limit of 65536 bytes\"", DEADLINE);
    assert!(!a.log_text().contains("sync request unanswered"), "the honest node was never stalled");
    // A is still up and serving.
    assert_eq!(call(&a_dir, "getblockcount", &[]).expect("answers"), 1000);
    assert!(call(&a_dir, "getnetworkinfo", &[]).expect("answers")["banned"].as_u64() >= Some(2));
}

#[test]
fn a_process_announcing_another_identify_version_is_banned_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut node, addr) = start(dir.path().to_str().expect("utf-8"), &[]);
    let hostile = HostilePeer::start(&[
        "--connect",
        &addr,
        "--attack",
        "none",
        "--duration",
        "10",
        "--identify-version",
        "ipfs/0.1.0",
    ]);
    let line = node.wait_for_log("peer banned", DEADLINE);
    assert!(
        line.contains(r#"another network (identify protocol version \"ipfs/0.1.0\")"#),
        "{line}"
    );
    // The node cut it: before its gossip subscription reached the peer (the
    // ban follows identify at once), or after.
    let report = hostile.report();
    let refused = report.iter().any(|e| e["event"] == "refused");
    assert!(refused || summary(&report)["dropped"] == 1, "{report:?}");
}
