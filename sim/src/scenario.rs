//! Scenarios: a seeded random swarm run, and the fixed scenarios of the tests.
//!
//! Owns the recipes only: what network, which faults when, how long to quiet.
//! A swarm run draws everything from its seed (node count, adversaries, hash
//! shares, clock skews, loss, partitions, crashes), runs with faults, quiets
//! the network and checks the invariants; its error names the seed, which
//! replays it exactly (`tinychain-sim swarm --seed N`).

use crate::adversary::Role;
use crate::net::{Latency, LinkModel};
use crate::rng::Rng;
use crate::world::{Config, Fault, Sim};

/// How long a swarm run has faults, and how long it quiets afterwards, seconds.
pub const FAULTY: f64 = 180.0;
/// Quiet time after the faults (twice: before and after the tie-breaking block).
pub const QUIET: f64 = 60.0;

/// Builds the swarm run of `seed`: its network and its faults (scheduled).
pub fn swarm(seed: u64, keep_log: bool) -> Sim {
    let mut rng = Rng::new(seed ^ 0x5eed_5eed);
    let nodes = 10 + rng.index(11);
    let mut config = Config::small(nodes, seed);
    config.keep_log = keep_log;
    config.block_interval = 5.0 + 10.0 * rng.unit();
    config.tx_interval = 2.0;
    config.links = LinkModel {
        latency: Latency::Uniform { min: 0.001, max: 0.02 + 0.3 * rng.unit() },
        bandwidth: 1e6 + 9e6 * rng.unit(),
        bandwidth_sigma: 0.5,
        loss: 0.0,
    };
    config.hash_shares =
        (0..nodes).map(|_| if rng.chance(0.6) { rng.unit() } else { 0.0 }).collect();
    config.hash_shares[0] = config.hash_shares[0].max(0.1);
    config.skew = (0..nodes).map(|_| rng.below(601) as i64 - 300).collect();
    let adversaries = rng.index(3);
    config.roles = vec![Role::Honest; nodes];
    for _ in 0..adversaries {
        let who = 1 + rng.index(nodes - 1);
        config.roles[who] = match rng.index(4) {
            0 => Role::Junk,
            1 => Role::LowWork,
            2 => Role::Withhold { delay: 5.0 + 20.0 * rng.unit() },
            _ => Role::Flood,
        };
    }
    let mut sim = Sim::new(config);
    for _ in 0..rng.index(4) {
        let at = FAULTY * rng.unit();
        match rng.index(4) {
            0 => {
                let groups = (0..nodes).map(|_| rng.below(2) as u8).collect();
                sim.at(at, Fault::Partition(groups));
                sim.at(at + 10.0 + 50.0 * rng.unit(), Fault::Heal);
            }
            1 => {
                let who = rng.index(nodes);
                sim.at(at, Fault::Crash(who));
                sim.at(at + 5.0 + 30.0 * rng.unit(), Fault::Restart(who));
            }
            2 => {
                sim.at(at, Fault::Loss(0.05 * rng.unit()));
                sim.at(at + 30.0 * rng.unit(), Fault::Loss(0.0));
            }
            _ => {
                sim.at(at, Fault::Mining(false));
                sim.at(at + 20.0 * rng.unit(), Fault::Mining(true));
            }
        }
    }
    sim
}

/// Runs the swarm run of `seed` to the end and checks the invariants.
///
/// # Errors
///
/// The invariant broken, with the seed that replays it.
pub fn run_swarm(seed: u64) -> Result<Sim, String> {
    let mut sim = swarm(seed, false);
    sim.run_until(FAULTY);
    sim.quiesce(QUIET);
    match sim.check() {
        Ok(()) => Ok(sim),
        Err(e) => Err(format!(
            "swarm seed {seed}: {e} (replay: cargo run -p tinychain-sim -- swarm --seed {seed})"
        )),
    }
}
