//! Test support shared by the property tests, the fuzz targets and the
//! corpus replay test: a simulated driver ([`Harness`]), a reference model of
//! the protocol written straight from `docs/protocol.md`, and the invariants
//! checked after every step. Enabled by the `testkit` feature.
//!
//! The model is deliberately naive (whole lines, plain loops, no sharing) so
//! that it is easy to check against the spec by eye; the server must agree
//! with it byte for byte on what every client receives.
//!
//! [`Harness::with_policies`] runs the same driver with the address policies
//! on (peers that are not loopback, small timeouts and rates): timing makes
//! the naive model useless there, so it checks the invariants only.
//!
//! Every check panics with a description of the broken invariant, which is
//! how both proptest and libFuzzer report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Config, ConnId, Event, HELP, Output, Rate, Reason, Server};

/// One step of a simulated session. Client numbers pick among every
/// connection opened so far (modulo their count), closed ones included, so
/// input for closed ids is exercised too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new connection is accepted.
    Connect,
    /// Bytes arrive from a client.
    Bytes {
        /// Which client.
        client: usize,
        /// What it sent.
        bytes: Vec<u8>,
    },
    /// A client closes its side.
    Eof {
        /// Which client.
        client: usize,
    },
    /// A client's connection fails (reset, error).
    Close {
        /// Which client.
        client: usize,
    },
    /// A client stops (or resumes) reading: the driver stops writing to it.
    Stall {
        /// Which client.
        client: usize,
        /// Whether it stops reading.
        stalled: bool,
    },
    /// The driver writes at most `max` bytes to a client, even a stalled one
    /// (a partial write).
    Write {
        /// Which client.
        client: usize,
        /// Most bytes written.
        max: usize,
    },
    /// Time passes. The driver calls `handle_timeout` at every
    /// `poll_timeout` on the way, exactly then.
    Tick {
        /// How much, in milliseconds.
        millis: u64,
    },
    /// The server shuts down.
    Shutdown,
}

/// The small limits the simulated sessions run with, so that every limit is
/// reached by short inputs. `max_queue` is below what [`Config::validate`]
/// accepts on purpose: clients go over it often, and at every offset.
pub fn small_config() -> Config {
    Config {
        max_clients: 4,
        max_line: 16,
        max_queue: 300,
        soft_queue: 300,
        ..Config::default()
    }
}

/// Small limits with every policy on, for [`Harness::with_policies`]: a
/// flood budget of 3 lines, then 2 a second, with 4 more waiting at most;
/// 5 s to finish a line, 30 s idle; 2 connections open per address, and 3
/// connects at once, then one per 10 s; 2 nick changes at once, then one
/// per 2.5 s; a soft output limit of half the (small) queue for 2 s. `max_queue` is below what
/// [`Config::validate`] accepts, as in [`small_config`].
pub fn policy_config() -> Config {
    Config {
        max_clients: 6,
        max_line: 16,
        max_queue: 300,
        soft_queue: 150,
        soft_queue_grace: Duration::from_secs(2),
        flood: Some(Rate {
            burst: 3,
            interval: Duration::from_millis(500),
        }),
        flood_excess: 4,
        idle_timeout: Some(Duration::from_secs(30)),
        line_timeout: Some(Duration::from_secs(5)),
        max_per_ip: Some(2),
        connect_rate: Some(Rate {
            burst: 3,
            interval: Duration::from_secs(10),
        }),
        nick_rate: Some(Rate {
            burst: 2,
            interval: Duration::from_millis(2500),
        }),
        limit_loopback: false,
    }
}

/// The peer of the `index`th connection (from 0) of
/// [`Harness::with_policies`]: in turn 203.0.113.1, 203.0.113.2, the first
/// again as `::ffff:203.0.113.1`, 2001:db8::1 and loopback 127.0.0.1, so
/// that three in five count under one address and one in five is exempt.
pub fn policy_peer(index: usize) -> SocketAddr {
    let ip = match index % 5 {
        0 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
        1 => IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2)),
        2 => IpAddr::V6(Ipv4Addr::new(203, 0, 113, 1).to_ipv6_mapped()),
        3 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, 10_000 + (index % 50_000) as u16)
}

