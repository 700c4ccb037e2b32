//! The docker backend and the version matrix, against the real Docker engine with images
//! built offline by docker/build-rootfs (cached under /var/cache/faultline/rootfs/; the
//! first run on a machine builds them).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_nothing_left, cluster_lock, code, faultline, require_root, results, text};

/// Asserts that no container or Docker network labelled with run `id` is left.
fn assert_no_docker_left(id: &str) {
    for args in [
        &["ps", "-a", "--format", "{{.Names}}"][..],
        &["network", "ls", "--format", "{{.Name}}"][..],
    ] {
        let out = Command::new("docker").args(args).output().unwrap();
        let names = String::from_utf8_lossy(&out.stdout);
        assert!(
            !names.lines().any(|n| n.starts_with(&format!("fl-{id}"))),
            "docker {} of run {id} left behind:\n{names}",
            args[0]
        );
    }
}

fn run_ids(stderr: &str) -> Vec<String> {
    stderr
        .match_indices("faultline: run ")
        .map(|(at, m)| stderr[at + m.len()..at + m.len() + 6].to_string())
        .collect()
}

#[test]
fn docker_backend_runs_the_default_scenario_and_leaves_nothing() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let out = faultline()
        .args(["run", "--backend", "docker", "--time-limit", "5", "--store"])
        .arg(store.path())
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(code(&out), 0, "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dir = common::run_dir(&stdout);
    let id = common::run_id(&stderr);
    assert!(stderr.contains("on docker"), "{all}");
    let r = results(&dir);
    assert_eq!(r["valid"], true, "{r}");
    assert_eq!(r["run"]["backend"], "docker", "{r}");
    assert!(
        r["run"]["image"]
            .as_str()
            .unwrap()
            .starts_with("faultline/redis:"),
        "{r}"
    );
    // Logs land where the local backend puts them.
    let log = std::fs::read_to_string(dir.join("logs/n1/server.log")).unwrap();
    assert!(log.contains("Ready to accept connections"), "{log}");
    assert!(dir.join("logs/n1/nodes.conf").exists());
    assert_nothing_left(&id, &dir);
    assert_no_docker_left(&id);
}

#[test]
fn matrix_over_three_versions_tabulates_verdicts_and_leaves_nothing() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let out = faultline()
        .args([
            "matrix",
            &common::scenario("smoke.yaml"),
            "--targets",
            "redis:7.0.15,valkey:8.0.1,valkey:8.1.1",
            "--backend",
            "docker",
            "--time-limit",
            "3",
            "--store",
        ])
        .arg(store.path())
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(code(&out), 0, "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("checker "))
        .collect();
    assert!(
        table[0].contains("redis:7.0.15") && table[0].contains("valkey:8.1.1"),
        "{all}"
    );
    let row = |name: &str| {
        table
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{all}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("overall"), ["valid", "valid", "valid"], "{all}");
    assert_eq!(row("lost-writes"), ["valid", "valid", "valid"], "{all}");
    assert_eq!(row("version"), ["7.0.15", "8.0.1", "8.1.1"], "{all}");

    let dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("matrix: "))
        .map(|d| Path::new(d.trim()).to_path_buf())
        .expect("matrix directory line");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("matrix.json")).unwrap()).unwrap();
    assert_eq!(doc["targets"].as_array().unwrap().len(), 3, "{doc}");
    assert!(dir.join("matrix.txt").exists());
    assert!(
        dir.join("valkey-8.1.1/results.json").exists(),
        "each target's run directory is linked"
    );
    let ids = run_ids(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(ids.len(), 3, "{all}");
    for (id, t) in ids.iter().zip(doc["targets"].as_array().unwrap()) {
        assert_nothing_left(id, Path::new(t["run_dir"].as_str().unwrap()));
        assert_no_docker_left(id);
    }
}

#[test]
fn local_backend_chroots_into_a_root_filesystem_for_a_version_the_host_lacks() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let out = faultline()
        .args([
            "matrix",
            &common::scenario("smoke.yaml"),
            "--targets",
            "valkey:8.1.1",
            "--backend",
            "local",
            "--time-limit",
            "3",
            "--store",
        ])
        .arg(store.path())
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(code(&out), 0, "{all}");
    let dir = common::run_dir(&String::from_utf8_lossy(&out.stdout));
    let r = results(&dir);
    assert_eq!(r["run"]["server_version"], "8.1.1", "{r}");
    assert_eq!(r["run"]["backend"], "local", "{r}");
    assert!(
        r["run"]["rootfs"]
            .as_str()
            .unwrap()
            .ends_with("valkey-8.1.1"),
        "{r}"
    );
    let log = std::fs::read_to_string(dir.join("logs/n1/server.log")).unwrap();
    assert!(log.contains("version=8.1.1"), "{log}");
    let id = common::run_id(&String::from_utf8_lossy(&out.stderr));
    assert_nothing_left(&id, &dir);
}

