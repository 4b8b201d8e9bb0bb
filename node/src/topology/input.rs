//! Gathering log lines from files, directories and stdin, and knowing who wrote each.
//!
//! Owns turning the command line's inputs into one list of records in time
//! order: [`Collector`] (pure) takes the lines of each file in turn, drops
//! lines seen before (logs copied from several machines, or rotated, overlap),
//! parses the rest and attributes each record to the node that wrote it — the
//! line's own `node` field, else the node the file names (its `node started`,
//! `listening …/p2p/…` or libp2p's `local_peer_id` line). [`read_inputs`] is the
//! only I/O here: it expands directories, reads files and stdin, and feeds the
//! collector. What cannot be used is counted in [`InputStats`], never fatal,
//! except a file with no JSON line at all (a text log, a wrong file).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::Error;
use super::parse::{Event, Record, Skip, parse_line};
use super::time::Time;

/// A record with its writer known, and its place in the input (to keep the order of
/// lines written at the same microsecond).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// When.
    pub time: Time,
    /// The writing node's peer id (one shared copy per node).
    pub node: Arc<str>,
    /// What happened.
    pub event: Event,
    /// Position in the input, for a stable order.
    pub seq: u64,
}

/// What was read, and what could not be used.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InputStats {
    /// Files (and stdin) read.
    pub files: u64,
    /// Lines read.
    pub lines: u64,
    /// Lines identical to one read before, dropped.
    pub duplicates: u64,
    /// Lines that are not JSON.
    pub not_json: u64,
    /// The first of those, as `FILE:LINE`.
    pub first_not_json: Option<String>,
    /// JSON lines without a timestamp, or an event with a field missing or of the wrong type.
    pub malformed: u64,
    /// The first of those, as `FILE:LINE (message)`.
    pub first_malformed: Option<String>,
    /// Lines whose writer could not be told (no `node` field and no identity in the file).
    pub unattributed: u64,
    /// Lines of messages the topology does not use.
    pub other: u64,
    /// Lines used.
    pub used: u64,
    /// Files found in the directories named that are not JSON logs (a data file, a
    /// compressed log), skipped.
    pub skipped_files: u64,
    /// The first of those.
    pub first_skipped: Option<String>,
}

/// Takes log lines file by file and collects their records.
#[derive(Debug, Default)]
pub struct Collector {
    seen: HashSet<u64>,
    stats: InputStats,
    entries: Vec<Entry>,
    names: BTreeMap<Arc<str>, String>,
    file: Option<FileState>,
    seq: u64,
    /// One copy of each writer's peer id.
    interned: HashMap<String, Arc<str>>,
    /// Each node's last `peer status` kept per peer: repeats of it are dropped.
    statuses: HashMap<(Arc<str>, String), (u64, Option<String>)>,
    /// Per node, the last entry if it is a line of another message: a run of
    /// such lines keeps its first and its last (what the model uses of them).
    others: HashMap<Arc<str>, (usize, bool)>,
}

#[derive(Debug)]
struct FileState {
    label: String,
    line: u64,
    json_lines: u64,
    not_json: u64,
    duplicates: u64,
    first_bad: Option<(u64, String)>,
    /// Records in order, with the identity known at that point of the file.
    pending: Vec<(Record, Option<String>)>,
    current: Option<String>,
}

/// The node a record names as its writer (not the peers it talks about).
fn identity(record: &Record) -> Option<String> {
    match &record.event {
        Event::NodeStarted { peer_id, .. } | Event::LocalPeerId { peer_id } => {
            Some(peer_id.clone())
        }
        Event::Listening { address } => address.rsplit_once("/p2p/").map(|(_, id)| id.to_owned()),
        _ => None,
    }
}

impl Collector {
    /// Starts a file (or stdin), named `label` in messages.
    pub fn begin_file(&mut self, label: &str) {
        self.stats.files += 1;
        self.file = Some(FileState {
            label: label.to_owned(),
            line: 0,
            json_lines: 0,
            not_json: 0,
            duplicates: 0,
            first_bad: None,
            pending: Vec::new(),
            current: None,
        });
    }

