//! Fee estimation: what fee rate has recently been enough to confirm within a number of
//! blocks (Bitcoin Core's `CBlockPolicyEstimator` behind `estimatesmartfee`, in small form).
//!
//! Owns the statistics and the estimate. Each transaction the mempool accepts is
//! tracked with its fee rate's bucket and the height it entered at. When a block
//! confirms it, the blocks it waited count as a success for every target at least
//! that long; when it leaves the mempool otherwise (replaced, evicted, expired,
//! conflicted) after waiting, it counts as a failure for the targets it outlived. All
//! counts decay by [`DECAY`] per block, so the estimate follows the recent past.
//!
//! To estimate for a target, the buckets are read from the highest fee rate down,
//! grouped into ranges holding at least [`SUFFICIENT_TXS`] transactions; a range
//! passes when at least [`SUCCESS_SHARE`] of its transactions (counting those still
//! waiting longer than the target as failures) confirmed within the target. The
//! answer is the median fee rate of the lowest range in an unbroken run of passing
//! ranges from the top; with no passing range there is no answer, and the reason says
//! why.
//!
//! Pure: the core feeds it accepted transactions and connected blocks; the statistics
//! (not the tracked transactions) are saved with the mempool at a clean stop.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tinychain_protocol::Txid;

/// The longest confirmation target tracked, in blocks (an hour of 60-second blocks ×
/// 1.6: Core's medium horizon, 48 blocks).
pub const MAX_TARGET: u32 = 48;
/// Each block multiplies every count by this: a half-life of about 350 blocks (6 hours).
pub const DECAY: f64 = 0.998;
/// Share of a range's transactions that must confirm within the target (Core's 85 %).
pub const SUCCESS_SHARE: f64 = 0.85;
/// Transactions (after decay) a range of buckets needs before it is judged.
pub const SUFFICIENT_TXS: f64 = 3.0;
/// Lowest bucket bound, milli-belushis per byte (the default minimum relay rate).
const MIN_BUCKET: f64 = 1_000.0;
/// Highest bucket bound, milli-belushis per byte (10,000 belushis per byte).
const MAX_BUCKET: f64 = 10_000_000.0;
/// Each bucket's bound is this many times the previous one's.
const BUCKET_SPACING: f64 = 1.1;
/// Transactions tracked at most; past it, new ones are not (the mempool bounds them anyway).
const MAX_TRACKED: usize = 200_000;

/// An estimate, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Estimate {
    /// A fee rate that has recently confirmed within the target.
    Rate {
        /// Milli-belushis per byte: the median of the passing range.
        milli_rate: u64,
        /// Transactions (after decay) in that range.
        transactions: f64,
        /// The share of them that confirmed within the target.
        success: f64,
    },
    /// Not enough data, or no rate confirms often enough.
    NoAnswer(String),
}

/// The decaying counts, per fee-rate bucket (and per target for the per-target ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Height of the last block counted.
    pub best_height: u32,
    /// Confirmed transactions per bucket.
    pub confirmed: Vec<f64>,
    /// Sum of their fee rates per bucket, milli-belushis per byte.
    pub rate_sum: Vec<f64>,
    /// `within[t - 1][b]`: bucket `b`'s transactions confirmed within `t` blocks.
    pub within: Vec<Vec<f64>>,
    /// `failed[t - 1][b]`: bucket `b`'s transactions that left unconfirmed after `t` blocks or more.
    pub failed: Vec<Vec<f64>>,
}

/// A mempool transaction being followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    /// The tip's height when it entered.
    height: u32,
    bucket: usize,
    /// Its fee rate, milli-belushis per byte.
    milli_rate: u64,
}

/// The fee estimator.
#[derive(Debug, Clone)]
pub struct Estimator {
    /// Upper bounds of the buckets, milli-belushis per byte, ascending.
    bounds: Vec<f64>,
    stats: Saved,
    tracked: HashMap<Txid, Tracked>,
}

impl Default for Estimator {
    fn default() -> Estimator {
        Estimator::new()
    }
}

