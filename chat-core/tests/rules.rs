//! One deterministic test (or a few) per rule of `docs/protocol.md`, each
//! naming the section it checks in its name and doc comment: "Framing",
//! "Sanitizing", "Lines the server sends", "Nicknames", "Commands",
//! "Session events", "Limits and policies".
//!
//! The tests drive one `chat_core::Server` through [`Session`], a small
//! driver that follows the run loop of the crate docs on a virtual clock.
// The driver's helpers fail the test like an assertion would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chat_core::{Bytes, Config, ConfigError, ConnId, Event, HELP, Output, Reason, Server};

// ---------------------------------------------------------------------------
// Test driver
// ---------------------------------------------------------------------------

/// Everything the driver saw, in order: for determinism checks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Bytes(ConnId, Vec<u8>),
    Close(ConnId, Reason, bool),
    Event(Event),
}

/// A driver for one server on a virtual clock: the tests only ever pass
/// `base` plus an offset that grows by one millisecond per input.
struct Session {
    server: Server,
    base: Instant,
    tick: u64,
    next_port: u16,
    /// Bytes received per connection, not yet taken by [`Session::lines`].
    inbox: HashMap<ConnId, Vec<u8>>,
    /// Connections the driver does not report writes for (a client that
    /// does not read): their bytes count against `max_queue`.
    stalled: HashSet<ConnId>,
    closes: Vec<(ConnId, Reason, bool)>,
    events: Vec<Event>,
    transcript: Vec<Seen>,
}

impl Session {
    fn new(config: Config, seed: u64) -> Session {
        Session {
            server: Server::new(config, seed),
            base: Instant::now(),
            tick: 0,
            next_port: 40_000,
            inbox: HashMap::new(),
            stalled: HashSet::new(),
            closes: Vec::new(),
            events: Vec::new(),
            transcript: Vec::new(),
        }
    }

    fn plain() -> Session {
        Session::new(Config::default(), 7)
    }

    fn now(&mut self) -> Instant {
        self.tick += 1;
        self.base + Duration::from_millis(self.tick)
    }

    /// Accepts a connection and drains.
    fn connect(&mut self) -> ConnId {
        let now = self.now();
        let peer = SocketAddr::from(([127, 0, 0, 1], self.next_port));
        self.next_port += 1;
        let conn = self.server.handle_connect(now, peer);
        self.drain();
        conn
    }

    /// Connects a client that is admitted, checks its welcome and that every
    /// other joined client got exactly `* NICK joined`, and returns its id
    /// and (generated) nick.
    fn join(&mut self, others: &[ConnId]) -> (ConnId, String) {
        let conn = self.connect();
        let lines = self.lines(conn);
        assert_eq!(lines.len(), 1, "one welcome line: {lines:?}");
        let nick = welcome_nick(&lines[0]);
        for &other in others {
            assert_eq!(self.lines(other), [format!("* {nick} joined")]);
        }
        (conn, nick)
    }

    fn send(&mut self, conn: ConnId, bytes: impl AsRef<[u8]>) {
        let now = self.now();
        self.server.handle_bytes(now, conn, bytes.as_ref());
        self.drain();
    }

    fn eof(&mut self, conn: ConnId) {
        let now = self.now();
        self.server.handle_eof(now, conn);
        self.drain();
    }

    fn closed(&mut self, conn: ConnId) {
        let now = self.now();
        self.server.handle_closed(now, conn);
        self.drain();
    }

    fn shutdown(&mut self) {
        let now = self.now();
        self.server.handle_shutdown(now);
        self.drain();
    }

    fn stall(&mut self, conn: ConnId) {
        self.stalled.insert(conn);
    }

