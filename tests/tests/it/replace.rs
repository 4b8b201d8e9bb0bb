//! Fees against real nodes: the node's fee estimate and `send` using it, a stuck
//! transaction bumped and mined, refused replacements with their reasons, and two
//! copies of one wallet racing for the same coin on two nodes.

use serde_json::Value;
use tinychain_tests::{NodeProcess, REGTEST_ADDRESS};

use crate::wallet::{
    COIN, belushis, call, mempool, start, stop, wait_until, wallet, wallet_json, wallet_refused,
};

fn address(json: &Value) -> String {
    json["address"].as_str().expect("an address").to_string()
}

fn txid(json: &Value) -> String {
    json["txid"].as_str().expect("a txid").to_string()
}

/// A node with a wallet holding `mature` spendable coinbases of 50 coins.
fn funded(d: &str, mature: u32) -> (NodeProcess, String) {
    let (node, _) = start(d, &[]);
    let first = address(&wallet_json(d, &["create"]));
    call(d, "generatetoaddress", &[&mature.to_string(), &first]);
    call(d, "generatetoaddress", &["10", REGTEST_ADDRESS]);
    (node, first)
}

#[test]
fn the_fee_estimate_follows_recent_blocks_and_send_uses_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    let (node, _) = funded(&d, 12);
    let none = call(&d, "estimatefee", &["2"]);
    assert_eq!(none["fee_rate"], Value::Null);
    assert!(none["errors"][0].as_str().expect("a reason").contains("not enough data"), "{none}");
    let first = wallet_json(&d, &["send", REGTEST_ADDRESS, "1"]);
    assert_eq!(
        (first["fee_rate"].as_u64(), first["fee_rate_source"].as_str()),
        (Some(1), Some("minimum"))
    );
    assert!(first["fee_rate_reason"].as_str().expect("why").contains("cannot estimate"), "{first}");
    call(&d, "generatetoaddress", &["1", REGTEST_ADDRESS]);

    // Four blocks, each confirming the three transactions paying 6 belushis a byte.
    for _ in 0..4 {
        for _ in 0..3 {
            wallet_json(&d, &["send", REGTEST_ADDRESS, "1", "--fee-rate", "6"]);
        }
        call(&d, "generatetoaddress", &["1", REGTEST_ADDRESS]);
    }
    let estimate = call(&d, "estimatefee", &["2"]);
    assert_eq!(estimate["fee_rate"], 6, "{estimate}");
    assert_eq!(estimate["blocks"], 2);
    assert!(estimate["errors"].as_array().expect("list").is_empty());
    assert_eq!(call(&d, "estimatefee", &["1000"])["blocks"], 48, "clamped to the longest target");
    let sent = wallet_json(&d, &["send", REGTEST_ADDRESS, "1", "--conf-target", "2"]);
    assert_eq!(
        (sent["fee_rate"].as_u64(), sent["fee_rate_source"].as_str()),
        (Some(6), Some("estimate"))
    );
    assert_eq!(belushis(&sent["fee"]), 6 * belushis(&sent["size"]));
    let text =
        String::from_utf8_lossy(&wallet(&d, &["send", REGTEST_ADDRESS, "1"]).stdout).to_string();
    assert!(
        text.contains(
            "fee rate 6 belushis/byte: the node's estimate for confirmation within 6 blocks"
        ),
        "{text}"
    );

    // The statistics survive a clean restart.
    stop(&d, node);
    let (_node, _) = start(&d, &[]);
    assert_eq!(call(&d, "estimatefee", &["2"]), estimate);
}

#[test]
fn a_stuck_transaction_is_bumped_and_the_replacement_mined() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    let (_node, _) = funded(&d, 3);
    let before = belushis(&wallet_json(&d, &["balance"])["total"]);
    let stuck = wallet_json(&d, &["send", REGTEST_ADDRESS, "5", "--fee-rate", "1"]);
    assert_eq!(stuck["replaceable"], true);
    let stuck_txid = txid(&stuck);
    let tx = call(&d, "gettransaction", &[&stuck_txid]);
    assert!(tx["vin"].as_array().expect("inputs").iter().all(|i| i["sequence"] == 0xffff_fffdu32));

    // Too low a rate is refused before anything is signed or sent.
    let file = dir.path().join("regtest").join("wallet.json");
    let bytes = std::fs::read(&file).expect("reads");
    let err = wallet_refused(&d, &["bumpfee", &stuck_txid, "--fee-rate", "1"]);
    assert!(err.contains("at least 2 is needed"), "{err}");
    assert_eq!(std::fs::read(&file).expect("reads"), bytes);

    let bump = wallet_json(&d, &["bumpfee", &stuck_txid, "--fee-rate", "5"]);
    let new_txid = txid(&bump);
    assert_eq!(bump["replaced"], stuck_txid.as_str());
    assert_eq!(belushis(&bump["fee"]), 5 * belushis(&bump["size"]));
    assert_eq!(
        belushis(&bump["change"]) + belushis(&bump["fee"]),
        belushis(&stuck["change"]) + belushis(&stuck["fee"])
    );
    assert_eq!(mempool(&d), vec![new_txid.clone()], "the original was evicted");
    // The wallet's records follow: one pending payment, the replacement.
    let pending = wallet_json(&d, &["balance"]);
    assert_eq!(belushis(&pending["pending_outgoing"]), 5 * COIN + belushis(&bump["fee"]));
    let history = wallet_json(&d, &["history"]);
    let rows: Vec<&Value> =
        history.as_array().expect("rows").iter().filter(|r| r["kind"] == "sent").collect();
    assert_eq!(rows.len(), 1, "{history}");
    assert_eq!(rows[0]["txid"], new_txid.as_str());
    let text = String::from_utf8_lossy(&wallet(&d, &["history"]).stdout).to_string();
    assert!(text.contains(&format!("(replaced {stuck_txid})")), "{text}");

    call(&d, "generatetoaddress", &["1", REGTEST_ADDRESS]);
    assert_eq!(wallet_json(&d, &["status", &new_txid])["status"], "confirmed");
    assert_eq!(wallet_json(&d, &["status", &stuck_txid])["status"], "not found");
    let after = wallet_json(&d, &["balance"]);
    assert_eq!(belushis(&after["total"]), before - 5 * COIN - belushis(&bump["fee"]));
    let err = wallet_refused(&d, &["bumpfee", &new_txid]);
    assert!(err.contains("already mined"), "{err}");

    // A transaction sent without signalling is not replaced: the node says why.
    let final_tx = txid(&wallet_json(&d, &["send", REGTEST_ADDRESS, "1", "--no-rbf"]));
    let bytes = std::fs::read(&file).expect("reads");
    let err = wallet_refused(&d, &["bumpfee", &final_tx]);
    assert!(err.contains("does not signal replaceability (BIP125)"), "{err}");
    assert_eq!(std::fs::read(&file).expect("reads"), bytes, "the file was put back");
    assert_eq!(mempool(&d), vec![final_tx]);
}

