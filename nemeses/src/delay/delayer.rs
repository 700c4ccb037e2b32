//! The NFQUEUE delayer: a harness thread inside one node's network namespace that takes
//! the packets iptables queues to it and accepts each one when its time comes.
//!
//! An NFQUEUE netlink socket belongs to the network namespace it was created in, so the
//! thread enters the node's namespace (`setns(CLONE_NEWNET)`, per thread) before it opens
//! and binds the queue. Copy mode is metadata only (the payload is never read or changed),
//! the kernel queue is raised to [`QUEUE_MAX_LEN`] and fails open (a full queue accepts
//! rather than drops), and the iptables rules say `--queue-bypass`, so a dead delayer
//! never turns into a partition.
//!
//! Each packet's delay is drawn uniformly from `[min, max]` by a generator seeded with the
//! step's draw (mixed with the node), and packets sit in a min-heap by due time (then
//! arrival): with jitter, a later packet may well leave first, which is the reordering
//! netem gives. Stopping accepts everything still held, at once, then unbinds.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nfq::{Message, Queue, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::proxy::spec::DelayMs;

/// Kernel queue length per delayer (the default, 1024, is too short for held traffic).
pub const QUEUE_MAX_LEN: u32 = 65536;

/// The queue number the delayer binds in a node's namespace. Queue numbers are per
/// namespace; a delay in lane `k` of a composed step ([`crate::fault::lane`]) binds
/// `QUEUE_NUM + k` ([`queue_for`]), so two delays sent from one node never share a queue.
pub const QUEUE_NUM: u16 = 7700;

/// The queue of a delay in `lane`.
pub fn queue_for(lane: u8) -> u16 {
    QUEUE_NUM + u16::from(lane)
}

/// Longest the thread sleeps with nothing due: the resolution of release times and the
/// latency the delayer adds at zero delay (the `nfq` queue exposes no descriptor to poll).
const TICK: Duration = Duration::from_micros(200);

/// What a delayer did, reported when it stops.
#[derive(Debug, Clone, Default)]
pub struct DelayerStats {
    /// Packets taken from the queue.
    pub packets: u64,
    /// Most packets held at once.
    pub max_held: usize,
    /// Packets still held when it was stopped (accepted at once then).
    pub released_at_stop: usize,
    /// Errors from the queue socket (other than "nothing to read").
    pub errors: u64,
}

impl DelayerStats {
    /// For the history.
    pub fn to_json(&self) -> Value {
        json!({
            "packets": self.packets,
            "max_held": self.max_held,
            "released_at_stop": self.released_at_stop,
            "errors": self.errors,
        })
    }
}

/// A running delayer thread.
pub struct Delayer {
    stop: Arc<AtomicBool>,
    packets: Arc<AtomicU64>,
    handle: JoinHandle<DelayerStats>,
}

impl Delayer {
    /// Starts a delayer bound to [`QUEUE_NUM`] inside the namespace at `netns`, and
    /// returns once the queue is bound (so rules installed after it never bypass it).
    ///
    /// # Errors
    /// If the namespace cannot be entered or the queue cannot be opened or bound (another
    /// process holds it, or this kernel has no nfnetlink_queue).
    pub fn start(
        netns: &Path,
        thread_name: String,
        delay: DelayMs,
        seed: u64,
    ) -> io::Result<Delayer> {
        Self::start_on(netns, QUEUE_NUM, thread_name, delay, seed)
    }

