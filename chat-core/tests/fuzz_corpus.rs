//! Replays the fuzz corpus on stable Rust (docs/fuzzing.md): every committed
//! seed in `fuzz/seeds/<target>/` and every saved crash in
//! `fuzz/regressions/<target>/` goes through the very function libFuzzer
//! runs, included from the fuzz crate by path so that no check is copied.
//!
//! The seeds are written by `write_seeds` below, from named cases that cover
//! the protocol's edge cases (run it with
//! `cargo test -p chat-core --test fuzz_corpus write_seeds -- --ignored`);
//! `seeds_are_up_to_date` keeps the files and the cases in step, and catches
//! a change in `arbitrary`'s format, which would silently change what the
//! `server` and `policies` seeds mean; `policy_seeds_reach_their_policy`
//! checks that each named `policies` seed still gets where its name says.

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use targets::{Name, NamePart, NickOp, Op, Piece, PolicySession, Session, Tuning};

/// A fuzz target's body.
type Target = fn(&[u8]);

/// Every target, by the name of its directories.
const TARGETS: &[(&str, Target)] = &[
    ("framing", targets::framing),
    ("server", targets::server),
    ("policies", targets::policies),
    ("nick", targets::nick),
    ("sanitize", targets::sanitize),
    ("cluster_entry", targets::cluster_entry),
    ("cluster", targets::cluster),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The input files in `dir`, sorted; dot files and `README*` are not inputs.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    files.retain(|path| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        path.is_file() && !name.starts_with('.') && !name.starts_with("README")
    });
    files.sort();
    files
}

/// Runs every seed and regression input of `target`; fails naming each
/// input that panics.
fn replay(name: &str, target: Target) {
    let seeds = inputs(&fuzz_dir().join("seeds").join(name));
    let regressions = inputs(&fuzz_dir().join("regressions").join(name));
    assert!(
        !seeds.is_empty(),
        "no seeds for {name}: the replay would pass vacuously"
    );
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    println!(
        "{name}: replayed {} seeds and {} regression inputs",
        seeds.len(),
        regressions.len()
    );
    assert!(failed.is_empty(), "{name} fails on {failed:#?}");
}

#[test]
fn framing_corpus() {
    replay("framing", targets::framing);
}

#[test]
fn server_corpus() {
    replay("server", targets::server);
}

#[test]
fn policies_corpus() {
    replay("policies", targets::policies);
}

#[test]
fn nick_corpus() {
    replay("nick", targets::nick);
}

#[test]
fn sanitize_corpus() {
    replay("sanitize", targets::sanitize);
}

#[test]
fn cluster_entry_corpus() {
    replay("cluster_entry", targets::cluster_entry);
}

#[test]
fn cluster_corpus() {
    replay("cluster", targets::cluster);
}

#[test]
fn every_target_is_replayed() {
    let fuzz_targets = inputs(&fuzz_dir().join("fuzz_targets"));
    let mut names: Vec<String> = fuzz_targets
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let mut replayed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    replayed.sort_unstable();
    assert_eq!(names, replayed, "a fuzz target without a replay test");
    // fuzz/smoke.sh hands libFuzzer each target's regressions directory,
    // which must exist (git keeps it by its .gitkeep).
    for name in replayed {
        let dir = fuzz_dir().join("regressions").join(name);
        assert!(
            dir.join(".gitkeep").is_file(),
            "{} has no .gitkeep",
            dir.display()
        );
    }
}

// ---------------------------------------------------------------------------
// The seeds.

/// A `framing` input: the stream cut into reads of `sizes`, then the rest.
fn cuts(sizes: &[u8], stream: &[u8]) -> Vec<u8> {
    let count = u8::try_from(sizes.len()).unwrap_or_else(|_| panic!("too many cuts"));
    [&[count], sizes, stream].concat()
}

