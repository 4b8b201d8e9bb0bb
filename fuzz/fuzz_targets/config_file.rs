//! The node's configuration file (TOML): parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_node::config::parse_file;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_file(text);
});
