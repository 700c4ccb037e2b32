//! `INFO`: the sections the harness and `redis-cli` read (server, clients, stats,
//! replication, cluster, keyspace, commandstats), in Redis's `# Section` / `field:value`
//! text.

use std::fmt::Write as _;

use crate::state::{now_ms, State};

/// The Redis version this node reports to clients that gate features on it: the
/// protocol level it follows (7.0's cluster bus and commands).
pub const REDIS_VERSION: &str = "7.0.0";

const ALL: [&str; 7] = [
    "server",
    "clients",
    "stats",
    "replication",
    "cluster",
    "keyspace",
    "commandstats",
];
const DEFAULT: [&str; 6] = [
    "server",
    "clients",
    "stats",
    "replication",
    "cluster",
    "keyspace",
];

/// The reply for `INFO sections...`.
pub fn render(st: &State, sections: &[String]) -> String {
    let wanted: Vec<&str> = if sections.is_empty() || sections.iter().any(|s| s == "default") {
        DEFAULT.to_vec()
    } else if sections.iter().any(|s| s == "all" || s == "everything") {
        ALL.to_vec()
    } else {
        ALL.iter()
            .copied()
            .filter(|s| sections.iter().any(|w| w == s))
            .collect()
    };
    let mut out = String::new();
    for s in wanted {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let mut lines: Vec<String> = Vec::new();
        match s {
            "server" => {
                lines.push(format!("redis_version:{REDIS_VERSION}"));
                lines.push(format!(
                    "faultline_node_version:{}",
                    env!("CARGO_PKG_VERSION")
                ));
                lines.push(format!("faultline_bugs:{}", st.bugs.names().join(",")));
                lines.push(format!(
                    "redis_mode:{}",
                    if st.cluster.is_some() {
                        "cluster"
                    } else {
                        "standalone"
                    }
                ));
                lines.push(format!("process_id:{}", std::process::id()));
                lines.push(format!("tcp_port:{}", st.config.port()));
                lines.push(format!(
                    "uptime_in_seconds:{}",
                    now_ms().saturating_sub(st.started_ms) / 1000
                ));
                if let Some(f) = &st.config.file {
                    lines.push(format!("config_file:{}", f.display()));
                }
            }
            "clients" => lines.push(format!("connected_clients:{}", st.stats.connections)),
            "stats" => {
                lines.push(format!(
                    "total_connections_received:{}",
                    st.stats.connections
                ));
                lines.push(format!(
                    "total_commands_processed:{}",
                    st.stats.calls.values().sum::<u64>()
                ));
            }
            "replication" => replication(st, &mut lines),
            "cluster" => lines.push(format!(
                "cluster_enabled:{}",
                u8::from(st.cluster.is_some())
            )),
            "keyspace" if !st.db.is_empty() => {
                lines.push(format!("db0:keys={},expires=0,avg_ttl=0", st.db.len()));
            }
            "commandstats" => {
                let mut calls: Vec<_> = st.stats.calls.iter().collect();
                calls.sort();
                for (name, n) in calls {
                    lines.push(format!(
                        "cmdstat_{name}:calls={n},usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0"
                    ));
                }
            }
            _ => {}
        }
        let mut title = s.to_string();
        title[..1].make_ascii_uppercase();
        let _ = write!(out, "# {title}\r\n");
        for l in lines {
            out.push_str(&l);
            out.push_str("\r\n");
        }
    }
    out
}

fn replication(st: &State, lines: &mut Vec<String>) {
    let now = now_ms();
    if st.is_primary() {
        lines.push("role:master".into());
        let mut replicas: Vec<_> = st.repl.replicas.values().collect();
        replicas.sort_by_key(|r| (r.ip.clone(), r.port));
        lines.push(format!("connected_slaves:{}", replicas.len()));
        for (i, r) in replicas.iter().enumerate() {
            lines.push(format!(
                "slave{i}:ip={},port={},state=online,offset={},lag={}",
                r.ip,
                r.port,
                r.ack,
                now.saturating_sub(r.ack_ms) / 1000
            ));
        }
    } else {
        let (h, p) = st.repl.target.clone().unwrap_or_default();
        lines.push("role:slave".into());
        lines.push(format!("master_host:{h}"));
        lines.push(format!("master_port:{p}"));
        lines.push(format!(
            "master_link_status:{}",
            if st.repl.link_up { "up" } else { "down" }
        ));
        lines.push("master_last_io_seconds_ago:0".into());
        lines.push("master_sync_in_progress:0".into());
        lines.push(format!("slave_repl_offset:{}", st.repl.offset));
        if !st.repl.link_up {
            lines.push(format!(
                "master_link_down_since_seconds:{}",
                now.saturating_sub(st.repl.link_down_since) / 1000
            ));
        }
        lines.push("slave_priority:100".into());
        lines.push("slave_read_only:1".into());
        lines.push("connected_slaves:0".into());
    }
    lines.push(format!("master_failover_state:{}", st.repl.failover_state));
    lines.push(format!("master_replid:{}", st.repl.replid));
    lines.push(format!("master_repl_offset:{}", st.repl.offset));
}
