//! The [`Backend`] for a live cluster: its nodes' addresses and bus ports come from
//! discovery. With access `none` it can do nothing on their hosts: faults that would
//! need to (kill, pause, partitions, delay) are refused when the scenario is loaded
//! ([`super::fault_refusal`]), so the refusals here are a second line, worded for a
//! person. With access `ssh` ([`SshAccess`]) commands run on each node's host through
//! the hosts file's SSH destination, and every change a fault makes there is in the
//! run's ledger and the host's ([`super::remote`]) before it is made, with a dead-man
//! revert armed on the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use faultline_nemeses::HostChange;

use super::discover::Target;
use super::hosts::{HostEntry, HostsFile};
use super::remote::{self, Change};
use super::ssh::{self, Dest};
use crate::backend::node::NodeFiles;
use crate::backend::{Backend, BackendPlan, NodeSpec};
use crate::ledger::{Ledger, RunId};

/// The local ledger's kind for the run's ssh socket directory.
const SOCKETS: &str = "ssh_sockets";
/// The local ledger's kind for changes made on hosts (`<seq> <node> <change>`).
const CHANGES: &str = "live_changes";

/// A live cluster's nodes.
pub struct LiveBackend {
    specs: Vec<NodeSpec>,
    bus_ports: Vec<Option<u16>>,
    seeds: String,
    ssh: Option<SshAccess>,
}

/// Access `ssh`: the nodes' hosts, and the changes in force on them.
struct SshAccess {
    run_id: RunId,
    dir: PathBuf,
    dests: Vec<Dest>,
    entries: Vec<HostEntry>,
    next_seq: u64,
    /// Changes guarded and not yet released: (seq, node, change).
    held: Vec<(u64, usize, Change)>,
    ledger: Ledger,
    torn_down: bool,
}

impl LiveBackend {
    /// The backend for a cluster that passed the preflight; with access `ssh`, the
    /// run's ledger is written and every host is reached once (shared connections).
    ///
    /// # Errors
    /// With access `ssh`: an unusable hosts file, a node without an entry, a host that
    /// cannot be reached, or no `iptables` there.
    pub fn new(target: &Target, run_id: &RunId, run_dir: &Path) -> Result<LiveBackend> {
        let ssh = match (&target.spec.access, &target.spec.hosts_file) {
            (super::AccessLevel::Ssh, Some(file)) => {
                Some(SshAccess::open(target, file, run_id, run_dir)?)
            }
            _ => None,
        };
        Ok(LiveBackend {
            specs: target.specs(),
            bus_ports: target.nodes.iter().map(|n| n.bus_port).collect(),
            seeds: target.spec.seeds.join(","),
            ssh,
        })
    }

    fn refuse(&self, node: usize, what: &str) -> Result<()> {
        bail!(
            "{} is a node of a live cluster reached with access none: faultline cannot {what} it",
            self.specs[node].name
        )
    }

    fn ssh(&mut self, node: usize, what: &str) -> Result<&mut SshAccess> {
        if self.ssh.is_none() {
            self.refuse(node, what)?;
        }
        Ok(self.ssh.as_mut().expect("checked"))
    }

    /// The server's pid as it says itself (`INFO server`'s `process_id`).
    fn server_pid(&self, node: usize) -> Result<u32> {
        let addr = self.specs[node].addr();
        let client = faultline_workloads::access::client(&addr)
            .with_context(|| format!("{addr}: client"))?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .with_context(|| format!("{}: connecting for INFO server", self.specs[node].name))?;
        let _ = con.set_read_timeout(Some(Duration::from_secs(5)));
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut con)
            .with_context(|| format!("{}: INFO server", self.specs[node].name))?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| anyhow!("{}: INFO server has no process_id", self.specs[node].name))
    }
}

/// How long a change may hold before its dead-man reverts it: the step's hold (the
/// fault's duration) plus [`remote::MARGIN`].
fn bound_now() -> Duration {
    faultline_nemeses::fault::hold() + remote::MARGIN
}

impl SshAccess {
    fn open(target: &Target, file: &Path, run_id: &RunId, run_dir: &Path) -> Result<SshAccess> {
        let hosts = HostsFile::load(file).map_err(|e| anyhow!("{e}"))?;
        let addrs: Vec<String> = target.nodes.iter().map(|n| n.addr.clone()).collect();
        super::hosts::check_covers(&hosts, file, &addrs)?;
        let dir = ssh::socket_dir(run_id.as_str());
        let mut ledger = Ledger::create(run_id.clone(), run_dir, false)?;
        ledger.record(SOCKETS, &dir.display().to_string())?;
        let entries: Vec<HostEntry> = addrs
            .iter()
            .map(|a| hosts.entry(a).expect("checked").clone())
            .collect();
        let dests: Vec<Dest> = entries.iter().map(|e| Dest::new(&hosts, e, &dir)).collect();
        let access = SshAccess {
            run_id: run_id.clone(),
            dir,
            dests,
            entries,
            next_seq: 1,
            held: Vec::new(),
            ledger,
            torn_down: false,
        };
        for (d, n) in access.dests.iter().zip(&target.nodes) {
            d.sh("command -v iptables >/dev/null || { echo 'iptables is not installed' >&2; exit 1; }", None)
                .with_context(|| format!("{} ({}): reaching its host over ssh", n.name, n.addr))?;
        }
        Ok(access)
    }

