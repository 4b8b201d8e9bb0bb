//! A digest of the UTXO set that can be updated one coin at a time.
//!
//! Owns [`UtxoDigest`]: the sum modulo 2^256 of sha256(outpoint ‖ coin) over
//! every unspent output. Addition is commutative, so the digest depends only on
//! the set, not on the order coins were added or removed: two nodes on the same
//! tip have the same digest, and a node can check its stored digest against its
//! stored coins at start-up. It is a consistency check, not a commitment that
//! resists an adversary choosing coins (that would need MuHash).

use std::fmt;

use ruint::aliases::U256;
use serde::{Deserialize, Serialize};
use tinychain_protocol::OutPoint;
use tinychain_protocol::hash::sha256;
use tinychain_protocol::validation::Coin;

/// The order-independent digest of a set of unspent outputs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct UtxoDigest([u8; 32]);

impl UtxoDigest {
    /// The digest of the empty set.
    pub const EMPTY: UtxoDigest = UtxoDigest([0; 32]);

    fn element(outpoint: &OutPoint, coin: &Coin) -> U256 {
        // The canonical encoding of (outpoint, coin), built without allocating: a
        // block may add tens of thousands.
        let mut bytes = [0u8; 69];
        bytes[..36].copy_from_slice(&outpoint.to_bytes());
        bytes[36..].copy_from_slice(&coin.to_bytes());
        U256::from_be_bytes(sha256(&bytes))
    }

    fn value(self) -> U256 {
        U256::from_be_bytes(self.0)
    }

    /// Returns the digest with `coin` added.
    #[must_use]
    pub fn add(self, outpoint: &OutPoint, coin: &Coin) -> UtxoDigest {
        UtxoDigest(self.value().wrapping_add(Self::element(outpoint, coin)).to_be_bytes())
    }

    /// Returns the digest with `coin` removed.
    #[must_use]
    pub fn remove(self, outpoint: &OutPoint, coin: &Coin) -> UtxoDigest {
        UtxoDigest(self.value().wrapping_sub(Self::element(outpoint, coin)).to_be_bytes())
    }
}

impl fmt::Display for UtxoDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for UtxoDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UtxoDigest({self})")
    }
}

#[cfg(test)]
mod tests {
    use tinychain_protocol::encode;
    use tinychain_protocol::{Amount, PubkeyHash, TxOut, Txid};

    use super::*;

    fn coin(i: u8) -> (OutPoint, Coin) {
        (
            OutPoint { txid: Txid::from_byte_array([i; 32]), vout: u32::from(i) },
            Coin {
                output: TxOut {
                    value: Amount::from_belushis(u64::from(i)),
                    pubkey_hash: PubkeyHash::from_byte_array([i; 20]),
                },
                height: u32::from(i),
                is_coinbase: i.is_multiple_of(2),
            },
        )
    }

    #[test]
    fn order_does_not_matter_and_removal_undoes_addition() {
        let (a, b, c) = (coin(1), coin(2), coin(3));
        let abc = UtxoDigest::EMPTY.add(&a.0, &a.1).add(&b.0, &b.1).add(&c.0, &c.1);
        let cba = UtxoDigest::EMPTY.add(&c.0, &c.1).add(&b.0, &b.1).add(&a.0, &a.1);
        assert_eq!(abc, cba);
        let ac = abc.remove(&b.0, &b.1);
        assert_eq!(ac, UtxoDigest::EMPTY.add(&a.0, &a.1).add(&c.0, &c.1));
        assert_ne!(ac, abc);
        assert_eq!(ac.remove(&a.0, &a.1).remove(&c.0, &c.1), UtxoDigest::EMPTY);
    }

    /// Digests already stored with a tip stay valid: one coin's element is still
    /// the sha256 of its canonical encoding.
    #[test]
    fn a_coins_element_is_the_hash_of_its_canonical_encoding() {
        let (op, coin) = coin(5);
        let expected = sha256(&encode::serialize(&(op, coin)));
        assert_eq!(UtxoDigest::EMPTY.add(&op, &coin).0, expected);
    }
}
