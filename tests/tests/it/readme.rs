//! README.md's commands, run as written: the quick start, the walkthrough and
//! the Wallet section, so the README cannot drift from the programs.
//!
//! The blocks to run are the ```sh blocks after a `<!-- readme-test: NAME -->`
//! comment. Each part runs in bash (`set -euo pipefail`) in a fresh directory,
//! inside a network namespace of its own (the README listens on fixed ports),
//! with the built binaries first on `PATH`. The only rewriting: the quick
//! start's `cargo run --release -p tinychain-node --` becomes the built binary.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tinychain_tests::netns::Lab;
use tinychain_tests::{NodeProcess, binary, wait_until};

const DEADLINE: Duration = Duration::from_secs(60);

/// The README's text.
fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    std::fs::read_to_string(path).expect("README.md is readable")
}

/// The ```sh blocks marked `<!-- readme-test: NAME -->`, in order.
fn blocks(name: &str) -> Vec<String> {
    let marker = format!("<!-- readme-test: {name} -->");
    let text = readme();
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != marker {
            continue;
        }
        assert_eq!(lines.next().map(str::trim), Some("```sh"), "{marker} is not before a sh block");
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        found.push(body.join("\n"));
    }
    assert!(!found.is_empty(), "README.md has no block marked {marker}");
    found
}

/// Kills every process left in a namespace when the test ends, however it ends.
struct Reaper<'a>(&'a Lab);

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0.netns(0)]).output() else {
            return;
        };
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
}

/// What a script printed.
struct Output {
    stdout: String,
}

/// Runs `script` with bash in `dir`, inside the lab's host 0. Its output goes to
/// files, not pipes: nodes it starts in the background keep what they inherit.
fn run_script(lab: &Lab, dir: &Path, script: &str) -> Output {
    let bin_dir = binary("tinychain-node").parent().expect("a directory").to_owned();
    let wallet = binary("tinychain-wallet");
    assert_eq!(wallet.parent(), Some(bin_dir.as_path()));
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = lab.command(0, Path::new("bash"));
    command
        .args(["-c", &format!("set -euo pipefail\n{script}")])
        .current_dir(dir)
        .env("PATH", path)
        .env("RUST_LOG", "info");
    for var in
        ["TINYCHAIN_DATADIR", "TINYCHAIN_NETWORK", "TINYCHAIN_RPC_SOCKET", "TINYCHAIN_CONFIG"]
    {
        command.env_remove(var);
    }
    let (stdout, stderr) = (dir.join("script.stdout"), dir.join("script.stderr"));
    let file = |path: &Path| std::fs::File::create(path).expect("the directory is writable");
    command.stdout(file(&stdout)).stderr(file(&stderr));
    let status = command.status().expect("bash runs");
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        status.success(),
        "the README's commands failed ({status}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        read(&stdout),
        read(&stderr)
    );
    Output { stdout: read(&stdout) }
}

fn height(datadir: &Path) -> Option<u64> {
    let info = tinychain_tests::call(datadir.to_str()?, "getblockchaininfo", &[]).ok()?;
    info["blocks"].as_u64()
}

#[test]
fn the_quick_start_mines_about_a_block_a_second() {
    let Some(lab) = Lab::new(1) else { return };
    let _reaper = Reaper(&lab);
    let dir = tempfile::tempdir().expect("temp dir");
    let [command] = blocks("quickstart").try_into().expect("one quick-start block");
    let command = command.replace(
        "cargo run --release -p tinychain-node --",
        binary("tinychain-node").to_str().expect("utf-8"),
    );
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut spawn = lab.command(0, Path::new(words[0]));
    spawn.args(&words[1..]).current_dir(dir.path());
    let mut node = NodeProcess::spawn(spawn);
    node.wait_for_log("new tip", DEADLINE);
    let first = Instant::now();
    for _ in 0..3 {
        node.wait_for_new_log("new tip", DEADLINE);
    }
    // Three rests of a second between four blocks: paced, not thousands a second.
    let took = first.elapsed();
    assert!(took >= Duration::from_millis(2_500), "{took:?}:\n{}", node.log_text());
    assert!(dir.path().join("tinychain-data/regtest/chain.redb").exists());
    let log = node.log_text();
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
    assert!(node.terminate(Duration::from_secs(10)).success());
}

#[test]
fn the_walkthrough_runs_as_written_and_the_second_node_follows_the_miner() {
    let Some(lab) = Lab::new(1) else { return };
    let _reaper = Reaper(&lab);
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let out = run_script(&lab, dir.path(), &blocks("walkthrough").join("\n"));
    let stdout = out.stdout;
    assert!(stdout.contains("\naddress ") || stdout.starts_with("address "), "{stdout}");
    assert!(stdout.contains("getaddressutxos"), "help lists the methods: {stdout}");
    // B, knowing only A, follows it while it mines: within seconds of the start.
    let (a, b) = (dir.path().join("tc/a"), dir.path().join("tc/b"));
    let target =
        wait_until("the miner to mine a few blocks", DEADLINE, || height(&a).filter(|h| *h >= 3));
    wait_until("node B to reach the miner's height", Duration::from_secs(20), || {
        height(&b).filter(|h| *h >= target)
    });
    eprintln!("B reached height {target} {:?} after the walkthrough started", started.elapsed());
    let stdout = run_script(&lab, dir.path(), &blocks("walkthrough-end").join("\n")).stdout;
    assert_eq!(stdout.matches("stopped").count(), 2, "{stdout}");
    assert!(stdout.contains("utxo_digest "), "inspect ran on the stopped node: {stdout}");
    let log = std::fs::read_to_string(dir.path().join("tc/b.log")).expect("B's log");
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
}

#[test]
fn the_wallet_section_runs_as_written() {
    let Some(lab) = Lab::new(1) else { return };
    let _reaper = Reaper(&lab);
    let dir = tempfile::tempdir().expect("temp dir");
    let stdout = run_script(&lab, dir.path(), &blocks("wallet").join("\n")).stdout;
    for shown in [
        "confirmed                 1550.00000000",
        "immature coinbase          450.00000000  (spendable after 10 confirmations)",
        "total                     2000.00000000",
        "sent 1337.00000000 to n35RVEov7u1YHh9VNw9njHKSDEE243u3Dy",
        " in mempool (fee ",
        "WRITE THIS DOWN",
        "replaced ",
        " at height 41 with 1 confirmation\n",
        "stopped",
    ] {
        assert!(stdout.contains(shown), "{shown:?} is not in the output:\n{stdout}");
    }
}
