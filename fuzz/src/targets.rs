//! The bodies of the fuzz targets, one plain function per target.
//!
//! This file is compiled twice: as `chat_fuzz::targets` for cargo-fuzz (nightly,
//! libFuzzer), and on stable by `chat-core/tests/fuzz_corpus.rs` through
//! `#[path]`, which replays every committed seed and saved crash through these
//! very functions. So it uses nothing but `std`, `arbitrary` and `chat_core`
//! (with its `testkit` feature), and every check is a panic, which is how
//! libFuzzer and the test harness both see a failure.
//!
//! The checks themselves live in `chat_core::testkit` wherever they already
//! exist there (the simulated driver, the reference model, `check_lines`):
//! the targets only decide what input reaches them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use chat_core::framing::{self, Frame, LineFramer};
use chat_core::nick::{self, NickRegistry};
use chat_core::testkit::{self, Harness, Step, reference_nick_key, reference_nick_refusal};
use chat_core::{Bytes, Config, ConnId, Output, Rate, Server};

// ---------------------------------------------------------------------------
// framing

/// `framing`: one connection sends arbitrary bytes, cut into reads at points
/// the input chooses, then EOF. What everyone receives (and every other
/// output) must be the same as when the same bytes come in one read, every
/// line sent must be clean (`testkit::check_lines`), and the server must
/// never buffer more than `max_line + 1` bytes of an unterminated line.
///
/// Input layout, chosen so that seeds are easy to write by hand and a
/// mutation of the stream does not move the cuts: the first byte is a count
/// `n`, the next `n` bytes are the sizes of the first reads, the rest is the
/// stream; whatever the sizes leave is the last read.
pub fn framing(data: &[u8]) {
    let (stream, reads) = cut_reads(data);
    let max_line = testkit::small_config().max_line;

    let split = frames(max_line, &reads);
    assert_eq!(
        split,
        frames(max_line, &[stream]),
        "LineFramer: reads {reads:?} give other frames than one read"
    );

    let split = session(&reads);
    let whole = session(&[stream]);
    assert_eq!(
        split, whole,
        "server: reads {reads:?} give other outputs than one read"
    );
}

/// Splits a `framing` input into its stream and the reads it is cut into.
fn cut_reads(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let Some((&count, rest)) = data.split_first() else {
        return (&[], vec![&[]]);
    };
    let (sizes, stream) = rest.split_at(usize::from(count).min(rest.len()));
    let mut left = stream;
    let mut reads = Vec::with_capacity(sizes.len() + 1);
    for &size in sizes {
        let (read, rest) = left.split_at(usize::from(size).min(left.len()));
        reads.push(read);
        left = rest;
    }
    reads.push(left);
    (stream, reads)
}

/// What [`LineFramer`] makes of a stream: owned, so that two runs compare.
#[derive(Debug, PartialEq, Eq)]
enum Framed {
    Line(Vec<u8>),
    TooLong,
    /// The unterminated last line, handed out on EOF.
    Last(Vec<u8>),
}

/// Frames `reads` with a bare [`LineFramer`], checking its own promises on
/// the way: lines within the limit and without LF, a bounded buffer.
fn frames(max_line: usize, reads: &[&[u8]]) -> Vec<Framed> {
    let mut framer = LineFramer::new(max_line);
    let mut out = Vec::new();
    for read in reads {
        let mut input = *read;
        while let Some(frame) = framer.next_frame(&mut input) {
            out.push(match frame {
                Frame::Line(line) => {
                    assert!(line.len() <= max_line, "line of {} bytes", line.len());
                    assert!(!line.contains(&b'\n'), "LF inside line {line:?}");
                    Framed::Line(line.to_vec())
                }
                Frame::TooLong => Framed::TooLong,
            });
        }
        assert!(input.is_empty(), "next_frame returned None before the end");
        let buffered = framer.buffered();
        assert!(buffered <= max_line + 1, "framer buffers {buffered} bytes");
    }
    if let Some(last) = framer.finish() {
        assert!(last.len() <= max_line, "last line of {} bytes", last.len());
        out.push(Framed::Last(last.to_vec()));
    }
    out
}

/// Everything a `framing` session produced: the bytes each connection was
/// sent, and every output but `Transmit` (whose count depends on how often
/// the driver drains, not on the protocol), in order.
#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    received: Vec<Vec<u8>>,
    outputs: Vec<Output>,
}

