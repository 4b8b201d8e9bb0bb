//! Coin selection, fees and the amounts a user types.
//!
//! Owns the pure part of `send`: parsing the amount exactly, choosing which
//! coins to spend, and sizing the fee and the change. Sizes come from
//! [`Transaction::size`] of the transaction being built: every input and output
//! has a fixed width in the canonical encoding, so the unsigned transaction is
//! exactly as large as the signed one. No I/O.

use tinychain_protocol::amount::{Amount, ParseAmountError};
use tinychain_protocol::validation::MAX_TX_SIZE;
use tinychain_protocol::{OutPoint, PubkeyHash, Transaction, TxOut};

/// The highest fee `send` pays: one coin. A larger fee is almost surely a typo in `--fee-rate`.
pub(crate) const MAX_FEE: Amount = Amount::ONE_COIN;

/// The default fee rate in belushis per byte: the node's minimum relay fee rate.
pub(crate) const DEFAULT_FEE_RATE: u64 = 1;

/// An amount the user typed that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AmountError {
    /// Zero.
    #[error("the amount must be more than zero")]
    Zero,
    /// Not a valid amount in coins.
    #[error("invalid amount {input:?}: {reason}")]
    Coins {
        /// What was typed.
        input: String,
        /// Why it is invalid.
        reason: ParseAmountError,
    },
    /// Not a valid whole number of belushis.
    #[error("invalid amount {0:?}: with --belushis, an amount is a whole number of belushis")]
    Belushis(String),
    /// Above all the money there is.
    #[error("invalid amount {0:?}: more than 21000000 coins")]
    TooLarge(String),
}

/// Parses an amount to send: coins with up to 8 decimals, or whole belushis.
///
/// # Errors
///
/// Zero, negative, malformed, too precise or too large amounts.
pub(crate) fn parse_amount(input: &str, in_belushis: bool) -> Result<Amount, AmountError> {
    let amount = if in_belushis {
        if input.is_empty() || !input.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Belushis(input.to_owned()));
        }
        let belushis: u64 = input.parse().map_err(|_| AmountError::TooLarge(input.to_owned()))?;
        Amount::from_belushis(belushis)
    } else {
        input
            .parse::<Amount>()
            .map_err(|reason| AmountError::Coins { input: input.to_owned(), reason })?
    };
    if !amount.is_money_range() {
        return Err(AmountError::TooLarge(input.to_owned()));
    }
    if amount == Amount::ZERO {
        return Err(AmountError::Zero);
    }
    Ok(amount)
}

/// A coin the wallet may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Where it is.
    pub(crate) outpoint: OutPoint,
    /// What it holds and who may spend it.
    pub(crate) output: TxOut,
    /// Whether it is in a block (else it is the change of the wallet's own pending transaction).
    pub(crate) confirmed: bool,
}

/// What to spend and how: the chosen coins, the fee and the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The coins, in input order.
    pub(crate) inputs: Vec<Candidate>,
    /// The fee.
    pub(crate) fee: Amount,
    /// The change (zero: no change output).
    pub(crate) change: Amount,
    /// The part of the fee that is a change too small to be worth an output.
    pub(crate) dust_to_fee: Amount,
    /// The transaction's size in bytes.
    pub(crate) size: u64,
}

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SelectError {
    /// The coins do not cover the amount and the fee.
    #[error("insufficient funds: {available} spendable, {needed} needed (amount plus fee)")]
    InsufficientFunds {
        /// All spendable coins together.
        available: Amount,
        /// The amount plus the fee of spending all of them.
        needed: Amount,
    },
    /// Enough money, but in too many small coins for one transaction.
    #[error("the transaction would be {size} bytes, above the limit of {MAX_TX_SIZE}: send less")]
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// The fee rate times the size overflows.
    #[error("fee rate {0} belushis per byte is too high")]
    FeeOverflow(u64),
}

/// Size in bytes of a transaction with `inputs` inputs and `outputs` outputs.
pub(crate) fn tx_size(inputs: usize, outputs: usize) -> u64 {
    let out = TxOut { value: Amount::ZERO, pubkey_hash: PubkeyHash::from_byte_array([0; 20]) };
    Transaction::spending(std::iter::repeat_n(OutPoint::NULL, inputs), vec![out; outputs]).size()
}

/// The smallest change worth an output at `fee_rate`: less than it costs to spend it later.
pub(crate) fn dust_limit(fee_rate: u64) -> Amount {
    let input_size = tx_size(1, 0) - tx_size(0, 0);
    Amount::from_belushis(input_size.saturating_mul(fee_rate.max(DEFAULT_FEE_RATE)))
}

fn fee_for(size: u64, fee_rate: u64) -> Result<Amount, SelectError> {
    size.checked_mul(fee_rate)
        .map(Amount::from_belushis)
        .filter(|f| f.is_money_range())
        .ok_or(SelectError::FeeOverflow(fee_rate))
}