fn framing_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("one-line", cuts(&[], b"hello\n")),
        ("crlf", cuts(&[], b"hi\r\nthere\r\n")),
        ("crlf-split-between", cuts(&[3], b"hi\r\nthere\r\n")),
        ("lone-cr", cuts(&[2], b"a\rb\r\r\n\r")),
        (
            "split-utf8",
            cuts(&[4, 1], "abc\u{20ac}\u{20ac}\n".as_bytes()),
        ),
        ("invalid-utf8", cuts(&[1], b"\xff\xfe\xe2\x82\n\xac\n")),
        ("control-chars", cuts(&[3], b"\x1b[31mred\x07\x00\x7f\n")),
        (
            "bidi-and-c1",
            cuts(&[2], "\u{202e}evil\u{2066}\u{85}\n".as_bytes()),
        ),
        ("max-line-exactly", cuts(&[8], b"0123456789abcdef\n")),
        ("max-line-crlf", cuts(&[16], b"0123456789abcdef\r\n")),
        ("overlong-by-one", cuts(&[], b"0123456789abcdefg\nnext\n")),
        (
            "overlong-cr-not-before-lf",
            cuts(&[17], b"0123456789abcdef\rx\nnext\n"),
        ),
        (
            "overlong-many-reads",
            cuts(&[5, 5, 5, 5, 5], b"0123456789abcdef0123456789abcdef\nok\n"),
        ),
        ("overlong-then-eof", cuts(&[10], b"0123456789abcdefghij")),
        ("eof-unterminated", cuts(&[2], b"line\nlast words")),
        ("eof-after-cr", cuts(&[], b"last\r")),
        ("empty-reads", cuts(&[0, 0, 3, 0, 0], b"hi\n\nyo\n")),
        (
            "commands",
            cuts(
                &[7, 9],
                b"/nick bob\n/me waves\n/who\n/help\n//slash\n/\n/dance\n/msg bob hi\n",
            ),
        ),
        ("quit-then-more", cuts(&[4], b"/quit bye all\nafter\n")),
        ("whitespace-only", cuts(&[1], b"  \t\n\t\n")),
    ]
}

fn text(text: &str) -> Vec<Piece> {
    text.bytes().map(Piece::Byte).collect()
}

fn send(client: u8, pieces: Vec<Piece>) -> Op {
    Op::Send { client, pieces }
}

fn tok(token: impl AsRef<[u8]>) -> Piece {
    Piece::token(token.as_ref())
}

/// `count` chat lines of `len` bytes each.
fn lines(count: usize, len: u8) -> Vec<Piece> {
    [Piece::Run { byte: b'q', len }, tok("\n")].repeat(count)
}

