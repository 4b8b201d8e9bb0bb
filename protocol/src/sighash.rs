//! Signature hashes, and signing and verifying transaction inputs.
//!
//! Owns what an input's signature commits to (Bitcoin's `SignatureHash` with
//! `SIGHASH_ALL`, laid out like BIP 143 so that checking every input of a
//! transaction hashes the transaction once, not once per input) and the signature
//! rules: 64-byte compact `r ‖ s`, RFC 6979 nonces, low S. It must not look up coins
//! or judge anything else about a transaction: callers pass the output being spent.
//!
//! # Signature hash
//!
//! The signature hash of input `i` of `tx`, spending the output `spent`, is the
//! sha256d of this 156-byte preimage. Every field is in the canonical encoding
//! ([`crate::encode`]): integers little-endian, hashes and pubkey hashes as raw bytes
//! in hash output order, sequences with a `u64` count first.
//!
//! | bytes | field              | content                                                        |
//! |------:|--------------------|----------------------------------------------------------------|
//! |    20 | tag                | ASCII `tinychain/sighash/v1` (no length prefix)                |
//! |     4 | version            | `tx.version`, `i32`                                            |
//! |    32 | prevouts hash      | sha256d(count `u64` ‖ per input: txid (32) ‖ vout `u32`)       |
//! |    32 | sequences hash     | sha256d(count `u64` ‖ per input: sequence `u32`)               |
//! |    32 | outputs hash       | sha256d(count `u64` ‖ per output: value `u64` ‖ pubkey hash (20)) |
//! |     4 | locktime           | `tx.locktime`, `u32`                                           |
//! |     4 | input index        | `i`, `u32`                                                     |
//! |     8 | spent value        | `spent.value`, `u64`                                           |
//! |    20 | spent pubkey hash  | `spent.pubkey_hash`                                            |
//!
//! The tag keeps these hashes apart from every other sha256d in tinychain. Inputs'
//! signatures and public keys are not committed: a signature cannot sign itself,
//! and each input's own key is checked against the output it spends. The three
//! middle hashes are the same for every input, so [`SighashCache`] computes them once.
//!
//! # Signatures
//!
//! An input's `signature` is an ECDSA secp256k1 signature of the 32 signature-hash
//! bytes (read as a big-endian number, as Bitcoin does), written as `r` then `s`,
//! 32 bytes big-endian each. [`verify_input`] accepts it if, in this order:
//!
//! 1. `hash160(pubkey)` equals `spent.pubkey_hash`;
//! 2. `pubkey` is a valid compressed SEC1 point (`0x02`/`0x03`, x below p, on the curve);
//! 3. `1 ≤ r < n` and `1 ≤ s < n`;
//! 4. `s ≤ (n − 1) / 2` (low S, Bitcoin's `SCRIPT_VERIFY_LOW_S`, here a consensus rule, so
//!    that nobody but the signer can change a txid by negating `s`);
//! 5. the ECDSA verification equation holds.

use k256::ecdsa::Signature;
use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use serde::Serialize;

use crate::encode;
use crate::hash::{Hash256, PubkeyHash};
use crate::keys::{PrivateKey, PublicKey};
use crate::transaction::{OutPoint, Transaction, TxOut};

/// The domain-separation tag that starts every signature-hash preimage.
const TAG: [u8; 20] = *b"tinychain/sighash/v1";

/// The preimage of a signature hash; the field order is the byte layout.
#[derive(Serialize)]
struct Preimage {
    tag: [u8; 20],
    version: i32,
    prevouts_hash: Hash256,
    sequences_hash: Hash256,
    outputs_hash: Hash256,
    locktime: u32,
    input_index: u32,
    spent: TxOut,
}

/// A transaction with the parts of its signature hashes that all inputs share.
///
/// Use it to check or hash many inputs of one transaction: building it hashes the
/// transaction once, after which each input costs a 156-byte hash and a verification.
#[derive(Clone, Debug)]
pub struct SighashCache<'a> {
    tx: &'a Transaction,
    prevouts_hash: Hash256,
    sequences_hash: Hash256,
    outputs_hash: Hash256,
}

