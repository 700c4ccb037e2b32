//! Standalone failover (`mode: standalone`): `FAILOVER TO <host> <port> [FORCE] TIMEOUT
//! <ms>` sent to the primary, naming a drawn replica; then the old primary's
//! `master_failover_state` (INFO replication) is followed until it is back to
//! `no-failover`, every state seen recorded with its offset.
//!
//! During the failover the old primary pauses writes (`waiting-for-sync`), hands over
//! (`failover-in-progress`) and becomes a replica; clients that sent `CLIENT CAPA redirect`
//! are then sent `-REDIRECT` to the new primary. valkey-io/valkey#821 (seed 003, fixed by
//! #871 before 8.0.0) bounced them between the two while the new primary was still a
//! replica; the workload records each hop. After a promotion both nodes get
//! `CONFIG REWRITE`, as Sentinel does, so a later kill and restart keeps their new roles.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use faultline_history::bounds::{Bounded, PositiveF64};
use faultline_history::info_replication::info_fields;
use faultline_history::FaultOps;
use faultline_workloads::query;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::control::NodeInfo;
use crate::failover::{failover_error, pick_shard};
use crate::fault::{Applied, BoxFuture, Ctx, Fault, Outcome};
use crate::package::{FaultPackage, ModeNeed, Needs};
use crate::spec::Target;

/// How often the old primary's state is polled.
const POLL: Duration = Duration::from_millis(10);

/// A standalone failover.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandaloneFailoverSpec {
    /// The primary whose replica is promoted is drawn among these (default `primaries`;
    /// standalone has one).
    #[serde(default = "primaries")]
    pub target: Target,
    /// `FORCE`: hand over at `timeout_ms` even if the replica has not caught up.
    #[serde(default)]
    pub force: bool,
    /// `FAILOVER`'s `TIMEOUT` in milliseconds: past it the failover is aborted (or, with
    /// `force`, forced).
    #[serde(default = "five_thousand")]
    pub timeout_ms: Bounded<1, 600_000>,
    /// Seconds to follow `master_failover_state` before calling the outcome unknown.
    #[serde(default = "fifteen")]
    pub wait_s: PositiveF64,
    /// After a promotion, `CONFIG REWRITE` both nodes (as Sentinel does). A live cluster's
    /// runs set it to false: faultline does not write a server's config it did not make.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub config_rewrite: bool,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

fn primaries() -> Target {
    Target::Primaries
}
fn five_thousand() -> Bounded<1, 600_000> {
    Bounded(5000)
}
fn fifteen() -> PositiveF64 {
    PositiveF64(15.0)
}

impl Default for StandaloneFailoverSpec {
    fn default() -> Self {
        StandaloneFailoverSpec {
            target: primaries(),
            force: false,
            timeout_ms: five_thousand(),
            wait_s: fifteen(),
            config_rewrite: true,
        }
    }
}

/// The standalone-failover fault.
pub struct StandaloneFailover(StandaloneFailoverSpec);

impl StandaloneFailover {
    /// A standalone failover with these parameters.
    pub fn new(spec: StandaloneFailoverSpec) -> StandaloneFailover {
        StandaloneFailover(spec)
    }
}

impl Fault for StandaloneFailover {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(self.run(ctx, draw))
    }
}

/// `INFO replication` of one node, as fields.
async fn info(node: &NodeInfo, timeout: Duration) -> Result<HashMap<String, String>, String> {
    let text =
        query::query_text::<String>(&node.addr(), redis::cmd("INFO").arg("replication"), timeout)
            .await?;
    Ok(info_fields(&text))
}

