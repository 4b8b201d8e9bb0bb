//! Consensus validation of transactions and blocks.
//!
//! Owns the rules a transaction or block must follow to be accepted, as pure
//! functions over an abstract UTXO view ([`UtxoView`]) and the chain context of
//! the block's parent ([`BlockContext`]); the current time is passed in. Nothing
//! here changes state: [`check_block_inputs`] returns what connecting a block
//! would spend and create ([`BlockSpends`]) and the caller applies it.
//!
//! Every failure is a typed error naming the rule, and says ([`Kind`]) whether
//! the data is invalid (punish who sent it), merely missing something (ask for
//! it), or not valid yet (decline quietly, it may become valid).
//!
//! The order follows Bitcoin Core: context-free checks (`CheckTransaction`,
//! `CheckBlock`), then checks against the parent (`ContextualCheckBlockHeader`,
//! `ContextualCheckBlock`), then against the UTXO set (`ConnectBlock`).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::amount::Amount;
use crate::block::{Block, BlockHeader};
use crate::hash::{BlockHash, Hash256, Txid};
use crate::merkle::{compute_merkle_root, txid_leaf};
use crate::params::{MAX_BLOCK_SIZE, Params};
use crate::pow::{self, CompactTarget, PowError};
use crate::sighash::{SighashCache, SignatureError};
use crate::transaction::{LOCKTIME_THRESHOLD, OutPoint, SEQUENCE_FINAL, Transaction, TxOut};

/// The largest transaction, in bytes of canonical encoding.
pub const MAX_TX_SIZE: u64 = MAX_BLOCK_SIZE - BlockHeader::SIZE as u64 - 16;

/// An unspent output and where it was created (Bitcoin Core's `Coin`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub struct Coin {
    /// The output.
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether a coinbase created it (then it must mature before it is spent).
    pub is_coinbase: bool,
}

impl Coin {
    /// Returns the canonical encoding (value u64, pubkey hash, height u32, both
    /// little-endian, then the coinbase flag as one byte) without allocating: the
    /// bytes [`crate::encode::serialize`] gives.
    pub fn to_bytes(&self) -> [u8; 33] {
        let mut bytes = [0u8; 33];
        bytes[..8].copy_from_slice(&self.output.value.to_belushis().to_le_bytes());
        bytes[8..28].copy_from_slice(&self.output.pubkey_hash.to_byte_array());
        bytes[28..32].copy_from_slice(&self.height.to_le_bytes());
        bytes[32] = u8::from(self.is_coinbase);
        bytes
    }
}

/// Read access to a set of unspent outputs.
pub trait UtxoView {
    /// Returns the unspent output at `outpoint`, if there is one.
    fn get_coin(&self, outpoint: &OutPoint) -> Option<Coin>;
}

impl UtxoView for HashMap<OutPoint, Coin> {
    fn get_coin(&self, outpoint: &OutPoint) -> Option<Coin> {
        self.get(outpoint).copied()
    }
}

/// How a rejection should be treated by whoever passed the data on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Breaks a consensus rule: never valid; penalise the sender.
    Invalid,
    /// Depends on data we do not have (an input or parent): ask for it.
    Missing,
    /// Not valid yet (locktime, coinbase maturity, time too far ahead): may become valid.
    Premature,
}

