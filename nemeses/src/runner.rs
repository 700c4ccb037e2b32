//! Fires the schedule: each step's fault is applied, held for the scenario's duration (or
//! its composed `hold_s`) and healed, every action an invoke/completion pair in the
//! history under process `nemesis`; the steps of one group (interval) overlap. Each fault
//! records `late_ms` against its scheduled instant, and [`Nemesis::slips`] sums them up
//! for the run's notes. Faults that prepare (partition, kill, pause, delay, loss) are
//! applied [`lead`] before their instant and put in effect at it from a thread of their
//! own ([`crate::instant`]); their completion records `effect_ms`, the instant to the
//! fault in effect.
//! Faults still in force when the workload stops are handed back, for the final phase to
//! heal.

use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use faultline_history::{Op, OpType, Process, Recorder};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fault::{in_step, BoxFuture, Ctx, Fault, Heal, Outcome};
use crate::instant::{lead, ms, Gate};
use crate::schedule::{self, Step};
use crate::spec::{FaultSpec, NemesisSpec};

/// The longest lead a slow preparation can earn ([`Nemesis::lead`]).
const MAX_LEAD: Duration = Duration::from_secs(3);

/// A start later than this against its scheduled instant is a slip the run states.
pub const SLIP: Duration = Duration::from_millis(100);

/// How well the schedule was kept: stated in the run's notes when any fault slipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Slips {
    /// Faults fired.
    pub fired: usize,
    /// Of those, how many started more than [`SLIP`] late.
    pub late: usize,
    /// The latest start, in ms after its scheduled instant.
    pub max_late_ms: f64,
}

impl Slips {
    /// A sentence for the run's notes, when the schedule was not kept.
    pub fn note(&self) -> Option<String> {
        (self.late > 0).then(|| {
            format!(
                "nemesis schedule not kept: {} of {} faults started more than {} ms after \
                 their scheduled instant (latest {:.0} ms; each fault op records `late_ms`)",
                self.late,
                self.fired,
                SLIP.as_millis(),
                self.max_late_ms
            )
        })
    }
}

/// A fault still in force when the workload stopped: when it was applied, and its heal.
type InForce = (Instant, Box<dyn Heal>);

/// A configured nemesis with its seeded schedule.
pub struct Nemesis {
    spec: NemesisSpec,
    faults: Vec<Box<dyn Fault>>,
    steps: Vec<Step>,
    slips: Mutex<Slips>,
    prepare: bool,
    /// The longest a fault took to prepare so far: on a loaded machine the lead grows
    /// to twice that ([`Nemesis::lead`]).
    longest_preparation: Mutex<Duration>,
}

impl Nemesis {
    /// Builds the faults and draws the schedule for a workload of `time_limit`.
    pub fn new(spec: &NemesisSpec, seed: u64, time_limit: Duration) -> Nemesis {
        Nemesis {
            faults: spec.faults.iter().map(FaultSpec::build).collect(),
            steps: schedule::plan(spec, seed, time_limit),
            spec: spec.clone(),
            slips: Mutex::new(Slips::default()),
            prepare: true,
            longest_preparation: Mutex::new(Duration::ZERO),
        }
    }

    /// How long before its instant a fault starts preparing: [`lead`] for the cluster's
    /// size, or twice the longest preparation seen so far (at most [`MAX_LEAD`]).
    fn lead(&self, nodes: usize) -> Duration {
        let seen = *self
            .longest_preparation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        lead(nodes).max((seen * 2).min(MAX_LEAD))
    }

    /// Whether faults that can prepare do so before their instant (the default), or are
    /// all applied at their instant as before (`false`: the path `faultline bench
    /// --faults` measures beside it).
    pub fn with_preparation(mut self, prepare: bool) -> Nemesis {
        self.prepare = prepare;
        self
    }

    /// The schedule.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// How late the faults fired so far started.
    pub fn slips(&self) -> Slips {
        self.slips.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the schedule cannot keep, known before the run: faults held at least as long
    /// as the interval delay the next one (a sequential schedule waits for each heal).
    pub fn foreseen_slip(&self) -> Option<String> {
        let s = &self.spec;
        (!s.is_composed() && s.duration_s.get() >= s.interval_s.get()).then(|| {
            format!(
                "nemesis schedule cannot be kept: each fault holds {} s, the interval is {} s, \
                 so every fault after the first starts late (each fault op records `late_ms`)",
                s.duration_s.get(),
                s.interval_s.get()
            )
        })
    }

    /// Fires every step due before `stop`, measuring offsets from `start`: the groups in
    /// order, the steps of one group overlapped (each waits for its own instant, fires in
    /// its lane, holds and heals). Returns the heals of faults still in force, the last
    /// applied first.
    pub async fn run(
        &self,
        ctx: &Ctx,
        recorder: &Recorder,
        start: Instant,
        stop: &CancellationToken,
    ) -> Vec<Box<dyn Heal>> {
        let mut i = 0;
        while i < self.steps.len() {
            let group = self.steps[i].group;
            let n = self.steps[i..]
                .iter()
                .take_while(|s| s.group == group)
                .count();
            // Each step says when its fault took effect, for a step in sequence after it.
            let (applied_tx, applied_rx): (Vec<_>, Vec<_>) = (0..n)
                .map(|_| watch::channel::<Option<Instant>>(None))
                .unzip();
            let runs: Vec<BoxFuture<'_, Option<InForce>>> = applied_tx
                .into_iter()
                .enumerate()
                .map(|(j, tx)| -> BoxFuture<'_, _> {
                    let previous = j.checked_sub(1).map(|p| applied_rx[p].clone());
                    Box::pin(self.run_step(i + j, ctx, recorder, start, stop, previous, tx))
                })
                .collect();
            let mut pending: Vec<InForce> = join_all(runs).await.into_iter().flatten().collect();
            if stop.is_cancelled() {
                pending.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
                return pending.into_iter().map(|(_, h)| h).collect();
            }
            i += n;
        }
        Vec::new()
    }

