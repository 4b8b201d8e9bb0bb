//! What a crawl found, and its drawings in `topology`'s formats.
//!
//! Owns [`Report`] (`--format json`) and its renderings: a table of peers
//! (reachable or why not, height, tip, agent, how many peers each knows and is
//! connected to) for `text`; a [`Graph`] of who knows whom — solid when the
//! knower says it is connected, dotted when the peer is only in its routing
//! table — for `dot` and `svg`; and the one-moment HTML page. Pure, but for
//! `svg`, which runs Graphviz.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::plan::Peer;
use crate::topology::graph::{Graph, GraphEdge, GraphNode};
use crate::topology::model::short_id;
use crate::topology::render_html::{Page, PageEdge, PageNode, PageSpan};
use crate::topology::time::{Time, human_seconds};
use crate::topology::{Error, Format, json, render_dot, render_html};

/// What a crawl found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The network crawled.
    pub network: String,
    /// Its network id.
    pub network_id: String,
    /// When the crawl started.
    pub started: Time,
    /// How long it took, seconds.
    pub seconds: f64,
    /// Whether every peer found was visited before the deadline.
    pub finished: bool,
    /// Where it started.
    pub bootstrap: Vec<String>,
    /// Every peer found.
    pub peers: Vec<Peer>,
}

impl Report {
    /// Renders the report.
    ///
    /// # Errors
    ///
    /// `svg` without Graphviz.
    pub fn render(&self, format: Format) -> Result<String, Error> {
        Ok(match format {
            Format::Text => self.text(),
            Format::Json => json(self),
            Format::Dot => render_dot::dot(&self.graph()),
            Format::Svg => render_dot::svg(&self.graph())?,
            Format::Html => render_html::html(&self.page()),
        })
    }

    /// Who knows whom, at the crawl's time.
    pub fn graph(&self) -> Graph {
        let nodes = self
            .peers
            .iter()
            .map(|p| GraphNode {
                id: p.id.clone(),
                name: short_id(&p.id),
                height: p.height.map(u64::from),
                tip: p.tip.clone(),
                up: p.reachable,
                detail: p.agent.clone().or_else(|| p.error.clone()),
            })
            .collect();
        let mut edges: BTreeMap<(String, String), GraphEdge> = BTreeMap::new();
        for p in &self.peers {
            for (q, connected) in &p.knows {
                let back = (q.clone(), p.id.clone());
                if let Some(e) = edges.get_mut(&back) {
                    e.both_ways = true;
                    e.connected |= connected;
                    continue;
                }
                edges.insert(
                    (p.id.clone(), q.clone()),
                    GraphEdge {
                        from: p.id.clone(),
                        to: q.clone(),
                        connected: *connected,
                        ..GraphEdge::default()
                    },
                );
            }
        }
        Graph {
            title: format!("tinychain crawl of {} ({})", self.network, self.network_id),
            at: Some(self.started),
            nodes,
            edges: edges.into_values().collect(),
        }
    }

    fn page(&self) -> Page {
        let t = self.started.millis();
        let graph = self.graph();
        let detail = |p: &Peer| {
            let mut d = p.agent.clone().or_else(|| p.error.clone()).unwrap_or_default();
            if let Some(listen) = p.listen.first() {
                let _ = write!(d, "  {listen}");
            }
            d
        };
        Page {
            title: graph.title.clone(),
            start: t,
            end: t,
            at: t,
            nodes: self
                .peers
                .iter()
                .map(|p| PageNode {
                    id: p.id.clone(),
                    name: short_id(&p.id),
                    detail: detail(p),
                    logged: true,
                    up: if p.reachable { vec![(t, t + 1)] } else { Vec::new() },
                    tips: p.height.map(|h| (t, u64::from(h), p.tip.clone())).into_iter().collect(),
                })
                .collect(),
            edges: graph
                .edges
                .iter()
                .map(|e| PageEdge {
                    a: e.from.clone(),
                    b: e.to.clone(),
                    spans: vec![PageSpan {
                        from: t,
                        to: t + 1,
                        dialer: e.from.clone(),
                        bootstrap: false,
                        connected: e.connected,
                    }],
                })
                .collect(),
            changes: vec![(t, format!("crawl: {}", self.summary()))],
            summary:
                "a crawl measures no propagation: see `tinychain-node topology` on the nodes' logs"
                    .into(),
            ..Page::default()
        }
    }