fn server_seeds() -> Vec<(&'static str, Session)> {
    let session = |seed: u8, ops: Vec<Op>| Session { seed, ops };
    // Two chat lines of 23 bytes (`NICK: ` and 16 bytes); seven of them fill
    // a stalled reader's 300-byte queue while the others read along.
    let two_lines: Vec<Piece> = (0..2)
        .flat_map(|_| {
            [
                Piece::Run {
                    byte: b'a',
                    len: 16,
                },
                tok("\n"),
            ]
        })
        .collect();
    vec![
        (
            "chat",
            session(
                1,
                vec![
                    Op::Connect,
                    Op::Connect,
                    send(0, text("hi\n")),
                    send(1, text("hello\r\n")),
                ],
            ),
        ),
        (
            "tls-handshakes",
            session(
                4,
                vec![
                    Op::Connect,
                    Op::Accept,
                    send(0, text("before\n")),
                    Op::Ready { client: 1 },
                    send(1, text("hi\n")),
                    Op::Accept,
                    Op::Eof { client: 2 },
                    Op::Accept,
                    Op::Close { client: 3 },
                    Op::Ready { client: 3 },
                    Op::Accept,
                    Op::Accept,
                    Op::Accept,
                    Op::Shutdown,
                    Op::Ready { client: 5 },
                ],
            ),
        ),
        (
            "nick-collisions",
            session(
                2,
                vec![
                    Op::Connect,
                    Op::Connect,
                    Op::Connect,
                    send(0, vec![tok("/nick "), tok("bob"), tok("\n")]),
                    send(1, vec![tok("/nick "), tok("BOB"), tok("\n")]),
                    send(2, vec![tok("/NICK "), tok("Zoë"), tok("\r\n")]),
                    send(0, vec![tok("/nick "), tok("BOB"), tok("\n")]),
                    send(0, vec![tok("/nick "), tok("BOB"), tok("\n")]),
                    send(1, text("/nick a.b\n/nick a b\n/nick\n/nick zoë\n")),
                    send(1, text("/msg bob psst\n/msg ZOË hi\n/msg nobody x\n")),
                ],
            ),
        ),
        (
            "commands",
            session(
                3,
                vec![
                    Op::Connect,
                    Op::Connect,
                    send(0, text("/me waves\n/me\n/who\n")),
                    send(1, text("//slash\n/\n/dance\n/msg\n")),
                    // The help text alone is over the small 300-byte queue.
                    send(0, text("/help\n")),
                ],
            ),
        ),
        (
            "quit",
            session(
                4,
                vec![
                    Op::Connect,
                    Op::Connect,
                    Op::Connect,
                    send(0, text("/quit bye all\nafter\n")),
                    send(1, text("/QUIT\n")),
                    send(0, text("late\n")),
                    send(2, text("/who\n")),
                ],
            ),
        ),
        (
            "max-clients",
            session(
                5,
                vec![
                    Op::Connect,
                    Op::Connect,
                    Op::Connect,
                    Op::Connect,
                    Op::Connect,
                    Op::Connect,
                    send(4, text("refused\n")),
                    Op::Close { client: 0 },
                    Op::Connect,
                    Op::Connect,
                    send(6, text("/who\n")),
                ],
            ),
        ),
        (
            "stalled-over-queue",
            session(
                6,
                vec![
                    Op::Connect,
                    Op::Connect,
                    Op::Connect,
                    Op::Stall {
                        client: 1,
                        stalled: true,
                    },
                    send(0, two_lines.clone()),
                    send(0, two_lines.clone()),
                    send(0, two_lines.clone()),
                    send(0, two_lines.clone()),
                    send(0, two_lines.clone()),
                    send(0, two_lines.clone()),
                    send(0, two_lines.clone()),
                    send(2, text("/who\n")),
                    Op::Connect,
                ],
            ),
        ),
        (
            // A stalled reader's queue filled to exactly the limit (kept),
            // then to one byte over it (dropped as too slow): lines of 22
            // bytes (`NICK: `, 15, LF), 21 and 20, and a partial write.
            "queue-limit-exact",
            session(
                12,
                vec![
                    Op::Connect,
                    Op::Connect,
                    Op::Stall {
                        client: 1,
                        stalled: true,
                    },
                    send(0, lines(7, 15)),
                    send(0, lines(6, 14)),
                    send(0, lines(1, 13)),
                    Op::Write { client: 1, max: 21 },
                    send(0, lines(1, 15)),
                    send(0, lines(1, 14)),
                    Op::Connect,
                ],
            ),
        ),
        (
            "partial-writes",
            session(
                7,
                vec![
                    Op::Connect,
                    Op::Connect,
                    Op::Stall {
                        client: 1,
                        stalled: true,
                    },
                    send(0, text("one\ntwo\nthree\n")),
                    Op::Write { client: 1, max: 5 },
                    Op::Write { client: 1, max: 0 },
                    Op::Write { client: 1, max: 11 },
                    send(0, two_lines.clone()),
                    send(0, two_lines.clone()),
                    Op::Stall {
                        client: 1,
                        stalled: false,
                    },
                    send(0, text("four\n")),
                ],
            ),
        ),
        (
            "sanitizing",
            session(
                8,
                vec![
                    Op::Connect,
                    Op::Connect,
                    send(
                        0,
                        vec![
                            tok("\x1b[31m"),
                            tok("hi"),
                            tok("\u{202e}"),
                            tok(b"\xe2\x82"),
                        ],
                    ),
                    send(0, vec![tok("\u{202e}"), tok("\n")]),
                    send(0, vec![tok("\u{85}"), tok("\x7f"), tok("\x00"), tok("\n")]),
                    send(1, vec![tok("hi"), tok("\r"), tok("hi"), tok("\r\n")]),
                    send(1, vec![tok(" "), tok("\t"), tok("\n")]),
                ],
            ),
        ),
        (
            "overlong-lines",
            session(
                9,
                vec![
                    Op::Connect,
                    Op::Connect,
                    send(
                        0,
                        vec![
                            Piece::Run {
                                byte: b'x',
                                len: 17,
                            },
                            tok("\n"),
                        ],
                    ),
                    send(0, vec![tok("0123456789abcdef"), tok("\r\n")]),
                    send(0, vec![tok("0123456789abcdef"), tok("\r")]),
                    send(0, vec![tok("\n")]),
                    send(
                        1,
                        vec![Piece::Run {
                            byte: b'y',
                            len: 40,
                        }],
                    ),
                    send(1, vec![tok("\n"), tok("hi"), tok("\n")]),
                ],
            ),
        ),
        (
            "eof-and-close",
            session(
                10,
                vec![
                    Op::Connect,
                    Op::Connect,
                    Op::Connect,
                    send(0, text("half a li")),
                    Op::Eof { client: 0 },
                    send(0, text("ne\n")),
                    Op::Close { client: 0 },
                    Op::Close { client: 1 },
                    send(1, text("gone\n")),
                    Op::Eof { client: 1 },
                    Op::Close { client: 1 },
                    send(2, text("/who\n")),
                ],
            ),
        ),
        (
            "shutdown",
            session(
                11,
                vec![
                    Op::Connect,
                    Op::Connect,
                    Op::Stall {
                        client: 1,
                        stalled: true,
                    },
                    send(0, text("before\n")),
                    Op::Shutdown,
                    Op::Connect,
                    send(0, text("after\n")),
                    Op::Tick { millis: 1500 },
                    Op::Shutdown,
                    Op::Stall {
                        client: 1,
                        stalled: false,
                    },
                ],
            ),
        ),
    ]
}

