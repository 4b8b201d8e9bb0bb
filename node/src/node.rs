//! The event loop: real time and I/O around the node's state machine.
//!
//! Owns the running node: it opens the data directory and store, holds the
//! [`machine::Node`], the libp2p [`Network`] and the miner threads, turns found
//! blocks, swarm events, RPC calls and the clock's ticks into
//! [`machine::Input`]s, and carries out every [`machine::Output`] in one place
//! (`EventLoop::execute`), whatever input produced it. It makes no protocol
//! decision (`docs/architecture.md`). Other tasks reach it only through bounded
//! channels; the metrics endpoint, too, asks it to refresh the gauges.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use libp2p::request_response::ResponseChannel;
use tinychain_protocol::params::{Network as Chain, Params};
use tinychain_protocol::{Block, PubkeyHash};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::core;
use crate::datadir::DataDir;
use crate::machine::{self, Host, InboundId, Input, Output, RpcId, Time};
use crate::metrics::{self, Metrics, Registry};
use crate::miner::{FoundBlock, Miner};
use crate::p2p::protocol::Response;
use crate::p2p::{self, NetEvent, Network};
use crate::rpc::{self, RpcCall, RpcError};
use crate::store::cache::CoinsCache;
use crate::store::redb::RedbStore;

/// How often the machine is ticked (it keeps its own slower schedules).
const TICK: Duration = Duration::from_secs(1);
/// How often the hash rate is measured and logged.
const HASH_RATE: Duration = machine::TEMPLATE_REFRESH;
/// How often the network tops up its peers and lifts ended bans.
const PEER_MAINTENANCE: Duration = machine::PEER_MAINTENANCE;
/// Found blocks waiting for the event loop, at most.
const FOUND_QUEUE: usize = 16;
/// RPC requests waiting for the event loop, at most.
const RPC_QUEUE: usize = 64;
/// Metrics refreshes waiting for the event loop, at most.
const REFRESH_QUEUE: usize = 4;
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
    /// The block downloader.
    pub sync: crate::sync::Config,
    /// The RPC socket path (default: `rpc.sock` in the network's data directory).
    pub rpc_socket: Option<PathBuf>,
    /// The identity, loaded already (`main` loads it first, to name its log
    /// lines); none: loaded from `p2p.identity_file`.
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

/// Both clocks, read once, for one input.
fn now() -> Time {
    Time::new(unix_now(), Instant::now())
}

type Machine = machine::Node<CoinsCache<RedbStore>>;

/// The event loop's state: the machine and the I/O it drives.
struct EventLoop {
    machine: Machine,
    net: Network,
    /// The miner threads, while they run.
    miner: Option<Miner>,
    /// Where the miner threads send the blocks they find.
    found: FoundBlock,
    /// The node's own metrics.
    metrics: Metrics,
    /// The metrics endpoint's bound address, if it serves.
    metrics_addr: Option<SocketAddr>,
    /// Inbound requests waiting for their answer (the machine answers each
    /// in the same step, so this holds at most one).
    inbound: HashMap<InboundId, ResponseChannel<Response>>,
    /// RPC calls waiting for their answer (likewise at most one).
    replies: HashMap<RpcId, oneshot::Sender<Result<serde_json::Value, RpcError>>>,
    /// The last id handed out, for inbound requests and RPC calls.
    last_id: u64,
    /// Set by the `stop` RPC.
    stop_requested: bool,
    /// The miner rests until then ([`Output::RestMiner`]).
    miner_rests_until: Option<Instant>,
}

