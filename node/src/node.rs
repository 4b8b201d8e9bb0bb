//! The event loop: the one owner of the core, driving it with real time and I/O.
//!
//! Owns the running node: it opens the data directory and store, holds the
//! [`Core`], the libp2p [`Network`] and the miner threads, and turns found
//! blocks, peer messages, the clock's ticks and shutdown signals into core
//! inputs, carrying out the core's outputs (relay, fetch, penalise, new mining
//! jobs). Other tasks reach it only through bounded channels; the metrics
//! endpoint, too, asks it to refresh the gauges from its state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use libp2p::PeerId;
use libp2p::gossipsub::{MessageAcceptance, MessageId};
use tinychain_protocol::keys::Address;
use tinychain_protocol::params::{Network as Chain, Params};
use tinychain_protocol::rpc::{MiningInfo, SetMining};
use tinychain_protocol::{Block, BlockHash, PubkeyHash};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use crate::chain;
use crate::core::{self, BlockOutcome, CompactOutcome, Core, Output, Source};
use crate::datadir::DataDir;
use crate::metrics::{self, GossipTopic, Metrics, Registry};
use crate::miner::{FoundBlock, Miner};
use crate::p2p::protocol::{
    MAX_BLOCKS_PER_RESPONSE, MAX_HEADERS_PER_RESPONSE, MAX_RESPONSE_SIZE, Request, Response, Status,
};
use crate::p2p::{self, NetEvent, Network};
use crate::rpc::table::{Method, NodeMethod};
use crate::rpc::{self, RpcCall, RpcError, methods};
use crate::store::cache::CoinsCache;
use crate::store::redb::RedbStore;
use crate::sync::{self, Action, Sync};

/// How often the miner's template is rebuilt to pick up new transactions.
const TEMPLATE_REFRESH: Duration = Duration::from_secs(5);
/// How often bootstrap peers are re-dialed and sync is reconsidered.
const PEER_MAINTENANCE: Duration = Duration::from_secs(10);
/// Found blocks waiting for the event loop, at most.
const FOUND_QUEUE: usize = 16;
/// Orphan blocks beyond which missing parents are left to headers-first sync.
const MAX_ORPHAN_FETCH: usize = 8;
/// Incomplete compact blocks whose gossip verdict waits for the whole block, at most.
const MAX_INCOMPLETE: usize = 8;
/// RPC requests waiting for the event loop, at most.
const RPC_QUEUE: usize = 64;
/// Metrics refreshes waiting for the event loop, at most.
const REFRESH_QUEUE: usize = 4;
/// Longest a shutdown may take before the process exits anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);
/// Longest the node waits for its connections to close when it stops.
const CLOSE_LIMIT: Duration = Duration::from_secs(3);

/// Mining settings.
#[derive(Debug, Clone)]
pub struct MiningConfig {
    /// Whether to mine.
    pub enabled: bool,
    /// Who the coinbase pays.
    pub pay_to: Option<PubkeyHash>,
    /// Mining threads.
    pub threads: usize,
    /// After finding a block the miner rests this long (zero: never). For
    /// demo networks on regtest, where a block takes a handful of hashes.
    pub min_interval: Duration,
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
    /// The identity, loaded already (`main` loads it first, to name its log
    /// lines); none: loaded from `identity_file`.
    pub keypair: Option<libp2p::identity::Keypair>,
    /// The store's page cache, in bytes.
    pub store_cache_bytes: usize,
    /// The UTXO cache's budget, in bytes (`store.coins_cache_mb`).
    pub coins_cache_bytes: usize,
    /// Where to serve Prometheus metrics over HTTP (none: no endpoint).
    pub metrics: Option<SocketAddr>,
}

/// Returns the current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

type NodeCore = Core<CoinsCache<RedbStore>, PeerId>;

