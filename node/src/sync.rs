//! Block download decisions: headers first, then blocks in parallel from every
//! suitable peer within a moving window.
//!
//! Owns what Bitcoin Core keeps per peer for initial block download (a peer's
//! best known header, its blocks in flight) and the choice of what to ask whom:
//! headers from one peer with more work at a time (with a block locator, 2,000
//! per reply, continued until a short reply), then the blocks of the best
//! header chain, at most [`Config::window`] heights ahead of the active chain,
//! spread over the peers that have them, a few requests per peer. The chain
//! state connects them strictly in order whatever order they arrive in. A
//! request unanswered for too long marks its peer as stalling: the peer is
//! dropped and its blocks are asked of others.
//!
//! Pure: time comes in as an argument and decisions go out as [`Action`]s. It
//! reads the chain state's block index, which is in the store: those reads are
//! the only errors here, and they are the store's.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tinychain_protocol::BlockHash;
use tinychain_protocol::pow::Work;

use crate::chain::{ChainState, HeadersOutcome};
use crate::p2p::protocol::{MAX_BLOCKS_PER_RESPONSE, MAX_HEADERS_PER_RESPONSE, Status};
use crate::store::{Store, StoreError};

/// How long a peer that refused a request is left alone.
const REST_AFTER_REFUSAL: Duration = Duration::from_secs(1);
/// Least time between two `Status` requests to one peer: orphan blocks of a
/// fast-mining peer each call for one, and that must not become a flood.
const STATUS_SPACING: Duration = Duration::from_secs(1);
/// Orphan parents asked for by hash and not yet answered, remembered at most.
const MAX_PARENTS_ASKED: usize = 64;

/// Settings of the downloader: the config file's `[sync]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Blocks past the active chain's fork with the best header that may be
    /// requested (Core's `BLOCK_DOWNLOAD_WINDOW`).
    pub window: u32,
    /// Blocks asked for in one request.
    pub blocks_per_request: usize,
    /// Block requests in flight per peer.
    pub requests_per_peer: usize,
    /// A request unanswered this long marks its peer as stalling.
    #[serde(rename = "timeout_secs", with = "crate::serde_util::secs")]
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            window: 1024,
            blocks_per_request: MAX_BLOCKS_PER_RESPONSE,
            requests_per_peer: 2,
            timeout: Duration::from_secs(20),
        }
    }
}

/// Something to ask of, or do to, a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<P> {
    /// Send `GetHeaders` with this locator.
    GetHeaders {
        /// The peer.
        peer: P,
        /// The locator.
        locator: Vec<BlockHash>,
    },
    /// Send `GetBlocks` for these blocks.
    GetBlocks {
        /// The peer.
        peer: P,
        /// The blocks, in height order.
        hashes: Vec<BlockHash>,
    },
    /// Send `Status` with our status: its answer tells whether the peer is ahead.
    GetStatus {
        /// The peer.
        peer: P,
    },
    /// Disconnect the peer: it stalls the download.
    Drop {
        /// The peer.
        peer: P,
        /// Why.
        reason: String,
    },
}

/// What the downloader knows of one peer.
#[derive(Debug, Clone)]
struct PeerSync {
    /// The chain the peer claims.
    status: Status,
    /// The most-work header in our index that the peer is known to have.
    best_known: Option<BlockHash>,
    /// When its headers request was sent, if one is in flight.
    headers_since: Option<Instant>,
    /// Its last headers reply was full: ask it for the next run.
    more_headers_after: Option<BlockHash>,
    /// Block requests in flight.
    requests: usize,
    /// It answered a block request with nothing: not asked for blocks again
    /// until it sends a new status.
    came_up_empty: bool,
    /// Blocks it delivered that we asked for.
    delivered: u64,
    /// It refused a request (rate limited): not asked again before this.
    resting_until: Option<Instant>,
}

/// The download state of all peers.
#[derive(Debug)]
pub struct Sync<P> {
    config: Config,
    peers: BTreeMap<P, PeerSync>,
    /// Blocks requested: from whom and when.
    in_flight: HashMap<BlockHash, (P, Instant)>,
    /// When a `Status` request went to each peer, while unanswered (or for
    /// [`STATUS_SPACING`] after).
    status_asked: BTreeMap<P, (Instant, bool)>,
    /// Orphan parents asked for by hash, and when: not asked again within
    /// [`Config::timeout`] (the block arrives, or the peer lacks it).
    parents_asked: HashMap<BlockHash, Instant>,
}

/// How a peer misbehaved in sync, for its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misbehaviour {
    /// What it did.
    pub reason: String,
}

impl<P: Ord + Clone> Sync<P> {
    /// Makes a downloader with no peers.
    pub fn new(config: Config) -> Sync<P> {
        Sync {
            config,
            peers: BTreeMap::new(),
            in_flight: HashMap::new(),
            status_asked: BTreeMap::new(),
            parents_asked: HashMap::new(),
        }
    }

