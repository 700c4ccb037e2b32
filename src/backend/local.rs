//! The local backend: each node is a real server process in its own network namespace,
//! attached to a per-run bridge.
//!
//! Layout for run `abc123` on subnet 10.77.N.0/24:
//!
//! ```text
//! host ns:      flabc123h 10.77.N.1  (the harness's way in)
//!                   |  veth
//! fl-abc123-hub:   up0 -- br0 -- n1, n2, ...      (the bridge lives in its own namespace)
//!                                 |  veth
//! fl-abc123-n1:                  eth0 10.77.N.11  (redis-server / valkey-server)
//! ```
//!
//! The bridge sits in a namespace of its own (see [`super::hub`], shared with the docker
//! backend); deleting the namespaces deletes every link with them.
//!
//! With a root filesystem in the plan (a server version the host lacks), each server is
//! started chrooted into it, in a private mount namespace of its own (see
//! [`super::chroot`]); the network namespace is the same.
//!
//! **Loopback** (`--backend loopback`, [`LocalBackend::create_loopback`]): no namespace,
//! no link, no root. Every node listens on 127.0.0.1 at a client port of the run's own
//! (a free run of ports from a random base in [`LOOPBACK_PORTS`], each with its bus port
//! and the bus proxy's port free too), and the processes are started, killed, paused and
//! reaped exactly as above. Nothing can be run "inside" a node
//! ([`Backend::shares_host_network`]): the run routes the bus through the proxy and cuts
//! partitions there; faults that need a namespace of the node's own are refused when the
//! scenario is read.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Child;

use anyhow::{bail, Context, Result};

use super::chroot::Chroot;
use super::node::NodeFiles;
use super::spawn::Spawn;
use super::{Backend, BackendPlan, NodeSpec};
use crate::ledger::{Ledger, RunId};
use crate::sys;

/// Where `ip netns` keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Where a loopback run's first client port is drawn from (its bus ports are 10000 up,
/// the proxy's 11000 up: all below 41000, under the usual ephemeral range).
pub const LOOPBACK_PORTS: std::ops::Range<u16> = 20000..29000;

/// A node's network namespace as a file: `/run/netns/fl-<id>-<node>`.
pub fn node_netns_path(id: &RunId, node: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(id.node_netns(node))
}

struct LocalNode {
    files: NodeFiles,
    /// The namespace's name (`fl-<id>-<node>`).
    netns: String,
    child: Option<Child>,
    /// Paused by a fault: resumed before a kill or teardown, so signals are delivered.
    paused: bool,
}

/// Nodes as processes in network namespaces on this machine.
pub struct LocalBackend {
    plan: BackendPlan,
    ledger: Ledger,
    nodes: Vec<LocalNode>,
    specs: Vec<NodeSpec>,
    torn_down: bool,
    /// `--backend loopback`: every node on 127.0.0.1, no namespaces.
    loopback: bool,
}

impl LocalBackend {
    /// Creates the run's namespaces, bridge and addresses, and writes each node's config.
    ///
    /// # Errors
    /// If any step fails; what was made so far is removed before returning.
    pub fn create(plan: BackendPlan) -> Result<LocalBackend> {
        Self::make(plan, false)
    }

    /// The loopback variant (see the module's text): nodes on 127.0.0.1 at ports of the
    /// run's own, no namespace, no root needed.
    ///
    /// # Errors
    /// A root filesystem in the plan (a chroot needs root), no free run of ports, or a
    /// config that cannot be written.
    pub fn create_loopback(plan: BackendPlan) -> Result<LocalBackend> {
        if plan.rootfs.is_some() {
            bail!(
                "--backend loopback runs the host's server binary: drop cluster.version (a \
                 version the host lacks needs a root filesystem, and a chroot needs root)"
            );
        }
        Self::make(plan, true)
    }

    fn make(plan: BackendPlan, loopback: bool) -> Result<LocalBackend> {
        let ledger = Ledger::create(plan.run_id.clone(), &plan.run_dir, plan.keep)?;
        let mut backend = LocalBackend {
            plan,
            ledger,
            nodes: Vec::new(),
            specs: Vec::new(),
            torn_down: false,
            loopback,
        };
        let made = if loopback {
            backend.provision_loopback()
        } else {
            backend.provision()
        };
        if let Err(e) = made {
            let _ = backend.teardown();
            return Err(e);
        }
        Ok(backend)
    }

