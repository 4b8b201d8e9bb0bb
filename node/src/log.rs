//! Log lines that can be merged: every line says which node wrote it.
//!
//! Owns the node's log settings (the config file's `[log]`), its format, text
//! and JSON, and where lines go (stderr, and
//! an appended file when asked). Every line carries the writing node's peer id
//! as `node` (and `node_name` when one is set), so the logs of many machines
//! can be put together and still be told apart. The peer id comes from the
//! nearest span with a `node` field (each node's event loop runs in one, so
//! nodes sharing a process are told apart), else from the process's
//! [`Identity`], which `main` sets before logging starts, having loaded the
//! identity key first — so libp2p's own lines, written from tasks outside any
//! span of ours, carry it too.
//!
//! In JSON each line is one object with `timestamp` (RFC 3339, UTC), `level`,
//! `target`, `message`, `node`, `node_name` (only when set) and the event's
//! fields at the top level as JSON types: integers and floats as numbers,
//! booleans as booleans, a field written with `?` whose text is a JSON array
//! (say a `Vec<String>`) as that array, anything else as a string.
//! docs/p2p.md lists the events; that table is the contract.
//!
//! Writing never fails the node: a closed stderr (the reader went away) or a
//! full disk loses lines, never the process.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use serde::{Deserialize, Serialize};

/// What is logged, and how: the config file's `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// A `tracing` filter, `RUST_LOG` style (e.g. `info,tinychain_node::p2p=debug`).
    pub filter: String,
    /// `text` (for people) or `json` (one object per line, for machines).
    pub format: LogFormat,
    /// A name for people, written as `node_name` on every line of a running node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A file a running node appends every line to, besides stderr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config { filter: "info".into(), format: LogFormat::Text, name: None, file: None }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the event's fields at the top level.
    Json,
}

/// Who writes the lines of this process: its node's peer id and optional name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The node's peer id.
    pub node: Option<String>,
    /// A name for people (`--log-name`).
    pub name: Option<String>,
}

static PROCESS: OnceLock<Identity> = OnceLock::new();

/// Sets the process's identity for every line written from now on; only the
/// first call counts (a process runs one node; tests running several name
/// theirs with spans instead).
pub fn set_identity(identity: Identity) {
    let _ = PROCESS.set(identity);
}

fn process_identity() -> &'static Identity {
    static NONE: Identity = Identity { node: None, name: None };
    PROCESS.get().unwrap_or(&NONE)
}

/// Where log lines go and how they look.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// A `tracing` filter, `RUST_LOG` style; an invalid one falls back to `info`.
    pub filter: &'a str,
    /// Text or JSON.
    pub format: LogFormat,
    /// A file to append every line to as well (`--log-file`).
    pub file: Option<&'a Path>,
}

/// An error starting the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log file cannot be opened for appending.
    #[error("cannot open log file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// A subscriber was installed already.
    #[error("logging is already set up: {0}")]
    Installed(String),
}

/// Installs the process's log subscriber (with libp2p's Kademlia quieted,
/// see [`crate::config::quiet_libp2p`]).
///
/// # Errors
///
/// The log file cannot be opened, or logging was set up already.
pub fn init(settings: &Settings<'_>) -> Result<(), Error> {
    let file = match settings.file {
        Some(path) => Some(Arc::new(Mutex::new(
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| Error::File { path: path.display().to_string(), source })?,
        ))),
        None => None,
    };
    // Colours only for a person at a terminal, and never into the file.
    let ansi = settings.format == LogFormat::Text
        && file.is_none()
        && io::IsTerminal::is_terminal(&io::stderr());
    let writer = Tee { file };
    let filter = crate::config::quiet_libp2p(settings.filter);
    let subscriber = subscriber(&filter, settings.format, ansi, writer);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| Error::Installed(e.to_string()))?;
    // libp2p's dependencies that log through the `log` crate (yamux) show up too.
    let _ = tracing_log::LogTracer::init();
    Ok(())
}

/// Returns a subscriber writing `format` lines through `writer`, filtered by
/// `filter` (an invalid filter falls back to `info`). [`init`] installs one;
/// tests use one to read the lines a node writes.
pub fn subscriber<W>(
    filter: &str,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer()
        .event_format(Lines { format })
        .with_ansi(ansi)
        .with_writer(writer)
        // A failed write is not worth a panic (eprint! panics on a closed stderr).
        .log_internal_errors(false);
    tracing_subscriber::registry().with(filter).with(NodeSpans).with(lines)
}

/// Writes each line to stderr and, if set, appends it to a file; errors on
/// either are dropped (there is nowhere to report them). One line at a time,
/// so both get the lines in the same order.
#[derive(Debug, Clone)]
struct Tee {
    file: Option<Arc<Mutex<File>>>,
}