/// A named `policies` case and what it must make some clients receive:
/// `(client, text)`, the client by connect order.
struct PolicySeed {
    name: &'static str,
    input: PolicySession,
    expect: &'static [(usize, &'static str)],
}

fn tick(millis: u32) -> Op {
    Op::Tick { millis }
}

fn stall(client: u8, stalled: bool) -> Op {
    Op::Stall { client, stalled }
}

/// The named `policies` cases, with `testkit::policy_config()` (an all-zero
/// [`Tuning`]) unless said otherwise: a flood budget of 3 lines, then one
/// per 500 ms, 4 held at most; 5 s per line, 30 s idle; 2 open per address,
/// 3 connects per address at once, then one per 10 s; 2 nick changes, then
/// one per 2.5 s; 150 bytes for 2 s over the soft limit. Peers go 203.0.113.1,
/// .2, `::ffff:203.0.113.1`, `2001:db8::1`, loopback, and round again.
fn policy_seeds() -> Vec<PolicySeed> {
    let seed = |name, seed, tuning, ops, expect| PolicySeed {
        name,
        input: PolicySession {
            tuning,
            session: Session { seed, ops },
        },
        expect,
    };
    let plain = Tuning::default();
    vec![
        seed(
            // 5 lines at once: 3 pass, 2 wait (reading stops), and a line
            // sent meanwhile waits in the socket until they have gone out.
            "flood-held-released",
            1,
            plain,
            vec![
                Op::Connect,
                Op::Connect,
                send(0, text("l1\nl2\nl3\nl4\nl5\n")),
                tick(400),
                send(0, text("l6\n")),
                tick(300),
                send(0, text("l7\n")),
                tick(2000),
                send(1, text("/who\n")),
            ],
            &[(1, ": l5\n"), (1, ": l7\n")],
        ),
        seed(
            // 7 lines at once: 3 pass and 4 wait, exactly `flood_excess`
            // (kept); the next line read, the 5th waiting, is one too many.
            "excess-flood",
            2,
            plain,
            vec![
                Op::Connect,
                Op::Connect,
                send(0, text("1\n2\n3\n4\n5\n6\n7\n")),
                send(0, text("8\n")),
                tick(3000),
            ],
            &[
                (0, "* error: disconnected (excess flood)\n"),
                (1, ": 3\n* "),
                (1, " left (excess flood)\n"),
            ],
        ),
        seed(
            // A byte every 1.5 s never finishes the line: out after 5 s.
            "slowloris-trickle",
            3,
            plain,
            [Op::Connect, Op::Connect]
                .into_iter()
                .chain((0..5).flat_map(|_| [send(0, text("x")), tick(1500)]))
                .collect(),
            &[
                (0, "* error: disconnected (incomplete line timeout)\n"),
                (1, " left (incomplete line timeout)\n"),
            ],
        ),
        seed(
            // #0 never speaks (out at 30 s); #1 speaks at 20 s (out at 50 s).
            "idle-timeout",
            4,
            plain,
            vec![
                Op::Connect,
                Op::Connect,
                tick(20_000),
                send(1, text("still here\n")),
                tick(15_000),
                tick(20_000),
            ],
            &[
                (0, "* error: disconnected (idle)\n"),
                (1, " left (idle)\n"),
                (1, "* error: disconnected (idle)\n"),
            ],
        ),
        seed(
            // #5 is the third from 203.0.113.1 (#2 came as ::ffff:...):
            // refused by max_per_ip; #7, the fourth attempt in 10 s, by the
            // connect rate; #10 gets in once #0 has closed and 10 s passed.
            "per-ip-refusal-and-readmission",
            5,
            plain,
            vec![
                Op::Connect,
                Op::Connect,
                Op::Connect,
                Op::Connect,
                Op::Connect,
                Op::Connect,
                Op::Close { client: 0 },
                Op::Connect,
                Op::Connect,
                tick(10_000),
                Op::Close { client: 3 },
                Op::Close { client: 4 },
                Op::Connect,
                Op::Connect,
                Op::Connect,
                send(10, text("/who\n")),
            ],
            &[
                (5, "* error: too many connections from your address\n"),
                (6, "* welcome"),
                (7, "* error: too many connections from your address\n"),
                (10, "* welcome"),
            ],
        ),
        seed(
            // Two changes pass, the third is too fast, and passes 2.5 s later.
            "nick-rate",
            6,
            plain,
            vec![
                Op::Connect,
                Op::Connect,
                send(0, vec![tok("/nick "), tok("bob"), tok("\n")]),
                send(0, text("/nick ann\n/nick cy\n")),
                tick(2500),
                send(0, text("/nick cy\n")),
            ],
            &[
                (0, "* error: nick changes too fast, try again in 3 s\n"),
                (1, "* ann is now known as cy\n"),
            ],
        ),
        seed(
            // #1 reads nothing: 7 chat lines of 23 bytes (3 at once, then
            // at the flood rate) put it over 150 bytes, and 2 s later it is
            // dropped as too slow, far below the 300-byte hard limit.
            "soft-limit-stalled-reader",
            7,
            plain,
            vec![
                Op::Connect,
                Op::Connect,
                Op::Connect,
                stall(1, true),
                send(0, lines(7, 16)),
                tick(2000),
                tick(2500),
                send(2, text("/who\n")),
            ],
            &[(2, " left (too slow)\n")],
        ),
        seed(
            // EOF with 3 lines waiting and a last unterminated one: they go
            // out at the flood rate, then the client leaves.
            "eof-while-lines-wait",
            8,
            plain,
            vec![
                Op::Connect,
                Op::Connect,
                send(0, text("e1\ne2\ne3\ne4\ne5\ne6\ntail")),
                Op::Eof { client: 0 },
                tick(1200),
                send(0, text("ignored\n")),
                tick(1200),
            ],
            &[(1, ": e6\n"), (1, ": tail\n* ")],
        ),
        seed(
            // The other end of every list: 1 line, then one per 100 ms,
            // none held; 1 s per line, 2 s idle; 1 per address, loopback
            // too; 1 connect and 1 nick change per second; 40 bytes over 300 ms.
            "tight-limits",
            9,
            Tuning {
                flood_burst: 1,
                flood_interval: 1,
                flood_excess: 1,
                line_timeout: 1,
                idle_timeout: 1,
                max_per_ip: 1,
                connect_rate: 1,
                nick_rate: 1,
                soft_queue: 1,
                soft_grace: 1,
                limit_loopback: 1,
            },
            vec![
                Op::Connect,
                Op::Connect,
                Op::Connect,
                send(0, text("a\n")),
                tick(150),
                send(0, text("b\nc\n")),
                send(1, text("/nick x\n")),
                tick(150),
                send(1, text("/nick y\n")),
                send(1, text("half")),
                tick(1500),
                Op::Connect,
            ],
            &[
                (0, "* error: disconnected (excess flood)\n"),
                (1, "* error: nick changes too fast, try again in 1 s\n"),
                (2, "* error: too many connections from your address\n"),
            ],
        ),
    ]
}

