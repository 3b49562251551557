//! Several servers sharing one room through a simulated Redis: the
//! simulated cluster ([`Nodes`]), driven step by step ([`NodeStep`]), and
//! the checks that hold after every step.
//!
//! Every node is a [`Driver`] around a [`Server`] made a node with
//! [`Server::with_cluster`]; its calls for Redis queue up until a step lets
//! them reach the [`SimRedis`] (writes in order; the read of the log apart,
//! answered once the log has something for it), so nodes run ahead of and
//! behind each other as real ones do.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use super::{Driver, Input, Seen, SimRedis};
use crate::cluster::{Call, ClusterConfig, Decoded, Entry, Gone, RawEntry, Reply, Request, Token};
use crate::{Config, ConnId, Server, nick};

/// Nicks the steps ask for: case variants and a confusable pair among them.
pub const NICKS: [&str; 6] = ["alice", "Alice", "bob", "b0b", "carol", "c-a"];

/// What a client sends, in [`NodeStep::Line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A chat line with a marker no other line has.
    Chat,
    /// `/me` with such a marker.
    Me,
    /// `/nick` with one of [`NICKS`].
    Nick(usize),
    /// `/msg` to a client of any node, picked among all that joined.
    Msg(usize),
    /// `/who`.
    Who,
    /// `/quit`.
    Quit,
}

/// One step of a simulated cluster. Node and client numbers are taken
/// modulo the nodes and the node's clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStep {
    /// A client connects to a node.
    Connect {
        /// Which node.
        node: usize,
    },
    /// A client of a node sends a line.
    Line {
        /// Which node.
        node: usize,
        /// Which of its clients.
        client: usize,
        /// What it sends.
        line: Line,
    },
    /// A client closes its side.
    Eof {
        /// Which node.
        node: usize,
        /// Which of its clients.
        client: usize,
    },
    /// Up to `calls` of a node's calls reach Redis, in order, and their
    /// replies come back.
    Apply {
        /// Which node.
        node: usize,
        /// How many calls at most.
        calls: usize,
    },
    /// A node's read of the log is answered, if the log has an entry for it.
    Read {
        /// Which node.
        node: usize,
    },
    /// Every node runs until nothing is left to do.
    Settle,
    /// A node's link to Redis fails and stays down until [`NodeStep::LinkUp`]:
    /// the calls it had not run are lost, after reaching Redis (`applied`,
    /// their replies lost) or not.
    LinkDown {
        /// Which node.
        node: usize,
        /// Whether its waiting calls ran on Redis.
        applied: bool,
    },
    /// A node's link may come back.
    LinkUp {
        /// Which node.
        node: usize,
    },
    /// Redis restarts empty (no persistence): every link drops.
    Restart,
    /// A node shuts down: what it asks on the way reaches Redis, then it
    /// is gone.
    Shutdown {
        /// Which node.
        node: usize,
    },
    /// A node dies (`kill -9`): its calls never reach Redis.
    Crash {
        /// Which node.
        node: usize,
    },
    /// Time passes, in steps of at most 100 ms after each of which every
    /// node's calls reach Redis and its reads are answered (Redis answers
    /// within 100 ms).
    Tick {
        /// How long, in milliseconds.
        millis: u64,
    },
}

/// How long after a node dies its users must have left everywhere.
pub const LEAVES_WITHIN: Duration = Duration::from_secs(10);

/// One node: its driver, and its calls on their way to Redis.
#[derive(Debug)]
struct Node {
    driver: Driver,
    /// Every token it had, the current one last (a node reaped while alive
    /// comes back as another incarnation).
    tokens: Vec<Token>,
    /// Its link is cut: its calls wait.
    down: bool,
    /// It died at this time.
    crashed: Option<Duration>,
    /// Calls asked for and not run yet, in order.
    calls: VecDeque<Request>,
    /// Its read of the log, not answered yet.
    read: Option<Request>,
}

impl Node {
    fn token(&self) -> &Token {
        self.tokens.last().expect("a node has a token")
    }

    /// Whether it runs with its link up.
    fn up(&self) -> bool {
        self.crashed.is_none() && !self.down && self.driver.server().cluster_up() == Some(true)
    }

