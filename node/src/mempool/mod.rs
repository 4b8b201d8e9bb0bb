//! The mempool: unconfirmed transactions waiting for a block. Policy, not consensus.
//!
//! Owns the pool of transactions valid on top of the active tip (chains of
//! unconfirmed transactions included, up to an ancestor limit), the index of
//! which outpoint each one spends (a conflicting spend is refused unless it is a
//! BIP125 replacement, see [`rbf`]), the byte cap with eviction of the lowest fee
//! rate together with its descendants, expiry, and the orphan pool. What it accepts is checked with
//! the same consensus code as blocks, against the chain's UTXO set plus the
//! mempool's own outputs.
//!
//! Pure: the caller passes the chain's coins, the tip height, median time past and
//! the time.

pub mod orphans;
pub mod rbf;

use std::collections::{BTreeSet, HashMap, HashSet};

use tinychain_protocol::params::Params;
use tinychain_protocol::validation::{self, Coin, Kind, TxError, UtxoView};
use tinychain_protocol::{Amount, Block, OutPoint, Transaction, Txid};

use orphans::OrphanPool;

/// The default [`Config::max_tx_size`]: Bitcoin Core's standard size.
pub const MAX_STANDARD_TX_SIZE: u64 = 100_000;

/// Mempool limits and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Total bytes of transactions kept; the lowest fee rates are evicted above it.
    pub max_bytes: u64,
    /// Minimum fee rate to relay and keep a transaction, belushis per byte.
    pub min_relay_fee_rate: u64,
    /// What a replacement must pay for its own bytes above the fees of what it
    /// replaces, belushis per byte (Core's `-incrementalrelayfee`; BIP125 rule 4).
    pub incremental_relay_fee_rate: u64,
    /// Most unconfirmed ancestors (including itself) a transaction may have.
    pub max_ancestors: usize,
    /// Seconds after which an unconfirmed transaction is dropped.
    pub expiry_secs: u64,
    /// The largest transaction relayed and kept, in bytes (Bitcoin Core's
    /// `MAX_STANDARD_TX_WEIGHT`, 400,000 weight units = 100 kB without witness
    /// data): policy, not consensus. Larger ones are valid in a block, but one
    /// could not share a block with much else, and a 1 MB one would never fit
    /// beside the coinbase.
    pub max_tx_size: u64,
    /// The orphan pool's limits.
    pub orphans: orphans::Config,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_bytes: 64 * 1024 * 1024,
            min_relay_fee_rate: 1,
            incremental_relay_fee_rate: 1,
            max_ancestors: 25,
            expiry_secs: 14 * 24 * 3600,
            max_tx_size: MAX_STANDARD_TX_SIZE,
            orphans: orphans::Config::default(),
        }
    }
}

/// Why a transaction was declined by policy (not a consensus failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// An input is already spent by a mempool transaction that may not be replaced.
    #[error(
        "input spends {outpoint}, already spent by mempool transaction {by}, which does not signal replaceability (BIP125)"
    )]
    Conflict {
        /// The outpoint.
        outpoint: OutPoint,
        /// The mempool transaction spending it.
        by: Txid,
    },
    /// The fee rate is below the minimum relay fee rate.
    #[error("fee {fee} for {size} bytes is below the minimum of {min_rate} belushis per byte")]
    FeeTooLow {
        /// The fee paid.
        fee: Amount,
        /// The transaction's size.
        size: u64,
        /// The minimum rate.
        min_rate: u64,
    },
    /// Too many unconfirmed ancestors.
    #[error("{count} unconfirmed ancestors exceed the limit of {limit}")]
    TooManyAncestors {
        /// Ancestors including itself.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Larger than a standard transaction.
    #[error("{size} bytes exceed the standard transaction size of {limit} bytes")]
    TooLarge {
        /// The transaction's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The mempool is full of transactions paying a higher fee rate.
    #[error("mempool full: fee rate too low to enter")]
    MempoolFull,
    /// Not valid yet (locktime or immature coinbase).
    #[error("not valid yet: {0}")]
    Premature(TxError),
    /// A replacement of signalling transactions that breaks a BIP125 rule.
    #[error("replacement refused: {0}")]
    Replacement(rbf::ReplacementError),
}

/// Txids as a readable list: `a, b, c`.
fn list(txids: &[Txid]) -> String {
    txids.iter().map(Txid::to_string).collect::<Vec<_>>().join(", ")
}

/// Why a transaction was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Some inputs are unknown; the transaction waits in the orphan pool.
    #[error("missing inputs from {}", list(.0))]
    MissingInputs(Vec<Txid>),
    /// It breaks a consensus rule: penalise the sender.
    #[error("invalid: {0}")]
    Invalid(TxError),
    /// Declined by policy: nobody is at fault.
    #[error("rejected by policy: {0}")]
    Policy(PolicyError),
}

