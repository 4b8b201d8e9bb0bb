//! The TCP transport, with a meter on every connection.
//!
//! Owns building the node's TCP stack (TCP with `nodelay`, noise, yamux, a
//! bounded time to dial and handshake) and the [`Counters`] of each
//! connection: bytes sent and received, when the last byte went each way,
//! whether the peer said goodbye (a yamux GoAway) or its stream just ended,
//! and a switch that cuts the connection at once. The meter sits between noise
//! and yamux, so it counts the multiplexed bytes (yamux frames, after
//! decryption) and sees yamux's own frame headers.
//!
//! The swarm names connections ([`libp2p::swarm::ConnectionId`]) but the
//! transport never learns those names, so each new connection's counters wait
//! in [`Pending`] under its peer and direction until the network claims them
//! when the swarm reports the connection established. Two connections of one
//! peer in one direction whose handshakes end within the same instant could
//! swap counters; both are new then, and a wrong guess only moves which of the
//! two the liveness rules look at first.
//!
//! It decides nothing: what to do with the numbers is [`super::liveness`]'s.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::{
    InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo, Version,
};
use libp2p::core::{ConnectedPoint, Transport};
use libp2p::{PeerId, identity, noise, tcp, yamux};

/// Longest a dial (TCP connect, noise and yamux) or an inbound handshake may
/// take. Without it a dial into a cut cable waits out TCP's SYN retries (about
/// two minutes), and re-dialing a bootstrap peer waits for that dial.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection's meter has seen. Written by the connection's task,
/// read by the network's.
#[derive(Debug)]
pub(super) struct Counters {
    /// Times below are milliseconds after this, plus one (zero: never).
    epoch: Instant,
    bytes_recv: AtomicU64,
    bytes_sent: AtomicU64,
    last_recv: AtomicU64,
    last_send: AtomicU64,
    /// The peer sent a yamux GoAway: it closed the connection on purpose.
    goodbye: AtomicBool,
    /// The peer's byte stream ended.
    ended: AtomicBool,
    /// The node cut the connection: reads and writes fail from now on.
    aborted: AtomicBool,
    /// Since when the connection waits, closed on our side, for the peer to
    /// close its side (see [`Counted`]'s `poll_close`); zero: it does not.
    lingering: AtomicU64,
    /// Wakes the connection's task when the connection is cut.
    waker: AtomicWaker,
}

impl Counters {
    /// Returns a meter that has seen nothing yet.
    pub(super) fn new(now: Instant) -> Counters {
        Counters {
            epoch: now,
            bytes_recv: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            last_recv: AtomicU64::new(0),
            last_send: AtomicU64::new(0),
            goodbye: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            lingering: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        }
    }

    fn stamp(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX) + 1
    }

    fn time(&self, stamp: u64) -> Option<Instant> {
        (stamp > 0).then(|| self.epoch + Duration::from_millis(stamp - 1))
    }

    /// Counts `n` bytes received at `at`.
    pub(super) fn received(&self, n: usize, at: Instant) {
        self.bytes_recv.fetch_add(n as u64, Ordering::Relaxed);
        self.last_recv.fetch_max(self.stamp(at), Ordering::Relaxed);
    }

    /// Counts `n` bytes sent at `at`.
    pub(super) fn sent(&self, n: usize, at: Instant) {
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
        self.last_send.fetch_max(self.stamp(at), Ordering::Relaxed);
    }

    /// Returns the bytes received.
    pub(super) fn bytes_recv(&self) -> u64 {
        self.bytes_recv.load(Ordering::Relaxed)
    }

    /// Returns the bytes sent.
    pub(super) fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// Returns when the last byte arrived, if any did.
    pub(super) fn last_recv(&self) -> Option<Instant> {
        self.time(self.last_recv.load(Ordering::Relaxed))
    }

    /// Returns when the last byte went out, if any did.
    pub(super) fn last_send(&self) -> Option<Instant> {
        self.time(self.last_send.load(Ordering::Relaxed))
    }

    /// Records that the peer said goodbye (a yamux GoAway).
    pub(super) fn saw_goodbye(&self) {
        self.goodbye.store(true, Ordering::Relaxed);
    }

    /// Records that the peer's byte stream ended.
    pub(super) fn saw_end(&self) {
        self.ended.store(true, Ordering::Relaxed);
    }

    /// Tells whether the peer closed the connection on purpose (yamux GoAway).
    pub(super) fn goodbye(&self) -> bool {
        self.goodbye.load(Ordering::Relaxed)
    }

    /// Tells whether the peer's byte stream ended.
    pub(super) fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Returns since when the connection has waited for the peer to close its side.
    pub(super) fn lingering(&self) -> Option<Instant> {
        self.time(self.lingering.load(Ordering::Relaxed))
    }

    /// Cuts the connection: its reads and writes fail from now on, so its
    /// task ends even when a graceful close would wait on a dead link.
    pub(super) fn abort(&self) {
        self.aborted.store(true, Ordering::Relaxed);
        self.waker.wake();
    }

    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        self.waker.register(cx.waker());
        if self.aborted.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "cut by this node"));
        }
        Ok(())
    }
}

