//! The event loop: the one owner of the core, driving it with real time and I/O.
//!
//! Owns the running node: it opens the data directory and store, holds the
//! [`Core`], starts the miner threads, and turns their found blocks, the clock's
//! ticks and shutdown signals into core inputs, carrying out the core's outputs
//! (new mining jobs, logs). Other tasks reach it only through a bounded channel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tinychain_protocol::params::{Network, Params};
use tinychain_protocol::{Block, PubkeyHash};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::core::{self, BlockOutcome, Core, Output};
use crate::datadir::DataDir;
use crate::miner::Miner;
use crate::store::redb::RedbStore;

/// How often the miner's template is rebuilt to pick up new transactions.
const TEMPLATE_REFRESH: Duration = Duration::from_secs(5);
/// Found blocks waiting for the event loop, at most.
const FOUND_QUEUE: usize = 16;

/// Mining settings.
#[derive(Debug, Clone)]
pub struct MiningConfig {
    /// Whether to mine.
    pub enabled: bool,
    /// Who the coinbase pays.
    pub pay_to: Option<PubkeyHash>,
    /// Mining threads.
    pub threads: usize,
}

/// Everything the node needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base data directory (the network's subdirectory is used).
    pub datadir: PathBuf,
    /// The network.
    pub network: Network,
    /// Mining.
    pub mining: MiningConfig,
    /// The core's parts.
    pub core: core::Config,
}

/// Returns the current unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs the node until SIGINT or SIGTERM.
///
/// # Errors
///
/// The data directory, store or miner cannot be set up, or the store fails.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let params = Params::new(config.network);
    let datadir = DataDir::open(&config.datadir, config.network)?;
    let store = RedbStore::open(&datadir.store_path(), params.genesis_hash())
        .with_context(|| format!("opening {}", datadir.store_path().display()))?;
    let mut core: Core<RedbStore, ()> =
        Core::open(store, params, config.core.clone(), unix_now()).context("opening the chain")?;
    info!(
        network = %config.network,
        datadir = %datadir.path().display(),
        height = core.chain().height(),
        tip = %core.chain().tip(),
        mempool = core.mempool().len(),
        "node started"
    );

    let (found_tx, mut found_rx) = mpsc::channel::<Block>(FOUND_QUEUE);
    let miner = match (&config.mining.enabled, config.mining.pay_to) {
        (true, Some(pay_to)) => {
            let found = Arc::new(move |block: Block| {
                // The event loop may be shutting down; a lost block then is fine.
                let _ = found_tx.blocking_send(block);
            });
            let miner = Miner::start(config.mining.threads.max(1), found)?;
            miner.set_job(core.block_template(pay_to, unix_now()));
            info!(threads = miner.threads(), "mining");
            Some((miner, pay_to))
        }
        (true, None) => anyhow::bail!("mining needs an address to pay (--mine-address)"),
        _ => None,
    };

    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut refresh = tokio::time::interval(TEMPLATE_REFRESH);
    let mut last_hashes = 0u64;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(block) = found_rx.recv() => {
                let hash = block.block_hash();
                let (outcome, outputs) = core.handle_block(block, None, unix_now())?;
                if outcome != BlockOutcome::Accepted {
                    warn!(%hash, ?outcome, "own block not accepted");
                }
                carry_out(&core, &outputs, miner.as_ref());
            }
            _ = ticks.tick() => core.tick(unix_now()),
            _ = refresh.tick() => {
                if let Some((miner, pay_to)) = &miner {
                    let hashes = miner.hashes();
                    let rate = (hashes - last_hashes) / TEMPLATE_REFRESH.as_secs();
                    last_hashes = hashes;
                    info!(hash_rate = rate, height = core.chain().height(), "mining");
                    miner.set_job(core.block_template(*pay_to, unix_now()));
                }
            }
            _ = &mut shutdown => break,
        }
    }
    info!("shutting down");
    if let Some((miner, _)) = miner {
        miner.shutdown();
    }
    core.save_mempool().context("saving the mempool")?;
    info!(height = core.chain().height(), tip = %core.chain().tip(), "stopped");
    Ok(())
}

fn carry_out(
    core: &Core<RedbStore, ()>,
    outputs: &[Output<()>],
    miner: Option<&(Miner, PubkeyHash)>,
) {
    for output in outputs {
        if let Output::TipChanged { hash, height, disconnected } = output {
            info!(%hash, height, disconnected, "new tip");
            if let Some((miner, pay_to)) = miner {
                miner.set_job(core.block_template(*pay_to, unix_now()));
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
