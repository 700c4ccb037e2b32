//! `faultline suite` end to end on real servers: a two-case suite, two repetitions each,
//! run as two shards, merged, and compared with a baseline that differs in one case.

mod common;

use std::path::Path;

use common::{assert_nothing_left, cluster_lock, code, faultline, require_root, text};

/// Every `faultline: run <id>:` in a shard's stderr.
fn run_ids(stderr: &str) -> Vec<String> {
    stderr
        .match_indices("faultline: run ")
        .map(|(at, m)| stderr[at + m.len()..at + m.len() + 6].to_string())
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn two_shards_merge_into_the_suite_and_compare_finds_the_one_changed_case() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let smoke = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/smoke.yaml");
    let suite = root.join("two.yaml");
    std::fs::write(
        &suite,
        format!(
            "name: two\ntime_limit: 3\ncases:\n  - scenario: {smoke}\n    targets: [redis, valkey]\n    expect: valid\n"
        ),
    )
    .unwrap();

    // Listing: two ids, one per shard.
    let list = faultline()
        .arg("suite")
        .arg(&suite)
        .arg("--list")
        .output()
        .unwrap();
    assert_eq!(code(&list), 0, "{}", text(&list));
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "smoke@redis\nsmoke@valkey\n"
    );

    let mut shard_dirs = Vec::new();
    for m in 1..=2 {
        let dir = root.join(format!("shard-{m}"));
        let out = faultline()
            .arg("suite")
            .arg(&suite)
            .args([
                "--repeat",
                "2",
                "--partition",
                &format!("slice:{m}/2"),
                "--store",
            ])
            .arg(dir.join("store"))
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        let all = text(&out);
        assert_eq!(code(&out), 0, "{all}");
        let shard = json(&dir.join("suite.json"));
        let cases = shard["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 1, "slice:{m}/2 runs one case: {all}");
        let runs = cases[0]["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2, "--repeat 2");
        let ids = run_ids(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(ids.len(), 2, "{all}");
        for (id, run) in ids.iter().zip(runs) {
            assert_eq!(run["verdict"], "valid", "{all}");
            let run_dir = dir.join(run["run_dir"].as_str().unwrap());
            assert!(
                run_dir.join("results.json").is_file(),
                "{}",
                run_dir.display()
            );
            assert_nothing_left(id, &run_dir);
        }
        shard_dirs.push(dir);
    }

    // Merge: both cases, four repetitions, one JUnit case each, links that resolve.
    let merged = root.join("merged");
    let out = faultline()
        .args(["suite", "merge"])
        .args(&shard_dirs)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let result = json(&merged.join("suite.json"));
    let cases = result["cases"].as_array().unwrap();
    let ids: Vec<&str> = cases.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["smoke@redis", "smoke@valkey"]);
    for c in cases {
        assert_eq!(c["verdict"], "pass");
        assert_eq!(
            (c["rate"]["k"].as_u64(), c["rate"]["n"].as_u64()),
            (Some(0), Some(2))
        );
        for run in c["runs"].as_array().unwrap() {
            let report = merged
                .join(run["run_dir"].as_str().unwrap())
                .join("report.html");
            assert!(
                report.is_file(),
                "merged link {} does not resolve",
                report.display()
            );
        }
    }
    let junit = std::fs::read_to_string(merged.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 4, "{junit}");
    assert_eq!(junit.matches("<property name=\"seed\"").count(), 4);
    assert_eq!(
        junit
            .matches("<property name=\"reproduce\" value=\"faultline suite ")
            .count(),
        4
    );
    let html = std::fs::read_to_string(merged.join("suite.html")).unwrap();
    assert_eq!(html.matches("/report.html\"").count(), 4);

    // A baseline in which smoke@valkey had failed: now it is fixed; smoke@redis unchanged.
    let mut baseline = result.clone();
    let valkey = &mut baseline["cases"][1];
    valkey["verdict"] = "fail".into();
    valkey["rate"] = serde_json::json!({"k": 2, "n": 2, "rate": 1.0, "low": 0.34, "high": 1.0});
    let baseline_file = root.join("baseline.json");
    std::fs::write(&baseline_file, serde_json::to_vec(&baseline).unwrap()).unwrap();
    let summary = root.join("summary.md");
    let out = faultline()
        .args(["suite", "compare"])
        .arg(&merged)
        .arg("--baseline")
        .arg(&baseline_file)
        .arg("--summary")
        .arg(&summary)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "no new failure: {}", text(&out));
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| fixed | `smoke@valkey` | pass | 0/2"), "{md}");
    assert!(
        md.contains("| unchanged | `smoke@redis` | pass | 0/2"),
        "{md}"
    );
    assert!(
        md.contains("**1** fixed") && md.contains("**1** unchanged"),
        "{md}"
    );

    // And the other way round: against the merged result as baseline, a run where
    // smoke@redis fails is a new failure (exit 1).
    let mut worse = result.clone();
    worse["cases"][0]["verdict"] = "fail".into();
    let worse_file = root.join("worse.json");
    std::fs::write(&worse_file, serde_json::to_vec(&worse).unwrap()).unwrap();
    let out = faultline()
        .args(["suite", "compare"])
        .arg(&worse_file)
        .arg("--baseline")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("| new failure | `smoke@redis` |"));
}
