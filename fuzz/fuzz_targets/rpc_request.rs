//! A request line on the RPC socket: taken apart, or answered with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_node::rpc::server::parse_request;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    match parse_request(line) {
        Ok(request) => assert!(line.contains(&request.method) || line.contains('\\')),
        Err(answer) => {
            assert_eq!(answer["jsonrpc"], "2.0");
            assert!(answer["error"]["code"].is_i64(), "{answer}");
            assert!(answer["error"]["message"].is_string(), "{answer}");
        }
    }
});
