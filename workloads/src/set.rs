//! The set workload: clients add unique integers to a few set keys spread over the whole
//! slot space; at the end every key is read once. An acknowledged add missing from the
//! final read is a lost write (the `lost-writes` checker decides).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline_history::{Op, OpType, Process, Recorder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Outcome;
use crate::key_client::{BoxFuture, KeyClient, Route};
use crate::slots::{tag_for_slot, SLOTS};
use crate::workload::{Counters, FinalReads, Workload, WorkloadParams};

/// The set workload for one run.
pub struct SetWorkload {
    /// `keys` set keys spread over the slot space, `concurrency` adders, `rate` adds per
    /// second, `seed` for key choice.
    spec: WorkloadParams,
    keys: Arc<Vec<String>>,
    next_element: Arc<AtomicU64>,
    /// Final reads use process numbers past every worker's.
    next_process: AtomicU64,
}

impl SetWorkload {
    /// Builds the key set for `spec`.
    pub fn new(spec: WorkloadParams) -> SetWorkload {
        let keys = (0..spec.keys)
            .map(|i| {
                let slot = (i * usize::from(SLOTS) / spec.keys) as u16;
                format!("{}s{i}{{{}}}", spec.key_prefix, tag_for_slot(slot))
            })
            .collect();
        SetWorkload {
            next_process: AtomicU64::new(0),
            spec,
            keys: Arc::new(keys),
            next_element: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// Runs `concurrency` client processes until `stop` is cancelled. An op in flight when
    /// `stop` fires is allowed to complete (within the op time-out), so no invoke is left
    /// without its completion.
    async fn drive(
        &self,
        client: Arc<dyn KeyClient>,
        recorder: Recorder,
        stop: CancellationToken,
        counters: Arc<Counters>,
    ) {
        let n = self.spec.concurrency;
        self.next_process.store(n as u64, Ordering::Relaxed);
        let interval = self
            .spec
            .rate
            .map(|r| Duration::from_secs_f64(n as f64 / r));
        let mix = self.spec.mix.clone();
        let readers = mix.reader_count(n);
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..n {
            let mix = mix.clone();
            // The first `readers` workers read; the rest add.
            let reads = worker < readers;
            let client = client.clone();
            let recorder = recorder.clone();
            let stop = stop.clone();
            let counters = counters.clone();
            let keys = self.keys.clone();
            let next_element = self.next_element.clone();
            let mut rng = StdRng::seed_from_u64(
                self.spec.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            tasks.spawn(async move {
                let mut process = worker as u64;
                let mut ops: u64 = 0;
                let start = Instant::now();
                let mut next = interval.map(|i| start + i.mul_f64(worker as f64 / n as f64));
                while !stop.is_cancelled() {
                    if let (Some(at), Some(every)) = (next.as_mut(), interval) {
                        tokio::select! {
                            _ = tokio::time::sleep_until(*at) => {}
                            _ = stop.cancelled() => break,
                        }
                        *at += every;
                        let now = Instant::now();
                        if *at + every < now {
                            *at = now; // fell behind: do not burst to catch up
                        }
                    }
                    let key = &keys[rng.random_range(0..keys.len())];
                    let route = Route {
                        session: mix.fresh_connection_every.map(|_| worker as u64),
                        fresh: mix
                            .fresh_connection_every
                            .is_some_and(|every| ops.is_multiple_of(every.get())),
                        start: mix
                            .random_start_node
                            .then(|| rng.random_range(0..usize::from(u16::MAX))),
                    };
                    ops += 1;
                    let (op, cmd, element) = if reads {
                        read_op(key, process, &mut rng, &next_element)
                    } else {
                        let element = next_element.fetch_add(1, Ordering::Relaxed);
                        let mut c = redis::cmd("SADD");
                        c.arg(key).arg(element);
                        (
                            Op::new(Process::Client(process), OpType::Invoke, "add")
                                .with_key(key.as_str())
                                .with_value(element),
                            c,
                            Some(element),
                        )
                    };
                    let mut op = op;
                    if let Some(r) = route.to_json() {
                        op.extra.insert("route".into(), r);
                    }
                    let invoke = recorder.record(op);
                    let outcome = client.execute_routed(key.as_bytes(), &cmd, route).await;
                    let crashed = matches!(outcome, Outcome::Info { .. });
                    let done =
                        recorder.record(outcome.completion(&invoke, |reply| match element {
                            Some(e) if !reads => e.into(),
                            _ => read_value(&cmd, reply),
                        }));
                    counters.count(done.kind);
                    if crashed {
                        process += n as u64;
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Reads every key once, retrying a key until it reads successfully or `budget` runs
    /// out. Every attempt is an op in the history.
    async fn read_keys(
        &self,
        client: &dyn KeyClient,
        recorder: &Recorder,
        budget: Duration,
    ) -> FinalReads {
        let deadline = Instant::now() + budget;
        let mut result = FinalReads::default();
        let mut process = self.next_process.fetch_add(1, Ordering::Relaxed);
        for key in self.keys.iter() {
            let mut backoff = Duration::from_millis(50);
            loop {
                let invoke = recorder.record(
                    Op::new(Process::Client(process), OpType::Invoke, "read")
                        .with_key(key.as_str()),
                );
                let mut cmd = redis::cmd("SMEMBERS");
                cmd.arg(key);
                let outcome = client.execute(key.as_bytes(), &cmd).await;
                let crashed = matches!(outcome, Outcome::Info { .. });
                let done = recorder.record(outcome.completion(&invoke, elements));
                if done.kind == OpType::Ok {
                    result.read += 1;
                    break;
                }
                if crashed {
                    process = self.next_process.fetch_add(1, Ordering::Relaxed);
                }
                if Instant::now() + backoff >= deadline {
                    result.unread += 1;
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        result
    }
}

impl Workload for SetWorkload {
    fn checkers(&self) -> &'static [&'static str] {
        &["lost-writes"]
    }

    fn run<'a>(
        &'a self,
        client: Arc<dyn KeyClient>,
        recorder: Recorder,
        stop: CancellationToken,
        counters: Arc<Counters>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.drive(client, recorder, stop, counters))
    }

    fn final_reads<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        recorder: &'a Recorder,
        budget: Duration,
    ) -> BoxFuture<'a, FinalReads> {
        Box::pin(self.read_keys(client, recorder, budget))
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
