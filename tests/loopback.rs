//! `--backend loopback` without root, for real: faultline run as the unprivileged user
//! `nobody` (setpriv) starts a 3x1 cluster of faultline's own node on 127.0.0.1, cuts
//! partitions in the bus proxy, kills, pauses and fails over nodes, checks, and leaves no
//! process or ledger behind; faults that need a namespace of each node's own are refused
//! with the scenario's file and line.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cluster_lock, code, require_root, results, text};
use faultline_history::{OpType, Process};

/// The user the runs drop to.
const NOBODY: u32 = 65534;

/// A directory `nobody` owns, holding copies of the binaries under test and of the
/// shipped scenarios (the checkout and target directory may be private to root).
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let bin = Path::new(env!("CARGO_BIN_EXE_faultline"));
        for name in ["faultline", "faultline-node"] {
            std::fs::copy(bin.with_file_name(name), dir.path().join(name)).unwrap();
        }
        let scenarios = dir.path().join("scenarios");
        std::fs::create_dir(&scenarios).unwrap();
        for name in ["mixed.yaml", "latency.yaml"] {
            std::fs::copy(common::scenario(name), scenarios.join(name)).unwrap();
        }
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        for p in [dir.path(), &scenarios, &store] {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `faultline run scenarios/NAME --flavor faultline --backend loopback EXTRA...` as
    /// nobody.
    fn run_on_loopback(&self, name: &str, extra: &[&str]) -> std::process::Output {
        let scenario = self.path("scenarios").join(name);
        let mut args = vec!["run", scenario.to_str().unwrap()];
        args.extend(["--flavor", "faultline", "--backend", "loopback"]);
        args.extend_from_slice(extra);
        self.faultline_as_nobody(&args)
    }

    /// `faultline ARGS` as nobody, with an environment of nobody's own.
    fn faultline_as_nobody(&self, args: &[&str]) -> std::process::Output {
        Command::new("setpriv")
            .args([
                "--reuid",
                &NOBODY.to_string(),
                "--regid",
                &NOBODY.to_string(),
            ])
            .args(["--clear-groups", "--"])
            .arg(self.path("faultline"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .output()
            .expect("setpriv (util-linux) runs")
    }
}

#[test]
fn an_unprivileged_loopback_run_cuts_partitions_in_the_bus_proxy_and_leaves_nothing() {
    require_root(); // to drop to nobody
    let _one_at_a_time = cluster_lock();
    let sandbox = Sandbox::new();
    let store = sandbox.path("store");
    let out = sandbox.run_on_loopback(
        "mixed.yaml",
        // Seed 1's schedule holds a partition, a kill, a pause and a failover in 20 s.
        &[
            "--time-limit",
            "20",
            "--seed",
            "1",
            "--store",
            store.to_str().unwrap(),
        ],
    );
    let all = text(&out);
    assert!(
        code(&out) == 0 || code(&out) == 1,
        "the run must finish with a verdict:\n{all}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bus proxy"), "{all}");
    let dir = common::run_dir(&String::from_utf8_lossy(&out.stdout));
    let id = common::run_id(&stderr);
    let r = results(&dir);
    assert_eq!(r["run"]["backend"], "loopback", "{r}");
    // Topology and failover checkers judge what the cluster did, whatever the data.
    for checker in [
        "slot-coverage",
        "replication-loop",
        "split-brain",
        "failover",
    ] {
        assert_eq!(r["checkers"][checker]["valid"], true, "{checker}: {r:#}");
    }
    let ops = common::history(&dir);
    let done = |f: &str| {
        ops.iter()
            .filter(|o| o.process == Process::Nemesis && o.f == f && o.kind == OpType::Ok)
            .collect::<Vec<_>>()
    };
    let partitions = done("partition");
    assert!(!partitions.is_empty(), "no partition applied:\n{all}");
    for p in &partitions {
        assert_eq!(p.value["mechanism"], "bus-proxy", "{p:?}");
        assert_eq!(p.value["cut"], "bus", "{p:?}");
    }
    for f in ["kill", "restart", "pause", "resume", "failover"] {
        assert!(!done(f).is_empty(), "no {f} applied:\n{all}");
    }
    // The final sweeps know there is nothing to flush with iptables or tc here.
    for o in ops.iter().filter(|o| {
        o.process == Process::Nemesis && o.f.starts_with("heal") && o.kind != OpType::Invoke
    }) {
        assert_eq!(o.kind, OpType::Ok, "{o:?}");
    }
    // Everything the run made is gone: its servers, and its ledger in nobody's own
    // state directory.
    assert!(
        !Path::new(&format!("/tmp/faultline-{NOBODY}/{id}.json")).exists(),
        "ledger of run {id} left behind"
    );
    common::assert_nothing_left(&id, &dir);
    let config = std::fs::read_to_string(dir.join("data/n1/server.conf")).unwrap();
    assert!(config.contains("bind 127.0.0.1"), "{config}");
}

#[test]
fn loopback_refuses_faults_that_need_a_namespace_of_the_nodes_own() {
    require_root(); // to drop to nobody
    let sandbox = Sandbox::new();
    let out = sandbox.run_on_loopback("latency.yaml", &[]);
    let all = text(&out);
    assert_eq!(code(&out), 254, "{all}");
    assert!(all.contains("delay acts with tc/iptables"), "{all}");
    assert!(all.contains("bus-delay"), "{all}");
}
