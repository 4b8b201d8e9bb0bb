//! Tests with real `tinychain-node` processes, in one test binary.

mod multihost;
mod network;
mod process;
mod rpc;
