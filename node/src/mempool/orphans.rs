//! Orphan transactions: valid-looking transactions whose inputs are not known yet.
//!
//! Owns the orphan transaction pool: a [`Pool`] bounded by count, size per
//! transaction and time to live, indexed by the txids of the missing parents, so
//! that when a parent arrives (in the mempool or a block) its orphans can be
//! retried. Eviction is oldest first, so the pool behaves the same on every run.

use std::collections::HashSet;

use tinychain_protocol::{Block, OutPoint, Transaction, Txid};

use crate::orphans::{Limits, Orphan, Pool};

/// Limits of the orphan pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Orphans kept at most.
    pub max_count: usize,
    /// Largest orphan accepted, in bytes (bigger ones are simply dropped).
    pub max_tx_size: u64,
    /// Seconds an orphan is kept.
    pub ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config { max_count: 100, max_tx_size: 100_000, ttl_secs: 20 * 60 }
    }
}

impl Orphan for Transaction {
    type Id = Txid;
    type Parent = Txid;
    fn id(&self) -> Txid {
        self.txid()
    }
    fn size(&self) -> u64 {
        Transaction::size(self)
    }
}

/// The orphan transaction pool.
#[derive(Debug)]
pub struct OrphanPool {
    pool: Pool<Transaction>,
}

impl Default for OrphanPool {
    fn default() -> OrphanPool {
        OrphanPool::new(Config::default())
    }
}

impl OrphanPool {
    /// Makes an empty pool.
    pub fn new(config: Config) -> OrphanPool {
        let limits = Limits {
            max_count: config.max_count,
            max_item_bytes: config.max_tx_size,
            // The count and the size of each bound the total.
            max_total_bytes: u64::MAX,
            ttl_secs: config.ttl_secs,
        };
        OrphanPool { pool: Pool::new(limits) }
    }

    /// Returns the number of orphans held.
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Tells whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.pool.is_empty()
    }

    /// Tells whether `txid` is held.
    pub fn contains(&self, txid: &Txid) -> bool {
        self.pool.contains(txid)
    }

    /// Adds an orphan waiting for `parents`; returns whether it was kept.
    pub fn insert(&mut self, tx: Transaction, parents: Vec<Txid>, now: u64) -> bool {
        self.pool.insert(tx, parents, now)
    }

    /// Removes an orphan.
    pub fn remove(&mut self, txid: &Txid) -> Option<Transaction> {
        self.pool.remove(txid)
    }

    /// Takes out the orphans waiting for `parent`, oldest first, to be retried.
    pub fn take_children(&mut self, parent: &Txid) -> Vec<Transaction> {
        self.pool.take_children(parent)
    }

    /// Drops orphans that a block confirms or conflicts with (spends an output they spend).
    pub fn remove_for_block(&mut self, block: &Block) {
        let confirmed: HashSet<Txid> = block.txdata.iter().map(Transaction::txid).collect();
        let spent: HashSet<OutPoint> =
            block.txdata.iter().flat_map(|tx| tx.inputs.iter().map(|i| i.prev_out)).collect();
        self.pool.remove_where(|tx| {
            confirmed.contains(&tx.txid()) || tx.inputs.iter().any(|i| spent.contains(&i.prev_out))
        });
    }

    /// Drops orphans whose time is up.
    pub fn expire(&mut self, now: u64) {
        self.pool.expire(now);
    }
}

#[cfg(test)]
mod tests {
    use tinychain_protocol::pow::CompactTarget;
    use tinychain_protocol::transaction::{COINBASE_MESSAGE_LEN, SEQUENCE_FINAL};
    use tinychain_protocol::{Amount, BlockHash, BlockHeader, Hash256, PubkeyHash, TxIn, TxOut};

    use super::*;

    fn txid(n: u8) -> Txid {
        Txid::from_byte_array([n; 32])
    }

    /// A transaction spending `inputs` into `outputs` outputs. Unsigned: the pool
    /// does not validate.
    fn tx(inputs: &[OutPoint], outputs: usize) -> Transaction {
        Transaction {
            version: 1,
            inputs: inputs
                .iter()
                .map(|prev_out| TxIn {
                    prev_out: *prev_out,
                    signature: [0; 64],
                    pubkey: [0; 33],
                    sequence: SEQUENCE_FINAL,
                })
                .collect(),
            outputs: vec![
                TxOut { value: Amount::ONE_COIN, pubkey_hash: PubkeyHash::default() };
                outputs
            ],
            locktime: 0,
        }
    }

    /// An orphan spending output 0 of the unknown transaction `txid(parent)`.
    fn orphan_of(parent: u8) -> Transaction {
        tx(&[OutPoint { txid: txid(parent), vout: 0 }], 1)
    }

    fn block(txs: Vec<Transaction>) -> Block {
        let coinbase = Transaction::coinbase(
            1,
            0,
            &[0; COINBASE_MESSAGE_LEN],
            vec![TxOut { value: Amount::ONE_COIN, pubkey_hash: PubkeyHash::default() }],
        );
        let header = BlockHeader {
            version: 1,
            prev_blockhash: BlockHash::ZERO,
            merkle_root: Hash256::ZERO,
            time: 0,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        };
        Block { header, txdata: std::iter::once(coinbase).chain(txs).collect() }
    }

    fn pool(max_count: usize, max_tx_size: u64, ttl_secs: u64) -> OrphanPool {
        OrphanPool::new(Config { max_count, max_tx_size, ttl_secs })
    }

