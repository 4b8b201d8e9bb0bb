//! The node's own state machine (`tinychain_node::machine::Node`) behind the
//! simulator's [`Machine`] interface.
//!
//! Owns the translation only: simulator peers to libp2p peer ids (a fixed
//! identity per node index), gossip messages to topic and bytes (the message
//! id is the SHA-256 of the bytes, as the node's gossipsub config makes it),
//! inbound request ids to the peers that asked, and the machine's outputs
//! back. Every protocol decision (relay, verdicts, requests, scores, bans,
//! rate limits, mining jobs) is the machine's, unchanged.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use libp2p::gossipsub::{MessageAcceptance, MessageId as GossipId};
use libp2p::identity::Keypair;
use tinychain_node::machine::{self, Input as MInput, Output as MOutput, PeerId, Time};
use tinychain_node::metrics::GossipTopic;
use tinychain_node::p2p::protocol::{WireRequest, identify_protocol, network_id};
use tinychain_node::rpc::table::Command;
use tinychain_node::store::Store;
use tinychain_protocol::params::Params;
use tinychain_protocol::validation::Coin;
use tinychain_protocol::{Block, BlockHash, CompactBlock, OutPoint, PubkeyHash, Transaction};

use crate::machine::{Acceptance, Gossip, Input, Machine, MessageId, Now, Output, Peer, Snapshot};
use crate::store::SharedStore;

thread_local! {
    /// Peer ids of node indices, made on first use, and back.
    static IDS: RefCell<(Vec<PeerId>, HashMap<PeerId, Peer>)> = RefCell::default();
}

/// Returns the libp2p peer id of node `i` (an ed25519 key from its index).
pub fn peer_id(i: Peer) -> PeerId {
    IDS.with(|ids| {
        let (list, back) = &mut *ids.borrow_mut();
        while list.len() <= i {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(list.len() as u64).to_le_bytes());
            seed[31] = 0x5a;
            let id = Keypair::ed25519_from_bytes(seed).expect("32 bytes").public().to_peer_id();
            back.insert(id, list.len());
            list.push(id);
        }
        list[i]
    })
}

fn peer_index(id: &PeerId) -> Option<Peer> {
    IDS.with(|ids| ids.borrow().1.get(id).copied())
}

/// One node: the machine, and what translating for it needs.
#[derive(Debug)]
pub struct NodeMachine {
    node: machine::Node<SharedStore>,
    epoch: Instant,
    /// Gossip awaiting a verdict: the machine's id to the simulator's.
    pending: HashMap<GossipId, MessageId>,
    /// Inbound requests awaiting an answer: who asked.
    asking: HashMap<u64, Peer>,
    protocol: String,
    rpc_ids: u64,
}

impl NodeMachine {
    /// Opens a node on `store`, mining for `pay_to` if given.
    ///
    /// # Errors
    ///
    /// The store is inconsistent.
    pub fn open(
        store: SharedStore,
        params: Params,
        pay_to: Option<PubkeyHash>,
        epoch: Instant,
        now: Now,
    ) -> Result<NodeMachine, tinychain_node::chain::OpenError> {
        let protocol = identify_protocol(&network_id(&params.genesis_hash()));
        let config =
            machine::Config { mine: pay_to.is_some(), pay_to, ..machine::Config::default() };
        let node = machine::Node::open(store, params, config, time(epoch, now))?;
        Ok(NodeMachine {
            node,
            epoch,
            pending: HashMap::new(),
            asking: HashMap::new(),
            protocol,
            rpc_ids: 0,
        })
    }