    /// Runs the driver loop of the crate docs until `poll_output` is `None`.
    fn drain(&mut self) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Transmit(conn) => {
                    self.transmit(conn);
                }
                Output::Close {
                    conn,
                    reason,
                    flush,
                } => {
                    if flush {
                        self.transmit(conn);
                    }
                    self.transcript
                        .push(Seen::Close(conn, reason.clone(), flush));
                    self.closes.push((conn, reason, flush));
                }
                Output::Event(event) => {
                    // `Event::clone(&event)` works whether or not the
                    // output boxes its event.
                    let event = Event::clone(&event);
                    self.transcript.push(Seen::Event(event.clone()));
                    self.events.push(event);
                }
            }
        }
        // Limits and policies: the bytes held for a client never exceed
        // max_queue.
        for conn in self.server.connections().collect::<Vec<_>>() {
            let pending = self.server.pending_bytes(conn).unwrap_or(0);
            assert!(
                pending <= self.server.config().max_queue,
                "pending_bytes({conn}) = {pending} over max_queue"
            );
        }
    }

    /// `poll_transmit`, recording the bytes, then `handle_written` unless
    /// the connection is stalled.
    fn transmit(&mut self, conn: ConnId) -> Vec<u8> {
        let mut chunks: Vec<Bytes> = Vec::new();
        let len = self.server.poll_transmit(conn, &mut chunks);
        let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(len, bytes.len(), "poll_transmit returns the byte count");
        check_sent_bytes(&bytes);
        if !self.stalled.contains(&conn) {
            let now = self.now();
            self.server.handle_written(now, conn, len);
        }
        if !bytes.is_empty() {
            self.transcript.push(Seen::Bytes(conn, bytes.clone()));
            self.inbox
                .entry(conn)
                .or_default()
                .extend_from_slice(&bytes);
        }
        bytes
    }

    /// The lines `conn` received since the last call, without their LF.
    fn lines(&mut self, conn: ConnId) -> Vec<String> {
        let bytes = self.inbox.remove(&conn).unwrap_or_default();
        if bytes.is_empty() {
            return Vec::new();
        }
        assert_eq!(bytes.last(), Some(&b'\n'), "output ends mid-line");
        let text = String::from_utf8(bytes).expect("server output is UTF-8");
        text.split_terminator('\n').map(str::to_owned).collect()
    }

    /// Close outputs since the last call: (conn, reason, flush).
    fn closes(&mut self) -> Vec<(ConnId, Reason, bool)> {
        std::mem::take(&mut self.closes)
    }

    /// Events since the last call.
    fn events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Takes every pending line, close and event, asserting there are none.
    fn assert_quiet(&mut self, conns: &[ConnId]) {
        for &conn in conns {
            assert_eq!(self.lines(conn), Vec::<String>::new(), "{conn} got lines");
        }
        assert_eq!(self.closes(), [], "unexpected closes");
        assert_eq!(self.events(), [], "unexpected events");
    }

    /// Renames `conn` to `nick`, taking the lines it caused everywhere.
    fn rename(&mut self, conn: ConnId, nick: &str, others: &[ConnId]) {
        self.send(conn, format!("/nick {nick}\n"));
        assert_eq!(self.lines(conn), [format!("* you are now known as {nick}")]);
        for &other in others {
            assert_eq!(self.lines(other).len(), 1);
        }
        self.events();
    }
}

/// Protocol.md intro / "Lines the server sends": whatever the server sends
/// is whole LF-terminated lines (never CRLF), valid UTF-8, with no control
/// character but TAB (and the LF that ends each line).
fn check_sent_bytes(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    assert_eq!(bytes.last(), Some(&b'\n'), "a chunk ends mid-line");
    assert!(!bytes.contains(&b'\r'), "CR sent: {bytes:?}");
    let text = std::str::from_utf8(bytes).expect("valid UTF-8");
    for c in text.chars() {
        assert!(
            c == '\t' || c == '\n' || !c.is_control(),
            "control character {c:?} sent in {text:?}"
        );
        assert!(
            !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'),
            "bidi control sent"
        );
    }
}

/// The nick named by a welcome line.
fn welcome_nick(line: &str) -> String {
    let rest = line
        .strip_prefix("* welcome, you are ")
        .unwrap_or_else(|| panic!("not a welcome line: {line:?}"));
    rest.split(';').next().unwrap().to_owned()
}

fn small_config(max_line: usize) -> Config {
    let mut config = Config {
        max_line,
        ..Config::default()
    };
    config.max_queue = config.min_queue();
    config.validate().unwrap();
    config
}

/// Two joined clients: (a, a's nick, b, b's nick).
fn pair(s: &mut Session) -> (ConnId, String, ConnId, String) {
    let (a, an) = s.join(&[]);
    let (b, bn) = s.join(&[a]);
    s.events();
    (a, an, b, bn)
}

/// Three joined clients with their nicks.
fn trio(s: &mut Session) -> [(ConnId, String); 3] {
    let (a, an) = s.join(&[]);
    let (b, bn) = s.join(&[a]);
    let (c, cn) = s.join(&[a, b]);
    s.events();
    [(a, an), (b, bn), (c, cn)]
}

/// What `b` receives when `a` sends `bytes` (a chat line, presumably),
/// with the `NICK: ` prefix removed.
fn relayed(s: &mut Session, a: ConnId, an: &str, b: ConnId, bytes: &[u8]) -> Vec<String> {
    s.send(a, bytes);
    assert_eq!(s.lines(a), Vec::<String>::new(), "echoed to the sender");
    s.lines(b)
        .into_iter()
        .map(|l| {
            l.strip_prefix(&format!("{an}: "))
                .unwrap_or_else(|| panic!("not a chat line from {an}: {l:?}"))
                .to_owned()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

/// Framing: a line ends at LF, and only there.
#[test]
fn framing_line_ends_at_lf() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    s.send(a, "hello");
    s.assert_quiet(&[a, b]);
    s.send(a, " world\n");
    assert_eq!(s.lines(b), [format!("{an}: hello world")]);
}

/// Framing: one CR right before the LF is dropped.
#[test]
fn framing_one_cr_before_lf_is_dropped() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    assert_eq!(relayed(&mut s, a, &an, b, b"hi\r\n"), ["hi"]);
    // Also when the CR and the LF arrive in different reads.
    s.send(a, "yo\r");
    s.assert_quiet(&[a, b]);
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), ["yo"]);
}

