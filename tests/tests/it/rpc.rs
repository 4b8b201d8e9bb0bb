//! The RPC socket of a real node: permissions, methods, and hostile input.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::Value;
use tinychain_tests::{NodeProcess, REGTEST_ADDRESS, regtest_run_args, run_node};

const DEADLINE: Duration = Duration::from_secs(60);

fn call(datadir: &str, method: &str, params: &[&str]) -> Result<Value, String> {
    let mut args = vec!["call", "--datadir", datadir, "--network", "regtest", method];
    args.extend_from_slice(params);
    let out = run_node(&args);
    if out.status.success() {
        // A string result is printed as plain text, like bitcoin-cli does.
        Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
        }))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

fn raw_line(socket: &std::path::Path, line: &[u8]) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connects");
    stream.set_read_timeout(Some(DEADLINE)).expect("timeout set");
    // The node may answer and close before a too-long line is fully written.
    let _ = stream.write_all(line);
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).expect("reads");
    serde_json::from_str(&reply).expect("a JSON reply")
}

#[test]
fn the_rpc_socket_answers_methods_and_survives_garbage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8");
    let mut node = NodeProcess::start(&regtest_run_args(datadir, &[]));
    node.wait_for_log("RPC listening", DEADLINE);
    let socket = dir.path().join("regtest").join("rpc.sock");
    let mode = std::fs::metadata(&socket).expect("socket exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the node's user may connect");

    let hashes = call(datadir, "generatetoaddress", &["12", REGTEST_ADDRESS]).expect("generates");
    assert_eq!(hashes.as_array().map(Vec::len), Some(12));
    let info = call(datadir, "getblockchaininfo", &[]).expect("info");
    assert_eq!(info["blocks"], 12);
    assert_eq!(info["chain"], "regtest");
    let best = call(datadir, "getbestblockhash", &[]).expect("best");
    assert_eq!(best, hashes[11]);
    assert_eq!(call(datadir, "getblockhash", &["12"]).expect("hash"), hashes[11]);
    let block = call(datadir, "getblock", &[best.as_str().expect("string"), "2"]).expect("block");
    let coinbase_txid = block["tx"][0]["txid"].as_str().expect("txid").to_string();
    let tx = call(datadir, "gettransaction", &[&coinbase_txid]).expect("tx");
    assert_eq!(tx["status"], "confirmed");
    assert_eq!(tx["confirmations"], 1);
    let utxos = call(datadir, "getaddressutxos", &[REGTEST_ADDRESS]).expect("utxos");
    assert_eq!(utxos.as_array().map(Vec::len), Some(12));
    let mature = utxos.as_array().expect("array").iter().filter(|u| u["mature"] == true).count();
    assert_eq!(mature, 3, "with maturity 10 at height 12, heights 1..=3 are spendable");

    // Errors are JSON-RPC errors with clear messages; the node stays up.
    let err = call(datadir, "nosuchmethod", &[]).expect_err("unknown method");
    assert!(err.contains("unknown method"), "{err}");
    let err = call(datadir, "getblockhash", &["999"]).expect_err("out of range");
    assert!(err.contains("out of range"), "{err}");
    let err = call(datadir, "generatetoaddress", &["1", "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH"])
        .expect_err("a mainnet address");
    assert!(err.contains("address"), "{err}");
    let err = call(datadir, "sendrawtransaction", &["zz"]).expect_err("bad hex");
    assert!(err.contains("hex"), "{err}");
    let reply = raw_line(&socket, b"{not json\n");
    assert_eq!(reply["error"]["code"], -32700);
    let reply = raw_line(&socket, b"[1,2,3]\n");
    assert_eq!(reply["error"]["code"], -32600);
    let reply = raw_line(
        &socket,
        b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"getblockcount\",\"params\":{}}\n",
    );
    assert_eq!(reply["error"]["code"], -32602);
    assert_eq!(reply["id"], 7);
    let mut huge = vec![b'x'; 3 * 1024 * 1024];
    huge.push(b'\n');
    let reply = raw_line(&socket, &huge);
    assert_eq!(reply["error"]["code"], -32600);
    assert_eq!(call(datadir, "getblockcount", &[]).expect("still serving"), 12);

    // `stop` shuts the node down cleanly and removes the socket.
    call(datadir, "stop", &[]).expect("stops");
    let (status, _) = node.wait_exit(DEADLINE);
    assert!(status.success());
    assert!(!socket.exists(), "the socket file is removed");
}

/// Sends one request and returns the whole reply (`result` or `error`).
fn rpc(socket: &std::path::Path, method: &str, params: Value) -> Value {
    let request =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    raw_line(socket, format!("{request}\n").as_bytes())
}

