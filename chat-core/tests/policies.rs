//! Tests for `docs/protocol.md`, "Address policies" (flood control, excess
//! flood, line and idle timeouts, max per ip, connect rate, nick rate, the
//! loopback exemption, `poll_timeout`), each named `policies_*`: first one
//! deterministic test (or a few) per rule, driven by
//! `chat_core::testkit::Driver` on a virtual clock (in `policies/rules.rs`);
//! then, here, property tests of the policies and of the soft output limit
//! ("Limits and policies") against an oracle, on a virtual clock.
//!
//! [`Sim`] runs the server in `testkit::Driver`, which drives it the way a
//! real driver does: it feeds no byte of
//! a client while the server has asked to stop reading it (they wait in the
//! "socket" and are fed on `ResumeReading`; sometimes one read was already in
//! flight when the stop came and is fed anyway), it calls `handle_timeout`
//! exactly at `poll_timeout` and never later, it takes output with
//! `poll_transmit` as soon as it is signalled and writes it to every client
//! that reads, and it closes on `Output::Close`.
//!
//! Every call is mirrored into [`Oracle`], a naive model of the policies
//! written from protocol.md, not from the server: framing byte by byte, rates
//! as token buckets holding credit in nanoseconds (not GCRA's theoretical
//! arrival times), a plain FIFO of waiting lines, and every deadline
//! recomputed from scratch from what the driver fed and when. After every
//! single call into the server, the driver's observer [`Mirror`] compares:
//!
//! - the `StopReading`, `ResumeReading` and `Close` outputs of that call
//!   (and the reason of every close) with the oracle's;
//! - `poll_timeout()` with the earliest deadline of any client computed by
//!   brute force, and that it is strictly later than the last `now`;
//! - held lines, pending output bytes (against what the driver holds) and
//!   buffered line bytes with the oracle; which clients hold a nick;
//! - and the driver itself checks that every line sent is whole and clean,
//!   and that `StopReading` and `ResumeReading` alternate and never follow
//!   a `Close`.
//!
//! Each property then checks its own end result (transcripts with the time
//! each line arrived, refusals, disconnect times).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use chat_core::testkit::rules::ms;
use chat_core::testkit::{Call, Client, Driver, Input, Observer, Seen, counted_as};
use chat_core::{Config, ConnId, Rate, Reason, Server};
use proptest::prelude::*;

/// The rule tests, one by one.
#[path = "policies/rules.rs"]
mod rules;

// ---------------------------------------------------------------------------
// Properties against the oracle
// ---------------------------------------------------------------------------

/// Virtual time: nanoseconds since the start of a run.
type Nanos = u64;

const MS: Nanos = 1_000_000;
const SEC: Nanos = 1_000_000_000;

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).expect("test durations fit in u64 nanoseconds")
}

// ---------------------------------------------------------------------------
// The oracle

/// A token bucket as the spec states it: it holds up to `burst` tokens, one
/// more is earned every `interval`. Kept as credit in nanoseconds: one token
/// costs `interval`, the credit grows with time up to `burst * interval`.
#[derive(Debug, Clone)]
struct Bucket {
    cap: Nanos,
    cost: Nanos,
    credit: Nanos,
    /// When `credit` was last updated.
    at: Nanos,
}

impl Bucket {
    /// A full bucket.
    fn new(rate: Rate, now: Nanos) -> Bucket {
        let cost = nanos(rate.interval);
        let cap = cost * Nanos::from(rate.burst);
        Bucket {
            cap,
            cost,
            credit: cap,
            at: now,
        }
    }

    fn credit(&self, now: Nanos) -> Nanos {
        self.credit.saturating_add(now - self.at).min(self.cap)
    }

    /// Takes one token if there is one.
    fn take(&mut self, now: Nanos) -> bool {
        let credit = self.credit(now);
        if credit < self.cost {
            return false;
        }
        self.credit = credit - self.cost;
        self.at = now;
        true
    }

    /// When the next token is there (`at` or earlier if it is already).
    fn ready_at(&self) -> Nanos {
        self.at + self.cost.saturating_sub(self.credit)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it maps (for the
/// loopback test; the address a peer counts under is `counted_as`).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.segments() {
            [0, 0, 0, 0, 0, 0xffff, hi, lo] => {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            _ => ip,
        },
        v4 => v4,
    }
}

/// protocol.md: `127.0.0.0/8`, `::1` and `::ffff:127.0.0.0/104`.
fn is_loopback(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// Why a client left or was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Quit,
    Eof,
    /// The driver reported the connection closed: no `Close` output.
    Closed,
    TooSlow,
    ExcessFlood,
    Idle,
    IncompleteLine,
    TooMany,
    ServerFull,
    Shutdown,
}

impl Why {
    fn of(reason: &Reason) -> Why {
        match reason {
            Reason::Quit(_) => Why::Quit,
            Reason::Eof => Why::Eof,
            Reason::Closed => Why::Closed,
            Reason::TooSlow => Why::TooSlow,
            Reason::ExcessFlood => Why::ExcessFlood,
            Reason::Idle => Why::Idle,
            Reason::IncompleteLine => Why::IncompleteLine,
            Reason::TooManyFromAddress => Why::TooMany,
            Reason::ServerFull => Why::ServerFull,
            Reason::Shutdown => Why::Shutdown,
            Reason::RoomUnavailable | Reason::RoomLost | Reason::NickLost => {
                panic!("the oracle's server is no node of a shared room")
            }
        }
    }

    /// The reason in `* error: disconnected (REASON)` and `* NICK left (REASON)`
    /// for the policies that tell the client.
    fn policy(self) -> Option<&'static str> {
        match self {
            Why::ExcessFlood => Some("excess flood"),
            Why::Idle => Some("idle"),
            Why::IncompleteLine => Some("incomplete line timeout"),
            _ => None,
        }
    }
}

/// The outputs that steer the driver, by client index (connect order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctl {
    Stop(usize),
    Resume(usize),
    Close(usize, Why),
}

impl Ctl {
    fn client(self) -> usize {
        match self {
            Ctl::Stop(i) | Ctl::Resume(i) | Ctl::Close(i, _) => i,
        }
    }
}

/// A line as the framing hands it to the rest of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OFrame {
    /// The bytes before the LF, one trailing CR removed.
    Line(Vec<u8>),
    TooLong,
}

/// What the oracle says happened to a client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OEvent {
    /// One of its lines was handled (taken by the chat).
    Handled(OFrame),
    /// It left.
    Left(Why),
}

