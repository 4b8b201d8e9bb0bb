//! `tinychain-node topology` on recorded logs (tests/data/topology): golden text
//! and DOT, the same answer from logs shuffled, split, overlapping and piped,
//! the JSON model's facts, clear errors, and the HTML page as headless Chromium
//! renders it. Every test starts with `topology_`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tinychain_tests::binary;

fn data(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/topology").join(dir)
}

/// Runs `tinychain-node topology ARGS`, with `stdin` piped in if given.
fn topology(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(binary("tinychain-node"))
        .arg("topology")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tinychain-node runs");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).expect("writes stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("tinychain-node finishes")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "topology failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// Compares `actual` with the golden file, or rewrites it when TINYCHAIN_UPDATE_GOLDEN=1.
fn golden(name: &str, actual: &str) {
    let path = data(name);
    if std::env::var("TINYCHAIN_UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("writes the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e} (TINYCHAIN_UPDATE_GOLDEN=1 writes it)", path.display())
    });
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(e, a)| e != a);
        panic!(
            "{} differs (first differing line {:?}); got:\n{actual}\n(TINYCHAIN_UPDATE_GOLDEN=1 rewrites it after a deliberate change)",
            path.display(),
            first.map(|i| i + 1)
        );
    }
}

fn dir_arg(dir: &str) -> String {
    data(dir).to_str().expect("UTF-8 path").to_owned()
}

#[test]
fn topology_golden_text_and_dot_of_the_recorded_run() {
    let contract = dir_arg("contract");
    golden("contract.txt", &ok(&topology(&[&contract], None)));
    golden(
        "contract-at-10s.dot",
        &ok(&topology(&["--format", "dot", "--at", "+10s", &contract], None)),
    );
    golden("contract-end.dot", &ok(&topology(&["--format", "dot", &contract], None)));
    // Logs from before the contract's fields: the writer comes from each file's start line.
    golden("today.txt", &ok(&topology(&[&dir_arg("today")], None)));
}

#[test]
fn topology_gives_the_same_history_from_logs_split_shuffled_overlapping_and_piped() {
    let expected = ok(&topology(&[&dir_arg("contract")], None));
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut piped = Vec::new();
    for (i, name) in ["node4", "node3", "node2", "seed1"].iter().enumerate() {
        let text =
            std::fs::read_to_string(data("contract").join(format!("{name}.log"))).expect("reads");
        let lines: Vec<&str> = text.lines().collect();
        let half = lines.len() / 2;
        // Rotated in two, the parts overlapping by ten lines, copied from two "machines".
        let first = lines[..half + 10].join("\n") + "\n";
        let second = lines[half..].join("\n") + "\n";
        std::fs::create_dir_all(scratch.path().join(format!("host{i}"))).expect("mkdir");
        std::fs::write(scratch.path().join(format!("host{i}/{name}.log.1")), second)
            .expect("writes");
        if i == 0 {
            piped = first.into_bytes();
        } else {
            std::fs::write(scratch.path().join(format!("z-{name}.log")), first).expect("writes");
        }
    }
    let dir = scratch.path().to_str().expect("UTF-8 path");
    let got = ok(&topology(&[dir, "-"], Some(&piped)));
    let body = |s: &str| s.lines().skip(3).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&got), body(&expected), "the same history, whatever the order");
    let lines: usize = ["seed1", "node2", "node3", "node4"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(data("contract").join(format!("{n}.log")))
                .expect("reads")
                .lines()
                .count()
        })
        .sum();
    let read = format!("read 8 file(s), {} lines", lines + 40);
    assert!(got.contains(&read) && got.contains("40 duplicates"), "{read}: {got}");
}

