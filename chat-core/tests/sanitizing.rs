//! Rule tests for `docs/protocol.md`, "Sanitizing": one deterministic test
//! (or a few) per rule, each named `sanitizing_*` and citing its rule.
//!
//! The tests drive one `chat_core::Server` through
//! `chat_core::testkit::Driver`, the simulated driver that follows the run
//! loop of the crate docs on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::testkit::Driver;

/// One client sends each `raw` line (LF appended); another receives it as
/// `NICK: want`.
fn assert_relayed<R: AsRef<str>, W: AsRef<str>>(cases: impl IntoIterator<Item = (R, W)>) {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    for (raw, want) in cases {
        let raw = raw.as_ref();
        let got = s.relayed(a, &an, b, format!("{raw}\n").as_bytes());
        assert_eq!(got, [want.as_ref()], "{raw:?}");
    }
}

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
/// their visible neighbours do not.
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
        '\u{2027}',
        '\u{2065}',
        '\u{202f}',
        '\u{2010}',
        '\u{e9}',
        '\u{1f600}',
        '\u{fffd}',
    ] {
        let got = s.relayed(a, &an, b, format!("a{c}b\n").as_bytes());
        assert_eq!(got, [format!("a{c}b")], "{c:?} is not a control");
    }
}

/// Sanitizing 2: invisible and format characters become U+FFFD, one for
/// one: zero width space, the bidi marks U+200E, U+200F and U+061C, the
/// line and paragraph separators, the BOM, word joiner, soft hyphen and
/// the tag characters.
#[test]
fn sanitizing_format_and_separators_replaced() {
    let one_by_one = [
        '\u{200b}',
        '\u{200e}',
        '\u{200f}',
        '\u{61c}',
        '\u{2028}',
        '\u{2029}',
        '\u{feff}',
        '\u{2060}',
        '\u{ad}',
        '\u{206a}',
        '\u{e0001}',
        '\u{e0041}',
        '\u{e007f}',
    ]
    .map(|c| (format!("a{c}b"), "a\u{fffd}b"));
    assert_relayed(one_by_one.into_iter().chain([
        // A tag sequence: each tag character is replaced on its own.
        (
            "x\u{e0001}\u{e0065}\u{e006e}y".to_owned(),
            "x\u{fffd}\u{fffd}\u{fffd}y",
        ),
        // A line of separators is not blank: they are replaced, not trimmed.
        ("\u{2028}\u{2029}".to_owned(), "\u{fffd}\u{fffd}"),
    ]));
}

/// Sanitizing 2: the Hangul fillers become U+FFFD, in text and in nicks;
/// the braille blank U+2800 is kept.
#[test]
fn sanitizing_hangul_fillers_replaced_braille_blank_kept() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    for c in ['\u{115f}', '\u{1160}', '\u{3164}', '\u{ffa0}'] {
        let got = s.relayed(a, &an, b, format!("a{c}b\n").as_bytes());
        assert_eq!(got, ["a\u{fffd}b"], "{c:?}");
        s.send(a, format!("/nick {c}\n"));
        assert_eq!(
            s.lines(a),
            ["* error: invalid nick \u{fffd}: use 1-32 letters, digits, _ or -"],
            "{c:?}"
        );
    }
    assert_eq!(
        s.relayed(a, &an, b, "a\u{2800}b\n".as_bytes()),
        ["a\u{2800}b"]
    );
}

/// Sanitizing 3: ZWJ and ZWNJ between visible characters are kept: an
/// emoji ZWJ sequence (with U+FE0F too), Persian with ZWNJ, a Devanagari
/// conjunct with a virama before the ZWJ.
#[test]
fn sanitizing_joiners_kept_in_real_text() {
    assert_relayed(
        [
            "\u{1f469}\u{200d}\u{1f4bb}",
            "\u{2764}\u{fe0f}\u{200d}\u{1f525}",
            "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}",
            "\u{915}\u{94d}\u{200d}\u{937}",
            "nick \u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467} ok",
        ]
        .map(|text| (text, text)),
    );
}

/// Sanitizing 3: a joiner that is not between two visible characters
/// becomes U+FFFD: alone, at either edge, next to whitespace, doubled, next
/// to a replaced character, or before a combining mark.
#[test]
fn sanitizing_joiners_alone_or_at_edges_replaced() {
    assert_relayed([
        ("\u{200d}", "\u{fffd}"),
        ("\u{200c}", "\u{fffd}"),
        ("\u{200d}hi", "\u{fffd}hi"),
        ("hi\u{200d}", "hi\u{fffd}"),
        ("hi\u{200c} ", "hi\u{fffd}"),
        ("a \u{200d}b", "a \u{fffd}b"),
        ("a\u{200d}\tb", "a\u{fffd}\tb"),
        ("a\u{200d}\u{200d}b", "a\u{fffd}\u{fffd}b"),
        ("a\u{200c}\u{200d}b", "a\u{fffd}\u{fffd}b"),
        ("a\u{200b}\u{200d}b", "a\u{fffd}\u{fffd}b"),
        ("a\u{200d}\u{3164}", "a\u{fffd}\u{fffd}"),
        ("a\u{200d}\u{301}\u{301}", "a\u{fffd}\u{301}\u{301}"),
    ]);
}

