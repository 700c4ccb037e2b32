//! `linearizable`: whether each key's register (read / write / cas) or kv (get / put /
//! append) ops can be put in one order that respects real time and the object's
//! semantics.
//!
//! The history is split per key (linearizability is compositional, so a history is
//! linearizable when every key's is), each key searched by [`search`] (Wing–Gong with
//! Lowe's memoisation, as Porcupine). How ops are read (register ops as the register
//! workload writes them: write value an integer, read result an integer or null, cas
//! value `[expected, new]`):
//! - an `ok` op happened between its invoke and its completion;
//! - an `info` op, or one never completed, may have happened at any point after its
//!   invoke, or never; a read that did not return says nothing and is dropped;
//! - a `fail` op did not happen and is dropped; except a cas that failed with no `error`
//!   (the comparison failed): that one happened, as an observation that the register did
//!   not hold the expected value;
//! - a register starts absent (null); a kv key starts as the empty string, and a get of an
//!   absent key (null) reads as empty.
//!
//! Each key's search has a share of a time budget and a memory budget; a key that runs out
//! is named in `unknown_keys` and the verdict is unknown (never valid by guess). For a key
//! with no linearization, `violations` gives the deepest partial linearization the search
//! reached, the state it leaves, and the window: the ops that could come next at that
//! point (their calls precede the return the search could not get past), none of which
//! can, in any order; plus the last linearized ops overlapping them, for context.

mod model;
mod search;

use std::time::{Duration, Instant};

use faultline_history::{Op, OpType, Process};
use serde_json::{json, Value};

use crate::fast_hash::FastMap;
use crate::{Checker, CheckerResult, Input, RunData, Validity};
use model::{CasOutcome, Step, Val, Values};
use search::{Outcome, Search, SearchOp};

/// The register and kv functions the checker reads; other ops are not its business.
pub const FUNCTIONS: &[&str] = &["read", "write", "cas", "get", "put", "append"];

/// Functions that make a key a register or kv key (a read alone may be the set
/// workload's).
const WRITERS: &[&str] = &["write", "cas", "get", "put", "append"];

/// Whether `history` holds register or kv ops for [`Linearizable`] to check.
pub fn has_register_ops(history: &[Op]) -> bool {
    history
        .iter()
        .any(|op| op.process != Process::Nemesis && WRITERS.contains(&op.f.as_str()))
}

/// The linearizability checker, with its budget.
#[derive(Debug, Clone, Copy)]
pub struct Linearizable {
    /// Time for the whole check; keys share it. `None`: the run's tolerance
    /// (`linearizable_budget_ms`).
    pub time_budget: Option<Duration>,
    /// Memory one key's memo may use.
    pub memory_budget_bytes: usize,
}

impl Default for Linearizable {
    fn default() -> Self {
        Linearizable {
            time_budget: None,
            memory_budget_bytes: 2 << 30,
        }
    }
}

/// Most violations written out in full.
const MAX_VIOLATIONS: usize = 5;
/// Most linearized ops shown before a violation's window.
const CONTEXT_OPS: usize = 12;

/// One op of a key, with where it came from.
struct KeyOp {
    search: SearchOp,
    invoke: usize,
    completion: Option<usize>,
}

struct Key {
    name: String,
    kv: bool,
    ops: Vec<KeyOp>,
    /// Why the key cannot be checked (a value the models cannot hold).
    unreadable: Option<String>,
}