/// Why a transaction is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// A transaction needs at least one input.
    #[error("transaction has no inputs")]
    NoInputs,
    /// A transaction needs at least one output.
    #[error("transaction has no outputs")]
    NoOutputs,
    /// The encoding is larger than [`MAX_TX_SIZE`].
    #[error("transaction is {size} bytes, above the limit of {MAX_TX_SIZE}")]
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
    /// An output's value is above `MAX_MONEY`.
    #[error("output {vout} value {value} is out of range")]
    OutputValueOutOfRange {
        /// The output's index.
        vout: u32,
        /// Its value.
        value: Amount,
    },
    /// The outputs together are above `MAX_MONEY`.
    #[error("total output value is out of range")]
    OutputTotalOutOfRange,
    /// Two inputs spend the same outpoint.
    #[error("inputs spend {0} twice")]
    DuplicateInput(OutPoint),
    /// A non-coinbase input names the null outpoint.
    #[error("input {0} has a null outpoint outside a coinbase")]
    NullPrevout(usize),
    /// A coinbase where one is not allowed (outside a block's first position).
    #[error("unexpected coinbase transaction")]
    UnexpectedCoinbase,
    /// An input's output does not exist or is already spent.
    #[error("input {input} spends {outpoint}, which is missing or spent")]
    MissingInput {
        /// The input's index.
        input: usize,
        /// The outpoint it names.
        outpoint: OutPoint,
    },
    /// An input spends a coinbase output that has not matured.
    #[error("input {input} spends a coinbase output at depth {depth}, which needs {maturity}")]
    PrematureCoinbaseSpend {
        /// The input's index.
        input: usize,
        /// Blocks from the coinbase to the spending block.
        depth: u32,
        /// The depth required.
        maturity: u32,
    },
    /// The spent outputs together are above `MAX_MONEY`.
    #[error("total input value is out of range")]
    InputTotalOutOfRange,
    /// The outputs are worth more than the inputs.
    #[error("inputs {inputs} are less than outputs {outputs}")]
    InputsBelowOutputs {
        /// Sum of the inputs.
        inputs: Amount,
        /// Sum of the outputs.
        outputs: Amount,
    },
    /// The locktime is not reached at this height and median time past.
    #[error("transaction is not final: locktime {locktime}")]
    NonFinal {
        /// The transaction's locktime.
        locktime: u32,
    },
    /// An input's signature or public key does not authorise the spend.
    #[error("input {input}: {error}")]
    Signature {
        /// The input's index.
        input: usize,
        /// What is wrong.
        error: SignatureError,
    },
}

impl TxError {
    /// Says how the sender of a transaction failing with this error should be treated.
    pub fn kind(&self) -> Kind {
        match self {
            TxError::MissingInput { .. } => Kind::Missing,
            TxError::PrematureCoinbaseSpend { .. } | TxError::NonFinal { .. } => Kind::Premature,
            _ => Kind::Invalid,
        }
    }
}

