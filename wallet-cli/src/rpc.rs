//! The wallet's client of the node's RPC socket.
//!
//! Owns one connection to `tinychain-node`'s Unix socket and the JSON-RPC
//! envelope of each call (types from `tinychain_protocol::rpc`), with a read
//! timeout and a bound on the reply's size. It knows no wallet logic and does not
//! depend on the node crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tinychain_protocol::params::Network;
use tinychain_protocol::rpc::{BlockchainInfo, Request, Response, code};

/// How long the node may take to answer.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The longest reply read.
const MAX_REPLY: u64 = 256 * 1024 * 1024;

/// An error talking to the node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Nothing answers on the socket.
    #[error("cannot reach the node at {path} (is tinychain-node running? {cause})")]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The connection failed mid-call.
    #[error("talking to the node at {path}: {cause}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },
    /// The reply is not what this wallet understands.
    #[error("the node's answer to {method} is not understood: {reason}")]
    BadReply {
        /// The method called.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// The node answered with an error.
    #[error("the node refused {method}: {message} (code {code})")]
    Rpc {
        /// The method called.
        method: String,
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The node follows another network than the one asked for.
    #[error("the node at {path} is on {found}, not {expected} (use --network {found})")]
    WrongNetwork {
        /// The socket.
        path: PathBuf,
        /// The network asked for.
        expected: Network,
        /// The node's network.
        found: Network,
    },
}

impl Error {
    /// Tells whether the node said the thing asked for does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Error::Rpc { code, .. } if *code == code::NOT_FOUND)
    }
}

/// A connection to a node.
#[derive(Debug)]
pub(crate) struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects to the socket at `path` and checks that the node follows `network`.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`], [`Error::WrongNetwork`], or a failed first call.
    pub(crate) fn connect(path: &Path, network: Network) -> Result<Client, Error> {
        let unreachable = |cause| Error::Unreachable { path: path.to_owned(), cause };
        let stream = UnixStream::connect(path).map_err(unreachable)?;
        let io = |cause| Error::Io { path: path.to_owned(), cause };
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut client =
            Client { path: path.to_owned(), reader: BufReader::new(stream), writer, next_id: 1 };
        let info: BlockchainInfo = client.call("getblockchaininfo", Vec::new())?;
        if info.chain != network {
            return Err(Error::WrongNetwork {
                path: path.to_owned(),
                expected: network,
                found: info.chain,
            });
        }
        Ok(client)
    }

    /// Calls `method` and decodes its result as `T`.
    ///
    /// # Errors
    ///
    /// See [`Error`].
    pub(crate) fn call<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<T, Error> {
        let io = |cause| Error::Io { path: self.path.clone(), cause };
        let bad = |reason: String| Error::BadReply { method: method.to_owned(), reason };
        let request = Request::new(self.next_id, method, params);
        self.next_id += 1;
        let mut line = serde_json::to_vec(&request).map_err(|e| bad(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(io)?;
        let mut reply = String::new();
        let read = (&mut self.reader).take(MAX_REPLY).read_line(&mut reply).map_err(io)?;
        if read == 0 {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the node closed the connection",
            )));
        }
        let response: Response<Value> =
            serde_json::from_str(&reply).map_err(|e| bad(e.to_string()))?;
        if let Some(error) = response.error {
            return Err(Error::Rpc {
                method: method.to_owned(),
                code: error.code,
                message: error.message,
            });
        }
        serde_json::from_value(response.result.unwrap_or(Value::Null))
            .map_err(|e| bad(e.to_string()))
    }
}
