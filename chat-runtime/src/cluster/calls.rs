//! The cluster's calls on Redis: one Lua script per [`Call`] but
//! [`Call::Read`] (`scripts/*.lua`, each after `scripts/common.lua`), run
//! on a blocking connection, and their replies read back into [`Reply`]s.
//!
//! `chat_core::cluster::call` documents what each call does and the keys it
//! uses; `chat_core::testkit::SimRedis` is the same scripts in Rust, and the
//! tests run `testkit::script_cases` through this module on a real
//! `redis-server`. What the scripts cannot do is done here: nick keys are
//! computed with [`nick::key`] and passed in, entries are encoded with
//! [`Entry::to_fields`], and the lists that [`Reply`] gives sorted are
//! sorted here (Lua's string order is the server's locale's). Numbers,
//! epochs included, go to Redis as decimal strings and are stored as given.
//!
//! A reply that is not what the script returns is a [`RedisError`] of kind
//! [`ErrorKind::TypeError`], never a panic: Redis is shared, and its data
//! may be anything.

use std::time::Duration;

use chat_core::ConnId;
use chat_core::cluster::{
    BeatReply, Call, Claimed, Entry, Hello, HelloReply, Origin, Published, RawEntry, Reply, Room,
    Token,
};
use chat_core::nick;
use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Script, ScriptInvocation, Value};

/// The prefix of the room's keys when none is given (`--redis-prefix`).
pub(crate) const DEFAULT_PREFIX: &str = "chat";

/// A script: the shared helpers, then the script's own Lua.
macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(
            include_str!("scripts/common.lua"),
            include_str!(concat!("scripts/", $name, ".lua"))
        ))
    };
}

/// One room's keys on a Redis server and the scripts that change them:
/// runs a [`Call`] and returns its [`Reply`].
#[derive(Debug)]
pub(crate) struct RedisRoom {
    /// `{PREFIX}:`, the start of every key name; the braces are a hash tag,
    /// which puts every key of the room in one slot.
    keys: String,
    /// How many entries the log keeps.
    history: usize,
    hello: Script,
    publish: Script,
    claim: Script,
    release: Script,
    beat: Script,
    reap: Script,
}

impl RedisRoom {
    /// The room whose keys start with `{prefix}:` and whose log keeps the
    /// last `history` entries (at least one).
    pub(crate) fn new(prefix: &str, history: usize) -> RedisRoom {
        RedisRoom {
            keys: format!("{{{prefix}}}:"),
            history: history.max(1),
            hello: script!("hello"),
            publish: script!("publish"),
            claim: script!("claim"),
            release: script!("release"),
            beat: script!("beat"),
            reap: script!("reap"),
        }
    }

