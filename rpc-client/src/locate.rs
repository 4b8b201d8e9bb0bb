//! Where a client finds its node: the network, the data directory and the RPC socket.
//!
//! Owns the one rule every client command follows — `tinychain-node call`,
//! `status`, `peers`, `mempool`, `block`, `tx`, `stop` and every `tinychain-wallet`
//! command: **flags > environment > the configuration file > defaults**. The
//! flags and their environment variables (`TINYCHAIN_CONFIG`,
//! `TINYCHAIN_DATADIR`, `TINYCHAIN_NETWORK`, `TINYCHAIN_RPC_SOCKET`) are read by
//! clap into [`NodeFlags`]; the file is `--config`, else `tinychain.toml` in the
//! data directory, and only its `network`, `datadir` and `[rpc] socket` keys
//! matter here (the node itself checks the rest); the defaults are the main
//! network, [`default_datadir`] and `<datadir>/<network>/rpc.sock`. The node's
//! own configuration loader follows the same rule, so a client finds the socket
//! of a node started with the same flags, file and environment.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tinychain_protocol::params::Network;

use crate::{BlockchainInfo, Client, Error};

/// The name of the configuration file in a data directory.
pub const CONFIG_FILE: &str = "tinychain.toml";

/// The flags (and their environment variables) that say where a node is.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct NodeFlags {
    /// The node's configuration file, read for `network`, `datadir` and `rpc.socket`
    /// [default: tinychain.toml in the data directory, if present].
    #[arg(long, global = true, env = "TINYCHAIN_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Base data directory; each network's data is in a subdirectory of it
    /// [default: $STATE_DIRECTORY, else $XDG_DATA_HOME/tinychain or ~/.local/share/tinychain].
    #[arg(long, global = true, env = "TINYCHAIN_DATADIR", value_name = "DIR")]
    pub datadir: Option<PathBuf>,
    /// The network: main, test or regtest [default: the file's, else main].
    #[arg(long, global = true, env = "TINYCHAIN_NETWORK")]
    pub network: Option<Network>,
    /// The node's RPC socket [default: the file's rpc.socket, else
    /// DATADIR/NETWORK/rpc.sock].
    #[arg(long, global = true, env = "TINYCHAIN_RPC_SOCKET", value_name = "PATH")]
    pub rpc_socket: Option<PathBuf>,
    /// Wait for a node that is starting to answer, like bitcoin-cli's -rpcwait.
    #[arg(long, global = true)]
    pub rpc_wait: bool,
    /// How long --rpc-wait waits, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = DEFAULT_RPC_WAIT.as_secs())]
    pub rpc_wait_timeout: u64,
}

impl Default for NodeFlags {
    /// Nothing given: every value from the file or the defaults.
    fn default() -> NodeFlags {
        NodeFlags {
            config: None,
            datadir: None,
            network: None,
            rpc_socket: None,
            rpc_wait: false,
            rpc_wait_timeout: DEFAULT_RPC_WAIT.as_secs(),
        }
    }
}

/// How long `--rpc-wait` waits unless told otherwise.
pub const DEFAULT_RPC_WAIT: Duration = Duration::from_secs(60);

/// Where a node is, and how that was decided (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The network.
    pub network: Network,
    /// The base data directory.
    pub datadir: PathBuf,
    /// The RPC socket.
    pub socket: PathBuf,
    /// The configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Where the socket's path came from, in words.
    pub socket_from: String,
    /// How long to wait for a node that does not answer yet (`--rpc-wait`).
    pub wait: Option<Duration>,
}

/// A location that cannot be worked out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocateError {
    /// No data directory was given and the user has no home directory.
    #[error(
        "no data directory: give --datadir (or TINYCHAIN_DATADIR), or --rpc-socket for the node"
    )]
    NoDataDir,
    /// The configuration file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration file is not TOML, or its `network`, `datadir` or `rpc.socket` is malformed.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line.
        message: String,
    },
}

/// The keys of the configuration file that locate a node; the rest is the node's.
#[derive(Debug, Default, Deserialize)]
struct FileKeys {
    network: Option<Network>,
    datadir: Option<PathBuf>,
    #[serde(default)]
    rpc: RpcKeys,
}

#[derive(Debug, Default, Deserialize)]
struct RpcKeys {
    socket: Option<PathBuf>,
}

impl NodeFlags {
    /// Works out where the node is, with the user's default data directory.
    ///
    /// # Errors
    ///
    /// See [`LocateError`].
    pub fn locate(&self) -> Result<Location, LocateError> {
        self.locate_with(default_datadir())
    }

