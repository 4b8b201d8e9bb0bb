//! Format version 1 of the wallet file: random keys with their WIFs in the clear.
//!
//! Owns reading such a file (as this program's first release wrote it) into the
//! current model, so read-only commands keep working on it and `upgrade` can turn
//! it into a version 2 file in place. Nothing ever writes this format again.

use serde::Deserialize;
use tinychain_protocol::keys::{Address, PrivateKey};
use tinychain_protocol::params::Network;
use zeroize::Zeroizing;

use super::{KeyRecord, SentRecord};

/// One key of a version 1 file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    address: Address,
    wif: String,
    label: String,
    change: bool,
}

/// A version 1 file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "format")]
    _format: String,
    #[serde(rename = "version")]
    _version: u32,
    #[serde(rename = "network")]
    _network: Network,
    keys: Vec<Key>,
    sent: Vec<SentRecord>,
}

/// What a version 1 file holds: key records (all imported), their WIFs, the sends.
pub(super) struct Contents {
    pub(super) keys: Vec<KeyRecord>,
    pub(super) wifs: Vec<Zeroizing<String>>,
    pub(super) sent: Vec<SentRecord>,
}

/// Reads a version 1 file's JSON and checks every key against its address.
///
/// # Errors
///
/// What is wrong, for [`super::Error::Corrupt`].
pub(super) fn read(value: serde_json::Value, network: Network) -> Result<Contents, String> {
    let file: File = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let mut contents = Contents { keys: Vec::new(), wifs: Vec::new(), sent: file.sent };
    for key in file.keys {
        let wif = Zeroizing::new(key.wif);
        let (private, kind) =
            PrivateKey::from_wif(&wif).map_err(|e| format!("key of {}: {e}", key.address))?;
        if !kind.includes(network) {
            return Err(format!("key of {} is for {kind}", key.address));
        }
        if private.public_key().address(network) != key.address {
            return Err(format!("key does not match address {}", key.address));
        }
        contents.keys.push(KeyRecord {
            address: key.address,
            label: key.label,
            change: key.change,
            path: None,
        });
        contents.wifs.push(wif);
    }
    Ok(contents)
}