/// Input from a client that the driver has not fed yet: it waits in the
/// socket while the server does not want the client read.
#[derive(Debug)]
enum SocketInput {
    Bytes(Vec<u8>),
    Eof,
}

/// What the simulated driver knows about one connection.
#[derive(Debug, Default)]
struct SimConn {
    id: Option<ConnId>,
    peer: Option<SocketAddr>,
    /// The server welcomed it (it counts against `max_per_ip` until closed).
    welcomed: bool,
    /// The server asked to stop reading it (`StopReading`, no `ResumeReading` since).
    stopped: bool,
    /// A read was in flight when reading stopped: the next input is fed anyway.
    read_in_flight: bool,
    /// Input waiting in the socket while reading is stopped.
    socket: VecDeque<SocketInput>,
    /// The client closed its side: nothing can follow.
    eof_sent: bool,
    /// That EOF was given to the server.
    eof_fed: bool,
    /// Every byte written to the client's socket.
    received: Vec<u8>,
    /// Bytes taken with `poll_transmit` and not yet written.
    in_flight: Vec<u8>,
    stalled: bool,
    /// A `Transmit` came and `poll_transmit` was not called since.
    signalled: bool,
    /// The server asked for a close (with `flush`).
    close_requested: Option<bool>,
    /// `handle_closed` has been called.
    closed: bool,
    /// The connection failed under it (not closed by the server's request):
    /// what was not written by then is lost.
    failed: bool,
}

/// A server driven by a simulated driver and checked after every step:
/// against the reference model ([`Harness::new`]), or for the invariants
/// alone with the address policies on ([`Harness::with_policies`]).
#[derive(Debug)]
pub struct Harness {
    server: Server,
    now: Instant,
    conns: Vec<SimConn>,
    /// The reference model; `None` with the policies on.
    model: Option<Model>,
}

impl Harness {
    /// A harness around a server with `config` and `seed`, checked byte for
    /// byte against the reference model. Every peer is loopback, so the
    /// address policies never apply (`config.limit_loopback` is not
    /// supported here: use [`Harness::with_policies`]).
    pub fn new(config: Config, seed: u64) -> Harness {
        Harness {
            server: Server::new(config.clone(), seed).with_log_lines(3),
            now: Instant::now(),
            conns: Vec::new(),
            model: Some(Model::new(config)),
        }
    }

    /// A harness around a server with `config` (see [`policy_config`]) and
    /// `seed` whose peers are [`policy_peer`]s, so that the address policies
    /// apply to most of them. The driver honours `StopReading` (input of a
    /// stopped client waits in its socket and is fed on `ResumeReading`;
    /// the first input after a stop was already read and is fed anyway) and
    /// calls `handle_timeout` at every `poll_timeout` a [`Step::Tick`]
    /// passes. No model is compared (holds and timeouts change what and
    /// when clients receive), but after every step and every timeout it
    /// checks that: every such timeout does something (an output, or a held
    /// line handled); lines sent are whole and clean; nothing goes to a closed
    /// connection; output held per client stays within `max_queue`, held
    /// lines within `flood_excess`, buffered bytes within `max_line + 1`;
    /// `poll_timeout` is after the last `now`; `StopReading` and
    /// `ResumeReading` alternate, never follow a `Close`, and reading is
    /// stopped exactly while lines are held (until EOF); nicks are unique;
    /// admitted connections stay within `max_clients`, and welcomed ones
    /// per address within `max_per_ip`.
    pub fn with_policies(config: Config, seed: u64) -> Harness {
        Harness {
            server: Server::new(config, seed).with_log_lines(3),
            now: Instant::now(),
            conns: Vec::new(),
            model: None,
        }
    }

    /// The server under test.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Every byte each connection received so far, in connect order.
    pub fn received(&self) -> Vec<&[u8]> {
        self.conns.iter().map(|c| c.received.as_slice()).collect()
    }