/// Framing: any other CR (lone, mid-line, or a second one before the LF) is
/// an ordinary control character, shown as U+FFFD.
#[test]
fn framing_other_cr_is_a_control_character() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    assert_eq!(relayed(&mut s, a, &an, b, b"a\rb\n"), ["a\u{fffd}b"]);
    assert_eq!(relayed(&mut s, a, &an, b, b"\rab\n"), ["\u{fffd}ab"]);
    assert_eq!(relayed(&mut s, a, &an, b, b"ab\r\r\n"), ["ab\u{fffd}"]);
    // A CR alone is not a line end.
    s.send(a, "x\ry");
    s.assert_quiet(&[a, b]);
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), ["x\u{fffd}y"]);
}

/// Framing: a line may arrive one byte per read.
#[test]
fn framing_line_split_byte_by_byte() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    let line = "h\u{e9}llo \u{1f600}\r\n".as_bytes();
    for &byte in &line[..line.len() - 1] {
        s.send(a, [byte]);
        s.assert_quiet(&[a, b]);
    }
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), ["h\u{e9}llo \u{1f600}"]);
}

/// Framing: several lines may arrive in one read, and are handled in order.
#[test]
fn framing_several_lines_in_one_read() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    assert_eq!(
        relayed(&mut s, a, &an, b, b"one\ntwo\r\nthree\nfour"),
        ["one", "two", "three"]
    );
    assert_eq!(relayed(&mut s, a, &an, b, b"\nfive\n"), ["four", "five"]);
}

/// Framing: the result never depends on how the stream was split, over
/// every two-way split and byte by byte, with long lines, CRs, split UTF-8.
#[test]
fn framing_result_independent_of_splits() {
    let stream: &[u8] = b"hi\r\nabcdefghijklmnop\r\n0123456789abcdefg\nx\ry\r\r\n\
        \xe2\x82\xac \xf0\x9f\nlonglonglonglonglonglong\r\nend";
    let run = |chunks: &[&[u8]]| {
        let mut s = Session::new(small_config(16), 3);
        let (a, _, b, _) = pair(&mut s);
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
    let mut s = Session::new(small_config(20), 1);
    let (a, an, b, _) = pair(&mut s);
    let line = "x".repeat(20);
    assert_eq!(
        relayed(&mut s, a, &an, b, format!("{line}\n").as_bytes()),
        [line.as_str()]
    );
    // Also when it arrives in pieces, and when its LF comes alone.
    s.send(a, &line[..7]);
    s.send(a, &line[7..]);
    assert_eq!(s.server.buffered_bytes(a), Some(20));
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), [line.as_str()]);
    for &byte in line.as_bytes() {
        s.send(a, [byte]);
    }
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), [line]);
}

/// Framing, max line: max bytes and then the dropped CR pass (the CR is
/// not counted), in one read or split around the CR.
#[test]
fn framing_max_line_plus_cr_passes() {
    let mut s = Session::new(small_config(20), 1);
    let (a, an, b, _) = pair(&mut s);
    let line = "y".repeat(20);
    assert_eq!(
        relayed(&mut s, a, &an, b, format!("{line}\r\n").as_bytes()),
        [line.as_str()]
    );
    s.send(a, &line);
    s.send(a, "\r");
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server.buffered_bytes(a), Some(21), "max + the CR");
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), [line.as_str()]);
    s.send(a, format!("{line}\r"));
    s.assert_quiet(&[a, b]);
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), [line]);
}

/// Framing, max line: max+1 bytes fail with the error naming the configured
/// N; the line reaches nobody.
#[test]
fn framing_max_line_plus_one_fails() {
    for max in [16, 20, 4096] {
        let mut s = Session::new(small_config(max), 1);
        let (a, _, b, _) = pair(&mut s);
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
    let mut s = Session::new(small_config(20), 1);
    let (a, an, b, _) = pair(&mut s);
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
    let mut s = Session::new(small_config(20), 1);
    let (a, an, b, _) = pair(&mut s);
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
        let mut s = Session::plain();
        let (a, an, b, _) = pair(&mut s);
        let chunk = vec![b'q'; read];
        let mut sent = 0;
        while sent < 1 << 20 {
            s.send(a, &chunk);
            sent += read;
            let buffered = s.server.buffered_bytes(a).unwrap();
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
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
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
    let mut s = Session::new(small_config(20), 1);
    let (a, an, b, _) = pair(&mut s);
    s.send(a, "u".repeat(30));
    assert_eq!(s.lines(a).len(), 1);
    s.send(a, "still the long line");
    s.eof(a);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.lines(a), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Sanitizing
// ---------------------------------------------------------------------------

/// Sanitizing 1: invalid UTF-8 becomes U+FFFD exactly as
/// `String::from_utf8_lossy` does.
#[test]
fn sanitizing_invalid_utf8_like_from_utf8_lossy() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
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
        assert_eq!(relayed(&mut s, a, &an, b, &line), [want], "{raw:?}");
    }
}

/// Sanitizing 2: C0 controls except TAB, and DEL, become U+FFFD; TAB stays.
#[test]
fn sanitizing_c0_and_del_replaced_tab_kept() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    for byte in (0u8..0x20).chain([0x7f]) {
        if byte == b'\n' {
            continue;
        }
        let got = relayed(&mut s, a, &an, b, &[b'a', byte, b'b', b'\n']);
        let want = if byte == b'\t' { "a\tb" } else { "a\u{fffd}b" };
        assert_eq!(got, [want], "byte {byte:#04x}");
    }
}

