//! The UTXO cache in front of a store (Bitcoin Core's `CCoinsViewCache`).
//!
//! Owns, in memory, the chain state changed since the last flush: the coins
//! created and spent, the undo data, the active chain's heights, the
//! transaction locations and the tip. Reads look here first, then in the store
//! below. A coin created and spent between two flushes never reaches the disk
//! (it is "fresh": the store has never seen it).
//!
//! Block data, the block index and the address index are not held: they are
//! written through with each batch, so blocks stored since the last flush can
//! be connected again from the disk after a crash, and address range scans read
//! one table. Those writes may run ahead of the stored tip: the stored tip,
//! the coins, the undo data and the active chain always agree, because they
//! change only in a flush, which is one atomic write of the store below.
//! Opening the chain reconnects the stored blocks above the tip, which writes
//! the same address rows again.
//!
//! A flush happens when a batch asks for it ([`Batch::flush_cache`]: every
//! batch near the tip, and the node's save at shutdown), when the held state
//! passes the byte budget, or when [`FLUSH_INTERVAL`] passed since the last one.
//! The only clock read is that interval's `Instant`; no threads, no other I/O
//! than the store below.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tinychain_protocol::validation::Coin;
use tinychain_protocol::{Block, BlockHash, OutPoint, PubkeyHash, Transaction, Txid};

use super::{Batch, BlockUndo, IndexEntry, Op, Store, StoreError, StoredTip, TxLocation};

/// Longest time between two flushes while syncing (Bitcoin Core writes its
/// coins at least hourly; a shorter bound caps what a crash makes a node redo).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(300);

/// The default budget, in MiB (`store.coins_cache_mb`).
pub const DEFAULT_BUDGET_MB: u32 = 64;

/// One cached coin.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The coin, or `None` if it is spent (and must be deleted from the store).
    coin: Option<Coin>,
    /// The store below does not have this coin: spending it just forgets it.
    fresh: bool,
}

/// A store with the chain state since the last flush held in memory.
#[derive(Debug)]
pub struct CoinsCache<S: Store> {
    inner: S,
    budget: usize,
    interval: Duration,
    last_flush: Instant,
    coins: HashMap<OutPoint, Entry>,
    undo: HashMap<BlockHash, Option<BlockUndo>>,
    /// Bytes held by the undo vectors (the map counts only their headers).
    undo_bytes: usize,
    active: HashMap<u32, Option<BlockHash>>,
    tx_locations: HashMap<Txid, Option<TxLocation>>,
    tip: Option<StoredTip>,
    flushes: u64,
}

/// Bytes a hash map's table takes at its capacity (hashbrown: a control byte per slot).
fn table_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    map.capacity() * (std::mem::size_of::<(K, V)>() + 1)
}

fn undo_bytes(undo: &Option<BlockUndo>) -> usize {
    undo.as_ref().map_or(0, |u| u.spent.capacity() * std::mem::size_of::<(OutPoint, Coin)>())
}

impl<S: Store> CoinsCache<S> {
    /// Puts a cache of at most `budget` bytes in front of `inner`; with a
    /// budget of 0 every batch is written through unchanged (no cache).
    pub fn new(inner: S, budget: usize) -> CoinsCache<S> {
        CoinsCache {
            inner,
            budget,
            interval: FLUSH_INTERVAL,
            last_flush: Instant::now(),
            coins: HashMap::new(),
            undo: HashMap::new(),
            undo_bytes: 0,
            active: HashMap::new(),
            tx_locations: HashMap::new(),
            tip: None,
            flushes: 0,
        }
    }

    /// Sets the longest time between flushes (tests use a short one).
    pub fn with_interval(mut self, interval: Duration) -> CoinsCache<S> {
        self.interval = interval;
        self
    }

    /// Returns the store below (for reads that must skip the cache, in tests).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Returns the store below, after writing everything held.
    ///
    /// # Errors
    ///
    /// The store below fails.
    pub fn into_inner(mut self) -> Result<S, StoreError> {
        self.flush()?;
        Ok(self.inner)
    }

    /// Returns the bytes the held state takes, as counted against the budget:
    /// the hash tables at their capacity plus the undo vectors.
    pub fn bytes(&self) -> usize {
        table_bytes(&self.coins)
            + table_bytes(&self.undo)
            + self.undo_bytes
            + table_bytes(&self.active)
            + table_bytes(&self.tx_locations)
    }

    /// Returns how many coin entries (unspent or spent) are held.
    pub fn len(&self) -> usize {
        self.coins.len()
    }

