//! `tinychain-node`: runs a tinychain full node, and inspects one's data directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tinychain_node::chain::{self, ChainState};
use tinychain_node::client;
use tinychain_node::config::{self, DirFlags, RunFlags};
use tinychain_node::datadir::DataDir;
use tinychain_node::node::{self, MiningConfig};
use tinychain_node::p2p;
use tinychain_node::store::redb::RedbStore;
use tinychain_protocol::params::{Network, Params};

/// A pocket-sized Bitcoin full node.
#[derive(Parser, Debug)]
#[command(name = "tinychain-node", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the node until SIGINT, SIGTERM or the `stop` RPC (a second signal exits at once).
    Run(RunFlags),
    /// Opens a stopped node's data directory, checks it, and prints its tip.
    Inspect(DirFlags),
    /// Calls a method on a running node's RPC socket and prints the JSON result
    /// (a string result as plain text, like bitcoin-cli; `call getblockchaininfo`
    /// doubles as a health check).
    #[command(after_help = format!("Methods:\n{}", tinychain_node::rpc::table::help_text()))]
    Call {
        #[command(flatten)]
        node: client::NodeFlags,
        /// The method, e.g. getblockchaininfo.
        method: String,
        /// Parameters, each JSON (a bare word is taken as a string).
        params: Vec<String>,
    },
    /// Shows a running node's chain, sync, mempool, mining and peer count.
    Status(ClientArgs),
    /// Lists a running node's peers (`--dot`: a Graphviz graph of it and its neighbours).
    Peers {
        #[command(flatten)]
        client: ClientArgs,
        /// Prints a Graphviz graph instead of a table.
        #[arg(long)]
        dot: bool,
    },
    /// Lists a running node's mempool.
    Mempool(ClientArgs),
    /// Shows a block of a running node, by hash or height.
    Block {
        #[command(flatten)]
        client: ClientArgs,
        /// The block's hash or height.
        block: String,
    },
    /// Shows a transaction and where it is (mempool or block).
    Tx {
        #[command(flatten)]
        client: ClientArgs,
        /// The txid.
        txid: String,
    },
    /// Stops a running node.
    Stop(ClientArgs),
    /// Prints a network's consensus parameters and genesis block.
    Params {
        /// The network.
        #[arg(long, default_value = "main", env = "TINYCHAIN_NETWORK")]
        network: Network,
    },
    /// Prints the default configuration file, or the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Rebuilds the network's history (nodes, links, mesh, syncs, block propagation)
    /// from the JSON logs of its nodes, as text, JSON, DOT, SVG or one HTML page.
    Topology(tinychain_node::topology::Args),
    /// Maps a live network from bootstrap addresses, like Nebula: visits every peer
    /// Kademlia names (identify, Status, its routing table) without joining the network.
    Crawl(tinychain_node::crawl::Args),
    /// Prints the peer id of an identity key file, creating the key if the file is missing.
    Identity {
        /// The key file (libp2p protobuf encoding), e.g. <datadir>/<network>/identity.key.
        path: PathBuf,
    },
}

/// Flags of the client commands (shared with `tinychain-wallet`).
#[derive(clap::Args, Debug)]
struct ClientArgs {
    /// Where the node is: flags > environment > its configuration file > defaults.
    #[command(flatten)]
    node: client::NodeFlags,
    /// Prints JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    fn locate(&self) -> anyhow::Result<client::Location> {
        Ok(self.node.locate()?)
    }

    fn show(&self, view: client::View) -> anyhow::Result<()> {
        if self.json {
            emit(&format!("{}\n", serde_json::to_string_pretty(&view.json)?))
        } else {
            emit(&view.text)
        }
    }
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Prints a commented configuration file with every key at its default.
    Default,
    /// Prints the configuration `run` would use with these flags, file and environment.
    Show(Box<RunFlags>),
}

