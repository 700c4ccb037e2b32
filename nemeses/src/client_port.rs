//! Faults a client may cause through a node's client port alone, the faults of a live
//! cluster reached with access `none`:
//!
//! - `client-pause`: `CLIENT PAUSE <ms> WRITE|ALL` on the target nodes; the heal sends
//!   `CLIENT UNPAUSE`. The pause is asked for `max_ms`, so it ends by itself even if
//!   faultline dies before healing it.
//! - `client-kill`: `CLIENT KILL TYPE normal SKIPME yes` on the target nodes: every normal
//!   client connection (the workload's among them) is closed at once. Not healed.
//! - `debug-sleep`: `DEBUG SLEEP <s>` on the target nodes: the server blocks for that long.
//!   A server that does not allow `DEBUG` (`enable-debug-command no`, Valkey's and
//!   Redis 7's default) refuses; the refusal is recorded as the op's error.
//!
//! Each records the nodes, the command and every node's reply verbatim.

use std::time::Duration;

use faultline_history::bounds::{Bounded, PositiveF64};
use faultline_history::FaultOps;
use faultline_workloads::query::{error_text, query, QueryError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::fault::{Applied, BoxFuture, Ctx, Fault, Heal, Outcome};
use crate::package::{FaultPackage, ModeNeed, Needs};
use crate::spec::Target;
use crate::target;

/// Which commands `CLIENT PAUSE` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseMode {
    /// Writes (and other commands that may change data) wait; reads go on.
    #[default]
    Write,
    /// Every command waits.
    All,
}

/// `client-pause`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPauseSpec {
    /// Which nodes (default one).
    #[serde(default)]
    pub target: Target,
    /// Draw this many of the target's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Bounded<1, 1000>>,
    /// `WRITE` or `ALL`.
    #[serde(default)]
    pub mode: PauseMode,
    /// The pause's own bound, ms: it ends by itself then, healed or not.
    #[serde(default = "thirty_s")]
    pub max_ms: Bounded<1, 3_600_000>,
}

fn thirty_s() -> Bounded<1, 3_600_000> {
    Bounded(30_000)
}

impl Default for ClientPauseSpec {
    fn default() -> Self {
        ClientPauseSpec {
            target: Target::default(),
            count: None,
            mode: PauseMode::Write,
            max_ms: thirty_s(),
        }
    }
}

/// `client-kill` (and the node choice of `debug-sleep`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKillSpec {
    /// Which nodes (default one).
    #[serde(default)]
    pub target: Target,
    /// Draw this many of the target's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Bounded<1, 1000>>,
}

/// `debug-sleep`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugSleepSpec {
    /// Which nodes (default one).
    #[serde(default)]
    pub target: Target,
    /// Draw this many of the target's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Bounded<1, 1000>>,
    /// Seconds the server sleeps.
    #[serde(default = "one_s")]
    pub seconds: PositiveF64,
}

fn one_s() -> PositiveF64 {
    PositiveF64(1.0)
}

impl Default for DebugSleepSpec {
    fn default() -> Self {
        DebugSleepSpec {
            target: Target::default(),
            count: None,
            seconds: one_s(),
        }
    }
}

/// The target's nodes for this step.
async fn nodes(
    ctx: &Ctx,
    target: &Target,
    count: Option<Bounded<1, 1000>>,
    draw: u64,
) -> Result<Vec<String>, String> {
    let roles = match target {
        Target::Primaries | Target::Replicas => Some(ctx.roles().await?),
        _ => None,
    };
    target::resolve(
        target,
        count.map(|c| c.get() as usize),
        &ctx.names(),
        roles.as_ref(),
        draw,
    )
}

/// What one node made of a command.
enum Sent {
    /// It replied (not with an error).
    Done(String),
    /// It certainly did not run it: no connection, or an error reply.
    Refused(String),
    /// Nobody knows: a time-out or a broken connection after sending.
    Unknown(String),
}

