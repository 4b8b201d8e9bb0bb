//! The simulator: N machines, a network between them, virtual time and one seeded RNG.
//!
//! Owns the event queue (ordered by virtual time, then by the order events were
//! made, so one seed gives one run), each node's host state (its machine, its
//! store, gossip's seen and pending messages, peer scores, clock skew, role),
//! the links and the faults. It plays the part of the event loop and libp2p
//! for every node: it delivers inputs, carries out outputs, floods gossip
//! through the validation verdicts, answers request ids, and draws who mines
//! when (an exponential time to the next block, the finder chosen by hash
//! share; the block's nonce is then found on regtest's trivial target).
//! Every event it carries out is written to the event log.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tinychain_node::p2p::protocol::{Request, Response};
use tinychain_protocol::keys::PrivateKey;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::sighash::sign_all;
use tinychain_protocol::{Amount, Block, BlockHash, OutPoint, PubkeyHash, Transaction, TxOut};

use crate::adversary::{self, Role};
use crate::machine::{Acceptance, Gossip, Input, Machine, MessageId, Now, Output, Peer, Snapshot};
use crate::net::{LinkModel, Links};
use crate::node_machine::NodeMachine;
use crate::rng::Rng;
use crate::store::SharedStore;

/// The unix time at which every simulation starts (any time after regtest's genesis).
pub const START_UNIX: u64 = 1_900_000_000;
/// A request unanswered this long fails (libp2p request-response's timeout).
const REQUEST_TIMEOUT: u64 = 10_000_000;
/// How long gossip remembers a message id (gossipsub's duplicate cache).
const SEEN_TTL: u64 = 120_000_000;
/// Score lost per penalty, and the score at which a peer is banned (p2p/peers.rs).
const PENALTY: i32 = 50;
const BAN_SCORE: i32 = -100;

/// Settings of a simulation.
#[derive(Debug, Clone)]
pub struct Config {
    /// Nodes.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Links each node opens to random others (its peers are these and those
    /// opened to it).
    pub outbound: usize,
    /// How links behave.
    pub links: LinkModel,
    /// Mean time between blocks over the whole network, seconds (0: no mining).
    pub block_interval: f64,
    /// Each node's share of the hash rate (missing entries: 0).
    pub hash_shares: Vec<f64>,
    /// Each node's role (missing entries: honest).
    pub roles: Vec<Role>,
    /// Each node's clock error, seconds (missing entries: 0).
    pub skew: Vec<i64>,
    /// Size every mined block is counted as on the wire and in CPU, bytes (0:
    /// its real size). The block itself stays a coinbase-only block; see
    /// `docs/simulation.md` for what this models.
    pub virtual_block_bytes: u64,
    /// Whether blocks are gossiped in compact form (a virtual block then
    /// counts as its real compact form plus a 32-byte txid per 250 virtual
    /// bytes, its transactions taken to be in every mempool); otherwise whole.
    pub compact_blocks: bool,
    /// CPU time a node spends per byte of block it validates, seconds (a
    /// block is counted at its virtual size).
    pub cpu_per_block_byte: f64,
    /// CPU time a node spends per block it handles, seconds, besides the bytes.
    pub cpu_per_block: f64,
    /// Mean seconds between transactions made by the nodes' wallets (0: none).
    pub tx_interval: f64,
    /// Keep every event's line (for the determinism test); otherwise only a hash.
    pub keep_log: bool,
}

impl Config {
    /// A small honest network on LAN links where every node mines equally.
    pub fn small(nodes: usize, seed: u64) -> Config {
        Config {
            nodes,
            seed,
            outbound: 4,
            links: LinkModel::lan(),
            block_interval: 10.0,
            hash_shares: vec![1.0; nodes],
            roles: Vec::new(),
            skew: Vec::new(),
            virtual_block_bytes: 0,
            compact_blocks: true,
            cpu_per_block_byte: 0.0,
            cpu_per_block: 0.0,
            tx_interval: 0.0,
            keep_log: false,
        }
    }
}

/// A fault or a change of scenario, scheduled at a time.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Cut every link between nodes of different groups (group of node i: `groups[i]`).
    Partition(Vec<u8>),
    /// Bring every link up again (except to crashed or banned nodes).
    Heal,
    /// The node crashes: its memory is lost, its store kept.
    Crash(Peer),
    /// The node starts again on its store.
    Restart(Peer),
    /// Sets the loss probability of every link.
    Loss(f64),
    /// Stops or restarts mining.
    Mining(bool),
}

