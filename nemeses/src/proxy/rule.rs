//! Per-message rules and their verdicts (turmoil's vocabulary: pass, deliver after a delay,
//! drop; plus duplicate, and hold until released).
//!
//! Rules are checked in the order they were added; the first that matches a message and
//! fires (see [`Rule::probability`]) decides it; a message no rule decides passes. A rule
//! matches on the message's [`Link`] (sender, receiver, which connection) and type. Its
//! random draws (delays within a range, whether it fires) come from its own seeded
//! generator, so the same seed and the same message order give the same verdicts.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::frame::MsgType;
use super::link::Link;

/// A rule's id, unique within one proxy.
pub type RuleId = u64;

/// Which connection of a pair a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Opener {
    /// Either connection.
    #[default]
    Any,
    /// The connection the message's sender opened (its PINGs, MEETs, broadcasts).
    Sender,
    /// The connection the message's receiver opened (replies to it: PONGs).
    Receiver,
    /// Connections these nodes opened.
    Nodes(BTreeSet<String>),
}

/// Which messages a rule is about. `None` matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Match {
    /// Senders.
    pub from: Option<BTreeSet<String>>,
    /// Receivers.
    pub to: Option<BTreeSet<String>>,
    /// Which connection of the pair.
    pub opened_by: Opener,
    /// Message types. A message whose header could not be read has no type, and only
    /// a rule without types matches it.
    pub types: Option<BTreeSet<MsgType>>,
}

impl Match {
    /// Every message.
    pub fn all() -> Match {
        Match::default()
    }

    /// Whether a message of type `msg_type` on `link` is one of these.
    pub fn matches(&self, link: &Link, msg_type: Option<MsgType>) -> bool {
        let within = |set: &Option<BTreeSet<String>>, who: &str| {
            set.as_ref().is_none_or(|s| s.contains(who))
        };
        let opener = match &self.opened_by {
            Opener::Any => true,
            Opener::Sender => link.opened_by == link.from,
            Opener::Receiver => link.opened_by == link.to,
            Opener::Nodes(n) => n.contains(&link.opened_by),
        };
        let typed = match (&self.types, msg_type) {
            (None, _) => true,
            (Some(types), Some(t)) => types.contains(&t),
            (Some(_), None) => false,
        };
        within(&self.from, &link.from) && within(&self.to, &link.to) && opener && typed
    }
}

/// What happens to a matching message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum Verdict {
    /// Deliver now (shields messages from later rules).
    Pass,
    /// Deliver after a delay drawn uniformly from `min..=max`. Later messages on the same
    /// connection and direction wait behind it unless `reorder`.
    Delay {
        /// Shortest delay.
        #[serde(serialize_with = "ms")]
        min: Duration,
        /// Longest delay.
        #[serde(serialize_with = "ms")]
        max: Duration,
        /// Let later messages overtake it.
        reorder: bool,
    },
    /// Never deliver it (the rest of the stream is untouched: messages are whole).
    ///
    /// TCP never loses a message on a live connection and the servers count on that: a
    /// node whose PING was lost sends no other on that connection while it still hears
    /// from the peer (it waits for the PONG; redis `clusterCron` only reconnects a link
    /// that is silent too). So when a drop rule is removed, the proxy closes every
    /// connection it dropped a message on, and the nodes reconnect, as after a real
    /// outage. See [`super::BusProxy::remove_rule`].
    Drop,
    /// Deliver it twice, back to back.
    Duplicate,
    /// Keep it until released (rule removed, or [`super::BusProxy::release`]). Later
    /// messages wait behind it unless `reorder`.
    Hold {
        /// Let later messages overtake it.
        reorder: bool,
    },
}

fn ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// A rule: which messages, what happens to them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Which messages.
    pub matcher: Match,
    /// What happens to them.
    pub verdict: Verdict,
    /// Chance (0..=1) that the rule fires for a matching message; when it does not, later
    /// rules are asked.
    pub probability: f64,
    /// Seed of the rule's draws.
    pub seed: u64,
    /// Who installed it and why, for logs and [`super::HeldMessage`].
    pub label: String,
}

impl Rule {
    /// A rule that always fires.
    pub fn new(matcher: Match, verdict: Verdict) -> Rule {
        Rule {
            matcher,
            verdict,
            probability: 1.0,
            seed: 0,
            label: String::new(),
        }
    }

