//! Seed phrases and key derivation: BIP39 mnemonics, BIP32 keys on BIP44 paths.
//!
//! Owns how a wallet's keys follow from its seed phrase, so that a phrase gives the
//! same addresses here as in any BIP39/BIP44 Bitcoin wallet: the seed is BIP39's
//! (PBKDF2 of the English phrase and an optional passphrase), the account key is
//! BIP32's `m/44'/coin'/0'` (coin type 0 on main, 1 on test and regtest), and the
//! receive and change keys are `…/0/i` and `…/1/i` under it, P2PKH with the version
//! bytes of `tinychain_protocol::keys`. The account's extended public key (`xpub` on
//! main, `tpub` elsewhere) derives every address without the seed. The work is
//! `bip39`'s and `bip32`'s (RustCrypto, on the workspace's k256); this module only
//! fixes the paths and checks what comes from outside. No I/O.

use std::fmt;
use std::str::FromStr;

use bip32::{ChildNumber, DerivationPath, ExtendedKey, Prefix, XPrv, XPub};
use bip39::Mnemonic;
use tinychain_protocol::keys::{Address, PrivateKey, PublicKey};
use tinychain_protocol::params::Network;
use zeroize::Zeroizing;

/// BIP44's purpose field.
const PURPOSE: u32 = 44;
/// The one account a wallet uses.
const ACCOUNT: u32 = 0;
/// Where an account key sits in the tree: purpose, coin type, account.
const ACCOUNT_DEPTH: u8 = 3;

/// An error in a seed phrase or a derivation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The seed phrase is not a valid BIP39 English phrase.
    #[error("the seed phrase is not valid: {0}")]
    Mnemonic(String),
    /// The extended public key is malformed, private, or of another network or depth.
    #[error("the account key {key:?} is not valid here: {reason}")]
    AccountKey {
        /// The key as written (public only; never a private key).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A path is not one of this account's receive or change paths.
    #[error("{0:?} is not a receive or change path of this wallet's account")]
    Path(String),
    /// An index past 2^31 - 1, or one of the 2^-127 indexes BIP32 skips.
    #[error("no key at index {0} (BIP32 skips it, or it is past 2^31 - 1)")]
    Index(u32),
}

/// The BIP44 coin type of a network: 0 on main, 1 ("testnet, all coins") elsewhere.
pub fn coin_type(network: Network) -> u32 {
    match network {
        Network::Main => 0,
        Network::Test | Network::Regtest => 1,
    }
}

/// Which of an account's two chains a key is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chain {
    /// `…/0/i`: addresses given out to be paid.
    Receive,
    /// `…/1/i`: the wallet's own change.
    Change,
}

impl Chain {
    fn number(self) -> u32 {
        match self {
            Chain::Receive => 0,
            Chain::Change => 1,
        }
    }
}

/// A key's place under the account: its chain and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath {
    /// Receive or change.
    pub chain: Chain,
    /// The index on that chain.
    pub index: u32,
}

impl KeyPath {
    /// Returns the full BIP44 path on `network`, e.g. `m/44'/1'/0'/0/5`.
    pub fn display(&self, network: Network) -> String {
        format!(
            "m/{PURPOSE}'/{}'/{ACCOUNT}'/{}/{}",
            coin_type(network),
            self.chain.number(),
            self.index
        )
    }

    /// Parses a full path written by [`KeyPath::display`] for `network`.
    ///
    /// # Errors
    ///
    /// [`Error::Path`] for any other path.
    pub fn parse(path: &str, network: Network) -> Result<KeyPath, Error> {
        let bad = || Error::Path(path.to_owned());
        let prefix = format!("m/{PURPOSE}'/{}'/{ACCOUNT}'/", coin_type(network));
        let rest = path.strip_prefix(&prefix).ok_or_else(bad)?;
        let (chain, digits) = rest.split_once('/').ok_or_else(bad)?;
        let chain = match chain {
            "0" => Chain::Receive,
            "1" => Chain::Change,
            _ => return Err(bad()),
        };
        let index: u32 = digits.parse().map_err(|_| bad())?;
        // One spelling per path: no leading zeros, no hardened indexes.
        if index >= 1 << 31 || index.to_string() != digits {
            return Err(bad());
        }
        Ok(KeyPath { chain, index })
    }
}

