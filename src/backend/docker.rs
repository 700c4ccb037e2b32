//! The docker backend: each node is a container running the server from a
//! `faultline/<flavor>:<version>` image (see [`crate::rootfs`]), in a network namespace
//! plugged into the run's own bridge, as the local backend's are ([`super::hub`]).
//!
//! Layout for run `abc123` on subnet 10.77.N.0/24:
//!
//! ```text
//! host ns:      flabc123h 10.77.N.1   (veth to the run's hub, as with local)
//! fl-abc123-hub:   br0 -- n1, n2, ...
//!                         |  veth
//!   fl-abc123-n1-net  eth0 10.77.N.11   sandbox: holds the node's network namespace
//!                                       (sleeps; named fl-abc123-n1 under /run/netns)
//!   fl-abc123-n1      --network container:fl-abc123-n1-net, the server as its process
//! ```
//!
//! Each node is two containers, like a pod: the sandbox owns the network namespace and
//! never stops, so a killed and restarted server keeps its address *and* its namespace.
//! The sandbox is made through the Engine API ([`super::engine`]) with Docker's networking
//! disabled: Docker makes a namespace with only `lo` and runs none of its network set-up
//! (a prestart hook that re-executes the daemon, most of a container's start-up CPU), and
//! no Docker network or host rule exists for the run. Faults enter that namespace from the
//! host (`nsenter -t <sandbox pid> -n`, `/proc/<pid>/ns/net`), so iptables partitions,
//! the NFQUEUE delayer and the bus proxy's sockets work as with the local backend, the
//! image needs no tools, and the proxy's listeners survive a node's restart. The run
//! directory is bind-mounted at its own path, so configs, data and `logs/<node>/` read the
//! same as with local.
//!
//! Containers carry the label `faultline.run=<id>`; they, the namespaces and the host link
//! are in the run's ledger before they exist, and are removed at teardown; `faultline
//! clean` also removes labelled leftovers of dead runs (and the Docker networks that runs
//! of earlier versions made).

use std::collections::HashSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use serde_json::json;

use super::engine;
use super::node::NodeFiles;
use super::{Backend, BackendPlan, NodeSpec};
use crate::ledger::{Ledger, RunId};
use crate::sys;

/// The label every container of a run carries (and the networks of earlier versions'
/// runs), valued with the run id.
pub const RUN_LABEL: &str = "faultline.run";

/// The ledger's kind for the run's containers (removed before the networks they sit on).
pub const CONTAINERS: &str = "containers";
/// The ledger's kind for a run's Docker networks (made by earlier versions; still removed).
pub const NETWORKS: &str = "docker_networks";

struct DockerNode {
    files: NodeFiles,
    /// The server's container.
    container: String,
    /// The sandbox's pid on the host (its namespace is the node's).
    sandbox_pid: i32,
    /// The server's pid on the host while it runs.
    pid: Option<i32>,
    paused: bool,
    /// Killed by a fault, its exit not yet awaited through Docker.
    killed: bool,
}

/// Nodes as Docker containers.
pub struct DockerBackend {
    plan: BackendPlan,
    image: String,
    ledger: Ledger,
    nodes: Vec<DockerNode>,
    specs: Vec<NodeSpec>,
    torn_down: bool,
}

