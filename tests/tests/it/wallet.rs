//! The wallet against real nodes: tinychain's walkthrough, double spends, refused sends,
//! `setmining` and the node's client views.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use tinychain_tests::{NodeProcess, REGTEST_ADDRESS, binary, regtest_run_args, run_node};

pub(crate) const DEADLINE: Duration = Duration::from_secs(60);
pub(crate) const COIN: u64 = 100_000_000;
/// The wallet passphrase every test wallet is made with (through its variable).
pub(crate) const PASSPHRASE: &str = "correct horse battery staple";

/// Starts a regtest node and returns it with its full listen multiaddr.
pub(crate) fn start(datadir: &str, extra: &[&str]) -> (NodeProcess, String) {
    let mut node = NodeProcess::start(&regtest_run_args(datadir, extra));
    node.wait_for_log("listening address=", DEADLINE);
    node.wait_for_log("RPC listening", DEADLINE);
    let addr = node.listen_address();
    (node, addr)
}

/// `tinychain-wallet` with `datadir`, then `args` (on regtest unless they say
/// otherwise), the passphrase in its variable and no other secret variable.
pub(crate) fn wallet_command(datadir: &str, args: &[&str]) -> Command {
    let network: &[&str] =
        if args.contains(&"--network") { &[] } else { &["--network", "regtest"] };
    let mut command = Command::new(binary("tinychain-wallet"));
    command
        .args(network)
        .args(["--datadir", datadir])
        .args(args)
        .env("TINYCHAIN_WALLET_PASSPHRASE", PASSPHRASE)
        .env_remove("TINYCHAIN_WALLET_NEW_PASSPHRASE")
        .env_remove("TINYCHAIN_BIP39_PASSPHRASE")
        .env_remove("TINYCHAIN_WALLET");
    command
}

/// Runs `tinychain-wallet` with `datadir`, then `args` (see [`wallet_command`]).
pub(crate) fn wallet(datadir: &str, args: &[&str]) -> Output {
    wallet_command(datadir, args).output().expect("tinychain-wallet runs")
}

/// Runs a wallet command that must succeed with `--json`, and returns its JSON.
pub(crate) fn wallet_json(datadir: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = wallet(datadir, &all);
    assert!(
        out.status.success(),
        "wallet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// Runs a wallet command that must fail; returns its stderr.
pub(crate) fn wallet_refused(datadir: &str, args: &[&str]) -> String {
    refused(wallet(datadir, args), args)
}

/// Checks that a wallet run failed with one clear line and nothing on stdout; returns stderr.
pub(crate) fn refused(out: Output, args: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "wallet {args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    stderr
}

pub(crate) fn call(datadir: &str, method: &str, params: &[&str]) -> Value {
    let mut args = vec!["call", "--datadir", datadir, "--network", "regtest", method];
    args.extend_from_slice(params);
    let out = run_node(&args);
    assert!(out.status.success(), "{method} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn node_view(datadir: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--datadir", datadir, "--network", "regtest"]);
    let out = run_node(&all);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Stops `node` (whose data directory is `datadir`) through its RPC and waits for it to exit.
pub(crate) fn stop(datadir: &str, node: NodeProcess) {
    node_view(datadir, &["stop"]);
    let (exit, _) = node.wait_exit(DEADLINE);
    assert!(exit.success(), "the node stopped cleanly");
}

/// Polls `condition` until it holds, or panics after the deadline.
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < end, "{what} did not happen within {DEADLINE:?}");
        // Each check is a process run against the node; no event to wait on instead.
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn mempool(datadir: &str) -> Vec<String> {
    let txids = call(datadir, "getrawmempool", &[]);
    txids
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|t| t.as_str().map(String::from))
        .collect()
}

pub(crate) fn belushis(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an amount: {v}"))
}

