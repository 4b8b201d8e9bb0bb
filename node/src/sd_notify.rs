//! systemd's readiness protocol (`sd_notify`): tells the service manager that the
//! node is ready or stopping.
//!
//! Owns one thing: sending a state such as `READY=1` as one datagram to the Unix
//! socket named by `$NOTIFY_SOCKET`, which systemd sets for `Type=notify`
//! services (a leading `@` means Linux's abstract namespace). Without the
//! variable it does nothing, so the node behaves the same outside systemd.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// The environment variable systemd sets to its notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`; returns whether it was sent
/// (`false` when the variable is not set).
///
/// # Errors
///
/// The socket cannot be reached.
pub fn notify(state: &str) -> std::io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => {
            notify_to(&socket.to_string_lossy(), state)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Sends `state` to the notification socket `socket` (a path, or `@name` for an
/// abstract socket).
///
/// # Errors
///
/// The socket cannot be reached.
pub fn notify_to(socket: &str, state: &str) -> std::io::Result<()> {
    let sender = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => send_abstract(&sender, name, state),
        None => sender.send_to(state.as_bytes(), Path::new(socket)).map(drop),
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(sender: &UnixDatagram, name: &str, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    sender.send_to_addr(state.as_bytes(), &addr).map(drop)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, name: &str, _: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("abstract notification socket @{name} needs Linux"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn states_arrive_at_a_path_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).expect("binds");
        notify_to(path.to_str().expect("utf-8"), "READY=1").expect("sent");
        notify_to(path.to_str().expect("utf-8"), "STOPPING=1").expect("sent");
        assert_eq!(receive(&receiver), "READY=1");
        assert_eq!(receive(&receiver), "STOPPING=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn states_arrive_at_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tinychain-test-{}", std::process::id());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("a name");
        let receiver = UnixDatagram::bind_addr(&addr).expect("binds");
        notify_to(&format!("@{name}"), "READY=1").expect("sent");
        assert_eq!(receive(&receiver), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nobody");
        assert!(notify_to(path.to_str().expect("utf-8"), "READY=1").is_err());
    }
}
