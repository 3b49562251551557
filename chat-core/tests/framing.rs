//! Rule tests for `docs/protocol.md`, "Framing": one deterministic test (or
//! a few) per rule, each named `framing_*` and citing its rule.
//!
//! The tests drive one `chat_core::Server` through
//! `chat_core::testkit::Driver`, the simulated driver that follows the run
//! loop of the crate docs on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::testkit::Driver;
use chat_core::testkit::rules::line_config;

/// Framing: a line ends at LF, and only there.
#[test]
fn framing_line_ends_at_lf() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    s.send(a, "hello");
    s.assert_quiet(&[a, b]);
    s.send(a, " world\n");
    assert_eq!(s.lines(b), [format!("{an}: hello world")]);
}

/// Framing: one CR right before the LF is dropped.
#[test]
fn framing_one_cr_before_lf_is_dropped() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    assert_eq!(s.relayed(a, &an, b, b"hi\r\n"), ["hi"]);
    // Also when the CR and the LF arrive in different reads.
    s.send(a, "yo\r");
    s.assert_quiet(&[a, b]);
    assert_eq!(s.relayed(a, &an, b, b"\n"), ["yo"]);
}

/// Framing: any other CR (lone, mid-line, or a second one before the LF) is
/// an ordinary control character, shown as U+FFFD.
#[test]
fn framing_other_cr_is_a_control_character() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    assert_eq!(s.relayed(a, &an, b, b"a\rb\n"), ["a\u{fffd}b"]);
    assert_eq!(s.relayed(a, &an, b, b"\rab\n"), ["\u{fffd}ab"]);
    assert_eq!(s.relayed(a, &an, b, b"ab\r\r\n"), ["ab\u{fffd}"]);
    // A CR alone is not a line end.
    s.send(a, "x\ry");
    s.assert_quiet(&[a, b]);
    assert_eq!(s.relayed(a, &an, b, b"\n"), ["x\u{fffd}y"]);
}

/// Framing: a line may arrive one byte per read.
#[test]
fn framing_line_split_byte_by_byte() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    let line = "h\u{e9}llo \u{1f600}\r\n".as_bytes();
    for &byte in &line[..line.len() - 1] {
        s.send(a, [byte]);
        s.assert_quiet(&[a, b]);
    }
    assert_eq!(s.relayed(a, &an, b, b"\n"), ["h\u{e9}llo \u{1f600}"]);
}

/// Framing: several lines may arrive in one read, and are handled in order.
#[test]
fn framing_several_lines_in_one_read() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    assert_eq!(
        s.relayed(a, &an, b, b"one\ntwo\r\nthree\nfour"),
        ["one", "two", "three"]
    );
    assert_eq!(s.relayed(a, &an, b, b"\nfive\n"), ["four", "five"]);
}

/// Framing: the result never depends on how the stream was split, over
/// every two-way split and byte by byte, with long lines, CRs, split UTF-8.
#[test]
fn framing_result_independent_of_splits() {
    let stream: &[u8] = b"hi\r\nabcdefghijklmnop\r\n0123456789abcdefg\nx\ry\r\r\n\
        \xe2\x82\xac \xf0\x9f\nlonglonglonglonglonglong\r\nend";
    let run = |chunks: &[&[u8]]| {
        let mut s = Driver::untimed(line_config(16), 3);
        let (a, _, b, _) = s.pair();
        for chunk in chunks {
            s.send(a, chunk);
        }
        s.eof(a);
        (s.lines(a), s.lines(b))
    };
    let whole = run(&[stream]);
    assert_eq!(whole.0.len(), 2, "two too-long errors: {:?}", whole.0);
    assert_eq!(whole.1.len(), 6, "5 lines and a left notice: {:?}", whole.1);
    for at in 0..=stream.len() {
        let (x, y) = stream.split_at(at);
        assert_eq!(run(&[x, y]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "byte by byte");
    let threes: Vec<&[u8]> = stream.chunks(3).collect();
    assert_eq!(run(&threes), whole, "3 bytes per read");
}

/// Framing, max line: a line of exactly max bytes passes.
#[test]
fn framing_max_line_exactly_max_passes() {
    let mut s = Driver::untimed(line_config(20), 1);
    let (a, an, b, _) = s.pair();
    let line = "x".repeat(20);
    assert_eq!(
        s.relayed(a, &an, b, format!("{line}\n").as_bytes()),
        [line.as_str()]
    );
    // Also when it arrives in pieces, and when its LF comes alone.
    s.send(a, &line[..7]);
    s.send(a, &line[7..]);
    assert_eq!(s.server().buffered_bytes(a), Some(20));
    assert_eq!(s.relayed(a, &an, b, b"\n"), [line.as_str()]);
    for &byte in line.as_bytes() {
        s.send(a, [byte]);
    }
    assert_eq!(s.relayed(a, &an, b, b"\n"), [line]);
}

/// Framing, max line: max bytes and then the dropped CR pass (the CR is
/// not counted), in one read or split around the CR.
#[test]
fn framing_max_line_plus_cr_passes() {
    let mut s = Driver::untimed(line_config(20), 1);
    let (a, an, b, _) = s.pair();
    let line = "y".repeat(20);
    assert_eq!(
        s.relayed(a, &an, b, format!("{line}\r\n").as_bytes()),
        [line.as_str()]
    );
    s.send(a, &line);
    s.send(a, "\r");
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server().buffered_bytes(a), Some(21), "max + the CR");
    assert_eq!(s.relayed(a, &an, b, b"\n"), [line.as_str()]);
    s.send(a, format!("{line}\r"));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.relayed(a, &an, b, b"\n"), [line]);
}

