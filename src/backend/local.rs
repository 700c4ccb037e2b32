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
//! The bridge sits in a namespace of its own so that no rule in the host's firewall (Docker
//! sets the host's FORWARD policy to DROP, and br_netfilter applies it to bridged frames)
//! can touch node-to-node traffic, and so that the run needs no rule in the host at all.
//! Deleting the namespaces deletes every link with them.
//!
//! With a root filesystem in the plan (a server version the host lacks), each server is
//! started chrooted into it, in a private mount namespace of its own (see
//! [`super::chroot`]); the network namespace is the same.

use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

use super::chroot::Chroot;
use super::{Backend, BackendPlan, NodeSpec};
use crate::flavor::NodeConfig;
use crate::ledger::{Ledger, RunId, STATE_DIR};
use crate::sys;

/// First two octets of run subnets; override with `FAULTLINE_SUBNET_PREFIX` (e.g. `10.78`).
pub const DEFAULT_SUBNET_PREFIX: &str = "10.77";

/// The port every node listens on (each has its own address).
pub const CLIENT_PORT: u16 = 6379;

struct LocalNode {
    spec: NodeSpec,
    /// The server's arguments (the config file's path, or a flavor's flags).
    args: Vec<String>,
    netns: String,
    conf: PathBuf,
    /// The config as the flavor wrote it, before any announce lines.
    base_config: String,
    /// The bus port the node announces, when its bus goes through the proxy.
    announced_bus_port: Option<u16>,
    data_dir: PathBuf,
    log_dir: PathBuf,
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
}

impl LocalBackend {
    /// Creates the run's namespaces, bridge and addresses, and writes each node's config.
    ///
    /// # Errors
    /// If any step fails; what was made so far is removed before returning.
    pub fn create(plan: BackendPlan) -> Result<LocalBackend> {
        let ledger = Ledger::create(plan.run_id.clone(), &plan.run_dir, plan.keep)?;
        let mut backend = LocalBackend {
            plan,
            ledger,
            nodes: Vec::new(),
            specs: Vec::new(),
            torn_down: false,
        };
        if let Err(e) = backend.provision() {
            let _ = backend.teardown();
            return Err(e);
        }
        Ok(backend)
    }