    /// Tells whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.coins.is_empty() && self.undo.is_empty() && self.tip.is_none()
    }

    /// Returns how many flushes happened since the cache was made.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Writes everything held to the store below in one durable batch.
    ///
    /// # Errors
    ///
    /// The store below fails; the node must stop then (the held state is gone).
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_with(Batch::default())
    }

    fn add_coin(&mut self, outpoint: OutPoint, coin: Coin) {
        // An outpoint absent here is absent below too: no transaction repeats
        // an earlier txid (every coinbase commits to its height, BIP 34), so a
        // new output never lands on an unspent one, and a coin restored by a
        // disconnect was either spent here (an entry) or flushed as spent.
        let entry = self.coins.entry(outpoint).or_insert(Entry { coin: None, fresh: true });
        entry.coin = Some(coin);
    }

    fn spend_coin(&mut self, outpoint: OutPoint) {
        match self.coins.get_mut(&outpoint) {
            Some(entry) if entry.fresh => {
                self.coins.remove(&outpoint);
            }
            Some(entry) => entry.coin = None,
            None => {
                self.coins.insert(outpoint, Entry { coin: None, fresh: false });
            }
        }
    }

    fn put_undo(&mut self, hash: BlockHash, undo: Option<BlockUndo>) {
        self.undo_bytes += undo_bytes(&undo);
        if let Some(old) = self.undo.insert(hash, undo) {
            self.undo_bytes -= undo_bytes(&old);
        }
    }

    /// Keeps a change of the chain state, or hands it back if it is not held here.
    fn hold(&mut self, op: Op) -> Option<Op> {
        match op {
            Op::AddCoins(added) => added.into_iter().for_each(|(op, c)| self.add_coin(op, c)),
            Op::SpendCoins(spent) => spent.into_iter().for_each(|op| self.spend_coin(op)),
            Op::PutUndo(hash, undo) => self.put_undo(hash, Some(undo)),
            Op::DeleteUndo(hash) => self.put_undo(hash, None),
            Op::PutActive(height, hash) => drop(self.active.insert(height, Some(hash))),
            Op::DeleteActive(height) => drop(self.active.insert(height, None)),
            Op::PutTxLocation(txid, at) => drop(self.tx_locations.insert(txid, Some(at))),
            Op::DeleteTxLocation(txid) => drop(self.tx_locations.insert(txid, None)),
            Op::SetTip(tip) => self.tip = Some(tip),
            other => return Some(other),
        }
        None
    }

    /// Writes `through` and everything held in one durable batch.
    fn flush_with(&mut self, mut through: Batch) -> Result<(), StoreError> {
        let coins = std::mem::take(&mut self.coins);
        tracing::debug!(coins = coins.len(), bytes = self.bytes(), "flushing the coins cache");
        let mut added = Vec::new();
        let mut spent = Vec::new();
        for (outpoint, entry) in coins {
            match entry.coin {
                Some(coin) => added.push((outpoint, coin)),
                None => spent.push(outpoint),
            }
        }
        through.push(Op::AddCoins(added));
        through.push(Op::SpendCoins(spent));
        for (hash, undo) in std::mem::take(&mut self.undo) {
            through.push(undo.map_or(Op::DeleteUndo(hash), |u| Op::PutUndo(hash, u)));
        }
        self.undo_bytes = 0;
        for (height, hash) in std::mem::take(&mut self.active) {
            through.push(hash.map_or(Op::DeleteActive(height), |h| Op::PutActive(height, h)));
        }
        for (txid, at) in std::mem::take(&mut self.tx_locations) {
            through.push(at.map_or(Op::DeleteTxLocation(txid), |a| Op::PutTxLocation(txid, a)));
        }
        if let Some(tip) = self.tip.take() {
            through.push(Op::SetTip(tip));
        }
        through.durable = true;
        self.inner.write(through)?;
        self.flushes += 1;
        self.last_flush = Instant::now();
        tracing::debug!(flushes = self.flushes, "coins cache flushed");
        Ok(())
    }
}

