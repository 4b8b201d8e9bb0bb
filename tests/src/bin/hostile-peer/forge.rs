//! Blocks made to hurt: a fork from genesis with less work than any grown
//! chain, and a block that overpays its coinbase (found out only when
//! connected) with a child on it. Regtest proof of work costs a few hashes.

use tinychain_protocol::params::Params;
use tinychain_protocol::pow::HeaderHasher;
use tinychain_protocol::transaction::COINBASE_MESSAGE_LEN;
use tinychain_protocol::validation::block_subsidy;
use tinychain_protocol::{Amount, Block, BlockHash, BlockHeader, PubkeyHash, Transaction, TxOut};

/// Mines a block at `height` on `parent` with time `time`, whose coinbase
/// pays `extra` belushis more than the subsidy; `tag` makes it unique.
pub(crate) fn mine(
    params: &Params,
    parent: BlockHash,
    height: u32,
    time: u32,
    extra: u64,
    tag: u64,
) -> Block {
    let subsidy = block_subsidy(height, params);
    let value = subsidy.checked_add(Amount::from_belushis(extra)).unwrap_or(subsidy);
    let output = TxOut { value, pubkey_hash: PubkeyHash::default() };
    let coinbase = Transaction::coinbase(height, tag, &[0; COINBASE_MESSAGE_LEN], vec![output]);
    let txdata = vec![coinbase];
    let bits = params.genesis_block().header.bits;
    let mut header = BlockHeader {
        version: 1,
        prev_blockhash: parent,
        merkle_root: tinychain_protocol::merkle::block_merkle_root(&txdata).root,
        time,
        bits,
        nonce: 0,
    };
    let target = bits.to_target().expect("the genesis block's bits are valid");
    header.nonce =
        HeaderHasher::new(&header).find_nonce(time, 0..u32::MAX, &target).unwrap_or_default();
    Block { header, txdata }
}

/// A fork from genesis, one block at a time (each unique to `tag`).
pub(crate) struct LowWorkFork {
    params: Params,
    tip: BlockHash,
    height: u32,
    tag: u64,
}

impl LowWorkFork {
    pub(crate) fn new(params: &Params, tag: u64) -> LowWorkFork {
        LowWorkFork { params: params.clone(), tip: params.genesis_hash(), height: 0, tag }
    }

    pub(crate) fn next_block(&mut self) -> Block {
        self.height += 1;
        let time = self.params.genesis_block().header.time + self.height;
        let block = mine(&self.params, self.tip, self.height, time, 0, self.tag);
        self.tip = block.block_hash();
        block
    }
}

/// Pairs of blocks on the parent of the node's tip: one overpaying its
/// coinbase (equal work to the tip: stored, not connected), then its child
/// (more work: its parent fails to connect, so it is invalid).
pub(crate) struct InvalidAncestry {
    params: Params,
    parent: BlockHash,
    parent_height: u32,
    time: u32,
    tag: u64,
}

impl InvalidAncestry {
    /// On `headers`, the node's active chain after genesis, in order.
    pub(crate) fn new(
        params: &Params,
        headers: &[BlockHeader],
        tag: u64,
    ) -> Option<InvalidAncestry> {
        let tip = headers.last()?;
        let parent_height = u32::try_from(headers.len()).ok()?.checked_sub(1)?;
        let parent = tip.prev_blockhash;
        let latest = headers.iter().rev().take(11).map(|h| h.time).max()?;
        Some(InvalidAncestry {
            params: params.clone(),
            parent,
            parent_height,
            time: latest + 1,
            tag,
        })
    }

    pub(crate) fn next_pair(&mut self) -> [Block; 2] {
        self.tag += 1;
        let height = self.parent_height + 1;
        let bad = mine(&self.params, self.parent, height, self.time, 1, self.tag);
        let child = mine(&self.params, bad.block_hash(), height + 1, self.time + 1, 0, self.tag);
        [bad, child]
    }
}