/// Why a block is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The proof of work is wrong: bad bits, target above the limit, or hash above target.
    #[error("proof of work: {0}")]
    ProofOfWork(#[from] PowError),
    /// The bits are not what the difficulty rule requires after the parent.
    #[error("bits {got:#010x} differ from the required {expected:#010x}")]
    BadDifficultyBits {
        /// Required bits.
        expected: u32,
        /// The block's bits.
        got: u32,
    },
    /// The time is not after the median of the previous 11 blocks.
    #[error("time {time} is not after the median time past {median_time_past}")]
    TimeTooOld {
        /// The block's time.
        time: u32,
        /// The parent's median time past.
        median_time_past: u32,
    },
    /// The time is too far ahead of the node's clock (not valid yet).
    #[error("time {time} is more than {limit} s ahead of the clock (now {now})")]
    TimeTooNew {
        /// The block's time.
        time: u32,
        /// The clock.
        now: u32,
        /// How far ahead a block's time may be, seconds.
        limit: u32,
    },
    /// The block does not follow the expected parent.
    #[error("block builds on {got}, expected {expected}")]
    WrongParent {
        /// The parent it was validated against.
        expected: BlockHash,
        /// The parent it names.
        got: BlockHash,
    },
    /// The encoding is larger than `MAX_BLOCK_SIZE`.
    #[error("block is {size} bytes, above the limit of {MAX_BLOCK_SIZE}")]
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
    /// A block needs at least a coinbase.
    #[error("block has no transactions")]
    NoTransactions,
    /// The first transaction is not a coinbase.
    #[error("first transaction is not a coinbase")]
    FirstNotCoinbase,
    /// A transaction other than the first is a coinbase.
    #[error("transaction {0} is a second coinbase")]
    MultipleCoinbases(usize),
    /// The coinbase does not commit to the block's height.
    #[error("coinbase commits to height {got}, block is at {expected}")]
    BadCoinbaseHeight {
        /// The block's height.
        expected: u32,
        /// The height in the coinbase.
        got: u32,
    },
    /// The coinbase pays more than subsidy plus fees.
    #[error("coinbase pays {paid}, at most {allowed} allowed")]
    CoinbaseTooLarge {
        /// What the coinbase outputs sum to.
        paid: Amount,
        /// Subsidy plus fees.
        allowed: Amount,
    },
    /// The header's merkle root does not match the transactions.
    #[error("merkle root does not match the transactions")]
    BadMerkleRoot,
    /// The transaction list is a mutation with the same merkle root (CVE-2012-2459).
    #[error("duplicate transactions make the merkle tree ambiguous")]
    MutatedMerkleTree,
    /// Two transactions have the same txid.
    #[error("txid {0} appears twice")]
    DuplicateTxid(Txid),
    /// Two inputs in the block spend the same output.
    #[error("transaction {tx} spends {outpoint}, already spent in this block")]
    DoubleSpend {
        /// The index of the transaction spending it the second time.
        tx: usize,
        /// The outpoint.
        outpoint: OutPoint,
    },
    /// A transaction creates an output that already exists unspent (Bitcoin's BIP 30).
    #[error("transaction {tx} overwrites the unspent output {outpoint}")]
    OverwritesUnspentOutput {
        /// The transaction's index.
        tx: usize,
        /// The outpoint.
        outpoint: OutPoint,
    },
    /// A transaction in the block is invalid.
    #[error("transaction {index} ({txid}): {error}")]
    Transaction {
        /// The transaction's index in the block.
        index: usize,
        /// Its txid.
        txid: Txid,
        /// What is wrong.
        error: TxError,
    },
}

impl BlockError {
    /// Says how the sender of a block failing with this error should be treated.
    ///
    /// Inside a block every transaction rule is consensus: a missing or
    /// immature input makes the block invalid. Only a time too far in the future
    /// may become valid later (Bitcoin Core's `BLOCK_TIME_FUTURE`).
    pub fn kind(&self) -> Kind {
        match self {
            BlockError::TimeTooNew { .. } => Kind::Premature,
            _ => Kind::Invalid,
        }
    }
}

/// What validation needs to know about a block's parent and the present.
#[derive(Clone, Copy, Debug)]
pub struct BlockContext {
    /// The parent's hash.
    pub prev_blockhash: BlockHash,
    /// The new block's height (parent height + 1).
    pub height: u32,
    /// Median time past of the parent (the median of the last 11 block times).
    pub median_time_past: u32,
    /// The bits the difficulty rule requires for the new block.
    pub required_bits: CompactTarget,
    /// The node's current time, unix seconds.
    pub now: u32,
}

/// Returns the block subsidy at `height`: 50 coins, halved every `subsidy_halving_interval` blocks.
pub fn block_subsidy(height: u32, params: &Params) -> Amount {
    let halvings = height / params.subsidy_halving_interval;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_belushis((50 * crate::amount::COIN) >> halvings)
}

