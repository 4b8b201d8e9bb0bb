//! Nodes on separate hosts: each in its own network namespace with its own
//! address on a bridged LAN (see `tinychain_tests::netns`), with cables that can
//! be pulled. Discovery from one seed, two miners and a transaction, a crash
//! and catch-up, a late joiner syncing a long chain, a partition that heals.
//!
//! Needs root (CI runs as root); set `TINYCHAIN_SKIP_MULTIHOST=1` to skip on a
//! machine without network namespaces. Every test starts with `multihost_` so
//! `cargo nextest run -E 'test(multihost_)'` runs just these.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tinychain_protocol::keys::PrivateKey;
use tinychain_protocol::params::Network;
use tinychain_protocol::sighash::sign_all;
use tinychain_protocol::{Amount, OutPoint, Transaction, TxOut};
use tinychain_tests::netns::Lab;
use tinychain_tests::{
    NodeProcess, REGTEST_ADDRESS, binary, call, unix_now, unix_seconds, wait_until,
};

const DEADLINE: Duration = Duration::from_secs(120);
const PORT: u16 = 19444;

/// One host's data directories.
struct Dirs(Vec<TempDir>);

impl Dirs {
    fn new(n: usize) -> Dirs {
        Dirs((0..n).map(|_| tempfile::tempdir().expect("temp dir")).collect())
    }

    fn path(&self, i: usize) -> String {
        self.0[i].path().to_str().expect("utf-8 temp path").to_string()
    }
}

/// Starts a regtest node on host `i`, listening on its LAN address; returns once
/// its RPC socket answers.
fn start(lab: &Lab, dirs: &Dirs, i: usize, extra: &[&str]) -> NodeProcess {
    let mut command = lab.command(i, &binary("tinychain-node"));
    let listen = format!("/ip4/{}/tcp/{PORT}", lab.ip(i));
    command.args(["run", "--datadir", &dirs.path(i), "--network", "regtest", "--listen", &listen]);
    command.args(extra);
    let mut node = NodeProcess::spawn(command);
    node.wait_for_log("listening address=", DEADLINE);
    node.wait_for_log("RPC listening", DEADLINE);
    node
}

/// Starts a node like [`start`], logging JSON.
fn start_json(lab: &Lab, dirs: &Dirs, i: usize, extra: &[&str]) -> NodeProcess {
    let mut command = lab.command(i, &binary("tinychain-node"));
    let listen = format!("/ip4/{}/tcp/{PORT}", lab.ip(i));
    command.args(["run", "--datadir", &dirs.path(i), "--network", "regtest", "--listen", &listen]);
    command.args(["--log-format", "json"]).args(extra);
    let mut node = NodeProcess::spawn(command);
    node.wait_for_event("listening", DEADLINE, |_| true);
    node.wait_for_event("RPC listening", DEADLINE, |_| true);
    node
}

fn info(dirs: &Dirs, i: usize) -> Value {
    call(&dirs.path(i), "getblockchaininfo", &[]).unwrap_or_else(|e| panic!("node {i}: {e}"))
}

fn height(dirs: &Dirs, i: usize) -> u64 {
    info(dirs, i)["blocks"].as_u64().expect("a height")
}

fn peer_id(dirs: &Dirs, i: usize) -> String {
    let net = call(&dirs.path(i), "getnetworkinfo", &[]).expect("network info");
    net["peer_id"].as_str().expect("a peer id").to_string()
}

/// Each node's peers, as host indices (peers outside the lab are left out).
fn peer_graph(dirs: &Dirs, ids: &[String]) -> Vec<BTreeSet<usize>> {
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (&id[..], i)).collect();
    (0..ids.len())
        .map(|i| {
            let peers = call(&dirs.path(i), "getpeerinfo", &[]).expect("peer info");
            peers
                .as_array()
                .expect("a list")
                .iter()
                .filter_map(|p| p["id"].as_str().and_then(|id| index.get(id)).copied())
                .collect()
        })
        .collect()
}

/// Tells whether the nodes in `members` are connected using only edges among them.
fn connected(graph: &[BTreeSet<usize>], members: &[usize]) -> bool {
    let Some(&first) = members.first() else { return true };
    let mut seen = BTreeSet::from([first]);
    let mut todo = vec![first];
    while let Some(n) = todo.pop() {
        for &m in &graph[n] {
            if members.contains(&m) && seen.insert(m) {
                todo.push(m);
            }
        }
    }
    seen.len() == members.len()
}

