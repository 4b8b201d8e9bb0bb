//! The bounded orphan pool: items waiting for parents that are not known yet.
//!
//! Owns the one pool type behind both orphan blocks (`chain::orphans`, waiting
//! for their previous block) and orphan transactions (`mempool::orphans`,
//! waiting for the transactions they spend). It bounds the count, each item's
//! size, the total size and each item's time to live; it indexes items by
//! their parents so that an arriving parent releases its children, oldest
//! first; and it evicts oldest first, so the pool behaves the same on every run.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// What the pool needs to know of an item.
pub trait Orphan {
    /// The item's own id.
    type Id: Copy + Eq + Hash;
    /// The id of a parent it waits for.
    type Parent: Copy + Eq + Hash;
    /// Returns the item's id.
    fn id(&self) -> Self::Id;
    /// Returns the item's size in bytes (its canonical encoding).
    fn size(&self) -> u64;
}

/// The bounds of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Items kept at most.
    pub max_count: usize,
    /// Largest item accepted, in bytes.
    pub max_item_bytes: u64,
    /// Total bytes of the items kept at most.
    pub max_total_bytes: u64,
    /// Seconds an item is kept.
    pub ttl_secs: u64,
}

#[derive(Debug)]
struct Entry<T: Orphan> {
    item: T,
    parents: Vec<T::Parent>,
    size: u64,
    expires: u64,
    sequence: u64,
}

/// A bounded pool of orphans indexed by the parents they wait for.
#[derive(Debug)]
pub struct Pool<T: Orphan> {
    limits: Limits,
    entries: HashMap<T::Id, Entry<T>>,
    /// The children waiting for each parent, by arrival.
    by_parent: HashMap<T::Parent, BTreeMap<u64, T::Id>>,
    by_age: BTreeMap<u64, T::Id>,
    bytes: u64,
    next_sequence: u64,
}

impl<T: Orphan> Pool<T> {
    /// Makes an empty pool.
    pub fn new(limits: Limits) -> Pool<T> {
        Pool {
            limits,
            entries: HashMap::new(),
            by_parent: HashMap::new(),
            by_age: BTreeMap::new(),
            bytes: 0,
            next_sequence: 0,
        }
    }

    /// Returns the number of items held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tells whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the total size of the items held, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Tells whether `id` is held.
    pub fn contains(&self, id: &T::Id) -> bool {
        self.entries.contains_key(id)
    }

    /// Returns the item `id`, if held.
    pub fn get(&self, id: &T::Id) -> Option<&T> {
        self.entries.get(id).map(|e| &e.item)
    }

