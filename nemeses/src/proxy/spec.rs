//! Scenario pieces for the bus proxy: whether a run routes its bus through the proxy, and
//! the bus faults.
//!
//! ```yaml
//! cluster:
//!   bus: proxy            # direct (default) | proxy
//! nemesis:
//!   faults:
//!     - kind: bus-delay   # the seed-002 reproduction's fault
//!       from: all         # senders (default all)
//!       to: one           # receivers (default one)
//!       opened_by: receiver   # any (default) | sender | receiver
//!       types: [pong]     # default: every type
//!       delay_ms: [1000, 2000]  # fixed (500) or a uniform range (default [1000, 2000])
//!       reorder: false    # let later messages overtake (default false: keep order)
//!     - kind: bus-drop
//!       from: [n3]
//!       to: all
//!       both_ways: true   # also the messages from `to` to `from`
//!       probability: 1.0  # chance per message (default 1)
//!     - kind: bus-hold    # hold until healed
//!       to: one
//!       types: [failover-auth-ack]
//! ```

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::frame::MsgType;
use crate::spec::Target;

/// How the nodes reach each other's cluster bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusMode {
    /// Straight to each other's bus port.
    #[default]
    Direct,
    /// Through the harness's bus proxy (needed by the bus faults).
    Proxy,
}

/// Which connection of a pair a bus fault touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenedBy {
    /// Both.
    #[default]
    Any,
    /// The one the sender opened: its PINGs, MEETs, FAILs, vote requests.
    Sender,
    /// The one the receiver opened: the sender's replies to it (PONGs).
    Receiver,
}

/// A delay in milliseconds: fixed (`500`) or drawn uniformly from a range
/// (`[1000, 2000]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayMs {
    /// Shortest.
    pub min: u64,
    /// Longest.
    pub max: u64,
}

impl Default for DelayMs {
    fn default() -> Self {
        DelayMs {
            min: 1000,
            max: 2000,
        }
    }
}

impl Serialize for DelayMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.min == self.max {
            s.serialize_u64(self.min)
        } else {
            [self.min, self.max].serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for DelayMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DelayMs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("milliseconds (500) or a range [min, max]")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DelayMs, E> {
                Ok(DelayMs { min: v, max: v })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DelayMs, E> {
                u64::try_from(v)
                    .map(|v| DelayMs { min: v, max: v })
                    .map_err(|_| E::custom(format!("a delay cannot be negative, got {v}")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DelayMs, A::Error> {
                let min: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("a range needs [min, max]"))?;
                let max: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("a range needs [min, max]"))?;
                if seq.next_element::<u64>()?.is_some() {
                    return Err(de::Error::custom("a range is [min, max], two numbers"));
                }
                if min > max {
                    return Err(de::Error::custom(format!(
                        "range [{min}, {max}]: min is above max"
                    )));
                }
                Ok(DelayMs { min, max })
            }
        }
        d.deserialize_any(V)
    }
}

/// A chance in `(0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probability(pub f64);

impl Default for Probability {
    fn default() -> Self {
        Probability(1.0)
    }
}

impl Serialize for Probability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !(v > 0.0 && v <= 1.0) {
            return Err(de::Error::custom(format!(
                "a probability must be above 0 and at most 1, got {v}"
            )));
        }
        Ok(Probability(v))
    }
}

fn all() -> Target {
    Target::All
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `bus-delay`: matching messages arrive late, in order unless `reorder`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusDelaySpec {
    /// Senders (default all).
    #[serde(default = "all")]
    pub from: Target,
    /// Receivers (default one, drawn by the step).
    #[serde(default)]
    pub to: Target,
    /// Also the messages from `to` to `from`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub both_ways: bool,
    /// Which connection of each pair.
    #[serde(default)]
    pub opened_by: OpenedBy,
    /// Message types (default every type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<MsgType>,
    /// The delay, fixed or a range drawn per message from the step's seed.
    #[serde(default)]
    pub delay_ms: DelayMs,
    /// Let later messages overtake a delayed one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reorder: bool,
}

impl Default for BusDelaySpec {
    fn default() -> Self {
        BusDelaySpec {
            from: Target::All,
            to: Target::One,
            both_ways: false,
            opened_by: OpenedBy::Any,
            types: Vec::new(),
            delay_ms: DelayMs::default(),
            reorder: false,
        }
    }
}

/// `bus-drop`: matching messages are lost (whole: the stream stays valid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusDropSpec {
    /// Senders (default all).
    #[serde(default = "all")]
    pub from: Target,
    /// Receivers (default one, drawn by the step).
    #[serde(default)]
    pub to: Target,
    /// Also the messages from `to` to `from`: with `from: [n3]`, `to: all`, n3 is cut off
    /// the bus both ways. (Dropping only what n3 receives fails it too, a little later:
    /// every message it sends still counts as a sign of life (`data_received`), but
    /// without replies it only sends one PING per reconnect, about one node timeout
    /// apart.)
    #[serde(default, skip_serializing_if = "is_false")]
    pub both_ways: bool,
    /// Which connection of each pair.
    #[serde(default)]
    pub opened_by: OpenedBy,
    /// Message types (default every type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<MsgType>,
    /// Chance that each matching message is dropped, drawn from the step's seed.
    #[serde(default)]
    pub probability: Probability,
}

