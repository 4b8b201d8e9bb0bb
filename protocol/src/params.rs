//! Network parameters for `main`, `test` and `regtest`.
//!
//! Owns every consensus constant that differs between networks (and the ones that
//! do not, next to them), and each network's genesis block. Blocks come every 60
//! seconds (tinychain's spacing), so Bitcoin's time-based limits are scaled by 1/10.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::amount::{Amount, COIN};
use crate::block::{Block, BlockHeader};
use crate::hash::{BlockHash, PubkeyHash};
use crate::merkle::{compute_merkle_root, txid_leaf};
use crate::pow::{CompactTarget, Target};
use crate::transaction::{COINBASE_MESSAGE_LEN, Transaction, TxOut};

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

/// The message in every genesis coinbase.
const GENESIS_MESSAGE: &[u8] = b"tinychain 2026-11-23 pocket-sized Nakamoto consensus";
const _: () = assert!(GENESIS_MESSAGE.len() <= COINBASE_MESSAGE_LEN);

/// Compact pow limit of main and test: about 2^20 hashes per block at minimum difficulty.
const POW_LIMIT_BITS_MAIN: u32 = 0x1e0f_ffff;
/// Compact pow limit of regtest (Bitcoin's regtest value): every other hash meets it.
const POW_LIMIT_BITS_REGTEST: u32 = 0x207f_ffff;

impl Params {
    /// Returns the parameters of `network`.
    pub fn new(network: Network) -> Params {
        let (pow_limit_bits, maturity, halving, no_retargeting) = match network {
            Network::Main | Network::Test => (POW_LIMIT_BITS_MAIN, 100, 210_000, false),
            Network::Regtest => (POW_LIMIT_BITS_REGTEST, 10, 150, true),
        };
        Params {
            network,
            pow_limit: CompactTarget::from_consensus(pow_limit_bits)
                .to_target()
                .expect("the pow limit constants are valid compact targets"),
            target_spacing: 60,
            pow_averaging_window: 17,
            pow_damping_factor: 4,
            pow_max_adjust_up_percent: 16,
            pow_max_adjust_down_percent: 32,
            pow_no_retargeting: no_retargeting,
            subsidy_halving_interval: halving,
            coinbase_maturity: maturity,
            max_future_block_time: match network {
                // Bitcoin allows 2 hours at 10-minute spacing: 12 block intervals.
                Network::Main | Network::Test => 12 * 60,
                // Regtest keeps Bitcoin's 2 hours: blocks mined on demand, many per
                // second, push their times ahead of the clock (each must be later
                // than the median of the last 11), and need the headroom.
                Network::Regtest => 2 * 60 * 60,
            },
        }
    }

    /// Returns the network's genesis block.
    ///
    /// Its coinbase pays 50 coins to the all-zero pubkey hash and, as in Bitcoin,
    /// its output is never added to the UTXO set.
    pub fn genesis_block(&self) -> Block {
        let (time, nonce) = match self.network {
            Network::Main => (1_795_392_000, 1_805_289),
            Network::Test => (1_795_392_001, 29_863),
            Network::Regtest => (1_795_392_002, 3),
        };
        genesis_block_with(time, self.pow_limit.to_compact(), nonce)
    }

    /// Returns the hash of the network's genesis block.
    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis_block().block_hash()
    }
}

/// Builds a genesis block with the given header fields.
fn genesis_block_with(time: u32, bits: CompactTarget, nonce: u32) -> Block {
    let mut message = [0u8; COINBASE_MESSAGE_LEN];
    message[..GENESIS_MESSAGE.len()].copy_from_slice(GENESIS_MESSAGE);
    let coinbase = Transaction::coinbase(
        0,
        0,
        &message,
        vec![TxOut { value: Amount::from_belushis(50 * COIN), pubkey_hash: PubkeyHash::default() }],
    );
    let merkle_root = compute_merkle_root(&[txid_leaf(coinbase.txid())]).root;
    Block {
        header: BlockHeader {
            version: 1,
            prev_blockhash: BlockHash::ZERO,
            merkle_root,
            time,
            bits,
            nonce,
        },
        txdata: vec![coinbase],
    }
}

/// Finds the first nonce that gives a genesis block at `time` valid proof of work.
/// Used once to fix the constants above; kept so the test can show they are right.
pub fn mine_genesis_nonce(network: Network, time: u32) -> Option<u32> {
    let params = Params::new(network);
    let bits = params.pow_limit.to_compact();
    let mut block = genesis_block_with(time, bits, 0);
    (0..=u32::MAX).find(|&nonce| {
        block.header.nonce = nonce;
        params.pow_limit.is_met_by(block.header.block_hash())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_parse_back() {
        for n in Network::ALL {
            assert_eq!(n.name().parse::<Network>(), Ok(n));
        }
        assert!("mainnet".parse::<Network>().is_err());
    }

    #[test]
    fn genesis_blocks_have_valid_proof_of_work_and_differ() {
        let hashes: Vec<BlockHash> = Network::ALL
            .into_iter()
            .map(|n| {
                let params = Params::new(n);
                let genesis = params.genesis_block();
                assert!(params.pow_limit.is_met_by(genesis.block_hash()), "{n} genesis PoW");
                assert_eq!(genesis.txdata[0].coinbase_height(), Some(0));
                genesis.block_hash()
            })
            .collect();
        assert_ne!(hashes[0], hashes[1]);
        assert_ne!(hashes[1], hashes[2]);
    }

    #[test]
    fn genesis_nonces_are_the_first_that_work() {
        for n in Network::ALL {
            let genesis = Params::new(n).genesis_block();
            assert_eq!(mine_genesis_nonce(n, genesis.header.time), Some(genesis.header.nonce));
        }
    }
}