#[test]
fn errors_carry_bitcoinds_codes_and_plain_words_and_lists_come_in_pages() {
    use serde_json::json;
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8");
    let mut node = NodeProcess::start(&regtest_run_args(datadir, &[]));
    node.wait_for_log("RPC listening", DEADLINE);
    let socket = dir.path().join("regtest").join("rpc.sock");
    call(datadir, "generatetoaddress", &["12", REGTEST_ADDRESS]).expect("generates");

    let code = |reply: &Value| reply["error"]["code"].as_i64();
    let message = |reply: &Value| reply["error"]["message"].as_str().unwrap_or("").to_owned();
    let reply = rpc(&socket, "getblockhash", json!([13]));
    assert_eq!(code(&reply), Some(-8), "{reply}");
    assert!(message(&reply).contains("out of range (the tip is at 12)"), "{reply}");
    for (method, hex) in
        [("sendrawtransaction", "zz"), ("submitblock", "zz"), ("sendrawtransaction", "0100")]
    {
        let reply = rpc(&socket, method, json!([hex]));
        assert_eq!(code(&reply), Some(-22), "{method} {hex}: {reply}");
    }
    let reply = rpc(&socket, "submitblock", json!(["00000000"]));
    assert!(!message(&reply).contains("Slice") && !message(&reply).contains("bincode"), "{reply}");
    assert_eq!(code(&rpc(&socket, "gettransaction", json!(["00".repeat(32)]))), Some(-5));
    assert_eq!(code(&rpc(&socket, "nosuchmethod", json!([]))), Some(-32601));

    // A transaction spending an output nobody has: refused (-26), in words.
    let spend = tinychain_protocol::Transaction::spending(
        [tinychain_protocol::OutPoint { txid: "11".repeat(32).parse().expect("txid"), vout: 0 }],
        vec![tinychain_protocol::TxOut {
            value: tinychain_protocol::Amount::from_belushis(1),
            pubkey_hash: tinychain_protocol::PubkeyHash::from_byte_array([1; 20]),
        }],
    );
    let hex: String = spend.encode().iter().map(|b| format!("{b:02x}")).collect();
    let reply = rpc(&socket, "sendrawtransaction", json!([hex]));
    assert_eq!(code(&reply), Some(-26), "{reply}");
    assert!(
        !message(&reply).contains("Txid(") && !message(&reply).contains("OutPoint {"),
        "{reply}"
    );

    // `help` lists every method, one a line.
    let help = call(datadir, "help", &[]).expect("help");
    let help = help.as_str().expect("text");
    for method in ["getblockchaininfo", "getaddressutxos", "setmining", "stop", "help"] {
        assert!(help.lines().any(|l| l.starts_with(method)), "{method} missing from {help}");
    }

    // Pages of 5 of 12 coins: 5, 5, 2, the last with no cursor; together the whole list.
    let whole = rpc(&socket, "getaddressutxos", json!([REGTEST_ADDRESS]))["result"].clone();
    assert_eq!(whole.as_array().map(Vec::len), Some(12));
    for (method, rows) in [("getaddressutxos", "utxos"), ("getaddresshistory", "history")] {
        let whole = rpc(&socket, method, json!([REGTEST_ADDRESS]))["result"].clone();
        let (mut paged, mut after, mut sizes) = (Vec::new(), Value::Null, Vec::new());
        loop {
            let page =
                rpc(&socket, method, json!([[REGTEST_ADDRESS], {"limit": 5, "after": after}]));
            let page = &page["result"];
            let found = page[rows].as_array().expect("rows").clone();
            sizes.push(found.len());
            paged.extend(found);
            if page["next"].is_null() {
                break;
            }
            after = page["next"].clone();
        }
        assert_eq!(sizes, [5, 5, 2], "{method}");
        assert_eq!(Value::Array(paged), whole, "{method}");
    }
    let reply = rpc(&socket, "getaddressutxos", json!([REGTEST_ADDRESS, {"after": "nonsense"}]));
    assert_eq!(code(&reply), Some(-32602), "{reply}");
    assert!(node.terminate(DEADLINE).success());
}

/// Every client command finds the node the same way: here only `--datadir`
/// is given, and the data directory's `tinychain.toml` names the network and a
/// socket elsewhere. Without a node, each says which socket it tried.
#[test]
fn every_client_command_finds_the_node_from_the_data_directorys_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let datadir = dir.path().to_str().expect("utf-8");
    let socket = dir.path().join("elsewhere.sock");
    std::fs::write(
        dir.path().join("tinychain.toml"),
        format!(
            "network = \"regtest\"\n[p2p]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n[rpc]\nsocket = \"{}\"\n",
            socket.display()
        ),
    )
    .expect("writes");
    let client = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--datadir", datadir]);
        let out = std::process::Command::new(tinychain_tests::binary("tinychain-node"))
            .args(&all)
            .env_remove("TINYCHAIN_NETWORK")
            .env_remove("TINYCHAIN_RPC_SOCKET")
            .output()
            .expect("runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let txid = "00".repeat(32);
    let commands: [&[&str]; 7] = [
        &["call", "getblockcount"],
        &["status"],
        &["peers"],
        &["mempool"],
        &["block", "0"],
        &["tx", &txid],
        &["stop"],
    ];
    for command in commands {
        let (ok, _, stderr) = client(command);
        assert!(!ok, "{command:?} succeeded without a node");
        assert!(stderr.contains(&socket.display().to_string()), "{command:?}: {stderr}");
        assert!(
            stderr.contains("tinychain.toml"),
            "{command:?} says where the path came from: {stderr}"
        );
    }
    let mut node = NodeProcess::start(&["run", "--datadir", datadir]);
    node.wait_for_log("RPC listening", DEADLINE);
    for command in commands {
        let (ok, stdout, stderr) = client(command);
        if command[0] == "tx" {
            assert!(stderr.contains("code -5"), "{command:?} reached the node: {stderr}");
            continue;
        }
        assert!(ok, "{command:?}: {stderr}");
        assert!(!stdout.is_empty(), "{command:?} printed nothing");
    }
    let (status, _) = node.wait_exit(DEADLINE);
    assert!(status.success(), "stopped by the `stop` command");
}
