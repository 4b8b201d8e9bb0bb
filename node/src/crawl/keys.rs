//! FIND_NODE keys aimed at each bucket of a remote peer's routing table (Nebula's idea).
//!
//! Kademlia files a peer under the bucket given by the common prefix length of
//! SHA-256 of its id and SHA-256 of the table owner's id. A key whose hash shares
//! exactly `j` leading bits with the remote peer's hashed id falls in the remote's
//! bucket `j`, so FIND_NODE for it returns the peers of that bucket first. Keys
//! are found once per crawl: [`PrefixTable`] holds, for every 16-bit hash prefix,
//! a preimage with that prefix (about 770,000 hashes); then a key for bucket `j`
//! of any peer is a table look-up. Pure.

use libp2p::PeerId;
use tinychain_protocol::hash::sha256;

/// Buckets asked at most (common prefix lengths 0 to 15).
pub const MAX_BUCKETS: u32 = 16;

/// A preimage for each 16-bit SHA-256 prefix.
pub struct PrefixTable(Vec<[u8; 8]>);

impl std::fmt::Debug for PrefixTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrefixTable")
    }
}

fn prefix16(bytes: &[u8]) -> usize {
    (usize::from(bytes[0]) << 8) | usize::from(bytes[1])
}

impl PrefixTable {
    /// Finds a preimage for every prefix (deterministic: counting up from zero).
    pub fn build() -> PrefixTable {
        let mut table = vec![None; 1 << 16];
        let mut missing = table.len();
        let mut counter: u64 = 0;
        while missing > 0 {
            let preimage = counter.to_be_bytes();
            let slot = &mut table[prefix16(&sha256(&preimage))];
            if slot.is_none() {
                *slot = Some(preimage);
                missing -= 1;
            }
            counter += 1;
        }
        PrefixTable(table.into_iter().map(|p| p.unwrap_or_default()).collect())
    }

    /// Keys for buckets 0 to `buckets - 1` (at most [`MAX_BUCKETS`]) of `peer`'s table.
    pub fn keys_for(&self, peer: &PeerId, buckets: u32) -> Vec<Vec<u8>> {
        let own = prefix16(&sha256(&peer.to_bytes()));
        (0..buckets.min(MAX_BUCKETS)).map(|j| self.0[own ^ (1 << (15 - j))].to_vec()).collect()
    }
}

/// The common prefix length of the hashed key and the hashed peer id, as Kademlia computes it.
pub fn bucket_of(key: &[u8], peer: &PeerId) -> u32 {
    let (a, b) = (sha256(key), sha256(&peer.to_bytes()));
    let mut bits = 0;
    for (x, y) in a.iter().zip(b.iter()) {
        let diff = x ^ y;
        bits += diff.leading_zeros();
        if diff != 0 {
            break;
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_lands_in_its_bucket_of_the_remote_peers_table() {
        let table = PrefixTable::build();
        for _ in 0..5 {
            let peer = PeerId::random();
            let keys = table.keys_for(&peer, MAX_BUCKETS);
            assert_eq!(keys.len(), 16);
            for (j, key) in keys.iter().enumerate() {
                assert_eq!(bucket_of(key, &peer), j as u32);
                // The same as libp2p-kad's own distance: bucket j is 255 - j there.
                let distance = libp2p::kad::KBucketKey::new(key.clone())
                    .distance(&libp2p::kad::KBucketKey::from(peer));
                assert_eq!(distance.ilog2(), Some(255 - j as u32));
            }
        }
        assert_eq!(table.keys_for(&PeerId::random(), 3).len(), 3);
    }
}
