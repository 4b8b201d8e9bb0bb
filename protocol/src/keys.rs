//! Keys and addresses: secp256k1 private and public keys, WIF and P2PKH addresses.
//!
//! Owns [`PrivateKey`] (and its Wallet Import Format), [`PublicKey`] (always the
//! 33-byte compressed SEC1 form) and [`Address`] (Base58Check of a version byte and
//! the public key's `hash160`), with Bitcoin's prefixes, so that Bitcoin's published
//! vectors apply unchanged. It must not generate randomness: a private key is made
//! from 32 bytes the caller took from the operating system. It does not decide what
//! a signature commits to; that is [`crate::sighash`].
//!
//! Test and regtest share their prefixes, as in Bitcoin, so a WIF or an address says
//! only which [`NetworkKind`] it belongs to: main, or one of the test networks.
//!
//! | what            | main   | test and regtest |
//! |-----------------|--------|------------------|
//! | address version | `0x00` | `0x6f`           |
//! | WIF prefix      | `0x80` | `0xef`           |

use std::fmt;
use std::str::FromStr;

use k256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hash::PubkeyHash;
use crate::params::Network;

/// Which family of prefixes a key or address uses (rust-bitcoin's `NetworkKind`).
///
/// Test and regtest share one, so an address or a WIF can be told apart only as
/// "main" or "one of the test networks".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum NetworkKind {
    /// The main network's prefixes.
    Main,
    /// The prefixes test and regtest share.
    Test,
}

impl NetworkKind {
    /// Returns the kind of prefixes `network` uses.
    pub const fn of(network: Network) -> NetworkKind {
        match network {
            Network::Main => NetworkKind::Main,
            Network::Test | Network::Regtest => NetworkKind::Test,
        }
    }

    /// Tells whether keys and addresses of this kind are valid on `network`.
    pub const fn includes(self, network: Network) -> bool {
        matches!(
            (self, network),
            (NetworkKind::Main, Network::Main)
                | (NetworkKind::Test, Network::Test | Network::Regtest)
        )
    }

    /// Returns the P2PKH address version byte (Bitcoin's `PUBKEY_ADDRESS`).
    pub const fn address_version(self) -> u8 {
        match self {
            NetworkKind::Main => 0x00,
            NetworkKind::Test => 0x6f,
        }
    }

    /// Returns the WIF prefix byte (Bitcoin's `SECRET_KEY`).
    pub const fn wif_prefix(self) -> u8 {
        match self {
            NetworkKind::Main => 0x80,
            NetworkKind::Test => 0xef,
        }
    }

    fn from_address_version(version: u8) -> Option<NetworkKind> {
        [NetworkKind::Main, NetworkKind::Test].into_iter().find(|k| k.address_version() == version)
    }

    fn from_wif_prefix(prefix: u8) -> Option<NetworkKind> {
        [NetworkKind::Main, NetworkKind::Test].into_iter().find(|k| k.wif_prefix() == prefix)
    }
}

impl From<Network> for NetworkKind {
    fn from(network: Network) -> NetworkKind {
        NetworkKind::of(network)
    }
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkKind::Main => "main",
            NetworkKind::Test => "test or regtest",
        })
    }
}

/// An invalid private or public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The 32 bytes are zero or not below the curve order n.
    #[error("private key is zero or not below the secp256k1 curve order")]
    PrivateKeyOutOfRange,
    /// The 33 bytes are not a compressed SEC1 encoding of a point on secp256k1.
    #[error("public key is not a compressed secp256k1 point")]
    InvalidPublicKey,
}

/// A secp256k1 private key, always used with its compressed public key.
///
/// Its `Debug` output shows the public key only; the secret is wiped from memory
/// when the key is dropped (k256's `SigningKey` zeroizes itself).
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(SigningKey);

/// Bytes in a compressed WIF payload: prefix, 32-byte secret, compression flag.
const WIF_LEN: usize = 34;
/// The byte after the secret that marks a WIF key compressed.
const WIF_COMPRESSED: u8 = 0x01;
/// Longer strings are rejected before decoding (base58 decoding is quadratic).
/// A compressed WIF is 52 characters and a P2PKH address at most 34.
const MAX_BASE58_CHARS: usize = 64;

