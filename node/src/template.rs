//! Block templates: which mempool transactions a miner puts in its next block.
//!
//! Owns the selection (Bitcoin Core's `BlockAssembler` in small form):
//! transactions are taken in order of their ancestor fee rate (the fee rate of
//! the transaction together with its unconfirmed ancestors), each package with its
//! parents before it, while the block stays within the size limit. The coinbase
//! pays subsidy plus fees to the miner's address and commits to the height.

use std::collections::HashSet;

use tinychain_protocol::block::{Block, BlockHeader};
use tinychain_protocol::merkle::block_merkle_root;
use tinychain_protocol::params::{MAX_BLOCK_SIZE, Params};
use tinychain_protocol::pow::CompactTarget;
use tinychain_protocol::transaction::COINBASE_MESSAGE_LEN;
use tinychain_protocol::validation::block_subsidy;
use tinychain_protocol::{Amount, BlockHash, PubkeyHash, Transaction, TxOut, Txid};

use crate::mempool::Mempool;

/// Bytes kept free in a template for the header, coinbase and length prefixes.
const RESERVED_BYTES: u64 = 1_000;

/// The text every coinbase of this node carries.
pub const COINBASE_MESSAGE: &[u8] = b"tinychain-rs";

/// A block ready to be mined: only the nonce (and extra nonce) remain to be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTemplate {
    /// The block, with a valid merkle root and nonce 0.
    pub block: Block,
    /// Its height.
    pub height: u32,
    /// Fees of its transactions.
    pub fees: Amount,
}

/// What a template is built on.
#[derive(Debug, Clone, Copy)]
pub struct TemplateContext {
    /// The tip to build on.
    pub prev_blockhash: BlockHash,
    /// The new block's height.
    pub height: u32,
    /// The tip's median time past (the block's time must be later).
    pub median_time_past: u32,
    /// The bits the block must have.
    pub bits: CompactTarget,
    /// The current time.
    pub now: u32,
}

/// Builds a coinbase for `height` paying `value` to `pay_to`.
pub fn coinbase(height: u32, extra_nonce: u64, pay_to: PubkeyHash, value: Amount) -> Transaction {
    let mut message = [0u8; COINBASE_MESSAGE_LEN];
    message[..COINBASE_MESSAGE.len()].copy_from_slice(COINBASE_MESSAGE);
    Transaction::coinbase(height, extra_nonce, &message, vec![TxOut { value, pubkey_hash: pay_to }])
}

/// Selects mempool transactions for a block, parents before children.
pub fn select_transactions(mempool: &Mempool, max_bytes: u64) -> (Vec<Transaction>, Amount) {
    // Score each entry by the fee rate of itself with its unconfirmed ancestors.
    let mut scored: Vec<(u128, u64, Txid)> = mempool
        .entries()
        .map(|(txid, entry)| {
            let ancestors = mempool.ancestors(&entry.tx);
            let (mut fee, mut size) = (entry.fee.to_belushis(), entry.size);
            for a in &ancestors {
                if let Some(e) = mempool.get(a) {
                    fee += e.fee.to_belushis();
                    size += e.size;
                }
            }
            let rate = u128::from(fee) * 1_000_000 / u128::from(size.max(1));
            (rate, entry.sequence, *txid)
        })
        .collect();
    // Highest rate first; on ties, earliest first.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut included: HashSet<Txid> = HashSet::new();
    let mut chosen = Vec::new();
    let (mut bytes, mut fees) = (0u64, Amount::ZERO);
    for (_, _, txid) in scored {
        if included.contains(&txid) {
            continue;
        }
        let Some(entry) = mempool.get(&txid) else { continue };
        // The package: missing ancestors in entry order (parents first), then the tx.
        let mut package: Vec<Txid> =
            mempool.ancestors(&entry.tx).into_iter().filter(|a| !included.contains(a)).collect();
        package.sort_by_key(|a| mempool.get(a).map_or(0, |e| e.sequence));
        package.push(txid);
        let package_bytes: u64 =
            package.iter().filter_map(|t| mempool.get(t)).map(|e| e.size).sum();
        if bytes + package_bytes > max_bytes {
            continue;
        }
        for t in package {
            if let Some(e) = mempool.get(&t) {
                included.insert(t);
                bytes += e.size;
                fees = fees.checked_add(e.fee).unwrap_or(fees);
                chosen.push(e.tx.clone());
            }
        }
    }
    (chosen, fees)
}

/// Builds a block template on `ctx` paying to `pay_to`.
pub fn create_block_template(
    ctx: &TemplateContext,
    mempool: &Mempool,
    pay_to: PubkeyHash,
    params: &Params,
) -> BlockTemplate {
    let (txs, fees) = select_transactions(mempool, MAX_BLOCK_SIZE - RESERVED_BYTES);
    let reward = block_subsidy(ctx.height, params).checked_add(fees).unwrap_or(Amount::MAX_MONEY);
    let mut txdata = Vec::with_capacity(txs.len() + 1);
    txdata.push(coinbase(ctx.height, 0, pay_to, reward));
    txdata.extend(txs);
    let header = BlockHeader {
        version: 1,
        prev_blockhash: ctx.prev_blockhash,
        merkle_root: block_merkle_root(&txdata).root,
        time: ctx.now.max(ctx.median_time_past + 1),
        bits: ctx.bits,
        nonce: 0,
    };
    BlockTemplate { block: Block { header, txdata }, height: ctx.height, fees }
}

/// Returns the block with its coinbase's extra nonce set and the merkle root updated.
pub fn with_extra_nonce(template: &BlockTemplate, extra_nonce: u64) -> Block {
    let mut block = template.block.clone();
    let old = &block.txdata[0];
    let value = old.outputs.first().map_or(Amount::ZERO, |o| o.value);
    let pay_to = old.outputs.first().map(|o| o.pubkey_hash).unwrap_or_default();
    block.txdata[0] = coinbase(template.height, extra_nonce, pay_to, value);
    block.header.merkle_root = block_merkle_root(&block.txdata).root;
    block
}
