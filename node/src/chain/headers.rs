//! Headers-first sync on the chain state: accepting runs of headers, locators,
//! serving headers, and choosing which blocks to download next.
//!
//! Owns the parts of Bitcoin Core's `ProcessNewBlockHeaders`, `GetLocator`,
//! `getheaders` handling and `FindNextBlocksToDownload` that touch the block
//! index. A run of headers is checked header by header (proof of work, bits,
//! time, continuity) and stored in one commit, before any block is downloaded.

use tinychain_protocol::validation::{Kind, contextual_check_block_header};
use tinychain_protocol::{BlockHash, BlockHeader, validation};

use super::{AcceptError, Accepted, ChainState};
use crate::store::{BlockStatus, Store, StoreError};

/// What became of a run of headers.
#[derive(Debug, Default)]
pub struct HeadersOutcome {
    /// Headers new to the index.
    pub new: usize,
    /// The last header of the run that is now in the index (new or known).
    pub last: Option<BlockHash>,
    /// Why the run stopped early, if it did.
    pub error: Option<AcceptError>,
}

impl<S: Store> ChainState<S> {
    /// Accepts one header: see [`ChainState::accept_headers`].
    ///
    /// # Errors
    ///
    /// Missing parent, known-invalid ancestry, broken header rules, or the store.
    pub fn accept_header(
        &mut self,
        header: &BlockHeader,
        now: u32,
    ) -> Result<Accepted, AcceptError> {
        let outcome = self.accept_headers(std::slice::from_ref(header), now)?;
        match outcome.error {
            Some(error) => Err(error),
            None if outcome.new == 1 => Ok(Accepted::New),
            None => Ok(Accepted::Duplicate),
        }
    }

    /// Accepts a run of headers, each the parent of the next (headers-first
    /// sync): checks each one's proof of work and context after its parent and
    /// adds it to the index as header-only. All new entries share one store
    /// commit. The run stops at the first header that fails; the headers before
    /// it stay accepted.
    ///
    /// # Errors
    ///
    /// Only store failures; rule failures are in [`HeadersOutcome::error`].
    pub fn accept_headers(
        &mut self,
        headers: &[BlockHeader],
        now: u32,
    ) -> Result<HeadersOutcome, StoreError> {
        let mut outcome = HeadersOutcome::default();
        let mut previous: Option<BlockHash> = None;
        for header in headers {
            if let Some(previous) = previous
                && header.prev_blockhash != previous
            {
                outcome.error = Some(AcceptError::NotContinuous(header.block_hash()));
                break;
            }
            match self.accept_one_header(header, now) {
                Ok(accepted) => {
                    let hash = header.block_hash();
                    outcome.new += usize::from(accepted == Accepted::New);
                    outcome.last = Some(hash);
                    previous = Some(hash);
                }
                Err(error) => {
                    outcome.error = Some(error);
                    break;
                }
            }
        }
        // The new entries are the index's changes: one write stores them all.
        self.flush()?;
        Ok(outcome)
    }

    /// Checks one header and adds its entry to the index (written by the caller).
    fn accept_one_header(
        &mut self,
        header: &BlockHeader,
        now: u32,
    ) -> Result<Accepted, AcceptError> {
        let hash = header.block_hash();
        if let Some(entry) = self.index_entry(&hash)? {
            if entry.status.is_invalid() {
                return Err(AcceptError::KnownInvalid(hash));
            }
            return Ok(Accepted::Duplicate);
        }
        let invalid = |error| AcceptError::Invalid { hash, error: Box::new(error) };
        validation::check_block_header(header, &self.params).map_err(invalid)?;
        let missing_parent = || AcceptError::MissingParent(header.prev_blockhash);
        let parent = self.index_entry(&header.prev_blockhash)?.ok_or_else(missing_parent)?;
        let add = |chain: &mut Self, status| -> Result<(), AcceptError> {
            let entry = chain.new_entry(hash, header, &parent, status)?;
            chain.index.insert(&chain.store, hash, entry)?;
            Ok(())
        };
        if parent.status.is_invalid() {
            add(self, BlockStatus::InvalidChild)?;
            return Err(AcceptError::KnownInvalid(hash));
        }
        let ctx = self.context_after(&header.prev_blockhash, now)?.ok_or_else(missing_parent)?;
        if let Err(error) = contextual_check_block_header(header, &ctx, &self.params) {
            if error.kind() == Kind::Invalid {
                add(self, BlockStatus::Invalid)?;
            }
            return Err(invalid(error));
        }
        add(self, BlockStatus::HeaderOnly)?;
        Ok(Accepted::New)
    }

    /// Returns a block locator for any known block: its hash, then hashes going
    /// back one by one for ten steps and exponentially after, ending with the
    /// genesis block; at most 101 hashes (Core's `GetLocator`).
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn locator_from(&self, hash: &BlockHash) -> Result<Vec<BlockHash>, StoreError> {
        let genesis = self.params.genesis_hash();
        let mut out = Vec::new();
        let Some(entry) = self.index_entry(hash)? else { return Ok(vec![genesis]) };
        let mut height = i64::from(entry.height);
        let mut current = *hash;
        let mut step = 1i64;
        while height > 0 && out.len() < 100 {
            // Once on the active chain, the hash at a height is one read, not a walk.
            let at = self.ancestor(&current, height as u32)?.unwrap_or(genesis);
            out.push(at);
            current = at;
            if out.len() >= 10 {
                step *= 2;
            }
            height -= step;
        }
        out.push(genesis);
        Ok(out)
    }

    /// Returns the headers of the active chain after the last hash of `locator`
    /// on it (or after genesis), at most `max` (serving a `GetHeaders` request).
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn headers_after(
        &self,
        locator: &[BlockHash],
        max: usize,
    ) -> Result<Vec<BlockHeader>, StoreError> {
        let fork = self.find_fork(locator)?;
        let mut headers = Vec::new();
        for height in (fork + 1..=self.height()).take(max) {
            if let Some(hash) = self.hash_at(height)? {
                headers.push(self.indexed(&hash)?.header);
            }
        }
        Ok(headers)
    }

    /// Returns the blocks to download next, in height order: blocks of the
    /// best header's chain without data, not invalid, at most `window` heights
    /// past the last block the active chain shares with that chain, and for
    /// which `wanted` says yes (for example: not already requested).
    ///
    /// # Errors
    ///
    /// The store fails.
    pub fn blocks_to_download(
        &self,
        window: u32,
        mut wanted: impl FnMut(&BlockHash) -> bool,
    ) -> Result<Vec<(BlockHash, u32)>, StoreError> {
        let Some((best, best_entry)) = self.index.best_header() else { return Ok(Vec::new()) };
        if best_entry.chainwork <= self.tip_entry().chainwork {
            return Ok(Vec::new());
        }
        let Some(fork) = self.fork_height(&best, &self.tip())? else { return Ok(Vec::new()) };
        let top = best_entry.height.min(fork.saturating_add(window));
        let Some((mut current, mut entry)) = self.index.ancestor(&self.store, &best, top)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while entry.height > fork {
            if !entry.status.has_data() && !entry.status.is_invalid() && wanted(&current) {
                out.push((current, entry.height));
            }
            current = entry.header.prev_blockhash;
            entry = self.indexed(&current)?;
        }
        out.reverse();
        Ok(out)
    }
}