impl Checker for Linearizable {
    fn name(&self) -> &'static str {
        "linearizable"
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::History, Input::RegisterOps]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        let started = Instant::now();
        let mut values = Values::default();
        let (mut keys, notes) = collect(&run.history, &mut values);
        if keys.is_empty() {
            return CheckerResult::unknown("no register or kv ops in history");
        }
        keys.sort_by_key(|k| k.ops.len());
        let op_count: usize = keys.iter().map(|k| k.ops.len()).sum();

        // Keys are searched in turns, each turn a doubling allowance of steps, so every
        // key advances at the same pace: one hard key cannot starve the rest, and the
        // first violation (any key's) ends the search as soon as it is found, as
        // Porcupine's parallel partitions do. Keys still undecided then are named.
        let deadline = started
            + self
                .time_budget
                .unwrap_or(Duration::from_millis(run.tolerances.linearizable_budget_ms));
        let key_ops: Vec<Vec<SearchOp>> = keys
            .iter()
            .map(|k| k.ops.iter().map(|o| o.search).collect())
            .collect();
        let mut searches: Vec<Option<Search>> = keys
            .iter()
            .zip(&key_ops)
            .map(|(k, ops)| {
                k.unreadable.is_none().then(|| {
                    Search::new(
                        ops,
                        if k.kv {
                            model::ROOT
                        } else {
                            values.id(Val::Nil)
                        },
                    )
                })
            })
            .collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; keys.len()];
        let mut took = vec![Duration::ZERO; keys.len()];
        let mut allowance = 1u64 << 10;
        let mut stopped: Option<&'static str> = None;
        while stopped.is_none() && searches.iter().any(Option::is_some) {
            for (i, slot) in searches.iter_mut().enumerate() {
                let Some(search) = slot else { continue };
                let t = Instant::now();
                let out = search.run(&mut values, allowance);
                took[i] += t.elapsed();
                let out = out.or_else(|| {
                    (search.memory() > self.memory_budget_bytes)
                        .then_some(Outcome::OutOfBudget { limit: "memory" })
                });
                if let Some(out) = out {
                    if matches!(out, Outcome::NotLinearizable { .. }) {
                        stopped = Some("not finished: the search stopped at the first violation");
                    }
                    outcomes[i] = Some(out);
                    *slot = None;
                }
                if Instant::now() >= deadline {
                    stopped = Some("out of time budget");
                    break;
                }
            }
            allowance = (allowance * 2).min(1 << 18);
        }
        let unfinished_reason = stopped.unwrap_or("not searched");
        drop(searches);

        let mut invalid = Vec::new();
        let mut unknown = Vec::new();
        let mut violations = Vec::new();
        for (key, out) in keys.iter().zip(&outcomes) {
            match out {
                _ if key.unreadable.is_some() => unknown.push(json!({
                    "key": key.name,
                    "reason": key.unreadable,
                })),
                Some(Outcome::Linearizable) => {}
                Some(Outcome::OutOfBudget { limit }) => unknown.push(json!({
                    "key": key.name,
                    "ops": key.ops.len(),
                    "reason": format!("out of {limit} budget"),
                })),
                None => unknown.push(json!({
                    "key": key.name,
                    "ops": key.ops.len(),
                    "reason": unfinished_reason,
                })),
                Some(Outcome::NotLinearizable {
                    partial,
                    state,
                    stuck,
                }) => {
                    invalid.push(key.name.clone());
                    if violations.len() < MAX_VIOLATIONS {
                        violations.push(violation(run, key, partial, *state, *stuck, &values));
                    }
                }
            }
        }
        invalid.sort();
        let valid = if !invalid.is_empty() {
            Validity::Invalid
        } else if !unknown.is_empty() {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        let summary = match valid {
            Validity::Valid => format!(
                "{} keys, {op_count} ops: every key linearizable",
                keys.len()
            ),
            Validity::Invalid => format!(
                "{} of {} keys not linearizable ({}){}",
                invalid.len(),
                keys.len(),
                invalid
                    .iter()
                    .take(5)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                violations
                    .first()
                    .and_then(|v| v["explanation"].as_str())
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            Validity::Unknown => format!(
                "{} of {} keys undecided within the budget ({})",
                unknown.len(),
                keys.len(),
                unknown
                    .iter()
                    .take(10)
                    .filter_map(|u| u["key"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut slowest: Vec<usize> = (0..keys.len()).collect();
        slowest.sort_by_key(|&i| std::cmp::Reverse(took[i]));
        let slowest: Vec<Value> = slowest
            .into_iter()
            .take(3)
            .map(|i| {
                json!({
                    "key": keys[i].name,
                    "ops": keys[i].ops.len(),
                    "took_ms": took[i].as_secs_f64() * 1e3,
                })
            })
            .collect();
        let mut result = CheckerResult::new(valid)
            .with("summary", summary)
            .with("keys", keys.len())
            .with("ops", op_count)
            .with("invalid_keys", invalid)
            .with("unknown_keys", unknown)
            .with("violations", violations)
            .with("slowest_keys", slowest)
            .with("took_ms", started.elapsed().as_millis() as u64);
        if valid == Validity::Unknown {
            result = result.with(
                "reason",
                "the search ran out of its budget (or met unreadable values) for the keys in unknown_keys",
            );
        }
        if !notes.is_empty() {
            result = result.with("notes", notes);
        }
        result
    }
}

/// Splits the history into keys of search ops.
fn collect(history: &[Op], values: &mut Values) -> (Vec<Key>, Vec<String>) {
    let mut notes = Vec::new();
    // The pending invoke of each process.
    let mut pending: FastMap<u64, usize> = FastMap::default();
    // Invoke position -> completion position.
    let mut pairs: Vec<(usize, Option<usize>)> = Vec::new();
    let mut superseded = 0usize;
    for (pos, op) in history.iter().enumerate() {
        let Process::Client(p) = op.process else {
            continue;
        };
        if !FUNCTIONS.contains(&op.f.as_str()) {
            continue;
        }
        if op.kind == OpType::Invoke {
            if let Some(old) = pending.insert(p, pos) {
                superseded += 1;
                pairs.push((old, None));
            }
        } else if let Some(inv) = pending.remove(&p) {
            pairs.push((inv, Some(pos)));
        }
    }
    pairs.extend(pending.into_values().map(|inv| (inv, None)));
    pairs.sort_unstable();
    if superseded > 0 {
        notes.push(format!(
            "{superseded} invokes were followed by another invoke of the same process before completing; read as indeterminate"
        ));
    }

    let mut keys: Vec<Key> = Vec::new();
    let mut by_name: FastMap<&str, usize> = FastMap::default();
    for (inv, comp) in pairs {
        let invoke = &history[inv];
        let name = invoke.key.as_deref().unwrap_or("");
        let k = *by_name.entry(name).or_insert_with(|| {
            keys.push(Key {
                name: name.to_string(),
                kv: false,
                ops: Vec::new(),
                unreadable: None,
            });
            keys.len() - 1
        });
        let key = &mut keys[k];
        let kv = matches!(invoke.f.as_str(), "get" | "put" | "append");
        if key.ops.is_empty() && key.unreadable.is_none() {
            key.kv = kv;
        } else if key.kv != kv && key.unreadable.is_none() {
            key.unreadable = Some(format!(
                "history line {}: {} on a key that also has {} ops",
                invoke.index,
                invoke.f,
                if key.kv {
                    "kv (get/put/append)"
                } else {
                    "register (read/write/cas)"
                }
            ));
        }
        let completion = comp.map(|c| &history[c]);
        match to_step(invoke, completion, values) {
            Ok(Some((step, definite))) => key.ops.push(KeyOp {
                search: SearchOp {
                    step,
                    call: inv as u64,
                    ret: definite.then(|| comp.expect("definite ops completed") as u64),
                },
                invoke: inv,
                completion: comp,
            }),
            Ok(None) => {}
            Err(why) => {
                if key.unreadable.is_none() {
                    key.unreadable = Some(format!("history line {}: {why}", invoke.index));
                }
            }
        }
    }
    // Keys whose every op was dropped (failed, or reads that never returned).
    keys.retain(|k| !k.ops.is_empty() || k.unreadable.is_some());
    // A kv key's ops step a string (a read of an absent key reads as empty: the text of
    // null is empty); a register's compare values.
    for key in keys.iter_mut().filter(|k| k.kv) {
        for op in &mut key.ops {
            op.search.step = match op.search.step {
                Step::Read { expect } => Step::Get { expect },
                Step::Write { value } => Step::Put { value },
                other => other,
            };
        }
    }
    (keys, notes)
}

/// The step an invoke/completion pair stands for, and whether it is definite (has a
/// return); `None` for an op that cannot matter.
fn to_step(
    invoke: &Op,
    completion: Option<&Op>,
    values: &mut Values,
) -> Result<Option<(Step, bool)>, String> {
    let kind = completion.map_or(OpType::Info, |c| c.kind);
    let definite = kind == OpType::Ok;
    let val = |v: &Value, values: &mut Values| {
        Val::from_json(v)
            .map(|v| values.id(v))
            .ok_or_else(|| format!("{} value {v} is not an integer, string or null", invoke.f))
    };
    Ok(Some(match invoke.f.as_str() {
        "read" | "get" => {
            let Some(c) = completion.filter(|_| definite) else {
                return Ok(None);
            };
            (
                Step::Read {
                    expect: val(&c.value, values)?,
                },
                true,
            )
        }
        "write" | "put" | "append" => {
            if kind == OpType::Fail {
                return Ok(None);
            }
            let v = val(&invoke.value, values)?;
            let step = if invoke.f == "append" {
                Step::Append { suffix: v }
            } else {
                Step::Write { value: v }
            };
            (step, definite)
        }
        "cas" => {
            let (expect, new) = match &invoke.value {
                Value::Array(a) if a.len() == 2 => (val(&a[0], values)?, val(&a[1], values)?),
                other => return Err(format!("cas value {other} is not [expected, new]")),
            };
            let outcome = match kind {
                OpType::Ok => CasOutcome::Swapped,
                OpType::Fail if completion.is_some_and(|c| c.error.is_none()) => CasOutcome::Failed,
                OpType::Fail => return Ok(None),
                _ => CasOutcome::Unknown,
            };
            (
                Step::Cas {
                    expect,
                    new,
                    outcome,
                },
                outcome != CasOutcome::Unknown,
            )
        }
        _ => return Ok(None),
    }))
}

/// The evidence for one key with no linearization.
fn violation(
    run: &RunData,
    key: &Key,
    partial: &[usize],
    state: u32,
    stuck: usize,
    values: &Values,
) -> Value {
    let stuck_ret = key.ops[stuck].search.ret.unwrap_or(u64::MAX);
    let mut in_partial = vec![false; key.ops.len()];
    for &i in partial {
        in_partial[i] = true;
    }
    // The ops that could come next: not linearized, called before the stuck return.
    let mut window: Vec<usize> = (0..key.ops.len())
        .filter(|&i| !in_partial[i] && key.ops[i].search.call < stuck_ret)
        .collect();
    window.sort_by_key(|&i| key.ops[i].search.call);
    let start = window
        .iter()
        .map(|&i| key.ops[i].search.call)
        .min()
        .unwrap_or(0);
    // The last few linearized ops, and those whose return is inside the window (or that
    // are still open), last ones first.
    let context: Vec<usize> = partial
        .iter()
        .rev()
        .copied()
        .enumerate()
        .filter(|&(n, i)| n < 3 || key.ops[i].search.ret.is_none_or(|r| r >= start))
        .map(|(_, i)| i)
        .take(CONTEXT_OPS)
        .collect();
    let order: FastMap<usize, usize> = partial.iter().enumerate().map(|(n, &i)| (i, n)).collect();
    let describe = |i: usize, role: &str| -> Value {
        let op = &key.ops[i];
        let invoke = &run.history[op.invoke];
        let completion = op.completion.map(|c| &run.history[c]);
        let mut v = json!({
            "index": invoke.index,
            "process": invoke.process,
            "f": invoke.f,
            "value": invoke.value,
            "type": completion.map_or("info", |c| type_name(c.kind)),
            "invoke_ns": invoke.time_ns,
            "complete_ns": completion.map(|c| c.time_ns),
            "role": role,
            "text": op_text(invoke, completion),
        });
        if let Some(c) = completion {
            v["result"] = c.value.clone();
            if let Some(n) = &c.node {
                v["node"] = Value::from(n.as_str());
            }
        }
        if let Some(n) = order.get(&i) {
            v["linearized_at"] = Value::from(*n);
        }
        v
    };
    let mut ops: Vec<Value> = context
        .iter()
        .rev()
        .map(|&i| describe(i, "linearized"))
        .collect();
    ops.extend(
        window
            .iter()
            .map(|&i| describe(i, if i == stuck { "violating" } else { "pending" })),
    );
    let stuck_invoke = &run.history[key.ops[stuck].invoke];
    let stuck_completion = key.ops[stuck].completion.map(|c| &run.history[c]);
    let state_json = if key.kv {
        Value::from(values.spell(state))
    } else {
        values.get(state).to_json()
    };
    let others = match window.len().saturating_sub(1) {
        0 => "it cannot".to_string(),
        1 => "neither it nor the 1 other op open then can, in either order".to_string(),
        n => format!("neither it nor any of the {n} other ops open then can, in any order"),
    };
    let explanation = format!(
        "key {:?}: after {} ops linearized the {} holds {}; op {} ({}) must take effect before it returns, but {others}",
        key.name,
        partial.len(),
        if key.kv { "key" } else { "register" },
        state_json,
        stuck_invoke.index,
        op_text(stuck_invoke, stuck_completion),
    );
    json!({
        "key": key.name,
        "model": if key.kv { "kv" } else { "register" },
        "explanation": explanation,
        "linearized_count": partial.len(),
        "state": state_json,
        "violating_index": stuck_invoke.index,
        "window_indices": window.iter().map(|&i| run.history[key.ops[i].invoke].index).collect::<Vec<_>>(),
        "partial_linearization_tail": partial
            .iter()
            .rev()
            .take(CONTEXT_OPS)
            .rev()
            .map(|&i| run.history[key.ops[i].invoke].index)
            .collect::<Vec<_>>(),
        "ops": ops,
    })
}

fn type_name(t: OpType) -> &'static str {
    match t {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info",
    }
}

/// `p3 write 5`, `p1 read -> 4`, `p2 cas [1,2] -> fail`.
fn op_text(invoke: &Op, completion: Option<&Op>) -> String {
    let outcome = match completion.map(|c| c.kind) {
        Some(OpType::Ok) => "ok",
        Some(OpType::Fail) => "fail",
        _ => "info",
    };
    match invoke.f.as_str() {
        "read" | "get" => format!(
            "p{} {} -> {}",
            invoke.process,
            invoke.f,
            completion.map_or(Value::Null, |c| c.value.clone())
        ),
        _ => format!(
            "p{} {} {} -> {outcome}",
            invoke.process, invoke.f, invoke.value
        ),
    }
}

#[cfg(test)]
mod tests;
