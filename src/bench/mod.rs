//! `faultline bench`: measures the harness against the plain tools a person would use, on
//! the same machine in the same run, and reports ratios (never asserts them: timings on a
//! shared machine are evidence, not a verdict).
//!
//! - Throughput: on one 3x1 cluster formed exactly as `faultline run` forms it, the set
//!   workload flat out (every op recorded to a history) alternates with
//!   `redis-benchmark --cluster -t sadd`: faultline, benchmark (after a short uncounted
//!   calibration run that sizes its `-n` to about as long), faultline, benchmark,
//!   faultline (`--rounds` pairs). Each round also records the CPU its tool used per op
//!   (faultline's own rusage; the benchmark's from `RUSAGE_CHILDREN`). Twice: against
//!   `-c C -P 1` with C faultline processes, then against `-c C -P P` with C x P, the same
//!   requests in flight on both sides. Per-primary `SADD` counts (INFO commandstats) show
//!   both sides really spread over all three shards.
//! - Start-up (skipped with `--startups 0`): time to a converged 3x1 cluster, faultline
//!   (namespaces, own formation) against six servers of the same flavor started by hand on
//!   127.0.0.1 and joined with `redis-cli --cluster create`; the order alternates between
//!   repetitions, and both sides end on the same agreement check.
//!
//! Everything goes into `STORE/bench/<timestamp>/`, with the figures in `bench.json`.
//!
//! Here: the command, what both comparisons share and the report; `throughput` and
//! `startup` are the two comparisons, `stats` the arithmetic on their samples.

mod faults;
mod nodes;
mod scale;
mod startup;
mod stats;
mod throughput;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tokio::time::Instant;