impl<S: Store> Store for CoinsCache<S> {
    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        self.inner.index_entry(hash)
    }

    fn children(&self, parent: &BlockHash, height: u32) -> Result<Vec<BlockHash>, StoreError> {
        self.inner.children(parent, height)
    }

    fn active_hash(&self, height: u32) -> Result<Option<BlockHash>, StoreError> {
        match self.active.get(&height) {
            Some(held) => Ok(*held),
            None => self.inner.active_hash(height),
        }
    }

    fn for_each_index_entry(
        &self,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry),
    ) -> Result<(), StoreError> {
        self.inner.for_each_index_entry(f)
    }

    fn tip(&self) -> Result<Option<StoredTip>, StoreError> {
        match self.tip {
            Some(tip) => Ok(Some(tip)),
            None => self.inner.tip(),
        }
    }

    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        self.inner.block(hash)
    }

    fn undo(&self, hash: &BlockHash) -> Result<Option<BlockUndo>, StoreError> {
        match self.undo.get(hash) {
            Some(held) => Ok(held.clone()),
            None => self.inner.undo(hash),
        }
    }

    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StoreError> {
        match self.coins.get(outpoint) {
            Some(entry) => Ok(entry.coin),
            None => self.inner.coin(outpoint),
        }
    }

    fn coins(&self, outpoints: &[OutPoint]) -> Result<Vec<(OutPoint, Coin)>, StoreError> {
        let mut found = Vec::with_capacity(outpoints.len());
        let mut below = Vec::new();
        for op in outpoints {
            match self.coins.get(op) {
                Some(entry) => found.extend(entry.coin.map(|c| (*op, c))),
                None => below.push(*op),
            }
        }
        if !below.is_empty() {
            found.extend(self.inner.coins(&below)?);
        }
        Ok(found)
    }

    fn address_paid(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, OutPoint)>,
        limit: usize,
    ) -> Result<Vec<(u32, OutPoint)>, StoreError> {
        self.inner.address_paid(pubkey_hash, after, limit)
    }

    fn address_history(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, Txid)>,
        limit: usize,
    ) -> Result<Vec<(u32, Txid)>, StoreError> {
        self.inner.address_history(pubkey_hash, after, limit)
    }

    fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>, StoreError> {
        match self.tx_locations.get(txid) {
            Some(held) => Ok(*held),
            None => self.inner.tx_location(txid),
        }
    }

    fn mempool(&self) -> Result<Vec<(Transaction, u64)>, StoreError> {
        self.inner.mempool()
    }

    fn fee_estimates(&self) -> Result<Option<crate::fees::Saved>, StoreError> {
        self.inner.fee_estimates()
    }

    fn for_each_coin(&self, f: &mut dyn FnMut(&OutPoint, &Coin)) -> Result<(), StoreError> {
        self.inner.for_each_coin(&mut |op, coin| {
            if !self.coins.contains_key(op) {
                f(op, coin);
            }
        })?;
        for (op, entry) in &self.coins {
            if let Some(coin) = &entry.coin {
                f(op, coin);
            }
        }
        Ok(())
    }

    fn write(&mut self, batch: Batch) -> Result<(), StoreError> {
        if self.budget == 0 {
            // No cache: every batch goes down as it is (nothing is ever held).
            return self.inner.write(batch);
        }
        let Batch { ops, durable, flush_cache } = batch;
        let mut through = Batch { ops: Vec::new(), durable, flush_cache: false };
        for op in ops {
            through.ops.extend(self.hold(op));
        }
        let due = self.bytes() > self.budget || self.last_flush.elapsed() >= self.interval;
        if flush_cache || due {
            self.flush_with(through)
        } else if through.is_empty() {
            Ok(())
        } else {
            self.inner.write(through)
        }
    }
}

#[cfg(test)]
mod tests {
    use tinychain_protocol::{Amount, TxOut};

    use super::*;
    use crate::store::memory::MemoryStore;

    fn coin(n: u8) -> Coin {
        let output = TxOut {
            value: Amount::from_belushis(u64::from(n)),
            pubkey_hash: PubkeyHash::from_byte_array([n; 20]),
        };
        Coin { output, height: u32::from(n), is_coinbase: false }
    }

