//! The wallet file: an HD account, its addresses with labels, the sealed secrets and
//! the records of the wallet's own sent transactions.
//!
//! Owns the on-disk format (JSON with a `format` tag, a format version and the
//! network) and what it may hold. In the clear: the account's extended public key
//! (`m/44'/coin'/0'`, see [`crate::hd`]), which derives every receive and change
//! address, the addresses with their labels and paths, and the sent records. Sealed
//! under the wallet passphrase ([`crate::vault`]): the seed phrase, its BIP39
//! passphrase and the WIFs of imported keys; no private key or seed is ever written
//! in the clear. Loading checks everything (a corrupt, foreign, newer or
//! other-network file is refused with a clear error and never rewritten; every
//! address must follow from the account key); unlocking checks that the seed behind
//! the passphrase is the account's. A version 1 file (random keys in the clear) is
//! read for the read-only commands and turned into version 2 in place by
//! [`Wallet::upgrade`]; it is never written back as version 1. Saving is atomic, mode
//! 0600, under an exclusive lock (`disk`). It never talks to a node and never prints.

mod disk;
mod v1;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bip39::Mnemonic;
use serde::{Deserialize, Serialize};
use tinychain_protocol::keys::{Address, PrivateKey};
use tinychain_protocol::params::Network;
use tinychain_protocol::{Amount, PubkeyHash, Transaction, Txid};
use tinychain_rpc_client::types::{as_string, as_string_vec};
use zeroize::{Zeroize, Zeroizing};

pub use disk::Lock;

use crate::hd::{self, AccountKey, AccountXpub, Chain, KeyPath};
use crate::vault::{self, Kdf, Sealed};

/// The value of the `format` field: what kind of file this is.
pub const FORMAT: &str = "tinychain-wallet";
/// The format version this program writes.
pub const VERSION: u32 = 2;
/// How many unused addresses in a row end a restore's scan, unless told otherwise.
pub const DEFAULT_GAP_LIMIT: u32 = 20;

/// An error loading, unlocking or saving the wallet file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no file.
    #[error("no wallet file at {0} (make one with `tinychain-wallet create` or `restore`)")]
    NotFound(PathBuf),
    /// `create` found a file already there.
    #[error("a wallet file already exists at {0}; it is never overwritten")]
    Exists(PathBuf),
    /// The file is not valid JSON of the expected shape, or its contents do not check out.
    #[error("wallet file {path} is corrupt ({reason}); it was left untouched")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is JSON, but not a tinychain wallet.
    #[error("{path} is not a tinychain wallet file (format {found:?}); it was left untouched")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its `format` field.
        found: String,
    },
    /// A wallet written by a newer (or unknown) version.
    #[error(
        "wallet file {path} has format version {found}; this program reads versions 1 and {VERSION}"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u64,
    },
    /// A wallet of another network.
    #[error("wallet file {path} is for {found}, not {expected} (use --network {found})")]
    WrongNetwork {
        /// The file.
        path: PathBuf,
        /// The network asked for.
        expected: Network,
        /// The file's network.
        found: String,
    },
    /// A version 1 file, asked for something only version 2 does.
    #[error(
        "wallet file {0} is format version 1, with its keys in the clear: run `tinychain-wallet \
         upgrade` to encrypt it under a passphrase and give it a seed phrase (in place)"
    )]
    NeedsUpgrade(PathBuf),
    /// The passphrase does not open the secrets, or they are unusable.
    #[error("wallet file {path}: {cause}; nothing was changed")]
    Locked {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: vault::Error,
    },
    /// The public part (account key, addresses) does not match the sealed secrets.
    #[error("wallet file {path} does not match its own secrets ({reason}); it was left untouched")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// The key is already in the wallet.
    #[error("the wallet already has the key of {0}")]
    DuplicateKey(Address),
    /// A derivation failed.
    #[error(transparent)]
    Hd(#[from] hd::Error),
    /// The OS failed.
    #[error("wallet file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
}

/// One address of the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The address (checked against its path or imported key).
    pub address: Address,
    /// The user's label ("" for none).
    pub label: String,
    /// Whether the wallet made it for change.
    pub change: bool,
    /// Its BIP44 path (`m/44'/1'/0'/0/3`); `None` for an imported key.
    #[serde(default)]
    pub path: Option<String>,
}