    /// One step: waits for its instant (with `after_previous`, for the previous step to
    /// take effect, then its offset), fires, tells `applied`, holds, heals. Returns its
    /// heal (with when it was applied) if `stop` came while it held.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        k: usize,
        ctx: &Ctx,
        recorder: &Recorder,
        start: Instant,
        stop: &CancellationToken,
        previous: Option<watch::Receiver<Option<Instant>>>,
        applied: watch::Sender<Option<Instant>>,
    ) -> Option<InForce> {
        let step = &self.steps[k];
        let due = match (step.after_previous, previous) {
            (Some(after), Some(mut previous)) => {
                let took_effect = tokio::select! {
                    r = previous.wait_for(Option::is_some) => r.ok().and_then(|v| *v),
                    _ = stop.cancelled() => return None,
                };
                // The previous step never fired (stopped first): neither does this one.
                took_effect? + after
            }
            _ => start + step.at,
        };
        // A fault that prepares starts early and acts at `due` from the firing thread.
        let prepared = self.prepare && self.faults[step.fault].prepares();
        let wake = if prepared {
            due.checked_sub(self.lead(ctx.control.nodes().len()))
                .unwrap_or(due)
        } else {
            due
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.cancelled() => return None,
        }
        let fired = self.fire(k, step, due, prepared, ctx, recorder, stop);
        let heal = in_step(step.lane, step.hold, fired).await;
        let applied_at = Instant::now();
        applied.send_replace(Some(applied_at));
        let heal = heal?;
        tokio::select! {
            _ = tokio::time::sleep(step.hold) => {}
            _ = stop.cancelled() => return Some((applied_at, heal)),
        }
        let tags = [("of_step", json!(k)), ("lane", json!(step.lane))];
        record_heal_tagged(heal.name(), recorder, heal.heal(ctx), &tags).await;
        None
    }

    /// Fires step `i` due at `due`. A fault that [`Fault::prepares`] is applied inside a
    /// [`Gate`] (called [`lead`] before `due` when `prepared`): its invoke is recorded on
    /// the firing thread at the instant and its completion says when it took effect
    /// (`effect_ms`). Any other fault is called at `due`, after its invoke, as before.
    #[allow(clippy::too_many_arguments)]
    async fn fire(
        &self,
        i: usize,
        step: &Step,
        due: Instant,
        prepared: bool,
        ctx: &Ctx,
        recorder: &Recorder,
        stop: &CancellationToken,
    ) -> Option<Box<dyn Heal>> {
        let fault = &self.faults[step.fault];
        // The history's `f` is the kind's name, as its package declares it.
        let ops = self.spec.faults[step.fault].package().ops;
        let mut invoke = Op::new(Process::Nemesis, OpType::Invoke, ops.kind)
            .with_value(serde_json::to_value(&self.spec.faults[step.fault]).unwrap_or(Value::Null));
        let scheduled_ns = due
            .into_std()
            .saturating_duration_since(recorder.t0())
            .as_nanos() as u64;
        invoke
            .extra
            .insert("scheduled_ns".into(), json!(scheduled_ns));
        invoke.extra.insert("step".into(), json!(i));
        // The schedule's own offset from the workload's start: equal for equal seeds.
        invoke
            .extra
            .insert("at_ms".into(), json!(step.at.as_millis() as u64));
        if let Some(after) = step.after_previous {
            invoke
                .extra
                .insert("after_previous_ms".into(), json!(after.as_millis() as u64));
        }
        if self.spec.is_composed() {
            invoke.extra.insert("group".into(), json!(step.group));
            invoke.extra.insert("lane".into(), json!(step.lane));
            invoke
                .extra
                .insert("hold_ms".into(), json!(step.hold.as_millis() as u64));
        }
        if fault.prepares() {
            // Recorded either way, so a bench can set both paths side by side.
            invoke.extra.insert("prepared".into(), json!(prepared));
        }
        let (invoke, applied, late, effect) = if prepared {
            let began = Instant::now();
            let lead_ms = due.saturating_duration_since(began);
            invoke.extra.insert("lead_ms".into(), ms(lead_ms));
            let gate = Arc::new(Gate::new(
                due.into_std(),
                recorder.clone(),
                stop.clone(),
                invoke.clone(),
            ));
            let applied = gate.scope(fault.apply(ctx, step.draw)).await;
            if let Some(at) = gate.prepared_at() {
                let took = at.saturating_duration_since(began.into_std());
                let mut longest = self
                    .longest_preparation
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                *longest = (*longest).max(took);
            }
            match gate.fired() {
                Some(f) => (f.invoke, applied, f.late, Some(f.effect)),
                None if stop.is_cancelled() => return None,
                None => {
                    // It failed before its instant (no target, say): recorded at the
                    // instant, as it would have been.
                    tokio::time::sleep_until(due).await;
                    let late = Instant::now().saturating_duration_since(due);
                    invoke.extra.insert("late_ms".into(), ms(late));
                    (recorder.record(invoke), applied, late, None)
                }
            }
        } else {
            let late = Instant::now().saturating_duration_since(due);
            // How late it started against its scheduled instant.
            invoke.extra.insert("late_ms".into(), ms(late));
            let invoke = recorder.record(invoke);
            let applied = fault.apply(ctx, step.draw).await;
            let effect = fault
                .prepares()
                .then(|| Instant::now().saturating_duration_since(due));
            (invoke, applied, late, effect)
        };
        {
            let mut slips = self.slips.lock().unwrap_or_else(|p| p.into_inner());
            slips.fired += 1;
            let ms = late.as_secs_f64() * 1000.0;
            if late > SLIP {
                slips.late += 1;
            }
            slips.max_late_ms = slips.max_late_ms.max(ms);
        }
        debug_assert!(
            applied
                .heal
                .as_ref()
                .is_none_or(|h| ops.heals.contains(&h.name())),
            "{}: a heal not declared in its package's OPS",
            ops.kind
        );
        let mut done = invoke.complete(match applied.outcome {
            Outcome::Ok => OpType::Ok,
            Outcome::Fail => OpType::Fail,
            Outcome::Info => OpType::Info,
        });
        done.value = applied.value;
        done.error = applied.error;
        done.extra
            .insert("scheduled_ns".into(), json!(scheduled_ns));
        if let Some(effect) = effect.filter(|_| done.kind == OpType::Ok) {
            // From the scheduled instant to the fault in effect: rules committed in every
            // namespace, every target process exiting or stopped.
            done.extra.insert("effect_ms".into(), ms(effect));
        }
        let done = recorder.record(done);
        let _ = recorder.flush();
        match &done.error {
            None => info!("nemesis: {} {}", done.f, done.value),
            Some(e) => warn!("nemesis: {} {}: {e}", done.f, done.value),
        }
        applied.heal
    }
}

