//! The on-disk [`Store`], on redb (an embedded, crash-safe, pure-Rust B-tree).
//!
//! Owns the table layout and its byte keys. Every [`Batch`] is one redb write
//! transaction, committed with fsync: after a crash the file holds exactly the
//! state of the last committed batch. Values are in the canonical encoding of
//! `tinychain_protocol::encode`; keys are fixed-width big-endian so that range
//! scans (an address's coins, its history by height) walk them in order.

use std::path::Path;

use ::redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tinychain_protocol::encode;
use tinychain_protocol::validation::Coin;
use tinychain_protocol::{Block, BlockHash, OutPoint, PubkeyHash, Transaction, Txid};

use super::coin_group::{self, CoinGroup, GroupKey};
use super::{Batch, BlockUndo, IndexEntry, Op, Store, StoreError, StoredTip, TxLocation};

/// The layout version this code reads and writes (2: the block index is read
/// from the store, with children and active-chain tables, not held in memory;
/// 3: the address index is the history table, whose rows list the outputs paid;
/// 4: coins are stored in groups of 64 outputs of a transaction, see
/// [`coin_group`]; a schema 3 store is upgraded when opened).
pub const SCHEMA_VERSION: u32 = 4;

type Bytes = &'static [u8];

const META: TableDefinition<Bytes, Bytes> = TableDefinition::new("meta");
const INDEX: TableDefinition<Bytes, Bytes> = TableDefinition::new("block_index");
/// Keys: child height (u32, big-endian) ‖ parent hash ‖ child hash. Height
/// first: a new block's row goes next to the last one, not to a random page.
const CHILDREN: TableDefinition<Bytes, ()> = TableDefinition::new("block_children");
/// Keys: height (u32, big-endian); values: the active block's hash.
const ACTIVE: TableDefinition<u32, Bytes> = TableDefinition::new("active_chain");
const BLOCKS: TableDefinition<Bytes, Bytes> = TableDefinition::new("blocks");
const UNDO: TableDefinition<Bytes, Bytes> = TableDefinition::new("undo");
/// The UTXO set. Keys: txid ‖ output index / 64 (u32, big-endian); values: the
/// unspent outputs among those 64 ([`coin_group`]).
const COINS: TableDefinition<Bytes, Bytes> = TableDefinition::new("coin_groups");
/// Schema 3's UTXO table: one row per output, keys txid ‖ output index (u32,
/// big-endian), values the coin. Upgraded to [`COINS`] when opened.
const COINS_V3: TableDefinition<Bytes, Bytes> = TableDefinition::new("coins");
/// The address index. Keys: pubkey hash ‖ height (u32, big-endian) ‖ txid;
/// values: the outputs of that transaction paying the address (`Vec<u32>`).
/// An address's coins are those outputs still in [`COINS`], so a coin is
/// created or spent with one table write, not two.
const HISTORY: TableDefinition<Bytes, Bytes> = TableDefinition::new("address_history");
const TX_LOCATIONS: TableDefinition<Bytes, Bytes> = TableDefinition::new("tx_locations");

const META_SCHEMA: &[u8] = b"schema_version";
const META_GENESIS: &[u8] = b"genesis";
const META_TIP: &[u8] = b"tip";
const META_MEMPOOL: &[u8] = b"mempool";
const META_FEE_ESTIMATES: &[u8] = b"fee_estimates";

/// redb's page cache, in bytes, unless configured ([`RedbStore::open_with_cache`]).
///
/// Small on purpose: the kernel's page cache already keeps the file's hot pages
/// in memory (without counting them as the node's), so redb's own cache mostly
/// saves a system call and a checksum per page. With 1 MiB the node's resident
/// memory stays about 5 MiB however long the chain grows; a bigger cache
/// (`store.cache_mb`, like Bitcoin Core's `-dbcache`) makes initial sync and
/// very wide blocks some 10 % faster and holds that much more memory.
pub const DEFAULT_CACHE_BYTES: usize = 1024 * 1024;

/// Largest value read back (the mempool snapshot is the largest).
const MAX_VALUE: u64 = 1 << 30;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    encode::deserialize(bytes, MAX_VALUE)
        .map_err(|e| StoreError::Corrupt { what, detail: e.to_string() })
}

fn value<T: Serialize>(v: &T) -> Vec<u8> {
    encode::serialize(v)
}

