//! The operator's client views of a running node: `status`, `peers`, `mempool`, `block`, `tx`, `stop`.
//!
//! Owns turning a node's answers into readable text; the connection itself is
//! `tinychain_rpc_client`'s (re-exported here). The rendering functions are pure,
//! so they are tested without a node; printing is left to the binary. It never
//! touches the data directory beyond finding the socket's path.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Value, json};
use tinychain_rpc_client::types::{
    BlockHeaderInfo, BlockInfo, BlockchainInfo, MempoolInfo, MiningInfo, TransactionInfo,
    TxLocation,
};
pub use tinychain_rpc_client::{Client, Error, Location, NodeFlags};

/// The current unix time, in seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A unix time as UTC in ISO 8601 (`2026-12-03T14:35:32Z`).
pub fn iso_time(unix: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `n` and a noun, plural unless `n` is one: "1 confirmation", "2 confirmations".
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

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
        render_peers(&peers, unix_now())
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

/// How long ago `then` (unix seconds) was, from `now`, in one short unit: `45s`,
/// `3m`, `2h`, `5d`; `-` if unknown.
pub fn age(then: Option<u64>, now: u64) -> String {
    let Some(then) = then else { return "-".to_owned() };
    let secs = now.saturating_sub(then);
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A byte count in a few characters: `812`, `12.3k`, `4.5M`, `1.2G`.
fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n < 1e3 => format!("{n}"),
        n if n < 1e6 => format!("{:.1}k", n / 1e3),
        n if n < 1e9 => format!("{:.1}M", n / 1e6),
        n => format!("{:.1}G", n / 1e9),
    }
}

/// The last `n` characters of a peer id, after `…`: enough to tell peers apart
/// and to find them in a log (which has the whole id).
fn short_id(id: &str, n: usize) -> String {
    let count = id.chars().count();
    if count <= n + 1 {
        return id.to_owned();
    }
    format!("…{}", id.chars().skip(count - n).collect::<String>())
}

/// Renders the `peers` table from `getpeerinfo`, in short columns like
/// `bitcoin-cli -netinfo` (fields a node does not report show `-`; `--json` has
/// everything, whole ids included). `now` is the unix time ages count from.
pub fn render_peers(peers: &[Value], now: u64) -> String {
    let titles = [
        "PEER", "DIR", "ADDRESS", "PING", "WAIT", "SEND", "RECV", "IN", "OUT", "CONN", "HEIGHT",
        "MESH", "AGE", "AGENT",
    ];
    let time = |p: &Value, name: &str| age(p.get(name).and_then(Value::as_u64), now);
    let count = |p: &Value, name: &str| {
        p.get(name).and_then(Value::as_u64).map_or_else(|| "-".to_owned(), bytes)
    };
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let direction = match p.get("direction").and_then(Value::as_str) {
                Some("inbound") => "in".to_owned(),
                Some("outbound") => "out".to_owned(),
                _ => field(p, "direction"),
            };
            let ms = |name: &str| {
                p.get(name)
                    .and_then(Value::as_f64)
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0}ms"))
            };
            vec![
                short_id(&field(p, "id"), 10),
                direction,
                field(p, "address"),
                ms("ping_ms"),
                ms("ping_wait_ms"),
                time(p, "last_send"),
                time(p, "last_recv"),
                count(p, "bytes_recv"),
                count(p, "bytes_sent"),
                field(p, "connections"),
                field(p, "height"),
                field(p, "mesh"),
                age(p.get("connected_since").and_then(Value::as_u64), now),
                field(p, "agent"),
            ]
        })
        .collect();
    let widths: Vec<usize> = titles
        .iter()
        .enumerate()
        .map(|(i, title)| {
            rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(title.len())
        })
        .collect();
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}", w = *w)).collect();
        let _ = writeln!(text, "{}", padded.join("  ").trim_end());
    };
    line(titles.to_vec());
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
         time           {} ({})\n\
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
        iso_time(u64::from(h.time)),
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
    // When it was mined: its block's time.
    let mined = match &tx.location {
        Some(TxLocation::Confirmed { blockhash, .. }) => {
            let header: BlockHeaderInfo =
                client.call("getblockheader", vec![json!(blockhash.to_string())])?;
            Some(header.time)
        }
        _ => None,
    };
    Ok(View { text: render_tx(&tx, mined), json })
}

