//! The one canonical encoding of every consensus object.
//!
//! Owns the byte layout used for hashing, gossip and storage alike: bincode 1.3.3
//! with explicit options — fixed-width little-endian integers, `u64` little-endian
//! length prefixes for sequences, fixed-size arrays written as raw bytes with no
//! prefix, trailing bytes rejected. Every value has exactly one encoding, so
//! decoding and re-encoding accepted bytes gives the same bytes.
//!
//! This is the only module that names `bincode` (it is unmaintained; keeping it
//! behind two functions lets it be swapped without touching consensus code).
//! Decoding untrusted bytes takes a size limit: it never panics and never
//! allocates more than the limit.

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error decoding untrusted bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the caller allows for this kind of object.
    #[error("{len} bytes exceed the limit of {limit} bytes")]
    TooLarge {
        /// The input's length.
        len: usize,
        /// The caller's limit.
        limit: u64,
    },
    /// The bytes are not a canonical encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Malformed(String),
}

impl From<bincode::Error> for DecodeError {
    /// Says what is wrong with the bytes in the protocol's words, not the decoder's.
    fn from(error: bincode::Error) -> DecodeError {
        use bincode::ErrorKind;
        let what = match *error {
            ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                "the bytes end before the value does".to_owned()
            }
            ErrorKind::InvalidBoolEncoding(byte) => format!("a flag byte is {byte}, not 0 or 1"),
            ErrorKind::InvalidTagEncoding(tag) => format!("unknown variant {tag}"),
            ErrorKind::SizeLimit => "a length is over the limit".to_owned(),
            ErrorKind::Custom(message) if message.contains("bytes remaining") => {
                "bytes left over after the value".to_owned()
            }
            // Our own types' messages (e.g. an array's length), already in our words.
            ErrorKind::Custom(message) => message,
            other => other.to_string(),
        };
        DecodeError::Malformed(what)
    }
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .reject_trailing_bytes()
}

/// Encodes `value` canonically.
pub fn serialize<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    options()
        .serialize(value)
        .expect("consensus types only contain integers, arrays and length-prefixed sequences, which always encode")
}

/// Decodes a value from untrusted `bytes`, which may be at most `limit` bytes long.
///
/// # Errors
///
/// Fails if the bytes are truncated, longer than the value, larger than `limit`,
/// or not a valid encoding (for example a `bool` other than 0 or 1).
pub fn deserialize<T: DeserializeOwned>(bytes: &[u8], limit: u64) -> Result<T, DecodeError> {
    // bincode 1.3 ignores `with_limit` when reading from a slice, so the limit is
    // enforced on the input here. Reading cannot go past the input, and serde caps
    // the preallocation of any sequence at 1 MiB whatever length prefix it claims.
    if bytes.len() as u64 > limit {
        return Err(DecodeError::TooLarge { len: bytes.len(), limit });
    }
    Ok(options().deserialize(bytes)?)
}

