//! `hostile-peer`: an independent libp2p client that attacks a tinychain node
//! on purpose, for the multi-process tests and the attack figures.
//!
//! It speaks the wire protocol as docs/p2p.md describes it (TCP + noise +
//! yamux, signed gossipsub with content-hash ids, the sync protocol's bytes
//! written by hand, identify), not through the node's code, and sends one
//! kind of abuse (`--attack`) for `--duration` seconds. When the node bans
//! it, it comes back with a new identity if `--reconnect` says so (a Sybil
//! attacker), so an attack can last as long as a measurement needs.
//!
//! It prints one JSON object per line on stdout: `connected`, `answer` (the
//! first of each kind per identity), `disconnected`, and a closing `summary`.

mod forge;
mod wire;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, identify, noise, tcp, yamux};
use serde_json::json;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::pow::Work;
use tinychain_protocol::{BlockHeader, CompactBlock, encode};

use wire::{Names, RawCodec, Request, Response, Status};

/// The abuse to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Attack {
    /// Nothing: connect and stay (with `--identify-version`, say).
    None,
    /// Every kind of malformed sync request, in turn.
    Malformed,
    /// Valid requests (`--flood-request`), 16 in flight at all times.
    Flood,
    /// Gossip messages of 1.5 MB, over what a block may be.
    OversizedGossip,
    /// Gossip of 300 bytes that decode to nothing, on both topics.
    JunkGossip,
    /// Valid blocks of a fork from genesis: less work than the node's tip.
    LowWork,
    /// A block overpaying its coinbase beside the tip, then its child.
    InvalidAncestor,
}

#[derive(Parser, Debug)]
#[command(about = "Attacks a tinychain node on purpose (tests and benchmarks)")]
struct Args {
    /// The node's full address, ending in `/p2p/<peer id>`.
    #[arg(long)]
    connect: Multiaddr,
    /// The node's network.
    #[arg(long, default_value = "regtest")]
    network: Network,
    /// What to send.
    #[arg(long, value_enum)]
    attack: Attack,
    /// Seconds to keep at it.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// After a ban, come back with a new identity.
    #[arg(long)]
    reconnect: bool,
    /// Gossip messages (or block pairs) per second, for gossip attacks.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// The identify protocol version to announce (default: the network's).
    #[arg(long)]
    identify_version: Option<String>,
    /// What `--attack flood` asks: `headers` (from genesis, the costliest
    /// valid request) or `block` (the genesis block, the cheapest).
    #[arg(long, value_enum, default_value = "headers")]
    flood_request: FloodRequest,
}

/// The valid request a flood repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FloodRequest {
    Headers,
    Block,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<RawCodec>,
    identify: identify::Behaviour,
}

/// What one identity did before the node dropped it (or time ran out).
#[derive(Default)]
struct Run {
    inputs: u64,
    /// Milliseconds from the first input to the node closing the connection.
    dropped_after_ms: Option<u64>,
}

/// Everything sent and seen, over all identities.
#[derive(Default)]
struct Tally {
    runs: Vec<Run>,
    answers: BTreeMap<String, u64>,
}

