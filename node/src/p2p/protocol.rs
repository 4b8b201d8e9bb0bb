//! The node-to-node sync protocol: messages, names and the size-limited codec.
//!
//! Owns the request/response messages exchanged over libp2p request-response
//! (`/tinychain/<network id>/sync/1`), the gossip topic names, and a codec that
//! refuses oversized messages while reading, before decoding. Messages are in
//! the canonical encoding of `tinychain_protocol::encode`.
//!
//! A request that is oversized, does not decode, or asks for more than the
//! protocol allows is read as [`WireRequest::Malformed`], not as an error:
//! request-response 0.30 drops an inbound stream whose decoding fails without
//! telling anyone, and the sender must pay for what it sent.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};
use tinychain_protocol::encode;
use tinychain_protocol::params::MAX_BLOCK_SIZE;
use tinychain_protocol::pow::Work;
use tinychain_protocol::{Block, BlockHash, BlockHeader, CompactBlock, Transaction};

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
/// The largest gossip message the node sends: one block plus gossipsub's envelope.
pub const MAX_GOSSIP_SIZE: usize = MAX_BLOCK_SIZE as usize + 64 * 1024;
/// The largest gossip frame the node reads (gossipsub's `max_transmit_size`):
/// twice what it sends, so that a message over the limit reaches the node's
/// own check, which penalises its sender; gossipsub would drop it unseen.
pub const MAX_GOSSIP_READ: usize = 2 * MAX_GOSSIP_SIZE;
/// The largest payload of a gossip message: a compact block or transaction is
/// never larger than a block.
pub const MAX_GOSSIP_DATA: usize = MAX_BLOCK_SIZE as usize;

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

/// A request as read from the wire: a valid [`Request`], or what is wrong
/// with the bytes the peer sent (the codec's type for requests both ways; only
/// valid requests are ever written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireRequest {
    /// A request that decodes and keeps to the protocol's limits.
    Request(Request),
    /// Bytes that are not one: oversized, empty, truncated, trailing bytes, an
    /// unknown variant, or a count over its limit.
    Malformed(String),
}

/// Rate-limit tokens a `GetHeaders` request takes: its answer (up to 2,000
/// headers, 160 KB read from the store) costs the node some ten times what a
/// `Status` or a `GetBlocks` costs per request (measured with the attacks
/// bench: a flood of them at the plain limit took half a core). Headers-first
/// sync asks one peer for one run at a time, far below the 5 a second left.
pub const HEADERS_REQUEST_COST: u32 = 10;

impl WireRequest {
    /// Returns the rate-limit tokens the request takes.
    pub fn cost(&self) -> u32 {
        match self {
            WireRequest::Request(Request::GetHeaders { .. }) => HEADERS_REQUEST_COST,
            _ => 1,
        }
    }
}

/// Decodes a request from a peer's bytes, checking every limit of the
/// protocol ([`MAX_REQUEST_SIZE`], [`MAX_LOCATOR`], [`MAX_BLOCKS_PER_RESPONSE`]).
///
/// # Errors
///
/// What is wrong with the bytes, in words for the log and the refusal.
pub fn decode_request(bytes: &[u8]) -> Result<Request, String> {
    if bytes.is_empty() {
        return Err("empty request".to_owned());
    }
    if bytes.len() as u64 > MAX_REQUEST_SIZE {
        return Err(format!("request over the limit of {MAX_REQUEST_SIZE} bytes"));
    }
    let request: Request = encode::deserialize(bytes, MAX_REQUEST_SIZE)
        .map_err(|e| format!("request does not decode: {e}"))?;
    match &request {
        Request::GetHeaders { locator } if locator.len() > MAX_LOCATOR => {
            Err(format!("locator of {} hashes (at most {MAX_LOCATOR})", locator.len()))
        }
        Request::GetBlocks(hashes) if hashes.len() > MAX_BLOCKS_PER_RESPONSE => Err(format!(
            "{} blocks asked for (at most {MAX_BLOCKS_PER_RESPONSE} per request)",
            hashes.len()
        )),
        _ => Ok(request),
    }
}

/// Decodes a gossiped compact block, refusing a payload over [`MAX_GOSSIP_DATA`].
///
/// # Errors
///
/// Why it is not one, in words for the log and the penalty.
pub fn decode_gossip_block(data: &[u8]) -> Result<CompactBlock, String> {
    check_gossip_size(data)?;
    CompactBlock::decode(data).map_err(|e| format!("malformed block: {e}"))
}

/// Decodes a gossiped transaction, refusing a payload over [`MAX_GOSSIP_DATA`].
///
/// # Errors
///
/// Why it is not one, in words for the log and the penalty.
pub fn decode_gossip_tx(data: &[u8]) -> Result<Transaction, String> {
    check_gossip_size(data)?;
    Transaction::decode(data).map_err(|e| format!("malformed transaction: {e}"))
}