/// Runs the node until SIGINT, SIGTERM or the `stop` RPC.
///
/// # Errors
///
/// The data directory, store, network or miner cannot be set up, or the store fails.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let _signals = crate::signals::watch(shutdown.clone())?;
    let datadir = DataDir::open(&config.datadir, config.network)?;
    let keypair = match &config.keypair {
        Some(keypair) => keypair.clone(),
        None => {
            let identity = config
                .p2p
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

impl Config {
    /// The machine's settings from the node's.
    pub fn machine(&self) -> machine::Config {
        machine::Config {
            core: self.core.clone(),
            sync: self.sync.clone(),
            rate_limit: self.p2p.rate_limit,
            mine: self.mining.enabled,
            pay_to: self.mining.pay_to,
            threads: self.mining.threads,
            miner_rest: self.mining.min_interval,
        }
    }
}

/// [`run`], once the data directory is held and the identity known.
async fn run_node(
    config: Config,
    shutdown: CancellationToken,
    datadir: DataDir,
    keypair: libp2p::identity::Keypair,
) -> anyhow::Result<()> {
    if config.mining.enabled && config.mining.pay_to.is_none() {
        anyhow::bail!("mining needs an address to pay (--mine-address)");
    }
    let params = Params::new(config.network);
    let genesis = params.genesis_hash();
    let store =
        RedbStore::open_with_cache(&datadir.store_path(), genesis, config.store_cache_bytes)
            .with_context(|| format!("opening {}", datadir.store_path().display()))?;
    let store = CoinsCache::new(store, config.coins_cache_bytes);
    let machine =
        Machine::open(store, params, config.machine(), now()).context("opening the chain")?;
    let p2p_config =
        p2p::Config { ban_file: Some(datadir.path().join("banlist.json")), ..config.p2p.clone() };
    // Metrics are always recorded (atomic counters, cheap); only the endpoint is optional.
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let net = Network::start(keypair, &p2p_config, genesis, &mut registry)?;
    let chain = machine.core().chain();
    info!(
        network = %config.network,
        datadir = %datadir.path().display(),
        peer_id = %net.local_peer_id(),
        height = chain.height(),
        tip = %chain.tip(),
        mempool = machine.core().mempool().len(),
        "node started"
    );

    let (found_tx, mut found_rx) = mpsc::channel::<Block>(FOUND_QUEUE);
    let found: FoundBlock = Arc::new(move |block: Block| {
        // The event loop may be shutting down; a lost block then is fine.
        let _ = found_tx.blocking_send(block);
    });
    let mut node = EventLoop {
        machine,
        net,
        miner: None,
        found,
        metrics,
        metrics_addr: None,
        inbound: HashMap::new(),
        replies: HashMap::new(),
        last_id: 0,
        stop_requested: false,
        miner_rests_until: None,
    };
    // The first tick starts the miner (if configured) and gives it its job.
    node.feed(Input::Tick)?;
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

    let mut ticks = tokio::time::interval(TICK);
    let mut hash_rate = tokio::time::interval(HASH_RATE);
    let mut maintenance = tokio::time::interval(PEER_MAINTENANCE);
    while !node.stop_requested {
        tokio::select! {
            Some(block) = found_rx.recv() => node.feed(Input::FoundBlock(block))?,
            event = node.net.next_event() => node.on_net_event(event)?,
            () = wake_at(node.machine.next_wake()) => node.feed(Input::Tick)?,
            () = wake_at(node.miner_rests_until) => {
                node.miner_rests_until = None;
                node.feed(Input::MinerRested)?;
            }
            _ = ticks.tick() => {
                node.net.log_mesh_changes();
                node.feed(Input::Tick)?;
            }
            _ = hash_rate.tick() => node.log_hash_rate(),
            _ = maintenance.tick() => node.net.maintain(),
            Some(done) = refresh_rx.recv() => {
                node.refresh_metrics();
                let _ = done.send(());
            }
            Some(call) = rpc_rx.recv() => node.on_rpc(call)?,
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
    if let Some(miner) = node.miner.take() {
        miner.shutdown();
    }
    let EventLoop { mut machine, net, .. } = node;
    drop(net);
    machine.save_mempool().context("saving the mempool")?;
    let chain = machine.core().chain();
    info!(height = chain.height(), tip = %chain.tip(), "stopped");
    // The store closes and the directory lock is released as `machine` and `datadir` drop.
    Ok(())
}

impl EventLoop {
    /// Hands the machine one input at the current time and carries out its outputs.
    fn feed(&mut self, input: Input) -> anyhow::Result<()> {
        for output in self.machine.handle(now(), input)? {
            self.execute(output);
        }
        Ok(())
    }

    /// Hands a swarm event to the machine, keeping a request's answer channel.
    fn on_net_event(&mut self, event: NetEvent) -> anyhow::Result<()> {
        let input = match event {
            NetEvent::Input(input) => input,
            NetEvent::Request { peer, request, channel } => {
                let id = self.next_id();
                self.inbound.insert(id, channel);
                Input::Request { peer, id, request }
            }
        };
        self.feed(input)
    }

    /// Hands the machine an RPC call, with the swarm's and the miner's facts
    /// when its answer shows them.
    fn on_rpc(&mut self, call: RpcCall) -> anyhow::Result<()> {
        let host = if call.command.reads_host() { self.host() } else { Host::default() };
        let id = self.next_id();
        self.replies.insert(id, call.reply);
        self.feed(Input::Rpc { id, command: call.command, host })
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// The facts of the swarm and the miner an RPC answer may show.
    fn host(&self) -> Host {
        let mut network = self.net.network_info();
        network["metrics"] = serde_json::json!(self.metrics_addr.map(|a| a.to_string()));
        Host {
            peers: self.net.peer_info(),
            network,
            hashes: self.miner.as_ref().map_or(0, Miner::hashes),
        }
    }

    /// Carries out one output of the machine, the same way whatever input produced it.
    fn execute(&mut self, output: Output) {
        match output {
            Output::Publish { topic, data } => self.net.publish(topic, data),
            Output::GossipVerdict { topic, id, from, acceptance } => {
                self.net.report(topic, &id, &from, acceptance);
            }
            Output::SendRequest { peer, request } => self.net.request(peer, request),
            Output::Respond { id, response } => {
                if let Some(channel) = self.inbound.remove(&id) {
                    self.net.respond(channel, response);
                }
            }
            Output::Disconnect { peer, reason } => self.net.disconnect(peer, &reason),
            Output::Penalise { peer, score, reason } => {
                warn!(%peer, score, reason, "peer penalised");
            }
            Output::Ban { peer, reason } => self.net.ban(peer, &reason),
            Output::Reply { id, result } => {
                if let Some(reply) = self.replies.remove(&id) {
                    // The client may have gone; nothing to do then.
                    let _ = reply.send(result);
                }
            }
            Output::StartMiner { threads } => self.start_miner(threads),
            Output::StopMiner => {
                if let Some(miner) = self.miner.take() {
                    // The running miner's last hashes, before it stops.
                    self.metrics.count_hashes(Some(miner.hashes()));
                    miner.shutdown();
                }
            }
            Output::MiningJob(template) => {
                if let Some(miner) = &self.miner {
                    miner.set_job(template);
                }
            }
            Output::PauseMiner => {
                if let Some(miner) = &self.miner {
                    miner.pause();
                }
            }
            Output::RestMiner(rest) => {
                if let Some(miner) = &self.miner {
                    miner.pause();
                }
                self.miner_rests_until = Some(Instant::now() + rest);
            }
            Output::TipChanged { connected, disconnected, signatures_cached } => {
                self.metrics.tip_changed(connected, disconnected, signatures_cached);
            }
            Output::Stop => self.stop_requested = true,
        }
    }

    fn start_miner(&mut self, threads: usize) {
        if self.miner.is_some() {
            return;
        }
        match Miner::start(threads, Arc::clone(&self.found)) {
            Ok(miner) => self.miner = Some(miner),
            Err(e) => error!(error = %e, threads, "cannot start the miner threads"),
        }
    }

    /// Measures the miner's hash rate; logs it while mining.
    fn log_hash_rate(&mut self) {
        self.metrics.count_hashes(self.miner.as_ref().map(Miner::hashes));
        let rate = self.metrics.update_hash_rate(Instant::now());
        if self.miner.is_some() {
            let height = self.machine.core().chain().height();
            info!(hash_rate = rate as u64, height, "mining");
        }
    }

    /// Sets the gauges from the node's state (a scrape asked for it).
    fn refresh_metrics(&mut self) {
        let core = self.machine.core();
        let chain = core.chain();
        let mempool = core.mempool();
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
            orphan_blocks: core.orphan_block_count(),
            syncing: self.machine.is_syncing(),
            blocks_in_flight: self.machine.sync().blocks_in_flight(),
            best_peer_height: self.machine.best_peer_height(),
            miner_threads: self.miner.as_ref().map_or(0, Miner::threads),
        };
        self.metrics.observe(&snapshot);
        self.metrics.count_hashes(self.miner.as_ref().map(Miner::hashes));
    }
}

/// Completes at `until`; never if there is none.
async fn wake_at(until: Option<Instant>) {
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
