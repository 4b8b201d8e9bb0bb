//! One self-contained HTML page: the graph, a time slider over its changes, the propagation chart.
//!
//! Owns [`Page`] — the history cut down to what the page draws (nodes with
//! their runs and tips, edges as spans of time, mesh spans, the changes the
//! slider stops at, each block's delays) — and [`html`], which inlines it as JSON
//! beside the page's script and style (`page.js`, `page.css` next to this
//! file). The page loads nothing from anywhere: it works offline, from a file.
//! The crawler fills a `Page` of one moment. Pure.

use serde::Serialize;

use super::graph::display_name;
use super::model::Model;
use super::render_text::describe;
use super::time::Time;

const SCRIPT: &str = include_str!("page.js");
const STYLE: &str = include_str!("page.css");

/// What the page draws.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Page {
    /// The heading.
    pub title: String,
    /// The first moment, ms since the epoch.
    pub start: i64,
    /// The last moment.
    pub end: i64,
    /// The moment shown first (`--at`).
    pub at: i64,
    /// The nodes.
    pub nodes: Vec<PageNode>,
    /// The edges.
    pub edges: Vec<PageEdge>,
    /// Blocks-topic mesh spans: [node, peer, from, to), half-open.
    pub mesh: Vec<(String, String, i64, i64)>,
    /// The changes the slider stops at: [time, text].
    pub changes: Vec<(i64, String)>,
    /// Block propagation.
    pub blocks: Vec<PageBlock>,
    /// A line under the chart.
    pub summary: String,
}

/// A node on the page.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageNode {
    /// Peer id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Agent, listen address, or why unreachable.
    pub detail: String,
    /// Whether its own logs were read (else it is up while any of its edges is).
    pub logged: bool,
    /// When it ran: [from, to), half-open.
    pub up: Vec<(i64, i64)>,
    /// Its tip over time: [time, height, hash].
    pub tips: Vec<(i64, u64, Option<String>)>,
}

/// An edge on the page: a pair and the spans it was up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageEdge {
    /// One end.
    pub a: String,
    /// The other.
    pub b: String,
    /// When it was up, and how.
    pub spans: Vec<PageSpan>,
}

/// A connection (or a crawl's "knows of") over a span of time, [from, to).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageSpan {
    /// From.
    pub from: i64,
    /// To.
    pub to: i64,
    /// Who dialed (or who knows the other).
    pub dialer: String,
    /// A bootstrap link.
    pub bootstrap: bool,
    /// Connected (false: only known of).
    pub connected: bool,
}

/// A block's spread on the chart.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PageBlock {
    /// Hash (first 16 hex digits).
    pub hash: String,
    /// Height.
    pub height: u64,
    /// Origin's name.
    pub origin: String,
    /// When it originated, ms.
    pub t: i64,
    /// Delays, ms.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
    /// Nodes that had it after the origin.
    pub n: usize,
}

impl Page {
    /// The page of the model's history, opened at `at`.
    pub fn from_model(model: &Model, at: Time) -> Page {
        let start = model.start.unwrap_or_default();
        let end = model.end.unwrap_or(start);
        let ms = Time::millis;
        // Spans are half-open, [from, to): what is still up at the end lasts past it.
        let open = Time::from_micros(end.micros() + 1000);
        let nodes = model
            .nodes
            .iter()
            .map(|n| PageNode {
                id: n.id.clone(),
                name: display_name(n),
                detail: [n.agent.clone(), n.shown_listen().map(str::to_owned)]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("  "),
                logged: n.logged,
                up: n.runs.iter().map(|r| (ms(r.start), ms(r.end.unwrap_or(open)))).collect(),
                tips: n.tips.iter().map(|x| (ms(x.time), x.height, x.tip.clone())).collect(),
            })
            .collect();
        let edges = model
            .links
            .iter()
            .map(|l| PageEdge {
                a: l.a.clone(),
                b: l.b.clone(),
                spans: l
                    .connections
                    .iter()
                    .map(|c| PageSpan {
                        from: ms(c.opened.unwrap_or(start)),
                        to: ms(c.closed.unwrap_or(open)),
                        dialer: c.dialer.clone(),
                        bootstrap: c.bootstrap,
                        connected: true,
                    })
                    .collect(),
            })
            .collect();
        let mesh = model
            .mesh
            .iter()
            .filter(|m| m.topic.contains("/blocks/"))
            .map(|m| (m.node.clone(), m.peer.clone(), ms(m.from), ms(m.to.unwrap_or(open))))
            .collect();
        let changes = model.timeline.iter().map(|c| (ms(c.time()), describe(model, c))).collect();
        let blocks = model
            .blocks
            .iter()
            .map(|b| PageBlock {
                hash: b.hash.get(..16).unwrap_or(&b.hash).to_owned(),
                height: b.height,
                origin: model.name_of(&b.origin),
                t: ms(b.origin_time),
                p50: b.p50_ms,
                p90: b.p90_ms,
                max: b.max_ms,
                n: b.seen.len(),
            })
            .collect();
        let p = &model.propagation;
        let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"));
        Page {
            title: "tinychain topology from logs".into(),
            start: ms(start),
            end: ms(end),
            at: ms(at),
            nodes,
            edges,
            mesh,
            changes,
            blocks,
            summary: format!(
                "{} blocks, {} reached other nodes; over {} arrivals p50 {}, p90 {}, max {}",
                p.blocks,
                p.measured,
                p.delays,
                f(p.p50_ms),
                f(p.p90_ms),
                f(p.max_ms)
            ),
        }
    }
}

/// Renders the page: one HTML file with its data, script and style inline.
pub fn html(page: &Page) -> String {
    // JSON inside <script> must not close it: `<` is written as \u003c.
    let data = serde_json::to_string(page).unwrap_or_else(|_| "{}".into()).replace('<', "\\u003c");
    let title = page.title.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n\
         <div id=\"controls\"><input id=\"slider\" type=\"range\" min=\"0\" max=\"0\" value=\"0\" aria-label=\"time\">\
         <span id=\"time\"></span></div>\n\
         <div id=\"main\"><svg id=\"graph\" xmlns=\"http://www.w3.org/2000/svg\"></svg>\
         <div id=\"side\"><div id=\"legend\"></div><ol id=\"events\"></ol></div></div>\n\
         <h2>Block propagation</h2>\n<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\"></svg>\n\
         <p id=\"summary\"></p>\n\
         <script type=\"application/json\" id=\"data\">{data}</script>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_one_file_with_its_data_and_no_outside_references() {
        let page = Page {
            title: "t <x>".into(),
            nodes: vec![PageNode {
                id: "A".into(),
                name: "</script><b>".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = html(&page);
        assert!(text.contains("<title>t &lt;x></title>"));
        assert!(!text.contains("</script><b>"), "data cannot close its script");
        assert!(text.contains("\\u003c/script>\\u003cb>"));
        for outside in ["http://", "https://", "src=", "href="] {
            let found = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!found.contains(outside), "the page refers to {outside}");
        }
    }
}