impl Estimator {
    /// Makes an estimator with no data.
    pub fn new() -> Estimator {
        let mut bounds = Vec::new();
        let mut bound = MIN_BUCKET;
        while bound < MAX_BUCKET {
            bounds.push(bound);
            bound *= BUCKET_SPACING;
        }
        bounds.push(f64::INFINITY);
        let row = vec![0.0; bounds.len()];
        let per_target = vec![row.clone(); MAX_TARGET as usize];
        let stats = Saved {
            best_height: 0,
            confirmed: row.clone(),
            rate_sum: row,
            within: per_target.clone(),
            failed: per_target,
        };
        Estimator { bounds, stats, tracked: HashMap::new() }
    }

    /// Makes an estimator from saved statistics; `None` if they do not fit this
    /// layout (another bucket layout, negative or non-finite counts).
    pub fn from_saved(saved: Saved) -> Option<Estimator> {
        let mut estimator = Estimator::new();
        let buckets = estimator.bounds.len();
        let row_ok =
            |row: &Vec<f64>| row.len() == buckets && row.iter().all(|v| v.is_finite() && *v >= 0.0);
        let table_ok = |t: &Vec<Vec<f64>>| t.len() == MAX_TARGET as usize && t.iter().all(row_ok);
        let fits = row_ok(&saved.confirmed)
            && row_ok(&saved.rate_sum)
            && table_ok(&saved.within)
            && table_ok(&saved.failed);
        fits.then(|| {
            estimator.stats = saved;
            estimator
        })
    }

    /// Returns the statistics to save.
    pub fn saved(&self) -> &Saved {
        &self.stats
    }

    /// Returns the number of transactions being followed.
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    fn bucket(&self, milli_rate: u64) -> usize {
        let rate = milli_rate as f64;
        self.bounds.iter().position(|b| rate < *b).unwrap_or(self.bounds.len() - 1)
    }

    /// Follows a transaction the mempool accepted when the tip was at `height`.
    pub fn track(&mut self, txid: Txid, milli_rate: u64, height: u32) {
        if self.tracked.len() < MAX_TRACKED {
            let bucket = self.bucket(milli_rate);
            self.tracked.insert(txid, Tracked { height, bucket, milli_rate });
        }
    }

    /// Counts a block connected at `height` with `confirmed` transactions. Those
    /// followed and not confirmed that `in_mempool` no longer holds left the mempool
    /// unconfirmed. A block at or below the last one counted (a reorg) teaches
    /// nothing; neither does an `old` one (initial sync), though its transactions
    /// are no longer followed.
    pub fn block_connected(
        &mut self,
        height: u32,
        confirmed: &[Txid],
        in_mempool: impl Fn(&Txid) -> bool,
        old: bool,
    ) {
        if height <= self.stats.best_height && self.stats.best_height != 0 {
            for txid in confirmed {
                self.tracked.remove(txid);
            }
            return;
        }
        let previous = self.stats.best_height;
        self.decay();
        for txid in confirmed {
            let Some(t) = self.tracked.remove(txid) else { continue };
            if !old {
                self.count_confirmed(height.saturating_sub(t.height).max(1), &t);
            }
        }
        let gone: Vec<(Txid, Tracked)> =
            self.tracked.iter().filter(|(t, _)| !in_mempool(t)).map(|(t, v)| (*t, *v)).collect();
        for (txid, t) in gone {
            self.tracked.remove(&txid);
            self.count_failed(previous.saturating_sub(t.height), t.bucket);
        }
        self.stats.best_height = height;
    }

    fn decay(&mut self) {
        let s = &mut self.stats;
        for row in [&mut s.confirmed, &mut s.rate_sum]
            .into_iter()
            .chain(&mut s.within)
            .chain(&mut s.failed)
        {
            row.iter_mut().for_each(|v| *v *= DECAY);
        }
    }

    fn count_confirmed(&mut self, blocks: u32, t: &Tracked) {
        self.stats.confirmed[t.bucket] += 1.0;
        self.stats.rate_sum[t.bucket] += t.milli_rate as f64;
        for target in blocks..=MAX_TARGET {
            self.stats.within[target as usize - 1][t.bucket] += 1.0;
        }
    }

    fn count_failed(&mut self, waited: u32, bucket: usize) {
        for target in 1..=waited.min(MAX_TARGET) {
            self.stats.failed[target as usize - 1][bucket] += 1.0;
        }
    }

