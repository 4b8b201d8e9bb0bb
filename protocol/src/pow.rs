//! Proof of work: compact targets, targets, work and chainwork.
//!
//! Owns the 256-bit arithmetic of proof of work, bit-exact with Bitcoin Core:
//! decoding and encoding `nBits` ([`CompactTarget::to_target`],
//! [`Target::to_compact`]), the hash-meets-target test, the work a target proves
//! ([`Target::to_work`], Core's `GetBlockProof`) and the cumulative [`Work`] of a
//! chain. It also owns [`HeaderHasher`], a midstate SHA-256 of block headers for
//! miners. It does not choose the target a block must use: that is
//! [`crate::difficulty`]. The 256-bit integer type (`ruint`) stays inside: targets
//! and work cross the API as newtypes or 32 big-endian bytes.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use ruint::aliases::{U256, U512};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::block::BlockHeader;
use crate::hash::BlockHash;

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

    /// Decodes the compact form into a full target (Bitcoin Core's
    /// `arith_uint256::SetCompact`), accepting only values usable as a
    /// proof-of-work target.
    ///
    /// The exponent `e = bits >> 24` and 23-bit mantissa `m = bits & 0x007fffff`
    /// give `m >> 8*(3-e)` when `e <= 3` and `m << 8*(e-3)` otherwise.
    ///
    /// # Errors
    ///
    /// - [`PowError::Negative`]: the sign bit `0x00800000` is set and the
    ///   (shifted) mantissa is not zero;
    /// - [`PowError::Overflow`]: the value does not fit in 256 bits;
    /// - [`PowError::Zero`]: the value is zero. Core's `SetCompact` accepts zero,
    ///   but its `CheckProofOfWork` rejects it, and no hash could meet a zero
    ///   target, so here a zero target is never a [`Target`] made from bits.
    ///
    /// A value that is both negative and overflowing is reported as negative.
    pub fn to_target(self) -> Result<Target, PowError> {
        let bits = self.0;
        let size = bits >> 24;
        let mut word = bits & 0x007f_ffff;
        let value = if size <= 3 {
            word >>= 8 * (3 - size);
            U256::from(word)
        } else {
            // A shift past 256 bits is reported as overflow below; wrapping keeps
            // this total without deciding anything.
            U256::from(word).wrapping_shl(8 * (size as usize - 3))
        };
        if word != 0 && bits & 0x0080_0000 != 0 {
            return Err(PowError::Negative { bits });
        }
        let overflow =
            word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
        if overflow {
            return Err(PowError::Overflow { bits });
        }
        if value.is_zero() {
            return Err(PowError::Zero { bits });
        }
        Ok(Target(value))
    }
}

/// Why a header's proof of work is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PowError {
    /// The compact target has its sign bit set with a nonzero mantissa.
    #[error("compact target {bits:#010x} is negative")]
    Negative {
        /// The raw `nBits`.
        bits: u32,
    },
    /// The compact target does not fit in 256 bits.
    #[error("compact target {bits:#010x} overflows 256 bits")]
    Overflow {
        /// The raw `nBits`.
        bits: u32,
    },
    /// The compact target is zero, which no hash can meet.
    #[error("compact target {bits:#010x} is zero")]
    Zero {
        /// The raw `nBits`.
        bits: u32,
    },
    /// The target is easier than the network allows.
    #[error("target {target} is above the pow limit {limit}")]
    AboveLimit {
        /// The decoded target.
        target: Target,
        /// The network's pow limit.
        limit: Target,
    },
    /// The block hash does not meet the target.
    #[error("block hash {hash} is above the target {target}")]
    HashAboveTarget {
        /// The block hash.
        hash: BlockHash,
        /// The decoded target.
        target: Target,
    },
}

