//! Link latency and loss: `delay` and `loss` between sets of nodes, on the client port,
//! the bus port or both.
//!
//! ```yaml
//! nemesis:
//!   faults:
//!     - kind: delay
//!       from: [n1]          # senders (default all)
//!       to: [n2]            # receivers (default one)
//!       both_ways: false    # also from `to` to `from`
//!       ports: client       # all (default) | bus | client
//!       delay_ms: [50, 150] # fixed (100, the default) or uniform per packet
//!     - kind: loss
//!       to: one
//!       probability: 0.5    # chance each packet is dropped (default 0.5)
//! ```
//!
//! Mechanism. This kernel has no `sch_netem`, so latency is the **NFQUEUE delayer**: in
//! each *sender's* namespace, rules in a chain the run owns, `FL-<id>-delay` in table
//! `filter`, hooked from OUTPUT, send the link's packets (`-d <peer>/32`, with `ports` the
//! same `-p tcp -m multiport --ports` match as partitions) to queue [`QUEUE_NUM`] with
//! `--queue-bypass`, and a harness thread inside that namespace holds each packet for its
//! drawn delay ([`delayer`]). Loss needs no userspace: `-m statistic --mode random
//! --probability p -j DROP` in the same chain (the kernel's random, not the seed). Every
//! op records `mechanism` (`nfqueue` or `iptables-statistic`), the links, ports,
//! parameters and rule count. netem (prio qdisc + per-destination filters) where it exists
//! is future work; the mechanism is always recorded, so a run says which one ran.
//!
//! Healing flushes the chain in the nodes the fault wrote, then stops their delayers,
//! which accept everything still held. [`heal_all`] does that for every node of the run.

pub mod delayer;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::NodeInfo;
use crate::fault::{Applied, BoxFuture, Ctx, Fault, Heal, Outcome};
use crate::proxy::spec::{DelayMs, Probability};
use crate::spec::{Ports, Target};
use crate::target;

pub use delayer::QUEUE_NUM;

/// Mixed into the step's draw for `to`, so it is chosen independently of `from`.
const TO_SALT: u64 = 0x746f_5f6e_6f64_6573;

/// Reads `iptables-restore` input on stdin into the chain named by `$1`, then hooks the
/// chain first in OUTPUT unless a hook is already there.
const INSTALL: &str = r#"iptables-restore -w --noflush && { iptables -w -C OUTPUT -j "$1" 2>/dev/null || iptables -w -I OUTPUT 1 -j "$1"; }"#;

/// Flushes the chain named by `$1`: prints `flushed`, or `absent` if there is none.
const FLUSH: &str = r#"if err=$(iptables -w -F "$1" 2>&1); then echo flushed
else case $err in *"No chain"*) echo absent ;; *) echo "$err" >&2; exit 1 ;; esac; fi"#;

/// The run's delay/loss chain: `FL-<run id>-delay` (under iptables' 28 characters).
pub fn chain_name(run_id: &str) -> String {
    format!("FL-{run_id}-delay")
}

fn all() -> Target {
    Target::All
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn hundred() -> DelayMs {
    DelayMs { min: 100, max: 100 }
}

fn half() -> Probability {
    Probability(0.5)
}

/// `delay`: packets on the links arrive late (per packet, uniform in the range).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySpec {
    /// Senders (default all).
    #[serde(default = "all")]
    pub from: Target,
    /// Receivers (default one, drawn by the step).
    #[serde(default)]
    pub to: Target,
    /// Also the packets from `to` to `from`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub both_ways: bool,
    /// Which traffic.
    #[serde(default)]
    pub ports: Ports,
    /// Fixed (`100`) or a uniform range (`[50, 150]`), drawn per packet from the step's
    /// seed; a range reorders packets.
    #[serde(default = "hundred")]
    pub delay_ms: DelayMs,
}

impl Default for DelaySpec {
    fn default() -> Self {
        DelaySpec {
            from: Target::All,
            to: Target::One,
            both_ways: false,
            ports: Ports::All,
            delay_ms: hundred(),
        }
    }
}

/// `loss`: packets on the links are dropped with a probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossSpec {
    /// Senders (default all).
    #[serde(default = "all")]
    pub from: Target,
    /// Receivers (default one, drawn by the step).
    #[serde(default)]
    pub to: Target,
    /// Also the packets from `to` to `from`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub both_ways: bool,
    /// Which traffic.
    #[serde(default)]
    pub ports: Ports,
    /// Chance each packet is dropped, in (0, 1] (default 0.5).
    #[serde(default = "half")]
    pub probability: Probability,
}

