//! `lost-writes`: every acknowledged add to a set must be in that set's final read.
//!
//! Jepsen's "set" checker for the set workload. Clients `add` elements to a few keys (Redis
//! sets) while the nemesis injects faults; after healing, each key is read whole. Redis
//! Cluster replicates asynchronously, so a failover can promote a replica that never got
//! writes its old primary already acknowledged: those adds vanish. This checker finds them
//! and, with Jepsen's op model, keeps "lost" (acknowledged, then gone) apart from adds whose
//! fate nobody knows.

use faultline_history::{Op, OpType, Process};
use serde_json::{json, Value};

use crate::fast_hash::{FastMap, FastSet};
use crate::in_flight::InFlight;
use crate::stream::{HistoryPass, OpSource};
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "lost-writes";

/// How many example ops each example list in the details holds.
const EXAMPLES: usize = 10;

/// How many examples the one-line summary names.
const SUMMARY_EXAMPLES: usize = 3;

/// Checks the set workload: per key, adds against the key's final read.
///
/// Ops are the client ops with `f` `add` (invoke value = the element) and `read` (ok
/// value = the whole set, a JSON array). A completion belongs to the pending invoke of the
/// same process; an invoke that never completed (the run was killed) counts as `info`. The
/// final read of a key is its last `ok` read. Then, per add:
///
/// | add   | in final read | verdict |
/// |-------|---------------|---------|
/// | ok, completed before the final read was invoked | no | **lost** (invalid) |
/// | ok, concurrent with the final read | no | unresolved (fine: it may linearize after) |
/// | info | yes | recovered (fine) |
/// | info | no | indeterminate, absent (fine) |
/// | fail | yes | **failed but present** (invalid: fail means it did not happen) |
///
/// Elements in any ok read that no add ever attempted on that key are **unexpected**
/// (invalid). A key with adds but no ok read makes the verdict unknown (`unread_keys`)
/// unless something is already invalid.
#[derive(Debug, Clone, Copy, Default)]
pub struct LostWrites;

impl Checker for LostWrites {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [crate::Input] {
        &[crate::Input::History]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        if !run.history_present {
            return CheckerResult::unknown("no history.jsonl in the run");
        }
        crate::stream::run_in_memory(Box::new(SetHistory::default()), run)
    }

    fn history_pass<'r>(&self, _run: &'r RunData) -> Option<Box<dyn HistoryPass + 'r>> {
        Some(Box::new(SetHistory::default()))
    }
}

/// A set element as Redis compares it, in eight bytes.
///
/// Redis set members are byte strings: `SADD s 42` and `SADD s "42"` add the same member,
/// and `SMEMBERS` answers strings. So a JSON integer and a string holding that integer's
/// canonical decimal form are one element; anything else compares by its text (strings as
/// they are, other values as JSON). An integer in ±2^62 is held as itself (the set
/// workload's case, hashing no strings); any other element is a number given by
/// [`Interner`] (integers and texts apart, so an integer never equals a text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Elem(u64);

/// Integers in `-SMALL..SMALL` are held directly.
const SMALL: i64 = 1 << 62;
/// The bit that marks an interned element.
const INTERNED: u64 = 1 << 63;

/// Numbers for the elements that are not small integers.
#[derive(Default)]
struct Interner {
    ids: FastMap<(bool, Box<str>), u64>,
}

impl Interner {
    fn elem(&mut self, value: &Value) -> Elem {
        match value {
            Value::Number(n) => match n.as_i64() {
                Some(i) => self.int(i),
                None => self.text(&n.to_string()),
            },
            Value::String(s) => match canonical_int(s) {
                Some(i) => self.int(i),
                None => self.text(s),
            },
            other => self.text(&other.to_string()),
        }
    }

    fn int(&mut self, i: i64) -> Elem {
        if (-SMALL..SMALL).contains(&i) {
            Elem((i + SMALL) as u64)
        } else {
            self.intern(true, &i.to_string())
        }
    }

    fn text(&mut self, s: &str) -> Elem {
        self.intern(false, s)
    }

