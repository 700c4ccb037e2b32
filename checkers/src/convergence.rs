//! `convergence`: after the final heal, every node's view comes to agree, and soon.
//!
//! Agreement is about what matters to clients and failover: which nodes are primaries,
//! who replicates whom, which primary has which slots, and each node's config epoch. Ping
//! times, link states and `fail?` flags are left out (they differ between any two views).
//!
//! The clock starts at the final heal: the last nemesis op in `history.jsonl`; in a run
//! without faults, the first final read (`f` `read` invoke); with neither (no history, or
//! a run cut short before its final phase), the last second of the topology log, where
//! the views must simply agree at the end.

use std::collections::{BTreeMap, HashMap};

use faultline_history::{ClusterView, Op, OpType, Process};
use serde_json::{json, Value};

use crate::checker::Input;
use crate::stream::{HistoryPass, OpSource};
use crate::views::{millis, normalize, ranges_text, secs, Names, Sample, Views};
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "convergence";

/// How much of the log's end stands in for the final phase when nothing marks it.
const TAIL_NS: u64 = 1_000_000_000;

/// How many differences a summary names.
const SUMMARY_DIFFERENCES: usize = 3;

/// Checks that every observer's view agrees within
/// [`crate::Tolerances::convergence_bound_ms`] of the final heal and stays agreed to the
/// end of the log.
///
/// Only polls at or after the reference time count. Valid when the views agree at the
/// end and began agreeing within the bound; invalid when they agree too late, or still
/// disagree at the end when the log covers the whole bound (or has no reference point to
/// measure a bound from); unknown when no poll succeeded after the reference, when the log
/// ends before the bound with views still apart, or when an observer never answered after
/// the reference while the others agree. Skipped without `topology.jsonl`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Convergence;

/// Where the clock starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reference {
    LastNemesisOp(u64),
    FirstFinalRead(u64),
    TopologyTail(u64),
}

impl Reference {
    fn time_ns(self) -> u64 {
        match self {
            Reference::LastNemesisOp(t)
            | Reference::FirstFinalRead(t)
            | Reference::TopologyTail(t) => t,
        }
    }

    fn describe(self) -> String {
        match self {
            Reference::LastNemesisOp(t) => format!("the last nemesis op at {}", secs(t)),
            Reference::FirstFinalRead(t) => format!("the first final read at {}", secs(t)),
            Reference::TopologyTail(t) => format!("the log's last second, from {}", secs(t)),
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Reference::LastNemesisOp(_) => "last nemesis op",
            Reference::FirstFinalRead(_) => "first final read",
            Reference::TopologyTail(_) => "last second of topology",
        }
    }
}

/// One node as one view describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct NodeState {
    /// `primary`, `replica of <id>`, or the flags when neither.
    role: String,
    config_epoch: u64,
    slots: Vec<(u16, u16)>,
}

/// What a view says, reduced to what must agree: node id -> state.
type Config = BTreeMap<String, NodeState>;

fn config(view: &ClusterView) -> Config {
    view.nodes
        .iter()
        .map(|n| {
            let role = if n.is_primary() {
                "primary".to_string()
            } else if let (true, Some(p)) = (n.is_replica(), &n.primary_id) {
                format!("replica of {p}")
            } else {
                n.flags
                    .iter()
                    .filter(|f| f.as_str() != "myself")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(",")
            };
            (
                n.id.clone(),
                NodeState {
                    role,
                    config_epoch: n.config_epoch,
                    slots: normalize(n.slots.clone()),
                },
            )
        })
        .collect()
}

/// A node's state in words, with ids named.
fn state_text(names: &Names, s: Option<&NodeState>) -> String {
    let Some(s) = s else {
        return "unknown (not in the view)".to_string();
    };
    let role = match s.role.strip_prefix("replica of ") {
        Some(p) => format!("replica of {}", names.of(p)),
        None => s.role.clone(),
    };
    if s.slots.is_empty() {
        format!("{role} (epoch {})", s.config_epoch)
    } else {
        format!(
            "{role} {} (epoch {})",
            ranges_text(&s.slots),
            s.config_epoch
        )
    }
}

impl Checker for Convergence {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Topology, Input::ClusterViews]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        crate::stream::run_in_memory(self.history_pass(run).expect("streams"), run)
    }

    fn history_pass<'r>(&self, run: &'r RunData) -> Option<Box<dyn HistoryPass + 'r>> {
        Some(Box::new(Marks {
            run,
            last_nemesis_ns: None,
            first_read_ns: None,
        }))
    }
}