#[test]
fn the_tinychain_walkthrough_pays_1337_coins_with_exact_balances_and_no_double_spend() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let a = dirs[0].path().to_str().expect("utf-8").to_string();
    let b = dirs[1].path().to_str().expect("utf-8").to_string();
    let (_node_a, a_addr) = start(&a, &[]);
    let (_node_b, _) = start(&b, &["--bootstrap", &a_addr]);

    let w1 = wallet_json(&a, &["create"])["address"].as_str().expect("address").to_string();
    let w2 = wallet_json(&b, &["create"])["address"].as_str().expect("address").to_string();
    // Node 1 mines 40 blocks to wallet 1; node 2 syncs them.
    call(&a, "generatetoaddress", &["40", &w1]);
    wait_until("node 2 syncing 40 blocks", || call(&b, "getblockcount", &[]) == 40);

    // Maturity 10: at height 40 the coinbases of heights 1..=31 are spendable.
    let before = wallet_json(&a, &["balance"]);
    assert_eq!(belushis(&before["confirmed"]), 31 * 50 * COIN);
    assert_eq!(belushis(&before["immature"]), 9 * 50 * COIN);
    assert_eq!(belushis(&before["total"]), 40 * 50 * COIN);

    let sent = wallet_json(&a, &["send", &w2, "1337"]);
    let txid = sent["txid"].as_str().expect("txid").to_string();
    let fee1 = belushis(&sent["fee"]);
    assert_eq!(belushis(&sent["amount"]), 1337 * COIN);
    assert_eq!(fee1, belushis(&sent["size"]), "1 belushi per byte of the signed transaction");
    assert!(belushis(&sent["change"]) > 0, "change goes back to the wallet");
    let status = wallet_json(&a, &["status", &txid]);
    assert_eq!(status["status"], "mempool");
    let text = String::from_utf8_lossy(&wallet(&a, &["status", &txid]).stdout).to_string();
    assert!(text.contains("in mempool"), "{text}");

    // Wallet 2, through node 2, sees the payment arrive unconfirmed.
    wait_until("the payment reaching node 2's mempool", || mempool(&b).contains(&txid));
    let incoming = wallet_json(&b, &["balance"]);
    assert_eq!(belushis(&incoming["unconfirmed_incoming"]), 1337 * COIN);
    assert_eq!(belushis(&incoming["confirmed"]), 0);

    // A second send before any block: other coins or the first one's change, no conflict.
    let second = wallet_json(&a, &["send", &w2, "10"]);
    let txid2 = second["txid"].as_str().expect("txid").to_string();
    let fee2 = belushis(&second["fee"]);
    let pool = mempool(&a);
    assert!(pool.contains(&txid) && pool.contains(&txid2), "both accepted: {pool:?}");
    let spends = |t: &str| -> Vec<(String, u64)> {
        let tx = call(&a, "gettransaction", &[t]);
        tx["vin"]
            .as_array()
            .expect("inputs")
            .iter()
            .map(|i| {
                (i["txid"].as_str().expect("txid").to_string(), i["vout"].as_u64().expect("n"))
            })
            .collect()
    };
    let first_inputs = spends(&txid);
    assert!(spends(&txid2).iter().all(|i| !first_inputs.contains(i)), "no coin spent twice");
    let pending = wallet_json(&a, &["balance"]);
    assert_eq!(belushis(&pending["pending_outgoing"]), 1347 * COIN + fee1 + fee2);

    // A block (paying someone else) confirms both; the coinbase collects exactly the fees.
    let hashes = call(&a, "generatetoaddress", &["1", REGTEST_ADDRESS]);
    let hash = hashes[0].as_str().expect("hash").to_string();
    let status = wallet_json(&a, &["status", &txid]);
    assert_eq!(status["status"], "confirmed");
    assert_eq!(status["height"], 41);
    assert_eq!(status["blockhash"], hash.as_str());
    assert_eq!(status["confirmations"], 1);
    let text = String::from_utf8_lossy(&wallet(&a, &["status", &txid]).stdout).to_string();
    assert!(text.contains(&format!("mined in block {hash} at height 41 with 1 confirmation")));
    let block = call(&a, "getblock", &[&hash, "2"]);
    let coinbase_out = belushis(&block["tx"][0]["vout"][0]["belushis"]);
    assert_eq!(coinbase_out, 50 * COIN + fee1 + fee2, "subsidy plus exactly the two fees");

    let after = wallet_json(&a, &["balance"]);
    assert_eq!(belushis(&after["total"]), 40 * 50 * COIN - 1347 * COIN - fee1 - fee2);
    assert_eq!(belushis(&after["pending_outgoing"]), 0);
    assert_eq!(belushis(&after["unconfirmed_change"]), 0);
    wait_until("node 2 reaching height 41", || call(&b, "getblockcount", &[]) == 41);
    let received = wallet_json(&b, &["balance"]);
    assert_eq!(belushis(&received["confirmed"]), 1347 * COIN);
    assert_eq!(belushis(&received["total"]), 1347 * COIN);
    let history = wallet_json(&a, &["history"]);
    let sent_rows =
        history.as_array().expect("rows").iter().filter(|r| r["kind"] == "sent").count();
    assert_eq!(sent_rows, 2);
}

