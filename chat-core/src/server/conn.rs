//! One connection's state, grouped by concern: its input (framing and the
//! times the line and idle timeouts run from), its outgoing queue, its flood
//! control, and the address whose policies apply to it.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::ConnId;
use super::flood::FloodControl;
use super::room::Behind;
use crate::broadcast::OutgoingQueue;
use crate::config::{Config, LINE_COST, Rate};
use crate::framing::LineFramer;
use crate::rate::Bucket;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// An unused slot, kept for the next connection.
    Free,
    /// Accepted from `peer`, its bytes not ready for chat yet (a TLS
    /// handshake under way): counts against `max_clients` and its
    /// address's limits, holds no nick, and is not told anything or told
    /// of until `Server::handle_ready`.
    Connecting {
        /// Where it connected from, for the log.
        peer: SocketAddr,
    },
    /// Accepted by a node of a shared room from `peer`, waiting for Redis
    /// to grant its generated nick (`nick`), then for its join to be read
    /// back, before it is welcomed. Counts against `max_clients`; its input
    /// waits, and it is not read.
    Claiming {
        /// Where it connected from, for the log.
        peer: SocketAddr,
    },
    /// In the chat: holds a nick, sends and receives.
    Joined,
    /// Told to close; waiting for the driver's `handle_closed`.
    /// `admitted` says whether it counts against `max_clients`.
    Closing { admitted: bool },
}

/// One slot of `Server::conns`.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) id: ConnId,
    pub(super) state: State,
    pub(super) nick: String,
    /// The address whose limits the connection counts against; `None` when
    /// the address policies do not apply to it (loopback, unless
    /// `limit_loopback`), or it was refused.
    pub(super) policy_address: Option<IpAddr>,
    pub(super) input: Input,
    pub(super) outgoing: Outgoing,
    pub(super) flood: FloodControl,
    /// The budget for nick changes, when the policies apply to the client.
    pub(super) nick_changes: Option<Bucket>,
    /// Its join was not logged (too many from its address): nor is its
    /// leave.
    pub(super) quiet: bool,
    /// A `/nick` of the joined client that Redis is asked to grant, on a
    /// node of a shared room. Its input waits meanwhile.
    pub(super) claim: Option<String>,
}

/// What the client sends: its line in progress, and the times the idle and
/// incomplete-line timeouts run from.
#[derive(Debug)]
pub(super) struct Input {
    pub(super) framer: LineFramer,
    /// When the client last sent something (or a held line of it was handled).
    pub(super) last_input: Option<Instant>,
    /// Since when the client holds an unterminated line.
    pub(super) line_since: Option<Instant>,
    /// The driver reads the client's socket: no `StopReading` is out.
    pub(super) reading: bool,
    /// The client is in `Room::waiting`: input of it waits for the room.
    pub(super) parked: bool,
}

/// What the server sends the client, and what it counts against the
/// client's output limits: each line its bytes and [`LINE_COST`], from when
/// it is queued until the driver reports its last byte written.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// Lines not yet handed to the driver: its place in the broadcast log
    /// and its private lines.
    pub(super) queue: OutgoingQueue,
    /// What the queued lines cost.
    queued: usize,
    /// What each `poll_transmit` handed the driver and it has not reported
    /// written, oldest first: the bytes not yet written, and the line costs
    /// of the batch, released with its last byte.
    in_flight: VecDeque<(usize, usize)>,
    /// What `in_flight` costs in all.
    in_flight_cost: usize,
    /// An `Output::Transmit` is out and `poll_transmit` has not been called since.
    pub(super) transmit_signalled: bool,
    /// Since when the client's output is over `soft_queue`.
    pub(super) over_soft_since: Option<Instant>,
    /// The driver reported the socket full (`handle_blocked`) and not all
    /// output is written since: every write reported is the client reading,
    /// over the time since this instant, when the socket was reported full
    /// or the write before was reported (see `room`).
    pub(super) blocked: Option<Instant>,
    /// Until when what the client was seen to read lets it hold the room
    /// (see `room`).
    pub(super) reads_until: Option<Instant>,
    /// Set while the client has fallen behind the room (see `room`).
    pub(super) behind: Option<Box<Behind>>,
    /// A write was once reported while the socket was full: the client has
    /// been seen reading (see `room`, [`HOLD_FIRST`](super::room)).
    pub(super) seen_reading: bool,
}