    /// Works out where the node is; `default_datadir` is used when none is given.
    ///
    /// # Errors
    ///
    /// See [`LocateError`].
    pub fn locate_with(&self, default_datadir: Option<PathBuf>) -> Result<Location, LocateError> {
        let named = self.datadir.clone().or_else(|| default_datadir.clone());
        let file = match (&self.config, &named) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(dir)) => Some(dir.join(CONFIG_FILE)).filter(|p| p.is_file()),
            (None, None) => None,
        };
        let keys = match &file {
            Some(path) => read_keys(path)?,
            None => FileKeys::default(),
        };
        let network = self.network.or(keys.network).unwrap_or(Network::Main);
        let datadir = self.datadir.clone().or(keys.datadir).or(default_datadir);
        let (socket, socket_from) = match (&self.rpc_socket, &keys.rpc.socket, &datadir) {
            (Some(socket), _, _) => (socket.clone(), "from --rpc-socket".to_owned()),
            (None, Some(socket), _) => (
                socket.clone(),
                format!("rpc.socket in {}", file.as_deref().unwrap_or(Path::new("?")).display()),
            ),
            (None, None, Some(dir)) => {
                let from = if self.datadir.is_some() { "--datadir" } else { "the data directory" };
                (default_socket(dir, network), format!("{from} {} and {network}", dir.display()))
            }
            (None, None, None) => return Err(LocateError::NoDataDir),
        };
        let datadir = datadir.unwrap_or_else(|| socket.parent().unwrap_or(&socket).to_owned());
        let wait = self.rpc_wait.then(|| Duration::from_secs(self.rpc_wait_timeout));
        Ok(Location { network, datadir, socket, config_file: file, socket_from, wait })
    }
}

