//! The wallet file: the keys (with labels) and the records of the wallet's own sent transactions.
//!
//! Owns the on-disk format (JSON with a `format` tag, a format version and the
//! network), loading it (a corrupt, foreign, newer or other-network file is refused
//! with a clear error and never rewritten), and saving it atomically: a temporary
//! file with mode 0600 in the same directory, fsync, rename over the old file,
//! fsync of the directory. Commands that change the file hold an exclusive lock on
//! a sibling `.lock` file. It never talks to a node and never prints.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinychain_protocol::keys::{Address, PrivateKey};
use tinychain_protocol::params::Network;
use tinychain_protocol::rpc::as_string;
use tinychain_protocol::{Amount, PubkeyHash, Transaction, Txid};

/// The value of the `format` field: what kind of file this is.
pub(crate) const FORMAT: &str = "tinychain-wallet";
/// The format version this program reads and writes.
pub(crate) const VERSION: u32 = 1;

/// An error loading or saving the wallet file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// There is no file.
    #[error("no wallet file at {0} (make one with `tinychain-wallet create`)")]
    NotFound(PathBuf),
    /// `create` found a file already there.
    #[error("a wallet file already exists at {0}; it is never overwritten")]
    Exists(PathBuf),
    /// The file is not valid JSON of the expected shape, or its keys do not check out.
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
    #[error("wallet file {path} has format version {found}; this program reads version {VERSION}")]
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
    /// The key is already in the wallet.
    #[error("the wallet already has the key of {0}")]
    DuplicateKey(Address),
    /// The OS failed.
    #[error("wallet file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
}

/// One key of the wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyRecord {
    /// Its address (checked against the key on load).
    pub(crate) address: Address,
    /// The private key, in Wallet Import Format.
    pub(crate) wif: String,
    /// The user's label ("" for none).
    pub(crate) label: String,
    /// Whether the wallet made it for change.
    pub(crate) change: bool,
}

/// A transaction the wallet made and broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SentRecord {
    /// Its txid.
    #[serde(with = "as_string")]
    pub(crate) txid: Txid,
    /// Who it pays.
    pub(crate) to: Address,
    /// How much it pays them, in belushis.
    pub(crate) amount: Amount,
    /// Its fee, in belushis.
    pub(crate) fee: Amount,
    /// The index of its change output, if it has one.
    pub(crate) change_vout: Option<u32>,
    /// The signed transaction, in hex (so its inputs and change are known while unconfirmed).
    pub(crate) hex: String,
}

impl SentRecord {
    /// Decodes the stored transaction.
    pub(crate) fn transaction(&self) -> Option<Transaction> {
        hex::decode(&self.hex).ok().and_then(|b| Transaction::decode(&b).ok())
    }
}

/// The wallet: its network, keys and sent transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Wallet {
    /// Always [`FORMAT`].
    format: String,
    /// Always [`VERSION`].
    version: u32,
    /// The network its keys and addresses are for.
    pub(crate) network: Network,
    /// The keys, oldest first.
    pub(crate) keys: Vec<KeyRecord>,
    /// Transactions it sent, oldest first.
    pub(crate) sent: Vec<SentRecord>,
}

/// An exclusive lock on a wallet file, held until dropped.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

