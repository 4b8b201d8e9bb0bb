//! Hosts for multi-host tests: Linux network namespaces joined by a bridge.
//!
//! Owns building a small LAN on one machine: a "switch" namespace holding one
//! or two bridges, and one namespace per host with its own `eth0` and address
//! (10.99.0.1, 10.99.0.2, ...) cabled to the switch by a veth pair. It can cut a
//! host off (its cable goes down), cut the link between two hosts (each drops
//! what it sends the other), split the hosts into two groups (the second group's
//! cables move to another bridge) and heal. Everything is removed when
//! the [`Lab`] drops. Each lab lives in its own namespaces, so labs of tests
//! running in parallel never see each other.
//!
//! Needs root and `ip` (iproute2). Without them the test fails with a clear
//! message, unless `TINYCHAIN_SKIP_MULTIHOST=1` says to skip.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable that lets multi-host tests skip on a machine
/// without network namespaces.
pub const SKIP_VAR: &str = "TINYCHAIN_SKIP_MULTIHOST";

/// A LAN of `hosts` network namespaces behind one bridge.
pub struct Lab {
    prefix: String,
    hosts: usize,
}

static LABS: AtomicUsize = AtomicUsize::new(0);

/// Runs `ip` with `args`; returns stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Runs `ip` with `args`.
///
/// # Panics
///
/// If it fails: the lab is then unusable.
fn ip_ok(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

impl Lab {
    /// Builds the LAN, or returns `None` if namespaces are unavailable and
    /// [`SKIP_VAR`] is set.
    ///
    /// # Panics
    ///
    /// If namespaces cannot be made (not root, no `ip`) and skipping was not asked for.
    pub fn new(hosts: usize) -> Option<Lab> {
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("tc{}x{n}", std::process::id());
        let lab = Lab { prefix, hosts: 0 };
        if let Err(e) = ip(&["netns", "add", &lab.switch()]) {
            if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
                eprintln!("SKIPPED: multi-host test needs network namespaces ({e}); {SKIP_VAR}=1");
                return None;
            }
            panic!(
                "multi-host tests need root and Linux network namespaces (iproute2's `ip netns`), \
                 and this machine refused: {e}\nRun them as root, or set {SKIP_VAR}=1 to skip them."
            );
        }
        let mut lab = lab;
        let switch = lab.switch();
        for bridge in ["br0", "br1"] {
            ip_ok(&["-n", &switch, "link", "add", bridge, "type", "bridge"]);
            ip_ok(&["-n", &switch, "link", "set", bridge, "up"]);
        }
        for i in 0..hosts {
            let host = lab.netns(i);
            ip_ok(&["netns", "add", &host]);
            lab.hosts = i + 1;
            let cable = format!("v{i}");
            ip_ok(&[
                "-n", &switch, "link", "add", &cable, "type", "veth", "peer", "name", "eth0",
                "netns", &host,
            ]);
            ip_ok(&["-n", &switch, "link", "set", &cable, "master", "br0", "up"]);
            ip_ok(&["-n", &host, "addr", "add", &format!("{}/24", lab.ip(i)), "dev", "eth0"]);
            ip_ok(&["-n", &host, "link", "set", "eth0", "up"]);
            ip_ok(&["-n", &host, "link", "set", "lo", "up"]);
        }
        Some(lab)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// Returns host `i`'s namespace name.
    pub fn netns(&self, i: usize) -> String {
        format!("{}-h{i}", self.prefix)
    }

    /// Returns host `i`'s IPv4 address.
    pub fn ip(&self, i: usize) -> String {
        format!("10.99.0.{}", i + 1)
    }

    /// Returns a command running `program` on host `i`.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns(i)]).arg(program);
        command
    }

    /// Unplugs host `i`'s cable: its packets go nowhere until [`Lab::plug`].
    pub fn unplug(&self, i: usize) {
        ip_ok(&["-n", &self.switch(), "link", "set", &format!("v{i}"), "down"]);
    }

    /// Plugs host `i`'s cable back in.
    pub fn plug(&self, i: usize) {
        ip_ok(&["-n", &self.switch(), "link", "set", &format!("v{i}"), "up"]);
    }

    /// Cuts the one link between hosts `i` and `j`: each drops what it sends the
    /// other (a blackhole route), with no reset or error, until [`Lab::restore`].
    pub fn cut(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            let target = format!("{}/32", self.ip(to));
            ip_ok(&["-n", &self.netns(from), "route", "add", "blackhole", &target]);
        }
    }

    /// Restores the link [`Lab::cut`] cut.
    pub fn restore(&self, i: usize, j: usize) {
        for (from, to) in [(i, j), (j, i)] {
            let target = format!("{}/32", self.ip(to));
            ip_ok(&["-n", &self.netns(from), "route", "del", "blackhole", &target]);
        }
    }

    /// Splits the LAN: `group` moves to a second bridge and sees only itself.
    pub fn split(&self, group: &[usize]) {
        for i in group {
            ip_ok(&["-n", &self.switch(), "link", "set", &format!("v{i}"), "master", "br1"]);
        }
    }

    /// Joins everyone on one bridge again.
    pub fn heal(&self) {
        for i in 0..self.hosts {
            ip_ok(&["-n", &self.switch(), "link", "set", &format!("v{i}"), "master", "br0"]);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth pair, and so the pair.
        for i in 0..self.hosts {
            let _ = ip(&["netns", "del", &self.netns(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}
