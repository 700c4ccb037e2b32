//! The bus faults: `bus-delay`, `bus-drop`, `bus-hold`, as rules in the run's bus proxy.
//!
//! Applying resolves `from` and `to` with the step's draw (`to` from a draw of its own, so
//! `from: one, to: one` pick independently), installs one rule (two with `both_ways`)
//! seeded with the draw, and records the exact rules. Healing removes them: what they
//! delayed or held is delivered at once, in order. The proxy is found by run id
//! ([`BusProxy::for_run`]), so the faults are built from their spec alone like the others.

use std::collections::BTreeSet;
use std::time::Duration;

use faultline_history::FaultOps;
use serde_json::{json, Value};

use super::bus_proxy::BusProxy;
use super::frame::MsgType;
use super::rule::{Match, Opener, Rule, RuleId, Verdict};
use super::spec::{BusDelaySpec, BusDropSpec, BusHoldSpec, OpenedBy};
use crate::fault::{Applied, BoxFuture, Ctx, Fault, Heal, Outcome};
use crate::package::{links_package, FaultPackage, ModeNeed, Needs, Sweep, SweepWhen};
use crate::spec::Target;
use crate::target;

/// The history's `f` for healing a bus fault.
pub const HEAL: &str = "heal";

/// Which messages a bus fault is about, as written in its spec.
struct Links<'a> {
    from: &'a Target,
    to: &'a Target,
    both_ways: bool,
    opened_by: OpenedBy,
    types: &'a [MsgType],
}

/// `bus-delay`.
pub struct BusDelay(BusDelaySpec);

impl BusDelay {
    /// A bus-delay fault.
    pub fn new(spec: BusDelaySpec) -> BusDelay {
        BusDelay(spec)
    }
}

/// `bus-drop`.
pub struct BusDrop(BusDropSpec);

impl BusDrop {
    /// A bus-drop fault.
    pub fn new(spec: BusDropSpec) -> BusDrop {
        BusDrop(spec)
    }
}

/// `bus-hold`.
pub struct BusHold(BusHoldSpec);

impl BusHold {
    /// A bus-hold fault.
    pub fn new(spec: BusHoldSpec) -> BusHold {
        BusHold(spec)
    }
}

impl Fault for BusDelay {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        let s = &self.0;
        let links = Links {
            from: &s.from,
            to: &s.to,
            both_ways: s.both_ways,
            opened_by: s.opened_by,
            types: &s.types,
        };
        let verdict = Verdict::Delay {
            min: Duration::from_millis(s.delay_ms.min),
            max: Duration::from_millis(s.delay_ms.max),
            reorder: s.reorder,
        };
        let params = serde_json::to_value(s).unwrap_or(Value::Null);
        Box::pin(async move { apply(Self::OPS.kind, links, verdict, 1.0, params, ctx, draw).await })
    }
}

impl Fault for BusDrop {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        let s = &self.0;
        let links = Links {
            from: &s.from,
            to: &s.to,
            both_ways: s.both_ways,
            opened_by: s.opened_by,
            types: &s.types,
        };
        let params = serde_json::to_value(s).unwrap_or(Value::Null);
        Box::pin(async move {
            apply(
                Self::OPS.kind,
                links,
                Verdict::Drop,
                s.probability.0,
                params,
                ctx,
                draw,
            )
            .await
        })
    }
}

impl Fault for BusHold {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        let s = &self.0;
        let links = Links {
            from: &s.from,
            to: &s.to,
            both_ways: s.both_ways,
            opened_by: s.opened_by,
            types: &s.types,
        };
        let verdict = Verdict::Hold { reorder: s.reorder };
        let params = serde_json::to_value(s).unwrap_or(Value::Null);
        Box::pin(async move { apply(Self::OPS.kind, links, verdict, 1.0, params, ctx, draw).await })
    }
}

/// A bus fault's messages with its nodes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Senders.
    pub from: Vec<String>,
    /// Receivers.
    pub to: Vec<String>,
    /// Also `to -> from`.
    pub both_ways: bool,
    /// Which connection of each pair.
    pub opened_by: OpenedBy,
    /// Message types; empty is every type.
    pub types: Vec<MsgType>,
}

