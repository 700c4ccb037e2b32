//! Client commands: [`Command`] parses a request's arguments into a typed value, then
//! [`Command::apply`] runs it against the node. Keyed commands are routed first (MOVED,
//! ASK, TRYAGAIN, CLUSTERDOWN, CROSSSLOT in cluster mode; READONLY or REDIRECT on a
//! standalone replica), writes are sent on to replicas after they apply.

use std::collections::{BTreeSet, VecDeque};

use crate::bugs::Bug;
use crate::cluster::commands::ClusterCommand;
use crate::cluster::message::flag;
use crate::db::{glob_match, Db, Value, WRONGTYPE};
use crate::frame::Frame;
use crate::replication::propagate;
use crate::sha1::hex_digest;
use crate::slot::key_slot;
use crate::state::{now_ms, State};

/// The compare-and-set script the register workload sends (`workloads/src/register.rs`,
/// `CAS_SCRIPT`). This node has no Lua: it recognises this one script (by text or SHA-1)
/// and runs its meaning natively, atomically like Redis runs a script. Any other script
/// is refused with an error naming this limit.
pub const CAS_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0";

/// Per-connection state a command can change.
#[derive(Debug, Default, Clone)]
pub struct Client {
    /// `READONLY`: replicas serve this client's reads.
    pub readonly: bool,
    /// `ASKING`: the next command may touch an importing slot.
    pub asking: bool,
    /// `CLIENT CAPA redirect`: a standalone replica answers `-REDIRECT`.
    pub capa_redirect: bool,
    /// `CLIENT SETNAME`.
    pub name: Option<String>,
    /// Connection number (`CLIENT ID`).
    pub id: u64,
    /// `HELLO 3`: replies in RESP3.
    pub resp3: bool,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A keyspace command (GET, SET, ...), kept as its arguments: [`apply_write`] and
    /// [`read`] interpret them, so replication re-applies writes through the same code.
    Key {
        /// Uppercase name.
        name: String,
        /// Every argument, name included.
        args: Vec<Vec<u8>>,
        /// Key argument positions.
        keys: Vec<usize>,
        /// Whether it writes.
        write: bool,
    },
    /// `EVAL script numkeys key... arg...` or `EVALSHA`: the CAS script only.
    Cas {
        /// `KEYS[1]`.
        key: Vec<u8>,
        /// `ARGV[1]`: the expected value.
        expected: Vec<u8>,
        /// `ARGV[2]`: the new value.
        new: Vec<u8>,
    },
    /// `SCRIPT LOAD body`.
    ScriptLoad(Vec<u8>),
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`.
    Scan(Option<Vec<u8>>),
    /// `PING [msg]`.
    Ping(Option<Vec<u8>>),
    /// `ECHO msg`.
    Echo(Vec<u8>),
    /// `INFO [section...]`.
    Info(Vec<String>),
    /// `CONFIG GET pattern...`.
    ConfigGet(Vec<String>),
    /// `CONFIG SET name value ...`.
    ConfigSet(Vec<(String, String)>),
    /// `CONFIG REWRITE`.
    ConfigRewrite,
    /// `CONFIG RESETSTAT`.
    ConfigResetStat,
    /// `CLIENT ...`.
    Client(ClientCommand),
    /// `READONLY`.
    ReadOnly,
    /// `READWRITE`.
    ReadWrite,
    /// `ASKING`.
    Asking,
    /// `CLUSTER ...`.
    Cluster(ClusterCommand),
    /// `DBSIZE`.
    DbSize,
    /// `FLUSHALL` / `FLUSHDB`.
    FlushAll,
    /// `SELECT 0`.
    Select,
    /// `REPLICAOF host port` / `REPLICAOF NO ONE`.
    ReplicaOf(Option<(String, u16)>),
    /// `ROLE`.
    Role,
    /// `HELLO [2|3] [AUTH user pass] [SETNAME name]` (the protocol, the name).
    Hello(Option<u8>, Option<String>),
    /// `COMMAND ...` (redis-cli asks at start-up).
    CommandDocs,
    /// `DEBUG SLEEP s` (the server stops answering anyone; kept in ms), other `DEBUG`s refused.
    DebugSleep(u64),
    /// `TIME`.
    Time,
    /// `MIGRATE ...`: blocking, as in Redis.
    Migrate(crate::migrate::Migrate),
}

/// `CLIENT` subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `CLIENT CAPA redirect ...`.
    Capa(Vec<String>),
    /// `CLIENT SETNAME n`.
    SetName(String),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT ID`.
    Id,
    /// `CLIENT PAUSE ms [WRITE|ALL]` (both hold writes here).
    Pause(u64),
    /// `CLIENT UNPAUSE`.
    Unpause,
    /// `CLIENT KILL ...`: accepted, kills nothing but answers as if (0 clients).
    Kill,
    /// `CLIENT SETINFO` / `NO-EVICT` / `NO-TOUCH`: accepted.
    Accept,
    /// `CLIENT LIST` / `INFO`.
    List,
}

fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

fn wrong_args(name: &str) -> Frame {
    Frame::err(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_lowercase()
    ))
}

/// `(min args incl. name, whether variadic, write, key positions: first..=last step 1, last
/// 0 = only first, -1 = to the end)`.
fn key_spec(name: &str) -> Option<(usize, bool, bool, i32)> {
    // (min arity, exact?, write, last key: 1 = one key, -1 = all args from 1)
    Some(match name {
        "GET" | "SMEMBERS" | "SCARD" | "TYPE" | "LLEN" | "STRLEN" => (2, true, false, 1),
        "SET" | "INCRBY" | "DECRBY" | "GETSET" => (3, false, true, 1),
        "INCR" | "DECR" => (2, true, true, 1),
        "SISMEMBER" => (3, true, false, 1),
        "LRANGE" => (4, true, false, 1),
        "SADD" | "SREM" | "RPUSH" | "LPUSH" => (3, false, true, 1),
        "DEL" | "UNLINK" => (2, false, true, -1),
        "EXISTS" | "MGET" => (2, false, false, -1),
        "DUMP" => (2, true, false, 1),
        "RESTORE" | "RESTORE-ASKING" => (4, false, true, 1),
        _ => return None,
    })
}

impl Command {
    /// Parses a request.
    ///
    /// # Errors
    /// The error reply for an unknown command or wrong arguments.
    pub fn parse(
        args: Vec<Vec<u8>>,
        scripts: &std::collections::HashMap<String, Vec<u8>>,
    ) -> Result<Command, Frame> {
        let Some(first) = args.first() else {
            return Err(Frame::err("ERR empty command"));
        };
        let name = text(first).to_uppercase();
        if let Some((min, exact, write, last)) = key_spec(&name) {
            if args.len() < min || (exact && args.len() != min) {
                return Err(wrong_args(&name));
            }
            let keys = if last == 1 {
                vec![1]
            } else {
                (1..args.len()).collect()
            };
            return Ok(Command::Key {
                name,
                args,
                keys,
                write,
            });
        }
        let rest = &args[1..];
        let up = |i: usize| rest.get(i).map(|a| text(a).to_uppercase());
        Ok(match name.as_str() {
            "EVAL" | "EVALSHA" => {
                if rest.len() < 2 {
                    return Err(wrong_args(&name));
                }
                let body: Vec<u8> = if name == "EVAL" {
                    rest[0].clone()
                } else {
                    let sha = text(&rest[0]).to_lowercase();
                    match scripts.get(&sha) {
                        Some(b) => b.clone(),
                        None => {
                            return Err(Frame::err("NOSCRIPT No matching script. Please use EVAL."))
                        }
                    }
                };
                if body != CAS_SCRIPT.as_bytes() {
                    return Err(Frame::err(
                        "ERR faultline-node has no Lua: it runs only the register workload's compare-and-set script",
                    ));
                }
                let numkeys: usize = text(&rest[1])
                    .parse()
                    .map_err(|_| Frame::err("ERR value is not an integer or out of range"))?;
                if numkeys != 1 || rest.len() != 5 {
                    return Err(Frame::err(
                        "ERR the compare-and-set script takes 1 key and 2 arguments",
                    ));
                }
                Command::Cas {
                    key: rest[2].clone(),
                    expected: rest[3].clone(),
                    new: rest[4].clone(),
                }
            }
            "SCRIPT" => match up(0).as_deref() {
                Some("LOAD") if rest.len() == 2 => Command::ScriptLoad(rest[1].clone()),
                _ => return Err(Frame::err("ERR faultline-node supports only SCRIPT LOAD")),
            },
            "SCAN" => {
                let mut pattern = None;
                let mut i = 1;
                while i + 1 < rest.len() {
                    if up(i).as_deref() == Some("MATCH") {
                        pattern = Some(rest[i + 1].clone());
                    }
                    i += 2;
                }
                Command::Scan(pattern)
            }
            "PING" => Command::Ping(rest.first().cloned()),
            "ECHO" if rest.len() == 1 => Command::Echo(rest[0].clone()),
            "INFO" => Command::Info(rest.iter().map(|a| text(a).to_lowercase()).collect()),
            "CONFIG" => match up(0).as_deref() {
                Some("GET") if rest.len() >= 2 => {
                    Command::ConfigGet(rest[1..].iter().map(|a| text(a).to_lowercase()).collect())
                }
                Some("SET") if rest.len() >= 3 && rest.len() % 2 == 1 => Command::ConfigSet(
                    rest[1..]
                        .chunks(2)
                        .map(|p| (text(&p[0]).to_lowercase(), text(&p[1])))
                        .collect(),
                ),
                Some("REWRITE") => Command::ConfigRewrite,
                Some("RESETSTAT") => Command::ConfigResetStat,
                _ => return Err(Frame::err("ERR unknown or malformed CONFIG subcommand")),
            },
            "CLIENT" => Command::Client(match up(0).as_deref() {
                Some("CAPA") => {
                    ClientCommand::Capa(rest[1..].iter().map(|a| text(a).to_lowercase()).collect())
                }
                Some("SETNAME") if rest.len() == 2 => ClientCommand::SetName(text(&rest[1])),
                Some("GETNAME") => ClientCommand::GetName,
                Some("ID") => ClientCommand::Id,
                Some("PAUSE") if rest.len() >= 2 => ClientCommand::Pause(
                    text(&rest[1])
                        .parse()
                        .map_err(|_| Frame::err("ERR timeout is not an integer or out of range"))?,
                ),
                Some("UNPAUSE") => ClientCommand::Unpause,
                Some("KILL") => ClientCommand::Kill,
                Some("SETINFO" | "NO-EVICT" | "NO-TOUCH" | "REPLY") => ClientCommand::Accept,
                Some("LIST" | "INFO") => ClientCommand::List,
                _ => return Err(Frame::err("ERR unknown CLIENT subcommand")),
            }),
            "READONLY" => Command::ReadOnly,
            "READWRITE" => Command::ReadWrite,
            "ASKING" => Command::Asking,
            "CLUSTER" => Command::Cluster(ClusterCommand::parse(rest)?),
            "DBSIZE" => Command::DbSize,
            "FLUSHALL" | "FLUSHDB" => Command::FlushAll,
            "SELECT" => Command::Select,
            "REPLICAOF" | "SLAVEOF" if rest.len() == 2 => {
                if up(0).as_deref() == Some("NO") && up(1).as_deref() == Some("ONE") {
                    Command::ReplicaOf(None)
                } else {
                    let port = text(&rest[1])
                        .parse()
                        .map_err(|_| Frame::err("ERR Invalid master port"))?;
                    Command::ReplicaOf(Some((text(&rest[0]), port)))
                }
            }
            "ROLE" => Command::Role,
            "HELLO" => {
                let proto = match up(0).as_deref() {
                    None => None,
                    Some("2") => Some(2),
                    Some("3") => Some(3),
                    Some(_) => return Err(Frame::err("NOPROTO unsupported protocol version")),
                };
                // AUTH is accepted whatever it says: the default user has no password.
                let mut setname = None;
                let mut i = 1;
                while i < rest.len() {
                    match up(i).as_deref() {
                        Some("AUTH") if i + 2 < rest.len() => i += 3,
                        Some("SETNAME") if i + 1 < rest.len() => {
                            setname = Some(text(&rest[i + 1]));
                            i += 2;
                        }
                        _ => return Err(Frame::err("ERR Syntax error in HELLO option")),
                    }
                }
                Command::Hello(proto, setname)
            }
            "COMMAND" => Command::CommandDocs,
            "DEBUG" => match up(0).as_deref() {
                Some("SLEEP") if rest.len() == 2 => {
                    let secs: f64 = text(&rest[1])
                        .parse()
                        .map_err(|_| Frame::err("ERR value is not a valid float"))?;
                    Command::DebugSleep((secs.clamp(0.0, 60.0) * 1000.0) as u64)
                }
                _ => return Err(Frame::err("ERR faultline-node supports only DEBUG SLEEP")),
            },
            "TIME" => Command::Time,
            "MIGRATE" => Command::Migrate(crate::migrate::Migrate::parse(rest)?),
            _ => {
                return Err(Frame::err(format!(
                    "ERR unknown command '{}', with args beginning with: ",
                    text(first)
                )))
            }
        })
    }

