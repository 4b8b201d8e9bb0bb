//! The node's configuration: built-in defaults < TOML file < environment < flags.
//!
//! Owns the layering only. The file has one section per component, and each
//! section *is* that component's own `Config` (`[p2p]` is [`p2p::Config`],
//! `[mempool]` is [`mempool::Config`], ...): its defaults are that type's
//! `Default`, written once, and its keys are that type's fields (unknown keys
//! refused). On top of the file come the `TINYCHAIN_<SECTION>_<KEY>`
//! environment variables, found generically from the shape of the defaults
//! (nested sections too: `TINYCHAIN_MEMPOOL_ORPHANS_MAX_COUNT`), then the
//! command-line flags shared by the subcommands. It also owns the checks that
//! need more than one key, the default data directory and the commented file
//! `tinychain-node config default` prints. It reads the file and the environment
//! it is given and starts nothing.
//!
//! Every error names the key and where it came from (the file's path with line
//! and column, or the environment variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};
use tinychain_protocol::keys::Address;
use tinychain_protocol::params::Network;

use crate::log::{self, LogFormat};
use crate::{chain, core, mempool, p2p, sync};

/// The configuration file's name in the base data directory.
pub const FILE_NAME: &str = "tinychain.toml";
/// The prefix of the environment variables the node reads.
pub const ENV_PREFIX: &str = "TINYCHAIN_";

/// The whole configuration, as written in the file: one section per component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The network: `main`, `test` or `regtest`.
    pub network: Network,
    /// The base data directory; each network's data lives in a subdirectory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datadir: Option<PathBuf>,
    /// Peer-to-peer networking.
    pub p2p: p2p::Config,
    /// The block downloader.
    pub sync: sync::Config,
    /// The chain state.
    pub chain: chain::Config,
    /// The orphan block pool.
    pub orphan_blocks: chain::orphans::Config,
    /// The mempool (and its orphan transactions).
    pub mempool: mempool::Config,
    /// The JSON-RPC socket.
    pub rpc: Rpc,
    /// The chain store.
    pub store: Store,
    /// The miner.
    pub mining: Mining,
    /// The Prometheus endpoint.
    pub metrics: Metrics,
    /// Logging.
    pub log: log::Config,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            network: Network::Main,
            datadir: None,
            p2p: p2p::Config::default(),
            sync: sync::Config::default(),
            chain: chain::Config::default(),
            orphan_blocks: chain::orphans::Config::default(),
            mempool: mempool::Config::default(),
            rpc: Rpc::default(),
            store: Store::default(),
            mining: Mining::default(),
            metrics: Metrics::default(),
            log: log::Config::default(),
        }
    }
}

impl Config {
    /// The core's parts, as configured.
    pub fn core(&self) -> core::Config {
        core::Config {
            chain: self.chain.clone(),
            mempool: self.mempool,
            orphan_blocks: self.orphan_blocks,
        }
    }
}

/// The shortest `p2p.peer_timeout_secs` accepted (pings every half second).
const MIN_PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// `[rpc]`: the JSON-RPC Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rpc {
    /// The socket's path (default: `rpc.sock` in the network's data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
}

/// `[store]`: the redb chain store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// redb's page cache, in MiB: blocks and the block index are read through
    /// it, so the node's resident memory grows with the chain up to this bound.
    /// The default, 1, keeps the node's memory flat; more speeds up initial sync.
    pub cache_mb: u32,
    /// The UTXO cache, in MiB (Bitcoin Core's `-dbcache`): the coins, undo data
    /// and transaction locations changed since the last flush are held in
    /// memory and written in one batch when they pass this budget, every five
    /// minutes, at the tip and at shutdown. The node's resident memory grows by
    /// up to this much (plus the allocator's slack) during initial sync.
    pub coins_cache_mb: u32,
}

impl Default for Store {
    fn default() -> Store {
        Store { cache_mb: 1, coins_cache_mb: crate::store::cache::DEFAULT_BUDGET_MB }
    }
}

impl Store {
    /// Returns the cache size in bytes.
    pub fn cache_bytes(&self) -> usize {
        mib(self.cache_mb)
    }

    /// Returns the UTXO cache's budget in bytes.
    pub fn coins_cache_bytes(&self) -> usize {
        mib(self.coins_cache_mb)
    }
}

/// Returns `n` MiB in bytes, saturating.
pub fn mib(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX).saturating_mul(1024 * 1024)
}

/// `[mining]`: the built-in miner.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mining {
    /// Whether to mine.
    pub enabled: bool,
    /// The address mined coins are paid to (needed when mining).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Mining threads (0: one per core).
    pub threads: usize,
    /// Milliseconds the miner rests after finding a block (0: never; default:
    /// [`DEFAULT_REGTEST_MINE_INTERVAL_MS`] on regtest, where a block takes a
    /// handful of hashes, else 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_interval_ms: Option<u64>,
}

/// The miner's default rest on regtest: about a block a second, like the
/// compose testnet, instead of thousands of empty blocks a second.
pub const DEFAULT_REGTEST_MINE_INTERVAL_MS: u64 = 1_000;

/// `[metrics]`: the Prometheus endpoint (`GET /metrics` over HTTP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Whether to serve metrics.
    pub enabled: bool,
    /// The HTTP address to serve them on (loopback by default; port 0: any free port).
    pub listen: SocketAddr,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics { enabled: false, listen: SocketAddr::from(([127, 0, 0, 1], 9898)) }
    }
}

/// An error loading the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a bad value.
    #[error("config file {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key and its line.
        source: Box<toml::de::Error>,
    },
    /// An environment variable names an unknown key or holds a bad value.
    #[error("environment variable {var}: {detail}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        detail: String,
    },
    /// A value is well-formed but unusable (for example an address of another network).
    #[error("{key}: {detail}")]
    Invalid {
        /// The key, e.g. `mining.address`.
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// No data directory was given and none can be derived.
    #[error(
        "no data directory: pass --datadir or set TINYCHAIN_DATADIR (no home directory to default to)"
    )]
    NoDataDir,
}