impl<'a> SighashCache<'a> {
    /// Hashes `tx`'s outpoints, sequences and outputs.
    pub fn new(tx: &'a Transaction) -> SighashCache<'a> {
        let prevouts: Vec<OutPoint> = tx.inputs.iter().map(|input| input.prev_out).collect();
        let sequences: Vec<u32> = tx.inputs.iter().map(|input| input.sequence).collect();
        SighashCache {
            tx,
            prevouts_hash: Hash256::hash(&encode::serialize(&prevouts)),
            sequences_hash: Hash256::hash(&encode::serialize(&sequences)),
            outputs_hash: Hash256::hash(&encode::serialize(&tx.outputs)),
        }
    }

    /// Returns the signature hash of input `input_index` spending `spent`, or `None`
    /// if the transaction has no such input.
    pub fn signature_hash(&self, input_index: usize, spent: &TxOut) -> Option<Hash256> {
        if input_index >= self.tx.inputs.len() {
            return None;
        }
        let preimage = Preimage {
            tag: TAG,
            version: self.tx.version,
            prevouts_hash: self.prevouts_hash,
            sequences_hash: self.sequences_hash,
            outputs_hash: self.outputs_hash,
            locktime: self.tx.locktime,
            input_index: u32::try_from(input_index).ok()?,
            spent: *spent,
        };
        Some(Hash256::hash(&encode::serialize(&preimage)))
    }

    /// Checks that input `input_index` is authorised to spend `spent`; see [`verify_input`].
    ///
    /// # Errors
    ///
    /// The first rule of the [module documentation](self) the input breaks.
    pub fn verify_input(&self, input_index: usize, spent: &TxOut) -> Result<(), SignatureError> {
        let (key, signature) = parse_input(self.tx, input_index, spent)?;
        let hash = self
            .signature_hash(input_index, spent)
            .ok_or_else(|| out_of_range(self.tx, input_index))?;
        check_signature(&key, &signature, &hash)
    }
}

/// Returns the signature hash of input `input_index` of `tx` spending `spent`, or
/// `None` if `tx` has no such input.
///
/// To hash several inputs of one transaction, [`SighashCache`] is faster.
pub fn signature_hash(tx: &Transaction, input_index: usize, spent: &TxOut) -> Option<Hash256> {
    SighashCache::new(tx).signature_hash(input_index, spent)
}

/// Signs input `input_index` of `tx`, which spends `spent`, with `key`.
///
/// Sets the input's `pubkey` to the key's compressed public key and its `signature`
/// to a low-S signature with an RFC 6979 nonce, so signing is deterministic. Other
/// inputs' signatures are not committed to, so inputs may be signed in any order.
///
/// # Errors
///
/// [`SignError::InputOutOfRange`] if there is no such input, and
/// [`SignError::WrongKey`] if `key` is not the key `spent` pays to. `tx` is then unchanged.
pub fn sign_input(
    tx: &mut Transaction,
    input_index: usize,
    spent: &TxOut,
    key: &PrivateKey,
) -> Result<(), SignError> {
    let out_of_range = SignError::InputOutOfRange { index: input_index, inputs: tx.inputs.len() };
    if input_index >= tx.inputs.len() {
        return Err(out_of_range);
    }
    let public = key.public_key();
    let key_hash = public.pubkey_hash();
    if key_hash != spent.pubkey_hash {
        return Err(SignError::WrongKey { expected: spent.pubkey_hash, key: key_hash });
    }
    let hash = signature_hash(tx, input_index, spent).ok_or(out_of_range)?;
    let signature = sign_hash(key, &hash);
    let input = tx.inputs.get_mut(input_index).ok_or(out_of_range)?;
    input.pubkey = public.to_bytes();
    input.signature = signature;
    Ok(())
}

/// Signs every input of `tx` with `key`; `spent[i]` is the output input `i` spends.
///
/// # Errors
///
/// [`SignError::InputOutOfRange`] if `spent` and the inputs differ in number, and
/// [`SignError::WrongKey`] if `key` does not own one of the outputs; the inputs
/// signed before the failure keep their signatures.
pub fn sign_all(tx: &mut Transaction, spent: &[TxOut], key: &PrivateKey) -> Result<(), SignError> {
    if spent.len() != tx.inputs.len() {
        return Err(SignError::InputOutOfRange { index: spent.len(), inputs: tx.inputs.len() });
    }
    for (i, out) in spent.iter().enumerate() {
        sign_input(tx, i, out, key)?;
    }
    Ok(())
}

/// Checks that input `input_index` of `tx` is authorised to spend `spent`.
///
/// To check several inputs of one transaction, [`SighashCache::verify_input`] is faster.
///
/// # Errors
///
/// The first rule of the [module documentation](self) the input breaks, or
/// [`SignatureError::InputOutOfRange`] if there is no such input.
pub fn verify_input(
    tx: &Transaction,
    input_index: usize,
    spent: &TxOut,
) -> Result<(), SignatureError> {
    // The cheap checks come first, so junk costs no hashing of the transaction.
    let (key, signature) = parse_input(tx, input_index, spent)?;
    let hash =
        signature_hash(tx, input_index, spent).ok_or_else(|| out_of_range(tx, input_index))?;
    check_signature(&key, &signature, &hash)
}

/// Why an input's signature or public key does not authorise its spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The transaction has no input with this index.
    #[error("input {index} does not exist: the transaction has {inputs} inputs")]
    InputOutOfRange {
        /// The index asked for.
        index: usize,
        /// How many inputs the transaction has.
        inputs: usize,
    },
    /// The public key is not the one the spent output pays to.
    #[error(
        "public key hashes to {}, but the output pays to {}",
        hex::encode(.found.to_byte_array()),
        hex::encode(.expected.to_byte_array())
    )]
    PubkeyHashMismatch {
        /// The spent output's pubkey hash.
        expected: PubkeyHash,
        /// The `hash160` of the input's public key.
        found: PubkeyHash,
    },
    /// The public key bytes are not a compressed secp256k1 point.
    #[error("public key is not a compressed secp256k1 point")]
    InvalidPubkey,
    /// `r` or `s` is zero or not below the curve order.
    #[error("signature r or s is zero or not below the curve order")]
    InvalidSignature,
    /// `s` is above half the curve order (the signature is not low-S).
    #[error("signature s is above half the curve order")]
    HighS,
    /// The signature is well formed but does not verify for this key and transaction.
    #[error("signature does not verify against the public key and signature hash")]
    VerifyFailed,
}

