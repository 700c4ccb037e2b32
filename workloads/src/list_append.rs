//! The list-append workload: clients append unique integers to lists (`RPUSH`) and read
//! them whole (`LRANGE key 0 -1`), for the `list-append` checker (after Elle's list-append).
//!
//! Ops (`history.jsonl`, `key` = the list): `append` (invoke and ok value: the element,
//! unique in the run); `read` (ok value: the list, in order). An error reply is `fail`; a
//! time-out or broken connection after sending is `info`.
//!
//! Lists only grow, so each of the `keys` key slots holds a run of lists: after
//! [`MAX_APPENDS_PER_LIST`] appends its key moves on to a new list in the same hash slot
//! (`l3.0{tag}`, `l3.1{tag}`, ...), keeping every read short. After the run every list that
//! was appended to is read once (retried).

use std::sync::atomic::{AtomicU64, Ordering};

use faultline_history::{Op, Recorder};
use rand::Rng;

use crate::driver::{self, Driven, Generator, Worker};
use crate::key_client::{BoxFuture, KeyClient};
use crate::workload::WorkloadParams;

/// Appends one list takes before its key slot moves on to the next list.
pub const MAX_APPENDS_PER_LIST: u64 = 256;

/// The list-append workload for one run.
pub type ListAppendWorkload = Driven<Lists>;

/// The list-append workload's lists and ops.
pub struct Lists {
    /// Per key slot, the prefix of its lists' names (`l3.`) and the hash tag (`{1a2}`).
    slots: Vec<(String, String)>,
    /// Per key slot, appends invoked so far: list `n / MAX_APPENDS_PER_LIST` takes the
    /// `n`th.
    appends: Vec<AtomicU64>,
    /// The next element: unique in the run, from 1.
    next_element: AtomicU64,
}

impl Lists {
    fn key(&self, slot: usize, list: u64) -> String {
        let (prefix, tag) = &self.slots[slot];
        format!("{prefix}{list}{tag}")
    }

    /// Every list appended to so far (and each slot's current one), slot by slot.
    fn keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        for slot in 0..self.slots.len() {
            let n = self.appends[slot].load(Ordering::Relaxed);
            for list in 0..=n.saturating_sub(1) / MAX_APPENDS_PER_LIST {
                out.push(self.key(slot, list));
            }
        }
        out
    }
}

impl ListAppendWorkload {
    /// Builds the key slots for `params` (`keys` of them, spread over the slot space).
    pub fn new(params: WorkloadParams) -> ListAppendWorkload {
        let slots = driver::spread_keys(&format!("{}l", params.key_prefix), params.keys)
            .into_iter()
            .map(|k| {
                let at = k.find('{').unwrap_or(k.len());
                (format!("{}.", &k[..at]), k[at..].to_string())
            })
            .collect::<Vec<_>>();
        let lists = Lists {
            appends: slots.iter().map(|_| AtomicU64::new(0)).collect(),
            slots,
            next_element: AtomicU64::new(1),
        };
        Driven::with(params, lists)
    }

    /// Every list appended to so far, and each key slot's current list.
    pub fn keys(&self) -> Vec<String> {
        self.generator().keys()
    }
}

impl Generator for Lists {
    fn final_keys(&self) -> Vec<String> {
        self.keys()
    }

    fn read(&self, key: &str) -> redis::Cmd {
        lrange(key)
    }

    fn read_value(&self, reply: &redis::Value) -> serde_json::Value {
        driver::list(reply)
    }

    fn op<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        recorder: &'a Recorder,
        worker: &'a mut Worker,
    ) -> BoxFuture<'a, Op> {
        let (process, rng) = (worker.process, &mut worker.rng);
        let slot = rng.random_range(0..self.slots.len());
        let append = rng.random_bool(0.5);
        Box::pin(async move {
            if !append {
                let list = self.appends[slot].load(Ordering::Relaxed) / MAX_APPENDS_PER_LIST;
                let key = self.key(slot, list);
                let inv = driver::invoke(process, "read", &key);
                return driver::simple_op(client, recorder, inv, &lrange(&key), driver::list).await;
            }
            let n = self.appends[slot].fetch_add(1, Ordering::Relaxed);
            let key = self.key(slot, n / MAX_APPENDS_PER_LIST);
            let element = self.next_element.fetch_add(1, Ordering::Relaxed);
            let mut cmd = redis::cmd("RPUSH");
            cmd.arg(&key).arg(element);
            let inv = driver::invoke(process, "append", &key).with_value(element);
            driver::simple_op(client, recorder, inv, &cmd, |_| element.into()).await
        })
    }
}

fn lrange(key: &str) -> redis::Cmd {
    let mut c = redis::cmd("LRANGE");
    c.arg(key).arg(0).arg(-1);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::key_slot;

    #[test]
    fn a_key_slot_moves_on_to_new_lists_in_the_same_hash_slot() {
        let w = ListAppendWorkload::new(WorkloadParams {
            keys: 2,
            concurrency: 1,
            rate: None,
            seed: 0,
            ..Default::default()
        });
        assert_eq!(w.keys().len(), 2, "each slot's first list");
        w.generator().appends[1].store(MAX_APPENDS_PER_LIST + 1, Ordering::Relaxed);
        let keys = w.keys();
        assert_eq!(keys.len(), 3, "{keys:?}");
        assert!(keys[1].starts_with("l1.0{") && keys[2].starts_with("l1.1{"));
        assert_eq!(key_slot(keys[1].as_bytes()), key_slot(keys[2].as_bytes()));
        assert_eq!(key_slot(keys[1].as_bytes()), 8192);
    }
}
