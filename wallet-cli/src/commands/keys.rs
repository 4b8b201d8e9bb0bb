//! Making and opening the wallet: `create`, `restore`, `upgrade`, `show-mnemonic`,
//! `change-passphrase`, and its addresses and keys (`new-address`, `addresses`,
//! `import-key`, `export-key`).
//!
//! Owns what these commands say, the seed phrase's "write this down" above all, and
//! `restore`'s scan: it derives the account's receive and change addresses in turn
//! and asks the node's address index about them until a gap of unused ones (20 by
//! default) follows the last used, so coins and history come back with the seed.

use std::fmt::Write as _;

use bip39::Mnemonic;
use serde_json::{Value, json};
use tinychain_protocol::keys::PrivateKey;
use tinychain_rpc_client::Client;

use super::{Context, Error, Report, Result, address_history, connect, parse_address};
use crate::hd::{self, Chain, KeyPath, Words};
use crate::prompt;
use crate::wallet::{DEFAULT_GAP_LIMIT, Wallet};

/// The arguments that make a seed: `create`, `restore` and `upgrade`.
#[derive(Debug, Clone)]
pub(crate) struct CreateArgs {
    /// A label for the first address.
    pub(crate) label: String,
    /// Words of a new phrase.
    pub(crate) words: Words,
    /// Whether to ask for a BIP39 passphrase.
    pub(crate) bip39_passphrase: bool,
    /// Unused addresses in a row that end a restore's scan.
    pub(crate) gap_limit: u32,
}

impl Default for CreateArgs {
    fn default() -> CreateArgs {
        CreateArgs {
            label: String::new(),
            words: Words::Twelve,
            bip39_passphrase: false,
            gap_limit: DEFAULT_GAP_LIMIT,
        }
    }
}

/// The seed phrase as it is shown, once: numbered words and what to do with them.
fn write_this_down(mnemonic: &Mnemonic, bip39_passphrase: bool) -> String {
    let mut text =
        format!("\nWRITE THIS DOWN. Your seed phrase ({} words):\n\n", mnemonic.word_count());
    let words: Vec<&str> = mnemonic.words().collect();
    for (row, chunk) in words.chunks(4).enumerate() {
        let line: String =
            (row * 4 + 1..).zip(chunk).map(|(n, word)| format!("{n:>4}. {word:<10}")).collect();
        let _ = writeln!(text, "{}", line.trim_end());
    }
    text.push_str(
        "\nIt is the only way to restore this wallet (`tinychain-wallet restore`) if the file or \
         its passphrase is lost, and anyone who has it can spend the coins. Write it on paper, \
         in order, and keep it offline. It is not shown again unless you ask \
         (`tinychain-wallet show-mnemonic`, with the passphrase).\n",
    );
    if bip39_passphrase {
        text.push_str(
            "The seed also uses the BIP39 passphrase you typed: without it the phrase restores a \
             different, empty wallet. Keep it too.\n",
        );
    }
    text
}

fn bip39_passphrase(ask: bool, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
    Ok(if ask {
        prompt::bip39_passphrase(confirm)?
    } else {
        zeroize::Zeroizing::new(String::new())
    })
}

/// `create`: a new wallet with a new seed phrase, sealed under a passphrase, and a
/// first receive address.
pub(crate) fn create(ctx: &Context, args: &CreateArgs) -> Result<Report> {
    let path = ctx.wallet()?;
    let _lock = Wallet::lock(path, true)?;
    if path.symlink_metadata().is_ok() {
        return Err(crate::wallet::Error::Exists(path.to_owned()).into());
    }
    let bip39 = bip39_passphrase(args.bip39_passphrase, true)?;
    let passphrase = ctx.secrets.new_passphrase()?;
    let mnemonic = hd::generate_mnemonic(args.words).map_err(Error::Random)?;
    let mut wallet =
        Wallet::from_seed(path, ctx.network, &mnemonic, &bip39, &passphrase, args.gap_limit)?;
    let address = wallet.next_address(Chain::Receive, &args.label)?;
    wallet.create()?;
    let mut text = format!("created {} (encrypted)\naddress {address}\n", path.display());
    text.push_str(&write_this_down(&mnemonic, !bip39.is_empty()));
    Ok(Report {
        text,
        json: json!({
            "wallet": path, "network": ctx.network, "address": address,
            "mnemonic": mnemonic.to_string(), "bip39_passphrase": !bip39.is_empty(),
        }),
    })
}