/// Sanitizing 2: C1 controls (U+0080..U+009F) and the bidi controls
/// (U+202A..U+202E, U+2066..U+2069) become U+FFFD, one per character;
/// their neighbours do not.
#[test]
fn sanitizing_c1_and_bidi_replaced() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    let forbidden = ('\u{80}'..='\u{9f}')
        .chain('\u{202a}'..='\u{202e}')
        .chain('\u{2066}'..='\u{2069}');
    for c in forbidden {
        let got = relayed(&mut s, a, &an, b, format!("a{c}b\n").as_bytes());
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
        let got = relayed(&mut s, a, &an, b, format!("a{c}b\n").as_bytes());
        assert_eq!(got, [format!("a{c}b")], "{c:?} is not a control");
    }
}

/// Sanitizing 2: an ANSI escape sequence cannot drive anyone's terminal.
#[test]
fn sanitizing_ansi_escape() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    assert_eq!(
        relayed(&mut s, a, &an, b, b"\x1b[31mred\x1b[0m\x07\n"),
        ["\u{fffd}[31mred\u{fffd}[0m\u{fffd}"]
    );
    assert_eq!(
        relayed(&mut s, a, &an, b, "\u{9b}2J\u{202e}evil\n".as_bytes()),
        ["\u{fffd}2J\u{fffd}evil"]
    );
}

/// Sanitizing 3: trailing whitespace (`char::is_whitespace`, TAB and U+00A0
/// included) is trimmed; leading and inner whitespace is kept.
#[test]
fn sanitizing_trailing_whitespace_trimmed_leading_kept() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    assert_eq!(
        relayed(
            &mut s,
            a,
            &an,
            b,
            "hi \t\u{a0}\u{3000}\u{2029} \n".as_bytes()
        ),
        ["hi"]
    );
    assert_eq!(relayed(&mut s, a, &an, b, b"  \tlead\n"), ["  \tlead"]);
    assert_eq!(relayed(&mut s, a, &an, b, b"in  \t ner \n"), ["in  \t ner"]);
    // Control characters that are whitespace are replaced first (rule 2),
    // so they are not trimmed (rule 3).
    assert_eq!(
        relayed(&mut s, a, &an, b, "vt\x0b\n".as_bytes()),
        ["vt\u{fffd}"]
    );
    assert_eq!(
        relayed(&mut s, a, &an, b, "nel\u{85}\n".as_bytes()),
        ["nel\u{fffd}"]
    );
}

/// Sanitizing 3: a line that is empty after trimming is ignored: nobody gets
/// anything, not even an error.
#[test]
fn sanitizing_empty_lines_ignored() {
    let mut s = Session::plain();
    let [(a, _), (b, _), (c, _)] = trio(&mut s);
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
    let mut s = Session::plain();
    let [(a, an), (b, bn), (c, _)] = trio(&mut s);
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
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    s.send(a, "/who \t \n");
    assert_eq!(s.lines(a).len(), 1);
    assert!(s.lines(b).is_empty());
    assert_eq!(relayed(&mut s, a, &an, b, b" /who\n"), [" /who"]);
    assert_eq!(relayed(&mut s, a, &an, b, b"\x01/who\n"), ["\u{fffd}/who"]);
}

// ---------------------------------------------------------------------------
// Lines the server sends
// ---------------------------------------------------------------------------

