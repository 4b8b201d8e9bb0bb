//! A link that stalls: two nodes joined through a relay that stops passing
//! bytes on command, as a cut cable does, while both sockets stay open (so no
//! error ever reaches either node: only the liveness rules can notice).
//!
//! The nodes' log lines are read as the node writes them (its JSON format),
//! told apart by their `node` field.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde_json::Value;
use tinychain_node::log::{self, LogFormat};
use tinychain_protocol::params::Network;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, tcp};
use tokio::sync::watch;

use super::{DEADLINE, TestNode, runtime};

/// The liveness bound of these nodes: short, so the test is quick.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Every log line of this process, as written (one subscriber per process).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Logs {
    type Writer = Logs;

    fn make_writer(&'w self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// Starts capturing this process's log lines (once).
    fn capture() -> Logs {
        static LOGS: OnceLock<Logs> = OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = Logs::default();
            let subscriber = log::subscriber("info", LogFormat::Json, false, logs.clone());
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other subscriber in this test process");
            logs
        })
        .clone()
    }

    /// Returns the JSON lines written by node `node` so far.
    fn of(&self, node: &str) -> Vec<Value> {
        let bytes = self.0.lock().expect("not poisoned").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("every line is one JSON object"))
            .filter(|l| l["node"] == node)
            .collect()
    }

    /// Waits for node `node`'s first line with `message` that `matches`.
    fn wait(&self, node: &str, message: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(line) =
                self.of(node).into_iter().find(|l| l["message"] == message && matches(l))
            {
                return line;
            }
            assert!(start.elapsed() < DEADLINE, "no {message:?} from {node} within {DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A TCP relay to one address that can stop passing bytes (holding them),
/// either way or both, and resume.
struct Relay {
    addr: SocketAddr,
    /// Bytes towards the target stop; bytes back from it stop.
    stalled: [watch::Sender<bool>; 2],
}

impl Relay {
    /// Starts a relay to `target`; an end that closes is passed on to the
    /// other if `pass_closes`, else the other end is held open, as a dead link
    /// tells nobody anything.
    async fn start(target: SocketAddr, pass_closes: bool) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let (to_target, to_watch) = watch::channel(false);
        let (back, back_watch) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(target).await else { continue };
                let (from_in, to_in) = inbound.into_split();
                let (from_out, to_out) = outbound.into_split();
                tokio::spawn(pipe(from_in, to_out, to_watch.clone(), pass_closes));
                tokio::spawn(pipe(from_out, to_in, back_watch.clone(), pass_closes));
            }
        });
        Relay { addr, stalled: [to_target, back] }
    }

    /// Stops (or lets through again) the bytes towards the target and back from it.
    fn stall(&self, to_target: bool, back: bool) {
        self.stalled[0].send_replace(to_target);
        self.stalled[1].send_replace(back);
    }
}

async fn pipe(
    mut from: tcp::OwnedReadHalf,
    mut to: tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
    pass_closes: bool,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Stalled: the bytes wait here, and the sender's socket fills up behind them.
        if stalled.wait_for(|s| !*s).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    if pass_closes {
        let _ = to.shutdown().await;
    } else {
        // Dropping `to` would close it.
        std::future::pending::<()>().await;
    }
}

fn tcp_addr(addr: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::from((ip.expect("an ip4 address"), port.expect("a tcp port")))
}

fn start(rt: &tokio::runtime::Runtime, bootstrap: Vec<Multiaddr>) -> TestNode {
    TestNode::start_with(rt, Network::Regtest, bootstrap, |config| {
        config.p2p.peer_timeout = PEER_TIMEOUT;
    })
}

fn unix_now() -> u64 {
    tinychain_node::node::unix_now()
}