    /// Runs one step, then checks every invariant.
    pub fn step(&mut self, step: &Step) {
        let now = self.now;
        match *step {
            Step::Connect => {
                let index = self.conns.len();
                let peer = match self.model {
                    Some(_) => SocketAddr::from(([127, 0, 0, 1], 10_000 + (index % 50_000) as u16)),
                    None => policy_peer(index),
                };
                let id = self.server.handle_connect(now, peer);
                if let Some(last) = self.conns.last().and_then(|c| c.id) {
                    assert!(id > last, "connection ids must increase: {id} after {last}");
                }
                self.conns.push(SimConn {
                    id: Some(id),
                    peer: Some(peer),
                    ..SimConn::default()
                });
                let outputs = self.drain_outputs();
                let nick = outputs.iter().find_map(|output| match output {
                    Output::Event(event) => match &**event {
                        Event::Joined { conn, nick, .. } if *conn == id => Some(nick.clone()),
                        _ => None,
                    },
                    _ => None,
                });
                if let Some(model) = &mut self.model {
                    model.connect(nick);
                }
                self.act(outputs);
            }
            Step::Bytes { client, ref bytes } => {
                if let Some(index) = self.pick(client) {
                    self.receive(index, SocketInput::Bytes(bytes.clone()));
                }
            }
            Step::Eof { client } => {
                if let Some(index) = self.pick(client) {
                    self.receive(index, SocketInput::Eof);
                }
            }
            Step::Close { client } => {
                if let Some(index) = self.pick(client) {
                    let conn = &mut self.conns[index];
                    conn.failed |= !conn.closed;
                    self.close(index);
                }
            }
            Step::Stall { client, stalled } => {
                if let Some(index) = self.pick(client) {
                    self.conns[index].stalled = stalled;
                }
            }
            Step::Write { client, max } => {
                if let Some(index) = self.pick(client) {
                    self.write(index, max);
                }
            }
            Step::Tick { millis } => {
                let until = self.now + Duration::from_millis(millis);
                while let Some(deadline) = self.server.poll_timeout() {
                    if deadline > until {
                        break;
                    }
                    assert!(
                        deadline > self.now,
                        "poll_timeout asks for a tick in the past"
                    );
                    self.now = deadline;
                    let held = self.input_held();
                    self.server.handle_timeout(deadline);
                    let outputs = self.drain_outputs();
                    // Every deadline is real: a wakeup that neither handles
                    // a held line nor does anything else was not needed.
                    assert!(
                        !outputs.is_empty() || self.input_held() < held,
                        "handle_timeout at poll_timeout did nothing"
                    );
                    self.act(outputs);
                    self.settle();
                    self.check();
                }
                self.now = until;
            }
            Step::Shutdown => {
                self.server.handle_shutdown(now);
                if let Some(model) = &mut self.model {
                    model.shutdown();
                }
                let outputs = self.drain_outputs();
                self.act(outputs);
            }
        }
        self.settle();
        self.check();
    }

    /// Input arrives from a client: fed at once, or (policies on) left in
    /// the socket while the server does not want the client read.
    fn receive(&mut self, index: usize, input: SocketInput) {
        let policies = self.model.is_none();
        let conn = &mut self.conns[index];
        if policies && !conn.closed {
            if conn.eof_sent {
                // Nothing follows an EOF on a real socket.
                return;
            }
            conn.eof_sent = matches!(input, SocketInput::Eof);
            let in_flight = std::mem::take(&mut conn.read_in_flight);
            if !conn.socket.is_empty() || (conn.stopped && !in_flight) {
                conn.socket.push_back(input);
                return;
            }
        }
        self.feed(index, input);
    }

    /// Gives input to the server (and the model).
    fn feed(&mut self, index: usize, input: SocketInput) {
        let id = self.id(index);
        match input {
            SocketInput::Bytes(bytes) => {
                self.server.handle_bytes(self.now, id, &bytes);
                if let Some(model) = &mut self.model {
                    model.bytes(index, &bytes);
                }
            }
            SocketInput::Eof => {
                self.conns[index].eof_fed = true;
                self.server.handle_eof(self.now, id);
                if let Some(model) = &mut self.model {
                    model.eof(index);
                }
            }
        }
        let outputs = self.drain_outputs();
        self.act(outputs);
    }

    /// Lines held for flood control, all connections together.
    /// Input the server holds, over all connections: lines waiting for
    /// flood control, and bytes of unterminated lines (each a line's worth
    /// more, so that a last line moving from the framer to the waiting
    /// lines at EOF counts as progress).
    fn input_held(&self) -> usize {
        self.conns
            .iter()
            .filter_map(|c| c.id)
            .map(|id| {
                let held = self.server.held_lines(id).unwrap_or(0);
                let buffered = self.server.buffered_bytes(id).unwrap_or(0);
                2 * held + usize::from(buffered > 0)
            })
            .sum()
    }