/// Checks a transaction on its own (Bitcoin Core's `CheckTransaction`).
///
/// # Errors
///
/// Returns the first rule the transaction breaks.
pub fn check_transaction(tx: &Transaction) -> Result<(), TxError> {
    if tx.inputs.is_empty() {
        return Err(TxError::NoInputs);
    }
    if tx.outputs.is_empty() {
        return Err(TxError::NoOutputs);
    }
    let size = tx.size();
    if size > MAX_TX_SIZE {
        return Err(TxError::TooLarge { size });
    }
    let mut total = Amount::ZERO;
    for (vout, out) in tx.outputs.iter().enumerate() {
        if !out.value.is_money_range() {
            return Err(TxError::OutputValueOutOfRange { vout: vout as u32, value: out.value });
        }
        total = total
            .checked_add(out.value)
            .filter(|t| t.is_money_range())
            .ok_or(TxError::OutputTotalOutOfRange)?;
    }
    let mut seen = HashSet::with_capacity(tx.inputs.len());
    for input in &tx.inputs {
        if !seen.insert(input.prev_out) {
            return Err(TxError::DuplicateInput(input.prev_out));
        }
    }
    if !tx.is_coinbase()
        && let Some(i) = tx.inputs.iter().position(|input| input.prev_out.is_null())
    {
        return Err(TxError::NullPrevout(i));
    }
    Ok(())
}

/// Tells whether `tx` may be included in a block at `height` whose parent has
/// median time past `median_time_past` (Bitcoin Core's `IsFinalTx` with BIP 113).
pub fn is_final_tx(tx: &Transaction, height: u32, median_time_past: u32) -> bool {
    if tx.locktime == 0 {
        return true;
    }
    let reached = if tx.locktime < LOCKTIME_THRESHOLD {
        tx.locktime < height
    } else {
        tx.locktime < median_time_past
    };
    reached || tx.inputs.iter().all(|input| input.sequence == SEQUENCE_FINAL)
}

/// Checks a non-coinbase transaction's inputs against the coins it spends
/// (Bitcoin Core's `Consensus::CheckTxInputs`), without signatures.
///
/// `coins[i]` is the coin input `i` spends; `spend_height` is the height of the
/// block that would include the transaction. Returns the fee.
///
/// # Errors
///
/// Immature coinbase spends, out-of-range values, or outputs above inputs.
pub fn check_tx_amounts(
    tx: &Transaction,
    coins: &[Coin],
    spend_height: u32,
    params: &Params,
) -> Result<Amount, TxError> {
    let mut inputs = Amount::ZERO;
    for (input, coin) in coins.iter().enumerate() {
        if coin.is_coinbase {
            let depth = spend_height.saturating_sub(coin.height);
            if depth < params.coinbase_maturity {
                return Err(TxError::PrematureCoinbaseSpend {
                    input,
                    depth,
                    maturity: params.coinbase_maturity,
                });
            }
        }
        if !coin.output.value.is_money_range() {
            return Err(TxError::InputTotalOutOfRange);
        }
        inputs = inputs
            .checked_add(coin.output.value)
            .filter(|t| t.is_money_range())
            .ok_or(TxError::InputTotalOutOfRange)?;
    }
    let outputs = tx.total_out().ok_or(TxError::OutputTotalOutOfRange)?;
    inputs.checked_sub(outputs).ok_or(TxError::InputsBelowOutputs { inputs, outputs })
}

/// Checks every input's signature against the coin it spends.
///
/// # Errors
///
/// The first input whose signature or public key does not authorise the spend.
pub fn check_tx_signatures(tx: &Transaction, coins: &[Coin]) -> Result<(), TxError> {
    let cache = SighashCache::new(tx);
    for (input, coin) in coins.iter().enumerate() {
        cache
            .verify_input(input, &coin.output)
            .map_err(|error| TxError::Signature { input, error })?;
    }
    Ok(())
}

/// Looks up the coins a transaction spends in `view`.
///
/// # Errors
///
/// [`TxError::MissingInput`] for the first input whose output is not in the view.
pub fn lookup_coins(tx: &Transaction, view: &impl UtxoView) -> Result<Vec<Coin>, TxError> {
    tx.inputs
        .iter()
        .enumerate()
        .map(|(input, txin)| {
            view.get_coin(&txin.prev_out)
                .ok_or(TxError::MissingInput { input, outpoint: txin.prev_out })
        })
        .collect()
}

