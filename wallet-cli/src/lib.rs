//! The wallet's keys and file, as a library: HD derivation ([`hd`]), the
//! sealed secrets ([`vault`]) and the wallet file ([`wallet`]). The
//! `tinychain-wallet` binary is built on them (its commands, coin selection and
//! prompts are its own), and the fuzz targets in `fuzz/` load files through
//! [`load_wallet_file`] exactly as every command does.

pub mod hd;
pub mod vault;
pub mod wallet;

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
