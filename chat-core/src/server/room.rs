//! Room backpressure (protocol.md, "Limits and policies": the room waits
//! for its readers): the room takes in no more than its readers take out.
//!
//! A client whose output goes over `room_queue` has fallen *behind*, until
//! it is back to half of that. While a client that is behind *holds* the
//! room, the server handles no client's input: what arrives waits unread
//! and the driver stops reading the sender (as flood control does), so TCP
//! slows the senders down instead of the readers being dropped.
//!
//! A client that is behind holds the room:
//! - while its socket has room (the driver has not reported it full with
//!   `handle_blocked`): then it is the server's own writing that is behind,
//!   and the room waits for it, for up to [`HOLD_MAX`] after the client
//!   fell behind or after its last write;
//! - once its socket is full, only for what it is seen to read: every
//!   write reported until its output is all written is the client reading
//!   what was sent before, and holds the room for the time those bytes take
//!   at `min_read_rate`, but no longer than twice the time they were read
//!   in (since the socket was reported full, or the write before), and at
//!   most [`HOLD_MAX`] from that write. Bytes the socket takes a moment
//!   after it filled prove only a moment's reading: a kernel grows a
//!   connection's buffers as it warms up, so a client that never reads may
//!   take tens of kilobytes milliseconds after its socket filled, which at
//!   `min_read_rate` would pass for a second's reading. A client
//!   that has been seen reading (a write reported while its socket was
//!   full, at any time before) and whose socket fills while it is behind
//!   holds the room for [`HOLD_FIRST`] even if it was not seen to read
//!   lately, so that its next read can come. A client never seen reading
//!   gets no such grace: the room falls behind in bursts (the input that
//!   waited for a hold is handled at once when it ends), and a client that
//!   never reads would otherwise hold every such burst for [`HOLD_FIRST`].
//!
//! So a client that does not read holds the room only while the server's
//! own writing is behind, and for twice the moment its kernel took to
//! accept more after its socket filled; one
//! that stops reading holds it at most [`HOLD_MAX`]; one that
//! reads slower than `min_read_rate` holds it part of the time only, falls
//! further behind and is dropped at the output limits like any client that
//! does not keep up; one that reads at least `min_read_rate` holds it until
//! it is back to half of `room_queue`.
//!
//! `Room` counts the clients holding the room and lists those whose input
//! waits for it; a client's own state is in its `Outgoing` (`blocked`,
//! `reads_until`, `behind`). Below them, the `Server` glue.

use std::time::{Duration, Instant};

use super::conn::Outgoing;
use super::timer::{Timer, TimerSet};
use super::{ConnId, Server};

/// No write lets its client hold the room for longer than this after it.
pub(super) const HOLD_MAX: Duration = Duration::from_secs(1);

/// A write to a full socket holds the room at most this many times the
/// time since the socket was reported full, or since the write before: a
/// client reading steadily at `min_read_rate` or faster is written to again
/// before that runs out, even if the next read takes twice as long.
pub(super) const HOLD_PER_TIME_READ: u32 = 2;

/// How long a client seen reading before, whose socket fills while it is
/// behind, holds the room before it is seen to read again.
pub(super) const HOLD_FIRST: Duration = Duration::from_millis(50);

/// Which clients hold the room, and whose input waits for it.
#[derive(Debug, Default)]
pub(super) struct Room {
    /// Clients behind whose time to hold the room has not run out.
    holders: usize,
    /// Clients with input that waits for the room, or whose turn of their
    /// address's flood budget came during a call, in the order they
    /// started waiting (each once: `Input::parked`).
    waiting: Vec<ConnId>,
}

/// A client that has fallen behind the room.
#[derive(Debug)]
pub(super) struct Behind {
    /// When it fell behind, or last reported a write.
    progress_at: Instant,
    /// Until when it holds the room since its socket filled while it was
    /// behind ([`HOLD_FIRST`]).
    first_until: Option<Instant>,
    /// It is counted in `Room::holders`, and its `Timer::RoomHold` is armed.
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

    /// The joined client `conn`, whose output just went over `room_queue`
    /// at `now`, falls behind, and may hold the room at once. Returns
    /// whether the room has just started to wait.
    pub(super) fn fall_behind(
        &mut self,
        conn: ConnId,
        outgoing: &mut Outgoing,
        timers: &mut TimerSet,
        now: Instant,
    ) -> bool {
        outgoing.behind = Some(Box::new(Behind {
            progress_at: now,
            first_until: None,
            holding: false,
        }));
        self.update(conn, outgoing, timers, now)
    }

