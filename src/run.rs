//! `faultline run`: one run, start to verdict.
//!
//! scenario -> resolved plan (seed) -> backend brings nodes up -> cluster formed and agreed
//! -> workload runs, recording every op -> final phase (cluster agrees again, final reads)
//! -> teardown (unless `--keep`) -> checkers -> results.json -> exit code.
//!
//! Ctrl-C (or SIGTERM) stops the workload, skips the final phase, tears down and checks what
//! was recorded (the verdict is then at best unknown). A second Ctrl-C tears down at once
//! and exits 255. Errors and panics tear down through the backend's `Drop`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use faultline_history::Recorder;
use faultline_nemeses::proxy::{BusMode, BusProxy};
use faultline_nemeses::runner::heal_one;
use faultline_nemeses::{Ctx, Heal, Nemesis, NemesisSpec};
use faultline_workloads::{
    ClientConfig, Counters, KeyClient, StandaloneClient, Workload, WorkloadParams,
};
use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::{self, Backend, BackendPlan, NodeSpec};
use crate::cli::RunArgs;
use crate::cluster::Layout;
use crate::control::{lock, BackendControl};
use crate::exit::{self, Failure};
use crate::flavor::{self, Flavor};
use crate::formed::Formed;
use crate::ledger::{Ledger, RunId};
use crate::live;
use crate::observer::Observer;
use crate::scenario::{BackendName, ClientName, Mode, Scenario};
use crate::server::Server;
use crate::store::{self, HISTORY_FILE, SCENARIO_FILE};
use crate::{analyze, sys};

/// Finds a program on PATH (kept here for callers of `run::which`).
pub use crate::sys::which;

/// `faultline run`.
///
/// # Errors
/// Bad input (254) for an unusable scenario or override; harness error (255) otherwise.
pub async fn command(args: RunArgs) -> Result<u8, Failure> {
    let scenario = load_scenario(&args)?;
    let outcome = run_scenario(scenario, &args).await?;
    Ok(exit::for_validity(outcome.results.valid))
}

/// What one run left: where, with which server, and the verdicts (for `faultline matrix`).
pub struct RunOutcome {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The server version that ran.
    pub version: String,
    /// The verdicts, as written to results.json.
    pub results: faultline_checkers::Results,
    /// Wall-clock seconds, start to verdict.
    pub seconds: f64,
    /// Ctrl-C cut the run short (a matrix stops there).
    pub interrupted: bool,
}

