//! The metrics endpoint: a minimal HTTP/1.1 server answering `GET /metrics`.
//!
//! Owns the TCP listener and its connections, and bounds them: the request head
//! is read up to a size cap and within a deadline, few connections are served
//! at once, and each is closed after one response. It answers `GET /metrics`
//! with the registry in the OpenMetrics text format and every other request
//! with an error status. It knows no metric and touches no node state: before
//! encoding it asks the event loop (over a bounded channel, with a deadline) to
//! refresh the gauges.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The one path served.
pub const PATH: &str = "/metrics";

/// A request to refresh the gauges, answered when they are.
pub type Refresh = oneshot::Sender<()>;

/// Limits of the server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest request head (request line and headers), in bytes.
    pub max_head: usize,
    /// Time a client has to send its request head.
    pub read_timeout: Duration,
    /// Time a client has to take the response.
    pub write_timeout: Duration,
    /// Connections served at once at most; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time the event loop may take to refresh the gauges before a scrape
    /// gets them as last refreshed.
    pub refresh_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_head: 8 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 16,
            refresh_timeout: Duration::from_secs(2),
        }
    }
}

/// Binds the endpoint's listener.
///
/// # Errors
///
/// The address cannot be bound (in use, not local, no permission).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves scrapes until `shutdown` is cancelled; connections still open then are dropped.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    registry: Arc<Registry>,
    refresh: mpsc::Sender<Refresh>,
    shutdown: CancellationToken,
) {
    let config = Arc::new(config);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if connections.len() >= config.max_connections {
            tokio::select! {
                _ = connections.join_next() => continue,
                () = shutdown.cancelled() => break,
            }
        }
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: do not spin on it.
                    warn!(error = %e, "metrics connection not accepted");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let (config, registry, refresh) =
            (Arc::clone(&config), Arc::clone(&registry), refresh.clone());
        connections
            .spawn(async move { serve_connection(stream, &config, &registry, &refresh).await });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    config: &Config,
    registry: &Registry,
    refresh: &mpsc::Sender<Refresh>,
) {
    let reply =
        match tokio::time::timeout(config.read_timeout, read_head(&mut stream, config.max_head))
            .await
        {
            Err(_) => Reply::error(408, "Request Timeout", "request head not received in time"),
            Ok(Err(e)) => {
                debug!(error = %e, "metrics client read failed");
                return;
            }
            Ok(Ok(Head::Closed)) => return,
            Ok(Ok(Head::TooLarge)) => Reply::error(
                431,
                "Request Header Fields Too Large",
                &format!("request head over {} bytes", config.max_head),
            ),
            Ok(Ok(Head::Complete(head))) => match route(&head) {
                Route::Metrics => scrape(registry, refresh, config.refresh_timeout).await,
                Route::Error(reply) => reply,
            },
        };
    let sent = tokio::time::timeout(config.write_timeout, reply.send(&mut stream)).await;
    if !matches!(sent, Ok(Ok(()))) {
        debug!("metrics client did not take the response");
    }
}

/// What reading a request head gave.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head, up to and including the blank line.
    Complete(Vec<u8>),
    /// No blank line within the size cap.
    TooLarge,
    /// The client closed the connection before the blank line.
    Closed,
}

async fn read_head(stream: &mut TcpStream, max_head: usize) -> std::io::Result<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(Head::Closed);
        }
        let searched = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..read]);
        if let Some(end) = head[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            let len = searched + end + 4;
            if len > max_head {
                return Ok(Head::TooLarge);
            }
            head.truncate(len);
            return Ok(Head::Complete(head));
        }
        if head.len() > max_head {
            return Ok(Head::TooLarge);
        }
    }
}

/// Where a request head leads.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics`.
    Metrics,
    /// Anything else, with the answer.
    Error(Reply),
}

/// Reads the request line: `GET /metrics` (a query string is allowed) is
/// served; another method is 405, another path 404, anything unparsable 400.
fn route(head: &[u8]) -> Route {
    let bad = || Route::Error(Reply::error(400, "Bad Request", "not an HTTP/1.x request"));
    let Some(line) = head.split(|b| *b == b'\n').next() else { return bad() };
    let Ok(line) = std::str::from_utf8(line) else { return bad() };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad();
    };
    let is_token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !is_token || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return bad();
    }
    if method != "GET" {
        let mut reply = Reply::error(405, "Method Not Allowed", "only GET is served");
        reply.allow = true;
        return Route::Error(reply);
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != PATH {
        return Route::Error(Reply::error(404, "Not Found", "metrics are at /metrics"));
    }
    Route::Metrics
}

