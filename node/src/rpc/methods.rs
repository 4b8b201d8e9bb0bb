//! The RPC methods, named after bitcoind's, answered from the core's state.
//!
//! Owns parameter parsing and the JSON shape of each answer. Runs inside the
//! event loop (the core's one owner), so answers are consistent snapshots.

use serde::Serialize;
use serde_json::{Value, json};
use tinychain_protocol::keys::Address;
use tinychain_protocol::params::Params;
use tinychain_protocol::pow::Target;
use tinychain_protocol::{Block, BlockHash, BlockHeader, Transaction, Txid};
use tinychain_rpc_client::types::{
    BlockHeaderInfo, BlockInfo, BlockchainInfo, FeeEstimate, MempoolInfo, TransactionInfo,
    TxInputInfo, TxLocation, TxOutputInfo,
};

use super::server::RpcError;
use super::table::ChainMethod;
use crate::core::{BlockOutcome, Core, Output, Source};
use crate::fees;
use crate::store::{Store, StoreError};

/// Largest `generatetoaddress` count in one call.
pub const MAX_GENERATE: u64 = 10_000;

/// Turns an answer into JSON.
///
/// # Errors
///
/// Never for the `tinychain_rpc_client::types` types (no maps with non-string keys).
pub fn to_json<T: Serialize>(value: &T) -> Result<Value, RpcError> {
    serde_json::to_value(value).map_err(|e| RpcError::internal(format!("encoding the answer: {e}")))
}

/// Reads parameter `i` as a string.
pub fn param_str(params: &[Value], i: usize, name: &str) -> Result<String, RpcError> {
    params.get(i).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
        RpcError::invalid_params(format!("parameter {} ({name}) must be a string", i + 1))
    })
}

/// Reads parameter `i` as an unsigned integer.
pub fn param_u64(params: &[Value], i: usize, name: &str) -> Result<u64, RpcError> {
    params.get(i).and_then(Value::as_u64).ok_or_else(|| {
        RpcError::invalid_params(format!(
            "parameter {} ({name}) must be a non-negative integer",
            i + 1
        ))
    })
}

fn param_hash<T: std::str::FromStr>(params: &[Value], i: usize, name: &str) -> Result<T, RpcError>
where
    T::Err: std::fmt::Display,
{
    param_str(params, i, name)?
        .parse()
        .map_err(|e| RpcError::invalid_params(format!("parameter {} ({name}): {e}", i + 1)))
}

fn decode_hex(s: &str, what: &str) -> Result<Vec<u8>, RpcError> {
    hex::decode(s).map_err(|e| RpcError::undecodable(format!("{what} must be hex: {e}")))
}

/// Parses the addresses parameter: one string or an array of strings.
pub fn param_addresses(
    params: &[Value],
    i: usize,
    network: &Params,
) -> Result<Vec<Address>, RpcError> {
    let raw: Vec<String> = match params.get(i) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| RpcError::invalid_params("addresses must be strings"))?,
        _ => return Err(RpcError::invalid_params("parameter 1 (addresses) is required")),
    };
    raw.iter()
        .map(|a| {
            Address::parse(a, network.network)
                .map_err(|e| RpcError::invalid_params(format!("address {a}: {e}")))
        })
        .collect()
}

/// Difficulty as bitcoind reports it: how many times harder than the easiest target.
pub fn difficulty(params: &Params, header: &BlockHeader) -> f64 {
    let Ok(target) = header.bits.to_target() else { return 0.0 };
    let work = target.to_work().to_f64();
    let base = params.pow_limit.to_work().to_f64();
    if base == 0.0 { 0.0 } else { work / base }
}

/// Reports a store failure to the caller (the node's own state is at fault).
fn internal(error: StoreError) -> RpcError {
    RpcError::internal(error.to_string())
}

