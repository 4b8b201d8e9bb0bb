//! The wallet's commands: each loads the wallet, asks the node what it needs, and reports.
//!
//! Owns what every command does and says, as a [`Report`] holding both the
//! human-readable text and the JSON. It does not print (`main` does) and does
//! not parse the command line. `send` checks everything it can (address,
//! amount, funds, fee cap) before it writes the wallet file or broadcasts, so a
//! refused send leaves the file byte for byte as it was.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tinychain_protocol::keys::{Address, AddressError, PrivateKey, WifError};
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::rpc::{
    AddressHistoryEntry, AddressHistoryPage, AddressUtxo, AddressUtxoPage, TransactionInfo,
    TxLocation,
};
use tinychain_protocol::sighash::{self, SignError};
use tinychain_protocol::{Amount, OutPoint, Transaction, TxOut, Txid};
use tinychain_rpc_client::{self as rpc, Client, Location};

use crate::coins::{self, AmountError, Candidate, SelectError};
use crate::wallet::{self, SentRecord, Wallet};

/// Where the wallet and the node are.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The network.
    pub(crate) network: Network,
    /// The wallet file, if known (`--wallet`, else in the network's data directory).
    pub(crate) wallet: Option<PathBuf>,
    /// Where the node is, or why that cannot be worked out.
    pub(crate) node: std::result::Result<Location, String>,
}

impl Context {
    fn wallet(&self) -> Result<&Path> {
        self.wallet.as_deref().ok_or(Error::NoWallet)
    }
}

/// What a command has to say: text for people, JSON for programs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    /// The readable output, ending with a newline.
    pub(crate) text: String,
    /// The same as JSON.
    pub(crate) json: Value,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The wallet file.
    #[error(transparent)]
    Wallet(#[from] wallet::Error),
    /// The node.
    #[error(transparent)]
    Rpc(#[from] rpc::Error),
    /// The amount.
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// Coin selection.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// An address the user typed.
    #[error("address {input}: {reason}")]
    Address {
        /// What was typed.
        input: String,
        /// What is wrong with it.
        reason: AddressError,
    },
    /// A private key the user typed.
    #[error("private key: {0}")]
    Wif(#[from] WifError),
    /// A private key of another network.
    #[error("the private key is for {found}, not {expected}")]
    KeyNetwork {
        /// The wallet's network.
        expected: Network,
        /// The key's.
        found: tinychain_protocol::keys::NetworkKind,
    },
    /// An address the wallet has no key for.
    #[error("the wallet has no key for {0}")]
    NotMine(Address),
    /// A malformed txid.
    #[error("txid {input}: {reason}")]
    Txid {
        /// What was typed.
        input: String,
        /// What is wrong with it.
        reason: tinychain_protocol::hash::ParseHashError,
    },
    /// `send` refuses (fee cap and the like); nothing was broadcast.
    #[error("{0}; nothing was sent")]
    Refused(String),
    /// The node's answer to the broadcast was lost.
    #[error(
        "{cause}; transaction {txid} may have been broadcast: the wallet kept it \
         (`status {txid}` tells)"
    )]
    Unknown {
        /// The transaction.
        txid: Txid,
        /// What failed.
        cause: rpc::Error,
    },
    /// Signing failed (the wallet file lost a key it listed).
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    /// Neither `--wallet` nor a data directory says where the wallet is.
    #[error("give --datadir or --wallet to say where the wallet file is")]
    NoWallet,
    /// Where the node is cannot be worked out.
    #[error("{0}")]
    Locate(String),
    /// The OS has no randomness.
    #[error("reading the OS's randomness: {0}")]
    Random(getrandom::Error),
}

type Result<T> = std::result::Result<T, Error>;

fn parse_address(input: &str, network: Network) -> Result<Address> {
    Address::parse(input, network).map_err(|reason| Error::Address { input: input.into(), reason })
}

fn parse_txid(input: &str) -> Result<Txid> {
    input.parse().map_err(|reason| Error::Txid { input: input.into(), reason })
}

fn connect(ctx: &Context) -> Result<Client> {
    let at = ctx.node.as_ref().map_err(|e| Error::Locate(e.clone()))?;
    let (client, _) = at.connect()?;
    Ok(client)
}

