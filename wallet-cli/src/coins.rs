//! Coin selection, fees and the amounts a user types.
//!
//! Owns the pure part of `send`: parsing the amount exactly, choosing which
//! coins to spend, and sizing the fee and the change. Sizes come from
//! [`Transaction::size`] of the transaction being built: every input and output
//! has a fixed width in the canonical encoding, so the unsigned transaction is
//! exactly as large as the signed one. No I/O.
//!
//! Selection first looks for coins that pay the amount and fee with no change,
//! wasting least (branch and bound over confirmed coins, as Bitcoin Core's and BDK's
//! `SelectCoinsBnB`: an excess below the cost of a change output goes to the fee);
//! failing that, it takes the largest coins first and makes change.

use tinychain_protocol::amount::{Amount, ParseAmountError};
use tinychain_protocol::validation::MAX_TX_SIZE;
use tinychain_protocol::{OutPoint, PubkeyHash, Transaction, TxOut};

/// The highest fee `send` pays: one coin. A larger fee is almost surely a typo in `--fee-rate`.
pub(crate) const MAX_FEE: Amount = Amount::ONE_COIN;

/// The default fee rate in belushis per byte: the node's minimum relay fee rate.
pub(crate) const DEFAULT_FEE_RATE: u64 = 1;

/// The fee rate the wallet expects to pay in the long run, belushis per byte: what
/// spending an input later would cost (Core's `-consolidatefeerate`, here the minimum).
const LONG_TERM_FEE_RATE: u64 = DEFAULT_FEE_RATE;

/// Branch and bound gives up after this many steps (Core's `TOTAL_TRIES`).
const BNB_TRIES: usize = 100_000;

/// How the coins were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// An exact match (within the cost of a change output) with least waste: no change.
    BranchAndBound,
    /// Largest coins first, with change if worth it.
    LargestFirst,
}

impl Method {
    /// Returns its name as `send` reports it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::BranchAndBound => "branch and bound (no change needed)",
            Method::LargestFirst => "largest first",
        }
    }
}

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
    /// How the coins were chosen.
    pub(crate) method: Method,
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

/// Bytes of one input in the canonical encoding.
fn input_size() -> u64 {
    tx_size(1, 0) - tx_size(0, 0)
}

/// What a change output costs: its bytes now at `fee_rate`, and spending it later.
pub(crate) fn cost_of_change(fee_rate: u64) -> Amount {
    let output = tx_size(0, 1) - tx_size(0, 0);
    Amount::from_belushis(
        output.saturating_mul(fee_rate).saturating_add(dust_limit(fee_rate).to_belushis()),
    )
}

fn fee_for(size: u64, fee_rate: u64) -> Result<Amount, SelectError> {
    size.checked_mul(fee_rate)
        .map(Amount::from_belushis)
        .filter(|f| f.is_money_range())
        .ok_or(SelectError::FeeOverflow(fee_rate))
}

/// Chooses coins to pay `amount` at `fee_rate` belushis per byte.
///
/// First [`branch_and_bound`] over the confirmed coins; failing that,
/// [`largest_first`] over all of them.
///
/// # Errors
///
/// See [`SelectError`].
pub(crate) fn select(
    candidates: &[Candidate],
    amount: Amount,
    fee_rate: u64,
) -> Result<Plan, SelectError> {
    let confirmed: Vec<Candidate> = candidates.iter().filter(|c| c.confirmed).copied().collect();
    match branch_and_bound(&confirmed, amount, fee_rate) {
        Some(plan) => Ok(plan),
        None => largest_first(candidates, amount, fee_rate),
    }
}

/// A coin's value less what its input costs at `fee_rate`; `None` if it costs more.
fn effective_value(coin: &Candidate, fee_rate: u64) -> Option<u64> {
    coin.output
        .value
        .to_belushis()
        .checked_sub(input_size().saturating_mul(fee_rate))
        .filter(|v| *v > 0)
}