fn nick_seeds() -> Vec<(&'static str, Vec<NickOp>)> {
    let pool = |index: u8| Name(vec![NamePart::Pool(index)]);
    vec![
        (
            "case-collisions",
            vec![
                NickOp::Claim {
                    conn: 0,
                    name: Name::chars("bob"),
                },
                NickOp::Claim {
                    conn: 1,
                    name: Name::chars("BOB"),
                },
                NickOp::Claim {
                    conn: 1,
                    name: Name::chars("Zoë"),
                },
                NickOp::Rename {
                    conn: 0,
                    name: Name::chars("ZOË"),
                },
                NickOp::Rename {
                    conn: 0,
                    name: Name::chars("Bob"),
                },
                NickOp::Release {
                    conn: 1,
                    name: Name::chars("bob"),
                },
                NickOp::Release {
                    conn: 0,
                    name: Name::chars("BOB"),
                },
                NickOp::Claim {
                    conn: 1,
                    name: Name::chars("bob"),
                },
            ],
        ),
        (
            "unicode-case",
            // Conn 0 walks through the pool; conn 1 tries to take each name.
            (0..u8::try_from(targets::NAME_POOL.len()).unwrap_or(u8::MAX))
                .flat_map(|index| {
                    [
                        NickOp::Rename {
                            conn: 0,
                            name: pool(index),
                        },
                        NickOp::Claim {
                            conn: 0,
                            name: pool(index),
                        },
                        NickOp::Claim {
                            conn: 1,
                            name: pool(index),
                        },
                        NickOp::Release {
                            conn: 1,
                            name: pool(index),
                        },
                    ]
                })
                .collect(),
        ),
        (
            "length-limits",
            vec![
                NickOp::Claim {
                    conn: 0,
                    name: Name(vec![NamePart::Pool(19), NamePart::Char('x')]),
                },
                NickOp::Claim {
                    conn: 1,
                    name: Name(vec![
                        NamePart::Pool(19),
                        NamePart::Char('x'),
                        NamePart::Char('y'),
                    ]),
                },
                NickOp::Claim {
                    conn: 2,
                    name: Name(vec![]),
                },
                NickOp::Claim {
                    conn: 3,
                    name: Name::chars(&"é".repeat(32)),
                },
            ],
        ),
        (
            "generate",
            vec![
                NickOp::Generate {
                    len: 4,
                    words: vec![u32::MAX, 0, 61 << 26, 62 << 26, 1 << 26],
                },
                NickOp::Generate {
                    len: 0,
                    words: vec![],
                },
                NickOp::Generate {
                    len: 39,
                    words: vec![u32::MAX; 8],
                },
            ],
        ),
    ]
}

