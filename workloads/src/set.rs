//! The set workload: clients add unique integers to a few set keys spread over the whole
//! slot space; at the end every key is read once. An acknowledged add missing from the
//! final read is a lost write (the `lost-writes` checker decides).

use std::sync::atomic::{AtomicU64, Ordering};

use faultline_history::{Op, OpType, Process, Recorder};
use rand::rngs::StdRng;
use rand::Rng;
use redis::Value;

use crate::driver::{self, Driven, Generator, OkValue, Planned, Worker};
use crate::key_client::{BoxFuture, KeyClient, Route};
use crate::workload::{ClientMix, WorkloadParams};

/// The set workload for one run: [`SetOps`] in the shared client loop.
pub type SetWorkload = Driven<SetOps>;

/// The set workload's keys and the state its client processes share.
pub struct SetOps {
    /// `keys` set keys spread over the slot space.
    keys: Vec<String>,
    /// The next element to add: unique in the run, from 0.
    next_element: AtomicU64,
    /// The client mix: who reads, how they connect, where they start.
    mix: ClientMix,
    /// The first `readers` workers read; the rest add.
    readers: usize,
}

impl SetWorkload {
    /// Builds the key set for `params`.
    pub fn new(params: WorkloadParams) -> SetWorkload {
        let ops = SetOps {
            keys: driver::spread_keys(&format!("{}s", params.key_prefix), params.keys),
            next_element: AtomicU64::new(0),
            readers: params.mix.reader_count(params.concurrency),
            mix: params.mix.clone(),
        };
        Driven::with(params, ops)
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[String] {
        &self.generator().keys
    }
}

impl SetOps {
    /// How `worker`'s next op reaches the servers, under the client mix.
    fn route(&self, worker: &mut Worker) -> Route {
        let mix = &self.mix;
        Route {
            session: mix.fresh_connection_every.map(|_| worker.index as u64),
            fresh: mix
                .fresh_connection_every
                .is_some_and(|every| worker.ops.is_multiple_of(every.get())),
            start: mix
                .random_start_node
                .then(|| worker.rng.random_range(0..usize::from(u16::MAX))),
        }
    }
}

impl Generator for SetOps {
    fn final_keys(&self) -> Vec<String> {
        self.keys.clone()
    }

    /// An op on the default route, as [`SetOps::op`] would make it (none under a client
    /// mix that routes: those ops go alone).
    fn plan(&self, worker: &mut Worker) -> Option<Planned> {
        if self.mix.fresh_connection_every.is_some() || self.mix.random_start_node {
            return None;
        }
        let key = self.keys[worker.rng.random_range(0..self.keys.len())].as_str();
        let (invoke, cmd, ok) = self.draw(key, worker);
        Some(Planned { invoke, cmd, ok })
    }

    fn read(&self, key: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(key);
        cmd
    }

    fn read_value(&self, reply: &Value) -> serde_json::Value {
        elements(reply)
    }

    /// An adder's op is `add` of a run-unique element (`SADD`); a reader's is `smembers`
    /// or `sismember` (see [`read_op`]). The invoke records the route when it is not the
    /// default one.
    fn op<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        recorder: &'a Recorder,
        worker: &'a mut Worker,
    ) -> BoxFuture<'a, Op> {
        let key = self.keys[worker.rng.random_range(0..self.keys.len())].as_str();
        let route = self.route(worker);
        let (mut op, cmd, ok) = self.draw(key, worker);
        if let Some(r) = route.to_json() {
            op.extra.insert("route".into(), r);
        }
        Box::pin(async move {
            let invoke = recorder.record(op);
            let outcome = client.execute_routed(key.as_bytes(), &cmd, route).await;
            recorder.record(outcome.completion(&invoke, |reply| ok.of(&cmd, reply)))
        })
    }
}

