//! Tests with real `tinychain-node` and `tinychain-wallet` processes, in one test binary.

mod hostile;
mod multihost;
mod network;
mod observe;
mod process;
mod readme;
mod replace;
mod rpc;
mod seed;
mod topology;
mod wallet;
