//! Redis as the cluster uses it, simulated: [`SimRedis`] runs every
//! [`Call`] the way its Lua script does, on a virtual clock for the TTLs,
//! and [`script_cases`] is the table of calls and replies that both it and
//! a real `redis-server` running the scripts are tested against.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::ConnId;
use crate::cluster::{
    BeatReply, Call, Claimed, Decoded, Entry, Gone, Hello, HelloReply, Origin, Published, RawEntry,
    Reply, Room, Token,
};
use crate::nick;

/// The room's meta hash.
#[derive(Debug, Clone, Copy)]
struct Meta {
    epoch: u64,
    seq: u64,
}

/// A claim's value and when it expires, in virtual milliseconds.
#[derive(Debug, Clone)]
struct NickClaim {
    holder: String,
    expires: u64,
}

/// The keys of one room in Redis (see `chat_core::cluster::call`), with
/// each script a method, run atomically like the Lua.
#[derive(Debug, Clone)]
pub struct SimRedis {
    meta: Option<Meta>,
    history: usize,
    origins: BTreeMap<Token, u64>,
    nodes: BTreeMap<Token, u64>,
    members: BTreeMap<Token, BTreeMap<ConnId, String>>,
    claims: BTreeMap<Token, BTreeMap<String, ConnId>>,
    nicks: BTreeMap<String, NickClaim>,
    /// Nodes reaped: they may not register again, however they say hello.
    reaped: BTreeSet<Token>,
    /// Every entry written since the room was made, trimmed or not: the
    /// log is its last `history` entries, and the checks compare clients
    /// with all of it.
    written: Vec<RawEntry>,
    now_ms: u64,
}

impl SimRedis {
    /// An empty Redis whose log keeps the last `history` entries.
    pub fn new(history: usize) -> SimRedis {
        SimRedis {
            meta: None,
            history: history.max(1),
            origins: BTreeMap::new(),
            nodes: BTreeMap::new(),
            members: BTreeMap::new(),
            claims: BTreeMap::new(),
            nicks: BTreeMap::new(),
            reaped: BTreeSet::new(),
            written: Vec::new(),
            now_ms: 0,
        }
    }

    /// Lets `by` pass on Redis' clock.
    pub fn advance(&mut self, by: Duration) {
        self.now_ms += millis(by);
    }

    /// Forgets everything (`FLUSHALL`, or a restart without persistence).
    pub fn flush(&mut self) {
        *self = SimRedis::new(self.history);
    }

    /// The holder of a nick key (`TOKEN CONN`), if its claim has not expired.
    pub fn holder(&self, key: &str) -> Option<&str> {
        let claim = self.nicks.get(key)?;
        (claim.expires > self.now_ms).then_some(claim.holder.as_str())
    }

    /// Every entry written since Redis was last empty, trimmed or not.
    pub fn written(&self) -> &[RawEntry] {
        &self.written
    }

    /// The log as it is now (all of it, if `history` is large enough).
    pub fn log(&self) -> impl Iterator<Item = &RawEntry> {
        let trimmed = self.written.len().saturating_sub(self.history);
        self.written[trimmed..].iter()
    }

    /// Every member of the room by node and conn, as Redis holds them.
    pub fn roster(&self) -> Vec<(Token, ConnId, String)> {
        self.members
            .iter()
            .flat_map(|(node, members)| {
                let node = node.clone();
                members
                    .iter()
                    .map(move |(conn, nick)| (node.clone(), *conn, nick.clone()))
            })
            .collect()
    }

    /// Runs one call.
    pub fn run(&mut self, call: &Call) -> Reply {
        match call {
            Call::Hello(hello) => Reply::Hello(self.hello(hello)),
            Call::Publish { node, entries } => Reply::Published(self.publish(node, entries)),
            Call::Claim { node, ttl, claims } => Reply::Claimed(self.claim(node, *ttl, claims)),
            Call::Release { node, conn, nick } => {
                Reply::Released(self.release(node, *conn, &nick::key(nick)))
            }
            Call::Beat {
                node,
                epoch,
                cursor,
                extend,
            } => Reply::Beat(self.beat(node, *epoch, *cursor, *extend)),
            Call::Reap { node, counter, why } => Reply::Reaped(self.reap(node, *counter, *why)),
            Call::Read { after, count } => Reply::Read(
                self.log()
                    .filter(|e| e.seq > *after)
                    .take(*count)
                    .cloned()
                    .collect(),
            ),
        }
    }