    /// Whether the command writes (held during a write pause, refused on replicas).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Command::Key { write: true, .. }
                | Command::Cas { .. }
                | Command::FlushAll
                | Command::Migrate(_)
        )
    }

    /// The keys it touches.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Command::Key { args, keys, .. } => keys.iter().map(|&i| args[i].as_slice()).collect(),
            Command::Cas { key, .. } => vec![key.as_slice()],
            _ => Vec::new(),
        }
    }

    /// Runs the command.
    pub fn apply(self, st: &mut State, client: &mut Client) -> Frame {
        // RESTORE-ASKING is RESTORE after an implicit ASKING (what MIGRATE sends).
        let asking = std::mem::take(&mut client.asking)
            || matches!(&self, Command::Key { name, .. } if name == "RESTORE-ASKING");
        if !self.keys().is_empty() {
            if let Some(redirect) = route(st, client, &self.keys(), self.is_write(), asking) {
                return redirect;
            }
        }
        match self {
            Command::Key { args, write, .. } => {
                if write {
                    let (reply, changed) = write_reply(&mut st.db, &args);
                    if changed {
                        propagate(st, &args);
                    }
                    reply
                } else {
                    read(&st.db, &args)
                }
            }
            Command::Cas { key, expected, new } => {
                let current = match st.db.get(&key) {
                    Some(Value::Str(s)) => Some(s.clone()),
                    Some(_) => return Frame::err(WRONGTYPE),
                    None => None,
                };
                if current.as_deref() == Some(expected.as_slice()) {
                    let set = vec![b"SET".to_vec(), key.clone(), new.clone()];
                    st.db.set(key, Value::Str(new));
                    propagate(st, &set);
                    Frame::Integer(1)
                } else {
                    Frame::Integer(0)
                }
            }
            Command::ScriptLoad(body) => {
                let sha = hex_digest(&body);
                st.scripts.insert(sha.clone(), body);
                Frame::bulk(sha)
            }
            Command::Scan(pattern) => {
                let keys = st
                    .db
                    .keys()
                    .filter(|k| pattern.as_deref().is_none_or(|p| glob_match(p, k)))
                    .map(|k| Frame::Bulk(k.clone()))
                    .collect();
                Frame::Array(vec![Frame::bulk("0"), Frame::Array(keys)])
            }
            Command::Ping(None) => Frame::Simple("PONG".into()),
            Command::Ping(Some(m)) | Command::Echo(m) => Frame::Bulk(m),
            Command::Info(sections) => Frame::bulk(crate::info::render(st, &sections)),
            Command::ConfigGet(patterns) => {
                let mut out = Vec::new();
                for (k, v) in &st.config.params {
                    if patterns
                        .iter()
                        .any(|p| glob_match(p.as_bytes(), k.as_bytes()))
                    {
                        out.push((Frame::bulk(k), Frame::bulk(v)));
                    }
                }
                Frame::Map(out)
            }
            Command::ConfigSet(pairs) => {
                for (k, v) in pairs {
                    if let Err(e) = st.config.set(&k, &v) {
                        return Frame::err(e.to_string());
                    }
                    if k == "cluster-node-timeout" {
                        if let Some(c) = st.cluster.as_mut() {
                            c.node_timeout = st.config.node_timeout_ms();
                        }
                    }
                }
                Frame::ok()
            }
            Command::ConfigRewrite => match &st.config.file {
                Some(path) => match std::fs::write(path, st.config.render()) {
                    Ok(()) => Frame::ok(),
                    Err(e) => Frame::err(format!("ERR Rewriting config file: {e}")),
                },
                None => Frame::err("ERR The server is running without a config file"),
            },
            Command::ConfigResetStat => {
                st.stats.calls.clear();
                Frame::ok()
            }
            Command::Client(c) => client_command(st, client, c),
            Command::ReadOnly => {
                if st.cluster.is_none() && !client.capa_redirect {
                    return Frame::err("ERR This instance has cluster support disabled");
                }
                client.readonly = true;
                Frame::ok()
            }
            Command::ReadWrite => {
                client.readonly = false;
                Frame::ok()
            }
            Command::Asking => {
                if st.cluster.is_none() {
                    return Frame::err("ERR This instance has cluster support disabled");
                }
                client.asking = true;
                Frame::ok()
            }
            Command::Cluster(c) => c.apply(st),
            Command::DbSize => Frame::Integer(st.db.len() as i64),
            Command::FlushAll => {
                st.db.clear();
                propagate(st, &[b"FLUSHALL".to_vec()]);
                Frame::ok()
            }
            Command::Select => Frame::ok(),
            Command::ReplicaOf(target) => {
                if st.cluster.is_some() {
                    return Frame::err("ERR REPLICAOF not allowed in cluster mode.");
                }
                st.log('*', format!("REPLICAOF {target:?} enabled (user request)"));
                st.repl.follow(target);
                Frame::ok()
            }
            Command::Role => {
                if st.is_primary() {
                    Frame::Array(vec![
                        Frame::bulk("master"),
                        Frame::Integer(st.repl.offset as i64),
                        Frame::Array(vec![]),
                    ])
                } else {
                    let (h, p) = primary_addr(st).unwrap_or_default();
                    Frame::Array(vec![
                        Frame::bulk("slave"),
                        Frame::bulk(h),
                        Frame::Integer(i64::from(p)),
                        Frame::bulk(if st.repl.link_up {
                            "connected"
                        } else {
                            "connect"
                        }),
                        Frame::Integer(st.repl.offset as i64),
                    ])
                }
            }
            Command::Hello(proto, name) => {
                if let Some(p) = proto {
                    client.resp3 = p == 3;
                }
                if name.is_some() {
                    client.name = name;
                }
                let field = |k: &str, v: Frame| (Frame::bulk(k), v);
                Frame::Map(vec![
                    field("server", Frame::bulk("redis")),
                    field("version", Frame::bulk(crate::info::REDIS_VERSION)),
                    field("proto", Frame::Integer(if client.resp3 { 3 } else { 2 })),
                    field("id", Frame::Integer(client.id as i64)),
                    field(
                        "mode",
                        Frame::bulk(if st.cluster.is_some() {
                            "cluster"
                        } else {
                            "standalone"
                        }),
                    ),
                    field(
                        "role",
                        Frame::bulk(if st.is_primary() { "master" } else { "replica" }),
                    ),
                    field("modules", Frame::Array(vec![])),
                ])
            }
            Command::CommandDocs => Frame::Array(vec![]),
            Command::DebugSleep(_) => Frame::ok(), // the connection loop sleeps, holding the node
            // The connection loop runs it (it awaits the target, never under the lock).
            Command::Migrate(_) => Frame::err("ERR MIGRATE is run by the connection loop"),
            Command::Time => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                Frame::Array(vec![
                    Frame::bulk(now.as_secs().to_string()),
                    Frame::bulk(now.subsec_micros().to_string()),
                ])
            }
        }
    }
}

