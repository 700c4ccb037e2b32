//! Streaming analysis gives the results.json of holding the history, byte for byte.
//!
//! `tests/data/streaming/<case>/expected-results.json` was written by `faultline analyze`
//! before analysis streamed (main at 2cb2c8b, which read the whole history into memory):
//! a clean history, one with planted losses (lost, unexpected and failed-but-present
//! elements, an earlier read of a key, text elements, unfinished invokes, a ping-pong
//! redirect, a failed failover, a split brain with writes on both sides), and that one
//! cut in the middle of a line as a kill leaves it (with its topology log cut too).
//! Since then two entries were added to each: the `stuck-migration` checker's (valid), which
//! came with composed faults, and the `client-errors` checker's (valid), which came with
//! the client adapters; every other byte is still 2cb2c8b's.
//!
//! `topology/` is the topology log of a real run (Valkey 8.0.1 3x1, partition-primaries,
//! 12 s, seed 5: one primary isolated, its shard failed over and back), stored in
//! change-only form; its `expected-results.json` was written by `faultline analyze` at
//! e4643d1 (before change-only storage) on the same log written whole, plus the
//! `client-errors` entry.

use std::path::{Path, PathBuf};

const CASES: &[&str] = &["clean", "planted-loss", "truncated"];

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/streaming")
        .join(case)
}

/// A scratch copy of a case without its expected results.
fn scratch(case: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("faultline-streaming-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["history.jsonl", "topology.jsonl"] {
        std::fs::copy(case_dir(case).join(file), dir.join(file)).unwrap();
    }
    dir
}

#[test]
fn streaming_analysis_writes_the_same_results_json_as_before() {
    for case in CASES {
        let dir = scratch(case);
        faultline::analyze::check_dir(&dir, None).unwrap();
        let got = std::fs::read_to_string(dir.join("results.json")).unwrap();
        let want = std::fs::read_to_string(case_dir(case).join("expected-results.json")).unwrap();
        assert_eq!(got, want, "{case}: results.json differs");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn streaming_and_in_memory_checking_agree() {
    for case in CASES {
        let dir = case_dir(case);
        let catalog = faultline_nemeses::registry::op_catalog();
        let held = faultline_checkers::load_run(&dir)
            .unwrap()
            .with_nemesis_ops(catalog);
        let streamed = faultline_checkers::load_run_streaming(&dir)
            .unwrap()
            .with_nemesis_ops(catalog);
        assert!(streamed.history.is_empty() && streamed.history_present);
        let all = faultline_checkers::all();
        let a = faultline_checkers::check(&held, &all);
        let b = faultline_checkers::try_check(&streamed, &all).unwrap();
        assert_eq!(a, b, "{case}");
    }
}

/// The topology case: `topology.jsonl` as stored (change-only), and written whole again.
fn topology_dirs() -> (PathBuf, PathBuf) {
    let base = std::env::temp_dir().join(format!(
        "faultline-streaming-{}-topology",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&base);
    let (change, full) = (base.join("change"), base.join("full"));
    for d in [&change, &full] {
        std::fs::create_dir_all(d).unwrap();
    }
    let stored = case_dir("topology").join("topology.jsonl");
    std::fs::copy(&stored, change.join("topology.jsonl")).unwrap();
    let whole = faultline_history::read_topology(&stored).unwrap();
    assert!(whole.skipped.is_none());
    let text: String = whole
        .records
        .iter()
        .map(|o| serde_json::to_string(o).unwrap() + "\n")
        .collect();
    std::fs::write(full.join("topology.jsonl"), text).unwrap();
    (change, full)
}

#[test]
fn a_change_only_topology_log_and_the_same_log_written_whole_check_as_before() {
    let (change, full) = topology_dirs();
    let want = std::fs::read_to_string(case_dir("topology").join("expected-results.json")).unwrap();
    for dir in [&change, &full] {
        faultline::analyze::check_dir(dir, None).unwrap();
        let got = std::fs::read_to_string(dir.join("results.json")).unwrap();
        assert_eq!(got, want, "{}: results.json differs", dir.display());
    }
    // The report's topology digest reads both alike.
    let digest = |dir: &Path| {
        let d =
            faultline::report::topology_digest::TopologyDigest::read(&dir.join("topology.jsonl"))
                .unwrap();
        format!(
            "{:?} {:?} {} {} {:?}",
            d.rows, d.nodes, d.observations, d.failed, d.notes
        )
    };
    assert_eq!(digest(&change), digest(&full));
    std::fs::remove_dir_all(change.parent().unwrap()).unwrap();
}
