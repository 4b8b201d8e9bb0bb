//! The tinychain full node.
//!
//! A pure core ([`core::Core`]: chain state, mempool, orphan blocks) that takes
//! inputs and returns decisions, a [`store`] behind a narrow interface (redb on
//! disk, maps in tests), block [`template`]s and the [`miner`] threads. The event
//! loop that owns the core, the network and the RPC socket drives it; see
//! `docs/architecture.md` for how a block travels from the socket to the store.

pub mod chain;
pub mod client;
pub mod config;
pub mod core;
pub mod crawl;
pub mod datadir;
pub mod fees;
pub mod log;
pub mod machine;
pub mod mempool;
pub mod metrics;
pub mod miner;
pub mod node;
pub mod orphans;
pub mod p2p;
pub mod rpc;
pub mod sd_notify;
pub mod serde_util;
pub mod store;
pub mod sync;
pub mod template;
pub mod testnet;
pub mod topology;
pub mod utxo_digest;