impl Wallet {
    /// An empty wallet for `network`.
    pub(crate) fn new(network: Network) -> Wallet {
        Wallet {
            format: FORMAT.to_owned(),
            version: VERSION,
            network,
            keys: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Takes the exclusive lock of the wallet at `path` (waits for another command to
    /// finish). For `create` (`new`), makes the directory; otherwise the wallet must exist.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; the directory or lock file cannot be made or locked.
    pub(crate) fn lock(path: &Path, new: bool) -> Result<Lock, Error> {
        if new {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|cause| Error::Io { path: dir.to_owned(), cause })?;
            }
        } else if path.symlink_metadata().is_err() {
            return Err(Error::NotFound(path.to_owned()));
        }
        let lock_path = sibling(path, ".lock");
        let io = |cause| Error::Io { path: lock_path.clone(), cause };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(Lock { _file: file })
    }

    /// Loads and checks the wallet at `path`; returns it with the file's exact bytes.
    ///
    /// # Errors
    ///
    /// See [`Error`]: missing, unreadable, corrupt, foreign, newer or of another network.
    pub(crate) fn load(path: &Path, network: Network) -> Result<(Wallet, Vec<u8>), Error> {
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
        if version != Some(u64::from(VERSION)) {
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
        let wallet: Wallet = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        for key in &wallet.keys {
            let (private, kind) = PrivateKey::from_wif(&key.wif)
                .map_err(|e| corrupt(format!("key of {}: {e}", key.address)))?;
            if !kind.includes(network) {
                return Err(corrupt(format!("key of {} is for {kind}", key.address)));
            }
            if private.public_key().address(network) != key.address {
                return Err(corrupt(format!("key does not match address {}", key.address)));
            }
        }
        for record in &wallet.sent {
            if record.transaction().is_none_or(|tx| tx.txid() != record.txid) {
                return Err(corrupt(format!("sent transaction {} does not decode", record.txid)));
            }
        }
        Ok(wallet)
    }

    /// Writes a new wallet file at `path` (creating its directory, mode 0700).
    ///
    /// # Errors
    ///
    /// [`Error::Exists`] if there is a file; I/O errors.
    pub(crate) fn create(&self, path: &Path) -> Result<(), Error> {
        if path.symlink_metadata().is_ok() {
            return Err(Error::Exists(path.to_owned()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|cause| Error::Io { path: dir.to_owned(), cause })?;
        }
        self.save(path)
    }

    /// Replaces the file at `path` with this wallet, atomically.
    ///
    /// # Errors
    ///
    /// I/O errors; the old file is then unchanged.
    pub(crate) fn save(&self, path: &Path) -> Result<(), Error> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Io { path: path.to_owned(), cause: std::io::Error::other(e) })?;
        bytes.push(b'\n');
        write_atomic(path, &bytes)
    }

    /// Puts back the exact bytes a file had (after a failed broadcast).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub(crate) fn restore(path: &Path, bytes: &[u8]) -> Result<(), Error> {
        write_atomic(path, bytes)
    }

    /// Adds a key; returns its address.
    ///
    /// # Errors
    ///
    /// [`Error::DuplicateKey`] if the wallet has it.
    pub(crate) fn add_key(
        &mut self,
        key: &PrivateKey,
        label: &str,
        change: bool,
    ) -> Result<Address, Error> {
        let address = key.public_key().address(self.network);
        if self.keys.iter().any(|k| k.address == address) {
            return Err(Error::DuplicateKey(address));
        }
        self.keys.push(KeyRecord {
            address,
            wif: key.to_wif(self.network),
            label: label.to_owned(),
            change,
        });
        Ok(address)
    }

    /// Returns every address of the wallet.
    pub(crate) fn addresses(&self) -> Vec<Address> {
        self.keys.iter().map(|k| k.address).collect()
    }

    /// Tells whether `pubkey_hash` is one of the wallet's.
    pub(crate) fn owns(&self, pubkey_hash: &PubkeyHash) -> bool {
        self.keys.iter().any(|k| k.address.pubkey_hash() == *pubkey_hash)
    }

    /// Returns the private key of `pubkey_hash`, if the wallet has it.
    pub(crate) fn key_for(&self, pubkey_hash: &PubkeyHash) -> Option<PrivateKey> {
        self.keys
            .iter()
            .find(|k| k.address.pubkey_hash() == *pubkey_hash)
            .and_then(|k| PrivateKey::from_wif(&k.wif).ok())
            .map(|(key, _)| key)
    }

    /// Returns the record of `address`'s key.
    pub(crate) fn key_record(&self, address: &Address) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.address == *address)
    }
}

