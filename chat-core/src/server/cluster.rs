//! The server as one node of a room shared through Redis (`crate::cluster`):
//! the calls it asks the driver to run, its place in the log, the nick
//! claims it waits for, and the members of the other nodes.
//!
//! The rule everything here follows: a broadcast is published, never
//! delivered at once, and what is read back from the log is delivered, the
//! node's own entries included, so the log's order is every client's order.
//! The roster of other nodes' members changes only from the log too, so
//! `/who` agrees with what the room has seen.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use rand_core::RngCore;

use super::conn::State;
use super::{Audience, ConnId, Output, Reason, Server, joined_line, left_line, render};
use crate::cluster::{
    Call, CallId, Claimed, ClusterConfig, Decoded, Entry, Gone, Hello, HelloReply, RawEntry, Reply,
    Request, Token,
};
use crate::nick::{self, NickError};
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
    /// `read_batch` is 0.
    ReadBatch,
}

impl fmt::Display for ClusterConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterConfigError::NodeName => write!(
                f,
                "node name must be 1-{} ASCII letters, digits, _, - or .",
                crate::cluster::entry::MAX_NODE_NAME
            ),
            ClusterConfigError::ReadBatch => write!(f, "read batch must be at least 1"),
        }
    }
}

impl std::error::Error for ClusterConfigError {}

/// What a node keeps of the shared room.
#[derive(Debug)]
pub(super) struct Cluster {
    config: ClusterConfig,
    token: Token,
    /// The room's epoch, once a hello was answered: the room is up.
    epoch: Option<u64>,
    /// The last seq read from the log.
    cursor: u64,
    /// The `n` of the next entry this node publishes.
    next_n: u64,
    next_call: u64,
    /// Calls asked for and not answered, and what their reply is for.
    calls: HashMap<CallId, Pending>,
    /// A read of the log is out.
    reading: bool,
    /// Entries to publish with the next call: every entry of one run of
    /// inputs goes in one call.
    outbox: Vec<(u64, Entry)>,
    /// Nick keys this node's clients gave up (a rename, a leave) whose
    /// entry is not read back yet, with the entry's `n` and the client:
    /// Redis releases the claim when it writes the entry, so a claim of the
    /// same key by the same client before that would be released with it.
    releasing: HashMap<String, (u64, ConnId)>,
    roster: Roster,
}