#[test]
fn bad_sends_are_refused_leaving_the_wallet_and_mempool_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    let (node, _) = start(&d, &[]);
    let address = wallet_json(&d, &["create"])["address"].as_str().expect("address").to_string();
    call(&d, "generatetoaddress", &["15", &address]);
    let wallet_file = dir.path().join("regtest").join("wallet.json");
    let other = wallet_json(&d, &["--wallet", &format!("{d}/other.json"), "create"]);
    let to = other["address"].as_str().expect("address").to_string();

    let socket_missing = format!("{d}/nowhere.sock");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["send", &to, "1000"], "insufficient funds"),
        (vec!["send", "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8R", "1"], "checksum"),
        (vec!["send", "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH", "1"], "address is for main"),
        (vec!["send", &to, "0"], "more than zero"),
        (vec!["send", &to, "-1"], "cannot have a sign"),
        (vec!["send", &to, "0.000000001"], "at most 8 decimals"),
        (vec!["send", &to, "1.5", "--belushis"], "whole number of belushis"),
        (vec!["send", &to, "1", "--fee-rate", "10000000"], "above the cap"),
        (vec!["send", &to, "1", "--belushis"], "more than the amount"),
        (vec!["send", &to, "1", "--rpc-socket", &socket_missing], "cannot reach the node at"),
    ];
    for (args, expected) in &cases {
        let bytes = std::fs::read(&wallet_file).expect("wallet file");
        let err = wallet_refused(&d, args);
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert_eq!(std::fs::read(&wallet_file).expect("wallet file"), bytes, "{args:?}");
        assert!(mempool(&d).is_empty(), "{args:?} left a transaction");
    }
    let err = wallet_refused(&d, &["balance", "--rpc-socket", &socket_missing]);
    assert!(err.contains(&socket_missing), "the socket is named: {err}");

    // A corrupt wallet file is refused and left as it was.
    let corrupt = format!("{d}/corrupt.json");
    std::fs::write(&corrupt, b"{\"format\":\"tinychain-wallet\",\"version\":1,").expect("writes");
    let err = wallet_refused(&d, &["--wallet", &corrupt, "send", &to, "1"]);
    assert!(err.contains("corrupt"), "{err}");
    let err = wallet_refused(&d, &["--wallet", &corrupt, "create"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read(&corrupt).expect("reads"),
        b"{\"format\":\"tinychain-wallet\",\"version\":1,"
    );
    // A wallet of another network, and a node of another network.
    let regtest_wallet = wallet_file.to_str().expect("utf-8");
    let err = wallet_refused(&d, &["--network", "test", "--wallet", regtest_wallet, "balance"]);
    assert!(err.contains("regtest") && err.contains("not test"), "{err}");
    let test_wallet = format!("{d}/test.json");
    let socket = format!("{d}/regtest/rpc.sock");
    let out = wallet(&d, &["--network", "test", "--wallet", &test_wallet, "create"]);
    assert!(out.status.success());
    let err = wallet_refused(
        &d,
        &["--network", "test", "--wallet", &test_wallet, "--rpc-socket", &socket, "balance"],
    );
    assert!(err.contains("is on regtest, not test"), "{err}");
    assert!(mempool(&d).is_empty());

    // After all that, a good send goes through.
    let sent = wallet_json(&d, &["send", &to, "1"]);
    assert_eq!(mempool(&d), vec![sent["txid"].as_str().expect("txid").to_string()]);
    drop(node);
}

