//! How long a cut cable takes to be noticed, and to heal.
//!
//! Two nodes on two emulated hosts (network namespaces, see
//! `tinychain_tests::netns`), B bootstrapping from A. B's cable is pulled
//! again and again; for each cut the bench reads, from each node's JSON log,
//! the time from pulling the cable to its `connection closed` line, then plugs
//! the cable back and times until both list each other in `getpeerinfo`
//! again. Cuts start at different points of the ping schedule.
//!
//! Needs root and iproute2. Run:
//! `cargo bench -p tinychain-tests --bench cut_detection [-- CUTS [PEER_TIMEOUT_SECS]]`
//! (defaults: 10 cuts, the node's default `p2p.peer_timeout_secs`).

use std::time::Duration;

use tinychain_tests::netns::Lab;
use tinychain_tests::{NodeProcess, binary, call, unix_now, unix_seconds, wait_until};

const DEADLINE: Duration = Duration::from_secs(180);
const PORT: u16 = 19444;

fn start(lab: &Lab, datadir: &str, i: usize, extra: &[String]) -> NodeProcess {
    let mut command = lab.command(i, &binary("tinychain-node"));
    let listen = format!("/ip4/{}/tcp/{PORT}", lab.ip(i));
    command.args(["run", "--datadir", datadir, "--network", "regtest", "--listen", &listen]);
    command.args(["--log-format", "json"]).args(extra);
    let mut node = NodeProcess::spawn(command);
    node.wait_for_event("RPC listening", DEADLINE, |_| true);
    node.wait_for_event("listening", DEADLINE, |_| true);
    node
}

fn lists(datadir: &str, peer: &str) -> bool {
    call(datadir, "getpeerinfo", &[])
        .ok()
        .and_then(|peers| peers.as_array().map(|p| p.iter().any(|p| p["id"] == peer)))
        .unwrap_or(false)
}

/// The median and the largest of `samples`.
fn p50_max(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let cuts: usize = args.first().map_or(10, |a| a.parse().expect("CUTS is a number"));
    let timeout: Vec<String> =
        args.get(1).map(|t| vec!["--peer-timeout".to_owned(), t.clone()]).unwrap_or_default();
    let Some(lab) = Lab::new(2) else { return };
    let dirs: Vec<tempfile::TempDir> =
        (0..2).map(|_| tempfile::tempdir().expect("a dir")).collect();
    let path = |i: usize| dirs[i].path().to_str().expect("utf-8").to_owned();
    let mut a = start(&lab, &path(0), 0, &timeout);
    let a_addr = a.listen_address();
    let mut b_args = timeout.clone();
    b_args.extend(["--bootstrap".to_owned(), a_addr.clone()]);
    let mut b = start(&lab, &path(1), 1, &b_args);
    let ids = [a_addr.rsplit('/').next().expect("a peer id").to_owned(), b.listen_address()];
    let ids = [ids[0].clone(), ids[1].rsplit('/').next().expect("a peer id").to_owned()];
    let connected = || lists(&path(0), &ids[1]) && lists(&path(1), &ids[0]);
    wait_until("the nodes to connect", DEADLINE, || connected().then_some(()));

    let (mut detected, mut healed) = (Vec::new(), Vec::new());
    eprintln!("cut  A closed   B closed   reconnected  (seconds after the cut / the plug)");
    for n in 0..cuts {
        // Start each cut at another point of the ping schedule (a quarter of the bound).
        std::thread::sleep(Duration::from_millis(700 * (n as u64 % 7) + 200));
        lab.unplug(1);
        let cut = unix_now();
        let after = |node: &mut NodeProcess, peer: &str| {
            let closed = node.wait_for_event("connection closed", DEADLINE, |e| {
                e["peer"] == peer && e["timestamp"].as_str().and_then(unix_seconds) > Some(cut)
            });
            let at = closed["timestamp"].as_str().and_then(unix_seconds).expect("a timestamp");
            (at - cut, closed["reason"].as_str().unwrap_or("?").to_owned())
        };
        let (on_a, reason_a) = after(&mut a, &ids[1]);
        let (on_b, reason_b) = after(&mut b, &ids[0]);
        lab.plug(1);
        let plugged = unix_now();
        wait_until("the nodes to reconnect", DEADLINE, || connected().then_some(()));
        let back = unix_now() - plugged;
        eprintln!("{n:>3}  {on_a:>6.1} {reason_a:<12} {on_b:>6.1} {reason_b:<12} {back:>6.1}");
        detected.extend([on_a, on_b]);
        healed.push(back);
    }
    let (p50, max) = p50_max(&mut detected);
    eprintln!("cut to detection over {cuts} cuts, both sides: p50 {p50:.1} s, max {max:.1} s");
    let (p50, max) = p50_max(&mut healed);
    eprintln!(
        "plug to reconnected (getpeerinfo, polled every 0.1 s): p50 {p50:.1} s, max {max:.1} s"
    );
}
