//! `faultline doctor`: is this machine ready, and if not, what to do about it.
//!
//! Each check really exercises the thing (a namespace is created and removed, netem is
//! tried on a throw-away namespace's loopback), because "installed" and "works here" differ
//! on CI and microVM kernels.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::exit::{self, Failure};
use crate::ledger::RunId;
use crate::{flavor, sys};

enum Level {
    Ok,
    Warn,
    Missing,
}

struct Check {
    level: Level,
    what: &'static str,
    detail: String,
    fix: String,
}

/// `faultline doctor`. Exits 0 when everything a run needs is present, 255 otherwise.
///
/// # Errors
/// Never; problems are reported as lines.
pub fn command() -> Result<u8, Failure> {
    let mut checks = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    checks.push(Check {
        // Without root only `--backend loopback` runs: a warning, not a missing piece.
        level: if root { Level::Ok } else { Level::Warn },
        what: "root",
        detail: if root {
            "running as root".into()
        } else {
            "not root: only --backend loopback runs".into()
        },
        fix: "run faultline as root (sudo) for the local and docker backends: they create network namespaces".into(),
    });
    checks.push(Check {
        level: Level::Ok,
        what: "loopback",
        detail: "--backend loopback needs no root: nodes on 127.0.0.1 at ports of the run's own, \
                 the cluster bus through the bus proxy; partitions (bus only), bus faults, kill, \
                 pause, failover and slot migration work; delay, loss and client-port \
                 partitions need backend local"
            .into(),
        fix: String::new(),
    });
    checks.push(tool_check(
        "iproute2",
        "ip",
        &["-V"],
        "apt-get install iproute2",
        true,
    ));
    if root {
        checks.push(netns_check());
    }
    checks.push(tool_check(
        "iptables",
        "iptables",
        &["--version"],
        "apt-get install iptables (partition faults use it)",
        false,
    ));
    for f in flavor::all() {
        let check = match f
            .bundled_binary()
            .or_else(|| sys::which(f.default_binary().as_ref()))
        {
            Some(path) => match f.version(&path) {
                Ok(v) => Check {
                    level: Level::Ok,
                    what: f.name(),
                    detail: format!("{} {v}", path.display()),
                    fix: String::new(),
                },
                Err(e) => Check {
                    level: Level::Warn,
                    what: f.name(),
                    detail: format!("{e:#}"),
                    fix: f.install_hint().into(),
                },
            },
            None => Check {
                level: Level::Warn,
                what: f.name(),
                detail: format!(
                    "{} not on PATH; scenarios with flavor {} cannot run",
                    f.default_binary(),
                    f.name()
                ),
                fix: f.install_hint().into(),
            },
        };
        checks.push(check);
    }
    checks.push(Check {
        level: Level::Ok,
        what: "default server",
        detail: flavor::faultline::default_server_note(|b| sys::which(b.as_ref()).is_some()),
        fix: String::new(),
    });
    checks.push(tool_check(
        "redis-benchmark",
        "redis-benchmark",
        &["--version"],
        "apt-get install redis-tools (used by `faultline bench`)",
        false,
    ));
    checks.push(docker_check());
    checks.push(tool_check(
        "debootstrap",
        "debootstrap",
        &["--version"],
        "apt-get install debootstrap (docker/build-rootfs builds server versions with it)",
        false,
    ));
    checks.push(tool_check(
        "nsenter",
        "nsenter",
        &["--version"],
        "apt-get install util-linux (the docker backend's faults enter containers with it)",
        false,
    ));
    checks.push(Check {
        level: Level::Ok,
        what: "root filesystems",
        detail: crate::rootfs::RootFs::describe_cache(),
        fix: String::new(),
    });
    if root {
        checks.push(netem_check());
        checks.push(latency_check());
    }

    let mut ready = true;
    for c in &checks {
        let tag = match c.level {
            Level::Ok => "ok     ",
            Level::Warn => "warn   ",
            Level::Missing => {
                ready = false;
                "MISSING"
            }
        };
        println!("{tag} {:<16} {}", c.what, c.detail);
        if !matches!(c.level, Level::Ok) && !c.fix.is_empty() {
            println!("        {:<16} fix: {}", "", c.fix);
        }
    }
    let any_flavor = checks
        .iter()
        .any(|c| matches!(c.level, Level::Ok) && (c.what == "redis" || c.what == "valkey"));
    if !any_flavor {
        println!("MISSING server           neither redis-server nor valkey-server works; run scripts/install-deps");
        ready = false;
    }
    println!(
        "{}",
        if ready {
            "ready: `faultline run` can run here"
        } else {
            "not ready: fix the MISSING lines above"
        }
    );
    Ok(if ready {
        exit::VALID
    } else {
        exit::HARNESS_ERROR
    })
}

