//! Episodes: how long one observer kept showing one anomaly.
//!
//! An episode is a maximal run of consecutive polls of one observer that all show the
//! same anomaly (the same loop, say). A failed poll ends every open episode of that
//! observer: nothing was seen then, and a duration is only claimed for what was seen.
//! The duration is last sighting minus first, a lower bound; `cleared_ns` says when the
//! observer was first seen without it.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::views::{millis, ObserverViews, Reply, Sample};
use faultline_history::ClusterView;

/// How an episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// A later poll of the observer no longer showed it.
    Cleared(u64),
    /// The observer's next poll failed.
    ObserverFailed(u64),
    /// It was still showing at the observer's last poll.
    StillShowing,
}

/// One anomaly as one observer kept showing it.
#[derive(Debug, Clone)]
pub(crate) struct Episode<D> {
    pub(crate) observer: String,
    pub(crate) first_ns: u64,
    pub(crate) last_ns: u64,
    /// Polls that showed it.
    pub(crate) count: u64,
    pub(crate) end: End,
    /// What the checker recorded about it (from the first poll, merged with later ones).
    pub(crate) detail: D,
}

impl<D> Episode<D> {
    /// Last sighting minus first.
    pub(crate) fn duration_ns(&self) -> u64 {
        self.last_ns - self.first_ns
    }

    /// The fields every episode reports; the checker adds its own.
    pub(crate) fn json(&self, mut fields: Map<String, Value>) -> Value {
        let mut out = Map::new();
        out.insert("observer".into(), json!(self.observer));
        out.append(&mut fields);
        out.insert("first_ns".into(), json!(self.first_ns));
        out.insert("last_ns".into(), json!(self.last_ns));
        out.insert(
            "duration_ms".into(),
            json!(millis(self.first_ns, self.last_ns)),
        );
        out.insert("observations".into(), json!(self.count));
        let (ended, at) = match self.end {
            End::Cleared(t) => ("cleared", Some(t)),
            End::ObserverFailed(t) => ("observer stopped answering", Some(t)),
            End::StillShowing => ("still showing at the observer's last poll", None),
        };
        out.insert("ended".into(), json!(ended));
        if let Some(t) = at {
            out.insert("ended_ns".into(), json!(t));
        }
        Value::Object(out)
    }
}

/// Finds the episodes of every observer. `detect` lists the anomalies one view shows,
/// each under a key that says when two polls show "the same" one; `merge` folds a later
/// poll's detail into the episode's.
pub(crate) fn find<K, D, F, M>(
    observers: &[ObserverViews],
    mut detect: F,
    mut merge: M,
) -> Vec<Episode<D>>
where
    K: Ord + Clone,
    F: FnMut(&ClusterView, &Reply) -> Vec<(K, D)>,
    M: FnMut(&mut D, D),
{
    let mut done = Vec::new();
    for observer in observers {
        let mut open: BTreeMap<K, Episode<D>> = BTreeMap::new();
        for sample in &observer.samples {
            match sample {
                Sample::Failed { time_ns } => {
                    done.extend(open.into_values().map(|mut e| {
                        e.end = End::ObserverFailed(*time_ns);
                        e
                    }));
                    open = BTreeMap::new();
                }
                Sample::View {
                    time_ns,
                    text,
                    view,
                } => {
                    let mut now: BTreeMap<K, D> = detect(view, text).into_iter().collect();
                    let mut still = BTreeMap::new();
                    for (key, mut episode) in std::mem::take(&mut open) {
                        match now.remove(&key) {
                            Some(detail) => {
                                episode.last_ns = *time_ns;
                                episode.count += 1;
                                merge(&mut episode.detail, detail);
                                still.insert(key, episode);
                            }
                            None => {
                                episode.end = End::Cleared(*time_ns);
                                done.push(episode);
                            }
                        }
                    }
                    for (key, detail) in now {
                        still.insert(
                            key,
                            Episode {
                                observer: observer.name.to_string(),
                                first_ns: *time_ns,
                                last_ns: *time_ns,
                                count: 1,
                                end: End::StillShowing,
                                detail,
                            },
                        );
                    }
                    open = still;
                }
            }
        }
        done.extend(open.into_values());
    }
    done.sort_by(|a, b| {
        a.first_ns
            .cmp(&b.first_ns)
            .then_with(|| a.observer.cmp(&b.observer))
    });
    done
}

/// Splits episodes into those that last at least `tolerance_ms` and how many did not.
pub(crate) fn apply_tolerance<D>(
    episodes: Vec<Episode<D>>,
    tolerance_ms: u64,
) -> (Vec<Episode<D>>, usize) {
    let min_ns = tolerance_ms.saturating_mul(1_000_000);
    let before = episodes.len();
    let kept: Vec<Episode<D>> = episodes
        .into_iter()
        .filter(|e| e.duration_ns() >= min_ns)
        .collect();
    let ignored = before - kept.len();
    (kept, ignored)
}