impl Outgoing {
    /// What the server holds for the client: queued, or handed to the
    /// driver and not reported written.
    pub(super) fn pending(&self) -> usize {
        self.queued + self.in_flight_cost
    }

    /// What a line of `len` bytes costs the client's queue.
    pub(super) fn cost(len: usize) -> usize {
        len + LINE_COST
    }

    /// A line of `len` bytes is queued.
    pub(super) fn queued(&mut self, len: usize) {
        self.queued += Outgoing::cost(len);
    }

    /// `poll_transmit` handed the driver `lines` queued lines, `bytes` in all.
    pub(super) fn taken(&mut self, bytes: usize, lines: usize) {
        if lines == 0 {
            return;
        }
        let cost = bytes + lines * LINE_COST;
        debug_assert!(cost <= self.queued, "took more than was queued");
        self.queued = self.queued.saturating_sub(cost);
        self.in_flight.push_back((bytes, lines * LINE_COST));
        self.in_flight_cost += cost;
    }

    /// The driver wrote `written` bytes of what it was handed: they, and
    /// the line costs of each batch whose last byte they are, are released.
    pub(super) fn written(&mut self, mut written: usize) {
        while written > 0 {
            let Some((bytes, lines)) = self.in_flight.front_mut() else {
                break;
            };
            let done = written.min(*bytes);
            *bytes -= done;
            written -= done;
            self.in_flight_cost -= done;
            if *bytes == 0 {
                self.in_flight_cost -= *lines;
                self.in_flight.pop_front();
            }
        }
        if self.in_flight.is_empty() {
            // A client is idle most of the time: it keeps no room for batches.
            self.in_flight = VecDeque::new();
        }
    }

    /// Forgets everything held: the client is dropped without its output.
    pub(super) fn drop_all(&mut self) {
        self.queued = 0;
        self.in_flight = VecDeque::new();
        self.in_flight_cost = 0;
    }
}

impl Conn {
    /// A connection accepted at `now`: joined under `nick`, or refused
    /// (`None`): closing, not counted against `max_clients`, and under no
    /// policy.
    pub(super) fn accepted(
        id: ConnId,
        nick: Option<String>,
        policy_address: Option<IpAddr>,
        config: &Config,
        queue: OutgoingQueue,
        now: Instant,
    ) -> Conn {
        let policy_address = policy_address.filter(|_| nick.is_some());
        let bucket = |rate: Option<Rate>| policy_address.and(rate).map(Bucket::new);
        Conn {
            id,
            state: match nick {
                Some(_) => State::Joined,
                None => State::Closing { admitted: false },
            },
            nick: nick.unwrap_or_default(),
            policy_address,
            input: Input {
                framer: LineFramer::new(config.max_line),
                last_input: Some(now),
                line_since: None,
                reading: true,
                parked: false,
            },
            outgoing: Outgoing {
                queue,
                ..Outgoing::default()
            },
            flood: FloodControl::new(bucket(config.flood)),
            nick_changes: bucket(config.nick_rate),
            quiet: false,
            claim: None,
        }
    }

    /// An empty slot; `id` is the last id it held, so stale ids stay stale.
    pub(super) fn free(id: ConnId) -> Conn {
        Conn {
            id,
            state: State::Free,
            nick: String::new(),
            policy_address: None,
            input: Input {
                framer: LineFramer::new(0),
                last_input: None,
                line_since: None,
                reading: true,
                parked: false,
            },
            outgoing: Outgoing::default(),
            flood: FloodControl::new(None),
            nick_changes: None,
            quiet: false,
            claim: None,
        }
    }
}
