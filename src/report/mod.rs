//! Reports people read: `report.html` with PNG plots, `junit.xml`, and the store's
//! `index.html`. `faultline run` writes them after `results.json`; `faultline report DIR`
//! rewrites them for any run directory, even one holding only a history.
//!
//! - [`history_digest`]: the history in one streaming pass, a few integers per op.
//! - [`topology_digest`]: who each observer believed primary, per shard, over time.
//! - [`downsample`]: thinning a million-point scatter plot without changing its look.
//! - [`episode`]: a checker's episode, marked on the topology timeline.
//! - [`plots`]: the PNGs (latency, throughput, topology timeline, redirects).
//! - [`timeline`]: the `linearizable` checker's violation window as an SVG timeline.
//! - [`html`]: `report.html`; [`junit`]: `junit.xml`; [`index`]: `STORE/index.html`.
//! - [`escape`]: HTML/XML escaping; [`progress`]: the live progress bar of a run.

pub mod downsample;
pub mod episode;
pub mod escape;
pub mod history_digest;
pub mod html;
pub mod index;
pub mod junit;
pub mod plots;
pub mod progress;
pub mod timeline;
pub mod topology_digest;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use faultline_checkers::Results;
use faultline_history::TOPOLOGY_FILE;
use serde_json::Value;

use crate::exit::{self, Failure};
use crate::store::{HISTORY_FILE, RESULTS_FILE, SCENARIO_FILE};

pub use history_digest::HistoryDigest;
pub use topology_digest::TopologyDigest;

/// The report page's name inside a run directory.
pub const REPORT_FILE: &str = "report.html";
/// The JUnit file's name inside a run directory.
pub const JUNIT_FILE: &str = "junit.xml";

/// What [`write`] produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// `DIR/report.html`.
    pub report: PathBuf,
    /// `DIR/junit.xml`.
    pub junit: PathBuf,
    /// The PNGs.
    pub plots: Vec<PathBuf>,
    /// `STORE/index.html`, when the directory sits in a store.
    pub index: Option<PathBuf>,
}

/// Writes `report.html`, its PNGs and `junit.xml` into `dir` from what the directory
/// holds (results.json, history.jsonl, topology.jsonl, scenario.yaml), then rewrites the
/// store's index if `dir` is in a store. When `results.json` is missing the checkers run
/// first (as `faultline analyze` would) and write it.
///
/// # Errors
/// Bad input (254) when the directory holds nothing checkable; harness error (255) when
/// something cannot be read or written (the message names the file, or the font package).
pub fn write(dir: &Path) -> Result<Written, Failure> {
    let results_path = dir.join(RESULTS_FILE);
    if !results_path.exists() {
        crate::analyze::check_dir(dir, None)?;
    }
    let bytes = std::fs::read(&results_path)
        .with_context(|| format!("reading {}", results_path.display()))?;
    let json: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not JSON", results_path.display()))
        .map_err(Failure::bad_input)?;
    let results: Results = serde_json::from_value(json.clone())
        .with_context(|| format!("{}: not faultline results", results_path.display()))
        .map_err(Failure::bad_input)?;
    let run = json.get("run").cloned().unwrap_or(Value::Null);

    let history_path = dir.join(HISTORY_FILE);
    let history = if history_path.exists() {
        HistoryDigest::read(&history_path)?
    } else {
        HistoryDigest::default()
    };
    let topology_path = dir.join(TOPOLOGY_FILE);
    let topology = if topology_path.exists() {
        Some(TopologyDigest::read(&topology_path)?)
    } else {
        None
    };
    let episodes = episodes(&results);
    let mut plots = plots::write_all(dir, &history, topology.as_ref(), &episodes)?;
    if let Some(p) = client_windows_plot(dir, &json, &results, &history)? {
        plots.push(p);
    }

    let scenario = std::fs::read_to_string(dir.join(SCENARIO_FILE)).ok();
    let mut notes = history.notes.clone();
    if let Some(t) = &topology {
        notes.extend(t.notes.iter().cloned());
    }
    let dir_label = dir.display().to_string();
    let page = html::render(&html::Page {
        dir: &dir_label,
        results: &results,
        run: &run,
        scenario: scenario.as_deref(),
        history: &history,
        plots: &plots,
        notes: &notes,
    });
    let report = dir.join(REPORT_FILE);
    std::fs::write(&report, page).with_context(|| format!("writing {}", report.display()))?;

    let scenario_name = run["scenario"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            dir.parent()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "run".into());
    let seconds = run["timings_s"]
        .as_object()
        .map(|t| t.values().filter_map(Value::as_f64).sum())
        .unwrap_or(history.end_ns as f64 / 1e9);
    let junit = dir.join(JUNIT_FILE);
    std::fs::write(&junit, junit::render(&scenario_name, &results, seconds))
        .with_context(|| format!("writing {}", junit.display()))?;

    let index = match index::store_of(dir) {
        Some(store) => Some(index::write(&store)?),
        None => None,
    };
    Ok(Written {
        report,
        junit,
        plots: plots.iter().map(|p| dir.join(p.file)).collect(),
        index,
    })
}

