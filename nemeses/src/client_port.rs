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
use faultline_workloads::query::query_text;
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

/// Sends `cmd` to each node (all at once), within `timeout` each; the replies by node, and
/// the applied fault's outcome (ok if every node accepted, fail if none did).
async fn send_each(
    ctx: &Ctx,
    nodes: &[String],
    cmd: &redis::Cmd,
    timeout: Duration,
) -> (Vec<String>, Value, Vec<String>) {
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
        async move { query_text::<redis::Value>(&addr, &cmd, timeout).await }
    }))
    .await;
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let mut by_node = serde_json::Map::new();
    for ((name, _), reply) in addrs.iter().zip(replies) {
        match reply {
            Ok(v) => {
                by_node.insert(name.clone(), json!(format!("{v:?}")));
                done.push(name.clone());
            }
            Err(e) => {
                by_node.insert(name.clone(), json!(e));
                errors.push(format!("{name}: {e}"));
            }
        }
    }
    (done, Value::Object(by_node), errors)
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

fn outcome(done: &[String], errors: &[String]) -> (Outcome, Option<String>) {
    match (done.is_empty(), errors.is_empty()) {
        (_, true) => (Outcome::Ok, None),
        (true, false) => (Outcome::Fail, Some(errors.join("; "))),
        (false, false) => (Outcome::Info, Some(errors.join("; "))),
    }
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
            let (done, replies, errors) = send_each(ctx, &nodes, &cmd, ctx.query_timeout).await;
            let (outcome, error) = outcome(&done, &errors);
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
            let (_, replies, errors) = send_each(ctx, &self.nodes, &cmd, ctx.query_timeout).await;
            if errors.is_empty() {
                Ok(json!({"nodes": self.nodes, "replies": replies}))
            } else {
                Err(errors.join("; "))
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
            let (done, replies, errors) = send_each(ctx, &nodes, &cmd, ctx.query_timeout).await;
            let (outcome, error) = outcome(&done, &errors);
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
            let timeout = ctx.query_timeout + Duration::from_secs_f64(seconds);
            let (done, replies, errors) = send_each(ctx, &nodes, &cmd, timeout).await;
            let (outcome, error) = outcome(&done, &errors);
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
