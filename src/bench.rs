//! `faultline bench`: measures the harness against the plain tools a person would use, on
//! the same machine in the same run, and reports ratios (never asserts them: timings on a
//! shared machine are evidence, not a verdict).
//!
//! - Throughput: on one 3x1 cluster formed exactly as `faultline run` forms it, the set
//!   workload flat out (every op recorded to `history.jsonl`) alternates with
//!   `redis-benchmark --cluster -t sadd` at the same concurrency: faultline, benchmark
//!   (after a short uncounted calibration run that sizes its `-n` to about as long),
//!   faultline. Per-primary `SADD` counts (INFO commandstats) show both sides really spread
//!   over all three shards.
//! - Start-up (skipped with `--startups 0`): time to a converged 3x1 cluster, faultline
//!   (namespaces, own formation) against six servers of the same flavor started by hand on
//!   127.0.0.1 and joined with `redis-cli --cluster create`; the order alternates between
//!   repetitions, and both sides end on the same agreement check.
//!
//! Everything goes into `STORE/bench/<timestamp>/`, with the figures in `bench.json`.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use faultline_history::Recorder;
use faultline_workloads::{ClientConfig, ClusterClient, Counters, SetSpec, SetWorkload};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{self, Backend, BackendPlan, NodeSpec};
use crate::cli::BenchArgs;
use crate::cluster::{start_and_form, Admin, Layout};
use crate::exit::{Failure, VALID};
use crate::flavor::{self, Flavor, NodeConfig};
use crate::ledger::RunId;
use crate::scenario::{BackendName, ClusterSpec, FlavorName};
use crate::store::{self, HISTORY_FILE};
use crate::sys::which;

/// The figures, next to the history and the servers' logs.
const REPORT_FILE: &str = "bench.json";
/// Shape measured on both sides.
const PRIMARIES: usize = 3;
/// Replicas per primary.
const REPLICAS: usize = 1;
/// Keys of the set workload, as in the built-in scenario.
const SET_KEYS: usize = 32;
/// `redis-benchmark -r`: random members drawn from this many.
const RANDOM_RANGE: u64 = 1_000_000;

/// `faultline bench`.
///
/// # Errors
/// Bad input (254) for an unknown flavor or an unusable number; harness error (255) for
/// anything that fails while measuring, including an interrupt. Whatever the bench
/// started is stopped and removed on every path.
pub async fn command(args: BenchArgs) -> Result<u8, Failure> {
    let flavor_name = check_args(&args)?;
    let setup = Setup::prepare(flavor_name)?;
    let dir = store::create_run_dir(&args.store, "bench")?;
    eprintln!(
        "bench: {} {} on {} CPUs, C={}, S={}s, K={}\n  dir: {}",
        setup.flavor.name(),
        setup.version,
        cpus(),
        args.concurrency,
        args.seconds,
        args.startups,
        dir.display()
    );
    let report = tokio::select! {
        r = measure(&args, &setup, &dir) => r?,
        () = interrupted() => {
            return Err(Failure::from(anyhow!(
                "interrupted; the clusters the bench had started are stopped and removed"
            )))
        }
    };
    let path = dir.join(REPORT_FILE);
    fs::write(
        &path,
        serde_json::to_vec_pretty(&report).context("encoding the report")?,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", report.table());
    println!("bench directory: {}", dir.display());
    Ok(VALID)
}

/// The flavor named on the command line, once every number is usable.
fn check_args(args: &BenchArgs) -> Result<FlavorName, Failure> {
    let flavor = args.flavor;
    if !args.seconds.is_finite() || args.seconds <= 0.0 {
        return Err(Failure::bad_input(anyhow!(
            "--seconds must be greater than 0, got {}",
            args.seconds
        )));
    }
    if args.concurrency == 0 {
        return Err(Failure::bad_input(anyhow!(
            "--concurrency must be at least 1"
        )));
    }
    Ok(flavor)
}

/// What every measurement shares: the server, the peer tools and the cluster settings.
struct Setup {
    flavor: Arc<dyn Flavor>,
    binary: PathBuf,
    version: String,
    /// `redis-benchmark`, the throughput peer.
    benchmark: PathBuf,
    /// `redis-cli`, which forms the hand-made cluster.
    cli: PathBuf,
    /// The built-in scenario's cluster settings (node time-out, persistence, time-outs).
    cluster: ClusterSpec,
}

impl Setup {
    /// Checks we are root and finds the server and both peer tools.
    ///
    /// # Errors
    /// Not root, or a program missing from PATH (with how to install it).
    fn prepare(name: FlavorName) -> Result<Setup> {
        if !nix::unistd::geteuid().is_root() {
            bail!("the bench brings clusters up in network namespaces and must run as root (try sudo); `faultline doctor` lists what else is needed");
        }
        let flavor: Arc<dyn Flavor> = Arc::from(flavor::by_name(name));
        let binary = on_path(flavor.default_binary(), flavor.install_hint())?;
        let version = flavor.version(&binary)?;
        let tools_hint = "apt-get install redis-tools";
        Ok(Setup {
            benchmark: on_path("redis-benchmark", tools_hint)?,
            cli: on_path("redis-cli", tools_hint)?,
            flavor,
            binary,
            version,
            cluster: ClusterSpec::default(),
        })
    }

    /// How long a cluster may take to form before the bench gives up.
    fn form_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.cluster.form_timeout_s.get())
    }

    /// One node's config file, as the flavor writes it for `faultline run`.
    fn node_config(&self, ip: Ipv4Addr, port: u16, data_dir: &Path) -> String {
        self.flavor.config(&NodeConfig {
            ip,
            port,
            node_timeout_ms: self.cluster.node_timeout_ms.get(),
            persistence: self.cluster.persistence,
            data_dir: data_dir.to_path_buf(),
            log_file: data_dir.join("server.log"),
        })
    }
}

