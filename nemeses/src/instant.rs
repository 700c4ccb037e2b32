//! Faults in effect at their scheduled instant.
//!
//! Most of what applying a fault costs can happen before its instant: resolving its
//! targets, rendering its rules, starting the processes that will install them (each
//! `ip netns exec` is a fork and an exec). A fault that [`crate::fault::Fault::prepares`]
//! is applied [`lead`] before its instant, inside a [`Gate`], and hands the one short
//! action that puts it in effect to [`at_instant`]. A thread of its own, at raised
//! priority (so a loaded runtime does not make it late), sleeps until the instant,
//! records the fault's invoke, runs the action and notes when it returned: the moment the
//! kernel or the server shows the fault (rules committed, process exiting or stopped).
//! Those two times become the op's `late_ms` and `effect_ms`.
//!
//! Without a gate (a fault applied at its instant, as every fault was before, or applied
//! directly by a test) the action runs at once.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use faultline_history::{Op, Recorder};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How long before its instant a fault on `nodes` nodes starts preparing: starting one
/// process per namespace takes a few ms each on an idle machine and far more on a loaded
/// one, so the lead grows with the cluster.
pub fn lead(nodes: usize) -> Duration {
    Duration::from_millis(250 + 20 * nodes as u64)
}

/// When a prepared fault fired, against its instant.
#[derive(Debug, Clone)]
pub struct Fired {
    /// The fault's invoke, as recorded at the instant.
    pub invoke: Op,
    /// From the instant to the invoke (how late the firing thread woke).
    pub late: Duration,
    /// From the instant to the moment the action returned: the fault in effect.
    pub effect: Duration,
}

/// One prepared fault's appointment with its instant.
pub struct Gate {
    due: Instant,
    recorder: Recorder,
    stop: CancellationToken,
    /// The invoke to record at the instant; taken by the first [`at_instant`].
    invoke: Mutex<Option<Op>>,
    /// When the fault finished preparing (called [`at_instant`]).
    prepared_at: Mutex<Option<Instant>>,
    fired: Mutex<Option<Fired>>,
}

tokio::task_local! {
    static GATE: Arc<Gate>;
}

