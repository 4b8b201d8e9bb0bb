//! The wallet's seed and file against a real node: restore from the seed phrase with
//! the same balance and history, encryption at rest and its passphrase, and the
//! in-place upgrade of a version 1 file.

use std::io::Write as _;
use std::process::Stdio;

use serde_json::Value;
use tinychain_tests::REGTEST_ADDRESS;

use crate::wallet::{
    COIN, PASSPHRASE, belushis, call, refused, start, wallet, wallet_command, wallet_json,
    wallet_refused,
};

/// Runs `restore` with `phrase` on standard input.
pub(crate) fn restore(datadir: &str, phrase: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["restore"];
    args.extend_from_slice(extra);
    let mut child = wallet_command(datadir, &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tinychain-wallet runs");
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(phrase.as_bytes()).expect("writes the phrase");
    drop(stdin);
    child.wait_with_output().expect("finishes")
}

fn address(json: &Value) -> String {
    json["address"].as_str().expect("an address").to_string()
}

/// A wallet's balance, history and coins, as the node sees them.
fn snapshot(datadir: &str) -> (Value, Value, Vec<String>) {
    let mut coins: Vec<String> = wallet_json(datadir, &["utxos"])
        .as_array()
        .expect("rows")
        .iter()
        .map(|c| format!("{}:{} {}", c["txid"], c["vout"], c["belushis"]))
        .collect();
    coins.sort();
    (wallet_json(datadir, &["balance"]), wallet_json(datadir, &["history"]), coins)
}

#[test]
fn a_wallet_restored_from_its_seed_phrase_has_the_same_balance_and_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    let (_node, _) = start(&d, &[]);
    let created = wallet_json(&d, &["create"]);
    let phrase = created["mnemonic"].as_str().expect("a phrase").to_string();
    assert_eq!(phrase.split(' ').count(), 12);
    let first = address(&created);
    // Receive addresses 1 to 6; only 0, 2 and 6 will be paid (gaps of 1 and 3).
    let receive: Vec<String> =
        (1..=6).map(|_| address(&wallet_json(&d, &["new-address"]))).collect();
    call(&d, "generatetoaddress", &["12", &first]);
    call(&d, "generatetoaddress", &["10", REGTEST_ADDRESS]);
    // Pay the wallet's own addresses 2 and 6 and someone else; each send makes change.
    for (to, amount) in
        [(&receive[1], "3"), (&receive[5], "2.5"), (&REGTEST_ADDRESS.to_string(), "7")]
    {
        wallet_json(&d, &["send", to, amount]);
        call(&d, "generatetoaddress", &["1", REGTEST_ADDRESS]);
    }
    // A payment still waiting in the mempool comes back too.
    let pending = wallet_json(&d, &["send", REGTEST_ADDRESS, "1.25"]);
    let before = snapshot(&d);
    assert_eq!(before.1.as_array().expect("rows").len(), 12 + 4);
    let file = dir.path().join("regtest").join("wallet.json");

    // A gap limit of 2 stops before address 6 (addresses 3 to 5 are unused).
    std::fs::remove_file(&file).expect("deleted");
    let out = restore(&d, &format!("  {}\n", phrase.to_uppercase()), &["--gap-limit", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let short = snapshot(&d);
    assert!(belushis(&short.0["total"]) < belushis(&before.0["total"]));

    std::fs::remove_file(&file).expect("deleted");
    let out = restore(&d, &phrase, &["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["receive_used"], 7, "addresses 0 to 6");
    assert_eq!(report["change_used"], 4, "one change address per send");
    assert_eq!(snapshot(&d), before, "same balance, history and coins");
    let history = wallet_json(&d, &["history"]);
    let row = history
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["txid"] == pending["txid"])
        .expect("the waiting payment is listed");
    assert_eq!((row["kind"].as_str(), row["status"].as_str()), (Some("sent"), Some("mempool")));
    assert_eq!(belushis(&row["amount"]), 125 * COIN / 100);
    assert_eq!(row["fee"], pending["fee"]);
    // The restored wallet goes on from where the addresses stop, and can spend.
    let next = wallet_json(&d, &["new-address"]);
    assert_eq!(next["path"], "m/44'/1'/0'/0/7");
    wallet_json(&d, &["send", REGTEST_ADDRESS, "1"]);

    // A bad phrase is refused with the reason, and no file is written.
    std::fs::remove_file(&file).expect("deleted");
    let bad = phrase.replacen(phrase.split(' ').next().expect("a word"), "zzz", 1);
    let err = refused(restore(&d, &bad, &[]), &["restore"]);
    assert!(err.contains("word 1 is not in the English list"), "{err}");
    assert!(!file.exists());
}

#[test]
fn the_wallet_file_is_encrypted_and_only_spending_asks_for_the_passphrase() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    let (_node, _) = start(&d, &[]);
    let pass_file = dir.path().join("passphrase");
    std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).expect("writes");
    let pass = pass_file.to_str().expect("utf-8");
    let created = wallet_json(&d, &["create", "--words", "24", "--passphrase-file", pass]);
    let phrase = created["mnemonic"].as_str().expect("a phrase").to_string();
    assert_eq!(phrase.split(' ').count(), 24);
    let text = String::from_utf8_lossy(&wallet(&d, &["show-mnemonic"]).stdout).to_string();
    assert!(text.contains("WRITE THIS DOWN") && text.contains(" 24. "), "{text}");
    let first = address(&created);
    call(&d, "generatetoaddress", &["11", &first]);
    let wif = wallet_json(&d, &["export-key", &first])["wif"].as_str().expect("wif").to_string();

    let file = dir.path().join("regtest").join("wallet.json");
    let bytes = std::fs::read(&file).expect("reads");
    let contents = String::from_utf8_lossy(&bytes).to_lowercase();
    assert!(!contents.contains(&wif.to_lowercase()), "the WIF is not in the file");
    for window in phrase.split(' ').collect::<Vec<_>>().windows(2) {
        assert!(!contents.contains(&window.join(" ")), "seed words in the file");
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Reading needs no passphrase.
    for args in [["balance"], ["addresses"], ["history"], ["utxos"]] {
        let out = wallet_command(&d, &args)
            .env_remove("TINYCHAIN_WALLET_PASSPHRASE")
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Spending and secrets do; none given and no terminal to ask on is a clear error.
    for args in
        [vec!["send", REGTEST_ADDRESS, "1"], vec!["export-key", &first], vec!["show-mnemonic"]]
    {
        let out = wallet_command(&d, &args)
            .env_remove("TINYCHAIN_WALLET_PASSPHRASE")
            .output()
            .expect("runs");
        let err = refused(out, &args);
        assert!(err.contains("--passphrase-file") && err.contains("not a terminal"), "{err}");
        let out = wallet_command(&d, &args)
            .env("TINYCHAIN_WALLET_PASSPHRASE", "wrong")
            .output()
            .expect("runs");
        let err = refused(out, &args);
        assert!(err.contains("wrong passphrase") && err.contains("nothing was changed"), "{err}");
        assert_eq!(std::fs::read(&file).expect("reads"), bytes, "{args:?} left the file as it was");
    }
    assert!(call(&d, "getrawmempool", &[]).as_array().expect("txids").is_empty());

    // change-passphrase: atomic, and only the new one opens the file afterwards.
    let new_file = dir.path().join("new-passphrase");
    std::fs::write(&new_file, "a longer new passphrase").expect("writes");
    let err = wallet_refused(
        &d,
        &["change-passphrase", "--passphrase-file", new_file.to_str().expect("utf-8")],
    );
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(std::fs::read(&file).expect("reads"), bytes);
    wallet_json(
        &d,
        &["change-passphrase", "--new-passphrase-file", new_file.to_str().expect("utf-8")],
    );
    let err = wallet_refused(&d, &["show-mnemonic"]);
    assert!(err.contains("wrong passphrase"), "{err}");
    let shown =
        wallet_json(&d, &["show-mnemonic", "--passphrase-file", new_file.to_str().expect("utf-8")]);
    assert_eq!(shown["mnemonic"], phrase.as_str());
    let names: Vec<String> = std::fs::read_dir(file.parent().expect("dir"))
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("wallet.json"))
        .collect();
    assert_eq!(names.len(), 2, "the file and its lock, no temporary file: {names:?}");
}

#[test]
fn a_version_1_wallet_file_is_read_then_upgraded_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    let (_node, _) = start(&d, &[]);
    let file = dir.path().join("regtest").join("wallet.json");
    std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
    let fixture = include_str!("../../../wallet-cli/testdata/wallet-v1.json");
    std::fs::write(&file, fixture).expect("writes");
    let v1: Value = serde_json::from_str(fixture).expect("JSON");
    let key_one_wif = v1["keys"][1]["wif"].as_str().expect("wif").to_string();

    // The read-only commands work on it as it is; nothing rewrites it.
    let listed = wallet_json(&d, &["addresses"]);
    assert_eq!(listed.as_array().expect("rows").len(), 4);
    assert_eq!(listed[1]["address"], REGTEST_ADDRESS);
    assert_eq!(listed[1]["label"], "key one");
    call(&d, "generatetoaddress", &["11", REGTEST_ADDRESS]);
    // At height 11 the coinbases of heights 1 and 2 are mature (10 confirmations).
    assert_eq!(belushis(&wallet_json(&d, &["balance"])["confirmed"]), 2 * 50 * COIN);
    for args in [
        vec!["send", REGTEST_ADDRESS, "1"],
        vec!["new-address"],
        vec!["export-key", REGTEST_ADDRESS],
    ] {
        let err = wallet_refused(&d, &args);
        assert!(
            err.contains("format version 1") && err.contains("tinychain-wallet upgrade"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).expect("reads"), fixture);

    let upgraded = wallet_json(&d, &["upgrade"]);
    assert_eq!(upgraded["upgraded"], true);
    assert_eq!(upgraded["imported_keys"], 4);
    let text = std::fs::read_to_string(&file).expect("reads");
    assert!(text.contains("\"version\": 2"));
    for key in v1["keys"].as_array().expect("keys") {
        assert!(!text.contains(key["wif"].as_str().expect("wif")), "a WIF stayed in the clear");
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // Same addresses and labels, the same keys behind the passphrase, the sent record kept.
    let after = wallet_json(&d, &["addresses"]);
    for (old, new) in listed.as_array().expect("rows").iter().zip(after.as_array().expect("rows")) {
        assert_eq!((&old["address"], &old["label"]), (&new["address"], &new["label"]));
    }
    assert_eq!(wallet_json(&d, &["export-key", REGTEST_ADDRESS])["wif"], key_one_wif.as_str());
    assert!(text.contains(v1["sent"][0]["txid"].as_str().expect("txid")));
    // It spends its old coins, and new addresses come from the new seed.
    wallet_json(&d, &["send", &address(&wallet_json(&d, &["new-address"])), "1"]);
    assert_eq!(wallet_json(&d, &["upgrade"])["upgraded"], false, "upgrading twice does nothing");
}
