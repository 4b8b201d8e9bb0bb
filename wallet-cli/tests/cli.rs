//! The wallet binary as a user runs it, without a node: keys, the wallet file,
//! and finding the node (flags, the data directory's `tinychain.toml`, the error
//! that names the socket it tried). Tests with a node are in `tests/`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn wallet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinychain-wallet"))
        .args(args)
        .env_remove("TINYCHAIN_DATADIR")
        .env_remove("TINYCHAIN_NETWORK")
        .env_remove("TINYCHAIN_RPC_SOCKET")
        .env_remove("TINYCHAIN_WALLET")
        .env_remove("TINYCHAIN_CONFIG")
        .env("TINYCHAIN_WALLET_PASSPHRASE", "a test passphrase")
        .output()
        .expect("tinychain-wallet runs")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn keygen_prints_a_key_of_the_network_asked_for() {
    let text = stdout(&wallet(&["keygen", "--network", "regtest"]));
    let address = field(&text, "address");
    assert!(address.starts_with('m') || address.starts_with('n'), "{text}");
    assert!(field(&text, "wif").starts_with('c'), "{text}");
    let text = stdout(&wallet(&["keygen", "--network", "main"]));
    assert!(field(&text, "address").starts_with('1'), "{text}");
}

#[test]
fn create_writes_a_private_file_and_never_overwrites_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let datadir = dir.path().to_str().expect("utf-8");
    let text = stdout(&wallet(&["create", "--datadir", datadir, "--network", "regtest"]));
    let file = dir.path().join("regtest/wallet.json");
    assert!(text.contains(&file.display().to_string()), "{text}");
    let mode = std::fs::metadata(&file).expect("created").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&file).expect("reads");
    let again = wallet(&["create", "--datadir", datadir, "--network", "regtest"]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read(&file).expect("reads"), before, "the file was touched");
}

#[test]
fn the_data_directorys_config_file_names_the_network() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("tinychain.toml"), "network = \"regtest\"\n").expect("writes");
    let datadir = dir.path().to_str().expect("utf-8");
    let text = stdout(&wallet(&["create", "--datadir", datadir]));
    assert!(dir.path().join("regtest/wallet.json").is_file(), "{text}");
    let address = field(&text, "address");
    assert!(address.starts_with('m') || address.starts_with('n'), "{text}");
}

#[test]
fn without_a_node_each_command_names_the_socket_it_tried() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let datadir = dir.path().to_str().expect("utf-8");
    stdout(&wallet(&["create", "--datadir", datadir, "--network", "regtest"]));
    let socket = Path::new(datadir).join("regtest/rpc.sock");
    let txid = "00".repeat(32);
    for command in [
        &["balance"][..],
        &["utxos"],
        &["history"],
        &["status", &txid],
        &["send", "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r", "1"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--datadir", datadir, "--network", "regtest"]);
        let out = wallet(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command:?} succeeded without a node");
        assert_eq!(stderr.lines().count(), 1, "{command:?}: {stderr}");
        assert!(stderr.contains(&socket.display().to_string()), "{command:?}: {stderr}");
        assert!(stderr.contains("--datadir"), "{command:?}: {stderr}");
    }
}
