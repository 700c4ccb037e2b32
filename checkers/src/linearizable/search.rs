//! The Wing–Gong search with Lowe's memoisation, for the ops of one key.
//!
//! The ops' call and return events sit in one doubly linked list in real-time order. The
//! search walks it: at a call it tries to linearize that op next (step the model; if the
//! op can happen, and the pair (set of ops linearized, state) has not been seen before, it
//! lifts the op's two events out of the list and starts again from the front); at a
//! return it has met an op that should have been linearized already, so it backtracks
//! (puts the last lifted op back and tries the event after its call). The list empty of
//! definite ops means a linearization was found; backtracking with nothing to undo means
//! there is none.
//!
//! What makes it cheaper than Porcupine's, which has the same shape:
//! - a state is a `u32` (values interned, see [`super::model`]), stepping is a compare;
//! - the set of linearized ops is hashed incrementally (a random 64-bit word per op, XORed
//!   in and out: Zobrist hashing), so a cache probe hashes one word, not the bitset; the
//!   bitset is compared only on a hash match, so the cache never answers by guess;
//! - indeterminate ops (info, or never completed) have no return event: they may take
//!   effect at any point after their call or never, so the search is done as soon as every
//!   definite op is linearized, with no need to place the others;
//! - indeterminate ops are tried only after every definite op open at a point, so a
//!   valid history is usually found without placing them speculatively;
//! - a definite op that leaves the state alone (a read, a failed cas) and can happen now
//!   is placed now, with no other choice tried at that point (see [`Search::run`]);
//! - a register op that needs a value (a read, a swapping cas) the register does not
//!   hold, when every op that could put that value there is already placed, ends the
//!   branch at once instead of after everything the branch would place first;
//! - ops that cannot matter are dropped before the search (reads that did not return,
//!   ops that certainly did not happen);
//! - the search is resumable ([`Search::run`] takes an allowance of steps), so the checker
//!   can interleave keys and stop at the first violation without one hard key delaying the
//!   verdict.

use super::model::{CasOutcome, Step, Values};

/// One op of a key, as the search sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchOp {
    /// What it does.
    pub step: Step,
    /// Position of its call in the history (real-time order).
    pub call: u64,
    /// Position of its return, `None` when it is indeterminate.
    pub ret: Option<u64>,
}

/// How one key's search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A linearization exists.
    Linearizable,
    /// None exists. The deepest point the search reached: the ops linearized there, in
    /// order (indices into the key's ops), the state they leave, and the op whose return
    /// the search could not get past.
    NotLinearizable {
        partial: Vec<usize>,
        state: u32,
        stuck: usize,
    },
    /// Out of time or memory before deciding.
    OutOfBudget {
        /// Which limit: `"time"` or `"memory"`.
        limit: &'static str,
    },
}

const NIL: u32 = u32::MAX;
/// Head of the list of definite ops' calls and returns.
const HEAD: u32 = 0;
/// Head of the list of indeterminate ops' calls.
const INFO_HEAD: u32 = 1;

/// One op lifted, as the stack keeps it for backtracking.
#[derive(Clone, Copy)]
struct Lifted {
    /// Its call node.
    node: u32,
    /// The state before it.
    state: u32,
    /// Lifted because it could not hurt (a state-preserving op that could happen): no
    /// other choice at its point needs trying.
    forced: bool,
    /// Where the scan was when it was chosen: in the indeterminate list, bounded by the
    /// return node `stop` (the first return of a definite op not yet linearized).
    in_info: bool,
    stop: u32,
    guard: Guard,
}

/// A get every kv state from here on must lead to, when no put can come between: see
/// [`Search::run`].
#[derive(Clone, Copy)]
struct Guard {
    /// The values the gets read (`NIL`: none).
    values: [u32; GUARDS],
    /// The one put that may come before the gets, if any (`NIL`: none).
    put: u32,
}

/// Most gets one guard holds.
const GUARDS: usize = 1;

const NO_GUARD: Guard = Guard {
    values: [NIL; GUARDS],
    put: NIL,
};

