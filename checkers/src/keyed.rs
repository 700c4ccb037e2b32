//! Client ops paired and grouped by key: what the counter and list-append checkers walk.

use faultline_history::{Op, OpType, Process};
use serde_json::{json, Value};

use crate::fast_hash::FastMap;
use crate::in_flight::InFlight;

/// How an op ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// `info`, or no completion at all: it may have happened.
    Info,
}

/// One client op: positions of its invoke and completion in the history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paired {
    /// Position of the invoke.
    pub(crate) invoke: usize,
    /// Position of the completion; `None` if it never completed.
    pub(crate) complete: Option<usize>,
    /// How it ended.
    pub(crate) outcome: Outcome,
}

impl Paired {
    /// The position by which the op had certainly taken effect or not: its completion, or
    /// past the end of the history for one that never completed.
    pub(crate) fn done(&self) -> usize {
        self.complete.unwrap_or(usize::MAX)
    }
}

/// One key's ops, in invoke order.
pub(crate) struct KeyOps<'a> {
    /// The key.
    pub(crate) name: &'a str,
    /// Its ops.
    pub(crate) ops: Vec<Paired>,
}

/// The client ops of a history with the given functions, by key.
pub(crate) struct ByKey<'a> {
    /// Keys in order of their first op.
    pub(crate) keys: Vec<KeyOps<'a>>,
    /// How many history lines were such ops.
    pub(crate) lines: usize,
    /// Completions with no pending invoke of their process; ignored.
    pub(crate) orphan_completions: usize,
}

/// Pairs each invoke of a client op whose `f` is one of `functions` with its process's
/// next completion (Jepsen's op model: one op in flight per process) and groups the ops
/// by key. A second invoke while one is pending leaves the first without completion.
pub(crate) fn by_key<'a>(history: &'a [Op], functions: &[&str]) -> ByKey<'a> {
    let mut out = ByKey {
        keys: Vec::new(),
        lines: 0,
        orphan_completions: 0,
    };
    let mut ids: FastMap<&'a str, usize> = FastMap::default();
    let mut pending: InFlight<u64, usize> = InFlight::default();
    let mut add = |out: &mut ByKey<'a>, invoke: usize, complete: Option<usize>| {
        let name = history[invoke].key.as_deref().unwrap_or("");
        let id = *ids.entry(name).or_insert_with(|| {
            out.keys.push(KeyOps {
                name,
                ops: Vec::new(),
            });
            out.keys.len() - 1
        });
        let outcome = match complete.map(|c| history[c].kind) {
            Some(OpType::Ok) => Outcome::Ok,
            Some(OpType::Fail) => Outcome::Fail,
            _ => Outcome::Info,
        };
        out.keys[id].ops.push(Paired {
            invoke,
            complete,
            outcome,
        });
    };
    for (pos, op) in history.iter().enumerate() {
        let Process::Client(process) = op.process else {
            continue;
        };
        if !functions.contains(&op.f.as_str()) {
            continue;
        }
        out.lines += 1;
        if op.kind == OpType::Invoke {
            if let Some(earlier) = pending.invoke(process, pos) {
                add(&mut out, earlier, None);
            }
            continue;
        }
        match pending.complete(&process) {
            Some(invoke) => add(&mut out, invoke, Some(pos)),
            None => out.orphan_completions += 1,
        }
    }
    let mut unfinished: Vec<usize> = pending.unfinished().collect();
    unfinished.sort_unstable();
    for invoke in unfinished {
        add(&mut out, invoke, None);
    }
    for key in &mut out.keys {
        key.ops.sort_unstable_by_key(|p| p.invoke);
    }
    out
}

/// An op as evidence: its history indexes, times (seconds), node and the given value.
pub(crate) fn op_json(history: &[Op], op: &Paired, value: Value) -> Value {
    let invoke = &history[op.invoke];
    let complete = op.complete.map(|c| &history[c]);
    json!({
        "f": invoke.f,
        "invoke_index": invoke.index,
        "complete_index": complete.map(|c| c.index),
        "invoked_s": seconds(invoke.time_ns),
        "completed_s": complete.map(|c| seconds(c.time_ns)),
        "node": complete.and_then(|c| c.node.as_deref()),
        "value": value,
    })
}

