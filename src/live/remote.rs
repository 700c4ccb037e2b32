//! What access `ssh` changes on a host, written down on the host itself before it is
//! made, with a dead-man revert armed there.
//!
//! Each host keeps one ledger per run, [`LEDGER_DIR`]`/<run id>.ledger`, one line per
//! change still in force: `<seq> <node ip:port> <kind> <args...>` ([`Change`]), and for
//! each a line `<seq> <node> deadman <pid>`. Guarding a change (one ssh command) appends
//! its line, writes its revert script to `<run id>.<seq>.revert` and starts it detached
//! (`setsid nohup sh FILE`, stdio on /dev/null): it sleeps for the fault's hold plus
//! [`MARGIN`], and if the change's line is still there, undoes the change and removes the
//! line. It survives faultline being SIGKILLed and the SSH connection dropping. A normal
//! heal releases the change: kills the sleeper's process group, undoes what is left of
//! the change when no other fault of the run still holds it (an emptied chain and its
//! jump rule), removes the lines and the script. `faultline clean --live HOSTS` reads the
//! ledgers and reverts whatever a killed run left.
//!
//! Reverts are precise: a chain of the run's is unhooked rule by rule (`iptables -D
//! <hook> -j <chain>` while one exists), flushed and deleted, never a global flush; a
//! qdisc is removed only where it is faultline's (`prio 1:` root); a stopped pid gets
//! SIGCONT; a killed server gets its start command.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Result};

use super::ssh::quote;

/// Where hosts keep the ledgers of runs that changed them.
pub const LEDGER_DIR: &str = "/var/lib/faultline/live";

/// Added to a fault's hold before its dead-man reverts it: the normal heal comes first
/// even on a loaded machine.
pub const MARGIN: Duration = Duration::from_secs(10);

/// One change on a host, as its ledger line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An iptables chain of the run's, hooked from `hook`.
    Chain { chain: String, hook: String },
    /// faultline's root prio qdisc (netem).
    Qdisc,
    /// A server SIGSTOPped.
    Stopped { pid: u32 },
    /// A server stopped by a kill fault; reverting runs the host's start command.
    Killed,
}

impl Change {
    /// The ledger line's tail: `<kind> <args...>`.
    pub fn line(&self) -> String {
        match self {
            Change::Chain { chain, hook } => format!("chain {chain} {hook}"),
            Change::Qdisc => "qdisc".into(),
            Change::Stopped { pid } => format!("stopped {pid}"),
            Change::Killed => "killed".into(),
        }
    }

    /// Parses a ledger line's tail.
    pub fn parse(words: &[&str]) -> Option<Change> {
        match words {
            ["chain", chain, hook] if is_chain(chain) && matches!(*hook, "INPUT" | "OUTPUT") => {
                Some(Change::Chain {
                    chain: chain.to_string(),
                    hook: hook.to_string(),
                })
            }
            ["qdisc"] => Some(Change::Qdisc),
            ["stopped", pid] => pid.parse().ok().map(|pid| Change::Stopped { pid }),
            ["killed"] => Some(Change::Killed),
            _ => None,
        }
    }

    /// The shell that undoes it (idempotent: it may run twice). `start` is the host's
    /// start command, for [`Change::Killed`].
    pub fn revert(&self, start: Option<&str>) -> String {
        match self {
            Change::Chain { chain, hook } => format!(
                "while iptables -w -D {hook} -j {chain} 2>/dev/null; do :; done\n\
                 iptables -w -F {chain} 2>/dev/null; iptables -w -X {chain} 2>/dev/null; true\n"
            ),
            Change::Qdisc => "for dev in $(ls /sys/class/net); do\n\
                 tc qdisc show dev \"$dev\" 2>/dev/null | grep -q '^qdisc prio 1: root' || continue\n\
                 tc qdisc del dev \"$dev\" root\n\
                 done; true\n"
                .into(),
            Change::Stopped { pid } => format!("kill -CONT {pid} 2>/dev/null; true\n"),
            Change::Killed => match start {
                // Whatever it starts must not inherit the ledger lock (fd 9).
                Some(cmd) => format!("( {cmd} ) 9<&- </dev/null >/dev/null 2>&1; true\n"),
                None => "true\n".into(),
            },
        }
    }
}

