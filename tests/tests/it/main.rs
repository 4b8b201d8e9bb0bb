//! Tests with real `tinychain-node` processes, in one test binary.

mod network;
mod process;
mod rpc;