/// A sender and a listener; the sender sends `reads`, then EOF.
///
/// Nothing is reported written, so queue accounting does not depend on the
/// reads either; the queue limit is the default one, out of reach of
/// libFuzzer's inputs, because this target is about framing, not slow
/// clients (the `server` target covers those).
fn session(reads: &[&[u8]]) -> Transcript {
    let config = Config {
        max_queue: Config::default().max_queue,
        ..testkit::small_config()
    };
    let max_line = config.max_line;
    let now = Instant::now();
    let mut server = Server::new(config, 1);
    let sender = server.handle_connect(now, SocketAddr::from(([127, 0, 0, 1], 4000)));
    let listener = server.handle_connect(now, SocketAddr::from(([127, 0, 0, 1], 4001)));
    let mut transcript = Transcript {
        received: vec![Vec::new(); 2],
        outputs: Vec::new(),
    };
    let drain = |server: &mut Server, transcript: &mut Transcript| {
        while let Some(output) = server.poll_output() {
            let Output::Transmit(conn) = output else {
                transcript.outputs.push(output);
                continue;
            };
            let index = [sender, listener]
                .iter()
                .position(|&c| c == conn)
                .unwrap_or_else(|| panic!("output for {conn}, never opened"));
            let mut chunks: Vec<Bytes> = Vec::new();
            server.poll_transmit(conn, &mut chunks);
            for chunk in &chunks {
                transcript.received[index].extend_from_slice(chunk);
            }
            testkit::check_lines(&transcript.received[index]);
        }
    };
    drain(&mut server, &mut transcript);
    for read in reads {
        server.handle_bytes(now, sender, read);
        if let Some(buffered) = server.buffered_bytes(sender) {
            assert!(buffered <= max_line + 1, "server buffers {buffered} bytes");
        }
        drain(&mut server, &mut transcript);
    }
    server.handle_eof(now, sender);
    drain(&mut server, &mut transcript);
    transcript
}

// ---------------------------------------------------------------------------
// server

/// One operation of a `server` session; maps onto [`testkit::Step`], which
/// has no `Arbitrary` of its own (chat-core does not depend on `arbitrary`).
///
/// Bytes come as [`Piece`]s rather than raw bytes so that the fuzzer reaches
/// commands, nicks and limits in a few mutations instead of by luck. Numbers
/// are narrow on purpose: client numbers wrap around the connections opened
/// so far (see [`Step`]), and short fields make every mutation count.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new connection is accepted.
    Connect,
    /// A client sends the pieces, concatenated, in one read.
    Send {
        /// Which client (modulo the connections opened so far).
        client: u8,
        /// What it sends.
        pieces: Vec<Piece>,
    },
    /// The driver writes at most `max` bytes to a client (a partial write).
    Write {
        /// Which client.
        client: u8,
        /// Most bytes written.
        max: u16,
    },
    /// A client closes its side.
    Eof {
        /// Which client.
        client: u8,
    },
    /// A client's connection fails.
    Close {
        /// Which client.
        client: u8,
    },
    /// A client stops (or resumes) reading.
    Stall {
        /// Which client.
        client: u8,
        /// Whether it stops reading.
        stalled: bool,
    },
    /// Time passes.
    Tick {
        /// How much, in milliseconds.
        millis: u32,
    },
    /// The server shuts down.
    Shutdown,
    /// A new connection is accepted whose bytes cannot carry chat yet (a
    /// TLS handshake comes first).
    Accept,
    /// A client's bytes can carry chat now (its handshake is over).
    Ready {
        /// Which client.
        client: u8,
    },
}

/// Part of what a client sends.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// One of [`TOKENS`] (modulo their count).
    Token(u8),
    /// Any one byte.
    Byte(u8),
    /// `len` copies of `byte`: long lines and queue fillers in few bytes.
    Run {
        /// The byte repeated.
        byte: u8,
        /// How many times.
        len: u8,
    },
}

/// What [`Piece::Token`] picks from: the protocol's words and the edge cases
/// of docs/protocol.md (CRLF, lone CR, commands in both cases, nick
/// collisions, control characters, bidi, split and invalid UTF-8).
pub const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"\t",
    b"/nick ",
    b"/me ",
    b"/msg ",
    b"/who",
    b"/help",
    b"/quit",
    b"//",
    b"/",
    b"/NICK ",
    b"bob",
    b"BOB",
    "Zoë".as_bytes(),
    b"hi",
    b"a.b",
    b"\x1b[31m",
    "\u{202e}".as_bytes(),
    // U+20AC split in two, and what is never valid UTF-8.
    b"\xe2\x82",
    b"\xac",
    b"\xff",
    b"\x00",
    b"\x7f",
    "\u{85}".as_bytes(),
    // Exactly `small_config().max_line` bytes.
    b"0123456789abcdef",
    // Sanitizing 2-4 (appended, so the seeds keep their meaning): format
    // characters, the joiners, an emoji to join, a combining mark and a
    // variation selector to pile up, a Hangul filler, a tag character, a
    // line separator.
    "\u{200b}".as_bytes(),
    "\u{feff}".as_bytes(),
    "\u{200d}".as_bytes(),
    "\u{200c}".as_bytes(),
    "\u{1f469}".as_bytes(),
    "\u{301}".as_bytes(),
    "\u{fe0f}".as_bytes(),
    "\u{3164}".as_bytes(),
    "\u{e0041}".as_bytes(),
    "\u{2028}".as_bytes(),
];

impl Piece {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            Piece::Token(index) => TOKENS[usize::from(index) % TOKENS.len()].to_vec(),
            Piece::Byte(byte) => vec![byte],
            Piece::Run { byte, len } => vec![byte; usize::from(len)],
        }
    }
}

