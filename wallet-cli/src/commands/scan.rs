//! What the wallet holds, as the node sees it: `balance` and `utxos`.
//!
//! Owns the [`Scan`] every spending and reading command starts from: the
//! wallet's confirmed coins (from the node's address index), the mempool
//! transactions spending them (the wallet's own, whether or not this file recorded
//! them: a restored wallet knows them too), their change, and what others'
//! mempool transactions pay the wallet. It reads the chain, not the wallet's
//! records, so the same seed gives the same balance in any copy of the wallet.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::{Value, json};
use tinychain_protocol::keys::Address;
use tinychain_protocol::params::Params;
use tinychain_protocol::{Amount, OutPoint, Transaction, TxOut, Txid};
use tinychain_rpc_client::Client;
use tinychain_rpc_client::types::{AddressUtxo, TransactionInfo, TxLocation};

use super::{Context, Report, Result, address_history, address_utxos, connect, locate, sum};
use crate::coins::Candidate;
use crate::wallet::Wallet;

/// A mempool transaction spending the wallet's coins.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// The transaction.
    pub(super) tx: Transaction,
    /// Its txid.
    pub(super) txid: Txid,
    /// What it pays to others.
    pub(super) outgoing: Amount,
    /// Its fee, when every input's value is known.
    pub(super) fee: Option<Amount>,
}

/// The state of a confirmed coin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CoinState {
    Spendable,
    Immature,
    /// Spent by a mempool transaction (the wallet's own or another).
    SpentInMempool,
}

impl CoinState {
    fn name(self) -> &'static str {
        match self {
            CoinState::Spendable => "spendable",
            CoinState::Immature => "immature",
            CoinState::SpentInMempool => "spent (pending)",
        }
    }
}

/// What the node says about the wallet's coins.
#[derive(Debug)]
pub(super) struct Scan {
    /// Confirmed coins, each with its state.
    pub(super) confirmed: Vec<(AddressUtxo, CoinState)>,
    /// Mempool transactions spending the wallet's coins.
    pub(super) pending: Vec<Pending>,
    /// Their outputs to the wallet that no mempool transaction spends.
    pub(super) change: Vec<Candidate>,
    /// Others' mempool transactions paying the wallet, and how much (unspent).
    pub(super) incoming: Vec<(Txid, Amount)>,
    /// Every output known to be the wallet's (confirmed or in the mempool), spent or not.
    pub(super) outputs: HashMap<OutPoint, TxOut>,
    /// Outpoints some mempool transaction of the scan spends.
    pub(super) spent: HashSet<OutPoint>,
}

impl Scan {
    /// The coins `send` may spend: spendable confirmed ones, then unspent change.
    pub(super) fn candidates(&self) -> Vec<Candidate> {
        let mut candidates: Vec<Candidate> = self
            .confirmed
            .iter()
            .filter(|(_, state)| *state == CoinState::Spendable)
            .map(|(u, _)| Candidate {
                outpoint: OutPoint { txid: u.txid, vout: u.vout },
                output: TxOut { value: u.belushis, pubkey_hash: u.address.pubkey_hash() },
                confirmed: true,
            })
            .collect();
        candidates.extend(self.change.iter().copied());
        candidates
    }
}

/// Mempool transactions the wallet must look at: those its history lists as paying
/// it, those spending its confirmed coins, and those it recorded sending.
fn mempool_txids(client: &mut Client, wallet: &Wallet, utxos: &[AddressUtxo]) -> Result<Vec<Txid>> {
    let history = address_history(client, &wallet.addresses())?;
    let mut txids: Vec<Txid> =
        history.iter().filter(|e| e.height.is_none()).map(|e| e.txid).collect();
    txids.extend(utxos.iter().filter_map(|u| u.spent_in_mempool));
    if !wallet.sent.is_empty() {
        let pool: Vec<String> = client.call("getrawmempool", Vec::new())?;
        let pool: HashSet<Txid> = pool.iter().filter_map(|t| t.parse().ok()).collect();
        txids.extend(wallet.sent.iter().map(|r| r.txid).filter(|t| pool.contains(t)));
    }
    let mut seen = HashSet::new();
    txids.retain(|t| seen.insert(*t));
    Ok(txids)
}

