//! Manual failover: `CLUSTER FAILOVER [FORCE|TAKEOVER]` sent to a replica of a chosen
//! primary, then watched until the replica calls itself primary in its own
//! `CLUSTER NODES` (or the time-out passes).
//!
//! The reply is recorded verbatim: an error such as Garnet's `ERR Node is not configured
//! as a REPLICA` (microsoft/garnet#1044) is a finding, not a harness failure.

use std::time::{Duration, Instant};

use faultline_history::bounds::PositiveF64;
use faultline_history::{ClusterView, FaultOps};
use faultline_workloads::query::{error_text, query, QueryError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fault::{Applied, BoxFuture, Ctx, Fault, Outcome};
use crate::package::{FaultPackage, ModeNeed, Needs};
use crate::roles::cluster_nodes;
use crate::spec::Target;
use crate::target;

/// How `CLUSTER FAILOVER` is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Coordinated with the primary (it must be reachable).
    #[default]
    Default,
    /// Without the primary's agreement, still with the other primaries' votes.
    Force,
    /// Without any votes: the replica bumps the epoch itself.
    Takeover,
}

impl FailoverMode {
    /// The argument `CLUSTER FAILOVER` takes, if any.
    pub fn arg(self) -> Option<&'static str> {
        match self {
            FailoverMode::Default => None,
            FailoverMode::Force => Some("FORCE"),
            FailoverMode::Takeover => Some("TAKEOVER"),
        }
    }
}

/// A manual failover.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverSpec {
    /// How the failover is asked.
    #[serde(default)]
    pub mode: FailoverMode,
    /// The primary whose replica is promoted: one of these is drawn (default primaries).
    #[serde(default = "primaries")]
    pub target: Target,
    /// Seconds to wait for the replica to show itself as primary in CLUSTER NODES.
    #[serde(default = "ten")]
    pub timeout_s: PositiveF64,
    /// Send the failover to this node (a one-node list), whatever the roles say: seed
    /// 004 fails back to a restarted old primary, which may not know it is a replica
    /// (microsoft/garnet#1044). `target` is then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Target>,
}

fn primaries() -> Target {
    Target::Primaries
}

impl Default for FailoverSpec {
    fn default() -> Self {
        FailoverSpec {
            mode: FailoverMode::Default,
            target: Target::Primaries,
            timeout_s: ten(),
            to: None,
        }
    }
}

fn ten() -> PositiveF64 {
    PositiveF64(10.0)
}

/// How often the replica's view is polled while waiting for the promotion.
const POLL: Duration = Duration::from_millis(20);

/// A manual failover fault.
pub struct Failover(FailoverSpec);

impl Failover {
    /// A failover with these parameters.
    pub fn new(spec: FailoverSpec) -> Failover {
        Failover(spec)
    }
}

impl Fault for Failover {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(self.run(ctx, draw))
    }
}

impl Failover {
    async fn run(&self, ctx: &Ctx, draw: u64) -> Applied {
        let spec = &self.0;
        let mode = spec.mode.arg().unwrap_or("DEFAULT");
        let params = json!({ "mode": mode, "target": spec.target.to_string() });
        let picked = match &spec.to {
            Some(to) => aim_at(ctx, to, draw).await,
            None => pick_shard(ctx, &spec.target, draw).await,
        };
        let (primary, replica, _) = match picked {
            Ok(shard) => shard,
            Err(e) => return Applied::failed(params, e),
        };
        let Some(node) = ctx
            .control
            .nodes()
            .iter()
            .find(|n| n.name == replica)
            .cloned()
        else {
            return Applied::failed(params, format!("unknown node {replica}"));
        };

        let started = Instant::now();
        let reply = send_failover(&node.addr(), spec.mode.arg(), ctx.query_timeout).await;
        let mut value = json!({
            "mode": mode,
            "target": spec.target.to_string(),
            "primary": primary,
            "replica": replica,
        });
        let reply_text = match &reply {
            Ok(s) => s.clone(),
            Err(e) => e.clone(),
        };
        value["reply"] = json!(reply_text);
        if let Err(e) = reply {
            value["promoted"] = json!(false);
            if !e.starts_with("connection:") {
                // The refusing node's own view of itself is the evidence (seed 004: a
                // restarted old primary that still calls itself primary).
                if let Ok(text) = cluster_nodes(&node, ctx.query_timeout).await {
                    if let Some(me) = ClusterView::parse(&text)
                        .ok()
                        .and_then(|v| v.myself().cloned())
                    {
                        value["role"] = json!(if me.is_primary() {
                            "primary"
                        } else {
                            "replica"
                        });
                        value["myself"] = json!(me.flags.join(","));
                        value["slots"] = json!(me.slot_count());
                    }
                }
            }
            return Applied {
                outcome: if e.starts_with("connection:") {
                    Outcome::Info
                } else {
                    Outcome::Fail
                },
                value,
                error: Some(e),
                heal: None,
            };
        }
        let timeout = Duration::from_secs_f64(spec.timeout_s.get());
        let promoted = wait_promoted(&node, started, timeout, ctx.query_timeout).await;
        value["promoted"] = json!(promoted);
        value["took_ms"] = json!(started.elapsed().as_millis() as u64);
        if promoted {
            Applied {
                outcome: Outcome::Ok,
                value,
                error: None,
                heal: None,
            }
        } else {
            Applied {
                outcome: Outcome::Info,
                value,
                error: Some(format!(
                    "{replica} answered {reply_text} but was not primary within {:.1}s",
                    timeout.as_secs_f64()
                )),
                heal: None,
            }
        }
    }
}

