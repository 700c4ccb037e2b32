//! The start-up comparison: time to a converged cluster, faultline's own bring-up against
//! six servers started by hand (with the backend's spawner) and joined with
//! `redis-cli --cluster create`.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tokio::time::Instant;

use super::stats::median;
use super::{bring_up, bring_up_on, node_names, Setup, PRIMARIES, REPLICAS};
use crate::backend::spawn::Spawn;
use crate::backend::NodeSpec;
use crate::cluster::Admin;
use crate::scenario::BackendName;
use crate::sys;

/// What "converged" means on the hand-made side, for the report.
const CONVERGED: &str = "every node answers, reports cluster_state:ok, knows all 6 nodes with no handshake/fail flag, all agree on slot owners and roles, every replica's master_link_status is up (Admin::wait_agreed, the check faultline's own formation ends with)";

/// The start-up comparison.
#[derive(Debug, Serialize)]
pub(super) struct Startup {
    /// Wall time from just before `backend::create` to `Admin::form` returning.
    pub(super) faultline_s: Vec<f64>,
    /// Wall time from writing the first config file to the same agreement check passing.
    pub(super) by_hand_s: Vec<f64>,
    pub(super) faultline_median_s: f64,
    pub(super) by_hand_median_s: f64,
    /// faultline / by hand (below 1: faultline is faster).
    pub(super) ratio: f64,
    /// The end condition on both sides.
    pub(super) converged_when: &'static str,
}

/// Start-up on the docker backend against the local one, the same 3x1 cluster formed the
/// same way (start to converged).
#[derive(Debug, Serialize)]
pub(super) struct DockerStartup {
    /// The image the docker side ran.
    pub(super) image: String,
    /// Wall time from just before `backend::create` to `Admin::form` returning.
    pub(super) docker_s: Vec<f64>,
    /// The same on the local backend, in the same repetitions.
    pub(super) local_s: Vec<f64>,
    pub(super) docker_median_s: f64,
    pub(super) local_median_s: f64,
    /// docker / local.
    pub(super) ratio: f64,
}

/// `k` repetitions of docker and local start-ups, alternating which goes first. The image
/// of the host's server version is built first if it is not cached (untimed).
///
/// # Errors
/// No image can be had, or a start-up fails (what it started is removed first).
pub(super) async fn docker_startup(k: usize, setup: &Setup, dir: &Path) -> Result<DockerStartup> {
    let (flavor, version) = (setup.flavor.name().to_string(), setup.version.clone());
    let binary = setup.binary.clone();
    let rootfs = tokio::task::spawn_blocking(move || {
        if flavor == "faultline" {
            crate::node_image::ensure(&binary, &version)
        } else {
            crate::rootfs::RootFs::ensure(&flavor, &version, true)
        }
    })
    .await
    .context("building the image")??;
    let mut docker = Vec::new();
    let mut local = Vec::new();
    for rep in 1..=k {
        let docker_rep = async {
            let run_dir = dir.join(format!("docker-startup-{rep}"));
            let start = Instant::now();
            let mut backend = bring_up_on(setup, &run_dir, BackendName::Docker, Some(&rootfs))
                .await
                .with_context(|| format!("docker start-up {rep}"))?;
            let took = start.elapsed().as_secs_f64();
            backend.teardown()?;
            eprintln!("bench: start-up {rep}: docker {took:.2}s");
            Ok::<f64, anyhow::Error>(took)
        };
        if rep % 2 == 1 {
            docker.push(docker_rep.await?);
            local.push(faultline_startup(setup, dir, 100 + rep).await?);
        } else {
            local.push(faultline_startup(setup, dir, 100 + rep).await?);
            docker.push(docker_rep.await?);
        }
    }
    let (m_docker, m_local) = (median(&docker), median(&local));
    Ok(DockerStartup {
        image: rootfs.image.clone(),
        docker_s: docker,
        local_s: local,
        docker_median_s: m_docker,
        local_median_s: m_local,
        ratio: m_docker / m_local,
    })
}

/// `k` repetitions of both start-ups, alternating which goes first.
///
/// # Errors
/// The first start-up that fails (what it started is removed first).
pub(super) async fn startup(k: usize, setup: &Setup, dir: &Path) -> Result<Startup> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for rep in 1..=k {
        if rep % 2 == 1 {
            ours.push(faultline_startup(setup, dir, rep).await?);
            theirs.push(by_hand_startup(setup, dir, rep).await?);
        } else {
            theirs.push(by_hand_startup(setup, dir, rep).await?);
            ours.push(faultline_startup(setup, dir, rep).await?);
        }
    }
    let (m_ours, m_theirs) = (median(&ours), median(&theirs));
    Ok(Startup {
        faultline_s: ours,
        by_hand_s: theirs,
        faultline_median_s: m_ours,
        by_hand_median_s: m_theirs,
        ratio: m_ours / m_theirs,
        converged_when: CONVERGED,
    })
}

/// Seconds for faultline to bring up a converged cluster (repetition `rep`, logs under
/// `dir/startup-REP/`); the teardown after is not timed.
async fn faultline_startup(setup: &Setup, dir: &Path, rep: usize) -> Result<f64> {
    let start = Instant::now();
    let mut backend = bring_up(setup, &dir.join(format!("startup-{rep}")))
        .await
        .with_context(|| format!("faultline start-up {rep}"))?;
    let took = start.elapsed().as_secs_f64();
    backend.teardown()?;
    eprintln!("bench: start-up {rep}: faultline {took:.2}s");
    Ok(took)
}