/// A program on PATH, or an error saying how to get it.
fn on_path(name: &str, hint: &str) -> Result<PathBuf> {
    which(Path::new(name)).ok_or_else(|| anyhow!("{name} is not on PATH; {hint}"))
}

/// Number of CPUs this process may use (0 if unknown), for the report.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// Resolves on the first Ctrl-C or SIGTERM. Dropping the bench's future then tears down
/// (the backend's and [`HandMade`]'s `Drop`, `kill_on_drop` for the peer tools).
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let (int, term) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    let (Ok(mut int), Ok(mut term)) = (int, term) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("\nbench: interrupted; stopping and removing what the bench started");
}

/// Everything `bench.json` holds.
#[derive(Debug, Serialize)]
struct Report {
    flavor: String,
    server_version: String,
    cpus: usize,
    seconds: f64,
    concurrency: usize,
    throughput: Throughput,
    /// Absent with `--startups 0`.
    startup: Option<Startup>,
}

/// Runs both comparisons in turn.
async fn measure(args: &BenchArgs, setup: &Setup, dir: &Path) -> Result<Report> {
    let throughput = throughput(args, setup, dir)
        .await
        .context("measuring throughput")?;
    let startup = if args.startups == 0 {
        None
    } else {
        Some(
            startup(args.startups, setup, dir)
                .await
                .context("measuring start-up")?,
        )
    };
    Ok(Report {
        flavor: setup.flavor.name().into(),
        server_version: setup.version.clone(),
        cpus: cpus(),
        seconds: args.seconds,
        concurrency: args.concurrency,
        throughput,
        startup,
    })
}

impl Report {
    /// The human summary: one line per comparison, then the samples behind it.
    fn table(&self) -> String {
        let t = &self.throughput;
        let mut out = format!(
            "{} {} on {} CPUs\nthroughput (C={}, S={}s): faultline {:.0} ops/s recorded, redis-benchmark {:.0} req/s, ratio {:.2}\n  faultline rounds [{}] ops/s; redis-benchmark rounds [{}] req/s\n  note: {}",
            self.flavor,
            self.server_version,
            self.cpus,
            self.concurrency,
            self.seconds,
            t.faultline_ops_per_s,
            t.benchmark_req_per_s,
            t.ratio,
            rates(&t.rounds, Tool::Faultline),
            rates(&t.rounds, Tool::RedisBenchmark),
            t.note,
        );
        match &self.startup {
            Some(s) => out.push_str(&format!(
                "\nstart-up to converged {PRIMARIES}x{REPLICAS} (K={}): faultline median {:.2}s [{}], by hand median {:.2}s [{}], ratio {:.2}",
                s.faultline_s.len(),
                s.faultline_median_s,
                samples(&s.faultline_s),
                s.by_hand_median_s,
                samples(&s.by_hand_s),
                s.ratio
            )),
            None => out.push_str("\nstart-up: skipped (--startups 0)"),
        }
        out
    }
}

