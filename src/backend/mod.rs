//! Backends: where nodes run. A backend provisions addresses, starts and stops server
//! processes, runs commands beside them, and removes everything it made.
//!
//! [`Backend`] is everything a run needs from the place its nodes are; the orchestrator,
//! formation ([`crate::cluster`], [`crate::standalone`]) and the faults (through
//! [`crate::control::BackendControl`]) use nothing else. Two implementations today:
//!
//! - [`local`]: each node a process in a network namespace of its own on this machine,
//!   or (`--backend loopback`, no root needed) on 127.0.0.1 at ports of the run's own;
//! - [`docker`]: each node a container on a per-run Docker network.
//!
//! What they share has one home each: [`node`] (a node's config, data and log files),
//! [`spawn`] (starting a server process here, also used by `faultline bench`), [`subnet`]
//! (choosing a run's /24), [`chroot`] (running from a root filesystem).
//!
//! Adding one (nodes reached over SSH, say) is one file here, a variant in
//! [`crate::kinds::BackendName`], its arm in [`create`], and, if it makes resources of a
//! kind of its own, a [`Remover`] in [`REMOVERS`] so teardown and `faultline clean` find
//! them in the ledger.

pub mod chroot;
pub mod docker;
pub mod engine;
pub mod hub;
pub mod local;
pub mod node;
pub mod spawn;
pub mod subnet;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::flavor::Flavor;
use crate::kinds::{BackendName, Persistence};
use crate::ledger::{Ledger, Remover, RunId};
use node::NodeFiles;

/// The port every node listens on (each has its own address).
pub const CLIENT_PORT: u16 = 6379;

/// Cluster bus port: client port + 10000 (nodes set no `cluster-port`).
pub const BUS_OFFSET: u16 = 10000;

/// One node as the rest of the harness sees it.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// `n1`, `n2`, ...
    pub name: String,
    /// Address clients and peers use.
    pub ip: Ipv4Addr,
    /// Client port.
    pub port: u16,
}

impl NodeSpec {
    /// `ip:port`, as the cluster itself names the node.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// What a backend needs to bring nodes up.
pub struct BackendPlan {
    /// The run's id, part of every name the backend creates.
    pub run_id: RunId,
    /// The run directory (logs/ and data/ go below it).
    pub run_dir: PathBuf,
    /// Node names, in order.
    pub node_names: Vec<String>,
    /// The server kind.
    pub flavor: Arc<dyn Flavor>,
    /// The server binary.
    pub binary: PathBuf,
    /// `cluster-node-timeout`, ms.
    pub node_timeout_ms: u64,
    /// Persistence mode.
    pub persistence: Persistence,
    /// The server's root filesystem when it is not the host's: the docker backend runs its
    /// image, the local backend chroots into its tree. `binary` is then a path inside it.
    pub rootfs: Option<crate::rootfs::RootFs>,
    /// Leave everything running at the end (and do not tie servers' lives to ours).
    pub keep: bool,
}

/// A place where nodes run: everything a run needs from it.
///
/// Nodes are addressed by index into [`Backend::nodes`]. A backend is created with its
/// nodes provisioned (addresses, config files written) but not started; the run starts
/// them ([`start_all`]), forms the cluster, lets faults kill, pause and restart them and
/// run commands in their network namespaces, and finally calls [`Backend::teardown`].
/// Dropping a backend without `--keep` tears it down too.
///
/// Every resource a backend creates outside the run directory is written to the run's
/// [`Ledger`] *before* it is created, so that `faultline clean` can remove it if faultline
/// dies.
pub trait Backend: Send {
    /// The nodes, with their addresses, in name order.
    fn nodes(&self) -> &[NodeSpec];

    /// Starts (or restarts) a node's server process.
    ///
    /// # Errors
    /// If the process cannot be started.
    fn start(&mut self, node: usize) -> Result<()>;

    /// Starts every node: one after another unless the backend can do better (Docker
    /// starts its containers at once).
    ///
    /// # Errors
    /// The first node that cannot be started.
    fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes().len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// A node whose process has exited without being told to, with what it said on the
    /// way out.
    fn exited(&mut self) -> Option<String>;

    /// SIGKILLs a node's server and reaps it; it stays down until [`Backend::start`].
    ///
    /// # Errors
    /// If the node is not running.
    fn kill(&mut self, node: usize) -> Result<()>;

    /// Sends SIGSTOP (`pause`) or SIGCONT (`!pause`) to a node's server.
    ///
    /// # Errors
    /// If the node is not running or the signal fails.
    fn pause(&mut self, node: usize, pause: bool) -> Result<()>;

