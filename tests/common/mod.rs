//! Helpers shared by the integration tests: the binary, a temporary store per test, and
//! the checks that a run left nothing behind on the machine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use faultline_history::{read_jsonl, Op};

/// Real-cluster tests run one at a time: the machine has two cores, and a run's
/// throughput assertions should not depend on what else the test binary is doing.
static CLUSTER: Mutex<()> = Mutex::new(());

/// Holds the one-cluster-at-a-time lock.
pub fn cluster_lock() -> MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|p| p.into_inner())
}

/// The faultline binary under test.
pub fn faultline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
}

/// Real servers, namespaces and faults need root; say so plainly instead of failing oddly.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts real clusters in network namespaces and must run as root"
    );
}

/// The exit code, with the output shown when it is not the expected one.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Both streams, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The run id printed on `faultline: run <id>:`.
pub fn run_id(stderr: &str) -> String {
    let at = stderr.find("faultline: run ").expect("run id line") + "faultline: run ".len();
    stderr[at..at + 6].to_string()
}

/// The run directory printed at the end.
pub fn run_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run directory: "))
        .expect("run directory line");
    PathBuf::from(line.trim())
}

/// Reads a run's history.
pub fn history(dir: &Path) -> Vec<Op> {
    read_jsonl::<Op>(&dir.join("history.jsonl"))
        .expect("history.jsonl reads")
        .records
}

/// What `ip ARGS` prints (namespaces, links).
pub fn ip(args: &[&str]) -> String {
    String::from_utf8(Command::new("ip").args(args).output().unwrap().stdout).unwrap()
}

/// Asserts that no namespace, host link, ledger or server process of run `id` is left.
pub fn assert_nothing_left(id: &str, run_dir: &Path) {
    let netns = ip(&["netns", "list"]);
    assert!(
        !netns.contains(&format!("fl-{id}-")),
        "namespaces of run {id} left behind:\n{netns}"
    );
    let links = ip(&["-o", "link", "show"]);
    assert!(
        !links.contains(&format!("fl{id}h")),
        "host link of run {id} left behind"
    );
    assert!(
        !Path::new(&format!("/run/faultline/{id}.json")).exists(),
        "ledger of run {id} left behind"
    );
    let dir = std::path::absolute(run_dir).unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !cmdline.contains(dir.to_str().unwrap()),
                "process {:?} of run {id} still running: {cmdline}",
                entry.file_name()
            );
        }
    }
}

/// What one finished `faultline run` left.
pub struct Finished {
    /// Exit code.
    pub code: i32,
    /// Both streams, for assertion messages.
    pub text: String,
    /// The run directory.
    pub dir: PathBuf,
    /// The run id.
    pub id: String,
}

/// Runs `faultline run ARGS... --store STORE` to the end.
pub fn run_to_end(args: &[&str], store: &Path) -> Finished {
    let out = faultline()
        .arg("run")
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = text(&out);
    assert!(
        stdout.contains("run directory: "),
        "the run did not finish:\n{text}"
    );
    Finished {
        code: code(&out),
        dir: run_dir(&stdout),
        id: run_id(&stderr),
        text,
    }
}

