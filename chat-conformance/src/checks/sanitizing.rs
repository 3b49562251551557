//! protocol.md, "Sanitizing": what a line becomes before anyone sees it.

use std::thread;

use super::{Rng, clients};
use crate::{Client, ClientStream, ServerProcess, Target, join_all, sync};

/// Has `a` send each raw line (LF appended) and checks that `b` receives
/// `NICK: EXPECTED` for each, in order, and `a` nothing.
fn expect_sanitized(a: &mut Client, b: &mut Client, cases: &[(&[u8], &str)]) {
    for (raw, _) in cases {
        let mut line = raw.to_vec();
        line.push(b'\n');
        a.send(&line);
    }
    let n = a.nick().to_owned();
    for (raw, expected) in cases {
        let line = b.read_line();
        assert_eq!(
            line,
            format!("{n}: {expected}"),
            "sent {:?}",
            String::from_utf8_lossy(raw)
        );
    }
    sync(b, &mut [a]);
}

/// Sanitizing: C0 controls but TAB, DEL and C1 controls each become U+FFFD;
/// TAB is kept; a line of controls only is not empty.
pub fn sanitizing_control_characters(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    expect_sanitized(
        &mut a,
        &mut b,
        &[
            (
                b"a\x00b\x01c\x07d\x08e\x0bf\x0cg\x1fh",
                "a\u{fffd}b\u{fffd}c\u{fffd}d\u{fffd}e\u{fffd}f\u{fffd}g\u{fffd}h",
            ),
            (b"tab\tkept", "tab\tkept"),
            (b"del\x7fhere", "del\u{fffd}here"),
            (
                "c1\u{80}x\u{85}y\u{9f}z\u{a0}".as_bytes(),
                "c1\u{fffd}x\u{fffd}y\u{fffd}z",
            ),
            (b"\x07", "\u{fffd}"),
        ],
    );
}

/// Sanitizing: ANSI escape sequences cannot reach a terminal: ESC (and the
/// C1 CSI) become U+FFFD, the rest of the sequence stays as text.
pub fn sanitizing_ansi_escape_sequences(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    expect_sanitized(
        &mut a,
        &mut b,
        &[
            (b"\x1b[31mred\x1b[0m", "\u{fffd}[31mred\u{fffd}[0m"),
            (b"\x1b[2J\x1b[Hcleared", "\u{fffd}[2J\u{fffd}[Hcleared"),
            (b"\x1b]0;title\x07", "\u{fffd}]0;title\u{fffd}"),
            ("\u{9b}31mcsi".as_bytes(), "\u{fffd}31mcsi"),
        ],
    );
}

/// Sanitizing: invalid UTF-8 becomes U+FFFD as `String::from_utf8_lossy`
/// does (one per maximal invalid subpart); valid UTF-8 passes unchanged.
pub fn sanitizing_invalid_utf8(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    expect_sanitized(
        &mut a,
        &mut b,
        &[
            (b"\xff\xfe ok", "\u{fffd}\u{fffd} ok"),
            (b"caf\xc3!", "caf\u{fffd}!"),
            (b"\xf0\x9f\x98!", "\u{fffd}!"),
            (b"\xed\xa0\x80x", "\u{fffd}\u{fffd}\u{fffd}x"),
            (b"\xc0\xafz", "\u{fffd}\u{fffd}z"),
            (b"end\xe2\x82", "end\u{fffd}"),
            (
                "h\u{e9}llo \u{65e5}\u{672c} \u{1f389}".as_bytes(),
                "h\u{e9}llo \u{65e5}\u{672c} \u{1f389}",
            ),
        ],
    );
}

/// Sanitizing: the bidi embedding, override and isolate controls
/// (U+202A..U+202E, U+2066..U+2069) become U+FFFD; their visible
/// neighbours (U+2027, U+2070) do not.
pub fn sanitizing_bidi_controls(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    expect_sanitized(
        &mut a,
        &mut b,
        &[
            (
                "a\u{202a}b\u{202b}c\u{202c}d\u{202d}e\u{202e}f".as_bytes(),
                "a\u{fffd}b\u{fffd}c\u{fffd}d\u{fffd}e\u{fffd}f",
            ),
            (
                "g\u{2066}h\u{2067}i\u{2068}j\u{2069}k".as_bytes(),
                "g\u{fffd}h\u{fffd}i\u{fffd}j\u{fffd}k",
            ),
            ("kept\u{2027}\u{2070}x".as_bytes(), "kept\u{2027}\u{2070}x"),
        ],
    );
}

