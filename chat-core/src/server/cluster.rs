//! The server as one node of a room shared through Redis (`crate::cluster`):
//! the calls it asks the driver to run, its place in the log, the nick
//! claims it waits for (`claims`), its link to the room (`link`: hellos,
//! beats, nodes found dead, the room split and whole again), and the
//! members of the other nodes (`roster`).
//!
//! The rule everything here follows: a broadcast is published, never
//! delivered at once, and what is read back from the log is delivered, the
//! node's own entries included, so the log's order is every client's order.
//! The roster of other nodes' members changes only from the log too, so
//! `/who` agrees with what the room has seen.

mod claims;
mod link;
mod roster;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::Instant;

use rand_core::RngCore;

use self::link::{Beating, ClusterTimer, Link, missed_text};
use self::roster::Roster;
use super::conn::State;
use super::{Audience, ConnId, Output, Server, joined_line, left_line, renamed_line, render};
use crate::cluster::{
    Call, CallId, Claimed, ClusterConfig, Decoded, Entry, Gone, HelloReply, Published, RawEntry,
    Reply, Request, Token,
};
use crate::rate::Bucket;

/// Generated nicks a join draws before it gives up: each one Redis finds
/// taken is drawn again.
const JOIN_TRIES: u32 = 8;

/// No connection: the sender of a line read from another node.
const NOBODY: ConnId = ConnId(u64::MAX);

/// Why [`Server::with_cluster`] refuses a [`ClusterConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterConfigError {
    /// The node name is empty, too long, or holds other than ASCII letters,
    /// digits, `_`, `-` and `.`.
    NodeName,
    /// A count or a time (named) is zero.
    Zero(&'static str),
}

impl fmt::Display for ClusterConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterConfigError::NodeName => write!(
                f,
                "node name must be 1-{} ASCII letters, digits, _, - or .",
                crate::cluster::entry::MAX_NODE_NAME
            ),
            ClusterConfigError::Zero(name) => write!(f, "{name} must be above 0"),
        }
    }
}

impl std::error::Error for ClusterConfigError {}

/// What a node keeps of the shared room.
#[derive(Debug)]
pub(super) struct Cluster {
    config: ClusterConfig,
    token: Token,
    link: Link,
    /// The room's epoch, once a hello was answered.
    epoch: Option<u64>,
    /// The last seq read from the log.
    cursor: u64,
    /// The log's top when the last hello was answered: an entry published
    /// again then and found written before (`Published::Dup`) is at or
    /// before it.
    hello_top: u64,
    /// The `n` of the next entry this node publishes.
    next_n: u64,
    next_call: u64,
    /// Calls asked for and not answered, and what their reply is for.
    calls: BTreeMap<CallId, Pending>,
    /// A read of the log is out.
    reading: bool,
    /// A publish is out: the next waits for its reply, so that entries made
    /// meanwhile go in one call (the busier the room, the bigger the call).
    publishing: bool,
    /// Entries to publish with the next call: every entry of one run of
    /// inputs goes in one call.
    outbox: Vec<(u64, Entry)>,
    /// Entries published and not read back yet, in `n` order: published
    /// again when the link comes back (Redis writes each once).
    unconfirmed: VecDeque<(u64, Entry)>,
    /// The last `n` read from each node: an entry written twice (published
    /// again after Redis lost what it knew) is delivered once.
    seen: HashMap<Token, u64>,
    /// Nick keys this node's clients gave up (a rename, a leave) whose
    /// entry is not read back yet, with the entry's `n` and the client:
    /// Redis releases the claim when it writes the entry, so a claim of the
    /// same key by the same client before that would be released with it.
    releasing: HashMap<String, (u64, ConnId)>,
    roster: Roster,
    /// Connections whose nick was granted and whose join is published, not
    /// yet read back: welcomed when it is.
    entering: BTreeMap<ConnId, Entering>,
    /// The other nodes' beat counters, and since when each stands still.
    beats: HashMap<Token, Beating>,
    /// A beat is out.
    beat_out: bool,
    /// When the claims are next extended (with a beat).
    next_extend: Option<Instant>,
    timers: [Option<Instant>; ClusterTimer::ALL.len()],
    /// This node's clients were told the room is split.
    split_told: bool,
}

