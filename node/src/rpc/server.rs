//! The RPC socket: JSON-RPC 2.0, one object per line, on a Unix domain socket.
//!
//! Owns the listener and the client connections: the socket file (mode 0600, a
//! stale one replaced, a live one refused, its path length checked), limits on
//! line length, connections and time per request, and the JSON-RPC envelope.
//! Each request is parsed here, once, into a [`Command`] (an unknown method is
//! answered at once) and goes to the event loop over a bounded channel with a
//! oneshot for the answer, so the node's state keeps a single owner.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tinychain_rpc_client::types::code;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};
use tracing::{debug, info, warn};

use super::table::Command;

/// Limits of the RPC server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The socket's path.
    pub socket: PathBuf,
    /// Longest request line, in bytes.
    pub max_line: usize,
    /// Clients connected at once at most.
    pub max_connections: usize,
    /// Time the node may take to answer one request.
    pub request_timeout: Duration,
}

impl Config {
    /// The defaults for a socket at `socket`.
    pub fn new(socket: PathBuf) -> Config {
        Config {
            socket,
            // A raw 1 MB block in hex, plus the envelope.
            max_line: 2 * 1024 * 1024 + 4096,
            max_connections: 32,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A JSON-RPC error: code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// A clear message.
    pub message: String,
}

impl RpcError {
    /// The request is not a JSON-RPC 2.0 request object.
    pub fn invalid_request(message: impl Into<String>) -> RpcError {
        RpcError { code: code::INVALID_REQUEST, message: message.into() }
    }
    /// No such method.
    pub fn method_not_found(method: &str) -> RpcError {
        RpcError { code: code::METHOD_NOT_FOUND, message: format!("unknown method {method:?}") }
    }
    /// Bad parameters.
    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError { code: code::INVALID_PARAMS, message: message.into() }
    }
    /// The node failed.
    pub fn internal(message: impl Into<String>) -> RpcError {
        RpcError { code: code::INTERNAL_ERROR, message: message.into() }
    }
    /// Not valid JSON.
    pub fn parse_error(message: impl Into<String>) -> RpcError {
        RpcError { code: code::PARSE_ERROR, message: message.into() }
    }
    /// A request the node understood but refuses (Bitcoin's RPC_VERIFY_* family).
    pub fn rejected(message: impl Into<String>) -> RpcError {
        RpcError { code: code::REJECTED, message: message.into() }
    }
    /// A parameter out of range (bitcoind's RPC_INVALID_PARAMETER).
    pub fn invalid_parameter(message: impl Into<String>) -> RpcError {
        RpcError { code: code::INVALID_PARAMETER, message: message.into() }
    }
    /// Raw data that does not decode (bitcoind's RPC_DESERIALIZATION_ERROR).
    pub fn undecodable(message: impl Into<String>) -> RpcError {
        RpcError { code: code::DESERIALIZATION_ERROR, message: message.into() }
    }
    /// Something asked for does not exist (Bitcoin's RPC_INVALID_ADDRESS_OR_KEY).
    pub fn not_found(message: impl Into<String>) -> RpcError {
        RpcError { code: code::NOT_FOUND, message: message.into() }
    }
}

/// One request for the event loop.
#[derive(Debug)]
pub struct RpcCall {
    /// The call, parsed.
    pub command: Command,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Value, RpcError>>,
}

/// An error starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The path is too long for a Unix socket address.
    #[error("RPC socket path {0} is too long ({1} bytes; the limit is 107)")]
    PathTooLong(PathBuf, usize),
    /// Another live node answers on the socket.
    #[error("RPC socket {0} is in use by a running node")]
    InUse(PathBuf),
    /// The socket cannot be created.
    #[error("RPC socket {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Binds the socket: refuses a live one, replaces a stale one, sets mode 0600.
///
/// # Errors
///
/// See [`ServerError`].
pub async fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let len = path.as_os_str().len();
    if len > 107 {
        return Err(ServerError::PathTooLong(path.to_owned(), len));
    }
    let io = |source| ServerError::Io { path: path.to_owned(), source };
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serves clients until the `calls` receiver is gone.
pub async fn serve(listener: UnixListener, config: Config, calls: mpsc::Sender<RpcCall>) {
    info!(socket = %config.socket.display(), "RPC listening");
    let slots = Arc::new(Semaphore::new(config.max_connections));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            warn!("RPC connection refused: too many clients");
            continue;
        };
        if calls.is_closed() {
            break;
        }
        let client_calls = calls.clone();
        let config = config.clone();
        tokio::spawn(async move {
            serve_client(stream, &config, &client_calls).await;
            drop(permit);
        });
    }
}

async fn serve_client(stream: UnixStream, config: &Config, calls: &mpsc::Sender<RpcCall>) {
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(config.max_line));
    while let Some(line) = lines.next().await {
        let reply = match line {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => handle_line(&line, config, calls).await,
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                let e = RpcError::invalid_request(format!(
                    "request longer than {} bytes",
                    config.max_line
                ));
                let _ = lines.send(envelope(Value::Null, Err(e)).to_string()).await;
                break; // the rest of that line cannot be framed: close
            }
            Err(LinesCodecError::Io(e)) => {
                debug!(error = %e, "RPC client read failed");
                break;
            }
        };
        if lines.send(reply.to_string()).await.is_err() {
            break;
        }
    }
}

/// A request line taken apart: its id, method and parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// The request's id (null if it has none), echoed in the answer.
    pub id: Value,
    /// The method called.
    pub method: String,
    /// The positional parameters.
    pub params: Vec<Value>,
}

/// Takes a request line apart (JSON-RPC 2.0, positional parameters).
///
/// # Errors
///
/// The answer to send instead: the line is not JSON, has no method string, or
/// its parameters are not an array.
pub fn parse_request(line: &str) -> Result<ParsedRequest, Value> {
    let request: Value = serde_json::from_str(line).map_err(|e| {
        envelope(Value::Null, Err(RpcError::parse_error(format!("invalid JSON: {e}"))))
    })?;
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return Err(envelope(
            id,
            Err(RpcError::invalid_request("a request needs a \"method\" string")),
        ));
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(envelope(id, Err(RpcError::invalid_params("\"params\" must be an array"))));
        }
    };
    Ok(ParsedRequest { id, method: method.to_owned(), params })
}

async fn handle_line(line: &str, config: &Config, calls: &mpsc::Sender<RpcCall>) -> Value {
    let ParsedRequest { id, method, params } = match parse_request(line) {
        Ok(parsed) => parsed,
        Err(answer) => return answer,
    };
    let command = match Command::parse(&method, params) {
        Ok(command) => command,
        Err(e) => return envelope(id, Err(e)),
    };
    let (reply, answer) = oneshot::channel();
    let call = RpcCall { command, reply };
    if calls.send(call).await.is_err() {
        return envelope(id, Err(RpcError::internal("the node is shutting down")));
    }
    let result = match tokio::time::timeout(config.request_timeout, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(RpcError::internal("the node dropped the request")),
        Err(_) => Err(RpcError::internal("the node did not answer in time")),
    };
    envelope(id, result)
}

fn envelope(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(e) => {
            json!({ "jsonrpc": "2.0", "id": id, "error": { "code": e.code, "message": e.message } })
        }
    }
}
