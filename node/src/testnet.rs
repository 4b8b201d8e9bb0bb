//! Networks of nodes inside one process, on loopback: for tests, benchmarks and demos.
//!
//! Owns nothing but handles: a [`LocalNode`] is the real event loop
//! ([`node::run`]) spawned on a tokio runtime the caller provides, with its own
//! data directory and RPC socket, reached through the same socket a wallet
//! would use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use serde_json::{Value, json};
use tinychain_protocol::params::Network;

use crate::client::{self, Client};
use crate::node::{self, MiningConfig};
use crate::p2p;

/// A node running in this process.
#[derive(Debug)]
pub struct LocalNode {
    socket: PathBuf,
    /// Its full listen address, with `/p2p/<peer id>`.
    pub addr: Multiaddr,
    /// Its peer id.
    pub peer_id: String,
    /// Its metrics endpoint's bound address, if it serves one.
    pub metrics: Option<SocketAddr>,
}

/// The settings of a regtest-like local node: data in `datadir`, listening on
/// 127.0.0.1 (port 0), bootstrapping from `bootstrap`, not mining, no metrics
/// endpoint, UTXO digest check at start off (fast start).
pub fn local_config(datadir: &Path, network: Network, bootstrap: Vec<Multiaddr>) -> node::Config {
    let mut core = crate::core::Config::default();
    core.chain.verify_utxo_on_start = false;
    node::Config {
        datadir: datadir.to_owned(),
        network,
        mining: MiningConfig {
            enabled: false,
            pay_to: None,
            threads: 1,
            min_interval: Duration::ZERO,
        },
        p2p: p2p::Config {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid literal multiaddr")],
            bootstrap,
            ..Default::default()
        },
        core,
        sync: Default::default(),
        rpc_socket: Some(datadir.join("rpc.sock")),
        keypair: None,
        store_cache_bytes: crate::store::redb::DEFAULT_CACHE_BYTES,
        coins_cache_bytes: crate::config::mib(crate::store::cache::DEFAULT_BUDGET_MB),
        metrics: None,
    }
}

impl LocalNode {
    /// Spawns a node with `config` on `runtime` and waits (up to `deadline`)
    /// until it answers on its socket and listens for peers.
    ///
    /// # Errors
    ///
    /// The node failed to start, or did not answer in time.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        config: node::Config,
        deadline: Duration,
    ) -> Result<LocalNode, String> {
        let socket = config
            .rpc_socket
            .clone()
            .ok_or_else(|| "a local node needs an explicit RPC socket".to_owned())?;
        let task = runtime.spawn(node::run(config));
        let start = Instant::now();
        let mut node =
            LocalNode { socket, addr: Multiaddr::empty(), peer_id: String::new(), metrics: None };
        loop {
            if task.is_finished() {
                let outcome = runtime.block_on(task);
                return Err(format!("the node stopped at start: {outcome:?}"));
            }
            if let Ok(info) = node.call("getnetworkinfo", json!([]))
                && let Some(addr) = info["listen"].get(0).and_then(Value::as_str)
            {
                node.addr = addr.parse().map_err(|e| format!("listen address {addr}: {e}"))?;
                node.peer_id = info["peer_id"].as_str().unwrap_or_default().to_owned();
                if let Some(metrics) = info["metrics"].as_str() {
                    node.metrics = Some(
                        metrics.parse().map_err(|e| format!("metrics address {metrics}: {e}"))?,
                    );
                }
                return Ok(node);
            }
            if start.elapsed() > deadline {
                return Err("the node did not answer in time".to_owned());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Calls an RPC method.
    ///
    /// # Errors
    ///
    /// The node is gone or answered with an error.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, client::Error> {
        let params = match params {
            Value::Array(params) => params,
            Value::Null => Vec::new(),
            one => vec![one],
        };
        Client::connect(&self.socket)?.call(method, params)
    }

    /// Opens a connection of its own to the node's RPC socket, for many calls
    /// (each [`LocalNode::call`] opens and closes one).
    ///
    /// # Errors
    ///
    /// The socket cannot be reached.
    pub fn connect(&self) -> Result<Client, client::Error> {
        Client::connect(&self.socket)
    }

    /// Asks the node to stop (its task then ends).
    pub fn stop(&self) {
        let _ = self.call("stop", json!([]));
    }
}