/// Flags naming where the configuration and data are (every subcommand that needs them).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DirFlags {
    /// The configuration file (default: tinychain.toml in the data directory, if present).
    #[arg(long, env = "TINYCHAIN_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Base data directory; each network's data lives in a subdirectory of it
    /// [default: $STATE_DIRECTORY, else $XDG_DATA_HOME/tinychain or ~/.local/share/tinychain].
    #[arg(long, env = "TINYCHAIN_DATADIR")]
    pub datadir: Option<PathBuf>,
    /// The network: main, test or regtest [default: main].
    #[arg(long, env = "TINYCHAIN_NETWORK")]
    pub network: Option<Network>,
    /// Log format [default: text; config log.format].
    #[arg(long, value_enum, env = "TINYCHAIN_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The flags of `run` (and `config show`), each overriding its config key.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunFlags {
    /// Where the configuration and data are.
    #[command(flatten)]
    pub dir: DirFlags,
    /// Mine blocks (mining.enabled).
    #[arg(long)]
    pub mine: bool,
    /// The address mined coins are paid to (mining.address; env TINYCHAIN_MINE_ADDRESS).
    #[arg(long)]
    pub mine_address: Option<String>,
    /// Mining threads (mining.threads) [default: one per core].
    #[arg(long)]
    pub miner_threads: Option<usize>,
    /// Milliseconds the miner rests after each block it finds; 0 mines flat out
    /// (mining.min_interval_ms) [default: 1000 on regtest, else 0].
    #[arg(long, value_name = "MS")]
    pub mine_interval: Option<u64>,
    /// Address to listen on for peers (repeatable; p2p.listen), e.g. /ip4/0.0.0.0/tcp/9333.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// The RPC socket's path (rpc.socket; env TINYCHAIN_RPC_SOCKET)
    /// [default: rpc.sock in the network's data directory].
    #[arg(long)]
    pub rpc_socket: Option<PathBuf>,
    /// A peer to connect to at start, with its /p2p/PEER_ID (repeatable; p2p.bootstrap;
    /// env TINYCHAIN_BOOTSTRAP, comma-separated).
    #[arg(long = "bootstrap", value_name = "MULTIADDR", value_delimiter = ',')]
    pub bootstrap: Vec<Multiaddr>,
    /// Connections kept at most (p2p.max_connections; env TINYCHAIN_P2P_MAX_CONNECTIONS).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,
    /// Peers the node tries to keep, dialing peers found by discovery while it has
    /// fewer (p2p.target_peers; env TINYCHAIN_P2P_TARGET_PEERS).
    #[arg(long, value_name = "N")]
    pub target_peers: Option<usize>,
    /// Discover peers on the local network with mDNS (p2p.mdns; needs a build
    /// with `--features mdns`).
    #[arg(long)]
    pub mdns: bool,
    /// Close a connection that received nothing for SECS seconds
    /// (p2p.peer_timeout_secs; env TINYCHAIN_P2P_PEER_TIMEOUT_SECS).
    #[arg(long, value_name = "SECS")]
    pub peer_timeout: Option<u64>,
    /// The UTXO cache's budget in MiB (store.coins_cache_mb; env
    /// TINYCHAIN_STORE_COINS_CACHE_MB).
    #[arg(long, value_name = "MIB")]
    pub coins_cache_mb: Option<u32>,
    /// A name written as `node_name` on every log line (log.name; env TINYCHAIN_LOG_NAME).
    #[arg(long, value_name = "NAME")]
    pub log_name: Option<String>,
    /// Also append every log line to this file (log.file; env TINYCHAIN_LOG_FILE).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9898
    /// (sets metrics.enabled and metrics.listen).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// A loaded, resolved configuration and the file it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration, with every default filled in: `datadir` and `rpc.socket`
    /// are set, `p2p.listen` is not empty, `mining.threads` is at least one.
    pub config: Config,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// The base data directory (also in `config`).
    datadir: PathBuf,
    /// The RPC socket (also in `config`).
    rpc_socket: PathBuf,
}

impl Loaded {
    /// Returns the base data directory.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// Returns the RPC socket's path.
    pub fn rpc_socket(&self) -> &Path {
        &self.rpc_socket
    }

    /// Returns the address mining pays to, if one is configured.
    ///
    /// # Errors
    ///
    /// The address is not valid on the configured network.
    pub fn mining_address(&self) -> Result<Option<Address>, ConfigError> {
        self.config
            .mining
            .address
            .as_deref()
            .map(|a| Address::parse(a, self.config.network))
            .transpose()
            .map_err(|e| ConfigError::Invalid { key: "mining.address", detail: e.to_string() })
    }

    /// Renders the effective configuration as TOML, for `config show`.
    pub fn to_toml(&self) -> String {
        let source = match &self.file {
            Some(path) => format!("# file: {}\n", path.display()),
            None => "# file: none\n".to_string(),
        };
        let body = toml::to_string_pretty(&self.config)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"));
        format!(
            "# The effective configuration: defaults < file < environment < flags.\n{source}\n{body}"
        )
    }
}

/// Loads the configuration from the process's environment, the file the flags
/// or the environment point at, and the flags.
///
/// # Errors
///
/// See [`load_from`].
pub fn load(flags: &RunFlags) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect();
    load_from(flags, &env, default_datadir())
}

/// Loads the configuration from the given environment (`(name, value)` pairs),
/// the file, and the flags; `default_datadir` is used when no data directory is set.
///
/// # Errors
///
/// The file cannot be read or parsed, a key (in the file or the environment) is
/// unknown, a value is malformed or unusable, or there is no data directory.
pub fn load_from(
    flags: &RunFlags,
    env: &[(String, String)],
    default_datadir: Option<PathBuf>,
) -> Result<Loaded, ConfigError> {
    // The file: the one named, else tinychain.toml in the data directory if present.
    let named_datadir = flags.dir.datadir.clone().or_else(|| default_datadir.clone());
    let file = match (&flags.dir.config, &named_datadir) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(dir)) => Some(dir.join(FILE_NAME)).filter(|p| p.is_file()),
        (None, None) => None,
    };
    let mut table = toml::Table::new();
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        table = parse_file(&text)
            .map_err(|source| ConfigError::File { path: path.clone(), source: Box::new(source) })?;
    }
    merge(&mut table, env_table(env)?);
    let mut config: Config = toml::Value::Table(table).try_into().map_err(|e| {
        // Each layer was checked on its own; a failure here is a bug, reported plainly.
        ConfigError::Invalid { key: "configuration", detail: format!("{e}") }
    })?;
    apply_flags(&mut config, flags);
    let (datadir, rpc_socket) = resolve(&mut config, default_datadir)?;
    Ok(Loaded { config, file, datadir, rpc_socket })
}

/// Parses a configuration file's text, refusing unknown keys and bad values.
///
/// # Errors
///
/// The text is not TOML, or a key or value does not fit [`Config`].
pub fn parse_file(text: &str) -> Result<toml::Table, toml::de::Error> {
    // Deserializing into `Config` checks keys and types with line numbers in the
    // error; the raw table is what is merged with the other layers.
    toml::from_str::<Config>(text)?;
    toml::from_str::<toml::Table>(text)
}

/// Variables that set a key under another name: (variable, section, key).
/// They are applied before the key's own variable, which wins over them.
const ENV_ALIASES: &[(&str, &str, &str)] = &[
    ("TINYCHAIN_BOOTSTRAP", "p2p", "bootstrap"),
    ("TINYCHAIN_MINE_ADDRESS", "mining", "address"),
    ("RUST_LOG", "log", "filter"),
];

