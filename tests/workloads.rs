//! Real short runs of the register, counter and list-append workloads on a fault-free 3x1
//! Redis cluster (the host's redis-server): each ends valid, judged by its own checker.

mod common;

use common::{assert_nothing_left, cluster_lock, require_root, results, run_to_end};
use faultline_history::OpType;

/// Runs the smoke scenario with `workload` for five seconds; returns the run's exit
/// code, results, history and output, after checking that it left nothing behind.
fn run(workload: &str) -> (i32, serde_json::Value, Vec<faultline_history::Op>, String) {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let run = run_to_end(
        &[
            "--workload",
            workload,
            "--flavor",
            "redis",
            "--time-limit",
            "5",
        ],
        store.path(),
    );
    assert_nothing_left(&run.id, &run.dir);
    let r = results(&run.dir);
    let ops = common::history(&run.dir);
    (run.code, r, ops, run.text)
}

/// Completions of `f` that ended `ok`.
fn ok(ops: &[faultline_history::Op], f: &str) -> usize {
    ops.iter()
        .filter(|o| o.kind == OpType::Ok && o.f == f)
        .count()
}

#[test]
fn counter_without_faults_reads_every_increment() {
    let (code, r, ops, text) = run("counter");
    assert_eq!(code, 0, "{text}");
    let c = &r["checkers"]["counter"];
    assert_eq!(c["valid"], true, "{c:#}");
    assert!(r["checkers"].get("lost-writes").is_none(), "{r:#}");
    assert!(ok(&ops, "incr") >= 200, "{text}");
    assert_eq!(
        c["increments_ok"].as_u64().unwrap() as usize,
        ok(&ops, "incr")
    );
    assert_eq!(c["under_count"], 0);
    assert_eq!(c["over_count"], 0);
    // Every key got its final read, and the final values equal the acknowledged sums.
    assert_eq!(c["final_values"].as_array().unwrap().len(), 32, "{c:#}");
    for f in c["final_values"].as_array().unwrap() {
        assert_eq!(f["value"], f["lower"], "{f}");
    }
}

#[test]
fn list_append_without_faults_reads_prefixes_of_one_list() {
    let (code, r, ops, text) = run("list-append");
    assert_eq!(code, 0, "{text}");
    let c = &r["checkers"]["list-append"];
    assert_eq!(c["valid"], true, "{c:#}");
    assert!(r["checkers"].get("lost-writes").is_none(), "{r:#}");
    assert!(ok(&ops, "append") >= 200, "{text}");
    assert!(ok(&ops, "read") >= 200, "{text}");
    assert_eq!(c["first_divergence"], serde_json::Value::Null);
    assert_eq!(c["lost_count"], 0);
    // Lists move on after 256 appends: no read is longer.
    let longest = ops
        .iter()
        .filter(|o| o.kind == OpType::Ok && o.f == "read")
        .filter_map(|o| o.value.as_array().map(Vec::len))
        .max()
        .unwrap();
    assert!(longest <= 256, "{longest}");
}

#[test]
fn register_without_faults_is_linearizable() {
    let (code, r, ops, text) = run("register");
    assert!(ok(&ops, "write") >= 200, "{text}");
    assert!(ok(&ops, "read") >= 200, "{text}");
    assert!(ok(&ops, "cas") >= 20, "some cas swapped\n{text}");
    // EVALSHA worked (the script was loaded at setup): no cas needed its EVAL fallback
    // on a fault-free cluster, and none was refused.
    assert!(
        !ops.iter()
            .any(|o| o.error.as_deref().is_some_and(|e| e.contains("NOSCRIPT"))),
        "{text}"
    );
    assert!(r["checkers"].get("lost-writes").is_none(), "{r:#}");
    // Judged by the linearizable checker (it must be there, not skipped), and valid.
    assert_eq!(r["checkers"]["linearizable"]["valid"], true, "{r:#}");
    assert_eq!((code, &r["valid"]), (0, &serde_json::json!(true)), "{text}");
}

/// `workload.pipeline: 16` on a real Redis 3x1 through manual failovers: every process
/// still has one op at a time, each invoke is followed by its own completion, the ops
/// that met the failover followed their MOVED inside the batch, and the run is valid.
#[test]
fn pipelined_set_ops_keep_one_op_per_process_through_failovers() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(common::scenario("failover-under-load.yaml")).unwrap();
    let yaml = text.replace("  concurrency: 16\n", "  concurrency: 64\n  pipeline: 16\n");
    assert_ne!(yaml, text, "the scenario's workload section changed shape");
    let path = store.path().join("pipelined.yaml");
    std::fs::write(&path, yaml).unwrap();
    let run = run_to_end(
        &[path.to_str().unwrap(), "--time-limit", "20", "--seed", "5"],
        store.path(),
    );
    assert_nothing_left(&run.id, &run.dir);
    assert_eq!(run.code, 0, "{}", run.text);
    let ops = common::history(&run.dir);
    let mut open = std::collections::HashMap::new();
    for op in ops
        .iter()
        .filter(|o| matches!(o.process, faultline_history::Process::Client(_)))
    {
        if op.kind == OpType::Invoke {
            assert!(
                open.insert(op.process, op.index).is_none(),
                "process {} invoked again with an op open: {op:?}",
                op.process
            );
        } else {
            assert!(
                open.remove(&op.process).is_some(),
                "a completion without its invoke: {op:?}"
            );
        }
    }
    assert!(open.is_empty(), "ops left open: {open:?}");
    assert!(ok(&ops, "add") >= 1000, "{}", run.text);
    let moved = ops
        .iter()
        .filter(|o| o.kind == OpType::Ok && o.redirects.iter().any(|r| r.kind == "MOVED"))
        .count();
    assert!(moved > 0, "no op followed a MOVED: {}", run.text);
    let r = results(&run.dir);
    assert_eq!(r["checkers"]["lost-writes"]["valid"], true, "{r:#}");
}