#[test]
fn a_sigkilled_docker_run_leaves_containers_that_clean_removes() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let mut child = faultline()
        .args([
            "run",
            "--backend",
            "docker",
            "--time-limit",
            "120",
            "--store",
        ])
        .arg(store.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let history = store.path().join("latest").join("history.jsonl");
    while !std::fs::metadata(&history).is_ok_and(|m| m.len() > 10_000) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the workload never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "faultline ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = std::fs::canonicalize(store.path().join("latest")).unwrap();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let id = common::run_id(&String::from_utf8_lossy(&out.stderr));

    // Containers do not die with faultline: they are the ledger's and clean's business.
    let names = docker_names(&["ps", "--format", "{{.Names}}"]);
    assert!(names.contains(&format!("fl-{id}-n1")), "{names:?}");
    let out = faultline().args(["clean", "--run", &id]).output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("removed container fl-{id}-n1")),
        "{}",
        text(&out)
    );
    assert_nothing_left(&id, &dir);
    assert_no_docker_left(&id);
}

#[test]
fn clean_removes_labelled_containers_and_networks_of_runs_without_a_ledger() {
    require_root();
    let _one_at_a_time = cluster_lock();
    // A run that died before writing its ledger: only the labels tell.
    let id = "0fdead";
    let label = format!("faultline.run={id}");
    let net = format!("fl-{id}");
    let made = Command::new("docker")
        .args(["network", "create", "--internal", "--label", &label, &net])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    // The image (built offline, or taken from the cache at once).
    let built = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/build-rootfs"))
        .args(["redis", "bookworm"])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built));
    let image = String::from_utf8_lossy(&built.stdout).trim().to_string();
    let made = Command::new("docker")
        .args([
            "create",
            "--name",
            &format!("fl-{id}-n1"),
            "--label",
            &label,
        ])
        .args(["--network", &net, &image, "sleep", "1"])
        .output()
        .unwrap();
    if !made.status.success() {
        let _ = Command::new("docker")
            .args(["network", "rm", &net])
            .output();
        panic!(
            "{} (run the docker matrix test first to build the image)",
            text(&made)
        );
    }
    let out = faultline().args(["clean", "--run", id]).output().unwrap();
    let all = text(&out);
    assert_eq!(code(&out), 0, "{all}");
    assert!(
        all.contains(&format!("removed container fl-{id}-n1 (no ledger)")),
        "{all}"
    );
    assert!(
        all.contains(&format!("removed Docker network {net} (no ledger)")),
        "{all}"
    );
    assert_no_docker_left(id);
}

fn docker_names(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// faultline's own node on the docker backend: an image made from the node binary beside
/// `faultline` (no registry, no Debian root), a manual failover under load, no finding.
#[test]
fn the_projects_node_runs_on_docker_from_an_image_of_its_binary() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let scenario = common::scenario("failover-under-load.yaml");
    let run = common::run_to_end(
        &[
            &scenario,
            "--flavor",
            "faultline",
            "--backend",
            "docker",
            "--time-limit",
            "12",
        ],
        store.path(),
    );
    assert_eq!(run.code, 0, "{}", run.text);
    let (dir, id) = (&run.dir, &run.id);
    let r = results(dir);
    assert_eq!(r["run"]["backend"], "docker", "{r}");
    let image = r["run"]["image"].as_str().unwrap_or_default();
    assert!(image.starts_with("faultline/faultline-node:"), "{r}");
    let failovers = common::history(dir)
        .iter()
        .filter(|o| o.f == "failover" && o.kind == faultline_history::OpType::Ok)
        .count();
    assert!(failovers >= 1, "no failover happened: {}", run.text);
    let log = std::fs::read_to_string(dir.join("logs/n1/server.log")).unwrap();
    assert!(log.contains("ready to accept connections"), "{log}");
    assert_nothing_left(id, dir);
    assert_no_docker_left(id);
}