impl Op {
    /// The harness step this operation stands for.
    pub fn to_step(&self) -> Step {
        match *self {
            Op::Connect => Step::Connect,
            Op::Send { client, ref pieces } => Step::Bytes {
                client: client.into(),
                bytes: pieces.iter().flat_map(Piece::bytes).collect(),
            },
            Op::Write { client, max } => Step::Write {
                client: client.into(),
                max: max.into(),
            },
            Op::Eof { client } => Step::Eof {
                client: client.into(),
            },
            Op::Close { client } => Step::Close {
                client: client.into(),
            },
            Op::Stall { client, stalled } => Step::Stall {
                client: client.into(),
                stalled,
            },
            Op::Tick { millis } => Step::Tick {
                millis: millis.into(),
            },
            Op::Shutdown => Step::Shutdown,
            Op::Accept => Step::Accept,
            Op::Ready { client } => Step::Ready {
                client: client.into(),
            },
        }
    }
}

/// A decoded `server` input: the server's seed (it picks the generated
/// nicks) and the operations, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Seed of the server's random choices.
    pub seed: u8,
    /// What happens, in order.
    pub ops: Vec<Op>,
}

impl Session {
    /// Decodes a `server` input with `arbitrary`: one byte of seed, then
    /// operations while they last. Never fails: a truncated operation is
    /// filled with zeros, as `arbitrary` does.
    pub fn decode(data: &[u8]) -> Session {
        let mut u = Unstructured::new(data);
        let seed = u8::arbitrary(&mut u).unwrap_or_default();
        let ops = match u.arbitrary_iter::<Op>() {
            Ok(ops) => ops.map_while(Result::ok).collect(),
            Err(_) => Vec::new(),
        };
        Session { seed, ops }
    }

    /// The bytes [`Session::decode`] turns back into this session: how the
    /// `server` seeds are written (`arbitrary` only decodes). Mirrors
    /// `arbitrary` 1.x's format, which the seed test checks by round trip.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.seed];
        for op in &self.ops {
            // `arbitrary_iter` reads a "one more" flag before each element.
            out.push(1);
            op.encode(&mut out);
        }
        out.push(0);
        out
    }
}

impl Op {
    const VARIANTS: u64 = 10;

    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Op::Connect => variant(out, 0, Op::VARIANTS),
            Op::Send { client, ref pieces } => {
                variant(out, 1, Op::VARIANTS);
                out.push(client);
                for piece in pieces {
                    out.push(1);
                    piece.encode(out);
                }
                out.push(0);
            }
            Op::Write { client, max } => {
                variant(out, 2, Op::VARIANTS);
                out.push(client);
                out.extend_from_slice(&max.to_le_bytes());
            }
            Op::Eof { client } => {
                variant(out, 3, Op::VARIANTS);
                out.push(client);
            }
            Op::Close { client } => {
                variant(out, 4, Op::VARIANTS);
                out.push(client);
            }
            Op::Stall { client, stalled } => {
                variant(out, 5, Op::VARIANTS);
                out.push(client);
                out.push(stalled.into());
            }
            Op::Tick { millis } => {
                variant(out, 6, Op::VARIANTS);
                out.extend_from_slice(&millis.to_le_bytes());
            }
            Op::Shutdown => variant(out, 7, Op::VARIANTS),
            Op::Accept => variant(out, 8, Op::VARIANTS),
            Op::Ready { client } => {
                variant(out, 9, Op::VARIANTS);
                out.push(client);
            }
        }
    }
}

impl Piece {
    const VARIANTS: u64 = 3;

    fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Piece::Token(index) => {
                variant(out, 0, Piece::VARIANTS);
                out.push(index);
            }
            Piece::Byte(byte) => {
                variant(out, 1, Piece::VARIANTS);
                out.push(byte);
            }
            Piece::Run { byte, len } => {
                variant(out, 2, Piece::VARIANTS);
                out.extend_from_slice(&[byte, len]);
            }
        }
    }

    /// The token whose bytes are `token`, as a piece.
    ///
    /// # Panics
    /// If `token` is not in [`TOKENS`].
    #[must_use]
    pub fn token(token: &[u8]) -> Piece {
        let index = TOKENS
            .iter()
            .position(|t| *t == token)
            .unwrap_or_else(|| panic!("{:?} is not a token", String::from_utf8_lossy(token)));
        Piece::Token(u8::try_from(index).unwrap_or_else(|_| panic!("token index {index}")))
    }
}

/// Writes the `u32` that derived `Arbitrary` maps to variant `index` of
/// `count`: it picks `(u32 * count) >> 32`, so the smallest such value is
/// `ceil(index * 2^32 / count)`.
fn variant(out: &mut Vec<u8>, index: u64, count: u64) {
    let value = (index << 32).div_ceil(count);
    let value = u32::try_from(value).unwrap_or_else(|_| panic!("variant {index} of {count}"));
    out.extend_from_slice(&value.to_le_bytes());
}

/// `server`: a session of [`Op`]s across several connections with the
/// small limits of `testkit::small_config`, run by `testkit::Harness`, which
/// checks after every step every invariant of the model-based property test
/// (agreement with the reference model byte for byte, unique nicks, no echo,
/// ordered exactly-once delivery, queue and line limits, clean lines).
pub fn server(data: &[u8]) {
    let session = Session::decode(data);
    let mut harness = Harness::new(testkit::small_config(), session.seed.into());
    for op in &session.ops {
        harness.step(&op.to_step());
    }
}

