//! Discovery and preflight: what the live cluster is, and whether it is fit to test.
//!
//! Every command here reads: `INFO`, `CLUSTER NODES`, `CLUSTER INFO`, `CLUSTER MYID`,
//! `SCAN`. A cluster that is not fit (a node down or unreachable, `cluster_state` not ok,
//! a slot without a primary, nodes that disagree, keys of the run's prefix already there)
//! ends the run with a harness error (255) before the run directory exists and before any
//! write reaches a node.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use faultline_history::info_replication::{info_fields, ReplicationInfo};
use faultline_history::ClusterView;
use faultline_nemeses::spec::Target as FaultTarget;
use faultline_workloads::access::{self, Credentials, Tls};
use faultline_workloads::query::query_text;
use serde::Serialize;
use serde_json::{json, Value};

use super::LiveSpec;
use crate::backend::NodeSpec;
use crate::cluster::Admin;
use crate::exit::Failure;
use crate::formed::Formed;
use crate::scenario::{Mode, Scenario};
use crate::standalone::StandaloneAdmin;

/// Budget for one question to a seed.
const SEED_TIMEOUT: Duration = Duration::from_secs(2);

/// One node of the live cluster, as discovered.
#[derive(Debug, Clone, Serialize)]
pub struct LiveNode {
    /// The name faultline gives it (`n1`: primary of the lowest slots, ...).
    pub name: String,
    /// `ip:port`, as the cluster announces it.
    pub addr: String,
    /// Cluster node id (cluster mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `primary` or `replica`.
    pub role: &'static str,
    /// Whose replica it is (a node name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// Slot ranges it serves (cluster primaries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<(u16, u16)>,
    /// Its cluster bus port, as announced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus_port: Option<u16>,
    /// `server_name` from `INFO server` (`valkey`, or `redis` when absent).
    pub server: String,
    /// Its version (`valkey_version`, else `redis_version`).
    pub version: String,
}

impl LiveNode {
    /// The node as the rest of the harness addresses it.
    pub fn spec(&self) -> Result<NodeSpec> {
        let (ip, port) = split_addr(&self.addr)?;
        Ok(NodeSpec {
            name: self.name.clone(),
            ip,
            port,
        })
    }
}

/// A live cluster that passed the preflight.
pub struct Target {
    /// The scenario's `live:` section, with the command line's overrides.
    pub spec: LiveSpec,
    /// Cluster or standalone, as discovered (and as the scenario says).
    pub mode: Mode,
    /// Every node, primaries first (name order).
    pub nodes: Vec<LiveNode>,
    /// The run's key prefix.
    pub key_prefix: String,
    /// Admin connections, made during the preflight, for the run's agreement checks.
    admin: Option<Formed>,
}

impl Target {
    /// The nodes as [`NodeSpec`]s.
    pub fn specs(&self) -> Vec<NodeSpec> {
        self.nodes
            .iter()
            .map(|n| n.spec().expect("checked at discovery"))
            .collect()
    }

