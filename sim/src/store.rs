//! A node's store as the simulator holds it: in memory, outliving the node.
//!
//! Owns nothing of its own: a [`SharedStore`] is a handle on a
//! [`MemoryStore`] that the simulator keeps while a node runs on it, so a
//! crashed node restarts on what it had written (its store kept) and nothing
//! else (its memory lost). Every call goes straight to the memory store.

use std::cell::RefCell;
use std::rc::Rc;

use tinychain_node::fees;
use tinychain_node::store::memory::MemoryStore;
use tinychain_node::store::{
    Batch, BlockUndo, IndexEntry, Store, StoreError, StoredTip, TxLocation,
};
use tinychain_protocol::validation::Coin;
use tinychain_protocol::{Block, BlockHash, OutPoint, PubkeyHash, Transaction, Txid};

/// A handle on a memory store shared by the simulator and the node running on it.
#[derive(Debug, Clone, Default)]
pub struct SharedStore(Rc<RefCell<MemoryStore>>);

impl SharedStore {
    /// Makes an empty store.
    pub fn new() -> SharedStore {
        SharedStore::default()
    }
}

impl Store for SharedStore {
    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        self.0.borrow().index_entry(hash)
    }

    fn children(&self, parent: &BlockHash, height: u32) -> Result<Vec<BlockHash>, StoreError> {
        self.0.borrow().children(parent, height)
    }

    fn active_hash(&self, height: u32) -> Result<Option<BlockHash>, StoreError> {
        self.0.borrow().active_hash(height)
    }

    fn for_each_index_entry(
        &self,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry),
    ) -> Result<(), StoreError> {
        self.0.borrow().for_each_index_entry(f)
    }

    fn tip(&self) -> Result<Option<StoredTip>, StoreError> {
        self.0.borrow().tip()
    }

    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        self.0.borrow().block(hash)
    }

    fn undo(&self, hash: &BlockHash) -> Result<Option<BlockUndo>, StoreError> {
        self.0.borrow().undo(hash)
    }

    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StoreError> {
        self.0.borrow().coin(outpoint)
    }

    fn address_paid(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, OutPoint)>,
        limit: usize,
    ) -> Result<Vec<(u32, OutPoint)>, StoreError> {
        self.0.borrow().address_paid(pubkey_hash, after, limit)
    }

    fn address_history(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, Txid)>,
        limit: usize,
    ) -> Result<Vec<(u32, Txid)>, StoreError> {
        self.0.borrow().address_history(pubkey_hash, after, limit)
    }

    fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>, StoreError> {
        self.0.borrow().tx_location(txid)
    }

    fn mempool(&self) -> Result<Vec<(Transaction, u64)>, StoreError> {
        self.0.borrow().mempool()
    }

    fn fee_estimates(&self) -> Result<Option<fees::Saved>, StoreError> {
        self.0.borrow().fee_estimates()
    }

    fn for_each_coin(&self, f: &mut dyn FnMut(&OutPoint, &Coin)) -> Result<(), StoreError> {
        self.0.borrow().for_each_coin(f)
    }

    fn write(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.0.borrow_mut().write(batch)
    }
}
