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

/// Asserts that no namespace, host link, ledger or server process of run `id` is left.
pub fn assert_nothing_left(id: &str, run_dir: &Path) {
    let netns = String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !netns.contains(&format!("fl-{id}-")),
        "namespaces of run {id} left behind:\n{netns}"
    );
    let links = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
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
