//! The chat server state machine: its public types, the `handle_*` and
//! `poll_*` calls, delivery and leaving. The state it is made of lives in
//! the sibling modules: `conn` (one connection), `flood` (flood control and
//! input that waits), `room` (room backpressure), `addresses` (per-address
//! limits), `timer` (every deadline), `cmd` (one file per command),
//! `output` (what the driver is told).

mod addresses;
mod cluster;
mod cmd;
mod conn;
mod flood;
mod output;
mod room;
mod timer;

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use self::addresses::{Addresses, LogLimit, address_of, policy_address};
use self::conn::{Conn, Outgoing, State};
use self::room::Room;
use self::timer::{Timer, TimerSet};
use crate::broadcast::{BroadcastLog, LOG_LINES};
use crate::cluster::Entry;
use crate::config::Config;
use crate::nick::NickRegistry;

pub use self::cluster::ClusterConfigError;
pub use self::cmd::HELP;
pub use self::output::{Event, Output, Reason};

/// Identifies one connection for its whole life. Assigned by the server in
/// increasing order and never reused, so a late input for a closed
/// connection can never reach a newer one.
///
/// The low `SLOT_BITS` bits name the connection's slot inside the server
/// (slots are reused, which keeps lookups a plain index), the high bits count
/// connections (never reused: 2^40 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Refusals of one address logged a minute; the others are counted.
const REFUSALS_LOGGED: u32 = 1;
/// Joins of one address logged a minute; the others are quiet.
const JOINS_LOGGED: u32 = 2;

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
    /// Which refusals are logged, by address.
    refusals: LogLimit,
    /// Which joins (and their leaves) are logged, by address.
    joins: LogLimit,
    /// Who holds the room back, and whose input waits for it.
    room: Room,
    /// The joined clients in `/who` order, kept until someone joins,
    /// leaves or is renamed, so that a `/who` costs no sort.
    who_order: Option<Vec<ConnId>>,
    /// On a node of a room shared through Redis: the node's side of it.
    cluster: Option<Box<cluster::Cluster>>,
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
            refusals: LogLimit::new(REFUSALS_LOGGED),
            joins: LogLimit::new(JOINS_LOGGED),
            room: Room::default(),
            who_order: None,
            cluster: None,
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
    /// [`Server::handle_closed`] in the end. The same as
    /// [`Server::handle_accept`] and [`Server::handle_ready`] at once.
    pub fn handle_connect(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
        let conn = self.handle_accept(now, peer);
        self.handle_ready(now, conn);
        conn
    }

    /// Call when a connection is accepted whose bytes cannot carry chat
    /// yet: a TLS connection, whose handshake comes first. Returns its id,
    /// as [`Server::handle_connect`] does. From now on it counts against
    /// `max_clients` and its address's limits, and it is refused now if it
    /// is over them; but it is welcomed and announced only at
    /// [`Server::handle_ready`]; its bytes go to [`Server::handle_bytes`]
    /// only after that (before, they are dropped). One that ends before (a
    /// handshake that failed or never ended) is reported with
    /// [`Server::handle_eof`] or [`Server::handle_closed`], and nobody hears
    /// of it.
    pub fn handle_accept(&mut self, now: Instant, peer: SocketAddr) -> ConnId {
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
            self.reject(now, id, peer, Reason::ServerFull, false);
            return id;
        }
        let policy_address = policy_address(&self.config, peer);
        let refusal = if self.shutting_down {
            Some(Reason::Shutdown)
        } else if self.admitted >= self.config.max_clients {
            Some(Reason::ServerFull)
        } else if self.cluster.as_ref().is_some_and(|c| !c.is_up()) {
            Some(Reason::RoomUnavailable)
        } else if policy_address.is_some_and(|ip| !self.addresses.admit(&self.config, ip, now)) {
            Some(Reason::TooManyFromAddress)
        } else {
            None
        };
        let queue = self.broadcasts.queue();
        let mut entry = Conn::accepted(id, None, None, &self.config, queue, now);
        // Not in the room yet: no broadcast is kept for it.
        entry.outgoing.queue.stop(&self.broadcasts);
        if let Some(reason) = refusal {
            self.conns[slot] = entry;
            self.refuse(now, slot, peer, reason);
            return id;
        }
        entry.state = State::Connecting { peer };
        entry.policy_address = policy_address;
        self.conns[slot] = entry;
        self.admitted += 1;
        id
    }

    /// Call when a connection taken with [`Server::handle_accept`] can
    /// carry chat: its TLS handshake is over. The client is welcomed and
    /// announced then, as [`Server::handle_connect`] does (or refused, if
    /// the room became unavailable meanwhile). Nothing for any other
    /// connection.
    pub fn handle_ready(&mut self, now: Instant, conn: ConnId) {
        let now = self.advance(now);
        let Some(slot) = self.slot_of(conn) else {
            return;
        };
        let State::Connecting { peer } = self.conns[slot].state else {
            return;
        };
        let policy_address = self.conns[slot].policy_address;
        if self.cluster.as_ref().is_some_and(|c| !c.is_up()) {
            return self.refuse_connecting(now, slot, Reason::RoomUnavailable);
        }
        let queue = self.broadcasts.queue();
        if self.cluster.is_some() {
            // Welcomed once Redis grants it a nick; nothing it sends is
            // read until then.
            let nick = self.candidate_nick();
            let config = &self.config;
            let entry =
                Conn::accepted(conn, Some(nick.clone()), policy_address, config, queue, now);
            self.conns[slot] = entry;
            let entry = &mut self.conns[slot];
            // It gets the room's lines from its own join on (`entered`).
            entry.state = State::Claiming { peer };
            entry.outgoing.queue.stop(&self.broadcasts);
            self.stop_reading(slot);
            self.claim_for_join(conn, nick, 1);
            return;
        }
        let rng = &mut self.rng;
        let nick = self.nicks.claim_generated(conn, || rng.next_u32());
        let config = &self.config;
        self.conns[slot] = Conn::accepted(conn, Some(nick), policy_address, config, queue, now);
        self.welcome(now, slot, peer);
    }

    /// Refuses the connection in `slot` whose bytes were not ready for
    /// chat yet (see [`Server::handle_accept`]): it still counts against
    /// `max_clients` until it is closed.
    fn refuse_connecting(&mut self, now: Instant, slot: usize, reason: Reason) {
        let State::Connecting { peer } = self.conns[slot].state else {
            return;
        };
        self.conns[slot].state = State::Closing { admitted: true };
        self.refuse(now, slot, peer, reason);
    }

    /// Refuses the connection in `slot`, not in the chat: tells it why,
    /// then closes it once that is written.
    fn refuse(&mut self, now: Instant, slot: usize, peer: SocketAddr, reason: Reason) {
        let text = match reason {
            Reason::Shutdown => "* server shutting down",
            Reason::TooManyFromAddress => "* error: too many connections from your address",
            Reason::RoomUnavailable => "* error: room unavailable, try again later",
            _ => "* error: server full",
        };
        let id = self.conns[slot].id;
        self.deliver(Audience::One(id), render(&[text]));
        self.reject(now, id, peer, reason, true);
    }

    /// Welcomes the client in `slot`, which holds its nick now, tells the
    /// room, and logs it.
    fn welcome(&mut self, now: Instant, slot: usize, peer: SocketAddr) {
        let id = self.conns[slot].id;
        let nick = self.conns[slot].nick.clone();
        self.who_order = None;
        let online = self.nicks.len() - self.entering() + self.remote_members();
        let users = if online == 1 { "user" } else { "users" };
        let welcome =
            format!("* welcome, you are {nick}; {online} {users} online; type /help for commands");
        self.deliver(Audience::One(id), render(&[&welcome]));
        if self.cluster.is_none() {
            // A node of a shared room published the join before: this is
            // it read back.
            self.deliver(Audience::AllBut(id), joined_line(&nick));
        }
        let outputs = &mut self.outputs;
        let address = address_of(&self.config, peer.ip());
        let logged = self.joins.count(address, now, |address, joins| {
            let event = Event::Unlogged {
                address,
                refusals: 0,
                joins,
            };
            outputs.push_back(Output::Event(Box::new(event)));
        });
        self.conns[slot].quiet = logged.is_none();
        outputs.push_back(Output::Event(Box::new(Event::Joined {
            conn: id,
            peer,
            nick,
            quiet: logged.is_none(),
            unlogged: logged.unwrap_or(0),
        })));
        self.disconnect_too_slow();
        // Its idle time runs from now.
        self.schedule(id);
    }

    /// Call with bytes read from a connection, in the order they arrived,
    /// split anywhere. Bytes for an unknown or closing id are ignored.
    ///
    /// Lines over the client's flood budget wait inside the server, and an
    /// [`Output::StopReading`] asks the driver to leave the rest in the
    /// socket until they are handled.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let now = self.advance(now);
        let Some(slot) = self.joined_slot(conn) else {
            if let Some(slot) = self.claiming_slot(conn) {
                // Read before reading stopped: it waits for the welcome.
                self.conns[slot].flood.hold_unread(bytes);
            }
            return;
        };
        if bytes.is_empty() {
            return;
        }
        self.conns[slot].input.last_input = Some(now);
        if self.conns[slot].flood.has_unread() {
            // Read before reading stopped: it waits behind what waits.
            self.conns[slot].flood.hold_unread(bytes);
        } else {
            self.frame_input(conn, slot, now, bytes);
        }
        self.release_room(now);
    }

    /// Call when the client closed its side (read returned 0). An
    /// unterminated last line is taken as if it ended with LF; then the
    /// client leaves and the connection is closed after its output is
    /// flushed. A client whose input waits (for flood control, or for the
    /// room) leaves once it is handled, so keep its connection until the
    /// [`Output::Close`].
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        let now = self.advance(now);
        if let Some(slot) = self.slot_of(conn)
            && matches!(self.conns[slot].state, State::Connecting { .. })
        {
            // Never in the chat: closed, with nothing to say.
            self.conns[slot].state = State::Closing { admitted: true };
            let reason = Reason::Eof;
            let flush = true;
            self.outputs.push_back(Output::Close {
                conn,
                reason,
                flush,
            });
            return;
        }
        if let Some(slot) = self.claiming_slot(conn) {
            // Handled once it is welcomed, after what it sent.
            self.conns[slot].flood.eof_pending = true;
        }
        self.finish_input(conn, now);
        self.release_room(now);
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
        if matches!(self.conns[slot].state, State::Claiming { .. }) {
            self.entering_gone(slot);
        }
        let closed = std::mem::replace(&mut self.conns[slot], Conn::free(conn));
        self.free.push(slot);
        if let Some(ip) = closed.policy_address {
            self.addresses.release(ip);
        }
        if matches!(
            closed.state,
            State::Closing { admitted: true } | State::Claiming { .. } | State::Connecting { .. }
        ) {
            self.admitted -= 1;
        }
        self.release_room(now);
    }

    /// Call after writing bytes that [`Server::poll_transmit`] gave for
    /// `conn`, with how many were written; they stop counting against the
    /// client's output limit.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId, written: usize) {
        let now = self.advance(now);
        if let Some(slot) = self.slot_of(conn) {
            let outgoing = &mut self.conns[slot].outgoing;
            outgoing.written(written);
            if outgoing.pending() <= self.config.soft_queue
                && outgoing.over_soft_since.take().is_some()
            {
                self.timers.set(conn, Timer::SoftQueueGrace, None);
            }
            if self.conns[slot].state == State::Joined {
                self.room_written(slot, written, now);
                self.release_room(now);
            }
        }
    }

    /// Call when a write to the connection's socket took less than it was
    /// offered, or nothing (after reporting what it took with
    /// [`Server::handle_written`]): the socket is full, so the client reads
    /// slower than it is sent to. Until all its output is written, every
    /// write reported is the client reading, and only such writes let a
    /// client that has fallen behind hold the room for long (protocol.md,
    /// room backpressure). Reporting it again is harmless; a driver that
    /// never reports it makes the room wait up to a second for every client
    /// behind that does not read.
    pub fn handle_blocked(&mut self, now: Instant, conn: ConnId) {
        let now = self.advance(now);
        if let Some(slot) = self.joined_slot(conn) {
            self.room_blocked(slot, now);
            self.release_room(now);
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
        let now = self.advance(now);
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let joined = self.joined_ids();
        for slot in 0..self.conns.len() {
            match self.conns[slot].state {
                State::Connecting { .. } => self.refuse_connecting(now, slot, Reason::Shutdown),
                State::Claiming { .. } => self.refuse_claiming(now, slot, Reason::Shutdown),
                _ => {}
            }
        }
        let notice = render(&["* server shutting down"]);
        for conn in joined {
            self.deliver(Audience::One(conn), notice.clone());
            // Everyone is leaving: nobody is told of anyone else.
            self.leave(conn, Reason::Shutdown);
        }
        self.too_slow.clear();
        if self.cluster.is_some() {
            self.depart();
        }
        self.release_room(now);
    }

    /// The next output, or `None` when all are drained. Call after feeding
    /// inputs, until it returns `None`, before waiting for I/O again.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.flush_outbox();
        }
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
        let (bytes, lines) = self.broadcasts.drain(conn, &mut outgoing.queue, out);
        outgoing.taken(bytes, lines);
        bytes
    }

    /// When to call [`Server::handle_timeout`] next: the earliest deadline
    /// of any connection (flood control, idle and incomplete-line timeouts,
    /// the soft output limit), or `None` when none is pending. Always later
    /// than the last `now` given, so a driver that sleeps until then never
    /// spins. Call it after draining [`Server::poll_output`], before
    /// waiting: any `handle_*` call may bring the deadline forward.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let node = self.cluster_deadline();
        match (self.timers.first(), node) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lines of `conn` waiting for flood control.
    pub fn held_lines(&self, conn: ConnId) -> Option<usize> {
        self.slot_of(conn).map(|slot| self.conns[slot].flood.held())
    }

    /// Bytes of input of `conn` that wait (lines for flood control, bytes
    /// read while the room waits for its readers); reading is stopped while
    /// there are any (until the client closes its side).
    pub fn held_bytes(&self, conn: ConnId) -> Option<usize> {
        self.slot_of(conn)
            .map(|slot| self.conns[slot].flood.held_bytes())
    }

    /// Bytes of `conn` read while the room waited and not framed yet (part
    /// of [`Server::held_bytes`]).
    pub fn unread_bytes(&self, conn: ConnId) -> Option<usize> {
        self.slot_of(conn)
            .map(|slot| self.conns[slot].flood.unread_bytes())
    }

    /// Clients that hold the room now: fallen behind, with time left for
    /// what they wrote. While there is any, no input is handled.
    pub fn room_holders(&self) -> usize {
        self.room.holders()
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

    /// What is held for `conn`, queued or given to the driver and not yet
    /// reported written, as the output limits count it: each line its bytes
    /// and [`LINE_COST`](crate::LINE_COST). Never above `max_queue`.
    pub fn pending_bytes(&self, conn: ConnId) -> Option<usize> {
        self.slot_of(conn)
            .map(|slot| self.conns[slot].outgoing.pending())
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

    /// Logs a refused connection, unless its address was logged in the
    /// last minute (see [`Event::Rejected`]), and asks the driver to close
    /// it.
    fn reject(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        reason: Reason,
        flush: bool,
    ) {
        let address = address_of(&self.config, peer.ip());
        let outputs = &mut self.outputs;
        let logged = self.refusals.count(address, now, |address, refusals| {
            let event = Event::Unlogged {
                address,
                refusals,
                joins: 0,
            };
            outputs.push_back(Output::Event(Box::new(event)));
        });
        if let Some(unlogged) = logged {
            let event = Event::Rejected {
                conn,
                peer,
                reason: reason.clone(),
                unlogged,
            };
            outputs.push_back(Output::Event(Box::new(event)));
        }
        self.outputs.push_back(Output::Close {
            conn,
            reason,
            flush,
        });
    }

    /// Disconnects a client for a policy, telling it why in a last line.
    fn disconnect(&mut self, conn: ConnId, reason: Reason) {
        if let Some(why) = reason.notice() {
            self.reply(conn, &format!("error: disconnected ({why})"));
        }
        self.leave(conn, reason);
        self.disconnect_too_slow();
    }

    /// Where a joined connection sits in `conns`.
    fn joined_slot(&self, conn: ConnId) -> Option<usize> {
        let slot = self.slot_of(conn)?;
        (self.conns[slot].state == State::Joined).then_some(slot)
    }

    /// The joined connections, oldest first.
    fn joined_ids(&self) -> Vec<ConnId> {
        let joined = self.conns.iter().filter(|c| c.state == State::Joined);
        joined.map(|c| c.id).collect()
    }

    /// Where a connection waiting for its nick's claim sits in `conns`.
    fn claiming_slot(&self, conn: ConnId) -> Option<usize> {
        let slot = self.slot_of(conn)?;
        matches!(self.conns[slot].state, State::Claiming { .. }).then_some(slot)
    }

    /// Where an open connection (joined or closing) sits in `conns`.
    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        let slot = conn.slot();
        let entry = self.conns.get(slot)?;
        (entry.id == conn && entry.state != State::Free).then_some(slot)
    }

    /// Queues `line` for every client in `audience`. The one place that
    /// decides who a line reaches.
    fn deliver(&mut self, audience: Audience, line: Bytes) {
        let max_queue = self.config.max_queue;
        let soft_queue = self.config.soft_queue;
        let grace = self.config.soft_queue_grace;
        let room_queue = self.config.room_queue.unwrap_or(usize::MAX);
        let len = line.len();
        let mut paused = false;
        let Server {
            conns,
            outputs,
            too_slow,
            clock,
            timers,
            broadcasts,
            room,
            ..
        } = self;
        // Counts the line against the client's limits and wakes its writer;
        // false if it goes over `max_queue` (the line is not for it then).
        let mut push = |conn: &mut Conn| {
            let outgoing = &mut conn.outgoing;
            if outgoing.pending() + Outgoing::cost(len) > max_queue {
                if conn.state == State::Joined {
                    too_slow.insert(conn.id);
                }
                return false;
            }
            outgoing.queued(len);
            let pending = outgoing.pending();
            if let Some(now) = *clock {
                if pending > soft_queue && outgoing.over_soft_since.is_none() {
                    outgoing.over_soft_since = Some(now);
                    if conn.state == State::Joined {
                        timers.set(conn.id, Timer::SoftQueueGrace, now.checked_add(grace));
                    }
                }
                if pending > room_queue && outgoing.behind.is_none() && conn.state == State::Joined
                {
                    paused |= room.fall_behind(conn.id, outgoing, timers, now);
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
                    let readers = conns
                        .iter_mut()
                        .filter(|c| c.state != State::Free)
                        .map(|c| (c.id, &mut c.outgoing.queue));
                    broadcasts.trim_for(readers);
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
        if paused {
            self.pause_room();
        }
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
        self.room_leave(slot);
        if let Some(ip) = self.conns[slot].policy_address {
            if let Some(next) = self.addresses.stop_waiting(ip, conn) {
                self.release_later(next);
            }
        }
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
                entry.outgoing.drop_all();
                Some(false)
            }
            Reason::Closed => None,
            _ => Some(true),
        };
        self.nicks.release(&nick, conn);
        self.who_order = None;
        // On a shutdown everyone here leaves and nobody here is told (the
        // other nodes of a shared room are, by `depart`).
        if reason != Reason::Shutdown {
            let why = reason.notice();
            self.broadcast(conn, left_line(&nick, why), |_| Entry::Leave {
                conn,
                nick: nick.clone(),
                reason: why.map(str::to_string),
            });
        }
        // Only the everyday ways of leaving go quiet: a drop for a limit or
        // a policy is always worth a line.
        let everyday = matches!(reason, Reason::Quit(_) | Reason::Eof | Reason::Closed);
        let quiet = self.conns[slot].quiet && everyday;
        self.outputs.push_back(Output::Event(Box::new(Event::Left {
            conn,
            nick,
            reason: reason.clone(),
            quiet,
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

    /// The reply to a line over `max_line`, sent once per such line.
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

/// `* NICK joined`.
fn joined_line(nick: &str) -> Bytes {
    render(&["* ", nick, " joined"])
}

/// `* FROM is now known as TO`.
fn renamed_line(from: &str, to: &str) -> Bytes {
    render(&["* ", from, " is now known as ", to])
}

/// `* NICK left`, or `* NICK left (WHY)`.
fn left_line(nick: &str, why: Option<&str>) -> Bytes {
    match why {
        Some(why) => render(&["* ", nick, " left (", why, ")"]),
        None => render(&["* ", nick, " left"]),
    }
}

/// `since + limit`, when both are set.
fn after(since: Option<Instant>, limit: Option<Duration>) -> Option<Instant> {
    since
        .zip(limit)
        .and_then(|(since, limit)| since.checked_add(limit))
}