/// Lines the server sends: every line ends with LF, never CRLF, is UTF-8
/// and holds no control character but TAB, even with hostile input from
/// clients that end their lines with CRLF.
#[test]
fn sent_lines_end_with_lf_never_crlf() {
    let mut s = Session::new(small_config(32), 9);
    let [(a, _), (b, bn), (c, _)] = trio(&mut s);
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
    for seen in &s.transcript {
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
fn sent_chat_line_to_all_others_not_sender() {
    let mut s = Session::plain();
    let [(a, an), (b, _), (c, _)] = trio(&mut s);
    s.send(a, "hello there\n");
    assert_eq!(
        s.lines(a),
        Vec::<String>::new(),
        "never echoed to the sender"
    );
    assert_eq!(s.lines(b), [format!("{an}: hello there")]);
    assert_eq!(s.lines(c), [format!("{an}: hello there")]);
}

// ---------------------------------------------------------------------------
// Nicknames
// ---------------------------------------------------------------------------

/// Nicknames: a generated nick is 4 characters from [A-Za-z0-9], the same
/// in the welcome line, the Joined event and `Server::nick`; all differ.
#[test]
fn nicknames_generated_four_alphanumerics_unique() {
    let mut s = Session::new(Config::default(), 11);
    let mut keys = HashSet::new();
    let mut conns = Vec::new();
    for _ in 0..300 {
        let conn = s.connect();
        let nick = welcome_nick(&s.lines(conn)[0]);
        assert_eq!(nick.len(), 4, "{nick:?}");
        assert!(nick.bytes().all(|b| b.is_ascii_alphanumeric()), "{nick:?}");
        assert_eq!(s.server.nick(conn), Some(nick.as_str()));
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
    let mut probe = Session::new(Config::default(), 5);
    let mut drawn = Vec::new();
    for _ in 0..3 {
        let conn = probe.connect();
        drawn.push(welcome_nick(&probe.lines(conn)[0]));
        probe.closed(conn);
    }
    let variant = if drawn[1].to_uppercase() != drawn[1] {
        drawn[1].to_uppercase()
    } else {
        drawn[1].to_lowercase()
    };
    assert_ne!(variant, drawn[1], "seed 5 draws a nick with a letter");

    let mut s = Session::new(Config::default(), 5);
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
        let mut s = Session::new(Config::default(), seed);
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
    let mut s = Session::plain();
    let (a, _, b, _) = pair(&mut s);
    let valid = [
        "x".to_owned(),
        "Zo\u{eb}_-9".to_owned(),
        "\u{65e5}\u{672c}\u{8a9e}".to_owned(),
        "-_-".to_owned(),
        "x".repeat(32),
        "\u{e9}".repeat(32),
        "\u{1d49c}".repeat(32),
    ];
    let mut old = s.server.nick(a).unwrap().to_owned();
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
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
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
        assert_eq!(s.server.nick(a), Some(an.as_str()));
    }
}

/// Nicknames: unique among connected clients after `to_lowercase()`; the
/// refused rename changes nothing and tells nobody else.
#[test]
fn nicknames_taken_case_insensitively() {
    let mut s = Session::plain();
    let [(a, _), (b, bn), (c, _)] = trio(&mut s);
    s.rename(a, "Alice", &[b, c]);
    for attempt in ["Alice", "alice", "ALICE", "aLiCe"] {
        s.send(b, format!("/nick {attempt}\n"));
        assert_eq!(
            s.lines(b),
            [format!("* error: nick {attempt} is already taken")]
        );
        s.assert_quiet(&[a, b, c]);
        assert_eq!(s.server.nick(b), Some(bn.as_str()));
    }
    // Non-ASCII case folding too.
    s.rename(a, "\u{c9}mile", &[b, c]);
    s.send(b, "/nick \u{e9}MILE\n");
    assert_eq!(s.lines(b), ["* error: nick \u{e9}MILE is already taken"]);
}

/// Nicknames: a nick is free again once its holder renamed or left.
#[test]
fn nicknames_freed_by_rename_and_leave() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
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
    let mut s = Session::plain();
    let (a, _, b, _) = pair(&mut s);
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
    assert_eq!(s.server.nick(a), Some("CAROL"));
}

/// Nicknames: renaming to exactly one's current nick is a no-op success:
/// no error, nobody else is told, nothing is logged.
#[test]
fn nicknames_same_nick_is_noop_success() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    s.send(a, format!("/nick {an}\n"));
    assert_eq!(s.lines(a), [format!("* you are now known as {an}")]);
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server.nick(a), Some(an.as_str()));
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// Commands: command names are case-insensitive.
#[test]
fn commands_names_case_insensitive() {
    let mut s = Session::plain();
    let (a, an, b, bn) = pair(&mut s);
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
    let mut s = Session::plain();
    let [(a, an), (b, _), (c, _)] = trio(&mut s);
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
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    for line in [
        "/nick\n",
        "/nick   \n",
        "/nick foo bar\n",
        "/nick foo\tbar\n",
    ] {
        s.send(a, line);
        assert_eq!(s.lines(a), ["* error: usage: /nick NAME"], "{line:?}");
        s.assert_quiet(&[a, b]);
        assert_eq!(s.server.nick(a), Some(an.as_str()));
    }
}

/// Commands, /nick: the sender gets `* you are now known as NAME`, every
/// other client `* OLD is now known as NAME`.
#[test]
fn commands_nick_renames() {
    let mut s = Session::plain();
    let [(a, an), (b, _), (c, _)] = trio(&mut s);
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
    let mut s = Session::plain();
    let [(a, an), (b, _), (c, _)] = trio(&mut s);
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
    let mut s = Session::plain();
    let [(a, an), (b, _), (c, _)] = trio(&mut s);
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
    let mut s = Session::plain();
    let (a, _, b, bn) = pair(&mut s);
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
    let mut s = Session::plain();
    let [(a, _), (b, _), (c, _)] = trio(&mut s);
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
    let mut s = Session::plain();
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

/// Commands, /help: the sender gets `* commands:`, then one `* ` line per
/// command; nobody else gets anything.
#[test]
fn commands_help() {
    let mut s = Session::plain();
    let (a, _, b, _) = pair(&mut s);
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
    let mut s = Session::plain();
    let [(a, an), (b, _), (c, _)] = trio(&mut s);
    s.send(a, "/quit\nlater\n");
    assert_eq!(s.lines(a), ["* bye"]);
    assert_eq!(s.closes(), [(a, Reason::Quit(None), true)]);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.lines(c), [format!("* {an} left")]);
    // Its bye came before its Close, and nothing after.
    let pos_bye = s
        .transcript
        .iter()
        .position(|x| matches!(x, Seen::Bytes(id, b) if *id == a && b == b"* bye\n"))
        .unwrap();
    let pos_close = s
        .transcript
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
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
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
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    assert_eq!(relayed(&mut s, a, &an, b, b"//help me\n"), ["/help me"]);
    assert_eq!(relayed(&mut s, a, &an, b, b"//\n"), ["/"]);
    assert_eq!(relayed(&mut s, a, &an, b, b"///quit\n"), ["//quit"]);
    assert_eq!(s.closes(), []);
}