/// Serde helpers for fixed-size byte arrays longer than serde's built-in 32,
/// written as raw bytes with no length prefix (like `[u8; 32]`).
pub(crate) mod byte_array {
    use std::fmt;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(N)?;
        for byte in bytes {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        struct ArrayVisitor<const N: usize>;

        impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
            type Value = [u8; N];

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
                let mut bytes = [0u8; N];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    *byte =
                        seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(bytes)
            }
        }

        deserializer.deserialize_tuple(N, ArrayVisitor::<N>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_fixed_width_little_endian() {
        assert_eq!(serialize(&0x0102_0304u32), vec![4, 3, 2, 1]);
        assert_eq!(serialize(&vec![7u8]), vec![1, 0, 0, 0, 0, 0, 0, 0, 7]);
    }

    proptest::proptest! {
        /// The allocation-free encoders of hot loops write the documented layout,
        /// which is the canonical encoding. (They stay hand-written: bincode's
        /// byte-at-a-time arrays made a txid 2× and a UTXO entry 15× slower,
        /// `cargo bench -p tinychain-protocol --bench protocol -- encode`.)
        #[test]
        fn outpoint_and_coin_bytes_have_their_layout(
            txid: [u8; 32], vout: u32, value: u64, pkh: [u8; 20], height: u32, is_coinbase: bool,
        ) {
            use crate::{Amount, OutPoint, PubkeyHash, TxOut, Txid};
            use crate::validation::Coin;
            let outpoint = OutPoint { txid: Txid::from_byte_array(txid), vout };
            let output = TxOut {
                value: Amount::from_belushis(value),
                pubkey_hash: PubkeyHash::from_byte_array(pkh),
            };
            let coin = Coin { output, height, is_coinbase };
            let expected = [&txid[..], &vout.to_le_bytes()].concat();
            proptest::prop_assert_eq!(&outpoint.to_bytes()[..], &expected[..]);
            proptest::prop_assert_eq!(&serialize(&outpoint)[..], &expected[..]);
            let expected =
                [&value.to_le_bytes()[..], &pkh, &height.to_le_bytes(), &[u8::from(is_coinbase)]]
                    .concat();
            proptest::prop_assert_eq!(&coin.to_bytes()[..], &expected[..]);
            proptest::prop_assert_eq!(&serialize(&coin)[..], &expected[..]);
        }

        /// Transactions and blocks are written field by field; the bytes and
        /// sizes are bincode's (a transaction is `24 + 137·n_in + 28·n_out`
        /// bytes), and they decode back to the same value.
        #[test]
        fn transaction_and_block_bytes_are_their_canonical_encoding(
            version: i32,
            inputs in proptest::collection::vec(
                (proptest::array::uniform32(0u8..), 0u32..,
                 proptest::array::uniform32(0u8..), proptest::array::uniform32(0u8..), 0u32..),
                0..4,
            ),
            outputs in proptest::collection::vec((0u64.., proptest::array::uniform20(0u8..)), 0..5),
            locktime: u32,
            header: [u8; 80],
            copies in 0usize..3,
        ) {
            use crate::{Amount, Block, BlockHeader, OutPoint, PubkeyHash, Transaction, TxIn, TxOut, Txid};
            let tx = Transaction {
                version,
                inputs: inputs
                    .iter()
                    .map(|(txid, vout, r, s, seq)| {
                        let mut signature = [0u8; 64];
                        signature[..32].copy_from_slice(r);
                        signature[32..].copy_from_slice(s);
                        let mut pubkey = [0u8; 33];
                        pubkey[1..].copy_from_slice(r);
                        TxIn {
                            prev_out: OutPoint { txid: Txid::from_byte_array(*txid), vout: *vout },
                            signature,
                            pubkey,
                            sequence: *seq,
                        }
                    })
                    .collect(),
                outputs: outputs
                    .iter()
                    .map(|(value, pkh)| TxOut {
                        value: Amount::from_belushis(*value),
                        pubkey_hash: PubkeyHash::from_byte_array(*pkh),
                    })
                    .collect(),
                locktime,
            };
            let canonical = serialize(&tx);
            proptest::prop_assert_eq!(&tx.encode(), &canonical);
            proptest::prop_assert_eq!(canonical.len(), 24 + 137 * inputs.len() + 28 * outputs.len());
            proptest::prop_assert_eq!(tx.size(), canonical.len() as u64);
            proptest::prop_assert_eq!(Transaction::decode(&canonical).ok(), Some(tx.clone()));
            let block = Block { header: BlockHeader::from_bytes(&header), txdata: vec![tx; copies] };
            let canonical = serialize(&block);
            proptest::prop_assert_eq!(&block.encode(), &canonical);
            proptest::prop_assert_eq!(&canonical[..80], &header[..]);
            proptest::prop_assert_eq!(block.size(), canonical.len() as u64);
            proptest::prop_assert_eq!(Block::decode(&canonical).ok(), Some(block.clone()));
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let err = deserialize::<u32>(&[1, 0, 0, 0, 0], 100).expect_err("a byte too many");
        assert_eq!(err.to_string(), "malformed encoding: bytes left over after the value");
        assert_eq!(deserialize::<u32>(&[1, 0, 0, 0], 100).ok(), Some(1));
    }

    #[test]
    fn truncated_input_is_an_error() {
        let err = deserialize::<u64>(&[1, 0, 0], 100).expect_err("too short");
        assert_eq!(err.to_string(), "malformed encoding: the bytes end before the value does");
    }

    #[test]
    fn decoder_internals_stay_out_of_the_messages() {
        let err = deserialize::<bool>(&[7], 100).expect_err("not a flag");
        assert_eq!(err.to_string(), "malformed encoding: a flag byte is 7, not 0 or 1");
        let err = deserialize::<Option<u8>>(&[9, 0], 100).expect_err("no such variant");
        assert_eq!(err.to_string(), "malformed encoding: unknown variant 9");
    }

    #[test]
    fn a_huge_length_prefix_fails_without_allocating_it() {
        // Claims 2^62 elements: must fail on the limit, not try to allocate.
        let mut bytes = (1u64 << 62).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 16]);
        assert!(deserialize::<Vec<u64>>(&bytes, 1024).is_err());
        assert!(deserialize::<Vec<u8>>(&bytes, 1024).is_err());
    }

    #[test]
    fn the_limit_is_enforced() {
        let bytes = serialize(&vec![0u8; 100]);
        assert!(deserialize::<Vec<u8>>(&bytes, 50).is_err());
        assert!(deserialize::<Vec<u8>>(&bytes, 200).is_ok());
    }

    #[test]
    fn non_canonical_bool_is_rejected() {
        assert!(deserialize::<bool>(&[2], 10).is_err());
    }
}
