//! `tinychain-node`: runs a tinychain full node, and inspects one's data directory.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use tinychain_node::chain::{self, ChainState};
use tinychain_node::client;
use tinychain_node::datadir::DataDir;
use tinychain_node::node::{self, MiningConfig};
use tinychain_node::p2p;
use tinychain_node::store::redb::RedbStore;
use tinychain_protocol::keys::Address;
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
    /// Runs the node until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Opens a stopped node's data directory, checks it, and prints its tip.
    Inspect(DirArgs),
    /// Calls a method on a running node's RPC socket and prints the JSON result.
    Call {
        #[command(flatten)]
        dir: DirArgs,
        /// The RPC socket (default: rpc.sock in the network's data directory).
        #[arg(long, env = "TINYCHAIN_RPC_SOCKET")]
        rpc_socket: Option<PathBuf>,
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
}

#[derive(clap::Args, Debug)]
struct DirArgs {
    /// Base data directory; the network's data lives in a subdirectory of it.
    #[arg(long, env = "TINYCHAIN_DATADIR")]
    datadir: PathBuf,
    /// The network.
    #[arg(long, default_value = "main", env = "TINYCHAIN_NETWORK")]
    network: Network,
}

/// Flags of the client commands (shared with `tinychain-wallet`).
#[derive(clap::Args, Debug)]
struct ClientArgs {
    /// Base data directory; the socket is <datadir>/<network>/rpc.sock.
    #[arg(long, env = "TINYCHAIN_DATADIR")]
    datadir: Option<PathBuf>,
    /// The network.
    #[arg(long, default_value = "main", env = "TINYCHAIN_NETWORK")]
    network: Network,
    /// The RPC socket (default: rpc.sock in the network's data directory).
    #[arg(long, env = "TINYCHAIN_RPC_SOCKET")]
    rpc_socket: Option<PathBuf>,
    /// Prints JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    fn socket(&self) -> anyhow::Result<PathBuf> {
        Ok(client::socket_path(self.rpc_socket.as_deref(), self.datadir.as_deref(), self.network)?)
    }

    fn show(&self, view: client::View) -> anyhow::Result<()> {
        if self.json {
            emit(&format!(
                "{}
",
                serde_json::to_string_pretty(&view.json)?
            ))
        } else {
            emit(&view.text)
        }
    }
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Mine blocks.
    #[arg(long)]
    mine: bool,
    /// The address mined coins are paid to.
    #[arg(long, env = "TINYCHAIN_MINE_ADDRESS")]
    mine_address: Option<String>,
    /// Mining threads (default: one per core).
    #[arg(long)]
    miner_threads: Option<usize>,
    /// Address to listen on for peers (repeatable), e.g. /ip4/0.0.0.0/tcp/9333.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// The RPC socket's path (default: rpc.sock in the network's data directory).
    #[arg(long, env = "TINYCHAIN_RPC_SOCKET")]
    rpc_socket: Option<PathBuf>,
    /// A peer to connect to at start, with its /p2p/<peer id> (repeatable).
    #[arg(
        long = "bootstrap",
        value_name = "MULTIADDR",
        env = "TINYCHAIN_BOOTSTRAP",
        value_delimiter = ','
    )]
    bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS (needs a build with `--features mdns`).
    #[arg(long)]
    mdns: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let pay_to = args
                .mine_address
                .as_deref()
                .map(|a| Address::parse(a, args.dir.network))
                .transpose()
                .context("--mine-address")?
                .map(|a| a.pubkey_hash());
            let threads = args.miner_threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            let listen = if args.listen.is_empty() {
                vec![default_listen(args.dir.network)]
            } else {
                args.listen
            };
            let config = node::Config {
                datadir: args.dir.datadir,
                network: args.dir.network,
                mining: MiningConfig { enabled: args.mine, pay_to, threads },
                p2p: p2p::Config {
                    listen,
                    bootstrap: args.bootstrap,
                    mdns: args.mdns,
                    ..Default::default()
                },
                core: Default::default(),
                rpc_socket: args.rpc_socket,
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
            runtime.block_on(node::run(config))
        }
        Command::Inspect(dir) => inspect(&dir),
        Command::Call { dir, rpc_socket, method, params } => {
            let socket =
                rpc_socket.unwrap_or_else(|| dir.datadir.join(dir.network.name()).join("rpc.sock"));
            let params: Vec<serde_json::Value> = params
                .iter()
                .map(|p| {
                    serde_json::from_str(p).unwrap_or_else(|_| serde_json::Value::String(p.clone()))
                })
                .collect();
            let result: serde_json::Value =
                client::Client::connect(&socket)?.call(&method, params)?;
            emit(&format!("{}\n", serde_json::to_string_pretty(&result)?))
        }
        Command::Status(args) => args.show(client::status(&args.socket()?, args.network)?),
        Command::Peers { client: args, dot } => {
            args.show(client::peers(&args.socket()?, args.network, dot)?)
        }
        Command::Mempool(args) => args.show(client::mempool(&args.socket()?, args.network)?),
        Command::Block { client: args, block } => {
            args.show(client::block(&args.socket()?, args.network, &block)?)
        }
        Command::Tx { client: args, txid } => {
            args.show(client::tx(&args.socket()?, args.network, &txid)?)
        }
        Command::Stop(args) => args.show(client::stop(&args.socket()?, args.network)?),
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

/// The default listen address: all interfaces, the network's port.
fn default_listen(network: Network) -> Multiaddr {
    let port = match network {
        Network::Main => 9333,
        Network::Test => 19333,
        Network::Regtest => 19444,
    };
    format!("/ip4/0.0.0.0/tcp/{port}").parse().expect("a valid literal multiaddr")
}

fn inspect(dir: &DirArgs) -> anyhow::Result<()> {
    let params = Params::new(dir.network);
    let datadir = DataDir::open(&dir.datadir, dir.network)?;
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
