//! The node's listeners and each client's connection loop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::{self, Cluster};
use crate::command::{self, Client, Command};
use crate::config::Config;
use crate::connection::Connection;
use crate::frame::Frame;
use crate::log::Log;
use crate::replication;
use crate::state::{now_ms, with, Shared, State};

/// A running node's listening addresses.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Client port.
    pub client: std::net::SocketAddr,
    /// Bus port (cluster mode).
    pub bus: Option<std::net::SocketAddr>,
}

/// Builds the node from its config: loads nodes.conf in cluster mode, binds both ports.
///
/// # Errors
/// When a port cannot be bound or nodes.conf cannot be read.
pub async fn bind(config: Config) -> Result<(Arc<Shared>, TcpListener, Option<TcpListener>)> {
    let log = Log::open(config.log_file()).context("opening the log file")?;
    let bind = config.bind();
    let listener = TcpListener::bind((bind.as_str(), config.port()))
        .await
        .with_context(|| format!("binding {bind}:{}", config.port()))?;
    let port = listener.local_addr()?.port();
    let mut config = config;
    if config.port() == 0 {
        config.params.insert("port".into(), port.to_string());
    }
    let mut st = State::new(config)?;
    if st.config.get("appendonly") == Some("yes") {
        let name = st
            .config
            .get("appendfilename")
            .unwrap_or("appendonly.aof")
            .to_string();
        let path = st.config.dir().join(name);
        st.aof = Some(crate::aof::Aof::open(&path, &mut st.db)?);
        st.log(
            '*',
            format!("DB loaded from append only file: {} keys", st.db.len()),
        );
    }
    let mut bus = None;
    if st.config.cluster_enabled() {
        // `cluster-port 0` (tests): any free port, announced as the bus port.
        let bus_port = if st.config.get("cluster-port") == Some("0") {
            0
        } else {
            st.config.bus_port()
        };
        let bl = TcpListener::bind((bind.as_str(), bus_port))
            .await
            .with_context(|| format!("binding the cluster bus port {bind}:{bus_port}"))?;
        let actual_bus = bl.local_addr()?.port();
        if st
            .config
            .get("cluster-announce-bus-port")
            .is_none_or(|p| p.is_empty() || p == "0")
        {
            st.config
                .params
                .insert("cluster-announce-bus-port".into(), actual_bus.to_string());
        }
        let (ip, aport, cport, timeout) = (
            st.config.announced_ip(),
            st.config.announced_port(),
            st.config.announced_bus_port(),
            st.config.node_timeout_ms(),
        );
        let path = st.config.nodes_conf();
        let loaded = cluster::load_config(&path, &ip, aport, cport, timeout)?;
        let c = match loaded {
            Some(mut c) => {
                c.restarted_as_primary = c.myself().is_primary() && c.slots_of(&c.myid) > 0;
                st.log('*', format!("Node configuration loaded, I'm {}", c.myid));
                c
            }
            None => {
                let c = Cluster::new(ip, aport, cport, timeout);
                st.log(
                    '*',
                    format!("No cluster configuration found, I'm {}", c.myid),
                );
                c
            }
        };
        // A replica in nodes.conf resumes replicating its primary.
        let target = c
            .myself()
            .primary
            .as_ref()
            .and_then(|p| c.nodes.get(p))
            .map(|p| (p.ip.clone(), p.port));
        st.cluster = Some(c);
        st.repl.follow(target);
        cluster::save_config(&mut st).context("writing nodes.conf")?;
        bus = Some(bl);
    } else if let Some(r) = st
        .config
        .get("replicaof")
        .filter(|r| !r.is_empty())
        .map(str::to_string)
    {
        let mut w = r.split_whitespace();
        if let (Some(h), Some(p)) = (w.next(), w.next().and_then(|p| p.parse().ok())) {
            st.repl.follow(Some((h.to_string(), p)));
        }
    }
    st.log(
        '*',
        format!(
            "faultline-node {} ready to accept connections on port {port}",
            env!("CARGO_PKG_VERSION")
        ),
    );
    let shared = Shared::new(st, log);
    with(&shared, |_| ());
    Ok((shared, listener, bus))
}

/// Runs the node until the process ends.
///
/// # Errors
/// When it cannot start.
pub async fn run(config: Config) -> Result<()> {
    let (shared, listener, bus) = bind(config).await?;
    serve(shared, listener, bus).await;
    Ok(())
}

/// Spawns the node's tasks and accepts clients forever.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, bus: Option<TcpListener>) {
    tokio::spawn(replication::manager(shared.clone()));
    if let Some(bl) = bus {
        tokio::spawn(cluster::bus::listen(shared.clone(), bl));
        tokio::spawn(cluster::bus::cron_task(shared.clone()));
    }
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let _ = client(s, stream).await;
        });
    }
}