/// Runs a loaded, resolved scenario (`args` gives the store and `--keep`; its overrides
/// are not applied here), prints the verdicts and returns them.
///
/// # Errors
/// Bad input (254) for an unusable scenario; harness error (255) otherwise.
pub async fn run_scenario(mut scenario: Scenario, args: &RunArgs) -> Result<RunOutcome, Failure> {
    let started = std::time::Instant::now();
    let run_id = RunId::random();
    // A live cluster is checked before anything else happens (nothing is written to it,
    // no run directory is made, if it is not fit to test).
    let live = live::preflight(&scenario, &live::key_prefix(&run_id)).await?;
    if live.is_none() {
        preflight(scenario.backend)?;
        if scenario.backend == BackendName::Loopback
            && scenario.mode == Mode::Cluster
            && scenario.cluster.bus == BusMode::Direct
        {
            // Partitions are cut there: loopback has no namespaces for iptables.
            scenario.cluster.bus = BusMode::Proxy;
            eprintln!(
                "faultline: backend loopback: the cluster bus goes through faultline's bus proxy (partitions are cut there)"
            );
        }
        if let Some(note) = flavor::faultline::embedded_default(&mut scenario, |b| {
            crate::sys::which(std::path::Path::new(b)).is_some()
        }) {
            eprintln!("faultline: {note}");
        }
    }
    let flavor: Arc<dyn Flavor> =
        Arc::from(flavor::for_cluster(scenario.flavor, &scenario.cluster));
    let server = match &live {
        Some(_) => None,
        None => Some(Server::resolve(&scenario, flavor.as_ref())?),
    };
    let version = match (&live, &server) {
        (Some(t), _) => t.version(),
        (None, Some(s)) => s.version.clone(),
        (None, None) => unreachable!("a run has a live target or a server"),
    };

    let run_dir = store::create_run_dir(&args.store, &scenario.name)?;
    std::fs::write(run_dir.join(SCENARIO_FILE), scenario.to_yaml())
        .with_context(|| format!("writing {}", run_dir.join(SCENARIO_FILE).display()))?;
    match &live {
        Some(t) => {
            std::fs::write(
                run_dir.join(live::PREFLIGHT_FILE),
                serde_json::to_string_pretty(&t.report()).unwrap_or_default(),
            )
            .with_context(|| format!("writing {}", run_dir.join(live::PREFLIGHT_FILE).display()))?;
            eprintln!(
                "faultline: run {run_id}: live cluster {} ({version}), {} nodes, access {}, \
                 {}s of {} workload on keys {}*, seed {}\n  dir: {}",
                t.spec.seeds.join(","),
                t.nodes.len(),
                t.spec.access,
                scenario.time_limit.get(),
                scenario.workload.name.label(),
                t.key_prefix,
                scenario.seed(),
                run_dir.display()
            );
        }
        None => eprintln!(
            "faultline: run {run_id}: {} {version}, {}x{} on {}, {}s of {} workload, seed {}\n  dir: {}",
            scenario.flavor,
            scenario.cluster.primaries.get(),
            scenario.cluster.replicas.get(),
            scenario.backend,
            scenario.time_limit.get(),
            scenario.workload.name.label(),
            scenario.seed(),
            run_dir.display()
        ),
    }

    let interrupt = CancellationToken::new();
    spawn_signal_watch(interrupt.clone(), run_id.clone());

    let live_report = live.as_ref().map(live::Target::report);
    let mut run = Run::new(&scenario, args, &run_dir, &run_id, &interrupt)?;
    match (live, &server) {
        (Some(target), _) => run.execute_live(target).await?,
        (None, Some(server)) => run.execute(flavor, server).await?,
        (None, None) => unreachable!("a run has a live target or a server"),
    }
    let Run {
        mut notes,
        timings,
        observer,
        client_info,
        ..
    } = run;
    let harness = own_usage();
    let interrupted = interrupt.is_cancelled();
    if interrupted {
        notes.push("interrupted: the workload was cut short and the final phase skipped".into());
    }

    let rootfs = server.as_ref().and_then(|s| s.rootfs.as_ref());
    let meta = json!({
        "id": run_id.as_str(),
        "scenario": scenario.name,
        "flavor": scenario.flavor.to_string(),
        "server_version": version,
        "backend": match &live_report {
            Some(r) => format!("live cluster {} (access {})", r["seeds"].as_array().map(|s| s.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")).unwrap_or_default(), r["access"].as_str().unwrap_or("?")),
            None => scenario.backend.to_string(),
        },
        "live": live_report,
        "image": rootfs.filter(|_| scenario.backend == BackendName::Docker && live_report.is_none()).map(|r| r.image.clone()),
        "rootfs": rootfs.filter(|_| scenario.backend == BackendName::Local && live_report.is_none()).map(|r| r.tree.clone()),
        "bus": match scenario.cluster.bus {
            BusMode::Direct => "direct",
            BusMode::Proxy => "proxy",
        },
        "seed": scenario.seed(),
        "nodes": scenario.node_count(),
        "client": client_info,
        "interrupted": interrupted,
        "timings_s": timings,
        "observer": observer,
        "harness": harness,
        "notes": notes,
    });
    let results = analyze::check_dir(&run_dir, Some(meta))?;
    println!("{}", results.summary());
    for note in &notes {
        println!("note: {note}");
    }
    crate::report::after_run(&run_dir);
    println!("run directory: {}", run_dir.display());
    Ok(RunOutcome {
        run_dir,
        version,
        results,
        seconds: started.elapsed().as_secs_f64(),
        interrupted,
    })
}

/// faultline's own resources up to now (its threads only, not the servers it started):
/// max RSS in MB and CPU seconds, for `results.json` `run.harness`.
fn own_usage() -> serde_json::Value {
    // SAFETY: plain FFI call with a valid out-pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return serde_json::Value::Null;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    json!({
        "max_rss_mb": (usage.ru_maxrss as f64 / 1024.0 * 10.0).round() / 10.0,
        "cpu_s": ((secs(usage.ru_utime) + secs(usage.ru_stime)) * 100.0).round() / 100.0,
    })
}

