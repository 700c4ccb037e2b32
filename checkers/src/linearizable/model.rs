//! The objects a key can hold, and what each op does to them.
//!
//! Every value (an integer written to a register, a string put or appended to a kv key)
//! is interned as a `u32`, so a state is one `u32` and stepping an op is an integer
//! comparison; only an append makes a new value (memoised per state and op).

use serde_json::Value;

use crate::fast_hash::FastMap;

/// A value as the models compare it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Val {
    /// The key does not exist (a register's initial state).
    Nil,
    /// An integer.
    Int(i64),
    /// A string (kv values, and register values written as strings).
    Str(String),
}

impl Val {
    /// The value in a history line, if it is one a register or kv key can hold.
    pub(crate) fn from_json(v: &Value) -> Option<Val> {
        match v {
            Value::Null => Some(Val::Nil),
            Value::Number(n) => n.as_i64().map(Val::Int),
            Value::String(s) => Some(Val::Str(s.clone())),
            _ => None,
        }
    }

    /// As it goes back into JSON.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Val::Nil => Value::Null,
            Val::Int(i) => Value::from(*i),
            Val::Str(s) => Value::from(s.as_str()),
        }
    }
}

/// The interned values of one check, and the kv states built by appends.
///
/// A kv state is a node of a trie of appends: the root is the empty string, `put v` goes
/// to the root's child by `v`, `append v` to the current node's child by `v`. Stepping an
/// append is then one map lookup, not a string built and hashed. Two paths may spell the
/// same string ("ab"+"c", "a"+"bc"); they stay two states, which costs the memo a merge
/// but never changes a verdict, since a get compares the spelled-out strings: first
/// their lengths and polynomial hashes, then, when those agree, the bytes (remembered per
/// node and value).
#[derive(Debug)]
pub(crate) struct Values {
    ids: FastMap<Val, u32>,
    vals: Vec<Val>,
    /// Per value: (length, hash, BASE^length) of its text.
    text: Vec<(u32, u64, u64)>,
    nodes: Vec<Node>,
    children: FastMap<(u32, u32), u32>,
    equal: FastMap<(u32, u32), bool>,
    /// Per value read by a get: the hashes of its text's prefixes, by length.
    prefixes: FastMap<u32, Vec<u64>>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    parent: u32,
    suffix: u32,
    len: u32,
    hash: u64,
}

const BASE: u64 = 0x100_0000_01b3;
/// The kv state of the empty string.
pub(crate) const ROOT: u32 = 0;

impl Default for Values {
    fn default() -> Self {
        Values {
            ids: FastMap::default(),
            vals: Vec::new(),
            text: Vec::new(),
            nodes: vec![Node {
                parent: ROOT,
                suffix: u32::MAX,
                len: 0,
                hash: 0,
            }],
            children: FastMap::default(),
            equal: FastMap::default(),
            prefixes: FastMap::default(),
        }
    }
}

fn text_of(v: &Val) -> std::borrow::Cow<'_, str> {
    match v {
        Val::Nil => "".into(),
        Val::Int(i) => i.to_string().into(),
        Val::Str(s) => s.as_str().into(),
    }
}

impl Values {
    pub(crate) fn id(&mut self, v: Val) -> u32 {
        if let Some(id) = self.ids.get(&v) {
            return *id;
        }
        let id = self.vals.len() as u32;
        let (mut hash, mut pow) = (0u64, 1u64);
        let t = text_of(&v);
        for b in t.bytes() {
            hash = hash.wrapping_mul(BASE).wrapping_add(u64::from(b) + 1);
            pow = pow.wrapping_mul(BASE);
        }
        self.text.push((t.len() as u32, hash, pow));
        self.vals.push(v.clone());
        self.ids.insert(v, id);
        id
    }

    pub(crate) fn get(&self, id: u32) -> &Val {
        &self.vals[id as usize]
    }

    /// The kv state after appending value `suffix` to state `node`.
    fn child(&mut self, node: u32, suffix: u32) -> u32 {
        if let Some(c) = self.children.get(&(node, suffix)) {
            return *c;
        }
        let n = self.nodes[node as usize];
        let (len, hash, pow) = self.text[suffix as usize];
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            parent: node,
            suffix,
            len: n.len + len,
            hash: n.hash.wrapping_mul(pow).wrapping_add(hash),
        });
        self.children.insert((node, suffix), id);
        id
    }

    /// The string kv state `node` spells.
    pub(crate) fn spell(&self, mut node: u32) -> String {
        let mut parts = Vec::new();
        while node != ROOT {
            let n = self.nodes[node as usize];
            parts.push(n.suffix);
            node = n.parent;
        }
        parts
            .iter()
            .rev()
            .map(|&v| text_of(self.get(v)).into_owned())
            .collect()
    }

    /// Whether kv state `node` may be a prefix of value `v`'s text: false only when it
    /// certainly is not (longer, or a prefix hash differs), so a search that prunes on
    /// false never prunes a state that could still lead to `v`.
    pub(crate) fn may_prefix(&mut self, node: u32, v: u32) -> bool {
        let n = self.nodes[node as usize];
        let vals = &self.vals;
        let prefixes = self.prefixes.entry(v).or_insert_with(|| {
            let mut h = 0u64;
            let mut out = vec![0u64];
            for b in text_of(&vals[v as usize]).bytes() {
                h = h.wrapping_mul(BASE).wrapping_add(u64::from(b) + 1);
                out.push(h);
            }
            out
        });
        prefixes.get(n.len as usize) == Some(&n.hash)
    }

    /// Whether kv state `node` spells value `v`'s text.
    fn spells(&mut self, node: u32, v: u32) -> bool {
        let n = self.nodes[node as usize];
        let (len, hash, _) = self.text[v as usize];
        if n.len != len || n.hash != hash {
            return false;
        }
        if let Some(e) = self.equal.get(&(node, v)) {
            return *e;
        }
        let e = self.spell(node) == text_of(self.get(v));
        self.equal.insert((node, v), e);
        e
    }
}