/// How many words a new seed phrase has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Words {
    /// 12 words: 128 bits of entropy.
    Twelve,
    /// 24 words: 256 bits.
    TwentyFour,
}

impl Words {
    /// Returns the number of words, 12 or 24.
    pub fn count(self) -> usize {
        match self {
            Words::Twelve => 12,
            Words::TwentyFour => 24,
        }
    }
}

/// Makes a new English seed phrase from the operating system's randomness.
///
/// # Errors
///
/// The OS has no randomness to give.
pub fn generate_mnemonic(words: Words) -> Result<Mnemonic, getrandom::Error> {
    let mut entropy = Zeroizing::new([0u8; 32]);
    let len = words.count() * 4 / 3;
    getrandom::fill(&mut entropy[..len])?;
    Ok(Mnemonic::from_entropy(&entropy[..len]).expect("16 or 32 bytes are valid BIP39 entropy"))
}

/// Reads an English seed phrase as a person typed it: any case, any spacing.
///
/// # Errors
///
/// [`Error::Mnemonic`]: an unknown word (named by position), a wrong number of
/// words, or a bad checksum (a word mistyped or out of order).
pub fn parse_mnemonic(text: &str) -> Result<Mnemonic, Error> {
    let words = Zeroizing::new(text.split_whitespace().collect::<Vec<_>>().join(" "));
    let lower = Zeroizing::new(words.to_lowercase());
    Mnemonic::parse_in_normalized(bip39::Language::English, &lower).map_err(|e| {
        Error::Mnemonic(match e {
            bip39::Error::UnknownWord(i) => format!("word {} is not in the English list", i + 1),
            bip39::Error::BadWordCount(n) => {
                format!("{n} words; a phrase has 12, 15, 18, 21 or 24")
            }
            bip39::Error::InvalidChecksum => {
                "the checksum does not match: a word is mistyped or out of order".to_owned()
            }
            other => other.to_string(),
        })
    })
}

/// Returns the 64-byte BIP39 seed of `mnemonic` with `passphrase` ("" for none).
pub fn seed(mnemonic: &Mnemonic, passphrase: &str) -> Zeroizing<[u8; 64]> {
    Zeroizing::new(mnemonic.to_seed(passphrase))
}

fn account_path(network: Network) -> DerivationPath {
    format!("m/{PURPOSE}'/{}'/{ACCOUNT}'", coin_type(network))
        .parse()
        .expect("a well-formed constant path")
}

fn child(index: u32, hardened: bool) -> Result<ChildNumber, Error> {
    ChildNumber::new(index, hardened).map_err(|_| Error::Index(index))
}

/// The extended public key prefix of `network`: `xpub` on main, `tpub` elsewhere.
fn public_prefix(network: Network) -> Prefix {
    match network {
        Network::Main => Prefix::XPUB,
        Network::Test | Network::Regtest => Prefix::TPUB,
    }
}

/// The account's extended private key (`m/44'/coin'/0'`): every key of the wallet.
pub struct AccountKey {
    xprv: XPrv,
    network: Network,
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountKey({})", self.xpub())
    }
}

impl AccountKey {
    /// Derives the account key of `seed` on `network`.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] for one of the seeds BIP32 cannot use (probability 2^-127).
    pub fn from_seed(seed: &[u8; 64], network: Network) -> Result<AccountKey, Error> {
        let xprv = XPrv::derive_from_path(seed, &account_path(network))
            .map_err(|_| Error::Index(ACCOUNT))?;
        Ok(AccountKey { xprv, network })
    }

    /// Returns the account's extended public key.
    pub fn xpub(&self) -> AccountXpub {
        AccountXpub { xpub: self.xprv.public_key(), network: self.network }
    }

    /// Returns the private key at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] if BIP32 skips that index.
    pub fn private_key(&self, path: KeyPath) -> Result<PrivateKey, Error> {
        let key = self
            .xprv
            .derive_child(child(path.chain.number(), false)?)
            .and_then(|k| k.derive_child(ChildNumber::new(path.index, false)?))
            .map_err(|_| Error::Index(path.index))?;
        let secret = Zeroizing::new(key.private_key().to_bytes());
        let bytes: &[u8; 32] =
            secret.as_slice().try_into().map_err(|_| Error::Index(path.index))?;
        PrivateKey::from_bytes(bytes).map_err(|_| Error::Index(path.index))
    }
}