/// Follows yamux's frames in the received bytes to notice a GoAway: a
/// 12-byte header (version, type, flags, stream id, length, big-endian),
/// then `length` bytes of body for data frames (type 0) only.
#[derive(Debug, Default)]
struct Frames {
    header: [u8; 12],
    filled: usize,
    body_left: u32,
}

/// yamux's frame types with a body, and the one that ends a session.
const YAMUX_DATA: u8 = 0;
const YAMUX_GO_AWAY: u8 = 3;

impl Frames {
    /// Reads `bytes`; tells whether they finished a GoAway frame.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut go_away = false;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = bytes.len().min(self.body_left as usize);
                self.body_left -= skip as u32;
                bytes = &bytes[skip..];
                continue;
            }
            let take = bytes.len().min(self.header.len() - self.filled);
            self.header[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled == self.header.len() {
                self.filled = 0;
                let length = u32::from_be_bytes([
                    self.header[8],
                    self.header[9],
                    self.header[10],
                    self.header[11],
                ]);
                match self.header[1] {
                    YAMUX_DATA => self.body_left = length,
                    YAMUX_GO_AWAY => go_away = true,
                    _ => {}
                }
            }
        }
        go_away
    }
}

/// A connection's byte stream under yamux, metered.
///
/// Closing it is a lingering close: once our side is shut (after yamux's
/// goodbye) it reads, and drops, what still comes until the peer shuts its
/// side too. Letting go of the socket at once would answer the peer's last
/// frames with a TCP reset, and a reset can reach the peer before it reads
/// our goodbye, which then reads as an error. The network cuts a connection
/// that lingers longer than [`super::liveness::CLOSE_GRACE`].
#[derive(Debug)]
pub(super) struct Counted<C> {
    inner: C,
    counters: Arc<Counters>,
    frames: Frames,
    /// Our side is shut: closing waits for the peer's.
    shut: bool,
}

impl<C> Counted<C> {
    fn new(inner: C, counters: Arc<Counters>) -> Counted<C> {
        Counted { inner, counters, frames: Frames::default(), shut: false }
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Counted<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.counters.check(cx)?;
        let this = &mut *self;
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &read {
            Poll::Ready(Ok(0)) if !buf.is_empty() => this.counters.saw_end(),
            Poll::Ready(Ok(n)) => {
                this.counters.received(*n, Instant::now());
                if this.frames.feed(&buf[..*n]) {
                    this.counters.saw_goodbye();
                }
            }
            _ => {}
        }
        read
    }
}

impl<C: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Counted<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.counters.check(cx)?;
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &written
            && *n > 0
        {
            self.counters.sent(*n, Instant::now());
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.counters.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A cut connection is closed already, as far as anyone will know.
        if self.counters.check(cx).is_err() {
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        if !this.shut {
            std::task::ready!(Pin::new(&mut this.inner).poll_close(cx))?;
            this.shut = true;
            let now = this.counters.stamp(Instant::now());
            this.counters.lingering.store(now, Ordering::Relaxed);
        }
        let mut buf = [0; 4096];
        loop {
            match std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                Ok(0) | Err(_) => return Poll::Ready(Ok(())),
                Ok(n) => this.counters.received(n, Instant::now()),
            }
        }
    }
}