/// Why an input could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The transaction has no input with this index.
    #[error("input {index} does not exist: the transaction has {inputs} inputs")]
    InputOutOfRange {
        /// The index asked for.
        index: usize,
        /// How many inputs the transaction has.
        inputs: usize,
    },
    /// The key is not the one the spent output pays to.
    #[error(
        "the key's pubkey hash is {}, but the output pays to {}",
        hex::encode(.key.to_byte_array()),
        hex::encode(.expected.to_byte_array())
    )]
    WrongKey {
        /// The spent output's pubkey hash.
        expected: PubkeyHash,
        /// The key's pubkey hash.
        key: PubkeyHash,
    },
}

fn out_of_range(tx: &Transaction, index: usize) -> SignatureError {
    SignatureError::InputOutOfRange { index, inputs: tx.inputs.len() }
}

/// Applies rules 1 to 4: everything that does not need the signature hash.
fn parse_input(
    tx: &Transaction,
    input_index: usize,
    spent: &TxOut,
) -> Result<(PublicKey, Signature), SignatureError> {
    let input = tx.inputs.get(input_index).ok_or_else(|| out_of_range(tx, input_index))?;
    let found = PubkeyHash::of_pubkey(&input.pubkey);
    if found != spent.pubkey_hash {
        return Err(SignatureError::PubkeyHashMismatch { expected: spent.pubkey_hash, found });
    }
    let key = PublicKey::from_bytes(&input.pubkey).map_err(|_| SignatureError::InvalidPubkey)?;
    let signature =
        Signature::from_slice(&input.signature).map_err(|_| SignatureError::InvalidSignature)?;
    // k256 rejects high S too, but only as a failed verification: check it here so
    // the reason is reported, and so the rule does not depend on a library default.
    if signature.normalize_s() != signature {
        return Err(SignatureError::HighS);
    }
    Ok((key, signature))
}

/// Applies rule 5.
fn check_signature(
    key: &PublicKey,
    signature: &Signature,
    hash: &Hash256,
) -> Result<(), SignatureError> {
    key.verifying_key()
        .verify_prehash(hash.as_bytes(), signature)
        .map_err(|_| SignatureError::VerifyFailed)
}

