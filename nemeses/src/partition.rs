//! Partitions: links between nodes cut with iptables inside the nodes' own namespaces.
//!
//! A partition is a *grudge* (Jepsen's word): for each node, the nodes whose packets it
//! drops on INPUT. Each [`Shape`] is a pure function from the node names and the fault's
//! draw to a [`Cut`], so the same seed always cuts the same links.
//!
//! Applying writes every node's grudge into a chain the run owns, `FL-<run id>` in table
//! `filter`, hooked first in INPUT once, with one exec (a short `sh -c`) per namespace:
//! `iptables-restore --noflush`, where declaring the chain (`:FL-<id> - [0:0]`) flushes
//! that chain and no other and the whole input commits or nothing does, then the hook
//! unless `iptables -C` finds it. The namespaces are written concurrently; `apply`
//! returns once every one has answered. Every node is written, those with
//! no grudge get an empty chain, so what is installed is exactly the recorded grudge even
//! if an earlier heal failed somewhere.
//!
//! Prepared ahead of its instant ([`crate::instant`]), the targets are resolved and one
//! `iptables-restore` per namespace is started (after the chain is made and hooked, empty,
//! if it was not) and fed its rules before the instant; at the instant each gets its
//! `COMMIT`, and the fault is in effect when every one has exited.
//!
//! Rules name peer *node* addresses only. The host's address on the run's subnet, through
//! which clients and the harness reach every node, is never cut: as in Jepsen, the
//! control plane stays up while the nodes lose each other. Healing flushes the chain; the
//! empty chain and its hook stay until the namespace goes.

use std::collections::BTreeMap;

use faultline_history::bounds::Bounded;
use faultline_history::FaultOps;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::{HostChange, NodeInfo};
use crate::fault::{Applied, BoxFuture, Ctx, Fault, Heal, STOPPED};
use crate::package::{FaultPackage, ModeNeed, Needs, SpecError, Sweep, SweepWhen};
use crate::proxy::fault as proxy_fault;
use crate::proxy::{BusProxy, Match, Opener, Rule, Verdict};
use crate::spec::Target;
use crate::target::{self, node_order};

use crate::iptables::{self, Peer, INSTALL_INPUT as INSTALL};

/// How a partition divides the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// Each target node alone, cut off from every other node.
    #[default]
    Isolate,
    /// A random minority and majority.
    Halves,
    /// Every node sees a majority, and no two nodes the same one.
    MajoritiesRing,
    /// Two halves, and one node that sees both.
    Bridge,
    /// Target nodes stop receiving from every other node; the others still receive
    /// from them (asymmetric).
    OneWay,
}

/// Which traffic a partition cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ports {
    /// Everything between the nodes.
    #[default]
    All,
    /// Only the cluster bus (gossip, failover votes).
    Bus,
    /// Only the client port (which also carries replication).
    Client,
}

/// A partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSpec {
    /// How the nodes are divided.
    #[serde(default)]
    pub shape: Shape,
    /// For `isolate` and `one-way`: which nodes (default one).
    #[serde(default)]
    pub target: Target,
    /// Draw this many of the target's nodes (default: all of them, or one for `one`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Bounded<1, 1000>>,
    /// Which traffic is cut.
    #[serde(default)]
    pub ports: Ports,
}

/// For each node, the nodes whose packets it drops, in node order. A node that drops
/// nothing is absent.
pub type Grudge = BTreeMap<String, Vec<String>>;

/// A partition computed from the node names, before it touches any machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The nodes the shape was aimed at: the targets for `isolate` and `one-way`, every
    /// node for the shapes that divide the whole cluster.
    pub nodes: Vec<String>,
    /// For symmetric shapes, the groups that cannot reach each other (a bridge node is in
    /// none of them); `None` for `majorities-ring` and `one-way`.
    pub components: Option<Vec<Vec<String>>>,
    /// For `bridge`: the node that still talks to both sides.
    pub bridge: Option<String>,
    /// For `majorities-ring`: the shuffled ring the majorities were taken from.
    pub ring: Option<Vec<String>>,
    /// Who drops whom.
    pub grudge: Grudge,
}

impl Cut {
    /// Number of iptables rules the cut needs: one per (node, peer it drops).
    pub fn rule_count(&self) -> usize {
        self.grudge.values().map(Vec::len).sum()
    }
}

/// Computes a shape's cut.
///
/// `all` are every node's names; `targets` matter to `isolate` and `one-way` only; `draw`
/// shuffles the nodes for `halves`, `majorities-ring` and `bridge`, repeatably.
pub fn cut(shape: Shape, all: &[String], targets: &[String], draw: u64) -> Cut {
    match shape {
        Shape::Isolate => isolate(all, targets),
        Shape::Halves => halves(all, draw),
        Shape::MajoritiesRing => majorities_ring(all, draw),
        Shape::Bridge => bridge(all, draw),
        Shape::OneWay => one_way(all, targets),
    }
}

