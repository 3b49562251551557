//! The chat server state machine: its public types, the `handle_*` and
//! `poll_*` calls, delivery and leaving. The state it is made of lives in
//! the sibling modules: `conn` (one connection), `flood` (flood control),
//! `addresses` (per-address limits), `timer` (every deadline), `cmd` (one
//! file per command).

mod addresses;
mod cmd;
mod conn;
mod flood;
mod timer;

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use self::addresses::{Addresses, policy_address};
use self::conn::{Conn, Input, Outgoing, State};
use self::flood::{FloodControl, Held, Hold};
use self::timer::{Timer, TimerSet};
use crate::broadcast::{BroadcastLog, LOG_LINES};
use crate::config::Config;
use crate::framing::{Frame, LineFramer};
use crate::nick::{self, NickRegistry};
use crate::rate::Bucket;

pub use self::cmd::HELP;

/// Identifies one connection for its whole life. Assigned by the server in
/// increasing order and never reused, so a late input for a closed
/// connection can never reach a newer one.
///
/// The low [`SLOT_BITS`] bits name the connection's slot inside the server
/// (slots are reused, which keeps lookups a plain index), the high bits count
/// connections (never reused: 2^40 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Bits of a [`ConnId`] that hold its slot.
const SLOT_BITS: u32 = 24;
/// Slots available: one slot value is kept free to mean "no slot".
const NO_SLOT: u64 = (1 << SLOT_BITS) - 1;

impl ConnId {
    /// The slot of `Server::conns` the connection has.
    pub(super) fn slot(self) -> usize {
        (self.0 & NO_SLOT) as usize
    }
}

impl fmt::Display for ConnId {
    /// `#N`: the connection was the Nth accepted (from 0).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0 >> SLOT_BITS)
    }
}

/// Why a connection ended; shown to others as `* NICK left (REASON)` where
/// [`Reason::notice`] has text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The client sent `/quit`, with its (sanitized) reason if it gave one.
    Quit(Option<String>),
    /// The client closed its side of the connection.
    Eof,
    /// The driver reported the connection closed or failed.
    Closed,
    /// The client's output queue went over `max_queue`.
    TooSlow,
    /// Refused on connect: `max_clients` were already connected.
    ServerFull,
    /// The server is shutting down.
    Shutdown,
    /// The client had more than `flood_excess` lines waiting for flood control.
    ExcessFlood,
    /// The client sent nothing for `idle_timeout`.
    Idle,
    /// The client held an unterminated line for `line_timeout`.
    IncompleteLine,
    /// Refused on connect: its address has `max_per_ip` connections open,
    /// or connects faster than `connect_rate`.
    TooManyFromAddress,
}

impl Reason {
    /// The text shown to others in parentheses, if any.
    pub fn notice(&self) -> Option<&str> {
        match self {
            Reason::Quit(reason) => reason.as_deref(),
            Reason::Eof | Reason::Closed => None,
            Reason::TooSlow => Some("too slow"),
            Reason::ServerFull => Some("server full"),
            Reason::Shutdown => Some("shutdown"),
            Reason::ExcessFlood => Some("excess flood"),
            Reason::Idle => Some("idle"),
            Reason::IncompleteLine => Some("incomplete line timeout"),
            Reason::TooManyFromAddress => Some("too many connections from your address"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Quit(Some(reason)) => write!(f, "quit: {reason}"),
            Reason::Quit(None) => f.write_str("quit"),
            Reason::Eof => f.write_str("client closed the connection"),
            Reason::Closed => f.write_str("connection lost"),
            other => f.write_str(other.notice().unwrap_or_default()),
        }
    }
}

/// Something worth logging. Never holds chat text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A client joined under a generated nick.
    Joined {
        /// The connection.
        conn: ConnId,
        /// Its peer address, as given to [`Server::handle_connect`].
        peer: SocketAddr,
        /// Its generated nick.
        nick: String,
    },
    /// A client was refused on connect.
    Rejected {
        /// The connection.
        conn: ConnId,
        /// Its peer address.
        peer: SocketAddr,
        /// Why.
        reason: Reason,
    },
    /// A client changed its nick.
    Renamed {
        /// The connection.
        conn: ConnId,
        /// The nick it had.
        from: String,
        /// The nick it has now.
        to: String,
    },
    /// A client left.
    Left {
        /// The connection.
        conn: ConnId,
        /// The nick it had.
        nick: String,
        /// Why it left.
        reason: Reason,
    },
}

