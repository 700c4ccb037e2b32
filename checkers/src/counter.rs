//! `counter`: every read of a counter lies between the increments certainly applied and
//! those possibly applied (Jepsen's counter checker, per key, with time).
//!
//! The counter workload `incr`s keys by small amounts (`INCRBY`) and `read`s them. For a
//! read invoked at `i` and completed at `c` (positions in the history, which is time
//! order), with the counter starting at 0:
//!
//! - **certainly applied**: `ok` increments completed before `i`;
//! - **possibly applied**: increments invoked before `c` that did not `fail` (`ok` ones
//!   concurrent with the read, `info` ones, ones that never completed).
//!
//! The read must lie in `[certain + negative possible, certain + positive possible]`. A
//! read below is an **under-count** (acknowledged increments lost, as when a primary that
//! acknowledged them is cut off and its replica takes over); above, an **over-count**
//! (an increment applied twice, or one that failed). The two are reported apart. An `ok`
//! increment's `after` (the value `INCRBY` answered) is judged the same way, with its own
//! increment certainly applied. The last `ok` read of each key is its final value; a key
//! with increments and no `ok` read makes the verdict unknown unless something is invalid.

use faultline_history::Op;
use serde_json::{json, Value};

use crate::keyed::{self, Outcome, Paired};
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "counter";

/// How many examples each list in the details holds.
const EXAMPLES: usize = 10;

/// Checks the counter workload's reads against its increments.
#[derive(Debug, Clone, Copy, Default)]
pub struct CounterChecker;

impl Checker for CounterChecker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [crate::Input] {
        &[crate::Input::History]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        check_history(&run.history)
    }
}

/// One value read, by a `read` or as an increment's `after`.
struct Observed {
    op: Paired,
    value: i64,
    /// The increment's own amount, for an `after` (certainly applied).
    own: Option<i64>,
}

#[derive(Default)]
struct Tally {
    keys: usize,
    incr_ok: usize,
    incr_fail: usize,
    incr_info: usize,
    reads: usize,
    afters: usize,
    unreadable: usize,
}

fn check_history(history: &[Op]) -> CheckerResult {
    let by_key = keyed::by_key(history, &["incr", "read"]);
    if by_key.lines == 0 {
        return CheckerResult::unknown("no counter-workload ops (incr, read) in the history");
    }
    let mut t = Tally::default();
    let mut found = Found::default();
    let mut finals = Vec::new();
    let mut unread = Vec::new();
    for key in &by_key.keys {
        t.keys += 1;
        let incrs: Vec<(Paired, i64)> = key
            .ops
            .iter()
            .filter(|p| history[p.invoke].f == "incr")
            .filter_map(|p| {
                let amount = history[p.invoke].value.as_i64();
                if amount.is_none() {
                    t.unreadable += 1;
                }
                amount.map(|a| (*p, a))
            })
            .collect();
        for (p, _) in &incrs {
            match p.outcome {
                Outcome::Ok => t.incr_ok += 1,
                Outcome::Fail => t.incr_fail += 1,
                Outcome::Info => t.incr_info += 1,
            }
        }
        let mut observed = Vec::new();
        for p in key.ops.iter().filter(|p| p.outcome == Outcome::Ok) {
            let Some(c) = p.complete else { continue };
            let done = &history[c];
            let (value, own) = if done.f == "read" {
                (read_value(&done.value), None)
            } else {
                match done.extra.get("after") {
                    Some(after) => (read_value(after), history[p.invoke].value.as_i64()),
                    None => continue,
                }
            };
            match value {
                Some(value) => observed.push(Observed { op: *p, value, own }),
                None => t.unreadable += 1,
            }
        }
        let bounds = Bounds::new(&incrs);
        let final_read = observed
            .iter()
            .filter(|o| o.own.is_none())
            .max_by_key(|o| o.op.complete)
            .map(|o| o.op.invoke);
        if final_read.is_none() && !incrs.is_empty() {
            unread.push(key.name);
        }
        // Once an increment is lost every later value of the key is short too: the
        // examples are each key's first value out of range.
        let (mut first_under, mut first_over) = (true, true);
        for o in &observed {
            if o.own.is_some() {
                t.afters += 1;
            } else {
                t.reads += 1;
            }
            let (lower, upper) = bounds.range(&o.op, o.own);
            let is_final = o.own.is_none() && Some(o.op.invoke) == final_read;
            if is_final {
                finals.push(json!({
                    "key": key.name, "value": o.value, "lower": lower, "upper": upper,
                }));
            }
            let off_by = if o.value < lower {
                lower - o.value
            } else if o.value > upper {
                o.value - upper
            } else {
                continue;
            };
            let mut example = keyed::op_json(history, &o.op, o.value.into());
            example["key"] = key.name.into();
            example["lower"] = lower.into();
            example["upper"] = upper.into();
            example["off_by"] = off_by.into();
            example["final"] = is_final.into();
            let under = o.value < lower;
            let first = if under {
                &mut first_under
            } else {
                &mut first_over
            };
            found.add(under, is_final, std::mem::take(first), example);
        }
    }
    verdict(t, found, finals, unread, by_key.orphan_completions)
}