/// One key's search, resumable.
pub(crate) struct Search<'a> {
    ops: &'a [SearchOp],
    init: u32,
    // Two lists over one set of nodes: node 0 heads the definite ops' calls and returns
    // in real-time order, node 1 the indeterminate ops' calls in call order; ops' nodes
    // from 2.
    next: Vec<u32>,
    prev: Vec<u32>,
    node_op: Vec<u32>,
    node_is_call: Vec<bool>,
    node_pos: Vec<u64>,
    ret_node: Vec<u32>,
    definite_left: usize,
    bits: Bits,
    zobrist: Vec<u64>,
    hash: u64,
    cache: Cache,
    stack: Vec<Lifted>,
    state: u32,
    fresh: bool,
    entry: u32,
    in_info: bool,
    stop: u32,
    guard: Guard,
    /// The puts (kv), by call position.
    puts: Vec<(u64, u32)>,
    /// Register ops: per op, the value it needs the register to hold (a read's, a
    /// swapping cas's expected value) and the value it may leave there (a write's, a cas's
    /// new value), as indices into `producers_left` (`NIL`: none).
    needs: Vec<u32>,
    makes: Vec<u32>,
    /// Per value, the ops not yet linearized that may leave it in the register.
    producers_left: Vec<u32>,
    best: Option<(Vec<usize>, u32, usize)>,
    /// Steps taken so far.
    pub steps: u64,
}