/// Checks a block hash against its compact target (Bitcoin Core's
/// `CheckProofOfWork`): the bits decode, the target is at most `pow_limit`, and
/// the hash, read as a 256-bit little-endian integer, is at most the target.
///
/// # Errors
///
/// The first check that fails, as a [`PowError`].
pub fn check_proof_of_work(
    hash: BlockHash,
    bits: CompactTarget,
    pow_limit: &Target,
) -> Result<(), PowError> {
    let target = bits.to_target()?;
    if target > *pow_limit {
        return Err(PowError::AboveLimit { target, limit: *pow_limit });
    }
    if !target.is_met_by(hash) {
        return Err(PowError::HashAboveTarget { hash, target });
    }
    Ok(())
}

/// Returns the 256-bit number a hash stands for in proof of work: its bytes, as
/// the hash function produced them, read little-endian (Core's `UintToArith256`).
fn hash_to_u256(hash: BlockHash) -> U256 {
    U256::from_le_bytes(hash.to_byte_array())
}

/// A 256-bit proof-of-work target: a block hash meets it when, read as a
/// little-endian integer, it is at most the target. A smaller target is harder.
///
/// Serialized as its 32 big-endian bytes; displayed as 64 hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target(U256);

impl Target {
    /// The easiest possible target, 2^256 - 1 (every hash meets it).
    pub const MAX: Target = Target(U256::MAX);

    /// The hardest target that can still be met, 1.
    pub const ONE: Target = Target(U256::ONE);

    /// Reads a target from 32 big-endian bytes.
    pub const fn from_be_bytes(bytes: [u8; 32]) -> Target {
        Target(U256::from_be_bytes(bytes))
    }

    /// Returns the target as 32 big-endian bytes.
    pub const fn to_be_bytes(&self) -> [u8; 32] {
        self.0.to_be_bytes()
    }

    /// Encodes the target in compact form (Bitcoin Core's
    /// `arith_uint256::GetCompact`).
    ///
    /// The mantissa keeps the top 3 significant bytes, truncated (so decoding
    /// gives a target at most this one, and equal when nothing was cut off).
    /// When the mantissa's top bit would be set it is shifted down a byte, so
    /// the result is never negative. A zero target encodes as `0`.
    pub fn to_compact(&self) -> CompactTarget {
        let mut size = self.0.byte_len();
        let mut compact: u32 = if size <= 3 {
            // The value fits in 3 bytes, so this is lossless.
            let low = self.0.as_limbs()[0] as u32;
            low << (8 * (3 - size))
        } else {
            let shifted = self.0 >> (8 * (size - 3));
            // After the shift at most 3 bytes remain.
            shifted.as_limbs()[0] as u32
        };
        if compact & 0x0080_0000 != 0 {
            compact >>= 8;
            size += 1;
        }
        // `size` is at most 33 (32 bytes, plus one after the sign shift).
        CompactTarget(compact | ((size as u32) << 24))
    }

    /// Returns the expected number of hashes needed to meet this target,
    /// 2^256 / (target + 1) rounded down (Bitcoin Core's `GetBlockProof`).
    ///
    /// Computed as Core does, `(~target / (target + 1)) + 1`, in 256-bit
    /// integers. Two values do not fit that formula and are defined here:
    /// [`Target::MAX`] proves work 1 (2^256 / 2^256), and a zero target (which no
    /// decoded bits give, see [`CompactTarget::to_target`]) would need 2^256,
    /// so it saturates to the largest [`Work`].
    pub fn to_work(&self) -> Work {
        if self.0.is_zero() {
            return Work(U256::MAX);
        }
        match self.0.checked_add(U256::ONE) {
            // (~t / (t + 1)) + 1 <= 2^255 for t >= 1, so the addition cannot overflow.
            Some(divisor) => Work((!self.0 / divisor) + U256::ONE),
            None => Work(U256::ONE),
        }
    }

    /// Tells whether `hash`, read as a 256-bit little-endian integer, is at most
    /// this target.
    pub fn is_met_by(&self, hash: BlockHash) -> bool {
        hash_to_u256(hash) <= self.0
    }

    /// Returns `self * mul / div`, rounded down, computed in 512-bit integers so
    /// nothing overflows midway and no precision is lost. A result that does not
    /// fit in 256 bits saturates to [`Target::MAX`].
    pub fn mul_div(&self, mul: u64, div: NonZeroU64) -> Target {
        let product = U512::from(self.0) * U512::from(mul);
        let quotient = product / U512::from(div.get());
        Target(U256::saturating_from(quotient))
    }

