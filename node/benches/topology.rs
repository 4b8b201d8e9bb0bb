//! `tinychain-node topology` on a day of logs from 20 nodes: lines per second and peak memory.
//!
//! Writes a day of JSON logs (docs/p2p.md's event table, the contract's fields)
//! for 20 nodes into a temporary directory, streamed to disk so the generator
//! holds nothing: every node keeps 8 links, each reconnecting every 2 hours
//! (connections, identify, subscriptions, mesh joins and leaves), two miners
//! make a block a minute between them (`block mined`, the miner's `mining`
//! lines every 10 s), and every node logs each block's `new tip` a few
//! milliseconds to a second after it was mined. `chatty` adds a `peer status`
//! line per peer every 10 s (what an info-level log held before those went to
//! debug): about 25 times the lines. Then it rebuilds the model from the files,
//! as the command does, and renders text and HTML, printing lines per second and
//! the process's peak resident memory (VmHWM).
//!
//! `cargo bench -p tinychain-node --bench topology` (add `-- chatty` for the heavy day).

#![allow(clippy::print_stdout)] // a bench binary reports on stdout

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use tinychain_node::topology::{self, Format, time::Moment, time::Window};

const NODES: usize = 20;
const LINKS_PER_NODE: usize = 4; // each node dials 4: about 8 links per node
const DAY_S: i64 = 86_400;
const DAY_START: i64 = 1_796_256_000; // 2026-12-03T00:00:00Z

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn id(i: usize) -> String {
    format!("12D3KooWBench{i:040}")
}

fn ts(us: i64) -> String {
    topology::time::Time::from_micros(us).to_string()
}