impl<'w> MakeWriter<'w> for Tee {
    type Writer = Tee;

    fn make_writer(&'w self) -> Tee {
        self.clone()
    }
}

impl Write for Tee {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        // The formatter hands over whole lines: one write each, so appends
        // never interleave mid-line.
        match &self.file {
            Some(file) => {
                let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = io::stderr().lock().write_all(line);
                let _ = file.write_all(line);
            }
            None => {
                let _ = io::stderr().lock().write_all(line);
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The `node` field of a span, kept so events inside it can name their node.
#[derive(Debug, Clone)]
struct SpanNode(String);

/// Records the `node` field of every span (see [`SpanNode`]).
struct NodeSpans;

impl<S> Layer<S> for NodeSpans
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut found = FindNode(None);
        attrs.record(&mut found);
        if let (Some(node), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().insert(SpanNode(node));
        }
    }
}

struct FindNode(Option<String>);

impl Visit for FindNode {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "node" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "node" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

/// The node's line format.
#[derive(Debug, Clone, Copy)]
struct Lines {
    format: LogFormat,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let span_node = ctx.event_scope().and_then(|scope| {
            scope.into_iter().find_map(|span| span.extensions().get::<SpanNode>().cloned())
        });
        let identity = process_identity();
        let node = span_node.map(|n| n.0).or_else(|| identity.node.clone());
        let line = Line { timestamp, node, name: identity.name.as_deref() };
        match self.format {
            LogFormat::Json => line.json(&mut writer, event),
            LogFormat::Text => line.text(ctx, &mut writer, event),
        }
    }
}

/// What a line says besides the event.
struct Line<'a> {
    timestamp: String,
    node: Option<String>,
    name: Option<&'a str>,
}

/// Keys every JSON line has; an event field of the same name is written as `<name>_`.
const TOP_LEVEL: [&str; 6] = ["timestamp", "level", "target", "message", "node", "node_name"];

impl Line<'_> {
    fn json(&self, writer: &mut Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let mut out = String::with_capacity(256);
        out.push('{');
        push_pair(&mut out, "timestamp", &Value::String(self.timestamp.clone()));
        push_pair(&mut out, "level", &Value::String(meta.level().to_string()));
        push_pair(&mut out, "target", &Value::String(meta.target().to_owned()));
        push_pair(&mut out, "message", &Value::String(fields.message.unwrap_or_default()));
        if let Some(node) = &self.node {
            push_pair(&mut out, "node", &Value::String(node.clone()));
        }
        if let Some(name) = self.name {
            push_pair(&mut out, "node_name", &Value::String(name.to_owned()));
        }
        for (name, value) in &fields.fields {
            if TOP_LEVEL.contains(&name.as_str()) {
                push_pair(&mut out, &format!("{name}_"), value);
            } else {
                push_pair(&mut out, name, value);
            }
        }
        out.push('}');
        writeln!(writer, "{out}")
    }

    fn text<S, N>(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: &mut Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let ansi = writer.has_ansi_escapes();
        let (dim, reset) = if ansi { ("\x1b[2m", "\x1b[0m") } else { ("", "") };
        let colour = match (ansi, *meta.level()) {
            (false, _) => "",
            (true, Level::ERROR) => "\x1b[31m",
            (true, Level::WARN) => "\x1b[33m",
            (true, Level::INFO) => "\x1b[32m",
            (true, Level::DEBUG) => "\x1b[34m",
            (true, Level::TRACE) => "\x1b[35m",
        };
        write!(
            writer,
            "{dim}{}{reset} {colour}{:>5}{reset} {dim}{}:{reset} ",
            self.timestamp,
            meta.level(),
            meta.target()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some(node) = &self.node {
            write!(writer, " node={node}")?;
        }
        if let Some(name) = self.name {
            write!(writer, " node_name={name:?}")?;
        }
        writeln!(writer)
    }
}

fn push_pair(out: &mut String, key: &str, value: &Value) {
    if out.len() > 1 {
        out.push(',');
    }
    // Serializing a string or a `Value` cannot fail.
    let _ = write!(out, "{}:{}", Value::String(key.to_owned()), value);
}

/// An event's fields as JSON values, in the order they were written.
#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    fields: Vec<(String, Value)>,
}

