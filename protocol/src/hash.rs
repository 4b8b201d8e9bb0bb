//! Hash functions and the hash types of the chain.
//!
//! Owns `sha256d` (SHA-256 applied twice, Bitcoin's `Hash256`) and `hash160`
//! (RIPEMD-160 of SHA-256), and the 32-byte hash newtypes. Like Bitcoin, a 32-byte
//! hash is stored in the byte order the hash function produced it, and displayed
//! (and parsed) byte-reversed, so block hashes with leading zeros show them first.

use std::fmt;
use std::str::FromStr;

use ripemd::Ripemd160;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Returns SHA-256(SHA-256(data)).
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

/// Returns SHA-256(data).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Returns RIPEMD-160(SHA-256(data)), Bitcoin's `Hash160`.
pub fn hash160(data: &[u8]) -> [u8; 20] {
    Ripemd160::digest(Sha256::digest(data)).into()
}

/// An error parsing a hash from its displayed (byte-reversed hex) form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseHashError {
    /// The string is not 64 hex characters.
    #[error("a hash is 64 hex characters, got {0}")]
    Length(usize),
    /// The string has a character that is not hex.
    #[error("a hash must be hex: {0}")]
    Hex(#[from] hex::FromHexError),
}

macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        pub struct $name([u8; 32]);

        impl $name {
            /// The all-zero hash.
            pub const ZERO: Self = Self([0; 32]);

            /// Wraps 32 bytes in internal (hash output) order.
            pub const fn from_byte_array(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// Returns the 32 bytes in internal (hash output) order.
            pub const fn to_byte_array(self) -> [u8; 32] {
                self.0
            }

            /// Borrows the 32 bytes in internal (hash output) order.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Returns the sha256d of `data` as this hash type.
            pub fn hash(data: &[u8]) -> Self {
                Self(sha256d(data))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut reversed = self.0;
                reversed.reverse();
                f.write_str(&hex::encode(reversed))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseHashError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 64 {
                    return Err(ParseHashError::Length(s.len()));
                }
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(s, &mut bytes)?;
                bytes.reverse();
                Ok(Self(bytes))
            }
        }
    };
}

hash_newtype!(
    /// The sha256d of a block's 80-byte header.
    BlockHash
);
hash_newtype!(
    /// The sha256d of a transaction's canonical encoding.
    Txid
);
hash_newtype!(
    /// Any other sha256d value: merkle nodes, signature hashes.
    Hash256
);

/// The 20-byte `hash160` of a compressed public key: what a P2PKH output pays to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct PubkeyHash([u8; 20]);

impl PubkeyHash {
    /// Wraps 20 bytes.
    pub const fn from_byte_array(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// Returns the 20 bytes.
    pub const fn to_byte_array(self) -> [u8; 20] {
        self.0
    }

    /// Returns the `hash160` of `pubkey` (a 33-byte compressed public key).
    pub fn of_pubkey(pubkey: &[u8; 33]) -> Self {
        Self(hash160(pubkey))
    }
}

impl fmt::Debug for PubkeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PubkeyHash({})", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256d_of_empty_matches_known_vector() {
        assert_eq!(
            hex::encode(sha256d(b"")),
            "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
        );
    }

    #[test]
    fn hash160_matches_known_vector() {
        // hash160 of the compressed generator point (private key 1), a widely published vector.
        let pubkey =
            hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .expect("valid hex literal");
        assert_eq!(hex::encode(hash160(&pubkey)), "751e76e8199196d454941c45d1b3a323f1433bd6");
    }

    #[test]
    fn display_is_byte_reversed_and_parses_back() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0x6f;
        bytes[31] = 0x01;
        let hash = BlockHash::from_byte_array(bytes);
        let shown = hash.to_string();
        assert!(shown.starts_with("01"));
        assert!(shown.ends_with("6f"));
        assert_eq!(shown.parse::<BlockHash>(), Ok(hash));
    }

    #[test]
    fn parse_rejects_bad_length_and_bad_hex() {
        assert_eq!("abcd".parse::<Txid>(), Err(ParseHashError::Length(4)));
        assert!(matches!("zz".repeat(32).parse::<Txid>(), Err(ParseHashError::Hex(_))));
    }
}
