//! The ban list file (`banlist.json`): read or refused, bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_node::p2p::bans::{MAX_BANS, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(bans) = parse(text, 1_000) {
        assert!(bans.len() <= MAX_BANS);
        assert!(bans.values().all(|until| *until > 1_000), "an ended ban was kept");
    }
});
