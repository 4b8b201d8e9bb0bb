//! The tinychain full node.
//!
//! The node's state machine ([`machine::Node`]: every protocol decision, around
//! the pure [`core::Core`] — chain state, mempool, orphan blocks — and the
//! downloader [`sync::Sync`]) takes inputs and the time and returns outputs; a
//! [`store`] behind a narrow interface (redb on disk, maps in tests), block
//! [`template`]s and the [`miner`] threads. The thin event loop ([`node`]) that
//! owns the network and the RPC socket drives the machine; see
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
pub mod signals;
pub mod store;
pub mod sync;
pub mod template;
pub mod testnet;
pub mod topology;
pub mod utxo_digest;