    fn pick(&self, client: usize) -> Option<usize> {
        (!self.conns.is_empty()).then(|| client % self.conns.len())
    }

    fn id(&self, index: usize) -> ConnId {
        self.conns[index]
            .id
            .expect("every simulated connection has an id")
    }

    fn index_of(&self, id: ConnId) -> usize {
        self.conns
            .iter()
            .position(|c| c.id == Some(id))
            .unwrap_or_else(|| panic!("output for {id}, which was never opened"))
    }

    fn drain_outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.server.poll_output()).collect()
    }

    /// Carries out outputs the way a driver does.
    fn act(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Transmit(id) => {
                    let index = self.index_of(id);
                    let conn = &mut self.conns[index];
                    assert!(!conn.closed, "Transmit for {id}, reported closed");
                    assert!(
                        !conn.signalled,
                        "second Transmit for {id} before poll_transmit"
                    );
                    conn.signalled = true;
                }
                Output::Close {
                    conn: id,
                    flush,
                    reason,
                } => {
                    let index = self.index_of(id);
                    let conn = &mut self.conns[index];
                    assert!(!conn.closed, "Close for {id}, reported closed");
                    assert!(
                        conn.close_requested.is_none(),
                        "second Close for {id} ({reason})"
                    );
                    assert_eq!(
                        flush,
                        reason != Reason::TooSlow,
                        "only a too-slow client is closed without a flush"
                    );
                    conn.close_requested = Some(flush);
                }
                Output::StopReading(id) | Output::ResumeReading(id) if self.model.is_some() => {
                    // Peers here are loopback: flood control does not apply.
                    panic!(
                        "reading paused or resumed for {id}: no policy applies to loopback peers"
                    );
                }
                Output::StopReading(id) => {
                    let index = self.index_of(id);
                    let conn = &mut self.conns[index];
                    assert!(!conn.stopped, "StopReading for {id} twice in a row");
                    assert!(
                        conn.close_requested.is_none(),
                        "StopReading for {id} after Close"
                    );
                    assert!(!conn.closed, "StopReading for {id}, reported closed");
                    conn.stopped = true;
                    conn.read_in_flight = true;
                }
                Output::ResumeReading(id) => {
                    let index = self.index_of(id);
                    let conn = &mut self.conns[index];
                    assert!(conn.stopped, "ResumeReading for {id} without StopReading");
                    assert!(
                        conn.close_requested.is_none(),
                        "ResumeReading for {id} after Close"
                    );
                    assert!(!conn.closed, "ResumeReading for {id}, reported closed");
                    conn.stopped = false;
                    conn.read_in_flight = false;
                }
                Output::Event(event) => {
                    check_event(&event);
                    if let Event::Joined { conn, .. } = *event {
                        let index = self.index_of(conn);
                        self.conns[index].welcomed = true;
                    }
                }
            }
        }
    }

    /// Writes to every reading client, and carries out requested closes,
    /// until nothing is left to do.
    fn settle(&mut self) {
        loop {
            let mut busy = false;
            for index in 0..self.conns.len() {
                let conn = &self.conns[index];
                if conn.closed {
                    continue;
                }
                if let Some(flush) = conn.close_requested {
                    if flush {
                        // The client reads what is left before the close.
                        self.write(index, usize::MAX);
                    }
                    self.close(index);
                    busy = true;
                } else if conn.signalled && !conn.stalled {
                    self.write(index, usize::MAX);
                    busy = true;
                } else if !conn.stopped && !conn.socket.is_empty() {
                    let input = self.conns[index].socket.pop_front();
                    if let Some(input) = input {
                        self.feed(index, input);
                    }
                    busy = true;
                }
            }
            if !busy {
                return;
            }
        }
    }

    /// Takes what the server has for a client and writes up to `max` bytes.
    fn write(&mut self, index: usize, max: usize) {
        let id = self.id(index);
        let mut chunks: Vec<Bytes> = Vec::new();
        let moved = self.server.poll_transmit(id, &mut chunks);
        assert_eq!(
            moved,
            chunks.iter().map(|c| c.len()).sum::<usize>(),
            "poll_transmit must return the bytes it moved"
        );
        let conn = &mut self.conns[index];
        conn.signalled = false;
        if conn.closed {
            assert!(chunks.is_empty(), "bytes for {id}, reported closed");
            return;
        }
        for chunk in &chunks {
            conn.in_flight.extend_from_slice(chunk);
        }
        let written = conn.in_flight.len().min(max);
        conn.received.extend(conn.in_flight.drain(..written));
        if written > 0 {
            self.server.handle_written(self.now, id, written);
            if let Some(model) = &mut self.model {
                model.written(index, written);
            }
        }
        let outputs = self.drain_outputs();
        self.act(outputs);
    }

    /// The connection is gone: tell the server, as a driver does.
    fn close(&mut self, index: usize) {
        let id = self.id(index);
        let conn = &mut self.conns[index];
        if conn.closed {
            // A second report is ignored by the server.
            self.server.handle_closed(self.now, id);
            return;
        }
        conn.closed = true;
        conn.in_flight.clear();
        conn.socket.clear();
        self.server.handle_closed(self.now, id);
        if let Some(model) = &mut self.model {
            model.closed(index);
        }
        let outputs = self.drain_outputs();
        self.act(outputs);
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        if let Some(deadline) = self.server.poll_timeout() {
            assert!(
                deadline > self.now,
                "poll_timeout asks for a tick in the past"
            );
        }
        match &self.model {
            Some(model) => self.check_model(model),
            None => self.check_policies(),
        }
    }

    /// With the policies on: the invariants that need no model.
    fn check_policies(&self) {
        let config = self.server.config();
        let admitted = self
            .conns
            .iter()
            .filter(|c| c.welcomed && !c.closed)
            .count();
        assert_eq!(self.server.admitted(), admitted, "admitted count");
        assert!(admitted <= config.max_clients, "max clients");
        let mut nicks = HashSet::new();
        let mut per_address: HashMap<IpAddr, usize> = HashMap::new();
        for (index, conn) in self.conns.iter().enumerate() {
            let id = self.id(index);
            check_lines(&conn.received);
            let nick = self.server.nick(id);
            if let Some(nick) = nick {
                assert!(nicks.insert(nick.to_lowercase()), "nick {nick} held twice");
                assert!(
                    conn.close_requested.is_none() && !conn.closed,
                    "{id} is in the chat after a Close"
                );
            }
            let Some(pending) = self.server.pending_bytes(id) else {
                assert!(conn.closed, "{id} was dropped before handle_closed");
                continue;
            };
            assert!(!conn.closed, "{id} is open after handle_closed");
            assert!(pending <= config.max_queue, "{id} holds {pending} bytes");
            let held = self.server.held_lines(id).expect("an open connection");
            assert!(held <= config.flood_excess, "{id} holds {held} lines");
            if nick.is_some() && !conn.eof_fed {
                assert_eq!(
                    conn.stopped,
                    held > 0,
                    "{id}: reading must be stopped exactly while lines are held"
                );
            }
            if let Some(buffered) = self.server.buffered_bytes(id) {
                assert!(
                    buffered <= config.max_line + 1,
                    "{id} buffers {buffered} bytes"
                );
            }
            let ip = conn.peer.map(|peer| peer.ip().to_canonical());
            if let Some(ip) = ip.filter(|ip| config.limit_loopback || !ip.is_loopback()) {
                if conn.welcomed && !conn.closed {
                    *per_address.entry(ip).or_default() += 1;
                }
            }
        }
        if let Some(max) = config.max_per_ip {
            for (ip, open) in per_address {
                assert!(open <= max, "{open} connections open from {ip}");
            }
        }
    }

    /// Without the policies: agreement with the model, byte for byte.
    fn check_model(&self, model: &Model) {
        let config = self.server.config();
        assert_eq!(self.server.admitted(), model.admitted, "admitted count");
        assert!(self.server.admitted() <= config.max_clients, "max clients");
        let mut nicks = HashSet::new();
        for (index, conn) in self.conns.iter().enumerate() {
            let id = self.id(index);
            let model = &model.clients[index];
            check_lines(&conn.received);
            let nick = self.server.nick(id);
            assert_eq!(nick, model.nick.as_deref(), "nick of {id}");
            if let Some(nick) = nick {
                assert!(nicks.insert(nick.to_lowercase()), "nick {nick} held twice");
            }
            match self.server.pending_bytes(id) {
                Some(pending) => {
                    assert!(!conn.closed, "{id} is open after handle_closed");
                    assert!(pending <= config.max_queue, "{id} holds {pending} bytes");
                    if !model.too_slow {
                        assert_eq!(pending, model.pending, "pending bytes of {id}");
                    }
                }
                None => assert!(conn.closed, "{id} was dropped before handle_closed"),
            }
            if let Some(buffered) = self.server.buffered_bytes(id) {
                assert!(
                    buffered <= config.max_line + 1,
                    "{id} buffers {buffered} bytes"
                );
            }
            assert_eq!(
                conn.close_requested.is_some() || conn.closed,
                model.closing || conn.closed,
                "whether {id} is being closed"
            );
            // What the client got is what the model says it must get: all
            // of it when it reads, a prefix while it does not or once it was
            // dropped as too slow.
            let expected = &model.expected;
            assert!(
                expected.starts_with(&conn.received),
                "{id} received {:?}\nbut the model expects {:?}",
                String::from_utf8_lossy(&conn.received),
                String::from_utf8_lossy(expected),
            );
            let complete =
                !conn.stalled && !conn.failed && !model.too_slow && conn.in_flight.is_empty();
            if complete {
                assert_eq!(
                    conn.received.len(),
                    expected.len(),
                    "{id} is missing {:?}",
                    String::from_utf8_lossy(&expected[conn.received.len()..]),
                );
            }
        }
    }
}