impl Resolved {
    /// The rules the fault installs: one for `from -> to`, and with `both_ways` one for
    /// `to -> from`, each seeded from `draw`.
    pub fn rules(&self, name: &str, verdict: &Verdict, probability: f64, draw: u64) -> Vec<Rule> {
        let set = |v: &[String]| Some(v.iter().cloned().collect::<BTreeSet<String>>());
        let types = (!self.types.is_empty()).then(|| self.types.iter().copied().collect());
        let opened_by = match self.opened_by {
            OpenedBy::Any => Opener::Any,
            OpenedBy::Sender => Opener::Sender,
            OpenedBy::Receiver => Opener::Receiver,
        };
        let mut directions = vec![(&self.from, &self.to)];
        if self.both_ways {
            directions.push((&self.to, &self.from));
        }
        directions
            .into_iter()
            .enumerate()
            .map(|(i, (a, b))| Rule {
                matcher: Match {
                    from: set(a),
                    to: set(b),
                    opened_by: opened_by.clone(),
                    types: types.clone(),
                },
                verdict: verdict.clone(),
                probability,
                // Each direction draws its own stream.
                seed: draw.wrapping_add(i as u64),
                label: name.to_string(),
            })
            .collect()
    }
}

async fn apply(
    name: &'static str,
    links: Links<'_>,
    verdict: Verdict,
    probability: f64,
    mut value: Value,
    ctx: &Ctx,
    draw: u64,
) -> Applied {
    value["mechanism"] = json!("bus-proxy");
    let Some(proxy) = BusProxy::for_run(ctx.control.run_id()) else {
        return Applied::failed(
            value,
            "this run has no bus proxy: set `cluster.bus: proxy` in the scenario",
        );
    };
    let (from, to) = match target::resolve_links(ctx, links.from, links.to, draw).await {
        Ok(sides) => sides,
        Err(e) => return Applied::failed(value, e),
    };
    value["from_nodes"] = json!(from);
    value["to_nodes"] = json!(to);
    if !from.iter().any(|a| to.iter().any(|b| a != b)) {
        return Applied::failed(value, "no link between these senders and receivers");
    }
    let rules = Resolved {
        from,
        to,
        both_ways: links.both_ways,
        opened_by: links.opened_by,
        types: links.types.to_vec(),
    }
    .rules(name, &verdict, probability, draw);
    value["seed"] = json!(draw);
    installed(value, install(&proxy, rules))
}

/// Adds `rules` to the proxy, in order; each with the id it got.
pub(crate) fn install(proxy: &BusProxy, rules: Vec<Rule>) -> Vec<(RuleId, Rule)> {
    rules
        .into_iter()
        .map(|r| (proxy.add_rule(r.clone()), r))
        .collect()
}

/// A fault made of installed proxy rules: they go into the op's record (`rules`), and
/// its heal removes them.
pub(crate) fn installed(mut value: Value, rules: Vec<(RuleId, Rule)>) -> Applied {
    value["rules"] = json!(rules
        .iter()
        .map(|(id, rule)| json!({ "id": id, "rule": rule }))
        .collect::<Vec<_>>());
    Applied {
        outcome: Outcome::Ok,
        value,
        error: None,
        heal: Some(Box::new(BusHeal {
            rules: rules.into_iter().map(|(id, _)| id).collect(),
        })),
    }
}

/// Removes a bus fault's rules, delivering what they held.
pub struct BusHeal {
    /// The rules the fault installed.
    pub rules: Vec<RuleId>,
}

impl Heal for BusHeal {
    fn name(&self) -> &'static str {
        HEAL
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let Some(proxy) = BusProxy::for_run(ctx.control.run_id()) else {
                return Err("the run's bus proxy is gone; its rules went with it".into());
            };
            let mut removed = Vec::new();
            let (mut released, mut reset) = (0, 0);
            for id in &self.rules {
                if let Some(r) = proxy.remove_rule(*id) {
                    removed.push(*id);
                    released += r.released;
                    reset += r.connections_reset;
                }
            }
            Ok(json!({
                "mechanism": "bus-proxy",
                "rules": removed,
                "released": released,
                "connections_reset": reset,
            }))
        })
    }
}