// ---------------------------------------------------------------------------
// policies

/// How many bytes of a `policies` input pick the configuration: the
/// [`Tuning`] header, before the `server`-format session.
pub const TUNING_BYTES: usize = 11;

/// In `policies`, a tick lasts `millis % POLICY_TICK_SPAN` milliseconds
/// (only the low 16 bits count): up to 65.5 s, past every timeout of
/// [`Tuning`], so that a random tick is a useful one, while a long wait is
/// a few ticks. The `server` target takes the whole `u32`.
pub const POLICY_TICK_SPAN: u32 = 1 << 16;

/// The policy values of a `policies` input, one byte each, in this order at
/// the start of the input. Each byte picks from its table below, modulo the
/// table's length; every table starts with `testkit::policy_config`'s value,
/// so an all-zero (or missing) header is `policy_config()` itself. `max_line`
/// (16), `max_queue` (300) and `max_clients` (6) are `policy_config`'s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Flood burst: [`FLOOD_BURST`].
    pub flood_burst: u8,
    /// Time to earn one more line: [`FLOOD_INTERVAL_MS`].
    pub flood_interval: u8,
    /// Most lines held: [`FLOOD_EXCESS`].
    pub flood_excess: u8,
    /// Incomplete line timeout: [`LINE_TIMEOUT_S`].
    pub line_timeout: u8,
    /// Idle timeout: [`IDLE_TIMEOUT_S`].
    pub idle_timeout: u8,
    /// Connections open per address: [`MAX_PER_IP`].
    pub max_per_ip: u8,
    /// Connect rate per address: [`CONNECT_RATE`].
    pub connect_rate: u8,
    /// Nick changes: [`NICK_RATE`].
    pub nick_rate: u8,
    /// Soft output limit: [`SOFT_QUEUE`].
    pub soft_queue: u8,
    /// Time allowed over the soft limit: [`SOFT_GRACE_MS`].
    pub soft_grace: u8,
    /// Apply the policies to loopback peers too: no, yes.
    pub limit_loopback: u8,
}

/// Lines at once.
pub const FLOOD_BURST: &[u32] = &[3, 1, 2, 5];
/// Milliseconds to earn one more line; `None`: flood control off.
pub const FLOOD_INTERVAL_MS: &[Option<u64>] = &[Some(500), Some(100), Some(1000), Some(3000), None];
/// Most lines held before `excess flood`.
pub const FLOOD_EXCESS: &[usize] = &[4, 0, 1, 2, 10];
/// Seconds to finish a line; `None`: no limit.
pub const LINE_TIMEOUT_S: &[Option<u64>] = &[Some(5), Some(1), Some(2), Some(15), None];
/// Seconds of silence before `idle`; `None`: no limit.
pub const IDLE_TIMEOUT_S: &[Option<u64>] = &[Some(30), Some(2), Some(8), Some(60), None];
/// Connections open at once per address; `None`: no limit.
pub const MAX_PER_IP: &[Option<usize>] = &[Some(2), Some(1), Some(3), None];
/// Connects per address: burst, then one per so many milliseconds.
pub const CONNECT_RATE: &[Option<(u32, u64)>] = &[
    Some((3, 10_000)),
    Some((1, 1000)),
    Some((2, 3000)),
    Some((8, 500)),
    None,
];
/// Nick changes: burst, then one per so many milliseconds.
pub const NICK_RATE: &[Option<(u32, u64)>] =
    &[Some((2, 2500)), Some((1, 1000)), Some((3, 5000)), None];
/// Bytes held before the soft limit's grace starts; 300 is `max_queue`
/// (no soft limit).
pub const SOFT_QUEUE: &[usize] = &[150, 40, 100, 300];
/// Milliseconds allowed over the soft limit.
pub const SOFT_GRACE_MS: &[u64] = &[2000, 300, 1000, 5000];

/// `table[pick % table.len()]`.
fn pick<T: Copy>(table: &[T], pick: u8) -> T {
    table[usize::from(pick) % table.len()]
}

fn rate(burst: u32, millis: u64) -> Rate {
    Rate {
        burst,
        interval: Duration::from_millis(millis),
    }
}

impl Tuning {
    /// Reads the header: the first [`TUNING_BYTES`] bytes, zeros for any
    /// that are missing.
    #[must_use]
    pub fn from_bytes(header: &[u8]) -> Tuning {
        let mut b = [0; TUNING_BYTES];
        let len = header.len().min(TUNING_BYTES);
        b[..len].copy_from_slice(&header[..len]);
        Tuning {
            flood_burst: b[0],
            flood_interval: b[1],
            flood_excess: b[2],
            line_timeout: b[3],
            idle_timeout: b[4],
            max_per_ip: b[5],
            connect_rate: b[6],
            nick_rate: b[7],
            soft_queue: b[8],
            soft_grace: b[9],
            limit_loopback: b[10],
        }
    }

    /// The header that [`Tuning::from_bytes`] reads back as `self`.
    #[must_use]
    pub fn to_bytes(self) -> [u8; TUNING_BYTES] {
        [
            self.flood_burst,
            self.flood_interval,
            self.flood_excess,
            self.line_timeout,
            self.idle_timeout,
            self.max_per_ip,
            self.connect_rate,
            self.nick_rate,
            self.soft_queue,
            self.soft_grace,
            self.limit_loopback,
        ]
    }

