//! `list-append`: the reads of each list must all be prefixes of one list that only grew
//! by the appends clients made (after Elle's list-append, for one key at a time).
//!
//! The list-append workload `append`s unique elements to lists (`RPUSH`) and `read`s them
//! whole (`LRANGE`). Per key, with reads taken in completion order:
//!
//! - **divergence**: two reads where neither is a prefix of the other (`incompatible`),
//!   or a read shorter than one that had completed before it was invoked (`went back`:
//!   what was read is gone). The first divergence is reported with both reads.
//! - **duplicate**: an element twice in one read.
//! - **unexpected**: an element no append on that key attempted; **failed but present**:
//!   an element whose append failed.
//! - **lost**: an append acknowledged before the key's final read (its last `ok` read)
//!   was invoked, missing from that read; **stale read**: any other read missing an
//!   append acknowledged before it was invoked.
//!
//! A key with appends and no `ok` read makes the verdict unknown unless something is
//! invalid.

use faultline_history::Op;
use serde_json::{json, Value};

use crate::fast_hash::{FastMap, FastSet};
use crate::keyed::{self, KeyOps, Outcome, Paired};
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "list-append";

/// How many examples each list in the details holds.
const EXAMPLES: usize = 10;

/// Checks the list-append workload's reads against each other and its appends.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListAppend;

impl Checker for ListAppend {
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

/// One `ok` read.
struct Read<'a> {
    op: Paired,
    elements: Vec<Element<'a>>,
}

/// Where two reads part.
struct Divergence {
    kind: &'static str,
    /// The read that completed first (the longest one before the later read), and the
    /// later one, as indexes into the key's reads.
    earlier: usize,
    later: usize,
    /// The first position where they differ (or the later read's length, for `went back`).
    at: usize,
}

/// What was found, over every key.
#[derive(Default)]
struct Found {
    keys: usize,
    appends: [usize; 3],
    reads: usize,
    malformed_reads: usize,
    incompatible: usize,
    went_back: usize,
    /// `(completion position of the later read, evidence)` of the earliest divergence.
    first_divergence: Option<(usize, Value)>,
    lists: [Evidence; 5],
    unread_keys: Vec<String>,
}

/// A count and its first few examples.
#[derive(Default)]
struct Evidence {
    count: usize,
    examples: Vec<Value>,
}

impl Evidence {
    fn add(&mut self, example: impl FnOnce() -> Value) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}

/// Indexes into [`Found::lists`].
const DUPLICATE: usize = 0;
const UNEXPECTED: usize = 1;
const FAILED_PRESENT: usize = 2;
const LOST: usize = 3;
const STALE: usize = 4;
const LIST_NAMES: [&str; 5] = [
    "duplicates",
    "unexpected",
    "failed_but_present",
    "lost",
    "stale_reads",
];

fn check_history(history: &[Op]) -> CheckerResult {
    let by_key = keyed::by_key(history, &["append", "read"]);
    if by_key.lines == 0 {
        return CheckerResult::unknown("no list-append ops (append, read) in the history");
    }
    let mut found = Found::default();
    for key in &by_key.keys {
        check_key(history, key, &mut found);
    }
    verdict(found, by_key.orphan_completions)
}

