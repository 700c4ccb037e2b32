//! Everything the checkers read about one run, loaded from its directory.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use faultline_history::{read_jsonl, NemesisOps, Observation, Op, ReadError, TOPOLOGY_FILE};

use crate::views::Views;
use crate::Tolerances;

/// The history file's name inside a run directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// The directory holding one subdirectory per node, each with the node's `server.log`.
pub const LOGS_DIR: &str = "logs";

/// A node's log file name inside `logs/<node>/`.
pub const SERVER_LOG: &str = "server.log";

/// Every input [`load_run`] knows how to read. A run directory needs at least one of them;
/// error messages list them so a user who points `faultline analyze` at the wrong place
/// learns what it looks for.
pub const KNOWN_INPUTS: &[&str] = &[HISTORY_FILE, TOPOLOGY_FILE, "logs/<node>/server.log"];

/// One node's server log, as lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLog {
    /// The node (`n1`): the name of its directory under `logs/`.
    pub node: String,
    /// The lines, in file order (line `i` is line number `i + 1`); bytes that are not
    /// UTF-8 are replaced, so a binary blob in a crash report cannot hide the rest.
    pub lines: Vec<String>,
}

/// The inputs of one run, as the checkers see them.
///
/// Each input sits in its own field with a flag saying whether its file was there at all,
/// so a checker can tell "this run recorded nothing of that kind" from "the file is
/// missing": the registry skips a checker whose inputs are absent (see
/// [`crate::Checker::needs`]), and a checker whose inputs are present but say too little
/// answers unknown, never valid. Build values with [`RunData::from_history`],
/// [`RunData::from_topology`] or `..RunData::default()` so that adding an input breaks no
/// caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunData {
    /// Every op of `history.jsonl`, in file order (which is `index` order).
    pub history: Vec<Op>,
    /// Whether `history.jsonl` existed. An empty file still counts as present.
    pub history_present: bool,
    /// Set by [`load_run_streaming`]: the history was left on disk here, and
    /// [`crate::check`] reads it in one pass (`history` stays empty until then).
    pub history_file: Option<PathBuf>,
    /// Observations given in memory ([`RunData::from_topology`]), in file order (per
    /// observer, that is time order; observers interleave). [`load_run`] leaves this
    /// empty: it reads `topology.jsonl` one line at a time straight into the compact
    /// parsed views the checkers share ([`RunData::topology_views`]).
    pub topology: Vec<Observation>,
    /// Whether `topology.jsonl` existed. An empty file still counts as present.
    pub topology_present: bool,
    /// The `CLUSTER NODES` replies, parsed once and shared by every topology checker of
    /// one analysis: from `topology.jsonl` by [`load_run`], or from `topology` on first
    /// use ([`RunData::views`]). Leave it at its default.
    pub topology_views: TopologyViews,
    /// Each node's `logs/<node>/server.log`, by node name order.
    pub logs: Vec<NodeLog>,
    /// Whether at least one `logs/<node>/server.log` existed.
    pub logs_present: bool,
    /// How long an anomaly must last to count, and the other bounds checkers judge by.
    pub tolerances: Tolerances,
    /// Things a person should know about how the inputs were read, such as a torn last
    /// line a killed run left behind. They end up in `results.json`.
    pub notes: Vec<String>,
    /// The op names each fault kind writes (`faultline_nemeses::registry::op_catalog`,
    /// set by the caller of [`load_run`]; empty by default).
    pub nemesis_ops: NemesisOps,
}

impl RunData {
    /// A run made of an in-memory history, for the orchestrator checking a run it just
    /// recorded and for tests.
    pub fn from_history(history: Vec<Op>) -> RunData {
        RunData {
            history,
            history_present: true,
            ..RunData::default()
        }
    }

    /// A run made of an in-memory topology log, for tests.
    pub fn from_topology(topology: Vec<Observation>) -> RunData {
        RunData {
            topology,
            topology_present: true,
            ..RunData::default()
        }
    }

    /// Builder: adds a history to a run.
    pub fn with_history(mut self, history: Vec<Op>) -> RunData {
        self.history = history;
        self.history_present = true;
        self
    }