    /// Returns the arithmetic mean of `targets`, rounded down, or `None` if there
    /// are none. The sum is kept in 512 bits, so it never overflows.
    pub fn mean(targets: impl IntoIterator<Item = Target>) -> Option<Target> {
        let mut sum = U512::ZERO;
        let mut count = 0u64;
        for target in targets {
            sum += U512::from(target.0);
            count += 1;
        }
        let count = NonZeroU64::new(count)?;
        let mean = sum / U512::from(count.get());
        // The mean of values below 2^256 is below 2^256, so this never saturates.
        Some(Target(U256::saturating_from(mean)))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_be_bytes()))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_be_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <[u8; 32]>::deserialize(deserializer).map(Target::from_be_bytes)
    }
}

/// An amount of proof of work: the expected number of hashes behind a block
/// ([`Target::to_work`]) or a whole chain (its chainwork, Core's `nChainWork`).
///
/// Serialized as its 32 big-endian bytes; displayed as lowercase hex without
/// leading zeros (`0` for zero), the form Bitcoin Core's RPC uses without its
/// padding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Work(U256);

impl Work {
    /// No work.
    pub const ZERO: Work = Work(U256::ZERO);

    /// Makes a work value from an integer.
    pub const fn from_u128(value: u128) -> Work {
        Work(U256::from_limbs([value as u64, (value >> 64) as u64, 0, 0]))
    }

    /// Reads work from 32 big-endian bytes.
    pub const fn from_be_bytes(bytes: [u8; 32]) -> Work {
        Work(U256::from_be_bytes(bytes))
    }

    /// Returns the work as 32 big-endian bytes.
    pub const fn to_be_bytes(&self) -> [u8; 32] {
        self.0.to_be_bytes()
    }

    /// Parses hex digits, without prefix, as [`Work`]'s `Display` writes them
    /// (leading zeros and upper-case digits are accepted too).
    ///
    /// # Errors
    ///
    /// Fails if `s` is empty, longer than 64 digits, or not hex.
    pub fn from_hex(s: &str) -> Result<Work, ParseWorkError> {
        if s.is_empty() || s.len() > 64 {
            return Err(ParseWorkError::Length(s.len()));
        }
        let padded = format!("{s:0>64}");
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(padded, &mut bytes)?;
        Ok(Work::from_be_bytes(bytes))
    }

    /// Returns `self + other`, or `None` on overflow past 2^256 - 1.
    pub fn checked_add(self, other: Work) -> Option<Work> {
        self.0.checked_add(other.0).map(Work)
    }

    /// Returns `self - other`, or `None` if `other` is larger.
    pub fn checked_sub(self, other: Work) -> Option<Work> {
        self.0.checked_sub(other.0).map(Work)
    }

    /// Returns `self * factor`, or `None` on overflow past 2^256 - 1.
    pub fn checked_mul(self, factor: u64) -> Option<Work> {
        self.0.checked_mul(U256::from(factor)).map(Work)
    }

    /// Returns the work as a float, rounded, for display and estimates only
    /// (never for consensus).
    pub fn to_f64(self) -> f64 {
        let (top, shift) = self.0.most_significant_bits();
        // `top` holds the 64 most significant bits; `shift` is at most 192.
        top as f64 * 2f64.powi(shift as i32)
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = hex::encode(self.to_be_bytes());
        let trimmed = digits.trim_start_matches('0');
        f.write_str(if trimmed.is_empty() { "0" } else { trimmed })
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Work(0x{self})")
    }
}

impl FromStr for Work {
    type Err = ParseWorkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Work::from_hex(s)
    }
}

impl Serialize for Work {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_be_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Work {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <[u8; 32]>::deserialize(deserializer).map(Work::from_be_bytes)
    }
}

