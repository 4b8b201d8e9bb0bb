//! Spending: `send` and `bumpfee`.
//!
//! Owns choosing the fee rate (`--fee-rate`, else the node's `estimatefee` for the
//! confirmation target, else the minimum relay rate, and saying which and why),
//! building and signing the transaction (replaceable per BIP125 unless told not
//! to), and the order that keeps the wallet file honest: every check first, then the
//! passphrase, then the file (with the new change address and the record), then the
//! broadcast; a transaction the node refuses is forgotten and the file put back byte
//! for byte. `bumpfee` replaces a waiting transaction with the same inputs and a
//! smaller change, and the wallet's record follows the replacement.

use std::fmt::Write as _;

use serde_json::json;
use tinychain_protocol::keys::Address;
use tinychain_protocol::sighash;
use tinychain_protocol::transaction::SEQUENCE_FINAL;
use tinychain_protocol::{Amount, OutPoint, Transaction, TxOut, Txid};
use tinychain_rpc_client::types::{FeeEstimate, TxLocation};
use tinychain_rpc_client::{self as rpc, Client};

use super::scan::{Scan, decode, fee_of, scan};
use super::{Context, Error, Report, Result, connect, locate, parse_address, parse_txid, sum};
use crate::coins;
use crate::hd::Chain;
use crate::wallet::{SentRecord, Wallet};

/// The sequence number of a replaceable input (BIP125: below `0xfffffffe`).
const SEQUENCE_RBF: u32 = 0xffff_fffd;

/// The arguments of `send`.
#[derive(Debug, Clone)]
pub(crate) struct SendArgs {
    /// The address to pay.
    pub(crate) to: String,
    /// The amount, as typed.
    pub(crate) amount: String,
    /// Whether the amount is in belushis.
    pub(crate) belushis: bool,
    /// Belushis per byte, if given.
    pub(crate) fee_rate: Option<u64>,
    /// Blocks to confirm within, for the node's estimate.
    pub(crate) conf_target: u32,
    /// Whether the transaction signals replaceability (BIP125).
    pub(crate) replaceable: bool,
}

/// The arguments of `bumpfee`.
#[derive(Debug, Clone)]
pub(crate) struct BumpArgs {
    /// The transaction to replace.
    pub(crate) txid: String,
    /// Belushis per byte, if given.
    pub(crate) fee_rate: Option<u64>,
    /// Blocks to confirm within, for the node's estimate.
    pub(crate) conf_target: u32,
}

/// A fee rate and why it was chosen.
#[derive(Debug, Clone, PartialEq)]
struct FeeRate {
    rate: u64,
    source: &'static str,
    why: String,
}

