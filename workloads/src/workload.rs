//! What every workload is: Jepsen's shape (a workload bundles its client's ops, its
//! generator and the checker that judges them), as a trait the run drives without knowing
//! which workload it has.
//!
//! A run builds one through [`crate::registry::by_name`], then: [`Workload::setup`] once
//! the client reaches the cluster; [`Workload::run`] while the nemesis acts, until the stop
//! token; [`Workload::final_reads`] once the cluster has healed and agreed. Every op goes
//! into the run's [`Recorder`]; the checkers [`Workload::checkers`] names read it back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline_history::{OpType, Recorder};
use tokio_util::sync::CancellationToken;

use crate::key_client::{BoxFuture, KeyClient};

/// The parameters every workload is built from: the scenario's `workload:` section and the
/// run's seed. (The op time-out belongs to the client, the final-read budget to
/// [`Workload::final_reads`].)
#[derive(Debug, Clone)]
pub struct WorkloadParams {
    /// Number of keys; key `i` sits at slot `i * 16384 / keys`.
    pub keys: usize,
    /// Client processes at once.
    pub concurrency: usize,
    /// Target ops per second over all processes; `None` is flat out.
    pub rate: Option<f64>,
    /// Seed for every random choice of the generator (the run's seed).
    pub seed: u64,
    /// Starts every key the workload writes (empty on a cluster faultline started). On a
    /// live cluster it is the run's own (`fl-<run id>:`), so the run touches no key it did
    /// not write and can delete exactly its own keys at the end; slots come from the
    /// keys' hash tags, so the keys still spread over the slot space.
    pub key_prefix: String,
}

/// A workload for one run: what clients do while faults happen, and how the run ends.
pub trait Workload: Send + Sync {
    /// The checkers (by their registry names in `faultline-checkers`) that judge this
    /// workload's history.
    fn checkers(&self) -> &'static [&'static str];

    /// Prepares the keys before the clients start (loads initial data, for instance).
    /// Ops it records are part of the history. The default does nothing.
    ///
    /// # Errors
    /// The cluster refused what the workload cannot start without.
    fn setup<'a>(
        &'a self,
        _client: &'a dyn KeyClient,
        _recorder: &'a Recorder,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Drives the client processes until `stop` is cancelled, recording every op and
    /// counting completions in `counters`. An op in flight when `stop` fires is allowed to
    /// complete (within the op time-out), so no invoke is left without its completion.
    fn run<'a>(
        &'a self,
        client: Arc<dyn KeyClient>,
        recorder: Recorder,
        stop: CancellationToken,
        counters: Arc<Counters>,
    ) -> BoxFuture<'a, ()>;

    /// The reads after the cluster has healed and agreed, retried within `budget`; every
    /// attempt is an op in the history.
    fn final_reads<'a>(
        &'a self,
        client: &'a dyn KeyClient,
        recorder: &'a Recorder,
        budget: Duration,
    ) -> BoxFuture<'a, FinalReads>;
}

/// Live op counts, read by the progress display.
#[derive(Debug, Default)]
pub struct Counters {
    /// Ops that completed `ok`.
    pub ok: AtomicU64,
    /// Ops that completed `fail`.
    pub fail: AtomicU64,
    /// Ops that completed `info`.
    pub info: AtomicU64,
}

impl Counters {
    /// Counts one completion (an invoke counts nothing).
    pub fn count(&self, kind: OpType) {
        let c = match kind {
            OpType::Ok => &self.ok,
            OpType::Fail => &self.fail,
            OpType::Info => &self.info,
            OpType::Invoke => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `(ok, fail, info)` right now.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.fail.load(Ordering::Relaxed),
            self.info.load(Ordering::Relaxed),
        )
    }
}

/// How the final reads went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FinalReads {
    /// Keys read successfully.
    pub read: usize,
    /// Keys that never gave a successful read before the deadline.
    pub unread: usize,
}
