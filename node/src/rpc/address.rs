//! `getaddressutxos` and `getaddresshistory`: an address index answered in pages.
//!
//! Owns the order of the listings, the page cursor and the cap. Rows come
//! address by address in the order asked, each address's oldest first (by
//! height, txid and output; its mempool transactions after its confirmed ones,
//! by txid). Asked with a page (`{"limit": N, "after": CURSOR}`), the answer is
//! `{"utxos" | "history": [...], "next": CURSOR | null}`; asked without one, it
//! is the plain array, refused with a clear error when it would hold more than
//! [`MAX_ROWS`] rows: nothing is ever cut off silently.

use serde_json::Value;
use tinychain_protocol::keys::Address;
use tinychain_protocol::{OutPoint, Txid};
use tinychain_rpc_client::types::{
    AddressHistoryEntry, AddressHistoryPage, AddressUtxo, AddressUtxoPage,
};

use super::methods::{param_addresses, to_json};
use super::server::RpcError;
use crate::core::Core;
use crate::store::Store;

/// The most rows one answer holds (a page's `limit` defaults to it).
pub const MAX_ROWS: usize = 10_000;

/// Where a page ended: the address's index in the request and its last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// A confirmed row: height, txid and, for coins, the output index.
    Confirmed { address: usize, height: u32, txid: Txid, vout: u32 },
    /// A mempool transaction of the address's history.
    Mempool { address: usize, txid: Txid },
}

impl Cursor {
    fn address(self) -> usize {
        match self {
            Cursor::Confirmed { address, .. } | Cursor::Mempool { address, .. } => address,
        }
    }

    fn to_text(self) -> String {
        match self {
            Cursor::Confirmed { address, height, txid, vout } => {
                format!("{address}:{height}:{txid}:{vout}")
            }
            Cursor::Mempool { address, txid } => format!("{address}:mempool:{txid}"),
        }
    }

    fn parse(text: &str) -> Option<Cursor> {
        let mut parts = text.split(':');
        let address = parts.next()?.parse().ok()?;
        let place = parts.next()?;
        let txid = parts.next()?.parse().ok()?;
        let cursor = if place == "mempool" {
            Cursor::Mempool { address, txid }
        } else {
            let vout = parts.next()?.parse().ok()?;
            Cursor::Confirmed { address, height: place.parse().ok()?, txid, vout }
        };
        parts.next().is_none().then_some(cursor)
    }
}

/// A request's page: the rows wanted and where the last page ended.
#[derive(Debug, Clone, Copy)]
struct Page {
    limit: usize,
    after: Option<Cursor>,
}

/// Parses parameter 2 (`{"limit": N, "after": CURSOR}`), if given.
fn param_page(params: &[Value]) -> Result<Option<Page>, RpcError> {
    let Some(page) = params.get(1).filter(|v| !v.is_null()) else { return Ok(None) };
    let bad = |why: &str| RpcError::invalid_params(format!("parameter 2 (page) {why}"));
    let Value::Object(fields) = page else {
        return Err(bad("must be an object: {\"limit\": N, \"after\": \"cursor\"}"));
    };
    if let Some(key) = fields.keys().find(|k| *k != "limit" && *k != "after") {
        return Err(bad(&format!("has an unknown key {key:?}")));
    }
    let limit = match fields.get("limit") {
        None | Some(Value::Null) => MAX_ROWS,
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (1..=MAX_ROWS).contains(&n) => n,
            _ => return Err(bad(&format!("limit must be 1 to {MAX_ROWS}"))),
        },
    };
    let after = match fields.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(Cursor::parse(s).ok_or_else(|| bad(&format!("after {s:?} is not a cursor")))?)
        }
        Some(_) => return Err(bad("after must be a cursor string")),
    };
    Ok(Some(Page { limit, after }))
}

/// Rows up to a limit, and the cursor of the last one if more follow.
struct Collected<T> {
    rows: Vec<T>,
    next: Option<Cursor>,
}

impl<T> Collected<T> {
    /// Adds a row unless the page is full; when full (a row is left over), ends it.
    fn push(&mut self, limit: usize, row: T, at: Cursor) -> bool {
        if self.rows.len() == limit {
            return false;
        }
        self.rows.push(row);
        self.next = Some(at);
        true
    }

    /// Keeps `next` only if a row was left over (the page did not hold everything).
    fn finish(mut self, complete: bool) -> Collected<T> {
        if complete {
            self.next = None;
        }
        self
    }
}

/// `getaddressutxos address|[addresses] [page]`.
///
/// # Errors
///
/// Bad parameters, too many rows without a page, or a store failure.
pub fn getaddressutxos<S: Store, P: Clone>(
    core: &Core<S, P>,
    params: &[Value],
) -> Result<Value, RpcError> {
    let chain = core.chain();
    let addresses = param_addresses(params, 0, chain.params())?;
    let page = param_page(params)?;
    let Page { limit, after } = page.unwrap_or(Page { limit: MAX_ROWS, after: None });
    let mut out = Collected { rows: Vec::new(), next: None };
    let mut complete = true;
    'addresses: for (i, address) in addresses.iter().enumerate() {
        let from = match after {
            Some(c) if c.address() > i => continue,
            Some(Cursor::Confirmed { address, height, txid, vout }) if address == i => {
                Some((height, OutPoint { txid, vout }))
            }
            _ => None,
        };
        // One more than fits tells whether the page is the last.
        let coins = chain
            .store()
            .address_coins(&address.pubkey_hash(), from, limit - out.rows.len() + 1)
            .map_err(|e| RpcError::internal(e.to_string()))?;
        for (outpoint, coin) in coins {
            let row = utxo_row(core, *address, outpoint, &coin);
            let at = Cursor::Confirmed {
                address: i,
                height: coin.height,
                txid: outpoint.txid,
                vout: outpoint.vout,
            };
            if !out.push(limit, row, at) {
                complete = false;
                break 'addresses;
            }
        }
    }
    let out = out.finish(complete);
    match page {
        Some(_) => {
            to_json(&AddressUtxoPage { utxos: out.rows, next: out.next.map(Cursor::to_text) })
        }
        None if out.next.is_some() => Err(too_many("unspent outputs", "getaddressutxos")),
        None => to_json(&out.rows),
    }
}