    fn intern(&mut self, int: bool, s: &str) -> Elem {
        let next = self.ids.len() as u64;
        let id = *self.ids.entry((int, s.into())).or_insert(next);
        Elem(INTERNED | id)
    }
}

/// `s` as an i64 if it is exactly how an i64 prints (no `+`, no leading zeros, no `-0`).
pub(crate) fn canonical_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && s != "-0";
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// How an add ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Fail,
    /// `info`, or no completion at all.
    Info,
}

/// [`Outcome::flag`]s of every outcome: the element was attempted.
const ATTEMPTED: u8 = 1 | 2 | 4;
/// The element is in its key's final read.
const PRESENT: u8 = 8;

impl Outcome {
    fn flag(self) -> u8 {
        match self {
            Outcome::Ok => 1,
            Outcome::Fail => 2,
            Outcome::Info => 4,
        }
    }
}

/// `complete` of an add that never completed: after every real position.
const NEVER: u64 = u64::MAX;

/// A key's add attempts, one column per field (25 bytes an add, so tens of millions fit).
/// Positions are the `at` of [`HistoryPass::op`].
#[derive(Default)]
struct Adds {
    element: Vec<Elem>,
    invoke: Vec<u64>,
    complete: Vec<u64>,
    outcome: Vec<Outcome>,
}

/// A pending invoke, as much of it as pairing needs.
struct Invoke {
    at: u64,
    key: usize,
    /// The element, for an add; `None` for a read.
    add: Option<Elem>,
}

/// One ok read whose value is a list.
struct Read {
    key: usize,
    invoke: u64,
    complete: u64,
}

/// Where an element was first read: (index into [`SetHistory::reads`], position in the
/// read's list). Sorting by it is the order the reads were completed and listed.
type FirstRead = (usize, usize);

/// What the history says about one key.
struct Key {
    name: Box<str>,
    adds: Adds,
    /// The key's last ok read so far: its index in [`SetHistory::reads`] and elements.
    final_read: Option<(usize, Vec<Elem>)>,
    /// Every element of the key's earlier ok reads, where each was first read (empty
    /// unless a key is read more than once).
    earlier_reads: FastMap<Elem, FirstRead>,
}

/// The set-workload ops of a history, paired and grouped by key as they stream past.
#[derive(Default)]
struct SetHistory {
    keys: Vec<Key>,
    key_ids: FastMap<Box<str>, usize>,
    elements: Interner,
    /// A process has at most one op in flight: its next completion completes it.
    pending: InFlight<u64, Invoke>,
    /// Ok reads in completion order.
    reads: Vec<Read>,
    /// How many history lines were set-workload ops.
    set_ops: usize,
    /// Ok reads whose value was not a list; ignored.
    malformed_reads: usize,
    /// Completions with no pending invoke; ignored.
    orphan_completions: usize,
}

impl HistoryPass for SetHistory {
    fn op(&mut self, at: u64, op: &Op) {
        let Process::Client(process) = op.process else {
            return;
        };
        if op.f != "add" && op.f != "read" {
            return;
        }
        self.set_ops += 1;
        if op.kind == OpType::Invoke {
            let key = self.key_id(op.key.as_deref().unwrap_or(""));
            let add = (op.f == "add").then(|| self.elements.elem(&op.value));
            // A second invoke while one is pending breaks the one-op rule; the first
            // one's fate is unknown.
            if let Some(earlier) = self.pending.invoke(process, Invoke { at, key, add }) {
                self.pair(earlier, None);
            }
            return;
        }
        match self.pending.complete(&process) {
            Some(invoke) => self.pair(invoke, Some((at, op))),
            None => self.orphan_completions += 1,
        }
    }

    fn finish(mut self: Box<Self>, ops: &dyn OpSource) -> CheckerResult {
        let mut unfinished: Vec<Invoke> = std::mem::take(&mut self.pending).unfinished().collect();
        unfinished.sort_unstable_by_key(|i| i.at);
        for invoke in unfinished {
            self.pair(invoke, None);
        }
        self.verdict(ops)
    }
}

/// An add the verdict names: (invoke position, key, index in the key's [`Adds`]).
type Named = (u64, usize, usize);

