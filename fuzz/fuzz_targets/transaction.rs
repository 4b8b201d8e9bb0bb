//! A transaction from a peer (gossip, blocks) or RPC: decode, check, re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinychain_protocol::Transaction;
use tinychain_protocol::validation::check_transaction;

fuzz_target!(|data: &[u8]| {
    let Ok(tx) = Transaction::decode(data) else { return };
    // One canonical encoding: what decodes re-encodes to the same bytes.
    assert_eq!(tx.encode(), data);
    assert_eq!(tx.size(), data.len() as u64);
    let _ = tx.txid();
    let _ = check_transaction(&tx);
});