/// Makes a fresh private key from the operating system's randomness.
///
/// # Errors
///
/// The OS has no randomness to give.
pub(crate) fn generate_key() -> Result<PrivateKey, getrandom::Error> {
    loop {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)?;
        // Fails only for 0 or ≥ the curve order: about 2^-128 of draws.
        if let Ok(key) = PrivateKey::from_bytes(&secret) {
            return Ok(key);
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never a mix.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |cause| Error::Io { path: path.to_owned(), cause };
    let tmp = sibling(path, &format!(".tmp-{}", std::process::id()));
    // A temporary file left by a crashed run of this same pid is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn key(n: u8) -> PrivateKey {
        PrivateKey::from_bytes(&[n; 32]).expect("a valid key")
    }

    fn sample() -> Wallet {
        let mut wallet = Wallet::new(Network::Regtest);
        wallet.add_key(&key(1), "first", false).expect("new key");
        wallet.add_key(&key(2), "", true).expect("new key");
        wallet
    }

    #[test]
    fn a_new_wallet_is_0600_and_loads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("regtest").join("wallet.json");
        let wallet = sample();
        wallet.create(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (loaded, bytes) = Wallet::load(&path, Network::Regtest).expect("loads");
        assert_eq!(loaded, wallet);
        assert_eq!(bytes, std::fs::read(&path).expect("reads"));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("a dir"))
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("wallet.json")]);
    }

    #[test]
    fn create_never_overwrites() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        std::fs::write(&path, b"precious").expect("writes");
        assert!(matches!(sample().create(&path), Err(Error::Exists(_))));
        assert_eq!(std::fs::read(&path).expect("reads"), b"precious");
    }

    #[test]
    fn save_replaces_the_file_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        let mut wallet = sample();
        wallet.create(&path).expect("created");
        wallet.add_key(&key(3), "third", false).expect("new key");
        wallet.save(&path).expect("saved");
        let (loaded, _) = Wallet::load(&path, Network::Regtest).expect("loads");
        assert_eq!(loaded.keys.len(), 3);
        let mode = std::fs::metadata(&path).expect("exists").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_foreign_newer_and_other_network_files_are_refused_and_left_intact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        let good = serde_json::to_string(&sample()).expect("serializes");
        let tampered_key = good.replacen(
            &sample().keys[0].address.to_string(),
            &sample().keys[1].address.to_string(),
            1,
        );
        let cases: Vec<(String, &str)> = vec![
            ("{\"format\":\"tinychain-wallet\",".into(), "corrupt"),
            ("".into(), "corrupt"),
            ("{\"format\":\"bitcoin-core\",\"version\":1}".into(), "not a tinychain wallet"),
            ("[1,2]".into(), "not a tinychain wallet"),
            (good.replace("\"version\":1", "\"version\":2"), "version 2"),
            (good.replace("\"network\":\"regtest\"", "\"network\":\"main\""), "for main"),
            (good.replace("\"keys\"", "\"kees\""), "corrupt"),
            (tampered_key, "does not match"),
        ];
        for (content, expected) in cases {
            std::fs::write(&path, &content).expect("writes");
            let err = Wallet::load(&path, Network::Regtest).expect_err("refused").to_string();
            assert!(err.contains(expected), "{content}: {err}");
            assert_eq!(std::fs::read_to_string(&path).expect("reads"), content, "left intact");
        }
        assert!(matches!(
            Wallet::load(&dir.path().join("missing.json"), Network::Regtest),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn a_key_is_added_once() {
        let mut wallet = sample();
        assert!(matches!(wallet.add_key(&key(1), "again", false), Err(Error::DuplicateKey(_))));
        let address = wallet.keys[0].address;
        assert!(wallet.owns(&address.pubkey_hash()));
        assert_eq!(
            wallet.key_for(&address.pubkey_hash()).map(|k| k.to_bytes()),
            Some(key(1).to_bytes())
        );
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wallet.json");
        let lock = Wallet::lock(&path, true).expect("locks");
        let other = File::open(sibling(&path, ".lock")).expect("opens");
        assert!(other.try_lock().is_err(), "held");
        drop(lock);
        assert!(other.try_lock().is_ok(), "released");
    }
}