impl SetHistory {
    /// Records the op invoked as `invoke` and completed at `complete` (`None`: never).
    fn pair(&mut self, invoke: Invoke, complete: Option<(u64, &Op)>) {
        let kind = complete.map_or(OpType::Info, |(_, op)| op.kind);
        let key = &mut self.keys[invoke.key];
        if let Some(element) = invoke.add {
            let outcome = match kind {
                OpType::Ok => Outcome::Ok,
                OpType::Fail => Outcome::Fail,
                OpType::Info | OpType::Invoke => Outcome::Info,
            };
            key.adds.element.push(element);
            key.adds.invoke.push(invoke.at);
            key.adds.complete.push(complete.map_or(NEVER, |(at, _)| at));
            key.adds.outcome.push(outcome);
        } else if let (OpType::Ok, Some((at, op))) = (kind, complete) {
            let Some(values) = op.value.as_array() else {
                self.malformed_reads += 1;
                return;
            };
            let read = self.reads.len();
            self.reads.push(Read {
                key: invoke.key,
                invoke: invoke.at,
                complete: at,
            });
            let elements = values.iter().map(|v| self.elements.elem(v)).collect();
            let key = &mut self.keys[invoke.key];
            if let Some((earlier, elements)) = key.final_read.replace((read, elements)) {
                for (i, e) in elements.into_iter().enumerate() {
                    key.earlier_reads.entry(e).or_insert((earlier, i));
                }
            }
        }
    }

