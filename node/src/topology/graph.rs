//! The network as a graph at one moment: what `dot`, `svg` and a crawl draw.
//!
//! Owns [`Graph`] — nodes with their height and tip, edges with who dialed,
//! whether they are in the gossip mesh and whether they are bootstrap links —
//! and [`Graph::at`], which cuts the [`Model`]'s history at a moment. The crawler
//! builds a `Graph` of its own (who knows whom). Tip colours: nodes on the same
//! tip share a colour, the most common tip first. Pure.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::model::{Model, Node, short_id};
use super::time::Time;

/// The network at a moment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Graph {
    /// What it shows, e.g. "tinychain topology from logs".
    pub title: String,
    /// The moment.
    pub at: Option<Time>,
    /// The nodes.
    pub nodes: Vec<GraphNode>,
    /// The edges.
    pub edges: Vec<GraphEdge>,
}

/// A node of the graph.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GraphNode {
    /// Peer id.
    pub id: String,
    /// Name shown (log name, else the end of the peer id).
    pub name: String,
    /// Height at the moment.
    pub height: Option<u64>,
    /// Tip at the moment.
    pub tip: Option<String>,
    /// Running (logs) or reachable (crawl).
    pub up: bool,
    /// A line of detail (agent, or why it was unreachable).
    pub detail: Option<String>,
}

/// An edge of the graph.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GraphEdge {
    /// The dialer (logs), or the node that knows the other (crawl).
    pub from: String,
    /// The other end.
    pub to: String,
    /// Connected (logs: always; crawl: `from` says it is connected to `to`).
    pub connected: bool,
    /// In the blocks gossip mesh of either end.
    pub mesh: bool,
    /// A bootstrap link.
    pub bootstrap: bool,
    /// Dialed (or known) both ways.
    pub both_ways: bool,
}

impl Graph {
    /// The network at `t` according to the logs.
    pub fn at(model: &Model, t: Time) -> Graph {
        let end = model.end.unwrap_or(t);
        let mut edges = Vec::new();
        let mut linked: HashMap<&str, bool> = HashMap::new();
        for link in &model.links {
            let up: Vec<_> = link
                .connections
                .iter()
                .filter(|c| c.opened.is_none_or(|o| o <= t) && c.closed.is_none_or(|c| c > t))
                .collect();
            let Some(first) = up.first() else { continue };
            linked.insert(&link.a, true);
            linked.insert(&link.b, true);
            edges.push(GraphEdge {
                from: first.dialer.clone(),
                to: first.listener.clone(),
                connected: true,
                mesh: in_mesh(model, &link.a, &link.b, t),
                bootstrap: up.iter().any(|c| c.bootstrap),
                both_ways: up.iter().any(|c| c.dialer != first.dialer),
            });
        }
        let nodes = model
            .nodes
            .iter()
            .filter(|n| n.logged || linked.contains_key(n.id.as_str()))
            .map(|n| {
                let tip = n.tips.iter().rev().find(|x| x.time <= t);
                GraphNode {
                    id: n.id.clone(),
                    name: display_name(n),
                    height: tip.map(|x| x.height),
                    tip: tip.and_then(|x| x.tip.clone()),
                    up: if n.logged {
                        running(n, t, end)
                    } else {
                        linked.contains_key(n.id.as_str())
                    },
                    detail: n.agent.clone(),
                }
            })
            .collect();
        Graph { title: "tinychain topology from logs".into(), at: Some(t), nodes, edges }
    }

    /// A colour index per tip: 0 for the most common tip, 1 for the next, ...
    pub fn tip_colours(&self) -> HashMap<String, usize> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for tip in self.nodes.iter().filter_map(|n| n.tip.as_deref()) {
            *counts.entry(tip).or_default() += 1;
        }
        let mut tips: Vec<(&str, usize)> = counts.into_iter().collect();
        tips.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
        tips.into_iter().enumerate().map(|(i, (tip, _))| (tip.to_owned(), i)).collect()
    }

    /// Returns a node's name by peer id (the end of the id if it is not in the graph).
    pub fn name_of(&self, id: &str) -> String {
        self.nodes.iter().find(|n| n.id == id).map_or_else(|| short_id(id), |n| n.name.clone())
    }
}

/// A node's name for people: its log name, else the end of its peer id.
pub fn display_name(node: &Node) -> String {
    node.name.clone().unwrap_or_else(|| short_id(&node.id))
}

fn running(node: &Node, t: Time, end: Time) -> bool {
    node.runs.iter().any(|r| r.start <= t && r.end.unwrap_or(end) >= t)
}

/// Whether either end had the other in its blocks-topic mesh at `t`.
fn in_mesh(model: &Model, a: &str, b: &str, t: Time) -> bool {
    model.mesh.iter().any(|m| {
        ((m.node == a && m.peer == b) || (m.node == b && m.peer == a))
            && m.topic.contains("/blocks/")
            && m.from <= t
            && m.to.is_none_or(|to| to > t)
    })
}