impl Location {
    /// Connects to the node and checks it follows [`Location::network`]; with
    /// [`Location::wait`], a node that does not answer yet is tried again until then.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_to`]; an unreachable node's error says where the path came from.
    pub fn connect(&self) -> Result<(Client, BlockchainInfo), Error> {
        let deadline = self.wait.map(|wait| Instant::now() + wait);
        loop {
            match Client::connect_to(&self.socket, self.network) {
                Err(Error::Unreachable { .. }) if deadline.is_some_and(|d| Instant::now() < d) => {
                    // Polling: a starting node sends no signal when its socket opens.
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(Error::Unreachable { path, cause, .. }) => {
                    let via = match self.wait {
                        Some(wait) => format!("{}; waited {} s", self.socket_from, wait.as_secs()),
                        None => self.socket_from.clone(),
                    };
                    return Err(Error::Unreachable { path, cause, via: Some(via) });
                }
                other => return other,
            }
        }
    }

    /// The network's subdirectory of the data directory (`<datadir>/<network>`).
    pub fn network_dir(&self) -> PathBuf {
        self.datadir.join(self.network.name())
    }
}

/// The socket of a node on `network` in the base data directory `datadir`.
pub fn default_socket(datadir: &Path, network: Network) -> PathBuf {
    datadir.join(network.name()).join("rpc.sock")
}

/// The default base data directory: `$STATE_DIRECTORY` (set by systemd's
/// `StateDirectory=`), else the user's data directory (`$XDG_DATA_HOME/tinychain`
/// or `~/.local/share/tinychain`).
pub fn default_datadir() -> Option<PathBuf> {
    default_datadir_from(
        std::env::var_os("STATE_DIRECTORY"),
        directories::BaseDirs::new().map(|dirs| dirs.data_dir().to_path_buf()),
    )
}

/// [`default_datadir`] from `$STATE_DIRECTORY` and the user's data directory.
pub fn default_datadir_from(
    state_directory: Option<std::ffi::OsString>,
    user_data: Option<PathBuf>,
) -> Option<PathBuf> {
    // systemd lists several directories separated by ':' when several are configured.
    let state = state_directory.map(|s| s.to_string_lossy().split(':').next().map(PathBuf::from));
    match state.flatten() {
        Some(dir) if !dir.as_os_str().is_empty() => Some(dir),
        _ => user_data.map(|d| d.join("tinychain")),
    }
}

fn read_keys(path: &Path) -> Result<FileKeys, LocateError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| LocateError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text)
        .map_err(|e| LocateError::Parse { path: path.to_owned(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(datadir: Option<&Path>, network: Option<Network>) -> NodeFlags {
        NodeFlags { datadir: datadir.map(Path::to_owned), network, ..NodeFlags::default() }
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let home = Some(dir.path().join("home"));
        // Defaults: main, the default data directory.
        let at = NodeFlags::default().locate_with(home.clone()).expect("locates");
        assert_eq!(at.network, Network::Main);
        assert_eq!(at.socket, dir.path().join("home/main/rpc.sock"));
        assert!(at.config_file.is_none());

        // The data directory's file names the network and is used.
        std::fs::write(dir.path().join(CONFIG_FILE), "network = \"regtest\"\n[p2p]\nx = 1\n")
            .expect("writes");
        let at = flags(Some(dir.path()), None).locate_with(home.clone()).expect("locates");
        assert_eq!(at.network, Network::Regtest);
        assert_eq!(at.socket, dir.path().join("regtest/rpc.sock"));
        assert_eq!(at.config_file, Some(dir.path().join(CONFIG_FILE)));
        assert!(at.socket_from.contains("--datadir"), "{}", at.socket_from);

        // A flag beats the file.
        let at = flags(Some(dir.path()), Some(Network::Test)).locate_with(home).expect("locates");
        assert_eq!(at.socket, dir.path().join("test/rpc.sock"));
    }

    #[test]
    fn the_files_socket_is_used_and_named() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "datadir = \"/srv/tc\"\n[rpc]\nsocket = \"/run/tc.sock\"\n")
            .expect("writes");
        let given = NodeFlags { config: Some(file.clone()), ..NodeFlags::default() };
        let at = given.locate_with(None).expect("locates");
        assert_eq!(at.socket, PathBuf::from("/run/tc.sock"));
        assert_eq!(at.datadir, PathBuf::from("/srv/tc"));
        assert!(at.socket_from.contains("node.toml"), "{}", at.socket_from);
        let at = NodeFlags { rpc_socket: Some("/s.sock".into()), ..given }
            .locate_with(None)
            .expect("locates");
        assert_eq!(at.socket, PathBuf::from("/s.sock"));
        assert_eq!(at.socket_from, "from --rpc-socket");
    }

    #[test]
    fn bad_files_and_no_directory_are_clear_errors() {
        assert!(matches!(NodeFlags::default().locate_with(None), Err(LocateError::NoDataDir)));
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join(CONFIG_FILE), "network = \"moon\"\n").expect("writes");
        let err = flags(Some(dir.path()), None).locate_with(None).expect_err("a bad network");
        assert!(err.to_string().contains("tinychain.toml"), "{err}");
        let missing =
            NodeFlags { config: Some(dir.path().join("nope.toml")), ..NodeFlags::default() };
        assert!(matches!(missing.locate_with(None), Err(LocateError::Read { .. })));
    }

    #[test]
    fn an_unreachable_node_says_where_its_path_came_from() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let err = flags(Some(dir.path()), Some(Network::Regtest))
            .locate_with(None)
            .expect("locates")
            .connect()
            .expect_err("no node");
        let text = err.to_string();
        assert!(
            text.contains(&dir.path().join("regtest/rpc.sock").display().to_string()),
            "{text}"
        );
        assert!(text.contains("--datadir"), "{text}");
    }

    #[test]
    fn rpc_wait_tries_again_until_the_node_answers_or_the_time_is_up() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().expect("a temp dir");
        let at = NodeFlags {
            rpc_wait: true,
            rpc_wait_timeout: 1,
            ..flags(Some(dir.path()), Some(Network::Regtest))
        }
        .locate_with(None)
        .expect("locates");
        let started = Instant::now();
        let err = at.connect().expect_err("nobody answers");
        assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
        assert!(err.to_string().contains("waited 1 s"), "{err}");
        // A node that opens its socket a little later is reached.
        let socket = at.socket.clone();
        let node = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            std::fs::create_dir_all(socket.parent().expect("a parent")).expect("mkdir");
            let listener = UnixListener::bind(&socket).expect("binds");
            let (stream, _) = listener.accept().expect("a client");
            crate::tests::answer_chain_info(stream, Network::Regtest);
        });
        let (_, info) = at.connect().expect("reached once it listens");
        assert_eq!(info.chain, Network::Regtest);
        node.join().expect("the fake node ends");
    }

    #[test]
    fn the_default_data_directory_is_systemds_state_directory_else_the_users() {
        let home = Some(PathBuf::from("/home/u/.local/share"));
        let state = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            default_datadir_from(state("/var/lib/tinychain"), home.clone()),
            Some(PathBuf::from("/var/lib/tinychain"))
        );
        assert_eq!(
            default_datadir_from(state("/var/lib/tinychain:/var/lib/other"), home.clone()),
            Some(PathBuf::from("/var/lib/tinychain"))
        );
        assert_eq!(
            default_datadir_from(None, home.clone()),
            Some(PathBuf::from("/home/u/.local/share/tinychain"))
        );
        assert_eq!(
            default_datadir_from(state(""), home),
            Some(PathBuf::from("/home/u/.local/share/tinychain"))
        );
        assert_eq!(default_datadir_from(None, None), None);
    }
}