#[derive(Debug)]
struct OClient {
    limited: bool,
    /// The address it counts under (an IPv6 one by its prefix).
    ip: IpAddr,
    /// In the chat.
    joined: bool,
    /// Counted against `max_clients` and `max_per_ip` until reported closed.
    admitted: bool,
    closed: bool,
    /// The current unterminated line (not kept while discarding).
    line: Vec<u8>,
    /// The current line was too long: skip to its LF.
    discarding: bool,
    /// When the first byte of the current unterminated line was fed.
    line_start: Option<Nanos>,
    /// When the client last sent a byte (or one of its waiting lines was handled).
    last_input: Nanos,
    /// Flood control, if it applies to the client.
    flood: Option<Bucket>,
    /// Lines waiting for flood control, oldest first.
    waiting: VecDeque<OFrame>,
    /// Ever had a line waiting.
    ever_waited: bool,
    /// EOF came while lines were waiting.
    eof_pending: bool,
    /// Since when its output is over the soft limit (from the driver's count).
    over_since: Option<Nanos>,
}

#[derive(Debug)]
struct OAddress {
    open: usize,
    connect: Option<Bucket>,
}

#[derive(Debug)]
struct Oracle {
    config: Config,
    clients: Vec<OClient>,
    joined: BTreeSet<usize>,
    addresses: HashMap<IpAddr, OAddress>,
    admitted: usize,
    shutting_down: bool,
    /// Everything that happened to clients, in order: (time, client, event).
    events: Vec<(Nanos, usize, OEvent)>,
    /// The steering outputs of the current call.
    out: Vec<Ctl>,
}

fn dur(d: Option<Duration>) -> Option<Nanos> {
    d.map(nanos)
}

/// A `/quit` command, as the server reads commands (after sanitizing, which
/// the tests' lines never need).
fn is_quit(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some(command) = text.trim_end().strip_prefix('/') else {
        return false;
    };
    let name = command.split([' ', '\t']).next().unwrap_or_default();
    name.eq_ignore_ascii_case("quit")
}