/// Each target alone, and the other nodes together; symmetric.
pub fn isolate(all: &[String], targets: &[String]) -> Cut {
    let mut components: Vec<Vec<String>> = sorted(targets).into_iter().map(|t| vec![t]).collect();
    let rest: Vec<String> = all
        .iter()
        .filter(|n| !targets.contains(n))
        .cloned()
        .collect();
    if !rest.is_empty() {
        components.push(sorted(&rest));
    }
    Cut {
        nodes: sorted(targets),
        grudge: complete_grudge(&components),
        components: Some(components),
        bridge: None,
        ring: None,
    }
}

/// The shuffled nodes split into the first `n / 2` and the rest (a minority and a
/// majority for odd `n`, two equal halves for even `n`); symmetric.
pub fn halves(all: &[String], draw: u64) -> Cut {
    let order = shuffled(all, draw);
    let (a, b) = order.split_at(order.len() / 2);
    let components: Vec<Vec<String>> = [a, b]
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(sorted)
        .collect();
    Cut {
        nodes: sorted(all),
        grudge: complete_grudge(&components),
        components: Some(components),
        bridge: None,
        ring: None,
    }
}

/// Jepsen's majorities ring: the nodes in a shuffled ring; each sees the majority
/// (`n / 2 + 1` nodes) of consecutive ring positions around itself and drops the rest.
///
/// The node at ring position `i` sees positions `i - m/2 .. i - m/2 + m` (Jepsen's
/// `majorities-ring-perfect`). When `m` is odd (`n` = 4, 5, 8, 9, ...) the window is
/// centred and the grudge symmetric; otherwise it leans one way and some links are cut in
/// one direction only (on 3 nodes each node drops one neighbour, around the ring). Every
/// node's majority is a different set as soon as the ring is longer than a majority
/// (`n >= 3`).
pub fn majorities_ring(all: &[String], draw: u64) -> Cut {
    let ring = shuffled(all, draw);
    let n = ring.len();
    let m = n / 2 + 1;
    let mut grudge = Grudge::new();
    for i in 0..n {
        let start = (i + n - m / 2) % n;
        let seen: Vec<usize> = (0..m).map(|k| (start + k) % n).collect();
        let drops: Vec<String> = (0..n)
            .filter(|j| !seen.contains(j))
            .map(|j| ring[j].clone())
            .collect();
        if !drops.is_empty() {
            grudge.insert(ring[i].clone(), sorted(&drops));
        }
    }
    Cut {
        nodes: sorted(all),
        components: None,
        bridge: None,
        ring: Some(ring),
        grudge,
    }
}

/// Jepsen's bridge: the shuffled nodes split as for [`halves`]; the first node of the
/// second half is the bridge, which drops nothing and which nobody drops, so the two
/// sides without it cannot talk but both talk to it; symmetric.
pub fn bridge(all: &[String], draw: u64) -> Cut {
    let order = shuffled(all, draw);
    let (a, b) = order.split_at(order.len() / 2);
    let Some((bridge, b)) = b.split_first() else {
        return Cut {
            nodes: Vec::new(),
            components: Some(Vec::new()),
            bridge: None,
            ring: None,
            grudge: Grudge::new(),
        };
    };
    let components: Vec<Vec<String>> = [a, b]
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(sorted)
        .collect();
    Cut {
        nodes: sorted(all),
        grudge: complete_grudge(&components),
        components: Some(components),
        bridge: Some(bridge.clone()),
        ring: None,
    }
}

/// Each target drops whatever every other node sends it (other targets included); the
/// other nodes drop nothing, so they still receive what the targets send.
pub fn one_way(all: &[String], targets: &[String]) -> Cut {
    let mut grudge = Grudge::new();
    for t in targets {
        let others: Vec<String> = all.iter().filter(|n| *n != t).cloned().collect();
        if !others.is_empty() {
            grudge.insert(t.clone(), sorted(&others));
        }
    }
    Cut {
        nodes: sorted(targets),
        components: None,
        bridge: None,
        ring: None,
        grudge,
    }
}

/// Every node drops every node outside its own component.
pub fn complete_grudge(components: &[Vec<String>]) -> Grudge {
    let mut grudge = Grudge::new();
    for (i, component) in components.iter().enumerate() {
        let outside: Vec<String> = components
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        if outside.is_empty() {
            continue;
        }
        for node in component {
            grudge.insert(node.clone(), sorted(&outside));
        }
    }
    grudge
}

/// The run's chain: `FL-<run id>` (well under iptables' 28-character limit).
pub fn chain_name(run_id: &str) -> String {
    format!("FL-{run_id}")
}

/// The `iptables-restore --noflush` input that makes `chain` in node `me` drop exactly
/// what comes from `peers` (an empty `peers` empties the chain).
///
/// With `ports`, only TCP with either port in the set is dropped: the peer's port (`me`'s
/// connections to it: the replies come *from* that port) and `me`'s own (the peer's
/// connections to `me`). Ephemeral ports lie far above both.
pub fn restore_input(chain: &str, me: &NodeInfo, peers: &[&NodeInfo], ports: Ports) -> String {
    iptables::restore_input(chain, me, peers, ports, Peer::Source, "-j DROP")
}

/// A partition fault.
pub struct Partition {
    spec: PartitionSpec,
}