fn main() -> ExitCode {
    use std::io::Write as _;
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stderr (`2>&- `, a killed pager) must not turn the error into a panic.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the log subscriber on stderr: `filter` (RUST_LOG style), text or JSON lines.
fn init_logging(log: &tinychain_node::log::Config) -> anyhow::Result<()> {
    let settings =
        tinychain_node::log::Settings { filter: &log.filter, format: log.format, file: None };
    Ok(tinychain_node::log::init(&settings)?)
}

/// Loads the layered configuration and starts logging as it says.
fn load(flags: &RunFlags) -> anyhow::Result<config::Loaded> {
    let loaded = config::load(flags)?;
    init_logging(&loaded.config.log)?;
    Ok(loaded)
}

/// Loads the configuration and the node's identity key, then starts logging:
/// every line names the node by its peer id (and `log.name`), and goes to
/// `log.file` too if set. The key comes first so that no line goes unnamed.
fn load_node(flags: &RunFlags) -> anyhow::Result<(config::Loaded, libp2p::identity::Keypair)> {
    let loaded = config::load(flags)?;
    let c = &loaded.config;
    let identity_file = match &c.p2p.identity_file {
        Some(path) => path.clone(),
        None => {
            let dir = loaded.datadir().join(c.network.name());
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot use data directory {}", dir.display()))?;
            dir.join(p2p::IDENTITY_FILE)
        }
    };
    let keypair = p2p::load_or_create_identity(&identity_file)?;
    tinychain_node::log::set_identity(tinychain_node::log::Identity {
        node: Some(keypair.public().to_peer_id().to_string()),
        name: c.log.name.clone(),
    });
    let settings = tinychain_node::log::Settings {
        filter: &c.log.filter,
        format: c.log.format,
        file: c.log.file.as_deref(),
    };
    tinychain_node::log::init(&settings)?;
    Ok((loaded, keypair))
}

/// The node's settings from the loaded configuration: each component's section
/// as it is, plus what `config` resolved (directories, the mining address).
fn node_config(
    loaded: &config::Loaded,
    keypair: libp2p::identity::Keypair,
) -> anyhow::Result<node::Config> {
    let c = &loaded.config;
    Ok(node::Config {
        datadir: loaded.datadir().to_path_buf(),
        network: c.network,
        mining: MiningConfig {
            enabled: c.mining.enabled,
            pay_to: loaded.mining_address()?.map(|a| a.pubkey_hash()),
            threads: c.mining.threads,
            min_interval: std::time::Duration::from_millis(
                c.mining.min_interval_ms.unwrap_or_default(),
            ),
        },
        p2p: c.p2p.clone(),
        core: c.core(),
        sync: c.sync.clone(),
        rpc_socket: Some(loaded.rpc_socket().to_path_buf()),
        keypair: Some(keypair),
        store_cache_bytes: c.store.cache_bytes(),
        coins_cache_bytes: c.store.coins_cache_bytes(),
        metrics: c.metrics.enabled.then_some(c.metrics.listen),
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(flags) => {
            let (loaded, keypair) = load_node(&flags)?;
            let config = node_config(&loaded, keypair)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(node::run(config))
        }
        Command::Inspect(dir) => {
            let loaded = load(&RunFlags { dir, ..Default::default() })?;
            inspect(&loaded)
        }
        Command::Call { node, method, params } => {
            let at = node.locate()?;
            let params: Vec<serde_json::Value> = params
                .iter()
                .map(|p| {
                    serde_json::from_str(p).unwrap_or_else(|_| serde_json::Value::String(p.clone()))
                })
                .collect();
            let (mut client, _) = at.connect()?;
            match client.call(&method, params)? {
                serde_json::Value::String(text) if text.ends_with('\n') => emit(&text),
                serde_json::Value::String(text) => emit(&format!("{text}\n")),
                result => emit(&format!("{}\n", serde_json::to_string_pretty(&result)?)),
            }
        }
        Command::Status(args) => args.show(client::status(&args.locate()?)?),
        Command::Peers { client: args, dot } => args.show(client::peers(&args.locate()?, dot)?),
        Command::Mempool(args) => args.show(client::mempool(&args.locate()?)?),
        Command::Block { client: args, block } => {
            args.show(client::block(&args.locate()?, &block)?)
        }
        Command::Tx { client: args, txid } => args.show(client::tx(&args.locate()?, &txid)?),
        Command::Stop(args) => args.show(client::stop(&args.locate()?)?),
        Command::Params { network } => {
            let params = Params::new(network);
            let genesis = params.genesis_block();
            emit(&format!(
                "network:                {network}\n\
                 genesis hash:           {}\n\
                 genesis block:          {}\n\
                 pow limit:              {}\n\
                 target spacing:         {} s\n\
                 coinbase maturity:      {} blocks\n\
                 halving interval:       {} blocks\n\
                 max future block time:  {} s\n",
                genesis.block_hash(),
                hex::encode(genesis.encode()),
                params.pow_limit,
                params.target_spacing,
                params.coinbase_maturity,
                params.subsidy_halving_interval,
                params.max_future_block_time,
            ))
        }
        Command::Config(ConfigCommand::Default) => emit(config::DEFAULT_FILE),
        Command::Config(ConfigCommand::Show(flags)) => emit(&config::load(&flags)?.to_toml()),
        Command::Topology(args) => emit(&tinychain_node::topology::run(&args)?),
        Command::Crawl(args) => {
            // The crawler's own warnings only (RUST_LOG for more), as text on stderr.
            let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
            init_logging(&tinychain_node::log::Config {
                filter,
                ..tinychain_node::log::Config::default()
            })?;
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            let report = runtime.block_on(tinychain_node::crawl::crawl(&args))?;
            emit(&report.render(args.format)?)
        }
        Command::Identity { path } => {
            let keypair = p2p::load_or_create_identity(&path)?;
            emit(&format!("{}\n", keypair.public().to_peer_id()))
        }
    }
}

/// Writes a command's output to stdout. A reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn inspect(loaded: &config::Loaded) -> anyhow::Result<()> {
    let network = loaded.config.network;
    let params = Params::new(network);
    let datadir = DataDir::open(loaded.datadir(), network)?;
    let store = RedbStore::open(&datadir.store_path(), params.genesis_hash())?;
    // Only look: do not connect blocks a crash left stored but unconnected.
    let config = chain::Config {
        verify_utxo_on_start: true,
        activate_on_start: false,
        ..Default::default()
    };
    let chain = ChainState::open(store, params, config)?;
    let tip = chain.tip_entry();
    emit(&format!(
        "height {}\ntip {}\nchainwork {}\nutxo_digest {}\nheaders {}\n",
        chain.height(),
        chain.tip(),
        tip.chainwork,
        chain.utxo_digest(),
        chain.index().len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinychain_node::machine::{self, Time};
    use tinychain_node::store::memory::MemoryStore;

    #[test]
    fn the_files_component_sections_reach_the_running_machine() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("node.toml");
        let text = "network = \"regtest\"\n[mempool]\nmax_bytes = 4096\n\
                    [mempool.orphans]\nmax_count = 2\n[sync]\nwindow = 64\n\
                    [p2p.rate_limit]\nper_second = 3\n";
        std::fs::write(&file, text).expect("writes");
        let flags = RunFlags {
            dir: DirFlags {
                config: Some(file),
                datadir: Some(dir.path().to_path_buf()),
                ..Default::default()
            },
            ..Default::default()
        };
        let loaded = config::load_from(&flags, &[], None).expect("loads");
        let config =
            node_config(&loaded, libp2p::identity::Keypair::generate_ed25519()).expect("maps");
        let machine_config = config.machine();
        assert_eq!(machine_config.sync.window, 64);
        assert_eq!(machine_config.rate_limit.per_second, 3);
        let now = Time::new(1_700_000_000, std::time::Instant::now());
        let node = machine::Node::open(
            MemoryStore::new(),
            Params::new(Network::Regtest),
            machine_config,
            now,
        )
        .expect("opens");
        let mempool = node.core().mempool().config();
        assert_eq!((mempool.max_bytes, mempool.orphans.max_count), (4096, 2));
    }
}
