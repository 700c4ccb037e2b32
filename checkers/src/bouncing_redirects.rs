//! `bouncing-redirects`: clients sent back and forth between nodes.
//!
//! Every client completion carries the redirect hops its client followed (`redirects`:
//! kind, slot, from, to). Three shapes are findings:
//! - **cycle**: one op's chain takes the same hop twice (A to B to A to B): the nodes
//!   disagree about who serves the key, and each keeps sending the client to the other.
//!   Seed 003 (valkey-io/valkey#821) is this with `-REDIRECT` during a standalone
//!   `FAILOVER`: the old primary redirects to the new one, which, still a replica, redirects
//!   back. A single return (A to B to A) is not a finding: a fixed Valkey 8.0.1 does that
//!   once, legitimately, to an op that reaches the new primary mid-hand-over and is sent
//!   back when the hand-over ends. Such chains are counted (`returns`).
//! - **long chain**: more moving hops (MOVED, ASK, REDIRECT) in one op than
//!   [`crate::Tolerances::redirect_chain_max`], or an op the client gave up on with
//!   `redirect limit`.
//! - **ping-pong**: two consecutive ops of one process, close in time
//!   ([`crate::Tolerances::redirect_pingpong_window_ms`]), the second redirected along a hop
//!   of the first reversed (B to A after A to B, for the same slot): the cluster's answer
//!   flipped back, so clients flap between nodes. One reversal alone can be a clean
//!   hand-over, and is not a finding: the first op was sent on to B and served there, the
//!   second was sent from B to A and served at A (a failover between two ops of a client
//!   that enters at random nodes: A, B's replica, answered MOVED to B, then B, demoted,
//!   answered MOVED to A). A hand-over that is itself reversed within the window is a
//!   finding: ownership went back and forth. ASK hops are left out of it: an ASK is
//!   a one-off for a key already moved while the source still owns the slot, so a MOVED
//!   from the importing node back to the source, next op, is the migration protocol (a
//!   client starting at the importing node meets exactly that), not a flip.
//!
//! TRYAGAIN and CLUSTERDOWN are retries at the same node, never moves: they are counted,
//! not judged. Findings are grouped into episodes per shape and set of nodes; one episode
//! runs while its findings come less than the ping-pong window apart.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use faultline_history::{Op, OpType, Process, Redirect};
use serde_json::{json, Value};

use crate::checker::Input;
use crate::fast_hash::FastMap;
use crate::stream::{HistoryPass, OpSource};
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "bouncing-redirects";

/// The error a client records when it stops following redirects.
pub const REDIRECT_LIMIT: &str = "redirect limit";

/// How many episodes a result lists.
const EXAMPLES: usize = 20;

/// Finds redirect cycles, long chains and ping-pong in the clients' hops. Skipped without
/// `history.jsonl`; unknown when no client op completed.
#[derive(Debug, Clone, Copy, Default)]
pub struct BouncingRedirects;

/// The shape of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Shape {
    Cycle,
    LongChain,
    PingPong,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Shape::Cycle => "cycle",
            Shape::LongChain => "long-chain",
            Shape::PingPong => "ping-pong",
        }
    }
}

/// One op (or pair of ops) that bounced.
#[derive(Debug, Clone)]
struct Finding {
    shape: Shape,
    /// The nodes involved, sorted.
    nodes: BTreeSet<String>,
    time_ns: u64,
    process: Process,
    /// The history index of the (second) op.
    index: u64,
    hops: usize,
    redirects: Vec<Redirect>,
}

/// Findings of one shape over one set of nodes, close together in time.
#[derive(Debug, Clone)]
struct Episode {
    shape: Shape,
    nodes: BTreeSet<String>,
    first_ns: u64,
    last_ns: u64,
    ops: usize,
    hops: usize,
    processes: BTreeSet<String>,
    example: Finding,
}

impl Episode {
    fn to_json(&self) -> Value {
        json!({
            "shape": self.shape.label(),
            "nodes": self.nodes.iter().collect::<Vec<_>>(),
            "from_s": secs_f(self.first_ns),
            "to_s": secs_f(self.last_ns),
            "ops": self.ops,
            "hops": self.hops,
            "processes": self.processes.len(),
            "example": {
                "index": self.example.index,
                "process": self.example.process.to_string(),
                "redirects": self.example.redirects,
            },
        })
    }
}