/// Asks the node about the wallet's coins and the mempool transactions touching them.
pub(super) fn scan(client: &mut Client, wallet: &Wallet) -> Result<Scan> {
    let utxos = address_utxos(client, &wallet.addresses())?;
    let mut txs: Vec<(Txid, Transaction)> = Vec::new();
    for txid in mempool_txids(client, wallet, &utxos)? {
        // Mined or dropped between the calls: the next look sees it.
        let Some(info) = locate(client, &txid)? else { continue };
        if matches!(info.location, Some(TxLocation::Mempool { .. }))
            && let Some(tx) = decode(&info)
        {
            txs.push((txid, tx));
        }
    }
    let mut outputs: HashMap<OutPoint, TxOut> = utxos
        .iter()
        .map(|u| {
            let out = TxOut { value: u.belushis, pubkey_hash: u.address.pubkey_hash() };
            (OutPoint { txid: u.txid, vout: u.vout }, out)
        })
        .collect();
    for (txid, tx) in &txs {
        for (vout, out) in (0u32..).zip(&tx.outputs) {
            if wallet.owns(&out.pubkey_hash) {
                outputs.insert(OutPoint { txid: *txid, vout }, *out);
            }
        }
    }
    let spent: HashSet<OutPoint> =
        txs.iter().flat_map(|(_, tx)| tx.inputs.iter().map(|i| i.prev_out)).collect();
    let mut pending = Vec::new();
    let mut incoming = Vec::new();
    let mut change = Vec::new();
    for (txid, tx) in txs {
        let unspent_to_us = (0u32..).zip(&tx.outputs).filter(|(vout, out)| {
            wallet.owns(&out.pubkey_hash) && !spent.contains(&OutPoint { txid, vout: *vout })
        });
        if !tx.inputs.iter().any(|i| outputs.contains_key(&i.prev_out)) {
            incoming.push((txid, sum(unspent_to_us.map(|(_, o)| o.value))));
            continue;
        }
        change.extend(unspent_to_us.map(|(vout, output)| Candidate {
            outpoint: OutPoint { txid, vout },
            output: *output,
            confirmed: false,
        }));
        let outgoing =
            sum(tx.outputs.iter().filter(|o| !wallet.owns(&o.pubkey_hash)).map(|o| o.value));
        let fee = fee_of(&tx, &outputs)
            .or_else(|| wallet.sent.iter().find(|r| r.txid == txid).map(|r| r.fee));
        pending.push(Pending { tx, txid, outgoing, fee });
    }
    let confirmed = utxos
        .into_iter()
        .map(|u| {
            let outpoint = OutPoint { txid: u.txid, vout: u.vout };
            let state = if u.spent_in_mempool.is_some() || spent.contains(&outpoint) {
                CoinState::SpentInMempool
            } else if u.mature {
                CoinState::Spendable
            } else {
                CoinState::Immature
            };
            (u, state)
        })
        .collect();
    Ok(Scan { confirmed, pending, change, incoming, outputs, spent })
}

/// Decodes a transaction view's canonical bytes (and checks they are its txid's).
pub(super) fn decode(info: &TransactionInfo) -> Option<Transaction> {
    let tx = hex::decode(&info.hex).ok().and_then(|b| Transaction::decode(&b).ok())?;
    (tx.txid() == info.txid).then_some(tx)
}

/// A transaction's fee, if `known` holds every output it spends.
pub(super) fn fee_of(tx: &Transaction, known: &HashMap<OutPoint, TxOut>) -> Option<Amount> {
    let inputs: Option<Vec<Amount>> =
        tx.inputs.iter().map(|i| known.get(&i.prev_out).map(|o| o.value)).collect();
    sum(inputs?).checked_sub(tx.total_out()?)
}

/// `balance`: confirmed, unconfirmed incoming, own unconfirmed change, pending outgoing, immature.
pub(crate) fn balance(ctx: &Context) -> Result<Report> {
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let mut client = connect(ctx)?;
    let scan = scan(&mut client, &wallet)?;
    let of =
        |state| sum(scan.confirmed.iter().filter(|(_, s)| *s == state).map(|(u, _)| u.belushis));
    let confirmed = of(CoinState::Spendable);
    let immature = of(CoinState::Immature);
    let change = sum(scan.change.iter().map(|c| c.output.value));
    let incoming = sum(scan.incoming.iter().map(|(_, a)| *a));
    let outgoing =
        sum(scan.pending.iter().map(|p| sum([p.outgoing, p.fee.unwrap_or(Amount::ZERO)])));
    let total = sum([confirmed, immature, change, incoming]);
    let maturity = Params::new(ctx.network).coinbase_maturity;
    let text = format!(
        "confirmed             {:>17}\n\
         unconfirmed incoming  {:>17}\n\
         unconfirmed change    {:>17}\n\
         pending outgoing      {:>17}\n\
         immature coinbase     {:>17}  (spendable after {maturity} confirmations)\n\
         total                 {:>17}\n",
        confirmed.to_string(),
        incoming.to_string(),
        change.to_string(),
        outgoing.to_string(),
        immature.to_string(),
        total.to_string(),
    );
    let json = json!({
        "confirmed": confirmed,
        "unconfirmed_incoming": incoming,
        "unconfirmed_change": change,
        "pending_outgoing": outgoing,
        "immature": immature,
        "total": total,
        "coinbase_maturity": maturity,
    });
    Ok(Report { text, json })
}

/// `utxos`: every coin of the wallet, confirmed or the wallet's own unconfirmed change.
pub(crate) fn utxos(ctx: &Context) -> Result<Report> {
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let mut client = connect(ctx)?;
    let scan = scan(&mut client, &wallet)?;
    let mut text = String::new();
    let mut rows = Vec::new();
    for (u, state) in &scan.confirmed {
        let _ = writeln!(
            text,
            "{}:{:<3} {:>17} {:>6} conf  {:<18} {}{}",
            u.txid,
            u.vout,
            u.belushis.to_string(),
            u.confirmations,
            state.name(),
            u.address,
            if u.coinbase { " coinbase" } else { "" }
        );
        rows.push(json!({
            "txid": u.txid.to_string(), "vout": u.vout, "belushis": u.belushis,
            "address": u.address, "height": u.height, "confirmations": u.confirmations,
            "coinbase": u.coinbase, "state": state.name(),
        }));
    }
    for c in &scan.change {
        let address = Address::new(ctx.network, c.output.pubkey_hash);
        let _ = writeln!(
            text,
            "{}:{:<3} {:>17} {:>6} conf  {:<18} {address}",
            c.outpoint.txid,
            c.outpoint.vout,
            c.output.value.to_string(),
            0,
            "unconfirmed change"
        );
        rows.push(json!({
            "txid": c.outpoint.txid.to_string(), "vout": c.outpoint.vout,
            "belushis": c.output.value, "address": address, "height": null,
            "confirmations": 0, "coinbase": false, "state": "unconfirmed change",
        }));
    }
    if rows.is_empty() {
        text.push_str("no coins\n");
    }
    Ok(Report { text, json: Value::Array(rows) })
}
