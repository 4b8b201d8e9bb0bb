//! The local RPC interface: the socket server, the methods behind it, and a client.

pub mod client;
pub mod methods;
pub mod server;

pub use server::{Config, RpcCall, RpcError};