    /// Estimates the fee rate that confirms within `target` blocks (1 to [`MAX_TARGET`]).
    pub fn estimate(&self, target: u32) -> Estimate {
        let target = target.clamp(1, MAX_TARGET);
        let t = target as usize - 1;
        // Transactions still waiting after `target` blocks count against their bucket.
        let mut waiting = vec![0.0; self.bounds.len()];
        for tracked in self.tracked.values() {
            if self.stats.best_height.saturating_sub(tracked.height) >= target {
                waiting[tracked.bucket] += 1.0;
            }
        }
        let mut range = Range::default();
        let mut best: Option<Range> = None;
        for bucket in (0..self.bounds.len()).rev() {
            range.near.get_or_insert(bucket);
            range.far = bucket;
            range.within += self.stats.within[t][bucket];
            range.total += self.stats.confirmed[bucket];
            range.failed += self.stats.failed[t][bucket] + waiting[bucket];
            if range.total < SUFFICIENT_TXS {
                continue;
            }
            if range.success() < SUCCESS_SHARE {
                // Core keeps adding lower buckets to a failing range: it may pass again.
                continue;
            }
            best = Some(std::mem::take(&mut range));
        }
        match best {
            Some(range) => Estimate::Rate {
                milli_rate: self.median_rate(&range),
                transactions: range.total,
                success: range.success(),
            },
            None => Estimate::NoAnswer(self.no_answer(target)),
        }
    }

    /// The median fee rate of the transactions in `range` (by the bucket holding the middle one).
    fn median_rate(&self, range: &Range) -> u64 {
        let near = range.near.unwrap_or(range.far);
        let half = range.total / 2.0;
        let mut seen = 0.0;
        for bucket in range.far..=near {
            seen += self.stats.confirmed[bucket];
            if seen >= half && self.stats.confirmed[bucket] > 0.0 {
                return (self.stats.rate_sum[bucket] / self.stats.confirmed[bucket]).ceil() as u64;
            }
        }
        0
    }

    fn no_answer(&self, target: u32) -> String {
        let seen: f64 = self.stats.confirmed.iter().sum();
        if seen < SUFFICIENT_TXS {
            format!(
                "not enough data: {seen:.1} transactions seen confirmed recently (after decay), \
                 {SUFFICIENT_TXS} needed"
            )
        } else {
            format!(
                "no fee rate confirmed {:.0} % of its transactions within {target} blocks recently",
                SUCCESS_SHARE * 100.0
            )
        }
    }
}

/// A run of adjacent buckets being judged together.
#[derive(Debug, Clone, Default)]
struct Range {
    /// The highest bucket in it.
    near: Option<usize>,
    /// The lowest.
    far: usize,
    within: f64,
    total: f64,
    failed: f64,
}

