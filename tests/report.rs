//! The report of a real run, read the way people read it: a short real cluster run with a
//! nemesis (so fault bands exist), its report.html loaded in headless Chromium (Debian's
//! `chromium`, installed by scripts/install-deps), its PNGs decoded, its junit.xml parsed;
//! and `faultline report` on a directory that holds only a history.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cluster_lock, code, faultline, require_root, results, run_to_end, text};

/// The PNGs every report has, with the size the report states for them.
const PLOTS: [&str; 4] = [
    "latency.png",
    "throughput.png",
    "topology.png",
    "redirects.png",
];
const SIZE: (u32, u32) = (1200, 480);

/// Chromium from the Debian package; a missing browser is a set-up error, not a skip.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Some(p) = faultline::run::which(Path::new(name)) {
            return p;
        }
    }
    panic!("chromium is not installed: run `bash scripts/install-deps` (Debian package chromium)");
}

/// Loads `page` in headless Chromium (no network, a fresh profile) and returns the DOM
/// after the load event, scripts run.
fn dump_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pings",
            // Belt and braces: the page is a file and fetches nothing, and the browser
            // itself may reach no host either (every name fails to resolve, and any
            // request it still makes goes to a dead port on loopback).
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=http://127.0.0.1:9",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Width, height and number of distinct colours of a PNG.
fn png_facts(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = info.color_type.samples() * info.bit_depth as usize / 8;
    let colours: std::collections::HashSet<&[u8]> =
        buf[..info.buffer_size()].chunks(bytes.max(1)).collect();
    (info.width, info.height, colours.len())
}

#[test]
fn report_of_a_real_run_with_faults_loads_in_chromium_with_every_checker_and_plot() {
    require_root();
    let browser = chromium();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let run = run_to_end(
        &[
            "--time-limit",
            "8",
            "--nemesis",
            "kill",
            "--nemesis-interval",
            "3",
        ],
        store.path(),
    );
    assert!(
        run.text.contains("report: "),
        "run prints the report path:\n{}",
        run.text
    );
    let dir = &run.dir;
    let verdict = match &results(dir)["valid"] {
        serde_json::Value::Bool(true) => "valid",
        serde_json::Value::Bool(false) => "invalid",
        _ => "unknown",
    };
    let checkers: Vec<String> = results(dir)["checkers"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(checkers.len() >= 5, "{checkers:?}");
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    assert!(
        history.contains("\"process\":\"nemesis\""),
        "the run injected faults, so the plots have bands"
    );

    // The page, as a browser renders it.
    let dom = dump_dom(&dir.join("report.html"));
    assert!(
        dom.contains(&format!("data-verdict=\"{verdict}\"")),
        "verdict {verdict} on the page ({})",
        browser.display()
    );
    assert!(dom.contains("id=\"verdict\""), "verdict banner");
    for name in &checkers {
        assert!(
            dom.contains(&format!("data-checker=\"{name}\"")),
            "section for checker {name}"
        );
    }
    for plot in PLOTS {
        let tag = dom
            .split("<img ")
            .find(|t| t.contains(&format!("src=\"{plot}\"")))
            .unwrap_or_else(|| panic!("no <img> for {plot}"));
        assert!(
            tag.contains(&format!("data-natural-width=\"{}\"", SIZE.0)),
            "{plot} loaded in the browser: {tag}"
        );
    }
    assert!(
        dom.contains("data-plots-loaded=\"4\""),
        "all four plots loaded"
    );
    assert!(dom.contains("id=\"faults\"") && dom.contains("class=\"fault\""));
    assert!(
        dom.contains("iptables") || dom.contains("kill"),
        "fault timeline"
    );

    // The PNGs themselves.
    for plot in PLOTS {
        let (w, h, colours) = png_facts(&dir.join(plot));
        assert_eq!((w, h), SIZE, "{plot} size");
        assert!(colours > 8, "{plot} has only {colours} colours: blank?");
    }

    // junit.xml: well-formed (Chromium's XML parser says so) with one case per checker.
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let junit_dom = dump_dom(&dir.join("junit.xml"));
    assert!(
        !junit_dom.contains("parsererror"),
        "junit.xml parses: {junit_dom}"
    );
    assert_eq!(
        junit.matches("<testcase ").count(),
        checkers.len(),
        "{junit}"
    );
    for name in &checkers {
        assert!(junit.contains(&format!("name=\"{name}\"")), "{junit}");
    }

    // The store's index lists the run with its verdict and a link to the report.
    let index = std::fs::read_to_string(store.path().join("index.html")).unwrap();
    let rel = dir
        .strip_prefix(store.path())
        .unwrap()
        .display()
        .to_string();
    assert!(
        index.contains(&format!("{rel}/report.html")),
        "{rel} in {index}"
    );
    assert!(index.contains(verdict));
}

#[test]
fn report_works_on_a_directory_with_only_a_history_and_escapes_what_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        r#"{"index":0,"time_ns":1000000,"process":0,"type":"invoke","f":"add","key":"<b>k</b>","value":1}"#,
        r#"{"index":1,"time_ns":2000000,"process":0,"type":"ok","f":"add","key":"<b>k</b>","value":1,"node":"n1"}"#,
        r#"{"index":2,"time_ns":3000000,"process":"nemesis","type":"invoke","f":"pause","value":null}"#,
        r#"{"index":3,"time_ns":3500000,"process":"nemesis","type":"ok","f":"pause","value":{"nodes":["<script>n1</script>"]}}"#,
        r#"{"index":4,"time_ns":4000000,"process":1,"type":"invoke","f":"add","key":"<b>k</b>","value":2}"#,
        r#"{"index":5,"time_ns":9000000,"process":1,"type":"fail","f":"add","key":"<b>k</b>","value":2,"error":"CLUSTERDOWN <i>x</i>"}"#,
        r#"{"index":6,"time_ns":9500000,"process":"nemesis","type":"invoke","f":"resume","value":null}"#,
        r#"{"index":7,"time_ns":9600000,"process":"nemesis","type":"ok","f":"resume","value":null}"#,
        r#"{"index":8,"time_ns":10000000,"process":2,"type":"invoke","f":"read","key":"<b>k</b>","value":null}"#,
        r#"{"index":9,"time_ns":11000000,"process":2,"type":"ok","f":"read","key":"<b>k</b>","value":[1]}"#,
    ];
    std::fs::write(dir.path().join("history.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = faultline().arg("report").arg(dir.path()).output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    for file in ["report.html", "junit.xml", "results.json"] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    for plot in ["latency.png", "throughput.png", "redirects.png"] {
        let (w, h, _) = png_facts(&dir.path().join(plot));
        assert_eq!((w, h), SIZE, "{plot}");
    }
    // No topology log: no topology plot, and the page says nothing of one.
    assert!(!dir.path().join("topology.png").exists());
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(!html.contains("<script>n1"), "nemesis values are escaped");
    assert!(html.contains("&lt;script&gt;n1&lt;/script&gt;"));
    assert!(html.contains("data-checker=\"lost-writes\""));
    assert!(html.contains(">pause<"), "fault timeline lists the pause");
}