fn emit(value: serde_json::Value) {
    // The output is the program's product: one JSON object per line.
    #[allow(clippy::print_stdout)]
    {
        println!("{value}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(libp2p::multiaddr::Protocol::P2p(node)) = args.connect.iter().last() else {
        bail!("--connect must end in /p2p/<peer id>");
    };
    let params = Params::new(args.network);
    let names = Names::new(&params.genesis_hash());
    let end = Instant::now() + Duration::from_secs_f64(args.duration);
    let mut tally = Tally::default();
    let mut identity = 0u64;
    while Instant::now() < end {
        identity += 1;
        let mut swarm = build_swarm(&names, &args)?;
        let Some(run) =
            attack(&mut swarm, node, &args, &params, &names, end, identity, &mut tally).await?
        else {
            // Refused at once: this identity, or the address, is not welcome.
            emit(json!({"event": "refused", "identity": identity}));
            break;
        };
        let dropped = run.dropped_after_ms.is_some();
        tally.runs.push(run);
        if !dropped || !args.reconnect {
            break;
        }
    }
    summarise(&args, &tally);
    Ok(())
}

fn summarise(args: &Args, tally: &Tally) {
    let mut drops: Vec<u64> = tally.runs.iter().filter_map(|r| r.dropped_after_ms).collect();
    drops.sort_unstable();
    let per_identity: Vec<u64> = tally.runs.iter().map(|r| r.inputs).collect();
    emit(json!({
        "event": "summary",
        "attack": format!("{:?}", args.attack),
        "identities": tally.runs.len(),
        "inputs": per_identity.iter().sum::<u64>(),
        "inputs_per_identity": per_identity,
        "dropped": drops.len(),
        "median_ms_to_drop": drops.get(drops.len() / 2),
        "answers": tally.answers,
    }));
}

fn build_swarm(names: &Names, args: &Args) -> anyhow::Result<Swarm<Behaviour>> {
    let version = args.identify_version.clone().unwrap_or_else(|| names.identify.clone());
    let sync = names.sync.clone();
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .message_id_fn(|m| {
                    gossipsub::MessageId::from(tinychain_protocol::hash::sha256(&m.data).to_vec())
                })
                // Above the node's limits, so oversized messages can be sent.
                .max_transmit_size(4 << 20)
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Behaviour {
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    config,
                )?,
                sync: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(sync, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10))
                        .with_max_concurrent_streams(64),
                ),
                identify: identify::Behaviour::new(
                    identify::Config::new(version, key.public())
                        .with_agent_version("hostile-peer".into()),
                ),
            })
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

