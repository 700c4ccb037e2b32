//! `faultline bench --scale --nodes N`: a real run of N nodes, measured.
//!
//! A scenario is written for the shape (`--replicas` per primary, `--flavor`, the set
//! workload, partitions of one primary and manual failovers, node time-out 5 s) and run by
//! `faultline run` as a child process for `--seconds`. Then, from the run's
//! `results.json`: formation time, the observer's polls per node per second (overall and
//! per node, hot seconds), faultline's own max RSS and CPU (its `getrusage`, servers
//! excluded; per node), the verdicts; from the run directory: `topology.jsonl`'s size per
//! minute of observation. Then `faultline analyze` and `faultline report` on the run, each
//! a child measured with `wait4` (wall, CPU, max RSS).
//!
//! The kernel's neighbour table (`net.ipv4.neigh.default.gc_thresh*`, one for every
//! namespace) holds 1024 entries by default, and N nodes on a full-mesh bus need about
//! N*(N+1): past 31 nodes the cluster does not form. With `--raise-neigh-cap` the bench
//! raises the thresholds for the measurement only and puts the old values back on every
//! exit path (both recorded); without it, it measures what the machine allows.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::scale::{measure_child, ChildRun};
use crate::scenario::FlavorName;

/// The neighbour table's thresholds, in `gc_thresh1..3` order.
const NEIGH: [&str; 3] = [
    "/proc/sys/net/ipv4/neigh/default/gc_thresh1",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh2",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
];

/// The node time-out of the measured cluster, ms: a loaded 2-core machine with 100
/// servers must not fail nodes over by itself.
const NODE_TIMEOUT_MS: u64 = 5000;

/// How long formation may take: 100 servers on a shared 2-core machine gossip slowly.
const FORM_TIMEOUT_S: u64 = 180;

/// The thresholds before and during the measurement.
#[derive(Debug, Clone, Serialize)]
pub struct NeighCap {
    pub before: [u64; 3],
    pub during: [u64; 3],
    pub restored: bool,
}

/// Raised thresholds, put back when dropped.
struct RaisedCap {
    cap: NeighCap,
}

impl RaisedCap {
    fn raise(nodes: usize) -> Result<RaisedCap> {
        let before = read_neigh()?;
        let needed = (nodes * (nodes + 1)) as u64;
        let during = [
            before[0],
            before[1].max(needed.next_power_of_two()),
            before[2].max(2 * needed.next_power_of_two()),
        ];
        write_neigh(&during)?;
        eprintln!(
            "scale: neighbour table thresholds {before:?} raised to {during:?} for the measurement"
        );
        Ok(RaisedCap {
            cap: NeighCap {
                before,
                during,
                restored: false,
            },
        })
    }

    fn restore(mut self) -> NeighCap {
        self.put_back();
        self.cap.clone()
    }

    fn put_back(&mut self) {
        if self.cap.restored {
            return;
        }
        match write_neigh(&self.cap.before) {
            Ok(()) => {
                self.cap.restored = true;
                eprintln!(
                    "scale: neighbour table thresholds restored to {:?}",
                    self.cap.before
                );
            }
            Err(e) => eprintln!(
                "scale: could not restore the neighbour table thresholds to {:?}: {e:#}",
                self.cap.before
            ),
        }
    }
}

impl Drop for RaisedCap {
    fn drop(&mut self) {
        self.put_back();
    }
}

fn read_neigh() -> Result<[u64; 3]> {
    let mut out = [0; 3];
    for (slot, path) in out.iter_mut().zip(NEIGH) {
        *slot = fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .parse()
            .with_context(|| format!("parsing {path}"))?;
    }
    Ok(out)
}

/// Writes thresholds in an order the kernel accepts (it wants 1 <= 2 <= 3 at all times).
fn write_neigh(values: &[u64; 3]) -> Result<()> {
    let current = read_neigh()?;
    let order: Vec<usize> = if values[2] >= current[2] {
        vec![2, 1, 0]
    } else {
        vec![0, 1, 2]
    };
    for i in order {
        fs::write(NEIGH[i], values[i].to_string())
            .with_context(|| format!("writing {}", NEIGH[i]))?;
    }
    Ok(())
}

