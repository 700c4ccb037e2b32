//! Live clusters: a run against nodes faultline did not start (`faultline run --live
//! HOST:PORT,...`, or a `live:` section in the scenario).
//!
//! Nothing is installed, configured, flushed or stopped. The run's phases stay those of
//! [`crate::run`]; what differs lives here:
//!
//! - [`LiveSpec`]: the scenario's `live:` section (seeds, access level, allowed faults,
//!   where the password is), and [`fault_refusal`]: a fault not allowed, or that the access
//!   level cannot do, is bad input (254) before anything starts.
//! - [`preflight`] ([`discover`]): credentials from an environment variable or a file,
//!   topology from `CLUSTER NODES` (standalone: `INFO replication`), then
//!   `cluster_state:ok`, every slot covered, every node reachable and agreeing, versions
//!   recorded, and no key of the run's prefix present; anything else is a harness error
//!   (255) with nothing touched.
//! - [`backend::LiveBackend`]: the [`crate::backend::Backend`] for such nodes: addresses
//!   and bus ports from discovery; with access `none` it cannot start, kill or pause a
//!   server; with access `ssh` it reaches each node's host through [`hosts`] (the hosts
//!   file) and [`ssh`] (OpenSSH, shared connections), writing every change down on the
//!   host with a dead-man revert first ([`remote`]); [`clean`] is `faultline clean
//!   --live`.
//! - [`finish`]: after the run, the postflight (topology against the preflight's, who is
//!   primary now, slot coverage; `--restore-roles` fails the original primaries back) and
//!   the sandbox's clean-up (only keys with the run's prefix are deleted).

pub mod backend;
pub mod clean;
pub mod discover;
pub mod finish;
pub mod hosts;
pub mod remote;
pub mod ssh;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use faultline_workloads::access::Credentials;
use serde::{Deserialize, Serialize};

pub use discover::{preflight, Target};

/// What the preflight found, in the run directory.
pub const PREFLIGHT_FILE: &str = "preflight.json";
/// What the postflight found and the clean-up did, in the run directory.
pub const POSTFLIGHT_FILE: &str = "postflight.json";

/// What faultline may do on the nodes' machines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// The client port only: failovers, slot migration and other commands a client may
    /// send; no process, firewall or qdisc on the hosts.
    #[default]
    None,
    /// The client port, and each node's host over SSH (a hosts file): partitions in the
    /// run's own iptables chains, netem where the host has it, kill and restart through
    /// the configured commands, pause and resume by the server's pid.
    Ssh,
}

impl std::fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccessLevel::None => "none",
            AccessLevel::Ssh => "ssh",
        })
    }
}

/// `AUTH` for the live nodes: the password comes from an environment variable or a file,
/// never from the scenario or the command line, so it is in no file faultline writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// ACL user (absent: the default user, `requirepass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Environment variable holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// File holding the password (its first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl AuthSpec {
    /// Reads the password from where the spec says.
    ///
    /// # Errors
    /// Neither or both sources given, an unset variable, an unreadable or empty file.
    pub fn credentials(&self) -> Result<Credentials> {
        let password = match (&self.password_env, &self.password_file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                anyhow!("live.auth.password_env: environment variable {var} is not set")
            })?,
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).with_context(|| {
                    format!("live.auth.password_file: reading {}", file.display())
                })?;
                text.lines().next().unwrap_or_default().to_string()
            }
            (None, None) => {
                bail!("live.auth: give password_env (a variable's name) or password_file")
            }
            (Some(_), Some(_)) => bail!("live.auth: give password_env or password_file, not both"),
        };
        if password.is_empty() {
            bail!("live.auth: the password is empty");
        }
        Ok(Credentials {
            username: self.user.clone(),
            password,
        })
    }
}

/// TLS towards the live nodes (the redis crate's native-tls backend): PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// The CA certificate that signed the nodes' certificates.
    pub ca: PathBuf,
    /// Client certificate, for nodes that verify clients (`tls-auth-clients yes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The client certificate's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl TlsSpec {
    /// Reads the files.
    ///
    /// # Errors
    /// A file that cannot be read, or a certificate without its key (or the reverse).
    pub fn load(&self) -> Result<faultline_workloads::access::Tls> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).with_context(|| format!("live.tls.{what}: reading {}", p.display()))
        };
        let client = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((read(c, "cert")?, read(k, "key")?)),
            (None, None) => None,
            _ => bail!("live.tls: give both cert and key (or neither)"),
        };
        Ok(faultline_workloads::access::Tls {
            ca: read(&self.ca, "ca")?,
            client,
        })
    }
}

/// The scenario's `live:` section: test a running cluster faultline did not start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSpec {
    /// Seed nodes, `HOST:PORT`; the rest of the cluster is discovered from them.
    pub seeds: Vec<String>,
    /// What faultline may do on the nodes' machines.
    #[serde(default)]
    pub access: AccessLevel,
    /// Fault kinds that may happen to this cluster; a scenario fault of any other kind is
    /// refused before anything starts.
    #[serde(default)]
    pub allow_faults: Vec<String>,
    /// Credentials, when the nodes ask for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// TLS, when the nodes' client port speaks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// After the run, fail the original primaries back where a failover moved them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restore_roles: bool,
    /// Access `ssh`: the hosts file ([`hosts::HostsFile`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts_file: Option<PathBuf>,
}

