//! `stuck-migration`: no node may still list a slot as IMPORTING or MIGRATING once the
//! run has settled (valkey-io/valkey#998: a slot left half-moved after a failover during
//! a migration; redis/redis#12336, valkey-io/valkey#2724: migration interleaved with
//! failover).
//!
//! In `CLUSTER NODES` a node lists its own half-moved slots on its `myself` line as
//! `[slot->-<target id>]` (migrating) and `[slot-<-<source id>]` (importing). The run's
//! final phase settles every slot (`settle-slots`) before the final reads, and the
//! observer polls until the very end; so each node's last view taken after the last
//! nemesis op (the final phase's sweeps) must list no such marker. A node that does is a
//! finding, quoted with its own line. A node with no view after that instant is listed
//! under `unjudged` (and named in the summary); with no node judged at all the verdict
//! is unknown.

use serde_json::{json, Value};

use faultline_history::{Op, Process};

use crate::checker::Input;
use crate::stream::{HistoryPass, OpSource};
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "stuck-migration";

/// Finds slots still MIGRATING or IMPORTING in each node's last view after the last
/// nemesis op.
#[derive(Debug, Clone, Copy, Default)]
pub struct StuckMigration;

/// One half-moved slot a node lists on its own line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The slot.
    pub slot: u16,
    /// `migrating` or `importing`.
    pub state: &'static str,
    /// The other node's id.
    pub peer: String,
}

/// The half-moved slots on the `myself` line of a raw `CLUSTER NODES` reply, and that line.
pub fn own_markers(cluster_nodes: &str) -> Option<(Vec<Marker>, &str)> {
    let line = cluster_nodes.lines().find(|l| {
        l.split_whitespace()
            .nth(2)
            .is_some_and(|flags| flags.split(',').any(|f| f == "myself"))
    })?;
    let markers = line
        .split_whitespace()
        .skip(8)
        .filter_map(|t| t.strip_prefix('[')?.strip_suffix(']').map(parse_marker))
        .flatten()
        .collect();
    Some((markers, line))
}

fn parse_marker(body: &str) -> Option<Marker> {
    let (slot, state, peer) = if let Some((s, p)) = body.split_once("->-") {
        (s, "migrating", p)
    } else {
        let (s, p) = body.split_once("-<-")?;
        (s, "importing", p)
    };
    Some(Marker {
        slot: slot.parse().ok()?,
        state,
        peer: peer.to_string(),
    })
}

/// Finds the instant after which the run is settled: the last nemesis op's time (the
/// final phase's sweeps come last), or 0 in a run without faults. The history streams
/// past; nothing of it is kept.
struct SettledAfter<'r> {
    run: &'r RunData,
    after: u64,
}

impl HistoryPass for SettledAfter<'_> {
    fn op(&mut self, _at: u64, op: &Op) {
        if op.process == Process::Nemesis {
            self.after = self.after.max(op.time_ns);
        }
    }

    fn finish(self: Box<Self>, _ops: &dyn OpSource) -> CheckerResult {
        judge(self.run, self.after)
    }
}

impl Checker for StuckMigration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Topology, Input::ClusterViews]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        crate::stream::run_in_memory(Box::new(SettledAfter { run, after: 0 }), run)
    }

    fn history_pass<'r>(&self, run: &'r RunData) -> Option<Box<dyn HistoryPass + 'r>> {
        Some(Box::new(SettledAfter { run, after: 0 }))
    }
}

