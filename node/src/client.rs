//! The operator's client views of a running node: `status`, `peers`, `mempool`, `block`, `tx`, `stop`.
//!
//! Owns turning a node's answers into readable text; the connection itself is
//! `tinychain_rpc_client`'s (re-exported here). The rendering functions are pure,
//! so they are tested without a node; printing is left to the binary. It never
//! touches the data directory beyond finding the socket's path.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Value, json};
use tinychain_protocol::rpc::{
    BlockInfo, BlockchainInfo, MempoolInfo, MiningInfo, TransactionInfo, TxLocation,
};
pub use tinychain_rpc_client::{Client, Error, Location, NodeFlags};

/// A view: readable text and the JSON it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// For people, ending with a newline.
    pub text: String,
    /// For programs.
    pub json: Value,
}

/// `status`: chain, sync, mempool, mining and peer count.
///
/// # Errors
///
/// See [`Error`].
pub fn status(at: &Location) -> Result<View, Error> {
    let (mut client, chain) = at.connect()?;
    let mempool: MempoolInfo = client.call("getmempoolinfo", Vec::new())?;
    let mining: MiningInfo = client.call("getmininginfo", Vec::new())?;
    let peers: Vec<Value> = client.call("getpeerinfo", Vec::new())?;
    let json = json!({
        "chain": chain, "mempool": mempool, "mining": mining, "peers": peers.len(),
    });
    Ok(View { text: render_status(&chain, &mempool, &mining, peers.len()), json })
}

/// Renders `status`.
pub fn render_status(
    chain: &BlockchainInfo,
    mempool: &MempoolInfo,
    mining: &MiningInfo,
    peers: usize,
) -> String {
    let sync = if chain.initialblockdownload {
        format!("syncing, {:.1}%", chain.verificationprogress * 100.0)
    } else {
        "up to date".to_owned()
    };
    let miner = match (&mining.mining, &mining.address) {
        (true, Some(a)) => format!("on, {} threads, paying {a}", mining.threads),
        (true, None) => format!("on, {} threads", mining.threads),
        (false, _) => "off".to_owned(),
    };
    format!(
        "network     {}\n\
         height      {} (headers {})\n\
         tip         {}\n\
         chainwork   {}\n\
         difficulty  {}\n\
         sync        {sync}\n\
         mempool     {} transactions, {} bytes, {} orphans\n\
         mining      {miner}\n\
         peers       {peers}\n",
        chain.chain,
        chain.blocks,
        chain.headers,
        chain.bestblockhash,
        chain.chainwork,
        chain.difficulty,
        mempool.size,
        mempool.bytes,
        mempool.orphans,
    )
}

/// `peers`: a table of the connected peers, or a Graphviz graph with `dot`.
///
/// # Errors
///
/// See [`Error`].
pub fn peers(at: &Location, dot: bool) -> Result<View, Error> {
    let (mut client, _) = at.connect()?;
    let peers: Vec<Value> = client.call("getpeerinfo", Vec::new())?;
    let text = if dot {
        let info: Value = client.call("getnetworkinfo", Vec::new())?;
        let me = info.get("peer_id").and_then(Value::as_str).unwrap_or("this node");
        render_dot(me, &peers)
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        render_peers(&peers, now)
    };
    Ok(View { text, json: Value::Array(peers) })
}

/// A peer's field as text, or "-" if the node does not report it.
fn field(peer: &Value, name: &str) -> String {
    peer.get(name).filter(|v| !v.is_null()).map_or_else(
        || "-".to_owned(),
        |v| match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
            Value::Number(n) if n.is_f64() => format!("{:.1}", n.as_f64().unwrap_or(0.0)),
            // A set of flags (the mesh topics): the ones that are set.
            Value::Object(flags) => {
                let set: Vec<&str> = flags
                    .iter()
                    .filter(|(_, v)| **v == Value::Bool(true))
                    .map(|(k, _)| k.as_str())
                    .collect();
                if set.is_empty() { "-".to_owned() } else { set.join("+") }
            }
            other => other.to_string(),
        },
    )
}

/// How a `peers` column shows its `getpeerinfo` field.
#[derive(Debug, Clone, Copy)]
enum Shown {
    /// As it is.
    Plain,
    /// A unix time, as how long ago ("3s", "2m", "1h", "4d").
    Age,
    /// A byte count, short ("812", "12.3k", "4.5M").
    Bytes,
}

/// Renders an age: how long before `now` the unix time `then` was.
fn age(now: u64, then: u64) -> String {
    let secs = now.saturating_sub(then);
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// Renders a byte count in three or four characters and a unit.
fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n < 1e3 => format!("{n}"),
        n if n < 1e6 => format!("{:.1}k", n / 1e3),
        n if n < 1e9 => format!("{:.1}M", n / 1e6),
        n => format!("{:.1}G", n / 1e9),
    }
}

