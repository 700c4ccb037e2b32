//! The throughput comparison: faultline's set workload, every op recorded, against
//! `redis-benchmark --cluster -t sadd` on one cluster, twice: unpipelined (`-P 1`, as
//! many faultline processes as benchmark connections) and pipelined (`-P P`, with
//! faultline running `C x P` processes, so both sides keep the same number of requests
//! in flight).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use faultline_history::Recorder;
use faultline_workloads::{registry, ClientConfig, Counters, Workload, WorkloadParams};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::stats::mean;
use super::{Setup, PRIMARIES, RANDOM_RANGE, SET_KEYS};
use crate::backend::NodeSpec;
use crate::cli::BenchArgs;
use crate::cluster::Admin;
use crate::kinds::Mode;

/// Who produced a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Tool {
    /// faultline's set workload, every op recorded.
    Faultline,
    /// `redis-benchmark --cluster -t sadd`.
    RedisBenchmark,
}

/// One timed round of load on the cluster.
#[derive(Debug, Serialize)]
pub(super) struct Round {
    tool: Tool,
    /// Recorded ok ops (faultline) or requests reported (redis-benchmark) per second.
    per_s: f64,
    /// Wall time of the round.
    elapsed_s: f64,
    /// faultline: ops that completed ok. redis-benchmark: requests asked for (`-n`).
    ok: u64,
    /// faultline: ops that completed fail or info (0 on a healthy cluster).
    not_ok: u64,
    /// `SADD` calls each primary (n1, n2, n3) executed during the round.
    sadd_per_primary: Vec<u64>,
    /// CPU seconds the tool used during the round (faultline: its whole process, every
    /// thread: clients, recorder, writer; redis-benchmark: the child, from
    /// `RUSAGE_CHILDREN`), per second of wall time.
    cpu_per_s: f64,
    /// CPU microseconds the tool spent per op (faultline: per recorded ok op, two history
    /// lines; redis-benchmark: per request): how much each side costs, whatever share of
    /// the machine it got.
    cpu_us_per_op: f64,
}

/// Why the two throughput figures differ in kind, printed with them.
pub(super) const THROUGHPUT_NOTE: &str = "faultline's client multiplexes its processes over one connection per primary, many requests riding each connection at once, and records an invoke and a completion line per op; redis-benchmark -c C -P P opens C connections with P requests in flight on each and records nothing. faultline runs C processes against -P 1 and C x P processes against -P P (grouped --batch to a task, each task sending its processes' ops as one pipeline per primary: workload.pipeline), so both sides keep the same number of requests in flight";

/// One comparison: faultline against redis-benchmark at one pipeline depth.
#[derive(Debug, Serialize)]
pub(super) struct Comparison {
    /// redis-benchmark's `-P`.
    pub(super) pipeline: usize,
    /// redis-benchmark's `-c`.
    pub(super) connections: usize,
    /// faultline's client processes: `connections x pipeline`.
    pub(super) processes: usize,
    /// faultline's processes per client task, whose ops go out together (1: a task each).
    pub(super) batch: usize,
    /// Mean over faultline's rounds.
    pub(super) faultline_ops_per_s: f64,
    /// Mean over redis-benchmark's rounds.
    pub(super) benchmark_req_per_s: f64,
    /// faultline / redis-benchmark.
    pub(super) ratio: f64,
    /// Mean over faultline's rounds of its CPU microseconds per recorded op.
    pub(super) faultline_cpu_us_per_op: f64,
    /// Mean over redis-benchmark's rounds of its CPU microseconds per request.
    pub(super) benchmark_cpu_us_per_req: f64,
    /// Lines faultline's rounds wrote to the history (two per op; the file is deleted
    /// after counting, it was only there to be written).
    pub(super) history_lines: u64,
    /// The redis-benchmark command line of the (last) benchmark round.
    pub(super) benchmark_command: String,
    /// In the order they ran (the benchmark's calibration run is not among them).
    pub(super) rounds: Vec<Round>,
}

/// The throughput comparisons, unpipelined first.
#[derive(Debug, Serialize)]
pub(super) struct Throughput {
    /// `-P 1`, then `-P <--pipeline>` (absent with `--pipeline 1`).
    pub(super) comparisons: Vec<Comparison>,
    /// [`THROUGHPUT_NOTE`].
    pub(super) note: &'static str,
}

