//! The command line's contract: help on every subcommand, bad input exits 254 naming the
//! file, line and field, and `analyze` judges a hand-written history.

mod common;

use std::fs;

use common::{code, faultline, text};

#[test]
fn every_subcommand_has_help() {
    for sub in [
        "run", "analyze", "doctor", "clean", "bench", "matrix", "suite",
    ] {
        let out = faultline().args([sub, "--help"]).output().unwrap();
        assert_eq!(code(&out), 0, "{sub} --help: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: faultline"));
    }
    let out = faultline().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("254 bad usage"));
}

#[test]
fn bad_suite_exits_254_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nightly.yaml");
    let smoke = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/smoke.yaml");
    fs::write(
        &path,
        format!("cases:\n  - scenario: {smoke}\n    targets: [redis]\n    expect:\n      invalid: [lost-writes]\n      min_rate: 1.5\n"),
    )
    .unwrap();
    let out = faultline().arg("suite").arg(&path).output().unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nightly.yaml:5:")
            && err.contains("cases[0].expect: min_rate must be between 0 and 1, got 1.5"),
        "{err}"
    );
    let out = faultline()
        .args(["suite", "merge", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 254, "no suite.json there: {}", text(&out));
}

#[test]
fn unknown_subcommand_is_bad_usage() {
    let out = faultline().arg("frobnicate").output().unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
}

fn run_bad_scenario(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    fs::write(&path, yaml).unwrap();
    let store = dir.path().join("store");
    let out = faultline()
        .arg("run")
        .arg(&path)
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
    assert!(
        !store.exists(),
        "a rejected scenario must not create a run directory"
    );
    String::from_utf8_lossy(&out.stderr).replace(path.to_str().unwrap(), "bad.yaml")
}

#[test]
fn zero_primaries_exits_254_with_file_line_and_field() {
    let err = run_bad_scenario("name: x\ncluster:\n  primaries: 0\n  replicas: 1\n");
    assert!(err.contains("bad.yaml:3:"), "{err}");
    assert!(err.contains("cluster.primaries"), "{err}");
}

#[test]
fn negative_rate_exits_254_with_file_line_and_field() {
    let err = run_bad_scenario("workload:\n  keys: 8\n  rate: -10\n");
    assert!(err.contains("bad.yaml:3:"), "{err}");
    assert!(err.contains("workload.rate"), "{err}");
}

#[test]
fn unknown_key_exits_254_with_file_line_and_field() {
    let err = run_bad_scenario("name: x\nworkload:\n  concurency: 4\n");
    assert!(err.contains("bad.yaml:3:"), "{err}");
    assert!(err.contains("unknown field `concurency`"), "{err}");
}

#[test]
fn wrong_type_exits_254() {
    let err = run_bad_scenario("time_limit: [1, 2]\n");
    assert!(err.contains("bad.yaml:1:"), "{err}");
    assert!(err.contains("time_limit"), "{err}");
}

#[test]
fn missing_scenario_file_exits_254() {
    let out = faultline()
        .args(["run", "/nonexistent/s.yaml"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/s.yaml"));
}

#[test]
fn bad_override_exits_254() {
    let out = faultline()
        .args(["run", "--flavor", "keydb"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
    let out = faultline()
        .args(["run", "--time-limit", "-1"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
}

const ADD_1_OK: &str = r#"{"index":0,"time_ns":10,"process":0,"type":"invoke","f":"add","key":"s1","value":1}
{"index":1,"time_ns":20,"process":0,"type":"ok","f":"add","key":"s1","value":1}
"#;

#[test]
fn analyze_names_a_lost_element_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let history = format!(
        "{ADD_1_OK}{}",
        r#"{"index":2,"time_ns":30,"process":0,"type":"invoke","f":"add","key":"s1","value":2}
{"index":3,"time_ns":40,"process":0,"type":"ok","f":"add","key":"s1","value":2}
{"index":4,"time_ns":50,"process":1,"type":"invoke","f":"read","key":"s1","value":null}
{"index":5,"time_ns":60,"process":1,"type":"ok","f":"read","key":"s1","value":[1]}
"#
    );
    fs::write(dir.path().join("history.jsonl"), history).unwrap();
    let out = faultline().arg("analyze").arg(dir.path()).output().unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out));
    let results: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results["valid"], false);
    let lost = &results["checkers"]["lost-writes"]["lost"][0];
    assert_eq!(lost["key"], "s1");
    assert_eq!(lost["element"], 2);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("s1: 2"),
        "{}",
        text(&out)
    );
}

#[test]
fn analyze_skips_a_torn_last_line_and_says_unknown_without_final_read() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("history.jsonl"),
        format!("{ADD_1_OK}{{\"index\":2,\"time_ns\":3"),
    )
    .unwrap();
    let out = faultline().arg("analyze").arg(dir.path()).output().unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("torn last line"),
        "{}",
        text(&out)
    );
}

#[test]
fn analyze_rejects_a_damaged_middle_line_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("history.jsonl"),
        format!("garbage\n{ADD_1_OK}"),
    )
    .unwrap();
    let out = faultline().arg("analyze").arg(dir.path()).output().unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("history.jsonl:1:"),
        "{}",
        text(&out)
    );
}

#[test]
fn analyze_of_an_empty_directory_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = faultline().arg("analyze").arg(dir.path()).output().unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = fs::read_to_string(format!("{root}/README.md")).unwrap();
    let ci = fs::read_to_string(format!("{root}/.ci/run")).unwrap();
    let command = readme
        .lines()
        .find(|l| l.contains("cargo test"))
        .expect("README gives a test command")
        .trim();
    assert!(
        ci.lines().any(|l| l.trim() == command),
        ".ci/run must run README's test command `{command}` exactly"
    );
}