/// Finds coins whose effective values cover the amount and the fee of a transaction
/// with no change output, with an excess of at most [`cost_of_change`], and among
/// those the one wasting least (the excess, plus what the inputs cost above the
/// long-term fee rate). A depth-first search over the coins, largest first, that
/// gives up after [`BNB_TRIES`] steps; `None` if it finds nothing.
pub(crate) fn branch_and_bound(
    candidates: &[Candidate],
    amount: Amount,
    fee_rate: u64,
) -> Option<Plan> {
    let mut coins: Vec<(u64, Candidate)> =
        candidates.iter().filter_map(|c| effective_value(c, fee_rate).map(|v| (v, *c))).collect();
    coins.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.outpoint.cmp(&b.1.outpoint)));
    coins.dedup_by_key(|c| c.1.outpoint);
    let target = amount.to_belushis().checked_add(tx_size(0, 1).checked_mul(fee_rate)?)?;
    let upper = target.checked_add(cost_of_change(fee_rate).to_belushis())?;
    let max_inputs = (MAX_TX_SIZE - tx_size(0, 1)) / input_size();
    // Spending an input now costs this much more (or less) than it would in the long run.
    let input_waste =
        i128::from(input_size()) * (i128::from(fee_rate) - i128::from(LONG_TERM_FEE_RATE));
    let mut available: u64 = coins.iter().map(|c| c.0).sum();
    let mut chosen: Vec<bool> = Vec::with_capacity(coins.len());
    let (mut value, mut count) = (0u64, 0usize);
    let mut best: Option<(i128, Vec<bool>)> = None;
    for _ in 0..BNB_TRIES {
        let waste_so_far = count as i128 * input_waste;
        let backtrack = if value.saturating_add(available) < target
            || value > upper
            || count as u64 > max_inputs
            || best.as_ref().is_some_and(|(w, _)| waste_so_far > *w && input_waste > 0)
        {
            true
        } else if value >= target {
            let waste = waste_so_far + i128::from(value - target);
            if best.as_ref().is_none_or(|(w, _)| waste <= *w) {
                best = Some((waste, chosen.clone()));
            }
            true
        } else {
            chosen.len() == coins.len()
        };
        if backtrack {
            // Undecide the trailing left-out coins, then leave out the last chosen one.
            while chosen.last() == Some(&false) {
                chosen.pop();
                available += coins[chosen.len()].0;
            }
            let Some(last) = chosen.last_mut() else { break };
            *last = false;
            value -= coins[chosen.len() - 1].0;
            count -= 1;
        } else {
            let (v, _) = coins[chosen.len()];
            available -= v;
            // A coin worth the same as one just left out would only repeat that branch.
            let same_as_left_out = chosen.last() == Some(&false) && coins[chosen.len() - 1].0 == v;
            chosen.push(!same_as_left_out);
            if !same_as_left_out {
                value += v;
                count += 1;
            }
        }
    }
    let (_, picked) = best?;
    let inputs: Vec<Candidate> =
        coins.iter().zip(&picked).filter(|(_, chosen)| **chosen).map(|(c, _)| c.1).collect();
    let total: u64 = inputs.iter().map(|c| c.output.value.to_belushis()).sum();
    let size = tx_size(inputs.len(), 1);
    let fee = total.checked_sub(amount.to_belushis())?;
    let excess = fee.checked_sub(size.checked_mul(fee_rate)?)?;
    Some(Plan {
        inputs,
        fee: Amount::from_belushis(fee),
        change: Amount::ZERO,
        dust_to_fee: Amount::from_belushis(excess),
        size,
        method: Method::BranchAndBound,
    })
}

/// Chooses coins largest first to pay `amount` at `fee_rate` belushis per byte,
/// with change if worth it.
///
/// Confirmed coins come first, then the wallet's own unconfirmed change; within each,
/// larger coins first (fewer inputs, smaller fee), ties broken by outpoint so the
/// choice is deterministic. A change below [`dust_limit`] is added to the fee.
///
/// # Errors
///
/// See [`SelectError`].
pub(crate) fn largest_first(
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
                method: Method::LargestFirst,
            },
            None => Plan {
                inputs,
                fee: total.checked_sub(amount).unwrap_or(Amount::ZERO),
                change: Amount::ZERO,
                dust_to_fee: surplus,
                size: one_out,
                method: Method::LargestFirst,
            },
        });
    }
    let needed = amount
        .checked_add(fee_for(tx_size(ordered.len().max(1), 1), fee_rate)?)
        .unwrap_or(Amount::MAX_MONEY);
    Err(SelectError::InsufficientFunds { available: total, needed })
}