/// Commands: anything else, bare `/` included, gets
/// `* error: unknown command /X, try /help` and reaches nobody else.
#[test]
fn commands_unknown() {
    let mut s = Session::plain();
    let (a, _, b, _) = pair(&mut s);
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

// ---------------------------------------------------------------------------
// Session events
// ---------------------------------------------------------------------------

/// Session events: a newcomer's first line is one welcome line naming its
/// nick and the users online, itself included; every other client gets
/// `* NICK joined`, the newcomer nothing else.
#[test]
fn session_welcome_and_joined() {
    let mut s = Session::plain();
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
    let mut s = Session::plain();
    let [(a, an), (b, _), (c, _)] = trio(&mut s);
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
            reason: Reason::Eof
        }]
    );
}

/// Session events: a client whose connection fails (reported with
/// `handle_closed`) leaves without a reason; no Close is asked for.
#[test]
fn session_left_on_closed() {
    let mut s = Session::plain();
    let [(a, an), (b, _), (c, _)] = trio(&mut s);
    s.closed(a);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.lines(c), [format!("* {an} left")]);
    assert_eq!(s.closes(), []);
    assert_eq!(
        s.events(),
        [Event::Left {
            conn: a,
            nick: an,
            reason: Reason::Closed
        }]
    );
    // Reported closed once more: nothing more happens.
    s.closed(a);
    s.assert_quiet(&[a, b, c]);
}

/// Session events: the leave notices say why only for /quit with a reason
/// and `too slow`; a closed Close is reported once and announced once.
#[test]
fn session_left_once_per_client() {
    let mut s = Session::plain();
    let (a, an, b, _) = pair(&mut s);
    s.send(a, "/quit\n");
    s.eof(a);
    s.closed(a);
    assert_eq!(s.lines(b), [format!("* {an} left")]);
    assert_eq!(s.closes().len(), 1);
}

/// Session events / Limits and policies: on shutdown every client gets
/// `* server shutting down` and a flushing Close; nobody is told of anyone
/// else leaving; later connections get the same line and are closed.
#[test]
fn session_shutdown() {
    let mut s = Session::plain();
    let [(a, _), (b, _), (c, _)] = trio(&mut s);
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
    s.closed(a);
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
    let mut s = Session::plain();
    let (a, _, b, bn) = pair(&mut s);
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
    for seen in &s.transcript {
        if let Seen::Event(event) = seen {
            assert!(!format!("{event:?}").contains("secret"), "{event:?}");
        }
    }
    s.lines(b);
}

// ---------------------------------------------------------------------------
// Limits and policies
// ---------------------------------------------------------------------------

/// Limits, max clients: a connection over the limit gets
/// `* error: server full` and a flushing Close, is logged as Rejected, and
/// nobody else sees anything of it.
#[test]
fn limits_max_clients_refuses_over_the_limit() {
    let config = Config {
        max_clients: 2,
        ..Config::default()
    };
    let mut s = Session::new(config, 1);
    let (a, _, b, _) = pair(&mut s);
    let c = s.connect();
    assert_eq!(s.lines(c), ["* error: server full"]);
    assert_eq!(s.closes(), [(c, Reason::ServerFull, true)]);
    assert!(matches!(
        &s.events()[..],
        [Event::Rejected { conn, reason: Reason::ServerFull, .. }] if *conn == c
    ));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server.nick(c), None);
    // Its input goes nowhere; its closing frees no slot.
    s.send(c, "hello?\n/who\n");
    s.eof(c);
    s.closed(c);
    s.assert_quiet(&[a, b, c]);
    let d = s.connect();
    assert_eq!(s.lines(d), ["* error: server full"]);
    s.closes();
    s.events();
    s.send(a, "/who\n");
    assert!(s.lines(a)[0].starts_with("* 2 users online"));
}

/// Limits, max clients: a slot frees when a leaver's connection is closed
/// (`handle_closed`), not when its Close is asked for.
#[test]
fn limits_max_clients_slot_frees_on_closed() {
    let config = Config {
        max_clients: 2,
        ..Config::default()
    };
    let mut s = Session::new(config, 1);
    let (a, _, b, _) = pair(&mut s);
    s.send(a, "/quit\n");
    assert_eq!(s.closes().len(), 1);
    s.lines(a);
    s.lines(b);
    let c = s.connect();
    assert_eq!(s.lines(c), ["* error: server full"], "a is still open");
    s.closes();
    s.events();
    s.closed(a);
    s.assert_quiet(&[a, b]);
    let (_, dn) = s.join(&[b]);
    assert_eq!(dn.len(), 4);
    // EOF and failures free their slot on handle_closed the same way.
    s.eof(b);
    s.closes();
    let e = s.connect();
    assert_eq!(s.lines(e), ["* error: server full"]);
    s.closed(b);
    s.closed(e);
    let f = s.connect();
    assert!(s.lines(f)[0].starts_with("* welcome"));
}