/// What accepting a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Added, with the orphans that could be added after it (to relay too).
    New {
        /// Its fee.
        fee: Amount,
        /// Orphans that this transaction's arrival let in.
        unorphaned: Vec<Txid>,
        /// The transactions it replaced (BIP125), evicted with their descendants.
        replaced: Vec<Txid>,
    },
    /// Already in the mempool.
    AlreadyKnown,
}

/// One mempool transaction.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The transaction.
    pub tx: Transaction,
    /// Its fee.
    pub fee: Amount,
    /// Its size in bytes.
    pub size: u64,
    /// When it entered (unix seconds).
    pub time: u64,
    /// Order of entry.
    pub sequence: u64,
}

impl Entry {
    /// Returns the fee rate in milli-belushis per byte.
    pub fn rate_key(&self) -> u64 {
        fee_rate_milli(self.fee, self.size)
    }
}

fn fee_rate_milli(fee: Amount, size: u64) -> u64 {
    fee.to_belushis().saturating_mul(1000) / size.max(1)
}

/// The chain state the mempool validates against.
pub struct TipContext<'a, V: UtxoView> {
    /// Unspent outputs of the active chain.
    pub coins: &'a V,
    /// The tip's height (a mempool transaction would be mined at `height + 1`).
    pub height: u32,
    /// The tip's median time past.
    pub median_time_past: u32,
    /// Consensus parameters.
    pub params: &'a Params,
}

/// The mempool.
#[derive(Debug, Default)]
pub struct Mempool {
    config: Config,
    entries: HashMap<Txid, Entry>,
    /// Which mempool transaction spends each outpoint.
    spends: HashMap<OutPoint, Txid>,
    /// (rate, sequence, txid), lowest first: eviction order.
    by_rate: BTreeSet<(u64, u64, Txid)>,
    total_bytes: u64,
    next_sequence: u64,
    orphans: OrphanPool,
}

/// The chain's coins plus the mempool's unspent outputs.
struct PoolView<'a, V: UtxoView> {
    chain: &'a V,
    pool: &'a Mempool,
    height: u32,
}

impl<V: UtxoView> UtxoView for PoolView<'_, V> {
    fn get_coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        if let Some(entry) = self.pool.entries.get(&outpoint.txid) {
            let output = entry.tx.outputs.get(outpoint.vout as usize)?;
            return Some(Coin { output: *output, height: self.height + 1, is_coinbase: false });
        }
        self.chain.get_coin(outpoint)
    }
}

impl Mempool {
    /// Makes an empty mempool.
    pub fn new(config: Config) -> Mempool {
        Mempool { config, orphans: OrphanPool::new(config.orphans), ..Mempool::default() }
    }

    /// Returns the limits and policy it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Returns the number of transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tells whether the mempool is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the total size of the transactions, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Returns the number of orphans held.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// Returns a transaction's entry.
    pub fn get(&self, txid: &Txid) -> Option<&Entry> {
        self.entries.get(txid)
    }

    /// Tells whether `txid` is in the mempool or the orphan pool.
    pub fn contains(&self, txid: &Txid) -> bool {
        self.entries.contains_key(txid) || self.orphans.contains(txid)
    }

    /// Returns the mempool transaction spending `outpoint`, if any.
    pub fn spender(&self, outpoint: &OutPoint) -> Option<Txid> {
        self.spends.get(outpoint).copied()
    }

    /// Iterates over the entries (in no particular order).
    pub fn entries(&self) -> impl Iterator<Item = (&Txid, &Entry)> {
        self.entries.iter()
    }

    /// Returns every transaction with its entry time, parents before children (entry order).
    pub fn transactions_in_order(&self) -> Vec<(Transaction, u64)> {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by_key(|e| e.sequence);
        entries.into_iter().map(|e| (e.tx.clone(), e.time)).collect()
    }