/// The view of a header, if it is known.
///
/// # Errors
///
/// The store fails.
pub fn header_info<S: Store, P: Clone>(
    core: &Core<S, P>,
    hash: &BlockHash,
) -> Result<Option<BlockHeaderInfo>, StoreError> {
    let chain = core.chain();
    let Some(entry) = chain.index_entry(hash)? else { return Ok(None) };
    let active = chain.is_active(hash)?;
    let confirmations = if active { i64::from(chain.height() - entry.height) + 1 } else { -1 };
    let next = if active { chain.hash_at(entry.height + 1)? } else { None };
    Ok(Some(BlockHeaderInfo {
        hash: *hash,
        confirmations,
        height: entry.height,
        version: entry.header.version,
        merkleroot: entry.header.merkle_root,
        time: entry.header.time,
        nonce: entry.header.nonce,
        bits: format!("{:08x}", entry.header.bits.to_consensus()),
        difficulty: difficulty(chain.params(), &entry.header),
        chainwork: entry.chainwork,
        status: format!("{:?}", entry.status),
        previousblockhash: entry.header.prev_blockhash,
        nextblockhash: next,
        hex: hex::encode(entry.header.to_bytes()),
    }))
}

/// The view of a transaction, without its location.
pub fn tx_info(tx: &Transaction, params: &Params) -> TransactionInfo {
    TransactionInfo {
        txid: tx.txid(),
        size: tx.size(),
        version: tx.version,
        locktime: tx.locktime,
        coinbase: tx.is_coinbase(),
        vin: tx
            .inputs
            .iter()
            .map(|i| TxInputInfo {
                txid: i.prev_out.txid,
                vout: i.prev_out.vout,
                sequence: i.sequence,
            })
            .collect(),
        vout: (0u32..)
            .zip(&tx.outputs)
            .map(|(n, o)| TxOutputInfo {
                n,
                value: o.value,
                belushis: o.value,
                address: Address::new(params.network, o.pubkey_hash),
            })
            .collect(),
        hex: hex::encode(tx.encode()),
        location: None,
    }
}

/// Answers a method from the chain and mempool alone.
///
/// # Errors
///
/// Bad parameters, something asked for that is unknown, or a store failure.
pub fn chain_method<S: Store, P: Clone>(
    core: &Core<S, P>,
    method: ChainMethod,
    params: &[Value],
) -> Result<Value, RpcError> {
    match method {
        ChainMethod::GetBestBlockHash => Ok(json!(core.chain().tip().to_string())),
        ChainMethod::GetBlockCount => Ok(json!(core.chain().height())),
        ChainMethod::GetBlockHash => getblockhash(core, params),
        ChainMethod::GetBlockHeader => getblockheader(core, params),
        ChainMethod::GetBlock => getblock(core, params),
        ChainMethod::GetTransaction => gettransaction(core, params),
        ChainMethod::GetMempoolInfo => to_json(&MempoolInfo {
            size: core.mempool().len() as u64,
            bytes: core.mempool().total_bytes(),
            orphans: core.mempool().orphan_count() as u64,
        }),
        ChainMethod::GetRawMempool => {
            let mut txids: Vec<String> =
                core.mempool().entries().map(|(t, _)| t.to_string()).collect();
            txids.sort();
            Ok(json!(txids))
        }
        ChainMethod::GetAddressUtxos => super::address::getaddressutxos(core, params),
        ChainMethod::GetAddressHistory => super::address::getaddresshistory(core, params),
        ChainMethod::EstimateFee => estimatefee(core, params),
    }
}

fn getblockhash<S: Store, P: Clone>(
    core: &Core<S, P>,
    params: &[Value],
) -> Result<Value, RpcError> {
    let height = param_u64(params, 0, "height")?;
    let hash = match u32::try_from(height) {
        Ok(height) => core.chain().hash_at(height).map_err(internal)?,
        Err(_) => None,
    };
    hash.map(|h| json!(h.to_string())).ok_or_else(|| {
        RpcError::invalid_parameter(format!(
            "block height {height} out of range (the tip is at {})",
            core.chain().height()
        ))
    })
}

