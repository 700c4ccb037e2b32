//! `STORE/index.html`: every run of a store, newest first, with its verdict and links.
//!
//! Rewritten after each run and each `faultline report`, from what the run directories
//! hold (their `results.json`), so it never disagrees with them.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::escape::escape;
use crate::store::RESULTS_FILE;

/// The index's file name at the top of a store.
pub const INDEX_FILE: &str = "index.html";

/// One run as the index lists it.
struct Entry {
    /// `scenario/timestamp`, relative to the store.
    rel: String,
    scenario: String,
    stamp: String,
    valid: String,
    detail: String,
    has_report: bool,
}

/// The store a run directory belongs to: `STORE/<scenario>/<stamp>` whose STORE holds
/// `latest` (every store `faultline run` wrote does).
pub fn store_of(run_dir: &Path) -> Option<PathBuf> {
    let store = run_dir.parent()?.parent()?;
    store
        .join("latest")
        .symlink_metadata()
        .is_ok()
        .then(|| store.to_path_buf())
}

/// Rewrites `store/index.html`; returns its path.
///
/// # Errors
/// If the store cannot be listed or the index written.
pub fn write(store: &Path) -> Result<PathBuf> {
    let mut entries = Vec::new();
    for scenario in
        std::fs::read_dir(store).with_context(|| format!("listing {}", store.display()))?
    {
        let scenario = scenario?;
        if !scenario.file_type()?.is_dir() {
            continue;
        }
        let Ok(runs) = std::fs::read_dir(scenario.path()) else {
            continue;
        };
        for run in runs.flatten() {
            let dir = run.path();
            if !dir.is_dir() {
                continue;
            }
            let results: Option<Value> = std::fs::read(dir.join(RESULTS_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if results.is_none() && !dir.join(crate::store::HISTORY_FILE).exists() {
                continue;
            }
            let valid = match results.as_ref().map(|r| &r["valid"]) {
                Some(Value::Bool(true)) => "valid",
                Some(Value::Bool(false)) => "invalid",
                Some(Value::String(s)) if s == "unknown" => "unknown",
                _ => "not checked",
            };
            let run_meta = results.as_ref().map(|r| &r["run"]);
            let detail = run_meta
                .map(|m| {
                    let mut parts = Vec::new();
                    for key in ["flavor", "server_version"] {
                        if let Some(s) = m[key].as_str() {
                            parts.push(s.to_string());
                        }
                    }
                    if let Some(seed) = m["seed"].as_u64() {
                        parts.push(format!("seed {seed}"));
                    }
                    if m["interrupted"].as_bool() == Some(true) {
                        parts.push("interrupted".into());
                    }
                    parts.join(", ")
                })
                .unwrap_or_default();
            let scenario_name = scenario.file_name().to_string_lossy().into_owned();
            let stamp = run.file_name().to_string_lossy().into_owned();
            entries.push(Entry {
                rel: format!("{scenario_name}/{stamp}"),
                scenario: scenario_name,
                stamp,
                valid: valid.into(),
                detail,
                has_report: dir.join(super::REPORT_FILE).exists(),
            });
        }
    }
    // Newest first: directory names are UTC timestamps.
    entries.sort_by(|a, b| b.stamp.cmp(&a.stamp).then(a.scenario.cmp(&b.scenario)));
    let path = store.join(INDEX_FILE);
    std::fs::write(&path, render(&entries))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn render(entries: &[Entry]) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>faultline runs</title>\n<style>\n",
    );
    out.push_str(super::html::CSS);
    out.push_str("</style></head><body>\n<h1>faultline runs</h1>\n");
    let _ = writeln!(
        out,
        "<p>{} runs, newest first.</p>\n<table id=\"runs\"><tr><th>when (UTC)</th><th>scenario</th><th>verdict</th><th>server, seed</th><th>files</th></tr>",
        entries.len()
    );
    for e in entries {
        let rel = escape(&e.rel);
        let link = if e.has_report {
            format!("<a href=\"{rel}/report.html\">report</a> · <a href=\"{rel}/results.json\">results.json</a>")
        } else {
            format!("<a href=\"{rel}/\">directory</a>")
        };
        let _ = writeln!(
            out,
            "<tr class=\"run\"><td>{}</td><td>{}</td><td><span class=\"badge {cls}\">{}</span></td><td>{}</td><td>{link}</td></tr>",
            escape(&e.stamp),
            escape(&e.scenario),
            escape(&e.valid),
            escape(&e.detail),
            cls = e.valid.replace(' ', "-"),
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_listed_newest_first_across_scenarios_with_their_verdicts() {
        let store = tempfile::tempdir().unwrap();
        let runs = [
            (
                "smoke",
                "20261122T010000.000Z",
                r#"{"valid":true,"checkers":{}}"#,
            ),
            (
                "seed-<x>",
                "20261122T030000.000Z",
                r#"{"valid":false,"checkers":{}}"#,
            ),
            (
                "smoke",
                "20261122T020000.000Z",
                r#"{"valid":"unknown","checkers":{}}"#,
            ),
        ];
        for (scenario, stamp, results) in runs {
            let dir = store.path().join(scenario).join(stamp);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(RESULTS_FILE), results).unwrap();
        }
        std::fs::create_dir_all(store.path().join("smoke/not-a-run")).unwrap();
        let html = std::fs::read_to_string(write(store.path()).unwrap()).unwrap();
        let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} in {html}"));
        assert!(at("20261122T030000") < at("20261122T020000"));
        assert!(at("20261122T020000") < at("20261122T010000"));
        assert!(html.contains("seed-&lt;x&gt;"), "names are escaped");
        assert!(!html.contains("not-a-run"));
        for verdict in ["valid", "invalid", "unknown"] {
            assert!(html.contains(&format!(">{verdict}<")), "{verdict}");
        }
    }
}
