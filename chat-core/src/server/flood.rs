//! A client's input that waits: lines over its flood budget (protocol.md,
//! "Address policies": flood control, excess flood, EOF while lines wait),
//! and bytes read while the room waits for its readers ("Limits and
//! policies": room backpressure). `FloodControl` holds the state; the
//! `Server` glue below it frames input, holds it, releases it and
//! finishes a client's input.

use std::collections::VecDeque;
use std::time::Instant;

use super::addresses::Turn;
use super::{ConnId, Output, Reason, Server};
use crate::config::LINE_COST;
use crate::framing::{Frame, LineFramer};
use crate::rate::Bucket;

/// One client's flood control, and its input that waits. While anything
/// waits, every later line waits too, so that lines are handled in order,
/// and the client is not read.
#[derive(Debug)]
pub(super) struct FloodControl {
    /// The line budget; `None` when flood control does not apply.
    budget: Option<Bucket>,
    /// What waits, oldest first: lines over the budget, then (at the back,
    /// at most one) bytes not yet framed.
    held: VecDeque<Held>,
    /// The client closed its side while input waited: it leaves once that
    /// is handled.
    pub(super) eof_pending: bool,
}

/// Input that waits.
#[derive(Debug)]
pub(super) enum Held {
    /// A complete line over the flood budget, as received.
    Line(Box<[u8]>),
    /// A line over `max_line` over the flood budget, already discarded:
    /// its error reply waits.
    TooLong,
    /// Bytes read while the room waited for its readers, not yet framed.
    Unread(Box<[u8]>),
}

/// What holding one more line means for the client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// Within `flood_excess`.
    Queued,
    /// Over `flood_excess`: the client is to be disconnected.
    Excess,
}

impl Held {
    /// Keeps a frame for later.
    pub(super) fn from_frame(frame: Frame<'_>) -> Held {
        match frame {
            Frame::Line(line) => Held::Line(line.into()),
            Frame::TooLong => Held::TooLong,
        }
    }

    /// What it costs the address's flood budget, if it is a line.
    fn cost(&self) -> usize {
        match self {
            Held::Line(bytes) => bytes.len() + LINE_COST,
            Held::TooLong | Held::Unread(_) => LINE_COST,
        }
    }

    /// Bytes it holds.
    fn len(&self) -> usize {
        match self {
            Held::Line(bytes) | Held::Unread(bytes) => bytes.len(),
            Held::TooLong => 0,
        }
    }
}

impl FloodControl {
    /// Flood control with `budget`, or none.
    pub(super) fn new(budget: Option<Bucket>) -> FloodControl {
        FloodControl {
            budget,
            held: VecDeque::new(),
            eof_pending: false,
        }
    }

    /// Whether one more line may be handled at `now`: nothing waits, and
    /// the budget (if any) has room, which this takes.
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        self.held.is_empty()
            && self
                .budget
                .as_mut()
                .is_none_or(|budget| budget.take(now).is_ok())
    }

    /// Holds a line that was not admitted.
    pub(super) fn hold(&mut self, line: Held, flood_excess: usize) -> Hold {
        debug_assert!(
            !matches!(self.held.back(), Some(Held::Unread(_))),
            "lines are framed only once no unread bytes wait"
        );
        self.held.push_back(line);
        if self.held.len() > flood_excess {
            Hold::Excess
        } else {
            Hold::Queued
        }
    }

    /// Keeps bytes read while the room waits, after everything else.
    pub(super) fn hold_unread(&mut self, bytes: &[u8]) {
        if let Some(Held::Unread(unread)) = self.held.back_mut() {
            *unread = [&unread[..], bytes].concat().into();
        } else if !bytes.is_empty() {
            self.held.push_back(Held::Unread(bytes.into()));
        }
    }

    /// Whether bytes not yet framed wait.
    pub(super) fn has_unread(&self) -> bool {
        matches!(self.held.back(), Some(Held::Unread(_)))
    }

    /// What the oldest waiting input costs the address's flood budget, if
    /// it is a line (not unread bytes).
    pub(super) fn front_cost(&self) -> Option<usize> {
        self.held
            .front()
            .filter(|held| !matches!(held, Held::Unread(_)))
            .map(Held::cost)
    }

    /// Whether the client's own budget lets its next line through at `now`.
    pub(super) fn line_ready(&self, now: Instant) -> bool {
        self.budget.is_none_or(|budget| budget.fits(now).is_ok())
    }

    /// Takes the oldest waiting input, taking from the budget if it is a
    /// line (let through by [`FloodControl::line_ready`]); returns it and
    /// whether it was the last.
    pub(super) fn pop(&mut self, now: Instant) -> Option<(Held, bool)> {
        let held = self.held.pop_front()?;
        if !matches!(held, Held::Unread(_)) {
            if let Some(budget) = self.budget.as_mut() {
                budget.charge(now, 1);
            }
        }
        Some((held, self.held.is_empty()))
    }

    /// Lines held (not counting unread bytes).
    pub(super) fn held(&self) -> usize {
        self.held.len() - usize::from(self.has_unread())
    }

    /// Bytes read while the room waited, not yet framed.
    pub(super) fn unread_bytes(&self) -> usize {
        match self.held.back() {
            Some(Held::Unread(bytes)) => bytes.len(),
            _ => 0,
        }
    }

    /// Bytes of input that wait, lines and unread bytes.
    pub(super) fn held_bytes(&self) -> usize {
        self.held.iter().map(Held::len).sum()
    }

    /// Whether any input waits (and the client is not read).
    pub(super) fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// When the client's own budget next lets a line through (if it has
    /// been taken from).
    pub(super) fn line_next(&self) -> Option<Instant> {
        self.budget.and_then(|budget| budget.next_fits())
    }

    /// Forgets what waits: the client has left.
    pub(super) fn clear(&mut self) {
        self.held = VecDeque::new();
        self.eof_pending = false;
    }
}