impl DockerBackend {
    /// Creates the run's bridge and each node's sandbox (running, plugged into it) and
    /// server container (not started), and writes each node's config.
    ///
    /// # Errors
    /// If the plan has no image, or any step fails; what was made so far is removed.
    pub fn create(plan: BackendPlan) -> Result<DockerBackend> {
        let Some(rootfs) = plan.rootfs.clone() else {
            bail!("the docker backend needs an image (faultline/<flavor>:<version>)");
        };
        let mut plan = plan;
        plan.run_dir = std::path::absolute(&plan.run_dir).context("resolving the run directory")?;
        let ledger = Ledger::create(plan.run_id.clone(), &plan.run_dir, plan.keep)?;
        let mut backend = DockerBackend {
            plan,
            image: rootfs.image,
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
        let net = super::hub::make(&id, &mut self.ledger)?;
        let run_dir = self.plan.run_dir.display().to_string();
        let binary = self.plan.binary.display().to_string();
        // Files and ledger entries first, node by node (each container and namespace is in
        // the ledger before it exists); then every node at once: each container costs the
        // daemon a round trip and a few hundred ms of CPU, one after another they made
        // Docker start-up several times slower than local.
        let mut made = Vec::new();
        for (i, name) in self.plan.node_names.clone().iter().enumerate() {
            let ip: Ipv4Addr = format!("{net}.{}", 11 + i)
                .parse()
                .context("node address")?;
            let container = id.node_netns(name);
            let sandbox = format!("{container}-net");
            let files = NodeFiles::prepare(&self.plan, name, ip)?;
            self.ledger.record(CONTAINERS, &sandbox)?;
            self.ledger.record(CONTAINERS, &container)?;
            self.ledger.netns.push(id.node_netns(name));
            self.ledger.save()?;
            made.push((name.clone(), ip, sandbox, container, files));
        }
        let (id, image) = (&id, &self.image);
        let pids = std::thread::scope(|scope| {
            let handles: Vec<_> = made
                .iter()
                .map(|(name, ip, sandbox, container, files)| {
                    let (run_dir, binary) = (&run_dir, &binary);
                    scope.spawn(move || -> Result<i32> {
                        let labels = json!({RUN_LABEL: id.to_string(), "faultline.node": name});
                        // The sandbox: Docker's networking disabled (no libnetwork hook,
                        // the bulk of a container's start), a namespace with only `lo`,
                        // which is named and plugged into the run's hub.
                        engine::create(
                            sandbox,
                            &json!({
                                "Image": image,
                                "Hostname": name,
                                "Entrypoint": ["sleep"],
                                "Cmd": ["infinity"],
                                "Labels": labels,
                                "NetworkDisabled": true,
                            }),
                        )?;
                        engine::start(sandbox)?;
                        let pid = engine::pid(sandbox)?
                            .with_context(|| format!("{sandbox} stopped as soon as it started"))?;
                        let netns = id.node_netns(name);
                        sys::ip(&["netns", "attach", &netns, &pid.to_string()])
                            .with_context(|| format!("naming {sandbox}'s network namespace"))?;
                        super::hub::plug(id, name, &netns, *ip)?;
                        // The server's container, in the sandbox's namespace.
                        engine::create(
                            container,
                            &json!({
                                "Image": image,
                                "Entrypoint": [binary],
                                "Cmd": files.args,
                                "WorkingDir": files.data_dir,
                                "Labels": labels,
                                "HostConfig": {
                                    "NetworkMode": format!("container:{sandbox}"),
                                    "Binds": [format!("{run_dir}:{run_dir}")],
                                },
                            }),
                        )?;
                        Ok(pid)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a container thread panicked")))
                })
                .collect::<Result<Vec<i32>>>()
        })?;
        for ((_, _, _, container, files), sandbox_pid) in made.into_iter().zip(pids) {
            self.specs.push(files.spec.clone());
            self.nodes.push(DockerNode {
                files,
                container,
                sandbox_pid,
                pid: None,
                paused: false,
                killed: false,
            });
        }
        Ok(())
    }
}

impl Backend for DockerBackend {
    fn nodes(&self) -> &[NodeSpec] {
        &self.specs
    }

    fn start(&mut self, index: usize) -> Result<()> {
        let node = &mut self.nodes[index];
        if node.pid.is_some_and(sys::pid_alive) {
            bail!("{} is already running", node.files.spec.name);
        }
        if node.killed {
            // Killed by its pid: Docker must have seen the exit before it starts it again.
            docker(&["wait", &node.container])?;
            node.killed = false;
        }
        engine::start(&node.container)?;
        node.pid = engine::pid(&node.container)?;
        if node.pid.is_none() {
            return Err(exited_at_once(&node.files));
        }
        Ok(())
    }

    fn start_all(&mut self) -> Result<()> {
        // Every server at once (one daemon round trip each, in parallel), with its pid.
        let names: Vec<&str> = self.nodes.iter().map(|n| n.container.as_str()).collect();
        let pids = std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .map(|c| {
                    scope.spawn(move || {
                        engine::start(c)?;
                        engine::pid(c)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a start thread panicked")))
                })
                .collect::<Result<Vec<Option<i32>>>>()
        })?;
        for (node, pid) in self.nodes.iter_mut().zip(pids) {
            node.pid = pid;
            if node.pid.is_none() {
                return Err(exited_at_once(&node.files));
            }
        }
        Ok(())
    }

    fn exited(&mut self) -> Option<String> {
        for node in &mut self.nodes {
            if let Some(pid) = node.pid {
                if !sys::pid_alive(pid) {
                    node.pid = None;
                    let status = docker(&[
                        "inspect",
                        "-f",
                        "{{.State.ExitCode}} {{.State.Error}}",
                        &node.container,
                    ])
                    .unwrap_or_default();
                    let console = sys::last_lines(&docker_logs(&node.container), 5);
                    return Some(
                        node.files
                            .exit_report(&format!("exit code {}", status.trim()), &console),
                    );
                }
            }
        }
        None
    }

    fn kill(&mut self, index: usize) -> Result<()> {
        let node = &mut self.nodes[index];
        let Some(pid) = node.pid.take() else {
            bail!("{} is not running", node.files.spec.name);
        };
        // SIGKILL straight to the server's host pid (`docker kill` is a daemon round trip
        // first): the kill is in effect when the kernel shows the process exiting. It is
        // dead before this returns; Docker's own record of the exit is awaited before the
        // next start.
        sys::kill_server(pid, &node.files.spec.name)?;
        sys::wait_dead(pid, std::time::Duration::from_secs(10))
            .with_context(|| format!("waiting for {} to die", node.files.spec.name))?;
        node.paused = false;
        node.killed = true;
        Ok(())
    }

    fn pause(&mut self, index: usize, pause: bool) -> Result<()> {
        let node = &mut self.nodes[index];
        let Some(pid) = node.pid else {
            bail!("{} is not running", node.files.spec.name);
        };
        sys::stop_or_continue(pid, pause, &node.files.spec.name)?;
        node.paused = pause;
        Ok(())
    }

    fn netns_exec_prefix(&self, index: usize) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.nodes[index].sandbox_pid.to_string(),
            "-n".into(),
        ]
    }

    fn netns_path(&self, index: usize) -> Option<PathBuf> {
        Some(PathBuf::from(format!(
            "/proc/{}/ns/net",
            self.nodes[index].sandbox_pid
        )))
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
            if node.pid.take().is_some() {
                let _ = docker(&["kill", "-s", "KILL", &node.container]);
            }
            let console = docker_logs(&node.container);
            let _ = fs::write(node.files.console_log(), console);
            node.files.keep_evidence();
        }
        self.ledger
            .release_or_report(&self.plan.run_id, super::REMOVERS)
    }

