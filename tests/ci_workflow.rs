//! The example workflow (`ci/nightly.yml`) only helps if its commands work: every
//! `faultline` command line in it must be one the CLI accepts.

use clap::Parser;
use faultline::cli::Cli;

/// The `run:` scripts of every step, with `${{ matrix.X }}` replaced by the first value
/// of that job's matrix (other expressions by a word).
fn scripts(doc: &serde_yaml_ng::Value) -> Vec<String> {
    let mut out = Vec::new();
    let jobs = doc["jobs"].as_mapping().expect("jobs");
    for (_, job) in jobs {
        let matrix = job["strategy"]["matrix"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        for step in job["steps"].as_sequence().expect("steps") {
            let Some(run) = step["run"].as_str() else {
                continue;
            };
            let mut text = run.to_string();
            for (k, v) in &matrix {
                let first = match &v[0] {
                    serde_yaml_ng::Value::Number(n) => n.to_string(),
                    serde_yaml_ng::Value::String(s) => s.clone(),
                    other => panic!("matrix value {other:?}"),
                };
                text = text.replace(
                    &format!("${{{{ matrix.{} }}}}", k.as_str().unwrap()),
                    &first,
                );
            }
            while let Some(at) = text.find("${{") {
                let end = text[at..].find("}}").expect("closed expression") + at + 2;
                text.replace_range(at..end, "EXPR");
            }
            out.push(text.replace("\\\n", " "));
        }
    }
    out
}

/// Shell words of `line` up to the first operator (quotes removed; enough for these scripts).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                started = true;
            }
            (None, ' ' | '\t') => {
                if started || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if started || !cur.is_empty() {
        out.push(cur);
    }
    let stop = out
        .iter()
        .position(|w| ["||", "&&", ";", "|", ">", ">>", "2>"].contains(&w.as_str()))
        .unwrap_or(out.len());
    out.truncate(stop);
    out
}

#[test]
fn every_faultline_command_in_the_example_workflow_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ci/nightly.yml");
    let text = std::fs::read_to_string(path).expect("ci/nightly.yml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    assert!(
        doc["on"]["schedule"][0]["cron"].is_string(),
        "a cron trigger"
    );
    let mut seen = Vec::new();
    for script in scripts(&doc) {
        for line in script.lines() {
            let w = words(line);
            let Some(at) = w
                .iter()
                .position(|x| x == "faultline" || x.ends_with("/faultline"))
            else {
                continue;
            };
            let argv = &w[at..];
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!(
                    "ci/nightly.yml: `{}` is refused by the CLI:\n{e}",
                    argv.join(" ")
                );
            }
            seen.push(argv[1..3.min(argv.len())].join(" "));
        }
    }
    for wanted in ["suite suites/nightly.yaml", "suite merge", "suite compare"] {
        assert!(
            seen.iter().any(|s| s.starts_with(wanted)),
            "no `faultline {wanted}` line in ci/nightly.yml; saw {seen:?}"
        );
    }
    assert!(seen.len() >= 5, "{seen:?}");
}

#[test]
fn the_checker_refuses_a_bad_command() {
    assert!(Cli::try_parse_from(words(
        "faultline suite suites/nightly.yaml --partition hash:5/4"
    ))
    .is_err());
    assert!(Cli::try_parse_from(words("faultline suite merge")).is_err());
    assert!(Cli::try_parse_from(words("faultline suite compare merged")).is_err());
    assert!(Cli::try_parse_from(words(
        "faultline suite suites/x.yaml --partition slice:2/3 --list --format gha-matrix"
    ))
    .is_ok());
}
