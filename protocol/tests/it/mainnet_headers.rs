//! Real Bitcoin mainnet headers: every 2016th header from height 2016 to 822528,
//! with Bitcoin Core's chainwork, from `protocol/tests/data/` (see its README
//! for provenance). They pin header parsing and hashing, compact-target decoding,
//! proof of work and chainwork arithmetic to Bitcoin's. The file must be present:
//! a missing file fails the test rather than skipping it.

use std::str::FromStr;

use tinychain_protocol::pow::{CompactTarget, HeaderHasher, Target, Work, check_proof_of_work};
use tinychain_protocol::{BlockHash, BlockHeader};

/// The fixture, kept in the repository.
const CHECKPOINTS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bitcoin-mainnet-checkpoints.tsv");

/// Blocks between rows (and between Bitcoin's difficulty changes).
const INTERVAL: u32 = 2016;

/// One row of the file.
struct Row {
    height: u32,
    chainwork: Work,
    header_bytes: [u8; BlockHeader::SIZE],
    block_hash: BlockHash,
    block_hash_hex: String,
}

fn read_rows() -> Vec<Row> {
    let text = std::fs::read_to_string(CHECKPOINTS)
        .unwrap_or_else(|e| panic!("cannot read the test data {CHECKPOINTS}: {e}"));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("height\tchainwork_hex\theader_hex\tblock_hash"));
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "row {line:?}");
            let mut header_bytes = [0u8; BlockHeader::SIZE];
            hex::decode_to_slice(fields[2], &mut header_bytes)
                .expect("header_hex is 80 bytes of hex");
            Row {
                height: fields[0].parse().expect("height is decimal"),
                chainwork: Work::from_hex(fields[1]).expect("chainwork_hex is hex"),
                header_bytes,
                block_hash: BlockHash::from_str(fields[3]).expect("block_hash is a hash"),
                block_hash_hex: fields[3].to_owned(),
            }
        })
        .collect()
}

/// Bitcoin's mainnet pow limit, `0xffff << 208`.
fn bitcoin_pow_limit() -> Target {
    let mut bytes = [0u8; 32];
    bytes[4] = 0xff;
    bytes[5] = 0xff;
    Target::from_be_bytes(bytes)
}

fn work_of(bits: CompactTarget) -> Work {
    bits.to_target().expect("mainnet bits decode").to_work()
}

#[test]
fn every_mainnet_checkpoint_header_hashes_and_meets_its_target() {
    let rows = read_rows();
    assert_eq!(rows.len(), 408);
    let limit = bitcoin_pow_limit();
    for (i, row) in rows.iter().enumerate() {
        let height = row.height;
        assert_eq!(height, INTERVAL * (i as u32 + 1), "heights are consecutive multiples of 2016");
        let header = BlockHeader::from_bytes(&row.header_bytes);
        assert_eq!(
            header.to_bytes(),
            row.header_bytes,
            "{height}: re-serializes to the same bytes"
        );
        let hash = header.block_hash();
        assert_eq!(hash, row.block_hash, "{height}: block hash");
        assert_eq!(hash.to_string(), row.block_hash_hex, "{height}: displayed hash");
        assert_eq!(
            HeaderHasher::new(&header).hash_with(header.time, header.nonce),
            hash,
            "{height}: midstate hasher"
        );
        let target = header.bits.to_target().expect("mainnet bits decode");
        assert!(target <= limit, "{height}: target within the pow limit");
        assert_eq!(target.to_compact(), header.bits, "{height}: compact round trip");
        assert_eq!(
            check_proof_of_work(hash, header.bits, &limit),
            Ok(()),
            "{height}: proof of work"
        );
    }
}

#[test]
fn mainnet_chainwork_adds_up() {
    let rows = read_rows();
    assert_eq!(rows.len(), 408);
    let headers: Vec<BlockHeader> =
        rows.iter().map(|row| BlockHeader::from_bytes(&row.header_bytes)).collect();

    // Between rows at heights h and h + 2016: 2015 blocks with bits_h, then one
    // with bits_{h+2016}, which starts the next difficulty period.
    for (pair, window) in rows.windows(2).zip(headers.windows(2)) {
        let step = work_of(window[0].bits)
            .checked_mul(u64::from(INTERVAL - 1))
            .and_then(|w| w.checked_add(work_of(window[1].bits)))
            .expect("no overflow");
        assert_eq!(
            pair[1].chainwork.checked_sub(pair[0].chainwork),
            Some(step),
            "chainwork from {} to {}",
            pair[0].height,
            pair[1].height
        );
    }

    // From genesis (whose own work counts, Core's nChainWork): blocks 0..=2015
    // have the genesis bits 0x1d00ffff, then accumulate row by row.
    let genesis_work = work_of(CompactTarget::from_consensus(0x1d00_ffff));
    let mut chainwork = genesis_work.checked_mul(u64::from(INTERVAL)).expect("no overflow");
    let mut period_bits = CompactTarget::from_consensus(0x1d00_ffff);
    for (row, header) in rows.iter().zip(&headers) {
        if row.height > INTERVAL {
            chainwork = chainwork
                .checked_add(
                    work_of(period_bits).checked_mul(u64::from(INTERVAL - 1)).expect("fits"),
                )
                .expect("no overflow");
        }
        chainwork = chainwork.checked_add(work_of(header.bits)).expect("no overflow");
        assert_eq!(chainwork, row.chainwork, "chainwork at {}", row.height);
        assert_eq!(chainwork.to_string(), format!("{}", row.chainwork));
        period_bits = header.bits;
    }

    // The README's worked examples.
    let first = &rows[0];
    assert_eq!(work_of(headers[0].bits), Work::from_u128(4_295_032_833));
    assert_eq!(first.chainwork, Work::from_u128(2017 * 4_295_032_833));
    assert_eq!(first.chainwork.to_string(), "7e107e107e1");
    let last = &rows[407];
    assert_eq!(last.height, 822_528);
    assert_eq!(headers[407].bits, CompactTarget::from_consensus(0x1703_e8b3));
    assert_eq!(
        headers[407].bits.to_target().expect("decodes").to_string(),
        "00000000000000000003e8b30000000000000000000000000000000000000000"
    );
    assert_eq!(work_of(headers[407].bits), Work::from_u128(309_268_763_303_254_121_507_008));
    assert_eq!(last.chainwork.to_string(), "624c5a3c876e3e6fffd9c800");
}

#[test]
fn mainnet_genesis_block() {
    let mut bytes = [0u8; BlockHeader::SIZE];
    hex::decode_to_slice(
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c",
        &mut bytes,
    )
    .expect("valid hex literal");
    let header = BlockHeader::from_bytes(&bytes);
    assert_eq!(header.to_bytes(), bytes);
    let hash = header.block_hash();
    assert_eq!(
        hash.to_string(),
        "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    );
    assert_eq!(header.bits, CompactTarget::from_consensus(0x1d00_ffff));
    let target = header.bits.to_target().expect("decodes");
    assert_eq!(target, bitcoin_pow_limit());
    assert_eq!(check_proof_of_work(hash, header.bits, &bitcoin_pow_limit()), Ok(()));
    assert_eq!(target.to_work(), Work::from_u128(4_295_032_833));
    assert_eq!(HeaderHasher::new(&header).hash_with(header.time, header.nonce), hash);
}