/// A gossip, request or response on a link.
#[derive(Debug, Clone)]
enum Wire {
    Gossip(MessageId, Gossip),
    Request(u64, Request),
    Response(u64, Response),
}

#[derive(Debug)]
enum Event {
    Deliver { from: Peer, to: Peer, wire: Wire },
    Tick(Peer),
    Mine,
    Fault(Fault),
    RequestTimeout(u64),
    Adversary(Peer),
    Release { node: Peer, block: Box<Block> },
    Wallet,
}

/// A node as the simulator holds it.
struct Host<M> {
    machine: Option<M>,
    store: SharedStore,
    role: Role,
    skew: i64,
    share: f64,
    pay_to: PubkeyHash,
    key: PrivateKey,
    job: Option<Block>,
    /// Gossip ids seen, and when (oldest first), for the duplicate cache.
    seen: HashSet<MessageId>,
    seen_order: VecDeque<(u64, MessageId)>,
    /// Gossip received, waiting for its verdict: who sent it, what it was.
    pending: HashMap<MessageId, (Peer, Gossip)>,
    scores: HashMap<Peer, i32>,
    banned: BTreeSet<Peer>,
    /// The node's CPU is busy until then, µs.
    busy_until: u64,
    adversary: adversary::State,
    /// Wallet: outpoints already spent by this node's wallet.
    spent: HashSet<OutPoint>,
}

/// Counters over a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Events carried out.
    pub events: u64,
    /// Blocks mined.
    pub blocks_mined: u64,
    /// Bytes sent by each node.
    pub bytes_sent: Vec<u64>,
    /// Messages lost on links.
    pub lost: u64,
    /// Bans made by honest nodes.
    pub bans: u64,
    /// Transactions made by the wallets.
    pub transactions: u64,
}

/// The first time each node had each block as its tip (µs), for the propagation figures.
pub type Arrivals = HashMap<BlockHash, Vec<Option<u64>>>;

/// A simulation.
pub struct Sim<M: Machine = NodeMachine> {
    config: Config,
    params: Params,
    /// Virtual time, µs.
    now: u64,
    rng: Rng,
    queue: BTreeMap<(u64, u64), Event>,
    seq: u64,
    hosts: Vec<Host<M>>,
    /// Every node's peers (links up, connection open).
    peers: Vec<BTreeSet<Peer>>,
    /// The links each node knows (its address book).
    known: Vec<BTreeSet<Peer>>,
    links: Links,
    requests: HashMap<u64, (Peer, Peer, Request)>,
    /// Requests an adversary sent past its machine: their answers are thrown away.
    unowned: HashSet<u64>,
    next_id: u64,
    mining: bool,
    epoch: Instant,
    open: fn(SharedStore, Params, Option<PubkeyHash>, Instant, Now) -> M,
    log: Vec<String>,
    log_hash: u64,
    stats: Stats,
    /// Where each block was mined and when (µs).
    pub mined: Vec<(BlockHash, Peer, u64)>,
    /// When each node first had each block as its tip.
    pub arrivals: Arrivals,
    tips: Vec<BlockHash>,
}

