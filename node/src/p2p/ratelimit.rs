//! Per-peer token buckets for incoming sync requests.
//!
//! Owns the rate limit that keeps one peer from monopolising the node: each peer
//! has a bucket of `capacity` tokens refilled at `per_second`; a request takes a
//! token or is answered "rate limited" at once (never queued). Time is passed in,
//! so the limiter is deterministic to test.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Settings of a rate limiter: the config file's `[p2p.rate_limit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Requests a peer may burst.
    pub capacity: u32,
    /// Tokens added per second.
    pub per_second: u32,
}

impl Default for Config {
    fn default() -> Config {
        // Initial sync asks a peer for up to ~20 requests of 16 blocks per
        // second; this leaves room for that and refuses floods.
        Config { capacity: 100, per_second: 50 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by peer.
#[derive(Debug)]
pub struct RateLimiter<P> {
    config: Config,
    buckets: HashMap<P, Bucket>,
}

impl<P: Eq + Hash> RateLimiter<P> {
    /// Makes a limiter.
    pub fn new(config: Config) -> RateLimiter<P> {
        RateLimiter { config, buckets: HashMap::new() }
    }

    /// Takes a token for `peer` at `now`; returns whether the request may proceed.
    pub fn allow(&mut self, peer: P, now: Instant) -> bool {
        self.allow_cost(peer, now, 1)
    }

    /// Takes `cost` tokens for `peer` at `now` (a request that costs the node
    /// more takes more); returns whether the request may proceed.
    pub fn allow_cost(&mut self, peer: P, now: Instant, cost: u32) -> bool {
        let cost = f64::from(cost.max(1));
        let capacity = f64::from(self.config.capacity);
        let bucket = self.buckets.entry(peer).or_insert(Bucket { tokens: capacity, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(self.config.per_second)).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Forgets a peer (when it disconnects), so the map stays bounded by live peers.
    pub fn remove(&mut self, peer: &P) {
        self.buckets.remove(peer);
    }

    /// Returns the time until `peer` has a token again (zero if it has one).
    pub fn wait_time(&self, peer: &P) -> Duration {
        match self.buckets.get(peer) {
            Some(b) if b.tokens < 1.0 => {
                Duration::from_secs_f64((1.0 - b.tokens) / f64::from(self.config.per_second.max(1)))
            }
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_then_refilled() {
        let mut limiter = RateLimiter::new(Config { capacity: 3, per_second: 2 });
        let t0 = Instant::now();
        assert!(limiter.allow("a", t0));
        assert!(limiter.allow("a", t0));
        assert!(limiter.allow("a", t0));
        assert!(!limiter.allow("a", t0), "the burst is spent");
        assert!(limiter.wait_time(&"a") > Duration::ZERO);
        // Another peer is not affected.
        assert!(limiter.allow("b", t0));
        // Half a second later: one token back (2 per second).
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.allow("a", t1));
        assert!(!limiter.allow("a", t1));
        // A long pause refills only up to the capacity.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.allow("a", t2));
        }
        assert!(!limiter.allow("a", t2));
        limiter.remove(&"a");
        assert!(limiter.allow("a", t2), "a forgotten peer starts with a full bucket");
    }

    #[test]
    fn a_costly_request_takes_its_cost() {
        let mut limiter = RateLimiter::new(Config { capacity: 25, per_second: 10 });
        let t0 = Instant::now();
        assert!(limiter.allow_cost("a", t0, 10));
        assert!(limiter.allow_cost("a", t0, 10));
        assert!(!limiter.allow_cost("a", t0, 10), "5 tokens left");
        assert!(limiter.allow("a", t0), "a cheap one still fits");
        // A second later, ten tokens more: one costly request.
        let t1 = t0 + Duration::from_secs(1);
        assert!(limiter.allow_cost("a", t1, 10));
        assert!(!limiter.allow_cost("a", t1, 10));
    }
}