    /// Moves the calls the server asked for into the queues.
    fn take_requests(&mut self) {
        if let Some(token) = self.driver.server().cluster_token() {
            if token != self.token() {
                self.tokens.push(token.clone());
            }
        }
        for request in self.driver.take_requests() {
            if let Call::Read { .. } = request.call {
                assert!(
                    self.read.is_none(),
                    "{}: a second read while one is out",
                    self.token()
                );
                self.read = Some(request);
            } else {
                self.calls.push_back(request);
            }
        }
    }
}

/// Several servers sharing one room through a [`SimRedis`].
#[derive(Debug)]
pub struct Nodes {
    redis: SimRedis,
    nodes: Vec<Node>,
    /// Markers used so far.
    said: u64,
    /// What Redis lost when it restarted, for the order checks: the log of
    /// each epoch before the current one.
    archive: Vec<Vec<RawEntry>>,
    /// Redis restarted: lines may be lost.
    restarted: bool,
    /// The log keeps fewer entries than may be written: a node that falls
    /// behind misses lines (and says so).
    trims: bool,
    /// A link failed (or Redis restarted) since this time.
    links_failed: Option<Duration>,
    /// Time passed.
    now: Duration,
}

impl Nodes {
    /// `count` nodes with `config`, each with its own seed drawn from
    /// `seed`, settled: every hello answered.
    pub fn new(count: usize, config: &Config, seed: u64) -> Nodes {
        // Nothing is trimmed: the checks read the whole log.
        Nodes::with_history(count, config, seed, usize::MAX)
    }

    /// [`Nodes::new`] with a log that keeps the last `history` entries (the
    /// checks of a settled cluster then hold only for clients that missed
    /// nothing: use it for rule tests).
    pub fn with_history(count: usize, config: &Config, seed: u64, history: usize) -> Nodes {
        let nodes = (0..count as u64)
            .map(|i| {
                let server = Server::new(config.clone(), seed.wrapping_add(i))
                    .with_cluster(ClusterConfig::new(&format!("node{i}")))
                    .expect("the test node names are valid");
                let token = server.cluster_token().expect("a node has a token").clone();
                let mut node = Node {
                    driver: Driver::with_server(server),
                    tokens: vec![token],
                    down: false,
                    crashed: None,
                    calls: VecDeque::new(),
                    read: None,
                };
                node.take_requests();
                node
            })
            .collect();
        let mut nodes = Nodes {
            redis: SimRedis::new(history),
            nodes,
            said: 0,
            archive: Vec::new(),
            restarted: false,
            trims: history != usize::MAX,
            links_failed: None,
            now: Duration::ZERO,
        };
        nodes.settle();
        nodes
    }

    /// The driver of node `node`.
    pub fn driver(&self, node: usize) -> &Driver {
        &self.nodes[node].driver
    }

