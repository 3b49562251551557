//! The simulated driver: the run loop of the crate docs on a virtual clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::Client;
use super::observer::{Call, Input, Observer, Seen};
use super::{check_line, check_sent_bytes};
use crate::cluster::{CallId, Reply, Request};
use crate::{Config, ConnId, Event, Output, Reason, Server};

/// One nanosecond: the resolution timed tests check deadlines to.
pub const NS: Duration = Duration::from_nanos(1);

/// Most deadlines [`Driver::advance_to`] runs through before it gives up.
const MAX_DEADLINES: usize = 100_000;

/// When the driver moves bytes out with `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// At once on `Output::Transmit` (and once more on a flushing
    /// `Close`), whether or not the client reads: the bytes wait in the
    /// driver ([`Client::in_flight`]) until written.
    Eager,
    /// Only when the socket can take them: when the driver writes to a
    /// client that reads, or on [`Driver::write`].
    WhenWritable,
}

/// The one simulated driver: a [`Server`] on a virtual clock, driven the way
/// the crate docs say a driver must (drain every output after every input,
/// `handle_timeout` exactly at `poll_timeout`, close on `Close`, stop reading
/// on `StopReading`), recording what every client received.
///
/// After every call it checks what holds for any server: ids increase, no
/// output for a connection reported closed, no second `Transmit` before
/// `poll_transmit`, one `Close` per connection (without a flush only for a
/// too-slow client, never with reason `Closed`), `StopReading` and
/// `ResumeReading` alternate and never follow a `Close`, what
/// `poll_transmit` gives is whole clean lines and counted right, output held
/// per connection stays within `max_queue`, and `poll_timeout` is after the
/// last `now`. Layers add their own checks through an [`Observer`].
#[derive(Debug)]
pub struct Driver<O: Observer = ()> {
    pub(super) server: Server,
    pub(super) base: Instant,
    /// The virtual time since `base` of the latest call.
    pub(super) now: Duration,
    /// How far the clock moves before each call but `handle_timeout`.
    pub(super) step: Duration,
    pub(super) take_mode: Take,
    pub(super) flush_stalled: bool,
    pub(super) linger: bool,
    pub(super) next_port: u16,
    pub(super) clients: Vec<Client>,
    pub(super) by_id: HashMap<ConnId, usize>,
    pub(super) trace: Vec<Seen>,
    /// How much of `trace` [`Driver::closes`] and [`Driver::events`] took.
    pub(super) closes_seen: usize,
    pub(super) events_seen: usize,
    pub(super) observer: Option<O>,
    /// Calls for Redis the server asked for and the test has not taken.
    pub(super) requests: VecDeque<Request>,
}

impl Driver {
    /// A driver around `Server::new(config, seed)` whose clock stands still
    /// but for [`Driver::advance_to`]; bytes are taken at once.
    pub fn new(config: Config, seed: u64) -> Driver {
        Driver::with_server(Server::new(config, seed))
    }

    /// A driver around `server`, set up as by [`Driver::new`].
    pub fn with_server(server: Server) -> Driver {
        Driver::observed(server, ())
    }
}

impl<O: Observer> Driver<O> {
    /// A driver around `server`, set up as by [`Driver::new`], with
    /// `observer` around every call.
    pub fn observed(server: Server, observer: O) -> Driver<O> {
        let mut driver = Driver {
            server,
            base: Instant::now(),
            now: Duration::ZERO,
            step: Duration::ZERO,
            take_mode: Take::Eager,
            flush_stalled: false,
            linger: false,
            next_port: 40_000,
            clients: Vec::new(),
            by_id: HashMap::new(),
            trace: Vec::new(),
            closes_seen: 0,
            events_seen: 0,
            observer: Some(observer),
            requests: VecDeque::new(),
        };
        // A node of a shared room asks for its hello at once.
        driver.drain();
        driver
    }

