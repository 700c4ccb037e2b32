//! What the report needs from `topology.jsonl`: per shard and observer, which node the
//! observer believed primary over time.
//!
//! A shard is named by the slot ranges of the first view that showed slots (the cluster as
//! formed); at each poll the owner of the shard's first slot in the observer's own view is
//! "the primary it believed in". Node ids become names (`n3`) through each observer's
//! `myself` line.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use faultline_history::{for_each_observation, ClusterView};

/// What one observer believed about one shard, from one poll to its next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Belief {
    /// This node owned the shard's first slot and was flagged primary.
    Primary(String),
    /// This node owned the shard's first slot but was flagged replica (the stale-PONG view
    /// of valkey-io/valkey#1015).
    OwnerFlaggedReplica(String),
    /// No node owned the shard's first slot.
    Unowned,
    /// The poll failed.
    NoAnswer,
}

/// One stretch of unchanged belief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// From this poll ...
    pub start_ns: u64,
    /// ... to the next poll that said otherwise (or the observer's last poll).
    pub end_ns: u64,
    /// What the observer believed.
    pub belief: Belief,
}

/// One row of the topology timeline: one observer's beliefs about one shard.
#[derive(Debug, Clone)]
pub struct Row {
    /// The shard, as its slot ranges (`0-5460`).
    pub shard: String,
    /// The same ranges as numbers, inclusive.
    pub ranges: Vec<(u16, u16)>,
    /// The observer (`n3`).
    pub observer: String,
    /// Its beliefs in time order.
    pub segments: Vec<Segment>,
}

/// The topology log, digested for the timeline plot.
#[derive(Debug, Clone, Default)]
pub struct TopologyDigest {
    /// One row per shard and observer, shards in slot order, observers in node order.
    pub rows: Vec<Row>,
    /// Every node name seen, in node order, for a stable colour per node.
    pub nodes: Vec<String>,
    /// Polls read, and how many failed.
    pub observations: u64,
    /// Failed polls.
    pub failed: u64,
    /// Notes on how the file was read.
    pub notes: Vec<String>,
}

impl Row {
    /// Whether the shard holds any slot of `ranges`.
    pub fn overlaps(&self, ranges: &[(u16, u16)]) -> bool {
        self.ranges
            .iter()
            .any(|(a, b)| ranges.iter().any(|(c, d)| a <= d && c <= b))
    }

    /// The node the observer believed owned the shard at `time_ns`.
    pub fn owner_at(&self, time_ns: u64) -> Option<&str> {
        let s = self
            .segments
            .iter()
            .find(|s| s.start_ns <= time_ns && time_ns <= s.end_ns)?;
        match &s.belief {
            Belief::Primary(n) | Belief::OwnerFlaggedReplica(n) => Some(n),
            _ => None,
        }
    }
}