/// `create`: a new wallet file with a first address.
pub(crate) fn create(ctx: &Context, label: &str) -> Result<Report> {
    let _lock = Wallet::lock(ctx.wallet()?, true)?;
    let mut wallet = Wallet::new(ctx.network);
    let key = wallet::generate_key().map_err(Error::Random)?;
    let address = wallet.add_key(&key, label, false)?;
    wallet.create(ctx.wallet()?)?;
    Ok(Report {
        text: format!("created {}\naddress {address}\n", ctx.wallet()?.display()),
        json: json!({ "wallet": ctx.wallet, "network": ctx.network, "address": address }),
    })
}

/// `new-address`: a fresh key.
pub(crate) fn new_address(ctx: &Context, label: &str) -> Result<Report> {
    let _lock = Wallet::lock(ctx.wallet()?, false)?;
    let (mut wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let key = wallet::generate_key().map_err(Error::Random)?;
    let address = wallet.add_key(&key, label, false)?;
    wallet.save(ctx.wallet()?)?;
    Ok(Report { text: format!("{address}\n"), json: json!({ "address": address, "label": label }) })
}

/// `addresses`: every key's address and label.
pub(crate) fn addresses(ctx: &Context) -> Result<Report> {
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let mut text = String::new();
    let mut rows = Vec::new();
    for key in &wallet.keys {
        let label = if key.change { "(change)" } else { key.label.as_str() };
        let _ = writeln!(text, "{}  {label}", key.address);
        rows.push(json!({ "address": key.address, "label": key.label, "change": key.change }));
    }
    Ok(Report { text, json: Value::Array(rows) })
}

/// `import-key`: adds a private key given in WIF.
pub(crate) fn import_key(ctx: &Context, wif: &str, label: &str) -> Result<Report> {
    let (key, kind) = PrivateKey::from_wif(wif)?;
    if !kind.includes(ctx.network) {
        return Err(Error::KeyNetwork { expected: ctx.network, found: kind });
    }
    let _lock = Wallet::lock(ctx.wallet()?, false)?;
    let (mut wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let address = wallet.add_key(&key, label, false)?;
    wallet.save(ctx.wallet()?)?;
    Ok(Report {
        text: format!("imported {address}\n"),
        json: json!({ "address": address, "label": label }),
    })
}

/// `export-key`: prints an address's private key in WIF.
pub(crate) fn export_key(ctx: &Context, address: &str) -> Result<Report> {
    let address = parse_address(address, ctx.network)?;
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let record = wallet.key_record(&address).ok_or(Error::NotMine(address))?;
    Ok(Report {
        text: format!("{}\n", record.wif),
        json: json!({ "address": address, "wif": record.wif }),
    })
}

/// What the node says about the wallet's coins.
struct Scan {
    /// Confirmed coins from the address index, with how each may be used.
    confirmed: Vec<(AddressUtxo, CoinState)>,
    /// The wallet's own transactions still in the mempool.
    pending: Vec<(SentRecord, Transaction)>,
    /// Change of those, not spent by another of them.
    change: Vec<Candidate>,
    /// Other people's mempool transactions paying the wallet, and how much.
    incoming: Vec<(Txid, Amount)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CoinState {
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

/// Rows per page of the node's address index (its largest).
const PAGE: u64 = 10_000;

/// Every unspent output paying `addresses`.
fn address_utxos(client: &mut Client, addresses: &Value) -> Result<Vec<AddressUtxo>> {
    all_pages(client, "getaddressutxos", addresses, |p: AddressUtxoPage| (p.utxos, p.next))
}

/// Every history record of `addresses`.
fn address_history(client: &mut Client, addresses: &Value) -> Result<Vec<AddressHistoryEntry>> {
    all_pages(client, "getaddresshistory", addresses, |p: AddressHistoryPage| (p.history, p.next))
}

/// Calls a paged address-index method until its last page.
fn all_pages<P: serde::de::DeserializeOwned, T>(
    client: &mut Client,
    method: &str,
    addresses: &Value,
    split: impl Fn(P) -> (Vec<T>, Option<String>),
) -> Result<Vec<T>> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = json!({ "limit": PAGE, "after": after });
        let (found, next) = split(client.call(method, vec![addresses.clone(), page])?);
        rows.extend(found);
        match next {
            Some(next) => after = Some(next),
            None => return Ok(rows),
        }
    }
}

fn scan(client: &mut Client, wallet: &Wallet) -> Result<Scan> {
    let addresses = json!(wallet.addresses());
    let utxos = address_utxos(client, &addresses)?;
    let mempool: Vec<String> = client.call("getrawmempool", Vec::new())?;
    let mempool: HashSet<Txid> = mempool.iter().filter_map(|t| t.parse().ok()).collect();
    let pending: Vec<(SentRecord, Transaction)> = wallet
        .sent
        .iter()
        .filter(|r| mempool.contains(&r.txid))
        .filter_map(|r| r.transaction().map(|tx| (r.clone(), tx)))
        .collect();
    let spent_by_own: HashSet<OutPoint> =
        pending.iter().flat_map(|(_, tx)| tx.inputs.iter().map(|i| i.prev_out)).collect();
    let confirmed = utxos
        .into_iter()
        .map(|u| {
            let outpoint = OutPoint { txid: u.txid, vout: u.vout };
            let state = if u.spent_in_mempool.is_some() || spent_by_own.contains(&outpoint) {
                CoinState::SpentInMempool
            } else if u.mature {
                CoinState::Spendable
            } else {
                CoinState::Immature
            };
            (u, state)
        })
        .collect();
    let change = pending
        .iter()
        .flat_map(|(record, tx)| {
            (0u32..).zip(&tx.outputs).map(move |(vout, output)| Candidate {
                outpoint: OutPoint { txid: record.txid, vout },
                output: *output,
                confirmed: false,
            })
        })
        .filter(|c| wallet.owns(&c.output.pubkey_hash) && !spent_by_own.contains(&c.outpoint))
        .collect();
    let own: HashSet<Txid> = wallet.sent.iter().map(|r| r.txid).collect();
    let history = address_history(client, &addresses)?;
    let mut incoming = Vec::new();
    let mut seen = HashSet::new();
    for entry in history {
        if entry.height.is_some() || own.contains(&entry.txid) || !seen.insert(entry.txid) {
            continue;
        }
        match client.call::<TransactionInfo>("gettransaction", vec![json!(entry.txid.to_string())])
        {
            Ok(info) => incoming.push((entry.txid, paid_to(wallet, &info))),
            // Mined or dropped between the two calls: the next look sees it.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Scan { confirmed, pending, change, incoming })
}

/// What a transaction pays to the wallet's addresses.
fn paid_to(wallet: &Wallet, info: &TransactionInfo) -> Amount {
    sum(info.vout.iter().filter(|o| wallet.owns(&o.address.pubkey_hash())).map(|o| o.belushis))
}

fn sum(amounts: impl IntoIterator<Item = Amount>) -> Amount {
    Amount::checked_sum(amounts).unwrap_or(Amount::MAX_MONEY)
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
    let outgoing = sum(scan.pending.iter().map(|(r, _)| sum([r.amount, r.fee])));
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

/// The arguments of `send`.
#[derive(Debug, Clone)]
pub(crate) struct SendArgs {
    /// The address to pay.
    pub(crate) to: String,
    /// The amount, as typed.
    pub(crate) amount: String,
    /// Whether the amount is in belushis.
    pub(crate) belushis: bool,
    /// Belushis per byte.
    pub(crate) fee_rate: u64,
}

/// `send`: pays an address, with change back to a fresh address of the wallet.
pub(crate) fn send(ctx: &Context, args: &SendArgs) -> Result<Report> {
    let to = parse_address(&args.to, ctx.network)?;
    let amount = coins::parse_amount(&args.amount, args.belushis)?;
    let _lock = Wallet::lock(ctx.wallet()?, false)?;
    let (mut wallet, original) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let mut client = connect(ctx)?;
    let scan = scan(&mut client, &wallet)?;
    let mut candidates: Vec<Candidate> = scan
        .confirmed
        .iter()
        .filter(|(_, state)| *state == CoinState::Spendable)
        .map(|(u, _)| Candidate {
            outpoint: OutPoint { txid: u.txid, vout: u.vout },
            output: TxOut { value: u.belushis, pubkey_hash: u.address.pubkey_hash() },
            confirmed: true,
        })
        .collect();
    candidates.extend(scan.change.iter().copied());
    let plan = coins::select(&candidates, amount, args.fee_rate)?;
    if let Some(reason) = coins::fee_cap_violation(plan.fee, amount) {
        return Err(Error::Refused(reason));
    }

    let mut outputs = vec![TxOut { value: amount, pubkey_hash: to.pubkey_hash() }];
    let mut change_address = None;
    if plan.change > Amount::ZERO {
        let key = wallet::generate_key().map_err(Error::Random)?;
        let address = wallet.add_key(&key, "", true)?;
        outputs.push(TxOut { value: plan.change, pubkey_hash: address.pubkey_hash() });
        change_address = Some(address);
    }
    let mut tx = Transaction::spending(plan.inputs.iter().map(|c| c.outpoint), outputs);
    for (i, input) in plan.inputs.iter().enumerate() {
        let key = wallet
            .key_for(&input.output.pubkey_hash)
            .ok_or_else(|| Error::NotMine(Address::new(ctx.network, input.output.pubkey_hash)))?;
        sighash::sign_input(&mut tx, i, &input.output, &key)?;
    }
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
    });
    // The change key is on disk before the coins move to it.
    wallet.save(ctx.wallet()?)?;
    match client.call::<String>("sendrawtransaction", vec![json!(hex::encode(tx.encode()))]) {
        Ok(_) => {}
        // The node refused it: it never left, so the wallet forgets it.
        Err(e @ rpc::Error::Rpc { .. }) => {
            Wallet::restore(ctx.wallet()?, &original)?;
            return Err(e.into());
        }
        // The answer was lost: the node may have it, so the record and change key stay.
        Err(e) => return Err(Error::Unknown { txid, cause: e }),
    }

    let mut text = format!(
        "sent {amount} to {to}\ntxid {txid}\nfee  {} ({} bytes at {} belushis/byte)\n",
        plan.fee, plan.size, args.fee_rate
    );
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
    let json = json!({
        "txid": txid.to_string(),
        "to": to,
        "amount": amount,
        "fee": plan.fee,
        "size": plan.size,
        "fee_rate": args.fee_rate,
        "change": plan.change,
        "change_address": change_address,
        "dust_to_fee": plan.dust_to_fee,
        "inputs": plan.inputs.len(),
    });
    Ok(Report { text, json })
}

/// Where the node sees a transaction; `None` if nowhere.
fn locate(client: &mut Client, txid: &Txid) -> Result<Option<TransactionInfo>> {
    match client.call::<TransactionInfo>("gettransaction", vec![json!(txid.to_string())]) {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

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

/// `history`: the wallet's transactions, oldest first, mempool and unknown last.
pub(crate) fn history(ctx: &Context) -> Result<Report> {
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let mut client = connect(ctx)?;
    let entries = address_history(&mut client, &json!(wallet.addresses()))?;
    let mut txids: Vec<Txid> = Vec::new();
    for txid in entries.iter().map(|e| e.txid).chain(wallet.sent.iter().map(|r| r.txid)) {
        if !txids.contains(&txid) {
            txids.push(txid);
        }
    }
    // Sort key: height (mempool after every block, unknown last), then first seen.
    let mut rows: BTreeMap<(u64, usize), (String, Value)> = BTreeMap::new();
    for (i, txid) in txids.iter().enumerate() {
        let info = locate(&mut client, txid)?;
        let location = info.as_ref().and_then(|i| i.location.as_ref());
        let (order, height) = match location {
            Some(TxLocation::Confirmed { height, .. }) => (u64::from(*height), height.to_string()),
            Some(TxLocation::Mempool { .. }) => (u64::MAX - 1, "mempool".to_owned()),
            None => (u64::MAX, "unknown".to_owned()),
        };
        let record = wallet.sent.iter().find(|r| r.txid == *txid);
        let (kind, amount, detail) = match (record, &info) {
            (Some(r), _) => ("sent", r.amount, format!("to {} fee {}", r.to, r.fee)),
            (None, Some(info)) if info.coinbase => ("mined", paid_to(&wallet, info), String::new()),
            (None, Some(info)) => ("received", paid_to(&wallet, info), String::new()),
            (None, None) => ("received", Amount::ZERO, String::new()),
        };
        let text = format!("{height:>8}  {kind:<8} {:>17}  {txid} {detail}", amount.to_string());
        let mut json = location_json(txid, location);
        json["kind"] = json!(kind);
        json["amount"] = json!(amount);
        if let Some(r) = record {
            json["to"] = json!(r.to);
            json["fee"] = json!(r.fee);
        }
        rows.insert((order, i), (text.trim_end().to_owned(), json));
    }
    let mut text: String = rows.values().map(|(t, _)| format!("{t}\n")).collect();
    if text.is_empty() {
        text.push_str("no transactions\n");
    }
    Ok(Report { text, json: Value::Array(rows.into_values().map(|(_, j)| j).collect()) })
}