    fn provision(&mut self) -> Result<()> {
        let id = self.plan.run_id.clone();
        let hub = id.hub_netns();
        let host_link = id.host_link();

        sys::ip(&["netns", "add", &hub])
            .context("creating the run's hub namespace (are you root?)")?;
        self.ledger.netns.push(hub.clone());
        self.ledger.save()?;
        sys::ip_batch(
            &hub,
            &[
                "link set lo up".into(),
                "link add br0 type bridge".into(),
                "link set br0 up".into(),
            ],
        )?;

        // Choosing a subnet and claiming it must not race another run doing the same.
        let _lock = subnet_lock()?;
        let prefix = subnet_prefix()?;
        let third = free_subnet(&prefix, &id)?;
        let net = format!("{prefix}.{third}");
        self.ledger.host_links.push(host_link.clone());
        self.ledger.save()?;
        sys::ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", "up0", "netns", &hub,
        ])?;
        sys::ip(&["addr", "add", &format!("{net}.1/24"), "dev", &host_link])?;
        sys::ip(&["link", "set", &host_link, "up"])?;
        drop(_lock);
        sys::ip_batch(&hub, &["link set up0 master br0 up".into()])?;

        for (i, name) in self.plan.node_names.clone().iter().enumerate() {
            let netns = id.node_netns(name);
            let ip: Ipv4Addr = format!("{net}.{}", 11 + i)
                .parse()
                .context("node address")?;
            sys::ip(&["netns", "add", &netns])?;
            self.ledger.netns.push(netns.clone());
            self.ledger.save()?;
            sys::ip_batch(
                &hub,
                &[
                    format!("link add {name} type veth peer name eth0 netns {netns}"),
                    format!("link set {name} master br0 up"),
                ],
            )?;
            sys::ip_batch(
                &netns,
                &[
                    "link set lo up".into(),
                    format!("addr add {ip}/24 dev eth0"),
                    "link set eth0 up".into(),
                ],
            )?;
            let spec = NodeSpec {
                name: name.clone(),
                ip,
                port: CLIENT_PORT,
            };
            let data_dir = self.plan.run_dir.join("data").join(name);
            let log_dir = self.plan.run_dir.join("logs").join(name);
            fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            fs::create_dir_all(&log_dir)
                .with_context(|| format!("creating {}", log_dir.display()))?;
            let conf = data_dir.join("server.conf");
            let node_config = NodeConfig {
                ip,
                port: CLIENT_PORT,
                node_timeout_ms: self.plan.node_timeout_ms,
                persistence: self.plan.persistence,
                data_dir: abs(&data_dir)?,
                log_file: abs(&log_dir.join("server.log"))?,
            };
            let text = self.plan.flavor.config(&node_config);
            let args = self.plan.flavor.args(&abs(&conf)?, &node_config);
            fs::write(&conf, &text).with_context(|| format!("writing {}", conf.display()))?;
            self.specs.push(spec.clone());
            self.nodes.push(LocalNode {
                spec,
                args,
                netns,
                conf,
                base_config: text,
                announced_bus_port: None,
                data_dir,
                log_dir,
                child: None,
                paused: false,
            });
        }
        Ok(())
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
                bail!("{} is already running (pid {})", node.spec.name, child.id());
            }
        }
        let ns = File::open(Path::new("/run/netns").join(&node.netns))
            .with_context(|| format!("opening namespace {}", node.netns))?;
        let chroot = match &self.plan.rootfs {
            Some(r) => Some(Chroot::new(&r.tree, &self.plan.run_dir)?),
            None => None,
        };
        let console = File::create(node.log_dir.join("console.log"))?;
        let mut cmd = Command::new(&binary);
        cmd.args(&node.args)
            .current_dir(&node.data_dir)
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            // Its own process group: a Ctrl-C at the terminal reaches faultline, which then
            // tears down in order, not the servers directly.
            .process_group(0);
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                if let Some(c) = &chroot {
                    c.enter()?;
                }
                if !keep {
                    // If faultline dies (even by SIGKILL) its servers die with it. This ties
                    // the server to the *thread* that forks it, so nodes are only ever
                    // started from the runtime's long-lived threads, never spawn_blocking.
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!(
                "starting {} for {} ({})",
                binary.display(),
                node.spec.name,
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
                    let log = node.log_dir.join("server.log");
                    return Some(format!(
                        "{} exited ({status}); last lines of {}:\n{}{}",
                        node.spec.name,
                        log.display(),
                        tail(&log, 15),
                        tail(&node.log_dir.join("console.log"), 5)
                    ));
                }
            }
        }
        None
    }

    fn kill(&mut self, index: usize) -> Result<()> {
        let node = &mut self.nodes[index];
        let Some(mut child) = node.child.take() else {
            bail!("{} is not running", node.spec.name);
        };
        child
            .kill()
            .with_context(|| format!("killing {}", node.spec.name))?;
        child.wait()?;
        node.paused = false;
        Ok(())
    }

    fn pause(&mut self, index: usize, pause: bool) -> Result<()> {
        let node = &mut self.nodes[index];
        let Some(child) = node.child.as_mut() else {
            bail!("{} is not running", node.spec.name);
        };
        let signal = if pause {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .with_context(|| format!("sending {signal} to {}", node.spec.name))?;
        node.paused = pause;
        Ok(())
    }

    fn netns_exec_prefix(&self, index: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.nodes[index].netns.clone(),
        ]
    }

    fn netns_path(&self, index: usize) -> Option<PathBuf> {
        Some(Path::new("/run/netns").join(&self.nodes[index].netns))
    }

    fn announce_bus_port(&mut self, index: usize, port: u16) -> Result<()> {
        let node = &mut self.nodes[index];
        let text = format!(
            "{}{}",
            node.base_config,
            crate::flavor::announce_config(node.spec.ip, port)
        );
        fs::write(&node.conf, text).with_context(|| format!("writing {}", node.conf.display()))?;
        node.announced_bus_port = Some(port);
        Ok(())
    }

    fn bus_port(&self, index: usize) -> Option<u16> {
        Some(self.plan.flavor.bus_port(self.specs[index].port))
    }

    fn announced_bus_port(&self, index: usize) -> Option<u16> {
        self.nodes[index].announced_bus_port
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
            // nodes.conf is evidence (who each node thought it was); keep a copy in logs/.
            let _ = fs::copy(
                node.data_dir.join("nodes.conf"),
                node.log_dir.join("nodes.conf"),
            );
        }
        self.ledger.release_or_report(&self.plan.run_id)
    }

    fn keep_notice(&self) -> String {
        let addrs: Vec<String> = self
            .specs
            .iter()
            .map(|s| format!("{} {}", s.name, s.addr()))
            .collect();
        format!(
            "cluster of run {} kept running: {}\n  node shells: ip netns exec {} sh\n  remove it with: faultline clean --run {}",
            self.plan.run_id,
            addrs.join(", "),
            self.plan.run_id.node_netns("n1"),
            self.plan.run_id
        )
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

fn abs(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

pub(crate) fn subnet_lock() -> Result<Flock<File>> {
    fs::create_dir_all(STATE_DIR)?;
    let file = File::create(Path::new(STATE_DIR).join("subnet.lock"))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking subnet.lock: {e}"))
}

pub(crate) fn subnet_prefix() -> Result<String> {
    let prefix =
        std::env::var("FAULTLINE_SUBNET_PREFIX").unwrap_or_else(|_| DEFAULT_SUBNET_PREFIX.into());
    let ok = prefix.split('.').count() == 2 && prefix.split('.').all(|o| o.parse::<u8>().is_ok());
    if !ok {
        bail!("FAULTLINE_SUBNET_PREFIX must be two octets like 10.77, got {prefix:?}");
    }
    Ok(prefix)
}

/// A /24 under `prefix` that overlaps no address or route on this machine, starting from a
/// spot derived from the run id so concurrent runs tend not to probe the same ones.
pub(crate) fn free_subnet(prefix: &str, id: &RunId) -> Result<u8> {
    let mut taken = Vec::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        for word in sys::ip(args)?.split_whitespace() {
            if let Some(net) = parse_cidr(word) {
                taken.push(net);
            }
        }
    }
    let start = u32::from_str_radix(id.as_str(), 16).unwrap_or(0) % 254;
    for k in 0..254u32 {
        let third = ((start + k) % 254 + 1) as u8;
        let base: Ipv4Addr = format!("{prefix}.{third}.0").parse()?;
        if !taken
            .iter()
            .any(|&(net, len)| overlaps((base, 24), (net, len)))
        {
            return Ok(third);
        }
    }
    bail!("no free /24 left under {prefix}.0.0/16; set FAULTLINE_SUBNET_PREFIX to another range")
}

fn parse_cidr(word: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = word.split_once('/')?;
    Some((addr.parse().ok()?, len.parse().ok().filter(|l| *l <= 32)?))
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    (u32::from(a.0) & mask) == (u32::from(b.0) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_by_the_shorter_prefix() {
        let n = |s: &str| parse_cidr(s).unwrap();
        assert!(overlaps(n("10.77.3.0/24"), n("10.77.3.1/24")));
        assert!(overlaps(n("10.77.3.0/24"), n("10.0.0.0/8")));
        assert!(!overlaps(n("10.77.3.0/24"), n("10.77.4.0/24")));
        assert!(!overlaps(n("10.77.3.0/24"), n("192.0.2.2/24")));
        assert!(overlaps(n("10.77.3.0/24"), n("0.0.0.0/0")));
    }
}
