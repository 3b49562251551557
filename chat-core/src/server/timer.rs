//! Every connection's pending deadlines, by kind, in one ordered heap
//! (protocol.md, "Limits and policies" and "Address policies": the soft
//! output limit's grace, the incomplete-line and idle timeouts, flood
//! control's next release, the end of a client's hold on the room).
//!
//! The heap holds exactly the armed deadlines: re-arming a timer moves its
//! entry and cancelling removes it, so the earliest entry is always the next
//! real deadline and nothing fires for nothing. Below it, the
//! `Server` glue: `advance` (every `handle_*` call runs the timers due by
//! its `now` before its input, so a byte that arrives exactly at a deadline
//! is too late), `schedule` and `expire`.

use std::time::Instant;

use super::{ConnId, Reason, Server, after};

/// What a deadline is for. The derived order is the tie-break: when
/// deadlines of one client are due together, the first kind in this order
/// is the one acted on (the soft limit's `too slow`, then the incomplete
/// line, which the protocol gives over idle). Clients due at the same
/// instant go in `ConnId` order, oldest connection first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The output stayed over `soft_queue` for `soft_queue_grace`.
    SoftQueueGrace,
    /// An unterminated line held for `line_timeout`.
    LineTimeout,
    /// Nothing sent for `idle_timeout`.
    IdleTimeout,
    /// The next held line fits the flood budget.
    FloodRelease,
    /// The client, behind the room, no longer holds it.
    RoomHold,
}

impl Timer {
    /// Every kind, in order.
    const ALL: [Timer; 5] = [
        Timer::SoftQueueGrace,
        Timer::LineTimeout,
        Timer::IdleTimeout,
        Timer::FloodRelease,
        Timer::RoomHold,
    ];
}

/// Where an unarmed timer's entry would be.
const UNARMED: usize = usize::MAX;

/// The armed timers of every connection: a binary min-heap that knows where
/// each entry is, so that re-arming or cancelling one is O(log n) and,
/// once the heap has grown to its peak, allocates nothing.
#[derive(Debug, Default)]
pub(super) struct TimerSet {
    /// Every armed timer as a min-heap in `(time, connection, kind)` order.
    /// A connection has one timer of each kind, so the order is total:
    /// timers due together always come out in the same order.
    heap: Vec<(Instant, ConnId, Timer)>,
    /// By connection slot and timer kind, the index of its entry in
    /// `heap`, or `UNARMED`.
    index: Vec<[usize; Timer::ALL.len()]>,
}

impl TimerSet {
    /// Arms `conn`'s `timer` for `at`, moving it if it was armed for
    /// another time, or cancels it (`None`).
    pub(super) fn set(&mut self, conn: ConnId, timer: Timer, at: Option<Instant>) {
        let slot = conn.slot();
        if self.index.len() <= slot {
            if at.is_none() {
                return;
            }
            self.index.resize(slot + 1, [UNARMED; Timer::ALL.len()]);
        }
        let i = self.index[slot][timer as usize];
        match at {
            None if i == UNARMED => {}
            None => self.remove(i),
            Some(at) if i == UNARMED => {
                self.heap.push((at, conn, timer));
                let last = self.heap.len() - 1;
                self.place(last);
                self.sift_up(last);
            }
            Some(at) => {
                debug_assert_eq!(self.heap[i].1, conn, "a freed slot kept a timer");
                let old = std::mem::replace(&mut self.heap[i].0, at);
                if at > old {
                    self.sift_down(i);
                } else {
                    self.sift_up(i);
                }
            }
        }
    }

    /// Cancels every timer of `conn`.
    pub(super) fn cancel_all(&mut self, conn: ConnId) {
        for timer in Timer::ALL {
            self.set(conn, timer, None);
        }
    }

    /// Cancels every timer of kind `timer`; returns whose they were.
    pub(super) fn cancel_kind(&mut self, timer: Timer) -> Vec<ConnId> {
        let conns: Vec<ConnId> = self
            .heap
            .iter()
            .filter(|&&(_, _, kind)| kind == timer)
            .map(|&(_, conn, _)| conn)
            .collect();
        for &conn in &conns {
            self.set(conn, timer, None);
        }
        conns
    }

