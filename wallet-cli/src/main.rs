//! `tinychain-wallet`: the wallet command-line client.
//!
//! Owns the command line: global flags (shared with `tinychain-node`'s client
//! commands), where the wallet file and the node's socket are, printing each
//! command's report (readable, or JSON with `--json`) and turning errors into one
//! line on stderr and a non-zero exit code. The work is in the modules: [`wallet`]
//! (the file), [`hd`] (seed phrases and derivation), [`vault`] (encryption at
//! rest), [`prompt`] (where passphrases and seed phrases come from), [`coins`]
//! (selection and fees) and [`commands`]; the node's socket is
//! `tinychain_rpc_client`'s.

mod coins;
mod commands;
mod prompt;

use tinychain_wallet::{hd, wallet};

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, Subcommand};
use tinychain_protocol::keys::Address;
use tinychain_protocol::params::Network;
use tinychain_rpc_client::NodeFlags;

use commands::{BumpArgs, Context, CreateArgs, Report, SendArgs};

/// The tinychain wallet: keys, balances and payments, talking to a node's RPC socket.
#[derive(Parser, Debug)]
#[command(name = "tinychain-wallet", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags shared with `tinychain-node`'s client commands.
#[derive(clap::Args, Debug)]
struct Global {
    /// Where the node is (and the wallet, in the network's data directory):
    /// flags > environment > the node's configuration file > defaults.
    #[command(flatten)]
    node: NodeFlags,
    /// The wallet file (default: <datadir>/<network>/wallet.json).
    #[arg(long, global = true, env = "TINYCHAIN_WALLET")]
    wallet: Option<PathBuf>,
    /// Prints JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Reads the wallet passphrase from this file (else TINYCHAIN_WALLET_PASSPHRASE, else a prompt).
    #[arg(long, global = true, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
    /// Reads change-passphrase's new passphrase from this file (else
    /// TINYCHAIN_WALLET_NEW_PASSPHRASE, else a prompt).
    #[arg(long, global = true, value_name = "PATH")]
    new_passphrase_file: Option<PathBuf>,
}

/// How a new seed is made.
#[derive(clap::Args, Debug)]
struct SeedFlags {
    /// Words of the seed phrase: 12 or 24.
    #[arg(long, default_value_t = 12, value_parser = parse_words)]
    words: usize,
    /// Asks for a BIP39 passphrase too (or reads TINYCHAIN_BIP39_PASSPHRASE).
    #[arg(long)]
    bip39_passphrase: bool,
}

fn parse_words(text: &str) -> Result<usize, String> {
    match text {
        "12" => Ok(12),
        "24" => Ok(24),
        _ => Err("a seed phrase has 12 or 24 words".to_owned()),
    }
}

