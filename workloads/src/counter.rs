//! The counter workload: clients increment a few counters by small positive amounts
//! (`INCRBY`) and read them (`GET`), for the `counter` checker (Jepsen's counter).
//!
//! Ops (`history.jsonl`, `key` = the counter): `incr` (invoke and ok value: the amount;
//! the ok completion also carries `after`, the counter's value `INCRBY` answered, which the
//! checker judges as a read); `read` (ok value: the integer, `null` when the key does not
//! exist yet, which counts as 0). An error reply is `fail` (the increment did not happen);
//! a time-out or broken connection after sending is `info` (it may have). After the run
//! every counter is read once (retried).

use faultline_history::{Op, OpType, Recorder};
use rand::Rng;

use crate::driver::{self, Driven, Generator, Worker};
use crate::key_client::{BoxFuture, KeyClient};
use crate::workload::WorkloadParams;

/// The largest amount one `incr` adds (amounts are 1 ..= this).
pub const MAX_INCREMENT: i64 = 5;

/// The counter workload for one run.
pub type CounterWorkload = Driven<CounterOps>;

/// The counter workload's keys and ops.
pub struct CounterOps {
    keys: Vec<String>,
}

impl CounterWorkload {
    /// Builds the keys for `params` (`keys` counters spread over the slot space).
    pub fn new(params: WorkloadParams) -> CounterWorkload {
        let keys = driver::spread_keys(&format!("{}c", params.key_prefix), params.keys);
        Driven::with(params, CounterOps { keys })
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[String] {
        &self.generator().keys
    }
}

impl Generator for CounterOps {
    fn final_keys(&self) -> Vec<String> {
        self.keys.clone()
    }

    fn read(&self, key: &str) -> redis::Cmd {
        driver::get(key)
    }

    fn read_value(&self, reply: &redis::Value) -> serde_json::Value {
        driver::integer(reply)
    }

    fn op<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        recorder: &'a Recorder,
        worker: &'a mut Worker,
    ) -> BoxFuture<'a, Op> {
        let (process, rng) = (worker.process, &mut worker.rng);
        let key = self.keys[rng.random_range(0..self.keys.len())].as_str();
        let amount = rng
            .random_bool(0.5)
            .then(|| rng.random_range(1..=MAX_INCREMENT));
        Box::pin(async move {
            let Some(amount) = amount else {
                let inv = driver::invoke(process, "read", key);
                return driver::simple_op(
                    client,
                    recorder,
                    inv,
                    &driver::get(key),
                    driver::integer,
                )
                .await;
            };
            let inv = recorder.record(driver::invoke(process, "incr", key).with_value(amount));
            let mut cmd = redis::cmd("INCRBY");
            cmd.arg(key).arg(amount);
            let outcome = client.execute(key.as_bytes(), &cmd).await;
            let mut after = serde_json::Value::Null;
            let mut done = outcome.completion(&inv, |reply| {
                after = driver::integer(reply);
                amount.into()
            });
            if done.kind == OpType::Ok {
                done.extra.insert("after".into(), after);
            }
            recorder.record(done)
        })
    }
}