/// The attack's own state, between inputs.
enum Plan {
    Idle,
    Requests {
        kinds: Vec<(&'static str, Vec<u8>)>,
        next: usize,
    },
    Gossip {
        oversized: bool,
        counter: u64,
    },
    LowWork(forge::LowWorkFork),
    /// Waiting for the node's chain (headers so far), then forging.
    InvalidAncestor {
        headers: Vec<BlockHeader>,
        forge: Option<forge::InvalidAncestry>,
    },
}

/// Connects one identity and attacks until the node drops it or `end`;
/// `None` if the node refuses the connection.
#[allow(clippy::too_many_arguments)]
async fn attack(
    swarm: &mut Swarm<Behaviour>,
    node: PeerId,
    args: &Args,
    params: &Params,
    names: &Names,
    end: Instant,
    identity: u64,
    tally: &mut Tally,
) -> anyhow::Result<Option<Run>> {
    let genesis = params.genesis_hash();
    let blocks = IdentTopic::new(names.blocks.clone());
    let txs = IdentTopic::new(names.txs.clone());
    swarm.behaviour_mut().gossipsub.subscribe(&blocks)?;
    swarm.behaviour_mut().gossipsub.subscribe(&txs)?;
    swarm.dial(args.connect.clone()).context("dialing the node")?;
    if !wait_subscribed(swarm, node, genesis).await {
        return Ok(None);
    }
    emit(
        json!({"event": "connected", "identity": identity, "peer": swarm.local_peer_id().to_string()}),
    );
    let mut plan = match args.attack {
        Attack::None => Plan::Idle,
        Attack::Malformed => Plan::Requests { kinds: wire::malformed_requests(genesis), next: 0 },
        Attack::Flood => {
            let request = match args.flood_request {
                FloodRequest::Headers => Request::GetHeaders { locator: vec![genesis] },
                FloodRequest::Block => Request::GetBlocks(vec![genesis]),
            };
            Plan::Requests { kinds: vec![("flood", encode::serialize(&request))], next: 0 }
        }
        // Counters unique to the identity: gossipsub drops a message id it saw
        // in the last minute, whoever sends it.
        Attack::OversizedGossip => Plan::Gossip { oversized: true, counter: identity << 32 },
        Attack::JunkGossip => Plan::Gossip { oversized: false, counter: identity << 32 },
        Attack::LowWork => Plan::LowWork(forge::LowWorkFork::new(params, identity)),
        Attack::InvalidAncestor => {
            let locator = encode::serialize(&Request::GetHeaders { locator: vec![genesis] });
            swarm.behaviour_mut().sync.send_request(&node, locator);
            Plan::InvalidAncestor { headers: Vec::new(), forge: None }
        }
    };
    let mut run = Run::default();
    let mut started: Option<Instant> = None;
    let mut in_flight: BTreeMap<OutboundRequestId, &'static str> = BTreeMap::new();
    let mut seen_kinds: BTreeMap<String, ()> = BTreeMap::new();
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate.max(1)));
    let mut ticks = tokio::time::interval(period);
    loop {
        if Instant::now() >= end {
            return Ok(Some(run));
        }
        // Requests keep 16 in flight; gossip goes at the given rate.
        if let Plan::Requests { kinds, next } = &mut plan {
            while in_flight.len() < 16 {
                let (kind, bytes) = &kinds[*next % kinds.len()];
                *next += 1;
                let id = swarm.behaviour_mut().sync.send_request(&node, bytes.clone());
                in_flight.insert(id, kind);
                run.inputs += 1;
                started.get_or_insert_with(Instant::now);
            }
        }
        tokio::select! {
            _ = ticks.tick() => {
                let sent = gossip_tick(swarm, &mut plan, &blocks, &txs);
                if sent > 0 {
                    run.inputs += sent;
                    started.get_or_insert_with(Instant::now);
                }
            }
            () = tokio::time::sleep_until(end.into()) => return Ok(Some(run)),
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if peer_id == node => {
                    let after = started.map_or(0, |s| s.elapsed().as_millis() as u64);
                    emit(json!({"event": "disconnected", "identity": identity, "inputs": run.inputs, "ms": after}));
                    run.dropped_after_ms = Some(after);
                    return Ok(Some(run));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => {
                    let answer = on_sync_event(swarm, event, genesis, &mut in_flight, &mut plan, params, identity);
                    if let Some(answer) = answer {
                        if seen_kinds.insert(answer.clone(), ()).is_none() {
                            emit(json!({"event": "answer", "identity": identity, "answer": answer}));
                        }
                        *tally.answers.entry(answer).or_default() += 1;
                    }
                }
                _ => {}
            },
        }
    }
}

/// Waits (at most 10 s) until the node subscribed to our topics; answers its
/// status request meanwhile. False if the connection did not stay.
async fn wait_subscribed(
    swarm: &mut Swarm<Behaviour>,
    node: PeerId,
    genesis: tinychain_protocol::BlockHash,
) -> bool {
    let mut topics = 0;
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return false,
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, .. }))
                    if peer_id == node =>
                {
                    topics += 1;
                    if topics == 2 {
                        return true;
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, .. } | SwarmEvent::OutgoingConnectionError { peer_id: Some(peer_id), .. }
                    if peer_id == node => return false,
                SwarmEvent::Behaviour(BehaviourEvent::Sync(request_response::Event::Message {
                    message: request_response::Message::Request { request, channel, .. },
                    ..
                })) => {
                    let _ = swarm.behaviour_mut().sync.send_response(channel, answer_node(&request, genesis));
                }
                _ => {}
            },
        }
    }
}

/// What the hostile peer answers the node: a status at genesis, and nothing
/// it is asked for (so the node holds nothing against it for answering).
fn answer_node(request: &[u8], genesis: tinychain_protocol::BlockHash) -> Vec<u8> {
    let response = match encode::deserialize::<Request>(request, wire::MAX_REQUEST as u64) {
        Ok(Request::GetHeaders { .. }) => Response::Headers(Vec::new()),
        Ok(Request::GetBlocks(_)) => Response::Blocks(Vec::new()),
        _ => Response::Status(Status { genesis, tip: genesis, height: 0, chainwork: Work::ZERO }),
    };
    encode::serialize(&response)
}