impl Range {
    fn success(&self) -> f64 {
        let all = self.total + self.failed;
        if all > 0.0 { self.within / all } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txid(n: u32) -> Txid {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        Txid::from_byte_array(bytes)
    }

    /// Feeds `count` transactions per block, for `blocks` blocks, at `rate` belushis
    /// per byte, each confirmed `wait` blocks after it entered.
    fn feed(estimator: &mut Estimator, blocks: u32, count: u32, rate: u64, wait: u32, first: u32) {
        let start = estimator.saved().best_height;
        let mut pending: Vec<(u32, Txid)> = Vec::new();
        let mut n = first;
        for h in start + 1..=start + blocks + wait {
            if h <= start + blocks {
                for _ in 0..count {
                    n += 1;
                    estimator.track(txid(n), rate * 1000, h - 1);
                    pending.push((h - 1 + wait, txid(n)));
                }
            }
            let confirmed: Vec<Txid> =
                pending.iter().filter(|(at, _)| *at == h).map(|(_, t)| *t).collect();
            pending.retain(|(at, _)| *at != h);
            let still: Vec<Txid> = pending.iter().map(|(_, t)| *t).collect();
            estimator.block_connected(h, &confirmed, |t| still.contains(t), false);
        }
    }

    fn rate(estimate: &Estimate) -> u64 {
        match estimate {
            Estimate::Rate { milli_rate, .. } => *milli_rate,
            Estimate::NoAnswer(why) => panic!("no answer: {why}"),
        }
    }

    #[test]
    fn with_no_data_there_is_no_answer_and_the_reason_says_so() {
        let estimator = Estimator::new();
        let Estimate::NoAnswer(why) = estimator.estimate(6) else {
            panic!("an answer from nothing")
        };
        assert!(why.contains("not enough data"), "{why}");
        let mut few = Estimator::new();
        feed(&mut few, 1, 2, 5, 1, 0);
        assert!(matches!(few.estimate(1), Estimate::NoAnswer(_)), "two transactions are too few");
    }

    #[test]
    fn fast_high_fees_and_slow_low_fees_give_a_rate_per_target() {
        let mut estimator = Estimator::new();
        // 20 belushis per byte confirm in the next block; 2 per byte take 5 blocks.
        feed(&mut estimator, 10, 3, 20, 1, 0);
        feed(&mut estimator, 10, 3, 2, 5, 1000);
        let fast = rate(&estimator.estimate(1));
        assert!((20_000..=22_000).contains(&fast), "{fast}");
        let slow = rate(&estimator.estimate(6));
        assert!((2_000..=2_200).contains(&slow), "{slow}");
        assert!(rate(&estimator.estimate(MAX_TARGET)) <= slow);
        assert_eq!(estimator.tracked(), 0, "every transaction was confirmed and let go");
    }

    #[test]
    fn transactions_left_behind_count_as_failures() {
        let mut estimator = Estimator::new();
        feed(&mut estimator, 10, 3, 20, 1, 0);
        // 30 transactions at 3 per byte enter and are never confirmed: 10 blocks later
        // they are still waiting, so 3 per byte does not confirm within 2 blocks.
        for n in 0..30 {
            estimator.track(txid(5000 + n), 3000, estimator.saved().best_height);
        }
        let height = estimator.saved().best_height;
        for h in height + 1..=height + 10 {
            estimator.block_connected(h, &[], |_| true, false);
        }
        assert!(rate(&estimator.estimate(2)) >= 20_000);
        // Evicted now: the failures stay counted.
        estimator.block_connected(height + 11, &[], |_| false, false);
        assert_eq!(estimator.tracked(), 0);
        assert!(rate(&estimator.estimate(2)) >= 20_000);
        assert!(estimator.saved().failed[1].iter().sum::<f64>() > 29.0);
    }

    #[test]
    fn reorged_and_old_blocks_teach_nothing() {
        let mut estimator = Estimator::new();
        feed(&mut estimator, 5, 3, 20, 1, 0);
        let before = estimator.saved().clone();
        estimator.track(txid(9999), 7000, 3);
        estimator.block_connected(4, &[txid(9999)], |_| true, false);
        assert_eq!(estimator.saved(), &before, "a block at a height already counted");
        assert_eq!(estimator.tracked(), 0);
        estimator.track(txid(9998), 7000, 6);
        estimator.block_connected(7, &[txid(9998)], |_| true, true);
        assert_eq!(
            estimator.saved().confirmed.iter().sum::<f64>(),
            before.confirmed.iter().sum::<f64>() * DECAY
        );
    }

    #[test]
    fn saved_statistics_load_back_and_bad_ones_are_refused() {
        let mut estimator = Estimator::new();
        feed(&mut estimator, 10, 3, 20, 1, 0);
        let loaded = Estimator::from_saved(estimator.saved().clone()).expect("fits");
        assert_eq!(loaded.estimate(1), estimator.estimate(1));
        let mut bad = estimator.saved().clone();
        bad.confirmed.pop();
        assert!(Estimator::from_saved(bad).is_none());
        let mut bad = estimator.saved().clone();
        bad.within[3][0] = f64::NAN;
        assert!(Estimator::from_saved(bad).is_none());
        let mut bad = estimator.saved().clone();
        bad.failed.truncate(10);
        assert!(Estimator::from_saved(bad).is_none());
    }

    #[test]
    fn rates_beyond_the_buckets_land_in_the_end_ones() {
        let estimator = Estimator::new();
        assert_eq!(estimator.bucket(0), 0);
        assert_eq!(estimator.bucket(999), 0);
        assert_eq!(estimator.bucket(1000), 1);
        assert_eq!(estimator.bucket(u64::MAX), estimator.bounds.len() - 1);
    }
}
