//! A replication-loop or slot-coverage episode from `results.json`, as the topology
//! timeline marks it.

use super::topology_digest::Row;

/// A replication-loop or unowned-slot episode a checker reported, to mark on the
/// topology timeline.
#[derive(Debug, Clone)]
pub struct Episode {
    /// Which checker (`replication-loop`, `slot-coverage`).
    pub checker: String,
    /// The observer that showed it.
    pub observer: String,
    /// First and last poll showing it, ns.
    pub first_ns: u64,
    /// Last poll showing it.
    pub last_ns: u64,
    /// The slots it concerned, when the checker says (slot-coverage).
    pub slots: Vec<(u16, u16)>,
    /// The nodes it concerned (the cycle of a replication loop).
    pub nodes: Vec<String>,
}

impl Episode {
    /// Whether row `row` of the timeline shows this episode: the observer's rows for the
    /// shards holding its slots, or owned (as the observer saw it) by one of its nodes.
    pub fn marks(&self, row: &Row) -> bool {
        if row.observer != self.observer {
            return false;
        }
        if !self.slots.is_empty() {
            return row.overlaps(&self.slots);
        }
        if !self.nodes.is_empty() {
            return [self.first_ns, self.last_ns].iter().any(|&t| {
                row.owner_at(t)
                    .is_some_and(|o| self.nodes.iter().any(|n| n == o))
            });
        }
        true
    }
}
