//! Rule tests for `docs/protocol.md`, "Nicknames": one deterministic test
//! (or a few) per rule, each named `nicknames_*` and citing its rule.
//!
//! The tests drive one `chat_core::Server` through
//! `chat_core::testkit::Driver`, the simulated driver that follows the run
//! loop of the crate docs on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use chat_core::testkit::Driver;
use chat_core::testkit::rules::welcome_nick;
use chat_core::{Config, Event};

/// Nicknames: a generated nick is 4 characters from [A-Za-z0-9], the same
/// in the welcome line, the Joined event and `Server::nick`; all differ.
#[test]
fn nicknames_generated_four_alphanumerics_unique() {
    let mut s = Driver::untimed(Config::default(), 11);
    let mut keys = HashSet::new();
    let mut conns = Vec::new();
    for _ in 0..300 {
        let conn = s.connect();
        let nick = welcome_nick(&s.lines(conn)[0]);
        assert_eq!(nick.len(), 4, "{nick:?}");
        assert!(nick.bytes().all(|b| b.is_ascii_alphanumeric()), "{nick:?}");
        assert_eq!(s.server().nick(conn), Some(nick.as_str()));
        let joined: Vec<Event> = s
            .events()
            .into_iter()
            .filter(|e| matches!(e, Event::Joined { conn: c, .. } if *c == conn))
            .collect();
        assert!(
            matches!(&joined[..], [Event::Joined { nick: n, .. }] if *n == nick),
            "{joined:?}"
        );
        assert!(keys.insert(nick.to_lowercase()), "{nick} given twice");
        conns.push(conn);
    }
    // Letters of both cases and digits all occur.
    let all: String = keys.iter().cloned().collect();
    assert!(all.bytes().any(|b| b.is_ascii_digit()));
}

/// Nicknames: generated nicks are unique among connected clients compared
/// case-insensitively: when the nick the seed draws next is held (as a case
/// variant) by someone, the newcomer gets another one.
#[test]
fn nicknames_generated_avoid_taken_case_variant() {
    // The nicks seed 5 draws, one connection at a time.
    let mut probe = Driver::untimed(Config::default(), 5);
    let mut drawn = Vec::new();
    for _ in 0..3 {
        let conn = probe.connect();
        drawn.push(welcome_nick(&probe.lines(conn)[0]));
        probe.close(conn);
    }
    let variant = if drawn[1].to_uppercase() != drawn[1] {
        drawn[1].to_uppercase()
    } else {
        drawn[1].to_lowercase()
    };
    assert_ne!(variant, drawn[1], "seed 5 draws a nick with a letter");

    let mut s = Driver::untimed(Config::default(), 5);
    let (a, an) = s.join(&[]);
    assert_eq!(an, drawn[0], "same seed, same nicks");
    s.rename(a, &variant, &[]);
    let (_, bn) = s.join(&[a]);
    assert_ne!(
        bn.to_lowercase(),
        variant.to_lowercase(),
        "case-insensitive clash"
    );
    assert_eq!(bn.len(), 4);
    assert!(bn.bytes().all(|b| b.is_ascii_alphanumeric()));
}

