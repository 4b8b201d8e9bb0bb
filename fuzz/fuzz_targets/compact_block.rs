//! A compact block from gossip: decode, re-encode, rebuild from an empty mempool.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_protocol::CompactBlock;

fuzz_target!(|data: &[u8]| {
    let Ok(compact) = CompactBlock::decode(data) else { return };
    assert_eq!(compact.encode(), data);
    let _ = compact.block_hash();
    if let Ok(block) = compact.reconstruct(|_| None) {
        assert!(compact.txids.is_empty(), "rebuilt without the transactions it lists");
        assert_eq!(block.header, compact.header);
    }
});
