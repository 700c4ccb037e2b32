//! Checking `history.jsonl` in one streaming pass (opt-in per checker).
//!
//! A checker that can judge the history one op at a time returns a [`HistoryPass`] from
//! [`crate::Checker::history_pass`]. When a run is loaded with
//! [`crate::run_data::load_run_streaming`], [`crate::check`] reads the file once, hands
//! every op to every such pass, and finishes each with an [`OpSource`] that reads back the
//! few ops its details quote; the history is never held. A checker that does not opt in
//! is unchanged: it gets [`RunData::history`] filled in, read during the same pass.
//! In memory ([`RunData::history`] given, as tests and older callers do) the same pass
//! runs over the vector, so both paths give the same verdict and details.

use std::borrow::Cow;
use std::path::PathBuf;

use faultline_history::Op;

use crate::{CheckerResult, RunData};

/// One checker's state while the history streams past.
pub trait HistoryPass {
    /// The next op of the history, in file order. `at` is where it is (a position in
    /// memory, a byte offset in the file): increasing, and what [`OpSource::op_at`] takes
    /// back. Keep what you need; `op` is reused for the next line.
    fn op(&mut self, at: u64, op: &Op);

    /// The verdict, once every op has been seen. `ops` reads back an op by its `at`.
    fn finish(self: Box<Self>, ops: &dyn OpSource) -> CheckerResult;
}

/// Reads back one op of the history by the `at` a [`HistoryPass`] was given.
pub trait OpSource {
    /// The op at `at`.
    ///
    /// # Panics
    /// If the history file can no longer be read there (it changed under the checker);
    /// [`crate::check`] turns a panic into an unknown verdict for that checker.
    fn op_at(&self, at: u64) -> Cow<'_, Op>;
}

impl OpSource for Vec<Op> {
    fn op_at(&self, at: u64) -> Cow<'_, Op> {
        Cow::Borrowed(&self[at as usize])
    }
}

/// `history.jsonl` on disk, read back by byte offset.
pub(crate) struct HistoryFile(pub(crate) PathBuf);

impl OpSource for HistoryFile {
    fn op_at(&self, at: u64) -> Cow<'_, Op> {
        match faultline_history::op_at(&self.0, at) {
            Ok(op) => Cow::Owned(op),
            Err(e) => panic!("history.jsonl changed while it was being checked: {e}"),
        }
    }
}

/// Runs `pass` over an in-memory history: what [`crate::Checker::check`] does for a
/// checker that streams.
pub fn run_in_memory(mut pass: Box<dyn HistoryPass + '_>, run: &RunData) -> CheckerResult {
    for (i, op) in run.history.iter().enumerate() {
        pass.op(i as u64, op);
    }
    pass.finish(&run.history)
}
