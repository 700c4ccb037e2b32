//! `faultline bench --scale`: how analysis and the report hold up on a history the size of
//! a long run at full speed.
//!
//! A set-workload history is generated (the recorder's own line format: `Op` through
//! serde), `--ops` adds over 64 keys by 50 interleaved processes, every 100,000th
//! acknowledged add planted as lost (absent from its key's final read), then one final
//! read per key; and a small topology log of a healthy 3x1 cluster over the same time
//! span, so the topology checkers that also read the history run too. Then, each as a
//! child process measured with `wait4` (wall time, max RSS, CPU): `faultline analyze` on
//! it, and `faultline report`. Then, in this process, every checker that reads the
//! history alone on the same file, against `lost-writes` alone.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use faultline_history::{Observation, Op, OpType, Process};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::Value;

/// Keys of the generated history, as in the measurement.
const KEYS: usize = 64;
/// Client processes, interleaved.
const PROCESSES: u64 = 50;
/// One acknowledged add in this many is planted as lost.
const LOST_EVERY: u64 = 100_000;
/// Nanoseconds between two ops of the generated history.
const OP_NS: u64 = 1_000;

/// What the generator wrote.
#[derive(Debug, Serialize)]
pub struct Generated {
    pub adds: u64,
    pub planted_lost: u64,
    pub history_bytes: u64,
    pub generate_s: f64,
}

/// One child process, measured.
#[derive(Debug, Serialize)]
pub struct ChildRun {
    pub command: String,
    pub wall_s: f64,
    pub max_rss_mb: f64,
    pub cpu_s: f64,
    pub exit_code: i32,
}

/// One checker alone over the file.
#[derive(Debug, Serialize)]
pub struct CheckerTime {
    pub checker: String,
    pub wall_s: f64,
    /// CPU seconds (user + system) of this process while it ran: on a shared machine,
    /// steadier than wall time.
    pub seconds: f64,
    /// Its CPU time over `lost-writes`' CPU time.
    pub ratio_to_lost_writes: f64,
    pub verdict: String,
}

/// The analysis figures.
#[derive(Debug, Serialize)]
pub struct AnalysisScale {
    pub generated: Generated,
    pub analyze: ChildRun,
    pub lost_found: u64,
    pub report: ChildRun,
    pub checkers: Vec<CheckerTime>,
}

/// Generates the history in `dir`, then measures analysis and report on it.
///
/// # Errors
/// If the files cannot be written or the children cannot be started.
pub fn analysis(dir: &Path, adds: u64) -> Result<AnalysisScale> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let started = Instant::now();
    let (planted_lost, end_ns) = write_history(&dir.join("history.jsonl"), adds)?;
    write_topology(&dir.join(faultline_history::TOPOLOGY_FILE), end_ns)?;
    let generated = Generated {
        adds,
        planted_lost,
        history_bytes: std::fs::metadata(dir.join("history.jsonl"))?.len(),
        generate_s: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "scale: {} adds, {:.2} GB generated in {:.1} s; analyzing",
        adds,
        generated.history_bytes as f64 / 1e9,
        generated.generate_s
    );
    let exe = std::env::current_exe().context("finding the faultline binary")?;
    let analyze = measure_child(Command::new(&exe).arg("analyze").arg(dir))?;
    let lost_found = lost_count(dir)?;
    eprintln!(
        "scale: analyze {:.2} s, {:.0} MB; report",
        analyze.wall_s, analyze.max_rss_mb
    );
    let report = measure_child(Command::new(&exe).arg("report").arg(dir))?;
    eprintln!(
        "scale: report {:.2} s; each history checker alone",
        report.wall_s
    );
    let checkers = each_checker(dir)?;
    Ok(AnalysisScale {
        generated,
        analyze,
        lost_found,
        report,
        checkers,
    })
}

/// Writes `adds` adds and the final reads; returns (planted losses, last time).
fn write_history(path: &Path, adds: u64) -> Result<(u64, u64)> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut rng = StdRng::seed_from_u64(17);
    let keys: Vec<String> = (0..KEYS).map(|k| format!("set{k}")).collect();
    let mut sets: Vec<Vec<u64>> = vec![Vec::new(); KEYS];
    let mut index = 0u64;
    let mut write = |op: &mut Op, out: &mut BufWriter<File>| -> Result<()> {
        op.index = index;
        op.time_ns = index * OP_NS;
        index += 1;
        serde_json::to_writer(&mut *out, op)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    let mut lost = 0;
    let mut element = 0u64;
    while element < adds {
        // A round: every process invokes, then they complete in a shuffled order.
        let batch = PROCESSES.min(adds - element);
        let mut pending = Vec::with_capacity(batch as usize);
        for p in 0..batch {
            let k = rng.random_range(0..KEYS);
            let mut op = Op::new(Process::Client(p), OpType::Invoke, "add")
                .with_key(keys[k].as_str())
                .with_value(element);
            write(&mut op, &mut out)?;
            pending.push((op, k, element));
            element += 1;
        }
        while !pending.is_empty() {
            let (invoke, k, e) = pending.swap_remove(rng.random_range(0..pending.len()));
            let mut done = invoke.complete(OpType::Ok);
            done.node = Some(format!("n{}", k % 3 + 1));
            write(&mut done, &mut out)?;
            if e % LOST_EVERY == LOST_EVERY / 2 {
                lost += 1;
            } else {
                sets[k].push(e);
            }
        }
    }
    for (k, set) in sets.into_iter().enumerate() {
        let mut invoke =
            Op::new(Process::Client(PROCESSES), OpType::Invoke, "read").with_key(keys[k].as_str());
        write(&mut invoke, &mut out)?;
        let members: Vec<Value> = set.iter().map(|e| Value::String(e.to_string())).collect();
        let mut done = invoke.complete(OpType::Ok).with_value(members);
        done.node = Some(format!("n{}", k % 3 + 1));
        write(&mut done, &mut out)?;
    }
    out.flush()?;
    Ok((lost, index * OP_NS))
}

