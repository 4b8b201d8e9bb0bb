//! Orphan blocks: blocks whose parent is not known yet.
//!
//! Owns the orphan block pool: a [`Pool`] bounded by count, total bytes and
//! expiry, indexed by the missing parent's hash. When a block is accepted, its
//! waiting children are taken out and accepted in turn. Eviction is oldest
//! first. It also answers what the chain asks of orphans: the ancestor to
//! request, and the work a chain of them would add.

use tinychain_protocol::pow::Work;
use tinychain_protocol::{Block, BlockHash};

use crate::orphans::{Limits, Orphan, Pool};

/// Limits of the orphan block pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Orphan blocks kept at most.
    pub max_count: usize,
    /// Total bytes of orphan blocks kept at most.
    pub max_bytes: u64,
    /// Seconds an orphan block is kept.
    pub ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config { max_count: 256, max_bytes: 32 * 1024 * 1024, ttl_secs: 10 * 60 }
    }
}

impl Orphan for Block {
    type Id = BlockHash;
    type Parent = BlockHash;
    fn id(&self) -> BlockHash {
        self.block_hash()
    }
    fn size(&self) -> u64 {
        Block::size(self)
    }
}

/// The orphan block pool.
#[derive(Debug)]
pub struct OrphanBlocks {
    pool: Pool<Block>,
}

impl Default for OrphanBlocks {
    fn default() -> OrphanBlocks {
        OrphanBlocks::new(Config::default())
    }
}

impl OrphanBlocks {
    /// Makes an empty pool.
    pub fn new(config: Config) -> OrphanBlocks {
        let limits = Limits {
            max_count: config.max_count,
            max_item_bytes: config.max_bytes,
            max_total_bytes: config.max_bytes,
            ttl_secs: config.ttl_secs,
        };
        OrphanBlocks { pool: Pool::new(limits) }
    }

    /// Returns the number of orphan blocks held.
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Tells whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.pool.is_empty()
    }

    /// Tells whether `hash` is held.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.pool.contains(hash)
    }

    /// Returns the oldest ancestor in the pool of `hash`'s chain: the block whose
    /// parent is the one to ask for.
    pub fn root_of(&self, hash: &BlockHash) -> BlockHash {
        let mut current = *hash;
        let mut steps = 0;
        while let Some(parent) = self.parent_of(&current) {
            if !self.pool.contains(&parent) || steps > self.pool.len() {
                break;
            }
            current = parent;
            steps += 1;
        }
        current
    }

    /// Returns the parent hash of the orphan `hash`.
    pub fn parent_of(&self, hash: &BlockHash) -> Option<BlockHash> {
        self.pool.get(hash).map(|b| b.header.prev_blockhash)
    }

    /// Adds an orphan block; returns whether it was kept.
    pub fn insert(&mut self, block: Block, now: u64) -> bool {
        let parent = block.header.prev_blockhash;
        self.pool.insert(block, vec![parent], now)
    }

    /// Returns the most chainwork reached by a chain of orphans descending from
    /// `hash`, whose own chainwork is `work` (`work` itself if none waits on
    /// it). Their proof of work was checked against their own bits when they
    /// came in, so the work counted is work done.
    pub fn most_work_on(&self, hash: &BlockHash, work: Work) -> Work {
        let mut best = work;
        let mut stack = vec![(*hash, work)];
        // Each orphan is visited once: a hash chain has no cycles, and the
        // pool is bounded.
        while let Some((parent, work)) = stack.pop() {
            for child in self.pool.children(&parent) {
                let Some(block) = self.pool.get(child) else { continue };
                let Ok(target) = block.header.bits.to_target() else { continue };
                let Some(child_work) = work.checked_add(target.to_work()) else { continue };
                best = best.max(child_work);
                stack.push((*child, child_work));
            }
        }
        best
    }

    /// Takes out the orphans whose parent is `parent`, oldest first.
    pub fn take_children(&mut self, parent: &BlockHash) -> Vec<Block> {
        self.pool.take_children(parent)
    }

    /// Drops orphans whose time is up.
    pub fn expire(&mut self, now: u64) {
        self.pool.expire(now);
    }
}

#[cfg(test)]
mod tests {
    use tinychain_protocol::pow::CompactTarget;
    use tinychain_protocol::transaction::COINBASE_MESSAGE_LEN;
    use tinychain_protocol::{Amount, BlockHeader, Hash256, PubkeyHash, Transaction, TxOut};