/// What the server asks its driver to do, drained with [`Server::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The connection has bytes to send: when its socket can take them,
    /// call [`Server::poll_transmit`]. Not repeated for the same connection
    /// until `poll_transmit` has been called for it.
    Transmit(ConnId),
    /// Close the connection, then call [`Server::handle_closed`]. With
    /// `flush`, first write what [`Server::poll_transmit`] still gives (a
    /// goodbye or error line), bounded in time; without it, drop it.
    /// No input for this id is taken after this.
    Close {
        /// The connection to close.
        conn: ConnId,
        /// Why it is closed.
        reason: Reason,
        /// Whether queued output should be written before closing.
        flush: bool,
    },
    /// Stop reading from the connection until [`Output::ResumeReading`]:
    /// the client is over its flood budget, and leaving its input in the
    /// socket makes TCP slow it down. Bytes already read may still be given
    /// to [`Server::handle_bytes`]; they wait their turn inside the server.
    /// After an [`Output::Close`] for it, reading does not matter any more.
    StopReading(ConnId),
    /// Read from the connection again.
    ResumeReading(ConnId),
    /// Something worth logging. Boxed so that the frequent outputs stay small.
    Event(Box<Event>),
}

/// Where a line goes. Every delivery passes through [`Server::deliver`], the
/// one place that knows recipients are local connections.
#[derive(Debug, Clone, Copy)]
enum Audience {
    /// Every joined client but the one given.
    AllBut(ConnId),
    /// One client.
    One(ConnId),
}

/// The chat server: all connections, nicks and queued output. See the crate
/// documentation for the run loop a driver follows.
#[derive(Debug)]
pub struct Server {
    config: Config,
    rng: ChaCha8Rng,
    /// Connections accepted so far: the high bits of the next id.
    accepted: u64,
    /// Every connection by slot (`ConnId::slot`), open or `Free`.
    conns: Vec<Conn>,
    /// Free slots in `conns`.
    free: Vec<usize>,
    nicks: NickRegistry,
    /// Connections counted against `max_clients`: joined, or closing after
    /// having joined, until the driver reports them closed.
    admitted: usize,
    outputs: VecDeque<Output>,
    /// Lines sent to every client that some connection has not read yet.
    broadcasts: BroadcastLog,
    /// Clients that went over their output limit during a delivery; they are
    /// disconnected once the delivery is done, oldest id first.
    too_slow: BTreeSet<ConnId>,
    shutting_down: bool,
    /// The latest time given to a `handle_*` call.
    clock: Option<Instant>,
    /// Every armed deadline of the joined connections.
    timers: TimerSet,
    /// Open connections and connect budgets by address.
    addresses: Addresses,
}

impl Server {
    /// A server with `config` (see [`Config::validate`]) whose random choices
    /// (generated nicks) all come from `seed`: the same seed and the same
    /// inputs give the same outputs, byte for byte.
    pub fn new(config: Config, seed: u64) -> Server {
        Server {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            accepted: 0,
            conns: Vec::new(),
            free: Vec::new(),
            nicks: NickRegistry::default(),
            admitted: 0,
            outputs: VecDeque::new(),
            broadcasts: BroadcastLog::new(LOG_LINES),
            too_slow: BTreeSet::new(),
            shutting_down: false,
            clock: None,
            timers: TimerSet::default(),
            addresses: Addresses::new(),
        }
    }

