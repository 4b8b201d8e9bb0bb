//! A blocking client of a tinychain node's RPC socket, shared by `tinychain-node`'s
//! client commands and `tinychain-wallet`.
//!
//! Owns one connection to the node's Unix socket and the JSON-RPC envelope of each
//! call: a request line out, a reply line back (the answer types are in
//! [`types`], shared with the node that serializes them), with read and write timeouts and a bound on the
//! reply's size, so a stuck or hostile node cannot hang a client or exhaust its
//! memory. It knows no method but `getblockchaininfo` (to check the network) and
//! renders nothing. It is a crate of its own because `protocol` stays free of I/O
//! and the wallet must not depend on the node.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod locate;
pub mod types;

use crate::types::{BlockchainInfo, Request, Response, code};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tinychain_protocol::params::Network;

pub use locate::{LocateError, Location, NodeFlags};

/// Limits of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How long one read or write may wait for the node (not zero).
    pub timeout: Duration,
    /// The longest reply line read, in bytes, not counting its newline.
    pub max_reply: u64,
}

impl Default for Config {
    /// 60 s and 256 MiB: far above what a healthy node needs for any method, yet a
    /// node that hangs or streams without end is noticed.
    fn default() -> Config {
        Config { timeout: Duration::from_secs(60), max_reply: 256 * 1024 * 1024 }
    }
}

/// An error talking to a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing answers on the socket.
    #[error(
        "cannot reach the node at {path}{} (is tinychain-node running? {cause})",
        via.as_ref().map(|v| format!(" ({v})")).unwrap_or_default()
    )]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Where the path came from (see [`Location`]), when known.
        via: Option<String>,
        /// The OS error.
        cause: io::Error,
    },
    /// The connection failed mid-call.
    #[error("talking to the node at {path}: {cause}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// The node took longer than [`Config::timeout`] to take a request or answer it.
    #[error("the node at {path} did not answer {method} within {timeout:?}")]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// The method called.
        method: String,
        /// The limit.
        timeout: Duration,
    },
    /// The reply is not a JSON-RPC response, or its result is not of the type asked for.
    #[error("the node's answer to {method} is not understood: {reason}")]
    BadReply {
        /// The method called.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// The reply is longer than [`Config::max_reply`].
    #[error("the node's answer to {method} is longer than {limit} bytes")]
    ReplyTooLarge {
        /// The method called.
        method: String,
        /// The limit.
        limit: u64,
    },
    /// The node answered with an error.
    #[error("the node refused {method}: {message} (code {code})")]
    Rpc {
        /// The method called.
        method: String,
        /// The JSON-RPC error code (see [`code`]).
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
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Rpc { code, .. } if *code == code::NOT_FOUND)
    }
}

