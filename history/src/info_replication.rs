//! Parsing the text of an `INFO replication` reply: `field:value` lines under a
//! `# Replication` header, e.g.
//!
//! ```text
//! # Replication
//! role:slave
//! master_host:10.77.3.11
//! master_port:6379
//! master_link_status:up
//! slave_repl_offset:1442
//! master_failover_state:no-failover
//! ```
//!
//! and, on a primary, one `slaveN:ip=...,port=...,state=...,offset=...,lag=...` line per
//! connected replica. A standalone node (`mode: standalone`) speaks only for itself here:
//! its role and whom it replicates, by address. The orchestrator (waiting for a group to
//! agree), the standalone client, the nemeses (finding roles) and the standalone checkers
//! all read these replies, so the parser lives here, beside [`crate::ClusterView`].
//!
//! Servers still print `master`/`slave` in this section (Valkey 8 included), so those are
//! the words matched.

use std::collections::HashMap;

/// `field:value` lines of an INFO section, split on the first colon, trimmed (a CRLF
/// reply parses like an LF one). Lines without a colon (the `# Replication` header, blank
/// lines) are skipped; a field given twice keeps its last value.
pub fn info_fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One node's `INFO replication` reply, parsed. A field the reply lacks is `None` (or
/// `false`) in every accessor: nothing is guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationInfo {
    /// Every `field:value` line ([`info_fields`]).
    pub fields: HashMap<String, String>,
}

/// One `slaveN:` line of a primary's reply: a replica as the primary sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaEntry {
    /// `ip=`.
    pub ip: Option<String>,
    /// `port=`.
    pub port: Option<u16>,
    /// `state=` (`online`, `wait_bgsave`, `send_bulk`, ...).
    pub state: Option<String>,
    /// `offset=`: how far the replica has acknowledged the stream.
    pub offset: Option<u64>,
    /// `lag=`: seconds since its last acknowledgement.
    pub lag: Option<u64>,
}

impl ReplicaEntry {
    /// `ip:port`, when both are given.
    pub fn addr(&self) -> Option<String> {
        Some(format!("{}:{}", self.ip.as_ref()?, self.port?))
    }
}

impl ReplicationInfo {
    /// Parses a raw reply. Never fails: an odd line is skipped, a missing field is `None`.
    pub fn parse(text: &str) -> ReplicationInfo {
        ReplicationInfo {
            fields: info_fields(text),
        }
    }

    /// A field's value, as printed.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// `role:` (`master` or `slave`).
    pub fn role(&self) -> Option<&str> {
        self.get("role")
    }

    /// `role:master`.
    pub fn is_primary(&self) -> bool {
        self.role() == Some("master")
    }

    /// `role:slave`.
    pub fn is_replica(&self) -> bool {
        self.role() == Some("slave")
    }

    /// Whom the node replicates, `master_host:master_port`; `None` for a primary or when
    /// either field is missing.
    pub fn primary_addr(&self) -> Option<String> {
        if !self.is_replica() {
            return None;
        }
        Some(format!(
            "{}:{}",
            self.get("master_host")?,
            self.get("master_port")?
        ))
    }

    /// `master_link_status:up`: the replica's link to its primary is up.
    pub fn link_up(&self) -> bool {
        self.get("master_link_status") == Some("up")
    }

    /// `master_failover_state:` (`no-failover`, `waiting-for-sync`,
    /// `failover-in-progress`).
    pub fn failover_state(&self) -> Option<&str> {
        self.get("master_failover_state")
    }