impl SeedFlags {
    fn words(&self) -> hd::Words {
        if self.words == 24 { hd::Words::TwentyFour } else { hd::Words::Twelve }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Creates a wallet with a new seed phrase, encrypted under a passphrase, and a
    /// first address (never overwrites a file).
    Create {
        /// A label for the first address.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        seed: SeedFlags,
    },
    /// Rebuilds a wallet from its seed phrase (read from standard input, or asked
    /// for), finding its addresses through the node's address index.
    Restore {
        /// Unused addresses in a row that end the scan of each chain.
        #[arg(long, default_value_t = wallet::DEFAULT_GAP_LIMIT)]
        gap_limit: u32,
        /// The seed has a BIP39 passphrase (read TINYCHAIN_BIP39_PASSPHRASE, or asked for).
        #[arg(long)]
        bip39_passphrase: bool,
    },
    /// Rewrites a format version 1 wallet file in place as version 2: encrypted, with a
    /// seed phrase for new addresses and its keys kept as imported keys.
    Upgrade {
        #[command(flatten)]
        seed: SeedFlags,
    },
    /// Shows the seed phrase (after the passphrase).
    ShowMnemonic,
    /// Seals the wallet's secrets under a new passphrase.
    ChangePassphrase,
    /// Adds the next receive address.
    NewAddress {
        /// A label for it.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Lists the wallet's addresses.
    Addresses,
    /// Adds a private key given in Wallet Import Format (kept encrypted with the seed).
    ImportKey {
        /// The key (WIF).
        wif: String,
        /// A label for its address.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Prints the private key (WIF) of one of the wallet's addresses (after the passphrase).
    ExportKey {
        /// The address.
        address: String,
    },
    /// Shows confirmed, unconfirmed incoming, pending outgoing and immature amounts.
    Balance,
    /// Lists the wallet's coins.
    Utxos,
    /// Pays an address; change goes to a fresh address of the wallet.
    Send {
        /// The address to pay.
        address: String,
        /// The amount in coins (up to 8 decimals), or in belushis with --belushis.
        #[arg(allow_hyphen_values = true)]
        amount: String,
        /// Fee rate in belushis per byte (default: the node's estimate for --conf-target).
        #[arg(long)]
        fee_rate: Option<u64>,
        /// Blocks to confirm within, for the node's fee estimate.
        #[arg(long, default_value_t = DEFAULT_CONF_TARGET)]
        conf_target: u32,
        /// The amount is a whole number of belushis.
        #[arg(long)]
        belushis: bool,
        /// Does not signal replaceability (BIP125): the fee can then never be raised.
        #[arg(long)]
        no_rbf: bool,
    },
    /// Replaces a waiting transaction of the wallet with one paying a higher fee
    /// (BIP125): the same inputs and payments, less change.
    Bumpfee {
        /// The txid of the transaction to replace.
        txid: String,
        /// The new fee rate in belushis per byte (default: the node's estimate, and at
        /// least what replaces the transaction).
        #[arg(long)]
        fee_rate: Option<u64>,
        /// Blocks to confirm within, for the node's fee estimate.
        #[arg(long, default_value_t = DEFAULT_CONF_TARGET)]
        conf_target: u32,
    },
    /// Tells where a transaction is: mempool, mined (block, height, confirmations), or not found.
    Status {
        /// The txid.
        txid: String,
    },
    /// Lists the wallet's transactions.
    History,
    /// Prints a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Makes a new private key (not stored) and prints it (WIF) with its address.
    Keygen,
    /// Checks an address and prints its network and public-key hash.
    AddressInfo {
        /// The address.
        address: String,
    },
}

/// The confirmation target of the fee estimate, in blocks (Core's default, 6).
const DEFAULT_CONF_TARGET: u32 = 6;

fn main() -> ExitCode {
    use std::io::Write as _;
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stderr (`2>&- `, a killed pager) must not turn the error into a panic.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn context(global: &Global) -> Context {
    let node = global.node.locate().map_err(|e| e.to_string());
    let network = node.as_ref().map_or(global.node.network.unwrap_or(Network::Main), |n| n.network);
    let wallet = global
        .wallet
        .clone()
        .or_else(|| node.as_ref().ok().map(|n| n.network_dir().join("wallet.json")));
    let secrets = prompt::Sources {
        passphrase_file: global.passphrase_file.clone(),
        new_passphrase_file: global.new_passphrase_file.clone(),
    };
    Context { network, wallet, node, secrets }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    let ctx = context(global);
    let report = match cli.command {
        Command::Keygen => {
            let key = wallet::generate_key()
                .map_err(|e| anyhow::anyhow!("reading the OS's randomness: {e}"))?;
            let address = key.public_key().address(ctx.network);
            let wif = key.to_wif(ctx.network);
            Report {
                text: format!("address {address}\nwif {wif}\n"),
                json: serde_json::json!({ "address": address, "wif": wif }),
            }
        }
        Command::AddressInfo { address } => {
            let parsed: Address = address.parse().with_context(|| format!("address {address}"))?;
            let hash = hex::encode(parsed.pubkey_hash().to_byte_array());
            Report {
                text: format!("network {}\npubkey_hash {hash}\n", parsed.network_kind()),
                json: serde_json::json!({
                    "network": parsed.network_kind().to_string(),
                    "pubkey_hash": hash,
                }),
            }
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tinychain-wallet", &mut script);
            return emit(&String::from_utf8_lossy(&script));
        }
        Command::Create { label, seed } => {
            let args = CreateArgs {
                label,
                words: seed.words(),
                bip39_passphrase: seed.bip39_passphrase,
                ..CreateArgs::default()
            };
            commands::create(&ctx, &args)?
        }
        Command::Restore { gap_limit, bip39_passphrase } => {
            let args = CreateArgs { gap_limit, bip39_passphrase, ..CreateArgs::default() };
            commands::restore(&ctx, &args)?
        }
        Command::Upgrade { seed } => {
            let args = CreateArgs {
                words: seed.words(),
                bip39_passphrase: seed.bip39_passphrase,
                ..CreateArgs::default()
            };
            commands::upgrade(&ctx, &args)?
        }
        Command::ShowMnemonic => commands::show_mnemonic(&ctx)?,
        Command::ChangePassphrase => commands::change_passphrase(&ctx)?,
        Command::NewAddress { label } => commands::new_address(&ctx, &label)?,
        Command::Addresses => commands::addresses(&ctx)?,
        Command::ImportKey { wif, label } => commands::import_key(&ctx, &wif, &label)?,
        Command::ExportKey { address } => commands::export_key(&ctx, &address)?,
        Command::Balance => commands::balance(&ctx)?,
        Command::Utxos => commands::utxos(&ctx)?,
        Command::Send { address, amount, fee_rate, conf_target, belushis, no_rbf } => {
            let args = SendArgs {
                to: address,
                amount,
                belushis,
                fee_rate,
                conf_target,
                replaceable: !no_rbf,
            };
            commands::send(&ctx, &args)?
        }
        Command::Bumpfee { txid, fee_rate, conf_target } => {
            commands::bumpfee(&ctx, &BumpArgs { txid, fee_rate, conf_target })?
        }
        Command::Status { txid } => commands::status(&ctx, &txid)?,
        Command::History => commands::history(&ctx)?,
    };
    if global.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&report.json)?))
    } else {
        emit(&report.text)
    }
}