    /// Records a peer's status: what chain it claims.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn set_status<S: Store>(
        &mut self,
        peer: P,
        status: Status,
        chain: &ChainState<S>,
    ) -> Result<(), StoreError> {
        let entry = self.peers.entry(peer).or_insert(PeerSync {
            status,
            best_known: None,
            headers_since: None,
            more_headers_after: None,
            requests: 0,
            came_up_empty: false,
            delivered: 0,
            resting_until: None,
        });
        entry.status = status;
        entry.came_up_empty = false;
        update_best_known(entry, status.tip, chain)
    }

    /// Records that a peer has a block (it sent it by gossip, say).
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn peer_has<S: Store>(
        &mut self,
        peer: &P,
        hash: BlockHash,
        chain: &ChainState<S>,
    ) -> Result<(), StoreError> {
        match self.peers.get_mut(peer) {
            Some(entry) => update_best_known(entry, hash, chain),
            None => Ok(()),
        }
    }

    /// Forgets a departed peer; its blocks in flight are free to ask of others.
    pub fn remove_peer(&mut self, peer: &P) {
        self.peers.remove(peer);
        self.in_flight.retain(|_, (p, _)| p != peer);
        self.status_asked.remove(peer);
    }

    /// Decides whether to ask `peer` for its status now: not while a `Status`
    /// request to it is unanswered (unless it timed out), and not twice within
    /// `STATUS_SPACING`. Records the request when it says yes.
    pub fn ask_status(&mut self, peer: P, now: Instant) -> Option<Action<P>> {
        if let Some((since, answered)) = self.status_asked.get(&peer) {
            let age = now.saturating_duration_since(*since);
            let limit = if *answered { STATUS_SPACING } else { self.config.timeout };
            if age < limit {
                return None;
            }
        }
        self.status_asked.insert(peer.clone(), (now, false));
        Some(Action::GetStatus { peer })
    }

    /// Records that `peer` answered (or failed) our `Status` request.
    pub fn status_answered(&mut self, peer: &P) {
        if let Some((_, answered)) = self.status_asked.get_mut(peer) {
            *answered = true;
        }
    }

    /// Decides what to ask `peer`, which sent an orphan block whose missing
    /// ancestor is `parent`: the parent itself if `fetch` allows (the node is
    /// not syncing and holds few orphans) and nobody was asked for it already,
    /// and the peer's status, which tells whether headers-first sync should
    /// take over (see [`Sync::ask_status`]). A burst of orphans from a
    /// fast-mining peer so costs a request or two, not one per block.
    pub fn orphan_parent(
        &mut self,
        peer: P,
        parent: BlockHash,
        fetch: bool,
        now: Instant,
    ) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        let timeout = self.config.timeout;
        self.parents_asked.retain(|_, since| now.saturating_duration_since(*since) < timeout);
        if fetch
            && !self.parents_asked.contains_key(&parent)
            && self.parents_asked.len() < MAX_PARENTS_ASKED
        {
            self.parents_asked.insert(parent, now);
            actions.push(Action::GetBlocks { peer: peer.clone(), hashes: vec![parent] });
        }
        actions.extend(self.ask_status(peer, now));
        actions
    }

    /// Tells whether the block `hash` is in flight from `peer`: asked of it by
    /// this downloader, so on the best header chain.
    pub fn is_in_flight(&self, peer: &P, hash: &BlockHash) -> bool {
        self.in_flight.get(hash).is_some_and(|(p, _)| p == peer)
    }

    /// Tells whether a peer is known.
    pub fn has_peer(&self, peer: &P) -> bool {
        self.peers.contains_key(peer)
    }

    /// Returns how many requested blocks a peer delivered and how many it has in flight.
    pub fn peer_stats(&self, peer: &P) -> Option<(u64, usize)> {
        let entry = self.peers.get(peer)?;
        let in_flight = self.in_flight.values().filter(|(p, _)| p == peer).count();
        Some((entry.delivered, in_flight))
    }

    /// Returns the number of blocks in flight.
    pub fn blocks_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Returns the most work claimed by a peer whose tip we have not seen yet
    /// (a claim for a tip we know is settled: we have it, or it is invalid).
    pub fn best_unknown_claim(&self) -> Option<Work> {
        self.peers
            .values()
            .filter(|p| p.best_known != Some(p.status.tip))
            .map(|p| p.status.chainwork)
            .max()
    }

    /// Handles a peer's headers reply, after the chain state accepted them
    /// (`outcome`). Returns the misbehaviour, if the reply shows one.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn headers_received<S: Store>(
        &mut self,
        peer: &P,
        count: usize,
        outcome: &HeadersOutcome,
        chain: &ChainState<S>,
    ) -> Result<Option<Misbehaviour>, StoreError> {
        let Some(entry) = self.peers.get_mut(peer) else { return Ok(None) };
        let asked = entry.headers_since.take().is_some();
        entry.more_headers_after = None;
        if !asked {
            return Ok(
                (count > 0).then(|| Misbehaviour { reason: "headers nobody asked for".to_owned() })
            );
        }
        if count > MAX_HEADERS_PER_RESPONSE {
            return Ok(Some(Misbehaviour { reason: format!("{count} headers in one reply") }));
        }
        if let Some(error) = &outcome.error {
            // Missing parent: the headers do not connect to our locator (the peer
            // reorganised meanwhile); anything else breaks a rule.
            return Ok(match error.kind() {
                tinychain_protocol::validation::Kind::Invalid => {
                    Some(Misbehaviour { reason: format!("invalid header: {error}") })
                }
                _ => None,
            });
        }
        if let Some(last) = outcome.last {
            update_best_known(entry, last, chain)?;
            if count == MAX_HEADERS_PER_RESPONSE {
                entry.more_headers_after = Some(last);
                return Ok(None);
            }
        }
        // A short reply: the peer has nothing more. It must have shown the work it claimed.
        let shown = match entry.best_known {
            Some(hash) => chain.index_entry(&hash)?.map(|e| e.chainwork),
            None => None,
        };
        if shown.is_none_or(|w| w < entry.status.chainwork)
            && chain.index_entry(&entry.status.tip)?.is_none()
        {
            let claimed = entry.status.height;
            // Its claim is spent: do not ask again until it sends a new status.
            entry.status.chainwork = shown.unwrap_or(Work::ZERO);
            return Ok(Some(Misbehaviour {
                reason: format!("status claimed height {claimed} but its headers do not reach it"),
            }));
        }
        Ok(None)
    }

    /// Handles a peer's blocks reply to a request for `requested`; `delivered`
    /// are the hashes of the blocks it sent.
    pub fn blocks_received(&mut self, peer: &P, requested: &[BlockHash], delivered: &[BlockHash]) {
        if !self.release(peer, requested) {
            return;
        }
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.delivered += delivered.iter().filter(|h| requested.contains(h)).count() as u64;
            if delivered.is_empty() && !requested.is_empty() {
                // It does not have them after all: ask others until it tells us more.
                entry.came_up_empty = true;
            }
        }
    }

    /// Frees the blocks of a request to `peer` and its slot; tells whether the
    /// request was this downloader's (not, say, an orphan's parent fetched by hash).
    fn release(&mut self, peer: &P, requested: &[BlockHash]) -> bool {
        if !requested.iter().any(|h| self.in_flight.get(h).is_some_and(|(p, _)| p == peer)) {
            return false;
        }
        for hash in requested {
            if self.in_flight.get(hash).is_some_and(|(p, _)| p == peer) {
                self.in_flight.remove(hash);
            }
        }
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.requests = entry.requests.saturating_sub(1);
        }
        true
    }

    /// Handles a refused request: as a failed one, and the peer rests a second
    /// before it is asked again.
    pub fn request_refused(&mut self, peer: &P, blocks: &[BlockHash], now: Instant) {
        self.request_failed(peer, blocks);
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.resting_until = Some(now + REST_AFTER_REFUSAL);
        }
    }

    /// Handles a failed request: a headers request (`blocks` empty) or one for `blocks`.
    pub fn request_failed(&mut self, peer: &P, blocks: &[BlockHash]) {
        if blocks.is_empty() {
            if let Some(entry) = self.peers.get_mut(peer) {
                entry.headers_since = None;
            }
        } else {
            self.release(peer, blocks);
        }
    }

    /// Decides what to ask whom now: drops stalling peers, asks for headers, and
    /// fills every suitable peer's request slots with blocks of the window.
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn schedule<S: Store>(
        &mut self,
        chain: &ChainState<S>,
        now: Instant,
    ) -> Result<Vec<Action<P>>, StoreError> {
        // Headers learnt from one peer may show that others' claimed tips are known now.
        for entry in self.peers.values_mut() {
            update_best_known(entry, entry.status.tip, chain)?;
        }
        for entry in self.peers.values_mut() {
            if entry.resting_until.is_some_and(|t| t <= now) {
                entry.resting_until = None;
            }
        }
        let mut actions = self.drop_stalling(now);
        actions.extend(self.schedule_headers(chain, now)?);
        actions.extend(self.schedule_blocks(chain, now)?);
        Ok(actions)
    }

    fn drop_stalling(&mut self, now: Instant) -> Vec<Action<P>> {
        let timeout = self.config.timeout;
        let late = |since: Instant| now.saturating_duration_since(since) > timeout;
        let mut stalling: Vec<P> = self
            .in_flight
            .values()
            .filter(|(_, since)| late(*since))
            .map(|(p, _)| p.clone())
            .collect();
        stalling.extend(
            self.peers
                .iter()
                .filter(|(_, e)| e.headers_since.is_some_and(late))
                .map(|(p, _)| p.clone()),
        );
        stalling.sort();
        stalling.dedup();
        stalling
            .into_iter()
            .map(|peer| {
                self.remove_peer(&peer);
                Action::Drop { peer, reason: "sync request unanswered".to_owned() }
            })
            .collect()
    }

    fn schedule_headers<S: Store>(
        &mut self,
        chain: &ChainState<S>,
        now: Instant,
    ) -> Result<Option<Action<P>>, StoreError> {
        if self.peers.values().any(|e| e.headers_since.is_some()) {
            return Ok(None);
        }
        let best_header_work = chain.index().best_header().map_or(Work::ZERO, |(_, e)| e.chainwork);
        // A peer in the middle of a run first, else the one claiming the most work.
        let next_run = self
            .peers
            .iter()
            .filter(|(_, e)| e.resting_until.is_none())
            .find_map(|(p, e)| Some((p, e.more_headers_after?)));
        let (peer, after) = match next_run {
            Some((peer, after)) => (peer.clone(), after),
            None => {
                // The peer claiming the most work, of those whose tip is unknown.
                let mut best_claim: Option<(&P, Work)> = None;
                for (peer, e) in &self.peers {
                    if e.status.chainwork > best_header_work
                        && best_claim.is_none_or(|(_, work)| e.status.chainwork >= work)
                        && chain.index_entry(&e.status.tip)?.is_none()
                    {
                        best_claim = Some((peer, e.status.chainwork));
                    }
                }
                let Some((peer, _)) = best_claim else { return Ok(None) };
                let best = chain.index().best_header().map_or(chain.tip(), |(h, _)| h);
                (peer.clone(), best)
            }
        };
        let locator = chain.locator_from(&after)?;
        let Some(entry) = self.peers.get_mut(&peer) else { return Ok(None) };
        entry.headers_since = Some(now);
        entry.more_headers_after = None;
        Ok(Some(Action::GetHeaders { peer, locator }))
    }

    fn schedule_blocks<S: Store>(
        &mut self,
        chain: &ChainState<S>,
        now: Instant,
    ) -> Result<Vec<Action<P>>, StoreError> {
        let mut wanted =
            chain.blocks_to_download(self.config.window, |h| !self.in_flight.contains_key(h))?;
        let Some((best, _)) = chain.index().best_header() else { return Ok(Vec::new()) };
        let mut actions = Vec::new();
        // Peers with free slots, fewest requests first: the load spreads over all.
        let mut peers: Vec<(usize, P, u32)> = Vec::new();
        for (p, e) in &self.peers {
            let free = e.requests < self.config.requests_per_peer
                && !e.came_up_empty
                && e.resting_until.is_none();
            let Some(best_known) = e.best_known.filter(|_| free) else { continue };
            // The peer has every block of the best header chain up to here.
            if let Some(has_up_to) = chain.fork_height(&best_known, &best)? {
                peers.push((e.requests, p.clone(), has_up_to));
            }
        }
        peers.sort();
        while !wanted.is_empty() {
            let mut progressed = false;
            for (_, peer, has_up_to) in &peers {
                let Some(entry) = self.peers.get_mut(peer) else { continue };
                if entry.requests >= self.config.requests_per_peer {
                    continue;
                }
                let take: Vec<usize> = wanted
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, height))| height <= has_up_to)
                    .take(self.config.blocks_per_request)
                    .map(|(i, _)| i)
                    .collect();
                if take.is_empty() {
                    continue;
                }
                let hashes: Vec<BlockHash> = take.iter().map(|&i| wanted[i].0).collect();
                for i in take.into_iter().rev() {
                    wanted.remove(i);
                }
                for hash in &hashes {
                    self.in_flight.insert(*hash, (peer.clone(), now));
                }
                entry.requests += 1;
                actions.push(Action::GetBlocks { peer: peer.clone(), hashes });
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        Ok(actions)
    }
}

/// Raises a peer's best known header to `hash` if that is known and has more work.
fn update_best_known<S: Store>(
    entry: &mut PeerSync,
    hash: BlockHash,
    chain: &ChainState<S>,
) -> Result<(), StoreError> {
    if entry.best_known == Some(hash) {
        return Ok(());
    }
    let Some(new) = chain.index_entry(&hash)? else { return Ok(()) };
    let old = match entry.best_known {
        Some(old) => chain.index_entry(&old)?,
        None => None,
    };
    if old.is_none_or(|old| new.chainwork > old.chainwork) {
        entry.best_known = Some(hash);
    }
    Ok(())
}
