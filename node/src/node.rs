//! The event loop: the one owner of the core, driving it with real time and I/O.
//!
//! Owns the running node: it opens the data directory and store, holds the
//! [`Core`], the libp2p [`Network`] and the miner threads, and turns found
//! blocks, peer messages, the clock's ticks and shutdown signals into core
//! inputs, carrying out the core's outputs (relay, fetch, penalise, new mining
//! jobs). Other tasks reach it only through bounded channels.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use libp2p::PeerId;
use libp2p::gossipsub::MessageAcceptance;
use tinychain_protocol::params::{Network as Chain, Params};
use tinychain_protocol::{Block, PubkeyHash};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::core::{self, BlockOutcome, Core, Output};
use crate::datadir::DataDir;
use crate::miner::Miner;
use crate::p2p::protocol::{MAX_BLOCKS_PER_RESPONSE, MAX_RESPONSE_SIZE, Request, Response, Status};
use crate::p2p::{self, NetEvent, Network};
use crate::rpc::{self, RpcCall, RpcError, methods};
use crate::store::redb::RedbStore;

/// How often the miner's template is rebuilt to pick up new transactions.
const TEMPLATE_REFRESH: Duration = Duration::from_secs(5);
/// How often bootstrap peers are re-dialed and sync is reconsidered.
const PEER_MAINTENANCE: Duration = Duration::from_secs(10);
/// Found blocks waiting for the event loop, at most.
const FOUND_QUEUE: usize = 16;
/// RPC requests waiting for the event loop, at most.
const RPC_QUEUE: usize = 64;
/// Longest a shutdown may take before the process exits anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// Mining settings.
#[derive(Debug, Clone)]
pub struct MiningConfig {
    /// Whether to mine.
    pub enabled: bool,
    /// Who the coinbase pays.
    pub pay_to: Option<PubkeyHash>,
    /// Mining threads.
    pub threads: usize,
}

/// Everything the node needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base data directory (the network's subdirectory is used).
    pub datadir: PathBuf,
    /// The network.
    pub network: Chain,
    /// Mining.
    pub mining: MiningConfig,
    /// Peer-to-peer networking.
    pub p2p: p2p::Config,
    /// The core's parts.
    pub core: core::Config,
    /// The RPC socket path (default: `rpc.sock` in the network's data directory).
    pub rpc_socket: Option<PathBuf>,
    /// The identity key file (default: `identity.key` in the network's data directory).
    pub identity_file: Option<PathBuf>,
    /// The store's page cache, in bytes.
    pub store_cache_bytes: usize,
}

/// Returns the current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

type NodeCore = Core<RedbStore, PeerId>;

/// The event loop's state.
struct Node {
    core: NodeCore,
    net: Network,
    miner: Option<(Miner, PubkeyHash)>,
    /// The peer we are downloading blocks from, if any.
    sync_peer: Option<PeerId>,
    /// Set by the `stop` RPC.
    stop_requested: bool,
}