    fn key_id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.key_ids.get(name) {
            return id;
        }
        let id = self.keys.len();
        self.keys.push(Key {
            name: name.into(),
            adds: Adds::default(),
            final_read: None,
            earlier_reads: FastMap::default(),
        });
        self.key_ids.insert(name.into(), id);
        id
    }

    fn verdict(&self, ops: &dyn OpSource) -> CheckerResult {
        if self.set_ops == 0 {
            return CheckerResult::unknown("no set-workload ops in history");
        }
        let attempted_total: usize = self.keys.iter().map(|k| k.adds.element.len()).sum();
        if attempted_total == 0 && self.reads.is_empty() {
            return CheckerResult::unknown("no adds and no successful reads in history");
        }

        let mut c = Counts::default();
        let (mut lost, mut recovered, mut failed_but_present): (Vec<Named>, _, _) =
            (Vec::new(), Vec::new(), Vec::new());
        // Unexpected: read, in any ok read, but never attempted on that key. Each
        // (key, element) once, at the first read that showed it.
        let mut unexpected: Vec<FirstRead> = Vec::new();
        // One key at a time, so the per-element maps never hold more than one key.
        for (k, key) in self.keys.iter().enumerate() {
            let adds = &key.adds;
            // One map per key: each element's attempt outcomes, and whether the final
            // read holds it.
            let mut flags: FastMap<Elem, u8> = FastMap::default();
            let final_elements = key.final_read.as_ref().map(|(_, e)| e);
            flags.reserve(adds.element.len().max(final_elements.map_or(0, Vec::len)));
            for e in final_elements.into_iter().flatten() {
                flags.insert(*e, PRESENT);
            }
            for (e, o) in adds.element.iter().zip(&adds.outcome) {
                *flags.entry(*e).or_insert(0) |= o.flag();
            }
            let attempted = |e: &Elem| flags.get(e).is_some_and(|f| f & ATTEMPTED != 0);
            for i in 0..adds.element.len() {
                let outcome = adds.outcome[i];
                match outcome {
                    Outcome::Ok => c.acknowledged += 1,
                    Outcome::Fail => c.failed += 1,
                    Outcome::Info => c.indeterminate += 1,
                }
                let Some((r, _)) = &key.final_read else {
                    continue;
                };
                let element = adds.element[i];
                let is_present = flags[&element] & PRESENT != 0;
                let named = (adds.invoke[i], k, i);
                match outcome {
                    Outcome::Ok if is_present => {}
                    Outcome::Ok => {
                        let done = adds.complete[i];
                        if done != NEVER && done < self.reads[*r].invoke {
                            lost.push(named);
                        } else {
                            c.unresolved += 1;
                        }
                    }
                    Outcome::Info if is_present => recovered.push(named),
                    Outcome::Info => c.indeterminate_absent += 1,
                    Outcome::Fail => {
                        // Another attempt of the same element that may have happened
                        // explains it.
                        let others = Outcome::Ok.flag() | Outcome::Info.flag();
                        if is_present && flags[&element] & others == 0 {
                            failed_but_present.push(named);
                        }
                    }
                }
            }
            for (e, first) in &key.earlier_reads {
                if !attempted(e) {
                    unexpected.push(*first);
                }
            }
            if let Some((r, elements)) = &key.final_read {
                let mut seen: FastSet<Elem> = FastSet::default();
                for (i, e) in elements.iter().enumerate() {
                    if !attempted(e) && !key.earlier_reads.contains_key(e) && seen.insert(*e) {
                        unexpected.push((*r, i));
                    }
                }
            }
        }
        unexpected.sort_unstable();

        let mut unread_keys: Vec<&str> = self
            .keys
            .iter()
            .filter(|k| !k.adds.element.is_empty() && k.final_read.is_none())
            .map(|k| &*k.name)
            .collect();
        unread_keys.sort_unstable();

        lost.sort_unstable();
        recovered.sort_unstable();
        failed_but_present.sort_unstable();
        let lost_ex = self.add_examples(&lost, ops);
        let recovered_ex = self.add_examples(&recovered, ops);
        let fbp_ex = self.add_examples(&failed_but_present, ops);
        let unexpected_ex: Vec<Value> = unexpected
            .iter()
            .take(EXAMPLES)
            .map(|&(r, i)| {
                let read = &self.reads[r];
                let (inv, done) = (ops.op_at(read.invoke), ops.op_at(read.complete));
                json!({
                    "key": &*self.keys[read.key].name,
                    "element": done.value.as_array().and_then(|v| v.get(i)),
                    "invoke_index": inv.index,
                    "complete_index": done.index,
                    "time_ns": done.time_ns,
                })
            })
            .collect();

        let valid = if !lost.is_empty() || !unexpected.is_empty() || !failed_but_present.is_empty()
        {
            Validity::Invalid
        } else if !unread_keys.is_empty() {
            Validity::Unknown
        } else {
            Validity::Valid
        };

        let keys_with_adds = self
            .keys
            .iter()
            .filter(|k| !k.adds.element.is_empty())
            .count();

        let mut clauses = Vec::new();
        if !lost.is_empty() {
            clauses.push(format!(
                "{} of {} acknowledged adds lost ({})",
                lost.len(),
                c.acknowledged,
                example_text(&lost_ex, lost.len())
            ));
        }
        if !unexpected.is_empty() {
            clauses.push(format!(
                "{} unexpected elements read ({})",
                unexpected.len(),
                example_text(&unexpected_ex, unexpected.len())
            ));
        }
        if !failed_but_present.is_empty() {
            clauses.push(format!(
                "{} failed adds present ({})",
                failed_but_present.len(),
                example_text(&fbp_ex, failed_but_present.len())
            ));
        }
        if !unread_keys.is_empty() {
            let mut names = unread_keys
                .iter()
                .take(SUMMARY_EXAMPLES)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if unread_keys.len() > SUMMARY_EXAMPLES {
                names.push_str(", ...");
            }
            clauses.push(format!(
                "{} of {keys_with_adds} keys with adds have no ok read ({names})",
                unread_keys.len()
            ));
        }
        if valid == Validity::Valid {
            clauses.push(format!(
                "all {} acknowledged adds present in the final reads of {} keys",
                c.acknowledged,
                self.keys.len()
            ));
            if c.indeterminate > 0 {
                clauses.push(format!(
                    "{} of {} indeterminate adds recovered",
                    recovered.len(),
                    c.indeterminate
                ));
            }
            if c.unresolved > 0 {
                clauses.push(format!(
                    "{} acknowledged adds concurrent with their final read and absent from it",
                    c.unresolved
                ));
            }
        }

        let mut result = CheckerResult::new(valid)
            .with("summary", clauses.join("; "))
            .with("keys", self.keys.len())
            .with("attempted", attempted_total)
            .with("acknowledged", c.acknowledged)
            .with("failed", c.failed)
            .with("indeterminate", c.indeterminate)
            .with("lost_count", lost.len())
            .with("recovered_count", recovered.len())
            .with("unexpected_count", unexpected.len())
            .with("failed_but_present_count", failed_but_present.len())
            .with("unresolved_count", c.unresolved)
            .with("indeterminate_absent_count", c.indeterminate_absent)
            .with("unread_keys", unread_keys)
            .with("lost", lost_ex)
            .with("recovered", recovered_ex)
            .with("unexpected", unexpected_ex)
            .with("failed_but_present", fbp_ex);
        if self.malformed_reads > 0 {
            result = result.with("malformed_reads", self.malformed_reads);
        }
        if self.orphan_completions > 0 {
            result = result.with("orphan_completions", self.orphan_completions);
        }
        result
    }

    /// The first [`EXAMPLES`] of `adds` as JSON.
    fn add_examples(&self, adds: &[Named], ops: &dyn OpSource) -> Vec<Value> {
        adds.iter()
            .take(EXAMPLES)
            .map(|&(_, k, i)| {
                let key = &self.keys[k];
                let invoke = ops.op_at(key.adds.invoke[i]);
                let done = key.adds.complete[i];
                let complete = (done != NEVER).then(|| ops.op_at(done));
                json!({
                    "key": &*key.name,
                    "element": invoke.value,
                    "invoke_index": invoke.index,
                    "complete_index": complete.as_ref().map(|op| op.index),
                    // When it was acknowledged (or, never completed, attempted).
                    "time_ns": complete.as_ref().unwrap_or(&invoke).time_ns,
                })
            })
            .collect()
    }
}

