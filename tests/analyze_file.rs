//! `faultline analyze FILE` and `faultline export --edn`: single history files in each
//! format, their exit codes, and the EDN round trip (export, import, same verdict).

mod common;

use std::path::Path;

use common::{code, faultline, text};

/// A register history where a read sees a value overwritten before it began.
const STALE_JSONL: &str = r#"{"index":0,"time_ns":1000,"process":0,"type":"invoke","f":"write","key":"r1","value":1}
{"index":1,"time_ns":2000,"process":0,"type":"ok","f":"write","key":"r1","value":1,"node":"n1"}
{"index":2,"time_ns":3000,"process":1,"type":"invoke","f":"write","key":"r1","value":2}
{"index":3,"time_ns":4000,"process":1,"type":"ok","f":"write","key":"r1","value":2,"node":"n1"}
{"index":4,"time_ns":5000,"process":2,"type":"invoke","f":"read","key":"r1","value":null}
{"index":5,"time_ns":6000,"process":2,"type":"ok","f":"read","key":"r1","value":1,"node":"n2"}
{"index":6,"time_ns":7000,"process":3,"type":"invoke","f":"cas","key":"r1","value":[2,3]}
{"index":7,"time_ns":8000,"process":3,"type":"info","f":"cas","key":"r1","value":[2,3],"error":"timeout"}
{"index":8,"time_ns":8500,"process":"nemesis","type":"invoke","f":"partition","value":null}
"#;

/// The same ops where the read sees the newer value: linearizable.
fn fresh_jsonl() -> String {
    STALE_JSONL.replace(
        r#""type":"ok","f":"read","key":"r1","value":1"#,
        r#""type":"ok","f":"read","key":"r1","value":2"#,
    )
}

fn analyze(path: &Path) -> (i32, String) {
    let out = faultline().arg("analyze").arg(path).output().unwrap();
    (code(&out), text(&out))
}

#[test]
fn each_format_is_detected_and_gives_the_verdicts_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, String, i32); 5] = [
        ("stale.jsonl", STALE_JSONL.to_string(), 1),
        ("fresh.jsonl", fresh_jsonl(), 0),
        (
            "history.edn",
            "{:type :invoke, :f :write, :value 1, :process 0, :time 10}\n\
             {:type :ok, :f :write, :value 1, :process 0, :time 20}\n\
             {:type :invoke, :f :read, :value nil, :process 1, :time 30}\n\
             {:type :ok, :f :read, :value 1, :process 1, :time 40}\n"
                .to_string(),
            0,
        ),
        (
            "etcd.log",
            "INFO  jepsen.util - 0\t:invoke\t:write\t4\n\
             INFO  jepsen.util - 0\t:ok\t:write\t4\n\
             INFO  jepsen.util - 1\t:invoke\t:cas\t[4 1]\n\
             INFO  jepsen.util - 1\t:fail\t:cas\t[4 1]\n"
                .to_string(),
            1,
        ),
        (
            "kv.txt",
            "{:process 0, :type :invoke, :f :append, :key \"1\", :value \"x\"}\n\
             {:process 0, :type :ok, :f :append, :key \"1\", :value \"x\"}\n\
             {:process 1, :type :invoke, :f :get, :key \"1\", :value nil}\n\
             {:process 1, :type :ok, :f :get, :key \"1\", :value \"x\"}\n"
                .to_string(),
            0,
        ),
    ];
    for (name, content, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let (got, out) = analyze(&path);
        assert_eq!(got, want, "{name}: {out}");
        assert!(out.contains("linearizable"), "{name}: {out}");
    }
    let (_, out) = analyze(&dir.path().join("etcd.log"));
    assert!(out.contains("Jepsen etcd log"), "{out}");
    let (_, out) = analyze(&dir.path().join("stale.jsonl"));
    assert!(
        out.contains("key \"r1\""),
        "the violation names the key: {out}"
    );
}

#[test]
fn unreadable_files_are_bad_input_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.edn");
    std::fs::write(
        &bad,
        "{:type :invoke, :f :read, :process 0}\n{:type :ok :f}\n",
    )
    .unwrap();
    let (got, out) = analyze(&bad);
    assert_eq!(got, 254, "{out}");
    assert!(out.contains("line 2"), "{out}");
    let unknown = dir.path().join("notes.txt");
    std::fs::write(&unknown, "hello\n").unwrap();
    let (got, out) = analyze(&unknown);
    assert_eq!(got, 254, "{out}");
    assert!(out.contains("not a history"), "{out}");
}

#[test]
fn a_search_out_of_budget_is_unknown_never_valid() {
    // Checked in-process with a zero budget (the binary's budget is 30 s): the verdict is
    // unknown and names the key.
    use faultline_checkers::{Checker, Linearizable, RunData, Validity};
    let mut lines = String::new();
    for p in 0..14 {
        lines.push_str(&format!(
            "{{\"process\":{p},\"type\":\"invoke\",\"f\":\"write\",\"key\":\"k\",\"value\":{p}}}\n"
        ));
    }
    for p in 0..14 {
        lines.push_str(&format!(
            "{{\"process\":{p},\"type\":\"ok\",\"f\":\"write\",\"key\":\"k\",\"value\":{p}}}\n"
        ));
    }
    lines.push_str("{\"process\":99,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"k\"}\n");
    lines.push_str("{\"process\":99,\"type\":\"ok\",\"f\":\"read\",\"key\":\"k\",\"value\":77}\n");
    let ops =
        faultline_history::import::parse(&lines, faultline_history::import::Format::Jsonl).unwrap();
    let r = Linearizable {
        time_budget: Some(std::time::Duration::ZERO),
        memory_budget_bytes: 1 << 30,
    }
    .check(&RunData::from_history(ops));
    assert_eq!(r.valid, Validity::Unknown, "{r:?}");
    assert_eq!(r.details["unknown_keys"][0]["key"], "k");
}

#[test]
fn export_edn_round_trips_with_the_same_verdict() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content, want) in [
        ("stale", STALE_JSONL.to_string(), 1),
        ("fresh", fresh_jsonl(), 0),
    ] {
        // A run directory: the export goes to RUN/history.edn.
        let run = dir.path().join(name);
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("history.jsonl"), &content).unwrap();
        let out = faultline()
            .args(["export", "--edn"])
            .arg(&run)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", text(&out));
        let edn = run.join("history.edn");
        let exported = std::fs::read_to_string(&edn).unwrap();
        assert!(exported.starts_with("{:index 0, :time 1000, :type :invoke, :process 0, :f :write, :value 1, :key \"r1\"}"), "{exported}");
        assert!(exported.contains(":process :nemesis"), "{exported}");
        assert!(exported.contains(":value [2 3]"), "{exported}");
        let (got, out) = analyze(&edn);
        assert_eq!(got, want, "{name} after export: {out}");
        // A file: to standard output, and back again gives the same text.
        let out = faultline()
            .args(["export", "--edn"])
            .arg(&edn)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), exported);
    }
    let out = faultline()
        .args(["export"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(code(&out), 254, "--edn is required: {}", text(&out));
}
