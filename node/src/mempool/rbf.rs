//! Replace-by-fee: when a transaction may take the place of the mempool transactions it
//! conflicts with (BIP125, as Bitcoin Core's `policy/rbf.cpp` applies it).
//!
//! Owns the replacement rules, each a small pure function of the transactions involved
//! and their fees; the mempool gathers the facts (which transactions conflict, their
//! descendants and ancestors) and calls them in BIP125's order. Nothing here changes the
//! pool: a refused replacement leaves every original in place.
//!
//! 1. Every directly conflicting transaction signals replaceability, itself (an input's
//!    sequence below `0xfffffffe`) or by inheritance (an unconfirmed ancestor signals).
//! 2. The replacement adds no unconfirmed input that the originals did not spend from.
//! 3. It pays at least the fees of everything it evicts (the conflicts and their
//!    descendants).
//! 4. The extra fee pays for its own bytes at the incremental relay fee rate.
//! 5. It evicts at most [`MAX_REPLACED`] transactions.
//!
//! Also, as Core does: its fee rate beats each direct conflict's, and it spends no
//! output of a transaction it would evict.

use tinychain_protocol::{Amount, Transaction, Txid};

/// Most transactions (direct conflicts and their descendants) one replacement may evict.
pub const MAX_REPLACED: usize = 100;

/// The highest sequence number that signals replaceability (BIP125's `0xffffffff - 2`).
pub const MAX_SIGNALLING_SEQUENCE: u32 = 0xffff_fffd;

/// Why a replacement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplacementError {
    /// It would evict more than [`MAX_REPLACED`] transactions.
    #[error("it would evict at least {count} transactions, more than the limit of {MAX_REPLACED}")]
    TooManyReplaced {
        /// Transactions it would evict (counting stopped past the limit).
        count: usize,
    },
    /// It spends an output of a transaction it would evict.
    #[error("it spends an output of {0}, which it would evict")]
    SpendsConflicting(Txid),
    /// It spends an unconfirmed output of a transaction the originals did not spend from.
    #[error(
        "it adds an unconfirmed input from {0}, which the transactions it replaces did not spend from (BIP125 rule 2)"
    )]
    NewUnconfirmedInput(Txid),
    /// Its fee rate is not above a direct conflict's.
    #[error(
        "its fee rate of {rate} milli-belushis per byte is not above the {original_rate} of {original}"
    )]
    FeeRateNotHigher {
        /// Its rate, in milli-belushis per byte.
        rate: u64,
        /// The conflict's.
        original_rate: u64,
        /// The conflict.
        original: Txid,
    },
    /// Its fee is below the fees of the transactions it would evict.
    #[error(
        "its fee of {fee} is less than the {originals} the {count} transactions it replaces pay (BIP125 rule 3)"
    )]
    FeeBelowOriginals {
        /// Its fee.
        fee: Amount,
        /// Theirs, together.
        originals: Amount,
        /// How many it would evict.
        count: usize,
    },
    /// The extra fee does not pay for its bytes at the incremental relay fee rate.
    #[error(
        "it pays {extra} more than the transactions it replaces; its {size} bytes at the incremental relay fee rate of {rate} belushis per byte need {needed} more (BIP125 rule 4)"
    )]
    IncrementalFee {
        /// Fee above the originals'.
        extra: Amount,
        /// Its size.
        size: u64,
        /// The incremental relay fee rate, belushis per byte.
        rate: u64,
        /// The extra fee needed.
        needed: Amount,
    },
}

/// Tells whether `tx` signals replaceability itself: an input's sequence is below
/// `0xfffffffe` (BIP125).
pub fn signals(tx: &Transaction) -> bool {
    tx.inputs.iter().any(|i| i.sequence <= MAX_SIGNALLING_SEQUENCE)
}