    fn outpoint(n: u8) -> OutPoint {
        OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 }
    }

    fn lazy(ops: Vec<Op>) -> Batch {
        Batch { ops, ..Batch::lazy() }
    }

    fn cache() -> CoinsCache<MemoryStore> {
        CoinsCache::new(MemoryStore::new(), usize::MAX).with_interval(Duration::MAX)
    }

    #[test]
    fn coins_created_and_spent_between_flushes_never_reach_the_store() {
        let mut cache = cache();
        cache.write(lazy(vec![Op::AddCoins(vec![(outpoint(1), coin(1))])])).expect("writes");
        assert_eq!(cache.coin(&outpoint(1)).expect("reads"), Some(coin(1)));
        assert_eq!(cache.inner().coin(&outpoint(1)).expect("reads"), None);
        cache.write(lazy(vec![Op::SpendCoins(vec![outpoint(1)])])).expect("writes");
        assert_eq!(cache.len(), 0, "a fresh coin spent is forgotten");
        cache.write(lazy(vec![Op::AddCoins(vec![(outpoint(2), coin(2))])])).expect("writes");
        cache.flush().expect("flushes");
        let mut below = Vec::new();
        cache.inner().for_each_coin(&mut |op, c| below.push((*op, *c))).expect("reads");
        assert_eq!(below, vec![(outpoint(2), coin(2))]);
        assert_eq!(cache.inner().writes, 1, "one write: the flush");
    }

    #[test]
    fn a_spent_stored_coin_is_deleted_at_the_flush_and_hidden_before() {
        let mut cache = cache();
        cache
            .write(Batch {
                ops: vec![Op::AddCoins(vec![(outpoint(3), coin(3))])],
                ..Batch::default()
            })
            .expect("writes");
        assert_eq!(cache.inner().coin(&outpoint(3)).expect("reads"), Some(coin(3)));
        cache.write(lazy(vec![Op::SpendCoins(vec![outpoint(3)])])).expect("writes");
        assert_eq!(cache.coin(&outpoint(3)).expect("reads"), None);
        assert!(cache.coins(&[outpoint(3)]).expect("reads").is_empty());
        let mut seen = 0;
        cache.for_each_coin(&mut |_, _| seen += 1).expect("reads");
        assert_eq!(seen, 0);
        // Restored by a disconnect before the flush: the stored row stays.
        cache.write(lazy(vec![Op::AddCoins(vec![(outpoint(3), coin(4))])])).expect("writes");
        cache.flush().expect("flushes");
        assert_eq!(cache.inner().coin(&outpoint(3)).expect("reads"), Some(coin(4)));
        cache.write(lazy(vec![Op::SpendCoins(vec![outpoint(3)])])).expect("writes");
        cache.flush().expect("flushes");
        assert_eq!(cache.inner().coin(&outpoint(3)).expect("reads"), None);
    }

    #[test]
    fn the_tip_undo_and_active_chain_reach_the_store_only_together() {
        let mut cache = cache();
        let hash = BlockHash::from_byte_array([5; 32]);
        let tip = StoredTip { hash, height: 1, utxo_digest: Default::default() };
        let undo = BlockUndo { spent: vec![(outpoint(1), coin(1))] };
        let ops = vec![
            Op::PutUndo(hash, undo.clone()),
            Op::PutActive(1, hash),
            Op::SetTip(tip),
            Op::PutTxLocation(Txid::from_byte_array([6; 32]), TxLocation { block: hash, index: 0 }),
        ];
        cache.write(lazy(ops)).expect("writes");
        assert_eq!(cache.tip().expect("reads"), Some(tip));
        assert_eq!(cache.undo(&hash).expect("reads"), Some(undo.clone()));
        assert_eq!(cache.active_hash(1).expect("reads"), Some(hash));
        assert_eq!(cache.inner().tip().expect("reads"), None);
        assert_eq!(cache.inner().writes, 0);
        cache.write(lazy(vec![Op::DeleteActive(1)])).expect("writes");
        assert_eq!(cache.active_hash(1).expect("reads"), None);
        cache.write(lazy(vec![Op::PutActive(1, hash)])).expect("writes");
        cache.write(Batch::default()).expect("a flushing batch");
        assert_eq!(cache.inner().tip().expect("reads"), Some(tip));
        assert_eq!(cache.inner().undo(&hash).expect("reads"), Some(undo));
        assert_eq!(cache.inner().active_hash(1).expect("reads"), Some(hash));
        assert!(cache.is_empty());
    }

    #[test]
    fn the_byte_budget_forces_a_flush_and_blocks_are_written_through() {
        let mut cache = CoinsCache::new(MemoryStore::new(), 4096).with_interval(Duration::MAX);
        let mut n = 0u8;
        while cache.flushes() == 0 {
            n += 1;
            cache.write(lazy(vec![Op::AddCoins(vec![(outpoint(n), coin(n))])])).expect("writes");
            assert!(n < 200, "never flushed");
        }
        assert!(cache.is_empty());
        assert_eq!(cache.inner().coin(&outpoint(1)).expect("reads"), Some(coin(1)));
        let saved = vec![(Transaction::spending([outpoint(9)], vec![]), 7)];
        cache.write(lazy(vec![Op::SetMempool(saved.clone())])).expect("writes");
        assert_eq!(cache.inner().mempool().expect("reads"), saved);
    }

    #[test]
    fn a_zero_budget_writes_every_batch_through_as_it_is() {
        let mut cache = CoinsCache::new(MemoryStore::new(), 0);
        cache.write(lazy(vec![Op::AddCoins(vec![(outpoint(1), coin(1))])])).expect("writes");
        assert_eq!(cache.inner().coin(&outpoint(1)).expect("reads"), Some(coin(1)));
        assert!(cache.is_empty());
    }

    #[test]
    fn the_interval_forces_a_flush() {
        let mut cache =
            CoinsCache::new(MemoryStore::new(), usize::MAX).with_interval(Duration::ZERO);
        cache.write(lazy(vec![Op::AddCoins(vec![(outpoint(1), coin(1))])])).expect("writes");
        assert_eq!(cache.flushes(), 1);
    }
}
