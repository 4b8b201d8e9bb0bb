//! The node's wire protocol, written down again from docs/p2p.md: topic and
//! protocol names, the sync messages (mirrored here, not imported from the
//! node), a codec that sends any bytes, and the malformed requests to try.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use serde::{Deserialize, Serialize};
use tinychain_protocol::pow::Work;
use tinychain_protocol::{Block, BlockHash, BlockHeader, encode};

/// The most a response may be, per docs/p2p.md (16 blocks and framing).
pub(crate) const MAX_RESPONSE: u64 = 16 * 1_000_000 + 1024;
/// The largest request the node reads (docs/p2p.md).
pub(crate) const MAX_REQUEST: usize = 65_536;

/// `/tinychain/<id>/…` names; `<id>` is the first 16 hex characters of the
/// genesis hash as displayed.
pub(crate) struct Names {
    pub(crate) blocks: String,
    pub(crate) txs: String,
    pub(crate) sync: StreamProtocol,
    pub(crate) identify: String,
}

impl Names {
    pub(crate) fn new(genesis: &BlockHash) -> Names {
        let id = &genesis.to_string()[..16];
        Names {
            blocks: format!("/tinychain/{id}/blocks/2"),
            txs: format!("/tinychain/{id}/txs/1"),
            sync: StreamProtocol::try_from_owned(format!("/tinychain/{id}/sync/1"))
                .expect("starts with /"),
            identify: format!("tinychain/{id}"),
        }
    }
}

/// `Status`: 100 bytes of fields.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Status {
    pub(crate) genesis: BlockHash,
    pub(crate) tip: BlockHash,
    pub(crate) height: u32,
    pub(crate) chainwork: Work,
}

/// Requests, variant index as a u32 LE tag.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    Status(Status),
    GetHeaders { locator: Vec<BlockHash> },
    GetBlocks(Vec<BlockHash>),
}

/// Responses, variant index as a u32 LE tag.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    Status(Status),
    Headers(Vec<BlockHeader>),
    Blocks(Vec<Block>),
    Refused(String),
}

/// Decodes a response; `None` if it does not decode.
pub(crate) fn response(bytes: &[u8]) -> Option<Response> {
    encode::deserialize(bytes, MAX_RESPONSE).ok()
}

/// Every kind of malformed request issue 17 found, by name. (A request over
/// the stream's flow-control window, such as `GetBlocks` of 10,000 hashes,
/// stalls its sender's write: the node stops reading at its limit.)
pub(crate) fn malformed_requests(genesis: BlockHash) -> Vec<(&'static str, Vec<u8>)> {
    let status = encode::serialize(&Request::Status(Status {
        genesis,
        tip: genesis,
        height: 0,
        chainwork: Work::ZERO,
    }));
    let mut trailing = status.clone();
    trailing.push(0);
    let mut unknown = status.clone();
    unknown[0] = 7;
    let mut huge_count = vec![2, 0, 0, 0];
    huge_count.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut long_prefix = vec![1, 0, 0, 0];
    long_prefix.extend_from_slice(&(1u64 << 40).to_le_bytes());
    long_prefix.extend_from_slice(&[0; 64]);
    vec![
        ("empty", Vec::new()),
        ("oversized", vec![0; 2 * MAX_REQUEST]),
        ("truncated", status[..status.len() - 3].to_vec()),
        ("trailing bytes", trailing),
        ("unknown variant", unknown),
        ("huge element count", huge_count),
        ("oversized length prefix", long_prefix),
        (
            "GetBlocks of 10,000 hashes",
            encode::serialize(&Request::GetBlocks(vec![genesis; 10_000])),
        ),
        ("GetBlocks of 17 hashes", encode::serialize(&Request::GetBlocks(vec![genesis; 17]))),
        (
            "locator of 102 hashes",
            encode::serialize(&Request::GetHeaders { locator: vec![genesis; 102] }),
        ),
    ]
}

/// Bytes in, bytes out, no checks.
#[derive(Clone, Default)]
pub(crate) struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(MAX_REQUEST as u64 + 1).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(MAX_RESPONSE).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res).await?;
        io.close().await
    }
}
