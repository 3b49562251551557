//! Room backpressure (protocol.md, "Limits and policies": the room waits
//! for its readers): the room takes in no more than its readers take out.
//!
//! A client whose output goes over `room_queue` has fallen *behind*, until
//! it is back to half of that. While a client that is behind *holds* the
//! room, the server handles no client's input: what arrives waits unread
//! and the driver stops reading the sender (as flood control does), so TCP
//! slows the senders down instead of the readers being dropped.
//!
//! A client holds the room only for what it earns by reading: each write
//! reported while it is behind holds the room for the time those bytes take
//! at `min_read_rate`, but for no longer than [`HOLD_GAPS`] times the time
//! since its previous write (or since it fell behind) and never more than
//! [`HOLD_MAX`] ahead. So a client that has fallen behind and does not read
//! never holds the room; one that just stopped reading holds it for a few
//! of its recent write intervals; one that reads slower than
//! `min_read_rate` holds it for part of the time only, falls further behind
//! and is dropped at the output limits like any client that does not keep
//! up. A client reading at least `min_read_rate` holds it until it is back
//! to half of `room_queue`.
//!
//! `Room` counts the clients holding the room and lists those whose input
//! waits for it; each client's own state is its `Behind`. Below them, the
//! `Server` glue.

use std::time::{Duration, Instant};

use super::timer::Timer;
use super::{ConnId, Server};

/// A write holds the room for at most this many times the time since the
/// client's previous write: a client that was writing quickly and stops
/// holds the room only briefly.
pub(super) const HOLD_GAPS: u32 = 4;

/// No write holds the room for longer than this after it.
pub(super) const HOLD_MAX: Duration = Duration::from_secs(1);

/// Which clients hold the room, and whose input waits for it.
#[derive(Debug, Default)]
pub(super) struct Room {
    /// Clients behind whose time to hold the room has not run out.
    holders: usize,
    /// Clients with input that waits for the room, in the order they
    /// started waiting (each once: `Input::parked`).
    waiting: Vec<ConnId>,
}

/// A client that has fallen behind the room.
#[derive(Debug)]
pub(super) struct Behind {
    /// When it last reported a write, or fell behind.
    last_write: Instant,
    /// Until when it holds the room.
    holds_until: Instant,
    /// It is counted in `Room::holders`, and its `Timer::RoomHold` is armed
    /// for `holds_until`.
    holding: bool,
}

impl Room {
    /// Whether the server takes in no input now.
    pub(super) fn is_paused(&self) -> bool {
        self.holders > 0
    }

    /// Clients holding the room.
    pub(super) fn holders(&self) -> usize {
        self.holders
    }
}

impl Behind {
    /// A client that fell behind at `now`: it holds the room once it writes.
    pub(super) fn new(now: Instant) -> Behind {
        Behind {
            last_write: now,
            holds_until: now,
            holding: false,
        }
    }

    /// How long a write of `written` bytes at `now` lets the client hold
    /// the room: the time those bytes take at `min_read_rate`, at most
    /// [`HOLD_GAPS`] times the time since the previous write, and at most
    /// [`HOLD_MAX`].
    fn earned(&self, written: usize, now: Instant, min_read_rate: u32) -> Duration {
        let at_rate = Duration::from_secs_f64(written as f64 / f64::from(min_read_rate));
        let gap = now.saturating_duration_since(self.last_write);
        at_rate.min(gap.saturating_mul(HOLD_GAPS)).min(HOLD_MAX)
    }
}

// The server's side: falling behind, holding the room, and the input that
// waits for it.
impl Server {
    /// The joined client in `slot` reported `written` bytes written at
    /// `now`: it is back from behind, or holds the room for what it earned.
    pub(super) fn room_written(&mut self, slot: usize, written: usize, now: Instant) {
        let Some(room_queue) = self.config.room_queue else {
            return;
        };
        let min_read_rate = self.config.min_read_rate;
        let conn = &mut self.conns[slot];
        let id = conn.id;
        let outgoing = &mut conn.outgoing;
        if outgoing.pending() <= room_queue / 2 {
            if outgoing.behind.take().is_some_and(|behind| behind.holding) {
                self.timers.set(id, Timer::RoomHold, None);
                self.room.holders -= 1;
            }
            return;
        }
        let Some(behind) = outgoing.behind.as_mut() else {
            return;
        };
        let until = now + behind.earned(written, now, min_read_rate);
        behind.last_write = now;
        if until > behind.holds_until && until > now {
            behind.holds_until = until;
            let newly = !std::mem::replace(&mut behind.holding, true);
            self.timers.set(id, Timer::RoomHold, Some(until));
            if newly {
                self.room.holders += 1;
                if self.room.holders == 1 {
                    self.pause_room();
                }
            }
        }
    }

    /// The room has just started to wait: lines waiting for flood control
    /// wait for the room too, and their release is not due until it opens.
    fn pause_room(&mut self) {
        for conn in self.timers.cancel_kind(Timer::FloodRelease) {
            if let Some(slot) = self.joined_slot(conn) {
                self.wait_for_room(conn, slot);
            }
        }
    }

    /// The client's time to hold the room ran out (`Timer::RoomHold`).
    pub(super) fn room_hold_over(&mut self, conn: ConnId) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let behind = self.conns[slot].outgoing.behind.as_mut();
        if let Some(behind) = behind.filter(|behind| behind.holding) {
            behind.holding = false;
            self.room.holders -= 1;
        }
    }

    /// The client in `slot` leaves: it no longer holds the room (its timers
    /// are cancelled with the others).
    pub(super) fn room_leave(&mut self, slot: usize) {
        let behind = self.conns[slot].outgoing.behind.take();
        if behind.is_some_and(|behind| behind.holding) {
            self.room.holders -= 1;
        }
    }

    /// Input of the joined client waits for the room: it joins the waiting
    /// clients (once) and is no longer read.
    pub(super) fn wait_for_room(&mut self, conn: ConnId, slot: usize) {
        if !std::mem::replace(&mut self.conns[slot].input.parked, true) {
            self.room.waiting.push(conn);
        }
        self.stop_reading(slot);
    }

    /// If the room is open, handles the input that waited for it: the
    /// clients that sent least first, so that the client that floods most
    /// is the one held back. Call at the end of every call that may have
    /// opened it.
    pub(super) fn release_room(&mut self, now: Instant) {
        if self.room.is_paused() || self.room.waiting.is_empty() {
            return;
        }
        let mut waiting = std::mem::take(&mut self.room.waiting);
        waiting.sort_by_cached_key(|&conn| {
            let held = self
                .slot_of(conn)
                .map_or(0, |slot| self.conns[slot].flood.held_bytes());
            (held, conn)
        });
        for &conn in &waiting {
            if let Some(slot) = self.slot_of(conn) {
                self.conns[slot].input.parked = false;
            }
        }
        for conn in waiting.drain(..) {
            // Handling it cannot pause the room again: only a write does.
            debug_assert!(!self.room.is_paused());
            self.release_held(conn, now);
            self.schedule(conn);
        }
        // Keep the list's room for the next time.
        if self.room.waiting.is_empty() {
            self.room.waiting = waiting;
        }
    }
}