use self::startup::{docker_startup, startup, DockerStartup, Startup};
use self::stats::samples;
use self::throughput::{cpu_costs, rates, throughput, Throughput, Tool};
use crate::backend::{self, Backend, BackendPlan};
use crate::cli::BenchArgs;
use crate::cluster::{start_and_form, Layout};
use crate::exit::{Failure, VALID};
use crate::flavor::{self, Flavor, NodeConfig};
use crate::ledger::RunId;
use crate::scenario::{BackendName, ClusterSpec, FlavorName};
use crate::store;
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
    if args.scale {
        return scale_command(&args);
    }
    if args.faults {
        return faults_command(&args);
    }
    let flavor_name = check_args(&args)?;
    let setup = Setup::prepare(flavor_name)?;
    let dir = store::create_run_dir(&args.store, "bench")?;
    eprintln!(
        "bench: {} {} on {} CPUs, C={}, P={}, S={}s, K={}\n  dir: {}",
        setup.flavor.name(),
        setup.version,
        cpus(),
        args.concurrency,
        args.pipeline,
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

/// `faultline bench --scale`: the figures go to `bench.json` as for the other mode.
fn scale_command(args: &BenchArgs) -> Result<u8, Failure> {
    if args.ops == 0 {
        return Err(Failure::bad_input(anyhow!("--ops must be at least 1")));
    }
    let dir = store::create_run_dir(&args.store, "bench-scale")?;
    eprintln!("bench --scale on {} CPUs\n  dir: {}", cpus(), dir.display());
    if let Some(n) = args.nodes {
        let measured = nodes::measure(
            &dir.join("nodes"),
            args.flavor,
            n,
            args.replicas,
            args.seconds,
            args.raise_neigh_cap,
        )?;
        let path = dir.join(REPORT_FILE);
        fs::write(
            &path,
            serde_json::to_vec_pretty(&measured).context("encoding the report")?,
        )
        .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", measured.table());
        println!("bench directory: {}", dir.display());
        return Ok(VALID);
    }
    let analysis = scale::analysis(&dir.join("analysis"), args.ops)?;
    let path = dir.join(REPORT_FILE);
    fs::write(
        &path,
        serde_json::to_vec_pretty(&analysis).context("encoding the report")?,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", analysis.table());
    println!("bench directory: {}", dir.display());
    Ok(VALID)
}

/// `faultline bench --faults`: the figures go to `bench.json` as for the other modes.
fn faults_command(args: &BenchArgs) -> Result<u8, Failure> {
    if args.per_kind == 0 || args.fault_primaries.contains(&0) {
        return Err(Failure::bad_input(anyhow!(
            "--per-kind and every --fault-primaries must be at least 1"
        )));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::from(anyhow!(
            "the bench brings clusters up in network namespaces and must run as root"
        )));
    }
    let dir = store::create_run_dir(&args.store, "bench-faults")?;
    eprintln!(
        "bench --faults on {} CPUs\n  dir: {}",
        cpus(),
        dir.display()
    );
    let figures = faults::measure(&dir, args.flavor, &args.fault_primaries, args.per_kind)?;
    let path = dir.join(REPORT_FILE);
    fs::write(
        &path,
        serde_json::to_vec_pretty(&figures).context("encoding the report")?,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", figures.table());
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
    if args.pipeline == 0 {
        return Err(Failure::bad_input(anyhow!("--pipeline must be at least 1")));
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
        // faultline-node is found beside faultline first, as `run` finds it.
        let binary = match flavor.bundled_binary() {
            Some(b) => b,
            None => on_path(flavor.default_binary(), flavor.install_hint())?,
        };
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
    /// Docker against local start-up; absent with `--docker-startups 0` (the default).
    docker_startup: Option<DockerStartup>,
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
    let docker_startup = if args.docker_startups == 0 {
        None
    } else {
        Some(
            docker_startup(args.docker_startups, setup, dir)
                .await
                .context("measuring docker start-up")?,
        )
    };
    Ok(Report {
        docker_startup,
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
            "{} {} on {} CPUs",
            self.flavor, self.server_version, self.cpus
        );
        for c in &t.comparisons {
            out.push_str(&format!(
                "\nthroughput -P {} (S={}s): faultline {:.0} ops/s recorded ({} processes, {} to a task), redis-benchmark -c {} -P {} {:.0} req/s, ratio {:.2}\n  faultline rounds [{}] ops/s; redis-benchmark rounds [{}] req/s\n  CPU per op: faultline {:.2} us [{}], redis-benchmark {:.2} us [{}], ratio {:.2}",
                c.pipeline,
                self.seconds,
                c.faultline_ops_per_s,
                c.processes,
                c.batch,
                c.connections,
                c.pipeline,
                c.benchmark_req_per_s,
                c.ratio,
                rates(&c.rounds, Tool::Faultline),
                rates(&c.rounds, Tool::RedisBenchmark),
                c.faultline_cpu_us_per_op,
                cpu_costs(&c.rounds, Tool::Faultline),
                c.benchmark_cpu_us_per_req,
                cpu_costs(&c.rounds, Tool::RedisBenchmark),
                c.faultline_cpu_us_per_op / c.benchmark_cpu_us_per_req,
            ));
        }
        out.push_str(&format!("\n  note: {}", t.note));
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
        if let Some(d) = &self.docker_startup {
            out.push_str(&format!(
                "\ndocker start-up to converged {PRIMARIES}x{REPLICAS} (K={}, {}): docker median {:.2}s [{}], local median {:.2}s [{}], ratio {:.2}",
                d.docker_s.len(),
                d.image,
                d.docker_median_s,
                samples(&d.docker_s),
                d.local_median_s,
                samples(&d.local_s),
                d.ratio
            ));
        }
        out
    }
}

/// A formed, agreed 3x1 cluster on the local backend, exactly as `run::execute` makes it:
/// namespaces and addresses, every server started, PING answered, then our own formation
/// until every node agrees on the layout and every replica's link is up.
///
/// # Errors
/// Provisioning, a server that dies, or no agreement within the form time-out. The backend
/// is torn down (by its `Drop`) before the error returns.
async fn bring_up(setup: &Setup, run_dir: &Path) -> Result<Box<dyn Backend>> {
    bring_up_on(setup, run_dir, BackendName::Local, None).await
}

/// [`bring_up`] on `backend`, the server from `rootfs` when given (the docker backend's
/// image: the binary is the one inside it, as `Server::resolve` names it).
async fn bring_up_on(
    setup: &Setup,
    run_dir: &Path,
    backend_name: BackendName,
    rootfs: Option<&crate::rootfs::RootFs>,
) -> Result<Box<dyn Backend>> {
    fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let binary = match rootfs {
        Some(_) => PathBuf::from("/usr/bin").join(setup.flavor.default_binary()),
        None => setup.binary.clone(),
    };
    let mut backend = backend::create(
        backend_name,
        BackendPlan {
            run_id: RunId::random(),
            run_dir: run_dir.to_path_buf(),
            node_names: node_names(),
            flavor: setup.flavor.clone(),
            binary,
            node_timeout_ms: setup.cluster.node_timeout_ms.get(),
            persistence: setup.cluster.persistence,
            rootfs: rootfs.cloned(),
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