/// Brings a cluster up and, for `-P 1` and then `-P <--pipeline>`, runs faultline,
/// redis-benchmark, faultline on it, each for about `--seconds` (see
/// [`sized_benchmark_round`] for how the benchmark's `-n` is chosen).
///
/// # Errors
/// The cluster does not form, a round fails, or faultline completes no op at all.
pub(super) async fn throughput(args: &BenchArgs, setup: &Setup, dir: &Path) -> Result<Throughput> {
    eprintln!(
        "bench: throughput: bringing up a {PRIMARIES}x{} cluster",
        super::REPLICAS
    );
    let mut backend = super::bring_up(setup, &dir.join("throughput")).await?;
    let nodes = backend.nodes().to_vec();
    let mut primaries = Admin::new(&nodes[..PRIMARIES]);
    let mut depths = vec![1];
    if args.pipeline > 1 {
        depths.push(args.pipeline);
    }
    let mut comparisons = Vec::new();
    for pipeline in depths {
        let history = dir.join(format!("history-p{pipeline}.jsonl"));
        comparisons.push(compare(args, setup, &nodes, &mut primaries, pipeline, &history).await?);
        // The history was only there to be written; keep the figures, not the bytes.
        let _ = std::fs::remove_file(&history);
    }
    backend.teardown()?;
    Ok(Throughput {
        comparisons,
        note: THROUGHPUT_NOTE,
    })
}

/// faultline with `C x pipeline` processes (against `-P 1` a task each; against a deeper
/// pipeline, `--batch` processes to a task whose ops go out together, as
/// `workload.pipeline`), redis-benchmark `-c C -P pipeline`, faultline.
async fn compare(
    args: &BenchArgs,
    setup: &Setup,
    nodes: &[NodeSpec],
    primaries: &mut Admin,
    pipeline: usize,
    history: &Path,
) -> Result<Comparison> {
    let processes = args.concurrency * pipeline;
    let batch = if pipeline > 1 { args.batch as usize } else { 1 };
    eprintln!(
        "bench: throughput at -P {pipeline}: faultline {processes} processes against redis-benchmark -c {} -P {pipeline}",
        args.concurrency
    );
    let recorder = Recorder::create_at(history, std::time::Instant::now())
        .with_context(|| format!("creating {}", history.display()))?;
    let workload = registry::by_name(
        "set",
        WorkloadParams {
            keys: SET_KEYS,
            concurrency: processes,
            rate: None,
            seed: rand::random(),
            pipeline: batch,
            ..Default::default()
        },
    )?;
    let load = Duration::from_secs_f64(args.seconds);

    // faultline, then (calibration and) benchmark and faultline in turn `--rounds`
    // times, so a machine whose load drifts weighs on both sides alike.
    let mut rounds = Vec::new();
    let first = faultline_round(workload.as_ref(), &recorder, nodes, primaries, load).await?;
    if first.ok == 0 {
        bail!(
            "faultline completed no op ok in {:.1}s ({} fail or info); see {}",
            first.elapsed_s,
            first.not_ok,
            history.display()
        );
    }
    let first_rate = first.per_s;
    rounds.push(first);
    let mut benchmark_command = String::new();
    let mut requests = None;
    for _ in 0..args.rounds.max(1) {
        let (round, line, n) = sized_benchmark_round(
            args, setup, &nodes[0], pipeline, first_rate, requests, primaries,
        )
        .await?;
        requests = Some(n);
        benchmark_command = line;
        rounds.push(round);
        rounds.push(faultline_round(workload.as_ref(), &recorder, nodes, primaries, load).await?);
    }
    recorder.close().context("writing the history")?;
    let history_lines = recorder.len();

    let per_s = |tool| {
        mean(
            &rounds
                .iter()
                .filter(|r| r.tool == tool)
                .map(|r| r.per_s)
                .collect::<Vec<_>>(),
        )
    };
    let cost = |tool| {
        mean(
            &rounds
                .iter()
                .filter(|r| r.tool == tool)
                .map(|r| r.cpu_us_per_op)
                .collect::<Vec<_>>(),
        )
    };
    let (ours, theirs) = (per_s(Tool::Faultline), per_s(Tool::RedisBenchmark));
    let (our_cost, their_cost) = (cost(Tool::Faultline), cost(Tool::RedisBenchmark));
    Ok(Comparison {
        pipeline,
        connections: args.concurrency,
        processes,
        batch,
        faultline_ops_per_s: ours,
        benchmark_req_per_s: theirs,
        ratio: ours / theirs,
        faultline_cpu_us_per_op: our_cost,
        benchmark_cpu_us_per_req: their_cost,
        history_lines,
        benchmark_command,
        rounds,
    })
}