/// How many addresses of `chain` have been used: the scan goes on until
/// `gap_limit` unused ones in a row follow the last used one.
fn used_addresses(
    client: &mut Client,
    wallet: &Wallet,
    chain: Chain,
    gap_limit: u32,
) -> Result<u32> {
    let (mut scanned, mut used) = (0u32, 0u32);
    while scanned < used.saturating_add(gap_limit) {
        let end = used.saturating_add(gap_limit);
        let batch: Vec<_> = (scanned..end)
            .map(|index| wallet.address_at(KeyPath { chain, index }).map(|a| (index, a)))
            .collect::<std::result::Result<_, _>>()?;
        let addresses: Vec<_> = batch.iter().map(|(_, a)| *a).collect();
        let history = address_history(client, &addresses)?;
        for (index, address) in &batch {
            if history.iter().any(|e| e.address == *address) {
                used = used.max(index + 1);
            }
        }
        scanned = end;
    }
    Ok(used)
}

/// `restore`: a wallet rebuilt from its seed phrase (read from standard input or a
/// prompt, never the command line), with every address the node's index has seen.
pub(crate) fn restore(ctx: &Context, args: &CreateArgs) -> Result<Report> {
    let path = ctx.wallet()?;
    let _lock = Wallet::lock(path, true)?;
    if path.symlink_metadata().is_ok() {
        return Err(crate::wallet::Error::Exists(path.to_owned()).into());
    }
    let phrase = prompt::mnemonic()?;
    let mnemonic = hd::parse_mnemonic(&phrase)?;
    let bip39 = bip39_passphrase(args.bip39_passphrase, false)?;
    let passphrase = ctx.secrets.new_passphrase()?;
    let gap = args.gap_limit.max(1);
    let mut wallet = Wallet::from_seed(path, ctx.network, &mnemonic, &bip39, &passphrase, gap)?;
    let mut client = connect(ctx)?;
    let receive = used_addresses(&mut client, &wallet, Chain::Receive, gap)?;
    let change = used_addresses(&mut client, &wallet, Chain::Change, gap)?;
    for _ in 0..receive.max(1) {
        wallet.next_address(Chain::Receive, "")?;
    }
    for _ in 0..change {
        wallet.next_address(Chain::Change, "")?;
    }
    wallet.create()?;
    Ok(Report {
        text: format!(
            "restored {} (encrypted)\n{receive} receive and {change} change addresses have history \
             (scanned until {gap} unused in a row)\n`tinychain-wallet balance` and `history` show what they hold\n",
            path.display()
        ),
        json: json!({
            "wallet": path, "network": ctx.network, "receive_used": receive,
            "change_used": change, "gap_limit": gap,
        }),
    })
}

/// `upgrade`: a version 1 file (random keys in the clear) rewritten in place as
/// version 2: a new seed phrase for new addresses, its keys kept as imported keys,
/// everything sealed under a passphrase.
pub(crate) fn upgrade(ctx: &Context, args: &CreateArgs) -> Result<Report> {
    let path = ctx.wallet()?;
    let _lock = Wallet::lock(path, false)?;
    let (wallet, bytes) = Wallet::load(path, ctx.network)?;
    if !wallet.is_legacy() {
        return Ok(Report {
            text: format!(
                "{} is already format version {}\n",
                path.display(),
                crate::wallet::VERSION
            ),
            json: json!({ "wallet": path, "upgraded": false, "version": crate::wallet::VERSION }),
        });
    }
    let wifs = wallet.legacy_wifs(&bytes)?;
    let bip39 = bip39_passphrase(args.bip39_passphrase, true)?;
    let passphrase = ctx.secrets.new_passphrase()?;
    let mnemonic = hd::generate_mnemonic(args.words).map_err(Error::Random)?;
    let upgraded = wallet.upgrade(&mnemonic, &bip39, &passphrase, &wifs)?;
    upgraded.save()?;
    let mut text = format!(
        "upgraded {} to format version {} (encrypted): its {} keys are kept as imported keys; \
         new addresses come from the seed phrase below\n",
        path.display(),
        crate::wallet::VERSION,
        wifs.len()
    );
    text.push_str(&write_this_down(&mnemonic, !bip39.is_empty()));
    text.push_str(
        "The keys the file held before are not in this phrase: keep a backup of the wallet file \
         (and its passphrase) for them.\n",
    );
    Ok(Report {
        text,
        json: json!({
            "wallet": path, "upgraded": true, "version": crate::wallet::VERSION,
            "imported_keys": wifs.len(), "mnemonic": mnemonic.to_string(),
        }),
    })
}

