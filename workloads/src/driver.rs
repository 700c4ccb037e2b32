//! What every workload shares: the client-process loop (rate, process replacement after
//! `info`, stopping), one recorded op, and the final reads.
//!
//! A workload supplies a [`Generator`]: given its [`Worker`] (the process number, its
//! random source, how many ops it has started), it performs one op (invoke, command,
//! completion, all recorded) and says how it ended. The loop does the rest:
//! `concurrency` processes, `rate` ops per second over all of them, and a process whose op
//! ended in `info` is replaced by a fresh number (Jepsen's rule: it may still have an op
//! in flight).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline_history::{Op, OpType, Process, Recorder};
use rand::rngs::StdRng;
use rand::SeedableRng;
use redis::{Cmd, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Outcome;
use crate::key_client::{BoxFuture, KeyClient};
use crate::workload::{Counters, FinalReads, Workload, WorkloadParams};

/// One workload's ops: what [`Driven`] needs to be a [`Workload`].
pub trait Generator: Send + Sync + 'static {
    /// Prepares the keys before the clients start; the default does nothing.
    fn setup<'a>(&'a self, _client: &'a dyn KeyClient) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Performs one op as `worker.process`: records its invoke, runs it, records its
    /// completion. (`worker.ops` counts the ops this worker started before this one.)
    ///
    /// # Returns
    /// The completion as recorded.
    fn op<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        recorder: &'a Recorder,
        worker: &'a mut Worker,
    ) -> BoxFuture<'a, Op>;

    /// `worker`'s next op as one command on the default route, not yet recorded or sent,
    /// so that it can go in a batch (`workload.pipeline` above 1). `None` (the default)
    /// when the op is not of that kind; [`Generator::op`] then performs it on its own.
    /// Returning `None` must leave `worker` as it found it.
    fn plan(&self, _worker: &mut Worker) -> Option<Planned> {
        None
    }

    /// The keys the final reads read, in order.
    fn final_keys(&self) -> Vec<String>;

    /// The command that reads `key` whole.
    fn read(&self, key: &str) -> Cmd;

    /// A read's reply as the completion's value.
    fn read_value(&self, reply: &Value) -> serde_json::Value;
}

/// One op planned by [`Generator::plan`]: a single command for the key of its invoke.
pub struct Planned {
    /// Its invoke, with its key, not yet recorded.
    pub invoke: Op,
    /// The one command it sends.
    pub cmd: Cmd,
    /// Its completion's value when the command succeeds.
    pub ok: OkValue,
}

/// The value an op's successful completion records.
pub enum OkValue {
    /// This one, whatever the reply (an add records its element).
    Fixed(serde_json::Value),
    /// Read from the reply, given the command that was sent.
    Reply(fn(&Cmd, &Value) -> serde_json::Value),
}

impl OkValue {
    /// The completion's value for `reply` to `cmd`.
    pub fn of(self, cmd: &Cmd, reply: &Value) -> serde_json::Value {
        match self {
            OkValue::Fixed(value) => value,
            OkValue::Reply(read) => read(cmd, reply),
        }
    }
}

/// One of the loop's `concurrency` workers, as a [`Generator`] sees it.
#[derive(Debug)]
pub struct Worker {
    /// Which worker, from 0; its processes are `index`, `index + concurrency`, ...
    pub index: usize,
    /// The process it runs as now (a fresh one after each `info`).
    pub process: u64,
    /// Ops it started before the current one (over all its processes).
    pub ops: u64,
    /// Its random source, seeded from the run's seed and `index`.
    pub rng: StdRng,
}

/// A workload made of a [`Generator`]: the client loop and final reads below.
pub struct Driven<G> {
    params: WorkloadParams,
    generator: Arc<G>,
    /// Final reads use process numbers past every worker's.
    next_process: AtomicU64,
}

