//! The store: `STORE/<scenario>/<UTC timestamp>/` per run, `STORE/latest` pointing at the
//! newest. A plain directory anyone can open.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The resolved scenario, with its seed.
pub const SCENARIO_FILE: &str = "scenario.yaml";
/// One op per line (see DESIGN.md).
pub const HISTORY_FILE: &str = "history.jsonl";
/// Verdicts.
pub const RESULTS_FILE: &str = "results.json";

/// Creates a fresh run directory for `scenario` and points `STORE/latest` at it.
///
/// # Errors
/// If the store cannot be written.
pub fn create_run_dir(store: &Path, scenario: &str) -> Result<PathBuf> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .context("formatting the run timestamp")?;
    let parent = store.join(scenario);
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut dir = parent.join(&stamp);
    let mut n = 1;
    while dir.exists() {
        dir = parent.join(format!("{stamp}-{n}"));
        n += 1;
    }
    fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    point_latest(store, &dir)?;
    Ok(dir)
}

/// Points `STORE/latest` at `run_dir` (relative link, replaced atomically).
///
/// # Errors
/// If the link cannot be made.
pub fn point_latest(store: &Path, run_dir: &Path) -> Result<()> {
    let target = run_dir.strip_prefix(store).unwrap_or(run_dir);
    let tmp = store.join(format!(".latest.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("linking {}", tmp.display()))?;
    fs::rename(&tmp, store.join("latest"))
        .with_context(|| format!("updating {}/latest", store.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_are_unique_and_latest_follows() {
        let store = tempfile::tempdir().unwrap();
        let a = create_run_dir(store.path(), "smoke").unwrap();
        let b = create_run_dir(store.path(), "smoke").unwrap();
        assert_ne!(a, b);
        assert_eq!(
            fs::canonicalize(store.path().join("latest")).unwrap(),
            fs::canonicalize(&b).unwrap()
        );
        assert!(a.starts_with(store.path().join("smoke")));
    }
}