    use super::*;

    /// A block on `parent` with `extra` more transactions than the coinbase; `tag`
    /// makes its hash unique. No proof of work: the pool does not check it.
    fn block(parent: BlockHash, tag: u32, extra: usize) -> Block {
        let output = TxOut { value: Amount::ONE_COIN, pubkey_hash: PubkeyHash::default() };
        let txdata = (0..=extra as u64)
            .map(|i| Transaction::coinbase(tag, i, &[0; COINBASE_MESSAGE_LEN], vec![output]))
            .collect();
        let header = BlockHeader {
            version: 1,
            prev_blockhash: parent,
            merkle_root: Hash256::ZERO,
            time: tag,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: tag,
        };
        Block { header, txdata }
    }

    fn unknown(n: u8) -> BlockHash {
        BlockHash::from_byte_array([n; 32])
    }

    fn pool(max_count: usize, max_bytes: u64, ttl_secs: u64) -> OrphanBlocks {
        OrphanBlocks::new(Config { max_count, max_bytes, ttl_secs })
    }

    #[test]
    fn the_count_limit_evicts_the_oldest() {
        let mut pool = pool(2, u64::MAX, 600);
        let (a, b, c) = (block(unknown(1), 1, 0), block(unknown(2), 2, 0), block(unknown(3), 3, 0));
        assert!(pool.insert(a.clone(), 0));
        assert!(pool.insert(b.clone(), 1));
        assert!(pool.insert(c.clone(), 2));
        assert_eq!(pool.len(), 2);
        assert!(!pool.contains(&a.block_hash()), "the oldest went");
        assert!(pool.contains(&b.block_hash()));
        assert!(pool.contains(&c.block_hash()));
        // Its parent index went with it.
        assert!(pool.take_children(&unknown(1)).is_empty());
        assert_eq!(pool.pool.bytes(), b.size() + c.size());
    }

    #[test]
    fn the_byte_limit_evicts_the_oldest_and_refuses_a_block_larger_than_the_pool() {
        let (a, b, c) = (block(unknown(1), 1, 0), block(unknown(2), 2, 0), block(unknown(3), 3, 0));
        let size = a.size();
        assert_eq!((b.size(), c.size()), (size, size), "precondition: equal sizes");
        let mut pool = pool(100, 2 * size + size / 2, 600);
        assert!(pool.insert(a.clone(), 0));
        assert!(pool.insert(b.clone(), 0));
        assert_eq!(pool.pool.bytes(), 2 * size);
        assert!(pool.insert(c.clone(), 0));
        assert_eq!(pool.len(), 2, "a third block does not fit beside two");
        assert!(!pool.contains(&a.block_hash()), "the oldest went");
        assert!(pool.contains(&b.block_hash()) && pool.contains(&c.block_hash()));
        assert_eq!(pool.pool.bytes(), 2 * size);

        // A block bigger than the whole pool is refused and evicts nothing.
        let big = block(unknown(4), 4, 3);
        assert!(big.size() > 2 * size + size / 2, "precondition: too big");
        assert!(!pool.insert(big.clone(), 0));
        assert!(!pool.contains(&big.block_hash()));
        assert_eq!(pool.len(), 2);

        // A block twice the size evicts both older ones to make room.
        let double = block(unknown(5), 5, 1);
        assert!(double.size() > size + size / 2 && double.size() <= 2 * size + size / 2);
        assert!(pool.insert(double.clone(), 0));
        assert_eq!(pool.len(), 1);
        assert!(pool.contains(&double.block_hash()));
        assert_eq!(pool.pool.bytes(), double.size());
    }

    #[test]
    fn orphans_expire_after_their_time_to_live() {
        let mut pool = pool(100, u64::MAX, 10);
        let (a, b) = (block(unknown(1), 1, 0), block(unknown(2), 2, 0));
        assert!(pool.insert(a.clone(), 100));
        assert!(pool.insert(b.clone(), 105));
        pool.expire(109);
        assert_eq!(pool.len(), 2, "both still young");
        pool.expire(110);
        assert!(!pool.contains(&a.block_hash()), "a's time is up");
        assert!(pool.contains(&b.block_hash()));
        assert_eq!(pool.pool.bytes(), b.size());
        pool.expire(115);
        assert!(pool.is_empty());
        assert_eq!(pool.pool.bytes(), 0);
        pool.pool.assert_consistent();
    }

