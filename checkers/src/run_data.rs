//! Everything the checkers read about one run, loaded from its directory.

use std::io;
use std::path::{Path, PathBuf};

use faultline_history::{read_jsonl, Op, ReadError};

/// The history file's name inside a run directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// Every file [`load_run`] knows how to read. A run directory needs at least one of them;
/// error messages list them so a user who points `faultline analyze` at the wrong place
/// learns what it looks for.
pub const KNOWN_INPUTS: &[&str] = &[HISTORY_FILE];

/// The inputs of one run, as the checkers see them.
///
/// Each input sits in its own field with a flag saying whether its file was there at all,
/// so a checker can tell "this run recorded nothing of that kind" from "the file is
/// missing" and answer unknown rather than valid. New inputs (the topology log) become new
/// fields; build values with [`RunData::from_history`] or `..RunData::default()` so that
/// adding one breaks no caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunData {
    /// Every op of `history.jsonl`, in file order (which is `index` order).
    pub history: Vec<Op>,
    /// Whether `history.jsonl` existed. An empty file still counts as present.
    pub history_present: bool,
    /// Things a person should know about how the inputs were read, such as a torn last
    /// line a killed run left behind. They end up in `results.json`.
    pub notes: Vec<String>,
}

impl RunData {
    /// A run made of an in-memory history, for the orchestrator checking a run it just
    /// recorded and for tests.
    pub fn from_history(history: Vec<Op>) -> RunData {
        RunData {
            history,
            history_present: true,
            notes: Vec::new(),
        }
    }
}

/// Why a run directory could not be loaded.
///
/// `NotADirectory` and `NothingToCheck` are the user's mistake (a wrong path; the CLI
/// exits with "bad input"); `Read` is damage to the run's files and keeps the file and
/// line so a person can look.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The path does not exist or is not a directory.
    #[error("{}: not a run directory (no such directory)", dir.display())]
    NotADirectory {
        /// The path given.
        dir: PathBuf,
    },
    /// The directory holds none of the files the checkers read.
    #[error(
        "{}: nothing to check: a run directory written by `faultline run` holds {}, and none is here",
        dir.display(),
        KNOWN_INPUTS.join(", ")
    )]
    NothingToCheck {
        /// The directory given.
        dir: PathBuf,
    },
    /// An input exists but could not be read, or has a malformed line before its last.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Reads a stored run's inputs from `dir`.
///
/// A torn last line (what a killed run leaves) is skipped and recorded in
/// [`RunData::notes`]; the rest of the file is still checked.
///
/// # Errors
/// [`LoadError::NotADirectory`] if `dir` is not a directory; [`LoadError::NothingToCheck`]
/// if none of [`KNOWN_INPUTS`] is in it; [`LoadError::Read`] if an input cannot be read or
/// has a malformed line before its last one.
pub fn load_run(dir: &Path) -> Result<RunData, LoadError> {
    if !dir.is_dir() {
        return Err(LoadError::NotADirectory {
            dir: dir.to_path_buf(),
        });
    }
    let mut run = RunData::default();
    match read_jsonl::<Op>(&dir.join(HISTORY_FILE)) {
        Ok(file) => {
            run.history = file.records;
            run.history_present = true;
            if let Some(torn) = file.skipped {
                run.notes.push(format!(
                    "{HISTORY_FILE}:{}: torn last line skipped ({})",
                    torn.line, torn.message
                ));
            }
        }
        Err(ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if !run.history_present {
        return Err(LoadError::NothingToCheck {
            dir: dir.to_path_buf(),
        });
    }
    Ok(run)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh, empty directory for one test.
    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "faultline-checkers-test-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const LINE: &str =
        r#"{"index":0,"time_ns":1,"process":0,"type":"invoke","f":"add","key":"s1","value":1}"#;

    #[test]
    fn torn_last_line_becomes_a_note() {
        let dir = temp_dir("torn");
        std::fs::write(
            dir.join(HISTORY_FILE),
            format!("{LINE}\n{LINE}\n{{\"index\":2,\"ti"),
        )
        .unwrap();
        let run = load_run(&dir).unwrap();
        assert!(run.history_present);
        assert_eq!(run.history.len(), 2);
        assert_eq!(run.notes.len(), 1);
        assert!(
            run.notes[0].starts_with("history.jsonl:3: torn last line skipped ("),
            "{:?}",
            run.notes
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clean_history_has_no_notes() {
        let dir = temp_dir("clean");
        std::fs::write(dir.join(HISTORY_FILE), format!("{LINE}\n")).unwrap();
        let run = load_run(&dir).unwrap();
        assert_eq!(run.history.len(), 1);
        assert!(run.notes.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_dir_is_nothing_to_check_and_says_what_it_looks_for() {
        let dir = temp_dir("empty");
        let err = load_run(&dir).unwrap_err();
        assert!(matches!(err, LoadError::NothingToCheck { .. }), "{err}");
        assert!(err.to_string().contains("history.jsonl"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_dir_is_not_a_directory() {
        let parent = temp_dir("missing");
        let err = load_run(&parent.join("nope")).unwrap_err();
        assert!(matches!(err, LoadError::NotADirectory { .. }), "{err}");
        std::fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn malformed_middle_line_is_a_read_error_with_file_and_line() {
        let dir = temp_dir("middle");
        std::fs::write(dir.join(HISTORY_FILE), format!("{LINE}\nnope\n{LINE}\n")).unwrap();
        let err = load_run(&dir).unwrap_err();
        assert!(matches!(
            err,
            LoadError::Read(ReadError::BadLine { line: 2, .. })
        ));
        assert!(err.to_string().contains("history.jsonl:2:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