fn load_scenario(args: &RunArgs) -> Result<Scenario, Failure> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::load(path).map_err(Failure::bad_input)?,
        None => Scenario::builtin(),
    };
    if let Some(f) = args.flavor {
        scenario.flavor = f;
    }
    if let Some(b) = args.backend {
        scenario.backend = b;
        if let Some((_, _, message)) = scenario.mode_conflict() {
            return Err(Failure::bad_input(anyhow!("--backend {b}: {message}")));
        }
    }
    if let Some(t) = args.time_limit {
        if !t.is_finite() || t <= 0.0 {
            return Err(Failure::bad_input(anyhow!(
                "--time-limit must be greater than 0, got {t}"
            )));
        }
        scenario.time_limit.0 = t;
    }
    if let Some(name) = &args.workload {
        scenario.workload.name = crate::scenario::WorkloadName::named(name)
            .map_err(|e| Failure::bad_input(anyhow!("--workload: {e}")))?;
    }
    if let Some(client) = args.client {
        scenario.workload.client = client;
        if let Some((_, _, message)) = scenario.mode_conflict() {
            return Err(Failure::bad_input(anyhow!("--client: {message}")));
        }
    }
    if let Some(kinds) = &args.nemesis {
        let mut spec = NemesisSpec::from_kinds(kinds)
            .map_err(|e| Failure::bad_input(anyhow!("--nemesis: {e}")))?;
        if let Some(old) = &scenario.nemesis {
            spec.interval_s = old.interval_s;
            spec.duration_s = old.duration_s;
            spec.start_after_s = old.start_after_s;
            // `compose` and `concurrent` speak of the scenario's own fault list, which
            // --nemesis has just replaced: they go with it, and the user is told.
            if !old.compose.is_empty() || old.concurrent.is_some() {
                warn!(
                    "--nemesis replaces the scenario's faults: its {} is dropped too (the \
                     named kinds run one at a time)",
                    if old.compose.is_empty() {
                        "`concurrent:`"
                    } else {
                        "`compose:` section"
                    }
                );
            }
        }
        scenario.nemesis = Some(spec);
        if let Some((_, _, message)) = scenario.mode_conflict() {
            return Err(Failure::bad_input(anyhow!("--nemesis: {message}")));
        }
    }
    if let Some(secs) = args.nemesis_interval {
        let Some(spec) = scenario.nemesis.as_mut() else {
            return Err(Failure::bad_input(anyhow!(
                "--nemesis-interval: this scenario has no nemesis; add --nemesis KINDS"
            )));
        };
        if !secs.is_finite() || secs <= 0.0 {
            return Err(Failure::bad_input(anyhow!(
                "--nemesis-interval must be greater than 0, got {secs}"
            )));
        }
        spec.interval_s.0 = secs;
        if let Err(e) = spec.validate() {
            return Err(Failure::bad_input(anyhow!(
                "--nemesis-interval {secs}: {}: {}",
                e.field,
                e.message
            )));
        }
    }
    if let Some(seed) = args.seed {
        scenario.seed = Some(seed);
    }
    live::apply_args(&mut scenario, &args.live).map_err(Failure::bad_input)?;
    Ok(scenario.resolve())
}

fn preflight(backend: BackendName) -> Result<()> {
    if backend == BackendName::Loopback {
        // Processes on 127.0.0.1: no namespace, no link, no root.
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the local backend creates network namespaces and must run as root (try sudo, or --backend loopback to run without root); `faultline doctor` lists what else is needed");
    }
    sys::ip(&["-V"]).context("iproute2 is needed")?;
    Ok(())
}

fn spawn_signal_watch(interrupt: CancellationToken, run_id: RunId) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        let mut count = 0;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                _ = term.recv() => {},
            }
            count += 1;
            if count == 1 {
                eprintln!("\nfaultline: interrupted; stopping the workload and tearing down (again to force)");
                interrupt.cancel();
            } else {
                eprintln!("\nfaultline: interrupted again; removing run {run_id} now");
                let (ledgers, _) = Ledger::load_all();
                for l in ledgers.iter().filter(|l| l.run_id == run_id) {
                    backend::release(l);
                }
                std::process::exit(i32::from(exit::HARNESS_ERROR));
            }
        }
    });
}