/// One tool's rounds' rates, space separated.
fn rates(rounds: &[Round], tool: Tool) -> String {
    rounds
        .iter()
        .filter(|r| r.tool == tool)
        .map(|r| format!("{:.0}", r.per_s))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds, space separated.
fn samples(s: &[f64]) -> String {
    s.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The middle sample (the mean of the two middle ones for an even count).
fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The plain mean.
fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

// ---------------------------------------------------------------------------------------
// Bringing a cluster up the way `faultline run` does.
// ---------------------------------------------------------------------------------------

/// A formed, agreed 3x1 cluster on the local backend, exactly as `run::execute` makes it:
/// namespaces and addresses, every server started, PING answered, then our own formation
/// until every node agrees on the layout and every replica's link is up.
///
/// # Errors
/// Provisioning, a server that dies, or no agreement within the form time-out. The backend
/// is torn down (by its `Drop`) before the error returns.
async fn bring_up(setup: &Setup, run_dir: &Path) -> Result<Box<dyn Backend>> {
    fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let mut backend = backend::create(
        BackendName::Local,
        BackendPlan {
            run_id: RunId::random(),
            run_dir: run_dir.to_path_buf(),
            node_names: node_names(),
            flavor: setup.flavor.clone(),
            binary: setup.binary.clone(),
            node_timeout_ms: setup.cluster.node_timeout_ms.get(),
            persistence: setup.cluster.persistence,
            rootfs: None,
            keep: false,
        },
    )?;
    let deadline = Instant::now() + setup.form_timeout();
    start_and_form(
        backend.as_mut(),
        &Layout::new(PRIMARIES, REPLICAS),
        deadline,
    )
    .await?;
    Ok(backend)
}

/// `n1` .. `n6`; the first three are the primaries of [`Layout::new`].
fn node_names() -> Vec<String> {
    (1..=PRIMARIES * (1 + REPLICAS))
        .map(|i| format!("n{i}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Throughput.
// ---------------------------------------------------------------------------------------

/// Who produced a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Tool {
    /// faultline's set workload, every op recorded.
    Faultline,
    /// `redis-benchmark --cluster -t sadd`.
    RedisBenchmark,
}

/// One timed round of load on the cluster.
#[derive(Debug, Serialize)]
struct Round {
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
}

/// Why the two throughput figures differ in kind, printed with them.
const THROUGHPUT_NOTE: &str = "faultline's client multiplexes its C workers over one connection per primary (so up to C/3 requests ride each connection at once); redis-benchmark -c C opens C connections with one request in flight each";

/// The throughput comparison.
#[derive(Debug, Serialize)]
struct Throughput {
    /// Mean over faultline's rounds.
    faultline_ops_per_s: f64,
    /// Mean over redis-benchmark's rounds.
    benchmark_req_per_s: f64,
    /// faultline / redis-benchmark.
    ratio: f64,
    /// The redis-benchmark command line of the (last) benchmark round.
    benchmark_command: String,
    /// In the order they ran (the benchmark's calibration run is not among them).
    rounds: Vec<Round>,
    /// [`THROUGHPUT_NOTE`].
    note: &'static str,
}

/// Brings a cluster up and runs faultline, redis-benchmark, faultline on it, each for about
/// `--seconds` (see [`sized_benchmark_round`] for how the benchmark's `-n` is chosen).
///
/// # Errors
/// The cluster does not form, a round fails, or faultline completes no op at all.
async fn throughput(args: &BenchArgs, setup: &Setup, dir: &Path) -> Result<Throughput> {
    eprintln!("bench: throughput: bringing up a {PRIMARIES}x{REPLICAS} cluster");
    let mut backend = bring_up(setup, &dir.join("throughput")).await?;
    let nodes = backend.nodes().to_vec();
    let history = dir.join(HISTORY_FILE);
    let recorder = Recorder::create_at(&history, std::time::Instant::now())
        .with_context(|| format!("creating {}", history.display()))?;
    let workload = SetWorkload::new(SetSpec {
        keys: SET_KEYS,
        concurrency: args.concurrency,
        rate: None,
        seed: rand::random(),
    });
    let mut primaries = Admin::new(&nodes[..PRIMARIES]);
    let load = Duration::from_secs_f64(args.seconds);

    let mut rounds = Vec::new();
    let first = faultline_round(&workload, &recorder, &nodes, &mut primaries, load).await?;
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
    let (round, benchmark_command) =
        sized_benchmark_round(args, setup, &nodes[0], first_rate, &mut primaries).await?;
    rounds.push(round);
    rounds.push(faultline_round(&workload, &recorder, &nodes, &mut primaries, load).await?);
    recorder.close().context("writing the history")?;
    backend.teardown()?;

    let per_s = |tool| {
        mean(
            &rounds
                .iter()
                .filter(|r| r.tool == tool)
                .map(|r| r.per_s)
                .collect::<Vec<_>>(),
        )
    };
    let (ours, theirs) = (per_s(Tool::Faultline), per_s(Tool::RedisBenchmark));
    Ok(Throughput {
        faultline_ops_per_s: ours,
        benchmark_req_per_s: theirs,
        ratio: ours / theirs,
        benchmark_command,
        rounds,
        note: THROUGHPUT_NOTE,
    })
}

/// Runs the set workload flat out for `load` with a fresh client, recording every op.
/// The rate is ok completions over the wall time until the last op in flight completed.
async fn faultline_round(
    workload: &SetWorkload,
    recorder: &Recorder,
    nodes: &[NodeSpec],
    primaries: &mut Admin,
    load: Duration,
) -> Result<Round> {
    let client = Arc::new(ClusterClient::new(
        ClientConfig::default(),
        &nodes
            .iter()
            .map(|n| (n.name.clone(), n.addr()))
            .collect::<Vec<_>>(),
    ));
    client
        .refresh_slots()
        .await
        .context("reading the slot map")?;
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
    workload
        .run(client, recorder.clone(), stop, counters.clone())
        .await;
    let elapsed = start.elapsed().as_secs_f64();
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
    };
    eprintln!(
        "bench: faultline: {:.0} ops/s recorded ({ok} ok, {fail} fail, {info} info in {elapsed:.2}s); SADDs per primary [{}]",
        round.per_s,
        counts(&round.sadd_per_primary)
    );
    Ok(round)
}

/// A redis-benchmark round of about `--seconds`: a short calibration run (about a quarter
/// of the time, sized from `guess_per_s`, faultline's rate) measures the benchmark's own
/// rate, which sizes the counted run's `-n`.
async fn sized_benchmark_round(
    args: &BenchArgs,
    setup: &Setup,
    seed: &NodeSpec,
    guess_per_s: f64,
    primaries: &mut Admin,
) -> Result<(Round, String)> {
    let requests =
        |per_s: f64, seconds: f64| ((per_s * seconds).round() as u64).max(args.concurrency as u64);
    let c = args.concurrency;
    eprintln!("bench: redis-benchmark calibration (not counted)");
    let probe = requests(guess_per_s, args.seconds / 4.0);
    let (calibration, _) = benchmark_round(setup, seed, c, probe, primaries).await?;
    let counted = requests(calibration.per_s, args.seconds);
    benchmark_round(setup, seed, c, counted, primaries).await
}

/// Runs `redis-benchmark --cluster -t sadd` for `requests` requests from `seed`, which the
/// benchmark asks for the slot map; each of its connections then sticks to one primary and
/// adds to `myset:{tag}` with a tag that hashes to a slot of that primary.
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
    requests: u64,
    primaries: &mut Admin,
) -> Result<(Round, String)> {
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
        "bench: redis-benchmark: {per_s:.0} req/s ({requests} requests in {elapsed:.2}s); SADDs per primary [{}], {executed} in all",
        counts(&spread)
    );
    let round = Round {
        tool: Tool::RedisBenchmark,
        per_s,
        elapsed_s: elapsed,
        ok: requests,
        not_ok: requests.saturating_sub(executed),
        sadd_per_primary: spread,
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

// ---------------------------------------------------------------------------------------
// Start-up.
// ---------------------------------------------------------------------------------------

/// What "converged" means on the hand-made side, for the report.
const CONVERGED: &str = "every node answers, reports cluster_state:ok, knows all 6 nodes with no handshake/fail flag, all agree on slot owners and roles, every replica's master_link_status is up (Admin::wait_agreed, the check faultline's own formation ends with)";

/// The start-up comparison.
#[derive(Debug, Serialize)]
struct Startup {
    /// Wall time from just before `backend::create` to `Admin::form` returning.
    faultline_s: Vec<f64>,
    /// Wall time from writing the first config file to the same agreement check passing.
    by_hand_s: Vec<f64>,
    faultline_median_s: f64,
    by_hand_median_s: f64,
    /// faultline / by hand (below 1: faultline is faster).
    ratio: f64,
    /// The end condition on both sides.
    converged_when: &'static str,
}

/// `k` repetitions of both start-ups, alternating which goes first.
///
/// # Errors
/// The first start-up that fails (what it started is removed first).
async fn startup(k: usize, setup: &Setup, dir: &Path) -> Result<Startup> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for rep in 1..=k {
        if rep % 2 == 1 {
            ours.push(faultline_startup(setup, dir, rep).await?);
            theirs.push(by_hand_startup(setup, dir, rep).await?);
        } else {
            theirs.push(by_hand_startup(setup, dir, rep).await?);
            ours.push(faultline_startup(setup, dir, rep).await?);
        }
    }
    let (m_ours, m_theirs) = (median(&ours), median(&theirs));
    Ok(Startup {
        faultline_s: ours,
        by_hand_s: theirs,
        faultline_median_s: m_ours,
        by_hand_median_s: m_theirs,
        ratio: m_ours / m_theirs,
        converged_when: CONVERGED,
    })
}

/// Seconds for faultline to bring up a converged cluster (repetition `rep`, logs under
/// `dir/startup-REP/`); the teardown after is not timed.
async fn faultline_startup(setup: &Setup, dir: &Path, rep: usize) -> Result<f64> {
    let start = Instant::now();
    let mut backend = bring_up(setup, &dir.join(format!("startup-{rep}")))
        .await
        .with_context(|| format!("faultline start-up {rep}"))?;
    let took = start.elapsed().as_secs_f64();
    backend.teardown()?;
    eprintln!("bench: start-up {rep}: faultline {took:.2}s");
    Ok(took)
}

/// Seconds for the by-hand recipe: six servers on 127.0.0.1 with the same config text,
/// `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`, then polling until
/// the cluster agrees ([`CONVERGED`]); everything under `dir/byhand-REP/`. The servers are
/// killed afterwards, untimed.
async fn by_hand_startup(setup: &Setup, dir: &Path, rep: usize) -> Result<f64> {
    let dir = &dir.join(format!("byhand-{rep}"));
    let took = by_hand(setup, dir)
        .await
        .with_context(|| format!("by-hand start-up {rep} (see {})", dir.display()))?;
    eprintln!("bench: start-up {rep}: by hand {took:.2}s");
    Ok(took)
}

/// [`by_hand_startup`] in `dir`.
async fn by_hand(setup: &Setup, dir: &Path) -> Result<f64> {
    let ports = free_ports(PRIMARIES * (1 + REPLICAS))?;
    let start = Instant::now();
    let mut servers = HandMade::default();
    let mut nodes = Vec::new();
    for (name, port) in node_names().into_iter().zip(ports) {
        let node_dir = std::path::absolute(dir.join(&name))
            .with_context(|| format!("resolving {}", dir.display()))?;
        servers.start(setup, &node_dir, port)?;
        nodes.push(NodeSpec {
            name,
            ip: Ipv4Addr::LOCALHOST,
            port,
        });
    }
    let deadline = Instant::now() + setup.form_timeout();
    let mut admin = Admin::new(&nodes);
    servers.wait_up(&mut admin, nodes.len(), deadline).await?;
    cluster_create(setup, &nodes, dir, deadline).await?;
    admin
        .wait_agreed(None, deadline)
        .await
        .context("waiting for the hand-made cluster to agree")?;
    let took = start.elapsed().as_secs_f64();
    drop(servers);
    Ok(took)
}

/// `n` ports on 127.0.0.1 that are free now, and whose cluster bus port (`port + 10000`)
/// is free too. All are held while choosing, so no two are the same.
///
/// # Errors
/// If the kernel hands out no suitable port after many tries.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..1000 {
        let client = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
        let port = client.local_addr()?.port();
        let bus = port
            .checked_add(10_000)
            .and_then(|bus_port| TcpListener::bind((Ipv4Addr::LOCALHOST, bus_port)).ok());
        if let Some(bus) = bus {
            held.push((client, bus));
            ports.push(port);
            if ports.len() == n {
                return Ok(ports);
            }
        }
    }
    bail!("found no {n} free port pairs (port, port+10000) on 127.0.0.1")
}

