//! The wallet file's reader as a library, for the fuzz targets in `fuzz/`: the
//! binary's own `wallet` module compiled once more, and one function that
//! loads a file as the wallet commands do. Everything else is the binary's.

// The binary uses the rest of the module; this library only loads files.
#![allow(dead_code)]

mod hd;
mod vault;
mod wallet;

use std::path::Path;

use tinychain_protocol::params::Network;

/// Loads and checks the wallet file at `path` for `network`, as every wallet
/// command does first.
///
/// # Errors
///
/// The wallet's own message: missing, unreadable, corrupt, foreign, newer or
/// of another network.
pub fn load_wallet_file(path: &Path, network: Network) -> Result<(), String> {
    wallet::Wallet::load(path, network).map(|_| ()).map_err(|e| e.to_string())
}
