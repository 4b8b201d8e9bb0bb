//! The local RPC interface: the socket server and the methods behind it.

pub mod address;
pub mod methods;
pub mod server;
pub mod table;

pub use server::{Config, RpcCall, RpcError};