impl PrivateKey {
    /// Makes a key from its 32-byte big-endian secret.
    ///
    /// # Errors
    ///
    /// [`KeyError::PrivateKeyOutOfRange`] if the number is 0 or at least the curve order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PrivateKey, KeyError> {
        SigningKey::from_slice(bytes).map(PrivateKey).map_err(|_| KeyError::PrivateKeyOutOfRange)
    }

    /// Returns the 32-byte big-endian secret.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&self.0.to_bytes());
        bytes
    }

    /// Returns the public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// Encodes the key in Wallet Import Format for `network` (compressed form).
    ///
    /// Base58Check of the prefix byte, the 32-byte secret and `0x01`.
    pub fn to_wif(&self, network: Network) -> String {
        let mut payload = [0u8; WIF_LEN];
        payload[0] = NetworkKind::of(network).wif_prefix();
        payload[1..33].copy_from_slice(&self.to_bytes());
        payload[33] = WIF_COMPRESSED;
        bs58::encode(payload).with_check().into_string()
    }

    /// Decodes a compressed WIF key, returning it with the kind of network it is for.
    ///
    /// # Errors
    ///
    /// A [`WifError`] saying what is wrong: base58, checksum, length, missing
    /// compression flag, prefix or the number itself.
    pub fn from_wif(s: &str) -> Result<(PrivateKey, NetworkKind), WifError> {
        let payload = decode_check(s).map_err(Base58Failure::into_wif_error)?;
        match payload.len() {
            WIF_LEN => {}
            33 => return Err(WifError::Uncompressed),
            len => return Err(WifError::Length { len }),
        }
        if payload[33] != WIF_COMPRESSED {
            return Err(WifError::CompressionFlag(payload[33]));
        }
        let kind =
            NetworkKind::from_wif_prefix(payload[0]).ok_or(WifError::UnknownPrefix(payload[0]))?;
        let key = SigningKey::from_slice(&payload[1..33]).map_err(|_| WifError::OutOfRange)?;
        Ok((PrivateKey(key), kind))
    }

    /// The k256 key, for signing in [`crate::sighash`].
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey").field("public_key", &self.public_key()).finish_non_exhaustive()
    }
}

/// An error decoding a WIF private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WifError {
    /// The string is longer than any WIF key; it was not decoded.
    #[error("private key is {len} bytes long, longer than any WIF key")]
    TooLong {
        /// The string's length in bytes.
        len: usize,
    },
    /// A character is not in the base58 alphabet.
    #[error("invalid base58 character {character:?} at position {index}")]
    InvalidCharacter {
        /// The character.
        character: char,
        /// Its byte offset in the string.
        index: usize,
    },
    /// The last 4 bytes are not the checksum of the rest, or are missing.
    #[error("private key checksum does not match")]
    Checksum,
    /// The payload is 33 bytes: an uncompressed key, which tinychain does not use.
    #[error("uncompressed private keys are not supported")]
    Uncompressed,
    /// The payload is neither 33 nor 34 bytes.
    #[error("private key decodes to {len} bytes, expected 34")]
    Length {
        /// The payload's length (without the checksum).
        len: usize,
    },
    /// The byte after the secret is not `0x01`.
    #[error("compression flag is {0:#04x}, expected 0x01")]
    CompressionFlag(u8),
    /// The first byte is not a known WIF prefix.
    #[error("unknown private key prefix {0:#04x}")]
    UnknownPrefix(u8),
    /// The secret is zero or not below the curve order.
    #[error("private key is zero or not below the secp256k1 curve order")]
    OutOfRange,
}