/// The account's extended public key: every address of the wallet, no secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountXpub {
    xpub: XPub,
    network: Network,
}

impl fmt::Debug for AccountXpub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountXpub({self})")
    }
}

impl fmt::Display for AccountXpub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.xpub.to_string(public_prefix(self.network)))
    }
}

impl AccountXpub {
    /// Reads an account key written by [`AccountXpub`]'s `Display` for `network`.
    ///
    /// # Errors
    ///
    /// [`Error::AccountKey`]: not Base58Check, a private key, another network's
    /// prefix, or not at the account's depth.
    pub fn parse(text: &str, network: Network) -> Result<AccountXpub, Error> {
        let bad = |reason: &str| Error::AccountKey {
            // A private key is not echoed back.
            key: if text.starts_with("xpub") || text.starts_with("tpub") {
                text.to_owned()
            } else {
                "…".to_owned()
            },
            reason: reason.to_owned(),
        };
        let key = ExtendedKey::from_str(text).map_err(|_| bad("not an extended key"))?;
        if key.prefix != public_prefix(network) {
            return Err(bad(&format!(
                "{} keys are not {network} account keys (want {})",
                key.prefix.as_str(),
                public_prefix(network).as_str()
            )));
        }
        if key.attrs.depth != ACCOUNT_DEPTH {
            return Err(bad("not at an account's depth (m/44'/coin'/0')"));
        }
        let xpub = XPub::try_from(key).map_err(|_| bad("not a point on secp256k1"))?;
        Ok(AccountXpub { xpub, network })
    }

    /// Returns the public key at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] if BIP32 skips that index.
    pub fn public_key(&self, path: KeyPath) -> Result<PublicKey, Error> {
        let key = self
            .xpub
            .derive_child(child(path.chain.number(), false)?)
            .and_then(|k| k.derive_child(ChildNumber::new(path.index, false)?))
            .map_err(|_| Error::Index(path.index))?;
        PublicKey::from_bytes(&key.to_bytes()).map_err(|_| Error::Index(path.index))
    }

