//! [`Db`]: the keyspace. Strings, sets and lists; no expiry (nothing the harness sends
//! sets one).

use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::frame::Frame;
use crate::slot::key_slot;

/// A value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string (also integers, for INCR).
    Str(Vec<u8>),
    /// A set (ordered, so SMEMBERS answers deterministically).
    Set(BTreeSet<Vec<u8>>),
    /// A list.
    List(VecDeque<Vec<u8>>),
}

/// The reply Redis gives to a command on a key of the wrong type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// The keyspace.
#[derive(Debug, Default, Clone)]
pub struct Db {
    map: HashMap<Vec<u8>, Value>,
}

impl Db {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops every key.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// A key's value.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.map.get(key)
    }

    /// Whether a key exists.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// Sets a key.
    pub fn set(&mut self, key: Vec<u8>, value: Value) {
        self.map.insert(key, value);
    }

    /// Removes a key; whether it existed.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.map.remove(key).is_some()
    }

    /// The value at `key` for mutation, created by `make` when absent.
    pub fn entry(&mut self, key: &[u8], make: impl FnOnce() -> Value) -> &mut Value {
        self.map.entry(key.to_vec()).or_insert_with(make)
    }

    /// Keys in one slot, up to `limit`.
    pub fn keys_in_slot(&self, slot: u16, limit: usize) -> Vec<Vec<u8>> {
        self.map
            .keys()
            .filter(|k| key_slot(k) == slot)
            .take(limit)
            .cloned()
            .collect()
    }

    /// All keys.
    pub fn keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.map.keys()
    }

    /// Commands that rebuild the whole keyspace (a replica's full sync; nodes.conf has no
    /// data, so this is also what MIGRATE sends for one key).
    pub fn snapshot(&self) -> Vec<Frame> {
        self.map
            .iter()
            .map(|(k, v)| restore_command(k, v))
            .collect()
    }
}

/// A command that recreates `key` holding `value` from nothing.
pub fn restore_command(key: &[u8], value: &Value) -> Frame {
    let mut args: Vec<Vec<u8>> = Vec::new();
    match value {
        Value::Str(s) => {
            args.extend([b"SET".to_vec(), key.to_vec(), s.clone()]);
        }
        Value::Set(s) => {
            args.extend([b"SADD".to_vec(), key.to_vec()]);
            args.extend(s.iter().cloned());
        }
        Value::List(l) => {
            args.extend([b"RPUSH".to_vec(), key.to_vec()]);
            args.extend(l.iter().cloned());
        }
    }
    Frame::command(&args)
}

/// Glob match for `SCAN MATCH` / `KEYS`: `*`, `?` and literal bytes (no classes).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && glob_match(&rest[1..], &text[1..])
        }
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match(b"fl-1:*", b"fl-1:s3"));
        assert!(!glob_match(b"fl-1:*", b"fl-2:s3"));
        assert!(glob_match(b"a?c", b"abc"));
    }
}