    /// For tests: empties the shared log of broadcast lines every `lines`
    /// lines rather than every 1024, so that short sessions go through that
    /// path often, with clients at every point of reading it.
    #[cfg(feature = "testkit")]
    pub fn with_log_lines(mut self, lines: usize) -> Server {
        self.broadcasts = BroadcastLog::new(lines);
        self
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Call when a connection is accepted; returns its id, which every other
    /// call for it uses. The client is welcomed and announced, or refused
    /// (server full, shutting down) with an error line and an
    /// [`Output::Close`]; either way, report it closed with
    /// [`Server::handle_closed`] in the end.
    pub fn handle_connect(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
        let now = self.advance(now);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if (self.conns.len() as u64) < NO_SLOT => {
                self.conns.push(Conn::free(ConnId(NO_SLOT)));
                self.conns.len() - 1
            }
            // 2^24 open connections: far past any descriptor limit, so
            // refuse without tracking it rather than fail.
            None => NO_SLOT as usize,
        };
        let id = ConnId(self.accepted << SLOT_BITS | slot as u64);
        self.accepted += 1;
        if slot == NO_SLOT as usize {
            self.outputs
                .push_back(Output::Event(Box::new(Event::Rejected {
                    conn: id,
                    peer,
                    reason: Reason::ServerFull,
                })));
            self.outputs.push_back(Output::Close {
                conn: id,
                reason: Reason::ServerFull,
                flush: false,
            });
            return id;
        }
        let policy_address = policy_address(&self.config, peer);
        let refusal = if self.shutting_down {
            Some(Reason::Shutdown)
        } else if self.admitted >= self.config.max_clients {
            Some(Reason::ServerFull)
        } else if policy_address.is_some_and(|ip| !self.addresses.admit(&self.config, ip, now)) {
            Some(Reason::TooManyFromAddress)
        } else {
            None
        };
        let state = match refusal {
            Some(_) => State::Closing { admitted: false },
            None => State::Joined,
        };
        let nick = match refusal {
            Some(_) => String::new(),
            None => self.generate_nick(id),
        };
        let policy_address = policy_address.filter(|_| refusal.is_none());
        let bucket = |rate: Option<_>| policy_address.and(rate).map(Bucket::new);
        self.conns[slot] = Conn {
            id,
            state,
            nick: nick.clone(),
            policy_address,
            input: Input {
                framer: LineFramer::new(self.config.max_line),
                last_input: Some(now),
                line_since: None,
            },
            outgoing: Outgoing {
                queue: self.broadcasts.queue(),
                ..Outgoing::default()
            },
            flood: FloodControl::new(bucket(self.config.flood)),
            nick_changes: bucket(self.config.nick_rate),
        };
        if let Some(reason) = refusal {
            self.conns[slot].outgoing.queue.stop(&self.broadcasts);
            let text = match reason {
                Reason::Shutdown => "* server shutting down",
                Reason::TooManyFromAddress => "* error: too many connections from your address",
                _ => "* error: server full",
            };
            self.deliver(Audience::One(id), render(&[text]));
            self.outputs
                .push_back(Output::Event(Box::new(Event::Rejected {
                    conn: id,
                    peer,
                    reason: reason.clone(),
                })));
            self.outputs.push_back(Output::Close {
                conn: id,
                reason,
                flush: true,
            });
            return id;
        }
        self.admitted += 1;
        let online = self.nicks.len();
        let users = if online == 1 { "user" } else { "users" };
        let welcome =
            format!("* welcome, you are {nick}; {online} {users} online; type /help for commands");
        self.deliver(Audience::One(id), render(&[&welcome]));
        self.deliver(Audience::AllBut(id), render(&["* ", &nick, " joined"]));
        self.outputs
            .push_back(Output::Event(Box::new(Event::Joined {
                conn: id,
                peer,
                nick,
            })));
        self.disconnect_too_slow();
        // Its idle time runs from now.
        self.schedule(id);
        id
    }

    /// Call with bytes read from a connection, in the order they arrived,
    /// split anywhere. Bytes for an unknown or closing id are ignored.
    ///
    /// Lines over the client's flood budget wait inside the server, and an
    /// [`Output::StopReading`] asks the driver to leave the rest in the
    /// socket until they are handled.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, mut bytes: &[u8]) {
        let now = self.advance(now);
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        self.conns[slot].input.last_input = Some(now);
        // Any LF ends the line in progress, a discarded one included; an
        // unterminated line left after this input started with it.
        let ends_a_line = memchr::memchr(b'\n', bytes).is_some();
        let mut framer = self.take_framer(slot);
        while let Some(frame) = framer.next_frame(&mut bytes) {
            if self.conns[slot].flood.admit(now) {
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
        }
        if let Some(slot) = self.joined_slot(conn) {
            let input = &mut self.conns[slot].input;
            input.line_since = match input.line_since {
                _ if !framer.in_line() => None,
                Some(since) if !ends_a_line => Some(since),
                _ => Some(now),
            };
            input.framer = framer;
            self.schedule(conn);
        }
    }

