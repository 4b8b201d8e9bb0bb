//! A seeded simulation: several cores on a fake network with virtual time.
//!
//! Nodes mine (on regtest, a block is found in a few hashes), relay blocks to
//! their peers with random delays, and answer requests for missing parents from
//! their stores. A partition splits them into two groups that mine apart; after it
//! heals, every node must end on the same, most-work tip.

use std::collections::BTreeMap;

use tinychain_node::core::{Output, Source};
use tinychain_protocol::{Block, BlockHash};

use crate::harness::*;

/// xorshift64*: a small deterministic generator, so a failing seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

enum Msg {
    Block(Block),
    GetBlock(BlockHash),
}

struct Sim {
    nodes: Vec<TestCore>,
    /// (delivery time, sequence) → (from, to, message)
    queue: BTreeMap<(u64, u64), (usize, usize, Msg)>,
    seq: u64,
    now: u64,
    rng: Rng,
    /// Group of each node while partitioned.
    partition: Option<Vec<u8>>,
}

impl Sim {
    fn new(n: usize, seed: u64) -> Sim {
        Sim {
            nodes: (0..n).map(|_| new_core(regtest())).collect(),
            queue: BTreeMap::new(),
            seq: 0,
            now: 0,
            rng: Rng(seed | 1),
            partition: None,
        }
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.partition.as_ref().is_none_or(|groups| groups[a] == groups[b])
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if !self.linked(from, to) {
            return; // the link is cut: the message is lost
        }
        let at = self.now + 1 + self.rng.below(5);
        self.seq += 1;
        self.queue.insert((at, self.seq), (from, to, msg));
    }

    fn broadcast(&mut self, from: usize, block: &Block) {
        for to in 0..self.nodes.len() {
            if to != from {
                self.send(from, to, Msg::Block(block.clone()));
            }
        }
    }

    fn handle_outputs(&mut self, node: usize, outputs: Vec<Output<u32>>) {
        for output in outputs {
            match output {
                Output::RelayBlock(hash) => {
                    if let Ok(Some(block)) = self.nodes[node].chain().block(&hash) {
                        self.broadcast(node, &block);
                    }
                }
                Output::RequestBlock { peer, hash } => {
                    self.send(node, peer as usize, Msg::GetBlock(hash));
                }
                _ => {}
            }
        }
    }

    fn deliver_until(&mut self, until: u64) {
        self.deliver(until);
        self.now = self.now.max(until);
    }

    fn deliver(&mut self, until: u64) {
        while let Some((&(at, seq), _)) = self.queue.first_key_value() {
            if at > until {
                break;
            }
            let (from, to, msg) = self.queue.remove(&(at, seq)).expect("present");
            self.now = at;
            if !self.linked(from, to) {
                continue;
            }
            match msg {
                Msg::Block(block) => {
                    let (_, outputs) = self.nodes[to]
                        .handle_block(block, Source::Unrequested(from as u32), NOW + self.now)
                        .expect("store");
                    self.handle_outputs(to, outputs);
                }
                Msg::GetBlock(hash) => {
                    if let Ok(Some(block)) = self.nodes[to].chain().block(&hash) {
                        self.send(to, from, Msg::Block(block));
                    }
                }
            }
        }
    }

    fn mine_at(&mut self, node: usize) {
        let mut block = self.nodes[node].block_template(pkh(node as u8 + 1), 0).block;
        block.txdata[0].inputs[0].signature[4..12].copy_from_slice(&self.rng.next().to_le_bytes());
        block.header.merkle_root =
            tinychain_protocol::merkle::block_merkle_root(&block.txdata).root;
        solve(&mut block);
        let (_, outputs) =
            self.nodes[node].handle_block(block, Source::Local, NOW + self.now).expect("store");
        self.handle_outputs(node, outputs);
    }

    /// Runs `steps` rounds: each round some node mines, then messages flow for a while.
    fn run(&mut self, steps: usize, miners: &[usize]) {
        for _ in 0..steps {
            let miner = miners[self.rng.below(miners.len() as u64) as usize];
            self.mine_at(miner);
            let until = self.now + 3;
            self.deliver_until(until);
        }
    }

    fn settle(&mut self) {
        self.deliver(u64::MAX);
    }

    /// Settles, then lets one node mine once more so equal-work ties resolve.
    fn converge(&mut self, miner: usize) {
        self.settle();
        self.mine_at(miner);
        self.settle();
    }

    fn tips(&self) -> Vec<BlockHash> {
        self.nodes.iter().map(|n| n.chain().tip()).collect()
    }
}

fn partition_then_heal(seed: u64) {
    let mut sim = Sim::new(5, seed);
    sim.run(10, &[0, 1, 2, 3, 4]);
    sim.converge(0);
    let tips = sim.tips();
    assert!(tips.iter().all(|t| *t == tips[0]), "seed {seed}: converged before the split");

    // Split {0,1,2} from {3,4}; the bigger group mines more blocks.
    sim.partition = Some(vec![0, 0, 0, 1, 1]);
    sim.run(20, &[0, 1, 2]);
    sim.run(8, &[3, 4]);
    sim.settle();
    let tips = sim.tips();
    assert_ne!(tips[0], tips[3], "seed {seed}: the groups diverged");

    // Heal: each node announces its tip to everyone; missing parents are fetched.
    sim.partition = None;
    for node in 0..5 {
        let tip = sim.nodes[node].chain().tip();
        let block = sim.nodes[node].chain().block(&tip).expect("store").expect("tip stored");
        sim.broadcast(node, &block);
    }
    sim.converge(4);
    let tips = sim.tips();
    assert!(tips.iter().all(|t| *t == tips[0]), "seed {seed}: converged after healing");
    let best_work = sim.nodes.iter().map(|n| n.chain().tip_entry().chainwork).max();
    assert_eq!(
        Some(sim.nodes[3].chain().tip_entry().chainwork),
        best_work,
        "seed {seed}: most work"
    );
    let digests: Vec<_> = sim.nodes.iter().map(|n| n.chain().utxo_digest()).collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "seed {seed}: same UTXO set");
}

#[test]
fn partitions_that_mine_on_both_sides_converge_after_healing() {
    for seed in 1..=8 {
        partition_then_heal(seed);
    }
}
