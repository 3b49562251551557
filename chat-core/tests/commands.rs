//! Rule tests for `docs/protocol.md`, "Commands": one deterministic test (or
//! a few) per rule, each named `commands_*` and citing its rule.
//!
//! The tests drive one `chat_core::Server` through
//! `chat_core::testkit::Driver`, the simulated driver that follows the run
//! loop of the crate docs on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::testkit::{Driver, Seen};
use chat_core::{Config, ConnId, HELP, LINE_COST, Reason};

/// Commands: command names are case-insensitive.
#[test]
fn commands_names_case_insensitive() {
    let mut s = Driver::plain();
    let (a, an, b, bn) = s.pair();
    s.send(a, "/NICK Upper\n");
    assert_eq!(s.lines(a), ["* you are now known as Upper"]);
    assert_eq!(s.lines(b), [format!("* {an} is now known as Upper")]);
    s.send(a, "/WHO\n/Help\n");
    let lines = s.lines(a);
    assert_eq!(lines.len(), 1 + HELP.len());
    assert!(lines[0].starts_with("* 2 users online"));
    s.send(a, "/Me waves\n");
    assert_eq!(s.lines(b), ["* Upper waves"]);
    s.send(a, format!("/mSg {bn} psst\n"));
    assert_eq!(s.lines(b), ["*Upper* psst"]);
    s.send(a, "/QuIt\n");
    assert_eq!(s.lines(a), ["* bye"]);
    assert_eq!(s.lines(b), ["* Upper left"]);
}

/// Commands: arguments are split on runs of spaces and TABs; a TEXT
/// argument is the rest of the line after the gap before it, inner runs of
/// blanks kept.
#[test]
fn commands_args_split_on_runs_of_blanks() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.rename(b, "bob", &[a, c]);
    s.send(a, "/msg  bob\t hi  \tthere\n");
    assert_eq!(s.lines(b), [format!("*{an}* hi  \tthere")]);
    s.send(a, "/me\t \twaves  twice\n");
    assert_eq!(s.lines(b), [format!("* {an} waves  twice")]);
    assert_eq!(s.lines(c), [format!("* {an} waves  twice")]);
    s.send(a, "/nick \t  spaced\n");
    assert_eq!(s.lines(a), ["* you are now known as spaced"]);
    s.lines(b);
    s.lines(c);
    s.send(a, "/quit \t gone  for\tgood\n");
    assert_eq!(s.lines(b), ["* spaced left (gone  for\tgood)"]);
}

/// Commands, /nick: usage error without a name or with more than one word.
#[test]
fn commands_nick_usage() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    for line in [
        "/nick\n",
        "/nick   \n",
        "/nick foo bar\n",
        "/nick foo\tbar\n",
    ] {
        s.send(a, line);
        assert_eq!(s.lines(a), ["* error: usage: /nick NAME"], "{line:?}");
        s.assert_quiet(&[a, b]);
        assert_eq!(s.server().nick(a), Some(an.as_str()));
    }
}

/// Commands, /nick: the sender gets `* you are now known as NAME`, every
/// other client `* OLD is now known as NAME`.
#[test]
fn commands_nick_renames() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.send(a, "/nick dave\n");
    assert_eq!(s.lines(a), ["* you are now known as dave"]);
    assert_eq!(s.lines(b), [format!("* {an} is now known as dave")]);
    assert_eq!(s.lines(c), [format!("* {an} is now known as dave")]);
    s.send(a, "now\n");
    assert_eq!(s.lines(b), ["dave: now"]);
}

/// Commands, /me: every other client gets `* NICK TEXT`; without text, the
/// sender gets the usage error.
#[test]
fn commands_me() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.send(a, "/me dances\n");
    assert_eq!(s.lines(a), Vec::<String>::new());
    assert_eq!(s.lines(b), [format!("* {an} dances")]);
    assert_eq!(s.lines(c), [format!("* {an} dances")]);
    for line in ["/me\n", "/me   \n", "/me\t\n"] {
        s.send(a, line);
        assert_eq!(s.lines(a), ["* error: usage: /me TEXT"]);
        s.assert_quiet(&[a, b, c]);
    }
}

