//! Helpers for tests that run real `tinychain-node` processes.
//!
//! Owns finding the built binaries, starting a node with its log captured,
//! calling a node's RPC methods, and waiting for a log line or a condition with
//! a deadline (never a fixed sleep). [`netns`] builds networks of hosts out of
//! Linux network namespaces for the multi-host tests.

pub mod netns;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Returns the path of a workspace binary (`tinychain-node`, `tinychain-wallet`)
/// built next to the running test, building it first if it is missing or older
/// than its sources.
///
/// `cargo nextest run --workspace` builds both: Cargo builds a package's binaries
/// for its own integration tests, and `node` and `wallet-cli` have some. A
/// narrower run (`-p tinychain-tests`) may find one missing or stale: it is then
/// built once, under a lock shared by the test processes, with the same profile.
///
/// # Panics
///
/// If the binary cannot be built.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    let (package, sources) = binary_sources(name);
    if is_stale(&path, &sources) {
        // One build at a time: tests run in parallel processes.
        let lock = std::fs::File::create(dir.join(".tinychain-tests-build.lock"))
            .expect("the target directory is writable");
        lock.lock().expect("the build lock can be taken");
        if is_stale(&path, &sources) {
            build_binary(package, name, dir);
        }
    }
    assert!(path.exists(), "{} is still missing after building it", path.display());
    path
}

/// The package of a workspace binary and the source directories it is built from.
fn binary_sources(name: &str) -> (&'static str, Vec<PathBuf>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (package, own) = match name {
        "tinychain-node" => ("tinychain-node", "node"),
        "tinychain-wallet" => ("tinychain-wallet", "wallet-cli"),
        other => panic!("no workspace binary is called {other}"),
    };
    let sources = [own, "protocol", "rpc-client"]
        .iter()
        .flat_map(|crate_dir| {
            [root.join(crate_dir).join("src"), root.join(crate_dir).join("Cargo.toml")]
        })
        .chain([root.join("Cargo.lock")])
        .collect();
    (package, sources)
}

/// Tells whether `binary` is missing or older than a file under `sources`.
fn is_stale(binary: &Path, sources: &[PathBuf]) -> bool {
    let Ok(built) = binary.metadata().and_then(|m| m.modified()) else { return true };
    let mut pending: Vec<PathBuf> = sources.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(meta) = path.metadata() else { continue };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if meta.modified().is_ok_and(|changed| changed > built) {
            return true;
        }
    }
    false
}

/// Builds the binary `name` of `package` into the profile directory `dir` (`target/<profile>`).
fn build_binary(package: &str, name: &str, dir: &Path) {
    let target_dir = dir.parent().expect("target/<profile> has a parent");
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("{} is not a profile directory", dir.display()),
    };
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    eprintln!(
        "{name} is missing or older than its sources: cargo build -p {package} --profile {profile}"
    );
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", name, "--profile", profile, "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {name} failed");
}

/// A running node process whose log (stderr) is read line by line.
pub struct NodeProcess {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl NodeProcess {
    /// Starts `tinychain-node` with `args`.
    ///
    /// # Panics
    ///
    /// If the process cannot be started.
    pub fn start(args: &[&str]) -> NodeProcess {
        let mut command = Command::new(binary("tinychain-node"));
        command.args(args);
        NodeProcess::spawn(command)
    }