/// The verdict from each node's last own view after `after`.
fn judge(run: &RunData, after: u64) -> CheckerResult {
    let views = run.views();
    let mut observers: Vec<&crate::views::ObserverViews> = views.observers.iter().collect();
    observers.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut stuck: Vec<Value> = Vec::new();
    let mut unjudged: Vec<&str> = Vec::new();
    let mut judged = 0;
    for o in observers {
        let observer = o.name.as_str();
        let last = o.last_reply.as_ref().filter(|(t, _)| *t >= after);
        let Some((markers, line)) = last.and_then(|(_, text)| own_markers(text)) else {
            unjudged.push(observer);
            continue;
        };
        judged += 1;
        if !markers.is_empty() {
            stuck.push(json!({
                "node": observer,
                "time_ns": last.map(|(t, _)| *t),
                "slots": markers.iter().map(|m| json!({
                    "slot": m.slot, "state": m.state, "peer": m.peer,
                })).collect::<Vec<_>>(),
                "line": line,
            }));
        }
    }
    let base = |valid| {
        CheckerResult::new(valid)
            .with("settled_after_ns", after)
            .with("nodes_judged", judged)
            .with("unjudged", json!(unjudged))
    };
    if !stuck.is_empty() {
        let slots: usize = stuck
            .iter()
            .map(|s| s["slots"].as_array().map_or(0, Vec::len))
            .sum();
        return base(Validity::Invalid)
            .with(
                "summary",
                format!(
                    "{} node(s) still list {slots} slot(s) MIGRATING or IMPORTING after the \
                         final settle",
                    stuck.len()
                ),
            )
            .with("stuck", stuck);
    }
    if judged == 0 {
        return base(Validity::Unknown).with(
            "reason",
            "no node's own CLUSTER NODES view after the last nemesis op",
        );
    }
    let unseen = if unjudged.is_empty() {
        String::new()
    } else {
        format!(
            " ({} not seen after it: {})",
            unjudged.len(),
            unjudged.join(", ")
        )
    };
    base(Validity::Valid).with(
        "summary",
        format!("no slot MIGRATING or IMPORTING on {judged} nodes after the final settle{unseen}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_history::Observation;
    use faultline_history::OpType;

    const SETTLED: &str = "aaa 10.0.0.11:6379@16379 myself,master - 0 0 1 connected 0-8191\n\
        bbb 10.0.0.12:6379@16379 master - 0 0 2 connected 8192-16383\n";
    const HALF: &str =
        "aaa 10.0.0.11:6379@16379 myself,master - 0 0 1 connected 0-8191 [8191->-bbb]\n\
        bbb 10.0.0.12:6379@16379 master - 0 0 2 connected 8192-16383\n";
    const IMPORTING: &str = "aaa 10.0.0.11:6379@16379 master - 0 0 1 connected 0-8191\n\
        bbb 10.0.0.12:6379@16379 myself,master - 0 0 2 connected 8192-16383 [8191-<-aaa]\n";

    fn run(views: &[(u64, &str, &str)]) -> RunData {
        let topology = views
            .iter()
            .map(|(t, o, text)| Observation::reply(*t, *o, *text))
            .collect();
        let mut sweep = Op::new(Process::Nemesis, OpType::Ok, "settle-slots");
        sweep.time_ns = 100;
        RunData::from_topology(topology).with_history(vec![sweep])
    }

    #[test]
    fn markers_on_the_own_line_are_read() {
        let (m, line) = own_markers(HALF).unwrap();
        assert_eq!(
            m,
            vec![Marker {
                slot: 8191,
                state: "migrating",
                peer: "bbb".into()
            }]
        );
        assert!(line.starts_with("aaa"));
        let (m, _) = own_markers(IMPORTING).unwrap();
        assert_eq!(m[0].state, "importing");
        assert!(own_markers(SETTLED).unwrap().0.is_empty());
    }

    #[test]
    fn a_half_moved_slot_after_the_settle_is_a_finding() {
        let r = StuckMigration.check(&run(&[(150, "n1", HALF), (150, "n2", IMPORTING)]));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["stuck"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn markers_before_the_settle_do_not_count() {
        let r = StuckMigration.check(&run(&[
            (50, "n1", HALF),
            (150, "n1", SETTLED),
            (150, "n2", SETTLED),
        ]));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
    }

    #[test]
    fn a_node_not_seen_after_the_settle_is_named_and_none_seen_is_unknown() {
        let r = StuckMigration.check(&run(&[(150, "n1", SETTLED), (50, "n2", SETTLED)]));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["unjudged"], json!(["n2"]));
        let r = StuckMigration.check(&run(&[(50, "n1", HALF)]));
        assert_eq!(r.valid, Validity::Unknown, "{r:?}");
    }
}