fn sanitize_seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("ascii", b"hello, world".to_vec()),
        ("trailing-whitespace", b"  lead kept \t \r".to_vec()),
        (
            "unicode-whitespace",
            "a\u{a0}\u{3000}\u{2028}".as_bytes().to_vec(),
        ),
        (
            "c0-del-c1",
            "a\x00b\x1b[0m\x7f\u{85}\u{9f}\t".as_bytes().to_vec(),
        ),
        (
            "bidi",
            "\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}\u{2066}\u{2067}\u{2068}\u{2069}\u{200f}"
                .as_bytes()
                .to_vec(),
        ),
        (
            "invalid-utf8",
            b"\xff\xfe\xc0\xaf\xed\xa0\x80\xe2\x82".to_vec(),
        ),
        ("split-utf8", b"caf\xc3".to_vec()),
        (
            "format-and-fillers",
            "\u{200b}\u{200e}\u{61c}\u{feff}\u{ad}\u{e0001}\u{e0041}\u{3164}\u{115f}\u{2800}"
                .as_bytes()
                .to_vec(),
        ),
        (
            "joiners",
            "\u{1f469}\u{200d}\u{1f4bb} \u{6cc}\u{200c}\u{62e} \u{200d}x\u{200c}\u{200d}\u{301}"
                .as_bytes()
                .to_vec(),
        ),
        (
            "mark-pile",
            format!("e{}\u{200b}{}", "\u{301}".repeat(6), "\u{fe0f}".repeat(5)).into_bytes(),
        ),
        (
            "control-words",
            [0x2a, 0x20, 0, 0, 0x85, 0, 0, 0, 0x69, 0x20, 0, 0].to_vec(),
        ),
    ]
}

/// Every named seed, as target and file name with its bytes.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut all = Vec::new();
    let named = |target, name: &str, bytes| (target, name.to_owned(), bytes);
    all.extend(
        framing_seeds()
            .into_iter()
            .map(|(n, b)| named("framing", n, b)),
    );
    for (name, session) in server_seeds() {
        let bytes = session.encode();
        assert_eq!(
            Session::decode(&bytes),
            session,
            "server seed {name} does not round-trip: has arbitrary's format changed?"
        );
        all.push(named("server", name, bytes));
        // Every `server` case again, with the policies on.
        let input = PolicySession {
            tuning: Tuning::default(),
            session,
        };
        all.push(named("policies", &format!("server-{name}"), input.encode()));
    }
    for PolicySeed { name, input, .. } in policy_seeds() {
        let bytes = input.encode();
        assert_eq!(
            PolicySession::decode(&bytes),
            input,
            "policies seed {name} does not round-trip: has arbitrary's format changed?"
        );
        all.push(named("policies", name, bytes));
    }
    for (name, ops) in nick_seeds() {
        let bytes = targets::encode_nick_ops(&ops);
        assert_eq!(
            targets::decode_nick_ops(&bytes),
            ops,
            "nick seed {name} does not round-trip: has arbitrary's format changed?"
        );
        all.push(named("nick", name, bytes));
    }
    all.extend(
        sanitize_seeds()
            .into_iter()
            .map(|(n, b)| named("sanitize", n, b)),
    );
    all.extend(
        cluster_entry_seeds()
            .into_iter()
            .map(|(n, b)| named("cluster_entry", n, b)),
    );
    all.extend(
        cluster_seeds()
            .into_iter()
            .map(|(n, b)| named("cluster", n, b)),
    );
    all
}

/// A `cluster` input: the seed byte, then three bytes a step (see
/// `targets::decode_cluster_steps`: kind, node + 3 * client, parameter).
fn cluster_input(steps: &[[u8; 3]]) -> Vec<u8> {
    let mut input = vec![7];
    input.extend(steps.iter().flatten());
    input
}

