//! An address typed by a user or sent over RPC: parsed for every network, and
//! what parses prints back as the same string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_protocol::keys::Address;
use tinychain_protocol::params::Network;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(address) = text.parse::<Address>() {
        assert_eq!(address.to_string(), text);
    }
    for network in [Network::Main, Network::Test, Network::Regtest] {
        if let Ok(address) = Address::parse(text, network) {
            assert_eq!(address.to_string(), text);
        }
    }
});