    /// Tries to add `tx`, then any orphans it makes whole.
    ///
    /// # Errors
    ///
    /// Missing inputs (the transaction is kept as an orphan), invalid, or declined by policy.
    pub fn accept<V: UtxoView>(
        &mut self,
        tx: Transaction,
        tip: &TipContext<'_, V>,
        now: u64,
    ) -> Result<Accepted, RejectReason> {
        let txid = tx.txid();
        if self.entries.contains_key(&txid) {
            return Ok(Accepted::AlreadyKnown);
        }
        let (fee, replaced) = self.accept_one(tx, tip, now)?;
        let unorphaned = self.retry_orphans(vec![txid], tip, now);
        Ok(Accepted::New { fee, unorphaned, replaced })
    }

    /// Retries orphans whose parents are now among `parents`; returns those added.
    fn retry_orphans<V: UtxoView>(
        &mut self,
        mut parents: Vec<Txid>,
        tip: &TipContext<'_, V>,
        now: u64,
    ) -> Vec<Txid> {
        let mut added = Vec::new();
        while let Some(parent) = parents.pop() {
            for orphan in self.orphans.take_children(&parent) {
                let txid = orphan.txid();
                if self.accept_one(orphan, tip, now).is_ok() {
                    added.push(txid);
                    parents.push(txid);
                }
            }
        }
        added
    }

    /// Adds one transaction; returns its fee and the transactions it replaced.
    fn accept_one<V: UtxoView>(
        &mut self,
        tx: Transaction,
        tip: &TipContext<'_, V>,
        now: u64,
    ) -> Result<(Amount, Vec<Txid>), RejectReason> {
        let txid = tx.txid();
        let size = tx.size();
        if size > self.config.max_tx_size {
            return Err(RejectReason::Policy(PolicyError::TooLarge {
                size,
                limit: self.config.max_tx_size,
            }));
        }
        let replaced = self.replacement_candidates(&tx).map_err(RejectReason::Policy)?;
        let view = PoolView { chain: tip.coins, pool: self, height: tip.height };
        let checked = validation::check_loose_transaction(
            &tx,
            &view,
            tip.height + 1,
            tip.median_time_past,
            tip.params,
        );
        let fee = match checked {
            Ok(fee) => fee,
            Err(error) => {
                return Err(match error.kind() {
                    Kind::Invalid => RejectReason::Invalid(error),
                    Kind::Premature => RejectReason::Policy(PolicyError::Premature(error)),
                    Kind::Missing => {
                        let parents = missing_parents(&tx, &view);
                        self.orphans.insert(tx, parents.clone(), now);
                        RejectReason::MissingInputs(parents)
                    }
                });
            }
        };
        let min_fee = size.saturating_mul(self.config.min_relay_fee_rate);
        if fee.to_belushis() < min_fee {
            return Err(RejectReason::Policy(PolicyError::FeeTooLow {
                fee,
                size,
                min_rate: self.config.min_relay_fee_rate,
            }));
        }
        if !replaced.is_empty() {
            self.check_replacement(&tx, fee, size, &replaced)
                .map_err(|e| RejectReason::Policy(PolicyError::Replacement(e)))?;
        }
        let ancestors = self.ancestors(&tx);
        if ancestors.len() + 1 > self.config.max_ancestors {
            return Err(RejectReason::Policy(PolicyError::TooManyAncestors {
                count: ancestors.len() + 1,
                limit: self.config.max_ancestors,
            }));
        }
        let replaced: Vec<Txid> = replaced.into_iter().map(|o| o.txid).collect();
        for t in &replaced {
            self.remove_entry(t);
        }
        self.next_sequence += 1;
        let entry = Entry { tx, fee, size, time: now, sequence: self.next_sequence };
        self.insert_entry(txid, entry);
        self.trim_to_size();
        if !self.entries.contains_key(&txid) {
            return Err(RejectReason::Policy(PolicyError::MempoolFull));
        }
        Ok((fee, replaced))
    }