/// Asks the event loop to refresh the gauges (waiting at most `wait`), then encodes.
async fn scrape(registry: &Registry, refresh: &mpsc::Sender<Refresh>, wait: Duration) -> Reply {
    let (done, refreshed) = oneshot::channel();
    // A full queue means refreshes are already on their way; a closed one, no event loop.
    if refresh.try_send(done).is_ok() {
        let _ = tokio::time::timeout(wait, refreshed).await;
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => {
            Reply { status: 200, reason: "OK", content_type: CONTENT_TYPE, body, allow: false }
        }
        Err(e) => Reply::error(500, "Internal Server Error", &format!("cannot encode: {e}")),
    }
}

/// A response, sent with `Connection: close`.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    /// Adds `Allow: GET` (to a 405).
    allow: bool,
}

impl Reply {
    fn error(status: u16, reason: &'static str, message: &str) -> Reply {
        let body = format!("{message}\n");
        Reply { status, reason, content_type: "text/plain; charset=utf-8", body, allow: false }
    }

    /// Writes the response and closes the connection.
    async fn send(&self, stream: &mut TcpStream) -> std::io::Result<()> {
        let allow = if self.allow { "Allow: GET\r\n" } else { "" };
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(self.body.as_bytes()).await?;
        stream.shutdown().await?;
        // Closing with unread bytes (the rest of an oversized head) would reset
        // the connection and could lose the response: read a little first.
        let mut sink = [0u8; 1024];
        for _ in 0..64 {
            if stream.read(&mut sink).await? == 0 {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        let status = |head: &[u8]| match route(head) {
            Route::Metrics => 200,
            Route::Error(reply) => reply.status,
        };
        assert_eq!(status(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
        assert_eq!(status(b"GET /metrics?name[]=up HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status(b"GET /metricsx HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status(b"POST /metrics HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(b"HEAD /metrics HTTP/1.1\r\n\r\n"), 405);
        for garbage in [
            &b"\r\n\r\n"[..],
            b"hello\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"get /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(status(garbage), 400, "{:?}", String::from_utf8_lossy(garbage));
        }
        let Route::Error(reply) = route(b"PUT /metrics HTTP/1.1\r\n\r\n") else { panic!("405") };
        assert!(reply.allow);
    }

    /// A server on 127.0.0.1 (port 0) with one gauge, which the fake event
    /// loop sets to the number of refreshes asked for.
    async fn server(config: Config) -> (SocketAddr, CancellationToken) {
        let mut registry = Registry::default();
        let refreshes: Gauge = Gauge::default();
        registry.register("refreshes", "Refreshes done", refreshes.clone());
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let (refresh, mut asked) = mpsc::channel::<Refresh>(4);
        tokio::spawn(async move {
            while let Some(done) = asked.recv().await {
                refreshes.inc();
                let _ = done.send(());
            }
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, config, Arc::new(registry), refresh, shutdown.clone()));
        (addr, shutdown)
    }

    /// Sends `request` and returns the whole response.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        stream.write_all(request).await.expect("sends");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("reads");
        String::from_utf8(response).expect("UTF-8")
    }

    #[tokio::test]
    async fn a_scrape_refreshes_the_gauges_and_gets_openmetrics_text() {
        let (addr, shutdown) = server(Config::default()).await;
        let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        let (head, body) = response.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
        assert!(head.contains("Connection: close"), "{head}");
        assert!(body.contains("\nrefreshes 1\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        let again = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(again.contains("\nrefreshes 2\n"), "{again}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn bad_requests_get_error_statuses() {
        let (addr, shutdown) = server(Config::default()).await;
        let status = |r: &str| r.lines().next().unwrap_or_default().to_owned();
        let garbage = exchange(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").await;
        assert_eq!(status(&garbage), "HTTP/1.1 400 Bad Request");
        let other = exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert_eq!(status(&other), "HTTP/1.1 404 Not Found");
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
        assert!(post.contains("Allow: GET\r\n"), "{post}");
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 9 * 1024));
        huge.extend(b"\r\n\r\n");
        let refused = exchange(addr, &huge).await;
        assert_eq!(status(&refused), "HTTP/1.1 431 Request Header Fields Too Large");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_silent_client_times_out_and_shutdown_stops_the_server() {
        let config = Config { read_timeout: Duration::from_millis(100), ..Config::default() };
        let (addr, shutdown) = server(config).await;
        let slow = exchange(addr, b"GET /metrics HTTP/1.1\r\n").await;
        assert!(slow.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{slow}");
        shutdown.cancel();
        // The listener is dropped once the server sees the cancellation.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still listening");
            tokio::task::yield_now().await;
        }
    }
}