/// Waits until the nodes `members` agree on the tip and the UTXO digest; returns (height, tip, digest).
fn wait_converged(dirs: &Dirs, members: &[usize], deadline: Duration) -> (u64, String, String) {
    wait_until("the nodes to agree on one tip and UTXO set", deadline, || {
        let infos: Vec<Value> = members.iter().map(|&i| info(dirs, i)).collect();
        let key = |v: &Value| {
            (
                v["blocks"].as_u64().unwrap_or(0),
                v["bestblockhash"].as_str().unwrap_or("").to_string(),
                v["utxo_digest"].as_str().unwrap_or("").to_string(),
            )
        };
        let first = key(&infos[0]);
        infos.iter().all(|v| key(v) == first).then_some(first)
    })
}

/// The regtest address of private key `k`, and the key.
fn key(k: u8) -> (PrivateKey, String) {
    let mut bytes = [0u8; 32];
    bytes[31] = k;
    let key = PrivateKey::from_bytes(&bytes).expect("a valid key");
    let address = key.public_key().address(Network::Regtest).to_string();
    (key, address)
}

#[test]
fn multihost_discovery_from_one_seed_connects_everyone_and_survives_losing_the_seed() {
    let Some(lab) = Lab::new(5) else { return };
    let dirs = Dirs::new(5);
    let seed = start(&lab, &dirs, 0, &[]);
    let seed_addr = seed.listen_address();
    assert!(seed_addr.starts_with(&format!("/ip4/{}/tcp/{PORT}/p2p/", lab.ip(0))), "{seed_addr}");
    let _others: Vec<NodeProcess> =
        (1..5).map(|i| start(&lab, &dirs, i, &["--bootstrap", &seed_addr])).collect();
    let ids: Vec<String> = (0..5).map(|i| peer_id(&dirs, i)).collect();

    // Every node knows only the seed; each ends up with two or more peers, and
    // the four others are connected among themselves, not only through the seed.
    let graph = wait_until("every node to have two peers", DEADLINE, || {
        let graph = peer_graph(&dirs, &ids);
        let ok = graph.iter().all(|p| p.len() >= 2)
            && connected(&graph, &[0, 1, 2, 3, 4])
            && connected(&graph, &[1, 2, 3, 4]);
        ok.then_some(graph)
    });
    eprintln!("topology: {graph:?}");

    // Cut the seed off: blocks made on host 1 still reach every other host.
    lab.unplug(0);
    let made = call(&dirs.path(1), "generatetoaddress", &["5", REGTEST_ADDRESS]).expect("mines");
    let tip = made[4].as_str().expect("a hash").to_string();
    wait_until("the blocks to reach every host but the seed", DEADLINE, || {
        (1..5).all(|i| info(&dirs, i)["bestblockhash"] == tip.as_str()).then_some(())
    });
    assert_eq!(height(&dirs, 0), 0, "the seed, unplugged, saw nothing");
    // Plugged back in, the seed catches up.
    lab.plug(0);
    wait_until("the seed to catch up", DEADLINE, || {
        (info(&dirs, 0)["bestblockhash"] == tip.as_str()).then_some(())
    });
}

