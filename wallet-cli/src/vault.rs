//! Encryption at rest: the wallet's secrets sealed under a passphrase.
//!
//! Owns the sealed form and its two steps: a memory-hard key derivation
//! (argon2id, RFC 9106, over a random salt) turns the passphrase into a 256-bit key,
//! and ChaCha20-Poly1305 (RFC 8439, a random 96-bit nonce per sealing) encrypts and
//! authenticates the secrets, with the file's header as associated data so a sealed
//! part cannot be moved to another network's file. A wrong passphrase and an altered
//! file both fail authentication: nothing is decrypted. The parameters travel in the
//! sealed form, bounded on reading so a hostile file cannot make the wallet allocate
//! without end. Keys and plaintexts are wiped from memory when dropped. The crypto
//! is RustCrypto's (`argon2`, `chacha20poly1305`); no I/O here.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The key derivation this program writes (RFC 9106's argon2id).
pub const KDF: &str = "argon2id";
/// The cipher this program writes.
pub const CIPHER: &str = "chacha20poly1305";
/// argon2id memory for new files, KiB: 64 MiB (RFC 9106's second recommended option).
const MEMORY_KIB: u32 = 64 * 1024;
/// argon2id passes for new files.
const ITERATIONS: u32 = 3;
/// argon2id lanes for new files.
const PARALLELISM: u32 = 1;
/// Salt bytes for new files.
const SALT_LEN: usize = 16;
/// Limits on what a file may ask for: 1 GiB of memory, 64 passes, 16 lanes.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;
/// The longest sealed part read, in bytes of ciphertext (thousands of imported keys).
const MAX_CIPHERTEXT: usize = 4 * 1024 * 1024;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Authentication failed: the passphrase is wrong (or the sealed part was altered).
    #[error("wrong passphrase (or the wallet file's encrypted part was altered)")]
    WrongPassphrase,
    /// The sealed form is malformed or asks for unsupported or excessive parameters.
    #[error("its encrypted part is unusable: {0}")]
    Malformed(String),
    /// The OS has no randomness.
    #[error("reading the OS's randomness: {0}")]
    Random(String),
}

/// How the key is derived from the passphrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    /// Always [`KDF`].
    pub algorithm: String,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// The salt, in hex.
    pub salt: String,
}

/// Secrets sealed under a passphrase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// The key derivation.
    pub kdf: Kdf,
    /// Always [`CIPHER`].
    pub cipher: String,
    /// The 12-byte nonce, in hex.
    pub nonce: String,
    /// The ciphertext with its 16-byte tag, in hex.
    pub ciphertext: String,
}

/// A key derived from a passphrase, with the parameters that derive it again.
pub struct Key {
    key: Zeroizing<[u8; 32]>,
    kdf: Kdf,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kdf", &self.kdf).finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(bytes)
}

impl Kdf {
    /// Parameters for a new passphrase: this program's costs and a fresh salt.
    ///
    /// # Errors
    ///
    /// The OS has no randomness.
    pub fn fresh() -> Result<Kdf, Error> {
        Ok(Kdf {
            algorithm: KDF.to_owned(),
            memory_kib: MEMORY_KIB,
            iterations: ITERATIONS,
            parallelism: PARALLELISM,
            salt: hex::encode(random::<SALT_LEN>()?),
        })
    }