/// New connections' counters, waiting for the swarm to name their connection.
#[derive(Debug, Clone, Default)]
pub(super) struct Pending(Arc<Mutex<Waiting>>);

/// Meters of new connections by peer and direction (`true`: we dialed), oldest first.
type Waiting = HashMap<(PeerId, bool), VecDeque<Weak<Counters>>>;

impl Pending {
    fn register(&self, peer: PeerId, dialer: bool, counters: &Arc<Counters>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = map.entry((peer, dialer)).or_default();
        // Connections refused after their handshake (limits, bans) leave dead entries.
        queue.retain(|c| c.strong_count() > 0);
        queue.push_back(Arc::downgrade(counters));
    }

    /// Takes the counters of the oldest live connection of `peer` in that
    /// direction (`dialer`: we dialed).
    pub(super) fn claim(&self, peer: PeerId, dialer: bool) -> Option<Arc<Counters>> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let queue = map.get_mut(&(peer, dialer))?;
        let found = std::iter::from_fn(|| queue.pop_front()).find_map(|c| c.upgrade());
        if queue.is_empty() {
            map.remove(&(peer, dialer));
        }
        found
    }

    /// Forgets the counters of connections that went away unclaimed.
    pub(super) fn prune(&self) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, queue| {
            queue.retain(|c| c.strong_count() > 0);
            !queue.is_empty()
        });
    }
}

/// yamux, with the connection's byte stream metered and its counters left in [`Pending`].
#[derive(Debug, Clone)]
struct Metered {
    yamux: yamux::Config,
    pending: Pending,
    peer: PeerId,
    dialer: bool,
}

impl Metered {
    fn meter<C>(&self, io: C) -> Counted<C> {
        let counters = Arc::new(Counters::new(Instant::now()));
        self.pending.register(self.peer, self.dialer, &counters);
        Counted::new(io, counters)
    }
}

impl UpgradeInfo for Metered {
    type Info = <yamux::Config as UpgradeInfo>::Info;
    type InfoIter = <yamux::Config as UpgradeInfo>::InfoIter;

    fn protocol_info(&self) -> Self::InfoIter {
        self.yamux.protocol_info()
    }
}

impl<C> InboundConnectionUpgrade<C> for Metered
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = yamux::Muxer<Counted<C>>;
    type Error = io::Error;
    type Future = <yamux::Config as InboundConnectionUpgrade<Counted<C>>>::Future;

    fn upgrade_inbound(self, io: C, info: Self::Info) -> Self::Future {
        let io = self.meter(io);
        self.yamux.upgrade_inbound(io, info)
    }
}

impl<C> OutboundConnectionUpgrade<C> for Metered
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = yamux::Muxer<Counted<C>>;
    type Error = io::Error;
    type Future = <yamux::Config as OutboundConnectionUpgrade<Counted<C>>>::Future;

    fn upgrade_outbound(self, io: C, info: Self::Info) -> Self::Future {
        let io = self.meter(io);
        self.yamux.upgrade_outbound(io, info)
    }
}

/// Builds TCP (`nodelay`) + noise + metered yamux, each connection's counters
/// left in `pending`.
///
/// # Errors
///
/// noise refuses the key.
pub(super) fn tcp(
    key: &identity::Keypair,
    pending: Pending,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(key)?;
    Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex_ext(move |peer: &PeerId, endpoint: &ConnectedPoint| Metered {
            yamux: yamux::Config::default(),
            pending: pending.clone(),
            peer: *peer,
            dialer: endpoint.is_dialer(),
        })
        .timeout(HANDSHAKE_TIMEOUT)
        .boxed())
}

#[cfg(test)]
mod tests {
    use libp2p::core::muxing::StreamMuxerExt;

    use super::*;

    fn header(kind: u8, length: u32) -> Vec<u8> {
        let mut h = vec![0, kind, 0, 0, 0, 0, 0, 1];
        h.extend_from_slice(&length.to_be_bytes());
        h
    }