/// Handles a sync event: answers the node's requests, feeds the chain to the
/// invalid-ancestor plan, and names the answer to one of ours.
fn on_sync_event(
    swarm: &mut Swarm<Behaviour>,
    event: request_response::Event<Vec<u8>, Vec<u8>>,
    genesis: tinychain_protocol::BlockHash,
    in_flight: &mut BTreeMap<OutboundRequestId, &'static str>,
    plan: &mut Plan,
    params: &Params,
    identity: u64,
) -> Option<String> {
    match event {
        request_response::Event::Message {
            message: request_response::Message::Request { request, channel, .. },
            ..
        } => {
            let _ =
                swarm.behaviour_mut().sync.send_response(channel, answer_node(&request, genesis));
            None
        }
        request_response::Event::Message {
            peer,
            message: request_response::Message::Response { request_id, response },
            ..
        } => {
            in_flight.remove(&request_id);
            let decoded = wire::response(&response);
            if let (Plan::InvalidAncestor { headers, forge }, Some(Response::Headers(run))) =
                (&mut *plan, &decoded)
            {
                headers.extend_from_slice(run);
                if run.len() == 2000 {
                    let last = headers.last().map(BlockHeader::block_hash).unwrap_or(genesis);
                    let more = encode::serialize(&Request::GetHeaders { locator: vec![last] });
                    swarm.behaviour_mut().sync.send_request(&peer, more);
                } else {
                    *forge = forge::InvalidAncestry::new(params, headers, identity * 1_000_000);
                }
            }
            Some(match decoded {
                Some(Response::Refused(reason)) => format!("refused: {reason}"),
                Some(Response::Headers(_)) => "headers".to_owned(),
                Some(Response::Blocks(_)) => "blocks".to_owned(),
                Some(Response::Status(_)) => "status".to_owned(),
                None => "undecodable".to_owned(),
            })
        }
        request_response::Event::OutboundFailure { request_id, error, .. } => {
            in_flight.remove(&request_id);
            Some(format!("failed: {error}"))
        }
        _ => None,
    }
}

/// Sends this tick's gossip, if the plan gossips; returns how many inputs.
fn gossip_tick(
    swarm: &mut Swarm<Behaviour>,
    plan: &mut Plan,
    blocks: &IdentTopic,
    txs: &IdentTopic,
) -> u64 {
    let gossip = &mut swarm.behaviour_mut().gossipsub;
    let mut publish =
        |topic: &IdentTopic, data: Vec<u8>| u64::from(gossip.publish(topic.clone(), data).is_ok());
    match plan {
        Plan::Gossip { oversized: true, counter } => {
            *counter += 1;
            let mut data = vec![0x5a; 1_500_000];
            data[..8].copy_from_slice(&counter.to_le_bytes());
            publish(blocks, data)
        }
        Plan::Gossip { oversized: false, counter } => {
            *counter += 1;
            let mut data = vec![0xff; 300];
            data[..8].copy_from_slice(&counter.to_le_bytes());
            publish(if *counter % 2 == 0 { blocks } else { txs }, data)
        }
        Plan::LowWork(fork) => {
            let block = fork.next_block();
            let compact = CompactBlock::from_block(&block).map(|c| c.encode()).unwrap_or_default();
            publish(blocks, compact)
        }
        Plan::InvalidAncestor { forge: Some(forge), .. } => {
            let mut sent = 0;
            for block in forge.next_pair() {
                let compact =
                    CompactBlock::from_block(&block).map(|c| c.encode()).unwrap_or_default();
                sent += publish(blocks, compact);
            }
            sent
        }
        _ => 0,
    }
}