    /// `testkit::policy_config()` with the values picked.
    #[must_use]
    pub fn config(self) -> Config {
        let burst = pick(FLOOD_BURST, self.flood_burst);
        Config {
            flood: pick(FLOOD_INTERVAL_MS, self.flood_interval).map(|ms| rate(burst, ms)),
            flood_excess: pick(FLOOD_EXCESS, self.flood_excess),
            line_timeout: pick(LINE_TIMEOUT_S, self.line_timeout).map(Duration::from_secs),
            idle_timeout: pick(IDLE_TIMEOUT_S, self.idle_timeout).map(Duration::from_secs),
            max_per_ip: pick(MAX_PER_IP, self.max_per_ip),
            connect_rate: pick(CONNECT_RATE, self.connect_rate).map(|(b, ms)| rate(b, ms)),
            nick_rate: pick(NICK_RATE, self.nick_rate).map(|(b, ms)| rate(b, ms)),
            soft_queue: pick(SOFT_QUEUE, self.soft_queue),
            soft_queue_grace: Duration::from_millis(pick(SOFT_GRACE_MS, self.soft_grace)),
            limit_loopback: pick(&[false, true], self.limit_loopback),
            ..testkit::policy_config()
        }
    }
}

/// A decoded `policies` input: the [`Tuning`] header, then a session in the
/// `server` target's format, decoded by the same [`Session::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySession {
    /// The configuration picked.
    pub tuning: Tuning,
    /// The server's seed and the operations.
    pub session: Session,
}

impl PolicySession {
    /// Decodes a `policies` input: [`TUNING_BYTES`] of [`Tuning`], then a
    /// [`Session`]. Never fails.
    #[must_use]
    pub fn decode(data: &[u8]) -> PolicySession {
        let (header, rest) = data.split_at(data.len().min(TUNING_BYTES));
        PolicySession {
            tuning: Tuning::from_bytes(header),
            session: Session::decode(rest),
        }
    }

    /// The bytes [`PolicySession::decode`] turns back into this input.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        [&self.tuning.to_bytes()[..], &self.session.encode()].concat()
    }

    /// The harness steps: [`Op::to_step`], but a tick is cut to
    /// [`POLICY_TICK_SPAN`].
    #[must_use]
    pub fn steps(&self) -> Vec<Step> {
        let step = |op: &Op| match *op {
            Op::Tick { millis } => Step::Tick {
                millis: (millis % POLICY_TICK_SPAN).into(),
            },
            _ => op.to_step(),
        };
        self.session.ops.iter().map(step).collect()
    }

    /// Runs the session in `Harness::with_policies`, which checks every
    /// invariant after every step and every timeout; returns the harness.
    #[must_use]
    pub fn run(&self) -> Harness {
        let config = self.tuning.config();
        let mut harness = Harness::with_policies(config, self.session.seed.into());
        for step in self.steps() {
            harness.step(&step);
        }
        harness
    }
}

/// `policies`: a session of the same [`Op`]s as `server`, with every address
/// policy on (flood control holding lines and stopping reads, excess flood,
/// incomplete-line and idle timeouts, connections per address and connect
/// rate, nick rate, the soft output limit), values picked by the input's
/// [`Tuning`] header, peers rotating over IPv4, IPv4-mapped IPv6, IPv6 and
/// loopback addresses (`testkit::policy_peer`), run by
/// `Harness::with_policies`. There is no reference model there; the harness
/// checks its invariants after every step and at every deadline a tick
/// passes: clean whole lines, nothing sent to a closed connection, queue,
/// held-line and buffer limits, every timeout doing something and none in
/// the past, `StopReading`/`ResumeReading` alternating and reading stopped
/// exactly while lines are held, unique nicks, `max_clients` and
/// `max_per_ip`.
pub fn policies(data: &[u8]) {
    let _ = PolicySession::decode(data).run();
}

// ---------------------------------------------------------------------------
// nick

/// One operation on a [`NickRegistry`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum NickOp {
    /// A connection without a nick claims one.
    Claim {
        /// Which connection (modulo [`NICK_CONNS`]).
        conn: u8,
        /// The nick.
        name: Name,
    },
    /// A connection with a nick renames itself.
    Rename {
        /// Which connection.
        conn: u8,
        /// The new nick.
        name: Name,
    },
    /// A connection gives up a nick, its own or not.
    Release {
        /// Which connection.
        conn: u8,
        /// The nick.
        name: Name,
    },
    /// Generates a nick of `len` characters from `words`.
    Generate {
        /// Length, modulo 40.
        len: u8,
        /// The random words, then a fixed generator once they run out.
        words: Vec<u32>,
    },
}

/// A candidate nick, built from pieces.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct Name(pub Vec<NamePart>);

/// Part of a [`Name`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum NamePart {
    /// One of [`NAME_POOL`] (modulo its size).
    Pool(u8),
    /// Any character.
    Char(char),
}

/// How many connections the `nick` target plays with: few, so they collide.
pub const NICK_CONNS: u8 = 4;