    /// Takes the file's next line.
    pub fn line(&mut self, text: &str) {
        let Some(file) = self.file.as_mut() else { return };
        file.line += 1;
        self.stats.lines += 1;
        let text = text.trim_end();
        let mut hasher = DefaultHasher::new();
        text.hash(&mut hasher);
        // A 64-bit hash: for the ~2 million lines of a day of 20 nodes, the odds
        // of one false duplicate are about one in ten million (n² / 2^65).
        // Only lines that may be JSON are deduplicated: a data file's garbage is
        // "not JSON" each time, so such a file is still told to be no log.
        if text.trim_start().starts_with('{') && !self.seen.insert(hasher.finish()) {
            self.stats.duplicates += 1;
            file.duplicates += 1;
            return;
        }
        match parse_line(text) {
            Ok(record) => {
                file.json_lines += 1;
                if let Some(id) = record.node.clone().or_else(|| identity(&record)) {
                    file.current = Some(id);
                }
                let known = file.current.clone();
                file.pending.push((record, known));
            }
            Err(Skip::Blank) => {}
            Err(Skip::NotJson) => {
                self.stats.not_json += 1;
                file.not_json += 1;
                let at = format!("{}:{}", file.label, file.line);
                self.stats.first_not_json.get_or_insert(at);
                file.first_bad.get_or_insert((file.line, text.chars().take(60).collect()));
            }
            Err(Skip::Malformed(message)) => {
                file.json_lines += 1;
                self.stats.malformed += 1;
                let what = message.map_or_else(|| "no message".to_owned(), |m| format!("{m:?}"));
                let at = format!("{}:{} ({what})", file.label, file.line);
                self.stats.first_malformed.get_or_insert(at);
            }
        }
    }

    /// Ends the current file: attributes its records to their writers.
    ///
    /// # Errors
    ///
    /// The file held lines but none of them JSON: not a JSON log.
    pub fn end_file(&mut self) -> Result<(), Error> {
        let Some(file) = self.file.take() else { return Ok(()) };
        if file.json_lines == 0
            && let Some((line, text)) = file.first_bad
        {
            // Not a log: what it added to the counts goes.
            self.stats.files -= 1;
            self.stats.lines -= file.line;
            self.stats.not_json -= file.not_json;
            self.stats.duplicates -= file.duplicates;
            if self.stats.first_not_json.as_deref().is_some_and(|f| f.starts_with(&file.label)) {
                self.stats.first_not_json = None;
            }
            return Err(Error::NotJson { file: file.label, line, text });
        }
        // Lines before the file first names its node belong to that node.
        let first = file.pending.iter().find_map(|(_, known)| known.clone());
        for (record, known) in file.pending {
            let Some(id) = record.node.clone().or_else(|| known.clone()).or_else(|| first.clone())
            else {
                self.stats.unattributed += 1;
                continue;
            };
            let node = self.intern(id);
            if let Some(name) = record.node_name
                && self.names.get(&node) != Some(&name)
            {
                self.names.insert(Arc::clone(&node), name);
            }
            match record.event {
                Event::Other | Event::LocalPeerId { .. } => self.stats.other += 1,
                _ => self.stats.used += 1,
            }
            self.keep(Entry { time: record.time, node, event: record.event, seq: 0 });
        }
        self.others.clear();
        Ok(())
    }

    fn intern(&mut self, id: String) -> Arc<str> {
        if let Some(node) = self.interned.get(&id) {
            return Arc::clone(node);
        }
        let node: Arc<str> = Arc::from(id.as_str());
        self.interned.insert(id, Arc::clone(&node));
        node
    }

    /// Keeps an entry, unless it repeats what the model already has from this node.
    fn keep(&mut self, mut entry: Entry) {
        self.seq += 1;
        entry.seq = self.seq;
        if let Event::PeerStatus { peer, height, tip } = &entry.event {
            let key = (Arc::clone(&entry.node), peer.clone());
            if self.statuses.get(&key) == Some(&(*height, tip.clone())) {
                return;
            }
            self.statuses.insert(key, (*height, tip.clone()));
        }
        if entry.event != Event::Other {
            self.others.remove(&entry.node);
        } else if let Some(&(i, first)) = self.others.get(&entry.node) {
            if !first {
                // The middle of a run: the newer line replaces the run's last.
                self.entries[i] = entry;
                return;
            }
            self.others.insert(Arc::clone(&entry.node), (self.entries.len(), false));
        } else {
            self.others.insert(Arc::clone(&entry.node), (self.entries.len(), true));
        }
        self.entries.push(entry);
    }

