//! What the clients of the [`Driver`] do and what they got.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{Driver, Input, NS, Observer, Seen};
use crate::{ConnId, Event, LINE_COST, Reason};

/// What the driver knows about one connection.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its id.
    pub id: ConnId,
    /// Its peer address.
    pub peer: SocketAddr,
    /// The nick the server gave it when it joined (`Event::Joined`).
    pub nick: Option<String>,
    /// Taken with `handle_accept` and not refused: admitted, and not in the
    /// chat until `handle_ready` (its join clears this).
    pub connecting: bool,
    /// Whether the server reads it: false from `StopReading` to
    /// `ResumeReading`.
    pub reading: bool,
    /// A read was under way when reading stopped: the next input with
    /// [`Driver::send_racing`] is fed anyway.
    pub read_in_flight: bool,
    /// Input waiting in the socket while the server does not read it.
    pub socket: VecDeque<Input>,
    /// The client closed its side: nothing can follow.
    pub eof_sent: bool,
    /// That EOF was given to the server.
    pub eof_fed: bool,
    /// Every byte moved out with `poll_transmit`, written or not.
    pub taken: Vec<u8>,
    /// Where in `taken` each `poll_transmit` that moved something ended.
    pub batches: Vec<usize>,
    /// How much of `taken` [`Driver::lines`] has returned.
    pub unread: usize,
    /// Bytes taken and not yet written.
    pub in_flight: Vec<u8>,
    /// Every byte written to the client's socket.
    pub received: Vec<u8>,
    /// Every complete line written to it, with the time of the write.
    pub lines: Vec<(Duration, String)>,
    /// The client does not read: nothing is written to it but by
    /// [`Driver::write`].
    pub stalled: bool,
    /// After `Close` the driver keeps the connection open until
    /// [`Driver::close`] (a slow close).
    pub linger: bool,
    /// `Output::Close` came: its reason and flush.
    pub close: Option<(Reason, bool)>,
    /// `handle_closed` was called.
    pub closed: bool,
    /// The connection failed under it ([`Driver::close`] before any
    /// `Close`): what was not written is lost.
    pub failed: bool,
    /// A `Transmit` came and `poll_transmit` was not called since.
    pub signalled: bool,
    /// `handle_blocked` was called since the last write to it.
    pub blocked: bool,
}

impl Client {
    pub(super) fn new(id: ConnId, peer: SocketAddr, linger: bool) -> Client {
        Client {
            id,
            peer,
            nick: None,
            connecting: false,
            reading: true,
            read_in_flight: false,
            socket: VecDeque::new(),
            eof_sent: false,
            eof_fed: false,
            taken: Vec::new(),
            batches: Vec::new(),
            unread: 0,
            in_flight: Vec::new(),
            received: Vec::new(),
            lines: Vec::new(),
            stalled: false,
            linger,
            close: None,
            closed: false,
            failed: false,
            signalled: false,
            blocked: false,
        }
    }
}

impl Client {
    /// What the server counts for what it handed the driver and the driver
    /// has not written: the bytes, and [`LINE_COST`] for each line of a
    /// `poll_transmit` batch whose last byte is not written yet.
    pub fn in_flight_cost(&self) -> usize {
        self.in_flight_cost_after(0)
    }

    /// What [`Client::in_flight_cost`] will be once `n` more bytes are written.
    pub fn in_flight_cost_after(&self, n: usize) -> usize {
        let written = self.taken.len() - self.in_flight.len() + n;
        let first = self.batches.partition_point(|&end| end <= written);
        let start = first
            .checked_sub(1)
            .map_or(0, |before| self.batches[before]);
        let lines = self.taken[start..].iter().filter(|&&b| b == b'\n').count();
        self.taken.len() - written + lines * LINE_COST
    }

    /// What the server has released of what it counted for this client:
    /// the bytes written, and [`LINE_COST`] for each line of a batch written
    /// whole.
    pub fn released_cost(&self) -> usize {
        let written = self.taken.len() - self.in_flight.len();
        let whole = self.batches.partition_point(|&end| end <= written);
        let end = whole.checked_sub(1).map_or(0, |last| self.batches[last]);
        let lines = self.taken[..end].iter().filter(|&&b| b == b'\n').count();
        written + lines * LINE_COST
    }
}

impl<O: Observer> Driver<O> {
    // -- what clients do (each settled) ------------------------------------

    /// Accepts a connection from loopback and settles.
    pub fn connect(&mut self) -> ConnId {
        self.connect_from(Ipv4Addr::LOCALHOST.into())
    }

    /// Accepts a connection from `peer` and settles.
    pub fn connect_peer(&mut self, peer: SocketAddr) -> ConnId {
        let id = self.handle_connect(peer);
        self.settle();
        id
    }

    /// Accepts a connection from `ip` (a fresh port each time) and settles.
    pub fn connect_from(&mut self, ip: IpAddr) -> ConnId {
        let peer = self.fresh_peer(ip);
        self.connect_peer(peer)
    }

    /// Accepts a connection from loopback whose bytes cannot carry chat
    /// yet (`handle_accept`, as for a TLS handshake), and settles.
    pub fn accept(&mut self) -> ConnId {
        let peer = self.fresh_peer(Ipv4Addr::LOCALHOST.into());
        let id = self.handle_accept(peer);
        self.settle();
        id
    }

    /// The bytes of a connection taken with [`Driver::accept`] can carry
    /// chat now (`handle_ready`); settles.
    pub fn ready(&mut self, conn: ConnId) {
        self.handle_ready(conn);
        self.settle();
    }

