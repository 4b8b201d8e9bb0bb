//! The wallet's commands: each loads the wallet, asks the node what it needs, and reports.
//!
//! Owns what every command does and says, as a [`Report`] holding both the
//! human-readable text and the JSON, and the errors they end with. It does not print
//! (`main` does) and does not parse the command line. The commands are grouped by
//! what they touch: [`keys`] (creating, restoring, upgrading and unlocking the
//! wallet, its addresses and keys), [`scan`] (what the node says the wallet holds:
//! balance, coins), [`history`] (transactions and their status) and [`spend`]
//! (`send` and `bumpfee`, which check everything before they write the wallet file
//! or broadcast, so a refused one leaves the file byte for byte as it was).

mod history;
mod keys;
mod scan;
mod spend;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tinychain_protocol::keys::{Address, AddressError, WifError};
use tinychain_protocol::params::Network;
use tinychain_protocol::{Amount, Txid};
use tinychain_rpc_client::types::{
    AddressHistoryEntry, AddressHistoryPage, AddressUtxo, AddressUtxoPage, TransactionInfo,
};
use tinychain_rpc_client::{self as rpc, Client, Location};

pub(crate) use history::{history, status};
pub(crate) use keys::{
    CreateArgs, addresses, change_passphrase, create, export_key, import_key, new_address, restore,
    show_mnemonic, upgrade,
};
pub(crate) use scan::{balance, utxos};
pub(crate) use spend::{BumpArgs, SendArgs, bumpfee, send};

use crate::coins::{AmountError, SelectError};
use crate::{hd, prompt, wallet};

/// Where the wallet and the node are, and where secrets come from.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The network.
    pub(crate) network: Network,
    /// The wallet file, if known (`--wallet`, else in the network's data directory).
    pub(crate) wallet: Option<PathBuf>,
    /// Where the node is, or why that cannot be worked out.
    pub(crate) node: std::result::Result<Location, String>,
    /// Where passphrases come from.
    pub(crate) secrets: prompt::Sources,
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
    /// A passphrase or seed phrase could not be read.
    #[error(transparent)]
    Secret(#[from] prompt::Error),
    /// A seed phrase or derivation.
    #[error(transparent)]
    Hd(#[from] hd::Error),
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
    /// `send` or `bumpfee` refuses (fee cap and the like); nothing was broadcast.
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
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[from] tinychain_protocol::sighash::SignError),
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

fn sum(amounts: impl IntoIterator<Item = Amount>) -> Amount {
    Amount::checked_sum(amounts).unwrap_or(Amount::MAX_MONEY)
}

/// Rows per page of the node's address index (its largest).
const PAGE: u64 = 10_000;

/// The node's confirmed coins of `addresses`, every page.
fn address_utxos(client: &mut Client, addresses: &[Address]) -> Result<Vec<AddressUtxo>> {
    all_pages(client, "getaddressutxos", &json!(addresses), |p: AddressUtxoPage| (p.utxos, p.next))
}

/// The node's history of `addresses`, every page: confirmed transactions and mempool
/// ones paying them.
fn address_history(client: &mut Client, addresses: &[Address]) -> Result<Vec<AddressHistoryEntry>> {
    all_pages(client, "getaddresshistory", &json!(addresses), |p: AddressHistoryPage| {
        (p.history, p.next)
    })
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

/// A transaction as the node sees it; `None` if it knows it nowhere.
fn locate(client: &mut Client, txid: &Txid) -> Result<Option<TransactionInfo>> {
    match client.call::<TransactionInfo>("gettransaction", vec![json!(txid.to_string())]) {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
