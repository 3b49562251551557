//! One deterministic test (or a few) per rule of `docs/protocol.md`, each
//! naming the section it checks in its name and doc comment: "Framing",
//! "Sanitizing", "Lines the server sends", "Nicknames", "Commands",
//! "Session events", "Limits and policies" (`limits_*`, the soft output
//! limit `limits_soft_queue_*`), "Address policies" (`policies_*`).
//!
//! The tests drive one `chat_core::Server` through [`Session`], a small
//! driver that follows the run loop of the crate docs on a virtual clock.
// The driver's helpers fail the test like an assertion would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use chat_core::{Bytes, Config, ConfigError, ConnId, Event, HELP, Output, Rate, Reason, Server};

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

/// A driver for one server on a virtual clock that starts at `base`.
///
/// By default every input moves the clock one millisecond forward, which
/// the tests of the untimed rules ignore. The timed tests (address policies,
/// soft output limit) use [`Session::timed`], whose clock stands still but
/// for [`Session::advance_to`], so that every time they check is exact.
struct Session {
    server: Server,
    base: Instant,
    /// The virtual time since `base`: the `now` of the latest input.
    elapsed: Duration,
    /// How far each input moves the clock.
    step: Duration,
    next_port: u16,
    /// Bytes received per connection, not yet taken by [`Session::lines`].
    inbox: HashMap<ConnId, Vec<u8>>,
    /// Connections the driver does not report writes for (a client that
    /// does not read): their bytes count against `max_queue`.
    stalled: HashSet<ConnId>,
    /// Connections the server asked not to read from (flood control), from
    /// `StopReading` to `ResumeReading` or `Close`.
    paused: HashSet<ConnId>,
    closes: Vec<(ConnId, Reason, bool)>,
    events: Vec<Event>,
    transcript: Vec<Seen>,
}

/// One nanosecond: the resolution the timed tests check deadlines to.
const NS: Duration = Duration::from_nanos(1);