/// Sanitizing: invisible characters cannot reach another terminal. Format
/// characters (U+200B, U+FEFF, a tag character), line separators and Hangul
/// fillers become U+FFFD; a joiner is kept between visible characters (an
/// emoji ZWJ sequence, Persian ZWNJ) and replaced at an edge; a pile of 50
/// combining marks keeps its first 4.
pub fn sanitizing_invisible_characters_and_mark_piles(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    let pile = "\u{301}".repeat(50);
    let four = "\u{301}".repeat(4);
    let mixed = format!("zw\u{200b}sp bom\u{feff} ls\u{2028} tag\u{e0041} e{pile}!");
    let mixed_clean = format!("zw\u{fffd}sp bom\u{fffd} ls\u{fffd} tag\u{fffd} e{four}!");
    let piled = format!("{pile}x");
    let piled_clean = format!("{four}x");
    expect_sanitized(
        &mut a,
        &mut b,
        &[
            (mixed.as_bytes(), &mixed_clean),
            (piled.as_bytes(), &piled_clean),
            (
                "\u{3164}\u{ffa0}filler".as_bytes(),
                "\u{fffd}\u{fffd}filler",
            ),
            (
                "\u{1f469}\u{200d}\u{1f4bb} \u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}".as_bytes(),
                "\u{1f469}\u{200d}\u{1f4bb} \u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}",
            ),
            ("\u{200d}edge\u{200c}".as_bytes(), "\u{fffd}edge\u{fffd}"),
        ],
    );
}

/// Sanitizing: trailing whitespace (after replacing) is trimmed, leading and
/// inner whitespace kept; a line that is empty after that is ignored.
pub fn sanitizing_trailing_whitespace_and_empty_lines(target: &Target) {
    let server = ServerProcess::start(target);
    let [mut a, mut b] = clients(&server);
    // Lines that are empty once trimmed: nothing reaches anyone (checked by
    // the markers in `expect_sanitized`).
    a.send(b"\n   \n\t \t\n \r\n\xe3\x80\x80\n");
    expect_sanitized(
        &mut a,
        &mut b,
        &[
            (b"trail   \t ", "trail"),
            (b"  lead", "  lead"),
            (b"in  ner", "in  ner"),
            (b"wide\xe3\x80\x80", "wide"),
            (b"vt\x0b", "vt\u{fffd}"),
        ],
    );
}

/// Sanitizing and Framing: a few MB of seeded pseudo-random bytes (uniform
/// bytes, command-like tokens, long lines) from three clients at once do
/// not crash the server; afterwards new clients chat normally.
pub fn sanitizing_random_garbage_does_not_crash(target: &Target) {
    let mut server = ServerProcess::start(target);
    let garbage = [
        uniform_garbage(0x5eed_0001, 2 << 20),
        token_garbage(0x5eed_0002, 1 << 20),
        long_line_garbage(0x5eed_0003, 1 << 20),
    ];
    // All connect first, so that no garbage can get one dropped before it
    // has read its welcome.
    let garbage_clients: Vec<Client> = (0..garbage.len())
        .map(|i| Client::connect_welcomed(server.addr(), &format!("garbage{i}")).0)
        .collect();
    let mut senders = Vec::new();
    for (client, bytes) in garbage_clients.into_iter().zip(garbage) {
        let stream = client.try_clone_stream();
        senders.push(thread::spawn(move || {
            send_ignoring_errors(stream, &bytes);
            // End whatever line is open and leave; the server may already
            // have dropped this client as too slow, so errors are fine.
            send_ignoring_errors(client.try_clone_stream(), b"\n/quit\n");
            client
        }));
    }
    for sender in senders {
        let mut client = sender.join().expect("garbage sender thread");
        client.drain_until_closed();
    }
    server.assert_running();
    let mut fresh = join_all(server.addr(), 2);
    let [c, d] = fresh.as_mut_slice() else {
        unreachable!("two clients")
    };
    sync(c, &mut [d]);
    sync(d, &mut [c]);
    server.assert_running();
}

fn send_ignoring_errors(mut stream: ClientStream, bytes: &[u8]) {
    use std::io::Write;
    for chunk in bytes.chunks(16 * 1024) {
        if stream.write_all(chunk).is_err() {
            return;
        }
    }
    let _ = stream.flush();
}

/// Uniformly random bytes (about one LF in 256).
fn uniform_garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next_u64().to_le_bytes()[3]).collect()
}

/// Random sequences of protocol-ish tokens: commands (never `/quit`),
/// CR/LF, controls, escapes, invalid and bidi bytes.
fn token_garbage(seed: u64, len: usize) -> Vec<u8> {
    const TOKENS: &[&[u8]] = &[
        b"/nick ",
        b"/me ",
        b"/msg ",
        b"/who",
        b"/help",
        b"//",
        b"/",
        b"/NICK ",
        b"\r",
        b"\n",
        b"\n",
        b"\r\n",
        b" ",
        b"\t",
        b"x",
        b"nick",
        b"abc",
        b"\x1b[",
        b"\xff",
        b"\xc3",
        b"\xe2\x80\xae",
        b"\0",
        b"\x7f",
        b"\xc2\x85",
        "\u{200d}".as_bytes(),
        "\u{301}".as_bytes(),
        "\u{200b}".as_bytes(),
        b"-",
        b"_",
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
    }
    out
}

/// Random bytes with an LF only every 1..20000 bytes, so many lines go over
/// the default 4096-byte limit.
fn long_line_garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 1);
    while out.len() < len {
        let line = 1 + rng.below(20_000);
        for _ in 0..line {
            let byte = rng.next_u64().to_le_bytes()[5];
            out.push(if byte == b'\n' { b'.' } else { byte });
        }
        out.push(b'\n');
    }
    out
}