thread_local! {
    /// Set by an action that sees its fault in effect before it returns ([`in_effect_now`]).
    static EFFECT_AT: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Called by an action on the firing thread the moment the kernel shows its fault in
/// effect, when that comes before the action returns (installers that have committed
/// their rules still take a while to exit): the fault's `effect_ms` is then this moment.
pub fn in_effect_now() {
    EFFECT_AT.with(|c| c.set(Some(Instant::now())));
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds with one decimal, as the history records lateness.
pub fn ms(d: Duration) -> serde_json::Value {
    json!((d.as_secs_f64() * 1e4).round() / 10.0)
}

impl Gate {
    /// A gate at `due` that records `invoke` (its `late_ms` added) when the fault fires,
    /// unless `stop` came first.
    pub fn new(due: Instant, recorder: Recorder, stop: CancellationToken, invoke: Op) -> Gate {
        Gate {
            due,
            recorder,
            stop,
            invoke: Mutex::new(Some(invoke)),
            prepared_at: Mutex::new(None),
            fired: Mutex::new(None),
        }
    }

    /// Runs `fut` (a fault's apply) with this gate.
    pub async fn scope<F: std::future::Future>(self: &Arc<Self>, fut: F) -> F::Output {
        GATE.scope(self.clone(), fut).await
    }

    /// When the fault finished preparing, if it got that far.
    pub fn prepared_at(&self) -> Option<Instant> {
        *lock(&self.prepared_at)
    }

    /// When the fault fired, if it did.
    pub fn fired(&self) -> Option<Fired> {
        lock(&self.fired).clone()
    }

    /// On the firing thread: waits for the instant, records the invoke, runs `action`.
    /// `None` if the run stopped before the instant (nothing recorded, nothing done).
    fn fire<R>(&self, action: impl FnOnce() -> R) -> Option<R> {
        let Some(mut invoke) = lock(&self.invoke).take() else {
            // A second action of the same fault: it is already in its instant.
            return Some(action());
        };
        raise_priority();
        let now = Instant::now();
        if self.due > now {
            std::thread::sleep(self.due - now);
        }
        if self.stop.is_cancelled() {
            return None;
        }
        let late = Instant::now().saturating_duration_since(self.due);
        invoke.extra.insert("late_ms".into(), ms(late));
        let invoke = self.recorder.record(invoke);
        EFFECT_AT.with(|c| c.set(None));
        let out = action();
        let seen = EFFECT_AT.with(|c| c.take()).unwrap_or_else(Instant::now);
        let effect = seen.saturating_duration_since(self.due);
        *lock(&self.fired) = Some(Fired {
            invoke,
            late,
            effect,
        });
        Some(out)
    }
}

/// Whether the fault being applied is prepared ahead of its instant (inside a [`Gate`]).
pub fn preparing() -> bool {
    GATE.try_with(|_| ()).is_ok()
}

/// Runs `action`, the short blocking step that puts a fault in effect: at the gate's
/// instant on a thread of its own when the fault is prepared, at once (on the blocking
/// pool) otherwise.
///
/// # Returns
/// `None` if the run stopped before the instant: the action did not run.
pub async fn at_instant<R, F>(action: F) -> Option<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let Ok(gate) = GATE.try_with(Arc::clone) else {
        return tokio::task::spawn_blocking(action).await.ok();
    };
    lock(&gate.prepared_at).get_or_insert_with(Instant::now);
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The action is shared so that, should no thread start, it still runs here.
    let shared = Arc::new(Mutex::new(Some(action)));
    let theirs = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("fl-fire".into())
        .spawn(move || {
            let action = lock(&theirs).take();
            let out = action.and_then(|a| gate.fire(a));
            let _ = tx.send(out);
        });
    match spawned {
        Ok(_) => rx.await.ok().flatten(),
        Err(_) => {
            let action = lock(&shared).take()?;
            tokio::task::spawn_blocking(action).await.ok()
        }
    }
}

/// Raises the calling thread's scheduling priority (nice -10) where allowed (root): on a
/// machine loaded by the workload, a fault's instant should not wait for a time slice.
fn raise_priority() {
    // SAFETY: plain system calls on the calling thread; a refusal changes nothing.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_history::{OpType, Process};

    fn recorder() -> (tempfile::TempDir, Recorder) {
        let dir = tempfile::tempdir().unwrap();
        let r = Recorder::create(&dir.path().join("history.jsonl")).unwrap();
        (dir, r)
    }

    #[tokio::test]
    async fn without_a_gate_the_action_runs_at_once() {
        assert!(!preparing());
        assert_eq!(at_instant(|| 7).await, Some(7));
    }

    #[tokio::test]
    async fn a_gate_records_the_invoke_at_its_instant_then_acts() {
        let (_dir, rec) = recorder();
        let due = Instant::now() + Duration::from_millis(30);
        let invoke = Op::new(Process::Nemesis, OpType::Invoke, "kill");
        let gate = Arc::new(Gate::new(
            due,
            rec.clone(),
            CancellationToken::new(),
            invoke,
        ));
        let out = gate
            .scope(async {
                assert!(preparing());
                at_instant(Instant::now).await
            })
            .await
            .expect("fired");
        assert!(out >= due, "the action ran before its instant");
        let fired = gate.fired().expect("fired");
        assert_eq!(fired.invoke.f, "kill");
        assert!(fired.invoke.extra["late_ms"].is_number());
        assert!(fired.effect >= fired.late);
        assert_eq!(rec.len(), 1);
    }

    #[tokio::test]
    async fn a_stopped_run_does_not_fire() {
        let (_dir, rec) = recorder();
        let stop = CancellationToken::new();
        let due = Instant::now() + Duration::from_millis(50);
        let invoke = Op::new(Process::Nemesis, OpType::Invoke, "pause");
        let gate = Arc::new(Gate::new(due, rec.clone(), stop.clone(), invoke));
        stop.cancel();
        let out = gate.scope(at_instant(|| 1)).await;
        assert_eq!(out, None);
        assert!(gate.fired().is_none());
        assert_eq!(rec.len(), 0);
    }
}