    /// `connected_slaves:`, or 0 when missing or not a number.
    pub fn connected_replicas(&self) -> usize {
        self.get("connected_slaves")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The `slaveN:` lines, in N order (a primary's view of its replicas). Unknown keys in
    /// a line are ignored, a missing or malformed one is `None`.
    pub fn replicas(&self) -> Vec<ReplicaEntry> {
        let mut numbered: Vec<(usize, ReplicaEntry)> = self
            .fields
            .iter()
            .filter_map(|(k, v)| {
                let n: usize = k.strip_prefix("slave")?.parse().ok()?;
                Some((n, replica_entry(v)))
            })
            .collect();
        numbered.sort_by_key(|(n, _)| *n);
        numbered.into_iter().map(|(_, e)| e).collect()
    }
}

fn replica_entry(value: &str) -> ReplicaEntry {
    let mut e = ReplicaEntry::default();
    for (k, v) in value.split(',').filter_map(|kv| kv.split_once('=')) {
        match k {
            "ip" => e.ip = Some(v.to_string()),
            "port" => e.port = v.parse().ok(),
            "state" => e.state = Some(v.to_string()),
            "offset" => e.offset = v.parse().ok(),
            "lag" => e.lag = v.parse().ok(),
            _ => {}
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_on_the_first_colon_and_crlf_is_trimmed() {
        let f = info_fields("# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nslave0:ip=10.0.0.2,port=6379,state=online\r\n");
        assert_eq!(f["role"], "slave");
        assert_eq!(f["master_host"], "10.0.0.1");
        assert_eq!(f["slave0"], "ip=10.0.0.2,port=6379,state=online");
        assert!(!f.contains_key("# Replication"));
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn a_replica_names_its_primary_by_address() {
        let lf = "# Replication\nrole:slave\nmaster_host:10.0.0.1\nmaster_port:6379\nmaster_link_status:up\nmaster_failover_state:no-failover\n";
        let crlf = lf.replace('\n', "\r\n");
        for text in [lf, crlf.as_str()] {
            let r = ReplicationInfo::parse(text);
            assert!(r.is_replica() && !r.is_primary());
            assert_eq!(r.primary_addr().as_deref(), Some("10.0.0.1:6379"));
            assert!(r.link_up());
            assert_eq!(r.failover_state(), Some("no-failover"));
        }
    }

    #[test]
    fn missing_fields_are_none_not_guesses() {
        let r = ReplicationInfo::parse("role:slave\r\nmaster_host:10.0.0.1\r\n");
        assert_eq!(r.primary_addr(), None, "no master_port");
        assert!(!r.link_up());
        assert_eq!(r.failover_state(), None);
        assert_eq!(r.connected_replicas(), 0);

        let empty = ReplicationInfo::parse("");
        assert_eq!(empty.role(), None);
        assert!(!empty.is_primary() && !empty.is_replica());
        assert!(empty.replicas().is_empty());

        // A primary names no primary, even with stale master_* fields.
        let r = ReplicationInfo::parse("role:master\nmaster_host:10.0.0.9\nmaster_port:1\n");
        assert_eq!(r.primary_addr(), None);
    }

    #[test]
    fn slave_lines_give_each_replica_in_order() {
        let text = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
            slave10:ip=10.0.0.4,port=6379,state=wait_bgsave,offset=0,lag=0\r\n\
            slave1:ip=10.0.0.3,port=6380,state=online,offset=1442,lag=1\r\n\
            slave0:ip=10.0.0.2,port=6379,state=online,offset=1456,lag=0,extra=x\r\n\
            slave_repl_offset:7\r\n\
            slave2:ip=10.0.0.5,port=notaport\r\n\
            master_repl_offset:1456\r\n";
        let r = ReplicationInfo::parse(text);
        assert!(r.is_primary());
        assert_eq!(r.connected_replicas(), 3);
        let replicas = r.replicas();
        assert_eq!(replicas.len(), 4);
        assert_eq!(
            replicas[0],
            ReplicaEntry {
                ip: Some("10.0.0.2".into()),
                port: Some(6379),
                state: Some("online".into()),
                offset: Some(1456),
                lag: Some(0),
            }
        );
        assert_eq!(replicas[1].addr().as_deref(), Some("10.0.0.3:6380"));
        assert_eq!(replicas[1].offset, Some(1442));
        assert_eq!(replicas[2].port, None);
        assert_eq!(replicas[2].addr(), None);
        assert_eq!(replicas[3].state.as_deref(), Some("wait_bgsave"));
        assert_eq!(r.get("master_repl_offset"), Some("1456"));
    }

    #[test]
    fn odd_lines_are_skipped_and_a_repeated_field_keeps_its_last_value() {
        let r = ReplicationInfo::parse("  role:master  \n\nno colon here\nrole:slave\nx:a:b\n");
        assert_eq!(r.role(), Some("slave"));
        assert_eq!(r.get("x"), Some("a:b"));
        assert_eq!(r.fields.len(), 2);
    }
}