impl Default for LossSpec {
    fn default() -> Self {
        LossSpec {
            from: Target::All,
            to: Target::One,
            both_ways: false,
            ports: Ports::All,
            probability: half(),
        }
    }
}

/// Directed links `(sender, receiver)`: every sender to every other receiver, and back
/// with `both_ways`; deduplicated, in order.
pub fn links(from: &[String], to: &[String], both_ways: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in from {
        for b in to {
            if a != b {
                out.push((a.clone(), b.clone()));
                if both_ways {
                    out.push((b.clone(), a.clone()));
                }
            }
        }
    }
    out.sort_by_key(|(a, b)| (target::node_order(a), target::node_order(b)));
    out.dedup();
    out
}

/// What a rule does with the link's packets.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// To the delayer's queue.
    Queue(u16),
    /// Dropped with this probability.
    Drop(f64),
}

/// The `iptables-restore --noflush` input that makes `chain` in node `me` act on what it
/// sends to `peers` (an empty `peers` empties the chain).
pub fn restore_input(
    chain: &str,
    me: &NodeInfo,
    peers: &[&NodeInfo],
    ports: Ports,
    action: Action,
) -> String {
    let mut text = format!("*filter\n:{chain} - [0:0]\n");
    let target = match action {
        Action::Queue(q) => format!("-j NFQUEUE --queue-num {q} --queue-bypass"),
        Action::Drop(p) => format!("-m statistic --mode random --probability {p} -j DROP"),
    };
    for peer in peers {
        let pair = match ports {
            Ports::All => None,
            Ports::Bus => Some((me.bus_port, peer.bus_port)),
            Ports::Client => Some((me.port, peer.port)),
        };
        let port_match = match pair {
            None => String::new(),
            Some((a, b)) if a == b => format!(" -p tcp -m multiport --ports {a}"),
            Some((a, b)) => format!(" -p tcp -m multiport --ports {},{}", a.min(b), a.max(b)),
        };
        text.push_str(&format!(
            "-A {chain} -d {}/32{port_match} {target}\n",
            peer.ip
        ));
    }
    text.push_str("COMMIT\n");
    text
}

/// Which links and what to do: shared by both faults.
struct Plan<'a> {
    from: &'a Target,
    to: &'a Target,
    both_ways: bool,
    ports: Ports,
}

/// `delay`.
pub struct Delay(DelaySpec);

impl Delay {
    /// A delay fault with these parameters.
    pub fn new(spec: DelaySpec) -> Delay {
        Delay(spec)
    }
}

impl Fault for Delay {
    fn name(&self) -> &'static str {
        "delay"
    }

    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        let s = &self.0;
        let value = json!({
            "mechanism": "nfqueue",
            "from": s.from.to_string(),
            "to": s.to.to_string(),
            "both_ways": s.both_ways,
            "ports": s.ports,
            "delay_ms": s.delay_ms,
            "queue_num": QUEUE_NUM,
            "seed": draw,
        });
        let plan = Plan {
            from: &s.from,
            to: &s.to,
            both_ways: s.both_ways,
            ports: s.ports,
        };
        Box::pin(apply(
            plan,
            Action::Queue(QUEUE_NUM),
            Some(s.delay_ms),
            value,
            ctx,
            draw,
        ))
    }
}

/// `loss`.
pub struct Loss(LossSpec);

impl Loss {
    /// A loss fault with these parameters.
    pub fn new(spec: LossSpec) -> Loss {
        Loss(spec)
    }
}

impl Fault for Loss {
    fn name(&self) -> &'static str {
        "loss"
    }

    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        let s = &self.0;
        let value = json!({
            "mechanism": "iptables-statistic",
            "from": s.from.to_string(),
            "to": s.to.to_string(),
            "both_ways": s.both_ways,
            "ports": s.ports,
            "probability": s.probability,
            "seed": draw,
        });
        let plan = Plan {
            from: &s.from,
            to: &s.to,
            both_ways: s.both_ways,
            ports: s.ports,
        };
        Box::pin(apply(
            plan,
            Action::Drop(s.probability.0),
            None,
            value,
            ctx,
            draw,
        ))
    }
}

