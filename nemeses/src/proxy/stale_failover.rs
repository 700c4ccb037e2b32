//! `failover-while-held`: a manual failover fired at the moment the bus proxy holds a PONG
//! from the node about to be promoted on its way to an observer: "failover while a stale
//! message is in flight" (DESIGN, reproduction notes).
//!
//! The PONGs that a shard's primary A and replica B send observer N, on the connections N
//! opened to them, are delayed (1-2 s by default, per-connection order kept). As soon as
//! one from B is held, `CLUSTER FAILOVER` goes to B. When the delayed PONG reaches N after
//! B's promotion, N holds a message that still says "B is a replica of A". Redis 7.0
//! (redis/redis#13018, fixed in 7.4 by #13055) and Valkey 8.0 (valkey-io/valkey#1015, fixed
//! in 8.1.1 by #1777) let it turn N's view wrong for a moment: A and B replicas of each
//! other, or the shard's slots owned by nobody. The topology checkers find it; this fault
//! only makes the timing happen. The delay stays until the heal, so the next failover of
//! the shard (the failback) meets it too. A primary votes for one shard at most once per
//! 2 x node timeout: space the steps accordingly.

use std::time::{Duration, Instant};

use faultline_history::bounds::PositiveF64;
use faultline_history::FaultOps;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::bus_proxy::BusProxy;
use super::fault::BusHeal;
use super::frame::MsgType;
use super::rule::{Match, Opener, Rule, Verdict};
use super::spec::DelayMs;
use crate::failover::{pick_shard, send_failover, wait_promoted};
use crate::fault::{Applied, BoxFuture, Ctx, Fault, Outcome};
use crate::package::{FaultPackage, Needs, Sweep};
use crate::spec::{FailoverMode, Target};
use crate::target;

/// Mixed into the draw for the observer, so it is drawn independently of the shard.
const OBSERVER_SALT: u64 = 0x6f62_7365_7276_6572;

/// The scenario's `failover-while-held` fault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverWhileHeldSpec {
    /// The shard: its current primary is drawn from these (default primaries). Give both
    /// nodes of one shard (`[n1, n4]`) to fail over and back alternately.
    #[serde(default = "primaries")]
    pub shard: Target,
    /// The observer whose incoming PONGs are delayed, drawn from these among nodes outside
    /// the shard (default one).
    #[serde(default)]
    pub observer: Target,
    /// How late the shard's PONGs reach the observer.
    #[serde(default)]
    pub delay_ms: DelayMs,
    /// How the failover is asked.
    #[serde(default)]
    pub mode: FailoverMode,
    /// Seconds to wait for a PONG from the replica to be held before giving up.
    #[serde(default = "twenty")]
    pub wait_s: PositiveF64,
    /// Seconds to wait for the replica to call itself primary.
    #[serde(default = "ten")]
    pub timeout_s: PositiveF64,
}

fn primaries() -> Target {
    Target::Primaries
}
fn twenty() -> PositiveF64 {
    PositiveF64(20.0)
}
fn ten() -> PositiveF64 {
    PositiveF64(10.0)
}

impl Default for FailoverWhileHeldSpec {
    fn default() -> Self {
        FailoverWhileHeldSpec {
            shard: primaries(),
            observer: Target::One,
            delay_ms: DelayMs::default(),
            mode: FailoverMode::Default,
            wait_s: twenty(),
            timeout_s: ten(),
        }
    }
}

/// The fault.
pub struct FailoverWhileHeld(FailoverWhileHeldSpec);

impl FailoverWhileHeld {
    /// A failover-while-held fault.
    pub fn new(spec: FailoverWhileHeldSpec) -> FailoverWhileHeld {
        FailoverWhileHeld(spec)
    }
}

impl Fault for FailoverWhileHeld {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(self.run(ctx, draw))
    }
}

