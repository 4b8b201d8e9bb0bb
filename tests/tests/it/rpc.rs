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
        Ok(serde_json::from_slice(&out.stdout).expect("JSON output"))
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