    /// Holds the room for `conn` (whose output is `outgoing`) until it
    /// should, or releases it. Returns whether the room has just started to
    /// wait.
    fn update(
        &mut self,
        conn: ConnId,
        outgoing: &mut Outgoing,
        timers: &mut TimerSet,
        now: Instant,
    ) -> bool {
        let blocked = outgoing.blocked.is_some();
        let reads_until = outgoing.reads_until;
        let Some(behind) = outgoing.behind.as_mut() else {
            return false;
        };
        let until = if blocked {
            reads_until.max(behind.first_until)
        } else {
            Some(behind.progress_at + HOLD_MAX)
        };
        match until.filter(|&until| until > now) {
            Some(until) => {
                timers.set(conn, Timer::RoomHold, Some(until));
                if std::mem::replace(&mut behind.holding, true) {
                    return false;
                }
                self.holders += 1;
                self.holders == 1
            }
            None => {
                if std::mem::take(&mut behind.holding) {
                    timers.set(conn, Timer::RoomHold, None);
                    self.holders -= 1;
                }
                false
            }
        }
    }
}

// The server's side: holding the room, and the input that waits for it.
impl Server {
    /// The joined client in `slot` reported `written` bytes written at
    /// `now`: if its socket was full, that is it reading; once back to half
    /// of `room_queue` it is no longer behind.
    pub(super) fn room_written(&mut self, slot: usize, written: usize, now: Instant) {
        let Some(room_queue) = self.config.room_queue else {
            return;
        };
        let conn = &mut self.conns[slot];
        let outgoing = &mut conn.outgoing;
        if let Some(since) = outgoing.blocked.as_mut() {
            let read_in = now - std::mem::replace(since, now);
            outgoing.seen_reading = true;
            let rate = f64::from(self.config.min_read_rate);
            let until = now
                + Duration::from_secs_f64(written as f64 / rate)
                    .min(HOLD_PER_TIME_READ * read_in)
                    .min(HOLD_MAX);
            outgoing.reads_until = Some(outgoing.reads_until.map_or(until, |t| t.max(until)));
        }
        if outgoing.pending() == 0 {
            outgoing.blocked = None;
        }
        if outgoing.pending() <= room_queue / 2 {
            return self.room_leave(slot);
        }
        if let Some(behind) = outgoing.behind.as_mut() {
            behind.progress_at = now;
            self.update_hold(slot, now);
        }
    }

    /// The driver reported the socket of the joined client in `slot` full:
    /// from now on it holds the room only for what it is seen to read.
    pub(super) fn room_blocked(&mut self, slot: usize, now: Instant) {
        let outgoing = &mut self.conns[slot].outgoing;
        let filled = outgoing.blocked.is_none() && outgoing.pending() > 0;
        if filled {
            outgoing.blocked = Some(now);
        }
        if let Some(behind) = outgoing.behind.as_mut() {
            if filled && behind.first_until.is_none() && outgoing.seen_reading {
                behind.first_until = Some(now + HOLD_FIRST);
            }
            self.update_hold(slot, now);
        }
    }

    /// The client's time to hold the room may have run out
    /// (`Timer::RoomHold`).
    pub(super) fn room_hold_over(&mut self, conn: ConnId, now: Instant) {
        if let Some(slot) = self.joined_slot(conn) {
            self.update_hold(slot, now);
        }
    }

    /// Holds the room for the client in `slot` until it should, or
    /// releases it.
    fn update_hold(&mut self, slot: usize, now: Instant) {
        let conn = &mut self.conns[slot];
        if self
            .room
            .update(conn.id, &mut conn.outgoing, &mut self.timers, now)
        {
            self.pause_room();
        }
    }

    /// The client in `slot` is back from behind, or leaves: it no longer
    /// holds the room.
    pub(super) fn room_leave(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if let Some(behind) = conn.outgoing.behind.take() {
            if behind.holding {
                self.timers.set(conn.id, Timer::RoomHold, None);
                self.room.holders -= 1;
            }
        }
    }

    /// The room has just started to wait: lines waiting for flood control
    /// wait for the room too, and their release is not due until it opens.
    pub(super) fn pause_room(&mut self) {
        for conn in self.timers.cancel_kind(Timer::FloodRelease) {
            if let Some(slot) = self.joined_slot(conn) {
                self.wait_for_room(conn, slot);
            }
        }
    }

    /// Input of the joined client waits for the room: it joins the waiting
    /// clients (once) and is no longer read.
    pub(super) fn wait_for_room(&mut self, conn: ConnId, slot: usize) {
        self.release_later(conn);
        self.stop_reading(slot);
    }

    /// Handles what waits of `conn` at the end of the call (`release_room`),
    /// or once the room opens: its turn of its address's flood budget came.
    pub(super) fn release_later(&mut self, conn: ConnId) {
        if let Some(slot) = self.joined_slot(conn) {
            if !std::mem::replace(&mut self.conns[slot].input.parked, true) {
                self.room.waiting.push(conn);
            }
        }
    }

    /// If the room is open, handles the input that waited for it (and that
    /// of clients whose turn of their address came): the clients that sent
    /// least first, so that the client that floods most is the one held
    /// back. Handling it may make the room wait again; the rest then waits
    /// on. Call at the end of every call.
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
            // Parks it again if the room has started to wait again.
            self.release_held(conn, now);
            self.schedule(conn);
        }
        // Keep the list's room for the next time.
        if self.room.waiting.is_empty() {
            self.room.waiting = waiting;
        }
    }
}