    /// Returns the records in time order (lines of one moment in input order), the
    /// names nodes gave themselves, and the counts.
    pub fn finish(mut self) -> (Vec<Entry>, Vec<(String, String)>, InputStats) {
        self.entries.sort_by_key(|e| (e.time, e.seq));
        let names = self.names.into_iter().map(|(id, name)| (id.to_string(), name)).collect();
        (self.entries, names, self.stats)
    }
}

/// Reads every input — a file, a directory (its files, recursively, hidden ones
/// skipped), or `-` for stdin — into the collector. A file found in a directory
/// that is not a JSON log (compressed, or no JSON line) is skipped and counted;
/// one named itself is an error.
///
/// # Errors
///
/// An input cannot be read; a file named is compressed or not a JSON log.
pub fn read_inputs(inputs: &[PathBuf], collector: &mut Collector) -> Result<(), Error> {
    if inputs.is_empty() {
        return Err(Error::NoInput);
    }
    for input in inputs {
        if input.as_os_str() == "-" {
            read_stream("stdin", std::io::stdin().lock(), collector)?;
            continue;
        }
        let named = !input.is_dir();
        for file in expand(input)? {
            let label = file.display().to_string();
            let opened = std::fs::File::open(&file)
                .map_err(|e| Error::Read { file: label.clone(), source: e })?;
            match read_stream(&label, opened, collector) {
                Err(Error::NotJson { .. } | Error::Compressed { .. }) if !named => {
                    collector.stats.skipped_files += 1;
                    collector.stats.first_skipped.get_or_insert(label);
                }
                other => other?,
            }
        }
    }
    Ok(())
}