/// The figures of one real run at scale.
#[derive(Debug, Serialize)]
pub struct NodesScale {
    pub nodes: usize,
    pub primaries: usize,
    pub replicas: usize,
    pub flavor: String,
    pub seconds: f64,
    pub neigh_cap: Option<NeighCap>,
    pub run_dir: PathBuf,
    /// `faultline run` as a whole: wall, and CPU and max RSS of it with its reaped
    /// children (the servers).
    pub run: ChildRun,
    pub formed_s: Option<f64>,
    pub workload_s: Option<f64>,
    pub ops: Value,
    /// `results.json` `run.observer`.
    pub observer: Value,
    /// `results.json` `run.harness`: faultline's own `getrusage` at the end of the run.
    pub harness: Value,
    /// faultline's own CPU per node, percent of one core over the run's wall time.
    pub harness_cpu_per_node_pct: Option<f64>,
    /// faultline's own max RSS per node, MB.
    pub harness_rss_per_node_mb: Option<f64>,
    pub topology_bytes: u64,
    pub topology_mb_per_min: f64,
    pub verdicts: Value,
    pub analyze: ChildRun,
    pub report: ChildRun,
}

/// The scenario measured.
fn scenario(flavor: FlavorName, primaries: usize, replicas: usize, seconds: f64) -> String {
    format!(
        "# Written by `faultline bench --scale --nodes`.\n\
         name: scale-{primaries}x{replicas}\n\
         description: {primaries} primaries x {replicas} replicas under the set workload, one primary isolated or failed over every 12 s.\n\
         flavor: {flavor}\n\
         time_limit: {seconds}\n\
         cluster:\n  primaries: {primaries}\n  replicas: {replicas}\n  node_timeout_ms: {NODE_TIMEOUT_MS}\n  form_timeout_s: {FORM_TIMEOUT_S}\n\
         workload:\n  keys: 64\n  concurrency: 16\n\
         nemesis:\n  interval_s: 12\n  duration_s: 8\n  start_after_s: 5\n  faults:\n\
         \x20   - kind: partition\n      shape: isolate\n      target: primaries\n      count: 1\n      ports: all\n\
         \x20   - kind: failover\n      mode: default\n      target: primaries\n      timeout_s: 10\n"
    )
}