    /// The same rule with another seed.
    pub fn seeded(mut self, seed: u64) -> Rule {
        self.seed = seed;
        self
    }

    /// The same rule with a label.
    pub fn labelled(mut self, label: impl Into<String>) -> Rule {
        self.label = label.into();
        self
    }
}

/// What the proxy does with one message.
#[derive(Debug, Clone)]
pub enum Action {
    /// Deliver now.
    Pass,
    /// Do not deliver.
    Drop,
    /// Deliver twice.
    Duplicate,
    /// Deliver when `delay` has passed (never, for a hold) or `release` is cancelled.
    Gate {
        /// The drawn delay; `None` holds until released.
        delay: Option<Duration>,
        /// Whether later messages may overtake it.
        reorder: bool,
        /// Cancelled to let it go early (the rule was removed, or a release).
        release: CancellationToken,
    },
}

/// The verdict for one message, and which rule gave it.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The rule that decided, if any did.
    pub rule: Option<RuleId>,
    /// What to do.
    pub action: Action,
}

struct Installed {
    id: RuleId,
    rule: Rule,
    rng: StdRng,
    release: CancellationToken,
}

/// The rules in force, in order.
#[derive(Default)]
pub struct RuleSet {
    rules: Vec<Installed>,
    next_id: RuleId,
}

impl RuleSet {
    /// No rules: everything passes.
    pub fn new() -> RuleSet {
        RuleSet::default()
    }

    /// Adds a rule after the others; returns its id.
    pub fn add(&mut self, rule: Rule) -> RuleId {
        self.next_id += 1;
        let id = self.next_id;
        self.rules.push(Installed {
            id,
            rng: StdRng::seed_from_u64(rule.seed),
            rule,
            release: CancellationToken::new(),
        });
        id
    }

    /// Removes a rule and releases every message it gated. Returns the rule, if it was
    /// there.
    pub fn remove(&mut self, id: RuleId) -> Option<Rule> {
        let at = self.rules.iter().position(|r| r.id == id)?;
        let r = self.rules.remove(at);
        r.release.cancel();
        Some(r.rule)
    }

    /// Removes every rule, releasing what they gated; returns them.
    pub fn clear(&mut self) -> Vec<(RuleId, Rule)> {
        std::mem::take(&mut self.rules)
            .into_iter()
            .map(|r| {
                r.release.cancel();
                (r.id, r.rule)
            })
            .collect()
    }

    /// The rules in force, in order.
    pub fn list(&self) -> Vec<(RuleId, Rule)> {
        self.rules.iter().map(|r| (r.id, r.rule.clone())).collect()
    }

