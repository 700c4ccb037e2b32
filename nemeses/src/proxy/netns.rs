//! Sockets made inside a node's network namespace.
//!
//! A socket belongs to the network namespace of the thread that created it, for its whole
//! life, whichever thread later uses it. So the proxy creates each socket on a short-lived
//! thread that has entered the node's namespace (`setns(CLONE_NEWNET)`, which Linux allows
//! per thread), and then binds, listens, accepts and connects from tokio as usual. Without
//! a namespace (loopback, no root) sockets are made in the caller's namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use tokio::net::TcpSocket;

/// A new IPv4 TCP socket in the namespace at `netns` (e.g. `/run/netns/fl-abc123-n2`), or
/// in the caller's own namespace for `None`.
///
/// # Errors
/// If the namespace cannot be opened or entered (entering needs CAP_SYS_ADMIN), or the
/// socket cannot be created.
pub fn socket_in(netns: Option<&Path>) -> io::Result<TcpSocket> {
    let Some(path) = netns else {
        return TcpSocket::new_v4();
    };
    let path: PathBuf = path.to_path_buf();
    // A fresh thread: the namespace switch must never leak into a runtime thread.
    std::thread::Builder::new()
        .name("fl-netns".into())
        .spawn(move || {
            let ns = File::open(&path).map_err(|e| {
                io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
            })?;
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                io::Error::other(format!("entering namespace {}: {e}", path.display()))
            })?;
            TcpSocket::new_v4()
        })?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// [`socket_in`] off the async threads (it spawns and joins a thread).
///
/// # Errors
/// As [`socket_in`].
pub async fn socket_in_async(netns: Option<PathBuf>) -> io::Result<TcpSocket> {
    match netns {
        None => TcpSocket::new_v4(),
        Some(p) => tokio::task::spawn_blocking(move || socket_in(Some(&p)))
            .await
            .map_err(io::Error::other)?,
    }
}