/// Renders the `peers` table from `getpeerinfo`, times as ages before `now`
/// (unix seconds); fields a node does not report show "-".
pub fn render_peers(peers: &[Value], now: u64) -> String {
    let columns = [
        ("PEER ID", "id", Shown::Plain),
        ("ADDRESS", "address", Shown::Plain),
        ("DIRECTION", "direction", Shown::Plain),
        ("CONNS", "connections", Shown::Plain),
        ("PING MS", "ping_ms", Shown::Plain),
        ("PING WAIT", "ping_wait_ms", Shown::Plain),
        ("LAST RECV", "last_recv", Shown::Age),
        ("LAST SEND", "last_send", Shown::Age),
        ("RECV", "bytes_recv", Shown::Bytes),
        ("SENT", "bytes_sent", Shown::Bytes),
        ("HEIGHT", "height", Shown::Plain),
        ("MESH", "mesh", Shown::Plain),
        ("CONNECTED", "connected_since", Shown::Age),
        ("AGENT", "agent", Shown::Plain),
    ];
    let cell = |peer: &Value, name: &str, shown: Shown| match (shown, peer[name].as_u64()) {
        (Shown::Age, Some(t)) => age(now, t),
        (Shown::Bytes, Some(n)) => bytes(n),
        _ => field(peer, name),
    };
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| columns.iter().map(|(_, name, shown)| cell(p, name, *shown)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (title, ..))| {
            rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(title.len())
        })
        .collect();
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(text, "{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|(t, ..)| *t).collect());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    if rows.is_empty() {
        text.push_str("no peers connected\n");
    }
    text
}

/// Renders a Graphviz graph: this node, an edge to each neighbour (solid in the blocks mesh).
pub fn render_dot(me: &str, peers: &[Value]) -> String {
    let short = |id: &str| {
        let tail: String = id.chars().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    };
    let mut text = String::from("graph tinychain {\n  node [shape=box];\n");
    let _ = writeln!(text, "  \"{me}\" [label=\"{} (this node)\", style=bold];", short(me));
    let mut seen = BTreeSet::new();
    for peer in peers {
        let id = field(peer, "id");
        if !seen.insert(id.clone()) {
            continue;
        }
        let height = field(peer, "height");
        let _ = writeln!(text, "  \"{id}\" [label=\"{}\\nheight {height}\"];", short(&id));
        let in_mesh = peer.pointer("/mesh/blocks") == Some(&Value::Bool(true));
        let style = if in_mesh { "solid" } else { "dashed" };
        let _ = writeln!(text, "  \"{me}\" -- \"{id}\" [style={style}];");
    }
    text.push_str("}\n");
    text
}