    fn provision_loopback(&mut self) -> Result<()> {
        let n = self.plan.node_names.len();
        let flavor = self.plan.flavor.clone();
        let base = free_port_run(n, |p| {
            let bus = flavor.bus_port(p);
            [p, bus, bus + super::PROXY_PORT_OFFSET]
        })?;
        for (i, name) in self.plan.node_names.clone().iter().enumerate() {
            let files =
                NodeFiles::prepare_at(&self.plan, name, Ipv4Addr::LOCALHOST, base + i as u16)?;
            self.specs.push(files.spec.clone());
            self.nodes.push(LocalNode {
                files,
                netns: String::new(),
                child: None,
                paused: false,
            });
        }
        Ok(())
    }

    fn provision(&mut self) -> Result<()> {
        warn_if_neighbour_table_too_small(self.plan.node_names.len());
        let id = self.plan.run_id.clone();
        let net = super::hub::make(&id, &mut self.ledger)?;
        for (i, name) in self.plan.node_names.clone().iter().enumerate() {
            let netns = id.node_netns(name);
            let ip: Ipv4Addr = format!("{net}.{}", 11 + i)
                .parse()
                .context("node address")?;
            sys::ip(&["netns", "add", &netns])?;
            self.ledger.netns.push(netns.clone());
            self.ledger.save()?;
            super::hub::plug(&id, name, &netns, ip)?;
            let files = NodeFiles::prepare(&self.plan, name, ip)?;
            self.specs.push(files.spec.clone());
            self.nodes.push(LocalNode {
                files,
                netns,
                child: None,
                paused: false,
            });
        }
        Ok(())
    }
}

/// A first port `p` such that, for each of `n` nodes `p + i`, every port `ports(p + i)`
/// names is free on 127.0.0.1 now; drawn at random from [`LOOPBACK_PORTS`].
fn free_port_run(n: usize, ports: impl Fn(u16) -> [u16; 3]) -> Result<u16> {
    let free = |p: u16| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
    let span = LOOPBACK_PORTS.end - LOOPBACK_PORTS.start;
    let n = u16::try_from(n)
        .ok()
        .filter(|&n| n < span)
        .context("too many nodes")?;
    for _ in 0..64 {
        let base = LOOPBACK_PORTS.start + rand::random::<u16>() % (span - n);
        if (base..base + n).all(|p| ports(p).into_iter().all(free)) {
            return Ok(base);
        }
    }
    bail!(
        "no run of {n} free ports found on 127.0.0.1 in {LOOPBACK_PORTS:?} (with their bus and proxy ports)"
    )
}

/// The kernel's neighbour (ARP) table is one table for every network namespace, capped at
/// `gc_thresh3` entries (1024 by default). A cluster bus is a full mesh, so N nodes need
/// about N*N entries; past the cap the kernel logs "neighbor table overflow!" and new
/// peers stay unreachable (a 50x1 cluster then fails to form with "Unknown node" from
/// CLUSTER REPLICATE). faultline does not change the machine's settings; it says which one.
fn warn_if_neighbour_table_too_small(nodes: usize) {
    const PATH: &str = "/proc/sys/net/ipv4/neigh/default/gc_thresh3";
    let Some(cap) = std::fs::read_to_string(PATH)
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
    else {
        return;
    };
    let needed = nodes * (nodes + 1);
    if needed > cap {
        tracing::warn!(
            "{nodes} nodes need about {needed} neighbour (ARP) entries and the kernel keeps at \
             most {cap} ({PATH}, shared by every namespace): nodes may not reach each other. \
             Raise it first, e.g. sysctl -w net.ipv4.neigh.default.gc_thresh2={} \
             net.ipv4.neigh.default.gc_thresh3={}",
            needed.next_power_of_two(),
            2 * needed.next_power_of_two()
        );
    }
}

impl Backend for LocalBackend {
    fn nodes(&self) -> &[NodeSpec] {
        &self.specs
    }