/// The key of node `i`'s wallet and coinbase.
pub fn node_key(i: usize) -> PrivateKey {
    let mut bytes = [0u8; 32];
    bytes[0] = 1;
    bytes[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    PrivateKey::from_bytes(&bytes).expect("a small scalar is a valid key")
}

fn open_node(
    store: SharedStore,
    params: Params,
    pay_to: Option<PubkeyHash>,
    epoch: Instant,
    now: Now,
) -> NodeMachine {
    NodeMachine::open(store, params, pay_to, epoch, now).expect("a store written by the node opens")
}

impl Sim<NodeMachine> {
    /// Builds a simulation of the node's state machine.
    pub fn new(config: Config) -> Sim<NodeMachine> {
        Sim::with_machine(config, open_node)
    }
}

impl<M: Machine> Sim<M> {
    /// Builds a simulation whose nodes `open` makes (on a store, with a pay-to, at a time).
    pub fn with_machine(
        config: Config,
        open: fn(SharedStore, Params, Option<PubkeyHash>, Instant, Now) -> M,
    ) -> Sim<M> {
        let mut rng = Rng::new(config.seed);
        let n = config.nodes;
        let mut known = vec![BTreeSet::new(); n];
        let mut pairs = Vec::new();
        for a in 0..n {
            for _ in 0..config.outbound {
                let free: Vec<Peer> =
                    (0..n).filter(|&b| b != a && !known[a].contains(&b)).collect();
                if free.is_empty() {
                    break;
                }
                let b = free[rng.index(free.len())];
                known[a].insert(b);
                known[b].insert(a);
                pairs.push((a, b));
            }
        }
        let links = Links::new(&pairs, config.links, &mut rng);
        let hosts = (0..n)
            .map(|i| {
                let key = node_key(i);
                Host {
                    machine: None,
                    store: SharedStore::new(),
                    role: config.roles.get(i).cloned().unwrap_or(Role::Honest),
                    skew: config.skew.get(i).copied().unwrap_or(0),
                    share: config.hash_shares.get(i).copied().unwrap_or(0.0),
                    pay_to: key.public_key().pubkey_hash(),
                    key,
                    job: None,
                    seen: HashSet::new(),
                    seen_order: VecDeque::new(),
                    pending: HashMap::new(),
                    scores: HashMap::new(),
                    banned: BTreeSet::new(),
                    busy_until: 0,
                    adversary: adversary::State::default(),
                    spent: HashSet::new(),
                }
            })
            .collect();
        let params = Params::new(Network::Regtest);
        let genesis = params.genesis_hash();
        let mut sim = Sim {
            stats: Stats { bytes_sent: vec![0; n], ..Stats::default() },
            config,
            params,
            now: 0,
            rng,
            queue: BTreeMap::new(),
            seq: 0,
            hosts,
            peers: vec![BTreeSet::new(); n],
            known,
            links,
            requests: HashMap::new(),
            unowned: HashSet::new(),
            next_id: 0,
            mining: true,
            epoch: Instant::now(),
            open,
            log: Vec::new(),
            log_hash: 0xcbf2_9ce4_8422_2325,
            mined: Vec::new(),
            arrivals: HashMap::new(),
            tips: vec![genesis; n],
        };
        for i in 0..n {
            sim.start(i);
        }
        if sim.config.block_interval > 0.0 {
            sim.schedule_mine();
        }
        if sim.config.tx_interval > 0.0 {
            let at = sim.rng.exponential(sim.config.tx_interval);
            sim.schedule(secs(at), Event::Wallet);
        }
        sim
    }

    /// Returns the time, seconds since the start.
    pub fn time(&self) -> f64 {
        self.now as f64 / 1e6
    }

    /// Returns the counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Returns the active chain of node `i` (tip first), if it runs.
    pub fn active_chain(&self, i: Peer) -> Vec<BlockHash> {
        let Some(machine) = self.hosts[i].machine.as_ref() else { return Vec::new() };
        let (mut hash, _) = machine.tip();
        let mut chain = Vec::new();
        while let Some(block) = machine.block(&hash) {
            chain.push(hash);
            if block.header.prev_blockhash == BlockHash::ZERO {
                break;
            }
            hash = block.header.prev_blockhash;
        }
        chain
    }

    /// Returns the event log (empty unless `keep_log`) and the hash of every event's line.
    pub fn log(&self) -> (&[String], u64) {
        (&self.log, self.log_hash)
    }

    /// Returns the number of nodes.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Tells whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Returns node `i`'s peers.
    pub fn peers_of(&self, i: Peer) -> &BTreeSet<Peer> {
        &self.peers[i]
    }

    /// Returns node `i`'s snapshot, if it runs.
    pub fn snapshot(&self, i: Peer) -> Option<Snapshot> {
        self.hosts[i].machine.as_ref().map(Machine::snapshot)
    }

    /// Returns node `i`'s tip, if it runs (cheap).
    pub fn snapshot_tip(&self, i: Peer) -> Option<BlockHash> {
        self.hosts[i].machine.as_ref().map(|m| m.tip().0)
    }

    /// Tells whether node `i` is honest.
    pub fn is_honest(&self, i: Peer) -> bool {
        self.hosts[i].role == Role::Honest
    }

    fn schedule(&mut self, after: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), event);
    }

    fn schedule_at(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at.max(self.now), self.seq), event);
    }

    /// Schedules a fault `at` seconds from the start.
    pub fn at(&mut self, at: f64, fault: Fault) {
        self.schedule_at(secs(at), Event::Fault(fault));
    }

    fn record(&mut self, line: impl FnOnce() -> String) {
        let line = line();
        for byte in line.bytes().chain([b'\n']) {
            self.log_hash = (self.log_hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        if self.config.keep_log {
            self.log.push(format!("{:.6} {line}", self.time()));
        }
    }

    fn now_of(&self, i: Peer) -> Now {
        let unix = (START_UNIX + self.now / 1_000_000).saturating_add_signed(self.hosts[i].skew);
        Now { unix, mono: Duration::from_micros(self.now) }
    }

    fn start(&mut self, i: Peer) {
        let host = &self.hosts[i];
        let pay_to = (host.share > 0.0).then_some(host.pay_to);
        let machine = (self.open)(
            host.store.clone(),
            self.params.clone(),
            pay_to,
            self.epoch,
            self.now_of(i),
        );
        self.hosts[i].machine = Some(machine);
        self.hosts[i].job = None;
        self.record(|| format!("start {i}"));
        let after = self.rng.below(1_000_000);
        self.schedule(after, Event::Tick(i));
        if self.hosts[i].role != Role::Honest {
            self.schedule(after, Event::Adversary(i));
        }
        let known: Vec<Peer> = self.known[i].iter().copied().collect();
        for peer in known {
            self.connect(i, peer);
        }
    }

    fn alive(&self, i: Peer) -> bool {
        self.hosts[i].machine.is_some()
    }

    fn connect(&mut self, a: Peer, b: Peer) {
        if !self.alive(a) || !self.alive(b) || self.peers[a].contains(&b) {
            return;
        }
        if self.hosts[a].banned.contains(&b) || self.hosts[b].banned.contains(&a) {
            return;
        }
        if !self.links.is_up(a, b) {
            return;
        }
        self.peers[a].insert(b);
        self.peers[b].insert(a);
        self.record(|| format!("connect {a} {b}"));
        self.input(a, Input::Connected(b));
        self.input(b, Input::Connected(a));
    }

    fn disconnect(&mut self, a: Peer, b: Peer) {
        if !self.peers[a].remove(&b) {
            return;
        }
        self.peers[b].remove(&a);
        self.record(|| format!("disconnect {a} {b}"));
        let failed: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, (x, y, _))| (*x == a && *y == b) || (*x == b && *y == a))
            .map(|(id, _)| *id)
            .collect();
        for id in sorted(failed) {
            self.fail_request(id);
        }
        for (x, y) in [(a, b), (b, a)] {
            if self.alive(x) {
                self.input(x, Input::Disconnected(y));
            }
        }
    }

    fn fail_request(&mut self, id: u64) {
        if let Some((from, to, request)) = self.requests.remove(&id)
            && !self.unowned.remove(&id)
            && self.alive(from)
        {
            self.input(from, Input::RequestFailed { peer: to, request });
        }
    }

    /// Hands node `i` an input and carries out its outputs.
    fn input(&mut self, i: Peer, input: Input) {
        let now = self.now_of(i);
        let cost = self.cost(&input);
        let Some(machine) = self.hosts[i].machine.as_mut() else { return };
        let outputs = machine.handle(input, now);
        if cost > 0 {
            let host = &mut self.hosts[i];
            host.busy_until = host.busy_until.max(self.now) + cost;
        }
        self.observe_tip(i);
        for output in outputs {
            self.output(i, output);
        }
    }

    /// The CPU time a block input costs (other inputs are taken as free).
    fn cost(&self, input: &Input) -> u64 {
        let blocks = match input {
            Input::Gossip { message: Gossip::Block(_), .. } | Input::Found(_) => 1,
            Input::Response { response: Response::Blocks(blocks), .. } => blocks.len() as u64,
            _ => 0,
        };
        let bytes = (blocks * self.virtual_size(None)) as f64;
        secs(blocks as f64 * self.config.cpu_per_block + self.config.cpu_per_block_byte * bytes)
    }

    /// The size a block is counted at: its virtual size, or its real size.
    fn virtual_size(&self, real: Option<u64>) -> u64 {
        match self.config.virtual_block_bytes {
            0 => real.unwrap_or(0),
            v => v,
        }
    }

    fn observe_tip(&mut self, i: Peer) {
        let Some((snapshot_tip, _)) = self.hosts[i].machine.as_ref().map(Machine::tip) else {
            return;
        };
        if snapshot_tip == self.tips[i] {
            return;
        }
        self.tips[i] = snapshot_tip;
        let n = self.hosts.len();
        let now = self.now;
        let entry = self.arrivals.entry(snapshot_tip).or_insert_with(|| vec![None; n]);
        if entry[i].is_none() {
            entry[i] = Some(now);
        }
        self.record(|| format!("tip {i} {snapshot_tip}"));
    }

    fn output(&mut self, i: Peer, output: Output) {
        match output {
            Output::Publish(message) => {
                if let (Gossip::Block(b), Role::Withhold { delay }) =
                    (&message, &self.hosts[i].role)
                    && self.hosts[i].adversary.own.contains(&b.block_hash())
                {
                    let block =
                        self.hosts[i].machine.as_ref().and_then(|m| m.block(&b.block_hash()));
                    if let Some(block) = block {
                        let after = secs(*delay);
                        self.schedule(after, Event::Release { node: i, block: Box::new(block) });
                        return;
                    }
                }
                self.publish(i, message, None);
            }
            Output::Verdict { id, acceptance } => self.verdict(i, id, acceptance),
            Output::Request { to, request } => {
                self.request(i, to, request);
            }
            Output::Respond { to, id, response } => {
                let bytes = response_size(&response, self);
                self.send(i, to, Wire::Response(id, response), bytes);
            }
            Output::Penalize { peer, reason } => self.penalize(i, peer, &reason),
            Output::Disconnect { peer } => self.disconnect(i, peer),
            Output::Ban { peer } => self.ban(i, peer),
            Output::Job(block) => self.hosts[i].job = Some(block),
            Output::PauseMining => self.hosts[i].job = None,
        }
    }

    fn penalize(&mut self, i: Peer, peer: Peer, reason: &str) {
        let score = self.hosts[i].scores.entry(peer).or_insert(0);
        *score -= PENALTY;
        let score = *score;
        self.record(|| format!("penalize {i} {peer} {score} {reason}"));
        if score <= BAN_SCORE {
            self.ban(i, peer);
        }
    }

    fn ban(&mut self, i: Peer, peer: Peer) {
        if self.hosts[i].banned.insert(peer) {
            self.stats.bans += 1;
            self.record(|| format!("ban {i} {peer}"));
            self.disconnect(i, peer);
        }
    }

    fn request(&mut self, from: Peer, to: Peer, request: Request) -> Option<u64> {
        if !self.peers[from].contains(&to) {
            self.input(from, Input::RequestFailed { peer: to, request });
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        let bytes = request_size(&request);
        self.requests.insert(id, (from, to, request.clone()));
        self.schedule(REQUEST_TIMEOUT, Event::RequestTimeout(id));
        self.send(from, to, Wire::Request(id, request), bytes);
        Some(id)
    }

    fn send(&mut self, from: Peer, to: Peer, wire: Wire, bytes: u64) {
        if !self.peers[from].contains(&to) {
            return;
        }
        self.stats.bytes_sent[from] += bytes;
        // A busy node sends when its CPU is done with what it was handling.
        let depart = self.hosts[from].busy_until.max(self.now);
        match self.links.send(from, to, bytes, depart, &mut self.rng) {
            Some(at) => self.schedule_at(at, Event::Deliver { from, to, wire }),
            None => self.stats.lost += 1,
        }
    }

    fn gossip_size(&self, message: &Gossip) -> u64 {
        match message {
            Gossip::Block(compact) => match self.config.virtual_block_bytes {
                0 => message.size(),
                v if self.config.compact_blocks => message.size() + v / 250 * 32,
                v => v.max(compact.encode().len() as u64),
            },
            _ => message.size(),
        }
    }

    /// Floods a message to `i`'s peers (except the one it came from), marking it seen.
    fn publish(&mut self, i: Peer, message: Gossip, except: Option<Peer>) {
        let id = message.id(self.seq);
        self.mark_seen(i, id);
        let bytes = self.gossip_size(&message);
        let peers: Vec<Peer> =
            self.peers[i].iter().copied().filter(|p| Some(*p) != except).collect();
        for peer in peers {
            self.send(i, peer, Wire::Gossip(id, message.clone()), bytes);
        }
    }

    fn mark_seen(&mut self, i: Peer, id: MessageId) -> bool {
        let now = self.now;
        let host = &mut self.hosts[i];
        while host.seen_order.front().is_some_and(|(t, _)| t + SEEN_TTL < now) {
            if let Some((_, old)) = host.seen_order.pop_front() {
                host.seen.remove(&old);
            }
        }
        if host.seen.insert(id) {
            host.seen_order.push_back((now, id));
            true
        } else {
            false
        }
    }

    fn verdict(&mut self, i: Peer, id: MessageId, acceptance: Acceptance) {
        let Some((from, message)) = self.hosts[i].pending.remove(&id) else { return };
        match acceptance {
            Acceptance::Accept => self.publish(i, message, Some(from)),
            Acceptance::Ignore => {}
            // gossipsub's peer score falls for an invalid message.
            Acceptance::Reject => {}
        }
    }

    fn deliver(&mut self, from: Peer, to: Peer, wire: Wire) {
        if !self.peers[to].contains(&from) {
            return;
        }
        match wire {
            Wire::Gossip(id, message) => {
                if !self.mark_seen(to, id) {
                    return;
                }
                self.record(|| format!("gossip {from}>{to} {id:?}"));
                self.hosts[to].pending.insert(id, (from, message.clone()));
                self.input(to, Input::Gossip { from, id, message });
            }
            Wire::Request(id, request) => {
                self.record(|| format!("request {from}>{to} {id}"));
                if let Some(response) = adversary::answer(&self.hosts[to].adversary, &request) {
                    let bytes = response_size(&response, self);
                    self.send(to, from, Wire::Response(id, response), bytes);
                    return;
                }
                self.input(to, Input::Request { from, id, request });
            }
            Wire::Response(id, response) => {
                let Some((asker, asked, _)) = self.requests.get(&id) else { return };
                if (*asker, *asked) != (to, from) {
                    return;
                }
                let Some((_, _, request)) = self.requests.remove(&id) else { return };
                if self.unowned.remove(&id) {
                    return;
                }
                self.record(|| format!("response {from}>{to} {id}"));
                self.input(to, Input::Response { from, request, response });
            }
        }
    }

    fn schedule_mine(&mut self) {
        let after = self.rng.exponential(self.config.block_interval);
        self.schedule(secs(after), Event::Mine);
    }

    fn mine(&mut self) {
        self.schedule_mine();
        if !self.mining {
            return;
        }
        let total: f64 =
            (0..self.hosts.len()).filter(|&i| self.alive(i)).map(|i| self.hosts[i].share).sum();
        if total <= 0.0 {
            return;
        }
        let mut pick = self.rng.unit() * total;
        let mut finder = None;
        for i in (0..self.hosts.len()).filter(|&i| self.alive(i)) {
            pick -= self.hosts[i].share;
            if pick <= 0.0 && self.hosts[i].share > 0.0 {
                finder = Some(i);
                break;
            }
        }
        if let Some(i) = finder {
            self.mine_at(i);
        }
    }

    /// Node `i` finds a block on its current job, if it has one.
    fn mine_at(&mut self, i: Peer) {
        let Some(mut block) = self.hosts[i].job.clone() else { return };
        block.header.time = block.header.time.max(self.now_of(i).unix as u32);
        solve(&mut block);
        let hash = block.block_hash();
        self.stats.blocks_mined += 1;
        self.mined.push((hash, i, self.now));
        self.hosts[i].adversary.own.insert(hash);
        self.record(|| format!("mined {i} {hash}"));
        self.input(i, Input::Found(block));
    }

    fn fault(&mut self, fault: Fault) {
        self.record(|| format!("fault {fault:?}"));
        match fault {
            Fault::Partition(groups) => {
                for a in 0..self.hosts.len() {
                    for b in self.known[a].clone() {
                        let group = |x: Peer| groups.get(x).copied().unwrap_or(0);
                        if a < b && group(a) != group(b) {
                            self.links.set_up(a, b, false);
                            self.disconnect(a, b);
                        }
                    }
                }
            }
            Fault::Heal => {
                for a in 0..self.hosts.len() {
                    for b in self.known[a].clone() {
                        if a < b {
                            self.links.set_up(a, b, true);
                            self.connect(a, b);
                        }
                    }
                }
            }
            Fault::Crash(i) => {
                for peer in self.peers[i].clone() {
                    self.disconnect(i, peer);
                }
                self.hosts[i].machine = None;
                self.hosts[i].pending.clear();
                self.hosts[i].seen.clear();
                self.hosts[i].seen_order.clear();
                self.hosts[i].job = None;
            }
            Fault::Restart(i) => {
                if !self.alive(i) {
                    self.start(i);
                }
            }
            Fault::Loss(p) => self.links.set_loss(p),
            Fault::Mining(on) => self.mining = on,
        }
    }

    fn tick(&mut self, i: Peer) {
        if !self.alive(i) {
            return;
        }
        self.schedule(1_000_000, Event::Tick(i));
        self.input(i, Input::Tick);
    }

    fn wallet(&mut self) {
        let at = self.rng.exponential(self.config.tx_interval);
        self.schedule(secs(at), Event::Wallet);
        let i = self.rng.index(self.hosts.len());
        if !self.alive(i) || !self.is_honest(i) {
            return;
        }
        let to = node_key(self.rng.index(self.hosts.len())).public_key().pubkey_hash();
        let host = &self.hosts[i];
        let Some(machine) = host.machine.as_ref() else { return };
        let Some(tx) = wallet_tx(machine, &host.key, host.pay_to, &host.spent, to, &self.params)
        else {
            return;
        };
        for input in &tx.inputs {
            self.hosts[i].spent.insert(input.prev_out);
        }
        self.stats.transactions += 1;
        self.record(|| format!("tx {i} {}", tx.txid()));
        self.input(i, Input::SubmitTx(tx));
    }

    fn adversary(&mut self, i: Peer) {
        if !self.alive(i) {
            return;
        }
        self.schedule(1_000_000, Event::Adversary(i));
        let peers: Vec<Peer> = self.peers[i].iter().copied().collect();
        let now = self.now_of(i);
        let job = self.hosts[i].job.clone();
        let host = &mut self.hosts[i];
        let sends =
            adversary::act(&host.role, &mut host.adversary, job, &peers, now, &mut self.rng);
        for (to, send) in sends {
            match send {
                adversary::Send::Gossip(message) => {
                    let id = message.id(self.seq + 1);
                    let bytes = message.size();
                    self.send(i, to, Wire::Gossip(id, message), bytes);
                }
                adversary::Send::Request(request) => {
                    if let Some(id) = self.request(i, to, request) {
                        self.unowned.insert(id);
                    }
                }
            }
        }
    }

    /// Carries out the next event; tells whether there was one at or before `until` (µs).
    fn step(&mut self, until: u64) -> bool {
        let Some((&(at, seq), _)) = self.queue.first_key_value() else { return false };
        if at > until {
            return false;
        }
        let event = self.queue.remove(&(at, seq)).expect("the first key is present");
        self.now = at;
        self.stats.events += 1;
        match event {
            Event::Deliver { from, to, wire } => {
                // A node busy with an earlier input takes this one when it is done.
                let busy = self.hosts[to].busy_until;
                if busy > at {
                    self.schedule_at(busy, Event::Deliver { from, to, wire });
                    return true;
                }
                self.deliver(from, to, wire);
            }
            Event::Tick(i) => self.tick(i),
            Event::Mine => self.mine(),
            Event::Fault(fault) => self.fault(fault),
            Event::RequestTimeout(id) => self.fail_request(id),
            Event::Adversary(i) => self.adversary(i),
            Event::Release { node, block } => {
                if let Some(compact) = tinychain_protocol::CompactBlock::from_block(&block) {
                    self.record(|| format!("release {node} {}", block.block_hash()));
                    self.publish(node, Gossip::Block(compact), None);
                }
            }
            Event::Wallet => self.wallet(),
        }
        true
    }

    /// Runs until `t` seconds from the start.
    pub fn run_until(&mut self, t: f64) {
        let until = secs(t);
        while self.step(until) {}
        self.now = self.now.max(until);
    }

    /// Runs for `d` more seconds.
    pub fn run_for(&mut self, d: f64) {
        self.run_until(self.time() + d);
    }

    /// Ends every fault and stops mining: heals the network, restarts crashed
    /// nodes, stops losses, and lets the network quiet for `quiet` seconds.
    /// Then one honest node mines one more block, and the network quiets
    /// again: two branches of equal work (blocks found at once at the end)
    /// are a tie that only a next block breaks, in Bitcoin too.
    pub fn quiesce(&mut self, quiet: f64) {
        self.fault(Fault::Mining(false));
        self.fault(Fault::Loss(0.0));
        for i in 0..self.hosts.len() {
            if !self.alive(i) {
                self.fault(Fault::Restart(i));
            }
        }
        self.fault(Fault::Heal);
        self.run_for(quiet);
        if let Some(miner) =
            (0..self.hosts.len()).find(|&i| self.is_honest(i) && self.hosts[i].job.is_some())
        {
            self.mine_at(miner);
        }
        self.run_for(quiet);
    }

    /// Checks the invariants over the honest nodes: one tip, one UTXO digest,
    /// coins adding up to the subsidies, every mempool consistent with its tip.
    ///
    /// # Errors
    ///
    /// The first invariant broken, in words.
    pub fn check(&self) -> Result<(), String> {
        let honest: Vec<(Peer, Snapshot)> = (0..self.hosts.len())
            .filter(|&i| self.is_honest(i))
            .filter_map(|i| Some((i, self.snapshot(i)?)))
            .collect();
        let Some((first, reference)) = honest.first() else { return Ok(()) };
        for (i, s) in &honest {
            if s.tip != reference.tip {
                return Err(format!(
                    "node {i} is at {} (height {}), node {first} at {} (height {})",
                    s.tip, s.height, reference.tip, reference.height
                ));
            }
            if s.utxo_digest != reference.utxo_digest {
                return Err(format!("node {i}'s UTXO digest differs from node {first}'s"));
            }
            if s.coin_value != s.subsidies {
                return Err(format!(
                    "node {i}: the coins add up to {} but the subsidies to {}",
                    s.coin_value, s.subsidies
                ));
            }
            if let Some(e) = &s.mempool_error {
                return Err(format!("node {i}'s mempool: {e}"));
            }
        }
        Ok(())
    }
}