/// Gossipsub reads up to [`MAX_GOSSIP_READ`] so that this check sees what a
/// peer that does not validate what it forwards sends.
fn check_gossip_size(data: &[u8]) -> Result<(), String> {
    if data.len() > MAX_GOSSIP_DATA {
        return Err(format!("gossip message of {} bytes (at most {MAX_GOSSIP_DATA})", data.len()));
    }
    Ok(())
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
    type Request = WireRequest;
    type Response = Response;

    /// Reads at most [`MAX_REQUEST_SIZE`] + 1 bytes; only an I/O failure is an
    /// error, bad bytes are a [`WireRequest::Malformed`] for the node to judge.
    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<WireRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(MAX_REQUEST_SIZE + 1).read_to_end(&mut bytes).await?;
        Ok(match decode_request(&bytes) {
            Ok(request) => WireRequest::Request(request),
            Err(reason) => WireRequest::Malformed(reason),
        })
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
        req: WireRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            WireRequest::Request(request) => write_message(io, &request, MAX_REQUEST_SIZE).await,
            WireRequest::Malformed(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a malformed request is never sent",
            )),
        }
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

    fn read(bytes: Vec<u8>) -> WireRequest {
        block_on(Codec.read_request(&protocol(), &mut Cursor::new(bytes))).expect("no I/O error")
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let mut codec = Codec;
        for request in [
            Request::Status(status()),
            Request::GetHeaders { locator: vec![BlockHash::ZERO; MAX_LOCATOR] },
            Request::GetBlocks(vec![BlockHash::ZERO; MAX_BLOCKS_PER_RESPONSE]),
        ] {
            let mut wire = Cursor::new(Vec::new());
            let sent = WireRequest::Request(request);
            block_on(codec.write_request(&protocol(), &mut wire, sent.clone())).expect("writes");
            assert_eq!(read(wire.into_inner()), sent);
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

    /// `Status` is 100 bytes of fields, 104 with the variant tag (docs/p2p.md).
    #[test]
    fn a_status_request_is_104_bytes() {
        assert_eq!(encode::serialize(&status()).len(), 100);
        assert_eq!(encode::serialize(&Request::Status(status())).len(), 104);
    }

    /// Every kind of bad request is read as a value naming what is wrong, so
    /// the node can punish it: request-response would drop an error unseen.
    #[test]
    fn every_kind_of_malformed_request_is_read_as_malformed() {
        let status_bytes = encode::serialize(&Request::Status(status()));
        let mut trailing = status_bytes.clone();
        trailing.push(0);
        let mut unknown = status_bytes.clone();
        unknown[0] = 9;
        let mut huge_count = vec![1, 0, 0, 0];
        huge_count.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", Vec::new(), "empty request"),
            ("oversized", vec![0; MAX_REQUEST_SIZE as usize + 1], "over the limit"),
            ("truncated", status_bytes[..status_bytes.len() - 1].to_vec(), "does not decode"),
            ("trailing bytes", trailing, "does not decode"),
            ("unknown variant", unknown, "does not decode"),
            ("a count of 2^40", huge_count, "does not decode"),
            ("garbage", garbage, "does not decode"),
            (
                "102 locator hashes",
                encode::serialize(&Request::GetHeaders {
                    locator: vec![BlockHash::ZERO; MAX_LOCATOR + 1],
                }),
                "locator of 102 hashes",
            ),
            (
                "17 blocks",
                encode::serialize(&Request::GetBlocks(vec![
                    BlockHash::ZERO;
                    MAX_BLOCKS_PER_RESPONSE + 1
                ])),
                "17 blocks asked for",
            ),
            (
                "10,000 blocks",
                encode::serialize(&Request::GetBlocks(vec![BlockHash::ZERO; 10_000])),
                "over the limit",
            ),
        ];
        for (name, bytes, says) in cases {
            match read(bytes) {
                WireRequest::Malformed(reason) => {
                    assert!(reason.contains(says), "{name}: {reason}")
                }
                other => panic!("{name}: read as {other:?}"),
            }
        }
        // Only the first MAX_REQUEST_SIZE + 1 bytes of a huge request are read.
        let mut endless = Cursor::new(vec![0u8; 10 * MAX_REQUEST_SIZE as usize]);
        let read = block_on(Codec.read_request(&protocol(), &mut endless)).expect("reads");
        assert!(matches!(read, WireRequest::Malformed(_)));
        assert_eq!(endless.position(), MAX_REQUEST_SIZE + 1);
        // And a malformed request is never written.
        let mut wire = Cursor::new(Vec::new());
        let malformed = WireRequest::Malformed("x".into());
        assert!(block_on(Codec.write_request(&protocol(), &mut wire, malformed)).is_err());
        assert!(wire.into_inner().is_empty());
    }

    #[test]
    fn oversized_truncated_and_garbage_responses_are_refused() {
        let mut codec = Codec;
        let mut big = Cursor::new(vec![0u8; MAX_RESPONSE_SIZE as usize + 1]);
        let err = block_on(codec.read_response(&protocol(), &mut big)).expect_err("oversized");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let bytes = encode::serialize(&Response::Status(status()));
        let mut short = Cursor::new(bytes[..bytes.len() - 1].to_vec());
        assert!(block_on(codec.read_response(&protocol(), &mut short)).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(block_on(codec.read_response(&protocol(), &mut Cursor::new(long))).is_err());
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