/// `n` seconds.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Session {
    fn new(config: Config, seed: u64) -> Session {
        Session {
            server: Server::new(config, seed),
            base: Instant::now(),
            elapsed: Duration::ZERO,
            step: ms(1),
            next_port: 40_000,
            inbox: HashMap::new(),
            stalled: HashSet::new(),
            paused: HashSet::new(),
            closes: Vec::new(),
            events: Vec::new(),
            transcript: Vec::new(),
        }
    }

    fn plain() -> Session {
        Session::new(Config::default(), 7)
    }

    /// A session whose clock moves only through [`Session::advance_to`]:
    /// every input happens at [`Session::elapsed`].
    fn timed(config: Config) -> Session {
        config.validate().unwrap();
        Session {
            step: Duration::ZERO,
            ..Session::new(config, 5)
        }
    }

    /// The time of the next input (and of every input in a timed session).
    fn now(&mut self) -> Instant {
        self.elapsed += self.step;
        self.base + self.elapsed
    }

    /// Accepts a connection from loopback and drains.
    fn connect(&mut self) -> ConnId {
        self.connect_from(Ipv4Addr::LOCALHOST.into())
    }

    /// Accepts a connection from `ip` and drains.
    fn connect_from(&mut self, ip: IpAddr) -> ConnId {
        let now = self.now();
        let peer = SocketAddr::new(ip, self.next_port);
        self.next_port += 1;
        let conn = self.server.handle_connect(now, peer);
        self.drain();
        conn
    }

    /// Connects a client from loopback that is admitted, checks its welcome
    /// and that every other joined client got exactly `* NICK joined`, and
    /// returns its id and (generated) nick.
    fn join(&mut self, others: &[ConnId]) -> (ConnId, String) {
        self.join_from(Ipv4Addr::LOCALHOST.into(), others)
    }

    /// [`Session::join`] from `ip`.
    fn join_from(&mut self, ip: IpAddr, others: &[ConnId]) -> (ConnId, String) {
        let conn = self.connect_from(ip);
        let lines = self.lines(conn);
        assert_eq!(lines.len(), 1, "one welcome line: {lines:?}");
        let nick = welcome_nick(&lines[0]);
        for &other in others {
            assert_eq!(self.lines(other), [format!("* {nick} joined")]);
        }
        (conn, nick)
    }

    /// Bytes read from `conn`. A driver does not read a connection it was
    /// asked to stop reading: see [`Session::send_in_flight`].
    fn send(&mut self, conn: ConnId, bytes: impl AsRef<[u8]>) {
        assert!(!self.is_paused(conn), "reading {conn}, which is paused");
        self.send_in_flight(conn, bytes);
    }

    /// Bytes read from `conn` even if it is paused: a read that was already
    /// under way when the driver was asked to stop reading.
    fn send_in_flight(&mut self, conn: ConnId, bytes: impl AsRef<[u8]>) {
        let now = self.now();
        self.server.handle_bytes(now, conn, bytes.as_ref());
        self.drain();
    }

    /// `conn` closed its side. Like bytes, a driver sees that only while
    /// reading: see [`Session::eof_in_flight`].
    fn eof(&mut self, conn: ConnId) {
        assert!(!self.is_paused(conn), "reading {conn}, which is paused");
        self.eof_in_flight(conn);
    }

    /// The EOF at the end of a read already under way when `conn` was paused.
    fn eof_in_flight(&mut self, conn: ConnId) {
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

    /// A stalled client reads `len` of the bytes the driver holds for it:
    /// the driver writes them and reports it.
    fn written(&mut self, conn: ConnId, len: usize) {
        let now = self.now();
        self.server.handle_written(now, conn, len);
        self.drain();
    }

    /// Whether the server asked not to read `conn` (and has not taken it back).
    fn is_paused(&self, conn: ConnId) -> bool {
        self.paused.contains(&conn)
    }

    /// The virtual time of the latest input.
    fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// `poll_timeout`, as a time since `base`.
    fn deadline(&mut self) -> Option<Duration> {
        let at = self.server.poll_timeout()?;
        Some(at - self.base)
    }

    /// Moves the clock to `at` (since `base`) as a driver sleeping on
    /// `poll_timeout` would: `handle_timeout` at each deadline up to `at`,
    /// draining after each, and checking that every deadline is later than
    /// the time before it.
    fn advance_to(&mut self, at: Duration) {
        assert!(at >= self.elapsed, "the clock never goes back");
        while let Some(deadline) = self.deadline() {
            assert!(
                deadline > self.elapsed,
                "poll_timeout {deadline:?} not after the last now {:?}",
                self.elapsed
            );
            if deadline > at {
                break;
            }
            self.elapsed = deadline;
            self.server.handle_timeout(self.base + deadline);
            self.drain();
        }
        self.elapsed = at;
    }

    /// [`Session::advance_to`] `span` later.
    fn advance(&mut self, span: Duration) {
        self.advance_to(self.elapsed + span);
    }

    /// Moves the clock to one nanosecond before `at`, checking that nothing
    /// reached `conns` (no line, close or event) by then, then to `at`.
    fn quiet_until(&mut self, at: Duration, conns: &[ConnId]) {
        self.advance_to(at - NS);
        self.assert_quiet(conns);
        self.advance_to(at);
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
                    // Once closing, whether it is read does not matter.
                    self.paused.remove(&conn);
                    self.transcript
                        .push(Seen::Close(conn, reason.clone(), flush));
                    self.closes.push((conn, reason, flush));
                }
                Output::StopReading(conn) => {
                    assert!(self.paused.insert(conn), "StopReading twice for {conn}");
                }
                Output::ResumeReading(conn) => {
                    assert!(
                        self.paused.remove(&conn),
                        "ResumeReading for {conn}, not stopped"
                    );
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
        // poll_timeout is always later than the last now given.
        if let Some(deadline) = self.deadline() {
            assert!(
                deadline > self.elapsed,
                "poll_timeout {deadline:?} not after the last now {:?}",
                self.elapsed
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
    config.soft_queue = config.max_queue;
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

/// The soft output limit of [`soft_config`].
const SOFT: usize = 600;
/// Its grace time.
const GRACE: Duration = Duration::from_secs(10);

/// Lines of up to 64 bytes, the smallest max queue for them, and a soft
/// limit of [`SOFT`] bytes for [`GRACE`]; no address policy.
fn soft_config() -> Config {
    let mut config = Config {
        max_line: 64,
        soft_queue: SOFT,
        soft_queue_grace: GRACE,
        ..no_policies()
    };
    config.max_queue = config.min_queue();
    assert!(config.max_queue > SOFT + 100);
    config
}

/// Sends chat lines from `a` until `slow` holds exactly `target` bytes.
fn fill_to(s: &mut Session, a: ConnId, an: &str, slow: ConnId, target: usize) {
    // `NICK: ` and the LF.
    let prefix = an.len() + 3;
    loop {
        let room = target - s.server.pending_bytes(slow).unwrap();
        if room == 0 {
            break;
        }
        assert!(room > prefix, "no line fills the last {room} bytes");
        // Leave either nothing or room for one more line.
        let len = if room - prefix <= 60 {
            room - prefix
        } else {
            (room - 2 * prefix - 1).min(60)
        };
        s.send(a, format!("{}\n", "f".repeat(len)));
    }
    assert_eq!(s.server.pending_bytes(slow), Some(target));
    assert_eq!(s.closes(), []);
}

/// Three loopback clients; the last, `slow`, does not read and holds
/// exactly [`SOFT`] bytes (not over the soft limit). Every line is taken.
fn soft_setup(s: &mut Session) -> [(ConnId, String); 3] {
    let [(a, an), (b, bn), (slow, slow_nick)] = trio(s);
    s.stall(slow);
    fill_to(s, a, &an, slow, SOFT);
    s.lines(b);
    s.lines(slow);
    assert_eq!(s.deadline(), None, "at the soft limit is not over it");
    [(a, an), (b, bn), (slow, slow_nick)]
}

/// Limits and policies, soft output limit: a client whose queue stays above
/// the soft limit for the whole grace time is disconnected as `too slow`
/// exactly when the grace ends (counted from when it went over), without a
/// last line (a non-flushing Close, nothing left for it), and the others get
/// `* NICK left (too slow)`. It applies to loopback peers.
#[test]
fn limits_soft_queue_over_for_the_grace_is_too_slow() {
    let mut s = Session::timed(soft_config());
    let [(a, an), (b, _), (slow, slow_nick)] = soft_setup(&mut s);
    s.advance(secs(3));
    let over = s.elapsed();
    assert_eq!(relayed(&mut s, a, &an, b, b"x\n"), ["x"]);
    assert!(s.server.pending_bytes(slow).unwrap() > SOFT);
    assert_eq!(s.deadline(), Some(over + GRACE));
    // More lines while it is over do not move the deadline.
    s.advance(secs(5));
    assert_eq!(relayed(&mut s, a, &an, b, b"y\n"), ["y"]);
    assert_eq!(s.deadline(), Some(over + GRACE));
    assert_eq!(s.lines(slow), [format!("{an}: x"), format!("{an}: y")]);
    s.quiet_until(over + GRACE, &[a, b, slow]);
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    for conn in [a, b] {
        assert_eq!(s.lines(conn), [format!("* {slow_nick} left (too slow)")]);
    }
    assert!(matches!(
        &s.events()[..],
        [Event::Left { conn, reason: Reason::TooSlow, .. }] if *conn == slow
    ));
    // No last line: nothing is left to write to it.
    assert_eq!(s.server.pending_bytes(slow), Some(0));
    assert_eq!(s.server.poll_transmit(slow, &mut Vec::new()), 0);
    assert_eq!(s.deadline(), None);
}

/// Limits and policies, soft output limit: a client that drops to the soft
/// limit (exactly) before its grace ends stays, dropping to one byte above it
/// is not enough, and the grace starts again the next time it goes over.
#[test]
fn limits_soft_queue_read_down_in_time_stays() {
    let mut s = Session::timed(soft_config());
    let [(a, an), (b, _), (slow, slow_nick)] = soft_setup(&mut s);
    s.advance(secs(3));
    let over = s.elapsed();
    assert_eq!(relayed(&mut s, a, &an, b, b"x\n"), ["x"]);
    s.lines(slow);
    // One byte above the soft limit is still over it.
    s.advance(secs(4));
    let pending = s.server.pending_bytes(slow).unwrap();
    s.written(slow, pending - SOFT - 1);
    assert_eq!(s.deadline(), Some(over + GRACE));
    // At the soft limit, one nanosecond before the grace ends, is not.
    s.advance_to(over + GRACE - NS);
    s.written(slow, 1);
    assert_eq!(s.server.pending_bytes(slow), Some(SOFT));
    assert_eq!(s.deadline(), None);
    s.advance(secs(3600));
    s.assert_quiet(&[a, b, slow]);
    assert_eq!(s.server.nick(slow), Some(slow_nick.as_str()));
    // Over again: a whole new grace.
    let again = s.elapsed();
    assert_eq!(relayed(&mut s, a, &an, b, b"z\n"), ["z"]);
    assert_eq!(s.deadline(), Some(again + GRACE));
    s.lines(slow);
    s.quiet_until(again + GRACE, &[a, b, slow]);
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    assert_eq!(s.lines(b), [format!("* {slow_nick} left (too slow)")]);
}

/// Limits and policies, soft output limit: a soft limit equal to the max
/// queue turns it off: a client holding exactly max queue bytes is never
/// dropped for it, however long.
#[test]
fn limits_soft_queue_equal_to_max_queue_is_off() {
    let config = small_config(64);
    assert_eq!(config.soft_queue, config.max_queue);
    let max_queue = config.max_queue;
    let mut s = Session::timed(config);
    let [(a, an), (b, _), (slow, slow_nick)] = trio(&mut s);
    s.stall(slow);
    fill_to(&mut s, a, &an, slow, max_queue);
    s.lines(b);
    s.lines(slow);
    assert_eq!(s.deadline(), None);
    s.advance(secs(24 * 3600));
    s.assert_quiet(&[a, b, slow]);
    assert_eq!(s.server.nick(slow), Some(slow_nick.as_str()));
}

/// Limits and policies: a soft limit above the max queue is refused.
#[test]
fn limits_soft_queue_above_max_queue_refused() {
    let config = Config {
        soft_queue: Config::default().max_queue + 1,
        ..Config::default()
    };
    assert_eq!(config.validate(), Err(ConfigError::SoftQueueAboveHard));
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
            soft_queue: max_queue,
            ..Config::default()
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

// ---------------------------------------------------------------------------
// Address policies
// ---------------------------------------------------------------------------

/// 203.0.113.N (TEST-NET-3): a public address, which the address policies
/// limit.
fn public(n: u8) -> IpAddr {
    Ipv4Addr::new(203, 0, 113, n).into()
}

/// `addr` as an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
fn mapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().into(),
        IpAddr::V6(_) => addr,
    }
}

/// The defaults with every address policy off, for tests that turn on one.
fn no_policies() -> Config {
    Config {
        flood: None,
        idle_timeout: None,
        line_timeout: None,
        max_per_ip: None,
        connect_rate: None,
        nick_rate: None,
        ..Config::default()
    }
}

fn rate(burst: u32, interval: Duration) -> Rate {
    Rate { burst, interval }
}

/// A client from a public address, which the address policies limit, and
/// a loopback one, which they do not: (a, a's nick, b, b's nick).
fn limited_pair(s: &mut Session) -> (ConnId, String, ConnId, String) {
    let (b, bn) = s.join(&[]);
    let (a, an) = s.join_from(public(1), &[b]);
    s.events();
    (a, an, b, bn)
}

/// The lines `1\n2\n...` for the numbers in `range`.
fn numbered(range: RangeInclusive<u32>) -> String {
    range.map(|n| format!("{n}\n")).collect()
}

/// The chat lines `NICK: N` for the numbers in `range`.
fn said(nick: &str, range: RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("{nick}: {n}")).collect()
}

/// The `/who` reply listing `nicks`.
fn who_line(nicks: &[&str]) -> String {
    let mut nicks = nicks.to_vec();
    nicks.sort_by_key(|n| (n.to_lowercase(), *n));
    format!("* {} users online: {}", nicks.len(), nicks.join(", "))
}

/// Checks that `b` gets `a`'s held chat lines numbered `range`, the first
/// at `t0 + interval` and one more each interval, each exactly on time and
/// not a nanosecond before, while reading `a` stays stopped.
fn released_at_rate(
    s: &mut Session,
    (a, an): (ConnId, &str),
    b: ConnId,
    t0: Duration,
    interval: Duration,
    range: RangeInclusive<u32>,
) {
    for (k, n) in (1..).zip(range) {
        let at = t0 + interval * k;
        assert_eq!(s.deadline(), Some(at), "when line {n} is due");
        assert!(s.is_paused(a), "reading stopped before line {n}");
        s.quiet_until(at, &[a, b]);
        assert_eq!(s.lines(b), said(an, n..=n), "line {n}");
    }
}

/// Checks that `a` (nick `an`) was just disconnected by an address policy:
/// its last line `* error: disconnected (WHY)` and a flushing Close for
/// `reason`, `* AN left (WHY)` to each of `others`, a Left event; and that
/// nothing more happens.
fn assert_policy_disconnect(
    s: &mut Session,
    (a, an): (ConnId, &str),
    others: &[ConnId],
    reason: Reason,
    why: &str,
) {
    assert_eq!(s.lines(a), [format!("* error: disconnected ({why})")]);
    for &other in others {
        assert_eq!(s.lines(other), [format!("* {an} left ({why})")]);
    }
    assert_eq!(s.closes(), [(a, reason.clone(), true)]);
    assert_eq!(
        s.events(),
        [Event::Left {
            conn: a,
            nick: an.to_owned(),
            reason
        }]
    );
    assert_eq!(s.server.nick(a), None);
    s.advance(secs(3600));
    let mut all = others.to_vec();
    all.push(a);
    s.assert_quiet(&all);
}

/// Flood control for the flood tests: 3 lines at once, then one a second.
const FLOOD: Rate = Rate {
    burst: 3,
    interval: Duration::from_secs(1),
};

fn flood_config() -> Config {
    Config {
        flood: Some(FLOOD),
        ..no_policies()
    }
}

/// Address policies, flood control: a client at exactly the rate (the whole
/// burst at once, then one line each interval, on the interval) is never
/// held back: every line is delivered at once and reading never stops. The
/// budget is then exactly used up: one line more waits.
#[test]
fn policies_flood_at_exactly_the_rate_never_held() {
    let mut s = Session::timed(flood_config());
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, numbered(1..=3));
    assert_eq!(s.lines(b), said(&an, 1..=3));
    for k in 1..=20 {
        s.advance_to(t0 + FLOOD.interval * k);
        let n = 3 + k;
        s.send(a, numbered(n..=n));
        assert_eq!(s.lines(b), said(&an, n..=n), "line {n}, on time");
        assert!(!s.is_paused(a));
        assert_eq!(s.server.held_lines(a), Some(0));
        assert_eq!(s.deadline(), None);
    }
    s.send(a, "over\n");
    assert_eq!(s.lines(b), Vec::<String>::new());
    assert!(s.is_paused(a));
    assert_eq!(s.server.held_lines(a), Some(1));
}

/// Address policies, flood control: a line over the burst is not dropped: it
/// waits, the server stops reading the client (StopReading), and it is
/// handled exactly when the budget allows, one interval later, not a
/// nanosecond before; reading resumes (ResumeReading) once nothing waits.
#[test]
fn policies_flood_over_the_burst_waits_one_interval() {
    let mut s = Session::timed(flood_config());
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, numbered(1..=4));
    assert_eq!(s.lines(b), said(&an, 1..=3));
    assert!(s.is_paused(a));
    assert_eq!(s.server.held_lines(a), Some(1));
    released_at_rate(&mut s, (a, &an), b, t0, FLOOD.interval, 4..=4);
    assert!(!s.is_paused(a));
    assert_eq!(s.server.held_lines(a), Some(0));
    assert_eq!(s.deadline(), None);
    s.assert_quiet(&[a, b]);
}

