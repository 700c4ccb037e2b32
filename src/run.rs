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
use faultline_nemeses::{Ctx, Nemesis, NemesisSpec};
use faultline_workloads::{ClientConfig, Counters, SetSpec, SetWorkload};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::{self, BackendPlan};
use crate::cli::RunArgs;
use crate::cluster::Layout;
use crate::control::{lock, BackendControl};
use crate::exit::{self, Failure};
use crate::flavor::{self, Flavor};
use crate::formed::Formed;
use crate::ledger::{Ledger, RunId};
use crate::observer::Observer;
use crate::scenario::{BackendName, FlavorName, Mode, Scenario};
use crate::server::Server;
use crate::store::{self, HISTORY_FILE, SCENARIO_FILE};
use crate::{analyze, sys};

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
pub async fn run_scenario(scenario: Scenario, args: &RunArgs) -> Result<RunOutcome, Failure> {
    let started = std::time::Instant::now();
    preflight()?;
    let flavor: Arc<dyn Flavor> =
        Arc::from(flavor::for_cluster(scenario.flavor, &scenario.cluster));
    let server = Server::resolve(&scenario, flavor.as_ref())?;
    let version = server.version.clone();

    let run_dir = store::create_run_dir(&args.store, &scenario.name)?;
    std::fs::write(run_dir.join(SCENARIO_FILE), scenario.to_yaml())
        .with_context(|| format!("writing {}", run_dir.join(SCENARIO_FILE).display()))?;
    let run_id = RunId::random();
    eprintln!(
        "faultline: run {run_id}: {} {version}, {}x{} on {}, {}s of {} workload, seed {}\n  dir: {}",
        scenario.flavor,
        scenario.cluster.primaries.get(),
        scenario.cluster.replicas.get(),
        backend_label(scenario.backend),
        scenario.time_limit.get(),
        scenario.workload.name.label(),
        scenario.seed(),
        run_dir.display()
    );

    let interrupt = CancellationToken::new();
    spawn_signal_watch(interrupt.clone(), run_id.clone());

    let mut notes = Vec::new();
    let timings = execute(
        &scenario, args, &run_dir, &run_id, flavor, &server, &interrupt, &mut notes,
    )
    .await?;
    let interrupted = interrupt.is_cancelled();
    if interrupted {
        notes.push("interrupted: the workload was cut short and the final phase skipped".into());
    }

    let meta = json!({
        "id": run_id.as_str(),
        "scenario": scenario.name,
        "flavor": scenario.flavor.to_string(),
        "server_version": version,
        "backend": backend_label(scenario.backend),
        "image": server.rootfs.as_ref().filter(|_| scenario.backend == BackendName::Docker).map(|r| r.image.clone()),
        "rootfs": server.rootfs.as_ref().filter(|_| scenario.backend == BackendName::Local).map(|r| r.tree.clone()),
        "bus": match scenario.cluster.bus {
            BusMode::Direct => "direct",
            BusMode::Proxy => "proxy",
        },
        "seed": scenario.seed(),
        "nodes": scenario.node_count(),
        "interrupted": interrupted,
        "timings_s": timings,
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

fn load_scenario(args: &RunArgs) -> Result<Scenario, Failure> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::load(path).map_err(Failure::bad_input)?,
        None => Scenario::builtin(),
    };
    if let Some(f) = &args.flavor {
        scenario.flavor =
            FlavorName::parse(f).map_err(|e| Failure::bad_input(anyhow!("--flavor: {e}")))?;
    }
    if let Some(b) = &args.backend {
        scenario.backend =
            BackendName::parse(b).map_err(|e| Failure::bad_input(anyhow!("--backend: {e}")))?;
    }
    if let Some(t) = args.time_limit {
        if !t.is_finite() || t <= 0.0 {
            return Err(Failure::bad_input(anyhow!(
                "--time-limit must be greater than 0, got {t}"
            )));
        }
        scenario.time_limit.0 = t;
    }
    if let Some(kinds) = &args.nemesis {
        let mut spec = NemesisSpec::from_kinds(kinds)
            .map_err(|e| Failure::bad_input(anyhow!("--nemesis: {e}")))?;
        if let Some(old) = &scenario.nemesis {
            spec.interval_s = old.interval_s;
            spec.duration_s = old.duration_s;
            spec.start_after_s = old.start_after_s;
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
    }
    if let Some(seed) = args.seed {
        scenario.seed = Some(seed);
    }
    Ok(scenario.resolve())
}

fn preflight() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the local backend creates network namespaces and must run as root (try sudo); `faultline doctor` lists what else is needed");
    }
    sys::ip(&["-V"]).context("iproute2 is needed")?;
    Ok(())
}

