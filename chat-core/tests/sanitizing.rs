//! Rule tests for `docs/protocol.md`, "Sanitizing": one deterministic test
//! (or a few) per rule, each named `sanitizing_*` and citing its rule.
//!
//! The tests drive one `chat_core::Server` through
//! `chat_core::testkit::Driver`, the simulated driver that follows the run
//! loop of the crate docs on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::testkit::Driver;

/// Sanitizing 1: invalid UTF-8 becomes U+FFFD exactly as
/// `String::from_utf8_lossy` does.
#[test]
fn sanitizing_invalid_utf8_like_from_utf8_lossy() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    let cases: &[&[u8]] = &[
        b"a\xffb",
        b"\xfe\xff",
        b"x\xe2\x82",
        b"x\xe2\x82y",
        b"\xf0\x9f\x98z",
        b"\xc0\xafq",
        b"\xed\xa0\x80s",
        b"\xf4\x90\x80\x80t",
        b"ok \xe2\x82\xac \xc3",
        b"\x80\x80\x80",
    ];
    for &raw in cases {
        let want = String::from_utf8_lossy(raw).into_owned();
        let mut line = raw.to_vec();
        line.push(b'\n');
        assert_eq!(s.relayed(a, &an, b, &line), [want], "{raw:?}");
    }
}

/// Sanitizing 2: C0 controls except TAB, and DEL, become U+FFFD; TAB stays.
#[test]
fn sanitizing_c0_and_del_replaced_tab_kept() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    for byte in (0u8..0x20).chain([0x7f]) {
        if byte == b'\n' {
            continue;
        }
        let got = s.relayed(a, &an, b, &[b'a', byte, b'b', b'\n']);
        let want = if byte == b'\t' { "a\tb" } else { "a\u{fffd}b" };
        assert_eq!(got, [want], "byte {byte:#04x}");
    }
}

/// Sanitizing 2: C1 controls (U+0080..U+009F) and the bidi controls
/// (U+202A..U+202E, U+2066..U+2069) become U+FFFD, one per character;
/// their neighbours do not.
#[test]
fn sanitizing_c1_and_bidi_replaced() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    let forbidden = ('\u{80}'..='\u{9f}')
        .chain('\u{202a}'..='\u{202e}')
        .chain('\u{2066}'..='\u{2069}');
    for c in forbidden {
        let got = s.relayed(a, &an, b, format!("a{c}b\n").as_bytes());
        assert_eq!(got, ["a\u{fffd}b"], "{c:?}");
    }
    for c in [
        '\u{a0}',
        '\u{a1}',
        '\u{7e}',
        '\u{2029}',
        '\u{2065}',
        '\u{206a}',
        '\u{202f}',
        '\u{200f}',
        '\u{e9}',
        '\u{1f600}',
        '\u{fffd}',
    ] {
        let got = s.relayed(a, &an, b, format!("a{c}b\n").as_bytes());
        assert_eq!(got, [format!("a{c}b")], "{c:?} is not a control");
    }
}

/// Sanitizing 2: an ANSI escape sequence cannot drive anyone's terminal.
#[test]
fn sanitizing_ansi_escape() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    assert_eq!(
        s.relayed(a, &an, b, b"\x1b[31mred\x1b[0m\x07\n"),
        ["\u{fffd}[31mred\u{fffd}[0m\u{fffd}"]
    );
    assert_eq!(
        s.relayed(a, &an, b, "\u{9b}2J\u{202e}evil\n".as_bytes()),
        ["\u{fffd}2J\u{fffd}evil"]
    );
}

/// Sanitizing 3: trailing whitespace (`char::is_whitespace`, TAB and U+00A0
/// included) is trimmed; leading and inner whitespace is kept.
#[test]
fn sanitizing_trailing_whitespace_trimmed_leading_kept() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    assert_eq!(
        s.relayed(a, &an, b, "hi \t\u{a0}\u{3000}\u{2029} \n".as_bytes()),
        ["hi"]
    );
    assert_eq!(s.relayed(a, &an, b, b"  \tlead\n"), ["  \tlead"]);
    assert_eq!(s.relayed(a, &an, b, b"in  \t ner \n"), ["in  \t ner"]);
    // Control characters that are whitespace are replaced first (rule 2),
    // so they are not trimmed (rule 3).
    assert_eq!(s.relayed(a, &an, b, "vt\x0b\n".as_bytes()), ["vt\u{fffd}"]);
    assert_eq!(
        s.relayed(a, &an, b, "nel\u{85}\n".as_bytes()),
        ["nel\u{fffd}"]
    );
}

/// Sanitizing 3: a line that is empty after trimming is ignored: nobody gets
/// anything, not even an error.
#[test]
fn sanitizing_empty_lines_ignored() {
    let mut s = Driver::plain();
    let [(a, _), (b, _), (c, _)] = s.trio();
    for line in ["\n", "\r\n", "   \n", "\t\t\n", "\u{a0}\u{3000}\r\n"] {
        s.send(a, line);
        s.assert_quiet(&[a, b, c]);
    }
    s.send(a, " ");
    s.eof(a);
    // Only the left notice: the blank final line was ignored.
    assert_eq!(s.lines(b).len(), 1);
}

/// Sanitizing: nicks, quit reasons, command names and other echoed text are
/// sanitized before anyone sees them.
#[test]
fn sanitizing_applies_to_everything_echoed() {
    let mut s = Driver::plain();
    let [(a, an), (b, bn), (c, _)] = s.trio();
    s.send(a, "/nick ev\x1bil\n");
    assert_eq!(
        s.lines(a),
        ["* error: invalid nick ev\u{fffd}il: use 1-32 letters, digits, _ or -"]
    );
    s.send(a, "/x\x1b[2J\n");
    assert_eq!(
        s.lines(a),
        ["* error: unknown command /x\u{fffd}[2J, try /help"]
    );
    s.send(a, "/msg no\x07body hi\n");
    assert_eq!(s.lines(a), ["* error: no such nick no\u{fffd}body"]);
    let mut line = format!("/msg {bn} \x1b[1mpst").into_bytes();
    line.extend_from_slice(b"\xff\n");
    s.send(a, line);
    assert_eq!(s.lines(b), [format!("*{an}* \u{fffd}[1mpst\u{fffd}")]);
    s.send(a, "/me \u{202e}waves\n");
    assert_eq!(s.lines(b), [format!("* {an} \u{fffd}waves")]);
    assert_eq!(s.lines(c), [format!("* {an} \u{fffd}waves")]);
    s.send(a, "/quit bye\x07now\u{9b} \n");
    assert_eq!(s.lines(a), ["* bye"]);
    assert_eq!(
        s.lines(b),
        [format!("* {an} left (bye\u{fffd}now\u{fffd})")]
    );
}

/// Sanitizing: a line is a command when its first byte after sanitizing is
/// `/`; leading whitespace keeps it a chat line, trailing whitespace does not
/// change the command.
#[test]
fn sanitizing_command_detection_after_sanitizing() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    s.send(a, "/who \t \n");
    assert_eq!(s.lines(a).len(), 1);
    assert!(s.lines(b).is_empty());
    assert_eq!(s.relayed(a, &an, b, b" /who\n"), [" /who"]);
    assert_eq!(s.relayed(a, &an, b, b"\x01/who\n"), ["\u{fffd}/who"]);
}
