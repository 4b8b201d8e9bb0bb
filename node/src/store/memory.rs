//! An in-memory [`Store`] for tests and simulations.
//!
//! Owns plain ordered maps with the same semantics as the redb store; a batch is
//! applied all at once, so it is trivially atomic.

use std::collections::{BTreeMap, BTreeSet};

use tinychain_protocol::validation::Coin;
use tinychain_protocol::{Block, BlockHash, OutPoint, PubkeyHash, Transaction, Txid};

use super::{Batch, BlockUndo, IndexEntry, Op, Store, StoreError, StoredTip, TxLocation};

/// A store held in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    index: BTreeMap<BlockHash, IndexEntry>,
    /// (child height, parent, child) of every index entry.
    children: BTreeSet<(u32, BlockHash, BlockHash)>,
    active: BTreeMap<u32, BlockHash>,
    blocks: BTreeMap<BlockHash, Block>,
    undo: BTreeMap<BlockHash, BlockUndo>,
    coins: BTreeMap<OutPoint, Coin>,
    /// The address index: for each (address, height, txid) the outputs paid to it.
    history: BTreeMap<(PubkeyHash, u32, Txid), Vec<u32>>,
    tx_locations: BTreeMap<Txid, TxLocation>,
    tip: Option<StoredTip>,
    mempool: Vec<(Transaction, u64)>,
    fee_estimates: Option<crate::fees::Saved>,
    /// Batches written so far (tests use it to count writes).
    pub writes: u64,
}

impl MemoryStore {
    /// Makes an empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl Store for MemoryStore {
    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        Ok(self.index.get(hash).copied())
    }

    fn children(&self, parent: &BlockHash, height: u32) -> Result<Vec<BlockHash>, StoreError> {
        let Some(child_height) = height.checked_add(1) else { return Ok(Vec::new()) };
        Ok(self
            .children
            .range((child_height, *parent, BlockHash::ZERO)..)
            .take_while(|(h, p, _)| *h == child_height && p == parent)
            .map(|(_, _, child)| *child)
            .collect())
    }

    fn active_hash(&self, height: u32) -> Result<Option<BlockHash>, StoreError> {
        Ok(self.active.get(&height).copied())
    }

    fn for_each_index_entry(
        &self,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry),
    ) -> Result<(), StoreError> {
        for (hash, entry) in &self.index {
            f(hash, entry);
        }
        Ok(())
    }

    fn tip(&self) -> Result<Option<StoredTip>, StoreError> {
        Ok(self.tip)
    }

    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        Ok(self.blocks.get(hash).cloned())
    }

    fn undo(&self, hash: &BlockHash) -> Result<Option<BlockUndo>, StoreError> {
        Ok(self.undo.get(hash).cloned())
    }

    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StoreError> {
        Ok(self.coins.get(outpoint).copied())
    }

    fn address_paid(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, OutPoint)>,
        limit: usize,
    ) -> Result<Vec<(u32, OutPoint)>, StoreError> {
        let (height, txid) = after.map_or((0, Txid::ZERO), |(h, op)| (h, op.txid));
        Ok(self
            .history
            .range((*pubkey_hash, height, txid)..)
            .take_while(|((pkh, _, _), _)| pkh == pubkey_hash)
            .flat_map(|((_, h, txid), paid)| {
                paid.iter().map(move |&vout| (*h, OutPoint { txid: *txid, vout }))
            })
            .filter(|pos| after.is_none_or(|last| *pos > last))
            .take(limit)
            .collect())
    }

    fn address_history(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, Txid)>,
        limit: usize,
    ) -> Result<Vec<(u32, Txid)>, StoreError> {
        let (height, txid) = after.unwrap_or((0, Txid::ZERO));
        Ok(self
            .history
            .range((*pubkey_hash, height, txid)..)
            .take_while(|((pkh, _, _), _)| pkh == pubkey_hash)
            .map(|((_, h, t), _)| (*h, *t))
            .filter(|pos| after.is_none_or(|last| *pos > last))
            .take(limit)
            .collect())
    }

    fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>, StoreError> {
        Ok(self.tx_locations.get(txid).copied())
    }

    fn mempool(&self) -> Result<Vec<(Transaction, u64)>, StoreError> {
        Ok(self.mempool.clone())
    }

    fn fee_estimates(&self) -> Result<Option<crate::fees::Saved>, StoreError> {
        Ok(self.fee_estimates.clone())
    }

    fn for_each_coin(&self, f: &mut dyn FnMut(&OutPoint, &Coin)) -> Result<(), StoreError> {
        for (op, coin) in &self.coins {
            f(op, coin);
        }
        Ok(())
    }

    fn write(&mut self, batch: Batch) -> Result<(), StoreError> {
        for op in batch.ops {
            match op {
                Op::PutBlock(block) => {
                    self.blocks.insert(block.block_hash(), block);
                }
                Op::PutIndex(hash, entry) => {
                    self.children.insert((entry.height, entry.header.prev_blockhash, hash));
                    self.index.insert(hash, entry);
                }
                Op::PutActive(height, hash) => {
                    self.active.insert(height, hash);
                }
                Op::DeleteActive(height) => {
                    self.active.remove(&height);
                }
                Op::PutUndo(hash, undo) => {
                    self.undo.insert(hash, undo);
                }
                Op::DeleteUndo(hash) => {
                    self.undo.remove(&hash);
                }
                Op::AddCoins(coins) => self.coins.extend(coins),
                Op::SpendCoins(outpoints) => {
                    for op in outpoints {
                        self.coins.remove(&op);
                    }
                }
                Op::AddHistory(pkh, height, txid, paid) => {
                    self.history.insert((pkh, height, txid), paid);
                }
                Op::DeleteHistory(pkh, height, txid) => {
                    self.history.remove(&(pkh, height, txid));
                }
                Op::PutTxLocation(txid, loc) => {
                    self.tx_locations.insert(txid, loc);
                }
                Op::DeleteTxLocation(txid) => {
                    self.tx_locations.remove(&txid);
                }
                Op::SetTip(tip) => self.tip = Some(tip),
                Op::SetMempool(txs) => self.mempool = txs,
                Op::SetFeeEstimates(saved) => self.fee_estimates = Some(saved),
            }
        }
        self.writes += 1;
        Ok(())
    }
}