/// Writes a coin group's row, or deletes it when no coin is left.
fn put_group(
    table: &mut Table<Bytes, Bytes>,
    key: &GroupKey,
    group: &CoinGroup,
) -> Result<(), StoreError> {
    match group.encode() {
        Some(row) => table.insert(key.as_slice(), row.as_slice()).map(drop),
        None => table.remove(key.as_slice()).map(drop),
    }
    .map_err(backend)
}

/// Puts (or, with `None`, removes) coins, each changed row read once and
/// written once: the changes are sorted by row, and one row is held at a time
/// (a cache flush can change a hundred thousand rows; holding them all, at
/// 2.6 KB a decoded row, took 8 times the cache's own memory).
fn set_coins(
    table: &mut Table<Bytes, Bytes>,
    changes: impl Iterator<Item = (OutPoint, Option<Coin>)>,
) -> Result<(), StoreError> {
    let mut changes: Vec<(GroupKey, u32, Option<Coin>)> = changes
        .map(|(op, coin)| {
            let (key, slot) = coin_group::locate(&op);
            (key, slot, coin)
        })
        .collect();
    changes.sort_by_key(|(key, slot, _)| (*key, *slot));
    for run in changes.chunk_by(|a, b| a.0 == b.0) {
        let key = run[0].0;
        let mut group = match table.get(key.as_slice()).map_err(backend)? {
            Some(row) => CoinGroup::decode(row.value())?,
            None => CoinGroup::default(),
        };
        for (_, slot, coin) in run {
            group.set(*slot, *coin);
        }
        put_group(table, &key, &group)?;
    }
    Ok(())
}