/// Runs the node until SIGINT, SIGTERM or the `stop` RPC.
///
/// # Errors
///
/// The data directory, store, network or miner cannot be set up, or the store fails.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone())?;
    let params = Params::new(config.network);
    let genesis = params.genesis_hash();
    let datadir = DataDir::open(&config.datadir, config.network)?;
    let store =
        RedbStore::open_with_cache(&datadir.store_path(), genesis, config.store_cache_bytes)
            .with_context(|| format!("opening {}", datadir.store_path().display()))?;
    let core: NodeCore =
        Core::open(store, params, config.core.clone(), unix_now()).context("opening the chain")?;
    let identity =
        config.identity_file.clone().unwrap_or_else(|| datadir.path().join("identity.key"));
    let keypair = p2p::load_or_create_identity(&identity)?;
    let net = Network::start(keypair, &config.p2p, genesis)?;
    info!(
        network = %config.network,
        datadir = %datadir.path().display(),
        peer_id = %net.local_peer_id(),
        height = core.chain().height(),
        tip = %core.chain().tip(),
        mempool = core.mempool().len(),
        "node started"
    );

    let (found_tx, mut found_rx) = mpsc::channel::<Block>(FOUND_QUEUE);
    let miner = match (&config.mining.enabled, config.mining.pay_to) {
        (true, Some(pay_to)) => {
            let found = Arc::new(move |block: Block| {
                // The event loop may be shutting down; a lost block then is fine.
                let _ = found_tx.blocking_send(block);
            });
            let miner = Miner::start(config.mining.threads.max(1), found)?;
            miner.set_job(core.block_template(pay_to, unix_now()));
            info!(threads = miner.threads(), "mining");
            Some((miner, pay_to))
        }
        (true, None) => anyhow::bail!("mining needs an address to pay (--mine-address)"),
        _ => None,
    };
    let mut node = Node { core, net, miner, sync_peer: None, stop_requested: false };

    let socket = config.rpc_socket.clone().unwrap_or_else(|| datadir.path().join("rpc.sock"));
    let listener = rpc::server::bind(&socket).await?;
    let (rpc_tx, mut rpc_rx) = mpsc::channel::<RpcCall>(RPC_QUEUE);
    let rpc_task =
        tokio::spawn(rpc::server::serve(listener, rpc::Config::new(socket.clone()), rpc_tx));
    sd_notify("READY=1");

    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut refresh = tokio::time::interval(TEMPLATE_REFRESH);
    let mut maintenance = tokio::time::interval(PEER_MAINTENANCE);
    let mut last_hashes = 0u64;
    loop {
        tokio::select! {
            Some(block) = found_rx.recv() => node.on_found_block(block)?,
            event = node.net.next_event() => node.on_net_event(event)?,
            _ = ticks.tick() => node.core.tick(unix_now()),
            _ = refresh.tick() => {
                if let Some((miner, pay_to)) = &node.miner {
                    let hashes = miner.hashes();
                    let rate = (hashes - last_hashes) / TEMPLATE_REFRESH.as_secs();
                    last_hashes = hashes;
                    info!(hash_rate = rate, height = node.core.chain().height(), "mining");
                    miner.set_job(node.core.block_template(*pay_to, unix_now()));
                }
            }
            _ = maintenance.tick() => {
                node.net.dial_bootstrap();
                // Refresh every peer's status: a peer that got ahead (after a
                // partition, or while we were busy) is noticed and synced from.
                let status = node.status();
                for peer in node.net.connected_peers() {
                    if !node.net.is_waiting_on(&peer) {
                        node.net.request(peer, Request::Status(status));
                    }
                }
                node.maybe_sync();
            }
            Some(call) = rpc_rx.recv() => {
                let result = node.on_rpc(&call.method, &call.params);
                let _ = call.reply.send(result);
                if node.stop_requested {
                    break;
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    // Starts the watchdog (after a `stop` RPC too): the steps below are bounded.
    shutdown.cancel();
    sd_notify("STOPPING=1");
    info!("shutting down");
    rpc_task.abort();
    let _ = std::fs::remove_file(&socket);
    if let Some((miner, _)) = node.miner.take() {
        miner.shutdown();
    }
    let Node { mut core, net, .. } = node;
    drop(net);
    core.save_mempool().context("saving the mempool")?;
    info!(height = core.chain().height(), tip = %core.chain().tip(), "stopped");
    // The store closes and the directory lock is released as `core` and `datadir` drop.
    Ok(())
}

impl Node {
    fn status(&self) -> Status {
        let chain = self.core.chain();
        Status {
            genesis: chain.params().genesis_hash(),
            tip: chain.tip(),
            height: chain.height(),
            chainwork: chain.tip_entry().chainwork,
        }
    }

    fn on_rpc(
        &mut self,
        method: &str,
        params: &[serde_json::Value],
    ) -> Result<serde_json::Value, RpcError> {
        use serde_json::json;
        let now = unix_now();
        if let Some(result) = methods::chain_method(&mut self.core, method, params, now) {
            if method == "sendrawtransaction" {
                // chain_method accepted it; relay it.
                if let Ok(txid) = &result
                    && let Some(txid) = txid.as_str().and_then(|t| t.parse().ok())
                    && let Some(entry) = self.core.mempool().get(&txid)
                {
                    let tx = entry.tx.clone();
                    self.net.publish_tx(&tx);
                }
            }
            return result;
        }
        let chain = self.core.chain();
        match method {
            "getblockchaininfo" => {
                let tip = chain.tip_entry();
                let best_peer = self.net.statuses().map(|(_, s)| s.height).max().unwrap_or(0);
                let headers = chain.index().best_header_height();
                Ok(json!({
                    "chain": chain.params().network.name(),
                    "blocks": chain.height(),
                    "headers": headers.max(chain.height()),
                    "bestblockhash": chain.tip().to_string(),
                    "chainwork": tip.chainwork.to_string(),
                    "difficulty": methods::difficulty(chain.params(), &tip.header),
                    "mediantime": chain.median_time_past(),
                    "initialblockdownload": self.sync_peer.is_some(),
                    "verificationprogress": if best_peer > chain.height() {
                        f64::from(chain.height()) / f64::from(best_peer)
                    } else {
                        1.0
                    },
                    "utxo_digest": chain.utxo_digest().to_string(),
                }))
            }
            "getpeerinfo" => Ok(json!(self.net.peer_info())),
            "getnetworkinfo" => Ok(self.net.network_info()),
            "getmininginfo" => {
                let tip = chain.tip_entry();
                Ok(json!({
                    "blocks": chain.height(),
                    "difficulty": methods::difficulty(chain.params(), &tip.header),
                    "mining": self.miner.is_some(),
                    "threads": self.miner.as_ref().map_or(0, |(m, _)| m.threads()),
                    "hashes": self.miner.as_ref().map_or(0, |(m, _)| m.hashes()),
                    "pooledtx": self.core.mempool().len(),
                }))
            }
            "generatetoaddress" => {
                let count = methods::param_u64(params, 0, "nblocks")?;
                if count > methods::MAX_GENERATE {
                    return Err(RpcError::invalid_params(format!(
                        "at most {} blocks per call",
                        methods::MAX_GENERATE
                    )));
                }
                let address = methods::param_addresses(params, 1, chain.params())?
                    .into_iter()
                    .next()
                    .ok_or_else(|| RpcError::invalid_params("parameter 2 (address) is required"))?;
                let (hashes, outputs) = self
                    .core
                    .generate(count as u32, address.pubkey_hash(), now)
                    .map_err(|e| RpcError::rejected(e.to_string()))?;
                for hash in &hashes {
                    if let Ok(Some(block)) = self.core.chain().block(hash) {
                        self.net.publish_block(&block);
                    }
                }
                self.carry_out(outputs);
                Ok(json!(hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>()))
            }
            "submitblock" => {
                let (answer, block) = methods::submitblock(&mut self.core, params, now)?;
                if let Some(block) = block {
                    self.net.publish_block(&block);
                }
                Ok(answer)
            }
            "stop" => {
                self.stop_requested = true;
                Ok(json!("tinychain-node stopping"))
            }
            _ => Err(RpcError::method_not_found(method)),
        }
    }

    fn on_found_block(&mut self, block: Block) -> anyhow::Result<()> {
        let hash = block.block_hash();
        let (outcome, outputs) = self.core.handle_block(block.clone(), None, unix_now())?;
        if outcome == BlockOutcome::Accepted {
            self.net.publish_block(&block);
        } else {
            warn!(%hash, ?outcome, "own block not accepted");
        }
        self.carry_out(outputs);
        Ok(())
    }

    fn on_net_event(&mut self, event: NetEvent) -> anyhow::Result<()> {
        let now = unix_now();
        match event {
            NetEvent::PeerConnected(peer) => {
                let status = self.status();
                self.net.request(peer, Request::Status(status));
            }
            NetEvent::GossipBlock { block, from, id } => {
                let (outcome, outputs) = self.core.handle_block(block, Some(from), now)?;
                let acceptance = match outcome {
                    BlockOutcome::Accepted => MessageAcceptance::Accept,
                    BlockOutcome::Invalid(_) => MessageAcceptance::Reject,
                    _ => MessageAcceptance::Ignore,
                };
                self.net.report(&id, &from, acceptance);
                self.carry_out(outputs);
            }
            NetEvent::GossipTx { tx, from, id } => {
                let txid = tx.txid();
                let (result, outputs) = self.core.handle_tx(tx, Some(from), now)?;
                let acceptance = match &result {
                    Ok(crate::mempool::Accepted::New { .. }) => MessageAcceptance::Accept,
                    Err(crate::mempool::RejectReason::Invalid(_)) => MessageAcceptance::Reject,
                    _ => MessageAcceptance::Ignore,
                };
                self.net.report(&id, &from, acceptance);
                // The gossiped transaction is forwarded by gossipsub itself.
                let outputs = outputs.into_iter().filter(|o| *o != Output::RelayTx(txid)).collect();
                self.carry_out(outputs);
            }
            NetEvent::Request { peer, request, channel } => {
                let response = match request {
                    Request::Status(status) => {
                        self.on_status(peer, status);
                        Response::Status(self.status())
                    }
                    Request::GetBlocksAfter { locator } => {
                        Response::Blocks(self.core.blocks_after(
                            &locator,
                            MAX_BLOCKS_PER_RESPONSE,
                            MAX_RESPONSE_SIZE - 1024,
                        )?)
                    }
                    Request::GetBlocks(hashes) => {
                        let mut blocks = Vec::new();
                        for hash in hashes.iter().take(MAX_BLOCKS_PER_RESPONSE) {
                            if let Some(block) = self.core.chain().block(hash)? {
                                blocks.push(block);
                            }
                        }
                        Response::Blocks(blocks)
                    }
                };
                self.net.respond(channel, response);
            }
            NetEvent::Response { peer, response } => match response {
                Response::Status(status) => self.on_status(peer, status),
                Response::Blocks(blocks) => self.on_blocks(peer, blocks, now)?,
                Response::Refused(reason) => info!(%peer, reason, "request refused"),
            },
            NetEvent::RequestFailed(peer) => {
                if self.sync_peer == Some(peer) {
                    self.sync_peer = None;
                }
            }
        }
        Ok(())
    }

    fn on_status(&mut self, peer: PeerId, status: Status) {
        if status.genesis != self.core.chain().params().genesis_hash() {
            self.net.ban(peer, "another genesis block");
            return;
        }
        info!(%peer, height = status.height, tip = %status.tip, "peer status");
        self.net.set_status(peer, status);
        self.maybe_sync();
    }

    /// Starts downloading from a peer with more work, if not already doing so.
    fn maybe_sync(&mut self) {
        if self.sync_peer.is_some() {
            return;
        }
        let ours = self.core.chain().tip_entry().chainwork;
        let best = self
            .net
            .statuses()
            .filter(|(_, s)| s.chainwork > ours)
            .max_by_key(|(_, s)| s.chainwork)
            .map(|(p, s)| (*p, *s));
        if let Some((peer, status)) = best {
            info!(%peer, height = self.core.chain().height(), target = status.height, "sync start");
            self.sync_peer = Some(peer);
            self.request_blocks_after(peer);
        }
    }

    fn request_blocks_after(&mut self, peer: PeerId) {
        let locator = self.core.chain().locator();
        self.net.request(peer, Request::GetBlocksAfter { locator });
    }

    fn on_blocks(&mut self, peer: PeerId, blocks: Vec<Block>, now: u64) -> anyhow::Result<()> {
        let received = blocks.len();
        for block in blocks {
            let (outcome, outputs) = self.core.handle_block(block, Some(peer), now)?;
            self.carry_out(outputs);
            if matches!(outcome, BlockOutcome::Invalid(_)) {
                break;
            }
        }
        let ours = self.core.chain().tip_entry().chainwork;
        let theirs = self.net.peer_status(&peer).map(|s| s.chainwork);
        if received > 0 && theirs.is_some_and(|w| w > ours) {
            self.request_blocks_after(peer);
        } else if self.sync_peer == Some(peer) {
            self.sync_peer = None;
            info!(%peer, height = self.core.chain().height(), "sync end");
            // Announce the new tip: peers that lack it fetch what they miss.
            let tip = self.core.chain().tip();
            if let Some(block) = self.core.chain().block(&tip)? {
                self.net.publish_block(&block);
            }
            self.maybe_sync();
        }
        Ok(())
    }

    fn carry_out(&mut self, outputs: Vec<Output<PeerId>>) {
        for output in outputs {
            match output {
                Output::TipChanged { hash, height, disconnected } => {
                    info!(%hash, height, disconnected, "new tip");
                    if let Some((miner, pay_to)) = &self.miner {
                        miner.set_job(self.core.block_template(*pay_to, unix_now()));
                    }
                }
                Output::Penalize { peer, reason } => self.net.penalize(peer, &reason),
                Output::RequestBlock { peer, .. } => {
                    // Fetch everything after our tip from that peer: one block or a long gap.
                    if !self.net.is_waiting_on(&peer) {
                        self.request_blocks_after(peer);
                    }
                }
                Output::RelayTx(txid) => {
                    if let Some(entry) = self.core.mempool().get(&txid) {
                        let tx = entry.tx.clone();
                        self.net.publish_tx(&tx);
                    }
                }
                // Gossiped blocks are forwarded by gossipsub on Accept; our own are
                // published where they are found.
                Output::RelayBlock(_) => {}
            }
        }
    }
}

/// Tells systemd (`Type=notify`) the node's state; outside systemd does nothing.
fn sd_notify(state: &str) {
    if let Err(e) = crate::sd_notify::notify(state) {
        warn!(state, error = %e, "cannot notify the service manager");
    }
}

/// Installs the SIGINT and SIGTERM handlers now (so a signal during start-up is
/// not lost to the default action, which PID 1 in a container would not get)
/// and watches them for the whole run: the first cancels `shutdown`; a second
/// signal, or a shutdown still running after [`SHUTDOWN_LIMIT`], ends the
/// process at once.
fn watch_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::spawn(async move {
        loop {
            let overdue = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_LIMIT).await;
            };
            // Exit codes as a shell reports death by the signal: 128 + its number.
            let (name, code) = tokio::select! {
                _ = interrupt.recv() => ("SIGINT", 130),
                _ = terminate.recv() => ("SIGTERM", 143),
                () = overdue => {
                    error!(limit = ?SHUTDOWN_LIMIT, "shutdown is taking too long: exiting now");
                    std::process::exit(1);
                }
            };
            if shutdown.is_cancelled() {
                warn!(signal = name, "second signal: exiting at once");
                std::process::exit(code);
            }
            info!(signal = name, "signal received: stopping (a second signal exits at once)");
            shutdown.cancel();
        }
    });
    Ok(())
}