/// What the history says about where the clock starts, gathered as it streams past.
struct Marks<'r> {
    run: &'r RunData,
    /// The latest nemesis op's time.
    last_nemesis_ns: Option<u64>,
    /// The first `read` invoke's time.
    first_read_ns: Option<u64>,
}

impl HistoryPass for Marks<'_> {
    fn op(&mut self, _at: u64, op: &Op) {
        if op.process == Process::Nemesis {
            self.last_nemesis_ns = self.last_nemesis_ns.max(Some(op.time_ns));
        }
        if self.first_read_ns.is_none() && op.f == "read" && op.kind == OpType::Invoke {
            self.first_read_ns = Some(op.time_ns);
        }
    }

    fn finish(self: Box<Self>, _: &dyn OpSource) -> CheckerResult {
        judge(self.run, &self)
    }
}

/// The verdict, once the history's marks are known.
fn judge(run: &RunData, marks: &Marks) -> CheckerResult {
    let views = run.views();
    let names = &views.names;
    let bound_ms = run.tolerances.convergence_bound_ms;
    let Some(last_ns) = views.last_ns else {
        return CheckerResult::unknown("topology.jsonl is empty");
    };
    let reference = reference(marks, last_ns);
    let t0 = reference.time_ns();

    // Every successful poll at or after the reference, in time order, as interned
    // configs.
    let mut interned: HashMap<Config, usize> = HashMap::new();
    let mut configs: Vec<Config> = Vec::new();
    let mut timeline: Vec<(u64, usize, usize)> = Vec::new();
    for (o, observer) in views.observers.iter().enumerate() {
        for sample in &observer.samples {
            if let Sample::View { time_ns, view, .. } = sample {
                if *time_ns >= t0 {
                    let c = config(view);
                    let id = *interned.entry(c.clone()).or_insert_with(|| {
                        configs.push(c);
                        configs.len() - 1
                    });
                    timeline.push((*time_ns, o, id));
                }
            }
        }
    }
    timeline.sort_unstable();
    let base = CheckerResult::new(Validity::Unknown)
        .with(
            "reference",
            json!({"kind": reference.kind(), "time_ns": t0}),
        )
        .with("bound_ms", bound_ms)
        .with("input", views.input_counts());
    if timeline.is_empty() {
        let reason = format!(
            "no successful observation after {}: nothing to judge convergence by",
            reference.describe()
        );
        return base.with("reason", reason);
    }

    let n = views.observers.len();
    let mut latest: Vec<Option<usize>> = vec![None; n];
    let mut agreed_since: Option<u64> = None;
    for &(t, o, c) in &timeline {
        latest[o] = Some(c);
        let agreed = latest.iter().all(|l| l.is_some() && *l == latest[0]);
        match (agreed, agreed_since) {
            (true, None) => agreed_since = Some(t),
            (false, Some(_)) => agreed_since = None,
            _ => {}
        }
    }
    let end_ns = timeline.last().map_or(t0, |e| e.0);
    let observed_ms = millis(t0, end_ns);

    if let Some(since) = agreed_since {
        let took_ms = millis(t0, since);
        let agreed = &configs[latest[0].unwrap_or(0)];
        let mut primaries: Vec<String> = agreed
            .iter()
            .filter(|(_, s)| s.role == "primary")
            .map(|(id, s)| format!("{} {}", names.of(id), state_text(names, Some(s))))
            .collect();
        primaries.sort();
        let owned = normalize(
            agreed
                .values()
                .filter(|s| s.role == "primary")
                .flat_map(|s| s.slots.iter().copied())
                .collect(),
        );
        let unowned = 16384 - crate::views::slot_count(&owned);
        let result = base
            .with("converged_ns", since)
            .with("took_ms", took_ms)
            .with("observed_after_ms", observed_ms)
            .with("agreed_primaries", primaries)
            .with("agreed_unowned_slots", unowned);
        let late = took_ms > bound_ms && !matches!(reference, Reference::TopologyTail(_));
        let mut result = if late {
            CheckerResult {
                valid: Validity::Invalid,
                ..result
            }
            .with(
                "summary",
                format!(
                    "every view agreed only {took_ms} ms after {} (bound {bound_ms} ms)",
                    reference.describe()
                ),
            )
        } else {
            CheckerResult {
                valid: Validity::Valid,
                ..result
            }
            .with(
                "summary",
                format!(
                    "all {n} views agreed {took_ms} ms after {} and stayed agreed",
                    reference.describe()
                ),
            )
        };
        result.details.remove("reason");
        return result;
    }

    let silent: Vec<&str> = views
        .observers
        .iter()
        .zip(&latest)
        .filter(|(_, l)| l.is_none())
        .map(|(o, _)| o.name.as_str())
        .collect();
    let answering: Vec<(usize, usize)> = latest
        .iter()
        .enumerate()
        .filter_map(|(o, l)| l.map(|c| (o, c)))
        .collect();
    let (groups, differences) = disagreement(views, &configs, &answering);
    let result = base
        .with("observed_after_ms", observed_ms)
        .with("final_views", groups)
        .with("differences", differences.clone());
    let first = differences
        .iter()
        .take(SUMMARY_DIFFERENCES)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if differences.is_empty() && !silent.is_empty() {
        let reason = format!(
            "{} never answered after {}; the other views agree",
            silent.join(", "),
            reference.describe()
        );
        return result
            .with("silent_observers", silent)
            .with("reason", reason);
    }
    let result = result.with("silent_observers", silent);
    let tail = matches!(reference, Reference::TopologyTail(_));
    if !tail && observed_ms < bound_ms {
        let reason = format!(
                "observation stopped {observed_ms} ms after {}, before the {bound_ms} ms bound, with views still apart: {first}",
                reference.describe()
            );
        return result.with("reason", reason);
    }
    let summary = format!(
        "views still disagree {observed_ms} ms after {}: {first}",
        reference.describe()
    );
    let mut result = CheckerResult {
        valid: Validity::Invalid,
        ..result
    }
    .with("summary", summary);
    result.details.remove("reason");
    result
}