fn check_key<'a>(history: &'a [Op], key: &KeyOps<'a>, found: &mut Found) {
    found.keys += 1;
    let mut appends: FastMap<Element<'a>, Paired> = FastMap::default();
    let mut reads: Vec<Read<'a>> = Vec::new();
    for p in &key.ops {
        let invoke = &history[p.invoke];
        if invoke.f == "append" {
            found.appends[p.outcome as usize] += 1;
            appends.entry(Element::of(&invoke.value)).or_insert(*p);
        } else if let (Outcome::Ok, Some(c)) = (p.outcome, p.complete) {
            match history[c].value.as_array() {
                Some(list) => reads.push(Read {
                    op: *p,
                    elements: list.iter().map(Element::of).collect(),
                }),
                None => found.malformed_reads += 1,
            }
        }
    }
    found.reads += reads.len();
    reads.sort_unstable_by_key(|r| r.op.done());
    let name = key.name;
    let read_json = |r: &Read| {
        let c = r.op.complete.expect("ok reads completed");
        keyed::op_json(history, &r.op, history[c].value.clone())
    };

    // Elements each read holds that it should not.
    for r in &reads {
        let mut seen: FastSet<&Element> = FastSet::default();
        for (i, e) in r.elements.iter().enumerate() {
            let element = || history[r.op.complete.unwrap()].value[i].clone();
            if !seen.insert(e) {
                found.lists[DUPLICATE].add(|| {
                    json!({"key": name, "element": element(), "position": i, "read": read_json(r)})
                });
            }
            match appends.get(e).map(|a| a.outcome) {
                None => found.lists[UNEXPECTED]
                    .add(|| json!({"key": name, "element": element(), "read": read_json(r)})),
                Some(Outcome::Fail) => found.lists[FAILED_PRESENT]
                    .add(|| json!({"key": name, "element": element(), "read": read_json(r)})),
                Some(_) => {}
            }
        }
    }

    // Order: every read a prefix of the longest so far, and no shorter than any read
    // that completed before it was invoked.
    let mut divergences = Vec::new();
    let mut longest: Option<usize> = None;
    let mut longest_before: Option<usize> = None;
    let mut completed = 0;
    for (i, r) in reads.iter().enumerate() {
        while completed < i && reads[completed].op.done() < r.op.invoke {
            if longest_before
                .is_none_or(|l| reads[completed].elements.len() > reads[l].elements.len())
            {
                longest_before = Some(completed);
            }
            completed += 1;
        }
        if let Some(l) = longest {
            let other = &reads[l].elements;
            let at = r
                .elements
                .iter()
                .zip(other)
                .take_while(|(a, b)| a == b)
                .count();
            if at < r.elements.len().min(other.len()) {
                found.incompatible += 1;
                divergences.push(Divergence {
                    kind: "incompatible",
                    earlier: l,
                    later: i,
                    at,
                });
                continue;
            }
        }
        if let Some(b) = longest_before {
            if reads[b].elements.len() > r.elements.len() {
                found.went_back += 1;
                divergences.push(Divergence {
                    kind: "went back",
                    earlier: b,
                    later: i,
                    at: r.elements.len(),
                });
            }
        }
        if longest.is_none_or(|l| r.elements.len() > reads[l].elements.len()) {
            longest = Some(i);
        }
    }
    if let Some(d) = divergences.first() {
        let later = &reads[d.later];
        let at_pos = later.op.done();
        if found
            .first_divergence
            .as_ref()
            .is_none_or(|(p, _)| at_pos < *p)
        {
            let earlier = &reads[d.earlier];
            let shown = |r: &Read| {
                let c = r.op.complete.unwrap();
                history[c].value.get(d.at).cloned().unwrap_or(Value::Null)
            };
            let explanation = if d.kind == "incompatible" {
                format!(
                    "neither read is a prefix of the other: they agree on {} elements, then the \
                     earlier read has {} where the later has {}",
                    d.at,
                    shown(earlier),
                    shown(later)
                )
            } else {
                format!(
                    "the later read has {} elements, the one completed before it was invoked \
                     had {}: elements from {} on were read, then gone",
                    later.elements.len(),
                    earlier.elements.len(),
                    shown(earlier)
                )
            };
            found.first_divergence = Some((
                at_pos,
                json!({
                    "key": name,
                    "kind": d.kind,
                    "position": d.at,
                    "explanation": explanation,
                    "earlier": read_json(earlier),
                    "later": read_json(later),
                }),
            ));
        }
    }

    // Acknowledged appends each read must hold: those completed before it was invoked.
    let mut acked: Vec<(usize, &Element)> = appends
        .iter()
        .filter(|(_, a)| a.outcome == Outcome::Ok)
        .map(|(e, a)| (a.done(), e))
        .collect();
    acked.sort_unstable_by_key(|(at, _)| *at);
    let Some(final_read) = reads.last() else {
        if !appends.is_empty() {
            found.unread_keys.push(name.to_string());
        }
        return;
    };
    for (i, r) in reads.iter().enumerate() {
        let due = acked.partition_point(|(at, _)| *at < r.op.invoke);
        let held: FastSet<&Element> = r.elements.iter().collect();
        let missing: Vec<&Element> = acked[..due]
            .iter()
            .filter(|(_, e)| !held.contains(e))
            .map(|(_, e)| *e)
            .collect();
        if missing.is_empty() {
            continue;
        }
        if i + 1 == reads.len() {
            for e in missing {
                let append = appends[e];
                found.lists[LOST].add(|| {
                    json!({
                        "key": name,
                        "element": history[append.invoke].value,
                        "append": keyed::op_json(history, &append, history[append.invoke].value.clone()),
                        "final_read_invoked_s": keyed::seconds(history[final_read.op.invoke].time_ns),
                    })
                });
            }
        } else {
            found.lists[STALE].add(|| {
                let first = appends[missing[0]];
                json!({
                    "key": name,
                    "missing_count": missing.len(),
                    "first_missing": history[first.invoke].value,
                    "read": read_json(r),
                })
            });
        }
    }
}

