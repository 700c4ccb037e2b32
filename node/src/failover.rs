//! Standalone `FAILOVER [TO host port [FORCE]] [TIMEOUT ms] | ABORT` (Redis 6.2+ /
//! Valkey): the primary pauses writes (`waiting-for-sync`), waits until the chosen
//! replica has acknowledged its whole stream (or, with FORCE, until the time-out), then
//! hands over (`failover-in-progress`): it tells the replica `REPLICAOF NO ONE` on the
//! replica's client port and follows it. Progress is `INFO replication`'s
//! `master_failover_state`. The command answers `+OK` at once; the hand-over runs here.

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Connection;
use crate::frame::Frame;
use crate::state::{now_ms, with, Shared};

/// A parsed `FAILOVER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// `TO host port`.
    pub to: Option<(String, u16)>,
    /// `FORCE`: hand over at the time-out even if not caught up.
    pub force: bool,
    /// `TIMEOUT ms` (0: none).
    pub timeout_ms: u64,
    /// `ABORT`.
    pub abort: bool,
}

impl Failover {
    /// Parses the arguments after `FAILOVER`.
    ///
    /// # Errors
    /// The error reply.
    pub fn parse(args: &[Vec<u8>]) -> Result<Failover, Frame> {
        let mut f = Failover {
            to: None,
            force: false,
            timeout_ms: 0,
            abort: false,
        };
        let word = |i: usize| {
            args.get(i)
                .map(|a| String::from_utf8_lossy(a).to_uppercase())
        };
        let mut i = 0;
        while i < args.len() {
            match word(i).as_deref() {
                Some("TO") if args.len() > i + 2 => {
                    let host = String::from_utf8_lossy(&args[i + 1]).into_owned();
                    let port = String::from_utf8_lossy(&args[i + 2])
                        .parse()
                        .map_err(|_| Frame::err("ERR Invalid port"))?;
                    f.to = Some((host, port));
                    i += 3;
                }
                Some("FORCE") => {
                    f.force = true;
                    i += 1;
                }
                Some("TIMEOUT") if args.len() > i + 1 => {
                    f.timeout_ms = String::from_utf8_lossy(&args[i + 1]).parse().map_err(|_| {
                        Frame::err("ERR FAILOVER timeout must be greater than or equal to 0")
                    })?;
                    i += 2;
                }
                Some("ABORT") => {
                    f.abort = true;
                    i += 1;
                }
                _ => return Err(Frame::err("ERR syntax error")),
            }
        }
        if f.force && (f.to.is_none() || f.timeout_ms == 0) {
            return Err(Frame::err(
                "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
            ));
        }
        Ok(f)
    }
}

/// Checks and starts a failover; the reply.
pub fn start(shared: &Arc<Shared>, f: Failover) -> Frame {
    let checked = with(shared, |st| {
        if st.cluster.is_some() {
            return Err(Frame::err("ERR FAILOVER not allowed in cluster mode."));
        }
        if f.abort {
            if st.repl.failover_state == "no-failover" {
                return Err(Frame::err("ERR No failover in progress."));
            }
            st.repl.failover_state = "no-failover";
            st.pause_writes_until = 0;
            return Err(Frame::ok());
        }
        if !st.is_primary() {
            return Err(Frame::err(
                "ERR FAILOVER is not valid when server is a replica.",
            ));
        }
        if st.repl.failover_state != "no-failover" {
            return Err(Frame::err("ERR FAILOVER already in progress."));
        }
        let target = match &f.to {
            Some((h, p)) => st
                .repl
                .replicas
                .values()
                .find(|r| &r.ip == h && r.port == *p)
                .map(|r| (r.ip.clone(), r.port)),
            None => st
                .repl
                .replicas
                .values()
                .max_by_key(|r| r.ack)
                .map(|r| (r.ip.clone(), r.port)),
        };
        let Some(target) = target else {
            return Err(Frame::err(if f.to.is_some() {
                "ERR FAILOVER target HOST and PORT is not a replica."
            } else {
                "ERR FAILOVER requires connected replicas."
            }));
        };
        st.repl.failover_state = "waiting-for-sync";
        st.pause_writes_until = u64::MAX;
        st.log(
            '*',
            format!("FAILOVER requested to {}:{}", target.0, target.1),
        );
        Ok((target, st.repl.offset))
    });
    let (target, offset) = match checked {
        Ok(t) => t,
        Err(reply) => return reply,
    };
    tokio::spawn(run(shared.clone(), target, offset, f));
    Frame::ok()
}

async fn run(shared: Arc<Shared>, target: (String, u16), offset: u64, f: Failover) {
    let deadline = if f.timeout_ms == 0 {
        u64::MAX
    } else {
        now_ms() + f.timeout_ms
    };
    loop {
        let (state, acked) = with(&shared, |st| {
            let acked = st
                .repl
                .replicas
                .values()
                .any(|r| r.ip == target.0 && r.port == target.1 && r.ack >= offset);
            (st.repl.failover_state, acked)
        });
        if state != "waiting-for-sync" {
            return; // aborted
        }
        if acked || (f.force && now_ms() >= deadline) {
            break;
        }
        if now_ms() >= deadline {
            with(&shared, |st| {
                st.repl.failover_state = "no-failover";
                st.pause_writes_until = 0;
                st.log('#', "FAILOVER to the replica timed out: aborted.");
            });
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    with(&shared, |st| {
        st.repl.failover_state = "failover-in-progress";
        st.repl.failover_target = Some(target.clone());
    });
    let promoted = async {
        let stream = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((target.0.as_str(), target.1)),
        )
        .await
        .ok()?
        .ok()?;
        let mut conn = Connection::new(stream);
        conn.write_frame(&Frame::command(&[
            b"REPLICAOF".to_vec(),
            b"NO".to_vec(),
            b"ONE".to_vec(),
        ]))
        .await
        .ok()?;
        match tokio::time::timeout(Duration::from_secs(5), conn.read_frame()).await {
            Ok(Ok(Some(Frame::Simple(_)))) => Some(()),
            _ => None,
        }
    }
    .await;
    with(&shared, |st| {
        st.repl.failover_state = "no-failover";
        st.repl.failover_target = None;
        st.pause_writes_until = 0;
        match promoted {
            Some(()) => {
                st.log(
                    '*',
                    format!(
                        "FAILOVER: {}:{} is the primary now; following it",
                        target.0, target.1
                    ),
                );
                st.repl.follow(Some(target.clone()));
            }
            None => st.log(
                '#',
                "FAILOVER: the replica did not take over; staying primary",
            ),
        }
    });
    shared.repl_changed.notify_waiters();
}