/// Sanitizing 4: of 200 combining marks on one letter the first four are
/// kept, the rest removed; a run at the start of the line is capped the
/// same; a replaced character starts a new run.
#[test]
fn sanitizing_combining_marks_capped() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    let marks: String = ['\u{300}', '\u{301}', '\u{302}', '\u{303}']
        .iter()
        .cycle()
        .take(200)
        .collect();
    let got = s.relayed(a, &an, b, format!("Z{marks}ok\n").as_bytes());
    assert_eq!(got, ["Z\u{300}\u{301}\u{302}\u{303}ok"]);
    let got = s.relayed(a, &an, b, format!("{marks}\n").as_bytes());
    assert_eq!(got, ["\u{300}\u{301}\u{302}\u{303}"]);
    let five = "\u{301}".repeat(5);
    let got = s.relayed(a, &an, b, format!("e{five}\u{200b}{five}\n").as_bytes());
    let four = "\u{301}".repeat(4);
    assert_eq!(got, [format!("e{four}\u{fffd}{four}")]);
    // Exactly four stay whole; an enclosing mark counts too.
    let got = s.relayed(
        a,
        &an,
        b,
        "1\u{fe0f}\u{20e3}\u{301}\u{302}\u{303}\n".as_bytes(),
    );
    assert_eq!(got, ["1\u{fe0f}\u{20e3}\u{301}\u{302}"]);
}

/// Sanitizing 4: real text keeps all its marks: Vietnamese precomposed and
/// decomposed, pointed Hebrew, vowelled Arabic, Devanagari, Thai, an emoji
/// with VS16 and a keycap.
#[test]
fn sanitizing_real_text_keeps_its_marks() {
    assert_relayed(
        [
            "Vi\u{1ec7}t",
            "Vie\u{323}\u{302}t",
            "\u{5e9}\u{5c1}\u{5bc}\u{5b8}\u{591}",
            "\u{645}\u{64f}\u{62d}\u{64e}\u{645}\u{651}\u{64e}\u{62f}",
            "\u{939}\u{93f}\u{928}\u{94d}\u{926}\u{940}",
            "\u{e01}\u{e34}\u{e48}",
            "\u{2764}\u{fe0f} 1\u{fe0f}\u{20e3}",
        ]
        .map(|text| (text, text)),
    );
}

/// Sanitizing 2-4: nicks, quit reasons and echoed command names lose their
/// invisible characters and mark piles too.
#[test]
fn sanitizing_invisibles_in_everything_echoed() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.send(a, "/nick bo\u{200b}b\n");
    assert_eq!(
        s.lines(a),
        ["* error: invalid nick bo\u{fffd}b: use 1-32 letters, digits, _ or -"]
    );
    s.send(a, "/x\u{feff}\n");
    assert_eq!(
        s.lines(a),
        ["* error: unknown command /x\u{fffd}, try /help"]
    );
    let pile = "\u{301}".repeat(50);
    let four = "\u{301}".repeat(4);
    s.send(a, format!("/nick e{pile}\n"));
    assert_eq!(
        s.lines(a),
        [format!(
            "* error: invalid nick e{four}: use 1-32 letters, digits, _ or -"
        )]
    );
    s.send(a, format!("/me waves{pile}\n"));
    assert_eq!(s.lines(b), [format!("* {an} waves{four}")]);
    assert_eq!(s.lines(c), [format!("* {an} waves{four}")]);
    s.send(a, "/quit gone\u{2028}now\u{e0041}\n");
    assert_eq!(
        s.lines(b),
        [format!("* {an} left (gone\u{fffd}now\u{fffd})")]
    );
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

/// Sanitizing 5: trailing whitespace (`char::is_whitespace`, TAB and U+00A0
/// included) is trimmed; leading and inner whitespace is kept.
#[test]
fn sanitizing_trailing_whitespace_trimmed_leading_kept() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    assert_eq!(
        s.relayed(a, &an, b, "hi \t\u{a0}\u{3000}\u{2007} \n".as_bytes()),
        ["hi"]
    );
    assert_eq!(s.relayed(a, &an, b, b"  \tlead\n"), ["  \tlead"]);
    assert_eq!(s.relayed(a, &an, b, b"in  \t ner \n"), ["in  \t ner"]);
    // Control characters that are whitespace are replaced first (rule 2),
    // so they are not trimmed (rule 5).
    assert_eq!(s.relayed(a, &an, b, "vt\x0b\n".as_bytes()), ["vt\u{fffd}"]);
    assert_eq!(
        s.relayed(a, &an, b, "nel\u{85}\n".as_bytes()),
        ["nel\u{fffd}"]
    );
    // So are the line and paragraph separators (rule 2).
    assert_eq!(
        s.relayed(a, &an, b, "ps\u{2029}\u{2028}\n".as_bytes()),
        ["ps\u{fffd}\u{fffd}"]
    );
}

/// Sanitizing 5: a line that is empty after trimming is ignored: nobody gets
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
