//! The orchestrator's side of faults: [`faultline_nemeses::Control`] over a backend.

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{anyhow, Context, Result};
use faultline_nemeses::{Control, NodeInfo};

use crate::backend::Backend;
pub use crate::backend::BUS_OFFSET;

/// Lets faults kill, pause, restart nodes and run commands in their namespaces, through
/// the run's backend, which the orchestrator shares with it.
pub struct BackendControl {
    run_id: String,
    nodes: Vec<NodeInfo>,
    backend: Arc<Mutex<Box<dyn Backend>>>,
}

impl BackendControl {
    /// Controls for the nodes of `backend`.
    pub fn new(run_id: &str, backend: Arc<Mutex<Box<dyn Backend>>>) -> BackendControl {
        let guard = lock(&backend);
        let nodes = guard
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, n)| NodeInfo {
                name: n.name.clone(),
                ip: n.ip,
                port: n.port,
                // Through the bus proxy, peers reach a node at its announced bus port:
                // that is the port a `ports: bus` partition must cut.
                // Garnet gossips on its client port (`Backend::bus_port`).
                bus_port: guard
                    .announced_bus_port(i)
                    .unwrap_or_else(|| guard.bus_port(i).unwrap_or(n.port + BUS_OFFSET)),
            })
            .collect();
        drop(guard);
        BackendControl {
            run_id: run_id.to_string(),
            nodes,
            backend,
        }
    }

    fn index(&self, node: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| anyhow!("no node named {node:?}"))
    }
}

/// Locks the shared backend; a panic elsewhere does not make it unusable for teardown.
pub fn lock(backend: &Mutex<Box<dyn Backend>>) -> MutexGuard<'_, Box<dyn Backend>> {
    backend.lock().unwrap_or_else(|p| p.into_inner())
}

impl Control for BackendControl {
    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    fn kill(&self, node: &str) -> Result<()> {
        let i = self.index(node)?;
        lock(&self.backend).kill(i)
    }

    fn restart(&self, node: &str) -> Result<()> {
        let i = self.index(node)?;
        lock(&self.backend).start(i)
    }

    fn pause(&self, node: &str) -> Result<()> {
        let i = self.index(node)?;
        lock(&self.backend).pause(i, true)
    }

    fn resume(&self, node: &str) -> Result<()> {
        let i = self.index(node)?;
        lock(&self.backend).pause(i, false)
    }

    fn exec_in_netns(
        &self,
        node: &str,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String> {
        let i = self.index(node)?;
        // Only the command line is made under the lock: commands in several namespaces
        // overlap.
        let mut argv = vec![program];
        argv.extend_from_slice(args);
        let line = lock(&self.backend).exec_command(i, &argv);
        let rest: Vec<&str> = line[1..].iter().map(String::as_str).collect();
        crate::sys::run_with_stdin(&line[0], &rest, stdin)
    }

    fn guard(
        &self,
        node: &str,
        change: &faultline_nemeses::HostChange,
        bound: std::time::Duration,
    ) -> Result<()> {
        let i = self.index(node)?;
        lock(&self.backend).guard(i, change, bound)
    }

    fn release(&self, node: &str, change: &faultline_nemeses::HostChange) -> Result<()> {
        let i = self.index(node)?;
        lock(&self.backend).release(i, change)
    }

    fn spawn_in_netns(
        &self,
        node: &str,
        program: &str,
        args: &[&str],
    ) -> Result<std::process::Child> {
        use std::process::{Command, Stdio};
        let i = self.index(node)?;
        let prefix = lock(&self.backend).netns_exec_prefix(i);
        let mut cmd = Command::new(&prefix[0]);
        cmd.args(&prefix[1..])
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().with_context(|| {
            format!(
                "could not run `{}` (is it installed? try `faultline doctor`)",
                prefix[0]
            )
        })?;
        // Like the thread that fires it, the installer should not wait for a time slice
        // behind the workload at the fault's instant. Set from here, not between fork and
        // exec: a `pre_exec` hook would make every spawn a full fork of faultline, which
        // on 30 nodes under load took longer than the lead.
        crate::sys::raise_priority(child.id() as i32);
        Ok(child)
    }

    fn loopback(&self) -> bool {
        lock(&self.backend).shares_host_network()
    }

    fn netns_path(&self, node: &str) -> Result<std::path::PathBuf> {
        let i = self.index(node)?;
        lock(&self.backend)
            .netns_path(i)
            .ok_or_else(|| anyhow!("{node} has no network namespace on this machine"))
    }
}