/// A transaction the wallet made and broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentRecord {
    /// Its txid.
    #[serde(with = "as_string")]
    pub txid: Txid,
    /// Who it pays.
    pub to: Address,
    /// How much it pays them, in belushis.
    pub amount: Amount,
    /// Its fee, in belushis.
    pub fee: Amount,
    /// The index of its change output, if it has one.
    pub change_vout: Option<u32>,
    /// The signed transaction, in hex (so its inputs and change are known while unconfirmed).
    pub hex: String,
    /// The transactions this one replaced (`bumpfee`), latest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "as_string_vec")]
    pub replaces: Vec<Txid>,
}

impl SentRecord {
    /// Decodes the stored transaction.
    pub fn transaction(&self) -> Option<Transaction> {
        hex::decode(&self.hex).ok().and_then(|b| Transaction::decode(&b).ok())
    }
}

/// The HD account as the file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountRecord {
    /// The BIP44 account path, for people reading the file.
    path: String,
    /// The account's extended public key.
    xpub: String,
    /// The next receive index to give out.
    next_receive: u32,
    /// The next change index to use.
    next_change: u32,
    /// Unused addresses in a row that end a restore's scan.
    gap_limit: u32,
}

/// A version 2 file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV2 {
    format: String,
    version: u32,
    network: Network,
    account: AccountRecord,
    secrets: Sealed,
    keys: Vec<KeyRecord>,
    sent: Vec<SentRecord>,
}

/// The secrets, as sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Secrets {
    mnemonic: String,
    bip39_passphrase: String,
    imported: Vec<String>,
}

impl Drop for Secrets {
    fn drop(&mut self) {
        self.mnemonic.zeroize();
        self.bip39_passphrase.zeroize();
        self.imported.iter_mut().for_each(Zeroize::zeroize);
    }
}

/// The HD account of a version 2 wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its extended public key.
    pub xpub: AccountXpub,
    /// The next receive index to give out.
    pub next_receive: u32,
    /// The next change index to use.
    pub next_change: u32,
    /// Unused addresses in a row that end a restore's scan.
    pub gap_limit: u32,
}

/// Where the keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Keys {
    /// Version 2: sealed.
    Sealed(Sealed),
    /// Version 1: WIFs in the clear (read, never written).
    Legacy,
}

/// The wallet: its network, account, addresses, secrets and sent transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    path: PathBuf,
    /// The network its keys and addresses are for.
    pub network: Network,
    account: Option<Account>,
    keys_at: Keys,
    /// The addresses, oldest first.
    pub keys: Vec<KeyRecord>,
    /// Transactions it sent, oldest first.
    pub sent: Vec<SentRecord>,
}

/// A wallet's secrets, opened with its passphrase; wiped from memory when dropped.
pub struct Unlocked {
    key: vault::Key,
    mnemonic: Mnemonic,
    bip39_passphrase: Zeroizing<String>,
    account: AccountKey,
    imported: HashMap<PubkeyHash, PrivateKey>,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked").field("account", &self.account).finish_non_exhaustive()
    }
}

impl Unlocked {
    /// Returns the seed phrase.
    pub fn mnemonic(&self) -> &Mnemonic {
        &self.mnemonic
    }

    /// Tells whether the seed uses a BIP39 passphrase.
    pub fn has_bip39_passphrase(&self) -> bool {
        !self.bip39_passphrase.is_empty()
    }
}

/// The associated data that binds sealed secrets to a file's format and network.
fn aad(network: Network) -> Vec<u8> {
    format!("{FORMAT}/{VERSION}/{}", network.name()).into_bytes()
}

fn hd_path(record: &KeyRecord, network: Network) -> Option<Result<KeyPath, hd::Error>> {
    record.path.as_deref().map(|p| KeyPath::parse(p, network))
}

impl Wallet {
    /// A new wallet on `network` for `mnemonic` (with `bip39_passphrase`), sealed
    /// under `passphrase`, with no address yet, to be written at `path`.
    ///
    /// # Errors
    ///
    /// The OS has no randomness; a derivation fails (2^-127).
    pub fn from_seed(
        path: &Path,
        network: Network,
        mnemonic: &Mnemonic,
        bip39_passphrase: &str,
        passphrase: &str,
        gap_limit: u32,
    ) -> Result<Wallet, Error> {
        Wallet::sealed(path, network, mnemonic, bip39_passphrase, passphrase, gap_limit, Vec::new())
    }

