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
//!       mechanism: auto     # auto (default) | netem | fallback
//!     - kind: loss
//!       to: one
//!       probability: 0.5    # chance each packet is dropped (default 0.5)
//! ```
//!
//! Mechanism. Where the kernel has `sch_netem`, [`netem`]: a prio qdisc with the fault's
//! own band, netem on it and u32 filters for the links, in each sender's namespace. Where
//! it has not (these machines), with `mechanism: auto`, latency is the **NFQUEUE delayer**: in
//! each *sender's* namespace, rules in a chain the run owns, `FL-<id>-delay` in table
//! `filter`, hooked from OUTPUT, send the link's packets (`-d <peer>/32`, with `ports` the
//! same `-p tcp -m multiport --ports` match as partitions) to queue [`QUEUE_NUM`] with
//! `--queue-bypass`, and a harness thread inside that namespace holds each packet for its
//! drawn delay ([`delayer`]). Loss needs no userspace: `-m statistic --mode random
//! --probability p -j DROP` in the same chain (the kernel's random, not the seed). Every
//! op records `mechanism` (`netem`, `nfqueue` or `iptables-statistic`; with
//! `netem_unavailable`, the kernel's words, when `auto` fell back), the links, ports,
//! parameters and rule count, so a run says which one ran.
//!
//! Healing flushes the chain in the nodes the fault wrote, then stops their delayers,
//! which accept everything still held. [`heal_all`] does that for every node of the run.

pub mod delayer;
pub mod netem;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use faultline_history::FaultOps;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::{HostChange, NodeInfo};
use crate::fault::{Applied, BoxFuture, Ctx, Fault, Heal};
use crate::iptables::{self, Peer, INSTALL_OUTPUT as INSTALL};
use crate::package::{links_package, FaultPackage, ModeNeed, Needs, Sweep, SweepWhen};
use crate::proxy::spec::{DelayMs, Probability};
use crate::spec::{Ports, Target};
use crate::target;

pub use delayer::QUEUE_NUM;
pub use netem::{Band, Mechanism};

/// The run's delay/loss chain: `FL-<run id>-delay` (under iptables' 28 characters).
pub fn chain_name(run_id: &str) -> String {
    format!("FL-{run_id}-delay")
}

/// The chain of a delay or loss in `lane` ([`crate::fault::lane`]): [`chain_name`] in
/// lane 0, `FL-<run id>-delay-d<lane>` in the others. Each chain is hooked from OUTPUT
/// on its own; on one link, the chain hooked last (the fault applied last) sees a packet
/// first, and a packet a delayer accepts leaves the hook (it is not delayed twice).
pub fn lane_chain(run_id: &str, lane: u8) -> String {
    crate::fault::lane_name(&chain_name(run_id), "d", lane)
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
    /// netem where the kernel has it (`auto`, the default), `netem` only, or `fallback`
    /// (the NFQUEUE delayer) only.
    #[serde(default, skip_serializing_if = "Mechanism::is_auto")]
    pub mechanism: Mechanism,
}

