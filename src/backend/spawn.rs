//! Starting a server process on this machine: the one spawner the local backend and
//! `faultline bench`'s by-hand cluster share.
//!
//! The child gets its own process group (a Ctrl-C at the terminal reaches faultline, which
//! then tears down in order, not the servers directly), its stdout and stderr in a console
//! log, and between fork and exec: the node's network namespace, the root filesystem it
//! runs from (see [`super::chroot`]), and death with its parent unless the cluster is kept.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use super::chroot::Chroot;

/// How to start one server process.
pub struct Spawn<'a> {
    /// The binary (a path inside the root filesystem when there is one).
    pub binary: &'a Path,
    /// Its arguments.
    pub args: &'a [String],
    /// Its working directory.
    pub cwd: &'a Path,
    /// Where its stdout and stderr go (created, or truncated).
    pub console: PathBuf,
    /// The network namespace it runs in (`/run/netns/<name>`); `None`: this one.
    pub netns: Option<&'a Path>,
    /// The root filesystem it runs from; `None`: the host's.
    pub chroot: Option<Chroot>,
    /// Whether it dies when faultline does (not with `--keep`).
    pub die_with_parent: bool,
}

impl Spawn<'_> {
    /// Starts the process.
    ///
    /// If it is to die with its parent, that is tied to the *thread* that forks it, so
    /// servers are only ever started from the runtime's long-lived threads, never from
    /// `spawn_blocking`.
    ///
    /// # Errors
    /// If the namespace or console cannot be opened, or the process cannot start.
    pub fn start(self) -> Result<Child> {
        let ns = match self.netns {
            Some(path) => Some(
                File::open(path).with_context(|| format!("opening namespace {}", ns_name(path)))?,
            ),
            None => None,
        };
        let console = File::create(&self.console)
            .with_context(|| format!("creating {}", self.console.display()))?;
        let mut cmd = Command::new(self.binary);
        cmd.args(self.args)
            .current_dir(self.cwd)
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .process_group(0);
        let (chroot, die_with_parent) = (self.chroot, self.die_with_parent);
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(ns) = &ns {
                    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                }
                if let Some(c) = &chroot {
                    c.enter()?;
                }
                if die_with_parent {
                    // If faultline dies (even by SIGKILL) its servers die with it.
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                }
                Ok(())
            });
        }
        Ok(cmd.spawn()?)
    }
}

/// `fl-abc123-n1` for `/run/netns/fl-abc123-n1`, as errors name namespaces.
fn ns_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
