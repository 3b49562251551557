//! Every connection's pending deadlines, by kind, in one ordered set
//! (protocol.md, "Limits and policies" and "Address policies": the soft
//! output limit's grace, the incomplete-line and idle timeouts, flood
//! control's next release).
//!
//! The set holds exactly the armed deadlines: re-arming a timer moves its
//! entry and cancelling removes it, so the earliest entry is always the next
//! real deadline and nothing fires for nothing. Below the set, the
//! `Server` glue: `advance` (every `handle_*` call runs the timers due by
//! its `now` before its input, so a byte that arrives exactly at a deadline
//! is too late), `schedule` and `expire`.

use std::collections::BTreeSet;
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
}

impl Timer {
    /// Every kind, in order.
    const ALL: [Timer; 4] = [
        Timer::SoftQueueGrace,
        Timer::LineTimeout,
        Timer::IdleTimeout,
        Timer::FloodRelease,
    ];
}

/// The armed timers of every connection.
#[derive(Debug, Default)]
pub(super) struct TimerSet {
    /// Every armed timer, earliest first.
    by_time: BTreeSet<(Instant, ConnId, Timer)>,
    /// By connection slot, when each kind of timer is armed: the key of
    /// its entry in `by_time`.
    armed: Vec<[Option<Instant>; Timer::ALL.len()]>,
}

impl TimerSet {
    /// Arms `conn`'s `timer` for `at`, moving it if it was armed for
    /// another time, or cancels it (`None`).
    pub(super) fn set(&mut self, conn: ConnId, timer: Timer, at: Option<Instant>) {
        let slot = conn.slot();
        if self.armed.len() <= slot {
            if at.is_none() {
                return;
            }
            self.armed.resize(slot + 1, [None; Timer::ALL.len()]);
        }
        let armed = &mut self.armed[slot][timer as usize];
        if *armed == at {
            return;
        }
        if let Some(old) = armed.take() {
            self.by_time.remove(&(old, conn, timer));
        }
        if let Some(at) = at {
            *armed = Some(at);
            self.by_time.insert((at, conn, timer));
        }
    }

    /// Cancels every timer of `conn`.
    pub(super) fn cancel_all(&mut self, conn: ConnId) {
        for timer in Timer::ALL {
            self.set(conn, timer, None);
        }
    }

    /// Whether `conn` has no timer armed.
    pub(super) fn none_armed(&self, conn: ConnId) -> bool {
        self.armed
            .get(conn.slot())
            .is_none_or(|armed| armed.iter().all(Option::is_none))
    }

    /// The earliest armed deadline.
    pub(super) fn first(&self) -> Option<Instant> {
        self.by_time.first().map(|&(at, _, _)| at)
    }

    /// Disarms and returns the next timer due by `now`: the connection with
    /// the earliest deadline, and of its timers due by `now` the first in
    /// [`Timer`] order. (When `now` is late past several deadlines of one
    /// client, the tie-break order still decides which one acts.)
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(ConnId, Timer)> {
        let &(at, conn, first) = self.by_time.first()?;
        if at > now {
            return None;
        }
        // `first` is due itself: an earlier kind due by `now` goes before it.
        let armed = self.armed.get(conn.slot());
        let timer = Timer::ALL
            .into_iter()
            .find(|&timer| armed.is_some_and(|a| a[timer as usize].is_some_and(|at| at <= now)))
            .unwrap_or(first);
        self.set(conn, timer, None);
        Some((conn, timer))
    }
}

// The server's side: keeping each joined client's timers armed, and acting
// on them when due.
impl Server {
    /// Moves the clock to `now` (never back) and runs every timer due by
    /// then, earliest first. Every `handle_*` call starts with it.
    pub(super) fn advance(&mut self, now: Instant) -> Instant {
        let now = self.clock.map_or(now, |clock| clock.max(now));
        self.clock = Some(now);
        while let Some((conn, timer)) = self.timers.pop_due(now) {
            self.expire(conn, timer, now);
            self.schedule(conn);
        }
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
        // While lines are held, the client is not read: only the release runs.
        let reading = policies && !entry.flood.is_holding();
        let line = after(entry.input.line_since, config.line_timeout).filter(|_| reading);
        let idle = after(entry.input.last_input, config.idle_timeout).filter(|_| reading);
        let release = entry.flood.next_release().filter(|_| policies);
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
        assert!(timers.by_time.is_empty());
    }
}