/// Writes a command's output to stdout. A reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use tinychain_protocol::keys::PrivateKey;

    use super::*;

    #[test]
    fn the_command_line_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["tinychain-wallet", "keygen", "--network", "regtest"])
            .expect("parses");
        assert!(matches!(cli.command, Command::Keygen));
        assert_eq!(cli.global.node.network, Some(Network::Regtest));
        assert!(Cli::try_parse_from(["tinychain-wallet", "keygen", "--network", "x"]).is_err());
        let cli = Cli::try_parse_from(["tinychain-wallet", "send", "mxyz", "-1", "--json"])
            .expect("a negative amount reaches the amount parser");
        assert!(matches!(cli.command, Command::Send { ref amount, .. } if amount == "-1"));
    }

    #[test]
    fn keygen_makes_a_valid_address_and_key() {
        let cli = Cli::try_parse_from(["tinychain-wallet", "keygen", "--network", "regtest"])
            .expect("parses");
        assert!(run(cli).is_ok());
        let key = wallet::generate_key().expect("the OS has randomness");
        let wif = key.to_wif(Network::Regtest);
        assert!(PrivateKey::from_wif(&wif).is_ok());
        let bad = Cli::try_parse_from([
            "tinychain-wallet",
            "address-info",
            "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMh",
        ])
        .expect("parses");
        assert!(run(bad).is_err(), "a bad checksum is refused");
    }

    #[test]
    fn paths_come_from_the_data_directory_unless_given() {
        let cli = Cli::try_parse_from([
            "tinychain-wallet",
            "balance",
            "--datadir",
            "/d",
            "--network",
            "regtest",
        ])
        .expect("parses");
        let ctx = context(&cli.global);
        assert_eq!(ctx.wallet, Some(PathBuf::from("/d/regtest/wallet.json")));
        assert_eq!(ctx.node.expect("located").socket, PathBuf::from("/d/regtest/rpc.sock"));
        let cli = Cli::try_parse_from([
            "tinychain-wallet",
            "balance",
            "--wallet",
            "/w.json",
            "--rpc-socket",
            "/s.sock",
        ])
        .expect("parses");
        let ctx = context(&cli.global);
        assert_eq!(ctx.wallet, Some(PathBuf::from("/w.json")));
        assert_eq!(ctx.node.expect("located").socket, PathBuf::from("/s.sock"));
    }
}
