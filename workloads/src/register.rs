//! The register workload: reads, writes and compare-and-set on a few keys, each key one
//! register, for the `linearizable` checker (Knossos' cas-register, per key).
//!
//! Ops (`history.jsonl`, `key` = the register): `write` SETs a value unique to the run
//! (invoke and ok value: the integer); `read` GETs (ok value: the integer, or `null` when
//! the key does not exist); `cas` compares and sets through a Lua script (invoke value
//! `[expected, new]`; ok: it swapped; fail: the comparison failed, nothing changed). The
//! script runs by `EVALSHA`; a node that does not have it (a promoted replica, a restarted
//! node) answers `NOSCRIPT` and the op is sent again as `EVAL`, which also loads it there.
//! As everywhere, an error reply is `fail` and a time-out or broken connection after
//! sending is `info`. After the run every key is read once (retried).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;

use faultline_history::{Op, OpType, Recorder};
use rand::Rng;
use redis::{Cmd, Value};

use crate::client::Outcome;
use crate::driver::{self, Driven, Generator, Worker};
use crate::key_client::{BoxFuture, KeyClient};
use crate::workload::WorkloadParams;

/// Sets `KEYS[1]` to `ARGV[2]` if it holds `ARGV[1]`; 1 if it did, 0 if not. Redis runs a
/// script atomically, so the compare and the set see no other command in between.
pub const CAS_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";

/// No value seen yet for a key (values written are positive).
const NONE: i64 = 0;

/// The register workload for one run.
pub type RegisterWorkload = Driven<Registers>;

/// The register workload's keys and the state of its generator, shared by the client
/// processes.
pub struct Registers {
    keys: Vec<String>,
    /// The next value to write: unique in the run, from 1.
    next_value: AtomicU64,
    /// Per key, the last value a client saw there (read or written), as the `expected` of
    /// the next cas on it; [`NONE`] before any.
    last_seen: Vec<AtomicI64>,
    /// The script's SHA1, as `SCRIPT LOAD` answered at setup.
    sha: OnceLock<String>,
}

impl RegisterWorkload {
    /// Builds the keys for `params` (`keys` registers spread over the slot space).
    pub fn new(params: WorkloadParams) -> RegisterWorkload {
        let keys = driver::spread_keys(&format!("{}r", params.key_prefix), params.keys);
        let registers = Registers {
            last_seen: keys.iter().map(|_| AtomicI64::new(NONE)).collect(),
            keys,
            next_value: AtomicU64::new(1),
            sha: OnceLock::new(),
        };
        Driven::with(params, registers)
    }

    /// The keys, in order.
    pub fn keys(&self) -> &[String] {
        &self.generator().keys
    }
}

impl Registers {
    /// Sends the cas script for `key`: `EVALSHA` when the SHA is known, `EVAL` when it is
    /// not or the node answered `NOSCRIPT` (the redirects of both attempts kept).
    async fn cas(&self, client: &dyn KeyClient, key: &str, expected: i64, new: i64) -> Outcome {
        let call = |verb: &str, script: &str| {
            let mut c = redis::cmd(verb);
            c.arg(script).arg(1).arg(key).arg(expected).arg(new);
            c
        };
        let Some(sha) = self.sha.get() else {
            return client
                .execute(key.as_bytes(), &call("EVAL", CAS_SCRIPT))
                .await;
        };
        let first = client.execute(key.as_bytes(), &call("EVALSHA", sha)).await;
        if !driver::is_noscript(&first) {
            return first;
        }
        let earlier = redirects(&first);
        let mut second = client
            .execute(key.as_bytes(), &call("EVAL", CAS_SCRIPT))
            .await;
        let hops = match &mut second {
            Outcome::Ok { redirects, .. }
            | Outcome::Fail { redirects, .. }
            | Outcome::Info { redirects, .. } => redirects,
        };
        hops.splice(0..0, earlier);
        second
    }

    fn seen(&self, k: usize, value: &serde_json::Value) {
        if let Some(v) = value.as_i64() {
            self.last_seen[k].store(v, Ordering::Relaxed);
        }
    }
}

fn redirects(outcome: &Outcome) -> Vec<faultline_history::Redirect> {
    match outcome {
        Outcome::Ok { redirects, .. }
        | Outcome::Fail { redirects, .. }
        | Outcome::Info { redirects, .. } => redirects.clone(),
    }
}

impl Generator for Registers {
    fn setup<'a>(&'a self, client: &'a dyn KeyClient) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Load the script on the node of every key (so every primary has it); the
            // answer is its SHA1. Where none answers, every cas is sent as EVAL.
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(CAS_SCRIPT);
            for key in &self.keys {
                if let Outcome::Ok {
                    value: Value::BulkString(sha),
                    ..
                } = client.execute(key.as_bytes(), &cmd).await
                {
                    let _ = self.sha.set(String::from_utf8_lossy(&sha).into_owned());
                }
            }
        })
    }

    fn final_keys(&self) -> Vec<String> {
        self.keys.clone()
    }

    fn read(&self, key: &str) -> Cmd {
        driver::get(key)
    }

    fn read_value(&self, reply: &Value) -> serde_json::Value {
        driver::integer(reply)
    }

    fn op<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        recorder: &'a Recorder,
        worker: &'a mut Worker,
    ) -> BoxFuture<'a, Op> {
        let (process, rng) = (worker.process, &mut worker.rng);
        let k = rng.random_range(0..self.keys.len());
        let expected = self.last_seen[k].load(Ordering::Relaxed);
        // Reads, writes and cas in equal shares; a cas needs a value to expect.
        let choice = match rng.random_range(0..3u8) {
            2 if expected == NONE => 0,
            c => c,
        };
        Box::pin(async move {
            let key = self.keys[k].as_str();
            match choice {
                0 => {
                    let inv = driver::invoke(process, "read", key);
                    let get = driver::get(key);
                    let done =
                        driver::simple_op(client, recorder, inv, &get, driver::integer).await;
                    if done.kind == OpType::Ok {
                        self.seen(k, &done.value);
                    }
                    done
                }
                1 => {
                    let value = self.next_value.fetch_add(1, Ordering::Relaxed) as i64;
                    let mut cmd: Cmd = redis::cmd("SET");
                    cmd.arg(key).arg(value);
                    let inv = driver::invoke(process, "write", key).with_value(value);
                    let done =
                        driver::simple_op(client, recorder, inv, &cmd, |_| value.into()).await;
                    if done.kind == OpType::Ok {
                        self.seen(k, &done.value);
                    }
                    done
                }
                _ => {
                    let new = self.next_value.fetch_add(1, Ordering::Relaxed) as i64;
                    let pair = serde_json::json!([expected, new]);
                    let inv = recorder
                        .record(driver::invoke(process, "cas", key).with_value(pair.clone()));
                    let outcome = self.cas(client, key, expected, new).await;
                    let swapped = matches!(
                        &outcome,
                        Outcome::Ok {
                            value: Value::Int(1),
                            ..
                        }
                    );
                    let mut done = outcome.completion(&inv, |_| pair.clone());
                    if done.kind == OpType::Ok && !swapped {
                        // The script ran and found another value: no effect.
                        done.kind = OpType::Fail;
                        done.error =
                            Some("cas: the register did not hold the expected value".into());
                    }
                    let done = recorder.record(done);
                    if done.kind == OpType::Ok {
                        self.last_seen[k].store(new, Ordering::Relaxed);
                    }
                    done
                }
            }
        })
    }
}