impl Default for DelaySpec {
    fn default() -> Self {
        DelaySpec {
            from: Target::All,
            to: Target::One,
            both_ways: false,
            ports: Ports::All,
            delay_ms: hundred(),
            mechanism: Mechanism::Auto,
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
    /// netem where the kernel has it (`auto`, the default), `netem` only, or `fallback`
    /// (iptables `statistic`) only.
    #[serde(default, skip_serializing_if = "Mechanism::is_auto")]
    pub mechanism: Mechanism,
}

impl Default for LossSpec {
    fn default() -> Self {
        LossSpec {
            from: Target::All,
            to: Target::One,
            both_ways: false,
            ports: Ports::All,
            probability: half(),
            mechanism: Mechanism::Auto,
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
    let target = match action {
        Action::Queue(q) => format!("-j NFQUEUE --queue-num {q} --queue-bypass"),
        Action::Drop(p) => format!("-m statistic --mode random --probability {p} -j DROP"),
    };
    iptables::restore_input(chain, me, peers, ports, Peer::Destination, &target)
}

/// Which links and what to do: shared by both faults.
struct Plan<'a> {
    from: &'a Target,
    to: &'a Target,
    both_ways: bool,
    ports: Ports,
    mechanism: Mechanism,
    /// The fault's band and netem arguments, should netem run.
    netem: (Band, String),
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
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        let s = &self.0;
        let value = json!({
            "mechanism": "nfqueue",
            "from": s.from.to_string(),
            "to": s.to.to_string(),
            "both_ways": s.both_ways,
            "ports": s.ports,
            "delay_ms": s.delay_ms,
            "seed": draw,
        });
        let plan = Plan {
            from: &s.from,
            to: &s.to,
            both_ways: s.both_ways,
            ports: s.ports,
            mechanism: s.mechanism,
            netem: (Band::Delay, netem::delay_args(s.delay_ms)),
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

    fn prepares(&self) -> bool {
        prepares(self.0.mechanism)
    }
}

/// Whether a delay or loss can be prepared before its instant: on the fallback (rules
/// and delayers) only, known to be the one that runs (`mechanism: fallback`, or a kernel
/// that already said it has no netem). netem is tried at the instant.
fn prepares(mechanism: Mechanism) -> bool {
    mechanism == Mechanism::Fallback
        || (mechanism == Mechanism::Auto && NETEM_MISSING.get().is_some())
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
            mechanism: s.mechanism,
            netem: (Band::Loss, netem::loss_args(s.probability.0)),
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

    fn prepares(&self) -> bool {
        prepares(self.0.mechanism)
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
    let (from, to) = match target::resolve_links(ctx, plan.from, plan.to, draw).await {
        Ok(sides) => sides,
        Err(e) => return Applied::failed(value, e),
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
    // Read inside the future: the runner polls it within the step's lane.
    let lane = crate::fault::lane();
    let queue = delayer::queue_for(lane);
    let action = match action {
        Action::Queue(_) => {
            value["queue_num"] = json!(queue);
            Action::Queue(queue)
        }
        drop => drop,
    };
    let infos = ctx.control.nodes();
    // Each sender with the peers it sends to.
    let senders_peers: Vec<(NodeInfo, Vec<NodeInfo>)> = senders
        .iter()
        .filter_map(|s| {
            let me = infos.iter().find(|n| &n.name == s)?;
            let to = &by_sender[s];
            let peers = infos.iter().filter(|p| to.contains(&p.name)).cloned();
            Some((me.clone(), peers.collect()))
        })
        .collect();

    // netem has one band per kind: a composed step's other lanes take the fallback.
    if lane > 0 && plan.mechanism == Mechanism::Netem {
        return Applied::failed(
            value,
            "netem has one band per kind: a composed step's second delay or loss needs \
             `mechanism: auto` or `fallback`",
        );
    }
    if plan.mechanism != Mechanism::Fallback && lane == 0 {
        let (band, args) = &plan.netem;
        match try_netem(ctx, &senders_peers, plan.ports, *band, args).await {
            NetemTry::Installed(results) => {
                value["mechanism"] = json!("netem");
                value["netem"] = json!(args);
                value["seeded"] = json!(false);
                let heal = LinkHeal {
                    nodes: senders,
                    band: Some(*band),
                    lane,
                };
                return applied(value, results, heal);
            }
            NetemTry::Unavailable(why) if plan.mechanism == Mechanism::Auto => {
                value["netem_unavailable"] = json!(why);
            }
            NetemTry::Unavailable(why) => {
                return Applied::failed(
                    value,
                    format!(
                        "tc netem is not available here ({why}); use `mechanism: auto` or \
                         `fallback`"
                    ),
                );
            }
        }
    }

    // Delayers first: a rule must never queue to a queue nobody reads (the bypass would
    // let the packets through undelayed, silently).
    if let Some(d) = delay {
        let (rid, ss) = (run_id.clone(), senders.clone());
        let paths: Vec<std::path::PathBuf> =
            match ss.iter().map(|n| ctx.control.netns_path(n)).collect() {
                Ok(paths) => paths,
                Err(e) => return Applied::failed(value, format!("starting delayers: {e:#}")),
            };
        let started = tokio::task::spawn_blocking(move || {
            let mut errors = Vec::new();
            for (i, (node, path)) in ss.iter().zip(paths).enumerate() {
                let seed = draw ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if let Err(e) = delayer::start_on(&rid, node, &path, queue, d, seed) {
                    errors.push(e);
                }
            }
            errors
        })
        .await
        .unwrap_or_else(|e| vec![e.to_string()]);
        if !started.is_empty() {
            delayer::stop_queue(&run_id, &senders, queue);
            return Applied::failed(value, format!("starting delayers: {}", started.join("; ")));
        }
    }

    let chain = lane_chain(&run_id, lane);
    value["chain"] = json!(chain);
    let jobs: Vec<(String, Option<String>)> = senders_peers
        .iter()
        .map(|(me, peers)| {
            let peers: Vec<&NodeInfo> = peers.iter().collect();
            let input = restore_input(&chain, me, &peers, plan.ports, action);
            (me.name.clone(), Some(input))
        })
        .collect();
    let results = if crate::instant::preparing() {
        // The delayers are up; the rules are fed now and committed at the instant.
        let inputs = jobs
            .into_iter()
            .map(|(n, input)| (n, input.unwrap_or_default()))
            .collect();
        let installers =
            iptables::start_installers(ctx, iptables::PREPARE_OUTPUT, &chain, inputs).await;
        match crate::instant::at_instant(move || installers.commit()).await {
            Some(results) => results,
            None => {
                let (rid, ss) = (run_id.clone(), senders.clone());
                let _ = tokio::task::spawn_blocking(move || delayer::stop_queue(&rid, &ss, queue))
                    .await;
                return Applied::failed(value, crate::fault::STOPPED);
            }
        }
    } else {
        ctx.sh_in_each(INSTALL, &chain, jobs).await
    };
    let heal = LinkHeal {
        nodes: senders,
        band: None,
        lane,
    };
    applied(value, results, heal)
}

/// What trying netem in the senders came to.
enum NetemTry {
    /// Every sender ran the install script (each result says how it went).
    Installed(Vec<(String, Result<String, String>)>),
    /// The kernel lacks prio or netem: the kernel's words. Nothing was left behind.
    Unavailable(String),
}

/// Set once a sender's kernel said it has no netem: the kernel is the same for every
/// namespace, so later faults fall back without asking again.
static NETEM_MISSING: OnceLock<String> = OnceLock::new();

async fn try_netem(
    ctx: &Ctx,
    senders_peers: &[(NodeInfo, Vec<NodeInfo>)],
    ports: Ports,
    band: Band,
    args: &str,
) -> NetemTry {
    if let Some(why) = NETEM_MISSING.get() {
        return NetemTry::Unavailable(why.clone());
    }
    // On hosts faultline does not own, the qdisc is written down there and its revert
    // armed first.
    let senders: Vec<String> = senders_peers
        .iter()
        .map(|(me, _)| me.name.clone())
        .collect();
    let refused: Vec<String> = ctx
        .guard_each(&senders, &HostChange::Qdisc)
        .await
        .into_iter()
        .filter_map(|(n, r)| r.err().map(|e| format!("{n}: {e}")))
        .collect();
    if !refused.is_empty() {
        ctx.release_each(&senders, &HostChange::Qdisc).await;
        return NetemTry::Unavailable(format!("not guarded: {}", refused.join("; ")));
    }
    let jobs = senders_peers
        .iter()
        .map(|(me, peers)| {
            let peers: Vec<&NodeInfo> = peers.iter().collect();
            let script = netem::install_script(me, &peers, ports, band, args);
            (me.name.clone(), Some(script))
        })
        .collect();
    let results = ctx.sh_in_each(RUN_STDIN, "", jobs).await;
    let missing = results.iter().find_map(|(_, r)| {
        r.as_ref()
            .ok()
            .and_then(|out| out.trim().strip_prefix(netem::UNAVAILABLE))
            .map(|why| why.trim().to_string())
    });
    match missing {
        None => NetemTry::Installed(results),
        Some(why) => {
            // One kernel: either every sender has netem or none has, so nothing was
            // installed; heal the band anyway in case a sender differed.
            let jobs = senders_peers
                .iter()
                .map(|(me, _)| (me.name.clone(), Some(netem::heal_script(band))))
                .collect();
            ctx.sh_in_each(RUN_STDIN, "", jobs).await;
            ctx.release_each(&senders, &HostChange::Qdisc).await;
            let _ = NETEM_MISSING.set(why.clone());
            NetemTry::Unavailable(why)
        }
    }
}

/// Runs the script given on stdin.
const RUN_STDIN: &str = "exec sh -s";

/// The fault's outcome from each sender's result ([`iptables::applied`]).
fn applied(
    value: Value,
    results: Vec<(String, Result<String, String>)>,
    heal: LinkHeal,
) -> Applied {
    iptables::applied(value, results, Box::new(heal))
}

/// Undoes one delay or loss: removes its netem band, or flushes the chain in the senders
/// and stops their delayers.
pub struct LinkHeal {
    nodes: Vec<String>,
    /// The netem band the fault used; `None` for the fallback.
    band: Option<Band>,
    /// Its lane: the chain and queue it owns.
    lane: u8,
}

impl Heal for LinkHeal {
    fn name(&self) -> &'static str {
        <Delay as FaultPackage>::OPS.heals[0]
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Value, String>> {
        match self.band {
            Some(band) => Box::pin(heal_netem(
                ctx,
                self.nodes.clone(),
                netem::heal_script(band),
            )),
            None => Box::pin(heal_lane(ctx, self.nodes.clone(), self.lane)),
        }
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
    if ctx.control.loopback() {
        // No namespace of the nodes' own, so no delay or loss was ever applied (the
        // scenario refuses them on loopback), and no iptables or tc may run here.
        return Ok(json!({ "nodes": [], "flushed": 0, "loopback": true }));
    }
    let mut value = heal_nodes(ctx, ctx.names()).await?;
    if NETEM_MISSING.get().is_none() {
        let netem = heal_netem(ctx, ctx.names(), netem::HEAL_ALL.to_string()).await?;
        value["netem"] = netem;
    }
    Ok(value)
}

/// Runs a netem heal script in `nodes`: `{"netem_nodes": [nodes where it touched a device]}`.
async fn heal_netem(ctx: &Ctx, nodes: Vec<String>, script: String) -> Result<Value, String> {
    let jobs = nodes
        .iter()
        .map(|n| (n.clone(), Some(script.clone())))
        .collect();
    let mut touched = Vec::new();
    let mut errors = Vec::new();
    for (node, result) in ctx.sh_in_each(RUN_STDIN, "", jobs).await {
        match result {
            Ok(out) if out.trim().is_empty() => {}
            Ok(_) => touched.push(node),
            Err(e) => errors.push(format!("{node}: {e}")),
        }
    }
    if errors.is_empty() {
        errors = ctx.release_each(&nodes, &HostChange::Qdisc).await;
    }
    if !errors.is_empty() {
        return Err(format!("removing netem: {}", errors.join("; ")));
    }
    Ok(json!({ "mechanism": "netem", "netem_nodes": touched }))
}

async fn heal_nodes(ctx: &Ctx, nodes: Vec<String>) -> Result<Value, String> {
    let run_id = ctx.control.run_id();
    let chains: Vec<String> = (0..crate::fault::LANES)
        .map(|l| lane_chain(run_id, l))
        .collect();
    let (flushed, errors) = iptables::flush_chains(ctx, &chains, &nodes).await;
    // Rules are gone: nothing new is queued, so stopping releases the last packets.
    let run_id = ctx.control.run_id().to_string();
    let stopped = tokio::task::spawn_blocking(move || delayer::stop(&run_id, Some(&nodes)))
        .await
        .unwrap_or_default();
    let delayers: BTreeMap<String, Value> =
        stopped.into_iter().map(|(n, s)| (n, s.to_json())).collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(json!({ "nodes": flushed, "flushed": flushed.len(), "delayers": delayers }))
}

/// Undoes the delay or loss of `lane` in `nodes`: flushes its chain, then stops its
/// delayers (other lanes' rules and delayers stay).
async fn heal_lane(ctx: &Ctx, nodes: Vec<String>, lane: u8) -> Result<Value, String> {
    let chain = lane_chain(ctx.control.run_id(), lane);
    let (flushed, errors) = iptables::flush(ctx, &chain, nodes.clone()).await;
    let run_id = ctx.control.run_id().to_string();
    let queue = delayer::queue_for(lane);
    let stopped = tokio::task::spawn_blocking(move || delayer::stop_queue(&run_id, &nodes, queue))
        .await
        .unwrap_or_default();
    let delayers: BTreeMap<String, Value> =
        stopped.into_iter().map(|(n, s)| (n, s.to_json())).collect();
    if !errors.is_empty() {
        return Err(format!("flushing {chain}: {}", errors.join("; ")));
    }
    Ok(json!({ "chain": chain, "nodes": flushed, "flushed": flushed.len(), "delayers": delayers }))
}

/// Delay and loss: any mode, in the senders' namespaces; swept by `heal-delay` in every
/// run with a nemesis.
const NEEDS: Needs = Needs {
    mode: ModeNeed::Any,
    bus_proxy: false,
    node_host: true,
};

const SWEEP: Sweep = Sweep {
    op: "heal-delay",
    when: SweepWhen::Always,
    run: sweep,
};

fn sweep(ctx: &Ctx) -> BoxFuture<'_, Result<Value, String>> {
    Box::pin(heal_all(ctx))
}

/// The op names of a link fault applied by `start`.
const fn link_ops(start: &'static [&'static str]) -> FaultOps {
    FaultOps::new(start)
        .with_heals(&["heal"])
        .with_sweeps(&["heal-delay"])
}

links_package!(Delay, DelaySpec, link_ops(&["delay"]));
links_package!(Loss, LossSpec, link_ops(&["loss"]));

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