/// An error parsing [`Work`] from hex.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseWorkError {
    /// The string is empty or has more than 64 digits.
    #[error("work is 1 to 64 hex digits, got {0}")]
    Length(usize),
    /// The string has a character that is not hex.
    #[error("work must be hex: {0}")]
    Hex(#[from] hex::FromHexError),
}

/// SHA-256's initial state (FIPS 180-4, section 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Runs SHA-256's compression function once: folds the 64-byte `block` into
/// `state`. This is the raw building block of [`HeaderHasher`], exposed so
/// benchmarks can measure it; it is not a hash by itself (no padding).
pub fn compress_block(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::block_api::compress256(state, std::slice::from_ref(block));
}

/// Hashes many variants of one block header quickly, for mining.
///
/// A header is 80 bytes, so its first SHA-256 takes two 64-byte blocks. The
/// first (version, previous hash and most of the merkle root) is fixed for a
/// template, so its result (the midstate) is computed once in
/// [`HeaderHasher::new`]. [`HeaderHasher::hash_with`] then does only two
/// compressions: the last 16 header bytes with padding, and the second SHA-256
/// of the 32-byte digest. The result equals [`BlockHeader::block_hash`] of the
/// header with that time and nonce.
#[derive(Clone, Debug)]
pub struct HeaderHasher {
    /// SHA-256 state after the header's first 64 bytes.
    midstate: [u32; 8],
    /// Header bytes 64..80 followed by SHA-256 padding for an 80-byte message.
    tail: [u8; 64],
}

/// Offset of `time` in [`HeaderHasher::tail`] (header byte 68).
/// The second SHA-256 block of sha256d over 32 bytes: room for the digest, then
/// the 0x80 terminator and the message length (256 bits), big-endian.
const SECOND_BLOCK_PADDING: [u8; 64] = {
    let mut block = [0u8; 64];
    block[32] = 0x80;
    block[62] = 0x01; // 256 = 0x0100
    block
};

const TAIL_TIME: usize = 4;
/// Offset of `nonce` in [`HeaderHasher::tail`] (header byte 76).
const TAIL_NONCE: usize = 12;

impl HeaderHasher {
    /// Precomputes the midstate of `header`; its time and nonce are ignored
    /// (they are given to [`HeaderHasher::hash_with`]).
    pub fn new(header: &BlockHeader) -> HeaderHasher {
        let bytes = header.to_bytes();
        let mut first = [0u8; 64];
        first.copy_from_slice(&bytes[..64]);
        let mut midstate = SHA256_IV;
        compress_block(&mut midstate, &first);

        let mut tail = [0u8; 64];
        tail[..16].copy_from_slice(&bytes[64..]);
        tail[16] = 0x80;
        // Message length in bits, big-endian: 80 * 8 = 640.
        tail[56..].copy_from_slice(&(BlockHeader::SIZE as u64 * 8).to_be_bytes());
        HeaderHasher { midstate, tail }
    }

    /// Returns the block hash of the header with `time` and `nonce` in place of
    /// its own.
    pub fn hash_with(&self, time: u32, nonce: u32) -> BlockHash {
        let mut block = self.tail;
        block[TAIL_TIME..TAIL_TIME + 4].copy_from_slice(&time.to_le_bytes());
        hash_from_state(self.second_state(&mut block, nonce))
    }

    /// Returns the first nonce in `nonces` whose header (with `time`) meets
    /// `target`: the miner's inner loop. Equal to searching with
    /// [`HeaderHasher::hash_with`] and [`Target::is_met_by`], but most hashes are
    /// rejected on their most significant 32 bits, which are the last state word
    /// of the second SHA-256, without building the hash at all.
    pub fn find_nonce(
        &self,
        time: u32,
        nonces: std::ops::Range<u32>,
        target: &Target,
    ) -> Option<u32> {
        let limit: u32 = target.0.wrapping_shr(224).to();
        let mut block = self.tail;
        block[TAIL_TIME..TAIL_TIME + 4].copy_from_slice(&time.to_le_bytes());
        nonces.into_iter().find(|&nonce| {
            let state = self.second_state(&mut block, nonce);
            // The hash's bytes 28..32 are `state[7]` big-endian; read little-endian
            // (as targets read hashes) they are its byte swap.
            let top = state[7].swap_bytes();
            top < limit || (top == limit && target.is_met_by(hash_from_state(state)))
        })
    }

