//! Where secrets come from: passphrases and seed phrases, never the command line.
//!
//! Owns reading the wallet passphrase (from `--passphrase-file`, else the
//! `TINYCHAIN_WALLET_PASSPHRASE` variable, else a prompt without echo on the
//! terminal), a new one (asked twice), the BIP39 passphrase, and a seed phrase for
//! `restore` (from standard input when it is not a terminal, else a prompt without
//! echo). A secret never travels as an argument, where shell history and `ps` would
//! show it. Prompts are made only when standard error is a terminal, so a script
//! or test without one gets a clear error instead of a wait. Everything read is
//! wiped from memory when dropped. This is the wallet's only terminal input.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The variable a script may set to the wallet passphrase.
pub(crate) const PASSPHRASE_ENV: &str = "TINYCHAIN_WALLET_PASSPHRASE";
/// The variable a script may set to the new passphrase of `change-passphrase`.
pub(crate) const NEW_PASSPHRASE_ENV: &str = "TINYCHAIN_WALLET_NEW_PASSPHRASE";
/// The variable a script may set to the BIP39 passphrase (with `--bip39-passphrase`).
pub(crate) const BIP39_PASSPHRASE_ENV: &str = "TINYCHAIN_BIP39_PASSPHRASE";
/// The longest secret read from a file or standard input, in bytes.
const MAX_SECRET: u64 = 64 * 1024;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No source gave it and there is no terminal to ask on.
    #[error("{what} is needed: {hint} (standard error is not a terminal to ask on)")]
    NoTerminal {
        /// What was asked for.
        what: &'static str,
        /// Where else it can come from.
        hint: String,
    },
    /// The two entries of a new passphrase differ.
    #[error("the two {0}s differ; nothing was changed")]
    Differ(&'static str),
    /// An empty wallet passphrase.
    #[error("an empty wallet passphrase protects nothing; choose one")]
    Empty,
    /// A file or the terminal failed.
    #[error("reading {what} from {from}: {cause}")]
    Io {
        /// What was being read.
        what: &'static str,
        /// From where.
        from: String,
        /// The OS error.
        cause: std::io::Error,
    },
}

/// Where the wallet passphrases come from, as the command line says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// `--passphrase-file`.
    pub(crate) passphrase_file: Option<PathBuf>,
    /// `--new-passphrase-file` (for `change-passphrase`).
    pub(crate) new_passphrase_file: Option<PathBuf>,
}