async fn apply(
    plan: Plan<'_>,
    action: Action,
    delay: Option<DelayMs>,
    mut value: Value,
    ctx: &Ctx,
    draw: u64,
) -> Applied {
    let needs_roles = [plan.from, plan.to]
        .iter()
        .any(|t| matches!(t, Target::Primaries | Target::Replicas));
    let roles = if needs_roles {
        match ctx.roles().await {
            Ok(r) => Some(r),
            Err(e) => return Applied::failed(value, e),
        }
    } else {
        None
    };
    let names = ctx.names();
    let resolve = |t: &Target, d: u64| target::resolve(t, None, &names, roles.as_ref(), d);
    let (from, to) = match (resolve(plan.from, draw), resolve(plan.to, draw ^ TO_SALT)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return Applied::failed(value, e),
    };
    value["from_nodes"] = json!(from);
    value["to_nodes"] = json!(to);
    let links = links(&from, &to, plan.both_ways);
    value["links"] = json!(links
        .iter()
        .map(|(a, b)| format!("{a}->{b}"))
        .collect::<Vec<_>>());
    value["rules"] = json!(links.len());
    if links.is_empty() {
        return Applied::failed(value, "no link between these senders and receivers");
    }
    let mut by_sender: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (a, b) in &links {
        by_sender.entry(a.clone()).or_default().push(b.clone());
    }
    let senders: Vec<String> = by_sender.keys().cloned().collect();
    value["senders"] = json!(senders);
    let run_id = ctx.control.run_id().to_string();

    // Delayers first: a rule must never queue to a queue nobody reads (the bypass would
    // let the packets through undelayed, silently).
    if let Some(d) = delay {
        let (rid, ss) = (run_id.clone(), senders.clone());
        let paths: Vec<_> = ss.iter().map(|n| ctx.control.netns_path(n)).collect();
        let started = tokio::task::spawn_blocking(move || {
            let mut errors = Vec::new();
            for (i, (node, path)) in ss.iter().zip(paths).enumerate() {
                let seed = draw ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if let Err(e) = delayer::start(&rid, node, &path, d, seed) {
                    errors.push(e);
                }
            }
            errors
        })
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
        if !started.is_empty() {
            delayer::stop(&run_id, Some(&senders));
            return Applied::failed(value, format!("starting delayers: {}", started.join("; ")));
        }
    }

    let chain = chain_name(&run_id);
    let infos = ctx.control.nodes();
    let jobs: Vec<(String, Option<String>)> = senders
        .iter()
        .filter_map(|s| {
            let me = infos.iter().find(|n| &n.name == s)?;
            let to = &by_sender[s];
            let peers: Vec<&NodeInfo> = infos.iter().filter(|p| to.contains(&p.name)).collect();
            Some((
                s.clone(),
                Some(restore_input(&chain, me, &peers, plan.ports, action)),
            ))
        })
        .collect();
    let results = in_each(ctx, INSTALL, &chain, jobs).await;
    let failed: BTreeMap<String, String> = results
        .into_iter()
        .filter_map(|(node, r)| r.err().map(|e| (node, e)))
        .collect();
    let heal: Box<dyn Heal> = Box::new(LinkHeal { nodes: senders });
    let (outcome, error) = if failed.is_empty() {
        (Outcome::Ok, None)
    } else {
        let error = failed
            .iter()
            .map(|(n, e)| format!("{n}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        value["failed"] = json!(failed);
        (Outcome::Info, Some(error))
    };
    Applied {
        outcome,
        value,
        error,
        heal: Some(heal),
    }
}

/// Undoes one delay or loss: flushes the chain in the senders, stops their delayers.
pub struct LinkHeal {
    nodes: Vec<String>,
}

impl Heal for LinkHeal {
    fn name(&self) -> &'static str {
        "heal"
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(heal_nodes(ctx, self.nodes.clone()))
    }
}

/// Flushes the run's delay chain in every node where it exists and stops every delayer of
/// the run (each accepts what it holds first): the final phase's guarantee that no delay
/// or loss outlives the run's faults.
///
/// # Returns
/// `{"nodes": [flushed], "flushed": n, "delayers": {node: stats}}`.
///
/// # Errors
/// The nodes where the chain could not be flushed (delayers are stopped regardless).
pub async fn heal_all(ctx: &Ctx) -> Result<Value, String> {
    heal_nodes(ctx, ctx.names()).await
}

async fn heal_nodes(ctx: &Ctx, nodes: Vec<String>) -> Result<Value, String> {
    let chain = chain_name(ctx.control.run_id());
    let jobs = nodes.iter().map(|n| (n.clone(), None)).collect();
    let mut flushed = Vec::new();
    let mut errors = Vec::new();
    for (node, result) in in_each(ctx, FLUSH, &chain, jobs).await {
        match result.as_deref().map(str::trim) {
            Ok("flushed") => flushed.push(node),
            Ok("absent") => {}
            Ok(other) => errors.push(format!("{node}: unexpected output {other:?}")),
            Err(e) => errors.push(format!("{node}: {e}")),
        }
    }
    // Rules are gone: nothing new is queued, so stopping releases the last packets.
    let run_id = ctx.control.run_id().to_string();
    let stopped = tokio::task::spawn_blocking(move || delayer::stop(&run_id, Some(&nodes)))
        .await
        .unwrap_or_default();
    let delayers: BTreeMap<String, Value> =
        stopped.into_iter().map(|(n, s)| (n, s.to_json())).collect();
    if !errors.is_empty() {
        return Err(format!("flushing {chain}: {}", errors.join("; ")));
    }
    Ok(json!({ "nodes": flushed, "flushed": flushed.len(), "delayers": delayers }))
}

/// Runs `sh -c script sh chain` in each job's node, with its stdin, all at once.
async fn in_each(
    ctx: &Ctx,
    script: &'static str,
    chain: &str,
    jobs: Vec<(String, Option<String>)>,
) -> Vec<(String, Result<String, String>)> {
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(node, stdin)| {
            let control = ctx.control.clone();
            let chain = chain.to_string();
            let name = node.clone();
            let handle = tokio::task::spawn_blocking(move || {
                control
                    .exec_in_netns(&name, "sh", &["-c", script, "sh", &chain], stdin.as_deref())
                    .map_err(|e| format!("{e:#}"))
            });
            (node, handle)
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for (node, handle) in handles {
        let result = handle.await.unwrap_or_else(|e| Err(e.to_string()));
        out.push((node, result));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn links_skip_self_and_mirror_with_both_ways() {
        assert_eq!(
            links(&v(&["n1", "n2"]), &v(&["n2"]), false),
            vec![("n1".into(), "n2".into())]
        );
        assert_eq!(
            links(&v(&["n1"]), &v(&["n2", "n3"]), true),
            vec![
                ("n1".into(), "n2".into()),
                ("n1".into(), "n3".into()),
                ("n2".into(), "n1".into()),
                ("n3".into(), "n1".into()),
            ]
        );
    }

    #[test]
    fn rules_name_peer_and_ports() {
        let me = NodeInfo {
            name: "n1".into(),
            ip: "10.77.3.11".parse().unwrap(),
            port: 6379,
            bus_port: 16379,
        };
        let peer = NodeInfo {
            name: "n2".into(),
            ip: "10.77.3.12".parse().unwrap(),
            ..me.clone()
        };
        let t = restore_input(
            "FL-abc-delay",
            &me,
            &[&peer],
            Ports::Client,
            Action::Queue(7700),
        );
        assert!(t.contains(
            "-A FL-abc-delay -d 10.77.3.12/32 -p tcp -m multiport --ports 6379 -j NFQUEUE --queue-num 7700 --queue-bypass"
        ));
        let t = restore_input("FL-abc-delay", &me, &[&peer], Ports::All, Action::Drop(0.5));
        assert!(t.contains(
            "-A FL-abc-delay -d 10.77.3.12/32 -m statistic --mode random --probability 0.5 -j DROP"
        ));
    }

    #[test]
    fn spec_parses_fixed_and_ranged_delays() {
        let s: DelaySpec = serde_json::from_str(
            r#"{"from": ["n1"], "to": ["n2"], "ports": "client", "delay_ms": [50, 150]}"#,
        )
        .unwrap();
        assert_eq!(s.delay_ms, DelayMs { min: 50, max: 150 });
        let s: DelaySpec = serde_json::from_str("{}").unwrap();
        assert_eq!(s.delay_ms, DelayMs { min: 100, max: 100 });
        let l: LossSpec = serde_json::from_str(r#"{"probability": 0.25}"#).unwrap();
        assert_eq!(l.probability.0, 0.25);
        assert!(serde_json::from_str::<LossSpec>(r#"{"probability": 1.5}"#).is_err());
    }
}