    fn hello(&mut self, hello: &Hello) -> HelloReply {
        let meta = *self.meta.get_or_insert_with(|| {
            self.written.clear();
            Meta {
                epoch: hello.new_epoch,
                seq: 0,
            }
        });
        let reset = hello
            .known_epoch
            .is_some_and(|known| known != meta.epoch || meta.seq < hello.cursor);
        let start = hello.known_epoch.is_none();
        let node = &hello.node;
        let gone =
            self.reaped.contains(node) || (!start && !reset && !self.nodes.contains_key(node));
        if gone {
            return HelloReply::Reaped;
        }
        // The node's members and claims become what it says it holds: after
        // a split its claims may have expired, or a leave not be written.
        self.nodes.entry(node.clone()).or_insert(0);
        let mut conflicts = Vec::new();
        let mut members = BTreeMap::new();
        let mut claims = BTreeMap::new();
        let held: BTreeMap<String, ConnId> = hello
            .members
            .iter()
            .map(|(conn, nick)| (nick::key(nick), *conn))
            .collect();
        for (key, conn) in self.claims.remove(node).unwrap_or_default() {
            if held.get(&key) != Some(&conn) && self.holder(&key) == Some(&holder(node, conn)) {
                self.nicks.remove(&key);
            }
        }
        for (conn, nick) in &hello.members {
            let key = nick::key(nick);
            if self.take_nick(&key, &holder(node, *conn), hello.ttl) {
                members.insert(*conn, nick.clone());
                claims.insert(key, *conn);
            } else {
                conflicts.push(*conn);
            }
        }
        if reset {
            let sync = Entry::Sync {
                node: node.clone(),
                members: members.iter().map(|(c, n)| (*c, n.clone())).collect(),
            };
            self.append(&sync, None);
        }
        self.members.insert(node.clone(), members);
        self.claims.insert(node.clone(), claims);
        let meta = self.meta.expect("hello created the room's meta above");
        HelloReply::Room(Room {
            epoch: meta.epoch,
            first: self.log().next().map(|e| e.seq),
            top: meta.seq,
            reset,
            nodes: self.nodes(),
            roster: (start || reset || hello.want_roster).then(|| self.roster()),
            conflicts,
        })
    }

    fn publish(&mut self, node: &Token, entries: &[(u64, Entry)]) -> Vec<Published> {
        let refusal = if self.meta.is_none() {
            Some(Published::Reset)
        } else if !self.nodes.contains_key(node) {
            Some(Published::Reaped)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return vec![refusal; entries.len()];
        }
        entries
            .iter()
            .map(|(n, entry)| {
                let last = self.origins.entry(node.clone()).or_insert(0);
                if *n <= *last {
                    return Published::Dup;
                }
                *last = *n;
                self.apply(node, entry);
                let origin = Origin {
                    node: node.clone(),
                    n: *n,
                };
                Published::Seq(self.append(entry, Some(&origin)))
            })
            .collect()
    }

    /// What an entry changes in the node's members and claims.
    fn apply(&mut self, node: &Token, entry: &Entry) {
        let Some((conn, nick)) = entry.member_change() else {
            return;
        };
        let members = self.members.entry(node.clone()).or_default();
        match nick {
            Some(nick) => members.insert(conn, nick.to_string()),
            None => members.remove(&conn),
        };
        if let Some(key) = entry.given_up_key() {
            self.release(node, conn, &key);
        }
    }

    /// Sets a nick key to `value` unless someone else holds it (`SET NX PX`,
    /// or already ours); whether `value` holds it now.
    fn take_nick(&mut self, key: &str, value: &str, ttl: Duration) -> bool {
        if self.holder(key).is_some_and(|h| h != value) {
            return false;
        }
        let claim = NickClaim {
            holder: value.to_string(),
            expires: self.now_ms + millis(ttl),
        };
        self.nicks.insert(key.to_string(), claim);
        true
    }