fn client_command(st: &mut State, client: &mut Client, c: ClientCommand) -> Frame {
    match c {
        ClientCommand::Capa(caps) => {
            if caps.iter().any(|c| c == "redirect") {
                client.capa_redirect = true;
            }
            Frame::ok()
        }
        ClientCommand::SetName(n) => {
            client.name = Some(n);
            Frame::ok()
        }
        ClientCommand::GetName => client.name.as_ref().map_or(Frame::Null, Frame::bulk),
        ClientCommand::Id => Frame::Integer(client.id as i64),
        ClientCommand::Pause(ms) => {
            st.pause_writes_until = now_ms() + ms;
            Frame::ok()
        }
        ClientCommand::Unpause => {
            st.pause_writes_until = 0;
            Frame::ok()
        }
        ClientCommand::Kill => Frame::Integer(0),
        ClientCommand::Accept => Frame::ok(),
        ClientCommand::List => Frame::bulk(format!(
            "id={} name={}\n",
            client.id,
            client.name.as_deref().unwrap_or("")
        )),
    }
}

/// The address of this node's primary, if it replicates one.
pub fn primary_addr(st: &State) -> Option<(String, u16)> {
    st.repl.target.clone()
}

/// With `redirect-before-pause` on (seed 003, valkey-io/valkey#821; `node/BUGS.md`): while
/// a standalone `FAILOVER` is in progress, a client with `CLIENT CAPA redirect` is sent to
/// the target at once, before the write pause would hold it; the target, still a replica
/// of this node until the hand-over lands, sends it back. Without the switch such a client
/// is held (writes) or served here (reads) until the hand-over ends, as since #871.
pub fn redirect_before_pause(st: &State, client: &Client) -> Option<Frame> {
    if !client.capa_redirect || st.cluster.is_some() || !st.bug(Bug::RedirectBeforePause) {
        return None;
    }
    let (h, p) = st.repl.failover_target.as_ref()?;
    Some(Frame::err(format!("REDIRECT {h}:{p}")))
}