    /// The command prefix that runs a program inside the node's network namespace
    /// (`ip netns exec <ns>` for local, `nsenter -t <pid> -n` for docker; a remote
    /// backend would prefix `ssh <host>` to its own). Faults run iptables through it,
    /// without holding the backend.
    fn netns_exec_prefix(&self, node: usize) -> Vec<String>;

    /// The whole command line that runs `argv` inside the node's network namespace: the
    /// prefix and `argv` (the default); a backend whose prefix cannot take arguments as
    /// they are (ssh joins them for a remote shell) builds its own.
    fn exec_command(&self, node: usize, argv: &[&str]) -> Vec<String> {
        let mut line = self.netns_exec_prefix(node);
        line.extend(argv.iter().map(|a| a.to_string()));
        line
    }

    /// Writes down, before a fault makes it, a change on the node's host that must be
    /// undone within `bound` (see [`faultline_nemeses::Control::guard`]); nothing to do
    /// (the default) where the run owns the hosts.
    ///
    /// # Errors
    /// If it could not be written down or its revert armed.
    fn guard(
        &mut self,
        _node: usize,
        _change: &faultline_nemeses::HostChange,
        _bound: std::time::Duration,
    ) -> Result<()> {
        Ok(())
    }

    /// The change is undone (see [`faultline_nemeses::Control::release`]).
    ///
    /// # Errors
    /// If the host could not be reached.
    fn release(&mut self, _node: usize, _change: &faultline_nemeses::HostChange) -> Result<()> {
        Ok(())
    }

    /// The command prefix that runs a program on the machine the node runs on, outside
    /// its namespace; empty (the default) when that is this machine.
    fn host_exec_prefix(&self, _node: usize) -> Vec<String> {
        Vec::new()
    }

    /// The node's network namespace as a file this process can open
    /// (`/run/netns/<name>`, `/proc/<pid>/ns/net`), for code that makes sockets or runs
    /// a thread inside it (the bus proxy, the NFQUEUE delayer); `None` if there is none
    /// here (a node on another machine).
    fn netns_path(&self, node: usize) -> Option<PathBuf>;

    /// What the backend was asked to bring up; `None` for nodes faultline did not start
    /// (a live cluster).
    fn plan(&self) -> Option<&BackendPlan>;

    /// The node's files in the run directory (config, data, logs), as
    /// [`NodeFiles::prepare`] wrote them; `None` for a node whose files are not ours (a
    /// live cluster's). The methods below that read or change them have defaults over
    /// this; a backend whose nodes keep their files elsewhere overrides them.
    fn node_files(&self, node: usize) -> Option<&NodeFiles>;

    /// [`Backend::node_files`], to change.
    fn node_files_mut(&mut self, node: usize) -> Option<&mut NodeFiles>;

    /// The last `lines` lines of the node's server log (empty if there is none yet, or
    /// none here).
    fn log_tail(&self, node: usize, lines: usize) -> String {
        self.node_files(node)
            .map(|f| crate::sys::tail(&f.server_log(), lines))
            .unwrap_or_default()
    }

    /// A file from the node's data directory (`nodes.conf`, say).
    ///
    /// # Errors
    /// If it does not exist or cannot be read, or the node's files are not here.
    fn read_node_file(&self, node: usize, name: &str) -> Result<Vec<u8>> {
        match self.node_files(node) {
            Some(f) => f.read(name),
            None => anyhow::bail!(
                "{}'s files are not on this machine",
                self.nodes()[node].name
            ),
        }
    }

    /// Makes the node announce `port` as its cluster bus port (and its own address), so
    /// its peers connect there instead of its real bus port. Takes effect at the next
    /// [`Backend::start`]; call it before the node first starts.
    ///
    /// # Errors
    /// If the config cannot be rewritten, or is not faultline's to write.
    fn announce_bus_port(&mut self, node: usize, port: u16) -> Result<()> {
        let name = self.nodes()[node].name.clone();
        match self.node_files_mut(node) {
            Some(f) => f.announce_bus_port(port),
            None => anyhow::bail!("{name}'s config is not faultline's to rewrite"),
        }
    }

    /// Where the node's cluster bus listens, as the flavor says (client port + 10000;
    /// Garnet: the client port).
    fn bus_port(&self, node: usize) -> Option<u16> {
        self.plan()
            .map(|p| p.flavor.bus_port(self.nodes()[node].port))
    }