pub(crate) fn resolve_binary(scenario: &Scenario, flavor: &dyn Flavor) -> Result<PathBuf> {
    let name = scenario
        .cluster
        .binary
        .clone()
        .unwrap_or_else(|| PathBuf::from(flavor.default_binary()));
    if name.components().count() > 1 {
        if !name.is_file() {
            bail!("cluster.binary {} does not exist", name.display());
        }
        return Ok(name);
    }
    which(&name).ok_or_else(|| {
        anyhow!(
            "{} is not on PATH; {}",
            name.display(),
            flavor.install_hint()
        )
    })
}

/// Finds a program on PATH.
pub fn which(name: &Path) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

fn backend_label(b: BackendName) -> &'static str {
    match b {
        BackendName::Local => "local",
        BackendName::Docker => "docker",
    }
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
                    l.release();
                }
                std::process::exit(i32::from(exit::HARNESS_ERROR));
            }
        }
    });
}

/// Brings the cluster up, runs the workload and the final phase, and tears down. Returns
/// how long each phase took, in seconds.
#[allow(clippy::too_many_arguments)]
async fn execute(
    scenario: &Scenario,
    args: &RunArgs,
    run_dir: &Path,
    run_id: &RunId,
    flavor: Arc<dyn Flavor>,
    server: &Server,
    interrupt: &CancellationToken,
    notes: &mut Vec<String>,
) -> Result<serde_json::Value> {
    let t0 = std::time::Instant::now();
    let recorder = Recorder::create_at(&run_dir.join(HISTORY_FILE), t0)
        .with_context(|| format!("creating {}", run_dir.join(HISTORY_FILE).display()))?;
    let names: Vec<String> = (1..=scenario.node_count())
        .map(|i| format!("n{i}"))
        .collect();
    let mut backend = backend::create(
        scenario.backend,
        BackendPlan {
            run_id: run_id.clone(),
            run_dir: run_dir.to_path_buf(),
            node_names: names,
            flavor: match scenario.mode {
                Mode::Cluster => flavor,
                Mode::Standalone => Arc::new(flavor::standalone::Standalone(flavor)),
            },
            binary: server.binary.clone(),
            node_timeout_ms: scenario.cluster.node_timeout_ms.get(),
            persistence: scenario.cluster.persistence,
            rootfs: server.rootfs.clone(),
            keep: args.keep,
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
            proxy.register(run_id.as_str());
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
    let nodes = backend.nodes().to_vec();
    info!(
        "network ready: {}",
        nodes
            .iter()
            .map(|n| format!("{} {}", n.name, n.addr()))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let form_deadline =
        Instant::now() + Duration::from_secs_f64(scenario.cluster.form_timeout_s.get());
    let layout = Layout::new(
        scenario.cluster.primaries.get() as usize,
        scenario.cluster.replicas.get() as usize,
    );
    let formed = tokio::select! {
        r = Formed::start(scenario.mode, backend.as_mut(), &layout, form_deadline) => Some(r?),
        _ = interrupt.cancelled() => None,
    };
    let Some(mut admin) = formed else {
        if let Some(p) = &bus_proxy {
            p.shutdown().await;
        }
        backend.teardown()?;
        return Ok(json!({ "form": t0.elapsed().as_secs_f64() }));
    };
    let formed_at = t0.elapsed().as_secs_f64();
    info!("cluster formed and agreed in {formed_at:.2}s");
    let observer = Observer::start_with(
        &nodes,
        &run_dir.join(faultline_history::TOPOLOGY_FILE),
        t0,
        crate::observer::ObserverConfig {
            standalone: scenario.mode == Mode::Standalone,
            ..Default::default()
        },
    )
    .context("starting the topology observer")?;
    // From here on faults share the backend with the orchestrator.
    let backend = Arc::new(Mutex::new(backend));
    let nemesis_ctx = Ctx {
        control: Arc::new(BackendControl::new(run_id.as_str(), backend.clone())),
        query_timeout: Duration::from_millis(500),
    };

    let client_config = ClientConfig {
        op_timeout: Duration::from_millis(scenario.workload.op_timeout_ms.get()),
        ..ClientConfig::default()
    };
    let (client, standalone_client) =
        crate::formed::workload_client(scenario.mode, client_config, &nodes).await?;
    let workload = SetWorkload::new(SetSpec {
        keys: scenario.workload.keys.get() as usize,
        concurrency: scenario.workload.concurrency.get() as usize,
        rate: scenario.workload.rate.map(|r| r.get()),
        seed: scenario.seed(),
    });
    let counters = Arc::new(Counters::default());
    let stop = interrupt.child_token();
    let limit = Duration::from_secs_f64(scenario.time_limit.get());
    let progress = spawn_progress(
        counters.clone(),
        stop.clone(),
        limit,
        crate::report::progress::ProgressBar::for_terminal(&run_dir.join(HISTORY_FILE)),
    );
    let timer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            stop.cancel();
        })
    };
    let nemesis = scenario
        .nemesis
        .as_ref()
        .map(|spec| Nemesis::new(spec, scenario.seed(), limit));
    if let Some(n) = &nemesis {
        info!("nemesis: {} faults scheduled", n.steps().len());
    }
    let start = Instant::now();
    let (_, pending) = tokio::join!(
        workload.run(
            client.clone(),
            recorder.clone(),
            stop.clone(),
            counters.clone(),
        ),
        async {
            match &nemesis {
                Some(n) => n.run(&nemesis_ctx, &recorder, start, &stop).await,
                None => Vec::new(),
            }
        }
    );
    timer.abort();
    progress.abort();
    let (ok, fail, infos) = counters.snapshot();
    let workload_s = t0.elapsed().as_secs_f64() - formed_at;
    info!("workload done: {ok} ok, {fail} fail, {infos} info in {workload_s:.1}s");

    if !interrupt.is_cancelled() {
        // Heal every fault still in force, then let the cluster settle.
        for heal in &pending {
            heal_one(heal.as_ref(), &nemesis_ctx, &recorder).await;
        }
        if let Some(spec) = &scenario.nemesis {
            // Whatever the schedule's state, the final phase must see the whole network,
            // no slot half-moved, the whole bus: each fault kind's sweep, in order.
            faultline_nemeses::registry::final_sweeps(
                &nemesis_ctx,
                &recorder,
                &spec.faults,
                bus_proxy.is_some(),
            )
            .await;
        }
        let converge = Duration::from_secs_f64(scenario.cluster.converge_timeout_s.get());
        let agreed = tokio::select! {
            r = admin.wait_agreed(Instant::now() + converge) => Some(r),
            _ = interrupt.cancelled() => None,
        };
        if let Some(Err(e)) = agreed {
            warn!("{e:#}");
            notes.push(format!("final phase: {e:#}"));
        }
        let budget = Duration::from_secs_f64(scenario.workload.final_read_timeout_s.get());
        let reads = tokio::select! {
            r = workload.final_reads(client.as_ref(), &recorder, budget) => Some(r),
            _ = interrupt.cancelled() => None,
        };
        if let Some(r) = reads {
            info!("final reads: {} keys read, {} unread", r.read, r.unread);
        }
    }
    if let Some(c) = &standalone_client {
        crate::standalone::note_capa(&c.capa_replies(), notes);
    }
    match observer.stop().await {
        Ok(stats) => info!(
            "topology: {} views ({} failed), {:.1} per second per node",
            stats.observations,
            stats.errors,
            stats.rate_per_node()
        ),
        Err(e) => notes.push(format!("topology observer: {e:#}")),
    }
    let ops_done_at = t0.elapsed().as_secs_f64();
    recorder.close().context("writing the history")?;

    // The proxy's sockets live in the node namespaces: close them before those go.
    if let Some(p) = &bus_proxy {
        let stats = p.shutdown().await;
        info!(
            "bus proxy: {} messages ({} delayed, {} held, {} dropped), {} connections",
            stats.frames, stats.delayed, stats.held, stats.dropped, stats.connections_accepted
        );
        if args.keep {
            notes.push(
                "--keep: the bus proxy stopped with faultline, so the kept nodes' cluster bus \
                 (announced at the proxy's port) no longer connects"
                    .into(),
            );
        }
    }
    let mut backend = lock(&backend);
    if let Some(exit) = backend.exited() {
        notes.push(format!("a server process died during the run: {exit}"));
    }
    if args.keep {
        eprintln!("faultline: {}", backend.keep_notice());
    } else {
        backend.teardown()?;
    }
    Ok(json!({
        "form": formed_at,
        "workload": workload_s,
        "final_phase": ops_done_at - formed_at - workload_s,
        "teardown": t0.elapsed().as_secs_f64() - ops_done_at,
        "ops": { "ok": ok, "fail": fail, "info": infos },
    }))
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