    /// Starts a prepared command (a node, perhaps behind a wrapper such as
    /// `ip netns exec`), logging at `info` unless the command sets `RUST_LOG`.
    ///
    /// # Panics
    ///
    /// If the process cannot be started.
    pub fn spawn(mut command: Command) -> NodeProcess {
        if !command.get_envs().any(|(k, _)| k == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tinychain-node starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProcess { child, lines, log: Vec::new() }
    }

    /// Waits until a log line contains `needle`, or panics after `deadline`.
    ///
    /// # Panics
    ///
    /// If the deadline passes or the process's log ends first.
    pub fn wait_for_log(&mut self, needle: &str, deadline: Duration) -> String {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        self.wait_for_new_log(needle, deadline)
    }

    /// Reads log lines for at most `wait`; returns the first (old or new) containing
    /// `needle`, or `None`.
    pub fn poll_log(&mut self, needle: &str, wait: Duration) -> Option<String> {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let end = Instant::now() + wait;
        while let Ok(line) = self.lines.recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.log.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    }

    /// Waits for the next log line (not one already read) containing `needle`.
    ///
    /// # Panics
    ///
    /// If the deadline passes or the process's log ends first.
    pub fn wait_for_new_log(&mut self, needle: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no log line with {needle:?} within {deadline:?}; log:\n{}",
                        self.log_text()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the node's log ended before {needle:?}; log:\n{}", self.log_text())
                }
            }
        }
    }

    /// Waits for a JSON log line (a node run with `--log-format json`) whose
    /// `message` is `message` and which `matches`; returns it. Lines read
    /// before count too.
    ///
    /// # Panics
    ///
    /// If the deadline passes or the process's log ends first.
    pub fn wait_for_event(
        &mut self,
        message: &str,
        deadline: Duration,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let found = |line: &str| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(|event| event["message"] == message && matches(event))
        };
        if let Some(event) = self.log.iter().find_map(|l| found(l)) {
            return event;
        }
        let end = Instant::now() + deadline;
        loop {
            let line = self.wait_for_new_log(
                &format!("\"message\":\"{message}\""),
                end.saturating_duration_since(Instant::now()),
            );
            if let Some(event) = found(&line) {
                return event;
            }
        }
    }

    /// Returns the JSON log lines read so far (lines that are not JSON are left out).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Returns the full listen multiaddr (with /p2p/) the node logged.
    ///
    /// # Panics
    ///
    /// If it has not logged one yet.
    pub fn listen_address(&self) -> String {
        let text = self
            .log
            .iter()
            .find(|l| l.contains("listening address="))
            .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("address=")))
            .map(str::to_string);
        let json = || {
            self.events()
                .into_iter()
                .find(|e| e["message"] == "listening")
                .and_then(|e| e["address"].as_str().map(str::to_string))
        };
        text.or_else(json).expect("the node logged its listen address")
    }

    /// Returns the log lines read so far.
    pub fn log_text(&self) -> String {
        self.log.join("\n")
    }

    /// Returns the process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit, at most `deadline`.
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent or the process outlives the deadline.
    pub fn terminate(mut self, deadline: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("the kill command runs");
        assert!(sent.success(), "kill -TERM failed");
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                return status;
            }
            assert!(Instant::now() < end, "the node did not stop within {deadline:?}");
            // Poll: the exit is the event, and there is no blocking wait with a timeout.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits for the process to exit, at most `deadline`;
    /// returns its status and its whole log.
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent or the process outlives the deadline.
    pub fn terminate_with_log(self, deadline: Duration) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("the kill command runs");
        assert!(sent.success(), "kill -TERM failed");
        self.wait_exit(deadline)
    }

    /// Waits for the process to exit by itself, at most `deadline`.
    ///
    /// # Panics
    ///
    /// If it outlives the deadline.
    pub fn wait_exit(mut self, deadline: Duration) -> (ExitStatus, String) {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait works") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.log.push(line);
                }
                return (status, self.log_text());
            }
            assert!(Instant::now() < end, "the node did not exit within {deadline:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tinychain-node` with `args` to completion.
///
/// # Panics
///
/// If the process cannot be started.
pub fn run_node(args: &[&str]) -> Output {
    Command::new(binary("tinychain-node"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("tinychain-node runs")
}

/// Calls `method` on the regtest node whose base data directory is `datadir`
/// (through `tinychain-node call`); returns the JSON result or the error text.
pub fn call(datadir: &str, method: &str, params: &[&str]) -> Result<serde_json::Value, String> {
    let mut args = vec!["call", "--datadir", datadir, "--network", "regtest", method];
    args.extend_from_slice(params);
    let out = run_node(&args);
    if out.status.success() {
        // A string result is printed as plain text, like bitcoin-cli does.
        Ok(serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
        }))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Checks `condition` until it returns `Some`, at most `deadline`; returns its value.
///
/// # Panics
///
/// If the deadline passes first; the message names `what`.
pub fn wait_until<T>(
    what: &str,
    deadline: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        // Polling: the conditions are other processes' states, with no event to wait on.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A regtest address for tests (private key 1's).
pub const REGTEST_ADDRESS: &str = "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r";

/// What `tinychain-node inspect` reports about a stopped node's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// The tip's height.
    pub height: u32,
    /// The tip's hash.
    pub tip: String,
    /// The UTXO set's digest.
    pub utxo_digest: String,
}

/// Runs `tinychain-node inspect` on a regtest data directory.
///
/// # Panics
///
/// If it fails (the store is inconsistent) or prints something unexpected.
pub fn inspect(datadir: &str) -> Inspected {
    let out = run_node(&["inspect", "--datadir", datadir, "--network", "regtest"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    let field = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("inspect printed no {key}: {stdout}"))
            .to_string()
    };
    Inspected {
        height: field("height").parse().expect("a height"),
        tip: field("tip"),
        utxo_digest: field("utxo_digest"),
    }
}

/// The arguments of `tinychain-node run` for a regtest node in `datadir` listening
/// on an ephemeral loopback port, followed by `extra`.
pub fn regtest_run_args<'a>(datadir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--datadir",
        datadir,
        "--network",
        "regtest",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ];
    args.extend_from_slice(extra);
    args
}

/// Returns the unix time, in seconds, of a log line's `timestamp` (RFC 3339
/// in UTC, as the node writes it: `2026-11-23T10:00:00.412345Z`).
pub fn unix_seconds(timestamp: &str) -> Option<f64> {
    let (date, time) = timestamp.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.splitn(3, ':');
    let (h, min) = (hms.next()?.parse::<i64>().ok()?, hms.next()?.parse::<i64>().ok()?);
    let sec: f64 = hms.next()?.parse().ok()?;
    // Days from 1970-01-01 to y-m-d (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

/// Returns the current unix time in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_timestamps_read_as_unix_time() {
        assert_eq!(super::unix_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(super::unix_seconds("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(super::unix_seconds("2026-12-03T14:48:07Z"), Some(1_796_309_287.0));
        assert_eq!(super::unix_seconds("yesterday"), None);
    }
}