impl Default for BusDropSpec {
    fn default() -> Self {
        BusDropSpec {
            from: Target::All,
            to: Target::One,
            both_ways: false,
            opened_by: OpenedBy::Any,
            types: Vec::new(),
            probability: Probability::default(),
        }
    }
}

/// `bus-hold`: matching messages are held until the fault is healed, then delivered in
/// order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusHoldSpec {
    /// Senders (default all).
    #[serde(default = "all")]
    pub from: Target,
    /// Receivers (default one, drawn by the step).
    #[serde(default)]
    pub to: Target,
    /// Also the messages from `to` to `from`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub both_ways: bool,
    /// Which connection of each pair.
    #[serde(default)]
    pub opened_by: OpenedBy,
    /// Message types (default every type).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<MsgType>,
    /// Let later messages overtake a held one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reorder: bool,
}

impl Default for BusHoldSpec {
    fn default() -> Self {
        BusHoldSpec {
            from: Target::All,
            to: Target::One,
            both_ways: false,
            opened_by: OpenedBy::Any,
            types: Vec::new(),
            reorder: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        serde_json::from_value(
            serde_json::to_value(
                // YAML is a superset of JSON for these tests' inputs.
                serde_json::from_str::<serde_json::Value>(text).map_err(|e| e.to_string())?,
            )
            .unwrap(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn delay_spec_reads_the_reproduction() {
        let s: BusDelaySpec = yaml(
            r#"{"from": ["n1", "n2"], "to": ["n3"], "opened_by": "receiver",
                "types": ["pong"], "delay_ms": [1000, 2000]}"#,
        )
        .unwrap();
        assert_eq!(s.from, Target::Nodes(vec!["n1".into(), "n2".into()]));
        assert_eq!(s.to, Target::Nodes(vec!["n3".into()]));
        assert_eq!(s.opened_by, OpenedBy::Receiver);
        assert_eq!(s.types, vec![MsgType::Pong]);
        assert_eq!(
            s.delay_ms,
            DelayMs {
                min: 1000,
                max: 2000
            }
        );
        assert!(!s.reorder);
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["delay_ms"], serde_json::json!([1000, 2000]));
        assert_eq!(back["types"], serde_json::json!(["pong"]));
        let fixed: BusDelaySpec = yaml(r#"{"delay_ms": 300}"#).unwrap();
        assert_eq!(fixed.delay_ms, DelayMs { min: 300, max: 300 });
        assert_eq!(fixed.from, Target::All);
        assert_eq!(fixed.to, Target::One);
        assert_eq!(serde_json::to_value(fixed).unwrap()["delay_ms"], 300);
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            r#"{"delay_ms": [2000, 1000]}"#,
            r#"{"delay_ms": [1, 2, 3]}"#,
            r#"{"delay_ms": -5}"#,
            r#"{"types": ["pongg"]}"#,
            r#"{"opened_by": "nobody"}"#,
            r#"{"delay": 5}"#,
        ] {
            assert!(yaml::<BusDelaySpec>(bad).is_err(), "{bad}");
        }
        for bad in [r#"{"probability": 0}"#, r#"{"probability": 1.5}"#] {
            assert!(yaml::<BusDropSpec>(bad).is_err(), "{bad}");
        }
        let ok: BusDropSpec = yaml(r#"{"probability": 0.5, "both_ways": true}"#).unwrap();
        assert_eq!(ok.probability, Probability(0.5));
        assert!(ok.both_ways);
        let mode: BusMode = serde_json::from_str(r#""proxy""#).unwrap();
        assert_eq!(mode, BusMode::Proxy);
    }
}