/// The event loop's state.
struct Node {
    core: NodeCore,
    net: Network,
    miner: Option<(Miner, PubkeyHash)>,
    /// What `setmining` needs to start the miner at run time.
    mining: MiningControl,
    /// The miner rests (after a found block) until then.
    miner_rests_until: Option<Instant>,
    /// How long it rests.
    miner_rest: Duration,
    /// The miner waits for the clock (a block on the tip would be too far
    /// ahead of it); logged once per wait.
    mining_waits: bool,
    /// Headers-first block download.
    sync: Sync<PeerId>,
    /// Sync progress for the log: when and at what height it was last reported.
    progress: Option<(Instant, u32)>,
    /// Set by the `stop` RPC.
    stop_requested: bool,
    /// The node's own metrics.
    metrics: Metrics,
    /// The metrics endpoint's bound address, if it serves.
    metrics_addr: Option<SocketAddr>,
    /// Gossiped compact blocks held for their verdict while the whole block is
    /// fetched from their sender (at most [`MAX_INCOMPLETE`]).
    incomplete: HashMap<BlockHash, (MessageId, PeerId)>,
}

/// Runs the node until SIGINT, SIGTERM or the `stop` RPC.
///
/// # Errors
///
/// The data directory, store, network or miner cannot be set up, or the store fails.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let _signals = watch_signals(shutdown.clone())?;
    let datadir = DataDir::open(&config.datadir, config.network)?;
    let keypair = match &config.keypair {
        Some(keypair) => keypair.clone(),
        None => {
            let identity = config
                .identity_file
                .clone()
                .unwrap_or_else(|| datadir.path().join(p2p::IDENTITY_FILE));
            p2p::load_or_create_identity(&identity)?
        }
    };
    // Every line the node writes names it, even with other nodes in the process.
    let span = tracing::info_span!("node", node = %keypair.public().to_peer_id());
    run_node(config, shutdown, datadir, keypair).instrument(span).await
}