/// What an unanswered call was for.
#[derive(Debug)]
enum Pending {
    Hello,
    Read,
    Publish,
    Release,
    /// A generated nick for a connection waiting to be welcomed.
    Join {
        conn: ConnId,
        peer: SocketAddr,
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

/// The members of the other nodes, as the log says.
#[derive(Debug, Default)]
struct Roster {
    members: BTreeMap<(Token, ConnId), String>,
    /// Who holds each nick key.
    keys: HashMap<String, (Token, ConnId)>,
}

impl Roster {
    fn insert(&mut self, node: Token, conn: ConnId, nick: String) {
        self.remove(&node, conn);
        self.keys.insert(nick::key(&nick), (node.clone(), conn));
        self.members.insert((node, conn), nick);
    }

    fn remove(&mut self, node: &Token, conn: ConnId) -> Option<String> {
        let nick = self.members.remove(&(node.clone(), conn))?;
        let key = nick::key(&nick);
        if self.keys.get(&key) == Some(&(node.clone(), conn)) {
            self.keys.remove(&key);
        }
        Some(nick)
    }

    fn remove_node(&mut self, node: &Token) {
        let conns: Vec<ConnId> = self
            .members
            .range((node.clone(), ConnId(0))..=(node.clone(), ConnId(u64::MAX)))
            .map(|((_, conn), _)| *conn)
            .collect();
        for conn in conns {
            self.remove(node, conn);
        }
    }

    fn holder(&self, nick: &str) -> Option<&(Token, ConnId)> {
        self.keys.get(&nick::key(nick))
    }
}

impl Cluster {
    /// Whether the room answered: joins and claims go through it.
    pub(super) fn is_up(&self) -> bool {
        self.epoch.is_some()
    }
}

impl Server {
    /// Makes this server one node of a room shared through Redis (see
    /// `crate::cluster`): it asks at once for the hello that joins the room
    /// ([`Output::Cluster`]), and until that is answered it refuses
    /// connections as [`Reason::RoomUnavailable`]. Its incarnation and the
    /// epoch it would create the room with are drawn from its seed.
    pub fn with_cluster(mut self, config: ClusterConfig) -> Result<Server, ClusterConfigError> {
        if config.read_batch == 0 {
            return Err(ClusterConfigError::ReadBatch);
        }
        let token =
            Token::new(&config.node, self.rng.next_u64()).ok_or(ClusterConfigError::NodeName)?;
        let new_epoch = self.rng.next_u64();
        let hello = Hello {
            node: token.clone(),
            known_epoch: None,
            cursor: 0,
            new_epoch,
            members: Vec::new(),
            ttl: config.claim_ttl,
            want_roster: false,
        };
        self.cluster = Some(Box::new(Cluster {
            config,
            token,
            epoch: None,
            cursor: 0,
            next_n: 1,
            next_call: 0,
            calls: HashMap::new(),
            reading: false,
            outbox: Vec::new(),
            releasing: HashMap::new(),
            roster: Roster::default(),
        }));
        self.ask(Call::Hello(hello), Pending::Hello);
        Ok(self)
    }

    /// This node's token, on a node of a shared room.
    pub fn cluster_token(&self) -> Option<&Token> {
        self.cluster.as_ref().map(|c| &c.token)
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
        let Some(pending) = self.cluster.as_mut().and_then(|c| c.calls.remove(&id)) else {
            return;
        };
        match (pending, reply) {
            (Pending::Hello, Reply::Hello(HelloReply::Room(room))) => {
                let cluster = self.cluster_mut();
                cluster.epoch = Some(room.epoch);
                cluster.cursor = room.top;
                for (node, conn, nick) in room.roster.unwrap_or_default() {
                    if node != cluster.token {
                        cluster.roster.insert(node, conn, nick);
                    }
                }
                self.who_order = None;
                self.read_log();
            }
            (Pending::Read, Reply::Read(entries)) => {
                self.cluster_mut().reading = false;
                for entry in entries {
                    self.read_entry(entry);
                }
                self.read_log();
            }
            (
                Pending::Join {
                    conn,
                    peer,
                    nick,
                    tries,
                },
                Reply::Claimed(claimed),
            ) => {
                let claimed = claimed.first().copied().unwrap_or(Claimed::Reaped);
                self.join_answered(now, conn, peer, nick, tries, claimed);
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
            // What a publish or a release changed is read back from the log;
            // a reply of the wrong kind is the driver's error and changes
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
        let giver = match &entry {
            Entry::Leave { conn, .. } | Entry::Rename { conn, .. } => Some(*conn),
            _ => None,
        };
        if let (Some(conn), (taken, Some(given_up))) = (giver, entry.nick_keys()) {
            if taken.as_ref() != Some(&given_up) {
                cluster.releasing.insert(given_up, (n, conn));
            }
        }
        cluster.outbox.push((n, entry));
    }

    /// Publishes what the last inputs put in the outbox, in one call, once
    /// the room is up. Called when the driver has drained every other output.
    pub(super) fn flush_outbox(&mut self) {
        let Some(cluster) = self.cluster.as_mut().filter(|c| c.is_up()) else {
            return;
        };
        if cluster.outbox.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut cluster.outbox);
        let node = cluster.token.clone();
        self.ask(Call::Publish { node, entries }, Pending::Publish);
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

    /// A generated nick that no one holds here or, as far as this node has
    /// read, on another node; Redis has the last word.
    pub(super) fn candidate_nick(&mut self) -> String {
        let mut len = nick::GENERATED_LEN;
        loop {
            for _ in 0..16 {
                let rng = &mut self.rng;
                let candidate = nick::generate(len, || rng.next_u32());
                if self.nicks.holder(&candidate).is_none() && !self.held_elsewhere(&candidate) {
                    return candidate;
                }
            }
            len += 1;
        }
    }

    /// Asks Redis to grant `nick` to `conn`, which waits for the answer.
    pub(super) fn claim_for_join(
        &mut self,
        conn: ConnId,
        peer: SocketAddr,
        nick: String,
        tries: u32,
    ) {
        let pending = Pending::Join {
            conn,
            peer,
            nick: nick.clone(),
            tries,
        };
        self.claim(conn, nick, pending);
    }

    /// Asks Redis to grant `nick` to `conn`; `pending` says what for.
    fn claim(&mut self, conn: ConnId, nick: String, pending: Pending) {
        let cluster = self.cluster_mut();
        let call = Call::Claim {
            node: cluster.token.clone(),
            ttl: cluster.config.claim_ttl,
            claims: vec![(conn, nick)],
        };
        self.ask(call, pending);
    }

    /// `/nick NEW` on a node of a shared room, once the rate allows it:
    /// checked here against every nick this node knows, then claimed in
    /// Redis (unless it is a variant of the client's own nick), while the
    /// client's input waits.
    pub(super) fn cluster_nick(
        &mut self,
        conn: ConnId,
        slot: usize,
        new: &str,
        nick_changes: Option<Bucket>,
    ) {
        let old = self.conns[slot].nick.clone();
        if let Err(error) = nick::check(new) {
            return self.reply(conn, &format!("error: {}", error.message(new)));
        }
        let taken_here = self.nicks.holder(new).is_some_and(|holder| holder != conn);
        if taken_here || self.held_elsewhere(new) {
            return self.reply(conn, &format!("error: {}", NickError::Taken.message(new)));
        }
        let new_key = nick::key(new);
        let releasing = self
            .cluster
            .as_ref()
            .and_then(|c| c.releasing.get(&new_key));
        if releasing.is_some_and(|&(_, by)| by == conn) {
            // Its claim of that key goes when its rename is written.
            let text =
                format!("error: nick {new} not changed: you gave it up a moment ago, try again");
            return self.reply(conn, &text);
        }
        if new_key == nick::key(&old) {
            // A variant of its own nick: its claim covers it.
            return self.rename(conn, slot, &old, new, nick_changes);
        }
        self.conns[slot].claim = Some(new.to_string());
        let pending = Pending::Nick {
            conn,
            to: new.to_string(),
            nick_changes,
        };
        self.claim(conn, new.to_string(), pending);
    }

    /// Renames in the local registry, then everywhere; should this node hold
    /// the key for another connection after all, the claim is given back.
    fn rename(&mut self, conn: ConnId, slot: usize, old: &str, new: &str, budget: Option<Bucket>) {
        match self.nicks.rename(old, new, conn) {
            Ok(()) => self.renamed(conn, slot, new, budget),
            Err(error) => {
                if nick::key(new) != nick::key(old) {
                    self.release_claim(conn, new.to_string());
                }
                self.reply(conn, &format!("error: {}", error.message(new)));
            }
        }
    }

    /// Gives back a claim granted to a connection that no longer wants it.
    fn release_claim(&mut self, conn: ConnId, nick: String) {
        let node = self.cluster_mut().token.clone();
        self.ask(Call::Release { node, conn, nick }, Pending::Release);
    }

    fn join_answered(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        nick: String,
        tries: u32,
        claimed: Claimed,
    ) {
        let waiting = self
            .slot_of(conn)
            .filter(|&slot| self.conns[slot].state == State::Claiming);
        let Some(slot) = waiting else {
            if claimed == Claimed::Granted {
                self.release_claim(conn, nick);
            }
            return;
        };
        let granted = claimed == Claimed::Granted && self.nicks.claim(&nick, conn).is_ok();
        if granted {
            let entry = &mut self.conns[slot];
            entry.claim = None;
            entry.state = State::Joined;
            self.welcome(now, slot, peer);
            return self.input_may_go_on(conn, now);
        }
        if claimed == Claimed::Granted {
            // Granted, but taken here meanwhile: give it back, draw again.
            self.release_claim(conn, nick);
        }
        if claimed != Claimed::Reaped && tries < JOIN_TRIES {
            let nick = self.candidate_nick();
            self.conns[slot].nick.clone_from(&nick);
            self.conns[slot].claim = Some(nick.clone());
            return self.claim_for_join(conn, peer, nick, tries + 1);
        }
        self.refuse_claiming(now, slot, peer, Reason::RoomUnavailable);
    }

    /// Refuses a connection that waits for its nick: a last line, and a
    /// close that flushes it.
    pub(super) fn refuse_claiming(
        &mut self,
        now: Instant,
        slot: usize,
        peer: SocketAddr,
        reason: Reason,
    ) {
        let id = self.conns[slot].id;
        let text = match reason {
            Reason::Shutdown => "* server shutting down",
            _ => "* error: room unavailable, try again later",
        };
        self.deliver(Audience::One(id), render(&[text]));
        let entry = &mut self.conns[slot];
        entry.claim = None;
        entry.state = State::Closing { admitted: true };
        entry.flood.clear();
        self.reject(now, id, peer, reason, true);
    }

    fn nick_answered(
        &mut self,
        now: Instant,
        conn: ConnId,
        to: String,
        nick_changes: Option<Bucket>,
        claimed: Claimed,
    ) {
        let waiting = self
            .joined_slot(conn)
            .filter(|&slot| self.conns[slot].claim.as_deref() == Some(to.as_str()));
        let Some(slot) = waiting else {
            if claimed == Claimed::Granted {
                self.release_claim(conn, to);
            }
            return;
        };
        self.conns[slot].claim = None;
        match claimed {
            Claimed::Granted => {
                let old = self.conns[slot].nick.clone();
                self.rename(conn, slot, &old, &to, nick_changes);
            }
            Claimed::Taken => {
                self.reply(conn, &format!("error: {}", NickError::Taken.message(&to)));
            }
            Claimed::Reaped => self.reply(
                conn,
                "error: nick changes need the whole room; try again when it is whole",
            ),
        }
        self.input_may_go_on(conn, now);
    }

    /// After a claim was answered: the input that waited for it is handled
    /// (at the end of this call), or reading resumes.
    fn input_may_go_on(&mut self, conn: ConnId, now: Instant) {
        let Some(slot) = self.joined_slot(conn) else {
            return;
        };
        let entry = &mut self.conns[slot];
        if entry.flood.is_holding() {
            self.release_later(conn);
        } else if std::mem::take(&mut entry.flood.eof_pending) {
            self.finish_input(conn, now);
        } else {
            self.resume_reading(slot);
        }
    }

    /// One entry read back from the log: the roster follows it, and its
    /// line goes to this node's clients in the room.
    fn read_entry(&mut self, raw: RawEntry) {
        let cluster = self.cluster_mut();
        if raw.seq <= cluster.cursor {
            return;
        }
        cluster.cursor = raw.seq;
        let fields = raw.fields.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
        let Ok(Decoded { origin, entry }) = Decoded::from_fields(fields) else {
            return;
        };
        let token = cluster.token.clone();
        if let Some(origin) = origin.as_ref().filter(|o| o.node == token) {
            cluster.releasing.retain(|_, (n, _)| *n != origin.n);
        }
        // The connection of this node that wrote it, which does not get it.
        let own = |conn: ConnId| {
            let own = origin.as_ref().is_some_and(|o| o.node == token);
            if own { conn } else { NOBODY }
        };
        let remote = origin
            .as_ref()
            .map(|o| o.node.clone())
            .filter(|node| *node != token);
        match entry {
            Entry::Join { conn, nick } => {
                self.deliver(Audience::AllBut(own(conn)), joined_line(&nick));
                match remote {
                    Some(node) => self.roster_changed(|r| r.insert(node, conn, nick)),
                    None => self.entered(own(conn)),
                }
            }
            Entry::Leave { conn, nick, reason } => {
                self.deliver(
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
                let line = render(&["* ", &from, " is now known as ", &to]);
                self.deliver(Audience::AllBut(own(conn)), line);
                if let Some(node) = remote {
                    self.roster_changed(|r| r.insert(node, conn, to));
                }
            }
            Entry::Say { conn, line } => {
                self.deliver(Audience::AllBut(own(conn)), render(&[&line]))
            }
            Entry::Msg {
                to, to_conn, line, ..
            } => {
                if to == token && self.joined_slot(to_conn).is_some() {
                    self.deliver(Audience::One(to_conn), render(&[&line]));
                }
            }
            Entry::NodeGone { node, why, nicks } => {
                if node != token {
                    let why = match why {
                        Gone::Lost => "server lost",
                        Gone::Shutdown => "server shutting down",
                    };
                    for nick in nicks {
                        self.deliver(Audience::AllBut(NOBODY), left_line(&nick, Some(why)));
                    }
                    self.roster_changed(|r| r.remove_node(&node));
                }
            }
            Entry::Sync { node, members } => {
                if node != token {
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

    fn roster_changed(&mut self, change: impl FnOnce(&mut Roster)) {
        change(&mut self.cluster_mut().roster);
        self.who_order = None;
    }

    /// A client of this node whose join was read back: from here on it
    /// gets the room's lines.
    fn entered(&mut self, conn: ConnId) {
        if let Some(slot) = self.joined_slot(conn) {
            let entry = &mut self.conns[slot];
            if !entry.in_room {
                entry.in_room = true;
                entry.outgoing.queue.follow(&self.broadcasts);
            }
        }
    }
}
