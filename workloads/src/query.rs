//! One connection, one command, bounded in time: how the nemeses, the topology observer
//! and the orchestrator ask a node something outside the workload's clients.
//!
//! A paused, killed or partitioned node must never hold a caller up, so every step has a
//! time-out. Errors keep apart what failed ([`QueryError`]): callers record them as
//! evidence in the history and the topology log, and some (failovers) tell a server's
//! refusal from a connection that never carried the command.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisError};

/// Opens a multiplexed connection to `addr` (`ip:port`): at most `connect_timeout` to
/// connect, then each reply waits at most `response_timeout` (`None`: as long as it
/// takes, for clients that bound the whole op themselves).
///
/// # Errors
/// The client's error, unchanged (callers word it).
pub async fn connect(
    addr: &str,
    connect_timeout: Duration,
    response_timeout: Option<Duration>,
) -> Result<MultiplexedConnection, RedisError> {
    let client = crate::access::client(addr)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(response_timeout);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Why [`query`] has no reply.
#[derive(Debug)]
pub enum QueryError {
    /// No connection: the command was never sent.
    Connect(RedisError),
    /// The command was sent: an error reply, or the connection broke or timed out.
    Reply(RedisError),
}

impl std::fmt::Display for QueryError {
    /// The client's own text, whichever step failed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Connect(e) | QueryError::Reply(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for QueryError {}

/// Connects to `addr` and sends `cmd` on a fresh connection; connecting and the reply
/// are bounded by `timeout` each.
///
/// # Errors
/// [`QueryError::Connect`] before the command was sent, [`QueryError::Reply`] after.
pub async fn query<T: FromRedisValue>(
    addr: &str,
    cmd: &Cmd,
    timeout: Duration,
) -> Result<T, QueryError> {
    let mut conn = connect(addr, timeout, Some(timeout))
        .await
        .map_err(QueryError::Connect)?;
    cmd.query_async::<T>(&mut conn)
        .await
        .map_err(QueryError::Reply)
}

/// [`query`] with the whole exchange bounded by twice `timeout` (a hard stop even if a
/// step overruns its own bound), and any error as the client's text; `timed out` when
/// the hard stop fires.
///
/// # Errors
/// The error's text.
pub async fn query_text<T: FromRedisValue>(
    addr: &str,
    cmd: &Cmd,
    timeout: Duration,
) -> Result<T, String> {
    match tokio::time::timeout(timeout * 2, query::<T>(addr, cmd, timeout)).await {
        Ok(reply) => reply.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The server's error as text: `CODE detail` for an error reply, else the client's
/// description.
pub fn error_text(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}