/// Runs and measures `nodes` nodes (`replicas` per primary) for `seconds` in `dir`.
///
/// # Errors
/// If the shape does not divide, the neighbour table cannot be raised (when asked), the
/// children cannot be started, or the run left no results.
pub fn measure(
    dir: &Path,
    flavor: FlavorName,
    nodes: usize,
    replicas: usize,
    seconds: f64,
    raise_cap: bool,
) -> Result<NodesScale> {
    let per_shard = replicas + 1;
    if nodes == 0 || nodes % per_shard != 0 {
        bail!("--nodes {nodes} is not a whole number of shards of {per_shard} (1 primary + {replicas} replicas)");
    }
    let primaries = nodes / per_shard;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let scenario_path = dir.join("scenario.yaml");
    fs::write(
        &scenario_path,
        scenario(flavor, primaries, replicas, seconds),
    )
    .with_context(|| format!("writing {}", scenario_path.display()))?;
    let raised = if raise_cap {
        Some(RaisedCap::raise(nodes)?)
    } else {
        None
    };
    let store = dir.join("runs");
    let exe = std::env::current_exe().context("finding the faultline binary")?;
    eprintln!("scale: {primaries}x{replicas} ({nodes} nodes) {flavor}, {seconds} s; running");
    let run = measure_child(
        Command::new(&exe)
            .arg("run")
            .arg(&scenario_path)
            .arg("--seed")
            .arg("1")
            .arg("--store")
            .arg(&store),
    );
    let neigh_cap = raised.map(RaisedCap::restore);
    let run = run?;
    let run_dir = only_run_dir(&store.join(format!("scale-{primaries}x{replicas}")))?;
    let results: Value = serde_json::from_slice(
        &fs::read(run_dir.join("results.json"))
            .with_context(|| format!("reading {}/results.json", run_dir.display()))?,
    )
    .context("parsing results.json")?;
    let meta = &results["run"];
    let observer = meta["observer"].clone();
    let harness = meta["harness"].clone();
    let topology_bytes = fs::metadata(run_dir.join(faultline_history::TOPOLOGY_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    let observed_s = observer["elapsed_s"].as_f64().unwrap_or(0.0);
    let topology_mb_per_min = if observed_s > 0.0 {
        topology_bytes as f64 / 1e6 / (observed_s / 60.0)
    } else {
        0.0
    };
    let (cpu_per_node, rss_per_node) =
        match (harness["cpu_s"].as_f64(), harness["max_rss_mb"].as_f64()) {
            (Some(cpu), Some(rss)) if run.wall_s > 0.0 => (
                Some(cpu / run.wall_s * 100.0 / nodes as f64),
                Some(rss / nodes as f64),
            ),
            _ => (None, None),
        };
    let verdicts = results["checkers"]
        .as_object()
        .map(|c| {
            c.iter()
                .map(|(k, v)| (k.clone(), v["valid"].clone()))
                .collect::<serde_json::Map<_, _>>()
        })
        .map(Value::Object)
        .unwrap_or(Value::Null);
    eprintln!("scale: run took {:.1} s; analyze", run.wall_s);
    let analyze = measure_child(Command::new(&exe).arg("analyze").arg(&run_dir))?;
    eprintln!(
        "scale: analyze {:.2} s, {:.0} MB; report",
        analyze.wall_s, analyze.max_rss_mb
    );
    let report = measure_child(Command::new(&exe).arg("report").arg(&run_dir))?;
    Ok(NodesScale {
        nodes,
        primaries,
        replicas,
        flavor: flavor.to_string(),
        seconds,
        neigh_cap,
        run_dir,
        run,
        formed_s: meta["timings_s"]["form"].as_f64(),
        workload_s: meta["timings_s"]["workload"].as_f64(),
        ops: meta["timings_s"]["ops"].clone(),
        observer,
        harness,
        harness_cpu_per_node_pct: cpu_per_node,
        harness_rss_per_node_mb: rss_per_node,
        topology_bytes,
        topology_mb_per_min,
        verdicts,
        analyze,
        report,
    })
}

/// The one run directory under `dir`.
fn only_run_dir(dir: &Path) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("results.json").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no run with results.json under {}", dir.display()))
}

impl NodesScale {
    /// The human summary.
    pub fn table(&self) -> String {
        let o = &self.observer;
        let f = |v: &Value| v.as_f64().map_or("?".to_string(), |x| format!("{x}"));
        let mut out = format!(
            "{}x{} {} ({} nodes), {} s of workload; run directory {}\n  \
             formed in {} s; run {:.1} s wall\n  \
             observer: {} polls/node/s (nodes {}..{}), {} s of {} s hot at {} ms, calm {} ms; \
             stored {}\n  \
             topology.jsonl: {:.1} MB, {:.1} MB per minute\n  \
             faultline itself: {} MB max RSS, {} s CPU = {:.2} MB and {:.2}% of a core per node\n  \
             analyze {:.2} s wall, {:.2} s CPU, {:.0} MB max RSS, exit {}\n  \
             report  {:.2} s wall, {:.2} s CPU, {:.0} MB max RSS, exit {}\n  \
             verdicts: {}",
            self.primaries,
            self.replicas,
            self.flavor,
            self.nodes,
            self.seconds,
            self.run_dir.display(),
            self.formed_s.map_or("?".into(), |s| format!("{s:.2}")),
            self.run.wall_s,
            f(&o["polls_per_node_per_s"]),
            f(&o["min_node_polls_per_s"]),
            f(&o["max_node_polls_per_s"]),
            f(&o["hot_s"]),
            f(&o["elapsed_s"]),
            f(&o["interval_ms"]),
            f(&o["calm_interval_ms"]),
            o["stored"],
            self.topology_bytes as f64 / 1e6,
            self.topology_mb_per_min,
            f(&self.harness["max_rss_mb"]),
            f(&self.harness["cpu_s"]),
            self.harness_rss_per_node_mb.unwrap_or(f64::NAN),
            self.harness_cpu_per_node_pct.unwrap_or(f64::NAN),
            self.analyze.wall_s,
            self.analyze.cpu_s,
            self.analyze.max_rss_mb,
            self.analyze.exit_code,
            self.report.wall_s,
            self.report.cpu_s,
            self.report.max_rss_mb,
            self.report.exit_code,
            self.verdicts,
        );
        if let Some(c) = &self.neigh_cap {
            out.push_str(&format!(
                "\n  neighbour table gc_thresh1..3 {:?} -> {:?} for the run, restored: {}",
                c.before, c.during, c.restored
            ));
        }
        out
    }
}