impl Oracle {
    fn new(config: Config) -> Oracle {
        Oracle {
            config,
            clients: Vec::new(),
            joined: BTreeSet::new(),
            addresses: HashMap::new(),
            admitted: 0,
            shutting_down: false,
            events: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The client's next deadline, from scratch.
    fn client_deadline(&self, i: usize) -> Option<Nanos> {
        let c = &self.clients[i];
        if !c.joined {
            return None;
        }
        let config = &self.config;
        let mut deadlines = Vec::new();
        if let Some(since) = c.over_since {
            deadlines.push(since + nanos(config.soft_queue_grace));
        }
        if c.limited {
            if c.waiting.is_empty() {
                if let (Some(start), Some(limit)) = (c.line_start, dur(config.line_timeout)) {
                    deadlines.push(start + limit);
                }
                if let Some(limit) = dur(config.idle_timeout) {
                    deadlines.push(c.last_input + limit);
                }
            } else if let Some(bucket) = &c.flood {
                deadlines.push(bucket.ready_at());
            }
        }
        deadlines.into_iter().min()
    }

    /// The earliest deadline of any client: what `poll_timeout` must say.
    fn deadline(&self) -> Option<Nanos> {
        self.joined
            .iter()
            .filter_map(|&i| self.client_deadline(i))
            .min()
    }

    /// Runs every deadline due by `now`, clients in connect order.
    fn run_due(&mut self, now: Nanos) {
        let joined: Vec<usize> = self.joined.iter().copied().collect();
        for i in joined {
            if self.client_deadline(i).is_some_and(|at| at <= now) {
                self.expire(now, i);
            }
        }
    }

    fn expire(&mut self, now: Nanos, i: usize) {
        let config = &self.config;
        let c = &self.clients[i];
        let due = |since: Option<Nanos>, limit: Option<Nanos>| {
            since
                .zip(limit)
                .is_some_and(|(since, limit)| since + limit <= now)
        };
        if due(c.over_since, Some(nanos(config.soft_queue_grace))) {
            return self.leave(now, i, Why::TooSlow);
        }
        if c.limited && c.waiting.is_empty() {
            if due(c.line_start, dur(config.line_timeout)) {
                return self.leave(now, i, Why::IncompleteLine);
            }
            if due(Some(c.last_input), dur(config.idle_timeout)) {
                return self.leave(now, i, Why::Idle);
            }
        }
        self.release(now, i);
    }

    /// Handles the waiting lines the bucket lets through now, in order.
    fn release(&mut self, now: Nanos, i: usize) {
        loop {
            let c = &mut self.clients[i];
            if !c.joined || c.waiting.is_empty() {
                return;
            }
            let Some(bucket) = c.flood.as_mut() else {
                return;
            };
            if !bucket.take(now) {
                return;
            }
            c.last_input = now;
            let frame = c.waiting.pop_front().expect("a line is waiting");
            let drained = c.waiting.is_empty();
            if drained {
                // The rest of its current line waited in the socket: its
                // time starts again.
                if c.line_start.is_some() {
                    c.line_start = Some(now);
                }
                if !c.eof_pending {
                    self.out.push(Ctl::Resume(i));
                }
            }
            self.handle(now, i, frame);
            if drained {
                let c = &mut self.clients[i];
                if c.joined && std::mem::take(&mut c.eof_pending) {
                    self.finish(now, i);
                }
                return;
            }
        }
    }

    fn leave(&mut self, now: Nanos, i: usize, why: Why) {
        let c = &mut self.clients[i];
        if !c.joined {
            return;
        }
        c.joined = false;
        c.waiting.clear();
        c.eof_pending = false;
        self.joined.remove(&i);
        self.events.push((now, i, OEvent::Left(why)));
        if why != Why::Closed {
            self.out.push(Ctl::Close(i, why));
        }
    }

    /// A line is taken by the chat: only `/quit` matters to the policies.
    fn handle(&mut self, now: Nanos, i: usize, frame: OFrame) {
        let quit = matches!(&frame, OFrame::Line(line) if is_quit(line));
        self.events.push((now, i, OEvent::Handled(frame)));
        if quit {
            self.leave(now, i, Why::Quit);
        }
    }

    /// One line from the framing: handled now if nothing waits and the
    /// budget allows, else it waits.
    fn frame(&mut self, now: Nanos, i: usize, frame: OFrame) {
        let excess = self.config.flood_excess;
        let c = &mut self.clients[i];
        let passes = c.waiting.is_empty() && c.flood.as_mut().is_none_or(|b| b.take(now));
        if passes {
            return self.handle(now, i, frame);
        }
        c.waiting.push_back(frame);
        c.ever_waited = true;
        if c.waiting.len() > excess {
            self.leave(now, i, Why::ExcessFlood);
        } else if c.waiting.len() == 1 && !c.eof_pending {
            self.out.push(Ctl::Stop(i));
        }
    }

    fn connect(&mut self, now: Nanos, peer: SocketAddr) {
        self.run_due(now);
        let i = self.clients.len();
        let limited = self.config.limit_loopback || !is_loopback(peer.ip());
        let ip = counted_as(peer.ip(), self.config.ipv6_prefix);
        let refusal = if self.shutting_down {
            Some(Why::Shutdown)
        } else if self.admitted >= self.config.max_clients {
            Some(Why::ServerFull)
        } else if limited && !self.admit_address(now, ip) {
            Some(Why::TooMany)
        } else {
            None
        };
        let flood = match self.config.flood {
            Some(rate) if limited => Some(Bucket::new(rate, now)),
            _ => None,
        };
        self.clients.push(OClient {
            limited,
            ip,
            joined: refusal.is_none(),
            admitted: refusal.is_none(),
            closed: false,
            line: Vec::new(),
            discarding: false,
            line_start: None,
            last_input: now,
            flood,
            waiting: VecDeque::new(),
            ever_waited: false,
            eof_pending: false,
            over_since: None,
        });
        match refusal {
            Some(why) => {
                self.events.push((now, i, OEvent::Left(why)));
                self.out.push(Ctl::Close(i, why));
            }
            None => {
                self.admitted += 1;
                self.joined.insert(i);
            }
        }
    }

    /// The connect rate (every attempt that finds a token takes it), then
    /// the count of open connections.
    fn admit_address(&mut self, now: Nanos, ip: IpAddr) -> bool {
        let rate = self.config.connect_rate;
        let address = self.addresses.entry(ip).or_insert_with(|| OAddress {
            open: 0,
            connect: rate.map(|rate| Bucket::new(rate, now)),
        });
        if let Some(bucket) = address.connect.as_mut() {
            if !bucket.take(now) {
                return false;
            }
        }
        if self
            .config
            .max_per_ip
            .is_some_and(|max| address.open >= max)
        {
            return false;
        }
        address.open += 1;
        true
    }

    fn bytes(&mut self, now: Nanos, i: usize, bytes: &[u8]) {
        self.run_due(now);
        let max = self.config.max_line;
        let c = &mut self.clients[i];
        if !c.joined || bytes.is_empty() {
            return;
        }
        c.last_input = now;
        for &byte in bytes {
            let c = &mut self.clients[i];
            if !c.joined {
                return;
            }
            if byte == b'\n' {
                c.line_start = None;
                let mut line = std::mem::take(&mut c.line);
                if std::mem::take(&mut c.discarding) {
                    continue;
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let frame = if line.len() > max {
                    OFrame::TooLong
                } else {
                    OFrame::Line(line)
                };
                self.frame(now, i, frame);
                continue;
            }
            c.line_start.get_or_insert(now);
            if c.discarding {
                continue;
            }
            c.line.push(byte);
            let len = c.line.len();
            // Too long even if a CR and LF come next.
            if len > max + 1 || (len == max + 1 && byte != b'\r') {
                c.line.clear();
                c.discarding = true;
                self.frame(now, i, OFrame::TooLong);
            }
        }
    }

    fn eof(&mut self, now: Nanos, i: usize) {
        self.run_due(now);
        let c = &mut self.clients[i];
        if !c.joined {
            return;
        }
        if !c.waiting.is_empty() {
            c.eof_pending = true;
            return;
        }
        self.finish(now, i);
    }

    /// EOF with nothing waiting: the unterminated last line counts like any
    /// other line, then the client leaves (once it is handled).
    fn finish(&mut self, now: Nanos, i: usize) {
        let c = &mut self.clients[i];
        let mut line = std::mem::take(&mut c.line);
        let discarding = std::mem::take(&mut c.discarding);
        if !discarding && !line.is_empty() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            c.eof_pending = true;
            self.frame(now, i, OFrame::Line(line));
            let c = &mut self.clients[i];
            if !c.waiting.is_empty() || !c.joined {
                return;
            }
            c.eof_pending = false;
        }
        self.leave(now, i, Why::Eof);
    }

    fn closed(&mut self, now: Nanos, i: usize) {
        self.run_due(now);
        self.leave(now, i, Why::Closed);
        let c = &mut self.clients[i];
        if std::mem::replace(&mut c.closed, true) {
            return;
        }
        if std::mem::take(&mut c.admitted) {
            self.admitted -= 1;
            if c.limited {
                if let Some(address) = self.addresses.get_mut(&c.ip) {
                    address.open -= 1;
                }
            }
        }
    }

    fn shutdown(&mut self, now: Nanos) {
        self.run_due(now);
        if std::mem::replace(&mut self.shutting_down, true) {
            return;
        }
        let joined: Vec<usize> = self.joined.iter().copied().collect();
        for i in joined {
            self.leave(now, i, Why::Shutdown);
        }
    }

    /// What the driver holds for a joined client (taken, not yet written,
    /// each line its bytes and `LINE_COST` until written whole) after a call: the soft limit's clock starts when it goes over and
    /// stops when it is back at or below.
    fn track_soft(&mut self, i: usize, pending: usize, now: Nanos) {
        let soft = self.config.soft_queue;
        let c = &mut self.clients[i];
        if pending > soft {
            c.over_since.get_or_insert(now);
        } else {
            c.over_since = None;
        }
    }
}

// ---------------------------------------------------------------------------
// The simulated driver: `testkit::Driver`, with the oracle as its observer

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// A connection is accepted from `peer`. With `linger`, the driver keeps
    /// the connection open after a `Close` until a `Drop` (a slow flush).
    Connect {
        peer: SocketAddr,
        linger: bool,
        stalled: bool,
    },
    /// Input arrives from a client (modulo the connections so far). With
    /// `in_flight`, if the server has just asked to stop reading it, the
    /// driver had already read it and feeds it anyway (once per stop).
    Send {
        client: usize,
        input: Input,
        in_flight: bool,
    },
    /// A client stops (or resumes) reading its output.
    Stall {
        client: usize,
        stalled: bool,
    },
    /// At most `max` bytes are written to a client, even a stalled one.
    Write {
        client: usize,
        max: usize,
    },
    /// The connection is gone: failed, or a lingering close finished.
    Drop {
        client: usize,
    },
    /// `count` connections from fresh addresses, each dropped at once.
    Spray {
        count: u32,
    },
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Timed {
    at: Nanos,
    action: Action,
}

/// The driver's observer: every call is mirrored into the oracle before it
/// is made, and its outputs and the server's state compared after.
#[derive(Debug)]
struct Mirror {
    oracle: Oracle,
    /// Every steering output, with its time.
    log: Vec<(Nanos, Ctl)>,
}

#[derive(Debug)]
struct Sim {
    driver: Driver<Mirror>,
    /// Fresh addresses handed out by `Spray`.
    sprayed: u32,
    /// The clients actions can name: all but those of `Spray`.
    pickable: Vec<usize>,
}

impl Sim {
    /// A simulation of a server with `config`, but for what the oracle does
    /// not model: the room never waits, and there is no per-address flood
    /// budget (both have their own tests).
    fn new(config: Config, seed: u64) -> Sim {
        let config = Config {
            room_queue: None,
            ip_flood: None,
            ..config
        };
        let mirror = Mirror {
            oracle: Oracle::new(config.clone()),
            log: Vec::new(),
        };
        let server = Server::new(config, seed).with_log_lines(3);
        Sim {
            driver: Driver::observed(server, mirror),
            sprayed: 0,
            pickable: Vec::new(),
        }
    }

    fn config(&self) -> &Config {
        &self.oracle().config
    }

    fn oracle(&self) -> &Oracle {
        &self.driver.observer().oracle
    }

    fn server(&self) -> &Server {
        self.driver.server()
    }

    fn clients(&self) -> &[Client] {
        self.driver.clients()
    }

    /// Runs the actions in order, then every deadline left.
    fn run(&mut self, actions: &[Timed]) {
        for timed in actions {
            self.act_at(timed.at, &timed.action);
        }
        self.driver.run_out();
    }

    /// One action at `at`, with the deadlines before it.
    fn act_at(&mut self, at: Nanos, action: &Action) {
        self.driver.advance_to(Duration::from_nanos(at));
        self.act(action);
        self.driver.settle();
    }

    /// The client an action names: its number modulo the connections so
    /// far, those of `Spray` left out.
    fn pick(&self, client: usize) -> Option<ConnId> {
        (!self.pickable.is_empty())
            .then(|| self.clients()[self.pickable[client % self.pickable.len()]].id)
    }

    fn act(&mut self, action: &Action) {
        let driver = &mut self.driver;
        match *action {
            Action::Connect {
                peer,
                linger,
                stalled,
            } => {
                let id = driver.handle_connect(peer);
                self.pickable.push(self.driver.index_of(id));
                let client = self.driver.client_mut(id);
                client.linger = linger;
                client.stalled = stalled;
            }
            Action::Send {
                client,
                ref input,
                in_flight,
            } => {
                let Some(id) = self.pick(client) else { return };
                if self.driver.client(id).closed {
                    return;
                }
                if in_flight {
                    self.driver.send_racing(id, input.clone());
                } else {
                    self.driver.send_input(id, input.clone());
                }
            }
            Action::Stall { client, stalled } => {
                if let Some(id) = self.pick(client) {
                    self.driver.client_mut(id).stalled = stalled;
                }
            }
            Action::Write { client, max } => {
                if let Some(id) = self.pick(client) {
                    self.driver.handle_written(id, max);
                }
            }
            Action::Drop { client } => {
                if let Some(id) = self.pick(client) {
                    if !self.driver.client(id).closed {
                        self.driver.handle_closed(id);
                    }
                }
            }
            Action::Spray { count } => {
                for _ in 0..count {
                    self.sprayed += 1;
                    let [_, a, b, c] = self.sprayed.to_be_bytes();
                    let peer = SocketAddr::from(([10, a, b, c], 4000));
                    let id = driver.handle_connect(peer);
                    driver.handle_closed(id);
                }
            }
            Action::Shutdown => driver.handle_shutdown(),
        }
    }

    /// Every complete line written to a client, with the time of the write.
    fn lines(&self, i: usize) -> Transcript {
        self.clients()[i]
            .lines
            .iter()
            .map(|(at, line)| (nanos(*at), line.clone()))
            .collect()
    }

    /// The lines a client got after its first (the welcome or refusal).
    fn lines_after_first(&self, i: usize) -> Transcript {
        self.lines(i).get(1..).unwrap_or_default().to_vec()
    }

    fn stops(&self, i: usize) -> usize {
        self.driver
            .observer()
            .log
            .iter()
            .filter(|(_, ctl)| *ctl == Ctl::Stop(i))
            .count()
    }

    /// When and why the client was closed by the server, if it was.
    fn closed_for(&self, i: usize) -> Option<(Nanos, Why)> {
        self.driver
            .observer()
            .log
            .iter()
            .find_map(|&(at, ctl)| match ctl {
                Ctl::Close(c, why) if c == i => Some((at, why)),
                _ => None,
            })
    }
}

impl Observer for Mirror {
    fn before(&mut self, driver: &Driver<Self>, call: &Call<'_>) {
        let now = nanos(driver.elapsed());
        let oracle = &mut self.oracle;
        oracle.out.clear();
        match *call {
            Call::Connect(peer) => oracle.connect(now, peer),
            Call::Bytes(id, bytes) => oracle.bytes(now, driver.index_of(id), bytes),
            Call::Eof(id) => oracle.eof(now, driver.index_of(id)),
            Call::Closed(id) => oracle.closed(now, driver.index_of(id)),
            Call::Written(..) | Call::Blocked(_) | Call::Timeout => oracle.run_due(now),
            Call::Shutdown => oracle.shutdown(now),
            Call::ClusterReply(..) | Call::ClusterDown => {
                panic!("the oracle's server is no node of a shared room")
            }
            Call::Accept(_) | Call::Ready(_) => {
                panic!("the oracle's clients connect with handle_connect")
            }
        }
    }

    fn after(&mut self, driver: &Driver<Self>, call: &Call<'_>, seen: &[Seen]) {
        let now = nanos(driver.elapsed());
        let mut observed: Vec<Ctl> = seen
            .iter()
            .filter_map(|seen| match seen {
                Seen::Stop(id) => Some(Ctl::Stop(driver.index_of(*id))),
                Seen::Resume(id) => Some(Ctl::Resume(driver.index_of(*id))),
                Seen::Close(id, reason, _) => {
                    Some(Ctl::Close(driver.index_of(*id), Why::of(reason)))
                }
                _ => None,
            })
            .collect();
        let mut expected = std::mem::take(&mut self.oracle.out);
        // Clients are handled in connect order, except at shutdown (any
        // order): compare per client, in order.
        observed.sort_by_key(|ctl| ctl.client());
        expected.sort_by_key(|ctl| ctl.client());
        assert_eq!(
            observed, expected,
            "steering outputs of {call:?} at {now} ns (left: server, right: oracle)"
        );
        self.log.extend(observed.iter().map(|&ctl| (now, ctl)));
        let joined: Vec<usize> = self.oracle.joined.iter().copied().collect();
        for i in joined {
            let pending = driver.clients()[i].in_flight_cost();
            self.oracle.track_soft(i, pending, now);
        }
        self.check(driver, call);
    }
}

impl Mirror {
    /// Everything that holds after every call.
    fn check(&self, driver: &Driver<Self>, call: &Call<'_>) {
        let now = nanos(driver.elapsed());
        let deadline = driver.deadline().map(nanos);
        assert_eq!(
            deadline,
            self.oracle.deadline(),
            "poll_timeout after {call:?} at {now} ns (left: server, right: oracle)"
        );
        if let Some(deadline) = deadline {
            assert!(
                deadline > now,
                "poll_timeout {deadline} ns is not after {now} ns"
            );
        }
        let server = driver.server();
        assert_eq!(server.admitted(), self.oracle.admitted, "admitted");
        let config = &self.oracle.config;
        let open = || {
            driver
                .clients()
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.closed)
        };
        for (i, c) in open() {
            let o = &self.oracle.clients[i];
            let id = c.id;
            assert_eq!(
                server.nick(id).is_some(),
                o.joined,
                "whether {i} is in the chat"
            );
            let held = server.held_lines(id).expect("open");
            assert!(held <= config.flood_excess, "{i} holds {held} lines");
            let pending = server.pending_bytes(id).expect("open");
            assert!(pending <= config.max_queue, "{i} holds {pending} bytes");
            if !o.joined {
                continue;
            }
            assert_eq!(held, o.waiting.len(), "lines of {i} waiting at {now} ns");
            assert_eq!(pending, c.in_flight_cost(), "output bytes of {i}");
            let buffered = if o.discarding { 0 } else { o.line.len() };
            assert_eq!(
                server.buffered_bytes(id),
                Some(buffered),
                "bytes buffered for {i}"
            );
            if !c.eof_sent {
                assert_eq!(c.reading, o.waiting.is_empty(), "whether {i} is read");
            }
        }
        if let Some(max) = config.max_per_ip {
            // Independent of the oracle: what the driver saw welcomed and not closed.
            let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
            for (_, c) in open() {
                let ip = c.peer.ip();
                if c.nick.is_some() && (config.limit_loopback || !is_loopback(ip)) {
                    *per_ip
                        .entry(counted_as(ip, config.ipv6_prefix))
                        .or_default() += 1;
                }
            }
            for (ip, count) in per_ip {
                assert!(count <= max, "{count} connections open from {ip}");
            }
        }
    }
}

/// Lines with the time they were written to the client.
type Transcript = Vec<(Nanos, String)>;

/// What the others see of a chat line: the text, trailing whitespace
/// trimmed (the tests' lines are plain ASCII), or nothing if it is empty.
fn chat_text(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8(raw.to_vec()).expect("ASCII test lines");
    let text = text.trim_end();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The transcripts the oracle implies for a client that only sends chat
/// lines: what the others see of it, and the errors it gets itself.
fn expected_transcripts(sim: &Sim, i: usize) -> (Transcript, Transcript) {
    let nick = sim.clients()[i].nick.clone().expect("the client joined");
    let max_line = sim.config().max_line;
    let mut others = Vec::new();
    let mut own = Vec::new();
    for (at, client, event) in &sim.oracle().events {
        if *client != i {
            continue;
        }
        match event {
            OEvent::Handled(OFrame::Line(raw)) => {
                if let Some(text) = chat_text(raw) {
                    others.push((*at, format!("{nick}: {text}")));
                }
            }
            OEvent::Handled(OFrame::TooLong) => own.push((
                *at,
                format!("* error: line too long (max {max_line} bytes), discarded"),
            )),
            OEvent::Left(why) => match why.policy() {
                Some(reason) => {
                    own.push((*at, format!("* error: disconnected ({reason})")));
                    others.push((*at, format!("* {nick} left ({reason})")));
                }
                None => others.push((*at, format!("* {nick} left"))),
            },
        }
    }
    (others, own)
}

// ---------------------------------------------------------------------------
// Generators

const OBSERVER: &str = "127.0.0.1";

fn peer(ip: &str, port: u16) -> SocketAddr {
    let ip: IpAddr = ip.parse().expect("test addresses parse");
    SocketAddr::new(ip, port)
}

/// A time step: nothing, a whole number of `unit`s give or take 1 ns (to
/// land on and next to deadlines), or a random number of milliseconds.
#[derive(Debug, Clone, Copy)]
enum Gap {
    Same,
    Units(u64, i8),
    Millis(u64),
}

impl Gap {
    fn nanos(self, unit: Nanos) -> Nanos {
        match self {
            Gap::Same => 0,
            Gap::Units(n, delta) => (n * unit).saturating_add_signed(delta.into()),
            Gap::Millis(millis) => millis * MS,
        }
    }
}

fn gap(max_millis: u64) -> impl Strategy<Value = Gap> {
    prop_oneof![
        2 => Just(Gap::Same),
        2 => (0u64..4, -1i8..=1).prop_map(|(n, d)| Gap::Units(n, d)),
        3 => (0..max_millis).prop_map(Gap::Millis),
    ]
}

// ---------------------------------------------------------------------------
// 1. Flood control

/// The kinds of line the flooding client sends.
#[derive(Debug, Clone, Copy)]
enum LineKind {
    Chat,
    CrLf,
    Empty,
    TooLong(usize),
}

fn line_kind() -> impl Strategy<Value = LineKind> {
    prop_oneof![
        6 => Just(LineKind::Chat),
        1 => Just(LineKind::CrLf),
        1 => Just(LineKind::Empty),
        1 => (17usize..40).prop_map(LineKind::TooLong),
    ]
}

#[derive(Debug, Clone)]
struct FloodCase {
    burst: u32,
    interval: Duration,
    excess: usize,
    limit_loopback: bool,
    sender: SocketAddr,
    lines: Vec<LineKind>,
    cuts: Vec<prop::sample::Index>,
    gaps: Vec<Gap>,
    in_flight: Vec<bool>,
    /// EOF after the last line; `Some(true)`: without its LF.
    eof: Option<bool>,
}

fn flood_case() -> impl Strategy<Value = FloodCase> {
    let limited_peer = prop_oneof![
        (
            Just(false),
            prop::sample::select(vec!["203.0.113.5", "2001:db8::5", "::ffff:198.51.100.1"])
        ),
        (
            Just(true),
            prop::sample::select(vec!["127.0.0.2", "127.9.9.9", "::1", "::ffff:127.0.0.1"])
        ),
    ];
    (
        1u32..8,
        (1u64..500, prop_oneof![Just(0u64), 0u64..1_000_000]),
        0usize..10,
        limited_peer,
        prop::collection::vec(line_kind(), 1..40),
        prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        prop::collection::vec(gap(1500), 41),
        prop::collection::vec(any::<bool>(), 41),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(
                burst,
                (millis, extra),
                excess,
                (limit_loopback, ip),
                lines,
                cuts,
                gaps,
                in_flight,
                eof,
            )| {
                FloodCase {
                    burst,
                    interval: ms(millis) + Duration::from_nanos(extra),
                    excess,
                    limit_loopback,
                    sender: peer(ip, 5000),
                    lines,
                    cuts,
                    gaps,
                    in_flight,
                    eof,
                }
            },
        )
}

impl FloodCase {
    fn config(&self) -> Config {
        Config {
            max_line: 16,
            flood: Some(Rate {
                burst: self.burst,
                interval: self.interval,
            }),
            flood_excess: self.excess,
            idle_timeout: None,
            line_timeout: None,
            max_per_ip: None,
            connect_rate: None,
            nick_rate: None,
            limit_loopback: self.limit_loopback,
            ..Config::default()
        }
    }

    /// The byte stream, and the chat texts it holds, in order.
    fn stream(&self) -> (Vec<u8>, Vec<String>) {
        let mut stream = Vec::new();
        let mut texts = Vec::new();
        for (k, kind) in self.lines.iter().enumerate() {
            match *kind {
                LineKind::Chat => {
                    stream.extend_from_slice(format!("m{k}\n").as_bytes());
                    texts.push(format!("m{k}"));
                }
                LineKind::CrLf => {
                    stream.extend_from_slice(format!("m{k}\r\n").as_bytes());
                    texts.push(format!("m{k}"));
                }
                LineKind::Empty => stream.push(b'\n'),
                LineKind::TooLong(len) => {
                    stream.extend(std::iter::repeat_n(b'x', len));
                    stream.push(b'\n');
                }
            }
        }
        if self.eof == Some(true) {
            stream.pop();
        }
        (stream, texts)
    }

    fn actions(&self) -> Vec<Timed> {
        let (stream, _) = self.stream();
        let mut cuts: Vec<usize> = self
            .cuts
            .iter()
            .map(|c| c.index(stream.len() + 1))
            .collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        cuts.dedup();
        let unit = nanos(self.interval);
        let mut at = 0;
        let mut actions = vec![
            Timed {
                at,
                action: Action::Connect {
                    peer: peer(OBSERVER, 4000),
                    linger: false,
                    stalled: false,
                },
            },
            Timed {
                at,
                action: Action::Connect {
                    peer: self.sender,
                    linger: false,
                    stalled: false,
                },
            },
        ];
        let mut start = 0;
        let mut inputs: Vec<Input> = Vec::new();
        for cut in cuts {
            if cut > start {
                inputs.push(Input::Bytes(stream[start..cut].to_vec()));
            }
            start = cut;
        }
        if self.eof.is_some() {
            inputs.push(Input::Eof);
        }
        for (k, input) in inputs.into_iter().enumerate() {
            at += self.gaps[k % self.gaps.len()].nanos(unit);
            actions.push(Timed {
                at,
                action: Action::Send {
                    client: 1,
                    input,
                    in_flight: self.in_flight[k % self.in_flight.len()],
                },
            });
        }
        actions
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// protocol.md, "Address policies", flood control and excess flood: one
    /// client over its budget, an observer. Every line reaches the observer
    /// exactly once, in order, at exactly the time the token bucket lets it
    /// through, unless the client is disconnected, which happens exactly
    /// when more than `flood_excess` lines wait; reading stops exactly while
    /// lines wait.
    #[test]
    fn policies_flood_control_agrees_with_a_token_bucket(case in flood_case()) {
        let mut sim = Sim::new(case.config(), 1);
        sim.run(&case.actions());

        let (mut others, own) = expected_transcripts(&sim, 1);
        let nick = sim.clients()[1].nick.clone().unwrap_or_default();
        others.insert(0, (0, format!("* {nick} joined")));
        prop_assert_eq!(&sim.lines_after_first(0)[..], &others[..], "what the observer got, when");
        let errors: Vec<(Nanos, String)> = sim
            .lines_after_first(1)
            .iter()
            .filter(|(_, line)| line.starts_with("* error"))
            .cloned()
            .collect();
        prop_assert_eq!(errors, own, "errors the sender got, when");

        // Whatever the oracle says: without a disconnect for excess flood,
        // every chat line got through, once, in order.
        let flooded = sim.closed_for(1).is_some_and(|(_, why)| why == Why::ExcessFlood);
        if !flooded {
            let (_, texts) = case.stream();
            let nick = sim.clients()[1].nick.clone().unwrap_or_default();
            let prefix = format!("{nick}: ");
            let lines = sim.lines(0);
            let got: Vec<&str> = lines
                .iter()
                .filter_map(|(_, line)| line.strip_prefix(&prefix))
                .collect();
            prop_assert_eq!(got, texts);
            prop_assert_eq!(sim.server().held_lines(sim.clients()[1].id).unwrap_or(0), 0);
        }
        // A client never over the budget is never slowed down.
        if !sim.oracle().clients[1].ever_waited {
            prop_assert_eq!(sim.stops(1), 0);
        }
        prop_assert_eq!(sim.stops(0), 0, "the observer sends nothing");
    }
}

#[test]
fn policies_flood_at_exactly_the_rate_is_never_held() {
    // burst 1: one line every interval, to the nanosecond, never waits.
    let interval = ms(250) + Duration::from_nanos(7);
    let case = FloodCase {
        burst: 1,
        interval,
        excess: 0,
        limit_loopback: false,
        sender: peer("203.0.113.5", 5000),
        lines: Vec::new(),
        cuts: Vec::new(),
        gaps: Vec::new(),
        in_flight: Vec::new(),
        eof: None,
    };
    let mut actions = case.actions();
    for k in 0..20 {
        actions.push(Timed {
            at: k * nanos(interval),
            action: Action::Send {
                client: 1,
                input: Input::Bytes(format!("m{k}\n").into_bytes()),
                in_flight: false,
            },
        });
    }
    let mut sim = Sim::new(case.config(), 1);
    sim.run(&actions);
    assert_eq!(sim.stops(1), 0);
    assert_eq!(sim.closed_for(1), None);
    assert_eq!(sim.lines_after_first(0).len(), 21);
}

// ---------------------------------------------------------------------------
// 2. poll_timeout across whole sessions with every policy on

/// The addresses sessions connect from: loopback ones in every form, two
/// IPv4 addresses (one also as IPv4-mapped IPv6), IPv6 ones: two in one
/// /64, one in the next /64 (the same /48).
const ADDRESSES: &[&str] = &[
    "127.0.0.1",
    "127.0.0.2",
    "::1",
    "::ffff:127.0.0.1",
    "203.0.113.1",
    "203.0.113.2",
    "::ffff:203.0.113.1",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:0:1::1",
];

/// The addresses in [`ADDRESSES`] that are not loopback.
const PUBLIC: &[&str] = &[
    "203.0.113.1",
    "203.0.113.2",
    "::ffff:203.0.113.1",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:0:1::1",
];

/// What clients send in sessions: chat, partial lines, commands with long
/// replies (to go over the soft limit), nick changes, `/quit`, lines too long.
fn session_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => Just(b"hi\n".to_vec()),
        2 => Just(b"ab".to_vec()),
        2 => Just(b"cd\nef".to_vec()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => Just(Vec::new()),
        1 => Just(b"/who\n".to_vec()),
        1 => Just(b"/help\n".to_vec()),
        2 => (0u8..4).prop_map(|n| format!("/nick n{n}\n").into_bytes()),
        1 => Just(b"/quit\n".to_vec()),
        1 => Just(b"0123456789abcdefghij".to_vec()),
        1 => Just(b"x\nyz\n0123456789abcdefghij\nq".to_vec()),
        2 => prop::collection::vec(prop::sample::select(vec![b'a', b'\n', b'\r', b' ']), 0..12),
    ]
}

fn session_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (prop::sample::select(ADDRESSES), any::<bool>(), prop::bool::weighted(0.4))
            .prop_map(|(ip, linger, stalled)| Action::Connect { peer: peer(ip, 4000), linger, stalled }),
        10 => (0..8usize, session_bytes(), any::<bool>())
            .prop_map(|(client, bytes, in_flight)| Action::Send { client, input: Input::Bytes(bytes), in_flight }),
        1 => (0..8usize, any::<bool>())
            .prop_map(|(client, in_flight)| Action::Send { client, input: Input::Eof, in_flight }),
        2 => (0..8usize, any::<bool>()).prop_map(|(client, stalled)| Action::Stall { client, stalled }),
        2 => (0..8usize, 0..400usize).prop_map(|(client, max)| Action::Write { client, max }),
        1 => (0..8usize).prop_map(|client| Action::Drop { client }),
    ]
}

