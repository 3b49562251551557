//! The chat server state machine.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::config::Config;
use crate::framing::{Frame, LineFramer, sanitize};
use crate::nick::{self, NickError, NickRegistry};

/// Identifies one connection for its whole life. Assigned by the server in
/// increasing order and never reused, so a late input for a closed
/// connection can never reach a newer one.
///
/// The low [`SLOT_BITS`] bits name the connection's slot inside the server
/// (slots are reused, which keeps lookups a plain index), the high bits count
/// connections (never reused: 2^40 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Queue capacity (in lines) a connection keeps once its queue is drained.
const RETAINED_QUEUE: usize = 16;

/// Bits of a [`ConnId`] that hold its slot.
const SLOT_BITS: u32 = 24;
/// Slots available: one slot value is kept free to mean "no slot".
const NO_SLOT: u64 = (1 << SLOT_BITS) - 1;

impl ConnId {
    fn slot(self) -> usize {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// An unused slot, kept for the next connection.
    Free,
    /// In the chat: holds a nick, sends and receives.
    Joined,
    /// Told to close; waiting for the driver's `handle_closed`.
    /// `admitted` says whether it counts against `max_clients`.
    Closing { admitted: bool },
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    state: State,
    nick: String,
    framer: LineFramer,
    /// Lines not yet handed to the driver.
    queue: VecDeque<Bytes>,
    /// Bytes queued or handed to the driver and not yet reported written.
    pending: usize,
    /// An `Output::Transmit` is out and `poll_transmit` has not been called since.
    transmit_signalled: bool,
}

impl Conn {
    /// An empty slot; `id` is the last id it held, so stale ids stay stale.
    fn free(id: ConnId) -> Conn {
        Conn {
            id,
            state: State::Free,
            nick: String::new(),
            framer: LineFramer::new(0),
            queue: VecDeque::new(),
            pending: 0,
            transmit_signalled: false,
        }
    }
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
    /// Clients that went over their output limit during a delivery; they are
    /// disconnected once the delivery is done, oldest id first.
    too_slow: BTreeSet<ConnId>,
    shutting_down: bool,
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
            too_slow: BTreeSet::new(),
            shutting_down: false,
        }
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
        let _ = now;
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
        let refusal = if self.shutting_down {
            Some(Reason::Shutdown)
        } else if self.admitted >= self.config.max_clients {
            Some(Reason::ServerFull)
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
        self.conns[slot] = Conn {
            id,
            state,
            nick: nick.clone(),
            framer: LineFramer::new(self.config.max_line),
            queue: VecDeque::new(),
            pending: 0,
            transmit_signalled: false,
        };
        if let Some(reason) = refusal {
            let text = match reason {
                Reason::Shutdown => "* server shutting down",
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
        id
    }

    /// Call with bytes read from a connection, in the order they arrived,
    /// split anywhere. Bytes for an unknown or closing id are ignored.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, mut bytes: &[u8]) {
        let _ = now;
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        // The framer leaves its slot while its lines are handled, so that
        // handling them may change any connection, this one included.
        let mut framer = std::mem::replace(&mut self.conns[slot].framer, LineFramer::new(0));
        while let Some(frame) = framer.next_frame(&mut bytes) {
            match frame {
                Frame::Line(line) => self.handle_line(conn, line),
                Frame::TooLong => self.reply_error_line_too_long(conn),
            }
            self.disconnect_too_slow();
            if self.joined_slot(conn).is_none() {
                return;
            }
        }
        if let Some(slot) = self.joined_slot(conn) {
            self.conns[slot].framer = framer;
        }
    }

    /// Call when the client closed its side (read returned 0). An
    /// unterminated last line is taken as if it ended with LF; then the
    /// client leaves and the connection is closed after its output is flushed.
    pub fn handle_eof(&mut self, now: Instant, conn: ConnId) {
        let _ = now;
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let mut framer = std::mem::replace(&mut self.conns[slot].framer, LineFramer::new(0));
        if let Some(line) = framer.finish() {
            self.handle_line(conn, line);
            self.disconnect_too_slow();
        }
        if self.joined_slot(conn).is_some() {
            self.leave(conn, Reason::Eof);
            self.disconnect_too_slow();
        }
    }

    /// Call once the connection is closed, whether the driver closed it on
    /// [`Output::Close`] or the socket failed. Frees the id's resources and
    /// its `max_clients` slot; the id is never used again.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        let _ = now;
        if self.joined_slot(conn).is_some() {
            self.leave(conn, Reason::Closed);
            self.disconnect_too_slow();
        }
        let Some(slot) = self.slot_of(conn) else {
            return;
        };
        let closed = std::mem::replace(&mut self.conns[slot], Conn::free(conn));
        self.free.push(slot);
        if closed.state == (State::Closing { admitted: true }) {
            self.admitted -= 1;
        }
    }