/// One node's day, written in time order.
fn write_node(dir: &Path, i: usize, chatty: bool) -> std::io::Result<u64> {
    let mut out = BufWriter::new(std::fs::File::create(dir.join(format!("node{i}.log")))?);
    let me = id(i);
    let mut lines: Vec<(i64, String)> = Vec::new();
    let mut rng = Lcg(i as u64 + 1);
    let t0 = DAY_START * 1_000_000;
    let head = |t: i64, msg: &str| {
        format!(
            r#"{{"timestamp":"{}","level":"INFO","target":"tinychain_node::p2p","message":"{msg}","node":"{me}","node_name":"node{i}""#,
            ts(t)
        )
    };
    lines.push((
        t0,
        format!(
            r#"{},"network":"regtest","peer_id":"{me}","height":0,"tip":"00"}}"#,
            head(t0, "node started")
        ),
    ));
    lines.push((
        t0 + 1,
        format!(
            r#"{},"address":"/ip4/10.0.0.{i}/tcp/19444/p2p/{me}"}}"#,
            head(t0 + 1, "listening")
        ),
    ));
    // Links: node i dials the next four; each link goes down and up every 2 hours.
    let mut conn_id = 0;
    let peers: Vec<(usize, bool)> = (1..=LINKS_PER_NODE)
        .map(|k| ((i + k) % NODES, true))
        .chain((1..=LINKS_PER_NODE).map(|k| ((i + NODES - k) % NODES, false)))
        .collect();
    for (peer, outbound) in &peers {
        let pid = id(*peer);
        let (dialer, listener) = if *outbound { (i, *peer) } else { (*peer, i) };
        let mut t = t0 + 1_000_000 + (dialer * 7 + listener) as i64 * 10_000;
        while t < t0 + DAY_S * 1_000_000 {
            conn_id += 1;
            let dir = if *outbound { "outbound" } else { "inbound" };
            let addr = if *outbound {
                format!("/ip4/10.0.0.{peer}/tcp/19444")
            } else {
                format!("/ip4/10.0.0.{peer}/tcp/{}", 40_000 + conn_id)
            };
            lines.push((t, format!(r#"{},"peer":"{pid}","connection_id":{conn_id},"address":"{addr}","direction":"{dir}","bootstrap":false}}"#, head(t, "connection established"))));
            lines.push((t + 5_000, format!(r#"{},"peer":"{pid}","agent":"tinychain-node/0.1.0","protocol":"tinychain/x","listen":["/ip4/10.0.0.{peer}/tcp/19444"]}}"#, head(t + 5_000, "identify received"))));
            for topic in ["blocks/2", "txs/1"] {
                lines.push((
                    t + 6_000,
                    format!(
                        r#"{},"peer":"{pid}","topic":"/tinychain/x/{topic}"}}"#,
                        head(t + 6_000, "peer subscribed")
                    ),
                ));
                lines.push((
                    t + 1_000_000,
                    format!(
                        r#"{},"peer":"{pid}","topic":"/tinychain/x/{topic}"}}"#,
                        head(t + 1_000_000, "mesh join")
                    ),
                ));
            }
            let up = 7_200_000_000 - (rng.next() % 600_000_000) as i64;
            let down = t + up;
            if chatty {
                let mut s = t + 10_000_000;
                while s < down {
                    lines.push((
                        s,
                        format!(
                            r#"{},"peer":"{pid}","height":1,"tip":"00"}}"#,
                            head(s, "peer status")
                        ),
                    ));
                    s += 10_000_000;
                }
            }
            for topic in ["blocks/2", "txs/1"] {
                lines.push((
                    down - 1,
                    format!(
                        r#"{},"peer":"{pid}","topic":"/tinychain/x/{topic}"}}"#,
                        head(down - 1, "mesh leave")
                    ),
                ));
            }
            lines.push((down, format!(r#"{},"peer":"{pid}","connection_id":{conn_id},"address":"{addr}","direction":"{dir}","reason":"ping timeout","connections_left":0}}"#, head(down, "connection closed"))));
            t = down + 2_000_000 + (rng.next() % 10_000_000) as i64;
        }
    }
    // A block a minute from nodes 0 and 1 in turn; everyone's new tip shortly after.
    for b in 0..(DAY_S / 60) {
        let mined = t0 + 30_000_000 + b * 60_000_000;
        let hash = format!("{:064x}", b + 1);
        let miner = (b % 2) as usize;
        let t = if miner == i { mined } else { mined + 5_000 + (rng.next() % 1_000_000) as i64 };
        if miner == i {
            lines.push((
                t,
                format!(r#"{},"hash":"{hash}","height":{}}}"#, head(t, "block mined"), b + 1),
            ));
        }
        lines.push((
            t + 100,
            format!(
                r#"{},"hash":"{hash}","height":{},"disconnected":0}}"#,
                head(t + 100, "new tip"),
                b + 1
            ),
        ));
    }
    if i < 2 {
        let mut t = t0 + 10_000_000;
        while t < t0 + DAY_S * 1_000_000 {
            lines.push((t, format!(r#"{},"hash_rate":120000,"height":1}}"#, head(t, "mining"))));
            t += 10_000_000;
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    for (_, line) in &lines {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(lines.len() as u64)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let chatty = std::env::args().any(|a| a == "chatty");
    let dir = tempfile::tempdir()?;
    let mut lines = 0;
    for i in 0..NODES {
        lines += write_node(dir.path(), i, chatty)?;
    }
    let bytes: u64 = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let before = peak_rss_mib();
    println!(
        "{} day: {NODES} nodes, {lines} lines, {:.1} MiB of logs (peak RSS so far {before:.1} MiB)",
        if chatty { "chatty" } else { "quiet" },
        bytes as f64 / 1048576.0
    );
    let started = Instant::now();
    let model = topology::read(&[dir.path().to_path_buf()], Window::default())?;
    let read = started.elapsed().as_secs_f64();
    let text = topology::render(&model, Format::Text, Moment::End)?;
    let html = topology::render(&model, Format::Html, Moment::End)?;
    let all = started.elapsed().as_secs_f64();
    println!(
        "read and rebuilt in {read:.2} s ({:.0} lines/s); with text ({} KiB) and HTML ({} KiB): {all:.2} s; \
         {} links, {} blocks, propagation p50 {:.0} ms; peak RSS {:.1} MiB",
        lines as f64 / read,
        text.len() / 1024,
        html.len() / 1024,
        model.links.len(),
        model.blocks.len(),
        model.propagation.p50_ms.unwrap_or(0.0),
        peak_rss_mib()
    );
    Ok(())
}