/// Names whose keys collide (case, full folding, compatibility forms,
/// confusables), change length, sit on the limits, or break a validity rule
/// (invisible fillers, mark pile-ups, mixed scripts).
pub const NAME_POOL: &[&str] = &[
    "bob",
    "BOB",
    "Bob",
    "Zoë",
    "ZOË",
    "日本語",
    "_",
    "-",
    " ",
    ".",
    "İ",
    "ß",
    "SS",
    "ǅ",
    "Σ",
    "ς",
    "\u{212a}",
    "k",
    "\u{fffd}",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "alice",
    "\u{430}lice",
    "\u{ff21}\u{ff2c}\u{ff29}\u{ff23}\u{ff25}",
    "al\u{131}ce",
    "\u{17f}",
    "\u{fb00}",
    "ff",
    "\u{3164}",
    "\u{1160}",
    "\u{200b}",
    "\u{414}\u{43c}\u{438}\u{442}\u{440}\u{438}\u{439}",
    "\u{592a}\u{90ce}",
    "\u{395}\u{3bb}\u{3ad}\u{3bd}\u{3b7}",
    "\u{628}\u{64b}\u{64b}",
    "\u{13b7}",
    "rn",
    "m",
];

impl Name {
    fn text(&self) -> String {
        let mut text = String::new();
        for part in &self.0 {
            match *part {
                NamePart::Pool(index) => {
                    text.push_str(NAME_POOL[usize::from(index) % NAME_POOL.len()]);
                }
                NamePart::Char(c) => text.push(c),
            }
        }
        text
    }
}

/// `nick`: `nick::check` and `nick::key` agree with the plain references
/// of the testkit's model, and a [`NickRegistry`] driven by claims, renames
/// and releases agrees with a plain model (who holds what, compared by the
/// reference key) after every operation; the key is idempotent, a valid nick holds no default-ignorable code point and has a
/// non-empty key; generated nicks have the asked length and alphabet.
///
/// The registry's preconditions are kept (a connection claims only while it
/// holds no nick and renames only from its own), since the server keeps them.
pub fn nick(data: &[u8]) {
    let mut registry = NickRegistry::default();
    let mut model: HashMap<u8, String> = HashMap::new();
    let mut seen: Vec<String> = Vec::new();
    for op in decode_nick_ops(data) {
        match op {
            NickOp::Claim { conn, name } => {
                let (conn, name) = (conn % NICK_CONNS, name.text());
                if model.contains_key(&conn) {
                    continue;
                }
                let expected = expect_claim(&model, conn, &name);
                if expected.is_ok() {
                    model.insert(conn, name.clone());
                }
                let got = registry
                    .claim(&name, ConnId(conn.into()))
                    .map_err(|e| e.message(&name));
                assert_eq!(got, expected, "claim {name:?} by {conn}");
                seen.push(name);
            }
            NickOp::Rename { conn, name } => {
                let (conn, name) = (conn % NICK_CONNS, name.text());
                let Some(old) = model.get(&conn).cloned() else {
                    continue;
                };
                let expected = expect_claim(&model, conn, &name);
                if expected.is_ok() {
                    model.insert(conn, name.clone());
                }
                let got = registry
                    .rename(&old, &name, ConnId(conn.into()))
                    .map_err(|e| e.message(&name));
                assert_eq!(got, expected, "rename {old:?} to {name:?} by {conn}");
                seen.push(name);
            }
            NickOp::Release { conn, name } => {
                let (conn, name) = (conn % NICK_CONNS, name.text());
                if model
                    .get(&conn)
                    .is_some_and(|held| reference_nick_key(held) == reference_nick_key(&name))
                {
                    model.remove(&conn);
                }
                registry.release(&name, ConnId(conn.into()));
                seen.push(name);
            }
            NickOp::Generate { len, words } => {
                let len = usize::from(len % 40);
                let mut words = words.into_iter();
                let mut state = 0x9e37_79b9_u32;
                let generated = nick::generate(len, || {
                    words.next().unwrap_or_else(|| {
                        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        state
                    })
                });
                assert_eq!(generated.chars().count(), len, "generated {generated:?}");
                assert!(
                    generated.chars().all(|c| c.is_ascii_alphanumeric()),
                    "generated {generated:?}"
                );
                seen.push(generated);
            }
        }
        check_registry(&registry, &model, &seen);
    }
}

/// The bytes the `nick` target decodes into `ops`: how its seeds are
/// written. Mirrors `arbitrary` 1.x's format, like [`Session::encode`].
#[must_use]
pub fn encode_nick_ops(ops: &[NickOp]) -> Vec<u8> {
    const OPS: u64 = 4;
    const PARTS: u64 = 2;
    let encode_name = |out: &mut Vec<u8>, name: &Name| {
        for part in &name.0 {
            out.push(1);
            match *part {
                NamePart::Pool(index) => {
                    variant(out, 0, PARTS);
                    out.push(index);
                }
                NamePart::Char(c) => {
                    variant(out, 1, PARTS);
                    out.extend_from_slice(&u32::from(c).to_le_bytes());
                }
            }
        }
        out.push(0);
    };
    let mut out = Vec::new();
    for op in ops {
        out.push(1);
        match op {
            NickOp::Claim { conn, name } => {
                variant(&mut out, 0, OPS);
                out.push(*conn);
                encode_name(&mut out, name);
            }
            NickOp::Rename { conn, name } => {
                variant(&mut out, 1, OPS);
                out.push(*conn);
                encode_name(&mut out, name);
            }
            NickOp::Release { conn, name } => {
                variant(&mut out, 2, OPS);
                out.push(*conn);
                encode_name(&mut out, name);
            }
            NickOp::Generate { len, words } => {
                variant(&mut out, 3, OPS);
                out.push(*len);
                for word in words {
                    out.push(1);
                    out.extend_from_slice(&word.to_le_bytes());
                }
                out.push(0);
            }
        }
    }
    out.push(0);
    out
}