/// The client's error windows around promotions (the `client-errors` checker), when the
/// run saw a promotion: which client (results.json's `run.client`), each window shaded.
fn client_windows_plot(
    dir: &Path,
    json: &serde_json::Value,
    results: &Results,
    history: &HistoryDigest,
) -> Result<Option<plots::Plot>> {
    let Some(r) = results
        .checkers
        .get(faultline_checkers::client_errors::NAME)
    else {
        return Ok(None);
    };
    let windows: Vec<(f64, Option<f64>)> = r
        .details
        .get("promotions")
        .and_then(|p| p.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let at = p["at_s"].as_f64()?;
                    Some((at, p["error_window_ms"].as_f64().map(|ms| ms / 1000.0)))
                })
                .collect()
        })
        .unwrap_or_default();
    if windows.is_empty() {
        return Ok(None);
    }
    let run = &json["run"]["client"];
    let client = match (run["name"].as_str(), run["library"].as_str()) {
        (Some(name), Some(lib)) => {
            format!("{name} ({lib} {})", run["version"].as_str().unwrap_or("?"))
        }
        (Some(name), None) => name.to_string(),
        _ => "faultline".to_string(),
    };
    plots::client_windows(dir, history, &windows, &client).map(Some)
}

/// The replication-loop and slot-coverage episodes in `results`, for the topology plot.
fn episodes(results: &Results) -> Vec<episode::Episode> {
    let mut out = Vec::new();
    for name in ["replication-loop", "slot-coverage"] {
        let Some(c) = results.checkers.get(name) else {
            continue;
        };
        for e in c
            .details
            .get("episodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(observer), Some(first), Some(last)) = (
                e["observer"].as_str(),
                e["first_ns"].as_u64(),
                e["last_ns"].as_u64(),
            ) else {
                continue;
            };
            out.push(episode::Episode {
                checker: name.into(),
                observer: observer.into(),
                first_ns: first,
                last_ns: last,
                slots: e["slots"].as_str().map(parse_ranges).unwrap_or_default(),
                nodes: e["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect(),
            });
        }
    }
    out
}

/// `0-5460,6000` as inclusive ranges; parts that are not slot numbers are left out.
fn parse_ranges(text: &str) -> Vec<(u16, u16)> {
    text.split([',', ' '])
        .filter_map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

/// `faultline report DIR`: rewrites the report and prints where it is. The exit code is
/// the stored verdict's, like `faultline analyze`.
///
/// # Errors
/// As [`write`].
pub fn command(dir: &Path) -> Result<u8, Failure> {
    let written = write(dir)?;
    println!("report: {}", written.report.display());
    println!("junit: {}", written.junit.display());
    if let Some(index) = &written.index {
        println!("index: {}", index.display());
    }
    let bytes = std::fs::read(dir.join(RESULTS_FILE)).context("reading results.json")?;
    let results: Results = serde_json::from_slice(&bytes).context("reading results.json")?;
    Ok(exit::for_validity(results.valid))
}

/// The end of `faultline run`: writes the report and prints where it is. A report that
/// cannot be written is a warning, not a different exit code: the verdict stands.
pub fn after_run(dir: &Path) {
    match write(dir) {
        Ok(w) => {
            println!("report: {}", w.report.display());
            if let Some(index) = &w.index {
                println!("index: {}", index.display());
            }
        }
        Err(e) => eprintln!("faultline: warning: no report: {:#}", e.error),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ranges;

    #[test]
    fn slot_ranges_parse_and_junk_is_left_out() {
        assert_eq!(parse_ranges("0-5460,6000, x-1"), [(0, 5460), (6000, 6000)]);
    }
}