/// A connection whose join is published and not read back yet.
#[derive(Debug, Default)]
struct Entering {
    /// Where Redis wrote the join, once a reply said (for a join written
    /// before the link failed, at most there): the cursor passing it in a
    /// gap welcomes the client.
    seq: Option<u64>,
    /// Redis lost the room's history while it waited: it is told once
    /// welcomed.
    history_lost: bool,
}

/// What an unanswered call was for.
#[derive(Debug)]
enum Pending {
    /// `start`: the node joins the room anew (at start, or reaped).
    Hello {
        start: bool,
    },
    Read,
    /// The `n` of the entries published.
    Publish(Vec<u64>),
    Release,
    Beat,
    Reap,
    /// A generated nick for a connection waiting to be welcomed.
    Join {
        conn: ConnId,
        nick: String,
        tries: u32,
    },
    /// A `/nick`; the nick budget as it will be if the change is made.
    Nick {
        conn: ConnId,
        to: String,
        nick_changes: Option<Bucket>,
    },
}

impl Cluster {
    /// Whether the room answers: joins, claims and publishing go through it.
    pub(super) fn is_up(&self) -> bool {
        self.link == Link::Up
    }
}

impl Server {
    /// Makes this server one node of a room shared through Redis (see
    /// `crate::cluster`): it asks at once for the hello that joins the room
    /// ([`Output::Cluster`]), and until that is answered it refuses
    /// connections as [`Reason::RoomUnavailable`](crate::Reason). Its
    /// incarnation and the epoch it would create the room with are drawn
    /// from its seed.
    pub fn with_cluster(mut self, config: ClusterConfig) -> Result<Server, ClusterConfigError> {
        let zero = [
            ("read batch", config.read_batch == 0),
            ("outbox", config.outbox == 0),
            ("beat", config.beat.is_zero()),
            ("dead after", config.dead_after.is_zero()),
            ("claim ttl", config.claim_ttl.is_zero()),
            ("split notice", config.split_notice_after.is_zero()),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, zero)| *zero) {
            return Err(ClusterConfigError::Zero(name));
        }
        let token =
            Token::new(&config.node, self.rng.next_u64()).ok_or(ClusterConfigError::NodeName)?;
        self.cluster = Some(Box::new(Cluster {
            config,
            token,
            link: Link::Joining,
            epoch: None,
            cursor: 0,
            hello_top: 0,
            next_n: 1,
            next_call: 0,
            calls: BTreeMap::new(),
            reading: false,
            publishing: false,
            outbox: Vec::new(),
            unconfirmed: VecDeque::new(),
            seen: HashMap::new(),
            releasing: HashMap::new(),
            roster: Roster::default(),
            entering: BTreeMap::new(),
            beats: HashMap::new(),
            beat_out: false,
            next_extend: None,
            timers: [None; ClusterTimer::ALL.len()],
            split_told: false,
        }));
        self.say_hello();
        Ok(self)
    }

    /// This node's token, on a node of a shared room.
    pub fn cluster_token(&self) -> Option<&Token> {
        self.cluster.as_ref().map(|c| &c.token)
    }

    /// Whether the room answers (the last hello was answered and the link
    /// has not failed since), on a node of a shared room.
    pub fn cluster_up(&self) -> Option<bool> {
        self.cluster.as_ref().map(|c| c.is_up())
    }

    /// The last seq this node read from the log, on a node of a shared room.
    pub fn cluster_cursor(&self) -> Option<u64> {
        self.cluster.as_ref().map(|c| c.cursor)
    }

    /// The other nodes' members as this node has read them from the log, by
    /// node and conn; `None` on a server of its own.
    pub fn cluster_roster(&self) -> Option<Vec<(Token, ConnId, String)>> {
        let cluster = self.cluster.as_ref()?;
        let members = cluster.roster.members.iter();
        Some(
            members
                .map(|((node, conn), nick)| (node.clone(), *conn, nick.clone()))
                .collect(),
        )
    }

    /// Call with the reply to the [`Output::Cluster`] call `id`, on a node
    /// of a shared room. A reply for an id not asked for, or answered
    /// already, is ignored.
    pub fn handle_cluster_reply(&mut self, now: Instant, id: CallId, reply: Reply) {
        let now = self.advance(now);
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some(pending) = cluster.calls.remove(&id) else {
            return;
        };
        // Answered, whatever the reply (one of the wrong kind, the driver's
        // error, changes nothing else).
        match pending {
            Pending::Read => cluster.reading = false,
            Pending::Publish(_) => cluster.publishing = false,
            Pending::Beat => cluster.beat_out = false,
            _ => {}
        }
        match (pending, reply) {
            (Pending::Hello { start }, Reply::Hello(HelloReply::Room(room))) => {
                self.room_found(now, start, room);
            }
            (Pending::Hello { .. }, Reply::Hello(HelloReply::Reaped)) => self.room_lost(now),
            (Pending::Beat, Reply::Beat(beat)) => self.beat_answered(now, beat),
            (Pending::Publish(ns), Reply::Published(results)) => {
                // What was written is read back; Redis that lost the room or
                // this node is found out here as well as by the next beat.
                self.published(&ns, &results);
                if results.contains(&Published::Reaped) {
                    self.room_lost(now);
                } else if results.contains(&Published::Reset) {
                    self.link_lost(now);
                }
            }
            (Pending::Read, Reply::Read(entries)) => {
                let cursor = self.cluster_mut().cursor;
                if let Some(first) = entries.first().filter(|e| e.seq > cursor + 1) {
                    // Trimmed before this node read it: the roster may miss
                    // what the lines missed told, and a hello brings it.
                    self.missed(first.seq - cursor - 1);
                    self.say_hello();
                }
                for entry in entries {
                    self.read_entry(now, entry);
                }
                self.enter_passed(now);
                self.read_log();
            }
            (Pending::Join { conn, nick, tries }, Reply::Claimed(claimed)) => {
                let claimed = claimed.first().copied().unwrap_or(Claimed::Reaped);
                self.join_answered(now, conn, nick, tries, claimed);
            }
            (
                Pending::Nick {
                    conn,
                    to,
                    nick_changes,
                },
                Reply::Claimed(claimed),
            ) => {
                let claimed = claimed.first().copied().unwrap_or(Claimed::Reaped);
                self.nick_answered(now, conn, to, nick_changes, claimed);
            }
            // What a release or a reap changed is read back from the log; a
            // reply of the wrong kind is the driver's error and changes
            // nothing.
            _ => {}
        }
        self.disconnect_too_slow();
        self.release_room(now);
    }

    /// The node's side of the room, for the calls that only a node makes.
    #[expect(
        clippy::expect_used,
        reason = "called only where the server is a node: from a reply to its own call, or \
                  a branch taken because `self.cluster` is set"
    )]
    fn cluster_mut(&mut self) -> &mut Cluster {
        self.cluster
            .as_mut()
            .expect("cluster calls are answered only on a node of a shared room")
    }

    /// Asks the driver to run `call`, remembering what its reply is for.
    fn ask(&mut self, call: Call, pending: Pending) {
        let cluster = self.cluster_mut();
        let id = CallId(cluster.next_call);
        cluster.next_call += 1;
        cluster.calls.insert(id, pending);
        let request = Request { id, call };
        self.outputs.push_back(Output::Cluster(Box::new(request)));
    }

    /// Sends `line` to everyone in the room but `sender`: at once on a
    /// server of its own; on a node of a shared room as the entry `entry`
    /// makes of it, in the log, delivered when it is read back.
    pub(super) fn broadcast(
        &mut self,
        sender: ConnId,
        line: bytes::Bytes,
        entry: impl FnOnce(&[u8]) -> Entry,
    ) {
        match &mut self.cluster {
            None => self.deliver(Audience::AllBut(sender), line),
            Some(_) => self.publish(entry(&line)),
        }
    }

    /// Puts `entry` in the log, with the next call.
    pub(super) fn publish(&mut self, entry: Entry) {
        let cluster = self.cluster_mut();
        let n = cluster.next_n;
        cluster.next_n += 1;
        if let (Some((conn, _)), Some(given_up)) = (entry.member_change(), entry.given_up_key()) {
            cluster.releasing.insert(given_up, (n, conn));
        }
        cluster.outbox.push((n, entry));
    }

    /// Publishes what the last inputs put in the outbox, in one call, once
    /// the room is up. Called when the driver has drained every other output.
    pub(super) fn flush_outbox(&mut self) {
        let Some(cluster) = self.cluster.as_mut().filter(|c| c.is_up()) else {
            return;
        };
        if cluster.outbox.is_empty() || cluster.publishing {
            return;
        }
        cluster.publishing = true;
        let entries = std::mem::take(&mut cluster.outbox);
        cluster.unconfirmed.extend(entries.iter().cloned());
        let node = cluster.token.clone();
        let ns = entries.iter().map(|(n, _)| *n).collect();
        self.ask(Call::Publish { node, entries }, Pending::Publish(ns));
    }

    /// Whether a chat line cannot wait for the room any more: the link is
    /// down and the outbox is full.
    pub(in crate::server) fn room_split_full(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| !c.is_up() && c.unconfirmed.len() + c.outbox.len() >= c.config.outbox)
    }

    /// Asks for the log after the cursor, unless a read is out.
    fn read_log(&mut self) {
        let cluster = self.cluster_mut();
        if cluster.reading || !cluster.is_up() {
            return;
        }
        cluster.reading = true;
        let call = Call::Read {
            after: cluster.cursor,
            count: cluster.config.read_batch,
        };
        self.ask(call, Pending::Read);
    }

    /// Whether `nick`'s key is held by another node's member.
    pub(super) fn held_elsewhere(&self, nick: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.roster.holder(nick).is_some())
    }

    /// Connections of this node that hold a nick and wait for their join to
    /// be read back.
    pub(super) fn entering(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.entering.len())
    }

    /// Whether `conn` holds a nick and waits for its join to be read back.
    pub(super) fn entering_conn(&self, conn: ConnId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.entering.contains_key(&conn))
    }

    /// Members of the other nodes.
    pub(super) fn remote_members(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| c.roster.members.len())
    }

    /// The nicks of the other nodes' members.
    pub(super) fn remote_nicks(&self) -> impl Iterator<Item = &str> {
        self.cluster
            .iter()
            .flat_map(|c| c.roster.members.values().map(String::as_str))
    }

    /// Where to send a private line for `nick`, if another node's member
    /// holds it.
    pub(super) fn remote_holder(&self, nick: &str) -> Option<(Token, ConnId)> {
        self.cluster.as_ref()?.roster.holder(nick).cloned()
    }

    /// One entry read back from the log: the roster follows it, and its
    /// line goes to this node's clients in the room.
    fn read_entry(&mut self, now: Instant, raw: RawEntry) {
        let cluster = self.cluster_mut();
        if raw.seq <= cluster.cursor {
            return;
        }
        cluster.cursor = raw.seq;
        let Ok(Decoded { origin, entry }) = Decoded::from_stream(&raw.fields) else {
            return;
        };
        // Written by this node, by another (`remote`), or by a script.
        let (mut fresh, mut own, mut remote) = (true, false, None);
        if let Some(origin) = origin {
            // The token is cloned once per node, not once per entry.
            let last = match cluster.seen.get_mut(&origin.node) {
                Some(last) => last,
                None => cluster.seen.entry(origin.node.clone()).or_insert(0),
            };
            // Written twice (published again after Redis lost its reply, or
            // the log): delivered once, but the roster, rebuilt from Redis
            // meanwhile, follows it again.
            fresh = origin.n > *last;
            *last = (*last).max(origin.n);
            own = origin.node == cluster.token;
            if own {
                cluster.releasing.retain(|_, (n, _)| *n != origin.n);
                while cluster
                    .unconfirmed
                    .front()
                    .is_some_and(|(n, _)| *n <= origin.n)
                {
                    cluster.unconfirmed.pop_front();
                }
            } else {
                remote = Some(origin.node);
            }
        }
        // The connection of this node that wrote it, which does not get it.
        let own = |conn: ConnId| if own { conn } else { NOBODY };
        match entry {
            Entry::Join { conn, nick } => {
                self.deliver_if(fresh, Audience::AllBut(own(conn)), joined_line(&nick));
                match remote {
                    Some(node) => self.roster_changed(|r| r.insert(node, conn, nick)),
                    None => self.entered(now, own(conn)),
                }
            }
            Entry::Leave { conn, nick, reason } => {
                self.deliver_if(
                    fresh,
                    Audience::AllBut(own(conn)),
                    left_line(&nick, reason.as_deref()),
                );
                if let Some(node) = remote {
                    self.roster_changed(|r| {
                        r.remove(&node, conn);
                    });
                }
            }
            Entry::Rename { conn, from, to } => {
                let line = renamed_line(&from, &to);
                self.deliver_if(fresh, Audience::AllBut(own(conn)), line);
                if let Some(node) = remote {
                    self.roster_changed(|r| r.insert(node, conn, to));
                }
            }
            Entry::Say { conn, line } => {
                self.deliver_if(fresh, Audience::AllBut(own(conn)), render(&[&line]))
            }
            Entry::Msg {
                to, to_conn, line, ..
            } => {
                if self.is_this_node(&to) && self.joined_slot(to_conn).is_some() {
                    self.deliver_if(fresh, Audience::One(to_conn), render(&[&line]));
                }
            }
            Entry::NodeGone { node, why, nicks } => {
                if !self.is_this_node(&node) {
                    let why = match why {
                        Gone::Lost => "server lost",
                        Gone::Shutdown => "server shutting down",
                    };
                    for nick in nicks {
                        self.deliver_if(
                            fresh,
                            Audience::AllBut(NOBODY),
                            left_line(&nick, Some(why)),
                        );
                    }
                    self.roster_changed(|r| r.remove_node(&node));
                }
            }
            Entry::Sync { node, members } => {
                if !self.is_this_node(&node) {
                    // Redis lost what it knew of `node`, which said it again.
                    self.roster_changed(|r| {
                        r.remove_node(&node);
                        for (conn, nick) in members {
                            r.insert(node.clone(), conn, nick);
                        }
                    });
                }
            }
        }
    }

    /// Where Redis wrote the joins of this node's clients, for
    /// [`Server::enter_passed`].
    fn published(&mut self, ns: &[u64], results: &[Published]) {
        let cluster = self.cluster_mut();
        for (n, result) in ns.iter().zip(results) {
            let seq = match result {
                Published::Seq(seq) => *seq,
                // Written before the link failed, its reply lost.
                Published::Dup => cluster.hello_top,
                Published::Reset | Published::Reaped => continue,
            };
            let join = cluster.unconfirmed.iter().find(|(m, _)| m == n);
            if let Some((_, Entry::Join { conn, .. })) = join {
                if let Some(entering) = cluster.entering.get_mut(conn) {
                    entering.seq = Some(seq);
                }
            }
        }
    }

    /// Welcomes the clients whose join the cursor passed without reading
    /// it (trimmed before this node read it).
    pub(super) fn enter_passed(&mut self, now: Instant) {
        let cluster = self.cluster_mut();
        let cursor = cluster.cursor;
        let passed: Vec<(ConnId, u64)> = cluster
            .entering
            .iter()
            .filter_map(|(conn, entering)| Some((*conn, entering.seq?)))
            .filter(|(_, seq)| *seq <= cursor)
            .collect();
        for (conn, seq) in passed {
            self.entered(now, conn);
            // Its room started at its join: what came after went by.
            if seq < cursor && self.joined_slot(conn).is_some() {
                let text = missed_text(cursor - seq);
                self.deliver(Audience::One(conn), render(&[&text]));
            }
        }
    }

    /// Whether `node` is this node's token.
    fn is_this_node(&self, node: &Token) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.token == *node)
    }

    /// [`Server::deliver`], unless the entry was delivered before.
    fn deliver_if(&mut self, fresh: bool, audience: Audience, line: bytes::Bytes) {
        if fresh {
            self.deliver(audience, line);
        }
    }

    fn roster_changed(&mut self, change: impl FnOnce(&mut Roster)) {
        change(&mut self.cluster_mut().roster);
        self.who_order = None;
    }

    /// A client of this node whose join was read back: from here on it
    /// gets the room's lines.
    fn entered(&mut self, now: Instant, conn: ConnId) {
        let Some(entering) = self.cluster_mut().entering.remove(&conn) else {
            return;
        };
        let Some(slot) = self.claiming_slot(conn) else {
            return;
        };
        let State::Claiming { peer } = self.conns[slot].state else {
            return;
        };
        let entry = &mut self.conns[slot];
        entry.state = State::Joined;
        entry.outgoing.queue.follow(&self.broadcasts);
        self.welcome(now, slot, peer);
        if entering.history_lost {
            self.deliver(Audience::One(conn), render(&[link::LOST]));
        }
        self.input_may_go_on(conn, now);
    }
}
