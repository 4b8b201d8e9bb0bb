//! Transactions: pay-to-public-key-hash only, like tinychain.
//!
//! Owns the transaction types, their txid and the coinbase layout. A transaction
//! spends previous outputs (each input names one by [`OutPoint`] and carries the
//! spender's compact ECDSA signature and compressed public key) and creates new
//! outputs, each paying an [`Amount`] to a [`PubkeyHash`]. Signatures and keys are
//! kept as raw bytes here: whether they are valid is decided by validation, so that
//! a peer's bad signature decodes and is rejected with a reason.

use serde::{Deserialize, Serialize};

use crate::amount::Amount;
use crate::encode::{self, DecodeError, byte_array};
use crate::hash::{PubkeyHash, Txid};
use crate::params::MAX_BLOCK_SIZE;

/// Names one output of an earlier transaction (Bitcoin's `COutPoint`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct OutPoint {
    /// The transaction that created the output.
    pub txid: Txid,
    /// The output's index in that transaction.
    pub vout: u32,
}

impl std::fmt::Display for OutPoint {
    /// `txid:vout`, as Bitcoin writes an outpoint.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.txid, self.vout)
    }
}

impl OutPoint {
    /// The outpoint a coinbase input names: no previous output.
    pub const NULL: OutPoint = OutPoint { txid: Txid::ZERO, vout: u32::MAX };

    /// Tells whether this is the coinbase's null outpoint.
    pub fn is_null(&self) -> bool {
        *self == Self::NULL
    }

    /// Returns the canonical encoding (the txid's 32 bytes, then `vout` as u32
    /// little-endian) without allocating: the bytes [`crate::encode::serialize`]
    /// gives, for loops over tens of thousands of outputs.
    pub fn to_bytes(&self) -> [u8; 36] {
        let mut bytes = [0u8; 36];
        bytes[..32].copy_from_slice(self.txid.as_bytes());
        bytes[32..].copy_from_slice(&self.vout.to_le_bytes());
        bytes
    }
}

/// A transaction input: the output it spends and the proof that its owner agrees.
///
/// For a coinbase input, `prev_out` is [`OutPoint::NULL`] and `signature` holds the
/// coinbase data instead (see [`Transaction::coinbase`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct TxIn {
    /// The output being spent.
    pub prev_out: OutPoint,
    /// A 64-byte compact ECDSA signature `r ‖ s` (big-endian), or the coinbase data.
    #[serde(with = "byte_array")]
    pub signature: [u8; 64],
    /// The spender's 33-byte compressed SEC1 public key (zero in a coinbase).
    #[serde(with = "byte_array")]
    pub pubkey: [u8; 33],
    /// Bitcoin's `nSequence`: `u32::MAX` marks the input final (see locktime).
    pub sequence: u32,
}

/// A transaction output: an amount locked to a public-key hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct TxOut {
    /// How much the output holds.
    pub value: Amount,
    /// Whose key can spend it.
    pub pubkey_hash: PubkeyHash,
}

/// A transaction (Bitcoin's `CTransaction`, with P2PKH in place of scripts).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Transaction {
    /// Format version; 1 today.
    pub version: i32,
    /// The outputs spent.
    pub inputs: Vec<TxIn>,
    /// The outputs created.
    pub outputs: Vec<TxOut>,
    /// Bitcoin's `nLockTime`: 0, a block height (< 500,000,000) or a unix time.
    pub locktime: u32,
}

/// Bytes of an encoded [`TxIn`]: outpoint, signature, public key, sequence.
const TXIN_SIZE: usize = 36 + 64 + 33 + 4;

/// Bytes of an encoded [`TxOut`]: value, public-key hash.
const TXOUT_SIZE: usize = 8 + 20;

/// The sequence number that makes an input final.
pub const SEQUENCE_FINAL: u32 = u32::MAX;

/// Locktime values below this are heights, at or above it unix times (Bitcoin's `LOCKTIME_THRESHOLD`).
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// Bytes of a coinbase's data that follow the height and extra nonce, free for a message.
pub const COINBASE_MESSAGE_LEN: usize = 64 - 4 - 8;