    fn claim(&mut self, node: &Token, ttl: Duration, claims: &[(ConnId, String)]) -> Vec<Claimed> {
        if !self.nodes.contains_key(node) {
            return vec![Claimed::Reaped; claims.len()];
        }
        claims
            .iter()
            .map(|(conn, nick)| {
                let key = nick::key(nick);
                if self.take_nick(&key, &holder(node, *conn), ttl) {
                    let claims = self.claims.entry(node.clone()).or_default();
                    claims.insert(key, *conn);
                    Claimed::Granted
                } else {
                    Claimed::Taken
                }
            })
            .collect()
    }

    /// Gives a nick key back: forgets the node's claim if it is this
    /// conn's, even one that expired (else the next extending beat would
    /// take the nick again for a connection that gave it up), and deletes
    /// the key if the conn still holds it; whether it did.
    fn release(&mut self, node: &Token, conn: ConnId, key: &str) -> bool {
        if let Some(claims) = self.claims.get_mut(node) {
            if claims.get(key) == Some(&conn) {
                claims.remove(key);
            }
        }
        if self.holder(key) != Some(holder(node, conn).as_str()) {
            return false;
        }
        self.nicks.remove(key);
        true
    }

    fn beat(
        &mut self,
        node: &Token,
        epoch: u64,
        cursor: u64,
        extend: Option<Duration>,
    ) -> BeatReply {
        match self.meta {
            Some(meta) if meta.epoch == epoch && meta.seq >= cursor => {}
            _ => return BeatReply::Reset,
        }
        let Some(counter) = self.nodes.get_mut(node) else {
            return BeatReply::Reaped;
        };
        *counter += 1;
        let mut lost = Vec::new();
        if let Some(ttl) = extend {
            let claims = self.claims.get(node).cloned().unwrap_or_default();
            for (key, conn) in claims {
                if !self.take_nick(&key, &holder(node, conn), ttl) {
                    lost.push(conn);
                    self.claims.entry(node.clone()).or_default().remove(&key);
                }
            }
        }
        BeatReply::Alive {
            nodes: self.nodes(),
            lost,
        }
    }

    fn reap(&mut self, node: &Token, counter: Option<u64>, why: Gone) -> bool {
        let current = self.nodes.get(node).copied();
        if self.meta.is_none() || current.is_none() || counter.is_some_and(|c| current != Some(c)) {
            return false;
        }
        let mut nicks: Vec<String> = self
            .members
            .remove(node)
            .unwrap_or_default()
            .into_values()
            .collect();
        nicks.sort();
        for (key, conn) in self.claims.remove(node).unwrap_or_default() {
            if self.holder(&key) == Some(holder(node, conn).as_str()) {
                self.nicks.remove(&key);
            }
        }
        self.nodes.remove(node);
        self.origins.remove(node);
        self.reaped.insert(node.clone());
        let gone = Entry::NodeGone {
            node: node.clone(),
            why,
            nicks,
        };
        self.append(&gone, None);
        true
    }

    /// `XADD log MAXLEN history SEQ-0 ...` with the next seq.
    fn append(&mut self, entry: &Entry, origin: Option<&Origin>) -> u64 {
        let meta = self
            .meta
            .as_mut()
            .expect("entries are appended only while the room's meta exists");
        meta.seq += 1;
        let entry = RawEntry {
            seq: meta.seq,
            fields: stream_fields(entry, origin),
        };
        self.written.push(entry);
        meta.seq
    }

    fn nodes(&self) -> Vec<(Token, u64)> {
        self.nodes.iter().map(|(t, c)| (t.clone(), *c)).collect()
    }
}

/// A stream entry's fields as written: the entry packed in its one field.
fn stream_fields(entry: &Entry, origin: Option<&Origin>) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(b"e".to_vec(), entry.to_packed(origin).into_bytes())]
}

