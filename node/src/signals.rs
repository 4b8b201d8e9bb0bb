//! Signals: SIGINT and SIGTERM stop the node cleanly, a second one (or a
//! shutdown that overruns its limit) ends the process at once.
//!
//! Owns the signal handlers and the shutdown watchdog; the event loop only
//! watches the cancellation token they cancel.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Longest a shutdown may take before the process exits anyway.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// Installs the SIGINT and SIGTERM handlers now (so a signal during start-up is
/// not lost to the default action, which PID 1 in a container would not get)
/// and watches them for the whole run: the first cancels `shutdown`; a second
/// signal, or a shutdown still running after [`SHUTDOWN_LIMIT`], ends the
/// process at once.
///
/// The watcher stops when the returned guard drops (at the end of `node::run`), so
/// a node run inside a longer-lived process (tests, benchmarks) never ends it.
pub fn watch(shutdown: CancellationToken) -> anyhow::Result<AbortOnDrop> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    Ok(AbortOnDrop(tokio::spawn(async move {
        loop {
            let overdue = async {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_LIMIT).await;
            };
            // Exit codes as a shell reports death by the signal: 128 + its number.
            let (name, code) = tokio::select! {
                _ = interrupt.recv() => ("SIGINT", 130),
                _ = terminate.recv() => ("SIGTERM", 143),
                () = overdue => {
                    error!(limit = ?SHUTDOWN_LIMIT, "shutdown is taking too long: exiting now");
                    std::process::exit(1);
                }
            };
            if shutdown.is_cancelled() {
                warn!(signal = name, "second signal: exiting at once");
                std::process::exit(code);
            }
            info!(signal = name, "signal received: stopping (a second signal exits at once)");
            shutdown.cancel();
        }
    })))
}

/// Aborts a task when dropped.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
