//! Writes the fuzz targets' committed seed corpus, `fuzz/corpus/<target>/`:
//! the golden vectors of `protocol/tests/it/vectors`, the genesis blocks, the
//! example config, and one or two well-formed (and some malformed) inputs for
//! every target. It lives here, not in `fuzz/`, so that it builds without
//! libFuzzer: `cargo run -p tinychain-tests --example fuzz_seeds`.

use std::path::Path;

use tinychain_node::p2p::protocol::{Request, Response, Status};
use tinychain_protocol::keys::PrivateKey;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::pow::Work;
use tinychain_protocol::{Block, CompactBlock, Transaction, encode};

fn vector(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text.trim()).expect("the golden vectors are hex")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("creates the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("writes a seed");
}

fn main() {
    let tx = vector(include_str!("../../protocol/tests/it/vectors/tx.hex"));
    let coinbase = vector(include_str!("../../protocol/tests/it/vectors/coinbase.hex"));
    let block = vector(include_str!("../../protocol/tests/it/vectors/block.hex"));
    let header = vector(include_str!("../../protocol/tests/it/vectors/header.hex"));
    let genesis = Params::new(Network::Regtest).genesis_block();
    let golden = Block::decode(&block).expect("the golden block decodes");
    Transaction::decode(&tx).expect("the golden transaction decodes");

    write("transaction", "golden-tx", &tx);
    write("transaction", "golden-coinbase", &coinbase);
    write("block", "golden-block", &block);
    write("block", "regtest-genesis", &genesis.encode());
    write("header", "golden-header", &header);
    write("header", "main-genesis", &Params::new(Network::Main).genesis_block().header.to_bytes());
    for (name, b) in [("golden-block", &golden), ("regtest-genesis", &genesis)] {
        let compact = CompactBlock::from_block(b).expect("a block has a coinbase").encode();
        write("compact_block", name, &compact);
        let mut gossip = vec![0];
        gossip.extend_from_slice(&compact);
        write("gossip", &format!("block-{name}"), &gossip);
    }
    let mut gossip = vec![1];
    gossip.extend_from_slice(&tx);
    write("gossip", "tx-golden", &gossip);

    let hash = genesis.block_hash();
    let status = Status { genesis: hash, tip: hash, height: 0, chainwork: Work::ZERO };
    let requests = [
        ("status", Request::Status(status)),
        ("get-headers", Request::GetHeaders { locator: vec![hash] }),
        ("get-blocks", Request::GetBlocks(vec![hash; 2])),
    ];
    for (name, request) in requests {
        write("sync_request", name, &encode::serialize(&request));
    }
    write("sync_request", "truncated", &encode::serialize(&Request::Status(status))[..50]);
    let responses = [
        ("status", Response::Status(status)),
        ("headers", Response::Headers(vec![genesis.header, golden.header])),
        ("blocks", Response::Blocks(vec![genesis.clone()])),
        ("refused", Response::Refused("rate limited".into())),
    ];
    for (name, response) in responses {
        write("sync_response", name, &encode::serialize(&response));
    }

    write(
        "rpc_request",
        "getblockcount",
        br#"{"jsonrpc":"2.0","id":1,"method":"getblockcount","params":[]}"#,
    );
    write(
        "rpc_request",
        "getblock",
        br#"{"jsonrpc":"2.0","id":"a","method":"getblock","params":["00ff",0]}"#,
    );
    write("rpc_request", "no-params", br#"{"jsonrpc":"2.0","id":null,"method":"stop"}"#);
    write("config_file", "example", include_bytes!("../../deploy/tinychain.example.toml"));
    write(
        "config_file",
        "small",
        b"network = \"regtest\"\n[p2p]\nlisten = [\"/ip4/0.0.0.0/tcp/19444\"]\n",
    );

    let mut one = [0u8; 32];
    one[31] = 1;
    let key = PrivateKey::from_bytes(&one).expect("1 is a valid key");
    for network in [Network::Main, Network::Regtest] {
        let address = key.public_key().address(network).to_string();
        let wif = key.to_wif(network);
        write("address", &format!("key-1-{network}"), address.as_bytes());
        write("wif", &format!("key-1-{network}"), wif.as_bytes());
        let wallet = format!(
            r#"{{"format":"tinychain-wallet","version":1,"network":"{network}","keys":[{{"address":"{address}","wif":"{wif}","label":"","change":false}}],"sent":[]}}"#
        );
        write("wallet_file", &format!("key-1-{network}"), wallet.as_bytes());
    }
    write(
        "ban_list",
        "one",
        br#"{ "12D3KooWJqem156booZj4jZuUwQ4L8C2uJMzHK46CagqfvNmes8c": 1795478400 }"#,
    );
    write("ban_list", "empty", b"{}");
    for (name, text) in
        [("one", "1"), ("satoshi", "0.00000001"), ("decimal", "1337.5"), ("max", "21000000")]
    {
        write("amount", name, text.as_bytes());
    }
}
