//! An amount of coins typed by a user: what parses prints as a string that
//! parses to the same amount.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_protocol::Amount;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(amount) = text.parse::<Amount>() else { return };
    let printed = amount.to_string();
    assert_eq!(printed.parse::<Amount>().ok(), Some(amount), "{text} → {printed}");
});