/// A claim's value: `TOKEN CONN`.
fn holder(node: &Token, conn: ConnId) -> String {
    format!("{node} {}", conn.0)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One step of a [`ScriptCase`].
#[derive(Debug, Clone)]
pub enum ScriptStep {
    /// Run the call; the reply must equal the one given.
    Call(Call, Reply),
    /// Let this much time pass on Redis' clock ([`Scripts::advance`]).
    Advance(Duration),
    /// Empty Redis (`FLUSHALL`).
    Flush,
}

/// A named sequence of calls with the replies the scripts must give.
#[derive(Debug, Clone)]
pub struct ScriptCase {
    /// What the case shows, as a test name would say it.
    pub name: &'static str,
    /// The log's `history` for this case.
    pub history: usize,
    /// The steps, from an empty Redis.
    pub steps: Vec<ScriptStep>,
}

/// Something that runs the scripts: [`SimRedis`], or the driver's Lua on a
/// real server.
pub trait Scripts {
    /// Runs one call and returns Redis' answer.
    fn run(&mut self, call: &Call) -> Reply;
    /// Lets `by` pass for every TTL (a real server may shorten each TTL by
    /// `by` instead of waiting it out).
    fn advance(&mut self, by: Duration);
    /// Empties Redis.
    fn flush(&mut self);
}

impl Scripts for SimRedis {
    fn run(&mut self, call: &Call) -> Reply {
        SimRedis::run(self, call)
    }

    fn advance(&mut self, by: Duration) {
        SimRedis::advance(self, by);
    }

    fn flush(&mut self) {
        SimRedis::flush(self);
    }
}

impl ScriptCase {
    /// Runs the case on a [`SimRedis`], panicking at the first reply that
    /// differs.
    pub fn run_simulated(&self) {
        self.run_on(&mut SimRedis::new(self.history));
    }

    /// Runs the case on `redis`, which must be empty and keep `history`
    /// entries, panicking at the first reply that differs (both compared
    /// [`normalized`]).
    pub fn run_on(&self, redis: &mut impl Scripts) {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                ScriptStep::Call(call, expected) => {
                    let reply = normalized(redis.run(call));
                    let expected = normalized(expected.clone());
                    assert_eq!(
                        reply, expected,
                        "{}: step {i}, {call:?}: got {reply:?}, want {expected:?}",
                        self.name
                    );
                }
                ScriptStep::Advance(by) => redis.advance(*by),
                ScriptStep::Flush => redis.flush(),
            }
        }
    }
}

/// `reply` with every list whose order the scripts leave open sorted:
/// nodes, roster, conflicts and lost claims, and the lines of the `a`
/// field of the entries scripts write (`x`: nicks, `y`: members), which
/// Lua takes from a hash.
pub fn normalized(reply: Reply) -> Reply {
    match reply {
        Reply::Hello(HelloReply::Room(mut room)) => {
            room.nodes.sort();
            if let Some(roster) = &mut room.roster {
                roster.sort();
            }
            room.conflicts.sort();
            Reply::Hello(HelloReply::Room(room))
        }
        Reply::Beat(BeatReply::Alive {
            mut nodes,
            mut lost,
        }) => {
            nodes.sort();
            lost.sort();
            Reply::Beat(BeatReply::Alive { nodes, lost })
        }
        Reply::Read(mut entries) => {
            for entry in &mut entries {
                let Ok(mut decoded) = Decoded::from_stream(&entry.fields) else {
                    continue;
                };
                match &mut decoded.entry {
                    Entry::NodeGone { nicks, .. } => nicks.sort(),
                    Entry::Sync { members, .. } => members.sort(),
                    _ => continue,
                }
                entry.fields = stream_fields(&decoded.entry, decoded.origin.as_ref());
            }
            Reply::Read(entries)
        }
        other => other,
    }
}

/// The TTL of claims in the cases. Long, so that on a real server the
/// milliseconds between two steps are nothing beside the cases' margins;
/// [`Scripts::advance`] moves the TTLs instead of waiting.
pub const CASE_TTL: Duration = Duration::from_secs(60);

/// Builders for the cases' calls.
mod build {
    use super::*;

    pub(super) fn token(name: &str) -> Token {
        Token::new(name, 0xA1).expect("case node names are valid")
    }

    pub(super) fn start(node: &Token, epoch: u64) -> Call {
        Call::Hello(Hello {
            node: node.clone(),
            known_epoch: None,
            cursor: 0,
            new_epoch: epoch,
            members: Vec::new(),
            ttl: CASE_TTL,
            want_roster: false,
        })
    }

    pub(super) fn again(
        node: &Token,
        known: u64,
        cursor: u64,
        new: u64,
        members: &[(u64, &str)],
    ) -> Call {
        Call::Hello(Hello {
            node: node.clone(),
            known_epoch: Some(known),
            cursor,
            new_epoch: new,
            members: members
                .iter()
                .map(|(c, n)| (ConnId(*c), n.to_string()))
                .collect(),
            ttl: CASE_TTL,
            want_roster: false,
        })
    }

