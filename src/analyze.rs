//! Checking a run directory: the end of `faultline run`, and all of `faultline analyze`.

use std::path::Path;

use anyhow::Context;
use faultline_checkers::{LoadError, Results};
use serde_json::Value;

use crate::exit::{self, Failure};
use crate::store::RESULTS_FILE;

/// Runs every checker on `dir`, writes `results.json` (keeping or setting its `run`
/// section), prints the summary, and returns the results.
///
/// # Errors
/// Bad input (254) when the directory holds nothing checkable or a damaged log; harness
/// error (255) when results cannot be written.
pub fn check_dir(dir: &Path, run_meta: Option<Value>) -> Result<Results, Failure> {
    let load_failure = |e: LoadError| match e {
        LoadError::Read(faultline_history::ReadError::Io { .. }) => Failure::from(e),
        other => Failure::bad_input(other),
    };
    // The history stays on disk: the checkers read it in one pass (checkers::stream).
    let run = faultline_checkers::load_run_streaming(dir).map_err(load_failure)?;
    let mut run = run.with_nemesis_ops(faultline_nemeses::registry::op_catalog());
    // A run written by `faultline run` carries its scenario: check with its tolerances.
    let scenario_file = dir.join(crate::store::SCENARIO_FILE);
    if scenario_file.exists() {
        run.tolerances = crate::scenario::Scenario::load(&scenario_file)
            .map_err(Failure::bad_input)?
            .tolerances;
    }
    let results =
        faultline_checkers::try_check(&run, &faultline_checkers::all()).map_err(load_failure)?;
    let path = dir.join(RESULTS_FILE);
    let meta = run_meta.or_else(|| {
        std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v.get("run").cloned())
    });
    let mut json = serde_json::to_value(&results).context("serializing results")?;
    if let (Some(meta), Value::Object(map)) = (meta, &mut json) {
        map.insert("run".into(), meta);
    }
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&json).context("serializing results")?,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(results)
}

/// `faultline analyze DIR`.
///
/// # Errors
/// As [`check_dir`].
pub fn command(dir: &Path) -> Result<u8, Failure> {
    let results = check_dir(dir, None)?;
    println!("{}", results.summary());
    println!("results: {}", dir.join(RESULTS_FILE).display());
    Ok(exit::for_validity(results.valid))
}
