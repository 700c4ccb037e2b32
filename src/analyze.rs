//! Checking a run directory: the end of `faultline run`, and all of `faultline analyze`.

use std::path::Path;

use anyhow::Context;
use faultline_checkers::{LoadError, Results};
use faultline_history::import::{self, Format};
use faultline_history::Op;
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
    let run = faultline_checkers::load_run(dir).map_err(|e| match e {
        LoadError::Read(faultline_history::ReadError::Io { .. }) => Failure::from(e),
        other => Failure::bad_input(other),
    })?;
    let mut run = run.with_nemesis_ops(faultline_nemeses::registry::op_catalog());
    // A run written by `faultline run` carries its scenario: check with its tolerances.
    let scenario_file = dir.join(crate::store::SCENARIO_FILE);
    if scenario_file.exists() {
        run.tolerances = crate::scenario::Scenario::load(&scenario_file)
            .map_err(Failure::bad_input)?
            .tolerances;
    }
    let results = faultline_checkers::check(&run, &faultline_checkers::all());
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

/// Reads a single history file in any format [`import::detect`] knows.
///
/// # Errors
/// Bad input (254) when the file cannot be read or parsed, naming the file, the format
/// and the line.
pub fn read_history_file(path: &Path) -> Result<(Vec<Op>, Format), Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(Failure::bad_input)?;
    let format = import::detect(&text)
        .with_context(|| format!("{}", path.display()))
        .map_err(Failure::bad_input)?;
    let ops = import::parse(&text, format)
        .with_context(|| format!("{} (read as {})", path.display(), format.name()))
        .map_err(Failure::bad_input)?;
    Ok((ops, format))
}

/// The checkers for a lone history file: a register or kv history (Jepsen's, Porcupine's,
/// the register workload's) is judged by `linearizable` alone, since the set checkers
/// have nothing to read in it; any other history by every checker, as a run directory.
fn checkers_for_file(history: &[Op]) -> Vec<Box<dyn faultline_checkers::Checker>> {
    let all = faultline_checkers::all();
    if faultline_checkers::linearizable::has_register_ops(history) {
        all.into_iter()
            .filter(|c| c.name() == "linearizable")
            .collect()
    } else {
        all
    }
}

/// `faultline analyze FILE`: checks one history file (format from its content) and prints
/// the verdict; nothing is written.
///
/// # Errors
/// Bad input (254) as [`read_history_file`].
pub fn file_command(path: &Path) -> Result<u8, Failure> {
    let (ops, format) = read_history_file(path)?;
    let count = ops.len();
    let run = faultline_checkers::RunData::from_history(ops)
        .with_nemesis_ops(faultline_nemeses::registry::op_catalog());
    let results = faultline_checkers::check(&run, &checkers_for_file(&run.history));
    println!(
        "{}: {} history, {count} lines",
        path.display(),
        format.name()
    );
    println!("{}", results.summary());
    Ok(exit::for_validity(results.valid))
}

/// `faultline analyze PATH`: a run directory (re-checked, `results.json` rewritten) or a
/// single history file ([`file_command`]).
///
/// # Errors
/// As [`check_dir`] and [`file_command`].
pub fn command(dir: &Path) -> Result<u8, Failure> {
    if dir.is_file() {
        return file_command(dir);
    }
    let results = check_dir(dir, None)?;
    println!("{}", results.summary());
    println!("results: {}", dir.join(RESULTS_FILE).display());
    Ok(exit::for_validity(results.valid))
}