impl SetOps {
    /// `worker`'s next op on `key`, not yet recorded or sent: an adder's `add` of a
    /// run-unique element (`SADD`, its completion records the element), a reader's read
    /// (see [`read_op`], its completion records what the reply holds).
    fn draw(&self, key: &str, worker: &mut Worker) -> (Op, redis::Cmd, OkValue) {
        if worker.index < self.readers {
            let (op, cmd, _) = read_op(key, worker.process, &mut worker.rng, &self.next_element);
            return (op, cmd, OkValue::Reply(read_value));
        }
        let element = self.next_element.fetch_add(1, Ordering::Relaxed);
        let mut cmd = redis::cmd("SADD");
        cmd.arg(key).arg(element);
        let op = driver::invoke(worker.process, "add", key).with_value(element);
        (op, cmd, OkValue::Fixed(element.into()))
    }
}

/// A reader's op: `smembers` of the key, or `sismember` of an element drawn from those
/// added so far (half each); the element, for `sismember`.
fn read_op(
    key: &str,
    process: u64,
    rng: &mut StdRng,
    next_element: &AtomicU64,
) -> (Op, redis::Cmd, Option<u64>) {
    let added = next_element.load(Ordering::Relaxed);
    if added > 0 && rng.random_bool(0.5) {
        let element = rng.random_range(0..added);
        let mut c = redis::cmd("SISMEMBER");
        c.arg(key).arg(element);
        let op = Op::new(Process::Client(process), OpType::Invoke, "sismember")
            .with_key(key)
            .with_value(element);
        (op, c, Some(element))
    } else {
        let mut c = redis::cmd("SMEMBERS");
        c.arg(key);
        let op = Op::new(Process::Client(process), OpType::Invoke, "smembers").with_key(key);
        (op, c, None)
    }
}

/// A reader's completed value: `[element, member?]` for `sismember`, the members for
/// `smembers`.
fn read_value(cmd: &redis::Cmd, reply: &Value) -> serde_json::Value {
    let mut args = cmd.args_iter();
    let name = match args.next() {
        Some(redis::Arg::Simple(b)) => b.to_ascii_uppercase(),
        _ => Vec::new(),
    };
    if name == b"SISMEMBER" {
        let element = match args.nth(1) {
            Some(redis::Arg::Simple(b)) => String::from_utf8_lossy(b)
                .parse::<u64>()
                .map(serde_json::Value::from)
                .unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        };
        let member = matches!(reply, Value::Int(1) | Value::Boolean(true));
        return serde_json::json!([element, member]);
    }
    elements(reply)
}

/// A set reply as a JSON array, integers where the members are integers.
fn elements(reply: &Value) -> serde_json::Value {
    let members: &[Value] = match reply {
        Value::Array(v) | Value::Set(v) => v,
        _ => &[],
    };
    let mut out: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            let text = match m {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                Value::Int(i) => return serde_json::Value::from(*i),
                other => format!("{other:?}"),
            };
            text.parse::<u64>()
                .map(serde_json::Value::from)
                .unwrap_or(serde_json::Value::String(text))
        })
        .collect();
    out.sort_by_key(|v| v.as_u64().unwrap_or(u64::MAX));
    serde_json::Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::key_slot;

    #[test]
    fn keys_spread_over_the_slot_space() {
        let w = SetWorkload::new(WorkloadParams {
            keys: 8,
            concurrency: 1,
            rate: None,
            seed: 0,
            ..Default::default()
        });
        let slots: Vec<u16> = w.keys().iter().map(|k| key_slot(k.as_bytes())).collect();
        assert_eq!(slots, vec![0, 2048, 4096, 6144, 8192, 10240, 12288, 14336]);
    }

    #[test]
    fn a_key_prefix_keeps_the_keys_on_their_slots() {
        let w = SetWorkload::new(WorkloadParams {
            keys: 4,
            concurrency: 1,
            rate: None,
            seed: 0,
            key_prefix: "fl-abc123:".into(),
            ..Default::default()
        });
        assert!(w.keys().iter().all(|k| k.starts_with("fl-abc123:s")));
        let slots: Vec<u16> = w.keys().iter().map(|k| key_slot(k.as_bytes())).collect();
        assert_eq!(slots, vec![0, 4096, 8192, 12288]);
    }

    #[test]
    fn set_reply_becomes_sorted_integers() {
        let reply = Value::Array(vec![
            Value::BulkString(b"12".to_vec()),
            Value::BulkString(b"3".to_vec()),
        ]);
        assert_eq!(elements(&reply), serde_json::json!([3, 12]));
    }
}
