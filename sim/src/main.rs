//! `tinychain-sim`: runs the simulator's experiments and prints their results.
//!
//! `propagation` runs one network and prints a JSON summary on its last line;
//! `swarm` replays one seeded swarm run and its invariant checks; `plots`
//! writes the SVG figures of `docs/simulation.md`.

mod plots;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use tinychain_sim::experiment::{self, Propagation};
use tinychain_sim::net::LinkModel;
use tinychain_sim::scenario;

#[derive(Parser)]
#[command(about = "Deterministic simulations of tinychain networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Block propagation over an internet-like network; a JSON summary last.
    Propagation {
        /// Nodes.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// The seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Mean block interval, seconds.
        #[arg(long, default_value_t = 600.0)]
        interval: f64,
        /// Blocks (the run lasts this many intervals).
        #[arg(long, default_value_t = 10)]
        blocks: u32,
        /// Size each block counts as, bytes (0: coinbase-only, its real size).
        #[arg(long, default_value_t = 0)]
        block_bytes: u64,
        /// Send whole blocks instead of compact blocks.
        #[arg(long)]
        no_compact: bool,
        /// Loopback links (the calibration setting) instead of internet-like ones.
        #[arg(long)]
        loopback: bool,
    },
    /// Replays the swarm run of a seed and checks its invariants.
    Swarm {
        /// The seed.
        #[arg(long)]
        seed: u64,
    },
    /// Writes the figures of docs/simulation.md into a directory.
    Plots {
        /// The directory.
        #[arg(long, default_value = "docs/simulation")]
        out: std::path::PathBuf,
        /// Nodes of the sweeps.
        #[arg(long, default_value_t = 200)]
        nodes: usize,
    },
}

#[allow(clippy::print_stdout)]
fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Propagation {
            nodes,
            seed,
            interval,
            blocks,
            block_bytes,
            no_compact,
            loopback,
        } => {
            let mut p = Propagation::new(nodes, seed);
            p.interval = interval;
            p.blocks = blocks;
            p.block_bytes = block_bytes;
            p.compact = !no_compact;
            if loopback {
                p.links = LinkModel::loopback();
            }
            let summary = experiment::propagation(&p);
            println!("{}", serde_json::to_string(&summary)?);
        }
        Command::Swarm { seed } => match scenario::run_swarm(seed) {
            Ok(sim) => println!(
                "swarm seed {seed}: the invariants hold after {:.0} s, {} events, {} blocks, {} transactions",
                sim.time(),
                sim.stats().events,
                sim.stats().blocks_mined,
                sim.stats().transactions
            ),
            Err(e) => bail!("{e}"),
        },
        Command::Plots { out, nodes } => plots::write_all(&out, nodes)?,
    }
    Ok(())
}