/// [`run`], once the data directory is held and the identity known.
async fn run_node(
    config: Config,
    shutdown: CancellationToken,
    datadir: DataDir,
    keypair: libp2p::identity::Keypair,
) -> anyhow::Result<()> {
    let params = Params::new(config.network);
    let genesis = params.genesis_hash();
    let store =
        RedbStore::open_with_cache(&datadir.store_path(), genesis, config.store_cache_bytes)
            .with_context(|| format!("opening {}", datadir.store_path().display()))?;
    let store = CoinsCache::new(store, config.coins_cache_bytes);
    let core: NodeCore =
        Core::open(store, params, config.core.clone(), unix_now()).context("opening the chain")?;
    let p2p_config =
        p2p::Config { ban_file: Some(datadir.path().join("banlist.json")), ..config.p2p.clone() };
    // Metrics are always recorded (atomic counters, cheap); only the endpoint is optional.
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let net = Network::start(keypair, &p2p_config, genesis, &mut registry)?;
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
    let found: FoundBlock = Arc::new(move |block: Block| {
        // The event loop may be shutting down; a lost block then is fine.
        let _ = found_tx.blocking_send(block);
    });
    let mining = MiningControl {
        found: Arc::clone(&found),
        threads: config.mining.threads.max(1),
        pay_to: config.mining.pay_to,
    };
    let miner = match (&config.mining.enabled, config.mining.pay_to) {
        (true, Some(pay_to)) => {
            let miner = Miner::start(config.mining.threads.max(1), found)?;
            info!(threads = miner.threads(), "mining");
            Some((miner, pay_to))
        }
        (true, None) => anyhow::bail!("mining needs an address to pay (--mine-address)"),
        _ => None,
    };
    let mut node = Node {
        core,
        net,
        miner,
        mining,
        miner_rests_until: None,
        miner_rest: config.mining.min_interval,
        mining_waits: false,
        sync: Sync::new(sync::Config::default()),
        progress: None,
        stop_requested: false,
        metrics,
        metrics_addr: None,
        incomplete: HashMap::new(),
    };
    node.refresh_miner();
    let (refresh_tx, mut refresh_rx) = mpsc::channel::<metrics::server::Refresh>(REFRESH_QUEUE);
    let metrics_task = match config.metrics {
        Some(addr) => {
            let listener = metrics::server::bind(addr).await.with_context(|| {
                format!("binding the metrics endpoint to {addr} (metrics.listen)")
            })?;
            let bound = listener.local_addr().context("the metrics endpoint's address")?;
            info!(address = %bound, "metrics listening");
            node.metrics_addr = Some(bound);
            Some(tokio::spawn(
                metrics::server::serve(
                    listener,
                    metrics::server::Config::default(),
                    Arc::new(registry),
                    refresh_tx,
                    shutdown.clone(),
                )
                .in_current_span(),
            ))
        }
        None => None,
    };

    let socket = config.rpc_socket.clone().unwrap_or_else(|| datadir.path().join("rpc.sock"));
    let listener = rpc::server::bind(&socket).await?;
    let (rpc_tx, mut rpc_rx) = mpsc::channel::<RpcCall>(RPC_QUEUE);
    let rpc_task = tokio::spawn(
        rpc::server::serve(listener, rpc::Config::new(socket.clone()), rpc_tx).in_current_span(),
    );
    sd_notify("READY=1");

    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut refresh = tokio::time::interval(TEMPLATE_REFRESH);
    let mut maintenance = tokio::time::interval(PEER_MAINTENANCE);
    loop {
        tokio::select! {
            Some(block) = found_rx.recv() => node.on_found_block(block)?,
            event = node.net.next_event() => node.on_net_event(event)?,
            () = rest_end(node.miner_rests_until) => {
                node.miner_rests_until = None;
                node.refresh_miner();
            }
            _ = ticks.tick() => {
                node.core.tick(unix_now());
                node.net.log_mesh_changes();
                node.run_sync()?;
            }
            _ = refresh.tick() => {
                node.metrics.count_hashes(node.miner.as_ref().map(|(m, _)| m.hashes()));
                let rate = node.metrics.update_hash_rate(Instant::now());
                if node.miner.is_some() {
                    info!(hash_rate = rate as u64, height = node.core.chain().height(), "mining");
                }
                node.refresh_miner();
            }
            _ = maintenance.tick() => {
                node.net.maintain();
                // Refresh every peer's status: a peer that got ahead (after a
                // partition, or while we were busy) is noticed and synced from.
                let now = Instant::now();
                for peer in node.net.connected_peers() {
                    if !node.net.is_waiting_on(&peer) {
                        let ask = node.sync.ask_status(peer, now);
                        node.execute(ask.into_iter().collect());
                    }
                }
                node.report_progress();
            }
            Some(done) = refresh_rx.recv() => {
                node.refresh_metrics();
                let _ = done.send(());
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
    // Its own closes first, each logged; its peers read a goodbye, not an error.
    node.net.close_all("shutting down", CLOSE_LIMIT).await;
    rpc_task.abort();
    let _ = std::fs::remove_file(&socket);
    if let Some(task) = metrics_task {
        // It stops at the cancellation; waiting frees its port before `run` returns.
        let _ = task.await;
    }
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
        let node_method = match Method::parse(method) {
            None => return Err(RpcError::method_not_found(method)),
            Some(Method::Chain(m)) => return methods::chain_method(&self.core, m, params),
            Some(Method::Node(m)) => m,
        };
        let chain = self.core.chain();
        match node_method {
            NodeMethod::GetBlockchainInfo => {
                let best_peer = self.net.statuses().map(|(_, s)| s.height).max().unwrap_or(0);
                let syncing = self.is_syncing();
                methods::to_json(&methods::blockchain_info(&self.core, best_peer, syncing))
            }
            NodeMethod::SendRawTransaction => {
                let (answer, outputs) = methods::sendrawtransaction(&mut self.core, params, now)?;
                self.carry_out(outputs);
                Ok(answer)
            }
            NodeMethod::SubmitBlock => {
                let (answer, outputs) = methods::submitblock(&mut self.core, params, now)?;
                self.carry_out_own(outputs);
                Ok(answer)
            }
            NodeMethod::GetPeerInfo => {
                let mut peers = self.net.peer_info();
                for (peer, info) in &mut peers {
                    if let Some((delivered, in_flight)) = self.sync.peer_stats(peer) {
                        info["sync"] =
                            json!({ "blocks_delivered": delivered, "blocks_in_flight": in_flight });
                    }
                }
                Ok(json!(peers.into_iter().map(|(_, info)| info).collect::<Vec<_>>()))
            }
            NodeMethod::GetNetworkInfo => {
                let mut info = self.net.network_info();
                info["metrics"] = json!(self.metrics_addr.map(|a| a.to_string()));
                Ok(info)
            }
            NodeMethod::GetMiningInfo => {
                let tip = chain.tip_entry();
                methods::to_json(&MiningInfo {
                    blocks: chain.height(),
                    difficulty: methods::difficulty(chain.params(), &tip.header),
                    mining: self.miner.is_some(),
                    threads: self.miner.as_ref().map_or(0, |(m, _)| m.threads() as u64),
                    hashes: self.miner.as_ref().map_or(0, |(m, _)| m.hashes()),
                    pooledtx: self.core.mempool().len() as u64,
                    address: self.mining_address(),
                })
            }
            NodeMethod::SetMining => self.set_mining(params),
            NodeMethod::GenerateToAddress => {
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
                self.carry_out_own(outputs);
                Ok(json!(hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>()))
            }
            NodeMethod::Help => Ok(json!(crate::rpc::table::help_text())),
            NodeMethod::Stop => {
                self.stop_requested = true;
                Ok(json!("tinychain-node stopping"))
            }
        }
    }

    /// The address the miner pays (running or not), if one is known.
    fn mining_address(&self) -> Option<Address> {
        let network = self.core.chain().params().network;
        self.miner
            .as_ref()
            .map(|(_, pay_to)| *pay_to)
            .or(self.mining.pay_to)
            .map(|hash| Address::new(network, hash))
    }

    /// `setmining <on|off> [address]`: starts, re-targets or stops the miner.
    fn set_mining(&mut self, params: &[serde_json::Value]) -> Result<serde_json::Value, RpcError> {
        let on = methods::param_switch(params, 0, "mining")?;
        // The running miner's last hashes, before it may stop.
        self.metrics.count_hashes(self.miner.as_ref().map(|(m, _)| m.hashes()));
        let address = match params.get(1) {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => {
                methods::param_addresses(params, 1, self.core.chain().params())?.into_iter().next()
            }
        };
        if let Some(address) = address {
            self.mining.pay_to = Some(address.pubkey_hash());
        }
        match (on, self.miner.take()) {
            (false, Some((miner, _))) => {
                miner.shutdown();
                info!("mining stopped (setmining)");
            }
            (false, None) => {}
            (true, Some((miner, running))) => {
                let pay_to = self.mining.pay_to.unwrap_or(running);
                self.miner = Some((miner, pay_to));
                self.refresh_miner();
            }
            (true, None) => {
                let pay_to = self.mining.pay_to.ok_or_else(|| {
                    RpcError::invalid_params(
                        "the node has no mining address: give one (setmining true <address>)",
                    )
                })?;
                let found = Arc::clone(&self.mining.found);
                let miner = Miner::start(self.mining.threads, found)
                    .map_err(|e| RpcError::internal(format!("starting the miner: {e}")))?;
                info!(threads = miner.threads(), "mining (setmining)");
                self.miner = Some((miner, pay_to));
                self.refresh_miner();
            }
        }
        methods::to_json(&SetMining {
            mining: self.miner.is_some(),
            threads: self.miner.as_ref().map_or(0, |(m, _)| m.threads() as u64),
            address: self.mining_address(),
        })
    }

    /// Gives the miner a fresh template on the tip, unless it is resting. When
    /// a block on the tip could not be valid yet (its time would be too far
    /// ahead of the clock: see [`Core::mining_blocked_until`]), the miner
    /// waits until it can be, and says so once.
    fn refresh_miner(&mut self) {
        let Some((miner, pay_to)) = &self.miner else { return };
        if self.miner_rests_until.is_some() {
            return;
        }
        let now = unix_now();
        if let Some(until) = self.core.mining_blocked_until(now) {
            miner.pause();
            if !self.mining_waits {
                info!(
                    limit_s = self.core.chain().params().max_future_block_time,
                    now,
                    resumes_at = until,
                    "mining waits: the next block's time (after the median time past) \
                     would be too far ahead of the clock"
                );
                self.mining_waits = true;
            }
            self.miner_rests_until = Some(Instant::now() + Duration::from_secs(until - now));
            return;
        }
        if std::mem::take(&mut self.mining_waits) {
            info!("mining resumes");
        }
        miner.set_job(self.core.block_template(*pay_to, now));
    }

    fn on_found_block(&mut self, block: Block) -> anyhow::Result<()> {
        let hash = block.block_hash();
        let (outcome, outputs) = self.core.handle_block(block, Source::Local, unix_now())?;
        if outcome == BlockOutcome::Accepted {
            if !self.miner_rest.is_zero()
                && let Some((miner, _)) = &self.miner
            {
                miner.pause();
                self.miner_rests_until = Some(Instant::now() + self.miner_rest);
            }
        } else {
            warn!(%hash, %outcome, "own block not accepted");
        }
        self.carry_out_own(outputs);
        Ok(())
    }

    fn on_net_event(&mut self, event: NetEvent) -> anyhow::Result<()> {
        let now = unix_now();
        match event {
            NetEvent::PeerConnected(peer) => {
                let ask = self.sync.ask_status(peer, Instant::now());
                self.execute(ask.into_iter().collect());
            }
            NetEvent::GossipBlock { block, from, id } => {
                let hash = block.block_hash();
                let (outcome, outputs) =
                    match self.core.handle_compact_block(&block, Some(from), now)? {
                        (CompactOutcome::Block(outcome), outputs) => (outcome, outputs),
                        (CompactOutcome::Incomplete { missing }, _) => {
                            self.fetch_incomplete(hash, id, from, missing);
                            return Ok(());
                        }
                    };
                if matches!(outcome, BlockOutcome::Accepted | BlockOutcome::Duplicate) {
                    self.sync.peer_has(&from, hash, self.core.chain())?;
                }
                // Forwarded by gossipsub itself when the core would relay it
                // (connected, so fully validated), never when merely stored.
                let relay = outputs.contains(&Output::RelayBlock(hash));
                let outputs: Vec<_> =
                    outputs.into_iter().filter(|o| *o != Output::RelayBlock(hash)).collect();
                let acceptance = match outcome {
                    BlockOutcome::Invalid(_) => MessageAcceptance::Reject,
                    _ if relay => MessageAcceptance::Accept,
                    _ => MessageAcceptance::Ignore,
                };
                self.net.report(GossipTopic::Block, &id, &from, acceptance);
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
                self.net.report(GossipTopic::Tx, &id, &from, acceptance);
                // The gossiped transaction is forwarded by gossipsub itself.
                let outputs = outputs.into_iter().filter(|o| *o != Output::RelayTx(txid)).collect();
                self.carry_out(outputs);
            }
            NetEvent::Request { peer, request, channel } => {
                let response = self.answer(peer, request)?;
                self.net.respond(channel, response);
            }
            NetEvent::Response { peer, request, response } => {
                self.on_response(peer, request, response, now)?;
                self.run_sync()?;
            }
            NetEvent::RequestFailed { peer, request } => {
                self.request_failed(peer, &request);
                self.run_sync()?;
            }
            NetEvent::PeerDisconnected(peer) => {
                self.sync.remove_peer(&peer);
                self.run_sync()?;
            }
        }
        Ok(())
    }

    /// Answers a peer's request. Requests over the protocol's limits never
    /// get here: the codec reads them as malformed, and the network refuses
    /// them and penalises their sender.
    fn answer(&mut self, peer: PeerId, request: Request) -> anyhow::Result<Response> {
        Ok(match request {
            Request::Status(status) => {
                self.on_status(peer, status)?;
                Response::Status(self.status())
            }
            Request::GetHeaders { locator } => Response::Headers(
                self.core.chain().headers_after(&locator, MAX_HEADERS_PER_RESPONSE)?,
            ),
            Request::GetBlocks(hashes) => Response::Blocks(self.core.blocks(
                &hashes,
                MAX_BLOCKS_PER_RESPONSE,
                MAX_RESPONSE_SIZE - 1024,
            )?),
        })
    }

    fn on_response(
        &mut self,
        peer: PeerId,
        request: Request,
        response: Response,
        now: u64,
    ) -> anyhow::Result<()> {
        match (request, response) {
            (Request::Status(_), Response::Status(status)) => {
                self.sync.status_answered(&peer);
                self.on_status(peer, status)?;
            }
            (Request::GetHeaders { .. }, Response::Headers(headers)) => {
                let count = headers.len();
                let outcome = if count > MAX_HEADERS_PER_RESPONSE {
                    chain::HeadersOutcome::default()
                } else {
                    self.core.handle_headers(&headers, now)?
                };
                if outcome.new > 0 {
                    info!(%peer, new = outcome.new, best_header = self.core.chain().index().best_header_height(), "headers received");
                }
                if let Some(m) =
                    self.sync.headers_received(&peer, count, &outcome, self.core.chain())?
                {
                    self.net.penalize(peer, &m.reason);
                }
            }
            (Request::GetBlocks(requested), Response::Blocks(blocks)) => {
                let delivered: Vec<_> = blocks.iter().map(Block::block_hash).collect();
                if delivered.iter().any(|h| !requested.contains(h)) {
                    self.net.penalize(peer, "blocks nobody asked for");
                }
                for (block, hash) in blocks.into_iter().zip(&delivered) {
                    if !requested.contains(hash) {
                        continue;
                    }
                    // Blocks the downloader asked for are on the best header
                    // chain; the others (an orphan's parent, a compact block's
                    // whole form) came by gossip in effect.
                    let source = if self.sync.is_in_flight(&peer, hash) {
                        Source::Requested(peer)
                    } else {
                        Source::Unrequested(peer)
                    };
                    let (outcome, mut outputs) = self.core.handle_block(block, source, now)?;
                    if self.incomplete.contains_key(hash) {
                        // Forwarded below as the gossiped compact block it completes.
                        outputs.retain(|o| *o != Output::RelayBlock(*hash));
                    }
                    self.carry_out(outputs);
                    // Forwarded once connected, so fully validated (new, or arrived meanwhile).
                    let acceptance = match outcome {
                        BlockOutcome::Invalid(_) => MessageAcceptance::Reject,
                        _ if self.core.is_valid(hash)? => MessageAcceptance::Accept,
                        _ => MessageAcceptance::Ignore,
                    };
                    self.settle_incomplete(hash, acceptance);
                    if matches!(outcome, BlockOutcome::Invalid(_)) {
                        break;
                    }
                }
                for hash in &requested {
                    self.settle_incomplete(hash, MessageAcceptance::Ignore);
                }
                self.sync.blocks_received(&peer, &requested, &delivered);
            }
            (request, Response::Refused(reason)) => {
                info!(%peer, reason, "request refused");
                match &request {
                    Request::GetBlocks(hashes) => {
                        for hash in hashes {
                            self.settle_incomplete(hash, MessageAcceptance::Ignore);
                        }
                        self.sync.request_refused(&peer, hashes, Instant::now());
                    }
                    Request::GetHeaders { .. } => {
                        self.sync.request_refused(&peer, &[], Instant::now());
                    }
                    Request::Status(_) => self.sync.status_answered(&peer),
                }
            }
            (request, _) => {
                self.net.penalize(peer, "an answer that does not fit the question");
                self.request_failed(peer, &request);
            }
        }
        Ok(())
    }

    /// Holds a gossiped compact block's verdict and asks its sender for the
    /// whole block (Bitcoin's `getblocktxn`, simplified); over
    /// [`MAX_INCOMPLETE`] held, or a second message for the same block, it is
    /// ignored instead.
    fn fetch_incomplete(&mut self, hash: BlockHash, id: MessageId, from: PeerId, missing: usize) {
        if self.incomplete.len() >= MAX_INCOMPLETE || self.incomplete.contains_key(&hash) {
            self.net.report(GossipTopic::Block, &id, &from, MessageAcceptance::Ignore);
            return;
        }
        debug!(%hash, peer = %from, missing, "compact block incomplete: fetching the block");
        self.incomplete.insert(hash, (id, from));
        self.net.request(from, Request::GetBlocks(vec![hash]));
    }

    /// Reports the verdict on a held compact block, if `hash` is one.
    fn settle_incomplete(&mut self, hash: &BlockHash, acceptance: MessageAcceptance) {
        if let Some((id, from)) = self.incomplete.remove(hash) {
            self.net.report(GossipTopic::Block, &id, &from, acceptance);
        }
    }

    /// Frees what a failed or refused request held in the downloader.
    fn request_failed(&mut self, peer: PeerId, request: &Request) {
        if let Request::GetBlocks(hashes) = request {
            for hash in hashes {
                self.settle_incomplete(hash, MessageAcceptance::Ignore);
            }
        }
        match request {
            Request::GetBlocks(hashes) => self.sync.request_failed(&peer, hashes),
            Request::GetHeaders { .. } => self.sync.request_failed(&peer, &[]),
            Request::Status(_) => self.sync.status_answered(&peer),
        }
    }

    fn on_status(&mut self, peer: PeerId, status: Status) -> anyhow::Result<()> {
        if status.genesis != self.core.chain().params().genesis_hash() {
            self.net.ban(peer, "another genesis block");
            return Ok(());
        }
        // A peer's first status is news; the later ones (one per block) are not.
        if self.net.peer_status(&peer).is_none() {
            info!(%peer, height = status.height, tip = %status.tip, "peer status");
        } else {
            debug!(%peer, height = status.height, tip = %status.tip, "peer status");
        }
        self.net.set_status(peer, status);
        self.sync.set_status(peer, status, self.core.chain())?;
        self.run_sync()
    }

    /// Tells whether the node knows of a chain with more work than its tip
    /// (from headers or peers' claims): initial block download or catch-up.
    fn is_syncing(&self) -> bool {
        let chain = self.core.chain();
        let ours = chain.tip_entry().chainwork;
        chain.index().best_header().is_some_and(|(_, e)| e.chainwork > ours)
            || self.sync.best_unknown_claim().is_some_and(|w| w > ours)
    }

    /// Carries out the downloader's decisions.
    fn execute(&mut self, actions: Vec<Action<PeerId>>) {
        for action in actions {
            match action {
                Action::GetHeaders { peer, locator } => {
                    debug!(%peer, "requesting headers");
                    self.net.request(peer, Request::GetHeaders { locator });
                }
                Action::GetBlocks { peer, hashes } => {
                    self.net.request(peer, Request::GetBlocks(hashes));
                }
                Action::GetStatus { peer } => {
                    self.net.request(peer, Request::Status(self.status()))
                }
                Action::Drop { peer, reason } => self.net.disconnect(peer, &reason),
            }
        }
    }

    /// Asks peers for headers and blocks as the downloader decides.
    fn run_sync(&mut self) -> anyhow::Result<()> {
        let actions = self.sync.schedule(self.core.chain(), Instant::now())?;
        self.execute(actions);
        if self.progress.is_none() && self.is_syncing() {
            let height = self.core.chain().height();
            info!(
                height,
                best_header = self.core.chain().index().best_header_height(),
                "sync start"
            );
            self.progress = Some((Instant::now(), height));
        } else if self.progress.is_some() && !self.is_syncing() {
            self.report_progress();
            info!(height = self.core.chain().height(), hash = %self.core.chain().tip(), "sync end");
            self.progress = None;
        }
        Ok(())
    }

    /// Sets the gauges from the node's state (a scrape asked for it).
    fn refresh_metrics(&mut self) {
        let chain = self.core.chain();
        let mempool = self.core.mempool();
        let (peers_inbound, peers_outbound) = self.net.peer_directions();
        let snapshot = metrics::Snapshot {
            chain_height: chain.height(),
            best_header_height: chain.index().best_header_height(),
            chainwork: chain.tip_entry().chainwork.to_f64(),
            peers_inbound,
            peers_outbound,
            banned_peers: self.net.banned_count(),
            mempool_transactions: mempool.len(),
            mempool_bytes: mempool.total_bytes(),
            orphan_transactions: mempool.orphan_count(),
            orphan_blocks: self.core.orphan_block_count(),
            syncing: self.is_syncing(),
            blocks_in_flight: self.sync.blocks_in_flight(),
            best_peer_height: self.net.statuses().map(|(_, s)| s.height).max().unwrap_or(0),
            miner_threads: self.miner.as_ref().map_or(0, |(m, _)| m.threads()),
        };
        self.metrics.observe(&snapshot);
        self.metrics.count_hashes(self.miner.as_ref().map(|(m, _)| m.hashes()));
    }

    /// Logs sync progress: heights and blocks per second since the last report.
    fn report_progress(&mut self) {
        let Some((since, from)) = self.progress else { return };
        let chain = self.core.chain();
        let height = chain.height();
        let seconds = since.elapsed().as_secs_f64().max(0.001);
        info!(
            height,
            best_header = chain.index().best_header_height(),
            blocks_per_s = (f64::from(height.saturating_sub(from)) / seconds * 10.0).round() / 10.0,
            in_flight = self.sync.blocks_in_flight(),
            peers = self.net.peer_count(),
            "sync progress"
        );
        self.progress = Some((Instant::now(), height));
    }

    /// Carries out the outputs of handing the core a block of our own (mined,
    /// generated or submitted over RPC): its blocks are published once, even
    /// while syncing, since no peer can have them yet.
    fn carry_out_own(&mut self, outputs: Vec<Output<PeerId>>) {
        let (relay, rest): (Vec<_>, Vec<_>) =
            outputs.into_iter().partition(|o| matches!(o, Output::RelayBlock(_)));
        self.carry_out(rest);
        for output in relay {
            if let Output::RelayBlock(hash) = output
                && let Ok(Some(block)) = self.core.chain().block(&hash)
            {
                // The origin of the block's propagation, for `tinychain-node topology`.
                if let Ok(Some(entry)) = self.core.chain().index_entry(&hash) {
                    info!(%hash, height = entry.height, "block mined");
                }
                self.net.publish_block(&block);
            }
        }
    }

    fn carry_out(&mut self, outputs: Vec<Output<PeerId>>) {
        for output in outputs {
            match output {
                Output::TipChanged { hash, height, disconnected, connected, signatures_cached } => {
                    self.metrics.tip_changed(connected, disconnected, signatures_cached);
                    if self.progress.is_some() {
                        debug!(%hash, height, disconnected, "new tip");
                    } else {
                        info!(%hash, height, disconnected, "new tip");
                    }
                    self.refresh_miner();
                }
                Output::Penalize { peer, reason } => self.net.penalize(peer, &reason),
                Output::RequestBlock { peer, hash } => {
                    // A gossiped block's parent is missing. A short gap is fetched by
                    // hash; the peer's status tells whether it is ahead by more, and
                    // then headers-first sync takes over.
                    let fetch =
                        !self.is_syncing() && self.core.orphan_block_count() <= MAX_ORPHAN_FETCH;
                    let actions = self.sync.orphan_parent(peer, hash, fetch, Instant::now());
                    self.execute(actions);
                }
                Output::RelayTx(txid) => {
                    if let Some(entry) = self.core.mempool().get(&txid) {
                        let tx = entry.tx.clone();
                        self.net.publish_tx(&tx);
                    }
                }
                // New blocks that did not arrive by gossip (fetched, or connected out
                // of the orphan pool) are published; while syncing, nobody needs them.
                // Publishing a block peers have is a no-op (content-addressed ids).
                Output::RelayBlock(hash) => {
                    if !self.is_syncing()
                        && let Ok(Some(block)) = self.core.chain().block(&hash)
                    {
                        self.net.publish_block(&block);
                    }
                }
            }
        }
    }
}

/// What the event loop keeps to start the miner at run time (`setmining`).
struct MiningControl {
    /// Where the miner threads send the blocks they find.
    found: FoundBlock,
    /// Threads to start.
    threads: usize,
    /// The address to pay when none is given (`--mine-address` or the last `setmining`).
    pay_to: Option<PubkeyHash>,
}

/// Completes when the miner's rest ends; never if it is not resting.
async fn rest_end(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until.into()).await,
        None => std::future::pending().await,
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
///
/// The watcher stops when the returned guard drops (at the end of [`run`]), so
/// a node run inside a longer-lived process (tests, benchmarks) never ends it.
fn watch_signals(shutdown: CancellationToken) -> anyhow::Result<AbortOnDrop> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    Ok(AbortOnDrop(tokio::spawn(async move {
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
    })))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