    /// Puts `nonce` into `block` (the tail with its time) and returns the state
    /// after the second SHA-256 of sha256d.
    fn second_state(&self, block: &mut [u8; 64], nonce: u32) -> [u32; 8] {
        block[TAIL_NONCE..TAIL_NONCE + 4].copy_from_slice(&nonce.to_le_bytes());
        let mut first = self.midstate;
        compress_block(&mut first, block);

        // Second SHA-256: the 32-byte digest, then constant padding and length.
        let mut second_block = SECOND_BLOCK_PADDING;
        for (chunk, word) in second_block[..32].chunks_exact_mut(4).zip(first) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        let mut second = SHA256_IV;
        compress_block(&mut second, &second_block);
        second
    }
}

/// The digest of a final SHA-256 state: its words big-endian.
fn hash_from_state(state: [u32; 8]) -> BlockHash {
    let mut hash = [0u8; 32];
    for (chunk, word) in hash.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    BlockHash::from_byte_array(hash)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GENESIS_HEADER: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
    const GENESIS_HASH: &str = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";

    fn genesis_header() -> BlockHeader {
        let mut bytes = [0u8; BlockHeader::SIZE];
        hex::decode_to_slice(GENESIS_HEADER, &mut bytes).expect("valid hex literal");
        BlockHeader::from_bytes(&bytes)
    }

    /// Bitcoin's mainnet pow limit, 0xffff << 208.
    fn bitcoin_pow_limit() -> Target {
        Target(U256::from(0xffffu64) << 208)
    }

    fn target_from_hex(s: &str) -> Target {
        Target(U256::from_str_radix(s, 16).expect("valid hex literal"))
    }

    fn bits(b: u32) -> CompactTarget {
        CompactTarget::from_consensus(b)
    }

    #[test]
    fn genesis_vector() {
        let header = genesis_header();
        let hash = header.block_hash();
        assert_eq!(hash.to_string(), GENESIS_HASH);
        assert_eq!(header.bits, bits(0x1d00_ffff));
        let target = header.bits.to_target().expect("genesis bits decode");
        assert_eq!(
            target.to_string(),
            "00000000ffff0000000000000000000000000000000000000000000000000000"
        );
        assert_eq!(target, bitcoin_pow_limit());
        assert!(target.is_met_by(hash));
        assert_eq!(check_proof_of_work(hash, header.bits, &bitcoin_pow_limit()), Ok(()));
        assert_eq!(target.to_work(), Work::from_u128(4_295_032_833));
        assert_eq!(target.to_compact(), header.bits);
    }

    #[test]
    fn set_compact_matches_bitcoin_core_vectors() {
        // From Bitcoin Core's arith_uint256_tests.cpp, `bignum_SetCompact`.
        for zero in [
            0x0000_0000,
            0x0012_3456,
            0x0100_3456,
            0x0200_0056,
            0x0300_0000,
            0x0400_0000,
            0x0092_3456,
            0x0180_3456,
            0x0280_0056,
            0x0380_0000,
            0x0480_0000,
        ] {
            assert_eq!(bits(zero).to_target(), Err(PowError::Zero { bits: zero }), "{zero:#x}");
        }
        let decoded: [(u32, &str, u32); 7] = [
            (0x0112_3456, "12", 0x0112_0000),
            (0x0212_3456, "1234", 0x0212_3400),
            (0x0312_3456, "123456", 0x0312_3456),
            (0x0412_3456, "12345600", 0x0412_3456),
            (0x0500_9234, "92340000", 0x0500_9234),
            (
                0x2012_3456,
                "1234560000000000000000000000000000000000000000000000000000000000",
                0x2012_3456,
            ),
            (0x1d00_ffff, "ffff0000000000000000000000000000000000000000000000000000", 0x1d00_ffff),
        ];
        for (compact, value, back) in decoded {
            let target = bits(compact).to_target().expect("decodes");
            assert_eq!(target, target_from_hex(value), "{compact:#x}");
            assert_eq!(target.to_compact(), bits(back), "{compact:#x}");
        }
        for negative in [0x0492_3456, 0x01fe_dcba, 0x0480_0001] {
            assert_eq!(
                bits(negative).to_target(),
                Err(PowError::Negative { bits: negative }),
                "{negative:#x}"
            );
        }
        for overflow in [0xff12_3456, 0x2301_0000, 0x2200_0100, 0x2101_0000] {
            assert_eq!(
                bits(overflow).to_target(),
                Err(PowError::Overflow { bits: overflow }),
                "{overflow:#x}"
            );
        }
        // The largest values that do not overflow, one per exponent.
        for fits in [0x2200_00ff, 0x2100_ffff, 0x207f_ffff] {
            assert!(bits(fits).to_target().is_ok(), "{fits:#x}");
        }
        // Negative wins over overflow, as Core checks it first.
        assert_eq!(bits(0xff92_3456).to_target(), Err(PowError::Negative { bits: 0xff92_3456 }));
    }

    #[test]
    fn get_compact_never_sets_the_sign_bit() {
        // Core: a value of 0x80 encodes as 0x02008000, not 0x01800000.
        assert_eq!(Target(U256::from(0x80u64)).to_compact(), bits(0x0200_8000));
        assert_eq!(Target(U256::ZERO).to_compact(), bits(0));
        assert_eq!(Target::MAX.to_compact(), bits(0x2100_ffff));
        assert_eq!(Target::ONE.to_compact(), bits(0x0101_0000));
        assert_eq!(bits(0x0101_0000).to_target(), Ok(Target::ONE));
    }

    #[test]
    fn work_edge_cases() {
        assert_eq!(Target::MAX.to_work(), Work::from_u128(1));
        assert_eq!(Target(U256::ZERO).to_work(), Work(U256::MAX));
        assert_eq!(Target::ONE.to_work(), Work(U256::ONE << 255));
        // 2^256 / 2^255 = 2.
        assert_eq!(Target(U256::MAX >> 1).to_work(), Work::from_u128(2));
    }

    #[test]
    fn check_proof_of_work_reports_each_failure() {
        let header = genesis_header();
        let hash = header.block_hash();
        let limit = bitcoin_pow_limit();
        assert_eq!(
            check_proof_of_work(hash, bits(0x0492_3456), &limit),
            Err(PowError::Negative { bits: 0x0492_3456 })
        );
        assert_eq!(
            check_proof_of_work(hash, bits(0xff12_3456), &limit),
            Err(PowError::Overflow { bits: 0xff12_3456 })
        );
        assert_eq!(check_proof_of_work(hash, bits(0), &limit), Err(PowError::Zero { bits: 0 }));
        let easy = bits(0x1d01_0000).to_target().expect("decodes");
        assert_eq!(
            check_proof_of_work(hash, bits(0x1d01_0000), &limit),
            Err(PowError::AboveLimit { target: easy, limit })
        );
        // The genesis hash has 43 leading zero bits; ask for 48.
        let hard = bits(0x1a01_0000).to_target().expect("decodes");
        assert_eq!(
            check_proof_of_work(hash, bits(0x1a01_0000), &limit),
            Err(PowError::HashAboveTarget { hash, target: hard })
        );
    }

    #[test]
    fn is_met_by_reads_the_hash_little_endian_and_is_inclusive() {
        let target = Target(U256::from(0x1234u64));
        let mut bytes = [0u8; 32];
        bytes[0] = 0x34;
        bytes[1] = 0x12;
        assert!(target.is_met_by(BlockHash::from_byte_array(bytes)));
        bytes[0] = 0x35;
        assert!(!target.is_met_by(BlockHash::from_byte_array(bytes)));
        bytes = [0; 32];
        bytes[31] = 1;
        assert!(!target.is_met_by(BlockHash::from_byte_array(bytes)));
        assert!(Target::MAX.is_met_by(BlockHash::from_byte_array([0xff; 32])));
    }

    #[test]
    fn mul_div_and_mean() {
        let ten = NonZeroU64::new(10).expect("nonzero");
        let t = Target(U256::from(1000u64));
        assert_eq!(t.mul_div(3, ten), Target(U256::from(300u64)));
        assert_eq!(Target(U256::from(7u64)).mul_div(1, ten), Target(U256::ZERO));
        // Precision is kept through the product even near the top.
        let big = Target(U256::MAX >> 1);
        assert_eq!(big.mul_div(2, NonZeroU64::new(2).expect("nonzero")), big);
        assert_eq!(Target::MAX.mul_div(2, NonZeroU64::MIN), Target::MAX);
        assert_eq!(Target::mean([]), None);
        assert_eq!(Target::mean([Target::MAX, Target::MAX, Target::MAX]), Some(Target::MAX));
        assert_eq!(
            Target::mean([Target(U256::from(1u64)), Target(U256::from(2u64))]),
            Some(Target(U256::from(1u64)))
        );
    }

    #[test]
    fn work_arithmetic_display_and_parse() {
        let a = Work::from_u128(0x7e1_07e1_07e1);
        assert_eq!(a.to_string(), "7e107e107e1");
        assert_eq!(Work::ZERO.to_string(), "0");
        assert_eq!("7e107e107e1".parse::<Work>(), Ok(a));
        assert_eq!(Work::from_hex("0007E107E107E1"), Ok(a));
        assert_eq!(Work::from_hex(""), Err(ParseWorkError::Length(0)));
        assert_eq!(Work::from_hex(&"1".repeat(65)), Err(ParseWorkError::Length(65)));
        assert!(matches!(Work::from_hex("xyz"), Err(ParseWorkError::Hex(_))));
        let max = Work(U256::MAX);
        assert_eq!(max.to_string(), "f".repeat(64));
        assert_eq!(Work::from_hex(&max.to_string()), Ok(max));
        assert_eq!(max.checked_add(Work::from_u128(1)), None);
        assert_eq!(Work::ZERO.checked_sub(Work::from_u128(1)), None);
        assert_eq!(a.checked_sub(a), Some(Work::ZERO));
        assert_eq!(Work::from_u128(3).checked_mul(5), Some(Work::from_u128(15)));
        assert_eq!(max.checked_mul(2), None);
        assert_eq!(Work::from_u128(u128::MAX).to_string(), "f".repeat(32));
        assert_eq!(Work::from_u128(4_295_032_833).to_f64(), 4_295_032_833.0);
        assert_eq!(Work::ZERO.to_f64(), 0.0);
        assert_eq!(format!("{a:?}"), "Work(0x7e107e107e1)");
    }

    #[test]
    fn work_and_target_encode_as_32_big_endian_bytes() {
        let work = Work::from_u128(0x0102);
        let bytes = crate::encode::serialize(&work);
        assert_eq!(bytes.len(), 32);
        assert_eq!(bytes[30..], [0x01, 0x02]);
        assert_eq!(crate::encode::deserialize::<Work>(&bytes, 32).expect("decodes"), work);
        let target = bitcoin_pow_limit();
        let bytes = crate::encode::serialize(&target);
        assert_eq!(bytes, target.to_be_bytes());
        assert_eq!(bytes[4..6], [0xff, 0xff]);
        assert_eq!(crate::encode::deserialize::<Target>(&bytes, 32).expect("decodes"), target);
    }

    #[test]
    fn header_hasher_matches_block_hash() {
        let mut header = genesis_header();
        let hasher = HeaderHasher::new(&header);
        assert_eq!(hasher.hash_with(header.time, header.nonce).to_string(), GENESIS_HASH);
        // The hasher ignores the header's own time and nonce.
        let mut other = header;
        other.time = 0;
        other.nonce = 0;
        assert_eq!(
            HeaderHasher::new(&other).hash_with(header.time, header.nonce),
            hasher.hash_with(header.time, header.nonce)
        );
        for (i, time) in [0u32, 1, 0x495f_ab29, u32::MAX].into_iter().enumerate() {
            for nonce in (0u32..200).chain([0x7c2b_ac1d, u32::MAX - 1, u32::MAX]) {
                header.time = time;
                header.nonce = nonce.wrapping_mul(i as u32 + 1);
                assert_eq!(hasher.hash_with(header.time, header.nonce), header.block_hash());
            }
        }
    }

    fn arb_header() -> impl Strategy<Value = BlockHeader> {
        (
            any::<i32>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(version, prev, merkle, time, bits, nonce)| BlockHeader {
                version,
                prev_blockhash: BlockHash::from_byte_array(prev),
                merkle_root: crate::hash::Hash256::from_byte_array(merkle),
                time,
                bits: CompactTarget::from_consensus(bits),
                nonce,
            })
    }

    /// A nonzero target of any magnitude.
    fn arb_target() -> impl Strategy<Value = Target> {
        (any::<[u8; 32]>(), 0usize..256).prop_map(|(bytes, shift)| {
            let value = U256::from_be_bytes(bytes) >> shift;
            Target(if value.is_zero() { U256::ONE } else { value })
        })
    }

    proptest! {
        #[test]
        fn header_hasher_matches_block_hash_for_any_header(header in arb_header(), time: u32, nonce: u32) {
            let mut expected = header;
            expected.time = time;
            expected.nonce = nonce;
            prop_assert_eq!(HeaderHasher::new(&header).hash_with(time, nonce), expected.block_hash());
        }

        /// The fast search finds what a plain search finds, also when a hash and
        /// the target share their top 32 bits (targets made from the hashes
        /// themselves, met exactly and missed by one).
        #[test]
        fn find_nonce_matches_a_plain_search(
            header in arb_header(),
            time: u32,
            start in 0u32..u32::MAX - 64,
            pick in 0u32..64,
            shift in 0usize..=255,
            miss_by_one: bool,
        ) {
            let hasher = HeaderHasher::new(&header);
            let nonces = start..start + 64;
            let own = hash_to_u256(hasher.hash_with(time, start + pick));
            let near = if miss_by_one { own.saturating_sub(U256::ONE) } else { own };
            for target in [Target(near), Target(U256::MAX >> shift)] {
                let plain =
                    nonces.clone().find(|&n| target.is_met_by(hasher.hash_with(time, n)));
                prop_assert_eq!(hasher.find_nonce(time, nonces.clone(), &target), plain);
            }
        }

        #[test]
        fn normalized_compacts_round_trip(exponent in 3u32..=32, mantissa in 0x8000u32..=0x7f_ffff) {
            let compact = bits((exponent << 24) | mantissa);
            let target = compact.to_target().expect("a normalized compact decodes");
            prop_assert_eq!(target.to_compact(), compact);
        }

        #[test]
        fn to_compact_truncates_and_round_trips(target in arb_target()) {
            let compact = target.to_compact();
            let decoded = compact.to_target().expect("an encoded nonzero target decodes");
            prop_assert!(decoded <= target);
            // At least the top 16 significant bits survive.
            prop_assert!(target.0 - decoded.0 <= target.0 >> 15);
            prop_assert_eq!(decoded.to_compact(), compact);
        }

        #[test]
        fn work_is_two_to_the_256_over_target_plus_one(target in arb_target()) {
            let exact = (U512::ONE << 256) / (U512::from(target.0) + U512::ONE);
            prop_assert_eq!(U512::from(target.to_work().0), exact);
        }

        #[test]
        fn smaller_targets_prove_more_work(a in arb_target(), b in arb_target()) {
            let (small, large) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(small.to_work() >= large.to_work());
        }

        #[test]
        fn work_round_trips_through_bytes_and_hex(bytes: [u8; 32]) {
            let work = Work::from_be_bytes(bytes);
            prop_assert_eq!(work.to_be_bytes(), bytes);
            prop_assert_eq!(Work::from_hex(&work.to_string()), Ok(work));
        }
    }
}