/// Nanoseconds as seconds with millisecond precision, for people.
pub(crate) fn seconds(ns: u64) -> f64 {
    (ns / 1_000_000) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_pair_by_process_and_group_by_key() {
        let line = |s: &str| serde_json::from_str::<Op>(s).unwrap();
        let history = vec![
            line(r#"{"process":0,"type":"invoke","f":"incr","key":"a","value":1}"#),
            line(r#"{"process":1,"type":"invoke","f":"read","key":"b"}"#),
            line(r#"{"process":"nemesis","type":"invoke","f":"partition"}"#),
            line(r#"{"process":0,"type":"fail","f":"incr","key":"a","value":1}"#),
            line(r#"{"process":2,"type":"ok","f":"read","key":"b","value":3}"#),
            line(r#"{"process":3,"type":"invoke","f":"add","key":"a","value":1}"#),
        ];
        let k = by_key(&history, &["incr", "read"]);
        assert_eq!(k.lines, 4);
        assert_eq!(k.orphan_completions, 1);
        assert_eq!(k.keys.len(), 2);
        assert_eq!(k.keys[0].name, "a");
        let a = k.keys[0].ops[0];
        assert_eq!(
            (a.invoke, a.complete, a.outcome),
            (0, Some(3), Outcome::Fail)
        );
        let b = k.keys[1].ops[0];
        assert_eq!((b.invoke, b.complete, b.outcome), (1, None, Outcome::Info));
        assert_eq!(b.done(), usize::MAX);
    }
}

/// Hand-written histories for the tests of the keyed checkers: index = position, time =
/// 1 ms apart, each invoke completed by its own process's next completion.
#[cfg(test)]
pub(crate) mod test_history {
    use std::collections::HashMap;

    use faultline_history::{Op, OpType, Process};
    use serde_json::Value;

    /// A history being written the way the recorder writes it: index = position, lines
    /// `step_ns` apart (1 ms unless [`History::with_step_ns`] says otherwise).
    #[derive(Default)]
    pub(crate) struct History {
        pub(crate) ops: Vec<Op>,
        pending: HashMap<u64, Op>,
        step_ns: Option<u64>,
    }

    impl History {
        /// An empty history whose lines are `step_ns` apart.
        pub(crate) fn with_step_ns(step_ns: u64) -> History {
            History {
                step_ns: Some(step_ns),
                ..History::default()
            }
        }

        pub(crate) fn push(&mut self, mut op: Op) {
            op.index = self.ops.len() as u64;
            op.time_ns = op.index * self.step_ns.unwrap_or(1_000_000);
            self.ops.push(op);
        }

        /// Process `p` invokes `f` on `key` with `value`.
        pub(crate) fn invoke(&mut self, p: u64, f: &str, key: &str, value: Value) -> &mut Self {
            let op = Op::new(Process::Client(p), OpType::Invoke, f)
                .with_key(key)
                .with_value(value);
            self.pending.insert(p, op.clone());
            self.push(op);
            self
        }

        /// Process `p`'s pending op completes as `kind`, with `value` if given (else the
        /// invoke's).
        pub(crate) fn complete(&mut self, p: u64, kind: OpType, value: Option<Value>) -> &mut Self {
            let mut op = self
                .pending
                .remove(&p)
                .expect("pending invoke")
                .complete(kind);
            if let Some(v) = value {
                op.value = v;
            }
            self.push(op);
            self
        }

        /// Process `p`'s pending op completes `ok` with `extra` fields.
        pub(crate) fn complete_with(&mut self, p: u64, extra: (&str, Value)) -> &mut Self {
            let mut op = self
                .pending
                .remove(&p)
                .expect("pending invoke")
                .complete(OpType::Ok);
            op.extra.insert(extra.0.into(), extra.1);
            self.push(op);
            self
        }

        /// A whole op: invoke, then completion as `kind` (value of an ok: `result`).
        pub(crate) fn op(
            &mut self,
            p: u64,
            f: &str,
            key: &str,
            value: Value,
            kind: OpType,
            result: Option<Value>,
        ) -> &mut Self {
            self.invoke(p, f, key, value).complete(p, kind, result)
        }

        /// A whole ok read of `key` that returned `value`.
        pub(crate) fn read(&mut self, p: u64, key: &str, value: Value) -> &mut Self {
            self.op(p, "read", key, Value::Null, OpType::Ok, Some(value))
        }
    }
}
