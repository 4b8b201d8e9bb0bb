//! The model for people: a timeline of link changes, then a summary.
//!
//! Owns `--format text`: what was read (and what could not be used), the
//! timeline (starts, stops, links up and down with reasons, bans), then tables
//! of nodes and links, sync sessions, penalties, block propagation and any clock
//! skew the logs reveal. Names are log names where nodes have them, else the
//! end of the peer id. Pure.

use std::fmt::Write;

use super::model::{Change, Model};
use super::time::{Time, human_seconds};

/// Renders the model as text.
pub fn text(model: &Model) -> String {
    let mut out = String::new();
    header(&mut out, model);
    timeline(&mut out, model);
    nodes(&mut out, model);
    links(&mut out, model);
    syncs(&mut out, model);
    discipline(&mut out, model);
    propagation(&mut out, model);
    skew(&mut out, model);
    out
}

fn header(out: &mut String, m: &Model) {
    let logged = m.nodes.iter().filter(|n| n.logged).count();
    let _ = writeln!(
        out,
        "tinychain topology: {} nodes ({logged} with logs), {} links",
        m.nodes.len(),
        m.links.len()
    );
    if let (Some(start), Some(end)) = (m.start, m.end) {
        let _ =
            writeln!(out, "from {start} to {end} ({})", human_seconds(end.seconds_since(start)));
    }
    let i = &m.input;
    let _ = write!(
        out,
        "read {} file(s), {} lines: {} used, {} other messages, {} duplicates",
        i.files, i.lines, i.used, i.other, i.duplicates
    );
    if i.not_json > 0 {
        let first = i.first_not_json.as_deref().unwrap_or("?");
        let _ = write!(out, ", {} not JSON (first at {first})", i.not_json);
    }
    if i.malformed > 0 {
        let first = i.first_malformed.as_deref().unwrap_or("?");
        let _ = write!(out, ", {} malformed (first at {first})", i.malformed);
    }
    if i.skipped_files > 0 {
        let first = i.first_skipped.as_deref().unwrap_or("?");
        let _ =
            write!(out, ", {} file(s) skipped: not JSON logs (first: {first})", i.skipped_files);
    }
    if i.unattributed > 0 {
        let _ = write!(
            out,
            ", {} from an unknown node (no `node` field or start line)",
            i.unattributed
        );
    }
    out.push('\n');
}

fn offset(m: &Model, t: Time) -> String {
    let start = m.start.unwrap_or(t);
    format!("{t} (+{})", human_seconds(t.seconds_since(start)))
}

fn timeline(out: &mut String, m: &Model) {
    let _ = writeln!(out, "\ntimeline");
    if m.timeline.is_empty() {
        let _ = writeln!(out, "  (nothing)");
    }
    for change in &m.timeline {
        let _ = writeln!(out, "  {}  {}", offset(m, change.time()), describe(m, change));
    }
}

/// One change in words, with names.
pub fn describe(m: &Model, change: &Change) -> String {
    match change {
        Change::NodeStarted { node, restart, height, .. } => format!(
            "{} {}{}",
            m.name_of(node),
            if *restart { "restarted" } else { "started" },
            height.map_or_else(String::new, |h| format!(" at height {h}"))
        ),
        Change::NodeStopped { node, clean, .. } => format!(
            "{} {}",
            m.name_of(node),
            if *clean {
                "stopped"
            } else {
                "went quiet (no stop logged: killed, crashed or log cut)"
            }
        ),
        Change::LinkUp { a, b, dialer, bootstrap, .. } => {
            let other = if dialer == a { b } else { a };
            format!(
                "link up    {} -> {}{}",
                m.name_of(dialer),
                m.name_of(other),
                if *bootstrap { " (bootstrap)" } else { "" }
            )
        }
        Change::LinkDown { a, b, reason, .. } => {
            format!("link down  {} -- {}: {}", m.name_of(a), m.name_of(b), name_ids(m, reason))
        }
        Change::Banned { node, peer, reason, .. } => {
            format!("{} banned {}: {reason}", m.name_of(node), m.name_of(peer))
        }
    }
}