// The server's side: framing input, and what holding and releasing it does
// to the client.
impl Server {
    /// Frames `bytes` of the joined client in `slot`, none of whose input
    /// waits, and handles each line the room and its budget let through at
    /// `now`; the rest waits, and the client is no longer read.
    pub(super) fn frame_input(
        &mut self,
        conn: ConnId,
        slot: usize,
        now: Instant,
        mut bytes: &[u8],
    ) {
        if self.input_waits(conn, slot, bytes) {
            return;
        }
        // Any LF ends the line in progress, a discarded one included; an
        // unterminated line left after this input started with it.
        let ends_a_line = memchr::memchr(b'\n', bytes).is_some();
        let mut framer = self.take_framer(slot);
        while let Some(frame) = framer.next_frame(&mut bytes) {
            let cost = match frame {
                Frame::Line(line) => line.len() + LINE_COST,
                Frame::TooLong => LINE_COST,
            };
            if self.admit(slot, now, cost) {
                match frame {
                    Frame::Line(line) => self.handle_line(conn, line),
                    Frame::TooLong => self.reply_error_line_too_long(conn),
                }
                self.disconnect_too_slow();
            } else {
                self.hold(conn, Held::from_frame(frame));
            }
            if self.joined_slot(conn).is_none() {
                return;
            }
            // A reader fell behind, or the line was a `/nick` that waits
            // for Redis: the rest waits.
            if self.input_waits(conn, slot, bytes) {
                break;
            }
        }
        let input = &mut self.conns[slot].input;
        input.line_since = match input.line_since {
            _ if !framer.in_line() => None,
            Some(since) if !ends_a_line => Some(since),
            _ => Some(now),
        };
        input.framer = framer;
        self.schedule(conn);
    }

    /// Whether the input of the client in `slot` must wait: the room waits
    /// for its readers, or a `/nick` of the client waits for Redis. If so,
    /// `rest` (input not framed yet) is held and, if there is any, the
    /// client waits for the room or is no longer read.
    fn input_waits(&mut self, conn: ConnId, slot: usize, rest: &[u8]) -> bool {
        let room = self.room.is_paused();
        if !room && self.conns[slot].claim.is_none() {
            return false;
        }
        if !rest.is_empty() {
            self.conns[slot].flood.hold_unread(rest);
            if room {
                self.wait_for_room(conn, slot);
            } else {
                self.stop_reading(slot);
            }
        }
        true
    }

    /// Whether a line of the client in `slot` that costs `cost` may be
    /// handled at `now`: none of its input waits, its line budget has room,
    /// and its address's flood budget has room with nobody of the address
    /// waiting for it; if so, takes from both.
    pub(super) fn admit(&mut self, slot: usize, now: Instant, cost: usize) -> bool {
        let entry = &mut self.conns[slot];
        if let Some(ip) = entry.policy_address {
            if self.addresses.turn(ip, entry.id) != Turn::Free {
                return false;
            }
        }
        let mut address = entry.policy_address.and_then(|ip| self.addresses.flood(ip));
        if address
            .as_ref()
            .is_some_and(|bucket| bucket.fits(now).is_err())
        {
            return false;
        }
        if !entry.flood.admit(now) {
            return false;
        }
        if let Some(address) = address.as_mut() {
            address.charge(now, cost);
        }
        true
    }

