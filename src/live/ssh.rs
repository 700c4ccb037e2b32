//! The system's OpenSSH client, for access `ssh`: one shared connection (ControlMaster)
//! per host under a run-scoped socket directory, so `~/.ssh/config`, agents and jump hosts
//! work as they do for the user, and every command after the first costs no handshake.
//!
//! Masters are opened explicitly (`-M -N -f`, stdio on /dev/null, so no pipe of ours is
//! held by the background master) with `ControlPersist` [`PERSIST_S`]: closed at teardown
//! (`-O exit`), by `faultline clean` from the ledger, and by themselves once idle should
//! faultline be SIGKILLed. Every command runs with `BatchMode=yes`: ssh never asks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::hosts::{HostEntry, HostsFile};

/// Seconds an idle master stays (so a master of a killed faultline goes by itself).
pub const PERSIST_S: u32 = 300;

/// Where a run's master sockets live: `/run/faultline/ssh-<run id>/`.
pub fn socket_dir(run_id: &str) -> PathBuf {
    crate::ledger::state_dir().join(format!("ssh-{run_id}"))
}

/// One host, as ssh reaches it.
#[derive(Debug, Clone)]
pub struct Dest {
    /// The node address it is for (`ip:port`), for messages.
    pub node: String,
    /// `ssh` and its options up to and including the destination.
    argv: Vec<String>,
    /// The master's socket.
    socket: PathBuf,
    /// Commands go through `sudo -n`.
    sudo: bool,
}

/// `'...'` for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Dest {
    /// The destination of `entry`, its master's socket in `dir`, with the file's options.
    pub fn new(hosts: &HostsFile, entry: &HostEntry, dir: &Path) -> Dest {
        let ip = entry
            .node
            .rsplit_once(':')
            .map_or(entry.node.as_str(), |(h, _)| h);
        let host = entry.host.clone().unwrap_or_else(|| ip.to_string());
        // One socket per destination, named so a person can tell them apart.
        let key = format!(
            "{}@{host}:{}",
            entry.user.as_deref().unwrap_or("-"),
            entry.port.map_or("-".to_string(), |p| p.to_string())
        );
        let socket = dir.join(key.replace('/', "_"));
        let mut argv: Vec<String> = vec!["ssh".into()];
        for o in hosts.ssh_options.iter().chain(&entry.options) {
            argv.extend(["-o".into(), o.clone()]);
        }
        argv.extend(
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=5",
                "-o",
            ]
            .map(String::from),
        );
        argv.push(format!("ControlPath={}", socket.display()));
        if let Some(p) = entry.port {
            argv.extend(["-p".into(), p.to_string()]);
        }
        if let Some(u) = &entry.user {
            argv.extend(["-l".into(), u.clone()]);
        }
        if let Some(i) = &entry.identity {
            argv.extend([
                "-i".into(),
                i.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
            ]);
        }
        argv.push(host);
        Dest {
            node: entry.node.clone(),
            argv,
            socket,
            sudo: entry.sudo,
        }
    }

    /// Opens the shared connection unless it is up (it returns once authenticated).
    ///
    /// # Errors
    /// ssh's own words when it cannot connect or authenticate.
    pub fn open(&self) -> Result<()> {
        if self.socket.exists() {
            return Ok(());
        }
        if let Some(dir) = self.socket.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let (program, rest) = self.argv.split_first().expect("ssh argv");
        let (opts, host) = rest.split_at(rest.len() - 1);
        let out = Command::new(program)
            .args(opts)
            .args([
                "-o",
                "ControlMaster=yes",
                "-o",
                &format!("ControlPersist={PERSIST_S}"),
                "-N",
                "-f",
            ])
            .args(host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("could not run `ssh` (install openssh-client)")?;
        // With -f, ssh forks once authenticated; the child holds no pipe of ours
        // only if it closed stderr, which ssh does when backgrounding.
        if !out.status.success() {
            bail!(
                "ssh to {}'s host ({}) failed: {}",
                self.node,
                host[0],
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The local command line that runs `argv` on the host (through `sudo -n` if the
    /// entry says so): ssh joins its arguments with spaces for the remote shell, so each
    /// is quoted.
    pub fn command_line(&self, argv: &[&str]) -> Vec<String> {
        let mut remote: Vec<String> = Vec::new();
        if self.sudo {
            remote.extend(["sudo".into(), "-n".into(), "--".into()]);
        }
        remote.extend(argv.iter().map(|a| quote(a)));
        let mut line = self.argv.clone();
        line.insert(line.len() - 1, "-o".into());
        line.insert(line.len() - 1, "ControlMaster=no".into());
        line.push("--".into());
        line.push(remote.join(" "));
        line
    }

    /// Runs `script` with `sh -c` on the host, feeding `stdin`; its stdout.
    ///
    /// # Errors
    /// ssh failing, or the script exiting non-zero (with its stderr).
    pub fn sh(&self, script: &str, stdin: Option<&str>) -> Result<String> {
        self.open()?;
        let line = self.command_line(&["sh", "-c", script]);
        let args: Vec<&str> = line[1..].iter().map(String::as_str).collect();
        crate::sys::run_with_stdin(&line[0], &args, stdin)
            .map_err(|e| anyhow::anyhow!("on {}'s host: {}", self.node, shorten(&format!("{e:#}"))))
    }

    /// Closes the shared connection, if up.
    pub fn close(&self) {
        close_socket(&self.socket);
    }
}

/// ssh's error for a remote command repeats the whole command line: keep its words.
fn shorten(message: &str) -> String {
    match message.rsplit_once("): ") {
        Some((_, tail)) if message.starts_with("`ssh") => tail.to_string(),
        _ => message.to_string(),
    }
}

/// Asks the master behind `socket` to exit, then removes the socket.
pub fn close_socket(socket: &Path) {
    if socket.exists() {
        let _ = Command::new("ssh")
            .args([
                "-o",
                &format!("ControlPath={}", socket.display()),
                "-O",
                "exit",
                "_",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_file(socket);
    }
}

/// Closes every master in a run's socket directory and removes it (teardown, `faultline
/// clean`); what it did.
pub fn close_dir(dir: &Path) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return done;
    };
    for e in entries.flatten() {
        close_socket(&e.path());
        done.push(format!("closed ssh master {}", e.path().display()));
    }
    let _ = std::fs::remove_dir(dir);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_the_remote_shell() {
        assert_eq!(quote("iptables"), "iptables");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        let hosts = HostsFile {
            ssh_options: vec!["StrictHostKeyChecking=no".into()],
            nodes: Vec::new(),
        };
        let entry = HostEntry {
            node: "10.0.0.1:6379".into(),
            user: Some("ops".into()),
            sudo: true,
            ..Default::default()
        };
        let d = Dest::new(&hosts, &entry, Path::new("/run/faultline/ssh-abcdef"));
        let line = d.command_line(&["sh", "-c", "echo $1", "sh", "x y"]);
        assert_eq!(line[0], "ssh");
        assert!(line.contains(&"BatchMode=yes".to_string()), "{line:?}");
        assert_eq!(line[line.len() - 2], "--");
        assert_eq!(line[line.len() - 3], "10.0.0.1");
        assert_eq!(line.last().unwrap(), "sudo -n -- sh -c 'echo $1' sh 'x y'");
    }
}
