//! The local RPC interface: the socket server and the methods behind it.

pub mod methods;
pub mod server;

pub use server::{Config, RpcCall, RpcError};
