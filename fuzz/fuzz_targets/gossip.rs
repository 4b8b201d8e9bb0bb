//! A gossip message's payload, as the node decodes it (the first byte picks
//! the topic): compact blocks and transactions, with the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_node::p2p::protocol::{MAX_GOSSIP_DATA, decode_gossip_block, decode_gossip_tx};

fuzz_target!(|data: &[u8]| {
    let Some((topic, payload)) = data.split_first() else { return };
    let encoded = if topic % 2 == 0 {
        decode_gossip_block(payload).map(|b| b.encode())
    } else {
        decode_gossip_tx(payload).map(|t| t.encode())
    };
    match encoded {
        Ok(bytes) => {
            assert_eq!(bytes, payload);
            assert!(payload.len() <= MAX_GOSSIP_DATA);
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
});