#[test]
fn multihost_blocks_of_two_miners_and_a_transaction_reach_every_node() {
    let Some(lab) = Lab::new(5) else { return };
    let dirs = Dirs::new(5);
    let (owner, a1) = key(1);
    let (_, a2) = key(2);
    let (_, a3) = key(3);
    let seed = start(&lab, &dirs, 0, &[]);
    let seed_addr = seed.listen_address();
    let _nodes: Vec<NodeProcess> =
        (1..5).map(|i| start(&lab, &dirs, i, &["--bootstrap", &seed_addr])).collect();
    let all = [0, 1, 2, 3, 4];

    // Two miners, on hosts 1 and 2, take turns: each burst must reach every node
    // (regtest blocks at full speed from two built-in miners on two shared cores
    // would only measure the CPU). generatetoaddress mines like the miner does.
    let mut height = 0;
    for round in 0..4 {
        for (host, address) in [(1, &a1), (2, &a2)] {
            let made = call(&dirs.path(host), "generatetoaddress", &["8", address])
                .unwrap_or_else(|e| panic!("round {round}, host {host}: {e}"));
            let tip = made[7].as_str().expect("a hash").to_string();
            height += 8;
            let (h, t, _) = wait_converged(&dirs, &all, DEADLINE);
            assert_eq!((h, t), (height, tip), "every node follows host {host}'s blocks");
        }
    }
    for i in all {
        for address in [&a1, &a2] {
            let coins = call(&dirs.path(i), "getaddressutxos", &[address]).expect("utxos");
            assert_eq!(coins.as_array().map(Vec::len), Some(32), "host {i}, {address}");
        }
    }

    // Node 4 (host 3) is sent a transaction spending miner 1's first coin.
    let coins = call(&dirs.path(3), "getaddressutxos", &[&a1]).expect("utxos");
    let coin = coins
        .as_array()
        .and_then(|c| c.iter().find(|u| u["mature"] == true))
        .expect("a mature coin")
        .clone();
    let tx = pay(&owner, &coin, &a3, 10_000);
    let txid = tx.txid().to_string();
    let sent = call(&dirs.path(3), "sendrawtransaction", &[&hex_encode(&tx.encode())]);
    assert_eq!(sent.expect("node 4 accepts it"), txid.as_str());
    // It reaches miner 2 by gossip, which mines it; node 1 (host 0) sees it confirmed.
    wait_until("the transaction to reach miner 2's mempool", DEADLINE, || {
        call(&dirs.path(2), "gettransaction", &[&txid]).ok().map(drop)
    });
    call(&dirs.path(2), "generatetoaddress", &["1", &a2]).expect("mines");
    wait_until("the transaction to be confirmed on host 0", DEADLINE, || {
        let found = call(&dirs.path(0), "gettransaction", &[&txid]).ok()?;
        (found["status"] == "confirmed").then_some(())
    });
    let (h, ..) = wait_converged(&dirs, &all, DEADLINE);
    assert_eq!(h, height + 1);
    let paid = call(&dirs.path(0), "getaddressutxos", &[&a3]).expect("utxos");
    assert_eq!(paid.as_array().map(Vec::len), Some(1), "exactly the one payment");
}