/// Servers started by hand, each in its own process group. Dropping it SIGKILLs and reaps
/// every one, on every path out of the by-hand start-up.
#[derive(Default)]
struct HandMade {
    children: Vec<(Child, PathBuf)>,
}

impl HandMade {
    /// Writes `data_dir/server.conf` (the flavor's config, bound to 127.0.0.1:`port`) and
    /// starts the server on it.
    fn start(&mut self, setup: &Setup, data_dir: &Path, port: u16) -> Result<()> {
        fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let conf = data_dir.join("server.conf");
        fs::write(
            &conf,
            setup.node_config(Ipv4Addr::LOCALHOST, port, data_dir),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let console = fs::File::create(data_dir.join("console.log"))?;
        let mut cmd = std::process::Command::new(&setup.binary);
        cmd.arg(&conf)
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            // A Ctrl-C reaches faultline, which then kills these in order.
            .process_group(0);
        // SAFETY: only an async-signal-safe system call between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // If faultline dies, even by SIGKILL, these die with it.
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", setup.binary.display()))?;
        self.children.push((child, data_dir.to_path_buf()));
        Ok(())
    }

    /// A server that has exited, with the end of its log.
    fn exited(&mut self) -> Option<String> {
        self.children.iter_mut().find_map(|(child, dir)| {
            let status = child.try_wait().ok()??;
            let log = fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect();
            Some(format!(
                "{} exited ({status}): {}",
                dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ))
        })
    }

    /// Waits until every server answers PING.
    ///
    /// # Errors
    /// A server exits, or one does not answer by `deadline`.
    async fn wait_up(&mut self, admin: &mut Admin, n: usize, deadline: Instant) -> Result<()> {
        for i in 0..n {
            loop {
                if let Some(exit) = self.exited() {
                    bail!("server process died while starting: {exit}");
                }
                match admin.cmd::<String>(i, &redis::cmd("PING")).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        Ok(())
    }
}

impl Drop for HandMade {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `redis-cli --cluster create` over `nodes` with one replica per primary; its output goes
/// to `dir/redis-cli.log`.
///
/// # Errors
/// redis-cli fails or does not finish by `deadline`.
async fn cluster_create(
    setup: &Setup,
    nodes: &[NodeSpec],
    dir: &Path,
    deadline: Instant,
) -> Result<()> {
    let mut args = vec!["--cluster".to_string(), "create".into()];
    args.extend(nodes.iter().map(NodeSpec::addr));
    args.extend(["--cluster-replicas".into(), REPLICAS.to_string()]);
    args.push("--cluster-yes".into());
    let line = format!("{} {}", setup.cli.display(), args.join(" "));
    let run = tokio::process::Command::new(&setup.cli)
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout_at(deadline, run)
        .await
        .map_err(|_| anyhow!("`{line}` did not finish in time"))?
        .with_context(|| format!("running {}", setup.cli.display()))?;
    let log = dir.join("redis-cli.log");
    fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat())
        .with_context(|| format!("writing {}", log.display()))?;
    if !out.status.success() {
        bail!("`{line}` failed ({}); see {}", out.status, log.display());
    }
    Ok(())
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

    #[test]
    fn median_of_even_count_is_the_middle_mean() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