    /// The time since the cluster started (only [`NodeStep::Tick`] moves it).
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// Every line client `client` (in connection order) of node `node`
    /// received so far.
    pub fn lines(&self, node: usize, client: usize) -> Vec<String> {
        let clients = self.nodes[node].driver.clients();
        clients[client]
            .lines
            .iter()
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// What every node's driver saw, for determinism checks.
    pub fn traces(&self) -> Vec<&[Seen]> {
        self.nodes.iter().map(|n| n.driver.trace()).collect()
    }

    /// Runs one step, then checks every invariant (and, after
    /// [`NodeStep::Settle`], those of a quiet cluster).
    pub fn step(&mut self, step: &NodeStep) {
        let count = self.nodes.len();
        let live = |nodes: &Nodes, node: usize| nodes.nodes[node % count].crashed.is_none();
        match *step {
            NodeStep::Connect { node } if live(self, node) => {
                let node = &mut self.nodes[node % count];
                node.driver.connect();
                node.take_requests();
            }
            NodeStep::Line { node, client, line } if live(self, node) => {
                let text = self.line_text(line);
                self.send(node % count, client, Input::Bytes(text.into_bytes()));
            }
            NodeStep::Eof { node, client } if live(self, node) => {
                self.send(node % count, client, Input::Eof);
            }
            NodeStep::Apply { node, calls } => self.apply(node % count, calls),
            NodeStep::Read { node } => {
                self.read(node % count);
            }
            NodeStep::Settle => self.settle(),
            NodeStep::LinkDown { node, applied } if live(self, node) => {
                let i = node % count;
                let lost: Vec<Request> = self.nodes[i].calls.drain(..).collect();
                self.nodes[i].read = None;
                self.nodes[i].down = true;
                if applied {
                    for request in &lost {
                        self.redis.run(&request.call);
                    }
                }
                let node = &mut self.nodes[i];
                node.driver.handle_cluster_down();
                node.driver.settle();
                node.take_requests();
                self.links_failed.get_or_insert(self.now);
            }
            NodeStep::LinkUp { node } => self.nodes[node % count].down = false,
            NodeStep::Restart => {
                self.archive.push(self.redis.written().to_vec());
                self.redis.flush();
                self.restarted = true;
                self.links_failed.get_or_insert(self.now);
                for node in self.nodes.iter_mut().filter(|n| n.crashed.is_none()) {
                    node.calls.clear();
                    node.read = None;
                    node.driver.handle_cluster_down();
                    node.driver.settle();
                    node.take_requests();
                }
            }
            NodeStep::Shutdown { node } if live(self, node) => {
                let i = node % count;
                self.nodes[i].driver.handle_shutdown();
                self.nodes[i].driver.settle();
                self.nodes[i].take_requests();
                self.apply(i, usize::MAX);
                let now = self.now;
                let node = &mut self.nodes[i];
                node.crashed = Some(now);
                node.calls.clear();
                node.read = None;
            }
            NodeStep::Crash { node } if live(self, node) => {
                let now = self.now;
                let node = &mut self.nodes[node % count];
                node.crashed = Some(now);
                node.calls.clear();
                node.read = None;
            }
            NodeStep::Tick { millis } => self.tick(Duration::from_millis(millis)),
            // A step for a node that died does nothing.
            _ => {}
        }
        self.check();
        if *step == NodeStep::Settle {
            self.check_settled();
        }
    }

    fn send(&mut self, node: usize, client: usize, input: Input) {
        let node = &mut self.nodes[node];
        let clients = node.driver.clients();
        if clients.is_empty() {
            return;
        }
        let id = clients[client % clients.len()].id;
        node.driver.send_racing(id, input);
        node.take_requests();
    }

    /// The bytes of `line`.
    fn line_text(&mut self, line: Line) -> String {
        self.said += 1;
        let marker = format!("m{}", self.said);
        match line {
            Line::Chat => format!("{marker}\n"),
            Line::Me => format!("/me {marker}\n"),
            Line::Nick(i) => format!("/nick {}\n", NICKS[i % NICKS.len()]),
            Line::Msg(i) => {
                let joined: Vec<String> = self
                    .nodes
                    .iter()
                    .flat_map(|n| {
                        let server = n.driver.server();
                        server
                            .connections()
                            .filter_map(|c| server.nick(c).map(str::to_string))
                    })
                    .collect();
                match joined.get(i % joined.len().max(1)) {
                    Some(target) => format!("/msg {target} {marker}\n"),
                    None => format!("/msg nobody {marker}\n"),
                }
            }
            Line::Who => "/who\n".to_string(),
            Line::Quit => "/quit\n".to_string(),
        }
    }

    /// Up to `calls` of node `node`'s calls reach Redis; the replies come
    /// back at once.
    fn apply(&mut self, node: usize, calls: usize) {
        if self.nodes[node].down || self.nodes[node].crashed.is_some() {
            return;
        }
        for _ in 0..calls {
            let Some(request) = self.nodes[node].calls.pop_front() else {
                return;
            };
            let reply = self.redis.run(&request.call);
            let node = &mut self.nodes[node];
            node.driver.handle_cluster_reply(request.id, &reply);
            node.driver.settle();
            node.take_requests();
        }
    }

    /// Answers node `node`'s read if the log has an entry after it; whether
    /// it did.
    fn read(&mut self, node: usize) -> bool {
        if self.nodes[node].down || self.nodes[node].crashed.is_some() {
            return false;
        }
        let Some(request) = self.nodes[node].read.take() else {
            return false;
        };
        let reply = self.redis.run(&request.call);
        if matches!(&reply, Reply::Read(entries) if entries.is_empty()) {
            // A blocking read waits for an entry.
            self.nodes[node].read = Some(request);
            return false;
        }
        let node = &mut self.nodes[node];
        node.driver.handle_cluster_reply(request.id, &reply);
        node.driver.settle();
        node.take_requests();
        true
    }

    /// Runs every node until no call is left and every read waits.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for node in 0..self.nodes.len() {
                if self.nodes[node].crashed.is_some() || self.nodes[node].down {
                    continue;
                }
                self.nodes[node].driver.settle();
                self.nodes[node].take_requests();
                if !self.nodes[node].calls.is_empty() {
                    self.apply(node, usize::MAX);
                    busy = true;
                }
                busy |= self.read(node);
            }
            if !busy {
                return;
            }
        }
        panic!("the cluster never settles");
    }

    /// Lets `span` pass, 100 ms at a time, every node's calls reaching
    /// Redis after each.
    fn tick(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            let step = (end - self.now).min(Duration::from_millis(100));
            self.now += step;
            self.redis.advance(step);
            for node in self.nodes.iter_mut().filter(|n| n.crashed.is_none()) {
                node.driver.advance(step);
                node.take_requests();
            }
            self.settle();
        }
    }

    /// Every entry Redis ever held, decoded (what it lost in restarts
    /// first): every one is valid.
    fn log(&self) -> Vec<(u64, Decoded)> {
        self.archive
            .iter()
            .flatten()
            .chain(self.redis.written())
            .map(|raw| (raw.seq, decode(raw)))
            .collect()
    }

    /// What holds after every step: nicks unique across the nodes whose
    /// link is up; every client's room lines in the log's order, from its
    /// own join on; a node is reaped at most once, and writes nothing after.
    fn check(&self) {
        let mut holders: HashMap<String, (usize, ConnId)> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate().filter(|(_, n)| n.up()) {
            let server = node.driver.server();
            for conn in server.connections() {
                let Some(nick) = server.nick(conn) else {
                    continue;
                };
                if let Some(other) = holders.insert(nick::key(nick), (i, conn)) {
                    panic!(
                        "{nick} held by node {i} {conn} and node {} {}",
                        other.0, other.1
                    );
                }
            }
        }
        // Within one epoch (a Redis that restarted forgot its reaps).
        let current = self.redis.written().to_vec();
        for epoch in self.archive.iter().chain([&current]) {
            let mut gone: HashMap<Token, u64> = HashMap::new();
            for raw in epoch {
                let decoded = decode(raw);
                if let Some(origin) = &decoded.origin {
                    assert!(
                        !gone.contains_key(&origin.node),
                        "{} wrote entry {} after it was reaped",
                        origin.node,
                        raw.seq
                    );
                }
                if let Entry::NodeGone { node, .. } = decoded.entry {
                    assert!(
                        gone.insert(node.clone(), raw.seq).is_none(),
                        "{node} reaped twice"
                    );
                }
            }
        }
        let log = self.log();
        for node in &self.nodes {
            for client in node.driver.clients() {
                let lines = room_lines(client.lines.iter().map(|(_, l)| l.as_str()));
                let Some(join) = joins(&log, &node.tokens, client.id).next() else {
                    assert!(
                        lines.is_empty(),
                        "{} {} got {lines:?} before its join was in the log",
                        node.token(),
                        client.id
                    );
                    continue;
                };
                // Every chat and `/me` line is said once, with its own
                // marker: none reaches a client twice.
                let mut said = std::collections::HashSet::new();
                for line in lines
                    .iter()
                    .filter(|l| !l.starts_with("* ") || l.ends_with(char::is_numeric))
                {
                    assert!(
                        said.insert(line),
                        "{} {} got {line:?} twice",
                        node.token(),
                        client.id
                    );
                }
                // Its lines must be a subsequence of what the log since its
                // join gives it: matched greedily, earliest first.
                let room: Vec<String> = log[join + 1..]
                    .iter()
                    .flat_map(|(_, e)| rendered(e, &node.tokens, client.id))
                    .collect();
                let mut next = 0;
                for line in &lines {
                    let Some(q) = (next..room.len()).find(|&q| room[q] == *line) else {
                        panic!(
                            "{} {} got {line:?} out of the log's order (or not in it): \
                             its lines {lines:?}, the log's {room:?}",
                            node.token(),
                            client.id
                        );
                    };
                    next = q + 1;
                }
            }
        }
    }

    /// What holds once the cluster is quiet, for the nodes that run with
    /// their link up: each read the whole log; unless Redis restarted
    /// (and lost lines) or trimmed it, every client of theirs in the room
    /// got every line of the log since its join, once, in order (with a
    /// trimmed log, a client that did not was told it missed lines); their rosters and their
    /// members are what Redis holds; and a node dead for
    /// [`LEAVES_WITHIN`], with the links up all along, was reaped.
    fn check_settled(&self) {
        let log = self.log();
        let top = self.redis.written().last().map_or(0, |e| e.seq);
        let roster = self.redis.roster();
        for node in self.nodes.iter().filter(|n| n.up()) {
            let server = node.driver.server();
            assert_eq!(
                server.cluster_cursor(),
                Some(top),
                "{} did not read it all",
                node.token()
            );
            for client in node.driver.clients() {
                if server.nick(client.id).is_none() {
                    continue;
                }
                // After a restart its join may be written twice (published
                // again), and the node may have read only the second.
                let mut joins = joins(&log, &node.tokens, client.id);
                let first = joins.next().unwrap_or_else(|| {
                    panic!(
                        "{} {} joined but is not in the log",
                        node.token(),
                        client.id
                    )
                });
                let join = match joins.last() {
                    Some(last) if self.restarted => last,
                    _ => first,
                };
                let got = room_lines(client.lines.iter().map(|(_, l)| l.as_str()));
                if self.trims {
                    // Lines may go by unread, but never silently: a client
                    // that did not get every line since its join was told.
                    let expected: Vec<String> = log[join + 1..]
                        .iter()
                        .flat_map(|(_, e)| rendered(e, &node.tokens, client.id))
                        .collect();
                    let told = client.lines.iter().any(|(_, line)| {
                        line.starts_with("* missed ") || line.starts_with("* room history was lost")
                    });
                    // (After Redis restarted empty, a client that entered
                    // as the nodes published again what they had not read
                    // back may miss one of those lines: not checked.)
                    assert!(
                        got == expected || told || self.restarted,
                        "{} {} missed lines without being told: got {got:?}, the log {expected:?}",
                        node.token(),
                        client.id
                    );
                    continue;
                }
                if !self.restarted {
                    let expected: Vec<String> = log[join + 1..]
                        .iter()
                        .flat_map(|(_, e)| rendered(e, &node.tokens, client.id))
                        .collect();
                    assert_eq!(
                        got,
                        expected,
                        "{} {}: room lines since its join",
                        node.token(),
                        client.id
                    );
                    continue;
                }
                // Redis lost the lines of earlier epochs that no node had
                // read; of the current one, nothing is lost: every entry
                // first written in it (not one published again) reaches
                // every client that was in the room.
                let epoch_start = log.len() - self.redis.written().len();
                let earlier: Vec<(&Token, u64)> = log[..epoch_start]
                    .iter()
                    .filter_map(|(_, d)| d.origin.as_ref().map(|o| (&o.node, o.n)))
                    .collect();
                let fresh = log[epoch_start.max(join + 1)..].iter().filter(|(_, d)| {
                    d.origin
                        .as_ref()
                        .is_none_or(|o| !earlier.contains(&(&o.node, o.n)))
                });
                let mut rest = got.iter();
                for line in fresh.flat_map(|(_, e)| rendered(e, &node.tokens, client.id)) {
                    assert!(
                        rest.any(|l| *l == line),
                        "{} {} never got {line:?}, written after Redis restarted: {got:?}",
                        node.token(),
                        client.id
                    );
                }
            }
            let (own, others): (Vec<_>, Vec<_>) = roster
                .iter()
                .cloned()
                .partition(|(t, _, _)| t == node.token());
            // A node cut off may have said hello (registering members) with
            // its entries still to come; a dead one may have too, until it
            // is reaped.
            let cut_off = self.nodes.iter().any(|n| n.crashed.is_none() && n.down);
            let dead: Vec<&Token> = self
                .nodes
                .iter()
                .filter(|n| n.crashed.is_some())
                .flat_map(|n| &n.tokens)
                .collect();
            let alive = |members: Vec<(Token, ConnId, String)>| -> Vec<(Token, ConnId, String)> {
                members
                    .into_iter()
                    .filter(|(t, _, _)| !dead.contains(&t))
                    .collect()
            };
            if !cut_off {
                assert_eq!(
                    server.cluster_roster().map(alive),
                    Some(alive(others)),
                    "{}'s roster against Redis' members",
                    node.token()
                );
            }
            let mut members: Vec<(Token, ConnId, String)> = server
                .connections()
                .filter_map(|c| Some((node.token().clone(), c, server.nick(c)?.to_string())))
                .collect();
            members.sort();
            assert_eq!(own, members, "{}'s members in Redis", node.token());
        }
        let steady = self.links_failed.is_none();
        let watched = self.nodes.iter().any(Node::up);
        for dead in &self.nodes {
            let Some(at) = dead.crashed else {
                continue;
            };
            if steady && watched && self.now >= at + LEAVES_WITHIN {
                let reaped = log.iter().any(
                    |(_, d)| matches!(&d.entry, Entry::NodeGone { node, .. } if node == dead.token()),
                );
                assert!(
                    reaped,
                    "{} dead since {at:?}, not reaped at {:?}",
                    dead.token(),
                    self.now
                );
            }
        }
    }
}