/// Fully checks a loose (mempool) transaction against `view`, as if it were
/// included in a block at `spend_height` after a parent with `median_time_past`.
/// Returns the fee.
///
/// # Errors
///
/// Any consensus rule the transaction breaks; see [`TxError::kind`].
pub fn check_loose_transaction(
    tx: &Transaction,
    view: &impl UtxoView,
    spend_height: u32,
    median_time_past: u32,
    params: &Params,
) -> Result<Amount, TxError> {
    check_transaction(tx)?;
    if tx.is_coinbase() {
        return Err(TxError::UnexpectedCoinbase);
    }
    if !is_final_tx(tx, spend_height, median_time_past) {
        return Err(TxError::NonFinal { locktime: tx.locktime });
    }
    let coins = lookup_coins(tx, view)?;
    let fee = check_tx_amounts(tx, &coins, spend_height, params)?;
    check_tx_signatures(tx, &coins)?;
    Ok(fee)
}

/// Checks a header's proof of work on its own: the bits decode to a target
/// within the pow limit and the hash meets it.
///
/// # Errors
///
/// [`BlockError::ProofOfWork`].
pub fn check_block_header(header: &BlockHeader, params: &Params) -> Result<(), BlockError> {
    pow::check_proof_of_work(header.block_hash(), header.bits, &params.pow_limit)?;
    Ok(())
}

/// Checks a header against its parent: parent hash, required bits, time after the
/// median time past and not too far in the future (Core's `ContextualCheckBlockHeader`).
///
/// # Errors
///
/// The first rule broken.
pub fn contextual_check_block_header(
    header: &BlockHeader,
    ctx: &BlockContext,
    params: &Params,
) -> Result<(), BlockError> {
    if header.prev_blockhash != ctx.prev_blockhash {
        return Err(BlockError::WrongParent {
            expected: ctx.prev_blockhash,
            got: header.prev_blockhash,
        });
    }
    if header.bits != ctx.required_bits {
        return Err(BlockError::BadDifficultyBits {
            expected: ctx.required_bits.to_consensus(),
            got: header.bits.to_consensus(),
        });
    }
    if header.time <= ctx.median_time_past {
        return Err(BlockError::TimeTooOld {
            time: header.time,
            median_time_past: ctx.median_time_past,
        });
    }
    let limit = params.max_future_block_time;
    if header.time > ctx.now.saturating_add(limit) {
        return Err(BlockError::TimeTooNew { time: header.time, now: ctx.now, limit });
    }
    Ok(())
}

/// Checks a block on its own (Bitcoin Core's `CheckBlock`): proof of work, size,
/// coinbase placement, merkle root, duplicate txids, and every transaction's
/// context-free rules.
///
/// # Errors
///
/// The first rule broken.
pub fn check_block(block: &Block, params: &Params) -> Result<(), BlockError> {
    check_block_header(&block.header, params)?;
    let size = block.size();
    if size > MAX_BLOCK_SIZE {
        return Err(BlockError::TooLarge { size });
    }
    let Some(first) = block.txdata.first() else {
        return Err(BlockError::NoTransactions);
    };
    if !first.is_coinbase() {
        return Err(BlockError::FirstNotCoinbase);
    }
    if let Some(i) = block.txdata.iter().skip(1).position(Transaction::is_coinbase) {
        return Err(BlockError::MultipleCoinbases(i + 1));
    }
    // Each txid hashes the whole transaction: compute them once.
    let txids: Vec<Txid> = block.txdata.iter().map(Transaction::txid).collect();
    let leaves: Vec<Hash256> = txids.iter().map(|txid| txid_leaf(*txid)).collect();
    let merkle = compute_merkle_root(&leaves);
    if merkle.root != block.header.merkle_root {
        return Err(BlockError::BadMerkleRoot);
    }
    if merkle.mutated {
        return Err(BlockError::MutatedMerkleTree);
    }
    let mut seen = HashSet::with_capacity(block.txdata.len());
    for (index, (tx, &txid)) in block.txdata.iter().zip(&txids).enumerate() {
        if !seen.insert(txid) {
            return Err(BlockError::DuplicateTxid(txid));
        }
        check_transaction(tx).map_err(|error| BlockError::Transaction { index, txid, error })?;
    }
    Ok(())
}