/// What happens to a room across three servers: clients of every node
/// chatting and renaming, links failing, Redis restarting, nodes dying.
fn cluster_seeds() -> Vec<(&'static str, Vec<u8>)> {
    const CONNECT: u8 = 0;
    const CHAT: u8 = 1;
    const NICK: u8 = 5;
    const APPLY: u8 = 9;
    const READ: u8 = 10;
    const SETTLE: u8 = 11;
    const DOWN: u8 = 12;
    const UP: u8 = 13;
    const GONE: u8 = 14;
    const TICK: u8 = 15;
    let room = [
        [CONNECT, 0, 0],
        [CONNECT, 1, 0],
        [CONNECT, 2, 0],
        [SETTLE, 0, 0],
    ];
    let with = |rest: &[[u8; 3]]| cluster_input(&[&room[..], rest].concat());
    vec![
        (
            "chat-everywhere",
            with(&[[CHAT, 0, 0], [CHAT, 1, 0], [CHAT, 2, 0], [SETTLE, 0, 0]]),
        ),
        (
            "interleaved",
            with(&[
                [CHAT, 0, 0],
                [CHAT, 1, 0],
                [APPLY, 1, 0],
                [READ, 0, 0],
                [APPLY, 0, 0],
                [READ, 2, 0],
            ]),
        ),
        (
            "same-nick-two-nodes",
            with(&[[NICK, 0, 0], [NICK, 1, 1], [APPLY, 1, 0], [APPLY, 0, 0]]),
        ),
        (
            "rename-back",
            with(&[
                [NICK, 0, 2],
                [SETTLE, 0, 0],
                [NICK, 0, 0],
                [APPLY, 0, 0],
                [NICK, 0, 2],
            ]),
        ),
        (
            "link-down-applied",
            with(&[
                [CHAT, 0, 0],
                [DOWN, 0, 0],
                [TICK, 0, 50],
                [UP, 0, 0],
                [SETTLE, 0, 0],
            ]),
        ),
        (
            "link-down-lost",
            with(&[[CHAT, 0, 0], [DOWN, 0, 1], [TICK, 0, 30], [UP, 0, 0]]),
        ),
        (
            "partition-reaped",
            with(&[[DOWN, 1, 1], [TICK, 0, 160], [UP, 1, 0], [TICK, 0, 40]]),
        ),
        (
            "redis-restart",
            with(&[[CHAT, 0, 0], [GONE, 0, 0], [CHAT, 1, 0], [TICK, 0, 20]]),
        ),
        (
            "crash",
            with(&[[GONE, 2, 2], [TICK, 0, 200], [TICK, 0, 10]]),
        ),
        (
            "shutdown",
            with(&[[CHAT, 2, 0], [GONE, 2, 1], [SETTLE, 0, 0]]),
        ),
    ]
}

/// A `cluster_entry` input: the fields joined by NUL bytes.
fn fields(fields: &[(&str, &str)]) -> Vec<u8> {
    let parts: Vec<&str> = fields.iter().flat_map(|(k, v)| [*k, *v]).collect();
    parts.join("\0").into_bytes()
}

/// One entry of each kind as a node or a script writes it, and the ways
/// one can be wrong.
fn cluster_entry_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let node = [("o", "a/1f"), ("n", "7")];
    let with_node = |rest: &[(&'static str, &'static str)]| -> Vec<u8> {
        let mut all = vec![rest[0]];
        all.extend(node);
        all.extend(&rest[1..]);
        fields(&all)
    };
    vec![
        (
            "join",
            with_node(&[("k", "j"), ("c", "16777217"), ("a", "alice")]),
        ),
        (
            "leave-reason",
            with_node(&[("k", "l"), ("c", "1"), ("a", "bob"), ("r", "idle")]),
        ),
        (
            "rename-unicode",
            with_node(&[("k", "r"), ("c", "1"), ("a", "José"), ("b", "東京")]),
        ),
        (
            "say",
            with_node(&[("k", "s"), ("c", "1"), ("v", "alice: hi there")]),
        ),
        (
            "msg",
            with_node(&[
                ("k", "m"),
                ("c", "1"),
                ("t", "b/2"),
                ("u", "9"),
                ("v", "* alice whispers: hi"),
            ]),
        ),
        (
            "node-gone",
            fields(&[
                ("k", "x"),
                ("d", "b.2/ff"),
                ("w", "lost"),
                ("a", "amy\nzed"),
            ]),
        ),
        (
            "sync",
            fields(&[("k", "y"), ("d", "b/ff"), ("a", "1\tamy\n2\tzed")]),
        ),
        (
            "unclean-line",
            with_node(&[("k", "s"), ("c", "1"), ("v", "alice: \x1b[2J\u{202e}")]),
        ),
        (
            "mixed-script-nick",
            with_node(&[("k", "j"), ("c", "1"), ("a", "аlice")]),
        ),
        (
            "leading-zero",
            with_node(&[("k", "j"), ("c", "01"), ("a", "alice")]),
        ),
        ("no-origin", fields(&[("k", "s"), ("c", "1"), ("v", "hi")])),
        (
            "repeated-field",
            with_node(&[("k", "s"), ("c", "1"), ("v", "a"), ("v", "b")]),
        ),
        ("packed-say", b"k1:so4:a/1fn1:3c1:5v9:alice: hi".to_vec()),
        (
            "packed-node-gone",
            b"k1:xd4:b/ffw4:losta7:amy\nzed".to_vec(),
        ),
        (
            "unknown-field",
            with_node(&[("k", "s"), ("c", "1"), ("v", "hi"), ("z", "later")]),
        ),
    ]
}