impl FailoverWhileHeld {
    async fn run(&self, ctx: &Ctx, draw: u64) -> Applied {
        let spec = &self.0;
        let mode = spec.mode.arg().unwrap_or("DEFAULT");
        let mut value = json!({
            "mode": mode,
            "shard": spec.shard.to_string(),
            "delay_ms": [spec.delay_ms.min, spec.delay_ms.max],
            "mechanism": "bus-proxy",
        });
        let Some(proxy) = BusProxy::for_run(ctx.control.run_id()) else {
            return Applied::failed(
                value,
                "failover-while-held needs `bus: proxy` under `cluster:`",
            );
        };
        let (primary, replica, replicas) = match pick_shard(ctx, &spec.shard, draw).await {
            Ok(shard) => shard,
            Err(e) => return Applied::failed(value, e),
        };
        let names = ctx.names();
        let outside: Vec<String> = names
            .iter()
            .filter(|n| **n != primary && !replicas.contains(n))
            .cloned()
            .collect();
        let observer = match target::resolve(
            &spec.observer,
            Some(1),
            &outside,
            None,
            draw ^ OBSERVER_SALT,
        ) {
            Ok(o) => o[0].clone(),
            Err(e) => return Applied::failed(value, format!("observer: {e}")),
        };
        value["primary"] = json!(primary);
        value["replica"] = json!(replica);
        value["observer"] = json!(observer);

        let rule = Rule::new(
            Match {
                from: Some([primary.clone(), replica.clone()].into()),
                to: Some([observer.clone()].into()),
                opened_by: Opener::Receiver,
                types: Some([MsgType::Pong].into()),
            },
            Verdict::Delay {
                min: Duration::from_millis(spec.delay_ms.min),
                max: Duration::from_millis(spec.delay_ms.max),
                reorder: false,
            },
        )
        .seeded(draw);
        let id = proxy.add_rule(rule);
        value["rules"] = json!([id]);
        let heal = Some(Box::new(BusHeal { rules: vec![id] }) as Box<dyn crate::fault::Heal>);

        let waiting = Instant::now();
        let wait = Duration::from_secs_f64(spec.wait_s.get());
        let held = tokio::time::timeout(
            wait,
            proxy.wait_held(|m| {
                m.link.from == replica && m.link.to == observer && m.msg_type == Some(MsgType::Pong)
            }),
        )
        .await;
        let Ok(held) = held else {
            return Applied {
                outcome: Outcome::Fail,
                error: Some(format!(
                    "no PONG from {replica} to {observer} was held within {:.1}s; no failover sent",
                    wait.as_secs_f64()
                )),
                value,
                heal,
            };
        };
        value["waited_ms"] = json!(waiting.elapsed().as_millis() as u64);
        value["held"] = json!({
            "config_epoch": held.config_epoch,
            "current_epoch": held.current_epoch,
            "held_for_ms_at_fire": held.since.elapsed().as_millis() as u64,
        });
        let Some(node) = ctx
            .control
            .nodes()
            .iter()
            .find(|n| n.name == replica)
            .cloned()
        else {
            return Applied::failed(value, format!("unknown node {replica}"));
        };
        let fired = Instant::now();
        let reply = send_failover(&node.addr(), spec.mode.arg(), ctx.query_timeout).await;
        value["reply"] = json!(match &reply {
            Ok(r) | Err(r) => r.clone(),
        });
        if let Err(e) = reply {
            value["promoted"] = json!(false);
            return Applied {
                outcome: if e.starts_with("connection:") {
                    Outcome::Info
                } else {
                    Outcome::Fail
                },
                value,
                error: Some(e),
                heal,
            };
        }
        let timeout = Duration::from_secs_f64(spec.timeout_s.get());
        let promoted = wait_promoted(&node, fired, timeout, ctx.query_timeout).await;
        value["promoted"] = json!(promoted);
        value["took_ms"] = json!(fired.elapsed().as_millis() as u64);
        Applied {
            outcome: if promoted { Outcome::Ok } else { Outcome::Info },
            error: (!promoted).then(|| {
                format!(
                    "{replica} was not primary within {:.1}s",
                    timeout.as_secs_f64()
                )
            }),
            value,
            heal,
        }
    }
}

impl FaultPackage for FailoverWhileHeld {
    type Spec = FailoverWhileHeldSpec;
    const OPS: FaultOps = FaultOps::new(&["failover-while-held"])
        .with_heals(&[super::fault::HEAL])
        .with_sweeps(&["heal-bus"])
        .failing_over();
    const NEEDS: Needs = super::fault::NEEDS;
    const SWEEP: Option<Sweep> = Some(super::fault::SWEEP);
    fn targets(spec: &FailoverWhileHeldSpec) -> Vec<(&'static str, &Target)> {
        vec![("shard", &spec.shard), ("observer", &spec.observer)]
    }
    fn build(spec: &FailoverWhileHeldSpec) -> Box<dyn Fault> {
        Box::new(FailoverWhileHeld::new(spec.clone()))
    }
}