/// Commands, /msg: the target (matched case-insensitively) gets
/// `*SENDER* TEXT`; nobody else gets anything.
#[test]
fn commands_msg_to_one_target() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.rename(b, "Bob", &[a, c]);
    for target in ["Bob", "bob", "BOB"] {
        s.send(a, format!("/msg {target} secret\n"));
        assert_eq!(s.lines(b), [format!("*{an}* secret")]);
        s.assert_quiet(&[a, b, c]);
    }
}

/// Commands, /msg: usage error without a nick or text; `no such nick` for
/// a nick nobody holds (including one just given up).
#[test]
fn commands_msg_errors() {
    let mut s = Driver::plain();
    let (a, _, b, bn) = s.pair();
    for line in [
        "/msg\n".to_owned(),
        format!("/msg {bn}\n"),
        format!("/msg {bn}  \t\n"),
    ] {
        s.send(a, &line);
        assert_eq!(s.lines(a), ["* error: usage: /msg NICK TEXT"], "{line:?}");
        s.assert_quiet(&[a, b]);
    }
    s.send(a, "/msg nobody hi\n");
    assert_eq!(s.lines(a), ["* error: no such nick nobody"]);
    s.assert_quiet(&[a, b]);
    s.rename(b, "newb", &[a]);
    s.send(a, format!("/msg {bn} hi\n"));
    assert_eq!(s.lines(a), [format!("* error: no such nick {bn}")]);
    s.send(b, "/quit\n");
    s.lines(a);
    s.send(a, "/msg newb hi\n");
    assert_eq!(s.lines(a), ["* error: no such nick newb"]);
}

/// Commands, /who: the sender gets `* N users online: A, B, C`, nicks
/// sorted case-insensitively; nobody else gets anything.
#[test]
fn commands_who_sorted_case_insensitively() {
    let mut s = Driver::plain();
    let [(a, _), (b, _), (c, _)] = s.trio();
    let (d, _) = s.join(&[a, b, c]);
    s.rename(a, "bob", &[b, c, d]);
    s.rename(b, "Alice", &[a, c, d]);
    s.rename(c, "dave", &[a, b, d]);
    s.rename(d, "Carol", &[a, b, c]);
    s.send(a, "/who\n");
    assert_eq!(s.lines(a), ["* 4 users online: Alice, bob, Carol, dave"]);
    s.assert_quiet(&[a, b, c, d]);
}

/// Commands, /who: the count is of connected clients; `1 user` for one;
/// clients that left are not listed.
#[test]
fn commands_who_count_and_one_user() {
    let mut s = Driver::plain();
    let (a, an) = s.join(&[]);
    s.send(a, "/who\n");
    assert_eq!(s.lines(a), [format!("* 1 user online: {an}")]);
    let (b, bn) = s.join(&[a]);
    s.send(b, "/who\n");
    let mut both = [an.clone(), bn.clone()];
    both.sort_by_key(|n| n.to_lowercase());
    assert_eq!(
        s.lines(b),
        [format!("* 2 users online: {}, {}", both[0], both[1])]
    );
    s.send(b, "/quit\n");
    s.send(a, "/who\n");
    assert_eq!(
        s.lines(a),
        [format!("* {bn} left"), format!("* 1 user online: {an}")]
    );
}

/// Commands, /who: a long list goes on over lines of at most 512 bytes,
/// every nick whole and once; a list longer than half of the asker's
/// max_queue ends in `* and K more`, and the asker (who reads) is not
/// dropped.
#[test]
fn commands_who_long_list_over_lines_within_half_the_queue() {
    for (max_queue, complete) in [(1 << 20, true), (0, false)] {
        let mut config = Config {
            max_line: 64,
            room_queue: None,
            ..Config::default()
        };
        config.max_queue = max_queue.max(config.min_queue());
        config.soft_queue = config.max_queue;
        let mut s = Driver::untimed(config.clone(), 4);
        let mut ids: Vec<ConnId> = Vec::new();
        let mut nicks = Vec::new();
        for i in 0..40 {
            let (id, _) = s.join(&ids);
            let nick = format!("n{i:02}{}", "x".repeat(29));
            s.rename(id, &nick, &ids);
            ids.push(id);
            nicks.push(nick);
        }
        let asker = ids[7];
        s.send(asker, "/who\n");
        let reply = s.lines(asker);
        assert!(reply[0].starts_with("* 40 users online: n00"));
        assert!(reply.iter().all(|line| line.len() < 512));
        let mut listed = Vec::new();
        for (i, line) in reply.iter().enumerate() {
            let list = if i == 0 {
                line.split_once(": ").unwrap().1
            } else {
                line.strip_prefix("* ").unwrap()
            };
            if !list.starts_with("and ") {
                listed.extend(list.split(", ").map(str::to_owned));
            }
        }
        let cost: usize = reply.iter().map(|line| line.len() + 1 + LINE_COST).sum();
        assert!(cost <= config.max_queue / 2, "{cost} bytes");
        assert_eq!(s.closes(), [], "the asker is not dropped");
        if complete {
            assert_eq!(listed, nicks);
            assert!(reply.len() > 2, "over several lines");
        } else {
            assert!(!listed.is_empty() && nicks.starts_with(&listed));
            let last = reply.last().unwrap();
            assert_eq!(*last, format!("* and {} more", 40 - listed.len()));
        }
    }
}