    /// Whether `conn` has no timer armed.
    pub(super) fn none_armed(&self, conn: ConnId) -> bool {
        self.index
            .get(conn.slot())
            .is_none_or(|index| index.iter().all(|&i| i == UNARMED))
    }

    /// The earliest armed deadline.
    #[inline]
    pub(super) fn first(&self) -> Option<Instant> {
        self.heap.first().map(|&(at, _, _)| at)
    }

    /// Disarms and returns the next timer due by `now`: the connection with
    /// the earliest deadline, and of its timers due by `now` the first in
    /// [`Timer`] order. (When `now` is late past several deadlines of one
    /// client, the tie-break order still decides which one acts.)
    #[inline]
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(ConnId, Timer)> {
        let &(at, conn, first) = self.heap.first()?;
        if at > now {
            return None;
        }
        // `first` is due itself: an earlier kind due by `now` goes before it.
        let index = self.index.get(conn.slot());
        let due = |timer: Timer| {
            index
                .map(|index| index[timer as usize])
                .and_then(|i| self.heap.get(i))
                .is_some_and(|&(at, _, _)| at <= now)
        };
        let timer = Timer::ALL.into_iter().find(|&t| due(t)).unwrap_or(first);
        self.set(conn, timer, None);
        Some((conn, timer))
    }

    /// Takes the entry at `i` out of the heap.
    fn remove(&mut self, i: usize) {
        let (_, conn, timer) = self.heap[i];
        self.index[conn.slot()][timer as usize] = UNARMED;
        self.heap.swap_remove(i);
        if i < self.heap.len() {
            self.place(i);
            self.sift_down(i);
            self.sift_up(i);
        }
    }

    /// Records where the entry at `i` is.
    fn place(&mut self, i: usize) {
        let (_, conn, timer) = self.heap[i];
        self.index[conn.slot()][timer as usize] = i;
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.place(a);
        self.place(b);
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i] >= self.heap[parent] {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let left = 2 * i + 1;
            let right = left + 1;
            let Some(&left_entry) = self.heap.get(left) else {
                break;
            };
            let child = match self.heap.get(right) {
                Some(&right_entry) if right_entry < left_entry => right,
                _ => left,
            };
            if self.heap[child] >= self.heap[i] {
                break;
            }
            self.swap(i, child);
            i = child;
        }
    }
}

// The server's side: keeping each joined client's timers armed, and acting
// on them when due.
impl Server {
    /// Moves the clock to `now` (never back) and runs every timer due by
    /// then, earliest first. Every `handle_*` call starts with it.
    // `#[inline]` here and on the `TimerSet` calls it makes: they run on
    // every input and write, from another module (so, without LTO, possibly
    // another codegen unit).
    #[inline]
    pub(super) fn advance(&mut self, now: Instant) -> Instant {
        let now = self.clock.map_or(now, |clock| clock.max(now));
        self.clock = Some(now);
        while let Some((conn, timer)) = self.timers.pop_due(now) {
            self.expire(conn, timer, now);
            self.schedule(conn);
        }
        if self.cluster.is_some() {
            self.run_cluster_timers(now);
        }
        self.release_room(now);
        now
    }

