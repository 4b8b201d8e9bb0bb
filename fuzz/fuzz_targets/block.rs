//! A whole block from a peer (sync replies) or RPC: decode, check, re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_protocol::Block;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::validation::check_block;

fuzz_target!(|data: &[u8]| {
    let Ok(block) = Block::decode(data) else { return };
    assert_eq!(block.encode(), data);
    assert_eq!(block.size(), data.len() as u64);
    let _ = block.block_hash();
    let _ = check_block(&block, &Params::new(Network::Regtest));
});
