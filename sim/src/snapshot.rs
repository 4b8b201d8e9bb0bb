//! What the invariant checks read of a node's core: tip, UTXO digest, the
//! coins' total against the subsidies, and the mempool against the tip.
//!
//! Owns the reading only; [`crate::world::Sim::check`] compares nodes.

use std::collections::HashSet;

use tinychain_node::core::Core;
use tinychain_node::store::Store;
use tinychain_protocol::OutPoint;
use tinychain_protocol::validation::block_subsidy;

use crate::machine::Snapshot;

/// Reads what the invariants need from a core.
pub fn snapshot<S: Store, P: Clone>(core: &Core<S, P>) -> Snapshot {
    let chain = core.chain();
    let mut coin_value = 0u64;
    let _ = chain.store().for_each_coin(&mut |_, coin| {
        coin_value = coin_value.saturating_add(coin.output.value.to_belushis());
    });
    let subsidies =
        (1..=chain.height()).map(|h| block_subsidy(h, chain.params()).to_belushis()).sum();
    Snapshot {
        tip: chain.tip(),
        height: chain.height(),
        utxo_digest: chain.utxo_digest().to_string(),
        coin_value,
        subsidies,
        mempool: core.mempool().len(),
        mempool_error: mempool_error(core).err(),
    }
}

/// Checks the mempool against the tip: every transaction unconfirmed, every
/// input a coin of the tip or an output of an earlier mempool transaction, no
/// outpoint spent twice.
fn mempool_error<S: Store, P: Clone>(core: &Core<S, P>) -> Result<(), String> {
    let chain = core.chain();
    let mut spent = HashSet::new();
    let mut created = HashSet::new();
    for (tx, _) in core.mempool().transactions_in_order() {
        let txid = tx.txid();
        if chain.store().tx_location(&txid).map_err(|e| e.to_string())?.is_some() {
            return Err(format!("mempool transaction {txid} is confirmed"));
        }
        for input in &tx.inputs {
            let op = input.prev_out;
            let coin = chain.coin(&op).map_err(|e| e.to_string())?;
            if coin.is_none() && !created.contains(&op) {
                return Err(format!(
                    "mempool transaction {txid} spends {op:?}, which is not there"
                ));
            }
            if !spent.insert(op) {
                return Err(format!("{op:?} is spent twice in the mempool"));
            }
        }
        for vout in 0..tx.outputs.len() as u32 {
            created.insert(OutPoint { txid, vout });
        }
    }
    Ok(())
}