    /// The full name of the room's key `name` (`meta`, `nick:KEY`, ...).
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.keys)
    }

    /// Runs `call` on `con` (a script through EVALSHA, loaded again when
    /// Redis answers NOSCRIPT), and reads its reply.
    pub(crate) fn run(&self, con: &mut dyn ConnectionLike, call: &Call) -> RedisResult<Reply> {
        match call {
            Call::Hello(hello) => {
                let reply = self.invoke(&self.hello, con, &hello.node, |args| {
                    hello_args(args, hello);
                })?;
                hello_reply(reply).map(Reply::Hello)
            }
            Call::Publish { node, entries } => {
                let reply = self.invoke(&self.publish, con, node, |args| {
                    for (n, entry) in entries {
                        publish_args(args, node, *n, entry);
                    }
                })?;
                published(reply, entries.len()).map(Reply::Published)
            }
            Call::Claim { node, ttl, claims } => {
                let reply = self.invoke(&self.claim, con, node, |args| {
                    args.arg(millis(*ttl));
                    for (conn, nick) in claims {
                        args.arg(conn.0).arg(nick::key(nick));
                    }
                })?;
                claimed(reply, claims.len()).map(Reply::Claimed)
            }
            Call::Release { node, conn, nick } => {
                let reply = self.invoke(&self.release, con, node, |args| {
                    args.arg(conn.0).arg(nick::key(nick));
                })?;
                flag(reply, "release").map(Reply::Released)
            }
            Call::Beat {
                node,
                epoch,
                cursor,
                extend,
            } => {
                let reply = self.invoke(&self.beat, con, node, |args| {
                    let extend = extend.map_or(String::new(), |ttl| millis(ttl).to_string());
                    args.arg(epoch).arg(cursor).arg(extend);
                })?;
                beat_reply(reply).map(Reply::Beat)
            }
            Call::Reap { node, counter, why } => {
                let reply = self.invoke(&self.reap, con, node, |args| {
                    args.arg(counter.map_or(String::new(), |c| c.to_string()));
                    let gone = Entry::NodeGone {
                        node: node.clone(),
                        why: *why,
                        nicks: Vec::new(),
                    };
                    push_fields(args, &gone.to_fields(None));
                })?;
                flag(reply, "reap").map(Reply::Reaped)
            }
            Call::Read { after, count } => self.read(con, *after, *count, None).map(Reply::Read),
        }
    }

    /// Runs `script` with the arguments every script takes (common.lua:
    /// the meta key, the key prefix, `history`, the node's token), then
    /// those `args` adds.
    fn invoke(
        &self,
        script: &Script,
        con: &mut dyn ConnectionLike,
        node: &Token,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> RedisResult<Value> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.key("meta"))
            .arg(&self.keys)
            .arg(self.history)
            .arg(node.as_str());
        args(&mut invocation);
        invocation.invoke(con)
    }

    /// Up to `count` entries of the log after seq `after`; with `wait`,
    /// waiting up to that long for one (`XREAD BLOCK`).
    pub(crate) fn read(
        &self,
        con: &mut dyn ConnectionLike,
        after: u64,
        count: usize,
        wait: Option<Duration>,
    ) -> RedisResult<Vec<RawEntry>> {
        // XREAD takes COUNT 0 as no limit.
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut xread = redis::cmd("XREAD");
        xread.arg("COUNT").arg(count);
        if let Some(wait) = wait {
            // BLOCK 0 waits for ever: at least a millisecond.
            xread.arg("BLOCK").arg(millis(wait).max(1));
        }
        let reply: Value = xread
            .arg("STREAMS")
            .arg(self.key("log"))
            .arg(format!("{after}-0"))
            .query(con)?;
        read_reply(reply)
    }
}

/// Hello's arguments (hello.lua): the epoch known, the cursor, the new
/// epoch, the TTL, the roster flag, the `y` entry's fields, the members.
fn hello_args(args: &mut ScriptInvocation<'_>, hello: &Hello) {
    let known = hello.known_epoch.map_or(String::new(), |e| e.to_string());
    args.arg(known)
        .arg(hello.cursor)
        .arg(hello.new_epoch)
        .arg(millis(hello.ttl))
        .arg(if hello.want_roster { "1" } else { "0" });
    let sync = Entry::Sync {
        node: hello.node.clone(),
        members: Vec::new(),
    };
    push_fields(args, &sync.to_fields(None));
    for (conn, nick) in &hello.members {
        args.arg(conn.0).arg(nick).arg(nick::key(nick));
    }
}

/// One entry's arguments (publish.lua): its `n`, the change to the node's
/// members, the nick key it gives up, its fields.
fn publish_args(args: &mut ScriptInvocation<'_>, node: &Token, n: u64, entry: &Entry) {
    let (member, conn, nick) = match entry.member_change() {
        Some((conn, Some(nick))) => ("set", conn.0, nick),
        Some((conn, None)) => ("del", conn.0, ""),
        None => ("", 0, ""),
    };
    let given_up = entry.given_up_key();
    args.arg(n)
        .arg(member)
        .arg(conn)
        .arg(nick)
        .arg(if given_up.is_some() { "1" } else { "0" })
        .arg(given_up.unwrap_or_default());
    let origin = Origin {
        node: node.clone(),
        n,
    };
    push_fields(args, &[("e", entry.to_packed(Some(&origin)))]);
}