#[test]
fn two_copies_of_a_wallet_racing_for_one_coin_end_with_one_payment() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let a = dirs[0].path().to_str().expect("utf-8").to_string();
    let b = dirs[1].path().to_str().expect("utf-8").to_string();
    // One spendable coin, so both copies must spend it.
    let (node_a, a_addr) = start(&a, &[]);
    let created = wallet_json(&a, &["create"]);
    call(&a, "generatetoaddress", &["1", &address(&created)]);
    call(&a, "generatetoaddress", &["10", REGTEST_ADDRESS]);
    let (node_b, _) = start(&b, &["--bootstrap", &a_addr]);
    wait_until("node b syncing", || {
        tinychain_tests::call(&b, "getblockcount", &[]).is_ok_and(|h| h == 11)
    });
    let restored = crate::seed::restore(&b, created["mnemonic"].as_str().expect("phrase"), &[]);
    assert!(restored.status.success(), "{}", String::from_utf8_lossy(&restored.stderr));
    assert_eq!(wallet_json(&b, &["balance"]), wallet_json(&a, &["balance"]));

    // The nodes part (b restarts knowing no peer); each copy pays someone else from
    // the same coin through its own node: the first at 2 belushis a byte, the second at 5.
    stop(&b, node_b);
    let (_node_b, b_addr) = start(&b, &[]);
    let someone = address(&wallet_json(&a, &["keygen"]));
    let first = wallet_json(&a, &["send", &someone, "10", "--fee-rate", "2"]);
    let first_txid = txid(&first);
    let second = wallet_json(&b, &["send", REGTEST_ADDRESS, "10", "--fee-rate", "5"]);
    let second_txid = txid(&second);
    assert_eq!(mempool(&a), vec![first_txid.clone()]);
    assert_eq!(mempool(&b), vec![second_txid.clone()]);

    // Node a comes back (with the first in its saved mempool) and meets node b, which
    // relays the second: it replaces the first (both signal; it pays more).
    stop(&a, node_a);
    let (_node_a, _) = start(&a, &["--bootstrap", &b_addr]);
    wait_until("the replacement reaching node a", || mempool(&a) == vec![second_txid.clone()]);
    // The first, offered again, underpays: node a says which rule it breaks.
    let file = dirs[0].path().join("regtest").join("wallet.json");
    let record: Value = serde_json::from_slice(&std::fs::read(file).expect("reads")).expect("JSON");
    let hex = record["sent"][0]["hex"].as_str().expect("hex").to_string();
    let err = tinychain_tests::call(&a, "sendrawtransaction", &[&hex]).expect_err("refused");
    assert!(err.contains("replacement refused") && err.contains("is not above"), "{err}");
    assert_eq!(mempool(&a), vec![second_txid.clone()]);
    assert_eq!(mempool(&b), vec![second_txid.clone()]);

    call(&a, "generatetoaddress", &["1", REGTEST_ADDRESS]);
    wait_until("node b at height 12", || {
        tinychain_tests::call(&b, "getblockcount", &[]).is_ok_and(|h| h == 12)
    });
    // Both copies agree: one payment, the second; the first never happened.
    let (balance_a, balance_b) = (wallet_json(&a, &["balance"]), wallet_json(&b, &["balance"]));
    assert_eq!(balance_a, balance_b);
    assert_eq!(belushis(&balance_a["total"]), 40 * COIN - belushis(&second["fee"]));
    assert_eq!(wallet_json(&a, &["status", &first_txid])["status"], "not found");
    let sent = |d: &str| -> Vec<String> {
        wallet_json(d, &["history"])
            .as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["kind"] == "sent" && r["status"] == "confirmed")
            .map(|r| r["txid"].as_str().expect("txid").to_string())
            .collect()
    };
    assert_eq!(sent(&a), vec![second_txid.clone()]);
    assert_eq!(sent(&b), vec![second_txid]);
}
