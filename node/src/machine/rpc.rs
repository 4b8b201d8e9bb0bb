//! The one RPC dispatch: every [`Command`] is answered here, from the
//! machine's state and the host's facts, and what a call changes (a submitted
//! block or transaction, the miner) goes out as the same outputs a peer's
//! message would produce.
//!
//! Owns which state each method reads and what it triggers; the answers'
//! shapes and parameter parsing live in [`crate::rpc::methods`].

use serde_json::{Value, json};
use tinychain_rpc_client::types::{MiningInfo, SetMining};

use super::{Host, Node, Output, Time};
use crate::rpc::RpcError;
use crate::rpc::methods;
use crate::rpc::table::{Command, Method, NodeMethod};
use crate::store::Store;

impl<S: Store> Node<S> {
    /// Answers an RPC call; what it changes goes to `out`.
    pub(super) fn on_rpc(
        &mut self,
        command: &Command,
        host: &Host,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<Value, RpcError> {
        let params = command.params.as_slice();
        let node_method = match command.method {
            Method::Chain(m) => return methods::chain_method(&self.core, m, params),
            Method::Node(m) => m,
        };
        match node_method {
            NodeMethod::GetBlockchainInfo => methods::to_json(&methods::blockchain_info(
                &self.core,
                self.best_peer_height(),
                self.is_syncing(),
            )),
            NodeMethod::SendRawTransaction => {
                let (answer, outputs) =
                    methods::sendrawtransaction(&mut self.core, params, now.unix)?;
                self.carry_out(outputs, now, out).map_err(internal)?;
                Ok(answer)
            }
            NodeMethod::SubmitBlock => {
                let (answer, outputs) = methods::submitblock(&mut self.core, params, now.unix)?;
                self.carry_out_own(outputs, now, out).map_err(internal)?;
                Ok(answer)
            }
            NodeMethod::GetPeerInfo => Ok(self.peer_info(host)),
            NodeMethod::GetNetworkInfo => Ok(host.network.clone()),
            NodeMethod::GetMiningInfo => {
                let chain = self.core.chain();
                let tip = chain.tip_entry();
                let threads = self.mining.running.map_or(0, |(t, _)| t as u64);
                methods::to_json(&MiningInfo {
                    blocks: chain.height(),
                    difficulty: methods::difficulty(chain.params(), &tip.header),
                    mining: self.mining.running.is_some(),
                    threads,
                    hashes: if self.mining.running.is_some() { host.hashes } else { 0 },
                    pooledtx: self.core.mempool().len() as u64,
                    address: self.mining_address(),
                })
            }
            NodeMethod::SetMining => {
                let on = methods::param_switch(params, 0, "mining")?;
                let address = match params.get(1) {
                    None | Some(Value::Null) => None,
                    Some(_) => methods::param_addresses(params, 1, self.core.chain().params())?
                        .into_iter()
                        .next(),
                };
                self.set_mining(on, address, now, out)?;
                methods::to_json(&SetMining {
                    mining: self.mining.running.is_some(),
                    threads: self.mining.running.map_or(0, |(t, _)| t as u64),
                    address: self.mining_address(),
                })
            }
            NodeMethod::GenerateToAddress => self.generate(params, now, out),
            NodeMethod::Help => Ok(json!(crate::rpc::table::help_text())),
            NodeMethod::Stop => {
                out.push(Output::Stop);
                Ok(json!("tinychain-node stopping"))
            }
        }
    }

    /// `generatetoaddress n address` (regtest): mines and publishes n blocks.
    fn generate(
        &mut self,
        params: &[Value],
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<Value, RpcError> {
        let count = methods::param_u64(params, 0, "nblocks")?;
        if count > methods::MAX_GENERATE {
            return Err(RpcError::invalid_params(format!(
                "at most {} blocks per call",
                methods::MAX_GENERATE
            )));
        }
        let address = methods::param_addresses(params, 1, self.core.chain().params())?
            .into_iter()
            .next()
            .ok_or_else(|| RpcError::invalid_params("parameter 2 (address) is required"))?;
        let (hashes, outputs) = self
            .core
            .generate(count as u32, address.pubkey_hash(), now.unix)
            .map_err(|e| RpcError::rejected(e.to_string()))?;
        self.carry_out_own(outputs, now, out).map_err(internal)?;
        Ok(json!(hashes.iter().map(|h| h.to_string()).collect::<Vec<_>>()))
    }

    /// `getpeerinfo`: the host's connection facts with the machine's own
    /// (chain status, score, sync figures).
    fn peer_info(&self, host: &Host) -> Value {
        let peers: Vec<Value> = host
            .peers
            .iter()
            .map(|(peer, info)| {
                let mut info = info.clone();
                let status = self.peer_status(peer);
                info["height"] = json!(status.map(|s| s.height));
                info["tip"] = json!(status.map(|s| s.tip.to_string()));
                info["chainwork"] = json!(status.map(|s| s.chainwork.to_string()));
                info["score"] = json!(self.score(peer));
                if let Some((delivered, in_flight)) = self.sync.peer_stats(peer) {
                    info["sync"] =
                        json!({ "blocks_delivered": delivered, "blocks_in_flight": in_flight });
                }
                info
            })
            .collect();
        json!(peers)
    }
}

fn internal(e: super::Error) -> RpcError {
    RpcError::internal(e.to_string())
}