impl Transaction {
    /// Builds a coinbase for the block at `height`.
    ///
    /// Its data (the input's `signature` field) is `height` (u32 LE), then the
    /// miner's `extra_nonce` (u64 LE), then `message` padded with zeros. Committing to
    /// the height makes every coinbase txid unique (Bitcoin's BIP 34).
    pub fn coinbase(
        height: u32,
        extra_nonce: u64,
        message: &[u8; COINBASE_MESSAGE_LEN],
        outputs: Vec<TxOut>,
    ) -> Transaction {
        let mut data = [0u8; 64];
        data[..4].copy_from_slice(&height.to_le_bytes());
        data[4..12].copy_from_slice(&extra_nonce.to_le_bytes());
        data[12..].copy_from_slice(message);
        Transaction {
            version: 1,
            inputs: vec![TxIn {
                prev_out: OutPoint::NULL,
                signature: data,
                pubkey: [0; 33],
                sequence: SEQUENCE_FINAL,
            }],
            outputs,
            locktime: 0,
        }
    }

    /// Builds an unsigned version-1 transaction spending `prev_outs` into `outputs`,
    /// with final sequences and no locktime; sign it with [`crate::sighash::sign_all`]
    /// or [`crate::sighash::sign_input`].
    pub fn spending(
        prev_outs: impl IntoIterator<Item = OutPoint>,
        outputs: Vec<TxOut>,
    ) -> Transaction {
        Transaction {
            version: 1,
            inputs: prev_outs
                .into_iter()
                .map(|prev_out| TxIn {
                    prev_out,
                    signature: [0; 64],
                    pubkey: [0; 33],
                    sequence: SEQUENCE_FINAL,
                })
                .collect(),
            outputs,
            locktime: 0,
        }
    }

    /// Tells whether this is a coinbase: exactly one input, spending the null outpoint.
    pub fn is_coinbase(&self) -> bool {
        self.inputs.len() == 1 && self.inputs[0].prev_out.is_null()
    }

    /// Returns the height a coinbase commits to, or `None` if this is not a coinbase.
    pub fn coinbase_height(&self) -> Option<u32> {
        if !self.is_coinbase() {
            return None;
        }
        let data = &self.inputs[0].signature;
        Some(u32::from_le_bytes([data[0], data[1], data[2], data[3]]))
    }

    /// Returns the txid: sha256d of the canonical encoding.
    pub fn txid(&self) -> Txid {
        Txid::hash(&self.encode())
    }

    /// Returns the size of the canonical encoding in bytes: `24 + 137·n_in + 28·n_out`.
    pub fn size(&self) -> u64 {
        self.encoded_len() as u64
    }

    fn encoded_len(&self) -> usize {
        4 + 8 + TXIN_SIZE * self.inputs.len() + 8 + TXOUT_SIZE * self.outputs.len() + 4
    }

    /// Appends the canonical encoding to `out` (the bytes
    /// [`crate::encode::serialize`] gives, written field by field: txids of
    /// transactions with thousands of outputs are computed on every hop).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.inputs.len() as u64).to_le_bytes());
        for input in &self.inputs {
            out.extend_from_slice(&input.prev_out.to_bytes());
            out.extend_from_slice(&input.signature);
            out.extend_from_slice(&input.pubkey);
            out.extend_from_slice(&input.sequence.to_le_bytes());
        }
        out.extend_from_slice(&(self.outputs.len() as u64).to_le_bytes());
        for output in &self.outputs {
            out.extend_from_slice(&output.value.to_belushis().to_le_bytes());
            out.extend_from_slice(&output.pubkey_hash.to_byte_array());
        }
        out.extend_from_slice(&self.locktime.to_le_bytes());
    }

    /// Returns the sum of the output values, or `None` if it leaves the money range.
    pub fn total_out(&self) -> Option<Amount> {
        Amount::checked_sum(self.outputs.iter().map(|o| o.value))
    }

    /// Encodes the transaction canonically.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes a transaction from untrusted bytes (at most [`MAX_BLOCK_SIZE`]).
    ///
    /// # Errors
    ///
    /// Fails if the bytes are not exactly one canonical transaction within the limit.
    pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
        encode::deserialize(bytes, MAX_BLOCK_SIZE)
    }
}