/// Chooses coins to pay `amount` at `fee_rate` belushis per byte, with change if worth it.
///
/// Confirmed coins come first, then the wallet's own unconfirmed change; within each,
/// larger coins first (fewer inputs, smaller fee), ties broken by outpoint so the
/// choice is deterministic. A change below [`dust_limit`] is added to the fee.
///
/// # Errors
///
/// See [`SelectError`].
pub(crate) fn select(
    candidates: &[Candidate],
    amount: Amount,
    fee_rate: u64,
) -> Result<Plan, SelectError> {
    let mut ordered = candidates.to_vec();
    ordered.sort_by(|a, b| {
        b.confirmed
            .cmp(&a.confirmed)
            .then(b.output.value.cmp(&a.output.value))
            .then(a.outpoint.cmp(&b.outpoint))
    });
    ordered.dedup_by_key(|c| c.outpoint);
    let dust = dust_limit(fee_rate);
    let mut total = Amount::ZERO;
    for n in 1..=ordered.len() {
        total = total
            .checked_add(ordered[n - 1].output.value)
            .filter(|t| t.is_money_range())
            .unwrap_or(Amount::MAX_MONEY);
        let one_out = tx_size(n, 1);
        if one_out > MAX_TX_SIZE {
            return Err(SelectError::TooLarge { size: one_out });
        }
        let Some(surplus) = amount
            .checked_add(fee_for(one_out, fee_rate)?)
            .and_then(|need| total.checked_sub(need))
        else {
            continue;
        };
        let inputs = ordered[..n].to_vec();
        let two_out = tx_size(n, 2);
        let change = amount
            .checked_add(fee_for(two_out, fee_rate)?)
            .and_then(|need| total.checked_sub(need))
            .filter(|c| *c >= dust);
        return Ok(match change {
            Some(change) => Plan {
                inputs,
                fee: fee_for(two_out, fee_rate)?,
                change,
                dust_to_fee: Amount::ZERO,
                size: two_out,
            },
            None => Plan {
                inputs,
                fee: total.checked_sub(amount).unwrap_or(Amount::ZERO),
                change: Amount::ZERO,
                dust_to_fee: surplus,
                size: one_out,
            },
        });
    }
    let needed = amount
        .checked_add(fee_for(tx_size(ordered.len().max(1), 1), fee_rate)?)
        .unwrap_or(Amount::MAX_MONEY);
    Err(SelectError::InsufficientFunds { available: total, needed })
}

