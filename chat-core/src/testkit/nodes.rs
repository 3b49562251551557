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

use super::{Driver, Input, Seen, SimRedis};
use crate::cluster::{Call, ClusterConfig, Decoded, Entry, Gone, Reply, Request, Token};
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
}

/// One node: its driver, and its calls on their way to Redis.
#[derive(Debug)]
struct Node {
    driver: Driver,
    token: Token,
    /// Calls asked for and not run yet, in order.
    calls: VecDeque<Request>,
    /// Its read of the log, not answered yet.
    read: Option<Request>,
}

impl Node {
    /// Moves the calls the server asked for into the queues.
    fn take_requests(&mut self) {
        for request in self.driver.take_requests() {
            if let Call::Read { .. } = request.call {
                assert!(
                    self.read.is_none(),
                    "{}: a second read while one is out",
                    self.token
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
}

impl Nodes {
    /// `count` nodes with `config`, each with its own seed drawn from
    /// `seed`, settled: every hello answered.
    pub fn new(count: usize, config: &Config, seed: u64) -> Nodes {
        let nodes = (0..count as u64)
            .map(|i| {
                let server = Server::new(config.clone(), seed.wrapping_add(i))
                    .with_cluster(ClusterConfig::new(&format!("node{i}")))
                    .expect("the test node names are valid");
                let token = server.cluster_token().expect("a node has a token").clone();
                let mut node = Node {
                    driver: Driver::with_server(server),
                    token,
                    calls: VecDeque::new(),
                    read: None,
                };
                node.take_requests();
                node
            })
            .collect();
        let mut nodes = Nodes {
            // Nothing is trimmed: the checks read the whole log.
            redis: SimRedis::new(usize::MAX),
            nodes,
            said: 0,
        };
        nodes.settle();
        nodes
    }

    /// The driver of node `node`.
    pub fn driver(&self, node: usize) -> &Driver {
        &self.nodes[node].driver
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

    /// The simulated Redis.
    pub fn redis(&self) -> &SimRedis {
        &self.redis
    }

    /// What every node's driver saw, for determinism checks.
    pub fn traces(&self) -> Vec<&[Seen]> {
        self.nodes.iter().map(|n| n.driver.trace()).collect()
    }

    /// Runs one step, then checks every invariant (and, after
    /// [`NodeStep::Settle`], those of a quiet cluster).
    pub fn step(&mut self, step: &NodeStep) {
        let count = self.nodes.len();
        match *step {
            NodeStep::Connect { node } => {
                let node = &mut self.nodes[node % count];
                node.driver.connect();
                node.take_requests();
            }
            NodeStep::Line { node, client, line } => {
                let text = self.line_text(line);
                self.send(node % count, client, Input::Bytes(text.into_bytes()));
            }
            NodeStep::Eof { node, client } => self.send(node % count, client, Input::Eof),
            NodeStep::Apply { node, calls } => self.apply(node % count, calls),
            NodeStep::Read { node } => {
                self.read(node % count);
            }
            NodeStep::Settle => self.settle(),
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

    /// The log, decoded: every entry there is valid.
    fn log(&self) -> Vec<(u64, Decoded)> {
        self.redis
            .log()
            .map(|raw| {
                let fields = raw.fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
                let decoded = Decoded::from_fields(fields)
                    .unwrap_or_else(|e| panic!("entry {} does not decode: {e}", raw.seq));
                (raw.seq, decoded)
            })
            .collect()
    }

    /// What holds after every step: nicks unique across the cluster, and
    /// every client's room lines in the log's order, from its own join on.
    fn check(&self) {
        let mut holders: HashMap<String, (usize, ConnId)> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
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
        let log = self.log();
        for node in &self.nodes {
            for client in node.driver.clients() {
                let lines = room_lines(client.lines.iter().map(|(_, l)| l.as_str()));
                let mut next = match join_index(&log, &node.token, client.id) {
                    Some(join) => join + 1,
                    None => {
                        assert!(
                            lines.is_empty(),
                            "{} {} got {lines:?} before its join was in the log",
                            node.token,
                            client.id
                        );
                        continue;
                    }
                };
                for line in &lines {
                    let found = (next..log.len())
                        .find(|&q| rendered(&log[q].1, &node.token, client.id).contains(line));
                    let Some(q) = found else {
                        panic!(
                            "{} {} got {line:?} out of the log's order (or not in it) after seq {}",
                            node.token,
                            client.id,
                            log.get(next.saturating_sub(1)).map_or(0, |e| e.0)
                        );
                    };
                    next = q + 1;
                }
            }
        }
    }

    /// What holds once the cluster is quiet: every node read the whole log;
    /// every client in the room got every line of the log since its join,
    /// once, in order; every node's roster is the other nodes' members.
    fn check_settled(&self) {
        let log = self.log();
        let top = log.last().map_or(0, |e| e.0);
        for node in &self.nodes {
            let server = node.driver.server();
            assert_eq!(
                server.cluster_cursor(),
                Some(top),
                "{} did not read it all",
                node.token
            );
            for client in node.driver.clients() {
                if server.nick(client.id).is_none() {
                    continue;
                }
                let join = join_index(&log, &node.token, client.id).unwrap_or_else(|| {
                    panic!("{} {} joined but is not in the log", node.token, client.id)
                });
                let expected: Vec<String> = log[join + 1..]
                    .iter()
                    .flat_map(|(_, e)| rendered(e, &node.token, client.id))
                    .collect();
                let got = room_lines(client.lines.iter().map(|(_, l)| l.as_str()));
                assert_eq!(
                    got, expected,
                    "{} {}: room lines since its join",
                    node.token, client.id
                );
            }
            let mut roster: Vec<(Token, ConnId, String)> = Vec::new();
            for other in self.nodes.iter().filter(|o| o.token != node.token) {
                let theirs = other.driver.server();
                for conn in theirs.connections() {
                    if let Some(nick) = theirs.nick(conn) {
                        roster.push((other.token.clone(), conn, nick.to_string()));
                    }
                }
            }
            roster.sort();
            assert_eq!(
                server.cluster_roster(),
                Some(roster),
                "{}'s roster against the other nodes' members",
                node.token
            );
        }
    }
}

/// Where the log has `conn` of `node` joining.
fn join_index(log: &[(u64, Decoded)], node: &Token, conn: ConnId) -> Option<usize> {
    log.iter().position(|(_, d)| {
        matches!(d.entry, Entry::Join { conn: c, .. } if c == conn)
            && d.origin.as_ref().is_some_and(|o| o.node == *node)
    })
}

/// The room lines `entry` gives `conn` of `node`: none for what it did
/// itself, none for private messages.
fn rendered(decoded: &Decoded, node: &Token, conn: ConnId) -> Vec<String> {
    let by_it = |c: ConnId| c == conn && decoded.origin.as_ref().is_some_and(|o| o.node == *node);
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
        } if gone != node => {
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