impl Partition {
    /// A partition with these parameters.
    pub fn new(spec: PartitionSpec) -> Partition {
        Partition { spec }
    }

    /// Whether the shape is aimed at the spec's target (the others divide every node).
    fn uses_target(&self) -> bool {
        matches!(self.spec.shape, Shape::Isolate | Shape::OneWay)
    }

    async fn run(&self, ctx: &Ctx, draw: u64) -> Applied {
        let all = ctx.names();
        let target = if self.uses_target() {
            self.spec.target.to_string()
        } else {
            Target::All.to_string()
        };
        let mut value = json!({
            "shape": self.spec.shape,
            "ports": self.spec.ports,
            "target": target,
            "mechanism": "iptables",
        });
        let targets = if self.uses_target() {
            if let Some(c) = self.spec.count {
                value["count"] = json!(c.get());
            }
            match self.resolve(ctx, &all, draw).await {
                Ok(t) => t,
                Err(e) => return Applied::failed(value, e),
            }
        } else {
            all.clone()
        };
        let cut = cut(self.spec.shape, &all, &targets, draw);
        value["nodes"] = json!(cut.nodes);
        if let Some(c) = &cut.components {
            value["components"] = json!(c);
        }
        if let Some(b) = &cut.bridge {
            value["bridge"] = json!(b);
        }
        if let Some(r) = &cut.ring {
            value["ring"] = json!(r);
        }
        value["grudge"] = json!(cut.grudge);
        value["rules"] = json!(cut.rule_count());
        if cut.grudge.is_empty() {
            return Applied::failed(value, format!("nothing to cut: {} nodes in all", all.len()));
        }
        if ctx.control.loopback() {
            return self.cut_at_proxy(ctx, &cut, value, draw).await;
        }

        // A composed step's other partitions write chains of their own (lanes).
        let lane = crate::fault::lane();
        let chain = lane_chain(ctx.control.run_id(), lane);
        value["chain"] = json!(chain);
        let infos = ctx.control.nodes();
        let jobs: Vec<(String, Option<String>)> = infos
            .iter()
            .map(|me| {
                let drops = cut.grudge.get(&me.name).map(Vec::as_slice).unwrap_or(&[]);
                let peers: Vec<&NodeInfo> =
                    infos.iter().filter(|p| drops.contains(&p.name)).collect();
                (
                    me.name.clone(),
                    Some(restore_input(&chain, me, &peers, self.spec.ports)),
                )
            })
            .collect();
        // On hosts faultline does not own, the chain is written down there and its revert
        // armed first; a node where that failed is not written.
        let change = hook(&chain);
        let refused: BTreeMap<String, String> = ctx
            .guard_each(&all, &change)
            .await
            .into_iter()
            .filter_map(|(n, r)| r.err().map(|e| (n, format!("not guarded: {e}"))))
            .collect();
        let jobs: Vec<_> = jobs
            .into_iter()
            .filter(|(n, _)| !refused.contains_key(n))
            .collect();
        let mut results = if crate::instant::preparing() {
            // Started and fed now; committed at the instant.
            let inputs = jobs
                .into_iter()
                .map(|(n, input)| (n, input.unwrap_or_default()))
                .collect();
            let installers =
                iptables::start_installers(ctx, iptables::PREPARE_INPUT, &chain, inputs).await;
            match crate::instant::at_instant(move || installers.commit()).await {
                Some(results) => results,
                None => return Applied::failed(value, STOPPED),
            }
        } else {
            ctx.sh_in_each(INSTALL, &chain, jobs).await
        };
        results.extend(refused.into_iter().map(|(n, e)| (n, Err(e))));
        // Every node was written, so every node may hold rules now.
        iptables::applied(value, results, Box::new(PartitionHeal { nodes: all, lane }))
    }

    /// On loopback (`--backend loopback`: no namespaces, so no iptables of the nodes' own)
    /// the grudge becomes drop rules in the run's bus proxy, one per node: what its
    /// grudge names is dropped on the way to it, on both connections of each pair. Only
    /// the cluster bus is cut (`cut` in the op: `bus`); clients and replication, on the
    /// client port, still flow, as with `ports: bus`. Healing removes the rules.
    async fn cut_at_proxy(&self, ctx: &Ctx, cut: &Cut, mut value: Value, draw: u64) -> Applied {
        value["mechanism"] = json!("bus-proxy");
        value["cut"] = json!("bus");
        if self.spec.ports == Ports::Client {
            return Applied::failed(
                value,
                "ports: client cannot be cut on loopback (the nodes share this machine's network stack)",
            );
        }
        let Some(proxy) = BusProxy::for_run(ctx.control.run_id()) else {
            return Applied::failed(
                value,
                "this loopback run has no bus proxy to cut the bus in",
            );
        };
        let rules: Vec<Rule> = cut
            .grudge
            .iter()
            .map(|(node, peers)| Rule {
                matcher: Match {
                    from: Some(peers.iter().cloned().collect()),
                    to: Some([node.clone()].into()),
                    opened_by: Opener::Any,
                    types: None,
                },
                verdict: Verdict::Drop,
                probability: 1.0,
                seed: draw,
                label: Self::OPS.kind.to_string(),
            })
            .collect();
        match crate::instant::at_instant(move || proxy_fault::install(&proxy, rules)).await {
            Some(rules) => proxy_fault::installed(value, rules),
            None => Applied::failed(value, STOPPED),
        }
    }

