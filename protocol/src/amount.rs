//! Amounts of money, in belushis.
//!
//! Owns the `Amount` newtype and the exact conversion between coins written
//! as decimal strings ("12.5", "0.00000001") and belushis (1 coin = 10^8 belushis,
//! tinychain's name for the satoshi). Arithmetic is checked: nothing here wraps,
//! saturates or rounds. Whether an amount is within `0..=MAX_MONEY` is a consensus
//! rule checked by validation ([`Amount::is_money_range`]), not by construction,
//! so that a peer's out-of-range value can be decoded and then rejected with a reason.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A number of belushis.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(u64);

/// Belushis in one coin.
pub const COIN: u64 = 100_000_000;

impl Amount {
    /// Zero belushis.
    pub const ZERO: Amount = Amount(0);
    /// One coin.
    pub const ONE_COIN: Amount = Amount(COIN);
    /// All the money there will ever be: 21,000,000 coins (Bitcoin Core's `MAX_MONEY`).
    pub const MAX_MONEY: Amount = Amount(21_000_000 * COIN);

    /// Makes an amount of `belushis`.
    pub const fn from_belushis(belushis: u64) -> Amount {
        Amount(belushis)
    }

    /// Makes an amount of whole `coins`, or `None` if it overflows.
    pub const fn from_coins(coins: u64) -> Option<Amount> {
        match coins.checked_mul(COIN) {
            Some(b) => Some(Amount(b)),
            None => None,
        }
    }

    /// Returns the number of belushis.
    pub const fn to_belushis(self) -> u64 {
        self.0
    }

    /// Tells whether the amount is within `0..=MAX_MONEY` (Bitcoin Core's `MoneyRange`).
    pub const fn is_money_range(self) -> bool {
        self.0 <= Self::MAX_MONEY.0
    }

    /// Adds, or returns `None` on overflow.
    pub const fn checked_add(self, other: Amount) -> Option<Amount> {
        match self.0.checked_add(other.0) {
            Some(b) => Some(Amount(b)),
            None => None,
        }
    }

    /// Subtracts, or returns `None` if `other` is larger.
    pub const fn checked_sub(self, other: Amount) -> Option<Amount> {
        match self.0.checked_sub(other.0) {
            Some(b) => Some(Amount(b)),
            None => None,
        }
    }

    /// Multiplies by an integer, or returns `None` on overflow.
    pub const fn checked_mul(self, factor: u64) -> Option<Amount> {
        match self.0.checked_mul(factor) {
            Some(b) => Some(Amount(b)),
            None => None,
        }
    }

    /// Sums amounts, or returns `None` if the sum overflows or leaves the money range.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(amounts: I) -> Option<Amount> {
        let mut total = Amount::ZERO;
        for a in amounts {
            total = total.checked_add(a)?;
            if !total.is_money_range() {
                return None;
            }
        }
        Some(total)
    }
}

/// An error parsing an amount written in coins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseAmountError {
    /// Nothing to parse.
    #[error("an amount cannot be empty")]
    Empty,
    /// A sign was given; amounts are never negative.
    #[error("an amount cannot have a sign")]
    Signed,
    /// A character other than digits and one decimal point.
    #[error("an amount is digits with at most one decimal point, got {0:?}")]
    InvalidCharacter(char),
    /// More than 8 digits after the decimal point: smaller than one belushi.
    #[error("an amount has at most 8 decimals (1 belushi = 0.00000001)")]
    TooPrecise,
    /// More than `MAX_MONEY`.
    #[error("an amount cannot exceed 21000000 coins")]
    TooLarge,
}

impl FromStr for Amount {
    type Err = ParseAmountError;

    /// Parses coins written in decimal ("1337", "0.5", "12.00000001") exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s == "." {
            return Err(ParseAmountError::Empty);
        }
        if s.starts_with('-') || s.starts_with('+') {
            return Err(ParseAmountError::Signed);
        }
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if let Some(c) = whole.chars().chain(frac.chars()).find(|c| !c.is_ascii_digit()) {
            return Err(ParseAmountError::InvalidCharacter(c));
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 8 {
            return Err(ParseAmountError::TooPrecise);
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > 8 {
            return Err(ParseAmountError::TooLarge);
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| ParseAmountError::TooLarge)?
        };
        let mut frac_belushis: u64 = 0;
        for (i, digit) in frac.bytes().enumerate() {
            frac_belushis += u64::from(digit - b'0') * 10u64.pow(7 - i as u32);
        }
        let amount = whole
            .checked_mul(COIN)
            .and_then(|w| w.checked_add(frac_belushis))
            .map(Amount)
            .ok_or(ParseAmountError::TooLarge)?;
        if !amount.is_money_range() {
            return Err(ParseAmountError::TooLarge);
        }
        Ok(amount)
    }
}

impl fmt::Display for Amount {
    /// Writes the amount in coins with exactly 8 decimals, e.g. `1337.00000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / COIN, self.0 % COIN)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({} belushis)", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exactly() {
        assert_eq!("1337".parse(), Ok(Amount::from_belushis(1337 * COIN)));
        assert_eq!("0.00000001".parse(), Ok(Amount::from_belushis(1)));
        assert_eq!("12.5".parse(), Ok(Amount::from_belushis(1_250_000_000)));
        assert_eq!(".5".parse(), Ok(Amount::from_belushis(50_000_000)));
        assert_eq!("5.".parse(), Ok(Amount::from_belushis(5 * COIN)));
        assert_eq!("0.10000000000".parse(), Ok(Amount::from_belushis(10_000_000)));
        assert_eq!("21000000".parse(), Ok(Amount::MAX_MONEY));
    }

    #[test]
    fn rejects_bad_amounts_with_distinct_reasons() {
        assert_eq!("".parse::<Amount>(), Err(ParseAmountError::Empty));
        assert_eq!("-1".parse::<Amount>(), Err(ParseAmountError::Signed));
        assert_eq!("1e5".parse::<Amount>(), Err(ParseAmountError::InvalidCharacter('e')));
        assert_eq!("1.2.3".parse::<Amount>(), Err(ParseAmountError::InvalidCharacter('.')));
        assert_eq!("0.000000001".parse::<Amount>(), Err(ParseAmountError::TooPrecise));
        assert_eq!("21000000.00000001".parse::<Amount>(), Err(ParseAmountError::TooLarge));
        assert_eq!("99999999999999999999".parse::<Amount>(), Err(ParseAmountError::TooLarge));
    }

    #[test]
    fn checked_arithmetic_never_wraps() {
        let max = Amount::from_belushis(u64::MAX);
        assert_eq!(max.checked_add(Amount::from_belushis(1)), None);
        assert_eq!(Amount::ZERO.checked_sub(Amount::from_belushis(1)), None);
        assert_eq!(Amount::checked_sum([Amount::MAX_MONEY, Amount::from_belushis(1)]), None);
        assert_eq!(
            Amount::checked_sum([Amount::ONE_COIN, Amount::ONE_COIN]),
            Some(Amount::from_belushis(2 * COIN))
        );
    }

    proptest! {
        #[test]
        fn display_parses_back(belushis in 0..=Amount::MAX_MONEY.to_belushis()) {
            let amount = Amount::from_belushis(belushis);
            prop_assert_eq!(amount.to_string().parse::<Amount>(), Ok(amount));
        }
    }
}