/// Sends `cmd` to each node (all at once), `timeout` for connecting and for the reply;
/// the nodes that replied, every node's reply or error, and the outcome (ok if every node
/// replied, fail if every other one certainly did not run it, else info) with its error.
async fn send_each(
    ctx: &Ctx,
    nodes: &[String],
    cmd: &redis::Cmd,
    timeout: Duration,
) -> (Vec<String>, Value, Outcome, Option<String>) {
    let addrs: Vec<(String, String)> = nodes
        .iter()
        .filter_map(|n| {
            let info = ctx.control.nodes().iter().find(|i| &i.name == n)?;
            Some((n.clone(), info.addr()))
        })
        .collect();
    let replies = futures_join(addrs.iter().map(|(_, addr)| {
        let cmd = cmd.clone();
        let addr = addr.clone();
        async move {
            match tokio::time::timeout(timeout * 2, query::<redis::Value>(&addr, &cmd, timeout))
                .await
            {
                Ok(Ok(v)) => Sent::Done(format!("{v:?}")),
                Ok(Err(QueryError::Connect(e))) => Sent::Refused(e.to_string()),
                Ok(Err(QueryError::Reply(e))) if e.code().is_some() => {
                    Sent::Refused(error_text(&e))
                }
                Ok(Err(QueryError::Reply(e))) => Sent::Unknown(e.to_string()),
                Err(_) => Sent::Unknown("timed out".into()),
            }
        }
    }))
    .await;
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let mut unknown = false;
    let mut by_node = serde_json::Map::new();
    for ((name, _), reply) in addrs.iter().zip(replies) {
        let text = match reply {
            Sent::Done(v) => {
                done.push(name.clone());
                v
            }
            Sent::Refused(e) => {
                errors.push(format!("{name}: {e}"));
                e
            }
            Sent::Unknown(e) => {
                unknown = true;
                errors.push(format!("{name}: {e}"));
                e
            }
        };
        by_node.insert(name.clone(), json!(text));
    }
    let outcome = if errors.is_empty() {
        Outcome::Ok
    } else if done.is_empty() && !unknown {
        Outcome::Fail
    } else {
        Outcome::Info
    };
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    (done, Value::Object(by_node), outcome, error)
}

/// The bound for one client-port command: the nemesis's query budget, at least 2 s (the
/// commands are instant; a loaded machine is not).
fn bound(ctx: &Ctx) -> Duration {
    ctx.query_timeout.max(Duration::from_secs(2))
}

/// Runs the futures concurrently, results in order.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a client-port fault task panicked"));
    }
    out
}

/// `CLIENT PAUSE` on the target nodes.
pub struct ClientPause(ClientPauseSpec);

impl Fault for ClientPause {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let spec = &self.0;
            let mode = match spec.mode {
                PauseMode::Write => "WRITE",
                PauseMode::All => "ALL",
            };
            let params = json!({"target": spec.target.to_string(), "mode": mode, "max_ms": spec.max_ms.get()});
            let nodes = match nodes(ctx, &spec.target, spec.count, draw).await {
                Ok(n) => n,
                Err(e) => return Applied::failed(params, e),
            };
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("PAUSE").arg(spec.max_ms.get()).arg(mode);
            let (done, replies, outcome, error) = send_each(ctx, &nodes, &cmd, bound(ctx)).await;
            Applied {
                outcome,
                value: json!({"target": spec.target.to_string(), "mode": mode,
                    "max_ms": spec.max_ms.get(), "nodes": nodes, "done": done, "replies": replies}),
                error,
                heal: (!done.is_empty())
                    .then(|| Box::new(Unpause { nodes: done }) as Box<dyn Heal>),
            }
        })
    }
}

/// `CLIENT UNPAUSE` on the nodes a pause reached.
struct Unpause {
    nodes: Vec<String>,
}