    /// Builder: the op names each fault kind writes.
    pub fn with_nemesis_ops(mut self, ops: NemesisOps) -> RunData {
        self.nemesis_ops = ops;
        self
    }

    /// Builder: adds a node's log, given as text.
    pub fn with_log(mut self, node: &str, text: &str) -> RunData {
        self.logs.push(NodeLog {
            node: node.to_string(),
            lines: text.lines().map(str::to_string).collect(),
        });
        self.logs_present = true;
        self
    }
}

/// The parsed topology log: read from the file by [`load_run`], or filled from
/// [`RunData::topology`] by the first checker that asks ([`RunData::views`]). A clone
/// shares views read from a file and starts empty otherwise (the clone's in-memory
/// topology may be changed before it is checked); the cache takes no part in comparing
/// runs.
#[derive(Default)]
pub struct TopologyViews {
    cell: OnceLock<Arc<Views>>,
    from_file: bool,
}

impl TopologyViews {
    fn read(views: Views) -> TopologyViews {
        let cell = OnceLock::new();
        let _ = cell.set(Arc::new(views));
        TopologyViews {
            cell,
            from_file: true,
        }
    }
}

impl Clone for TopologyViews {
    fn clone(&self) -> Self {
        match (self.from_file, self.cell.get()) {
            (true, Some(views)) => TopologyViews::read_shared(views.clone()),
            _ => TopologyViews::default(),
        }
    }
}

impl TopologyViews {
    fn read_shared(views: Arc<Views>) -> TopologyViews {
        let cell = OnceLock::new();
        let _ = cell.set(views);
        TopologyViews {
            cell,
            from_file: true,
        }
    }
}

impl PartialEq for TopologyViews {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for TopologyViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.cell.get().is_some() {
            "parsed"
        } else {
            "not parsed yet"
        };
        f.debug_tuple("TopologyViews").field(&state).finish()
    }
}