/// Removes every rule from the run's bus proxy and lets everything it holds go, for the
/// final phase. A run without a proxy has nothing to heal.
///
/// # Returns
/// `{"rules": [ids removed], "released": messages that were held, "connections_reset":
/// connections closed because drop rules lost messages on them}`.
///
/// # Errors
/// Never, today; a `Result` like the other final heals.
pub async fn heal_all(ctx: &Ctx) -> Result<Value, String> {
    let Some(proxy) = BusProxy::for_run(ctx.control.run_id()) else {
        return Ok(json!({ "mechanism": "bus-proxy", "proxy": false }));
    };
    let removed = proxy.clear_rules();
    // Anything still held (its rule already gone) goes too.
    let stragglers = proxy.release_all();
    Ok(json!({
        "mechanism": "bus-proxy",
        "rules": removed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        "released": removed.iter().map(|(_, r)| r.released).sum::<usize>() + stragglers,
        "connections_reset": removed.iter().map(|(_, r)| r.connections_reset).sum::<usize>(),
    }))
}

/// The bus faults: cluster mode with `cluster.bus: proxy`; swept by `heal-bus` whenever
/// the proxy runs.
pub(crate) const NEEDS: Needs = Needs {
    mode: ModeNeed::Cluster,
    bus_proxy: true,
    node_host: true,
};

/// Every rule removed, every held message released.
pub(crate) const SWEEP: Sweep = Sweep {
    op: "heal-bus",
    when: SweepWhen::BusProxy,
    run: sweep,
};

fn sweep(ctx: &Ctx) -> BoxFuture<'_, Result<Value, String>> {
    Box::pin(heal_all(ctx))
}

/// The op names of a bus fault applied by `start`.
const fn bus_ops(start: &'static [&'static str]) -> FaultOps {
    FaultOps::new(start)
        .with_heals(&[HEAL])
        .with_sweeps(&["heal-bus"])
}

links_package!(BusDelay, BusDelaySpec, bus_ops(&["bus-delay"]));
links_package!(BusDrop, BusDropSpec, bus_ops(&["bus-drop"]));
links_package!(BusHold, BusHoldSpec, bus_ops(&["bus-hold"]));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::link::Link;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn both_ways_mirrors_the_rule_and_keeps_the_connection_choice() {
        let rules = Resolved {
            from: v(&["n3"]),
            to: v(&["n1", "n2", "n3"]),
            both_ways: true,
            opened_by: OpenedBy::Any,
            types: vec![],
        }
        .rules("bus-drop", &Verdict::Drop, 1.0, 9);
        assert_eq!(rules.len(), 2);
        let out = Link::new("n3", "n1", "n3");
        let back = Link::new("n1", "n3", "n3");
        assert!(rules[0].matcher.matches(&out, None));
        assert!(!rules[0].matcher.matches(&back, None));
        assert!(rules[1].matcher.matches(&back, None));
        assert!(!rules[1].matcher.matches(&Link::new("n1", "n2", "n1"), None));
        assert_ne!(rules[0].seed, rules[1].seed);

        let pongs = Resolved {
            from: v(&["n1", "n2"]),
            to: v(&["n3"]),
            both_ways: false,
            opened_by: OpenedBy::Receiver,
            types: vec![MsgType::Pong],
        }
        .rules("bus-delay", &Verdict::Hold { reorder: false }, 1.0, 1);
        assert_eq!(pongs.len(), 1);
        assert!(pongs[0]
            .matcher
            .matches(&Link::new("n2", "n3", "n3"), Some(MsgType::Pong)));
        assert!(!pongs[0]
            .matcher
            .matches(&Link::new("n2", "n3", "n2"), Some(MsgType::Pong)));
        let recorded = serde_json::to_value(&pongs[0]).unwrap();
        assert_eq!(recorded["matcher"]["opened_by"], "receiver");
        assert_eq!(recorded["matcher"]["types"], json!(["pong"]));
        assert_eq!(recorded["verdict"]["verdict"], "hold");
    }
}