fn rate(max_burst: u32, millis: std::ops::Range<u64>) -> impl Strategy<Value = Rate> {
    (1..=max_burst, millis).prop_map(|(burst, millis)| Rate {
        burst,
        interval: ms(millis),
    })
}

fn policy_config() -> impl Strategy<Value = Config> {
    (
        (2usize..8, 50usize..300, 1u64..4),
        (prop::option::weighted(0.8, rate(4, 100..1000)), 0usize..5),
        (prop::option::of(2u64..20), prop::option::of(1u64..5)),
        (
            prop::option::of(1usize..4),
            prop::option::of(rate(4, 500..5000)),
        ),
        (prop::option::of(rate(3, 500..5000)), any::<bool>()),
    )
        .prop_map(
            |(
                (max_clients, soft, grace),
                (flood, excess),
                (idle, line),
                (per_ip, connect),
                (nick, loopback),
            )| {
                Config {
                    max_clients,
                    max_line: 16,
                    // Far out of reach: every too-slow disconnect here is
                    // the soft limit's, at its deadline.
                    max_queue: 1 << 20,
                    soft_queue: soft,
                    soft_queue_grace: Duration::from_secs(grace),
                    room_queue: None,
                    min_read_rate: 1,
                    flood,
                    ip_flood: None,
                    flood_excess: excess,
                    idle_timeout: idle.map(Duration::from_secs),
                    line_timeout: line.map(Duration::from_secs),
                    max_per_ip: per_ip,
                    connect_rate: connect,
                    ipv6_prefix: 64,
                    nick_rate: nick,
                    limit_loopback: loopback,
                }
            },
        )
}