    /// Derives the key of `passphrase`.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for parameters outside the limits or of another algorithm.
    pub fn derive(&self, passphrase: &[u8]) -> Result<Key, Error> {
        let bad = |what: String| Error::Malformed(what);
        if self.algorithm != KDF {
            return Err(bad(format!(
                "key derivation {:?} (this program knows {KDF})",
                self.algorithm
            )));
        }
        if self.memory_kib > MAX_MEMORY_KIB
            || !(1..=MAX_ITERATIONS).contains(&self.iterations)
            || !(1..=MAX_PARALLELISM).contains(&self.parallelism)
        {
            return Err(bad(format!(
                "argon2id costs m={} KiB, t={}, p={} are beyond the limits (m ≤ {MAX_MEMORY_KIB}, t ≤ {MAX_ITERATIONS}, p ≤ {MAX_PARALLELISM})",
                self.memory_kib, self.iterations, self.parallelism
            )));
        }
        let salt = hex::decode(&self.salt).map_err(|e| bad(format!("salt: {e}")))?;
        if !(8..=64).contains(&salt.len()) {
            return Err(bad(format!("a salt of {} bytes", salt.len())));
        }
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| bad(format!("argon2id parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, &salt, key.as_mut_slice())
            .map_err(|e| bad(format!("argon2id: {e}")))?;
        Ok(Key { key, kdf: self.clone() })
    }
}

impl Key {
    /// Seals `plaintext` under this key, binding `aad`; a fresh nonce every time.
    ///
    /// # Errors
    ///
    /// The OS has no randomness.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, Error> {
        let nonce = random::<12>()?;
        let cipher = ChaCha20Poly1305::new_from_slice(self.key.as_slice())
            .map_err(|_| Error::Malformed("a key of the wrong length".to_owned()))?;
        let ciphertext = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
            .map_err(|_| Error::Malformed("the plaintext is too long".to_owned()))?;
        Ok(Sealed {
            kdf: self.kdf.clone(),
            cipher: CIPHER.to_owned(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        })
    }
}

impl Sealed {
    /// Checks the form without a passphrase (lengths, names, limits of hex).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`].
    pub fn check(&self) -> Result<(), Error> {
        if self.cipher != CIPHER {
            return Err(Error::Malformed(format!(
                "cipher {:?} (this program knows {CIPHER})",
                self.cipher
            )));
        }
        if self.nonce.len() != 24 || hex::decode(&self.nonce).is_err() {
            return Err(Error::Malformed("the nonce is not 12 bytes of hex".to_owned()));
        }
        if self.ciphertext.len() > 2 * MAX_CIPHERTEXT || self.ciphertext.len() < 32 {
            return Err(Error::Malformed("the ciphertext's length".to_owned()));
        }
        Ok(())
    }

    /// Opens the secrets with `passphrase`; returns the key too, to seal changes again.
    ///
    /// # Errors
    ///
    /// [`Error::WrongPassphrase`], or [`Error::Malformed`].
    pub fn open(&self, passphrase: &[u8], aad: &[u8]) -> Result<(Key, Zeroizing<Vec<u8>>), Error> {
        self.check()?;
        let key = self.kdf.derive(passphrase)?;
        let plaintext = self.open_with(&key, aad)?;
        Ok((key, plaintext))
    }

    fn open_with(&self, key: &Key, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let bad = |what: &str| Error::Malformed(what.to_owned());
        let nonce: [u8; 12] = hex::decode(&self.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("the nonce"))?;
        let ciphertext = hex::decode(&self.ciphertext).map_err(|_| bad("the ciphertext's hex"))?;
        let cipher = ChaCha20Poly1305::new_from_slice(key.key.as_slice())
            .map_err(|_| bad("a key of the wrong length"))?;
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: &ciphertext, aad })
            .map(Zeroizing::new)
            .map_err(|_| Error::WrongPassphrase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: the derivation itself is argon2's, tested by its crate.
    fn cheap() -> Kdf {
        Kdf { memory_kib: 64, iterations: 1, ..Kdf::fresh().expect("randomness") }
    }

    #[test]
    fn sealed_secrets_open_only_with_the_passphrase_and_the_header() {
        let key = cheap().derive(b"correct horse").expect("derives");
        let sealed = key.seal(b"the seed phrase", b"header").expect("seals");
        assert!(!sealed.ciphertext.contains(&hex::encode("the seed phrase")));
        let (_, plain) = sealed.open(b"correct horse", b"header").expect("opens");
        assert_eq!(plain.as_slice(), b"the seed phrase");
        assert_eq!(sealed.open(b"correct horsE", b"header").err(), Some(Error::WrongPassphrase));
        assert_eq!(sealed.open(b"correct horse", b"other").err(), Some(Error::WrongPassphrase));
        let mut altered = sealed.clone();
        altered
            .ciphertext
            .replace_range(0..2, if &altered.ciphertext[0..2] == "00" { "01" } else { "00" });
        assert_eq!(altered.open(b"correct horse", b"header").err(), Some(Error::WrongPassphrase));
        // A second sealing with the same key uses a new nonce.
        let again = key.seal(b"the seed phrase", b"header").expect("seals");
        assert_ne!(again.nonce, sealed.nonce);
        assert_ne!(again.ciphertext, sealed.ciphertext);
    }

    #[test]
    fn hostile_parameters_are_refused_before_any_work() {
        let key = cheap().derive(b"pw").expect("derives");
        let sealed = key.seal(b"x", b"").expect("seals");
        for kdf in [
            Kdf { memory_kib: u32::MAX, ..sealed.kdf.clone() },
            Kdf { iterations: 0, ..sealed.kdf.clone() },
            Kdf { parallelism: 1000, ..sealed.kdf.clone() },
            Kdf { algorithm: "scrypt".into(), ..sealed.kdf.clone() },
            Kdf { salt: "00".into(), ..sealed.kdf.clone() },
            Kdf { salt: "zz".into(), ..sealed.kdf.clone() },
        ] {
            let bad = Sealed { kdf, ..sealed.clone() };
            assert!(matches!(bad.open(b"pw", b""), Err(Error::Malformed(_))), "{bad:?}");
        }
        for bad in [
            Sealed { cipher: "aes".into(), ..sealed.clone() },
            Sealed { nonce: "00".into(), ..sealed.clone() },
            Sealed { ciphertext: String::new(), ..sealed.clone() },
        ] {
            assert!(matches!(bad.check(), Err(Error::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn new_files_get_the_documented_costs_and_a_fresh_salt() {
        let (a, b) = (Kdf::fresh().expect("randomness"), Kdf::fresh().expect("randomness"));
        assert_eq!(
            (a.algorithm.as_str(), a.memory_kib, a.iterations, a.parallelism),
            (KDF, 65536, 3, 1)
        );
        assert_eq!(a.salt.len(), 32);
        assert_ne!(a.salt, b.salt);
    }
}