/// An entry's fields as common.lua's `append` takes them: their number,
/// then names and values.
fn push_fields(args: &mut ScriptInvocation<'_>, fields: &[(&'static str, String)]) {
    args.arg(fields.len());
    for (name, value) in fields {
        args.arg(*name).arg(value);
    }
}

/// A TTL for `PX`, which refuses 0: at least a millisecond.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The error for a reply that is not what the scripts return.
fn malformed(what: impl Into<String>) -> RedisError {
    RedisError::from((
        ErrorKind::TypeError,
        "unexpected reply to a cluster call",
        what.into(),
    ))
}

/// The items of an array reply, taken in order.
struct Items {
    items: std::vec::IntoIter<Value>,
    what: &'static str,
}

impl Items {
    fn of(value: Value, what: &'static str) -> RedisResult<Items> {
        Ok(Items {
            items: array(value, what)?.into_iter(),
            what,
        })
    }

    fn next(&mut self) -> RedisResult<Value> {
        self.items
            .next()
            .ok_or_else(|| malformed(format!("{}: too few items", self.what)))
    }

    /// Checks that every item was taken.
    fn end(mut self) -> RedisResult<()> {
        match self.items.next() {
            None => Ok(()),
            Some(_) => Err(malformed(format!("{}: too many items", self.what))),
        }
    }
}

fn array(value: Value, what: &str) -> RedisResult<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(malformed(format!("{what}: not an array: {other:?}"))),
    }
}

fn bytes(value: Value, what: &str) -> RedisResult<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(text) => Ok(text.into_bytes()),
        other => Err(malformed(format!("{what}: not a string: {other:?}"))),
    }
}

fn text(value: Value, what: &str) -> RedisResult<String> {
    String::from_utf8(bytes(value, what)?).map_err(|_| malformed(format!("{what}: not UTF-8")))
}

/// A number, as an integer reply or a decimal string (hash values).
fn number(value: Value, what: &str) -> RedisResult<u64> {
    let n = match value {
        Value::Int(n) => u64::try_from(n).ok(),
        other => text(other, what)?.parse().ok(),
    };
    n.ok_or_else(|| malformed(format!("{what}: not a u64")))
}

/// An integer reply of 0 or 1.
fn flag(value: Value, what: &str) -> RedisResult<bool> {
    match value {
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        other => Err(malformed(format!("{what}: not 0 or 1: {other:?}"))),
    }
}

fn token(value: Value, what: &str) -> RedisResult<Token> {
    let text = text(value, what)?;
    Token::parse(&text).ok_or_else(|| malformed(format!("{what}: not a node token: {text:?}")))
}

fn conns(value: Value, what: &str) -> RedisResult<Vec<ConnId>> {
    let mut conns = array(value, what)?
        .into_iter()
        .map(|conn| number(conn, what).map(ConnId))
        .collect::<RedisResult<Vec<_>>>()?;
    conns.sort();
    Ok(conns)
}

/// The seq of a stream id, which the scripts write `SEQ-0`.
fn seq_of_id(value: Value) -> RedisResult<u64> {
    let id = text(value, "entry id")?;
    id.strip_suffix("-0")
        .and_then(|seq| seq.parse().ok())
        .ok_or_else(|| malformed(format!("entry id {id:?} is not SEQ-0")))
}

/// A flat array of names and values (a hash, a stream entry's fields),
/// each pair read by `read`.
fn pairs<T>(
    value: Value,
    what: &str,
    mut read: impl FnMut(Value, Value) -> RedisResult<T>,
) -> RedisResult<Vec<T>> {
    let mut items = array(value, what)?.into_iter();
    let mut pairs = Vec::new();
    while let Some(name) = items.next() {
        let value = items
            .next()
            .ok_or_else(|| malformed(format!("{what}: a name without a value")))?;
        pairs.push(read(name, value)?);
    }
    Ok(pairs)
}