/// Seconds for the by-hand recipe: six servers on 127.0.0.1 with the same config text,
/// `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`, then polling until
/// the cluster agrees ([`CONVERGED`]); everything under `dir/byhand-REP/`. The servers are
/// killed afterwards, untimed.
async fn by_hand_startup(setup: &Setup, dir: &Path, rep: usize) -> Result<f64> {
    let dir = &dir.join(format!("byhand-{rep}"));
    let took = by_hand(setup, dir)
        .await
        .with_context(|| format!("by-hand start-up {rep} (see {})", dir.display()))?;
    eprintln!("bench: start-up {rep}: by hand {took:.2}s");
    Ok(took)
}

/// [`by_hand_startup`] in `dir`.
async fn by_hand(setup: &Setup, dir: &Path) -> Result<f64> {
    let ports = free_ports(PRIMARIES * (1 + REPLICAS))?;
    let start = Instant::now();
    let mut servers = HandMade::default();
    let mut nodes = Vec::new();
    for (name, port) in node_names().into_iter().zip(ports) {
        let node_dir = std::path::absolute(dir.join(&name))
            .with_context(|| format!("resolving {}", dir.display()))?;
        servers.start(setup, &node_dir, port)?;
        nodes.push(NodeSpec {
            name,
            ip: Ipv4Addr::LOCALHOST,
            port,
        });
    }
    let deadline = Instant::now() + setup.form_timeout();
    let mut admin = Admin::new(&nodes);
    servers.wait_up(&mut admin, nodes.len(), deadline).await?;
    cluster_create(setup, &nodes, dir, deadline).await?;
    admin
        .wait_agreed(None, deadline)
        .await
        .context("waiting for the hand-made cluster to agree")?;
    let took = start.elapsed().as_secs_f64();
    drop(servers);
    Ok(took)
}

/// `n` ports on 127.0.0.1 that are free now, and whose cluster bus port (`port + 10000`)
/// is free too. All are held while choosing, so no two are the same.
///
/// # Errors
/// If the kernel hands out no suitable port after many tries.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..1000 {
        let client = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
        let port = client.local_addr()?.port();
        let bus = port
            .checked_add(10_000)
            .and_then(|bus_port| TcpListener::bind((Ipv4Addr::LOCALHOST, bus_port)).ok());
        if let Some(bus) = bus {
            held.push((client, bus));
            ports.push(port);
            if ports.len() == n {
                return Ok(ports);
            }
        }
    }
    bail!("found no {n} free port pairs (port, port+10000) on 127.0.0.1")
}

/// Servers started by hand, each in its own process group. Dropping it SIGKILLs and reaps
/// every one, on every path out of the by-hand start-up.
#[derive(Default)]
struct HandMade {
    children: Vec<(Child, PathBuf)>,
}

impl HandMade {
    /// Writes `data_dir/server.conf` (the flavor's config, bound to 127.0.0.1:`port`) and
    /// starts the server on it.
    fn start(&mut self, setup: &Setup, data_dir: &Path, port: u16) -> Result<()> {
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let conf = data_dir.join("server.conf");
        fs::write(
            &conf,
            setup.node_config(Ipv4Addr::LOCALHOST, port, data_dir),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        // The backend's spawner, on this machine's network and root: its own process
        // group (a Ctrl-C reaches faultline, which then kills these in order), and death
        // with faultline even by SIGKILL.
        let child = Spawn {
            binary: &setup.binary,
            args: &[conf.display().to_string()],
            cwd: data_dir,
            console: data_dir.join("console.log"),
            netns: None,
            chroot: None,
            die_with_parent: true,
        }
        .start()
        .with_context(|| format!("starting {}", setup.binary.display()))?;
        self.children.push((child, data_dir.to_path_buf()));
        Ok(())
    }

    /// A server that has exited, with the end of its log.
    fn exited(&mut self) -> Option<String> {
        self.children.iter_mut().find_map(|(child, dir)| {
            let status = child.try_wait().ok()??;
            Some(format!(
                "{} exited ({status}): {}",
                dir.display(),
                sys::tail(&dir.join("server.log"), 10).trim_end()
            ))
        })
    }

    /// Waits until every server answers PING.
    ///
    /// # Errors
    /// A server exits, or one does not answer by `deadline`.
    async fn wait_up(&mut self, admin: &mut Admin, n: usize, deadline: Instant) -> Result<()> {
        for i in 0..n {
            loop {
                if let Some(exit) = self.exited() {
                    bail!("server process died while starting: {exit}");
                }
                match admin.cmd::<String>(i, &redis::cmd("PING")).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        Ok(())
    }
}

impl Drop for HandMade {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `redis-cli --cluster create` over `nodes` with one replica per primary; its output goes
/// to `dir/redis-cli.log`.
///
/// # Errors
/// redis-cli fails or does not finish by `deadline`.
async fn cluster_create(
    setup: &Setup,
    nodes: &[NodeSpec],
    dir: &Path,
    deadline: Instant,
) -> Result<()> {
    let mut args = vec!["--cluster".to_string(), "create".into()];
    args.extend(nodes.iter().map(NodeSpec::addr));
    args.extend(["--cluster-replicas".into(), REPLICAS.to_string()]);
    args.push("--cluster-yes".into());
    let line = format!("{} {}", setup.cli.display(), args.join(" "));
    let run = tokio::process::Command::new(&setup.cli)
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout_at(deadline, run)
        .await
        .map_err(|_| anyhow!("`{line}` did not finish in time"))?
        .with_context(|| format!("running {}", setup.cli.display()))?;
    let log = dir.join("redis-cli.log");
    fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat())
        .with_context(|| format!("writing {}", log.display()))?;
    if !out.status.success() {
        bail!("`{line}` failed ({}); see {}", out.status, log.display());
    }
    Ok(())
}
