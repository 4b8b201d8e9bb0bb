//! Tests with real `tinychain-node` and `tinychain-wallet` processes, in one test binary.

mod multihost;
mod network;
mod observe;
mod process;
mod rpc;
mod topology;
mod wallet;