    /// `ip` with a port not used before.
    fn fresh_peer(&mut self, ip: IpAddr) -> SocketAddr {
        let peer = SocketAddr::new(ip, self.next_port);
        self.next_port = self.next_port.wrapping_add(1).max(1024);
        peer
    }

    /// The client sends `input`. The driver reads it at once if it reads the
    /// connection and nothing waits before it; otherwise it waits in the
    /// socket. Nothing follows an EOF. Input for a connection reported closed
    /// is given to the server, which must ignore it.
    pub fn send_input(&mut self, conn: ConnId, input: Input) {
        self.send_with(conn, input, false);
    }

    /// [`Driver::send_input`], except that the first input after a
    /// `StopReading` is fed anyway: that read was already under way.
    pub fn send_racing(&mut self, conn: ConnId, input: Input) {
        self.send_with(conn, input, true);
    }

    fn send_with(&mut self, conn: ConnId, input: Input, racing: bool) {
        let client = self.client_mut(conn);
        if !client.closed {
            if client.eof_sent {
                return;
            }
            client.eof_sent = input == Input::Eof;
            let fed = client.socket.is_empty()
                && (client.reading || (racing && std::mem::take(&mut client.read_in_flight)));
            if !fed {
                client.socket.push_back(input);
                return;
            }
        }
        self.feed(conn, input);
        self.settle();
    }

    /// Bytes read from `conn`, fed at once (even after an EOF, or for an id
    /// closed or never opened: the server must ignore them). A driver does
    /// not read a connection it was asked to stop reading: this asserts it
    /// was not (see [`Driver::send_in_flight`], [`Driver::send_input`]).
    pub fn send(&mut self, conn: ConnId, bytes: impl AsRef<[u8]>) {
        assert!(!self.is_paused(conn), "reading {conn}, which is paused");
        self.send_in_flight(conn, bytes);
    }

    /// Bytes read from `conn` even if it is paused (a read that was already
    /// under way when the driver was asked to stop reading): fed at once.
    pub fn send_in_flight(&mut self, conn: ConnId, bytes: impl AsRef<[u8]>) {
        self.handle_bytes(conn, bytes.as_ref());
        self.settle();
    }

    /// `conn` closed its side: like bytes ([`Driver::send`]), a driver sees
    /// that only while reading.
    pub fn eof(&mut self, conn: ConnId) {
        assert!(!self.is_paused(conn), "reading {conn}, which is paused");
        self.eof_in_flight(conn);
    }

    /// The EOF at the end of a read already under way: fed at once.
    pub fn eof_in_flight(&mut self, conn: ConnId) {
        self.handle_eof(conn);
        self.settle();
    }

    /// The connection is gone (it failed, or a lingering close finished):
    /// `handle_closed`, settled.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(client) = self.known_mut(conn) {
            client.failed |= !client.closed && client.close.is_none();
        }
        self.handle_closed(conn);
        self.settle();
    }

    /// The server shuts down; settled.
    pub fn shutdown(&mut self) {
        self.handle_shutdown();
        self.settle();
    }

    /// The client stops reading its output (or starts again); settled.
    pub fn stall(&mut self, conn: ConnId, stalled: bool) {
        self.client_mut(conn).stalled = stalled;
        self.settle();
    }

    /// Writes up to `max` bytes to `conn`, even if it is stalled; settled.
    pub fn write(&mut self, conn: ConnId, max: usize) {
        self.handle_written(conn, max);
        self.settle();
    }

    // -- what clients got --------------------------------------------------

    /// The lines moved out for `conn` since the last call (written or not),
    /// without their LF.
    pub fn lines(&mut self, conn: ConnId) -> Vec<String> {
        let Some(client) = self.known_mut(conn) else {
            return Vec::new();
        };
        let bytes = &client.taken[client.unread..];
        client.unread = client.taken.len();
        if bytes.is_empty() {
            return Vec::new();
        }
        assert_eq!(bytes.last(), Some(&b'\n'), "output ends mid-line");
        let text = std::str::from_utf8(bytes).expect("server output is UTF-8");
        text.split_terminator('\n').map(str::to_owned).collect()
    }

    /// `Close` outputs since the last call: (conn, reason, flush).
    pub fn closes(&mut self) -> Vec<(ConnId, Reason, bool)> {
        let new = &self.trace[self.closes_seen..];
        self.closes_seen = self.trace.len();
        new.iter()
            .filter_map(|seen| match seen {
                Seen::Close(conn, reason, flush) => Some((*conn, reason.clone(), *flush)),
                _ => None,
            })
            .collect()
    }

    /// Events since the last call.
    pub fn events(&mut self) -> Vec<Event> {
        let new = &self.trace[self.events_seen..];
        self.events_seen = self.trace.len();
        new.iter()
            .filter_map(|seen| match seen {
                Seen::Event(event) => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    /// Takes every pending line of `conns`, close and event, asserting there
    /// are none.
    pub fn assert_quiet(&mut self, conns: &[ConnId]) {
        for &conn in conns {
            assert_eq!(self.lines(conn), Vec::<String>::new(), "{conn} got lines");
        }
        assert_eq!(self.closes(), [], "unexpected closes");
        assert_eq!(self.events(), [], "unexpected events");
    }

    /// Moves the clock to one nanosecond before `at`, checking that nothing
    /// reached `conns` (no line, close or event) by then, then to `at`.
    pub fn quiet_until(&mut self, at: Duration, conns: &[ConnId]) {
        self.advance_to(at - NS);
        self.assert_quiet(conns);
        self.advance_to(at);
    }
}
