//! The simulated network's links: latency, bandwidth, loss and whether a link is up.
//!
//! Owns the link table and the latency models. A message on a link waits for
//! the link to finish sending what was queued before it (its bandwidth), then
//! travels for the link's latency; a lossy link drops it. It decides nothing
//! about nodes: the simulator asks it when a message arrives, or whether it
//! is lost.

use std::collections::HashMap;

use crate::machine::Peer;
use crate::rng::Rng;

/// How link latencies are drawn (one-way, fixed per link for the whole run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Uniform between two bounds, in seconds.
    Uniform {
        /// Least.
        min: f64,
        /// Most.
        max: f64,
    },
    /// Log-normal, as measured between hosts across the internet: the median
    /// one-way delay in seconds and the shape (0.6 puts the 95th percentile
    /// near 2.7 times the median).
    LogNormal {
        /// Median one-way latency, seconds.
        median: f64,
        /// Shape.
        sigma: f64,
    },
}

impl Latency {
    fn draw(self, rng: &mut Rng) -> f64 {
        match self {
            Latency::Uniform { min, max } => min + (max - min) * rng.unit(),
            Latency::LogNormal { median, sigma } => rng.log_normal(median, sigma).min(2.0),
        }
    }
}

/// How the links of a network behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkModel {
    /// Latencies.
    pub latency: Latency,
    /// Bandwidth of each direction of a link, bytes per second: the median,
    /// drawn per link from a log-normal of shape `bandwidth_sigma`.
    pub bandwidth: f64,
    /// Spread of bandwidths (0: every link the same).
    pub bandwidth_sigma: f64,
    /// Probability that a message is lost.
    pub loss: f64,
}

impl LinkModel {
    /// Loopback: 50–150 µs, 1 GB/s, nothing lost (the calibration setting).
    pub fn loopback() -> LinkModel {
        LinkModel {
            latency: Latency::Uniform { min: 50e-6, max: 150e-6 },
            bandwidth: 1e9,
            bandwidth_sigma: 0.0,
            loss: 0.0,
        }
    }

    /// A LAN-ish default for tests: 5–50 ms, 10 MB/s.
    pub fn lan() -> LinkModel {
        LinkModel {
            latency: Latency::Uniform { min: 0.005, max: 0.05 },
            bandwidth: 10e6,
            bandwidth_sigma: 0.0,
            loss: 0.0,
        }
    }

    /// Internet-like: log-normal one-way latency with a median of 50 ms,
    /// bandwidth per link with a median of 1.25 MB/s (10 Mbit/s), spread 1.
    pub fn internet() -> LinkModel {
        LinkModel {
            latency: Latency::LogNormal { median: 0.05, sigma: 0.6 },
            bandwidth: 1.25e6,
            bandwidth_sigma: 1.0,
            loss: 0.0,
        }
    }
}

/// One direction of a link.
#[derive(Debug, Clone)]
struct Link {
    /// One-way latency, µs.
    latency: u64,
    /// Bytes per second.
    bandwidth: f64,
    /// The link sends nothing new before this time, µs (what is queued goes first).
    busy_until: u64,
    up: bool,
}

/// The links of the network, both directions of each.
#[derive(Debug, Default)]
pub struct Links {
    links: HashMap<(Peer, Peer), Link>,
    loss: f64,
}

impl Links {
    /// Makes links between the given pairs, drawing their latencies and bandwidths.
    pub fn new(pairs: &[(Peer, Peer)], model: LinkModel, rng: &mut Rng) -> Links {
        let mut links = HashMap::new();
        for &(a, b) in pairs {
            let latency = (model.latency.draw(rng) * 1e6) as u64;
            for (from, to) in [(a, b), (b, a)] {
                let bandwidth = if model.bandwidth_sigma > 0.0 {
                    rng.log_normal(model.bandwidth, model.bandwidth_sigma)
                } else {
                    model.bandwidth
                };
                links.insert((from, to), Link { latency, bandwidth, busy_until: 0, up: true });
            }
        }
        Links { links, loss: model.loss }
    }

    /// Tells whether the link from `a` to `b` exists and is up.
    pub fn is_up(&self, a: Peer, b: Peer) -> bool {
        self.links.get(&(a, b)).is_some_and(|l| l.up)
    }

    /// Brings both directions of a link up or down; tells whether it changed.
    pub fn set_up(&mut self, a: Peer, b: Peer, up: bool) -> bool {
        let mut changed = false;
        for key in [(a, b), (b, a)] {
            if let Some(link) = self.links.get_mut(&key) {
                changed |= link.up != up;
                link.up = up;
            }
        }
        changed
    }

    /// Sets the loss probability of every link.
    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    /// Sends `bytes` from `a` to `b` at `now` (µs): returns when they arrive,
    /// or `None` if the link is down or loses them.
    pub fn send(&mut self, a: Peer, b: Peer, bytes: u64, now: u64, rng: &mut Rng) -> Option<u64> {
        let loss = self.loss;
        let link = self.links.get_mut(&(a, b)).filter(|l| l.up)?;
        let start = link.busy_until.max(now);
        let sending = (bytes as f64 / link.bandwidth * 1e6) as u64;
        link.busy_until = start + sending;
        if rng.chance(loss) {
            return None;
        }
        Some(link.busy_until + link.latency)
    }
}
