//! What each run created on this machine, written down as it is created.
//!
//! The harness runs as root and changes the kernel's network state, so every namespace,
//! link and process carries the run's id and is also listed in the run's ledger under
//! [`state_dir`] ([`STATE_DIR`] for root). Teardown removes what the ledger lists; `faultline clean` reads the
//! ledgers of runs whose owner is gone (killed with SIGKILL, machine crash of the
//! harness, `--keep`) and removes their resources.
//!
//! The ledger removes what any run on this machine makes (processes, network namespaces,
//! host links) itself. Other kinds (a backend's containers, say) are listed by kind in
//! [`Ledger::resources`], and the backend module that makes them says how to remove them
//! (a [`Remover`], listed in the backend module's `REMOVERS`, which teardown and
//! `faultline clean` pass in): the ledger knows no backend.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::sys;

/// Where ledgers live: on tmpfs, so they vanish at reboot with the namespaces they list.
pub const STATE_DIR: &str = "/run/faultline";

/// Where this user's ledgers live: [`STATE_DIR`] for root; for anyone else (an
/// unprivileged `--backend loopback` run) `$XDG_RUNTIME_DIR/faultline`, else
/// `/tmp/faultline-<uid>`, made private to the user.
pub fn state_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from(STATE_DIR);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| Path::new(d).is_dir()) {
        Some(d) => Path::new(&d).join("faultline"),
        None => PathBuf::from(format!("/tmp/faultline-{uid}")),
    }
}

/// Makes [`state_dir`] (mode 0700 when it is not root's shared one).
fn ensure_state_dir() -> Result<PathBuf> {
    let dir = state_dir();
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if dir != Path::new(STATE_DIR) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = fs::metadata(&dir).with_context(|| format!("reading {}", dir.display()))?;
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            anyhow::bail!(
                "{} belongs to another user: remove it, or set XDG_RUNTIME_DIR",
                dir.display()
            );
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    Ok(dir)
}

/// Prefix of every name a run gives to a namespace or host link.
pub const NAME_PREFIX: &str = "fl";

/// A run's short id: six hex digits, part of every name the run creates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunId(String);

impl RunId {
    /// A fresh random id.
    pub fn random() -> RunId {
        RunId(format!("{:06x}", rand::random::<u32>() & 0xff_ffff))
    }