/// One run in progress: what every phase reads, and what the phases leave for
/// results.json (notes, timings). The phases, in order: [`Run::provision`],
/// [`Run::form`], [`Run::drive`], [`Run::final_phase`], [`Run::teardown`].
///
/// Every exit path tears down: the phases tear down themselves when they finish or are
/// interrupted, and an error drops the backend, whose `Drop` tears down.
struct Run<'a> {
    scenario: &'a Scenario,
    args: &'a RunArgs,
    run_dir: &'a Path,
    run_id: &'a RunId,
    /// Ctrl-C: cancelled by the signal watch.
    interrupt: &'a CancellationToken,
    /// The history's time origin.
    t0: std::time::Instant,
    /// Where the phase under way started (for [`Run::timings`]).
    lap_start: std::time::Instant,
    recorder: Recorder,
    /// Remarks for results.json's `run.notes`.
    notes: Vec<String>,
    /// What the topology observer did (`results.json` `run.observer`).
    observer: Option<serde_json::Value>,
    timings: Timings,
    /// Starts every key the workload writes (a live cluster's run prefix; else empty).
    key_prefix: String,
    /// The final phase may act on the nodes' hosts (not on a live cluster with access
    /// `none`).
    host_access: bool,
    /// The client that drove the workload, for results.json's `run.client`.
    client_info: serde_json::Value,
}

/// Seconds each phase took, for results.json's `run.timings_s` (a run interrupted while
/// forming has only `form`).
#[derive(Debug, Default, Serialize)]
struct Timings {
    #[serde(skip_serializing_if = "Option::is_none")]
    form: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workload: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    final_phase: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    teardown: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ops: Option<OpCounts>,
}

/// The workload's completions.
#[derive(Debug, Serialize)]
struct OpCounts {
    ok: u64,
    fail: u64,
    info: u64,
}

/// The backend once faults share it with the orchestrator.
type SharedBackend = Arc<Mutex<Box<dyn Backend>>>;

/// The nodes a run brought up: the backend (`B`: owned until formation, shared after),
/// their addresses, and the cluster bus proxy between them (`bus: proxy`).
struct Nodes<B> {
    bus_proxy: Option<BusProxy>,
    backend: B,
    specs: Vec<NodeSpec>,
}

/// The run once the workload is done: what the final phase acts on.
struct Live {
    admin: Formed,
    observer: Observer,
    nemesis_ctx: Ctx,
    /// Heals of faults still in force when the workload stopped.
    pending: Vec<Box<dyn Heal>>,
    workload: Box<dyn Workload>,
    client: Arc<dyn KeyClient>,
    /// The same client when standalone (for its `CLIENT CAPA redirect` answers).
    standalone_client: Option<Arc<StandaloneClient>>,
    nodes: Nodes<SharedBackend>,
}