/// Decodes a `nick` input: operations while they last.
pub fn decode_nick_ops(data: &[u8]) -> Vec<NickOp> {
    let mut u = Unstructured::new(data);
    match u.arbitrary_iter::<NickOp>() {
        Ok(ops) => ops.map_while(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

impl Name {
    /// A name made of plain characters.
    pub fn chars(text: &str) -> Name {
        Name(text.chars().map(NamePart::Char).collect())
    }
}

/// What claiming (or renaming to) `name` must give for `conn`: the error
/// line's text (after `error: `) on refusal.
fn expect_claim(model: &HashMap<u8, String>, conn: u8, name: &str) -> Result<(), String> {
    if let Some(why) = reference_nick_refusal(name) {
        return Err(format!("invalid nick {name}: {why}"));
    }
    match model_holder(model, name) {
        Some(holder) if holder != conn => Err(format!("nick {name} is already taken")),
        _ => Ok(()),
    }
}

fn model_holder(model: &HashMap<u8, String>, name: &str) -> Option<u8> {
    let wanted = reference_nick_key(name);
    model
        .iter()
        .find(|(_, held)| reference_nick_key(held) == wanted)
        .map(|(&conn, _)| conn)
}

fn check_registry(registry: &NickRegistry, model: &HashMap<u8, String>, seen: &[String]) {
    assert_eq!(
        registry.len(),
        model.len(),
        "registry size, model {model:?}"
    );
    assert_eq!(registry.is_empty(), model.is_empty());
    for name in seen {
        let valid = nick::is_valid(name);
        assert_eq!(valid, reference_nick_refusal(name).is_none(), "{name:?}");
        let key = nick::key(name);
        assert_eq!(key, reference_nick_key(name), "key of {name:?}");
        assert_eq!(nick::key(&key), key, "key of the key of {name:?}");
        if valid {
            assert!(!key.is_empty(), "empty key of valid {name:?}");
            assert!(
                !name.chars().any(nick::is_default_ignorable),
                "valid {name:?} holds a default-ignorable code point"
            );
        }
        assert_eq!(
            registry.holder(name),
            model_holder(model, name).map(|conn| ConnId(conn.into())),
            "holder of {name:?}, model {model:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// sanitize

/// `sanitize`: `framing::sanitize` of arbitrary bytes equals the reference
/// model's plain, character-by-character `testkit::reference_sanitize`,
/// holds no forbidden character and no trailing whitespace, is at most three
/// times as long as the input, and makes a clean line (`testkit::check_lines`:
/// joiners only between visible characters, at most four marks in a row);
/// `framing::is_forbidden` agrees with the reference on every character of
/// the input and on every 4-byte word read as a scalar.
pub fn sanitize(data: &[u8]) {
    let clean = framing::sanitize(data);
    assert_eq!(
        clean,
        testkit::reference_sanitize(data),
        "sanitize({data:?})"
    );
    assert!(
        !clean.chars().any(testkit::reference_forbidden),
        "forbidden character left in {clean:?}"
    );
    assert!(
        !clean.ends_with(char::is_whitespace),
        "trailing whitespace in {clean:?}"
    );
    assert!(clean.len() <= 3 * data.len(), "grew over 3x: {data:?}");
    testkit::check_lines(format!("{clean}\n").as_bytes());

    let words = data
        .chunks_exact(4)
        .filter_map(|w| char::from_u32(u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
    for c in String::from_utf8_lossy(data).chars().chain(words) {
        assert_eq!(
            framing::is_forbidden(c),
            testkit::reference_forbidden(c),
            "is_forbidden({c:?})"
        );
    }
}

/// `cluster_entry`: fields read from the room's shared log, as an
/// untrusted Redis would hand them over (the input split at NUL bytes into
/// name, value, name, value...). `Decoded::from_fields` never panics; what
/// it accepts holds only valid nicks and lines a client could be sent
/// (unchanged by `framing::sanitize`, within `MAX_ENTRY_LINE`), node
/// entries carry an origin and script entries none, and writing it back
/// out and reading it again gives the same entry.
pub fn cluster_entry(data: &[u8]) {
    use chat_core::cluster::entry::MAX_ENTRY_LINE;
    use chat_core::cluster::{Decoded, Entry};

    cluster_packed(data);
    let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let fields: Vec<(&[u8], &[u8])> = parts
        .chunks(2)
        .map(|pair| (pair[0], pair.get(1).copied().unwrap_or_default()))
        .collect();
    let Ok(decoded) = Decoded::from_fields(fields.iter().copied()) else {
        return;
    };
    let clean_line = |line: &str| {
        assert!(!line.is_empty() && line.len() <= MAX_ENTRY_LINE, "{line:?}");
        assert_eq!(framing::sanitize(line.as_bytes()), line, "unclean line");
    };
    let valid_nick = |nick: &str| assert_eq!(nick::check(nick), Ok(()), "{nick:?}");
    let by_a_node = match &decoded.entry {
        Entry::Join { nick, .. } => {
            valid_nick(nick);
            true
        }
        Entry::Leave { nick, reason, .. } => {
            valid_nick(nick);
            reason.iter().for_each(|r| clean_line(r));
            true
        }
        Entry::Rename { from, to, .. } => {
            valid_nick(from);
            valid_nick(to);
            true
        }
        Entry::Say { line, .. } | Entry::Msg { line, .. } => {
            clean_line(line);
            true
        }
        Entry::NodeGone { nicks, .. } => {
            nicks.iter().for_each(|n| valid_nick(n));
            false
        }
        Entry::Sync { members, .. } => {
            members.iter().for_each(|(_, n)| valid_nick(n));
            false
        }
    };
    assert_eq!(decoded.origin.is_some(), by_a_node, "{decoded:?}");
    let written = decoded.entry.to_fields(decoded.origin.as_ref());
    let again = Decoded::from_fields(written.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    assert_eq!(again.as_ref(), Ok(&decoded), "written back as {written:?}");
    let packed = decoded.entry.to_packed(decoded.origin.as_ref());
    let unpacked = Decoded::from_packed(packed.as_bytes());
    assert_eq!(unpacked.as_ref(), Ok(&decoded), "packed as {packed:?}");
}

/// The same input read as a packed entry (the value of a stream entry's
/// field `e`): never a panic, and what it accepts packs back to an entry
/// that reads the same.
fn cluster_packed(data: &[u8]) {
    use chat_core::cluster::Decoded;
    if let Ok(decoded) = Decoded::from_packed(data) {
        let packed = decoded.entry.to_packed(decoded.origin.as_ref());
        let again = Decoded::from_packed(packed.as_bytes());
        assert_eq!(again.as_ref(), Ok(&decoded), "packed back as {packed:?}");
    }
}

/// The steps of a `cluster` input: each three bytes (kind, node or client,
/// parameter) after the seed byte, at most [`CLUSTER_STEPS`] of them.
pub fn decode_cluster_steps(data: &[u8]) -> (u64, Vec<testkit::NodeStep>) {
    use testkit::{NICKS, NodeLine, NodeStep};
    let seed = u64::from(data.first().copied().unwrap_or(0));
    let steps = data
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(3)
        .take(CLUSTER_STEPS)
        .map(|step| {
            let (kind, which, param) = (step[0], usize::from(step[1]), step[2]);
            let (node, client) = (which % 3, which / 3);
            let line = |line| NodeStep::Line { node, client, line };
            match kind % 16 {
                0 => NodeStep::Connect { node },
                1..=3 => line(NodeLine::Chat),
                4 => line(NodeLine::Me),
                5 => line(NodeLine::Nick(usize::from(param) % NICKS.len())),
                6 => line(NodeLine::Msg(usize::from(param))),
                7 => line(if param % 2 == 0 {
                    NodeLine::Who
                } else {
                    NodeLine::Quit
                }),
                8 => NodeStep::Eof { node, client },
                9 => NodeStep::Apply {
                    node,
                    calls: usize::from(param % 4) + 1,
                },
                10 => NodeStep::Read { node },
                11 => NodeStep::Settle,
                12 => NodeStep::LinkDown {
                    node,
                    applied: param % 2 == 0,
                },
                13 => NodeStep::LinkUp { node },
                14 => match param % 4 {
                    0 => NodeStep::Restart,
                    1 => NodeStep::Shutdown { node },
                    _ => NodeStep::Crash { node },
                },
                _ => NodeStep::Tick {
                    millis: u64::from(param) * 50,
                },
            }
        })
        .collect();
    (seed, steps)
}

/// Most steps of one `cluster` input.
pub const CLUSTER_STEPS: usize = 120;

/// `cluster`: three servers sharing one room through a simulated Redis
/// (`testkit::Nodes`), driven by steps decoded from the input (clients
/// connecting, chatting, renaming, leaving; calls reaching Redis and reads
/// answered in any interleaving; links failing with their last calls run
/// or not; Redis restarting empty; nodes crashing or shutting down; time
/// passing), then settled. After every step: nicks unique across the
/// nodes whose link is up, every client's room lines in the log's one
/// order from its join on, no chat line twice, no node reaped twice or
/// writing after its reap; once settled, nothing lost (or, after a
/// restart, nothing written since), rosters and members as Redis has
/// them, and a node dead for 10 s reaped.
pub fn cluster(data: &[u8]) {
    let (seed, steps) = decode_cluster_steps(data);
    let mut nodes = testkit::Nodes::new(3, &Config::default(), seed);
    for step in &steps {
        nodes.step(step);
    }
    nodes.step(&testkit::NodeStep::Settle);
}