    /// Returns the items held, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.values().map(|e| &e.item)
    }

    /// Returns the ids of the items waiting for `parent`, oldest first.
    pub fn children(&self, parent: &T::Parent) -> impl Iterator<Item = &T::Id> {
        self.by_parent.get(parent).into_iter().flat_map(BTreeMap::values)
    }

    /// Adds `item`, waiting for `parents`, at time `now`; returns whether it was
    /// kept. A duplicate, an item over the size limit, or any item in a pool
    /// with no room is refused and evicts nothing; otherwise the oldest items
    /// make room.
    pub fn insert(&mut self, item: T, parents: Vec<T::Parent>, now: u64) -> bool {
        let id = item.id();
        let size = item.size();
        let limits = self.limits;
        if self.entries.contains_key(&id)
            || limits.max_count == 0
            || size > limits.max_item_bytes
            || size > limits.max_total_bytes
        {
            return false;
        }
        while self.entries.len() >= limits.max_count || self.bytes + size > limits.max_total_bytes {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            self.remove(&oldest);
        }
        self.next_sequence += 1;
        let sequence = self.next_sequence;
        for parent in &parents {
            self.by_parent.entry(*parent).or_default().insert(sequence, id);
        }
        self.by_age.insert(sequence, id);
        self.bytes += size;
        let expires = now.saturating_add(limits.ttl_secs);
        self.entries.insert(id, Entry { item, parents, size, expires, sequence });
        true
    }

    /// Removes the item `id`.
    pub fn remove(&mut self, id: &T::Id) -> Option<T> {
        let entry = self.entries.remove(id)?;
        self.by_age.remove(&entry.sequence);
        self.bytes -= entry.size;
        for parent in &entry.parents {
            if let Some(children) = self.by_parent.get_mut(parent) {
                children.remove(&entry.sequence);
                if children.is_empty() {
                    self.by_parent.remove(parent);
                }
            }
        }
        Some(entry.item)
    }

    /// Takes out the items waiting for `parent`, oldest first.
    pub fn take_children(&mut self, parent: &T::Parent) -> Vec<T> {
        let Some(children) = self.by_parent.remove(parent) else { return Vec::new() };
        children.values().filter_map(|id| self.remove(id)).collect()
    }

    /// Removes the items for which `doomed` holds.
    pub fn remove_where(&mut self, mut doomed: impl FnMut(&T) -> bool) {
        let ids: Vec<T::Id> =
            self.entries.iter().filter(|(_, e)| doomed(&e.item)).map(|(id, _)| *id).collect();
        for id in ids {
            self.remove(&id);
        }
    }

    /// Drops the items whose time is up at `now`.
    pub fn expire(&mut self, now: u64) {
        let ids: Vec<T::Id> =
            self.entries.iter().filter(|(_, e)| e.expires <= now).map(|(id, _)| *id).collect();
        for id in ids {
            self.remove(&id);
        }
    }

    /// Panics unless the indexes and the byte count describe exactly the items
    /// held (for tests).
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        assert_eq!(self.by_age.len(), self.entries.len());
        assert_eq!(self.bytes, self.entries.values().map(|e| e.size).sum::<u64>());
        for (id, entry) in &self.entries {
            assert!(self.by_age.get(&entry.sequence) == Some(id));
            for parent in &entry.parents {
                let children = self.by_parent.get(parent);
                assert!(children.is_some_and(|c| c.get(&entry.sequence) == Some(id)));
            }
        }
        for children in self.by_parent.values() {
            assert!(!children.is_empty(), "no empty parent entries are kept");
            for (sequence, id) in children {
                assert!(self.entries.get(id).is_some_and(|e| e.sequence == *sequence));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item of `size` bytes named `id`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Item {
        id: u32,
        size: u64,
    }

    impl Orphan for Item {
        type Id = u32;
        type Parent = u32;
        fn id(&self) -> u32 {
            self.id
        }
        fn size(&self) -> u64 {
            self.size
        }
    }

    fn item(id: u32, size: u64) -> Item {
        Item { id, size }
    }

    fn pool(max_count: usize, max_total_bytes: u64) -> Pool<Item> {
        Pool::new(Limits { max_count, max_item_bytes: 100, max_total_bytes, ttl_secs: 10 })
    }

    #[test]
    fn children_of_several_parents_are_released_once_oldest_first() {
        let mut pool = pool(10, 1_000);
        assert!(pool.insert(item(1, 10), vec![100], 0));
        assert!(pool.insert(item(2, 10), vec![100, 200], 0));
        assert!(pool.insert(item(3, 10), vec![200], 0));
        assert_eq!(pool.children(&200).copied().collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(pool.take_children(&100), vec![item(1, 10), item(2, 10)]);
        pool.assert_consistent();
        assert_eq!(pool.take_children(&200), vec![item(3, 10)], "2 left both indexes");
        assert!(pool.is_empty());
        pool.assert_consistent();
    }

    #[test]
    fn the_count_and_byte_limits_evict_oldest_first_and_refusals_evict_nothing() {
        let mut pool = pool(3, 50);
        for id in 1..=3 {
            assert!(pool.insert(item(id, 10), vec![0], 0));
        }
        assert!(pool.insert(item(4, 10), vec![0], 0), "the count limit evicts 1");
        assert!(!pool.contains(&1));
        assert!(pool.insert(item(5, 40), vec![0], 0), "the count limit evicts 2, the bytes 3");
        assert_eq!(pool.children(&0).copied().collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(pool.bytes(), 50);
        assert!(!pool.insert(item(6, 101), vec![0], 0), "over the item limit");
        assert!(!pool.insert(item(4, 10), vec![0], 0), "a duplicate");
        assert_eq!(pool.len(), 2, "neither refusal evicted anything");
        pool.assert_consistent();
    }

    #[test]
    fn items_expire_and_remove_where_drops_what_it_names() {
        let mut pool = pool(10, 1_000);
        assert!(pool.insert(item(1, 10), vec![0], 100));
        assert!(pool.insert(item(2, 10), vec![0], 105));
        assert!(pool.insert(item(3, 10), vec![1], 105));
        pool.expire(109);
        assert_eq!(pool.len(), 3);
        pool.expire(110);
        assert!(!pool.contains(&1) && pool.contains(&2));
        pool.remove_where(|i| i.id == 3);
        assert_eq!(pool.iter().map(|i| i.id).collect::<Vec<_>>(), vec![2]);
        pool.assert_consistent();
    }
}