impl<'a> Run<'a> {
    /// Starts the history (its time origin is the run's).
    fn new(
        scenario: &'a Scenario,
        args: &'a RunArgs,
        run_dir: &'a Path,
        run_id: &'a RunId,
        interrupt: &'a CancellationToken,
    ) -> Result<Run<'a>> {
        let t0 = std::time::Instant::now();
        let recorder = Recorder::create_at(&run_dir.join(HISTORY_FILE), t0)
            .with_context(|| format!("creating {}", run_dir.join(HISTORY_FILE).display()))?;
        Ok(Run {
            scenario,
            args,
            run_dir,
            run_id,
            interrupt,
            t0,
            lap_start: t0,
            recorder,
            notes: Vec::new(),
            observer: None,
            timings: Timings::default(),
            key_prefix: String::new(),
            host_access: true,
            client_info: json!({"name": scenario.workload.client.to_string()}),
        })
    }

    /// Seconds since the previous lap (the first: since `t0`), ending a phase.
    fn lap(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let seconds = now.duration_since(self.lap_start).as_secs_f64();
        self.lap_start = now;
        seconds
    }

    /// Brings the cluster up, runs the workload and the final phase, and tears down,
    /// filling in [`Run::timings`] and [`Run::notes`].
    async fn execute(&mut self, flavor: Arc<dyn Flavor>, server: &Server) -> Result<()> {
        let mut nodes = self.provision(flavor, server).await?;
        let Some(admin) = self.form(&mut nodes).await? else {
            return self.teardown_unformed(nodes).await;
        };
        let live = self.drive(nodes, admin).await?;
        let nodes = self.final_phase(live).await;
        self.teardown(nodes).await
    }

    /// The same phases on a live cluster that passed its preflight: the preflight stood for
    /// `provision` and `form` (nodes found, not started; the admin connections are the
    /// preflight's), `drive` and `final_phase` run unchanged on keys of the run's prefix,
    /// then, whatever happened, the postflight and the clean-up of the run's keys.
    async fn execute_live(&mut self, mut target: live::Target) -> Result<()> {
        self.key_prefix = target.key_prefix.clone();
        self.host_access = target.spec.access == live::AccessLevel::Ssh;
        let backend = live::backend::LiveBackend::new(&target, self.run_id, self.run_dir)?;
        let nodes = Nodes {
            bus_proxy: None,
            backend: Box::new(backend) as Box<dyn Backend>,
            specs: target.specs(),
        };
        let admin = target
            .take_admin()
            .context("the preflight's admin connections are gone")?;
        self.timings.form = Some(self.lap());
        let outcome = match self.drive(nodes, admin).await {
            Ok(live) => Ok(self.final_phase(live).await),
            Err(e) => Err(e),
        };
        let restore = target.spec.restore_roles;
        let (report, notes) = live::finish::finish(&target, restore).await;
        self.notes.extend(notes);
        let file = self.run_dir.join(live::POSTFLIGHT_FILE);
        std::fs::write(
            &file,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .with_context(|| format!("writing {}", file.display()))?;
        target.forget_credentials();
        self.teardown(outcome?).await
    }

    /// The backend brings the nodes up (not yet started), with the bus proxy in front of
    /// their cluster bus when the scenario routes it through one.
    async fn provision(
        &self,
        flavor: Arc<dyn Flavor>,
        server: &Server,
    ) -> Result<Nodes<Box<dyn Backend>>> {
        let scenario = self.scenario;
        let names: Vec<String> = (1..=scenario.node_count())
            .map(|i| format!("n{i}"))
            .collect();
        let mut backend = backend::create(
            scenario.backend,
            BackendPlan {
                run_id: self.run_id.clone(),
                run_dir: self.run_dir.to_path_buf(),
                node_names: names,
                flavor: match scenario.mode {
                    Mode::Cluster => flavor,
                    Mode::Standalone => Arc::new(flavor::standalone::Standalone(flavor)),
                },
                binary: server.binary.clone(),
                node_timeout_ms: scenario.cluster.node_timeout_ms.get(),
                persistence: scenario.cluster.persistence,
                rootfs: server.rootfs.clone(),
                keep: self.args.keep,
            },
        )?;
        // With `bus: proxy` every node announces the proxy's port as its bus port, and the
        // proxy must be listening before the nodes meet.
        let bus_proxy = match scenario.cluster.bus {
            BusMode::Direct => None,
            BusMode::Proxy => {
                let proxy_nodes = backend::route_bus_through_proxy(backend.as_mut())?;
                let proxy = BusProxy::start(proxy_nodes)
                    .await
                    .context("starting the cluster bus proxy")?;
                proxy.register(self.run_id.as_str());
                info!(
                    "cluster bus through the proxy: {}",
                    proxy
                        .listen_addrs()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                Some(proxy)
            }
        };
        let specs = backend.nodes().to_vec();
        info!(
            "network ready: {}",
            specs
                .iter()
                .map(|n| format!("{} {}", n.name, n.addr()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Nodes {
            bus_proxy,
            backend,
            specs,
        })
    }

    /// Starts the servers and joins them; `None` when Ctrl-C came first.
    async fn form(&mut self, nodes: &mut Nodes<Box<dyn Backend>>) -> Result<Option<Formed>> {
        let scenario = self.scenario;
        let form_deadline =
            Instant::now() + Duration::from_secs_f64(scenario.cluster.form_timeout_s.get());
        let layout = Layout::new(
            scenario.cluster.primaries.get() as usize,
            scenario.cluster.replicas.get() as usize,
        );
        let formed = tokio::select! {
            r = Formed::start(scenario.mode, nodes.backend.as_mut(), &layout, form_deadline) => Some(r?),
            _ = self.interrupt.cancelled() => None,
        };
        if formed.is_some() {
            let formed_at = self.lap();
            self.timings.form = Some(formed_at);
            info!("cluster formed and agreed in {formed_at:.2}s");
        }
        Ok(formed)
    }

    /// Interrupted while forming: tears down (even under `--keep`) with nothing recorded.
    async fn teardown_unformed(&mut self, mut nodes: Nodes<Box<dyn Backend>>) -> Result<()> {
        if let Some(p) = &nodes.bus_proxy {
            p.shutdown().await;
        }
        nodes.backend.teardown()?;
        self.timings.form = Some(self.lap());
        Ok(())
    }

    /// Starts the topology observer, then runs the workload and the nemesis side by side
    /// until the time limit or Ctrl-C, with progress on the terminal.
    async fn drive(&mut self, nodes: Nodes<Box<dyn Backend>>, admin: Formed) -> Result<Live> {
        let scenario = self.scenario;
        let observer = Observer::start_with(
            &nodes.specs,
            &self.run_dir.join(faultline_history::TOPOLOGY_FILE),
            self.t0,
            crate::observer::ObserverConfig {
                standalone: scenario.mode == Mode::Standalone,
                // A fault shows as a failover about one node time-out after it lands.
                hot_for: crate::observer::DEFAULT_HOT_FOR.max(
                    Duration::from_millis(scenario.cluster.node_timeout_ms.get())
                        + Duration::from_secs(2),
                ),
                ..crate::observer::ObserverConfig::adaptive(nodes.specs.len())
            },
        )
        .context("starting the topology observer")?;
        observer.watch_nemesis(self.recorder.clone());
        // From here on faults share the backend with the orchestrator.
        let nodes = Nodes {
            bus_proxy: nodes.bus_proxy,
            backend: Arc::new(Mutex::new(nodes.backend)),
            specs: nodes.specs,
        };
        let mut query_timeout = Duration::from_millis(500);
        if !self.key_prefix.is_empty() {
            // A live cluster: a fault's question may take as long as an op (a real
            // network, TLS handshakes on every fresh connection).
            query_timeout =
                query_timeout.max(Duration::from_millis(scenario.workload.op_timeout_ms.get()));
        }
        let nemesis_ctx = Ctx {
            control: Arc::new(BackendControl::new(
                self.run_id.as_str(),
                nodes.backend.clone(),
            )),
            query_timeout,
        };

        let mut client_config = ClientConfig {
            op_timeout: Duration::from_millis(scenario.workload.op_timeout_ms.get()),
            ..ClientConfig::default()
        };
        if !self.key_prefix.is_empty() {
            // A live cluster is across a real network, maybe behind TLS handshakes: a
            // connection may take as long as an op.
            client_config.connect_timeout =
                client_config.connect_timeout.max(client_config.op_timeout);
        }
        let (client, standalone_client) =
            crate::formed::workload_client(scenario.mode, client_config, &nodes.specs).await?;
        let workload = faultline_workloads::registry::by_name(
            scenario.workload.name.label(),
            WorkloadParams {
                keys: scenario.workload.keys.get() as usize,
                concurrency: scenario.workload.concurrency.get() as usize,
                rate: scenario.workload.rate.map(|r| r.get()),
                seed: scenario.seed(),
                key_prefix: self.key_prefix.clone(),
                mix: scenario.workload.mix.clone(),
                pipeline: scenario.workload.pipeline.get() as usize,
            },
        )?;
        workload
            .setup(client.as_ref(), &self.recorder)
            .await
            .context("setting up the workload")?;
        let counters = Arc::new(Counters::default());
        let stop = self.interrupt.child_token();
        let limit = Duration::from_secs_f64(scenario.time_limit.get());
        let progress = spawn_progress(
            counters.clone(),
            stop.clone(),
            limit,
            crate::report::progress::ProgressBar::for_terminal(&self.run_dir.join(HISTORY_FILE)),
        );
        let timer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(limit).await;
                stop.cancel();
            })
        };
        let nemesis = scenario.nemesis.as_ref().map(|spec| {
            // On a live cluster's hosts a fault's commands go over SSH: "in effect" cannot be
            // read from a local installer's state, so they are applied at their instant.
            Nemesis::new(spec, scenario.seed(), limit)
                .with_preparation(prepare_faults() && scenario.live.is_none())
        });
        if let Some(n) = &nemesis {
            info!("nemesis: {} faults scheduled", n.steps().len());
            if let Some(note) = n.foreseen_slip() {
                warn!("{note}");
                self.notes.push(note);
            }
        }
        // A client library drives the ops through its adapter; setup and final reads stay
        // with faultline's client, so every client's final state is read alike.
        let adapter = match scenario.workload.client {
            ClientName::Faultline => None,
            _ => Some(Arc::new(self.start_adapter(&nodes.specs).await?)),
        };
        let op_client: Arc<dyn KeyClient> = match &adapter {
            Some(a) => {
                // The adapter failing ends the workload at once: a harness error.
                let (failed, stop) = (a.failed(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = failed.cancelled() => stop.cancel(),
                        _ = stop.cancelled() => {}
                    }
                });
                a.clone()
            }
            None => client.clone(),
        };
        let start = Instant::now();
        let recorder = &self.recorder;
        let (_, pending) = tokio::join!(
            workload.run(op_client, recorder.clone(), stop.clone(), counters.clone(),),
            async {
                match &nemesis {
                    Some(n) => n.run(&nemesis_ctx, recorder, start, &stop).await,
                    None => Vec::new(),
                }
            }
        );
        timer.abort();
        progress.abort();
        if let Some(a) = &adapter {
            a.shutdown(Duration::from_secs(3)).await;
            if let Some(failure) = a.failure() {
                // Faults still in force are healed by the teardown (namespaces go).
                bail!(
                    "harness error: the {} adapter failed: {failure}",
                    a.client()
                );
            }
        }
        if let Some(note) = nemesis.as_ref().and_then(|n| n.slips().note()) {
            warn!("{note}");
            self.notes.push(note);
        }
        let (ok, fail, infos) = counters.snapshot();
        let workload_s = self.lap();
        self.timings.workload = Some(workload_s);
        self.timings.ops = Some(OpCounts {
            ok,
            fail,
            info: infos,
        });
        info!("workload done: {ok} ok, {fail} fail, {infos} info in {workload_s:.1}s");
        Ok(Live {
            admin,
            observer,
            nemesis_ctx,
            pending,
            workload,
            client,
            standalone_client,
            nodes,
        })
    }

    /// Starts the scenario's client adapter (`adapters/PROTOCOL.md`) and records which
    /// library and version it drives.
    async fn start_adapter(
        &mut self,
        specs: &[NodeSpec],
    ) -> Result<faultline_workloads::adapter::AdapterClient> {
        let spec = crate::adapters::spec(
            self.scenario,
            self.run_dir,
            self.run_id.as_str(),
            specs.iter().map(NodeSpec::addr).collect(),
        )?;
        let adapter = faultline_workloads::adapter::AdapterClient::start(&spec).await?;
        let hello = adapter.hello();
        info!(
            "client: {} ({} {}) through its adapter",
            spec.client, hello.library, hello.version
        );
        self.client_info = json!({
            "name": spec.client,
            "library": hello.library,
            "version": hello.version,
            "config": spec.config,
            "adapter": spec.program.display().to_string(),
        });
        Ok(adapter)
    }

    /// Heals every fault still in force (unless interrupted; on a live cluster always),
    /// waits for the nodes to agree again and reads the final values (unless interrupted).
    /// Then stops recording (the observer last).
    async fn final_phase(&mut self, mut live: Live) -> Nodes<SharedBackend> {
        let (scenario, interrupt) = (self.scenario, self.interrupt);
        let nemesis_ctx = live.nemesis_ctx;
        let bus_proxy = &live.nodes.bus_proxy;
        let recorder = self.recorder.clone();
        // A live cluster is healed even after Ctrl-C: nobody tears it down.
        let on_live = !self.key_prefix.is_empty();
        if !interrupt.is_cancelled() || on_live {
            // Heal every fault still in force, then let the cluster settle.
            for heal in &live.pending {
                heal_one(heal.as_ref(), &nemesis_ctx, &recorder).await;
            }
            if let Some(spec) = &scenario.nemesis {
                // Whatever the schedule's state, the final phase must see the whole
                // network, no slot half-moved, the whole bus: each fault kind's sweep, in
                // registry order.
                faultline_nemeses::registry::final_sweeps_reaching(
                    &nemesis_ctx,
                    &recorder,
                    &spec.faults,
                    bus_proxy.is_some(),
                    self.host_access,
                )
                .await;
            }
        }
        if !interrupt.is_cancelled() {
            let converge = Duration::from_secs_f64(scenario.cluster.converge_timeout_s.get());
            let agreed = tokio::select! {
                r = live.admin.wait_agreed(Instant::now() + converge) => Some(r),
                _ = interrupt.cancelled() => None,
            };
            if let Some(Err(e)) = agreed {
                warn!("{e:#}");
                self.notes.push(format!("final phase: {e:#}"));
            }
            let budget = Duration::from_secs_f64(scenario.workload.final_read_timeout_s.get());
            let reads = tokio::select! {
                r = live.workload.final_reads(live.client.as_ref(), &recorder, budget) => Some(r),
                _ = interrupt.cancelled() => None,
            };
            if let Some(r) = reads {
                info!("final reads: {} keys read, {} unread", r.read, r.unread);
            }
        }
        if let Some(c) = &live.standalone_client {
            crate::standalone::note_capa(&c.capa_replies(), &mut self.notes);
        }
        match live.observer.stop().await {
            Ok(stats) => {
                info!(
                    "topology: {} views ({} failed), {:.1} per second per node ({:.1} s of \
                     {:.1} s hot at {} ms, calm {} ms)",
                    stats.observations,
                    stats.errors,
                    stats.rate_per_node(),
                    stats.hot_s,
                    stats.elapsed_s,
                    stats.interval_ms,
                    stats.calm_interval_ms,
                );
                self.observer = Some(stats.summary());
            }
            Err(e) => self.notes.push(format!("topology observer: {e:#}")),
        }
        self.timings.final_phase = Some(self.lap());
        live.nodes
    }

    /// Closes the history, stops the bus proxy, and tears the nodes down (or keeps them,
    /// under `--keep`).
    async fn teardown(&mut self, nodes: Nodes<SharedBackend>) -> Result<()> {
        self.recorder.close().context("writing the history")?;

        // The proxy's sockets live in the node namespaces: close them before those go.
        if let Some(p) = &nodes.bus_proxy {
            let stats = p.shutdown().await;
            info!(
                "bus proxy: {} messages ({} delayed, {} held, {} dropped), {} connections",
                stats.frames, stats.delayed, stats.held, stats.dropped, stats.connections_accepted
            );
            if self.args.keep {
                self.notes.push(
                    "--keep: the bus proxy stopped with faultline, so the kept nodes' cluster bus \
                     (announced at the proxy's port) no longer connects"
                        .into(),
                );
            }
        }
        let mut backend = lock(&nodes.backend);
        if let Some(exit) = backend.exited() {
            self.notes
                .push(format!("a server process died during the run: {exit}"));
        }
        if self.args.keep {
            eprintln!("faultline: {}", backend.keep_notice());
        } else {
            backend.teardown()?;
        }
        self.timings.teardown = Some(self.lap());
        Ok(())
    }
}