/// `FL-<6 hex>` with an optional lane suffix: the only chains a revert may touch.
fn is_chain(name: &str) -> bool {
    name.strip_prefix("FL-").is_some_and(|rest| {
        rest.len() >= 6
            && rest[..6].bytes().all(|b| b.is_ascii_hexdigit())
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Serializes the scripts that rewrite a host's ledgers (guards, releases and dead-men
/// of one run on nodes sharing a host): a lock on the directory itself, so no lock file
/// is left behind.
const LOCK: &str = "exec 9</var/lib/faultline/live; flock 9\n";

/// The host's ledger file of a run.
pub fn ledger_path(run_id: &str) -> String {
    format!("{LEDGER_DIR}/{run_id}.ledger")
}

fn revert_path(run_id: &str, seq: u64) -> String {
    format!("{LEDGER_DIR}/{run_id}.{seq}.revert")
}

/// The script that writes `change` down on the host and arms its dead-man; prints the
/// dead-man's pid.
pub fn guard_script(
    run_id: &str,
    seq: u64,
    node: &str,
    change: &Change,
    bound: Duration,
    start: Option<&str>,
) -> String {
    let ledger = ledger_path(run_id);
    let file = revert_path(run_id, seq);
    let mut revert = String::new();
    let _ = write!(
        revert,
        "sleep {secs}\n{LOCK}grep -q '^{seq} ' {ledger} || exit 0\n{undo}sed -i '/^{seq} /d' {ledger}\n[ -s {ledger} ] || rm -f {ledger}\nrm -f {file}\n",
        secs = bound.as_secs().max(1),
        undo = change.revert(start),
    );
    format!(
        "set -e\numask 077\nmkdir -p {LEDGER_DIR}\n{LOCK}\
         echo {line} >> {ledger}\n\
         cat > {file} <<'FL_REVERT'\n{revert}FL_REVERT\n\
         setsid nohup sh {file} 9<&- </dev/null >/dev/null 2>&1 &\n\
         echo {deadman} $! >> {ledger}\necho $!\n",
        line = quote(&format!("{seq} {node} {}", change.line())),
        deadman = quote(&format!("{seq} {node} deadman")),
    )
}

/// The script that disarms `seq`'s dead-man and removes its lines, after `undo` (what is
/// left of the change, or nothing); the ledger file goes once it is empty.
pub fn release_script(run_id: &str, seq: u64, undo: &str) -> String {
    let ledger = ledger_path(run_id);
    let file = revert_path(run_id, seq);
    format!(
        "[ -f {ledger} ] || exit 0\n{LOCK}\
         pid=$(awk '$1 == \"{seq}\" && $3 == \"deadman\" {{print $4}}' {ledger})\n\
         [ -n \"$pid\" ] && kill -KILL -\"$pid\" 2>/dev/null\n\
         {undo}sed -i '/^{seq} /d' {ledger}\nrm -f {file}\n\
         [ -s {ledger} ] || rm -f {ledger}\n"
    )
}

/// One run's lines in a host's ledger, read back by `faultline clean --live`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The change's number in its run.
    pub seq: u64,
    /// The node it is for.
    pub node: String,
    /// What it is.
    pub change: Change,
}

/// A dead-man as a host's ledger names it: its change's seq, node and process group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadMan {
    /// Its change's number.
    pub seq: u64,
    /// The node of that change (its host runs the dead-man).
    pub node: String,
    /// Its pid, which is its process group.
    pub pid: u32,
}

/// Parses a host's ledger text: the changes and their dead-men.
///
/// # Errors
/// A line that is no ledger line (nothing is reverted from a file not understood).
pub fn parse_ledger(text: &str) -> Result<(Vec<Entry>, Vec<DeadMan>)> {
    let mut entries = Vec::new();
    let mut deadmen = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(seq), Some(node)) = (words.first().and_then(|s| s.parse().ok()), words.get(1))
        else {
            bail!("not a ledger line: {line:?}");
        };
        match &words[2..] {
            ["deadman", pid] => match pid.parse() {
                Ok(pid) => deadmen.push(DeadMan {
                    seq,
                    node: node.to_string(),
                    pid,
                }),
                Err(_) => bail!("not a ledger line: {line:?}"),
            },
            rest => match Change::parse(rest) {
                Some(change) => entries.push(Entry {
                    seq,
                    node: node.to_string(),
                    change,
                }),
                None => bail!("not a ledger line: {line:?}"),
            },
        }
    }
    Ok((entries, deadmen))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_lines_round_trip_and_strangers_are_refused() {
        let changes = [
            Change::Chain {
                chain: "FL-abc123-p1".into(),
                hook: "INPUT".into(),
            },
            Change::Qdisc,
            Change::Stopped { pid: 42 },
            Change::Killed,
        ];
        let mut text = String::new();
        for (i, c) in changes.iter().enumerate() {
            text.push_str(&format!(
                "{i} 10.0.0.1:6379 {}\n{i} 10.0.0.1:6379 deadman 9{i}\n",
                c.line()
            ));
        }
        let (entries, deadmen) = parse_ledger(&text).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.change.clone()).collect::<Vec<_>>(),
            changes
        );
        assert_eq!(
            deadmen.iter().map(|d| d.pid).collect::<Vec<_>>(),
            vec![90, 91, 92, 93]
        );
        assert!(parse_ledger("1 x chain DOCKER INPUT\n").is_err());
        assert!(parse_ledger("1 x chain FL-abc123 FORWARD\n").is_err());
    }

    #[test]
    fn a_chain_revert_unhooks_flushes_and_deletes_only_that_chain() {
        let c = Change::Chain {
            chain: "FL-abc123".into(),
            hook: "INPUT".into(),
        };
        let r = c.revert(None);
        assert!(r.contains("iptables -w -D INPUT -j FL-abc123"), "{r}");
        assert!(r.contains("iptables -w -X FL-abc123"), "{r}");
        assert!(!r.contains("-F\n") && !r.contains("-F;"), "{r}");
        let g = guard_script(
            "abc123",
            3,
            "10.0.0.1:6379",
            &c,
            Duration::from_secs(14),
            None,
        );
        assert!(g.contains("sleep 14"), "{g}");
        assert!(LOCK.contains(LEDGER_DIR));
        assert!(
            g.contains("setsid nohup sh /var/lib/faultline/live/abc123.3.revert"),
            "{g}"
        );
    }
}