impl<'a> Search<'a> {
    /// A search of `ops` from state `init`, not started.
    pub(crate) fn new(ops: &'a [SearchOp], init: u32) -> Search<'a> {
        let n = ops.len();
        // A return sorts before a call at the same position (positions are distinct in
        // faultline's own histories; imported ones may reuse them).
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, true, i as u32));
            if let Some(r) = op.ret {
                events.push((r, false, i as u32));
            }
        }
        events.sort_unstable_by_key(|&(pos, is_call, op)| (pos, is_call, op));
        let m = events.len() + 2;
        let mut next = vec![NIL; m];
        let mut prev = vec![NIL; m];
        let mut node_op = vec![0u32; m];
        let mut node_is_call = vec![false; m];
        let mut node_pos = vec![0u64; m];
        let mut ret_node = vec![NIL; n];
        let (mut tail, mut info_tail) = (HEAD, INFO_HEAD);
        for (k, &(pos, is_call, op)) in events.iter().enumerate() {
            let node = (k + 2) as u32;
            node_op[node as usize] = op;
            node_is_call[node as usize] = is_call;
            node_pos[node as usize] = pos;
            if !is_call {
                ret_node[op as usize] = node;
            }
            let t = if ops[op as usize].ret.is_some() {
                &mut tail
            } else {
                &mut info_tail
            };
            prev[node as usize] = *t;
            next[*t as usize] = node;
            *t = node;
        }
        let mut puts: Vec<(u64, u32)> = ops
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.step, Step::Put { .. }))
            .map(|(i, o)| (o.call, i as u32))
            .collect();
        puts.sort_unstable();
        let mut dense: std::collections::HashMap<u32, u32> = Default::default();
        let index = |v: u32, dense: &mut std::collections::HashMap<u32, u32>| {
            let next = dense.len() as u32;
            *dense.entry(v).or_insert(next)
        };
        let makes: Vec<u32> = ops
            .iter()
            .map(|o| match o.step {
                Step::Write { value } => index(value, &mut dense),
                Step::Cas {
                    new,
                    outcome: CasOutcome::Swapped | CasOutcome::Unknown,
                    ..
                } => index(new, &mut dense),
                _ => NIL,
            })
            .collect();
        let needs: Vec<u32> = ops
            .iter()
            .map(|o| match o.step {
                Step::Read { expect }
                | Step::Cas {
                    expect,
                    outcome: CasOutcome::Swapped,
                    ..
                } => index(expect, &mut dense),
                _ => NIL,
            })
            .collect();
        let mut producers_left = vec![0u32; dense.len()];
        for &m in &makes {
            if m != NIL {
                producers_left[m as usize] += 1;
            }
        }
        Search {
            ops,
            init,
            entry: next[HEAD as usize],
            next,
            prev,
            node_op,
            node_is_call,
            node_pos,
            ret_node,
            definite_left: ops.iter().filter(|o| o.ret.is_some()).count(),
            bits: Bits::new(ops),
            zobrist: (0..n as u64).map(|i| splitmix(i ^ 0x5eed)).collect(),
            hash: 0,
            cache: Cache::new(),
            stack: Vec::new(),
            state: init,
            fresh: true,
            in_info: false,
            stop: NIL,
            guard: NO_GUARD,
            puts,
            needs,
            makes,
            producers_left,
            best: None,
            steps: 0,
        }
    }

    /// Bytes the memo holds.
    pub(crate) fn memory(&self) -> usize {
        self.cache.bytes()
    }

    /// Keeps the current point as the deepest failure, if it is deeper than the last;
    /// `stuck` is the op that could not be placed.
    fn record_best(&mut self, stuck: usize) {
        if self
            .best
            .as_ref()
            .is_none_or(|b| self.stack.len() > b.0.len())
        {
            let partial = self
                .stack
                .iter()
                .map(|l| self.node_op[l.node as usize] as usize)
                .collect();
            self.best = Some((partial, self.state, stuck));
        }
    }

    /// Tries to linearize the op of call node `node` next: true if it was lifted.
    #[inline]
    fn try_lift(&mut self, node: u32, forced: bool, values: &mut Values) -> bool {
        let op = self.node_op[node as usize] as usize;
        let step = self.ops[op].step;
        let Some(new_state) = step.apply(self.state, values) else {
            return false;
        };
        if self.guard.values[0] != NIL
            && matches!(step, Step::Put { .. } | Step::Append { .. })
            && (self.guard.put == NIL || self.guard.put == op as u32)
            && self
                .guard
                .values
                .iter()
                .take_while(|&&v| v != NIL)
                .any(|&v| !values.may_prefix(new_state, v))
        {
            return false;
        }
        self.bits.set(op);
        self.hash ^= self.zobrist[op];
        if !self.cache.insert(self.hash, new_state, &self.bits) {
            self.bits.clear(op);
            self.hash ^= self.zobrist[op];
            return false;
        }
        self.stack.push(Lifted {
            node,
            state: self.state,
            forced,
            in_info: self.in_info,
            stop: self.stop,
            guard: self.guard,
        });
        self.state = new_state;
        if self.makes[op] != NIL {
            self.producers_left[self.makes[op] as usize] -= 1;
        }
        unlink(&mut self.next, &mut self.prev, node);
        let r = self.ret_node[op];
        if r != NIL {
            unlink(&mut self.next, &mut self.prev, r);
            self.definite_left -= 1;
        }
        self.fresh = true;
        true
    }

    /// Runs at most `allowance` steps: `None` if still undecided.
    ///
    /// A definite op that could happen now and leaves the state alone may as well happen
    /// now: any linearization from here can be rearranged to start with it (it is open
    /// now, so nothing that must precede it is left; moving it earlier keeps it before
    /// whatever must follow it; the ops it jumps over see the same states). So at a new
    /// point such an op is the only choice tried, and backtracking past it goes straight
    /// on to the choice before.
    ///
    /// For kv keys, the gets that are open and cannot happen yet (the guard, up to
    /// [`GUARDS`] of them) prune puts and appends: when no put but possibly the one being
    /// tried can come before them (none is open before the last of them returns), every
    /// state from the one being made to a get's is reached by appends, so the new state
    /// must be a prefix of what each get read; a state that certainly is not is not
    /// explored.
    pub(crate) fn run(&mut self, values: &mut Values, allowance: u64) -> Option<Outcome> {
        let end = self.steps + allowance;
        loop {
            if self.definite_left == 0 {
                return Some(Outcome::Linearizable);
            }
            if self.steps >= end {
                return None;
            }
            self.steps += 1;
            let mut stuck = false;
            if self.fresh {
                self.fresh = false;
                self.in_info = false;
                self.stop = NIL;
                let mut e = self.next[HEAD as usize];
                let mut forced = None;
                let mut guard = NO_GUARD;
                let mut guards = 0;
                let mut ret = 0;
                let mut dead = false;
                while e != NIL && self.node_is_call[e as usize] {
                    let i = self.node_op[e as usize] as usize;
                    let op = &self.ops[i];
                    let step = op.step;
                    if step.preserves_state() && step.apply(self.state, values) == Some(self.state)
                    {
                        forced = Some(e);
                        break;
                    }
                    // A register op that needs a value the register does not hold, when
                    // no op that may put it there is left: nothing from here can work.
                    let need = self.needs[i];
                    if need != NIL
                        && self.producers_left[need as usize] == 0
                        && step.apply(self.state, values).is_none()
                    {
                        dead = true;
                        self.record_best(i);
                        break;
                    }
                    if let (Step::Get { expect }, Some(r)) = (step, op.ret) {
                        if guards < GUARDS {
                            guard.values[guards] = expect;
                            guards += 1;
                            ret = ret.max(r);
                        }
                    }
                    e = self.next[e as usize];
                }
                self.guard = NO_GUARD;
                if forced.is_none() && guards > 0 {
                    // The puts not yet linearized that are open before the get returns.
                    let mut open = self
                        .puts
                        .iter()
                        .take_while(|&&(call, _)| call < ret)
                        .filter(|&&(_, p)| !self.bits.contains(p as usize));
                    match (open.next(), open.next()) {
                        (None, _) => self.guard = guard,
                        (Some(&(_, p)), None) => self.guard = Guard { put: p, ..guard },
                        _ => {}
                    }
                }
                if dead {
                    stuck = true;
                } else if let Some(e) = forced {
                    if self.try_lift(e, true, values) {
                        continue;
                    }
                    // Seen before with this state: everything after it failed, so
                    // everything from here fails.
                    stuck = true;
                } else {
                    self.entry = self.next[HEAD as usize];
                }
            }
            if !stuck {
                let entry = self.entry;
                if !self.in_info {
                    if entry == NIL {
                        // No definite return left in the list: every definite op is lifted.
                        return Some(Outcome::Linearizable);
                    }
                    if self.node_is_call[entry as usize] {
                        if !self.try_lift(entry, false, values) {
                            self.entry = self.next[entry as usize];
                        }
                        continue;
                    }
                    // The first definite return not yet linearized: the indeterminate ops
                    // called before it are the remaining choices.
                    self.stop = entry;
                    self.in_info = true;
                    self.entry = self.next[INFO_HEAD as usize];
                    continue;
                }
                if entry != NIL && self.node_pos[entry as usize] < self.node_pos[self.stop as usize]
                {
                    if !self.try_lift(entry, false, values) {
                        self.entry = self.next[entry as usize];
                    }
                    continue;
                }
                // Every choice at this point failed.
                self.record_best(self.node_op[self.stop as usize] as usize);
            }
            // Backtrack: undo the last choice and try the next one at its point; a forced
            // choice had no alternative, so undo the one before it too.
            loop {
                let Some(l) = self.stack.pop() else {
                    let (partial, state, stuck) =
                        self.best.take().unwrap_or((Vec::new(), self.init, 0));
                    return Some(Outcome::NotLinearizable {
                        partial,
                        state,
                        stuck,
                    });
                };
                let op = self.node_op[l.node as usize] as usize;
                self.bits.clear(op);
                self.hash ^= self.zobrist[op];
                self.state = l.state;
                if self.makes[op] != NIL {
                    self.producers_left[self.makes[op] as usize] += 1;
                }
                // Put the op back: its return first, then its call (the reverse of lifting).
                let r = self.ret_node[op];
                if r != NIL {
                    relink(&mut self.next, &mut self.prev, r);
                    self.definite_left += 1;
                }
                relink(&mut self.next, &mut self.prev, l.node);
                if !l.forced {
                    self.entry = self.next[l.node as usize];
                    self.in_info = l.in_info;
                    self.stop = l.stop;
                    self.guard = l.guard;
                    break;
                }
            }
        }
    }
}

