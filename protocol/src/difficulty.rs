//! Difficulty: the compact target each new block must use, retargeted every block.
//!
//! Owns the retarget rule (DigiShield v3, as Zcash's `GetNextWorkRequired` and
//! `CalculateNextWorkRequired` implement it) and median time past (Bitcoin Core's
//! `GetMedianTimePast`). The rule averages the targets of the last
//! `pow_averaging_window` blocks (N), measures how long they took between two
//! median times past (so a single lying timestamp moves nothing), damps the
//! deviation from the scheduled timespan by `pow_damping_factor`, clamps it, and
//! scales the average target by actual / scheduled timespan.
//!
//! Everything here is pure and works on plain slices of `(time, bits)` taken from
//! the chain, oldest first, ending with the parent of the new block; it never
//! walks a chain itself. Integer arithmetic only.

use std::num::NonZeroU64;

use crate::params::Params;
use crate::pow::{CompactTarget, Target};

/// Blocks whose times make up a median time past (Bitcoin Core's `nMedianTimeSpan`).
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Returns the median time past of the last block in `times` (Bitcoin Core's
/// `CBlockIndex::GetMedianTimePast`): the median of the last
/// [`MEDIAN_TIME_SPAN`] times, or of all of them if there are fewer.
///
/// `times` are block times, oldest first. They need not be increasing: the
/// last `k = min(11, len)` are sorted and element `k / 2` is returned (for an
/// even `k`, the upper of the two middle values, as in Core). Returns 0 for no
/// times, so any block time is after it.
pub fn median_time_past(times: &[u32]) -> u32 {
    let recent = &times[times.len().saturating_sub(MEDIAN_TIME_SPAN)..];
    let mut sorted = [0u32; MEDIAN_TIME_SPAN];
    let sorted = &mut sorted[..recent.len()];
    sorted.copy_from_slice(recent);
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

/// Returns N, the number of blocks whose targets are averaged, treating a
/// window of 0 as 1.
const fn averaging_window(params: &Params) -> usize {
    if params.pow_averaging_window == 0 { 1 } else { params.pow_averaging_window as usize }
}

/// Returns how many ancestors (ending with the parent) [`get_next_work_required`]
/// needs to retarget, and uses: N + [`MEDIAN_TIME_SPAN`] (28 with N = 17).
///
/// The last N give the average target; the block N back from the parent starts
/// the measured timespan, and its median time past needs it and the 10 blocks
/// before it. With fewer ancestors the rule gives the pow limit, so on a new
/// chain the blocks at heights 1 to N + 10 use the pow limit and the block at
/// height N + 11 is the first retargeted one.
pub const fn ancestors_needed(params: &Params) -> usize {
    averaging_window(params) + MEDIAN_TIME_SPAN
}

/// Returns the timespan the averaging window should take, N × spacing, in
/// seconds (Zcash's `AveragingWindowTimespan`); at least 1.
pub const fn averaging_window_timespan(params: &Params) -> i64 {
    let spacing = if params.target_spacing == 0 { 1 } else { params.target_spacing as i64 };
    (averaging_window(params) as i64).saturating_mul(spacing)
}

/// Returns the shortest timespan the retarget uses (Zcash's `MinActualTimespan`):
/// the window timespan × (100 − max adjust up) / 100, rounded down, at least 1.
/// With tinychain's parameters, 1020 × 84 / 100 = 856 seconds, so a target can
/// get at most 16.1% harder than the window's average in one block.
pub const fn min_actual_timespan(params: &Params) -> i64 {
    let percent = 100 - params.pow_max_adjust_up_percent as i64;
    let min = averaging_window_timespan(params).saturating_mul(percent) / 100;
    if min < 1 { 1 } else { min }
}

/// Returns the longest timespan the retarget uses (Zcash's `MaxActualTimespan`):
/// the window timespan × (100 + max adjust down) / 100, rounded down. With
/// tinychain's parameters, 1020 × 132 / 100 = 1346 seconds, so a target can get
/// at most 32% easier than the window's average in one block.
pub const fn max_actual_timespan(params: &Params) -> i64 {
    let percent = 100 + params.pow_max_adjust_down_percent as i64;
    averaging_window_timespan(params).saturating_mul(percent) / 100
}

/// Returns the compact target a block built on the last of `ancestors` must use
/// (Zcash's `GetNextWorkRequired`, without its testnet minimum-difficulty rule).
///
/// `ancestors` are `(time, bits)` of the most recent blocks, oldest first,
/// ending with the parent of the new block. Only the last
/// [`ancestors_needed`] (N + 11) are used; pass at least that many, or every
/// block back to genesis if the chain is shorter. Then:
///
/// - no ancestors (the block is genesis): the pow limit;
/// - `pow_no_retargeting`: the parent's bits;
/// - fewer than N + 11 ancestors: the pow limit. Zcash retargets as soon as
///   the block N back from the parent exists, taking that block's median time
///   past over the fewer blocks there are; its median then lags less than the
///   parent's (which spans 11 blocks), which shortens the measured timespan
///   and makes blocks on schedule look fast. Waiting for full medians avoids
///   that bias;
/// - otherwise [`calculate_next_work_required`] of the mean of the last N
///   targets, the parent's median time past and the median time past of the
///   block N before the parent.
///
/// Ancestors' bits are expected to be valid (they passed proof of work); bits
/// that do not decode count as the pow limit, so this never fails or panics.
pub fn get_next_work_required(
    ancestors: &[(u32, CompactTarget)],
    params: &Params,
) -> CompactTarget {
    let pow_limit = params.pow_limit.to_compact();
    let Some(&(_, parent_bits)) = ancestors.last() else {
        return pow_limit;
    };
    if params.pow_no_retargeting {
        return parent_bits;
    }
    let needed = ancestors_needed(params);
    if ancestors.len() < needed {
        return pow_limit;
    }
    let window = averaging_window(params);
    let ancestors = &ancestors[ancestors.len() - needed..];
    let times: Vec<u32> = ancestors.iter().map(|&(time, _)| time).collect();
    let last = ancestors.len() - 1;
    let first = last - window;
    let average = Target::mean(
        ancestors[first + 1..]
            .iter()
            .map(|&(_, bits)| bits.to_target().unwrap_or(params.pow_limit)),
    )
    .expect("the window has at least one block");
    calculate_next_work_required(
        average,
        median_time_past(&times[..=last]),
        median_time_past(&times[..=first]),
        params,
    )
}

/// Returns the next compact target from the window's average target and the
/// median times past at its end and its start (Zcash's
/// `CalculateNextWorkRequired`).
///
/// The measured timespan `last_mtp − first_mtp` (negative if times went
/// backwards) is damped to `W + (actual − W) / damping` (W the window timespan,
/// division rounding toward zero as in C++), then clamped between
/// [`min_actual_timespan`] and [`max_actual_timespan`]. The next target is
/// `average × timespan / W`, rounded down. Zcash divides first; this multiplies
/// first, in 512-bit integers, so no low bits are lost and nothing overflows.
/// The result is capped at the pow limit, and raised to 1 if it would be 0 (a
/// zero target decodes as an error and would stop the chain), then encoded with
/// [`Target::to_compact`], which rounds it down to 16–24 significant bits.
pub fn calculate_next_work_required(
    average: Target,
    last_mtp: u32,
    first_mtp: u32,
    params: &Params,
) -> CompactTarget {
    let window_timespan = averaging_window_timespan(params);
    let damping = i64::from(params.pow_damping_factor.max(1));
    let actual = i64::from(last_mtp) - i64::from(first_mtp);
    let mut timespan = window_timespan + (actual - window_timespan) / damping;
    timespan = timespan.max(min_actual_timespan(params)).min(max_actual_timespan(params));
    let next = average.mul_div(positive(timespan), nonzero(window_timespan));
    next.min(params.pow_limit).max(Target::ONE).to_compact()
}

/// Converts a timespan that is at least 1 by construction to `u64`.
fn positive(timespan: i64) -> u64 {
    u64::try_from(timespan).unwrap_or(1)
}

/// Converts a timespan that is at least 1 by construction to `NonZeroU64`.
fn nonzero(timespan: i64) -> NonZeroU64 {
    NonZeroU64::new(positive(timespan)).unwrap_or(NonZeroU64::MIN)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::params::Network;

    /// Compact pow limit of the test parameters.
    const LIMIT_BITS: u32 = 0x1e0f_ffff;
    /// A difficulty well below the limit, so it can move both ways.
    const BITS: u32 = 0x1d12_3456;

    fn params() -> Params {
        Params {
            network: Network::Main,
            pow_limit: CompactTarget::from_consensus(LIMIT_BITS)
                .to_target()
                .expect("the limit decodes"),
            target_spacing: 60,
            pow_averaging_window: 17,
            pow_damping_factor: 4,
            pow_max_adjust_up_percent: 16,
            pow_max_adjust_down_percent: 32,
            pow_no_retargeting: false,
            subsidy_halving_interval: 210_000,
            coinbase_maturity: 100,
            max_future_block_time: 720,
        }
    }

    fn target(bits: CompactTarget) -> Target {
        bits.to_target().expect("test bits decode")
    }

    /// `count` blocks with bits `bits`, `spacing` seconds apart.
    fn chain(count: usize, spacing: u32, bits: u32) -> Vec<(u32, CompactTarget)> {
        (0..count as u32)
            .map(|i| (1_800_000_000 + i * spacing, CompactTarget::from_consensus(bits)))
            .collect()
    }

    fn nz(v: u64) -> NonZeroU64 {
        NonZeroU64::new(v).expect("nonzero")
    }

    #[test]
    fn median_time_past_is_the_true_median() {
        assert_eq!(median_time_past(&[]), 0);
        assert_eq!(median_time_past(&[7]), 7);
        assert_eq!(median_time_past(&[9, 1, 5]), 5);
        // Even count: element len / 2 of the sorted times, the upper middle.
        assert_eq!(median_time_past(&[40, 10, 30, 20]), 30);
        assert_eq!(median_time_past(&[3, 3, 1, 3, 1]), 3);
        // Only the last 11 count: the 1000s are older.
        let mut times = vec![1000, 1000, 1000];
        times.extend([11, 1, 10, 2, 9, 3, 8, 4, 7, 5, 6]);
        assert_eq!(median_time_past(&times), 6);
        // Non-monotonic times: the median ignores one outlier either way.
        assert_eq!(median_time_past(&[100, 101, 102, 0, 104, u32::MAX]), 102);
    }

    #[test]
    fn timespan_bounds() {
        let p = params();
        assert_eq!(ancestors_needed(&p), 28);
        assert_eq!(averaging_window_timespan(&p), 1020);
        assert_eq!(min_actual_timespan(&p), 856);
        assert_eq!(max_actual_timespan(&p), 1346);
    }

    #[test]
    fn blocks_on_schedule_keep_the_target() {
        let p = params();
        for count in [28, 29, 100] {
            let next = get_next_work_required(&chain(count, 60, BITS), &p);
            assert_eq!(next, CompactTarget::from_consensus(BITS), "{count} blocks");
        }
    }

    #[test]
    fn only_the_last_ancestors_needed_count() {
        let p = params();
        let mut history = chain(60, 60, BITS);
        let expected = get_next_work_required(&history[60 - 28..], &p);
        // Wild older history changes nothing.
        for (i, entry) in history[..60 - 28].iter_mut().enumerate() {
            *entry = (i as u32 * 7_919, CompactTarget::from_consensus(LIMIT_BITS));
        }
        assert_eq!(get_next_work_required(&history, &p), expected);
    }

    #[test]
    fn damping_quarters_the_deviation() {
        let p = params();
        // 55 s blocks: actual 935, damped 1020 + (-85 / 4) = 1020 - 21 = 999.
        let next = get_next_work_required(&chain(28, 55, BITS), &p);
        let expected = target(CompactTarget::from_consensus(BITS)).mul_div(999, nz(1020));
        assert_eq!(next, expected.to_compact());
        // 65 s blocks: actual 1105, damped 1020 + 85 / 4 = 1041.
        let next = get_next_work_required(&chain(28, 65, BITS), &p);
        let expected = target(CompactTarget::from_consensus(BITS)).mul_div(1041, nz(1020));
        assert_eq!(next, expected.to_compact());
    }

    #[test]
    fn fast_blocks_make_it_harder_by_at_most_16_percent() {
        let p = params();
        let old = target(CompactTarget::from_consensus(BITS));
        for spacing in [0, 1, 20, 40] {
            let next = target(get_next_work_required(&chain(28, spacing, BITS), &p));
            assert!(next < old, "spacing {spacing}");
            assert!(next >= old.mul_div(839, nz(1000)), "spacing {spacing}: {next} vs {old}");
        }
        // Far too fast hits the clamp exactly: 856 / 1020.
        let next = get_next_work_required(&chain(28, 1, BITS), &p);
        assert_eq!(next, old.mul_div(856, nz(1020)).to_compact());
    }

    #[test]
    fn slow_blocks_make_it_easier_by_at_most_32_percent() {
        let p = params();
        let old = target(CompactTarget::from_consensus(BITS));
        for spacing in [80, 120, 600, 100_000] {
            let next = target(get_next_work_required(&chain(28, spacing, BITS), &p));
            assert!(next > old, "spacing {spacing}");
            assert!(next <= old.mul_div(132, nz(100)), "spacing {spacing}");
        }
        let next = get_next_work_required(&chain(28, 600, BITS), &p);
        assert_eq!(next, old.mul_div(1346, nz(1020)).to_compact());
    }

    #[test]
    fn never_easier_than_the_pow_limit() {
        let p = params();
        let next = get_next_work_required(&chain(28, 600, LIMIT_BITS), &p);
        assert_eq!(next, CompactTarget::from_consensus(LIMIT_BITS));
        // Even if ancestors claim easier (invalid) bits.
        let next = get_next_work_required(&chain(28, 600, 0x2100_ffff), &p);
        assert_eq!(next, CompactTarget::from_consensus(LIMIT_BITS));
    }

    #[test]
    fn the_hardest_target_stays_decodable() {
        let p = params();
        let next = get_next_work_required(&chain(28, 0, 0x0101_0000), &p);
        assert_eq!(next.to_target(), Ok(Target::ONE));
    }

    #[test]
    fn one_lying_timestamp_moves_the_median_by_at_most_one_block() {
        let p = params();
        let mut history = chain(28, 60, BITS);
        // A time far in the future (a time-warp attempt) does not move the median.
        history[27].0 = u32::MAX;
        assert_eq!(get_next_work_required(&history, &p), CompactTarget::from_consensus(BITS));
        // A time far in the past moves the parent's median back by one block:
        // actual 960, damped 1020 + (-60 / 4) = 1005.
        history[27].0 = 0;
        let expected = target(CompactTarget::from_consensus(BITS)).mul_div(1005, nz(1020));
        assert_eq!(get_next_work_required(&history, &p), expected.to_compact());
    }

    #[test]
    fn not_enough_history_gives_the_pow_limit() {
        let p = params();
        let limit = CompactTarget::from_consensus(LIMIT_BITS);
        assert_eq!(get_next_work_required(&[], &p), limit);
        for count in 1..28 {
            assert_eq!(get_next_work_required(&chain(count, 1, BITS), &p), limit, "{count}");
        }
        assert_ne!(get_next_work_required(&chain(28, 1, BITS), &p), limit);
    }

    #[test]
    fn no_retargeting_keeps_the_parents_bits() {
        let p = Params { pow_no_retargeting: true, ..params() };
        let mut history = chain(40, 1, BITS);
        history[39].1 = CompactTarget::from_consensus(0x1c7f_0000);
        assert_eq!(
            get_next_work_required(&history, &p),
            CompactTarget::from_consensus(0x1c7f_0000)
        );
        assert_eq!(
            get_next_work_required(&history[39..], &p),
            CompactTarget::from_consensus(0x1c7f_0000)
        );
        assert_eq!(get_next_work_required(&[], &p), CompactTarget::from_consensus(LIMIT_BITS));
    }

    /// Bits of a random target at most the limit, of any magnitude.
    fn arb_bits() -> impl Strategy<Value = CompactTarget> {
        (any::<u64>(), 0u32..63).prop_map(|(fraction, shift)| {
            let limit = params().pow_limit;
            let t = limit.mul_div(fraction, nz(u64::MAX)).mul_div(1, nz(1 << shift));
            t.max(Target::ONE).to_compact()
        })
    }

    proptest! {
        #[test]
        fn retarget_stays_within_the_clamps(
            history in prop::collection::vec(
                (
                    // Any time, loosely spread times, and times close enough to the
                    // schedule that the clamps often do not bind; never sorted.
                    prop_oneof![
                        any::<u32>(),
                        1_800_000_000u32..1_800_100_000,
                        1_800_000_000u32..1_800_002_000,
                    ],
                    arb_bits(),
                ),
                0..40,
            ),
        ) {
            let p = params();
            let next = get_next_work_required(&history, &p);
            let decoded = next.to_target();
            prop_assert!(decoded.is_ok(), "{next:?} decodes");
            let decoded = decoded.expect("checked above");
            prop_assert!(decoded <= p.pow_limit);
            if history.len() >= 28 {
                let recent = &history[history.len() - 17..];
                let average = Target::mean(recent.iter().map(|&(_, b)| target(b)))
                    .expect("17 targets");
                let low = average.mul_div(856, nz(1020)).min(p.pow_limit).max(Target::ONE);
                let high = average.mul_div(1346, nz(1020)).min(p.pow_limit);
                prop_assert!(decoded <= high, "{decoded} above {high}");
                // Compact encoding keeps at least 16 significant bits, rounding down.
                let floor = low.mul_div(32767, nz(32768));
                prop_assert!(decoded >= floor, "{decoded} below {floor}");
            } else {
                prop_assert_eq!(next, p.pow_limit.to_compact());
            }
        }
    }
}