/// Tallies that need no example list.
#[derive(Default)]
struct Counts {
    acknowledged: usize,
    failed: usize,
    indeterminate: usize,
    unresolved: usize,
    indeterminate_absent: usize,
}

/// `key: element` for the first few examples, with `...` if there are more.
fn example_text(examples: &[Value], total: usize) -> String {
    let mut parts: Vec<String> = examples
        .iter()
        .take(SUMMARY_EXAMPLES)
        .map(|e| format!("{}: {}", e["key"].as_str().unwrap_or(""), e["element"]))
        .collect();
    if total > SUMMARY_EXAMPLES {
        parts.push("...".to_string());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::keyed::test_history::History;

    /// A set history the way the recorder would write it, lines 1 µs apart (the times the
    /// assertions name).
    fn history() -> History {
        History::with_step_ns(1000)
    }

    /// The set workload's ops on the shared history builder.
    trait SetOps {
        fn add(&mut self, p: u64, key: &str, element: i64, kind: OpType) -> &mut Self;
        fn check(&self) -> CheckerResult;
    }

    impl SetOps for History {
        fn add(&mut self, p: u64, key: &str, element: i64, kind: OpType) -> &mut Self {
            self.op(p, "add", key, element.into(), kind, None)
        }

        fn check(&self) -> CheckerResult {
            LostWrites.check(&RunData::from_history(self.ops.clone()))
        }
    }

    fn count(r: &CheckerResult, name: &str) -> u64 {
        r.details[name].as_u64().unwrap_or_else(|| panic!("{name}"))
    }

    #[test]
    fn clean_history_is_valid() {
        let mut h = history();
        for e in 1..=5 {
            h.add(e as u64 % 2, "s1", e, OpType::Ok);
        }
        h.add(0, "s2", 10, OpType::Ok).add(1, "s2", 11, OpType::Ok);
        h.read(0, "s1", json!([5, 4, 3, 2, 1]))
            .read(1, "s2", json!([10, 11]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{:?}", r.details);
        assert_eq!(count(&r, "keys"), 2);
        assert_eq!(count(&r, "attempted"), 7);
        assert_eq!(count(&r, "acknowledged"), 7);
        assert_eq!(count(&r, "lost_count"), 0);
        assert_eq!(r.details["unread_keys"], json!([]));
        assert!(r.headline().starts_with("all 7 acknowledged adds present"));
    }

    #[test]
    fn planted_lost_element_is_invalid_and_named() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok)
            .add(0, "s1", 2, OpType::Ok)
            .add(0, "s1", 3, OpType::Ok)
            .read(1, "s1", json!([1, 3]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "lost_count"), 1);
        assert_eq!(
            r.details["lost"],
            json!([{"key": "s1", "element": 2, "invoke_index": 2, "complete_index": 3,
                    "time_ns": 3000}])
        );
        assert_eq!(r.headline(), "1 of 3 acknowledged adds lost (s1: 2)");
    }

    #[test]
    fn info_add_present_is_recovered_and_valid() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok)
            .add(1, "s1", 2, OpType::Info)
            .read(2, "s1", json!([1, 2]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid);
        assert_eq!(count(&r, "recovered_count"), 1);
        assert_eq!(count(&r, "indeterminate"), 1);
        assert_eq!(r.details["recovered"][0]["element"], json!(2));
    }

    #[test]
    fn info_add_absent_is_fine() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok)
            .add(1, "s1", 2, OpType::Info)
            .read(2, "s1", json!([1]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid);
        assert_eq!(count(&r, "indeterminate_absent_count"), 1);
        assert_eq!(count(&r, "recovered_count"), 0);
        assert_eq!(count(&r, "lost_count"), 0);
    }

    #[test]
    fn unexpected_element_is_invalid() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok).read(1, "s1", json!([1, 99]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "unexpected_count"), 1);
        assert_eq!(
            r.details["unexpected"],
            json!([{"key": "s1", "element": 99, "invoke_index": 2, "complete_index": 3,
                    "time_ns": 3000}])
        );
    }

    #[test]
    fn element_added_to_another_key_is_unexpected_here() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok)
            .read(1, "s1", json!([1]))
            .read(1, "s2", json!([1]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["unexpected"][0]["key"], json!("s2"));
    }

    #[test]
    fn failed_add_present_is_invalid() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok)
            .add(0, "s1", 2, OpType::Fail)
            .read(1, "s1", json!([1, 2]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "failed"), 1);
        assert_eq!(count(&r, "failed_but_present_count"), 1);
        assert_eq!(r.details["failed_but_present"][0]["element"], json!(2));
    }

    #[test]
    fn failed_add_present_is_fine_if_a_retry_of_it_may_have_happened() {
        let mut h = history();
        h.add(0, "s1", 2, OpType::Fail)
            .add(0, "s1", 2, OpType::Info)
            .read(1, "s1", json!([2]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{:?}", r.details);
        assert_eq!(count(&r, "failed_but_present_count"), 0);
    }

    #[test]
    fn key_with_adds_and_only_a_failed_read_is_unknown() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok)
            .invoke(1, "read", "s1", Value::Null)
            .complete(1, OpType::Fail, None);
        let r = h.check();
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.details["unread_keys"], json!(["s1"]));
    }

    #[test]
    fn lost_and_unread_is_invalid() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok)
            .add(0, "s2", 2, OpType::Ok)
            .read(1, "s1", json!([]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "lost_count"), 1);
        assert_eq!(r.details["unread_keys"], json!(["s2"]));
    }

    #[test]
    fn add_concurrent_with_final_read_and_absent_is_not_lost() {
        let mut h = history();
        h.invoke(0, "add", "s1", 1.into())
            .invoke(1, "read", "s1", Value::Null)
            .complete(0, OpType::Ok, None)
            .complete(1, OpType::Ok, Some(json!([])));
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{:?}", r.details);
        assert_eq!(count(&r, "lost_count"), 0);
        assert_eq!(count(&r, "unresolved_count"), 1);
    }

    #[test]
    fn invoke_without_completion_is_info() {
        let mut h = history();
        h.invoke(0, "add", "s1", 1.into())
            .invoke(2, "add", "s1", 2.into())
            .read(1, "s1", json!([1]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Valid, "{:?}", r.details);
        assert_eq!(count(&r, "indeterminate"), 2);
        assert_eq!(count(&r, "recovered_count"), 1);
        assert_eq!(count(&r, "indeterminate_absent_count"), 1);
        assert_eq!(r.details["recovered"][0]["complete_index"], Value::Null);
    }

    #[test]
    fn the_last_ok_read_is_the_final_one() {
        let mut h = history();
        h.add(0, "s1", 1, OpType::Ok)
            .read(1, "s1", json!([1]))
            .read(1, "s1", json!([]))
            .invoke(1, "read", "s1", Value::Null)
            .complete(1, OpType::Fail, None);
        let r = h.check();
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "lost_count"), 1);
    }

    #[test]
    fn no_set_ops_is_unknown() {
        let mut h = history();
        let nemesis = Op::new(Process::Nemesis, OpType::Invoke, "partition");
        h.push(nemesis.clone());
        h.push(nemesis.complete(OpType::Ok));
        let r = h.check();
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.details["reason"], json!("no set-workload ops in history"));
        let empty = LostWrites.check(&RunData::from_history(Vec::new()));
        assert_eq!(empty.valid, Validity::Unknown);
        let absent = LostWrites.check(&RunData::default());
        assert_eq!(absent.valid, Validity::Unknown);
    }

    #[test]
    fn elements_compare_as_redis_members() {
        let mut h = history();
        h.add(0, "s1", 42, OpType::Ok)
            .invoke(0, "add", "s1", json!("x"))
            .complete(0, OpType::Ok, None)
            .read(1, "s1", json!(["42", "x"]));
        assert_eq!(h.check().valid, Validity::Valid);
        let mut h = history();
        h.add(0, "s1", 42, OpType::Ok)
            .read(1, "s1", json!([42, "042"]));
        let r = h.check();
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["unexpected"][0]["element"], json!("042"));
        assert_eq!(canonical_int("-0"), None);
        assert_eq!(canonical_int("+1"), None);
        assert_eq!(canonical_int("0"), Some(0));
        assert_eq!(canonical_int("-17"), Some(-17));
        assert_eq!(canonical_int("99999999999999999999"), None);
    }

    #[test]
    fn examples_are_capped_and_in_index_order() {
        let mut h = history();
        // Completions out of invoke order: 30 processes in flight at once.
        for e in 0..30 {
            h.invoke(e as u64, "add", "s1", e.into());
        }
        for e in (0..30).rev() {
            h.complete(e as u64, OpType::Ok, None);
        }
        h.read(100, "s1", json!([]));
        let r = h.check();
        assert_eq!(count(&r, "lost_count"), 30);
        let lost = r.details["lost"].as_array().unwrap();
        assert_eq!(lost.len(), EXAMPLES);
        let invokes: Vec<u64> = lost
            .iter()
            .map(|e| e["invoke_index"].as_u64().unwrap())
            .collect();
        assert_eq!(invokes, (0..10).collect::<Vec<_>>());
        assert!(
            r.headline().ends_with("(s1: 0, s1: 1, s1: 2, ...)"),
            "{}",
            r.headline()
        );
    }

    /// A history the size of a long run: the one missing element is still found.
    #[test]
    fn large_history_finds_the_one_lost_element() {
        let mut ops = Vec::with_capacity(1_000_100);
        let keys: Vec<String> = (0..8).map(|k| format!("s{k}")).collect();
        let mut sets: Vec<Vec<Value>> = vec![Vec::new(); 8];
        for e in 0..100_000i64 {
            let p = (e % 50) as u64;
            let k = (e % 8) as usize;
            let invoke = Op::new(Process::Client(p), OpType::Invoke, "add")
                .with_key(keys[k].clone())
                .with_value(e);
            let ok = invoke.complete(OpType::Ok);
            ops.push(invoke);
            ops.push(ok);
            if e != 777 {
                sets[k].push(e.into());
            }
        }
        for (k, set) in sets.into_iter().enumerate() {
            let invoke =
                Op::new(Process::Client(1000), OpType::Invoke, "read").with_key(keys[k].clone());
            ops.push(invoke.clone());
            ops.push(invoke.complete(OpType::Ok).with_value(set));
        }
        for (i, op) in ops.iter_mut().enumerate() {
            op.index = i as u64;
            op.time_ns = i as u64;
        }
        let run = RunData::from_history(ops);
        let r = LostWrites.check(&run);
        assert_eq!(count(&r, "lost_count"), 1);
        assert_eq!(r.details["lost"][0]["element"], 777);
    }
}
