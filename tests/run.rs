//! Real runs against real servers in network namespaces: a 3x1 Redis cluster and a 3x1
//! Valkey cluster under the set workload, and a run interrupted with SIGINT.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    assert_nothing_left, cluster_lock, code, faultline, history, require_root, run_dir, run_id,
    text,
};
use faultline_history::{OpType, Process};

/// Runs the built-in smoke scenario on `flavor` for ten seconds and checks the run end to
/// end: exit 0, a well-formed history with thousands of acknowledged adds, no lost writes,
/// results.json valid, and nothing left on the machine.
fn smoke(flavor: &str) {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let out = faultline()
        .args(["run", "--flavor", flavor, "--time-limit", "10", "--store"])
        .arg(store.path())
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(code(&out), 0, "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dir = run_dir(&stdout);
    let id = run_id(&stderr);

    // Store layout.
    for file in [
        "scenario.yaml",
        "history.jsonl",
        "results.json",
        "logs/n1/server.log",
    ] {
        assert!(
            dir.join(file).exists(),
            "{file} missing in {}",
            dir.display()
        );
    }
    let latest = std::fs::canonicalize(store.path().join("latest")).unwrap();
    assert_eq!(latest, std::fs::canonicalize(&dir).unwrap());
    let scenario = std::fs::read_to_string(dir.join("scenario.yaml")).unwrap();
    assert!(
        scenario.contains("seed: "),
        "resolved scenario has its seed:\n{scenario}"
    );
    assert!(scenario.contains(&format!("flavor: {flavor}")));

    // History: numbered in order, time never goes back, every invoke completed by its
    // process before that process invokes again.
    let ops = history(&dir);
    let mut pending: HashMap<Process, OpType> = HashMap::new();
    let mut last_time = 0;
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op.index, i as u64, "index gap at line {}", i + 1);
        assert!(op.time_ns >= last_time, "time went back at index {i}");
        last_time = op.time_ns;
        match op.kind {
            OpType::Invoke => {
                assert!(
                    pending.insert(op.process, op.kind).is_none(),
                    "process {} has two ops in flight at {i}",
                    op.process
                )
            }
            _ => {
                assert!(
                    pending.remove(&op.process).is_some(),
                    "completion without invoke at {i}"
                );
                if op.kind == OpType::Ok {
                    assert!(op.node.is_some(), "ok completion without node at {i}");
                }
            }
        }
    }
    assert!(pending.is_empty(), "invokes never completed: {pending:?}");
    let ok_adds = ops
        .iter()
        .filter(|o| o.kind == OpType::Ok && o.f == "add")
        .count();
    assert!(
        ok_adds >= 2000,
        "only {ok_adds} acknowledged adds in 10 s\n{all}"
    );
    let ok_reads = ops
        .iter()
        .filter(|o| o.kind == OpType::Ok && o.f == "read")
        .count();
    assert_eq!(ok_reads, 32, "one final read per key");

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["valid"], true, "{results:#}");
    let lw = &results["checkers"]["lost-writes"];
    assert_eq!(lw["lost_count"], 0, "{lw:#}");
    assert_eq!(lw["unexpected_count"], 0, "{lw:#}");
    assert_eq!(lw["acknowledged"].as_u64().unwrap() as usize, ok_adds);
    assert_eq!(results["run"]["flavor"], flavor);
    assert_nothing_left(&id, &dir);
}

#[test]
fn redis_3x1_set_workload_loses_nothing_without_faults() {
    smoke("redis");
}

#[test]
fn valkey_3x1_set_workload_loses_nothing_without_faults() {
    smoke("valkey");
}

#[test]
fn sigint_mid_run_exits_promptly_and_leaves_nothing_behind() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let (mut child, dir) = start_long_run(store.path());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let interrupted = Instant::now();
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            interrupted.elapsed() < Duration::from_secs(15),
            "faultline did not exit within 15 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let all = text(&out);
    // Interrupted before the final reads: nobody can say whether writes were lost.
    assert_eq!(code(&out), 2, "{all}");
    let id = run_id(&String::from_utf8_lossy(&out.stderr));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["valid"], "unknown", "{results:#}");
    assert_eq!(results["run"]["interrupted"], true);
    assert_nothing_left(&id, &dir);
}

/// Starts a long run and waits until its workload is recording; returns the child and the
/// run directory.
fn start_long_run(store: &std::path::Path) -> (std::process::Child, std::path::PathBuf) {
    let mut child = faultline()
        .args(["run", "--time-limit", "120", "--store"])
        .arg(store)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let path = store.join("latest").join("history.jsonl");
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 10_000) {
            return (child, std::fs::canonicalize(store.join("latest")).unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the workload never started"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "faultline ended before the workload started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigkill_leaves_only_namespaces_and_clean_removes_them() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let (mut child, dir) = start_long_run(store.path());
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let id = run_id(&String::from_utf8_lossy(&out.stderr));

    // The servers die with faultline (PDEATHSIG); the namespaces stay for `clean`.
    let killed = Instant::now();
    while std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(dir.to_str().unwrap()))
    }) {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "servers outlived a SIGKILLed faultline"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let netns = common::ip(&["netns", "list"]);
    assert!(
        netns.contains(&format!("fl-{id}-hub")),
        "expected the killed run's namespaces:\n{netns}"
    );

    // The history a killed run leaves is readable up to its last whole line.
    let ops = history(&dir);
    assert!(ops.len() > 100, "only {} ops readable", ops.len());

    let out = faultline().args(["clean", "--run", &id]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("fl-{id}-hub")),
        "{}",
        text(&out)
    );
    assert_nothing_left(&id, &dir);

    // Nothing left means nothing more to clean.
    let out = faultline().args(["clean", "--run", &id]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to clean"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_server_that_dies_at_start_is_a_harness_error_that_quotes_it_and_leaves_nothing() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let tmp = tempfile::tempdir().unwrap();
    // A "server" that reports a version, then refuses to start: the run gets as far as
    // namespaces and processes before it fails.
    let fake = tmp.path().join("broken-server");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'Redis server v=7.0.15'; exit 0; }\necho 'refusing to start' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let scenario = tmp.path().join("broken.yaml");
    std::fs::write(
        &scenario,
        format!("cluster:\n  binary: {}\n", fake.display()),
    )
    .unwrap();
    let store = tmp.path().join("store");
    let out = faultline()
        .arg("run")
        .arg(&scenario)
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(code(&out), 255, "{all}");
    assert!(all.contains("died while starting"), "{all}");
    assert!(
        all.contains("refusing to start"),
        "the server's own words are quoted: {all}"
    );
    let id = run_id(&String::from_utf8_lossy(&out.stderr));
    assert_nothing_left(&id, &std::fs::canonicalize(store.join("latest")).unwrap());
}