#[test]
fn multihost_a_node_killed_while_blocks_arrive_catches_up_to_the_same_utxo_set() {
    let Some(lab) = Lab::new(3) else { return };
    let dirs = Dirs::new(3);
    let miner = start(
        &lab,
        &dirs,
        0,
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
    let seed_addr = miner.listen_address();
    let _relay = start(&lab, &dirs, 1, &["--bootstrap", &seed_addr]);
    let relay_addr = _relay.listen_address();
    let victim_args = ["--bootstrap", &seed_addr, "--bootstrap", &relay_addr];
    let victim = start(&lab, &dirs, 2, &victim_args);
    wait_until("the victim to follow the miner", DEADLINE, || {
        (height(&dirs, 2) >= 20).then_some(())
    });
    victim.kill();
    let killed_at = tinychain_tests::inspect(&dirs.path(2)).height;
    wait_until("the miner to move on", DEADLINE, || {
        (height(&dirs, 0) >= u64::from(killed_at) + 50).then_some(())
    });
    let restarted = start(&lab, &dirs, 2, &victim_args);
    assert!(height(&dirs, 2) >= u64::from(killed_at), "the store kept what was connected");
    // Stop the miner so the chain holds still, then everyone agrees on its last tip.
    assert!(miner.terminate(DEADLINE).success());
    let mined = tinychain_tests::inspect(&dirs.path(0));
    let miner_again = start(&lab, &dirs, 0, &[]);
    let (height, tip, _) = wait_converged(&dirs, &[0, 1, 2], DEADLINE);
    assert_eq!((height, tip), (u64::from(mined.height), mined.tip));
    drop((restarted, miner_again));
}

#[test]
fn multihost_a_late_joiner_syncs_a_long_chain() {
    const BLOCKS: u64 = 2_000;
    let Some(lab) = Lab::new(4) else { return };
    let dirs = Dirs::new(4);
    let seed = start(&lab, &dirs, 0, &[]);
    let seed_addr = seed.listen_address();
    let _a = start(&lab, &dirs, 1, &["--bootstrap", &seed_addr]);
    let _b = start(&lab, &dirs, 2, &["--bootstrap", &seed_addr]);
    // In calls of 250 blocks, each well inside the RPC client's timeout on a busy machine.
    for _ in 0..BLOCKS / 250 {
        let made =
            call(&dirs.path(0), "generatetoaddress", &["250", REGTEST_ADDRESS]).expect("generates");
        assert_eq!(made.as_array().map(Vec::len), Some(250));
    }
    let (height, tip, digest) = wait_converged(&dirs, &[0, 1, 2], DEADLINE);
    assert_eq!(height, BLOCKS);

    let started = std::time::Instant::now();
    let _late = start(&lab, &dirs, 3, &["--bootstrap", &seed_addr]);
    let (h, t, d) = wait_converged(&dirs, &[0, 3], DEADLINE);
    assert_eq!((h, t, d), (height, tip, digest));
    eprintln!("late joiner synced {BLOCKS} blocks in {:?}", started.elapsed());
    // It found the other nodes too (it knew only the seed).
    let ids: Vec<String> = (0..4).map(|i| peer_id(&dirs, i)).collect();
    wait_until("the late joiner to know several peers", DEADLINE, || {
        (peer_graph(&dirs, &ids)[3].len() >= 2).then_some(())
    });
}

#[test]
fn multihost_a_cut_link_is_noticed_on_both_sides_and_heals_without_help() {
    const BOUND: f64 = 5.0;
    let Some(lab) = Lab::new(2) else { return };
    let dirs = Dirs::new(2);
    let mut a = start_json(&lab, &dirs, 0, &["--peer-timeout", "5"]);
    let a_addr = a.listen_address();
    let mut b = start_json(&lab, &dirs, 1, &["--peer-timeout", "5", "--bootstrap", &a_addr]);
    let ids = [peer_id(&dirs, 0), peer_id(&dirs, 1)];
    let on_a = a.wait_for_event("connection established", DEADLINE, |e| e["peer"] == ids[1]);
    let on_b = b.wait_for_event("connection established", DEADLINE, |e| e["peer"] == ids[0]);
    call(&dirs.path(0), "generatetoaddress", &["3", REGTEST_ADDRESS]).expect("mines");
    assert_eq!(wait_converged(&dirs, &[0, 1], DEADLINE).0, 3);

    // Cut B's cable; A goes on mining.
    lab.unplug(1);
    let cut = unix_now();
    call(&dirs.path(0), "generatetoaddress", &["4", REGTEST_ADDRESS]).expect("mines");
    let closed = [
        a.wait_for_event("connection closed", DEADLINE, |e| {
            e["connection_id"] == on_a["connection_id"]
        }),
        b.wait_for_event("connection closed", DEADLINE, |e| {
            e["connection_id"] == on_b["connection_id"]
        }),
    ];
    for (side, event) in ["A", "B"].iter().zip(&closed) {
        let reason = event["reason"].as_str().expect("a reason");
        assert!(reason == "inactivity" || reason == "ping timeout", "{side}: {event}");
        let at = event["timestamp"].as_str().and_then(unix_seconds).expect("a timestamp");
        let after = at - cut;
        eprintln!("{side} closed the cut link {after:.1} s after the cut ({reason})");
        // Not before the bound less a ping interval; well within a generous multiple of it.
        assert!((BOUND * 0.6..BOUND * 3.0).contains(&after), "{side}: {after:.1} s: {event}");
    }
    // The stale peer left getpeerinfo on both sides, and the chains differ while cut.
    let graph = peer_graph(&dirs, &ids);
    assert!(graph[0].is_empty() && graph[1].is_empty(), "{graph:?}");
    assert_eq!((height(&dirs, 0), height(&dirs, 1)), (7, 3));

    // The cable back: they reconnect and converge, with no one's help.
    lab.plug(1);
    let (h, ..) = wait_converged(&dirs, &[0, 1], DEADLINE);
    assert_eq!(h, 7);
    b.wait_for_event("connection established", DEADLINE, |e| {
        e["peer"] == ids[0] && e["connection_id"] != on_b["connection_id"]
    });
    for (node, id) in [&a, &b].into_iter().zip(&ids) {
        assert!(
            node.events().iter().all(|e| e["node"] == id.as_str()),
            "every line names its node"
        );
    }
}

/// Signs a payment of `coin` (a `getaddressutxos` row owned by `owner`) to `to`, less a fee.
fn pay(owner: &PrivateKey, coin: &Value, to: &str, fee: u64) -> Transaction {
    let value = coin["belushis"].as_u64().expect("a value");
    let prev = OutPoint {
        txid: coin["txid"].as_str().and_then(|t| t.parse().ok()).expect("a txid"),
        vout: u32::try_from(coin["vout"].as_u64().expect("vout")).expect("small"),
    };
    let spent = TxOut {
        value: Amount::from_belushis(value),
        pubkey_hash: owner.public_key().pubkey_hash(),
    };
    let to = tinychain_protocol::keys::Address::parse(to, Network::Regtest).expect("valid");
    let paid = TxOut { value: Amount::from_belushis(value - fee), pubkey_hash: to.pubkey_hash() };
    let mut tx = Transaction::spending([prev], vec![paid]);
    sign_all(&mut tx, &[spent], owner).expect("signs");
    tx
}

/// The sum of an address's unspent coins on node `i`, and their number.
fn balance(dirs: &Dirs, i: usize, address: &str) -> (u64, usize) {
    let coins = call(&dirs.path(i), "getaddressutxos", &[address]).expect("utxos");
    let coins = coins.as_array().expect("a list");
    (coins.iter().filter_map(|c| c["belushis"].as_u64()).sum(), coins.len())
}

#[test]
fn multihost_a_partition_heals_onto_the_most_work_side_and_the_orphaned_payment_is_mined_again() {
    let Some(lab) = Lab::new(6) else { return };
    let dirs = Dirs::new(6);
    let (owner, a1) = key(1);
    let (_, a2) = key(2);
    let (_, a3) = key(3);
    // Two groups, each with its seed; everyone knows both seeds.
    let seed_a = start(&lab, &dirs, 0, &[]);
    let seed_b = start(&lab, &dirs, 3, &["--bootstrap", &seed_a.listen_address()]);
    let (addr_a, addr_b) = (seed_a.listen_address(), seed_b.listen_address());
    let boot = ["--bootstrap", &addr_a, "--bootstrap", &addr_b];
    let _others: Vec<NodeProcess> =
        [1, 2, 4, 5].into_iter().map(|i| start(&lab, &dirs, i, &boot)).collect();
    let all = [0, 1, 2, 3, 4, 5];
    let (group_a, group_b) = ([0, 1, 2], [3, 4, 5]);
    call(&dirs.path(0), "generatetoaddress", &["20", &a1]).expect("mines");
    let (start_height, ..) = wait_converged(&dirs, &all, DEADLINE);
    assert_eq!(start_height, 20);
    let (supply_before, _) = balance(&dirs, 0, &a1);

    lab.split(&group_b);
    // The weaker side confirms a payment in one block; the stronger side mines three.
    let coins = call(&dirs.path(4), "getaddressutxos", &[&a1]).expect("utxos");
    let coin = coins
        .as_array()
        .and_then(|c| c.iter().find(|u| u["mature"] == true))
        .expect("a mature coin")
        .clone();
    let tx = pay(&owner, &coin, &a3, 10_000);
    let txid = tx.txid().to_string();
    call(&dirs.path(4), "sendrawtransaction", &[&hex_encode(&tx.encode())])
        .expect("accepted on the weak side");
    wait_until("the payment to reach the weak side's miner", DEADLINE, || {
        call(&dirs.path(3), "gettransaction", &[&txid]).ok().map(drop)
    });
    call(&dirs.path(3), "generatetoaddress", &["20", &a2]).expect("mines");
    let (weak, ..) = wait_converged(&dirs, &group_b, DEADLINE);
    assert_eq!(weak, start_height + 20);
    assert_eq!(
        call(&dirs.path(5), "gettransaction", &[&txid]).expect("known")["status"],
        "confirmed"
    );
    call(&dirs.path(0), "generatetoaddress", &["30", &a1]).expect("mines");
    let (strong, strong_tip, _) = wait_converged(&dirs, &group_a, DEADLINE);
    assert_eq!(strong, start_height + 30);
    assert!(
        call(&dirs.path(1), "gettransaction", &[&txid]).is_err(),
        "the strong side never saw it"
    );

    // Heal: everyone ends on the strong side's tip; the payment is unconfirmed again.
    lab.heal();
    let (h, t, _) = wait_converged(&dirs, &all, DEADLINE);
    assert_eq!((h, t), (strong, strong_tip));
    let again = call(&dirs.path(3), "gettransaction", &[&txid]).expect("back in the mempool");
    assert_eq!(again["status"], "mempool", "{again}");
    // Mined again (by the weak side's miner, now on the strong chain) and confirmed everywhere.
    call(&dirs.path(3), "generatetoaddress", &["1", &a2]).expect("mines");
    let (h, ..) = wait_converged(&dirs, &all, DEADLINE);
    assert_eq!(h, strong + 1);
    for i in all {
        let found = call(&dirs.path(i), "gettransaction", &[&txid]).expect("known");
        assert_eq!(found["status"], "confirmed", "host {i}");
    }
    // No coins lost or created: the payee holds exactly the payment, and the
    // coins of every key add up to the subsidies of the active chain.
    let (paid, n) = balance(&dirs, 2, &a3);
    assert_eq!((paid, n), (coin["belushis"].as_u64().expect("value") - 10_000, 1));
    let subsidy = supply_before / start_height;
    let total: u64 = [&a1, &a2, &a3].iter().map(|a| balance(&dirs, 2, a).0).sum();
    assert_eq!(total, subsidy * h, "every coin is accounted for (the fee went to a miner)");
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
