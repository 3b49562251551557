//! Rule tests for `docs/protocol.md`, "Session events": one deterministic
//! test (or a few) per rule, each named `session_*` and citing its rule.
//! Also here: connection ids and what happens to input for closed or unknown
//! ids, and determinism (the same seed and inputs give the same outputs,
//! byte for byte), which every session relies on.
//!
//! The tests drive one `chat_core::Server` through
//! `chat_core::testkit::Driver`, the simulated driver that follows the run
//! loop of the crate docs on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};

use chat_core::testkit::rules::{line_config, welcome_nick};
use chat_core::testkit::{Driver, Seen};
use chat_core::{Config, ConnId, Event, Reason};

/// Session events: a newcomer's first line is one welcome line naming its
/// nick and the users online, itself included; every other client gets
/// `* NICK joined`, the newcomer nothing else.
#[test]
fn session_welcome_and_joined() {
    let mut s = Driver::plain();
    let a = s.connect();
    let lines = s.lines(a);
    let an = welcome_nick(&lines[0]);
    // "1 user" for one, as /who has it.
    assert_eq!(
        lines,
        [format!(
            "* welcome, you are {an}; 1 user online; type /help for commands"
        )]
    );
    let mut others = vec![a];
    for n in 2..6 {
        let conn = s.connect();
        let lines = s.lines(conn);
        let nick = welcome_nick(&lines[0]);
        assert_eq!(
            lines,
            [format!(
                "* welcome, you are {nick}; {n} users online; type /help for commands"
            )]
        );
        for &other in &others {
            assert_eq!(s.lines(other), [format!("* {nick} joined")]);
        }
        others.push(conn);
    }
    // Clients that left are not counted.
    s.send(a, "/quit\n");
    let e = s.connect();
    assert!(s.lines(e)[0].contains("; 5 users online;"));
}

/// Session events: a client that closes its side (EOF) leaves without a
/// reason: the others get `* NICK left`; it is closed with a flush.
#[test]
fn session_left_on_eof() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.eof(a);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.lines(c), [format!("* {an} left")]);
    assert_eq!(s.lines(a), Vec::<String>::new());
    assert_eq!(s.closes(), [(a, Reason::Eof, true)]);
    assert_eq!(
        s.events(),
        [Event::Left {
            conn: a,
            nick: an,
            reason: Reason::Eof,
            quiet: false,
        }]
    );
}

/// Session events: a client whose connection fails (reported with
/// `handle_closed`) leaves without a reason; no Close is asked for.
#[test]
fn session_left_on_closed() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.close(a);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.lines(c), [format!("* {an} left")]);
    assert_eq!(s.closes(), []);
    assert_eq!(
        s.events(),
        [Event::Left {
            conn: a,
            nick: an,
            reason: Reason::Closed,
            quiet: false,
        }]
    );
    // Reported closed once more: nothing more happens.
    s.close(a);
    s.assert_quiet(&[a, b, c]);
}

/// Session events: the leave notices say why only for /quit with a reason
/// and `too slow`; a closed Close is reported once and announced once.
#[test]
fn session_left_once_per_client() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    s.send(a, "/quit\n");
    s.eof(a);
    s.close(a);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.closes().len(), 1);
}

/// Session events / Limits and policies: on shutdown every client gets
/// `* server shutting down` and a flushing Close; nobody is told of anyone
/// else leaving; later connections get the same line and are closed.
#[test]
fn session_shutdown() {
    let mut s = Driver::plain();
    let [(a, _), (b, _), (c, _)] = s.trio();
    s.shutdown();
    for conn in [a, b, c] {
        assert_eq!(s.lines(conn), ["* server shutting down"]);
    }
    let mut closes = s.closes();
    closes.sort_by_key(|c| c.0);
    assert_eq!(
        closes,
        [
            (a, Reason::Shutdown, true),
            (b, Reason::Shutdown, true),
            (c, Reason::Shutdown, true)
        ]
    );
    // Logged as leaving, but nobody was told.
    assert_eq!(s.events().len(), 3);
    // Closing them tells nobody anything either.
    s.close(a);
    s.eof(b);
    s.send(c, "anyone?\n");
    s.assert_quiet(&[a, b, c]);
    // A connection arriving now gets the same line and is closed.
    let d = s.connect();
    assert_eq!(s.lines(d), ["* server shutting down"]);
    assert_eq!(s.closes(), [(d, Reason::Shutdown, true)]);
    assert!(matches!(
        &s.events()[..],
        [Event::Rejected { conn, reason: Reason::Shutdown, .. }] if *conn == d
    ));
    s.send(d, "hi\n");
    s.assert_quiet(&[a, b, c, d]);
    // A second shutdown changes nothing.
    s.shutdown();
    s.assert_quiet(&[a, b, c, d]);
}