impl LiveSpec {
    /// Splits a comma-separated list (`--live`, `--allow-faults`).
    pub fn list(text: &str) -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }
}

/// What in a live scenario cannot be, as (dotted field, word on its line, message):
/// a seed that is not `HOST:PORT`, an allowed kind that is no fault, a scenario fault not
/// allowed or beyond the access level, a bus proxy. Also checked after the command line's
/// overrides.
pub fn fault_refusal(scenario: &crate::scenario::Scenario) -> Option<(String, String, String)> {
    use faultline_nemeses::proxy::BusMode;
    use faultline_nemeses::spec::FAULT_KINDS;
    let live = scenario.live.as_ref()?;
    if live.seeds.is_empty() {
        return Some((
            "live.seeds".into(),
            "seeds".into(),
            "a live cluster needs at least one seed node, HOST:PORT".into(),
        ));
    }
    for seed in &live.seeds {
        let ok = seed
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Some((
                "live.seeds".into(),
                seed.clone(),
                format!("{seed:?} is not HOST:PORT"),
            ));
        }
    }
    for kind in &live.allow_faults {
        if !FAULT_KINDS.contains(&kind.as_str()) {
            return Some((
                "live.allow_faults".into(),
                kind.clone(),
                format!(
                    "{kind:?} is no fault kind; the kinds are {}",
                    FAULT_KINDS.join(", ")
                ),
            ));
        }
    }
    if live.access == AccessLevel::Ssh && live.hosts_file.is_none() {
        return Some((
            "live.access".into(),
            "access".into(),
            "access ssh needs live.hosts_file (or --hosts FILE): which SSH destination reaches each node's host".into(),
        ));
    }
    if scenario.cluster.bus == BusMode::Proxy {
        return Some((
            "cluster.bus".into(),
            "bus".into(),
            "a live cluster's bus cannot go through faultline's proxy: remove `bus: proxy`".into(),
        ));
    }
    for (i, fault) in scenario
        .nemesis
        .iter()
        .flat_map(|n| n.faults.iter())
        .enumerate()
    {
        let kind = fault.kind();
        let needs = fault.needs();
        let message = if !live.allow_faults.iter().any(|k| k == kind) {
            format!(
                "{kind} is not allowed on this live cluster: allow it with --allow-faults \
                 (or live.allow_faults), or remove it"
            )
        } else if needs.bus_proxy {
            format!("{kind} acts on faultline's bus proxy, which a live cluster does not have")
        } else if needs.node_host && live.access == AccessLevel::Ssh && live.hosts_file.is_none() {
            format!(
                "{kind} needs the nodes' hosts: access ssh needs live.hosts_file (--hosts FILE)"
            )
        } else if needs.node_host && live.access == AccessLevel::None {
            format!(
                "{kind} acts on the node's host (processes, firewall, qdiscs), which access \
                 `none` cannot reach: only client-port faults run there"
            )
        } else {
            continue;
        };
        return Some((
            format!("nemesis.faults[{i}].kind"),
            kind.to_string(),
            message,
        ));
    }
    None
}