    fn summary(&self) -> String {
        let reachable = self.peers.iter().filter(|p| p.reachable).count();
        format!(
            "{} peers found, {reachable} reachable, in {}{}",
            self.peers.len(),
            human_seconds(self.seconds),
            if self.finished { "" } else { " (deadline reached: some peers not visited)" }
        )
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "crawl of {} ({}) from {} at {}: {}",
            self.network,
            self.network_id,
            self.bootstrap.join(", "),
            self.started,
            self.summary()
        );
        let _ = writeln!(
            out,
            "\n  {:<54} {:<9} {:>7}  {:<10} {:<22} {:>5} {:>9}  listen / error",
            "peer id", "reachable", "height", "tip", "agent", "knows", "connected"
        );
        for p in &self.peers {
            let tip = p.tip.as_deref().map_or("-", |t| t.get(..8).unwrap_or(t));
            let connected = p.knows.values().filter(|c| **c).count();
            let last = p.error.clone().or_else(|| p.listen.first().cloned()).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<54} {:<9} {:>7}  {:<10} {:<22} {:>5} {:>9}  {last}",
                p.id,
                if p.reachable { "yes" } else { "no" },
                p.height.map_or_else(|| "-".into(), |h| h.to_string()),
                tip,
                p.agent.as_deref().unwrap_or("-"),
                p.knows.len(),
                connected,
            );
        }
        let _ = writeln!(out, "\nwho knows whom (* connected)");
        for p in self.peers.iter().filter(|p| !p.knows.is_empty()) {
            let known: Vec<String> = p
                .knows
                .iter()
                .map(|(q, c)| format!("{}{}", short_id(q), if *c { "*" } else { "" }))
                .collect();
            let _ = writeln!(out, "  {} -> {}", short_id(&p.id), known.join(" "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let peer = |id: &str, knows: &[(&str, bool)]| Peer {
            id: id.into(),
            reachable: true,
            height: Some(5),
            tip: Some("00ab".into()),
            knows: knows.iter().map(|(q, c)| ((*q).to_owned(), *c)).collect(),
            ..Peer::default()
        };
        Report {
            network: "regtest".into(),
            network_id: "594a1ac0b17337ca".into(),
            started: Time::from_unix(1_800_000_000),
            seconds: 1.5,
            finished: true,
            bootstrap: vec!["/ip4/10.0.0.1/tcp/19444/p2p/A".into()],
            peers: vec![
                peer("A", &[("B", true), ("C", false)]),
                peer("B", &[("A", true)]),
                Peer { id: "C".into(), error: Some("refused".into()), ..Peer::default() },
            ],
        }
    }

    #[test]
    fn the_graph_merges_knowing_both_ways_and_marks_the_unreachable() {
        let g = report().graph();
        assert_eq!(g.edges.len(), 2);
        let ab = g.edges.iter().find(|e| e.to == "B").expect("A-B");
        assert!(ab.both_ways && ab.connected);
        let ac = g.edges.iter().find(|e| e.to == "C").expect("A-C");
        assert!(!ac.connected && !ac.both_ways);
        assert!(!g.nodes.iter().find(|n| n.id == "C").expect("C").up);
        let dot = render_dot::dot(&g);
        assert!(dot.contains("\"A\" -> \"C\" [style=dotted];"), "{dot}");
    }

    #[test]
    fn the_text_lists_every_peer_and_who_knows_whom() {
        let text = report().text();
        assert!(text.contains("3 peers found, 2 reachable"), "{text}");
        assert!(text.contains("A -> B* C"), "{text}");
        assert!(text.contains("refused"), "{text}");
    }
}