/// `HGETALL nodes`: every node's beat counter, by token.
fn nodes(value: Value) -> RedisResult<Vec<(Token, u64)>> {
    let mut nodes = pairs(value, "nodes", |node, counter| {
        Ok((token(node, "nodes")?, number(counter, "nodes")?))
    })?;
    nodes.sort();
    Ok(nodes)
}

/// Every member of the room, by node and conn: `TOKEN, CONN, NICK` each.
fn roster(value: Value) -> RedisResult<Vec<(Token, ConnId, String)>> {
    let items = array(value, "roster")?;
    if items.len() % 3 != 0 {
        return Err(malformed("roster: not TOKEN, CONN, NICK triples"));
    }
    let mut items = items.into_iter();
    let mut roster = Vec::new();
    while let (Some(node), Some(conn), Some(nick)) = (items.next(), items.next(), items.next()) {
        roster.push((
            token(node, "roster")?,
            ConnId(number(conn, "roster")?),
            text(nick, "roster")?,
        ));
    }
    roster.sort();
    Ok(roster)
}

fn hello_reply(value: Value) -> RedisResult<HelloReply> {
    let mut items = Items::of(value, "hello")?;
    let reply = match text(items.next()?, "hello")?.as_str() {
        "reaped" => HelloReply::Reaped,
        "room" => HelloReply::Room(Room {
            epoch: number(items.next()?, "hello's epoch")?,
            first: match items.next()? {
                Value::Nil => None,
                id => Some(seq_of_id(id)?),
            },
            top: number(items.next()?, "hello's top")?,
            reset: flag(items.next()?, "hello's reset")?,
            nodes: nodes(items.next()?)?,
            roster: match items.next()? {
                Value::Nil => None,
                members => Some(roster(members)?),
            },
            conflicts: conns(items.next()?, "hello's conflicts")?,
        }),
        other => return Err(malformed(format!("hello: unknown answer {other:?}"))),
    };
    items.end()?;
    Ok(reply)
}

/// Publish's reply for `count` entries.
fn published(value: Value, count: usize) -> RedisResult<Vec<Published>> {
    let each = match value {
        Value::Array(items) => items,
        refusal => {
            let refusal = match text(refusal, "publish")?.as_str() {
                "reset" => Published::Reset,
                "reaped" => Published::Reaped,
                other => return Err(malformed(format!("publish: unknown answer {other:?}"))),
            };
            return Ok(vec![refusal; count]);
        }
    };
    if each.len() != count {
        return Err(malformed("publish: not one answer per entry"));
    }
    each.into_iter()
        .map(|item| match item {
            Value::Int(_) => number(item, "publish's seq").map(Published::Seq),
            Value::BulkString(word) if word == b"dup" => Ok(Published::Dup),
            other => Err(malformed(format!("publish: not a seq nor dup: {other:?}"))),
        })
        .collect()
}

/// Claim's reply for `count` claims.
fn claimed(value: Value, count: usize) -> RedisResult<Vec<Claimed>> {
    let each = match value {
        Value::Array(items) => items,
        Value::BulkString(word) if word == b"reaped" => return Ok(vec![Claimed::Reaped; count]),
        other => return Err(malformed(format!("claim: unknown answer {other:?}"))),
    };
    if each.len() != count {
        return Err(malformed("claim: not one answer per claim"));
    }
    each.into_iter()
        .map(|item| {
            let granted = flag(item, "claim")?;
            Ok(if granted {
                Claimed::Granted
            } else {
                Claimed::Taken
            })
        })
        .collect()
}