/// `--fee-rate` if given, else the node's estimate for `target`, else the minimum.
fn choose_fee_rate(client: &mut Client, given: Option<u64>, target: u32) -> Result<FeeRate> {
    if let Some(rate) = given {
        return Ok(FeeRate { rate, source: "given", why: "given with --fee-rate".to_owned() });
    }
    let fallback = |why: String| FeeRate {
        rate: coins::DEFAULT_FEE_RATE,
        source: "minimum",
        why: format!("the minimum relay rate: {why}"),
    };
    match client.call::<FeeEstimate>("estimatefee", vec![json!(target)]) {
        Ok(FeeEstimate { fee_rate: Some(rate), blocks, transactions, success, .. }) => {
            Ok(FeeRate {
                rate,
                source: "estimate",
                why: format!(
                    "the node's estimate for confirmation within {blocks} block{}: {:.0} % of \
                 {transactions:.1} recent transactions at that rate confirmed in time",
                    if blocks == 1 { "" } else { "s" },
                    success * 100.0
                ),
            })
        }
        Ok(FeeEstimate { errors, blocks, .. }) => Ok(fallback(format!(
            "the node cannot estimate a rate for {blocks} blocks yet ({})",
            errors.join("; ")
        ))),
        Err(rpc::Error::Rpc { code, .. })
            if code == tinychain_rpc_client::types::code::METHOD_NOT_FOUND =>
        {
            Ok(fallback("the node does not estimate fees".to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Signs every input of `tx`, each spending `spent[i]`, with the wallet's keys.
fn sign(wallet: &Wallet, passphrase: &str, tx: &mut Transaction, spent: &[TxOut]) -> Result<()> {
    let unlocked = wallet.unlock(passphrase)?;
    for (i, output) in spent.iter().enumerate() {
        let key = wallet
            .private_key(&unlocked, &output.pubkey_hash)
            .ok_or_else(|| Error::NotMine(Address::new(wallet.network, output.pubkey_hash)))?;
        sighash::sign_input(tx, i, output, &key)?;
    }
    Ok(())
}

/// Saves `wallet` (with the new record and change address), then broadcasts `tx`;
/// if the node refuses it, puts the file back as `original` was.
fn save_and_broadcast(
    wallet: &Wallet,
    original: &[u8],
    client: &mut Client,
    tx: &Transaction,
) -> Result<()> {
    // The change address is on disk before the coins move to it.
    wallet.save()?;
    match client.call::<String>("sendrawtransaction", vec![json!(hex::encode(tx.encode()))]) {
        Ok(_) => Ok(()),
        // The node refused it: it never left, so the wallet forgets it.
        Err(e @ rpc::Error::Rpc { .. }) => {
            wallet.put_back(original)?;
            Err(e.into())
        }
        // The answer was lost: the node may have it, so the record and change address stay.
        Err(e) => Err(Error::Unknown { txid: tx.txid(), cause: e }),
    }
}

/// `send`: pays an address, with change back to the wallet's next change address.
pub(crate) fn send(ctx: &Context, args: &SendArgs) -> Result<Report> {
    let to = parse_address(&args.to, ctx.network)?;
    let amount = coins::parse_amount(&args.amount, args.belushis)?;
    let _lock = Wallet::lock(ctx.wallet()?, false)?;
    let (mut wallet, original) = Wallet::load(ctx.wallet()?, ctx.network)?;
    if wallet.is_legacy() {
        return Err(crate::wallet::Error::NeedsUpgrade(wallet.path().to_owned()).into());
    }
    let mut client = connect(ctx)?;
    let scan = scan(&mut client, &wallet)?;
    let fee_rate = choose_fee_rate(&mut client, args.fee_rate, args.conf_target)?;
    let plan = coins::select(&scan.candidates(), amount, fee_rate.rate)?;
    if let Some(reason) = coins::fee_cap_violation(plan.fee, amount) {
        return Err(Error::Refused(reason));
    }
    let passphrase = ctx.secrets.passphrase()?;

    let mut outputs = vec![TxOut { value: amount, pubkey_hash: to.pubkey_hash() }];
    let mut change_address = None;
    if plan.change > Amount::ZERO {
        let address = wallet.next_address(Chain::Change, "")?;
        outputs.push(TxOut { value: plan.change, pubkey_hash: address.pubkey_hash() });
        change_address = Some(address);
    }
    let mut tx = Transaction::spending(plan.inputs.iter().map(|c| c.outpoint), outputs);
    let sequence = if args.replaceable { SEQUENCE_RBF } else { SEQUENCE_FINAL };
    tx.inputs.iter_mut().for_each(|i| i.sequence = sequence);
    let spent: Vec<TxOut> = plan.inputs.iter().map(|c| c.output).collect();
    sign(&wallet, &passphrase, &mut tx, &spent)?;
    if tx.size() != plan.size {
        return Err(Error::Refused(format!(
            "the signed transaction is {} bytes, not the {} planned",
            tx.size(),
            plan.size
        )));
    }
    let txid = tx.txid();
    wallet.sent.push(SentRecord {
        txid,
        to,
        amount,
        fee: plan.fee,
        change_vout: change_address.map(|_| 1),
        hex: hex::encode(tx.encode()),
        replaces: Vec::new(),
    });
    save_and_broadcast(&wallet, &original, &mut client, &tx)?;

    let mut text = format!(
        "sent {amount} to {to}\ntxid {txid}\nfee  {} ({} bytes at {} belushis/byte)\n",
        plan.fee, plan.size, fee_rate.rate
    );
    let _ = writeln!(text, "fee rate {} belushis/byte: {}", fee_rate.rate, fee_rate.why);
    if let Some(address) = change_address {
        let _ = writeln!(text, "change {} to {address}", plan.change);
    }
    if plan.dust_to_fee > Amount::ZERO {
        let _ = writeln!(
            text,
            "note: a change of {} is too small to be worth an output; it was added to the fee",
            plan.dust_to_fee
        );
    }
    let _ = writeln!(
        text,
        "{}",
        if args.replaceable {
            "replaceable (BIP125): `tinychain-wallet bumpfee <txid>` raises its fee if it waits too long"
        } else {
            "not replaceable (--no-rbf): its fee cannot be raised"
        }
    );
    let json = json!({
        "txid": txid.to_string(),
        "to": to,
        "amount": amount,
        "fee": plan.fee,
        "size": plan.size,
        "fee_rate": fee_rate.rate,
        "fee_rate_source": fee_rate.source,
        "fee_rate_reason": fee_rate.why,
        "change": plan.change,
        "change_address": change_address,
        "dust_to_fee": plan.dust_to_fee,
        "inputs": plan.inputs.len(),
        "selection": plan.method.name(),
        "replaceable": args.replaceable,
    });
    Ok(Report { text, json })
}

/// The parts of a waiting transaction a replacement is made from.
struct Bumpable {
    tx: Transaction,
    /// The outputs its inputs spend, in order.
    spent: Vec<TxOut>,
    fee: Amount,
    /// Its change output's index.
    change_vout: usize,
}

/// Checks that `txid` waits in the mempool, spends only the wallet's coins, has no
/// child waiting after it, and has a change output to take a higher fee from.
fn bumpable(client: &mut Client, wallet: &Wallet, scan: &Scan, txid: Txid) -> Result<Bumpable> {
    let refuse = |why: String| Error::Refused(format!("transaction {txid} {why}"));
    let info = locate(client, &txid)?
        .ok_or_else(|| refuse("is not in the node's mempool or chain".to_owned()))?;
    if let Some(TxLocation::Confirmed { height, .. }) = info.location {
        return Err(refuse(format!(
            "is already mined (height {height}): there is nothing to bump"
        )));
    }
    let tx = decode(&info).ok_or_else(|| refuse("does not decode".to_owned()))?;
    let spent: Vec<TxOut> = tx
        .inputs
        .iter()
        .map(|i| scan.outputs.get(&i.prev_out).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| refuse("spends coins that are not this wallet's".to_owned()))?;
    let fee = fee_of(&tx, &scan.outputs).ok_or_else(|| refuse("has an unknown fee".to_owned()))?;
    let children: Vec<Txid> = (0..tx.outputs.len() as u32)
        .filter(|vout| scan.spent.contains(&OutPoint { txid, vout: *vout }))
        .filter_map(|vout| {
            scan.pending
                .iter()
                .find(|p| p.tx.inputs.iter().any(|i| i.prev_out == OutPoint { txid, vout }))
        })
        .map(|p| p.txid)
        .collect();
    if !children.is_empty() {
        return Err(refuse(format!(
            "has a transaction waiting on its change ({}): replacing it would evict that one too",
            children.iter().map(Txid::to_string).collect::<Vec<_>>().join(", ")
        )));
    }
    let change_vout = (0..tx.outputs.len())
        .find(|&v| {
            let address = Address::new(wallet.network, tx.outputs[v].pubkey_hash);
            wallet.key_record(&address).is_some_and(|k| k.change)
        })
        .ok_or_else(|| refuse("has no change output to take a higher fee from".to_owned()))?;
    Ok(Bumpable { tx, spent, fee, change_vout })
}

/// `bumpfee`: replaces a waiting transaction of the wallet with one paying a higher
/// fee (BIP125): the same inputs and payments, less change.
pub(crate) fn bumpfee(ctx: &Context, args: &BumpArgs) -> Result<Report> {
    let txid = parse_txid(&args.txid)?;
    let _lock = Wallet::lock(ctx.wallet()?, false)?;
    let (mut wallet, original) = Wallet::load(ctx.wallet()?, ctx.network)?;
    if wallet.is_legacy() {
        return Err(crate::wallet::Error::NeedsUpgrade(wallet.path().to_owned()).into());
    }
    let mut client = connect(ctx)?;
    let scan = scan(&mut client, &wallet)?;
    let old = bumpable(&mut client, &wallet, &scan, txid)?;
    let min_rate = coins::min_replacement_rate(old.fee, old.tx.size());
    let mut fee_rate = choose_fee_rate(&mut client, args.fee_rate, args.conf_target)?;
    if args.fee_rate.is_some_and(|r| r < min_rate) {
        return Err(Error::Refused(format!(
            "a fee rate of {} belushis/byte does not replace {txid}: at least {min_rate} is needed \
             (its fee of {} plus {} belushi per byte of the replacement, BIP125)",
            fee_rate.rate,
            old.fee,
            coins::INCREMENTAL_FEE_RATE
        )));
    }
    if fee_rate.rate < min_rate {
        fee_rate = FeeRate {
            rate: min_rate,
            source: "minimum replacement",
            why: format!("the least that replaces {txid} (BIP125), above {}", fee_rate.why),
        };
    }
    let inputs_total = sum(old.spent.iter().map(|o| o.value));
    let coins::Replacement { mut tx, fee, change } = coins::replace_fee(
        &old.tx,
        inputs_total,
        old.fee,
        old.change_vout,
        fee_rate.rate,
    )
    .ok_or_else(|| {
        Error::Refused(format!(
            "the change of {txid} cannot pay {} belushis/byte (adding coins is not supported)",
            fee_rate.rate
        ))
    })?;
    let outgoing = sum(tx.outputs.iter().filter(|o| !wallet.owns(&o.pubkey_hash)).map(|o| o.value));
    if let Some(reason) = coins::fee_cap_violation(fee, outgoing) {
        return Err(Error::Refused(reason));
    }
    let passphrase = ctx.secrets.passphrase()?;
    sign(&wallet, &passphrase, &mut tx, &old.spent)?;
    let new_txid = tx.txid();
    let previous = wallet.sent.iter().position(|r| r.txid == txid).map(|i| wallet.sent.remove(i));
    let to = previous.as_ref().map(|r| r.to).or_else(|| {
        tx.outputs
            .iter()
            .find(|o| !wallet.owns(&o.pubkey_hash))
            .map(|o| Address::new(ctx.network, o.pubkey_hash))
    });
    let mut replaces = vec![txid];
    replaces.extend(previous.iter().flat_map(|r| r.replaces.iter().copied()));
    wallet.sent.push(SentRecord {
        txid: new_txid,
        to: to.unwrap_or_else(|| Address::new(ctx.network, tx.outputs[0].pubkey_hash)),
        amount: previous.as_ref().map_or(outgoing, |r| r.amount),
        fee,
        change_vout: (change > Amount::ZERO).then_some(old.change_vout as u32),
        hex: hex::encode(tx.encode()),
        replaces,
    });
    save_and_broadcast(&wallet, &original, &mut client, &tx)?;
    let text = format!(
        "replaced {txid}\nwith     {new_txid}\nfee  {} -> {fee} ({} bytes at {} belushis/byte)\n\
         fee rate {} belushis/byte: {}\nchange {change}\n",
        old.fee,
        tx.size(),
        fee_rate.rate,
        fee_rate.rate,
        fee_rate.why
    );
    Ok(Report {
        text,
        json: json!({
            "replaced": txid.to_string(), "txid": new_txid.to_string(),
            "old_fee": old.fee, "fee": fee, "size": tx.size(), "fee_rate": fee_rate.rate,
            "fee_rate_source": fee_rate.source, "fee_rate_reason": fee_rate.why, "change": change,
        }),
    })
}