/// Session events: events never hold chat text: a chat line, `/me`, `/msg`
/// and `//` log nothing at all.
#[test]
fn session_events_never_hold_chat_text() {
    let mut s = Driver::plain();
    let (a, _, b, bn) = s.pair();
    for line in [
        "secret-chat\n".to_owned(),
        "/me secret-action\n".to_owned(),
        format!("/msg {bn} secret-private\n"),
        "//secret-slash\n".to_owned(),
    ] {
        s.send(a, line);
        assert_eq!(s.events(), [], "an event for a chat line");
    }
    s.send(a, "/nick renamed\n");
    s.eof(a);
    for seen in s.trace() {
        if let Seen::Event(event) = seen {
            assert!(!format!("{event:?}").contains("secret"), "{event:?}");
        }
    }
    s.lines(b);
}

/// Session events: a TLS client is a newcomer once its handshake is over
/// (`handle_ready` after `handle_accept`): nobody hears of it before, it
/// sees no line said before, and its welcome counts it.
#[test]
fn session_tls_client_joins_when_its_handshake_ends() {
    let mut s = Driver::plain();
    let a = s.connect();
    s.lines(a);
    s.events();
    let b = s.accept();
    s.assert_quiet(&[a, b]);
    assert_eq!(s.events(), []);
    assert_eq!(s.server().nick(b), None);
    s.send(a, "said before\n");
    s.ready(b);
    let lines = s.lines(b);
    let bn = welcome_nick(&lines[0]);
    assert_eq!(
        lines,
        [format!(
            "* welcome, you are {bn}; 2 users online; type /help for commands"
        )]
    );
    assert_eq!(s.lines(a), [format!("* {bn} joined")]);
    assert!(matches!(&s.events()[..], [Event::Joined { conn, .. }] if *conn == b));
    // Only once, and only for a connection taken with handle_accept.
    s.ready(b);
    s.ready(a);
    s.assert_quiet(&[a, b]);
    s.send(b, "hello\n");
    assert_eq!(s.lines(a), [format!("{bn}: hello")]);
}

/// Session events: a TLS client that never finishes its handshake (it
/// closes, its connection fails, the server shuts down) is never announced
/// or logged as joining; closing its side is closed at once.
#[test]
fn session_tls_client_without_a_handshake_is_never_announced() {
    let mut s = Driver::plain();
    let a = s.connect();
    s.lines(a);
    s.events();
    let b = s.accept();
    s.eof(b);
    assert_eq!(s.closes(), [(b, Reason::Eof, true)]);
    s.close(b);
    let c = s.accept();
    s.close(c);
    s.assert_quiet(&[a, b, c]);
    assert_eq!(s.events(), []);
    s.ready(b);
    s.ready(c);
    s.assert_quiet(&[a, b, c]);
    assert_eq!(s.server().admitted(), 1, "their slots are free");
    let d = s.accept();
    s.shutdown();
    assert_eq!(s.lines(d), ["* server shutting down"]);
    assert!(s.closes().contains(&(d, Reason::Shutdown, true)));
    assert!(!s.events().iter().any(|e| matches!(e, Event::Joined { .. })));
}

