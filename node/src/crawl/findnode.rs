//! Kademlia's FIND_NODE, asked of one peer: the request-response codec the crawler uses.
//!
//! libp2p-kad answers FIND_NODE but only asks it inside its own iterative
//! queries, which never say which peer answered what. To read one peer's routing
//! table the crawler sends the request itself, on the network's Kademlia protocol
//! (`/tinychain/<id>/kad/1`): one protobuf `Message` (libp2p's `dht.proto`:
//! type 4 = FIND_NODE, the key) with an unsigned-varint length prefix, answered
//! by a `Message` whose `closerPeers` are the peer's closest entries to the key
//! (at most 20), each marked connected or not. Answers are refused above
//! [`MAX_MESSAGE_SIZE`] before they are read; peer ids and addresses that do not
//! decode are skipped. The crawler never answers FIND_NODE.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use prost::Message as _;

/// The largest message read (libp2p-kad's own limit).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024;
/// `dht.proto`'s `MessageType.FIND_NODE`.
const FIND_NODE: i32 = 4;
/// `dht.proto`'s `ConnectionType.CONNECTED`.
const CONNECTED: i32 = 1;

/// `dht.proto`'s `Message`, the fields FIND_NODE uses.
#[derive(Clone, PartialEq, prost::Message)]
struct KadMessage {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(bytes = "vec", tag = "2")]
    key: Vec<u8>,
    #[prost(message, repeated, tag = "8")]
    closer_peers: Vec<KadPeer>,
}

/// `dht.proto`'s `Message.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
struct KadPeer {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    addrs: Vec<Vec<u8>>,
    #[prost(int32, tag = "3")]
    connection: i32,
}

/// A peer in an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its id.
    pub peer: PeerId,
    /// The addresses the answering peer has for it.
    pub addresses: Vec<Multiaddr>,
    /// The answering peer says it is connected to it.
    pub connected: bool,
}

/// The codec: requests are FIND_NODE keys, responses the peers found.
#[derive(Clone, Debug, Default)]
pub struct Codec;

async fn read_message<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<KadMessage> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    // The unsigned-varint length: at most 3 bytes for anything under the limit.
    let mut len: usize = 0;
    for i in 0..4 {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await?;
        len |= usize::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(invalid("length prefix too long".into()));
        }
    }
    if len > MAX_MESSAGE_SIZE {
        return Err(invalid(format!(
            "a {len}-byte message is over the {MAX_MESSAGE_SIZE}-byte limit"
        )));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    KadMessage::decode(&buf[..]).map_err(|e| invalid(e.to_string()))
}

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "the crawler does not answer FIND_NODE")
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<Found>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(unsupported())
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<Found>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let message = read_message(io).await?;
        Ok(message
            .closer_peers
            .into_iter()
            .filter_map(|p| {
                Some(Found {
                    peer: PeerId::from_bytes(&p.id).ok()?,
                    addresses: p
                        .addrs
                        .into_iter()
                        .filter_map(|a| Multiaddr::try_from(a).ok())
                        .collect(),
                    connected: p.connection == CONNECTED,
                })
            })
            .collect())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        key: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let message = KadMessage { kind: FIND_NODE, key, closer_peers: Vec::new() };
        io.write_all(&message.encode_length_delimited_to_vec()).await?;
        io.flush().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<Found>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;

    use super::*;

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/tinychain/test/kad/1")
    }

    #[test]
    fn a_request_is_dht_protos_find_node_with_a_varint_length() {
        let mut wire = Cursor::new(Vec::new());
        block_on(Codec.write_request(&protocol(), &mut wire, vec![0xaa; 3])).expect("writes");
        // length 7 · field 1 varint 4 · field 2 bytes, length 3
        assert_eq!(wire.into_inner(), [7, 0x08, 4, 0x12, 3, 0xaa, 0xaa, 0xaa]);
    }

    #[test]
    fn an_answer_gives_its_peers_and_skips_what_does_not_decode() {
        let good = PeerId::random();
        let addr: Multiaddr = "/ip4/10.0.0.1/tcp/19444".parse().expect("an address");
        let answer = KadMessage {
            kind: FIND_NODE,
            key: Vec::new(),
            closer_peers: vec![
                KadPeer {
                    id: good.to_bytes(),
                    addrs: vec![addr.to_vec(), vec![0xff; 4]],
                    connection: CONNECTED,
                },
                KadPeer { id: vec![1, 2, 3], addrs: Vec::new(), connection: 0 },
            ],
        };
        let mut wire = Cursor::new(answer.encode_length_delimited_to_vec());
        let found = block_on(Codec.read_response(&protocol(), &mut wire)).expect("reads");
        assert_eq!(found, [Found { peer: good, addresses: vec![addr], connected: true }]);
    }

    #[test]
    fn oversized_truncated_and_garbage_answers_are_errors() {
        let read =
            |bytes: Vec<u8>| block_on(Codec.read_response(&protocol(), &mut Cursor::new(bytes)));
        // A 1 MiB length prefix is refused before anything is allocated.
        assert_eq!(
            read(vec![0x80, 0x80, 0x40]).expect_err("too big").kind(),
            io::ErrorKind::InvalidData
        );
        assert!(read(vec![0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(read(vec![10, 1, 2]).is_err(), "truncated");
        assert!(read(vec![3, 0xff, 0xff, 0xff]).is_err(), "not protobuf");
        assert!(read(Vec::new()).is_err());
    }
}