    /// Decides one message.
    pub fn decide(&mut self, link: &Link, msg_type: Option<MsgType>) -> Decision {
        for r in &mut self.rules {
            if !r.rule.matcher.matches(link, msg_type) {
                continue;
            }
            if r.rule.probability < 1.0 && !r.rng.random_bool(r.rule.probability.max(0.0)) {
                continue;
            }
            let action = match &r.rule.verdict {
                Verdict::Pass => Action::Pass,
                Verdict::Drop => Action::Drop,
                Verdict::Duplicate => Action::Duplicate,
                Verdict::Delay { min, max, reorder } => {
                    let delay = if max > min {
                        let ns = r
                            .rng
                            .random_range(min.as_nanos() as u64..=max.as_nanos() as u64);
                        Duration::from_nanos(ns)
                    } else {
                        *min
                    };
                    Action::Gate {
                        delay: Some(delay),
                        reorder: *reorder,
                        release: r.release.child_token(),
                    }
                }
                Verdict::Hold { reorder } => Action::Gate {
                    delay: None,
                    reorder: *reorder,
                    release: r.release.child_token(),
                },
            };
            return Decision {
                rule: Some(r.id),
                action,
            };
        }
        Decision {
            rule: None,
            action: Action::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    fn types(t: &[MsgType]) -> Option<BTreeSet<MsgType>> {
        Some(t.iter().copied().collect())
    }

    #[test]
    fn matches_by_sender_receiver_connection_and_type() {
        // The reproduction's rule: PONGs from n1 and n2 to observer n3, on n3's connections.
        let m = Match {
            from: set(&["n1", "n2"]),
            to: set(&["n3"]),
            opened_by: Opener::Receiver,
            types: types(&[MsgType::Pong]),
        };
        let pong = Some(MsgType::Pong);
        assert!(m.matches(&Link::new("n2", "n3", "n3"), pong));
        assert!(m.matches(&Link::new("n1", "n3", "n3"), pong));
        assert!(
            !m.matches(&Link::new("n2", "n3", "n2"), pong),
            "on n2's own connection"
        );
        assert!(!m.matches(&Link::new("n2", "n3", "n3"), Some(MsgType::Ping)));
        assert!(!m.matches(&Link::new("n3", "n2", "n3"), pong), "other way");
        assert!(!m.matches(&Link::new("n2", "n3", "n3"), None), "untyped");
        assert!(Match::all().matches(&Link::new("x", "y", "x"), None));

        let by_sender = Match {
            opened_by: Opener::Sender,
            ..Match::all()
        };
        assert!(by_sender.matches(&Link::new("n2", "n3", "n2"), pong));
        assert!(!by_sender.matches(&Link::new("n2", "n3", "n3"), pong));
        let by_name = Match {
            opened_by: Opener::Nodes(["n3".to_string()].into()),
            ..Match::all()
        };
        assert!(by_name.matches(&Link::new("n2", "n3", "n3"), pong));
        assert!(!by_name.matches(&Link::new("n2", "n3", "n2"), pong));
    }

    #[test]
    fn first_firing_rule_decides_and_removal_releases() {
        let mut rules = RuleSet::new();
        let link = Link::new("n1", "n2", "n1");
        assert!(matches!(rules.decide(&link, None).action, Action::Pass));
        let hold = rules.add(Rule::new(
            Match {
                types: types(&[MsgType::Ping]),
                ..Match::all()
            },
            Verdict::Hold { reorder: false },
        ));
        let drop = rules.add(Rule::new(Match::all(), Verdict::Drop));
        let d = rules.decide(&link, Some(MsgType::Ping));
        assert_eq!(d.rule, Some(hold));
        let Action::Gate {
            delay: None,
            release,
            ..
        } = d.action
        else {
            panic!("held")
        };
        let d2 = rules.decide(&link, Some(MsgType::Pong));
        assert_eq!(d2.rule, Some(drop));
        assert!(matches!(d2.action, Action::Drop));
        assert!(!release.is_cancelled());
        assert!(rules.remove(hold).is_some());
        assert!(
            release.is_cancelled(),
            "removing the rule lets its messages go"
        );
        assert!(rules.remove(hold).is_none());
        assert_eq!(rules.list().len(), 1);
        assert_eq!(rules.clear()[0].0, drop);
        assert!(matches!(
            rules.decide(&link, Some(MsgType::Ping)).action,
            Action::Pass
        ));
    }

    fn delays(seed: u64, n: usize) -> Vec<Duration> {
        let mut rules = RuleSet::new();
        rules.add(
            Rule::new(
                Match::all(),
                Verdict::Delay {
                    min: Duration::from_millis(1000),
                    max: Duration::from_millis(2000),
                    reorder: false,
                },
            )
            .seeded(seed),
        );
        let link = Link::new("n1", "n2", "n2");
        (0..n)
            .map(|_| match rules.decide(&link, Some(MsgType::Pong)).action {
                Action::Gate { delay: Some(d), .. } => d,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn delays_are_drawn_in_range_from_the_seed() {
        let a = delays(7, 200);
        assert_eq!(a, delays(7, 200), "same seed, same delays");
        assert_ne!(a, delays(8, 200));
        assert!(a
            .iter()
            .all(|d| (1000..=2000).contains(&(d.as_millis() as u64))));
        let spread = a.iter().max().unwrap().as_millis() - a.iter().min().unwrap().as_millis();
        assert!(spread > 500, "uniform over the range: {spread}");
    }

    #[test]
    fn probability_lets_some_messages_fall_through() {
        let mut rules = RuleSet::new();
        let mut r = Rule::new(Match::all(), Verdict::Drop).seeded(3);
        r.probability = 0.25;
        rules.add(r);
        let link = Link::new("n1", "n2", "n1");
        let dropped = (0..4000)
            .filter(|_| matches!(rules.decide(&link, None).action, Action::Drop))
            .count();
        assert!((800..1200).contains(&dropped), "{dropped}");
    }
}
