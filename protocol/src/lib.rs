//! tinychain consensus: everything two nodes must agree on, byte for byte.
//!
//! This crate is pure: no networking, files, clock or randomness. Time and
//! randomness are passed in. It owns the consensus types and their one canonical
//! encoding ([`encode`]), hashing, proof of work, merkle roots, keys and
//! addresses, signatures, network parameters, difficulty and validation.
//! `docs/protocol.md` specifies all of it for other implementations.

pub mod amount;
pub mod block;
pub mod compact;
pub mod difficulty;
pub mod encode;
pub mod hash;
pub mod keys;
pub mod merkle;
pub mod params;
pub mod pow;
pub mod sighash;
pub mod transaction;
pub mod validation;

pub use amount::Amount;
pub use block::{Block, BlockHeader};
pub use compact::CompactBlock;
pub use hash::{BlockHash, Hash256, PubkeyHash, Txid};
pub use transaction::{OutPoint, Transaction, TxIn, TxOut};