/// Starts a node on the given config in this process (tests): returns its addresses.
///
/// # Errors
/// When it cannot bind.
pub async fn spawn(config: Config) -> Result<Bound> {
    let (shared, listener, bus) = bind(config).await?;
    let b = Bound {
        client: listener.local_addr()?,
        bus: bus.as_ref().map(|b| b.local_addr()).transpose()?,
    };
    tokio::spawn(serve(shared, listener, bus));
    Ok(b)
}

async fn client(shared: Arc<Shared>, stream: TcpStream) -> Result<()> {
    let mut conn = Connection::new(stream);
    let mut client = Client {
        id: with(&shared, |st| {
            st.stats.connections += 1;
            st.stats.connections
        }),
        ..Client::default()
    };
    loop {
        let frame = match conn.buffered_frame()? {
            Some(f) => f,
            None => {
                conn.flush().await?;
                match conn.read_frame().await? {
                    Some(f) => f,
                    None => return Ok(()),
                }
            }
        };
        let args = match frame.into_args() {
            Ok(a) => a,
            Err(e) => {
                conn.write_frame(&Frame::err(format!("ERR {e}"))).await?;
                return Ok(());
            }
        };
        if args.is_empty() {
            continue;
        }
        let name = String::from_utf8_lossy(&args[0]).to_uppercase();
        match name.as_str() {
            "FLSYNC" if args.len() == 3 => {
                conn.flush().await?;
                let ip = String::from_utf8_lossy(&args[1]).into_owned();
                let port = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
                return replication::serve_replica(shared, conn, ip, port).await;
            }
            "WAIT" if args.len() == 3 => {
                let reply = wait(&shared, &args).await;
                conn.queue(&reply);
                continue;
            }
            "FAILOVER" => {
                let reply = match crate::failover::Failover::parse(&args[1..]) {
                    Ok(f) => crate::failover::start(&shared, f),
                    Err(e) => e,
                };
                conn.queue(&reply);
                continue;
            }
            "QUIT" => {
                conn.write_frame(&Frame::ok()).await?;
                return Ok(());
            }
            _ => {}
        }
        let parsed = with(&shared, |st| Command::parse(args, &st.scripts));
        let cmd = match parsed {
            Ok(c) => c,
            Err(e) => {
                conn.queue(&e);
                continue;
            }
        };
        if cmd.is_write() {
            // The seed-003 switch answers before the pause below can hold the client.
            if let Some(redirect) = with(&shared, |st| command::redirect_before_pause(st, &client))
            {
                conn.queue(&redirect);
                continue;
            }
            // Held while writes are paused (manual failover, CLIENT PAUSE) or a MIGRATE
            // is moving one of its keys, then routed again: the node may have become a
            // replica, or the key gone, meanwhile.
            loop {
                let (until, moving) = with(&shared, |st| {
                    let moving = !st.in_flight.is_empty()
                        && cmd.keys().iter().any(|k| st.in_flight.contains_key(*k));
                    (st.pause_writes_until, moving)
                });
                let now = now_ms();
                if until <= now && !moving {
                    break;
                }
                conn.flush().await?;
                let wait = if until > now {
                    (until - now).min(10)
                } else {
                    1
                };
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        if let Command::Migrate(m) = &cmd {
            with(&shared, |st| {
                *st.stats.calls.entry("migrate".into()).or_default() += 1;
            });
            let reply = m.run(&shared).await;
            conn.queue(&reply);
            continue;
        }
        if let Command::DebugSleep(ms) = cmd {
            // The whole node stops, as Redis's single thread does.
            let guard = shared.lock();
            std::thread::sleep(Duration::from_millis(ms));
            drop(guard);
        }
        let reply = with(&shared, |st| {
            *st.stats.calls.entry(name.to_lowercase()).or_default() += 1;
            cmd.apply(st, &mut client)
        });
        // HELLO 3's own reply is the first in RESP3.
        conn.set_resp3(client.resp3);
        conn.queue(&reply);
    }
}

/// `WAIT numreplicas timeout`: how many replicas acknowledged this node's offset at the
/// time of the call, waiting up to `timeout` ms (0 = forever) for `numreplicas`.
async fn wait(shared: &Arc<Shared>, args: &[Vec<u8>]) -> Frame {
    let parse = |a: &[u8]| String::from_utf8_lossy(a).parse::<u64>();
    let (Ok(n), Ok(timeout)) = (parse(&args[1]), parse(&args[2])) else {
        return Frame::err("ERR value is not an integer or out of range");
    };
    let (primary, target) = with(shared, |st| (st.is_primary(), st.repl.offset));
    if !primary {
        return Frame::err("ERR WAIT cannot be used with replica instances.");
    }
    let deadline = if timeout == 0 {
        u64::MAX
    } else {
        now_ms() + timeout
    };
    loop {
        let notified = shared.acks.notified();
        let acked = with(shared, |st| st.repl.acked(target));
        if acked as u64 >= n || now_ms() >= deadline {
            return Frame::Integer(acked as i64);
        }
        let left = deadline.saturating_sub(now_ms()).min(100);
        let _ = tokio::time::timeout(Duration::from_millis(left), notified).await;
    }
}
