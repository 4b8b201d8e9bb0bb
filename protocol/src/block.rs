//! Blocks and block headers, in Bitcoin's 80-byte header layout.
//!
//! Owns [`BlockHeader`] (version i32 LE, previous block hash, merkle root, time
//! u32 LE, bits u32 LE, nonce u32 LE — exactly Bitcoin's serialization, so real
//! Bitcoin headers hash to their real block hashes) and [`Block`].

use serde::{Deserialize, Serialize};

use crate::encode::{self, DecodeError};
use crate::hash::{BlockHash, Hash256};
use crate::params::MAX_BLOCK_SIZE;
use crate::pow::CompactTarget;
use crate::transaction::Transaction;

/// A block header (Bitcoin's `CBlockHeader`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct BlockHeader {
    /// Block format version.
    pub version: i32,
    /// The hash of the previous block's header.
    pub prev_blockhash: BlockHash,
    /// The merkle root of the block's txids.
    pub merkle_root: Hash256,
    /// Unix time in seconds the miner claims.
    pub time: u32,
    /// The proof-of-work target in compact form (`nBits`).
    pub bits: CompactTarget,
    /// The value miners vary to find a hash below the target.
    pub nonce: u32,
}

impl BlockHeader {
    /// The size of an encoded header.
    pub const SIZE: usize = 80;

    /// Returns the header's 80 bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..36].copy_from_slice(self.prev_blockhash.as_bytes());
        out[36..68].copy_from_slice(self.merkle_root.as_bytes());
        out[68..72].copy_from_slice(&self.time.to_le_bytes());
        out[72..76].copy_from_slice(&self.bits.to_consensus().to_le_bytes());
        out[76..80].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    /// Parses a header from exactly 80 bytes.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> BlockHeader {
        let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let hash = |at: usize| {
            let mut h = [0u8; 32];
            h.copy_from_slice(&bytes[at..at + 32]);
            h
        };
        BlockHeader {
            version: i32::from_le_bytes(word(0)),
            prev_blockhash: BlockHash::from_byte_array(hash(4)),
            merkle_root: Hash256::from_byte_array(hash(36)),
            time: u32::from_le_bytes(word(68)),
            bits: CompactTarget::from_consensus(u32::from_le_bytes(word(72))),
            nonce: u32::from_le_bytes(word(76)),
        }
    }

    /// Returns the block hash: sha256d of the 80 header bytes.
    pub fn block_hash(&self) -> BlockHash {
        BlockHash::hash(&self.to_bytes())
    }
}

/// A block: a header and its transactions, the first being the coinbase.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions.
    pub txdata: Vec<Transaction>,
}

impl Block {
    /// Returns the block hash.
    pub fn block_hash(&self) -> BlockHash {
        self.header.block_hash()
    }

    /// Returns the size of the canonical encoding in bytes.
    pub fn size(&self) -> u64 {
        80 + 8 + self.txdata.iter().map(Transaction::size).sum::<u64>()
    }

    /// Encodes the block canonically: the header, the transaction count
    /// (`u64` LE), then each transaction.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(usize::try_from(self.size()).unwrap_or(0));
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(&(self.txdata.len() as u64).to_le_bytes());
        for tx in &self.txdata {
            tx.encode_into(&mut out);
        }
        out
    }

    /// Decodes a block from untrusted bytes (at most [`MAX_BLOCK_SIZE`]).
    ///
    /// # Errors
    ///
    /// Fails if the bytes are not exactly one canonical block within the limit.
    pub fn decode(bytes: &[u8]) -> Result<Block, DecodeError> {
        encode::deserialize(bytes, MAX_BLOCK_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_encoding_of_a_header_is_the_80_byte_layout() {
        let header = BlockHeader {
            version: 0x0403_0201,
            prev_blockhash: BlockHash::from_byte_array([0x11; 32]),
            merkle_root: Hash256::from_byte_array([0x22; 32]),
            time: 0x0807_0605,
            bits: CompactTarget::from_consensus(0x1d00_ffff),
            nonce: 0x0c0b_0a09,
        };
        let bytes = encode::serialize(&header);
        assert_eq!(bytes.len(), BlockHeader::SIZE);
        assert_eq!(bytes, header.to_bytes());
        assert_eq!(BlockHeader::from_bytes(&header.to_bytes()), header);
    }
}