/// Runs the set workload flat out for `load` with a fresh client, recording every op.
/// The rate is ok completions over the wall time until the last op in flight completed.
async fn faultline_round(
    workload: &dyn Workload,
    recorder: &Recorder,
    nodes: &[NodeSpec],
    primaries: &mut Admin,
    load: Duration,
) -> Result<Round> {
    empty_sets(primaries).await?;
    let (client, _) =
        crate::formed::workload_client(Mode::Cluster, ClientConfig::default(), nodes).await?;
    let before = sadd_calls(primaries).await?;
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(load).await;
            stop.cancel();
        })
    };
    let start = Instant::now();
    let cpu_before = super::scale::own_cpu_s();
    workload
        .run(client, recorder.clone(), stop, counters.clone())
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = super::scale::own_cpu_s() - cpu_before;
    timer.abort();
    let spread = since(&before, &sadd_calls(primaries).await?);
    let (ok, fail, info) = counters.snapshot();
    let round = Round {
        tool: Tool::Faultline,
        per_s: ok as f64 / elapsed,
        elapsed_s: elapsed,
        ok,
        not_ok: fail + info,
        sadd_per_primary: spread,
        cpu_per_s: cpu / elapsed,
        cpu_us_per_op: cpu * 1e6 / ok.max(1) as f64,
    };
    eprintln!(
        "bench: faultline: {:.0} ops/s recorded ({ok} ok, {fail} fail, {info} info in {elapsed:.2}s, {:.2} CPUs busy in faultline, {:.2} us CPU per op); SADDs per primary [{}]",
        round.per_s,
        cpu / elapsed,
        round.cpu_us_per_op,
        counts(&round.sadd_per_primary)
    );
    Ok(round)
}

/// A redis-benchmark round of about `--seconds`: the first time (`known` is `None`), a
/// short calibration run (about a quarter of the time, sized from `guess_per_s`,
/// faultline's rate) measures the benchmark's own rate, which sizes the counted run's
/// `-n`; later rounds reuse that `-n`.
///
/// # Returns
/// The round, its command line and its `-n`.
async fn sized_benchmark_round(
    args: &BenchArgs,
    setup: &Setup,
    seed: &NodeSpec,
    pipeline: usize,
    guess_per_s: f64,
    known: Option<u64>,
    primaries: &mut Admin,
) -> Result<(Round, String, u64)> {
    let requests = |per_s: f64, seconds: f64| {
        ((per_s * seconds).round() as u64).max((args.concurrency * pipeline) as u64)
    };
    let c = args.concurrency;
    let counted = match known {
        Some(n) => n,
        None => {
            eprintln!("bench: redis-benchmark calibration (not counted)");
            let probe = requests(guess_per_s, args.seconds / 4.0);
            let (calibration, _) =
                benchmark_round(setup, seed, c, pipeline, probe, primaries).await?;
            requests(calibration.per_s, args.seconds)
        }
    };
    let (round, line) = benchmark_round(setup, seed, c, pipeline, counted, primaries).await?;
    Ok((round, line, counted))
}

/// Runs `redis-benchmark --cluster -t sadd -P pipeline` for `requests` requests from
/// `seed`, which the benchmark asks for the slot map; each of its connections then sticks
/// to one primary and adds to `myset:{tag}` with a tag that hashes to a slot of that
/// primary.
///
/// # Returns
/// The round and the command line, as run.
///
/// # Errors
/// The benchmark cannot run, fails, takes far longer than expected, or prints no rate.
async fn benchmark_round(
    setup: &Setup,
    seed: &NodeSpec,
    concurrency: usize,
    pipeline: usize,
    requests: u64,
    primaries: &mut Admin,
) -> Result<(Round, String)> {
    empty_sets(primaries).await?;
    let args = [
        "--cluster".to_string(),
        "-h".into(),
        seed.ip.to_string(),
        "-p".into(),
        seed.port.to_string(),
        "-c".into(),
        concurrency.to_string(),
        "-n".into(),
        requests.to_string(),
        "-P".into(),
        pipeline.to_string(),
        "-t".into(),
        "sadd".into(),
        "-r".into(),
        RANDOM_RANGE.to_string(),
        "--csv".into(),
    ];
    let line = format!("{} {}", setup.benchmark.display(), args.join(" "));
    eprintln!("bench: running {line}");
    let before = sadd_calls(primaries).await?;
    let start = Instant::now();
    let cpu_before = super::scale::children_cpu_s();
    let run = tokio::process::Command::new(&setup.benchmark)
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    // Generous: it should take about as long as the faultline round did.
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .map_err(|_| anyhow!("`{line}` did not finish within 300s"))?
        .with_context(|| format!("running {}", setup.benchmark.display()))?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = super::scale::children_cpu_s() - cpu_before;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let per_s = parse_csv_rate(&stdout, "SADD").with_context(|| format!("`{line}`"))?;
    let spread = since(&before, &sadd_calls(primaries).await?);
    let executed: u64 = spread.iter().sum();
    eprintln!(
        "bench: redis-benchmark: {per_s:.0} req/s ({requests} requests in {elapsed:.2}s, {:.2} CPUs busy in it, {:.2} us CPU per request); SADDs per primary [{}], {executed} in all",
        cpu / elapsed,
        cpu * 1e6 / requests.max(1) as f64,
        counts(&spread)
    );
    let round = Round {
        tool: Tool::RedisBenchmark,
        per_s,
        elapsed_s: elapsed,
        ok: requests,
        not_ok: requests.saturating_sub(executed),
        sadd_per_primary: spread,
        cpu_per_s: cpu / elapsed,
        cpu_us_per_op: cpu * 1e6 / requests.max(1) as f64,
    };
    Ok((round, line))
}

