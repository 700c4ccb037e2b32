//! Real client libraries through their adapters (adapters/PROTOCOL.md), on real clusters:
//! each shipped adapter on a fault-free 3x1 Valkey cluster and under manual failovers (its
//! error window measured by `client-errors`, the report's plot drawn), and adapters that
//! crash, print garbage or hang, which must end the run as a harness error (255) that
//! names the adapter and leaves nothing behind.

mod common;

use std::path::Path;

use common::{assert_nothing_left, cluster_lock, history, require_root, results, run_to_end};
use faultline_history::{OpType, Process};

/// A scenario file in `dir`: a 3x1 Valkey cluster, the set workload, no faults, driven by
/// `client` (with `extra` lines added under `workload:`).
fn scenario(dir: &Path, name: &str, client: &str, time_limit: u32, extra: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {name}\nflavor: valkey\ntime_limit: {time_limit}\ncluster:\n  primaries: 3\n  \
             replicas: 1\nworkload:\n  keys: 32\n  concurrency: 16\n  op_timeout_ms: 1000\n  \
             client: {client}\n{extra}"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// No process of run `id` is left: adapters carry `--run-id <id>` on their command line.
fn assert_no_adapter_left(id: &str) {
    let needle = format!("--run-id\0{id}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                !cmdline.contains(&needle),
                "adapter process {:?} of run {id} still running: {cmdline}",
                entry.file_name()
            );
        }
    }
}

/// One fault-free run with `client`: valid, thousands of acknowledged ops, every op
/// completed, the library named in results.json, nothing left.
fn fault_free(client: &str, library: &str) {
    require_root();
    let _one = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let file = scenario(store.path(), "clients-smoke", client, 8, "");
    let run = run_to_end(&[&file], store.path());
    assert_eq!(run.code, 0, "{}", run.text);
    let r = results(&run.dir);
    assert_eq!(r["run"]["client"]["name"], client, "{}", run.text);
    assert_eq!(r["run"]["client"]["library"], library);
    assert!(r["run"]["client"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert_eq!(r["checkers"]["lost-writes"]["valid"], true);
    let ops = history(&run.dir);
    let adds_ok = ops
        .iter()
        .filter(|o| o.kind == OpType::Ok && o.f == "add")
        .count();
    assert!(adds_ok >= 2000, "only {adds_ok} ok adds through {client}");
    let workers: Vec<_> = ops
        .iter()
        .filter(|o| matches!(o.process, Process::Client(p) if p < 16) && o.f == "add")
        .collect();
    let invokes = workers.iter().filter(|o| o.kind == OpType::Invoke).count();
    assert_eq!(invokes * 2, workers.len(), "every add invoked is completed");
    assert_nothing_left(&run.id, &run.dir);
    assert_no_adapter_left(&run.id);
}

#[test]
fn redis_py_adapter_runs_a_fault_free_cluster() {
    fault_free("redis-py", "redis");
}

#[test]
fn valkey_py_adapter_runs_a_fault_free_cluster() {
    fault_free("valkey-py", "valkey");
}

#[test]
fn glide_adapter_runs_a_fault_free_cluster() {
    fault_free("glide", "valkey-glide");
}

#[test]
fn redis_rs_adapter_runs_a_fault_free_cluster() {
    fault_free("redis-rs", "redis");
}

/// A run with manual failovers driven by `client`: the outcomes are recorded, the
/// observer's promotions are found and the client's error window after each is measured.
fn failover(client: &str) {
    require_root();
    let _one = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let extra = "nemesis:\n  interval_s: 5\n  duration_s: 1\n  start_after_s: 3\n  faults:\n    \
                 - kind: failover\n      target: primaries\n      timeout_s: 10\n";
    let file = scenario(store.path(), "clients-failover", client, 14, "");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("cluster:\n", "cluster:\n  node_timeout_ms: 2000\n");
    std::fs::write(&file, format!("{text}{extra}")).unwrap();
    let run = run_to_end(&[&file], store.path());
    // A client that keeps meeting READONLY is a finding (1), not a failure of the test.
    assert!(run.code == 0 || run.code == 1, "{}", run.text);
    let r = results(&run.dir);
    assert_eq!(r["run"]["client"]["name"], client);
    let ce = &r["checkers"]["client-errors"];
    let promotions = ce["promotions"].as_array().expect("promotions");
    assert!(!promotions.is_empty(), "no promotion seen: {ce}");
    assert!(
        promotions.iter().any(|p| p["error_window_ms"].is_u64()),
        "no error window closed: {ce}"
    );
    assert!(ce["error_window_max_ms"].is_u64(), "{ce}");
    assert!(ce["errors_by_kind"].is_object(), "{ce}");
    let ops = history(&run.dir);
    let failovers = ops
        .iter()
        .filter(|o| o.process == Process::Nemesis && o.f == "failover" && o.kind != OpType::Invoke)
        .count();
    assert!(failovers >= 1, "no failover completed");
    assert!(
        run.dir.join("client-windows.png").exists(),
        "the report's plot"
    );
    assert_nothing_left(&run.id, &run.dir);
    assert_no_adapter_left(&run.id);
}

#[test]
fn redis_py_adapter_records_failover_error_windows() {
    failover("redis-py");
}

#[test]
fn valkey_py_adapter_records_failover_error_windows() {
    failover("valkey-py");
}

#[test]
fn glide_adapter_records_failover_error_windows() {
    failover("glide");
}

#[test]
fn redis_rs_adapter_records_failover_error_windows() {
    failover("redis-rs");
}

const HELLO: &str = r#"{"type":"hello","protocol":1,"library":"broken","version":"0"}"#;

/// A broken adapter (`script`, run by `sh -c`) ends the run with 255, a message naming
/// `expect` and the adapter's stderr, and nothing left on the machine.
fn broken(name: &str, script: &str, expect: &str) {
    require_root();
    let _one = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let command = serde_json::to_string(&["sh", "-c", script]).unwrap();
    let extra = format!("  adapter_command: {command}\n");
    let file = scenario(store.path(), name, "adapter", 30, &extra);
    let out = common::faultline()
        .args(["run", &file, "--store"])
        .arg(store.path())
        .output()
        .unwrap();
    let text = common::text(&out);
    assert_eq!(common::code(&out), 255, "{text}");
    assert!(text.contains("the adapter adapter failed"), "{text}");
    assert!(text.contains(expect), "expected {expect:?} in:\n{text}");
    assert!(
        text.contains("broken adapter says"),
        "stderr tail in:\n{text}"
    );
    let id = common::run_id(&String::from_utf8_lossy(&out.stderr));
    let dir = std::fs::read_dir(store.path().join(name))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_nothing_left(&id, &dir);
    assert_no_adapter_left(&id);
}

#[test]
fn adapter_that_exits_is_a_harness_error() {
    broken(
        "adapter-exits",
        &format!("read h; echo '{HELLO}'; read op; echo 'broken adapter says bye' >&2; exit 3"),
        "exited",
    );
}

#[test]
fn adapter_that_prints_garbage_is_a_harness_error() {
    broken(
        "adapter-garbage",
        &format!(
            "read h; echo '{HELLO}'; read op; echo 'broken adapter says hi' >&2; \
             echo 'this is not json'; cat >/dev/null"
        ),
        "not the protocol",
    );
}

#[test]
fn adapter_that_hangs_is_a_harness_error() {
    broken(
        "adapter-hangs",
        &format!(
            "read h; echo '{HELLO}'; echo 'broken adapter says nothing more' >&2; cat >/dev/null"
        ),
        "the adapter hangs",
    );
}
