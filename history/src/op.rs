//! One line of `history.jsonl`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What an op line says about the operation (Jepsen's op model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The operation was started; its completion follows (or never comes, if the run died).
    Invoke,
    /// The operation happened.
    Ok,
    /// The operation certainly did not happen.
    Fail,
    /// Nobody knows whether it happened (time-out, broken connection). A process whose op
    /// ends in `info` never issues again.
    Info,
}

impl OpType {
    /// Whether this line completes an earlier invoke.
    pub fn is_completion(self) -> bool {
        !matches!(self, OpType::Invoke)
    }
}

/// Who performed an operation: a numbered client process, or the nemesis.
///
/// Serialized as a JSON number for clients and the string `"nemesis"` for the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A client logical process. A process that crashes (an `info` completion) is replaced
    /// by a fresh number, so one number never has two ops in flight.
    Client(u64),
    /// The fault injector.
    Nemesis,
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(n) => write!(f, "{n}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(n) => s.serialize_u64(*n),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ProcessVisitor;
        impl Visitor<'_> for ProcessVisitor {
            type Value = Process;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer or \"nemesis\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Process, E> {
                Ok(Process::Client(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Process, E> {
                u64::try_from(v)
                    .map(Process::Client)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Process, E> {
                match v {
                    "nemesis" => Ok(Process::Nemesis),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(ProcessVisitor)
    }
}

/// One redirect the client followed while completing an op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN` or `REDIRECT`.
    pub kind: String,
    /// The slot named by MOVED / ASK; absent for redirects that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u16>,
    /// The `host:port` that answered with the redirect.
    pub from: String,
    /// The `host:port` the redirect pointed to (the same node for retries).
    pub to: String,
}

/// One line of `history.jsonl`.
///
/// Fields beyond the ones named here (a nemesis's parameters, for instance) are kept in
/// [`Op::extra`] and written back unchanged, so readers of older or newer histories lose
/// nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0, assigned by the [`crate::Recorder`].
    #[serde(default)]
    pub index: u64,
    /// Nanoseconds since the run's history was opened (monotonic clock).
    #[serde(default)]
    pub time_ns: u64,
    /// Who performed the op.
    pub process: Process,
    /// invoke / ok / fail / info.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The function: `add`, `read`, or a nemesis verb.
    pub f: String,
    /// The key the op touched, for keyed workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The argument (on invoke) or the result (on completion).
    #[serde(default)]
    pub value: Value,
    /// The node that answered, on completions (e.g. `n2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What went wrong, on `fail` and `info` completions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every redirect hop the client followed, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<Redirect>,
    /// Anything else on the line.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Op {
    /// An op with the given process, type and function and nothing else set; index and
    /// time are filled in by the recorder.
    pub fn new(process: Process, kind: OpType, f: impl Into<String>) -> Op {
        Op {
            index: 0,
            time_ns: 0,
            process,
            kind,
            f: f.into(),
            key: None,
            value: Value::Null,
            node: None,
            error: None,
            redirects: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Builder: set the key.
    pub fn with_key(mut self, key: impl Into<String>) -> Op {
        self.key = Some(key.into());
        self
    }

    /// Builder: set the value.
    pub fn with_value(mut self, value: impl Into<Value>) -> Op {
        self.value = value.into();
        self
    }

    /// The completion of this invoke, with the same process, function, key and value.
    pub fn complete(&self, kind: OpType) -> Op {
        Op {
            kind,
            extra: Map::new(),
            ..self.clone()
        }
    }
}

/// An op without its index and time, serialized as the JSON object `Op` would be with
/// those two entries left out (same keys, same order, same omissions): the
/// [`crate::Recorder`] serializes this before it numbers and stamps the op.
pub(crate) struct Body<'a>(pub(crate) &'a Op);

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let op = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("process", &op.process)?;
        m.serialize_entry("type", &op.kind)?;
        m.serialize_entry("f", &op.f)?;
        if let Some(key) = &op.key {
            m.serialize_entry("key", key)?;
        }
        m.serialize_entry("value", &op.value)?;
        if let Some(node) = &op.node {
            m.serialize_entry("node", node)?;
        }
        if let Some(error) = &op.error {
            m.serialize_entry("error", error)?;
        }
        if !op.redirects.is_empty() {
            m.serialize_entry("redirects", &op.redirects)?;
        }
        for (k, v) in &op.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_round_trips() {
        let line = r#"{"index":7,"time_ns":1523000,"process":3,"type":"invoke","f":"add","key":"s1","value":42}"#;
        let op: Op = serde_json::from_str(line).unwrap();
        assert_eq!(op.process, Process::Client(3));
        assert_eq!(op.kind, OpType::Invoke);
        assert_eq!(op.value, Value::from(42));
        assert_eq!(serde_json::to_string(&op).unwrap(), line);
    }

    #[test]
    fn nemesis_process_and_extra_fields_survive() {
        let line = r#"{"index":1,"time_ns":5,"process":"nemesis","type":"ok","f":"partition","value":null,"shape":"halves"}"#;
        let op: Op = serde_json::from_str(line).unwrap();
        assert_eq!(op.process, Process::Nemesis);
        assert_eq!(op.extra["shape"], Value::from("halves"));
        assert_eq!(serde_json::to_string(&op).unwrap(), line);
    }

    #[test]
    fn a_body_is_the_op_without_index_and_time() {
        let mut full = Op::new(Process::Client(3), OpType::Info, "add")
            .with_key("s1{06S}")
            .with_value(42);
        full.index = 12;
        full.time_ns = 987_654_321;
        full.node = Some("n2".into());
        full.error = Some("timeout \"quoted\"".into());
        full.redirects.push(Redirect {
            kind: "MOVED".into(),
            slot: Some(1234),
            from: "10.77.0.11:6379".into(),
            to: "10.77.0.12:6379".into(),
        });
        full.extra
            .insert("route".into(), serde_json::json!({"fresh": true}));
        let bare = Op::new(Process::Nemesis, OpType::Invoke, "partition");
        for op in [full, bare] {
            let whole = serde_json::to_string(&op).unwrap();
            let body = serde_json::to_string(&Body(&op)).unwrap();
            let rebuilt = format!(
                "{{\"index\":{},\"time_ns\":{},{}",
                op.index,
                op.time_ns,
                &body[1..]
            );
            assert_eq!(rebuilt, whole);
        }
    }

    #[test]
    fn bad_process_is_an_error() {
        let line = r#"{"process":"client","type":"ok","f":"add"}"#;
        assert!(serde_json::from_str::<Op>(line).is_err());
        let line = r#"{"process":-1,"type":"ok","f":"add"}"#;
        assert!(serde_json::from_str::<Op>(line).is_err());
    }
}
