//! Reading a JSONL log back.
//!
//! A run that was killed mid-write leaves at most one torn line, at the very end; that line
//! is reported in [`JsonlFile::skipped`] and otherwise ignored. A malformed line anywhere
//! else is damage a person must look at, so it is an error naming the file and line.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line before the last one is not a valid record.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the JSON parser said.
        message: String,
    },
}

/// A last line that was skipped because it did not parse (a torn write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number.
    pub line: usize,
    /// Why it did not parse.
    pub message: String,
}

/// The records of one JSONL file, in file order.
#[derive(Debug, Clone)]
pub struct JsonlFile<T> {
    /// The records that parsed.
    pub records: Vec<T>,
    /// The torn last line, if there was one.
    pub skipped: Option<Skipped>,
}

/// Reads every line of `path` as a `T`. Blank lines are ignored.
///
/// # Errors
/// [`ReadError::Io`] if the file cannot be read; [`ReadError::BadLine`] if a line other than
/// the last non-blank one fails to parse.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<JsonlFile<T>, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io_err)?);
    let mut records = Vec::new();
    // A parse failure is held back until we know whether another line follows it.
    let mut pending: Option<Skipped> = None;
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(io_err)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<T>(&line);
        if let Some(record) = hold_back(path, &mut pending, i + 1, parsed)? {
            records.push(record);
        }
    }
    Ok(JsonlFile {
        records,
        skipped: pending,
    })
}

/// One non-blank line's parse, under the torn-last-line rule: a failure earlier in
/// `pending` meant a bad line before the last (an error); this line's own failure is held
/// back in `pending` until we know whether another line follows it.
pub(crate) fn hold_back<T>(
    path: &Path,
    pending: &mut Option<Skipped>,
    line: usize,
    parsed: Result<T, serde_json::Error>,
) -> Result<Option<T>, ReadError> {
    if let Some(bad) = pending.take() {
        return Err(ReadError::BadLine {
            path: path.to_path_buf(),
            line: bad.line,
            message: bad.message,
        });
    }
    Ok(parsed
        .map_err(|e| {
            *pending = Some(Skipped {
                line,
                message: e.to_string(),
            })
        })
        .ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;
    use std::io::Write;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "faultline-history-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }

    const GOOD: &str =
        r#"{"index":0,"time_ns":1,"process":0,"type":"invoke","f":"add","key":"k","value":1}"#;

    #[test]
    fn torn_last_line_is_skipped_and_reported() {
        let path = write("torn", &format!("{GOOD}\n{{\"index\":1,\"ti"));
        let file: JsonlFile<Op> = read_jsonl(&path).unwrap();
        assert_eq!(file.records.len(), 1);
        assert_eq!(file.skipped.unwrap().line, 2);
    }

    #[test]
    fn bad_line_in_the_middle_is_an_error_with_its_line() {
        let path = write("middle", &format!("{GOOD}\nnot json\n{GOOD}\n"));
        let err = read_jsonl::<Op>(&path).unwrap_err();
        assert!(matches!(err, ReadError::BadLine { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("history.jsonl:2:"), "{err}");
    }

    #[test]
    fn blank_lines_are_ignored() {
        let path = write("blank", &format!("\n{GOOD}\n\n{GOOD}\n\n"));
        let file: JsonlFile<Op> = read_jsonl(&path).unwrap();
        assert_eq!(file.records.len(), 2);
        assert!(file.skipped.is_none());
    }
}
