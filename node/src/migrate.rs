//! `MIGRATE` and the value format it carries (`DUMP` / `RESTORE`).
//!
//! `MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user pw]
//! [KEYS key...]` copies the keys' values under the node's lock, connects to the target,
//! sends `RESTORE-ASKING key 0 payload [REPLACE]` per key (plain `RESTORE` outside
//! cluster mode) and reads the replies without the lock, then deletes here what the
//! target took (not with `COPY`) and sends the deletion to the replicas. Redis blocks the
//! whole server meanwhile; this node holds only writes to the keys being moved
//! ([`crate::state::State::in_flight`]), so nothing can land between a key's copy and its
//! deletion, and the bus and other keys go on. The payload is this node's own format
//! ([`dump`]), not Redis's RDB encoding: a faultline-node moves keys to another
//! faultline-node.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::db::Value;
use crate::frame::Frame;
use crate::replication::propagate;
use crate::state::Shared;

/// The payload's first bytes, then its version.
const MAGIC: &[u8; 4] = b"FLN\x01";

/// A parsed `MIGRATE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrate {
    host: String,
    port: u16,
    db: i64,
    timeout: Duration,
    copy: bool,
    replace: bool,
    auth: Option<(Option<Vec<u8>>, Vec<u8>)>,
    keys: Vec<Vec<u8>>,
}

fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

impl Migrate {
    /// Parses `MIGRATE`'s arguments (after the name).
    ///
    /// # Errors
    /// The error reply Redis gives for the same mistake.
    pub fn parse(rest: &[Vec<u8>]) -> Result<Migrate, Frame> {
        if rest.len() < 5 {
            return Err(Frame::err(
                "ERR wrong number of arguments for 'migrate' command",
            ));
        }
        let int = |a: &[u8]| {
            text(a)
                .parse::<i64>()
                .map_err(|_| Frame::err("ERR value is not an integer or out of range"))
        };
        let port = u16::try_from(int(&rest[1])?).map_err(|_| Frame::err("ERR Invalid port"))?;
        let db = int(&rest[3])?;
        let ms = int(&rest[4])?;
        let mut m = Migrate {
            host: text(&rest[0]),
            port,
            db,
            timeout: Duration::from_millis(if ms <= 0 { 1000 } else { ms as u64 }),
            copy: false,
            replace: false,
            auth: None,
            keys: Vec::new(),
        };
        let mut i = 5;
        let mut keys_option = false;
        while i < rest.len() {
            match text(&rest[i]).to_uppercase().as_str() {
                "COPY" => m.copy = true,
                "REPLACE" => m.replace = true,
                "AUTH" if i + 1 < rest.len() => {
                    m.auth = Some((None, rest[i + 1].clone()));
                    i += 1;
                }
                "AUTH2" if i + 2 < rest.len() => {
                    m.auth = Some((Some(rest[i + 1].clone()), rest[i + 2].clone()));
                    i += 2;
                }
                "KEYS" => {
                    if !rest[2].is_empty() {
                        return Err(Frame::err(
                            "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string",
                        ));
                    }
                    m.keys = rest[i + 1..].to_vec();
                    keys_option = true;
                    break;
                }
                _ => return Err(Frame::err("ERR syntax error")),
            }
            i += 1;
        }
        if !keys_option {
            m.keys = vec![rest[2].clone()];
        }
        Ok(m)
    }

    /// Moves the keys: see the module's text.
    pub async fn run(&self, shared: &Arc<Shared>) -> Frame {
        let taken = {
            let mut st = shared.lock();
            if !st.is_primary() {
                return Frame::err("READONLY You can't write against a read only replica.");
            }
            let present: Vec<(Vec<u8>, Vec<u8>)> = self
                .keys
                .iter()
                .filter_map(|k| st.db.get(k).map(|v| (k.clone(), dump(v))))
                .collect();
            for (k, _) in &present {
                *st.in_flight.entry(k.clone()).or_default() += 1;
            }
            (present, st.cluster.is_some())
        };
        let (present, cluster) = taken;
        if present.is_empty() {
            return Frame::Simple("NOKEY".into());
        }
        let guard = InFlight {
            shared,
            keys: present.iter().map(|(k, _)| k.clone()).collect(),
        };
        let replies =
            match tokio::time::timeout(self.timeout, self.exchange(&present, cluster)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Frame::err(e),
                Err(_) => return Frame::err("IOERR error or timeout reading to target instance"),
            };
        let mut error = None;
        let mut moved = Vec::new();
        for ((key, _), reply) in present.iter().zip(&replies) {
            match reply {
                Frame::Error(e) => {
                    error.get_or_insert_with(|| e.clone());
                }
                _ => moved.push(key.clone()),
            }
        }
        {
            let mut st = shared.lock();
            if !self.copy && !moved.is_empty() {
                for k in &moved {
                    st.db.remove(k);
                }
                let mut del = vec![b"DEL".to_vec()];
                del.extend(moved);
                propagate(&mut st, &del);
            }
        }
        drop(guard);
        match error {
            Some(e) => Frame::err(format!("ERR Target instance replied with error: {e}")),
            None => Frame::ok(),
        }
    }