    /// Call after writing bytes that [`Server::poll_transmit`] gave for
    /// `conn`, with how many were written; they stop counting against the
    /// client's output limit.
    pub fn handle_written(&mut self, now: Instant, conn: ConnId, written: usize) {
        let _ = now;
        if let Some(slot) = self.slot_of(conn) {
            let entry = &mut self.conns[slot];
            entry.pending = entry.pending.saturating_sub(written);
        }
    }

    /// Call when the time from [`Server::poll_timeout`] has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Protocol v1 has no timers; the call is part of the driver contract
        // so that timed policies need no driver changes.
        let _ = now;
    }

    /// Call to shut the server down: every client gets
    /// `* server shutting down` and a flushing [`Output::Close`]; later
    /// connections are refused the same way.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let _ = now;
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
        let entry = &mut self.conns[slot];
        entry.transmit_signalled = false;
        let mut moved = 0;
        out.reserve(entry.queue.len());
        for chunk in entry.queue.drain(..) {
            moved += chunk.len();
            out.push(chunk);
        }
        // A burst (a storm of joins, say) must not leave every idle client
        // holding a queue sized for it.
        if entry.queue.capacity() > RETAINED_QUEUE {
            entry.queue = VecDeque::new();
        }
        moved
    }

    /// When to call [`Server::handle_timeout`] next; `None` when no timer is
    /// pending. Never in the past of the last `now` given, so a driver that
    /// sleeps until it never spins.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
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
        self.slot_of(conn).map(|slot| self.conns[slot].pending)
    }

    /// Bytes of an unterminated line buffered for `conn`; at most `max_line + 1`.
    pub fn buffered_bytes(&self, conn: ConnId) -> Option<usize> {
        self.slot_of(conn)
            .map(|slot| self.conns[slot].framer.buffered())
    }

    /// Connections counted against `max_clients`.
    pub fn admitted(&self) -> usize {
        self.admitted
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
        let Server {
            conns,
            outputs,
            too_slow,
            ..
        } = self;
        let mut push = |conn: &mut Conn| {
            if conn.pending + line.len() > max_queue {
                if conn.state == State::Joined {
                    too_slow.insert(conn.id);
                }
                return;
            }
            conn.pending += line.len();
            conn.queue.push_back(line.clone());
            if !conn.transmit_signalled {
                conn.transmit_signalled = true;
                outputs.push_back(Output::Transmit(conn.id));
            }
        };
        match audience {
            Audience::AllBut(sender) => conns
                .iter_mut()
                .filter(|c| c.state == State::Joined && c.id != sender)
                .for_each(push),
            Audience::One(conn) => {
                if let Some(entry) = conns.get_mut(conn.slot()) {
                    if entry.id == conn && entry.state != State::Free {
                        push(entry);
                    }
                }
            }
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
        let entry = &mut self.conns[slot];
        entry.state = State::Closing { admitted: true };
        let nick = std::mem::take(&mut entry.nick);
        let flush = match reason {
            Reason::TooSlow => {
                // It is not reading: drop what it holds rather than flush it.
                entry.queue.clear();
                entry.pending = 0;
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

    /// One complete raw line from a joined client.
    fn handle_line(&mut self, conn: ConnId, raw: &[u8]) {
        let text = sanitize(raw);
        if text.is_empty() {
            return;
        }
        match text.strip_prefix('/') {
            Some(escaped) if escaped.starts_with('/') => self.chat(conn, escaped),
            Some(command) => self.command(conn, command),
            None => self.chat(conn, &text),
        }
    }

    /// A chat line: `NICK: TEXT` to every other client.
    fn chat(&mut self, conn: ConnId, text: &str) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let line = render(&[&self.conns[slot].nick, ": ", text]);
        self.deliver(Audience::AllBut(conn), line);
    }

    /// A command line, without its leading `/`.
    fn command(&mut self, conn: ConnId, line: &str) {
        let (name, args) = split_word(line);
        match name.to_ascii_lowercase().as_str() {
            "nick" => self.command_nick(conn, args),
            "me" => self.command_me(conn, args),
            "msg" => self.command_msg(conn, args),
            "who" => self.command_who(conn),
            "help" => {
                for text in HELP {
                    self.reply(conn, text);
                }
            }
            "quit" => {
                self.reply(conn, "bye");
                let reason = (!args.is_empty()).then(|| args.to_owned());
                self.leave(conn, Reason::Quit(reason));
            }
            _ => {
                let text = format!("error: unknown command /{name}, try /help");
                self.reply(conn, &text);
            }
        }
    }

    fn command_nick(&mut self, conn: ConnId, args: &str) {
        let (new, extra) = split_word(args);
        if new.is_empty() || !extra.is_empty() {
            return self.reply(conn, "error: usage: /nick NAME");
        }
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let old = self.conns[slot].nick.clone();
        if old == new {
            return self.reply(conn, &format!("you are now known as {new}"));
        }
        match self.nicks.rename(&old, new, conn) {
            Err(NickError::Invalid) => {
                let text = format!(
                    "error: invalid nick {new}: use 1-{} letters, digits, _ or -",
                    nick::MAX_NICK_CHARS
                );
                self.reply(conn, &text);
            }
            Err(NickError::Taken) => {
                self.reply(conn, &format!("error: nick {new} is already taken"))
            }
            Ok(()) => {
                self.conns[slot].nick = new.to_owned();
                self.reply(conn, &format!("you are now known as {new}"));
                let notice = render(&["* ", &old, " is now known as ", new]);
                self.deliver(Audience::AllBut(conn), notice);
                self.outputs
                    .push_back(Output::Event(Box::new(Event::Renamed {
                        conn,
                        from: old,
                        to: new.to_owned(),
                    })));
            }
        }
    }

    fn command_me(&mut self, conn: ConnId, text: &str) {
        if text.is_empty() {
            return self.reply(conn, "error: usage: /me TEXT");
        }
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let line = render(&["* ", &self.conns[slot].nick, " ", text]);
        self.deliver(Audience::AllBut(conn), line);
    }

    fn command_msg(&mut self, conn: ConnId, args: &str) {
        let (target, text) = split_word(args);
        if target.is_empty() || text.is_empty() {
            return self.reply(conn, "error: usage: /msg NICK TEXT");
        }
        let Some(to) = self.nicks.holder(target) else {
            return self.reply(conn, &format!("error: no such nick {target}"));
        };
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let line = render(&["*", &self.conns[slot].nick, "* ", text]);
        self.deliver(Audience::One(to), line);
    }

    fn command_who(&mut self, conn: ConnId) {
        let mut nicks: Vec<&str> = self
            .conns
            .iter()
            .filter(|c| c.state == State::Joined)
            .map(|c| c.nick.as_str())
            .collect();
        nicks.sort_unstable_by_key(|n| (n.to_lowercase(), *n));
        let users = if nicks.len() == 1 { "user" } else { "users" };
        let text = format!("{} {users} online: {}", nicks.len(), nicks.join(", "));
        self.reply(conn, &text);
    }
}

/// The `/help` reply, each entry sent as one `* ` line.
pub const HELP: &[&str] = &[
    "commands:",
    "  /nick NAME       change your nick",
    "  /me TEXT         send an action",
    "  /msg NICK TEXT   send a private message",
    "  /who             list who is online",
    "  /help            show this list",
    "  /quit [REASON]   leave",
    "  //TEXT           send a line that starts with /",
];

/// Splits off the first word: the text up to the first space or TAB, and
/// the rest after the run of spaces and TABs that follows it.
fn split_word(text: &str) -> (&str, &str) {
    let is_gap = |c: char| c == ' ' || c == '\t';
    match text.find(is_gap) {
        Some(end) => (&text[..end], text[end..].trim_start_matches(is_gap)),
        None => (text, ""),
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