/// Moves schema 3's UTXO table, one row per output, into coin groups (schema
/// 4), inside the transaction that opens the store: all of it or, after a
/// crash, none. Its keys sort by txid then output index, so each group's
/// coins arrive together and one group is held at a time. Returns the coins moved.
fn upgrade_coins_from_v3(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let corrupt = || StoreError::Corrupt { what: "schema 3 coin key", detail: "length".into() };
    let mut moved = 0;
    {
        let old = txn.open_table(COINS_V3).map_err(backend)?;
        let mut groups = txn.open_table(COINS).map_err(backend)?;
        let mut current: Option<(GroupKey, CoinGroup)> = None;
        for row in old.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let key = key.value();
            let txid =
                <[u8; 32]>::try_from(key.get(..32).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            let vout =
                <[u8; 4]>::try_from(key.get(32..).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            let op = OutPoint { txid: Txid::from_byte_array(txid), vout: u32::from_be_bytes(vout) };
            let (group_key, slot) = coin_group::locate(&op);
            if let Some((done, group)) = current.take_if(|(k, _)| *k != group_key) {
                put_group(&mut groups, &done, &group)?;
            }
            let (_, group) = current.get_or_insert_with(|| (group_key, CoinGroup::default()));
            group.set(slot, Some(decode("coin", value.value())?));
            moved += 1;
        }
        if let Some((key, group)) = current {
            put_group(&mut groups, &key, &group)?;
        }
    }
    txn.delete_table(COINS_V3).map_err(backend)?;
    Ok(moved)
}

/// Reads one coin from the UTXO table.
fn read_coin(
    table: &impl ReadableTable<Bytes, Bytes>,
    op: &OutPoint,
) -> Result<Option<Coin>, StoreError> {
    let (key, slot) = coin_group::locate(op);
    match table.get(key.as_slice()).map_err(backend)? {
        Some(row) => coin_group::coin_in(row.value(), slot),
        None => Ok(None),
    }
}

/// Reads the height and txid of a history key.
fn history_row(key: &[u8]) -> Result<(u32, Txid), StoreError> {
    let corrupt = || StoreError::Corrupt { what: "history key", detail: "length".into() };
    let height =
        <[u8; 4]>::try_from(key.get(20..24).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    let txid = <[u8; 32]>::try_from(key.get(24..56).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
    Ok((u32::from_be_bytes(height), Txid::from_byte_array(txid)))
}

fn history_key(pkh: &PubkeyHash, height: u32, txid: &Txid) -> [u8; 56] {
    let mut key = [0u8; 56];
    key[..20].copy_from_slice(&pkh.to_byte_array());
    key[20..24].copy_from_slice(&height.to_be_bytes());
    key[24..].copy_from_slice(txid.as_bytes());
    key
}

fn child_key(child_height: u32, parent: &BlockHash, child: &BlockHash) -> [u8; 68] {
    let mut key = [0u8; 68];
    key[..4].copy_from_slice(&child_height.to_be_bytes());
    key[4..36].copy_from_slice(parent.as_bytes());
    key[36..].copy_from_slice(child.as_bytes());
    key
}

fn hash_from(what: &'static str, bytes: &[u8]) -> Result<BlockHash, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(BlockHash::from_byte_array)
        .map_err(|_| StoreError::Corrupt { what, detail: format!("{} bytes", bytes.len()) })
}

/// The first and last possible keys with the 20-byte prefix `pkh`.
fn prefix_range(pkh: &PubkeyHash) -> ([u8; 56], [u8; 56]) {
    let mut low = [0u8; 56];
    low[..20].copy_from_slice(&pkh.to_byte_array());
    let mut high = [0xffu8; 56];
    high[..20].copy_from_slice(&pkh.to_byte_array());
    (low, high)
}

/// The node's store in one redb file.
pub struct RedbStore {
    db: Database,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path` for the chain whose genesis is `genesis`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened (for example another process has it open), it was
    /// written by another schema version, or it holds another network's chain.
    pub fn open(path: &Path, genesis: BlockHash) -> Result<RedbStore, StoreError> {
        RedbStore::open_with_cache(path, genesis, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store like [`RedbStore::open`], with a page cache of
    /// `cache_bytes`.
    ///
    /// # Errors
    ///
    /// As [`RedbStore::open`].
    pub fn open_with_cache(
        path: &Path,
        genesis: BlockHash,
        cache_bytes: usize,
    ) -> Result<RedbStore, StoreError> {
        // redb keeps written pages in its cache up to this size (1 GiB by
        // default): bounded, memory stays flat as the chain grows.
        let db =
            ::redb::Builder::new().set_cache_size(cache_bytes).create(path).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        let mut upgrade_from_3 = false;
        {
            let mut meta = txn.open_table(META).map_err(backend)?;
            let schema = meta.get(META_SCHEMA).map_err(backend)?.map(|v| v.value().to_vec());
            match schema {
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION.to_be_bytes().as_slice())
                        .map_err(backend)?;
                    meta.insert(META_GENESIS, genesis.as_bytes().as_slice()).map_err(backend)?;
                }
                Some(bytes) => {
                    let found = <[u8; 4]>::try_from(bytes.as_slice())
                        .map(u32::from_be_bytes)
                        .map_err(|_| StoreError::Corrupt {
                            what: "schema version",
                            detail: format!("{} bytes", bytes.len()),
                        })?;
                    // Schema 3 differs only in its UTXO table: upgraded below.
                    if found != SCHEMA_VERSION && found != 3 {
                        return Err(StoreError::Schema { found, expected: SCHEMA_VERSION });
                    }
                    upgrade_from_3 = found == 3;
                    let stored =
                        meta.get(META_GENESIS).map_err(backend)?.map(|v| v.value().to_vec());
                    let found = stored
                        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                        .map(BlockHash::from_byte_array)
                        .ok_or(StoreError::Corrupt { what: "genesis", detail: "missing".into() })?;
                    if found != genesis {
                        return Err(StoreError::WrongNetwork { found, expected: genesis });
                    }
                }
            }
            // Create every table so readers never meet a missing one.
            txn.open_table(INDEX).map_err(backend)?;
            txn.open_table(CHILDREN).map_err(backend)?;
            txn.open_table(ACTIVE).map_err(backend)?;
            txn.open_table(BLOCKS).map_err(backend)?;
            txn.open_table(UNDO).map_err(backend)?;
            txn.open_table(COINS).map_err(backend)?;
            txn.open_table(HISTORY).map_err(backend)?;
            txn.open_table(TX_LOCATIONS).map_err(backend)?;
        }
        if upgrade_from_3 {
            let moved = upgrade_coins_from_v3(&txn)?;
            let mut meta = txn.open_table(META).map_err(backend)?;
            meta.insert(META_SCHEMA, SCHEMA_VERSION.to_be_bytes().as_slice()).map_err(backend)?;
            tracing::info!(
                coins = moved,
                "store upgraded from schema 3: coins grouped by transaction"
            );
        }
        txn.commit().map_err(backend)?;
        Ok(RedbStore { db })
    }

    fn get_value<T: DeserializeOwned>(
        &self,
        table: TableDefinition<Bytes, Bytes>,
        what: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(table).map_err(backend)?;
        let found = table.get(key).map_err(backend)?;
        found.map(|v| decode(what, v.value())).transpose()
    }
}

impl Store for RedbStore {
    fn index_entry(&self, hash: &BlockHash) -> Result<Option<IndexEntry>, StoreError> {
        self.get_value(INDEX, "index entry", hash.as_bytes())
    }

    fn children(&self, parent: &BlockHash, height: u32) -> Result<Vec<BlockHash>, StoreError> {
        let Some(child_height) = height.checked_add(1) else { return Ok(Vec::new()) };
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(CHILDREN).map_err(backend)?;
        let low = child_key(child_height, parent, &BlockHash::ZERO);
        let high = child_key(child_height, parent, &BlockHash::from_byte_array([0xff; 32]));
        let mut out = Vec::new();
        for row in table.range(low.as_slice()..=high.as_slice()).map_err(backend)? {
            let (key, _) = row.map_err(backend)?;
            out.push(hash_from("child key", key.value().get(36..).unwrap_or_default())?);
        }
        Ok(out)
    }

    fn active_hash(&self, height: u32) -> Result<Option<BlockHash>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(ACTIVE).map_err(backend)?;
        let found = table.get(height).map_err(backend)?;
        found.map(|v| hash_from("active chain hash", v.value())).transpose()
    }

    fn for_each_index_entry(
        &self,
        f: &mut dyn FnMut(&BlockHash, &IndexEntry),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(INDEX).map_err(backend)?;
        for row in table.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let hash = hash_from("index key", key.value())?;
            f(&hash, &decode("index entry", value.value())?);
        }
        Ok(())
    }

    fn tip(&self) -> Result<Option<StoredTip>, StoreError> {
        self.get_value(META, "tip", META_TIP)
    }

    fn block(&self, hash: &BlockHash) -> Result<Option<Block>, StoreError> {
        self.get_value(BLOCKS, "block", hash.as_bytes())
    }

    fn undo(&self, hash: &BlockHash) -> Result<Option<BlockUndo>, StoreError> {
        self.get_value(UNDO, "undo data", hash.as_bytes())
    }

    fn coin(&self, outpoint: &OutPoint) -> Result<Option<Coin>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        read_coin(&txn.open_table(COINS).map_err(backend)?, outpoint)
    }

    fn coins(&self, outpoints: &[OutPoint]) -> Result<Vec<(OutPoint, Coin)>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(COINS).map_err(backend)?;
        let mut found = Vec::with_capacity(outpoints.len());
        for op in outpoints {
            if let Some(coin) = read_coin(&table, op)? {
                found.push((*op, coin));
            }
        }
        Ok(found)
    }

    fn address_paid(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, OutPoint)>,
        limit: usize,
    ) -> Result<Vec<(u32, OutPoint)>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let history = txn.open_table(HISTORY).map_err(backend)?;
        let (low, high) = prefix_range(pubkey_hash);
        let low = after.map_or(low, |(height, op)| history_key(pubkey_hash, height, &op.txid));
        let mut out = Vec::new();
        for row in history.range(low.as_slice()..=high.as_slice()).map_err(backend)? {
            let (key, paid) = row.map_err(backend)?;
            let (height, txid) = history_row(key.value())?;
            let paid: Vec<u32> = decode("history row", paid.value())?;
            for vout in paid {
                let op = OutPoint { txid, vout };
                if after.is_some_and(|(h, last)| (height, op) <= (h, last)) {
                    continue;
                }
                if out.len() == limit {
                    return Ok(out);
                }
                out.push((height, op));
            }
        }
        Ok(out)
    }

    fn address_history(
        &self,
        pubkey_hash: &PubkeyHash,
        after: Option<(u32, Txid)>,
        limit: usize,
    ) -> Result<Vec<(u32, Txid)>, StoreError> {
        use std::ops::Bound;
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(HISTORY).map_err(backend)?;
        let (low, high) = prefix_range(pubkey_hash);
        let start = match after {
            Some((height, txid)) => Bound::Excluded(history_key(pubkey_hash, height, &txid)),
            None => Bound::Included(low),
        };
        let start = match &start {
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let range = (start, Bound::Included(high.as_slice()));
        let mut out = Vec::new();
        for row in table.range::<&[u8]>(range).map_err(backend)?.take(limit) {
            let (key, _) = row.map_err(backend)?;
            out.push(history_row(key.value())?);
        }
        Ok(out)
    }

    fn tx_location(&self, txid: &Txid) -> Result<Option<TxLocation>, StoreError> {
        self.get_value(TX_LOCATIONS, "tx location", txid.as_bytes())
    }

    fn mempool(&self) -> Result<Vec<(Transaction, u64)>, StoreError> {
        Ok(self.get_value(META, "mempool", META_MEMPOOL)?.unwrap_or_default())
    }

    fn fee_estimates(&self) -> Result<Option<crate::fees::Saved>, StoreError> {
        self.get_value(META, "fee estimates", META_FEE_ESTIMATES)
    }

    fn for_each_coin(&self, f: &mut dyn FnMut(&OutPoint, &Coin)) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(COINS).map_err(backend)?;
        for row in table.iter().map_err(backend)? {
            let (key, value) = row.map_err(backend)?;
            let key = GroupKey::try_from(key.value())
                .map_err(|_| StoreError::Corrupt { what: "coin key", detail: "length".into() })?;
            CoinGroup::decode(value.value())?.for_each(&key, f);
        }
        Ok(())
    }

    fn write(&mut self, batch: Batch) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        if !batch.durable {
            txn.set_durability(redb::Durability::None).map_err(backend)?;
        }
        {
            let mut meta = txn.open_table(META).map_err(backend)?;
            let mut index = txn.open_table(INDEX).map_err(backend)?;
            let mut children = txn.open_table(CHILDREN).map_err(backend)?;
            let mut active = txn.open_table(ACTIVE).map_err(backend)?;
            let mut blocks = txn.open_table(BLOCKS).map_err(backend)?;
            let mut undo = txn.open_table(UNDO).map_err(backend)?;
            let mut coins = txn.open_table(COINS).map_err(backend)?;
            let mut history = txn.open_table(HISTORY).map_err(backend)?;
            let mut locations = txn.open_table(TX_LOCATIONS).map_err(backend)?;
            for op in batch.ops {
                match op {
                    Op::PutBlock(block) => {
                        let hash = block.block_hash();
                        blocks.insert(hash.as_bytes().as_slice(), block.encode().as_slice())
                    }
                    .map(drop),
                    Op::PutIndex(hash, entry) => index
                        .insert(hash.as_bytes().as_slice(), value(&entry).as_slice())
                        .and_then(|_| {
                            let key = child_key(entry.height, &entry.header.prev_blockhash, &hash);
                            children.insert(key.as_slice(), ())
                        })
                        .map(drop),
                    Op::PutActive(height, hash) => {
                        active.insert(height, hash.as_bytes().as_slice()).map(drop)
                    }
                    Op::DeleteActive(height) => active.remove(height).map(drop),
                    Op::PutUndo(hash, data) => {
                        undo.insert(hash.as_bytes().as_slice(), value(&data).as_slice()).map(drop)
                    }
                    Op::DeleteUndo(hash) => undo.remove(hash.as_bytes().as_slice()).map(drop),
                    Op::AddCoins(added) => {
                        set_coins(&mut coins, added.into_iter().map(|(op, c)| (op, Some(c))))?;
                        Ok(())
                    }
                    Op::SpendCoins(spent) => {
                        set_coins(&mut coins, spent.into_iter().map(|op| (op, None)))?;
                        Ok(())
                    }
                    Op::AddHistory(pkh, height, txid, paid) => history
                        .insert(
                            history_key(&pkh, height, &txid).as_slice(),
                            value(&paid).as_slice(),
                        )
                        .map(drop),
                    Op::DeleteHistory(pkh, height, txid) => {
                        history.remove(history_key(&pkh, height, &txid).as_slice()).map(drop)
                    }
                    Op::PutTxLocation(txid, loc) => locations
                        .insert(txid.as_bytes().as_slice(), value(&loc).as_slice())
                        .map(drop),
                    Op::DeleteTxLocation(txid) => {
                        locations.remove(txid.as_bytes().as_slice()).map(drop)
                    }
                    Op::SetTip(tip) => meta.insert(META_TIP, value(&tip).as_slice()).map(drop),
                    Op::SetMempool(txs) => {
                        meta.insert(META_MEMPOOL, value(&txs).as_slice()).map(drop)
                    }
                    Op::SetFeeEstimates(saved) => {
                        meta.insert(META_FEE_ESTIMATES, value(&saved).as_slice()).map(drop)
                    }
                }
                .map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)?;
        Ok(())
    }
}
