//! Several nodes in one process on loopback, and a hostile peer to poke them.
//!
//! Each [`TestNode`] runs the real event loop (`node::run`) on a shared tokio
//! runtime with its own data directory and RPC socket; tests talk to it through
//! that socket and wait for conditions with deadlines.

mod hostile;
mod tests;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use serde_json::{Value, json};
use tinychain_node::node::{self, MiningConfig};
use tinychain_node::p2p;
use tinychain_protocol::params::Network;

/// The address mined coins go to in these tests (private key 1).
pub(crate) const ADDRESS: &str = "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r";
/// How long any condition may take to come true.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// One runtime for all nodes of a test. `TEST_LOG=info` shows the nodes' logs.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A node running in this process.
pub(crate) struct TestNode {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    /// Its full listen address, with `/p2p/<peer id>`.
    pub(crate) addr: Multiaddr,
    pub(crate) peer_id: String,
}

impl TestNode {
    /// Starts a regtest node on 127.0.0.1 (port 0) that bootstraps from `bootstrap`.
    pub(crate) fn start(rt: &tokio::runtime::Runtime, bootstrap: &[&TestNode]) -> TestNode {
        TestNode::start_on(rt, Network::Regtest, bootstrap.iter().map(|n| n.addr.clone()).collect())
    }

    pub(crate) fn start_on(
        rt: &tokio::runtime::Runtime,
        network: Network,
        bootstrap: Vec<Multiaddr>,
    ) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("rpc.sock");
        let mut core = tinychain_node::core::Config::default();
        core.chain.verify_utxo_on_start = false;
        let config = node::Config {
            datadir: dir.path().to_owned(),
            network,
            mining: MiningConfig { enabled: false, pay_to: None, threads: 1 },
            p2p: p2p::Config {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
                bootstrap,
                ..Default::default()
            },
            core,
            rpc_socket: Some(socket.clone()),
        };
        rt.spawn(async move {
            if let Err(e) = node::run(config).await {
                panic!("node failed: {e:#}");
            }
        });
        let mut node = TestNode {
            _dir: dir,
            socket,
            addr: "/ip4/127.0.0.1".parse().expect("ok"),
            peer_id: String::new(),
        };
        let info = node.wait_for("a listen address", |n| {
            let info = n.try_call("getnetworkinfo", json!([])).ok()?;
            (!info["listen"].as_array()?.is_empty()).then_some(info)
        });
        node.peer_id = info["peer_id"].as_str().expect("peer id").to_owned();
        node.addr = info["listen"][0].as_str().expect("address").parse().expect("multiaddr");
        node
    }

    /// Calls an RPC method; `Err` holds the JSON-RPC error or the I/O failure.
    pub(crate) fn try_call(&self, method: &str, params: Value) -> Result<Value, String> {
        let mut stream = UnixStream::connect(&self.socket).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(DEADLINE)).map_err(|e| e.to_string())?;
        let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        writeln!(stream, "{request}").map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).map_err(|e| e.to_string())?;
        let reply: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
        match reply.get("error") {
            Some(error) => Err(error.to_string()),
            None => Ok(reply["result"].clone()),
        }
    }

    /// Calls an RPC method that must succeed.
    pub(crate) fn call(&self, method: &str, params: Value) -> Value {
        self.try_call(method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    pub(crate) fn height(&self) -> u64 {
        self.call("getblockcount", json!([])).as_u64().expect("a height")
    }

    pub(crate) fn tip(&self) -> String {
        self.call("getbestblockhash", json!([])).as_str().expect("a hash").to_owned()
    }

    pub(crate) fn generate(&self, n: u64) -> Vec<String> {
        serde_json::from_value(self.call("generatetoaddress", json!([n, ADDRESS]))).expect("hashes")
    }

    pub(crate) fn peers(&self) -> Vec<Value> {
        serde_json::from_value(self.call("getpeerinfo", json!([]))).expect("peers")
    }

    /// Polls `check` until it gives a value; panics naming `what` after [`DEADLINE`].
    pub(crate) fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until this node's tip is `tip`.
    pub(crate) fn wait_for_tip(&self, tip: &str) {
        self.wait_for(&format!("tip {tip}"), |n| (n.tip() == tip).then_some(()));
    }

    /// Stops the node through its socket.
    pub(crate) fn stop(&self) {
        let _ = self.try_call("stop", json!([]));
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.stop();
    }
}
