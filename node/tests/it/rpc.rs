//! The address-index answers past their cap: refused in words, never cut off.

use serde_json::{Value, json};
use tinychain_node::rpc::address::{MAX_ROWS, getaddressutxos};
use tinychain_protocol::keys::Address;
use tinychain_protocol::params::Network;

use crate::harness::*;

#[test]
fn more_coins_than_one_answer_holds_are_refused_unpaged_and_served_in_pages() {
    let mut core = new_core(regtest());
    let (hashes, _) = core.generate(MAX_ROWS as u32 + 1, pkh(1), NOW).expect("mines");
    assert_eq!(hashes.len(), MAX_ROWS + 1);
    let address = json!(Address::new(Network::Regtest, pkh(1)).to_string());
    let err = getaddressutxos(&core, std::slice::from_ref(&address)).expect_err("over the cap");
    assert_eq!(err.code, -32602);
    assert!(err.message.contains("ask for pages"), "{}", err.message);
    let first = getaddressutxos(&core, &[address.clone(), json!({})]).expect("a page");
    assert_eq!(first["utxos"].as_array().map(Vec::len), Some(MAX_ROWS));
    let next = first["next"].clone();
    assert!(next.is_string(), "{next}");
    let last = getaddressutxos(&core, &[address, json!({"after": next})]).expect("a page");
    assert_eq!(last["utxos"].as_array().map(Vec::len), Some(1));
    assert_eq!(last["next"], Value::Null);
}