/// Limits, max queue: a client that is never written to is disconnected as
/// `too slow` (a non-flushing Close) when its pending bytes would exceed
/// max_queue, not before; its pending bytes never exceed it; the others get
/// `* NICK left (too slow)` and keep receiving.
#[test]
fn limits_max_queue_drops_slow_client() {
    let config = small_config(64);
    let max_queue = config.max_queue;
    let mut s = Session::new(config, 2);
    let [(a, an), (b, _), (slow, slow_nick)] = trio(&mut s);
    s.stall(slow);
    s.lines(slow);
    let text = "m".repeat(60);
    let line_len = an.len() + 2 + text.len() + 1;
    let mut sent = 0;
    loop {
        let pending = s.server.pending_bytes(slow).unwrap();
        let overflows = pending + line_len > max_queue;
        s.send(a, format!("{text}\n"));
        sent += 1;
        if overflows {
            assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
            break;
        }
        assert_eq!(s.lines(b), [format!("{an}: {text}")]);
        assert_eq!(s.closes(), [], "dropped before going over");
        assert_eq!(s.server.pending_bytes(slow), Some(pending + line_len));
        assert!(sent < 1000);
    }
    assert!(sent > 10);
    assert_eq!(s.lines(a), [format!("* {slow_nick} left (too slow)")]);
    assert_eq!(
        s.lines(b),
        [
            format!("{an}: {text}"),
            format!("* {slow_nick} left (too slow)")
        ]
    );
    assert!(
        s.lines(slow)
            .iter()
            .all(|l| l.starts_with(&format!("{an}: ")))
    );
    assert!(matches!(
        &s.events()[..],
        [Event::Left { conn, reason: Reason::TooSlow, .. }] if *conn == slow
    ));
    // The others keep receiving; the slow one gets nothing more.
    s.send(a, "after\n");
    assert_eq!(s.lines(b), [format!("{an}: after")]);
    assert_eq!(s.lines(slow), Vec::<String>::new());
    s.send(slow, "ignored\n");
    s.assert_quiet(&[a, b, slow]);
}

/// Limits, max queue: a queue filled to exactly max_queue is not over it;
/// one byte more is.
#[test]
fn limits_max_queue_exact_boundary() {
    let config = small_config(64);
    let max_queue = config.max_queue;
    let mut s = Session::new(config, 2);
    let [(a, an), (b, _), (slow, slow_nick)] = trio(&mut s);
    s.stall(slow);
    let prefix = an.len() + 3;
    let room = |s: &Session| max_queue - s.server.pending_bytes(slow).unwrap();
    while room(&s) > 2 * prefix + 100 {
        s.send(a, format!("{}\n", "e".repeat(50)));
    }
    let first = (room(&s) - 2 * prefix) / 2;
    s.send(a, format!("{}\n", "e".repeat(first)));
    let last = room(&s) - prefix;
    assert!((1..=64).contains(&last));
    s.send(a, format!("{}\n", "e".repeat(last)));
    assert_eq!(s.server.pending_bytes(slow), Some(max_queue));
    assert_eq!(s.closes(), [], "exactly full is not over");
    assert!(s.server.nick(slow).is_some());
    s.send(a, "e\n");
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    assert_eq!(
        s.lines(b).last().unwrap(),
        &format!("* {slow_nick} left (too slow)")
    );
}

/// Limits, max queue: a client that goes over its limit with its own
/// replies (and never reads) is dropped as too slow too.
#[test]
fn limits_max_queue_own_replies() {
    let config = small_config(64);
    let mut s = Session::new(config, 2);
    let (a, an, b, _) = pair(&mut s);
    s.stall(a);
    for _ in 0..100 {
        s.send(a, "/help\n");
        if !s.closes().is_empty() {
            break;
        }
    }
    assert_eq!(s.lines(b), [format!("* {an} left (too slow)")]);
    assert!(s.server.nick(a).is_none());
}

/// Limits, max queue: a client whose queue a leave notice overflows is
/// disconnected at once, whoever left and however (/quit, EOF, failure).
#[test]
fn limits_max_queue_overflow_by_join_notice() {
    let config = small_config(64);
    let max_queue = config.max_queue;
    let mut s = Session::new(config, 2);
    let (a, an, slow, slow_nick) = pair(&mut s);
    s.stall(slow);
    // Fill slow's queue to the brim with lines from a.
    fill_to_brim(&mut s, a, &an, slow, max_queue);
    s.connect();
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    assert!(
        s.lines(a)
            .contains(&format!("* {slow_nick} left (too slow)"))
    );
}

/// Sends chat lines from `a` until `slow` holds more than `max_queue - 12`
/// bytes, so that any notice overflows it.
fn fill_to_brim(s: &mut Session, a: ConnId, an: &str, slow: ConnId, max_queue: usize) {
    let prefix = an.len() + 3;
    loop {
        let room = max_queue - s.server.pending_bytes(slow).unwrap();
        if room <= 12 {
            break;
        }
        let len = (room - prefix).min(60);
        s.send(a, format!("{}\n", "f".repeat(len.max(1))));
    }
    assert_eq!(s.closes(), []);
}