/// `mempool`: size and each transaction with its fee.
///
/// # Errors
///
/// See [`Error`].
pub fn mempool(at: &Location) -> Result<View, Error> {
    let (mut client, _) = at.connect()?;
    let info: MempoolInfo = client.call("getmempoolinfo", Vec::new())?;
    let txids: Vec<String> = client.call("getrawmempool", Vec::new())?;
    let mut rows = Vec::new();
    let mut text =
        format!("{} transactions, {} bytes, {} orphans\n", info.size, info.bytes, info.orphans);
    for txid in &txids {
        // A transaction may leave the mempool between the two calls.
        let tx: TransactionInfo = match client.call("gettransaction", vec![json!(txid)]) {
            Ok(tx) => tx,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let fee = match tx.location {
            Some(TxLocation::Mempool { fee }) => fee.to_string(),
            _ => "-".to_owned(),
        };
        let out = tinychain_protocol::Amount::checked_sum(tx.vout.iter().map(|o| o.belushis))
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        let _ = writeln!(text, "{txid}  {:>6} bytes  fee {fee}  out {out}", tx.size);
        rows.push(json!({ "txid": txid, "size": tx.size, "fee": tx.location, "out": out }));
    }
    Ok(View { text, json: json!({ "info": info, "transactions": rows }) })
}

/// `block <hash|height>`: a block's header and transactions.
///
/// # Errors
///
/// See [`Error`].
pub fn block(at: &Location, id: &str) -> Result<View, Error> {
    let (mut client, _) = at.connect()?;
    let hash: String = match id.parse::<u64>() {
        Ok(height) if id.len() < 64 => client.call("getblockhash", vec![json!(height)])?,
        _ => id.to_owned(),
    };
    let block: BlockInfo = client.call("getblock", vec![json!(hash), json!(1)])?;
    let h = &block.header;
    let mut text = format!(
        "block          {}\n\
         height         {}\n\
         confirmations  {}\n\
         time           {}\n\
         previous       {}\n\
         next           {}\n\
         merkle root    {}\n\
         bits           {}  difficulty {}\n\
         nonce          {}\n\
         chainwork      {}\n\
         size           {} bytes\n\
         transactions   {}\n",
        h.hash,
        h.height,
        h.confirmations,
        h.time,
        h.previousblockhash,
        h.nextblockhash.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        h.merkleroot,
        h.bits,
        h.difficulty,
        h.nonce,
        h.chainwork,
        block.size,
        block.tx.len(),
    );
    for txid in &block.tx {
        let _ = writeln!(text, "  {txid}");
    }
    let json = serde_json::to_value(&block)
        .map_err(|e| Error::BadReply { method: "getblock".to_owned(), reason: e.to_string() })?;
    Ok(View { text, json })
}

/// `tx <txid>`: a transaction, its inputs and outputs, and where it is.
///
/// # Errors
///
/// See [`Error`].
pub fn tx(at: &Location, txid: &str) -> Result<View, Error> {
    let (mut client, _) = at.connect()?;
    let tx: TransactionInfo = client.call("gettransaction", vec![json!(txid)])?;
    let json = serde_json::to_value(&tx).map_err(|e| Error::BadReply {
        method: "gettransaction".to_owned(),
        reason: e.to_string(),
    })?;
    Ok(View { text: render_tx(&tx), json })
}

/// Renders `tx`.
pub fn render_tx(tx: &TransactionInfo) -> String {
    let place = match &tx.location {
        Some(TxLocation::Mempool { fee }) => format!("in mempool, fee {fee}"),
        Some(TxLocation::Confirmed { blockhash, height, confirmations }) => {
            format!("mined in block {blockhash} at height {height}, {confirmations} confirmations")
        }
        None => "-".to_owned(),
    };
    let mut text = format!(
        "txid     {}\nstatus   {place}\nsize     {} bytes\ncoinbase {}\n",
        tx.txid,
        tx.size,
        if tx.coinbase { "yes" } else { "no" }
    );
    if !tx.coinbase {
        for input in &tx.vin {
            let _ = writeln!(text, "in       {}:{}", input.txid, input.vout);
        }
    }
    for output in &tx.vout {
        let _ = writeln!(text, "out {:<4} {:>20}  {}", output.n, output.value, output.address);
    }
    text
}

/// `stop`: asks the node to shut down.
///
/// # Errors
///
/// See [`Error`].
pub fn stop(at: &Location) -> Result<View, Error> {
    let (mut client, _) = at.connect()?;
    let answer: Value = client.call("stop", Vec::new())?;
    let text = format!("{}\n", answer.as_str().unwrap_or("stopping"));
    Ok(View { text, json: answer })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_table_shows_dashes_for_fields_the_node_does_not_report() {
        let peers = vec![
            json!({ "id": "12D3KooWA", "height": 7, "mesh": {"blocks": true, "txs": true} }),
            json!({ "id": "12D3KooWB", "height": null, "mesh": {"blocks": false, "txs": false},
                    "address": "/ip4/127.0.0.1/tcp/1", "direction": "outbound", "ping_ms": 3.125 }),
        ];
        let table = render_peers(&peers, 1_000);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("PEER ID"), "{table}");
        assert!(lines[1].contains("12D3KooWA") && lines[1].contains(" - "), "{table}");
        assert!(lines[1].contains("blocks+txs"), "mesh topics: {table}");
        assert!(lines[2].contains("outbound") && lines[2].contains("/ip4/127.0.0.1/tcp/1"));
        assert!(lines[2].contains(" 3.1 "), "ping in ms with one decimal: {table}");
        assert_eq!(render_peers(&[], 1_000).lines().nth(1), Some("no peers connected"));
    }

    #[test]
    fn the_peer_table_shows_times_as_ages_and_bytes_short() {
        let now = 1_796_000_000;
        let peers = vec![json!({
            "id": "12D3KooWA", "connections": 2, "last_recv": now - 3, "last_send": now - 150,
            "connected_since": now - 7_300, "bytes_recv": 12_345, "bytes_sent": 4_500_000,
            "ping_wait_ms": null,
        })];
        let table = render_peers(&peers, now);
        let header: Vec<&str> = table.lines().next().expect("a header").split("  ").collect();
        let row = table.lines().nth(1).expect("a row");
        for (title, shown) in
            [("LAST RECV", "3s"), ("LAST SEND", "2m"), ("CONNECTED", "2h"), ("RECV", "12.3k")]
        {
            let at = table.lines().next().and_then(|h| h.find(title)).expect(title);
            assert_eq!(row[at..].split_whitespace().next(), Some(shown), "{title}: {table}");
        }
        assert!(header.iter().any(|h| h.trim() == "CONNS"), "{table}");
        assert!(row.contains(" 4.5M ") && row.contains(" 2 "), "{table}");
        assert_eq!((age(now, now + 5), age(now, now - 90_000)), ("0s".into(), "1d".into()));
        assert_eq!((bytes(999), bytes(1_000)), ("999".into(), "1.0k".into()));
    }

    #[test]
    fn the_dot_graph_links_this_node_to_each_neighbour() {
        let peers = vec![
            json!({ "id": "peerA", "height": 1, "mesh": {"blocks": true, "txs": true} }),
            json!({ "id": "peerB", "mesh": {"blocks": false, "txs": false} }),
        ];
        let dot = render_dot("me", &peers);
        assert!(dot.starts_with("graph tinychain {"));
        assert!(dot.contains("\"me\" -- \"peerA\" [style=solid];"), "{dot}");
        assert!(dot.contains("\"me\" -- \"peerB\" [style=dashed];"), "{dot}");
        assert!(dot.trim_end().ends_with('}'));
    }
}