#[test]
fn a_stalled_link_is_closed_on_both_sides_and_the_nodes_reconnect_when_it_moves_again() {
    let logs = Logs::capture();
    let rt = runtime();
    let a = start(&rt, Vec::new());
    let relay = rt.block_on(Relay::start(tcp_addr(&a.addr), true));
    let via: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", relay.addr.port(), a.peer_id)
        .parse()
        .expect("a multiaddr");
    let b = start(&rt, vec![via.clone()]);

    // Connected through the relay, with getpeerinfo's connection facts.
    let link = b.wait_for("b to hear from a through the relay", |b| {
        b.peers().into_iter().find(|p| {
            p["id"] == a.peer_id.as_str()
                && p["address"] == via.to_string()
                && p["bytes_recv"].as_u64().is_some_and(|n| n > 0)
                && p["last_recv"].is_u64()
        })
    });
    assert_eq!(link["connections"], 1, "{link}");
    assert!(link["bytes_sent"].as_u64().is_some_and(|n| n > 0), "{link}");
    for key in ["last_recv", "last_send"] {
        let t = link[key].as_u64().expect("unix seconds");
        assert!(t.abs_diff(unix_now()) <= 60, "{key} {t} is about now: {link}");
    }
    assert!(link["ping_wait_ms"].is_null() || link["ping_wait_ms"].is_f64(), "{link}");
    let peer_is = |peer: &str| {
        let peer = peer.to_owned();
        move |l: &Value| l["peer"] == peer.as_str()
    };
    let on_b = logs.wait(&b.peer_id, "connection established", peer_is(&a.peer_id));
    let on_a = logs.wait(&a.peer_id, "connection established", peer_is(&b.peer_id));
    assert_eq!((&on_b["direction"], &on_b["bootstrap"]), (&"outbound".into(), &true.into()));
    assert_eq!((&on_a["direction"], &on_a["bootstrap"]), (&"inbound".into(), &false.into()));
    let (id_b, id_a) = (on_b["connection_id"].clone(), on_a["connection_id"].clone());
    assert!(id_b.is_u64() && id_a.is_u64(), "{on_b} {on_a}");
    let made = a.generate(2);
    b.wait_for_tip(made.last().expect("two blocks"));

    relay.stall(true, true);
    let stalled = Instant::now();
    let closed_b = logs.wait(&b.peer_id, "connection closed", |l| l["connection_id"] == id_b);
    let closed_a = logs.wait(&a.peer_id, "connection closed", |l| l["connection_id"] == id_a);
    let first_close = stalled.elapsed();
    for closed in [&closed_b, &closed_a] {
        let reason = closed["reason"].as_str().expect("a reason");
        assert!(reason == "inactivity" || reason == "ping timeout", "{closed}");
        assert!(closed["connections_left"].is_u64(), "{closed}");
    }
    // Not before the bound less a ping interval (the last byte came at most that early).
    assert!(first_close >= PEER_TIMEOUT * 3 / 5, "closed after {first_close:?}");
    // The stale connection is gone from getpeerinfo.
    assert!(b.peers().iter().all(|p| p["address"] != via.to_string()), "{:?}", b.peers());

    // Moving again, the nodes are connected again (through the relay, or
    // directly: b learned a's own address) and follow each other.
    relay.stall(false, false);
    let made = a.generate(3);
    b.wait_for_tip(made.last().expect("three blocks"));
    logs.wait(&b.peer_id, "connection established", |l| {
        l["peer"] == a.peer_id.as_str() && l["connection_id"] != id_b
    });
}

#[test]
fn a_link_dead_one_way_is_closed_by_the_pings_that_get_no_answer() {
    let logs = Logs::capture();
    let rt = runtime();
    let a = start(&rt, Vec::new());
    let relay = rt.block_on(Relay::start(tcp_addr(&a.addr), false));
    let via: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", relay.addr.port(), a.peer_id)
        .parse()
        .expect("a multiaddr");
    let b = start(&rt, vec![via]);
    let on_a = logs.wait(&a.peer_id, "connection established", |l| l["peer"] == b.peer_id.as_str());
    let on_b = logs.wait(&b.peer_id, "connection established", |l| l["peer"] == a.peer_id.as_str());

    // Nothing from A reaches B any more; B still reaches A. A keeps hearing
    // B (its pings), but its own pings get no answer.
    relay.stall(false, true);
    let closed_a =
        logs.wait(&a.peer_id, "connection closed", |l| l["connection_id"] == on_a["connection_id"]);
    let closed_b =
        logs.wait(&b.peer_id, "connection closed", |l| l["connection_id"] == on_b["connection_id"]);
    assert_eq!(closed_a["reason"], "ping timeout", "{closed_a}");
    // B hears nothing at all: its silence rule or its ping rule, whichever is first.
    let reason = closed_b["reason"].as_str().expect("a reason");
    assert!(reason == "inactivity" || reason == "ping timeout", "{closed_b}");
}