fn read_limited(
    reader: impl Read,
    what: &'static str,
    from: &str,
) -> Result<Zeroizing<String>, Error> {
    let io = |cause| Error::Io { what, from: from.to_owned(), cause };
    let mut bytes = Zeroizing::new(Vec::new());
    reader.take(MAX_SECRET).read_to_end(&mut bytes).map_err(io)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| io(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8")))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// A passphrase file's contents, less one trailing line ending.
fn from_file(path: &Path, what: &'static str) -> Result<Zeroizing<String>, Error> {
    let from = path.display().to_string();
    let file =
        std::fs::File::open(path).map_err(|cause| Error::Io { what, from: from.clone(), cause })?;
    let mut text = read_limited(file, what, &from)?;
    for ending in ["\r\n", "\n"] {
        if let Some(stripped) = text.strip_suffix(ending) {
            text = Zeroizing::new(stripped.to_owned());
            break;
        }
    }
    Ok(text)
}

fn from_env(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name).ok().map(Zeroizing::new)
}

fn prompt(what: &'static str, question: &str, hint: &str) -> Result<Zeroizing<String>, Error> {
    if !std::io::stderr().is_terminal() {
        return Err(Error::NoTerminal { what, hint: hint.to_owned() });
    }
    rpassword::prompt_password(question).map(Zeroizing::new).map_err(|cause| Error::Io {
        what,
        from: "the terminal".to_owned(),
        cause,
    })
}

fn prompt_twice(
    what: &'static str,
    question: &str,
    hint: &str,
) -> Result<Zeroizing<String>, Error> {
    let first = prompt(what, question, hint)?;
    let second = prompt(what, "again, to check: ", hint)?;
    if first != second {
        return Err(Error::Differ(what));
    }
    Ok(first)
}

const HINT: &str = "give --passphrase-file, or set TINYCHAIN_WALLET_PASSPHRASE";

impl Sources {
    /// The passphrase of an existing wallet.
    ///
    /// # Errors
    ///
    /// No source and no terminal; the file cannot be read.
    pub(crate) fn passphrase(&self) -> Result<Zeroizing<String>, Error> {
        const WHAT: &str = "the wallet passphrase";
        match (&self.passphrase_file, from_env(PASSPHRASE_ENV)) {
            (Some(path), _) => from_file(path, WHAT),
            (None, Some(p)) => Ok(p),
            (None, None) => prompt(WHAT, "wallet passphrase: ", HINT),
        }
    }

    /// The passphrase of a wallet being made (`create`, `restore`, `upgrade`), asked
    /// twice on a terminal.
    ///
    /// # Errors
    ///
    /// As [`Sources::passphrase`]; the entries differ; it is empty.
    pub(crate) fn new_passphrase(&self) -> Result<Zeroizing<String>, Error> {
        const WHAT: &str = "a passphrase for the new wallet";
        let passphrase = match (&self.passphrase_file, from_env(PASSPHRASE_ENV)) {
            (Some(path), _) => from_file(path, WHAT)?,
            (None, Some(p)) => p,
            (None, None) => prompt_twice(WHAT, "new wallet passphrase: ", HINT)?,
        };
        non_empty(passphrase)
    }

    /// The new passphrase of `change-passphrase`, asked twice on a terminal.
    ///
    /// # Errors
    ///
    /// As [`Sources::new_passphrase`].
    pub(crate) fn changed_passphrase(&self) -> Result<Zeroizing<String>, Error> {
        const WHAT: &str = "the new wallet passphrase";
        let hint = "give --new-passphrase-file, or set TINYCHAIN_WALLET_NEW_PASSPHRASE";
        let passphrase = match (&self.new_passphrase_file, from_env(NEW_PASSPHRASE_ENV)) {
            (Some(path), _) => from_file(path, WHAT)?,
            (None, Some(p)) => p,
            (None, None) => prompt_twice(WHAT, "new wallet passphrase: ", hint)?,
        };
        non_empty(passphrase)
    }
}

fn non_empty(passphrase: Zeroizing<String>) -> Result<Zeroizing<String>, Error> {
    if passphrase.is_empty() { Err(Error::Empty) } else { Ok(passphrase) }
}

/// The BIP39 passphrase (the seed's "25th word"), when `--bip39-passphrase` asks for
/// one: `TINYCHAIN_BIP39_PASSPHRASE`, else a prompt (twice when `confirm`).
///
/// # Errors
///
/// No source and no terminal; the entries differ.
pub(crate) fn bip39_passphrase(confirm: bool) -> Result<Zeroizing<String>, Error> {
    const WHAT: &str = "the BIP39 passphrase";
    let hint = "set TINYCHAIN_BIP39_PASSPHRASE";
    if let Some(p) = from_env(BIP39_PASSPHRASE_ENV) {
        return Ok(p);
    }
    if confirm {
        prompt_twice(WHAT, "BIP39 passphrase (part of the seed: write it down too): ", hint)
    } else {
        prompt(WHAT, "BIP39 passphrase: ", hint)
    }
}

/// The seed phrase of `restore`: standard input if it is not a terminal (a pipe or
/// a file), else a prompt without echo.
///
/// # Errors
///
/// Standard input cannot be read, or the terminal fails.
pub(crate) fn mnemonic() -> Result<Zeroizing<String>, Error> {
    const WHAT: &str = "the seed phrase";
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return prompt(
            WHAT,
            "seed phrase (the words in order, separated by spaces): ",
            "pipe it to standard input",
        );
    }
    read_limited(stdin.lock(), WHAT, "standard input")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_file_loses_one_line_ending_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pw");
        for (content, expected) in
            [("pw\n", "pw"), ("pw\r\n", "pw"), ("pw", "pw"), ("pw \n\n", "pw \n")]
        {
            std::fs::write(&path, content).expect("writes");
            assert_eq!(from_file(&path, "x").expect("reads").as_str(), expected);
        }
        std::fs::write(&path, [0xff, 0xfe]).expect("writes");
        assert!(from_file(&path, "x").is_err(), "not UTF-8");
        let err =
            from_file(&dir.path().join("none"), "the wallet passphrase").expect_err("missing");
        assert!(err.to_string().starts_with("reading the wallet passphrase from"), "{err}");
        assert!(matches!(non_empty(Zeroizing::new(String::new())), Err(Error::Empty)));
    }
}