/// Checks a block against its parent (Bitcoin Core's `ContextualCheckBlock`):
/// header rules, every transaction final, the coinbase committing to the height.
///
/// # Errors
///
/// The first rule broken.
pub fn contextual_check_block(
    block: &Block,
    ctx: &BlockContext,
    params: &Params,
) -> Result<(), BlockError> {
    contextual_check_block_header(&block.header, ctx, params)?;
    for (index, tx) in block.txdata.iter().enumerate() {
        if !is_final_tx(tx, ctx.height, ctx.median_time_past) {
            return Err(BlockError::Transaction {
                index,
                txid: tx.txid(),
                error: TxError::NonFinal { locktime: tx.locktime },
            });
        }
    }
    let got = block.txdata.first().and_then(Transaction::coinbase_height);
    match got {
        Some(got) if got == ctx.height => Ok(()),
        Some(got) => Err(BlockError::BadCoinbaseHeight { expected: ctx.height, got }),
        None => Err(BlockError::FirstNotCoinbase),
    }
}

/// What connecting a block spends and creates; its `spent` list is the block's undo data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSpends {
    /// Each transaction's txid, in block order (computed once here, for reuse).
    pub txids: Vec<Txid>,
    /// For each transaction (the coinbase's entry is empty), the coins its inputs spend, in order.
    pub coins: Vec<Vec<Coin>>,
    /// Outputs of the UTXO set the block spends, in order: restore these to undo it.
    pub spent: Vec<(OutPoint, Coin)>,
    /// Outputs the block adds to the UTXO set (created and not spent within the block).
    pub created: Vec<(OutPoint, Coin)>,
    /// Total fees of the block's transactions.
    pub fees: Amount,
}