/// Polls every future until all are done; results in order (a group has a few steps, so
/// polling all on each wake costs nothing).
async fn join_all<T>(futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut futures: Vec<Option<BoxFuture<'_, T>>> = futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Heals one fault, recording it.
pub async fn heal_one(heal: &dyn Heal, ctx: &Ctx, recorder: &Recorder) {
    record_heal(heal.name(), recorder, heal.heal(ctx)).await;
}

/// Records a healing action `f` around `action`: an invoke, then `ok` with what it did or
/// `info` with why it may not have worked. The final phase's sweeps
/// ([`crate::registry::final_sweeps`]) use it as well.
pub async fn record_heal(
    f: &str,
    recorder: &Recorder,
    action: impl std::future::Future<Output = Result<Value, String>>,
) {
    record_heal_tagged(f, recorder, action, &[]).await;
}

/// As [`record_heal`], with `tags` on the invoke (a scheduled heal names the step it
/// undoes, `of_step`, and its `lane`; `step` stays the mark of a fault's own invoke).
async fn record_heal_tagged(
    f: &str,
    recorder: &Recorder,
    action: impl std::future::Future<Output = Result<Value, String>>,
    tags: &[(&str, Value)],
) {
    let mut invoke = Op::new(Process::Nemesis, OpType::Invoke, f);
    for (k, v) in tags {
        invoke.extra.insert((*k).to_string(), v.clone());
    }
    let invoke = recorder.record(invoke);
    let result = action.await;
    let mut done = invoke.complete(if result.is_ok() {
        OpType::Ok
    } else {
        OpType::Info
    });
    match result {
        Ok(v) => {
            info!("nemesis: {f} {v}");
            done.value = v;
        }
        Err(e) => {
            warn!("nemesis: {f} failed: {e}");
            done.error = Some(e);
        }
    }
    recorder.record(done);
    let _ = recorder.flush();
}