fn timed(
    actions: impl Strategy<Value = Action>,
    len: std::ops::Range<usize>,
    max_gap: u64,
    unit: Nanos,
) -> impl Strategy<Value = Vec<Timed>> {
    prop::collection::vec((gap(max_gap), actions), len).prop_map(move |steps| {
        let mut at = 0;
        steps
            .into_iter()
            .map(|(gap, action)| {
                at += gap.nanos(unit);
                Timed { at, action }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// protocol.md, "Address policies" and the soft output limit, together:
    /// after every call, `poll_timeout` is the earliest deadline of any
    /// client computed by brute force (soft limit grace, flood release,
    /// incomplete line, idle), strictly after `now`; every steering output
    /// (stop, resume, close and its reason, refusals) is the oracle's, at
    /// the oracle's time; held lines, output bytes and buffered bytes agree.
    #[test]
    fn policies_sessions_keep_exact_deadlines(
        config in policy_config(),
        seed: u64,
        mut actions in timed(session_action(), 1..60, 3000, SEC),
        shutdown in prop::option::weighted(0.15, any::<prop::sample::Index>()),
    ) {
        if let Some(index) = shutdown {
            let k = index.index(actions.len());
            let at = actions[k].at;
            actions.insert(k, Timed { at, action: Action::Shutdown });
        }
        let mut sim = Sim::new(config, seed);
        sim.run(&actions);
    }
}

// ---------------------------------------------------------------------------
// 3. Connections per address and connect rate

fn address_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => (prop::sample::select(ADDRESSES), any::<bool>())
            .prop_map(|(ip, linger)| Action::Connect { peer: peer(ip, 4000), linger, stalled: false }),
        2 => (0..16usize).prop_map(|client| Action::Send {
            client,
            input: Input::Bytes(b"/quit\n".to_vec()),
            in_flight: false,
        }),
        3 => (0..16usize).prop_map(|client| Action::Drop { client }),
    ]
}

fn address_config() -> impl Strategy<Value = Config> {
    (
        3usize..12,
        prop::option::of(1usize..4),
        prop::option::of(rate(4, 100..5000)),
        prop::sample::select(&[64u8, 128, 48, 126][..]),
        any::<bool>(),
    )
        .prop_map(
            |(max_clients, max_per_ip, connect_rate, ipv6_prefix, limit_loopback)| Config {
                max_clients,
                flood: None,
                idle_timeout: None,
                line_timeout: None,
                max_per_ip,
                connect_rate,
                ipv6_prefix,
                nick_rate: None,
                limit_loopback,
                ..Config::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// protocol.md, "Connections per address" and connect rate: connections
    /// from a few addresses come and go (closed at once, or lingering after
    /// `/quit` until the driver closes them), IPv6 ones counted by a prefix
    /// of 64, 128, 48 or 126 bits. A connection is refused
    /// exactly when the oracle says so: its address has `max_per_ip`
    /// admitted connections not yet reported closed, or its token bucket
    /// (which every attempt that finds a token empties by one) is empty;
    /// the welcomed connections open per address never exceed `max_per_ip`;
    /// a refused client gets exactly the refusal line.
    #[test]
    fn policies_address_limits_agree_with_the_oracle(
        config in address_config(),
        actions in timed(address_action(), 1..60, 3000, SEC),
    ) {
        let mut sim = Sim::new(config, 1);
        sim.run(&actions);
        for (i, c) in sim.clients().iter().enumerate() {
            if sim.closed_for(i).is_some_and(|(_, why)| why == Why::TooMany) {
                prop_assert!(c.nick.is_none());
                prop_assert_eq!(
                    c.received.as_slice(),
                    b"* error: too many connections from your address\n".as_slice()
                );
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The server forgets addresses with nothing open and a full budget once
    /// it tracks many: counts and budgets of the others survive it. 600
    /// fresh addresses connect once (and close), then, once their budgets
    /// are full again, a session runs on the usual few addresses, then 600
    /// more fresh ones go past the sweep threshold, then the session goes on.
    #[test]
    fn policies_address_sweeps_forget_nothing_that_matters(
        config in address_config(),
        connect_rate in rate(3, 1000..5000),
        before in timed(address_action(), 1..20, 500, SEC / 10),
        after in timed(address_action(), 1..20, 500, SEC / 10),
    ) {
        let config = Config { connect_rate: Some(connect_rate), ..config };
        let mut actions = vec![Timed { at: 0, action: Action::Spray { count: 600 } }];
        // Past any connect budget of `address_config` (4 × 5 s).
        let start = 21 * SEC;
        actions.extend(before.into_iter().map(|t| Timed { at: start + t.at, ..t }));
        let end = actions.last().map_or(0, |t| t.at);
        actions.push(Timed { at: end, action: Action::Spray { count: 600 } });
        actions.extend(after.into_iter().map(|t| Timed { at: end + t.at, ..t }));
        let mut sim = Sim::new(config, 1);
        sim.run(&actions);
    }
}

// ---------------------------------------------------------------------------
// 4. Idle and incomplete-line timeouts

fn timeout_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"hi\n".to_vec()),
        Just(b"ab".to_vec()),
        Just(b"cd\n".to_vec()),
        Just(b"ef\ngh".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(Vec::new()),
        Just(b"0123456789abcdefghij".to_vec()),
        Just(b"0123456789abcdefghij\nk".to_vec()),
        Just(b"z\n0123456789abcdefghij".to_vec()),
    ]
}

fn timeout_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        1 => prop::sample::select(PUBLIC)
            .prop_map(|ip| Action::Connect { peer: peer(ip, 4000), linger: false, stalled: false }),
        6 => (1..8usize, timeout_bytes())
            .prop_map(|(client, bytes)| Action::Send { client, input: Input::Bytes(bytes), in_flight: false }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// protocol.md, "Incomplete line" and "Idle": limited clients (and an
    /// observer) send bytes at random times, on and next to their
    /// deadlines. Each is disconnected at exactly the time its oracle says
    /// (last byte + idle timeout, first byte of its unterminated line + line
    /// timeout), never before; it gets `* error: disconnected (REASON)` as
    /// its last line and the observer `* NICK left (REASON)`, both then.
    #[test]
    fn policies_timeouts_fire_exactly_at_their_deadline(
        idle in prop::option::of(1u64..6),
        line in prop::option::of(1u64..4),
        actions in timed(timeout_action(), 1..40, 2500, SEC),
    ) {
        let config = Config {
            flood: None,
            idle_timeout: idle.or(line.is_none().then_some(3)).map(Duration::from_secs),
            line_timeout: line.map(Duration::from_secs),
            max_line: 16,
            max_per_ip: None,
            connect_rate: None,
            ..Config::default()
        };
        let mut all = vec![Timed {
            at: 0,
            action: Action::Connect { peer: peer(OBSERVER, 4000), linger: false, stalled: false },
        }];
        all.extend(actions);
        let mut sim = Sim::new(config, 1);
        sim.run(&all);
        for i in 1..sim.clients().len() {
            let Some((at, why)) = sim.closed_for(i) else { continue };
            let Some(reason) = why.policy() else { continue };
            let nick = sim.clients()[i].nick.clone().expect("joined");
            prop_assert_eq!(
                sim.lines(i).last().cloned(),
                Some((at, format!("* error: disconnected ({reason})")))
            );
            let left = (at, format!("* {nick} left ({reason})"));
            prop_assert!(sim.lines(0).contains(&left), "observer lacks {:?}", left);
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Nick changes

#[derive(Debug, Clone, Copy)]
enum NickMove {
    New,
    Same,
    Upper,
    Invalid,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// protocol.md, "Nick changes": a change over the budget gets `try again
    /// in N s` (N rounded up) and changes nothing; only changes that succeed
    /// take a token; renaming to one's own nick is not a change.
    #[test]
    fn policies_nick_changes_agree_with_a_token_bucket(
        nick_rate in rate(4, 1..5000),
        moves in prop::collection::vec((gap(6000), prop::sample::select(vec![
            NickMove::New, NickMove::New, NickMove::New, NickMove::Same, NickMove::Upper, NickMove::Invalid,
        ])), 1..30),
    ) {
        let config = Config {
            flood: None,
            nick_rate: Some(nick_rate),
            ..Config::default()
        };
        let unit = nanos(nick_rate.interval);
        let mut sim = Sim::new(config, 1);
        sim.act_at(0, &Action::Connect { peer: peer("203.0.113.9", 4000), linger: false, stalled: false });
        let mut current = sim.clients()[0].nick.clone().expect("joined");
        let mut bucket = Bucket::new(nick_rate, 0);
        let mut expected = Vec::new();
        let mut fresh = 0;
        let mut at = 0;
        for (gap, mv) in moves {
            at += gap.nanos(unit);
            let wanted = match mv {
                NickMove::New => {
                    fresh += 1;
                    format!("n{fresh}")
                }
                NickMove::Same => current.clone(),
                NickMove::Upper => current.to_uppercase(),
                NickMove::Invalid => "no.pe".to_owned(),
            };
            let reply = if wanted == current {
                format!("* you are now known as {wanted}")
            } else if bucket.credit(at) < bucket.cost {
                let wait = bucket.ready_at() - at;
                format!("* error: nick changes too fast, try again in {} s", wait.div_ceil(SEC))
            } else if matches!(mv, NickMove::Invalid) {
                format!("* error: invalid nick {wanted}: use 1-32 letters, digits, _ or -")
            } else {
                bucket.take(at);
                current = wanted.clone();
                format!("* you are now known as {wanted}")
            };
            expected.push((at, reply));
            let input = Input::Bytes(format!("/nick {wanted}\n").into_bytes());
            sim.act_at(at, &Action::Send { client: 0, input, in_flight: false });
        }
        sim.run(&[]);
        prop_assert_eq!(&sim.lines_after_first(0)[..], &expected[..]);
    }
}

// ---------------------------------------------------------------------------
// Regressions found by the properties above, as plain tests.

/// protocol.md, "Incomplete line": the line time is the time of the first
/// byte of the unterminated line. A read that ends a too-long line (being
/// discarded) and starts a new one starts the new line's time.
#[test]
fn policies_line_time_restarts_after_a_discarded_line() {
    let config = Config {
        max_line: 16,
        line_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    };
    let t0 = Instant::now();
    let mut server = Server::new(config, 1);
    let conn = server.handle_connect(t0, peer("203.0.113.1", 1));
    server.handle_bytes(t0, conn, b"ab");
    server.handle_bytes(
        t0 + Duration::from_secs(5),
        conn,
        b"cdefghijklmnopqrstuvwxyz\nxy",
    );
    while server.poll_output().is_some() {}
    assert_eq!(
        server.poll_timeout().map(|at| at - t0),
        Some(Duration::from_secs(15)),
        "the line `xy` started at 5 s"
    );
}
