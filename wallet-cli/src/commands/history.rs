//! The wallet's transactions: `history` and `status`.
//!
//! Owns how a transaction is told to the user: where it is (mempool, mined with
//! confirmations, or not found) and what it did to the wallet (mined, received,
//! sent with its recipient and fee, or moved between the wallet's own addresses).
//! What it did is worked out from the transactions themselves, as the node has
//! them, so a wallet restored from its seed tells the same history; the wallet's
//! records only fill in what the node no longer knows (a dropped or replaced send).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};
use tinychain_protocol::keys::Address;
use tinychain_protocol::{Amount, OutPoint, TxOut, Txid};
use tinychain_rpc_client::types::{TransactionInfo, TxLocation};

use super::scan::decode;
use super::{Context, Report, Result, address_history, connect, locate, parse_txid, sum};
use crate::wallet::Wallet;

fn location_text(location: Option<&TxLocation>) -> String {
    match location {
        Some(TxLocation::Mempool { fee }) => format!("in mempool (fee {fee})"),
        Some(TxLocation::Confirmed { blockhash, height, confirmations }) => format!(
            "mined in block {blockhash} at height {height} with {confirmations} confirmation{}",
            if *confirmations == 1 { "" } else { "s" }
        ),
        None => "not found".to_owned(),
    }
}

fn location_json(txid: &Txid, location: Option<&TxLocation>) -> Value {
    let mut value = match location {
        Some(l) => serde_json::to_value(l).unwrap_or(Value::Null),
        None => json!({ "status": "not found" }),
    };
    value["txid"] = json!(txid.to_string());
    value
}

/// `status`: in the mempool, mined (block, height, confirmations), or not found.
pub(crate) fn status(ctx: &Context, txid: &str) -> Result<Report> {
    let txid = parse_txid(txid)?;
    let mut client = connect(ctx)?;
    let info = locate(&mut client, &txid)?;
    let location = info.as_ref().and_then(|i| i.location.as_ref());
    Ok(Report {
        text: format!("{txid} {}\n", location_text(location)),
        json: location_json(&txid, location),
    })
}

/// What a transaction did to the wallet.
struct Effect {
    kind: &'static str,
    amount: Amount,
    fee: Option<Amount>,
    to: Option<Address>,
}

/// Works out what `info` did, from the outputs in `known` (every output of the
/// transactions in the wallet's history).
fn effect(wallet: &Wallet, info: &TransactionInfo, known: &HashMap<OutPoint, TxOut>) -> Effect {
    let mine = |o: &TxOut| wallet.owns(&o.pubkey_hash);
    let paid_us =
        sum(info.vout.iter().filter(|o| wallet.owns(&o.address.pubkey_hash())).map(|o| o.belushis));
    let inputs: Vec<Option<&TxOut>> =
        info.vin.iter().map(|i| known.get(&OutPoint { txid: i.txid, vout: i.vout })).collect();
    let spends_ours = inputs.iter().flatten().any(|o| mine(o));
    if info.coinbase {
        return Effect { kind: "mined", amount: paid_us, fee: None, to: None };
    }
    if !spends_ours {
        return Effect { kind: "received", amount: paid_us, fee: None, to: None };
    }
    let fee = inputs.iter().copied().collect::<Option<Vec<&TxOut>>>().and_then(|ins| {
        sum(ins.iter().map(|o| o.value)).checked_sub(sum(info.vout.iter().map(|o| o.belushis)))
    });
    let others: Vec<_> =
        info.vout.iter().filter(|o| !wallet.owns(&o.address.pubkey_hash())).collect();
    match others.first() {
        Some(first) => Effect {
            kind: "sent",
            amount: sum(others.iter().map(|o| o.belushis)),
            fee,
            to: Some(first.address),
        },
        None => Effect { kind: "self", amount: paid_us, fee, to: None },
    }
}

/// `history`: the wallet's transactions, oldest first, mempool and unknown last.
pub(crate) fn history(ctx: &Context) -> Result<Report> {
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let mut client = connect(ctx)?;
    let entries = address_history(&mut client, &wallet.addresses())?;
    let mut seen = HashSet::new();
    let mut infos: Vec<(Txid, Option<TransactionInfo>)> = Vec::new();
    for txid in entries.iter().map(|e| e.txid).chain(wallet.sent.iter().map(|r| r.txid)) {
        if seen.insert(txid) {
            infos.push((txid, locate(&mut client, &txid)?));
        }
    }
    let mut known: HashMap<OutPoint, TxOut> = HashMap::new();
    for tx in infos.iter().filter_map(|(_, i)| i.as_ref()).filter_map(decode) {
        let txid = tx.txid();
        known.extend((0u32..).zip(tx.outputs).map(|(vout, o)| (OutPoint { txid, vout }, o)));
    }
    // Sort key: height (mempool after every block, unknown last), then txid: the
    // order does not depend on the order of the wallet's addresses.
    let mut rows: BTreeMap<(u64, Txid), (String, Value)> = BTreeMap::new();
    for (txid, info) in &infos {
        let location = info.as_ref().and_then(|i| i.location.as_ref());
        let (order, height) = match location {
            Some(TxLocation::Confirmed { height, .. }) => (u64::from(*height), height.to_string()),
            Some(TxLocation::Mempool { .. }) => (u64::MAX - 1, "mempool".to_owned()),
            None => (u64::MAX, "unknown".to_owned()),
        };
        let record = wallet.sent.iter().find(|r| r.txid == *txid);
        let effect = match (info, record) {
            (Some(info), _) => effect(&wallet, info, &known),
            (None, Some(r)) => {
                Effect { kind: "sent", amount: r.amount, fee: Some(r.fee), to: Some(r.to) }
            }
            (None, None) => Effect { kind: "received", amount: Amount::ZERO, fee: None, to: None },
        };
        let mut detail = String::new();
        if let Some(to) = effect.to {
            detail.push_str(&format!("to {to} "));
        }
        if let Some(fee) = effect.fee {
            detail.push_str(&format!("fee {fee}"));
        }
        if let Some(r) = record.filter(|r| !r.replaces.is_empty()) {
            detail.push_str(&format!(
                " (replaced {})",
                r.replaces.iter().map(Txid::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
        let text = format!(
            "{height:>8}  {:<8} {:>17}  {txid} {detail}",
            effect.kind,
            effect.amount.to_string()
        );
        let mut json = location_json(txid, location);
        json["kind"] = json!(effect.kind);
        json["amount"] = json!(effect.amount);
        json["fee"] = json!(effect.fee);
        json["to"] = json!(effect.to);
        rows.insert((order, *txid), (text.trim_end().to_owned(), json));
    }
    let mut text: String = rows.values().map(|(t, _)| format!("{t}\n")).collect();
    if text.is_empty() {
        text.push_str("no transactions\n");
    }
    Ok(Report { text, json: Value::Array(rows.into_values().map(|(_, j)| j).collect()) })
}