impl RunData {
    /// Every observer's `CLUSTER NODES` views: as [`load_run`] read them, or parsed from
    /// [`RunData::topology`] the first time a checker asks and kept for the others (a
    /// topology log holds tens of thousands of replies). Change `topology` only before
    /// the first call.
    pub(crate) fn views(&self) -> &Views {
        self.topology_views
            .cell
            .get_or_init(|| Arc::new(Views::parse(&self.topology)))
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

/// Reads a stored run's inputs from `dir`: `history.jsonl`, `topology.jsonl` and
/// `logs/<node>/server.log`, each optional. Tolerances are the defaults.
///
/// A torn last line (what a killed run leaves) is skipped and recorded in
/// [`RunData::notes`]; the rest of the file is still checked.
///
/// # Errors
/// [`LoadError::NotADirectory`] if `dir` is not a directory; [`LoadError::NothingToCheck`]
/// if none of [`KNOWN_INPUTS`] is in it; [`LoadError::Read`] if an input cannot be read or
/// has a malformed line before its last one.
pub fn load_run(dir: &Path) -> Result<RunData, LoadError> {
    load(dir, false)
}

/// [`load_run`] without reading `history.jsonl`: the file is only found, and
/// [`crate::check`] streams it once past every checker (see [`crate::stream`]), so memory
/// does not grow with the history. Same verdicts, details and notes as [`load_run`].
///
/// # Errors
/// As [`load_run`], except that a damaged history is found by [`crate::check`].
pub fn load_run_streaming(dir: &Path) -> Result<RunData, LoadError> {
    load(dir, true)
}

fn load(dir: &Path, stream_history: bool) -> Result<RunData, LoadError> {
    if !dir.is_dir() {
        return Err(LoadError::NotADirectory {
            dir: dir.to_path_buf(),
        });
    }
    let mut run = RunData::default();
    let history_path = dir.join(HISTORY_FILE);
    if stream_history {
        match std::fs::metadata(&history_path) {
            Ok(_) => {
                run.history_present = true;
                run.history_file = Some(history_path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ReadError::Io {
                    path: history_path,
                    source,
                }
                .into())
            }
        }
    } else if let Some(history) = read_optional::<Op>(dir, HISTORY_FILE, &mut run.notes)? {
        run.history = history;
        run.history_present = true;
    }
    let topology_path = dir.join(TOPOLOGY_FILE);
    match Views::read(&topology_path) {
        Ok((views, torn)) => {
            if let Some(torn) = torn {
                run.notes.push(format!(
                    "{TOPOLOGY_FILE}:{}: torn last line skipped ({})",
                    torn.line, torn.message
                ));
            }
            run.topology_views = TopologyViews::read(views);
            run.topology_present = true;
        }
        Err(ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    run.logs = read_logs(&dir.join(LOGS_DIR))?;
    run.logs_present = !run.logs.is_empty();
    if !run.history_present && !run.topology_present && !run.logs_present {
        return Err(LoadError::NothingToCheck {
            dir: dir.to_path_buf(),
        });
    }
    Ok(run)
}

/// Reads `dir/name` as JSONL, or `None` if there is no such file. A torn last line
/// becomes a note.
fn read_optional<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Vec<T>>, LoadError> {
    match read_jsonl::<T>(&dir.join(name)) {
        Ok(file) => {
            if let Some(torn) = file.skipped {
                notes.push(format!(
                    "{name}:{}: torn last line skipped ({})",
                    torn.line, torn.message
                ));
            }
            Ok(Some(file.records))
        }
        Err(ReadError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads `logs/<node>/server.log` for every node directory that has one, in name order.
fn read_logs(logs: &Path) -> Result<Vec<NodeLog>, LoadError> {
    let entries = match std::fs::read_dir(logs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ReadError::Io {
                path: logs.to_path_buf(),
                source,
            }
            .into())
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join(SERVER_LOG);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue
            }
            Err(source) => return Err(ReadError::Io { path, source }.into()),
        };
        out.push(NodeLog {
            node: entry.file_name().to_string_lossy().into_owned(),
            lines: String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_string)
                .collect(),
        });
    }
    out.sort_by(|a, b| node_order(&a.node).cmp(&node_order(&b.node)));
    Ok(out)
}

/// `n2` before `n10`: by name length, then by name.
pub(crate) fn node_order(name: &str) -> (usize, &str) {
    (name.len(), name)
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

    const OBSERVATION: &str = r#"{"time_ns":5,"observer":"n1","error":"timed out"}"#;

    #[test]
    fn a_topology_only_directory_loads_and_a_torn_last_line_is_a_note() {
        let dir = temp_dir("topology-only");
        std::fs::write(
            dir.join(TOPOLOGY_FILE),
            format!("{OBSERVATION}\n{OBSERVATION}\n{{\"time_ns\":9,\"obs"),
        )
        .unwrap();
        let run = load_run(&dir).unwrap();
        assert!(run.topology_present && !run.history_present && !run.logs_present);
        let views = run.views();
        assert_eq!((views.failed, views.ok), (2, 0));
        assert_eq!(views.other[0].error.as_deref(), Some("timed out"));
        assert!(
            run.notes[0].starts_with("topology.jsonl:3: torn last line"),
            "{:?}",
            run.notes
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn node_logs_are_read_in_node_order_and_dirs_without_a_log_are_ignored() {
        let dir = temp_dir("logs");
        for node in ["n10", "n2", "n1", "empty"] {
            std::fs::create_dir_all(dir.join(LOGS_DIR).join(node)).unwrap();
            if node != "empty" {
                std::fs::write(
                    dir.join(LOGS_DIR).join(node).join(SERVER_LOG),
                    format!("{node} a\n{node} b\n"),
                )
                .unwrap();
            }
        }
        let run = load_run(&dir).unwrap();
        assert!(run.logs_present && !run.history_present && !run.topology_present);
        let nodes: Vec<&str> = run.logs.iter().map(|l| l.node.as_str()).collect();
        assert_eq!(nodes, ["n1", "n2", "n10"]);
        assert_eq!(run.logs[2].lines, ["n10 a", "n10 b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_to_check_names_every_input() {
        let dir = temp_dir("names");
        std::fs::create_dir_all(dir.join(LOGS_DIR).join("n1")).unwrap();
        let err = load_run(&dir).unwrap_err().to_string();
        for input in KNOWN_INPUTS {
            assert!(err.contains(input), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