    /// The server versions, as `server version` (distinct ones joined by `, `).
    pub fn version(&self) -> String {
        let mut seen: Vec<String> = Vec::new();
        for n in &self.nodes {
            let v = format!("{} {}", n.server, n.version);
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen.join(", ")
    }

    /// The admin connections (once; the run's `form` phase takes them).
    pub fn take_admin(&mut self) -> Option<Formed> {
        self.admin.take()
    }

    /// What the preflight found, for `preflight.json` and results.json (no secret: the
    /// auth section names where the password is, never the password).
    pub fn report(&self) -> Value {
        json!({
            "target": "live cluster",
            "seeds": self.spec.seeds,
            "access": self.spec.access.to_string(),
            "allow_faults": self.spec.allow_faults,
            "auth": self.spec.auth.as_ref().map(|a| json!({
                "user": a.user,
                "password_env": a.password_env,
                "password_file": a.password_file,
            })),
            "tls": self.spec.tls,
            "mode": match self.mode { Mode::Cluster => "cluster", Mode::Standalone => "standalone" },
            "key_prefix": self.key_prefix,
            "nodes": self.nodes,
        })
    }

    /// Forgets the credentials registered for the nodes.
    pub fn forget_credentials(&self) {
        access::forget(self.nodes.iter().map(|n| n.addr.as_str()));
        access::forget(self.spec.seeds.iter().map(String::as_str));
    }
}

/// `ip:port` into its parts.
fn split_addr(addr: &str) -> Result<(Ipv4Addr, u16)> {
    let (ip, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{addr:?} is not ip:port"))?;
    Ok((
        ip.parse()
            .with_context(|| format!("{addr}: faultline reaches live nodes over IPv4"))?,
        port.parse().with_context(|| format!("{addr}: bad port"))?,
    ))
}

/// A seed `HOST:PORT` as the IPv4 `ip:port` the cluster would name it by.
fn resolve(seed: &str) -> Result<String> {
    let addrs: Vec<SocketAddr> = seed
        .to_socket_addrs()
        .with_context(|| format!("resolving seed {seed}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .map(ToString::to_string)
        .ok_or_else(|| anyhow!("seed {seed} has no IPv4 address"))
}

/// Discovers the live cluster of `scenario` and checks it is fit to test; `None` when the
/// scenario is not live. `key_prefix` is the run's.
///
/// # Errors
/// Bad input (254) for credentials that cannot be read or fault targets naming nodes the
/// cluster lacks; harness error (255) for a cluster that is not fit, saying why.
pub async fn preflight(scenario: &Scenario, key_prefix: &str) -> Result<Option<Target>, Failure> {
    let Some(spec) = &scenario.live else {
        return Ok(None);
    };
    let credentials = match &spec.auth {
        Some(a) => Some(a.credentials().map_err(Failure::bad_input)?),
        None => None,
    };
    let tls = match &spec.tls {
        Some(t) => Some(t.load().map_err(Failure::bad_input)?),
        None => None,
    };
    let mut target = discover(spec, credentials.as_ref(), tls.as_ref(), key_prefix)
        .await
        .context("live cluster preflight (nothing was changed on the cluster)")?;
    if target.mode != scenario.mode {
        target.forget_credentials();
        return Err(Failure::from(anyhow!(
            "live cluster preflight: the cluster at {} runs in {} mode; the scenario says \
             `mode: {}`",
            spec.seeds.join(","),
            mode_name(target.mode),
            mode_name(scenario.mode)
        )));
    }
    if let Err(e) = check_fault_targets(scenario, target.nodes.len()) {
        target.forget_credentials();
        return Err(Failure::bad_input(e));
    }
    if let Err(e) = check(&mut target).await {
        target.forget_credentials();
        return Err(Failure::from(e.context(
            "live cluster preflight failed (nothing was changed on the cluster)",
        )));
    }
    Ok(Some(target))
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Cluster => "cluster",
        Mode::Standalone => "standalone",
    }
}

/// Fault targets naming `nK` must name a node the cluster has.
fn check_fault_targets(scenario: &Scenario, n: usize) -> Result<()> {
    for (i, fault) in scenario
        .nemesis
        .iter()
        .flat_map(|s| s.faults.iter())
        .enumerate()
    {
        for (key, target) in fault.targets() {
            if let FaultTarget::Nodes(names) = target {
                for name in names {
                    let k: usize = name.trim_start_matches('n').parse().unwrap_or(0);
                    if k == 0 || k > n {
                        bail!(
                            "nemesis.faults[{i}].{key}: no node {name:?}: the live cluster has \
                             n1 to n{n}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Asks the seeds what the cluster is, and names its nodes.
async fn discover(
    spec: &LiveSpec,
    credentials: Option<&Credentials>,
    tls: Option<&Tls>,
    key_prefix: &str,
) -> Result<Target> {
    let mut seeds = Vec::new();
    for seed in &spec.seeds {
        seeds.push(resolve(seed)?);
    }
    let register = |addrs: Vec<&str>| {
        if let Some(c) = credentials {
            access::register(addrs.iter().copied(), c);
        }
        if let Some(t) = tls {
            access::register_tls(addrs.iter().copied(), t);
        }
    };
    register(seeds.iter().map(String::as_str).collect());
    let mut errors = Vec::new();
    for seed in &seeds {
        let info: String =
            match query_text(seed, redis::cmd("INFO").arg("cluster"), SEED_TIMEOUT).await {
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!("{seed}: {}", explain(&e)));
                    continue;
                }
            };
        let cluster = info_fields(&info)
            .get("cluster_enabled")
            .map(String::as_str)
            == Some("1");
        let nodes = if cluster {
            discover_cluster(seed).await
        } else {
            discover_standalone(seed).await
        };
        let mut nodes = match nodes {
            Ok(n) => n,
            Err(e) => {
                errors.push(format!("{seed}: {e:#}"));
                continue;
            }
        };
        register(nodes.iter().map(|n| n.addr.as_str()).collect());
        for node in &mut nodes {
            node.spec()?;
            let text: String =
                query_text(&node.addr, redis::cmd("INFO").arg("server"), SEED_TIMEOUT)
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "{} ({}) is not reachable: {}",
                            node.name,
                            node.addr,
                            explain(&e)
                        )
                    })?;
            let f = info_fields(&text);
            node.server = f
                .get("server_name")
                .cloned()
                .unwrap_or_else(|| "redis".into());
            node.version = f
                .get("valkey_version")
                .or_else(|| f.get("redis_version"))
                .cloned()
                .unwrap_or_else(|| "?".into());
        }
        let mode = if cluster {
            Mode::Cluster
        } else {
            Mode::Standalone
        };
        let specs: Vec<NodeSpec> = nodes.iter().map(|n| n.spec()).collect::<Result<_>>()?;
        let admin = match mode {
            Mode::Cluster => {
                let mut a = Admin::new(&specs);
                a.learn_ids().await?;
                Formed::Cluster(a)
            }
            Mode::Standalone => Formed::Standalone(StandaloneAdmin::attach(&specs)),
        };
        return Ok(Target {
            spec: spec.clone(),
            mode,
            nodes,
            key_prefix: key_prefix.to_string(),
            admin: Some(admin),
        });
    }
    bail!("no seed node answered: {}", errors.join("; "))
}

/// A client error worded for a person: a refused or missing password says where the
/// password comes from.
fn explain(error: &str) -> String {
    let lower = error.to_ascii_lowercase();
    if lower.contains("noauth") {
        format!(
            "the node asks for a password ({error}): name where it is with live.auth \
             (--auth-password-env VAR or --auth-password-file FILE)"
        )
    } else if lower.contains("wrongpass") || lower.contains("authentication") {
        format!(
            "authentication failed, the server refused the user or password ({error}): check \
             the user and the password that live.auth (--auth-user, --auth-password-env, \
             --auth-password-file) names"
        )
    } else {
        error.to_string()
    }
}

/// The nodes of a cluster, from a seed's `CLUSTER NODES`: primaries by their lowest slot
/// (n1, n2, ...), then replicas round by round as faultline forms its own clusters (3x1:
/// n4 replicates n1).
async fn discover_cluster(seed: &str) -> Result<Vec<LiveNode>> {
    let text: String = query_text(seed, redis::cmd("CLUSTER").arg("NODES"), SEED_TIMEOUT)
        .await
        .map_err(|e| anyhow!("CLUSTER NODES: {}", explain(&e)))?;
    let view = ClusterView::parse(&text).map_err(|e| anyhow!("CLUSTER NODES: {e}"))?;
    if let Some(bad) = view
        .nodes
        .iter()
        .find(|l| l.is_failing() || l.is_unsettled())
    {
        bail!(
            "{} ({}) is flagged {} in {seed}'s view: the cluster is not healthy",
            bad.addr,
            bad.id,
            bad.flags.join(",")
        );
    }
    let mut primaries: Vec<_> = view.nodes.iter().filter(|l| l.is_primary()).collect();
    primaries.sort_by_key(|l| (l.slots.first().map_or(u16::MAX, |s| s.0), l.addr.clone()));
    let mut out: Vec<LiveNode> = Vec::new();
    for (i, p) in primaries.iter().enumerate() {
        out.push(LiveNode {
            name: format!("n{}", i + 1),
            addr: p.addr.clone(),
            id: Some(p.id.clone()),
            role: "primary",
            replica_of: None,
            slots: p.slots.clone(),
            bus_port: p.bus_port,
            server: String::new(),
            version: String::new(),
        });
    }
    let mut replicas: Vec<Vec<_>> = primaries
        .iter()
        .map(|p| {
            let mut r: Vec<_> = view
                .nodes
                .iter()
                .filter(|l| l.is_replica() && l.primary_id.as_deref() == Some(p.id.as_str()))
                .collect();
            r.sort_by(|a, b| a.addr.cmp(&b.addr));
            r
        })
        .collect();
    let orphans: Vec<_> = view
        .nodes
        .iter()
        .filter(|l| {
            l.is_replica()
                && !primaries
                    .iter()
                    .any(|p| l.primary_id.as_deref() == Some(p.id.as_str()))
        })
        .collect();
    if let Some(o) = orphans.first() {
        bail!(
            "replica {} follows no known primary ({:?})",
            o.addr,
            o.primary_id
        );
    }
    let rounds = replicas.iter().map(Vec::len).max().unwrap_or(0);
    for r in 0..rounds {
        for (i, list) in replicas.iter_mut().enumerate() {
            if let Some(line) = list.get(r) {
                out.push(LiveNode {
                    name: format!("n{}", out.len() + 1),
                    addr: line.addr.clone(),
                    id: Some(line.id.clone()),
                    role: "replica",
                    replica_of: Some(format!("n{}", i + 1)),
                    slots: Vec::new(),
                    bus_port: line.bus_port,
                    server: String::new(),
                    version: String::new(),
                });
            }
        }
    }
    Ok(out)
}

/// The nodes of a standalone group: the primary (n1, found through the seed's
/// `INFO replication` if the seed is a replica), then its replicas in its `slaveN` order.
async fn discover_standalone(seed: &str) -> Result<Vec<LiveNode>> {
    let info = |addr: String| async move {
        query_text::<String>(&addr, redis::cmd("INFO").arg("replication"), SEED_TIMEOUT)
            .await
            .map(|t| ReplicationInfo::parse(&t))
            .map_err(|e| anyhow!("{addr}: INFO replication: {}", explain(&e)))
    };
    let mut primary = seed.to_string();
    let mut repl = info(primary.clone()).await?;
    if let Some(up) = repl.primary_addr() {
        primary = up;
        repl = info(primary.clone()).await?;
    }
    if !repl.is_primary() {
        bail!("{primary} is not a primary, and not a replica of one");
    }
    let mut out = vec![LiveNode {
        name: "n1".into(),
        addr: primary.clone(),
        id: None,
        role: "primary",
        replica_of: None,
        slots: Vec::new(),
        bus_port: None,
        server: String::new(),
        version: String::new(),
    }];
    for r in repl.replicas() {
        let addr = r
            .addr()
            .ok_or_else(|| anyhow!("{primary} lists a replica without ip or port"))?;
        out.push(LiveNode {
            name: format!("n{}", out.len() + 1),
            addr,
            id: None,
            role: "replica",
            replica_of: Some("n1".into()),
            slots: Vec::new(),
            bus_port: None,
            server: String::new(),
            version: String::new(),
        });
    }
    Ok(out)
}

/// The checks on a discovered cluster: every node up and agreeing (cluster mode: every
/// node `cluster_state:ok`, every slot covered, the same slot map and roles everywhere,
/// replicas' links up; standalone: one primary, replicas in sync), and no key of the
/// run's prefix already on a primary.
async fn check(target: &mut Target) -> Result<()> {
    let problem = match target.admin.as_mut() {
        Some(Formed::Cluster(a)) => a.disagreement(None).await,
        Some(Formed::Standalone(a)) => a.disagreement().await,
        None => None,
    };
    if let Some(p) = problem {
        bail!("the cluster is not healthy: {p}");
    }
    for node in target.nodes.iter().filter(|n| n.role == "primary") {
        let found = super::finish::scan_prefix(&node.addr, &target.key_prefix, 1).await?;
        if let Some(key) = found.first() {
            bail!(
                "{} already holds {key:?}, a key with this run's prefix {}: refusing to run",
                node.name,
                target.key_prefix
            );
        }
    }
    Ok(())
}