/// A healthy 3x1 cluster's views, every observer every 100 ms until a second after
/// `end_ns`.
fn write_topology(path: &Path, end_ns: u64) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let id = |n: usize| format!("{n:040x}");
    let ranges = ["0-5460", "5461-10922", "10923-16383"];
    for t in (0..=end_ns + 1_000_000_000).step_by(100_000_000) {
        for me in 1..=6 {
            let mut text = String::new();
            for n in 1..=6usize {
                let myself = if n == me { "myself," } else { "" };
                let (role, primary, epoch, slots) = if n <= 3 {
                    ("master", "-".to_string(), n, ranges[n - 1])
                } else {
                    ("slave", id(n - 3), n - 3, "")
                };
                text.push_str(&format!(
                    "{} 10.77.0.{}:6379@16379 {myself}{role} {primary} 0 0 {epoch} connected {slots}\n",
                    id(n),
                    10 + n
                ));
            }
            let o = Observation::reply(t, format!("n{me}"), text).with_latency_us(100);
            serde_json::to_writer(&mut out, &o)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `lost-writes`' lost count in `dir/results.json`.
fn lost_count(dir: &Path) -> Result<u64> {
    let path = dir.join(crate::store::RESULTS_FILE);
    let results: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    Ok(results["checkers"]["lost-writes"]["lost_count"]
        .as_u64()
        .unwrap_or(0))
}

/// Each checker that reads the history, alone over the stored run, streaming as
/// `analyze` does; `lost-writes` first, the others as ratios to it.
fn each_checker(dir: &Path) -> Result<Vec<CheckerTime>> {
    let mut run = faultline_checkers::load_run_streaming(dir)?;
    run.nemesis_ops = faultline_nemeses::registry::op_catalog();
    let mut out: Vec<CheckerTime> = Vec::new();
    for checker in faultline_checkers::all() {
        if !checker.reads_history() {
            continue;
        }
        let name = checker.name();
        let (started, cpu) = (Instant::now(), own_cpu_s());
        let results = faultline_checkers::try_check(&run, &[checker])?;
        let (wall_s, seconds) = (started.elapsed().as_secs_f64(), own_cpu_s() - cpu);
        let verdict = results
            .checkers
            .get(name)
            .map_or("skipped".to_string(), |r| format!("{:?}", r.valid));
        let base = out.first().map_or(seconds, |lw| lw.seconds);
        out.push(CheckerTime {
            checker: name.to_string(),
            wall_s,
            seconds,
            ratio_to_lost_writes: seconds / base,
            verdict,
        });
    }
    if out.first().map(|c| c.checker.as_str()) != Some(faultline_checkers::lost_writes::NAME) {
        bail!("lost-writes is not the first checker of the registry");
    }
    Ok(out)
}

/// User + system CPU seconds this process has used so far.
pub(super) fn own_cpu_s() -> f64 {
    // SAFETY: plain FFI call with a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (timeval(usage.ru_utime) + timeval(usage.ru_stime)).as_secs_f64()
}

/// User + system CPU seconds of this process's children that have been waited for.
pub(super) fn children_cpu_s() -> f64 {
    // SAFETY: plain FFI call with a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (timeval(usage.ru_utime) + timeval(usage.ru_stime)).as_secs_f64()
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// Runs `command` to the end, measuring it with `wait4`.
pub(super) fn measure_child(command: &mut Command) -> Result<ChildRun> {
    let text = format!("{command:?}");
    let started = Instant::now();
    let child = command
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {text}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain FFI call with valid out-pointers; `child` is never waited for by std.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("waiting for {text}: {}", std::io::Error::last_os_error());
    }
    let wall_s = started.elapsed().as_secs_f64();
    Ok(ChildRun {
        command: text,
        wall_s,
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        cpu_s: (timeval(usage.ru_utime) + timeval(usage.ru_stime)).as_secs_f64(),
        exit_code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
    })
}

impl AnalysisScale {
    /// The human summary.
    pub fn table(&self) -> String {
        let g = &self.generated;
        let mut out = format!(
            "analysis of a generated set history ({} adds, {} keys, {:.2} GB, {} lost planted):\n  \
             analyze {:.2} s wall, {:.2} s CPU, {:.0} MB max RSS, exit {}, {} lost found\n  \
             report  {:.2} s wall, {:.2} s CPU, {:.0} MB max RSS, exit {}",
            g.adds,
            KEYS,
            g.history_bytes as f64 / 1e9,
            g.planted_lost,
            self.analyze.wall_s,
            self.analyze.cpu_s,
            self.analyze.max_rss_mb,
            self.analyze.exit_code,
            self.lost_found,
            self.report.wall_s,
            self.report.cpu_s,
            self.report.max_rss_mb,
            self.report.exit_code,
        );
        for c in &self.checkers {
            out.push_str(&format!(
                "\n  {:<20} alone {:.2} s CPU ({:.2}x lost-writes), {:.2} s wall, {}",
                c.checker, c.seconds, c.ratio_to_lost_writes, c.wall_s, c.verdict
            ));
        }
        out
    }
}
