//! `faultline bench --faults`: how long after its scheduled instant each fault is in
//! effect, per kind, on a small and a large cluster, prepared against applied at the
//! instant.
//!
//! Each measurement is one real `faultline run` (a child process) of a generated scenario:
//! the set workload under a nemesis that draws partitions (isolate), kills, pauses and
//! delays (the NFQUEUE fallback) every interval. Every fault's completion records
//! `effect_ms` (scheduled instant to rules committed in every namespace, process seen
//! exiting or stopped) and its invoke `late_ms` (instant to the invoke); the bench reads them back
//! from `history.jsonl`. The same scenario runs twice per shape: with preparation (the
//! default) and with `FAULTLINE_NEMESIS_PREPARE=0`, every fault applied at its instant as
//! before, and the figures are set side by side with their ratio.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use faultline_history::{read_jsonl, Op, OpType, Process};
use serde::Serialize;

use crate::scenario::FlavorName;

/// The fault kinds measured.
const KINDS: &[&str] = &["partition", "kill", "pause", "delay"];
/// Seconds between faults on 3x1: room for the heal and the next fault's preparation;
/// larger clusters get [`PER_NODE_S`] more per node (a heal and a preparation touch every
/// namespace, and groups run in order: a schedule that does not fit drifts late).
const INTERVAL_S: f64 = 2.0;
/// Seconds of interval per node above six.
const PER_NODE_S: f64 = 0.1;
/// Seconds each fault holds.
const DURATION_S: f64 = 0.5;
/// Seconds of workload before the first fault (and after the last).
const MARGIN_S: f64 = 3.0;

/// Percentiles of one sample, in ms (nearest rank).
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile (with fewer than 100 samples, close to the maximum).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    fn of(samples: &[f64]) -> Option<Spread> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Some(Spread {
            n: s.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: s[s.len() - 1],
        })
    }
}

/// One kind's figures in one run.
#[derive(Debug, Clone, Serialize)]
pub struct KindFigures {
    /// Scheduled instant to in effect (`effect_ms` of ok completions).
    pub effect_ms: Option<Spread>,
    /// Scheduled instant to the invoke (`late_ms`).
    pub late_ms: Option<Spread>,
    /// Faults of this kind that did not end ok (no effect to time).
    pub not_ok: usize,
}

/// One `faultline run`.
#[derive(Debug, Serialize)]
pub struct PathRun {
    /// Whether faults were prepared before their instant.
    pub prepared: bool,
    /// Its run directory.
    pub run_dir: PathBuf,
    /// Its exit code (the verdict does not matter here).
    pub exit_code: i32,
    /// Per kind.
    pub kinds: BTreeMap<String, KindFigures>,
}

/// One cluster shape, both paths.
#[derive(Debug, Serialize)]
pub struct ShapeRuns {
    /// Primaries (one replica each).
    pub primaries: usize,
    /// Prepared, then at the instant.
    pub runs: Vec<PathRun>,
}

/// Everything `bench.json` holds for `--faults`.
#[derive(Debug, Serialize)]
pub struct FaultLatency {
    /// Server kind.
    pub flavor: String,
    /// Faults drawn per run (about a quarter of each kind).
    pub faults_per_run: usize,
    /// Per shape.
    pub shapes: Vec<ShapeRuns>,
}

/// Runs the measurement: for each shape, the prepared run, then the run at the instant.
///
/// # Errors
/// A run that fails as a harness (exit 255) or leaves no readable history.
pub fn measure(
    dir: &Path,
    flavor: FlavorName,
    primaries: &[usize],
    per_kind: usize,
) -> Result<FaultLatency> {
    let faults = per_kind * KINDS.len();
    let mut shapes = Vec::new();
    for &p in primaries {
        let scenario = dir.join(format!("faults-{p}x1.yaml"));
        fs::write(&scenario, scenario_text(flavor, p, faults))
            .with_context(|| format!("writing {}", scenario.display()))?;
        let mut runs = Vec::new();
        for prepared in [true, false] {
            let label = if prepared { "prepared" } else { "at-instant" };
            eprintln!("bench --faults: {p}x1, {label}, {faults} faults");
            let store = dir.join(format!("{p}x1-{label}"));
            runs.push(
                one_run(&scenario, &store, prepared).with_context(|| format!("{p}x1 {label}"))?,
            );
        }
        shapes.push(ShapeRuns { primaries: p, runs });
    }
    Ok(FaultLatency {
        flavor: serde_json::to_value(flavor)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        faults_per_run: faults,
        shapes,
    })
}

/// The generated scenario: `faults` faults drawn from [`KINDS`] on `primaries`x1.
fn scenario_text(flavor: FlavorName, primaries: usize, faults: usize) -> String {
    let flavor = serde_json::to_value(flavor)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "redis".into());
    let interval = interval_s(primaries);
    let time_limit = 2.0 * MARGIN_S + faults as f64 * interval;
    format!(
        "# Generated by `faultline bench --faults`.\n\
         name: bench-faults-{primaries}x1\n\
         flavor: {flavor}\n\
         time_limit: {time_limit}\n\
         cluster:\n  primaries: {primaries}\n  replicas: 1\n  persistence: aof\n\
         workload:\n  keys: 32\n  concurrency: 8\n\
         nemesis:\n  interval_s: {interval}\n  duration_s: {DURATION_S}\n  start_after_s: {MARGIN_S}\n  faults:\n    \
         - kind: partition\n      shape: isolate\n    \
         - kind: kill\n    \
         - kind: pause\n    \
         - kind: delay\n      delay_ms: 50\n      mechanism: fallback\n"
    )
}

