//! The scripts on a real `redis-server`: every script case
//! (`testkit::script_cases`) through [`RedisRoom`], and Redis data that is
//! not what the scripts write read as an error.

use std::time::Duration;

use chat_core::ConnId;
use chat_core::cluster::{Call, Hello, Token};
use chat_core::testkit::{CASE_TTL, Scripts, script_cases};
use redis::{Connection, ErrorKind, RedisResult, Value};

use super::calls::{DEFAULT_PREFIX, RedisRoom};
use chat_conformance::RedisProcess;

/// The scripts run on a server through [`RedisRoom`].
struct Lua {
    con: Connection,
    room: RedisRoom,
}

impl Lua {
    /// Runs a command that is not one of the room's calls.
    fn command<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> T {
        cmd.query(&mut self.con)
            .unwrap_or_else(|error| panic!("a command failed: {error}"))
    }

    fn keys(&mut self, pattern: &str) -> Vec<String> {
        self.command(redis::cmd("KEYS").arg(pattern))
    }
}

impl Scripts for Lua {
    fn run(&mut self, call: &Call) -> chat_core::cluster::Reply {
        self.room
            .run(&mut self.con, call)
            .unwrap_or_else(|error| panic!("{call:?}: {error}"))
    }

    /// Moves every claim's TTL `by` closer to its end: claims are the only
    /// state that time changes.
    fn advance(&mut self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        let pattern = format!("{}*", glob_escaped(&self.room.key("nick:")));
        for key in self.keys(&pattern) {
            // -1: no TTL, -2: gone since; neither is a claim to move.
            let left: i64 = self.command(redis::cmd("PTTL").arg(&key));
            if left < 0 {
                continue;
            }
            match left.saturating_sub(by) {
                rest if rest > 0 => self.command::<()>(redis::cmd("PEXPIRE").arg(&key).arg(rest)),
                _ => self.command::<()>(redis::cmd("DEL").arg(&key)),
            }
        }
    }

    fn flush(&mut self) {
        self.command::<()>(&redis::cmd("FLUSHALL"));
    }
}

/// `text` matched literally by a KEYS pattern.
fn glob_escaped(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A connection to a fresh server, or `None` where there is no
/// `redis-server` (see [`RedisProcess::start`]).
fn lua(history: usize) -> Option<(RedisProcess, Lua)> {
    let server = RedisProcess::start()?;
    // Reads fail after 10 s rather than hang a test.
    let con = redis::Client::open(server.url())
        .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(5)))
        .and_then(|con| {
            con.set_read_timeout(Some(Duration::from_secs(10)))
                .map(|()| con)
        })
        .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", server.url()));
    let room = RedisRoom::new(DEFAULT_PREFIX, history);
    Some((server, Lua { con, room }))
}

#[test]
fn script_cases_hold_on_a_real_redis_server() {
    let Some((_server, mut lua)) = lua(1) else {
        return;
    };
    let cases = script_cases();
    assert!(cases.len() >= 8, "the table lost cases");
    for case in &cases {
        lua.flush();
        lua.room = RedisRoom::new(DEFAULT_PREFIX, case.history);
        case.run_on(&mut lua);
        // Every key is the room's: behind `{chat}:`, in one hash slot.
        let strays: Vec<String> = lua
            .keys("*")
            .into_iter()
            .filter(|key| !key.starts_with("{chat}:"))
            .collect();
        assert!(strays.is_empty(), "{}: keys {strays:?}", case.name);
    }
}

fn start(node: &Token) -> Call {
    Call::Hello(Hello {
        node: node.clone(),
        known_epoch: None,
        cursor: 0,
        new_epoch: 1,
        members: vec![(ConnId(1), "alice".into())],
        ttl: CASE_TTL,
        want_roster: false,
    })
}

fn is_type_error<T: std::fmt::Debug>(result: RedisResult<T>) -> bool {
    matches!(&result, Err(error) if error.kind() == ErrorKind::TypeError)
}

/// Redis is shared: keys that hold what no script writes make a call fail,
/// and never panic the node.
#[test]
fn foreign_data_in_redis_is_an_error() {
    let Some((_server, mut lua)) = lua(100) else {
        return;
    };
    let a = Token::new("a", 1).unwrap();
    let meta = lua.room.key("meta");
    lua.command::<()>(redis::cmd("HSET").arg(&meta).arg("epoch").arg("x"));
    assert!(is_type_error(lua.room.run(&mut lua.con, &start(&a))));

    lua.flush();
    lua.command::<()>(
        redis::cmd("HSET")
            .arg(lua.room.key("nodes"))
            .arg("no token")
            .arg(0),
    );
    assert!(is_type_error(lua.room.run(&mut lua.con, &start(&a))));

    lua.flush();
    let log = lua.room.key("log");
    lua.command::<()>(redis::cmd("XADD").arg(&log).arg("5-1").arg("k").arg("s"));
    let read = Call::Read {
        after: 0,
        count: 10,
    };
    assert!(is_type_error(lua.room.run(&mut lua.con, &read)));

    // A key of another type: Redis' own error, passed on.
    lua.flush();
    lua.command::<()>(redis::cmd("SET").arg(&meta).arg("1"));
    let error = lua.room.run(&mut lua.con, &start(&a));
    assert!(error.is_err(), "{error:?}");
    // Nothing of this broke the connection.
    assert_eq!(
        lua.command::<Value>(&redis::cmd("PING")),
        Value::SimpleString("PONG".into())
    );
}
