//! Proof of work: compact targets, targets, work and chainwork.

use serde::{Deserialize, Serialize};

/// A target in Bitcoin's compact form (`nBits`): a base-256 float with a
/// 1-byte exponent and 3-byte mantissa (the top mantissa bit is a sign).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CompactTarget(u32);

impl CompactTarget {
    /// Wraps the raw `nBits` value.
    pub const fn from_consensus(bits: u32) -> CompactTarget {
        CompactTarget(bits)
    }

    /// Returns the raw `nBits` value.
    pub const fn to_consensus(self) -> u32 {
        self.0
    }
}

/// A 256-bit proof-of-work target (placeholder until the pow module is written).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Target;