    /// Returns what `tx` would evict: the mempool transactions spending its inputs
    /// (each replaceable) and their descendants.
    ///
    /// # Errors
    ///
    /// A conflict does not signal replaceability, there are too many, or `tx`
    /// spends one of their outputs.
    fn replacement_candidates(&self, tx: &Transaction) -> Result<Vec<rbf::Original>, PolicyError> {
        let mut direct: Vec<Txid> = Vec::new();
        for input in &tx.inputs {
            let Some(by) = self.spends.get(&input.prev_out) else { continue };
            if !direct.contains(by) {
                if !self.replaceable(by) {
                    return Err(PolicyError::Conflict { outpoint: input.prev_out, by: *by });
                }
                direct.push(*by);
            }
        }
        if direct.is_empty() {
            return Ok(Vec::new());
        }
        let all =
            self.descendants_of(&direct, rbf::MAX_REPLACED).ok_or(PolicyError::Replacement(
                rbf::ReplacementError::TooManyReplaced { count: rbf::MAX_REPLACED + 1 },
            ))?;
        if let Some(input) = tx.inputs.iter().find(|i| all.contains(&i.prev_out.txid)) {
            return Err(PolicyError::Replacement(rbf::ReplacementError::SpendsConflicting(
                input.prev_out.txid,
            )));
        }
        Ok(all
            .iter()
            .filter_map(|t| self.entries.get(t).map(|e| (t, e)))
            .map(|(t, e)| rbf::Original {
                txid: *t,
                fee: e.fee,
                rate: e.rate_key(),
                direct: direct.contains(t),
            })
            .collect())
    }

    /// Tells whether a mempool transaction may be replaced: it or an unconfirmed
    /// ancestor signals (BIP125's inherited signalling).
    fn replaceable(&self, txid: &Txid) -> bool {
        let Some(entry) = self.entries.get(txid) else { return false };
        rbf::signals(&entry.tx)
            || self
                .ancestors(&entry.tx)
                .iter()
                .filter_map(|a| self.entries.get(a))
                .any(|a| rbf::signals(&a.tx))
    }

    /// Checks BIP125 rules 2 to 4 for `tx` replacing `originals`.
    fn check_replacement(
        &self,
        tx: &Transaction,
        fee: Amount,
        size: u64,
        originals: &[rbf::Original],
    ) -> Result<(), rbf::ReplacementError> {
        // Rule 2, as Core applies it: unconfirmed parents must be parents of a direct conflict.
        let parents_of_conflicts: HashSet<Txid> = originals
            .iter()
            .filter(|o| o.direct)
            .filter_map(|o| self.entries.get(&o.txid))
            .flat_map(|e| e.tx.inputs.iter().map(|i| i.prev_out.txid))
            .collect();
        if let Some(input) = tx.inputs.iter().find(|i| {
            self.entries.contains_key(&i.prev_out.txid)
                && !parents_of_conflicts.contains(&i.prev_out.txid)
        }) {
            return Err(rbf::ReplacementError::NewUnconfirmedInput(input.prev_out.txid));
        }
        let rate = fee_rate_milli(fee, size);
        rbf::check_fees(fee, size, rate, originals, self.config.incremental_relay_fee_rate)
    }

    fn insert_entry(&mut self, txid: Txid, entry: Entry) {
        for input in &entry.tx.inputs {
            self.spends.insert(input.prev_out, txid);
        }
        self.by_rate.insert((entry.rate_key(), entry.sequence, txid));
        self.total_bytes += entry.size;
        self.entries.insert(txid, entry);
    }

    /// Returns the in-mempool ancestors of `tx` (not including itself).
    pub fn ancestors(&self, tx: &Transaction) -> HashSet<Txid> {
        let mut found = HashSet::new();
        let mut stack: Vec<Txid> = tx.inputs.iter().map(|i| i.prev_out.txid).collect();
        while let Some(txid) = stack.pop() {
            if let Some(entry) = self.entries.get(&txid)
                && found.insert(txid)
            {
                stack.extend(entry.tx.inputs.iter().map(|i| i.prev_out.txid));
            }
        }
        found
    }

    /// Returns `txid` and its in-mempool descendants.
    pub fn descendants(&self, txid: &Txid) -> Vec<Txid> {
        self.descendants_of(&[*txid], usize::MAX).unwrap_or_default()
    }