/// Checks a block's transactions against the UTXO set of its parent (Bitcoin
/// Core's `ConnectBlock`, without signatures — see [`check_block_signatures`]):
/// every input exists and is spent once, spends of outputs created earlier in the
/// block are allowed but not later, coinbases mature, amounts balance, no output
/// overwrites an unspent one, and the coinbase pays at most subsidy plus fees.
///
/// The block must have passed [`check_block`] (so it has a coinbase first).
///
/// # Errors
///
/// The first rule broken.
pub fn check_block_inputs(
    block: &Block,
    height: u32,
    view: &impl UtxoView,
    params: &Params,
) -> Result<BlockSpends, BlockError> {
    // Earlier transactions of the block by txid, for spends inside the block: one
    // entry per transaction, not per output (a block may create tens of thousands).
    let mut earlier: HashMap<Txid, usize> = HashMap::with_capacity(block.txdata.len());
    let mut spent_here: HashSet<OutPoint> = HashSet::new();
    // Outputs created and spent inside the block: they never reach the UTXO set.
    let mut spent_inside: HashSet<OutPoint> = HashSet::new();
    let mut spends = BlockSpends {
        txids: Vec::new(),
        coins: Vec::with_capacity(block.txdata.len()),
        spent: Vec::new(),
        created: Vec::with_capacity(block.txdata.iter().map(|tx| tx.outputs.len()).sum()),
        fees: Amount::ZERO,
    };
    let txids: Vec<Txid> = block.txdata.iter().map(Transaction::txid).collect();
    for (index, (tx, &txid)) in block.txdata.iter().zip(&txids).enumerate() {
        let tx_error = |error| BlockError::Transaction { index, txid, error };
        let is_coinbase = index == 0;
        let mut coins = Vec::with_capacity(tx.inputs.len());
        if !is_coinbase {
            for (input, txin) in tx.inputs.iter().enumerate() {
                let outpoint = txin.prev_out;
                if !spent_here.insert(outpoint) {
                    return Err(BlockError::DoubleSpend { tx: index, outpoint });
                }
                let inside = earlier.get(&outpoint.txid).and_then(|&j| {
                    let output = block.txdata[j].outputs.get(outpoint.vout as usize)?;
                    Some(Coin { output: *output, height, is_coinbase: j == 0 })
                });
                let coin = match inside {
                    Some(coin) => {
                        spent_inside.insert(outpoint);
                        coin
                    }
                    None => {
                        let coin = view
                            .get_coin(&outpoint)
                            .ok_or_else(|| tx_error(TxError::MissingInput { input, outpoint }))?;
                        spends.spent.push((outpoint, coin));
                        coin
                    }
                };
                coins.push(coin);
            }
            let fee = check_tx_amounts(tx, &coins, height, params).map_err(tx_error)?;
            spends.fees = spends
                .fees
                .checked_add(fee)
                .filter(|f| f.is_money_range())
                .ok_or_else(|| tx_error(TxError::InputTotalOutOfRange))?;
        }
        for vout in 0..tx.outputs.len() as u32 {
            let outpoint = OutPoint { txid, vout };
            if view.get_coin(&outpoint).is_some() && !spent_here.contains(&outpoint) {
                return Err(BlockError::OverwritesUnspentOutput { tx: index, outpoint });
            }
        }
        earlier.insert(txid, index);
        spends.coins.push(coins);
    }
    let allowed =
        block_subsidy(height, params).checked_add(spends.fees).unwrap_or(Amount::MAX_MONEY);
    let paid = block.txdata[0].total_out().unwrap_or(Amount::MAX_MONEY);
    if paid > allowed {
        return Err(BlockError::CoinbaseTooLarge { paid, allowed });
    }
    // The created outputs in block order, so applying them is deterministic.
    for (index, (tx, &txid)) in block.txdata.iter().zip(&txids).enumerate() {
        for (vout, output) in tx.outputs.iter().enumerate() {
            let outpoint = OutPoint { txid, vout: vout as u32 };
            if spent_inside.is_empty() || !spent_inside.contains(&outpoint) {
                let coin = Coin { output: *output, height, is_coinbase: index == 0 };
                spends.created.push((outpoint, coin));
            }
        }
    }
    spends.txids = txids;
    Ok(spends)
}

/// Signatures a thread claims at a time: small enough that threads finish
/// together even when one shares its core, large enough that claiming is free.
const SIGNATURE_GRAIN: usize = 16;

/// Verifies every input signature of a block, spread over `threads` OS threads.
///
/// `spends` comes from [`check_block_inputs`] for the same block. Threads claim
/// the next `SIGNATURE_GRAIN` (16) signatures until none are left, so they stay
/// busy to the end whatever else the machine runs. The result does not depend
/// on `threads`: on failure it names the first bad input in block order (a
/// failure stops only the claims that lie after it).
///
/// # Errors
///
/// [`BlockError::Transaction`] with [`TxError::Signature`].
pub fn check_block_signatures(
    block: &Block,
    spends: &BlockSpends,
    threads: NonZeroUsize,
) -> Result<(), BlockError> {
    check_block_signatures_except(block, spends, threads, |_| false)
}

/// [`check_block_signatures`] for the transactions `verified` does not name:
/// Bitcoin Core's script execution cache. A caller names a transaction only if
/// it checked the same transaction's signatures before (when it entered the
/// mempool). That is safe because a txid commits to every byte of the
/// transaction, signatures included, and an outpoint names one coin whatever the
/// chain (txids never repeat), so the same check would give the same answer.
///
/// # Errors
///
/// As [`check_block_signatures`], for the inputs it checks.
pub fn check_block_signatures_except(
    block: &Block,
    spends: &BlockSpends,
    threads: NonZeroUsize,
    verified: impl Fn(&Txid) -> bool,
) -> Result<(), BlockError> {
    check_blocks_signatures_except(&[(block, spends)], threads, verified).map_err(|(_, e)| e)
}