/// An all-zero (or missing) `policies` header is `testkit::policy_config()`,
/// and every value a header picks is one the server accepts but for the
/// small `max_queue` it shares with `policy_config`.
#[test]
fn tunings_are_policy_config_and_valid() {
    use chat_core::testkit::policy_config;
    assert_eq!(Tuning::default().config(), policy_config());
    assert_eq!(PolicySession::decode(&[]).tuning, Tuning::default());
    for byte in 0..=u8::MAX {
        let tuning = Tuning::from_bytes(&[byte; targets::TUNING_BYTES]);
        assert_eq!(Tuning::from_bytes(&tuning.to_bytes()), tuning);
        assert!(tuning.config().soft_queue <= tuning.config().max_queue);
        let config = chat_core::Config {
            max_queue: chat_core::Config::default().max_queue,
            ..tuning.config()
        };
        assert_eq!(config.validate(), Ok(()), "{tuning:?}");
    }
}

/// Each named `policies` seed gets where its name says (a policy changed
/// under it would leave it testing nothing in particular): every expected
/// text is in what that client received.
#[test]
fn policy_seeds_reach_their_policy() {
    for PolicySeed {
        name,
        input,
        expect,
    } in policy_seeds()
    {
        let harness = input.run();
        let received = harness.received();
        for &(client, text) in expect {
            let got = String::from_utf8_lossy(received[client]);
            assert!(
                got.contains(text),
                "policies seed {name}: #{client} did not receive {text:?}; it received\n{got}"
            );
        }
    }
}

#[test]
fn seeds_are_up_to_date() {
    for (target, name, bytes) in seeds() {
        let path = fuzz_dir().join("seeds").join(target).join(&name);
        let on_disk = fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo test -p chat-core --test fuzz_corpus write_seeds -- --ignored`",
                path.display()
            )
        });
        assert!(
            on_disk == bytes,
            "{} is stale; run `cargo test -p chat-core --test fuzz_corpus write_seeds -- --ignored`",
            path.display()
        );
    }
}

/// Writes the named seeds into `fuzz/seeds/`. Files not named here (inputs
/// added from fuzzing runs) are left alone.
#[test]
#[ignore = "writes fuzz/seeds/; run by hand after changing a seed"]
fn write_seeds() {
    for (target, name, bytes) in seeds() {
        let dir = fuzz_dir().join("seeds").join(target);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(&name);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Prints what a `server`, `policies` or `nick` input decodes to, for
/// reading a crash (and, for `policies`, what every client received if the
/// input passes):
/// `FUZZ_INPUT=path cargo test -p chat-core --test fuzz_corpus show_input -- --ignored --nocapture`
/// (the target is taken from the path's parent directory name).
#[test]
#[ignore = "reads the file named by FUZZ_INPUT"]
fn show_input() {
    let Some(path) = std::env::var_os("FUZZ_INPUT").map(PathBuf::from) else {
        panic!("set FUZZ_INPUT to an input file");
    };
    // `cargo test` runs in chat-core/: a relative path is taken from the
    // repository root, where the docs' commands run.
    let path = if path.is_relative() {
        fuzz_dir().join("..").join(path)
    } else {
        path
    };
    let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let target = path
        .parent()
        .and_then(Path::file_name)
        .unwrap_or_default()
        .to_string_lossy();
    match &*target {
        "server" => {
            let session = Session::decode(&data);
            println!("seed {}", session.seed);
            for op in &session.ops {
                println!("{:?}", op.to_step());
            }
        }
        "policies" => {
            let input = PolicySession::decode(&data);
            println!("{:?}", input.tuning);
            println!("{:#?}", input.tuning.config());
            println!("seed {}", input.session.seed);
            for step in input.steps() {
                println!("{step:?}");
            }
            // What each client received, up to the failure if there is one.
            let run = panic::catch_unwind(|| input.run());
            if let Ok(harness) = run {
                for (index, received) in harness.received().into_iter().enumerate() {
                    println!("#{index} received {:?}", String::from_utf8_lossy(received));
                }
            }
        }
        "nick" => {
            for op in targets::decode_nick_ops(&data) {
                println!("{op:?}");
            }
        }
        _ => println!("{:?}", String::from_utf8_lossy(&data)),
    }
}