    /// Writes `change` down here and on the node's host and arms its dead-man.
    fn guard(&mut self, node: usize, change: Change, bound: Duration) -> Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let dest = &self.dests[node];
        self.ledger
            .record(CHANGES, &format!("{seq} {} {}", dest.node, change.line()))?;
        let start = self.entries[node].start_command();
        let script =
            remote::guard_script(self.run_id.as_str(), seq, &dest.node, &change, bound, start);
        // Held before the command: a failure half-way must still be released.
        self.held.push((seq, node, change));
        dest.sh(&script, None)?;
        Ok(())
    }

    /// Releases the newest change of the node equal to `change` (all of them with
    /// `None`), undoing what is left of it when `undo` and no other holds the same thing.
    fn release(&mut self, node: usize, change: Option<&Change>, undo: bool) -> Result<()> {
        let picked: Vec<usize> = self
            .held
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, (_, n, c))| *n == node && change.is_none_or(|w| same(w, c)))
            .map(|(i, _)| i)
            .take(if change.is_some() { 1 } else { usize::MAX })
            .collect();
        let mut errors = Vec::new();
        for i in picked {
            let (seq, _, c) = self.held.remove(i);
            let last = !self
                .held
                .iter()
                .any(|(_, n, other)| *n == node && same(&c, other));
            let text = if undo && last {
                c.revert(self.entries[node].start_command())
            } else {
                String::new()
            };
            let script = remote::release_script(self.run_id.as_str(), seq, &text);
            if let Err(e) = self.dests[node].sh(&script, None) {
                errors.push(format!("{e:#}"));
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        Ok(())
    }

    /// Undoes and releases every change still held, closes the shared connections and
    /// removes the run's ledger when nothing is left.
    fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        let mut errors = Vec::new();
        // Servers back first, then the network.
        let mut order: Vec<(u64, usize, Change)> = self.held.clone();
        order.sort_by_key(|(seq, _, c)| {
            (!matches!(c, Change::Killed | Change::Stopped { .. }), *seq)
        });
        for (_, node, c) in order {
            if let Err(e) = self.release(node, Some(&c), true) {
                errors.push(format!("{}: {e:#}", self.dests[node].node));
            }
        }
        ssh::close_dir(&self.dir);
        self.torn_down = true;
        if errors.is_empty() {
            self.ledger.remove();
            Ok(())
        } else {
            bail!(
                "changes left on live hosts: {}; `faultline clean --live HOSTS` reverts them",
                errors.join("; ")
            )
        }
    }
}

impl Drop for SshAccess {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("faultline: {e:#}");
        }
    }
}

/// Changes that are the same thing on a host (a pid is the same stop whatever its seq).
fn same(a: &Change, b: &Change) -> bool {
    a == b
}

/// [`crate::ledger::Remover`] for what a live run lists: closes its ssh masters; the
/// changes it made on hosts revert by their dead-men, or by `faultline clean --live`.
pub fn remove_listed(ledger: &Ledger) -> Vec<String> {
    let mut done = Vec::new();
    for dir in ledger.listed(SOCKETS) {
        done.extend(ssh::close_dir(Path::new(dir)));
    }
    let changes = ledger.listed(CHANGES);
    if !changes.is_empty() {
        done.push(format!(
            "made {} change(s) on live hosts over ssh; their dead-men revert them on the \
             hosts, and `faultline clean --live HOSTS_FILE` reverts what is left",
            changes.len()
        ));
    }
    done
}

fn to_change(change: &HostChange) -> Change {
    match change {
        HostChange::Chain { chain, hook } => Change::Chain {
            chain: chain.clone(),
            hook: hook.to_string(),
        },
        HostChange::Qdisc => Change::Qdisc,
    }
}

impl Backend for LiveBackend {
    fn nodes(&self) -> &[NodeSpec] {
        &self.specs
    }

    /// Access ssh: the host's start command (or restart), then the kill's change is
    /// released.
    fn start(&mut self, node: usize) -> Result<()> {
        let ssh = self.ssh(node, "start")?;
        let Some(cmd) = ssh.entries[node].start_command().map(String::from) else {
            bail!(
                "{}: the hosts file gives no `restart` (or `start`) command",
                ssh.entries[node].node
            );
        };
        ssh.dests[node].sh(&cmd, None)?;
        ssh.release(node, Some(&Change::Killed), false)
    }