    fn sealed(
        path: &Path,
        network: Network,
        mnemonic: &Mnemonic,
        bip39_passphrase: &str,
        passphrase: &str,
        gap_limit: u32,
        imported: Vec<String>,
    ) -> Result<Wallet, Error> {
        let account = AccountKey::from_seed(&hd::seed(mnemonic, bip39_passphrase), network)?;
        let mut wallet = Wallet {
            path: path.to_owned(),
            network,
            account: Some(Account {
                xpub: account.xpub(),
                next_receive: 0,
                next_change: 0,
                gap_limit,
            }),
            keys_at: Keys::Legacy,
            keys: Vec::new(),
            sent: Vec::new(),
        };
        let key = wallet.fresh_key(passphrase)?;
        let secrets = Secrets {
            mnemonic: mnemonic.to_string(),
            bip39_passphrase: bip39_passphrase.to_owned(),
            imported,
        };
        wallet.keys_at = Keys::Sealed(wallet.seal(&key, &secrets)?);
        Ok(wallet)
    }

    fn fresh_key(&self, passphrase: &str) -> Result<vault::Key, Error> {
        let locked = |cause| Error::Locked { path: self.path.clone(), cause };
        Kdf::fresh().and_then(|kdf| kdf.derive(passphrase.as_bytes())).map_err(locked)
    }

    fn seal(&self, key: &vault::Key, secrets: &Secrets) -> Result<Sealed, Error> {
        let plain =
            Zeroizing::new(serde_json::to_vec(secrets).map_err(|e| Error::Io {
                path: self.path.clone(),
                cause: std::io::Error::other(e),
            })?);
        key.seal(&plain, &aad(self.network))
            .map_err(|cause| Error::Locked { path: self.path.clone(), cause })
    }

    /// Takes the exclusive lock of the wallet at `path` (waits for another command to
    /// finish). For `create` (`new`), makes the directory; otherwise the wallet must exist.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; the directory or lock file cannot be made or locked.
    pub fn lock(path: &Path, new: bool) -> Result<Lock, Error> {
        disk::lock(path, new)
    }