    pub(super) fn claim(node: &Token, conn: u64, nick: &str) -> Call {
        Call::Claim {
            node: node.clone(),
            ttl: CASE_TTL,
            claims: vec![(ConnId(conn), nick.to_string())],
        }
    }

    pub(super) fn publish(node: &Token, entries: Vec<(u64, Entry)>) -> Call {
        Call::Publish {
            node: node.clone(),
            entries,
        }
    }

    pub(super) fn join(conn: u64, nick: &str) -> Entry {
        Entry::Join {
            conn: ConnId(conn),
            nick: nick.to_string(),
        }
    }

    pub(super) fn say(conn: u64, line: &str) -> Entry {
        Entry::Say {
            conn: ConnId(conn),
            line: line.to_string(),
        }
    }

    pub(super) fn beat(node: &Token, epoch: u64, cursor: u64, extend: bool) -> Call {
        Call::Beat {
            node: node.clone(),
            epoch,
            cursor,
            extend: extend.then_some(CASE_TTL),
        }
    }

    pub(super) fn release(node: &Token, conn: u64, nick: &str) -> Call {
        Call::Release {
            node: node.clone(),
            conn: ConnId(conn),
            nick: nick.to_string(),
        }
    }

    pub(super) fn reap(node: &Token, counter: Option<u64>, why: Gone) -> Call {
        Call::Reap {
            node: node.clone(),
            counter,
            why,
        }
    }

    pub(super) fn read(after: u64) -> Call {
        Call::Read { after, count: 100 }
    }

    /// The reply to a read of these entries, written by `node` (or by a
    /// script, `None`), from seq `first` on.
    pub(super) fn entries(first: u64, written: &[(Option<(&Token, u64)>, Entry)]) -> Reply {
        Reply::Read(
            written
                .iter()
                .zip(first..)
                .map(|((origin, entry), seq)| {
                    let origin = origin.map(|(node, n)| Origin {
                        node: node.clone(),
                        n,
                    });
                    RawEntry {
                        seq,
                        fields: stream_fields(entry, origin.as_ref()),
                    }
                })
                .collect(),
        )
    }

    pub(super) fn alive(nodes: &[(&Token, u64)]) -> Reply {
        Reply::Beat(BeatReply::Alive {
            nodes: nodes.iter().map(|(t, c)| ((*t).clone(), *c)).collect(),
            lost: Vec::new(),
        })
    }

    pub(super) fn room(epoch: u64, first: Option<u64>, top: u64, nodes: &[(&Token, u64)]) -> Room {
        Room {
            epoch,
            first,
            top,
            reset: false,
            nodes: nodes.iter().map(|(t, c)| ((*t).clone(), *c)).collect(),
            roster: None,
            conflicts: Vec::new(),
        }
    }
}