/// Where a keyed command must go, as an error reply; `None` to serve it here.
fn route(st: &State, client: &Client, keys: &[&[u8]], write: bool, asking: bool) -> Option<Frame> {
    let Some(c) = &st.cluster else {
        // Standalone: a replica serves reads; writes (and, for a client with the redirect
        // capability that did not send READONLY, reads) go to the primary.
        if let Some(redirect) = redirect_before_pause(st, client) {
            return Some(redirect);
        }
        let (h, p) = st.repl.target.clone()?;
        if client.capa_redirect && (write || !client.readonly) {
            return Some(Frame::err(format!("REDIRECT {h}:{p}")));
        }
        if write {
            return Some(Frame::err(
                "READONLY You can't write against a read only replica.",
            ));
        }
        return None;
    };
    let slot = key_slot(keys[0]);
    if keys.iter().any(|k| key_slot(k) != slot) {
        return Some(Frame::err(
            "CROSSSLOT Keys in request don't hash to the same slot",
        ));
    }
    if !c.state_ok {
        return Some(Frame::err("CLUSTERDOWN The cluster is down"));
    }
    let Some(owner) = c.slots[usize::from(slot)].as_deref() else {
        return Some(Frame::err("CLUSTERDOWN Hash slot not served"));
    };
    if owner == c.myid {
        if let Some(to) = c.migrating.get(&slot) {
            let missing = keys.iter().filter(|k| !st.db.contains(k)).count();
            if missing > 0 {
                if missing < keys.len() {
                    return Some(Frame::err(
                        "TRYAGAIN Multiple keys request during rehashing of slot",
                    ));
                }
                if let Some(n) = c.nodes.get(to) {
                    return Some(Frame::err(format!("ASK {slot} {}", n.addr())));
                }
            }
        }
        return None;
    }
    if asking && c.importing.contains_key(&slot) {
        return None;
    }
    if !write && client.readonly && c.myself().primary.as_deref() == Some(owner) {
        return None;
    }
    let n = c.nodes.get(owner)?;
    if n.has(flag::NOADDR) {
        return Some(Frame::err("CLUSTERDOWN Hash slot not served"));
    }
    Some(Frame::err(format!("MOVED {slot} {}", n.addr())))
}

