//! protocol.md, "Framing": LF ends a line, one CR before it is dropped, the
//! line limit, and EOF.

use super::clients;
use crate::{ServerProcess, Target, sync};

/// Framing: LF ends a line, so several lines in one write arrive as several
/// chat lines, in order; the sender gets none of them back.
pub fn framing_several_lines_in_one_write(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    a.send(b"one\ntwo\nthree, four\n");
    let n = a.nick().to_owned();
    b.expect_lines(&[
        &format!("{n}: one"),
        &format!("{n}: two"),
        &format!("{n}: three, four"),
    ]);
    sync(&mut b, &mut [&mut a]);
}

/// Framing: a line split across many reads (sent one byte per write, with
/// the CR and the LF in writes of their own) is still one line.
pub fn framing_line_sent_one_byte_at_a_time(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    for byte in b"hello, one byte at a time\r\n" {
        a.send(&[*byte]);
    }
    for byte in "d\u{e9}j\u{e0} vu \u{1f600}\n".as_bytes() {
        a.send(&[*byte]);
    }
    let n = a.nick().to_owned();
    b.expect_line(&format!("{n}: hello, one byte at a time"));
    b.expect_line(&format!("{n}: d\u{e9}j\u{e0} vu \u{1f600}"));
    sync(&mut b, &mut [&mut a]);
}

/// Framing: one CR right before the LF is dropped; any other CR is a control
/// character (Sanitizing) and becomes U+FFFD; a bare CRLF is an empty line
/// and is ignored.
pub fn framing_crlf_drops_one_cr(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    a.send(b"crlf line\r\n");
    a.send(b"\r\n");
    a.send(b"two crs\r\r\n");
    a.send(b"in\rside\r\n");
    let n = a.nick().to_owned();
    b.expect_lines(&[
        &format!("{n}: crlf line"),
        &format!("{n}: two crs\u{fffd}"),
        &format!("{n}: in\u{fffd}side"),
    ]);
    sync(&mut a, &mut [&mut b]);
    sync(&mut b, &mut [&mut a]);
}

/// Framing: EOF ends an unterminated last line, which is delivered like any
/// other (here a chat line, and a `/quit` with a reason); then the client
/// leaves and its connection is closed.
pub fn framing_eof_ends_unterminated_last_line(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b, mut c] = clients(&server);
    a.send(b"last words");
    a.shutdown_write();
    let na = a.nick().to_owned();
    b.expect_lines(&[&format!("{na}: last words"), &format!("* {na} left")]);
    c.expect_lines(&[&format!("{na}: last words"), &format!("* {na} left")]);
    a.assert_closed();

    c.send(b"/quit see you\r");
    c.shutdown_write();
    c.expect_line("* bye");
    c.assert_closed();
    b.expect_line(&format!("* {} left (see you)", c.nick()));
}

/// Framing: 1000 lines written as fast as possible, one write each, all
/// arrive complete and in order.
pub fn framing_thousand_rapid_lines_in_order(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    for i in 0..1000 {
        a.send(format!("rapid line {i:04} of 1000\n").as_bytes());
    }
    let n = a.nick().to_owned();
    for i in 0..1000 {
        b.expect_line(&format!("{n}: rapid line {i:04} of 1000"));
    }
    sync(&mut b, &mut [&mut a]);
}

/// Framing (line limit, with `--max-line 64`): a line of exactly 64 bytes
/// (CR excluded) passes; a longer one is discarded with
/// `* error: line too long (max 64 bytes), discarded`, once per line however
/// it is split, the connection stays open and the next line works.
pub fn framing_max_line_discards_once_and_keeps_connection(target: &Target) {
    let server = ServerProcess::start_with(target, &["--max-line", "64"]);
    let [mut a, mut b] = clients(&server);
    let n = a.nick().to_owned();
    let error = "* error: line too long (max 64 bytes), discarded";
    let exact = "x".repeat(64);

    // Exactly 64 bytes, with CRLF, then with LF only, then with the CR and
    // the LF arriving in writes of their own.
    a.send(format!("{exact}\r\n{exact}\n").as_bytes());
    a.send(exact.as_bytes());
    a.send(b"\r");
    a.send(b"\n");
    for _ in 0..3 {
        b.expect_line(&format!("{n}: {exact}"));
    }
    sync(&mut b, &mut [&mut a]);

    // 65 bytes: one error, then the next line works.
    a.send(format!("{}\n", "y".repeat(65)).as_bytes());
    a.expect_line(error);
    a.send(b"after the long line\n");
    b.expect_line(&format!("{n}: after the long line"));

    // 65 bytes then CRLF: the CR does not count, but 65 is still too long.
    a.send(format!("{}\r\n", "z".repeat(65)).as_bytes());
    a.expect_line(error);

    // A 1000-byte line in 50 writes: still one error.
    for _ in 0..50 {
        a.send("w".repeat(20).as_bytes());
    }
    a.send(b"\n");
    a.expect_line(error);

    // A long line and a good one in the same write.
    a.send(format!("{}\nok after\n", "v".repeat(300)).as_bytes());
    a.expect_line(error);
    b.expect_line(&format!("{n}: ok after"));

    // Nothing else came to either: no second error for any line.
    sync(&mut b, &mut [&mut a]);
    sync(&mut a, &mut [&mut b]);
}

/// Framing (line limit): a 10 MB line without LF gets the error once, is not
/// buffered (the server's RSS grows by less than 8 MiB), and the connection
/// works again after the LF that ends it.
pub fn framing_ten_megabyte_line_without_lf_is_bounded(target: &Target) {
    const SIZE: usize = 10 * 1024 * 1024;
    const SLACK: u64 = 8 * 1024 * 1024;
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    sync(&mut a, &mut [&mut b]);
    let before = server.rss_bytes();

    let chunk = vec![b'm'; 64 * 1024];
    for _ in 0..SIZE / chunk.len() {
        a.send(&chunk);
    }
    a.expect_line("* error: line too long (max 4096 bytes), discarded");
    a.send(b"\nstill here\n");
    b.expect_line(&format!("{}: still here", a.nick()));
    // The server has read every byte: the marker comes after all of them.
    sync(&mut b, &mut [&mut a]);
    let after = server.rss_bytes();
    assert!(
        after < before + SLACK,
        "server RSS grew from {before} to {after} bytes while discarding a {SIZE}-byte line"
    );
}
