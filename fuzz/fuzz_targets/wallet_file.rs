//! The wallet file, loaded from disk as every wallet command does: accepted or
//! refused with a message, never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tinychain_protocol::params::Network;

/// One file per fuzzing process, rewritten for each input.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("tinychain-fuzz-wallet-{}.json", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    if std::fs::write(path(), data).is_err() {
        return;
    }
    for network in [Network::Regtest, Network::Main] {
        if let Err(message) = tinychain_wallet::load_wallet_file(path(), network) {
            assert!(!message.is_empty());
        }
    }
});
