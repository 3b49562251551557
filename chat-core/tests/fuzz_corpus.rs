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
//! `server` seeds mean.

#[path = "../../fuzz/src/targets.rs"]
mod targets;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use targets::{Name, NamePart, NickOp, Op, Piece, Session};

/// A fuzz target's body.
type Target = fn(&[u8]);

/// Every target, by the name of its directories.
const TARGETS: &[(&str, Target)] = &[
    ("framing", targets::framing),
    ("server", targets::server),
    ("nick", targets::nick),
    ("sanitize", targets::sanitize),
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
fn nick_corpus() {
    replay("nick", targets::nick);
}

#[test]
fn sanitize_corpus() {
    replay("sanitize", targets::sanitize);
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
            "control-words",
            [0x2a, 0x20, 0, 0, 0x85, 0, 0, 0, 0x69, 0x20, 0, 0].to_vec(),
        ),
    ]
}

/// Every named seed, as target and file name with its bytes.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut all = Vec::new();
    all.extend(framing_seeds().into_iter().map(|(n, b)| ("framing", n, b)));
    for (name, session) in server_seeds() {
        let bytes = session.encode();
        assert_eq!(
            Session::decode(&bytes),
            session,
            "server seed {name} does not round-trip: has arbitrary's format changed?"
        );
        all.push(("server", name, bytes));
    }
    for (name, ops) in nick_seeds() {
        let bytes = targets::encode_nick_ops(&ops);
        assert_eq!(
            targets::decode_nick_ops(&bytes),
            ops,
            "nick seed {name} does not round-trip: has arbitrary's format changed?"
        );
        all.push(("nick", name, bytes));
    }
    all.extend(
        sanitize_seeds()
            .into_iter()
            .map(|(n, b)| ("sanitize", n, b)),
    );
    all
}

#[test]
fn seeds_are_up_to_date() {
    for (target, name, bytes) in seeds() {
        let path = fuzz_dir().join("seeds").join(target).join(name);
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
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Prints what a `server` or `nick` input decodes to, for reading a crash:
/// `FUZZ_INPUT=path cargo test -p chat-core --test fuzz_corpus show_input -- --ignored --nocapture`
/// (the target is taken from the path's parent directory name).
#[test]
#[ignore = "reads the file named by FUZZ_INPUT"]
fn show_input() {
    let Some(path) = std::env::var_os("FUZZ_INPUT").map(PathBuf::from) else {
        panic!("set FUZZ_INPUT to an input file");
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
        "nick" => {
            for op in targets::decode_nick_ops(&data) {
                println!("{op:?}");
            }
        }
        _ => println!("{:?}", String::from_utf8_lossy(&data)),
    }
}
