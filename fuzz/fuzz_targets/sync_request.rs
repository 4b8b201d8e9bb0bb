//! A sync request as the node reads it off a stream: through the codec, with
//! its size and count limits. Bad bytes must come out as a malformed value
//! (never an error the node cannot see), good ones re-encode to the input.
#![no_main]

use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec as _;
use tinychain_node::p2p::protocol::{self, Codec, MAX_REQUEST_SIZE, WireRequest};
use tinychain_protocol::encode;

fuzz_target!(|data: &[u8]| {
    let name = protocol::sync_protocol("594a1ac0b17337ca");
    let mut stream = Cursor::new(data.to_vec());
    let read = block_on(Codec.read_request(&name, &mut stream)).expect("a cursor never fails");
    assert!(stream.position() <= MAX_REQUEST_SIZE + 1, "read past the limit");
    let valid = match read {
        WireRequest::Request(request) => {
            assert_eq!(encode::serialize(&request), data);
            true
        }
        WireRequest::Malformed(reason) => {
            assert!(!reason.is_empty());
            false
        }
    };
    // The codec reads what fits the limit and judges it as `decode_request` does.
    if data.len() as u64 <= MAX_REQUEST_SIZE + 1 {
        assert_eq!(protocol::decode_request(data).is_ok(), valid);
    }
});
