//! `tinychain-node topology`: the network's history rebuilt from the JSON logs of its nodes.
//!
//! Logs copied from many machines — files, directories, stdin, in any order,
//! overlapping or rotated — are merged by time ([`input`]), each line read into
//! an event of docs/p2p.md's event table ([`parse`]), and the history rebuilt
//! ([`build`]): nodes and their restarts, links from both ends' accounts of each
//! connection ([`links`]), the gossip mesh, penalties, bans, sync sessions and
//! block propagation ([`blocks`]), with the clock skew the logs reveal. The
//! renderers draw it as text, JSON, DOT or SVG ([`graph`] at one moment) and one
//! offline HTML page. Everything but reading the inputs and running Graphviz is
//! pure; `tinychain-node crawl` draws its findings with the same renderers.

pub mod blocks;
pub mod build;
pub mod graph;
pub mod input;
pub mod links;
pub mod model;
pub mod parse;
pub mod render_dot;
pub mod render_html;
pub mod render_text;
pub mod time;

use std::path::PathBuf;

pub use graph::Graph;
pub use model::Model;
use time::{Moment, Window};

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A timeline of link changes and a summary.
    Text,
    /// The whole model (`topology`) or what was found (`crawl`).
    Json,
    /// A Graphviz graph of the moment (`--at`).
    Dot,
    /// That graph drawn by Graphviz's `dot`.
    Svg,
    /// One self-contained page: the graph with a time slider, and the propagation chart.
    Html,
}

/// An error of `topology` (or of rendering a crawl).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No input named.
    #[error("no input: name log files, directories, or - for stdin")]
    NoInput,
    /// An input cannot be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A compressed (rotated) log.
    #[error(
        "{file} is compressed: gunzip it first (or pipe it: zcat {file} | tinychain-node topology -)"
    )]
    Compressed {
        /// The file.
        file: String,
    },
    /// A file without a single JSON line.
    #[error(
        "{file}:{line} is not JSON ({text:?}): topology reads JSON logs, written with \
         --log-format json (log.format = \"json\")"
    )]
    NotJson {
        /// The file.
        file: String,
        /// Its first line that is not JSON.
        line: u64,
        /// The start of that line.
        text: String,
    },
    /// Nothing usable in the inputs.
    #[error("no usable log line in the input ({0})")]
    Empty(String),
    /// Graphviz is missing or failed.
    #[error(
        "--format svg needs Graphviz's `dot` (apt-get install graphviz): {0}; or use --format dot or html"
    )]
    Graphviz(String),
}

/// The flags of `tinychain-node topology`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The moment the graph formats draw: an RFC 3339 time, +DURATION after the
    /// start, -DURATION before the end, `start` or `end`.
    #[arg(long, default_value = "end", value_parser = Moment::parse)]
    pub at: Moment,
    /// The span block propagation is summed over: FROM..TO, each a moment as for
    /// --at, either may be empty (e.g. -1h.. for the last hour).
    #[arg(long, default_value = "..", value_parser = Window::parse)]
    pub window: Window,
    /// JSON log files (--log-format json), directories of them, or - for stdin.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
}

/// Runs `tinychain-node topology`: reads the inputs, returns the rendering.
///
/// # Errors
///
/// As [`read`] and [`render`].
pub fn run(args: &Args) -> Result<String, Error> {
    render(&read(&args.inputs, args.window)?, args.format, args.at)
}

/// Reads the inputs and rebuilds the model; propagation is summed over `window`.
///
/// # Errors
///
/// An input cannot be read or is not a JSON log, or nothing in them can be used.
pub fn read(inputs: &[PathBuf], window: Window) -> Result<Model, Error> {
    let mut collector = input::Collector::default();
    input::read_inputs(inputs, &mut collector)?;
    let (entries, names, stats) = collector.finish();
    if entries.is_empty() {
        return Err(Error::Empty(format!(
            "{} lines: {} not JSON, {} malformed, {} from an unknown node",
            stats.lines, stats.not_json, stats.malformed, stats.unattributed
        )));
    }
    Ok(build::build(&entries, &names, stats, window))
}

/// Renders the model; `at` is the moment the graph formats show.
///
/// # Errors
///
/// `svg` without Graphviz.
pub fn render(model: &Model, format: Format, at: Moment) -> Result<String, Error> {
    let (start, end) = (model.start.unwrap_or_default(), model.end.unwrap_or_default());
    let at = at.resolve(start, end);
    Ok(match format {
        Format::Text => render_text::text(model),
        Format::Json => json(model),
        Format::Dot => render_dot::dot(&Graph::at(model, at)),
        Format::Svg => render_dot::svg(&Graph::at(model, at))?,
        Format::Html => render_html::html(&render_html::Page::from_model(model, at)),
    })
}

/// Pretty JSON of anything serialisable, with a final newline.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    let mut text =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
