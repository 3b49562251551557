//! Flood control for one client: its line budget and the lines waiting
//! for it (protocol.md, "Address policies": flood control, excess flood,
//! EOF while lines wait). `FloodControl` holds the state; the `Server`
//! glue below it holds, releases and finishes a client's input.

use std::collections::VecDeque;
use std::time::Instant;

use super::{ConnId, Output, Reason, Server};
use crate::framing::{Frame, LineFramer};
use crate::rate::Bucket;

/// One client's flood control. While any line is held, every later line is
/// held too, so that lines are handled in order.
#[derive(Debug)]
pub(super) struct FloodControl {
    /// The line budget; `None` when flood control does not apply.
    budget: Option<Bucket>,
    /// Lines over the budget, oldest first; reading is stopped while there
    /// are any.
    held: VecDeque<Held>,
    /// The client closed its side while lines were held: it leaves once
    /// they are handled.
    pub(super) eof_pending: bool,
}

/// A line waiting for flood control.
#[derive(Debug)]
pub(super) enum Held {
    /// A complete line, as received.
    Line(Box<[u8]>),
    /// A line over `max_line`, already discarded: its error reply waits.
    TooLong,
}

/// What holding one more line means for the client.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// The first held line: stop reading, wait for the budget.
    First,
    /// Behind others, within `flood_excess`.
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

    /// Whether one more line may be handled at `now`: nothing is held, and
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
        self.held.push_back(line);
        match self.held.len() {
            len if len > flood_excess => Hold::Excess,
            1 => Hold::First,
            _ => Hold::Queued,
        }
    }

    /// The oldest held line, if the budget lets it through at `now` (taking
    /// from it), and whether it was the last one held.
    pub(super) fn release(&mut self, now: Instant) -> Option<(Held, bool)> {
        if self.held.is_empty() {
            return None;
        }
        self.budget.as_mut()?.take(now).ok()?;
        let line = self.held.pop_front()?;
        Some((line, self.held.is_empty()))
    }

    /// Lines held.
    pub(super) fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether any line is held (and reading is stopped).
    pub(super) fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// When the next held line fits the budget, while any is held.
    pub(super) fn next_release(&self) -> Option<Instant> {
        if self.held.is_empty() {
            return None;
        }
        self.budget.and_then(|budget| budget.next_fits())
    }

    /// Forgets the held lines: the client has left.
    pub(super) fn clear(&mut self) {
        self.held = VecDeque::new();
        self.eof_pending = false;
    }
}

// The server's side: what holding and releasing lines does to the client.
impl Server {
    /// Keeps a line over the client's flood budget for later; stops
    /// reading it at the first, disconnects it past `flood_excess`.
    pub(super) fn hold(&mut self, conn: ConnId, held: Held) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let flood = &mut self.conns[slot].flood;
        match flood.hold(held, self.config.flood_excess) {
            Hold::Excess => self.disconnect(conn, Reason::ExcessFlood),
            Hold::First => {
                if !flood.eof_pending {
                    self.outputs.push_back(Output::StopReading(conn));
                }
                self.schedule(conn);
            }
            Hold::Queued => {}
        }
    }

    /// Handles the held lines that flood control lets through at `now`;
    /// once none is left, reading resumes (or a pending EOF is finished).
    pub(super) fn release_held(&mut self, conn: ConnId, now: Instant) {
        while let Some(slot) = self.joined_slot(conn) {
            let entry = &mut self.conns[slot];
            let Some((held, drained)) = entry.flood.release(now) else {
                return;
            };
            entry.input.last_input = Some(now);
            let eof_pending = entry.flood.eof_pending;
            if drained {
                // The rest of a line being sent waited in the socket, not
                // in the client: its time starts again.
                if entry.input.line_since.is_some() {
                    entry.input.line_since = Some(now);
                }
                if !eof_pending {
                    self.outputs.push_back(Output::ResumeReading(conn));
                }
            }
            match held {
                Held::Line(line) => self.handle_line(conn, &line),
                Held::TooLong => self.reply_error_line_too_long(conn),
            }
            self.disconnect_too_slow();
            if drained {
                if eof_pending && self.joined_slot(conn).is_some() {
                    self.conns[slot].flood.eof_pending = false;
                    self.finish_input(conn, now);
                }
                return;
            }
        }
    }

    /// The client closed its side and nothing of it is held: handles an
    /// unterminated last line, then the client leaves.
    pub(super) fn finish_input(&mut self, conn: ConnId, now: Instant) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let mut framer = self.take_framer(slot);
        if let Some(line) = framer.finish() {
            // The last line counts against the budget like any other.
            if !self.conns[slot].flood.admit(now) {
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
            Hold::First
        );
        assert_eq!(flood.hold(Held::TooLong, 2), Hold::Queued);
        assert_eq!(flood.next_release(), Some(start + rate.interval));
        // Nothing jumps the queue, even with budget.
        assert!(!flood.admit(start + rate.interval * 5));
        let next = start + rate.interval;
        assert!(flood.release(next - Duration::from_nanos(1)).is_none());
        assert!(matches!(flood.release(next), Some((Held::Line(_), false))));
        assert!(flood.release(next).is_none());
        let last = next + rate.interval;
        assert!(matches!(flood.release(last), Some((Held::TooLong, true))));
        assert!(!flood.is_holding());
        assert_eq!(flood.next_release(), None);
        assert_eq!(flood.hold(Held::TooLong, 0), Hold::Excess);
    }
}