impl<G: Generator> Driven<G> {
    pub(crate) fn with(params: WorkloadParams, generator: G) -> Driven<G> {
        Driven {
            next_process: AtomicU64::new(params.concurrency as u64),
            params,
            generator: Arc::new(generator),
        }
    }

    /// The generator, for the workload's own accessors.
    pub(crate) fn generator(&self) -> &G {
        &self.generator
    }
}

impl<G: Generator> Workload for Driven<G> {
    fn setup<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        _recorder: &'a Recorder,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.generator.setup(client).await;
            Ok(())
        })
    }

    fn run<'a>(
        &'a self,
        client: Arc<dyn KeyClient>,
        recorder: Recorder,
        stop: CancellationToken,
        counters: Arc<Counters>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let generator = self.generator.clone();
            let next = drive(generator, &self.params, client, recorder, stop, counters).await;
            self.next_process.fetch_max(next, Ordering::Relaxed);
        })
    }

    fn final_reads<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        recorder: &'a Recorder,
        budget: Duration,
    ) -> BoxFuture<'a, FinalReads> {
        Box::pin(async move {
            let keys = self.generator.final_keys();
            let g = &self.generator;
            let read = |key: &str| g.read(key);
            let value = |reply: &Value| g.read_value(reply);
            final_reads(
                &keys,
                client,
                recorder,
                budget,
                &self.next_process,
                read,
                value,
            )
            .await
        })
    }
}

/// Runs `params.concurrency` client processes of `generator` until `stop` is cancelled.
/// An op in flight when `stop` fires completes (within the op time-out), so no invoke is
/// left without its completion. Returns the first process number no worker used, for the
/// final reads.
///
/// Each process is a task of its own, unless `params.pipeline` groups them N to a task:
/// then each round a task plans one op per process ([`Generator::plan`]), records their
/// invokes, sends them as one batch ([`KeyClient::execute_batch`]: one pipeline per node)
/// and records each completion (see [`batch_round`]). Either way a process has one op at
/// a time, and every op its own invoke and completion. With a rate, each task's turns
/// come every `concurrency / rate` seconds.
async fn drive<G: Generator>(
    generator: Arc<G>,
    params: &WorkloadParams,
    client: Arc<dyn KeyClient>,
    recorder: Recorder,
    stop: CancellationToken,
    counters: Arc<Counters>,
) -> u64 {
    let n = params.concurrency.max(1);
    let per_task = params.pipeline.clamp(1, n);
    let task_count = n.div_ceil(per_task);
    let interval = params.rate.map(|r| Duration::from_secs_f64(n as f64 / r));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..task_count {
        let (generator, client, recorder, stop, counters) = (
            generator.clone(),
            client.clone(),
            recorder.clone(),
            stop.clone(),
            counters.clone(),
        );
        let mut workers: Vec<Worker> = (task * per_task..((task + 1) * per_task).min(n))
            .map(|index| Worker::new(index, params.seed))
            .collect();
        tasks.spawn(async move {
            let mut pace = Pace::new(interval, task, task_count);
            while pace.wait(&stop).await {
                if let [me] = workers.as_mut_slice() {
                    let done = generator.op(client.as_ref(), &recorder, me).await;
                    me.finished(&done, n, &counters);
                } else {
                    let on = (generator.as_ref(), client.as_ref(), &recorder, &*counters);
                    batch_round(on, &mut workers, n).await;
                }
            }
            workers.iter().map(|w| w.process).max().unwrap_or(0)
        });
    }
    first_free(tasks, n).await
}