    fn start(&mut self, index: usize) -> Result<()> {
        let keep = self.plan.keep;
        let binary = self.plan.binary.clone();
        let node = &mut self.nodes[index];
        if let Some(child) = node.child.as_mut() {
            if child.try_wait()?.is_none() {
                bail!(
                    "{} is already running (pid {})",
                    node.files.spec.name,
                    child.id()
                );
            }
        }
        let netns =
            (!self.loopback).then(|| node_netns_path(&self.plan.run_id, &node.files.spec.name));
        let chroot = match &self.plan.rootfs {
            Some(r) => Some(Chroot::new(&r.tree, &self.plan.run_dir)?),
            None => None,
        };
        let child = Spawn {
            binary: &binary,
            args: &node.files.args,
            cwd: &node.files.data_dir,
            console: node.files.console_log(),
            netns: netns.as_deref(),
            chroot,
            die_with_parent: !keep,
        }
        .start()
        .with_context(|| {
            format!(
                "starting {} for {} ({})",
                binary.display(),
                node.files.spec.name,
                self.plan.flavor.install_hint()
            )
        })?;
        self.ledger.pids.push(child.id() as i32);
        node.child = Some(child);
        self.ledger.save()
    }

    fn exited(&mut self) -> Option<String> {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let console = sys::tail(&node.files.console_log(), 5);
                    return Some(node.files.exit_report(&status.to_string(), &console));
                }
            }
        }
        None
    }

    fn kill(&mut self, index: usize) -> Result<()> {
        let node = &mut self.nodes[index];
        let Some(mut child) = node.child.take() else {
            bail!("{} is not running", node.files.spec.name);
        };
        // In effect once the kernel shows the server exiting; reaped before returning.
        sys::kill_server(child.id() as i32, &node.files.spec.name)?;
        child.wait()?;
        node.paused = false;
        Ok(())
    }

    fn pause(&mut self, index: usize, pause: bool) -> Result<()> {
        let node = &mut self.nodes[index];
        let Some(child) = node.child.as_mut() else {
            bail!("{} is not running", node.files.spec.name);
        };
        sys::stop_or_continue(child.id() as i32, pause, &node.files.spec.name)?;
        node.paused = pause;
        Ok(())
    }

    fn netns_exec_prefix(&self, index: usize) -> Vec<String> {
        if self.loopback {
            return super::refusing_prefix(format!(
                "{} runs on loopback (--backend loopback) with no network namespace of its \
                 own: faultline runs nothing beside it",
                self.nodes[index].files.spec.name
            ));
        }
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.nodes[index].netns.clone(),
        ]
    }

    fn netns_path(&self, index: usize) -> Option<PathBuf> {
        if self.loopback {
            return None;
        }
        Some(node_netns_path(
            &self.plan.run_id,
            &self.nodes[index].files.spec.name,
        ))
    }

    fn plan(&self) -> Option<&BackendPlan> {
        Some(&self.plan)
    }

    fn node_files(&self, index: usize) -> Option<&NodeFiles> {
        Some(&self.nodes[index].files)
    }

    fn node_files_mut(&mut self, index: usize) -> Option<&mut NodeFiles> {
        Some(&mut self.nodes[index].files)
    }

    fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            node.files.keep_evidence();
        }
        self.ledger
            .release_or_report(&self.plan.run_id, super::REMOVERS)
    }

    fn keep_notice(&self) -> String {
        if self.loopback {
            return super::keep_notice(
                &self.plan,
                &self.specs,
                " on loopback",
                "none (the nodes are processes of this machine, on 127.0.0.1)",
            );
        }
        super::keep_notice(&self.plan, &self.specs, "", "ip netns exec {} sh")
    }

    fn shares_host_network(&self) -> bool {
        self.loopback
    }
}

impl Drop for LocalBackend {
    /// The last line of defence (errors, panics): nothing of the run outlives it unless
    /// `--keep` was asked for.
    fn drop(&mut self) {
        if !self.plan.keep {
            if let Err(e) = self.teardown() {
                eprintln!("faultline: {e:#}");
            }
        }
    }
}