/// Where the clock starts: see the module documentation.
fn reference(marks: &Marks, last_ns: u64) -> Reference {
    if let Some(t) = marks.last_nemesis_ns {
        return Reference::LastNemesisOp(t);
    }
    if let Some(t) = marks.first_read_ns {
        return Reference::FirstFinalRead(t);
    }
    Reference::TopologyTail(last_ns.saturating_sub(TAIL_NS))
}

/// The answering observers grouped by the config they show last, and the differences
/// between the largest group and the others, in words.
fn disagreement(
    views: &Views,
    configs: &[Config],
    answering: &[(usize, usize)],
) -> (Vec<Value>, Vec<String>) {
    let names = &views.names;
    let mut by_config: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for &(o, c) in answering {
        by_config
            .entry(c)
            .or_default()
            .push(views.observers[o].name.as_str());
    }
    let mut groups: Vec<(usize, Vec<&str>)> = by_config.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let json_groups = groups
        .iter()
        .map(|(c, observers)| {
            let mut nodes: Vec<(String, String)> = configs[*c]
                .iter()
                .map(|(id, s)| (names.of(id), state_text(names, Some(s))))
                .collect();
            nodes.sort_by(|a, b| {
                crate::run_data::node_order(&a.0).cmp(&crate::run_data::node_order(&b.0))
            });
            json!({
                "observers": observers,
                "nodes": nodes.into_iter().map(|(n, s)| format!("{n}: {s}")).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut differences = Vec::new();
    if let Some((reference, majority)) = groups.first() {
        let reference = &configs[*reference];
        for (c, observers) in &groups[1..] {
            let other = &configs[*c];
            let mut ids: Vec<&String> = reference.keys().chain(other.keys()).collect();
            ids.sort();
            ids.dedup();
            for id in ids {
                let (a, b) = (reference.get(id), other.get(id));
                if a != b {
                    differences.push(format!(
                        "{} see {} as {}, {} see it as {}",
                        observers.join(","),
                        names.of(id),
                        state_text(names, b),
                        majority.join(","),
                        state_text(names, a)
                    ));
                }
            }
        }
    }
    (json_groups, differences)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::{healthy_round, view_3x1};
    use faultline_history::{Observation, Op};

    const MS: u64 = 1_000_000;

    /// n3's view of seed 002: n1 replica of n4.
    fn n3_wrong() -> String {
        view_3x1(3, &|n, l| {
            if n == 1 {
                l.flags = "slave".into();
                l.primary = Some(4);
            }
        })
    }

    fn nemesis_at(t_ms: u64) -> Op {
        let mut op = Op::new(Process::Nemesis, OpType::Ok, "heal");
        op.time_ns = t_ms * MS;
        op
    }

    fn round_with_n3(t_ms: u64, n3: String) -> Vec<Observation> {
        let mut r = healthy_round(t_ms);
        r[2] = Observation::reply(t_ms * MS, "n3", n3);
        r
    }

    #[test]
    fn views_that_agree_soon_after_the_heal_are_valid() {
        let mut obs = round_with_n3(0, n3_wrong());
        obs.extend(round_with_n3(1000, n3_wrong()));
        obs.extend(healthy_round(1500));
        obs.extend(healthy_round(2000));
        let run = RunData::from_topology(obs).with_history(vec![nemesis_at(900)]);
        let r = Convergence.check(&run);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["took_ms"], 600);
        assert_eq!(r.details["converged_ns"], 1500 * MS);
        assert_eq!(r.details["reference"]["kind"], "last nemesis op");
        assert_eq!(r.details["agreed_unowned_slots"], 0);
        assert_eq!(r.details["agreed_primaries"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn views_apart_at_the_end_of_a_long_enough_log_are_invalid_and_named() {
        let mut obs = Vec::new();
        for t in (0..=3000).step_by(500) {
            obs.extend(round_with_n3(t, n3_wrong()));
        }
        let mut run = RunData::from_topology(obs).with_history(vec![nemesis_at(100)]);
        run.tolerances.convergence_bound_ms = 2000;
        let r = Convergence.check(&run);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        let s = r.details["summary"].as_str().unwrap();
        assert!(
            s.contains("n3 see n1 as replica of n4 0-5460 (epoch 1), n1,n2,n4,n5,n6 see it as primary 0-5460 (epoch 1)"),
            "{s}"
        );
        // The same log is too short for the default 30 s bound: unknown.
        run.tolerances.convergence_bound_ms = 30_000;
        let r = Convergence.check(&run);
        assert_eq!(r.valid, Validity::Unknown, "{r:?}");
        assert!(r.details["reason"]
            .as_str()
            .unwrap()
            .contains("before the 30000 ms bound"));
    }

    #[test]
    fn agreeing_later_than_the_bound_is_invalid() {
        let mut obs = Vec::new();
        for t in (0..=3000).step_by(500) {
            obs.extend(round_with_n3(t, n3_wrong()));
        }
        obs.extend(healthy_round(3500));
        let mut run = RunData::from_topology(obs).with_history(vec![nemesis_at(0)]);
        run.tolerances.convergence_bound_ms = 3000;
        let r = Convergence.check(&run);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["took_ms"], 3500);
    }

    #[test]
    fn without_history_the_last_second_must_agree() {
        let mut obs = healthy_round(0);
        obs.extend(round_with_n3(5000, n3_wrong()));
        let r = Convergence.check(&RunData::from_topology(obs.clone()));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["reference"]["kind"], "last second of topology");
        obs.extend(healthy_round(5050));
        let r = Convergence.check(&RunData::from_topology(obs));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
    }

    #[test]
    fn nothing_after_the_heal_or_a_silent_observer_is_unknown() {
        let obs = healthy_round(0);
        let run = RunData::from_topology(obs).with_history(vec![nemesis_at(10)]);
        let r = Convergence.check(&run);
        assert_eq!(r.valid, Validity::Unknown, "{r:?}");
        assert!(r.details["reason"]
            .as_str()
            .unwrap()
            .contains("no successful observation after"));

        let mut obs = healthy_round(0);
        let mut later = healthy_round(100);
        later[2] = Observation::failed(100 * MS, "n3", "timed out");
        obs.extend(later);
        let run = RunData::from_topology(obs).with_history(vec![nemesis_at(50)]);
        let r = Convergence.check(&run);
        assert_eq!(r.valid, Validity::Unknown, "{r:?}");
        assert_eq!(r.details["silent_observers"], json!(["n3"]));
    }

    #[test]
    fn the_first_final_read_starts_the_clock_in_a_run_without_faults() {
        let mut read = Op::new(Process::Client(0), OpType::Invoke, "read").with_key("s1");
        read.time_ns = 40 * MS;
        let mut obs = healthy_round(0);
        obs.extend(healthy_round(50));
        let run = RunData::from_topology(obs).with_history(vec![read]);
        let r = Convergence.check(&run);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["reference"]["kind"], "first final read");
        assert_eq!(r.details["took_ms"], 10);
    }
}
