//! What each kind of attack costs a node, measured from outside (issue 17's
//! figures, reported in docs/p2p.md).
//!
//! A release `tinychain-node` process (A) holds a chain of regtest blocks.
//! For each attack, `hostile-peer` (this crate's binary, an independent libp2p
//! client) attacks A for a while, coming back with a new identity after each
//! ban; a few seconds in, a fresh honest node syncs A's chain. Measured: the
//! inputs the attacker got in, how soon each identity was dropped, A's CPU
//! time (utime + stime from /proc) and peak RSS (VmHWM, reset before each
//! run through /proc/<pid>/clear_refs) over the run, and the honest node's
//! sync rate, against the same run without an attacker.
//!
//! Needs the node binary of the same profile first, and Linux:
//! `cargo build --release -p tinychain-node && cargo bench -p tinychain-tests --bench attacks`
//! (`-- malformed` or any other attack names run only those). With a debug
//! build (`cargo build -p tinychain-node && cargo bench --profile dev -p
//! tinychain-tests --bench attacks`) the node is slower, and so are the figures.

use std::time::{Duration, Instant};

use tinychain_tests::{HostilePeer, NodeProcess, REGTEST_ADDRESS, call, regtest_run_args, summary};

/// Blocks in A's chain: what the honest node syncs.
const BLOCKS: u32 = 2_000;
/// How long each attack lasts.
const ATTACK: Duration = Duration::from_secs(30);
/// When, into the attack, the honest node starts syncing.
const SYNC_AFTER: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(300);

const ATTACKS: [&str; 6] =
    ["malformed", "flood", "oversized-gossip", "junk-gossip", "low-work", "invalid-ancestor"];

/// A's CPU seconds so far (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("getconf runs");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

/// A's peak resident set since the last reset, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn reset_peak_rss(pid: u32) {
    // "5" resets the peak RSS (Linux 4.0 and later).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// One measured run: attack `attack` (none: a quiet baseline) on A.
struct Figures {
    inputs: u64,
    identities: u64,
    dropped: u64,
    median_ms_to_drop: Option<u64>,
    cpu_per_minute: f64,
    peak_rss_mib: f64,
    sync_blocks_per_s: f64,
}

fn run(a: &NodeProcess, a_addr: &str, attack: Option<&str>) -> Figures {
    let pid = a.id();
    reset_peak_rss(pid);
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let seconds = ATTACK.as_secs().to_string();
    let hostile = attack.map(|attack| {
        HostilePeer::start(&[
            "--connect",
            a_addr,
            "--attack",
            attack,
            "--duration",
            &seconds,
            "--reconnect",
        ])
    });
    while start.elapsed() < SYNC_AFTER {
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let honest_dir = dir.path().to_str().expect("utf-8").to_string();
    let synced = Instant::now();
    let mut honest = NodeProcess::start(&regtest_run_args(&honest_dir, &["--bootstrap", a_addr]));
    honest.wait_for_log(&format!("sync end height={BLOCKS}"), DEADLINE);
    let sync_blocks_per_s = f64::from(BLOCKS) / synced.elapsed().as_secs_f64();
    drop(honest);
    let report = hostile.map(HostilePeer::report);
    while start.elapsed() < ATTACK {
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_per_minute = (cpu_seconds(pid) - cpu_before) / elapsed * 60.0;
    let peak_rss_mib = peak_rss_mib(pid);
    let s = report.as_deref().map(summary);
    let field = |name: &str| s.and_then(|s| s[name].as_u64());
    Figures {
        inputs: field("inputs").unwrap_or(0),
        identities: field("identities").unwrap_or(0),
        dropped: field("dropped").unwrap_or(0),
        median_ms_to_drop: field("median_ms_to_drop"),
        cpu_per_minute,
        peak_rss_mib,
        sync_blocks_per_s,
    }
}

fn main() {
    let chosen: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let a_dir = dir.path().to_str().expect("utf-8").to_string();
    let mut a = NodeProcess::start(&regtest_run_args(&a_dir, &[]));
    a.wait_for_log("listening address=", DEADLINE);
    let a_addr = a.listen_address();
    let t = Instant::now();
    call(&a_dir, "generatetoaddress", &[&BLOCKS.to_string(), REGTEST_ADDRESS]).expect("mines");
    eprintln!("attacks: A mined {BLOCKS} blocks in {:.1?}", t.elapsed());

    let quiet = run(&a, &a_addr, None);
    eprintln!(
        "attacks: no attack: A {:.2} CPU-s/min, peak RSS {:.1} MiB; honest sync {:.0} blocks/s",
        quiet.cpu_per_minute, quiet.peak_rss_mib, quiet.sync_blocks_per_s
    );
    eprintln!(
        "\n| attack | inputs in {} s | identities (dropped) | median time to ban | A's CPU-s per minute (quiet: {:.2}) | A's peak RSS (quiet: {:.1} MiB) | honest sync (quiet: {:.0} blocks/s) |",
        ATTACK.as_secs(),
        quiet.cpu_per_minute,
        quiet.peak_rss_mib,
        quiet.sync_blocks_per_s
    );
    eprintln!("|---|---|---|---|---|---|---|");
    for attack in ATTACKS {
        if !chosen.is_empty() && !chosen.iter().any(|c| c == attack) {
            continue;
        }
        let f = run(&a, &a_addr, Some(attack));
        let ban = f.median_ms_to_drop.map_or_else(|| "never".to_owned(), |ms| format!("{ms} ms"));
        eprintln!(
            "| {attack} | {} | {} ({}) | {ban} | {:.2} | {:.1} MiB | {:.0} blocks/s ({:.0} %) |",
            f.inputs,
            f.identities,
            f.dropped,
            f.cpu_per_minute,
            f.peak_rss_mib,
            f.sync_blocks_per_s,
            100.0 * f.sync_blocks_per_s / quiet.sync_blocks_per_s
        );
    }
    // A must have come through it all.
    let height = call(&a_dir, "getblockcount", &[]).expect("A answers");
    assert_eq!(height, u64::from(BLOCKS), "A's chain is intact");
    drop(a);
}