/// Limits, max queue: a leave notice that overflows a slow client
/// disconnects it at once, whoever leaves and however.
#[test]
fn limits_max_queue_overflow_by_leave_notice() {
    type Leave = fn(&mut Session, ConnId);
    let leaves: [(&str, Leave); 3] = [
        ("/quit", |s, b| s.send(b, "/quit bye bye\n")),
        ("EOF", |s, b| s.eof(b)),
        ("handle_closed", |s, b| s.closed(b)),
    ];
    for (how, leave) in leaves {
        let config = small_config(64);
        let max_queue = config.max_queue;
        let mut s = Session::new(config, 2);
        let [(a, an), (b, _), (slow, _)] = trio(&mut s);
        s.stall(slow);
        fill_to_brim(&mut s, a, &an, slow, max_queue);
        leave(&mut s, b);
        let closes = s.closes();
        assert!(
            closes.contains(&(slow, Reason::TooSlow, false)),
            "leaving by {how}: {closes:?}"
        );
    }
}

/// Limits, max queue: a client whose writes are reported is never dropped,
/// however much passes through it.
#[test]
fn limits_max_queue_reading_client_never_dropped() {
    let config = small_config(64);
    let max_queue = config.max_queue;
    let mut s = Session::new(config, 2);
    let (a, _, b, _) = pair(&mut s);
    let mut received = 0;
    for i in 0..2000 {
        s.send(a, format!("{i:064}\n"));
        received += s.lines(b).len();
    }
    assert_eq!(received, 2000);
    assert!(2000 * 64 > 10 * max_queue);
    assert_eq!(s.closes(), []);
    assert_eq!(s.server.pending_bytes(b), Some(0));
}

/// Limits, max queue: the longest possible line (max line invalid bytes from
/// a 32-character nick of 4-byte characters) fits a minimal max_queue.
#[test]
fn limits_max_queue_holds_longest_line() {
    let config = small_config(140);
    let mut s = Session::new(config, 2);
    let (a, _, b, _) = pair(&mut s);
    let nick = "\u{1d49c}".repeat(32);
    s.rename(a, &nick, &[b]);
    s.send(a, [0xffu8; 140]);
    s.send(a, "\n");
    assert_eq!(s.lines(b), [format!("{nick}: {}", "\u{fffd}".repeat(140))]);
    assert_eq!(s.closes(), []);
}

/// Limits and policies: the server refuses configurations that cannot work:
/// no clients, a max line below 16, a max queue below `3 * max-line + 1155`.
#[test]
fn limits_config_validate() {
    let base = Config::default();
    assert_eq!(base.max_clients, 10_000);
    assert_eq!(base.max_line, 4096);
    assert_eq!(base.max_queue, 1 << 20);
    assert_eq!(base.validate(), Ok(()));
    assert_eq!(
        Config {
            max_clients: 0,
            ..base.clone()
        }
        .validate(),
        Err(ConfigError::NoClients)
    );
    assert_eq!(
        Config {
            max_line: 15,
            ..base.clone()
        }
        .validate(),
        Err(ConfigError::LineTooShort)
    );
    for max_line in [16, 100, 4096, 65_536] {
        let min = 3 * max_line + 1155;
        let at = |max_queue| Config {
            max_clients: 1,
            max_line,
            max_queue,
        };
        assert_eq!(at(min).validate(), Ok(()), "max line {max_line}");
        assert_eq!(
            at(min - 1).validate(),
            Err(ConfigError::QueueTooSmall { min }),
            "max line {max_line}"
        );
    }
    assert!(
        ConfigError::QueueTooSmall { min: 1234 }
            .to_string()
            .contains("1234")
    );
}

/// Connection ids increase and are never reused, so late input for a
/// closed id never reaches a newer connection.
#[test]
fn ids_increase_never_reused() {
    let config = Config {
        max_clients: 1,
        ..Config::default()
    };
    let mut s = Session::new(config, 1);
    let mut last: Option<ConnId> = None;
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let conn = s.connect();
        if let Some(prev) = last {
            assert!(conn > prev);
        }
        assert!(seen.insert(conn));
        s.closed(conn);
        last = Some(conn);
        // Late input for the closed one.
        s.send(conn, "late\n");
        s.eof(conn);
    }
    let (a, _) = s.join(&[]);
    s.events();
    for old in seen {
        s.send(old, "/quit\n");
        s.closed(old);
    }
    s.assert_quiet(&[a]);
    assert!(s.server.nick(a).is_some());
}

/// Input for an unknown or closed id is ignored: no panic, no output.
#[test]
fn input_for_unknown_or_closed_id_ignored() {
    let mut s = Session::plain();
    let (a, _, b, _) = pair(&mut s);
    let unknown = ConnId(9999);
    s.send(unknown, "hi\n/quit\n");
    s.eof(unknown);
    s.closed(unknown);
    let now = s.now();
    s.server.handle_written(now, unknown, 100);
    let mut out = Vec::new();
    assert_eq!(s.server.poll_transmit(unknown, &mut out), 0);
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
    s.closed(a);
    s.events();
    s.send(a, "after close\n");
    s.eof(a);
    s.closed(a);
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server.connections().collect::<Vec<_>>(), [b]);
}

/// Determinism: the same seed and the same inputs give the same outputs,
/// byte for byte (nicks included).
#[test]
fn determinism_same_seed_same_outputs() {
    let run = |seed| {
        let mut s = Session::new(small_config(32), seed);
        let [(a, _), (b, bn), (c, _)] = trio(&mut s);
        s.stall(c);
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
        s.transcript
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