fn getblockheader<S: Store, P: Clone>(
    core: &Core<S, P>,
    params: &[Value],
) -> Result<Value, RpcError> {
    let hash: BlockHash = param_hash(params, 0, "blockhash")?;
    let info = header_info(core, &hash)
        .map_err(internal)?
        .ok_or_else(|| RpcError::not_found(format!("block {hash} not found")))?;
    to_json(&info)
}

fn getblock<S: Store, P: Clone>(core: &Core<S, P>, params: &[Value]) -> Result<Value, RpcError> {
    let hash: BlockHash = param_hash(params, 0, "blockhash")?;
    let verbosity = match params.get(1) {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .filter(|v| *v <= 2)
            .ok_or_else(|| RpcError::invalid_params("parameter 2 (verbosity) must be 0, 1 or 2"))?,
    };
    let block: Block = core
        .chain()
        .block(&hash)
        .map_err(|e| RpcError::internal(e.to_string()))?
        .ok_or_else(|| RpcError::not_found(format!("block {hash} not found")))?;
    if verbosity == 0 {
        return Ok(json!(hex::encode(block.encode())));
    }
    let header = header_info(core, &hash)
        .map_err(internal)?
        .ok_or_else(|| RpcError::internal(format!("block {hash} is stored but not indexed")))?;
    let params_ = core.chain().params();
    if verbosity == 1 {
        let txids = block.txdata.iter().map(Transaction::txid).collect();
        return to_json(&BlockInfo { header, size: block.size(), tx: txids });
    }
    let mut view = to_json(&header)?;
    view["size"] = json!(block.size());
    let txs: Vec<TransactionInfo> = block.txdata.iter().map(|t| tx_info(t, params_)).collect();
    view["tx"] = to_json(&txs)?;
    Ok(view)
}

fn gettransaction<S: Store, P: Clone>(
    core: &Core<S, P>,
    params: &[Value],
) -> Result<Value, RpcError> {
    let txid: Txid = param_hash(params, 0, "txid")?;
    let chain = core.chain();
    if let Some(entry) = core.mempool().get(&txid) {
        let mut info = tx_info(&entry.tx, chain.params());
        info.location = Some(TxLocation::Mempool { fee: entry.fee });
        return to_json(&info);
    }
    let location =
        chain.store().tx_location(&txid).map_err(|e| RpcError::internal(e.to_string()))?;
    let Some(location) = location else {
        return Err(RpcError::not_found(format!(
            "transaction {txid} is not in the mempool or the active chain"
        )));
    };
    let block = chain
        .block(&location.block)
        .map_err(|e| RpcError::internal(e.to_string()))?
        .ok_or_else(|| RpcError::internal("indexed block missing"))?;
    let tx = block
        .txdata
        .get(location.index as usize)
        .ok_or_else(|| RpcError::internal("indexed transaction missing"))?;
    let height = chain.index_entry(&location.block).map_err(internal)?.map_or(0, |e| e.height);
    let mut info = tx_info(tx, chain.params());
    info.location = Some(TxLocation::Confirmed {
        blockhash: location.block,
        height,
        confirmations: chain.height() - height + 1,
    });
    to_json(&info)
}

fn estimatefee<S: Store, P: Clone>(core: &Core<S, P>, params: &[Value]) -> Result<Value, RpcError> {
    let target = param_u64(params, 0, "conf_target")?;
    if target == 0 {
        return Err(RpcError::invalid_params("parameter 1 (conf_target) must be at least 1"));
    }
    let blocks = u32::try_from(target).unwrap_or(u32::MAX).min(fees::MAX_TARGET);
    let answer = match core.estimate_fee(blocks) {
        fees::Estimate::Rate { milli_rate, transactions, success } => {
            let min = core.mempool().config().min_relay_fee_rate;
            let rate = milli_rate.div_ceil(1000).max(min);
            FeeEstimate { blocks, fee_rate: Some(rate), transactions, success, errors: Vec::new() }
        }
        fees::Estimate::NoAnswer(why) => FeeEstimate {
            blocks,
            fee_rate: None,
            transactions: 0.0,
            success: 0.0,
            errors: vec![why],
        },
    };
    to_json(&answer)
}

