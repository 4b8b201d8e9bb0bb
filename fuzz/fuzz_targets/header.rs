//! An 80-byte header (headers-first sync): decode, check, re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_protocol::BlockHeader;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::validation::check_block_header;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = tinychain_protocol::encode::deserialize::<BlockHeader>(data, 80) else {
        return;
    };
    assert_eq!(header.to_bytes().as_slice(), data);
    let _ = header.block_hash();
    let _ = header.bits.to_target().map(|t| t.to_work());
    let _ = check_block_header(&header, &Params::new(Network::Main));
});
