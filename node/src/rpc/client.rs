//! A blocking client of the RPC socket, for the command line, tests and benchmarks.
//!
//! Owns one request/answer exchange: connect, send one JSON-RPC 2.0 line, read
//! one line back, and turn a JSON-RPC error into [`ClientError::Rpc`].

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// Why a call did not return a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("cannot reach the node at {path} (is it running?): {source}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed midway.
    #[error("talking to the node: {0}")]
    Io(#[from] std::io::Error),
    /// The answer is not a JSON-RPC reply.
    #[error("the node's reply is not JSON-RPC: {0}")]
    BadReply(String),
    /// The node answered with an error.
    #[error("{message} (code {code})")]
    Rpc {
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
}

/// Calls `method` with `params` on the node listening at `socket`, waiting at
/// most `timeout` for the answer.
///
/// # Errors
///
/// See [`ClientError`].
pub fn call(
    socket: &Path,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let stream = UnixStream::connect(socket)
        .map_err(|source| ClientError::Connect { path: socket.display().to_string(), source })?;
    stream.set_read_timeout(Some(timeout))?;
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    writeln!(&stream, "{request}")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let reply: Value =
        serde_json::from_str(&line).map_err(|e| ClientError::BadReply(e.to_string()))?;
    if let Some(error) = reply.get("error") {
        return Err(ClientError::Rpc {
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned(),
        });
    }
    reply.get("result").cloned().ok_or_else(|| ClientError::BadReply("no result".to_owned()))
}
