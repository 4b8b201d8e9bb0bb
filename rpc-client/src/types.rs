//! The JSON shapes of the node's RPC answers that its clients read.
//!
//! Owns the request and response types shared by `tinychain-node` (which
//! serializes them) and its clients, the node's own client views and
//! `tinychain-wallet` (which deserialize them), so both sides agree on every
//! field name documented in `docs/rpc.md`. They live here, not in the
//! consensus crate: no two nodes need to agree on them. Hashes, txids and amounts in coins
//! travel as strings (display hex, decimal coins); belushis as integers. Pure
//! data: this module opens no socket and reads no file.

use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use tinychain_protocol::Amount;
use tinychain_protocol::hash::{BlockHash, Hash256, Txid};
use tinychain_protocol::keys::Address;
use tinychain_protocol::params::Network;
use tinychain_protocol::pow::Work;

/// JSON-RPC error codes the node answers with.
pub mod code {
    /// The request is not valid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// The request is not a JSON-RPC request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Bad parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The node failed.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A block or transaction asked for is unknown (bitcoind's `RPC_INVALID_ADDRESS_OR_KEY`).
    pub const NOT_FOUND: i64 = -5;
    /// A parameter is well-formed but out of range, e.g. a height past the tip
    /// (bitcoind's `RPC_INVALID_PARAMETER`).
    pub const INVALID_PARAMETER: i64 = -8;
    /// A raw transaction or block is not hex of a valid encoding (bitcoind's
    /// `RPC_DESERIALIZATION_ERROR`).
    pub const DESERIALIZATION_ERROR: i64 = -22;
    /// A transaction or block was refused (bitcoind's `RPC_VERIFY_*`).
    pub const REJECTED: i64 = -26;
}

/// A JSON-RPC 2.0 request: `params` is an array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<P> {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The client's id for the request, echoed in the response.
    pub id: u64,
    /// The method's name.
    pub method: String,
    /// The parameters.
    pub params: P,
}

impl<P> Request<P> {
    /// Makes a request with id `id`.
    pub fn new(id: u64, method: &str, params: P) -> Request<P> {
        Request { jsonrpc: "2.0".to_owned(), id, method: method.to_owned(), params }
    }
}

/// A JSON-RPC 2.0 response: a `result` or an `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<T> {
    /// The result (absent or `null` on error; `null` is also a result of some methods).
    #[serde(default = "none")]
    pub result: Option<T>,
    /// The error, if the request failed.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

fn none<T>() -> Option<T> {
    None
}

/// A JSON-RPC error: a code (see [`code`]) and a clear message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code.
    pub code: i64,
    /// What went wrong.
    pub message: String,
}

/// `getblockchaininfo`: the state of the node's chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockchainInfo {
    /// The network the node follows.
    pub chain: Network,
    /// Height of the active tip.
    pub blocks: u32,
    /// Height of the best header known.
    pub headers: u32,
    /// Hash of the active tip.
    #[serde(with = "as_string")]
    pub bestblockhash: BlockHash,
    /// Total work of the active chain, in hex.
    #[serde(with = "as_string")]
    pub chainwork: Work,
    /// Difficulty of the tip relative to the easiest target.
    pub difficulty: f64,
    /// Median time past of the tip (unix seconds).
    pub mediantime: u32,
    /// Whether the node is downloading blocks from a peer with more work.
    pub initialblockdownload: bool,
    /// Our height over the best peer's, 1.0 when none is ahead.
    pub verificationprogress: f64,
    /// The digest of the UTXO set, in hex.
    pub utxo_digest: String,
}

/// `getmempoolinfo`: the mempool's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MempoolInfo {
    /// Transactions in the pool.
    pub size: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Orphan transactions waiting for their parents.
    pub orphans: u64,
}

/// `getmininginfo`: the miner's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MiningInfo {
    /// Height of the active tip.
    pub blocks: u32,
    /// Difficulty of the tip.
    pub difficulty: f64,
    /// Whether the miner runs.
    pub mining: bool,
    /// Mining threads (0 when not mining).
    pub threads: u64,
    /// Hashes computed since the miner started.
    pub hashes: u64,
    /// Transactions in the mempool.
    pub pooledtx: u64,
    /// The address mined blocks pay, if one is set.
    #[serde(default)]
    pub address: Option<Address>,
}

/// `setmining`: what the miner does after the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMining {
    /// Whether the miner runs.
    pub mining: bool,
    /// Mining threads (0 when stopped).
    pub threads: u64,
    /// The address mined blocks pay, if one is set.
    pub address: Option<Address>,
}

/// `estimatefee`: a fee rate likely to confirm a transaction within a number of blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeeEstimate {
    /// The target the estimate is for: the one asked, at most the longest the node tracks.
    pub blocks: u32,
    /// Belushis per byte, rounded up and at least the node's minimum relay fee rate;
    /// `None` when the node cannot tell (see `errors`).
    pub fee_rate: Option<u64>,
    /// Transactions (after decay) behind the answer: those of the fee-rate range it comes from.
    pub transactions: f64,
    /// The share of them that confirmed within `blocks`.
    pub success: f64,
    /// Why there is no answer; empty when there is one.
    pub errors: Vec<String>,
}