fn int(v: &[u8]) -> Result<i64, Frame> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Frame::err("ERR value is not an integer or out of range"))
}

/// Applies a write from a replication stream or a snapshot (no routing, no reply).
pub fn apply_write(db: &mut Db, args: &[Vec<u8>]) {
    if args
        .first()
        .is_some_and(|a| a.eq_ignore_ascii_case(b"FLUSHALL"))
    {
        db.clear();
        return;
    }
    let _ = write_reply(db, args);
}

/// Applies a write; returns the reply and whether anything changed (to propagate).
fn write_reply(db: &mut Db, args: &[Vec<u8>]) -> (Frame, bool) {
    let name = text(&args[0]).to_uppercase();
    let key = args.get(1).cloned().unwrap_or_default();
    match name.as_str() {
        "SET" => {
            db.set(key, Value::Str(args[2].clone()));
            (Frame::ok(), true)
        }
        "GETSET" => {
            let old = match db.get(&key) {
                Some(Value::Str(s)) => Frame::Bulk(s.clone()),
                Some(_) => return (Frame::err(WRONGTYPE), false),
                None => Frame::Null,
            };
            db.set(key, Value::Str(args[2].clone()));
            (old, true)
        }
        "DEL" | "UNLINK" => {
            let n = args[1..].iter().filter(|k| db.remove(k)).count();
            (Frame::Integer(n as i64), n > 0)
        }
        "INCR" | "DECR" | "INCRBY" | "DECRBY" => {
            let by = match name.as_str() {
                "INCR" => 1,
                "DECR" => -1,
                _ => match int(&args[2]) {
                    Ok(n) if name == "DECRBY" => -n,
                    Ok(n) => n,
                    Err(e) => return (e, false),
                },
            };
            let cur = match db.get(&key) {
                Some(Value::Str(s)) => match int(s) {
                    Ok(n) => n,
                    Err(e) => return (e, false),
                },
                Some(_) => return (Frame::err(WRONGTYPE), false),
                None => 0,
            };
            let Some(new) = cur.checked_add(by) else {
                return (
                    Frame::err("ERR increment or decrement would overflow"),
                    false,
                );
            };
            db.set(key, Value::Str(new.to_string().into_bytes()));
            (Frame::Integer(new), true)
        }
        "SADD" | "SREM" => {
            let add = name == "SADD";
            if !add && !db.contains(&key) {
                return (Frame::Integer(0), false);
            }
            let Value::Set(set) = db.entry(&key, || Value::Set(BTreeSet::new())) else {
                return (Frame::err(WRONGTYPE), false);
            };
            let n = args[2..]
                .iter()
                .filter(|m| {
                    if add {
                        set.insert(m.to_vec())
                    } else {
                        set.remove(m.as_slice())
                    }
                })
                .count();
            if set.is_empty() {
                db.remove(&key);
            }
            (Frame::Integer(n as i64), n > 0)
        }
        "RPUSH" | "LPUSH" => {
            let Value::List(list) = db.entry(&key, || Value::List(VecDeque::new())) else {
                return (Frame::err(WRONGTYPE), false);
            };
            for v in &args[2..] {
                if name == "RPUSH" {
                    list.push_back(v.clone());
                } else {
                    list.push_front(v.clone());
                }
            }
            (Frame::Integer(list.len() as i64), true)
        }
        "RESTORE" | "RESTORE-ASKING" => {
            let ttl = match int(&args[2]) {
                Ok(t) if t < 0 => {
                    return (Frame::err("ERR Invalid TTL value, must be >= 0"), false)
                }
                Ok(t) => t,
                Err(e) => return (e, false),
            };
            if ttl > 0 {
                return (
                    Frame::err("ERR faultline-node has no expiry: RESTORE takes a TTL of 0 only"),
                    false,
                );
            }
            let mut replace = false;
            let mut i = 4;
            while i < args.len() {
                match text(&args[i]).to_uppercase().as_str() {
                    "REPLACE" => replace = true,
                    "ABSTTL" => {}
                    "IDLETIME" | "FREQ" if i + 1 < args.len() => i += 1,
                    _ => return (Frame::err("ERR syntax error"), false),
                }
                i += 1;
            }
            let Some(value) = crate::migrate::undump(&args[3]) else {
                return (
                    Frame::err("ERR DUMP payload version or checksum are wrong"),
                    false,
                );
            };
            if !replace && db.contains(&key) {
                return (Frame::err("BUSYKEY Target key name already exists."), false);
            }
            db.set(key, value);
            (Frame::ok(), true)
        }
        "FLNOOP" => (Frame::ok(), false),
        _ => (Frame::err(format!("ERR not a write: {name}")), false),
    }
}