    /// The target nodes; roles are asked only for `primaries` / `replicas`.
    async fn resolve(&self, ctx: &Ctx, all: &[String], draw: u64) -> Result<Vec<String>, String> {
        let roles = match self.spec.target {
            Target::Primaries | Target::Replicas => Some(ctx.roles().await?),
            _ => None,
        };
        let count = self.spec.count.map(|c| c.get() as usize);
        target::resolve(&self.spec.target, count, all, roles.as_ref(), draw)
    }
}

impl Fault for Partition {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(self.run(ctx, draw))
    }

    fn prepares(&self) -> bool {
        true
    }
}

/// Undoes one partition: flushes its lane's chain in the nodes it wrote.
pub struct PartitionHeal {
    nodes: Vec<String>,
    lane: u8,
}

impl Heal for PartitionHeal {
    fn name(&self) -> &'static str {
        <Partition as FaultPackage>::OPS.heals[0]
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(flush(ctx, self.nodes.clone(), vec![self.lane]))
    }
}

/// Flushes the run's chain in every node where it exists, whatever made it: the final
/// phase's guarantee that no partition outlives the run's faults. Nodes without the chain
/// are skipped; killed or paused servers do not matter (iptables acts on the namespace).
///
/// # Returns
/// `{"nodes": [nodes whose chain was flushed], "flushed": how many}`.
///
/// # Errors
/// The nodes where the chain could not be listed or flushed, with why.
pub async fn heal_all(ctx: &Ctx) -> Result<Value, String> {
    if ctx.control.loopback() {
        // Partitions there are bus-proxy rules, which `heal-bus` removes.
        return Ok(json!({ "mechanism": "bus-proxy", "nodes": [], "flushed": 0 }));
    }
    let lanes: Vec<u8> = (0..crate::fault::LANES).collect();
    flush(ctx, ctx.names(), lanes).await
}

/// The chain of a partition in `lane` ([`crate::fault::lane`]): [`chain_name`] in lane 0,
/// `FL-<run id>-p<lane>` in the others.
pub fn lane_chain(run_id: &str, lane: u8) -> String {
    crate::fault::lane_name(&chain_name(run_id), "p", lane)
}