    /// Loads and checks the wallet at `path`; returns it with the file's exact bytes.
    ///
    /// # Errors
    ///
    /// See [`Error`]: missing, unreadable, corrupt, foreign, newer or of another network.
    pub fn load(path: &Path, network: Network) -> Result<(Wallet, Vec<u8>), Error> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(path.to_owned()));
            }
            Err(cause) => return Err(Error::Io { path: path.to_owned(), cause }),
        };
        let wallet = Wallet::parse(&bytes, path, network)?;
        Ok((wallet, bytes))
    }

    fn parse(bytes: &[u8], path: &Path, network: Network) -> Result<Wallet, Error> {
        let corrupt = |reason: String| Error::Corrupt { path: path.to_owned(), reason };
        // Look at the header first, so a foreign or newer file gets the right message.
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or_default();
        if format != FORMAT {
            return Err(Error::Foreign { path: path.to_owned(), found: format.to_owned() });
        }
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(1) && version != Some(u64::from(VERSION)) {
            return Err(Error::Version { path: path.to_owned(), found: version.unwrap_or(0) });
        }
        let file_network = value.get("network").and_then(|n| n.as_str()).unwrap_or_default();
        if file_network != network.name() {
            return Err(Error::WrongNetwork {
                path: path.to_owned(),
                expected: network,
                found: file_network.to_owned(),
            });
        }
        let wallet = if version == Some(1) {
            let contents = v1::read(value, network).map_err(corrupt)?;
            Wallet {
                path: path.to_owned(),
                network,
                account: None,
                keys_at: Keys::Legacy,
                keys: contents.keys,
                sent: contents.sent,
            }
        } else {
            let file: FileV2 = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
            file.secrets.check().map_err(|e| corrupt(e.to_string()))?;
            let xpub = AccountXpub::parse(&file.account.xpub, network)
                .map_err(|e| corrupt(e.to_string()))?;
            Wallet {
                path: path.to_owned(),
                network,
                account: Some(Account {
                    xpub,
                    next_receive: file.account.next_receive,
                    next_change: file.account.next_change,
                    gap_limit: file.account.gap_limit,
                }),
                keys_at: Keys::Sealed(file.secrets),
                keys: file.keys,
                sent: file.sent,
            }
        };
        wallet.check().map_err(corrupt)?;
        Ok(wallet)
    }

    /// Checks what needs no passphrase: addresses unique, each HD address follows
    /// from the account key, sent records decode.
    fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for key in &self.keys {
            if !seen.insert(key.address) {
                return Err(format!("address {} is listed twice", key.address));
            }
            let Some(path) = hd_path(key, self.network) else { continue };
            let path = path.map_err(|e| e.to_string())?;
            let account =
                self.account.as_ref().ok_or_else(|| "a version 1 file with paths".to_owned())?;
            let derived = account.xpub.address(path).map_err(|e| e.to_string())?;
            if derived != key.address || (path.chain == Chain::Change) != key.change {
                return Err(format!(
                    "address {} is not the account's {}",
                    key.address,
                    path.display(self.network)
                ));
            }
            let next = match path.chain {
                Chain::Receive => account.next_receive,
                Chain::Change => account.next_change,
            };
            if path.index >= next {
                return Err(format!("address {} is past the next index {next}", key.address));
            }
        }
        for record in &self.sent {
            if record.transaction().is_none_or(|tx| tx.txid() != record.txid) {
                return Err(format!("sent transaction {} does not decode", record.txid));
            }
        }
        Ok(())
    }

    /// Returns the path the wallet was loaded from (or will be written to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tells whether this is a version 1 file, read as it is.
    pub fn is_legacy(&self) -> bool {
        matches!(self.keys_at, Keys::Legacy)
    }

    /// Opens the secrets with `passphrase` and checks them against the public part.
    ///
    /// # Errors
    ///
    /// [`Error::NeedsUpgrade`] for a version 1 file; [`Error::Locked`] for a wrong
    /// passphrase; [`Error::Mismatch`] if the seed or imported keys are not those
    /// the file lists.
    pub fn unlock(&self, passphrase: &str) -> Result<Unlocked, Error> {
        let (Keys::Sealed(sealed), Some(account)) = (&self.keys_at, &self.account) else {
            return Err(Error::NeedsUpgrade(self.path.clone()));
        };
        let locked = |cause| Error::Locked { path: self.path.clone(), cause };
        let mismatch = |reason: String| Error::Mismatch { path: self.path.clone(), reason };
        let (key, plain) =
            sealed.open(passphrase.as_bytes(), &aad(self.network)).map_err(locked)?;
        let secrets: Secrets = serde_json::from_slice(&plain)
            .map_err(|e| mismatch(format!("the sealed secrets do not parse: {e}")))?;
        let mnemonic =
            hd::parse_mnemonic(&secrets.mnemonic).map_err(|e| mismatch(e.to_string()))?;
        let bip39_passphrase = Zeroizing::new(secrets.bip39_passphrase.clone());
        let account_key =
            AccountKey::from_seed(&hd::seed(&mnemonic, &bip39_passphrase), self.network)?;
        if account_key.xpub() != account.xpub {
            return Err(mismatch("the account key is not the seed's".to_owned()));
        }
        let mut imported = HashMap::new();
        for wif in &secrets.imported {
            let (private, _) = PrivateKey::from_wif(wif).map_err(|e| mismatch(e.to_string()))?;
            imported.insert(private.public_key().pubkey_hash(), private);
        }
        let listed: std::collections::HashSet<PubkeyHash> = self
            .keys
            .iter()
            .filter(|k| k.path.is_none())
            .map(|k| k.address.pubkey_hash())
            .collect();
        if listed != imported.keys().copied().collect() {
            return Err(mismatch("the imported keys are not the listed ones".to_owned()));
        }
        Ok(Unlocked { key, mnemonic, bip39_passphrase, account: account_key, imported })
    }

    /// Turns a version 1 wallet into a version 2 one: `mnemonic` becomes its seed,
    /// its keys become imported keys, all sealed under `passphrase`.
    ///
    /// # Errors
    ///
    /// As [`Wallet::from_seed`].
    pub fn upgrade(
        &self,
        mnemonic: &Mnemonic,
        bip39_passphrase: &str,
        passphrase: &str,
        wifs: &[Zeroizing<String>],
    ) -> Result<Wallet, Error> {
        let imported = wifs.iter().map(|w| w.to_string()).collect();
        let mut upgraded = Wallet::sealed(
            &self.path,
            self.network,
            mnemonic,
            bip39_passphrase,
            passphrase,
            DEFAULT_GAP_LIMIT,
            imported,
        )?;
        upgraded.keys = self.keys.clone();
        upgraded.sent = self.sent.clone();
        Ok(upgraded)
    }

    /// Returns a version 1 file's WIFs, read again from its bytes (for [`Wallet::upgrade`]).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the bytes are not the version 1 file this wallet was read from.
    pub fn legacy_wifs(&self, bytes: &[u8]) -> Result<Vec<Zeroizing<String>>, Error> {
        let corrupt = |reason: String| Error::Corrupt { path: self.path.clone(), reason };
        let value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        Ok(v1::read(value, self.network).map_err(corrupt)?.wifs)
    }

    /// Seals the secrets again under a new passphrase (new salt, new key).
    ///
    /// # Errors
    ///
    /// The OS has no randomness.
    pub fn change_passphrase(
        &mut self,
        unlocked: &Unlocked,
        new_passphrase: &str,
    ) -> Result<(), Error> {
        let key = self.fresh_key(new_passphrase)?;
        let sealed = self.seal(&key, &self.secrets_of(unlocked))?;
        self.keys_at = Keys::Sealed(sealed);
        Ok(())
    }

    fn secrets_of(&self, unlocked: &Unlocked) -> Secrets {
        let imported = self
            .keys
            .iter()
            .filter(|k| k.path.is_none())
            .filter_map(|k| unlocked.imported.get(&k.address.pubkey_hash()))
            .map(|key| key.to_wif(self.network))
            .collect();
        Secrets {
            mnemonic: unlocked.mnemonic.to_string(),
            bip39_passphrase: unlocked.bip39_passphrase.to_string(),
            imported,
        }
    }

    /// Adds an imported key, sealed with the others; returns its address.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateKey`] if the wallet has its address.
    pub fn import_key(
        &mut self,
        unlocked: &mut Unlocked,
        key: PrivateKey,
        label: &str,
    ) -> Result<Address, Error> {
        let address = key.public_key().address(self.network);
        if self.keys.iter().any(|k| k.address == address) {
            return Err(Error::DuplicateKey(address));
        }
        self.keys.push(KeyRecord { address, label: label.to_owned(), change: false, path: None });
        unlocked.imported.insert(address.pubkey_hash(), key);
        let sealed = self.seal(&unlocked.key, &self.secrets_of(unlocked))?;
        self.keys_at = Keys::Sealed(sealed);
        Ok(address)
    }

    /// Adds the next address of `chain` (no passphrase needed: the account key derives it).
    ///
    /// # Errors
    ///
    /// [`Error::NeedsUpgrade`] for a version 1 file; a derivation fails.
    pub fn next_address(&mut self, chain: Chain, label: &str) -> Result<Address, Error> {
        let account =
            self.account.as_mut().ok_or_else(|| Error::NeedsUpgrade(self.path.clone()))?;
        let next = match chain {
            Chain::Receive => &mut account.next_receive,
            Chain::Change => &mut account.next_change,
        };
        let path = KeyPath { chain, index: *next };
        let address = account.xpub.address(path)?;
        *next += 1;
        self.keys.push(KeyRecord {
            address,
            label: label.to_owned(),
            change: chain == Chain::Change,
            path: Some(path.display(self.network)),
        });
        Ok(address)
    }

    /// Returns the address at `path` without adding it.
    ///
    /// # Errors
    ///
    /// [`Error::NeedsUpgrade`] for a version 1 file; a derivation fails.
    pub fn address_at(&self, path: KeyPath) -> Result<Address, Error> {
        let account =
            self.account.as_ref().ok_or_else(|| Error::NeedsUpgrade(self.path.clone()))?;
        Ok(account.xpub.address(path)?)
    }

    /// Returns the private key of `pubkey_hash`, if the wallet has it.
    pub fn private_key(&self, unlocked: &Unlocked, pubkey_hash: &PubkeyHash) -> Option<PrivateKey> {
        let record = self.keys.iter().find(|k| k.address.pubkey_hash() == *pubkey_hash)?;
        match hd_path(record, self.network) {
            Some(path) => unlocked.account.private_key(path.ok()?).ok(),
            None => unlocked.imported.get(pubkey_hash).cloned(),
        }
    }

    /// Writes a new wallet file (creating its directory, mode 0700).
    ///
    /// # Errors
    ///
    /// [`Error::Exists`] if there is a file; I/O errors.
    pub fn create(&self) -> Result<(), Error> {
        if self.path.symlink_metadata().is_ok() {
            return Err(Error::Exists(self.path.clone()));
        }
        disk::make_dir(&self.path)?;
        self.save()
    }

    /// Replaces the file with this wallet, atomically.
    ///
    /// # Errors
    ///
    /// [`Error::NeedsUpgrade`] for a version 1 file (never written back); I/O errors,
    /// and then the old file is unchanged.
    pub fn save(&self) -> Result<(), Error> {
        let (Keys::Sealed(secrets), Some(account)) = (&self.keys_at, &self.account) else {
            return Err(Error::NeedsUpgrade(self.path.clone()));
        };
        let file = FileV2 {
            format: FORMAT.to_owned(),
            version: VERSION,
            network: self.network,
            account: AccountRecord {
                path: format!("m/44'/{}'/0'", hd::coin_type(self.network)),
                xpub: account.xpub.to_string(),
                next_receive: account.next_receive,
                next_change: account.next_change,
                gap_limit: account.gap_limit,
            },
            secrets: secrets.clone(),
            keys: self.keys.clone(),
            sent: self.sent.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::Io { path: self.path.clone(), cause: std::io::Error::other(e) })?;
        bytes.push(b'\n');
        disk::write_atomic(&self.path, &bytes)
    }

    /// Puts back the exact bytes a file had (after a failed broadcast).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub fn put_back(&self, bytes: &[u8]) -> Result<(), Error> {
        disk::write_atomic(&self.path, bytes)
    }

    /// Returns every address of the wallet.
    pub fn addresses(&self) -> Vec<Address> {
        self.keys.iter().map(|k| k.address).collect()
    }

    /// Tells whether `pubkey_hash` is one of the wallet's.
    pub fn owns(&self, pubkey_hash: &PubkeyHash) -> bool {
        self.keys.iter().any(|k| k.address.pubkey_hash() == *pubkey_hash)
    }

    /// Returns the record of `address`.
    pub fn key_record(&self, address: &Address) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.address == *address)
    }
}