    fn keep_notice(&self) -> String {
        super::keep_notice(
            &self.plan,
            &self.specs,
            " in Docker",
            "docker exec -it {} sh",
        )
    }
}

impl Drop for DockerBackend {
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

/// The docker backend's [`crate::ledger::Remover`]: the containers and networks a ledger
/// lists.
pub fn remove_listed(ledger: &Ledger) -> Vec<String> {
    remove(ledger.listed(CONTAINERS), ledger.listed(NETWORKS))
}

/// Removes containers (force: running ones are killed) and then networks; returns what it
/// did, failures starting with "could not". Names that do not exist are skipped, so this
/// is safe to call for a half-made run and more than once.
pub fn remove(containers: &[String], networks: &[String]) -> Vec<String> {
    let mut done = Vec::new();
    if containers.is_empty() && networks.is_empty() {
        return done;
    }
    let existing = list(&["ps", "-a", "--format", "{{.Names}}"]);
    let gone: Vec<&String> = containers
        .iter()
        .rev()
        .filter(|c| existing.contains(*c))
        .collect();
    if !gone.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(gone.iter().map(|s| s.as_str()));
        match docker(&args) {
            Ok(_) => done.extend(gone.iter().map(|c| format!("removed container {c}"))),
            Err(e) => done.push(format!("could not remove containers: {e:#}")),
        }
    }
    let existing = list(&["network", "ls", "--format", "{{.Name}}"]);
    for net in networks.iter().filter(|n| existing.contains(*n)) {
        match docker(&["network", "rm", net]) {
            Ok(_) => done.push(format!("removed Docker network {net}")),
            Err(e) => done.push(format!("could not remove Docker network {net}: {e:#}")),
        }
    }
    done
}

/// Containers and networks labelled with a run id that is not in `live` (and is wanted):
/// leftovers of runs that died before their ledger was written or released. Returns
/// `(containers, networks, run ids)`; empty when Docker is absent.
pub fn leftovers(
    live: &HashSet<RunId>,
    wanted: &dyn Fn(&RunId) -> bool,
) -> (Vec<String>, Vec<String>) {
    let keep = |line: &str| -> Option<String> {
        let (name, id) = line.split_once(' ')?;
        let id = RunId::parse(id.trim())?;
        (!live.contains(&id) && wanted(&id)).then(|| name.to_string())
    };
    let filter = format!("label={RUN_LABEL}");
    let containers = list(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        &format!("{{{{.Names}}}} {{{{.Label \"{RUN_LABEL}\"}}}}"),
    ])
    .iter()
    .filter_map(|l| keep(l))
    .collect();
    let networks = list(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        &format!("{{{{.Name}}}} {{{{.Label \"{RUN_LABEL}\"}}}}"),
    ])
    .iter()
    .filter_map(|l| keep(l))
    .collect();
    (containers, networks)
}

fn docker(args: &[&str]) -> Result<String> {
    sys::run("docker", args)
}

fn list(args: &[&str]) -> Vec<String> {
    docker(args)
        .map(|out| {
            out.lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// A server container that stopped as soon as it started, with its log's last lines.
fn exited_at_once(files: &NodeFiles) -> anyhow::Error {
    anyhow::anyhow!(
        "{} exited at once; last lines of {}:\n{}",
        files.spec.name,
        files.server_log().display(),
        sys::tail(&files.server_log(), 15)
    )
}

fn docker_logs(name: &str) -> String {
    std::process::Command::new("docker")
        .args(["logs", name])
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_run_id() {
        let id = RunId::parse("0a1b2c").unwrap();
        assert_eq!(id.node_netns("n2"), "fl-0a1b2c-n2");
    }
}