/// The scenario file shipped in `scenarios/`.
pub fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Reads a run's results.json.
pub fn results(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

/// Runs a test body on its own runtime, one cluster at a time. Servers are forked from
/// this thread, which outlives the body (their PDEATHSIG is tied to it).
pub fn with_cluster_lock<F: std::future::Future<Output = ()>>(body: F) {
    require_root();
    let _one_at_a_time = cluster_lock();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}

/// A local backend for `names` (nodes not started) running the host's binary of `flavor`,
/// its files under `dir`: how the tests that drive backends and faults directly begin.
pub fn local_backend(
    dir: &Path,
    flavor: std::sync::Arc<dyn faultline::flavor::Flavor>,
    names: Vec<String>,
    node_timeout_ms: u64,
) -> (
    faultline::ledger::RunId,
    Box<dyn faultline::backend::Backend>,
) {
    let binary = faultline::run::which(Path::new(flavor.default_binary()))
        .unwrap_or_else(|| panic!("{} on PATH", flavor.default_binary()));
    let run_id = faultline::ledger::RunId::random();
    let backend = faultline::backend::create(
        faultline::scenario::BackendName::Local,
        faultline::backend::BackendPlan {
            run_id: run_id.clone(),
            run_dir: dir.to_path_buf(),
            node_names: names,
            flavor,
            binary,
            node_timeout_ms,
            persistence: faultline::scenario::Persistence::None,
            rootfs: None,
            keep: false,
        },
    )
    .expect("provisioning a local backend");
    (run_id, backend)
}

/// A formed cluster on the local backend, its bus through the proxy when asked, torn down
/// with everything when dropped, also when an assertion fails halfway: the fixture of the
/// tests that drive backends and faults directly. Test files add their own inspection
/// methods in an `impl common::Cluster` block.
pub struct Cluster {
    /// What faults act through.
    pub ctx: faultline_nemeses::Ctx,
    /// The backend, shared with `ctx.control`.
    pub backend: std::sync::Arc<std::sync::Mutex<Box<dyn faultline::backend::Backend>>>,
    /// One admin connection per node, from formation.
    pub admin: faultline::cluster::Admin,
    /// The bus proxy, on a proxied cluster.
    pub proxy: Option<faultline_nemeses::proxy::BusProxy>,
    /// Names the run's namespaces, chains and ledger.
    pub run_id: faultline::ledger::RunId,
    /// The run directory.
    pub dir: tempfile::TempDir,
    /// Seconds from creating the backend to the cluster agreeing.
    pub formed_in: f64,
}

impl Cluster {
    /// Brings up `primaries` x `replicas` nodes of `flavor` (n1..n<primaries> primaries,
    /// then their replicas in order), formed and agreed, the bus through the proxy when
    /// `proxied`.
    pub async fn up(
        flavor: faultline::scenario::FlavorName,
        primaries: usize,
        replicas: usize,
        node_timeout_ms: u64,
        proxied: bool,
    ) -> Cluster {
        use std::sync::{Arc, Mutex};
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().unwrap();
        let names = (1..=primaries * (1 + replicas))
            .map(|i| format!("n{i}"))
            .collect();
        let t0 = Instant::now();
        let (run_id, mut backend) = local_backend(
            dir.path(),
            Arc::from(faultline::flavor::by_name(flavor)),
            names,
            node_timeout_ms,
        );
        let proxy = if proxied {
            let nodes = faultline::backend::route_bus_through_proxy(backend.as_mut()).unwrap();
            let proxy = faultline_nemeses::proxy::BusProxy::start(nodes)
                .await
                .unwrap();
            proxy.register(run_id.as_str());
            Some(proxy)
        } else {
            None
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let admin = faultline::cluster::start_and_form(
            backend.as_mut(),
            &faultline::cluster::Layout::new(primaries, replicas),
            deadline,
        )
        .await
        .unwrap();
        let formed_in = t0.elapsed().as_secs_f64();
        let backend = Arc::new(Mutex::new(backend));
        let ctx = faultline_nemeses::Ctx {
            control: Arc::new(faultline::control::BackendControl::new(
                run_id.as_str(),
                backend.clone(),
            )),
            query_timeout: Duration::from_millis(500),
        };
        Cluster {
            ctx,
            backend,
            admin,
            proxy,
            run_id,
            dir,
            formed_in,
        }
    }

    /// `primaries` x `replicas` Redis nodes, node time-out 5 s, no proxy.
    pub async fn redis(primaries: usize, replicas: usize) -> Cluster {
        Cluster::up(
            faultline::scenario::FlavorName::Redis,
            primaries,
            replicas,
            5000,
            false,
        )
        .await
    }

    /// Sends `cmd` to node `name` on its admin connection; panics on an error.
    pub async fn query<T: redis::FromRedisValue>(&mut self, name: &str, cmd: &redis::Cmd) -> T {
        let i = self.index(name);
        self.admin
            .cmd(i, cmd)
            .await
            .unwrap_or_else(|e| panic!("{cmd:?} on {name}: {e:#}"))
    }

    /// Waits until every node agrees on slots and roles, at most `within`; panics after.
    pub async fn wait_agreed(&mut self, within: std::time::Duration) {
        self.admin
            .wait_agreed(None, tokio::time::Instant::now() + within)
            .await
            .unwrap();
    }

    /// Node names, in order.
    pub fn names(&self) -> Vec<String> {
        self.ctx.names()
    }

    /// A node's position (its index for `admin`).
    pub fn index(&self, name: &str) -> usize {
        self.names().iter().position(|n| n == name).unwrap()
    }

    /// Every node as the faults see it.
    pub fn nodes(&self) -> Vec<faultline_nemeses::NodeInfo> {
        self.ctx.control.nodes().to_vec()
    }

    /// One node as the faults see it.
    pub fn node(&self, name: &str) -> faultline_nemeses::NodeInfo {
        self.nodes().into_iter().find(|n| n.name == name).unwrap()
    }

    /// Every node as the backend started it.
    pub fn specs(&self) -> Vec<faultline::backend::NodeSpec> {
        faultline::control::lock(&self.backend).nodes().to_vec()
    }

    /// A node's network namespace.
    pub fn netns(&self, node: &str) -> String {
        self.run_id.node_netns(node)
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Tears down and checks that nothing of the run is left on the machine.
    pub fn finish(self) {
        let id = self.run_id.to_string();
        let dir = self.dir.path().to_path_buf();
        drop(self);
        assert_nothing_left(&id, &dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Delayer threads of the run, if a delay fault left any (none otherwise).
        faultline_nemeses::delay::delayer::stop(self.run_id.as_str(), None);
        if let Err(e) = faultline::control::lock(&self.backend).teardown() {
            eprintln!("teardown: {e:#}");
        }
    }
}