    /// The bus port the node announces, if [`Backend::announce_bus_port`] set one:
    /// formation then passes it to `CLUSTER MEET`.
    fn announced_bus_port(&self, node: usize) -> Option<u16> {
        self.node_files(node).and_then(|f| f.announced_bus_port)
    }

    /// Stops every process and removes every namespace, link and file the run created
    /// outside its run directory, after copying each node's evidence (nodes.conf) into
    /// `logs/<node>/`. Safe to call more than once.
    ///
    /// # Errors
    /// If something could not be removed (the rest is still attempted).
    fn teardown(&mut self) -> Result<()>;

    /// How a person reaches the cluster after `--keep`, and how to remove it.
    fn keep_notice(&self) -> String;

    /// Whether the nodes share this machine's network namespace (`--backend loopback`):
    /// nothing may be run "in" a node's namespace, and partitions are cut at the bus
    /// proxy instead.
    fn shares_host_network(&self) -> bool {
        false
    }
}

/// A command prefix that runs nothing and fails with `why` (on stderr), for backends where
/// faultline must not run commands beside a node.
pub fn refusing_prefix(why: String) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "echo \"$0\" >&2; exit 1".into(),
        why,
    ]
}

/// The backend registry: provisions the run's network and returns the backend, nodes not
/// yet started.
///
/// # Errors
/// If provisioning fails; whatever was already made is removed first.
pub fn create(name: BackendName, plan: BackendPlan) -> Result<Box<dyn Backend>> {
    match name {
        BackendName::Local => Ok(Box::new(local::LocalBackend::create(plan)?)),
        BackendName::Docker => Ok(Box::new(docker::DockerBackend::create(plan)?)),
        BackendName::Loopback => Ok(Box::new(local::LocalBackend::create_loopback(plan)?)),
    }
}

/// How teardown and `faultline clean` remove the ledger kinds that backend modules make
/// (the ledger itself removes processes, namespaces and host links).
pub const REMOVERS: &[Remover] = &[docker::remove_listed, crate::live::backend::remove_listed];

/// Removes everything a ledger lists (see [`Ledger::release`]); returns what it did.
pub fn release(ledger: &Ledger) -> Vec<String> {
    ledger.release(REMOVERS)
}

/// The bus proxy listens here, on each node's own address: real bus port + 1000 (17379).
pub const PROXY_PORT_OFFSET: u16 = 1000;

/// Routes every node's cluster bus through a proxy: each node announces its bus port
/// (client port + 10000) plus [`PROXY_PORT_OFFSET`], and the returned nodes tell the proxy
/// to listen there, inside the node's namespace, and forward to the real bus port. Call
/// before the nodes start; then start the proxy with the result
/// (`faultline_nemeses::proxy::BusProxy::start`) before forming the cluster.
///
/// # Errors
/// If the backend cannot announce a bus port.
pub fn route_bus_through_proxy(
    backend: &mut dyn Backend,
) -> Result<Vec<faultline_nemeses::proxy::ProxyNode>> {
    let mut out = Vec::new();
    for i in 0..backend.nodes().len() {
        let node = backend.nodes()[i].clone();
        if backend.bus_port(i) == Some(node.port) {
            anyhow::bail!(
                "cluster.bus: proxy needs a separate cluster bus port; this flavor (Garnet) \
                 gossips on its client port"
            );
        }
        let bus_port = node.port + BUS_OFFSET;
        let proxy_port = bus_port + PROXY_PORT_OFFSET;
        backend.announce_bus_port(i, proxy_port)?;
        out.push(faultline_nemeses::proxy::ProxyNode {
            name: node.name,
            ip: node.ip,
            port: node.port,
            bus_port,
            proxy_port,
            netns: backend.netns_path(i),
        });
    }
    Ok(out)
}

/// How a person reaches a kept cluster and removes it: `where_` says where it runs
/// (`""`, `" in Docker"`), `shell` how to get a shell in a node (`{}`: n1's name there).
pub fn keep_notice(plan: &BackendPlan, nodes: &[NodeSpec], where_: &str, shell: &str) -> String {
    let addrs: Vec<String> = nodes
        .iter()
        .map(|s| format!("{} {}", s.name, s.addr()))
        .collect();
    let id = &plan.run_id;
    format!(
        "cluster of run {id} kept running{where_}: {}\n  node shells: {}\n  remove it with: faultline clean --run {id}",
        addrs.join(", "),
        shell.replace("{}", &id.node_netns("n1")),
    )
}

/// Starts every node.
///
/// # Errors
/// The first node that cannot be started.
pub fn start_all(backend: &mut dyn Backend) -> Result<()> {
    backend.start_all()
}