impl TopologyDigest {
    /// Reads `path`.
    ///
    /// # Errors
    /// If the file cannot be read or has a malformed line before its last.
    pub fn read(path: &Path) -> Result<TopologyDigest> {
        let mut digest = TopologyDigest::default();
        // One line at a time, keeping per poll only its time, its observer and its parsed
        // view, shared with the observer's previous one when equal.
        let mut observations: Vec<Polled> = Vec::new();
        let mut views: Vec<Option<Arc<ClusterView>>> = Vec::new();
        let mut observer_names: Vec<String> = Vec::new();
        let mut observer_ids: HashMap<String, usize> = HashMap::new();
        let mut previous: HashMap<usize, Arc<ClusterView>> = HashMap::new();
        // Node names from each observer's own line.
        let mut names: HashMap<String, String> = HashMap::new();
        let torn = for_each_observation(path, |o| {
            let next = observer_names.len();
            let oi = *observer_ids.entry(o.observer.clone()).or_insert_with(|| {
                observer_names.push(o.observer.clone());
                next
            });
            let view = o
                .view()
                .and_then(Result::ok)
                .map(|v| match previous.get(&oi) {
                    Some(p) if **p == v => p.clone(),
                    _ => {
                        let v = Arc::new(v);
                        previous.insert(oi, v.clone());
                        v
                    }
                });
            if let Some(me) = view.as_ref().and_then(|v| v.myself()) {
                names
                    .entry(me.id.clone())
                    .or_insert_with(|| o.observer.clone());
            }
            observations.push(Polled {
                time_ns: o.time_ns,
                observer: oi,
            });
            views.push(view);
        })
        .with_context(|| "reading the topology log")?;
        if let Some(torn) = torn {
            digest.notes.push(format!(
                "topology.jsonl:{}: torn last line skipped ({})",
                torn.line, torn.message
            ));
        }
        digest.observations = observations.len() as u64;
        // Shards: the slot ranges of the first view with slots, grouped by owner.
        // (first slot, label, ranges) per shard.
        let mut shards: Vec<Shard> = Vec::new();
        if let Some(first) = views
            .iter()
            .flatten()
            .find(|v| v.nodes.iter().any(|n| !n.slots.is_empty()))
        {
            for node in first.nodes.iter().filter(|n| !n.slots.is_empty()) {
                let label = node
                    .slots
                    .iter()
                    .map(|(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                shards.push((node.slots[0].0, label, node.slots.clone()));
            }
            shards.sort();
        }
        let mut observers: Vec<String> = observer_names.clone();
        observers.sort_by(|a, b| node_order(a).cmp(&node_order(b)));
        observers.dedup();
        let mut all_nodes: Vec<String> = names.values().cloned().chain(observers.clone()).collect();
        all_nodes.sort_by(|a, b| node_order(a).cmp(&node_order(b)));
        all_nodes.dedup();
        digest.nodes = all_nodes;

        let mut rows: BTreeMap<(usize, usize), Row> = BTreeMap::new();
        let observer_index: HashMap<&str, usize> = observers
            .iter()
            .enumerate()
            .map(|(i, o)| (o.as_str(), i))
            .collect();
        for (o, view) in observations.iter().zip(&views) {
            if view.is_none() {
                digest.failed += 1;
            }
            let oi = observer_index[observer_names[o.observer].as_str()];
            for (si, (first_slot, label, ranges)) in shards.iter().enumerate() {
                let belief =
                    match view {
                        None => Belief::NoAnswer,
                        Some(v) => {
                            let owner = v.nodes.iter().find(|n| {
                                n.slots.iter().any(|(a, b)| (*a..=*b).contains(first_slot))
                            });
                            match owner {
                                None => Belief::Unowned,
                                Some(n) => {
                                    let name = names.get(&n.id).cloned().unwrap_or_else(|| {
                                        n.id.chars().take(8).collect::<String>()
                                    });
                                    if n.is_replica() {
                                        Belief::OwnerFlaggedReplica(name)
                                    } else {
                                        Belief::Primary(name)
                                    }
                                }
                            }
                        }
                    };
                let row = rows.entry((si, oi)).or_insert_with(|| Row {
                    shard: label.clone(),
                    ranges: ranges.clone(),
                    observer: observer_names[o.observer].clone(),
                    segments: Vec::new(),
                });
                match row.segments.last_mut() {
                    Some(last) if last.belief == belief => last.end_ns = o.time_ns,
                    Some(last) => {
                        last.end_ns = o.time_ns;
                        row.segments.push(Segment {
                            start_ns: o.time_ns,
                            end_ns: o.time_ns,
                            belief,
                        });
                    }
                    None => row.segments.push(Segment {
                        start_ns: o.time_ns,
                        end_ns: o.time_ns,
                        belief,
                    }),
                }
            }
        }
        digest.rows = rows.into_values().collect();
        Ok(digest)
    }
}

/// One poll, as the digest keeps it.
struct Polled {
    time_ns: u64,
    /// Index into the observers in order of appearance.
    observer: usize,
}

/// A shard of the cluster as formed: its first slot, its label and its slot ranges.
type Shard = (u16, String, Vec<(u16, u16)>);

/// `n2` before `n10`.
fn node_order(name: &str) -> (usize, &str) {
    (name.len(), name)
}