/// Makes a fresh private key from the operating system's randomness.
///
/// # Errors
///
/// The OS has no randomness to give.
pub fn generate_key() -> Result<PrivateKey, getrandom::Error> {
    loop {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut_slice())?;
        // Fails only for 0 or ≥ the curve order: about 2^-128 of draws.
        if let Ok(key) = PrivateKey::from_bytes(&secret) {
            return Ok(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    fn phrase() -> Mnemonic {
        hd::parse_mnemonic(PHRASE).expect("valid")
    }

    /// A regtest wallet of the all-abandon phrase at `path`, with two receive
    /// addresses and a change address, written.
    fn sample(path: &Path) -> Wallet {
        let mut wallet =
            Wallet::from_seed(path, Network::Regtest, &phrase(), "", "pw", DEFAULT_GAP_LIMIT)
                .expect("made");
        wallet.next_address(Chain::Receive, "first").expect("derives");
        wallet.next_address(Chain::Receive, "").expect("derives");
        wallet.next_address(Chain::Change, "").expect("derives");
        wallet.create().expect("written");
        wallet
    }

    fn fixture_v1(dir: &Path) -> PathBuf {
        let path = dir.join("wallet.json");
        std::fs::write(&path, include_str!("../testdata/wallet-v1.json")).expect("writes");
        path
    }

    #[test]
    fn a_new_wallet_is_0600_and_loads_back_with_bip44_addresses() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("regtest").join("wallet.json");
        let wallet = sample(&path);
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (loaded, bytes) = Wallet::load(&path, Network::Regtest).expect("loads");
        assert_eq!(loaded, wallet);
        assert_eq!(bytes, std::fs::read(&path).expect("reads"));
        // The published BIP44 test-network addresses of the phrase.
        assert_eq!(loaded.keys[0].address.to_string(), "mkpZhYtJu2r87Js3pDiWJDmPte2NRZ8bJV");
        assert_eq!(loaded.keys[2].address.to_string(), "mi8nhzZgGZQthq6DQHbru9crMDerUdTKva");
        assert_eq!(loaded.keys[2].path.as_deref(), Some("m/44'/1'/0'/1/0"));
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("a dir"))
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("wallet.json")], "no temporary file left");
        assert!(matches!(wallet.create(), Err(Error::Exists(_))), "never overwritten");
    }

    #[test]
    fn the_file_never_holds_the_seed_or_a_private_key_in_the_clear() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        let mut wallet = sample(&path);
        let mut unlocked = wallet.unlock("pw").expect("opens");
        let imported = PrivateKey::from_bytes(&[7; 32]).expect("a key");
        wallet.import_key(&mut unlocked, imported.clone(), "cold").expect("imported");
        wallet.save().expect("saved");
        let file = std::fs::read(&path).expect("reads");
        let text = String::from_utf8_lossy(&file).to_lowercase();
        let seed = hd::seed(&phrase(), "");
        let mut secrets: Vec<Vec<u8>> = vec![
            b"abandon abandon".to_vec(),
            b"about".to_vec(),
            seed.to_vec(),
            hex::encode(*seed).into_bytes(),
            imported.to_bytes().to_vec(),
            hex::encode(imported.to_bytes()).into_bytes(),
            imported.to_wif(Network::Regtest).to_lowercase().into_bytes(),
        ];
        for record in &wallet.keys {
            let key = wallet.private_key(&unlocked, &record.address.pubkey_hash()).expect("has it");
            secrets.push(key.to_wif(Network::Regtest).to_lowercase().into_bytes());
            secrets.push(hex::encode(key.to_bytes()).into_bytes());
            secrets.push(key.to_bytes().to_vec());
        }
        for secret in secrets {
            assert!(
                !text.as_bytes().windows(secret.len()).any(|w| w == secret.as_slice())
                    && !file.windows(secret.len()).any(|w| w == secret.as_slice()),
                "{} found in the file",
                String::from_utf8_lossy(&secret)
            );
        }
        // Yet everything comes back with the passphrase.
        let (loaded, _) = Wallet::load(&path, Network::Regtest).expect("loads");
        let unlocked = loaded.unlock("pw").expect("opens");
        assert_eq!(unlocked.mnemonic().to_string(), PHRASE);
        let cold = loaded.keys.iter().find(|k| k.label == "cold").expect("listed");
        assert_eq!(
            loaded.private_key(&unlocked, &cold.address.pubkey_hash()).map(|k| k.to_bytes()),
            Some(imported.to_bytes())
        );
        let mut again = loaded.unlock("pw").expect("opens");
        let mut loaded = loaded;
        assert!(matches!(
            loaded.import_key(&mut again, imported, "x"),
            Err(Error::DuplicateKey(_))
        ));
    }

    #[test]
    fn a_wrong_passphrase_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        let wallet = sample(&path);
        let err = wallet.unlock("PW").expect_err("wrong");
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
    }

    #[test]
    fn change_passphrase_seals_the_same_secrets_under_the_new_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        let mut wallet = sample(&path);
        let unlocked = wallet.unlock("pw").expect("opens");
        wallet.change_passphrase(&unlocked, "new pw").expect("resealed");
        wallet.save().expect("saved");
        let (loaded, _) = Wallet::load(&path, Network::Regtest).expect("loads");
        assert!(loaded.unlock("pw").is_err(), "the old passphrase no longer opens it");
        assert_eq!(loaded.unlock("new pw").expect("opens").mnemonic().to_string(), PHRASE);
        assert_eq!(loaded.keys, wallet.keys);
    }

    #[test]
    fn a_public_part_that_does_not_match_the_secrets_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = sample(&dir.path().join("a.json"));
        let other = hd::generate_mnemonic(hd::Words::Twelve).expect("randomness");
        let mut b =
            Wallet::from_seed(&dir.path().join("b.json"), Network::Regtest, &other, "", "pw", 20)
                .expect("made");
        b.next_address(Chain::Receive, "").expect("derives");
        // B's public part with A's secrets: every address checks out against the
        // account key, but the seed behind the passphrase is not that account's.
        let swapped = Wallet { keys_at: a.keys_at.clone(), ..b };
        swapped.save().expect("saved");
        let (loaded, _) = Wallet::load(swapped.path(), Network::Regtest).expect("consistent alone");
        let err = loaded.unlock("pw").expect_err("mismatch");
        assert!(matches!(err, Error::Mismatch { .. }), "{err:?}");
    }

    #[test]
    fn corrupt_foreign_newer_and_other_network_files_are_refused_and_left_intact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        let wallet = sample(&path);
        let good = std::fs::read_to_string(&path).expect("reads");
        let first = wallet.keys[0].address.to_string();
        let second = wallet.keys[1].address.to_string();
        let cases: Vec<(String, &str)> = vec![
            ("{\"format\":\"tinychain-wallet\",".into(), "corrupt"),
            ("".into(), "corrupt"),
            ("{\"format\":\"bitcoin-core\",\"version\":1}".into(), "not a tinychain wallet"),
            ("[1,2]".into(), "not a tinychain wallet"),
            (good.replace("\"version\": 2", "\"version\": 3"), "version 3"),
            (good.replace("\"network\": \"regtest\"", "\"network\": \"main\""), "for main"),
            (good.replace("\"keys\"", "\"kees\""), "corrupt"),
            (good.replacen(&first, &second, 1), "is not the account's m/44'/1'/0'/0/0"),
            (good.replace("m/44'/1'/0'/0/1", "m/44'/1'/0'/0/5"), "not the account's"),
            (good.replace("\"next_receive\": 2", "\"next_receive\": 1"), "past the next index"),
            (good.replace("tpub", "xpub"), "corrupt"),
            (good.replace("chacha20poly1305", "rot13"), "cipher"),
        ];
        for (content, expected) in cases {
            std::fs::write(&path, &content).expect("writes");
            let err = Wallet::load(&path, Network::Regtest).expect_err("refused").to_string();
            assert!(err.contains(expected), "{expected}: {err}");
            assert_eq!(std::fs::read_to_string(&path).expect("reads"), content, "left intact");
        }
        assert!(matches!(
            Wallet::load(&dir.path().join("missing.json"), Network::Regtest),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn a_version_1_file_is_read_as_it_is_and_upgraded_in_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = fixture_v1(dir.path());
        let (legacy, bytes) =
            Wallet::load(&path, Network::Regtest).expect("a version 1 file loads");
        assert!(legacy.is_legacy());
        assert_eq!(legacy.keys.len(), 4);
        assert_eq!(legacy.keys[1].address.to_string(), "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r");
        assert_eq!(legacy.keys[1].label, "key one");
        assert_eq!(legacy.sent.len(), 1);
        // Nothing that needs keys or writes works on it, and it is never written back.
        assert!(matches!(legacy.unlock("pw"), Err(Error::NeedsUpgrade(_))));
        assert!(matches!(legacy.save(), Err(Error::NeedsUpgrade(_))));
        assert!(matches!(
            legacy.clone().next_address(Chain::Receive, ""),
            Err(Error::NeedsUpgrade(_))
        ));

        let wifs = legacy.legacy_wifs(&bytes).expect("the same file");
        let upgraded = legacy.upgrade(&phrase(), "", "pw", &wifs).expect("upgraded");
        upgraded.save().expect("written in place");
        let text = std::fs::read_to_string(&path).expect("reads");
        assert!(text.contains("\"version\": 2"));
        for wif in &wifs {
            assert!(!text.contains(wif.as_str()), "a WIF stayed in the clear");
        }
        let (loaded, _) = Wallet::load(&path, Network::Regtest).expect("loads");
        assert_eq!(loaded.keys, legacy.keys, "addresses, labels and change flags kept");
        assert_eq!(loaded.sent, legacy.sent, "the sent records kept");
        let unlocked = loaded.unlock("pw").expect("opens");
        let key_one = loaded.private_key(&unlocked, &legacy.keys[1].address.pubkey_hash());
        assert_eq!(key_one.map(|k| k.to_wif(Network::Regtest)), Some(wifs[1].to_string()));
        let mut loaded = loaded;
        let fresh = loaded.next_address(Chain::Receive, "").expect("from the new seed");
        assert_eq!(fresh.to_string(), "mkpZhYtJu2r87Js3pDiWJDmPte2NRZ8bJV");
    }
}
