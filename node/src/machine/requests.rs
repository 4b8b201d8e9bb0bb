//! The sync protocol's decisions: how to answer a peer's request, what its
//! answers to ours lead to, and what headers-first sync asks next.
//!
//! Owns the request budget check, the refusal and penalty of malformed
//! requests, pairing answers with questions (blocks nobody asked for, answers
//! that do not fit), and the sync progress log. The downloader's own rules
//! live in [`crate::sync`].

use libp2p::gossipsub::MessageAcceptance;
use tinychain_protocol::Block;
use tracing::{debug, info};

use super::{Error, InboundId, Node, Output, PeerId, Time};
use crate::chain;
use crate::core::{BlockOutcome, Source};
use crate::p2p::protocol::{
    MAX_BLOCKS_PER_RESPONSE, MAX_HEADERS_PER_RESPONSE, MAX_RESPONSE_SIZE, Request, Response,
    Status, WireRequest,
};
use crate::store::Store;

impl<S: Store> Node<S> {
    /// Answers a peer's request, unless it is over its budget or malformed
    /// (refused, and a malformed one penalised after the refusal, since a ban
    /// would close the stream).
    pub(super) fn on_request(
        &mut self,
        peer: PeerId,
        id: InboundId,
        request: WireRequest,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        if !self.within_budget(peer, request.cost(), now) {
            out.push(Output::Respond { id, response: Response::Refused("rate limited".into()) });
            return Ok(());
        }
        let request = match request {
            WireRequest::Request(request) => request,
            WireRequest::Malformed(reason) => {
                let reason = format!("malformed request: {reason}");
                out.push(Output::Respond { id, response: Response::Refused(reason.clone()) });
                self.penalise(peer, &reason, out);
                return Ok(());
            }
        };
        let response = match request {
            Request::Status(status) => {
                // Our answer, then what the peer's status leads to.
                let mut after = Vec::new();
                self.on_status(peer, status, now, &mut after)?;
                out.push(Output::Respond { id, response: Response::Status(self.status()) });
                out.extend(after);
                return Ok(());
            }
            Request::GetHeaders { locator } => Response::Headers(
                self.core.chain().headers_after(&locator, MAX_HEADERS_PER_RESPONSE)?,
            ),
            Request::GetBlocks(hashes) => Response::Blocks(self.core.blocks(
                &hashes,
                MAX_BLOCKS_PER_RESPONSE,
                MAX_RESPONSE_SIZE - 1024,
            )?),
        };
        out.push(Output::Respond { id, response });
        Ok(())
    }

    /// A peer's status: another genesis is banned; otherwise it feeds sync.
    pub(super) fn on_status(
        &mut self,
        peer: PeerId,
        status: Status,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        if status.genesis != self.core.chain().params().genesis_hash() {
            out.push(Output::Ban { peer, reason: "another genesis block".into() });
            return Ok(());
        }
        let Some(known) = self.peers.get_mut(&peer) else {
            // Gone already (its status raced its disconnection).
            return Ok(());
        };
        // A peer's first status is news; the later ones (one per block) are not.
        if known.status.is_none() {
            info!(%peer, height = status.height, tip = %status.tip, "peer status");
        } else {
            debug!(%peer, height = status.height, tip = %status.tip, "peer status");
        }
        known.status = Some(status);
        self.sync.set_status(peer, status, self.core.chain())?;
        self.run_sync(now, out)
    }

    /// A peer answered one of our requests.
    pub(super) fn on_response(
        &mut self,
        peer: PeerId,
        request: Request,
        response: Response,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        match (request, response) {
            (Request::Status(_), Response::Status(status)) => {
                self.sync.status_answered(&peer);
                self.on_status(peer, status, now, out)?;
            }
            (Request::GetHeaders { .. }, Response::Headers(headers)) => {
                let count = headers.len();
                let outcome = if count > MAX_HEADERS_PER_RESPONSE {
                    chain::HeadersOutcome::default()
                } else {
                    self.core.handle_headers(&headers, now.unix)?
                };
                if outcome.new > 0 {
                    info!(%peer, new = outcome.new, best_header = self.core.chain().index().best_header_height(), "headers received");
                }
                if let Some(m) =
                    self.sync.headers_received(&peer, count, &outcome, self.core.chain())?
                {
                    self.penalise(peer, &m.reason, out);
                }
            }
            (Request::GetBlocks(requested), Response::Blocks(blocks)) => {
                self.on_blocks(peer, &requested, blocks, now, out)?;
            }
            (request, Response::Refused(reason)) => {
                info!(%peer, reason, "request refused");
                match &request {
                    Request::GetBlocks(hashes) => {
                        for hash in hashes {
                            self.settle_incomplete(hash, MessageAcceptance::Ignore, out);
                        }
                        self.sync.request_refused(&peer, hashes, now.instant);
                    }
                    Request::GetHeaders { .. } => {
                        self.sync.request_refused(&peer, &[], now.instant);
                    }
                    Request::Status(_) => self.sync.status_answered(&peer),
                }
            }
            (request, _) => {
                self.penalise(peer, "an answer that does not fit the question", out);
                self.request_failed(peer, &request, now, out);
            }
        }
        Ok(())
    }