#[test]
fn setmining_and_the_client_views_work_on_a_running_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    let (mut node, _) = start(&d, &["--miner-threads", "1"]);

    let out = run_node(&["call", "--datadir", &d, "--network", "regtest", "setmining", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no mining address"));
    let on = call(&d, "setmining", &["true", REGTEST_ADDRESS]);
    assert_eq!(on["mining"], true);
    assert_eq!(on["address"], REGTEST_ADDRESS);
    node.wait_for_log("new tip", DEADLINE);
    let info = call(&d, "getmininginfo", &[]);
    assert_eq!(info["mining"], true);
    let off = call(&d, "setmining", &["false"]);
    assert_eq!(off["mining"], false);
    assert_eq!(call(&d, "getmininginfo", &[])["mining"], false);

    let status = node_view(&d, &["status"]);
    assert!(
        status.contains("network     regtest") && status.contains("mining      off"),
        "{status}"
    );
    let json: Value = serde_json::from_str(&node_view(&d, &["status", "--json"])).expect("JSON");
    assert_eq!(json["chain"]["chain"], "regtest");
    let block = node_view(&d, &["block", "1"]);
    assert!(block.contains("height         1"), "{block}");
    let coinbase = block.lines().last().expect("a txid").trim().to_string();
    let tx = node_view(&d, &["tx", &coinbase]);
    assert!(tx.contains("coinbase yes") && tx.contains(REGTEST_ADDRESS), "{tx}");
    assert!(node_view(&d, &["peers"]).starts_with("PEER "));
    assert!(node_view(&d, &["peers", "--dot"]).starts_with("graph tinychain {"));
    assert!(node_view(&d, &["mempool"]).starts_with("0 transactions"));
    let socket = format!("{d}/regtest/rpc.sock");
    let out = run_node(&["status", "--rpc-socket", &socket, "--network", "main"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("is on regtest, not main"), "{err}");
    node_view(&d, &["stop"]);
    let (exit, _) = node.wait_exit(DEADLINE);
    assert!(exit.success());
    let out = run_node(&["status", "--datadir", &d, "--network", "regtest"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the node at"));
}

#[test]
fn a_send_the_node_rejects_leaves_the_wallet_file_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    let (node, _) = start(&d, &[]);
    let address = wallet_json(&d, &["create"])["address"].as_str().expect("address").to_string();
    // One mature coin: every later send spends the previous one's change, a chain
    // of unconfirmed transactions that the node's ancestor limit (25) ends.
    call(&d, "generatetoaddress", &["1", &address]);
    call(&d, "generatetoaddress", &["10", REGTEST_ADDRESS]);
    let wallet_file = dir.path().join("regtest").join("wallet.json");
    for sent in 0..30 {
        let bytes = std::fs::read(&wallet_file).expect("wallet file");
        let out = wallet(&d, &["send", REGTEST_ADDRESS, "0.01"]);
        if out.status.success() {
            continue;
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(sent, 25, "the 26th chained transaction is the first refused: {err}");
        assert!(err.contains("ancestors"), "{err}");
        assert_eq!(std::fs::read(&wallet_file).expect("wallet file"), bytes, "restored");
        assert_eq!(mempool(&d).len(), 25);
        drop(node);
        return;
    }
    panic!("the node accepted 30 chained transactions");
}

#[test]
fn keys_are_made_labelled_exported_and_imported_offline() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    wallet_json(&d, &["create"]);
    let file = dir.path().join("regtest").join("wallet.json");
    let mode = std::fs::metadata(&file).expect("exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let savings = wallet_json(&d, &["new-address", "--label", "savings"]);
    let savings = savings["address"].as_str().expect("address").to_string();
    let listed = wallet_json(&d, &["addresses"]);
    let rows = listed.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r["address"] == savings.as_str() && r["label"] == "savings"));

    let wif = wallet_json(&d, &["export-key", &savings])["wif"].as_str().expect("wif").to_string();
    let other = format!("{d}/other.json");
    wallet_json(&d, &["--wallet", &other, "create"]);
    let imported = wallet_json(&d, &["--wallet", &other, "import-key", &wif]);
    assert_eq!(imported["address"], savings.as_str());
    let err = wallet_refused(&d, &["--wallet", &other, "import-key", &wif]);
    assert!(err.contains("already has"), "{err}");
    // Private key 1 on main: refused by a regtest wallet.
    let main_wif = "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn";
    let err = wallet_refused(&d, &["--wallet", &other, "import-key", main_wif]);
    assert!(err.contains("main"), "{err}");
    let err = wallet_refused(&d, &["export-key", REGTEST_ADDRESS]);
    assert!(err.contains("no key"), "{err}");
    let script = wallet(&d, &["completions", "bash"]);
    assert!(script.status.success());
    assert!(String::from_utf8_lossy(&script.stdout).contains("tinychain-wallet"));
}