/// Values out of their range: under-counts and over-counts apart.
#[derive(Default)]
struct Found {
    under_count: usize,
    over_count: usize,
    /// Keys with at least one value under (over) its range.
    under_keys: usize,
    over_keys: usize,
    /// Each key's first value out of range, for the first [`EXAMPLES`] keys.
    under: Vec<Value>,
    over: Vec<Value>,
    /// Every final value out of range.
    final_under: Vec<Value>,
    final_over: Vec<Value>,
}

impl Found {
    fn add(&mut self, under: bool, is_final: bool, first_of_key: bool, example: Value) {
        let (count, keys, list, finals) = if under {
            let s = self;
            (
                &mut s.under_count,
                &mut s.under_keys,
                &mut s.under,
                &mut s.final_under,
            )
        } else {
            let s = self;
            (
                &mut s.over_count,
                &mut s.over_keys,
                &mut s.over,
                &mut s.final_over,
            )
        };
        *count += 1;
        *keys += usize::from(first_of_key);
        if is_final {
            finals.push(example.clone());
        }
        if first_of_key && list.len() < EXAMPLES {
            list.push(example);
        }
    }
}

/// A read's value: an integer, or `null` for a key not yet there (0).
fn read_value(v: &Value) -> Option<i64> {
    match v {
        Value::Null => Some(0),
        Value::String(s) => s.parse().ok(),
        other => other.as_i64(),
    }
}

/// Running sums of one key's increments by position, to bound any value in O(log n).
///
/// Each list holds `(position, sum of positive amounts, sum of negative amounts)` up to and
/// including that position: `acked` by completion of the `ok` increments, `possible` by
/// invoke of every increment that did not fail.
struct Bounds {
    acked: Vec<(usize, i64, i64)>,
    possible: Vec<(usize, i64, i64)>,
}

impl Bounds {
    fn new(incrs: &[(Paired, i64)]) -> Bounds {
        let sums = |mut at: Vec<(usize, i64)>| {
            at.sort_unstable();
            let (mut plus, mut minus) = (0, 0);
            at.into_iter()
                .map(|(pos, a)| {
                    plus += a.max(0);
                    minus += a.min(0);
                    (pos, plus, minus)
                })
                .collect()
        };
        Bounds {
            acked: sums(
                incrs
                    .iter()
                    .filter(|(p, _)| p.outcome == Outcome::Ok)
                    .map(|(p, a)| (p.done(), *a))
                    .collect(),
            ),
            possible: sums(
                incrs
                    .iter()
                    .filter(|(p, _)| p.outcome != Outcome::Fail)
                    .map(|(p, a)| (p.invoke, *a))
                    .collect(),
            ),
        }
    }

    /// The sums of `list` over positions before `at`.
    fn before(list: &[(usize, i64, i64)], at: usize) -> (i64, i64) {
        match list.partition_point(|e| e.0 < at) {
            0 => (0, 0),
            n => (list[n - 1].1, list[n - 1].2),
        }
    }

    /// The range a value observed by `op` may take; `own` is the op's own increment when
    /// the value is what that increment answered.
    ///
    /// Certain increments move both ends; possible ones only widen the range: the lower
    /// end is the certain positive amounts plus every possible negative one, the upper
    /// end the certain negative amounts plus every possible positive one (the certain
    /// ones are among the possible: invoked before the read completed).
    fn range(&self, op: &Paired, own: Option<i64>) -> (i64, i64) {
        let (certain_plus, certain_minus) = Self::before(&self.acked, op.invoke);
        let (possible_plus, possible_minus) = Self::before(&self.possible, op.done());
        let (mut lower, mut upper) = (certain_plus + possible_minus, certain_minus + possible_plus);
        if let Some(a) = own {
            // Counted as possible above; it is certain.
            lower += a.max(0);
            upper += a.min(0);
        }
        (lower, upper)
    }
}

