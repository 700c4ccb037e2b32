//! The live progress bar of `faultline run` on a terminal: elapsed against the time
//! limit, ops ok / fail / info, and the fault in force.
//!
//! The current fault is read from the history file as it grows (the recorder flushes it
//! every 20 ms): only the bytes appended since the last tick are scanned, for nemesis
//! lines, so the bar needs no hook in the nemesis and costs a few MB/s of reading at most.
//! When stderr is not a terminal the run logs plain lines instead, as before.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use faultline_history::{Op, OpType};

/// Draws one line on stderr, rewritten in place.
pub struct ProgressBar {
    history: Option<File>,
    offset: u64,
    /// The unfinished tail of the last read (a line not yet complete).
    partial: Vec<u8>,
    fault: Option<String>,
}

/// How often the bar is redrawn.
pub const TICK: Duration = Duration::from_millis(250);

impl ProgressBar {
    /// A bar for a run whose history is at `history`; `None` when stderr is not a terminal
    /// (then the caller logs plain lines).
    pub fn for_terminal(history: &Path) -> Option<ProgressBar> {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return None;
        }
        Some(ProgressBar {
            history: File::open(history).ok(),
            offset: 0,
            partial: Vec::new(),
            fault: None,
        })
    }

    /// Reads the history appended since the last call and updates the current fault.
    fn follow(&mut self) {
        let Some(file) = self.history.as_mut() else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut fresh = Vec::new();
        let Ok(n) = file.read_to_end(&mut fresh) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in complete.split(|&b| b == b'\n') {
            if !contains(line, b"\"process\":\"nemesis\"") {
                continue;
            }
            if let Ok(op) = serde_json::from_slice::<Op>(line) {
                self.fault = next_fault(self.fault.take(), &op);
            }
        }
    }

    /// Redraws the bar.
    pub fn draw(&mut self, elapsed: Duration, limit: Duration, ok: u64, fail: u64, info: u64) {
        self.follow();
        let frac = (elapsed.as_secs_f64() / limit.as_secs_f64().max(1e-9)).clamp(0.0, 1.0);
        let width = 24;
        let filled = (frac * width as f64).round() as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
        let fault = self.fault.as_deref().unwrap_or("none");
        // Clear the line, draw, and return to column 0 so a log line overwrites it.
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\x1b[2K[{bar}] {:>5.1}s/{:.0}s  ok {ok}  fail {fail}  info {info}  fault: {fault}\r",
            elapsed.as_secs_f64(),
            limit.as_secs_f64()
        );
        let _ = err.flush();
    }

    /// Erases the bar.
    pub fn finish(&mut self) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\x1b[2K\r");
        let _ = err.flush();
    }
}

/// The fault in force after nemesis op `op`, given the one before it.
fn next_fault(current: Option<String>, op: &Op) -> Option<String> {
    let heal = faultline_nemeses::registry::op_catalog().is_heal(&op.f);
    match (op.kind, heal) {
        (OpType::Invoke, false) => Some(format!("{} (applying)", op.f)),
        (OpType::Invoke, true) => current.map(|c| format!("{c}, healing")),
        (OpType::Ok | OpType::Info, false) => Some(op.f.clone()),
        (OpType::Fail, false) => None,
        (_, true) => None,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_history::Process;

    #[test]
    fn the_fault_follows_apply_and_heal() {
        let op = |kind, f: &str| Op::new(Process::Nemesis, kind, f);
        let mut s = None;
        s = next_fault(s, &op(OpType::Invoke, "partition"));
        assert_eq!(s.as_deref(), Some("partition (applying)"));
        s = next_fault(s, &op(OpType::Ok, "partition"));
        assert_eq!(s.as_deref(), Some("partition"));
        s = next_fault(s, &op(OpType::Invoke, "heal"));
        assert_eq!(s.as_deref(), Some("partition, healing"));
        s = next_fault(s, &op(OpType::Ok, "heal"));
        assert_eq!(s, None);
    }
}
