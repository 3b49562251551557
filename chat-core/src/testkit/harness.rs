//! Model checking on top of the [`Driver`]: random [`Step`]s, and the
//! invariants checked after every step and every timeout.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::model::Model;
use super::{
    Call, Driver, Input, Observer, Seen, Step, Take, check_event, counted_as, policy_peer,
};
use crate::{Config, ConnId, Event, Server};

/// A server driven by the [`Driver`] and checked after every step: against
/// the reference model ([`Harness::new`]), or for the invariants alone with
/// the address policies on ([`Harness::with_policies`]).
#[derive(Debug)]
pub struct Harness {
    driver: Driver<Checks>,
}

/// The harness's hooks: the model mirrors every call, and the invariants
/// are checked whenever the driver has settled.
#[derive(Debug)]
struct Checks {
    /// The reference model; `None` with the policies on.
    model: Option<Model>,
    /// Input held before the current `handle_timeout`.
    held: usize,
    /// Whether the connection being reported closed was open until then.
    closing_open: bool,
}

impl Harness {
    /// A harness around a server with `config` and `seed`, checked byte for
    /// byte against the reference model. Every peer is loopback, so the
    /// address policies never apply (`config.limit_loopback` is not
    /// supported here: use [`Harness::with_policies`]).
    pub fn new(config: Config, seed: u64) -> Harness {
        Harness::build(config.clone(), seed, Some(Model::new(config)))
    }

    /// A harness around a server with `config` (see
    /// [`policy_config`](super::policy_config)) and `seed` whose peers are
    /// [`policy_peer`]s, so that the address policies apply to most of them.
    /// The driver honours `StopReading` (input of a stopped client waits in
    /// its socket and is fed on `ResumeReading`; the first input after a
    /// stop was already read and is fed anyway) and calls `handle_timeout`
    /// at every `poll_timeout` a [`Step::Tick`] passes. No model is compared
    /// (holds and timeouts change what and when clients receive), but after
    /// every step and every timeout it checks, besides what the [`Driver`]
    /// checks after every call, that: every such timeout does something (an
    /// output, or a held line handled); lines sent are whole and clean;
    /// nothing goes to a closed connection; output held per client stays
    /// within `max_queue`, held lines within `flood_excess`, buffered bytes
    /// within `max_line + 1`; reading is stopped exactly while lines are
    /// held (until EOF); nicks are unique; admitted connections stay within
    /// `max_clients`, and welcomed ones per address within `max_per_ip`.
    pub fn with_policies(config: Config, seed: u64) -> Harness {
        Harness::build(config, seed, None)
    }

    fn build(config: Config, seed: u64, model: Option<Model>) -> Harness {
        let server = Server::new(config, seed).with_log_lines(3);
        let checks = Checks {
            model,
            held: 0,
            closing_open: false,
        };
        let driver = Driver::observed(server, checks)
            .with_take(Take::WhenWritable)
            .with_flush_stalled(true);
        Harness { driver }
    }

    /// The server under test.
    pub fn server(&self) -> &Server {
        self.driver.server()
    }

    /// The driver under the harness.
    pub fn driver(&self) -> &Driver<impl Observer> {
        &self.driver
    }

    /// Every byte each connection received so far, in connect order.
    pub fn received(&self) -> Vec<&[u8]> {
        self.driver
            .clients()
            .iter()
            .map(|c| c.received.as_slice())
            .collect()
    }

    /// Runs one step, then checks every invariant.
    pub fn step(&mut self, step: &Step) {
        let driver = &mut self.driver;
        match *step {
            Step::Connect | Step::Accept => {
                let index = driver.clients().len();
                let peer = match driver.observer().model {
                    Some(_) => SocketAddr::from(([127, 0, 0, 1], 10_000 + (index % 50_000) as u16)),
                    None => policy_peer(index),
                };
                if *step == Step::Accept {
                    driver.handle_accept(peer);
                } else {
                    driver.handle_connect(peer);
                }
            }
            Step::Ready { client } => {
                if let Some(id) = self.pick(client) {
                    self.driver.handle_ready(id);
                }
            }
            Step::Bytes { client, ref bytes } => {
                if let Some(id) = self.pick(client) {
                    self.receive(id, Input::Bytes(bytes.clone()));
                }
            }
            Step::Eof { client } => {
                if let Some(id) = self.pick(client) {
                    self.receive(id, Input::Eof);
                }
            }
            Step::Close { client } => {
                if let Some(id) = self.pick(client) {
                    self.driver.close(id);
                }
            }
            Step::Stall { client, stalled } => {
                if let Some(id) = self.pick(client) {
                    self.driver.client_mut(id).stalled = stalled;
                }
            }
            Step::Write { client, max } => {
                if let Some(id) = self.pick(client) {
                    self.driver.handle_written(id, max);
                }
            }
            Step::Tick { millis } => driver.advance(Duration::from_millis(millis)),
            Step::Shutdown => driver.handle_shutdown(),
        }
        self.driver.settle();
    }