/// What a BIP125 replacement must add per byte of itself (the node's incremental relay fee rate).
pub(crate) const INCREMENTAL_FEE_RATE: u64 = 1;

/// The least whole fee rate at which a transaction of `size` bytes replaces one paying
/// `old_fee` with the same size: the old fee plus the incremental relay fee for its
/// bytes (BIP125 rule 4), per byte, rounded up.
pub(crate) fn min_replacement_rate(old_fee: Amount, size: u64) -> u64 {
    old_fee
        .to_belushis()
        .saturating_add(INCREMENTAL_FEE_RATE.saturating_mul(size))
        .div_ceil(size.max(1))
}

/// A replacement's outputs and fee (see [`replace_fee`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replacement {
    /// The transaction, unsigned: the original's inputs, its outputs with less change.
    pub(crate) tx: Transaction,
    /// Its fee.
    pub(crate) fee: Amount,
    /// Its change (zero: the change output was dropped).
    pub(crate) change: Amount,
}

/// Builds the replacement of `tx` (which spends `inputs_total` and paid `old_fee`) at
/// `fee_rate`: the change output `change_vout` pays the higher fee; when what is left
/// would be dust, it is dropped and all the rest is the fee. `None` if even that does
/// not pay the rate and BIP125's minimum.
pub(crate) fn replace_fee(
    tx: &Transaction,
    inputs_total: Amount,
    old_fee: Amount,
    change_vout: usize,
    fee_rate: u64,
) -> Option<Replacement> {
    let mut tx = tx.clone();
    let others = Amount::checked_sum(
        tx.outputs.iter().enumerate().filter(|(v, _)| *v != change_vout).map(|(_, o)| o.value),
    )?;
    let available = inputs_total.checked_sub(others)?;
    let fee = Amount::from_belushis(tx.size().checked_mul(fee_rate)?);
    if let Some(change) = available.checked_sub(fee).filter(|c| *c >= dust_limit(fee_rate)) {
        tx.outputs.get_mut(change_vout)?.value = change;
        return Some(Replacement { tx, fee, change });
    }
    if change_vout >= tx.outputs.len() {
        return None;
    }
    tx.outputs.remove(change_vout);
    let size = tx.size();
    let needed = size
        .saturating_mul(fee_rate)
        .max(old_fee.to_belushis().saturating_add(INCREMENTAL_FEE_RATE.saturating_mul(size)));
    (available.to_belushis() >= needed).then_some(Replacement {
        tx,
        fee: available,
        change: Amount::ZERO,
    })
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
        assert_eq!(plan.method, Method::BranchAndBound);
        // Largest first, on an unconfirmed coin, drops such a change too.
        let plan =
            select(&[coin(1, exact, false)], Amount::from_belushis(amount), 1).expect("enough");
        assert_eq!(
            (plan.method, plan.dust_to_fee),
            (Method::LargestFirst, Amount::from_belushis(100))
        );
    }

    #[test]
    fn branch_and_bound_finds_the_exact_match_largest_first_would_miss() {
        // 7 coins: paying 6 + fee exactly takes the 4 and the 2, no change; largest
        // first would take the 7 and make change.
        let fee = tx_size(2, 1);
        let coins = [coin(1, 7 * COIN, true), coin(2, 4 * COIN, true), coin(3, 2 * COIN, true)];
        let amount = Amount::from_belushis(6 * COIN - fee);
        let plan = select(&coins, amount, 1).expect("enough");
        assert_eq!(plan.method, Method::BranchAndBound);
        let chosen: Vec<u8> =
            plan.inputs.iter().map(|c| c.outpoint.txid.to_byte_array()[0]).collect();
        assert_eq!(chosen, vec![2, 3]);
        assert_eq!(
            (plan.change, plan.dust_to_fee, plan.fee),
            (Amount::ZERO, Amount::ZERO, Amount::from_belushis(fee))
        );
        // Nothing within the cost of a change output: largest first with change.
        let plan = select(&coins, Amount::from_belushis(5 * COIN), 1).expect("enough");
        assert_eq!(plan.method, Method::LargestFirst);
        assert!(plan.change > Amount::ZERO);
        assert_eq!(cost_of_change(2), Amount::from_belushis(28 * 2 + 137 * 2));
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

    #[test]
    fn a_replacement_takes_its_fee_from_the_change() {
        let spent = coin(1, 10 * COIN, true);
        let pay = TxOut {
            value: Amount::from_belushis(4 * COIN),
            pubkey_hash: PubkeyHash::from_byte_array([9; 20]),
        };
        let size = tx_size(1, 2);
        let old_fee = size;
        let change = TxOut {
            value: Amount::from_belushis(6 * COIN - old_fee),
            pubkey_hash: PubkeyHash::from_byte_array([1; 20]),
        };
        let tx = Transaction::spending([spent.outpoint], vec![pay, change]);
        // 217 bytes that paid 217: at least (217 + 217) / 217 = 2 per byte replaces it.
        assert_eq!(min_replacement_rate(Amount::from_belushis(old_fee), size), 2);
        assert_eq!(min_replacement_rate(Amount::from_belushis(old_fee + 1), size), 3);
        let total = Amount::from_belushis(10 * COIN);
        let bumped =
            replace_fee(&tx, total, Amount::from_belushis(old_fee), 1, 5).expect("enough change");
        assert_eq!(bumped.fee, Amount::from_belushis(5 * size));
        assert_eq!(bumped.change, Amount::from_belushis(6 * COIN - 5 * size));
        assert_eq!(bumped.tx.outputs[0], pay, "the payment is unchanged");
        assert_eq!(bumped.tx.inputs, tx.inputs);
        // A change that would be dust is dropped: the rest is the fee.
        let small = TxOut { value: Amount::from_belushis(300 + old_fee), ..change };
        let tight = Transaction::spending([spent.outpoint], vec![pay, small]);
        let total = Amount::from_belushis(4 * COIN + 300 + 2 * old_fee);
        // At 3 per byte, 300 + 434 - 651 = 83 would be left: dust at that rate.
        let bumped =
            replace_fee(&tight, total, Amount::from_belushis(old_fee), 1, 3).expect("enough");
        assert_eq!((bumped.change, bumped.tx.outputs.len()), (Amount::ZERO, 1));
        assert_eq!(bumped.fee, Amount::from_belushis(300 + 2 * old_fee));
        // Not even all of it pays 100 per byte.
        assert_eq!(replace_fee(&tight, total, Amount::from_belushis(old_fee), 1, 100), None);
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
                    // No change worth an output is lost to the fee.
                    prop_assert!(plan.change > Amount::ZERO || plan.dust_to_fee <= cost_of_change(fee_rate));
                    if plan.method == Method::BranchAndBound {
                        prop_assert!(plan.inputs.iter().all(|c| c.confirmed));
                        prop_assert_eq!(plan.change, Amount::ZERO);
                    }
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

        #[test]
        fn an_exact_match_is_found_with_nothing_wasted(
            values in proptest::collection::vec(10_000u64..=10 * COIN, 1..12),
            pick in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let coins: Vec<Candidate> =
                (0u8..).zip(&values).map(|(i, v)| coin(i, *v, true)).collect();
            let subset: Vec<&Candidate> =
                coins.iter().zip(&pick).filter(|(_, p)| **p).map(|(c, _)| c).collect();
            prop_assume!(!subset.is_empty());
            // Pay exactly what the subset holds less the fee of spending it with no change.
            let total: u64 = subset.iter().map(|c| c.output.value.to_belushis()).sum();
            let amount = total - tx_size(subset.len(), 1);
            let plan = branch_and_bound(&coins, Amount::from_belushis(amount), 1);
            let plan = plan.expect("the subset is an exact match");
            prop_assert_eq!(plan.dust_to_fee, Amount::ZERO);
            let spent: u64 = plan.inputs.iter().map(|c| c.output.value.to_belushis()).sum();
            prop_assert_eq!(spent, amount + plan.fee.to_belushis());
            prop_assert_eq!(plan.fee.to_belushis(), plan.size);
        }
    }
}