/// Address policies, flood control: waiting lines are handled in order, one
/// each interval, none lost, including lines of a read that was under way
/// when reading stopped; reading resumes only with the last of them.
#[test]
fn policies_flood_waiting_lines_in_order_none_lost() {
    let mut s = Session::timed(flood_config());
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, numbered(1..=12));
    assert_eq!(s.lines(b), said(&an, 1..=3));
    s.advance_to(t0 + ms(500));
    s.send_in_flight(a, numbered(13..=14));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server.held_lines(a), Some(11));
    released_at_rate(&mut s, (a, &an), b, t0, FLOOD.interval, 4..=14);
    assert!(!s.is_paused(a));
    assert_eq!(s.deadline(), None);
}

/// Address policies, flood control: every line counts: commands, empty and
/// too-long lines take from the budget like chat lines, and wait their turn
/// in order when over it (a waiting command is answered, a waiting too-long
/// line gets its error, when its turn comes).
#[test]
fn policies_flood_every_line_counts() {
    let config = Config {
        max_line: 16,
        ..flood_config()
    };
    let mut s = Session::timed(config);
    let (a, an, b, bn) = limited_pair(&mut s);
    let too_long = "* error: line too long (max 16 bytes), discarded";
    let t0 = s.elapsed();
    // A command, a too-long line and an empty line use up the burst.
    s.send(a, format!("/who\n{}\n\nhi\n", "x".repeat(20)));
    assert_eq!(s.lines(a), [who_line(&[&an, &bn]), too_long.to_owned()]);
    assert_eq!(s.lines(b), Vec::<String>::new());
    assert!(s.is_paused(a));
    s.quiet_until(t0 + FLOOD.interval, &[a, b]);
    assert_eq!(s.lines(b), [format!("{an}: hi")]);
    assert!(!s.is_paused(a));
    // Over the budget, they wait like chat lines, in order.
    s.send(a, format!("/me waves\n{}\n/who\n", "y".repeat(20)));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server.held_lines(a), Some(3));
    s.quiet_until(t0 + FLOOD.interval * 2, &[a, b]);
    assert_eq!(s.lines(b), [format!("* {an} waves")]);
    s.quiet_until(t0 + FLOOD.interval * 3, &[a, b]);
    assert_eq!(s.lines(a), [too_long]);
    assert!(s.is_paused(a));
    s.quiet_until(t0 + FLOOD.interval * 4, &[a, b]);
    assert_eq!(s.lines(a), [who_line(&[&an, &bn])]);
    assert!(!s.is_paused(a));
}