/// Flushes the chains of `lanes` in `nodes`; see [`heal_all`]. `nodes` lists where a
/// chain was flushed (a node once, whatever the lanes).
async fn flush(ctx: &Ctx, nodes: Vec<String>, lanes: Vec<u8>) -> Result<Value, String> {
    let run_id = ctx.control.run_id();
    let chains: Vec<String> = lanes.into_iter().map(|l| lane_chain(run_id, l)).collect();
    let (flushed, mut errors) = iptables::flush_chains(ctx, &chains, &nodes).await;
    if errors.is_empty() {
        for chain in &chains {
            errors.extend(ctx.release_each(&nodes, &hook(chain)).await);
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(json!({ "nodes": flushed, "flushed": flushed.len() }))
}

/// A partition chain as a change on a node's host: hooked from INPUT.
fn hook(chain: &str) -> HostChange {
    HostChange::Chain {
        chain: chain.to_string(),
        hook: "INPUT",
    }
}

/// Names in node order.
fn sorted(names: &[String]) -> Vec<String> {
    let mut v = names.to_vec();
    v.sort_by_key(|x| node_order(x));
    v
}

/// Names in node order, then shuffled by `draw`: the same draw gives the same order.
fn shuffled(names: &[String], draw: u64) -> Vec<String> {
    let mut v = sorted(names);
    v.shuffle(&mut StdRng::seed_from_u64(draw));
    v
}

impl FaultPackage for Partition {
    type Spec = PartitionSpec;
    const OPS: FaultOps = FaultOps::new(&["partition"])
        .with_heals(&["heal"])
        .with_sweeps(&["heal-all"])
        .disrupting_failovers();
    const NEEDS: Needs = Needs {
        mode: ModeNeed::Any,
        bus_proxy: false,
        node_host: true,
    };
    const SWEEP: Option<Sweep> = Some(Sweep {
        op: "heal-all",
        when: SweepWhen::Always,
        run: sweep,
    });
    fn targets(spec: &PartitionSpec) -> Vec<(&'static str, &Target)> {
        vec![("target", &spec.target)]
    }
    fn validate(spec: &PartitionSpec) -> Result<(), SpecError> {
        let divides_all = !matches!(spec.shape, Shape::Isolate | Shape::OneWay);
        if divides_all && (spec.target != Target::One || spec.count.is_some()) {
            return Err(SpecError {
                key: if spec.count.is_some() { "count" } else { "target" },
                message: "target and count choose nodes for the isolate and one-way shapes; this shape divides every node".into(),
            });
        }
        Ok(())
    }
    fn build(spec: &PartitionSpec) -> Box<dyn Fault> {
        Box::new(Partition::new(spec.clone()))
    }
}

fn sweep(ctx: &Ctx) -> BoxFuture<'_, Result<Value, String>> {
    Box::pin(heal_all(ctx))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::fault::Outcome;
    use crate::iptables::FLUSH_CHAIN as FLUSH;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// `a` drops `b`.
    fn drops(cut: &Cut, a: &str, b: &str) -> bool {
        cut.grudge.get(a).is_some_and(|d| d.iter().any(|x| x == b))
    }

    fn assert_symmetric(cut: &Cut) {
        for (a, ds) in &cut.grudge {
            for b in ds {
                assert!(drops(cut, b, a), "{a} drops {b} but not back: {cut:?}");
            }
        }
    }

    fn assert_no_self(cut: &Cut) {
        for (a, ds) in &cut.grudge {
            assert!(!ds.contains(a), "{a} drops itself: {cut:?}");
            assert!(!ds.is_empty(), "empty grudge entry for {a}");
        }
    }

    /// Components are disjoint, together with the bridge cover every node, and the grudge
    /// is exactly "everything outside my component".
    fn assert_components(cut: &Cut, all: &[String]) {
        let components = cut.components.as_ref().expect("components");
        let mut seen = BTreeSet::new();
        for c in components {
            for n in c {
                assert!(seen.insert(n.clone()), "{n} in two components");
            }
        }
        if let Some(b) = &cut.bridge {
            assert!(seen.insert(b.clone()), "bridge in a component");
        }
        assert_eq!(seen, all.iter().cloned().collect::<BTreeSet<_>>());
        for c in components {
            for a in c {
                for b in all {
                    let apart = !c.contains(b) && cut.bridge.as_ref() != Some(b);
                    assert_eq!(drops(cut, a, b), apart, "{a} -> {b} in {cut:?}");
                }
            }
        }
    }

    #[test]
    fn isolate_cuts_each_target_from_everyone() {
        let all = names(6);
        let cut = isolate(&all, &v(&["n2"]));
        assert_eq!(cut.nodes, v(&["n2"]));
        assert_eq!(
            cut.components,
            Some(vec![v(&["n2"]), v(&["n1", "n3", "n4", "n5", "n6"])])
        );
        assert_eq!(cut.grudge["n2"], v(&["n1", "n3", "n4", "n5", "n6"]));
        for other in ["n1", "n3", "n4", "n5", "n6"] {
            assert_eq!(cut.grudge[other], v(&["n2"]));
        }
        assert_eq!(cut.rule_count(), 10);
        assert_symmetric(&cut);
        assert_components(&cut, &all);

        let two = isolate(&all, &v(&["n5", "n1"]));
        assert_eq!(two.grudge["n1"], v(&["n2", "n3", "n4", "n5", "n6"]));
        assert_eq!(two.grudge["n3"], v(&["n1", "n5"]));
        assert_symmetric(&two);
        assert_components(&two, &all);

        let three = names(3);
        let cut = isolate(&three, &v(&["n3"]));
        assert_eq!(cut.grudge["n3"], v(&["n1", "n2"]));
        assert_eq!(cut.grudge["n1"], v(&["n3"]));
        assert_eq!(cut.rule_count(), 4);
        assert_symmetric(&cut);
        assert_components(&cut, &three);

        let everyone = isolate(&three, &three);
        assert_eq!(everyone.rule_count(), 6, "every node alone");
        assert!(isolate(&v(&["n1"]), &v(&["n1"])).grudge.is_empty());
    }

    #[test]
    fn halves_split_floor_half_against_the_rest() {
        for n in [3, 6] {
            let all = names(n);
            let mut splits = BTreeSet::new();
            for draw in 0..40 {
                let cut = halves(&all, draw);
                let c = cut.components.clone().unwrap();
                assert_eq!(c.len(), 2);
                assert_eq!(c[0].len(), n / 2);
                assert_eq!(c[1].len(), n - n / 2);
                assert_eq!(cut.rule_count(), 2 * (n / 2) * (n - n / 2));
                assert_symmetric(&cut);
                assert_no_self(&cut);
                assert_components(&cut, &all);
                assert_eq!(cut, halves(&all, draw), "same draw, same cut");
                splits.insert(c[0].clone());
            }
            assert!(splits.len() > 2, "draws spread the split: {splits:?}");
        }
    }

    #[test]
    fn majorities_ring_gives_every_node_its_own_majority() {
        for n in [3, 4, 5, 6, 7, 9] {
            let all = names(n);
            let m = n / 2 + 1;
            for draw in 0..20 {
                let cut = majorities_ring(&all, draw);
                assert_eq!(cut, majorities_ring(&all, draw), "same draw, same cut");
                assert_no_self(&cut);
                let mut majorities = BTreeSet::new();
                for node in &all {
                    let seen: BTreeSet<&String> =
                        all.iter().filter(|p| !drops(&cut, node, p)).collect();
                    assert_eq!(seen.len(), m, "{node} sees a bare majority in {cut:?}");
                    assert!(seen.contains(node));
                    // Its majority is contiguous on the ring around it.
                    let ring = cut.ring.as_ref().unwrap();
                    let at = ring.iter().position(|x| x == node).unwrap();
                    for k in 0..m {
                        let p = &ring[(at + n - m / 2 + k) % n];
                        assert!(seen.contains(p), "{node} sees ring neighbour {p}");
                    }
                    majorities.insert(seen);
                }
                assert_eq!(majorities.len(), n, "no two nodes see the same majority");
                if m % 2 == 1 {
                    assert_symmetric(&cut);
                }
            }
        }
    }

    #[test]
    fn majorities_ring_on_five_is_the_pentagram() {
        // Each node sees its two ring neighbours and drops the two across.
        let cut = majorities_ring(&names(5), 7);
        let ring = cut.ring.clone().unwrap();
        for i in 0..5 {
            let across = sorted(&[ring[(i + 2) % 5].clone(), ring[(i + 3) % 5].clone()]);
            assert_eq!(cut.grudge[&ring[i]], across);
        }
        assert_eq!(cut.rule_count(), 10);
    }

    #[test]
    fn bridge_node_sees_both_sides_which_cannot_talk() {
        for n in [3, 6] {
            let all = names(n);
            let mut bridges = BTreeSet::new();
            for draw in 0..40 {
                let cut = bridge(&all, draw);
                assert_eq!(cut, bridge(&all, draw), "same draw, same cut");
                let b = cut.bridge.clone().unwrap();
                assert!(!cut.grudge.contains_key(&b), "the bridge drops nothing");
                for node in &all {
                    assert!(!drops(&cut, node, &b), "{node} drops the bridge");
                }
                let c = cut.components.clone().unwrap();
                assert_eq!(c.len(), 2);
                assert_eq!(c[0].len(), n / 2);
                assert_eq!(c[1].len(), n - n / 2 - 1);
                assert_symmetric(&cut);
                assert_no_self(&cut);
                assert_components(&cut, &all);
                bridges.insert(b);
            }
            assert!(bridges.len() > 1, "draws move the bridge");
        }
        let two = bridge(&names(2), 0);
        assert!(
            two.grudge.is_empty(),
            "two nodes and a bridge: nothing to cut"
        );
    }

    #[test]
    fn one_way_targets_drop_everyone_and_nobody_drops_them() {
        let all = names(6);
        let cut = one_way(&all, &v(&["n4"]));
        assert_eq!(cut.nodes, v(&["n4"]));
        assert_eq!(cut.components, None);
        assert_eq!(cut.grudge.len(), 1);
        assert_eq!(cut.grudge["n4"], v(&["n1", "n2", "n3", "n5", "n6"]));
        assert_eq!(cut.rule_count(), 5);

        let three = names(3);
        let cut = one_way(&three, &v(&["n1", "n3"]));
        assert_eq!(cut.grudge["n1"], v(&["n2", "n3"]));
        assert_eq!(cut.grudge["n3"], v(&["n1", "n2"]));
        assert!(!cut.grudge.contains_key("n2"));
        assert!(drops(&cut, "n1", "n2") && !drops(&cut, "n2", "n1"));
    }

    #[test]
    fn cut_dispatches_and_is_deterministic_per_draw() {
        let all = names(6);
        let t = v(&["n3"]);
        for shape in [
            Shape::Isolate,
            Shape::Halves,
            Shape::MajoritiesRing,
            Shape::Bridge,
            Shape::OneWay,
        ] {
            for draw in [0, 1, u64::MAX] {
                assert_eq!(cut(shape, &all, &t, draw), cut(shape, &all, &t, draw));
                assert!(!cut(shape, &all, &t, draw).grudge.is_empty(), "{shape:?}");
            }
        }
        assert_eq!(cut(Shape::Isolate, &all, &t, 9), isolate(&all, &t));
        assert_eq!(cut(Shape::Halves, &all, &t, 9), halves(&all, 9));
    }

    fn node(name: &str, last: u8, port: u16) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            ip: std::net::Ipv4Addr::new(10, 77, 3, last),
            port,
            bus_port: port + 10000,
        }
    }

    #[test]
    fn restore_input_declares_only_the_run_chain() {
        let me = node("n1", 11, 6379);
        let (a, b) = (node("n2", 12, 6379), node("n3", 13, 6380));
        let all = restore_input("FL-abc123", &me, &[&a, &b], Ports::All);
        assert_eq!(
            all,
            "*filter\n:FL-abc123 - [0:0]\n\
             -A FL-abc123 -s 10.77.3.12/32 -j DROP\n\
             -A FL-abc123 -s 10.77.3.13/32 -j DROP\nCOMMIT\n"
        );
        let bus = restore_input("FL-abc123", &me, &[&a, &b], Ports::Bus);
        assert!(bus.contains("-s 10.77.3.12/32 -p tcp -m multiport --ports 16379 -j DROP\n"));
        assert!(bus.contains("-s 10.77.3.13/32 -p tcp -m multiport --ports 16379,16380 -j DROP\n"));
        let client = restore_input("FL-abc123", &me, &[&a], Ports::Client);
        assert!(client.contains("-s 10.77.3.12/32 -p tcp -m multiport --ports 6379 -j DROP\n"));
        assert_eq!(
            restore_input("FL-abc123", &me, &[], Ports::All),
            "*filter\n:FL-abc123 - [0:0]\nCOMMIT\n",
            "no peers: the chain is only emptied"
        );
        for text in [all, bus, client] {
            assert!(
                !text.contains("INPUT"),
                "the restore never names a built-in chain"
            );
        }
    }

    /// One recorded exec: node, program and arguments, stdin.
    type Exec = (String, Vec<String>, Option<String>);

    /// A [`Control`](crate::Control) that records execs and answers them like iptables
    /// would, failing in the nodes it is told to.
    struct Fake {
        nodes: Vec<NodeInfo>,
        failing: Vec<String>,
        /// What FLUSH prints per node (`flushed` or `absent`).
        flush_says: String,
        execs: std::sync::Mutex<Vec<Exec>>,
    }

    impl Fake {
        fn ctx(n: u8, failing: &[&str], flush_says: &str) -> (Ctx, std::sync::Arc<Fake>) {
            let fake = std::sync::Arc::new(Fake {
                nodes: (1..=n)
                    .map(|i| node(&format!("n{i}"), 10 + i, 6379))
                    .collect(),
                failing: v(failing),
                flush_says: flush_says.into(),
                execs: Default::default(),
            });
            let ctx = Ctx {
                control: fake.clone(),
                query_timeout: std::time::Duration::from_millis(100),
            };
            (ctx, fake)
        }

        fn execs(&self) -> Vec<Exec> {
            let mut e = self.execs.lock().unwrap().clone();
            e.sort_by_key(|(n, _, _)| node_order(n));
            e
        }
    }

    impl crate::Control for Fake {
        fn run_id(&self) -> &str {
            "abc123"
        }
        fn nodes(&self) -> &[NodeInfo] {
            &self.nodes
        }
        fn kill(&self, _: &str) -> anyhow::Result<()> {
            anyhow::bail!("not here")
        }
        fn restart(&self, _: &str) -> anyhow::Result<()> {
            anyhow::bail!("not here")
        }
        fn pause(&self, _: &str) -> anyhow::Result<()> {
            anyhow::bail!("not here")
        }
        fn resume(&self, _: &str) -> anyhow::Result<()> {
            anyhow::bail!("not here")
        }
        fn netns_path(&self, _: &str) -> anyhow::Result<std::path::PathBuf> {
            anyhow::bail!("not here")
        }
        fn spawn_in_netns(
            &self,
            _: &str,
            _: &str,
            _: &[&str],
        ) -> anyhow::Result<std::process::Child> {
            anyhow::bail!("not here: applied directly, a fault is not prepared")
        }
        fn exec_in_netns(
            &self,
            node: &str,
            program: &str,
            args: &[&str],
            stdin: Option<&str>,
        ) -> anyhow::Result<String> {
            assert_eq!(program, "sh");
            let mut all = vec![program.to_string()];
            all.extend(args.iter().map(|a| a.to_string()));
            self.execs
                .lock()
                .unwrap()
                .push((node.into(), all, stdin.map(String::from)));
            if self.failing.iter().any(|f| f == node) {
                anyhow::bail!("iptables-restore: line 3 failed");
            }
            Ok(if args[1] == FLUSH {
                format!("{}\n", self.flush_says)
            } else {
                String::new()
            })
        }
    }

    #[tokio::test]
    async fn apply_writes_every_node_once_and_records_the_exact_cut() {
        let (ctx, fake) = Fake::ctx(3, &[], "flushed");
        let p = Partition::new(PartitionSpec {
            shape: Shape::Isolate,
            target: Target::Nodes(v(&["n2"])),
            count: None,
            ports: Ports::Bus,
        });
        let applied = p.apply(&ctx, 5).await;
        assert_eq!(applied.outcome, Outcome::Ok);
        assert_eq!(applied.error, None);
        assert_eq!(
            applied.value,
            json!({
                "shape": "isolate",
                "ports": "bus",
                "target": "[n2]",
                "mechanism": "iptables",
                "nodes": ["n2"],
                "components": [["n2"], ["n1", "n3"]],
                "grudge": {"n1": ["n2"], "n2": ["n1", "n3"], "n3": ["n2"]},
                "rules": 4,
                "chain": "FL-abc123",
            })
        );
        let execs = fake.execs();
        assert_eq!(execs.len(), 3, "one exec per namespace");
        for (node, args, _) in &execs {
            assert_eq!(args[..2], ["sh", "-c"], "{node}");
            assert_eq!(args[2], INSTALL);
            assert_eq!(args[4], "FL-abc123", "the chain is the script's $1");
        }
        assert_eq!(
            execs[1].2.as_deref(),
            Some(
                "*filter\n:FL-abc123 - [0:0]\n\
                 -A FL-abc123 -s 10.77.3.11/32 -p tcp -m multiport --ports 16379 -j DROP\n\
                 -A FL-abc123 -s 10.77.3.13/32 -p tcp -m multiport --ports 16379 -j DROP\n\
                 COMMIT\n"
            )
        );

        let heal = applied.heal.expect("heal");
        assert_eq!(heal.name(), "heal");
        let healed = heal.heal(&ctx).await.unwrap();
        assert_eq!(healed, json!({"nodes": ["n1", "n2", "n3"], "flushed": 3}));
        let flushes: Vec<_> = fake
            .execs()
            .into_iter()
            .filter(|(_, a, _)| a[2] == FLUSH)
            .collect();
        assert_eq!(flushes.len(), 3, "one flush per namespace");
        assert!(flushes.iter().all(|(_, _, stdin)| stdin.is_none()));
    }

    #[tokio::test]
    async fn one_way_still_empties_the_other_nodes_chains() {
        let (ctx, fake) = Fake::ctx(3, &[], "flushed");
        let applied = Partition::new(PartitionSpec {
            shape: Shape::OneWay,
            target: Target::Nodes(v(&["n3"])),
            count: None,
            ports: Ports::All,
        })
        .apply(&ctx, 0)
        .await;
        assert_eq!(applied.outcome, Outcome::Ok);
        assert_eq!(applied.value["grudge"], json!({"n3": ["n1", "n2"]}));
        assert!(applied.value.get("components").is_none());
        let execs = fake.execs();
        assert_eq!(
            execs[0].2.as_deref(),
            Some("*filter\n:FL-abc123 - [0:0]\nCOMMIT\n"),
            "n1 drops nothing, and is made to"
        );
    }

    #[tokio::test]
    async fn a_namespace_that_refuses_makes_it_info_and_the_heal_covers_everyone() {
        let (ctx, _fake) = Fake::ctx(3, &["n3"], "absent");
        let applied = Partition::new(PartitionSpec {
            shape: Shape::Halves,
            ..PartitionSpec::default()
        })
        .apply(&ctx, 1)
        .await;
        assert_eq!(applied.outcome, Outcome::Info);
        let error = applied.error.clone().unwrap();
        assert!(error.starts_with("n3: "), "{error}");
        assert!(applied.value["failed"]["n3"].is_string());
        assert_eq!(applied.value["target"], "all");
        // The heal reaches every node; n3 still refuses, so the heal says so.
        let err = applied.heal.unwrap().heal(&ctx).await.unwrap_err();
        assert!(err.contains("n3: ") && !err.contains("n1: "), "{err}");
    }

    #[tokio::test]
    async fn nothing_to_cut_or_no_such_node_fails_without_touching_anything() {
        let (ctx, fake) = Fake::ctx(1, &[], "absent");
        let applied = Partition::new(PartitionSpec::default())
            .apply(&ctx, 0)
            .await;
        assert_eq!(applied.outcome, Outcome::Fail);
        assert!(applied.heal.is_none());
        assert!(applied.error.unwrap().contains("nothing to cut"));

        let (ctx3, _) = Fake::ctx(3, &[], "absent");
        let applied = Partition::new(PartitionSpec {
            target: Target::Nodes(v(&["n9"])),
            ..PartitionSpec::default()
        })
        .apply(&ctx3, 0)
        .await;
        assert_eq!(applied.outcome, Outcome::Fail);
        assert!(applied.error.unwrap().contains("n9"));
        assert_eq!(applied.value["shape"], "isolate");
        assert!(fake.execs().is_empty());
    }

    #[tokio::test]
    async fn heal_all_skips_namespaces_without_the_chain() {
        let (ctx, fake) = Fake::ctx(3, &[], "absent");
        let healed = heal_all(&ctx).await.unwrap();
        assert_eq!(healed, json!({"nodes": [], "flushed": 0}));
        assert_eq!(
            fake.execs().len(),
            3 * usize::from(crate::fault::LANES),
            "every namespace is asked about every lane's chain"
        );
    }

    #[tokio::test]
    async fn a_partition_in_another_lane_writes_and_heals_its_own_chain() {
        let (ctx, fake) = Fake::ctx(3, &[], "flushed");
        let p = Partition::new(PartitionSpec {
            shape: Shape::Isolate,
            target: Target::Nodes(v(&["n2"])),
            ..PartitionSpec::default()
        });
        let applied = crate::fault::in_lane(2, p.apply(&ctx, 5)).await;
        assert_eq!(applied.value["chain"], "FL-abc123-p2");
        let execs = fake.execs();
        assert!(execs.iter().all(|(_, a, _)| a[4] == "FL-abc123-p2"));
        assert!(execs[1]
            .2
            .as_deref()
            .unwrap()
            .starts_with("*filter\n:FL-abc123-p2 - [0:0]\n"));
        // The heal runs outside the lane (in the runner, or the final phase) and still
        // flushes only its own chain: lane 0's partition, if any, stays.
        applied.heal.unwrap().heal(&ctx).await.unwrap();
        let flushed: Vec<String> = fake
            .execs()
            .into_iter()
            .filter(|(_, a, _)| a[2] == FLUSH)
            .map(|(_, a, _)| a[4].clone())
            .collect();
        assert_eq!(flushed, vec!["FL-abc123-p2"; 3]);
    }
}