    /// Input arrives from a client: fed at once (there is no flow control
    /// for the loopback peers of the model), or with the policies on left in
    /// the socket while the server does not want the client read.
    fn receive(&mut self, id: ConnId, input: Input) {
        if self.driver.observer().model.is_some() {
            self.driver.feed(id, input);
        } else {
            self.driver.send_racing(id, input);
        }
    }

    fn pick(&self, client: usize) -> Option<ConnId> {
        let clients = self.driver.clients();
        (!clients.is_empty()).then(|| clients[client % clients.len()].id)
    }
}

impl Observer for Checks {
    fn before(&mut self, driver: &Driver<Self>, call: &Call<'_>) {
        match *call {
            Call::Timeout => self.held = input_held(driver),
            Call::Closed(id) => self.closing_open = !driver.client(id).closed,
            _ => {}
        }
    }

    fn after(&mut self, driver: &Driver<Self>, call: &Call<'_>, seen: &[Seen]) {
        for seen in seen {
            match seen {
                Seen::Event(event) => check_event(event),
                Seen::Stop(id) | Seen::Resume(id) if self.model.is_some() => {
                    // Peers here are loopback: flood control does not apply.
                    panic!(
                        "reading paused or resumed for {id}: no policy applies to loopback peers"
                    );
                }
                _ => {}
            }
        }
        if let Call::Timeout = call {
            // Every deadline is real: a wakeup that neither handles a held
            // line nor does anything else was not needed.
            assert!(
                !seen.is_empty() || input_held(driver) < self.held,
                "handle_timeout at poll_timeout did nothing"
            );
        }
        let Some(model) = &mut self.model else {
            return;
        };
        match *call {
            Call::Connect(_) => {
                let id = driver.clients().last().expect("just connected").id;
                model.connect(joined_as(seen, id));
            }
            Call::Accept(_) => model.accept(),
            Call::Ready(id) => model.ready(driver.index_of(id), joined_as(seen, id)),
            Call::Bytes(id, bytes) => model.bytes(driver.index_of(id), bytes),
            Call::Eof(id) => model.eof(driver.index_of(id)),
            Call::Closed(id) if self.closing_open => model.closed(driver.index_of(id)),
            Call::Closed(_) => {}
            Call::Written(id, _) => {
                let index = driver.index_of(id);
                model.released(index, driver.clients()[index].released_cost());
            }
            Call::Blocked(_) | Call::Timeout => {}
            Call::Shutdown => model.shutdown(),
            Call::ClusterReply(..) | Call::ClusterDown => {
                panic!("the model is of a server of its own")
            }
        }
    }

    fn settled(&mut self, driver: &Driver<Self>) {
        match &self.model {
            Some(model) => check_model(driver, model),
            None => check_policies(driver),
        }
    }
}

/// The nick `conn` joined as, if `seen` has its join.
fn joined_as(seen: &[Seen], id: ConnId) -> Option<String> {
    seen.iter().find_map(|seen| match seen {
        Seen::Event(Event::Joined { conn, nick, .. }) if *conn == id => Some(nick.clone()),
        _ => None,
    })
}