/// What the mempool knows of one transaction the replacement would evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Original {
    /// Its txid.
    pub txid: Txid,
    /// Its fee.
    pub fee: Amount,
    /// Its fee rate, in milli-belushis per byte.
    pub rate: u64,
    /// Whether it spends the same outputs as the replacement (else it descends from one that does).
    pub direct: bool,
}

/// Checks the fee rules (3, 4 and the fee rate) for a replacement paying `fee` for
/// `size` bytes at `rate` milli-belushis per byte, evicting `originals`.
///
/// # Errors
///
/// The first rule broken.
pub fn check_fees(
    fee: Amount,
    size: u64,
    rate: u64,
    originals: &[Original],
    incremental_rate: u64,
) -> Result<(), ReplacementError> {
    if let Some(higher) = originals.iter().find(|o| o.direct && o.rate >= rate) {
        return Err(ReplacementError::FeeRateNotHigher {
            rate,
            original_rate: higher.rate,
            original: higher.txid,
        });
    }
    let paid = Amount::checked_sum(originals.iter().map(|o| o.fee)).unwrap_or(Amount::MAX_MONEY);
    let Some(extra) = fee.checked_sub(paid) else {
        return Err(ReplacementError::FeeBelowOriginals {
            fee,
            originals: paid,
            count: originals.len(),
        });
    };
    let needed = Amount::from_belushis(size.saturating_mul(incremental_rate));
    if extra < needed {
        return Err(ReplacementError::IncrementalFee {
            extra,
            size,
            rate: incremental_rate,
            needed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tinychain_protocol::OutPoint;

    use super::*;

    fn original(n: u8, fee: u64, rate: u64, direct: bool) -> Original {
        Original {
            txid: Txid::from_byte_array([n; 32]),
            fee: Amount::from_belushis(fee),
            rate,
            direct,
        }
    }

    #[test]
    fn signalling_is_any_sequence_below_0xfffffffe() {
        let mut tx = Transaction::spending([OutPoint::NULL, OutPoint::NULL], Vec::new());
        assert!(!signals(&tx), "final sequences");
        tx.inputs[1].sequence = 0xffff_fffe;
        assert!(!signals(&tx), "0xfffffffe enables locktime only");
        tx.inputs[1].sequence = MAX_SIGNALLING_SEQUENCE;
        assert!(signals(&tx));
        tx.inputs[1].sequence = 0;
        assert!(signals(&tx));
    }

    #[test]
    fn the_fee_rules_are_checked_in_order() {
        // 200 bytes at 2 belushis per byte replacing one transaction of 190 bytes at 1.
        let one = [original(1, 190, 1000, true)];
        assert_eq!(check_fees(Amount::from_belushis(400), 200, 2000, &one, 1), Ok(()));
        assert_eq!(
            check_fees(Amount::from_belushis(400), 200, 1000, &one, 1),
            Err(ReplacementError::FeeRateNotHigher {
                rate: 1000,
                original_rate: 1000,
                original: one[0].txid
            })
        );
        // A descendant's higher rate does not count, but its fee does.
        let two = [original(1, 190, 1000, true), original(2, 300, 5000, false)];
        let err = check_fees(Amount::from_belushis(400), 200, 2000, &two, 1).expect_err("rule 3");
        assert_eq!(
            err,
            ReplacementError::FeeBelowOriginals {
                fee: Amount::from_belushis(400),
                originals: Amount::from_belushis(490),
                count: 2
            }
        );
        assert!(err.to_string().contains("rule 3"), "{err}");
        // Rule 4: 199 extra belushis do not pay for 200 bytes at 1 per byte; 200 do.
        let err = check_fees(Amount::from_belushis(389), 200, 1945, &one, 1).expect_err("rule 4");
        assert!(matches!(err, ReplacementError::IncrementalFee { .. }), "{err:?}");
        assert_eq!(check_fees(Amount::from_belushis(390), 200, 1950, &one, 1), Ok(()));
        assert!(check_fees(Amount::from_belushis(390), 200, 1950, &one, 2).is_err());
    }
}