/// Applies `faultline run`'s live-cluster options to the scenario, then checks its faults
/// against what is allowed ([`fault_refusal`]).
///
/// # Errors
/// Options without a live cluster, or a fault that may not run (bad input).
pub fn apply_args(
    scenario: &mut crate::scenario::Scenario,
    args: &crate::cli::LiveArgs,
) -> Result<()> {
    if let Some(seeds) = &args.live {
        scenario.live.get_or_insert_with(LiveSpec::default).seeds = LiveSpec::list(seeds);
    }
    if let Some(hosts) = &args.hosts {
        let live = scenario.live.get_or_insert_with(LiveSpec::default);
        live.hosts_file = Some(hosts.clone());
        live.access = AccessLevel::Ssh;
    }
    let given = args.allow_faults.is_some()
        || args.restore_roles
        || args.tls_ca.is_some()
        || args.tls_cert.is_some()
        || args.tls_key.is_some()
        || args.auth_user.is_some()
        || args.auth_password_env.is_some()
        || args.auth_password_file.is_some()
        || args.hosts.is_some();
    let Some(live) = scenario.live.as_mut() else {
        if given {
            bail!("--allow-faults, --restore-roles, --auth-* and --tls-* apply to a live cluster: add --live HOST:PORT");
        }
        return Ok(());
    };
    if let Some(kinds) = &args.allow_faults {
        live.allow_faults = LiveSpec::list(kinds);
    }
    live.restore_roles |= args.restore_roles;
    if let Some(ca) = &args.tls_ca {
        live.tls = Some(TlsSpec {
            ca: ca.clone(),
            cert: args.tls_cert.clone(),
            key: args.tls_key.clone(),
        });
    } else if args.tls_cert.is_some() || args.tls_key.is_some() {
        let Some(tls) = live.tls.as_mut() else {
            bail!("--tls-cert and --tls-key need --tls-ca (the CA that signed the nodes' certificates)");
        };
        tls.cert = args.tls_cert.clone().or(tls.cert.take());
        tls.key = args.tls_key.clone().or(tls.key.take());
    }
    if args.auth_password_env.is_some() || args.auth_password_file.is_some() {
        live.auth = Some(AuthSpec {
            user: args.auth_user.clone(),
            password_env: args.auth_password_env.clone(),
            password_file: args.auth_password_file.clone(),
        });
    } else if let Some(user) = &args.auth_user {
        live.auth.get_or_insert_with(AuthSpec::default).user = Some(user.clone());
    }
    // faultline writes no config of a server it did not start.
    for fault in scenario
        .nemesis
        .iter_mut()
        .flat_map(|n| n.faults.iter_mut())
    {
        use faultline_nemeses::delay::Mechanism;
        use faultline_nemeses::spec::FaultSpec;
        match fault {
            FaultSpec::StandaloneFailover(s) => s.config_rewrite = false,
            // The NFQUEUE delayer runs in a thread inside the node's namespace, which a
            // host reached over SSH is not: netem where the host has it, else the fault
            // fails saying why.
            FaultSpec::Delay(s) => s.mechanism = Mechanism::Netem,
            FaultSpec::Loss(s) => s.mechanism = Mechanism::Netem,
            _ => {}
        }
    }
    if let Some((field, _, message)) = fault_refusal(scenario) {
        bail!("{field}: {message}");
    }
    // A hosts file that cannot be used is bad input, before anything connects.
    if let Some(file) = scenario.live.as_ref().and_then(|l| l.hosts_file.as_ref()) {
        hosts::HostsFile::load(file).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(())
}

/// The run's key prefix on a live cluster: `fl-<run id>:` (no glob character, so `SCAN
/// MATCH <prefix>*` finds exactly the run's keys).
pub fn key_prefix(run_id: &crate::ledger::RunId) -> String {
    format!("fl-{run_id}:")
}

#[cfg(test)]
mod tests {
    use crate::scenario::Scenario;

    fn err(text: &str) -> String {
        Scenario::parse(text, "l.yaml", "l")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_live_section_parses_and_round_trips_without_secrets() {
        let s = Scenario::parse(
            "live:\n  seeds: [10.0.0.1:6379]\n  allow_faults: [failover]\n  auth:\n    user: fl\n    password_env: FL_PW\nnemesis:\n  faults:\n    - kind: failover\n",
            "l.yaml",
            "l",
        )
        .unwrap();
        let live = s.live.as_ref().unwrap();
        assert_eq!(live.seeds, vec!["10.0.0.1:6379"]);
        assert_eq!(live.access, super::AccessLevel::None);
        let yaml = s.to_yaml();
        assert!(yaml.contains("password_env: FL_PW"), "{yaml}");
        let again = Scenario::parse(&yaml, "r.yaml", "r").unwrap();
        assert_eq!(again.live, s.live);
    }

    #[test]
    fn faults_not_allowed_or_beyond_access_none_are_refused_with_their_line() {
        let e = err("live:\n  seeds: [10.0.0.1:6379]\nnemesis:\n  faults:\n    - kind: failover\n");
        assert!(e.starts_with("l.yaml:5:"), "{e}");
        assert!(e.contains("failover is not allowed"), "{e}");
        let e = err("live:\n  seeds: [10.0.0.1:6379]\n  allow_faults: [partition]\nnemesis:\n  faults:\n    - kind: partition\n");
        assert!(e.contains("access `none` cannot reach"), "{e}");
        let e = err("live:\n  seeds: [10.0.0.1]\n");
        assert!(
            e.contains("is not HOST:PORT") && e.starts_with("l.yaml:2:"),
            "{e}"
        );
        let e = err("live:\n  seeds: [10.0.0.1:6379]\n  allow_faults: [explode]\n");
        assert!(e.contains("no fault kind"), "{e}");
        let e = err("live:\n  seeds: [10.0.0.1:6379]\n  access: root\n");
        assert!(e.contains("unknown variant `root`"), "{e}");
    }

    #[test]
    fn the_password_comes_from_a_variable_or_a_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let spec = super::AuthSpec {
            user: None,
            password_env: None,
            password_file: Some(file),
        };
        assert_eq!(spec.credentials().unwrap().password, "from-file");
        let unset = super::AuthSpec {
            password_env: Some("FAULTLINE_TEST_UNSET_VARIABLE".into()),
            ..Default::default()
        };
        let e = unset.credentials().unwrap_err().to_string();
        assert!(
            e.contains("FAULTLINE_TEST_UNSET_VARIABLE is not set"),
            "{e}"
        );
        assert!(super::AuthSpec::default().credentials().is_err());
    }
}