impl Heal for Unpause {
    fn name(&self) -> &'static str {
        <ClientPause as FaultPackage>::OPS.heals[0]
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("UNPAUSE");
            let (_, replies, _, error) = send_each(ctx, &self.nodes, &cmd, bound(ctx)).await;
            match error {
                None => Ok(json!({"nodes": self.nodes, "replies": replies})),
                Some(e) => Err(e),
            }
        })
    }
}

/// `CLIENT KILL TYPE normal SKIPME yes` on the target nodes.
pub struct ClientKill(ClientKillSpec);

impl Fault for ClientKill {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let spec = &self.0;
            let params = json!({"target": spec.target.to_string()});
            let nodes = match nodes(ctx, &spec.target, spec.count, draw).await {
                Ok(n) => n,
                Err(e) => return Applied::failed(params, e),
            };
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .arg("SKIPME")
                .arg("yes");
            let (done, replies, outcome, error) = send_each(ctx, &nodes, &cmd, bound(ctx)).await;
            Applied {
                outcome,
                value: json!({"target": spec.target.to_string(), "nodes": nodes,
                    "done": done, "replies": replies}),
                error,
                heal: None,
            }
        })
    }
}

/// `DEBUG SLEEP` on the target nodes.
pub struct DebugSleep(DebugSleepSpec);

impl Fault for DebugSleep {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let spec = &self.0;
            let seconds = spec.seconds.get();
            let params = json!({"target": spec.target.to_string(), "seconds": seconds});
            let nodes = match nodes(ctx, &spec.target, spec.count, draw).await {
                Ok(n) => n,
                Err(e) => return Applied::failed(params, e),
            };
            let mut cmd = redis::cmd("DEBUG");
            cmd.arg("SLEEP").arg(seconds);
            // The reply comes when the sleep ends.
            let timeout = bound(ctx) + Duration::from_secs_f64(seconds);
            let (done, replies, outcome, error) = send_each(ctx, &nodes, &cmd, timeout).await;
            Applied {
                outcome,
                value: json!({"target": spec.target.to_string(), "seconds": seconds,
                    "nodes": nodes, "done": done, "replies": replies}),
                error,
                heal: None,
            }
        })
    }
}

/// Through the client port only, in either mode.
const NEEDS: Needs = Needs {
    mode: ModeNeed::Any,
    bus_proxy: false,
    node_host: false,
};

impl FaultPackage for ClientPause {
    type Spec = ClientPauseSpec;
    const OPS: FaultOps = FaultOps::new(&["client-pause"])
        .with_heals(&["client-unpause"])
        .disrupting_failovers();
    const NEEDS: Needs = NEEDS;
    fn targets(spec: &ClientPauseSpec) -> Vec<(&'static str, &Target)> {
        vec![("target", &spec.target)]
    }
    fn build(spec: &ClientPauseSpec) -> Box<dyn Fault> {
        Box::new(ClientPause(spec.clone()))
    }
}

impl FaultPackage for ClientKill {
    type Spec = ClientKillSpec;
    const OPS: FaultOps = FaultOps::new(&["client-kill"]);
    const NEEDS: Needs = NEEDS;
    fn targets(spec: &ClientKillSpec) -> Vec<(&'static str, &Target)> {
        vec![("target", &spec.target)]
    }
    fn build(spec: &ClientKillSpec) -> Box<dyn Fault> {
        Box::new(ClientKill(spec.clone()))
    }
}

impl FaultPackage for DebugSleep {
    type Spec = DebugSleepSpec;
    const OPS: FaultOps = FaultOps::new(&["debug-sleep"]);
    const NEEDS: Needs = NEEDS;
    fn targets(spec: &DebugSleepSpec) -> Vec<(&'static str, &Target)> {
        vec![("target", &spec.target)]
    }
    fn build(spec: &DebugSleepSpec) -> Box<dyn Fault> {
        Box::new(DebugSleep(spec.clone()))
    }
}