#[inline]
fn unlink(next: &mut [u32], prev: &mut [u32], node: u32) {
    let (p, n) = (prev[node as usize], next[node as usize]);
    next[p as usize] = n;
    if n != NIL {
        prev[n as usize] = p;
    }
}

#[inline]
fn relink(next: &mut [u32], prev: &mut [u32], node: u32) {
    let (p, n) = (prev[node as usize], next[node as usize]);
    next[p as usize] = node;
    if n != NIL {
        prev[n as usize] = node;
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The set of linearized ops. Definite ops have bits in call order from 0, indeterminate
/// ones from the next word on, so the definite part is mostly a run of whole words of ones
/// (everything before the search's frontier) followed by a few words, and is kept as
/// such: `lead` whole words of ones, then the words up to the last non-zero one. A memo
/// entry then costs a few words however long the history.
struct Bits {
    bit: Vec<u32>,
    words: Vec<u64>,
    /// Words in the definite part.
    definite_words: usize,
    lead: usize,
    trail: usize,
}

impl Bits {
    fn new(ops: &[SearchOp]) -> Bits {
        let definite = ops.iter().filter(|o| o.ret.is_some()).count();
        let definite_words = definite.div_ceil(64);
        let (mut d, mut i) = (0u32, (definite_words * 64) as u32);
        let bit = ops
            .iter()
            .map(|o| {
                let b = if o.ret.is_some() { &mut d } else { &mut i };
                *b += 1;
                *b - 1
            })
            .collect();
        let total = (i as usize).div_ceil(64).max(definite_words);
        Bits {
            bit,
            words: vec![0; total],
            definite_words,
            lead: 0,
            trail: 0,
        }
    }

    #[inline]
    fn contains(&self, op: usize) -> bool {
        let b = self.bit[op] as usize;
        self.words[b >> 6] & (1 << (b & 63)) != 0
    }

    #[inline]
    fn set(&mut self, op: usize) {
        let b = self.bit[op] as usize;
        let w = b >> 6;
        self.words[w] |= 1 << (b & 63);
        if w < self.definite_words {
            self.trail = self.trail.max(w + 1);
            while self.lead < self.definite_words && self.words[self.lead] == u64::MAX {
                self.lead += 1;
            }
        }
    }

    #[inline]
    fn clear(&mut self, op: usize) {
        let b = self.bit[op] as usize;
        let w = b >> 6;
        self.words[w] &= !(1 << (b & 63));
        if w < self.definite_words {
            self.lead = self.lead.min(w);
            while self.trail > 0 && self.words[self.trail - 1] == 0 {
                self.trail -= 1;
            }
        }
    }

    /// (whole words of ones at the start, the definite words after them, the
    /// indeterminate words): together they say exactly which ops are in the set.
    #[inline]
    fn parts(&self) -> (usize, &[u64], &[u64]) {
        let lead = self.lead.min(self.trail);
        (
            lead,
            &self.words[lead..self.trail],
            &self.words[self.definite_words..],
        )
    }
}

/// The set of (linearized ops, state) pairs already explored: an open-addressing table of
/// indices into an arena that keeps each entry's set (as [`Bits::parts`]), compared on a
/// hash match.
struct Cache {
    /// Slot -> entry index + 1 (0: empty).
    table: Vec<u32>,
    hashes: Vec<u64>,
    states: Vec<u32>,
    /// Per entry: where its words start in `sets`, its lead, and its definite length.
    shapes: Vec<(u32, u32, u32)>,
    sets: Vec<u64>,
}

impl Cache {
    fn new() -> Cache {
        Cache {
            table: vec![0; 1024],
            hashes: Vec::new(),
            states: Vec::new(),
            shapes: Vec::new(),
            sets: Vec::new(),
        }
    }

    fn bytes(&self) -> usize {
        self.sets.len() * 8 + self.table.len() * 4 + self.hashes.len() * 24
    }

    /// Adds the pair; `false` if it was there already.
    #[inline]
    fn insert(&mut self, set_hash: u64, state: u32, bits: &Bits) -> bool {
        let (lead, definite, info) = bits.parts();
        let h = splitmix(set_hash ^ u64::from(state).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mask = self.table.len() - 1;
        let mut slot = (h as usize) & mask;
        loop {
            let e = self.table[slot];
            if e == 0 {
                break;
            }
            let i = (e - 1) as usize;
            if self.hashes[i] == h && self.states[i] == state {
                let (start, l, len) = self.shapes[i];
                let start = start as usize;
                let len = len as usize;
                if l as usize == lead
                    && len == definite.len()
                    && self.sets[start..start + len] == *definite
                    && self.sets[start + len..start + len + info.len()] == *info
                {
                    return false;
                }
            }
            slot = (slot + 1) & mask;
        }
        self.hashes.push(h);
        self.states.push(state);
        self.shapes
            .push((self.sets.len() as u32, lead as u32, definite.len() as u32));
        self.sets.extend_from_slice(definite);
        self.sets.extend_from_slice(info);
        self.table[slot] = self.hashes.len() as u32;
        if self.hashes.len() * 2 > self.table.len() {
            self.grow();
        }
        true
    }

    fn grow(&mut self) {
        let size = self.table.len() * 2;
        let mask = size - 1;
        let mut table = vec![0u32; size];
        for (i, h) in self.hashes.iter().enumerate() {
            let mut slot = (*h as usize) & mask;
            while table[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            table[slot] = (i + 1) as u32;
        }
        self.table = table;
    }
}