/// Progress while the workload runs: a live bar on a terminal, a log line every 2 s
/// otherwise.
fn spawn_progress(
    counters: Arc<Counters>,
    stop: CancellationToken,
    limit: Duration,
    mut bar: Option<crate::report::progress::ProgressBar>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let every = match bar {
            Some(_) => crate::report::progress::TICK,
            None => Duration::from_secs(2),
        };
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => {
                    if let Some(bar) = &mut bar {
                        bar.finish();
                    }
                    return;
                }
            }
            let (ok, fail, info) = counters.snapshot();
            if let Some(bar) = &mut bar {
                bar.draw(start.elapsed(), limit, ok, fail, info);
                continue;
            }
            info!(
                "{:>5.1}s/{:.0}s  ok {ok}  fail {fail}  info {info}",
                start.elapsed().as_secs_f64(),
                limit.as_secs_f64()
            );
        }
    })
}

/// Whether faults that can are prepared before their instant (the default).
/// `FAULTLINE_NEMESIS_PREPARE=0` applies every fault at its instant, as before: the path
/// `faultline bench --faults` measures beside the prepared one.
fn prepare_faults() -> bool {
    std::env::var_os(PREPARE_ENV).is_none_or(|v| v != "0")
}

/// See [`prepare_faults`].
pub const PREPARE_ENV: &str = "FAULTLINE_NEMESIS_PREPARE";

#[cfg(test)]
mod tests {
    use faultline_workloads::registry::WORKLOADS;

    #[test]
    fn every_workload_asks_for_checkers_the_registry_has() {
        let checkers: Vec<&str> = faultline_checkers::all().iter().map(|c| c.name()).collect();
        for entry in WORKLOADS {
            for name in entry.checkers {
                assert!(
                    checkers.contains(name),
                    "workload {} asks for checker {name:?}, which checkers/src/registry.rs does not list",
                    entry.name
                );
            }
        }
    }
}
