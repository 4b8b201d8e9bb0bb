//! Serde forms of the types component configurations hold, for the config file.
//!
//! Owns how a [`Duration`] is written (whole seconds, under a key named
//! `*_secs`) and how a list of multiaddrs is written (strings), so that each
//! component's `Config` can be the file's section itself. Nothing else.

use std::time::Duration;

/// A [`Duration`] as whole seconds (`#[serde(with = "crate::serde_util::secs")]`).
pub mod secs {
    use super::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes whole seconds.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_secs())
    }

    /// Reads whole seconds.
    ///
    /// # Errors
    ///
    /// The value is not a whole number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A list of multiaddrs as strings (`#[serde(with = "crate::serde_util::multiaddrs")]`).
pub mod multiaddrs {
    use libp2p::Multiaddr;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes each address as a string.
    ///
    /// # Errors
    ///
    /// The serializer's.
    pub fn serialize<S: Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(addrs.iter().map(ToString::to_string))
    }

    /// Reads strings, each a multiaddr.
    ///
    /// # Errors
    ///
    /// A string is not a multiaddr (the error quotes it).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                s.parse().map_err(|e| serde::de::Error::custom(format!("bad multiaddr {s:?}: {e}")))
            })
            .collect()
    }
}
