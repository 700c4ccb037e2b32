//! Thin wrappers over the system tools faultline drives (`ip`), with errors that say which
//! command failed and what it printed, and the few facts about this machine the harness
//! reads (PATH, processes, the end of a log file).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Runs a command to completion; an exit other than 0 is an error carrying its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    run_with_stdin(program, args, None)
}

/// Like [`run`], feeding `stdin` to the command.
pub fn run_with_stdin(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("could not run `{program}` (is it installed? try `faultline doctor`)")
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .with_context(|| format!("writing to `{program}`"))?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// Deletes a host link. A link that is already gone counts as deleted: deleting a namespace
/// destroys its veth peers asynchronously, so a host end listed a moment ago may vanish
/// before `ip link del` reaches it.
pub fn delete_link(name: &str) -> Result<()> {
    match ip(&["link", "del", name]) {
        Ok(_) => Ok(()),
        Err(e) if format!("{e:#}").contains("Cannot find device") => Ok(()),
        Err(e) => Err(e),
    }
}

/// `ip -n NETNS -batch -` fed with `lines`: several changes inside one namespace in one exec.
pub fn ip_batch(netns: &str, lines: &[String]) -> Result<()> {
    run_with_stdin("ip", &["-n", netns, "-batch", "-"], Some(&lines.join("\n")))?;
    Ok(())
}

/// Names of the network namespaces on this machine.
pub fn netns_list() -> Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Pids of the processes inside a network namespace.
pub fn netns_pids(netns: &str) -> Vec<i32> {
    ip(&["netns", "pids", netns])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Names of the network links in the host namespace.
pub fn host_links() -> Result<Vec<String>> {
    Ok(ip(&["-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect())
}

/// Whether a process exists and has not exited (a zombie waiting to be reaped has).
pub fn pid_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    !matches!(proc_state(pid), Some('Z') | Some('X'))
}

/// `PF_EXITING` in a task's flags (field 9 of /proc/PID/stat): the task has begun its exit.
const PF_EXITING: u64 = 0x4;

/// Whether the kernel shows `pid` dying or gone: its main thread has begun its exit (it
/// runs none of its own code again), is a zombie, or is reaped. What remains of a dying
/// process is the kernel freeing its memory and closing its files.
pub fn exiting(pid: i32) -> bool {
    let Some(fields) = stat_fields(pid) else {
        return true;
    };
    if matches!(fields.first().map(String::as_str), Some("Z" | "X" | "x")) {
        return true;
    }
    // The flags are field 9, the sixth after the state.
    fields
        .get(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_EXITING != 0)
}

/// Kills a node's server: raises it (its exit runs in its own context), sends SIGKILL,
/// and waits (up to a second) until the kernel shows it exiting ([`exiting`]), the moment
/// it answers nothing more, which becomes the fault's effect
/// ([`faultline_nemeses::instant::in_effect_now`]). The kernel then frees its memory
/// (tens of ms for a large data set) and closes its files; the caller waits for that,
/// the reap, before the node may start again.
///
/// # Errors
/// The signal cannot be sent (naming the node).
pub fn kill_server(pid: i32, node: &str) -> Result<()> {
    raise_priority(pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .with_context(|| format!("killing {node}"))?;
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        if exiting(pid) {
            faultline_nemeses::instant::in_effect_now();
            return Ok(());
        }
        if std::time::Instant::now() >= give_up {
            // Not seen exiting within the second: the caller's reap is the effect.
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}

/// The state letter of a process (field 3 of /proc/PID/stat).
fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// The fields of /proc/PID/stat from field 3 (the state) on: the command name (field 2)
/// may hold spaces and parentheses, so they resume after its last ')'. `None` when the
/// process is gone.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat[stat.rfind(')')? + 1..]
            .split_ascii_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

/// SIGKILL, ignoring a process that is already gone.
pub fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Sends SIGSTOP (`pause`) or SIGCONT (`!pause`) to a node's server process.
///
/// # Errors
/// If the signal cannot be sent (naming the node).
pub fn stop_or_continue(pid: i32, pause: bool, node: &str) -> Result<()> {
    let signal = if pause {
        nix::sys::signal::Signal::SIGSTOP
    } else {
        nix::sys::signal::Signal::SIGCONT
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .with_context(|| format!("sending {signal} to {node}"))?;
    if pause {
        // A pause is in effect when the kernel shows the process stopped, not when the
        // signal is queued: a fault's recorded effect waits for that.
        wait_stopped(pid, Duration::from_secs(1))
            .with_context(|| format!("waiting for {node} (pid {pid}) to stop"))?;
    }
    Ok(())
}

/// Waits until `/proc/PID/stat` shows the process stopped (`T`), polling every 100 µs.
///
/// # Errors
/// If it is not stopped within `timeout`, or is gone.
pub fn wait_stopped(pid: i32, timeout: Duration) -> Result<()> {
    wait_state(pid, timeout, |s| matches!(s, Some('T' | 't')))
}

/// Waits until the process is dead (a zombie, or gone), polling every 100 µs.
///
/// # Errors
/// If it still runs after `timeout`.
pub fn wait_dead(pid: i32, timeout: Duration) -> Result<()> {
    wait_state(pid, timeout, |s| matches!(s, None | Some('Z' | 'X')))
}

fn wait_state(pid: i32, timeout: Duration, done: impl Fn(Option<char>) -> bool) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let state = proc_state(pid);
        if done(state) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            bail!("process {pid} still in state {state:?} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Raises a process's scheduling priority to nice -10 where allowed (root), ignoring a
/// refusal: a server about to be killed exits (unmapping its memory) in its own context,
/// and on a loaded machine that should not wait for a time slice.
pub fn raise_priority(pid: i32) {
    // SAFETY: a plain system call on another process; a refusal changes nothing.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, -10);
    }
}

/// The start time of a process (field 22 of /proc/PID/stat), so a recycled pid is not
/// mistaken for the one we recorded.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Finds a program on PATH.
pub fn which(name: &Path) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// The last `lines` lines of a file (each ending in a newline); empty if it cannot be
/// read. For error messages that quote a server's log.
pub fn tail(path: &Path, lines: usize) -> String {
    last_lines(&std::fs::read_to_string(path).unwrap_or_default(), lines)
}

/// The last `n` lines of `text`, each ending in a newline.
pub fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(n)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc\n");
        assert_eq!(last_lines("", 2), "");
    }

    #[test]
    fn a_killed_process_shows_exiting_before_and_after_its_reap() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        assert!(!exiting(pid), "a sleeping process is not exiting");
        kill9(pid);
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !exiting(pid) {
            assert!(std::time::Instant::now() < give_up, "never seen exiting");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        child.wait().unwrap();
        assert!(exiting(pid), "a reaped process is gone");
    }
}