/// Seconds to µs.
fn secs(s: f64) -> u64 {
    (s.max(0.0) * 1e6) as u64
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Finds a nonce meeting the block's bits (a few hashes on regtest).
fn solve(block: &mut Block) {
    let Ok(target) = block.header.bits.to_target() else { return };
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
}

fn request_size(request: &Request) -> u64 {
    match request {
        Request::Status(_) => 80,
        Request::GetHeaders { locator } => 8 + 32 * locator.len() as u64,
        Request::GetBlocks(hashes) => 8 + 32 * hashes.len() as u64,
    }
}

fn response_size<M: Machine>(response: &Response, sim: &Sim<M>) -> u64 {
    match response {
        Response::Status(_) => 80,
        Response::Headers(headers) => 8 + 80 * headers.len() as u64,
        Response::Blocks(blocks) => {
            8 + blocks.iter().map(|b| sim.virtual_size(Some(b.size()))).sum::<u64>()
        }
        Response::Refused(reason) => 8 + reason.len() as u64,
    }
}

/// Makes a transaction from node `pay_to`'s wallet to `to`: spends one mature
/// coin not spent before, pays half to `to`, the rest less a fee back.
fn wallet_tx<M: Machine>(
    machine: &M,
    key: &PrivateKey,
    pay_to: PubkeyHash,
    spent: &HashSet<OutPoint>,
    to: PubkeyHash,
    params: &Params,
) -> Option<Transaction> {
    let (_, height) = machine.tip();
    let (outpoint, coin) = machine.coins(&pay_to, 64).into_iter().find(|(op, coin)| {
        !spent.contains(op)
            && (!coin.is_coinbase || coin.height + params.coinbase_maturity <= height)
    })?;
    let fee = 10_000;
    let value = coin.output.value.to_belushis().checked_sub(fee)?;
    let outputs = vec![
        TxOut { value: Amount::from_belushis(value / 2), pubkey_hash: to },
        TxOut { value: Amount::from_belushis(value - value / 2), pubkey_hash: pay_to },
    ];
    let mut tx = Transaction::spending([outpoint], outputs);
    sign_all(&mut tx, &[coin.output], key).ok()?;
    Some(tx)
}