/// [`check_block_signatures_except`] for a run of blocks at once, their
/// signatures shared out over `threads` together, so that blocks too small to
/// keep every thread busy on their own still do (a sync connecting many small
/// blocks). Each block's `spends` must come from [`check_block_inputs`] against
/// the UTXO set the earlier blocks of the run leave.
///
/// # Errors
///
/// The position in `blocks` and the error of the first bad input in block
/// order: the same error [`check_block_signatures_except`] gives for that
/// block, whatever `threads`.
pub fn check_blocks_signatures_except(
    blocks: &[(&Block, &BlockSpends)],
    threads: NonZeroUsize,
    verified: impl Fn(&Txid) -> bool,
) -> Result<(), (usize, BlockError)> {
    // (block, transaction, input, spent output), in block order.
    let checks: Vec<(usize, usize, usize, &TxOut)> = (blocks.iter().enumerate())
        .flat_map(|(b, (_, spends))| {
            let verified = &verified;
            (spends.coins.iter().enumerate())
                .filter(move |(tx, _)| !spends.txids.get(*tx).is_some_and(verified))
                .flat_map(move |(tx, coins)| {
                    coins.iter().enumerate().map(move |(i, c)| (b, tx, i, &c.output))
                })
        })
        .collect();
    // Each transaction's shared sighash parts are hashed once, not once per input.
    let caches: Vec<Vec<SighashCache<'_>>> = (blocks.iter())
        .map(|(block, _)| block.txdata.iter().map(SighashCache::new).collect())
        .collect();
    let next = AtomicUsize::new(0);
    // The position in `checks` of the first failure found so far.
    let first_failure = AtomicUsize::new(usize::MAX);
    let work = || -> Option<(usize, SignatureError)> {
        let mut found = None;
        loop {
            let start = next.fetch_add(SIGNATURE_GRAIN, Ordering::Relaxed);
            if start >= checks.len().min(first_failure.load(Ordering::Relaxed)) {
                return found;
            }
            let end = (start + SIGNATURE_GRAIN).min(checks.len());
            for (at, &(b, tx, input, spent)) in checks[start..end].iter().enumerate() {
                if let Err(error) = caches[b][tx].verify_input(input, spent) {
                    let at = start + at;
                    first_failure.fetch_min(at, Ordering::Relaxed);
                    // Claims only grow, so this thread's first failure is its lowest.
                    found = found.or(Some((at, error)));
                    break;
                }
            }
        }
    };
    let workers = threads.get().min(checks.len().div_ceil(SIGNATURE_GRAIN)).max(1);
    let failure = if workers == 1 {
        work()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .min_by_key(|(at, _)| *at)
        })
    };
    match failure {
        None => Ok(()),
        Some((at, error)) => {
            let (b, index, input, _) = checks[at];
            let txid = blocks[b].0.txdata[index].txid();
            Err((
                b,
                BlockError::Transaction { index, txid, error: TxError::Signature { input, error } },
            ))
        }
    }
}

/// Runs every check on a block that extends the chain described by `ctx`, whose
/// UTXO set is `view`, and returns what connecting it spends and creates.
///
/// # Errors
///
/// The first rule broken.
pub fn validate_block(
    block: &Block,
    ctx: &BlockContext,
    view: &impl UtxoView,
    params: &Params,
    threads: NonZeroUsize,
) -> Result<BlockSpends, BlockError> {
    check_block(block, params)?;
    contextual_check_block(block, ctx, params)?;
    let spends = check_block_inputs(block, ctx.height, view, params)?;
    check_block_signatures(block, &spends, threads)?;
    Ok(spends)
}

#[cfg(test)]
mod tests;
