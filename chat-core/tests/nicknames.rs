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

/// Nicknames: unique among connected clients by key, so case variants
/// collide; the refused rename changes nothing and tells nobody else.
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

/// Nicknames: renaming to a variant of one's own nick (same key), here a
/// case variant, is allowed and announced.
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

/// Asks for `nick` on `who` and checks the one error line it gets, that
/// nobody else hears of it, and that the nick is unchanged.
fn refused(
    s: &mut Driver,
    who: chat_core::ConnId,
    others: &[chat_core::ConnId],
    nick: &str,
    error: &str,
) {
    let held = s.server().nick(who).unwrap().to_owned();
    s.send(who, format!("/nick {nick}\n"));
    assert_eq!(s.lines(who), [format!("* error: {error}")], "{nick:?}");
    let mut all = others.to_vec();
    all.push(who);
    s.assert_quiet(&all);
    assert_eq!(s.server().nick(who), Some(held.as_str()));
}

/// Nicknames: compared by key = the confusable skeleton of the NFKC, fully
/// case-folded nick: fullwidth forms, compatibility forms (ª, º), full case
/// folding (ß/SS, ſ/s, ﬀ/ff, Σ/σ/ς) and confusables (dotless ı, digit 0
/// for o) all collide.
#[test]
fn nicknames_taken_by_skeleton_key() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    let cases = [
        ("alice", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"), // ａｌｉｃｅ
        ("alice", "\u{ff21}\u{ff2c}\u{ff29}\u{ff23}\u{ff25}"), // ＡＬＩＣＥ
        ("alice", "ALICE"),
        ("alice", "al\u{131}ce"), // alıce: the skeleton maps ı to i
        ("\u{3a3}", "\u{3c3}"),   // Σ σ
        ("\u{3c3}", "\u{3c2}"),   // σ ς
        ("\u{3a3}", "\u{3c2}"),   // Σ ς
        ("\u{17f}am", "sam"),     // ſam
        ("sam", "\u{17f}am"),
        ("\u{df}", "SS"), // ß
        ("SS", "\u{df}"),
        ("\u{df}", "ss"),
        ("\u{fb00}", "ff"), // ﬀ
        ("ff", "\u{fb00}"),
        ("bob", "b0b"),
        ("alice", "\u{aa}lice"), // ªlice: NFKC makes ª an a
        ("bob", "b\u{ba}b"),     // bºb: NFKC makes º an o
    ];
    for (held, attempt) in cases {
        if s.server().nick(a) != Some(held) {
            s.rename(a, held, &[b]);
        }
        refused(
            &mut s,
            b,
            &[a],
            attempt,
            &format!("nick {attempt} is already taken"),
        );
    }
}

/// Nicknames: a confusable from another script that is not a whole-script
/// look-alike (Cyrillic а among Latin) is refused for mixing scripts, with
/// the scripts named in order of first use; Latin with Greek, Cyrillic with
/// Greek likewise.
#[test]
fn nicknames_mixed_scripts_refused() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    s.rename(a, "alice", &[b]);
    let cases = [
        ("\u{430}lice", "Cyrillic, Latin"),
        ("alic\u{435}", "Latin, Cyrillic"),
        ("alic\u{3b5}", "Latin, Greek"),
        (
            "\u{414}\u{43c}\u{438}\u{442}\u{3c1}\u{438}\u{439}",
            "Cyrillic, Greek",
        ),
        ("x_\u{414}-1", "Latin, Cyrillic"),
    ];
    for (nick, scripts) in cases {
        refused(
            &mut s,
            b,
            &[a],
            nick,
            &format!("invalid nick {nick}: mixes scripts ({scripts})"),
        );
    }
}

/// Nicknames: single-script nicks in any script are valid and distinct from
/// each other and from Latin transliterations; Japanese mixing Han,
/// Hiragana and Katakana counts as one script, Latin with Han too (UTS #39
/// "highly restrictive"); digits, `_` and `-` mix with anything.
#[test]
fn nicknames_single_scripts_valid_and_distinct() {
    let mut s = Driver::plain();
    let mut conns = Vec::new();
    for _ in 0..9 {
        let (conn, _) = s.join(&conns);
        conns.push(conn);
    }
    let nicks = [
        "\u{414}\u{43c}\u{438}\u{442}\u{440}\u{438}\u{439}", // Дмитрий
        "\u{592a}\u{90ce}",                                  // 太郎
        "\u{395}\u{3bb}\u{3ad}\u{3bd}\u{3b7}",               // Ελένη
        "\u{592a}\u{90ce}\u{305f}\u{30ed}\u{30a6}",          // 太郎たロウ
        "taro\u{592a}\u{90ce}",
        "dmitrij",
        "eleni",
        "\u{d55c}\u{56fd}_42", // Hangul + Han
        "\u{414}\u{43c}\u{438}\u{442}\u{440}\u{438}\u{439}-2",
    ];
    for (i, (&conn, nick)) in conns.iter().zip(nicks).enumerate() {
        let others: Vec<_> = conns.iter().copied().filter(|&c| c != conn).collect();
        let old = s.server().nick(conn).unwrap().to_owned();
        s.send(conn, format!("/nick {nick}\n"));
        assert_eq!(
            s.lines(conn),
            [format!("* you are now known as {nick}")],
            "#{i}"
        );
        for other in others {
            assert_eq!(s.lines(other), [format!("* {old} is now known as {nick}")]);
        }
    }
}