/// A secp256k1 public key, written as 33 bytes in compressed SEC1 form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses a compressed SEC1 public key (`0x02` or `0x03`, then x).
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidPublicKey`] if the prefix is wrong, x is not below the field
    /// prime, or no point on the curve has that x.
    pub fn from_bytes(bytes: &[u8; 33]) -> Result<PublicKey, KeyError> {
        // k256 also parses SEC1's 33-byte "compact" form (tag 0x05, x only), which
        // would give a second encoding of the same key: only 0x02 and 0x03 are allowed.
        if !matches!(bytes[0], 0x02 | 0x03) {
            return Err(KeyError::InvalidPublicKey);
        }
        VerifyingKey::from_sec1_bytes(bytes).map(PublicKey).map_err(|_| KeyError::InvalidPublicKey)
    }

    /// Returns the 33-byte compressed SEC1 encoding.
    pub fn to_bytes(&self) -> [u8; 33] {
        let point = self.0.to_sec1_point(true);
        let mut bytes = [0u8; 33];
        bytes.copy_from_slice(point.as_bytes());
        bytes
    }

    /// Returns the `hash160` of the compressed encoding: what P2PKH outputs pay to.
    pub fn pubkey_hash(&self) -> PubkeyHash {
        PubkeyHash::of_pubkey(&self.to_bytes())
    }

    /// Returns the P2PKH address of this key on `network`.
    pub fn address(&self, network: Network) -> Address {
        Address::new(network, self.pubkey_hash())
    }

    /// The k256 key, for verifying in [`crate::sighash`].
    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A pay-to-public-key-hash address: Base58Check(version ‖ pubkey hash).
///
/// It knows the [`NetworkKind`] its version byte names, not the exact network, so
/// the same address is equal whether it was made for test or for regtest. Serde
/// reads and writes it as its string (for JSON), accepting either kind.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Address {
    kind: NetworkKind,
    pubkey_hash: PubkeyHash,
}

/// Bytes in an address payload: version and 20-byte hash.
const ADDRESS_LEN: usize = 21;

impl Address {
    /// Makes the address on `network` that pays to `pubkey_hash`.
    pub fn new(network: Network, pubkey_hash: PubkeyHash) -> Address {
        Address { kind: NetworkKind::of(network), pubkey_hash }
    }

    /// Returns the public key hash the address pays to.
    pub fn pubkey_hash(&self) -> PubkeyHash {
        self.pubkey_hash
    }

    /// Returns the kind of network the address is for (test and regtest share one).
    pub fn network_kind(&self) -> NetworkKind {
        self.kind
    }

    /// Tells whether the address may be used on `network`.
    pub fn is_valid_for(&self, network: Network) -> bool {
        self.kind.includes(network)
    }

    /// Parses an address that must be usable on `expected`.
    ///
    /// A test-prefix address is accepted for both test and regtest.
    ///
    /// # Errors
    ///
    /// An [`AddressError`] saying what is wrong: base58, checksum, length, version,
    /// or [`AddressError::WrongNetwork`] for a valid address of another network.
    pub fn parse(s: &str, expected: Network) -> Result<Address, AddressError> {
        let address: Address = s.parse()?;
        if !address.is_valid_for(expected) {
            return Err(AddressError::WrongNetwork { expected, found: address.kind });
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut payload = [0u8; ADDRESS_LEN];
        payload[0] = self.kind.address_version();
        payload[1..].copy_from_slice(&self.pubkey_hash.to_byte_array());
        f.write_str(&bs58::encode(payload).with_check().into_string())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// Parses an address of any known network; see [`Address::parse`] to require one.
impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Address, AddressError> {
        let payload = decode_check(s).map_err(Base58Failure::into_address_error)?;
        if payload.len() != ADDRESS_LEN {
            return Err(AddressError::Length { len: payload.len() });
        }
        let kind = NetworkKind::from_address_version(payload[0])
            .ok_or(AddressError::UnknownVersion(payload[0]))?;
        let mut hash = [0u8; 20];
        hash.copy_from_slice(&payload[1..]);
        Ok(Address { kind, pubkey_hash: PubkeyHash::from_byte_array(hash) })
    }
}

impl TryFrom<String> for Address {
    type Error = AddressError;

    fn try_from(s: String) -> Result<Address, AddressError> {
        s.parse()
    }
}

impl From<Address> for String {
    fn from(address: Address) -> String {
        address.to_string()
    }
}

/// An error parsing an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The string is longer than any address; it was not decoded.
    #[error("address is {len} bytes long, longer than any address")]
    TooLong {
        /// The string's length in bytes.
        len: usize,
    },
    /// A character is not in the base58 alphabet.
    #[error("invalid base58 character {character:?} at position {index}")]
    InvalidCharacter {
        /// The character.
        character: char,
        /// Its byte offset in the string.
        index: usize,
    },
    /// The last 4 bytes are not the checksum of the rest, or are missing.
    #[error("address checksum does not match")]
    Checksum,
    /// The payload is not a version byte and a 20-byte hash.
    #[error("address decodes to {len} bytes, expected 21")]
    Length {
        /// The payload's length (without the checksum).
        len: usize,
    },
    /// The version byte is not a known P2PKH version.
    #[error("unknown address version {0:#04x}")]
    UnknownVersion(u8),
    /// A valid address, for another network.
    #[error("address is for {found}, not {expected}")]
    WrongNetwork {
        /// The network the caller wanted.
        expected: Network,
        /// The kind of network the address is for.
        found: NetworkKind,
    },
}

/// What can go wrong in Base58Check decoding, before the payload is looked at.
enum Base58Failure {
    TooLong(usize),
    InvalidCharacter { character: char, index: usize },
    Checksum,
}

impl Base58Failure {
    fn into_address_error(self) -> AddressError {
        match self {
            Base58Failure::TooLong(len) => AddressError::TooLong { len },
            Base58Failure::InvalidCharacter { character, index } => {
                AddressError::InvalidCharacter { character, index }
            }
            Base58Failure::Checksum => AddressError::Checksum,
        }
    }

    fn into_wif_error(self) -> WifError {
        match self {
            Base58Failure::TooLong(len) => WifError::TooLong { len },
            Base58Failure::InvalidCharacter { character, index } => {
                WifError::InvalidCharacter { character, index }
            }
            Base58Failure::Checksum => WifError::Checksum,
        }
    }
}

/// Decodes Base58Check, returning the payload without its 4-byte checksum.
fn decode_check(s: &str) -> Result<Vec<u8>, Base58Failure> {
    if s.len() > MAX_BASE58_CHARS {
        return Err(Base58Failure::TooLong(s.len()));
    }
    bs58::decode(s).with_check(None).into_vec().map_err(|e| match e {
        bs58::decode::Error::InvalidCharacter { character, index } => {
            Base58Failure::InvalidCharacter { character, index }
        }
        bs58::decode::Error::NonAsciiCharacter { index } => Base58Failure::InvalidCharacter {
            character: s
                .get(index..)
                .and_then(|rest| rest.chars().next())
                .unwrap_or(char::REPLACEMENT_CHARACTER),
            index,
        },
        // A wrong checksum, or fewer than 4 bytes so no checksum at all. The other
        // errors (buffer too small, version mismatch) cannot happen with a growing
        // Vec and no expected version.
        _ => Base58Failure::Checksum,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bytes32(hex_str: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut out).expect("valid 32-byte hex literal");
        out
    }

    fn pubkey_hash(hex_str: &str) -> PubkeyHash {
        let mut out = [0u8; 20];
        hex::decode_to_slice(hex_str, &mut out).expect("valid 20-byte hex literal");
        PubkeyHash::from_byte_array(out)
    }

    /// Re-encodes `payload` with a valid checksum.
    fn check_encode(payload: &[u8]) -> String {
        bs58::encode(payload).with_check().into_string()
    }

    #[test]
    fn private_key_one_gives_the_generator_and_its_published_address_and_wif() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let key = PrivateKey::from_bytes(&one).expect("1 is a valid scalar");
        let public = key.public_key();
        assert_eq!(
            hex::encode(public.to_bytes()),
            "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
        );
        assert_eq!(public.pubkey_hash(), pubkey_hash("751e76e8199196d454941c45d1b3a323f1433bd6"));
        assert_eq!(public.address(Network::Main).to_string(), "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH");
        assert_eq!(public.address(Network::Test).to_string(), "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r");
        assert_eq!(
            public.address(Network::Regtest).to_string(),
            "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r"
        );
        assert_eq!(
            key.to_wif(Network::Main),
            "KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn"
        );
        assert_eq!(
            PrivateKey::from_wif("KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn"),
            Ok((key.clone(), NetworkKind::Main))
        );
        let test_wif = "cMahea7zqjxrtgAbB7LSGbcQUr1uX1ojuat9jZodMN87JcbXMTcA";
        assert_eq!(key.to_wif(Network::Test), test_wif);
        assert_eq!(key.to_wif(Network::Regtest), test_wif);
        assert_eq!(PrivateKey::from_wif(test_wif), Ok((key, NetworkKind::Test)));
    }

    /// Bitcoin Core `src/test/key_tests.cpp`: compressed WIFs and their addresses.
    #[test]
    fn bitcoin_core_key_tests_vectors() {
        for (wif, address) in [
            (
                "Kwr371tjA9u2rFSMZjTNun2PXXP3WPZu2afRHTcta6KxEUdm1vEw",
                "1NoJrossxPBKfCHuJXT4HadJrXRE9Fxiqs",
            ),
            (
                "L3Hq7a8FEQwJkW1M2GNKDW28546Vp5miewcCzSqUD9kCAXrJdS3g",
                "1CRj2HyM1CXWzHAXLQtiGLyggNT9WQqsDs",
            ),
        ] {
            let (key, kind) = PrivateKey::from_wif(wif).expect("published valid WIF");
            assert_eq!(kind, NetworkKind::Main);
            assert_eq!(key.public_key().address(Network::Main).to_string(), address);
            assert_eq!(key.to_wif(Network::Main), wif);
        }
        // The same first key's secret and compressed public key, as published with it.
        let (key, _) = PrivateKey::from_wif("Kwr371tjA9u2rFSMZjTNun2PXXP3WPZu2afRHTcta6KxEUdm1vEw")
            .expect("published valid WIF");
        assert_eq!(
            key.to_bytes(),
            bytes32("12b004fff7f4b69ef8650e767f18f11ede158148b425660723b9f9a66e61f747")
        );
        assert_eq!(
            key.public_key().to_string(),
            "030b4c866585dd868a9d62348a9cd008d6a312937048fff31670e7e920cfc7a744"
        );
    }

    /// Bitcoin Core `src/test/data/key_io_valid.json`: compressed private keys.
    #[test]
    fn bitcoin_core_key_io_private_keys() {
        for (wif, secret, kind, network) in [
            (
                "L5nJeqKmpHp4P7F8ZYyjwc5a7P4d8EabuGAzfGJk7yC1BJyzNaEd",
                "ff778740f88ddcf102aeb81daee289c044c4a4571c4b6f287400f4b8e0b843f8",
                NetworkKind::Main,
                Network::Main,
            ),
            (
                "cV83kKisF3RQSvXbUCm9ox3kaz5JjEUBWcx8tNydfGJcyeUxuH47",
                "e0fcd4ce4e3d0e3de091f21415bb7cd011fac288c42020a879f28c2a4387df9b",
                NetworkKind::Test,
                Network::Test,
            ),
            (
                "cPisAUdLvqqAr6MYtXnrWvgvyUAwuNyuTvZkDGw6miPhZdaiSDNH",
                "3fdfec1371cedcdb8c190ca6ff8ad603f817edc0d93c2a687c7b36dd66e70f2a",
                NetworkKind::Test,
                Network::Regtest,
            ),
        ] {
            let (key, got_kind) = PrivateKey::from_wif(wif).expect("published valid WIF");
            assert_eq!(key.to_bytes(), bytes32(secret), "{wif}");
            assert_eq!(got_kind, kind, "{wif}");
            assert_eq!(key.to_wif(network), wif);
        }
    }

    /// Bitcoin Core `src/test/data/key_io_valid.json`: P2PKH addresses.
    #[test]
    fn bitcoin_core_key_io_addresses() {
        for (address, hash, network) in [
            (
                "1FsSia9rv4NeEwvJ2GvXrX7LyxYspbN2mo",
                "a31c06bd463e3923bc1aadbde48b16976c080717",
                Network::Main,
            ),
            (
                "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ",
                "ce28b26c57472737f5c3561a1761185bd8589a43",
                Network::Test,
            ),
            (
                "n4fajahJrAuKbN7uNsKjLjQkz9Qn5ewJXQ",
                "fdeca3b08e38af53d7c4c60e3ad208ce50664410",
                Network::Regtest,
            ),
        ] {
            let parsed = Address::parse(address, network).expect("published valid address");
            assert_eq!(parsed.pubkey_hash(), pubkey_hash(hash));
            assert_eq!(parsed, Address::new(network, pubkey_hash(hash)));
            assert!(parsed.is_valid_for(network));
            assert_eq!(parsed.to_string(), address);
        }
    }

    #[test]
    fn test_prefix_addresses_are_valid_on_test_and_regtest_but_not_main() {
        let address: Address = "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ".parse().expect("valid");
        assert_eq!(address.network_kind(), NetworkKind::Test);
        assert!(address.is_valid_for(Network::Test));
        assert!(address.is_valid_for(Network::Regtest));
        assert!(!address.is_valid_for(Network::Main));
        assert_eq!(Address::new(Network::Test, address.pubkey_hash()), address);
        assert_eq!(Address::new(Network::Regtest, address.pubkey_hash()), address);
    }

    #[test]
    fn private_key_range_is_checked() {
        let n = bytes32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
        let n_minus_1 = bytes32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140");
        assert_eq!(PrivateKey::from_bytes(&[0; 32]), Err(KeyError::PrivateKeyOutOfRange));
        assert_eq!(PrivateKey::from_bytes(&n), Err(KeyError::PrivateKeyOutOfRange));
        assert_eq!(PrivateKey::from_bytes(&[0xff; 32]), Err(KeyError::PrivateKeyOutOfRange));
        let max = PrivateKey::from_bytes(&n_minus_1).expect("n - 1 is the largest valid scalar");
        assert_eq!(max.to_bytes(), n_minus_1);
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let secret = bytes32("12b004fff7f4b69ef8650e767f18f11ede158148b425660723b9f9a66e61f747");
        let key = PrivateKey::from_bytes(&secret).expect("valid scalar");
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains("12b004ff"), "{shown}");
        assert!(!shown.to_lowercase().contains(&hex::encode(&secret[8..16])), "{shown}");
        assert!(shown.contains("030b4c866585dd86"), "{shown}");
    }

    #[test]
    fn public_key_parsing_accepts_only_compressed_points() {
        let generator: [u8; 33] =
            hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .expect("valid hex")
                .try_into()
                .expect("33 bytes");
        let key = PublicKey::from_bytes(&generator).expect("the generator");
        assert_eq!(key.to_bytes(), generator);

        let mut bad = generator;
        // 0x05 is SEC1's compact form, which k256 alone would accept for this x.
        for prefix in [0x00, 0x01, 0x04, 0x05, 0x06, 0x07, 0xff] {
            bad[0] = prefix;
            assert_eq!(PublicKey::from_bytes(&bad), Err(KeyError::InvalidPublicKey), "{prefix}");
        }
        // x = 5 is not on the curve (5^3 + 7 = 132 is not a square mod p).
        let mut not_on_curve = [0u8; 33];
        not_on_curve[0] = 0x02;
        not_on_curve[32] = 5;
        assert_eq!(PublicKey::from_bytes(&not_on_curve), Err(KeyError::InvalidPublicKey));
        // x = p is not a field element (and would alias x = 0 if reduced).
        let mut x_is_p = [0u8; 33];
        x_is_p[0] = 0x02;
        hex::decode_to_slice(
            "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f",
            &mut x_is_p[1..],
        )
        .expect("valid hex");
        assert_eq!(PublicKey::from_bytes(&x_is_p), Err(KeyError::InvalidPublicKey));
        assert_eq!(PublicKey::from_bytes(&[0; 33]), Err(KeyError::InvalidPublicKey));
    }

    #[test]
    fn address_errors_are_distinct() {
        let valid = "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH";
        // '0', 'O', 'I' and 'l' are not in the base58 alphabet.
        assert_eq!(
            Address::parse("1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAM0", Network::Main),
            Err(AddressError::InvalidCharacter { character: '0', index: 33 })
        );
        assert_eq!(
            Address::parse("1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMé", Network::Main),
            Err(AddressError::InvalidCharacter { character: 'é', index: 33 })
        );
        // A one-character typo of key 1's test address (mrCDrCybB6...): wrong checksum.
        assert_eq!(
            Address::parse("mvCDrCyzkUJX5k8UL4dpm3z2gWt8u2hv4b", Network::Test),
            Err(AddressError::Checksum)
        );
        let mut last_changed = valid.to_owned();
        last_changed.replace_range(33.., "J");
        assert_eq!(Address::parse(&last_changed, Network::Main), Err(AddressError::Checksum));
        assert_eq!(Address::parse("", Network::Main), Err(AddressError::Checksum));
        assert_eq!(
            Address::parse(&check_encode(&[0u8; 20]), Network::Main),
            Err(AddressError::Length { len: 20 })
        );
        assert_eq!(
            Address::parse(&check_encode(&[0u8; 22]), Network::Main),
            Err(AddressError::Length { len: 22 })
        );
        // A compressed WIF is not an address.
        assert_eq!(
            Address::parse("KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn", Network::Main),
            Err(AddressError::Length { len: 34 })
        );
        // P2SH addresses from Bitcoin Core's key_io_valid.json: version 0x05 and 0xc4.
        assert_eq!(
            Address::parse("36j4NfKv6Akva9amjWrLG6MuSQym1GuEmm", Network::Main),
            Err(AddressError::UnknownVersion(0x05))
        );
        assert_eq!(
            Address::parse("2NC2hEhe28ULKAJkW5MjZ3jtTMJdvXmByvK", Network::Test),
            Err(AddressError::UnknownVersion(0xc4))
        );
        assert_eq!(
            Address::parse(valid, Network::Test),
            Err(AddressError::WrongNetwork { expected: Network::Test, found: NetworkKind::Main })
        );
        assert_eq!(
            Address::parse("mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r", Network::Main),
            Err(AddressError::WrongNetwork { expected: Network::Main, found: NetworkKind::Test })
        );
        assert_eq!(
            Address::parse(&"1".repeat(1_000_000), Network::Main),
            Err(AddressError::TooLong { len: 1_000_000 })
        );
    }

    #[test]
    fn address_error_messages_name_the_networks() {
        let error = Address::parse("mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r", Network::Main)
            .expect_err("a test address on main");
        assert_eq!(error.to_string(), "address is for test or regtest, not main");
    }

    #[test]
    fn wif_errors_are_distinct() {
        let secret = bytes32("0c28fca386c7a227600b2fe50b7cae11ec86d3bf1fbe471be89827e19d72aa1d");
        let mut payload = vec![0x80];
        payload.extend_from_slice(&secret);

        // Bitcoin's famous uncompressed WIF (the same secret, no 0x01 flag).
        assert_eq!(
            PrivateKey::from_wif("5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ"),
            Err(WifError::Uncompressed)
        );
        assert_eq!(PrivateKey::from_wif(&check_encode(&payload)), Err(WifError::Uncompressed));
        let mut flagged = payload.clone();
        flagged.push(0x02);
        assert_eq!(
            PrivateKey::from_wif(&check_encode(&flagged)),
            Err(WifError::CompressionFlag(2))
        );
        flagged[33] = 0x01;
        assert!(PrivateKey::from_wif(&check_encode(&flagged)).is_ok());
        flagged[0] = 0x00;
        assert_eq!(PrivateKey::from_wif(&check_encode(&flagged)), Err(WifError::UnknownPrefix(0)));
        flagged.push(0x00);
        assert_eq!(
            PrivateKey::from_wif(&check_encode(&flagged)),
            Err(WifError::Length { len: 35 })
        );
        // Bitcoin Core's strAddressBad: an address, so not a private key.
        assert_eq!(
            PrivateKey::from_wif("1HV9Lc3sNHZxwj4Zk6fB38tEmBryq2cBiF"),
            Err(WifError::Length { len: 21 })
        );
        // A one-character typo of key 1's WIF (…VrZi3qY…): the checksum fails.
        assert_eq!(
            PrivateKey::from_wif("KwDiBf89QgGbjEhKnhXJuH7LrciVrZi6qYjgd9M7rFU73sVHnoWn"),
            Err(WifError::Checksum)
        );
        // Last character changed: the checksum fails.
        assert_eq!(
            PrivateKey::from_wif("KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWo"),
            Err(WifError::Checksum)
        );
        assert_eq!(
            PrivateKey::from_wif("KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoW0"),
            Err(WifError::InvalidCharacter { character: '0', index: 51 })
        );
        let mut zero = vec![0x80];
        zero.extend_from_slice(&[0; 32]);
        zero.push(0x01);
        assert_eq!(PrivateKey::from_wif(&check_encode(&zero)), Err(WifError::OutOfRange));
        assert_eq!(PrivateKey::from_wif(&"K".repeat(65)), Err(WifError::TooLong { len: 65 }));
    }

    #[test]
    fn address_serde_is_the_string_form() {
        let text = "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH";
        let address: Address = text.parse().expect("valid");
        // Through any serde format the address is its string: here the canonical
        // encoding shows it as a length-prefixed string.
        let bytes = crate::encode::serialize(&address);
        assert_eq!(bytes, crate::encode::serialize(text));
        let back: Address = crate::encode::deserialize(&bytes, 100).expect("decodes");
        assert_eq!(back, address);
        let test_text = "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r";
        let back: Address = crate::encode::deserialize(&crate::encode::serialize(test_text), 100)
            .expect("a test address decodes too");
        assert_eq!(back.network_kind(), NetworkKind::Test);
        let bad = crate::encode::serialize("mvCDrCyzkUJX5k8UL4dpm3z2gWt8u2hv4b");
        assert!(crate::encode::deserialize::<Address>(&bad, 100).is_err());
    }

    proptest! {
        #[test]
        fn wif_and_address_round_trip(secret in any::<[u8; 32]>(), n in 0..3usize) {
            let network = Network::ALL[n];
            let Ok(key) = PrivateKey::from_bytes(&secret) else {
                return Ok(());
            };
            prop_assert_eq!(key.to_bytes(), secret);
            let wif = key.to_wif(network);
            prop_assert_eq!(PrivateKey::from_wif(&wif), Ok((key.clone(), NetworkKind::of(network))));
            let public = key.public_key();
            prop_assert_eq!(PublicKey::from_bytes(&public.to_bytes()), Ok(public));
            let address = public.address(network);
            prop_assert_eq!(Address::parse(&address.to_string(), network), Ok(address));
        }

        #[test]
        fn parsing_arbitrary_strings_never_panics(s in "\\PC{0,70}") {
            let _ = s.parse::<Address>();
            let _ = PrivateKey::from_wif(&s);
        }

        #[test]
        fn parsing_arbitrary_public_keys_never_panics(bytes in any::<[u8; 32]>(), prefix in 0u8..8) {
            let mut key = [prefix; 33];
            key[1..].copy_from_slice(&bytes);
            if let Ok(public) = PublicKey::from_bytes(&key) {
                // Only canonical encodings parse.
                prop_assert_eq!(public.to_bytes(), key);
            }
        }
    }
}
