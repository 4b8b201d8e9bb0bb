//! Integration tests of the node's core: one test binary, one module per area.

mod cache;
mod chain;
mod compact;
mod harness;
mod mempool;
mod net;
mod pipeline;
mod policy;
mod rbf;
mod rpc;
mod sim;
mod store;
mod sync;
mod untrusted;