/// Input the server holds, over all connections, and what holds it: bytes
/// read while the room waited (each more than the waiting line it may
/// become), lines waiting for flood control, bytes of unterminated lines
/// (each a line's worth more, so that a last line moving from the framer
/// to the waiting lines at EOF counts as progress), and the clients holding
/// the room (a hold that ends is progress too).
fn input_held<O: Observer>(driver: &Driver<O>) -> usize {
    let server = driver.server();
    let held: usize = driver
        .clients()
        .iter()
        .map(|c| {
            let unread = server.unread_bytes(c.id).unwrap_or(0);
            let held = server.held_lines(c.id).unwrap_or(0);
            let buffered = server.buffered_bytes(c.id).unwrap_or(0);
            3 * unread + 2 * held + usize::from(buffered > 0)
        })
        .sum();
    held + server.room_holders()
}

/// With the policies on: the invariants that need no model.
fn check_policies<O: Observer>(driver: &Driver<O>) {
    let server = driver.server();
    let config = server.config();
    let clients = driver.clients();
    let admitted = clients
        .iter()
        .filter(|c| (c.nick.is_some() || c.connecting) && !c.closed)
        .count();
    assert_eq!(server.admitted(), admitted, "admitted count");
    assert!(admitted <= config.max_clients, "max clients");
    let mut nicks = HashSet::new();
    let mut per_address: HashMap<IpAddr, usize> = HashMap::new();
    for conn in clients {
        let id = conn.id;
        let nick = server.nick(id);
        if let Some(nick) = nick {
            assert!(nicks.insert(nick.to_lowercase()), "nick {nick} held twice");
            assert!(
                conn.close.is_none() && !conn.closed,
                "{id} is in the chat after a Close"
            );
        }
        let Some(pending) = server.pending_bytes(id) else {
            assert!(conn.closed, "{id} was dropped before handle_closed");
            continue;
        };
        assert!(!conn.closed, "{id} is open after handle_closed");
        assert!(pending <= config.max_queue, "{id} holds {pending} bytes");
        let held = server.held_lines(id).expect("an open connection");
        assert!(held <= config.flood_excess, "{id} holds {held} lines");
        let held_bytes = server.held_bytes(id).expect("an open connection");
        if nick.is_some() && !conn.eof_fed {
            assert_eq!(
                !conn.reading,
                held > 0 || held_bytes > 0,
                "{id}: reading must be stopped exactly while input waits"
            );
        }
        if let Some(buffered) = server.buffered_bytes(id) {
            assert!(
                buffered <= config.max_line + 1,
                "{id} buffers {buffered} bytes"
            );
        }
        let ip = conn.peer.ip().to_canonical();
        if (config.limit_loopback || !ip.is_loopback()) && conn.nick.is_some() && !conn.closed {
            let address = counted_as(ip, config.ipv6_prefix);
            *per_address.entry(address).or_default() += 1;
        }
    }
    if let Some(max) = config.max_per_ip {
        for (ip, open) in per_address {
            assert!(open <= max, "{open} connections open from {ip}");
        }
    }
}

/// Without the policies: agreement with the model, byte for byte.
fn check_model<O: Observer>(driver: &Driver<O>, model: &Model) {
    let server = driver.server();
    let config = server.config();
    assert_eq!(server.admitted(), model.admitted, "admitted count");
    assert!(server.admitted() <= config.max_clients, "max clients");
    let mut nicks = HashSet::new();
    for (index, conn) in driver.clients().iter().enumerate() {
        let id = conn.id;
        let model = &model.clients[index];
        let nick = server.nick(id);
        assert_eq!(nick, model.nick.as_deref(), "nick of {id}");
        if let Some(nick) = nick {
            assert!(nicks.insert(nick.to_lowercase()), "nick {nick} held twice");
        }
        match server.pending_bytes(id) {
            Some(pending) => {
                assert!(!conn.closed, "{id} is open after handle_closed");
                assert!(pending <= config.max_queue, "{id} holds {pending} bytes");
                if !model.too_slow {
                    assert_eq!(pending, model.pending, "pending bytes of {id}");
                }
            }
            None => assert!(conn.closed, "{id} was dropped before handle_closed"),
        }
        if let Some(buffered) = server.buffered_bytes(id) {
            assert!(
                buffered <= config.max_line + 1,
                "{id} buffers {buffered} bytes"
            );
        }
        assert_eq!(
            conn.close.is_some() || conn.closed,
            model.closing || conn.closed,
            "whether {id} is being closed"
        );
        // What the client got is what the model says it must get: all of it
        // when it reads, a prefix while it does not or once it was dropped
        // as too slow.
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