    /// As [`Delayer::start`], bound to queue `num` (a composed step's other delays use
    /// queues of their own: [`queue_for`]).
    ///
    /// # Errors
    /// As [`Delayer::start`].
    pub fn start_on(
        netns: &Path,
        num: u16,
        thread_name: String,
        delay: DelayMs,
        seed: u64,
    ) -> io::Result<Delayer> {
        let path = netns.to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stop2, packets2) = (stop.clone(), packets.clone());
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || match open_in(&path, num) {
                Ok(queue) => {
                    let _ = ready_tx.send(Ok(()));
                    run(queue, num, &stop2, &packets2, delay, seed)
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    DelayerStats::default()
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Delayer {
                stop,
                packets,
                handle,
            }),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(io::Error::other(e))
            }
            Err(_) => {
                let _ = handle.join();
                Err(io::Error::other("the delayer thread died before binding"))
            }
        }
    }

    /// Packets taken so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(AtomicOrdering::Relaxed)
    }

    /// Accepts everything held, unbinds the queue and joins the thread.
    pub fn stop(self) -> DelayerStats {
        self.stop.store(true, AtomicOrdering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

/// Enters `netns` (this thread only) and binds queue `num` there.
fn open_in(netns: &Path, num: u16) -> io::Result<Queue> {
    let ns = File::open(netns)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", netns.display())))?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| io::Error::other(format!("entering {}: {e}", netns.display())))?;
    let mut q = Queue::open().map_err(|e| io::Error::other(format!("NFQUEUE socket: {e}")))?;
    q.bind(num)
        .map_err(|e| io::Error::other(format!("binding NFQUEUE {num}: {e}")))?;
    q.set_copy_range(num, 0)
        .map_err(|e| io::Error::other(format!("NFQUEUE {num} copy mode: {e}")))?;
    q.set_queue_max_len(num, QUEUE_MAX_LEN)
        .map_err(|e| io::Error::other(format!("NFQUEUE {num} length: {e}")))?;
    q.set_fail_open(num, true)
        .map_err(|e| io::Error::other(format!("NFQUEUE {num} fail-open: {e}")))?;
    q.set_nonblocking(true);
    Ok(q)
}

/// A held packet, ordered by due time then arrival (a min-heap through reversed `Ord`).
struct Held {
    due: Instant,
    seq: u64,
    msg: Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due && self.seq == other.seq
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

fn run(
    mut q: Queue,
    num: u16,
    stop: &AtomicBool,
    packets: &AtomicU64,
    delay: DelayMs,
    seed: u64,
) -> DelayerStats {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut heap: BinaryHeap<Held> = BinaryHeap::new();
    let mut stats = DelayerStats::default();
    let mut seq = 0u64;
    loop {
        let stopping = stop.load(AtomicOrdering::SeqCst);
        loop {
            match q.recv() {
                Ok(msg) => {
                    stats.packets += 1;
                    packets.fetch_add(1, AtomicOrdering::Relaxed);
                    let ms = if delay.min == delay.max {
                        delay.min
                    } else {
                        rng.random_range(delay.min..=delay.max)
                    };
                    seq += 1;
                    heap.push(Held {
                        due: Instant::now() + Duration::from_millis(ms),
                        seq,
                        msg,
                    });
                    stats.max_held = stats.max_held.max(heap.len());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    stats.errors += 1;
                    break;
                }
            }
        }
        if stopping {
            stats.released_at_stop = heap.len();
        }
        let now = Instant::now();
        while let Some(top) = heap.peek() {
            if !stopping && top.due > now {
                break;
            }
            let Some(Held { mut msg, .. }) = heap.pop() else {
                break;
            };
            msg.set_verdict(Verdict::Accept);
            if q.verdict(msg).is_err() {
                stats.errors += 1;
            }
        }
        if stopping {
            break;
        }
        let wait = heap
            .peek()
            .map(|h| h.due.saturating_duration_since(now))
            .unwrap_or(TICK)
            .min(TICK);
        std::thread::sleep(wait);
    }
    let _ = q.unbind(num);
    stats
}

/// The delayers running in this process, by (run id, node, queue).
type Key = (String, String, u16);

fn registry() -> &'static Mutex<HashMap<Key, Delayer>> {
    static R: OnceLock<Mutex<HashMap<Key, Delayer>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Starts a delayer in `node` of run `run_id`, inside the namespace at `netns`, on
/// [`QUEUE_NUM`], and registers it.
///
/// # Errors
/// If one already runs there, or it cannot start (see [`Delayer::start`]).
pub fn start(
    run_id: &str,
    node: &str,
    netns: &Path,
    delay: DelayMs,
    seed: u64,
) -> Result<(), String> {
    start_on(run_id, node, netns, QUEUE_NUM, delay, seed)
}

/// As [`start`], on queue `num`.
///
/// # Errors
/// If one already runs there on that queue, or it cannot start.
pub fn start_on(
    run_id: &str,
    node: &str,
    netns: &Path,
    num: u16,
    delay: DelayMs,
    seed: u64,
) -> Result<(), String> {
    let key = (run_id.to_string(), node.to_string(), num);
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    if reg.contains_key(&key) {
        return Err(format!(
            "{node}: a delayer already runs on queue {num} there (one delay per lane)"
        ));
    }
    let d = Delayer::start_on(netns, num, format!("fl-delay-{node}-{num}"), delay, seed)
        .map_err(|e| format!("{node}: {e}"))?;
    reg.insert(key, d);
    Ok(())
}

/// Stops the delayers of run `run_id` in `nodes` (all of the run's for `None`), on every
/// queue; what each did, by node.
pub fn stop(run_id: &str, nodes: Option<&[String]>) -> Vec<(String, DelayerStats)> {
    stop_where(run_id, nodes, None)
}

/// As [`stop`], only the delayers on queue `num`.
pub fn stop_queue(run_id: &str, nodes: &[String], num: u16) -> Vec<(String, DelayerStats)> {
    stop_where(run_id, Some(nodes), Some(num))
}

fn stop_where(
    run_id: &str,
    nodes: Option<&[String]>,
    num: Option<u16>,
) -> Vec<(String, DelayerStats)> {
    let taken: Vec<(Key, Delayer)> = {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<Key> = reg
            .keys()
            .filter(|(r, n, q)| {
                r == run_id && nodes.is_none_or(|ns| ns.contains(n)) && num.is_none_or(|x| x == *q)
            })
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| reg.remove(&k).map(|d| (k, d)))
            .collect()
    };
    let mut out: Vec<(String, DelayerStats)> = taken
        .into_iter()
        .map(|((_, node, q), d)| {
            let name = if q == QUEUE_NUM {
                node
            } else {
                format!("{node}/{q}")
            };
            (name, d.stop())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The nodes of run `run_id` with a delayer running, with the packets each has taken.
pub fn running(run_id: &str) -> Vec<(String, u64)> {
    let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<(String, u64)> = reg
        .iter()
        .filter(|((r, _, _), _)| r == run_id)
        .map(|((_, n, _), d)| (n.clone(), d.packets()))
        .collect();
    v.sort();
    v
}

/// Checks for real that NFQUEUE works in the namespace `ns` (a scratch one: this adds a
/// rule to its OUTPUT chain): binds a queue from a thread inside it, queues one UDP
/// datagram to 127.0.0.1:9 through iptables, receives it and accepts it.
///
/// # Errors
/// What failed: entering, binding, the iptables rule, or no packet within 2 s.
pub fn self_test(ns: &str) -> Result<(), String> {
    let path = PathBuf::from(format!("/run/netns/{ns}"));
    let ns = ns.to_string();
    std::thread::Builder::new()
        .name("fl-delay-test".into())
        .spawn(move || -> Result<(), String> {
            let mut q = open_in(&path, QUEUE_NUM).map_err(|e| e.to_string())?;
            let ipt = |args: &[&str]| -> Result<(), String> {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "iptables", "-w"])
                    .args(args)
                    .output()
                    .map_err(|e| format!("running iptables: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "iptables {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ))
                }
            };
            let qn = QUEUE_NUM.to_string();
            ipt(&[
                "-A",
                "OUTPUT",
                "-o",
                "lo",
                "-p",
                "udp",
                "--dport",
                "9",
                "-j",
                "NFQUEUE",
                "--queue-num",
                &qn,
                "--queue-bypass",
            ])?;
            // This thread is inside the namespace: the socket is too.
            let _ = std::process::Command::new("ip")
                .args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])
                .status();
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            sock.send_to(b"faultline", "127.0.0.1:9")
                .map_err(|e| format!("sending the probe: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match q.recv() {
                    Ok(mut m) => {
                        m.set_verdict(Verdict::Accept);
                        q.verdict(m).map_err(|e| format!("verdict: {e}"))?;
                        let _ = q.unbind(QUEUE_NUM);
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err("no packet reached the queue within 2 s".into());
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(format!("receiving from the queue: {e}")),
                }
            }
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "the NFQUEUE test thread panicked".to_string())?
}