#[test]
fn the_linearizability_violation_is_drawn_as_a_timeline_that_loads_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    // Three clients on one register: 1 then 2 written and acknowledged, then a read
    // returns 1 (stale), while a cas of the fourth client is left indeterminate.
    let lines = [
        r#"{"index":0,"time_ns":1000000,"process":0,"type":"invoke","f":"write","key":"r1","value":1}"#,
        r#"{"index":1,"time_ns":2000000,"process":0,"type":"ok","f":"write","key":"r1","value":1,"node":"n1"}"#,
        r#"{"index":2,"time_ns":2500000,"process":3,"type":"invoke","f":"cas","key":"r1","value":[7,8]}"#,
        r#"{"index":3,"time_ns":3000000,"process":1,"type":"invoke","f":"write","key":"r1","value":2}"#,
        r#"{"index":4,"time_ns":4000000,"process":1,"type":"ok","f":"write","key":"r1","value":2,"node":"n1"}"#,
        r#"{"index":5,"time_ns":5000000,"process":2,"type":"invoke","f":"read","key":"r1","value":null}"#,
        r#"{"index":6,"time_ns":6000000,"process":2,"type":"ok","f":"read","key":"r1","value":1,"node":"n2"}"#,
        r#"{"index":7,"time_ns":6500000,"process":3,"type":"info","f":"cas","key":"r1","value":[7,8],"error":"timeout"}"#,
    ];
    std::fs::write(dir.path().join("history.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = faultline().arg("report").arg(dir.path()).output().unwrap();
    assert_eq!(
        code(&out),
        1,
        "the stored verdict is invalid: {}",
        text(&out)
    );
    let results = results(dir.path());
    assert_eq!(
        results["checkers"]["linearizable"]["valid"], false,
        "{results}"
    );
    let dom = dump_dom(&dir.path().join("report.html"));
    assert!(dom.contains("id=\"lin-timeline-0\""), "{dom}");
    // One lane per client, each labelled; every op of the window a bar.
    for lane in ["p0", "p1", "p2", "p3"] {
        assert!(
            dom.contains(&format!("font-weight=\"bold\">{lane}</text>")),
            "lane {lane}"
        );
    }
    assert_eq!(
        dom.matches("class=\"op\" data-role=\"violating\"").count(),
        1
    );
    assert!(
        dom.contains("data-role=\"violating\" data-index=\"5\""),
        "the stale read is marked"
    );
    assert!(
        dom.contains("p2 read -&gt; 1"),
        "the bar says what the op did"
    );
    assert!(
        dom.contains("data-role=\"linearized\""),
        "the partial linearization is shown"
    );
    assert!(
        dom.contains("url(#lin-open)"),
        "the indeterminate cas is drawn open-ended"
    );
    assert!(
        dom.contains("the register holds 2"),
        "the explanation names the state"
    );
}

#[test]
fn report_of_a_missing_directory_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = faultline()
        .arg("report")
        .arg(dir.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 254, "{}", text(&out));
    assert!(text(&out).contains("nope"), "{}", text(&out));
}

#[test]
fn a_missing_font_names_the_file_and_the_package() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("history.jsonl"),
        "{\"index\":0,\"time_ns\":1,\"process\":0,\"type\":\"invoke\",\"f\":\"add\",\"key\":\"s1\",\"value\":1}\n",
    )
    .unwrap();
    let out = faultline()
        .arg("report")
        .arg(dir.path())
        .env("FAULTLINE_FONT", "/nonexistent/NoSuchFont.ttf")
        .output()
        .unwrap();
    assert_eq!(code(&out), 255, "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("/nonexistent/NoSuchFont.ttf") && all.contains("fonts-dejavu-core"),
        "{all}"
    );
}