fn verdict(
    t: Tally,
    found: Found,
    finals: Vec<Value>,
    unread: Vec<&str>,
    orphans: usize,
) -> CheckerResult {
    let Found {
        under_count,
        over_count,
        under_keys,
        over_keys,
        under: under_ex,
        over: over_ex,
        final_under,
        final_over,
    } = found;
    let lost_at_least: i64 = final_under
        .iter()
        .filter_map(|e| e["off_by"].as_i64())
        .sum();
    let valid = if under_count + over_count > 0 {
        Validity::Invalid
    } else if !unread.is_empty() || t.unreadable > 0 {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let mut clauses = Vec::new();
    let checked = t.reads + t.afters;
    if under_count > 0 {
        let first = &under_ex[0];
        clauses.push(format!(
            "{under_count} of {checked} values on {under_keys} keys under-counted (acknowledged \
             increments lost; e.g. {} read {} at {} s, at least {} acknowledged)",
            first["key"].as_str().unwrap_or(""),
            first["value"],
            first["completed_s"],
            first["lower"]
        ));
    }
    if !final_under.is_empty() {
        clauses.push(format!(
            "{} final values under-counted, at least {lost_at_least} of the acknowledged \
             increments' sum lost",
            final_under.len()
        ));
    }
    if over_count > 0 {
        let first = &over_ex[0];
        clauses.push(format!(
            "{over_count} of {checked} values on {over_keys} keys over-counted (e.g. {} read {} \
             at {} s, at most {} possible)",
            first["key"].as_str().unwrap_or(""),
            first["value"],
            first["completed_s"],
            first["upper"]
        ));
    }
    if !unread.is_empty() {
        clauses.push(format!(
            "{} keys with increments have no ok read ({})",
            unread.len(),
            unread.join(", ")
        ));
    }
    if t.unreadable > 0 {
        clauses.push(format!(
            "{} values or amounts are not integers",
            t.unreadable
        ));
    }
    if valid == Validity::Valid {
        clauses.push(format!(
            "all {checked} values of {} counters within their bounds ({} increments ok, {} info, \
             {} failed)",
            t.keys, t.incr_ok, t.incr_info, t.incr_fail
        ));
    }
    let mut result = CheckerResult::new(valid)
        .with("summary", clauses.join("; "))
        .with("keys", t.keys)
        .with("increments_ok", t.incr_ok)
        .with("increments_failed", t.incr_fail)
        .with("increments_indeterminate", t.incr_info)
        .with("reads_checked", t.reads)
        .with("increment_results_checked", t.afters)
        .with("under_count", under_count)
        .with("under_keys", under_keys)
        .with("over_count", over_count)
        .with("over_keys", over_keys)
        .with("final_under_count", final_under.len())
        .with("final_over_count", final_over.len())
        .with("final_lost_at_least", lost_at_least)
        .with("under_counted", under_ex)
        .with("over_counted", over_ex)
        .with(
            "final_out_of_range",
            final_under
                .iter()
                .chain(&final_over)
                .cloned()
                .collect::<Vec<_>>(),
        )
        .with("final_values", finals)
        .with("unread_keys", unread);
    if t.unreadable > 0 {
        result = result.with("unreadable_values", t.unreadable);
    }
    if orphans > 0 {
        result = result.with("orphan_completions", orphans);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::test_history::History;
    use faultline_history::OpType::{Fail, Info, Ok};
    use serde_json::json;

    fn check(h: &History) -> CheckerResult {
        CounterChecker.check(&RunData::from_history(h.ops.clone()))
    }

    fn count(r: &CheckerResult, name: &str) -> i64 {
        r.details[name]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} in {:?}", r.details))
    }

    fn incr(h: &mut History, p: u64, key: &str, amount: i64, kind: faultline_history::OpType) {
        h.op(p, "incr", key, amount.into(), kind, None);
    }

    #[test]
    fn reads_of_acknowledged_increments_are_valid() {
        let mut h = History::default();
        h.read(0, "c", json!(null));
        incr(&mut h, 0, "c", 3, Ok);
        incr(&mut h, 1, "c", 2, Ok);
        h.read(1, "c", json!(5));
        incr(&mut h, 0, "d", 1, Ok);
        h.read(0, "d", json!("1")).read(0, "c", json!(5));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{:?}", r.details);
        assert_eq!(count(&r, "keys"), 2);
        assert_eq!(count(&r, "increments_ok"), 3);
        assert_eq!(count(&r, "reads_checked"), 4);
        assert_eq!(
            r.details["final_values"][0],
            json!({"key": "c", "value": 5, "lower": 5, "upper": 5})
        );
        assert!(
            r.headline().starts_with("all 4 values of 2 counters"),
            "{}",
            r.headline()
        );
    }

    #[test]
    fn a_read_missing_acknowledged_increments_is_an_under_count() {
        let mut h = History::default();
        incr(&mut h, 0, "c", 3, Ok);
        incr(&mut h, 0, "c", 4, Ok);
        h.read(1, "c", json!(3));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "under_count"), 1);
        assert_eq!(count(&r, "over_count"), 0);
        assert_eq!(count(&r, "final_under_count"), 1);
        assert_eq!(count(&r, "final_lost_at_least"), 4);
        let e = &r.details["under_counted"][0];
        assert_eq!(
            (e["value"].clone(), e["lower"].clone(), e["upper"].clone()),
            (json!(3), json!(7), json!(7))
        );
        assert_eq!(e["final"], true);
        assert_eq!(e["complete_index"], 5);
        assert!(
            r.headline()
                .contains("1 of 1 values on 1 keys under-counted"),
            "{}",
            r.headline()
        );
    }

    #[test]
    fn a_failed_increment_that_shows_is_an_over_count() {
        let mut h = History::default();
        incr(&mut h, 0, "c", 3, Ok);
        incr(&mut h, 0, "c", 5, Fail);
        h.read(1, "c", json!(8));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "under_count"), 0);
        assert_eq!(count(&r, "over_count"), 1);
        assert_eq!(r.details["over_counted"][0]["off_by"], 5);
        assert!(r.headline().contains("over-counted"), "{}", r.headline());
    }

    #[test]
    fn indeterminate_and_concurrent_increments_may_count_or_not() {
        for seen in [0, 5, 7, 12] {
            let mut h = History::default();
            incr(&mut h, 0, "c", 5, Info);
            // An ok increment concurrent with the read.
            h.invoke(1, "incr", "c", json!(7));
            h.invoke(2, "read", "c", json!(null));
            h.complete(1, Ok, None);
            h.complete(2, Ok, Some(json!(seen)));
            let r = check(&h);
            assert_eq!(r.valid, Validity::Valid, "read {seen}: {:?}", r.details);
        }
        let mut h = History::default();
        incr(&mut h, 0, "c", 5, Info);
        h.read(1, "c", json!(6));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid, "6 is neither 0 nor 5");
        assert_eq!(count(&r, "over_count"), 1);
    }

    #[test]
    fn an_increment_answer_counts_its_own_increment() {
        let mut h = History::default();
        incr(&mut h, 0, "c", 2, Ok);
        h.invoke(0, "incr", "c", json!(3))
            .complete_with(0, ("after", json!(5)));
        h.invoke(1, "incr", "c", json!(1))
            .complete_with(1, ("after", json!(2)));
        h.read(0, "c", json!(6));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid, "{:?}", r.details);
        assert_eq!(count(&r, "increment_results_checked"), 2);
        assert_eq!(
            count(&r, "under_count"),
            1,
            "after 2 misses the 2 and 3 acknowledged"
        );
        let e = &r.details["under_counted"][0];
        assert_eq!(
            (e["value"].clone(), e["lower"].clone(), e["f"].clone()),
            (json!(2), json!(6), json!("incr"))
        );
        assert_eq!(e["final"], false);
    }

    #[test]
    fn a_counter_never_read_is_unknown_and_no_ops_is_unknown() {
        let mut h = History::default();
        incr(&mut h, 0, "c", 2, Ok);
        h.read(0, "d", json!(0));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.details["unread_keys"], json!(["c"]));
        let r = CounterChecker.check(&RunData::from_history(Vec::new()));
        assert_eq!(r.valid, Validity::Unknown);
    }
}