/// Variables read by clap as flags, not by the environment layer.
const ENV_FLAGS: &[&str] = &["NETWORK", "DATADIR", "CONFIG"];

/// Builds the environment layer: `TINYCHAIN_<SECTION>_<KEY>` for every key of
/// every section (nested sections joined by `_` as well), typed like the key's
/// default, plus [`ENV_ALIASES`]. Variables with the prefix but outside the
/// node's sections (say, a wallet's) are left alone; an unknown key in a known
/// section is refused.
fn env_table(env: &[(String, String)]) -> Result<toml::Table, ConfigError> {
    let shape = defaults_table();
    let mut table = toml::Table::new();
    let mut vars: Vec<&(String, String)> = env.iter().collect();
    vars.sort_by_key(|(name, _)| !ENV_ALIASES.iter().any(|(alias, ..)| alias == name));
    for (name, value) in vars {
        let Some(path) = env_path(name, &shape) else { continue };
        merge(&mut table, env_value(name, &path, value, &shape)?);
    }
    Ok(table)
}

/// The defaults as a TOML table: the shape the environment layer follows.
fn defaults_table() -> toml::Table {
    toml::Table::try_from(Config::default()).unwrap_or_default()
}

/// The key path (`["mempool", "orphans", "max_count"]`) a variable sets, if it
/// is one of the node's.
fn env_path(name: &str, shape: &toml::Table) -> Option<Vec<String>> {
    if let Some((_, section, key)) = ENV_ALIASES.iter().find(|(alias, ..)| *alias == name) {
        return Some(vec![section.to_string(), key.to_string()]);
    }
    let suffix = name.strip_prefix(ENV_PREFIX)?;
    if ENV_FLAGS.contains(&suffix) {
        return None;
    }
    let rest = suffix.to_ascii_lowercase();
    let (section, rest) = longest_section(shape, &rest)?;
    let mut path = vec![section.to_string()];
    let mut table = shape.get(section).and_then(toml::Value::as_table)?;
    let mut rest = rest.to_string();
    // Descend into nested sections while the rest names one; what remains is the key.
    while !table.contains_key(&rest) {
        let Some((sub, tail)) = longest_section(table, &rest) else { break };
        path.push(sub.to_string());
        table = table.get(sub).and_then(toml::Value::as_table)?;
        rest = tail.to_string();
    }
    path.push(rest);
    Some(path)
}

/// The longest name of a sub-table of `table` that `rest` starts with (followed
/// by `_`), and what follows it.
fn longest_section<'a>(table: &'a toml::Table, rest: &'a str) -> Option<(&'a str, &'a str)> {
    table
        .iter()
        .filter(|(_, value)| value.is_table())
        .filter_map(|(name, _)| {
            let tail = rest.strip_prefix(name.as_str())?.strip_prefix('_')?;
            Some((name.as_str(), tail))
        })
        .max_by_key(|(name, _)| name.len())
}