/// The shard of a failover sent to a named node (`to`): that node, and the primary
/// the roles say it replicates (`-` when they say it is none's replica).
async fn aim_at(
    ctx: &Ctx,
    to: &crate::spec::Target,
    draw: u64,
) -> Result<(String, String, Vec<String>), String> {
    let node = target::resolve(to, Some(1), &ctx.names(), None, draw)?
        .into_iter()
        .next()
        .ok_or("`to` names no node")?;
    let primary = ctx.roles().await.ok().and_then(|r| {
        r.replicas_of
            .iter()
            .find(|(_, rs)| rs.contains(&node))
            .map(|(p, _)| p.clone())
    });
    Ok((
        primary.unwrap_or_else(|| "-".into()),
        node.clone(),
        vec![node],
    ))
}

/// Draws the shard a failover acts on: a primary among `target`'s nodes that has a
/// replica right now, and one of its replicas. Returns `(primary, replica, all its
/// replicas)`.
///
/// # Errors
/// When no node answers, or no targeted primary has a replica.
pub(crate) async fn pick_shard(
    ctx: &Ctx,
    target: &crate::spec::Target,
    draw: u64,
) -> Result<(String, String, Vec<String>), String> {
    let roles = ctx.roles().await?;
    let wanted = target::resolve(target, None, &ctx.names(), Some(&roles), draw)?;
    let with_replicas: Vec<&String> = wanted
        .iter()
        .filter(|p| roles.replicas_of.get(*p).is_some_and(|r| !r.is_empty()))
        .collect();
    if with_replicas.is_empty() {
        return Err(format!("no primary among {wanted:?} has a replica"));
    }
    let mut rng = StdRng::seed_from_u64(draw);
    let primary = with_replicas[rng.random_range(0..with_replicas.len())].clone();
    let replicas = roles.replicas_of[&primary].clone();
    let replica = replicas[rng.random_range(0..replicas.len())].clone();
    Ok((primary, replica, replicas))
}

/// Polls `node`'s own CLUSTER NODES until it calls itself primary, or until `timeout`
/// has passed since `started`. Returns whether it did.
pub(crate) async fn wait_promoted(
    node: &crate::control::NodeInfo,
    started: Instant,
    timeout: Duration,
    query_timeout: Duration,
) -> bool {
    loop {
        if let Ok(text) = cluster_nodes(node, query_timeout).await {
            if ClusterView::parse(&text)
                .ok()
                .and_then(|v| v.myself().map(|m| m.is_primary()))
                .unwrap_or(false)
            {
                return true;
            }
        }
        if started.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends `CLUSTER FAILOVER [mode]`; `Ok(reply)` or `Err(error text)`, where errors that are
/// not replies from the server start with `connection:`.
pub(crate) async fn send_failover(
    addr: &str,
    mode: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("FAILOVER");
    if let Some(m) = mode {
        cmd.arg(m);
    }
    query::<String>(addr, &cmd, timeout)
        .await
        .map_err(failover_error)
}

/// A failover command's error as the history records it: the server's refusal as
/// `CODE detail`, anything else (never connected, broken, timed out) as `connection: ...`.
pub(crate) fn failover_error(e: QueryError) -> String {
    match e {
        QueryError::Reply(e) if e.code().is_some() => error_text(&e),
        QueryError::Connect(e) | QueryError::Reply(e) => format!("connection: {e}"),
    }
}

impl FaultPackage for Failover {
    type Spec = FailoverSpec;
    const OPS: FaultOps = FaultOps::new(&["failover"]).failing_over();
    const NEEDS: Needs = Needs {
        mode: ModeNeed::Cluster,
        bus_proxy: false,
        node_host: false,
    };
    fn targets(spec: &FailoverSpec) -> Vec<(&'static str, &Target)> {
        let mut t = vec![("target", &spec.target)];
        if let Some(to) = &spec.to {
            t.push(("to", to));
        }
        t
    }
    fn build(spec: &FailoverSpec) -> Box<dyn Fault> {
        Box::new(Failover::new(spec.clone()))
    }
}