    /// Arms the joined connection's timers that depend on its input and
    /// flood control for when they are due now, cancelling those that do
    /// not apply. (The soft output limit's is armed on delivery.)
    pub(super) fn schedule(&mut self, conn: ConnId) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let entry = &self.conns[slot];
        let config = &self.config;
        let policies = entry.policy_address.is_some();
        // While input waits, the client is not read: only the release runs,
        // and not while the room waits for its readers.
        let reading = policies && !entry.flood.is_holding() && !entry.flood.eof_pending;
        let line = after(entry.input.line_since, config.line_timeout).filter(|_| reading);
        let idle = after(entry.input.last_input, config.idle_timeout).filter(|_| reading);
        let paused = self.room.is_paused();
        let release = self.next_release(slot).filter(|_| policies && !paused);
        // A deadline not after the clock would fire again at once:
        // `advance` would never end.
        debug_assert!(
            [line, idle, release]
                .into_iter()
                .flatten()
                .all(|at| self.clock.is_none_or(|now| at > now))
        );
        self.timers.set(conn, Timer::LineTimeout, line);
        self.timers.set(conn, Timer::IdleTimeout, idle);
        self.timers.set(conn, Timer::FloodRelease, release);
    }

    /// Runs the connection's `timer`, due at `now`.
    pub(super) fn expire(&mut self, conn: ConnId, timer: Timer, now: Instant) {
        match timer {
            Timer::SoftQueueGrace => {
                // Not reading: no last line, like the hard limit.
                self.leave(conn, Reason::TooSlow);
                self.disconnect_too_slow();
            }
            Timer::LineTimeout => self.disconnect(conn, Reason::IncompleteLine),
            Timer::IdleTimeout => self.disconnect(conn, Reason::Idle),
            Timer::FloodRelease => self.release_held(conn, now),
            Timer::RoomHold => self.room_hold_over(conn, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_fire_by_time_then_connection_then_kind() {
        let start = Instant::now();
        let at = |secs| Some(start + Duration::from_secs(secs));
        let (a, b) = (ConnId(1), ConnId(2));
        let mut timers = TimerSet::default();
        timers.set(b, Timer::LineTimeout, at(5));
        timers.set(b, Timer::IdleTimeout, at(5));
        timers.set(a, Timer::IdleTimeout, at(5));
        timers.set(a, Timer::FloodRelease, at(3));
        // Moved later: the old deadline is gone.
        timers.set(a, Timer::FloodRelease, at(9));
        assert_eq!(timers.first(), at(5));
        let now = start + Duration::from_secs(5);
        assert_eq!(timers.pop_due(now), Some((a, Timer::IdleTimeout)));
        assert_eq!(timers.pop_due(now), Some((b, Timer::LineTimeout)));
        assert_eq!(timers.pop_due(now), Some((b, Timer::IdleTimeout)));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.first(), at(9));
        timers.cancel_all(a);
        assert_eq!(timers.first(), None);
        assert!(timers.heap.is_empty());
    }

    /// Random arming, moving, cancelling and popping, against a plain
    /// ordered set of the armed timers.
    #[test]
    fn the_heap_pops_what_an_ordered_set_would() {
        use std::collections::BTreeSet;

        use rand_chacha::ChaCha8Rng;
        use rand_core::{RngCore, SeedableRng};

        let start = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut timers = TimerSet::default();
        let mut model = BTreeSet::new();
        let mut now = start;
        for _ in 0..20_000 {
            let conn = ConnId(u64::from(rng.next_u32() % 12) | 5 << 24);
            let timer = Timer::ALL[rng.next_u32() as usize % Timer::ALL.len()];
            match rng.next_u32() % 8 {
                0..=4 => {
                    let at = now + Duration::from_millis(u64::from(rng.next_u32() % 50));
                    model.retain(|&(_, c, t)| (c, t) != (conn, timer));
                    model.insert((at, conn, timer));
                    timers.set(conn, timer, Some(at));
                }
                5 => {
                    model.retain(|&(_, c, t)| (c, t) != (conn, timer));
                    timers.set(conn, timer, None);
                }
                6 => {
                    model.retain(|&(_, c, _)| c != conn);
                    timers.cancel_all(conn);
                    assert!(timers.none_armed(conn));
                }
                _ => {
                    now += Duration::from_millis(u64::from(rng.next_u32() % 20));
                    loop {
                        let expected =
                            model
                                .first()
                                .copied()
                                .filter(|e| e.0 <= now)
                                .map(|(_, c, f)| {
                                    let kind = Timer::ALL
                                        .into_iter()
                                        .find(|&t| {
                                            model.iter().any(|e| e.1 == c && e.2 == t && e.0 <= now)
                                        })
                                        .unwrap_or(f);
                                    (c, kind)
                                });
                        if let Some((c, t)) = expected {
                            model.retain(|e| (e.1, e.2) != (c, t));
                        }
                        assert_eq!(timers.pop_due(now), expected);
                        if expected.is_none() {
                            break;
                        }
                    }
                }
            }
            assert_eq!(timers.first(), model.first().map(|e| e.0));
            assert_eq!(timers.heap.len(), model.len());
        }
    }
}