/// Framing, max line: max+1 bytes fail with the error naming the configured
/// N; the line reaches nobody.
#[test]
fn framing_max_line_plus_one_fails() {
    for max in [16, 20, 4096] {
        let mut s = Driver::untimed(line_config(max), 1);
        let (a, _, b, _) = s.pair();
        let error = format!("* error: line too long (max {max} bytes), discarded");
        s.send(a, format!("{}\n", "z".repeat(max + 1)));
        assert_eq!(s.lines(a), [error.as_str()]);
        s.assert_quiet(&[a, b]);
        // max + 1 with a CR that is not the last before the LF.
        s.send(a, format!("{}\r\r\n", "z".repeat(max)));
        assert_eq!(s.lines(a), [error.as_str()]);
        s.assert_quiet(&[a, b]);
        // Split across reads.
        s.send(a, "z".repeat(max));
        s.send(a, "zz\n");
        assert_eq!(s.lines(a), [error.as_str()]);
        s.assert_quiet(&[a, b]);
        // max bytes buffered, then a CR, then a non-LF byte.
        s.send(a, "z".repeat(max));
        s.send(a, "\r");
        s.send(a, "z\n");
        assert_eq!(s.lines(a), [error]);
        s.assert_quiet(&[a, b]);
    }
}

/// Framing, max line: the error comes as soon as the line is known to be
/// longer, before its LF, and only once for that line however many reads it
/// spans.
#[test]
fn framing_max_line_error_once_and_early() {
    let mut s = Driver::untimed(line_config(20), 1);
    let (a, an, b, _) = s.pair();
    let error = "* error: line too long (max 20 bytes), discarded";
    s.send(a, "w".repeat(21));
    assert_eq!(s.lines(a), [error], "known too long: told at once");
    for _ in 0..50 {
        s.send(a, "wwwwwwwwwwwww");
        s.assert_quiet(&[a, b]);
    }
    s.send(a, "\n");
    s.assert_quiet(&[a, b]);
    // Max bytes and a CR are not known to be too long yet.
    s.send(a, format!("{}\r", "w".repeat(20)));
    s.assert_quiet(&[a, b]);
    s.send(a, "w");
    assert_eq!(s.lines(a), [error]);
    s.send(a, "w\nafter\n");
    assert_eq!(s.lines(b), [format!("{an}: after")]);
    s.assert_quiet(&[a, b]);
}

/// Framing, max line: the connection stays open and the next line is
/// handled normally, whether it is in the same read or the next one.
#[test]
fn framing_max_line_connection_stays_open() {
    let mut s = Driver::untimed(line_config(20), 1);
    let (a, an, b, _) = s.pair();
    s.send(a, format!("{}\nnext\n", "v".repeat(40)));
    assert_eq!(s.lines(a).len(), 1);
    assert_eq!(s.lines(b), [format!("{an}: next")]);
    s.send(a, "v".repeat(40));
    s.send(a, "v\n/who\n");
    let lines = s.lines(a);
    assert_eq!(lines.len(), 2);
    assert!(lines[1].starts_with("* 2 users online: "), "{lines:?}");
    assert_eq!(s.closes(), []);
}

/// Framing, max line: the server never buffers more than max+1 bytes, even
/// while a 1 MB line streams in, in reads of any size.
#[test]
fn framing_buffer_bounded_by_max_line_plus_one() {
    for read in [1000, 4095, 4096, 4097, 65_536, 1 << 20] {
        let mut s = Driver::plain();
        let (a, an, b, _) = s.pair();
        let chunk = vec![b'q'; read];
        let mut sent = 0;
        while sent < 1 << 20 {
            s.send(a, &chunk);
            sent += read;
            let buffered = s.server().buffered_bytes(a).unwrap();
            assert!(buffered <= 4097, "{buffered} bytes buffered");
        }
        s.send(a, "\nok\n");
        assert_eq!(s.lines(a).len(), 1, "one error for the whole line");
        assert_eq!(s.lines(b), [format!("{an}: ok")]);
    }
}

/// Framing: on EOF an unterminated final line is handled as if it had ended
/// with LF (its final CR dropped); then the client leaves.
#[test]
fn framing_eof_delivers_unterminated_line() {
    let mut s = Driver::plain();
    let (a, an, b, _) = s.pair();
    s.send(a, "last words\r");
    s.eof(a);
    assert_eq!(
        s.lines(b),
        [format!("{an}: last words"), format!("* {an} left")]
    );

    let (c, cn) = s.join(&[b]);
    s.send(c, "bye");
    s.eof(c);
    assert_eq!(s.lines(b), [format!("{cn}: bye"), format!("* {cn} left")]);

    // A final command too.
    let (d, dn) = s.join(&[b]);
    s.send(d, "/quit gone");
    s.eof(d);
    assert_eq!(s.lines(d), ["* bye"]);
    assert_eq!(s.lines(b), [format!("* {dn} left (gone)")]);
}

/// Framing: on EOF a line being discarded (too long) is not delivered.
#[test]
fn framing_eof_while_discarding_delivers_nothing() {
    let mut s = Driver::untimed(line_config(20), 1);
    let (a, an, b, _) = s.pair();
    s.send(a, "u".repeat(30));
    assert_eq!(s.lines(a).len(), 1);
    s.send(a, "still the long line");
    s.eof(a);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.lines(a), Vec::<String>::new());
}