    /// Checks that the indexes hold exactly the orphans.
    fn assert_consistent(pool: &OrphanPool) {
        pool.pool.assert_consistent();
    }

    #[test]
    fn the_count_limit_evicts_the_oldest() {
        let mut pool = pool(2, 100_000, 600);
        let (a, b, c) = (orphan_of(1), orphan_of(2), orphan_of(3));
        assert!(pool.insert(a.clone(), vec![txid(1)], 0));
        assert!(pool.insert(b.clone(), vec![txid(2)], 0));
        assert!(pool.insert(c.clone(), vec![txid(3)], 0));
        assert_eq!(pool.len(), 2);
        assert!(!pool.contains(&a.txid()), "the oldest went");
        assert!(pool.contains(&b.txid()) && pool.contains(&c.txid()));
        assert!(pool.take_children(&txid(1)).is_empty(), "its parent index went with it");
        assert_consistent(&pool);
    }

    #[test]
    fn an_orphan_larger_than_the_limit_is_not_kept() {
        let small = orphan_of(1);
        let large = tx(&[OutPoint { txid: txid(2), vout: 0 }], 2);
        let mut pool = pool(10, small.size(), 600);
        assert!(large.size() > small.size(), "precondition");
        assert!(!pool.insert(large.clone(), vec![txid(2)], 0));
        assert!(pool.insert(small.clone(), vec![txid(1)], 0), "exactly the limit is kept");
        assert!(!pool.contains(&large.txid()));
        assert!(pool.take_children(&txid(2)).is_empty(), "not indexed either");
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn a_full_pool_does_not_evict_for_an_orphan_it_refuses() {
        let mut pool = pool(1, 200, 600);
        let kept = orphan_of(1);
        assert!(pool.insert(kept.clone(), vec![txid(1)], 0));
        assert!(!pool.insert(kept.clone(), vec![txid(1)], 0), "duplicate");
        let large = tx(&[OutPoint { txid: txid(2), vout: 0 }], 3);
        assert!(!pool.insert(large, vec![txid(2)], 0), "too large");
        assert!(pool.contains(&kept.txid()), "neither refusal evicted the only orphan");
        assert_consistent(&pool);
    }

    #[test]
    fn orphans_expire_after_their_time_to_live() {
        let mut pool = pool(10, 100_000, 20);
        let (a, b) = (orphan_of(1), orphan_of(2));
        assert!(pool.insert(a.clone(), vec![txid(1)], 1_000));
        assert!(pool.insert(b.clone(), vec![txid(2)], 1_010));
        pool.expire(1_019);
        assert_eq!(pool.len(), 2);
        pool.expire(1_020);
        assert!(!pool.contains(&a.txid()) && pool.contains(&b.txid()));
        pool.expire(1_030);
        assert!(pool.is_empty());
        assert_consistent(&pool);
    }

    #[test]
    fn take_children_returns_the_waiting_orphans_oldest_first_and_unindexes_them() {
        let mut pool = pool(10, 100_000, 600);
        let first = orphan_of(1);
        // Waits for two parents: taken out whole when either arrives.
        let both =
            tx(&[OutPoint { txid: txid(1), vout: 1 }, OutPoint { txid: txid(2), vout: 0 }], 1);
        let third = tx(&[OutPoint { txid: txid(1), vout: 2 }], 1);
        let unrelated = orphan_of(3);
        assert!(pool.insert(first.clone(), vec![txid(1)], 0));
        assert!(pool.insert(both.clone(), vec![txid(1), txid(2)], 0));
        assert!(pool.insert(third.clone(), vec![txid(1)], 0));
        assert!(pool.insert(unrelated.clone(), vec![txid(3)], 0));
        assert_eq!(pool.take_children(&txid(1)), vec![first, both, third]);
        assert_eq!(pool.len(), 1);
        assert!(pool.take_children(&txid(2)).is_empty(), "the two-parent orphan left both indexes");
        assert!(pool.take_children(&txid(1)).is_empty());
        assert!(pool.contains(&unrelated.txid()));
        assert_consistent(&pool);
    }

    #[test]
    fn a_block_drops_the_orphans_it_confirms_or_conflicts_with() {
        let mut pool = pool(10, 100_000, 600);
        let confirmed = orphan_of(1);
        let conflicting = orphan_of(2);
        // Spends a different output of the same parent: no conflict.
        let sibling = tx(&[OutPoint { txid: txid(2), vout: 1 }], 1);
        let unrelated = orphan_of(3);
        for orphan in [&confirmed, &conflicting, &sibling, &unrelated] {
            let parents = orphan.inputs.iter().map(|i| i.prev_out.txid).collect();
            assert!(pool.insert(orphan.clone(), parents, 0));
        }
        // The block confirms `confirmed` and double-spends `conflicting`'s input.
        let double_spend = tx(&[OutPoint { txid: txid(2), vout: 0 }], 2);
        pool.remove_for_block(&block(vec![confirmed.clone(), double_spend]));
        assert!(!pool.contains(&confirmed.txid()));
        assert!(!pool.contains(&conflicting.txid()));
        assert!(pool.contains(&sibling.txid()) && pool.contains(&unrelated.txid()));
        assert_eq!(pool.len(), 2);
        assert_consistent(&pool);
    }

    #[test]
    fn a_pool_with_no_room_keeps_nothing() {
        let mut pool = pool(0, 100_000, 600);
        assert!(!pool.insert(orphan_of(1), vec![txid(1)], 0));
        assert!(pool.is_empty());
    }
}
