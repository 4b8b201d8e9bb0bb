//! Adversarial nodes: what each kind sends besides (or instead of) what its
//! honest machine does.
//!
//! Owns the adversaries' plans and their private state: the blocks they mined
//! (a withholding miner delays announcing them), the private low-work chain a
//! forger extends. An adversary runs an honest machine for everything else,
//! so it stays connected and looks like a peer until it misbehaves.
//!
//! - [`Role::Junk`]: gossip that does not decode, and blocks with valid proof
//!   of work that break a rule (a coinbase paying too much).
//! - [`Role::LowWork`]: a chain of its own from genesis, shorter than the
//!   honest one, its blocks sent unasked.
//! - [`Role::Withhold`]: mines with its hash share, but announces each block
//!   it finds only `delay` seconds later (selfish mining's first half).
//! - [`Role::Flood`]: many header and status requests every second.

use std::collections::HashSet;

use tinychain_node::core::{self, Core};
use tinychain_node::p2p::protocol::{MAX_BLOCKS_PER_RESPONSE, Request, Response};
use tinychain_node::store::memory::MemoryStore;
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::{Amount, Block, BlockHash, CompactBlock, PubkeyHash};

use crate::machine::{Gossip, Now, Peer};
use crate::rng::Rng;

/// What a node is.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Runs the node's code and nothing else.
    Honest,
    /// Sends undecodable gossip and invalid blocks.
    Junk,
    /// Sends blocks of a private chain with less work.
    LowWork,
    /// Announces the blocks it mines `delay` seconds late.
    Withhold {
        /// Seconds.
        delay: f64,
    },
    /// Floods its peers with requests.
    Flood,
}

/// An adversary's private state.
#[derive(Debug, Default)]
pub struct State {
    /// Blocks this node mined.
    pub own: HashSet<BlockHash>,
    /// The low-work forger's private chain.
    private: Option<Core<MemoryStore, Peer>>,
    /// Actions taken (each kind acts on some seconds only).
    rounds: u64,
}

/// Something an adversary sends to a peer.
#[derive(Debug)]
pub enum Send {
    /// A gossip message (not through its machine).
    Gossip(Gossip),
    /// A request whose answer it throws away.
    Request(Request),
}

/// Requests a flooder sends each peer per second.
const FLOOD_PER_SECOND: usize = 20;

/// Decides what adversary `role` sends its `peers` this second; `job` is its
/// honest machine's current mining job.
pub fn act(
    role: &Role,
    state: &mut State,
    job: Option<Block>,
    peers: &[Peer],
    now: Now,
    rng: &mut Rng,
) -> Vec<(Peer, Send)> {
    state.rounds += 1;
    let mut sends = Vec::new();
    match role {
        Role::Honest | Role::Withhold { .. } => {}
        Role::Junk => {
            for &peer in peers {
                sends.push((peer, Send::Gossip(Gossip::Junk(200 + rng.index(800)))));
            }
            if let Some(block) = job.filter(|_| state.rounds.is_multiple_of(3)).and_then(overpaying)
            {
                for &peer in peers {
                    sends.push((peer, Send::Gossip(Gossip::Block(block.clone()))));
                }
            }
        }
        Role::LowWork => {
            if !state.rounds.is_multiple_of(5) {
                return sends;
            }
            let Some(block) = private_block(state, now) else { return sends };
            for &peer in peers {
                sends.push((peer, Send::Gossip(Gossip::Block(block.clone()))));
            }
        }
        Role::Flood => {
            let genesis = Params::new(Network::Regtest).genesis_hash();
            for &peer in peers {
                for _ in 0..FLOOD_PER_SECOND {
                    let locator = vec![genesis];
                    sends.push((peer, Send::Request(Request::GetHeaders { locator })));
                }
            }
        }
    }
    sends
}

/// Makes `job` invalid (its coinbase claims a belushi too many) with valid proof of work.
fn overpaying(mut block: Block) -> Option<CompactBlock> {
    let out = block.txdata.first_mut()?.outputs.first_mut()?;
    out.value = Amount::from_belushis(out.value.to_belushis() + 1);
    block.header.merkle_root = block_merkle_root(&block.txdata).root;
    let target = block.header.bits.to_target().ok()?;
    while !target.is_met_by(block.header.block_hash()) {
        block.header.nonce = block.header.nonce.wrapping_add(1);
    }
    CompactBlock::from_block(&block)
}

/// Extends the forger's private chain by a block, which it returns.
fn private_block(state: &mut State, now: Now) -> Option<CompactBlock> {
    if state.private.is_none() {
        let params = Params::new(Network::Regtest);
        state.private =
            Core::open(MemoryStore::new(), params, core::Config::default(), now.unix).ok();
    }
    let private = state.private.as_mut()?;
    let pay_to = PubkeyHash::from_byte_array([0xad; 20]);
    let (hashes, _) = private.generate(1, pay_to, now.unix).ok()?;
    let block = private.chain().block(hashes.first()?).ok()??;
    CompactBlock::from_block(&block)
}

/// Answers a request from the adversary's private state, if it can: the
/// forger serves its private blocks (their parents are asked for as orphans').
pub fn answer(state: &State, request: &Request) -> Option<Response> {
    let private = state.private.as_ref()?;
    let Request::GetBlocks(hashes) = request else { return None };
    let blocks: Vec<Block> = hashes
        .iter()
        .take(MAX_BLOCKS_PER_RESPONSE)
        .filter_map(|h| private.chain().block(h).ok().flatten())
        .collect();
    (!blocks.is_empty()).then_some(Response::Blocks(blocks))
}