    #[test]
    fn frames_skip_data_bodies_and_find_a_go_away_split_anywhere() {
        let mut stream = header(YAMUX_DATA, 5);
        // A body that looks like a GoAway header must not be taken for one.
        stream.extend_from_slice(&[0, YAMUX_GO_AWAY, 0, 0, 0]);
        stream.extend(header(1, 256 * 1024)); // window update: no body
        stream.extend(header(2, 7)); // ping: no body
        let go_away = header(YAMUX_GO_AWAY, 0);
        for split in 0..=stream.len() {
            let mut frames = Frames::default();
            assert!(!frames.feed(&stream[..split]));
            assert!(!frames.feed(&stream[split..]), "split at {split}");
            for byte in &go_away[..11] {
                assert!(!frames.feed(std::slice::from_ref(byte)));
            }
            assert!(frames.feed(&go_away[11..]), "the GoAway, byte by byte");
        }
    }

    #[test]
    fn counters_keep_the_latest_times_and_sum_the_bytes() {
        let start = Instant::now();
        let c = Counters::new(start);
        assert_eq!((c.last_recv(), c.last_send(), c.bytes_recv()), (None, None, 0));
        c.received(10, start + Duration::from_secs(2));
        c.received(5, start + Duration::from_secs(1));
        c.sent(3, start);
        assert_eq!(c.bytes_recv(), 15);
        assert_eq!(c.last_recv(), Some(start + Duration::from_secs(2)));
        assert_eq!(c.last_send(), Some(start));
    }

    type Muxer = yamux::Muxer<Counted<tokio_util::compat::Compat<tokio::net::TcpStream>>>;

    /// Two ends of yamux over a loopback TCP connection, each metered.
    async fn pair() -> ((Muxer, Arc<Counters>), (Muxer, Arc<Counters>)) {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (a, (b, _)) = (a.expect("connects"), b.expect("accepts"));
        let (ca, cb) =
            (Arc::new(Counters::new(Instant::now())), Arc::new(Counters::new(Instant::now())));
        let info = "/yamux/1.0.0";
        let yamux = yamux::Config::default();
        let ma = yamux.clone().upgrade_outbound(Counted::new(a.compat(), ca.clone()), info);
        let mb = yamux.upgrade_inbound(Counted::new(b.compat(), cb.clone()), info);
        ((ma.await.expect("yamux"), ca), (mb.await.expect("yamux"), cb))
    }

    /// Polls `muxer` for inbound streams until it fails; returns the error.
    async fn until_closed(muxer: &mut Muxer) -> io::Error {
        loop {
            match futures::future::poll_fn(|cx| muxer.poll_inbound_unpin(cx)).await {
                Ok(_) => continue,
                Err(e) => return e.into(),
            }
        }
    }

    #[tokio::test]
    async fn a_peer_that_closes_says_goodbye_and_one_that_vanishes_does_not() {
        let ((a, _), (mut b, counters)) = pair().await;
        let (closed, _) = tokio::join!(a.close(), until_closed(&mut b));
        closed.expect("a graceful close");
        assert!(counters.goodbye(), "the GoAway was seen: {counters:?}");
        assert!(!counters.ended(), "yamux stops reading at the GoAway");
        assert!(counters.bytes_recv() >= 12 && counters.last_recv().is_some());

        let ((a, _), (mut b, counters)) = pair().await;
        drop(a);
        until_closed(&mut b).await;
        assert!(counters.ended() && !counters.goodbye(), "an end without a goodbye");
    }

    #[tokio::test]
    async fn a_cut_connection_fails_at_once_even_when_its_peer_is_silent() {
        let ((mut a, counters), (_silent, _)) = pair().await;
        let waiting = tokio::spawn(async move { until_closed(&mut a).await });
        tokio::task::yield_now().await;
        counters.abort();
        let error = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the cut wakes the connection")
            .expect("the task ends");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted, "{error}");
    }

    #[tokio::test]
    async fn a_close_waits_for_the_peer_to_close_its_side_until_it_is_cut() {
        let ((a, counters), (_silent, _)) = pair().await;
        let closing = tokio::spawn(a.close());
        let start = Instant::now();
        while counters.lingering().is_none() {
            assert!(start.elapsed() < Duration::from_secs(10), "our side never shut");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!closing.is_finished(), "it waits for the silent peer");
        counters.abort();
        let closed = tokio::time::timeout(Duration::from_secs(10), closing).await;
        closed.expect("the cut ends the wait").expect("the task ends").expect("closed");
    }
}