    fn exited(&mut self) -> Option<String> {
        None
    }

    /// Access ssh: the host's `stop` command, or SIGKILL to the pid `INFO server` gives;
    /// written down with its dead-man (the start command) first.
    fn kill(&mut self, node: usize) -> Result<()> {
        self.ssh(node, "kill")?;
        let pid = self.server_pid(node)?;
        let ssh = self.ssh.as_mut().expect("checked");
        if ssh.entries[node].start_command().is_none() {
            bail!(
                "{}: the hosts file gives no `restart` (or `start`) command, so a killed \
                 server could not come back",
                ssh.entries[node].node
            );
        }
        ssh.guard(node, Change::Killed, bound_now())?;
        let result = match ssh.entries[node].stop.clone() {
            Some(cmd) => ssh.dests[node].sh(&cmd, None),
            None => ssh.dests[node].sh(&format!("kill -KILL {pid}"), None),
        };
        if let Err(e) = result {
            let _ = ssh.release(node, Some(&Change::Killed), false);
            return Err(e);
        }
        Ok(())
    }

    /// Access ssh: SIGSTOP / SIGCONT to the pid `INFO server` gave at the pause.
    fn pause(&mut self, node: usize, pause: bool) -> Result<()> {
        self.ssh(node, if pause { "pause" } else { "resume" })?;
        if pause {
            let pid = self.server_pid(node)?;
            let ssh = self.ssh.as_mut().expect("checked");
            ssh.guard(node, Change::Stopped { pid }, bound_now())?;
            if let Err(e) = ssh.dests[node].sh(&format!("kill -STOP {pid}"), None) {
                let _ = ssh.release(node, Some(&Change::Stopped { pid }), true);
                return Err(e);
            }
            return Ok(());
        }
        let ssh = self.ssh.as_mut().expect("checked");
        let stopped: Vec<Change> = ssh
            .held
            .iter()
            .filter(|(_, n, c)| *n == node && matches!(c, Change::Stopped { .. }))
            .map(|(_, _, c)| c.clone())
            .collect();
        if stopped.is_empty() {
            bail!("{} is not paused by this run", ssh.entries[node].node);
        }
        for c in stopped {
            ssh.release(node, Some(&c), true)?;
        }
        Ok(())
    }

    fn exec_command(&self, node: usize, argv: &[&str]) -> Vec<String> {
        match &self.ssh {
            Some(ssh) => {
                if let Err(e) = ssh.dests[node].open() {
                    return failing(&format!("{e:#}"));
                }
                ssh.dests[node].command_line(argv)
            }
            None => {
                let mut line = self.netns_exec_prefix(node);
                line.extend(argv.iter().map(|a| a.to_string()));
                line
            }
        }
    }

    fn guard(&mut self, node: usize, change: &HostChange, bound: Duration) -> Result<()> {
        let ssh = self.ssh(node, "change")?;
        // The hold the fault gave, plus the margin.
        ssh.guard(node, to_change(change), bound + remote::MARGIN)
    }

    fn release(&mut self, node: usize, change: &HostChange) -> Result<()> {
        match self.ssh.as_mut() {
            Some(ssh) => ssh.release(node, Some(&to_change(change)), true),
            None => Ok(()),
        }
    }

    /// A prefix that runs nothing and fails saying why (`sh -c` prints its `$0`).
    fn netns_exec_prefix(&self, node: usize) -> Vec<String> {
        crate::backend::refusing_prefix(format!(
            "{} is a node of a live cluster reached with access none: faultline runs no \
             command on its host",
            self.specs[node].name
        ))
    }

    fn host_exec_prefix(&self, node: usize) -> Vec<String> {
        self.netns_exec_prefix(node)
    }

    fn netns_path(&self, _node: usize) -> Option<PathBuf> {
        None
    }

    fn plan(&self) -> Option<&BackendPlan> {
        None
    }

    fn node_files(&self, _node: usize) -> Option<&NodeFiles> {
        None
    }

    fn node_files_mut(&mut self, _node: usize) -> Option<&mut NodeFiles> {
        None
    }

    fn bus_port(&self, node: usize) -> Option<u16> {
        self.bus_ports[node]
    }

    fn announced_bus_port(&self, node: usize) -> Option<u16> {
        self.bus_ports[node]
    }

    /// Access none: nothing of faultline's runs on the hosts. Access ssh: every change
    /// still held is undone and released, the shared connections close.
    fn teardown(&mut self) -> Result<()> {
        match self.ssh.as_mut() {
            Some(ssh) => ssh.teardown(),
            None => Ok(()),
        }
    }

    fn keep_notice(&self) -> String {
        format!(
            "live cluster {}: faultline started nothing there, so there is nothing to keep",
            self.seeds
        )
    }
}

/// A command line that fails saying `why`.
fn failing(why: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "echo \"$0\" >&2; exit 1".into(),
        why.to_string(),
    ]
}