/// The one-variable layer `name=value` sets at `path`, checked on its own so
/// that a bad value or an unknown key is blamed on the variable.
fn env_value(
    name: &str,
    path: &[String],
    value: &str,
    shape: &toml::Table,
) -> Result<toml::Table, ConfigError> {
    let err = |detail: String| ConfigError::Env { var: name.to_string(), detail };
    let (key, sections) = path.split_last().ok_or_else(|| err("no key".into()))?;
    let default = sections
        .iter()
        .try_fold(shape, |t, s| t.get(s).and_then(toml::Value::as_table))
        .and_then(|t| t.get(key));
    let candidates = match default {
        Some(default) => vec![typed_like(default, value).map_err(err)?],
        // A key without a default (an optional one) or an unknown one: a
        // number if it reads as one, else a string.
        None => value
            .trim()
            .parse::<i64>()
            .ok()
            .map(toml::Value::Integer)
            .into_iter()
            .chain(std::iter::once(toml::Value::String(value.to_string())))
            .collect(),
    };
    let mut first_error = None;
    for candidate in candidates {
        let one = sections.iter().rev().fold(
            std::iter::once((key.clone(), candidate)).collect::<toml::Table>(),
            |inner, section| {
                std::iter::once((section.clone(), toml::Value::Table(inner))).collect()
            },
        );
        match toml::Value::Table(one.clone()).try_into::<Config>() {
            Ok(_) => return Ok(one),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let e = first_error.map(|e| e.to_string()).unwrap_or_default();
    if default.is_none() && e.contains("unknown field") {
        return Err(err(format!("unknown key `{key}` in [{}]", sections.join("."))));
    }
    Err(err(e.trim().to_string()))
}

/// `value` read as the same TOML type as `default`: booleans as true/false
/// (or 1/0, yes/no, on/off), whole numbers, lists comma-separated.
fn typed_like(default: &toml::Value, value: &str) -> Result<toml::Value, String> {
    Ok(match default {
        toml::Value::Boolean(_) => match value.trim() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" | "" => toml::Value::Boolean(false),
            other => return Err(format!("{other:?} is not a boolean (true or false)")),
        },
        toml::Value::Integer(_) => toml::Value::Integer(
            value.trim().parse().map_err(|_| format!("{value:?} is not a whole number"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            value.trim().parse().map_err(|_| format!("{value:?} is not a number"))?,
        ),
        toml::Value::Array(_) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| toml::Value::String(v.to_string()))
                .collect(),
        ),
        toml::Value::Table(_) => {
            return Err("names a section: set its keys, TINYCHAIN_<SECTION>_<KEY>".into());
        }
        toml::Value::String(_) | toml::Value::Datetime(_) => toml::Value::String(value.to_string()),
    })
}

/// Merges `upper` into `lower`: tables key by key, anything else replaced.
fn merge(lower: &mut toml::Table, upper: toml::Table) {
    for (key, value) in upper {
        match (lower.get_mut(&key), value) {
            (Some(toml::Value::Table(low)), toml::Value::Table(up)) => merge(low, up),
            (_, value) => {
                lower.insert(key, value);
            }
        }
    }
}

fn apply_flags(config: &mut Config, flags: &RunFlags) {
    if let Some(datadir) = &flags.dir.datadir {
        config.datadir = Some(datadir.clone());
    }
    if let Some(network) = flags.dir.network {
        config.network = network;
    }
    if let Some(format) = flags.dir.log_format {
        config.log.format = format;
    }
    if flags.mine {
        config.mining.enabled = true;
    }
    if let Some(address) = &flags.mine_address {
        config.mining.address = Some(address.clone());
    }
    if let Some(threads) = flags.miner_threads {
        config.mining.threads = threads;
    }
    if let Some(interval) = flags.mine_interval {
        config.mining.min_interval_ms = Some(interval);
    }
    if !flags.listen.is_empty() {
        config.p2p.listen = flags.listen.clone();
    }
    if let Some(socket) = &flags.rpc_socket {
        config.rpc.socket = Some(socket.clone());
    }
    if !flags.bootstrap.is_empty() {
        config.p2p.bootstrap = flags.bootstrap.clone();
    }
    if let Some(max) = flags.max_connections {
        config.p2p.max_connections = max;
    }
    if let Some(target) = flags.target_peers {
        config.p2p.target_peers = target;
    }
    if flags.mdns {
        config.p2p.mdns = true;
    }
    if let Some(secs) = flags.peer_timeout {
        config.p2p.peer_timeout = Duration::from_secs(secs);
    }
    if let Some(mib) = flags.coins_cache_mb {
        config.store.coins_cache_mb = mib;
    }
    if let Some(name) = &flags.log_name {
        config.log.name = Some(name.clone());
    }
    if let Some(file) = &flags.log_file {
        config.log.file = Some(file.clone());
    }
    if let Some(listen) = flags.metrics {
        config.metrics.enabled = true;
        config.metrics.listen = listen;
    }
}

/// Fills in the defaults that depend on other values and checks what cannot be
/// checked key by key.
/// Returns the data directory and the RPC socket.
fn resolve(
    config: &mut Config,
    default_datadir: Option<PathBuf>,
) -> Result<(PathBuf, PathBuf), ConfigError> {
    let datadir = match &config.datadir {
        Some(dir) => dir.clone(),
        None => default_datadir.ok_or(ConfigError::NoDataDir)?,
    };
    let rpc_socket = config
        .rpc
        .socket
        .get_or_insert_with(|| {
            tinychain_rpc_client::locate::default_socket(&datadir, config.network)
        })
        .clone();
    config.datadir = Some(datadir.clone());
    if config.p2p.listen.is_empty() {
        config.p2p.listen = vec![default_listen(config.network)];
    }
    config.mining.min_interval_ms.get_or_insert(match config.network {
        Network::Regtest => DEFAULT_REGTEST_MINE_INTERVAL_MS,
        Network::Main | Network::Test => 0,
    });
    if config.mining.threads == 0 {
        config.mining.threads =
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    }
    if let Some(address) = &config.mining.address {
        Address::parse(address, config.network).map_err(|e| ConfigError::Invalid {
            key: "mining.address",
            detail: format!("{address}: {e}"),
        })?;
    } else if config.mining.enabled {
        return Err(ConfigError::Invalid {
            key: "mining.address",
            detail: "mining needs an address to pay (--mine-address)".into(),
        });
    }
    if config.p2p.peer_timeout < MIN_PEER_TIMEOUT {
        return Err(ConfigError::Invalid {
            key: "p2p.peer_timeout_secs",
            detail: format!(
                "{} s is too short: at least {} s",
                config.p2p.peer_timeout.as_secs(),
                MIN_PEER_TIMEOUT.as_secs()
            ),
        });
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.filter) {
        return Err(ConfigError::Invalid { key: "log.filter", detail: e.to_string() });
    }
    check_limits(config)?;
    Ok((datadir, rpc_socket))
}

/// Refuses limits that would stop a component from working at all.
fn check_limits(config: &Config) -> Result<(), ConfigError> {
    let max_blocks = crate::p2p::protocol::MAX_BLOCKS_PER_RESPONSE;
    let checks: [(&'static str, u64, u64, u64); 6] = [
        ("sync.window", config.sync.window.into(), 1, u64::from(u32::MAX)),
        ("sync.blocks_per_request", as_u64(config.sync.blocks_per_request), 1, as_u64(max_blocks)),
        ("sync.requests_per_peer", as_u64(config.sync.requests_per_peer), 1, u64::MAX),
        ("sync.timeout_secs", config.sync.timeout.as_secs(), 1, u64::MAX),
        ("p2p.rate_limit.capacity", config.p2p.rate_limit.capacity.into(), 1, u64::MAX),
        ("p2p.rate_limit.per_second", config.p2p.rate_limit.per_second.into(), 1, u64::MAX),
    ];
    for (key, value, min, max) in checks {
        if !(min..=max).contains(&value) {
            let detail = if max == u64::MAX {
                format!("{value} is too small: at least {min}")
            } else {
                format!("{value} is out of range: {min} to {max}")
            };
            return Err(ConfigError::Invalid { key, detail });
        }
    }
    Ok(())
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The log filter the node installs for `filter`: libp2p's Kademlia warns
/// "Failed to trigger bootstrap: No known peers" whenever a node without peers
/// starts listening (every standalone start), which is no fault; its
/// `behaviour` module is kept to errors unless the filter names `libp2p_kad`.
pub fn quiet_libp2p(filter: &str) -> String {
    if filter.contains("libp2p_kad") {
        filter.to_owned()
    } else {
        format!("{filter},libp2p_kad::behaviour=error")
    }
}

/// The default listen address: all interfaces, the network's port.
pub fn default_listen(network: Network) -> Multiaddr {
    let port = default_port(network);
    Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip4(std::net::Ipv4Addr::UNSPECIFIED))
        .with(libp2p::multiaddr::Protocol::Tcp(port))
}

/// The network's default peer-to-peer port.
pub const fn default_port(network: Network) -> u16 {
    match network {
        Network::Main => 9333,
        Network::Test => 19333,
        Network::Regtest => 19444,
    }
}

/// The default base data directory (the clients' rule: see
/// [`tinychain_rpc_client::locate::default_datadir`]).
pub use tinychain_rpc_client::locate::default_datadir;

/// The commented file `tinychain-node config default` prints: every key at its default.
pub const DEFAULT_FILE: &str = r#"# tinychain-node configuration.
#
# Values are layered: built-in defaults < this file < environment variables
# (TINYCHAIN_<SECTION>_<KEY> for every key below, e.g.
# TINYCHAIN_P2P_MAX_CONNECTIONS=20; nested sections too, e.g.
# TINYCHAIN_MEMPOOL_ORPHANS_MAX_COUNT=50; lists comma-separated) < flags.
# The node reads <datadir>/tinychain.toml if present, or the file given with
# --config (or TINYCHAIN_CONFIG). Unknown keys are refused.

# The network: "main", "test" or "regtest" (env TINYCHAIN_NETWORK, --network).
network = "main"

# The base data directory; each network's data lives in a subdirectory
# (env TINYCHAIN_DATADIR, --datadir). Default: $STATE_DIRECTORY under systemd,
# else $XDG_DATA_HOME/tinychain or ~/.local/share/tinychain.
# datadir = "/var/lib/tinychain"

[p2p]
# Addresses to listen on (--listen, repeatable). Empty: /ip4/0.0.0.0/tcp/<port>
# with port 9333 on main, 19333 on test, 19444 on regtest.
listen = []
# Peers to dial at start and re-dial while disconnected, each with its peer id
# (--bootstrap, repeatable; env TINYCHAIN_BOOTSTRAP, comma-separated), e.g.
# "/dns4/seed.example.org/tcp/9333/p2p/12D3KooW...".
bootstrap = []
# Connections kept at most (--max-connections).
max_connections = 50
# Peers the node tries to keep: below this it dials peers found by discovery
# (--target-peers).
target_peers = 8
# Discover peers on the local network with mDNS (--mdns); needs a build with
# `--features mdns`.
mdns = false
# Seconds without a byte from a peer after which its connection is closed,
# logged as `connection closed … reason="inactivity"` (--peer-timeout). Pings
# run every quarter of it and time out after half of it; a connection whose
# pings keep failing is closed sooner (`reason="ping timeout"`).
peer_timeout_secs = 20
# The node's identity key (libp2p protobuf encoding), created if missing; its
# peer id is what others put after /p2p/. `tinychain-node identity PATH`
# creates one and prints the peer id. Default: identity.key in the network's
# data directory.
# identity_file = "/etc/tinychain/identity.key"

[p2p.rate_limit]
# Each peer's incoming sync requests (status, headers, blocks) are metered by
# a token bucket of `capacity` tokens refilled at `per_second` tokens a second;
# a request takes one token (GetHeaders ten), and one without enough tokens is
# answered "rate limited" at once, never queued (docs/p2p.md, "Rate limits").
capacity = 100
per_second = 50

[sync]
# Headers first, then blocks from every suitable peer (docs/p2p.md, "Sync").
# Blocks past the fork with the best header that may be requested at once
# (Bitcoin Core's BLOCK_DOWNLOAD_WINDOW).
window = 1024
# Blocks asked for in one request (1 to 16, the most a peer sends in one reply).
blocks_per_request = 16
# Block requests in flight per peer.
requests_per_peer = 2
# Seconds a block request may go unanswered before its peer counts as
# stalling: it is dropped and its blocks are asked of others.
timeout_secs = 20

[chain]
# Threads checking a block's signatures. Default: one per core.
# script_threads = 4
# Check the stored UTXO set against its stored digest at start-up (reads every
# coin once: a start takes longer with a large UTXO set).
verify_utxo_on_start = true

[orphan_blocks]
# Blocks whose parent is not known yet, kept while the parent is fetched:
# at most this many, this many bytes in all, for this many seconds.
max_count = 256
max_bytes = 33554432
ttl_secs = 600

[mempool]
# Total bytes of unconfirmed transactions kept; above it the lowest fee rates
# are evicted (Bitcoin Core's -maxmempool).
max_bytes = 67108864
# Least fee rate, in belushis per byte, to accept and relay a transaction
# (-minrelaytxfee).
min_relay_fee_rate = 1
# What a replacement must pay for its own bytes above the fees of what it
# replaces, belushis per byte (-incrementalrelayfee; BIP125 rule 4).
incremental_relay_fee_rate = 1
# Most unconfirmed ancestors, itself included, a transaction may have
# (-limitancestorcount).
max_ancestors = 25
# Seconds after which an unconfirmed transaction is dropped (-mempoolexpiry;
# 14 days).
expiry_secs = 1209600
# The largest transaction accepted and relayed, in bytes: policy, not
# consensus (Bitcoin Core's MAX_STANDARD_TX_WEIGHT).
max_tx_size = 100000

[mempool.orphans]
# Transactions whose inputs are not known yet, kept until a parent arrives:
# at most this many, none larger than max_tx_size bytes, for ttl_secs seconds.
max_count = 100
max_tx_size = 100000
ttl_secs = 1200

[rpc]
# The JSON-RPC Unix socket (mode 0600) (--rpc-socket).
# Default: rpc.sock in the network's data directory.
# socket = "/run/tinychain/rpc.sock"

[store]
# redb's page cache, in MiB: the node's memory grows with the chain up to
# this bound. More makes initial sync faster.
cache_mb = 1
# The UTXO cache, in MiB (like Bitcoin Core's -dbcache): coins changed since
# the last flush are held in memory and written in one batch when they pass
# this budget, every five minutes, at the tip and at shutdown
# (--coins-cache-mb).
coins_cache_mb = 64

[mining]
# Mine blocks (--mine).
enabled = false
# The address mined coins are paid to; needed when mining (--mine-address).
# address = "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r"
# Mining threads; 0 means one per core (--miner-threads).
threads = 0
# Milliseconds the miner rests after finding a block; 0 never rests
# (--mine-interval). Default: 1000 on regtest, where a block takes a handful of
# hashes (about a block a second), else 0.
# min_interval_ms = 1000

[metrics]
# Serve Prometheus metrics (OpenMetrics text) at http://<listen>/metrics
# (--metrics ADDR sets both keys). docs/metrics.md lists them.
enabled = false
# The address to serve on. Loopback by default: the endpoint has no
# authentication, so expose it only to the network a Prometheus scrapes from.
listen = "127.0.0.1:9898"

[log]
# A tracing filter, RUST_LOG style (RUST_LOG, if set, overrides it), e.g.
# "info,tinychain_node::p2p=debug".
filter = "info"
# "text" for people, "json" for one object per line (--log-format).
format = "text"
# Every line of a running node names it: `node` is its peer id; a name set
# here is written as `node_name` too (--log-name).
# name = "seed1"
# Append every line to this file as well as stderr, in the same format
# (--log-file); for machines without a journal.
# file = "/var/log/tinychain/node.log"
"#;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The error with its sources, as `main` prints it.
    fn full(e: &ConfigError) -> String {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn load_env(vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        load_from(&RunFlags::default(), &env(vars), Some(PathBuf::from("/nonexistent/base")))
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("node.toml");
        std::fs::write(&path, text).expect("writes");
        path
    }

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        let table = parse_file(DEFAULT_FILE).expect("parses");
        let config: Config = toml::Value::Table(table).try_into().expect("fits");
        assert_eq!(config, Config::default());
    }

    /// `text` with its commented-out example keys (`# key = value`) put back.
    fn with_examples(text: &str) -> String {
        let is_key = |line: &str| {
            line.split_once(" = ").is_some_and(|(key, _)| {
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
        };
        let lines = text.lines().map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_key(rest) => rest,
            _ => line,
        });
        lines.collect::<Vec<_>>().join("\n")
    }

    /// The keys [`Config`] accepts in the section at `path`, as serde lists them
    /// when it refuses an unknown one (fields the node sets itself are not among them).
    fn accepted_keys(path: &[String]) -> BTreeSet<String> {
        let probe = path.iter().rev().fold(
            std::iter::once(("no_such_key".to_string(), toml::Value::Integer(0))).collect(),
            |inner: toml::Table, section| {
                std::iter::once((section.clone(), toml::Value::Table(inner))).collect()
            },
        );
        let err = toml::Value::Table(probe).try_into::<Config>().expect_err("an unknown key");
        let err = err.to_string();
        let (_, expected) = err.split_once("expected").expect("serde lists the fields");
        // The list ends the line; a line after it may name the section.
        let expected = expected.lines().next().unwrap_or_default();
        expected.split('`').skip(1).step_by(2).map(str::to_string).collect()
    }

    /// Asserts that the keys of `table` (at `path`) are the section's keys, recursively.
    fn assert_documents_every_key(table: &toml::Table, path: &mut Vec<String>) {
        let documented: BTreeSet<String> = table.keys().cloned().collect();
        assert_eq!(documented, accepted_keys(path), "DEFAULT_FILE's [{}]", path.join("."));
        for (key, value) in table {
            if let Some(section) = value.as_table() {
                path.push(key.clone());
                assert_documents_every_key(section, path);
                path.pop();
            }
        }
    }

    #[test]
    fn the_default_file_documents_every_key_of_every_component() {
        let full: toml::Table = toml::from_str(&with_examples(DEFAULT_FILE)).expect("parses");
        // Every documented key is one of its component's (unknown keys are refused) ...
        toml::Value::Table(full.clone()).try_into::<Config>().expect("every key exists");
        // ... and every key of every component is documented.
        assert_documents_every_key(&full, &mut Vec::new());
    }

    #[test]
    fn the_default_file_holds_every_default() {
        let mut defaults = defaults_table();
        // The one default that depends on the machine (one thread per core) is
        // an example in the file.
        let chain = defaults.get_mut("chain").and_then(toml::Value::as_table_mut);
        chain.expect("a [chain] section").remove("script_threads").expect("a default");
        let file: toml::Table = toml::from_str(DEFAULT_FILE).expect("parses");
        assert_eq!(file, defaults);
    }

    #[test]
    fn every_component_is_configured_from_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "[mempool]\nmax_bytes = 1000\n[mempool.orphans]\nmax_count = 3\n\
             [sync]\ntimeout_secs = 5\n[chain]\nscript_threads = 2\n\
             [orphan_blocks]\nttl_secs = 60\n[p2p.rate_limit]\ncapacity = 7\n",
        );
        let flags = RunFlags {
            dir: DirFlags { config: Some(path), ..Default::default() },
            ..Default::default()
        };
        let loaded = load_from(&flags, &[], Some(dir.path().to_path_buf())).expect("loads");
        let core = loaded.config.core();
        assert_eq!((core.mempool.max_bytes, core.mempool.orphans.max_count), (1000, 3));
        assert_eq!(core.mempool.max_ancestors, mempool::Config::default().max_ancestors);
        assert_eq!(core.chain.script_threads.get(), 2);
        assert_eq!(core.orphan_blocks.ttl_secs, 60);
        assert_eq!(loaded.config.sync.timeout, Duration::from_secs(5));
        assert_eq!(loaded.config.p2p.rate_limit.capacity, 7);
        // `config show` prints them in their sections.
        let shown = loaded.to_toml();
        let shown: toml::Table = toml::from_str(&shown).expect("parses");
        assert_eq!(shown["mempool"]["max_bytes"].as_integer(), Some(1000));
        assert_eq!(shown["mempool"]["orphans"]["max_count"].as_integer(), Some(3));
        assert_eq!(shown["sync"]["timeout_secs"].as_integer(), Some(5));
        assert_eq!(shown["p2p"]["rate_limit"]["capacity"].as_integer(), Some(7));
        // A field the node sets itself is not a key.
        let path = write(dir.path(), "[chain]\nactivate_on_start = false\n");
        let flags = RunFlags {
            dir: DirFlags { config: Some(path.clone()), ..Default::default() },
            ..Default::default()
        };
        let err = full(&load_from(&flags, &[], None).expect_err("not a key"));
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("activate_on_start") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn every_key_of_every_section_has_its_environment_variable() {
        let loaded = load_env(&[
            ("TINYCHAIN_MEMPOOL_MAX_BYTES", "5000"),
            ("TINYCHAIN_MEMPOOL_ORPHANS_MAX_COUNT", "9"),
            ("TINYCHAIN_MEMPOOL_ORPHANS_TTL_SECS", "30"),
            ("TINYCHAIN_P2P_RATE_LIMIT_PER_SECOND", "3"),
            ("TINYCHAIN_SYNC_TIMEOUT_SECS", "4"),
            ("TINYCHAIN_SYNC_BLOCKS_PER_REQUEST", "8"),
            ("TINYCHAIN_ORPHAN_BLOCKS_MAX_BYTES", "1024"),
            ("TINYCHAIN_CHAIN_VERIFY_UTXO_ON_START", "false"),
            ("TINYCHAIN_P2P_IDENTITY_FILE", "/etc/tinychain/id.key"),
            ("TINYCHAIN_P2P_LISTEN", "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2"),
            ("TINYCHAIN_LOG_NAME", "7"),
        ])
        .expect("loads");
        let c = &loaded.config;
        assert_eq!((c.mempool.max_bytes, c.mempool.orphans.max_count), (5000, 9));
        assert_eq!(c.mempool.orphans.ttl_secs, 30);
        assert_eq!(c.p2p.rate_limit.per_second, 3);
        assert_eq!((c.sync.timeout, c.sync.blocks_per_request), (Duration::from_secs(4), 8));
        assert_eq!(c.orphan_blocks.max_bytes, 1024);
        assert!(!c.chain.verify_utxo_on_start);
        assert_eq!(c.p2p.identity_file.as_deref(), Some(Path::new("/etc/tinychain/id.key")));
        assert_eq!(c.p2p.listen.len(), 2);
        assert_eq!(c.log.name.as_deref(), Some("7"), "a number is a name where a string is due");

        let err = load_env(&[("TINYCHAIN_MEMPOOL_ORPHANS_MAX_CONT", "3")]).expect_err("a typo");
        let err = err.to_string();
        assert!(err.contains("TINYCHAIN_MEMPOOL_ORPHANS_MAX_CONT"), "{err}");
        assert!(err.contains("unknown key `max_cont` in [mempool.orphans]"), "{err}");
        let err = load_env(&[("TINYCHAIN_CHAIN_ACTIVATE_ON_START", "false")]).expect_err("unset");
        assert!(err.to_string().contains("unknown key `activate_on_start` in [chain]"), "{err}");
        let err = load_env(&[("TINYCHAIN_MEMPOOL_MAX_BYTES", "lots")]).expect_err("bad");
        let err = err.to_string();
        assert!(err.contains("TINYCHAIN_MEMPOOL_MAX_BYTES") && err.contains("lots"), "{err}");
        let err = load_env(&[("TINYCHAIN_CHAIN_SCRIPT_THREADS", "0")]).expect_err("no threads");
        assert!(err.to_string().contains("TINYCHAIN_CHAIN_SCRIPT_THREADS"), "{err}");
        let err = load_env(&[("TINYCHAIN_P2P_RATE_LIMIT", "5")]).expect_err("a section");
        assert!(err.to_string().contains("TINYCHAIN_P2P_RATE_LIMIT"), "{err}");
        let err = load_env(&[("TINYCHAIN_SYNC_BLOCKS_PER_REQUEST", "17")]).expect_err("too many");
        assert!(err.to_string().contains("sync.blocks_per_request"), "{err}");
    }

    #[test]
    fn the_example_file_parses_and_resolves() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tinychain.example.toml");
        let flags = RunFlags {
            dir: DirFlags { config: Some(path.clone()), ..Default::default() },
            ..Default::default()
        };
        let loaded =
            load_from(&flags, &[], Some(PathBuf::from("/var/lib/tinychain"))).expect("loads");
        assert_eq!(loaded.file.as_deref(), Some(path.as_path()));
        assert_eq!(loaded.config.network, Network::Test);
        assert!(!loaded.config.p2p.bootstrap.is_empty());
        // A server does not mine unless its operator gives an address of their own.
        assert!(!loaded.config.mining.enabled);
        assert!(loaded.mining_address().expect("valid").is_none());
        assert!(loaded.config.metrics.enabled && loaded.config.metrics.listen.ip().is_loopback());
    }

    #[test]
    fn layers_apply_in_order_defaults_file_env_flags() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(
            dir.path(),
            "network = \"regtest\"\n[p2p]\nmax_connections = 10\nlisten = [\"/ip4/127.0.0.1/tcp/1\"]\n\
             [mining]\nthreads = 3\n[log]\nfilter = \"debug\"\n",
        );
        let mut flags = RunFlags {
            dir: DirFlags { config: Some(path), ..Default::default() },
            ..Default::default()
        };
        let vars = env(&[
            ("TINYCHAIN_P2P_MAX_CONNECTIONS", "20"),
            ("TINYCHAIN_MINING_THREADS", "4"),
            ("TINYCHAIN_BOOTSTRAP", "/ip4/10.0.0.1/tcp/19444, /ip4/10.0.0.2/tcp/19444"),
            ("RUST_LOG", "warn"),
            ("TINYCHAIN_WALLET_FILE", "not the node's business"),
        ]);
        flags.miner_threads = Some(5);
        let loaded = load_from(&flags, &vars, Some(dir.path().to_path_buf())).expect("loads");
        let c = &loaded.config;
        assert_eq!(c.network, Network::Regtest, "file over default");
        assert_eq!(c.p2p.max_connections, 20, "env over file");
        assert_eq!(c.p2p.listen, vec!["/ip4/127.0.0.1/tcp/1".parse::<Multiaddr>().expect("ok")]);
        assert_eq!(c.mining.threads, 5, "flag over env over file");
        assert_eq!(c.p2p.bootstrap.len(), 2, "comma-separated");
        assert_eq!(c.log.filter, "warn", "RUST_LOG over the file");
        assert_eq!(c.datadir.as_deref(), Some(dir.path()), "the default data directory");
        assert_eq!(loaded.rpc_socket(), dir.path().join("regtest").join("rpc.sock"));
        // Flags replace lists.
        flags.bootstrap = vec!["/ip4/10.0.0.3/tcp/1".parse().expect("ok")];
        flags.dir.datadir = Some(dir.path().to_path_buf());
        flags.max_connections = Some(7);
        flags.target_peers = Some(3);
        let loaded = load_from(&flags, &vars, None).expect("loads");
        assert_eq!(loaded.config.p2p.bootstrap, flags.bootstrap);
        assert_eq!((loaded.config.p2p.max_connections, loaded.config.p2p.target_peers), (7, 3));
        // TINYCHAIN_LOG_FILTER beats RUST_LOG.
        let both = [vars.clone(), env(&[("TINYCHAIN_LOG_FILTER", "error")])].concat();
        assert_eq!(load_from(&flags, &both, None).expect("loads").config.log.filter, "error");
    }

    #[test]
    fn the_file_in_the_data_directory_is_read_when_present() {
        let dir = tempfile::tempdir().expect("temp dir");
        let flags = RunFlags {
            dir: DirFlags { datadir: Some(dir.path().to_path_buf()), ..Default::default() },
            ..Default::default()
        };
        assert_eq!(load_from(&flags, &[], None).expect("no file is fine").file, None);
        std::fs::write(dir.path().join(FILE_NAME), "network = \"test\"\n").expect("writes");
        let loaded = load_from(&flags, &[], None).expect("loads");
        assert_eq!(loaded.config.network, Network::Test);
        assert_eq!(loaded.file, Some(dir.path().join(FILE_NAME)));
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_key_and_the_source() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "[p2p]\nlisten = []\nmax_conections = 3\n");
        let flags = RunFlags {
            dir: DirFlags { config: Some(path.clone()), ..Default::default() },
            ..Default::default()
        };
        let err = full(&load_from(&flags, &[], None).expect_err("a typo"));
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("max_conections"), "{err}");
        assert!(err.contains("line 3"), "{err}");

        let path = write(dir.path(), "[wallet]\nfile = \"x\"\n");
        let flags = RunFlags {
            dir: DirFlags { config: Some(path), ..Default::default() },
            ..Default::default()
        };
        let err = full(&load_from(&flags, &[], None).expect_err("an unknown section"));
        assert!(err.contains("wallet"), "{err}");

        let err = load_env(&[("TINYCHAIN_P2P_MAX_CONECTIONS", "3")]).expect_err("a typo");
        let err = err.to_string();
        assert!(err.contains("TINYCHAIN_P2P_MAX_CONECTIONS"), "{err}");
        assert!(err.contains("unknown key `max_conections` in [p2p]"), "{err}");
    }

    #[test]
    fn bad_values_are_blamed_on_their_source() {
        let err = load_env(&[("TINYCHAIN_P2P_MAX_CONNECTIONS", "many")]).expect_err("bad");
        assert!(err.to_string().contains("TINYCHAIN_P2P_MAX_CONNECTIONS"), "{err}");
        let err = load_env(&[("TINYCHAIN_BOOTSTRAP", "not-a-multiaddr")]).expect_err("bad");
        let err = err.to_string();
        assert!(err.contains("TINYCHAIN_BOOTSTRAP") && err.contains("not-a-multiaddr"), "{err}");
        let err = load_env(&[("TINYCHAIN_LOG_FORMAT", "xml")]).expect_err("bad").to_string();
        assert!(err.contains("TINYCHAIN_LOG_FORMAT"), "{err}");
        let err = load_env(&[("TINYCHAIN_MINING_ENABLED", "perhaps")]).expect_err("bad");
        assert!(err.to_string().contains("TINYCHAIN_MINING_ENABLED"), "{err}");

        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "[metrics]\nlisten = \"nowhere\"\n");
        let flags = RunFlags {
            dir: DirFlags { config: Some(path), ..Default::default() },
            ..Default::default()
        };
        let err = full(&load_from(&flags, &[], None).expect_err("bad address"));
        assert!(err.contains("listen") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn metrics_can_be_enabled_by_file_env_or_flag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\n");
        let mut flags = RunFlags {
            dir: DirFlags { config: Some(path), ..Default::default() },
            ..Default::default()
        };
        let loaded = load_from(&flags, &[], Some(dir.path().to_path_buf())).expect("accepted");
        assert!(loaded.config.metrics.enabled);
        assert_eq!(loaded.config.metrics.listen, SocketAddr::from(([127, 0, 0, 1], 0)));

        let vars = env(&[
            ("TINYCHAIN_METRICS_ENABLED", "true"),
            ("TINYCHAIN_METRICS_LISTEN", "[::1]:9100"),
        ]);
        let c = load_env(&[]).expect("loads").config;
        assert!(!c.metrics.enabled, "off by default");
        assert!(c.metrics.listen.ip().is_loopback(), "loopback by default");
        let c = load_from(&RunFlags::default(), &vars, Some(dir.path().to_path_buf()))
            .expect("loads")
            .config;
        assert!(c.metrics.enabled);
        assert_eq!(c.metrics.listen, "[::1]:9100".parse::<SocketAddr>().expect("an address"));

        flags.metrics = Some(SocketAddr::from(([0, 0, 0, 0], 9898)));
        let c = load_from(&flags, &vars, Some(dir.path().to_path_buf())).expect("loads").config;
        assert_eq!(c.metrics.listen, SocketAddr::from(([0, 0, 0, 0], 9898)), "the flag wins");

        let err = load_env(&[("TINYCHAIN_METRICS_LISTEN", "localhost")]).expect_err("no port");
        let err = err.to_string();
        assert!(err.contains("TINYCHAIN_METRICS_LISTEN") && err.contains("listen"), "{err}");
    }

    #[test]
    fn the_peer_timeout_and_the_log_name_and_file_come_from_file_env_or_flag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "[p2p]\npeer_timeout_secs = 9\n[log]\nname = \"seed1\"\n");
        let mut flags = RunFlags {
            dir: DirFlags { config: Some(path), ..Default::default() },
            ..Default::default()
        };
        let base = Some(dir.path().to_path_buf());
        let c = load_env(&[]).expect("loads").config;
        assert_eq!(c.p2p.peer_timeout, p2p::DEFAULT_PEER_TIMEOUT);
        assert_eq!((c.log.name, c.log.file), (None, None));
        let c = load_from(&flags, &[], base.clone()).expect("loads").config;
        assert_eq!((c.p2p.peer_timeout.as_secs(), c.log.name.as_deref()), (9, Some("seed1")));
        let vars = env(&[
            ("TINYCHAIN_P2P_PEER_TIMEOUT_SECS", "7"),
            ("TINYCHAIN_LOG_NAME", "miner"),
            ("TINYCHAIN_LOG_FILE", "/var/log/tinychain.log"),
        ]);
        let c = load_from(&flags, &vars, base.clone()).expect("loads").config;
        assert_eq!((c.p2p.peer_timeout.as_secs(), c.log.name.as_deref()), (7, Some("miner")));
        assert_eq!(c.log.file, Some(PathBuf::from("/var/log/tinychain.log")));
        flags.peer_timeout = Some(5);
        flags.log_name = Some("a".into());
        flags.log_file = Some(PathBuf::from("/tmp/a.log"));
        let c = load_from(&flags, &vars, base.clone()).expect("loads").config;
        assert_eq!((c.p2p.peer_timeout.as_secs(), c.log.name.as_deref()), (5, Some("a")));
        assert_eq!(c.log.file, Some(PathBuf::from("/tmp/a.log")));
        flags.peer_timeout = Some(1);
        let err = load_from(&flags, &vars, base).expect_err("too short");
        assert!(err.to_string().contains("p2p.peer_timeout_secs"), "{err}");
    }

    #[test]
    fn unusable_combinations_are_refused() {
        // Mining without an address.
        let err = load_env(&[("TINYCHAIN_MINING_ENABLED", "true")]).expect_err("no address");
        assert!(err.to_string().contains("mining.address"), "{err}");
        // A regtest address on main.
        let err = load_env(&[("TINYCHAIN_MINE_ADDRESS", "mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r")])
            .expect_err("wrong network");
        assert!(err.to_string().contains("mining.address"), "{err}");
        let err = load_env(&[("TINYCHAIN_LOG_FILTER", "info,[=")]).expect_err("bad filter");
        assert!(err.to_string().contains("log.filter"), "{err}");
        let err = load_from(&RunFlags::default(), &[], None).expect_err("no data directory");
        assert!(matches!(err, ConfigError::NoDataDir), "{err}");
    }

    #[test]
    fn resolved_defaults_are_concrete_and_show_round_trips() {
        let loaded = load_env(&[("TINYCHAIN_NETWORK", "ignored: read by clap")]).expect("loads");
        let c = &loaded.config;
        assert_eq!(c.p2p.listen, vec![default_listen(Network::Main)]);
        assert!(c.mining.threads >= 1);
        // `config show` prints a file that loads back to the same configuration.
        let shown = loaded.to_toml();
        let table = parse_file(&shown).expect("the shown file parses");
        let back: Config = toml::Value::Table(table).try_into().expect("fits");
        assert_eq!(&back, c);
    }

    #[test]
    fn the_miner_paces_itself_on_regtest_unless_told_otherwise() {
        let on = |network: &str, flag: Option<u64>| {
            let flags = RunFlags {
                dir: DirFlags {
                    network: Some(network.parse().expect("a network")),
                    ..Default::default()
                },
                mine_interval: flag,
                ..Default::default()
            };
            let loaded = load_from(&flags, &[], Some(PathBuf::from("/nonexistent/base")));
            loaded.expect("loads").config.mining.min_interval_ms
        };
        assert_eq!(on("regtest", None), Some(DEFAULT_REGTEST_MINE_INTERVAL_MS));
        assert_eq!(on("regtest", Some(0)), Some(0), "0 mines flat out");
        assert_eq!(on("main", None), Some(0));
        assert_eq!(on("test", Some(250)), Some(250));
        let loaded = load_env(&[("TINYCHAIN_MINING_MIN_INTERVAL_MS", "40")]).expect("loads");
        assert_eq!(loaded.config.mining.min_interval_ms, Some(40));
    }
}