/// Nicknames: a nick holds no default-ignorable code point: Hangul fillers
/// (which would make a blank nick or pad another one) and zero-width
/// characters are refused, naming the code point.
#[test]
fn nicknames_invisible_code_points_refused() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    s.rename(a, "alice", &[b]);
    // Default-ignorable marks, which sanitizing keeps: the nick rule
    // refuses them by name.
    for c in ['\u{34f}', '\u{fe0f}', '\u{180b}', '\u{e0100}'] {
        let code = u32::from(c);
        for nick in [format!("alice{c}"), c.to_string(), format!("b{c}ob")] {
            let error = format!("invalid nick {nick}: holds invisible character U+{code:04X}");
            refused(&mut s, b, &[a], &nick, &error);
        }
    }
    // Fillers and format characters never get this far: sanitizing made
    // them U+FFFD, which no nick holds.
    for c in [
        '\u{1160}', '\u{3164}', '\u{ffa0}', '\u{115f}', '\u{200b}', '\u{2060}', '\u{ad}',
    ] {
        for nick in [format!("alice{c}"), c.to_string(), format!("b{c}ob")] {
            let sanitized = nick.replace(c, "\u{fffd}");
            let error = format!("invalid nick {sanitized}: use 1-32 letters, digits, _ or -");
            refused(&mut s, b, &[a], &nick, &error);
        }
    }
}

/// Nicknames: at most 3 combining marks on one character, and none before
/// the first character.
#[test]
fn nicknames_combining_mark_pile_up_refused() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    // Arabic beh carrying fathatan (U+064B), an alphabetic combining mark.
    let beh = |marks: usize| format!("\u{628}{}", "\u{64b}".repeat(marks));
    for n in [4, 5, 20] {
        // Sanitizing already cut the pile to 4 ("Sanitizing", rule 4).
        let error = format!(
            "invalid nick {}: more than 3 combining marks on one character",
            beh(n.min(4))
        );
        refused(&mut s, b, &[a], &beh(n), &error);
    }
    let nick = format!("\u{64b}{}", beh(0));
    refused(
        &mut s,
        b,
        &[a],
        &nick,
        &format!("invalid nick {nick}: starts with a combining mark"),
    );
    // Three are fine, on every character; so is fully pointed Hebrew.
    s.rename(b, &beh(3).repeat(2), &[a]);
    s.rename(b, "\u{5e9}\u{5bc}\u{5c1}\u{5b8}", &[a]);
}

/// Nicknames: renaming to a variant of one's own nick with the same key
/// (fullwidth, ß for ss) is allowed and announced; the old form is then
/// free for nobody else.
#[test]
fn nicknames_own_key_variant_allowed_and_announced() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    s.rename(a, "alice", &[b]);
    let fullwidth = "\u{ff21}\u{ff2c}\u{ff29}\u{ff23}\u{ff25}";
    s.send(a, format!("/nick {fullwidth}\n"));
    assert_eq!(s.lines(a), [format!("* you are now known as {fullwidth}")]);
    assert_eq!(s.lines(b), [format!("* alice is now known as {fullwidth}")]);
    assert_eq!(
        s.events(),
        [Event::Renamed {
            conn: a,
            from: "alice".into(),
            to: fullwidth.into()
        }]
    );
    refused(&mut s, b, &[a], "alice", "nick alice is already taken");
    s.rename(a, "stra\u{df}e", &[b]);
    s.rename(a, "STRASSE", &[b]);
    refused(&mut s, b, &[a], "strasse", "nick strasse is already taken");
    s.send(a, "/nick STRASSE\n");
    assert_eq!(s.lines(a), ["* you are now known as STRASSE"]);
    s.assert_quiet(&[a, b]);
}
