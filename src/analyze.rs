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
    let load_failure = |e: LoadError| match e {
        LoadError::Read(faultline_history::ReadError::Io { .. }) => Failure::from(e),
        other => Failure::bad_input(other),
    };
    // The history stays on disk: the checkers read it in one pass (checkers::stream).
    let run = faultline_checkers::load_run_streaming(dir).map_err(load_failure)?;
    let mut run = run.with_nemesis_ops(faultline_nemeses::registry::op_catalog());
    // A run written by `faultline run` carries its scenario: check with its tolerances.
    let scenario_file = dir.join(crate::store::SCENARIO_FILE);
    let mut workload = None;
    if scenario_file.exists() {
        let scenario =
            crate::scenario::Scenario::load(&scenario_file).map_err(Failure::bad_input)?;
        run.tolerances = scenario.tolerances;
        workload = Some(scenario.workload.name.label());
    }
    let workload = workload.or_else(|| infer_workload(&dir.join(crate::store::HISTORY_FILE)));
    let (checkers, missing) = checkers_for(workload);
    let mut results = faultline_checkers::try_check(&run, &checkers).map_err(load_failure)?;
    for name in missing {
        results.checkers.insert(
            name.to_string(),
            faultline_checkers::CheckerResult::unknown(format!(
                "the {} workload is judged by the {name} checker, which this build of \
                 faultline does not have",
                workload.unwrap_or_default()
            )),
        );
        results.valid = results.valid.worst(faultline_checkers::Validity::Unknown);
    }
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

/// The workload of a history with no scenario beside it: the first of its first
/// `INFER_LINES` ops that only one workload writes names it (the history stays on disk;
/// reading stops there).
fn infer_workload(history: &Path) -> Option<&'static str> {
    const INFER_LINES: usize = 100_000;
    let file = std::fs::File::open(history).ok()?;
    std::io::BufRead::lines(std::io::BufReader::new(file))
        .take(INFER_LINES)
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Op>(&line).ok())
        .find_map(|op| faultline_workloads::registry::infer([op.f.as_str()]))
}

/// The checkers for a run of `workload`: every checker no workload names (topology, node
/// logs, redirects, failovers), and the ones `workload` names (its registry entry's
/// [`faultline_workloads::registry::Entry::checkers`]); without a workload, every checker. A
/// workload's checker judges that workload's ops only (a list-append read is no set
/// read). Also returns the names `workload` asks for that the registry lacks.
pub fn checkers_for(
    workload: Option<&str>,
) -> (Vec<Box<dyn faultline_checkers::Checker>>, Vec<&'static str>) {
    use faultline_workloads::registry;
    let all = faultline_checkers::all();
    let Some(wanted) = workload.and_then(registry::entry).map(|e| e.checkers) else {
        return (all, Vec::new());
    };
    let claimed: Vec<&str> = registry::claimed_checkers().collect();
    let missing = wanted
        .iter()
        .copied()
        .filter(|name| !all.iter().any(|c| c.name() == *name))
        .collect();
    let checkers = all
        .into_iter()
        .filter(|c| !claimed.contains(&c.name()) || wanted.contains(&c.name()))
        .collect();
    (checkers, missing)
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

/// The checkers for a lone history file. A faultline history of one of our workloads is
/// judged as its run directory would be (the workload told by its op names); a Jepsen or
/// Porcupine register / kv history by `linearizable` alone, since the set checkers have
/// nothing to read in it; anything else by every checker.
fn checkers_for_file(history: &[Op], format: Format) -> Vec<Box<dyn faultline_checkers::Checker>> {
    if format == Format::Jsonl {
        if let Some(workload) =
            faultline_workloads::registry::infer(history.iter().map(|op| op.f.as_str()))
        {
            return checkers_for(Some(workload)).0;
        }
    }
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
    let results = faultline_checkers::check(&run, &checkers_for_file(&run.history, format));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(workload: Option<&str>) -> Vec<&'static str> {
        checkers_for(workload).0.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn a_workloads_checkers_judge_its_runs_only() {
        let every = names(None);
        assert_eq!(every.len(), faultline_checkers::all().len());
        let set = names(Some("set"));
        assert!(set.contains(&"lost-writes") && set.contains(&"split-brain"));
        assert!(!set.contains(&"counter") && !set.contains(&"list-append"));
        let counter = names(Some("counter"));
        assert!(counter.contains(&"counter") && counter.contains(&"failover"));
        assert!(!counter.contains(&"lost-writes") && !counter.contains(&"list-append"));
        let list = names(Some("list-append"));
        assert!(list.contains(&"list-append") && !list.contains(&"counter"));
        // What a workload asks for is either run or reported missing.
        for entry in faultline_workloads::registry::WORKLOADS {
            let (checkers, missing) = checkers_for(Some(entry.name));
            let run: Vec<&str> = checkers.iter().map(|c| c.name()).collect();
            for name in entry.checkers {
                assert!(run.contains(name) != missing.contains(name), "{name}");
            }
        }
    }
}