    /// Returns the address at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Index`] if BIP32 skips that index.
    pub fn address(&self, path: KeyPath) -> Result<Address, Error> {
        Ok(self.public_key(path)?.address(self.network))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn vectors(name: &str) -> Value {
        let text = match name {
            "bip39" => include_str!("../testdata/bip39-english.json"),
            "bip32" => include_str!("../testdata/bip32.json"),
            _ => include_str!("../testdata/bip44.json"),
        };
        serde_json::from_str(text).expect("the vectors are JSON")
    }

    fn s(v: &Value) -> &str {
        v.as_str().expect("a string")
    }

    #[test]
    fn the_bip39_reference_vectors_give_their_phrases_seeds_and_root_keys() {
        let v = vectors("bip39");
        let passphrase = s(&v["passphrase"]);
        let all = v["english"].as_array().expect("vectors");
        assert_eq!(all.len(), 24);
        for vector in all {
            let entropy = hex::decode(s(&vector[0])).expect("hex");
            let mnemonic = Mnemonic::from_entropy(&entropy).expect("valid entropy");
            assert_eq!(mnemonic.to_string(), s(&vector[1]));
            let parsed = parse_mnemonic(&s(&vector[1]).to_uppercase().replace(' ', "  \n"))
                .expect("the phrase parses, whatever its case and spacing");
            assert_eq!(parsed, mnemonic);
            let seed = seed(&parsed, passphrase);
            assert_eq!(hex::encode(*seed), s(&vector[2]));
            let root = XPrv::new(&*seed).expect("a root key");
            assert_eq!(root.to_string(Prefix::XPRV).as_str(), s(&vector[3]));
        }
    }

    #[test]
    fn the_bip32_vectors_derive_their_keys() {
        let v = vectors("bip32");
        for vector in v["vectors"].as_array().expect("vectors") {
            let seed = hex::decode(s(&vector["seed"])).expect("hex");
            for chain in vector["chains"].as_array().expect("chains") {
                let path: DerivationPath = s(&chain[0]).parse().expect("a path");
                let xprv = XPrv::derive_from_path(&seed, &path).expect("derives");
                assert_eq!(xprv.public_key().to_string(Prefix::XPUB), s(&chain[1]), "{path}");
                assert_eq!(xprv.to_string(Prefix::XPRV).as_str(), s(&chain[2]), "{path}");
            }
        }
    }

    fn path_of(text: &str, network: Network) -> KeyPath {
        KeyPath::parse(text, network).expect("a wallet path")
    }

    #[test]
    fn a_seed_phrase_gives_the_addresses_of_any_bip44_wallet() {
        let v = vectors("bip44");
        let mnemonic = parse_mnemonic(s(&v["mnemonic"])).expect("valid");
        for (network, name) in
            [(Network::Main, "main"), (Network::Test, "test"), (Network::Regtest, "test")]
        {
            let account = AccountKey::from_seed(&seed(&mnemonic, ""), network).expect("derives");
            let xpub = account.xpub();
            if network == Network::Main {
                assert_eq!(xpub.to_string(), s(&v["main"]["account_xpub"]));
            }
            for pair in v[name]["addresses"].as_array().expect("addresses") {
                let path = path_of(s(&pair[0]), network);
                assert_eq!(path.display(network), s(&pair[0]));
                assert_eq!(xpub.address(path).expect("derives").to_string(), s(&pair[1]));
                // The private key at the path has the same address.
                let key = account.private_key(path).expect("derives");
                assert_eq!(key.public_key().address(network).to_string(), s(&pair[1]));
            }
            // The account key survives its text form.
            assert_eq!(AccountXpub::parse(&xpub.to_string(), network), Ok(xpub));
        }
    }

    #[test]
    fn account_keys_from_outside_are_checked() {
        let mnemonic = generate_mnemonic(Words::Twelve).expect("randomness");
        let account = AccountKey::from_seed(&seed(&mnemonic, ""), Network::Regtest).expect("ok");
        let tpub = account.xpub().to_string();
        assert!(tpub.starts_with("tpub"));
        let err = AccountXpub::parse(&tpub, Network::Main).expect_err("another network");
        assert!(err.to_string().contains("want xpub"), "{err}");
        let tprv = account.xprv.to_string(Prefix::TPRV);
        let err = AccountXpub::parse(&tprv, Network::Regtest).expect_err("a private key");
        assert!(!err.to_string().contains(tprv.as_str()), "a private key is never echoed");
        let root = XPrv::new(&[7u8; 64]).expect("root").public_key().to_string(Prefix::TPUB);
        assert!(AccountXpub::parse(&root, Network::Regtest).is_err(), "depth 0");
        assert!(AccountXpub::parse("tpubnonsense", Network::Regtest).is_err());
    }

    #[test]
    fn bad_phrases_say_what_is_wrong() {
        let ok = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        let err = parse_mnemonic(&ok.replace("about", "abandon")).expect_err("checksum");
        assert!(err.to_string().contains("checksum"), "{err}");
        let err = parse_mnemonic(&ok.replacen("abandon", "abandonn", 1)).expect_err("unknown");
        assert!(err.to_string().contains("word 1 is not in the English list"), "{err}");
        let err = parse_mnemonic("abandon about").expect_err("too short");
        assert!(err.to_string().contains("2 words"), "{err}");
        assert_eq!(generate_mnemonic(Words::TwentyFour).expect("randomness").word_count(), 24);
        assert_ne!(
            generate_mnemonic(Words::Twelve).expect("randomness"),
            generate_mnemonic(Words::Twelve).expect("randomness")
        );
    }

    #[test]
    fn only_this_accounts_paths_parse() {
        assert_eq!(
            path_of("m/44'/1'/0'/1/7", Network::Regtest),
            KeyPath { chain: Chain::Change, index: 7 }
        );
        for bad in [
            "m/44'/0'/0'/0/1",
            "m/44'/1'/0'/2/1",
            "m/44'/1'/0'/0/01",
            "m/44'/1'/0'/0/2147483648",
            "m/44'/1'/0'/0",
            "m/44'/1'/0'/0/1/2",
        ] {
            assert!(KeyPath::parse(bad, Network::Test).is_err(), "{bad}");
        }
    }
}