/// Tells why a fee is refused, or `None` if it is acceptable: above [`MAX_FEE`] or above the amount.
pub(crate) fn fee_cap_violation(fee: Amount, amount: Amount) -> Option<String> {
    if fee > MAX_FEE {
        Some(format!("the fee {fee} is above the cap of {MAX_FEE} coins; lower --fee-rate"))
    } else if fee > amount {
        Some(format!(
            "the fee {fee} is more than the amount {amount}; send more or lower --fee-rate"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tinychain_protocol::Txid;
    use tinychain_protocol::amount::COIN;

    use super::*;

    fn coin(n: u8, belushis: u64, confirmed: bool) -> Candidate {
        Candidate {
            outpoint: OutPoint { txid: Txid::from_byte_array([n; 32]), vout: u32::from(n) },
            output: TxOut {
                value: Amount::from_belushis(belushis),
                pubkey_hash: PubkeyHash::from_byte_array([n; 20]),
            },
            confirmed,
        }
    }

    #[test]
    fn sizes_are_fixed_width() {
        assert_eq!(tx_size(1, 1), 24 + 137 + 28);
        assert_eq!(tx_size(2, 2) - tx_size(1, 2), 137);
        assert_eq!(tx_size(1, 2) - tx_size(1, 1), 28);
        assert_eq!(dust_limit(0), Amount::from_belushis(137));
        assert_eq!(dust_limit(3), Amount::from_belushis(411));
    }

    #[test]
    fn amounts_parse_exactly_and_bad_ones_are_refused() {
        assert_eq!(parse_amount("1337", false), Ok(Amount::from_belushis(1337 * COIN)));
        assert_eq!(parse_amount("0.00000001", false), Ok(Amount::from_belushis(1)));
        assert_eq!(parse_amount("1", true), Ok(Amount::from_belushis(1)));
        assert_eq!(parse_amount("0", false), Err(AmountError::Zero));
        assert_eq!(parse_amount("0.00000000", false), Err(AmountError::Zero));
        assert_eq!(parse_amount("0", true), Err(AmountError::Zero));
        assert!(matches!(
            parse_amount("-1", false),
            Err(AmountError::Coins { reason: ParseAmountError::Signed, .. })
        ));
        assert!(matches!(
            parse_amount("0.000000001", false),
            Err(AmountError::Coins { reason: ParseAmountError::TooPrecise, .. })
        ));
        assert!(matches!(parse_amount("21000001", false), Err(AmountError::Coins { .. })));
        assert_eq!(parse_amount("-1", true), Err(AmountError::Belushis("-1".into())));
        assert_eq!(parse_amount("1.5", true), Err(AmountError::Belushis("1.5".into())));
        assert_eq!(parse_amount("", true), Err(AmountError::Belushis(String::new())));
        assert_eq!(
            parse_amount("2100000000000001", true),
            Err(AmountError::TooLarge("2100000000000001".into()))
        );
        assert_eq!(
            parse_amount("99999999999999999999", true),
            Err(AmountError::TooLarge("99999999999999999999".into()))
        );
    }

    #[test]
    fn confirmed_coins_are_spent_before_unconfirmed_change() {
        let coins = [coin(1, 10 * COIN, false), coin(2, 5 * COIN, true), coin(3, 6 * COIN, true)];
        let plan = select(&coins, Amount::from_belushis(7 * COIN), 1).expect("enough");
        let chosen: Vec<u8> =
            plan.inputs.iter().map(|c| c.outpoint.txid.to_byte_array()[0]).collect();
        assert_eq!(chosen, vec![3, 2]);
        assert_eq!(plan.fee, Amount::from_belushis(tx_size(2, 2)));
        assert_eq!(plan.change, Amount::from_belushis(4 * COIN - tx_size(2, 2)));
    }

    #[test]
    fn a_tiny_change_goes_to_the_fee() {
        let amount = 1_000_000;
        let exact = amount + tx_size(1, 1) + 100;
        let plan =
            select(&[coin(1, exact, true)], Amount::from_belushis(amount), 1).expect("enough");
        assert_eq!(plan.change, Amount::ZERO);
        assert_eq!(plan.dust_to_fee, Amount::from_belushis(100));
        assert_eq!(plan.fee, Amount::from_belushis(tx_size(1, 1) + 100));
        assert_eq!(plan.size, tx_size(1, 1));
    }

    #[test]
    fn insufficient_funds_say_how_much() {
        let err =
            select(&[coin(1, COIN, true)], Amount::ONE_COIN, 1).expect_err("short by the fee");
        assert_eq!(
            err,
            SelectError::InsufficientFunds {
                available: Amount::ONE_COIN,
                needed: Amount::from_belushis(COIN + tx_size(1, 1)),
            }
        );
        assert!(select(&[], Amount::ONE_COIN, 1).is_err());
        assert_eq!(
            select(&[coin(1, COIN, true)], Amount::from_belushis(1), u64::MAX),
            Err(SelectError::FeeOverflow(u64::MAX))
        );
    }

    #[test]
    fn fees_above_the_cap_or_the_amount_are_refused() {
        assert!(fee_cap_violation(Amount::from_belushis(200), Amount::ONE_COIN).is_none());
        assert!(fee_cap_violation(Amount::from_belushis(COIN + 1), Amount::MAX_MONEY).is_some());
        assert!(
            fee_cap_violation(Amount::from_belushis(200), Amount::from_belushis(199)).is_some()
        );
    }

    proptest! {
        #[test]
        fn a_plan_balances_and_pays_at_least_the_rate(
            values in proptest::collection::vec((1u64..=50 * COIN, any::<bool>()), 0..40),
            amount in 1u64..=200 * COIN,
            fee_rate in 0u64..=50,
        ) {
            let coins: Vec<Candidate> = (0u8..)
                .zip(&values)
                .map(|(i, (v, confirmed))| coin(i, *v, *confirmed))
                .collect();
            let total: u64 = values.iter().map(|(v, _)| v).sum();
            let amount = Amount::from_belushis(amount);
            match select(&coins, amount, fee_rate) {
                Ok(plan) => {
                    let spent: u64 = plan.inputs.iter().map(|c| c.output.value.to_belushis()).sum();
                    let outputs = if plan.change == Amount::ZERO { 1 } else { 2 };
                    prop_assert_eq!(plan.size, tx_size(plan.inputs.len(), outputs));
                    prop_assert_eq!(
                        spent,
                        amount.to_belushis() + plan.fee.to_belushis() + plan.change.to_belushis()
                    );
                    prop_assert!(plan.fee.to_belushis() >= plan.size * fee_rate);
                    prop_assert_eq!(
                        plan.fee.to_belushis(),
                        plan.size * fee_rate + plan.dust_to_fee.to_belushis()
                    );
                    prop_assert!(plan.change == Amount::ZERO || plan.change >= dust_limit(fee_rate));
                    let mut outpoints: Vec<_> = plan.inputs.iter().map(|c| c.outpoint).collect();
                    outpoints.sort();
                    outpoints.dedup();
                    prop_assert_eq!(outpoints.len(), plan.inputs.len());
                    // Confirmed coins first: no unconfirmed coin before a confirmed one.
                    let first_unconfirmed = plan.inputs.iter().position(|c| !c.confirmed);
                    if let Some(i) = first_unconfirmed {
                        prop_assert!(plan.inputs[i..].iter().all(|c| !c.confirmed));
                    }
                }
                Err(SelectError::InsufficientFunds { available, .. }) => {
                    prop_assert_eq!(available.to_belushis(), total);
                    let all = tx_size(coins.len().max(1), 1) * fee_rate;
                    prop_assert!(total < amount.to_belushis() + all);
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