/// Signs a 32-byte hash: RFC 6979 nonce, low S, compact `r ‖ s`.
fn sign_hash(key: &PrivateKey, hash: &Hash256) -> [u8; 64] {
    let signature: Signature = key
        .signing_key()
        .sign_prehash(hash.as_bytes())
        .expect("k256 signs any prehash of at least 16 bytes, retrying nonces internally");
    // k256 already normalises secp256k1 signatures; normalising again states the rule here.
    let signature = signature.normalize_s();
    let mut bytes = [0u8; 64];
    bytes.copy_from_slice(&signature.to_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use ruint::aliases::U256;

    use super::*;
    use crate::amount::{Amount, COIN};
    use crate::hash::{Txid, sha256d};
    use crate::transaction::{SEQUENCE_FINAL, TxIn};

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from_bytes(&[seed; 32]).expect("a small repeated byte is a valid scalar")
    }

    fn coins(n: u64) -> Amount {
        Amount::from_belushis(n * COIN)
    }

    fn input(txid_byte: u8, vout: u32, sequence: u32) -> TxIn {
        TxIn {
            prev_out: OutPoint { txid: Txid::from_byte_array([txid_byte; 32]), vout },
            signature: [0; 64],
            pubkey: [0; 33],
            sequence,
        }
    }

    /// A two-input, two-output transaction, both inputs signed, and the outputs it spends.
    fn fixture() -> (Transaction, [TxOut; 2]) {
        let spent = [
            TxOut { value: coins(5), pubkey_hash: key(1).public_key().pubkey_hash() },
            TxOut { value: coins(3), pubkey_hash: key(2).public_key().pubkey_hash() },
        ];
        let mut tx = Transaction {
            version: 1,
            inputs: vec![input(0x11, 0, SEQUENCE_FINAL), input(0x22, 3, 7)],
            outputs: vec![
                TxOut { value: coins(6), pubkey_hash: key(3).public_key().pubkey_hash() },
                TxOut { value: coins(1), pubkey_hash: key(1).public_key().pubkey_hash() },
            ],
            locktime: 0,
        };
        sign_input(&mut tx, 0, &spent[0], &key(1)).expect("key 1 owns output 0");
        sign_input(&mut tx, 1, &spent[1], &key(2)).expect("key 2 owns output 1");
        (tx, spent)
    }

    /// Returns the same signature with s replaced by n - s (valid ECDSA, but high-S).
    fn high_s(signature: &[u8; 64]) -> [u8; 64] {
        let s = U256::from_be_slice(&signature[32..]);
        let mut out = *signature;
        out[32..].copy_from_slice(&(curve_order() - s).to_be_bytes::<32>());
        out
    }

    fn curve_order() -> U256 {
        U256::from_str_radix("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141", 16)
            .expect("the secp256k1 order")
    }

    /// Checks input `index` with both entry points, which must agree.
    fn verify(tx: &Transaction, index: usize, spent: &TxOut) -> Result<(), SignatureError> {
        let result = verify_input(tx, index, spent);
        assert_eq!(SighashCache::new(tx).verify_input(index, spent), result);
        result
    }

    #[test]
    fn signed_inputs_verify() {
        let (tx, spent) = fixture();
        assert_eq!(verify(&tx, 0, &spent[0]), Ok(()));
        assert_eq!(verify(&tx, 1, &spent[1]), Ok(()));
        assert_eq!(tx.inputs[0].pubkey, key(1).public_key().to_bytes());
        let s = U256::from_be_slice(&tx.inputs[0].signature[32..]);
        assert!(s <= curve_order() >> 1, "signatures are low-S");
    }

    #[test]
    fn signing_is_deterministic() {
        let (tx, spent) = fixture();
        let (again, _) = fixture();
        assert_eq!(tx, again);
        let mut resigned = tx.clone();
        sign_input(&mut resigned, 0, &spent[0], &key(1)).expect("same key");
        assert_eq!(resigned.inputs[0].signature, tx.inputs[0].signature);
    }

    /// Every committed field changes the signature hash and breaks the signature.
    #[test]
    fn changing_any_committed_field_breaks_the_signature() {
        type Mutation = fn(&mut Transaction, &mut TxOut);
        let cases: [(&str, Mutation); 16] = [
            ("version", |tx, _| tx.version = 2),
            ("locktime", |tx, _| tx.locktime = 500),
            ("own sequence", |tx, _| tx.inputs[0].sequence = 0),
            ("other input's sequence", |tx, _| tx.inputs[1].sequence = 8),
            ("own outpoint txid", |tx, _| {
                tx.inputs[0].prev_out.txid = Txid::from_byte_array([0x33; 32])
            }),
            ("own outpoint vout", |tx, _| tx.inputs[0].prev_out.vout = 1),
            ("other input's outpoint", |tx, _| tx.inputs[1].prev_out.vout = 4),
            ("input added", |tx, _| tx.inputs.push(input(0x44, 0, 0))),
            ("inputs swapped", |tx, _| tx.inputs.swap(0, 1)),
            ("output value", |tx, _| tx.outputs[0].value = coins(7)),
            ("output pubkey hash", |tx, _| tx.outputs[1].pubkey_hash = PubkeyHash::default()),
            ("output added", |tx, _| tx.outputs.push(tx.outputs[1])),
            ("output removed", |tx, _| tx.outputs.truncate(1)),
            ("outputs swapped", |tx, _| tx.outputs.swap(0, 1)),
            ("spent value", |_, spent| spent.value = coins(50)),
            ("spent pubkey hash", |_, spent| spent.pubkey_hash = PubkeyHash::default()),
        ];
        let (tx, spent) = fixture();
        let original = signature_hash(&tx, 0, &spent[0]).expect("input 0 exists");
        for (name, mutate) in cases {
            let (mut changed, [mut spent0, _]) = fixture();
            mutate(&mut changed, &mut spent0);
            // After "inputs swapped" the signed input sits at index 1.
            let index = changed.inputs.iter().position(|i| i.pubkey == tx.inputs[0].pubkey);
            let index = index.expect("input 0's pubkey is still there");
            assert_ne!(signature_hash(&changed, index, &spent0), Some(original), "{name}");
            let expected = if name == "spent pubkey hash" {
                Err(SignatureError::PubkeyHashMismatch {
                    expected: PubkeyHash::default(),
                    found: spent[0].pubkey_hash,
                })
            } else {
                Err(SignatureError::VerifyFailed)
            };
            assert_eq!(verify(&changed, index, &spent0), expected, "{name}");
        }
    }

    #[test]
    fn the_input_index_is_committed() {
        let (mut tx, spent) = fixture();
        assert_ne!(signature_hash(&tx, 0, &spent[0]), signature_hash(&tx, 1, &spent[0]));
        // Input 0's signature moved to input 1, claiming the same coin: it must fail.
        tx.inputs[1].signature = tx.inputs[0].signature;
        tx.inputs[1].pubkey = tx.inputs[0].pubkey;
        assert_eq!(verify(&tx, 1, &spent[0]), Err(SignatureError::VerifyFailed));
    }

    #[test]
    fn other_inputs_signatures_and_keys_are_not_committed() {
        let (mut tx, spent) = fixture();
        let before = signature_hash(&tx, 0, &spent[0]);
        tx.inputs[1].signature = [0xab; 64];
        tx.inputs[1].pubkey = [0xcd; 33];
        assert_eq!(signature_hash(&tx, 0, &spent[0]), before);
        assert_eq!(verify(&tx, 0, &spent[0]), Ok(()));
        // The input's own signature and key are not in its hash either.
        tx.inputs[0].signature = [0; 64];
        assert_eq!(signature_hash(&tx, 0, &spent[0]), before);
    }

    #[test]
    fn high_s_twin_of_a_valid_signature_is_rejected() {
        let (mut tx, spent) = fixture();
        let low = tx.inputs[0].signature;
        tx.inputs[0].signature = high_s(&low);
        assert_ne!(tx.inputs[0].signature, low);
        assert_eq!(verify(&tx, 0, &spent[0]), Err(SignatureError::HighS));
        // Negating again gives back the original, valid signature.
        tx.inputs[0].signature = high_s(&tx.inputs[0].signature);
        assert_eq!(verify(&tx, 0, &spent[0]), Ok(()));
    }

    #[test]
    fn a_key_that_does_not_own_the_coin_is_refused() {
        let (mut tx, spent) = fixture();
        let before = tx.clone();
        assert_eq!(
            sign_input(&mut tx, 0, &spent[0], &key(9)),
            Err(SignError::WrongKey {
                expected: spent[0].pubkey_hash,
                key: key(9).public_key().pubkey_hash()
            })
        );
        assert_eq!(tx, before, "a failed signing leaves the transaction unchanged");

        // Signed by key 9 for a coin key 9 owns, then presented for key 1's coin.
        let mallory =
            TxOut { value: spent[0].value, pubkey_hash: key(9).public_key().pubkey_hash() };
        sign_input(&mut tx, 0, &mallory, &key(9)).expect("key 9 owns this output");
        assert_eq!(
            verify(&tx, 0, &spent[0]),
            Err(SignatureError::PubkeyHashMismatch {
                expected: spent[0].pubkey_hash,
                found: mallory.pubkey_hash
            })
        );
    }

    #[test]
    fn garbage_public_keys_are_rejected() {
        let (mut tx, mut spent) = fixture();
        for garbage in [[0xff; 33], [0; 33], {
            // The right x with the uncompressed prefix.
            let mut k = key(1).public_key().to_bytes();
            k[0] = 0x04;
            k
        }] {
            tx.inputs[0].pubkey = garbage;
            spent[0].pubkey_hash = PubkeyHash::of_pubkey(&garbage);
            assert_eq!(verify(&tx, 0, &spent[0]), Err(SignatureError::InvalidPubkey));
        }
    }

    #[test]
    fn out_of_range_scalars_are_invalid_signatures() {
        let (tx, spent) = fixture();
        let n = curve_order().to_be_bytes::<32>();
        let valid = tx.inputs[0].signature;
        let mut cases = Vec::new();
        for (offset, bad) in [(0, [0u8; 32]), (0, n), (32, [0u8; 32]), (32, n), (32, [0xff; 32])] {
            let mut signature = valid;
            signature[offset..offset + 32].copy_from_slice(&bad);
            cases.push(signature);
        }
        for signature in cases {
            let mut changed = tx.clone();
            changed.inputs[0].signature = signature;
            assert_eq!(verify(&changed, 0, &spent[0]), Err(SignatureError::InvalidSignature));
        }
    }

    #[test]
    fn a_corrupted_signature_does_not_verify() {
        let (mut tx, spent) = fixture();
        tx.inputs[0].signature[40] ^= 0x01;
        assert_eq!(verify(&tx, 0, &spent[0]), Err(SignatureError::VerifyFailed));
    }

    #[test]
    fn missing_inputs_are_errors_not_panics() {
        let (mut tx, spent) = fixture();
        assert_eq!(signature_hash(&tx, 2, &spent[0]), None);
        assert_eq!(signature_hash(&tx, usize::MAX, &spent[0]), None);
        assert_eq!(
            verify(&tx, 2, &spent[0]),
            Err(SignatureError::InputOutOfRange { index: 2, inputs: 2 })
        );
        assert_eq!(
            sign_input(&mut tx, 5, &spent[0], &key(1)),
            Err(SignError::InputOutOfRange { index: 5, inputs: 2 })
        );
    }

    /// The preimage is exactly the layout the module documentation gives.
    #[test]
    fn preimage_layout_matches_the_documentation() {
        let (tx, spent) = fixture();
        let mut prevouts = 2u64.to_le_bytes().to_vec();
        let mut sequences = 2u64.to_le_bytes().to_vec();
        for input in &tx.inputs {
            prevouts.extend_from_slice(input.prev_out.txid.as_bytes());
            prevouts.extend_from_slice(&input.prev_out.vout.to_le_bytes());
            sequences.extend_from_slice(&input.sequence.to_le_bytes());
        }
        let mut outputs = 2u64.to_le_bytes().to_vec();
        for output in &tx.outputs {
            outputs.extend_from_slice(&output.value.to_belushis().to_le_bytes());
            outputs.extend_from_slice(&output.pubkey_hash.to_byte_array());
        }
        for (index, spent) in spent.iter().enumerate() {
            let mut preimage = b"tinychain/sighash/v1".to_vec();
            preimage.extend_from_slice(&tx.version.to_le_bytes());
            preimage.extend_from_slice(&sha256d(&prevouts));
            preimage.extend_from_slice(&sha256d(&sequences));
            preimage.extend_from_slice(&sha256d(&outputs));
            preimage.extend_from_slice(&tx.locktime.to_le_bytes());
            preimage.extend_from_slice(&(index as u32).to_le_bytes());
            preimage.extend_from_slice(&spent.value.to_belushis().to_le_bytes());
            preimage.extend_from_slice(&spent.pubkey_hash.to_byte_array());
            assert_eq!(preimage.len(), 156);
            assert_eq!(
                signature_hash(&tx, index, spent),
                Some(Hash256::from_byte_array(sha256d(&preimage)))
            );
        }
    }

    /// Golden values: a change here is a consensus change.
    #[test]
    fn golden_signature_hash_and_signature() {
        let (tx, spent) = fixture();
        let hash = signature_hash(&tx, 0, &spent[0]).expect("input 0 exists");
        assert_eq!(hex::encode(hash.as_bytes()), GOLDEN_SIGHASH);
        assert_eq!(hex::encode(tx.inputs[0].signature), GOLDEN_SIGNATURE);
    }

    const GOLDEN_SIGHASH: &str = "094729a937138abb8556d8f42c67ceb53e826e201e81d4ce7200859a23bd4883";
    const GOLDEN_SIGNATURE: &str = "ee62cc9483df2a9be37fd42ccb4b8339ef02b345df8e0f0ad66446a6207422d458a81ee4d3d514155d2b2c7be53eaca65cc769020d45f75d10ce1a49cf8dc932";

    /// Bitcoin Core `src/test/key_tests.cpp`, "Very deterministic message": the same
    /// RFC 6979 signature as libsecp256k1.
    #[test]
    fn bitcoin_core_deterministic_signature_vector() {
        let (key, _) = PrivateKey::from_wif("Kwr371tjA9u2rFSMZjTNun2PXXP3WPZu2afRHTcta6KxEUdm1vEw")
            .expect("published valid WIF");
        let hash = Hash256::hash(b"Very deterministic message");
        assert_eq!(
            hex::encode(sign_hash(&key, &hash)),
            "5dbbddda71772d95ce91cd2d14b592cfbc1dd0aabd6a394b6c2d377bbe59d31d\
             14ddda21494a4e221f0824f0b8b924c43fa43c0ad57dccdaa11f81a6bd4582f6"
        );
    }

    fn arbitrary_tx() -> impl Strategy<Value = Transaction> {
        let inputs = prop::collection::vec(
            (any::<[u8; 32]>(), any::<u32>(), any::<u32>()).prop_map(|(txid, vout, sequence)| {
                TxIn {
                    prev_out: OutPoint { txid: Txid::from_byte_array(txid), vout },
                    signature: [0; 64],
                    pubkey: [0; 33],
                    sequence,
                }
            }),
            1..5,
        );
        let outputs = prop::collection::vec(
            (any::<u64>(), any::<[u8; 20]>()).prop_map(|(value, hash)| TxOut {
                value: Amount::from_belushis(value),
                pubkey_hash: PubkeyHash::from_byte_array(hash),
            }),
            0..5,
        );
        (any::<i32>(), inputs, outputs, any::<u32>()).prop_map(
            |(version, inputs, outputs, locktime)| Transaction {
                version,
                inputs,
                outputs,
                locktime,
            },
        )
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(
            secret in any::<[u8; 32]>(),
            tx in arbitrary_tx(),
            value in any::<u64>(),
            index in any::<prop::sample::Index>(),
        ) {
            let key = PrivateKey::from_bytes(&secret);
            prop_assume!(key.is_ok());
            let key = key.expect("checked by prop_assume");
            let mut tx = tx;
            let index = index.index(tx.inputs.len());
            let spent = TxOut { value: Amount::from_belushis(value), pubkey_hash: key.public_key().pubkey_hash() };
            sign_input(&mut tx, index, &spent, &key).expect("the key owns the output");
            prop_assert_eq!(verify(&tx, index, &spent), Ok(()));

            let mut changed = tx.clone();
            changed.locktime ^= 1;
            prop_assert_eq!(verify(&changed, index, &spent), Err(SignatureError::VerifyFailed));
            let mut changed = tx.clone();
            changed.inputs[index].signature = high_s(&tx.inputs[index].signature);
            prop_assert_eq!(verify(&changed, index, &spent), Err(SignatureError::HighS));
        }
    }
}
