//! Several nodes in one process on loopback, and a hostile peer to poke them.
//!
//! Each [`TestNode`] is a [`LocalNode`] (the real event loop on a shared tokio
//! runtime) with its own temporary data directory; tests talk to it through
//! its RPC socket and wait for conditions with deadlines.

mod hostile;
mod liveness;
mod metrics;
mod tests;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use serde_json::{Value, json};
use tinychain_node::node;
use tinychain_node::testnet::{LocalNode, local_config};
use tinychain_protocol::Block;
use tinychain_protocol::keys::PrivateKey;
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

/// A node running in this process, with its temporary data directory.
pub(crate) struct TestNode {
    _dir: tempfile::TempDir,
    node: LocalNode,
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
        TestNode::start_with(rt, network, bootstrap, |_| {})
    }

    /// Starts a regtest node like [`TestNode::start`] that also serves metrics
    /// on 127.0.0.1 (port 0).
    pub(crate) fn start_with_metrics(
        rt: &tokio::runtime::Runtime,
        bootstrap: &[&TestNode],
    ) -> TestNode {
        let bootstrap = bootstrap.iter().map(|n| n.addr.clone()).collect();
        TestNode::start_with(rt, Network::Regtest, bootstrap, |config| {
            config.metrics = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        })
    }

    pub(crate) fn start_with(
        rt: &tokio::runtime::Runtime,
        network: Network,
        bootstrap: Vec<Multiaddr>,
        adjust: impl FnOnce(&mut node::Config),
    ) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = local_config(dir.path(), network, bootstrap);
        adjust(&mut config);
        let node = LocalNode::start(rt.handle(), config, DEADLINE).expect("the node starts");
        TestNode { addr: node.addr.clone(), peer_id: node.peer_id.clone(), _dir: dir, node }
    }

    /// Returns the metrics endpoint's address, if the node serves one.
    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.node.metrics
    }

    /// Calls an RPC method; `Err` holds the error.
    pub(crate) fn try_call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.node.call(method, params).map_err(|e| e.to_string())
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

    /// Returns the block `hash` as the node stores it.
    pub(crate) fn block(&self, hash: &str) -> Block {
        let hex = self.call("getblock", json!([hash, 0]));
        Block::decode(&hex::decode(hex.as_str().expect("hex")).expect("hex")).expect("a block")
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
}

/// Private key 1, whose address is [`ADDRESS`].
pub(crate) fn one_key() -> PrivateKey {
    let mut bytes = [0; 32];
    bytes[31] = 1;
    PrivateKey::from_bytes(&bytes).expect("a valid scalar")
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.node.stop();
    }
}