/// The cases every implementation of the scripts must pass: [`SimRedis`]
/// in `chat-core/tests/cluster.rs`, the Lua on a real `redis-server` in the
/// driver's tests.
pub fn script_cases() -> Vec<ScriptCase> {
    use ScriptStep::{Advance, Call as Do, Flush};
    use build::*;
    let (a, b) = (token("a"), token("b"));
    let granted = || Reply::Claimed(vec![Claimed::Granted]);
    let taken = || Reply::Claimed(vec![Claimed::Taken]);
    let started = |nodes: &[(&Token, u64)]| {
        Reply::Hello(HelloReply::Room(Room {
            roster: Some(Vec::new()),
            ..room(1, None, 0, nodes)
        }))
    };
    let two_nodes = vec![
        Do(start(&a, 1), started(&[(&a, 0)])),
        Do(start(&b, 1), started(&[(&a, 0), (&b, 0)])),
    ];
    vec![
        ScriptCase {
            name: "claims_grant_a_nick_key_once_cluster_wide",
            history: 100,
            steps: vec![
                Do(start(&a, 1), started(&[(&a, 0)])),
                Do(start(&b, 2), started(&[(&a, 0), (&b, 0)])),
                Do(claim(&a, 1, "alice"), granted()),
                // The same key: nicks compare as the core compares them.
                Do(claim(&b, 7, "ALICE"), taken()),
                // A retry by the holder is granted again.
                Do(claim(&a, 1, "Alice"), granted()),
                Do(claim(&a, 2, "alice"), taken()),
                Do(
                    claim(&token("c"), 1, "carol"),
                    Reply::Claimed(vec![Claimed::Reaped]),
                ),
            ],
        },
        ScriptCase {
            name: "claims_expire_after_their_ttl_unless_a_beat_extends_them",
            history: 100,
            steps: [
                two_nodes.clone(),
                vec![
                    Do(claim(&a, 1, "alice"), granted()),
                    Do(claim(&a, 2, "bob"), granted()),
                    Advance(CASE_TTL / 2),
                    Do(beat(&a, 1, 0, true), alive(&[(&a, 1), (&b, 0)])),
                    Do(release(&a, 2, "bob"), Reply::Released(true)),
                    Advance(CASE_TTL * 3 / 4),
                    // Extended at half its life: still held.
                    Do(claim(&b, 7, "alice"), taken()),
                    Advance(CASE_TTL / 2),
                    Do(claim(&b, 7, "alice"), granted()),
                    // The holder's extension finds it taken: the claim is lost.
                    Do(
                        beat(&a, 1, 0, true),
                        Reply::Beat(BeatReply::Alive {
                            nodes: vec![(a.clone(), 2), (b.clone(), 0)],
                            lost: vec![ConnId(1)],
                        }),
                    ),
                ],
            ]
            .concat(),
        },
        ScriptCase {
            name: "a_hello_after_a_split_makes_the_nodes_claims_what_it_holds",
            history: 100,
            steps: [
                two_nodes.clone(),
                vec![
                    Do(claim(&a, 1, "alice"), granted()),
                    Do(claim(&a, 2, "bob"), granted()),
                    Advance(CASE_TTL * 2),
                    // Expired during the split: another node takes it.
                    Do(claim(&b, 7, "bob"), granted()),
                    Do(claim(&a, 3, "dave"), granted()),
                    // Conn 3 left meanwhile; alice is taken again, bob is lost.
                    Do(
                        again(&a, 1, 0, 9, &[(1, "alice"), (2, "bob")]),
                        Reply::Hello(HelloReply::Room(Room {
                            conflicts: vec![ConnId(2)],
                            ..room(1, None, 0, &[(&a, 0), (&b, 0)])
                        })),
                    ),
                    Do(claim(&b, 8, "alice"), taken()),
                    Do(claim(&b, 9, "dave"), granted()),
                ],
            ]
            .concat(),
        },
        ScriptCase {
            name: "release_frees_a_claim_only_for_its_holder",
            history: 100,
            steps: [
                two_nodes.clone(),
                vec![
                    Do(claim(&a, 1, "alice"), granted()),
                    Do(release(&b, 1, "alice"), Reply::Released(false)),
                    Do(claim(&b, 7, "alice"), taken()),
                    Do(release(&a, 1, "ALICE"), Reply::Released(true)),
                    Do(claim(&b, 7, "alice"), granted()),
                ],
            ]
            .concat(),
        },
        ScriptCase {
            name: "publish_numbers_entries_in_order_and_writes_a_retry_once",
            history: 100,
            steps: vec![
                Do(start(&a, 1), started(&[(&a, 0)])),
                Do(claim(&a, 1, "alice"), granted()),
                Do(
                    publish(&a, vec![(1, join(1, "alice")), (2, say(1, "alice: hi"))]),
                    Reply::Published(vec![Published::Seq(1), Published::Seq(2)]),
                ),
                Do(
                    publish(
                        &a,
                        vec![(2, say(1, "alice: hi")), (3, say(1, "alice: again"))],
                    ),
                    Reply::Published(vec![Published::Dup, Published::Seq(3)]),
                ),
                Do(
                    read(1),
                    entries(
                        2,
                        &[
                            (Some((&a, 2)), say(1, "alice: hi")),
                            (Some((&a, 3)), say(1, "alice: again")),
                        ],
                    ),
                ),
                Do(
                    publish(&b, vec![(1, say(1, "bob: hi"))]),
                    Reply::Published(vec![Published::Reaped]),
                ),
            ],
        },
        ScriptCase {
            name: "the_log_keeps_the_last_history_entries",
            history: 2,
            steps: vec![
                Do(start(&a, 1), started(&[(&a, 0)])),
                Do(
                    publish(&a, (1..=4).map(|n| (n, say(1, "alice: hi"))).collect()),
                    Reply::Published((1..=4).map(Published::Seq).collect()),
                ),
                Do(
                    read(0),
                    entries(
                        3,
                        &[
                            (Some((&a, 3)), say(1, "alice: hi")),
                            (Some((&a, 4)), say(1, "alice: hi")),
                        ],
                    ),
                ),
                Do(
                    again(&a, 1, 1, 9, &[]),
                    Reply::Hello(HelloReply::Room(room(1, Some(3), 4, &[(&a, 0)]))),
                ),
            ],
        },
        ScriptCase {
            name: "leaves_and_renames_free_the_nick_given_up",
            history: 100,
            steps: [
                two_nodes.clone(),
                vec![
                    Do(claim(&a, 1, "alice"), granted()),
                    Do(claim(&a, 2, "bob"), granted()),
                    Do(claim(&a, 1, "alicia"), granted()),
                    Do(
                        publish(
                            &a,
                            vec![
                                (1, join(1, "alice")),
                                (2, join(2, "bob")),
                                (
                                    3,
                                    Entry::Rename {
                                        conn: ConnId(1),
                                        from: "alice".into(),
                                        to: "alicia".into(),
                                    },
                                ),
                                (
                                    4,
                                    Entry::Leave {
                                        conn: ConnId(2),
                                        nick: "bob".into(),
                                        reason: Some("idle".into()),
                                    },
                                ),
                            ],
                        ),
                        Reply::Published((1..=4).map(Published::Seq).collect()),
                    ),
                    Do(claim(&b, 7, "alice"), granted()),
                    Do(claim(&b, 8, "bob"), granted()),
                    Do(claim(&b, 9, "Alicia"), taken()),
                    // A rename to a variant of one's own nick keeps the claim.
                    Do(
                        publish(
                            &a,
                            vec![(
                                5,
                                Entry::Rename {
                                    conn: ConnId(1),
                                    from: "alicia".into(),
                                    to: "ALICIA".into(),
                                },
                            )],
                        ),
                        Reply::Published(vec![Published::Seq(5)]),
                    ),
                    Do(claim(&b, 9, "alicia"), taken()),
                ],
            ]
            .concat(),
        },
        ScriptCase {
            name: "a_claim_given_back_after_it_expired_is_not_taken_again_by_a_beat",
            history: 100,
            steps: [
                two_nodes.clone(),
                vec![
                    Do(claim(&a, 1, "alice"), granted()),
                    Do(claim(&a, 2, "bob"), granted()),
                    Do(
                        publish(&a, vec![(1, join(1, "alice"))]),
                        Reply::Published(vec![Published::Seq(1)]),
                    ),
                    // Cut off from Redis for longer than the TTL: both expire.
                    Advance(CASE_TTL * 2),
                    Do(
                        publish(
                            &a,
                            vec![(
                                2,
                                Entry::Leave {
                                    conn: ConnId(1),
                                    nick: "alice".into(),
                                    reason: None,
                                },
                            )],
                        ),
                        Reply::Published(vec![Published::Seq(2)]),
                    ),
                    Do(release(&a, 2, "bob"), Reply::Released(false)),
                    // Nothing is left to extend: both nicks stay free.
                    Do(beat(&a, 1, 2, true), alive(&[(&a, 1), (&b, 0)])),
                    Do(claim(&b, 7, "alice"), granted()),
                    Do(claim(&b, 8, "bob"), granted()),
                ],
            ]
            .concat(),
        },
        ScriptCase {
            name: "reap_removes_a_node_once_and_writes_its_users_leave",
            history: 100,
            steps: [
                two_nodes.clone(),
                vec![
                    Do(claim(&a, 1, "zed"), granted()),
                    Do(claim(&a, 2, "amy"), granted()),
                    Do(
                        publish(&a, vec![(1, join(1, "zed")), (2, join(2, "amy"))]),
                        Reply::Published(vec![Published::Seq(1), Published::Seq(2)]),
                    ),
                    Do(beat(&a, 1, 2, false), alive(&[(&a, 1), (&b, 0)])),
                    // Found dead at counter 0, but it beat since: not reaped.
                    Do(reap(&a, Some(0), Gone::Lost), Reply::Reaped(false)),
                    Do(reap(&a, Some(1), Gone::Lost), Reply::Reaped(true)),
                    // Every other node that found it dead is too late.
                    Do(reap(&a, Some(1), Gone::Lost), Reply::Reaped(false)),
                    Do(
                        read(2),
                        entries(
                            3,
                            &[(
                                None,
                                Entry::NodeGone {
                                    node: a.clone(),
                                    why: Gone::Lost,
                                    nicks: vec!["amy".into(), "zed".into()],
                                },
                            )],
                        ),
                    ),
                    Do(claim(&b, 7, "zed"), granted()),
                    Do(beat(&a, 1, 2, false), Reply::Beat(BeatReply::Reaped)),
                    Do(again(&a, 1, 2, 9, &[]), Reply::Hello(HelloReply::Reaped)),
                    // A node that shuts down reaps itself.
                    Do(reap(&b, None, Gone::Shutdown), Reply::Reaped(true)),
                    Do(
                        read(3),
                        entries(
                            4,
                            &[(
                                None,
                                Entry::NodeGone {
                                    node: b.clone(),
                                    why: Gone::Shutdown,
                                    nicks: Vec::new(),
                                },
                            )],
                        ),
                    ),
                ],
            ]
            .concat(),
        },
        ScriptCase {
            name: "a_reaped_node_never_registers_again",
            history: 100,
            steps: [
                two_nodes.clone(),
                vec![
                    Do(reap(&a, Some(0), Gone::Lost), Reply::Reaped(true)),
                    // However it says hello: as a node of another epoch...
                    Do(
                        again(&a, 7, 0, 9, &[(1, "alice")]),
                        Reply::Hello(HelloReply::Reaped),
                    ),
                    // ...or as one starting.
                    Do(start(&a, 1), Reply::Hello(HelloReply::Reaped)),
                    Do(claim(&b, 8, "alice"), granted()),
                ],
            ]
            .concat(),
        },
        ScriptCase {
            name: "a_flushed_redis_resets_every_node_and_hello_claims_its_members_again",
            history: 100,
            steps: vec![
                Do(start(&a, 1), started(&[(&a, 0)])),
                Do(claim(&a, 1, "alice"), granted()),
                Do(claim(&a, 2, "bob"), granted()),
                Do(
                    publish(&a, vec![(1, join(1, "alice")), (2, join(2, "bob"))]),
                    Reply::Published(vec![Published::Seq(1), Published::Seq(2)]),
                ),
                Flush,
                Do(beat(&a, 1, 2, false), Reply::Beat(BeatReply::Reset)),
                Do(
                    publish(&a, vec![(3, say(1, "alice: hi"))]),
                    Reply::Published(vec![Published::Reset]),
                ),
                Do(start(&b, 5), started(&[(&b, 0)]).with_epoch(5)),
                Do(claim(&b, 7, "bob"), granted()),
                Do(
                    again(&a, 1, 2, 6, &[(1, "alice"), (2, "bob")]),
                    Reply::Hello(HelloReply::Room(Room {
                        reset: true,
                        // b claimed bob but has not published its join.
                        roster: Some(vec![(a.clone(), ConnId(1), "alice".into())]),
                        conflicts: vec![ConnId(2)],
                        ..room(5, Some(1), 1, &[(&a, 0), (&b, 0)])
                    })),
                ),
                Do(
                    read(0),
                    entries(
                        1,
                        &[(
                            None,
                            Entry::Sync {
                                node: a.clone(),
                                members: vec![(ConnId(1), "alice".into())],
                            },
                        )],
                    ),
                ),
                // Same epoch, but behind the node's cursor: rolled back.
                Do(beat(&a, 5, 1, false), alive(&[(&a, 1), (&b, 0)])),
                Do(beat(&a, 5, 2, false), Reply::Beat(BeatReply::Reset)),
            ],
        },
    ]
}

impl Reply {
    /// This reply to a starting hello, with the room's epoch set to
    /// `epoch` (the cases' builder assumes epoch 1).
    fn with_epoch(self, epoch: u64) -> Reply {
        match self {
            Reply::Hello(HelloReply::Room(room)) => {
                Reply::Hello(HelloReply::Room(Room { epoch, ..room }))
            }
            other => other,
        }
    }
}
