//! A sync response as the node reads it: through the codec, with its limit.
#![no_main]

use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec as _;
use tinychain_node::p2p::protocol::{self, Codec, Response};
use tinychain_protocol::encode;

fuzz_target!(|data: &[u8]| {
    let name = protocol::sync_protocol("594a1ac0b17337ca");
    let mut stream = Cursor::new(data.to_vec());
    let Ok(response) = block_on(Codec.read_response(&name, &mut stream)) else { return };
    assert_eq!(encode::serialize(&response), data);
    if let Response::Blocks(blocks) = &response {
        for block in blocks {
            let _ = block.block_hash();
        }
    }
});