/// The files an input names: itself, or a directory's files in name order.
fn expand(input: &Path) -> Result<Vec<PathBuf>, Error> {
    let meta = std::fs::metadata(input)
        .map_err(|e| Error::Read { file: input.display().to_string(), source: e })?;
    if !meta.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![input.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let read = std::fs::read_dir(&dir)
            .map_err(|e| Error::Read { file: dir.display().to_string(), source: e })?;
        for entry in read {
            let entry =
                entry.map_err(|e| Error::Read { file: dir.display().to_string(), source: e })?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() { dirs.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    Ok(files)
}

fn read_stream(label: &str, stream: impl Read, collector: &mut Collector) -> Result<(), Error> {
    let read_error = |e| Error::Read { file: label.to_owned(), source: e };
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    if reader.fill_buf().map_err(read_error)?.starts_with(&[0x1f, 0x8b]) {
        return Err(Error::Compressed { file: label.to_owned() });
    }
    collector.begin_file(label);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(read_error)? == 0 {
            break;
        }
        collector.line(&String::from_utf8_lossy(&buf));
    }
    collector.end_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: &str, message: &str, extra: &str) -> String {
        format!(r#"{{"timestamp":"2026-12-03T14:02:{t}Z","message":"{message}"{extra}}}"#)
    }

    fn collect(files: &[(&str, Vec<String>)]) -> (Vec<Entry>, InputStats) {
        let mut c = Collector::default();
        for (name, lines) in files {
            c.begin_file(name);
            for l in lines {
                c.line(l);
            }
            c.end_file().expect("a JSON log");
        }
        let (entries, _, stats) = c.finish();
        (entries, stats)
    }

    #[test]
    fn lines_before_the_start_line_belong_to_the_files_node_and_overlaps_are_dropped() {
        let tip = line("40", "new tip", r#","hash":"h1","height":1"#);
        let a = vec![
            tip.clone(),
            line("41", "node started", r#","peer_id":"A""#),
            line("42", "new tip", r#","hash":"h2","height":2"#),
        ];
        // A rotated part of the same log: it overlaps, and names no node but in its lines.
        let a_again = vec![
            line("42", "new tip", r#","hash":"h2","height":2"#),
            line("43", "stopped", r#","node":"A""#),
        ];
        let b = vec![line("39", "listening", r#","address":"/ip4/1.2.3.4/tcp/1/p2p/B""#), tip];
        let (entries, stats) = collect(&[("a.log", a), ("a.1.log", a_again), ("b.log", b)]);
        let who: Vec<(&str, i64)> =
            entries.iter().map(|e| (&*e.node, e.time.micros() / 1_000_000 % 60)).collect();
        assert_eq!(who, [("B", 39), ("A", 40), ("A", 41), ("A", 42), ("A", 43)]);
        assert_eq!(stats.duplicates, 2, "the h2 line in the copy, and b's identical h1 line");
        assert_eq!((stats.lines, stats.used, stats.files), (7, 5, 3));
    }

    #[test]
    fn a_lines_node_field_wins_and_unknown_writers_are_counted() {
        let mixed = vec![
            line("40", "new tip", r#","hash":"h1","height":1,"node":"C""#),
            line("41", "new tip", r#","hash":"h1","height":1,"node":"D""#),
        ];
        let orphan = vec![line("42", "new tip", r#","hash":"h3","height":3"#)];
        let (entries, stats) = collect(&[("stdin", mixed), ("x.log", orphan)]);
        assert_eq!(entries.iter().map(|e| &*e.node).collect::<Vec<_>>(), ["C", "D"]);
        assert_eq!(stats.unattributed, 1);
    }

    #[test]
    fn bad_lines_are_counted_with_where_the_first_was() {
        let lines = vec![
            line("40", "node started", r#","peer_id":"A""#),
            "thread 'main' panicked at src/main.rs".to_owned(),
            r#"{"message":"new tip"}"#.to_owned(),
            line("41", "mining", r#","hash_rate":3"#),
        ];
        let (_, stats) = collect(&[("a.log", lines)]);
        assert_eq!((stats.not_json, stats.malformed, stats.other), (1, 1, 1));
        assert_eq!(stats.first_not_json.as_deref(), Some("a.log:2"));
        assert_eq!(stats.first_malformed.as_deref(), Some("a.log:3 (\"new tip\")"));
    }

    #[test]
    fn what_the_model_would_not_use_is_counted_but_not_kept() {
        let mut lines = vec![line("10", "node started", r#","peer_id":"A""#)];
        for t in 11..16 {
            lines.push(line(&t.to_string(), "mining", r#","hash_rate":3"#));
        }
        for t in 16..19 {
            lines.push(line(&t.to_string(), "peer status", r#","peer":"B","height":4,"tip":"t4""#));
        }
        lines.push(line("19", "peer status", r#","peer":"B","height":5,"tip":"t5""#));
        let (entries, stats) = collect(&[("a.log", lines)]);
        let kept: Vec<i64> = entries.iter().map(|e| e.time.micros() / 1_000_000 % 60).collect();
        // The run of `mining` lines keeps its first and last; repeated statuses go.
        assert_eq!(kept, [10, 11, 15, 16, 19]);
        assert_eq!((stats.lines, stats.other, stats.used), (10, 5, 5));
    }

    #[test]
    fn a_text_log_is_an_error_naming_the_file_and_line() {
        let mut c = Collector::default();
        c.begin_file("node.log");
        c.line("");
        c.line("2026-12-03T14:02:38.252264Z  INFO tinychain_node::p2p: listening address=/ip4/…");
        let err = c.end_file().expect_err("not JSON");
        let text = err.to_string();
        assert!(text.contains("node.log:2") && text.contains("--log-format json"), "{text}");
    }

    #[test]
    fn files_directories_and_compressed_files_are_read_or_refused_clearly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sub = dir.path().join("host1");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("a.log"), line("40", "node started", r#","peer_id":"A""#))
            .expect("write");
        std::fs::write(dir.path().join(".hidden"), "not a log").expect("write");
        // A data file beside the logs: skipped, counted, named.
        std::fs::write(sub.join("chain.redb"), b"redb\x1a\x0a\x00\x00").expect("write");
        let mut c = Collector::default();
        read_inputs(&[dir.path().to_path_buf()], &mut c).expect("reads");
        let (entries, _, stats) = c.finish();
        assert_eq!((entries.len(), stats.files, stats.lines, stats.not_json), (1, 1, 1, 0));
        assert_eq!(stats.skipped_files, 1);
        assert!(stats.first_skipped.is_some_and(|f| f.ends_with("chain.redb")));
        let err = read_inputs(&[sub.join("chain.redb")], &mut Collector::default());
        assert!(err.expect_err("named").to_string().contains("chain.redb:1 is not JSON"));
        std::fs::write(dir.path().join("b.log.gz"), [0x1f, 0x8b, 8, 0]).expect("write");
        let err = read_inputs(&[dir.path().join("b.log.gz")], &mut Collector::default());
        assert!(err.expect_err("compressed").to_string().contains("gunzip"));
        let err = read_inputs(&[dir.path().join("missing.log")], &mut Collector::default());
        assert!(err.expect_err("missing").to_string().contains("missing.log"));
    }
}
