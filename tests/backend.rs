//! The target seam: everything a run reaches a node through (`Backend`), exercised on the
//! local backend against a real server. A live cluster over SSH or the project's own node
//! will be one more implementation of the same methods; this is what they must do.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline::backend::Backend;
use faultline::flavor;
use faultline::scenario::FlavorName;

/// Runs `program args...` behind a backend's command prefix (empty: on this machine).
fn behind(prefix: &[String], program: &str, args: &[&str]) -> String {
    let mut full: Vec<&str> = prefix.iter().map(String::as_str).collect();
    full.push(program);
    full.extend_from_slice(args);
    faultline::sys::run(full[0], &full[1..]).unwrap_or_else(|e| panic!("{}: {e:#}", full.join(" ")))
}

/// `PING` from inside the node's own namespace, until it answers or `within` passes (each
/// try bounded by `timeout`: a paused server accepts the connection and never answers).
fn wait_pong(backend: &dyn Backend, within: Duration) -> bool {
    let node = &backend.nodes()[0];
    let (ip, port) = (node.ip.to_string(), node.port.to_string());
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let prefix = backend.netns_exec_prefix(0);
        let mut full: Vec<&str> = prefix.iter().map(String::as_str).collect();
        full.extend_from_slice(&["timeout", "1", "redis-cli", "-h", &ip, "-p", &port, "PING"]);
        if faultline::sys::run(full[0], &full[1..]).is_ok_and(|out| out.trim() == "PONG") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn the_local_backend_answers_every_seam_method_for_a_real_node() {
    common::require_root();
    let _one_cluster = common::cluster_lock();
    let dir = tempfile::tempdir().unwrap();
    let (run_id, mut backend) = common::local_backend(
        dir.path(),
        Arc::from(flavor::by_name(FlavorName::Redis)),
        vec!["n1".into()],
        5000,
    );

    backend.start(0).expect("starting n1");
    assert!(
        wait_pong(backend.as_ref(), Duration::from_secs(10)),
        "n1 never answered PING: {}",
        backend.log_tail(0, 20)
    );

    // Logs and node files: what the run keeps as evidence.
    let log = backend.log_tail(0, 50);
    assert!(!log.trim().is_empty(), "n1's server log is empty");
    let nodes_conf = String::from_utf8(backend.read_node_file(0, "nodes.conf").unwrap()).unwrap();
    assert!(
        nodes_conf.contains("myself"),
        "nodes.conf names no node as myself:\n{nodes_conf}"
    );
    assert!(backend.read_node_file(0, "no-such-file").is_err());

    // A command in the node's namespace sees its eth0 and not the host's end of the run's
    // link; a command on its host sees that link.
    let host_link = run_id.host_link();
    let inside = behind(&backend.netns_exec_prefix(0), "ip", &["-o", "link"]);
    let host = behind(&backend.host_exec_prefix(0), "ip", &["-o", "link"]);
    assert!(
        inside.contains("eth0") && !inside.contains(&host_link),
        "{inside}"
    );
    assert!(
        host.contains(&host_link),
        "{host_link} not on the host:\n{host}"
    );
    let netns = backend
        .netns_path(0)
        .expect("a local node has a namespace file");
    assert!(netns.exists(), "{} does not exist", netns.display());

    // Pause, resume, kill and restart, as the faults use them.
    backend.pause(0, true).unwrap();
    assert!(!wait_pong(backend.as_ref(), Duration::from_millis(500)));
    backend.pause(0, false).unwrap();
    assert!(wait_pong(backend.as_ref(), Duration::from_secs(5)));
    backend.kill(0).unwrap();
    assert!(backend.exited().is_none(), "a kill asked for is no crash");
    assert!(!wait_pong(backend.as_ref(), Duration::from_millis(300)));
    backend.start(0).unwrap();
    assert!(wait_pong(backend.as_ref(), Duration::from_secs(10)));

    backend.teardown().unwrap();
    assert!(
        dir.path().join("logs/n1/nodes.conf").exists(),
        "teardown keeps nodes.conf as evidence"
    );
    common::assert_nothing_left(run_id.as_str(), dir.path());
}
