//! Network parameters for `main`, `test` and `regtest`.
//!
//! Owns every consensus constant that differs between networks (and the ones that
//! do not, next to them), and each network's genesis block. Blocks come every 60
//! seconds (tinychain's spacing), so Bitcoin's time-based limits are scaled by 1/10.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::pow::Target;

/// The largest canonical encoding of a block, in bytes (Bitcoin's legacy 1 MB limit).
pub const MAX_BLOCK_SIZE: u64 = 1_000_000;

/// Which chain a node follows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The main network.
    Main,
    /// The public test network: main's rules, other addresses and genesis.
    Test,
    /// Local regression testing: minimum difficulty, no retargeting, mine on demand.
    Regtest,
}

impl Network {
    /// All networks.
    pub const ALL: [Network; 3] = [Network::Main, Network::Test, Network::Regtest];

    /// The network's name as written in config files and flags.
    pub const fn name(self) -> &'static str {
        match self {
            Network::Main => "main",
            Network::Test => "test",
            Network::Regtest => "regtest",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown network name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network {0:?}: expected main, test or regtest")]
pub struct ParseNetworkError(String);

impl FromStr for Network {
    type Err = ParseNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Network::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| ParseNetworkError(s.to_owned()))
    }
}

/// The consensus parameters of one network (Bitcoin Core's `Consensus::Params`).
#[derive(Clone, Debug)]
pub struct Params {
    /// Which network these are.
    pub network: Network,
    /// The easiest allowed target.
    pub pow_limit: Target,
    /// Seconds between blocks the difficulty aims for.
    pub target_spacing: u32,
    /// Blocks averaged by the difficulty retarget (DigiShield's `nPowAveragingWindow`).
    pub pow_averaging_window: u32,
    /// Damping of the measured timespan (DigiShield divides the deviation by this).
    pub pow_damping_factor: u32,
    /// How much harder, in percent, the target may get in one block.
    pub pow_max_adjust_up_percent: u32,
    /// How much easier, in percent, the target may get in one block.
    pub pow_max_adjust_down_percent: u32,
    /// Keeps the genesis difficulty forever (regtest).
    pub pow_no_retargeting: bool,
    /// Blocks between subsidy halvings.
    pub subsidy_halving_interval: u32,
    /// Confirmations a coinbase output needs before it may be spent.
    pub coinbase_maturity: u32,
    /// How far, in seconds, a block's time may be ahead of the node's clock.
    pub max_future_block_time: u32,
}