#[test]
fn topology_json_model_of_the_recorded_run() {
    let model: Value =
        serde_json::from_str(&ok(&topology(&["--format", "json", &dir_arg("contract")], None)))
            .expect("JSON");
    let node = |name: &str| {
        model["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["name"] == name))
            .expect(name)
            .clone()
    };
    assert_eq!(node("node3")["restarts"], 1);
    assert_eq!(node("node3")["runs"][0]["ended"], "vanished", "killed: no stop line");
    assert_eq!(node("node4")["runs"][0]["ended"], "stopped");
    assert_eq!(node("node4")["height"], 7, "stopped before the last block");
    assert_eq!(node("seed1")["height"], 8);
    let links = model["links"].as_array().expect("links");
    assert_eq!(links.len(), 6, "every pair of the four");
    for link in links {
        for c in link["connections"].as_array().expect("connections") {
            assert_eq!(c["seen_by"], "both", "both ends' accounts paired: {c}");
        }
    }
    // The node2–node3 pair had connections before the kill and after the restart, told apart.
    let id = |name: &str| node(name)["id"].as_str().expect("an id").to_owned();
    let (a, b) = if id("node2") < id("node3") {
        (id("node2"), id("node3"))
    } else {
        (id("node3"), id("node2"))
    };
    let pair =
        links.iter().find(|l| l["a"] == a.as_str() && l["b"] == b.as_str()).expect("node2–node3");
    let connections = pair["connections"].as_array().expect("connections");
    assert!(connections.len() >= 2, "{pair}");
    let first = &connections[0];
    assert!(first["closes"].to_string().contains("io error: "), "a kill: {first}");
    let restarted = node("node3")["runs"][1]["start"].as_str().expect("a second run").to_owned();
    assert!(
        connections.iter().any(|c| c["opened"].as_str() > Some(restarted.as_str())),
        "a connection after the restart: {pair}"
    );
    // Every block was measured: mined somewhere and had by others.
    let blocks = model["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 8);
    for b in blocks {
        assert_eq!(b["mined"], true, "{b}");
        assert!(!b["seen"].as_array().expect("seen").is_empty(), "{b}");
    }
    assert_eq!(model["propagation"]["measured"], 8);
    assert_eq!(
        model["syncs"][0]["node"],
        id("node3").as_str(),
        "the restarted node caught up by sync"
    );
    assert_eq!(model["skew"].as_array().map(Vec::len), Some(0), "one machine: no skew");
}

#[test]
fn topology_reports_clock_skew_instead_of_hiding_it() {
    // node2's machine runs 90 s ahead: shift every timestamp in its log.
    let scratch = tempfile::tempdir().expect("temp dir");
    for name in ["seed1", "node2", "node3", "node4"] {
        let text =
            std::fs::read_to_string(data("contract").join(format!("{name}.log"))).expect("reads");
        let out: String = text
            .lines()
            .map(|line| {
                let mut v: Value = serde_json::from_str(line).expect("JSON");
                if name == "node2" {
                    let t = v["timestamp"].as_str().expect("a time");
                    v["timestamp"] = Value::String(shift(t, 90));
                }
                format!("{v}\n")
            })
            .collect();
        std::fs::write(scratch.path().join(format!("{name}.log")), out).expect("writes");
    }
    let text = ok(&topology(&[scratch.path().to_str().expect("UTF-8")], None));
    assert!(text.contains("node2's clock seems ahead of seed1's by at least"), "{text}");
    assert!(text.contains("before they were mined"), "{text}");
    assert!(text.contains("links\n"), "{text}");
    let model: Value = serde_json::from_str(&ok(&topology(
        &["--format", "json", scratch.path().to_str().expect("UTF-8")],
        None,
    )))
    .expect("JSON");
    let links = model["links"].as_array().expect("links");
    assert_eq!(links.len(), 6, "ends still paired across the offset");
    assert!(
        links.iter().all(|l| l["connections"]
            .as_array()
            .expect("c")
            .iter()
            .all(|c| c["seen_by"] == "both"))
    );
}

/// Adds `seconds` to an RFC 3339 time of the form 2026-12-03T14:41:41.452Z (same day).
fn shift(t: &str, seconds: u32) -> String {
    let (date, rest) = t.split_once('T').expect("a date");
    let (hms, frac) = rest.split_once('.').expect("fractional seconds");
    let parts: Vec<u32> = hms.split(':').map(|p| p.parse().expect("a number")).collect();
    let total = parts[0] * 3600 + parts[1] * 60 + parts[2] + seconds;
    format!("{date}T{:02}:{:02}:{:02}.{frac}", total / 3600, total / 60 % 60, total % 60)
}

#[test]
fn topology_refuses_unreadable_and_non_json_input_clearly() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let text_log = scratch.path().join("node.log");
    std::fs::write(
        &text_log,
        "2026-12-03T14:02:38.252264Z  INFO tinychain_node::p2p: listening address=/ip4/…\n",
    )
    .expect("writes");
    let out = topology(&[text_log.to_str().expect("UTF-8")], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("node.log:1 is not JSON") && err.contains("--log-format json"), "{err}");
    let out = topology(&["/nonexistent/seed1.log"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/nonexistent/seed1.log"), "{err}");
    let out = topology(&["--at", "soon", &dir_arg("contract")], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
    // Stray lines in a JSON log are counted, not fatal.
    let mixed = scratch.path().join("mixed.log");
    let mut lines = std::fs::read_to_string(data("contract/seed1.log")).expect("reads");
    let stray = lines.lines().count() + 1;
    lines.push_str("thread 'main' panicked at node/src/main.rs:1:1\n{\"message\":\"new tip\"}\n");
    std::fs::write(&mixed, lines).expect("writes");
    let text = ok(&topology(&[mixed.to_str().expect("UTF-8")], None));
    let at = format!("mixed.log:{stray})");
    assert!(text.contains("1 not JSON (first at ") && text.contains(&at), "{at}: {text}");
    assert!(text.contains("1 malformed"), "{text}");
}

/// Runs headless Chromium on a page; returns the DOM after its scripts ran.
fn chromium_dom(page: &Path) -> String {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .unwrap_or_else(|| {
            panic!("the HTML test needs headless Chromium: apt-get install chromium (.ci/run installs it)")
        });
    let profile = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait works").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        // Polling: a child's exit has no blocking wait with a timeout.
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The part of the DOM inside `<svg id="ID" …>…</svg>`.
fn svg_part<'a>(dom: &'a str, id: &str) -> &'a str {
    let start =
        dom.find(&format!("<svg id=\"{id}\"")).unwrap_or_else(|| panic!("no svg#{id} in:\n{dom}"));
    let end = dom[start..].find("</svg>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[test]
fn topology_html_page_renders_the_graph_slider_and_chart_in_headless_chromium() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let contract = dir_arg("contract");
    let page = scratch.path().join("at-10s.html");
    std::fs::write(&page, ok(&topology(&["--format", "html", "--at", "+10s", &contract], None)))
        .expect("writes");
    let dom = chromium_dom(&page);
    let graph = svg_part(&dom, "graph");
    for name in ["seed1", "node2", "node3", "node4"] {
        assert!(
            graph.contains(&format!("<text class=\"name\" y=\"-8\">{name}</text>")),
            "{name} drawn:\n{graph}"
        );
    }
    // At +10 s node3 had been killed: it is drawn down, and the three links among the others are up.
    assert_eq!(graph.matches("<g class=\"node\"").count(), 3, "{graph}");
    assert_eq!(graph.matches("<g class=\"node down\"").count(), 1, "{graph}");
    assert_eq!(graph.matches("<line class=\"link").count(), 3, "{graph}");
    assert!(graph.contains("class=\"link mesh"), "mesh links drawn as such: {graph}");
    assert!(dom.contains("<input id=\"slider\" type=\"range\" min=\"0\" max=\""), "the slider");
    assert!(!dom.contains("max=\"0\" value=\"0\""), "the slider has stops");
    assert!(dom.contains("link down  node2 -- node3"), "the changes so far are listed");
    let chart = svg_part(&dom, "chart");
    assert_eq!(
        chart.matches("<circle class=\"p50\"").count(),
        8,
        "every block on the chart: {chart}"
    );
    // At the end everyone has stopped: no link is drawn.
    let end = scratch.path().join("end.html");
    std::fs::write(&end, ok(&topology(&["--format", "html", &contract], None))).expect("writes");
    let dom = chromium_dom(&end);
    let graph = svg_part(&dom, "graph");
    assert_eq!(graph.matches("<line class=\"link").count(), 0, "{graph}");
    assert_eq!(graph.matches("<g class=\"node down\"").count(), 4, "{graph}");
}