fn secs_f(ns: u64) -> f64 {
    (ns as f64 / 1e6).round() / 1e3
}

/// Whether a hop moves the client to another node (rather than retrying where it is).
fn moves(r: &Redirect) -> bool {
    matches!(r.kind.as_str(), "MOVED" | "ASK" | "REDIRECT") && r.from != r.to
}

/// The nodes between the two takings of a hop the chain takes twice, if it does.
fn cycle(hops: &[&Redirect]) -> Option<BTreeSet<String>> {
    for (i, hop) in hops.iter().enumerate() {
        if let Some(j) = hops[i + 1..]
            .iter()
            .position(|h| h.from == hop.from && h.to == hop.to)
        {
            return Some(nodes_of(&hops[i..=i + 1 + j]));
        }
    }
    None
}

/// Whether the chain comes back to a node it left.
fn returns(hops: &[&Redirect]) -> bool {
    hops.iter()
        .enumerate()
        .any(|(i, h)| hops[..i].iter().any(|e| e.from == h.to))
}

/// A hop of `later` that reverses a hop of `earlier` (same slot, or both slot-less);
/// ASK hops claim no ownership and take no part.
fn reversal<'a>(earlier: &[&Redirect], later: &[&'a Redirect]) -> Option<&'a Redirect> {
    later.iter().copied().filter(|b| b.kind != "ASK").find(|b| {
        earlier
            .iter()
            .any(|a| a.kind != "ASK" && a.from == b.to && a.to == b.from && a.slot == b.slot)
    })
}

impl Checker for BouncingRedirects {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::History]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        crate::stream::run_in_memory(self.history_pass(run).expect("streams"), run)
    }

    fn history_pass<'r>(&self, run: &'r RunData) -> Option<Box<dyn HistoryPass + 'r>> {
        Some(Box::new(Pass {
            run,
            chain_max: run.tolerances.redirect_chain_max as usize,
            window_ns: run.tolerances.redirect_pingpong_window_ms * 1_000_000,
            by_kind: BTreeMap::new(),
            completions: 0,
            redirected: 0,
            longest: 0,
            returned: 0,
            findings: Vec::new(),
            previous: FastMap::default(),
        }))
    }
}

/// The counts and findings so far, as the history streams past.
struct Pass<'r> {
    run: &'r RunData,
    chain_max: usize,
    window_ns: u64,
    by_kind: BTreeMap<String, u64>,
    completions: u64,
    redirected: u64,
    longest: usize,
    returned: u64,
    findings: Vec<Finding>,
    /// Per process: its previous completion that moved.
    previous: FastMap<Process, Previous>,
}

/// A process's previous completion that moved between nodes.
struct Previous {
    time_ns: u64,
    /// Its moving hops.
    hops: Vec<Redirect>,
    /// Whether it reversed a hop of the op before it as a clean hand-over.
    hand_over: bool,
}

/// The node an op was last sent to (where it was served, if it was).
fn ended_at<'a>(hops: &[&'a Redirect]) -> Option<&'a str> {
    hops.last().map(|h| h.to.as_str())
}