    /// When the next line that waits of the client in `slot` may be let
    /// through, if one waits first and it is not another's turn of its
    /// address.
    pub(super) fn next_release(&mut self, slot: usize) -> Option<Instant> {
        let entry = &self.conns[slot];
        entry.flood.front_cost()?;
        let line = entry.flood.line_next();
        let Some(ip) = entry.policy_address else {
            return line;
        };
        if self.addresses.turn(ip, entry.id) == Turn::Later {
            return None;
        }
        let address = self
            .addresses
            .flood(ip)
            .and_then(|bucket| bucket.next_fits());
        line.max(address)
    }

    /// Takes the oldest waiting input of the client in `slot`, if it may
    /// be handled at `now`: unread bytes whenever (the room is open), a
    /// line when it is the client's turn of its address, and its own budget
    /// and its address's let it through. Returns it, whether it was the
    /// last, and whose turn of the address it is now.
    fn take_held(&mut self, slot: usize, now: Instant) -> Option<(Held, bool, Option<ConnId>)> {
        let entry = &mut self.conns[slot];
        let id = entry.id;
        let mut next = None;
        if let Some(cost) = entry.flood.front_cost() {
            if !entry.flood.line_ready(now) {
                return None;
            }
            if let Some(ip) = entry.policy_address {
                if self.addresses.turn(ip, id) == Turn::Later {
                    return None;
                }
                if let Some(bucket) = self.addresses.flood(ip) {
                    bucket.fits(now).ok()?;
                    bucket.charge(now, cost);
                }
                // The others of the address have their turn first.
                next = self.addresses.stop_waiting(ip, id);
            }
        }
        let (held, drained) = entry.flood.pop(now)?;
        if let Some(ip) = entry
            .policy_address
            .filter(|_| entry.flood.front_cost().is_some())
        {
            // More lines wait: after the others of the address.
            self.addresses.wait(ip, id);
        }
        Some((held, drained, next))
    }

