//! One connection's state, grouped by concern: its input (framing and the
//! times the line and idle timeouts run from), its outgoing queue, its flood
//! control, and the address whose policies apply to it.

use std::net::IpAddr;
use std::time::Instant;

use super::ConnId;
use super::flood::FloodControl;
use crate::broadcast::OutgoingQueue;
use crate::config::{Config, Rate};
use crate::framing::LineFramer;
use crate::rate::Bucket;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// An unused slot, kept for the next connection.
    Free,
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
}

/// What the server sends the client, and what it counts against the
/// client's output limits.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// Lines not yet handed to the driver: its place in the broadcast log
    /// and its private lines.
    pub(super) queue: OutgoingQueue,
    /// Bytes queued or handed to the driver and not yet reported written.
    pub(super) pending: usize,
    /// An `Output::Transmit` is out and `poll_transmit` has not been called since.
    pub(super) transmit_signalled: bool,
    /// Since when the client's output is over `soft_queue`.
    pub(super) over_soft_since: Option<Instant>,
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
            },
            outgoing: Outgoing {
                queue,
                ..Outgoing::default()
            },
            flood: FloodControl::new(bucket(config.flood)),
            nick_changes: bucket(config.nick_rate),
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
            },
            outgoing: Outgoing::default(),
            flood: FloodControl::new(None),
            nick_changes: None,
        }
    }
}