impl HistoryPass for Pass<'_> {
    fn op(&mut self, _at: u64, op: &Op) {
        if op.process == Process::Nemesis || op.kind == OpType::Invoke {
            return;
        }
        self.completions += 1;
        let gave_up = op.kind == OpType::Info && op.error.as_deref() == Some(REDIRECT_LIMIT);
        if op.redirects.is_empty() && !gave_up {
            // No hop: nothing to count or find, and nothing for a later op to reverse.
            if !self.previous.is_empty() {
                self.previous.remove(&op.process);
            }
            return;
        }
        for r in &op.redirects {
            *self.by_kind.entry(r.kind.clone()).or_default() += 1;
        }
        if !op.redirects.is_empty() {
            self.redirected += 1;
        }
        let hops: Vec<&Redirect> = op.redirects.iter().filter(|r| moves(r)).collect();
        self.longest = self.longest.max(hops.len());
        if returns(&hops) {
            self.returned += 1;
        }
        let finding = |shape, nodes| Finding {
            shape,
            nodes,
            time_ns: op.time_ns,
            process: op.process,
            index: op.index,
            hops: op.redirects.len(),
            redirects: op.redirects.clone(),
        };
        if let Some(nodes) = cycle(&hops) {
            self.findings.push(finding(Shape::Cycle, nodes));
        }
        if hops.len() > self.chain_max || gave_up {
            self.findings
                .push(finding(Shape::LongChain, nodes_of(&hops)));
        }
        let mut hand_over = false;
        if let Some(prev) = self.previous.get(&op.process) {
            if op.time_ns.saturating_sub(prev.time_ns) <= self.window_ns {
                let before: Vec<&Redirect> = prev.hops.iter().collect();
                if let Some(back) = reversal(&before, &hops) {
                    // Served at B, then sent from B to A and served at A: one hand-over,
                    // unless the op before was one too (the answer went back).
                    let clean = ended_at(&before) == Some(back.from.as_str())
                        && ended_at(&hops) == Some(back.to.as_str());
                    if clean && !prev.hand_over {
                        hand_over = true;
                    } else {
                        let nodes = [back.from.clone(), back.to.clone()].into();
                        self.findings.push(finding(Shape::PingPong, nodes));
                    }
                }
            }
        }
        let hops = hops.into_iter().cloned().collect();
        self.previous.insert(
            op.process,
            Previous {
                time_ns: op.time_ns,
                hops,
                hand_over,
            },
        );
    }

    fn finish(self: Box<Self>, _: &dyn OpSource) -> CheckerResult {
        let Pass {
            run,
            chain_max,
            window_ns,
            by_kind,
            completions,
            redirected,
            longest,
            returned,
            findings,
            ..
        } = *self;
        let episodes = group(findings, window_ns);
        let mut result = if completions == 0 {
            CheckerResult::unknown("no client op completed, so no redirect was observed")
        } else if episodes.is_empty() {
            CheckerResult::new(Validity::Valid).with(
                "summary",
                format!(
                    "no bouncing: {redirected} of {completions} ops redirected ({}), \
                     longest chain {longest} (allowed {chain_max})",
                    kinds_text(&by_kind)
                ),
            )
        } else {
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            for e in &episodes {
                *count.entry(e.shape.label()).or_default() += 1;
            }
            let first = &episodes[0];
            CheckerResult::new(Validity::Invalid).with(
                "summary",
                format!(
                    "{} bouncing-redirect episode(s) ({}); first: {} between {} at {:.3} s",
                    episodes.len(),
                    count
                        .iter()
                        .map(|(k, v)| format!("{v} {k}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    first.shape.label(),
                    first.nodes.iter().cloned().collect::<Vec<_>>().join(", "),
                    secs_f(first.first_ns),
                ),
            )
        };
        result = result
            .with("ops", completions)
            .with("ops_redirected", redirected)
            .with("redirects_by_kind", json!(by_kind))
            .with("longest_chain", longest)
            .with("returns", returned)
            .with("chain_max", chain_max)
            .with(
                "pingpong_window_ms",
                run.tolerances.redirect_pingpong_window_ms,
            )
            .with("episodes", episodes.len());
        for shape in [Shape::Cycle, Shape::LongChain, Shape::PingPong] {
            let n = episodes.iter().filter(|e| e.shape == shape).count();
            result = result.with(&format!("{}_episodes", shape.label()), n);
        }
        if !episodes.is_empty() {
            let examples: Vec<Value> = episodes
                .iter()
                .take(EXAMPLES)
                .map(Episode::to_json)
                .collect();
            result = result.with("examples", examples);
        }
        result
    }
}

fn nodes_of(hops: &[&Redirect]) -> BTreeSet<String> {
    hops.iter()
        .flat_map(|r| [r.from.clone(), r.to.clone()])
        .collect()
}

fn kinds_text(by_kind: &BTreeMap<String, u64>) -> String {
    if by_kind.is_empty() {
        return "no hops".to_string();
    }
    by_kind
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Groups findings (in history order) into episodes per shape and node set: a finding
/// joins the open episode of its key when it comes within `window_ns` of that episode's
/// last finding. Episodes are returned in order of their first finding.
fn group(findings: Vec<Finding>, window_ns: u64) -> Vec<Episode> {
    let mut done: Vec<Episode> = Vec::new();
    let mut open: HashMap<(Shape, BTreeSet<String>), Episode> = HashMap::new();
    for f in findings {
        let key = (f.shape, f.nodes.clone());
        if let Some(e) = open.get_mut(&key) {
            if f.time_ns.saturating_sub(e.last_ns) <= window_ns {
                e.last_ns = f.time_ns;
                e.ops += 1;
                e.hops += f.hops;
                e.processes.insert(f.process.to_string());
                continue;
            }
            done.extend(open.remove(&key));
        }
        let episode = Episode {
            shape: f.shape,
            nodes: f.nodes.clone(),
            first_ns: f.time_ns,
            last_ns: f.time_ns,
            ops: 1,
            hops: f.hops,
            processes: [f.process.to_string()].into(),
            example: f,
        };
        open.insert(key, episode);
    }
    done.extend(open.into_values());
    done.sort_by_key(|e| (e.first_ns, e.shape, e.nodes.clone()));
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tolerances;
    use faultline_history::Op;

    fn hop(kind: &str, slot: Option<u16>, from: &str, to: &str) -> Redirect {
        Redirect {
            kind: kind.into(),
            slot,
            from: from.into(),
            to: to.into(),
        }
    }

    fn done(index: u64, ms: u64, process: u64, kind: OpType, hops: Vec<Redirect>) -> Op {
        let mut op: Op = serde_json::from_value(json!({
            "index": index, "time_ns": ms * 1_000_000, "process": process,
            "type": "invoke", "f": "add", "key": "k", "value": index,
        }))
        .unwrap();
        op.kind = kind;
        op.redirects = hops;
        op
    }

    fn check(ops: Vec<Op>) -> CheckerResult {
        BouncingRedirects.check(&RunData::from_history(ops))
    }

    #[test]
    fn ordinary_moves_are_valid_and_counted_by_kind() {
        let r = check(vec![
            done(
                0,
                1,
                1,
                OpType::Ok,
                vec![hop("MOVED", Some(7), "a:1", "b:1")],
            ),
            done(1, 2, 1, OpType::Ok, vec![]),
            done(
                2,
                3,
                2,
                OpType::Ok,
                vec![
                    hop("MOVED", Some(9), "a:1", "b:1"),
                    hop("ASK", Some(9), "b:1", "c:1"),
                ],
            ),
            done(
                3,
                4,
                3,
                OpType::Ok,
                vec![hop("TRYAGAIN", None, "c:1", "c:1"); 5],
            ),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(
            r.details["redirects_by_kind"],
            json!({"ASK": 1, "MOVED": 2, "TRYAGAIN": 5})
        );
        assert_eq!(r.details["ops_redirected"], json!(3));
        assert_eq!(r.details["longest_chain"], json!(2));
    }

    #[test]
    fn a_chain_that_returns_is_a_cycle_episode() {
        // Seed 003's shape: old primary -> new primary -> old primary -> ...
        let bounce = vec![
            hop("REDIRECT", None, "a:1", "b:1"),
            hop("REDIRECT", None, "b:1", "a:1"),
            hop("REDIRECT", None, "a:1", "b:1"),
        ];
        let r = check(vec![
            done(0, 10, 1, OpType::Ok, bounce.clone()),
            done(1, 20, 2, OpType::Ok, bounce.clone()),
            // Far later: a second episode.
            done(2, 9_000, 1, OpType::Ok, bounce),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["cycle_episodes"], json!(2));
        let first = &r.details["examples"][0];
        assert_eq!(first["shape"], json!("cycle"));
        assert_eq!(first["nodes"], json!(["a:1", "b:1"]));
        assert_eq!(first["ops"], json!(2));
        assert_eq!(first["processes"], json!(2));
        assert_eq!(first["from_s"], json!(0.01));
        assert_eq!(first["to_s"], json!(0.02));
    }

    #[test]
    fn one_return_is_counted_not_judged() {
        // A fixed server's hand-over: sent to the new primary, back once, served.
        let r = check(vec![done(
            0,
            1,
            1,
            OpType::Ok,
            vec![
                hop("REDIRECT", None, "b:1", "a:1"),
                hop("REDIRECT", None, "a:1", "b:1"),
            ],
        )]);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["returns"], json!(1));
    }

    #[test]
    fn longer_than_allowed_or_given_up_is_a_long_chain() {
        let chain: Vec<Redirect> = (0..5)
            .map(|i| {
                hop(
                    "MOVED",
                    Some(1),
                    &format!("n{i}:1"),
                    &format!("n{}:1", i + 1),
                )
            })
            .collect();
        let r = check(vec![done(0, 1, 1, OpType::Ok, chain.clone())]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["long-chain_episodes"], json!(1));
        assert_eq!(r.details["cycle_episodes"], json!(0));

        let mut gave_up = done(0, 1, 1, OpType::Info, chain[..1].to_vec());
        gave_up.error = Some(REDIRECT_LIMIT.into());
        let r = check(vec![gave_up]);
        assert_eq!(r.details["long-chain_episodes"], json!(1));

        let runs = RunData {
            tolerances: Tolerances {
                redirect_chain_max: 5,
                ..Tolerances::default()
            },
            ..RunData::from_history(vec![done(0, 1, 1, OpType::Ok, chain)])
        };
        assert_eq!(BouncingRedirects.check(&runs).valid, Validity::Valid);
    }

    #[test]
    fn consecutive_ops_reversing_a_hop_ping_pong_only_within_the_window() {
        let there = vec![hop("MOVED", Some(3), "a:1", "b:1")];
        let back = vec![hop("MOVED", Some(3), "b:1", "a:1")];
        // Sent back, and sent on from there: not served where the first op ended.
        let back_on = vec![
            hop("MOVED", Some(3), "b:1", "a:1"),
            hop("MOVED", Some(3), "a:1", "c:1"),
        ];
        let r = check(vec![
            done(0, 100, 1, OpType::Ok, there.clone()),
            done(1, 300, 1, OpType::Ok, back_on),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["ping-pong_episodes"], json!(1));
        assert_eq!(r.details["examples"][0]["example"]["index"], json!(1));

        // Too far apart (a failback 10 s later), another slot, or another process: fine.
        let far = check(vec![
            done(0, 100, 1, OpType::Ok, there.clone()),
            done(1, 10_100, 1, OpType::Ok, back.clone()),
        ]);
        assert_eq!(far.valid, Validity::Valid);
        let other_slot = check(vec![
            done(0, 100, 1, OpType::Ok, there.clone()),
            done(
                1,
                200,
                1,
                OpType::Ok,
                vec![hop("MOVED", Some(4), "b:1", "a:1")],
            ),
        ]);
        assert_eq!(other_slot.valid, Validity::Valid);
        let other_process = check(vec![
            done(0, 100, 1, OpType::Ok, there),
            done(1, 200, 2, OpType::Ok, back),
        ]);
        assert_eq!(other_process.valid, Validity::Valid);
    }

    #[test]
    fn one_hand_over_is_not_ping_pong_but_a_hand_over_back_is() {
        // A failover between two ops: a (b's replica) sent the first op to b; b, demoted,
        // sent the second to a, which served it. Ownership moved once.
        let there = vec![hop("MOVED", Some(3), "a:1", "b:1")];
        let back = vec![hop("MOVED", Some(3), "b:1", "a:1")];
        let r = check(vec![
            done(0, 100, 1, OpType::Ok, there.clone()),
            done(1, 300, 1, OpType::Ok, back.clone()),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        // ... and back again within the window: the answer flipped, a finding.
        let r = check(vec![
            done(0, 100, 1, OpType::Ok, there.clone()),
            done(1, 300, 1, OpType::Ok, back),
            done(2, 500, 1, OpType::Ok, there),
        ]);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["ping-pong_episodes"], json!(1));
        assert_eq!(r.details["examples"][0]["example"]["index"], json!(2));
    }

    #[test]
    fn ask_then_moved_back_during_a_migration_is_the_protocol_not_ping_pong() {
        // Seen with random start nodes while slot 3 moved from b to a: the key was
        // already on a (ASK b -> a); the next op started at a, which does not own the slot
        // yet (MOVED a -> b), and was sent on by ASK again. One return, no flip.
        let r = check(vec![
            done(
                0,
                100,
                1,
                OpType::Ok,
                vec![hop("ASK", Some(3), "b:1", "a:1")],
            ),
            done(
                1,
                200,
                1,
                OpType::Ok,
                vec![
                    hop("MOVED", Some(3), "a:1", "b:1"),
                    hop("ASK", Some(3), "b:1", "a:1"),
                ],
            ),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["returns"], json!(1));
    }

    #[test]
    fn only_invokes_or_nemesis_ops_is_unknown() {
        let mut invoke = done(0, 1, 1, OpType::Ok, vec![]);
        invoke.kind = OpType::Invoke;
        let mut nemesis = done(1, 2, 1, OpType::Ok, vec![]);
        nemesis.process = Process::Nemesis;
        let r = check(vec![invoke, nemesis]);
        assert_eq!(r.valid, Validity::Unknown);
    }
}