/// Session events and max clients: a TLS client counts against
/// `max_clients` from its connect, in its handshake too; one over it is
/// refused at once, and its slot frees when it is closed.
#[test]
fn session_tls_client_counts_against_max_clients_from_its_connect() {
    let config = Config {
        max_clients: 2,
        ..Config::default()
    };
    let mut s = Driver::untimed(config, 1);
    let a = s.connect();
    let b = s.accept();
    let c = s.accept();
    assert_eq!(s.lines(c), ["* error: server full"]);
    assert_eq!(s.closes(), [(c, Reason::ServerFull, true)]);
    s.ready(c);
    assert_eq!(s.server().nick(c), None, "refused, not welcomed later");
    let d = s.connect();
    assert_eq!(s.lines(d), ["* error: server full"]);
    s.closes();
    s.close(b);
    let e = s.connect();
    assert!(s.lines(e)[0].starts_with("* welcome, you are"));
    s.lines(a);
}

/// Connection ids increase and are never reused, so late input for a
/// closed id never reaches a newer connection.
#[test]
fn session_ids_increase_never_reused() {
    let config = Config {
        max_clients: 1,
        ..Config::default()
    };
    let mut s = Driver::untimed(config, 1);
    let mut last: Option<ConnId> = None;
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let conn = s.connect();
        if let Some(prev) = last {
            assert!(conn > prev);
        }
        assert!(seen.insert(conn));
        s.close(conn);
        last = Some(conn);
        // Late input for the closed one.
        s.send(conn, "late\n");
        s.eof(conn);
    }
    let (a, _) = s.join(&[]);
    s.events();
    for old in seen {
        s.send(old, "/quit\n");
        s.close(old);
    }
    s.assert_quiet(&[a]);
    assert!(s.server().nick(a).is_some());
}

/// Input for an unknown or closed id is ignored: no panic, no output.
#[test]
fn session_input_for_unknown_or_closed_id_ignored() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    let unknown = ConnId(9999);
    s.send(unknown, "hi\n/quit\n");
    s.eof(unknown);
    s.close(unknown);
    let now = s.instant();
    s.server_mut().handle_written(now, unknown, 100);
    let mut out = Vec::new();
    assert_eq!(s.server_mut().poll_transmit(unknown, &mut out), 0);
    assert!(out.is_empty());
    s.assert_quiet(&[a, b]);
    // Closing (Close asked for, not yet closed), then closed.
    s.send(a, "/quit\n");
    s.lines(a);
    s.lines(b);
    s.closes();
    s.events();
    s.send(a, "after quit\n/who\n");
    s.eof(a);
    s.assert_quiet(&[a, b]);
    s.close(a);
    s.events();
    s.send(a, "after close\n");
    s.eof(a);
    s.close(a);
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server().connections().collect::<Vec<_>>(), [b]);
}

/// Determinism: the same seed and the same inputs give the same outputs,
/// byte for byte (nicks included).
#[test]
fn session_determinism_same_seed_same_outputs() {
    let run = |seed| {
        let mut s = Driver::untimed(line_config(32), seed);
        let [(a, _), (b, bn), (c, _)] = s.trio();
        s.stall(c, true);
        s.send(a, "hello\r\n/who\n/nick Zed\n");
        s.send(b, format!("/msg zed hi\n/me x\n{}\n", "y".repeat(40)));
        for i in 0..40 {
            s.send(a, format!("line {i}\n"));
        }
        s.eof(b);
        s.connect();
        s.send(a, format!("/msg {bn} gone?\n"));
        s.shutdown();
        s.connect();
        s.trace().to_vec()
    };
    let first = run(77);
    assert!(first.len() > 50);
    assert_eq!(first, run(77));
    assert_ne!(first, run(78));
    // Everything a connection received, per connection.
    let per_conn = |t: &[Seen]| {
        let mut m: BTreeMap<ConnId, Vec<u8>> = BTreeMap::new();
        for x in t {
            if let Seen::Bytes(c, b) = x {
                m.entry(*c).or_default().extend_from_slice(b);
            }
        }
        m
    };
    assert_eq!(per_conn(&first), per_conn(&run(77)));
}