/// One unspent output of `getaddressutxos` (confirmed coins of the address index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressUtxo {
    /// The address it pays.
    pub address: Address,
    /// The transaction that created it.
    #[serde(with = "as_string")]
    pub txid: Txid,
    /// Its index in that transaction.
    pub vout: u32,
    /// Its value.
    pub belushis: Amount,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether a coinbase created it.
    pub coinbase: bool,
    /// Blocks from its block to the tip, inclusive.
    pub confirmations: u32,
    /// Whether it may be spent in the next block (coinbase maturity).
    pub mature: bool,
    /// The mempool transaction that spends it, if any.
    #[serde(with = "as_string_opt", default)]
    pub spent_in_mempool: Option<Txid>,
}

/// A page of `getaddressutxos` (asked for with `{"limit", "after"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressUtxoPage {
    /// The coins of this page.
    pub utxos: Vec<AddressUtxo>,
    /// The cursor to pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
}

/// A page of `getaddresshistory` (asked for with `{"limit", "after"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressHistoryPage {
    /// The records of this page.
    pub history: Vec<AddressHistoryEntry>,
    /// The cursor to pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
}

/// One record of `getaddresshistory`: a transaction touching an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressHistoryEntry {
    /// The address.
    pub address: Address,
    /// The transaction.
    #[serde(with = "as_string")]
    pub txid: Txid,
    /// Height of its block; `None` for a mempool transaction.
    pub height: Option<u32>,
}

/// An input in a transaction view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInputInfo {
    /// The transaction whose output it spends.
    #[serde(with = "as_string")]
    pub txid: Txid,
    /// That output's index.
    pub vout: u32,
    /// The input's sequence number.
    pub sequence: u32,
}

/// An output in a transaction view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutputInfo {
    /// Its index.
    pub n: u32,
    /// Its value in coins, as a decimal string.
    #[serde(with = "as_string")]
    pub value: Amount,
    /// Its value in belushis.
    pub belushis: Amount,
    /// The address it pays.
    pub address: Address,
}

/// Where a transaction is: `status` is `mempool` or `confirmed`.
///
/// A transaction in neither place is answered with error [`code::NOT_FOUND`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TxLocation {
    /// Waiting in the mempool.
    Mempool {
        /// Its fee in belushis.
        fee: Amount,
    },
    /// In a block of the active chain.
    Confirmed {
        /// The block.
        #[serde(with = "as_string")]
        blockhash: BlockHash,
        /// The block's height.
        height: u32,
        /// Blocks from that block to the tip, inclusive.
        confirmations: u32,
    },
}

/// A transaction as `gettransaction` (with its location) and `getblock` verbosity 2 show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionInfo {
    /// Its txid.
    #[serde(with = "as_string")]
    pub txid: Txid,
    /// Its size in bytes.
    pub size: u64,
    /// Its version.
    pub version: i32,
    /// Its locktime.
    pub locktime: u32,
    /// Whether it is a coinbase.
    pub coinbase: bool,
    /// Its inputs.
    pub vin: Vec<TxInputInfo>,
    /// Its outputs.
    pub vout: Vec<TxOutputInfo>,
    /// Its canonical encoding in hex.
    pub hex: String,
    /// Where it is (only in `gettransaction` answers).
    #[serde(flatten, default)]
    pub location: Option<TxLocation>,
}

/// A block header as `getblockheader` shows it (and `getblock` around its transactions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockHeaderInfo {
    /// The block's hash.
    #[serde(with = "as_string")]
    pub hash: BlockHash,
    /// Blocks from it to the tip, inclusive; −1 off the active chain.
    pub confirmations: i64,
    /// Its height.
    pub height: u32,
    /// Header version.
    pub version: i32,
    /// Merkle root of its transactions.
    #[serde(with = "as_string")]
    pub merkleroot: Hash256,
    /// The miner's timestamp.
    pub time: u32,
    /// The nonce.
    pub nonce: u32,
    /// The compact target, 8 hex digits.
    pub bits: String,
    /// Difficulty relative to the easiest target.
    pub difficulty: f64,
    /// Total work of the chain up to it, in hex.
    #[serde(with = "as_string")]
    pub chainwork: Work,
    /// Its validation status in the block index.
    pub status: String,
    /// The previous block.
    #[serde(with = "as_string")]
    pub previousblockhash: BlockHash,
    /// The next block on the active chain.
    #[serde(with = "as_string_opt", default)]
    pub nextblockhash: Option<BlockHash>,
    /// The 80-byte header in hex.
    pub hex: String,
}

/// A block as `getblock` verbosity 1 shows it: the header view, size and txids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The header view.
    #[serde(flatten)]
    pub header: BlockHeaderInfo,
    /// The block's size in bytes.
    pub size: u64,
    /// Its transactions' txids, coinbase first.
    #[serde(with = "as_string_vec")]
    pub tx: Vec<Txid>,
}

/// Serde through `Display` and `FromStr`: hashes, work and coin amounts as JSON strings.
pub mod as_string {
    use super::{Deserialize, Display, FromStr};
    use serde::{Deserializer, Serializer, de::Error};