/// Commands, /help: the sender gets `* commands:`, then one `* ` line per
/// command; nobody else gets anything.
#[test]
fn commands_help() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    s.send(a, "/help\n");
    let lines = s.lines(a);
    assert_eq!(lines[0], "* commands:");
    let want: Vec<String> = HELP.iter().map(|h| format!("* {h}")).collect();
    assert_eq!(lines, want);
    for command in ["/nick", "/me", "/msg", "/who", "/help", "/quit", "//"] {
        assert_eq!(
            lines[1..].iter().filter(|l| l.contains(command)).count(),
            1,
            "{command} listed once"
        );
    }
    assert_eq!(lines.len(), 8, "7 commands after the heading");
    s.assert_quiet(&[a, b]);
}

/// Commands, /quit: the sender gets `* bye`, then its connection is closed
/// after that line is written (a flushing Close); the others get
/// `* NICK left`. Later input from it is ignored.
#[test]
fn commands_quit_without_reason() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.send(a, "/quit\nlater\n");
    assert_eq!(s.lines(a), ["* bye"]);
    assert_eq!(s.closes(), [(a, Reason::Quit(None), true)]);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.lines(c), [format!("* {an} left")]);
    // Its bye came before its Close, and nothing after.
    let pos_bye = s
        .trace()
        .iter()
        .position(|x| matches!(x, Seen::Bytes(id, b) if *id == a && b == b"* bye\n"))
        .unwrap();
    let pos_close = s
        .trace()
        .iter()
        .position(|x| matches!(x, Seen::Close(id, ..) if *id == a))
        .unwrap();
    assert!(pos_bye < pos_close);
    s.send(b, "still here\n");
    s.send(a, "ignored\n");
    assert_eq!(s.lines(a), Vec::<String>::new());
    assert_eq!(s.lines(c).len(), 1);
}

/// Commands, /quit REASON: the others get `* NICK left (REASON)`.
#[test]
fn commands_quit_with_reason() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    s.send(a, "/quit off to bed  \n");
    assert_eq!(s.lines(a), ["* bye"]);
    assert_eq!(
        s.closes(),
        [(a, Reason::Quit(Some("off to bed".into())), true)]
    );
    assert_eq!(s.lines(b), [format!("* {an} left (off to bed)")]);
}

/// Commands, `//TEXT`: a chat line whose text is `/TEXT`.
#[test]
fn commands_double_slash_is_chat() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    assert_eq!(s.relayed(a, &an, b, b"//help me\n"), ["/help me"]);
    assert_eq!(s.relayed(a, &an, b, b"//\n"), ["/"]);
    assert_eq!(s.relayed(a, &an, b, b"///quit\n"), ["//quit"]);
    assert_eq!(s.closes(), []);
}

/// Commands: anything else, bare `/` included, gets
/// `* error: unknown command /X, try /help` and reaches nobody else.
#[test]
fn commands_unknown() {
    let mut s = Driver::plain();
    let (a, _, b, _) = s.pair();
    for (line, name) in [
        ("/dance\n", "dance"),
        ("/dance with me\n", "dance"),
        ("/\n", ""),
        ("/ who\n", ""),
        ("/whois x\n", "whois"),
        ("/nickname x\n", "nickname"),
        ("/Foo\n", "Foo"),
    ] {
        s.send(a, line);
        assert_eq!(
            s.lines(a),
            [format!("* error: unknown command /{name}, try /help")],
            "{line:?}"
        );
        s.assert_quiet(&[a, b]);
    }
}