impl JsonFields {
    fn push(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else if !name.starts_with("log.") {
            // `log.*` are the `log` crate's record metadata, already in target.
            self.fields.push((name.to_owned(), value));
        }
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let number = serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number);
        self.push(field, number);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.push(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.push(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, Value::String(value.to_owned()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        let value = match text.starts_with('[').then(|| serde_json::from_str::<Value>(&text)) {
            Some(Ok(array @ Value::Array(_))) => array,
            _ => Value::String(text),
        };
        self.push(field, value);
    }
}

#[cfg(test)]
mod tests {
    use tracing::{info, info_span, warn};

    use super::*;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Collect {
        type Writer = Collect;

        fn make_writer(&'w self) -> Collect {
            self.clone()
        }
    }

    /// Runs `log` under a subscriber writing `format`; returns the lines.
    fn lines(format: LogFormat, log: impl FnOnce()) -> Vec<String> {
        let out = Collect::default();
        let subscriber = subscriber("info", format, false, out.clone());
        tracing::subscriber::with_default(subscriber, log);
        let bytes = out.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("utf-8").lines().map(str::to_owned).collect()
    }

    #[test]
    fn json_lines_hold_typed_fields_at_the_top_level_and_the_span_node() {
        let listen =
            vec!["/ip4/10.0.0.6/tcp/9333".to_owned(), "/ip4/127.0.0.1/tcp/9333".to_owned()];
        let lines = lines(LogFormat::Json, || {
            let span = info_span!("node", node = "12D3KooWA");
            let _inside = span.enter();
            info!(
                peer = %"12D3KooWB",
                connection_id = 7u64,
                connections_left = 0usize,
                score = -50,
                bootstrap = true,
                blocks_per_s = 118.4,
                direction = "outbound",
                listen = ?listen,
                target = "a field named like a key",
                "connection established"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: Value = serde_json::from_str(&lines[0]).expect("one JSON object");
        assert_eq!(line["message"], "connection established");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["node"], "12D3KooWA");
        assert!(line.get("node_name").is_none(), "no name set: {line}");
        assert_eq!(line["peer"], "12D3KooWB");
        assert_eq!(line["connection_id"], 7);
        assert_eq!(line["connections_left"], 0);
        assert_eq!(line["score"], -50);
        assert_eq!(line["bootstrap"], true);
        assert_eq!(line["blocks_per_s"], 118.4);
        assert_eq!(line["direction"], "outbound");
        assert_eq!(line["listen"], serde_json::json!(listen));
        assert_eq!(line["target_"], "a field named like a key");
        // RFC 3339 in UTC.
        let timestamp = line["timestamp"].as_str().expect("a string");
        assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T', "{timestamp}");
        assert!(lines[0].starts_with("{\"timestamp\":"), "timestamp first: {}", lines[0]);
    }

    #[test]
    fn a_debug_value_that_is_not_a_json_array_stays_a_string() {
        let lines = lines(LogFormat::Json, || {
            warn!(addresses = ?["/ip4/1.2.3.4".parse::<libp2p::Multiaddr>().expect("ok")], "x");
            warn!(error = ?std::io::Error::other("boom"), "y");
        });
        let first: Value = serde_json::from_str(&lines[0]).expect("JSON");
        assert_eq!(first["addresses"], "[/ip4/1.2.3.4]");
        let second: Value = serde_json::from_str(&lines[1]).expect("JSON");
        assert!(second["error"].as_str().is_some_and(|e| e.contains("boom")), "{second}");
        assert!(first.get("node").is_none(), "no node known: {first}");
    }

    #[test]
    fn text_lines_end_with_the_node_and_keep_fields_in_order() {
        let lines = lines(LogFormat::Text, || {
            let span = info_span!("node", node = %"12D3KooWA");
            let _inside = span.enter();
            info!(peer = %"12D3KooWB", direction = "inbound", "connection closed");
        });
        let line = &lines[0];
        assert!(
            line.contains(" INFO tinychain_node::log::tests: connection closed peer=12D3KooWB direction=\"inbound\" node=12D3KooWA"),
            "{line}"
        );
        assert!(line.ends_with("node=12D3KooWA"), "{line}");
        assert!(!line.contains('\x1b'), "no colours asked for: {line:?}");
    }

    #[test]
    fn the_log_file_gets_the_same_lines_appended() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node.log");
        std::fs::write(&path, "an older line\n").expect("writes");
        let file = File::options().append(true).open(&path).expect("opens");
        let tee = Tee { file: Some(Arc::new(Mutex::new(file))) };
        let subscriber = subscriber("info", LogFormat::Json, false, tee);
        tracing::subscriber::with_default(subscriber, || info!(height = 3u32, "new tip"));
        let text = std::fs::read_to_string(&path).expect("reads");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "an older line", "appended, not truncated");
        let line: Value = serde_json::from_str(lines[1]).expect("JSON");
        assert_eq!((line["message"].as_str(), line["height"].as_u64()), (Some("new tip"), Some(3)));
    }
}
