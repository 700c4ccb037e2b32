//! Fires the schedule: each step's fault is applied, held for the scenario's duration and
//! healed, every action an invoke/completion pair in the history under process `nemesis`.
//! Faults still in force when the workload stops are handed back, for the final phase to
//! heal.

use std::time::Duration;

use faultline_history::{Op, OpType, Process, Recorder};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fault::{Ctx, Fault, Heal, Outcome};
use crate::schedule::{self, Step};
use crate::spec::{FaultSpec, NemesisSpec};

/// A configured nemesis with its seeded schedule.
pub struct Nemesis {
    spec: NemesisSpec,
    faults: Vec<Box<dyn Fault>>,
    steps: Vec<Step>,
}

impl Nemesis {
    /// Builds the faults and draws the schedule for a workload of `time_limit`.
    pub fn new(spec: &NemesisSpec, seed: u64, time_limit: Duration) -> Nemesis {
        Nemesis {
            faults: spec.faults.iter().map(FaultSpec::build).collect(),
            steps: schedule::plan(spec, seed, time_limit),
            spec: spec.clone(),
        }
    }

    /// The schedule.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Fires every step due before `stop`, measuring offsets from `start`. Returns the
    /// heals of faults still in force.
    pub async fn run(
        &self,
        ctx: &Ctx,
        recorder: &Recorder,
        start: Instant,
        stop: &CancellationToken,
    ) -> Vec<Box<dyn Heal>> {
        let hold = Duration::from_secs_f64(self.spec.duration_s.get());
        for (i, step) in self.steps.iter().enumerate() {
            let due = start + step.at;
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stop.cancelled() => return Vec::new(),
            }
            let Some(heal) = self.fire(i, step, due, ctx, recorder).await else {
                continue;
            };
            tokio::select! {
                _ = tokio::time::sleep(hold) => {}
                _ = stop.cancelled() => return vec![heal],
            }
            heal_one(heal.as_ref(), ctx, recorder).await;
        }
        Vec::new()
    }

    async fn fire(
        &self,
        i: usize,
        step: &Step,
        due: Instant,
        ctx: &Ctx,
        recorder: &Recorder,
    ) -> Option<Box<dyn Heal>> {
        let fault = &self.faults[step.fault];
        // The history's `f` is the kind's name, as its package declares it.
        let ops = self.spec.faults[step.fault].package().ops;
        let late = Instant::now().saturating_duration_since(due);
        let mut invoke = Op::new(Process::Nemesis, OpType::Invoke, ops.kind)
            .with_value(serde_json::to_value(&self.spec.faults[step.fault]).unwrap_or(Value::Null));
        let scheduled_ns = recorder.now_ns().saturating_sub(late.as_nanos() as u64);
        invoke
            .extra
            .insert("scheduled_ns".into(), json!(scheduled_ns));
        invoke.extra.insert("step".into(), json!(i));
        // The schedule's own offset from the workload's start: equal for equal seeds.
        invoke
            .extra
            .insert("at_ms".into(), json!(step.at.as_millis() as u64));
        let invoke = recorder.record(invoke);
        let applied = fault.apply(ctx, step.draw).await;
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
        let done = recorder.record(done);
        let _ = recorder.flush();
        match &done.error {
            None => info!("nemesis: {} {}", done.f, done.value),
            Some(e) => warn!("nemesis: {} {}: {e}", done.f, done.value),
        }
        applied.heal
    }
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
    let invoke = recorder.record(Op::new(Process::Nemesis, OpType::Invoke, f));
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