/// Address policies, flood control: loopback peers (127.0.0.0/8, ::1,
/// ::ffff:127.0.0.0/104) are exempt unless `limit_loopback` is set; an
/// IPv4-mapped public address is not loopback.
#[test]
fn policies_flood_loopback_exempt_unless_limit_loopback() {
    let loopbacks: [IpAddr; 4] = [
        Ipv4Addr::LOCALHOST.into(),
        Ipv4Addr::new(127, 45, 6, 7).into(),
        Ipv6Addr::LOCALHOST.into(),
        mapped(Ipv4Addr::LOCALHOST.into()),
    ];
    let cases = loopbacks
        .iter()
        .flat_map(|&ip| [(ip, false, false), (ip, true, true)])
        .chain([(mapped(public(9)), false, true)]);
    for (ip, limit_loopback, limited) in cases {
        let config = Config {
            flood: Some(rate(1, secs(1))),
            limit_loopback,
            ..no_policies()
        };
        let mut s = Session::timed(config);
        let (b, _) = s.join(&[]);
        let (a, an) = s.join_from(ip, &[b]);
        s.send(a, numbered(1..=5));
        let case = format!("{ip}, limit_loopback {limit_loopback}");
        let delivered = if limited { 1 } else { 5 };
        assert_eq!(s.lines(b), said(&an, 1..=delivered), "{case}");
        assert_eq!(s.is_paused(a), limited, "{case}");
    }
}

