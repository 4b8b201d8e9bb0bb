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
use tinychain_protocol::{Block, BlockHash, BlockHeader};

/// Largest request, in bytes.
pub const MAX_REQUEST_SIZE: u64 = 64 * 1024;
/// Blocks in one response at most.
pub const MAX_BLOCKS_PER_RESPONSE: usize = 16;
/// Largest response: the block cap plus framing.
pub const MAX_RESPONSE_SIZE: u64 = MAX_BLOCKS_PER_RESPONSE as u64 * MAX_BLOCK_SIZE + 1024;
/// Hashes in a locator at most (Bitcoin's limit is 101).
pub const MAX_LOCATOR: usize = 101;
/// Headers in one response at most (Bitcoin's `MAX_HEADERS_RESULTS`).
pub const MAX_HEADERS_PER_RESPONSE: usize = 2000;
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
    /// "Send the headers of your active chain after the last of these we share"
    /// (at most [`MAX_HEADERS_PER_RESPONSE`]; Bitcoin's `getheaders`).
    GetHeaders {
        /// A block locator: hashes going back from the requester's best header,
        /// at most [`MAX_LOCATOR`].
        locator: Vec<BlockHash>,
    },
    /// "Send these blocks" (at most [`MAX_BLOCKS_PER_RESPONSE`]; Bitcoin's `getdata`).
    GetBlocks(Vec<BlockHash>),
}

/// A response to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The responder's status.
    Status(Status),
    /// Headers, each the parent of the next (possibly none).
    Headers(Vec<BlockHeader>),
    /// Blocks, in the order asked for (possibly fewer than asked for, or none).
    Blocks(Vec<Block>),
    /// The request was refused (malformed, too large, or rate limited).
    Refused(String),
}

/// Returns the network id: the first 8 bytes of the genesis hash, in hex.
pub fn network_id(genesis: &BlockHash) -> String {
    genesis.to_string()[..16].to_owned()
}

/// The gossip topic of blocks, in compact form (version 2; version 1 carried
/// whole blocks).
pub fn blocks_topic(network_id: &str) -> String {
    format!("/tinychain/{network_id}/blocks/2")
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

/// The Kademlia protocol's name (nodes of other networks never share a routing table).
///
/// # Errors
///
/// Never in practice: the name always starts with '/'.
pub fn kad_protocol(network_id: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/tinychain/{network_id}/kad/1"))
        .expect("protocol names start with '/'")
}

/// The protocol version a node announces by identify; a peer announcing another is banned.
pub fn identify_protocol(network_id: &str) -> String {
    format!("tinychain/{network_id}")
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

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;

    use super::*;

    fn protocol() -> StreamProtocol {
        sync_protocol("594a1ac0b17337ca")
    }

    fn status() -> Status {
        Status { genesis: BlockHash::ZERO, tip: BlockHash::ZERO, height: 7, chainwork: Work::ZERO }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let mut codec = Codec;
        for request in [
            Request::Status(status()),
            Request::GetHeaders { locator: vec![BlockHash::ZERO; MAX_LOCATOR] },
            Request::GetBlocks(vec![BlockHash::ZERO; 3]),
        ] {
            let mut wire = Cursor::new(Vec::new());
            block_on(codec.write_request(&protocol(), &mut wire, request.clone())).expect("writes");
            let mut read = Cursor::new(wire.into_inner());
            assert_eq!(
                block_on(codec.read_request(&protocol(), &mut read)).expect("reads"),
                request
            );
        }
        let genesis =
            tinychain_protocol::params::Params::new(tinychain_protocol::params::Network::Regtest)
                .genesis_block();
        for response in [
            Response::Refused("rate limited".into()),
            Response::Status(status()),
            Response::Headers(vec![genesis.header; MAX_HEADERS_PER_RESPONSE]),
            Response::Blocks(vec![genesis.clone(); MAX_BLOCKS_PER_RESPONSE]),
        ] {
            let mut wire = Cursor::new(Vec::new());
            block_on(codec.write_response(&protocol(), &mut wire, response.clone()))
                .expect("writes");
            let mut read = Cursor::new(wire.into_inner());
            assert_eq!(
                block_on(codec.read_response(&protocol(), &mut read)).expect("reads"),
                response
            );
        }
    }

    #[test]
    fn oversized_truncated_and_garbage_messages_are_refused() {
        let mut codec = Codec;
        // Over the request limit: refused while reading, before decoding.
        let mut big = Cursor::new(vec![0u8; MAX_REQUEST_SIZE as usize + 1]);
        let err = block_on(codec.read_request(&protocol(), &mut big)).expect_err("oversized");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // A valid request cut short.
        let bytes = encode::serialize(&Request::Status(status()));
        let mut short = Cursor::new(bytes[..bytes.len() - 1].to_vec());
        assert!(block_on(codec.read_request(&protocol(), &mut short)).is_err());
        // Trailing garbage, an unknown variant, and random bytes.
        let mut long = bytes.clone();
        long.push(0);
        assert!(block_on(codec.read_request(&protocol(), &mut Cursor::new(long))).is_err());
        let mut unknown = bytes.clone();
        unknown[0] = 9;
        assert!(block_on(codec.read_request(&protocol(), &mut Cursor::new(unknown))).is_err());
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        assert!(block_on(codec.read_request(&protocol(), &mut Cursor::new(garbage))).is_err());
        // A locator claiming 2^40 hashes fails on the data, without allocating them.
        let mut claim = vec![1, 0, 0, 0];
        claim.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(block_on(codec.read_request(&protocol(), &mut Cursor::new(claim))).is_err());
    }

    #[test]
    fn a_response_over_the_limit_is_not_written() {
        let mut codec = Codec;
        let block =
            tinychain_protocol::params::Params::new(tinychain_protocol::params::Network::Regtest)
                .genesis_block();
        // More blocks than fit: the writer refuses rather than sending what peers reject.
        let per_block = block.size();
        let count = (MAX_RESPONSE_SIZE / per_block + 2) as usize;
        let response = Response::Blocks(vec![block; count]);
        let mut wire = Cursor::new(Vec::new());
        let err =
            block_on(codec.write_response(&protocol(), &mut wire, response)).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(wire.into_inner().is_empty(), "nothing was sent");
    }
}