    /// Writes `value` as its display string.
    ///
    /// # Errors
    ///
    /// Those of the serializer.
    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    /// Reads a value from its display string.
    ///
    /// # Errors
    ///
    /// Not a string, or a string `T` does not parse.
    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e| D::Error::custom(format!("{s:?}: {e}")))
    }
}

/// [`as_string`] for an optional value, `null` when absent.
pub mod as_string_opt {
    use super::{Deserialize, Display, FromStr};
    use serde::{Deserializer, Serializer, de::Error};

    /// Writes `value` as its display string, or `null`.
    ///
    /// # Errors
    ///
    /// Those of the serializer.
    pub fn serialize<T: Display, S: Serializer>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    /// Reads a value from its display string, or `null`.
    ///
    /// # Errors
    ///
    /// Neither a string nor `null`, or a string `T` does not parse.
    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(|e| D::Error::custom(format!("{s:?}: {e}"))))
            .transpose()
    }
}

/// [`as_string`] for a list of values.
pub mod as_string_vec {
    use super::{Deserialize, Display, FromStr};
    use serde::{Deserializer, Serializer, de::Error, ser::SerializeSeq};

    /// Writes each value as its display string.
    ///
    /// # Errors
    ///
    /// Those of the serializer.
    pub fn serialize<T: Display, S: Serializer>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(values.len()))?;
        for v in values {
            seq.serialize_element(&v.to_string())?;
        }
        seq.end()
    }

    /// Reads each value from its display string.
    ///
    /// # Errors
    ///
    /// Not a list of strings, or a string `T` does not parse.
    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| s.parse().map_err(|e| D::Error::custom(format!("{s:?}: {e}"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinychain_protocol::hash::PubkeyHash;

    fn txid(n: u8) -> Txid {
        Txid::from_byte_array([n; 32])
    }

    #[test]
    fn a_utxo_keeps_the_documented_field_names_and_round_trips() {
        let utxo = AddressUtxo {
            address: Address::new(Network::Regtest, PubkeyHash::from_byte_array([7; 20])),
            txid: txid(1),
            vout: 2,
            belushis: Amount::from_belushis(5_000_000_000),
            height: 3,
            coinbase: true,
            confirmations: 4,
            mature: false,
            spent_in_mempool: None,
        };
        let json = serde_json::to_value(&utxo).expect("serializes");
        assert_eq!(json["txid"], txid(1).to_string());
        assert_eq!(json["belushis"], 5_000_000_000u64);
        assert_eq!(json["spent_in_mempool"], serde_json::Value::Null);
        let back: AddressUtxo = serde_json::from_value(json).expect("parses");
        assert_eq!(back, utxo);
    }

    #[test]
    fn a_transaction_location_is_flattened_under_status() {
        let info = TransactionInfo {
            txid: txid(9),
            size: 189,
            version: 1,
            locktime: 0,
            coinbase: false,
            vin: vec![TxInputInfo { txid: txid(1), vout: 0, sequence: u32::MAX }],
            vout: vec![TxOutputInfo {
                n: 0,
                value: Amount::from_belushis(150_000_000),
                belushis: Amount::from_belushis(150_000_000),
                address: Address::new(Network::Main, PubkeyHash::from_byte_array([1; 20])),
            }],
            hex: "00".into(),
            location: Some(TxLocation::Confirmed {
                blockhash: BlockHash::from_byte_array([3; 32]),
                height: 12,
                confirmations: 1,
            }),
        };
        let json = serde_json::to_value(&info).expect("serializes");
        assert_eq!(json["status"], "confirmed");
        assert_eq!(json["height"], 12);
        assert_eq!(json["vout"][0]["value"], "1.50000000");
        let back: TransactionInfo = serde_json::from_value(json).expect("parses");
        assert_eq!(back, info);

        let mempool = TransactionInfo {
            location: Some(TxLocation::Mempool { fee: Amount::ZERO }),
            ..info.clone()
        };
        let json = serde_json::to_value(&mempool).expect("serializes");
        assert_eq!(json["status"], "mempool");
        assert_eq!(serde_json::from_value::<TransactionInfo>(json).expect("parses"), mempool);

        let in_block = TransactionInfo { location: None, ..info };
        let json = serde_json::to_value(&in_block).expect("serializes");
        assert!(json.get("status").is_none());
        assert_eq!(serde_json::from_value::<TransactionInfo>(json).expect("parses"), in_block);
    }

    #[test]
    fn responses_carry_a_result_or_an_error() {
        let ok: Response<u32> =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"result":12}"#).expect("parses");
        assert_eq!(ok.result, Some(12));
        let err: Response<u32> = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-5,"message":"not found"}}"#,
        )
        .expect("parses");
        assert_eq!(err.error.map(|e| e.code), Some(code::NOT_FOUND));
        let bad: Result<AddressHistoryEntry, _> = serde_json::from_str(
            r#"{"address":"mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r","txid":"zz","height":null}"#,
        );
        assert!(bad.is_err(), "a malformed txid is refused");
    }
}
