//! Network parameters for `main`, `test` and `regtest`.

/// The largest canonical encoding of a block, in bytes (Bitcoin's legacy 1 MB limit).
pub const MAX_BLOCK_SIZE: u64 = 1_000_000;
