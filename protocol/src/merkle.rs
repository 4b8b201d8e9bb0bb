//! Merkle roots of a block's transactions, computed as Bitcoin does.
//!
//! Owns the merkle tree algorithm (Bitcoin Core's `ComputeMerkleRoot`): hash the
//! txids pairwise with sha256d, duplicating the last node of every level that has
//! an odd count, until one hash is left. That duplication lets two different
//! transaction lists share a root (CVE-2012-2459: `[a, b, c]` and `[a, b, c, c]`),
//! so the computation also reports whether any level paired a node with an equal
//! node; validation rejects such a block as mutated.

use crate::hash::{Hash256, Txid, sha256d};
use crate::transaction::Transaction;

/// The root of a list of hashes and whether the tree was mutated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MerkleRoot {
    /// The root hash (all zeros for an empty list).
    pub root: Hash256,
    /// Whether two equal nodes were hashed together somewhere, which makes the
    /// root ambiguous (a block with duplicate transactions).
    pub mutated: bool,
}

/// Computes the merkle root of `leaves` (Bitcoin Core's `ComputeMerkleRoot`).
pub fn compute_merkle_root(leaves: &[Hash256]) -> MerkleRoot {
    let mut mutated = false;
    let mut level: Vec<Hash256> = leaves.to_vec();
    if level.is_empty() {
        return MerkleRoot { root: Hash256::ZERO, mutated };
    }
    while level.len() > 1 {
        // An odd count pairs its last node with itself: no mutation by itself.
        for pair in level.chunks_exact(2) {
            mutated |= pair[0] == pair[1];
        }
        if level.len() % 2 == 1 {
            let last = level[level.len() - 1];
            level.push(last);
        }
        level = level.chunks_exact(2).map(|pair| hash_pair(&pair[0], &pair[1])).collect();
    }
    MerkleRoot { root: level[0], mutated }
}

/// Computes the merkle root of a block's transactions, by txid.
pub fn block_merkle_root(txdata: &[Transaction]) -> MerkleRoot {
    let leaves: Vec<Hash256> = txdata.iter().map(|tx| txid_leaf(tx.txid())).collect();
    compute_merkle_root(&leaves)
}

/// Converts a txid into a merkle leaf (same bytes).
pub fn txid_leaf(txid: Txid) -> Hash256 {
    Hash256::from_byte_array(txid.to_byte_array())
}

fn hash_pair(left: &Hash256, right: &Hash256) -> Hash256 {
    let mut data = [0u8; 64];
    data[..32].copy_from_slice(left.as_bytes());
    data[32..].copy_from_slice(right.as_bytes());
    Hash256::from_byte_array(sha256d(&data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u8) -> Hash256 {
        Hash256::from_byte_array(sha256d(&[i]))
    }

    /// An independent reference: the recursive definition, splitting each level at
    /// the largest power of two below its width, as in Bitcoin's partial merkle trees.
    fn reference_root(leaves: &[Hash256]) -> Hash256 {
        fn height_for(n: usize) -> u32 {
            let mut h = 0;
            while (1usize << h) < n {
                h += 1;
            }
            h
        }
        fn node(leaves: &[Hash256], height: u32, pos: usize) -> Hash256 {
            if height == 0 {
                return leaves[pos];
            }
            let width_below = (leaves.len() + (1 << (height - 1)) - 1) >> (height - 1);
            let left = node(leaves, height - 1, pos * 2);
            let right = if pos * 2 + 1 < width_below {
                node(leaves, height - 1, pos * 2 + 1)
            } else {
                left
            };
            let mut data = Vec::with_capacity(64);
            data.extend_from_slice(left.as_bytes());
            data.extend_from_slice(right.as_bytes());
            Hash256::from_byte_array(sha256d(&data))
        }
        node(leaves, height_for(leaves.len()), 0)
    }

    #[test]
    fn matches_the_reference_for_1_to_17_leaves() {
        for count in 1..=17u8 {
            let leaves: Vec<Hash256> = (0..count).map(leaf).collect();
            let got = compute_merkle_root(&leaves);
            assert_eq!(got.root, reference_root(&leaves), "{count} leaves");
            assert!(!got.mutated, "{count} distinct leaves are not mutated");
        }
    }

    #[test]
    fn one_leaf_is_its_own_root() {
        assert_eq!(compute_merkle_root(&[leaf(7)]).root, leaf(7));
    }

    #[test]
    fn bitcoin_block_170_root() {
        // Block 170, the first with a payment: two transactions.
        let txids = [
            "b1fea52486ce0c62bb442b530a3f0132b826c74e473d1f2c220bfa78111c5082",
            "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16",
        ];
        let leaves: Vec<Hash256> =
            txids.iter().map(|t| t.parse().expect("valid txid literal")).collect();
        let expected: Hash256 = "7dac2c5666815c17a3b36427de37bb9d2e2c5ccec3f8633eb91a4205cb4c10ff"
            .parse()
            .expect("valid hash literal");
        assert_eq!(compute_merkle_root(&leaves).root, expected);
    }

    #[test]
    fn duplicated_tail_has_the_same_root_but_is_flagged_mutated() {
        let three: Vec<Hash256> = (0..3).map(leaf).collect();
        let mut four = three.clone();
        four.push(three[2]);
        let a = compute_merkle_root(&three);
        let b = compute_merkle_root(&four);
        assert_eq!(a.root, b.root, "CVE-2012-2459: the same root");
        assert!(!a.mutated);
        assert!(b.mutated);
    }

    #[test]
    fn duplicates_anywhere_in_a_pair_are_flagged() {
        let leaves = vec![leaf(1), leaf(1), leaf(2)];
        assert!(compute_merkle_root(&leaves).mutated);
    }
}
