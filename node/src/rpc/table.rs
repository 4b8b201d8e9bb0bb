//! The RPC methods a node answers: names, parameters and one line each.
//!
//! Owns the one table that both the dispatch and `help` read. A name the table
//! does not hold is an unknown method; a call is parsed once into a
//! [`Command`], and each [`Method`] is answered by one exhaustive `match` in
//! the node's state machine (`crate::machine`) — [`ChainMethod`]s through
//! `methods::chain_method` from the core's state alone, [`NodeMethod`]s from
//! the machine's state and the host's facts — so a method cannot be listed and
//! not answered.

/// A method answered from the chain and mempool alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainMethod {
    /// `getbestblockhash`.
    GetBestBlockHash,
    /// `getblockcount`.
    GetBlockCount,
    /// `getblockhash`.
    GetBlockHash,
    /// `getblockheader`.
    GetBlockHeader,
    /// `getblock`.
    GetBlock,
    /// `gettransaction` and `getrawtransaction`.
    GetTransaction,
    /// `getmempoolinfo`.
    GetMempoolInfo,
    /// `getrawmempool`.
    GetRawMempool,
    /// `getaddressutxos`.
    GetAddressUtxos,
    /// `getaddresshistory`.
    GetAddressHistory,
    /// `estimatefee`.
    EstimateFee,
}

/// A method that needs the whole machine: peers, the miner, relaying what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMethod {
    /// `getblockchaininfo`.
    GetBlockchainInfo,
    /// `sendrawtransaction`.
    SendRawTransaction,
    /// `submitblock`.
    SubmitBlock,
    /// `getpeerinfo`.
    GetPeerInfo,
    /// `getnetworkinfo`.
    GetNetworkInfo,
    /// `getmininginfo`.
    GetMiningInfo,
    /// `setmining`.
    SetMining,
    /// `generatetoaddress`.
    GenerateToAddress,
    /// `help`.
    Help,
    /// `stop`.
    Stop,
}

/// Any method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Answered from the chain state.
    Chain(ChainMethod),
    /// Answered from the whole machine.
    Node(NodeMethod),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct MethodInfo {
    /// The name clients call.
    pub name: &'static str,
    /// What answers it.
    pub method: Method,
    /// Its parameters, as `help` shows them.
    pub params: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
}

use ChainMethod as C;
use Method::{Chain, Node};
use NodeMethod as N;

/// Every method, in the order `help` lists them.
#[rustfmt::skip]
pub const METHODS: &[MethodInfo] = &[
    row("getblockchaininfo", Node(N::GetBlockchainInfo), "", "chain, height, headers, tip, sync progress, UTXO digest"),
    row("getblockcount", Chain(C::GetBlockCount), "", "the tip's height"),
    row("getbestblockhash", Chain(C::GetBestBlockHash), "", "the tip's hash"),
    row("getblockhash", Chain(C::GetBlockHash), "height", "the hash of the active block at a height"),
    row("getblockheader", Chain(C::GetBlockHeader), "hash", "a block's header, height, confirmations and status"),
    row("getblock", Chain(C::GetBlock), "hash [verbosity 0|1|2]", "a block: hex (0), with txids (1) or whole transactions (2)"),
    row("gettransaction", Chain(C::GetTransaction), "txid", "a transaction and where it is (mempool or block)"),
    row("getrawtransaction", Chain(C::GetTransaction), "txid", "the same as gettransaction"),
    row("sendrawtransaction", Node(N::SendRawTransaction), "hex", "submits a transaction to the mempool and relays it"),
    row("submitblock", Node(N::SubmitBlock), "hex", "submits a block; null if accepted, else why not"),
    row("getmempoolinfo", Chain(C::GetMempoolInfo), "", "the mempool's size, bytes and orphans"),
    row("getrawmempool", Chain(C::GetRawMempool), "", "the txids in the mempool"),
    row("estimatefee", Chain(C::EstimateFee), "conf_target", "a fee rate likely to confirm within that many blocks"),
    row("getaddressutxos", Chain(C::GetAddressUtxos), "addresses [page]", "unspent outputs paying the addresses (paged)"),
    row("getaddresshistory", Chain(C::GetAddressHistory), "addresses [page]", "transactions paying or spending the addresses (paged)"),
    row("getpeerinfo", Node(N::GetPeerInfo), "", "the connected peers"),
    row("getnetworkinfo", Node(N::GetNetworkInfo), "", "this node's peer id, listen addresses and connection counts"),
    row("getmininginfo", Node(N::GetMiningInfo), "", "the miner: on or off, threads, hashes, address"),
    row("setmining", Node(N::SetMining), "on|off [address]", "starts, re-targets or stops the miner"),
    row("generatetoaddress", Node(N::GenerateToAddress), "n address", "mines n blocks at once (regtest)"),
    row("help", Node(N::Help), "", "this list"),
    row("stop", Node(N::Stop), "", "stops the node cleanly"),
];

const fn row(
    name: &'static str,
    method: Method,
    params: &'static str,
    summary: &'static str,
) -> MethodInfo {
    MethodInfo { name, method, params, summary }
}

impl Method {
    /// The method called `name`, if the node has one.
    pub fn parse(name: &str) -> Option<Method> {
        METHODS.iter().find(|m| m.name == name).map(|m| m.method)
    }
}

/// An RPC call, parsed once from its JSON-RPC name and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The method.
    pub method: Method,
    /// Its parameters (an array; `null` read as empty).
    pub params: Vec<serde_json::Value>,
}

impl Command {
    /// Parses a call.
    ///
    /// # Errors
    ///
    /// The node has no method called `name`.
    pub fn parse(name: &str, params: Vec<serde_json::Value>) -> Result<Command, super::RpcError> {
        let method = Method::parse(name).ok_or_else(|| super::RpcError::method_not_found(name))?;
        Ok(Command { method, params })
    }

    /// Tells whether the answer shows the swarm's or the miner's facts, which
    /// the event loop then gathers for the machine.
    pub fn reads_host(&self) -> bool {
        matches!(
            self.method,
            Method::Node(
                NodeMethod::GetPeerInfo | NodeMethod::GetNetworkInfo | NodeMethod::GetMiningInfo
            )
        )
    }
}

/// The `help` text: one line per method, `name params  summary`.
pub fn help_text() -> String {
    let usage = |m: &MethodInfo| {
        if m.params.is_empty() { m.name.to_owned() } else { format!("{} {}", m.name, m.params) }
    };
    let width = METHODS.iter().map(|m| usage(m).len()).max().unwrap_or(0);
    METHODS.iter().map(|m| format!("{:width$}  {}\n", usage(m), m.summary)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for (i, m) in METHODS.iter().enumerate() {
            assert!(METHODS[..i].iter().all(|o| o.name != m.name), "{} twice", m.name);
            assert_eq!(Method::parse(m.name), Some(m.method));
        }
        assert_eq!(Method::parse("getblockcout"), None);
    }

    #[test]
    fn help_lists_every_method_on_one_line() {
        let text = help_text();
        assert_eq!(text.lines().count(), METHODS.len());
        for m in METHODS {
            assert!(
                text.lines().any(|l| l.starts_with(m.name) && l.ends_with(m.summary)),
                "{text}"
            );
        }
    }
}