/// What a compare-and-set was seen to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CasOutcome {
    /// It swapped (ok).
    Swapped,
    /// The comparison failed (fail): the state was not the expected value.
    Failed,
    /// Nobody knows (info): it swapped if the state was the expected value.
    Unknown,
}

/// One op as the search steps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// A read (register read, kv get) that returned `expect`.
    Read { expect: u32 },
    /// A write (register write, kv put).
    Write { value: u32 },
    /// A register compare-and-set.
    Cas {
        expect: u32,
        new: u32,
        outcome: CasOutcome,
    },
    /// A kv get that returned value `expect` (states are trie nodes).
    Get { expect: u32 },
    /// A kv put of value `value`.
    Put { value: u32 },
    /// A kv append of value `suffix`.
    Append { suffix: u32 },
}

impl Step {
    /// Whether the op leaves the state as it found it wherever it can happen at all (a
    /// read, a cas whose comparison failed, a cas to the value it expects). Such an op,
    /// once it can happen, may as well happen at once: see [`super::search`].
    #[inline]
    pub(crate) fn preserves_state(self) -> bool {
        match self {
            Step::Read { .. } | Step::Get { .. } => true,
            Step::Cas {
                expect,
                new,
                outcome,
            } => outcome == CasOutcome::Failed || (outcome == CasOutcome::Swapped && expect == new),
            Step::Write { .. } | Step::Put { .. } | Step::Append { .. } => false,
        }
    }

    /// The state after this op from `state`, or `None` when the op cannot happen there.
    #[inline]
    pub(crate) fn apply(self, state: u32, values: &mut Values) -> Option<u32> {
        match self {
            Step::Read { expect } => (state == expect).then_some(state),
            Step::Write { value } => Some(value),
            Step::Cas {
                expect,
                new,
                outcome,
            } => match outcome {
                CasOutcome::Swapped => (state == expect).then_some(new),
                CasOutcome::Failed => (state != expect).then_some(state),
                CasOutcome::Unknown => Some(if state == expect { new } else { state }),
            },
            Step::Get { expect } => values.spells(state, expect).then_some(state),
            Step::Put { value } => Some(values.child(ROOT, value)),
            Step::Append { suffix } => Some(values.child(state, suffix)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        let mut v = Values::default();
        let nil = v.id(Val::Nil);
        let one = v.id(Val::Int(1));
        let two = v.id(Val::Int(2));
        assert_eq!(Step::Read { expect: nil }.apply(nil, &mut v), Some(nil));
        assert_eq!(Step::Read { expect: one }.apply(nil, &mut v), None);
        assert_eq!(Step::Write { value: one }.apply(nil, &mut v), Some(one));
        let cas = |outcome| Step::Cas {
            expect: one,
            new: two,
            outcome,
        };
        assert_eq!(cas(CasOutcome::Swapped).apply(one, &mut v), Some(two));
        assert_eq!(cas(CasOutcome::Swapped).apply(nil, &mut v), None);
        assert_eq!(cas(CasOutcome::Failed).apply(one, &mut v), None);
        assert_eq!(cas(CasOutcome::Failed).apply(nil, &mut v), Some(nil));
        assert_eq!(cas(CasOutcome::Unknown).apply(one, &mut v), Some(two));
        assert_eq!(cas(CasOutcome::Unknown).apply(nil, &mut v), Some(nil));
        let x = v.id(Val::Str("x".into()));
        let xx = v.id(Val::Str("xx".into()));
        let ab = v.id(Val::Str("ab".into()));
        let a = v.id(Val::Str("a".into()));
        let b = v.id(Val::Str("b".into()));
        let s = Step::Append { suffix: x }.apply(ROOT, &mut v).unwrap();
        assert_eq!(Step::Get { expect: xx }.apply(s, &mut v), None);
        let s = Step::Append { suffix: x }.apply(s, &mut v).unwrap();
        assert_eq!(v.spell(s), "xx");
        assert_eq!(Step::Get { expect: xx }.apply(s, &mut v), Some(s));
        assert_eq!(Step::Get { expect: x }.apply(s, &mut v), None);
        let p = Step::Put { value: a }.apply(s, &mut v).unwrap();
        let p = Step::Append { suffix: b }.apply(p, &mut v).unwrap();
        let q = Step::Put { value: ab }.apply(s, &mut v).unwrap();
        assert_ne!(p, q, "two spellings, two states");
        assert_eq!(Step::Get { expect: ab }.apply(p, &mut v), Some(p));
        assert_eq!(Step::Get { expect: ab }.apply(q, &mut v), Some(q));
        let empty = v.id(Val::Str(String::new()));
        assert_eq!(Step::Get { expect: empty }.apply(ROOT, &mut v), Some(ROOT));
        assert_eq!(Step::Get { expect: nil }.apply(ROOT, &mut v), Some(ROOT));
        let xxy = v.id(Val::Str("xxy".into()));
        assert!(v.may_prefix(s, xxy));
        assert!(v.may_prefix(ROOT, xxy));
        assert!(!v.may_prefix(s, ab));
        assert!(!v.may_prefix(s, x), "longer than the value");
    }
}
