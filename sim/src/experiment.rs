//! The experiments of `docs/simulation.md`: block propagation at scale, stale
//! blocks, convergence after a partition, bandwidth, compact blocks.
//!
//! Owns the measurement recipes and their summaries; the networks are
//! [`Sim`]s like any other. Figures are taken from the simulation's own
//! records: when each block was mined, and when each node first had it as
//! its tip.

use std::time::Instant;

use serde::Serialize;

use crate::net::LinkModel;
use crate::world::{Config, Fault, Sim};

/// Settings of a propagation run.
#[derive(Debug, Clone)]
pub struct Propagation {
    /// Nodes.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Mean block interval, seconds.
    pub interval: f64,
    /// Blocks to wait for (the run lasts `blocks` intervals).
    pub blocks: u32,
    /// Size a block counts as (0: its real, coinbase-only size).
    pub block_bytes: u64,
    /// Compact blocks (or whole blocks) on the wire.
    pub compact: bool,
    /// The link model.
    pub links: LinkModel,
}

impl Propagation {
    /// The 1,000-node internet run's defaults.
    pub fn new(nodes: usize, seed: u64) -> Propagation {
        Propagation {
            nodes,
            seed,
            interval: 600.0,
            blocks: 10,
            block_bytes: 0,
            compact: true,
            links: LinkModel::internet(),
        }
    }

    fn config(&self) -> Config {
        let mut config = Config::small(self.nodes, self.seed);
        config.outbound = 4;
        config.links = self.links;
        config.block_interval = self.interval;
        config.virtual_block_bytes = self.block_bytes;
        config.compact_blocks = self.compact;
        // The p2p bench's connect of a 1 MB block: 20-30 ms; an empty block's: ~1 ms.
        config.cpu_per_block = 0.001;
        config.cpu_per_block_byte = 25e-9;
        config
    }
}

/// What a propagation run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Nodes.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Size a block counted as, bytes.
    pub block_bytes: u64,
    /// Compact blocks.
    pub compact: bool,
    /// Mean block interval, seconds.
    pub interval_s: f64,
    /// Blocks mined.
    pub blocks: u64,
    /// Blocks mined that are not on node 0's final chain.
    pub stale: u64,
    /// `stale` / `blocks`.
    pub stale_rate: f64,
    /// Delay from a block's mining to each other node having it as its tip, seconds.
    pub delay_p50_s: f64,
    /// 90th percentile.
    pub delay_p90_s: f64,
    /// 95th percentile.
    pub delay_p95_s: f64,
    /// 99th percentile.
    pub delay_p99_s: f64,
    /// The largest.
    pub delay_max_s: f64,
    /// Mean bytes sent per node per second.
    pub bytes_per_node_s: f64,
    /// Virtual seconds simulated.
    pub simulated_s: f64,
    /// Wall seconds it took.
    pub wall_s: f64,
    /// Simulated seconds per wall second.
    pub speed: f64,
    /// Events carried out.
    pub events: u64,
    /// Peak resident memory of the process, MiB (Linux; 0 elsewhere).
    pub peak_rss_mib: f64,
    /// Every (block, node) delay, seconds, sorted (not printed in the summary).
    #[serde(skip)]
    pub delays: Vec<f64>,
}

/// Returns the `p` quantile of sorted samples.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs a propagation experiment.
pub fn propagation(p: &Propagation) -> Summary {
    let started = Instant::now();
    let mut sim = Sim::new(p.config());
    let duration = p.interval * f64::from(p.blocks);
    sim.run_until(duration);
    // Let the last blocks arrive.
    sim.at(duration, Fault::Mining(false));
    sim.run_for(120.0);
    summarise(&sim, p, started)
}

fn summarise(sim: &Sim, p: &Propagation, started: Instant) -> Summary {
    let mut delays = Vec::new();
    for (hash, miner, at) in &sim.mined {
        let Some(arrivals) = sim.arrivals.get(hash) else { continue };
        for (node, arrival) in arrivals.iter().enumerate() {
            if node != *miner
                && let Some(t) = arrival
            {
                delays.push(t.saturating_sub(*at) as f64 / 1e6);
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    let chain: std::collections::HashSet<_> = sim.active_chain(0).into_iter().collect();
    let blocks = sim.mined.len() as u64;
    let stale = sim.mined.iter().filter(|(h, _, _)| !chain.contains(h)).count() as u64;
    let wall = started.elapsed().as_secs_f64();
    let sent: u64 = sim.stats().bytes_sent.iter().sum();
    Summary {
        nodes: p.nodes,
        seed: p.seed,
        block_bytes: p.block_bytes,
        compact: p.compact,
        interval_s: p.interval,
        blocks,
        stale,
        stale_rate: if blocks == 0 { 0.0 } else { stale as f64 / blocks as f64 },
        delay_p50_s: quantile(&delays, 0.5),
        delay_p90_s: quantile(&delays, 0.9),
        delay_p95_s: quantile(&delays, 0.95),
        delay_p99_s: quantile(&delays, 0.99),
        delay_max_s: delays.last().copied().unwrap_or(0.0),
        bytes_per_node_s: sent as f64 / p.nodes as f64 / sim.time().max(1.0),
        simulated_s: sim.time(),
        wall_s: wall,
        speed: sim.time() / wall.max(1e-9),
        events: sim.stats().events,
        peak_rss_mib: peak_rss_mib(),
        delays,
    }
}

/// Measures how long after a partition heals every honest node shares one tip, seconds.
pub fn convergence(nodes: usize, seed: u64, apart: f64, links: LinkModel) -> f64 {
    let mut config = Config::small(nodes, seed);
    config.links = links;
    config.block_interval = 30.0;
    let mut sim = Sim::new(config);
    sim.run_until(60.0);
    sim.at(60.0, Fault::Partition((0..nodes).map(|i| (i % 2) as u8).collect()));
    sim.run_until(60.0 + apart);
    sim.at(60.0 + apart, Fault::Mining(false));
    sim.at(60.0 + apart, Fault::Heal);
    let healed = sim.time();
    loop {
        sim.run_for(0.25);
        let tips: std::collections::BTreeSet<_> =
            (0..nodes).filter_map(|i| sim.snapshot_tip(i)).collect();
        if tips.len() == 1 || sim.time() > healed + 600.0 {
            return sim.time() - healed;
        }
    }
}

/// Returns the process's peak resident memory in MiB (`VmHWM`), 0 if unknown.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
