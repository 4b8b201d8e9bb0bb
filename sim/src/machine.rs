//! What the simulator needs of a node: a machine that takes an input at a time
//! and returns outputs, and the messages that travel between machines.
//!
//! Owns the vocabulary only: [`Input`], [`Output`], the gossip and request
//! messages, and the [`Machine`] trait. The simulator delivers inputs in
//! virtual time and carries out outputs over its network model; a machine
//! never sees the simulator, a clock or a socket, only what arrives here.

use std::time::Duration;

use tinychain_node::p2p::protocol::{Request, Response};
use tinychain_protocol::validation::Coin;
use tinychain_protocol::{Block, BlockHash, CompactBlock, OutPoint, PubkeyHash, Transaction, Txid};

/// A node in the simulation, and so a peer to the others: its index.
pub type Peer = usize;

/// A gossiped message (the node's two gossipsub topics, plus bytes that are neither).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gossip {
    /// A block, in compact form.
    Block(CompactBlock),
    /// A transaction.
    Tx(Transaction),
    /// Bytes that do not decode (an adversary's); their length.
    Junk(usize),
}

/// A gossip message's content id (gossipsub's message id is a content hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageId {
    /// A block's.
    Block(BlockHash),
    /// A transaction's.
    Tx(Txid),
    /// Junk: a number unique to the message.
    Junk(u64),
}

impl Gossip {
    /// Returns the message's id (junk gets the one it is sent with).
    pub fn id(&self, junk: u64) -> MessageId {
        match self {
            Gossip::Block(b) => MessageId::Block(b.block_hash()),
            Gossip::Tx(tx) => MessageId::Tx(tx.txid()),
            Gossip::Junk(_) => MessageId::Junk(junk),
        }
    }

    /// Returns the message's size on the wire, in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Gossip::Block(b) => b.encode().len() as u64,
            Gossip::Tx(tx) => tx.encode().len() as u64,
            Gossip::Junk(len) => *len as u64,
        }
    }
}

/// A gossip validation verdict (gossipsub's `MessageAcceptance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// Valid: forward it.
    Accept,
    /// Not forwarded, nobody punished.
    Ignore,
    /// Invalid: not forwarded, the sender punished.
    Reject,
}

/// The time as a machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Its wall clock: unix seconds, skewed as the node's clock is.
    pub unix: u64,
    /// Its monotonic clock: time since the simulation started.
    pub mono: Duration,
}

/// Something that happens to a node.
#[derive(Debug, Clone)]
pub enum Input {
    /// A connection to `peer` opened.
    Connected(Peer),
    /// The connection to `peer` closed.
    Disconnected(Peer),
    /// A gossip message from `from`, new to this node, awaiting a verdict.
    Gossip {
        /// The peer that forwarded it.
        from: Peer,
        /// Its id, to give the verdict for.
        id: MessageId,
        /// The message.
        message: Gossip,
    },
    /// A request from a peer, to answer with [`Output::Respond`] and this `id`.
    Request {
        /// The peer.
        from: Peer,
        /// The request's id.
        id: u64,
        /// The request.
        request: Request,
    },
    /// The answer to a request of ours.
    Response {
        /// The peer that answered.
        from: Peer,
        /// What we asked.
        request: Request,
        /// Its answer.
        response: Response,
    },
    /// A request of ours went unanswered (the connection closed, or it timed out).
    RequestFailed {
        /// The peer asked.
        peer: Peer,
        /// What we asked.
        request: Request,
    },
    /// The miner found this block (on the last job).
    Found(Block),
    /// A transaction submitted locally (`sendrawtransaction`).
    SubmitTx(Transaction),
    /// A second passed.
    Tick,
}

/// Something a node asks the world to do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Publish a gossip message to the mesh.
    Publish(Gossip),
    /// The verdict on a gossip message received.
    Verdict {
        /// The message.
        id: MessageId,
        /// Its verdict.
        acceptance: Acceptance,
    },
    /// Send a request to a peer.
    Request {
        /// The peer.
        to: Peer,
        /// The request.
        request: Request,
    },
    /// Answer the request `id` of `to`.
    Respond {
        /// The peer that asked.
        to: Peer,
        /// The request's id.
        id: u64,
        /// The answer.
        response: Response,
    },
    /// Lower a peer's score for misbehaviour.
    Penalize {
        /// The peer.
        peer: Peer,
        /// What it did.
        reason: String,
    },
    /// Close the connection to a peer.
    Disconnect {
        /// The peer.
        peer: Peer,
    },
    /// Ban a peer: disconnect it and refuse it from now on.
    Ban {
        /// The peer.
        peer: Peer,
    },
    /// Mine on this block (its header's nonce still to be found).
    Job(Block),
    /// Stop mining until the next job.
    PauseMining,
}

/// What the invariant checks read of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The active tip.
    pub tip: BlockHash,
    /// Its height.
    pub height: u32,
    /// The UTXO set's digest.
    pub utxo_digest: String,
    /// The value of every coin in the UTXO set, in belushis.
    pub coin_value: u64,
    /// The subsidies of the active chain's blocks, in belushis: what the coins must add up to.
    pub subsidies: u64,
    /// Transactions in the mempool.
    pub mempool: usize,
    /// What is wrong with the mempool against the tip, if anything.
    pub mempool_error: Option<String>,
}

/// A node the simulator can run.
pub trait Machine {
    /// Handles one input at `now`; returns what to do.
    fn handle(&mut self, input: Input, now: Now) -> Vec<Output>;

    /// Reads the node's state for the invariant checks.
    fn snapshot(&self) -> Snapshot;

    /// Returns a block this node has (to serve a peer or an adversary's plan).
    fn block(&self, hash: &BlockHash) -> Option<Block>;

    /// Returns the active tip and its height (cheap: read after every input).
    fn tip(&self) -> (BlockHash, u32);

    /// Returns up to `limit` coins of the tip paid to `pay_to` (the simulated wallets').
    fn coins(&self, pay_to: &PubkeyHash, limit: usize) -> Vec<(OutPoint, Coin)>;
}
