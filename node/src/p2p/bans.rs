//! Temporary bans that survive restarts (Bitcoin Core's `banlist.json`).
//!
//! Owns the list of banned peers with the unix time each ban ends, and its file
//! in the data directory: written atomically (temporary file, fsync, rename) on
//! every change. A missing file is an empty list; an unreadable one is reported
//! and replaced by an empty list only when the next ban is written, so a bad
//! file never stops the node.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::PeerId;

/// Bans kept at most; the oldest-ending go first when full.
pub const MAX_BANS: usize = 10_000;

/// Banned peers and when their bans end.
#[derive(Debug)]
pub struct BanList {
    /// The file; `None` keeps bans in memory only.
    path: Option<PathBuf>,
    bans: BTreeMap<PeerId, u64>,
}

/// An error reading or writing the ban list.
#[derive(Debug, thiserror::Error)]
#[error("ban list {path}: {detail}")]
pub struct BanListError {
    path: String,
    detail: String,
}

/// Reads the bans in force at `now` from the text of a ban list file (a JSON
/// object of peer id → unix time the ban ends), keeping at most [`MAX_BANS`].
///
/// # Errors
///
/// The text is not such an object, or names something that is not a peer id.
pub fn parse(text: &str, now: u64) -> Result<BTreeMap<PeerId, u64>, String> {
    let raw: BTreeMap<String, u64> =
        serde_json::from_str(text).map_err(|e| format!("not a ban list: {e}"))?;
    let mut bans = BTreeMap::new();
    for (peer, until) in raw.into_iter().filter(|(_, until)| *until > now) {
        let id: PeerId = peer.parse().map_err(|e| format!("peer id {peer}: {e}"))?;
        bans.insert(id, until);
    }
    trim(&mut bans);
    Ok(bans)
}

/// Drops the earliest-ending bans beyond [`MAX_BANS`].
fn trim(bans: &mut BTreeMap<PeerId, u64>) {
    while bans.len() > MAX_BANS {
        let Some(first) = bans.iter().min_by_key(|(_, u)| **u).map(|(p, _)| *p) else { break };
        bans.remove(&first);
    }
}

impl BanList {
    /// Loads the list from `path` (empty if the file does not exist), dropping
    /// bans that ended before `now`.
    ///
    /// # Errors
    ///
    /// The file exists but cannot be read or parsed.
    pub fn load(path: &Path, now: u64) -> Result<BanList, BanListError> {
        let err = |detail: String| BanListError { path: path.display().to_string(), detail };
        let mut list = BanList { path: Some(path.to_owned()), bans: BTreeMap::new() };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(list),
            Err(e) => return Err(err(e.to_string())),
        };
        list.bans = parse(&text, now).map_err(err)?;
        Ok(list)
    }

    /// An empty list that will be written to `path` (if any).
    pub fn empty(path: Option<&Path>) -> BanList {
        BanList { path: path.map(Path::to_owned), bans: BTreeMap::new() }
    }

    /// Returns the banned peers with the end of their bans.
    pub fn iter(&self) -> impl Iterator<Item = (&PeerId, &u64)> {
        self.bans.iter()
    }

    /// Tells whether `peer` is banned.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.bans.contains_key(peer)
    }

    /// Bans `peer` until `until` and saves the list.
    ///
    /// # Errors
    ///
    /// The file cannot be written (the ban holds in memory all the same).
    pub fn ban(&mut self, peer: PeerId, until: u64) -> Result<(), BanListError> {
        self.bans.insert(peer, until);
        trim(&mut self.bans);
        self.save()
    }

    /// Lifts bans that ended at or before `now`, saves the list if any did, and
    /// returns their peers.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn expire(&mut self, now: u64) -> Result<Vec<PeerId>, BanListError> {
        let ended: Vec<PeerId> =
            self.bans.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for peer in &ended {
            self.bans.remove(peer);
        }
        if !ended.is_empty() {
            self.save()?;
        }
        Ok(ended)
    }

    fn save(&self) -> Result<(), BanListError> {
        let Some(path) = &self.path else { return Ok(()) };
        let err = |e: std::io::Error| BanListError {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        let raw: BTreeMap<String, u64> =
            self.bans.iter().map(|(p, u)| (p.to_string(), *u)).collect();
        let text =
            serde_json::to_string_pretty(&raw).map_err(std::io::Error::other).map_err(err)?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(err)?;
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)?;
        // The rename itself reaches the disk with the directory.
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_survive_a_reload_and_end_on_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("banlist.json");
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut list = BanList::load(&path, 100).expect("no file is an empty list");
        list.ban(a, 200).expect("saved");
        list.ban(b, 300).expect("saved");
        let mut list = BanList::load(&path, 150).expect("reloads");
        assert!(list.contains(&a) && list.contains(&b));
        assert_eq!(list.expire(250).expect("saved"), vec![a]);
        let list = BanList::load(&path, 250).expect("reloads");
        assert!(!list.contains(&a) && list.contains(&b));
        // Bans that ended while the node was down are dropped at load.
        let list = BanList::load(&path, 400).expect("reloads");
        assert_eq!(list.iter().count(), 0);
    }

    #[test]
    fn a_bad_file_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("banlist.json");
        std::fs::write(&path, "{\"not a peer\": 5}").expect("write");
        assert!(BanList::load(&path, 0).expect_err("refused").to_string().contains("peer id"));
        std::fs::write(&path, "garbage").expect("write");
        assert!(BanList::load(&path, 0).is_err());
    }
}
