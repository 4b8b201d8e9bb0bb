//! The miner: proof-of-work search on OS threads.
//!
//! Owns the mining threads and the job they work on. The event loop hands in a
//! block template with [`Miner::set_job`] whenever the tip changes (and from time
//! to time, to pick up new transactions); every thread then drops its old work
//! within a few thousand hashes (well under 50 ms). Each thread searches its own
//! extra-nonce space (job and thread in the high 32 bits, a round counter in the
//! low ones), so threads never repeat each other's work, and moves to the next
//! round when its 2^32 nonces are exhausted. Hashing uses the header midstate:
//! the first 64 header bytes are hashed once per round, not once per nonce.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tinychain_protocol::Block;
use tinychain_protocol::pow::HeaderHasher;

use crate::template::{BlockTemplate, with_extra_nonce};

/// Nonces tried between checks for a new job.
const CHUNK: u32 = 2048;

/// Called with each block found.
pub type FoundBlock = Arc<dyn Fn(Block) + Send + Sync>;

#[derive(Default)]
struct Shared {
    job: Mutex<Option<(u64, Arc<BlockTemplate>)>>,
    job_changed: Condvar,
    generation: AtomicU64,
    hashes: AtomicU64,
    stop: AtomicBool,
}

/// The mining threads.
pub struct Miner {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Miner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Miner").field("threads", &self.threads.len()).finish_non_exhaustive()
    }
}

impl Miner {
    /// Starts `threads` mining threads, idle until a job is set.
    ///
    /// # Errors
    ///
    /// The OS refuses to start a thread.
    pub fn start(threads: usize, found: FoundBlock) -> std::io::Result<Miner> {
        let shared = Arc::new(Shared::default());
        let mut handles = Vec::with_capacity(threads);
        for index in 0..threads {
            let shared = Arc::clone(&shared);
            let found = Arc::clone(&found);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("miner-{index}"))
                    .spawn(move || mine_loop(index as u64, &shared, &found))?,
            );
        }
        Ok(Miner { shared, threads: handles })
    }

    /// Replaces the job: every thread abandons its current work and mines `template`.
    pub fn set_job(&self, template: BlockTemplate) {
        let generation = self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let mut job = self.shared.job.lock().unwrap_or_else(|p| p.into_inner());
        *job = Some((generation, Arc::new(template)));
        self.shared.job_changed.notify_all();
    }

    /// Stops mining until the next [`Miner::set_job`].
    pub fn pause(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let mut job = self.shared.job.lock().unwrap_or_else(|p| p.into_inner());
        *job = None;
    }

    /// Returns the number of hashes computed so far (for the hash rate).
    pub fn hashes(&self) -> u64 {
        self.shared.hashes.load(Ordering::Relaxed)
    }

    /// Returns the number of threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Stops the threads and waits for them.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.job_changed.notify_all();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn mine_loop(index: u64, shared: &Shared, found: &FoundBlock) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let job = {
            let guard = shared.job.lock().unwrap_or_else(|p| p.into_inner());
            let (guard, _) = shared
                .job_changed
                .wait_timeout_while(guard, Duration::from_millis(200), |job| {
                    job.is_none() && !shared.stop.load(Ordering::SeqCst)
                })
                .unwrap_or_else(|p| p.into_inner());
            guard.clone()
        };
        let Some((generation, template)) = job else { continue };
        if let Some(block) = search(index, generation, &template, shared) {
            // First finder wins: bump the generation so the other threads stop.
            if shared
                .generation
                .compare_exchange(generation, generation + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                found(block);
            }
        }
        // Wait for a new job rather than re-mining this one.
        let mut guard = shared.job.lock().unwrap_or_else(|p| p.into_inner());
        while guard.as_ref().is_none_or(|(g, _)| *g <= generation)
            && !shared.stop.load(Ordering::SeqCst)
        {
            let (g, _) = shared
                .job_changed
                .wait_timeout(guard, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner());
            guard = g;
        }
    }
}

/// Searches the template until a block is found or the job changes.
fn search(index: u64, generation: u64, template: &BlockTemplate, shared: &Shared) -> Option<Block> {
    let Ok(target) = template.block.header.bits.to_target() else { return None };
    for round in 0u64..=u64::from(u32::MAX) {
        // Job, thread and round in the extra nonce: no two searches hash the same
        // block, even when a job repeats an earlier template.
        let extra_nonce = ((generation & 0xffff) << 48) | ((index & 0xffff) << 32) | round;
        let mut block = with_extra_nonce(template, extra_nonce);
        let hasher = HeaderHasher::new(&block.header);
        let time = block.header.time;
        let mut start = 0u32;
        loop {
            let end = start.saturating_add(CHUNK);
            if let Some(nonce) = hasher.find_nonce(time, start..end, &target) {
                shared.hashes.fetch_add(u64::from(nonce - start + 1), Ordering::Relaxed);
                block.header.nonce = nonce;
                return Some(block);
            }
            shared.hashes.fetch_add(u64::from(end - start), Ordering::Relaxed);
            if shared.generation.load(Ordering::Relaxed) != generation {
                return None;
            }
            if end == u32::MAX {
                break; // nonces exhausted: next extra nonce
            }
            start = end;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use tinychain_protocol::params::{Network, Params};
    use tinychain_protocol::pow::CompactTarget;
    use tinychain_protocol::{BlockHash, PubkeyHash};

    use super::*;
    use crate::template::{TemplateContext, create_block_template};

    fn template(prev: BlockHash, bits: u32) -> BlockTemplate {
        let params = Params::new(Network::Regtest);
        let ctx = TemplateContext {
            prev_blockhash: prev,
            height: 1,
            median_time_past: 1_000,
            bits: CompactTarget::from_consensus(bits),
            now: 2_000,
        };
        create_block_template(
            &ctx,
            &crate::mempool::Mempool::default(),
            PubkeyHash::default(),
            &params,
        )
    }

    #[test]
    fn a_new_job_replaces_the_old_one_and_its_block_is_found() {
        let (tx, rx) = mpsc::channel();
        let found: FoundBlock = Arc::new(move |block| {
            let _ = tx.send(block);
        });
        let miner = Miner::start(2, found).expect("threads start");
        // A target no one will meet in this test (about 2^64 hashes).
        miner.set_job(template(BlockHash::from_byte_array([1; 32]), 0x1800_ffff));
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err(), "nothing found yet");
        assert!(miner.hashes() > 0, "the threads are hashing");
        // An easy job: the threads must drop the hard one and find this block.
        let easy = BlockHash::from_byte_array([2; 32]);
        miner.set_job(template(easy, 0x207f_ffff));
        let block = rx.recv_timeout(Duration::from_secs(10)).expect("found the easy block");
        assert_eq!(block.header.prev_blockhash, easy);
        let target = block.header.bits.to_target().expect("valid bits");
        assert!(target.is_met_by(block.block_hash()));
        // Exactly one block per job: the others stop once it is found.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        miner.shutdown();
    }
}