/// Replaces the peer ids that start each "ID: reason" part with names.
fn name_ids(m: &Model, reasons: &str) -> String {
    reasons
        .split("; ")
        .map(|part| match part.split_once(": ") {
            Some((id, why)) if m.node(id).is_some() => format!("{}: {why}", m.name_of(id)),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn nodes(out: &mut String, m: &Model) {
    let _ = writeln!(out, "\nnodes");
    let _ = writeln!(
        out,
        "  {:<14} {:<54} {:>7}  {:<10} {:>8}  {:<24}  listen",
        "name", "peer id", "height", "tip", "restarts", "agent"
    );
    for n in &m.nodes {
        let tip = n.tip.as_deref().map_or("-", |t| t.get(..8).unwrap_or(t));
        let _ = writeln!(
            out,
            "  {:<14} {:<54} {:>7}  {:<10} {:>8}  {:<24}  {}",
            m.name_of(&n.id),
            n.id,
            n.height.map_or_else(|| "-".into(), |h| h.to_string()),
            tip,
            if n.logged { n.restarts.to_string() } else { "(no log)".into() },
            n.agent.as_deref().unwrap_or("-"),
            n.shown_listen().unwrap_or("-")
        );
    }
}

fn links(out: &mut String, m: &Model) {
    let _ = writeln!(out, "\nlinks");
    let _ = writeln!(
        out,
        "  {:<30} {:<10} {:>11} {:>6} {:>12}  state at the end",
        "link", "dialed by", "connections", "downs", "up"
    );
    for l in &m.links {
        let dialed = match l.dialed_by {
            "a" => m.name_of(&l.a),
            "b" => m.name_of(&l.b),
            _ => "both".into(),
        };
        let downs = l.changes.iter().filter(|c| !c.up).count();
        let state = match l.changes.last() {
            Some(c) if c.up => "up".to_owned(),
            Some(c) => format!("down since {}", c.time),
            None => "-".to_owned(),
        };
        let pair = format!(
            "{} -- {}{}",
            m.name_of(&l.a),
            m.name_of(&l.b),
            if l.bootstrap { " (b)" } else { "" }
        );
        let _ = writeln!(
            out,
            "  {pair:<30} {dialed:<10} {:>11} {downs:>6} {:>12}  {state}",
            l.connections.len(),
            human_seconds(l.up_seconds)
        );
    }
}

fn syncs(out: &mut String, m: &Model) {
    if m.syncs.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nsync sessions");
    for s in &m.syncs {
        let end = s.end.map_or_else(|| "(not finished)".to_owned(), |e| e.to_string());
        let rate = s.blocks_per_s.map_or_else(String::new, |r| format!(", {r:.1} blocks/s"));
        let _ = writeln!(
            out,
            "  {:<14} {} to {end}: height {} to {}{rate}",
            m.name_of(&s.node),
            s.start,
            s.from_height,
            s.to_height
        );
    }
}

fn discipline(out: &mut String, m: &Model) {
    if m.penalties.is_empty() && m.bans.is_empty() {
        return;
    }
    let _ = writeln!(out, "\npenalties and bans");
    for p in &m.penalties {
        let (node, peer) = (m.name_of(&p.node), m.name_of(&p.peer));
        let _ = writeln!(
            out,
            "  {}  {node} penalised {peer} (score {}): {}",
            p.time, p.score, p.reason
        );
    }
    for b in &m.bans {
        let (node, peer) = (m.name_of(&b.node), m.name_of(&b.peer));
        let until = b.until.map_or_else(String::new, |u| format!(" until {}", Time::from_unix(u)));
        let _ = writeln!(out, "  {}  {node} banned {peer}{until}: {}", b.time, b.reason);
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"))
}

fn propagation(out: &mut String, m: &Model) {
    let p = &m.propagation;
    let (from, to) = (p.from.map(|t| t.to_string()), p.to.map(|t| t.to_string()));
    let _ = writeln!(
        out,
        "\nblock propagation ({} to {}): {} blocks, {} reached other nodes, {} arrivals: p50 {}, p90 {}, max {}",
        from.as_deref().unwrap_or("-"),
        to.as_deref().unwrap_or("-"),
        p.blocks,
        p.measured,
        p.delays,
        ms(p.p50_ms),
        ms(p.p90_ms),
        ms(p.max_ms)
    );
    let mut slow: Vec<_> = m.blocks.iter().filter(|b| b.max_ms.is_some()).collect();
    slow.sort_by(|x, y| y.max_ms.unwrap_or(0.0).total_cmp(&x.max_ms.unwrap_or(0.0)));
    for b in slow.iter().take(5) {
        let _ = writeln!(
            out,
            "  slowest: height {} {} from {}{}: {} nodes, p50 {}, p90 {}, max {}",
            b.height,
            b.hash.get(..16).unwrap_or(&b.hash),
            m.name_of(&b.origin),
            if b.mined { "" } else { " (first seen; no mined line)" },
            b.seen.len(),
            ms(b.p50_ms),
            ms(b.p90_ms),
            ms(b.max_ms)
        );
    }
}

fn skew(out: &mut String, m: &Model) {
    if m.skew.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nclock skew (times above are as each node logged them)");
    for s in &m.skew {
        let _ = writeln!(
            out,
            "  {}'s clock seems ahead of {}'s by at least {}: {}",
            m.name_of(&s.ahead),
            m.name_of(&s.behind),
            human_seconds(s.seconds),
            name_ids_in(m, &s.evidence)
        );
    }
}

/// Replaces every peer id of a node in the model with its name.
fn name_ids_in(m: &Model, text: &str) -> String {
    let mut text = text.to_owned();
    for n in &m.nodes {
        if n.name.is_some() {
            text = text.replace(&n.id, &m.name_of(&n.id));
        }
    }
    text
}