    /// Blocks a peer sent for our `GetBlocks`.
    fn on_blocks(
        &mut self,
        peer: PeerId,
        requested: &[tinychain_protocol::BlockHash],
        blocks: Vec<Block>,
        now: Time,
        out: &mut Vec<Output>,
    ) -> Result<(), Error> {
        let delivered: Vec<_> = blocks.iter().map(Block::block_hash).collect();
        if delivered.iter().any(|h| !requested.contains(h)) {
            self.penalise(peer, "blocks nobody asked for", out);
        }
        for (block, hash) in blocks.into_iter().zip(&delivered) {
            if !requested.contains(hash) {
                continue;
            }
            // Blocks the downloader asked for are on the best header
            // chain; the others (an orphan's parent, a compact block's
            // whole form) came by gossip in effect.
            let source = if self.sync.is_in_flight(&peer, hash) {
                Source::Requested(peer)
            } else {
                Source::Unrequested(peer)
            };
            let (outcome, mut outputs) = self.core.handle_block(block, source, now.unix)?;
            if self.is_incomplete(hash) {
                // Forwarded below as the gossiped compact block it completes.
                outputs.retain(|o| *o != crate::core::Output::RelayBlock(*hash));
            }
            self.carry_out(outputs, now, out)?;
            // Forwarded once connected, so fully validated (new, or arrived meanwhile).
            let acceptance = match outcome {
                BlockOutcome::Invalid(_) => MessageAcceptance::Reject,
                _ if self.core.is_valid(hash)? => MessageAcceptance::Accept,
                _ => MessageAcceptance::Ignore,
            };
            self.settle_incomplete(hash, acceptance, out);
            if matches!(outcome, BlockOutcome::Invalid(_)) {
                break;
            }
        }
        for hash in requested {
            self.settle_incomplete(hash, MessageAcceptance::Ignore, out);
        }
        self.sync.blocks_received(&peer, requested, &delivered);
        Ok(())
    }

    /// Frees what a failed or refused request held in the downloader.
    pub(super) fn request_failed(
        &mut self,
        peer: PeerId,
        request: &Request,
        _now: Time,
        out: &mut Vec<Output>,
    ) {
        if let Request::GetBlocks(hashes) = request {
            for hash in hashes {
                self.settle_incomplete(hash, MessageAcceptance::Ignore, out);
            }
        }
        match request {
            Request::GetBlocks(hashes) => self.sync.request_failed(&peer, hashes),
            Request::GetHeaders { .. } => self.sync.request_failed(&peer, &[]),
            Request::Status(_) => self.sync.status_answered(&peer),
        }
    }

    /// Asks peers for headers and blocks as the downloader decides.
    pub(super) fn run_sync(&mut self, now: Time, out: &mut Vec<Output>) -> Result<(), Error> {
        let actions = self.sync.schedule(self.core.chain(), now.instant)?;
        self.execute(actions, out);
        if self.progress.is_none() && self.is_syncing() {
            let height = self.core.chain().height();
            info!(
                height,
                best_header = self.core.chain().index().best_header_height(),
                "sync start"
            );
            self.progress = Some((now.instant, height));
        } else if self.progress.is_some() && !self.is_syncing() {
            self.report_progress(now);
            info!(height = self.core.chain().height(), hash = %self.core.chain().tip(), "sync end");
            self.progress = None;
        }
        Ok(())
    }

    /// Logs sync progress: heights and blocks per second since the last report.
    pub(super) fn report_progress(&mut self, now: Time) {
        let Some((since, from)) = self.progress else { return };
        let chain = self.core.chain();
        let height = chain.height();
        let seconds = now.instant.saturating_duration_since(since).as_secs_f64().max(0.001);
        info!(
            height,
            best_header = chain.index().best_header_height(),
            blocks_per_s = (f64::from(height.saturating_sub(from)) / seconds * 10.0).round() / 10.0,
            in_flight = self.sync.blocks_in_flight(),
            peers = self.peers.len(),
            "sync progress"
        );
        self.progress = Some((now.instant, height));
    }
}
