//! Rule tests for `docs/protocol.md`, "Lines the server sends": one
//! deterministic test (or a few) per rule, each named `lines_*` and citing
//! its rule.
//!
//! The tests drive one `chat_core::Server` through
//! `chat_core::testkit::Driver`, the simulated driver that follows the run
//! loop of the crate docs on a virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::testkit::rules::line_config;
use chat_core::testkit::{Driver, Seen, check_sent_bytes};

/// Lines the server sends: every line ends with LF, never CRLF, is UTF-8
/// and holds no control character but TAB, even with hostile input from
/// clients that end their lines with CRLF.
#[test]
fn lines_end_with_lf_never_crlf() {
    let mut s = Driver::untimed(line_config(32), 9);
    let [(a, _), (b, bn), (c, _)] = s.trio();
    let inputs: &[&[u8]] = &[
        b"hi\r\n",
        b"\r\r\r\n",
        b"/who\r\n",
        b"/help\r\n",
        b"/me \x1b[5m\r\n",
        b"/bogus\r\n",
        b"/nick \r\n",
        b"/nick x\ry\r\n",
        b"\xff\x00\x7f\r\n",
        b"0123456789012345678901234567890123456789\r\n",
        b"tab\tin\r\n",
    ];
    for input in inputs {
        s.send(a, input);
        s.send(c, input);
    }
    s.send(a, format!("/msg {bn} \r\r\n"));
    s.send(a, "/quit \r\x1b\r\n");
    let mut all = Vec::new();
    for seen in s.trace() {
        if let Seen::Bytes(_, bytes) = seen {
            all.extend_from_slice(bytes);
        }
    }
    assert!(all.len() > 1000);
    assert!(!all.windows(2).any(|w| w == b"\r\n"), "CRLF sent");
    assert!(!all.contains(&b'\r'));
    check_sent_bytes(&all);
    assert!(!s.lines(b).is_empty());
}

/// Lines the server sends: `NICK: TEXT` to every other client, never echoed
/// to the sender.
#[test]
fn lines_chat_line_to_all_others_not_sender() {
    let mut s = Driver::plain();
    let [(a, an), (b, _), (c, _)] = s.trio();
    s.send(a, "hello there\n");
    assert_eq!(
        s.lines(a),
        Vec::<String>::new(),
        "never echoed to the sender"
    );
    assert_eq!(s.lines(b), [format!("{an}: hello there")]);
    assert_eq!(s.lines(c), [format!("{an}: hello there")]);
}
