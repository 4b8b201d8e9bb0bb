//! The canonical encoding: golden byte vectors pin the layout, and property tests
//! show that decoding inverts encoding and never panics on arbitrary bytes.

use proptest::prelude::*;
use tinychain_protocol::encode;
use tinychain_protocol::pow::CompactTarget;
use tinychain_protocol::transaction::COINBASE_MESSAGE_LEN;
use tinychain_protocol::{
    Amount, Block, BlockHash, BlockHeader, Hash256, OutPoint, PubkeyHash, Transaction, TxIn, TxOut,
    Txid,
};

fn sample_header() -> BlockHeader {
    BlockHeader {
        version: 1,
        prev_blockhash: BlockHash::from_byte_array([0x11; 32]),
        merkle_root: Hash256::from_byte_array([0x22; 32]),
        time: 1_795_392_000,
        bits: CompactTarget::from_consensus(0x207f_ffff),
        nonce: 42,
    }
}

fn sample_tx() -> Transaction {
    Transaction {
        version: 1,
        inputs: vec![TxIn {
            prev_out: OutPoint { txid: Txid::from_byte_array([0x33; 32]), vout: 1 },
            signature: [0x44; 64],
            pubkey: [0x02; 33],
            sequence: 0xffff_fffe,
        }],
        outputs: vec![
            TxOut {
                value: Amount::from_belushis(1337 * 100_000_000),
                pubkey_hash: PubkeyHash::from_byte_array([0x55; 20]),
            },
            TxOut {
                value: Amount::from_belushis(1),
                pubkey_hash: PubkeyHash::from_byte_array([0x66; 20]),
            },
        ],
        locktime: 100,
    }
}

fn sample_coinbase() -> Transaction {
    let mut message = [0u8; COINBASE_MESSAGE_LEN];
    message[..5].copy_from_slice(b"hello");
    Transaction::coinbase(
        7,
        0x0102_0304_0506_0708,
        &message,
        vec![TxOut {
            value: Amount::from_belushis(50 * 100_000_000),
            pubkey_hash: PubkeyHash::from_byte_array([0x77; 20]),
        }],
    )
}

fn sample_block() -> Block {
    Block { header: sample_header(), txdata: vec![sample_coinbase(), sample_tx()] }
}

const HEADER_HEX: &str = include_str!("vectors/header.hex");
const TX_HEX: &str = include_str!("vectors/tx.hex");
const COINBASE_HEX: &str = include_str!("vectors/coinbase.hex");
const BLOCK_HEX: &str = include_str!("vectors/block.hex");

/// Compares an encoding with its checked-in vector. `UPDATE_GOLDEN=1` rewrites the
/// vector instead (only ever on purpose: a changed vector is a consensus change).
fn golden(name: &str, expected_hex: &str, bytes: &[u8]) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let path = format!("{}/tests/it/vectors/{name}.hex", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(path, hex::encode(bytes) + "\n").expect("vector written");
        return;
    }
    assert_eq!(hex::encode(bytes), expected_hex.trim(), "{name} encoding changed");
}

#[test]
fn golden_header() {
    golden("header", HEADER_HEX, &encode::serialize(&sample_header()));
}

#[test]
fn golden_transaction() {
    golden("tx", TX_HEX, &sample_tx().encode());
    golden("coinbase", COINBASE_HEX, &sample_coinbase().encode());
}

#[test]
fn golden_block() {
    golden("block", BLOCK_HEX, &sample_block().encode());
    let decoded = Block::decode(&hex::decode(BLOCK_HEX.trim()).expect("hex")).expect("decodes");
    assert_eq!(decoded, sample_block());
}

#[test]
fn golden_txids_and_hash() {
    // The txid is the sha256d of the encoding; pinned so it cannot drift.
    let txid = sample_tx().txid();
    assert_eq!(txid, Txid::hash(&hex::decode(TX_HEX.trim()).expect("hex")));
    assert_eq!(sample_coinbase().coinbase_height(), Some(7));
    assert_eq!(sample_block().block_hash(), sample_header().block_hash());
}

#[test]
fn decoding_rejects_truncated_and_extended_blocks() {
    let bytes = sample_block().encode();
    for cut in [0, 1, 79, 80, 88, bytes.len() - 1] {
        assert!(Block::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Block::decode(&longer).is_err(), "a trailing byte");
}

fn arb_hash() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn arb_txin() -> impl Strategy<Value = TxIn> {
    (
        arb_hash(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 64),
        any::<[u8; 32]>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(|(txid, vout, sig, key, parity, sequence)| {
            let mut signature = [0u8; 64];
            signature.copy_from_slice(&sig);
            let mut pubkey = [parity; 33];
            pubkey[1..].copy_from_slice(&key);
            TxIn {
                prev_out: OutPoint { txid: Txid::from_byte_array(txid), vout },
                signature,
                pubkey,
                sequence,
            }
        })
}

fn arb_txout() -> impl Strategy<Value = TxOut> {
    (any::<u64>(), any::<[u8; 20]>()).prop_map(|(v, h)| TxOut {
        value: Amount::from_belushis(v),
        pubkey_hash: PubkeyHash::from_byte_array(h),
    })
}

fn arb_tx() -> impl Strategy<Value = Transaction> {
    (
        any::<i32>(),
        prop::collection::vec(arb_txin(), 0..4),
        prop::collection::vec(arb_txout(), 0..4),
        any::<u32>(),
    )
        .prop_map(|(version, inputs, outputs, locktime)| Transaction {
            version,
            inputs,
            outputs,
            locktime,
        })
}

fn arb_header() -> impl Strategy<Value = BlockHeader> {
    (any::<i32>(), arb_hash(), arb_hash(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(version, prev, merkle, time, bits, nonce)| BlockHeader {
            version,
            prev_blockhash: BlockHash::from_byte_array(prev),
            merkle_root: Hash256::from_byte_array(merkle),
            time,
            bits: CompactTarget::from_consensus(bits),
            nonce,
        },
    )
}

proptest! {
    #[test]
    fn transactions_round_trip(tx in arb_tx()) {
        let bytes = tx.encode();
        prop_assert_eq!(bytes.len() as u64, tx.size());
        prop_assert_eq!(Transaction::decode(&bytes).expect("own encoding decodes"), tx);
    }

    #[test]
    fn headers_round_trip(header in arb_header()) {
        let bytes = encode::serialize(&header);
        prop_assert_eq!(&bytes, &header.to_bytes().to_vec());
        let decoded: BlockHeader = encode::deserialize(&bytes, 80).expect("own encoding decodes");
        prop_assert_eq!(decoded, header);
    }

    #[test]
    fn blocks_round_trip(header in arb_header(), txdata in prop::collection::vec(arb_tx(), 0..4)) {
        let block = Block { header, txdata };
        prop_assert_eq!(Block::decode(&block.encode()).expect("own encoding decodes"), block);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_reencode_canonically(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(tx) = Transaction::decode(&bytes) {
            prop_assert_eq!(tx.encode(), bytes.clone());
        }
        if let Ok(block) = Block::decode(&bytes) {
            prop_assert_eq!(block.encode(), bytes);
        }
    }

    #[test]
    fn mutated_encodings_never_panic(tx in arb_tx(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = tx.encode();
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(decoded) = Transaction::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }
}
