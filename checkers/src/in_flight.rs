//! Pairing invokes with their completions.
//!
//! In the Jepsen op model a process has at most one op in flight: its next completion
//! (ok, fail or info) completes its pending invoke. [`InFlight`] holds the pending invoke
//! of each process while a checker walks the history in order, and says what the rule
//! does not cover: a second invoke while one is pending (the first one's fate is then
//! unknown), a completion with nothing pending, invokes never completed.

use std::hash::Hash;

use crate::fast_hash::FastMap;

/// The pending invoke of each process (`K`: the process, or `()` for the nemesis, which
/// does one thing at a time), as whatever the checker keeps of it (`V`: a position in the
/// history, a time, an index into its own list).
pub(crate) struct InFlight<K, V> {
    pending: FastMap<K, V>,
}

impl<K: Hash + Eq, V> Default for InFlight<K, V> {
    fn default() -> Self {
        InFlight {
            pending: FastMap::default(),
        }
    }
}

impl<K: Hash + Eq, V> InFlight<K, V> {
    /// An invoke of `process`. Returns the invoke it supersedes, if one was still pending
    /// (the one-op rule broken: that op never completes).
    pub(crate) fn invoke(&mut self, process: K, invoke: V) -> Option<V> {
        self.pending.insert(process, invoke)
    }

    /// A completion of `process`: the pending invoke it completes, or `None` for an
    /// orphan completion.
    pub(crate) fn complete(&mut self, process: &K) -> Option<V> {
        self.pending.remove(process)
    }

    /// The invokes still pending at the end of the history (never completed), in no
    /// particular order.
    pub(crate) fn unfinished(self) -> impl Iterator<Item = V> {
        self.pending.into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_completes_its_own_process_pending_invoke() {
        let mut f: InFlight<u64, usize> = InFlight::default();
        assert_eq!(f.invoke(1, 0), None);
        assert_eq!(f.invoke(2, 1), None);
        assert_eq!(f.complete(&2), Some(1));
        assert_eq!(f.complete(&2), None, "orphan");
        assert_eq!(f.invoke(1, 5), Some(0), "superseded");
        assert_eq!(f.unfinished().collect::<Vec<_>>(), vec![5]);
    }
}