/// Renders `tx`; `mined` is its block's time, if it is confirmed.
pub fn render_tx(tx: &TransactionInfo, mined: Option<u32>) -> String {
    let place = match &tx.location {
        Some(TxLocation::Mempool { fee }) => format!("in mempool, fee {fee}"),
        Some(TxLocation::Confirmed { blockhash, height, confirmations }) => format!(
            "mined in block {blockhash} at height {height}{}, {}",
            mined.map(|t| format!(" ({})", iso_time(u64::from(t)))).unwrap_or_default(),
            count(u64::from(*confirmations), "confirmation")
        ),
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

/// `stop`: asks the node to shut down, and waits (at most [`STOP_WAIT`]) until it
/// has: its data directory is free (so `inspect`, a restart or a backup can
/// follow at once), or, for a node whose directory this client does not know,
/// its socket no longer answers.
///
/// # Errors
///
/// See [`Error`].
pub fn stop(at: &Location) -> Result<View, Error> {
    let (mut client, _) = at.connect()?;
    let answer: Value = client.call("stop", Vec::new())?;
    drop(client);
    let end = std::time::Instant::now() + STOP_WAIT;
    let running = || {
        if crate::datadir::DataDir::is_held(&at.datadir, at.network) {
            return true;
        }
        std::os::unix::net::UnixStream::connect(&at.socket).is_ok()
    };
    while running() {
        if std::time::Instant::now() >= end {
            let text = format!(
                "asked to stop; still running after {} s ({})\n",
                STOP_WAIT.as_secs(),
                at.socket.display()
            );
            return Ok(View { text, json: json!({ "answer": answer, "stopped": false }) });
        }
        // Polling: the node's exit sends this client no signal.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(View { text: "stopped\n".to_owned(), json: json!({ "answer": answer, "stopped": true }) })
}

/// How long `stop` waits for the node to exit: the node's own shutdown limit
/// (30 s) and some.
pub const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(45);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_table_has_short_columns_ages_and_dashes() {
        let now = 1_800_000_000;
        let peers = vec![
            json!({ "id": "12D3KooWAbcdefghijklmnop", "height": 7,
                    "mesh": {"blocks": true, "txs": true}, "connected_since": now - 200 }),
            json!({ "id": "12D3KooWB", "height": null, "mesh": {"blocks": false, "txs": false},
                    "address": "/ip4/127.0.0.1/tcp/1", "direction": "outbound", "ping_ms": 3.4,
                    "connected_since": now - 7_300 }),
        ];
        let table = render_peers(&peers, now);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("PEER") && lines[0].contains("AGE"), "{table}");
        assert!(lines[1].starts_with("…ghijklmnop "), "a short id: {table}");
        assert!(lines[1].contains(" - ") && lines[1].contains(" 3m "), "{table}");
        assert!(lines[1].contains("blocks+txs"), "mesh topics: {table}");
        assert!(lines[2].contains(" out ") && lines[2].contains("/ip4/127.0.0.1/tcp/1"));
        assert!(lines[2].contains(" 3ms ") && lines[2].contains(" 2h "), "{table}");
        assert_eq!(render_peers(&[], now).lines().nth(1), Some("no peers connected"));
    }

    #[test]
    fn the_peer_table_shows_last_send_and_recv_as_ages_and_bytes_short() {
        let now = 1_796_000_000;
        let peers = vec![json!({
            "id": "12D3KooWA", "connections": 2, "last_recv": now - 3, "last_send": now - 150,
            "bytes_recv": 12_345, "bytes_sent": 4_500_000, "ping_wait_ms": 2_500.0,
        })];
        let table = render_peers(&peers, now);
        let header = table.lines().next().expect("a header");
        let row = table.lines().nth(1).expect("a row");
        for (title, shown) in [
            ("WAIT", "2500ms"),
            ("SEND", "2m"),
            ("RECV", "3s"),
            ("IN", "12.3k"),
            ("OUT", "4.5M"),
            ("CONN", "2"),
        ] {
            let at = header.find(&format!(" {title} ")).expect(title) + 1;
            assert_eq!(row[at..].split_whitespace().next(), Some(shown), "{title}: {table}");
        }
        assert_eq!(
            (bytes(999), bytes(1_000), bytes(2_000_000_000)),
            ("999".into(), "1.0k".into(), "2.0G".into())
        );
    }

    #[test]
    fn ages_take_one_short_unit() {
        let now = 1_000_000;
        assert_eq!(age(Some(now - 45), now), "45s");
        assert_eq!(age(Some(now - 181), now), "3m");
        assert_eq!(age(Some(now - 7_200), now), "2h");
        assert_eq!(age(Some(now - 5 * 86_400 - 1), now), "5d");
        assert_eq!(age(Some(now + 10), now), "0s", "a clock ahead is not negative");
        assert_eq!(age(None, now), "-");
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

    #[test]
    fn a_transaction_shows_its_block_time_and_counts_confirmations_in_words() {
        use tinychain_protocol::Txid;
        let txid: Txid = "11".repeat(32).parse().expect("a txid");
        let blockhash = "22".repeat(32).parse().expect("a hash");
        let mut tx = TransactionInfo {
            txid,
            size: 100,
            version: 1,
            locktime: 0,
            coinbase: true,
            vin: Vec::new(),
            vout: Vec::new(),
            hex: String::new(),
            location: Some(TxLocation::Confirmed { blockhash, height: 5, confirmations: 1 }),
        };
        let text = render_tx(&tx, Some(1_795_000_000));
        assert!(text.contains("at height 5 (2026-11-18T"), "{text}");
        assert!(text.contains(", 1 confirmation\n"), "{text}");
        tx.location = Some(TxLocation::Confirmed { blockhash, height: 5, confirmations: 2 });
        assert!(render_tx(&tx, None).contains(", 2 confirmations\n"));
        assert_eq!(iso_time(0), "1970-01-01T00:00:00Z");
    }
}