fn verdict(found: Found, orphans: usize) -> CheckerResult {
    let divergent = found.incompatible + found.went_back;
    let problems: usize = divergent + found.lists.iter().map(|l| l.count).sum::<usize>();
    let valid = if problems > 0 {
        Validity::Invalid
    } else if !found.unread_keys.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let [ok, fail, info] = found.appends;
    let mut clauses = Vec::new();
    if let Some((_, d)) = &found.first_divergence {
        clauses.push(format!(
            "{divergent} reads diverge; first on {} ({}): read completed at {} s vs read \
             completed at {} s: {}",
            d["key"].as_str().unwrap_or(""),
            d["kind"].as_str().unwrap_or(""),
            d["earlier"]["completed_s"],
            d["later"]["completed_s"],
            d["explanation"].as_str().unwrap_or("")
        ));
    }
    let words = [
        "elements read twice",
        "elements never appended",
        "failed appends read",
        "acknowledged appends lost (missing from the final read)",
        "reads missing an append acknowledged before them",
    ];
    for (list, words) in found.lists.iter().zip(words) {
        if list.count > 0 {
            clauses.push(format!("{} {words}", list.count));
        }
    }
    if !found.unread_keys.is_empty() {
        clauses.push(format!(
            "{} lists with appends have no ok read",
            found.unread_keys.len()
        ));
    }
    if valid == Validity::Valid {
        clauses.push(format!(
            "{} reads of {} lists are prefixes of one another, with every acknowledged append \
             ({ok} ok, {info} info, {fail} failed)",
            found.reads, found.keys
        ));
    }
    let mut result = CheckerResult::new(valid)
        .with("summary", clauses.join("; "))
        .with("keys", found.keys)
        .with("appends_ok", ok)
        .with("appends_failed", fail)
        .with("appends_indeterminate", info)
        .with("reads", found.reads)
        .with("incompatible_count", found.incompatible)
        .with("went_back_count", found.went_back)
        .with(
            "first_divergence",
            found.first_divergence.map_or(Value::Null, |(_, d)| d),
        );
    for (list, name) in found.lists.into_iter().zip(LIST_NAMES) {
        result = result
            .with(&format!("{name}_count"), list.count)
            .with(name, list.examples);
    }
    result = result.with("unread_keys", found.unread_keys);
    if found.malformed_reads > 0 {
        result = result.with("malformed_reads", found.malformed_reads);
    }
    if orphans > 0 {
        result = result.with("orphan_completions", orphans);
    }
    result
}

/// A list element as Redis compares it: a JSON integer and a string holding that
/// integer's canonical decimal form are one element (LRANGE answers strings); anything
/// else compares by its text (strings as they are, other values as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Element<'a> {
    Int(i64),
    Text(std::borrow::Cow<'a, str>),
}