/// Address policies, flood control: `--flood-rate 0` (no flood rate) turns
/// it off: hundreds of lines at once from a public address all pass, more
/// than the excess flood limit.
#[test]
fn policies_flood_off() {
    let mut s = Session::timed(Config {
        flood_excess: 10,
        ..no_policies()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    s.send(a, numbered(1..=300));
    assert_eq!(s.lines(b), said(&an, 1..=300));
    assert!(!s.is_paused(a));
    assert_eq!(s.deadline(), None);
}

/// Excess flood for the tests: 2 lines at once, then one a second; at
/// most 3 waiting.
fn excess_config() -> Config {
    Config {
        flood: Some(rate(2, secs(1))),
        flood_excess: 3,
        ..no_policies()
    }
}

/// Address policies, excess flood: exactly `--flood-excess` lines waiting
/// is fine: they are all handled, at the rate.
#[test]
fn policies_excess_flood_at_the_limit_is_fine() {
    let mut s = Session::timed(excess_config());
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, numbered(1..=5));
    assert_eq!(s.lines(b), said(&an, 1..=2));
    assert_eq!(s.server.held_lines(a), Some(3));
    released_at_rate(&mut s, (a, &an), b, t0, secs(1), 3..=5);
    assert!(!s.is_paused(a));
}

/// Address policies, excess flood: one line more than `--flood-excess`
/// waiting disconnects the client, whether it came in the same read or in
/// a read under way: its last line `* error: disconnected (excess flood)`,
/// the others `* NICK left (excess flood)`; the waiting lines are dropped.
#[test]
fn policies_excess_flood_one_more_disconnects() {
    let reads: [&[&str]; 2] = [&["1\n2\n3\n4\n5\n6\n"], &["1\n2\n3\n4\n5\n", "6\n"]];
    for reads in reads {
        let mut s = Session::timed(excess_config());
        let (a, an, b, _) = limited_pair(&mut s);
        for read in reads {
            s.send_in_flight(a, read);
        }
        // b gets the burst, then the notice; nothing of the waiting lines.
        let mut lines = said(&an, 1..=2);
        lines.push(format!("* {an} left (excess flood)"));
        assert_eq!(s.lines(b), lines, "reads {reads:?}");
        assert_eq!(
            s.lines(a),
            ["* error: disconnected (excess flood)"],
            "reads {reads:?}"
        );
        assert_eq!(s.closes(), [(a, Reason::ExcessFlood, true)]);
        assert_eq!(
            s.events(),
            [Event::Left {
                conn: a,
                nick: an.clone(),
                reason: Reason::ExcessFlood
            }]
        );
        assert_eq!(s.deadline(), None);
        s.advance(secs(60));
        s.assert_quiet(&[a, b]);
    }
}

/// Address policies, EOF while lines wait: the client stays joined until its
/// waiting lines and then its unterminated last line have been handled, at
/// the rate; then it leaves (`* NICK left`, a flushing Close for EOF). With
/// no last line it leaves with its last waiting line; the rest of a line
/// being discarded is no line (but its too-long error waits its turn).
#[test]
fn policies_flood_eof_while_lines_wait() {
    let long = "x".repeat(20);
    let too_long = "* error: line too long (max 16 bytes), discarded";
    // The bytes after the last LF; what their turn (at 3 s) gives a and b.
    let cases = [
        ("last", vec![], vec!["last"]),
        (long.as_str(), vec![too_long], vec![]),
        ("", vec![], vec![]),
    ];
    for (tail, to_a, to_b) in cases {
        let mut s = Session::timed(Config {
            max_line: 16,
            flood: Some(rate(2, secs(1))),
            ..no_policies()
        });
        let (a, an, b, bn) = limited_pair(&mut s);
        let t0 = s.elapsed();
        s.send(a, format!("1\n2\n3\n4\n{tail}"));
        s.eof_in_flight(a);
        assert_eq!(s.lines(b), said(&an, 1..=2));
        s.assert_quiet(&[a, b]);
        // Still in the chat.
        s.send(b, "/who\n");
        assert_eq!(s.lines(b), [who_line(&[&an, &bn])]);
        released_at_rate(&mut s, (a, &an), b, t0, secs(1), 3..=3);
        s.quiet_until(t0 + secs(2), &[a, b]);
        let mut expected = said(&an, 4..=4);
        if !tail.is_empty() {
            assert_eq!(s.lines(b), expected, "tail {tail:?}");
            s.quiet_until(t0 + secs(3), &[a, b]);
            expected = to_b.iter().map(|t| format!("{an}: {t}")).collect();
        }
        expected.push(format!("* {an} left"));
        assert_eq!(s.lines(b), expected, "tail {tail:?}");
        assert_eq!(s.lines(a), to_a, "tail {tail:?}");
        assert_eq!(s.closes(), [(a, Reason::Eof, true)]);
        assert_eq!(s.server.nick(a), None);
        assert_eq!(s.deadline(), None);
    }
}

/// Address policies, EOF while lines wait: an unterminated last line over
/// the budget waits too (reading need not stop: the client is done), and
/// the client leaves after it.
#[test]
fn policies_flood_eof_last_line_over_the_budget() {
    let mut s = Session::timed(Config {
        flood: Some(rate(2, secs(1))),
        ..no_policies()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    s.send(a, "1\n2\nlast");
    s.eof(a);
    assert_eq!(s.lines(b), said(&an, 1..=2));
    assert_eq!(s.server.held_lines(a), Some(1));
    s.quiet_until(t0 + secs(1), &[a, b]);
    assert_eq!(s.lines(b), [format!("{an}: last"), format!("* {an} left")]);
    assert_eq!(s.closes(), [(a, Reason::Eof, true)]);
}

/// Address policies, incomplete line (default 60 s): a client holding an
/// unterminated line is disconnected exactly 60 s after its first byte,
/// not before, however slowly it trickles more: its last line
/// `* error: disconnected (incomplete line timeout)`, the others
/// `* NICK left (incomplete line timeout)`; the partial line goes nowhere.
#[test]
fn policies_line_timeout_from_the_first_byte() {
    let config = Config::default();
    assert_eq!(config.line_timeout, Some(secs(60)));
    let mut s = Session::timed(config);
    let (a, an, b, _) = limited_pair(&mut s);
    let t0 = s.elapsed();
    for k in 0..60 {
        s.advance_to(t0 + secs(k));
        s.send(a, "z");
        assert_eq!(s.deadline(), Some(t0 + secs(60)));
    }
    s.advance_to(t0 + secs(60) - NS);
    s.send(a, "z");
    s.quiet_until(t0 + secs(60), &[a, b]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::IncompleteLine, why);
}

/// The incomplete-line timeout of the tests.
fn line_timeout_config() -> Config {
    Config {
        line_timeout: Some(secs(10)),
        ..no_policies()
    }
}

/// Address policies, incomplete line: a line that ends stops the time; the
/// next line's time starts at its own first byte; no line, no timeout.
#[test]
fn policies_line_timeout_restarts_with_each_line() {
    let mut s = Session::timed(line_timeout_config());
    let (a, an, b, _) = limited_pair(&mut s);
    assert_eq!(s.deadline(), None);
    s.send(a, "ab");
    assert_eq!(s.deadline(), Some(secs(10)));
    s.advance_to(secs(6));
    assert_eq!(relayed(&mut s, a, &an, b, b"c\nd"), ["abc"]);
    assert_eq!(s.deadline(), Some(secs(16)));
    s.advance_to(secs(12));
    assert_eq!(relayed(&mut s, a, &an, b, b"e\n"), ["de"]);
    assert_eq!(s.deadline(), None);
    s.advance_to(secs(100));
    s.send(a, "f");
    s.quiet_until(secs(110), &[a, b]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::IncompleteLine, why);
}

/// Address policies, incomplete line: the rest of a too-long line being
/// discarded is an unterminated line too, timed from its first byte; its LF
/// ends it.
#[test]
fn policies_line_timeout_counts_a_discarded_line() {
    let mut s = Session::timed(Config {
        max_line: 16,
        ..line_timeout_config()
    });
    let (b, _) = s.join(&[]);
    let (a, an) = s.join_from(public(1), &[b]);
    let (c, _) = s.join_from(public(2), &[b, a]);
    s.events();
    let too_long = "* error: line too long (max 16 bytes), discarded";
    for conn in [a, c] {
        s.send(conn, "x".repeat(20));
        assert_eq!(s.lines(conn), [too_long]);
    }
    assert_eq!(
        s.server.buffered_bytes(a),
        Some(0),
        "discarding, not buffering"
    );
    assert_eq!(s.deadline(), Some(secs(10)));
    s.advance_to(secs(5));
    s.send(a, "x".repeat(20));
    s.send(c, format!("{}\n", "x".repeat(20)));
    s.assert_quiet(&[a, b, c]);
    s.quiet_until(secs(10), &[a, b, c]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b, c], Reason::IncompleteLine, why);
}

/// Address policies, incomplete line: a too-long line ends at its LF like
/// any other, so the time of the line after it starts at that line's first
/// byte: whether the LF ends the discarded rest of a too-long line, or a
/// line that turns out too long once its LF comes.
#[test]
fn policies_line_timeout_restarts_after_a_too_long_line() {
    let mut s = Session::timed(Config {
        max_line: 16,
        ..line_timeout_config()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    let too_long = "* error: line too long (max 16 bytes), discarded";
    // The rest of a too-long line, discarded, then a new line.
    s.send(a, "x".repeat(20));
    assert_eq!(s.lines(a), [too_long]);
    assert_eq!(s.deadline(), Some(secs(10)));
    s.advance_to(secs(5));
    s.send(a, "\nd");
    assert_eq!(s.deadline(), Some(secs(15)), "d's first byte came at 5 s");
    s.advance_to(secs(6));
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), ["d"]);
    assert_eq!(s.deadline(), None);
    // A line found too long at its LF, then a new line.
    s.advance_to(secs(20));
    s.send(a, "ab");
    s.advance_to(secs(25));
    s.send(a, format!("{}\ne", "x".repeat(20)));
    assert_eq!(s.lines(a), [too_long]);
    assert_eq!(s.deadline(), Some(secs(35)), "e's first byte came at 25 s");
    s.quiet_until(secs(35), &[a, b]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::IncompleteLine, why);
}

/// Address policies, incomplete line: time during which the server does not
/// read the client (flood control) does not count: the line's time starts
/// again when reading resumes.
#[test]
fn policies_line_timeout_paused_time_does_not_count() {
    let mut s = Session::timed(Config {
        flood: Some(rate(1, secs(4))),
        ..line_timeout_config()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    s.send(a, "1\n2\n3\n4\npart");
    assert_eq!(s.lines(b), said(&an, 1..=1));
    // Paused from 0 to 12 s, longer than the line timeout.
    released_at_rate(&mut s, (a, &an), b, Duration::ZERO, secs(4), 2..=4);
    assert!(!s.is_paused(a));
    assert_eq!(s.deadline(), Some(secs(22)));
    s.quiet_until(secs(22), &[a, b]);
    let why = "incomplete line timeout";
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::IncompleteLine, why);
}

/// Address policies, idle: off by default: a client that sends nothing for
/// a day stays.
#[test]
fn policies_idle_off_by_default() {
    let config = Config::default();
    assert_eq!(config.idle_timeout, None);
    let mut s = Session::timed(config);
    let (a, an, b, _) = limited_pair(&mut s);
    assert_eq!(relayed(&mut s, a, &an, b, b"hi\n"), ["hi"]);
    assert_eq!(s.deadline(), None);
    s.advance(secs(24 * 3600));
    s.assert_quiet(&[a, b]);
    assert_eq!(s.server.nick(a), Some(an.as_str()));
}

/// Address policies, idle: a client that sends no byte for the idle time
/// (from its connection, then from its last byte; any byte counts, a whole
/// line or not) is disconnected exactly then: `* error: disconnected (idle)`,
/// the others `* NICK left (idle)`.
#[test]
fn policies_idle_from_the_last_byte() {
    let mut s = Session::timed(Config {
        idle_timeout: Some(secs(30)),
        ..no_policies()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    assert_eq!(s.deadline(), Some(secs(30)));
    s.advance_to(secs(20));
    s.send(a, "x");
    assert_eq!(s.deadline(), Some(secs(50)));
    s.advance_to(secs(50) - NS);
    assert_eq!(relayed(&mut s, a, &an, b, b"\n"), ["x"]);
    let last = s.elapsed();
    assert_eq!(s.deadline(), Some(last + secs(30)));
    s.quiet_until(last + secs(30), &[a, b]);
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::Idle, "idle");
}

/// Address policies, idle: handling one of its waiting lines counts as the
/// client sending, and it is not idle while lines wait.
#[test]
fn policies_idle_handling_a_waiting_line_counts() {
    let mut s = Session::timed(Config {
        idle_timeout: Some(secs(5)),
        flood: Some(rate(1, secs(4))),
        ..no_policies()
    });
    let (a, an, b, _) = limited_pair(&mut s);
    s.send(a, numbered(1..=3));
    assert_eq!(s.lines(b), said(&an, 1..=1));
    // Its last byte came at 0, but its lines wait until 8 s.
    released_at_rate(&mut s, (a, &an), b, Duration::ZERO, secs(4), 2..=3);
    assert_eq!(s.deadline(), Some(secs(13)));
    s.quiet_until(secs(13), &[a, b]);
    assert_policy_disconnect(&mut s, (a, &an), &[b], Reason::Idle, "idle");
}

const TOO_MANY: &str = "* error: too many connections from your address";

/// Connects from `ip`, checks that it was refused as too many from its
/// address (exactly its line, a flushing Close, a Rejected event) with
/// nobody in `others` seeing anything, and reports it closed.
fn assert_refused_from(s: &mut Session, ip: IpAddr, others: &[ConnId]) {
    let conn = s.connect_from(ip);
    assert_eq!(s.lines(conn), [TOO_MANY], "from {ip}");
    assert_eq!(s.closes(), [(conn, Reason::TooManyFromAddress, true)]);
    let events = s.events();
    assert!(
        matches!(
            &events[..],
            [Event::Rejected { conn: c, peer, reason: Reason::TooManyFromAddress }]
                if *c == conn && peer.ip() == ip
        ),
        "{events:?}"
    );
    s.assert_quiet(others);
    assert_eq!(s.server.nick(conn), None);
    s.closed(conn);
    s.assert_quiet(others);
}

/// Address policies, connections per address: `--max-per-ip` open
/// connections from one address are admitted, one more is refused with
/// `* error: too many connections from your address` and nobody else sees
/// anything of it; a connection counts from its welcome until its socket is
/// closed (a client that has left still counts until then); other addresses
/// are unaffected.
#[test]
fn policies_max_per_ip() {
    let mut s = Session::timed(Config {
        max_per_ip: Some(2),
        ..no_policies()
    });
    let (local, _) = s.join(&[]);
    let (a1, a1n) = s.join_from(public(1), &[local]);
    let (a2, _) = s.join_from(public(1), &[local, a1]);
    let (c, _) = s.join_from(public(2), &[local, a1, a2]);
    s.events();
    let all = [local, a1, a2, c];
    assert_refused_from(&mut s, public(1), &all);
    // Closing the refused one frees nothing.
    assert_refused_from(&mut s, public(1), &all);
    // Left, but not yet reported closed: still counts.
    s.send(a1, "/quit\n");
    assert_eq!(s.lines(a1), ["* bye"]);
    for conn in [local, a2, c] {
        assert_eq!(s.lines(conn), [format!("* {a1n} left")]);
    }
    s.closes();
    s.events();
    let all = [local, a2, c];
    assert_refused_from(&mut s, public(1), &all);
    s.closed(a1);
    s.events();
    let (a3, _) = s.join_from(public(1), &all);
    s.events();
    assert_refused_from(&mut s, public(1), &[local, a2, c, a3]);
    // The other address has room for one more; loopback is not limited.
    let (c2, _) = s.join_from(public(2), &[local, a2, c, a3]);
    s.events();
    assert_refused_from(&mut s, public(2), &[local, a2, c, a3, c2]);
    for _ in 0..3 {
        s.join(&[]);
    }
    assert_eq!(s.server.admitted(), 8);
}

/// Address policies, connections per address: an IPv4-mapped IPv6 address
/// counts as its IPv4 address; another IPv6 address is another address.
#[test]
fn policies_max_per_ip_ipv4_mapped_is_ipv4() {
    let mut s = Session::timed(Config {
        max_per_ip: Some(1),
        ..no_policies()
    });
    let (a, _) = s.join_from(public(7), &[]);
    s.events();
    assert_refused_from(&mut s, mapped(public(7)), &[a]);
    s.closed(a);
    s.events();
    let (b, _) = s.join_from(mapped(public(7)), &[]);
    s.events();
    assert_refused_from(&mut s, public(7), &[b]);
    let v6: IpAddr = "2001:db8::7".parse().unwrap();
    let (c, _) = s.join_from(v6, &[b]);
    s.events();
    assert_refused_from(&mut s, v6, &[b, c]);
}

/// Connect rate for the tests: 3 at once, then one each 10 s.
const CONNECT: Rate = Rate {
    burst: 3,
    interval: Duration::from_secs(10),
};

/// Admits `n` connections from `ip` in turn (each welcomed), taking every
/// line they cause.
fn admit_from(s: &mut Session, ip: IpAddr, n: usize) {
    for _ in 0..n {
        let conn = s.connect_from(ip);
        let lines = s.lines(conn);
        assert!(lines[0].starts_with("* welcome"), "from {ip}: {lines:?}");
    }
    for conn in s.server.connections().collect::<Vec<_>>() {
        s.lines(conn);
    }
    s.events();
}

/// Address policies, connect rate: the burst from one address at once, then
/// one each interval, exactly on the interval and not a nanosecond before;
/// the whole burst again after a quiet spell; other addresses unaffected.
#[test]
fn policies_connect_rate() {
    // Connections stay open: only the rate limits them here.
    let config = Config {
        connect_rate: Some(CONNECT),
        ..no_policies()
    };
    // Two sessions, so that no attempt is refused by the rate before the
    // boundary checked in the second.
    let mut s = Session::timed(config.clone());
    let (local, _) = s.join(&[]);
    admit_from(&mut s, public(1), 3);
    s.advance_to(CONNECT.interval - NS);
    assert_refused_from(&mut s, public(1), &[local]);
    let mut fresh = Session::timed(config);
    admit_from(&mut fresh, public(1), 3);
    fresh.advance_to(CONNECT.interval);
    admit_from(&mut fresh, public(1), 1);
    assert_refused_from(&mut fresh, public(1), &[]);
    fresh.advance_to(CONNECT.interval * 2);
    admit_from(&mut fresh, public(1), 1);
    // Another address has its own budget.
    admit_from(&mut fresh, public(2), 3);
    assert_refused_from(&mut fresh, public(2), &[]);
    // The whole burst again once the budget is full: at the time it
    // stood ahead of the steady rate by the burst (5 intervals).
    fresh.advance_to(CONNECT.interval * 5);
    admit_from(&mut fresh, public(1), 3);
    assert_refused_from(&mut fresh, public(1), &[]);
}

/// Address policies, connect rate: every attempt counts, refused ones
/// included: two attempts refused for `--max-per-ip` use up the burst, so
/// that once there is room the next is refused for the rate until the
/// interval has passed.
#[test]
fn policies_connect_rate_refused_attempts_count() {
    let mut s = Session::timed(Config {
        connect_rate: Some(CONNECT),
        max_per_ip: Some(1),
        ..no_policies()
    });
    let (a, _) = s.join_from(public(1), &[]);
    s.events();
    assert_refused_from(&mut s, public(1), &[a]);
    assert_refused_from(&mut s, public(1), &[a]);
    s.closed(a);
    s.events();
    assert_refused_from(&mut s, public(1), &[]);
    s.advance_to(CONNECT.interval);
    s.join_from(public(1), &[]);
}

/// Address policies, connections per address and connect rate: the count
/// and budget of each address hold however many other addresses come and
/// go (thousands, so that the server sweeps its table of addresses).
#[test]
fn policies_per_address_state_survives_many_addresses() {
    let mut s = Session::timed(Config {
        max_per_ip: Some(1),
        connect_rate: Some(rate(1, secs(60))),
        ..no_policies()
    });
    let open = public(1);
    let (a, _) = s.join_from(open, &[]);
    let spent = public(2);
    let b = s.connect_from(spent);
    s.closed(b);
    // 3000 addresses 198.N.x.y, each connecting once.
    let many = |s: &mut Session, n: u8| {
        for i in 0..3000u32 {
            let [_, _, x, y] = i.to_be_bytes();
            let conn = s.connect_from(Ipv4Addr::new(198, n, x, y).into());
            s.closed(conn);
        }
        s.lines(a);
        s.events();
        s.closes();
    };
    many(&mut s, 18);
    assert_refused_from(&mut s, open, &[a]);
    assert_refused_from(&mut s, spent, &[a]);
    // Once the old budgets are back, a sweep may drop those addresses.
    s.advance_to(secs(61));
    let c = s.connect_from(spent);
    s.lines(c);
    many(&mut s, 19);
    s.events();
    assert_refused_from(&mut s, spent, &[a]);
    s.closed(c);
    s.lines(a);
    s.events();
    assert_refused_from(&mut s, spent, &[a]);
    assert_refused_from(&mut s, open, &[a]);
}

/// `/nick NICK` from `a` over its budget: only `a` hears of it, told to try
/// again in `wait` seconds, and its nick stays.
fn nick_too_fast(s: &mut Session, a: ConnId, nick: &str, wait: u64, others: &[ConnId]) {
    let before = s.server.nick(a).unwrap().to_owned();
    s.send(a, format!("/nick {nick}\n"));
    let error = format!("* error: nick changes too fast, try again in {wait} s");
    assert_eq!(s.lines(a), [error], "at {:?}", s.elapsed());
    s.assert_quiet(others);
    assert_eq!(s.server.nick(a), Some(before.as_str()));
}

/// Address policies, nick changes (default 5 per 20 s): 5 at once, then
/// `* error: nick changes too fast, try again in N s` (changing nothing,
/// telling nobody else), N the wait rounded up to whole seconds; one more
/// each 4 s, exactly on time.
#[test]
fn policies_nick_rate_burst_then_too_fast() {
    let config = Config {
        nick_rate: Config::default().nick_rate,
        ..no_policies()
    };
    assert_eq!(config.nick_rate, Some(rate(5, secs(4))));
    let mut s = Session::timed(config);
    let (a, _, b, _) = limited_pair(&mut s);
    for n in 1..=5 {
        s.rename(a, &format!("n{n}"), &[b]);
    }
    nick_too_fast(&mut s, a, "n6", 4, &[b]);
    s.advance_to(NS);
    nick_too_fast(&mut s, a, "n6", 4, &[b]);
    s.advance_to(secs(3));
    nick_too_fast(&mut s, a, "n6", 1, &[b]);
    s.advance_to(secs(4) - NS);
    nick_too_fast(&mut s, a, "n6", 1, &[b]);
    s.advance_to(secs(4));
    s.rename(a, "n6", &[b]);
    nick_too_fast(&mut s, a, "n7", 4, &[b]);
    s.advance_to(secs(8));
    s.rename(a, "n7", &[b]);
}

/// Address policies, nick changes: N is the wait rounded up to whole
/// seconds (2.5 s is 3 s; 1 s and a nanosecond is 2 s).
#[test]
fn policies_nick_rate_wait_rounded_up() {
    let mut s = Session::timed(Config {
        nick_rate: Some(rate(2, ms(2500))),
        ..no_policies()
    });
    let (a, _, b, _) = limited_pair(&mut s);
    s.rename(a, "n1", &[b]);
    s.rename(a, "n2", &[b]);
    nick_too_fast(&mut s, a, "n3", 3, &[b]);
    s.advance_to(ms(1500) - NS);
    nick_too_fast(&mut s, a, "n3", 2, &[b]);
    s.advance_to(ms(1500));
    nick_too_fast(&mut s, a, "n3", 1, &[b]);
    s.advance_to(ms(2500) - NS);
    nick_too_fast(&mut s, a, "n3", 1, &[b]);
    s.advance_to(ms(2500));
    s.rename(a, "n3", &[b]);
}

/// Address policies, nick changes: only changes that succeed count: a
/// rename to one's own nick, an invalid or taken nick, a usage error take
/// nothing from the budget.
#[test]
fn policies_nick_rate_only_changes_that_succeed_count() {
    let config = Config {
        nick_rate: Config::default().nick_rate,
        ..no_policies()
    };
    let mut s = Session::timed(config);
    let (a, _, b, _) = limited_pair(&mut s);
    // b is on loopback: not limited.
    for n in 1..=10 {
        s.rename(b, &format!("bob{n}"), &[a]);
    }
    for n in 1..=4 {
        s.rename(a, &format!("n{n}"), &[b]);
    }
    let failures = [
        ("/nick n4\n", "* you are now known as n4"),
        (
            "/nick bad!\n",
            "* error: invalid nick bad!: use 1-32 letters, digits, _ or -",
        ),
        ("/nick BOB10\n", "* error: nick BOB10 is already taken"),
        ("/nick\n", "* error: usage: /nick NAME"),
        ("/nick x y\n", "* error: usage: /nick NAME"),
    ];
    for (line, reply) in failures {
        s.send(a, line);
        assert_eq!(s.lines(a), [reply], "{line:?}");
        s.assert_quiet(&[b]);
    }
    s.rename(a, "n5", &[b]);
    nick_too_fast(&mut s, a, "n6", 4, &[b]);
}

/// Address policies: loopback peers are exempt from every address policy
/// (connections per address, connect rate, nick changes, incomplete line,
/// idle) unless `limit_loopback` is set. (Flood control:
/// `policies_flood_loopback_exempt_unless_limit_loopback`.)
#[test]
fn policies_loopback_exempt_unless_limit_loopback() {
    for limit_loopback in [false, true] {
        let mut s = Session::timed(Config {
            max_per_ip: Some(1),
            connect_rate: Some(rate(1, secs(60))),
            nick_rate: Some(rate(1, secs(60))),
            line_timeout: Some(secs(10)),
            idle_timeout: Some(secs(30)),
            limit_loopback,
            ..no_policies()
        });
        let ip: IpAddr = Ipv6Addr::LOCALHOST.into();
        let (a, _) = s.join_from(ip, &[]);
        assert_eq!(s.deadline(), limit_loopback.then_some(secs(30)), "idle");
        let second = s.connect_from(ip);
        let refused = s.lines(second) == [TOO_MANY];
        assert_eq!(refused, limit_loopback, "connections per address");
        s.closed(second);
        s.lines(a);
        s.send(a, "/nick one\n/nick two\n");
        let lines = s.lines(a);
        let too_fast = lines[1].starts_with("* error: nick changes too fast");
        assert_eq!(too_fast, limit_loopback, "nick changes: {lines:?}");
        s.send(a, "part");
        let line = limit_loopback.then_some(s.elapsed() + secs(10));
        assert_eq!(s.deadline(), line, "incomplete line");
    }
}

/// Address policies: `poll_timeout` is exactly the earliest pending deadline
/// of any client (here idle and incomplete-line times of two clients, as
/// they move), never a stale one, and `None` once nothing is pending.
#[test]
fn policies_poll_timeout_is_the_earliest_deadline() {
    let mut s = Session::timed(Config {
        idle_timeout: Some(secs(30)),
        line_timeout: Some(secs(10)),
        ..no_policies()
    });
    let (a, an) = s.join_from(public(1), &[]);
    assert_eq!(s.deadline(), Some(secs(30)), "a idle");
    s.advance_to(secs(1));
    let (b, _) = s.join_from(public(2), &[a]);
    assert_eq!(s.deadline(), Some(secs(30)), "a idle");
    s.advance_to(secs(2));
    s.send(b, "p");
    assert_eq!(s.deadline(), Some(secs(12)), "b's line");
    s.advance_to(secs(5));
    assert_eq!(relayed(&mut s, a, &an, b, b"x\n"), ["x"]);
    assert_eq!(s.deadline(), Some(secs(12)), "b's line");
    s.advance_to(secs(6));
    s.send(b, "\n");
    assert_eq!(s.lines(a).len(), 1);
    assert_eq!(s.deadline(), Some(secs(35)), "a idle (b idle at 36 s)");
    s.advance_to(secs(7));
    s.send(a, "q");
    assert_eq!(s.deadline(), Some(secs(17)), "a's line");
    s.send(a, "\n/quit\n");
    s.lines(a);
    s.lines(b);
    s.closes();
    s.events();
    assert_eq!(s.deadline(), Some(secs(36)), "b idle");
    s.closed(a);
    assert_eq!(s.deadline(), Some(secs(36)), "b idle");
    s.quiet_until(secs(36), &[b]);
    assert_eq!(s.closes(), [(b, Reason::Idle, true)]);
    assert_eq!(s.deadline(), None);
}

/// Limits and policies (soft output limit), Address policies (flood
/// control): `poll_timeout` with a held line on one client and a grace on
/// another is the earlier, then the other.
#[test]
fn policies_poll_timeout_flood_and_soft_limit() {
    let mut s = Session::timed(Config {
        flood: Some(rate(1, secs(3))),
        ..soft_config()
    });
    let [(a, an), (b, _), (slow, slow_nick)] = trio(&mut s);
    let (f, fnick) = s.join_from(public(1), &[a, b, slow]);
    s.events();
    s.stall(slow);
    fill_to(&mut s, a, &an, slow, SOFT);
    s.lines(b);
    s.lines(f);
    // Private messages from f: nothing for slow.
    let t0 = s.elapsed();
    s.send(f, format!("/msg {an} 1\n/msg {an} 2\n"));
    assert_eq!(s.lines(a), [format!("*{fnick}* 1")]);
    assert_eq!(s.deadline(), Some(t0 + secs(3)), "f's held line");
    s.advance_to(t0 + secs(1));
    s.send(a, "over\n");
    s.lines(b);
    s.lines(f);
    assert_eq!(s.deadline(), Some(t0 + secs(3)), "f's held line");
    s.quiet_until(t0 + secs(3), &[b, f]);
    assert_eq!(s.lines(a), [format!("*{fnick}* 2")]);
    assert_eq!(s.deadline(), Some(t0 + secs(1) + GRACE), "slow's grace");
    s.quiet_until(t0 + secs(1) + GRACE, &[a, b, f]);
    assert_eq!(s.closes(), [(slow, Reason::TooSlow, false)]);
    assert_eq!(s.lines(f), [format!("* {slow_nick} left (too slow)")]);
    assert_eq!(s.deadline(), None);
}

/// Address policies: `poll_timeout` is `None` while nothing is pending:
/// loopback clients (exempt), a public client with no unterminated line
/// and idle off; a deadline only while it holds a line or lines wait.
#[test]
fn policies_poll_timeout_none_when_nothing_pending() {
    let mut s = Session::timed(Config::default());
    assert_eq!(s.deadline(), None);
    let (a, _, b, _) = limited_pair(&mut s);
    s.send(b, "loopback partial");
    assert_eq!(s.deadline(), None);
    s.send(a, "part");
    assert_eq!(s.deadline(), Some(s.elapsed() + secs(60)));
    s.send(a, "\n");
    assert_eq!(s.deadline(), None);
    // "part" was the first line of the burst of 50.
    s.send(a, numbered(1..=50));
    assert_eq!(s.deadline(), Some(s.elapsed() + ms(200)));
    s.advance(ms(200));
    assert_eq!(s.deadline(), None);
}

// ---------------------------------------------------------------------------
// Connection ids and determinism
// ---------------------------------------------------------------------------

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