/// Nicknames: the randomness comes from the seed: the same seed gives the
/// same nicks, another seed other nicks.
#[test]
fn nicknames_seeded() {
    let nicks = |seed| {
        let mut s = Driver::untimed(Config::default(), seed);
        (0..5)
            .map(|_| {
                let conn = s.connect();
                welcome_nick(&s.lines(conn)[0])
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(nicks(42), nicks(42));
    assert_ne!(nicks(42), nicks(43));
}

/// Nicknames: a valid nick is 1 to 32 Unicode scalar values, each
/// alphanumeric, `_` or `-` (non-ASCII letters included, counted as
/// characters, not bytes).
#[test]
fn nicknames_valid() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    let valid = [
        "x".to_owned(),
        "Zo\u{eb}_-9".to_owned(),
        "\u{65e5}\u{672c}\u{8a9e}".to_owned(),
        "-_-".to_owned(),
        "x".repeat(32),
        "\u{e9}".repeat(32),
        "\u{1d49c}".repeat(32),
    ];
    let mut old = s.server().nick(a).unwrap().to_owned();
    for nick in valid {
        s.send(a, format!("/nick {nick}\n"));
        assert_eq!(s.lines(a), [format!("* you are now known as {nick}")]);
        assert_eq!(s.lines(b), [format!("* {old} is now known as {nick}")]);
        assert_eq!(
            s.events(),
            [Event::Renamed {
                conn: a,
                from: old.clone(),
                to: nick.clone()
            }]
        );
        old = nick;
    }
}

/// Nicknames: anything else is refused with the invalid-nick error, and the
/// nick does not change.
#[test]
fn nicknames_invalid() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    let invalid = [
        "x".repeat(33),
        "\u{e9}".repeat(33),
        "a.b".to_owned(),
        "*".to_owned(),
        "a/b".to_owned(),
        "bob!".to_owned(),
        "\u{fffd}".to_owned(),
        "\u{1f600}".to_owned(),
    ];
    for nick in invalid {
        s.send(a, format!("/nick {nick}\n"));
        assert_eq!(
            s.lines(a),
            [format!(
                "* error: invalid nick {nick}: use 1-32 letters, digits, _ or -"
            )]
        );
        s.assert_quiet(&[a, b]);
        assert_eq!(s.server().nick(a), Some(an.as_str()));
    }
}

/// Nicknames: unique among connected clients after `to_lowercase()`; the
/// refused rename changes nothing and tells nobody else.
#[test]
fn nicknames_taken_case_insensitively() {
    let mut s = Driver::plain();
    let [(a, _), (b, bn), (c, _)] = s.trio();
    s.rename(a, "Alice", &[b, c]);
    for attempt in ["Alice", "alice", "ALICE", "aLiCe"] {
        s.send(b, format!("/nick {attempt}\n"));
        assert_eq!(
            s.lines(b),
            [format!("* error: nick {attempt} is already taken")]
        );
        s.assert_quiet(&[a, b, c]);
        assert_eq!(s.server().nick(b), Some(bn.as_str()));
    }
    // Non-ASCII case folding too.
    s.rename(a, "\u{c9}mile", &[b, c]);
    s.send(b, "/nick \u{e9}MILE\n");
    assert_eq!(s.lines(b), ["* error: nick \u{e9}MILE is already taken"]);
}

/// Nicknames: a nick is free again once its holder renamed or left.
#[test]
fn nicknames_freed_by_rename_and_leave() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    s.rename(a, "first", &[b]);
    s.rename(b, &an, &[a]);
    s.send(b, "/nick FIRST\n");
    assert_eq!(s.lines(b), ["* error: nick FIRST is already taken"]);
    s.send(a, "/quit\n");
    s.lines(b);
    s.rename(b, "FIRST", &[]);
}

/// Nicknames: renaming to a case variant of one's own nick is allowed and
/// announced.
#[test]
fn nicknames_case_variant_of_own_allowed_and_announced() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    s.rename(a, "carol", &[b]);
    s.send(a, "/nick CAROL\n");
    assert_eq!(s.lines(a), ["* you are now known as CAROL"]);
    assert_eq!(s.lines(b), ["* carol is now known as CAROL"]);
    assert_eq!(
        s.events(),
        [Event::Renamed {
            conn: a,
            from: "carol".into(),
            to: "CAROL".into()
        }]
    );
    assert_eq!(s.server().nick(a), Some("CAROL"));
}

/// Nicknames: renaming to exactly one's current nick is a no-op success:
/// no error, nobody else is told, nothing is logged.
#[test]
fn nicknames_same_nick_is_noop_success() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    s.send(a, format!("/nick {an}\n"));
    assert_eq!(s.lines(a), [format!("* you are now known as {an}")]);
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server().nick(a), Some(an.as_str()));
}