    /// Parses an id given by a user.
    pub fn parse(s: &str) -> Option<RunId> {
        (s.len() == 6
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| RunId(s.to_string()))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace holding the run's bridge.
    pub fn hub_netns(&self) -> String {
        format!("{NAME_PREFIX}-{}-hub", self.0)
    }

    /// The namespace of one node.
    pub fn node_netns(&self, node: &str) -> String {
        format!("{NAME_PREFIX}-{}-{node}", self.0)
    }

    /// The host end of the link into the hub (at most 15 characters: `fl` + id + `h`).
    pub fn host_link(&self) -> String {
        format!("{NAME_PREFIX}{}h", self.0)
    }

    /// The run id inside a namespace name we made (`fl-<id>-...`).
    pub fn of_netns(name: &str) -> Option<RunId> {
        let rest = name.strip_prefix(NAME_PREFIX)?.strip_prefix('-')?;
        let (id, tail) = rest.split_once('-')?;
        (!tail.is_empty()).then_some(())?;
        RunId::parse(id)
    }

    /// The run id inside a host link name we made (`fl<id>h`).
    pub fn of_host_link(name: &str) -> Option<RunId> {
        let id = name.strip_prefix(NAME_PREFIX)?.strip_suffix('h')?;
        RunId::parse(id)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One run's record of what it created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    /// The run.
    pub run_id: RunId,
    /// The faultline process that owns the resources.
    pub owner_pid: i32,
    /// Its start time, to tell it from a later process with the same pid.
    pub owner_start: Option<u64>,
    /// The run's store directory.
    pub run_dir: PathBuf,
    /// The run asked to leave its cluster running.
    pub keep: bool,
    /// Network namespaces, in creation order.
    pub netns: Vec<String>,
    /// Links in the host namespace.
    pub host_links: Vec<String>,
    /// Server processes started (pids may be stale after restarts; namespaces are the
    /// authority for what still runs).
    pub pids: Vec<i32>,
    /// Resources of other kinds, by kind (the docker backend's `containers` and
    /// `docker_networks`), each in creation order. Stored as top-level keys of the ledger
    /// file, so a kind's key is its name.
    #[serde(flatten)]
    pub resources: BTreeMap<String, Vec<String>>,
}

/// Removes the resources of the kinds one backend module makes, as a ledger lists them;
/// returns what it did, failures starting with "could not". Must skip names that no
/// longer exist (it runs for half-made runs, and more than once).
pub type Remover = fn(&Ledger) -> Vec<String>;

impl Ledger {
    /// A ledger for a run owned by this process, written to disk at once.
    ///
    /// # Errors
    /// If the state directory cannot be written.
    pub fn create(run_id: RunId, run_dir: &Path, keep: bool) -> Result<Ledger> {
        let pid = std::process::id() as i32;
        let ledger = Ledger {
            run_id,
            owner_pid: pid,
            owner_start: sys::pid_start_time(pid),
            run_dir: run_dir.to_path_buf(),
            keep,
            netns: Vec::new(),
            host_links: Vec::new(),
            pids: Vec::new(),
            resources: BTreeMap::new(),
        };
        ledger.save()?;
        Ok(ledger)
    }

    fn path_of(id: &RunId) -> PathBuf {
        state_dir().join(format!("{id}.json"))
    }

    /// Writes the ledger (atomically: write, then rename).
    ///
    /// # Errors
    /// If the state directory cannot be written.
    pub fn save(&self) -> Result<()> {
        ensure_state_dir()?;
        let path = Self::path_of(&self.run_id);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Writes down a resource of `kind` before it is made.
    ///
    /// # Errors
    /// If the ledger cannot be saved.
    pub fn record(&mut self, kind: &str, name: &str) -> Result<()> {
        self.resources
            .entry(kind.to_string())
            .or_default()
            .push(name.to_string());
        self.save()
    }

    /// The resources of `kind` the ledger lists, in creation order.
    pub fn listed(&self, kind: &str) -> &[String] {
        self.resources.get(kind).map_or(&[], Vec::as_slice)
    }

    /// Deletes the ledger file (after everything it lists is gone).
    pub fn remove(&self) {
        let _ = fs::remove_file(Self::path_of(&self.run_id));
    }

    /// Whether the owning faultline process still runs.
    pub fn owner_alive(&self) -> bool {
        sys::pid_alive(self.owner_pid)
            && (self.owner_start.is_none()
                || sys::pid_start_time(self.owner_pid) == self.owner_start)
    }

    /// Every ledger on this machine; unreadable files are reported in the second list.
    pub fn load_all() -> (Vec<Ledger>, Vec<String>) {
        let mut ledgers = Vec::new();
        let mut problems = Vec::new();
        let Ok(dir) = fs::read_dir(state_dir()) else {
            return (ledgers, problems);
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                match fs::read(&path)
                    .map_err(anyhow::Error::from)
                    .and_then(|b| Ok(serde_json::from_slice::<Ledger>(&b)?))
                {
                    Ok(l) => ledgers.push(l),
                    Err(e) => problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
        (ledgers, problems)
    }

    /// [`Ledger::release`] for a backend's teardown: what could not be removed is the error.
    ///
    /// # Errors
    /// Every removal that failed, with the advice to run `faultline clean`.
    pub fn release_or_report(&self, run_id: &RunId, removers: &[Remover]) -> anyhow::Result<()> {
        let problems: Vec<String> = self
            .release(removers)
            .into_iter()
            .filter(|line| line.starts_with("could not"))
            .collect();
        if !problems.is_empty() {
            anyhow::bail!(
                "teardown of run {run_id} left things behind: {}; run `faultline clean`",
                problems.join("; ")
            );
        }
        Ok(())
    }

    /// Removes everything the ledger lists, whatever state it is in, other kinds through
    /// `removers` (after the processes, before the namespaces); returns what it did.
    pub fn release(&self, removers: &[Remover]) -> Vec<String> {
        let mut done = Vec::new();
        for &pid in &self.pids {
            if sys::pid_alive(pid)
                && self
                    .netns
                    .iter()
                    .any(|ns| sys::netns_pids(ns).contains(&pid))
            {
                sys::kill9(pid);
                done.push(format!("killed pid {pid}"));
            }
        }
        for ns in self.netns.iter().rev() {
            for pid in sys::netns_pids(ns) {
                sys::kill9(pid);
                done.push(format!("killed pid {pid} in {ns}"));
            }
        }
        for remove in removers {
            done.extend(remove(self));
        }
        let existing = sys::netns_list().unwrap_or_default();
        for ns in self.netns.iter().rev() {
            if existing.contains(ns) {
                match sys::ip(&["netns", "del", ns]) {
                    Ok(_) => done.push(format!("deleted namespace {ns}")),
                    Err(e) => done.push(format!("could not delete namespace {ns}: {e:#}")),
                }
            }
        }
        let links = sys::host_links().unwrap_or_default();
        for link in &self.host_links {
            if links.contains(link) {
                match sys::delete_link(link) {
                    Ok(_) => done.push(format!("deleted link {link}")),
                    Err(e) => done.push(format!("could not delete link {link}: {e:#}")),
                }
            }
        }
        self.remove();
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_id_and_parse_back() {
        let id = RunId::parse("0a1b2c").unwrap();
        assert_eq!(id.hub_netns(), "fl-0a1b2c-hub");
        assert_eq!(id.node_netns("n3"), "fl-0a1b2c-n3");
        assert_eq!(id.host_link(), "fl0a1b2ch");
        assert!(id.host_link().len() <= 15);
        assert_eq!(RunId::of_netns("fl-0a1b2c-n3"), Some(id.clone()));
        assert_eq!(RunId::of_host_link("fl0a1b2ch"), Some(id));
        assert_eq!(RunId::of_netns("flannel-x"), None);
        assert_eq!(RunId::of_netns("fl-0a1b2c"), None);
        assert_eq!(RunId::of_host_link("flannel"), None);
        assert_eq!(RunId::parse("ABCDEF"), None);
    }

    /// Other kinds are top-level keys, as the docker backend's fields were.
    #[test]
    fn other_kinds_are_top_level_keys() {
        let text = r#"{"run_id":"0a1b2c","owner_pid":1,"owner_start":null,"run_dir":"r","keep":false,"netns":[],"host_links":[],"pids":[],"containers":["c1","c2"],"docker_networks":["fl-0a1b2c"]}"#;
        let ledger: Ledger = serde_json::from_str(text).unwrap();
        assert_eq!(ledger.listed("containers"), ["c1", "c2"]);
        assert_eq!(ledger.listed("docker_networks"), ["fl-0a1b2c"]);
        assert!(ledger.listed("volumes").is_empty());
        assert_eq!(serde_json::to_string(&ledger).unwrap(), text);
    }
}
