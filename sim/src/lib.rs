//! A deterministic network simulator that runs whole tinychain nodes.
//!
//! N node machines ([`machine::Machine`]) run over a simulated network
//! ([`net`]) in virtual time, every random choice drawn from one seeded
//! [`rng::Rng`]: a run is a function of its seed, so a failing seed replays
//! exactly. The [`world::Sim`] delivers gossip, requests and responses with
//! per-link latency, bandwidth and loss; injects partitions and heals, node
//! crashes and restarts (the store kept, memory lost), clock skew and
//! [`adversary`] nodes; and mines by drawing block times from an exponential
//! distribution per hash share. [`world::Sim::check`] states the invariants a
//! quiet network must hold. The `tinychain-sim` binary runs the experiments of
//! `docs/simulation.md`.
//!
//! Pure in the sense the node's core is: no sockets, no clock, no threads.

pub mod adversary;
pub mod experiment;
pub mod machine;
pub mod net;
pub mod node_machine;
pub mod rng;
pub mod scenario;
pub mod snapshot;
pub mod store;
pub mod world;