    #[test]
    fn take_children_takes_only_the_direct_children_of_a_parent() {
        let mut pool = pool(100, u64::MAX, 600);
        let a = block(unknown(1), 1, 0);
        let b = block(unknown(1), 2, 0);
        let c = block(a.block_hash(), 3, 0);
        let other = block(unknown(2), 4, 0);
        for blk in [&a, &b, &c, &other] {
            assert!(pool.insert(blk.clone(), 0));
        }
        let children: Vec<BlockHash> =
            pool.take_children(&unknown(1)).iter().map(Block::block_hash).collect();
        assert_eq!(children, vec![a.block_hash(), b.block_hash()], "in arrival order");
        assert!(!pool.contains(&a.block_hash()) && !pool.contains(&b.block_hash()));
        assert_eq!(pool.len(), 2, "the grandchild and the unrelated block stay");
        assert!(pool.take_children(&unknown(1)).is_empty(), "taken only once");
        assert_eq!(pool.take_children(&a.block_hash()), vec![c.clone()]);
        assert_eq!(pool.take_children(&unknown(9)), Vec::<Block>::new());
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.pool.bytes(), other.size());
    }

    #[test]
    fn root_of_walks_to_the_oldest_ancestor_held() {
        let mut pool = pool(100, u64::MAX, 600);
        let a = block(unknown(1), 1, 0);
        let b = block(a.block_hash(), 2, 0);
        let c = block(b.block_hash(), 3, 0);
        // Inserted newest first: the walk follows parents, not arrival order.
        for blk in [&c, &b, &a] {
            assert!(pool.insert(blk.clone(), 0));
        }
        assert_eq!(pool.root_of(&c.block_hash()), a.block_hash());
        assert_eq!(pool.root_of(&b.block_hash()), a.block_hash());
        assert_eq!(pool.root_of(&a.block_hash()), a.block_hash());
        assert_eq!(pool.parent_of(&a.block_hash()), Some(unknown(1)), "the block to ask for");
        assert_eq!(pool.root_of(&unknown(7)), unknown(7), "a block not held is its own root");
        assert_eq!(pool.parent_of(&unknown(7)), None);
        // With the middle block gone, c's chain stops at c.
        pool.take_children(&a.block_hash());
        assert_eq!(pool.root_of(&c.block_hash()), c.block_hash());
        assert_eq!(pool.parent_of(&c.block_hash()), Some(b.block_hash()));
    }

    #[test]
    fn a_duplicate_is_refused_and_changes_nothing() {
        let mut pool = pool(2, u64::MAX, 10);
        let (a, b) = (block(unknown(1), 1, 0), block(unknown(2), 2, 0));
        assert!(pool.insert(a.clone(), 0));
        assert!(pool.insert(b.clone(), 0));
        assert!(!pool.insert(a.clone(), 50), "already held");
        assert_eq!(pool.len(), 2, "the full pool evicted nothing for the duplicate");
        assert!(pool.contains(&b.block_hash()));
        assert_eq!(pool.pool.bytes(), a.size() + b.size());
        assert_eq!(pool.take_children(&unknown(1)), vec![a], "indexed once");
        // The duplicate did not refresh the time to live.
        pool.expire(10);
        assert!(pool.is_empty());
    }

    #[test]
    fn most_work_on_follows_the_heaviest_chain_of_orphans() {
        let mut pool = pool(100, u64::MAX, 600);
        let root = unknown(1);
        // Two chains on `root`: a → b, and c alone.
        let a = block(root, 1, 0);
        let b = block(a.block_hash(), 2, 0);
        let c = block(root, 3, 0);
        for blk in [&a, &b, &c] {
            assert!(pool.insert(blk.clone(), 0));
        }
        let one = a.header.bits.to_target().expect("valid bits").to_work();
        let base = Work::from_u128(1000);
        let two = base.checked_add(one).and_then(|w| w.checked_add(one)).expect("small");
        assert_eq!(pool.most_work_on(&root, base), two, "a and b on top of the base");
        assert_eq!(pool.most_work_on(&b.block_hash(), base), base, "nothing waits on b");
        assert_eq!(pool.most_work_on(&unknown(9), base), base);
    }

    #[test]
    fn a_pool_with_no_room_keeps_nothing() {
        let mut pool = pool(0, u64::MAX, 10);
        assert!(!pool.insert(block(unknown(1), 1, 0), 0));
        assert!(pool.is_empty());
        assert_eq!(pool.pool.bytes(), 0);
    }
}