fn beat_reply(value: Value) -> RedisResult<BeatReply> {
    let mut items = match value {
        Value::Array(_) => Items::of(value, "beat")?,
        refusal => {
            return match text(refusal, "beat")?.as_str() {
                "reset" => Ok(BeatReply::Reset),
                "reaped" => Ok(BeatReply::Reaped),
                other => Err(malformed(format!("beat: unknown answer {other:?}"))),
            };
        }
    };
    let nodes = nodes(items.next()?)?;
    let lost = conns(items.next()?, "beat's lost claims")?;
    items.end()?;
    Ok(BeatReply::Alive { nodes, lost })
}

/// `XREAD`'s reply on the log: nil when nothing is there, else one stream
/// with its entries, each an id and its fields as names and values.
fn read_reply(value: Value) -> RedisResult<Vec<RawEntry>> {
    let streams = match value {
        Value::Nil => return Ok(Vec::new()),
        streams => array(streams, "read")?,
    };
    let [stream] = <[Value; 1]>::try_from(streams)
        .map_err(|_| malformed("read: not one stream in the reply"))?;
    let mut stream = Items::of(stream, "read's stream")?;
    let _name = stream.next()?;
    let entries = array(stream.next()?, "read's entries")?;
    stream.end()?;
    entries
        .into_iter()
        .map(|entry| {
            let mut entry = Items::of(entry, "read's entry")?;
            let seq = seq_of_id(entry.next()?)?;
            let fields = pairs(entry.next()?, "read's fields", |name, value| {
                Ok((bytes(name, "field")?, bytes(value, "field")?))
            })?;
            entry.end()?;
            Ok(RawEntry { seq, fields })
        })
        .collect()
}

#[cfg(test)]
mod replies {
    //! Replies that are not what the scripts return are errors: these
    //! need no server.

    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn is_type_error<T: std::fmt::Debug>(result: RedisResult<T>) -> bool {
        matches!(result, Err(error) if error.kind() == ErrorKind::TypeError)
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(is_type_error(hello_reply(Value::Okay)));
        assert!(is_type_error(hello_reply(Value::Array(vec![bulk("room")]))));
        assert!(is_type_error(hello_reply(Value::Array(vec![
            bulk("room"),
            bulk("not a number"),
        ]))));
        assert!(is_type_error(published(Value::Array(Vec::new()), 1)));
        assert!(is_type_error(published(
            Value::Array(vec![Value::Int(-1)]),
            1
        )));
        assert!(is_type_error(published(bulk("later"), 1)));
        assert!(is_type_error(claimed(Value::Array(vec![Value::Int(2)]), 1)));
        assert!(is_type_error(flag(Value::Nil, "release")));
        assert!(is_type_error(beat_reply(Value::Array(vec![
            Value::Array(vec![bulk("a/1")]),
            Value::Array(Vec::new()),
        ]))));
        assert!(is_type_error(beat_reply(Value::Array(vec![
            Value::Array(vec![bulk("no token"), bulk("1")]),
            Value::Array(Vec::new()),
        ]))));
        assert!(is_type_error(read_reply(Value::Array(vec![Value::Array(
            vec![
                bulk("{chat}:log"),
                Value::Array(vec![Value::Array(vec![
                    bulk("3-1"),
                    Value::Array(Vec::new())
                ])]),
            ]
        )]))));
        assert!(is_type_error(roster(Value::Array(vec![bulk("a/1")]))));
    }

    #[test]
    fn replies_are_read_and_sorted() {
        let nodes = Value::Array(vec![bulk("b/1"), bulk("3"), bulk("a/1"), Value::Int(0)]);
        let beat = Value::Array(vec![nodes, Value::Array(vec![bulk("9"), bulk("2")])]);
        let token = |t: &str| Token::parse(t).unwrap();
        assert_eq!(
            beat_reply(beat).unwrap(),
            BeatReply::Alive {
                nodes: vec![(token("a/1"), 0), (token("b/1"), 3)],
                lost: vec![ConnId(2), ConnId(9)],
            }
        );
        assert_eq!(read_reply(Value::Nil).unwrap(), Vec::new());
        assert_eq!(
            published(bulk("reaped"), 2).unwrap(),
            vec![Published::Reaped; 2]
        );
    }
}