/// One round of a task of `workers` (out of `n` in all): their planned ops go as one
/// batch; ops the generator does not plan run on their own beside it.
async fn batch_round<G: Generator>(
    (generator, client, recorder, counters): (&G, &dyn KeyClient, &Recorder, &Counters),
    workers: &mut [Worker],
    n: usize,
) {
    let mut batch = Vec::with_capacity(workers.len());
    let mut alone = Vec::new();
    for worker in workers.iter_mut() {
        match generator.plan(worker) {
            Some(p) => batch.push((worker, recorder.record(p.invoke), p.cmd, p.ok)),
            None => alone.push(worker),
        }
    }
    let sent: Vec<(&[u8], &Cmd)> = batch
        .iter()
        .map(|(_, invoke, cmd, _)| (invoke.key.as_deref().unwrap_or_default().as_bytes(), cmd))
        .collect();
    let on_their_own = alone.into_iter().map(|worker| async move {
        let done = generator.op(client, recorder, worker).await;
        worker.finished(&done, n, counters);
    });
    let (outcomes, _) = tokio::join!(
        client.execute_batch(&sent),
        futures_util::future::join_all(on_their_own)
    );
    drop(sent);
    for ((worker, invoke, cmd, ok), outcome) in batch.into_iter().zip(outcomes) {
        let done = recorder.record(outcome.completion(&invoke, |r| ok.of(&cmd, r)));
        worker.finished(&done, n, counters);
    }
}

/// The first process number that none of `n` workers used, once each task of `tasks` has
/// returned the last process it ran as.
async fn first_free(mut tasks: tokio::task::JoinSet<u64>, n: usize) -> u64 {
    let mut next_free = n as u64;
    while let Some(last) = tasks.join_next().await {
        if let Ok(last) = last {
            next_free = next_free.max(last + 1);
        }
    }
    next_free
}