    /// Takes the calls for Redis the server asked for since the last time,
    /// in order (see `Output::Cluster`).
    pub fn take_requests(&mut self) -> Vec<Request> {
        self.requests.drain(..).collect()
    }

    /// `handle_cluster_down`, not settled; the calls not taken yet are
    /// dropped, as a driver drops those it had not run.
    pub fn handle_cluster_down(&mut self) {
        self.requests.clear();
        self.call(Call::ClusterDown);
    }

    /// `handle_cluster_reply` with the reply to call `id`, not settled.
    pub fn handle_cluster_reply(&mut self, id: CallId, reply: &Reply) {
        self.call(Call::ClusterReply(id, reply));
    }

    /// Moves the clock by `step` before every call but `handle_timeout`
    /// (tests of untimed rules ignore time; this keeps it moving).
    pub fn with_clock_step(mut self, step: Duration) -> Self {
        self.step = step;
        self
    }

    /// Takes bytes with `poll_transmit` as `take` says.
    pub fn with_take(mut self, take: Take) -> Self {
        self.take_mode = take;
        self
    }

    /// Whether a flushing close writes what is left even to a stalled client.
    pub fn with_flush_stalled(mut self, flush_stalled: bool) -> Self {
        self.flush_stalled = flush_stalled;
        self
    }

    /// Whether new connections linger after `Close` (see [`Client::linger`]).
    pub fn with_linger(mut self, linger: bool) -> Self {
        self.linger = linger;
        self
    }