    /// Returns `roots` and their in-mempool descendants, or `None` if they are more than `cap`.
    fn descendants_of(&self, roots: &[Txid], cap: usize) -> Option<Vec<Txid>> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = roots.to_vec();
        while let Some(t) = stack.pop() {
            let Some(entry) = self.entries.get(&t) else { continue };
            if !seen.insert(t) {
                continue;
            }
            if found.len() == cap {
                return None;
            }
            found.push(t);
            for vout in 0..entry.tx.outputs.len() as u32 {
                if let Some(child) = self.spends.get(&OutPoint { txid: t, vout }) {
                    stack.push(*child);
                }
            }
        }
        Some(found)
    }

    /// Removes one transaction (not its descendants).
    fn remove_entry(&mut self, txid: &Txid) -> Option<Entry> {
        let entry = self.entries.remove(txid)?;
        for input in &entry.tx.inputs {
            if self.spends.get(&input.prev_out) == Some(txid) {
                self.spends.remove(&input.prev_out);
            }
        }
        self.by_rate.remove(&(entry.rate_key(), entry.sequence, *txid));
        self.total_bytes -= entry.size;
        Some(entry)
    }

    /// Removes `txid` with all its descendants; returns the removed txids.
    pub fn remove_with_descendants(&mut self, txid: &Txid) -> Vec<Txid> {
        let doomed = self.descendants(txid);
        for t in &doomed {
            self.remove_entry(t);
        }
        doomed
    }

    fn trim_to_size(&mut self) {
        while self.total_bytes > self.config.max_bytes {
            let Some(&(_, _, lowest)) = self.by_rate.first() else { break };
            self.remove_with_descendants(&lowest);
        }
    }

    /// Drops transactions older than the expiry, and expired orphans.
    pub fn expire(&mut self, now: u64) -> Vec<Txid> {
        let cutoff = now.saturating_sub(self.config.expiry_secs);
        let old: Vec<Txid> =
            self.entries.iter().filter(|(_, e)| e.time < cutoff).map(|(t, _)| *t).collect();
        let mut removed = Vec::new();
        for txid in old {
            removed.extend(self.remove_with_descendants(&txid));
        }
        self.orphans.expire(now);
        removed
    }

    /// Updates the mempool for a block connected to the tip: removes its
    /// transactions and everything conflicting with them, then retries orphans
    /// that were waiting for its transactions.
    pub fn block_connected<V: UtxoView>(
        &mut self,
        block: &Block,
        tip: &TipContext<'_, V>,
        now: u64,
    ) {
        let mut confirmed = Vec::with_capacity(block.txdata.len());
        for tx in &block.txdata {
            let txid = tx.txid();
            self.remove_entry(&txid);
            confirmed.push(txid);
        }
        for tx in block.txdata.iter().skip(1) {
            for input in &tx.inputs {
                if let Some(conflict) = self.spends.get(&input.prev_out).copied() {
                    self.remove_with_descendants(&conflict);
                }
            }
        }
        self.orphans.remove_for_block(block);
        self.retry_orphans(confirmed, tip, now);
    }

    /// Rebuilds the mempool after a reorg: the disconnected blocks' transactions
    /// (oldest block first) go back in, then every transaction is checked again
    /// on the new tip, dropping what is no longer valid (for example a spend of a
    /// coinbase that is immature again, or of an output the new chain spent).
    pub fn reorganized<V: UtxoView>(
        &mut self,
        disconnected: &[Block],
        tip: &TipContext<'_, V>,
        now: u64,
    ) {
        let mut entries: Vec<Entry> = self.entries.drain().map(|(_, e)| e).collect();
        entries.sort_by_key(|e| e.sequence);
        self.spends.clear();
        self.by_rate.clear();
        self.total_bytes = 0;
        // Disconnected blocks come tip first: put back the oldest block's transactions first.
        let returning = disconnected.iter().rev().flat_map(|b| b.txdata.iter().skip(1).cloned());
        for tx in returning {
            let _ = self.accept_one(tx, tip, now);
        }
        for entry in entries {
            let _ = self.accept_one(entry.tx, tip, entry.time);
        }
    }
}

/// Returns the txids of the inputs `view` does not have, each once.
fn missing_parents(tx: &Transaction, view: &impl UtxoView) -> Vec<Txid> {
    let mut parents: Vec<Txid> = tx
        .inputs
        .iter()
        .filter(|i| view.get_coin(&i.prev_out).is_none())
        .map(|i| i.prev_out.txid)
        .collect();
    parents.sort();
    parents.dedup();
    parents
}