    /// Keeps a line over the client's flood budget for later; stops
    /// reading it at the first, disconnects it past `flood_excess`.
    pub(super) fn hold(&mut self, conn: ConnId, held: Held) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        match self.conns[slot].flood.hold(held, self.config.flood_excess) {
            Hold::Excess => self.disconnect(conn, Reason::ExcessFlood),
            Hold::Queued => {
                // Its lines are let through when its address's clients'
                // turns come to it.
                if let Some(ip) = self.conns[slot].policy_address {
                    self.addresses.wait(ip, conn);
                }
                self.stop_reading(slot);
                self.schedule(conn);
            }
        }
    }

    /// Handles the input that waits, as far as the room and the budget let
    /// it through at `now`; once none is left, reading resumes (or a
    /// pending EOF is finished).
    pub(super) fn release_held(&mut self, conn: ConnId, now: Instant) {
        while let Some(slot) = self.joined_slot(conn) {
            if self.room.is_paused() {
                return self.wait_for_room(conn, slot);
            }
            if self.conns[slot].claim.is_some() {
                // Handled once the claim is answered.
                return;
            }
            let entry = &mut self.conns[slot];
            if !entry.flood.is_holding() {
                // Only an EOF waited (for the room).
                if std::mem::take(&mut entry.flood.eof_pending) {
                    self.finish_input(conn, now);
                }
                return;
            }
            let Some((held, drained, next)) = self.take_held(slot, now) else {
                return;
            };
            if let Some(next) = next {
                // Its turn of the address: handled at the end of the call.
                self.release_later(next);
            }
            let entry = &mut self.conns[slot];
            entry.input.last_input = Some(now);
            let eof_pending = entry.flood.eof_pending;
            if drained || matches!(held, Held::Unread(_)) {
                // Framing unread bytes may hold lines again; then reading
                // stops again.
                self.resume_reading(slot);
            }
            match held {
                Held::Line(line) => self.handle_line(conn, &line),
                Held::TooLong => self.reply_error_line_too_long(conn),
                Held::Unread(bytes) => self.frame_input(conn, slot, now, &bytes),
            }
            self.disconnect_too_slow();
            if self
                .joined_slot(conn)
                .is_some_and(|slot| !self.conns[slot].flood.is_holding())
            {
                if eof_pending {
                    self.conns[slot].flood.eof_pending = false;
                    self.finish_input(conn, now);
                }
                return;
            }
        }
    }

    /// The client closed its side: handles an unterminated last line, then
    /// the client leaves. Its input waits (and it leaves later) while the
    /// room waits or lines of it wait.
    pub(super) fn finish_input(&mut self, conn: ConnId, now: Instant) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let waits = self.conns[slot].flood.is_holding() || self.conns[slot].claim.is_some();
        if self.room.is_paused() || waits {
            self.conns[slot].flood.eof_pending = true;
            if self.room.is_paused() {
                self.wait_for_room(conn, slot);
            }
            return;
        }
        let mut framer = self.take_framer(slot);
        if let Some(line) = framer.finish() {
            // The last line counts against the budget like any other.
            if !self.admit(slot, now, line.len() + LINE_COST) {
                self.conns[slot].flood.eof_pending = true;
                return self.hold(conn, Held::Line(line.into()));
            }
            self.handle_line(conn, line);
            self.disconnect_too_slow();
        }
        if self.joined_slot(conn).is_some() {
            self.leave(conn, Reason::Eof);
            self.disconnect_too_slow();
        }
    }

    /// Asks the driver to stop reading the client in `slot`, unless it has
    /// already, or the client closed its side.
    pub(super) fn stop_reading(&mut self, slot: usize) {
        let entry = &mut self.conns[slot];
        if entry.input.reading && !entry.flood.eof_pending {
            entry.input.reading = false;
            self.outputs.push_back(Output::StopReading(entry.id));
        }
    }

    /// Asks the driver to read the client in `slot` again, if it was
    /// stopped and has not closed its side. The rest of a line being sent
    /// waited in the socket, not in the client: its time starts again.
    pub(super) fn resume_reading(&mut self, slot: usize) {
        let entry = &mut self.conns[slot];
        if !entry.input.reading && !entry.flood.eof_pending {
            entry.input.reading = true;
            if let Some(now) = self.clock.filter(|_| entry.input.line_since.is_some()) {
                entry.input.line_since = Some(now);
            }
            self.outputs.push_back(Output::ResumeReading(entry.id));
        }
    }

    /// Takes the connection's framer out of its slot while its lines are
    /// handled, so that handling them may change any connection, this one
    /// included.
    pub(super) fn take_framer(&mut self, slot: usize) -> LineFramer {
        std::mem::replace(&mut self.conns[slot].input.framer, LineFramer::new(0))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Rate;

    #[test]
    fn lines_wait_in_order_for_the_budget() {
        let start = Instant::now();
        let rate = Rate {
            burst: 1,
            interval: Duration::from_secs(1),
        };
        let mut flood = FloodControl::new(Some(Bucket::new(rate)));
        assert!(flood.admit(start));
        assert!(!flood.admit(start));
        assert_eq!(
            flood.hold(Held::Line(b"a".as_slice().into()), 2),
            Hold::Queued
        );
        assert_eq!(flood.hold(Held::TooLong, 2), Hold::Queued);
        assert_eq!(flood.line_next(), Some(start + rate.interval));
        assert_eq!(flood.front_cost(), Some(1 + LINE_COST));
        // Nothing jumps the queue, even with budget.
        assert!(!flood.admit(start + rate.interval * 5));
        let next = start + rate.interval;
        assert!(!flood.line_ready(next - Duration::from_nanos(1)));
        assert!(flood.line_ready(next));
        assert!(matches!(flood.pop(next), Some((Held::Line(_), false))));
        assert!(!flood.line_ready(next));
        let last = next + rate.interval;
        assert_eq!(flood.line_next(), Some(last));
        assert!(matches!(flood.pop(last), Some((Held::TooLong, true))));
        assert!(!flood.is_holding());
        assert_eq!(flood.front_cost(), None);
        flood.hold_unread(b"rest");
        assert!(flood.is_holding() && flood.has_unread());
        assert_eq!(
            (flood.held(), flood.held_bytes(), flood.front_cost()),
            (0, 4, None)
        );
        assert!(matches!(flood.pop(last), Some((Held::Unread(_), true))));
        assert_eq!(flood.hold(Held::TooLong, 0), Hold::Excess);
    }
}
