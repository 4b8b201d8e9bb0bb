//! `tinychain-wallet`: the wallet command-line client.
//!
//! For now it makes and inspects keys and addresses offline; the wallet file and
//! the commands that talk to a node's RPC socket (balance, send, status) come next.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tinychain_protocol::keys::{Address, PrivateKey};
use tinychain_protocol::params::Network;

/// The tinychain wallet.
#[derive(Parser, Debug)]
#[command(name = "tinychain-wallet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Makes a new private key from the OS's randomness and prints it (WIF) with its address.
    Keygen {
        /// The network the address is for.
        #[arg(long, default_value = "main", env = "TINYCHAIN_NETWORK")]
        network: Network,
    },
    /// Checks an address and prints its network and public-key hash.
    AddressInfo {
        /// The address.
        address: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen { network } => {
            let key = loop {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|e| anyhow::anyhow!("reading the OS's randomness: {e}"))?;
                // Fails only for 0 or ≥ the curve order: about 2^-128 of draws.
                if let Ok(key) = PrivateKey::from_bytes(&secret) {
                    break key;
                }
            };
            emit(&format!(
                "address {}\nwif {}\n",
                key.public_key().address(network),
                key.to_wif(network)
            ))
        }
        Command::AddressInfo { address } => {
            let parsed: Address = address.parse().with_context(|| format!("address {address}"))?;
            emit(&format!(
                "network {}\npubkey_hash {}\n",
                parsed.network_kind(),
                hex::encode(parsed.pubkey_hash().to_byte_array())
            ))
        }
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
    use super::*;

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["tinychain-wallet", "keygen", "--network", "regtest"])
            .expect("parses");
        assert!(matches!(cli.command, Command::Keygen { network: Network::Regtest }));
        assert!(Cli::try_parse_from(["tinychain-wallet", "keygen", "--network", "x"]).is_err());
    }

    #[test]
    fn keygen_makes_a_valid_address_and_key() {
        assert!(run(Cli { command: Command::Keygen { network: Network::Regtest } }).is_ok());
        let bad = Command::AddressInfo { address: "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMh".into() };
        assert!(run(Cli { command: bad }).is_err(), "a bad checksum is refused");
    }
}