impl Worker {
    /// Worker `index` as it starts: process `index`, its random source seeded from `seed`.
    fn new(index: usize, seed: u64) -> Worker {
        Worker {
            index,
            process: index as u64,
            ops: 0,
            rng: StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// Counts the op that ended as `done`; after an `info`, the worker goes on as a fresh
    /// process (`n` further on: the numbers of `n` workers never meet).
    fn finished(&mut self, done: &Op, n: usize, counters: &Counters) {
        self.ops += 1;
        counters.count(done.kind);
        if done.kind == OpType::Info {
            self.process += n as u64;
        }
    }
}

/// The pace of one client loop: flat out without a rate; with one, a turn every
/// `interval`, loop `i` of `of` starting `i / of` of an interval in.
struct Pace {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pace {
    fn new(interval: Option<Duration>, i: usize, of: usize) -> Pace {
        let start = Instant::now();
        Pace {
            interval,
            next: interval.map(|every| start + every.mul_f64(i as f64 / of as f64)),
        }
    }

    /// Waits for the next turn; false once `stop` is cancelled.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        if stop.is_cancelled() {
            return false;
        }
        if let (Some(at), Some(every)) = (self.next.as_mut(), self.interval) {
            tokio::select! {
                _ = tokio::time::sleep_until(*at) => {}
                _ = stop.cancelled() => return false,
            }
            *at += every;
            let now = Instant::now();
            if *at + every < now {
                *at = now; // fell behind: do not burst to catch up
            }
        }
        true
    }
}

/// One op whose outcome is its command's: records `invoke` (as `process`), sends `cmd` for
/// `key`, and records the completion, whose value on success is `ok_value` of the reply.
pub(crate) async fn simple_op(
    client: &dyn KeyClient,
    recorder: &Recorder,
    invoke: Op,
    cmd: &Cmd,
    ok_value: impl FnOnce(&Value) -> serde_json::Value,
) -> Op {
    let invoke = recorder.record(invoke);
    let key = invoke.key.clone().unwrap_or_default();
    let outcome = client.execute(key.as_bytes(), cmd).await;
    recorder.record(outcome.completion(&invoke, ok_value))
}

/// An invoke line of a client process.
pub(crate) fn invoke(process: u64, f: &str, key: &str) -> Op {
    Op::new(Process::Client(process), OpType::Invoke, f).with_key(key)
}

/// Reads every key of `keys` once with `read` (an op `f: "read"`), retrying a key until a
/// read succeeds or `budget` runs out; every attempt is an op in the history. Processes
/// are numbered from `next_process` on (a new one after an `info`).
async fn final_reads(
    keys: &[String],
    client: &dyn KeyClient,
    recorder: &Recorder,
    budget: Duration,
    next_process: &AtomicU64,
    read: impl Fn(&str) -> Cmd,
    ok_value: impl Fn(&Value) -> serde_json::Value,
) -> FinalReads {
    let deadline = Instant::now() + budget;
    let mut result = FinalReads::default();
    let mut process = next_process.fetch_add(1, Ordering::Relaxed);
    for key in keys {
        let mut backoff = Duration::from_millis(50);
        loop {
            let cmd = read(key);
            let done = simple_op(
                client,
                recorder,
                invoke(process, "read", key),
                &cmd,
                &ok_value,
            )
            .await;
            if done.kind == OpType::Ok {
                result.read += 1;
                break;
            }
            if done.kind == OpType::Info {
                process = next_process.fetch_add(1, Ordering::Relaxed);
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

/// `GET key`.
pub(crate) fn get(key: &str) -> Cmd {
    let mut c = redis::cmd("GET");
    c.arg(key);
    c
}

/// A reply that should be an integer (a `GET` of a number, an `INCRBY` result), as JSON:
/// the integer, `null` for a missing key, the text for anything else (a checker then says
/// what it could not read).
pub(crate) fn integer(reply: &Value) -> serde_json::Value {
    match reply {
        Value::Nil => serde_json::Value::Null,
        Value::Int(i) => (*i).into(),
        Value::BulkString(b) => text_or_integer(&String::from_utf8_lossy(b)),
        Value::SimpleString(s) => text_or_integer(s),
        other => format!("{other:?}").into(),
    }
}

fn text_or_integer(text: &str) -> serde_json::Value {
    text.parse::<i64>()
        .map(serde_json::Value::from)
        .unwrap_or_else(|_| text.into())
}

/// A list reply (`LRANGE`) as a JSON array, in order, integers where the elements are
/// integers.
pub(crate) fn list(reply: &Value) -> serde_json::Value {
    let items: &[Value] = match reply {
        Value::Array(v) => v,
        _ => &[],
    };
    items.iter().map(integer).collect()
}

/// `n` keys named `<prefix><i>{tag}`, key `i` at slot `i * 16384 / n`: spread evenly over
/// the slot space, so every shard holds some.
pub(crate) fn spread_keys(prefix: &str, n: usize) -> Vec<String> {
    let n = n.max(1);
    (0..n)
        .map(|i| {
            let slot = (i * usize::from(crate::slots::SLOTS) / n) as u16;
            format!("{prefix}{i}{{{}}}", crate::slots::tag_for_slot(slot))
        })
        .collect()
}

/// Whether an outcome is the server refusing an `EVALSHA` because it does not have the
/// script (a node that never loaded it: a promoted replica, a restarted node).
pub(crate) fn is_noscript(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Fail { error, .. } if error.starts_with("NOSCRIPT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::key_slot;
    use serde_json::json;

    #[test]
    fn replies_become_integers_lists_and_null() {
        assert_eq!(integer(&Value::Nil), json!(null));
        assert_eq!(integer(&Value::Int(7)), json!(7));
        assert_eq!(integer(&Value::BulkString(b"-12".to_vec())), json!(-12));
        assert_eq!(integer(&Value::BulkString(b"x".to_vec())), json!("x"));
        let reply = Value::Array(vec![
            Value::BulkString(b"3".to_vec()),
            Value::BulkString(b"1".to_vec()),
        ]);
        assert_eq!(list(&reply), json!([3, 1]), "order kept");
    }

    #[test]
    fn spread_keys_cover_the_slot_space() {
        let keys = spread_keys("r", 4);
        let slots: Vec<u16> = keys.iter().map(|k| key_slot(k.as_bytes())).collect();
        assert_eq!(slots, vec![0, 4096, 8192, 12288]);
        assert!(keys[1].starts_with("r1{"));
    }
}
