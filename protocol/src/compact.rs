//! Compact blocks: a block announced as its header, its coinbase and the txids
//! of its other transactions, which the receiver takes from its own mempool.
//!
//! Owns [`CompactBlock`] and its reconstruction. This is BIP152's idea in its
//! simplest form: full 32-byte txids instead of salted 6-byte short ids (no
//! collisions to handle), and only the coinbase sent in full (Bitcoin Core's
//! default too). A block whose transactions were relayed before it costs each
//! hop a few hundred bytes instead of up to a megabyte; a receiver missing any
//! transaction asks for the whole block instead (BIP152 would ask for just the
//! missing ones).
//!
//! A txid names exactly one transaction (no witness data to malleate), so a
//! reconstructed block is the sender's block, or the sender lied and the
//! merkle root does not match.

use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockHeader};
use crate::encode::{self, DecodeError};
use crate::hash::{BlockHash, Txid};
use crate::params::MAX_BLOCK_SIZE;
use crate::transaction::Transaction;

/// A block in compact form.
///
/// Never larger than its block: each txid (32 bytes) stands for a
/// transaction of more than 32 bytes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CompactBlock {
    /// The block's header.
    pub header: BlockHeader,
    /// The block's first transaction, which no mempool holds.
    pub coinbase: Transaction,
    /// The txids of the other transactions, in block order.
    pub txids: Vec<Txid>,
}

/// Transactions of a compact block the receiver does not have.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{count} of the block's transactions are unknown here")]
pub struct MissingTransactions {
    /// How many.
    pub count: usize,
}

impl CompactBlock {
    /// Returns the compact form of `block`, or `None` if it has no transactions
    /// (no valid block is empty).
    pub fn from_block(block: &Block) -> Option<CompactBlock> {
        let (coinbase, rest) = block.txdata.split_first()?;
        Some(CompactBlock {
            header: block.header,
            coinbase: coinbase.clone(),
            txids: rest.iter().map(Transaction::txid).collect(),
        })
    }

    /// Returns the block hash.
    pub fn block_hash(&self) -> BlockHash {
        self.header.block_hash()
    }

    /// Encodes the compact block canonically.
    pub fn encode(&self) -> Vec<u8> {
        encode::serialize(self)
    }

    /// Decodes a compact block from untrusted bytes (at most [`MAX_BLOCK_SIZE`]).
    ///
    /// # Errors
    ///
    /// Fails if the bytes are not exactly one canonical compact block within the limit.
    pub fn decode(bytes: &[u8]) -> Result<CompactBlock, DecodeError> {
        encode::deserialize(bytes, MAX_BLOCK_SIZE)
    }

    /// Rebuilds the block, taking each transaction after the coinbase from
    /// `find` (the receiver's mempool). The result is not checked: a wrong txid
    /// list shows as a merkle root mismatch when the block is validated.
    ///
    /// # Errors
    ///
    /// [`MissingTransactions`] when `find` lacks any of them.
    pub fn reconstruct(
        &self,
        mut find: impl FnMut(&Txid) -> Option<Transaction>,
    ) -> Result<Block, MissingTransactions> {
        let mut txdata = Vec::with_capacity(self.txids.len() + 1);
        txdata.push(self.coinbase.clone());
        let mut missing = 0;
        for txid in &self.txids {
            match find(txid) {
                Some(tx) if missing == 0 => txdata.push(tx),
                Some(_) => {}
                None => missing += 1,
            }
        }
        if missing > 0 {
            return Err(MissingTransactions { count: missing });
        }
        Ok(Block { header: self.header, txdata })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::amount::Amount;
    use crate::hash::PubkeyHash;
    use crate::merkle::block_merkle_root;
    use crate::pow::CompactTarget;
    use crate::transaction::{OutPoint, TxOut};

    fn tx(n: u8) -> Transaction {
        Transaction::spending(
            [OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 }],
            vec![TxOut {
                value: Amount::from_belushis(u64::from(n)),
                pubkey_hash: PubkeyHash::from_byte_array([n; 20]),
            }],
        )
    }

    fn block(txs: usize) -> Block {
        let txdata: Vec<_> = (0..=txs as u8).map(tx).collect();
        Block {
            header: BlockHeader {
                version: 1,
                prev_blockhash: BlockHash::from_byte_array([7; 32]),
                merkle_root: block_merkle_root(&txdata).root,
                time: 1,
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: 0,
            },
            txdata,
        }
    }

    fn mempool(block: &Block) -> HashMap<Txid, Transaction> {
        block.txdata[1..].iter().map(|t| (t.txid(), t.clone())).collect()
    }

    #[test]
    fn a_block_is_rebuilt_from_its_compact_form_and_a_mempool() {
        let block = block(5);
        let compact = CompactBlock::from_block(&block).expect("not empty");
        assert_eq!(compact.block_hash(), block.block_hash());
        assert_eq!(compact.txids.len(), 5);
        let decoded = CompactBlock::decode(&compact.encode()).expect("decodes");
        assert_eq!(decoded, compact);
        let pool = mempool(&block);
        assert_eq!(decoded.reconstruct(|t| pool.get(t).cloned()), Ok(block.clone()));
        assert!(compact.encode().len() < block.encode().len());
    }

    #[test]
    fn the_encoding_is_header_coinbase_count_then_txids() {
        let block = block(3);
        let bytes = CompactBlock::from_block(&block).expect("not empty").encode();
        let coinbase = block.txdata[0].encode();
        let (header, rest) = bytes.split_at(80);
        assert_eq!(header, encode::serialize(&block.header));
        let (cb, rest) = rest.split_at(coinbase.len());
        assert_eq!(cb, coinbase);
        let (count, txids) = rest.split_at(8);
        assert_eq!(count, 3u64.to_le_bytes());
        let expected: Vec<u8> =
            block.txdata[1..].iter().flat_map(|t| t.txid().to_byte_array()).collect();
        assert_eq!(txids, expected);
    }

    #[test]
    fn missing_transactions_are_counted() {
        let block = block(4);
        let compact = CompactBlock::from_block(&block).expect("not empty");
        let mut pool = mempool(&block);
        pool.remove(&block.txdata[2].txid());
        pool.remove(&block.txdata[4].txid());
        assert_eq!(
            compact.reconstruct(|t| pool.get(t).cloned()),
            Err(MissingTransactions { count: 2 })
        );
        // A coinbase-only block needs no mempool at all.
        let lone = self::block(0);
        let compact = CompactBlock::from_block(&lone).expect("not empty");
        assert_eq!(compact.reconstruct(|_| None), Ok(lone));
    }

    #[test]
    fn an_empty_block_has_no_compact_form_and_bad_bytes_do_not_decode() {
        let empty = Block { header: block(0).header, txdata: Vec::new() };
        assert_eq!(CompactBlock::from_block(&empty), None);
        let bytes = CompactBlock::from_block(&block(3)).expect("not empty").encode();
        assert!(CompactBlock::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(CompactBlock::decode(&[bytes.clone(), vec![0]].concat()).is_err());
        assert!(CompactBlock::decode(&vec![0xff; 300]).is_err());
        let mut huge = bytes;
        huge.resize(MAX_BLOCK_SIZE as usize + 1, 0);
        assert!(matches!(CompactBlock::decode(&huge), Err(DecodeError::TooLarge { .. })));
    }
}