impl<'a> Element<'a> {
    fn of(value: &'a Value) -> Element<'a> {
        use std::borrow::Cow;
        match value {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Element::Int(i),
                None => Element::Text(Cow::Owned(n.to_string())),
            },
            Value::String(s) => match crate::lost_writes::canonical_int(s) {
                Some(i) => Element::Int(i),
                None => Element::Text(Cow::Borrowed(s)),
            },
            other => Element::Text(Cow::Owned(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::test_history::History;
    use faultline_history::OpType::{Fail, Info, Ok};
    use serde_json::json;

    fn check(h: &History) -> CheckerResult {
        ListAppend.check(&RunData::from_history(h.ops.clone()))
    }

    fn count(r: &CheckerResult, name: &str) -> u64 {
        r.details[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {:?}", r.details))
    }

    fn append(h: &mut History, p: u64, key: &str, e: i64, kind: faultline_history::OpType) {
        h.op(p, "append", key, e.into(), kind, None);
    }

    #[test]
    fn growing_prefixes_are_valid() {
        let mut h = History::default();
        h.read(0, "l", json!([]));
        append(&mut h, 0, "l", 1, Ok);
        h.read(1, "l", json!([1]));
        append(&mut h, 1, "l", 2, Ok);
        append(&mut h, 0, "l", 3, Info);
        append(&mut h, 2, "l", 4, Fail);
        h.read(1, "l", json!([1, 2, 3]));
        append(&mut h, 0, "m", 5, Ok);
        h.read(0, "m", json!([5]));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Valid, "{:?}", r.details);
        assert_eq!(count(&r, "keys"), 2);
        assert_eq!(count(&r, "reads"), 4);
        assert_eq!(count(&r, "appends_ok"), 3);
        assert_eq!(count(&r, "appends_failed"), 1);
        assert_eq!(count(&r, "appends_indeterminate"), 1);
        assert_eq!(r.details["first_divergence"], Value::Null);
        assert!(
            r.headline().starts_with("4 reads of 2 lists"),
            "{}",
            r.headline()
        );
    }

    #[test]
    fn reads_that_part_ways_report_the_first_divergence_with_both_reads() {
        let mut h = History::default();
        append(&mut h, 0, "l", 1, Ok);
        append(&mut h, 0, "l", 2, Info);
        append(&mut h, 1, "l", 3, Info);
        h.read(2, "l", json!([1, 2]));
        h.read(3, "l", json!([1, 3]));
        h.read(3, "l", json!([1, 3, 2]));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "incompatible_count"), 2);
        let d = &r.details["first_divergence"];
        assert_eq!(d["kind"], "incompatible");
        assert_eq!(d["position"], 1);
        assert_eq!(d["earlier"]["value"], json!([1, 2]));
        assert_eq!(d["later"]["value"], json!([1, 3]));
        assert_eq!(d["later"]["complete_index"], 9);
        assert!(
            d["explanation"]
                .as_str()
                .unwrap()
                .contains("earlier read has 2 where the later has 3"),
            "{d}"
        );
        assert!(
            r.headline()
                .contains("2 reads diverge; first on l (incompatible)"),
            "{}",
            r.headline()
        );
    }

    #[test]
    fn a_read_shorter_than_one_completed_before_it_went_back() {
        let mut h = History::default();
        append(&mut h, 0, "l", 1, Info);
        append(&mut h, 1, "l", 2, Info);
        h.read(2, "l", json!([1, 2]));
        h.read(2, "l", json!([1]));
        // Concurrent reads may be in either order: no divergence between these two.
        append(&mut h, 0, "k", 5, Info);
        append(&mut h, 1, "k", 6, Info);
        h.invoke(3, "read", "k", json!(null))
            .invoke(4, "read", "k", json!(null));
        h.complete(3, Ok, Some(json!([5, 6])));
        h.complete(4, Ok, Some(json!([5])));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "went_back_count"), 1, "{:?}", r.details);
        assert_eq!(count(&r, "incompatible_count"), 0);
        let d = &r.details["first_divergence"];
        assert_eq!(d["kind"], "went back");
        assert_eq!(d["earlier"]["value"], json!([1, 2]));
        assert_eq!(d["later"]["value"], json!([1]));
    }

    #[test]
    fn duplicates_strangers_and_failed_appends_in_reads_are_invalid() {
        let mut h = History::default();
        append(&mut h, 0, "l", 1, Ok);
        append(&mut h, 0, "l", 2, Fail);
        h.read(1, "l", json!([1, 1, 2, 9]));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "duplicates_count"), 1);
        assert_eq!(count(&r, "unexpected_count"), 1);
        assert_eq!(count(&r, "failed_but_present_count"), 1);
        assert_eq!(r.details["duplicates"][0]["element"], 1);
        assert_eq!(r.details["duplicates"][0]["position"], 1);
        assert_eq!(r.details["unexpected"][0]["element"], 9);
        assert_eq!(r.details["failed_but_present"][0]["element"], 2);
    }

    #[test]
    fn acknowledged_appends_missing_later_are_stale_reads_and_from_the_final_read_lost() {
        let mut h = History::default();
        append(&mut h, 0, "l", 1, Ok);
        append(&mut h, 0, "l", 2, Ok);
        h.read(1, "l", json!([2]));
        append(&mut h, 0, "l", 3, Ok);
        h.read(1, "l", json!([2]));
        let r = check(&h);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(count(&r, "stale_reads_count"), 1);
        assert_eq!(r.details["stale_reads"][0]["missing_count"], 1);
        assert_eq!(r.details["stale_reads"][0]["first_missing"], 1);
        assert_eq!(count(&r, "lost_count"), 2);
        let lost: Vec<&Value> = r.details["lost"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| &l["element"])
            .collect();
        assert_eq!(lost, [&json!(1), &json!(3)]);
        assert!(
            r.headline().contains("2 acknowledged appends lost"),
            "{}",
            r.headline()
        );
    }

    #[test]
    fn a_list_never_read_is_unknown_and_an_append_concurrent_with_the_final_read_may_miss() {
        let mut h = History::default();
        append(&mut h, 0, "l", 1, Ok);
        h.invoke(1, "read", "l", json!(null));
        append(&mut h, 0, "l", 2, Ok);
        h.complete(1, Ok, Some(json!([1])));
        append(&mut h, 0, "m", 3, Ok);
        let r = check(&h);
        assert_eq!(r.valid, Validity::Unknown, "{:?}", r.details);
        assert_eq!(r.details["unread_keys"], json!(["m"]));
        assert_eq!(count(&r, "lost_count"), 0);
        let r = ListAppend.check(&RunData::from_history(Vec::new()));
        assert_eq!(r.valid, Validity::Unknown);
    }
}
