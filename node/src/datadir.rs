//! The node's data directory: where it is, what is in it, and who owns it.
//!
//! Owns the layout (`<datadir>/<network>/` holding `chain.redb` and the lock file)
//! and the exclusive lock that keeps a second node off the same directory. The
//! lock is an OS file lock, released by the OS when the process ends, however
//! it ends, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use tinychain_protocol::params::Network;

/// An error taking the data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// The directory cannot be created or the lock file opened.
    #[error("cannot use data directory {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process holds the lock.
    #[error("data directory {0} is in use by another tinychain-node (its lock is held)")]
    Locked(PathBuf),
}

/// A data directory this process holds the lock of.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates (if needed) and locks `<base>/<network>`.
    ///
    /// # Errors
    ///
    /// The directory cannot be created, or another node holds it.
    pub fn open(base: &Path, network: Network) -> Result<DataDir, DataDirError> {
        let path = base.join(network.name());
        let io = |source| DataDirError::Io { path: path.clone(), source };
        std::fs::create_dir_all(&path).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => Ok(DataDir { path, _lock: lock }),
            Err(TryLockError::WouldBlock) => Err(DataDirError::Locked(path)),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// Returns the directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the chain store's path.
    pub fn store_path(&self) -> PathBuf {
        self.path.join("chain.redb")
    }

    /// Tells whether a node holds `<base>/<network>` now, without creating anything.
    pub fn is_held(base: &Path, network: Network) -> bool {
        let Ok(file) = File::open(base.join(network.name()).join(LOCK_FILE)) else { return false };
        matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
    }
}

/// The lock file's name in the network's directory.
const LOCK_FILE: &str = "node.lock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let base = tempfile::tempdir().expect("temp dir");
        let first = DataDir::open(base.path(), Network::Regtest).expect("first lock");
        let second = DataDir::open(base.path(), Network::Regtest);
        assert!(matches!(second, Err(DataDirError::Locked(_))), "{second:?}");
        // Another network is another directory.
        assert!(DataDir::open(base.path(), Network::Test).is_ok());
        assert!(DataDir::is_held(base.path(), Network::Regtest));
        assert!(!DataDir::is_held(base.path(), Network::Main), "no directory, no holder");
        drop(first);
        assert!(!DataDir::is_held(base.path(), Network::Regtest));
        assert!(DataDir::open(base.path(), Network::Regtest).is_ok());
    }
}
