//! What a nemesis may do to nodes, implemented by the orchestrator over its backend.
//!
//! Keeping this a trait keeps the fault primitives free of namespaces and containers: the
//! local backend runs `iptables` with `ip netns exec`, a container backend would enter
//! the container's namespace instead, and the faults do not change.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// One node, as faults address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `n1`, `n2`, ...
    pub name: String,
    /// The node's address.
    pub ip: Ipv4Addr,
    /// Client port.
    pub port: u16,
    /// Cluster bus port.
    pub bus_port: u16,
}

impl NodeInfo {
    /// `ip:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// A change a fault makes on a node's host that must not outlive the fault. Faults declare
/// it ([`Control::guard`]) before making it and after undoing it ([`Control::release`]), so
/// that a backend on hosts faultline does not own (a live cluster reached over SSH) can
/// write it down on the host first and arm a revert there that runs even if faultline
/// dies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostChange {
    /// An iptables chain of the run's in table `filter`, hooked from a built-in chain.
    Chain {
        /// `FL-<run id>...`.
        chain: String,
        /// `INPUT` or `OUTPUT`.
        hook: &'static str,
    },
    /// faultline's root `prio` qdisc with its netem bands ([`crate::delay::netem`]), on
    /// whichever device routes to the peers.
    Qdisc,
}

/// The orchestrator's side of faults.
pub trait Control: Send + Sync {
    /// The run's id; rules and chains the faults create carry it.
    fn run_id(&self) -> &str;
    /// The nodes, in name order.
    fn nodes(&self) -> &[NodeInfo];
    /// SIGKILL the node's server (it stays down until [`Control::restart`]).
    ///
    /// # Errors
    /// If the node has no running process or the signal fails.
    fn kill(&self, node: &str) -> anyhow::Result<()>;
    /// Start the node's server again with the same config and data directory.
    ///
    /// # Errors
    /// If it cannot be started.
    fn restart(&self, node: &str) -> anyhow::Result<()>;
    /// SIGSTOP the node's server.
    ///
    /// # Errors
    /// If the signal fails.
    fn pause(&self, node: &str) -> anyhow::Result<()>;
    /// SIGCONT the node's server.
    ///
    /// # Errors
    /// If the signal fails.
    fn resume(&self, node: &str) -> anyhow::Result<()>;
    /// Runs `program args...` inside the node's network namespace, feeding `stdin`, and
    /// returns its stdout.
    ///
    /// # Errors
    /// If it cannot run or exits non-zero (with its stderr).
    fn exec_in_netns(
        &self,
        node: &str,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<String>;
    /// Starts `program args...` inside the node's network namespace with stdin, stdout and
    /// stderr piped, and returns at once: a prepared fault starts the processes that will
    /// install its rules before its instant ([`crate::instant`]) and writes to them at it.
    ///
    /// # Errors
    /// If it cannot be started.
    fn spawn_in_netns(
        &self,
        node: &str,
        program: &str,
        args: &[&str],
    ) -> anyhow::Result<std::process::Child>;
    /// The node's network namespace as a file, for code that works from a thread inside
    /// it (the NFQUEUE delayer): the backend knows where it is (`/run/netns/fl-<id>-<node>`
    /// for the local backend, `/proc/<pid>/ns/net` for a container).
    ///
    /// # Errors
    /// If the node has no network namespace on this machine (a node on another host).
    fn netns_path(&self, node: &str) -> anyhow::Result<PathBuf>;
    /// Declares `change` before a fault makes it on `node`'s host, to be undone within
    /// `bound` should the fault's heal never come. Nothing to do (the default) where
    /// faultline owns the hosts: their namespaces go with the run.
    ///
    /// # Errors
    /// If the change could not be written down or its revert armed: the fault must then
    /// not make it.
    fn guard(&self, _node: &str, _change: &HostChange, _bound: Duration) -> anyhow::Result<()> {
        Ok(())
    }
    /// Declares `change` undone on `node`'s host (after its heal), which removes what is
    /// left of it and disarms its revert; a change never guarded is nothing to do.
    ///
    /// # Errors
    /// If the host could not be reached.
    fn release(&self, _node: &str, _change: &HostChange) -> anyhow::Result<()> {
        Ok(())
    }
    /// Whether every node shares this machine's network stack (`--backend loopback`):
    /// nothing can be run in a node's own namespace, and partitions are cut in the bus
    /// proxy instead of with iptables.
    fn loopback(&self) -> bool {
        false
    }
}