/// The requests per second of `test` in redis-benchmark's `--csv` output, whose lines are
/// `"test","rps","avg_latency_ms",...` (cluster mode prints its node list before them).
///
/// # Errors
/// No line for `test`, or a rate that is not a number.
fn parse_csv_rate(stdout: &str, test: &str) -> Result<f64> {
    let quoted = format!("\"{test}\",");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&quoted))
        .ok_or_else(|| anyhow!("printed no {quoted:?} line: {}", stdout.trim()))?;
    let rate = line
        .split(',')
        .nth(1)
        .map(|f| f.trim_matches('"'))
        .unwrap_or_default();
    rate.parse()
        .map_err(|_| anyhow!("printed a rate that is not a number: {line}"))
}

/// `SADD` calls each of the admin's nodes has executed so far (INFO commandstats).
async fn sadd_calls(admin: &mut Admin) -> Result<Vec<u64>> {
    let mut calls = Vec::new();
    for i in 0..PRIMARIES {
        let info: String = admin
            .cmd(i, redis::cmd("INFO").arg("commandstats"))
            .await
            .context("reading INFO commandstats")?;
        calls.push(parse_sadd_calls(&info));
    }
    Ok(calls)
}

/// Empties every primary (`FLUSHALL`) and waits until its replica has done the same
/// (`WAIT 1`), outside the timed part, so every round of either tool starts on empty sets.
/// Without it each round added to what the rounds before left: faultline's adds are all
/// new elements, its sets grew by millions a round, and the later rounds (of both tools)
/// ran on a server busier rehashing and allocating than the first.
///
/// # Errors
/// A primary that does not flush.
async fn empty_sets(primaries: &mut Admin) -> Result<()> {
    for i in 0..PRIMARIES {
        let _: () = primaries
            .cmd(i, &redis::cmd("FLUSHALL"))
            .await
            .context("emptying the cluster before a round")?;
        // Best effort: a server without WAIT still starts the round flushed.
        let _: Result<i64> = primaries
            .cmd(i, redis::cmd("WAIT").arg(super::REPLICAS).arg(10_000))
            .await;
    }
    Ok(())
}

/// `calls=` of the `cmdstat_sadd:` line; 0 before the first SADD.
fn parse_sadd_calls(info: &str) -> u64 {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("cmdstat_sadd:"))
        .and_then(|fields| {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))
                .and_then(|c| c.parse().ok())
        })
        .unwrap_or(0)
}

/// Element-wise `after - before`.
fn since(before: &[u64], after: &[u64]) -> Vec<u64> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect()
}

/// `n1 123, n2 456, ...`.
fn counts(per_node: &[u64]) -> String {
    per_node
        .iter()
        .enumerate()
        .map(|(i, c)| format!("n{} {c}", i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One tool's rounds' rates, space separated.
pub(super) fn rates(rounds: &[Round], tool: Tool) -> String {
    rounds
        .iter()
        .filter(|r| r.tool == tool)
        .map(|r| format!("{:.0}", r.per_s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One tool's rounds' CPU microseconds per op, space separated.
pub(super) fn cpu_costs(rounds: &[Round], tool: Tool) -> String {
    rounds
        .iter()
        .filter(|r| r.tool == tool)
        .map(|r| format!("{:.2}", r.cpu_us_per_op))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rate_is_read_past_the_cluster_preamble() {
        let out = "Cluster has 3 master nodes:\n\nMaster 0: abc 10.77.3.11:6379\n\n\
            \"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\"\n\
            \"SADD\",\"26476.04\",\"1.378\",\"0.064\"\n";
        assert_eq!(parse_csv_rate(out, "SADD").unwrap(), 26476.04);
        assert!(parse_csv_rate(out, "SET").is_err());
    }

    #[test]
    fn sadd_calls_come_from_commandstats() {
        let info = "# Commandstats\r\ncmdstat_ping:calls=3,usec=1\r\n\
            cmdstat_sadd:calls=61976,usec=129646,usec_per_call=2.09,rejected_calls=0\r\n";
        assert_eq!(parse_sadd_calls(info), 61976);
        assert_eq!(parse_sadd_calls("# Commandstats\r\n"), 0);
    }
}