/// One connection to a node's RPC socket; calls are answered in order.
///
/// After an [`Error::Io`], [`Error::Timeout`] or [`Error::ReplyTooLarge`] the
/// connection may be out of step with the node: drop it and connect again.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    config: Config,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects to the socket at `path` with the default [`Config`].
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if no node answers there.
    pub fn connect(path: &Path) -> Result<Client, Error> {
        Client::connect_with(path, Config::default())
    }

    /// Connects to the socket at `path` with the limits in `config`.
    ///
    /// # Errors
    ///
    /// [`Error::Unreachable`] if no node answers there; [`Error::Io`] if the
    /// socket cannot be set up (a zero timeout, say).
    pub fn connect_with(path: &Path, config: Config) -> Result<Client, Error> {
        let stream = UnixStream::connect(path).map_err(|cause| Error::Unreachable {
            path: path.to_owned(),
            via: None,
            cause,
        })?;
        let io = |cause| Error::Io { path: path.to_owned(), cause };
        stream.set_read_timeout(Some(config.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(config.timeout)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Client {
            path: path.to_owned(),
            config,
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        })
    }

    /// Connects and checks that the node follows `network`; returns its chain info too.
    ///
    /// # Errors
    ///
    /// As [`Client::connect`] and [`Client::call`], and [`Error::WrongNetwork`].
    pub fn connect_to(path: &Path, network: Network) -> Result<(Client, BlockchainInfo), Error> {
        let mut client = Client::connect(path)?;
        let info: BlockchainInfo = client.call("getblockchaininfo", Vec::new())?;
        if info.chain != network {
            return Err(Error::WrongNetwork {
                path: path.to_owned(),
                expected: network,
                found: info.chain,
            });
        }
        Ok((client, info))
    }

    /// Calls `method` with `params` and decodes its result as `T` (`Value` takes any).
    ///
    /// # Errors
    ///
    /// [`Error::Rpc`] if the node answers with an error; [`Error::BadReply`] if
    /// the answer is not a `T`; [`Error::ReplyTooLarge`], [`Error::Timeout`] or
    /// [`Error::Io`] if the connection fails.
    pub fn call<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: Vec<Value>,
    ) -> Result<T, Error> {
        let bad = |reason: String| Error::BadReply { method: method.to_owned(), reason };
        let mut line = serde_json::to_vec(&Request::new(self.next_id, method, params))
            .map_err(|e| bad(e.to_string()))?;
        self.next_id += 1;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|cause| self.failed(method, cause))?;

        let limit = self.config.max_reply;
        let mut reply = Vec::new();
        // One byte over the limit tells a reply of exactly `limit` bytes plus its
        // newline from a longer one.
        (&mut self.reader)
            .take(limit.saturating_add(1))
            .read_until(b'\n', &mut reply)
            .map_err(|cause| self.failed(method, cause))?;
        if reply.is_empty() {
            let cause =
                io::Error::new(io::ErrorKind::UnexpectedEof, "the node closed the connection");
            return Err(self.failed(method, cause));
        }
        if reply.last() == Some(&b'\n') {
            reply.pop();
        }
        if reply.len() as u64 > limit {
            return Err(Error::ReplyTooLarge { method: method.to_owned(), limit });
        }

        let response: Response<Value> =
            serde_json::from_slice(&reply).map_err(|e| bad(e.to_string()))?;
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

    /// Names an I/O failure during a call: a timeout, or a broken connection.
    fn failed(&self, method: &str, cause: io::Error) -> Error {
        match cause.kind() {
            // A socket timeout is `WouldBlock` on Unix, `TimedOut` elsewhere.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
                path: self.path.clone(),
                method: method.to_owned(),
                timeout: self.config.timeout,
            },
            _ => Error::Io { path: self.path.clone(), cause },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;

    use serde_json::json;
    use tinychain_protocol::BlockHash;
    use tinychain_protocol::pow::Work;

    use super::*;

    /// What the fake node does with a request.
    enum Answer {
        /// Writes these bytes.
        Bytes(Vec<u8>),
        /// Writes nothing and waits for the next request.
        Silent,
        /// Closes the connection.
        HangUp,
    }

    /// A JSON-RPC reply line with `result`.
    fn result(result: Value) -> Answer {
        Answer::Bytes(format!("{}\n", json!({ "jsonrpc": "2.0", "result": result })).into_bytes())
    }

    /// A JSON-RPC error reply line.
    fn error(code: i64, message: &str) -> Answer {
        let reply = json!({ "jsonrpc": "2.0", "result": null,
                            "error": { "code": code, "message": message } });
        Answer::Bytes(format!("{reply}\n").into_bytes())
    }

    /// A node on a socket in a temporary directory that answers each request of one
    /// connection with `answer`, until the client hangs up; the thread returns the
    /// requests it read.
    fn fake_node(
        answer: impl Fn(&Value) -> Answer + Send + 'static,
    ) -> (tempfile::TempDir, PathBuf, JoinHandle<Vec<Value>>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("rpc.sock");
        let listener = UnixListener::bind(&path).expect("binds");
        let node = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accepts");
            let mut writer = stream.try_clone().expect("clones");
            let mut requests = Vec::new();
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let request: Value = serde_json::from_str(&line).expect("a JSON request");
                let answer = answer(&request);
                requests.push(request);
                match answer {
                    // The client may hang up before it reads all of an oversized reply.
                    Answer::Bytes(bytes) => {
                        if writer.write_all(&bytes).is_err() {
                            break;
                        }
                    }
                    Answer::Silent => {}
                    Answer::HangUp => break,
                }
            }
            requests
        });
        (dir, path, node)
    }

    /// Answers one `getblockchaininfo` on `stream` as a node on `chain` would.
    pub(crate) fn answer_chain_info(stream: std::os::unix::net::UnixStream, chain: Network) {
        let mut writer = stream.try_clone().expect("clones");
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).expect("a request");
        let request: Value = serde_json::from_str(&line).expect("a JSON request");
        let reply = json!({ "jsonrpc": "2.0", "id": request["id"], "result": chain_info(chain) });
        writer.write_all(format!("{reply}\n").as_bytes()).expect("answers");
    }

    fn chain_info(chain: Network) -> Value {
        let info = BlockchainInfo {
            chain,
            blocks: 7,
            headers: 7,
            bestblockhash: BlockHash::ZERO,
            chainwork: Work::ZERO,
            difficulty: 1.0,
            mediantime: 0,
            initialblockdownload: false,
            verificationprogress: 1.0,
            utxo_digest: String::new(),
        };
        serde_json::to_value(info).expect("serialises")
    }

    #[test]
    fn calls_are_numbered_and_their_results_decoded() {
        let (_dir, path, node) = fake_node(|r| result(json!([r["id"], r["method"]])));
        let mut client = Client::connect(&path).expect("connects");
        let first: (u64, String) = client.call("getblockhash", vec![json!(3)]).expect("answers");
        assert_eq!(first, (1, "getblockhash".to_owned()));
        let second: Value = client.call("getbestblockhash", Vec::new()).expect("answers");
        assert_eq!(second, json!([2, "getbestblockhash"]));
        drop(client);
        let requests = node.join().expect("the node ends");
        assert_eq!(
            requests[0],
            json!({ "jsonrpc": "2.0", "id": 1, "method": "getblockhash", "params": [3] })
        );
        assert_eq!(requests[1]["params"], json!([]));
    }

    #[test]
    fn an_error_answer_names_the_method_and_code() {
        let (_dir, path, _node) = fake_node(|r| match r["id"].as_u64() {
            Some(1) => error(code::NOT_FOUND, "transaction not found"),
            _ => error(code::METHOD_NOT_FOUND, "unknown method"),
        });
        let mut client = Client::connect(&path).expect("connects");
        let err = client.call::<Value>("gettransaction", vec![json!("ab")]).expect_err("refused");
        assert!(matches!(err, Error::Rpc { code: code::NOT_FOUND, .. }), "{err:?}");
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            "the node refused gettransaction: transaction not found (code -5)"
        );
        let err = client.call::<Value>("nosuch", Vec::new()).expect_err("refused");
        assert!(matches!(err, Error::Rpc { code: code::METHOD_NOT_FOUND, .. }), "{err:?}");
        assert!(!err.is_not_found());
    }

    #[test]
    fn garbage_and_results_of_the_wrong_type_are_bad_replies() {
        let (_dir, path, _node) = fake_node(|r| match r["id"].as_u64() {
            Some(1) => Answer::Bytes(b"\xff\xfe not json\n".to_vec()),
            _ => result(json!("seven")),
        });
        let mut client = Client::connect(&path).expect("connects");
        let err = client.call::<Value>("getblockcount", Vec::new()).expect_err("garbage");
        assert!(matches!(&err, Error::BadReply { method, .. } if method == "getblockcount"));
        let err = client.call::<u64>("getblockcount", Vec::new()).expect_err("not a number");
        assert!(
            err.to_string().starts_with("the node's answer to getblockcount is not understood")
        );
    }

    #[test]
    fn a_reply_over_the_limit_is_refused() {
        const LIMIT: u64 = 64;
        // `{"result":""}` is 13 bytes: this reply is exactly at the limit.
        let at_limit = format!(r#"{{"result":"{}"}}"#, "x".repeat(LIMIT as usize - 13));
        let (_dir, path, _node) = fake_node(move |r| match r["id"].as_u64() {
            Some(1) => Answer::Bytes(format!("{at_limit}\n").into_bytes()),
            _ => Answer::Bytes(vec![b'x'; 1000]),
        });
        let config = Config { max_reply: LIMIT, ..Config::default() };
        let mut client = Client::connect_with(&path, config).expect("connects");
        let fits: String = client.call("getbestblockhash", Vec::new()).expect("at the limit");
        assert_eq!(fits.len() as u64, LIMIT - 13);
        let err = client.call::<Value>("getblock", Vec::new()).expect_err("over the limit");
        assert!(matches!(err, Error::ReplyTooLarge { limit: LIMIT, .. }), "{err:?}");
    }

    #[test]
    fn a_silent_node_times_out() {
        let (_dir, path, _node) = fake_node(|_| Answer::Silent);
        let config = Config { timeout: Duration::from_millis(20), ..Config::default() };
        let mut client = Client::connect_with(&path, config).expect("connects");
        let err = client.call::<Value>("getblockchaininfo", Vec::new()).expect_err("no answer");
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("did not answer getblockchaininfo within 20ms"), "{err}");
    }

    #[test]
    fn a_node_that_hangs_up_is_an_io_error() {
        let (_dir, path, _node) = fake_node(|_| Answer::HangUp);
        let mut client = Client::connect(&path).expect("connects");
        let err = client.call::<Value>("stop", Vec::new()).expect_err("closed");
        assert!(
            matches!(&err, Error::Io { cause, .. } if cause.kind() == io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
    }

    #[test]
    fn nothing_listening_is_unreachable() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("nowhere.sock");
        let err = Client::connect(&path).expect_err("no node");
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        let expected = format!("cannot reach the node at {}", path.display());
        assert!(err.to_string().starts_with(&expected), "{err}");
    }

    #[test]
    fn the_network_is_checked_on_connect() {
        let (_dir, path, _node) = fake_node(|_| result(chain_info(Network::Regtest)));
        let (_, info) = Client::connect_to(&path, Network::Regtest).expect("regtest");
        assert_eq!(info.blocks, 7);

        let (_dir, path, _node) = fake_node(|_| result(chain_info(Network::Regtest)));
        let err = Client::connect_to(&path, Network::Main).expect_err("another network");
        assert!(
            matches!(
                err,
                Error::WrongNetwork { expected: Network::Main, found: Network::Regtest, .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("is on regtest, not main (use --network regtest)"));
    }
}
