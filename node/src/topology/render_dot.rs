//! A [`Graph`] as Graphviz DOT, and as SVG through Graphviz's `dot`.
//!
//! Owns the picture's conventions: one box per node (name, short peer id,
//! height and tip; nodes on the same tip share a fill colour; a stopped or
//! unreachable node is grey and dashed), one arrow per link from the dialer
//! (both heads when both dialed), bold solid for gossip-mesh links, dashed for
//! plain ones, blue for bootstrap links, dotted for "knows of" (crawl), a
//! legend and the moment in the title. [`dot`] is pure; [`svg`] runs the `dot`
//! program.

use std::fmt::Write;

use super::Error;
use super::graph::Graph;
use super::model::short_id;

/// Fill colours for tips, most common tip first (ColorBrewer Pastel1, then Set3).
const TIP_COLOURS: [&str; 12] = [
    "#b3e2cd", "#fdcdac", "#cbd5e8", "#f4cae4", "#e6f5c9", "#fff2ae", "#f1e2cc", "#8dd3c7",
    "#bebada", "#fb8072", "#80b1d3", "#fdb462",
];
const OFFLINE: &str = "#dddddd";
const BOOTSTRAP: &str = "#1f5fbf";

/// Returns the colour of tip colour index `i` (colours repeat past twelve tips).
pub fn tip_colour(i: usize) -> &'static str {
    TIP_COLOURS[i % TIP_COLOURS.len()]
}

/// Escapes a string for inside DOT's double quotes.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", esc(s))
}

/// Renders the graph as DOT.
pub fn dot(graph: &Graph) -> String {
    let colours = graph.tip_colours();
    let mut out = String::new();
    let at = graph.at.map_or_else(String::new, |t| format!(" at {t}"));
    let title = format!(
        "{}{at}\\n{} nodes, {} links",
        esc(&graph.title),
        graph.nodes.len(),
        graph.edges.len()
    );
    let _ = writeln!(out, "digraph tinychain {{");
    let _ = writeln!(
        out,
        "  graph [label=\"{title}\", labelloc=t, fontname=\"monospace\", layout=neato, overlap=false, splines=true, sep=\"+12\"];"
    );
    let _ = writeln!(out, "  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\"];");
    let _ = writeln!(out, "  edge [fontname=\"monospace\"];");
    for n in &graph.nodes {
        let mut label = format!("{}\\n{}", esc(&n.name), esc(&short_id(&n.id)));
        if let Some(h) = n.height {
            let _ = write!(label, "\\nheight {h}");
        }
        if let Some(tip) = &n.tip {
            let _ = write!(label, " {}", esc(tip.get(..8).unwrap_or(tip)));
        }
        let (fill, style) = match (&n.tip, n.up) {
            (_, false) => (OFFLINE, "rounded,filled,dashed"),
            (Some(tip), true) => {
                (colours.get(tip).map_or(OFFLINE, |&i| tip_colour(i)), "rounded,filled")
            }
            (None, true) => ("#ffffff", "rounded,filled"),
        };
        let _ = writeln!(
            out,
            "  {} [label=\"{label}\", fillcolor=\"{fill}\", style=\"{style}\"];",
            quote(&n.id),
        );
    }
    for e in &graph.edges {
        let mut attrs = vec![match (e.connected, e.mesh) {
            (false, _) => "style=dotted".to_owned(),
            (true, true) => "style=solid, penwidth=2.5".to_owned(),
            (true, false) => "style=dashed".to_owned(),
        }];
        if e.both_ways {
            attrs.push("dir=both".into());
        }
        if e.bootstrap {
            attrs.push(format!("color=\"{BOOTSTRAP}\""));
        }
        let _ = writeln!(out, "  {} -> {} [{}];", quote(&e.from), quote(&e.to), attrs.join(", "));
    }
    legend(&mut out);
    out.push_str("}\n");
    out
}

fn legend(out: &mut String) {
    out.push_str(
        "  legend [shape=note, fontsize=10, style=\"\", label=\"legend\\l\
         bold: in the blocks gossip mesh\\l\
         dashed: connected, not in the mesh\\l\
         dotted: knows of (routing table)\\l\
         blue: bootstrap link\\l\
         arrow: from the dialer (both heads: both dialed)\\l\
         same fill colour: same tip\\l\
         grey, dashed: stopped or unreachable\\l\"];\n",
    );
}

/// Renders the graph as SVG with Graphviz's `dot` program.
///
/// # Errors
///
/// `dot` is not installed, or fails.
pub fn svg(graph: &Graph) -> Result<String, Error> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Graphviz(format!("cannot run `dot` ({e})")))?;
    let text = dot(graph);
    let mut stdin = child.stdin.take().ok_or_else(|| Error::Graphviz("no stdin".into()))?;
    // Written from a thread: `dot` may fill its stdout before reading all its input.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().map_err(|e| Error::Graphviz(e.to_string()))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(Error::Graphviz(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    String::from_utf8(out.stdout).map_err(|e| Error::Graphviz(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::graph::{GraphEdge, GraphNode};

    fn graph() -> Graph {
        let node = |id: &str, name: &str, tip: &str, up| GraphNode {
            id: id.into(),
            name: name.into(),
            height: Some(3),
            tip: Some(tip.into()),
            up,
            detail: None,
        };
        Graph {
            title: "test".into(),
            at: None,
            nodes: vec![
                node("A", "seed1", "aaaa", true),
                node("B", "node\"2", "aaaa", true),
                node("C", "c", "bbbb", false),
            ],
            edges: vec![
                GraphEdge {
                    from: "A".into(),
                    to: "B".into(),
                    connected: true,
                    mesh: true,
                    bootstrap: true,
                    both_ways: false,
                },
                GraphEdge {
                    from: "B".into(),
                    to: "C".into(),
                    connected: true,
                    mesh: false,
                    bootstrap: false,
                    both_ways: true,
                },
            ],
        }
    }

    #[test]
    fn nodes_on_one_tip_share_a_colour_and_links_show_mesh_and_bootstrap() {
        let text = dot(&graph());
        assert!(text.starts_with("digraph tinychain {"), "{text}");
        assert!(
            text.contains("\"A\" [label=\"seed1\\nA\\nheight 3 aaaa\", fillcolor=\"#b3e2cd\""),
            "{text}"
        );
        assert!(
            text.contains("\"B\" [label=\"node\\\"2\\nB\\nheight 3 aaaa\", fillcolor=\"#b3e2cd\""),
            "{text}"
        );
        assert!(text.contains("\"C\" [label=\"c\\nC\\nheight 3 bbbb\", fillcolor=\"#dddddd\", style=\"rounded,filled,dashed\"]"), "{text}");
        assert!(
            text.contains("\"A\" -> \"B\" [style=solid, penwidth=2.5, color=\"#1f5fbf\"];"),
            "{text}"
        );
        assert!(text.contains("\"B\" -> \"C\" [style=dashed, dir=both];"), "{text}");
        assert!(text.contains("legend [shape=note"));
        assert!(text.contains("3 nodes, 2 links"));
    }

    #[test]
    fn svg_comes_from_graphviz() {
        // Graphviz is installed by .ci/run; without it the error says what to install.
        match svg(&graph()) {
            Ok(svg) => assert!(svg.contains("<svg") && svg.contains("seed1"), "{svg}"),
            Err(e) => panic!("{e}"),
        }
    }
}