impl StandaloneFailover {
    async fn run(&self, ctx: &Ctx, draw: u64) -> Applied {
        let spec = &self.0;
        let params = json!({ "target": spec.target.to_string(), "force": spec.force });
        let (primary, replica, _) = match pick_shard(ctx, &spec.target, draw).await {
            Ok(shard) => shard,
            Err(e) => return Applied::failed(params, e),
        };
        let node = |name: &str| ctx.control.nodes().iter().find(|n| n.name == name).cloned();
        let (Some(old), Some(new)) = (node(&primary), node(&replica)) else {
            return Applied::failed(params, format!("unknown node {primary} or {replica}"));
        };
        let mut value = json!({
            "primary": primary,
            "replica": replica,
            "force": spec.force,
            "timeout_ms": spec.timeout_ms.get(),
        });
        let started = Instant::now();
        let reply = send_failover(&old, &new, spec, ctx.query_timeout).await;
        let reply_text = reply.clone().unwrap_or_else(|e| e);
        value["reply"] = json!(reply_text);
        if let Err(e) = reply {
            value["promoted"] = json!(false);
            let outcome = if e.starts_with("connection:") {
                Outcome::Info
            } else {
                Outcome::Fail
            };
            return Applied {
                outcome,
                value,
                error: Some(e),
                heal: None,
            };
        }
        // Follow the old primary's failover state until it is over.
        let wait = Duration::from_secs_f64(spec.wait_s.get());
        let mut states: Vec<serde_json::Value> = Vec::new();
        let mut last: Option<String> = None;
        let mut finished = false;
        while started.elapsed() < wait {
            if let Ok(f) = info(&old, ctx.query_timeout).await {
                let state = f.get("master_failover_state").cloned().unwrap_or_else(|| {
                    format!("role:{}", f.get("role").cloned().unwrap_or_default())
                });
                if last.as_ref() != Some(&state) {
                    states.push(
                        json!({ "state": state, "at_ms": started.elapsed().as_millis() as u64 }),
                    );
                    last = Some(state.clone());
                }
                // Over: back to no-failover, or already a replica (the state line may be
                // gone from a replica's INFO on some versions).
                if state == "no-failover"
                    && (states.len() > 1 || f.get("role").map(String::as_str) == Some("slave"))
                {
                    finished = true;
                    break;
                }
            }
            tokio::time::sleep(POLL).await;
        }
        value["states"] = json!(states);
        value["took_ms"] = json!(started.elapsed().as_millis() as u64);
        let new_role = info(&new, ctx.query_timeout)
            .await
            .ok()
            .and_then(|f| f.get("role").cloned());
        let promoted = new_role.as_deref() == Some("master");
        value["promoted"] = json!(promoted);
        if promoted && self.0.config_rewrite {
            // As Sentinel does after a failover: the config files follow the new roles, so
            // a node restarted by a later kill fault comes back in its current role.
            let mut rewritten = Vec::new();
            for n in [&old, &new] {
                if config_rewrite(n, ctx.query_timeout).await.is_ok() {
                    rewritten.push(n.name.clone());
                }
            }
            value["config_rewritten"] = json!(rewritten);
        }
        let (outcome, error) = match (promoted, finished) {
            (true, _) => (Outcome::Ok, None),
            // Like the cluster failover: answered OK, never promoted (FAILOVER aborted at
            // its time-out, say) is `info`, which the failover checker calls not promoted.
            (false, true) => (
                Outcome::Info,
                Some(format!(
                    "{replica} was not promoted: the failover ended without it"
                )),
            ),
            (false, false) => (
                Outcome::Info,
                Some(format!(
                    "{primary} still in failover after {:.1}s",
                    wait.as_secs_f64()
                )),
            ),
        };
        Applied {
            outcome,
            value,
            error,
            heal: None,
        }
    }
}

/// `CONFIG REWRITE` on one node.
async fn config_rewrite(node: &NodeInfo, timeout: Duration) -> Result<(), String> {
    query::query::<()>(&node.addr(), redis::cmd("CONFIG").arg("REWRITE"), timeout)
        .await
        .map_err(|e| e.to_string())
}

/// Sends the `FAILOVER` command to the old primary; `Err` texts that are not server
/// replies start with `connection:`.
async fn send_failover(
    old: &NodeInfo,
    new: &NodeInfo,
    spec: &StandaloneFailoverSpec,
    timeout: Duration,
) -> Result<String, String> {
    let mut cmd = redis::cmd("FAILOVER");
    cmd.arg("TO").arg(new.ip.to_string()).arg(new.port);
    if spec.force {
        cmd.arg("FORCE");
    }
    cmd.arg("TIMEOUT").arg(spec.timeout_ms.get());
    query::query::<String>(&old.addr(), &cmd, timeout)
        .await
        .map_err(failover_error)
}

impl FaultPackage for StandaloneFailover {
    type Spec = StandaloneFailoverSpec;
    const OPS: FaultOps = FaultOps::new(&["standalone-failover"]).failing_over();
    const NEEDS: Needs = Needs {
        mode: ModeNeed::Standalone,
        bus_proxy: false,
        node_host: false,
    };
    fn targets(spec: &StandaloneFailoverSpec) -> Vec<(&'static str, &Target)> {
        vec![("target", &spec.target)]
    }
    fn build(spec: &StandaloneFailoverSpec) -> Box<dyn Fault> {
        Box::new(StandaloneFailover::new(spec.clone()))
    }
}