/// Answers a read.
fn read(db: &Db, args: &[Vec<u8>]) -> Frame {
    let name = text(&args[0]).to_uppercase();
    let key = &args[1];
    let v = db.get(key);
    match name.as_str() {
        "GET" => match v {
            Some(Value::Str(s)) => Frame::Bulk(s.clone()),
            Some(_) => Frame::err(WRONGTYPE),
            None => Frame::Null,
        },
        "STRLEN" => match v {
            Some(Value::Str(s)) => Frame::Integer(s.len() as i64),
            Some(_) => Frame::err(WRONGTYPE),
            None => Frame::Integer(0),
        },
        "MGET" => Frame::Array(
            args[1..]
                .iter()
                .map(|k| match db.get(k) {
                    Some(Value::Str(s)) => Frame::Bulk(s.clone()),
                    _ => Frame::Null,
                })
                .collect(),
        ),
        "EXISTS" => Frame::Integer(args[1..].iter().filter(|k| db.contains(k)).count() as i64),
        "TYPE" => Frame::Simple(
            match v {
                Some(Value::Str(_)) => "string",
                Some(Value::Set(_)) => "set",
                Some(Value::List(_)) => "list",
                None => "none",
            }
            .into(),
        ),
        "SMEMBERS" => match v {
            Some(Value::Set(s)) => Frame::Set(s.iter().map(|m| Frame::Bulk(m.clone())).collect()),
            Some(_) => Frame::err(WRONGTYPE),
            None => Frame::Set(vec![]),
        },
        "SISMEMBER" => match v {
            Some(Value::Set(s)) => Frame::Integer(i64::from(s.contains(&args[2]))),
            Some(_) => Frame::err(WRONGTYPE),
            None => Frame::Integer(0),
        },
        "SCARD" => match v {
            Some(Value::Set(s)) => Frame::Integer(s.len() as i64),
            Some(_) => Frame::err(WRONGTYPE),
            None => Frame::Integer(0),
        },
        "LLEN" => match v {
            Some(Value::List(l)) => Frame::Integer(l.len() as i64),
            Some(_) => Frame::err(WRONGTYPE),
            None => Frame::Integer(0),
        },
        "DUMP" => v.map_or(Frame::Null, |v| Frame::Bulk(crate::migrate::dump(v))),
        "LRANGE" => {
            let (Ok(a), Ok(b)) = (int(&args[2]), int(&args[3])) else {
                return Frame::err("ERR value is not an integer or out of range");
            };
            match v {
                Some(Value::List(l)) => {
                    let len = l.len() as i64;
                    let norm = |i: i64| if i < 0 { (len + i).max(0) } else { i };
                    let (a, b) = (norm(a), norm(b).min(len - 1));
                    if a > b || a >= len {
                        return Frame::Array(vec![]);
                    }
                    Frame::Array(
                        l.range(a as usize..=b as usize)
                            .map(|x| Frame::Bulk(x.clone()))
                            .collect(),
                    )
                }
                Some(_) => Frame::err(WRONGTYPE),
                None => Frame::Array(vec![]),
            }
        }
        _ => Frame::err(format!("ERR not a read: {name}")),
    }
}