    /// Call when the client closed its side (read returned 0). An
    /// unterminated last line is taken as if it ended with LF; then the
    /// client leaves and the connection is closed after its output is
    /// flushed. A client with lines waiting for flood control leaves once
    /// they are handled, so keep its connection until the [`Output::Close`].
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        let now = self.advance(now);
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        if self.conns[slot].flood.is_holding() {
            self.conns[slot].flood.eof_pending = true;
            return;
        }
        self.finish_input(conn, now);
    }

    /// Call once the connection is closed, whether the driver closed it on
    /// [`Output::Close`] or the socket failed. Frees the id's resources and
    /// its `max_clients` slot; the id is never used again.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        self.advance(now);
        if self.joined_slot(conn).is_some() {
            self.leave(conn, Reason::Closed);
            self.disconnect_too_slow();
        }
        let Some(slot) = self.slot_of(conn) else {
            return;
        };
        // Only joined connections have timers, and leaving cancelled them.
        debug_assert!(self.timers.none_armed(conn));
        let closed = std::mem::replace(&mut self.conns[slot], Conn::free(conn));
        self.free.push(slot);
        if let Some(ip) = closed.policy_address {
            self.addresses.release(ip);
        }
        if closed.state == (State::Closing { admitted: true }) {
            self.admitted -= 1;
        }
    }

    /// Call after writing bytes that [`Server::poll_transmit`] gave for
    /// `conn`, with how many were written; they stop counting against the
    /// client's output limit.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId, written: usize) {
        self.advance(now);
        if let Some(slot) = self.slot_of(conn) {
            let outgoing = &mut self.conns[slot].outgoing;
            outgoing.pending = outgoing.pending.saturating_sub(written);
            if outgoing.pending <= self.config.soft_queue
                && outgoing.over_soft_since.take().is_some()
            {
                self.timers.set(conn, Timer::SoftQueueGrace, None);
            }
        }
    }

    /// Call when the time from [`Server::poll_timeout`] has come (calling
    /// it earlier, or more often, is harmless). Every `handle_*` call also
    /// runs the timers that are due by its `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// Call to shut the server down: every client gets
    /// `* server shutting down` and a flushing [`Output::Close`]; later
    /// connections are refused the same way.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.advance(now);
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let joined: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|c| c.state == State::Joined)
            .map(|c| c.id)
            .collect();
        let notice = render(&["* server shutting down"]);
        for conn in joined {
            self.deliver(Audience::One(conn), notice.clone());
            // Everyone is leaving: nobody is told of anyone else.
            self.leave(conn, Reason::Shutdown);
        }
        self.too_slow.clear();
    }

    /// The next output, or `None` when all are drained. Call after feeding
    /// inputs, until it returns `None`, before waiting for I/O again.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Moves every byte queued for `conn` into `out` (appended, in order) and
    /// returns how many bytes that is. Call on [`Output::Transmit`] when the
    /// socket can take data, and again while a flushing close is pending;
    /// report what was written with [`Server::handle_written`].
    pub fn poll_transmit(&mut self, conn: ConnId, out: &mut Vec<Bytes>) -> usize {
        let Some(slot) = self.slot_of(conn) else {
            return 0;
        };
        let outgoing = &mut self.conns[slot].outgoing;
        outgoing.transmit_signalled = false;
        self.broadcasts.drain(conn, &mut outgoing.queue, out)
    }

    /// When to call [`Server::handle_timeout`] next: the earliest deadline
    /// of any connection (flood control, idle and incomplete-line timeouts,
    /// the soft output limit), or `None` when none is pending. Always later
    /// than the last `now` given, so a driver that sleeps until then never
    /// spins. Call it after draining [`Server::poll_output`], before
    /// waiting: any `handle_*` call may bring the deadline forward.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first()
    }

    /// Lines of `conn` waiting for flood control; reading is stopped while
    /// there are any.
    pub fn held_lines(&self, conn: ConnId) -> Option<usize> {
        self.slot_of(conn).map(|slot| self.conns[slot].flood.held())
    }

    /// Ids of the connections still open (joined or closing).
    pub fn connections(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.conns
            .iter()
            .filter(|c| c.state != State::Free)
            .map(|c| c.id)
    }

    /// The nick of a joined client.
    pub fn nick(&self, conn: ConnId) -> Option<&str> {
        self.joined_slot(conn)
            .map(|slot| self.conns[slot].nick.as_str())
    }

    /// Bytes held for `conn`: queued, or given to the driver and not yet
    /// reported written. Never above `max_queue`.
    pub fn pending_bytes(&self, conn: ConnId) -> Option<usize> {
        self.slot_of(conn)
            .map(|slot| self.conns[slot].outgoing.pending)
    }

    /// Bytes of an unterminated line buffered for `conn`; at most `max_line + 1`.
    pub fn buffered_bytes(&self, conn: ConnId) -> Option<usize> {
        self.slot_of(conn)
            .map(|slot| self.conns[slot].input.framer.buffered())
    }

    /// Connections counted against `max_clients`.
    pub fn admitted(&self) -> usize {
        self.admitted
    }

    /// Moves the clock to `now` (never back) and runs every timer due by
    /// then, earliest first. Every `handle_*` call starts with it.
    fn advance(&mut self, now: Instant) -> Instant {
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
    fn schedule(&mut self, conn: ConnId) {
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
    fn expire(&mut self, conn: ConnId, timer: Timer, now: Instant) {
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

    /// Keeps a line over the client's flood budget for later; stops
    /// reading it at the first, disconnects it past `flood_excess`.
    fn hold(&mut self, conn: ConnId, held: Held) {
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
    fn release_held(&mut self, conn: ConnId, now: Instant) {
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
    fn finish_input(&mut self, conn: ConnId, now: Instant) {
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
    fn take_framer(&mut self, slot: usize) -> LineFramer {
        std::mem::replace(&mut self.conns[slot].input.framer, LineFramer::new(0))
    }

    /// Disconnects a client for a policy, telling it why in a last line.
    fn disconnect(&mut self, conn: ConnId, reason: Reason) {
        if let Some(why) = reason.notice() {
            self.reply(conn, &format!("error: disconnected ({why})"));
        }
        self.leave(conn, reason);
        self.disconnect_too_slow();
    }

    fn joined_slot(&self, conn: ConnId) -> Option<usize> {
        let slot = self.slot_of(conn)?;
        (self.conns[slot].state == State::Joined).then_some(slot)
    }

    /// Where an open connection (joined or closing) sits in `conns`.
    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        let slot = conn.slot();
        let entry = self.conns.get(slot)?;
        (entry.id == conn && entry.state != State::Free).then_some(slot)
    }

    /// A random nick no connected client holds: 4 characters while that
    /// finds one quickly, longer if the 4-character space is crowded.
    fn generate_nick(&mut self, conn: ConnId) -> String {
        let mut len = nick::GENERATED_LEN;
        loop {
            for _ in 0..16 {
                let candidate = nick::generate(len, || self.rng.next_u32());
                if self.nicks.claim(&candidate, conn).is_ok() {
                    return candidate;
                }
            }
            len += 1;
        }
    }

    /// Queues `line` for every client in `audience`. The one place that
    /// decides who a line reaches.
    fn deliver(&mut self, audience: Audience, line: Bytes) {
        let max_queue = self.config.max_queue;
        let soft_queue = self.config.soft_queue;
        let grace = self.config.soft_queue_grace;
        let len = line.len();
        let Server {
            conns,
            outputs,
            too_slow,
            clock,
            timers,
            broadcasts,
            ..
        } = self;
        // Counts the line against the client's limits and wakes its writer;
        // false if it goes over `max_queue` (the line is not for it then).
        let mut push = |conn: &mut Conn| {
            let outgoing = &mut conn.outgoing;
            if outgoing.pending + len > max_queue {
                if conn.state == State::Joined {
                    too_slow.insert(conn.id);
                }
                return false;
            }
            outgoing.pending += len;
            if outgoing.pending > soft_queue && outgoing.over_soft_since.is_none() {
                if let Some(now) = *clock {
                    outgoing.over_soft_since = Some(now);
                    if conn.state == State::Joined {
                        timers.set(conn.id, Timer::SoftQueueGrace, now.checked_add(grace));
                    }
                }
            }
            if !conn.outgoing.transmit_signalled {
                conn.outgoing.transmit_signalled = true;
                outputs.push_back(Output::Transmit(conn.id));
            }
            true
        };
        match audience {
            Audience::AllBut(sender) => {
                // Stored once; a client over its limit is disconnected
                // before anything more is sent to it.
                broadcasts.push(sender, line);
                conns
                    .iter_mut()
                    .filter(|c| c.state == State::Joined && c.id != sender)
                    .for_each(|c| {
                        push(c);
                    });
                if broadcasts.is_full() {
                    self.trim_log();
                }
            }
            Audience::One(conn) => {
                if let Some(entry) = conns.get_mut(conn.slot()) {
                    if entry.id == conn && entry.state != State::Free && push(entry) {
                        entry.outgoing.queue.push(broadcasts, line);
                    }
                }
            }
        }
    }

    /// Drops the lines of the shared log that nobody needs any more, after
    /// moving what a client far behind still needs into its private queue:
    /// the log never holds more than [`LOG_LINES`] lines, however slowly
    /// some client reads, and a batch of lines that everyone has still to
    /// read (joins being announced) is not copied.
    fn trim_log(&mut self) {
        let mut from = self.broadcasts.end();
        for conn in &mut self.conns {
            if conn.state == State::Free {
                continue;
            }
            let queue = &mut conn.outgoing.queue;
            if self.broadcasts.lags(queue) {
                self.broadcasts.detach(conn.id, queue);
            } else if let Some(needs) = self.broadcasts.needs_from(queue) {
                from = from.min(needs);
            }
        }
        self.broadcasts.trim(from);
    }

    /// Disconnects the clients that went over their output limit, telling the
    /// others, which may in turn put more clients over theirs.
    fn disconnect_too_slow(&mut self) {
        while let Some(conn) = self.too_slow.pop_first() {
            self.leave(conn, Reason::TooSlow);
        }
    }

    /// Takes a joined client out of the chat: frees its nick, tells the
    /// others (unless everyone is leaving), logs it, and asks the driver to
    /// close the connection (unless the driver reported it closed).
    fn leave(&mut self, conn: ConnId, reason: Reason) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let entry = &mut self.conns[slot];
        entry.state = State::Closing { admitted: true };
        entry.outgoing.queue.stop(&self.broadcasts);
        entry.flood.clear();
        self.timers.cancel_all(conn);
        let nick = std::mem::take(&mut entry.nick);
        let flush = match reason {
            Reason::TooSlow => {
                // It is not reading: drop what it holds rather than flush it.
                entry.outgoing.queue.discard(&self.broadcasts);
                entry.outgoing.pending = 0;
                Some(false)
            }
            Reason::Closed => None,
            _ => Some(true),
        };
        self.nicks.release(&nick, conn);
        if reason != Reason::Shutdown {
            let notice = match reason.notice() {
                Some(why) => render(&["* ", &nick, " left (", why, ")"]),
                None => render(&["* ", &nick, " left"]),
            };
            self.deliver(Audience::AllBut(conn), notice);
        }
        self.outputs.push_back(Output::Event(Box::new(Event::Left {
            conn,
            nick,
            reason: reason.clone(),
        })));
        if let Some(flush) = flush {
            self.outputs.push_back(Output::Close {
                conn,
                reason,
                flush,
            });
        }
    }

    /// Sends one `* ` line to one client.
    fn reply(&mut self, conn: ConnId, text: &str) {
        self.deliver(Audience::One(conn), render(&["* ", text]));
    }

    fn reply_error_line_too_long(&mut self, conn: ConnId) {
        let text = format!(
            "error: line too long (max {} bytes), discarded",
            self.config.max_line
        );
        self.reply(conn, &text);
    }
}

/// One line as shared bytes: the parts, then LF.
fn render(parts: &[&str]) -> Bytes {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    let mut line = Vec::with_capacity(len);
    for part in parts {
        line.extend_from_slice(part.as_bytes());
    }
    line.push(b'\n');
    Bytes::from(line)
}

/// `since + limit`, when both are set.
fn after(since: Option<Instant>, limit: Option<Duration>) -> Option<Instant> {
    since
        .zip(limit)
        .and_then(|(since, limit)| since.checked_add(limit))
}
