//! Orphan transactions: valid-looking transactions whose inputs are not known yet.
//!
//! Owns a bounded pool (count, size per transaction, time to live) indexed by the
//! txids of the missing parents, so that when a parent arrives (in the mempool or
//! a block) its orphans can be retried. Eviction is oldest first, so the pool
//! behaves the same on every run.

use std::collections::{BTreeMap, HashMap, HashSet};

use tinychain_protocol::{Block, OutPoint, Transaction, Txid};

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

#[derive(Debug)]
struct Orphan {
    tx: Transaction,
    parents: Vec<Txid>,
    expires: u64,
    sequence: u64,
}

/// The orphan transaction pool.
#[derive(Debug, Default)]
pub struct OrphanPool {
    config: Config,
    orphans: HashMap<Txid, Orphan>,
    by_parent: HashMap<Txid, HashSet<Txid>>,
    by_age: BTreeMap<u64, Txid>,
    next_sequence: u64,
}

impl OrphanPool {
    /// Makes an empty pool.
    pub fn new(config: Config) -> OrphanPool {
        OrphanPool { config, ..OrphanPool::default() }
    }

    /// Returns the number of orphans held.
    pub fn len(&self) -> usize {
        self.orphans.len()
    }

    /// Tells whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.orphans.is_empty()
    }

    /// Tells whether `txid` is held.
    pub fn contains(&self, txid: &Txid) -> bool {
        self.orphans.contains_key(txid)
    }

    /// Adds an orphan waiting for `parents`; returns whether it was kept.
    pub fn insert(&mut self, tx: Transaction, parents: Vec<Txid>, now: u64) -> bool {
        let txid = tx.txid();
        if self.orphans.contains_key(&txid) || tx.size() > self.config.max_tx_size {
            return false;
        }
        if self.config.max_count == 0 {
            return false;
        }
        while self.orphans.len() >= self.config.max_count {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            self.remove(&oldest);
        }
        self.next_sequence += 1;
        for parent in &parents {
            self.by_parent.entry(*parent).or_default().insert(txid);
        }
        self.by_age.insert(self.next_sequence, txid);
        let expires = now.saturating_add(self.config.ttl_secs);
        self.orphans.insert(txid, Orphan { tx, parents, expires, sequence: self.next_sequence });
        true
    }

    /// Removes an orphan.
    pub fn remove(&mut self, txid: &Txid) -> Option<Transaction> {
        let orphan = self.orphans.remove(txid)?;
        self.by_age.remove(&orphan.sequence);
        for parent in &orphan.parents {
            if let Some(set) = self.by_parent.get_mut(parent) {
                set.remove(txid);
                if set.is_empty() {
                    self.by_parent.remove(parent);
                }
            }
        }
        Some(orphan.tx)
    }

    /// Takes out the orphans waiting for `parent`, oldest first, to be retried.
    pub fn take_children(&mut self, parent: &Txid) -> Vec<Transaction> {
        let Some(children) = self.by_parent.remove(parent) else { return Vec::new() };
        let mut children: Vec<(u64, Txid)> = children
            .into_iter()
            .filter_map(|t| self.orphans.get(&t).map(|o| (o.sequence, t)))
            .collect();
        children.sort();
        children.into_iter().filter_map(|(_, t)| self.remove(&t)).collect()
    }

    /// Drops orphans that a block confirms or conflicts with (spends an output they spend).
    pub fn remove_for_block(&mut self, block: &Block) {
        let confirmed: HashSet<Txid> = block.txdata.iter().map(Transaction::txid).collect();
        let spent: HashSet<OutPoint> =
            block.txdata.iter().flat_map(|tx| tx.inputs.iter().map(|i| i.prev_out)).collect();
        let doomed: Vec<Txid> = self
            .orphans
            .iter()
            .filter(|(txid, o)| {
                confirmed.contains(txid) || o.tx.inputs.iter().any(|i| spent.contains(&i.prev_out))
            })
            .map(|(t, _)| *t)
            .collect();
        for txid in doomed {
            self.remove(&txid);
        }
    }

    /// Drops orphans whose time is up.
    pub fn expire(&mut self, now: u64) {
        let expired: Vec<Txid> =
            self.orphans.iter().filter(|(_, o)| o.expires <= now).map(|(t, _)| *t).collect();
        for txid in expired {
            self.remove(&txid);
        }
    }
}
