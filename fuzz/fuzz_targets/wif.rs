//! A private key in Wallet Import Format (import-key, the wallet file): what
//! decodes encodes back to the same string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_protocol::keys::{NetworkKind, PrivateKey};
use tinychain_protocol::params::Network;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok((key, kind)) = PrivateKey::from_wif(text) else { return };
    let network = match kind {
        NetworkKind::Main => Network::Main,
        NetworkKind::Test => Network::Test,
    };
    assert_eq!(key.to_wif(network), text);
});