/// The interval for `primaries`x1.
fn interval_s(primaries: usize) -> f64 {
    let nodes = 2 * primaries;
    INTERVAL_S + PER_NODE_S * nodes.saturating_sub(6) as f64
}

/// Runs `faultline run SCENARIO --store STORE` and reads its faults back.
fn one_run(scenario: &Path, store: &Path, prepared: bool) -> Result<PathRun> {
    fs::create_dir_all(store).with_context(|| format!("creating {}", store.display()))?;
    let exe = std::env::current_exe().context("finding the faultline binary")?;
    let log = store.join("run.log");
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg(scenario)
        .arg("--store")
        .arg(store)
        .stdin(Stdio::null())
        .stderr(fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?);
    if !prepared {
        cmd.env(crate::run::PREPARE_ENV, "0");
    }
    let out = cmd.output().context("running faultline run")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let code = out.status.code().unwrap_or(-1);
    let Some(run_dir) = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .map(|d| PathBuf::from(d.trim()))
    else {
        bail!(
            "faultline run exited {code} without a run directory; its log: {}\n{}",
            log.display(),
            crate::sys::tail(&log, 15)
        );
    };
    let history = read_jsonl::<Op>(&run_dir.join(crate::store::HISTORY_FILE))
        .with_context(|| format!("reading the history in {}", run_dir.display()))?
        .records;
    Ok(PathRun {
        prepared,
        exit_code: code,
        kinds: figures(&history),
        run_dir,
    })
}

/// Per kind: `late_ms` of every invoke, `effect_ms` of every ok completion.
fn figures(history: &[Op]) -> BTreeMap<String, KindFigures> {
    let mut late: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut effect: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut not_ok: BTreeMap<&str, usize> = BTreeMap::new();
    for op in history {
        if op.process != Process::Nemesis || !KINDS.contains(&op.f.as_str()) {
            continue;
        }
        let f = op.f.as_str();
        match op.kind {
            OpType::Invoke => {
                if let Some(ms) = op.extra.get("late_ms").and_then(|v| v.as_f64()) {
                    late.entry(f).or_default().push(ms);
                }
            }
            OpType::Ok => {
                if let Some(ms) = op.extra.get("effect_ms").and_then(|v| v.as_f64()) {
                    effect.entry(f).or_default().push(ms);
                }
            }
            _ => *not_ok.entry(f).or_default() += 1,
        }
    }
    KINDS
        .iter()
        .map(|k| {
            let figures = KindFigures {
                effect_ms: effect.get(k).and_then(|s| Spread::of(s)),
                late_ms: late.get(k).and_then(|s| Spread::of(s)),
                not_ok: not_ok.get(k).copied().unwrap_or(0),
            };
            (k.to_string(), figures)
        })
        .collect()
}

impl FaultLatency {
    /// One line per shape and kind: effect p50/p90/p99/max prepared and at the instant,
    /// and the ratio of their p99s.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{}: scheduled instant -> fault in effect (effect_ms), {} faults per run\n\
             {:<6} {:<10} {:>4} {:>30} {:>4} {:>30} {:>9}\n",
            self.flavor,
            self.faults_per_run,
            "shape",
            "kind",
            "n",
            "prepared p50/p90/p99/max",
            "n",
            "at instant p50/p90/p99/max",
            "p99 ratio"
        );
        let cell = |s: &Option<Spread>| match s {
            Some(s) => (
                s.n.to_string(),
                format!("{:.1}/{:.1}/{:.1}/{:.1}", s.p50, s.p90, s.p99, s.max),
            ),
            None => ("0".into(), "-".into()),
        };
        for shape in &self.shapes {
            let (Some(prepared), Some(before)) = (
                shape.runs.iter().find(|r| r.prepared),
                shape.runs.iter().find(|r| !r.prepared),
            ) else {
                continue;
            };
            for kind in KINDS {
                let a = &prepared.kinds[*kind].effect_ms;
                let b = &before.kinds[*kind].effect_ms;
                let ratio = match (a, b) {
                    (Some(a), Some(b)) if b.p99 > 0.0 => format!("{:.2}", a.p99 / b.p99),
                    _ => "-".into(),
                };
                let (na, ca) = cell(a);
                let (nb, cb) = cell(b);
                out.push_str(&format!(
                    "{:<6} {:<10} {:>4} {:>30} {:>4} {:>30} {:>9}\n",
                    format!("{}x1", shape.primaries),
                    kind,
                    na,
                    ca,
                    nb,
                    cb,
                    ratio
                ));
            }
            for r in &shape.runs {
                out.push_str(&format!(
                    "  {} run: {} (exit {})\n",
                    if r.prepared { "prepared" } else { "at-instant" },
                    r.run_dir.display(),
                    r.exit_code
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_nearest_ranks() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Spread::of(&s).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        let p = Spread::of(&[5.0, 1.0]).unwrap();
        assert_eq!((p.p50, p.p99), (1.0, 5.0));
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn the_scenario_is_a_valid_scenario() {
        let text = scenario_text(FlavorName::Redis, 3, 8);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        fs::write(&path, text).unwrap();
        let s = crate::scenario::Scenario::load(&path).expect("loads");
        assert_eq!(s.nemesis.expect("nemesis").faults.len(), 4);
    }
}