fn tool_check(
    what: &'static str,
    program: &str,
    args: &[&str],
    fix: &str,
    required: bool,
) -> Check {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => {
            let text = String::from_utf8_lossy(if out.stdout.is_empty() {
                &out.stderr
            } else {
                &out.stdout
            })
            .trim()
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
            Check {
                level: Level::Ok,
                what,
                detail: text,
                fix: String::new(),
            }
        }
        Err(e) => Check {
            level: if required {
                Level::Missing
            } else {
                Level::Warn
            },
            what,
            detail: format!("`{program}` cannot run: {e}"),
            fix: fix.into(),
        },
    }
}

/// Creates and deletes a namespace named like a run's, so `faultline clean` would catch it
/// if we died in between.
fn with_scratch_netns<T>(f: impl FnOnce(&str) -> T) -> Result<T, String> {
    let ns = RunId::random().node_netns("doctor");
    sys::ip(&["netns", "add", &ns]).map_err(|e| format!("{e:#}"))?;
    let result = f(&ns);
    let _ = sys::ip(&["netns", "del", &ns]);
    Ok(result)
}

fn netns_check() -> Check {
    match with_scratch_netns(|_| ()) {
        Ok(()) => Check { level: Level::Ok, what: "namespaces", detail: "can create and delete network namespaces".into(), fix: String::new() },
        Err(e) => Check {
            level: Level::Missing,
            what: "namespaces",
            detail: e,
            fix: "the local backend needs network namespaces (a kernel with CONFIG_NET_NS, and CAP_SYS_ADMIN)".into(),
        },
    }
}

fn netem_check() -> Check {
    // What a `delay` or `loss` fault does with `mechanism: auto`: a prio root with its own
    // band, netem on that band.
    let result = with_scratch_netns(|ns| {
        let tc = |args: &[&str]| {
            let mut full = vec!["netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo"];
            full.extend_from_slice(args);
            sys::run("ip", &full)
        };
        sys::ip(&["-n", ns, "link", "set", "lo", "up"])
            .and_then(|_| tc(&["root", "handle", "1:", "prio", "bands", "5"]))
            .and_then(|_| tc(&["parent", "1:4", "handle", "40:", "netem", "delay", "1ms"]))
    });
    let problem = match result {
        Ok(Ok(_)) => {
            return Check {
                level: Level::Ok,
                what: "tc netem",
                detail: "works (prio + netem): delay and loss faults use netem".into(),
                fix: String::new(),
            }
        }
        Ok(Err(e)) => last_line(&format!("{e:#}")),
        Err(e) => last_line(&e),
    };
    Check {
        level: Level::Warn,
        what: "tc netem",
        detail: format!(
            "not available here ({problem}); delay and loss faults with `mechanism: auto` use the NFQUEUE delayer and iptables statistic"
        ),
        fix: "nothing to do on this kernel; `modprobe sch_prio sch_netem` where the modules exist".into(),
    }
}

/// Which latency mechanism `delay` faults use here, with NFQUEUE really exercised: a
/// queue bound from a thread inside a scratch namespace receives a queued datagram.
fn latency_check() -> Check {
    let result = with_scratch_netns(faultline_nemeses::delay::delayer::self_test);
    match result {
        Ok(Ok(())) => Check {
            level: Level::Ok,
            what: "latency",
            detail: "NFQUEUE delayer (a queue bound in a scratch namespace received and released a packet)".into(),
            fix: String::new(),
        },
        Ok(Err(e)) | Err(e) => Check {
            level: Level::Warn,
            what: "latency",
            detail: format!("none: NFQUEUE does not work here ({}); delay faults will fail", last_line(&e)),
            fix: "load nfnetlink_queue and xt_NFQUEUE (modprobe), and run as root".into(),
        },
    }
}

/// The last line of an error, kept short; when it quotes a failed command, the command's
/// own words (after its last `: `) are what a person needs.
fn last_line(text: &str) -> String {
    let line = text.lines().last().unwrap_or("");
    let line = match line.rsplit_once("): ") {
        Some((_, said)) if !said.trim().is_empty() => said,
        _ => line,
    };
    line.chars().take(160).collect()
}

fn docker_check() -> Check {
    let mut child = match Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => {
            return Check {
                level: Level::Warn,
                what: "docker",
                detail: "docker not installed (only the docker backend needs it)".into(),
                fix: "install Docker Engine".into(),
            }
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut s) = child.stdout.take() {
                    use std::io::Read;
                    let _ = s.read_to_string(&mut out);
                }
                return if status.success() {
                    Check {
                        level: Level::Ok,
                        what: "docker",
                        detail: format!("engine {}", out.trim()),
                        fix: String::new(),
                    }
                } else {
                    Check {
                        level: Level::Warn,
                        what: "docker",
                        detail: "the docker engine does not answer".into(),
                        fix: "start the docker daemon".into(),
                    }
                };
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Check {
                    level: Level::Warn,
                    what: "docker",
                    detail: "the docker engine did not answer within 5 s".into(),
                    fix: "start the docker daemon".into(),
                };
            }
        }
    }
}