/// `show-mnemonic`: the seed phrase again, after the passphrase.
pub(crate) fn show_mnemonic(ctx: &Context) -> Result<Report> {
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let unlocked = wallet.unlock(&ctx.secrets.passphrase()?)?;
    let mnemonic = unlocked.mnemonic();
    Ok(Report {
        text: write_this_down(mnemonic, unlocked.has_bip39_passphrase()).trim_start().to_owned(),
        json: json!({
            "mnemonic": mnemonic.to_string(), "words": mnemonic.word_count(),
            "bip39_passphrase": unlocked.has_bip39_passphrase(),
        }),
    })
}

/// `change-passphrase`: the secrets sealed again under a new passphrase, atomically.
pub(crate) fn change_passphrase(ctx: &Context) -> Result<Report> {
    let path = ctx.wallet()?;
    let _lock = Wallet::lock(path, false)?;
    let (mut wallet, _) = Wallet::load(path, ctx.network)?;
    let unlocked = wallet.unlock(&ctx.secrets.passphrase()?)?;
    let new = ctx.secrets.changed_passphrase()?;
    wallet.change_passphrase(&unlocked, &new)?;
    wallet.save()?;
    Ok(Report {
        text: format!("changed the passphrase of {}\n", path.display()),
        json: json!({ "wallet": path, "changed": true }),
    })
}

/// `new-address`: the next receive address (no passphrase needed).
pub(crate) fn new_address(ctx: &Context, label: &str) -> Result<Report> {
    let _lock = Wallet::lock(ctx.wallet()?, false)?;
    let (mut wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let address = wallet.next_address(Chain::Receive, label)?;
    wallet.save()?;
    let path = wallet.key_record(&address).and_then(|k| k.path.clone());
    Ok(Report {
        text: format!("{address}\n"),
        json: json!({ "address": address, "label": label, "path": path }),
    })
}

/// `addresses`: every address with its label and path.
pub(crate) fn addresses(ctx: &Context) -> Result<Report> {
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let mut text = String::new();
    let mut rows = Vec::new();
    for key in &wallet.keys {
        let kind = if key.change { "change" } else { "receive" };
        let origin = key.path.as_deref().unwrap_or("imported");
        let _ = writeln!(text, "{}  {kind:<7}  {origin:<18}  {}", key.address, key.label);
        rows.push(json!({
            "address": key.address, "label": key.label, "change": key.change, "path": key.path,
        }));
    }
    Ok(Report {
        text: text.lines().map(|l| format!("{}\n", l.trim_end())).collect(),
        json: Value::Array(rows),
    })
}

/// `import-key`: adds a private key (WIF), sealed with the others.
pub(crate) fn import_key(ctx: &Context, wif: &str, label: &str) -> Result<Report> {
    let (key, kind) = PrivateKey::from_wif(wif)?;
    if !kind.includes(ctx.network) {
        return Err(Error::KeyNetwork { expected: ctx.network, found: kind });
    }
    let _lock = Wallet::lock(ctx.wallet()?, false)?;
    let (mut wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let address = key.public_key().address(ctx.network);
    if wallet.key_record(&address).is_some() {
        return Err(crate::wallet::Error::DuplicateKey(address).into());
    }
    let mut unlocked = wallet.unlock(&ctx.secrets.passphrase()?)?;
    let address = wallet.import_key(&mut unlocked, key, label)?;
    wallet.save()?;
    Ok(Report {
        text: format!("imported {address}\n"),
        json: json!({ "address": address, "label": label }),
    })
}

/// `export-key`: one address's private key (WIF), after the passphrase.
pub(crate) fn export_key(ctx: &Context, address: &str) -> Result<Report> {
    let address = parse_address(address, ctx.network)?;
    let (wallet, _) = Wallet::load(ctx.wallet()?, ctx.network)?;
    let record = wallet.key_record(&address).ok_or(Error::NotMine(address))?.clone();
    let unlocked = wallet.unlock(&ctx.secrets.passphrase()?)?;
    let key =
        wallet.private_key(&unlocked, &address.pubkey_hash()).ok_or(Error::NotMine(address))?;
    let wif = key.to_wif(ctx.network);
    Ok(Report {
        text: format!("{wif}\n"),
        json: json!({ "address": address, "wif": wif, "label": record.label, "path": record.path }),
    })
}