/// How many episodes a result lists in full.
pub(crate) const EXAMPLES: usize = 20;

/// How many episodes a one-line summary names.
pub(crate) const SUMMARY_EXAMPLES: usize = 3;

/// The result of an episode checker: invalid when an episode outlasted the tolerance,
/// unknown when no poll got a view, valid otherwise. `what` names one episode in the
/// summary ("n3 saw n1 and n2 replicate each other"); `fields` gives its own JSON fields.
pub(crate) fn report<D>(
    views: &crate::views::Views,
    episodes: Vec<Episode<D>>,
    tolerance_ms: u64,
    noun: &str,
    mut what: impl FnMut(&Episode<D>) -> String,
    mut fields: impl FnMut(&Episode<D>) -> Map<String, Value>,
) -> crate::CheckerResult {
    use crate::{CheckerResult, Validity};
    if views.ok == 0 {
        return CheckerResult::unknown(
            "topology.jsonl has no successful observation: no view to judge",
        )
        .with("input", views.input_counts());
    }
    let (kept, ignored) = apply_tolerance(episodes, tolerance_ms);
    let longest = kept.iter().map(Episode::duration_ns).max().unwrap_or(0);
    let summary = if kept.is_empty() {
        let mut s = format!("no {noun} in {} views", views.ok);
        if ignored > 0 {
            s.push_str(&format!(
                " ({ignored} shorter than the {tolerance_ms} ms tolerance ignored)"
            ));
        }
        s
    } else {
        let mut longest_first: Vec<&Episode<D>> = kept.iter().collect();
        longest_first.sort_by_key(|e| std::cmp::Reverse(e.duration_ns()));
        let named: Vec<String> = longest_first
            .iter()
            .take(SUMMARY_EXAMPLES)
            .map(|e| {
                format!(
                    "{} for {} ms from {}",
                    what(e),
                    millis(e.first_ns, e.last_ns),
                    crate::views::secs(e.first_ns)
                )
            })
            .collect();
        let more = if kept.len() > SUMMARY_EXAMPLES {
            "; ..."
        } else {
            ""
        };
        let plural = if kept.len() == 1 { "" } else { "s" };
        format!(
            "{} {noun} episode{plural}: {}{more}",
            kept.len(),
            named.join("; ")
        )
    };
    let valid = if kept.is_empty() {
        Validity::Valid
    } else {
        Validity::Invalid
    };
    let examples: Vec<Value> = kept
        .iter()
        .take(EXAMPLES)
        .map(|e| e.json(fields(e)))
        .collect();
    CheckerResult::new(valid)
        .with("summary", summary)
        .with("episode_count", kept.len())
        .with("longest_ms", (longest + 500_000) / 1_000_000)
        .with("ignored_shorter", ignored)
        .with("tolerance_ms", tolerance_ms)
        .with("episodes", examples)
        .with("input", views.input_counts())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::Views;
    use faultline_history::Observation;

    /// A view whose only line flags `myself` with the given flag word.
    fn view(flag: &str) -> String {
        format!(
            "{} 10.0.0.1:6379@16379 myself,{flag} - 0 0 1 connected",
            crate::views::tests::id(1)
        )
    }

    #[test]
    fn consecutive_polls_make_one_episode_and_a_failure_ends_it() {
        let obs = vec![
            Observation::reply(10, "n1", view("master")),
            Observation::reply(20, "n1", view("slave")),
            Observation::reply(30, "n1", view("slave")),
            Observation::reply(40, "n1", view("master")),
            Observation::reply(50, "n1", view("slave")),
            Observation::failed(60, "n1", "timed out"),
            Observation::reply(70, "n1", view("slave")),
        ];
        let views = Views::parse(&obs);
        let found = find(
            &views.observers,
            |v, _| {
                if v.myself().unwrap().is_replica() {
                    vec![((), ())]
                } else {
                    vec![]
                }
            },
            |_, _| {},
        );
        let spans: Vec<(u64, u64, u64, End)> = found
            .iter()
            .map(|e| (e.first_ns, e.last_ns, e.count, e.end))
            .collect();
        assert_eq!(
            spans,
            vec![
                (20, 30, 2, End::Cleared(40)),
                (50, 50, 1, End::ObserverFailed(60)),
                (70, 70, 1, End::StillShowing),
            ]
        );
        let (kept, ignored) = apply_tolerance(found, 0);
        assert_eq!((kept.len(), ignored), (3, 0));
    }
}
