//! What every workload is: Jepsen's shape (a workload bundles its client's ops, its
//! generator and the checker that judges them), as a trait the run drives without knowing
//! which workload it has.
//!
//! A run builds one through [`crate::registry::by_name`], then: [`Workload::setup`] once
//! the client reaches the cluster; [`Workload::run`] while the nemesis acts, until the stop
//! token; [`Workload::final_reads`] once the cluster has healed and agreed. Every op goes
//! into the run's [`Recorder`]; the checkers its registry entry names
//! ([`crate::registry::Entry::checkers`]) read it back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faultline_history::{OpType, Recorder};
use tokio_util::sync::CancellationToken;

use crate::key_client::{BoxFuture, KeyClient};

/// The parameters every workload is built from: the scenario's `workload:` section and the
/// run's seed. (The op time-out belongs to the client, the final-read budget to
/// [`Workload::final_reads`].)
#[derive(Debug, Clone, Default)]
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
    /// Which clients read, how they connect, where they start (the default: every client
    /// writes over the shared connections, starting where it last learned to go).
    pub mix: ClientMix,
    /// Processes per client task whose ops go out together, one pipeline per node
    /// (`workload.pipeline`); 1 runs every process as a task of its own.
    pub pipeline: usize,
}

/// The client mix (the scenario's `workload: mix:`): Jepsen mixes client kinds because
/// writers alone are held by a write pause, and a shared connection is held with them.
///
/// ```yaml
/// workload:
///   mix:
///     readers: 0.5                # share of client processes that read (SMEMBERS / SISMEMBER)
///     fresh_connection_every: 1   # each process opens its connections anew every N ops
///     random_start_node: true     # each op starts at a random node
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMix {
    /// Share of the client processes, in [0, 1], that read during the run instead of
    /// adding; their ops are `smembers` and `sismember` in the history (the final reads
    /// stay `read`).
    #[serde(default, skip_serializing_if = "Share::is_zero")]
    pub readers: Share,
    /// With `N`, every process has connections of its own and opens them anew on every
    /// `N`th op (1: every op); absent, all processes share one multiplexed connection per
    /// node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_connection_every: Option<std::num::NonZeroU64>,
    /// Every op starts at a node drawn at random rather than the one the client last
    /// learned of (its redirects are followed and recorded as ever).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub random_start_node: bool,
}

impl ClientMix {
    /// Whether this is the plain mix (all writers, shared connections).
    pub fn is_default(&self) -> bool {
        *self == ClientMix::default()
    }

    /// How many of `concurrency` processes read: the share, rounded, at least one when the
    /// share is above zero.
    pub fn reader_count(&self, concurrency: usize) -> usize {
        if self.readers.0 <= 0.0 {
            return 0;
        }
        ((self.readers.0 * concurrency as f64).round() as usize).clamp(1, concurrency)
    }
}

/// A share in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Share(pub f64);

impl Share {
    fn is_zero(&self) -> bool {
        self.0 == 0.0
    }
}

impl TryFrom<f64> for Share {
    type Error = String;
    fn try_from(v: f64) -> Result<Share, String> {
        if (0.0..=1.0).contains(&v) {
            Ok(Share(v))
        } else {
            Err(format!("a share is between 0 and 1, got {v}"))
        }
    }
}

impl From<Share> for f64 {
    fn from(s: Share) -> f64 {
        s.0
    }
}

/// A workload for one run: what clients do while faults happen, and how the run ends.
pub trait Workload: Send + Sync {
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