/// Accepts a raw transaction into the mempool; returns its txid and the core's
/// outputs (relaying it, and any orphans it released).
///
/// # Errors
///
/// Bad hex or encoding, or the typed rejection reason.
pub fn sendrawtransaction<S: Store, P: Clone>(
    core: &mut Core<S, P>,
    params: &[Value],
    now: u64,
) -> Result<(Value, Vec<Output<P>>), RpcError> {
    let bytes = decode_hex(&param_str(params, 0, "hexstring")?, "the transaction")?;
    let tx = Transaction::decode(&bytes)
        .map_err(|e| RpcError::undecodable(format!("transaction decode failed: {e}")))?;
    let txid = tx.txid();
    let (result, outputs) =
        core.handle_tx(tx, None, now).map_err(|e| RpcError::internal(e.to_string()))?;
    match result {
        Ok(_) => Ok((json!(txid.to_string()), outputs)),
        Err(reason) => Err(RpcError::rejected(reason.to_string())),
    }
}

/// Submits a raw block; returns bitcoind's answer (null when accepted) and the
/// core's outputs (relaying it, the new tip).
///
/// # Errors
///
/// Bad hex or encoding.
pub fn submitblock<S: Store, P: Clone>(
    core: &mut Core<S, P>,
    params: &[Value],
    now: u64,
) -> Result<(Value, Vec<Output<P>>), RpcError> {
    let bytes = decode_hex(&param_str(params, 0, "hexdata")?, "the block")?;
    let block = Block::decode(&bytes)
        .map_err(|e| RpcError::undecodable(format!("block decode failed: {e}")))?;
    let (outcome, outputs) = core
        .handle_block(block, Source::Local, now)
        .map_err(|e| RpcError::internal(e.to_string()))?;
    let answer = match outcome {
        BlockOutcome::Accepted => Value::Null,
        BlockOutcome::Duplicate => json!("duplicate"),
        BlockOutcome::Orphan => json!("inconclusive: parent unknown"),
        other @ (BlockOutcome::Premature(_)
        | BlockOutcome::Invalid(_)
        | BlockOutcome::Ignored(_)) => {
            json!(other.to_string())
        }
    };
    Ok((answer, outputs))
}

/// The `getblockchaininfo` answer, given the best height a peer reported and
/// whether the node is downloading blocks.
pub fn blockchain_info<S: Store, P: Clone>(
    core: &Core<S, P>,
    best_peer: u32,
    syncing: bool,
) -> BlockchainInfo {
    let chain = core.chain();
    let tip = chain.tip_entry();
    BlockchainInfo {
        chain: chain.params().network,
        blocks: chain.height(),
        headers: chain.index().best_header_height().max(chain.height()),
        bestblockhash: chain.tip(),
        chainwork: tip.chainwork,
        difficulty: difficulty(chain.params(), &tip.header),
        mediantime: chain.median_time_past(),
        initialblockdownload: syncing,
        verificationprogress: if best_peer > chain.height() {
            f64::from(chain.height()) / f64::from(best_peer)
        } else {
            1.0
        },
        utxo_digest: chain.utxo_digest().to_string(),
    }
}

/// Reads `setmining`'s first parameter: `true`/`false`, or the strings `on`/`off`.
///
/// # Errors
///
/// Anything else.
pub fn param_switch(params: &[Value], i: usize, name: &str) -> Result<bool, RpcError> {
    match params.get(i) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "on" || s == "true" => Ok(true),
        Some(Value::String(s)) if s == "off" || s == "false" => Ok(false),
        _ => Err(RpcError::invalid_params(format!(
            "parameter {} ({name}) must be true or false (or \"on\" / \"off\")",
            i + 1
        ))),
    }
}

/// Difficulty of a target relative to the pow limit (for getmininginfo).
pub fn target_difficulty(params: &Params, target: &Target) -> f64 {
    target.to_work().to_f64() / params.pow_limit.to_work().to_f64()
}