fn utxo_row<S: Store, P: Clone>(
    core: &Core<S, P>,
    address: Address,
    outpoint: OutPoint,
    coin: &tinychain_protocol::validation::Coin,
) -> AddressUtxo {
    let chain = core.chain();
    let mature =
        !coin.is_coinbase || chain.height() + 1 - coin.height >= chain.params().coinbase_maturity;
    AddressUtxo {
        address,
        txid: outpoint.txid,
        vout: outpoint.vout,
        belushis: coin.output.value,
        height: coin.height,
        coinbase: coin.is_coinbase,
        confirmations: chain.height() - coin.height + 1,
        mature,
        spent_in_mempool: core.mempool().spender(&outpoint),
    }
}

/// `getaddresshistory address|[addresses] [page]`.
///
/// # Errors
///
/// Bad parameters, too many rows without a page, or a store failure.
pub fn getaddresshistory<S: Store, P: Clone>(
    core: &Core<S, P>,
    params: &[Value],
) -> Result<Value, RpcError> {
    let chain = core.chain();
    let addresses = param_addresses(params, 0, chain.params())?;
    let page = param_page(params)?;
    let Page { limit, after } = page.unwrap_or(Page { limit: MAX_ROWS, after: None });
    let mut out = Collected { rows: Vec::new(), next: None };
    let mut complete = true;
    'addresses: for (i, address) in addresses.iter().enumerate() {
        let (confirmed_from, mempool_from) = match after {
            Some(c) if c.address() > i => continue,
            Some(Cursor::Confirmed { address, height, txid, .. }) if address == i => {
                (Some(Some((height, txid))), None)
            }
            Some(Cursor::Mempool { address, txid }) if address == i => (None, Some(txid)),
            _ => (Some(None), None),
        };
        let pkh = address.pubkey_hash();
        if let Some(from) = confirmed_from {
            let history = chain
                .store()
                .address_history(&pkh, from, limit - out.rows.len() + 1)
                .map_err(|e| RpcError::internal(e.to_string()))?;
            for (height, txid) in history {
                let row = AddressHistoryEntry { address: *address, txid, height: Some(height) };
                let at = Cursor::Confirmed { address: i, height, txid, vout: 0 };
                if !out.push(limit, row, at) {
                    complete = false;
                    break 'addresses;
                }
            }
        }
        let mut pending: Vec<Txid> = core
            .mempool()
            .entries()
            .filter(|(_, e)| e.tx.outputs.iter().any(|o| o.pubkey_hash == pkh))
            .map(|(txid, _)| *txid)
            .filter(|txid| mempool_from.is_none_or(|last| *txid > last))
            .collect();
        pending.sort_unstable();
        for txid in pending {
            let row = AddressHistoryEntry { address: *address, txid, height: None };
            if !out.push(limit, row, Cursor::Mempool { address: i, txid }) {
                complete = false;
                break 'addresses;
            }
        }
    }
    let out = out.finish(complete);
    match page {
        Some(_) => {
            to_json(&AddressHistoryPage { history: out.rows, next: out.next.map(Cursor::to_text) })
        }
        None if out.next.is_some() => Err(too_many("history records", "getaddresshistory")),
        None => to_json(&out.rows),
    }
}

fn too_many(what: &str, method: &str) -> RpcError {
    RpcError::invalid_params(format!(
        "more than {MAX_ROWS} {what}: ask for pages, e.g. {method} <addresses> \
         '{{\"limit\": {MAX_ROWS}}}', then again with \"after\" set to the answer's \"next\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let txid: Txid = "11".repeat(32).parse().expect("a txid");
        for cursor in [
            Cursor::Confirmed { address: 2, height: 7, txid, vout: 3 },
            Cursor::Mempool { address: 0, txid },
        ] {
            assert_eq!(Cursor::parse(&cursor.to_text()), Some(cursor));
        }
        for junk in ["", "1", "1:2", "x:1:00:0", "1:2:zz:0", "1:mempool:00", "1:2:{t}:0:9"] {
            let junk = junk.replace("{t}", &txid.to_string());
            assert_eq!(Cursor::parse(&junk), None, "{junk}");
        }
    }

    #[test]
    fn pages_are_checked() {
        let page = |v: Value| param_page(&[Value::Null, v]);
        assert!(page(Value::Null).expect("no page").is_none());
        let p = page(serde_json::json!({})).expect("defaults").expect("a page");
        assert_eq!((p.limit, p.after), (MAX_ROWS, None));
        assert!(page(serde_json::json!({"limit": 0})).is_err());
        assert!(page(serde_json::json!({"limit": MAX_ROWS + 1})).is_err());
        assert!(page(serde_json::json!({"after": "nope"})).is_err());
        assert!(page(serde_json::json!({"limt": 5})).is_err());
        assert!(page(serde_json::json!(5)).is_err());
    }
}
