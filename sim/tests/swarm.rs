//! The simulator's scenarios at 10–50 nodes and a short swarm of seeded runs,
//! each ending with the invariant checks.

use tinychain_sim::adversary::Role;
use tinychain_sim::scenario;
use tinychain_sim::world::{Config, Fault, Sim};

fn converge(sim: &mut Sim) {
    sim.quiesce(scenario::QUIET);
    if let Err(e) = sim.check() {
        panic!("at {:.0} s: {e}", sim.time());
    }
}

fn height(sim: &Sim) -> u32 {
    sim.snapshot(0).expect("node 0 runs").height
}

#[test]
fn one_seed_gives_one_event_log() {
    let run = |seed| {
        let mut sim = scenario::swarm(seed, true);
        sim.run_until(60.0);
        let (log, hash) = sim.log();
        (log.to_vec(), hash)
    };
    let (a, hash_a) = run(11);
    let (b, hash_b) = run(11);
    assert!(a.len() > 1000, "a busy run: {} events", a.len());
    assert_eq!(a, b, "the same seed replays the same events");
    assert_eq!(hash_a, hash_b);
    let (_, hash_c) = run(12);
    assert_ne!(hash_a, hash_c, "another seed, another run");
}

#[test]
fn ten_honest_nodes_agree() {
    let mut config = Config::small(10, 1);
    config.tx_interval = 1.0;
    let mut sim = Sim::new(config);
    sim.run_until(200.0);
    converge(&mut sim);
    assert!(height(&sim) > 10, "blocks were mined: height {}", height(&sim));
    assert!(sim.stats().transactions > 50, "wallets spent: {:?}", sim.stats().transactions);
}

#[test]
fn fifty_nodes_heal_a_partition() {
    let mut config = Config::small(50, 2);
    config.block_interval = 5.0;
    let mut sim = Sim::new(config);
    sim.run_until(20.0);
    // Two halves mine apart for a minute; the heavier branch wins everywhere.
    sim.at(20.0, Fault::Partition((0..50).map(|i| (i % 2) as u8).collect()));
    sim.run_until(80.0);
    let tips: std::collections::BTreeSet<_> =
        (0..50).filter_map(|i| sim.snapshot(i)).map(|s| s.tip).collect();
    assert!(tips.len() >= 2, "the halves went apart");
    sim.at(80.0, Fault::Heal);
    sim.run_until(100.0);
    converge(&mut sim);
}

#[test]
fn crashed_nodes_restart_from_their_stores_and_catch_up() {
    let mut config = Config::small(20, 3);
    config.tx_interval = 1.0;
    let mut sim = Sim::new(config);
    sim.run_until(60.0);
    let before = sim.snapshot(5).expect("runs").height;
    sim.at(60.0, Fault::Crash(5));
    sim.at(60.0, Fault::Crash(6));
    sim.run_until(150.0);
    assert!(sim.snapshot(5).is_none(), "node 5 is down");
    sim.at(150.0, Fault::Restart(5));
    sim.at(150.0, Fault::Restart(6));
    // The store was kept: it restarts at the height it had, not at genesis.
    sim.run_until(150.0);
    assert!(sim.snapshot(5).expect("runs again").height >= before);
    converge(&mut sim);
}

#[test]
fn adversaries_change_nothing_for_the_honest() {
    let mut config = Config::small(20, 4);
    config.tx_interval = 1.0;
    config.roles = vec![Role::Honest; 20];
    config.roles[3] = Role::Junk;
    config.roles[7] = Role::LowWork;
    config.roles[11] = Role::Withhold { delay: 15.0 };
    config.roles[15] = Role::Flood;
    config.skew = (0..20).map(|i| (i as i64 - 10) * 30).collect();
    config.links.loss = 0.01;
    let mut sim = Sim::new(config);
    sim.run_until(180.0);
    converge(&mut sim);
    assert!(sim.stats().bans > 0, "the junk sender was banned");
}

#[test]
fn swarm() {
    // SWARM_SEEDS=a,b,c replays given seeds; the default runs a fixed few, each
    // a different network, fault schedule and set of adversaries.
    let seeds: Vec<u64> = match std::env::var("SWARM_SEEDS") {
        Ok(list) => list.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => (1..=4).collect(),
    };
    for seed in seeds {
        if let Err(e) = scenario::run_swarm(seed) {
            panic!("{e}");
        }
    }
}