    fn translate(&mut self, input: Input) -> Vec<MInput> {
        match input {
            Input::Connected(p) => vec![
                MInput::PeerConnected(peer_id(p)),
                MInput::PeerIdentified {
                    peer: peer_id(p),
                    protocol_version: self.protocol.clone(),
                },
            ],
            Input::Disconnected(p) => vec![MInput::PeerDisconnected(peer_id(p))],
            Input::Gossip { from, id, message } => {
                let (topic, data) = match &message {
                    Gossip::Block(b) => (GossipTopic::Block, b.encode()),
                    Gossip::Tx(tx) => (GossipTopic::Tx, tx.encode()),
                    Gossip::Junk(len) => (GossipTopic::Block, vec![0xff; *len]),
                };
                let gossip_id = GossipId::from(tinychain_protocol::hash::sha256(&data).to_vec());
                self.pending.insert(gossip_id.clone(), id);
                vec![MInput::Gossip { from: peer_id(from), id: gossip_id, topic, data }]
            }
            Input::Request { from, id, request } => {
                self.asking.insert(id, from);
                let request = WireRequest::Request(request);
                vec![MInput::Request { peer: peer_id(from), id, request }]
            }
            Input::Response { from, request, response } => {
                vec![MInput::Response { peer: peer_id(from), request, response }]
            }
            Input::RequestFailed { peer, request } => {
                vec![MInput::RequestFailed { peer: peer_id(peer), request }]
            }
            Input::Found(block) => vec![MInput::FoundBlock(block)],
            Input::SubmitTx(tx) => {
                self.rpc_ids += 1;
                let hex = serde_json::Value::String(hex::encode(tx.encode()));
                match Command::parse("sendrawtransaction", vec![hex]) {
                    Ok(command) => vec![MInput::Rpc {
                        id: self.rpc_ids,
                        command,
                        host: machine::Host::default(),
                    }],
                    Err(_) => Vec::new(),
                }
            }
            Input::Tick => vec![MInput::Tick],
        }
    }

    fn output(&mut self, output: MOutput, out: &mut Vec<Output>) {
        match output {
            MOutput::Publish { topic, data } => {
                let message = match topic {
                    GossipTopic::Block => CompactBlock::decode(&data).ok().map(Gossip::Block),
                    GossipTopic::Tx => Transaction::decode(&data).ok().map(Gossip::Tx),
                };
                out.extend(message.map(Output::Publish));
            }
            MOutput::GossipVerdict { id, acceptance, .. } => {
                if let Some(id) = self.pending.remove(&id) {
                    let acceptance = match acceptance {
                        MessageAcceptance::Accept => Acceptance::Accept,
                        MessageAcceptance::Ignore => Acceptance::Ignore,
                        MessageAcceptance::Reject => Acceptance::Reject,
                    };
                    out.push(Output::Verdict { id, acceptance });
                }
            }
            MOutput::SendRequest { peer, request } => {
                if let Some(to) = peer_index(&peer) {
                    out.push(Output::Request { to, request });
                }
            }
            MOutput::Respond { id, response } => {
                if let Some(to) = self.asking.remove(&id) {
                    out.push(Output::Respond { to, id, response });
                }
            }
            MOutput::Disconnect { peer, .. } => {
                out.extend(peer_index(&peer).map(|peer| Output::Disconnect { peer }));
            }
            MOutput::Ban { peer, .. } => {
                out.extend(peer_index(&peer).map(|peer| Output::Ban { peer }));
            }
            MOutput::MiningJob(template) => out.push(Output::Job(template.block)),
            MOutput::PauseMiner | MOutput::StopMiner => out.push(Output::PauseMining),
            // Logged or counted by the real event loop; nothing to carry out here.
            _ => {}
        }
    }
}

fn time(epoch: Instant, now: Now) -> Time {
    Time::new(now.unix, epoch + now.mono)
}

impl Machine for NodeMachine {
    fn handle(&mut self, input: Input, now: Now) -> Vec<Output> {
        let at = time(self.epoch, now);
        let mut out = Vec::new();
        for input in self.translate(input) {
            // A memory store does not fail.
            let outputs = self.node.handle(at, input).expect("the memory store does not fail");
            for output in outputs {
                self.output(output, &mut out);
            }
        }
        out
    }

    fn snapshot(&self) -> Snapshot {
        crate::snapshot::snapshot(self.node.core())
    }

    fn block(&self, hash: &BlockHash) -> Option<Block> {
        self.node.core().chain().block(hash).ok().flatten()
    }

    fn tip(&self) -> (BlockHash, u32) {
        let chain = self.node.core().chain();
        (chain.tip(), chain.height())
    }

    fn coins(&self, pay_to: &PubkeyHash, limit: usize) -> Vec<(OutPoint, Coin)> {
        self.node.core().chain().store().address_coins(pay_to, None, limit).unwrap_or_default()
    }
}