/// An entry of the log, decoded: every entry there must be valid.
fn decode(raw: &RawEntry) -> Decoded {
    Decoded::from_stream(&raw.fields)
        .unwrap_or_else(|e| panic!("entry {} does not decode: {e}", raw.seq))
}

/// Where the log has `conn` of `node` joining, first to last (more than
/// once if it was published again after Redis restarted).
fn joins<'a>(
    log: &'a [(u64, Decoded)],
    node: &'a [Token],
    conn: ConnId,
) -> impl Iterator<Item = usize> + 'a {
    log.iter().enumerate().filter_map(move |(i, (_, d))| {
        let written_by = d.origin.as_ref().is_some_and(|o| node.contains(&o.node));
        let join = matches!(d.entry, Entry::Join { conn: c, .. } if c == conn);
        (written_by && join).then_some(i)
    })
}

/// The room lines `entry` gives `conn` of `node`: none for what it did
/// itself, none for private messages.
fn rendered(decoded: &Decoded, node: &[Token], conn: ConnId) -> Vec<String> {
    let by_it = |c: ConnId| {
        c == conn
            && decoded
                .origin
                .as_ref()
                .is_some_and(|o| node.contains(&o.node))
    };
    match &decoded.entry {
        Entry::Join { conn, nick } if !by_it(*conn) => vec![format!("* {nick} joined")],
        Entry::Leave { conn, nick, reason } if !by_it(*conn) => vec![match reason {
            Some(why) => format!("* {nick} left ({why})"),
            None => format!("* {nick} left"),
        }],
        Entry::Rename { conn, from, to } if !by_it(*conn) => {
            vec![format!("* {from} is now known as {to}")]
        }
        Entry::Say { conn, line } if !by_it(*conn) => vec![line.clone()],
        Entry::NodeGone {
            node: gone,
            why,
            nicks,
        } if !node.contains(gone) => {
            let why = match why {
                Gone::Lost => "server lost",
                Gone::Shutdown => "server shutting down",
            };
            nicks
                .iter()
                .map(|n| format!("* {n} left ({why})"))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The lines of the room among what a client received: chat and `/me`
/// lines (the steps' markers), joins, leaves and renames; not replies,
/// `/who` or private messages.
fn room_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let marker = |text: &str| {
        text.strip_prefix('m')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    lines
        .filter(|line| {
            if let Some(rest) = line.strip_prefix("* ") {
                let words: Vec<&str> = rest.split(' ').collect();
                match words.as_slice() {
                    [_, "joined"] | [_, "left"] | [_, "is", "now", "known", "as", _] => true,
                    [_, "left", why, ..] => why.starts_with('('),
                    [_, text] => marker(text),
                    _ => false,
                }
            } else {
                line.split_once(": ")
                    .is_some_and(|(nick, text)| !nick.contains([' ', '*']) && marker(text))
            }
        })
        .map(str::to_string)
        .collect()
}