/// Every line a client receives is valid UTF-8, ends with LF (never CRLF)
/// and holds no control character but TAB.
pub fn check_lines(received: &[u8]) {
    // A partial write may end mid-line: its tail is checked when the rest
    // of the line arrives.
    let complete = match received.iter().rposition(|&b| b == b'\n') {
        Some(last) => &received[..=last],
        None => return,
    };
    let text = std::str::from_utf8(complete).expect("output must be valid UTF-8");
    for line in text.split_inclusive('\n') {
        let body = &line[..line.len() - 1];
        assert!(
            !body.chars().any(|c| c.is_control() && c != '\t'),
            "control character in {body:?}"
        );
        assert!(
            !body.chars().any(is_bidi_control),
            "bidi control in {body:?}"
        );
    }
}

fn check_event(event: &Event) {
    // Events are for logs: they name people, never carry chat text.
    if let Event::Joined { nick, .. } = event {
        assert_eq!(nick.chars().count(), 4, "generated nick {nick:?}");
        assert!(
            nick.chars().all(|c| c.is_ascii_alphanumeric()),
            "generated nick {nick:?}"
        );
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The protocol as a naive reference: who is connected under which nick,
/// and every byte each client must receive.
#[derive(Debug)]
struct Model {
    config: Config,
    clients: Vec<ModelClient>,
    admitted: usize,
    shutting_down: bool,
    /// Clients over their output limit, disconnected in id order once the
    /// current input is handled.
    over_limit: BTreeSet<usize>,
}

#[derive(Debug, Default)]
struct ModelClient {
    /// Set while the client is in the chat.
    nick: Option<String>,
    /// Counted against max clients until reported closed.
    admitted: bool,
    /// The server has asked to close it (or it was refused).
    closing: bool,
    too_slow: bool,
    /// Every byte the server must have queued for it, in order.
    expected: Vec<u8>,
    /// Queued or unwritten bytes, as the server counts them.
    pending: usize,
    /// The current unterminated line.
    line: Vec<u8>,
    /// The current line was reported too long; skip to its LF.
    discarding: bool,
}

impl Model {
    fn new(config: Config) -> Model {
        Model {
            config,
            clients: Vec::new(),
            admitted: 0,
            shutting_down: false,
            over_limit: BTreeSet::new(),
        }
    }

    fn joined(&self) -> impl Iterator<Item = (usize, &str)> + '_ {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.nick.as_deref().map(|n| (i, n)))
    }

    fn send(&mut self, to: usize, line: &str) {
        let limit = self.config.max_queue;
        let client = &mut self.clients[to];
        let len = line.len() + 1;
        if client.pending + len > limit {
            if client.nick.is_some() {
                self.over_limit.insert(to);
            }
            return;
        }
        client.pending += len;
        client.expected.extend_from_slice(line.as_bytes());
        client.expected.push(b'\n');
    }

    fn send_others(&mut self, from: usize, line: &str) {
        let others: Vec<usize> = self
            .joined()
            .map(|(i, _)| i)
            .filter(|&i| i != from)
            .collect();
        for to in others {
            self.send(to, line);
        }
    }

    /// `nick` is the generated nick the server announced, if it admitted the
    /// client.
    fn connect(&mut self, nick: Option<String>) {
        let index = self.clients.len();
        self.clients.push(ModelClient::default());
        let refusal = if self.shutting_down {
            Some("* server shutting down")
        } else if self.admitted >= self.config.max_clients {
            Some("* error: server full")
        } else {
            None
        };
        if let Some(text) = refusal {
            assert_eq!(nick, None, "a refused client must not join");
            self.send(index, text);
            self.clients[index].closing = true;
            return;
        }
        let nick = nick.expect("an admitted client must join");
        assert!(
            self.holder(&nick).is_none(),
            "generated nick {nick} is already taken"
        );
        self.admitted += 1;
        let client = &mut self.clients[index];
        client.admitted = true;
        client.nick = Some(nick.clone());
        let online = self.joined().count();
        let users = if online == 1 { "user" } else { "users" };
        self.send(
            index,
            &format!("* welcome, you are {nick}; {online} {users} online; type /help for commands"),
        );
        self.send_others(index, &format!("* {nick} joined"));
        self.disconnect_over_limit();
    }

    fn holder(&self, nick: &str) -> Option<usize> {
        let wanted = nick.to_lowercase();
        self.joined()
            .find(|(_, n)| n.to_lowercase() == wanted)
            .map(|(i, _)| i)
    }

    fn bytes(&mut self, index: usize, bytes: &[u8]) {
        let max = self.config.max_line;
        for &byte in bytes {
            if self.clients[index].nick.is_none() {
                return;
            }
            let client = &mut self.clients[index];
            if byte == b'\n' {
                let mut line = std::mem::take(&mut client.line);
                if std::mem::take(&mut client.discarding) {
                    continue;
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    self.too_long(index);
                } else {
                    self.line(index, &line);
                }
                self.disconnect_over_limit();
                continue;
            }
            if client.discarding {
                continue;
            }
            client.line.push(byte);
            // Over the limit even if a CR and LF come next: report it now.
            let len = client.line.len();
            if len > max + 1 || (len == max + 1 && byte != b'\r') {
                client.line.clear();
                client.discarding = true;
                self.too_long(index);
                self.disconnect_over_limit();
            }
        }
    }

    fn too_long(&mut self, index: usize) {
        let max = self.config.max_line;
        self.send(
            index,
            &format!("* error: line too long (max {max} bytes), discarded"),
        );
    }

    fn eof(&mut self, index: usize) {
        if self.clients[index].nick.is_none() {
            return;
        }
        let client = &mut self.clients[index];
        let mut line = std::mem::take(&mut client.line);
        if !std::mem::take(&mut client.discarding) && !line.is_empty() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line(index, &line);
            self.disconnect_over_limit();
        }
        self.leave(index, None, true);
        self.disconnect_over_limit();
    }

    fn closed(&mut self, index: usize) {
        if self.clients[index].nick.is_some() {
            self.leave(index, None, false);
            self.disconnect_over_limit();
        }
        let client = &mut self.clients[index];
        client.closing = true;
        if std::mem::take(&mut client.admitted) {
            self.admitted -= 1;
        }
    }

    fn written(&mut self, index: usize, written: usize) {
        let client = &mut self.clients[index];
        client.pending = client.pending.saturating_sub(written);
    }

    fn shutdown(&mut self) {
        if std::mem::replace(&mut self.shutting_down, true) {
            return;
        }
        let joined: Vec<usize> = self.joined().map(|(i, _)| i).collect();
        for index in joined {
            self.send(index, "* server shutting down");
            let client = &mut self.clients[index];
            client.nick = None;
            client.closing = true;
        }
        self.over_limit.clear();
    }

    /// The client leaves; `why` is the text shown in parentheses.
    fn leave(&mut self, index: usize, why: Option<&str>, close: bool) {
        let Some(nick) = self.clients[index].nick.take() else {
            return;
        };
        self.clients[index].closing |= close;
        let notice = match why {
            Some(why) => format!("* {nick} left ({why})"),
            None => format!("* {nick} left"),
        };
        self.send_others(index, &notice);
    }

    fn disconnect_over_limit(&mut self) {
        while let Some(index) = self.over_limit.pop_first() {
            if self.clients[index].nick.is_some() {
                let client = &mut self.clients[index];
                client.too_slow = true;
                client.pending = 0;
                self.leave(index, Some("too slow"), true);
            }
        }
    }

    /// One complete line, CR already removed.
    fn line(&mut self, index: usize, raw: &[u8]) {
        let text = sanitize(raw);
        if text.is_empty() {
            return;
        }
        let nick = self.clients[index]
            .nick
            .clone()
            .expect("only joined clients send");
        if let Some(rest) = text.strip_prefix("//") {
            return self.send_others(index, &format!("{nick}: /{rest}"));
        }
        let Some(command) = text.strip_prefix('/') else {
            return self.send_others(index, &format!("{nick}: {text}"));
        };
        let words: Vec<&str> = command
            .split([' ', '\t'])
            .filter(|w| !w.is_empty())
            .collect();
        let name = command.split([' ', '\t']).next().unwrap_or_default();
        // The text after the first word and the gap that follows it.
        let after = |text: &str| -> String {
            match text.find([' ', '\t']) {
                Some(at) => text[at..].trim_start_matches([' ', '\t']).to_owned(),
                None => String::new(),
            }
        };
        let args = after(command);
        match name.to_ascii_lowercase().as_str() {
            "nick" => {
                if words.len() != 2 {
                    return self.send(index, "* error: usage: /nick NAME");
                }
                let new = words[1];
                if new == nick {
                    return self.send(index, &format!("* you are now known as {new}"));
                }
                let count = new.chars().count();
                let valid = (1..=32).contains(&count)
                    && new
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    let text =
                        format!("* error: invalid nick {new}: use 1-32 letters, digits, _ or -");
                    return self.send(index, &text);
                }
                if self.holder(new).is_some_and(|holder| holder != index) {
                    return self.send(index, &format!("* error: nick {new} is already taken"));
                }
                self.clients[index].nick = Some(new.to_owned());
                self.send(index, &format!("* you are now known as {new}"));
                self.send_others(index, &format!("* {nick} is now known as {new}"));
            }
            "me" if args.is_empty() => self.send(index, "* error: usage: /me TEXT"),
            "me" => self.send_others(index, &format!("* {nick} {args}")),
            "msg" => {
                let target = words.get(1).copied().unwrap_or_default();
                let text = after(&args);
                if target.is_empty() || text.is_empty() {
                    return self.send(index, "* error: usage: /msg NICK TEXT");
                }
                match self.holder(target) {
                    Some(to) => self.send(to, &format!("*{nick}* {text}")),
                    None => self.send(index, &format!("* error: no such nick {target}")),
                }
            }
            "who" => {
                let mut nicks: Vec<String> = self.joined().map(|(_, n)| n.to_owned()).collect();
                nicks.sort_by_key(|n| (n.to_lowercase(), n.clone()));
                let users = if nicks.len() == 1 { "user" } else { "users" };
                let text = format!("* {} {users} online: {}", nicks.len(), nicks.join(", "));
                self.send(index, &text);
            }
            "help" => {
                for line in HELP {
                    self.send(index, &format!("* {line}"));
                }
            }
            "quit" => {
                self.send(index, "* bye");
                let why = (!args.is_empty()).then_some(args.as_str());
                self.leave(index, why, true);
            }
            _ => self.send(
                index,
                &format!("* error: unknown command /{name}, try /help"),
            ),
        }
    }
}

/// protocol.md, "Sanitizing", written out plainly.
fn sanitize(raw: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(raw)
        .chars()
        .map(|c| {
            if (c.is_control() && c != '\t') || is_bidi_control(c) {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    text.trim_end().to_owned()
}