    /// Connects, sends AUTH/SELECT and a RESTORE per key; the RESTOREs' replies, or the
    /// error reply MIGRATE gives.
    async fn exchange(
        &self,
        present: &[(Vec<u8>, Vec<u8>)],
        cluster: bool,
    ) -> Result<Vec<Frame>, String> {
        let restore: &[u8] = if cluster {
            b"RESTORE-ASKING"
        } else {
            b"RESTORE"
        };
        let mut out = Vec::new();
        let mut preamble = 0;
        if let Some((user, pass)) = &self.auth {
            let mut args = vec![b"AUTH".to_vec()];
            args.extend(user.iter().cloned());
            args.push(pass.clone());
            Frame::command(&args).encode(&mut out);
            preamble += 1;
        }
        if self.db != 0 {
            Frame::command(&[b"SELECT".to_vec(), self.db.to_string().into_bytes()])
                .encode(&mut out);
            preamble += 1;
        }
        for (key, payload) in present {
            let mut args = vec![
                restore.to_vec(),
                key.clone(),
                b"0".to_vec(),
                payload.clone(),
            ];
            if self.replace {
                args.push(b"REPLACE".to_vec());
            }
            Frame::command(&args).encode(&mut out);
        }
        let mut conn = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|_| "IOERR error or timeout connecting to the client".to_string())?;
        let _ = conn.set_nodelay(true);
        conn.write_all(&out)
            .await
            .map_err(|_| "IOERR error or timeout writing to target instance".to_string())?;
        let mut replies = read_replies(&mut conn, preamble + present.len())
            .await
            .ok_or_else(|| "IOERR error or timeout reading to target instance".to_string())?;
        if let Some(Frame::Error(e)) = replies[..preamble]
            .iter()
            .find(|r| matches!(r, Frame::Error(_)))
        {
            return Err(format!("ERR Target instance replied with error: {e}"));
        }
        Ok(replies.split_off(preamble))
    }
}

/// The keys of one MIGRATE, released from [`crate::state::State::in_flight`] on every
/// way out.
struct InFlight<'a> {
    shared: &'a Arc<Shared>,
    keys: Vec<Vec<u8>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        for k in &self.keys {
            if let Some(n) = st.in_flight.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    st.in_flight.remove(k);
                }
            }
        }
    }
}

/// Reads `n` replies.
async fn read_replies(conn: &mut TcpStream, n: usize) -> Option<Vec<Frame>> {
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while replies.len() < n {
            match Frame::parse(&buf) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    replies.push(frame);
                }
                Ok(None) => break,
                Err(_) => return None,
            }
        }
        if replies.len() == n {
            return Some(replies);
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// A value as `DUMP` gives it: [`MAGIC`], a type byte (`s`tring, `S`et, `l`ist), the
/// element count and each element (u32 little-endian lengths), then an FNV-1a checksum of
/// all that.
pub fn dump(value: &Value) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let items: Vec<&Vec<u8>> = match value {
        Value::Str(s) => {
            out.push(b's');
            vec![s]
        }
        Value::Set(s) => {
            out.push(b'S');
            s.iter().collect()
        }
        Value::List(l) => {
            out.push(b'l');
            l.iter().collect()
        }
    };
    out.extend((items.len() as u32).to_le_bytes());
    for item in items {
        out.extend((item.len() as u32).to_le_bytes());
        out.extend(item);
    }
    let sum = fnv1a(&out);
    out.extend(sum.to_le_bytes());
    out
}

/// The value in a [`dump`] payload; `None` if it is not one or its checksum is wrong.
pub fn undump(payload: &[u8]) -> Option<Value> {
    let (body, sum) = payload.split_at_checked(payload.len().checked_sub(8)?)?;
    if fnv1a(body).to_le_bytes() != sum || !body.starts_with(MAGIC) {
        return None;
    }
    let kind = *body.get(4)?;
    let mut at = 5;
    let u32_at = |at: &mut usize| -> Option<usize> {
        let b = body.get(*at..*at + 4)?;
        *at += 4;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let count = u32_at(&mut at)?;
    let mut items = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let len = u32_at(&mut at)?;
        items.push(body.get(at..at + len)?.to_vec());
        at += len;
    }
    if at != body.len() {
        return None;
    }
    match kind {
        b's' if items.len() == 1 => items.pop().map(Value::Str),
        b'S' => Some(Value::Set(items.into_iter().collect())),
        b'l' => Some(Value::List(items.into_iter().collect())),
        _ => None,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_round_trips_and_rejects_damage() {
        for v in [
            Value::Str(b"hello".to_vec()),
            Value::Set([b"a".to_vec(), b"bc".to_vec()].into()),
            Value::List([b"x".to_vec(), b"".to_vec(), b"x".to_vec()].into()),
        ] {
            let d = dump(&v);
            assert_eq!(undump(&d), Some(v));
            let mut bad = d.clone();
            bad[6] ^= 1;
            assert_eq!(undump(&bad), None);
            assert_eq!(undump(&d[..d.len() - 1]), None);
        }
        assert_eq!(undump(b""), None);
    }

    #[test]
    fn migrate_parses_keys_and_options() {
        let args = |s: &[&str]| s.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        let m = Migrate::parse(&args(&[
            "10.0.0.1", "6379", "", "0", "5000", "REPLACE", "KEYS", "a", "b",
        ]))
        .unwrap();
        assert_eq!(m.keys, vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(m.replace && !m.copy);
        assert_eq!(m.timeout, Duration::from_millis(5000));
        let one = Migrate::parse(&args(&["h", "1", "k", "0", "0", "COPY", "AUTH", "pw"])).unwrap();
        assert_eq!(one.keys, vec![b"k".to_vec()]);
        assert!(one.copy);
        assert_eq!(one.auth, Some((None, b"pw".to_vec())));
        assert!(Migrate::parse(&args(&["h", "1", "k", "0", "0", "KEYS", "a"])).is_err());
        assert!(Migrate::parse(&args(&["h", "1", "k", "0", "0", "BOGUS"])).is_err());
    }
}
