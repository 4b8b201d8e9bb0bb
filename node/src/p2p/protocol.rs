//! The node-to-node sync protocol: messages, names and the size-limited codec.
//!
//! Owns the request/response messages exchanged over libp2p request-response
//! (`/tinychain/<network id>/sync/1`), the gossip topic names, and a codec that
//! refuses oversized messages while reading, before decoding. Messages are in
//! the canonical encoding of `tinychain_protocol::encode`.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use tinychain_protocol::encode;
use tinychain_protocol::params::MAX_BLOCK_SIZE;
use tinychain_protocol::pow::Work;
use tinychain_protocol::{Block, BlockHash};

/// Largest request, in bytes.
pub const MAX_REQUEST_SIZE: u64 = 64 * 1024;
/// Blocks in one response at most.
pub const MAX_BLOCKS_PER_RESPONSE: usize = 16;
/// Largest response: the block cap plus framing.
pub const MAX_RESPONSE_SIZE: u64 = MAX_BLOCKS_PER_RESPONSE as u64 * MAX_BLOCK_SIZE + 1024;
/// Hashes in a locator at most (Bitcoin's limit is 101).
pub const MAX_LOCATOR: usize = 101;
/// The largest gossip message: one block plus gossipsub's envelope.
pub const MAX_GOSSIP_SIZE: usize = MAX_BLOCK_SIZE as usize + 64 * 1024;

/// A summary of a node's chain, exchanged when peers connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The genesis block: peers on another network are disconnected.
    pub genesis: BlockHash,
    /// The active tip.
    pub tip: BlockHash,
    /// The tip's height.
    pub height: u32,
    /// The tip's chainwork.
    pub chainwork: Work,
}

/// A request from one peer to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// "Here is my status; what is yours?"
    Status(Status),
    /// "Send the blocks of your active chain after the last of these I share with you."
    GetBlocksAfter {
        /// A block locator: hashes going back from the requester's tip.
        locator: Vec<BlockHash>,
    },
    /// "Send these blocks."
    GetBlocks(Vec<BlockHash>),
}

/// A response to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The responder's status.
    Status(Status),
    /// Blocks, in chain order (possibly fewer than asked for, or none).
    Blocks(Vec<Block>),
    /// The request was refused (malformed, too large, or rate limited).
    Refused(String),
}

/// Returns the network id: the first 8 bytes of the genesis hash, in hex.
pub fn network_id(genesis: &BlockHash) -> String {
    genesis.to_string()[..16].to_owned()
}

/// The gossip topic of blocks.
pub fn blocks_topic(network_id: &str) -> String {
    format!("/tinychain/{network_id}/blocks/1")
}

/// The gossip topic of transactions.
pub fn txs_topic(network_id: &str) -> String {
    format!("/tinychain/{network_id}/txs/1")
}

/// The sync protocol's name.
///
/// # Errors
///
/// Never in practice: the name always starts with '/'.
pub fn sync_protocol(network_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/tinychain/{network_id}/sync/1"))
        .expect("protocol names start with '/'")
}

/// The request-response codec: canonical encoding, sizes checked while reading.
#[derive(Clone, Debug, Default)]
pub struct Codec;

async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T, limit: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(limit + 1).read_to_end(&mut buf).await?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "message over the size limit"));
    }
    Ok(buf)
}

fn decode<M: serde::de::DeserializeOwned>(bytes: &[u8], limit: u64) -> io::Result<M> {
    encode::deserialize(bytes, limit).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_message<T: AsyncWrite + Unpin + Send, M: Serialize>(
    io: &mut T,
    message: &M,
    limit: u64,
) -> io::Result<()> {
    let bytes = encode::serialize(message);
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "message over the size limit"));
    }
    io.write_all(&bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_limited(io, MAX_REQUEST_SIZE).await?, MAX_REQUEST_SIZE)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_limited(io, MAX_RESPONSE_SIZE).await?, MAX_RESPONSE_SIZE)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &req, MAX_REQUEST_SIZE).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &res, MAX_RESPONSE_SIZE).await
    }
}