    /// The server under test.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The server, to call it behind the driver's back.
    pub fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }

    /// The server's config.
    pub fn config(&self) -> &Config {
        self.server.config()
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        self.observer
            .as_ref()
            .expect("the observer is only out during a hook")
    }

    /// The observer, to change.
    pub fn observer_mut(&mut self) -> &mut O {
        self.observer
            .as_mut()
            .expect("the observer is only out during a hook")
    }

    /// The virtual time of the latest call, since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The virtual time as an `Instant`.
    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// `poll_timeout` as a time since the start.
    pub fn deadline(&self) -> Option<Duration> {
        self.server.poll_timeout().map(|at| at - self.base)
    }

    /// Every connection so far, in connect order.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// What the driver knows about `conn`.
    pub fn client(&self, conn: ConnId) -> &Client {
        &self.clients[self.index_of(conn)]
    }

    /// What the driver knows about `conn`, to change (say `stalled`).
    pub fn client_mut(&mut self, conn: ConnId) -> &mut Client {
        let index = self.index_of(conn);
        &mut self.clients[index]
    }

    /// The connect-order index of `conn`.
    pub fn index_of(&self, conn: ConnId) -> usize {
        *self
            .by_id
            .get(&conn)
            .unwrap_or_else(|| panic!("{conn} was never opened"))
    }

    /// Everything seen so far, in order.
    pub fn trace(&self) -> &[Seen] {
        &self.trace
    }

    /// Whether the server asked not to read `conn` and has not taken it
    /// back (nor closed it since).
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.by_id
            .get(&conn)
            .is_some_and(|&i| !self.clients[i].reading && self.clients[i].close.is_none())
    }

    /// What the driver knows about `conn`, if it was ever opened.
    pub(super) fn known_mut(&mut self, conn: ConnId) -> Option<&mut Client> {
        let index = *self.by_id.get(&conn)?;
        Some(&mut self.clients[index])
    }

    // -- calls into the server ---------------------------------------------

    /// One call into the server with the observer around it; its outputs
    /// are drained and carried out (not [`Driver::settle`]d).
    fn call(&mut self, call: Call<'_>) -> Option<ConnId> {
        if !matches!(call, Call::Timeout) {
            self.now += self.step;
        }
        let mut observer = self.observer.take().expect("hooks do not nest");
        observer.before(self, &call);
        let start = self.trace.len();
        let now = self.instant();
        let mut opened = None;
        match call {
            Call::Connect(peer) | Call::Accept(peer) => {
                let id = match call {
                    Call::Accept(_) => self.server.handle_accept(now, peer),
                    _ => self.server.handle_connect(now, peer),
                };
                if let Some(last) = self.clients.last() {
                    assert!(
                        id > last.id,
                        "connection ids must increase: {id} after {}",
                        last.id
                    );
                }
                self.by_id.insert(id, self.clients.len());
                self.clients.push(Client::new(id, peer, self.linger));
                opened = Some(id);
            }
            Call::Ready(id) => self.server.handle_ready(now, id),
            Call::Bytes(id, bytes) => self.server.handle_bytes(now, id, bytes),
            Call::Eof(id) => {
                if let Some(client) = self.known_mut(id) {
                    client.eof_fed = true;
                }
                self.server.handle_eof(now, id);
            }
            Call::Closed(id) => {
                if let Some(client) = self.known_mut(id) {
                    client.closed = true;
                    client.in_flight.clear();
                    client.socket.clear();
                }
                self.server.handle_closed(now, id);
                assert_eq!(
                    self.server.pending_bytes(id),
                    None,
                    "{id} is open after handle_closed"
                );
            }
            Call::Written(id, n) => {
                self.server.handle_written(now, id, n);
                let at = self.now;
                let client = self.client_mut(id);
                client.blocked = false;
                let written: Vec<u8> = client.in_flight.drain(..n).collect();
                client.received.extend_from_slice(&written);
                let start = client.received.len() - n;
                let mut line_start = client.received[..start]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |at| at + 1);
                for end in start..client.received.len() {
                    if client.received[end] == b'\n' {
                        let line = String::from_utf8(client.received[line_start..end].to_vec())
                            .expect("lines sent are UTF-8");
                        check_line(&line);
                        client.lines.push((at, line));
                        line_start = end + 1;
                    }
                }
            }
            Call::Blocked(id) => {
                self.client_mut(id).blocked = true;
                self.server.handle_blocked(now, id);
            }
            Call::Timeout => self.server.handle_timeout(now),
            Call::Shutdown => self.server.handle_shutdown(now),
            Call::ClusterReply(id, reply) => {
                self.server.handle_cluster_reply(now, id, reply.clone());
            }
            Call::ClusterDown => self.server.handle_cluster_down(now),
        }
        self.drain();
        if let (Call::Accept(_), Some(id)) = (call, opened) {
            let client = self.client_mut(id);
            client.connecting = client.close.is_none();
        }
        self.check();
        observer.after(self, &call, &self.trace[start..]);
        self.observer = Some(observer);
        opened
    }

    /// Takes every output and carries it out the way a driver does.
    fn drain(&mut self) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Transmit(id) => {
                    self.trace.push(Seen::Transmit(id));
                    let client = self.client_mut(id);
                    assert!(!client.closed, "Transmit for {id}, reported closed");
                    assert!(
                        !client.signalled,
                        "second Transmit for {id} before poll_transmit"
                    );
                    client.signalled = true;
                    if self.take_mode == Take::Eager {
                        self.take(id);
                    }
                }
                Output::Close {
                    conn,
                    reason,
                    flush,
                } => {
                    self.trace.push(Seen::Close(conn, reason.clone(), flush));
                    let client = self.client_mut(conn);
                    assert!(!client.closed, "Close for {conn}, reported closed");
                    assert!(client.close.is_none(), "second Close for {conn} ({reason})");
                    assert_ne!(reason, Reason::Closed, "Close with reason Closed");
                    assert_eq!(
                        flush,
                        reason != Reason::TooSlow,
                        "only a too-slow client is closed without a flush ({reason})"
                    );
                    if !flush {
                        client.in_flight.clear();
                    }
                    client.close = Some((reason, flush));
                    if flush && self.take_mode == Take::Eager {
                        self.take(conn);
                    }
                }
                Output::StopReading(id) => {
                    self.trace.push(Seen::Stop(id));
                    let client = self.client_mut(id);
                    assert!(client.reading, "StopReading for {id} twice in a row");
                    assert!(client.close.is_none(), "StopReading for {id} after Close");
                    assert!(!client.closed, "StopReading for {id}, reported closed");
                    client.reading = false;
                    client.read_in_flight = true;
                }
                Output::ResumeReading(id) => {
                    self.trace.push(Seen::Resume(id));
                    let client = self.client_mut(id);
                    assert!(
                        !client.reading,
                        "ResumeReading for {id} without StopReading"
                    );
                    assert!(client.close.is_none(), "ResumeReading for {id} after Close");
                    assert!(!client.closed, "ResumeReading for {id}, reported closed");
                    client.reading = true;
                    client.read_in_flight = false;
                }
                Output::Event(event) => {
                    // `Event::clone(&event)` works whether or not the output
                    // boxes its event.
                    let event = Event::clone(&event);
                    if let Event::Joined { conn, nick, .. } = &event {
                        let nick = nick.clone();
                        let client = self.client_mut(*conn);
                        client.nick = Some(nick);
                        client.connecting = false;
                    }
                    self.trace.push(Seen::Event(event));
                }
                Output::Cluster(request) => {
                    self.trace.push(Seen::Cluster(Request::clone(&request)));
                    self.requests.push_back(*request);
                }
            }
        }
    }

    /// `poll_transmit` for `id`, the bytes kept in the driver.
    fn take(&mut self, id: ConnId) {
        let mut chunks: Vec<Bytes> = Vec::new();
        let moved = self.server.poll_transmit(id, &mut chunks);
        let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(
            moved,
            bytes.len(),
            "poll_transmit must return the bytes it moved"
        );
        let client = self.client_mut(id);
        client.signalled = false;
        if client.closed {
            assert!(bytes.is_empty(), "bytes for {id}, reported closed");
            return;
        }
        if bytes.is_empty() {
            return;
        }
        check_sent_bytes(&bytes);
        client.taken.extend_from_slice(&bytes);
        client.batches.push(client.taken.len());
        client.in_flight.extend_from_slice(&bytes);
        self.trace.push(Seen::Bytes(id, bytes));
    }

    /// What holds after every call.
    fn check(&mut self) {
        let max_queue = self.config().max_queue;
        for conn in self.server.connections() {
            let pending = self.server.pending_bytes(conn).unwrap_or(0);
            assert!(
                pending <= max_queue,
                "{conn} holds {pending} bytes, over max_queue"
            );
        }
        if let Some(deadline) = self.deadline() {
            assert!(
                deadline > self.now,
                "poll_timeout {deadline:?} is not after the last now {:?}",
                self.now
            );
        }
    }

    /// `handle_connect` from `peer`, not settled: returns the new id.
    pub fn handle_connect(&mut self, peer: SocketAddr) -> ConnId {
        self.call(Call::Connect(peer))
            .expect("a connect opens a connection")
    }

    /// `handle_accept` from `peer`, not settled: returns the new id.
    pub fn handle_accept(&mut self, peer: SocketAddr) -> ConnId {
        self.call(Call::Accept(peer))
            .expect("an accept opens a connection")
    }

    /// `handle_ready`, not settled.
    pub fn handle_ready(&mut self, conn: ConnId) {
        self.call(Call::Ready(conn));
    }

    /// `handle_bytes`, not settled.
    pub fn handle_bytes(&mut self, conn: ConnId, bytes: &[u8]) {
        self.call(Call::Bytes(conn, bytes));
    }

    /// `handle_eof`, not settled.
    pub fn handle_eof(&mut self, conn: ConnId) {
        self.call(Call::Eof(conn));
    }

    /// `handle_closed` (also for a connection reported closed already: the
    /// server ignores a second report), not settled.
    pub fn handle_closed(&mut self, conn: ConnId) {
        self.call(Call::Closed(conn));
    }

    /// Writes up to `max` bytes to `conn` (taking them first unless bytes
    /// are taken at once) and reports the write, not settled. A write that
    /// leaves bytes unwritten is reported as the socket being full.
    pub fn handle_written(&mut self, conn: ConnId, max: usize) {
        if self.take_mode == Take::WhenWritable {
            self.take(conn);
        }
        let client = self.client(conn);
        let n = client.in_flight.len().min(max);
        if !client.closed && n > 0 {
            self.call(Call::Written(conn, n));
        }
        let client = self.client(conn);
        if !client.closed && !client.in_flight.is_empty() {
            self.handle_blocked(conn);
        }
    }

    /// `handle_blocked`, not settled.
    pub fn handle_blocked(&mut self, conn: ConnId) {
        self.call(Call::Blocked(conn));
    }

    /// `handle_timeout` now, not settled.
    pub fn handle_timeout(&mut self) {
        self.call(Call::Timeout);
    }

    /// `handle_shutdown`, not settled.
    pub fn handle_shutdown(&mut self) {
        self.call(Call::Shutdown);
    }

    // -- the run loop ------------------------------------------------------

    /// Does what the outputs asked until nothing is left to do: writes to
    /// every client that reads, closes (after writing what is left if the
    /// close flushes), feeds what waited in the socket of a client the
    /// server reads again.
    pub fn settle(&mut self) {
        loop {
            let mut busy = false;
            for index in 0..self.clients.len() {
                let client = &self.clients[index];
                let id = client.id;
                if client.closed {
                    continue;
                }
                let writable = !client.stalled;
                let has_output = match self.take_mode {
                    Take::Eager => !client.in_flight.is_empty(),
                    Take::WhenWritable => client.signalled,
                };
                if let Some((_, flush)) = client.close {
                    let linger = client.linger;
                    let before = client.received.len();
                    if flush && (writable || self.flush_stalled) {
                        self.handle_written(id, usize::MAX);
                    }
                    if linger {
                        busy |= self.clients[index].received.len() > before;
                    } else {
                        self.handle_closed(id);
                        busy = true;
                    }
                } else if writable && has_output {
                    self.handle_written(id, usize::MAX);
                    busy = true;
                } else if !writable && has_output && !client.blocked {
                    // A client that does not read: its socket is full.
                    self.handle_blocked(id);
                    busy = true;
                } else if client.reading && !client.socket.is_empty() {
                    if let Some(input) = self.clients[index].socket.pop_front() {
                        self.feed(id, input);
                    }
                    busy = true;
                }
            }
            if !busy {
                break;
            }
        }
        let mut observer = self.observer.take().expect("hooks do not nest");
        observer.settled(self);
        self.observer = Some(observer);
    }

    /// Moves the clock to `at` as a driver sleeping on `poll_timeout` does:
    /// `handle_timeout` at every deadline up to `at`, exactly then, settling
    /// after each.
    pub fn advance_to(&mut self, at: Duration) {
        assert!(at >= self.now, "the clock never goes back");
        for _ in 0..MAX_DEADLINES {
            match self.deadline() {
                Some(deadline) if deadline <= at => {
                    self.now = deadline;
                    self.handle_timeout();
                    self.settle();
                }
                _ => {
                    self.now = at;
                    return;
                }
            }
        }
        panic!("too many deadlines before {at:?}");
    }

    /// [`Driver::advance_to`] `span` later.
    pub fn advance(&mut self, span: Duration) {
        self.advance_to(self.now + span);
    }

    /// Runs every deadline left, until there is none.
    pub fn run_out(&mut self) {
        for _ in 0..MAX_DEADLINES {
            let Some(at) = self.deadline() else {
                return;
            };
            self.advance_to(at);
        }
        panic!("deadlines never run out");
    }

    /// Gives `input` to the server, whatever the state of the connection.
    pub fn feed(&mut self, conn: ConnId, input: Input) {
        match input {
            Input::Bytes(bytes) => self.handle_bytes(conn, &bytes),
            Input::Eof => self.handle_eof(conn),
        }
    }
}
